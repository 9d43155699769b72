//! TigerBeetle's client protocol (0.17.x), as a pure codec plus the server's session table.
//!
//! Everything here is a function of bytes and arguments: no I/O, no clocks, no threads. The
//! authority is `shared/spec/tigerbeetle-wire.md` (cited below as "spec §n"); `docs/wire.md`
//! describes what this crate implements and where it deviates from TigerBeetle.
//!
//! The layers, from the socket inwards:
//!
//! * [`frame`]: a message is a 256-byte [`Header`] followed by `size − 256` body bytes
//!   (spec §1.2–1.3). [`FrameReader`] splits a byte stream into messages inside a buffer that
//!   grows to the message being read (at most 1 MiB) and is freed when drained, and verifies
//!   checksums, size and cluster; any [`FrameError`] means "close the connection".
//! * [`header`]: typed field access, the per-command validity rules of spec §2.6/§3 (a failure
//!   means "drop the message silently"), and builders for every message the server sends
//!   (reply with its `context`, register reply, pong, eviction) and the client sends.
//! * [`multi_batch`]: the trailer encoding of request and reply bodies (spec §5.2).
//! * [`body`]: request body validation (spec §5.6), TigerBeetle's `input_valid`.
//! * [`session`]: the client session table of spec §4.3–4.10 — the decision for each request
//!   and ping, committed replies kept byte for byte, LRU eviction, checkpoint encoding.
//!
//! All integers on the wire are little-endian.

pub mod body;
pub mod frame;
pub mod header;
pub mod multi_batch;
pub mod protocol;
pub mod session;

pub use body::{event_max, validate_request_body, BodyError};
pub use frame::{
    verify_body, verify_header, FrameError, FrameReader, Message, READ_BUFFER_SIZE_MIN,
};
pub use header::{
    encode_eviction, encode_ping_client, encode_pong_client, encode_register_reply, encode_reply,
    encode_request, EvictionHeader, Header, InvalidHeader, ParsedHeader, PingClientHeader,
    PongClientHeader, ReplyHeader, ReplyParams, RequestHeader, RequestParams,
};
pub use multi_batch::{
    decode_multi_batch, decode_multi_batch_aligned, trailer_size, Batches, MultiBatch,
    MultiBatchEncodeError, MultiBatchEncoder, MultiBatchError,
};
pub use protocol::{BatchShape, Command, EvictionReason, Operation, Release};
pub use session::{
    CommitOutcome, DecodeError, DropReason, PingDecision, RequestDecision, Session, SessionConfig,
    SessionTable,
};

/// Size of every message header; the body starts at this offset (spec §1.2).
pub const HEADER_SIZE: usize = 256;

/// Largest message, header included (spec §1.4: TigerBeetle's `message_size_max`).
pub const MESSAGE_SIZE_MAX: usize = 1 << 20;

/// Largest message body: 1,048,320 bytes.
pub const MESSAGE_BODY_SIZE_MAX: usize = MESSAGE_SIZE_MAX - HEADER_SIZE;

/// Smallest request size limit TigerBeetle allows (`--limit-request` minimum, spec §1.4).
pub const REQUEST_SIZE_MIN: usize = 4096;

/// Smallest `batch_size_limit` a server may advertise: the smallest request minus its header.
pub const BATCH_SIZE_LIMIT_MIN: u32 = (REQUEST_SIZE_MIN - HEADER_SIZE) as u32;

/// Largest `batch_size_limit` a server may advertise; the client aborts above it (spec §4.2).
pub const BATCH_SIZE_LIMIT_MAX: u32 = MESSAGE_BODY_SIZE_MAX as u32;

/// Sessions TigerBeetle keeps per cluster (spec §4.9); the default capacity of the table.
pub const CLIENTS_MAX: usize = 64;

/// `vsr.Version`: the only protocol number there is (spec §2.5).
pub const PROTOCOL: u16 = 0;

/// The release Tally claims: the newest client release it supports (spec §2.7).
pub const RELEASE: Release = Release::new(0, 17, 9);

/// The oldest client release Tally accepts: older clients use other operation numbers and
/// encodings (spec §2.7, §5.7).
pub const RELEASE_CLIENT_MIN: Release = Release::new(0, 17, 0);

/// Body of a register request: `RegisterRequest { batch_size_limit: u32, reserved: [252]u8 }`.
pub const REGISTER_REQUEST_SIZE: usize = 256;

/// Body of a register reply: `RegisterResult { batch_size_limit: u32, reserved: [60]u8 }`.
pub const REGISTER_RESULT_SIZE: usize = 64;

// Event and result sizes of spec §5.1 and §5.4.

/// `Account`: the event of `create_accounts`, the result of lookups and queries of accounts.
pub const ACCOUNT_SIZE: usize = 128;
/// `Transfer`: the event of `create_transfers`, the result of transfer lookups and queries.
pub const TRANSFER_SIZE: usize = 128;
/// A `u128` id: the event of `lookup_accounts` and `lookup_transfers`.
pub const ID_SIZE: usize = 16;
/// `AccountFilter`: the event of `get_account_transfers` and `get_account_balances`.
pub const ACCOUNT_FILTER_SIZE: usize = 128;
/// `AccountBalance`: the result of `get_account_balances`.
pub const ACCOUNT_BALANCE_SIZE: usize = 128;
/// `QueryFilter`: the event of `query_accounts` and `query_transfers`.
pub const QUERY_FILTER_SIZE: usize = 64;
/// `ChangeEventsFilter`: the whole body of a `get_change_events` request (not multi-batch).
pub const CHANGE_EVENTS_FILTER_SIZE: usize = 64;
/// `ChangeEvent`: one transfer and both its accounts, the result of `get_change_events`.
pub const CHANGE_EVENT_SIZE: usize = 384;
/// `CreateAccountResult` / `CreateTransferResult`: `timestamp u64, status u32, reserved u32`.
pub const CREATE_RESULT_SIZE: usize = 16;
/// Deprecated sparse create results (`index u32, result u32`), only for operations 129, 130,
/// 138 and 139, which Tally rejects; kept so that their sizes are known.
pub const CREATE_ERROR_RESULT_SIZE: usize = 8;

// Offset of the `limit` u32 inside each filter (spec §5.4): a reply's size bound depends on it.

/// Offset of `limit` in an `AccountFilter`.
pub const ACCOUNT_FILTER_LIMIT_OFFSET: usize = 120;
/// Offset of `limit` in a `QueryFilter`.
pub const QUERY_FILTER_LIMIT_OFFSET: usize = 56;
/// Offset of `limit` in a `ChangeEventsFilter` (after `timestamp_min` and `timestamp_max`).
pub const CHANGE_EVENTS_FILTER_LIMIT_OFFSET: usize = 16;

/// Largest number of batches in one multi-batch body: `0xFFFF` is the padding value (spec §5.2).
pub const BATCH_COUNT_MAX: u16 = 0xFFFE;
