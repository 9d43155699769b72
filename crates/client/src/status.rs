//! Wire status values → the ledger's status enums, by table lookup (no panics on unknown values).

use tally_ledger::{CreateAccountStatus, CreateTransferStatus};

/// Wire value of `created`; every other status is a small number.
const CREATED: u32 = 0xFFFF_FFFF;

/// Statuses other than `created` are below this (TigerBeetle's are below 70).
const TABLE_SIZE: usize = 128;

/// Declares the list of an enum's statuses and a lookup table from wire value to status. The
/// `match` makes the build fail when the ledger gains a status that is missing from the list.
macro_rules! status_table {
    ($all:ident, $table:ident, $decode:ident, $ty:ident, [$($variant:ident),* $(,)?]) => {
        /// Every status, `created` included.
        pub(crate) const $all: &[$ty] = &[$($ty::$variant),*];

        const _: fn($ty) = |status| match status {
            $($ty::$variant)|* => {}
        };

        const $table: [Option<$ty>; TABLE_SIZE] = {
            let mut table = [None; TABLE_SIZE];
            let mut index = 0;
            while index < $all.len() {
                let value = $all[index] as u32;
                if value != CREATED {
                    assert!((value as usize) < TABLE_SIZE);
                    assert!(table[value as usize].is_none(), "duplicate status value");
                    table[value as usize] = Some($all[index]);
                }
                index += 1;
            }
            table
        };

        /// The status with wire value `value`, or `None` if there is none.
        pub(crate) fn $decode(value: u32) -> Option<$ty> {
            if value == CREATED {
                return Some($ty::Created);
            }
            $table.get(value as usize).copied().flatten()
        }
    };
}

status_table!(
    ACCOUNT_STATUSES,
    ACCOUNT_STATUS_TABLE,
    account_status,
    CreateAccountStatus,
    [
        Created,
        LinkedEventFailed,
        LinkedEventChainOpen,
        ImportedEventExpected,
        ImportedEventNotExpected,
        TimestampMustBeZero,
        ImportedEventTimestampOutOfRange,
        ImportedEventTimestampMustNotAdvance,
        ReservedField,
        ReservedFlag,
        IdMustNotBeZero,
        IdMustNotBeIntMax,
        ExistsWithDifferentFlags,
        ExistsWithDifferentUserData128,
        ExistsWithDifferentUserData64,
        ExistsWithDifferentUserData32,
        ExistsWithDifferentLedger,
        ExistsWithDifferentCode,
        Exists,
        FlagsAreMutuallyExclusive,
        DebitsPendingMustBeZero,
        DebitsPostedMustBeZero,
        CreditsPendingMustBeZero,
        CreditsPostedMustBeZero,
        LedgerMustNotBeZero,
        CodeMustNotBeZero,
        ImportedEventTimestampMustNotRegress,
    ]
);

status_table!(
    TRANSFER_STATUSES,
    TRANSFER_STATUS_TABLE,
    transfer_status,
    CreateTransferStatus,
    [
        Created,
        LinkedEventFailed,
        LinkedEventChainOpen,
        ImportedEventExpected,
        ImportedEventNotExpected,
        TimestampMustBeZero,
        ImportedEventTimestampOutOfRange,
        ImportedEventTimestampMustNotAdvance,
        ReservedFlag,
        IdMustNotBeZero,
        IdMustNotBeIntMax,
        ExistsWithDifferentFlags,
        ExistsWithDifferentPendingId,
        ExistsWithDifferentTimeout,
        ExistsWithDifferentDebitAccountId,
        ExistsWithDifferentCreditAccountId,
        ExistsWithDifferentAmount,
        ExistsWithDifferentUserData128,
        ExistsWithDifferentUserData64,
        ExistsWithDifferentUserData32,
        ExistsWithDifferentLedger,
        ExistsWithDifferentCode,
        Exists,
        IdAlreadyFailed,
        FlagsAreMutuallyExclusive,
        DebitAccountIdMustNotBeZero,
        DebitAccountIdMustNotBeIntMax,
        CreditAccountIdMustNotBeZero,
        CreditAccountIdMustNotBeIntMax,
        AccountsMustBeDifferent,
        PendingIdMustBeZero,
        PendingIdMustNotBeZero,
        PendingIdMustNotBeIntMax,
        PendingIdMustBeDifferent,
        TimeoutReservedForPendingTransfer,
        ClosingTransferMustBePending,
        LedgerMustNotBeZero,
        CodeMustNotBeZero,
        DebitAccountNotFound,
        CreditAccountNotFound,
        AccountsMustHaveTheSameLedger,
        TransferMustHaveTheSameLedgerAsAccounts,
        PendingTransferNotFound,
        PendingTransferNotPending,
        PendingTransferHasDifferentDebitAccountId,
        PendingTransferHasDifferentCreditAccountId,
        PendingTransferHasDifferentLedger,
        PendingTransferHasDifferentCode,
        ExceedsPendingTransferAmount,
        PendingTransferHasDifferentAmount,
        PendingTransferAlreadyPosted,
        PendingTransferAlreadyVoided,
        PendingTransferExpired,
        ImportedEventTimestampMustNotRegress,
        ImportedEventTimestampMustPostdateDebitAccount,
        ImportedEventTimestampMustPostdateCreditAccount,
        ImportedEventTimeoutMustBeZero,
        DebitAccountAlreadyClosed,
        CreditAccountAlreadyClosed,
        OverflowsDebitsPending,
        OverflowsCreditsPending,
        OverflowsDebitsPosted,
        OverflowsCreditsPosted,
        OverflowsDebits,
        OverflowsCredits,
        OverflowsTimeout,
        ExceedsCredits,
        ExceedsDebits,
    ]
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_round_trips_and_nothing_else_decodes() {
        for status in ACCOUNT_STATUSES {
            assert_eq!(account_status(*status as u32), Some(*status));
        }
        for status in TRANSFER_STATUSES {
            assert_eq!(transfer_status(*status as u32), Some(*status));
        }
        let values = (0..1000u32).chain([CREATED - 1, CREATED, u32::MAX / 2]);
        let decoded_accounts = values.clone().filter_map(account_status).count();
        let decoded_transfers = values.filter_map(transfer_status).count();
        assert_eq!(decoded_accounts, ACCOUNT_STATUSES.len());
        assert_eq!(decoded_transfers, TRANSFER_STATUSES.len());
        assert_eq!(account_status(0), None);
        assert_eq!(transfer_status(0), None);
        assert_eq!(transfer_status(18), None);
    }
}
