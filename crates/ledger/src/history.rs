//! Balance rows of accounts with `flags.history`, kept in one log in the order they were written.
//!
//! Each transfer that touches a history account writes that account's balances after it. Kept
//! per account (a growing vector each), every row was the first store into a new cache line at
//! the end of a random account's vector, and those vectors grew by copying: under TigerBeetle's
//! benchmark driver, whose accounts all keep history, that was the largest part of a transfer's
//! insert. Here the rows go one after another into fixed-size chunks that never move, and each
//! account keeps only the row numbers of its rows (`Ledger::account_history`), 4 bytes a push.

use crate::ledger::BalanceSnapshot;
use crate::types::Record;

/// Rows per chunk: 1 MiB of rows, so that a chunk's allocation is mapped lazily and rows are
/// never copied once written.
const CHUNK_ROWS: usize = 1 << 14;

/// The number of a row in the log. 32 bits bound the log at 2^32 rows (256 GiB), far beyond
/// what memory holds, and halve what each account's list of row numbers stores.
pub(crate) type HistoryRow = u32;

/// The rows of every history account, append-only but for undoing the newest (a failed linked
/// chain's rows are the last written).
#[derive(Default)]
pub(crate) struct HistoryLog {
    /// Full chunks, then the one being filled; each has capacity `CHUNK_ROWS` from its
    /// allocation on and never reallocates (pushes stop at that capacity).
    chunks: Vec<Vec<BalanceSnapshot>>,
    /// Rows held, over all chunks.
    len: usize,
}

impl HistoryLog {
    /// Appends a row and returns its number.
    #[inline]
    pub(crate) fn push(&mut self, snapshot: BalanceSnapshot) -> HistoryRow {
        let row = HistoryRow::try_from(self.len).expect("history log within 2^32 rows");
        if self.len.is_multiple_of(CHUNK_ROWS) {
            self.chunks.push(Vec::with_capacity(CHUNK_ROWS));
        }
        let chunk = self.chunks.last_mut().expect("a chunk with room");
        // Invariant: a chunk never grows past its allocation, so no row ever moves.
        debug_assert!(chunk.len() < chunk.capacity());
        chunk.push(snapshot);
        self.len += 1;
        row
    }

    /// Removes the newest row, which must be `row` (undo runs newest first).
    pub(crate) fn pop(&mut self, row: HistoryRow) {
        assert_eq!(row as usize + 1, self.len, "undo removes the newest row");
        let chunk = self.chunks.last_mut().expect("a row to remove");
        chunk.pop();
        if chunk.is_empty() {
            self.chunks.pop();
        }
        self.len -= 1;
    }

    #[inline]
    pub(crate) fn get(&self, row: HistoryRow) -> &BalanceSnapshot {
        let row = row as usize;
        &self.chunks[row / CHUNK_ROWS][row % CHUNK_ROWS]
    }

    /// Heap bytes held: whole chunks, as allocated.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.chunks.len() * CHUNK_ROWS * BalanceSnapshot::SIZE
            + self.chunks.capacity() * core::mem::size_of::<Vec<BalanceSnapshot>>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(value: u128) -> BalanceSnapshot {
        BalanceSnapshot {
            debits_pending: value,
            debits_posted: value + 1,
            credits_pending: value + 2,
            credits_posted: value + 3,
        }
    }

    #[test]
    fn rows_keep_their_numbers_across_chunks_and_undo() {
        let mut log = HistoryLog::default();
        let count = CHUNK_ROWS * 2 + 5;
        for value in 0..count {
            assert_eq!(log.push(snapshot(value as u128)) as usize, value);
        }
        let first_chunk = log.get(0) as *const BalanceSnapshot;
        for value in (CHUNK_ROWS * 2..count).rev() {
            log.pop(value as HistoryRow);
        }
        // Undo back to a chunk boundary frees the emptied chunk; the rows before never moved.
        assert_eq!(log.chunks.len(), 2);
        log.pop(CHUNK_ROWS as HistoryRow * 2 - 1);
        assert_eq!(log.push(snapshot(7)), CHUNK_ROWS as HistoryRow * 2 - 1);
        assert_eq!(log.get(0) as *const BalanceSnapshot, first_chunk);
        assert_eq!(
            *log.get(CHUNK_ROWS as HistoryRow),
            snapshot(CHUNK_ROWS as u128)
        );
        assert_eq!(*log.get(CHUNK_ROWS as HistoryRow * 2 - 1), snapshot(7));
    }
}
