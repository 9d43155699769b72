//! The client session table of a one-replica cluster (spec §4.3–4.10).
//!
//! A session is created by committing a `register` request; its number is the op of that
//! commit (spec §4.3). Per session the table keeps the last committed request's number and
//! checksum and the reply to it, byte for byte, so that a resent request gets the identical
//! reply again (spec §4.6). The reply's `context` is the parent the client's next request must
//! carry (the hash chain of spec §4.4).
//!
//! The table holds at most `clients_max` sessions (TigerBeetle: 64). Committing a register when
//! full evicts the session whose latest reply has the lowest op, i.e. the least recently used
//! one (spec §4.9); the evicted client learns it at its next request or ping (`no_session`).
//!
//! Determinism: the server rebuilds this table by replaying its log, and a checkpoint stores it
//! ([`SessionTable::encode`]). Every mutation is a function of its arguments alone; sessions are
//! kept in a vector sorted by client id, and no decision depends on hash order or time.
//!
//! Requests in flight: between [`SessionTable::check_request`] returning
//! [`RequestDecision::Execute`] and the commit, the server calls
//! [`SessionTable::begin_request`]. In-flight requests are what TigerBeetle's pipeline holds
//! (spec §4.5 step 9); they are not part of the encoded state, because they are not committed:
//! after a restart the client resends.

use tally_checksum::checksum;

use crate::body::validate_request_body;
use crate::frame::verify_body;
use crate::header::{Header, ParsedHeader, PingClientHeader, ReplyHeader, RequestHeader};
use crate::protocol::{EvictionReason, Operation, Release};
use crate::{
    BATCH_SIZE_LIMIT_MAX, BATCH_SIZE_LIMIT_MIN, CLIENTS_MAX, HEADER_SIZE, MESSAGE_SIZE_MAX,
    REGISTER_REQUEST_SIZE, RELEASE, RELEASE_CLIENT_MIN,
};

/// What the server is and accepts; not part of the encoded table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionConfig {
    /// Most sessions kept; registering beyond evicts the least recently used one.
    pub clients_max: usize,
    /// Most requests executing at once (TigerBeetle's pipeline); beyond, requests are dropped
    /// and the clients resend (spec §4.5 step 9).
    pub in_flight_max: usize,
    /// The server's view; constant for a single server (spec §4.10).
    pub view: u32,
    /// The release the server claims (spec §2.7).
    pub release: Release,
    /// The oldest client release accepted.
    pub release_client_min: Release,
    /// The largest request body accepted, as announced in register replies (spec §1.4).
    pub batch_size_limit: u32,
}

impl Default for SessionConfig {
    fn default() -> SessionConfig {
        SessionConfig {
            clients_max: CLIENTS_MAX,
            in_flight_max: CLIENTS_MAX,
            view: 0,
            release: RELEASE,
            release_client_min: RELEASE_CLIENT_MIN,
            batch_size_limit: BATCH_SIZE_LIMIT_MAX,
        }
    }
}

impl SessionConfig {
    fn assert_valid(&self) {
        assert!(self.clients_max > 0);
        assert!(self.in_flight_max > 0);
        assert!(self.release_client_min <= self.release);
        assert!(self.batch_size_limit >= BATCH_SIZE_LIMIT_MIN);
        assert!(self.batch_size_limit <= BATCH_SIZE_LIMIT_MAX);
    }

    /// Largest request accepted, header included.
    pub fn request_size_limit(&self) -> usize {
        HEADER_SIZE + self.batch_size_limit as usize
    }
}

/// One client's session (spec §4.10).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    client: u128,
    session: u64,
    release: Release,
    /// Number of the last committed request (0: only the register).
    request: u32,
    request_checksum: u128,
    /// `context` of the stored reply: the `parent` of the next request.
    context: u128,
    /// Op of the stored reply; the least recently used session has the lowest.
    op: u64,
    reply: Vec<u8>,
}

impl Session {
    /// The client's id.
    pub fn client(&self) -> u128 {
        self.client
    }

    /// The session number: the op of the register commit.
    pub fn session(&self) -> u64 {
        self.session
    }

    /// The release the client registered with; its requests must all carry it.
    pub fn release(&self) -> Release {
        self.release
    }

    /// Number of the last committed request (0: only the register).
    pub fn request(&self) -> u32 {
        self.request
    }

    /// Checksum of the last committed request: a resend with it gets the stored reply.
    pub fn request_checksum(&self) -> u128 {
        self.request_checksum
    }

    /// `context` of the stored reply: the `parent` the next request must carry.
    pub fn context(&self) -> u128 {
        self.context
    }

    /// Op of the stored reply; the least recently used session has the lowest.
    pub fn op(&self) -> u64 {
        self.op
    }

    /// The last reply, exactly as first sent.
    pub fn reply(&self) -> &[u8] {
        &self.reply
    }

    /// Builds a session from a committed reply, which carries everything but the session
    /// number; `reply_header` was parsed from `reply`.
    fn from_reply(session: u64, reply_header: &ReplyHeader, reply: Vec<u8>) -> Session {
        Session {
            client: reply_header.client,
            session,
            release: reply_header.release,
            request: reply_header.request,
            request_checksum: reply_header.request_checksum,
            context: reply_header.context,
            op: reply_header.op,
            reply,
        }
    }
}

/// The answer to a request that passed the frame and header checks (spec §4.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestDecision<'a> {
    /// A new request: mark it with [`SessionTable::begin_request`], execute, commit, reply.
    Execute,
    /// The latest committed request again: send these bytes, the stored reply (spec §4.6).
    ResendReply(&'a [u8]),
    /// Ignore silently; the client resends after its timeout if it still cares.
    Drop(DropReason),
    /// Send an eviction with this reason; the client ends for good (spec §4.8).
    Evict(EvictionReason),
}

/// Why a request is dropped, by step of spec §4.5 (for logs and tests).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// Step 1: the client claims a view the server has not reached.
    ViewAhead,
    /// Step 8: the request's session is newer than the client's entry.
    SessionAhead,
    /// Step 8: the next request, but its `parent` is not the last reply's `context`.
    ParentMismatch,
    /// Step 8: the latest request's number with another checksum.
    DuplicateChecksumMismatch,
    /// Step 8: older than the latest committed request.
    RequestOld,
    /// Step 8: skips request numbers.
    RequestAhead,
    /// Step 8: no session yet, but the client's register is executing.
    RegisterInFlight,
    /// Step 9: this very request is executing.
    InFlight,
    /// Step 9: another request of this client is executing.
    InFlightForked,
    /// Step 9: too many requests are executing.
    InFlightFull,
    /// Step 10: a non-zero timestamp (only TigerBeetle's AOF recovery sends one).
    Timestamp,
}

/// The answer to a `ping_client` (spec §4.7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PingDecision {
    /// Answer with a `pong_client`.
    Pong,
    /// Send an eviction with this reason; the client ends for good.
    Evict(EvictionReason),
}

/// What became of a committed request's reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommitOutcome {
    /// Stored as the session's latest reply.
    Stored,
    /// The session was evicted while the request executed; the reply is still sent, and the
    /// client learns of the eviction at its next request (as TigerBeetle does).
    SessionEvicted,
}

/// Why an encoded table cannot be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The bytes end before the encoding does.
    #[error("encoding ends early")]
    Truncated,
    /// The trailing checksum does not cover the bytes before it.
    #[error("encoding checksum mismatch")]
    Checksum,
    /// The bytes do not start with the table's magic.
    #[error("not an encoded session table")]
    Magic,
    /// An encoding version this build does not read.
    #[error("encoding version {version} is unknown")]
    Version {
        /// The version found.
        version: u32,
    },
    /// More sessions than the configured `clients_max`: the table could not hold them.
    #[error("{count} sessions, more than clients_max {clients_max}")]
    SessionCount {
        /// Sessions in the encoding.
        count: u32,
        /// The configured capacity.
        clients_max: usize,
    },
    /// A session entry's reserved u32 is not zero.
    #[error("reserved bytes are not zero")]
    Reserved,
    /// A stored reply's length is below a header or above `MESSAGE_SIZE_MAX`.
    #[error("stored reply of {size} bytes is not a message size")]
    ReplySize {
        /// The length found, in bytes.
        size: u32,
    },
    /// A stored reply fails its checksums or the reply header rules.
    #[error("stored reply is not a valid reply message")]
    Reply,
    /// Sessions are not sorted by client id without duplicates.
    #[error("sessions are not in strictly increasing client order")]
    ClientOrder,
    /// A session number is 0, after its reply's op, or (for a register reply) not that op.
    #[error("session number {session} is not that of a register at or before op {op}")]
    SessionNumber {
        /// The session number found.
        session: u64,
        /// The op of the session's stored reply.
        op: u64,
    },
    /// Two stored replies have the same op; ops are unique.
    #[error("two sessions have replies of the same op {op}")]
    OpDuplicate {
        /// The repeated op.
        op: u64,
    },
    /// Bytes remain after the last session.
    #[error("{size} bytes follow the encoding")]
    TrailingBytes {
        /// How many bytes lie between the last session and the checksum.
        size: usize,
    },
}

/// A request being executed: registered by [`SessionTable::begin_request`], removed at commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct InFlight {
    client: u128,
    checksum: u128,
    operation: u8,
}

/// The session table. Sessions and in-flight requests are both sorted by client id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionTable {
    config: SessionConfig,
    sessions: Vec<Session>,
    in_flight: Vec<InFlight>,
}

/// Encoding: `magic, version u32, count u32`, then per session in client order
/// `session u64, reply_size u32, reserved u32, reply bytes`, then the checksum of all of it.
const ENCODING_MAGIC: [u8; 8] = *b"tallyst\0";
const ENCODING_VERSION: u32 = 1;
const ENCODING_PREFIX_SIZE: usize = 16;
const ENCODING_ENTRY_SIZE: usize = 16;
const ENCODING_CHECKSUM_SIZE: usize = 16;

impl SessionTable {
    /// An empty table; allocates room for `clients_max` sessions and `in_flight_max` requests
    /// up front. Panics on a config that breaks its bounds (a programming error).
    pub fn new(config: SessionConfig) -> SessionTable {
        config.assert_valid();
        SessionTable {
            config,
            sessions: Vec::with_capacity(config.clients_max),
            in_flight: Vec::with_capacity(config.in_flight_max),
        }
    }

    /// The configuration the table was built with.
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// Sessions in client id order.
    pub fn sessions(&self) -> &[Session] {
        &self.sessions
    }

    /// The session of `client`, if it has one.
    pub fn get(&self, client: u128) -> Option<&Session> {
        self.session_index(client)
            .ok()
            .map(|index| &self.sessions[index])
    }

    /// Requests begun and not yet committed or abandoned.
    pub fn in_flight_count(&self) -> usize {
        self.in_flight.len()
    }

    /// Whether `client` has a request begun and not yet committed or abandoned.
    pub fn in_flight(&self, client: u128) -> bool {
        self.in_flight_index(client).is_ok()
    }

    fn session_index(&self, client: u128) -> Result<usize, usize> {
        self.sessions
            .binary_search_by_key(&client, |session| session.client)
    }

    fn in_flight_index(&self, client: u128) -> Result<usize, usize> {
        self.in_flight
            .binary_search_by_key(&client, |in_flight| in_flight.client)
    }

    /// Highest op among stored replies; ops of later commits must exceed it.
    fn op_max(&self) -> u64 {
        self.sessions
            .iter()
            .map(|session| session.op)
            .max()
            .unwrap_or(0)
    }

    /// Decides what to do with a request that passed the frame checks and [`Header::parse`],
    /// in TigerBeetle's order (spec §4.5 steps 1–10). `body` is the request's body.
    pub fn check_request(&self, request: &RequestHeader, body: &[u8]) -> RequestDecision<'_> {
        assert_eq!(body.len() + HEADER_SIZE, request.size as usize);
        let config = &self.config;
        // 1. A view the server has not reached.
        if request.view > config.view {
            return RequestDecision::Drop(DropReason::ViewAhead);
        }
        // 2–3. The version gate.
        if request.release < config.release_client_min {
            return RequestDecision::Evict(EvictionReason::ClientReleaseTooLow);
        }
        if request.release > config.release {
            return RequestDecision::Evict(EvictionReason::ClientReleaseTooHigh);
        }
        // 4. Larger than the announced limit.
        if request.size as usize > config.request_size_limit() {
            return RequestDecision::Evict(EvictionReason::InvalidRequestBodySize);
        }
        // 5. Only register and the operations the 0.17.x client library sends.
        let operation = match Operation::from_u8(request.operation) {
            Some(operation) if operation.is_supported() => operation,
            Some(_) | None => {
                return RequestDecision::Evict(EvictionReason::InvalidRequestOperation)
            }
        };
        // 6–7. The body.
        if operation == Operation::Register {
            if body.len() != REGISTER_REQUEST_SIZE {
                return RequestDecision::Evict(EvictionReason::InvalidRequestBodySize);
            }
        } else if validate_request_body(operation, body, config.batch_size_limit).is_err() {
            return RequestDecision::Evict(EvictionReason::InvalidRequestBody);
        }
        // 8. Session and numbering.
        if let Some(decision) = self.check_session(request, operation) {
            return decision;
        }
        // 9. Already executing, or no room to execute.
        if let Ok(index) = self.in_flight_index(request.client) {
            let reason = if self.in_flight[index].checksum == request.checksum {
                DropReason::InFlight
            } else {
                DropReason::InFlightForked
            };
            return RequestDecision::Drop(reason);
        }
        if self.in_flight.len() >= config.in_flight_max {
            return RequestDecision::Drop(DropReason::InFlightFull);
        }
        // 10. Only AOF recovery sends timestamps.
        if request.timestamp != 0 {
            return RequestDecision::Drop(DropReason::Timestamp);
        }
        RequestDecision::Execute
    }

    /// Step 8 (TigerBeetle's `ignore_request_message_duplicate`): `None` means "a new request,
    /// go on".
    fn check_session(
        &self,
        request: &RequestHeader,
        operation: Operation,
    ) -> Option<RequestDecision<'_>> {
        let Some(session) = self.get(request.client) else {
            if operation == Operation::Register {
                return None;
            }
            let register_in_flight = self
                .in_flight_index(request.client)
                .is_ok_and(|index| self.in_flight[index].operation == Operation::Register.as_u8());
            if register_in_flight {
                return Some(RequestDecision::Drop(DropReason::RegisterInFlight));
            }
            return Some(RequestDecision::Evict(EvictionReason::NoSession));
        };
        if operation != Operation::Register {
            if session.session > request.session {
                return Some(RequestDecision::Evict(EvictionReason::SessionTooLow));
            }
            if session.session < request.session {
                return Some(RequestDecision::Drop(DropReason::SessionAhead));
            }
        }
        if session.release != request.release {
            return Some(RequestDecision::Evict(
                EvictionReason::SessionReleaseMismatch,
            ));
        }
        // A register of a registered client follows the same rules with request number 0.
        let latest = session.request;
        Some(if request.request == latest {
            if request.checksum == session.request_checksum {
                RequestDecision::ResendReply(&session.reply)
            } else {
                RequestDecision::Drop(DropReason::DuplicateChecksumMismatch)
            }
        } else if request.request < latest {
            RequestDecision::Drop(DropReason::RequestOld)
        } else if u64::from(request.request) > u64::from(latest) + 1 {
            RequestDecision::Drop(DropReason::RequestAhead)
        } else if request.parent != session.context {
            RequestDecision::Drop(DropReason::ParentMismatch)
        } else {
            return None;
        })
    }

    /// Marks a request as executing (spec §4.5 step 9). Call only after `check_request`
    /// returned [`RequestDecision::Execute`] for it.
    pub fn begin_request(&mut self, request: &RequestHeader) {
        assert!(self.in_flight.len() < self.config.in_flight_max);
        let Err(index) = self.in_flight_index(request.client) else {
            panic!("client {} already has a request in flight", request.client);
        };
        self.in_flight.insert(
            index,
            InFlight {
                client: request.client,
                checksum: request.checksum,
                operation: request.operation,
            },
        );
    }

    /// Forgets a request marked by [`SessionTable::begin_request`] that will not be executed
    /// (the server could not log it): the client's resend is then a new request again.
    pub fn abandon_request(&mut self, request: &RequestHeader) {
        let Ok(index) = self.in_flight_index(request.client) else {
            panic!("client {} has no request in flight", request.client);
        };
        assert_eq!(self.in_flight[index].checksum, request.checksum);
        self.in_flight.remove(index);
    }

    fn end_request(&mut self, client: u128, request_checksum: u128) {
        // Replaying a log commits without beginning: nothing in flight then.
        if let Ok(index) = self.in_flight_index(client) {
            assert_eq!(self.in_flight[index].checksum, request_checksum);
            self.in_flight.remove(index);
        }
    }

    /// Decides what to answer a `ping_client` (spec §4.7). `commit_op` is the server's last
    /// committed op: a ping naming a session at or below it, from a client without one, names a
    /// session that existed and was evicted.
    pub fn check_ping(&self, ping: &PingClientHeader, commit_op: u64) -> PingDecision {
        // The version gate first, as for requests.
        if ping.release < self.config.release_client_min {
            return PingDecision::Evict(EvictionReason::ClientReleaseTooLow);
        }
        if ping.release > self.config.release {
            return PingDecision::Evict(EvictionReason::ClientReleaseTooHigh);
        }
        if ping.session != 0 && ping.session <= commit_op && self.get(ping.client).is_none() {
            return PingDecision::Evict(EvictionReason::NoSession);
        }
        PingDecision::Pong
    }

    /// Records a committed register: a new session numbered `op` whose stored reply is `reply`
    /// (the whole register reply message). If the table is full, first evicts the session whose
    /// latest reply has the lowest op, and returns that session's client id.
    pub fn commit_register(
        &mut self,
        client: u128,
        release: Release,
        request_checksum: u128,
        op: u64,
        reply: Vec<u8>,
    ) -> Option<u128> {
        let reply_header = reply_parse(&reply);
        assert_eq!(reply_header.client, client);
        assert_eq!(reply_header.release, release);
        assert_eq!(reply_header.request_checksum, request_checksum);
        assert_eq!(reply_header.op, op);
        assert_eq!(reply_header.request, 0);
        assert_eq!(reply_header.operation, Operation::Register.as_u8());
        assert!(op > self.op_max(), "ops only grow");
        // A registered client's register never executes (check_request resends or drops it).
        let Err(index) = self.session_index(client) else {
            panic!("client {client} already has a session");
        };
        self.end_request(client, request_checksum);

        let mut index = index;
        let mut evicted = None;
        if self.sessions.len() == self.config.clients_max {
            let lru = self.index_least_recently_used();
            evicted = Some(self.sessions.remove(lru).client);
            if lru < index {
                index -= 1;
            }
        }
        self.sessions
            .insert(index, Session::from_reply(op, &reply_header, reply));
        assert!(self.sessions.len() <= self.config.clients_max);
        evicted
    }

    /// The session whose latest reply has the lowest op (spec §4.9). Ops are unique, so
    /// there are no ties to break.
    fn index_least_recently_used(&self) -> usize {
        let mut lru = 0;
        for (index, session) in self.sessions.iter().enumerate() {
            if session.op < self.sessions[lru].op {
                lru = index;
            }
        }
        lru
    }

    /// Records a committed request of an existing session: `reply` (the whole message) becomes
    /// the stored reply.
    pub fn commit_request(
        &mut self,
        client: u128,
        request: u32,
        request_checksum: u128,
        op: u64,
        reply: Vec<u8>,
    ) -> CommitOutcome {
        let reply_header = reply_parse(&reply);
        assert_eq!(reply_header.client, client);
        assert_eq!(reply_header.request, request);
        assert_eq!(reply_header.request_checksum, request_checksum);
        assert_eq!(reply_header.op, op);
        assert_ne!(reply_header.operation, Operation::Register.as_u8());
        assert!(op > self.op_max(), "ops only grow");
        self.end_request(client, request_checksum);

        let Ok(index) = self.session_index(client) else {
            return CommitOutcome::SessionEvicted;
        };
        let session = &mut self.sessions[index];
        assert_eq!(session.request + 1, request);
        assert_eq!(session.release, reply_header.release);
        let number = session.session;
        *session = Session::from_reply(number, &reply_header, reply);
        CommitOutcome::Stored
    }

    /// Appends the committed state (sessions and stored replies, not in-flight requests).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&ENCODING_MAGIC);
        out.extend_from_slice(&ENCODING_VERSION.to_le_bytes());
        // Cast: at most clients_max sessions, and replies at most 1 MiB (asserted at commit).
        out.extend_from_slice(&(self.sessions.len() as u32).to_le_bytes());
        for session in &self.sessions {
            out.extend_from_slice(&session.session.to_le_bytes());
            out.extend_from_slice(&(session.reply.len() as u32).to_le_bytes());
            out.extend_from_slice(&0u32.to_le_bytes());
            out.extend_from_slice(&session.reply);
        }
        let sealed = checksum(&out[start..]);
        out.extend_from_slice(&sealed.to_le_bytes());
    }

    /// Rebuilds a table from [`SessionTable::encode`]'s bytes, checking every invariant.
    pub fn decode(bytes: &[u8], config: SessionConfig) -> Result<SessionTable, DecodeError> {
        let mut table = SessionTable::new(config);
        let Some(content_size) = bytes.len().checked_sub(ENCODING_CHECKSUM_SIZE) else {
            return Err(DecodeError::Truncated);
        };
        let (content, sealed) = bytes.split_at(content_size);
        let mut reader = Reader { bytes: content };
        if reader.array::<8>()? != ENCODING_MAGIC {
            return Err(DecodeError::Magic);
        }
        if u128::from_le_bytes(array_from(sealed)) != checksum(content) {
            return Err(DecodeError::Checksum);
        }
        let version = u32::from_le_bytes(reader.array()?);
        if version != ENCODING_VERSION {
            return Err(DecodeError::Version { version });
        }
        let count = u32::from_le_bytes(reader.array()?);
        if count as usize > config.clients_max {
            return Err(DecodeError::SessionCount {
                count,
                clients_max: config.clients_max,
            });
        }
        debug_assert_eq!(content.len() - reader.bytes.len(), ENCODING_PREFIX_SIZE);
        for _ in 0..count {
            let session = SessionTable::decode_session(&mut reader)?;
            if table
                .sessions
                .last()
                .is_some_and(|last| last.client >= session.client)
            {
                return Err(DecodeError::ClientOrder);
            }
            table.sessions.push(session);
        }
        if !reader.bytes.is_empty() {
            return Err(DecodeError::TrailingBytes {
                size: reader.bytes.len(),
            });
        }
        let mut ops: Vec<u64> = table.sessions.iter().map(|session| session.op).collect();
        ops.sort_unstable();
        if let Some(pair) = ops.windows(2).find(|pair| pair[0] == pair[1]) {
            return Err(DecodeError::OpDuplicate { op: pair[0] });
        }
        Ok(table)
    }

    fn decode_session(reader: &mut Reader<'_>) -> Result<Session, DecodeError> {
        let before = reader.bytes.len();
        let session = u64::from_le_bytes(reader.array()?);
        let reply_size = u32::from_le_bytes(reader.array()?);
        if u32::from_le_bytes(reader.array()?) != 0 {
            return Err(DecodeError::Reserved);
        }
        debug_assert_eq!(before - reader.bytes.len(), ENCODING_ENTRY_SIZE);
        if (reply_size as usize) < HEADER_SIZE || reply_size as usize > MESSAGE_SIZE_MAX {
            return Err(DecodeError::ReplySize { size: reply_size });
        }
        let reply = reader.take(reply_size as usize)?;
        let reply_header = reply_verify(reply).ok_or(DecodeError::Reply)?;
        let register = reply_header.request == 0;
        if session == 0 || session > reply_header.op || (register && session != reply_header.op) {
            return Err(DecodeError::SessionNumber {
                session,
                op: reply_header.op,
            });
        }
        Ok(Session::from_reply(session, &reply_header, reply.to_vec()))
    }
}

/// The header of a reply this server built; any failure is a bug in the caller.
fn reply_parse(reply: &[u8]) -> ReplyHeader {
    assert!(reply.len() <= MESSAGE_SIZE_MAX);
    // Unwrap: a reply built by encode_reply is valid and whole (asserted right here).
    reply_verify(reply).expect("committed reply is a valid reply message")
}

/// A stored reply checked as a receiver would: both checksums and the validity rules.
fn reply_verify(reply: &[u8]) -> Option<ReplyHeader> {
    let header = Header::from_prefix(reply)?;
    if !header.checksum_valid() || verify_body(&header, &reply[HEADER_SIZE..]).is_err() {
        return None;
    }
    match header.parse() {
        Ok(ParsedHeader::Reply(reply_header)) => Some(reply_header),
        Ok(_) | Err(_) => None,
    }
}

fn array_from<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut array = [0u8; N];
    array.copy_from_slice(bytes);
    array
}

/// A cursor over encoded bytes that fails with `Truncated` rather than panicking.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, size: usize) -> Result<&'a [u8], DecodeError> {
        if self.bytes.len() < size {
            return Err(DecodeError::Truncated);
        }
        let (taken, rest) = self.bytes.split_at(size);
        self.bytes = rest;
        Ok(taken)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        self.take(N).map(array_from)
    }
}
