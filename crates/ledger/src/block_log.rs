//! The ledger's per-account data that grows with every transfer, in 64-byte blocks kept in one
//! log in the order they were written: the balance rows of accounts with `flags.history` (a row
//! per block) and the blocks of each account's lists of transfer handles and row numbers
//! (`account_lists`).
//!
//! Each transfer appends to the data of two random accounts: a handle to each one's transfer list
//! and, for an account with `flags.history` (all of them under TigerBeetle's driver), a balance
//! row and its number. Kept in a growing vector per account, each append was the first store into a cache line at the end of a random
//! account's vector, on a page of its own, and those vectors grew by copying: the largest part of
//! a transfer's insert. Here a new row or list block goes to the end of the log, so the blocks
//! every account is filling were all written recently, next to each other: they stay in cache
//! and in the TLB. Blocks never move. A chunk is an anonymous mapping rather than a heap
//! allocation so that its pages are backed in one call, and once a log outgrows its first chunk
//! the next ones are mapped ahead on a thread of their own (`Spares`): backing fresh pages is
//! mostly the kernel zeroing them, which took 11% of the core thread's time under the driver when
//! done in line. The blocks written, and so the ledger's state, are the same whichever thread
//! mapped the chunk (both give zeros).

use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

use memmap2::{MmapMut, MmapOptions, MmapRaw};

/// Bytes per block: a cache line, and one balance row.
pub(crate) const BLOCK_BYTES: usize = 64;
/// Bytes per chunk (1 MiB: about one full batch's rows when both accounts keep history).
const CHUNK_BYTES: usize = 1 << 20;
const CHUNK_BLOCKS: usize = CHUNK_BYTES / BLOCK_BYTES;
/// How far ahead of a push its block is prefetched (`BlockLog::prefetch_for_write`): a few
/// transfers' worth of blocks, so that a fetch from memory has finished when its push comes.
const PREFETCH_AHEAD_BLOCKS: usize = 8;

/// The number of a block in the log. 32 bits bound the log at 2^32 blocks (256 GiB), far beyond
/// what memory holds, and halve what each account's list of block numbers stores.
pub(crate) type BlockNumber = u32;

/// A block's bytes.
pub(crate) type Block = [u8; BLOCK_BYTES];

/// Every history row and list block, append-only but for undoing the newest (a failed linked
/// chain's blocks are the last written, and undo runs newest first).
///
/// A checkpoint's tail is gathered on a thread of its own from the blocks below the log's length
/// at the checkpoint's moment (`BlockLogView`), while this log goes on taking blocks. What makes
/// that sound: blocks below that length never change but for the later slots of a list's last
/// block, which the view never reads; every store into the log goes through a raw pointer to
/// exactly the bytes stored (`push`, `write`), never through a reference that spans bytes the
/// view reads; and the view holds its own reference to every chunk it reads, so a chunk outlives
/// the log if the view needs it.
#[derive(Default)]
pub(crate) struct BlockLog {
    /// Full chunks, then the one being filled: anonymous mappings that never move.
    chunks: Vec<Chunk>,
    /// Blocks held, over all chunks.
    len: usize,
    spares: Spares,
}

/// One chunk of the log: its mapping, shared with the views of checkpoints under way (a raw
/// mapping: neither side ever holds a reference to all of it), and the address of its first
/// byte, kept here so that the log's reads and writes do not go through the `Arc`.
struct Chunk {
    base: *mut u8,
    mapping: Arc<MmapRaw>,
}

impl Chunk {
    fn new(mapping: MmapMut) -> Chunk {
        let mapping = MmapRaw::from(mapping);
        Chunk {
            base: mapping.as_mut_ptr(),
            mapping: Arc::new(mapping),
        }
    }
}

// SAFETY: a chunk's address points into the mapping it holds, which no other thread writes (the
// views only read, and only blocks the log no longer writes); moving the log to another thread
// moves the only writer with it.
unsafe impl Send for BlockLog {}
// SAFETY: through `&BlockLog` blocks are only read.
unsafe impl Sync for BlockLog {}

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

impl BlockLog {
    /// Appends a block and returns its number.
    #[inline]
    pub(crate) fn push(&mut self, block: &Block) -> BlockNumber {
        let number = BlockNumber::try_from(self.len).expect("block log within 2^32 blocks");
        if self.len == self.chunks.len() * CHUNK_BLOCKS {
            let chunk = Chunk::new(self.chunk_take());
            self.chunks.push(chunk);
        }
        self.len += 1;
        self.write(number, 0, block);
        self.prefetch_for_write(number as usize + PREFETCH_AHEAD_BLOCKS);
        number
    }

    /// Asks the CPU to bring block `ahead` into its cache for writing, if it lies in a chunk
    /// already mapped. A pushed block is a line nothing has touched since the kernel zeroed its
    /// page (on the thread that maps spares, often the other core), so each push stalled on
    /// fetching it: about 130 ns a transfer under `flags.history` (two rows and their numbers a
    /// transfer). Blocks are pushed in order, so fetching a few ahead overlaps those fetches
    /// with the work in between. A prefetch changes no byte and never faults.
    #[inline]
    fn prefetch_for_write(&self, ahead: usize) {
        let Some(chunk) = self.chunks.get(ahead / CHUNK_BLOCKS) else {
            return;
        };
        let address = chunk
            .base
            .wrapping_add((ahead % CHUNK_BLOCKS) * BLOCK_BYTES)
            .cast_const();
        #[cfg(target_arch = "x86_64")]
        // SAFETY: a prefetch is a hint: it neither reads nor writes a byte and never faults,
        // whatever the address (this one is inside the chunk's mapping).
        unsafe {
            core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_ET0 }>(
                address.cast::<i8>(),
            );
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = address;
    }

    /// Stores `bytes` into block `number` from byte `offset`.
    #[inline]
    pub(crate) fn write(&mut self, number: BlockNumber, offset: usize, bytes: &[u8]) {
        self.bytes_mut(number, offset, bytes.len())
            .copy_from_slice(bytes);
    }

    /// Bytes `offset..offset + len` of block `number`, to store into, and no other byte of it (a
    /// view may be reading the block's earlier bytes).
    #[inline]
    pub(crate) fn bytes_mut(
        &mut self,
        number: BlockNumber,
        offset: usize,
        len: usize,
    ) -> &mut [u8] {
        let number = number as usize;
        assert!(number < self.len && offset + len <= BLOCK_BYTES);
        let chunk = &self.chunks[number / CHUNK_BLOCKS];
        let start = (number % CHUNK_BLOCKS) * BLOCK_BYTES + offset;
        // SAFETY: `start + len` is within the chunk's mapping (asserted above), which the chunk
        // keeps alive; `&mut self` makes this the only writer, and no other reference to these
        // bytes is alive (a view reads only bytes of blocks the log no longer writes).
        unsafe { core::slice::from_raw_parts_mut(chunk.base.add(start), len) }
    }

    /// Removes the newest block, which must be `number` (undo runs newest first). The block's
    /// bytes stay until overwritten: no block number past `len` is ever read.
    pub(crate) fn pop(&mut self, number: BlockNumber) {
        assert_eq!(
            number as usize + 1,
            self.len,
            "undo removes the newest block"
        );
        self.len -= 1;
        if self.len == (self.chunks.len() - 1) * CHUNK_BLOCKS {
            self.chunks.pop();
        }
    }

    #[inline]
    pub(crate) fn get(&self, number: BlockNumber) -> &Block {
        let number = number as usize;
        assert!(number < self.len);
        let chunk = &self.chunks[number / CHUNK_BLOCKS];
        // SAFETY: a whole block within the chunk's mapping (blocks are aligned to 64 within it),
        // which lives as long as `self`; nothing writes it while `&self` is borrowed (the log's
        // only writer needs `&mut self`).
        unsafe {
            &*chunk
                .base
                .add((number % CHUNK_BLOCKS) * BLOCK_BYTES)
                .cast::<Block>()
        }
    }

    /// Blocks held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Hints the CPU to fetch block `number`, for a caller about to touch it.
    #[inline]
    pub(crate) fn prefetch(&self, number: BlockNumber) {
        let number = number as usize;
        if let Some(chunk) = self.chunks.get(number / CHUNK_BLOCKS) {
            let offset = (number % CHUNK_BLOCKS) * BLOCK_BYTES;
            crate::id_table::prefetch_address(chunk.base.wrapping_add(offset));
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
        self.chunks.len() * CHUNK_BYTES + self.chunks.capacity() * core::mem::size_of::<Chunk>()
    }

    /// A view of the blocks held now, for reading on another thread while this log goes on.
    pub(crate) fn view(&self) -> BlockLogView {
        let chunks = self.len.div_ceil(CHUNK_BLOCKS);
        BlockLogView {
            mappings: self.chunks[..chunks]
                .iter()
                .map(|chunk| Arc::clone(&chunk.mapping))
                .collect(),
            len: self.len,
        }
    }
}

/// The blocks a log held at one moment, readable on any thread for as long as the view lives,
/// whatever becomes of the log (`BlockLog` says why this is sound).
pub(crate) struct BlockLogView {
    /// The chunks below the moment's length, kept mapped for as long as the view lives.
    mappings: Vec<Arc<MmapRaw>>,
    /// Blocks readable.
    len: usize,
}

impl BlockLogView {
    /// Bytes `range` of block `number`, which the caller knows the log no longer writes: a
    /// whole history row, or the slots of a list block below the list's length at the view's
    /// moment.
    #[inline]
    pub(crate) fn bytes(&self, number: BlockNumber, range: core::ops::Range<usize>) -> &[u8] {
        let number = number as usize;
        assert!(number < self.len, "a block of the view's moment");
        assert!(range.start <= range.end && range.end <= BLOCK_BYTES);
        let start = (number % CHUNK_BLOCKS) * BLOCK_BYTES + range.start;
        // SAFETY: within a mapping the view keeps alive; these bytes are no longer written by
        // the log (the caller's promise above), so a shared reference to them is never aliased
        // by a store.
        unsafe {
            core::slice::from_raw_parts(
                self.mappings[number / CHUNK_BLOCKS].as_ptr().add(start),
                range.len(),
            )
        }
    }

    /// Hints the CPU to fetch block `number`.
    #[inline]
    pub(crate) fn prefetch(&self, number: BlockNumber) {
        let number = number as usize;
        if let Some(mapping) = self.mappings.get(number / CHUNK_BLOCKS) {
            let offset = (number % CHUNK_BLOCKS) * BLOCK_BYTES;
            crate::id_table::prefetch_address(mapping.as_ptr().wrapping_add(offset));
        }
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

    fn block(value: u32) -> Block {
        let mut block = [0; BLOCK_BYTES];
        block[..4].copy_from_slice(&value.to_le_bytes());
        block[BLOCK_BYTES - 4..].copy_from_slice(&value.to_le_bytes());
        block
    }

    #[test]
    fn blocks_keep_their_numbers_across_chunks_and_undo() {
        let mut log = BlockLog::default();
        let count = CHUNK_BLOCKS * 2 + 5;
        for value in 0..count {
            assert_eq!(log.push(&block(value as u32)) as usize, value);
        }
        let first_chunk = log.chunks[0].base;
        for value in (CHUNK_BLOCKS * 2..count).rev() {
            log.pop(value as BlockNumber);
        }
        // Undo back to a chunk boundary frees the emptied chunk; the blocks before never moved.
        assert_eq!(log.chunks.len(), 2);
        log.pop(CHUNK_BLOCKS as BlockNumber * 2 - 1);
        assert_eq!(log.push(&block(7)), CHUNK_BLOCKS as BlockNumber * 2 - 1);
        assert_eq!(log.chunks[0].base, first_chunk);
        assert_eq!(
            log.get(CHUNK_BLOCKS as BlockNumber),
            &block(CHUNK_BLOCKS as u32)
        );
        assert_eq!(log.get(CHUNK_BLOCKS as BlockNumber * 2 - 1), &block(7));
        log.write(3, 8, &[1]);
        assert_eq!(log.get(3)[8], 1);
        assert_eq!(log.get(3)[..8], block(3)[..8]);
    }

    #[test]
    fn a_view_reads_its_moment_on_another_thread_and_outlives_the_log() {
        let mut log = BlockLog::default();
        let count = CHUNK_BLOCKS + 3;
        for value in 0..count {
            log.push(&block(value as u32));
        }
        let view = log.view();
        // The log goes on: undo back into the first chunk, then new blocks past the view's end.
        for value in (CHUNK_BLOCKS..count).rev() {
            log.pop(value as BlockNumber);
        }
        for value in 0..CHUNK_BLOCKS {
            log.push(&block(u32::MAX - value as u32));
        }
        let reader = std::thread::spawn(move || {
            (0..CHUNK_BLOCKS as BlockNumber)
                .map(|number| view.bytes(number, 0..BLOCK_BYTES).to_vec())
                .collect::<Vec<_>>()
        });
        drop(log);
        let read = reader.join().expect("the reader");
        for (value, bytes) in read.iter().enumerate() {
            assert_eq!(bytes[..], block(value as u32)[..]);
        }
    }
}
