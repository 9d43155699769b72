//! Checkpoints: an opaque state blob that reflects the state after record `op`, in one of two slot
//! files written alternately, so that the newest checkpoint never replaces the only good one.

use std::fs::File;
use std::io;
use std::path::Path;

use memmap2::Mmap;
use tally_checksum::checksum;

use crate::directory::{file_replace, io_error, CHECKPOINT_FILES, CHECKPOINT_TEMPORARY};
use crate::error::JournalError;
use crate::layout::{
    header_bytes, CheckpointHeader, HeaderProblem, FORMAT_VERSION, FORMAT_VERSION_MIN,
    HEADER_SIZE_BYTES,
};

pub(crate) const CHECKPOINT_SLOT_COUNT: usize = CHECKPOINT_FILES.len();

/// A checkpoint read back whole and verified: the header, and the state in a read-only mapping
/// (states can be hundreds of MB; mapping avoids a copy).
pub struct Checkpoint {
    /// The last record the state reflects: replay resumes at `op + 1`.
    pub op: u64,
    checksum_record: u128,
    map: Mmap,
}

impl Checkpoint {
    /// The state blob, exactly as passed to `write_checkpoint`.
    pub fn state(&self) -> &[u8] {
        &self.map[HEADER_SIZE_BYTES as usize..]
    }
}

impl std::fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpoint")
            .field("op", &self.op)
            .field("state_size_bytes", &self.state().len())
            .finish()
    }
}

/// Why a checkpoint slot was passed over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckpointProblem {
    /// Damaged or foreign: checksum, magic, size or cluster mismatch.
    Invalid {
        /// What failed to verify.
        reason: &'static str,
    },
    /// Intact, but of a format version this binary does not read.
    Version {
        /// The version the checkpoint's header names.
        version: u32,
    },
    /// Its op is beyond the end of the recovered log.
    BeyondLog {
        /// The checkpoint's op.
        op: u64,
        /// The recovered log's last op.
        op_last: u64,
    },
    /// Record `op` in the log is not the record the checkpoint was taken after.
    NotInChain {
        /// The checkpoint's op.
        op: u64,
    },
}

impl std::fmt::Display for CheckpointProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CheckpointProblem::Invalid { reason } => write!(f, "invalid: {reason}"),
            CheckpointProblem::Version { version } => write!(
                f,
                "format version {version}, this binary reads {FORMAT_VERSION_MIN}..={FORMAT_VERSION}"
            ),
            CheckpointProblem::BeyondLog { op, op_last } => {
                write!(f, "op {op} is beyond the log's last op {op_last}")
            }
            CheckpointProblem::NotInChain { op } => {
                write!(
                    f,
                    "record {op} in the log is not the one this checkpoint follows"
                )
            }
        }
    }
}

/// A slot whose checkpoint cannot be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointRejection {
    /// The slot's file (`checkpoint-a` or `checkpoint-b`).
    pub file: &'static str,
    /// Why it was passed over.
    pub problem: CheckpointProblem,
}

/// Reads and verifies one slot: `Ok(None)` if the file does not exist.
pub(crate) fn checkpoint_read(
    directory: &Path,
    slot: usize,
    cluster: u128,
    state_size_bytes_max: u64,
) -> Result<Option<Result<Checkpoint, CheckpointProblem>>, JournalError> {
    let path = directory.join(CHECKPOINT_FILES[slot]);
    let file = match File::open(&path) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => {
            return Err(JournalError::Io {
                path,
                source: error,
            })
        }
    };
    let size_bytes = file.metadata().map_err(io_error(&path))?.len();
    if size_bytes < HEADER_SIZE_BYTES {
        return Ok(Some(Err(CheckpointProblem::Invalid {
            reason: "shorter than its header",
        })));
    }
    if size_bytes - HEADER_SIZE_BYTES > state_size_bytes_max {
        return Ok(Some(Err(CheckpointProblem::Invalid {
            reason: "larger than the state limit",
        })));
    }
    // SAFETY: checkpoint files are never written in place (a new one is renamed over the slot,
    // which leaves this inode alone), and the directory lock keeps other Tally processes out.
    let map = unsafe { Mmap::map(&file) }.map_err(io_error(&path))?;
    Ok(Some(checkpoint_verify(map, cluster)))
}

fn checkpoint_verify(map: Mmap, cluster: u128) -> Result<Checkpoint, CheckpointProblem> {
    let invalid = |reason| CheckpointProblem::Invalid { reason };
    let header = CheckpointHeader::verify(header_bytes(&map)).map_err(|problem| match problem {
        HeaderProblem::Invalid(reason) => CheckpointProblem::Invalid { reason },
        HeaderProblem::Version(version) => CheckpointProblem::Version { version },
    })?;
    if header.cluster != cluster {
        return Err(invalid("belongs to another cluster"));
    }
    if header.state_size_bytes != map.len() as u64 - HEADER_SIZE_BYTES {
        return Err(invalid("file size does not match the header"));
    }
    if checksum(&map[HEADER_SIZE_BYTES as usize..]) != header.checksum_state {
        return Err(invalid("state checksum mismatch"));
    }
    Ok(Checkpoint {
        op: header.op,
        checksum_record: header.checksum_record,
        map,
    })
}

/// Writes a checkpoint into `slot`, replacing its previous content atomically; the header's
/// `checksum_state` is computed here (on the writer thread, for `checkpoint_start`).
pub(crate) fn checkpoint_write(
    directory_file: &File,
    directory: &Path,
    slot: usize,
    header: CheckpointHeader,
    state: &[u8],
) -> Result<(), JournalError> {
    assert_eq!(header.state_size_bytes, state.len() as u64);
    assert_eq!(
        header.checksum_state, 0,
        "the state's checksum is computed here"
    );
    let header = CheckpointHeader {
        checksum_state: checksum(state),
        ..header
    };
    let (header, bytes) = header.sealed();
    // Pair assertion: the header we write is one that reading will accept.
    assert_eq!(CheckpointHeader::verify(&bytes), Ok(header));
    let name = CHECKPOINT_FILES[slot];
    file_replace(
        directory_file,
        directory,
        name,
        CHECKPOINT_TEMPORARY,
        &[&bytes, state],
    )
}

/// The newest checkpoint that reads back whole (header and state checksums, this cluster), as
/// `(op, file)`, whatever the log holds: a checkpoint is written only after the log through its op
/// was synced, so it proves those ops were durable.
pub(crate) fn checkpoint_proof(
    slots: &[Option<Result<Checkpoint, CheckpointProblem>>; CHECKPOINT_SLOT_COUNT],
) -> Option<(u64, &'static str)> {
    slots
        .iter()
        .zip(CHECKPOINT_FILES)
        .filter_map(|(slot, file)| match slot {
            Some(Ok(checkpoint)) => Some((checkpoint.op, file)),
            Some(Err(_)) | None => None,
        })
        .max_by_key(|(op, _)| *op)
}

/// The choice among the slots after the log is known.
pub(crate) struct CheckpointChoice {
    pub chosen: Option<Checkpoint>,
    /// Per slot, the op of a usable checkpoint it holds (the next write replaces the other one).
    pub slot_ops: [Option<u64>; CHECKPOINT_SLOT_COUNT],
    pub rejections: Vec<CheckpointRejection>,
}

/// Picks the newest checkpoint at or below `op_last` whose tied record checksum matches the log.
/// `checksum_of` gives the checksum of record `op` (the format marker's for op 0).
pub(crate) fn checkpoint_choose(
    slots: [Option<Result<Checkpoint, CheckpointProblem>>; CHECKPOINT_SLOT_COUNT],
    op_last: u64,
    checksum_of: impl Fn(u64) -> u128,
) -> CheckpointChoice {
    let mut choice = CheckpointChoice {
        chosen: None,
        slot_ops: [None; CHECKPOINT_SLOT_COUNT],
        rejections: Vec::new(),
    };
    let mut usable: Vec<(usize, Checkpoint)> = Vec::with_capacity(CHECKPOINT_SLOT_COUNT);
    for (slot, read) in slots.into_iter().enumerate() {
        let file = CHECKPOINT_FILES[slot];
        let problem = match read {
            None => continue,
            Some(Err(problem)) => problem,
            Some(Ok(checkpoint)) if checkpoint.op > op_last => CheckpointProblem::BeyondLog {
                op: checkpoint.op,
                op_last,
            },
            Some(Ok(checkpoint)) if checksum_of(checkpoint.op) != checkpoint.checksum_record => {
                CheckpointProblem::NotInChain { op: checkpoint.op }
            }
            Some(Ok(checkpoint)) => {
                choice.slot_ops[slot] = Some(checkpoint.op);
                usable.push((slot, checkpoint));
                continue;
            }
        };
        choice
            .rejections
            .push(CheckpointRejection { file, problem });
    }
    choice.chosen = usable
        .into_iter()
        .max_by_key(|(_, checkpoint)| checkpoint.op)
        .map(|(_, c)| c);
    choice
}

/// The slot the next checkpoint goes to: an empty or unusable one, else the one with the older op.
pub(crate) fn checkpoint_slot_next(slot_ops: &[Option<u64>; CHECKPOINT_SLOT_COUNT]) -> usize {
    match slot_ops {
        [None, _] => 0,
        [Some(_), None] => 1,
        [Some(op_a), Some(op_b)] => {
            if op_a <= op_b {
                0
            } else {
                1
            }
        }
    }
}
