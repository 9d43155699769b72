//! Balance rows of accounts with `flags.history`, kept in one log in the order they were written.
//!
//! Each transfer that touches a history account writes that account's balances after it. Kept
//! per account (a growing vector each), every row was the first store into a new cache line at
//! the end of a random account's vector, and those vectors grew by copying: under TigerBeetle's
//! benchmark driver, whose accounts all keep history, that was the largest part of a transfer's
//! insert. Here the rows go one after another into fixed-size chunks that never move, and each
//! account keeps only the row numbers of its rows (`Ledger::account_history`), 4 bytes a push.
//! A chunk is an anonymous mapping rather than a heap allocation so that its pages are backed
//! in one call, and once a log outgrows its first chunk the next ones are mapped ahead on a
//! thread of their own (`Spares`): backing fresh pages is mostly the kernel zeroing them, which
//! took 11% of the core thread's time under the driver when done in line. The rows written, and
//! so the ledger's state, are the same whichever thread mapped the chunk (both give zeros).

use std::sync::mpsc;
use std::thread::JoinHandle;

use memmap2::{MmapMut, MmapOptions};

use crate::ledger::BalanceSnapshot;
use crate::types::Record;

/// Bytes per chunk (1 MiB: about one full batch's rows when both accounts keep history).
const CHUNK_BYTES: usize = 1 << 20;
const CHUNK_ROWS: usize = CHUNK_BYTES / BalanceSnapshot::SIZE;

/// The number of a row in the log. 32 bits bound the log at 2^32 rows (256 GiB), far beyond
/// what memory holds, and halve what each account's list of row numbers stores.
pub(crate) type HistoryRow = u32;

/// The rows of every history account, append-only but for undoing the newest (a failed linked
/// chain's rows are the last written).
#[derive(Default)]
pub(crate) struct HistoryLog {
    /// Full chunks, then the one being filled: anonymous mappings that never move.
    chunks: Vec<MmapMut>,
    /// Rows held, over all chunks.
    len: usize,
    spares: Spares,
}

/// Chunks mapped ahead, for a log past its first chunk (a ledger that never gets there, as in
/// most tests, starts no thread).
#[derive(Default)]
enum Spares {
    #[default]
    NotStarted,
    /// A thread maps chunks and hands them over; it holds at most `SPARES_MAX` ready, and ends
    /// when the receiver is dropped with the log.
    Running {
        receiver: Option<mpsc::Receiver<MmapMut>>,
        thread: Option<JoinHandle<()>>,
    },
    /// The thread could not be started: chunks are mapped in line.
    Unavailable,
}

/// Chunks ready ahead: one in the channel and one in the thread's hand, 2 MiB in all.
const SPARES_MAX: usize = 1;

impl Spares {
    fn start() -> Spares {
        let (sender, receiver) = mpsc::sync_channel(SPARES_MAX);
        let thread = std::thread::Builder::new()
            .name("tally-history".into())
            .spawn(move || {
                // Ends when the log is dropped (the send fails) or memory runs out (the log
                // then maps in line and meets the same error there).
                while let Ok(chunk) = chunk_map() {
                    if sender.send(chunk).is_err() {
                        break;
                    }
                }
            });
        match thread {
            Ok(thread) => Spares::Running {
                receiver: Some(receiver),
                thread: Some(thread),
            },
            Err(_) => Spares::Unavailable,
        }
    }
}

impl Drop for Spares {
    fn drop(&mut self) {
        if let Spares::Running { receiver, thread } = self {
            // Dropping the receiver fails the thread's next send, which ends it; then wait for
            // it, so that no thread outlives the log.
            drop(receiver.take());
            if let Some(thread) = thread.take() {
                let _ = thread.join();
            }
        }
    }
}

impl HistoryLog {
    /// Appends a row and returns its number.
    #[inline]
    pub(crate) fn push(&mut self, snapshot: BalanceSnapshot) -> HistoryRow {
        let row = HistoryRow::try_from(self.len).expect("history log within 2^32 rows");
        if self.len == self.chunks.len() * CHUNK_ROWS {
            let chunk = self.chunk_take();
            self.chunks.push(chunk);
        }
        let offset = (self.len % CHUNK_ROWS) * BalanceSnapshot::SIZE;
        let chunk = self.chunks.last_mut().expect("a chunk with room");
        chunk[offset..offset + BalanceSnapshot::SIZE].copy_from_slice(snapshot.as_bytes());
        self.len += 1;
        row
    }

    /// Removes the newest row, which must be `row` (undo runs newest first). The row's bytes
    /// stay until overwritten: no row number past `len` is ever read.
    pub(crate) fn pop(&mut self, row: HistoryRow) {
        assert_eq!(row as usize + 1, self.len, "undo removes the newest row");
        self.len -= 1;
        if self.len == (self.chunks.len() - 1) * CHUNK_ROWS {
            self.chunks.pop();
        }
    }

    #[inline]
    pub(crate) fn get(&self, row: HistoryRow) -> BalanceSnapshot {
        let row = row as usize;
        assert!(row < self.len);
        let offset = (row % CHUNK_ROWS) * BalanceSnapshot::SIZE;
        BalanceSnapshot::read_from(&self.chunks[row / CHUNK_ROWS][offset..])
    }

    /// Hints the CPU to fetch row `row`, for a caller about to read many rows out of order.
    #[inline]
    pub(crate) fn prefetch(&self, row: HistoryRow) {
        let row = row as usize;
        if let Some(chunk) = self.chunks.get(row / CHUNK_ROWS) {
            let offset = (row % CHUNK_ROWS) * BalanceSnapshot::SIZE;
            crate::id_table::prefetch_address(chunk.as_ptr().wrapping_add(offset));
        }
    }

    /// The next chunk: a spare if one is ready, else mapped here.
    fn chunk_take(&mut self) -> MmapMut {
        if !self.chunks.is_empty() && matches!(self.spares, Spares::NotStarted) {
            self.spares = Spares::start();
        }
        if let Spares::Running {
            receiver: Some(receiver),
            ..
        } = &self.spares
        {
            if let Ok(chunk) = receiver.try_recv() {
                return chunk;
            }
        }
        // An anonymous mapping fails only when the process is out of address space or memory,
        // as a `Vec` allocation would; the ledger treats both alike.
        chunk_map().expect("memory for a history chunk")
    }

    /// Heap bytes held: whole chunks, as mapped.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.chunks.len() * CHUNK_BYTES + self.chunks.capacity() * core::mem::size_of::<MmapMut>()
    }
}

/// A zeroed chunk whose pages are all backed at once: one system call instead of a page fault
/// on the first store into each 4 KiB page (those faults were 9% of the core's time under the
/// driver). Transparent huge pages were tried instead and were slower: zeroing and compacting a
/// 2 MiB page on the fault raised the batch p99 from 6 to 13 ms in `tally-bench core`.
fn chunk_map() -> std::io::Result<MmapMut> {
    MmapOptions::new().len(CHUNK_BYTES).populate().map_anon()
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
        let first_chunk = log.chunks[0].as_ptr();
        for value in (CHUNK_ROWS * 2..count).rev() {
            log.pop(value as HistoryRow);
        }
        // Undo back to a chunk boundary frees the emptied chunk; the rows before never moved.
        assert_eq!(log.chunks.len(), 2);
        log.pop(CHUNK_ROWS as HistoryRow * 2 - 1);
        assert_eq!(log.push(snapshot(7)), CHUNK_ROWS as HistoryRow * 2 - 1);
        assert_eq!(log.chunks[0].as_ptr(), first_chunk);
        assert_eq!(
            log.get(CHUNK_ROWS as HistoryRow),
            snapshot(CHUNK_ROWS as u128)
        );
        assert_eq!(log.get(CHUNK_ROWS as HistoryRow * 2 - 1), snapshot(7));
    }
}
