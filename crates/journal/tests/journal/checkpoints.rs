//! Checkpoints: written atomically into alternating slots; a damaged, foreign or too-new one is
//! passed over for the other.

use std::fs;
use std::path::Path;

use tally_journal::{CheckpointProblem, Journal, JournalError, Options};

use crate::common::{append_standard, formatted, options};

const BODY_SIZE_MAX: u64 = 8 * 1024;

fn state_for(op: u64, size_bytes: usize) -> Vec<u8> {
    (0..size_bytes)
        .map(|index| (index as u64 ^ op.wrapping_mul(31)) as u8)
        .collect()
}

fn append_until(journal: &mut Journal, op: u64) {
    while journal.op_last() < op {
        append_standard(journal, BODY_SIZE_MAX);
    }
}

fn checkpoint_op(directory: &Path) -> Option<u64> {
    let (_, recovery) = Journal::open(directory, options()).expect("open");
    recovery.checkpoint.map(|checkpoint| checkpoint.op)
}

#[test]
fn checkpoints_alternate_slots_and_read_back_whole() {
    let (_temporary, directory) = formatted();
    let (mut journal, _) = Journal::open(&directory, options()).expect("open");
    append_until(&mut journal, 40);
    // Not synced yet: the checkpoint syncs the log through its op first.
    assert!(journal.op_synced() < 40);
    journal
        .write_checkpoint(40, &state_for(40, 100_000))
        .expect("checkpoint 40");
    assert!(journal.op_synced() >= 40);
    append_until(&mut journal, 80);
    journal
        .write_checkpoint(80, &state_for(80, 3_000_000))
        .expect("checkpoint 80");
    append_until(&mut journal, 90);
    journal.sync().expect("sync");
    drop(journal);
    assert!(directory.join("checkpoint-a").exists());
    assert!(directory.join("checkpoint-b").exists());

    let (journal, recovery) = Journal::open(&directory, options()).expect("reopen");
    let checkpoint = recovery.checkpoint.expect("a checkpoint");
    assert_eq!(checkpoint.op, 80);
    assert!(checkpoint.state() == &state_for(80, 3_000_000)[..]);
    assert!(recovery.checkpoints_rejected.is_empty());
    // Replay resumes after the checkpoint.
    let replay: Vec<u64> = journal
        .records_from(checkpoint.op + 1)
        .map(|r| r.position.op)
        .collect();
    assert_eq!(replay, (81..=90).collect::<Vec<_>>());
}

#[test]
fn a_garbled_newest_checkpoint_falls_back_to_the_older() {
    let (_temporary, directory) = formatted();
    let (mut journal, _) = Journal::open(&directory, options()).expect("open");
    append_until(&mut journal, 20);
    journal
        .write_checkpoint(10, &state_for(10, 5000))
        .expect("checkpoint 10");
    journal
        .write_checkpoint(20, &state_for(20, 5000))
        .expect("checkpoint 20");
    drop(journal);
    // Slot a holds op 10, slot b op 20. Damage b in three ways, one after the other.
    let path_b = directory.join("checkpoint-b");
    let original = fs::read(&path_b).expect("read");
    let damages: [(&str, Vec<u8>); 3] = [
        ("state bit", {
            let mut b = original.clone();
            b[3000] ^= 0x10;
            b
        }),
        ("header bit", {
            let mut b = original.clone();
            b[81] ^= 0x01;
            b
        }),
        ("torn write", original[..2000].to_vec()),
    ];
    for (name, bytes) in damages {
        fs::write(&path_b, &bytes).expect("damage");
        let (_, recovery) = Journal::open(&directory, options()).expect("open");
        let checkpoint = recovery.checkpoint.expect("the older checkpoint");
        assert_eq!(checkpoint.op, 10, "{name}");
        assert!(checkpoint.state() == &state_for(10, 5000)[..]);
        assert_eq!(recovery.checkpoints_rejected.len(), 1, "{name}");
        assert_eq!(recovery.checkpoints_rejected[0].file, "checkpoint-b");
        assert!(matches!(
            recovery.checkpoints_rejected[0].problem,
            CheckpointProblem::Invalid { .. }
        ));
    }
    // The next checkpoint replaces the damaged slot, never the only good one.
    let (mut journal, _) = Journal::open(&directory, options()).expect("open");
    append_until(&mut journal, 30);
    journal
        .write_checkpoint(30, &state_for(30, 5000))
        .expect("checkpoint 30");
    drop(journal);
    assert_eq!(checkpoint_op(&directory), Some(30));
    fs::write(&path_b, b"garbage").expect("damage");
    assert_eq!(
        checkpoint_op(&directory),
        Some(10),
        "slot a still holds op 10"
    );
}

/// Two journals of one cluster with the same records agree on their checksums, so a checkpoint
/// can be carried from one to the other: to a shorter log (beyond its end) and to a log whose
/// record at the checkpoint's op differs (not in its chain).
#[test]
fn a_checkpoint_beyond_the_log_or_off_the_chain_is_ignored() {
    let (_temporary_long, long) = formatted();
    let (_temporary_short, short) = formatted();
    for (directory, op_last) in [(&long, 12), (&short, 6)] {
        let (mut journal, _) = Journal::open(directory, options()).expect("open");
        append_until(&mut journal, 5);
        journal
            .write_checkpoint(5, &state_for(5, 64))
            .expect("checkpoint 5");
        append_until(&mut journal, op_last);
        journal.sync().expect("sync");
    }
    let (mut journal, _) = Journal::open(&long, options()).expect("open long");
    journal
        .write_checkpoint(12, &state_for(12, 64))
        .expect("checkpoint 12");
    drop(journal);
    fs::copy(long.join("checkpoint-b"), short.join("checkpoint-b")).expect("copy");
    let (_, recovery) = Journal::open(&short, options()).expect("open short");
    assert_eq!(recovery.checkpoint.expect("checkpoint").op, 5);
    let problem = &recovery.checkpoints_rejected[0].problem;
    assert_eq!(
        *problem,
        CheckpointProblem::BeyondLog { op: 12, op_last: 6 }
    );

    // A third log whose op 6 differs from the long log's op 6.
    let (_temporary_other, other) = formatted();
    let (mut journal, _) = Journal::open(&other, options()).expect("open other");
    append_until(&mut journal, 5);
    journal.append(1, 6, b"a different op 6").expect("append");
    append_until(&mut journal, 12);
    journal.sync().expect("sync");
    drop(journal);
    fs::copy(long.join("checkpoint-b"), other.join("checkpoint-b")).expect("copy");
    let (_, recovery) = Journal::open(&other, options()).expect("open other");
    assert!(recovery.checkpoint.is_none());
    assert_eq!(
        recovery.checkpoints_rejected[0].problem,
        CheckpointProblem::NotInChain { op: 12 }
    );
}

#[test]
fn checkpoint_edge_cases() {
    let (temporary, directory) = formatted();
    let (mut journal, _) = Journal::open(&directory, options()).expect("open");
    // Op 0: the state before any record, tied to the format marker.
    journal.write_checkpoint(0, &[]).expect("checkpoint 0");
    let too_large = vec![0; options().state_size_bytes_max as usize + 1];
    match journal.write_checkpoint(0, &too_large) {
        Err(JournalError::StateTooLarge { .. }) => {}
        other => panic!("expected StateTooLarge, got {other:?}"),
    }
    drop(journal);
    // A temporary left by an interrupted checkpoint write is removed and never read.
    fs::write(directory.join("checkpoint.tmp"), b"half a checkpoint").expect("write");
    let (_, recovery) = Journal::open(&directory, options()).expect("open");
    let checkpoint = recovery.checkpoint.expect("checkpoint 0");
    assert_eq!((checkpoint.op, checkpoint.state().len()), (0, 0));
    assert!(!directory.join("checkpoint.tmp").exists());
    // Another cluster's checkpoint is foreign.
    let foreign = temporary.path().join("foreign");
    Journal::format(&foreign, &options(), 99).expect("format");
    fs::copy(directory.join("checkpoint-a"), foreign.join("checkpoint-a")).expect("copy");
    let (_, recovery) = Journal::open(&foreign, Options { ..options() }).expect("open");
    assert!(recovery.checkpoint.is_none());
    let problem = &recovery.checkpoints_rejected[0].problem;
    assert_eq!(
        *problem,
        CheckpointProblem::Invalid {
            reason: "belongs to another cluster"
        }
    );
}

/// A checkpoint on the writer thread: the log goes on meanwhile, and the journal counts on the
/// checkpoint (its slot) only once the writer reports it durable.
#[test]
fn a_background_checkpoint_lands_while_the_log_goes_on() {
    let (_temporary, directory) = formatted();
    let (mut journal, _) = Journal::open(&directory, options()).expect("open");
    append_until(&mut journal, 40);
    assert!(!journal.checkpoint_in_flight());
    assert!(journal
        .checkpoint_poll()
        .expect("nothing in flight")
        .is_none());
    journal
        .checkpoint_start(40, state_for(40, 3_000_000))
        .expect("start 40");
    assert!(
        journal.op_synced() >= 40,
        "the log through op 40 is synced first"
    );
    assert!(journal.checkpoint_in_flight());
    // Appends and syncs go on while the writer writes.
    append_until(&mut journal, 60);
    journal.sync().expect("sync");
    let landed = journal.checkpoint_wait().expect("checkpoint 40 lands");
    let landed = landed.expect("it was in flight");
    assert_eq!(landed.op, 40);
    assert!(
        landed.state == state_for(40, 3_000_000),
        "the state comes back"
    );
    assert!(!journal.checkpoint_in_flight());
    assert!(journal
        .checkpoint_wait()
        .expect("nothing in flight")
        .is_none());

    // The next one goes to the other slot: the landed one is the newest usable checkpoint.
    journal
        .checkpoint_start(60, state_for(60, 100_000))
        .expect("start 60");
    let landed = loop {
        if let Some(landed) = journal.checkpoint_poll().expect("checkpoint 60") {
            break landed;
        }
        std::thread::yield_now();
    };
    assert_eq!(landed.op, 60);
    drop(journal);
    let (_, recovery) = Journal::open(&directory, options()).expect("reopen");
    let checkpoint = recovery.checkpoint.expect("a checkpoint");
    assert_eq!(checkpoint.op, 60);
    assert!(checkpoint.state() == &state_for(60, 100_000)[..]);
    assert!(recovery.checkpoints_rejected.is_empty());
    assert!(directory.join("checkpoint-a").exists() && directory.join("checkpoint-b").exists());
}

/// A background write that fails reports the error `write_checkpoint` would have, when the
/// journal learns how it ended; its slot counts as empty, the older checkpoint stays the one
/// recovery uses, and the next checkpoint takes the failed slot.
#[test]
fn a_failed_background_checkpoint_reports_its_error_and_keeps_the_older_one() {
    let (_temporary, directory) = formatted();
    let (mut journal, _) = Journal::open(&directory, options()).expect("open");
    append_until(&mut journal, 10);
    journal
        .write_checkpoint(10, &state_for(10, 5000))
        .expect("checkpoint 10");
    append_until(&mut journal, 20);
    // A directory where the writer creates its temporary file: opening it for writing fails.
    let temporary = directory.join("checkpoint.tmp");
    fs::create_dir(&temporary).expect("a directory in the way");
    journal
        .checkpoint_start(20, state_for(20, 5000))
        .expect("start 20");
    match journal.checkpoint_wait() {
        Err(JournalError::Io { path, .. }) => assert_eq!(path, temporary),
        other => panic!("expected the writer's I/O error, got {other:?}"),
    }
    assert!(!journal.checkpoint_in_flight());
    // The log is unaffected.
    append_until(&mut journal, 30);
    journal.sync().expect("sync");
    fs::remove_dir(&temporary).expect("out of the way");
    drop(journal);
    assert_eq!(checkpoint_op(&directory), Some(10));

    let (mut journal, _) = Journal::open(&directory, options()).expect("open");
    journal
        .checkpoint_start(30, state_for(30, 5000))
        .expect("start 30");
    // A synchronous checkpoint waits for the one in flight, then goes to the other slot.
    journal
        .write_checkpoint(30, &state_for(30, 7000))
        .expect("checkpoint 30 again");
    drop(journal);
    let (_, recovery) = Journal::open(&directory, options()).expect("reopen");
    assert!(recovery.checkpoints_rejected.is_empty());
    let checkpoint = recovery.checkpoint.expect("checkpoint 30");
    assert_eq!(checkpoint.op, 30);
    // Both slots hold op 30 now (op 10 was replaced): the one chosen is either.
    let size = checkpoint.state().len();
    assert!(size == 5000 || size == 7000);
    for file in ["checkpoint-a", "checkpoint-b"] {
        let bytes = fs::read(directory.join(file)).expect("slot");
        assert!(
            bytes.len() == 128 + 5000 || bytes.len() == 128 + 7000,
            "{file}"
        );
    }
}
