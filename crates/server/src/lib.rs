//! The `tally` server: the deterministic state applied from the journal, the core thread that
//! batches, logs, syncs and replies, and the TigerBeetle protocol listener.

pub mod core;
pub mod entry;
pub mod net;
pub mod recovery;
pub mod run;
pub mod state;
pub mod storage;

/// Offset of the `operation` byte in a request header (wire spec §3.1).
pub const OPERATION_OFFSET: usize = 196;
