use std::fmt;
use std::io;
use std::path::PathBuf;

/// Everything that can go wrong. Operating errors (disk full, damaged files, a second process) are
/// values; programming errors (a kind of 0, a position that names no record) are assertions.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// A system call on a file or directory of the data directory failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory the call was about.
        path: PathBuf,
        /// What the kernel said.
        source: io::Error,
    },
    /// Another process holds the data directory's lock: a journal open for writing excludes
    /// everything else, an `inspect` excludes writers.
    #[error("{directory}: locked by another process")]
    Locked {
        /// The data directory.
        directory: PathBuf,
    },
    /// `format` found a format marker or journal files already there; it never overwrites them.
    #[error("{directory}: already formatted, or holds journal files from an earlier format")]
    AlreadyFormatted {
        /// The data directory.
        directory: PathBuf,
    },
    /// `open` or `inspect` found no format marker: the directory was never formatted (or is not
    /// a data directory).
    #[error("{directory}: not a formatted journal (no format marker)")]
    NotFormatted {
        /// The data directory.
        directory: PathBuf,
    },
    /// The format marker is damaged or foreign (checksum, magic, sizes).
    #[error("{path}: invalid format marker: {reason}")]
    FormatInvalid {
        /// The marker file.
        path: PathBuf,
        /// What failed to verify.
        reason: &'static str,
    },
    /// The format marker is intact but names a format version this binary does not read.
    #[error(
        "{path}: format version {version}, this binary reads {}..={}",
        crate::layout::FORMAT_VERSION_MIN,
        crate::layout::FORMAT_VERSION
    )]
    FormatVersion {
        /// The marker file.
        path: PathBuf,
        /// The version the marker names.
        version: u32,
    },
    /// `Options` that cannot work: a segment size out of bounds or not a multiple of 4096, or a
    /// largest body that does not fit in a segment.
    #[error("invalid options: {reason}")]
    OptionsInvalid {
        /// Which rule the options break.
        reason: &'static str,
    },
    /// The segment files do not match the format marker: a missing segment (segment 0, or one
    /// before a later one), a size other than the segment size, or a file that is not a segment.
    #[error("{path}: {reason}")]
    SegmentInvalid {
        /// The segment file (or the segments directory).
        path: PathBuf,
        /// What does not match.
        reason: String,
    },
    /// Recovery refused to open the log and wrote nothing: the damage is not a torn tail.
    #[error(
        "corrupt journal at op {op} (segment {segment}, offset {offset}): {damage}; {evidence}"
    )]
    Corrupt {
        /// The op recovery expected at the damage: the first op the log cannot vouch for.
        op: u64,
        /// Where the damaged record is.
        segment: u32,
        /// Where the damaged record is, in bytes from its segment's start.
        offset: u64,
        /// What is wrong with it.
        damage: Damage,
        /// Why recovery may not cut it.
        evidence: Evidence,
    },
    /// `append` was given a body over `Options::body_size_bytes_max`; nothing was written.
    #[error("body of {body_size_bytes} bytes exceeds the limit of {body_size_bytes_max}")]
    BodyTooLarge {
        /// The body's size.
        body_size_bytes: u64,
        /// `Options::body_size_bytes_max`.
        body_size_bytes_max: u32,
    },
    /// `write_checkpoint` was given a state over `Options::state_size_bytes_max`; nothing was
    /// written.
    #[error(
        "checkpoint state of {state_size_bytes} bytes exceeds the limit of {state_size_bytes_max}"
    )]
    StateTooLarge {
        /// The state's size.
        state_size_bytes: u64,
        /// `Options::state_size_bytes_max`.
        state_size_bytes_max: u64,
    },
    /// The append needs a segment beyond `SEGMENT_COUNT_MAX`; the log is unchanged and every
    /// later append fails the same way.
    #[error("log full: segment {segment} would pass the limit of {segment_count_max} segments")]
    LogFull {
        /// The segment the append needed.
        segment: u32,
        /// `SEGMENT_COUNT_MAX`.
        segment_count_max: u32,
    },
    /// The append that needed this segment failed and left the log unchanged.
    #[error("cannot allocate segment {segment}: {source}")]
    SegmentAllocate {
        /// The segment that could not be allocated.
        segment: u32,
        /// What the kernel said (ENOSPC when the disk is full).
        source: io::Error,
    },
    /// After a failed fsync the kernel may have dropped the dirty pages ("fsyncgate"), so nothing
    /// written since can be trusted. The journal refuses all further work: restart and recover.
    #[error("fsync failed, the journal is unusable until it is reopened: {source}")]
    SyncFailed {
        /// What the fsync returned.
        source: io::Error,
    },
    /// Any call after a `SyncFailed`: the journal stays unusable until it is reopened.
    #[error("an earlier fsync failed; the journal is unusable until it is reopened")]
    Failed,
}

/// What is wrong with the record where recovery expected the next op.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Damage {
    /// Only zeros where a record should start, yet nonzero bytes follow.
    HeaderZero,
    /// The header's checksum does not match its bytes: torn, or changed after it was written.
    HeaderChecksum,
    /// The header's checksum matches but a field is impossible (nonzero reserved bytes, op 0,
    /// kind 0, `op_synced` not below `op`): sealed by no writer of this journal.
    HeaderInvalid {
        /// Which field.
        reason: &'static str,
    },
    /// A valid header, but of another op than the one expected here.
    OpMismatch {
        /// The op the header carries.
        op_found: u64,
    },
    /// A valid header of the expected op whose parent is not the previous record's checksum: the
    /// chain is broken.
    ParentMismatch,
    /// The header verifies but claims a body that would cross the segment's end.
    BodySizeInvalid {
        /// The body size the header claims, in bytes.
        body_size: u32,
    },
    /// The header verifies but the body does not match its checksum.
    BodyChecksum,
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Damage::HeaderZero => write!(f, "header is all zeros but data follows"),
            Damage::HeaderChecksum => write!(f, "header checksum mismatch"),
            Damage::HeaderInvalid { reason } => write!(f, "invalid header: {reason}"),
            Damage::OpMismatch { op_found } => write!(f, "header carries op {op_found}"),
            Damage::ParentMismatch => write!(f, "parent does not match the previous checksum"),
            Damage::BodySizeInvalid { body_size } => {
                write!(f, "body size {body_size} crosses the segment end")
            }
            Damage::BodyChecksum => write!(f, "body checksum mismatch"),
        }
    }
}

/// What recovery found beyond the damage (and in the checkpoints), and what it proves about
/// whether the damaged record had been acknowledged. `docs/journal.md` has the rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Evidence {
    /// A later record was appended after a sync covering the damaged op had completed: the
    /// damaged record was durable and may have been acknowledged. Refused, never cut.
    Synced {
        /// The later record.
        op: u64,
        /// Where the later record is.
        segment: u32,
        /// Where the later record is.
        offset: u64,
        /// The later record's `op_synced`, at or above the damaged op.
        op_synced: u64,
    },
    /// A checkpoint at or beyond the damaged op exists, and checkpoints are written only after the
    /// log through their op was synced: the damaged record was durable. Refused, never cut.
    Checkpoint {
        /// The checkpoint's op.
        op: u64,
        /// The checkpoint's file (`checkpoint-a` or `checkpoint-b`).
        file: &'static str,
    },
    /// The later record carries an op at or below the damaged one: stale or misdirected data, which
    /// appends never produce. Refused, never cut.
    OutOfOrder {
        /// The later record's op.
        op: u64,
        /// Where the later record is.
        segment: u32,
        /// Where the later record is.
        offset: u64,
    },
    /// A later record exists, none proves the damaged op was synced (every later `op_synced` is
    /// below it), no checkpoint reaches it, and the damage has the shape a power loss leaves
    /// (zeros where the record was being written). Exactly what a power loss with syncs in flight
    /// produces: the disk wrote a later record back and not this one. The damaged record was never
    /// acknowledged as far as the log can prove; recovery cuts it on its own.
    Unacknowledged {
        /// The first later record.
        op: u64,
        /// Where the first later record is.
        segment: u32,
        /// Where the first later record is.
        offset: u64,
        /// The highest `op_synced` of any later record: the newest proof, below the damaged op.
        op_synced: u64,
    },
    /// A later record exists and nothing proves the damaged op was synced, but the damage is not
    /// what a power loss leaves (bytes no write put there: a flipped bit, a foreign header). The
    /// log cannot tell whether the record was acknowledged. Refused unless the operator starts
    /// with `tally start --cut-unproven-tail` (`Options::cut_unproven_tail`).
    Unproven {
        /// The first later record.
        op: u64,
        /// Where the first later record is.
        segment: u32,
        /// Where the first later record is.
        offset: u64,
    },
}

impl Evidence {
    /// Whether the operator's `cut_unproven_tail` may cut this damage (only `Unproven`).
    pub fn is_unproven(&self) -> bool {
        match self {
            Evidence::Synced { .. } => false,
            Evidence::Checkpoint { .. } => false,
            Evidence::OutOfOrder { .. } => false,
            Evidence::Unacknowledged { .. } => false,
            Evidence::Unproven { .. } => true,
        }
    }

    /// Whether recovery cuts this damage on its own (only `Unacknowledged`).
    pub fn is_unacknowledged(&self) -> bool {
        match self {
            Evidence::Synced { .. } => false,
            Evidence::Checkpoint { .. } => false,
            Evidence::OutOfOrder { .. } => false,
            Evidence::Unacknowledged { .. } => true,
            Evidence::Unproven { .. } => false,
        }
    }
}

/// What the operator can do about proven damage: the journal keeps one copy of everything.
const PROVEN_ADVICE: &str = "the journal never cuts proven damage (not even with `tally start \
     --cut-unproven-tail`): restore the data directory from a backup or a replica";

impl fmt::Display for Evidence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Evidence::Synced {
                op,
                segment,
                offset,
                op_synced,
            } => write!(
                f,
                "proof: op {op} at segment {segment}, offset {offset} was appended after op \
                 {op_synced} was synced, so the damaged record was durable and may have been \
                 acknowledged; {PROVEN_ADVICE}"
            ),
            Evidence::Checkpoint { op, file } => write!(
                f,
                "proof: {file} holds a checkpoint at op {op}, written only after the log through \
                 op {op} was synced, so the damaged record was durable and may have been \
                 acknowledged; {PROVEN_ADVICE}"
            ),
            Evidence::OutOfOrder {
                op,
                segment,
                offset,
            } => write!(
                f,
                "a valid record with the earlier op {op} follows at segment {segment}, offset \
                 {offset}: stale or misdirected data, which neither appends nor a power loss \
                 produce; {PROVEN_ADVICE}"
            ),
            Evidence::Unacknowledged {
                op,
                segment,
                offset,
                op_synced,
            } => write!(
                f,
                "a valid record (op {op}) follows at segment {segment}, offset {offset}, but no \
                 record or checkpoint proves the damaged op was synced (the newest proof reaches \
                 op {op_synced}), and the damage is what a power loss leaves: the disk wrote a \
                 later record back and not this one, which was never acknowledged"
            ),
            Evidence::Unproven {
                op,
                segment,
                offset,
            } => write!(
                f,
                "a valid record (op {op}) follows at segment {segment}, offset {offset}; nothing \
                 proves the damaged record was synced, but the damage is not what a power loss \
                 leaves (bytes no write put there), so the journal cannot tell whether it was \
                 acknowledged. To cut the log at the damage and lose every op from here on, start \
                 with `tally start --cut-unproven-tail` (Options::cut_unproven_tail)"
            ),
        }
    }
}
