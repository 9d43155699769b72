//! The client against a scripted fake server: resends, reconnects, evictions, and every kind of
//! broken reply. Nothing the server sends may panic the client.

use std::time::Duration;

use tally_client::{
    Account, Client, ClientConfig, ClientError, CreateAccountResult, CreateAccountStatus,
    EvictionReason, ProtocolError,
};
use tally_ledger::Record;
use tally_wire::{
    encode_eviction, encode_register_reply, encode_reply, EvictionHeader, FrameReader, Header,
    MultiBatchEncoder, ParsedHeader, ReplyParams, RequestHeader, RELEASE,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const STEP: Duration = Duration::from_secs(10);

async fn step<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(STEP, future)
        .await
        .expect("step took too long")
}

fn config() -> ClientConfig {
    ClientConfig {
        request_timeout: Duration::from_millis(200),
        connect_timeout: Duration::from_secs(5),
    }
}

/// One accepted connection of the fake server.
struct Connection {
    stream: TcpStream,
    frames: FrameReader,
}

impl Connection {
    async fn accept(listener: &TcpListener) -> Connection {
        let (stream, _) = step(listener.accept()).await.expect("accept");
        Connection {
            stream,
            frames: FrameReader::new(0),
        }
    }

    /// The next request, as parsed header and whole message bytes.
    async fn receive(&mut self) -> (RequestHeader, Vec<u8>) {
        self.try_receive()
            .await
            .expect("client closed the connection")
    }

    /// The next request, or `None` if the client closed the connection.
    async fn try_receive(&mut self) -> Option<(RequestHeader, Vec<u8>)> {
        loop {
            if let Some(message) = self.frames.next_message().expect("valid frames") {
                let Ok(ParsedHeader::Request(request)) = message.header.parse() else {
                    panic!("not a request: {:?}", message.header);
                };
                return Some((request, message.to_vec()));
            }
            let read = step(self.stream.read(self.frames.spare_capacity())).await;
            match read {
                Ok(0) | Err(_) => return None,
                Ok(read) => self.frames.advance(read),
            }
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    /// Receives the register and answers it with session 7.
    async fn register(&mut self, batch_size_limit: u32) -> RequestHeader {
        let (request, _) = self.receive().await;
        assert_eq!(request.operation, 2);
        self.send(&encode_register_reply(
            &reply_params(&request, 7),
            batch_size_limit,
        ))
        .await;
        request
    }
}

fn reply_params(request: &RequestHeader, op: u64) -> ReplyParams {
    ReplyParams {
        cluster: request.cluster,
        view: 0,
        release: request.release,
        request_checksum: request.checksum,
        client: request.client,
        op,
        timestamp: op * 1_000,
        request: request.request,
        operation: request.operation,
    }
}

/// A multi-batch body with one batch per slice.
fn multi_batch(element_size: usize, batches: &[&[u8]]) -> Vec<u8> {
    let mut encoder = MultiBatchEncoder::new(element_size);
    for batch in batches {
        encoder.push_batch(batch).expect("fits");
    }
    encoder.finish()
}

/// A create result: timestamp, status, reserved.
fn create_result(timestamp: u64, status: u32) -> [u8; 16] {
    let mut bytes = [0u8; 16];
    bytes[0..8].copy_from_slice(&timestamp.to_le_bytes());
    bytes[8..12].copy_from_slice(&status.to_le_bytes());
    bytes
}

async fn connect(listener: &TcpListener) -> (Client, Connection) {
    let address = listener.local_addr().expect("address");
    let (client, connection) = tokio::join!(Client::connect_with(address, 0, config()), async {
        let mut connection = Connection::accept(listener).await;
        connection.register(1_048_320).await;
        connection
    });
    (client.expect("connect"), connection)
}

async fn listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.expect("bind")
}

fn account(id: u128) -> Account {
    Account {
        id,
        ledger: 1,
        code: 1,
        ..Account::default()
    }
}

#[tokio::test]
async fn register_adopts_session_limit_and_chain() {
    let listener = listener().await;
    let address = listener.local_addr().expect("address");
    let (client, register) = tokio::join!(Client::connect_with(address, 0, config()), async {
        let mut connection = Connection::accept(&listener).await;
        let (request, message) = connection.receive().await;
        // Register: request 0, session 0, parent 0, a 256-byte zero body (spec §4.2).
        assert_eq!(message.len(), 512);
        assert!(message[256..].iter().all(|byte| *byte == 0));
        assert_eq!(
            (request.request, request.session, request.parent),
            (0, 0, 0)
        );
        assert_eq!(request.release, RELEASE);
        let reply = encode_register_reply(&reply_params(&request, 42), 4_096);
        connection.send(&reply).await;
        let context = Header::from_prefix(&reply)
            .map(|header| match header.parse() {
                Ok(ParsedHeader::Reply(reply)) => reply.context,
                _ => panic!("reply"),
            })
            .expect("header");
        (connection, context)
    });
    let client = client.expect("connect");
    let (mut connection, context) = register;
    assert_eq!(client.session(), 42);
    assert_eq!(client.batch_size_limit(), 4_096);
    // 4,096-byte bodies hold 31 accounts next to the one-element trailer.
    let accounts: Vec<Account> = (1..=32).map(account).collect();
    assert!(matches!(
        client.create_accounts(&accounts).await,
        Err(ClientError::TooMuchData)
    ));
    let call = tokio::spawn({
        let client = client.clone();
        async move { client.create_accounts(&accounts[..31]).await }
    });
    let (request, _) = connection.receive().await;
    assert_eq!(request.request, 1);
    assert_eq!(request.session, 42);
    assert_eq!(request.parent, context);
    assert_eq!(request.size, 256 + 4_096);
    let results: Vec<u8> = (0..31)
        .flat_map(|i| create_result(100 + i, u32::MAX))
        .collect();
    let reply = encode_reply(&reply_params(&request, 43), &multi_batch(16, &[&results]));
    connection.send(&reply).await;
    let results = step(call).await.expect("task").expect("create");
    assert_eq!(results.len(), 31);
    assert_eq!(results[30].timestamp, 130);
}

#[tokio::test]
async fn register_with_invalid_limit_fails_connect() {
    let listener = listener().await;
    let address = listener.local_addr().expect("address");
    let (client, _) = tokio::join!(Client::connect_with(address, 0, config()), async {
        let mut connection = Connection::accept(&listener).await;
        let (request, _) = connection.receive().await;
        // batch_size_limit 0: the official client aborts; this one refuses the session.
        let reply = encode_reply(&reply_params(&request, 7), &[0u8; 64]);
        connection.send(&reply).await;
        connection
    });
    assert!(
        matches!(
            client,
            Err(ClientError::Protocol(ProtocolError::BatchSizeLimit(0)))
        ),
        "{client:?}"
    );
}

#[tokio::test]
async fn connect_times_out_with_the_last_error() {
    let listener = listener().await;
    let address = listener.local_addr().expect("address");
    drop(listener);
    let config = ClientConfig {
        connect_timeout: Duration::from_millis(300),
        ..config()
    };
    let result = Client::connect_with(address, 0, config).await;
    let Err(ClientError::ConnectTimeout { last_error, .. }) = result else {
        panic!("{result:?}");
    };
    let error = last_error.expect("a connection error");
    assert_eq!(error.kind(), std::io::ErrorKind::ConnectionRefused);
}

#[tokio::test]
async fn unanswered_requests_are_resent_byte_for_byte() {
    let listener = listener().await;
    let (client, mut connection) = connect(&listener).await;
    let call = tokio::spawn({
        let client = client.clone();
        async move { client.lookup_accounts(&[5, 6]).await }
    });
    let (_, first) = connection.receive().await;
    let (request, second) = connection.receive().await;
    assert_eq!(first, second, "a resend is the same bytes");
    let found = account(6);
    let body = multi_batch(128, &[found.as_bytes()]);
    connection
        .send(&encode_reply(&reply_params(&request, 8), &body))
        .await;
    let accounts = step(call).await.expect("task").expect("lookup");
    assert_eq!(accounts, [found]);
    let stats = client.stats();
    assert!(stats.resends >= 1, "{stats:?}");
    assert_eq!(stats.requests, 2);
}

#[tokio::test]
async fn broken_streams_reconnect_and_resend() {
    let listener = listener().await;
    let (client, mut connection) = connect(&listener).await;
    let call = tokio::spawn({
        let client = client.clone();
        async move { client.create_accounts(&[account(1)]).await }
    });
    let (_, first) = connection.receive().await;
    // Garbage: the header checksum fails, the client closes the connection.
    connection.send(&[0x5A; 300]).await;
    let mut connection = Connection::accept(&listener).await;
    let (request, second) = connection.receive().await;
    assert_eq!(first, second);
    // A reply for another client and a stale reply are ignored; then the real one.
    let mut other = reply_params(&request, 8);
    other.client ^= 1;
    let body = multi_batch(16, &[&create_result(5, u32::MAX)]);
    connection.send(&encode_reply(&other, &body)).await;
    connection
        .send(&encode_reply(&reply_params(&request, 8), &body))
        .await;
    let results = step(call).await.expect("task").expect("create");
    assert_eq!(results[0].status, CreateAccountStatus::Created);
    assert_eq!(client.stats().connections, 2);

    // The server closes the connection while a call is pending: reconnect, resend, done.
    let call = tokio::spawn({
        let client = client.clone();
        async move { client.create_accounts(&[account(2)]).await }
    });
    let (_, first) = connection.receive().await;
    drop(connection);
    let mut connection = Connection::accept(&listener).await;
    let (request, second) = connection.receive().await;
    assert_eq!(first, second);
    let body = multi_batch(16, &[&create_result(6, 21)]);
    connection
        .send(&encode_reply(&reply_params(&request, 9), &body))
        .await;
    let results = step(call).await.expect("task").expect("create");
    assert_eq!(results[0].status, CreateAccountStatus::Exists);
}

type CreateCheck = fn(&Result<Vec<CreateAccountResult>, ClientError>) -> bool;

#[tokio::test]
async fn bad_reply_bodies_fail_only_their_calls() {
    let listener = listener().await;
    let (client, mut connection) = connect(&listener).await;
    let cases: Vec<(Vec<u8>, CreateCheck)> = vec![
        // Not a multi-batch body.
        (vec![1, 2, 3], |r| {
            matches!(r, Err(ClientError::Protocol(ProtocolError::ReplyBody(_))))
        }),
        // Two batches for a one-batch request.
        (multi_batch(16, &[&[], &[]]), |r| {
            matches!(
                r,
                Err(ClientError::Protocol(ProtocolError::BatchCount {
                    expected: 1,
                    found: 2
                }))
            )
        }),
        // One result for two creates.
        (multi_batch(16, &[&create_result(1, u32::MAX)]), |r| {
            matches!(
                r,
                Err(ClientError::Protocol(ProtocolError::ResultCount {
                    results: 1,
                    expected: 2,
                    exact: true
                }))
            )
        }),
        // A status that does not exist.
        (
            multi_batch(
                16,
                &[&[create_result(1, u32::MAX), create_result(2, 1_000)].concat()],
            ),
            |r| matches!(r, Err(ClientError::UnknownStatus(1_000))),
        ),
        // And the session goes on.
        (
            multi_batch(
                16,
                &[&[create_result(1, u32::MAX), create_result(2, 21)].concat()],
            ),
            |r| r.as_ref().is_ok_and(|results| results.len() == 2),
        ),
    ];
    for (op, (body, check)) in (8..).zip(cases) {
        let call = tokio::spawn({
            let client = client.clone();
            async move { client.create_accounts(&[account(1), account(2)]).await }
        });
        let (request, _) = connection.receive().await;
        connection
            .send(&encode_reply(&reply_params(&request, op), &body))
            .await;
        let result = step(call).await.expect("task");
        assert!(check(&result), "{result:?}");
    }
}

#[tokio::test]
async fn a_reply_to_another_request_ends_the_client() {
    let listener = listener().await;
    let (client, mut connection) = connect(&listener).await;
    let call = tokio::spawn({
        let client = client.clone();
        async move { client.lookup_accounts(&[1]).await }
    });
    let (request, _) = connection.receive().await;
    let mut params = reply_params(&request, 8);
    params.request_checksum ^= 1;
    let body = multi_batch(128, &[&[]]);
    connection.send(&encode_reply(&params, &body)).await;
    let result = step(call).await.expect("task");
    let Err(ClientError::Protocol(error)) = result else {
        panic!("{result:?}");
    };
    assert!(error.is_terminal());
    assert!(matches!(
        error,
        ProtocolError::ReplyMismatch {
            checksum_matches: false,
            ..
        }
    ));
    let later = client.lookup_accounts(&[1]).await;
    assert!(matches!(later, Err(ClientError::Protocol(e)) if e == error));
}

#[tokio::test]
async fn eviction_fails_pending_and_later_calls() {
    let listener = listener().await;
    let (client, mut connection) = connect(&listener).await;
    let first = tokio::spawn({
        let client = client.clone();
        async move { client.lookup_accounts(&[1]).await }
    });
    let (request, _) = connection.receive().await;
    // Queued behind the request in flight.
    let second = tokio::spawn({
        let client = client.clone();
        async move { client.create_accounts(&[account(3)]).await }
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    // An eviction for another client is ignored; then one for this client.
    let mut eviction = EvictionHeader {
        cluster: 0,
        view: 0,
        release: RELEASE,
        client: request.client ^ 1,
        reason: EvictionReason::NoSession,
    };
    connection.send(&encode_eviction(&eviction)).await;
    eviction.client = request.client;
    eviction.reason = EvictionReason::ClientReleaseTooHigh;
    connection.send(&encode_eviction(&eviction)).await;
    let evicted = |result: &Result<_, ClientError>| {
        matches!(
            result,
            Err(ClientError::Evicted(EvictionReason::ClientReleaseTooHigh))
        )
    };
    let first = step(first).await.expect("task");
    assert!(evicted(&first.map(|_| ())), "first");
    let second = step(second).await.expect("task");
    assert!(evicted(&second.map(|_| ())), "second");
    let later = client
        .query_accounts(tally_client::QueryFilter::zeroed())
        .await;
    assert!(evicted(&later.map(|_| ())), "later");
}

#[tokio::test]
async fn random_bytes_never_panic_the_client() {
    let listener = listener().await;
    let (client, mut connection) = connect(&listener).await;
    let mut random = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        random ^= random << 13;
        random ^= random >> 7;
        random ^= random << 17;
        random
    };
    let call = tokio::spawn({
        let client = client.clone();
        async move { client.lookup_accounts(&[1, 2, 3]).await }
    });
    let (mut request, _) = connection.receive().await;
    for _ in 0..20 {
        // A reply with one bit flipped (header or body checksum fails), or plain garbage (of
        // any length, so possibly an incomplete header the client waits on): either way the
        // stream breaks or the request times out; the client must carry on.
        let size = (next() % 2_000) as usize;
        let garbage: Vec<u8> = (0..size).map(|_| next() as u8).collect();
        if next() % 2 == 0 {
            let mut reply = encode_reply(&reply_params(&request, 8), &garbage);
            let flip = (next() as usize) % reply.len();
            reply[flip] ^= 1 << (next() % 8);
            connection.send(&reply).await;
        } else {
            connection.send(&garbage).await;
        }
        // The next copy of the request: resent on this connection, or on a new one.
        request = loop {
            let event = tokio::select! {
                accepted = listener.accept() => Err(accepted.expect("accept").0),
                received = connection.try_receive() => Ok(received),
            };
            match event {
                Ok(Some((request, _))) => break request,
                Ok(None) => connection = Connection::accept(&listener).await,
                Err(stream) => {
                    connection = Connection {
                        stream,
                        frames: FrameReader::new(0),
                    }
                }
            }
        };
    }
    let body = multi_batch(128, &[&[]]);
    connection
        .send(&encode_reply(&reply_params(&request, 9), &body))
        .await;
    let found = step(call).await.expect("task").expect("lookup");
    assert!(found.is_empty());
}
