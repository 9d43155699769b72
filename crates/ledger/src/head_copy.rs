//! A checkpoint's head copied in slices after its moment, while batches go on changing what it
//! copies: the accounts and the transfer states change in place. Before such a change, the
//! ledger hands the value it replaces to the copy (`account_writing`, `state_writing`) if the
//! copy has not reached it yet; the copy takes the current value when it gets there, and once
//! complete puts the saved values back over those. So the bytes are the head as it was at the
//! moment, as if written then at once, and the moment itself copies only the small parts
//! (header, list lengths, balancing amounts, expiries, retired ids).
//!
//! Why: written at once, the head (128 B an account and 1 B a transfer) and the block numbers
//! of the tail (4 B a list block) were 10–25 MB of first writes at 4–6 M transfers: 3.6–6.7 ms
//! of the core when the host was quiet, 19–83 ms when it was not (issue 10), and growing with
//! the ledger. The block numbers need no saved values: a list's blocks below its length at the
//! moment never change (the tail's own argument, `checkpoint`).

use crate::block_log::BlockNumber;
use crate::checkpoint::{list_blocks_len, list_tail_bytes, LedgerCheckpoint, MAGIC};
use crate::ledger::Ledger;
use crate::types::{Account, Record};

/// How many accounts ahead the gather of block numbers prefetches.
const BLOCK_NUMBERS_PREFETCH_AHEAD: usize = 4;
/// What gathering one account's block numbers counts against a step's budget, at least: each
/// account's lists are allocations of their own, and reaching one not touched for a while took
/// about 3 µs when the host was busy, whatever the lists held.
const ACCOUNT_GATHER_BYTES_MIN: usize = 512;
/// Bytes of the header before the accounts: magic, three counters, the accounts' count.
const HEADER_BYTES: usize = 8 + 3 * 8 + 8;
/// Bytes of one account's list lengths in the head.
const LENGTHS_BYTES: usize = 2 * 8;

/// A head being copied; lives in the ledger (`Ledger::checkpoint_head_begin`) while batches run,
/// or on the stack for a head written at once.
pub(crate) struct HeadCopy {
    /// The head so far, from `start`.
    out: Vec<u8>,
    start: usize,
    /// The head's size, fixed at the moment.
    size_bytes: usize,
    /// Per account at the moment: its transfer handles and its history rows.
    lengths: Vec<[usize; 2]>,
    /// The balancing amounts, expiries and retired ids, encoded at the moment.
    rest: Vec<u8>,
    /// Block numbers gathered so far, and for how many accounts.
    blocks: Vec<BlockNumber>,
    blocks_accounts: usize,
    /// Block numbers and tail bytes the lengths name.
    blocks_len: usize,
    tail_bytes: usize,
    /// Accounts and transfer states at the moment, and how many are copied.
    accounts_len: usize,
    accounts_copied: usize,
    states_len: usize,
    states_copied: usize,
    /// How many accounts' lengths are copied.
    lengths_copied: usize,
    /// Whether the transfer states' count is written.
    states_begun: bool,
    rest_copied: bool,
    /// One bit per account at the moment: its value at the moment is in `account_befores`.
    accounts_saved: Vec<u64>,
    account_befores: Vec<(usize, Account)>,
    /// Values at the moment of transfer states changed before their copy; the first for a
    /// handle is the moment's (later ones are undone changes of later batches).
    state_befores: Vec<(usize, u8)>,
}

impl HeadCopy {
    /// The moment: keeps what the head's small parts are now, writes its header into `out`
    /// (after what `out` holds), and takes `blocks` (emptied) for the block numbers.
    pub(crate) fn begin(ledger: &Ledger, mut out: Vec<u8>, mut blocks: Vec<BlockNumber>) -> Self {
        // One pass over the lists at the moment: the tail's size and its blocks follow from the
        // lengths.
        let (mut tail_bytes, mut blocks_len) = (0, 0);
        let lengths: Vec<[usize; 2]> = ledger
            .account_lists
            .iter()
            .map(|lists| {
                let (handles, rows) = (lists.transfers.len(), lists.rows.len());
                tail_bytes += list_tail_bytes(handles, rows);
                blocks_len += list_blocks_len(handles, rows);
                [handles, rows]
            })
            .collect();
        let rest = encode_rest(ledger);
        let size_bytes = ledger.checkpoint_head_size_bytes();
        let accounts_len = ledger.accounts.len();
        let states_len = ledger.transfer_state.len();
        // Pair: the parts add up to the size announced for the head.
        assert_eq!(
            size_bytes,
            HEADER_BYTES
                + accounts_len * (Account::SIZE + LENGTHS_BYTES)
                + 8
                + states_len
                + rest.len()
        );
        let start = out.len();
        out.reserve_exact(size_bytes);
        out.extend_from_slice(MAGIC);
        for value in [
            ledger.timestamp_last,
            ledger.transfer_count,
            ledger.transfer_timestamp_max,
            accounts_len as u64,
        ] {
            out.extend_from_slice(&value.to_le_bytes());
        }
        blocks.clear();
        blocks.reserve_exact(blocks_len);
        HeadCopy {
            out,
            start,
            size_bytes,
            lengths,
            rest,
            blocks,
            blocks_accounts: 0,
            blocks_len,
            tail_bytes,
            accounts_len,
            accounts_copied: 0,
            states_len,
            states_copied: 0,
            lengths_copied: 0,
            states_begun: false,
            rest_copied: false,
            accounts_saved: vec![0; accounts_len.div_ceil(64)],
            account_befores: Vec::new(),
            state_befores: Vec::new(),
        }
    }

    /// The size of the whole ledger encoding at the moment: the head and the tail.
    pub(crate) fn encoding_size_bytes(&self) -> usize {
        self.size_bytes + self.tail_bytes
    }

    /// Account `index` is about to change from `before`. Out of line and cold: the batch path
    /// only tests whether a copy is under way (`Ledger::account_writing`).
    #[cold]
    #[inline(never)]
    pub(crate) fn account_writing(&mut self, index: usize, before: &Account) {
        if index < self.accounts_copied || index >= self.accounts_len {
            return;
        }
        let (word, bit) = (index / 64, 1u64 << (index % 64));
        if self.accounts_saved[word] & bit == 0 {
            self.accounts_saved[word] |= bit;
            self.account_befores.push((index, *before));
        }
    }

    /// Transfer state `handle` is about to change from `before` (out of line and cold, as
    /// above).
    #[cold]
    #[inline(never)]
    pub(crate) fn state_writing(&mut self, handle: usize, before: u8) {
        if handle >= self.states_copied && handle < self.states_len {
            self.state_befores.push((handle, before));
        }
    }

    /// Copies about `budget_bytes` more (at least one item) from `ledger`, the ledger the copy
    /// began on; returns whether the copy is complete.
    pub(crate) fn step(&mut self, ledger: &Ledger, budget_bytes: usize) -> bool {
        // Pairs: the moment's parts only grow after it.
        assert!(ledger.accounts.len() >= self.accounts_len);
        assert!(ledger.transfer_state.len() >= self.states_len);
        let mut budget_left = budget_bytes.max(1);
        while budget_left > 0 && !self.complete() {
            let spent = if self.accounts_copied < self.accounts_len {
                self.accounts_step(ledger, budget_left)
            } else if self.lengths_copied < self.accounts_len {
                self.lengths_step(budget_left)
            } else if !self.states_begun {
                self.out
                    .extend_from_slice(&(self.states_len as u64).to_le_bytes());
                self.states_begun = true;
                8
            } else if self.states_copied < self.states_len {
                self.states_step(ledger, budget_left)
            } else if !self.rest_copied {
                self.out.extend_from_slice(&self.rest);
                self.rest_copied = true;
                self.rest.len()
            } else {
                self.blocks_step(ledger, budget_left)
            };
            budget_left = budget_left.saturating_sub(spent.max(1));
        }
        self.complete()
    }

    /// Copies accounts (their values now: `finish` puts back those that changed); returns the
    /// bytes copied.
    fn accounts_step(&mut self, ledger: &Ledger, budget_bytes: usize) -> usize {
        let take =
            (self.accounts_len - self.accounts_copied).min(budget_bytes.div_ceil(Account::SIZE));
        let accounts = &ledger.accounts[self.accounts_copied..self.accounts_copied + take];
        self.out
            .extend_from_slice(Account::slice_as_bytes(accounts));
        self.accounts_copied += take;
        take * Account::SIZE
    }

    /// Copies the moment's list lengths; returns the bytes copied.
    fn lengths_step(&mut self, budget_bytes: usize) -> usize {
        let take =
            (self.accounts_len - self.lengths_copied).min(budget_bytes.div_ceil(LENGTHS_BYTES));
        for &[handles, rows] in &self.lengths[self.lengths_copied..self.lengths_copied + take] {
            self.out.extend_from_slice(&(handles as u64).to_le_bytes());
            self.out.extend_from_slice(&(rows as u64).to_le_bytes());
        }
        self.lengths_copied += take;
        take * LENGTHS_BYTES
    }

    /// Copies transfer states (their values now: `finish` puts back those that changed);
    /// returns the bytes copied.
    fn states_step(&mut self, ledger: &Ledger, budget_bytes: usize) -> usize {
        let take = (self.states_len - self.states_copied).min(budget_bytes);
        let states = &ledger.transfer_state[self.states_copied..self.states_copied + take];
        self.out.extend_from_slice(states);
        self.states_copied += take;
        take
    }

    /// Gathers the block numbers of about `budget_bytes` of them (at least one account's);
    /// returns the bytes it counts for them (`ACCOUNT_GATHER_BYTES_MIN` an account at least).
    fn blocks_step(&mut self, ledger: &Ledger, budget_bytes: usize) -> usize {
        let mut spent = 0;
        while self.blocks_accounts < self.lengths.len() && spent < budget_bytes {
            let account = self.blocks_accounts;
            // Each list's block numbers are an allocation of their own, somewhere on the heap:
            // fetch a few accounts ahead, or the copy waits on memory at every list.
            if let Some(ahead) = ledger
                .account_lists
                .get(account + BLOCK_NUMBERS_PREFETCH_AHEAD)
            {
                ahead.transfers.blocks_prefetch();
                ahead.rows.blocks_prefetch();
            }
            let lists = &ledger.account_lists[account];
            let [handles, rows] = self.lengths[account];
            let before = self.blocks.len();
            self.blocks
                .extend_from_slice(lists.transfers.blocks_holding(handles));
            self.blocks
                .extend_from_slice(lists.rows.blocks_holding(rows));
            self.blocks_accounts += 1;
            spent += ((self.blocks.len() - before) * 4).max(ACCOUNT_GATHER_BYTES_MIN);
        }
        spent
    }

    fn complete(&self) -> bool {
        self.rest_copied && self.blocks_accounts == self.lengths.len()
    }

    /// Puts the saved values of the moment back over what was copied later, and returns the head
    /// (after what `out` held when the copy began) and the checkpoint that encodes the tail.
    pub(crate) fn finish(mut self, ledger: &Ledger) -> (Vec<u8>, LedgerCheckpoint) {
        assert!(
            self.complete(),
            "the head is copied whole before it is finished"
        );
        let accounts_start = self.start + HEADER_BYTES;
        for (index, account) in &self.account_befores {
            let at = accounts_start + index * Account::SIZE;
            self.out[at..at + Account::SIZE]
                .copy_from_slice(Account::slice_as_bytes(std::slice::from_ref(account)));
        }
        let states_start = accounts_start + self.accounts_len * (Account::SIZE + LENGTHS_BYTES) + 8;
        // The first saved value of a handle is the moment's: put them back last.
        for &(handle, before) in self.state_befores.iter().rev() {
            self.out[states_start + handle] = before;
        }
        // Pairs: the head has the size announced at the moment, and the blocks the lengths name.
        assert_eq!(self.out.len() - self.start, self.size_bytes);
        assert_eq!(self.blocks.len(), self.blocks_len);
        let checkpoint = LedgerCheckpoint::new(
            self.lengths,
            self.blocks,
            ledger.list_blocks.view(),
            ledger.history.view(),
            self.tail_bytes,
        );
        (self.out, checkpoint)
    }
}

/// The balancing amounts, the expiries and the retired ids, as the head ends with them.
fn encode_rest(ledger: &Ledger) -> Vec<u8> {
    let mut rest = Vec::new();
    rest.extend_from_slice(&(ledger.balancing_amounts.len() as u64).to_le_bytes());
    for (&handle, &amount) in &ledger.balancing_amounts {
        rest.extend_from_slice(&handle.to_le_bytes());
        rest.extend_from_slice(&amount.to_le_bytes());
    }
    rest.extend_from_slice(&(ledger.expiries.len() as u64).to_le_bytes());
    for &(expires_at, handle) in &ledger.expiries {
        rest.extend_from_slice(&expires_at.to_le_bytes());
        rest.extend_from_slice(&handle.to_le_bytes());
    }
    rest.extend_from_slice(&(ledger.orphan_ids.len() as u64).to_le_bytes());
    for &id in &ledger.orphan_ids {
        rest.extend_from_slice(&id.to_le_bytes());
    }
    rest
}
