//! Tally's core: the deterministic state applied from the journal, the core thread that
//! batches, logs, syncs and replies, and recovery. Fronts (the native listener, the GraphQL
//! API) hand it `Submission`s through a bounded queue and never touch the state themselves.

mod checkpoint;
mod command;
mod core_thread;
mod entry;
mod error;
mod progress;
mod recovery;
mod routes;
mod state;
mod storage;
mod transfers;
mod view;

pub use crate::checkpoint::{
    CheckpointEncoding, CheckpointError, CHECKPOINT_FORMAT, CHECKPOINT_FORMAT_MIN,
};
pub use crate::command::{
    admin_decode, admin_encode, BatchOperation, Command, Request, StateOperation,
};
pub use crate::core_thread::{
    hex, realtime_ns, Core, CoreOptions, Deferred, Read, Submission, ADMIN_COMMAND_SIZE_MAX,
    BATCH_BYTES_MAX, BATCH_ENTRIES_MAX, CHECKPOINT_INTERVAL_BYTES, CHECKPOINT_INTERVAL_ENTRIES,
    CHECKPOINT_INTERVAL_WORK, CHECKPOINT_STEP_BYTES,
};
pub use crate::entry::{EntryKind, RECORD_KIND_BATCH};
pub use crate::error::{CoreError, RecoveryError};
pub use crate::progress::PROGRESS_INTERVAL;
pub use crate::recovery::{
    digest, format, inspect, is_formatted, journal_options, open, OpenOptions, Recovered,
    SEGMENT_SIZE_BYTES_MIN,
};
pub use crate::routes::{Connection, Outbound};
pub use crate::state::{ApplyError, ApplyMode, Reply, State};
pub use crate::storage::{JournalBytes, LogBytes};
pub use crate::view::StateView;
