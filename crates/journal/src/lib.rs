//! Tally's journal: the write-ahead log, checkpoints, recovery and inspection of one data
//! directory. Storage only: record bodies and checkpoint states are opaque bytes.
//!
//! ```text
//! DIR/format                      128-byte marker: magic, version, cluster, segment size
//! DIR/journal/segment-NNNNNNNN    preallocated, mapped; records of 128-byte header + body
//! DIR/checkpoint-a, checkpoint-b  two slots written alternately: header + state
//! ```
//!
//! Records are hash-chained (each header carries its predecessor's checksum) and numbered 1, 2, 3…
//! `append` writes a record into its segment (`pwrite`; reads come from the mapping);
//! `sync_begin`/`sync_wait` make everything appended so far durable (group commit through
//! io_uring); `open` verifies the whole log, cuts a torn tail and refuses damage before it.
//! `docs/journal.md` describes the format byte by byte and the rules.
//!
//! Everything the journal does to its segments goes through the `Storage` seam: `FileStorage`
//! (mapped files, io_uring fsyncs) in production, `FaultyStorage` (an in-process disk that keeps the
//! durable image apart from the written one) in power-loss tests.
//!
//! A typical core loop:
//!
//! ```no_run
//! # use tally_journal::{Journal, Options};
//! # fn main() -> Result<(), tally_journal::JournalError> {
//! let directory = std::path::Path::new("/var/lib/tally");
//! let (mut journal, recovery) = Journal::open(directory, Options::default())?;
//! let op_first = recovery.checkpoint.as_ref().map_or(1, |checkpoint| checkpoint.op + 1);
//! for record in journal.records_from(op_first) {
//!     // Replay record.kind / record.body into the state machine.
//! #   let _ = record;
//! }
//! let position = journal.append(1, 1_000, b"batch")?;
//! let ticket = journal.sync_begin()?;
//! // ...apply the next batch while the disk flushes...
//! journal.sync_wait(ticket)?;
//! // Only now may the replies for `position.op` leave.
//! # let _ = position;
//! # Ok(())
//! # }
//! ```

mod checkpoint;
mod directory;
mod error;
mod faulty;
mod inspect;
mod journal;
mod layout;
mod scan;
mod segment;
mod storage;
mod sync;

pub use checkpoint::{Checkpoint, CheckpointProblem, CheckpointRejection};
pub use error::{Damage, Evidence, JournalError};
pub use faulty::{Crash, CrashReport, FaultyDisk, FaultySegment, FaultyStorage, SECTOR_SIZE_BYTES};
pub use inspect::{
    inspect, inspect_with_progress, CheckpointStatus, Inspection, KindSummary, TailSummary,
};
pub use journal::{
    encoder_idle_cpu, writer_yield_cpu, CheckpointLanded, Cut, Journal, Options, Recovery,
    SEGMENT_SIZE_BYTES_MAX, SEGMENT_SIZE_BYTES_MIN,
};
pub use layout::{FORMAT_VERSION, FORMAT_VERSION_MIN, HEADER_SIZE_BYTES, RECORD_ALIGNMENT_BYTES};
pub use scan::{RecordPosition, RecordView, WalkProgress};
pub use segment::{DataRuns, FileSegment, SEGMENT_COUNT_MAX};
pub use storage::{FileStorage, Storage, StorageSegment};
pub use sync::{SyncMode, SyncTicket, SYNCS_IN_FLIGHT_MAX, SYNC_SEGMENTS_MAX};
