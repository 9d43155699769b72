//! `inspect`: the summary of a healthy journal, of a torn one (read-only: nothing is cut), and the
//! refusal to look at a journal open for writing.

use std::fs;

use tally_journal::{inspect, CheckpointStatus, Journal, JournalError, TailSummary};

use crate::common::{
    append_standard, formatted, kind_for, options, segment_edit, snapshot, timestamp_for,
    SEGMENT_SIZE_BYTES,
};

const BODY_SIZE_MAX: u64 = 30 * 1024;

#[test]
fn inspect_summarises_a_healthy_journal() {
    let (_temporary, directory) = formatted();
    let (mut journal, _) = Journal::open(&directory, options()).expect("open");
    let mut body_size_bytes_total = 0;
    for _ in 0..100 {
        body_size_bytes_total += u64::from(append_standard(&mut journal, BODY_SIZE_MAX).body_size);
    }
    journal
        .write_checkpoint(60, b"state at 60")
        .expect("checkpoint");
    journal.sync().expect("sync");
    drop(journal);
    let before = snapshot(&directory);
    let inspection = inspect(&directory).expect("inspect");
    assert!(snapshot(&directory) == before);
    assert!(inspection.is_clean());
    assert_eq!(inspection.op_last, 100);
    assert_eq!(inspection.segment_size_bytes, SEGMENT_SIZE_BYTES);
    assert!(inspection.segment_count >= 2);
    assert_eq!(inspection.body_size_bytes_total, body_size_bytes_total);
    assert_eq!(inspection.timestamp_first, Some(timestamp_for(1)));
    assert_eq!(inspection.timestamp_last, Some(timestamp_for(100)));
    assert_eq!(inspection.timestamp_regression_op, None);
    let records: u64 = inspection.kinds.values().map(|kind| kind.records).sum();
    assert_eq!(records, 100);
    let kind_1 = (1..=100).filter(|op| kind_for(*op) == 1).count() as u64;
    assert_eq!(inspection.kinds[&1].records, kind_1);
    assert_eq!(
        inspection.checkpoints[0],
        CheckpointStatus::Usable { op: 60 }
    );
    assert_eq!(inspection.checkpoints[1], CheckpointStatus::Missing);
    assert_eq!(inspection.checkpoint_chosen, Some((60, 11)));
    let text = inspection.to_string();
    for expected in [
        "records     100 (ops 1..=100)",
        "strictly increasing",
        "checkpoint-a  op 60",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    assert!(text.contains("tail        clean"), "{text}");
    println!("{text}");
}

#[test]
fn inspect_reports_a_torn_tail_without_cutting_it() {
    let (_temporary, directory) = formatted();
    let (mut journal, _) = Journal::open(&directory, options()).expect("open");
    let mut position = append_standard(&mut journal, BODY_SIZE_MAX);
    while position.op < 5 || position.body_size < 64 {
        position = append_standard(&mut journal, BODY_SIZE_MAX);
    }
    journal.sync().expect("sync");
    drop(journal);
    // Garble the last record's body: a torn tail.
    let offset = (position.body_offset() + 10) as usize;
    segment_edit(&directory, position.segment, |bytes| bytes[offset] ^= 0xFF);
    fs::write(directory.join("checkpoint-b"), b"not a checkpoint").expect("write");
    let before = snapshot(&directory);
    let inspection = inspect(&directory).expect("inspect");
    assert!(snapshot(&directory) == before, "inspect wrote");
    assert!(!inspection.is_clean());
    assert_eq!(inspection.op_last, position.op - 1);
    match inspection.tail {
        TailSummary::Torn {
            op,
            segment,
            offset,
            bytes,
            ..
        } => {
            assert_eq!(
                (op, segment, offset),
                (position.op, position.segment, position.offset)
            );
            assert!(bytes > 0);
        }
        other => panic!("expected a torn tail, got {other:?}"),
    }
    assert!(matches!(
        inspection.checkpoints[1],
        CheckpointStatus::Rejected(_)
    ));
    let text = inspection.to_string();
    assert!(
        text.contains(&format!("torn at op {}", position.op)),
        "{text}"
    );
    assert!(text.contains("checkpoint-b  UNUSABLE"), "{text}");
    println!("{text}");
}

#[test]
fn inspect_refuses_a_journal_open_for_writing() {
    let (_temporary, directory) = formatted();
    let (journal, _) = Journal::open(&directory, options()).expect("open");
    match inspect(&directory) {
        Err(JournalError::Locked { .. }) => {}
        other => panic!("expected Locked, got {other:?}"),
    }
    drop(journal);
    let inspection = inspect(&directory).expect("inspect");
    assert_eq!(inspection.op_last, 0);
    assert!(inspection.is_clean());
}
