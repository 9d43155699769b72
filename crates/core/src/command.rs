//! What the state applies: each journal entry decodes into one `Command`, and every `match` on
//! it is exhaustive, so that a new kind of command is a compile error wherever it must be
//! handled. What a command consumes (one op, and the timestamps it reserves) is computed here,
//! once, for the core that stamps entries and for the state that applies them.

use tally_ledger::{Account, Record, Transfer, PULSE_EVENTS_MAX};
use tally_payments::TIMESTAMPS_PER_COMMAND;
use tally_wire::{
    decode_multi_batch_aligned, BatchShape, Header, MultiBatch, Operation, ParsedHeader, Release,
    RequestHeader, HEADER_SIZE,
};

use crate::entry::EntryKind;

/// A state-machine operation that a logged request may carry: the operations that pass the
/// session checks. Narrower than the wire's `Operation`, so that dispatch needs no wildcard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateOperation {
    /// Opens a session.
    Register,
    /// `get_change_events` (answered empty: no change events are kept).
    GetChangeEvents,
    /// An operation on multi-batch bodies of events.
    Batch(BatchOperation),
}

/// The operations whose bodies are multi-batches of events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BatchOperation {
    /// `create_accounts`.
    CreateAccounts,
    /// `create_transfers`.
    CreateTransfers,
    /// `lookup_accounts`.
    LookupAccounts,
    /// `lookup_transfers`.
    LookupTransfers,
    /// `get_account_transfers`.
    GetAccountTransfers,
    /// `get_account_balances`.
    GetAccountBalances,
    /// `query_accounts`.
    QueryAccounts,
    /// `query_transfers`.
    QueryTransfers,
}

impl StateOperation {
    /// The state operation a wire operation names, if it is one the state executes.
    pub fn from_operation(operation: Operation) -> Option<StateOperation> {
        use BatchOperation as B;
        let batch = |operation| Some(StateOperation::Batch(operation));
        match operation {
            Operation::Register => Some(StateOperation::Register),
            Operation::GetChangeEvents => Some(StateOperation::GetChangeEvents),
            Operation::CreateAccounts => batch(B::CreateAccounts),
            Operation::CreateTransfers => batch(B::CreateTransfers),
            Operation::LookupAccounts => batch(B::LookupAccounts),
            Operation::LookupTransfers => batch(B::LookupTransfers),
            Operation::GetAccountTransfers => batch(B::GetAccountTransfers),
            Operation::GetAccountBalances => batch(B::GetAccountBalances),
            Operation::QueryAccounts => batch(B::QueryAccounts),
            Operation::QueryTransfers => batch(B::QueryTransfers),
            Operation::Reserved
            | Operation::Root
            | Operation::Reconfigure
            | Operation::VsrPulse
            | Operation::Upgrade
            | Operation::Noop
            | Operation::Pulse
            | Operation::DeprecatedCreateAccountsUnbatched
            | Operation::DeprecatedCreateTransfersUnbatched
            | Operation::DeprecatedLookupAccountsUnbatched
            | Operation::DeprecatedLookupTransfersUnbatched
            | Operation::DeprecatedGetAccountTransfersUnbatched
            | Operation::DeprecatedGetAccountBalancesUnbatched
            | Operation::DeprecatedQueryAccountsUnbatched
            | Operation::DeprecatedQueryTransfersUnbatched
            | Operation::DeprecatedCreateAccountsSparse
            | Operation::DeprecatedCreateTransfersSparse => None,
        }
    }

    /// Whether the operation only reads (its one effect on the state is the session's stored
    /// reply).
    pub fn is_read(self) -> bool {
        match self {
            StateOperation::Register => false,
            StateOperation::GetChangeEvents => true,
            StateOperation::Batch(operation) => operation.creates_events() == 0,
        }
    }
}

impl BatchOperation {
    /// The wire operation.
    pub fn operation(self) -> Operation {
        match self {
            BatchOperation::CreateAccounts => Operation::CreateAccounts,
            BatchOperation::CreateTransfers => Operation::CreateTransfers,
            BatchOperation::LookupAccounts => Operation::LookupAccounts,
            BatchOperation::LookupTransfers => Operation::LookupTransfers,
            BatchOperation::GetAccountTransfers => Operation::GetAccountTransfers,
            BatchOperation::GetAccountBalances => Operation::GetAccountBalances,
            BatchOperation::QueryAccounts => Operation::QueryAccounts,
            BatchOperation::QueryTransfers => Operation::QueryTransfers,
        }
    }

    /// Timestamps each event takes: 1 for creates, 0 for reads.
    pub fn creates_events(self) -> u64 {
        match self {
            BatchOperation::CreateAccounts | BatchOperation::CreateTransfers => 1,
            BatchOperation::LookupAccounts
            | BatchOperation::LookupTransfers
            | BatchOperation::GetAccountTransfers
            | BatchOperation::GetAccountBalances
            | BatchOperation::QueryAccounts
            | BatchOperation::QueryTransfers => 0,
        }
    }
}

// The ledger's records are the wire's events: one definition of their sizes.
const _: () = assert!(Transfer::SIZE == tally_wire::TRANSFER_SIZE);
const _: () = assert!(Account::SIZE == tally_wire::ACCOUNT_SIZE);
const _: () = assert!(tally_ledger::AccountFilter::SIZE == tally_wire::ACCOUNT_FILTER_SIZE);
const _: () = assert!(tally_ledger::QueryFilter::SIZE == tally_wire::QUERY_FILTER_SIZE);
const _: () = assert!(tally_ledger::AccountBalance::SIZE == tally_wire::ACCOUNT_BALANCE_SIZE);
// A full request of the largest batch fits the ledger's batch limit.
const _: () = assert!(
    (tally_wire::MESSAGE_BODY_SIZE_MAX / tally_wire::TRANSFER_SIZE)
        <= tally_ledger::BATCH_EVENTS_MAX
);

/// What replaying one admin command costs, in events (see `Request::replay_cost`).
pub(crate) const ADMIN_REPLAY_COST: u64 = 64;

/// The most results one filter returns (a reply body of 128-byte results).
const RESULTS_PER_FILTER_MAX: u32 =
    ((tally_wire::MESSAGE_BODY_SIZE_MAX - 128) / tally_wire::TRANSFER_SIZE) as u32;

/// Bytes of a compact request's header (`EntryKind::RequestCompact`).
pub(crate) const COMPACT_HEADER_SIZE: usize = 48;
/// What a compact request's body trailer is padded to: the entry alignment, so that the body
/// (payload, then trailer) keeps the entries after it aligned.
pub(crate) const COMPACT_TRAILER_ALIGNMENT: usize = crate::entry::ENTRY_ALIGNMENT;
// The body of a compact request starts aligned, for in-place reads of its events.
const _: () = assert!(
    (crate::entry::ENTRY_HEADER_SIZE + COMPACT_HEADER_SIZE) % crate::entry::ENTRY_ALIGNMENT == 0
);

/// A client request as logged: the header fields replay reads, and the body.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    /// The request header's checksum: what identifies the request (a resend has the same); the
    /// session stores it and the reply header carries it.
    pub checksum: u128,
    /// The client's id.
    pub client: u128,
    /// The request number.
    pub request: u32,
    /// The client's release (the reply header echoes it).
    pub release: Release,
    /// The wire operation byte (the reply header echoes it).
    pub operation_wire: u8,
    /// What it asks.
    pub operation: StateOperation,
    /// The body, as received (`EntryKind::Request`) or with its trailer padded to
    /// `COMPACT_TRAILER_ALIGNMENT` (`EntryKind::RequestCompact`).
    body: &'a [u8],
    /// Which of the two the entry holds.
    kind: EntryKind,
}

/// Why a message is not a request the state can execute.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RequestInvalid {
    /// Shorter than a header.
    #[error("message shorter than a header")]
    Short,
    /// The header does not parse as a request.
    #[error("not a request")]
    NotRequest,
    /// The header's size disagrees with the message.
    #[error("header size {header} but message of {message} bytes")]
    Size {
        /// Size the header claims.
        header: u32,
        /// Bytes present.
        message: usize,
    },
    /// The operation is not one the state executes.
    #[error("operation {0} is not executable")]
    Operation(u8),
    /// A compact request's reserved bytes are not zero.
    #[error("compact request with non-zero reserved bytes")]
    Reserved,
}

impl<'a> Request<'a> {
    /// Parses a logged message (replay of an `EntryKind::Request`).
    pub fn parse(message: &'a [u8]) -> Result<Request<'a>, RequestInvalid> {
        let header = Header::from_prefix(message).ok_or(RequestInvalid::Short)?;
        match header.parse() {
            Ok(ParsedHeader::Request(request)) => Request::from_header(request, message),
            Ok(_) | Err(_) => Err(RequestInvalid::NotRequest),
        }
    }

    /// A request whose header was parsed already (live: on receipt), with its whole message.
    pub fn from_header(
        header: RequestHeader,
        message: &'a [u8],
    ) -> Result<Request<'a>, RequestInvalid> {
        if header.size as usize != message.len() {
            return Err(RequestInvalid::Size {
                header: header.size,
                message: message.len(),
            });
        }
        let operation = Operation::from_u8(header.operation)
            .and_then(StateOperation::from_operation)
            .ok_or(RequestInvalid::Operation(header.operation))?;
        Ok(Request {
            checksum: header.checksum,
            client: header.client,
            request: header.request,
            release: header.release,
            operation_wire: header.operation,
            operation,
            body: &message[HEADER_SIZE..],
            kind: EntryKind::Request,
        })
    }

    /// Parses a compact request (replay of an `EntryKind::RequestCompact`):
    ///
    /// | offset | size | field |
    /// |---:|---:|---|
    /// | 0 | 16 | `checksum` of the request header |
    /// | 16 | 16 | `client` |
    /// | 32 | 4 | `request` |
    /// | 36 | 4 | `release` |
    /// | 40 | 1 | `operation` |
    /// | 41 | 7 | reserved, zero |
    /// | 48 | | the body, its trailer padded to 16 bytes |
    pub fn parse_compact(bytes: &'a [u8]) -> Result<Request<'a>, RequestInvalid> {
        let header = bytes
            .get(..COMPACT_HEADER_SIZE)
            .ok_or(RequestInvalid::Short)?;
        if header[41..].iter().any(|&byte| byte != 0) {
            return Err(RequestInvalid::Reserved);
        }
        let u128_at = |at: usize| u128::from_le_bytes(header[at..at + 16].try_into().expect("16"));
        let u32_at = |at: usize| u32::from_le_bytes(header[at..at + 4].try_into().expect("4"));
        let operation_wire = header[40];
        // Only batch operations are logged compact: a register keeps its whole message.
        let operation = Operation::from_u8(operation_wire)
            .and_then(StateOperation::from_operation)
            .filter(|operation| matches!(operation, StateOperation::Batch(_)))
            .ok_or(RequestInvalid::Operation(operation_wire))?;
        Ok(Request {
            checksum: u128_at(0),
            client: u128_at(16),
            request: u32_at(32),
            release: Release(u32_at(36)),
            operation_wire,
            operation,
            body: &bytes[COMPACT_HEADER_SIZE..],
            kind: EntryKind::RequestCompact,
        })
    }

    /// Appends the compact form of a batch request (`parse_compact` reads it back) and returns
    /// `true`; returns `false`, appending nothing, for a register or `get_change_events`, which
    /// are logged as their whole message. A 1-transfer request takes 192 bytes instead of 512:
    /// the header's other fields (cluster, size, view, parent, session, body checksum, …) are
    /// checked on receipt and read by nothing after, and the record's checksum covers the
    /// entry's bytes.
    pub fn compact(&self, out: &mut Vec<u8>) -> bool {
        if !matches!(self.operation, StateOperation::Batch(_)) {
            return false;
        }
        let start = out.len();
        out.extend_from_slice(&self.checksum.to_le_bytes());
        out.extend_from_slice(&self.client.to_le_bytes());
        out.extend_from_slice(&self.request.to_le_bytes());
        out.extend_from_slice(&self.release.0.to_le_bytes());
        out.push(self.operation_wire);
        out.extend_from_slice(&[0; 7]);
        assert_eq!(out.len() - start, COMPACT_HEADER_SIZE);
        self.multi_batch().repad(COMPACT_TRAILER_ALIGNMENT, out);
        assert_eq!((out.len() - start) % COMPACT_TRAILER_ALIGNMENT, 0);
        true
    }

    /// The entry kind the request was read from.
    pub fn entry_kind(&self) -> EntryKind {
        self.kind
    }

    /// The request's body.
    pub fn body(&self) -> &'a [u8] {
        self.body
    }

    /// Where the body starts in the entry's bytes.
    pub fn body_offset(&self) -> usize {
        match self.kind {
            EntryKind::RequestCompact => COMPACT_HEADER_SIZE,
            EntryKind::Request | EntryKind::Pulse | EntryKind::Admin => HEADER_SIZE,
        }
    }

    /// What the body's trailer is padded to.
    pub fn trailer_alignment(&self) -> usize {
        match (self.kind, self.operation) {
            (EntryKind::RequestCompact, _) => COMPACT_TRAILER_ALIGNMENT,
            (_, StateOperation::Batch(operation)) => operation
                .operation()
                .event_size()
                .expect("batch operations have an event size"),
            // Not a multi-batch: never decoded as one.
            (_, StateOperation::Register | StateOperation::GetChangeEvents) => 1,
        }
    }

    /// The body of a batch request, decoded (it passed validation on receipt).
    fn multi_batch(&self) -> MultiBatch<'a> {
        let StateOperation::Batch(operation) = self.operation else {
            unreachable!("only batch requests have multi-batch bodies");
        };
        let event_size = operation
            .operation()
            .event_size()
            .expect("batch operations have an event size");
        decode_multi_batch_aligned(self.body, event_size, self.trailer_alignment())
            .expect("a logged request passed body validation")
    }

    /// What replaying the request costs, in events: its events, or for a filter read the
    /// most results its filters may return.
    pub fn replay_cost(&self) -> u64 {
        let StateOperation::Batch(operation) = self.operation else {
            return 1;
        };
        let events = self.batch_event_count();
        let per_event = match operation.operation().batch_shape() {
            Some(BatchShape::Filter { .. }) => u64::from(RESULTS_PER_FILTER_MAX),
            Some(BatchShape::Events) | None => 1,
        };
        1 + events * per_event
    }

    /// Events in a batch request's body, over all its batches.
    pub(crate) fn batch_event_count(&self) -> u64 {
        let StateOperation::Batch(operation) = self.operation else {
            return 0;
        };
        let event_size = operation
            .operation()
            .event_size()
            .expect("batch operations have an event size");
        (self.multi_batch().payload().len() / event_size) as u64
    }
}

/// One entry of a journal record, decoded.
#[derive(Debug)]
pub enum Command<'a> {
    /// A TigerBeetle client request.
    Request(Request<'a>),
    /// Expires pending transfers whose timeout has passed.
    Pulse,
    /// An Admin API mutation.
    Admin(Box<tally_payments::Command>),
}

impl Command<'_> {
    /// Timestamps an admin command reserves: fixed, so that the core stamps an admin entry
    /// without decoding it and later entries never depend on a command's outcome.
    pub const ADMIN_TIMESTAMPS_RESERVED: u64 = TIMESTAMPS_PER_COMMAND;

    /// The entry kind this command is logged as.
    pub fn kind(&self) -> EntryKind {
        match self {
            Command::Request(request) => request.entry_kind(),
            Command::Pulse => EntryKind::Pulse,
            Command::Admin(_) => EntryKind::Admin,
        }
    }

    /// Timestamps the command takes above its entry's base timestamp: one per created event
    /// for creates, the pulse's whole batch, a fixed reservation for admin commands, none for
    /// reads and registers. The next entry's base is above `base + timestamps_reserved()`.
    pub fn timestamps_reserved(&self) -> u64 {
        match self {
            Command::Request(request) => match request.operation {
                StateOperation::Register | StateOperation::GetChangeEvents => 0,
                StateOperation::Batch(operation) => {
                    operation.creates_events() * request.batch_event_count()
                }
            },
            Command::Pulse => PULSE_EVENTS_MAX as u64,
            Command::Admin(_) => Self::ADMIN_TIMESTAMPS_RESERVED,
        }
    }
}

/// Encodes an admin command for the log (postcard: compact, with a stable format).
pub fn admin_encode(command: &tally_payments::Command) -> Vec<u8> {
    postcard::to_allocvec(command).expect("commands encode: no foreign types")
}

/// Decodes an admin command from the log.
pub fn admin_decode(bytes: &[u8]) -> Result<tally_payments::Command, postcard::Error> {
    postcard::from_bytes(bytes)
}
