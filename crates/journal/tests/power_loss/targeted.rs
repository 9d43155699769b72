//! The states the random run must reach, built on purpose: a record durable without its
//! predecessor (two syncs in flight) is cut, not refused; damage to a record the log proves was
//! acknowledged is refused with the proof; damage a power loss cannot leave, without proof, is
//! refused and names the operator's command, which then cuts it.

use std::path::{Path, PathBuf};

use tally_journal::{
    Crash, Evidence, FaultyDisk, FaultyStorage, Journal, JournalError, Options, RecordPosition,
};

use crate::{append, options, temporary_directory, Model, Rng, CLUSTER};

/// Attempts at a crash that keeps a later record and loses an earlier one.
const REORDER_SEEDS_MAX: u64 = 400;

fn formatted(disk: &FaultyDisk) -> (tempfile::TempDir, PathBuf, Journal<FaultyStorage>) {
    let temporary = temporary_directory();
    let directory = temporary.path().join("data");
    Journal::format_with(disk.storage(), &directory, &options(), CLUSTER).expect("format");
    let (journal, _) = Journal::open_with(disk.storage(), &directory, options()).expect("open");
    (temporary, directory, journal)
}

#[test]
fn a_record_durable_without_its_predecessor_is_cut_not_refused() {
    let mut found = None;
    for seed in 0..REORDER_SEEDS_MAX {
        let disk = FaultyDisk::new();
        let (_temporary, directory, mut journal) = formatted(&disk);
        let mut model = Model::new();
        let mut rng = Rng(seed);
        for _ in 0..3 {
            append(&mut journal, &mut model, &mut rng);
        }
        journal.sync().expect("sync");
        let op_acknowledged = journal.op_synced();
        // Two syncs in flight, as in group commit: record N in the first, N + 1.. in the second.
        append(&mut journal, &mut model, &mut rng);
        let first = journal.sync_begin().expect("sync_begin");
        append(&mut journal, &mut model, &mut rng);
        append(&mut journal, &mut model, &mut rng);
        let second = journal.sync_begin().expect("sync_begin");
        assert_eq!((first.op(), second.op()), (4, 6));
        let report = disk.crash(Crash::Reorder, seed);
        drop(journal);
        let (journal, recovery) = Journal::open_with(disk.storage(), &directory, options())
            .unwrap_or_else(|error| panic!("seed {seed}, {report:?}: refused: {error}"));
        assert!(recovery.op_last >= op_acknowledged, "seed {seed}");
        for (record, written) in journal.records_from(1).zip(&model.records) {
            assert!(record.body == written.body, "seed {seed}");
        }
        if let Some(cut) = recovery.cut {
            if let Some(evidence @ Evidence::Unacknowledged { op, op_synced, .. }) = cut.evidence {
                assert!(report.reordered, "seed {seed}: {report:?}");
                assert_eq!(cut.op, recovery.op_last + 1);
                assert!(op > cut.op && op_synced < cut.op, "{evidence:?}");
                found = Some((seed, cut, evidence));
                break;
            }
        }
    }
    let (seed, cut, evidence) = found.expect("no crash kept a later record without an earlier one");
    println!(
        "seed {seed}: cut at op {} ({}): {evidence}",
        cut.op, cut.damage
    );
}

/// Five batches of four records, each synced before the next: records of batch k carry
/// `op_synced` = the end of batch k - 1, so each batch but the last is proven synced by the next.
fn synced_batches(disk: &FaultyDisk) -> (tempfile::TempDir, PathBuf, Vec<RecordPosition>) {
    let (temporary, directory, mut journal) = formatted(disk);
    let mut model = Model::new();
    let mut rng = Rng(0x5EED);
    let mut positions = Vec::new();
    for _ in 0..5 {
        for _ in 0..4 {
            let mut position = append(&mut journal, &mut model, &mut rng);
            while position.body_size < 64 {
                position = append(&mut journal, &mut model, &mut rng);
            }
            positions.push(position);
        }
        journal.sync().expect("sync");
    }
    drop(journal);
    (temporary, directory, positions)
}

/// Opens `disk` in `directory` and expects a refusal at `victim`.
fn refused(
    disk: &FaultyDisk,
    directory: &Path,
    victim: &RecordPosition,
    options: Options,
) -> (Evidence, String) {
    let result = Journal::open_with(disk.storage(), directory, options);
    let error = match result {
        Err(error) => error,
        Ok((_, recovery)) => panic!("expected a refusal at op {}: {recovery:?}", victim.op),
    };
    let message = error.to_string();
    let JournalError::Corrupt {
        op,
        segment,
        offset,
        evidence,
        ..
    } = error
    else {
        panic!("expected Corrupt at op {}, got {message}", victim.op)
    };
    assert_eq!(
        (op, segment, offset),
        (victim.op, victim.segment, victim.offset)
    );
    for part in [
        format!("op {}", victim.op),
        format!("segment {}", victim.segment),
        format!("offset {}", victim.offset),
    ] {
        assert!(message.contains(&part), "{message}");
    }
    (evidence, message)
}

#[test]
fn damage_to_an_acknowledged_record_is_refused_with_the_proof() {
    let disk = FaultyDisk::new();
    let (_temporary, directory, positions) = synced_batches(&disk);
    // A bit flip in a body of the second batch: the third batch's records prove it synced.
    let victim = positions[5];
    disk.bit_flip(victim.segment, victim.body_offset() + 40, 3);
    let (evidence, message) = refused(&disk, &directory, &victim, options());
    assert!(
        matches!(evidence, Evidence::Synced { op_synced, .. } if op_synced >= victim.op),
        "{evidence:?}"
    );
    assert!(message.contains("proof"), "{message}");
    let consent = Options {
        cut_unproven_tail: true,
        ..options()
    };
    refused(&disk, &directory, &victim, consent);
}

#[test]
fn damage_a_power_loss_cannot_leave_is_refused_until_the_operator_cuts_it() {
    let disk = FaultyDisk::new();
    let (_temporary, directory, positions) = synced_batches(&disk);
    // A reserved byte of a header in the last batch: nothing proves the batch synced (no later
    // batch), but no write ever puts a nonzero byte there, so this is no power loss.
    let victim = positions[positions.len() - 3];
    disk.bit_flip(victim.segment, victim.offset + 100, 0);
    let (evidence, message) = refused(&disk, &directory, &victim, options());
    let later = positions[positions.len() - 2];
    assert_eq!(
        evidence,
        Evidence::Unproven {
            op: later.op,
            segment: later.segment,
            offset: later.offset
        }
    );
    assert!(
        message.contains("tally start --cut-unproven-tail"),
        "{message}"
    );
    let consent = Options {
        cut_unproven_tail: true,
        ..options()
    };
    let (_, recovery) =
        Journal::open_with(disk.storage(), &directory, consent).expect("cut with consent");
    let cut = recovery.cut.expect("a cut");
    assert_eq!((cut.op, cut.evidence), (victim.op, Some(evidence)));
    assert_eq!(recovery.op_last, victim.op - 1);
}

#[test]
fn a_checkpoint_proves_the_log_below_it_synced() {
    // A body bit flip in the last batch looks like a torn body: without a later proof it is cut
    // as unacknowledged (the limit of one copy, see docs/journal.md). A checkpoint at the last op
    // proves the batch synced, and turns the same damage into a refusal.
    for with_checkpoint in [false, true] {
        let disk = FaultyDisk::new();
        let (_temporary, directory, positions) = synced_batches(&disk);
        let op_last = positions.last().expect("records").op;
        if with_checkpoint {
            let (mut journal, _) =
                Journal::open_with(disk.storage(), &directory, options()).expect("open");
            journal
                .write_checkpoint(op_last, b"state")
                .expect("checkpoint");
        }
        let victim = positions[positions.len() - 3];
        disk.bit_flip(victim.segment, victim.body_offset() + 7, 6);
        if with_checkpoint {
            let (evidence, message) = refused(&disk, &directory, &victim, options());
            assert_eq!(
                evidence,
                Evidence::Checkpoint {
                    op: op_last,
                    file: "checkpoint-a"
                }
            );
            assert!(message.contains("checkpoint-a"), "{message}");
        } else {
            let (_, recovery) =
                Journal::open_with(disk.storage(), &directory, options()).expect("open");
            let cut = recovery.cut.expect("a cut");
            assert_eq!(cut.op, victim.op);
            assert!(matches!(
                cut.evidence,
                Some(Evidence::Unacknowledged { .. })
            ));
        }
    }
}
