//! Append, sync and reopen: the log reads back byte for byte, and positions stay valid.

use std::time::Instant;

use tally_journal::{Journal, JournalError, Options, SyncMode, HEADER_SIZE_BYTES};

use crate::common::{
    append_standard, body_for, formatted, kind_for, options, timestamp_for, verify_standard, Rng,
    CLUSTER, SEGMENT_SIZE_BYTES,
};

const BODY_SIZE_MAX: u64 = 96 * 1024;

#[test]
fn round_trip_across_segments_with_overlapping_syncs() {
    let (_temporary, directory) = formatted();
    let (mut journal, recovery) = Journal::open(&directory, options()).expect("open");
    assert_eq!(recovery.op_last, 0);
    assert!(recovery.cut.is_none());
    assert!(recovery.checkpoint.is_none());
    let mut positions = Vec::new();
    let mut rng = Rng::new(7);
    let mut ticket_previous = None;
    let mut sync_latencies_ns = Vec::new();
    // About 48 KiB per record on average: 120 records cross five or six 1 MiB segments.
    while positions.len() < 120 {
        for _ in 0..rng.range(1, 6) {
            let position = append_standard(&mut journal, BODY_SIZE_MAX);
            // Readable at once, before any sync.
            assert_eq!(
                journal.body(position),
                &body_for(position.op, BODY_SIZE_MAX)[..]
            );
            positions.push(position);
        }
        let started = Instant::now();
        let ticket = journal.sync_begin().expect("sync_begin");
        assert_eq!(ticket.op(), journal.op_last());
        if let Some(previous) = ticket_previous.replace(ticket) {
            journal.sync_wait(previous).expect("sync_wait");
            assert!(journal.op_synced() >= previous.op());
        }
        sync_latencies_ns.push(started.elapsed().as_nanos());
    }
    journal
        .sync_wait(ticket_previous.expect("a ticket"))
        .expect("sync_wait");
    assert_eq!(journal.op_synced(), journal.op_last());
    let segment_last = positions.last().expect("records").segment;
    assert!(
        segment_last >= 4,
        "records should span several segments, ended in {segment_last}"
    );
    sync_latencies_ns.sort_unstable();
    println!(
        "io_uring: {}, sync begin+wait-previous p50 {} us",
        journal.sync_uses_io_uring(),
        sync_latencies_ns[sync_latencies_ns.len() / 2] / 1000
    );
    drop(journal);

    let (journal, recovery) = Journal::open(&directory, options()).expect("reopen");
    assert_eq!(recovery.op_last, 120);
    assert!(recovery.cut.is_none());
    assert_eq!(verify_standard(&journal, BODY_SIZE_MAX), positions);
    for position in &positions {
        let body = journal.bytes_at(
            position.segment,
            position.body_offset(),
            position.body_size.into(),
        );
        assert_eq!(body, &body_for(position.op, BODY_SIZE_MAX)[..]);
    }
    // Starting anywhere, including on both sides of the sparse index's stride.
    for op in [1, 2, 63, 64, 65, 66, 100, 120] {
        let first = journal.records_from(op).next().expect("a record");
        assert_eq!(first.position, positions[op as usize - 1]);
        assert_eq!(journal.records_from(op).count() as u64, 120 - op + 1);
    }
    assert_eq!(journal.records_from(121).count(), 0);
}

#[test]
fn appends_continue_the_chain_after_reopen() {
    let (_temporary, directory) = formatted();
    for round in 1..=3u64 {
        let (mut journal, recovery) = Journal::open(&directory, options()).expect("open");
        assert_eq!(recovery.op_last, (round - 1) * 30);
        assert_eq!(
            journal.op_synced(),
            journal.op_last(),
            "recovered records are durable"
        );
        for _ in 0..30 {
            append_standard(&mut journal, BODY_SIZE_MAX);
        }
        journal.sync().expect("sync");
        verify_standard(&journal, BODY_SIZE_MAX);
    }
    let (journal, recovery) = Journal::open(&directory, options()).expect("open");
    assert_eq!(recovery.op_last, 90);
    verify_standard(&journal, BODY_SIZE_MAX);
}

#[test]
fn records_fill_segments_exactly_and_empty_bodies_work() {
    let (_temporary, directory) = formatted();
    let (mut journal, _) = Journal::open(&directory, options()).expect("open");
    // Four records of exactly a quarter segment fill segment 0 to its last byte.
    let body_quarter = vec![0xAB; (SEGMENT_SIZE_BYTES / 4 - HEADER_SIZE_BYTES) as usize];
    for op in 1..=4 {
        let position = journal.append(1, op, &body_quarter).expect("append");
        assert_eq!(position.segment, 0);
        assert_eq!(position.offset, (op - 1) * SEGMENT_SIZE_BYTES / 4);
    }
    let empty = journal.append(2, 5, &[]).expect("append empty");
    assert_eq!((empty.segment, empty.offset, empty.body_size), (1, 0, 0));
    assert_eq!(journal.body(empty), &[] as &[u8]);
    // A record that does not fit in the rest of segment 1 starts segment 2.
    let body_large = vec![0xCD; 200 * 1024];
    for op in 6..=10 {
        journal.append(3, op, &body_large).expect("append");
    }
    let position = journal.append(3, 11, &body_large).expect("append");
    assert_eq!((position.segment, position.offset), (2, 0));
    journal.sync().expect("sync");
    drop(journal);

    let (journal, recovery) = Journal::open(&directory, options()).expect("reopen");
    assert_eq!(recovery.op_last, 11);
    assert!(recovery.cut.is_none());
    let records: Vec<_> = journal.records_from(1).collect();
    assert_eq!(records[4].position, empty);
    assert_eq!(records[10].position, position);
    assert_eq!(records[10].body, &body_large[..]);
    assert_eq!(records[3].body, &body_quarter[..]);
}

#[test]
fn blocking_sync_mode_round_trips() {
    let (_temporary, directory) = formatted();
    let blocking = Options {
        sync_mode: SyncMode::Blocking,
        ..options()
    };
    let (mut journal, _) = Journal::open(&directory, blocking.clone()).expect("open");
    assert!(!journal.sync_uses_io_uring());
    for _ in 0..40 {
        append_standard(&mut journal, BODY_SIZE_MAX);
    }
    let ticket = journal.sync_begin().expect("sync_begin");
    assert_eq!(
        journal.op_synced(),
        40,
        "a blocking sync is complete when begin returns"
    );
    journal.sync_wait(ticket).expect("sync_wait");
    drop(journal);
    let (journal, recovery) = Journal::open(&directory, blocking).expect("reopen");
    assert_eq!(recovery.op_last, 40);
    verify_standard(&journal, BODY_SIZE_MAX);
}

/// `sync_poll` never blocks and never reports a ticket done before its completion is seen: with
/// the ring it turns true on its own while the test only polls; a blocking sync is done when
/// `sync_begin` returns. What it reported durable is in the log after a reopen.
#[test]
fn a_sync_poll_reports_done_only_once_the_fsync_completed() {
    for sync_mode in [SyncMode::IoUring, SyncMode::Blocking] {
        let (_temporary, directory) = formatted();
        let options = Options {
            sync_mode,
            ..options()
        };
        let (mut journal, _) = Journal::open(&directory, options.clone()).expect("open");
        for _ in 0..8 {
            append_standard(&mut journal, BODY_SIZE_MAX);
        }
        let ticket = journal.sync_begin().expect("sync_begin");
        let mut polls = 0u32;
        // Bounded: 10 s for the fsync of a few records, else polling alone never sees it.
        while !journal.sync_poll(ticket).expect("sync_poll") {
            assert!(journal.op_synced() < ticket.op(), "{sync_mode:?}");
            polls += 1;
            assert!(polls < 10_000, "{sync_mode:?}: the fsync never showed up");
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert_eq!(journal.op_synced(), 8, "{sync_mode:?}");
        if sync_mode == SyncMode::Blocking {
            assert_eq!(polls, 0, "a blocking sync is done on return");
        }
        assert!(journal.sync_poll(ticket).expect("again"), "{sync_mode:?}");
        journal
            .sync_wait(ticket)
            .expect("a done ticket waits for nothing");
        drop(journal);
        let (journal, recovery) = Journal::open(&directory, options).expect("reopen");
        assert_eq!(recovery.op_last, 8, "{sync_mode:?}");
        verify_standard(&journal, BODY_SIZE_MAX);
    }
}

#[test]
fn a_third_sync_waits_for_the_oldest_and_tickets_complete_in_order() {
    let (_temporary, directory) = formatted();
    let (mut journal, _) = Journal::open(&directory, options()).expect("open");
    let mut tickets = Vec::new();
    for op in 1..=3 {
        append_standard(&mut journal, BODY_SIZE_MAX);
        assert_eq!(journal.op_sync_begun(), op - 1, "an append begins no sync");
        tickets.push(journal.sync_begin().expect("sync_begin"));
        // Begun covers the op whether or not its fsync has completed yet.
        assert_eq!(journal.op_sync_begun(), op);
        assert!(journal.op_synced() <= op);
    }
    assert!(
        journal.op_synced() >= 1,
        "the third begin waited for the first"
    );
    // Waiting on the newest covers the older ones; waiting on an old one again is a no-op.
    journal.sync_wait(tickets[2]).expect("sync_wait");
    assert_eq!(journal.op_synced(), 3);
    journal.sync_wait(tickets[0]).expect("sync_wait");
    journal.sync_wait(tickets[1]).expect("sync_wait");
    // A sync with nothing new to write completes too.
    journal.sync().expect("empty sync");
}

#[test]
fn append_refuses_a_body_over_the_limit_and_changes_nothing() {
    let (_temporary, directory) = formatted();
    let (mut journal, _) = Journal::open(&directory, options()).expect("open");
    append_standard(&mut journal, BODY_SIZE_MAX);
    let body = vec![1; options().body_size_bytes_max as usize + 1];
    match journal.append(1, 2, &body) {
        Err(JournalError::BodyTooLarge {
            body_size_bytes, ..
        }) => {
            assert_eq!(body_size_bytes, body.len() as u64);
        }
        other => panic!("expected BodyTooLarge, got {other:?}"),
    }
    assert_eq!(journal.op_last(), 1);
    let position = journal.append(kind_for(2), timestamp_for(2), &body_for(2, BODY_SIZE_MAX));
    assert_eq!(position.expect("append").op, 2);
    journal.sync().expect("sync");
}

#[test]
fn format_open_and_lock_refusals() {
    let (temporary, directory) = formatted();
    match Journal::format(&directory, &options(), CLUSTER) {
        Err(JournalError::AlreadyFormatted { .. }) => {}
        other => panic!("expected AlreadyFormatted, got {other:?}"),
    }
    let empty = temporary.path().join("empty");
    std::fs::create_dir(&empty).expect("mkdir");
    match Journal::open(&empty, options()) {
        Err(JournalError::NotFormatted { .. }) => {}
        other => panic!("expected NotFormatted, got {:?}", other.map(|_| ())),
    }
    let (journal, _) = Journal::open(&directory, options()).expect("open");
    match Journal::open(&directory, options()) {
        Err(JournalError::Locked { .. }) => {}
        other => panic!("expected Locked, got {:?}", other.map(|_| ())),
    }
    drop(journal);
    let small = Options {
        body_size_bytes_max: SEGMENT_SIZE_BYTES as u32,
        ..options()
    };
    match Journal::open(&directory, small) {
        Err(JournalError::OptionsInvalid { .. }) => {}
        other => panic!("expected OptionsInvalid, got {:?}", other.map(|_| ())),
    }
    let tiny = Options {
        segment_size_bytes: 64 * 1024,
        body_size_bytes_max: 1024,
        ..options()
    };
    match Journal::format(&temporary.path().join("tiny"), &tiny, CLUSTER) {
        Err(JournalError::OptionsInvalid { .. }) => {}
        other => panic!("expected OptionsInvalid, got {other:?}"),
    }
}

/// The segment after the spare is allocated ahead, under its temporary name, by a thread of the
/// journal's; the append that needs it renames it, and the next one is prepared at once.
/// Closing the journal removes the prepared file.
#[test]
fn the_next_segment_is_prepared_ahead_and_removed_on_close() {
    let (_temporary, directory) = formatted();
    let segments = directory.join("journal");
    let temporary = |index: u32| segments.join(format!("segment-{index:08}.tmp"));
    // The preparing thread creates the file soon after it starts.
    let appears = |index: u32| {
        let started = Instant::now();
        while !temporary(index).exists() && started.elapsed().as_secs() < 10 {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        temporary(index).exists()
    };
    let (mut journal, _) = Journal::open(&directory, options()).expect("open");
    // Segment 0 is the only one: segment 1, the first spare, is prepared from open on.
    assert!(appears(1), "segment 1 is not being prepared");
    append_standard(&mut journal, BODY_SIZE_MAX);
    assert_eq!(journal.segment_count(), 2, "the first append takes a spare");
    assert!(!temporary(1).exists(), "the prepared segment was renamed");
    assert!(appears(2), "segment 2 is not being prepared");
    // Appends that cross into the spare take segment 2 and start on segment 3.
    while journal.segment_count() < 3 {
        append_standard(&mut journal, BODY_SIZE_MAX);
    }
    assert!(appears(3), "segment 3 is not being prepared");
    let segment = std::fs::read(segments.join("segment-00000002")).expect("read");
    assert_eq!(segment.len() as u64, SEGMENT_SIZE_BYTES);
    assert!(segment.iter().all(|byte| *byte == 0), "a spare holds zeros");
    let op_last = journal.op_last();
    journal.sync().expect("sync");
    drop(journal);
    assert!(
        !temporary(3).exists(),
        "closing leaves a prepared temporary"
    );
    let (journal, recovery) = Journal::open(&directory, options()).expect("reopen");
    assert_eq!(recovery.op_last, op_last);
    assert!(recovery.cut.is_none());
    verify_standard(&journal, BODY_SIZE_MAX);
}
