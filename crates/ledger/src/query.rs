//! Reads (`ledger.md` §2.5): lookups, per-account transfers and balances, queries; and `digest`.
//!
//! An invalid filter gives an empty result, never an error, as in TigerBeetle. Every read stops
//! at `min(filter.limit, limit_max)` results; `limit_max` is what fits in the caller's reply.

use sha2::{Digest, Sha256};

use crate::account_lists::AccountLists;
use crate::ledger::{BalanceSnapshot, Ledger};
use crate::store::TransferStore;
use crate::types::*;

/// An inclusive timestamp range; 0 in a filter means "unbounded" on that side.
#[derive(Clone, Copy)]
struct TimestampRange {
    min: u64,
    max: u64,
}

impl TimestampRange {
    /// `None` when the filter's range is invalid (TigerBeetle's `filter_valid` rules).
    fn from_filter(timestamp_min: u64, timestamp_max: u64) -> Option<Self> {
        // Bounds must be below 2^63 (`ledger.md` §2.5): timestamps live in 63 bits.
        if timestamp_min > TIMESTAMP_MAX || timestamp_max > TIMESTAMP_MAX {
            return None;
        }
        if timestamp_max != 0 && timestamp_min > timestamp_max {
            return None;
        }
        let min = if timestamp_min == 0 {
            TIMESTAMP_MIN
        } else {
            timestamp_min
        };
        let max = if timestamp_max == 0 {
            TIMESTAMP_MAX
        } else {
            timestamp_max
        };
        Some(Self { min, max })
    }

    fn contains(self, timestamp: u64) -> bool {
        (self.min..=self.max).contains(&timestamp)
    }
}

impl AccountFilter {
    fn range(&self) -> Option<TimestampRange> {
        let valid = self.account_id != 0
            && self.account_id != u128::MAX
            && self.limit != 0
            && (self.flags.contains(AccountFilterFlags::DEBITS)
                || self.flags.contains(AccountFilterFlags::CREDITS))
            && self.flags.padding() == 0
            && self.reserved.iter().all(|&byte| byte == 0);
        if valid {
            TimestampRange::from_filter(self.timestamp_min, self.timestamp_max)
        } else {
            None
        }
    }

    fn matches(&self, t: &Transfer) -> bool {
        let debits = self.flags.contains(AccountFilterFlags::DEBITS)
            && t.debit_account_id == self.account_id;
        let credits = self.flags.contains(AccountFilterFlags::CREDITS)
            && t.credit_account_id == self.account_id;
        (debits || credits)
            && (self.user_data_128 == 0 || t.user_data_128 == self.user_data_128)
            && (self.user_data_64 == 0 || t.user_data_64 == self.user_data_64)
            && (self.user_data_32 == 0 || t.user_data_32 == self.user_data_32)
            && (self.code == 0 || t.code == self.code)
    }
}

impl QueryFilter {
    fn range(&self) -> Option<TimestampRange> {
        let valid = self.limit != 0
            && self.flags.padding() == 0
            && self.reserved.iter().all(|&byte| byte == 0);
        if valid {
            TimestampRange::from_filter(self.timestamp_min, self.timestamp_max)
        } else {
            None
        }
    }

    fn matches(
        &self,
        user_data_128: u128,
        user_data_64: u64,
        user_data_32: u32,
        ledger: u32,
        code: u16,
    ) -> bool {
        (self.user_data_128 == 0 || user_data_128 == self.user_data_128)
            && (self.user_data_64 == 0 || user_data_64 == self.user_data_64)
            && (self.user_data_32 == 0 || user_data_32 == self.user_data_32)
            && (self.ledger == 0 || ledger == self.ledger)
            && (self.code == 0 || code == self.code)
    }
}

impl Ledger {
    /// Found accounts in request order; missing ids are omitted.
    pub fn lookup_accounts(&self, ids: &[u128], out: &mut Vec<Account>) {
        out.extend(ids.iter().filter_map(|&id| self.account(id).copied()));
    }

    /// Found transfers in request order; missing ids are omitted.
    pub fn lookup_transfers<S: TransferStore>(
        &self,
        store: &S,
        ids: &[u128],
        out: &mut Vec<Transfer>,
    ) {
        out.extend(ids.iter().filter_map(|&id| self.transfer(store, id)));
    }

    /// The account's transfers matching the filter (side, user data, code, timestamp range),
    /// oldest first or reversed, at most `min(filter.limit, limit_max)`.
    pub fn get_account_transfers<S: TransferStore>(
        &self,
        store: &S,
        filter: &AccountFilter,
        limit_max: u32,
        out: &mut Vec<Transfer>,
    ) {
        self.account_scan(store, filter, limit_max, |_, transfer| out.push(*transfer));
    }

    /// The account's balances after each transfer matching the filter; only for accounts with
    /// `flags.history` (expiries are not rows: they change no historical balance).
    pub fn get_account_balances<S: TransferStore>(
        &self,
        store: &S,
        filter: &AccountFilter,
        limit_max: u32,
        out: &mut Vec<AccountBalance>,
    ) {
        let Some(index) = self.account_position(filter.account_id) else {
            return;
        };
        if !self.accounts[index as usize]
            .flags
            .contains(AccountFlags::HISTORY)
        {
            return;
        }
        let rows = &self.account_lists[index as usize].rows;
        self.account_scan(store, filter, limit_max, |position, transfer| {
            let row = self.history.get(rows.get(&self.list_blocks, position));
            let snapshot = BalanceSnapshot::read_from(row);
            out.push(AccountBalance {
                debits_pending: snapshot.debits_pending,
                debits_posted: snapshot.debits_posted,
                credits_pending: snapshot.credits_pending,
                credits_posted: snapshot.credits_posted,
                timestamp: transfer.timestamp,
                reserved: [0; 56],
            });
        });
    }

    /// Visits the account's transfers that match `filter`, in the filter's order, with each one's
    /// position in the account's transfer list.
    fn account_scan<S: TransferStore>(
        &self,
        store: &S,
        filter: &AccountFilter,
        limit_max: u32,
        mut visit: impl FnMut(usize, &Transfer),
    ) {
        let Some(range) = filter.range() else { return };
        let Some(index) = self.account_position(filter.account_id) else {
            return;
        };
        let handles = &self.account_lists[index as usize].transfers;
        let timestamp_of = |handle: u64| store.event(handle).timestamp;
        let start =
            handles.partition_point(&self.list_blocks, |handle| timestamp_of(handle) < range.min);
        let end = handles.partition_point(&self.list_blocks, |handle| {
            timestamp_of(handle) <= range.max
        });
        let limit = filter.limit.min(limit_max) as usize;
        let reversed = filter.flags.contains(AccountFilterFlags::REVERSED);
        let mut found = 0;
        for step in 0..end - start {
            if found == limit {
                break;
            }
            let position = if reversed {
                end - 1 - step
            } else {
                start + step
            };
            let transfer = self.transfer_at(store, handles.get(&self.list_blocks, position));
            debug_assert!(range.contains(transfer.timestamp));
            if filter.matches(&transfer) {
                visit(position, &transfer);
                found += 1;
            }
        }
    }

    /// Accounts matching the filter, by timestamp (a binary search bounds the range), oldest
    /// first or reversed, at most `min(filter.limit, limit_max)`.
    pub fn query_accounts(&self, filter: &QueryFilter, limit_max: u32, out: &mut Vec<Account>) {
        let Some(range) = filter.range() else { return };
        let start = self.accounts.partition_point(|a| a.timestamp < range.min);
        let end = self.accounts.partition_point(|a| a.timestamp <= range.max);
        let limit = filter.limit.min(limit_max) as usize;
        let matches = |a: &&Account| {
            filter.matches(
                a.user_data_128,
                a.user_data_64,
                a.user_data_32,
                a.ledger,
                a.code,
            )
        };
        let accounts = &self.accounts[start..end];
        if filter.flags.contains(QueryFilterFlags::REVERSED) {
            out.extend(accounts.iter().rev().filter(matches).take(limit).copied());
        } else {
            out.extend(accounts.iter().filter(matches).take(limit).copied());
        }
    }

    /// Scans transfers in timestamp order from the range's start. Tally keeps no secondary index
    /// of transfers by user data, ledger or code (they would cost heap per transfer), so this is
    /// linear in the transfers scanned (`docs/ledger.md`).
    pub fn query_transfers<S: TransferStore>(
        &self,
        store: &S,
        filter: &QueryFilter,
        limit_max: u32,
        out: &mut Vec<Transfer>,
    ) {
        let Some(range) = filter.range() else { return };
        let start = self.transfer_lower_bound(store, range.min);
        let end = self.transfer_lower_bound(store, range.max.saturating_add(1));
        let limit = filter.limit.min(limit_max) as usize;
        let handles = (start..end).filter(|&handle| self.is_created(handle));
        let matching = |handle: u64| {
            let t = self.transfer_at(store, handle);
            filter
                .matches(
                    t.user_data_128,
                    t.user_data_64,
                    t.user_data_32,
                    t.ledger,
                    t.code,
                )
                .then_some(t)
        };
        if filter.flags.contains(QueryFilterFlags::REVERSED) {
            out.extend(handles.rev().filter_map(matching).take(limit));
        } else {
            out.extend(handles.filter_map(matching).take(limit));
        }
    }

    /// A SHA-256 of the whole state, in a fixed order: two ledgers that applied the same batches
    /// have the same digest, and any difference in any account, transfer, pending state, retired
    /// id or history row changes it.
    pub fn digest<S: TransferStore>(&self, store: &S) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update(self.timestamp_last.to_le_bytes());
        hasher.update((self.accounts.len() as u64).to_le_bytes());
        for (index, account) in self.accounts.iter().enumerate() {
            hasher.update(account.as_bytes());
            let lists = &self.account_lists[index];
            for handle in lists.transfers.iter(&self.list_blocks) {
                hasher.update(handle.to_le_bytes());
            }
            for row in lists.rows.iter(&self.list_blocks) {
                let snapshot = BalanceSnapshot::read_from(self.history.get(row));
                for value in [
                    snapshot.debits_pending,
                    snapshot.debits_posted,
                    snapshot.credits_pending,
                    snapshot.credits_posted,
                ] {
                    hasher.update(value.to_le_bytes());
                }
            }
        }
        hasher.update(self.transfer_count.to_le_bytes());
        for handle in 0..self.transfer_state.len() as u64 {
            hasher.update([self.transfer_state[handle as usize]]);
            if self.is_created(handle) {
                hasher.update(self.transfer_at(store, handle).as_bytes());
            }
        }
        for (expires_at, handle) in &self.expiries {
            hasher.update(expires_at.to_le_bytes());
            hasher.update(handle.to_le_bytes());
        }
        for id in &self.orphan_ids {
            hasher.update(id.to_le_bytes());
        }
        hasher.finalize().into()
    }

    /// Heap bytes the core holds (capacity, not length), by structure. Excludes the store.
    pub fn heap_bytes(&self) -> HeapBytes {
        let vec_bytes = |capacity: usize, size: usize| capacity * size;
        // Per list kind: its blocks in `list_blocks`, and its vectors of block numbers.
        let (mut transfer_blocks, mut transfer_numbers, mut row_numbers) = (0, 0, 0);
        for lists in &self.account_lists {
            transfer_blocks += lists.transfers.block_bytes();
            transfer_numbers += lists.transfers.heap_bytes();
            row_numbers += lists.rows.heap_bytes();
        }
        HeapBytes {
            accounts: vec_bytes(self.accounts.capacity(), core::mem::size_of::<Account>())
                + self.account_index.heap_bytes()
                + vec_bytes(
                    self.account_lists.capacity(),
                    core::mem::size_of::<AccountLists>(),
                ),
            transfer_index: self.transfer_index.heap_bytes(),
            transfer_state: self.transfer_state.capacity(),
            account_transfer_lists: transfer_blocks + transfer_numbers,
            // The block log's chunks hold the rows, the blocks of row numbers and the transfer
            // lists' blocks (counted above).
            history: self.history.heap_bytes() + self.list_blocks.heap_bytes() - transfer_blocks
                + row_numbers,
            pending_and_balancing: (self.expiries.len() * 16) + (self.balancing_amounts.len() * 24),
        }
    }
}

/// Where the core's heap goes; `per_transfer` divides what grows with transfers by their count.
#[derive(Clone, Copy, Debug)]
pub struct HeapBytes {
    /// The accounts, their id index and the outer per-account vectors.
    pub accounts: usize,
    /// The transfer id index (8 bytes per slot).
    pub transfer_index: usize,
    /// One state byte per handle, failed events included.
    pub transfer_state: usize,
    /// The per-account lists of transfer handles (8 bytes per entry, two per transfer, in
    /// 64-byte blocks of the block log, and 4 bytes per block for its number).
    pub account_transfer_lists: usize,
    /// Balance rows of accounts with `flags.history` (64 bytes each) and each account's row
    /// numbers (4 bytes each, in blocks, plus 4 bytes per block): the rest of the block log's 1
    /// MiB chunks.
    pub history: usize,
    /// Expiry entries of pending transfers with a timeout, and balancing amounts.
    pub pending_and_balancing: usize,
}

impl HeapBytes {
    /// Heap that grows with transfers (everything but the accounts themselves).
    pub fn transfers_total(&self) -> usize {
        self.transfer_index
            + self.transfer_state
            + self.account_transfer_lists
            + self.history
            + self.pending_and_balancing
    }
}
