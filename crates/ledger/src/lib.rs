//! Tally's ledger core: TigerBeetle's accounts and transfers as a pure, single-threaded,
//! deterministic state machine. No I/O, no clock, no randomness: the caller stamps each batch and
//! owns the store of transfer bodies (`store`). See `docs/ledger.md`.

mod account_lists;
mod block_log;
mod checkpoint;
mod head_copy;
mod id_runs;
mod id_table;
mod ledger;
mod query;
mod store;
mod types;

pub use crate::checkpoint::{CheckpointError, LedgerCheckpoint, LedgerDecoded};
pub use crate::id_table::prefetch_address;
pub use crate::ledger::{Ledger, BATCH_EVENTS_MAX, PULSE_EVENTS_MAX};
pub use crate::query::HeapBytes;
pub use crate::store::{event_timestamp, MemoryStore, StoredEvent, TransferStore};
pub use crate::types::*;
