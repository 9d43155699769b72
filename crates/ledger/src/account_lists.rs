//! Each account's lists: the handles of the transfers that touched it and the numbers of its
//! history rows, in creation order. A list's items live in 64-byte blocks of the ledger's
//! `BlockLog`; the list keeps the numbers of its blocks and, next to its length, the number of
//! the block it is filling, so that an append touches the account's own header and a recently
//! written block (`block_log` says why), and reads the list of block numbers only when a block
//! fills.

use core::marker::PhantomData;

use crate::block_log::{BlockLog, BlockNumber, BLOCK_BYTES};

/// What a list holds: a fixed-size little-endian integer.
pub(crate) trait Item: Copy + Eq + core::fmt::Debug {
    const SIZE: usize;
    fn read(bytes: &[u8]) -> Self;
    fn write(self, bytes: &mut [u8]);
}

impl Item for u64 {
    const SIZE: usize = 8;
    #[inline]
    fn read(bytes: &[u8]) -> u64 {
        u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"))
    }
    #[inline]
    fn write(self, bytes: &mut [u8]) {
        bytes[..8].copy_from_slice(&self.to_le_bytes());
    }
}

impl Item for u32 {
    const SIZE: usize = 4;
    #[inline]
    fn read(bytes: &[u8]) -> u32 {
        u32::from_le_bytes(bytes[..4].try_into().expect("4 bytes"))
    }
    #[inline]
    fn write(self, bytes: &mut [u8]) {
        bytes[..4].copy_from_slice(&self.to_le_bytes());
    }
}

/// One account's lists, in one cache line (aligned, so that a prefetch fetches all of it).
#[derive(Default)]
#[repr(align(64))]
pub(crate) struct AccountLists {
    /// Handles of the transfers that touched the account, in creation order.
    pub(crate) transfers: List<u64>,
    /// For an account with `flags.history`: the block numbers of its balance rows, one per
    /// transfer in `transfers`.
    pub(crate) rows: List<u32>,
}

// An account's lists are one cache line, prefetched together ahead of an append.
const _: () = assert!(core::mem::size_of::<AccountLists>() == 64);

/// A list of items stored in blocks of a `BlockLog`, append-only but for undoing the newest.
pub(crate) struct List<T: Item> {
    len: u32,
    /// The block being filled (the last of `blocks`), kept here so that an append reads no
    /// more than this header to find where it writes.
    tail: BlockNumber,
    blocks: Vec<BlockNumber>,
    items: PhantomData<T>,
}

impl<T: Item> Default for List<T> {
    fn default() -> List<T> {
        List {
            len: 0,
            tail: 0,
            blocks: Vec::new(),
            items: PhantomData,
        }
    }
}

impl<T: Item> List<T> {
    /// Items per block.
    pub(crate) const PER_BLOCK: usize = BLOCK_BYTES / T::SIZE;

    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.len as usize
    }

    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends `item`, starting a block at the end of `log` when the last one is full.
    #[inline]
    pub(crate) fn push(&mut self, log: &mut BlockLog, item: T) {
        let slot = self.len() % Self::PER_BLOCK;
        if slot == 0 {
            self.tail = log.push(&[0; BLOCK_BYTES]);
            self.blocks.push(self.tail);
        }
        // Only the slot's own bytes: a checkpoint's view may be reading the slots before it.
        item.write(log.bytes_mut(self.tail, slot * T::SIZE, T::SIZE));
        self.len = self.len.checked_add(1).expect("a list within 2^32 items");
    }

    /// Removes and returns the newest item, returning its block to `log` when it empties
    /// (undo runs newest first, so that block is the log's newest).
    pub(crate) fn pop(&mut self, log: &mut BlockLog) -> Option<T> {
        let last = self.len().checked_sub(1)?;
        let item = self.get(log, last);
        self.len -= 1;
        if last % Self::PER_BLOCK == 0 {
            let block = self.blocks.pop().expect("a block per started run of items");
            assert_eq!(block, self.tail);
            log.pop(block);
            self.tail = self.blocks.last().copied().unwrap_or(0);
        }
        Some(item)
    }

    #[inline]
    pub(crate) fn get(&self, log: &BlockLog, position: usize) -> T {
        assert!(position < self.len());
        let block = log.get(self.blocks[position / Self::PER_BLOCK]);
        T::read(&block[(position % Self::PER_BLOCK) * T::SIZE..])
    }

    /// The first position whose item fails `predicate` (the items must be partitioned by it,
    /// as `slice::partition_point` requires).
    pub(crate) fn partition_point(
        &self,
        log: &BlockLog,
        mut predicate: impl FnMut(T) -> bool,
    ) -> usize {
        let (mut low, mut high) = (0, self.len());
        while low < high {
            let middle = low + (high - low) / 2;
            if predicate(self.get(log, middle)) {
                low = middle + 1;
            } else {
                high = middle;
            }
        }
        low
    }

    /// The items, oldest first.
    pub(crate) fn iter<'a>(&'a self, log: &'a BlockLog) -> impl Iterator<Item = T> + 'a {
        (0..self.len()).map(move |position| self.get(log, position))
    }

    /// Hints the CPU to fetch where the next `push` writes: the tail block, or nothing when
    /// the push starts a block (the log's end, written in order, is in cache).
    #[inline]
    pub(crate) fn prefetch_tail(&self, log: &BlockLog) {
        if !self.len().is_multiple_of(Self::PER_BLOCK) {
            log.prefetch(self.tail);
        }
    }

    /// The numbers of the blocks that hold the first `len` items.
    pub(crate) fn blocks_holding(&self, len: usize) -> &[BlockNumber] {
        assert!(len <= self.len());
        &self.blocks[..len.div_ceil(Self::PER_BLOCK)]
    }

    /// Hints the CPU to fetch the first block numbers.
    pub(crate) fn blocks_prefetch(&self) {
        crate::id_table::prefetch_address(self.blocks.as_ptr());
    }

    /// Heap bytes of the block numbers (the blocks are the log's).
    pub(crate) fn heap_bytes(&self) -> usize {
        self.blocks.capacity() * core::mem::size_of::<BlockNumber>()
    }

    /// Bytes of the log's blocks this list holds.
    pub(crate) fn block_bytes(&self) -> usize {
        self.blocks.len() * BLOCK_BYTES
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_sharing_a_log_read_back_what_they_were_given_through_undo() {
        let mut log = BlockLog::default();
        let mut lists: Vec<AccountLists> = (0..3).map(|_| AccountLists::default()).collect();
        let mut model: Vec<(Vec<u64>, Vec<u32>)> = vec![Default::default(); 3];
        let mut undo = Vec::new();
        for step in 0..1_000u64 {
            let account = (step * 7 % 3) as usize;
            lists[account].transfers.push(&mut log, step);
            model[account].0.push(step);
            if account != 1 {
                let row = log.push(&[step as u8; BLOCK_BYTES]);
                lists[account].rows.push(&mut log, row);
                model[account].1.push(row);
            }
            if step >= 900 {
                undo.push(account);
            }
        }
        // Undo the last hundred appends, newest first, as a failed linked chain does.
        for account in undo.into_iter().rev() {
            if account != 1 {
                let row = lists[account].rows.pop(&mut log).expect("a row");
                assert_eq!(Some(row), model[account].1.pop());
                log.pop(row);
            }
            assert_eq!(
                lists[account].transfers.pop(&mut log),
                model[account].0.pop()
            );
        }
        for (lists, (handles, rows)) in lists.iter().zip(&model) {
            assert_eq!(lists.transfers.iter(&log).collect::<Vec<_>>(), *handles);
            assert_eq!(lists.rows.iter(&log).collect::<Vec<_>>(), *rows);
            let point = lists.transfers.partition_point(&log, |handle| handle < 500);
            assert_eq!(point, handles.partition_point(|&handle| handle < 500));
        }
        // Every block went back: the log holds exactly the blocks still listed.
        let held: usize = lists
            .iter()
            .map(|lists| lists.transfers.block_bytes() + lists.rows.block_bytes())
            .sum::<usize>()
            + model
                .iter()
                .map(|(_, rows)| rows.len() * BLOCK_BYTES)
                .sum::<usize>();
        assert_eq!(held / BLOCK_BYTES, log.len());
    }
}
