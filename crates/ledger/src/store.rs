//! Where transfer bodies live.
//!
//! Transfers are immutable, so the core does not keep them in its heap. Every `create_transfers`
//! event gets a *handle*: a dense sequence number over all such events ever submitted (failed
//! ones included). The caller writes the batch to its store *before* the ledger applies it (that
//! is what a write-ahead log does anyway), so the ledger can read any earlier event back, and it
//! keeps only what its decisions need: the id index, pending state, per-account history.
//!
//! The store returns the event exactly as submitted, plus the timestamp the ledger assigned it;
//! the ledger derives the stored transfer from that (`Ledger::transfer_at`), adding what only it
//! knows (the balancing amount actually moved, the fields a post or void inherits).

use std::ops::Range;

use crate::types::{Transfer, TransferFlags};

/// An event as submitted and the timestamp it was stamped with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoredEvent {
    /// The `create_transfers` event exactly as the client sent it (its `timestamp` is 0
    /// unless imported; a balancing or post/void event keeps its requested fields).
    pub event: Transfer,
    /// The timestamp the ledger assigned the event, in nanoseconds (`event_timestamp`).
    pub timestamp: u64,
}

/// Every `create_transfers` event ever submitted, by handle: the ledger's only source of
/// transfer bodies and ids. Implemented over the journal by the server and in memory
/// (`MemoryStore`) for tests. Reads must be pure: the same handle always returns the same event,
/// or replay would diverge.
pub trait TransferStore {
    /// Handles `0..event_count()` are readable.
    fn event_count(&self) -> u64;
    /// The event with `handle` (< `event_count()`).
    fn event(&self, handle: u64) -> StoredEvent;
    /// Only the id of the event with `handle` (the id index reads this on every candidate).
    fn event_id(&self, handle: u64) -> u128 {
        self.event(handle).event.id
    }
    /// Calls `visit(handle, id)` for every handle of `handles` (each `< event_count()`), in
    /// order: what an index rebuild reads. A store of batches reads each batch's ids in one
    /// sweep instead of finding the batch of every handle.
    fn event_ids_for_each(&self, handles: Range<u64>, mut visit: impl FnMut(u64, u128)) {
        for handle in handles {
            visit(handle, self.event_id(handle));
        }
    }
    /// A hint that the event with `handle` will be read soon (a handle not yet stored, or
    /// any other, must be harmless).
    fn prefetch(&self, handle: u64) {
        let _ = handle;
    }
}

/// The timestamp of event `index` of a batch of `count` events stamped `batch_timestamp` (the
/// batch's highest, §2.1): imported events keep their own.
pub fn event_timestamp(event: &Transfer, batch_timestamp: u64, count: usize, index: usize) -> u64 {
    if event.flags.contains(TransferFlags::IMPORTED) {
        event.timestamp
    } else {
        batch_timestamp - count as u64 + index as u64 + 1
    }
}

/// A store in the heap: for tests, benchmarks and the reference model.
#[derive(Default)]
pub struct MemoryStore {
    events: Vec<StoredEvent>,
}

impl MemoryStore {
    /// An empty store: the first batch appended starts at handle 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a batch and returns the handle of its first event.
    pub fn append_batch(&mut self, batch_timestamp: u64, events: &[Transfer]) -> u64 {
        let first = self.events.len() as u64;
        self.events.reserve(events.len());
        for (index, event) in events.iter().enumerate() {
            let timestamp = event_timestamp(event, batch_timestamp, events.len(), index);
            self.events.push(StoredEvent {
                event: *event,
                timestamp,
            });
        }
        first
    }

    /// Bytes of heap held by the events (capacity, not length), for memory budgets.
    pub fn heap_bytes(&self) -> usize {
        self.events.capacity() * core::mem::size_of::<StoredEvent>()
    }
}

impl TransferStore for MemoryStore {
    fn event_count(&self) -> u64 {
        self.events.len() as u64
    }

    fn event(&self, handle: u64) -> StoredEvent {
        self.events[handle as usize]
    }

    fn event_id(&self, handle: u64) -> u128 {
        self.events[handle as usize].event.id
    }

    fn prefetch(&self, handle: u64) {
        if let Some(event) = self.events.get(handle as usize) {
            crate::id_table::prefetch_read(event);
        }
    }
}
