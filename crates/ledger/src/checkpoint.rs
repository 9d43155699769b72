//! The ledger's state as bytes, for checkpoints: `checkpoint_begin` and `encode_step` write it,
//! `decode_checkpoint` reads it back and checks it before anything is trusted. Transfer bodies
//! are not in it (they stay in the store), and neither are the id indexes: they are rebuilt on
//! load (`LedgerDecoded::index`), so that a checkpoint costs what the ledger holds, not what its
//! indexes were sized for (`Ledger::with_capacity`), and equal states encode to equal bytes
//! whatever the indexes' history.
//!
//! Format 2 (`TLYLDG02`, written), each integer little-endian, each list prefixed by its u64
//! length:
//!
//! ```text
//! head  MAGIC, timestamp_last, transfer_count, transfer_timestamp_max,
//!       accounts, per account (transfers, history rows) lengths, transfer states,
//!       balancing amounts, expiries, retired ids
//! tail  per account: its transfer handles, then its history rows
//! ```
//!
//! Everything that a batch may change in place is in the head, written at the checkpoint's
//! moment. The tail holds the per-account lists, which only grow (a rolled-back chain pops only
//! what its own batch pushed), so a list's first `n` items never change once it has `n`: the
//! tail can be copied in slices while later batches run, each list up to its length at the
//! moment, and the bytes are the state at that moment (`LedgerCheckpoint`).
//!
//! Format 1 (`TLYLDG01`, read only) interleaves the lists with the accounts and holds the index
//! slots, which are skipped. The caller (the journal) checksums the whole blob.

use std::collections::{BTreeMap, BTreeSet};

use crate::account_lists::List;
use crate::block_log::{BlockLogView, BlockNumber, BLOCK_BYTES};
use crate::head_copy::HeadCopy;
use crate::id_table::IdIndex;
use crate::ledger::{accounts_created, transfers_created, BalanceSnapshot, Ledger};
use crate::store::TransferStore;
use crate::types::{Account, Record};

/// Format 1: lists interleaved with the accounts, and the id index slots.
const MAGIC_V1: &[u8; 8] = b"TLYLDG01";
/// Format 2, written: no index; the per-account lists in a tail after everything else.
pub(crate) const MAGIC: &[u8; 8] = b"TLYLDG02";

/// Why `Ledger::decode_checkpoint` refused a blob. Any of these means the bytes cannot be
/// trusted as a ledger state: the caller must not serve from them.
#[derive(Debug, PartialEq, Eq)]
pub enum CheckpointError {
    /// The blob does not start with a known magic (not a ledger checkpoint, or a format this
    /// binary does not read).
    BadMagic,
    /// The blob ends early, or a list length claims more than the bytes that remain.
    Truncated {
        /// Byte offset of the read that ran out.
        offset: usize,
    },
    /// Every field parsed, but the parts contradict each other; the text names the check.
    Inconsistent(&'static str),
}

impl core::fmt::Display for CheckpointError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::BadMagic => write!(f, "not a ledger checkpoint (bad magic)"),
            Self::Truncated { offset } => write!(f, "ledger checkpoint truncated at byte {offset}"),
            Self::Inconsistent(what) => write!(f, "ledger checkpoint inconsistent: {what}"),
        }
    }
}

impl std::error::Error for CheckpointError {}

struct Reader<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, size: usize) -> Result<&'a [u8], CheckpointError> {
        let end = self
            .offset
            .checked_add(size)
            .filter(|&end| end <= self.bytes.len());
        let end = end.ok_or(CheckpointError::Truncated {
            offset: self.offset,
        })?;
        let taken = &self.bytes[self.offset..end];
        self.offset = end;
        Ok(taken)
    }
    fn u64(&mut self) -> Result<u64, CheckpointError> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    fn u128(&mut self) -> Result<u128, CheckpointError> {
        Ok(u128::from_le_bytes(
            self.take(16)?.try_into().expect("16 bytes"),
        ))
    }
    /// A list length, bounded by what the remaining bytes could hold at `item_size` each (so a
    /// corrupt length cannot make us allocate without limit).
    fn len(&mut self, item_size: usize) -> Result<usize, CheckpointError> {
        let len = self.u64()?;
        let remaining = (self.bytes.len() - self.offset) as u64;
        if len.saturating_mul(item_size.max(1) as u64) > remaining {
            return Err(CheckpointError::Truncated {
                offset: self.offset,
            });
        }
        Ok(len as usize)
    }
    /// `count` little-endian u64s.
    fn u64s(&mut self, count: usize) -> Result<Vec<u64>, CheckpointError> {
        let bytes = self.take(count.checked_mul(8).ok_or(CheckpointError::Truncated {
            offset: self.offset,
        })?)?;
        Ok(bytes
            .chunks_exact(8)
            .map(|value| u64::from_le_bytes(value.try_into().expect("8 bytes")))
            .collect())
    }
    /// `count` history rows.
    fn rows(&mut self, count: usize) -> Result<Vec<BalanceSnapshot>, CheckpointError> {
        let size = count
            .checked_mul(BalanceSnapshot::SIZE)
            .ok_or(CheckpointError::Truncated {
                offset: self.offset,
            })?;
        Ok(self
            .take(size)?
            .chunks_exact(BalanceSnapshot::SIZE)
            .map(BalanceSnapshot::read_from)
            .collect())
    }
}

/// How many rows ahead the checkpoint's gather of an account's history prefetches.
const ROWS_PREFETCH_AHEAD: usize = 8;
/// Transfer handles per list block.
const HANDLES_PER_BLOCK: usize = List::<u64>::PER_BLOCK;
/// History row numbers per list block.
const ROW_NUMBERS_PER_BLOCK: usize = List::<u32>::PER_BLOCK;

/// Bytes an account's lists take in the tail: `handles` transfer handles, `rows` history rows.
pub(crate) fn list_tail_bytes(handles: usize, rows: usize) -> usize {
    handles * 8 + rows * BalanceSnapshot::SIZE
}

/// Blocks that hold an account's lists of `handles` transfer handles and `rows` row numbers.
pub(crate) fn list_blocks_len(handles: usize, rows: usize) -> usize {
    handles.div_ceil(HANDLES_PER_BLOCK) + rows.div_ceil(ROW_NUMBERS_PER_BLOCK)
}

/// A ledger checkpoint under way: `Ledger::checkpoint_begin` wrote the head at the checkpoint's
/// moment and kept what the tail needs of that moment: the length of each per-account list, the
/// numbers of the blocks that held them, and views of the two block logs. `encode_step` appends
/// the tail from those, in slices, on any thread, while the ledger goes on (or is gone): blocks
/// below a log's length at the moment never change but for list slots past the moment's length,
/// which are never read here (`block_log`).
pub struct LedgerCheckpoint {
    /// Per account at the checkpoint's moment: its transfer handles and its history rows.
    lengths: Vec<[usize; 2]>,
    /// Per account, one after the other: the blocks of its handles, then those of its row
    /// numbers, as many as its lengths need.
    blocks: Vec<BlockNumber>,
    list_blocks: BlockLogView,
    history: BlockLogView,
    /// The account whose lists are being copied.
    account: usize,
    /// Where that account's blocks start in `blocks`.
    account_blocks: usize,
    /// Items of that account's lists copied: handles first, then rows.
    item: usize,
    /// Bytes of the tail still to copy.
    tail_bytes_left: usize,
}

impl LedgerCheckpoint {
    /// The tail of lists of `lengths` at the moment, whose items lie in `blocks` of `list_blocks`
    /// (history rows: numbers of `history`'s blocks), `tail_bytes_left` bytes in all.
    pub(crate) fn new(
        lengths: Vec<[usize; 2]>,
        blocks: Vec<BlockNumber>,
        list_blocks: BlockLogView,
        history: BlockLogView,
        tail_bytes_left: usize,
    ) -> LedgerCheckpoint {
        LedgerCheckpoint {
            lengths,
            blocks,
            list_blocks,
            history,
            account: 0,
            account_blocks: 0,
            item: 0,
            tail_bytes_left,
        }
    }

    /// Bytes that `encode_step` has still to append.
    pub fn tail_bytes_left(&self) -> usize {
        self.tail_bytes_left
    }

    /// Appends the next slice of the tail: about `budget_bytes` (at least one item), and never
    /// past the end. Returns whether the tail is complete.
    pub fn encode_step(&mut self, out: &mut Vec<u8>, budget_bytes: usize) -> bool {
        let mut budget_left = budget_bytes.max(1);
        loop {
            // Past the lists copied whole (and the empty ones).
            while let Some(&[handles_len, rows_len]) = self.lengths.get(self.account) {
                if self.item < handles_len + rows_len {
                    break;
                }
                self.account += 1;
                self.account_blocks += list_blocks_len(handles_len, rows_len);
                self.item = 0;
            }
            if self.account == self.lengths.len() || budget_left == 0 {
                break;
            }
            let [handles_len, rows_len] = self.lengths[self.account];
            let (take, item_bytes) = if self.item < handles_len {
                let take = (handles_len - self.item).min(budget_left.div_ceil(8));
                self.handles_extend(take, out);
                (take, 8)
            } else {
                let take = (handles_len + rows_len - self.item)
                    .min(budget_left.div_ceil(BalanceSnapshot::SIZE));
                self.rows_extend(handles_len, take, out);
                (take, BalanceSnapshot::SIZE)
            };
            self.item += take;
            let bytes_len = take * item_bytes;
            budget_left = budget_left.saturating_sub(bytes_len);
            self.tail_bytes_left -= bytes_len;
        }
        let complete = self.account == self.lengths.len();
        // Pair: the lengths announced in the head are exactly what the tail holds.
        assert_eq!(complete, self.tail_bytes_left == 0);
        if complete {
            // Pair: the lengths named exactly the blocks kept at the moment.
            assert_eq!(self.account_blocks, self.blocks.len());
        }
        complete
    }

    /// Appends `take` handles of the current account from its item `self.item`, a block's run
    /// at a time.
    fn handles_extend(&self, take: usize, out: &mut Vec<u8>) {
        let end = self.item + take;
        let mut position = self.item;
        while position < end {
            let slot = position % HANDLES_PER_BLOCK;
            let run = (HANDLES_PER_BLOCK - slot).min(end - position);
            let block = self.blocks[self.account_blocks + position / HANDLES_PER_BLOCK];
            out.extend_from_slice(self.list_blocks.bytes(block, slot * 8..(slot + run) * 8));
            position += run;
        }
    }

    /// Appends `take` history rows of the current account from its item `self.item` (the
    /// account's `handles_len` handles come first), gathered from the history log: the same
    /// bytes as the account's own list of snapshots that format 2 was defined on.
    fn rows_extend(&self, handles_len: usize, take: usize, out: &mut Vec<u8>) {
        let rows_blocks = self.account_blocks + handles_len.div_ceil(HANDLES_PER_BLOCK);
        let first = self.item - handles_len;
        let number = |row: usize| -> BlockNumber {
            let block = self.blocks[rows_blocks + row / ROW_NUMBERS_PER_BLOCK];
            let slot = (row % ROW_NUMBERS_PER_BLOCK) * 4;
            let bytes = self.list_blocks.bytes(block, slot..slot + 4);
            u32::from_le_bytes(bytes.try_into().expect("4 bytes"))
        };
        for row in first..first + take {
            // An account's rows lie apart in the log, each in its own line: fetch a few ahead,
            // or the gather waits on memory once per row.
            if row + ROWS_PREFETCH_AHEAD < first + take {
                self.history.prefetch(number(row + ROWS_PREFETCH_AHEAD));
            }
            out.extend_from_slice(self.history.bytes(number(row), 0..BLOCK_BYTES));
        }
    }

    /// The block numbers kept at the moment (`checkpoint_block_numbers_len` of them), once the
    /// tail is complete: their buffer is for the next checkpoint to reuse, its pages backed.
    pub fn block_numbers_take(&mut self) -> Vec<u32> {
        assert_eq!(self.tail_bytes_left, 0, "the tail is complete");
        std::mem::take(&mut self.blocks)
    }
}

/// A ledger read back from a checkpoint, all but its transfer id index, which is built from
/// the store that holds the ids: `index` returns the ledger. Nothing can be served before that.
pub struct LedgerDecoded {
    ledger: Ledger,
}

impl LedgerDecoded {
    /// Builds the transfer id index from `store` (reading every created transfer's id back, in
    /// handle order) with room for `transfers_additional` more, and returns the ledger.
    pub fn index<S: TransferStore>(
        self,
        store: &S,
        transfers_additional: usize,
    ) -> Result<Ledger, CheckpointError> {
        let mut ledger = self.ledger;
        if store.event_count() < ledger.transfer_handle_next() {
            return Err(CheckpointError::Inconsistent(
                "transfer handles beyond the store",
            ));
        }
        let count_max = (ledger.transfer_count as usize).saturating_add(transfers_additional);
        let states = &ledger.transfer_state;
        let handles = 0..states.len() as u64;
        ledger.transfer_index = IdIndex::built(count_max, handles, |placer, handles| {
            transfers_created(store, states, placer, handles);
        });
        // Pair with the states' count, checked on decode.
        assert_eq!(ledger.transfer_index.len() as u64, ledger.transfer_count);
        Ok(ledger)
    }
}

impl Ledger {
    /// Appends the whole state to `out` (`checkpoint_begin`, then every step at once).
    /// Deterministic: equal states encode to equal bytes. Transfer bodies are not included: a
    /// restore needs the same store.
    pub fn encode_checkpoint(&self, out: &mut Vec<u8>) {
        let start = out.len();
        let mut checkpoint = self.checkpoint_begin(out);
        let complete = checkpoint.encode_step(out, usize::MAX);
        assert!(complete);
        // Pair with the size announced beforehand.
        assert_eq!(out.len() - start, self.checkpoint_size_bytes());
    }

    /// The size of the checkpoint encoding of the state as it is now, head and tail: so that a
    /// caller can allocate once for all of it.
    pub fn checkpoint_size_bytes(&self) -> usize {
        let lists: usize = self
            .account_lists
            .iter()
            .map(|lists| list_tail_bytes(lists.transfers.len(), lists.rows.len()))
            .sum();
        self.checkpoint_head_size_bytes() + lists
    }

    /// The size of the head that `checkpoint_begin` writes: everything but the per-account
    /// lists.
    pub fn checkpoint_head_size_bytes(&self) -> usize {
        MAGIC.len()
            + 3 * 8
            + 8
            + self.accounts.len() * (Account::SIZE + 2 * 8)
            + 8
            + self.transfer_state.len()
            + 8
            + self.balancing_amounts.len() * 24
            + 8
            + self.expiries.len() * 16
            + 8
            + self.orphan_ids.len() * 16
    }

    /// Appends the head of the state (everything a batch may change in place: accounts,
    /// transfer states, balancing amounts, expiries, retired ids, and the length of every
    /// per-account list) and returns the checkpoint, whose `encode_step` appends the rest.
    pub fn checkpoint_begin(&self, out: &mut Vec<u8>) -> LedgerCheckpoint {
        self.checkpoint_begin_reusing(out, Vec::new())
    }

    /// `checkpoint_begin` at once, keeping the moment's block numbers in `block_numbers`
    /// (emptied first): a buffer whose pages are backed already (`LedgerCheckpoint::
    /// block_numbers_take`) spares the copy a page fault per 1,024.
    pub fn checkpoint_begin_reusing(
        &self,
        out: &mut Vec<u8>,
        block_numbers: Vec<u32>,
    ) -> LedgerCheckpoint {
        let mut copy = HeadCopy::begin(self, std::mem::take(out), block_numbers);
        assert!(
            copy.step(self, usize::MAX),
            "an unbounded step copies the whole head"
        );
        let (head, checkpoint) = copy.finish(self);
        *out = head;
        checkpoint
    }

    /// The checkpoint's moment, for a head copied in slices while batches go on
    /// (`head_copy`): keeps what the head needs of the state now and appends the head's
    /// header to `head` (its other bytes follow with `checkpoint_head_step`). `block_numbers`
    /// (emptied first) takes the numbers of the tail's blocks. One copy at a time. Returns the
    /// size of the whole encoding, head and tail (`checkpoint_size_bytes` at the moment).
    pub fn checkpoint_head_begin(&mut self, head: Vec<u8>, block_numbers: Vec<u32>) -> usize {
        assert!(self.head_copy.is_none(), "one head copy at a time");
        let copy = HeadCopy::begin(self, head, block_numbers);
        let size_bytes = copy.encoding_size_bytes();
        self.head_copy = Some(Box::new(copy));
        size_bytes
    }

    /// Copies about `budget_bytes` more of the head begun by `checkpoint_head_begin`; returns
    /// whether it is complete.
    pub fn checkpoint_head_step(&mut self, budget_bytes: usize) -> bool {
        let mut copy = self.head_copy.take().expect("a head copy under way");
        let complete = copy.step(self, budget_bytes);
        self.head_copy = Some(copy);
        complete
    }

    /// The head begun by `checkpoint_head_begin`, once complete: the state's head as it was at
    /// that moment, after what `head` held, and the checkpoint that appends the tail.
    pub fn checkpoint_head_finish(&mut self) -> (Vec<u8>, LedgerCheckpoint) {
        let copy = self.head_copy.take().expect("a head copy under way");
        copy.finish(self)
    }

    /// How many block numbers a checkpoint begun now keeps: so that a caller can back a buffer
    /// for them ahead of the moment.
    pub fn checkpoint_block_numbers_len(&self) -> usize {
        self.account_lists
            .iter()
            .map(|lists| list_blocks_len(lists.transfers.len(), lists.rows.len()))
            .sum()
    }

    /// Reads back what `checkpoint_begin` and `encode_step` wrote (or format 1), from the start
    /// of `bytes`; returns the ledger without its transfer index and the bytes it took. Checks
    /// internal consistency before returning. Never panics on corrupt input: every length is
    /// bounded by the bytes left.
    pub fn decode_checkpoint(bytes: &[u8]) -> Result<(LedgerDecoded, usize), CheckpointError> {
        let mut r = Reader { bytes, offset: 0 };
        let magic = r.take(MAGIC.len())?;
        let mut ledger = if magic == MAGIC {
            decode_v2(&mut r)?
        } else if magic == MAGIC_V1 {
            decode_v1(&mut r)?
        } else {
            return Err(CheckpointError::BadMagic);
        };
        let accounts = &ledger.accounts;
        let positions = 0..accounts.len() as u64;
        ledger.account_index = IdIndex::built(accounts.len(), positions, |placer, positions| {
            accounts_created(accounts, placer, positions);
        });
        ledger.check_consistent()?;
        Ok((LedgerDecoded { ledger }, r.offset))
    }

    /// The cross-checks a decoded state must pass before it is served (the read-back half of
    /// the assertions around the checkpoint).
    fn check_consistent(&self) -> Result<(), CheckpointError> {
        if self.account_index.len() != self.accounts.len() {
            return Err(CheckpointError::Inconsistent("account index count"));
        }
        let created = self
            .transfer_state
            .iter()
            .filter(|&&state| state & 0x80 != 0)
            .count() as u64;
        if created != self.transfer_count {
            return Err(CheckpointError::Inconsistent("transfer states"));
        }
        let handle_end = self.transfer_state.len() as u64;
        let in_range = |handle: &u64| *handle < handle_end;
        let handles_in_range = self.account_lists.iter().all(|lists| {
            lists
                .transfers
                .iter(&self.list_blocks)
                .all(|handle| in_range(&handle))
        });
        if !handles_in_range
            || !self.expiries.iter().all(|(_, handle)| in_range(handle))
            || !self.balancing_amounts.keys().all(in_range)
        {
            return Err(CheckpointError::Inconsistent(
                "handle beyond the transfer states",
            ));
        }
        let sorted = self
            .accounts
            .windows(2)
            .all(|pair| pair[0].timestamp < pair[1].timestamp);
        if !sorted {
            return Err(CheckpointError::Inconsistent(
                "accounts out of timestamp order",
            ));
        }
        Ok(())
    }
}

/// The accounts, and the counters before them (both formats start alike).
fn decode_counters_and_accounts(r: &mut Reader<'_>) -> Result<Ledger, CheckpointError> {
    let mut ledger = Ledger::new();
    ledger.timestamp_last = r.u64()?;
    ledger.transfer_count = r.u64()?;
    ledger.transfer_timestamp_max = r.u64()?;
    let account_count = r.len(Account::SIZE)?;
    let account_bytes = r.take(account_count * Account::SIZE)?;
    ledger.accounts = account_bytes
        .chunks_exact(Account::SIZE)
        .map(Account::read_from)
        .collect();
    Ok(ledger)
}

/// What follows the lists in both formats: transfer states, balancing amounts, expiries and
/// retired ids.
fn decode_transfer_sections(
    r: &mut Reader<'_>,
    ledger: &mut Ledger,
) -> Result<(), CheckpointError> {
    let count = r.len(1)?;
    ledger.transfer_state = r.take(count)?.to_vec();
    let count = r.len(24)?;
    let mut balancing_amounts = BTreeMap::new();
    for _ in 0..count {
        balancing_amounts.insert(r.u64()?, r.u128()?);
    }
    ledger.balancing_amounts = balancing_amounts;
    let count = r.len(16)?;
    let mut expiries = BTreeSet::new();
    for _ in 0..count {
        expiries.insert((r.u64()?, r.u64()?));
    }
    ledger.expiries = expiries;
    let count = r.len(16)?;
    ledger.orphan_ids = (0..count).map(|_| r.u128()).collect::<Result<_, _>>()?;
    Ok(())
}

fn decode_v2(r: &mut Reader<'_>) -> Result<Ledger, CheckpointError> {
    let mut ledger = decode_counters_and_accounts(r)?;
    let mut lengths = Vec::with_capacity(ledger.accounts.len());
    for _ in 0..ledger.accounts.len() {
        // Each list's items are in the tail: at least 8 bytes per handle, 64 per row.
        lengths.push([r.len(8)?, r.len(BalanceSnapshot::SIZE)?]);
    }
    decode_transfer_sections(r, &mut ledger)?;
    for [handles, rows] in lengths {
        let handles = r.u64s(handles)?;
        let rows = r.rows(rows)?;
        ledger.account_lists_restore(&handles, &rows);
    }
    Ok(ledger)
}

fn decode_v1(r: &mut Reader<'_>) -> Result<Ledger, CheckpointError> {
    let mut ledger = decode_counters_and_accounts(r)?;
    for _ in 0..ledger.accounts.len() {
        let count = r.len(8)?;
        let handles = r.u64s(count)?;
        let count = r.len(BalanceSnapshot::SIZE)?;
        let rows = r.rows(count)?;
        ledger.account_lists_restore(&handles, &rows);
    }
    // The account and transfer index slots: rebuilt instead, like format 2's.
    for _ in 0..2 {
        let count = r.len(8)?;
        r.take(count * 8)?;
    }
    decode_transfer_sections(r, &mut ledger)?;
    Ok(ledger)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;
    use crate::types::{AccountFlags, Transfer, TransferFlags, AMOUNT_MAX};

    fn account(id: u128, flags: u16) -> Account {
        Account {
            id,
            ledger: 1,
            code: 1,
            flags: AccountFlags(flags),
            ..Account::default()
        }
    }

    fn transfer(id: u128, debit: u128, credit: u128, flags: u16) -> Transfer {
        let pending = flags & TransferFlags::PENDING != 0;
        Transfer {
            id,
            debit_account_id: debit,
            credit_account_id: credit,
            amount: 5,
            ledger: 1,
            code: 1,
            flags: TransferFlags(flags),
            timeout: if pending { 60 } else { 0 },
            ..Transfer::default()
        }
    }

    /// Stamps each batch 100 ns after the last one's events.
    struct Batches {
        ledger: Ledger,
        store: MemoryStore,
        timestamp: u64,
    }

    impl Batches {
        fn transfers(&mut self, events: &[Transfer]) {
            self.timestamp += 100 + events.len() as u64;
            let first = self.store.append_batch(self.timestamp, events);
            let mut results = Vec::new();
            self.ledger
                .create_transfers(&self.store, self.timestamp, first, events, &mut results);
        }

        fn accounts(&mut self, events: &[Account]) {
            self.timestamp += 100;
            self.ledger
                .create_accounts(&self.store, self.timestamp, events, &mut Vec::new());
        }
    }

    /// A checkpoint begun before more batches, and finished after them in small slices, holds
    /// the bytes of the ledger at its beginning: pendings posted (states changed in place,
    /// expiries removed), a failed linked chain (lists pushed and popped), new accounts and
    /// transfers meanwhile. It decodes to the ledger of that moment.
    #[test]
    fn slices_after_more_batches_encode_the_moment_of_the_beginning() {
        let mut batches = Batches {
            ledger: Ledger::new(),
            store: MemoryStore::new(),
            timestamp: 1_000,
        };
        batches.accounts(&[
            account(1, AccountFlags::HISTORY),
            account(2, 0),
            account(3, AccountFlags::HISTORY),
        ]);
        let mut events = Vec::new();
        for pair in 0..40 {
            events.push(transfer(100 + 2 * pair, 1, 2, 0));
            events.push(transfer(101 + 2 * pair, 3, 1, TransferFlags::PENDING));
        }
        batches.transfers(&events);

        let mut at_beginning = Vec::new();
        batches.ledger.encode_checkpoint(&mut at_beginning);
        let digest_at_beginning = batches.ledger.digest(&batches.store);
        let mut sliced = Vec::new();
        let mut checkpoint = batches.ledger.checkpoint_begin(&mut sliced);
        assert!(!checkpoint.encode_step(&mut sliced, 100));

        let posts: Vec<Transfer> = events
            .iter()
            .filter(|event| event.flags.contains(TransferFlags::PENDING))
            .map(|pending| Transfer {
                id: pending.id + 1_000,
                pending_id: pending.id,
                amount: AMOUNT_MAX,
                flags: TransferFlags(TransferFlags::POST_PENDING_TRANSFER),
                ..Transfer::default()
            })
            .collect();
        batches.transfers(&posts);
        batches.transfers(&[
            transfer(9_001, 1, 3, TransferFlags::LINKED),
            transfer(9_002, 1, 1, 0),
        ]);
        batches.accounts(&[account(4, 0)]);
        batches.transfers(&[transfer(9_100, 4, 1, 0)]);
        assert_ne!(batches.ledger.digest(&batches.store), digest_at_beginning);

        while !checkpoint.encode_step(&mut sliced, 100) {}
        assert_eq!(checkpoint.tail_bytes_left(), 0);
        assert_eq!(sliced, at_beginning);
        let (decoded, size) = Ledger::decode_checkpoint(&sliced).unwrap();
        assert_eq!(size, sliced.len());
        let decoded = decoded.index(&batches.store, 0).unwrap();
        assert_eq!(decoded.digest(&batches.store), digest_at_beginning);
        assert_eq!(
            decoded.transfer(&batches.store, 101).map(|t| t.id),
            Some(101)
        );
    }

    /// The tail gathered on another thread, in small slices, while the ledger takes batch after
    /// batch (new blocks in the lists' last blocks and past the moment, long linked chains
    /// pushed and undone across chunk boundaries) and is then dropped before the gather ends:
    /// the bytes of the moment, decoding to its state.
    #[test]
    fn a_tail_gathered_on_another_thread_while_the_ledger_goes_on_is_the_moment() {
        let mut batches = Batches {
            ledger: Ledger::new(),
            store: MemoryStore::new(),
            timestamp: 1_000,
        };
        let accounts: Vec<Account> = (1..=7)
            .map(|id| account(id, if id == 4 { 0 } else { AccountFlags::HISTORY }))
            .collect();
        batches.accounts(&accounts);
        let mut id = 100;
        let mut batch = |batches: &mut Batches, count: u128, chain_fails: bool| {
            let mut events: Vec<Transfer> = (0..count)
                .map(|n| {
                    id += 1;
                    let flags = if chain_fails {
                        TransferFlags::LINKED
                    } else {
                        0
                    };
                    transfer(id, 1 + (id + n) % 7, 1 + (id * 3 + 1 + n) % 7, flags)
                })
                .filter(|transfer| transfer.debit_account_id != transfer.credit_account_id)
                .collect();
            if chain_fails {
                // Same accounts on both sides: the chain fails and every push is undone.
                id += 1;
                events.push(transfer(id, 2, 2, 0));
            }
            batches.transfers(&events);
        };
        for _ in 0..40 {
            batch(&mut batches, 1_000, false);
        }

        let mut at_moment = Vec::new();
        batches.ledger.encode_checkpoint(&mut at_moment);
        let digest_at_moment = batches.ledger.digest(&batches.store);
        let mut gathered = Vec::new();
        let mut checkpoint = batches.ledger.checkpoint_begin(&mut gathered);
        let gather = std::thread::spawn(move || {
            while !checkpoint.encode_step(&mut gathered, 4_096) {
                std::thread::yield_now();
            }
            gathered
        });
        for round in 0..40 {
            batch(&mut batches, 1_000, round % 4 == 3);
        }
        drop(std::mem::take(&mut batches.ledger));
        let gathered = gather.join().expect("the gather");
        assert!(gathered == at_moment, "the gathered tail differs");
        let (decoded, _) = Ledger::decode_checkpoint(&gathered).unwrap();
        let decoded = decoded.index(&batches.store, 0).unwrap();
        assert_eq!(decoded.digest(&batches.store), digest_at_moment);
    }

    /// The index is not in the checkpoint, so presizing it costs nothing there.
    #[test]
    fn capacity_is_not_encoded() {
        let mut small = Vec::new();
        Ledger::new().encode_checkpoint(&mut small);
        let mut presized = Vec::new();
        Ledger::with_capacity(1_000, 1_000_000).encode_checkpoint(&mut presized);
        assert_eq!(small, presized);
    }
}
