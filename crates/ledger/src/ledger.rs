//! The ledger state machine: `create_accounts`, `create_transfers` and pending expiry, with
//! TigerBeetle's semantics (`ledger.md` §2), applied one batch at a time on one thread.
//!
//! Determinism: nothing here reads a clock, draws a random number, does I/O or iterates a hash
//! map. The batch timestamp comes from the caller (and from the log on replay), so the same
//! batches in the same order always produce the same state and the same results.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use crate::account_lists::AccountLists;
use crate::block_log::{Block, BlockLog};
use crate::head_copy::HeadCopy;
use crate::id_table::{IdIndex, Placer, Probe, Vacancy};
use crate::store::{StoredEvent, TransferStore};
use crate::types::*;

/// The most events a `create_*` batch may hold (TigerBeetle's `batch_max.create_transfers`,
/// 1 MiB message body / 128 bytes).
pub const BATCH_EVENTS_MAX: usize = 8190;
/// How many events ahead a batch prefetches index slots: far enough for the memory fetch to
/// arrive before the probe, near enough for the lines to stay in cache.
const PREFETCH_DISTANCE: usize = 8;
/// Timestamps a `pulse` reserves: it may expire up to one batch of pending transfers.
pub const PULSE_EVENTS_MAX: usize = BATCH_EVENTS_MAX;

/// Per-handle state byte: whether the event became a transfer, and what became of it if it was a
/// pending transfer.
const STATE_CREATED: u8 = 0x80;
const STATE_PENDING_MASK: u8 = 0x07;

/// One balance row of an account with `flags.history`, right after a transfer that touched it.
/// `#[repr(C)]` with four u128 fields, so that checkpoints copy rows as bytes (`Record`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub(crate) struct BalanceSnapshot {
    pub debits_pending: u128,
    pub debits_posted: u128,
    pub credits_pending: u128,
    pub credits_posted: u128,
}

// SAFETY: four u128 fields and no padding, as the size assert proves.
unsafe impl Record for BalanceSnapshot {}
const _: () = assert!(core::mem::size_of::<BalanceSnapshot>() == 64);

impl BalanceSnapshot {
    /// The row as stored in the block log.
    pub(crate) fn as_block(&self) -> &Block {
        self.as_bytes().try_into().expect("a row is one block")
    }

    fn of(account: &Account) -> Self {
        Self {
            debits_pending: account.debits_pending,
            debits_posted: account.debits_posted,
            credits_pending: account.credits_pending,
            credits_posted: account.credits_posted,
        }
    }
}

/// How to undo one effect of a linked chain that later fails (§2.1: all or nothing).
enum Undo {
    AccountInserted {
        at: Vacancy,
    },
    AccountChanged {
        index: u32,
        before: Account,
    },
    TransferInserted {
        at: Vacancy,
        handle: u64,
        dr: u32,
        cr: u32,
        timestamp_max_before: u64,
        expires_at: Option<u64>,
    },
    PendingResolved {
        handle: u64,
        expires_at: Option<u64>,
    },
}

/// The ledger's whole state: accounts with their id index, per-account transfer lists and
/// history, the transfer id index with a state byte per handle, pending expiries and retired
/// ids. Transfer bodies are not here: they live in the caller's `TransferStore`, by handle, and
/// every method that reads a transfer takes the store. Batches change it; reads never do.
pub struct Ledger {
    /// In creation order, which is also timestamp order.
    pub(crate) accounts: Vec<Account>,
    pub(crate) account_index: IdIndex,
    /// Per account: the handles of the transfers that touched it, in creation order, and for
    /// an account with `flags.history` the numbers of the rows of `history` that hold its
    /// balances after each of them.
    pub(crate) account_lists: Vec<AccountLists>,
    /// The blocks of `account_lists`, in the order they were started. Apart from the rows, so
    /// that the blocks being filled, all started in the last few batches, lie close together.
    pub(crate) list_blocks: BlockLog,
    /// The balance rows of every history account, in the order they were written.
    pub(crate) history: BlockLog,

    pub(crate) transfer_index: IdIndex,
    /// Per handle: `STATE_CREATED` and the `PendingStatus` of a pending transfer.
    pub(crate) transfer_state: Vec<u8>,
    pub(crate) transfer_count: u64,
    pub(crate) transfer_timestamp_max: u64,
    /// The amount a balancing transfer moved, where it differs from the amount requested.
    pub(crate) balancing_amounts: BTreeMap<u64, u128>,
    /// Pending transfers with a timeout, by (expiry instant, handle): expiry order, then creation.
    pub(crate) expiries: BTreeSet<(u64, u64)>,
    /// Ids of transfers that failed with a transient status (`id_already_failed`).
    pub(crate) orphan_ids: BTreeSet<u128>,
    /// The highest timestamp any applied batch was stamped with.
    pub(crate) timestamp_last: u64,

    undo: Vec<Undo>,
    scope_open: bool,
    /// A checkpoint's head being copied in slices (`checkpoint_head_begin`): told of every
    /// change to an account or a transfer state before it is made.
    pub(crate) head_copy: Option<Box<HeadCopy>>,
    /// The debit and credit accounts' positions the prefetch found for the events ahead, by
    /// event index modulo `PREFETCH_DISTANCE` (`NO_POSITION` where it found none), so that the
    /// later prefetch stage and the event itself need not search the account index again. A
    /// hint is used only once the account at its position is seen to have the id: a stale or
    /// wrong one costs a search, never a wrong answer.
    account_hints: [[u32; 2]; PREFETCH_DISTANCE],
    /// The hints of the event being executed.
    account_hint: [u32; 2],
}

/// An account position hint that names no account.
const NO_POSITION: u32 = u32::MAX;

impl Default for Ledger {
    fn default() -> Self {
        Self::new()
    }
}

/// Statuses that batch execution sets itself, before the per-event checks.
trait BatchStatus: Copy + PartialEq {
    const CREATED: Self;
    const EXISTS: Self;
    const LINKED_EVENT_FAILED: Self;
    const LINKED_EVENT_CHAIN_OPEN: Self;
    const IMPORTED_EVENT_EXPECTED: Self;
    const IMPORTED_EVENT_NOT_EXPECTED: Self;
    const TIMESTAMP_MUST_BE_ZERO: Self;
    const IMPORTED_EVENT_TIMESTAMP_OUT_OF_RANGE: Self;
    const IMPORTED_EVENT_TIMESTAMP_MUST_NOT_ADVANCE: Self;
    /// Whether the failure retires the event's id (§2.1; only transfers have such failures).
    fn is_transient(self) -> bool;
}

macro_rules! batch_status {
    ($status:ident, $transient:expr) => {
        impl BatchStatus for $status {
            const CREATED: Self = Self::Created;
            const EXISTS: Self = Self::Exists;
            const LINKED_EVENT_FAILED: Self = Self::LinkedEventFailed;
            const LINKED_EVENT_CHAIN_OPEN: Self = Self::LinkedEventChainOpen;
            const IMPORTED_EVENT_EXPECTED: Self = Self::ImportedEventExpected;
            const IMPORTED_EVENT_NOT_EXPECTED: Self = Self::ImportedEventNotExpected;
            const TIMESTAMP_MUST_BE_ZERO: Self = Self::TimestampMustBeZero;
            const IMPORTED_EVENT_TIMESTAMP_OUT_OF_RANGE: Self =
                Self::ImportedEventTimestampOutOfRange;
            const IMPORTED_EVENT_TIMESTAMP_MUST_NOT_ADVANCE: Self =
                Self::ImportedEventTimestampMustNotAdvance;
            fn is_transient(self) -> bool {
                $transient(self)
            }
        }
    };
}
batch_status!(CreateAccountStatus, |_| false);
batch_status!(CreateTransferStatus, CreateTransferStatus::is_transient);

/// What batch execution needs to know of an event.
trait BatchEvent: Copy {
    fn id(&self) -> u128;
    fn linked(&self) -> bool;
    fn imported(&self) -> bool;
    fn timestamp_mut(&mut self) -> &mut u64;
}

impl BatchEvent for Account {
    fn id(&self) -> u128 {
        self.id
    }
    fn linked(&self) -> bool {
        self.flags.contains(AccountFlags::LINKED)
    }
    fn imported(&self) -> bool {
        self.flags.contains(AccountFlags::IMPORTED)
    }
    fn timestamp_mut(&mut self) -> &mut u64 {
        &mut self.timestamp
    }
}

impl BatchEvent for Transfer {
    fn id(&self) -> u128 {
        self.id
    }
    fn linked(&self) -> bool {
        self.flags.contains(TransferFlags::LINKED)
    }
    fn imported(&self) -> bool {
        self.flags.contains(TransferFlags::IMPORTED)
    }
    fn timestamp_mut(&mut self) -> &mut u64 {
        &mut self.timestamp
    }
}

/// Which side of an account a transfer moves.
#[derive(Clone, Copy)]
enum Side {
    Debit,
    Credit,
}

/// What a created transfer does to one side of one account.
#[derive(Clone, Copy, Default)]
struct BalanceChange {
    pending_add: u128,
    pending_sub: u128,
    posted_add: u128,
    close: bool,
    reopen: bool,
}

/// Where and how a transfer that passed every check is recorded.
struct TransferInsert {
    at: Vacancy,
    handle: u64,
    status: PendingStatus,
    expires_at: Option<u64>,
}

/// The outcome of one event: its status, and for `created`/`exists` the object's timestamp.
type Outcome<S> = (S, u64);

impl Ledger {
    /// An empty ledger whose indexes start small and grow as needed.
    pub fn new() -> Self {
        Self::with_capacity(0, 0)
    }

    /// A ledger whose indexes hold `accounts_max` accounts and `transfers_max` transfers without
    /// growing. Growing rebuilds an index, which reads every id back from the store once per
    /// doubling (about a quarter of the core's time when growing from empty); sizing up front,
    /// as TigerBeetle allocates everything at start-up, takes that off the batch path.
    pub fn with_capacity(accounts_max: usize, transfers_max: usize) -> Self {
        Self {
            accounts: Vec::with_capacity(accounts_max),
            account_index: IdIndex::with_capacity(accounts_max),
            account_lists: Vec::new(),
            list_blocks: BlockLog::default(),
            history: BlockLog::default(),
            transfer_index: IdIndex::with_capacity(transfers_max),
            transfer_state: Vec::with_capacity(transfers_max),
            transfer_count: 0,
            transfer_timestamp_max: 0,
            balancing_amounts: BTreeMap::new(),
            expiries: BTreeSet::new(),
            orphan_ids: BTreeSet::new(),
            timestamp_last: 0,
            undo: Vec::new(),
            scope_open: false,
            head_copy: None,
            account_hints: [[NO_POSITION; 2]; PREFETCH_DISTANCE],
            account_hint: [NO_POSITION; 2],
        }
    }

    /// An empty ledger whose indexes start at 16 slots and move as few entries per batch as
    /// they may when they grow: for tests that must see growths (and lookups, undos and
    /// checkpoints in the middle of one) within a few hundred events. Behaves as `new` in
    /// every result and digest.
    #[doc(hidden)]
    pub fn with_small_indexes_for_tests() -> Self {
        let mut ledger = Self::new();
        ledger.account_index = IdIndex::small_for_tests();
        ledger.transfer_index = IdIndex::small_for_tests();
        ledger
    }

    /// Accounts created so far.
    pub fn account_count(&self) -> usize {
        self.accounts.len()
    }

    /// Transfers created so far (failed events, which also take a handle, are not counted).
    pub fn transfer_count(&self) -> u64 {
        self.transfer_count
    }

    /// The handle the next `create_transfers` batch must start at.
    pub fn transfer_handle_next(&self) -> u64 {
        self.transfer_state.len() as u64
    }

    /// The highest timestamp applied so far; the next batch must be stamped above it.
    pub fn timestamp_last(&self) -> u64 {
        self.timestamp_last
    }

    /// Every account, in creation order, which is also timestamp order.
    pub fn accounts(&self) -> &[Account] {
        &self.accounts
    }

    /// Applies a `create_accounts` batch stamped `timestamp` (the batch's highest timestamp: event
    /// `i` of `n` is stamped `timestamp - n + i + 1`). Appends one result per event.
    pub fn create_accounts<S: TransferStore>(
        &mut self,
        store: &S,
        timestamp: u64,
        events: &[Account],
        results: &mut Vec<CreateAccountResult>,
    ) {
        self.batch_begin(timestamp, events.len());
        let accounts = &self.accounts;
        self.account_index
            .reserve(events.len(), accounts.len() as u64, |placer, values| {
                accounts_created(accounts, placer, values);
            });
        self.execute(timestamp, events, results, |ledger, account, _index| {
            ledger.create_account(store, account)
        });
    }

    /// Applies a `create_transfers` batch. The caller has already put `events` into `store` at
    /// handles `first_handle..first_handle + events.len()` (write-ahead), and `first_handle` must
    /// be `transfer_handle_next()`.
    pub fn create_transfers<S: TransferStore>(
        &mut self,
        store: &S,
        timestamp: u64,
        first_handle: u64,
        events: &[Transfer],
        results: &mut Vec<CreateTransferResult>,
    ) {
        self.batch_begin(timestamp, events.len());
        assert_eq!(
            first_handle,
            self.transfer_handle_next(),
            "handles must be dense"
        );
        assert!(first_handle + events.len() as u64 <= store.event_count());
        self.reserve_transfers(store, events.len());
        self.transfer_state
            .resize(self.transfer_state.len() + events.len(), 0);
        self.execute(timestamp, events, results, |ledger, transfer, index| {
            ledger.prefetch(store, events, index);
            ledger.account_hint = ledger.account_hints[index % PREFETCH_DISTANCE];
            let handle = first_handle + index as u64;
            // The store and the ledger must agree on the event and its timestamp (paired check).
            debug_assert_eq!(
                store.event(handle),
                StoredEvent {
                    event: events[index],
                    timestamp: crate::store::event_timestamp(
                        &events[index],
                        timestamp,
                        events.len(),
                        index
                    ),
                }
            );
            ledger.create_transfer(store, transfer, handle)
        });
    }

    /// Prefetches, in stages, what the events ahead of `index` will touch, so that their
    /// lookups find it in cache (TigerBeetle's prefetch phase, in the small): index slots
    /// `PREFETCH_DISTANCE` events ahead; the accounts and their transfer and history lists'
    /// headers that those slots name, half as far; the lists' tails, a quarter as far.
    #[inline]
    fn prefetch<S: TransferStore>(&mut self, store: &S, events: &[Transfer], index: usize) {
        if let Some(ahead) = events.get(index + PREFETCH_DISTANCE) {
            self.transfer_index.prefetch(ahead.id);
            if is_post_or_void(ahead) {
                // A post or void names its accounts through the pending transfer.
                self.transfer_index.prefetch(ahead.pending_id);
            } else {
                self.account_index.prefetch(ahead.debit_account_id);
                self.account_index.prefetch(ahead.credit_account_id);
            }
        }
        if let Some(ahead) = events.get(index + PREFETCH_DISTANCE / 2) {
            if is_post_or_void(ahead) {
                if let Some(pending) = self.transfer_index.peek(ahead.pending_id) {
                    store.prefetch(pending);
                }
            }
            let mut hints = [NO_POSITION; 2];
            for (hint, id) in hints
                .iter_mut()
                .zip([ahead.debit_account_id, ahead.credit_account_id])
            {
                if let Some(position) = self.account_index.peek(id) {
                    if let Some(account) = self.accounts.get(position as usize) {
                        crate::id_table::prefetch_read(account);
                        crate::id_table::prefetch_read(&self.account_lists[position as usize]);
                        *hint = position as u32;
                    }
                }
            }
            self.account_hints[(index + PREFETCH_DISTANCE / 2) % PREFETCH_DISTANCE] = hints;
        }
        if index + PREFETCH_DISTANCE / 4 < events.len() {
            let hints = self.account_hints[(index + PREFETCH_DISTANCE / 4) % PREFETCH_DISTANCE];
            for position in hints {
                // The blocks being filled (a history row itself goes to the end of the log,
                // which is written in order).
                if let Some(lists) = self.account_lists.get(position as usize) {
                    lists.transfers.prefetch_tail(&self.list_blocks);
                    lists.rows.prefetch_tail(&self.list_blocks);
                }
            }
        }
    }

    /// Makes room in the transfer index for `additional` more transfers now, so that applying
    /// them (a replay, say, whose size the caller knows) grows the index at most once. Also
    /// moves the next run of a growth in progress (each batch does this first).
    pub fn reserve_transfers<S: TransferStore>(&mut self, store: &S, additional: usize) {
        let states = &self.transfer_state;
        self.transfer_index
            .reserve(additional, states.len() as u64, |placer, handles| {
                transfers_created(store, states, placer, handles);
            });
    }

    /// Whether an index is still moving entries to a larger table (see `IdIndex`): for tests
    /// and benchmarks that want to see a growth begin and end.
    pub fn index_migrating(&self) -> bool {
        self.account_index.is_migrating() || self.transfer_index.is_migrating()
    }

    fn batch_begin(&mut self, timestamp: u64, count: usize) {
        assert!(count <= BATCH_EVENTS_MAX);
        assert!(timestamp <= TIMESTAMP_MAX);
        // Event timestamps are `timestamp - count + 1 ..= timestamp` and must all be above every
        // earlier one (empty batches of a multi-batch request share their neighbour's).
        assert!(
            timestamp
                .checked_sub(count as u64)
                .is_some_and(|below_first| below_first >= self.timestamp_last),
            "batch timestamps must increase: {timestamp} - {count} < {}",
            self.timestamp_last
        );
        self.timestamp_last = timestamp;
    }

    /// Batch execution with linked chains (TigerBeetle's `execute`).
    fn execute<E: BatchEvent, S: BatchStatus>(
        &mut self,
        timestamp: u64,
        events: &[E],
        results: &mut Vec<CreateResult<S>>,
        mut create: impl FnMut(&mut Self, &E, usize) -> Outcome<S>,
    ) {
        let base = results.len();
        let count = events.len();
        let assigned = |index: usize| timestamp - count as u64 + index as u64 + 1;
        let mut chain: Option<usize> = None;
        let mut chain_broken = false;

        for (index, event) in events.iter().enumerate() {
            let (status, object_timestamp) = 'event: {
                if event.linked() {
                    if chain.is_none() {
                        chain = Some(index);
                        assert!(!chain_broken);
                        self.scope_begin();
                    }
                    if index == count - 1 {
                        break 'event (S::LINKED_EVENT_CHAIN_OPEN, 0);
                    }
                }
                if chain_broken {
                    break 'event (S::LINKED_EVENT_FAILED, 0);
                }
                // The first event decides whether the batch imports (§2.1).
                if events[0].imported() != event.imported() {
                    break 'event if event.imported() {
                        (S::IMPORTED_EVENT_NOT_EXPECTED, 0)
                    } else {
                        (S::IMPORTED_EVENT_EXPECTED, 0)
                    };
                }
                let mut event = *event;
                let imported = event.imported();
                let event_timestamp = event.timestamp_mut();
                if imported {
                    if !(TIMESTAMP_MIN..=TIMESTAMP_MAX).contains(event_timestamp) {
                        break 'event (S::IMPORTED_EVENT_TIMESTAMP_OUT_OF_RANGE, 0);
                    }
                    if *event_timestamp >= timestamp {
                        break 'event (S::IMPORTED_EVENT_TIMESTAMP_MUST_NOT_ADVANCE, 0);
                    }
                } else {
                    if *event_timestamp != 0 {
                        break 'event (S::TIMESTAMP_MUST_BE_ZERO, 0);
                    }
                    *event_timestamp = assigned(index);
                }
                create(self, &event, index)
            };

            let result_timestamp = if status == S::CREATED || status == S::EXISTS {
                object_timestamp
            } else {
                assigned(index)
            };
            if status != S::CREATED {
                if let Some(chain_start) = chain {
                    if !chain_broken {
                        chain_broken = true;
                        self.scope_discard();
                        for earlier in chain_start..index {
                            results[base + earlier] = CreateResult {
                                timestamp: assigned(earlier),
                                status: S::LINKED_EVENT_FAILED,
                                reserved: 0,
                            };
                        }
                    }
                }
            }
            results.push(CreateResult {
                timestamp: result_timestamp,
                status,
                reserved: 0,
            });
            if status.is_transient() {
                self.orphan_ids.insert(event.id());
            }

            if chain.is_some() && (!event.linked() || status == S::LINKED_EVENT_CHAIN_OPEN) {
                if !chain_broken {
                    self.scope_persist();
                }
                chain = None;
                chain_broken = false;
            }
        }
        assert!(chain.is_none());
        assert!(!self.scope_open);
        assert_eq!(results.len(), base + count);
    }

    fn scope_begin(&mut self) {
        assert!(!self.scope_open);
        assert!(self.undo.is_empty());
        self.scope_open = true;
    }

    fn scope_persist(&mut self) {
        assert!(self.scope_open);
        self.undo.clear();
        self.scope_open = false;
    }

    fn scope_discard(&mut self) {
        assert!(self.scope_open);
        while let Some(undo) = self.undo.pop() {
            self.undo_one(undo);
        }
        self.scope_open = false;
    }

    fn record(&mut self, undo: Undo) {
        if self.scope_open {
            self.undo.push(undo);
        }
    }

    fn undo_one(&mut self, undo: Undo) {
        match undo {
            Undo::AccountInserted { at } => {
                let index = self.accounts.len() - 1;
                self.account_index.remove_newest(at, index as u64);
                self.accounts.pop();
                let lists = self.account_lists.pop().expect("parallel to accounts");
                assert!(lists.transfers.is_empty() && lists.rows.is_empty());
            }
            Undo::AccountChanged { index, before } => {
                self.account_writing(index as usize);
                self.accounts[index as usize] = before;
            }
            Undo::TransferInserted {
                at,
                handle,
                dr,
                cr,
                timestamp_max_before,
                expires_at,
            } => {
                self.transfer_index.remove_newest(at, handle);
                // Inserted after any head copy's moment (as in `transfer_insert`): no save.
                self.transfer_state[handle as usize] = 0;
                self.transfer_count -= 1;
                self.transfer_timestamp_max = timestamp_max_before;
                self.balancing_amounts.remove(&handle);
                if let Some(expires_at) = expires_at {
                    assert!(self.expiries.remove(&(expires_at, handle)));
                }
                // The reverse of the insert's order, block for block: the credit side, then
                // the debit side; in each, the row's number, the row, then the handle.
                for account in [cr, dr] {
                    let lists = &mut self.account_lists[account as usize];
                    if self.accounts[account as usize]
                        .flags
                        .contains(AccountFlags::HISTORY)
                    {
                        let row = lists
                            .rows
                            .pop(&mut self.list_blocks)
                            .expect("parallel to transfers");
                        self.history.pop(row);
                    }
                    assert_eq!(lists.transfers.pop(&mut self.list_blocks), Some(handle));
                }
            }
            Undo::PendingResolved { handle, expires_at } => {
                self.state_writing(handle);
                self.transfer_state[handle as usize] = STATE_CREATED | PendingStatus::Pending as u8;
                if let Some(expires_at) = expires_at {
                    self.expiries.insert((expires_at, handle));
                }
            }
        }
    }

    // ---------------------------------------------------------------------------------------
    // Accounts.

    /// The account with `id`, with its current balances.
    pub fn account(&self, id: u128) -> Option<&Account> {
        self.account_position(id)
            .map(|index| &self.accounts[index as usize])
    }

    /// `account_position`, without a search when `hint` is the account's position: ids are
    /// unique, so the account there having the id proves it.
    #[inline]
    fn account_position_hinted(&self, id: u128, hint: u32) -> Option<u32> {
        match self.accounts.get(hint as usize) {
            Some(account) if account.id == id => Some(hint),
            Some(_) | None => self.account_position(id),
        }
    }

    pub(crate) fn account_position(&self, id: u128) -> Option<u32> {
        let accounts = &self.accounts;
        self.account_index
            .get(id, |index| accounts[index as usize].id)
            .map(|index| index as u32)
    }

    fn create_account<S: TransferStore>(
        &mut self,
        store: &S,
        a: &Account,
    ) -> Outcome<CreateAccountStatus> {
        use CreateAccountStatus as Status;
        if a.reserved != 0 {
            return (Status::ReservedField, 0);
        }
        if a.flags.padding() != 0 {
            return (Status::ReservedFlag, 0);
        }
        if a.id == 0 {
            return (Status::IdMustNotBeZero, 0);
        }
        if a.id == u128::MAX {
            return (Status::IdMustNotBeIntMax, 0);
        }
        let accounts = &self.accounts;
        let at = match self
            .account_index
            .probe(a.id, |index| accounts[index as usize].id)
        {
            Probe::Found { value } => {
                let existing = &self.accounts[value as usize];
                return (create_account_exists(a, existing), existing.timestamp);
            }
            Probe::Vacant { at } => at,
        };
        let flags = a.flags;
        if flags.contains(AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS)
            && flags.contains(AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS)
        {
            return (Status::FlagsAreMutuallyExclusive, 0);
        }
        if a.debits_pending != 0 {
            return (Status::DebitsPendingMustBeZero, 0);
        }
        if a.debits_posted != 0 {
            return (Status::DebitsPostedMustBeZero, 0);
        }
        if a.credits_pending != 0 {
            return (Status::CreditsPendingMustBeZero, 0);
        }
        if a.credits_posted != 0 {
            return (Status::CreditsPostedMustBeZero, 0);
        }
        if a.ledger == 0 {
            return (Status::LedgerMustNotBeZero, 0);
        }
        if a.code == 0 {
            return (Status::CodeMustNotBeZero, 0);
        }
        if flags.contains(AccountFlags::IMPORTED) {
            // After the idempotency checks, so an importer still sees `exists` on a retry.
            let regressed = self
                .accounts
                .last()
                .is_some_and(|last| a.timestamp <= last.timestamp);
            if regressed || self.transfer_at_timestamp(store, a.timestamp).is_some() {
                return (Status::ImportedEventTimestampMustNotRegress, 0);
            }
        }

        let index = self.accounts.len() as u64;
        self.account_index.insert_vacant(at, a.id, index);
        self.accounts.push(*a);
        self.account_lists.push(AccountLists::default());
        self.record(Undo::AccountInserted { at });
        (Status::Created, a.timestamp)
    }

    // ---------------------------------------------------------------------------------------
    // Transfers.

    /// The stored transfer with `handle` (which must have been created).
    pub fn transfer_at<S: TransferStore>(&self, store: &S, handle: u64) -> Transfer {
        debug_assert!(self.transfer_state[handle as usize] & STATE_CREATED != 0);
        let StoredEvent { event, timestamp } = store.event(handle);
        let mut t = event;
        t.timestamp = timestamp;
        let flags = t.flags;
        if flags.contains(TransferFlags::POST_PENDING_TRANSFER)
            || flags.contains(TransferFlags::VOID_PENDING_TRANSFER)
        {
            let pending_handle = self
                .transfer_handle(store, t.pending_id)
                .expect("a posted or voided transfer exists");
            let p = self.transfer_at(store, pending_handle);
            assert!(p.flags.contains(TransferFlags::PENDING));
            return posted_or_voided(&t, &p);
        }
        if let Some(&amount) = self.balancing_amounts.get(&handle) {
            t.amount = amount;
        }
        t
    }

    /// The handle of the created transfer with `id` (ids retired by a failure have none).
    pub fn transfer_handle<S: TransferStore>(&self, store: &S, id: u128) -> Option<u64> {
        self.transfer_index.get(id, |handle| store.event_id(handle))
    }

    /// The created transfer with `id`, as stored (see `transfer_at`).
    pub fn transfer<S: TransferStore>(&self, store: &S, id: u128) -> Option<Transfer> {
        self.transfer_handle(store, id)
            .map(|handle| self.transfer_at(store, handle))
    }

    /// What became of the transfer at `handle` if it is pending: `None` for any other
    /// transfer, and for a handle whose event failed.
    pub fn pending_status(&self, handle: u64) -> PendingStatus {
        match self.transfer_state[handle as usize] & STATE_PENDING_MASK {
            0 => PendingStatus::None,
            1 => PendingStatus::Pending,
            2 => PendingStatus::Posted,
            3 => PendingStatus::Voided,
            4 => PendingStatus::Expired,
            other => unreachable!("pending status {other} is never written"),
        }
    }

    pub(crate) fn is_created(&self, handle: u64) -> bool {
        self.transfer_state[handle as usize] & STATE_CREATED != 0
    }

    fn create_transfer<S: TransferStore>(
        &mut self,
        store: &S,
        t: &Transfer,
        handle: u64,
    ) -> Outcome<CreateTransferStatus> {
        use CreateTransferStatus as Status;
        if t.flags.padding() != 0 {
            return (Status::ReservedFlag, 0);
        }
        if t.id == 0 {
            return (Status::IdMustNotBeZero, 0);
        }
        if t.id == u128::MAX {
            return (Status::IdMustNotBeIntMax, 0);
        }
        let at = match self.transfer_index.probe(t.id, |h| store.event_id(h)) {
            Probe::Found { value } => {
                let existing = self.transfer_at(store, value);
                return (
                    self.create_transfer_exists(store, t, &existing),
                    existing.timestamp,
                );
            }
            Probe::Vacant { at } => at,
        };
        if self.orphan_ids.contains(&t.id) {
            return (Status::IdAlreadyFailed, 0);
        }
        if t.flags.contains(TransferFlags::POST_PENDING_TRANSFER)
            || t.flags.contains(TransferFlags::VOID_PENDING_TRANSFER)
        {
            return (
                self.post_or_void_pending_transfer(store, t, at, handle),
                t.timestamp,
            );
        }
        (self.create_single_or_pending(t, at, handle), t.timestamp)
    }

    fn create_single_or_pending(
        &mut self,
        t: &Transfer,
        at: Vacancy,
        handle: u64,
    ) -> CreateTransferStatus {
        use CreateTransferStatus as Status;
        let flags = t.flags;
        if t.debit_account_id == 0 {
            return Status::DebitAccountIdMustNotBeZero;
        }
        if t.debit_account_id == u128::MAX {
            return Status::DebitAccountIdMustNotBeIntMax;
        }
        if t.credit_account_id == 0 {
            return Status::CreditAccountIdMustNotBeZero;
        }
        if t.credit_account_id == u128::MAX {
            return Status::CreditAccountIdMustNotBeIntMax;
        }
        if t.credit_account_id == t.debit_account_id {
            return Status::AccountsMustBeDifferent;
        }
        if t.pending_id != 0 {
            return Status::PendingIdMustBeZero;
        }
        if !flags.contains(TransferFlags::PENDING) {
            if t.timeout != 0 {
                return Status::TimeoutReservedForPendingTransfer;
            }
            if flags.contains(TransferFlags::CLOSING_DEBIT)
                || flags.contains(TransferFlags::CLOSING_CREDIT)
            {
                return Status::ClosingTransferMustBePending;
            }
        }
        if t.ledger == 0 {
            return Status::LedgerMustNotBeZero;
        }
        if t.code == 0 {
            return Status::CodeMustNotBeZero;
        }
        let [dr_hint, cr_hint] = self.account_hint;
        let Some(dr_index) = self.account_position_hinted(t.debit_account_id, dr_hint) else {
            return Status::DebitAccountNotFound;
        };
        let Some(cr_index) = self.account_position_hinted(t.credit_account_id, cr_hint) else {
            return Status::CreditAccountNotFound;
        };
        let dr = &self.accounts[dr_index as usize];
        let cr = &self.accounts[cr_index as usize];
        if dr.ledger != cr.ledger {
            return Status::AccountsMustHaveTheSameLedger;
        }
        if t.ledger != dr.ledger {
            return Status::TransferMustHaveTheSameLedgerAsAccounts;
        }
        if flags.contains(TransferFlags::IMPORTED) {
            if let Some(status) = self.imported_transfer_regresses(t) {
                return status;
            }
            if t.timestamp <= dr.timestamp {
                return Status::ImportedEventTimestampMustPostdateDebitAccount;
            }
            if t.timestamp <= cr.timestamp {
                return Status::ImportedEventTimestampMustPostdateCreditAccount;
            }
            if t.timeout != 0 {
                assert!(flags.contains(TransferFlags::PENDING));
                return Status::ImportedEventTimeoutMustBeZero;
            }
        }
        assert!(t.timestamp > dr.timestamp && t.timestamp > cr.timestamp);
        if dr.flags.contains(AccountFlags::CLOSED) {
            return Status::DebitAccountAlreadyClosed;
        }
        if cr.flags.contains(AccountFlags::CLOSED) {
            return Status::CreditAccountAlreadyClosed;
        }

        let mut amount = t.amount;
        if flags.contains(TransferFlags::BALANCING_DEBIT) {
            let dr_balance = dr.debits_posted + dr.debits_pending;
            amount = amount.min(dr.credits_posted.saturating_sub(dr_balance));
        }
        if flags.contains(TransferFlags::BALANCING_CREDIT) {
            let cr_balance = cr.credits_posted + cr.credits_pending;
            amount = amount.min(cr.debits_posted.saturating_sub(cr_balance));
        }
        let pending = flags.contains(TransferFlags::PENDING);
        if pending {
            if amount.checked_add(dr.debits_pending).is_none() {
                return Status::OverflowsDebitsPending;
            }
            if amount.checked_add(cr.credits_pending).is_none() {
                return Status::OverflowsCreditsPending;
            }
        }
        if amount.checked_add(dr.debits_posted).is_none() {
            return Status::OverflowsDebitsPosted;
        }
        if amount.checked_add(cr.credits_posted).is_none() {
            return Status::OverflowsCreditsPosted;
        }
        // Invariant: pending + posted never overflows (checked for every earlier transfer).
        if amount
            .checked_add(dr.debits_pending + dr.debits_posted)
            .is_none()
        {
            return Status::OverflowsDebits;
        }
        if amount
            .checked_add(cr.credits_pending + cr.credits_posted)
            .is_none()
        {
            return Status::OverflowsCredits;
        }
        if t.timestamp + t.timeout_ns() > TIMESTAMP_MAX {
            return Status::OverflowsTimeout;
        }
        if dr.debits_exceed_credits(amount) {
            return Status::ExceedsCredits;
        }
        if cr.credits_exceed_debits(amount) {
            return Status::ExceedsDebits;
        }

        // From here on the transfer succeeds.
        let close = |flag| BalanceChange {
            close: flags.contains(flag),
            ..BalanceChange::default()
        };
        let (mut dr_change, mut cr_change) = (
            close(TransferFlags::CLOSING_DEBIT),
            close(TransferFlags::CLOSING_CREDIT),
        );
        if pending {
            dr_change.pending_add = amount;
            cr_change.pending_add = amount;
        } else {
            dr_change.posted_add = amount;
            cr_change.posted_add = amount;
        }
        let status = if pending {
            PendingStatus::Pending
        } else {
            PendingStatus::None
        };
        if amount != t.amount {
            self.balancing_amounts.insert(handle, amount);
        }
        let expires_at = (t.timeout > 0).then(|| {
            assert!(pending && !flags.contains(TransferFlags::IMPORTED));
            t.timestamp + t.timeout_ns()
        });
        let inserted = TransferInsert {
            at,
            handle,
            status,
            expires_at,
        };
        self.transfer_insert(t, inserted, [(dr_index, dr_change), (cr_index, cr_change)]);
        Status::Created
    }

    /// `imported_event_timestamp_must_not_regress` for a transfer: at or below the newest
    /// transfer, or equal to an account's timestamp (timestamps are unique across both).
    fn imported_transfer_regresses(&self, t: &Transfer) -> Option<CreateTransferStatus> {
        let regressed = t.timestamp <= self.transfer_timestamp_max
            || self
                .accounts
                .binary_search_by_key(&t.timestamp, |account| account.timestamp)
                .is_ok();
        regressed.then_some(CreateTransferStatus::ImportedEventTimestampMustNotRegress)
    }

    /// Appends the next account's lists, read back from a checkpoint (accounts in order): its
    /// transfer handles, and its history rows into the log with their numbers.
    pub(crate) fn account_lists_restore(&mut self, handles: &[u64], rows: &[BalanceSnapshot]) {
        let mut lists = AccountLists::default();
        for &handle in handles {
            lists.transfers.push(&mut self.list_blocks, handle);
        }
        for row in rows {
            let number = self.history.push(row.as_block());
            lists.rows.push(&mut self.list_blocks, number);
        }
        self.account_lists.push(lists);
    }

    /// Records a created transfer: id index, state, accounts (written only if changed), the
    /// per-account transfer lists and history rows.
    fn transfer_insert(
        &mut self,
        t: &Transfer,
        insert: TransferInsert,
        changes: [(u32, BalanceChange); 2],
    ) {
        let TransferInsert {
            at,
            handle,
            status,
            expires_at,
        } = insert;
        self.transfer_index.insert_vacant(at, t.id, handle);
        if let Some(expires_at) = expires_at {
            self.expiries.insert((expires_at, handle));
        }
        // The handle is new: the states grew for this batch before it ran, so it lies past the
        // moment of any head copy under way, which keeps nothing for it.
        self.transfer_state[handle as usize] = STATE_CREATED | status as u8;
        self.transfer_count += 1;
        let timestamp_max_before = self.transfer_timestamp_max;
        assert!(t.timestamp > timestamp_max_before);
        self.transfer_timestamp_max = t.timestamp;
        for (side, (index, change)) in [Side::Debit, Side::Credit].into_iter().zip(changes) {
            self.account_change(index, side, change);
            let lists = &mut self.account_lists[index as usize];
            lists.transfers.push(&mut self.list_blocks, handle);
            let account = &self.accounts[index as usize];
            if account.flags.contains(AccountFlags::HISTORY) {
                let row = self.history.push(BalanceSnapshot::of(account).as_block());
                lists.rows.push(&mut self.list_blocks, row);
            }
        }
        let [(dr, _), (cr, _)] = changes;
        self.record(Undo::TransferInserted {
            at,
            handle,
            dr,
            cr,
            timestamp_max_before,
            expires_at,
        });
    }

    /// Account `index` is about to change: a head copy under way keeps its value first.
    #[inline]
    fn account_writing(&mut self, index: usize) {
        if let Some(copy) = &mut self.head_copy {
            copy.account_writing(index, &self.accounts[index]);
        }
    }

    /// Transfer state `handle` is about to change: a head copy under way keeps its value first.
    #[inline]
    fn state_writing(&mut self, handle: u64) {
        if let Some(copy) = &mut self.head_copy {
            copy.state_writing(handle as usize, self.transfer_state[handle as usize]);
        }
    }

    /// Applies a transfer's change to one side of an account, in place (an account is copied
    /// only inside a linked chain, for its undo record).
    fn account_change(&mut self, index: u32, side: Side, change: BalanceChange) {
        if self.scope_open {
            let before = self.accounts[index as usize];
            self.undo.push(Undo::AccountChanged { index, before });
        }
        self.account_writing(index as usize);
        let account = &mut self.accounts[index as usize];
        let (pending, posted) = match side {
            Side::Debit => (&mut account.debits_pending, &mut account.debits_posted),
            Side::Credit => (&mut account.credits_pending, &mut account.credits_posted),
        };
        // Overflow was ruled out by the checks; overflow-checks stay on to prove it.
        *pending = *pending - change.pending_sub + change.pending_add;
        *posted += change.posted_add;
        if change.close {
            account.flags.0 |= AccountFlags::CLOSED;
        }
        if change.reopen {
            account.flags.0 &= !AccountFlags::CLOSED;
        }
    }

    fn post_or_void_pending_transfer<S: TransferStore>(
        &mut self,
        store: &S,
        t: &Transfer,
        at: Vacancy,
        handle: u64,
    ) -> CreateTransferStatus {
        use CreateTransferStatus as Status;
        let flags = t.flags;
        let post = flags.contains(TransferFlags::POST_PENDING_TRANSFER);
        let void = flags.contains(TransferFlags::VOID_PENDING_TRANSFER);
        assert!(post || void);
        if post && void {
            return Status::FlagsAreMutuallyExclusive;
        }
        for exclusive in [
            TransferFlags::PENDING,
            TransferFlags::BALANCING_DEBIT,
            TransferFlags::BALANCING_CREDIT,
            TransferFlags::CLOSING_DEBIT,
            TransferFlags::CLOSING_CREDIT,
        ] {
            if flags.contains(exclusive) {
                return Status::FlagsAreMutuallyExclusive;
            }
        }
        if t.pending_id == 0 {
            return Status::PendingIdMustNotBeZero;
        }
        if t.pending_id == u128::MAX {
            return Status::PendingIdMustNotBeIntMax;
        }
        if t.pending_id == t.id {
            return Status::PendingIdMustBeDifferent;
        }
        if t.timeout != 0 {
            return Status::TimeoutReservedForPendingTransfer;
        }
        let Some(p_handle) = self.transfer_handle(store, t.pending_id) else {
            return Status::PendingTransferNotFound;
        };
        let p = self.transfer_at(store, p_handle);
        // An imported post or void may claim a time before its pending transfer; the regression
        // check below rejects it (§2.3, precedence 53) once the earlier checks have run.
        assert!(p.timestamp < t.timestamp || flags.contains(TransferFlags::IMPORTED));
        if !p.flags.contains(TransferFlags::PENDING) {
            return Status::PendingTransferNotPending;
        }
        let dr_index = self
            .account_position(p.debit_account_id)
            .expect("a transfer's accounts exist");
        let cr_index = self
            .account_position(p.credit_account_id)
            .expect("a transfer's accounts exist");
        if t.debit_account_id != 0 && t.debit_account_id != p.debit_account_id {
            return Status::PendingTransferHasDifferentDebitAccountId;
        }
        if t.credit_account_id != 0 && t.credit_account_id != p.credit_account_id {
            return Status::PendingTransferHasDifferentCreditAccountId;
        }
        if t.ledger != 0 && t.ledger != p.ledger {
            return Status::PendingTransferHasDifferentLedger;
        }
        if t.code != 0 && t.code != p.code {
            return Status::PendingTransferHasDifferentCode;
        }
        let amount = post_or_void_amount(t, &p);
        if amount > p.amount {
            return Status::ExceedsPendingTransferAmount;
        }
        if void && amount < p.amount {
            return Status::PendingTransferHasDifferentAmount;
        }
        match self.pending_status(p_handle) {
            PendingStatus::None => unreachable!("a pending transfer has a pending status"),
            PendingStatus::Pending => {}
            PendingStatus::Posted => return Status::PendingTransferAlreadyPosted,
            PendingStatus::Voided => return Status::PendingTransferAlreadyVoided,
            PendingStatus::Expired => return Status::PendingTransferExpired,
        }
        let expires_at = (p.timeout > 0).then(|| p.timestamp + p.timeout_ns());
        if expires_at.is_some_and(|expires_at| expires_at <= t.timestamp) {
            // Expiry is exact in semantics even before a pulse released the amounts.
            return Status::PendingTransferExpired;
        }
        if flags.contains(TransferFlags::IMPORTED) {
            if let Some(status) = self.imported_transfer_regresses(t) {
                return status;
            }
        }
        let dr = &self.accounts[dr_index as usize];
        let cr = &self.accounts[cr_index as usize];
        // The only movement a closed account allows is voiding a pending transfer.
        if !void && dr.flags.contains(AccountFlags::CLOSED) {
            return Status::DebitAccountAlreadyClosed;
        }
        if !void && cr.flags.contains(AccountFlags::CLOSED) {
            return Status::CreditAccountAlreadyClosed;
        }

        let release = BalanceChange {
            pending_sub: p.amount,
            ..BalanceChange::default()
        };
        let (mut dr_change, mut cr_change) = (release, release);
        if post {
            dr_change.posted_add = amount;
            cr_change.posted_add = amount;
        } else {
            // Voiding a closing transfer reopens the account it closed.
            dr_change.reopen = p.flags.contains(TransferFlags::CLOSING_DEBIT);
            cr_change.reopen = p.flags.contains(TransferFlags::CLOSING_CREDIT);
            assert!(!dr_change.reopen || dr.flags.contains(AccountFlags::CLOSED));
            assert!(!cr_change.reopen || cr.flags.contains(AccountFlags::CLOSED));
        }
        let inserted = TransferInsert {
            at,
            handle,
            status: PendingStatus::None,
            expires_at: None,
        };
        self.transfer_insert(t, inserted, [(dr_index, dr_change), (cr_index, cr_change)]);
        let resolved = if post {
            PendingStatus::Posted
        } else {
            PendingStatus::Voided
        };
        self.state_writing(p_handle);
        self.transfer_state[p_handle as usize] = STATE_CREATED | resolved as u8;
        if let Some(expires_at) = expires_at {
            assert!(self.expiries.remove(&(expires_at, p_handle)));
        }
        self.record(Undo::PendingResolved {
            handle: p_handle,
            expires_at,
        });
        CreateTransferStatus::Created
    }

    fn create_transfer_exists<S: TransferStore>(
        &self,
        store: &S,
        t: &Transfer,
        e: &Transfer,
    ) -> CreateTransferStatus {
        use CreateTransferStatus as Status;
        assert_eq!(t.id, e.id);
        // The flags change the meaning of the other fields, so they come first.
        if t.flags != e.flags {
            return Status::ExistsWithDifferentFlags;
        }
        if t.pending_id != e.pending_id {
            return Status::ExistsWithDifferentPendingId;
        }
        if t.timeout != e.timeout {
            return Status::ExistsWithDifferentTimeout;
        }
        if t.flags.contains(TransferFlags::POST_PENDING_TRANSFER)
            || t.flags.contains(TransferFlags::VOID_PENDING_TRANSFER)
        {
            let p = self
                .transfer(store, t.pending_id)
                .expect("same pending_id as a stored post/void");
            return post_or_void_pending_transfer_exists(t, e, &p);
        }
        if t.debit_account_id != e.debit_account_id {
            return Status::ExistsWithDifferentDebitAccountId;
        }
        if t.credit_account_id != e.credit_account_id {
            return Status::ExistsWithDifferentCreditAccountId;
        }
        // A balancing transfer's amount is an upper limit: a retry with a limit at least what
        // was moved is the same transfer.
        if t.flags.contains(TransferFlags::BALANCING_DEBIT)
            || t.flags.contains(TransferFlags::BALANCING_CREDIT)
        {
            if t.amount < e.amount {
                return Status::ExistsWithDifferentAmount;
            }
        } else if t.amount != e.amount {
            return Status::ExistsWithDifferentAmount;
        }
        if t.user_data_128 != e.user_data_128 {
            return Status::ExistsWithDifferentUserData128;
        }
        if t.user_data_64 != e.user_data_64 {
            return Status::ExistsWithDifferentUserData64;
        }
        if t.user_data_32 != e.user_data_32 {
            return Status::ExistsWithDifferentUserData32;
        }
        if t.ledger != e.ledger {
            return Status::ExistsWithDifferentLedger;
        }
        if t.code != e.code {
            return Status::ExistsWithDifferentCode;
        }
        Status::Exists
    }

    // ---------------------------------------------------------------------------------------
    // Expiry.

    /// Whether a pulse at `timestamp` would expire anything.
    pub fn pulse_needed(&self, timestamp: u64) -> bool {
        self.expiries
            .first()
            .is_some_and(|&(expires_at, _)| expires_at <= timestamp)
    }

    /// The `pulse` operation: expires up to `PULSE_EVENTS_MAX` pending transfers whose deadline
    /// is at or before `timestamp`, in expiry order then creation order, releasing their pending
    /// amounts (and reopening accounts their closing transfers closed). `timestamp` is the top of
    /// a range of `PULSE_EVENTS_MAX` timestamps reserved for the pulse. Returns how many expired.
    pub fn expire_pending_transfers<S: TransferStore>(
        &mut self,
        store: &S,
        timestamp: u64,
    ) -> usize {
        self.batch_begin(timestamp, PULSE_EVENTS_MAX);
        let expired: Vec<(u64, u64)> = self
            .expiries
            .iter()
            .take_while(|&&(expires_at, _)| expires_at <= timestamp)
            .take(PULSE_EVENTS_MAX)
            .copied()
            .collect();
        for &(expires_at, handle) in &expired {
            let p = self.transfer_at(store, handle);
            assert!(p.flags.contains(TransferFlags::PENDING) && p.timeout > 0);
            assert_eq!(p.timestamp + p.timeout_ns(), expires_at);
            assert_eq!(self.pending_status(handle), PendingStatus::Pending);
            let dr = self
                .account_position(p.debit_account_id)
                .expect("a transfer's accounts exist") as usize;
            let cr = self
                .account_position(p.credit_account_id)
                .expect("a transfer's accounts exist") as usize;
            self.account_writing(dr);
            self.account_writing(cr);
            self.accounts[dr].debits_pending -= p.amount;
            self.accounts[cr].credits_pending -= p.amount;
            if p.flags.contains(TransferFlags::CLOSING_DEBIT) {
                self.accounts[dr].flags.0 &= !AccountFlags::CLOSED;
            }
            if p.flags.contains(TransferFlags::CLOSING_CREDIT) {
                self.accounts[cr].flags.0 &= !AccountFlags::CLOSED;
            }
            self.state_writing(handle);
            self.transfer_state[handle as usize] = STATE_CREATED | PendingStatus::Expired as u8;
            self.expiries.remove(&(expires_at, handle));
        }
        expired.len()
    }

    // ---------------------------------------------------------------------------------------
    // Timestamp lookups.

    /// The created transfer with exactly `timestamp`, if any. Created transfers' timestamps
    /// increase with their handles; handles of failed events are skipped.
    pub(crate) fn transfer_at_timestamp<S: TransferStore>(
        &self,
        store: &S,
        timestamp: u64,
    ) -> Option<u64> {
        let position = self.transfer_lower_bound(store, timestamp);
        let handle = self.created_at_or_after(position, self.transfer_state.len() as u64)?;
        (store.event(handle).timestamp == timestamp).then_some(handle)
    }

    /// The first handle whose created transfer (if any at or after it) has a timestamp at or
    /// above `timestamp`.
    pub(crate) fn transfer_lower_bound<S: TransferStore>(&self, store: &S, timestamp: u64) -> u64 {
        let (mut low, mut high) = (0u64, self.transfer_state.len() as u64);
        while low < high {
            let middle = low + (high - low) / 2;
            match self.created_at_or_after(middle, high) {
                None => high = middle,
                Some(handle) if store.event(handle).timestamp < timestamp => low = handle + 1,
                Some(_) => high = middle,
            }
        }
        low
    }

    fn created_at_or_after(&self, from: u64, end: u64) -> Option<u64> {
        (from..end).find(|&handle| self.is_created(handle))
    }
}

/// Pushes every created transfer (its id and handle, in handle order) into `placer`, reading
/// the ids in one sweep of the store.
/// Pushes the id of every account at a position of `positions`, in order: what the account
/// index holds.
pub(crate) fn accounts_created(
    accounts: &[Account],
    placer: &mut Placer<'_>,
    positions: Range<u64>,
) {
    let range = positions.start as usize..positions.end as usize;
    for (offset, account) in accounts[range].iter().enumerate() {
        placer.push(account.id, positions.start + offset as u64);
    }
}

/// Pushes the id of every created transfer among `handles`, in handle order: what the transfer
/// index holds (failed events have a handle but no entry).
pub(crate) fn transfers_created<S: TransferStore>(
    store: &S,
    states: &[u8],
    placer: &mut Placer<'_>,
    handles: Range<u64>,
) {
    assert!(handles.end <= states.len() as u64);
    store.event_ids_for_each(handles, |handle, id| {
        if states[handle as usize] & STATE_CREATED != 0 {
            placer.push(id, handle);
        }
    });
}

fn is_post_or_void(t: &Transfer) -> bool {
    t.flags.contains(TransferFlags::POST_PENDING_TRANSFER)
        || t.flags.contains(TransferFlags::VOID_PENDING_TRANSFER)
}

fn create_account_exists(a: &Account, e: &Account) -> CreateAccountStatus {
    use CreateAccountStatus as Status;
    assert_eq!(a.id, e.id);
    if a.flags != e.flags {
        return Status::ExistsWithDifferentFlags;
    }
    if a.user_data_128 != e.user_data_128 {
        return Status::ExistsWithDifferentUserData128;
    }
    if a.user_data_64 != e.user_data_64 {
        return Status::ExistsWithDifferentUserData64;
    }
    if a.user_data_32 != e.user_data_32 {
        return Status::ExistsWithDifferentUserData32;
    }
    if a.ledger != e.ledger {
        return Status::ExistsWithDifferentLedger;
    }
    if a.code != e.code {
        return Status::ExistsWithDifferentCode;
    }
    Status::Exists
}

/// The amount a post or void moves: void releases the whole pending amount (0 means "all");
/// post moves `amount`, or all of it for `AMOUNT_MAX`.
fn post_or_void_amount(t: &Transfer, p: &Transfer) -> u128 {
    if t.flags.contains(TransferFlags::VOID_PENDING_TRANSFER) {
        if t.amount > 0 {
            t.amount
        } else {
            p.amount
        }
    } else if t.amount == AMOUNT_MAX {
        p.amount
    } else {
        t.amount
    }
}

/// The transfer a successful post or void stores: accounts, ledger and code from the pending
/// transfer, user data from the request where non-zero, no timeout.
fn posted_or_voided(t: &Transfer, p: &Transfer) -> Transfer {
    Transfer {
        id: t.id,
        debit_account_id: p.debit_account_id,
        credit_account_id: p.credit_account_id,
        amount: post_or_void_amount(t, p),
        pending_id: t.pending_id,
        user_data_128: if t.user_data_128 > 0 {
            t.user_data_128
        } else {
            p.user_data_128
        },
        user_data_64: if t.user_data_64 > 0 {
            t.user_data_64
        } else {
            p.user_data_64
        },
        user_data_32: if t.user_data_32 > 0 {
            t.user_data_32
        } else {
            p.user_data_32
        },
        timeout: 0,
        ledger: p.ledger,
        code: p.code,
        flags: t.flags,
        timestamp: t.timestamp,
    }
}

fn post_or_void_pending_transfer_exists(
    t: &Transfer,
    e: &Transfer,
    p: &Transfer,
) -> CreateTransferStatus {
    use CreateTransferStatus as Status;
    assert_eq!(t.pending_id, p.id);
    assert!(e.timestamp > p.timestamp);
    if t.debit_account_id != 0 && t.debit_account_id != e.debit_account_id {
        return Status::ExistsWithDifferentDebitAccountId;
    }
    if t.credit_account_id != 0 && t.credit_account_id != e.credit_account_id {
        return Status::ExistsWithDifferentCreditAccountId;
    }
    let amount_differs = if t.flags.contains(TransferFlags::VOID_PENDING_TRANSFER) {
        if t.amount == 0 {
            e.amount != p.amount
        } else {
            t.amount != e.amount
        }
    } else if t.amount == AMOUNT_MAX {
        e.amount != p.amount
    } else {
        t.amount != e.amount
    };
    if amount_differs {
        return Status::ExistsWithDifferentAmount;
    }
    // Zero user data in the retry means "inherited from the pending transfer".
    let inherited = |t_value: u128, e_value: u128, p_value: u128| {
        if t_value == 0 {
            e_value != p_value
        } else {
            t_value != e_value
        }
    };
    if inherited(t.user_data_128, e.user_data_128, p.user_data_128) {
        return Status::ExistsWithDifferentUserData128;
    }
    if inherited(
        t.user_data_64.into(),
        e.user_data_64.into(),
        p.user_data_64.into(),
    ) {
        return Status::ExistsWithDifferentUserData64;
    }
    if inherited(
        t.user_data_32.into(),
        e.user_data_32.into(),
        p.user_data_32.into(),
    ) {
        return Status::ExistsWithDifferentUserData32;
    }
    if t.ledger != 0 && t.ledger != e.ledger {
        return Status::ExistsWithDifferentLedger;
    }
    if t.code != 0 && t.code != e.code {
        return Status::ExistsWithDifferentCode;
    }
    Status::Exists
}
