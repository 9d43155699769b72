//! What the state applies: each journal entry decodes into one `Command`, and every `match` on
//! it is exhaustive, so that a new kind of command is a compile error wherever it must be
//! handled. What a command consumes (one op, and the timestamps it reserves) is computed here,
//! once, for the core that stamps entries and for the state that applies them.

use tally_ledger::{Account, Record, Transfer, PULSE_EVENTS_MAX};
use tally_payments::TIMESTAMPS_PER_COMMAND;
use tally_wire::{
    decode_multi_batch, BatchShape, Header, Operation, ParsedHeader, RequestHeader, HEADER_SIZE,
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

/// A client request as logged: its parsed header and its whole message.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    /// The header, parsed once.
    pub header: RequestHeader,
    /// What it asks.
    pub operation: StateOperation,
    /// Header and body, as received.
    pub message: &'a [u8],
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
}

impl<'a> Request<'a> {
    /// Parses a logged message (replay).
    pub fn parse(message: &'a [u8]) -> Result<Request<'a>, RequestInvalid> {
        let header = Header::from_prefix(message).ok_or(RequestInvalid::Short)?;
        match header.parse() {
            Ok(ParsedHeader::Request(request)) => Request::from_header(request, message),
            Ok(_) | Err(_) => Err(RequestInvalid::NotRequest),
        }
    }

    /// A request whose header was parsed already (live: on receipt).
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
            header,
            operation,
            message,
        })
    }

    /// The request's body.
    pub fn body(&self) -> &'a [u8] {
        &self.message[HEADER_SIZE..]
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
        decode_multi_batch(self.body(), event_size)
            .map(|batches| (batches.payload().len() / event_size) as u64)
            .expect("a logged request passed body validation")
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
            Command::Request(_) => EntryKind::Request,
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
