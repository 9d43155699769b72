//! Model-based property test of the ledger core.
//!
//! `Model` is a small reference implementation of `ledger.md` §1–§2, written from the spec and
//! independently of `src/ledger.rs`: plain maps, whole-state clones for linked chains, linear
//! scans for reads. Random batches run against both the real `Ledger` and the model; after every
//! batch the two must agree on every result (status and timestamp), every account, every
//! transfer and a few random reads, and the design's invariants must hold on the real state. At
//! the end of each case the batches are replayed into a fresh ledger (determinism) and a
//! checkpoint round trip must give the same digest and the same results for one more batch.
//! The ledger under test starts with 16-slot indexes, so that its indexes grow (incrementally,
//! over several batches) many times within a case; the replay uses a ledger that never grows.
//!
//! Generators draw from a small id space so that collisions, retries and every idempotency status
//! come up often. References to earlier events (retries, pending ids, timestamps) are symbolic and
//! are resolved against the model when the batch is built, so that a shrunk case still points at
//! something that exists.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use tally_ledger::*;

// -------------------------------------------------------------------------------------------------
// The reference model.

/// Every defined `AccountFlags` bit (§1.2); the rest is padding.
const ACCOUNT_FLAGS_DEFINED: u16 = 0x003f;
/// Every defined `TransferFlags` bit (§1.4); the rest is padding.
const TRANSFER_FLAGS_DEFINED: u16 = 0x01ff;
const NANOS_PER_SECOND: u128 = 1_000_000_000;
/// The largest reply of 128-byte records (§2.6), the usual `limit_max` of a read.
const REPLY_RECORDS_MAX: u32 = 8189;

#[derive(Clone, Default, Debug)]
struct Model {
    accounts: BTreeMap<u128, Account>,
    /// Accounts created with `flags.closed`: nothing can reopen them.
    created_closed: BTreeSet<u128>,
    /// Every stored transfer, resolved as `lookup_transfers` returns it.
    transfers: BTreeMap<u128, Transfer>,
    /// What became of each pending transfer, by its id.
    pending: BTreeMap<u128, PendingStatus>,
    /// Ids of transfers that failed with a transient status (§2.1).
    retired: BTreeSet<u128>,
    /// Per account with `flags.history`: its balances after each transfer that touched it.
    history: BTreeMap<u128, Vec<AccountBalance>>,
}

/// The statuses batch execution decides before an event reaches `create_*` (§2.1).
#[derive(Clone, Copy)]
enum BatchFailure {
    LinkedEventFailed,
    LinkedEventChainOpen,
    ImportedEventExpected,
    ImportedEventNotExpected,
    TimestampMustBeZero,
    ImportedEventTimestampOutOfRange,
    ImportedEventTimestampMustNotAdvance,
}

/// What the model's batch execution needs of a status type.
trait Status: Copy + PartialEq + Debug {
    const CREATED: Self;
    const EXISTS: Self;
    fn from_batch(failure: BatchFailure) -> Self;
    /// Whether the failure retires the event's id (§2.1: only transfers have such failures).
    fn retires_id(self) -> bool;
}

macro_rules! batch_statuses {
    ($status:ident) => {
        fn from_batch(failure: BatchFailure) -> Self {
            match failure {
                BatchFailure::LinkedEventFailed => $status::LinkedEventFailed,
                BatchFailure::LinkedEventChainOpen => $status::LinkedEventChainOpen,
                BatchFailure::ImportedEventExpected => $status::ImportedEventExpected,
                BatchFailure::ImportedEventNotExpected => $status::ImportedEventNotExpected,
                BatchFailure::TimestampMustBeZero => $status::TimestampMustBeZero,
                BatchFailure::ImportedEventTimestampOutOfRange => {
                    $status::ImportedEventTimestampOutOfRange
                }
                BatchFailure::ImportedEventTimestampMustNotAdvance => {
                    $status::ImportedEventTimestampMustNotAdvance
                }
            }
        }
    };
}

impl Status for CreateAccountStatus {
    const CREATED: Self = Self::Created;
    const EXISTS: Self = Self::Exists;
    batch_statuses!(CreateAccountStatus);
    fn retires_id(self) -> bool {
        false
    }
}

impl Status for CreateTransferStatus {
    const CREATED: Self = Self::Created;
    const EXISTS: Self = Self::Exists;
    batch_statuses!(CreateTransferStatus);
    fn retires_id(self) -> bool {
        // The transient statuses of §2.1.
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

/// What the model's batch execution needs of an event.
trait Event: Copy {
    fn id(&self) -> u128;
    fn linked(&self) -> bool;
    fn imported(&self) -> bool;
    fn timestamp(&self) -> u64;
    fn stamped(self, timestamp: u64) -> Self;
}

impl Event for Account {
    fn id(&self) -> u128 {
        self.id
    }
    fn linked(&self) -> bool {
        self.flags.contains(AccountFlags::LINKED)
    }
    fn imported(&self) -> bool {
        self.flags.contains(AccountFlags::IMPORTED)
    }
    fn timestamp(&self) -> u64 {
        self.timestamp
    }
    fn stamped(self, timestamp: u64) -> Self {
        Self { timestamp, ..self }
    }
}

impl Event for Transfer {
    fn id(&self) -> u128 {
        self.id
    }
    fn linked(&self) -> bool {
        self.flags.contains(TransferFlags::LINKED)
    }
    fn imported(&self) -> bool {
        self.flags.contains(TransferFlags::IMPORTED)
    }
    fn timestamp(&self) -> u64 {
        self.timestamp
    }
    fn stamped(self, timestamp: u64) -> Self {
        Self { timestamp, ..self }
    }
}

/// The timestamp of event `index` of `count` in a batch stamped `batch_timestamp` (§2.1).
fn assigned_timestamp(batch_timestamp: u64, count: usize, index: usize) -> u64 {
    batch_timestamp - count as u64 + index as u64 + 1
}

/// §2.1's checks before `create_*`; `Ok` carries the event's timestamp.
fn batch_check<E: Event>(
    events: &[E],
    index: usize,
    batch_timestamp: u64,
    chain_failed: bool,
) -> Result<u64, BatchFailure> {
    let event = &events[index];
    // The table ranks `linked_event_failed` above `linked_event_chain_open`, but TigerBeetle
    // (whose results the spec says the core reproduces) checks an open chain at the end of the
    // batch first, so a failed chain's last event still reports that the chain was left open.
    if event.linked() && index == events.len() - 1 {
        return Err(BatchFailure::LinkedEventChainOpen);
    }
    if chain_failed {
        return Err(BatchFailure::LinkedEventFailed);
    }
    if event.imported() != events[0].imported() {
        return Err(if event.imported() {
            BatchFailure::ImportedEventNotExpected
        } else {
            BatchFailure::ImportedEventExpected
        });
    }
    if !event.imported() {
        if event.timestamp() != 0 {
            return Err(BatchFailure::TimestampMustBeZero);
        }
        return Ok(assigned_timestamp(batch_timestamp, events.len(), index));
    }
    if !(TIMESTAMP_MIN..=TIMESTAMP_MAX).contains(&event.timestamp()) {
        return Err(BatchFailure::ImportedEventTimestampOutOfRange);
    }
    if event.timestamp() >= batch_timestamp {
        return Err(BatchFailure::ImportedEventTimestampMustNotAdvance);
    }
    Ok(event.timestamp())
}

fn balance_after(account: &Account, timestamp: u64) -> AccountBalance {
    AccountBalance {
        debits_pending: account.debits_pending,
        debits_posted: account.debits_posted,
        credits_pending: account.credits_pending,
        credits_posted: account.credits_posted,
        timestamp,
        reserved: [0; 56],
    }
}

/// Pending plus posted debits; never overflows because every transfer checks it (§2.3).
fn debits_total(account: &Account) -> u128 {
    account
        .debits_pending
        .checked_add(account.debits_posted)
        .expect("debits never overflow")
}

fn credits_total(account: &Account) -> u128 {
    account
        .credits_pending
        .checked_add(account.credits_posted)
        .expect("credits never overflow")
}

fn is_post_or_void(flags: TransferFlags) -> bool {
    flags.contains(TransferFlags::POST_PENDING_TRANSFER)
        || flags.contains(TransferFlags::VOID_PENDING_TRANSFER)
}

/// When a pending transfer expires, if it has a timeout (§1.3), in u128 so it cannot overflow.
fn expires_at(p: &Transfer) -> Option<u128> {
    (p.timeout > 0).then(|| u128::from(p.timestamp) + u128::from(p.timeout) * NANOS_PER_SECOND)
}

impl Model {
    fn create_accounts(
        &mut self,
        batch_timestamp: u64,
        events: &[Account],
    ) -> Vec<CreateAccountResult> {
        self.execute(batch_timestamp, events, Model::create_account)
    }

    fn create_transfers(
        &mut self,
        batch_timestamp: u64,
        events: &[Transfer],
    ) -> Vec<CreateTransferResult> {
        self.execute(batch_timestamp, events, Model::create_transfer)
    }

    /// §2.1: events in order, linked chains all or nothing, transient failures retire ids.
    fn execute<E: Event, S: Status>(
        &mut self,
        batch_timestamp: u64,
        events: &[E],
        create: fn(&mut Model, &E) -> (S, u64),
    ) -> Vec<CreateResult<S>> {
        let count = events.len();
        let result = |status, timestamp| CreateResult {
            timestamp,
            status,
            reserved: 0,
        };
        let mut results = Vec::with_capacity(count);
        let mut chain_start: Option<usize> = None;
        // The whole state before the open chain, restored if the chain fails. Once it has
        // failed this is `None` while `chain_start` is still `Some`.
        let mut before_chain: Option<Model> = None;
        for (index, event) in events.iter().enumerate() {
            if event.linked() && chain_start.is_none() {
                chain_start = Some(index);
                before_chain = Some(self.clone());
            }
            let chain_failed = chain_start.is_some() && before_chain.is_none();
            let (status, object_timestamp) =
                match batch_check(events, index, batch_timestamp, chain_failed) {
                    Err(failure) => (S::from_batch(failure), 0),
                    Ok(timestamp) => create(self, &event.stamped(timestamp)),
                };
            let timestamp = if status == S::CREATED || status == S::EXISTS {
                object_timestamp
            } else {
                assigned_timestamp(batch_timestamp, count, index)
            };
            if status != S::CREATED {
                if let (Some(start), Some(before)) = (chain_start, before_chain.take()) {
                    *self = before;
                    for (earlier, earlier_result) in results.iter_mut().enumerate().skip(start) {
                        *earlier_result = result(
                            S::from_batch(BatchFailure::LinkedEventFailed),
                            assigned_timestamp(batch_timestamp, count, earlier),
                        );
                    }
                }
            }
            // After any rollback: the failed event's own id stays retired.
            if status.retires_id() {
                self.retired.insert(event.id());
            }
            results.push(result(status, timestamp));
            if chain_start.is_some() && (!event.linked() || index == count - 1) {
                chain_start = None;
                before_chain = None;
            }
        }
        results
    }

    /// §2.2 in precedence order.
    fn create_account(&mut self, a: &Account) -> (CreateAccountStatus, u64) {
        use CreateAccountStatus as S;
        if a.reserved != 0 {
            return (S::ReservedField, 0);
        }
        if a.flags.0 & !ACCOUNT_FLAGS_DEFINED != 0 {
            return (S::ReservedFlag, 0);
        }
        if a.id == 0 {
            return (S::IdMustNotBeZero, 0);
        }
        if a.id == u128::MAX {
            return (S::IdMustNotBeIntMax, 0);
        }
        if let Some(e) = self.accounts.get(&a.id) {
            let status = if a.flags != e.flags {
                S::ExistsWithDifferentFlags
            } else if a.user_data_128 != e.user_data_128 {
                S::ExistsWithDifferentUserData128
            } else if a.user_data_64 != e.user_data_64 {
                S::ExistsWithDifferentUserData64
            } else if a.user_data_32 != e.user_data_32 {
                S::ExistsWithDifferentUserData32
            } else if a.ledger != e.ledger {
                S::ExistsWithDifferentLedger
            } else if a.code != e.code {
                S::ExistsWithDifferentCode
            } else {
                S::Exists
            };
            return (status, e.timestamp);
        }
        if a.flags
            .contains(AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS)
            && a.flags
                .contains(AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS)
        {
            return (S::FlagsAreMutuallyExclusive, 0);
        }
        if a.debits_pending != 0 {
            return (S::DebitsPendingMustBeZero, 0);
        }
        if a.debits_posted != 0 {
            return (S::DebitsPostedMustBeZero, 0);
        }
        if a.credits_pending != 0 {
            return (S::CreditsPendingMustBeZero, 0);
        }
        if a.credits_posted != 0 {
            return (S::CreditsPostedMustBeZero, 0);
        }
        if a.ledger == 0 {
            return (S::LedgerMustNotBeZero, 0);
        }
        if a.code == 0 {
            return (S::CodeMustNotBeZero, 0);
        }
        if a.flags.contains(AccountFlags::IMPORTED) {
            let newest = self.accounts.values().map(|e| e.timestamp).max();
            let taken = self.transfers.values().any(|t| t.timestamp == a.timestamp);
            if newest.is_some_and(|newest| a.timestamp <= newest) || taken {
                return (S::ImportedEventTimestampMustNotRegress, 0);
            }
        }
        self.accounts.insert(a.id, *a);
        if a.flags.contains(AccountFlags::CLOSED) {
            self.created_closed.insert(a.id);
        }
        (S::Created, a.timestamp)
    }

    /// §2.3 steps 1–3, then the post/void path (§2.4) or the single-phase/pending path.
    fn create_transfer(&mut self, t: &Transfer) -> (CreateTransferStatus, u64) {
        use CreateTransferStatus as S;
        if t.flags.0 & !TRANSFER_FLAGS_DEFINED != 0 {
            return (S::ReservedFlag, 0);
        }
        if t.id == 0 {
            return (S::IdMustNotBeZero, 0);
        }
        if t.id == u128::MAX {
            return (S::IdMustNotBeIntMax, 0);
        }
        if let Some(e) = self.transfers.get(&t.id) {
            return (self.transfer_exists(t, e), e.timestamp);
        }
        if self.retired.contains(&t.id) {
            return (S::IdAlreadyFailed, 0);
        }
        let status = if is_post_or_void(t.flags) {
            self.post_or_void(t)
        } else {
            self.single_or_pending(t)
        };
        (status, t.timestamp)
    }

    /// The idempotency comparison of §2.3 (ordinary) and §2.4 (post/void).
    fn transfer_exists(&self, t: &Transfer, e: &Transfer) -> CreateTransferStatus {
        use CreateTransferStatus as S;
        if t.flags != e.flags {
            return S::ExistsWithDifferentFlags;
        }
        if t.pending_id != e.pending_id {
            return S::ExistsWithDifferentPendingId;
        }
        if t.timeout != e.timeout {
            return S::ExistsWithDifferentTimeout;
        }
        if is_post_or_void(t.flags) {
            let p = &self.transfers[&t.pending_id];
            // Zero in the retry means "inherited from the pending transfer", and so does
            // AMOUNT_MAX (post) or 0 (void) for the amount.
            let differs = |retry: u128, stored: u128, pending: u128| {
                if retry == 0 {
                    stored != pending
                } else {
                    retry != stored
                }
            };
            let full_amount = if t.flags.contains(TransferFlags::VOID_PENDING_TRANSFER) {
                t.amount == 0
            } else {
                t.amount == AMOUNT_MAX
            };
            return if t.debit_account_id != 0 && t.debit_account_id != e.debit_account_id {
                S::ExistsWithDifferentDebitAccountId
            } else if t.credit_account_id != 0 && t.credit_account_id != e.credit_account_id {
                S::ExistsWithDifferentCreditAccountId
            } else if (full_amount && e.amount != p.amount)
                || (!full_amount && t.amount != e.amount)
            {
                S::ExistsWithDifferentAmount
            } else if differs(t.user_data_128, e.user_data_128, p.user_data_128) {
                S::ExistsWithDifferentUserData128
            } else if differs(
                t.user_data_64.into(),
                e.user_data_64.into(),
                p.user_data_64.into(),
            ) {
                S::ExistsWithDifferentUserData64
            } else if differs(
                t.user_data_32.into(),
                e.user_data_32.into(),
                p.user_data_32.into(),
            ) {
                S::ExistsWithDifferentUserData32
            } else if t.ledger != 0 && t.ledger != e.ledger {
                S::ExistsWithDifferentLedger
            } else if t.code != 0 && t.code != e.code {
                S::ExistsWithDifferentCode
            } else {
                S::Exists
            };
        }
        let balancing = t.flags.contains(TransferFlags::BALANCING_DEBIT)
            || t.flags.contains(TransferFlags::BALANCING_CREDIT);
        // A balancing amount is an upper limit: any limit at least what moved is the same.
        let amount_differs = if balancing {
            t.amount < e.amount
        } else {
            t.amount != e.amount
        };
        if t.debit_account_id != e.debit_account_id {
            S::ExistsWithDifferentDebitAccountId
        } else if t.credit_account_id != e.credit_account_id {
            S::ExistsWithDifferentCreditAccountId
        } else if amount_differs {
            S::ExistsWithDifferentAmount
        } else if t.user_data_128 != e.user_data_128 {
            S::ExistsWithDifferentUserData128
        } else if t.user_data_64 != e.user_data_64 {
            S::ExistsWithDifferentUserData64
        } else if t.user_data_32 != e.user_data_32 {
            S::ExistsWithDifferentUserData32
        } else if t.ledger != e.ledger {
            S::ExistsWithDifferentLedger
        } else if t.code != e.code {
            S::ExistsWithDifferentCode
        } else {
            S::Exists
        }
    }

    /// An imported transfer's timestamp must be above every transfer's and must not be an
    /// account's (timestamps are unique across both, §1.7).
    fn imported_transfer_regresses(&self, timestamp: u64) -> bool {
        self.transfers.values().any(|e| e.timestamp >= timestamp)
            || self.accounts.values().any(|a| a.timestamp == timestamp)
    }

    /// §2.3 step 4: the single-phase and pending path.
    fn single_or_pending(&mut self, t: &Transfer) -> CreateTransferStatus {
        use CreateTransferStatus as S;
        let flags = t.flags;
        let pending = flags.contains(TransferFlags::PENDING);
        let closing = flags.contains(TransferFlags::CLOSING_DEBIT)
            || flags.contains(TransferFlags::CLOSING_CREDIT);
        if t.debit_account_id == 0 {
            return S::DebitAccountIdMustNotBeZero;
        }
        if t.debit_account_id == u128::MAX {
            return S::DebitAccountIdMustNotBeIntMax;
        }
        if t.credit_account_id == 0 {
            return S::CreditAccountIdMustNotBeZero;
        }
        if t.credit_account_id == u128::MAX {
            return S::CreditAccountIdMustNotBeIntMax;
        }
        if t.debit_account_id == t.credit_account_id {
            return S::AccountsMustBeDifferent;
        }
        if t.pending_id != 0 {
            return S::PendingIdMustBeZero;
        }
        if !pending && t.timeout != 0 {
            return S::TimeoutReservedForPendingTransfer;
        }
        if !pending && closing {
            return S::ClosingTransferMustBePending;
        }
        if t.ledger == 0 {
            return S::LedgerMustNotBeZero;
        }
        if t.code == 0 {
            return S::CodeMustNotBeZero;
        }
        let Some(dr) = self.accounts.get(&t.debit_account_id).copied() else {
            return S::DebitAccountNotFound;
        };
        let Some(cr) = self.accounts.get(&t.credit_account_id).copied() else {
            return S::CreditAccountNotFound;
        };
        if dr.ledger != cr.ledger {
            return S::AccountsMustHaveTheSameLedger;
        }
        if t.ledger != dr.ledger {
            return S::TransferMustHaveTheSameLedgerAsAccounts;
        }
        if flags.contains(TransferFlags::IMPORTED) {
            if self.imported_transfer_regresses(t.timestamp) {
                return S::ImportedEventTimestampMustNotRegress;
            }
            if t.timestamp <= dr.timestamp {
                return S::ImportedEventTimestampMustPostdateDebitAccount;
            }
            if t.timestamp <= cr.timestamp {
                return S::ImportedEventTimestampMustPostdateCreditAccount;
            }
            if t.timeout != 0 {
                return S::ImportedEventTimeoutMustBeZero;
            }
        }
        if dr.flags.contains(AccountFlags::CLOSED) {
            return S::DebitAccountAlreadyClosed;
        }
        if cr.flags.contains(AccountFlags::CLOSED) {
            return S::CreditAccountAlreadyClosed;
        }
        let mut amount = t.amount;
        if flags.contains(TransferFlags::BALANCING_DEBIT) {
            amount = amount.min(dr.credits_posted.saturating_sub(debits_total(&dr)));
        }
        if flags.contains(TransferFlags::BALANCING_CREDIT) {
            amount = amount.min(cr.debits_posted.saturating_sub(credits_total(&cr)));
        }
        let overflows = |balance: u128| balance.checked_add(amount).is_none();
        if pending && overflows(dr.debits_pending) {
            return S::OverflowsDebitsPending;
        }
        if pending && overflows(cr.credits_pending) {
            return S::OverflowsCreditsPending;
        }
        if overflows(dr.debits_posted) {
            return S::OverflowsDebitsPosted;
        }
        if overflows(cr.credits_posted) {
            return S::OverflowsCreditsPosted;
        }
        if overflows(debits_total(&dr)) {
            return S::OverflowsDebits;
        }
        if overflows(credits_total(&cr)) {
            return S::OverflowsCredits;
        }
        let expiry = u128::from(t.timestamp) + u128::from(t.timeout) * NANOS_PER_SECOND;
        if expiry > u128::from(TIMESTAMP_MAX) {
            return S::OverflowsTimeout;
        }
        // Pending debits count against the limit, pending credits do not (§1.1).
        if dr
            .flags
            .contains(AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS)
            && debits_total(&dr) + amount > dr.credits_posted
        {
            return S::ExceedsCredits;
        }
        if cr
            .flags
            .contains(AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS)
            && credits_total(&cr) + amount > cr.debits_posted
        {
            return S::ExceedsDebits;
        }

        let (mut dr_new, mut cr_new) = (dr, cr);
        if pending {
            dr_new.debits_pending += amount;
            cr_new.credits_pending += amount;
            self.pending.insert(t.id, PendingStatus::Pending);
        } else {
            dr_new.debits_posted += amount;
            cr_new.credits_posted += amount;
        }
        if flags.contains(TransferFlags::CLOSING_DEBIT) {
            dr_new.flags.0 |= AccountFlags::CLOSED;
        }
        if flags.contains(TransferFlags::CLOSING_CREDIT) {
            cr_new.flags.0 |= AccountFlags::CLOSED;
        }
        // A balancing transfer stores the amount it actually moved.
        self.record(Transfer { amount, ..*t }, dr_new, cr_new);
        S::Created
    }

    /// §2.4: post or void a pending transfer.
    fn post_or_void(&mut self, t: &Transfer) -> CreateTransferStatus {
        use CreateTransferStatus as S;
        let flags = t.flags;
        let void = flags.contains(TransferFlags::VOID_PENDING_TRANSFER);
        if flags.contains(TransferFlags::POST_PENDING_TRANSFER) && void {
            return S::FlagsAreMutuallyExclusive;
        }
        let exclusive = TransferFlags::PENDING
            | TransferFlags::BALANCING_DEBIT
            | TransferFlags::BALANCING_CREDIT
            | TransferFlags::CLOSING_DEBIT
            | TransferFlags::CLOSING_CREDIT;
        if flags.0 & exclusive != 0 {
            return S::FlagsAreMutuallyExclusive;
        }
        if t.pending_id == 0 {
            return S::PendingIdMustNotBeZero;
        }
        if t.pending_id == u128::MAX {
            return S::PendingIdMustNotBeIntMax;
        }
        if t.pending_id == t.id {
            return S::PendingIdMustBeDifferent;
        }
        if t.timeout != 0 {
            return S::TimeoutReservedForPendingTransfer;
        }
        let Some(p) = self.transfers.get(&t.pending_id).copied() else {
            return S::PendingTransferNotFound;
        };
        if !p.flags.contains(TransferFlags::PENDING) {
            return S::PendingTransferNotPending;
        }
        if t.debit_account_id != 0 && t.debit_account_id != p.debit_account_id {
            return S::PendingTransferHasDifferentDebitAccountId;
        }
        if t.credit_account_id != 0 && t.credit_account_id != p.credit_account_id {
            return S::PendingTransferHasDifferentCreditAccountId;
        }
        if t.ledger != 0 && t.ledger != p.ledger {
            return S::PendingTransferHasDifferentLedger;
        }
        if t.code != 0 && t.code != p.code {
            return S::PendingTransferHasDifferentCode;
        }
        let amount = match (void, t.amount) {
            (true, 0) | (false, AMOUNT_MAX) => p.amount,
            (_, amount) => amount,
        };
        if amount > p.amount {
            return S::ExceedsPendingTransferAmount;
        }
        if void && amount < p.amount {
            return S::PendingTransferHasDifferentAmount;
        }
        match self.pending[&p.id] {
            PendingStatus::Pending => {}
            PendingStatus::Posted => return S::PendingTransferAlreadyPosted,
            PendingStatus::Voided => return S::PendingTransferAlreadyVoided,
            PendingStatus::Expired => return S::PendingTransferExpired,
            PendingStatus::None => unreachable!("every pending transfer has a status"),
        }
        if expires_at(&p).is_some_and(|expires_at| expires_at <= u128::from(t.timestamp)) {
            return S::PendingTransferExpired;
        }
        // The post-date checks (§2.3 54–55) cannot fail here: the timestamp is above every
        // transfer's, `p`'s included, and `p` post-dates its accounts; the timeout is 0.
        if flags.contains(TransferFlags::IMPORTED) && self.imported_transfer_regresses(t.timestamp)
        {
            return S::ImportedEventTimestampMustNotRegress;
        }
        let dr = self.accounts[&p.debit_account_id];
        let cr = self.accounts[&p.credit_account_id];
        // Closed accounts still allow voiding.
        if !void && dr.flags.contains(AccountFlags::CLOSED) {
            return S::DebitAccountAlreadyClosed;
        }
        if !void && cr.flags.contains(AccountFlags::CLOSED) {
            return S::CreditAccountAlreadyClosed;
        }

        let (mut dr_new, mut cr_new) = (dr, cr);
        dr_new.debits_pending -= p.amount;
        cr_new.credits_pending -= p.amount;
        if void {
            if p.flags.contains(TransferFlags::CLOSING_DEBIT) {
                dr_new.flags.0 &= !AccountFlags::CLOSED;
            }
            if p.flags.contains(TransferFlags::CLOSING_CREDIT) {
                cr_new.flags.0 &= !AccountFlags::CLOSED;
            }
            self.pending.insert(p.id, PendingStatus::Voided);
        } else {
            dr_new.debits_posted += amount;
            cr_new.credits_posted += amount;
            self.pending.insert(p.id, PendingStatus::Posted);
        }
        let inherit = |own: u128, from_pending: u128| if own != 0 { own } else { from_pending };
        let stored = Transfer {
            id: t.id,
            debit_account_id: p.debit_account_id,
            credit_account_id: p.credit_account_id,
            amount,
            pending_id: t.pending_id,
            user_data_128: inherit(t.user_data_128, p.user_data_128),
            user_data_64: inherit(t.user_data_64.into(), p.user_data_64.into()) as u64,
            user_data_32: inherit(t.user_data_32.into(), p.user_data_32.into()) as u32,
            timeout: 0,
            ledger: p.ledger,
            code: p.code,
            flags: t.flags,
            timestamp: t.timestamp,
        };
        self.record(stored, dr_new, cr_new);
        S::Created
    }

    /// Stores a created transfer with its accounts' new state and their history rows.
    fn record(&mut self, stored: Transfer, dr: Account, cr: Account) {
        for account in [dr, cr] {
            if account.flags.contains(AccountFlags::HISTORY) {
                let row = balance_after(&account, stored.timestamp);
                self.history.entry(account.id).or_default().push(row);
            }
            self.accounts.insert(account.id, account);
        }
        self.transfers.insert(stored.id, stored);
    }

    /// Pending transfers due at `timestamp`, in expiry order then creation (= timestamp) order.
    fn due(&self, timestamp: u64) -> Vec<Transfer> {
        let mut due: Vec<(u128, u64, Transfer)> = self
            .pending
            .iter()
            .filter(|(_, status)| **status == PendingStatus::Pending)
            .map(|(id, _)| self.transfers[id])
            .filter_map(|p| expires_at(&p).map(|expires_at| (expires_at, p.timestamp, p)))
            .filter(|(expires_at, _, _)| *expires_at <= u128::from(timestamp))
            .collect();
        due.sort_by_key(|(expires_at, timestamp, _)| (*expires_at, *timestamp));
        due.into_iter().map(|(_, _, p)| p).collect()
    }

    /// The `pulse` (§2.4 "Expiry"): at most `PULSE_EVENTS_MAX` due transfers expire, releasing
    /// their pending amounts and reopening what their closing flags closed. No history rows.
    fn expire_pending(&mut self, timestamp: u64) -> usize {
        let due = self.due(timestamp);
        let expired = &due[..due.len().min(PULSE_EVENTS_MAX)];
        for p in expired {
            let dr = self
                .accounts
                .get_mut(&p.debit_account_id)
                .expect("dr exists");
            dr.debits_pending -= p.amount;
            if p.flags.contains(TransferFlags::CLOSING_DEBIT) {
                dr.flags.0 &= !AccountFlags::CLOSED;
            }
            let cr = self
                .accounts
                .get_mut(&p.credit_account_id)
                .expect("cr exists");
            cr.credits_pending -= p.amount;
            if p.flags.contains(TransferFlags::CLOSING_CREDIT) {
                cr.flags.0 &= !AccountFlags::CLOSED;
            }
            self.pending.insert(p.id, PendingStatus::Expired);
        }
        expired.len()
    }

    fn transfers_by_timestamp(&self) -> Vec<Transfer> {
        let mut transfers: Vec<Transfer> = self.transfers.values().copied().collect();
        transfers.sort_by_key(|t| t.timestamp);
        transfers
    }

    fn accounts_by_timestamp(&self) -> Vec<Account> {
        let mut accounts: Vec<Account> = self.accounts.values().copied().collect();
        accounts.sort_by_key(|a| a.timestamp);
        accounts
    }

    fn get_account_transfers(&self, filter: &AccountFilter, limit_max: u32) -> Vec<Transfer> {
        let Some(range) = account_filter_range(filter) else {
            return Vec::new();
        };
        let matching = self
            .transfers_by_timestamp()
            .into_iter()
            .filter(|t| range.contains(&t.timestamp) && account_filter_matches(filter, t));
        take_limited(
            matching,
            filter.flags.contains(AccountFilterFlags::REVERSED),
            filter.limit.min(limit_max),
        )
    }

    fn get_account_balances(&self, filter: &AccountFilter, limit_max: u32) -> Vec<AccountBalance> {
        let Some(range) = account_filter_range(filter) else {
            return Vec::new();
        };
        let history_kept = self
            .accounts
            .get(&filter.account_id)
            .is_some_and(|a| a.flags.contains(AccountFlags::HISTORY));
        if !history_kept {
            return Vec::new();
        }
        let by_timestamp: BTreeMap<u64, Transfer> =
            self.transfers.values().map(|t| (t.timestamp, *t)).collect();
        let rows = self
            .history
            .get(&filter.account_id)
            .map_or(&[][..], Vec::as_slice);
        let matching = rows
            .iter()
            .filter(|row| {
                range.contains(&row.timestamp)
                    && account_filter_matches(filter, &by_timestamp[&row.timestamp])
            })
            .copied();
        take_limited(
            matching,
            filter.flags.contains(AccountFilterFlags::REVERSED),
            filter.limit.min(limit_max),
        )
    }

    fn query_accounts(&self, filter: &QueryFilter, limit_max: u32) -> Vec<Account> {
        let Some(range) = query_filter_range(filter) else {
            return Vec::new();
        };
        let matching = self.accounts_by_timestamp().into_iter().filter(|a| {
            range.contains(&a.timestamp)
                && query_filter_matches(
                    filter,
                    (a.user_data_128, a.user_data_64, a.user_data_32),
                    a.ledger,
                    a.code,
                )
        });
        take_limited(
            matching,
            filter.flags.contains(QueryFilterFlags::REVERSED),
            filter.limit.min(limit_max),
        )
    }

    fn query_transfers(&self, filter: &QueryFilter, limit_max: u32) -> Vec<Transfer> {
        let Some(range) = query_filter_range(filter) else {
            return Vec::new();
        };
        let matching = self.transfers_by_timestamp().into_iter().filter(|t| {
            range.contains(&t.timestamp)
                && query_filter_matches(
                    filter,
                    (t.user_data_128, t.user_data_64, t.user_data_32),
                    t.ledger,
                    t.code,
                )
        });
        take_limited(
            matching,
            filter.flags.contains(QueryFilterFlags::REVERSED),
            filter.limit.min(limit_max),
        )
    }
}

/// §2.5: 0 means unbounded; a bound must be a valid timestamp (< 2^63); min ≤ max.
fn timestamp_range(min: u64, max: u64) -> Option<std::ops::RangeInclusive<u64>> {
    let valid = |bound: u64| bound == 0 || bound <= TIMESTAMP_MAX;
    if !valid(min) || !valid(max) || (max != 0 && min > max) {
        return None;
    }
    let max = if max == 0 { TIMESTAMP_MAX } else { max };
    Some(min.max(TIMESTAMP_MIN)..=max)
}

fn account_filter_range(filter: &AccountFilter) -> Option<std::ops::RangeInclusive<u64>> {
    let valid = filter.account_id != 0
        && filter.account_id != u128::MAX
        && filter.limit != 0
        && (filter.flags.contains(AccountFilterFlags::DEBITS)
            || filter.flags.contains(AccountFilterFlags::CREDITS))
        && filter.flags.padding() == 0
        && filter.reserved.iter().all(|&byte| byte == 0);
    valid
        .then(|| timestamp_range(filter.timestamp_min, filter.timestamp_max))
        .flatten()
}

fn account_filter_matches(filter: &AccountFilter, t: &Transfer) -> bool {
    let side = (filter.flags.contains(AccountFilterFlags::DEBITS)
        && t.debit_account_id == filter.account_id)
        || (filter.flags.contains(AccountFilterFlags::CREDITS)
            && t.credit_account_id == filter.account_id);
    side && query_filter_matches(
        &QueryFilter {
            user_data_128: filter.user_data_128,
            user_data_64: filter.user_data_64,
            user_data_32: filter.user_data_32,
            code: filter.code,
            ..QueryFilter::zeroed()
        },
        (t.user_data_128, t.user_data_64, t.user_data_32),
        t.ledger,
        t.code,
    )
}

fn query_filter_range(filter: &QueryFilter) -> Option<std::ops::RangeInclusive<u64>> {
    let valid = filter.limit != 0
        && filter.flags.padding() == 0
        && filter.reserved.iter().all(|&byte| byte == 0);
    valid
        .then(|| timestamp_range(filter.timestamp_min, filter.timestamp_max))
        .flatten()
}

/// Equality predicates, AND-ed; 0 means "any" (0 cannot be queried).
fn query_filter_matches(
    filter: &QueryFilter,
    user_data: (u128, u64, u32),
    ledger: u32,
    code: u16,
) -> bool {
    (filter.user_data_128 == 0 || filter.user_data_128 == user_data.0)
        && (filter.user_data_64 == 0 || filter.user_data_64 == user_data.1)
        && (filter.user_data_32 == 0 || filter.user_data_32 == user_data.2)
        && (filter.ledger == 0 || filter.ledger == ledger)
        && (filter.code == 0 || filter.code == code)
}

/// Chronological or reversed, at most `limit`.
fn take_limited<T>(rows: impl DoubleEndedIterator<Item = T>, reversed: bool, limit: u32) -> Vec<T> {
    if reversed {
        rows.rev().take(limit as usize).collect()
    } else {
        rows.take(limit as usize).collect()
    }
}

// -------------------------------------------------------------------------------------------------
// Symbolic cases: what the strategies generate.

/// Accounts 1..=SETUP_ACCOUNTS open in the first batch; the rest of 1..=ACCOUNT_IDS only if a
/// later batch opens them.
const SETUP_ACCOUNTS: u128 = 8;
const ACCOUNT_IDS: u128 = 12;
const TRANSFER_IDS: u128 = 40;

#[derive(Clone, Debug)]
struct Case {
    /// The clock before the first batch: small, or high enough that long timeouts overflow.
    start: u64,
    steps: Vec<Step>,
    /// Applied after the checkpoint round trip, to both the original and the decoded ledger.
    last: OpSpec,
}

#[derive(Clone, Debug)]
struct Step {
    op: OpSpec,
    reads: Vec<ReadSpec>,
}

#[derive(Clone, Debug)]
enum OpSpec {
    Accounts {
        advance: AdvanceSpec,
        imported: bool,
        events: Vec<AccountSpec>,
    },
    Transfers {
        advance: AdvanceSpec,
        imported: bool,
        events: Vec<TransferSpec>,
    },
    Pulse {
        advance: AdvanceSpec,
    },
}

/// How far the clock moves before a batch.
#[derive(Clone, Debug)]
enum AdvanceSpec {
    Nanos(u64),
    Millis(u64),
    /// Place event `event` (modulo the batch size) `delta` ns from the earliest reachable
    /// expiry instant, to probe the "expired at or after" boundary.
    HitExpiry {
        event: usize,
        delta: i8,
    },
}

/// An imported event's timestamp (ignored, i.e. 0, for a non-imported event unless `stray`).
#[derive(Clone, Debug)]
enum TimestampSpec {
    /// The next free timestamp after the previous batch (plus a gap).
    Next(u64),
    /// Below the previous event's (regressing when that one was created).
    Regress(u64),
    /// The `n`th newest account's timestamp, or just below it.
    OfAccount(usize, bool),
    /// The `n`th newest transfer's timestamp.
    OfTransfer(usize),
    /// Just below the transfer's debit (`false`) or credit (`true`) account's timestamp: free
    /// when that account opened after a gap, so `imported_event_timestamp_must_postdate_*`.
    BelowAccount(bool),
    Zero,
    /// 2^63 or u64::MAX: out of range.
    Huge(bool),
    /// At or beyond the batch timestamp.
    Advance(u64),
}

#[derive(Clone, Debug)]
struct Stamp {
    spec: TimestampSpec,
    /// Flip the batch's `imported` mode for this event.
    flip_imported: bool,
    /// Give a non-imported event a non-zero timestamp.
    stray: bool,
}

#[derive(Clone, Debug)]
enum AccountSpec {
    New {
        id: u128,
        user_data: (u128, u64, u32),
        ledger: u32,
        code: u16,
        flags: u16,
        defect: AccountDefect,
        stamp: Stamp,
    },
    /// Resubmit an earlier event (`back` from the newest; of those that created an account when
    /// `created`), optionally changing one field.
    Retry {
        created: bool,
        back: usize,
        change: Option<AccountField>,
    },
}

#[derive(Clone, Copy, Debug)]
enum AccountDefect {
    None,
    Reserved,
    DebitsPending,
    DebitsPosted,
    CreditsPending,
    CreditsPosted,
}

#[derive(Clone, Copy, Debug)]
enum AccountField {
    Flags,
    UserData128,
    UserData64,
    UserData32,
    Ledger,
    Code,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Single,
    Pending,
    Post,
    Void,
}

#[derive(Clone, Debug)]
enum TransferSpec {
    New(Box<NewTransfer>),
    /// As `AccountSpec::Retry`.
    Retry {
        created: bool,
        back: usize,
        change: Option<TransferField>,
    },
}

#[derive(Clone, Debug)]
struct NewTransfer {
    id: u128,
    kind: Kind,
    /// Extra flag bits on top of the kind's (linked, balancing, closing, strays, padding).
    extra_flags: u16,
    debit: u128,
    credit: u128,
    amount: AmountSpec,
    pending: PendingRef,
    /// A pending id on a single-phase or pending transfer (`pending_id_must_be_zero`).
    stray_pending_id: bool,
    /// For post/void: debit, credit, ledger, code zero (inherit), equal to the pending's, or the
    /// generated value.
    inherit: [Inherit; 4],
    timeout: u32,
    user_data: (u128, u64, u32),
    /// `None`: the debit account's ledger (1 if it does not exist).
    ledger: Option<u32>,
    code: u16,
    stamp: Stamp,
}

#[derive(Clone, Copy, Debug)]
enum Inherit {
    Zero,
    Same,
    Own,
}

#[derive(Clone, Copy, Debug)]
enum AmountSpec {
    Small(u128),
    Zero,
    Max,
    /// u128::MAX minus a little: overflows anything non-empty.
    NearMax(u128),
    /// Half of u128::MAX plus a little: two of them overflow.
    Half(u128),
    /// The referenced pending transfer's amount plus -1, 0 or 1.
    OfPending(i8),
}

/// A pending transfer to post or void: the `k`th newest pending transfer, or a raw id.
#[derive(Clone, Copy, Debug)]
enum PendingRef {
    Recent(usize),
    /// The `k`th newest transfer of any kind.
    AnyRecent(usize),
    Raw(u128),
}

#[derive(Clone, Copy, Debug)]
enum TransferField {
    Flags,
    PendingId,
    Timeout,
    DebitAccountId,
    CreditAccountId,
    Amount,
    UserData128,
    UserData64,
    UserData32,
    Ledger,
    Code,
}

#[derive(Clone, Debug)]
enum ReadSpec {
    AccountTransfers(AccountFilterSpec),
    AccountBalances(AccountFilterSpec),
    QueryAccounts(QueryFilterSpec),
    QueryTransfers(QueryFilterSpec),
}

#[derive(Clone, Debug)]
struct AccountFilterSpec {
    account_id: u128,
    user_data: (u128, u64, u32),
    code: u16,
    reserved: bool,
    range: (BoundSpec, BoundSpec),
    limit: u32,
    flags: u32,
    limit_max: u32,
}

#[derive(Clone, Debug)]
struct QueryFilterSpec {
    user_data: (u128, u64, u32),
    ledger: u32,
    code: u16,
    reserved: bool,
    range: (BoundSpec, BoundSpec),
    limit: u32,
    flags: u32,
    limit_max: u32,
}

#[derive(Clone, Copy, Debug)]
enum BoundSpec {
    Unbounded,
    /// The timestamp of the `n`th object (modulo their count) plus -1, 0 or 1.
    Near(usize, i8),
    /// TIMESTAMP_MAX (valid), 2^63 or u64::MAX (invalid).
    Huge(u8),
}

// -------------------------------------------------------------------------------------------------
// Strategies.

fn small_u128() -> impl Strategy<Value = u128> {
    prop_oneof![3 => Just(0u128), 1 => 1..=2u128]
}

fn small_u64() -> impl Strategy<Value = u64> {
    prop_oneof![3 => Just(0u64), 1 => 1..=2u64]
}

fn small_u32() -> impl Strategy<Value = u32> {
    prop_oneof![3 => Just(0u32), 1 => 1..=2u32]
}

fn user_data() -> impl Strategy<Value = (u128, u64, u32)> {
    (small_u128(), small_u64(), small_u32())
}

fn ledger() -> impl Strategy<Value = u32> {
    prop_oneof![1 => Just(0u32), 12 => Just(1u32), 4 => Just(2u32)]
}

fn code() -> impl Strategy<Value = u16> {
    prop_oneof![1 => Just(0u16), 12 => 1..=2u16]
}

fn account_id() -> impl Strategy<Value = u128> {
    prop_oneof![
        30 => 1..=SETUP_ACCOUNTS,
        3 => (SETUP_ACCOUNTS + 1)..=ACCOUNT_IDS,
        1 => Just(0u128),
        1 => Just(u128::MAX),
    ]
}

fn transfer_id() -> impl Strategy<Value = u128> {
    prop_oneof![
        20 => 1..=TRANSFER_IDS,
        20 => (TRANSFER_IDS + 1)..=1_000_000u128,
        1 => Just(0u128),
        1 => Just(u128::MAX),
    ]
}

/// A flag bit set with probability `p`.
fn bit(flag: u16, p: f64) -> impl Strategy<Value = u16> {
    prop::bool::weighted(p).prop_map(move |set| if set { flag } else { 0 })
}

fn advance() -> impl Strategy<Value = AdvanceSpec> {
    prop_oneof![
        4 => (1..=1_000u64).prop_map(AdvanceSpec::Nanos),
        4 => (1..=4_000u64).prop_map(AdvanceSpec::Millis),
        2 => (0..20usize, -1..=1i8).prop_map(|(event, delta)| AdvanceSpec::HitExpiry { event, delta }),
    ]
}

fn stamp() -> impl Strategy<Value = Stamp> {
    let spec = prop_oneof![
        20 => prop_oneof![4 => Just(0u64), 1 => 1..=3u64].prop_map(TimestampSpec::Next),
        2 => (0..=3u64).prop_map(TimestampSpec::Regress),
        2 => (0..4usize, any::<bool>()).prop_map(|(n, below)| TimestampSpec::OfAccount(n, below)),
        1 => (0..4usize).prop_map(TimestampSpec::OfTransfer),
        2 => any::<bool>().prop_map(TimestampSpec::BelowAccount),
        1 => Just(TimestampSpec::Zero),
        1 => any::<bool>().prop_map(TimestampSpec::Huge),
        1 => (0..=2u64).prop_map(TimestampSpec::Advance),
    ];
    (spec, prop::bool::weighted(0.03), prop::bool::weighted(0.03)).prop_map(
        |(spec, flip_imported, stray)| Stamp {
            spec,
            flip_imported,
            stray,
        },
    )
}

fn account_flags() -> impl Strategy<Value = u16> {
    (
        bit(AccountFlags::LINKED, 0.15),
        bit(AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS, 0.2),
        bit(AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS, 0.2),
        bit(AccountFlags::HISTORY, 0.4),
        bit(AccountFlags::CLOSED, 0.04),
        bit(1 << 9, 0.02),
    )
        .prop_map(|(a, b, c, d, e, f)| a | b | c | d | e | f)
}

fn account_spec() -> impl Strategy<Value = AccountSpec> {
    let defect = prop_oneof![
        40 => Just(AccountDefect::None),
        1 => Just(AccountDefect::Reserved),
        1 => Just(AccountDefect::DebitsPending),
        1 => Just(AccountDefect::DebitsPosted),
        1 => Just(AccountDefect::CreditsPending),
        1 => Just(AccountDefect::CreditsPosted),
    ];
    // Mostly ids that may still be free, so that the checks past idempotency come up.
    let id = prop_oneof![
        3 => 1..=SETUP_ACCOUNTS,
        4 => (SETUP_ACCOUNTS + 1)..=ACCOUNT_IDS,
        1 => Just(0u128),
        1 => Just(u128::MAX),
    ];
    let new = (
        id,
        user_data(),
        ledger(),
        code(),
        account_flags(),
        defect,
        stamp(),
    )
        .prop_map(
            |(id, user_data, ledger, code, flags, defect, stamp)| AccountSpec::New {
                id,
                user_data,
                ledger,
                code,
                flags,
                defect,
                stamp,
            },
        );
    let field = prop_oneof![
        Just(AccountField::Flags),
        Just(AccountField::UserData128),
        Just(AccountField::UserData64),
        Just(AccountField::UserData32),
        Just(AccountField::Ledger),
        Just(AccountField::Code),
    ];
    let retry = (
        prop::bool::weighted(0.8),
        0..12usize,
        prop::option::weighted(0.6, field),
    )
        .prop_map(|(created, back, change)| AccountSpec::Retry {
            created,
            back,
            change,
        });
    prop_oneof![4 => new, 1 => retry]
}

fn amount() -> impl Strategy<Value = AmountSpec> {
    prop_oneof![
        40 => (1..=100u128).prop_map(AmountSpec::Small),
        8 => Just(AmountSpec::Zero),
        8 => Just(AmountSpec::Max),
        6 => (1..=50u128).prop_map(AmountSpec::NearMax),
        6 => (0..=3u128).prop_map(AmountSpec::Half),
        20 => (-1..=1i8).prop_map(AmountSpec::OfPending),
    ]
}

fn inherit() -> impl Strategy<Value = Inherit> {
    prop_oneof![12 => Just(Inherit::Zero), 4 => Just(Inherit::Same), 1 => Just(Inherit::Own)]
}

fn transfer_flags() -> impl Strategy<Value = u16> {
    let stray_kind = prop_oneof![
        Just(TransferFlags::PENDING),
        Just(TransferFlags::POST_PENDING_TRANSFER),
        Just(TransferFlags::VOID_PENDING_TRANSFER),
    ];
    (
        bit(TransferFlags::LINKED, 0.1),
        bit(TransferFlags::BALANCING_DEBIT, 0.1),
        bit(TransferFlags::BALANCING_CREDIT, 0.1),
        bit(TransferFlags::CLOSING_DEBIT, 0.04),
        bit(TransferFlags::CLOSING_CREDIT, 0.04),
        prop::option::weighted(0.03, stray_kind),
        bit(1 << 12, 0.02),
    )
        .prop_map(|(a, b, c, d, e, stray, padding)| {
            a | b | c | d | e | stray.unwrap_or(0) | padding
        })
}

fn new_transfer() -> impl Strategy<Value = NewTransfer> {
    let kind = prop_oneof![
        35 => Just(Kind::Single),
        30 => Just(Kind::Pending),
        20 => Just(Kind::Post),
        15 => Just(Kind::Void),
    ];
    let pending = prop_oneof![
        10 => (0..6usize).prop_map(PendingRef::Recent),
        1 => (0..6usize).prop_map(PendingRef::AnyRecent),
        1 => transfer_id().prop_map(PendingRef::Raw),
    ];
    let timeout = prop_oneof![6 => Just(0u32), 5 => 1..=3u32, 1 => Just(u32::MAX)];
    (
        (
            transfer_id(),
            kind,
            transfer_flags(),
            account_id(),
            account_id(),
            amount(),
        ),
        (
            pending,
            prop::bool::weighted(0.03),
            [inherit(), inherit(), inherit(), inherit()],
        ),
        (
            timeout,
            prop::bool::weighted(0.05),
            user_data(),
            prop::option::weighted(0.15, ledger()),
            code(),
            stamp(),
        ),
    )
        .prop_map(
            |(
                (id, kind, extra_flags, debit, credit, amount),
                (pending, stray_pending_id, inherit),
                (timeout, stray_timeout, user_data, ledger, code, stamp),
            )| NewTransfer {
                id,
                kind,
                extra_flags,
                debit,
                credit,
                amount,
                pending,
                stray_pending_id,
                inherit,
                // Timeouts belong to pending transfers; elsewhere they are a rare defect.
                timeout: if kind == Kind::Pending || stray_timeout {
                    timeout
                } else {
                    0
                },
                user_data,
                ledger,
                code,
                stamp,
            },
        )
}

fn transfer_spec() -> impl Strategy<Value = TransferSpec> {
    let field = prop_oneof![
        Just(TransferField::Flags),
        Just(TransferField::PendingId),
        Just(TransferField::Timeout),
        Just(TransferField::DebitAccountId),
        Just(TransferField::CreditAccountId),
        Just(TransferField::Amount),
        Just(TransferField::UserData128),
        Just(TransferField::UserData64),
        Just(TransferField::UserData32),
        Just(TransferField::Ledger),
        Just(TransferField::Code),
    ];
    let retry = (
        prop::bool::weighted(0.8),
        0..30usize,
        prop::option::weighted(0.7, field),
    )
        .prop_map(|(created, back, change)| TransferSpec::Retry {
            created,
            back,
            change,
        });
    prop_oneof![
        5 => new_transfer().prop_map(|t| TransferSpec::New(Box::new(t))),
        1 => retry,
    ]
}

fn accounts_op() -> impl Strategy<Value = OpSpec> {
    (
        advance(),
        prop::bool::weighted(0.2),
        vec(account_spec(), 1..=8),
    )
        .prop_map(|(advance, imported, events)| OpSpec::Accounts {
            advance,
            imported,
            events,
        })
}

/// The first batch opens accounts 1..=SETUP_ACCOUNTS, so that most transfers have accounts to
/// move between: limits and history mixed, mostly on ledger 1, rarely closed; sometimes imported
/// with gaps between their timestamps.
fn setup() -> impl Strategy<Value = OpSpec> {
    let limit = prop_oneof![
        2 => Just(0),
        1 => Just(AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS),
        1 => Just(AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS),
    ];
    let account = (
        user_data(),
        prop_oneof![4 => Just(1u32), 1 => Just(2u32)],
        1..=2u16,
        limit,
        bit(AccountFlags::HISTORY, 0.5),
        bit(AccountFlags::CLOSED, 0.03),
    );
    let imported = prop::option::weighted(0.25, 0..=3u64);
    (imported, vec(account, SETUP_ACCOUNTS as usize)).prop_map(|(imported, accounts)| {
        OpSpec::Accounts {
            // Room below the batch timestamp for the gaps.
            advance: AdvanceSpec::Nanos(1 + 4 * SETUP_ACCOUNTS as u64),
            imported: imported.is_some(),
            events: (1..)
                .zip(accounts)
                .map(
                    |(id, (user_data, ledger, code, limit, history, closed))| AccountSpec::New {
                        id,
                        user_data,
                        ledger,
                        code,
                        flags: limit | history | closed,
                        defect: AccountDefect::None,
                        stamp: Stamp {
                            spec: TimestampSpec::Next(imported.unwrap_or(0)),
                            flip_imported: false,
                            stray: false,
                        },
                    },
                )
                .collect(),
        }
    })
}

fn op() -> impl Strategy<Value = OpSpec> {
    let transfers = (
        advance(),
        prop::bool::weighted(0.1),
        vec(transfer_spec(), 1..=20),
    )
        .prop_map(|(advance, imported, events)| OpSpec::Transfers {
            advance,
            imported,
            events,
        });
    prop_oneof![
        1 => accounts_op(),
        6 => transfers,
        2 => advance().prop_map(|advance| OpSpec::Pulse { advance }),
    ]
}

fn bound() -> impl Strategy<Value = BoundSpec> {
    prop_oneof![
        6 => Just(BoundSpec::Unbounded),
        6 => (0..64usize, -1..=1i8).prop_map(|(n, delta)| BoundSpec::Near(n, delta)),
        1 => (0..3u8).prop_map(BoundSpec::Huge),
    ]
}

fn limit() -> impl Strategy<Value = u32> {
    prop_oneof![1 => Just(0u32), 6 => 1..=4u32, 3 => Just(u32::MAX)]
}

fn limit_max() -> impl Strategy<Value = u32> {
    prop_oneof![4 => Just(REPLY_RECORDS_MAX), 1 => 1..=3u32]
}

fn filter_flags(defined: u32) -> impl Strategy<Value = u32> {
    (0..=defined, prop::bool::weighted(0.03)).prop_map(|(flags, padding)| {
        if padding {
            flags | 1 << 20
        } else {
            flags
        }
    })
}

fn account_filter() -> impl Strategy<Value = AccountFilterSpec> {
    (
        prop_oneof![20 => 1..=ACCOUNT_IDS, 1 => Just(0u128), 1 => Just(u128::MAX)],
        user_data(),
        prop_oneof![3 => Just(0u16), 1 => 1..=2u16],
        prop::bool::weighted(0.03),
        (bound(), bound()),
        limit(),
        // Mostly with at least one of debits/credits.
        prop_oneof![1 => filter_flags(7), 6 => filter_flags(7).prop_map(|f| f | 1 << (f & 1))],
        limit_max(),
    )
        .prop_map(
            |(account_id, user_data, code, reserved, range, limit, flags, limit_max)| {
                AccountFilterSpec {
                    account_id,
                    user_data,
                    code,
                    reserved,
                    range,
                    limit,
                    flags,
                    limit_max,
                }
            },
        )
}

fn query_filter() -> impl Strategy<Value = QueryFilterSpec> {
    (
        user_data(),
        prop_oneof![3 => Just(0u32), 1 => 1..=2u32],
        prop_oneof![3 => Just(0u16), 1 => 1..=2u16],
        prop::bool::weighted(0.03),
        (bound(), bound()),
        limit(),
        filter_flags(1),
        limit_max(),
    )
        .prop_map(
            |(user_data, ledger, code, reserved, range, limit, flags, limit_max)| QueryFilterSpec {
                user_data,
                ledger,
                code,
                reserved,
                range,
                limit,
                flags,
                limit_max,
            },
        )
}

fn read() -> impl Strategy<Value = ReadSpec> {
    prop_oneof![
        account_filter().prop_map(ReadSpec::AccountTransfers),
        account_filter().prop_map(ReadSpec::AccountBalances),
        query_filter().prop_map(ReadSpec::QueryAccounts),
        query_filter().prop_map(ReadSpec::QueryTransfers),
    ]
}

fn step(op: impl Strategy<Value = OpSpec>) -> impl Strategy<Value = Step> {
    (op, vec(read(), 0..=2)).prop_map(|(op, reads)| Step { op, reads })
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop_oneof![
            Just(0u64),
            Just(1_000_000_000_000_000_000u64),
            Just(6_000_000_000_000_000_000u64)
        ],
        step(setup()),
        vec(step(op()), 0..30),
        op(),
    )
        .prop_map(|(start, first, mut steps, last)| {
            steps.insert(0, first);
            Case { start, steps, last }
        })
}

// -------------------------------------------------------------------------------------------------
// The harness: resolves symbolic operations against the model and applies them to both sides.

/// An operation as applied, with its results: what a replay must reproduce.
#[derive(Clone, Debug, PartialEq)]
enum Applied {
    Accounts(u64, Vec<Account>, Vec<CreateAccountResult>),
    Transfers(u64, Vec<Transfer>, Vec<CreateTransferResult>),
    Pulse(u64, usize),
}

struct Harness {
    ledger: Ledger,
    store: MemoryStore,
    model: Model,
    /// The highest timestamp any applied batch or pulse was stamped with.
    timestamp: u64,
    applied: Vec<Applied>,
    /// Every event submitted so far, for retries.
    account_events: Vec<Account>,
    transfer_events: Vec<Transfer>,
    /// The submitted form of every event that created an object.
    created_account_events: Vec<Account>,
    created_transfer_events: Vec<Transfer>,
}

/// Applies a concrete operation to a ledger and its store (for replays and the decoded ledger).
fn apply(ledger: &mut Ledger, store: &mut MemoryStore, applied: &Applied) -> Applied {
    match applied {
        Applied::Accounts(timestamp, events, _) => {
            let mut results = Vec::new();
            ledger.create_accounts(store, *timestamp, events, &mut results);
            Applied::Accounts(*timestamp, events.clone(), results)
        }
        Applied::Transfers(timestamp, events, _) => {
            let first = store.append_batch(*timestamp, events);
            let mut results = Vec::new();
            ledger.create_transfers(store, *timestamp, first, events, &mut results);
            Applied::Transfers(*timestamp, events.clone(), results)
        }
        Applied::Pulse(timestamp, _) => Applied::Pulse(
            *timestamp,
            ledger.expire_pending_transfers(store, *timestamp),
        ),
    }
}

impl Harness {
    fn new(start: u64) -> Self {
        Self {
            // Indexes that grow every few batches, with each growth's moves spread over several
            // batches: lookups, chains undone and checkpoints meet migrations in progress. The
            // replay uses `Ledger::new` (no growth at these sizes): the same results and digest
            // from another index layout.
            ledger: Ledger::with_small_indexes_for_tests(),
            store: MemoryStore::new(),
            model: Model::default(),
            timestamp: start,
            applied: Vec::new(),
            account_events: Vec::new(),
            transfer_events: Vec::new(),
            created_account_events: Vec::new(),
            created_transfer_events: Vec::new(),
        }
    }

    /// The batch timestamp for `count` events (`PULSE_EVENTS_MAX` for a pulse): above the
    /// previous one by at least `count + 1` (the ledger asserts `T - count > previous`).
    fn batch_timestamp(&self, advance: &AdvanceSpec, count: usize, pulse: bool) -> u64 {
        let lowest = self.timestamp + count as u64 + 1;
        match *advance {
            AdvanceSpec::Nanos(nanos) => lowest + nanos - 1,
            AdvanceSpec::Millis(millis) => lowest + millis * 1_000_000,
            AdvanceSpec::HitExpiry { event, delta } => {
                // Event `index` is stamped T - count + index + 1; a pulse acts at T itself.
                let index = if pulse { count - 1 } else { event % count } as u64;
                let instants: BTreeSet<u128> = self
                    .model
                    .due(TIMESTAMP_MAX)
                    .iter()
                    .filter_map(expires_at)
                    .collect();
                instants
                    .into_iter()
                    .filter_map(|instant| {
                        let target = instant.checked_add_signed(i128::from(delta))?;
                        u64::try_from(target + count as u128 - index as u128 - 1).ok()
                    })
                    .find(|&timestamp| timestamp >= lowest && timestamp <= TIMESTAMP_MAX)
                    .unwrap_or(lowest)
            }
        }
    }

    /// Resolves an event's timestamp. `cursor` is the next free timestamp for imported events;
    /// `accounts` are a transfer's debit and credit account ids.
    fn stamp(
        &self,
        stamp: &Stamp,
        imported: bool,
        cursor: &mut u64,
        batch_timestamp: u64,
        accounts: [u128; 2],
    ) -> u64 {
        if !imported {
            return if stamp.stray { *cursor } else { 0 };
        }
        let nth = |timestamps: Vec<u64>, n: usize| {
            if timestamps.is_empty() {
                *cursor
            } else {
                timestamps[timestamps.len() - 1 - n % timestamps.len()]
            }
        };
        match stamp.spec {
            TimestampSpec::Next(gap) => {
                let timestamp = *cursor + gap;
                *cursor = timestamp + 1;
                timestamp
            }
            TimestampSpec::Regress(back) => cursor.saturating_sub(1 + back).max(1),
            TimestampSpec::OfAccount(n, below) => nth(
                self.model
                    .accounts_by_timestamp()
                    .iter()
                    .map(|a| a.timestamp)
                    .collect(),
                n,
            )
            .saturating_sub(u64::from(below)),
            TimestampSpec::OfTransfer(n) => nth(
                self.model
                    .transfers_by_timestamp()
                    .iter()
                    .map(|t| t.timestamp)
                    .collect(),
                n,
            ),
            TimestampSpec::BelowAccount(credit) => self
                .model
                .accounts
                .get(&accounts[usize::from(credit)])
                .map_or(*cursor, |account| account.timestamp - 1),
            TimestampSpec::Zero => 0,
            TimestampSpec::Huge(max) => {
                if max {
                    u64::MAX
                } else {
                    TIMESTAMP_MAX + 1
                }
            }
            TimestampSpec::Advance(beyond) => batch_timestamp + beyond,
        }
    }

    fn accounts_batch(
        &self,
        events: &[AccountSpec],
        imported: bool,
        batch_timestamp: u64,
    ) -> Vec<Account> {
        let mut cursor = self.timestamp + 1;
        let mut batch: Vec<Account> = Vec::with_capacity(events.len());
        for spec in events {
            let account = match spec {
                AccountSpec::New {
                    id,
                    user_data,
                    ledger,
                    code,
                    flags,
                    defect,
                    stamp,
                } => {
                    let imported = imported != stamp.flip_imported;
                    let mut account = Account {
                        id: *id,
                        user_data_128: user_data.0,
                        user_data_64: user_data.1,
                        user_data_32: user_data.2,
                        ledger: *ledger,
                        code: *code,
                        flags: AccountFlags(
                            flags | if imported { AccountFlags::IMPORTED } else { 0 },
                        ),
                        timestamp: self.stamp(
                            stamp,
                            imported,
                            &mut cursor,
                            batch_timestamp,
                            [0, 0],
                        ),
                        ..Account::default()
                    };
                    match defect {
                        AccountDefect::None => {}
                        AccountDefect::Reserved => account.reserved = 1,
                        AccountDefect::DebitsPending => account.debits_pending = 1,
                        AccountDefect::DebitsPosted => account.debits_posted = 1,
                        AccountDefect::CreditsPending => account.credits_pending = 1,
                        AccountDefect::CreditsPosted => account.credits_posted = 1,
                    }
                    account
                }
                AccountSpec::Retry {
                    created,
                    back,
                    change,
                } => {
                    let earlier: Vec<&Account> = if *created {
                        self.created_account_events.iter().collect()
                    } else {
                        self.account_events.iter().chain(batch.iter()).collect()
                    };
                    let Some(&&original) =
                        earlier.get(earlier.len().wrapping_sub(1 + back % earlier.len().max(1)))
                    else {
                        continue;
                    };
                    let mut account = original;
                    match change {
                        None => {}
                        Some(AccountField::Flags) => account.flags.0 ^= AccountFlags::HISTORY,
                        Some(AccountField::UserData128) => account.user_data_128 += 1,
                        Some(AccountField::UserData64) => account.user_data_64 += 1,
                        Some(AccountField::UserData32) => account.user_data_32 += 1,
                        Some(AccountField::Ledger) => account.ledger = account.ledger % 2 + 1,
                        Some(AccountField::Code) => account.code = account.code % 2 + 1,
                    }
                    account
                }
            };
            batch.push(account);
        }
        batch
    }

    /// The pending transfer `reference` points at, if it exists, and the id to use.
    fn pending_ref(&self, reference: PendingRef) -> (u128, Option<Transfer>) {
        match reference {
            PendingRef::Recent(k) | PendingRef::AnyRecent(k) => {
                let only_pending = matches!(reference, PendingRef::Recent(_));
                let mut pending: Vec<Transfer> = self
                    .model
                    .transfers
                    .values()
                    .filter(|t| !only_pending || t.flags.contains(TransferFlags::PENDING))
                    .copied()
                    .collect();
                pending.sort_by_key(|t| std::cmp::Reverse(t.timestamp));
                match pending.get(k % pending.len().max(1)) {
                    Some(p) => (p.id, Some(*p)),
                    None => (1, self.model.transfers.get(&1).copied()),
                }
            }
            PendingRef::Raw(id) => (id, self.model.transfers.get(&id).copied()),
        }
    }

    fn new_transfer(
        &self,
        spec: &NewTransfer,
        imported: bool,
        cursor: &mut u64,
        batch_timestamp: u64,
    ) -> Transfer {
        let (pending_id, p) = self.pending_ref(spec.pending);
        let kind_flag = match spec.kind {
            Kind::Single => 0,
            Kind::Pending => TransferFlags::PENDING,
            Kind::Post => TransferFlags::POST_PENDING_TRANSFER,
            Kind::Void => TransferFlags::VOID_PENDING_TRANSFER,
        };
        let imported = imported != spec.stamp.flip_imported;
        let flags =
            kind_flag | spec.extra_flags | if imported { TransferFlags::IMPORTED } else { 0 };
        let pending_amount = p.map_or(1, |p| p.amount);
        let amount = match spec.amount {
            AmountSpec::Small(amount) => amount,
            AmountSpec::Zero => 0,
            AmountSpec::Max => AMOUNT_MAX,
            AmountSpec::NearMax(below) => u128::MAX - below,
            AmountSpec::Half(above) => u128::MAX / 2 + above,
            AmountSpec::OfPending(delta) => pending_amount.wrapping_add_signed(i128::from(delta)),
        };
        let ledger = spec.ledger.unwrap_or_else(|| {
            self.model
                .accounts
                .get(&spec.debit)
                .map_or(1, |account| account.ledger)
        });
        let mut t = Transfer {
            id: spec.id,
            debit_account_id: spec.debit,
            credit_account_id: spec.credit,
            amount,
            pending_id: if spec.stray_pending_id { pending_id } else { 0 },
            user_data_128: spec.user_data.0,
            user_data_64: spec.user_data.1,
            user_data_32: spec.user_data.2,
            timeout: spec.timeout,
            ledger,
            code: spec.code,
            flags: TransferFlags(flags),
            timestamp: self.stamp(
                &spec.stamp,
                imported,
                cursor,
                batch_timestamp,
                [spec.debit, spec.credit],
            ),
        };
        if matches!(spec.kind, Kind::Post | Kind::Void) {
            t.pending_id = pending_id;
            let inherit = |choice: Inherit, own: u128, pending: Option<u128>| match choice {
                Inherit::Zero => 0,
                Inherit::Same => pending.unwrap_or(0),
                Inherit::Own => own,
            };
            let [dr, cr, choice_ledger, code] = spec.inherit;
            t.debit_account_id = inherit(dr, spec.debit, p.map(|p| p.debit_account_id));
            t.credit_account_id = inherit(cr, spec.credit, p.map(|p| p.credit_account_id));
            t.ledger = inherit(choice_ledger, ledger.into(), p.map(|p| p.ledger.into())) as u32;
            t.code = inherit(code, spec.code.into(), p.map(|p| p.code.into())) as u16;
        }
        t
    }

    fn transfers_batch(
        &self,
        events: &[TransferSpec],
        imported: bool,
        batch_timestamp: u64,
    ) -> Vec<Transfer> {
        let mut cursor = self.timestamp + 1;
        let mut batch: Vec<Transfer> = Vec::with_capacity(events.len());
        for spec in events {
            let transfer = match spec {
                TransferSpec::New(spec) => {
                    self.new_transfer(spec, imported, &mut cursor, batch_timestamp)
                }
                TransferSpec::Retry {
                    created,
                    back,
                    change,
                } => {
                    let earlier: Vec<&Transfer> = if *created {
                        self.created_transfer_events.iter().collect()
                    } else {
                        self.transfer_events.iter().chain(batch.iter()).collect()
                    };
                    let Some(&&original) =
                        earlier.get(earlier.len().wrapping_sub(1 + back % earlier.len().max(1)))
                    else {
                        continue;
                    };
                    let mut t = original;
                    match change {
                        None => {}
                        Some(TransferField::Flags) => t.flags.0 ^= TransferFlags::BALANCING_CREDIT,
                        Some(TransferField::PendingId) => {
                            t.pending_id = t.pending_id % TRANSFER_IDS + 1
                        }
                        Some(TransferField::Timeout) => t.timeout = t.timeout.wrapping_add(1),
                        Some(TransferField::DebitAccountId) => {
                            t.debit_account_id = t.debit_account_id % ACCOUNT_IDS + 1
                        }
                        Some(TransferField::CreditAccountId) => {
                            t.credit_account_id = t.credit_account_id % ACCOUNT_IDS + 1
                        }
                        Some(TransferField::Amount) => t.amount ^= 1,
                        Some(TransferField::UserData128) => t.user_data_128 += 1,
                        Some(TransferField::UserData64) => t.user_data_64 += 1,
                        Some(TransferField::UserData32) => t.user_data_32 += 1,
                        Some(TransferField::Ledger) => t.ledger = t.ledger % 2 + 1,
                        Some(TransferField::Code) => t.code = t.code % 2 + 1,
                    }
                    t
                }
            };
            batch.push(transfer);
        }
        batch
    }
}

// -------------------------------------------------------------------------------------------------
// Applying operations and checking the outcome.

impl Harness {
    /// Resolves a symbolic operation into a concrete one (results still empty), or `None` for a
    /// batch that came out empty.
    fn resolve(&self, op: &OpSpec) -> Option<Applied> {
        match op {
            OpSpec::Accounts {
                advance,
                imported,
                events,
            } => {
                let batch_timestamp = self.batch_timestamp(advance, events.len(), false);
                let events = self.accounts_batch(events, *imported, batch_timestamp);
                (!events.is_empty()).then(|| Applied::Accounts(batch_timestamp, events, Vec::new()))
            }
            OpSpec::Transfers {
                advance,
                imported,
                events,
            } => {
                let batch_timestamp = self.batch_timestamp(advance, events.len(), false);
                let events = self.transfers_batch(events, *imported, batch_timestamp);
                (!events.is_empty())
                    .then(|| Applied::Transfers(batch_timestamp, events, Vec::new()))
            }
            OpSpec::Pulse { advance } => Some(Applied::Pulse(
                self.batch_timestamp(advance, PULSE_EVENTS_MAX, true),
                0,
            )),
        }
    }

    fn step(&mut self, op: &OpSpec) -> Result<(), TestCaseError> {
        let Some(concrete) = self.resolve(op) else {
            return Ok(());
        };
        // Logged before it runs, so that a failure (even a panic) can show it.
        self.applied.push(concrete.clone());
        let outcome = match concrete {
            Applied::Accounts(batch_timestamp, events, _) => {
                let ids_before: BTreeSet<u128> = self.model.accounts.keys().copied().collect();
                let mut results = Vec::new();
                self.ledger
                    .create_accounts(&self.store, batch_timestamp, &events, &mut results);
                let expected = self.model.create_accounts(batch_timestamp, &events);
                check_results(&results, &expected)?;
                let chains = failed_chain_ids(&events, &results, CreateAccountStatus::Created);
                for id in chains.difference(&ids_before) {
                    prop_assert!(
                        self.ledger.account(*id).is_none(),
                        "account {id} of a failed chain left a trace"
                    );
                }
                self.account_events.extend_from_slice(&events);
                self.created_account_events
                    .extend(created(&events, &results));
                Applied::Accounts(batch_timestamp, events, results)
            }
            Applied::Transfers(batch_timestamp, events, _) => {
                let ids_before: BTreeSet<u128> = self.model.transfers.keys().copied().collect();
                let first = self.store.append_batch(batch_timestamp, &events);
                let mut results = Vec::new();
                self.ledger.create_transfers(
                    &self.store,
                    batch_timestamp,
                    first,
                    &events,
                    &mut results,
                );
                let expected = self.model.create_transfers(batch_timestamp, &events);
                check_results(&results, &expected)?;
                let chains = failed_chain_ids(&events, &results, CreateTransferStatus::Created);
                for id in chains.difference(&ids_before) {
                    prop_assert!(
                        self.ledger.transfer(&self.store, *id).is_none(),
                        "transfer {id} of a failed chain left a trace"
                    );
                }
                self.transfer_events.extend_from_slice(&events);
                self.created_transfer_events
                    .extend(created(&events, &results));
                Applied::Transfers(batch_timestamp, events, results)
            }
            Applied::Pulse(pulse_timestamp, _) => {
                let needed = !self.model.due(pulse_timestamp).is_empty();
                prop_assert_eq!(
                    self.ledger.pulse_needed(pulse_timestamp),
                    needed,
                    "pulse_needed({})",
                    pulse_timestamp
                );
                if !needed {
                    self.applied.pop();
                    return Ok(());
                }
                let expired = self
                    .ledger
                    .expire_pending_transfers(&self.store, pulse_timestamp);
                prop_assert_eq!(expired, self.model.expire_pending(pulse_timestamp));
                Applied::Pulse(pulse_timestamp, expired)
            }
        };
        self.timestamp = match outcome {
            Applied::Accounts(timestamp, ..)
            | Applied::Transfers(timestamp, ..)
            | Applied::Pulse(timestamp, _) => timestamp,
        };
        *self.applied.last_mut().expect("logged above") = outcome;
        Ok(())
    }

    /// Every account and transfer equals the model's; then the design's invariants.
    fn check_state(&self) -> Result<(), TestCaseError> {
        let account_ids: Vec<u128> = (0..=ACCOUNT_IDS).chain([u128::MAX]).collect();
        let mut accounts = Vec::new();
        self.ledger.lookup_accounts(&account_ids, &mut accounts);
        let expected: Vec<Account> = account_ids
            .iter()
            .filter_map(|id| self.model.accounts.get(id).copied())
            .collect();
        prop_assert_eq!(&accounts, &expected, "accounts");
        prop_assert_eq!(
            self.ledger.accounts(),
            &self.model.accounts_by_timestamp()[..]
        );

        // Every id ever submitted: created ones must match, failed ones must be absent.
        let transfer_ids: BTreeSet<u128> = self
            .transfer_events
            .iter()
            .map(|t| t.id)
            .chain([0, u128::MAX])
            .collect();
        let transfer_ids: Vec<u128> = transfer_ids.into_iter().collect();
        let mut transfers = Vec::new();
        self.ledger
            .lookup_transfers(&self.store, &transfer_ids, &mut transfers);
        let expected: Vec<Transfer> = transfer_ids
            .iter()
            .filter_map(|id| self.model.transfers.get(id).copied())
            .collect();
        prop_assert_eq!(&transfers, &expected, "transfers");
        prop_assert_eq!(
            self.ledger.transfer_count(),
            self.model.transfers.len() as u64
        );
        self.check_invariants()
    }

    /// The design's invariants 1–3 on the real ledger's accounts (invariant 6, chains, is
    /// checked right after each batch).
    fn check_invariants(&self) -> Result<(), TestCaseError> {
        let accounts = self.ledger.accounts();

        // 1. Per ledger, debits equal credits, posted and pending. Sums of u128 balances can
        // exceed u128, so they are kept as (carries, low) pairs.
        let mut sums: BTreeMap<u32, [(u128, u128); 4]> = BTreeMap::new();
        for a in accounts {
            let sum = sums.entry(a.ledger).or_default();
            let balances = [
                a.debits_posted,
                a.credits_posted,
                a.debits_pending,
                a.credits_pending,
            ];
            for (wide, value) in sum.iter_mut().zip(balances) {
                let (low, carry) = wide.1.overflowing_add(value);
                *wide = (wide.0 + u128::from(carry), low);
            }
        }
        for (ledger, [debits_posted, credits_posted, debits_pending, credits_pending]) in sums {
            prop_assert_eq!(debits_posted, credits_posted, "posted, ledger {}", ledger);
            prop_assert_eq!(
                debits_pending,
                credits_pending,
                "pending, ledger {}",
                ledger
            );
        }

        // 2. Balances are the fold of the stored transfers minus released pending amounts, and
        // an account is closed exactly when it was created closed or a closing pending
        // transfer on it is still pending.
        let mut folded: BTreeMap<u128, (Account, bool)> = accounts
            .iter()
            .map(|a| {
                let fresh = Account {
                    debits_pending: 0,
                    debits_posted: 0,
                    credits_pending: 0,
                    credits_posted: 0,
                    ..*a
                };
                (a.id, (fresh, self.model.created_closed.contains(&a.id)))
            })
            .collect();
        for t in self.model.transfers.values() {
            let still_pending = self.model.pending.get(&t.id) == Some(&PendingStatus::Pending);
            let (pending, posted) = if t.flags.contains(TransferFlags::PENDING) {
                (still_pending, false)
            } else {
                (
                    false,
                    !t.flags.contains(TransferFlags::VOID_PENDING_TRANSFER),
                )
            };
            let add = |balance: &mut u128| {
                *balance = balance.checked_add(t.amount).expect("fold overflows")
            };
            let (dr, dr_closed) = folded.get_mut(&t.debit_account_id).expect("dr exists");
            if pending {
                add(&mut dr.debits_pending);
                *dr_closed |= t.flags.contains(TransferFlags::CLOSING_DEBIT);
            }
            if posted {
                add(&mut dr.debits_posted);
            }
            let (cr, cr_closed) = folded.get_mut(&t.credit_account_id).expect("cr exists");
            if pending {
                add(&mut cr.credits_pending);
                *cr_closed |= t.flags.contains(TransferFlags::CLOSING_CREDIT);
            }
            if posted {
                add(&mut cr.credits_posted);
            }
        }
        for a in accounts {
            let (fold, closed) = folded[&a.id];
            prop_assert_eq!(
                (
                    a.debits_pending,
                    a.debits_posted,
                    a.credits_pending,
                    a.credits_posted
                ),
                (
                    fold.debits_pending,
                    fold.debits_posted,
                    fold.credits_pending,
                    fold.credits_posted
                ),
                "balances of account {} are not the fold of its transfers",
                a.id
            );
            prop_assert_eq!(
                a.flags.contains(AccountFlags::CLOSED),
                closed,
                "closed flag of {}",
                a.id
            );

            // 3. Limits hold, pending debits (credits) included.
            if a.flags
                .contains(AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS)
            {
                prop_assert!(debits_total(a) <= a.credits_posted, "limit of {}", a.id);
            }
            if a.flags
                .contains(AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS)
            {
                prop_assert!(credits_total(a) <= a.debits_posted, "limit of {}", a.id);
            }
        }
        Ok(())
    }

    /// Full history of every account, then the step's random reads.
    fn check_reads(&self, reads: &[ReadSpec]) -> Result<(), TestCaseError> {
        for account_id in 1..=ACCOUNT_IDS {
            let everything = AccountFilter {
                account_id,
                limit: u32::MAX,
                flags: AccountFilterFlags(AccountFilterFlags::DEBITS | AccountFilterFlags::CREDITS),
                ..AccountFilter::zeroed()
            };
            self.check_account_transfers(&everything, REPLY_RECORDS_MAX)?;
            self.check_account_balances(&everything, REPLY_RECORDS_MAX)?;
        }
        for read in reads {
            match read {
                ReadSpec::AccountTransfers(spec) => {
                    let filter = self.account_filter(spec);
                    self.check_account_transfers(&filter, spec.limit_max)?;
                }
                ReadSpec::AccountBalances(spec) => {
                    let filter = self.account_filter(spec);
                    self.check_account_balances(&filter, spec.limit_max)?;
                }
                ReadSpec::QueryAccounts(spec) => {
                    let timestamps: Vec<u64> = self
                        .model
                        .accounts_by_timestamp()
                        .iter()
                        .map(|a| a.timestamp)
                        .collect();
                    let filter = query_filter_of(spec, &timestamps);
                    let mut accounts = Vec::new();
                    self.ledger
                        .query_accounts(&filter, spec.limit_max, &mut accounts);
                    prop_assert_eq!(
                        accounts,
                        self.model.query_accounts(&filter, spec.limit_max),
                        "query_accounts({:?}, {})",
                        filter,
                        spec.limit_max
                    );
                }
                ReadSpec::QueryTransfers(spec) => {
                    let filter = query_filter_of(spec, &self.transfer_timestamps());
                    let mut transfers = Vec::new();
                    self.ledger.query_transfers(
                        &self.store,
                        &filter,
                        spec.limit_max,
                        &mut transfers,
                    );
                    prop_assert_eq!(
                        transfers,
                        self.model.query_transfers(&filter, spec.limit_max),
                        "query_transfers({:?}, {})",
                        filter,
                        spec.limit_max
                    );
                }
            }
        }
        Ok(())
    }

    fn transfer_timestamps(&self) -> Vec<u64> {
        self.model
            .transfers_by_timestamp()
            .iter()
            .map(|t| t.timestamp)
            .collect()
    }

    fn account_filter(&self, spec: &AccountFilterSpec) -> AccountFilter {
        let timestamps = self.transfer_timestamps();
        let mut filter = AccountFilter {
            account_id: spec.account_id,
            user_data_128: spec.user_data.0,
            user_data_64: spec.user_data.1,
            user_data_32: spec.user_data.2,
            code: spec.code,
            timestamp_min: resolve_bound(spec.range.0, &timestamps),
            timestamp_max: resolve_bound(spec.range.1, &timestamps),
            limit: spec.limit,
            flags: AccountFilterFlags(spec.flags),
            ..AccountFilter::zeroed()
        };
        if spec.reserved {
            filter.reserved[57] = 1;
        }
        filter
    }

    fn check_account_transfers(
        &self,
        filter: &AccountFilter,
        limit_max: u32,
    ) -> Result<(), TestCaseError> {
        let mut transfers = Vec::new();
        self.ledger
            .get_account_transfers(&self.store, filter, limit_max, &mut transfers);
        prop_assert_eq!(
            transfers,
            self.model.get_account_transfers(filter, limit_max),
            "get_account_transfers({:?}, {})",
            filter,
            limit_max
        );
        Ok(())
    }

    fn check_account_balances(
        &self,
        filter: &AccountFilter,
        limit_max: u32,
    ) -> Result<(), TestCaseError> {
        let mut balances = Vec::new();
        self.ledger
            .get_account_balances(&self.store, filter, limit_max, &mut balances);
        prop_assert_eq!(
            balances,
            self.model.get_account_balances(filter, limit_max),
            "get_account_balances({:?}, {})",
            filter,
            limit_max
        );
        Ok(())
    }

    /// Determinism: the same batches into a fresh ledger give the same results and digest.
    fn check_replay(&self) -> Result<(), TestCaseError> {
        let mut ledger = Ledger::new();
        let mut store = MemoryStore::new();
        for applied in &self.applied {
            let replayed = apply(&mut ledger, &mut store, applied);
            prop_assert_eq!(applied, &replayed, "replay");
        }
        prop_assert_eq!(ledger.digest(&store), self.ledger.digest(&self.store));
        Ok(())
    }

    /// A checkpoint decodes to the same state, and that state goes on like the original. A
    /// checkpoint begun at the same moment and finished in slices after the next operation
    /// holds the same bytes (its tail only grows meanwhile).
    fn check_checkpoint(&mut self, last: &OpSpec) -> Result<(), TestCaseError> {
        let mut encoded = Vec::new();
        self.ledger.encode_checkpoint(&mut encoded);
        let (decoded, size) = Ledger::decode_checkpoint(&encoded)
            .map_err(|error| TestCaseError::fail(format!("decode_checkpoint: {error}")))?;
        prop_assert_eq!(size, encoded.len());
        let mut decoded = decoded
            .index(&self.store, 0)
            .map_err(|error| TestCaseError::fail(format!("index: {error}")))?;
        prop_assert_eq!(decoded.digest(&self.store), self.ledger.digest(&self.store));
        let mut sliced = Vec::new();
        let mut sliced_checkpoint = self.ledger.checkpoint_begin(&mut sliced);
        sliced_checkpoint.encode_step(&mut sliced, 24);
        // A head copied in slices while the next operation changes accounts and transfer
        // states in place: the copy keeps the values of the moment.
        self.ledger.checkpoint_head_begin(b"x".to_vec(), Vec::new());
        self.ledger.checkpoint_head_step(100);

        // The decoded ledger gets its own copy of the store.
        let mut store = MemoryStore::new();
        for applied in &self.applied {
            if let Applied::Transfers(timestamp, events, _) = applied {
                store.append_batch(*timestamp, events);
            }
        }
        let applied_before = self.applied.len();
        self.step(last)?;
        self.check_state()?;
        for applied in &self.applied[applied_before..] {
            let continued = apply(&mut decoded, &mut store, applied);
            prop_assert_eq!(applied, &continued, "after decode");
        }
        prop_assert_eq!(decoded.digest(&store), self.ledger.digest(&self.store));
        while !sliced_checkpoint.encode_step(&mut sliced, 24) {}
        prop_assert!(sliced == encoded, "a checkpoint finished later differs");
        while !self.ledger.checkpoint_head_step(100) {}
        let (mut stepped, mut stepped_checkpoint) = self.ledger.checkpoint_head_finish();
        while !stepped_checkpoint.encode_step(&mut stepped, 24) {}
        prop_assert!(
            stepped[0] == b'x' && stepped[1..] == encoded[..],
            "a head copied in slices differs"
        );
        Ok(())
    }
}

fn query_filter_of(spec: &QueryFilterSpec, timestamps: &[u64]) -> QueryFilter {
    let mut filter = QueryFilter {
        user_data_128: spec.user_data.0,
        user_data_64: spec.user_data.1,
        user_data_32: spec.user_data.2,
        ledger: spec.ledger,
        code: spec.code,
        timestamp_min: resolve_bound(spec.range.0, timestamps),
        timestamp_max: resolve_bound(spec.range.1, timestamps),
        limit: spec.limit,
        flags: QueryFilterFlags(spec.flags),
        ..QueryFilter::zeroed()
    };
    if spec.reserved {
        filter.reserved[5] = 1;
    }
    filter
}

fn resolve_bound(bound: BoundSpec, timestamps: &[u64]) -> u64 {
    match bound {
        BoundSpec::Unbounded => 0,
        BoundSpec::Near(n, delta) => timestamps
            .get(n % timestamps.len().max(1))
            .map_or(0, |t| t.saturating_add_signed(i64::from(delta))),
        BoundSpec::Huge(which) => [TIMESTAMP_MAX, TIMESTAMP_MAX + 1, u64::MAX][usize::from(which)],
    }
}

/// Results compared event by event.
fn check_results<S: Status>(
    results: &[CreateResult<S>],
    expected: &[CreateResult<S>],
) -> Result<(), TestCaseError> {
    prop_assert_eq!(results.len(), expected.len());
    for (index, (real, model)) in results.iter().zip(expected).enumerate() {
        prop_assert_eq!(
            (real.status, real.timestamp),
            (model.status, model.timestamp),
            "event {} (ledger, model)",
            index
        );
    }
    Ok(())
}

/// A record's Debug without its zero fields, to keep failure reports short.
fn compact(record: &impl Debug) -> String {
    let text = format!("{record:?}");
    let Some((name, fields)) = text.split_once(" { ") else {
        return text;
    };
    let fields: Vec<&str> = fields
        .trim_end_matches(" }")
        .split(", ")
        .filter(|field| !field.ends_with(": 0") && !field.ends_with("(0)"))
        .collect();
    format!("{name} {{ {} }}", fields.join(", "))
}

/// The operations of a case as applied, one event a line, for failure reports.
fn describe(applied: &[Applied]) -> String {
    fn batch<E: Debug, S: Debug>(
        out: &mut String,
        name: &str,
        timestamp: u64,
        events: &[E],
        results: &[CreateResult<S>],
    ) {
        out.push_str(&format!("{name} at {timestamp}:\n"));
        for (index, event) in events.iter().enumerate() {
            let result = results.get(index).map_or(String::new(), |r| {
                format!(" -> {:?} @{}", r.status, r.timestamp)
            });
            out.push_str(&format!("  {}{result}\n", compact(event)));
        }
    }
    let mut out = String::new();
    for op in applied {
        match op {
            Applied::Accounts(timestamp, events, results) => {
                batch(&mut out, "create_accounts", *timestamp, events, results)
            }
            Applied::Transfers(timestamp, events, results) => {
                batch(&mut out, "create_transfers", *timestamp, events, results)
            }
            Applied::Pulse(timestamp, expired) => {
                out.push_str(&format!("pulse at {timestamp}: {expired} expired\n"))
            }
        }
    }
    out
}

/// The events that created an object.
fn created<'a, E: Copy, S: Status>(
    events: &'a [E],
    results: &'a [CreateResult<S>],
) -> impl Iterator<Item = E> + 'a {
    events
        .iter()
        .zip(results)
        .filter(|(_, result)| result.status == S::CREATED)
        .map(|(event, _)| *event)
}

/// Ids of the events of linked chains that failed (§2.1 chains: a linked run plus the event
/// that closes it), minus ids some other event of the batch created.
fn failed_chain_ids<E: Event, S: Status>(
    events: &[E],
    results: &[CreateResult<S>],
    created: S,
) -> BTreeSet<u128> {
    let mut failed = BTreeSet::new();
    let mut start = 0;
    while start < events.len() {
        let mut end = start;
        if events[start].linked() {
            while end + 1 < events.len() && events[end].linked() {
                end += 1;
            }
            if results[start..=end].iter().any(|r| r.status != created) {
                failed.extend(events[start..=end].iter().map(Event::id));
            }
        }
        start = end + 1;
    }
    let created_ids: BTreeSet<u128> = events
        .iter()
        .zip(results)
        .filter(|(_, r)| r.status == created)
        .map(|(e, _)| e.id())
        .collect();
    failed.difference(&created_ids).copied().collect()
}

fn run_steps(harness: &mut Harness, case: &Case) -> Result<(), TestCaseError> {
    for step in &case.steps {
        harness.step(&step.op)?;
        harness.check_state()?;
        harness.check_reads(&step.reads)?;
    }
    harness.check_replay()?;
    harness.check_checkpoint(&case.last)
}

/// Runs a case; a failure, or a panic in the ledger, reports the concrete batches.
fn run_case(case: &Case) -> Result<(), TestCaseError> {
    let mut harness = Harness::new(case.start);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run_steps(&mut harness, case)
    }));
    let failure = match outcome {
        Ok(Ok(())) => return Ok(()),
        Ok(Err(error)) => error.to_string(),
        Err(panic) => panic
            .downcast_ref::<&str>()
            .map(|message| message.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default(),
    };
    Err(TestCaseError::fail(format!(
        "{failure}\nwhile applying the last of (clock started at {}):\n{}",
        case.start,
        describe(&harness.applied)
    )))
}

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(512);
    ProptestConfig {
        cases,
        // A failure prints its minimal case; no regression files in the source tree.
        failure_persistence: None,
        max_shrink_iters: 4096,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn ledger_matches_model(case in case()) {
        run_case(&case)?;
    }
}

// -------------------------------------------------------------------------------------------------
// Reproductions of disagreements between the ledger and the spec, found by the model.

/// Two accounts on ledger 1 created at timestamps 9 and 10.
fn two_accounts() -> (Ledger, MemoryStore) {
    let mut ledger = Ledger::new();
    let store = MemoryStore::new();
    let accounts: Vec<Account> = (1..=2)
        .map(|id| Account {
            id,
            ledger: 1,
            code: 1,
            ..Account::default()
        })
        .collect();
    let mut results = Vec::new();
    ledger.create_accounts(&store, 10, &accounts, &mut results);
    assert!(results
        .iter()
        .all(|r| r.status == CreateAccountStatus::Created));
    (ledger, store)
}

/// §2.5: a timestamp bound must be < 2^63, else the filter is invalid and the result empty.
#[test]
fn filter_timestamp_max_beyond_63_bits_is_invalid() {
    let (ledger, _) = two_accounts();
    let filter = QueryFilter {
        timestamp_max: 1 << 63,
        limit: 10,
        ..QueryFilter::zeroed()
    };
    let mut accounts = Vec::new();
    ledger.query_accounts(&filter, REPLY_RECORDS_MAX, &mut accounts);
    assert_eq!(accounts, []);
}

/// §2.4 + §2.3 precedence: an imported post whose timestamp regresses below its pending
/// transfer's fails with `imported_event_timestamp_must_not_regress` (53); the ledger panics.
#[test]
fn imported_post_older_than_its_pending_transfer_is_a_status() {
    let (mut ledger, mut store) = two_accounts();
    let pending = [Transfer {
        id: 10,
        debit_account_id: 1,
        credit_account_id: 2,
        amount: 5,
        ledger: 1,
        code: 1,
        flags: TransferFlags(TransferFlags::PENDING),
        ..Transfer::default()
    }];
    let first = store.append_batch(20, &pending);
    let mut results = Vec::new();
    ledger.create_transfers(&store, 20, first, &pending, &mut results);
    assert_eq!(results[0].status, CreateTransferStatus::Created);

    let post = [Transfer {
        id: 11,
        pending_id: 10,
        amount: AMOUNT_MAX,
        flags: TransferFlags(TransferFlags::POST_PENDING_TRANSFER | TransferFlags::IMPORTED),
        timestamp: 15,
        ..Transfer::default()
    }];
    let first = store.append_batch(30, &post);
    results.clear();
    ledger.create_transfers(&store, 30, first, &post, &mut results);
    assert_eq!(
        results[0].status,
        CreateTransferStatus::ImportedEventTimestampMustNotRegress
    );
}
