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
pub const TIMESTAMP_MIN: u64 = 1;
pub const TIMESTAMP_MAX: u64 = (1 << 63) - 1;
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

            #[inline]
            pub fn contains(self, flag: $int) -> bool {
                self.0 & flag != 0
            }

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
        LINKED = 0,
        DEBITS_MUST_NOT_EXCEED_CREDITS = 1,
        CREDITS_MUST_NOT_EXCEED_DEBITS = 2,
        HISTORY = 3,
        IMPORTED = 4,
        CLOSED = 5,
    }
}

flags! {
    /// `TransferFlags` (§1.4).
    TransferFlags: u16 {
        LINKED = 0,
        PENDING = 1,
        POST_PENDING_TRANSFER = 2,
        VOID_PENDING_TRANSFER = 3,
        BALANCING_DEBIT = 4,
        BALANCING_CREDIT = 5,
        CLOSING_DEBIT = 6,
        CLOSING_CREDIT = 7,
        IMPORTED = 8,
    }
}

flags! {
    /// `AccountFilterFlags` (§1.5).
    AccountFilterFlags: u32 {
        DEBITS = 0,
        CREDITS = 1,
        REVERSED = 2,
    }
}

flags! {
    /// `QueryFilterFlags` (§1.5).
    QueryFilterFlags: u32 {
        REVERSED = 0,
    }
}

/// `Account` (§1.1): 128 bytes, align 16.
#[repr(C)]
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
pub struct Account {
    pub id: u128,
    pub debits_pending: u128,
    pub debits_posted: u128,
    pub credits_pending: u128,
    pub credits_posted: u128,
    pub user_data_128: u128,
    pub user_data_64: u64,
    pub user_data_32: u32,
    pub reserved: u32,
    pub ledger: u32,
    pub code: u16,
    pub flags: AccountFlags,
    pub timestamp: u64,
}

/// `Transfer` (§1.3): 128 bytes, align 16.
#[repr(C)]
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
pub struct Transfer {
    pub id: u128,
    pub debit_account_id: u128,
    pub credit_account_id: u128,
    pub amount: u128,
    pub pending_id: u128,
    pub user_data_128: u128,
    pub user_data_64: u64,
    pub user_data_32: u32,
    pub timeout: u32,
    pub ledger: u32,
    pub code: u16,
    pub flags: TransferFlags,
    pub timestamp: u64,
}

/// `AccountBalance` (§1.5): an account's balances right after the transfer with `timestamp`.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct AccountBalance {
    pub debits_pending: u128,
    pub debits_posted: u128,
    pub credits_pending: u128,
    pub credits_posted: u128,
    pub timestamp: u64,
    pub reserved: [u8; 56],
}

/// `AccountFilter` (§1.5), the argument of `get_account_transfers` and `get_account_balances`.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct AccountFilter {
    pub account_id: u128,
    pub user_data_128: u128,
    pub user_data_64: u64,
    pub user_data_32: u32,
    pub code: u16,
    pub reserved: [u8; 58],
    pub timestamp_min: u64,
    pub timestamp_max: u64,
    pub limit: u32,
    pub flags: AccountFilterFlags,
}

/// `QueryFilter` (§1.5), the argument of `query_accounts` and `query_transfers`.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct QueryFilter {
    pub user_data_128: u128,
    pub user_data_64: u64,
    pub user_data_32: u32,
    pub ledger: u32,
    pub code: u16,
    pub reserved: [u8; 6],
    pub timestamp_min: u64,
    pub timestamp_max: u64,
    pub limit: u32,
    pub flags: QueryFilterFlags,
}

/// `CreateAccountResult` / `CreateTransferResult` (§1.5): one per event, dense, in event order.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct CreateResult<S> {
    pub timestamp: u64,
    pub status: S,
    pub reserved: u32,
}

pub type CreateAccountResult = CreateResult<CreateAccountStatus>;
pub type CreateTransferResult = CreateResult<CreateTransferStatus>;

/// Declares a create-status enum (`#[repr(u32)]`, discriminants = wire values) together with the
/// list of its statuses and the decoder from wire values, from one list: a status added to the
/// enum is in `ALL` and decodes, by construction.
macro_rules! status_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $value:literal,)* }) => {
        $(#[$meta])*
        #[repr(u32)]
        #[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
        pub enum $name {
            $($variant = $value,)*
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
        Created = 0xFFFF_FFFF,
        LinkedEventFailed = 1,
        LinkedEventChainOpen = 2,
        ImportedEventExpected = 22,
        ImportedEventNotExpected = 23,
        TimestampMustBeZero = 3,
        ImportedEventTimestampOutOfRange = 24,
        ImportedEventTimestampMustNotAdvance = 25,
        ReservedField = 4,
        ReservedFlag = 5,
        IdMustNotBeZero = 6,
        IdMustNotBeIntMax = 7,
        ExistsWithDifferentFlags = 15,
        ExistsWithDifferentUserData128 = 16,
        ExistsWithDifferentUserData64 = 17,
        ExistsWithDifferentUserData32 = 18,
        ExistsWithDifferentLedger = 19,
        ExistsWithDifferentCode = 20,
        Exists = 21,
        FlagsAreMutuallyExclusive = 8,
        DebitsPendingMustBeZero = 9,
        DebitsPostedMustBeZero = 10,
        CreditsPendingMustBeZero = 11,
        CreditsPostedMustBeZero = 12,
        LedgerMustNotBeZero = 13,
        CodeMustNotBeZero = 14,
        ImportedEventTimestampMustNotRegress = 26,
    }
}

status_enum! {
    /// `CreateTransferStatus` (§2.3). Discriminants are the wire values.
    CreateTransferStatus {
        Created = 0xFFFF_FFFF,
        LinkedEventFailed = 1,
        LinkedEventChainOpen = 2,
        ImportedEventExpected = 56,
        ImportedEventNotExpected = 57,
        TimestampMustBeZero = 3,
        ImportedEventTimestampOutOfRange = 58,
        ImportedEventTimestampMustNotAdvance = 59,
        ReservedFlag = 4,
        IdMustNotBeZero = 5,
        IdMustNotBeIntMax = 6,
        ExistsWithDifferentFlags = 36,
        ExistsWithDifferentPendingId = 40,
        ExistsWithDifferentTimeout = 44,
        ExistsWithDifferentDebitAccountId = 37,
        ExistsWithDifferentCreditAccountId = 38,
        ExistsWithDifferentAmount = 39,
        ExistsWithDifferentUserData128 = 41,
        ExistsWithDifferentUserData64 = 42,
        ExistsWithDifferentUserData32 = 43,
        ExistsWithDifferentLedger = 67,
        ExistsWithDifferentCode = 45,
        Exists = 46,
        IdAlreadyFailed = 68,
        FlagsAreMutuallyExclusive = 7,
        DebitAccountIdMustNotBeZero = 8,
        DebitAccountIdMustNotBeIntMax = 9,
        CreditAccountIdMustNotBeZero = 10,
        CreditAccountIdMustNotBeIntMax = 11,
        AccountsMustBeDifferent = 12,
        PendingIdMustBeZero = 13,
        PendingIdMustNotBeZero = 14,
        PendingIdMustNotBeIntMax = 15,
        PendingIdMustBeDifferent = 16,
        TimeoutReservedForPendingTransfer = 17,
        ClosingTransferMustBePending = 64,
        LedgerMustNotBeZero = 19,
        CodeMustNotBeZero = 20,
        DebitAccountNotFound = 21,
        CreditAccountNotFound = 22,
        AccountsMustHaveTheSameLedger = 23,
        TransferMustHaveTheSameLedgerAsAccounts = 24,
        PendingTransferNotFound = 25,
        PendingTransferNotPending = 26,
        PendingTransferHasDifferentDebitAccountId = 27,
        PendingTransferHasDifferentCreditAccountId = 28,
        PendingTransferHasDifferentLedger = 29,
        PendingTransferHasDifferentCode = 30,
        ExceedsPendingTransferAmount = 31,
        PendingTransferHasDifferentAmount = 32,
        PendingTransferAlreadyPosted = 33,
        PendingTransferAlreadyVoided = 34,
        PendingTransferExpired = 35,
        ImportedEventTimestampMustNotRegress = 60,
        ImportedEventTimestampMustPostdateDebitAccount = 61,
        ImportedEventTimestampMustPostdateCreditAccount = 62,
        ImportedEventTimeoutMustBeZero = 63,
        DebitAccountAlreadyClosed = 65,
        CreditAccountAlreadyClosed = 66,
        OverflowsDebitsPending = 47,
        OverflowsCreditsPending = 48,
        OverflowsDebitsPosted = 49,
        OverflowsCreditsPosted = 50,
        OverflowsDebits = 51,
        OverflowsCredits = 52,
        OverflowsTimeout = 53,
        ExceedsCredits = 54,
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
    None = 0,
    Pending = 1,
    Posted = 2,
    Voided = 3,
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
    pub fn timeout_ns(&self) -> u64 {
        u64::from(self.timeout) * NS_PER_S
    }
}

impl AccountFilter {
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
    const SIZE: usize = size_of::<Self>();

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
