//! The session rules of spec §4.4–4.9, one by one, and the table's checkpoint encoding.

use proptest::prelude::*;
use tally_wire::{
    encode_register_reply, encode_reply, encode_request, CommitOutcome, DecodeError, DropReason,
    EvictionReason, Header, MultiBatchEncoder, Operation, ParsedHeader, PingClientHeader,
    PingDecision, Release, ReplyParams, RequestDecision, RequestHeader, RequestParams,
    SessionConfig, SessionTable, BATCH_SIZE_LIMIT_MIN, HEADER_SIZE, RELEASE,
};

const RELEASE_CLIENT: Release = Release::new(0, 17, 9);
const VIEW: u32 = 1;

/// A request as parsed by the server, with its body.
struct Request {
    header: RequestHeader,
    body: Vec<u8>,
}

fn parse(message: &[u8]) -> Request {
    let header = Header::from_prefix(message).expect("whole header");
    let Ok(ParsedHeader::Request(header)) = header.parse() else {
        panic!("valid request");
    };
    Request {
        header,
        body: message[HEADER_SIZE..].to_vec(),
    }
}

/// A client that follows the protocol: numbers its requests and chains their parents.
#[derive(Clone, Copy)]
struct Client {
    id: u128,
    session: u64,
    request: u32,
    parent: u128,
}

impl Client {
    fn new(id: u128) -> Client {
        Client {
            id,
            session: 0,
            request: 0,
            parent: 0,
        }
    }

    fn params(&self, operation: Operation) -> RequestParams {
        RequestParams {
            cluster: 0,
            view: VIEW,
            release: RELEASE_CLIENT,
            parent: self.parent,
            client: self.id,
            session: self.session,
            timestamp: 0,
            request: self.request,
            operation: operation.as_u8(),
            previous_request_latency: 0,
        }
    }

    fn register(&self) -> Request {
        parse(&encode_request(
            &self.params(Operation::Register),
            &[0; 256],
        ))
    }

    /// The next request: a lookup of one id.
    fn next(&self) -> Request {
        self.next_with(|_| {})
    }

    fn next_with(&self, change: impl Fn(&mut RequestParams)) -> Request {
        let mut params = self.params(Operation::LookupAccounts);
        params.request = self.request + 1;
        change(&mut params);
        parse(&encode_request(&params, &lookup_body(1)))
    }

    /// Adopts the reply to its request, as the official client does.
    fn receive(&mut self, reply: &[u8]) {
        let Ok(ParsedHeader::Reply(reply)) = Header::from_prefix(reply).expect("header").parse()
        else {
            panic!("a valid reply");
        };
        if reply.operation == Operation::Register.as_u8() {
            self.session = reply.commit;
        }
        self.request = reply.request;
        self.parent = reply.context;
    }
}

fn lookup_body(ids: usize) -> Vec<u8> {
    let mut encoder = MultiBatchEncoder::new(16);
    encoder.push_batch(&vec![7; 16 * ids]).expect("fits");
    encoder.finish()
}

/// The server's side: the table, the op counter, the replies it builds.
struct Server {
    table: SessionTable,
    op: u64,
}

impl Server {
    fn new() -> Server {
        Server::with_config(config())
    }

    fn with_config(config: SessionConfig) -> Server {
        Server {
            table: SessionTable::new(config),
            op: 0,
        }
    }

    fn check(&self, request: &Request) -> RequestDecision<'_> {
        self.table.check_request(&request.header, &request.body)
    }

    /// Checks, executes and commits a request that must be new; returns the reply.
    fn execute(&mut self, request: &Request) -> Vec<u8> {
        assert_eq!(self.check(request), RequestDecision::Execute);
        self.table.begin_request(&request.header);
        self.commit(request)
    }

    fn commit(&mut self, request: &Request) -> Vec<u8> {
        let (reply, evicted) = self.commit_evicting(request);
        assert_eq!(evicted, None);
        reply
    }

    /// Commits as the server (or its log replay) does; returns the reply and the evicted
    /// client, if a register evicted one.
    fn commit_evicting(&mut self, request: &Request) -> (Vec<u8>, Option<u128>) {
        self.op += 1;
        let header = &request.header;
        let params = ReplyParams {
            cluster: 0,
            view: VIEW,
            release: header.release,
            request_checksum: header.checksum,
            client: header.client,
            op: self.op,
            timestamp: 1_000 + self.op,
            request: header.request,
            operation: header.operation,
        };
        if header.operation == Operation::Register.as_u8() {
            let reply = encode_register_reply(&params, self.table.config().batch_size_limit);
            let evicted = self.table.commit_register(
                header.client,
                header.release,
                header.checksum,
                self.op,
                reply.clone(),
            );
            return (reply, evicted);
        }
        let reply = encode_reply(&params, &lookup_body(0));
        let outcome = self.table.commit_request(
            header.client,
            header.request,
            header.checksum,
            self.op,
            reply.clone(),
        );
        assert_eq!(outcome, CommitOutcome::Stored);
        (reply, None)
    }

    /// Registers a new client.
    fn connect(&mut self, id: u128) -> Client {
        let mut client = Client::new(id);
        let reply = self.execute(&client.register());
        client.receive(&reply);
        client
    }

    fn ping(&self, client: &Client, release: Release) -> PingDecision {
        let ping = PingClientHeader {
            cluster: 0,
            view: 0,
            release,
            client: client.id,
            ping_timestamp_monotonic: 5,
            session: client.session,
        };
        self.table.check_ping(&ping, self.op)
    }
}

fn config() -> SessionConfig {
    SessionConfig {
        view: VIEW,
        ..SessionConfig::default()
    }
}

fn evict(reason: EvictionReason) -> RequestDecision<'static> {
    RequestDecision::Evict(reason)
}

fn drop(reason: DropReason) -> RequestDecision<'static> {
    RequestDecision::Drop(reason)
}

#[test]
fn register_creates_a_session_numbered_by_its_op() {
    let mut server = Server::new();
    server.op = 41;
    let client = server.connect(9);
    assert_eq!(client.session, 42);
    let session = server.table.get(9).expect("registered");
    assert_eq!(
        (session.session(), session.op(), session.request()),
        (42, 42, 0)
    );
    assert_eq!(session.release(), RELEASE_CLIENT);
    assert_eq!(session.context(), client.parent);
}

#[test]
fn next_request_executes_and_its_duplicate_gets_the_identical_reply() {
    let mut server = Server::new();
    let mut client = server.connect(9);
    let request = client.next();
    let reply = server.execute(&request);
    assert_eq!(server.check(&request), RequestDecision::ResendReply(&reply));
    client.receive(&reply);
    assert_eq!(server.table.get(9).expect("session").request(), 1);
    server.execute(&client.next());
}

#[test]
fn duplicate_register_gets_the_register_reply_until_the_first_request() {
    let mut server = Server::new();
    let mut client = Client::new(9);
    let register = client.register();
    let reply = server.execute(&register);
    assert_eq!(
        server.check(&register),
        RequestDecision::ResendReply(&reply)
    );
    // Another register from the same client (other bytes): dropped.
    let other = parse(&encode_request(
        &RequestParams {
            previous_request_latency: 1,
            ..client.params(Operation::Register)
        },
        &[0; 256],
    ));
    assert_eq!(
        server.check(&other),
        drop(DropReason::DuplicateChecksumMismatch)
    );
    client.receive(&reply);
    server.execute(&client.next());
    assert_eq!(server.check(&register), drop(DropReason::RequestOld));
}

#[test]
fn parent_other_than_the_last_context_drops() {
    let mut server = Server::new();
    let client = server.connect(9);
    let request = client.next_with(|params| params.parent ^= 1);
    assert_eq!(server.check(&request), drop(DropReason::ParentMismatch));
}

#[test]
fn old_future_and_mismatched_duplicate_requests_drop() {
    let mut server = Server::new();
    let mut client = server.connect(9);
    let first = client.next();
    client.receive(&server.execute(&first));
    let second = client.next();
    client.receive(&server.execute(&second));
    // Request 1 is older than the latest committed request 2.
    assert_eq!(server.check(&first), drop(DropReason::RequestOld));
    // Request 4 skips 3.
    let ahead = client.next_with(|params| params.request += 1);
    assert_eq!(server.check(&ahead), drop(DropReason::RequestAhead));
    // Request 2 again, but other bytes than the committed request 2.
    let forged = client.next_with(|params| {
        params.request -= 1;
        params.previous_request_latency = 77;
    });
    assert_eq!(
        server.check(&forged),
        drop(DropReason::DuplicateChecksumMismatch)
    );
}

#[test]
fn older_session_number_evicts_and_newer_drops() {
    let mut server = Server::new();
    server.connect(1);
    let client = server.connect(9);
    let older = client.next_with(|params| params.session -= 1);
    assert_eq!(server.check(&older), evict(EvictionReason::SessionTooLow));
    let newer = client.next_with(|params| params.session += 1);
    assert_eq!(server.check(&newer), drop(DropReason::SessionAhead));
}

#[test]
fn other_release_than_the_session_evicts() {
    let mut server = Server::new();
    let client = server.connect(9);
    let request = client.next_with(|params| params.release = Release::new(0, 17, 8));
    assert_eq!(
        server.check(&request),
        evict(EvictionReason::SessionReleaseMismatch)
    );
}

#[test]
fn unknown_client_is_evicted_unless_its_register_is_executing() {
    let mut server = Server::new();
    let stranger = Client {
        id: 5,
        session: 3,
        request: 0,
        parent: 0,
    };
    assert_eq!(
        server.check(&stranger.next()),
        evict(EvictionReason::NoSession)
    );

    let registering = Client::new(6);
    let register = registering.register();
    assert_eq!(server.check(&register), RequestDecision::Execute);
    server.table.begin_request(&register.header);
    let early = Client {
        session: 1,
        ..registering
    }
    .next();
    assert_eq!(server.check(&early), drop(DropReason::RegisterInFlight));
    assert_eq!(server.check(&register), drop(DropReason::InFlight));
    server.commit(&register);
    assert_eq!(server.table.in_flight_count(), 0);
}

#[test]
fn requests_in_flight_drop_and_the_pipeline_is_bounded() {
    let mut server = Server::with_config(SessionConfig {
        in_flight_max: 2,
        ..config()
    });
    let clients = [server.connect(1), server.connect(2), server.connect(3)];
    let requests: Vec<Request> = clients.iter().map(Client::next).collect();
    server.table.begin_request(&requests[0].header);
    assert_eq!(server.check(&requests[0]), drop(DropReason::InFlight));
    let forked = clients[0].next_with(|params| params.previous_request_latency = 3);
    assert_eq!(server.check(&forked), drop(DropReason::InFlightForked));
    server.table.begin_request(&requests[1].header);
    assert_eq!(server.check(&requests[2]), drop(DropReason::InFlightFull));
    server.commit(&requests[0]);
    assert_eq!(server.check(&requests[2]), RequestDecision::Execute);
}

#[test]
fn version_gate_view_and_timestamp() {
    let mut server = Server::new();
    let client = server.connect(9);
    let low = client.next_with(|params| params.release = Release::new(0, 16, 255));
    assert_eq!(
        server.check(&low),
        evict(EvictionReason::ClientReleaseTooLow)
    );
    let high = client.next_with(|params| params.release = Release::new(0, 17, 10));
    assert_eq!(
        server.check(&high),
        evict(EvictionReason::ClientReleaseTooHigh)
    );
    let view = client.next_with(|params| params.view = VIEW + 1);
    assert_eq!(server.check(&view), drop(DropReason::ViewAhead));
    let timestamp = client.next_with(|params| params.timestamp = 1);
    assert_eq!(server.check(&timestamp), drop(DropReason::Timestamp));
    assert_eq!(
        server.check(&client.next_with(|params| params.view = 0)),
        RequestDecision::Execute
    );
}

#[test]
fn operations_outside_the_supported_set_are_evicted() {
    let mut server = Server::new();
    let client = server.connect(9);
    for operation in [3u8, 6, 128, 129, 136, 138, 139, 148, 150, 255] {
        let mut params = client.params(Operation::LookupAccounts);
        params.request += 1;
        params.operation = operation;
        let request = parse(&encode_request(&params, &[]));
        assert_eq!(
            server.check(&request),
            evict(EvictionReason::InvalidRequestOperation),
            "operation {operation}"
        );
    }
}

#[test]
fn body_size_and_body_contents_are_checked() {
    let mut server = Server::with_config(SessionConfig {
        batch_size_limit: BATCH_SIZE_LIMIT_MIN,
        ..config()
    });
    let client = server.connect(9);
    let mut params = client.params(Operation::LookupAccounts);
    params.request += 1;
    let limit = BATCH_SIZE_LIMIT_MIN as usize;
    let too_large = parse(&encode_request(&params, &vec![0; limit + 16]));
    assert_eq!(
        server.check(&too_large),
        evict(EvictionReason::InvalidRequestBodySize)
    );
    let no_trailer = parse(&encode_request(&params, &[7; 32]));
    assert_eq!(
        server.check(&no_trailer),
        evict(EvictionReason::InvalidRequestBody)
    );
    let empty = parse(&encode_request(&params, &[]));
    assert_eq!(
        server.check(&empty),
        evict(EvictionReason::InvalidRequestBody)
    );

    let fresh = Client::new(10);
    let bodiless_register = parse(&encode_request(&fresh.params(Operation::Register), &[]));
    assert_eq!(
        server.check(&bodiless_register),
        evict(EvictionReason::InvalidRequestBodySize)
    );
}

/// Where two rules apply, the earlier step of spec §4.5 decides.
#[test]
fn checks_run_in_tigerbeetle_order() {
    let mut server = Server::new();
    server.connect(1); // So that session − 1 is still a valid header.
    let client = server.connect(9);
    type Case = (fn(&mut RequestParams), RequestDecision<'static>);
    let cases: [Case; 5] = [
        // 1 before 3: the view is checked before the release.
        (
            |params| {
                params.view = VIEW + 1;
                params.release = Release::new(1, 0, 0);
            },
            drop(DropReason::ViewAhead),
        ),
        // 3 before 5.
        (
            |params| {
                params.release = Release::new(1, 0, 0);
                params.operation = 150;
            },
            evict(EvictionReason::ClientReleaseTooHigh),
        ),
        // 5 before 8: an unknown operation of a stale session.
        (
            |params| {
                params.operation = 150;
                params.session += 1;
            },
            evict(EvictionReason::InvalidRequestOperation),
        ),
        // 8 before 10: a timestamp on a wrong parent.
        (
            |params| {
                params.timestamp = 5;
                params.parent ^= 1;
            },
            drop(DropReason::ParentMismatch),
        ),
        // Within 8: the session before the release.
        (
            |params| {
                params.session -= 1;
                params.release = Release::new(0, 17, 1);
            },
            evict(EvictionReason::SessionTooLow),
        ),
    ];
    for (change, expected) in cases {
        assert_eq!(server.check(&client.next_with(change)), expected);
    }
    let stranger = Client {
        id: 77,
        session: 1,
        request: 0,
        parent: 0,
    };
    let timestamped = stranger.next_with(|params| params.timestamp = 5);
    assert_eq!(server.check(&timestamped), evict(EvictionReason::NoSession));
}

#[test]
fn the_65th_registration_evicts_the_least_recently_used_session() {
    let mut server = Server::new();
    let mut clients: Vec<Client> = (1..=64).map(|id| server.connect(id)).collect();
    assert_eq!(server.table.sessions().len(), 64);
    let (_, evicted) = server.commit_evicting(&Client::new(65).register());
    assert_eq!(evicted, Some(1));
    assert_eq!(
        server.check(&clients[0].next()),
        evict(EvictionReason::NoSession)
    );
    server.execute(&clients[1].next());

    // Recency is the op of the latest reply, not the registration: clients 2 and 3 were just
    // used, so the next registrations evict clients 4 and 5.
    let reply = server.execute(&clients[2].next());
    clients[2].receive(&reply);
    let (_, evicted) = server.commit_evicting(&Client::new(66).register());
    assert_eq!(evicted, Some(4));
    let (_, evicted) = server.commit_evicting(&Client::new(67).register());
    assert_eq!(evicted, Some(5));
    assert!(server.table.get(3).is_some());
    assert_eq!(server.table.sessions().len(), 64);
    let ids: Vec<u128> = server
        .table
        .sessions()
        .iter()
        .map(|session| session.client())
        .collect();
    assert!(
        ids.windows(2).all(|pair| pair[0] < pair[1]),
        "sorted by client id"
    );
}

#[test]
fn capacity_is_configurable() {
    let mut server = Server::with_config(SessionConfig {
        clients_max: 2,
        ..config()
    });
    server.connect(1);
    server.connect(2);
    let (_, evicted) = server.commit_evicting(&Client::new(3).register());
    assert_eq!(evicted, Some(1));
}

#[test]
fn request_of_a_session_evicted_while_executing_is_not_stored() {
    let mut server = Server::with_config(SessionConfig {
        clients_max: 1,
        ..config()
    });
    let client = server.connect(1);
    let request = client.next();
    assert_eq!(server.check(&request), RequestDecision::Execute);
    server.table.begin_request(&request.header);
    let (_, evicted) = server.commit_evicting(&Client::new(2).register());
    assert_eq!(evicted, Some(1));
    server.op += 1;
    let params = ReplyParams {
        cluster: 0,
        view: VIEW,
        release: RELEASE_CLIENT,
        request_checksum: request.header.checksum,
        client: 1,
        op: server.op,
        timestamp: 9_999,
        request: 1,
        operation: Operation::LookupAccounts.as_u8(),
    };
    let outcome = server.table.commit_request(
        1,
        1,
        request.header.checksum,
        server.op,
        encode_reply(&params, &lookup_body(0)),
    );
    assert_eq!(outcome, CommitOutcome::SessionEvicted);
    assert_eq!(server.table.in_flight_count(), 0);
    assert!(server.table.get(1).is_none());
}

#[test]
fn ping_rules() {
    let mut server = Server::new();
    let never_registered = Client::new(1);
    assert_eq!(
        server.ping(&never_registered, RELEASE_CLIENT),
        PingDecision::Pong
    );
    let registered = server.connect(2);
    assert_eq!(server.ping(&registered, RELEASE_CLIENT), PingDecision::Pong);
    // A session number the server has committed past, for a client it does not know.
    let evicted = Client {
        session: server.op,
        ..Client::new(3)
    };
    assert_eq!(
        server.ping(&evicted, RELEASE_CLIENT),
        PingDecision::Evict(EvictionReason::NoSession)
    );
    // A session number from the future: not provably evicted.
    let future = Client {
        session: server.op + 1,
        ..Client::new(3)
    };
    assert_eq!(server.ping(&future, RELEASE_CLIENT), PingDecision::Pong);
    assert_eq!(
        server.ping(&registered, Release::new(0, 16, 9)),
        PingDecision::Evict(EvictionReason::ClientReleaseTooLow)
    );
    assert_eq!(
        server.ping(&evicted, Release::new(0, 18, 0)),
        PingDecision::Evict(EvictionReason::ClientReleaseTooHigh)
    );
    assert_eq!(server.table.config().release, RELEASE);
}

/// A table built by a live server (check, begin, commit) and one rebuilt by replaying the same
/// commits (no checks, nothing in flight) are the same, and so are their encodings; an
/// encoding decodes to the same table.
fn live_and_replayed(actions: &[(u8, bool)], clients_max: usize) {
    let config = SessionConfig {
        clients_max,
        ..config()
    };
    let mut live = Server::with_config(config);
    let mut replayed = Server::with_config(config);
    let mut clients: Vec<Client> = Vec::new();
    for (index, (pick, register)) in actions.iter().enumerate() {
        let request = if *register || clients.is_empty() {
            // Distinct ids (7,919 is invertible modulo the prime 10,007), in no sorted order.
            clients.push(Client::new((index as u128 * 7_919) % 10_007 + 1));
            clients.last().expect("pushed").register()
        } else {
            clients[*pick as usize % clients.len()].next()
        };
        let RequestDecision::Execute = live.check(&request) else {
            continue; // An evicted client: its request is not committed.
        };
        live.table.begin_request(&request.header);
        let (reply, evicted_live) = live.commit_evicting(&request);
        let (reply_replayed, evicted_replayed) = replayed.commit_evicting(&request);
        assert_eq!(reply, reply_replayed);
        assert_eq!(evicted_live, evicted_replayed);
        let client = clients
            .iter_mut()
            .find(|client| client.id == request.header.client)
            .expect("known client");
        client.receive(&reply);
    }
    assert_eq!(live.table, replayed.table);
    let mut encoded = Vec::new();
    live.table.encode(&mut encoded);
    let mut encoded_replayed = Vec::new();
    replayed.table.encode(&mut encoded_replayed);
    assert_eq!(encoded, encoded_replayed);
    let decoded = SessionTable::decode(&encoded, config).expect("decodes");
    assert_eq!(decoded, live.table);
}

#[test]
fn encode_decode_round_trip_and_replay_determinism() {
    let actions: Vec<(u8, bool)> = (0..200u16)
        .map(|i| ((i * 31 % 17) as u8, i % 3 == 0))
        .collect();
    live_and_replayed(&actions, 8);
    live_and_replayed(&[], 8);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_history_replays_and_round_trips(
        actions in proptest::collection::vec((any::<u8>(), proptest::bool::weighted(0.3)), 0..80),
        clients_max in 1usize..6,
    ) {
        live_and_replayed(&actions, clients_max);
    }
}

fn encoded_table() -> (Vec<u8>, SessionConfig) {
    let mut server = Server::new();
    let mut client = server.connect(1);
    client.receive(&server.execute(&client.next()));
    server.connect(2);
    let mut encoded = Vec::new();
    server.table.encode(&mut encoded);
    (encoded, config())
}

/// Recomputes the trailing checksum after a deliberate change to the content.
fn reseal(encoded: &mut [u8]) {
    let content_size = encoded.len() - 16;
    let sealed = tally_checksum::checksum(&encoded[..content_size]);
    encoded[content_size..].copy_from_slice(&sealed.to_le_bytes());
}

#[test]
fn decode_rejects_every_broken_encoding() {
    let (encoded, config) = encoded_table();
    assert!(SessionTable::decode(&encoded, config).is_ok());
    assert_eq!(
        SessionTable::decode(&encoded[..10], config),
        Err(DecodeError::Truncated)
    );

    let mut flipped = encoded.clone();
    flipped[40] ^= 1;
    assert_eq!(
        SessionTable::decode(&flipped, config),
        Err(DecodeError::Checksum)
    );

    let mut magic = encoded.clone();
    magic[0] ^= 1;
    assert_eq!(
        SessionTable::decode(&magic, config),
        Err(DecodeError::Magic)
    );

    let mut version = encoded.clone();
    version[8] = 2;
    reseal(&mut version);
    assert_eq!(
        SessionTable::decode(&version, config),
        Err(DecodeError::Version { version: 2 })
    );

    let small = SessionConfig {
        clients_max: 1,
        ..config
    };
    assert_eq!(
        SessionTable::decode(&encoded, small),
        Err(DecodeError::SessionCount {
            count: 2,
            clients_max: 1
        })
    );

    let mut trailing = encoded.clone();
    trailing.splice(encoded.len() - 16..encoded.len() - 16, [0u8; 3]);
    reseal(&mut trailing);
    assert_eq!(
        SessionTable::decode(&trailing, config),
        Err(DecodeError::TrailingBytes { size: 3 })
    );

    // The first session's number, above its reply's op.
    let mut number = encoded.clone();
    number[16..24].copy_from_slice(&99u64.to_le_bytes());
    reseal(&mut number);
    assert!(matches!(
        SessionTable::decode(&number, config),
        Err(DecodeError::SessionNumber { session: 99, .. })
    ));

    // A flipped byte inside the first stored reply.
    let mut reply = encoded.clone();
    reply[32 + 200] ^= 1;
    reseal(&mut reply);
    assert_eq!(
        SessionTable::decode(&reply, config),
        Err(DecodeError::Reply)
    );

    let mut reserved = encoded.clone();
    reserved[28] = 1;
    reseal(&mut reserved);
    assert_eq!(
        SessionTable::decode(&reserved, config),
        Err(DecodeError::Reserved)
    );
}
