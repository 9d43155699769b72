//! Formatting a data directory, and rebuilding the state from it: the newest valid checkpoint,
//! then every record after it, applied by the same `State::apply_record` that served them.

use std::path::Path;

use tally_journal::{Journal, Options};
use tally_wire::SessionConfig;

use crate::core::hex;
use crate::entry::RECORD_KIND_BATCH;
use crate::state::State;
use crate::storage::{body_position, JournalBytes};

/// The smallest segment the server formats: one record must hold at least one full-size
/// request (1 MiB) with its entry and record headers.
pub const SEGMENT_SIZE_BYTES_MIN: u64 = 2 << 20;
/// The largest record body: bounds the bytes of one core batch.
const RECORD_BODY_SIZE_BYTES_MAX: u64 = 64 << 20;

/// Journal options for segments of `segment_size_bytes`: records as large as a segment allows,
/// up to `RECORD_BODY_SIZE_BYTES_MAX`.
pub fn journal_options(segment_size_bytes: u64) -> Options {
    let body_size_bytes_max =
        RECORD_BODY_SIZE_BYTES_MAX.min(segment_size_bytes - tally_journal::HEADER_SIZE_BYTES);
    Options {
        segment_size_bytes,
        body_size_bytes_max: u32::try_from(body_size_bytes_max).expect("at most 64 MiB"),
        ..Options::default()
    }
}

pub fn format(directory: &Path, cluster: u128, segment_size_bytes: u64) -> Result<(), String> {
    if segment_size_bytes < SEGMENT_SIZE_BYTES_MIN {
        return Err(format!(
            "segments must be at least {} MiB",
            SEGMENT_SIZE_BYTES_MIN >> 20
        ));
    }
    let options = journal_options(segment_size_bytes);
    Journal::format(directory, &options, cluster)
        .map_err(|error| format!("format {}: {error}", directory.display()))
}

pub fn is_formatted(directory: &Path) -> bool {
    directory.join("format").exists()
}

/// Opens the journal (which cuts a torn tail and refuses damage before it) and rebuilds the
/// state from the newest checkpoint and the records after it.
/// What recovery rebuilt: the journal, the state, and how many log bytes were replayed on top
/// of the checkpoint (a checkpoint is due once they are).
pub struct Recovered {
    pub journal: Journal,
    pub state: State,
    pub replayed_bytes: u64,
}

pub fn open(directory: &Path) -> Result<Recovered, String> {
    let segment_size_bytes = Journal::segment_size_of(directory)
        .map_err(|error| format!("open {}: {error}", directory.display()))?;
    let (journal, recovery) = Journal::open(directory, journal_options(segment_size_bytes))
        .map_err(|error| format!("open {}: {error}", directory.display()))?;
    if let Some(cut) = &recovery.cut {
        tracing::warn!(op = cut.op, segment = cut.segment, offset = cut.offset, bytes = cut.bytes, damage = ?cut.damage, "cut a torn tail (never acknowledged)");
    }
    for rejected in &recovery.checkpoints_rejected {
        tracing::warn!(?rejected, "checkpoint passed over");
    }
    let state = match &recovery.checkpoint {
        Some(checkpoint) => State::decode_checkpoint(checkpoint.state(), SessionConfig::default())
            .map_err(|error| format!("checkpoint at op {}: {error}", checkpoint.op))?,
        None => State::new(journal.cluster(), SessionConfig::default()),
    };
    let checkpoint_op = recovery
        .checkpoint
        .as_ref()
        .map_or(0, |checkpoint| checkpoint.op);
    let (state, replayed_bytes) = replay(&journal, state, checkpoint_op)?;
    tracing::info!(
        op = state.op,
        checkpoint_op,
        records = journal.op_last() - checkpoint_op,
        "recovered"
    );
    Ok(Recovered {
        journal,
        state,
        replayed_bytes,
    })
}

/// Applies every record after `op_applied` (the op of the record the state already reflects).
/// Applies every record after `op_applied`; returns the state and the log bytes replayed.
fn replay(journal: &Journal, mut state: State, op_applied: u64) -> Result<(State, u64), String> {
    let log = JournalBytes(journal);
    // Every 128 bytes of log hold at most one transfer: size the index for them once, instead
    // of rebuilding it at every doubling while replaying.
    let replay_bytes = journal
        .records_from(op_applied + 1)
        .next()
        .map_or(0, |first| {
            journal.log_size_bytes() - body_position(journal, &first.position)
        });
    let transfers_max = usize::try_from(replay_bytes / 128).expect("fits usize");
    state.reserve_transfers(&log, transfers_max);
    let mut replies = Vec::new();
    for record in journal.records_from(op_applied + 1) {
        if record.kind != RECORD_KIND_BATCH {
            return Err(format!(
                "record {} has unknown kind {}",
                record.position.op, record.kind
            ));
        }
        replies.clear();
        state
            .apply_record(
                &log,
                body_position(journal, &record.position),
                record.body.len(),
                &mut replies,
            )
            .map_err(|error| format!("replaying record {}: {error}", record.position.op))?;
    }
    Ok((state, replay_bytes))
}

/// Prints what the journal holds; never writes.
pub fn inspect(directory: &Path) -> Result<(), String> {
    let inspection = tally_journal::inspect(directory).map_err(|error| error.to_string())?;
    println!("{inspection}");
    Ok(())
}

/// Rebuilds the state twice, from the newest checkpoint and from the first record, and prints
/// both digests; they must be equal (replay is deterministic). Opens the journal as `start`
/// would, so it cuts a torn tail; run it on a stopped server.
pub fn digest(directory: &Path) -> Result<(), String> {
    let Recovered { journal, state, .. } = open(directory)?;
    let log = JournalBytes(&journal);
    let from_checkpoint = state.digest(&log);
    let from_start = replay(
        &journal,
        State::new(journal.cluster(), SessionConfig::default()),
        0,
    )?
    .0
    .digest(&log);
    println!("op {}", state.op);
    println!("digest (checkpoint + replay) {}", hex(&from_checkpoint));
    println!("digest (full replay)         {}", hex(&from_start));
    if from_checkpoint != from_start {
        return Err(
            "the two digests differ: replay is not deterministic or a checkpoint is wrong".into(),
        );
    }
    Ok(())
}
