//! The background task that owns the connection and the session (spec §4, §8).
//!
//! It registers, then repeatedly takes the oldest pending request, sends it, and waits for its
//! reply; meanwhile new calls pile up in the shared queue. While waiting it resends the same
//! bytes after each request timeout and reconnects (with back-off) when the connection breaks,
//! then resends at once. An eviction or a reply that does not belong to the session ends the
//! client: every pending and later call fails with that error.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use tally_wire::{
    decode_multi_batch, encode_request, EvictionReason, FrameReader, Header, Message, Operation,
    ParsedHeader, ReplyHeader, RequestParams, BATCH_SIZE_LIMIT_MAX, REGISTER_REQUEST_SIZE, RELEASE,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{oneshot, Notify};
use tokio::time::{sleep, sleep_until, timeout, Instant};

use crate::batch::{Pending, Waiter};
use crate::error::{ClientError, ProtocolError};
use crate::ClientConfig;

/// Body buffers kept for reuse.
const SPARE_BODIES_MAX: usize = 4;

/// Reconnection back-off (spec §1.7): uniform in `[MIN, MIN + min(SPREAD_MAX, MIN·2^attempt)]`.
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_SPREAD_MAX: Duration = Duration::from_millis(950);

/// State shared by the handles and the driver.
pub(crate) struct Shared {
    pub address: SocketAddr,
    pub cluster: u128,
    pub client_id: u128,
    pub config: ClientConfig,
    state: Mutex<State>,
    /// Signalled when a call joins the queue.
    pub wake: Notify,
    pub session: AtomicU64,
    pub counters: Counters,
}

pub(crate) struct State {
    /// The server's limit on request bodies; 0 until registered.
    pub batch_size_limit: u32,
    /// Requests being assembled, oldest first.
    pub queue: VecDeque<Pending>,
    pub spare_bodies: Vec<Vec<u8>>,
    /// Set once the client is done; every later call fails with it.
    pub terminal: Option<ClientError>,
    pub last_connect_error: Option<Arc<io::Error>>,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub calls: AtomicU64,
    pub requests: AtomicU64,
    pub resends: AtomicU64,
    pub connections: AtomicU64,
}

impl Shared {
    pub(crate) fn new(
        address: SocketAddr,
        cluster: u128,
        client_id: u128,
        config: ClientConfig,
    ) -> Self {
        Shared {
            address,
            cluster,
            client_id,
            config,
            state: Mutex::new(State {
                batch_size_limit: 0,
                queue: VecDeque::new(),
                spare_bodies: Vec::new(),
                terminal: None,
                last_connect_error: None,
            }),
            wake: Notify::new(),
            session: AtomicU64::new(0),
            counters: Counters::default(),
        }
    }

    /// The state; a panic elsewhere while holding the lock does not make it unusable (every
    /// critical section leaves the state consistent between statements).
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The request on the wire, kept byte for byte for resends.
struct InFlight {
    message: Vec<u8>,
    checksum: u128,
    request: u32,
    operation: Operation,
    waiters: Vec<Waiter>,
    result_size: usize,
    sent: Instant,
}

/// A reply that answers the request in flight.
struct Reply {
    header: ReplyHeader,
    body: Bytes,
}

/// What became of the request in flight.
enum Outcome {
    Reply(Reply),
    Evicted(EvictionReason),
    Fatal(ProtocolError),
}

/// What one received message means for the request in flight.
enum Classified {
    Ignore,
    Outcome(Outcome),
}

/// Why waiting for an answer stopped without one.
enum Wait {
    Answer(Outcome),
    Timeout,
    Disconnected,
}

pub(crate) struct Driver {
    shared: Arc<Shared>,
    stream: Option<TcpStream>,
    frames: FrameReader,
    /// Connection attempts since bytes last arrived (drives the back-off).
    connect_attempts: u32,
    connected_before: bool,
    view: u32,
    session: u64,
    parent: u128,
    request_next: u32,
    previous_request_latency: u32,
    registered: Option<oneshot::Sender<Result<(), ClientError>>>,
    random: u64,
}

impl Driver {
    pub(crate) fn new(
        shared: Arc<Shared>,
        registered: oneshot::Sender<Result<(), ClientError>>,
    ) -> Self {
        let cluster = shared.cluster;
        // Any odd-ish non-zero seed will do for back-off jitter.
        let random = (shared.client_id as u64 ^ (shared.client_id >> 64) as u64) | 1;
        Driver {
            shared,
            stream: None,
            frames: FrameReader::new(cluster),
            connect_attempts: 0,
            connected_before: false,
            view: 0,
            session: 0,
            parent: 0,
            request_next: 0,
            previous_request_latency: 0,
            registered: Some(registered),
            random,
        }
    }

    pub(crate) async fn run(mut self) {
        let mut next = Some(self.register_request());
        loop {
            let in_flight = match next.take() {
                Some(in_flight) => in_flight,
                None => match self.next_request() {
                    Some(in_flight) => in_flight,
                    None => {
                        if self.shared.lock().terminal.is_some() {
                            return;
                        }
                        self.shared.wake.notified().await;
                        continue;
                    }
                },
            };
            match self.exchange(&in_flight).await {
                Outcome::Reply(reply) => {
                    if let Err(error) = self.complete(in_flight, reply) {
                        self.terminate(error, None);
                        return;
                    }
                }
                Outcome::Evicted(reason) => {
                    self.terminate(ClientError::Evicted(reason), Some(in_flight));
                    return;
                }
                Outcome::Fatal(error) => {
                    self.terminate(ClientError::Protocol(error), Some(in_flight));
                    return;
                }
            }
        }
    }

    fn register_request(&mut self) -> InFlight {
        let body = [0u8; REGISTER_REQUEST_SIZE];
        self.request_message(Operation::Register, &body, 1)
    }

    /// The oldest pending request, encoded; `None` if nothing is pending.
    fn next_request(&mut self) -> Option<InFlight> {
        let mut pending = {
            let mut state = self.shared.lock();
            if state.terminal.is_some() {
                return None;
            }
            state.queue.pop_front()?
        };
        let operation = pending.operation;
        let result_size = pending.result_size();
        // The trailer is written in place, after the events the calls copied in.
        let body = pending.finish();
        let mut in_flight = self.request_message(operation, body, result_size);
        in_flight.waiters = std::mem::take(&mut pending.waiters);
        let mut state = self.shared.lock();
        if state.spare_bodies.len() < SPARE_BODIES_MAX {
            state.spare_bodies.push(std::mem::take(&mut pending.body));
        }
        Some(in_flight)
    }

    /// Encodes request number `request_next` of the session (spec §4.4).
    fn request_message(
        &mut self,
        operation: Operation,
        body: &[u8],
        result_size: usize,
    ) -> InFlight {
        let request = self.request_next;
        let params = RequestParams {
            cluster: self.shared.cluster,
            view: self.view,
            release: RELEASE,
            parent: self.parent,
            client: self.shared.client_id,
            session: self.session,
            timestamp: 0,
            request,
            operation: operation.as_u8(),
            previous_request_latency: self.previous_request_latency,
        };
        let message = encode_request(&params, body);
        let checksum = Header::from_prefix(&message).map_or(0, |header| header.checksum());
        self.shared
            .counters
            .requests
            .fetch_add(1, Ordering::Relaxed);
        InFlight {
            message,
            checksum,
            request,
            operation,
            waiters: Vec::new(),
            result_size,
            sent: Instant::now(),
        }
    }

    /// Sends the request until it is answered: resends after each timeout, reconnects when the
    /// connection breaks.
    async fn exchange(&mut self, in_flight: &InFlight) -> Outcome {
        let request_timeout = self.shared.config.request_timeout;
        let mut first = true;
        loop {
            if self.stream.is_none() {
                self.connect().await;
            }
            let Some(stream) = self.stream.as_mut() else {
                continue;
            };
            if !first {
                self.shared.counters.resends.fetch_add(1, Ordering::Relaxed);
            }
            first = false;
            match timeout(request_timeout, stream.write_all(&in_flight.message)).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => {
                    self.stream = None;
                    continue;
                }
            }
            let deadline = Instant::now() + request_timeout;
            match self.await_answer(in_flight, deadline).await {
                Wait::Answer(outcome) => return outcome,
                Wait::Timeout => {}
                Wait::Disconnected => self.stream = None,
            }
        }
    }

    async fn await_answer(&mut self, in_flight: &InFlight, deadline: Instant) -> Wait {
        loop {
            loop {
                let message = match self.frames.next_message() {
                    Ok(Some(message)) => message,
                    Ok(None) => break,
                    // A broken stream (checksum, size, cluster): close it (spec §1.3, §8).
                    Err(_) => return Wait::Disconnected,
                };
                match classify(&message, in_flight, self.shared.client_id, self.view) {
                    Classified::Ignore => {}
                    Classified::Outcome(outcome) => return Wait::Answer(outcome),
                }
            }
            let Some(stream) = self.stream.as_mut() else {
                return Wait::Disconnected;
            };
            let read = tokio::select! {
                read = stream.read(self.frames.spare_capacity()) => read,
                () = sleep_until(deadline) => return Wait::Timeout,
            };
            match read {
                Ok(0) | Err(_) => return Wait::Disconnected,
                Ok(size) => {
                    self.frames.advance(size);
                    self.connect_attempts = 0;
                }
            }
        }
    }

    /// Connects, retrying with back-off until it succeeds.
    async fn connect(&mut self) {
        loop {
            if self.connected_before || self.connect_attempts > 0 {
                let delay = self.backoff();
                sleep(delay).await;
            }
            self.connect_attempts = self.connect_attempts.saturating_add(1);
            let attempt = timeout(
                self.shared.config.request_timeout,
                TcpStream::connect(self.shared.address),
            )
            .await;
            let error = match attempt {
                Ok(Ok(stream)) => {
                    // Only latency suffers if this fails.
                    let _ = stream.set_nodelay(true);
                    self.stream = Some(stream);
                    self.frames = FrameReader::new(self.shared.cluster);
                    self.connected_before = true;
                    self.shared
                        .counters
                        .connections
                        .fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Ok(Err(error)) => error,
                Err(_) => io::Error::new(io::ErrorKind::TimedOut, "connect timed out"),
            };
            self.shared.lock().last_connect_error = Some(Arc::new(error));
        }
    }

    fn backoff(&mut self) -> Duration {
        let exponent = self.connect_attempts.min(16);
        let spread = BACKOFF_MIN
            .saturating_mul(1 << exponent)
            .min(BACKOFF_SPREAD_MAX);
        // xorshift64: jitter only.
        self.random ^= self.random << 13;
        self.random ^= self.random >> 7;
        self.random ^= self.random << 17;
        let spread_us = spread.as_micros() as u64 + 1;
        BACKOFF_MIN + Duration::from_micros(self.random % spread_us)
    }

    /// Takes the reply to the request in flight: advances the session, then hands each call
    /// its batch's results. An `Err` ends the client.
    fn complete(&mut self, in_flight: InFlight, reply: Reply) -> Result<(), ClientError> {
        self.view = self.view.max(reply.header.view);
        self.parent = reply.header.context;
        self.request_next = in_flight.request.wrapping_add(1);
        let latency = in_flight.sent.elapsed().as_micros();
        self.previous_request_latency = u32::try_from(latency).unwrap_or(u32::MAX);

        if in_flight.operation == Operation::Register {
            let limit = reply.body.get(0..4).map_or(0, |bytes| {
                u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
            });
            if limit == 0 || limit > BATCH_SIZE_LIMIT_MAX {
                return Err(ProtocolError::BatchSizeLimit(limit).into());
            }
            self.session = reply.header.commit;
            self.shared
                .session
                .store(reply.header.commit, Ordering::Relaxed);
            self.shared.lock().batch_size_limit = limit;
            if let Some(registered) = self.registered.take() {
                let _ = registered.send(Ok(()));
            }
            return Ok(());
        }
        deliver(in_flight.waiters, in_flight.result_size, &reply.body);
        Ok(())
    }

    /// Ends the client: records `error` and fails every call with it.
    fn terminate(&mut self, error: ClientError, in_flight: Option<InFlight>) {
        let pending: Vec<Pending> = {
            let mut state = self.shared.lock();
            if state.terminal.is_none() {
                state.terminal = Some(error.clone());
            }
            state.queue.drain(..).collect()
        };
        let waiters = in_flight
            .into_iter()
            .flat_map(|in_flight| in_flight.waiters)
            .chain(pending.into_iter().flat_map(|pending| pending.waiters));
        for waiter in waiters {
            waiter.fail(error.clone());
        }
        if let Some(registered) = self.registered.take() {
            let _ = registered.send(Err(error));
        }
        self.stream = None;
    }
}

impl Drop for Driver {
    /// The task is gone (aborted when the last handle dropped, or the runtime stopped): calls
    /// still queued fail with `Closed` rather than wait forever.
    fn drop(&mut self) {
        self.terminate(ClientError::Closed, None);
    }
}

/// What a received message means for the request in flight (spec §8, "replies it does not
/// expect"). TigerBeetle's client aborts the process where this returns `Fatal`.
fn classify(message: &Message<'_>, in_flight: &InFlight, client_id: u128, view: u32) -> Classified {
    // Messages failing the validity rules are ignored (spec §2.6).
    let Ok(parsed) = message.header.parse() else {
        return Classified::Ignore;
    };
    match parsed {
        ParsedHeader::Reply(reply) => {
            if reply.client != client_id || reply.request < in_flight.request {
                return Classified::Ignore;
            }
            if reply.release != RELEASE {
                return Classified::Outcome(Outcome::Fatal(ProtocolError::ReplyRelease {
                    release: reply.release.0,
                }));
            }
            let checksum_matches = reply.request_checksum == in_flight.checksum;
            if reply.request > in_flight.request
                || !checksum_matches
                || reply.operation != in_flight.operation.as_u8()
            {
                return Classified::Outcome(Outcome::Fatal(ProtocolError::ReplyMismatch {
                    request: reply.request,
                    operation: reply.operation,
                    expected_request: in_flight.request,
                    expected_operation: in_flight.operation.as_u8(),
                    checksum_matches,
                }));
            }
            Classified::Outcome(Outcome::Reply(Reply {
                header: reply,
                body: Bytes::copy_from_slice(message.body),
            }))
        }
        ParsedHeader::Eviction(eviction) => {
            if eviction.client != client_id || eviction.view < view {
                return Classified::Ignore;
            }
            Classified::Outcome(Outcome::Evicted(eviction.reason))
        }
        ParsedHeader::Request(_) | ParsedHeader::PingClient(_) | ParsedHeader::PongClient(_) => {
            Classified::Ignore
        }
    }
}

/// Splits a reply body into the calls' batches. A body that does not decode, or has another
/// batch count, fails every call of the request; a batch with an impossible result count
/// fails its own call.
fn deliver(waiters: Vec<Waiter>, result_size: usize, body: &Bytes) {
    let fail_all = |waiters: Vec<Waiter>, error: ProtocolError| {
        for waiter in waiters {
            waiter.fail(error.into());
        }
    };
    let multi_batch = match decode_multi_batch(body, result_size) {
        Ok(multi_batch) => multi_batch,
        Err(error) => return fail_all(waiters, ProtocolError::ReplyBody(error)),
    };
    if multi_batch.batch_count() as usize != waiters.len() {
        let error = ProtocolError::BatchCount {
            // Cast: a request holds at most BATCH_COUNT_MAX batches.
            expected: waiters.len() as u16,
            found: multi_batch.batch_count(),
        };
        return fail_all(waiters, error);
    }
    let mut offset = 0;
    for (batch, waiter) in (0..multi_batch.batch_count()).zip(waiters) {
        let count = multi_batch.count(batch);
        let size = count as usize * result_size;
        let range = offset..offset + size;
        offset += size;
        let count = u32::from(count);
        let valid = if waiter.exact {
            count == waiter.results_max
        } else {
            count <= waiter.results_max
        };
        if !valid {
            let error = ProtocolError::ResultCount {
                results: count,
                expected: waiter.results_max,
                exact: waiter.exact,
            };
            waiter.fail(error.into());
            continue;
        }
        let _ = waiter.sender.send(Ok(body.slice(range)));
    }
}
