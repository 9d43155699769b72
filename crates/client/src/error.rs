//! Errors a call can end with.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tally_wire::{EvictionReason, MultiBatchError};

/// Why a call failed. Cloneable: one failure (an eviction, a broken reply) may end many calls.
#[derive(Clone, Debug, thiserror::Error)]
pub enum ClientError {
    /// The call carries more than one request can: more events than fit the server's
    /// `batch_size_limit` (8,189 creates or lookups with the default limit), or a query `limit`
    /// whose worst-case reply exceeds a message (above 8,189). Nothing was sent; the client
    /// stays usable.
    #[error("too much data for one request")]
    TooMuchData,

    /// The server ended this client's session (spec §4.8). Terminal: this call, every pending
    /// call and every later call fail with the same error. Create a new client to go on.
    #[error("evicted by the server: {0:?}")]
    Evicted(EvictionReason),

    /// [`crate::Client::connect`] could not connect and register within the configured
    /// `connect_timeout`.
    #[error(
        "no session with {address} within {timeout:?} ({})",
        last_error.as_ref().map_or_else(|| "no register reply".to_string(), |e| e.to_string())
    )]
    ConnectTimeout {
        /// The server address tried.
        address: SocketAddr,
        /// The `connect_timeout` that ran out.
        timeout: Duration,
        /// The last connection error, if connecting was what failed.
        last_error: Option<Arc<io::Error>>,
    },

    /// The server broke the protocol. [`ProtocolError::is_terminal`] tells whether the client
    /// went down with it (then every pending and later call fails with the same error) or
    /// only the calls of the affected request failed.
    #[error("protocol violation by the server: {0}")]
    Protocol(#[from] ProtocolError),

    /// A create result carries a status value that is no `CreateAccountStatus` /
    /// `CreateTransferStatus`. The other calls of the request are unaffected.
    #[error("unknown create status {0}")]
    UnknownStatus(u32),

    /// The client's background task is gone (the runtime shut down).
    #[error("the client is closed")]
    Closed,
}

/// How a server broke the protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// The register reply's `batch_size_limit` is 0 or above 1,048,320 (terminal).
    #[error("register reply announces batch_size_limit {0}, outside 1..=1048320")]
    BatchSizeLimit(u32),
    /// A reply for this client carries another release than its request (terminal).
    #[error("reply release {release:#010x} is not the request's")]
    ReplyRelease {
        /// The reply's release, as its wire u32.
        release: u32,
    },
    /// A reply for this client answers a request that is not the one in flight: a later request
    /// number, another checksum or another operation (terminal).
    #[error(
        "reply (request {request}, operation {operation}) does not answer the request in flight \
         (request {expected_request}, operation {expected_operation}, checksum matches: \
         {checksum_matches})"
    )]
    ReplyMismatch {
        /// The request number the reply answers.
        request: u32,
        /// The operation the reply answers, as its wire byte.
        operation: u8,
        /// The number of the request in flight.
        expected_request: u32,
        /// The operation of the request in flight.
        expected_operation: u8,
        /// Whether the reply's `request_checksum` is that of the request in flight.
        checksum_matches: bool,
    },
    /// The reply body is not a multi-batch encoding (the request's calls fail).
    #[error("reply body: {0}")]
    ReplyBody(MultiBatchError),
    /// The reply has another batch count than the request (the request's calls fail).
    #[error("reply has {found} batches, the request had {expected}")]
    BatchCount {
        /// Batches in the request.
        expected: u16,
        /// Batches in the reply.
        found: u16,
    },
    /// A reply batch holds more results than its call could get, or, for creates, not exactly
    /// one result per event (the call fails).
    #[error("reply batch holds {results} results; expected {} {expected}", if *.exact { "exactly" } else { "at most" })]
    ResultCount {
        /// Results in the reply batch.
        results: u32,
        /// Events of the call (creates) or its most results (lookups, queries).
        expected: u32,
        /// Whether `expected` is exact (creates) or an upper bound.
        exact: bool,
    },
}

impl ProtocolError {
    /// Whether this violation ended the client (the session cannot be trusted any more).
    pub fn is_terminal(&self) -> bool {
        match self {
            ProtocolError::BatchSizeLimit(_)
            | ProtocolError::ReplyRelease { .. }
            | ProtocolError::ReplyMismatch { .. } => true,
            ProtocolError::ReplyBody(_)
            | ProtocolError::BatchCount { .. }
            | ProtocolError::ResultCount { .. } => false,
        }
    }
}
