//! The small enums of the protocol: release numbers (spec §2.7), commands (§2.4), operations
//! (§5.1) and eviction reasons (§3.5).

use std::fmt;

use crate::{
    ACCOUNT_BALANCE_SIZE, ACCOUNT_FILTER_LIMIT_OFFSET, ACCOUNT_FILTER_SIZE, ACCOUNT_SIZE,
    CHANGE_EVENTS_FILTER_LIMIT_OFFSET, CHANGE_EVENTS_FILTER_SIZE, CHANGE_EVENT_SIZE,
    CREATE_ERROR_RESULT_SIZE, CREATE_RESULT_SIZE, ID_SIZE, QUERY_FILTER_LIMIT_OFFSET,
    QUERY_FILTER_SIZE, TRANSFER_SIZE,
};

/// A release `major.minor.patch`, stored on the wire as one u32 whose bytes are
/// `patch (u8), minor (u8), major (u16 LE)` (spec §2.7). Ordering by value is release order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Release(pub u32);

impl Release {
    /// The release `major.minor.patch`.
    pub const fn new(major: u16, minor: u8, patch: u8) -> Release {
        Release(((major as u32) << 16) | ((minor as u32) << 8) | patch as u32)
    }

    /// The major number (the u32's high 16 bits).
    pub const fn major(self) -> u16 {
        (self.0 >> 16) as u16
    }

    /// The minor number (bits 8–15).
    pub const fn minor(self) -> u8 {
        (self.0 >> 8) as u8
    }

    /// The patch number (the low byte).
    pub const fn patch(self) -> u8 {
        self.0 as u8
    }
}

impl fmt::Display for Release {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major(), self.minor(), self.patch())
    }
}

/// The header's `command` byte (offset 114). Every value TigerBeetle's enum has, so that a
/// known-but-foreign command can be told apart from a byte outside the enum (spec §1.3: the
/// latter closes the connection, the former is merely invalid for a client connection).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Command {
    /// Never valid.
    Reserved = 0,
    /// Replica to replica: liveness probe.
    Ping = 1,
    /// Replica to replica: answer to `Ping`.
    Pong = 2,
    /// Client to server: keeps the connection alive and learns the server's view and release.
    PingClient = 3,
    /// Server to client: answer to `PingClient`.
    PongClient = 4,
    /// Client to server: `register` or a state-machine operation.
    Request = 5,
    /// Replica to replica: an operation to replicate.
    Prepare = 6,
    /// Replica to replica: acknowledges a `Prepare`.
    PrepareOk = 7,
    /// Server to client: the result of a request.
    Reply = 8,
    /// Replica to replica: the primary's commit number.
    Commit = 9,
    /// Replica to replica: view change.
    ExitView = 10,
    /// Replica to replica: view change.
    JoinView = 11,
    /// Retired; never reused.
    Deprecated12 = 12,
    /// Replica to replica: view change.
    GetView = 13,
    /// Replica to replica: repair.
    GetHeaders = 14,
    /// Replica to replica: repair.
    GetPrepare = 15,
    /// Replica to replica: repair.
    GetReply = 16,
    /// Replica to replica: repair.
    Headers = 17,
    /// Server to client: the session is over for good; the client must stop.
    Eviction = 18,
    /// Replica to replica: grid repair.
    GetBlocks = 19,
    /// Replica to replica: grid repair.
    Block = 20,
    /// Retired; never reused.
    Deprecated21 = 21,
    /// Retired; never reused.
    Deprecated22 = 22,
    /// Retired; never reused.
    Deprecated23 = 23,
    /// Replica to replica: view change.
    View = 24,
}

impl Command {
    /// The command with wire value `value`; `None` for a byte outside TigerBeetle's enum.
    pub const fn from_u8(value: u8) -> Option<Command> {
        Some(match value {
            0 => Command::Reserved,
            1 => Command::Ping,
            2 => Command::Pong,
            3 => Command::PingClient,
            4 => Command::PongClient,
            5 => Command::Request,
            6 => Command::Prepare,
            7 => Command::PrepareOk,
            8 => Command::Reply,
            9 => Command::Commit,
            10 => Command::ExitView,
            11 => Command::JoinView,
            12 => Command::Deprecated12,
            13 => Command::GetView,
            14 => Command::GetHeaders,
            15 => Command::GetPrepare,
            16 => Command::GetReply,
            17 => Command::Headers,
            18 => Command::Eviction,
            19 => Command::GetBlocks,
            20 => Command::Block,
            21 => Command::Deprecated21,
            22 => Command::Deprecated22,
            23 => Command::Deprecated23,
            24 => Command::View,
            _ => return None,
        })
    }
}

/// The `operation` byte of requests and replies (spec §5.1). Values 7–127 and 148–255 are not
/// operations at all and have no variant: [`Operation::from_u8`] returns `None` for them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Operation {
    /// Never valid.
    Reserved = 0,
    /// VSR: the operation of the log's root prepare (op 0); never sent by clients.
    Root = 1,
    /// Opens a session: request 0 of every client, body `RegisterRequest`.
    Register = 2,
    /// VSR reconfiguration; not for clients.
    Reconfigure = 3,
    /// VSR's own pulse; requires `client = 0`, so no client can send it validly.
    VsrPulse = 4,
    /// VSR release upgrade; not for clients.
    Upgrade = 5,
    /// VSR no-op; TigerBeetle answers a client's with an empty reply, Tally evicts.
    Noop = 6,
    /// The state machine's internal expiry operation (128 + 0).
    Pulse = 128,
    /// Pre-multi-batch encoding of `create_accounts`; not supported.
    DeprecatedCreateAccountsUnbatched = 129,
    /// Pre-multi-batch encoding of `create_transfers`; not supported.
    DeprecatedCreateTransfersUnbatched = 130,
    /// Pre-multi-batch encoding of `lookup_accounts`; not supported.
    DeprecatedLookupAccountsUnbatched = 131,
    /// Pre-multi-batch encoding of `lookup_transfers`; not supported.
    DeprecatedLookupTransfersUnbatched = 132,
    /// Pre-multi-batch encoding of `get_account_transfers`; not supported.
    DeprecatedGetAccountTransfersUnbatched = 133,
    /// Pre-multi-batch encoding of `get_account_balances`; not supported.
    DeprecatedGetAccountBalancesUnbatched = 134,
    /// Pre-multi-batch encoding of `query_accounts`; not supported.
    DeprecatedQueryAccountsUnbatched = 135,
    /// Pre-multi-batch encoding of `query_transfers`; not supported.
    DeprecatedQueryTransfersUnbatched = 136,
    /// Change data capture: transfers with both accounts after them; one filter, not multi-batch.
    GetChangeEvents = 137,
    /// `create_accounts` of 0.16 clients (sparse 8-byte results); not supported.
    DeprecatedCreateAccountsSparse = 138,
    /// `create_transfers` of 0.16 clients (sparse 8-byte results); not supported.
    DeprecatedCreateTransfersSparse = 139,
    /// Ids in, the accounts found out (missing ids omitted).
    LookupAccounts = 140,
    /// Ids in, the transfers found out (missing ids omitted).
    LookupTransfers = 141,
    /// One `AccountFilter` per batch, an account's transfers out.
    GetAccountTransfers = 142,
    /// One `AccountFilter` per batch, an account's historical balances out.
    GetAccountBalances = 143,
    /// One `QueryFilter` per batch, matching accounts out.
    QueryAccounts = 144,
    /// One `QueryFilter` per batch, matching transfers out.
    QueryTransfers = 145,
    /// Accounts in, one `CreateAccountResult` per account out.
    CreateAccounts = 146,
    /// Transfers in, one `CreateTransferResult` per transfer out.
    CreateTransfers = 147,
}

/// How a request batch of a state-machine operation is shaped (spec §5.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BatchShape {
    /// Any number of events, one result per event at most (creates, lookups).
    Events,
    /// Exactly one filter per batch; up to `limit` results, the u32 `limit` at this offset.
    Filter {
        /// Byte offset of the u32 `limit` inside the filter.
        limit_offset: usize,
    },
}

impl Operation {
    /// Operations 0–127 belong to VSR; the state machine's start at this value.
    pub const STATE_MACHINE_FIRST: u8 = 128;

    /// The operation with wire value `value`; `None` for 7–127 and 148–255.
    pub const fn from_u8(value: u8) -> Option<Operation> {
        Some(match value {
            0 => Operation::Reserved,
            1 => Operation::Root,
            2 => Operation::Register,
            3 => Operation::Reconfigure,
            4 => Operation::VsrPulse,
            5 => Operation::Upgrade,
            6 => Operation::Noop,
            128 => Operation::Pulse,
            129 => Operation::DeprecatedCreateAccountsUnbatched,
            130 => Operation::DeprecatedCreateTransfersUnbatched,
            131 => Operation::DeprecatedLookupAccountsUnbatched,
            132 => Operation::DeprecatedLookupTransfersUnbatched,
            133 => Operation::DeprecatedGetAccountTransfersUnbatched,
            134 => Operation::DeprecatedGetAccountBalancesUnbatched,
            135 => Operation::DeprecatedQueryAccountsUnbatched,
            136 => Operation::DeprecatedQueryTransfersUnbatched,
            137 => Operation::GetChangeEvents,
            138 => Operation::DeprecatedCreateAccountsSparse,
            139 => Operation::DeprecatedCreateTransfersSparse,
            140 => Operation::LookupAccounts,
            141 => Operation::LookupTransfers,
            142 => Operation::GetAccountTransfers,
            143 => Operation::GetAccountBalances,
            144 => Operation::QueryAccounts,
            145 => Operation::QueryTransfers,
            146 => Operation::CreateAccounts,
            147 => Operation::CreateTransfers,
            _ => return None,
        })
    }

    /// The wire value.
    pub const fn as_u8(self) -> u8 {
        self as u8
    }

    /// The name TigerBeetle's clients use, in snake case (a metric label).
    pub const fn name(self) -> &'static str {
        match self {
            Operation::Reserved => "reserved",
            Operation::Root => "root",
            Operation::Register => "register",
            Operation::Reconfigure => "reconfigure",
            Operation::VsrPulse => "vsr_pulse",
            Operation::Upgrade => "upgrade",
            Operation::Noop => "noop",
            Operation::Pulse => "pulse",
            Operation::DeprecatedCreateAccountsUnbatched => "deprecated_create_accounts_unbatched",
            Operation::DeprecatedCreateTransfersUnbatched => {
                "deprecated_create_transfers_unbatched"
            }
            Operation::DeprecatedLookupAccountsUnbatched => "deprecated_lookup_accounts_unbatched",
            Operation::DeprecatedLookupTransfersUnbatched => {
                "deprecated_lookup_transfers_unbatched"
            }
            Operation::DeprecatedGetAccountTransfersUnbatched => {
                "deprecated_get_account_transfers_unbatched"
            }
            Operation::DeprecatedGetAccountBalancesUnbatched => {
                "deprecated_get_account_balances_unbatched"
            }
            Operation::DeprecatedQueryAccountsUnbatched => "deprecated_query_accounts_unbatched",
            Operation::DeprecatedQueryTransfersUnbatched => "deprecated_query_transfers_unbatched",
            Operation::GetChangeEvents => "get_change_events",
            Operation::DeprecatedCreateAccountsSparse => "deprecated_create_accounts_sparse",
            Operation::DeprecatedCreateTransfersSparse => "deprecated_create_transfers_sparse",
            Operation::LookupAccounts => "lookup_accounts",
            Operation::LookupTransfers => "lookup_transfers",
            Operation::GetAccountTransfers => "get_account_transfers",
            Operation::GetAccountBalances => "get_account_balances",
            Operation::QueryAccounts => "query_accounts",
            Operation::QueryTransfers => "query_transfers",
            Operation::CreateAccounts => "create_accounts",
            Operation::CreateTransfers => "create_transfers",
        }
    }

    /// What Tally executes: `register` and the operations the 0.17.x client library sends
    /// (spec §5.1: 137 and 140–147). Everything else that passes the header rules is answered
    /// with the eviction `invalid_request_operation` (spec §4.5 step 5, §5.7).
    pub const fn is_supported(self) -> bool {
        match self {
            Operation::Register
            | Operation::GetChangeEvents
            | Operation::LookupAccounts
            | Operation::LookupTransfers
            | Operation::GetAccountTransfers
            | Operation::GetAccountBalances
            | Operation::QueryAccounts
            | Operation::QueryTransfers
            | Operation::CreateAccounts
            | Operation::CreateTransfers => true,
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
            | Operation::DeprecatedCreateTransfersSparse => false,
        }
    }

    /// Size of one request element; `None` for operations without events (VSR, pulse).
    pub const fn event_size(self) -> Option<usize> {
        Some(match self {
            Operation::Reserved
            | Operation::Root
            | Operation::Register
            | Operation::Reconfigure
            | Operation::VsrPulse
            | Operation::Upgrade
            | Operation::Noop
            | Operation::Pulse => return None,
            Operation::DeprecatedCreateAccountsUnbatched
            | Operation::DeprecatedCreateAccountsSparse
            | Operation::CreateAccounts => ACCOUNT_SIZE,
            Operation::DeprecatedCreateTransfersUnbatched
            | Operation::DeprecatedCreateTransfersSparse
            | Operation::CreateTransfers => TRANSFER_SIZE,
            Operation::DeprecatedLookupAccountsUnbatched
            | Operation::DeprecatedLookupTransfersUnbatched
            | Operation::LookupAccounts
            | Operation::LookupTransfers => ID_SIZE,
            Operation::DeprecatedGetAccountTransfersUnbatched
            | Operation::DeprecatedGetAccountBalancesUnbatched
            | Operation::GetAccountTransfers
            | Operation::GetAccountBalances => ACCOUNT_FILTER_SIZE,
            Operation::DeprecatedQueryAccountsUnbatched
            | Operation::DeprecatedQueryTransfersUnbatched
            | Operation::QueryAccounts
            | Operation::QueryTransfers => QUERY_FILTER_SIZE,
            Operation::GetChangeEvents => CHANGE_EVENTS_FILTER_SIZE,
        })
    }

    /// Size of one reply element; `None` for operations without events (VSR, pulse).
    pub const fn result_size(self) -> Option<usize> {
        Some(match self {
            Operation::Reserved
            | Operation::Root
            | Operation::Register
            | Operation::Reconfigure
            | Operation::VsrPulse
            | Operation::Upgrade
            | Operation::Noop
            | Operation::Pulse => return None,
            Operation::DeprecatedCreateAccountsUnbatched
            | Operation::DeprecatedCreateTransfersUnbatched
            | Operation::DeprecatedCreateAccountsSparse
            | Operation::DeprecatedCreateTransfersSparse => CREATE_ERROR_RESULT_SIZE,
            Operation::CreateAccounts | Operation::CreateTransfers => CREATE_RESULT_SIZE,
            Operation::DeprecatedLookupAccountsUnbatched
            | Operation::DeprecatedQueryAccountsUnbatched
            | Operation::LookupAccounts
            | Operation::QueryAccounts => ACCOUNT_SIZE,
            Operation::DeprecatedLookupTransfersUnbatched
            | Operation::DeprecatedGetAccountTransfersUnbatched
            | Operation::DeprecatedQueryTransfersUnbatched
            | Operation::LookupTransfers
            | Operation::GetAccountTransfers
            | Operation::QueryTransfers => TRANSFER_SIZE,
            Operation::DeprecatedGetAccountBalancesUnbatched | Operation::GetAccountBalances => {
                ACCOUNT_BALANCE_SIZE
            }
            Operation::GetChangeEvents => CHANGE_EVENT_SIZE,
        })
    }

    /// Whether request and reply bodies use the multi-batch encoding (spec §5.1–5.2).
    pub const fn is_multi_batch(self) -> bool {
        matches!(
            self,
            Operation::DeprecatedCreateAccountsSparse
                | Operation::DeprecatedCreateTransfersSparse
                | Operation::LookupAccounts
                | Operation::LookupTransfers
                | Operation::GetAccountTransfers
                | Operation::GetAccountBalances
                | Operation::QueryAccounts
                | Operation::QueryTransfers
                | Operation::CreateAccounts
                | Operation::CreateTransfers
        )
    }

    /// The shape of one batch of a state-machine operation; `None` for VSR operations and pulse.
    pub const fn batch_shape(self) -> Option<BatchShape> {
        Some(match self {
            Operation::Reserved
            | Operation::Root
            | Operation::Register
            | Operation::Reconfigure
            | Operation::VsrPulse
            | Operation::Upgrade
            | Operation::Noop
            | Operation::Pulse => return None,
            Operation::DeprecatedCreateAccountsUnbatched
            | Operation::DeprecatedCreateTransfersUnbatched
            | Operation::DeprecatedLookupAccountsUnbatched
            | Operation::DeprecatedLookupTransfersUnbatched
            | Operation::DeprecatedCreateAccountsSparse
            | Operation::DeprecatedCreateTransfersSparse
            | Operation::LookupAccounts
            | Operation::LookupTransfers
            | Operation::CreateAccounts
            | Operation::CreateTransfers => BatchShape::Events,
            Operation::DeprecatedGetAccountTransfersUnbatched
            | Operation::DeprecatedGetAccountBalancesUnbatched
            | Operation::GetAccountTransfers
            | Operation::GetAccountBalances => BatchShape::Filter {
                limit_offset: ACCOUNT_FILTER_LIMIT_OFFSET,
            },
            Operation::DeprecatedQueryAccountsUnbatched
            | Operation::DeprecatedQueryTransfersUnbatched
            | Operation::QueryAccounts
            | Operation::QueryTransfers => BatchShape::Filter {
                limit_offset: QUERY_FILTER_LIMIT_OFFSET,
            },
            Operation::GetChangeEvents => BatchShape::Filter {
                limit_offset: CHANGE_EVENTS_FILTER_LIMIT_OFFSET,
            },
        })
    }
}

/// `Eviction.Reason` (spec §3.5): why the server ended a client's session for good.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum EvictionReason {
    /// The client has no session: never registered, or evicted to make room (LRU).
    NoSession = 1,
    /// The client's release is older than the oldest Tally accepts.
    ClientReleaseTooLow = 2,
    /// The client's release is newer than the server's.
    ClientReleaseTooHigh = 3,
    /// The operation is not one the server executes.
    InvalidRequestOperation = 4,
    /// The body fails validation (spec §5.6).
    InvalidRequestBody = 5,
    /// The request exceeds the advertised size limit, or a register body is not 256 bytes.
    InvalidRequestBodySize = 6,
    /// The request names an older session than the client's current one.
    SessionTooLow = 7,
    /// The request's release differs from the one the session registered with.
    SessionReleaseMismatch = 8,
}

impl EvictionReason {
    /// `None` for 0 (`reserved`, never valid) and for values above 8.
    pub const fn from_u8(value: u8) -> Option<EvictionReason> {
        Some(match value {
            1 => EvictionReason::NoSession,
            2 => EvictionReason::ClientReleaseTooLow,
            3 => EvictionReason::ClientReleaseTooHigh,
            4 => EvictionReason::InvalidRequestOperation,
            5 => EvictionReason::InvalidRequestBody,
            6 => EvictionReason::InvalidRequestBodySize,
            7 => EvictionReason::SessionTooLow,
            8 => EvictionReason::SessionReleaseMismatch,
            _ => return None,
        })
    }

    /// The wire value (offset 255 of an eviction header).
    pub const fn as_u8(self) -> u8 {
        self as u8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_encoding_matches_spec() {
        assert_eq!(Release::new(0, 17, 9).0, 0x0000_1109);
        assert_eq!(
            Release::new(0, 17, 9).0.to_le_bytes(),
            [0x09, 0x11, 0x00, 0x00]
        );
        assert_eq!(Release::new(65535, 0, 0).0, 0xFFFF_0000);
        assert_eq!(Release(0xFFFF_0000).to_string(), "65535.0.0");
        assert!(Release::new(0, 17, 10) > Release::new(0, 17, 9));
        assert!(Release::new(0, 16, 255) < Release::new(0, 17, 0));
    }

    #[test]
    fn enums_round_trip_their_bytes() {
        for value in 0..=u8::MAX {
            if let Some(command) = Command::from_u8(value) {
                assert_eq!(command as u8, value);
            } else {
                assert!(value > 24);
            }
            if let Some(operation) = Operation::from_u8(value) {
                assert_eq!(operation.as_u8(), value);
                assert_eq!(operation.event_size().is_some(), value > 128);
                assert_eq!(operation.result_size().is_some(), value > 128);
                assert_eq!(operation.batch_shape().is_some(), value > 128);
            } else {
                assert!((7..128).contains(&value) || value > 147);
            }
            match EvictionReason::from_u8(value) {
                Some(reason) => assert_eq!(reason.as_u8(), value),
                None => assert!(value == 0 || value > 8),
            }
        }
    }

    #[test]
    fn supported_operations_are_register_and_the_client_library_set() {
        let supported: Vec<u8> = (0..=u8::MAX)
            .filter(|value| Operation::from_u8(*value).is_some_and(Operation::is_supported))
            .collect();
        assert_eq!(
            supported,
            vec![2, 137, 140, 141, 142, 143, 144, 145, 146, 147]
        );
    }
}
