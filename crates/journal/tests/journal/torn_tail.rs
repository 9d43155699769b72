//! Torn tails: whatever a crash leaves in the last records (zeros, garbage, a body without its
//! header) is cut back to the last whole record, reported once, and the log goes on from there.

use std::fs;
use std::path::{Path, PathBuf};

use tally_journal::{Journal, RecordPosition, HEADER_SIZE_BYTES, RECORD_ALIGNMENT_BYTES};

use crate::common::{
    append_standard, copy_directory, formatted, options, segment_edit, segment_path,
    verify_standard, Rng, SEGMENT_SIZE_BYTES,
};

const BODY_SIZE_MAX: u64 = 40 * 1024;
/// Tears land in the last TEAR_WINDOW records, which straddle the roll-over into segment 1.
const TEAR_WINDOW: usize = 4;
const CASES: u64 = 64;

fn address(position: &RecordPosition) -> u64 {
    u64::from(position.segment) * SEGMENT_SIZE_BYTES + position.offset
}

fn record_end(position: &RecordPosition) -> u64 {
    address(position) + HEADER_SIZE_BYTES + u64::from(position.body_size)
}

fn record_end_aligned(position: &RecordPosition) -> u64 {
    record_end(position).div_ceil(RECORD_ALIGNMENT_BYTES) * RECORD_ALIGNMENT_BYTES
}

/// A journal synced in batches that ends two records after the first record of segment 1, so the
/// tear window holds the end of segment 0 (and its zero gap) and the start of segment 1.
fn template() -> (tempfile::TempDir, PathBuf, Vec<RecordPosition>) {
    let (temporary, directory) = formatted();
    let (mut journal, _) = Journal::open(&directory, options()).expect("open");
    let mut positions: Vec<RecordPosition> = Vec::new();
    let mut records_in_segment_1 = 0;
    while records_in_segment_1 < TEAR_WINDOW - 1 {
        let position = append_standard(&mut journal, BODY_SIZE_MAX);
        records_in_segment_1 += usize::from(position.segment == 1);
        positions.push(position);
        if positions.len() % 5 == 0 {
            journal.sync().expect("sync");
        }
    }
    journal.sync().expect("sync");
    let window = &positions[positions.len() - TEAR_WINDOW..];
    assert_eq!(window[0].segment, 0);
    assert_eq!((window[1].segment, window[1].offset), (1, 0));
    assert!(
        record_end_aligned(&window[0]) < SEGMENT_SIZE_BYTES,
        "a zero gap ends segment 0"
    );
    (temporary, directory, positions)
}

/// Applies `edit` to every byte in the global address range [start, end).
fn log_edit(directory: &Path, start: u64, end: u64, mut edit: impl FnMut(&mut u8)) {
    assert!(start <= end);
    let mut address = start;
    while address < end {
        let segment = address / SEGMENT_SIZE_BYTES;
        let segment_end = ((segment + 1) * SEGMENT_SIZE_BYTES).min(end);
        let (from, to) = (
            address % SEGMENT_SIZE_BYTES,
            segment_end - segment * SEGMENT_SIZE_BYTES,
        );
        segment_edit(directory, segment as u32, |bytes| {
            bytes[from as usize..to as usize]
                .iter_mut()
                .for_each(&mut edit);
        });
        address = segment_end;
    }
}

fn log_nonzero(directory: &Path, start: u64, end: u64) -> bool {
    (start / SEGMENT_SIZE_BYTES..=(end - 1) / SEGMENT_SIZE_BYTES).any(|segment| {
        let bytes = fs::read(segment_path(directory, segment as u32)).expect("read segment");
        let base = segment * SEGMENT_SIZE_BYTES;
        let from = start.max(base) - base;
        let to = end.min(base + SEGMENT_SIZE_BYTES) - base;
        bytes[from as usize..to as usize]
            .iter()
            .any(|byte| *byte != 0)
    })
}

#[derive(Clone, Copy, Debug)]
enum Tear {
    /// Zeros from the tear to the log's end: pages that never reached the disk.
    Zero,
    /// Garbage from the tear to the log's end.
    Garble,
    /// Garbage, then zeros: a partly written sector run.
    GarbleThenZero,
    /// A zero header at the log's end, and junk after it: a body whose header page was lost.
    JunkAfterEnd,
}

/// Tears the copy and returns the range that was touched.
fn tear(directory: &Path, rng: &mut Rng, mode: Tear, start: u64, log_end: u64) -> (u64, u64) {
    let mut garble = |byte: &mut u8| *byte ^= rng.range(1, 256) as u8;
    match mode {
        Tear::Zero => log_edit(directory, start, log_end, |byte| *byte = 0),
        Tear::Garble => log_edit(directory, start, log_end, &mut garble),
        Tear::GarbleThenZero => {
            let middle = start + (log_end - start) / 2;
            log_edit(directory, start, middle, &mut garble);
            log_edit(directory, middle, log_end, |byte| *byte = 0);
        }
        Tear::JunkAfterEnd => {
            let junk_start =
                log_end.div_ceil(RECORD_ALIGNMENT_BYTES) * RECORD_ALIGNMENT_BYTES + 128;
            let junk_end = junk_start + 3000;
            log_edit(directory, junk_start, junk_end, &mut garble);
            return (junk_start, junk_end);
        }
    }
    (start, log_end)
}

#[test]
fn torn_tails_are_cut_back_to_the_last_whole_record() {
    let (temporary, template_directory, positions) = template();
    let log_end = record_end(positions.last().expect("records"));
    let modes = [
        Tear::Zero,
        Tear::Garble,
        Tear::GarbleThenZero,
        Tear::JunkAfterEnd,
    ];
    let mut rng = Rng::new(0x7042_7A11);
    let mut cuts: u64 = 0;
    for case in 0..CASES {
        let directory = temporary.path().join(format!("case-{case}"));
        copy_directory(&template_directory, &directory);
        let tear_from = rng.range(address(&positions[positions.len() - TEAR_WINDOW]), log_end);
        let mode = modes[(case % modes.len() as u64) as usize];
        let (torn_start, _) = tear(&directory, &mut rng, mode, tear_from, log_end);
        let op_last = positions
            .iter()
            .find(|position| record_end(position) > torn_start)
            .map_or(positions.len() as u64, |position| position.op - 1);
        let intact_end = match op_last {
            0 => 0,
            _ => record_end_aligned(&positions[op_last as usize - 1]),
        };
        let expect_cut = log_nonzero(&directory, intact_end, log_end + 4096);
        cuts += u64::from(expect_cut);
        torn_case_verify(
            &directory,
            op_last,
            intact_end,
            expect_cut,
            &positions,
            &format!("{case} {mode:?}"),
        );
        fs::remove_dir_all(&directory).expect("clean up");
    }
    assert!(
        cuts >= CASES * 3 / 4,
        "only {cuts} of {CASES} cases left something to cut"
    );
}

fn torn_case_verify(
    directory: &Path,
    op_last: u64,
    intact_end: u64,
    expect_cut: bool,
    positions: &[RecordPosition],
    case: &str,
) {
    let (journal, recovery) = Journal::open(directory, options()).expect("open after a tear");
    assert_eq!(recovery.op_last, op_last, "case {case}");
    match recovery.cut {
        Some(cut) => {
            assert!(
                expect_cut,
                "case {case}: cut {cut:?} where only zeros followed"
            );
            assert_eq!(cut.op, op_last + 1, "case {case}");
            assert!(cut.evidence.is_none(), "case {case}");
            let cut_address = u64::from(cut.segment) * SEGMENT_SIZE_BYTES + cut.offset;
            assert!(
                cut_address >= intact_end,
                "case {case}: cut before the intact records' end"
            );
            if let Some(first_torn) = positions.get(op_last as usize) {
                assert!(
                    cut_address <= address(first_torn),
                    "case {case}: cut after the tear"
                );
            }
            assert!(cut.bytes > 0);
        }
        None => assert!(
            !expect_cut,
            "case {case}: nonzero bytes past the end were not cut"
        ),
    }
    assert_eq!(
        verify_standard(&journal, BODY_SIZE_MAX),
        positions[..op_last as usize]
    );
    drop(journal);

    // The cut was made durable and complete: a second open is clean.
    let (mut journal, recovery) = Journal::open(directory, options()).expect("second open");
    assert_eq!(recovery.op_last, op_last, "case {case}");
    assert!(recovery.cut.is_none(), "case {case}: second open cut again");
    // The log goes on where the intact records end.
    let position = append_standard(&mut journal, BODY_SIZE_MAX);
    assert_eq!(position.op, op_last + 1);
    journal.sync().expect("sync");
    drop(journal);
    let (journal, recovery) = Journal::open(directory, options()).expect("third open");
    assert_eq!(recovery.op_last, op_last + 1, "case {case}");
    assert!(recovery.cut.is_none());
    verify_standard(&journal, BODY_SIZE_MAX);
}

/// Junk written into the middle of never-written space (the spare segment, the rest of the last
/// segment) is found although recovery only reads where the file system reports data.
#[test]
fn junk_inside_unwritten_space_is_found_and_cut() {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::FileExt;
    for (case, (segment_delta, offset)) in [(1u32, 300 * 1024u64), (0, 900 * 1024)]
        .into_iter()
        .enumerate()
    {
        let (_temporary, directory) = formatted();
        let (mut journal, _) = Journal::open(&directory, options()).expect("open");
        let mut last = append_standard(&mut journal, BODY_SIZE_MAX);
        for _ in 0..5 {
            last = append_standard(&mut journal, BODY_SIZE_MAX);
        }
        journal.sync().expect("sync");
        drop(journal);
        assert!(
            record_end(&last) < SEGMENT_SIZE_BYTES / 2,
            "case {case}: junk lands past the end"
        );
        let path = segment_path(&directory, last.segment + segment_delta);
        let file = fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .expect("open segment");
        // Drop the cached clean pages first, as a reboot would: unwritten space then reads as
        // holes again, and the junk is one run of data among them.
        // SAFETY: posix_fadvise on a descriptor that `file` owns.
        let advised =
            unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        assert_eq!(advised, 0);
        file.write_all_at(&[0xEE; 200], offset).expect("write junk");
        drop(file);
        let (journal, recovery) = Journal::open(&directory, options()).expect("open");
        assert_eq!(recovery.op_last, last.op, "case {case}");
        let cut = recovery.cut.expect("the junk is cut");
        assert_eq!(cut.op, last.op + 1);
        assert!(cut.evidence.is_none());
        drop(journal);
        let bytes = fs::read(&path).expect("read");
        let junk = &bytes[offset as usize..][..200];
        assert!(
            junk.iter().all(|byte| *byte == 0),
            "case {case}: junk left behind"
        );
        let (_, recovery) = Journal::open(&directory, options()).expect("open");
        assert!(recovery.cut.is_none(), "case {case}");
    }
}
