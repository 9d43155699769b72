//! The fixed-size records of TigerBeetle's data model (`ledger.md` §1), byte for byte.
//!
//! Every record is `#[repr(C)]`, little-endian, with no implicit padding, so that a record can be
//! viewed as its wire bytes and back without copying field by field. The layouts are checked at
//! compile time against the offsets of the spec.

use core::mem::{offset_of, size_of};

#[cfg(not(target_endian = "little"))]
compile_error!("Tally's records are little-endian on the wire and on disk");

/// The largest amount; posting a pending transfer with it posts the full pending amount.
pub const AMOUNT_MAX: u128 = u128::MAX;
/// Object timestamps live in 63 bits (TigerBeetle keeps the top bit for LSM tombstones).
/// The lowest valid object timestamp, in nanoseconds; 0 means "not yet stamped".
pub const TIMESTAMP_MIN: u64 = 1;
/// The highest valid object timestamp, in nanoseconds: the largest 63-bit value.
pub const TIMESTAMP_MAX: u64 = (1 << 63) - 1;
/// Nanoseconds per second: transfer timeouts are in seconds, timestamps in nanoseconds.
pub const NS_PER_S: u64 = 1_000_000_000;

/// Declares a u16/u32 flags newtype with named bits and a mask of the bits that are defined.
macro_rules! flags {
    ($(#[$meta:meta])* $name:ident: $int:ty { $($(#[$fmeta:meta])* $flag:ident = $bit:expr,)* }) => {
        $(#[$meta])*
        #[repr(transparent)]
        #[derive(Clone, Copy, Default, PartialEq, Eq, Hash, Debug)]
        pub struct $name(pub $int);

        impl $name {
            $($(#[$fmeta])* pub const $flag: $int = 1 << $bit;)*
            /// Every defined bit; the rest is padding that must be zero.
            pub const DEFINED: $int = 0 $(| (1 << $bit))*;

            /// Whether `flag` (one of the bit constants above) is set.
            #[inline]
            pub fn contains(self, flag: $int) -> bool {
                self.0 & flag != 0
            }

            /// The undefined bits that are set; anything but 0 is a `reserved_flag` failure (or
            /// an invalid filter).
            #[inline]
            pub fn padding(self) -> $int {
                self.0 & !Self::DEFINED
            }
        }
    };
}

flags! {
    /// `AccountFlags` (§1.2).
    AccountFlags: u16 {
        /// Links this event with the next in the batch: the chain succeeds or fails as a whole.
        LINKED = 0,
        /// Debits (pending and posted) may never exceed posted credits; exclusive with the next.
        DEBITS_MUST_NOT_EXCEED_CREDITS = 1,
        /// Credits (pending and posted) may never exceed posted debits.
        CREDITS_MUST_NOT_EXCEED_DEBITS = 2,
        /// Keep the balances after every transfer, for `get_account_balances`.
        HISTORY = 3,
        /// The account carries its own `timestamp` (importing history from another system).
        IMPORTED = 4,
        /// The account rejects transfers other than voiding its pending ones; set at creation
        /// or by a pending closing transfer, cleared only by voiding that transfer.
        CLOSED = 5,
    }
}

flags! {
    /// `TransferFlags` (§1.4).
    TransferFlags: u16 {
        /// Links this event with the next in the batch: the chain succeeds or fails as a whole.
        LINKED = 0,
        /// Phase one of a two-phase transfer: the amount moves to the pending balances until
        /// posted, voided or expired (after `timeout` seconds, if non-zero).
        PENDING = 1,
        /// Phase two: posts (all or part of) the pending transfer `pending_id`.
        POST_PENDING_TRANSFER = 2,
        /// Phase two: voids the pending transfer `pending_id`, releasing its amount.
        VOID_PENDING_TRANSFER = 3,
        /// Caps the amount at what the debit account can still debit under its limit.
        BALANCING_DEBIT = 4,
        /// Caps the amount at what the credit account can still credit under its limit.
        BALANCING_CREDIT = 5,
        /// Closes the debit account; requires `PENDING` (voiding reopens it).
        CLOSING_DEBIT = 6,
        /// Closes the credit account; requires `PENDING` (voiding reopens it).
        CLOSING_CREDIT = 7,
        /// The transfer carries its own `timestamp` (importing history from another system).
        IMPORTED = 8,
    }
}

flags! {
    /// `AccountFilterFlags` (§1.5).
    AccountFilterFlags: u32 {
        /// Include transfers that debit the account (at least one of the two sides is required).
        DEBITS = 0,
        /// Include transfers that credit the account.
        CREDITS = 1,
        /// Newest first instead of oldest first.
        REVERSED = 2,
    }
}

flags! {
    /// `QueryFilterFlags` (§1.5).
    QueryFilterFlags: u32 {
        /// Newest first instead of oldest first.
        REVERSED = 0,
    }
}

/// `Account` (§1.1): 128 bytes, align 16.
#[repr(C)]
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
pub struct Account {
    /// Chosen by the client; unique among accounts, neither 0 nor `u128::MAX`.
    pub id: u128,
    /// Sum of the account's pending debits not yet posted, voided or expired; 0 on create.
    pub debits_pending: u128,
    /// Sum of the account's posted debits; 0 on create.
    pub debits_posted: u128,
    /// Sum of the account's pending credits not yet posted, voided or expired; 0 on create.
    pub credits_pending: u128,
    /// Sum of the account's posted credits; 0 on create.
    pub credits_posted: u128,
    /// Opaque to the ledger (typically a foreign key); queryable, 0 meaning "none".
    pub user_data_128: u128,
    /// Opaque to the ledger; queryable, 0 meaning "none".
    pub user_data_64: u64,
    /// Opaque to the ledger; queryable, 0 meaning "none".
    pub user_data_32: u32,
    /// Must be 0 (`reserved_field`).
    pub reserved: u32,
    /// Non-zero; only accounts of the same ledger can transact with each other.
    pub ledger: u32,
    /// Non-zero; the account's type in the user's chart of accounts.
    pub code: u16,
    /// Behaviour switches; see [`AccountFlags`].
    pub flags: AccountFlags,
    /// Nanoseconds; set by the ledger on create (must be 0 in the event unless imported).
    pub timestamp: u64,
}

/// `Transfer` (§1.3): 128 bytes, align 16.
#[repr(C)]
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
pub struct Transfer {
    /// Chosen by the client; unique among transfers, neither 0 nor `u128::MAX`.
    pub id: u128,
    /// The account debited.
    pub debit_account_id: u128,
    /// The account credited; must differ from the debit account.
    pub credit_account_id: u128,
    /// What moves, in the ledger's unit; 0 is allowed. For a post, `AMOUNT_MAX` means "the
    /// whole pending amount"; a balancing transfer records the amount actually moved.
    pub amount: u128,
    /// For a post or void, the id of the pending transfer it resolves; otherwise 0.
    pub pending_id: u128,
    /// Opaque to the ledger (typically a foreign key); queryable, 0 meaning "none".
    pub user_data_128: u128,
    /// Opaque to the ledger; queryable, 0 meaning "none".
    pub user_data_64: u64,
    /// Opaque to the ledger; queryable, 0 meaning "none".
    pub user_data_32: u32,
    /// Seconds after which a pending transfer expires; 0 = never, and only pending transfers
    /// may set it.
    pub timeout: u32,
    /// Non-zero; must equal both accounts' ledger.
    pub ledger: u32,
    /// Non-zero; the transfer's type, chosen by the user.
    pub code: u16,
    /// Behaviour switches; see [`TransferFlags`].
    pub flags: TransferFlags,
    /// Nanoseconds; set by the ledger on create (must be 0 in the event unless imported).
    pub timestamp: u64,
}

/// `AccountBalance` (§1.5): an account's balances right after the transfer with `timestamp`.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct AccountBalance {
    /// The account's `debits_pending` after the transfer.
    pub debits_pending: u128,
    /// The account's `debits_posted` after the transfer.
    pub debits_posted: u128,
    /// The account's `credits_pending` after the transfer.
    pub credits_pending: u128,
    /// The account's `credits_posted` after the transfer.
    pub credits_posted: u128,
    /// The timestamp of the transfer this row follows, in nanoseconds.
    pub timestamp: u64,
    /// Always zero.
    pub reserved: [u8; 56],
}

/// `AccountFilter` (§1.5), the argument of `get_account_transfers` and `get_account_balances`.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct AccountFilter {
    /// The account whose transfers are read; neither 0 nor `u128::MAX`.
    pub account_id: u128,
    /// Only transfers with this `user_data_128`; 0 matches any.
    pub user_data_128: u128,
    /// Only transfers with this `user_data_64`; 0 matches any.
    pub user_data_64: u64,
    /// Only transfers with this `user_data_32`; 0 matches any.
    pub user_data_32: u32,
    /// Only transfers with this `code`; 0 matches any.
    pub code: u16,
    /// Must be zero, or the filter is invalid (empty result).
    pub reserved: [u8; 58],
    /// Lowest transfer timestamp included, in nanoseconds; 0 = unbounded.
    pub timestamp_min: u64,
    /// Highest transfer timestamp included, in nanoseconds; 0 = unbounded.
    pub timestamp_max: u64,
    /// Most results wanted; 0 makes the filter invalid. The reply may cap it further.
    pub limit: u32,
    /// Which sides and which order; see [`AccountFilterFlags`].
    pub flags: AccountFilterFlags,
}

/// `QueryFilter` (§1.5), the argument of `query_accounts` and `query_transfers`.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct QueryFilter {
    /// Only objects with this `user_data_128`; 0 matches any.
    pub user_data_128: u128,
    /// Only objects with this `user_data_64`; 0 matches any.
    pub user_data_64: u64,
    /// Only objects with this `user_data_32`; 0 matches any.
    pub user_data_32: u32,
    /// Only objects of this ledger; 0 matches any.
    pub ledger: u32,
    /// Only objects with this `code`; 0 matches any.
    pub code: u16,
    /// Must be zero, or the filter is invalid (empty result).
    pub reserved: [u8; 6],
    /// Lowest object timestamp included, in nanoseconds; 0 = unbounded.
    pub timestamp_min: u64,
    /// Highest object timestamp included, in nanoseconds; 0 = unbounded.
    pub timestamp_max: u64,
    /// Most results wanted; 0 makes the filter invalid. The reply may cap it further.
    pub limit: u32,
    /// Result order; see [`QueryFilterFlags`].
    pub flags: QueryFilterFlags,
}

/// `CreateAccountResult` / `CreateTransferResult` (§1.5): one per event, dense, in event order.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct CreateResult<S> {
    /// For `created` and `exists`, the object's timestamp; for a failure, the timestamp the
    /// event was validated at (failed events still consume one, §2.1).
    pub timestamp: u64,
    /// What became of the event.
    pub status: S,
    /// Always zero.
    pub reserved: u32,
}

/// The result of one `create_accounts` event.
pub type CreateAccountResult = CreateResult<CreateAccountStatus>;
/// The result of one `create_transfers` event.
pub type CreateTransferResult = CreateResult<CreateTransferStatus>;

/// Declares a create-status enum (`#[repr(u32)]`, discriminants = wire values) together with the
/// list of its statuses and the decoder from wire values, from one list: a status added to the
/// enum is in `ALL` and decodes, by construction.
macro_rules! status_enum {
    (
        $(#[$meta:meta])*
        $name:ident { $($(#[$vmeta:meta])* $variant:ident = $value:literal,)* }
    ) => {
        $(#[$meta])*
        #[repr(u32)]
        #[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant = $value,)*
        }

        impl $name {
            /// Every status, `created` first, then in precedence order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];

            /// The status with wire value `value`, or `None` for a value that is no status
            /// (never panics: the value may come from the network).
            pub fn from_u32(value: u32) -> Option<$name> {
                match value {
                    $($value => Some($name::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

status_enum! {
    /// `CreateAccountStatus` (§2.2). Discriminants are the wire values.
    CreateAccountStatus {
        /// The account was created; the result carries its timestamp.
        Created = 0xFFFF_FFFF,
        /// Another event of the same linked chain failed, so this one was not applied.
        LinkedEventFailed = 1,
        /// The batch's last event has `linked` set: the chain never closes.
        LinkedEventChainOpen = 2,
        /// The batch's first event is imported, this one is not.
        ImportedEventExpected = 22,
        /// The batch's first event is not imported, this one is.
        ImportedEventNotExpected = 23,
        /// A non-imported event carries a timestamp; the ledger assigns it.
        TimestampMustBeZero = 3,
        /// An imported timestamp is 0 or does not fit in 63 bits.
        ImportedEventTimestampOutOfRange = 24,
        /// An imported timestamp is not below the batch's own timestamp (it would be in the
        /// future).
        ImportedEventTimestampMustNotAdvance = 25,
        /// `reserved` is not zero.
        ReservedField = 4,
        /// An undefined flag bit is set.
        ReservedFlag = 5,
        /// `id` is 0.
        IdMustNotBeZero = 6,
        /// `id` is `u128::MAX`.
        IdMustNotBeIntMax = 7,
        /// An account with this id exists with other flags.
        ExistsWithDifferentFlags = 15,
        /// An account with this id exists with another `user_data_128`.
        ExistsWithDifferentUserData128 = 16,
        /// An account with this id exists with another `user_data_64`.
        ExistsWithDifferentUserData64 = 17,
        /// An account with this id exists with another `user_data_32`.
        ExistsWithDifferentUserData32 = 18,
        /// An account with this id exists with another ledger.
        ExistsWithDifferentLedger = 19,
        /// An account with this id exists with another code.
        ExistsWithDifferentCode = 20,
        /// An identical account already exists (a retry): treat as `Created`; the result carries
        /// the original timestamp.
        Exists = 21,
        /// Both balance limits (`debits_must_not_exceed_credits` and
        /// `credits_must_not_exceed_debits`) are set.
        FlagsAreMutuallyExclusive = 8,
        /// `debits_pending` is not zero: balances only change through transfers.
        DebitsPendingMustBeZero = 9,
        /// `debits_posted` is not zero.
        DebitsPostedMustBeZero = 10,
        /// `credits_pending` is not zero.
        CreditsPendingMustBeZero = 11,
        /// `credits_posted` is not zero.
        CreditsPostedMustBeZero = 12,
        /// `ledger` is 0.
        LedgerMustNotBeZero = 13,
        /// `code` is 0.
        CodeMustNotBeZero = 14,
        /// An imported timestamp is not above every existing account's, or equals a transfer's.
        ImportedEventTimestampMustNotRegress = 26,
    }
}

status_enum! {
    /// `CreateTransferStatus` (§2.3). Discriminants are the wire values.
    CreateTransferStatus {
        /// The transfer was created; the result carries its timestamp.
        Created = 0xFFFF_FFFF,
        /// Another event of the same linked chain failed, so this one was not applied.
        LinkedEventFailed = 1,
        /// The batch's last event has `linked` set: the chain never closes.
        LinkedEventChainOpen = 2,
        /// The batch's first event is imported, this one is not.
        ImportedEventExpected = 56,
        /// The batch's first event is not imported, this one is.
        ImportedEventNotExpected = 57,
        /// A non-imported event carries a timestamp; the ledger assigns it.
        TimestampMustBeZero = 3,
        /// An imported timestamp is 0 or does not fit in 63 bits.
        ImportedEventTimestampOutOfRange = 58,
        /// An imported timestamp is not below the batch's own timestamp (it would be in the
        /// future).
        ImportedEventTimestampMustNotAdvance = 59,
        /// An undefined flag bit is set.
        ReservedFlag = 4,
        /// `id` is 0.
        IdMustNotBeZero = 5,
        /// `id` is `u128::MAX`.
        IdMustNotBeIntMax = 6,
        /// A transfer with this id exists with other flags.
        ExistsWithDifferentFlags = 36,
        /// A transfer with this id exists with another `pending_id`.
        ExistsWithDifferentPendingId = 40,
        /// A transfer with this id exists with another timeout.
        ExistsWithDifferentTimeout = 44,
        /// A transfer with this id exists with another debit account.
        ExistsWithDifferentDebitAccountId = 37,
        /// A transfer with this id exists with another credit account.
        ExistsWithDifferentCreditAccountId = 38,
        /// A transfer with this id exists with another amount (for a balancing transfer: a larger
        /// one than this retry asks for).
        ExistsWithDifferentAmount = 39,
        /// A transfer with this id exists with another `user_data_128`.
        ExistsWithDifferentUserData128 = 41,
        /// A transfer with this id exists with another `user_data_64`.
        ExistsWithDifferentUserData64 = 42,
        /// A transfer with this id exists with another `user_data_32`.
        ExistsWithDifferentUserData32 = 43,
        /// A transfer with this id exists with another ledger.
        ExistsWithDifferentLedger = 67,
        /// A transfer with this id exists with another code.
        ExistsWithDifferentCode = 45,
        /// An identical transfer already exists (a retry): treat as `Created`; the result carries
        /// the original timestamp.
        Exists = 46,
        /// A transfer with this id failed earlier with a transient status: the id is retired, so a
        /// retry cannot flip to success.
        IdAlreadyFailed = 68,
        /// The flags combine things that exclude each other (pending with post or void, post with
        /// void, post or void with balancing or closing).
        FlagsAreMutuallyExclusive = 7,
        /// `debit_account_id` is 0.
        DebitAccountIdMustNotBeZero = 8,
        /// `debit_account_id` is `u128::MAX`.
        DebitAccountIdMustNotBeIntMax = 9,
        /// `credit_account_id` is 0.
        CreditAccountIdMustNotBeZero = 10,
        /// `credit_account_id` is `u128::MAX`.
        CreditAccountIdMustNotBeIntMax = 11,
        /// The debit and credit accounts are the same.
        AccountsMustBeDifferent = 12,
        /// A transfer that is not a post or void has a `pending_id`.
        PendingIdMustBeZero = 13,
        /// A post or void has no `pending_id`.
        PendingIdMustNotBeZero = 14,
        /// `pending_id` is `u128::MAX`.
        PendingIdMustNotBeIntMax = 15,
        /// A post or void names itself as the pending transfer.
        PendingIdMustBeDifferent = 16,
        /// A transfer that is not pending has a timeout.
        TimeoutReservedForPendingTransfer = 17,
        /// A closing flag is set without `pending`.
        ClosingTransferMustBePending = 64,
        /// `ledger` is 0.
        LedgerMustNotBeZero = 19,
        /// `code` is 0.
        CodeMustNotBeZero = 20,
        /// No account has `debit_account_id` (transient: retires the id).
        DebitAccountNotFound = 21,
        /// No account has `credit_account_id` (transient: retires the id).
        CreditAccountNotFound = 22,
        /// The two accounts belong to different ledgers.
        AccountsMustHaveTheSameLedger = 23,
        /// The transfer's ledger differs from its accounts'.
        TransferMustHaveTheSameLedgerAsAccounts = 24,
        /// No transfer has `pending_id` (transient: retires the id).
        PendingTransferNotFound = 25,
        /// The transfer `pending_id` names is not a pending transfer.
        PendingTransferNotPending = 26,
        /// A non-zero debit account differs from the pending transfer's.
        PendingTransferHasDifferentDebitAccountId = 27,
        /// A non-zero credit account differs from the pending transfer's.
        PendingTransferHasDifferentCreditAccountId = 28,
        /// A non-zero ledger differs from the pending transfer's.
        PendingTransferHasDifferentLedger = 29,
        /// A non-zero code differs from the pending transfer's.
        PendingTransferHasDifferentCode = 30,
        /// A post asks for more than the pending amount.
        ExceedsPendingTransferAmount = 31,
        /// A void names an amount other than the pending amount (0 means the whole of it).
        PendingTransferHasDifferentAmount = 32,
        /// The pending transfer was already posted.
        PendingTransferAlreadyPosted = 33,
        /// The pending transfer was already voided.
        PendingTransferAlreadyVoided = 34,
        /// The pending transfer's timeout has passed (whether or not the expiry has run yet).
        PendingTransferExpired = 35,
        /// An imported timestamp is not above every existing transfer's, or equals an account's.
        ImportedEventTimestampMustNotRegress = 60,
        /// An imported timestamp is not after the debit account's.
        ImportedEventTimestampMustPostdateDebitAccount = 61,
        /// An imported timestamp is not after the credit account's.
        ImportedEventTimestampMustPostdateCreditAccount = 62,
        /// An imported pending transfer has a timeout: imported transfers never expire.
        ImportedEventTimeoutMustBeZero = 63,
        /// The debit account is closed (transient: retires the id).
        DebitAccountAlreadyClosed = 65,
        /// The credit account is closed (transient: retires the id).
        CreditAccountAlreadyClosed = 66,
        /// The debit account's `debits_pending` would overflow u128.
        OverflowsDebitsPending = 47,
        /// The credit account's `credits_pending` would overflow u128.
        OverflowsCreditsPending = 48,
        /// The debit account's `debits_posted` would overflow u128.
        OverflowsDebitsPosted = 49,
        /// The credit account's `credits_posted` would overflow u128.
        OverflowsCreditsPosted = 50,
        /// The debit account's pending plus posted debits would overflow u128.
        OverflowsDebits = 51,
        /// The credit account's pending plus posted credits would overflow u128.
        OverflowsCredits = 52,
        /// The expiry instant, `timestamp + timeout` in nanoseconds, would not fit in 63 bits.
        OverflowsTimeout = 53,
        /// The debit account's `debits_must_not_exceed_credits` limit would break (transient:
        /// retires the id).
        ExceedsCredits = 54,
        /// The credit account's `credits_must_not_exceed_debits` limit would break (transient:
        /// retires the id).
        ExceedsDebits = 55,
    }
}

impl CreateTransferStatus {
    /// Failures that depend on the state of other objects at the time of the attempt. A transfer
    /// that fails with one of these has its id retired (`id_already_failed` from then on), so
    /// that a retry with the same id can never flip from failure to success (§2.1).
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            Self::DebitAccountNotFound
                | Self::CreditAccountNotFound
                | Self::PendingTransferNotFound
                | Self::ExceedsCredits
                | Self::ExceedsDebits
                | Self::DebitAccountAlreadyClosed
                | Self::CreditAccountAlreadyClosed
        )
    }
}

/// What became of a pending transfer (`TransferPending.status`, §1.5).
#[repr(u8)]
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum PendingStatus {
    /// Not a pending transfer (single-phase, or itself a post or void).
    None = 0,
    /// Pending: its amount sits in the accounts' pending balances.
    Pending = 1,
    /// Posted by a later transfer.
    Posted = 2,
    /// Voided by a later transfer.
    Voided = 3,
    /// Its timeout passed before it was posted or voided.
    Expired = 4,
}

impl Account {
    /// Whether debiting `amount` more would break `debits_must_not_exceed_credits` (pending debits
    /// count against the limit, pending credits do not).
    pub fn debits_exceed_credits(&self, amount: u128) -> bool {
        self.flags
            .contains(AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS)
            && self.debits_pending + self.debits_posted + amount > self.credits_posted
    }

    /// Whether crediting `amount` more would break `credits_must_not_exceed_debits`.
    pub fn credits_exceed_debits(&self, amount: u128) -> bool {
        self.flags
            .contains(AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS)
            && self.credits_pending + self.credits_posted + amount > self.debits_posted
    }
}

impl Transfer {
    /// `timeout` in nanoseconds; a pending transfer expires at `timestamp + timeout_ns()`.
    pub fn timeout_ns(&self) -> u64 {
        u64::from(self.timeout) * NS_PER_S
    }
}

impl AccountFilter {
    /// All fields zero: not a valid filter by itself (no account, no side, `limit` 0), but the
    /// base to set fields on (the 58 reserved bytes are too many for a derived `Default`).
    pub const fn zeroed() -> Self {
        Self {
            account_id: 0,
            user_data_128: 0,
            user_data_64: 0,
            user_data_32: 0,
            code: 0,
            reserved: [0; 58],
            timestamp_min: 0,
            timestamp_max: 0,
            limit: 0,
            flags: AccountFilterFlags(0),
        }
    }
}

impl QueryFilter {
    /// All fields zero: matches everything but has `limit` 0, so set at least `limit`.
    pub const fn zeroed() -> Self {
        Self {
            user_data_128: 0,
            user_data_64: 0,
            user_data_32: 0,
            ledger: 0,
            code: 0,
            reserved: [0; 6],
            timestamp_min: 0,
            timestamp_max: 0,
            limit: 0,
            flags: QueryFilterFlags(0),
        }
    }
}

/// A record that is plain old data: every bit pattern of its size is a valid value (all fields are
/// integers or integer newtypes, and there is no padding), so it can be read from and written to
/// wire and disk bytes directly.
///
/// # Safety
/// Implement only for `#[repr(C)]` structs made of integers with no implicit padding; the
/// compile-time asserts below prove it for each implementor.
pub unsafe trait Record: Copy + 'static {
    /// The record's size in bytes, on the wire and in memory alike.
    const SIZE: usize = size_of::<Self>();

    /// The record's `SIZE` wire bytes, without copying.
    fn as_bytes(&self) -> &[u8] {
        // SAFETY: `Record` types have no padding, so all `SIZE` bytes are initialised.
        unsafe { core::slice::from_raw_parts((self as *const Self).cast::<u8>(), Self::SIZE) }
    }

    /// Reads one record from the first `SIZE` bytes of `bytes` (any alignment).
    fn read_from(bytes: &[u8]) -> Self {
        assert!(bytes.len() >= Self::SIZE);
        // SAFETY: length checked above; `read_unaligned` handles any alignment, and every bit
        // pattern is a valid `Record`.
        unsafe { core::ptr::read_unaligned(bytes.as_ptr().cast::<Self>()) }
    }

    /// Views `bytes` as records when they are suitably aligned and sized, else `None` (the
    /// caller then copies with `read_from`).
    fn slice_from(bytes: &[u8]) -> Option<&[Self]> {
        let aligned = bytes.as_ptr().align_offset(core::mem::align_of::<Self>()) == 0;
        if !aligned || !bytes.len().is_multiple_of(Self::SIZE) {
            return None;
        }
        // SAFETY: alignment and length checked above; every bit pattern is valid.
        Some(unsafe {
            core::slice::from_raw_parts(bytes.as_ptr().cast::<Self>(), bytes.len() / Self::SIZE)
        })
    }

    /// The wire bytes of consecutive records, without copying.
    fn slice_as_bytes(records: &[Self]) -> &[u8] {
        // SAFETY: no padding; the byte length is exact.
        unsafe {
            core::slice::from_raw_parts(
                records.as_ptr().cast::<u8>(),
                core::mem::size_of_val(records),
            )
        }
    }
}

// SAFETY (all four): integer fields only, no padding — proven by the size asserts below.
unsafe impl Record for Account {}
unsafe impl Record for Transfer {}
unsafe impl Record for AccountBalance {}
unsafe impl Record for AccountFilter {}
unsafe impl Record for QueryFilter {}

const _: () = {
    assert!(size_of::<Account>() == 128);
    assert!(core::mem::align_of::<Account>() == 16);
    assert!(offset_of!(Account, debits_pending) == 16);
    assert!(offset_of!(Account, debits_posted) == 32);
    assert!(offset_of!(Account, credits_pending) == 48);
    assert!(offset_of!(Account, credits_posted) == 64);
    assert!(offset_of!(Account, user_data_128) == 80);
    assert!(offset_of!(Account, user_data_64) == 96);
    assert!(offset_of!(Account, user_data_32) == 104);
    assert!(offset_of!(Account, reserved) == 108);
    assert!(offset_of!(Account, ledger) == 112);
    assert!(offset_of!(Account, code) == 116);
    assert!(offset_of!(Account, flags) == 118);
    assert!(offset_of!(Account, timestamp) == 120);

    assert!(size_of::<Transfer>() == 128);
    assert!(core::mem::align_of::<Transfer>() == 16);
    assert!(offset_of!(Transfer, debit_account_id) == 16);
    assert!(offset_of!(Transfer, credit_account_id) == 32);
    assert!(offset_of!(Transfer, amount) == 48);
    assert!(offset_of!(Transfer, pending_id) == 64);
    assert!(offset_of!(Transfer, user_data_128) == 80);
    assert!(offset_of!(Transfer, user_data_64) == 96);
    assert!(offset_of!(Transfer, user_data_32) == 104);
    assert!(offset_of!(Transfer, timeout) == 108);
    assert!(offset_of!(Transfer, ledger) == 112);
    assert!(offset_of!(Transfer, code) == 116);
    assert!(offset_of!(Transfer, flags) == 118);
    assert!(offset_of!(Transfer, timestamp) == 120);

    assert!(size_of::<AccountBalance>() == 128);
    assert!(offset_of!(AccountBalance, timestamp) == 64);

    assert!(size_of::<AccountFilter>() == 128);
    assert!(offset_of!(AccountFilter, user_data_64) == 32);
    assert!(offset_of!(AccountFilter, user_data_32) == 40);
    assert!(offset_of!(AccountFilter, code) == 44);
    assert!(offset_of!(AccountFilter, reserved) == 46);
    assert!(offset_of!(AccountFilter, timestamp_min) == 104);
    assert!(offset_of!(AccountFilter, timestamp_max) == 112);
    assert!(offset_of!(AccountFilter, limit) == 120);
    assert!(offset_of!(AccountFilter, flags) == 124);

    assert!(size_of::<QueryFilter>() == 64);
    assert!(offset_of!(QueryFilter, user_data_64) == 16);
    assert!(offset_of!(QueryFilter, user_data_32) == 24);
    assert!(offset_of!(QueryFilter, ledger) == 28);
    assert!(offset_of!(QueryFilter, code) == 32);
    assert!(offset_of!(QueryFilter, reserved) == 34);
    assert!(offset_of!(QueryFilter, timestamp_min) == 40);
    assert!(offset_of!(QueryFilter, timestamp_max) == 48);
    assert!(offset_of!(QueryFilter, limit) == 56);
    assert!(offset_of!(QueryFilter, flags) == 60);

    assert!(size_of::<CreateAccountResult>() == 16);
    assert!(size_of::<CreateTransferResult>() == 16);
};

impl<S: Copy + Into<u32>> CreateResult<S> {
    /// The 16 wire bytes: `timestamp u64, status u32, reserved u32`.
    pub fn to_bytes(&self) -> [u8; 16] {
        let mut bytes = [0u8; 16];
        bytes[0..8].copy_from_slice(&self.timestamp.to_le_bytes());
        bytes[8..12].copy_from_slice(&self.status.into().to_le_bytes());
        bytes
    }
}

impl From<CreateAccountStatus> for u32 {
    fn from(status: CreateAccountStatus) -> u32 {
        status as u32
    }
}

impl From<CreateTransferStatus> for u32 {
    fn from(status: CreateTransferStatus) -> u32 {
        status as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_decodes_from_its_wire_value_and_nothing_else_does() {
        for &status in CreateAccountStatus::ALL {
            assert_eq!(CreateAccountStatus::from_u32(status as u32), Some(status));
        }
        for &status in CreateTransferStatus::ALL {
            assert_eq!(CreateTransferStatus::from_u32(status as u32), Some(status));
        }
        assert_eq!(CreateAccountStatus::ALL.len(), 27);
        assert_eq!(CreateTransferStatus::ALL.len(), 68);
        for value in (0..=1024).chain([u32::MAX - 1]) {
            let accounts = CreateAccountStatus::ALL
                .iter()
                .filter(|&&s| s as u32 == value)
                .count();
            let transfers = CreateTransferStatus::ALL
                .iter()
                .filter(|&&s| s as u32 == value)
                .count();
            assert_eq!(
                CreateAccountStatus::from_u32(value).is_some(),
                accounts == 1
            );
            assert_eq!(
                CreateTransferStatus::from_u32(value).is_some(),
                transfers == 1
            );
            assert!(
                accounts <= 1 && transfers <= 1,
                "duplicate wire value {value}"
            );
        }
    }
}
