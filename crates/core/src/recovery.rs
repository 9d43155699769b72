//! Formatting a data directory, and rebuilding the state from it: the newest valid checkpoint,
//! then every record after it, applied by the same `State::apply_record` that served them.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use tally_journal::{Journal, Options};
use tally_metrics::RecoveryMetrics;
use tally_wire::SessionConfig;

use crate::command::{Request, ADMIN_REPLAY_COST};
use crate::core_thread::hex;
use crate::entry::{entry_offsets, EntryKind, ENTRY_HEADER_SIZE, RECORD_KIND_BATCH};
use crate::error::RecoveryError;
use crate::progress::{ReplayProgress, PROGRESS_INTERVAL};
use crate::state::{ApplyMode, State};
use crate::storage::{body_position, JournalBytes, LogBytes};

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

/// Creates and formats a data directory.
pub fn format(
    directory: &Path,
    cluster: u128,
    segment_size_bytes: u64,
) -> Result<(), RecoveryError> {
    if segment_size_bytes < SEGMENT_SIZE_BYTES_MIN {
        return Err(RecoveryError::SegmentTooSmall {
            min_mib: SEGMENT_SIZE_BYTES_MIN >> 20,
            size_bytes: segment_size_bytes,
        });
    }
    let options = journal_options(segment_size_bytes);
    Journal::format(directory, &options, cluster).map_err(journal_error(directory))
}

/// Whether `directory` holds a formatted journal.
pub fn is_formatted(directory: &Path) -> bool {
    directory.join("format").exists()
}

/// What recovery rebuilt: the journal, the state, and what was replayed on top of the
/// checkpoint (a checkpoint is due once enough was).
pub struct Recovered {
    /// The journal, open for appends.
    pub journal: Journal,
    /// The state after the last record.
    pub state: State,
    /// Log bytes replayed on top of the checkpoint.
    pub replayed_bytes: u64,
    /// Entries replayed on top of the checkpoint.
    pub replayed_entries: u64,
    /// Replay work (events) on top of the checkpoint: counts towards the next checkpoint, so
    /// that a server restarted often still checkpoints by work.
    pub replayed_work: u64,
    /// The size of the checkpoint the state was loaded from (0 without one): the next
    /// checkpoint's bounds grow with it (`Core::checkpoint_due`).
    pub checkpoint_bytes: u64,
}

/// How to open.
#[derive(Clone, Debug)]
pub struct OpenOptions {
    /// Cut a damaged tail even where the log cannot prove it was never acknowledged
    /// (`tally start --cut-unproven-tail`, after a power loss the operator knows of).
    pub cut_unproven_tail: bool,
    /// How often a long replay logs its progress.
    pub progress_interval: Duration,
    /// Where the replay's progress is published.
    pub metrics: RecoveryMetrics,
}

impl Default for OpenOptions {
    fn default() -> OpenOptions {
        OpenOptions {
            cut_unproven_tail: false,
            progress_interval: PROGRESS_INTERVAL,
            metrics: tally_metrics::Metrics::new().recovery,
        }
    }
}

/// Opens the journal (which cuts a torn tail and refuses damage before it) and rebuilds the
/// state from the newest checkpoint and the records after it.
pub fn open(directory: &Path, options: OpenOptions) -> Result<Recovered, RecoveryError> {
    let segment_size_bytes =
        Journal::segment_size_of(directory).map_err(journal_error(directory))?;
    let journal_options = Options {
        cut_unproven_tail: options.cut_unproven_tail,
        ..journal_options(segment_size_bytes)
    };
    let (journal, recovery) =
        Journal::open(directory, journal_options).map_err(journal_error(directory))?;
    if let Some(cut) = &recovery.cut {
        // The evidence says why the cut was allowed: no proof of acknowledgement and a
        // power-loss shape, or the operator's --cut-unproven-tail.
        tracing::warn!(op = cut.op, segment = cut.segment, offset = cut.offset, bytes = cut.bytes, damage = ?cut.damage, evidence = ?cut.evidence, "cut a torn tail");
    }
    for rejected in &recovery.checkpoints_rejected {
        tracing::warn!(?rejected, "checkpoint passed over");
    }
    let (checkpoint_op, checkpoint_bytes) =
        recovery.checkpoint.as_ref().map_or((0, 0), |checkpoint| {
            (checkpoint.op, checkpoint.state().len() as u64)
        });
    let state = match &recovery.checkpoint {
        // The transfer index is rebuilt once, with room for what the replay will add.
        Some(checkpoint) => State::decode_checkpoint(
            checkpoint.state(),
            SessionConfig::default(),
            &JournalBytes(&journal),
            replay_transfers_max(&journal, checkpoint_op),
        )
        .map_err(|source| RecoveryError::Checkpoint {
            record: checkpoint.op,
            source,
        })?,
        None => State::new(journal.cluster(), SessionConfig::default()),
    };
    let mut progress = ReplayProgress::new(
        &options.metrics,
        options.progress_interval,
        journal.op_last() - checkpoint_op,
        replay_size_bytes(&journal, checkpoint_op),
    );
    let (state, replayed) = replay(&journal, state, checkpoint_op, &mut progress)?;
    tracing::info!(
        op = state.op,
        checkpoint_op,
        records = journal.op_last() - checkpoint_op,
        entries = replayed.entries,
        "recovered"
    );
    Ok(Recovered {
        journal,
        state,
        replayed_bytes: replayed.bytes,
        replayed_entries: replayed.entries,
        replayed_work: replayed.work,
        checkpoint_bytes,
    })
}

/// What a replay went through.
struct Replayed {
    bytes: u64,
    entries: u64,
    work: u64,
}

/// Applies every record after `op_applied` (the op of the record the state already reflects).
fn replay(
    journal: &Journal,
    mut state: State,
    op_applied: u64,
    progress: &mut ReplayProgress<'_>,
) -> Result<(State, Replayed), RecoveryError> {
    let log = JournalBytes(journal);
    // Size the index for the replay once, instead of rebuilding it at every doubling.
    state.reserve_transfers(&log, replay_transfers_max(journal, op_applied));
    let (last_request_op, work) = last_request_ops(journal, &log, op_applied)?;
    let mode = ApplyMode::Replay {
        last_request_op: &last_request_op,
    };
    let op_first = state.op;
    let mut replies = Vec::new();
    let mut position_first = None;
    for (records, record) in (1..).zip(journal.records_from(op_applied + 1)) {
        replies.clear();
        let position = body_position(journal, &record.position);
        state
            .apply_record(&log, position, record.body.len(), mode, &mut replies)
            .map_err(|source| RecoveryError::Replay {
                op: record.position.op,
                source,
            })?;
        let first = *position_first.get_or_insert(position);
        progress.advance(records, position + record.body.len() as u64 - first);
    }
    let entries = state.op - op_first;
    Ok((
        state,
        Replayed {
            bytes: replay_size_bytes(journal, op_applied),
            entries,
            work,
        },
    ))
}

/// Log bytes from the first record after `op_applied` to the end of the log.
fn replay_size_bytes(journal: &Journal, op_applied: u64) -> u64 {
    journal
        .records_from(op_applied + 1)
        .next()
        .map_or(0, |first| {
            journal.log_size_bytes() - body_position(journal, &first.position)
        })
}

/// The most transfers the records after `op_applied` can create: every 128 bytes of log hold
/// at most one.
fn replay_transfers_max(journal: &Journal, op_applied: u64) -> usize {
    usize::try_from(replay_size_bytes(journal, op_applied) / 128).expect("fits usize")
}

/// Each client's last request op among the records after `op_applied` (a replayed read whose
/// client asked again later need not run: `ApplyMode::Replay`), and the replay work of those
/// records.
fn last_request_ops<L: LogBytes>(
    journal: &Journal,
    log: &L,
    op_applied: u64,
) -> Result<(HashMap<u128, u64>, u64), RecoveryError> {
    let mut last = HashMap::new();
    let mut work = 0;
    for record in journal.records_from(op_applied + 1) {
        if record.kind != RECORD_KIND_BATCH {
            return Err(RecoveryError::RecordKind {
                op: record.position.op,
                kind: record.kind,
            });
        }
        // Shape errors surface, with their position, when the record is applied.
        let Ok(entries) = entry_offsets(record.body) else {
            continue;
        };
        let position = body_position(journal, &record.position);
        for (offset, entry) in entries {
            let message_position = position + (offset + ENTRY_HEADER_SIZE) as u64;
            let message = log.bytes(message_position, entry.message_size as usize);
            let request = match entry.kind {
                EntryKind::Request => Request::parse(message),
                EntryKind::RequestCompact => Request::parse_compact(message),
                EntryKind::Admin => {
                    work += ADMIN_REPLAY_COST;
                    continue;
                }
                EntryKind::Pulse => continue,
            };
            if let Ok(request) = request {
                last.insert(request.client, entry.op);
                work += request.replay_cost();
            }
        }
    }
    Ok((last, work))
}

/// Prints what the journal holds; never writes. On a terminal, a bar shows how much of the log
/// has been verified (a large journal takes seconds); elsewhere nothing is drawn.
pub fn inspect(directory: &Path) -> Result<(), RecoveryError> {
    use std::io::IsTerminal;
    let bar = if std::io::stderr().is_terminal() {
        indicatif::ProgressBar::new(0).with_style(inspect_bar_style())
    } else {
        indicatif::ProgressBar::hidden()
    };
    let inspection = tally_journal::inspect_with_progress(directory, &mut |progress| {
        bar.set_length(progress.address_max);
        bar.set_position(progress.address_end);
    })
    .map_err(journal_error(directory));
    bar.finish_and_clear();
    println!("{}", inspection?);
    Ok(())
}

/// Bytes verified of the segments' bytes, the rate and the time left.
fn inspect_bar_style() -> indicatif::ProgressStyle {
    indicatif::ProgressStyle::with_template(
        "verifying {bar:30} {bytes}/{total_bytes} {binary_bytes_per_sec}, {eta} left",
    )
    .expect("a valid template")
}

/// Rebuilds the state twice, from the newest checkpoint and from the first record, and prints
/// both digests; they must be equal (replay is deterministic). Opens the journal as `start`
/// would, so it cuts a torn tail; run it on a stopped server.
pub fn digest(directory: &Path) -> Result<(), RecoveryError> {
    let Recovered { journal, state, .. } = open(directory, OpenOptions::default())?;
    let log = JournalBytes(&journal);
    let from_checkpoint = state.digest(&log);
    let options = OpenOptions::default();
    let mut progress = ReplayProgress::new(
        &options.metrics,
        options.progress_interval,
        journal.op_last(),
        replay_size_bytes(&journal, 0),
    );
    let from_start = replay(
        &journal,
        State::new(journal.cluster(), SessionConfig::default()),
        0,
        &mut progress,
    )?
    .0
    .digest(&log);
    println!("op {}", state.op);
    println!("digest (checkpoint + replay) {}", hex(&from_checkpoint));
    println!("digest (full replay)         {}", hex(&from_start));
    if from_checkpoint != from_start {
        return Err(RecoveryError::DigestMismatch);
    }
    Ok(())
}

fn journal_error(
    directory: &Path,
) -> impl FnOnce(tally_journal::JournalError) -> RecoveryError + '_ {
    move |source| RecoveryError::Journal {
        directory: directory.to_path_buf(),
        source,
    }
}
