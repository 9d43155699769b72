//! The core's operating errors, each carrying its evidence. `tally start` prints them as one
//! line; programming errors stay assertions.

use tally_journal::JournalError;

use crate::checkpoint::CheckpointError;
use crate::state::ApplyError;

/// Why the core thread stopped serving.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// The timer runtime for the queue wait could not be built.
    #[error("core timer: {0}")]
    Timer(std::io::Error),
    /// An append failed in a way that leaves the journal unusable.
    #[error("journal append failed: {source}")]
    Append {
        /// The journal's error.
        source: JournalError,
    },
    /// An fsync failed: nothing written since can be trusted.
    #[error("journal sync failed: {source}")]
    Sync {
        /// The journal's error.
        source: JournalError,
    },
    /// A record just appended did not apply: the state and the log disagree.
    #[error("applying record {op}, just appended, failed: {source}")]
    Apply {
        /// The record.
        op: u64,
        /// What was wrong.
        source: ApplyError,
    },
    /// A checkpoint could not be written.
    #[error("checkpoint at record {record} failed: {source}")]
    Checkpoint {
        /// The record it would have named.
        record: u64,
        /// The journal's error.
        source: JournalError,
    },
}

/// Why a data directory could not be formatted, opened or rebuilt.
#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    /// The segment size is below what one full request needs.
    #[error("segments must be at least {min_mib} MiB, not {size_bytes} bytes")]
    SegmentTooSmall {
        /// Smallest segment in MiB.
        min_mib: u64,
        /// What was asked.
        size_bytes: u64,
    },
    /// The journal refused (damage before the tail, a lock, a bad format marker, I/O).
    #[error("{directory}: {source}")]
    Journal {
        /// The data directory.
        directory: std::path::PathBuf,
        /// The journal's error.
        source: JournalError,
    },
    /// The chosen checkpoint does not decode.
    #[error("checkpoint at record {record}: {source}")]
    Checkpoint {
        /// The record it names.
        record: u64,
        /// What is wrong.
        source: CheckpointError,
    },
    /// A record of an unknown kind.
    #[error("record {op} has unknown kind {kind}")]
    RecordKind {
        /// The record.
        op: u64,
        /// The kind found.
        kind: u16,
    },
    /// A record did not apply.
    #[error("replaying record {op}: {source}")]
    Replay {
        /// The record.
        op: u64,
        /// What was wrong.
        source: ApplyError,
    },
    /// `inspect --digest`: the two rebuilds disagree.
    #[error("the digests from the checkpoint and from the first record differ: replay is not deterministic or a checkpoint is wrong")]
    DigestMismatch,
}
