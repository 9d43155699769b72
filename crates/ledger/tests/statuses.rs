//! Table-driven tests: every create status of `ledger.md` §2.2 and §2.3 is reached at least once
//! (the test checks its own coverage), and the precedence pairs where two checks could both fire
//! resolve the way TigerBeetle resolves them.

use std::collections::BTreeSet;

use tally_ledger::*;

/// Far enough in the future that a pending timeout of u32::MAX seconds overflows 63 bits.
const T0: u64 = 5_000_000_000_000_000_000;

struct Harness {
    ledger: Ledger,
    store: MemoryStore,
    timestamp: u64,
    seen_accounts: BTreeSet<u32>,
    seen_transfers: BTreeSet<u32>,
}

impl Harness {
    fn new() -> Self {
        Self {
            ledger: Ledger::new(),
            store: MemoryStore::new(),
            timestamp: T0,
            seen_accounts: BTreeSet::new(),
            seen_transfers: BTreeSet::new(),
        }
    }

    fn next_timestamp(&mut self, count: usize) -> u64 {
        self.timestamp += count as u64 + 1;
        self.timestamp
    }

    fn accounts(&mut self, events: &[Account]) -> Vec<CreateAccountStatus> {
        let timestamp = self.next_timestamp(events.len());
        let mut results = Vec::new();
        self.ledger
            .create_accounts(&self.store, timestamp, events, &mut results);
        let statuses: Vec<_> = results.iter().map(|r| r.status).collect();
        self.seen_accounts
            .extend(statuses.iter().map(|&s| s as u32));
        statuses
    }

    fn transfers(&mut self, events: &[Transfer]) -> Vec<CreateTransferStatus> {
        self.transfers_results(events)
            .iter()
            .map(|r| r.status)
            .collect()
    }

    fn transfers_results(&mut self, events: &[Transfer]) -> Vec<CreateTransferResult> {
        let timestamp = self.next_timestamp(events.len());
        let first = self.store.append_batch(timestamp, events);
        let mut results = Vec::new();
        self.ledger
            .create_transfers(&self.store, timestamp, first, events, &mut results);
        self.seen_transfers
            .extend(results.iter().map(|r| r.status as u32));
        results
    }

    fn transfer(&mut self, event: Transfer) -> CreateTransferStatus {
        self.transfers(&[event])[0]
    }

    fn account(&self, id: u128) -> Account {
        *self.ledger.account(id).expect("account exists")
    }
}

fn account(id: u128, ledger: u32) -> Account {
    Account {
        id,
        ledger,
        code: 1,
        ..Default::default()
    }
}

fn account_flags(id: u128, ledger: u32, flags: u16) -> Account {
    Account {
        flags: AccountFlags(flags),
        ..account(id, ledger)
    }
}

fn transfer(id: u128, dr: u128, cr: u128, amount: u128) -> Transfer {
    Transfer {
        id,
        debit_account_id: dr,
        credit_account_id: cr,
        amount,
        ledger: 1,
        code: 1,
        ..Default::default()
    }
}

fn flagged(t: Transfer, flags: u16) -> Transfer {
    Transfer {
        flags: TransferFlags(flags),
        ..t
    }
}

fn pending(id: u128, dr: u128, cr: u128, amount: u128, timeout: u32) -> Transfer {
    Transfer {
        timeout,
        ..flagged(transfer(id, dr, cr, amount), TransferFlags::PENDING)
    }
}

fn post(id: u128, pending_id: u128, amount: u128) -> Transfer {
    Transfer {
        id,
        pending_id,
        amount,
        flags: TransferFlags(TransferFlags::POST_PENDING_TRANSFER),
        ..Default::default()
    }
}

fn void(id: u128, pending_id: u128) -> Transfer {
    Transfer {
        id,
        pending_id,
        flags: TransferFlags(TransferFlags::VOID_PENDING_TRANSFER),
        ..Default::default()
    }
}

#[test]
fn every_account_status() {
    use CreateAccountStatus::*;
    let mut h = Harness::new();
    let base = Account {
        user_data_128: 1,
        user_data_64: 2,
        user_data_32: 3,
        ..account(1, 1)
    };
    let cases: Vec<(Account, CreateAccountStatus)> = vec![
        (base, Created),
        (
            Account {
                timestamp: 1,
                ..base
            },
            TimestampMustBeZero,
        ),
        (
            Account {
                reserved: 1,
                ..base
            },
            ReservedField,
        ),
        (
            Account {
                flags: AccountFlags(1 << 6),
                ..account(2, 1)
            },
            ReservedFlag,
        ),
        (account(0, 1), IdMustNotBeZero),
        (account(u128::MAX, 1), IdMustNotBeIntMax),
        (
            Account {
                flags: AccountFlags(AccountFlags::HISTORY),
                ..base
            },
            ExistsWithDifferentFlags,
        ),
        (
            Account {
                user_data_128: 9,
                ..base
            },
            ExistsWithDifferentUserData128,
        ),
        (
            Account {
                user_data_64: 9,
                ..base
            },
            ExistsWithDifferentUserData64,
        ),
        (
            Account {
                user_data_32: 9,
                ..base
            },
            ExistsWithDifferentUserData32,
        ),
        (Account { ledger: 9, ..base }, ExistsWithDifferentLedger),
        (Account { code: 9, ..base }, ExistsWithDifferentCode),
        // Balances are not compared for idempotency.
        (
            Account {
                debits_posted: 5,
                ..base
            },
            Exists,
        ),
        (
            account_flags(
                3,
                1,
                AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS
                    | AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS,
            ),
            FlagsAreMutuallyExclusive,
        ),
        (
            Account {
                debits_pending: 1,
                ..account(3, 1)
            },
            DebitsPendingMustBeZero,
        ),
        (
            Account {
                debits_posted: 1,
                ..account(3, 1)
            },
            DebitsPostedMustBeZero,
        ),
        (
            Account {
                credits_pending: 1,
                ..account(3, 1)
            },
            CreditsPendingMustBeZero,
        ),
        (
            Account {
                credits_posted: 1,
                ..account(3, 1)
            },
            CreditsPostedMustBeZero,
        ),
        (account(3, 0), LedgerMustNotBeZero),
        (
            Account {
                code: 0,
                ..account(3, 1)
            },
            CodeMustNotBeZero,
        ),
    ];
    for (event, expected) in cases {
        assert_eq!(h.accounts(&[event]), [expected], "{event:?}");
    }

    // Linked chains: a failure rolls the whole chain back; an open chain fails whole.
    let linked = |id| account_flags(id, 1, AccountFlags::LINKED);
    assert_eq!(
        h.accounts(&[linked(10), account(0, 1)]),
        [LinkedEventFailed, IdMustNotBeZero]
    );
    assert!(h.ledger.account(10).is_none());
    assert_eq!(
        h.accounts(&[account(11, 1), linked(12)]),
        [Created, LinkedEventChainOpen]
    );
    assert!(h.ledger.account(12).is_none());

    // Imported batches: the first event decides; timestamps must be in the past and increase.
    let imported = |id, timestamp| Account {
        timestamp,
        ..account_flags(id, 1, AccountFlags::IMPORTED)
    };
    let now = h.timestamp;
    assert_eq!(
        h.accounts(&[imported(20, now + 1), account(21, 1)]),
        [Created, ImportedEventExpected]
    );
    assert_eq!(
        h.accounts(&[account(22, 1), imported(23, 5)]),
        [Created, ImportedEventNotExpected]
    );
    assert_eq!(
        h.accounts(&[imported(24, 0)]),
        [ImportedEventTimestampOutOfRange]
    );
    assert_eq!(
        h.accounts(&[imported(24, u64::MAX)]),
        [ImportedEventTimestampOutOfRange]
    );
    assert_eq!(
        h.accounts(&[imported(24, h.timestamp + 100)]),
        [ImportedEventTimestampMustNotAdvance]
    );
    assert_eq!(
        h.accounts(&[imported(24, now)]),
        [ImportedEventTimestampMustNotRegress]
    );

    let seen: BTreeSet<u32> = h.seen_accounts.clone();
    let missing: Vec<_> = CreateAccountStatus::ALL
        .iter()
        .filter(|s| !seen.contains(&(**s as u32)))
        .collect();
    assert!(
        missing.is_empty(),
        "account statuses never reached: {missing:?}"
    );
}

#[test]
fn account_precedence_pairs() {
    use CreateAccountStatus::*;
    let mut h = Harness::new();
    let cases: Vec<(Account, CreateAccountStatus)> = vec![
        // timestamp before reserved field, reserved field before reserved flag before id.
        (
            Account {
                timestamp: 7,
                reserved: 1,
                ..account(0, 0)
            },
            TimestampMustBeZero,
        ),
        (
            Account {
                reserved: 1,
                flags: AccountFlags(1 << 15),
                ..account(0, 0)
            },
            ReservedField,
        ),
        (
            Account {
                flags: AccountFlags(1 << 15),
                ..account(0, 0)
            },
            ReservedFlag,
        ),
        (account(0, 0), IdMustNotBeZero),
        (account(1, 1), Created),
        // Idempotency before field validation: a retry is `exists*` even if otherwise invalid.
        (
            Account {
                credits_posted: 3,
                ..account(1, 1)
            },
            Exists,
        ),
        (
            Account {
                credits_posted: 3,
                code: 0,
                ..account(1, 2)
            },
            ExistsWithDifferentLedger,
        ),
        // Flags before balances before ledger before code.
        (
            Account {
                debits_pending: 1,
                flags: AccountFlags(
                    AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS
                        | AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS,
                ),
                ..account(2, 0)
            },
            FlagsAreMutuallyExclusive,
        ),
        (
            Account {
                debits_pending: 1,
                debits_posted: 1,
                ..account(2, 0)
            },
            DebitsPendingMustBeZero,
        ),
        (
            Account {
                code: 0,
                ..account(2, 0)
            },
            LedgerMustNotBeZero,
        ),
    ];
    for (event, expected) in cases {
        assert_eq!(h.accounts(&[event]), [expected], "{event:?}");
    }
}

/// Accounts 1, 2 (ledger 1), 3 (ledger 2), 4 (debits limited), 5 (credits limited), 6 (closed),
/// and 100..=112 on ledger 1 for the overflow cases.
fn transfer_harness() -> Harness {
    let mut h = Harness::new();
    let mut accounts = vec![
        account(1, 1),
        account(2, 1),
        account(3, 2),
        account_flags(4, 1, AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS),
        account_flags(5, 1, AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS),
        account_flags(6, 1, AccountFlags::CLOSED),
    ];
    accounts.extend((100..=112).map(|id| account(id, 1)));
    assert!(h
        .accounts(&accounts)
        .iter()
        .all(|&s| s == CreateAccountStatus::Created));
    h
}

#[test]
fn every_transfer_status() {
    use CreateTransferStatus::*;
    let mut h = transfer_harness();
    let base = Transfer {
        user_data_128: 1,
        user_data_64: 2,
        user_data_32: 3,
        ..transfer(10, 1, 2, 10)
    };
    let cases: Vec<(Transfer, CreateTransferStatus)> = vec![
        (base, Created),
        (
            Transfer {
                timestamp: 1,
                ..base
            },
            TimestampMustBeZero,
        ),
        (flagged(transfer(11, 1, 2, 1), 1 << 9), ReservedFlag),
        (transfer(0, 1, 2, 1), IdMustNotBeZero),
        (transfer(u128::MAX, 1, 2, 1), IdMustNotBeIntMax),
        (
            flagged(base, TransferFlags::PENDING),
            ExistsWithDifferentFlags,
        ),
        (
            Transfer {
                pending_id: 5,
                ..base
            },
            ExistsWithDifferentPendingId,
        ),
        (Transfer { timeout: 5, ..base }, ExistsWithDifferentTimeout),
        (
            Transfer {
                debit_account_id: 4,
                ..base
            },
            ExistsWithDifferentDebitAccountId,
        ),
        (
            Transfer {
                credit_account_id: 4,
                ..base
            },
            ExistsWithDifferentCreditAccountId,
        ),
        (Transfer { amount: 11, ..base }, ExistsWithDifferentAmount),
        (
            Transfer {
                user_data_128: 9,
                ..base
            },
            ExistsWithDifferentUserData128,
        ),
        (
            Transfer {
                user_data_64: 9,
                ..base
            },
            ExistsWithDifferentUserData64,
        ),
        (
            Transfer {
                user_data_32: 9,
                ..base
            },
            ExistsWithDifferentUserData32,
        ),
        (Transfer { ledger: 9, ..base }, ExistsWithDifferentLedger),
        (Transfer { code: 9, ..base }, ExistsWithDifferentCode),
        (base, Exists),
        // A transient failure retires the id for good.
        (transfer(12, 1, 99, 1), CreditAccountNotFound),
        (transfer(12, 1, 2, 1), IdAlreadyFailed),
        (
            flagged(
                post(13, 10, 1),
                TransferFlags::POST_PENDING_TRANSFER | TransferFlags::VOID_PENDING_TRANSFER,
            ),
            FlagsAreMutuallyExclusive,
        ),
        (
            flagged(
                post(13, 10, 1),
                TransferFlags::POST_PENDING_TRANSFER | TransferFlags::PENDING,
            ),
            FlagsAreMutuallyExclusive,
        ),
        (transfer(13, 0, 2, 1), DebitAccountIdMustNotBeZero),
        (transfer(13, u128::MAX, 2, 1), DebitAccountIdMustNotBeIntMax),
        (transfer(13, 1, 0, 1), CreditAccountIdMustNotBeZero),
        (
            transfer(13, 1, u128::MAX, 1),
            CreditAccountIdMustNotBeIntMax,
        ),
        (transfer(13, 1, 1, 1), AccountsMustBeDifferent),
        (
            Transfer {
                pending_id: 3,
                ..transfer(13, 1, 2, 1)
            },
            PendingIdMustBeZero,
        ),
        (post(13, 0, 1), PendingIdMustNotBeZero),
        (post(13, u128::MAX, 1), PendingIdMustNotBeIntMax),
        (post(13, 13, 1), PendingIdMustBeDifferent),
        (
            Transfer {
                timeout: 1,
                ..transfer(13, 1, 2, 1)
            },
            TimeoutReservedForPendingTransfer,
        ),
        (
            Transfer {
                timeout: 1,
                ..post(13, 10, 1)
            },
            TimeoutReservedForPendingTransfer,
        ),
        (
            flagged(transfer(13, 1, 2, 1), TransferFlags::CLOSING_DEBIT),
            ClosingTransferMustBePending,
        ),
        (
            Transfer {
                ledger: 0,
                ..transfer(13, 1, 2, 1)
            },
            LedgerMustNotBeZero,
        ),
        (
            Transfer {
                code: 0,
                ..transfer(13, 1, 2, 1)
            },
            CodeMustNotBeZero,
        ),
        (transfer(14, 99, 2, 1), DebitAccountNotFound),
        (transfer(15, 1, 3, 1), AccountsMustHaveTheSameLedger),
        (
            Transfer {
                ledger: 2,
                ..transfer(15, 1, 2, 1)
            },
            TransferMustHaveTheSameLedgerAsAccounts,
        ),
        (post(16, 999, 1), PendingTransferNotFound),
        (post(17, 10, 1), PendingTransferNotPending),
        (transfer(18, 6, 2, 1), DebitAccountAlreadyClosed),
        (transfer(19, 1, 6, 1), CreditAccountAlreadyClosed),
        (transfer(20, 4, 2, 1), ExceedsCredits),
        (transfer(21, 1, 5, 1), ExceedsDebits),
    ];
    for (event, expected) in cases {
        assert_eq!(h.transfer(event), expected, "{event:?}");
    }

    // Two-phase.
    assert_eq!(h.transfer(pending(30, 1, 2, 50, 0)), Created);
    assert_eq!(
        h.transfer(Transfer {
            debit_account_id: 4,
            ..post(31, 30, 1)
        }),
        PendingTransferHasDifferentDebitAccountId
    );
    assert_eq!(
        h.transfer(Transfer {
            credit_account_id: 4,
            ..post(31, 30, 1)
        }),
        PendingTransferHasDifferentCreditAccountId
    );
    assert_eq!(
        h.transfer(Transfer {
            ledger: 2,
            ..post(31, 30, 1)
        }),
        PendingTransferHasDifferentLedger
    );
    assert_eq!(
        h.transfer(Transfer {
            code: 2,
            ..post(31, 30, 1)
        }),
        PendingTransferHasDifferentCode
    );
    assert_eq!(h.transfer(post(31, 30, 51)), ExceedsPendingTransferAmount);
    assert_eq!(
        h.transfer(Transfer {
            amount: 49,
            ..void(31, 30)
        }),
        PendingTransferHasDifferentAmount
    );
    assert_eq!(
        h.transfer(Transfer {
            amount: 51,
            ..void(31, 30)
        }),
        ExceedsPendingTransferAmount
    );
    assert_eq!(h.transfer(post(31, 30, 20)), Created);
    assert_eq!(h.transfer(post(32, 30, 1)), PendingTransferAlreadyPosted);
    assert_eq!(h.transfer(pending(33, 1, 2, 5, 0)), Created);
    assert_eq!(h.transfer(void(34, 33)), Created);
    assert_eq!(h.transfer(void(35, 33)), PendingTransferAlreadyVoided);
    assert_eq!(h.transfer(pending(36, 1, 2, 5, 1)), Created);
    h.timestamp += 2_000_000_000;
    assert_eq!(h.transfer(post(37, 36, AMOUNT_MAX)), PendingTransferExpired);
    assert_eq!(h.transfer(pending(38, 1, 2, 5, u32::MAX)), OverflowsTimeout);

    // Overflows, each on fresh accounts so only the intended sum overflows.
    let half = 1u128 << 127;
    let cases: Vec<(Transfer, CreateTransferStatus)> = vec![
        (pending(40, 100, 101, u128::MAX - 1, 0), Created),
        (pending(41, 100, 102, 5, 0), OverflowsDebitsPending),
        (pending(42, 102, 101, 5, 0), OverflowsCreditsPending),
        (transfer(43, 103, 104, u128::MAX - 1), Created),
        (transfer(44, 103, 105, 5), OverflowsDebitsPosted),
        (transfer(45, 105, 104, 5), OverflowsCreditsPosted),
        (pending(46, 106, 107, half, 0), Created),
        (transfer(47, 106, 108, half), OverflowsDebits),
        (pending(48, 109, 110, half, 0), Created),
        (transfer(49, 111, 110, half), OverflowsCredits),
    ];
    for (event, expected) in cases {
        assert_eq!(h.transfer(event), expected, "{event:?}");
    }

    // Linked chains.
    let linked = |t: Transfer| flagged(t, t.flags.0 | TransferFlags::LINKED);
    let before = (h.account(1), h.account(2));
    let chain = [
        linked(transfer(50, 1, 2, 1)),
        linked(pending(54, 1, 2, 3, 9)),
        transfer(51, 1, 99, 1),
    ];
    assert_eq!(
        h.transfers(&chain),
        [LinkedEventFailed, LinkedEventFailed, CreditAccountNotFound]
    );
    assert!(h.ledger.transfer(&h.store, 50).is_none());
    assert!(h.ledger.transfer(&h.store, 54).is_none());
    assert_eq!(
        (h.account(1), h.account(2)),
        before,
        "a failed chain leaves no trace"
    );
    assert_eq!(
        h.transfers(&[transfer(52, 1, 2, 1), linked(transfer(53, 1, 2, 1))]),
        [Created, LinkedEventChainOpen]
    );

    // Imported.
    let imported = |t: Transfer, timestamp| Transfer {
        timestamp,
        ..flagged(t, t.flags.0 | TransferFlags::IMPORTED)
    };
    let now = h.timestamp;
    assert_eq!(
        h.transfers(&[
            imported(transfer(60, 1, 2, 1), now + 1),
            transfer(61, 1, 2, 1)
        ]),
        [Created, ImportedEventExpected]
    );
    assert_eq!(
        h.transfers(&[transfer(62, 1, 2, 1), imported(transfer(63, 1, 2, 1), 9)]),
        [Created, ImportedEventNotExpected]
    );
    assert_eq!(
        h.transfer(imported(transfer(64, 1, 2, 1), 0)),
        ImportedEventTimestampOutOfRange
    );
    assert_eq!(
        h.transfer(imported(transfer(64, 1, 2, 1), h.timestamp + 10)),
        ImportedEventTimestampMustNotAdvance
    );
    assert_eq!(
        h.transfer(imported(transfer(64, 1, 2, 1), now)),
        ImportedEventTimestampMustNotRegress
    );
    // Accounts created after the newest transfer: an imported transfer between them and it is
    // not a regression but must postdate its accounts.
    let after_transfers = h.timestamp + 1;
    assert_eq!(
        h.accounts(&[account(200, 1), account(201, 1)]),
        [CreateAccountStatus::Created; 2]
    );
    let (a200, a201) = (h.account(200).timestamp, h.account(201).timestamp);
    assert!(a200 > after_transfers - 1);
    assert_eq!(
        h.transfer(imported(transfer(65, 200, 2, 1), a200 - 1)),
        ImportedEventTimestampMustPostdateDebitAccount
    );
    assert_eq!(
        h.transfer(imported(transfer(65, 1, 201, 1), a200)),
        ImportedEventTimestampMustNotRegress
    );
    assert_eq!(
        h.transfer(imported(transfer(65, 1, 201, 1), a201 - 1)),
        ImportedEventTimestampMustNotRegress
    );
    assert_eq!(
        h.transfer(imported(transfer(66, 200, 201, 1), a200)),
        ImportedEventTimestampMustNotRegress
    );
    let between = a201 + 1;
    assert_eq!(
        h.accounts(&[account(202, 1)]),
        [CreateAccountStatus::Created]
    );
    let a202 = h.account(202).timestamp;
    assert!(between < a202);
    assert_eq!(
        h.transfer(imported(transfer(67, 1, 202, 1), between)),
        ImportedEventTimestampMustPostdateCreditAccount
    );
    assert_eq!(
        h.transfer(imported(pending(68, 1, 2, 1, 5), a202 + 1)),
        ImportedEventTimeoutMustBeZero
    );
    assert_eq!(
        h.transfer(imported(pending(68, 1, 2, 1, 0), a202 + 1)),
        Created
    );

    let seen = h.seen_transfers.clone();
    let missing: Vec<_> = CreateTransferStatus::ALL
        .iter()
        .filter(|s| !seen.contains(&(**s as u32)))
        .collect();
    assert!(
        missing.is_empty(),
        "transfer statuses never reached: {missing:?}"
    );
}

#[test]
fn transfer_precedence_pairs() {
    use CreateTransferStatus::*;
    let mut h = transfer_harness();
    assert_eq!(h.transfer(transfer(10, 1, 2, 10)), Created);
    let cases: Vec<(Transfer, CreateTransferStatus)> = vec![
        // Reserved flag before the id checks.
        (flagged(transfer(0, 0, 0, 0), 1 << 12), ReservedFlag),
        // Idempotency before any field validation.
        (
            Transfer {
                debit_account_id: 0,
                ledger: 0,
                ..flagged(transfer(10, 1, 2, 10), TransferFlags::CLOSING_CREDIT)
            },
            ExistsWithDifferentFlags,
        ),
        (
            Transfer {
                timeout: 9,
                pending_id: 9,
                ..transfer(10, 1, 2, 10)
            },
            ExistsWithDifferentPendingId,
        ),
        (
            Transfer {
                amount: 1,
                user_data_64: 4,
                ..transfer(10, 1, 3, 10)
            },
            ExistsWithDifferentCreditAccountId,
        ),
        // Debit checks before credit checks.
        (transfer(11, 0, 0, 1), DebitAccountIdMustNotBeZero),
        (transfer(11, 98, 99, 1), DebitAccountNotFound),
        // The retired id wins over anything the retry gets wrong.
        (
            flagged(
                transfer(11, 1, 2, 1),
                TransferFlags::POST_PENDING_TRANSFER | TransferFlags::VOID_PENDING_TRANSFER,
            ),
            IdAlreadyFailed,
        ),
        // pending_id before timeout before closing; ledger before code; lookups after both.
        (
            Transfer {
                pending_id: 1,
                timeout: 1,
                ..transfer(12, 1, 2, 1)
            },
            PendingIdMustBeZero,
        ),
        (
            Transfer {
                timeout: 1,
                ..flagged(transfer(12, 1, 2, 1), TransferFlags::CLOSING_DEBIT)
            },
            TimeoutReservedForPendingTransfer,
        ),
        (
            Transfer {
                ledger: 0,
                code: 0,
                ..transfer(12, 99, 2, 1)
            },
            LedgerMustNotBeZero,
        ),
        (
            Transfer {
                code: 0,
                ..transfer(12, 99, 2, 1)
            },
            CodeMustNotBeZero,
        ),
        // Closed before overflow and limits.
        (transfer(13, 6, 4, u128::MAX), DebitAccountAlreadyClosed),
        // Overflow before limits: account 2 holds credits, so crediting it u128::MAX overflows,
        // and the limited account 4 would also exceed its credits.
        (transfer(14, 4, 2, u128::MAX), OverflowsCreditsPosted),
        (transfer(15, 4, 1, 1), ExceedsCredits),
    ];
    for (event, expected) in cases {
        assert_eq!(h.transfer(event), expected, "{event:?}");
    }
    // Post/void: mutual exclusivity before pending_id; timeout before lookup; amount before
    // status; an already-posted transfer is reported before its expiry.
    assert_eq!(
        h.transfer(Transfer {
            pending_id: 0,
            ..flagged(
                post(20, 0, 1),
                TransferFlags::POST_PENDING_TRANSFER | TransferFlags::BALANCING_DEBIT
            )
        }),
        FlagsAreMutuallyExclusive
    );
    assert_eq!(
        h.transfer(Transfer {
            timeout: 1,
            ..post(20, 999, 1)
        }),
        TimeoutReservedForPendingTransfer
    );
    assert_eq!(h.transfer(pending(21, 1, 2, 10, 1)), Created);
    assert_eq!(h.transfer(post(22, 21, 5)), Created);
    assert_eq!(h.transfer(post(23, 21, 11)), ExceedsPendingTransferAmount);
    h.timestamp += 5_000_000_000;
    assert_eq!(h.transfer(post(24, 21, 1)), PendingTransferAlreadyPosted);
    // A closed account blocks posting but not voiding.
    assert_eq!(
        h.transfer(flagged(
            pending(30, 1, 2, 3, 0),
            TransferFlags::PENDING | TransferFlags::CLOSING_CREDIT
        )),
        Created
    );
    assert!(h.account(2).flags.contains(AccountFlags::CLOSED));
    assert_eq!(
        h.transfer(pending(31, 1, 2, 1, 0)),
        CreditAccountAlreadyClosed
    );
    assert_eq!(h.transfer(void(32, 30)), Created);
    assert!(!h.account(2).flags.contains(AccountFlags::CLOSED));
}

#[test]
fn results_carry_the_right_timestamps() {
    use CreateTransferStatus::*;
    let mut h = transfer_harness();
    let results = h.transfers_results(&[
        transfer(10, 1, 2, 1),
        transfer(0, 1, 2, 1),
        transfer(10, 1, 2, 1),
    ]);
    let top = h.timestamp;
    assert_eq!(results[0].timestamp, top - 2);
    assert_eq!(
        results[1].timestamp,
        top - 1,
        "a failure carries the event's own timestamp"
    );
    assert_eq!(results[2].status, Exists);
    assert_eq!(
        results[2].timestamp,
        top - 2,
        "exists carries the stored object's timestamp"
    );
    let stored = h.ledger.transfer(&h.store, 10).unwrap();
    assert_eq!(stored.timestamp, top - 2);

    let linked = flagged(transfer(11, 1, 2, 1), TransferFlags::LINKED);
    let results = h.transfers_results(&[linked, transfer(12, 1, 99, 1)]);
    assert_eq!(results[0].status, LinkedEventFailed);
    assert_eq!(results[0].timestamp, h.timestamp - 1);
}

#[test]
fn balancing_transfers_move_at_most_the_balance() {
    use CreateTransferStatus::*;
    let mut h = transfer_harness();
    assert_eq!(h.transfer(transfer(10, 2, 1, 100)), Created);
    // Account 1 has 100 in credits: a balancing debit of up to 1,000 moves exactly 100.
    let balancing = flagged(transfer(11, 1, 2, 1000), TransferFlags::BALANCING_DEBIT);
    assert_eq!(h.transfer(balancing), Created);
    assert_eq!(h.ledger.transfer(&h.store, 11).unwrap().amount, 100);
    // A retry with a limit at or above what moved is `exists`; below, a different amount.
    assert_eq!(h.transfer(balancing), Exists);
    assert_eq!(
        h.transfer(Transfer {
            amount: 99,
            ..balancing
        }),
        ExistsWithDifferentAmount
    );
    // Nothing left: moves zero, which is legal.
    assert_eq!(
        h.transfer(Transfer {
            id: 12,
            ..balancing
        }),
        Created
    );
    assert_eq!(h.ledger.transfer(&h.store, 12).unwrap().amount, 0);
}

#[test]
fn pulse_expires_in_deadline_order_and_reopens_closed_accounts() {
    use CreateTransferStatus::*;
    let mut h = transfer_harness();
    assert_eq!(h.transfer(pending(10, 1, 2, 5, 2)), Created);
    assert_eq!(
        h.transfer(flagged(
            pending(11, 1, 2, 7, 1),
            TransferFlags::PENDING | TransferFlags::CLOSING_DEBIT
        )),
        Created
    );
    assert!(h.account(1).flags.contains(AccountFlags::CLOSED));
    assert!(!h.ledger.pulse_needed(h.timestamp));
    h.timestamp += 1_500_000_000;
    assert!(h.ledger.pulse_needed(h.timestamp));
    h.timestamp += PULSE_EVENTS_MAX as u64;
    assert_eq!(h.ledger.expire_pending_transfers(&h.store, h.timestamp), 1);
    let a = h.account(1);
    assert_eq!(a.debits_pending, 5);
    assert!(
        !a.flags.contains(AccountFlags::CLOSED),
        "expiring a closing transfer reopens"
    );
    assert_eq!(h.transfer(void(12, 11)), PendingTransferExpired);
    assert_eq!(h.transfer(post(13, 10, AMOUNT_MAX)), Created);
    assert_eq!(h.account(1).debits_posted, 5);
    h.timestamp += 5_000_000_000;
    assert!(
        !h.ledger.pulse_needed(h.timestamp),
        "posting removed the expiry"
    );
}
