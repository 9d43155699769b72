//! Power loss in process: random workloads over `FaultyStorage` (an in-memory disk that keeps the
//! durable image apart from the written one), crashed at random points with random faults, then
//! reopened and checked. Deterministic from a seed; no root, no child processes.
//!
//! Each crash point checks that: recovery opens (a power loss never leaves the journal refusing);
//! every acknowledged record (its sync completed before the crash) is there byte for byte; every
//! record there is whole and the one written (nothing half-there); and the digest of the bodies
//! replayed from the chosen checkpoint equals the digest the writer kept.
//!
//! `TALLY_POWER_LOSS_CASES` sets the number of crash points (default: 2,000 in release, 300 in a
//! debug build); `TALLY_POWER_LOSS_SEED` the seed. The format marker and checkpoints are real files
//! (see `storage.rs`: they stay off the seam), in a temporary directory on tmpfs where there is one:
//! no crash touches them here, so their fsyncs need not cost a disk's latency.

use std::collections::{BTreeMap, VecDeque};
use std::env;
use std::path::Path;
use std::time::Instant;

use tally_checksum::checksum;
use tally_journal::{
    Crash, CrashReport, Evidence, FaultyDisk, FaultyStorage, Journal, JournalError, Options,
    RecordPosition, SyncMode, SyncTicket,
};

const ENV_CASES: &str = "TALLY_POWER_LOSS_CASES";
const ENV_SEED: &str = "TALLY_POWER_LOSS_SEED";
const CRASH_POINTS_RELEASE: u64 = 2_000;
const CRASH_POINTS_DEBUG: u64 = 300;
/// Crash points on one disk before a fresh one is formatted.
const CRASHES_PER_DISK: u64 = 25;
const SEGMENT_SIZE_BYTES: u64 = 1024 * 1024;
const BODY_SIZE_BYTES_MAX: u32 = 256 * 1024;
const CLUSTER: u128 = 0x70_3E12_1055;

fn options() -> Options {
    Options {
        segment_size_bytes: SEGMENT_SIZE_BYTES,
        body_size_bytes_max: BODY_SIZE_BYTES_MAX,
        state_size_bytes_max: 1024 * 1024,
        sync_mode: SyncMode::Blocking,
        cut_unproven_tail: false,
    }
}

/// SplitMix64: small, seedable, reproducible.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, bound).
    fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound
    }

    fn bytes(&mut self, size: usize) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(size + 8);
        while bytes.len() < size {
            bytes.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        bytes.truncate(size);
        bytes
    }
}

/// A number from the environment, decimal or `0x` hexadecimal (as the seed is printed).
fn env_u64(name: &str) -> Option<u64> {
    let value = env::var(name).ok()?;
    let parsed = match value.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => value.parse(),
    };
    Some(parsed.unwrap_or_else(|_| panic!("{name}={value} is not a number")))
}

/// The chain of bodies in op order: the state a replay must rebuild.
fn digest_next(previous: u128, kind: u16, body: &[u8]) -> u128 {
    let mut bytes = [0u8; 34];
    bytes[..16].copy_from_slice(&previous.to_le_bytes());
    bytes[16..32].copy_from_slice(&checksum(body).to_le_bytes());
    bytes[32..].copy_from_slice(&kind.to_le_bytes());
    checksum(&bytes)
}

/// What the writer appended, acknowledged or not.
struct Written {
    kind: u16,
    timestamp: u64,
    body: Vec<u8>,
}

#[derive(Default)]
struct Model {
    records: Vec<Written>,
    /// `digests[op]`: the digest after op (`digests[0]` is the empty log's).
    digests: Vec<u128>,
}

impl Model {
    fn new() -> Model {
        Model {
            records: Vec::new(),
            digests: vec![0],
        }
    }

    fn truncate(&mut self, op_last: u64) {
        self.records.truncate(op_last as usize);
        self.digests.truncate(op_last as usize + 1);
    }
}

/// A checkpoint's state: its op and the digest after it, and filler of a random length.
fn checkpoint_state(op: u64, digest: u128, filler: usize) -> Vec<u8> {
    let mut state = Vec::with_capacity(24 + filler);
    state.extend_from_slice(&op.to_le_bytes());
    state.extend_from_slice(&digest.to_le_bytes());
    state.resize(24 + filler, 0xC5);
    state
}

#[derive(Default)]
struct Stats {
    crash_points: u64,
    crashes: BTreeMap<Crash, u64>,
    /// Crash points where a later unsynced write reached the disk without an earlier one.
    reordered: u64,
    writes_torn: u64,
    writes_lost: u64,
    fsyncs_failed: u64,
    cuts_torn_tail: u64,
    /// Cuts of damage followed by a valid record (`Evidence::Unacknowledged`).
    cuts_unacknowledged: u64,
    /// Crash points where records beyond the acknowledged ones survived whole.
    unacknowledged_survived: u64,
    records_verified: u64,
    checkpoints_written: u64,
    replays_from_checkpoint: u64,
}

fn body_size(rng: &mut Rng) -> usize {
    match rng.below(20) {
        0 => rng.below(u64::from(BODY_SIZE_BYTES_MAX) + 1) as usize,
        1..=5 => rng.below(24 * 1024) as usize,
        _ => rng.below(2048) as usize,
    }
}

fn append(
    journal: &mut Journal<FaultyStorage>,
    model: &mut Model,
    rng: &mut Rng,
) -> RecordPosition {
    let op = journal.op_last() + 1;
    let kind = 1 + rng.below(9) as u16;
    let timestamp = op * 1_000 + rng.below(1_000);
    let size = body_size(rng);
    let body = rng.bytes(size);
    let position = journal.append(kind, timestamp, &body).expect("append");
    assert_eq!(position.op, op);
    let digest = digest_next(*model.digests.last().expect("digest"), kind, &body);
    model.digests.push(digest);
    model.records.push(Written {
        kind,
        timestamp,
        body,
    });
    position
}

/// Whether an error is the fatal fsync failure the workload provoked.
fn sync_failure(error: &JournalError) -> bool {
    matches!(
        error,
        JournalError::SyncFailed { .. } | JournalError::Failed
    )
}

/// Random appends, group-commit syncs (at most two in flight) and now and then a checkpoint, until
/// the crash point or an fsync failure.
fn workload(
    journal: &mut Journal<FaultyStorage>,
    model: &mut Model,
    rng: &mut Rng,
    stats: &mut Stats,
) {
    let mut tickets: VecDeque<SyncTicket> = VecDeque::new();
    let steps = 1 + rng.below(40);
    for _ in 0..steps {
        let result = match rng.below(32) {
            0..=15 => {
                for _ in 0..1 + rng.below(4) {
                    append(journal, model, rng);
                }
                Ok(())
            }
            16..=22 => {
                // Group commit: with two in flight, finish the oldest first, as the server does.
                let waited = match tickets.len() {
                    2 => journal.sync_wait(tickets.pop_front().expect("a ticket")),
                    _ => Ok(()),
                };
                waited
                    .and_then(|()| journal.sync_begin())
                    .map(|ticket| tickets.push_back(ticket))
            }
            23..=28 => match tickets.pop_front() {
                Some(ticket) => journal.sync_wait(ticket),
                None => Ok(()),
            },
            29..=30 => journal.sync(),
            _ if rng.below(4) != 0 => journal.sync(),
            _ => {
                let op = match rng.below(2) {
                    0 => journal.op_synced(),
                    _ => journal.op_last(),
                };
                let state =
                    checkpoint_state(op, model.digests[op as usize], rng.below(4096) as usize);
                stats.checkpoints_written += 1;
                journal.write_checkpoint(op, &state)
            }
        };
        match result {
            Ok(()) => {}
            Err(error) if sync_failure(&error) => return,
            Err(error) => panic!("unexpected journal error: {error}"),
        }
    }
}

/// Opens after a crash and checks everything the module comment promises. Returns the journal.
fn recover_and_verify(
    disk: &FaultyDisk,
    directory: &Path,
    model: &mut Model,
    op_acknowledged: u64,
    stats: &mut Stats,
    context: &str,
) -> Journal<FaultyStorage> {
    let (journal, recovery) = Journal::open_with(disk.storage(), directory, options())
        .unwrap_or_else(|error| {
            panic!("{context}: a power loss left the journal refusing: {error}")
        });
    let op_last = recovery.op_last;
    assert!(
        op_last >= op_acknowledged,
        "{context}: op {op_acknowledged} was acknowledged, the log ends at op {op_last}"
    );
    assert!(
        op_last <= model.records.len() as u64,
        "{context}: the log ends at op {op_last}, beyond the {} written",
        model.records.len()
    );
    match recovery.cut {
        None => {}
        Some(cut) => {
            assert_eq!(cut.op, op_last + 1, "{context}: {cut:?}");
            assert!(
                cut.op > op_acknowledged,
                "{context}: cut an acknowledged op"
            );
            match cut.evidence {
                None => stats.cuts_torn_tail += 1,
                Some(Evidence::Unacknowledged { op, op_synced, .. }) => {
                    assert!(op >= cut.op && op_synced < cut.op, "{context}: {cut:?}");
                    stats.cuts_unacknowledged += 1;
                }
                Some(evidence) => panic!("{context}: cut with {evidence:?} without consent"),
            }
        }
    }
    stats.unacknowledged_survived += u64::from(op_last > op_acknowledged);
    model.truncate(op_last);
    // Every record there is whole and the one written: byte for byte.
    let mut count = 0;
    for (record, written) in journal.records_from(1).zip(&model.records) {
        let op = record.position.op;
        assert_eq!(record.kind, written.kind, "{context}: kind of op {op}");
        assert_eq!(record.timestamp, written.timestamp, "{context}: op {op}");
        assert!(record.body == written.body, "{context}: body of op {op}");
        count += 1;
    }
    assert_eq!(count, op_last, "{context}");
    stats.records_verified += count;
    // The replay from the chosen checkpoint rebuilds the digest the writer kept.
    let (op_first, mut digest) = match &recovery.checkpoint {
        Some(checkpoint) => {
            let state = checkpoint.state();
            let op = u64::from_le_bytes(state[..8].try_into().expect("8 bytes"));
            assert_eq!(op, checkpoint.op, "{context}: checkpoint state");
            stats.replays_from_checkpoint += 1;
            let digest = u128::from_le_bytes(state[8..24].try_into().expect("16 bytes"));
            (op + 1, digest)
        }
        None => (1, 0),
    };
    for record in journal.records_from(op_first) {
        digest = digest_next(digest, record.kind, record.body);
    }
    assert_eq!(
        digest, model.digests[op_last as usize],
        "{context}: the replayed chain differs from the written one"
    );
    journal
}

/// On tmpfs when the machine has one (see the module comment).
fn temporary_directory() -> tempfile::TempDir {
    let tmpfs = Path::new("/dev/shm");
    let temporary = match tmpfs.is_dir() {
        true => tempfile::tempdir_in(tmpfs),
        false => tempfile::tempdir(),
    };
    temporary.expect("temporary directory")
}

fn crash_choose(rng: &mut Rng) -> Crash {
    match rng.below(10) {
        0 => Crash::ProcessKill,
        1..=2 => Crash::DropUnsynced,
        3..=5 => Crash::TearInOrder,
        _ => Crash::Reorder,
    }
}

fn stats_count(stats: &mut Stats, crash: Crash, report: &CrashReport) {
    stats.crash_points += 1;
    *stats.crashes.entry(crash).or_default() += 1;
    stats.reordered += u64::from(report.reordered);
    stats.writes_torn += report.writes_torn as u64;
    stats.writes_lost += report.writes_lost as u64;
}

#[test]
fn power_loss_at_random_points_keeps_every_acknowledged_record() {
    let crash_points = env_u64(ENV_CASES).unwrap_or(if cfg!(debug_assertions) {
        CRASH_POINTS_DEBUG
    } else {
        CRASH_POINTS_RELEASE
    });
    let seed = env_u64(ENV_SEED).unwrap_or(0x9E3C_0FF5);
    let started = Instant::now();
    let mut rng = Rng(seed);
    let mut stats = Stats::default();
    let mut disk_number = 0;
    while stats.crash_points < crash_points {
        disk_number += 1;
        let temporary = temporary_directory();
        let directory = temporary.path().join("data");
        let disk = FaultyDisk::new();
        Journal::format_with(disk.storage(), &directory, &options(), CLUSTER).expect("format");
        let mut model = Model::new();
        let (mut journal, _) =
            Journal::open_with(disk.storage(), &directory, options()).expect("open");
        for cycle in 0..CRASHES_PER_DISK.min(crash_points - stats.crash_points) {
            if rng.below(6) == 0 {
                disk.fsync_fail_after(1 + rng.below(5));
            }
            workload(&mut journal, &mut model, &mut rng, &mut stats);
            let op_acknowledged = journal.op_synced();
            let crash = crash_choose(&mut rng);
            let crash_seed = rng.next_u64();
            let report = disk.crash(crash, crash_seed);
            drop(journal);
            stats_count(&mut stats, crash, &report);
            let context = format!(
                "seed {seed:#x}, disk {disk_number}, cycle {cycle}, {crash:?} (seed {crash_seed:#x}), \
                 {report:?}"
            );
            journal = recover_and_verify(
                &disk,
                &directory,
                &mut model,
                op_acknowledged,
                &mut stats,
                &context,
            );
            if cycle % 8 == 7 {
                // What recovery cut stays cut, and made everything durable: a second open is clean.
                let op_last = journal.op_last();
                drop(journal);
                let (reopened, recovery) =
                    Journal::open_with(disk.storage(), &directory, options()).expect("reopen");
                assert_eq!(recovery.op_last, op_last, "{context}");
                assert!(recovery.cut.is_none(), "{context}: a second open cut again");
                journal = reopened;
            }
        }
        stats.fsyncs_failed += disk.fsyncs_failed();
        drop(journal);
    }
    println!(
        "power loss: {} crash points over {disk_number} disks in {:.2?} (seed {seed:#x})\n  \
         crashes {:?}\n  reordered {}, writes torn {}, writes lost {}, fsyncs failed {}\n  \
         cuts: {} torn tails, {} unacknowledged records behind a surviving later one\n  \
         unacknowledged records survived whole at {} points; {} records verified; {} checkpoints \
         written, {} replays from a checkpoint",
        stats.crash_points,
        started.elapsed(),
        stats.crashes,
        stats.reordered,
        stats.writes_torn,
        stats.writes_lost,
        stats.fsyncs_failed,
        stats.cuts_torn_tail,
        stats.cuts_unacknowledged,
        stats.unacknowledged_survived,
        stats.records_verified,
        stats.checkpoints_written,
        stats.replays_from_checkpoint,
    );
    if crash_points >= CRASH_POINTS_DEBUG {
        // The run must have reached the states it exists for.
        assert_eq!(stats.crashes.len(), 4, "every kind of crash ran");
        assert!(stats.reordered > 0, "no crash reordered writes");
        assert!(stats.writes_torn > 0, "no crash tore a write");
        assert!(stats.fsyncs_failed > 0, "no fsync failed");
        assert!(stats.cuts_torn_tail > 0, "no torn tail was cut");
        assert!(
            stats.cuts_unacknowledged > 0,
            "no later record survived without an earlier one"
        );
        assert!(
            stats.replays_from_checkpoint > 0,
            "no replay from a checkpoint"
        );
    }
}

mod targeted;
