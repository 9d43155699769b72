//! Damage before the tail: `open` refuses, names op, segment and offset, and writes nothing.

use std::path::{Path, PathBuf};

use tally_journal::{
    inspect, Damage, Evidence, Journal, JournalError, Options, RecordPosition, TailSummary,
    HEADER_SIZE_BYTES, RECORD_ALIGNMENT_BYTES,
};

use crate::common::{
    append_standard, copy_directory, formatted, options, segment_edit, snapshot, verify_standard,
    SEGMENT_SIZE_BYTES,
};

const BODY_SIZE_MAX: u64 = 40 * 1024;
/// Records synced in batches of BATCH, then one last batch synced once at the end.
const BATCH: usize = 5;

/// About three segments of records, synced every BATCH records, the last batch synced once.
fn template() -> (tempfile::TempDir, PathBuf, Vec<RecordPosition>) {
    let (temporary, directory) = formatted();
    let (mut journal, _) = Journal::open(&directory, options()).expect("open");
    let mut positions: Vec<RecordPosition> = Vec::new();
    while positions.last().is_none_or(|position| position.segment < 2) {
        positions.push(append_standard(&mut journal, BODY_SIZE_MAX));
        if positions.len() % BATCH == 0 {
            journal.sync().expect("sync");
        }
    }
    let remainder = BATCH - positions.len() % BATCH;
    for _ in 0..remainder + BATCH {
        positions.push(append_standard(&mut journal, BODY_SIZE_MAX));
        if positions.len() % BATCH == 0 && positions.len() % (2 * BATCH) != 0 {
            journal.sync().expect("sync");
        }
    }
    journal.sync().expect("sync");
    (temporary, directory, positions)
}

fn flip_bit(directory: &Path, position: &RecordPosition, offset_in_record: u64, bit: u8) {
    let offset = (position.offset + offset_in_record) as usize;
    segment_edit(directory, position.segment, |bytes| {
        bytes[offset] ^= 1 << bit
    });
}

fn record_size(position: &RecordPosition) -> u64 {
    let size = HEADER_SIZE_BYTES + u64::from(position.body_size);
    size.div_ceil(RECORD_ALIGNMENT_BYTES) * RECORD_ALIGNMENT_BYTES
}

/// Opens, expects a refusal at `victim`, and checks that no file changed (open and inspect).
fn refused(directory: &Path, victim: &RecordPosition, options: Options) -> (Damage, Evidence) {
    let before = snapshot(directory);
    let result = Journal::open(directory, options);
    let (damage, evidence) = match result {
        Err(JournalError::Corrupt {
            op,
            segment,
            offset,
            damage,
            evidence,
        }) => {
            assert_eq!(
                (op, segment, offset),
                (victim.op, victim.segment, victim.offset)
            );
            (damage, evidence)
        }
        Err(error) => panic!("expected Corrupt at op {}, got {error}", victim.op),
        Ok((_, recovery)) => panic!("expected Corrupt at op {}, opened: {recovery:?}", victim.op),
    };
    let error = JournalError::Corrupt {
        op: victim.op,
        segment: victim.segment,
        offset: victim.offset,
        damage,
        evidence,
    };
    let message = error.to_string();
    assert!(message.contains(&format!("op {}", victim.op)), "{message}");
    assert!(
        message.contains(&format!("offset {}", victim.offset)),
        "{message}"
    );
    let inspection = inspect(directory).expect("inspect");
    match inspection.tail {
        TailSummary::Corrupt {
            op,
            segment,
            offset,
            ..
        } => {
            assert_eq!(
                (op, segment, offset),
                (victim.op, victim.segment, victim.offset)
            );
        }
        other => panic!("inspect missed the damage at op {}: {other:?}", victim.op),
    }
    assert!(!inspection.is_clean());
    assert!(
        snapshot(directory) == before,
        "a refused open or inspect changed a file"
    );
    (damage, evidence)
}

#[test]
fn damage_before_the_tail_is_refused_without_writing() {
    let (temporary, template_directory, positions) = template();
    let last_in_segment_0 = positions
        .iter()
        .rev()
        .find(|p| p.segment == 0)
        .expect("segment 0");
    let middle = &positions[positions.len() / 2];
    let with_body = positions
        .iter()
        .find(|p| p.body_size > 1000)
        .expect("a body");
    // (name, victim, edit, expected damage)
    type Edit = fn(&Path, &RecordPosition);
    let cases: [(&str, &RecordPosition, Edit, Damage); 6] = [
        (
            "first header",
            &positions[0],
            |d, v| flip_bit(d, v, 50, 3),
            Damage::HeaderChecksum,
        ),
        (
            "first body",
            with_body,
            |d, v| flip_bit(d, v, 1000, 0),
            Damage::BodyChecksum,
        ),
        (
            "middle header",
            middle,
            |d, v| flip_bit(d, v, 5, 7),
            Damage::HeaderChecksum,
        ),
        (
            "middle body end",
            middle,
            |d, v| flip_bit(d, v, 127 + u64::from(v.body_size), 1),
            { Damage::BodyChecksum },
        ),
        (
            "last of segment 0",
            last_in_segment_0,
            |d, v| flip_bit(d, v, 40, 2),
            { Damage::HeaderChecksum },
        ),
        (
            "lost header write",
            middle,
            |d, v| {
                let offset = v.offset as usize;
                segment_edit(d, v.segment, |bytes| bytes[offset..offset + 128].fill(0));
            },
            Damage::HeaderZero,
        ),
    ];
    for (index, (name, victim, edit, damage_expected)) in cases.into_iter().enumerate() {
        let directory = temporary.path().join(format!("case-{index}"));
        copy_directory(&template_directory, &directory);
        let body_empty = victim.body_size == 0 && damage_expected == Damage::BodyChecksum;
        assert!(!body_empty, "case {name} needs a body");
        edit(&directory, victim);
        let (damage, evidence) = refused(&directory, victim, options());
        assert_eq!(damage, damage_expected, "case {name}");
        assert!(
            matches!(evidence, Evidence::Synced { .. }),
            "case {name}: {evidence:?}"
        );
        // The operator's override never cuts proven damage.
        let cut = Options {
            cut_unproven_tail: true,
            ..options()
        };
        refused(&directory, victim, cut);
    }
}

#[test]
fn a_misdirected_record_is_refused() {
    let (temporary, template_directory, positions) = template();
    // Copy record v-1 over record v, where it fits in v's place: a write that went astray.
    let index = (positions.len() / 3..positions.len())
        .find(|&index| record_size(&positions[index - 1]) <= record_size(&positions[index]))
        .expect("a pair of records");
    let (source, victim) = (positions[index - 1], positions[index]);
    let directory = temporary.path().join("misdirected");
    copy_directory(&template_directory, &directory);
    let bytes =
        std::fs::read(crate::common::segment_path(&directory, source.segment)).expect("read");
    let record = bytes[source.offset as usize..][..record_size(&source) as usize].to_vec();
    segment_edit(&directory, victim.segment, |target| {
        target[victim.offset as usize..][..record.len()].copy_from_slice(&record);
    });
    let (damage, evidence) = refused(&directory, &victim, options());
    assert_eq!(
        damage,
        Damage::OpMismatch {
            op_found: source.op
        }
    );
    assert!(
        matches!(evidence, Evidence::OutOfOrder { op, .. } if op == source.op),
        "{evidence:?}"
    );
}

#[test]
fn unproven_damage_is_refused_unless_the_operator_cuts_it() {
    let (temporary, template_directory, positions) = template();
    // The last batch was synced once, at the end: nothing after its records proves them synced.
    let victim = positions[positions.len() - 3];
    let directory = temporary.path().join("unproven");
    copy_directory(&template_directory, &directory);
    flip_bit(&directory, &victim, 20, 4);
    let (damage, evidence) = refused(&directory, &victim, options());
    assert_eq!(damage, Damage::HeaderChecksum);
    let later = positions[positions.len() - 2];
    let expected = Evidence::Unproven {
        op: later.op,
        segment: later.segment,
        offset: later.offset,
    };
    assert_eq!(evidence, expected);
    assert!(evidence.to_string().contains("cut_unproven_tail"));

    let cut = Options {
        cut_unproven_tail: true,
        ..options()
    };
    let (journal, recovery) = Journal::open(&directory, cut).expect("open with the override");
    let cut = recovery.cut.expect("a cut");
    assert_eq!(
        (cut.op, cut.segment, cut.offset),
        (victim.op, victim.segment, victim.offset)
    );
    assert_eq!(cut.evidence, Some(expected));
    assert_eq!(recovery.op_last, victim.op - 1);
    verify_standard(&journal, BODY_SIZE_MAX);
    drop(journal);
    let (_, recovery) = Journal::open(&directory, options()).expect("clean open");
    assert!(recovery.cut.is_none());
    assert_eq!(recovery.op_last, victim.op - 1);
}

#[test]
fn junk_in_the_unused_end_of_a_segment_is_not_damage() {
    let (temporary, template_directory, positions) = template();
    let last_in_segment_0 = positions
        .iter()
        .rev()
        .find(|p| p.segment == 0)
        .expect("segment 0");
    let gap_start = last_in_segment_0.offset + record_size(last_in_segment_0);
    assert!(
        gap_start < SEGMENT_SIZE_BYTES,
        "the template leaves a gap at segment 0's end"
    );
    let directory = temporary.path().join("gap");
    copy_directory(&template_directory, &directory);
    segment_edit(&directory, 0, |bytes| bytes[gap_start as usize] = 0x5A);
    let (journal, recovery) = Journal::open(&directory, options()).expect("open");
    assert!(recovery.cut.is_none());
    assert_eq!(verify_standard(&journal, BODY_SIZE_MAX), positions);
}

#[test]
fn a_record_from_another_log_breaks_the_chain() {
    let (temporary, template_directory, positions) = template();
    // The same records in a journal of another cluster: same sizes and places, another chain.
    let foreign = temporary.path().join("foreign");
    Journal::format(&foreign, &options(), 0xF0).expect("format");
    let (mut journal, _) = Journal::open(&foreign, options()).expect("open");
    for position in &positions[..positions.len() / 2 + 1] {
        let foreign_position = append_standard(&mut journal, BODY_SIZE_MAX);
        assert_eq!(foreign_position, *position);
        if position.op % BATCH as u64 == 0 {
            journal.sync().expect("sync");
        }
    }
    drop(journal);
    let victim = positions[positions.len() / 2];
    let bytes = std::fs::read(crate::common::segment_path(&foreign, victim.segment)).expect("read");
    let record = bytes[victim.offset as usize..][..record_size(&victim) as usize].to_vec();
    let directory = temporary.path().join("spliced");
    copy_directory(&template_directory, &directory);
    segment_edit(&directory, victim.segment, |target| {
        target[victim.offset as usize..][..record.len()].copy_from_slice(&record);
    });
    let (damage, evidence) = refused(&directory, &victim, options());
    assert_eq!(damage, Damage::ParentMismatch);
    assert!(matches!(evidence, Evidence::Synced { .. }), "{evidence:?}");
}

/// A copy of record E at the next segment's start, where E did not belong (it fit where it was),
/// must not be followed when E itself is damaged: that would drop the records after E unseen.
#[test]
fn a_stray_copy_at_the_next_segment_does_not_hide_later_records() {
    let (temporary, template_directory, positions) = template();
    let segment_last = positions.last().expect("records").segment;
    let in_last: Vec<&RecordPosition> = positions
        .iter()
        .filter(|p| p.segment == segment_last)
        .collect();
    let victim = *in_last[1];
    assert!(victim.offset > 0);
    assert!(
        in_last.len() > 2,
        "records follow the victim in its segment"
    );
    let directory = temporary.path().join("stray");
    copy_directory(&template_directory, &directory);
    let bytes =
        std::fs::read(crate::common::segment_path(&directory, victim.segment)).expect("read");
    let record = bytes[victim.offset as usize..][..record_size(&victim) as usize].to_vec();
    // The spare segment after the last one exists (appends keep one ahead) and is all zeros.
    segment_edit(&directory, segment_last + 1, |target| {
        target[..record.len()].copy_from_slice(&record)
    });
    flip_bit(&directory, &victim, 70, 5);
    let (damage, _) = refused(&directory, &victim, options());
    assert_eq!(damage, Damage::HeaderChecksum);
}
