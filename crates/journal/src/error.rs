use std::fmt;
use std::io;
use std::path::PathBuf;

/// Everything that can go wrong. Operating errors (disk full, damaged files, a second process) are
/// values; programming errors (a kind of 0, a position that names no record) are assertions.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{directory}: locked by another process")]
    Locked { directory: PathBuf },
    #[error("{directory}: already formatted, or holds journal files from an earlier format")]
    AlreadyFormatted { directory: PathBuf },
    #[error("{directory}: not a formatted journal (no format marker)")]
    NotFormatted { directory: PathBuf },
    #[error("{path}: invalid format marker: {reason}")]
    FormatInvalid { path: PathBuf, reason: &'static str },
    #[error("invalid options: {reason}")]
    OptionsInvalid { reason: &'static str },
    #[error("{path}: {reason}")]
    SegmentInvalid { path: PathBuf, reason: String },
    /// Recovery refused to open the log and wrote nothing: the damage is not a torn tail.
    #[error(
        "corrupt journal at op {op} (segment {segment}, offset {offset}): {damage}; {evidence}"
    )]
    Corrupt {
        op: u64,
        segment: u32,
        offset: u64,
        damage: Damage,
        evidence: Evidence,
    },
    #[error("body of {body_size_bytes} bytes exceeds the limit of {body_size_bytes_max}")]
    BodyTooLarge {
        body_size_bytes: u64,
        body_size_bytes_max: u32,
    },
    #[error(
        "checkpoint state of {state_size_bytes} bytes exceeds the limit of {state_size_bytes_max}"
    )]
    StateTooLarge {
        state_size_bytes: u64,
        state_size_bytes_max: u64,
    },
    #[error("log full: segment {segment} would pass the limit of {segment_count_max} segments")]
    LogFull {
        segment: u32,
        segment_count_max: u32,
    },
    /// The append that needed this segment failed and left the log unchanged.
    #[error("cannot allocate segment {segment}: {source}")]
    SegmentAllocate { segment: u32, source: io::Error },
    /// After a failed fsync the kernel may have dropped the dirty pages ("fsyncgate"), so nothing
    /// written since can be trusted. The journal refuses all further work: restart and recover.
    #[error("fsync failed, the journal is unusable until it is reopened: {source}")]
    SyncFailed { source: io::Error },
    #[error("an earlier fsync failed; the journal is unusable until it is reopened")]
    Failed,
}

/// What is wrong with the record where recovery expected the next op.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Damage {
    /// Only zeros where a record should start, yet nonzero bytes follow.
    HeaderZero,
    HeaderChecksum,
    HeaderInvalid {
        reason: &'static str,
    },
    OpMismatch {
        op_found: u64,
    },
    ParentMismatch,
    /// The header verifies but claims a body that would cross the segment's end.
    BodySizeInvalid {
        body_size: u32,
    },
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

/// A valid record header found after the damage, and what it proves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Evidence {
    /// The later record was appended after a sync covering the damaged op had completed: the
    /// damaged record was durable and may have been acknowledged. Corruption, never cut.
    Synced {
        op: u64,
        segment: u32,
        offset: u64,
        op_synced: u64,
    },
    /// The later record carries an op at or below the damaged one: stale or misdirected data, which
    /// appends never produce. Corruption, never cut.
    OutOfOrder { op: u64, segment: u32, offset: u64 },
    /// A later record exists without proof that the damaged op was synced. A power loss during a
    /// sync can leave this (the kernel writes pages back in any order), but so can bit rot of the
    /// last synced records. Refused unless `Options::cut_unproven_tail` is set.
    Unproven { op: u64, segment: u32, offset: u64 },
}

impl Evidence {
    /// Whether the damage may be cut at all (with the operator's consent).
    pub fn is_unproven(&self) -> bool {
        match self {
            Evidence::Synced { .. } => false,
            Evidence::OutOfOrder { .. } => false,
            Evidence::Unproven { .. } => true,
        }
    }
}

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
                "op {op} at segment {segment}, offset {offset} was appended after op {op_synced} \
                 was synced, so the damaged record was durable"
            ),
            Evidence::OutOfOrder {
                op,
                segment,
                offset,
            } => write!(
                f,
                "a valid record with the earlier op {op} follows at segment {segment}, offset \
                 {offset}: stale or misdirected data"
            ),
            Evidence::Unproven {
                op,
                segment,
                offset,
            } => write!(
                f,
                "a valid record (op {op}) follows at segment {segment}, offset {offset}; nothing \
                 proves the damaged record was synced: after a power loss, reopen with \
                 cut_unproven_tail to cut the tail"
            ),
        }
    }
}
