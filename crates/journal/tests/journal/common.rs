//! Helpers shared by the journal's integration tests: real files in temporary directories.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use tally_journal::{Journal, Options, RecordPosition, SyncMode};

pub(crate) const SEGMENT_SIZE_BYTES: u64 = 1024 * 1024;
pub(crate) const CLUSTER: u128 = 0x7a11_7a11_7a11_7a11_0000_0000_0000_0001;

/// SplitMix64: small, seedable, good enough to pick sizes and offsets reproducibly.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [low, high).
    pub(crate) fn range(&mut self, low: u64, high: u64) -> u64 {
        assert!(low < high);
        low + self.next_u64() % (high - low)
    }
}

pub(crate) fn options() -> Options {
    Options {
        segment_size_bytes: SEGMENT_SIZE_BYTES,
        body_size_bytes_max: 256 * 1024,
        state_size_bytes_max: 64 * 1024 * 1024,
        sync_mode: SyncMode::IoUring,
        cut_unproven_tail: false,
    }
}

/// A fresh formatted data directory (the `TempDir` removes it when dropped).
pub(crate) fn formatted() -> (tempfile::TempDir, PathBuf) {
    let temporary = tempfile::tempdir().expect("temporary directory");
    let directory = temporary.path().join("data");
    Journal::format(&directory, &options(), CLUSTER).expect("format");
    (temporary, directory)
}

/// The body every test writes for `op`: its size and bytes follow from the op alone, so a reader
/// can check any record without knowing how it was written. One random 4 KiB block per op, repeated,
/// with each chunk stamped with (op, chunk index): cheap to build in a debug build, and a read from
/// the wrong op or the wrong offset still differs.
pub(crate) fn body_for(op: u64, size_bytes_max: u64) -> Vec<u8> {
    const CHUNK_SIZE_BYTES: usize = 4096;
    let mut rng = Rng::new(op.wrapping_mul(0x2545_F491_4F6C_DD1D));
    let size = rng.range(0, size_bytes_max + 1) as usize;
    let mut chunk = Vec::with_capacity(CHUNK_SIZE_BYTES);
    while chunk.len() < CHUNK_SIZE_BYTES {
        chunk.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    let mut body = Vec::with_capacity(size + CHUNK_SIZE_BYTES);
    for index in 0..size.div_ceil(CHUNK_SIZE_BYTES) as u64 {
        let start = body.len();
        body.extend_from_slice(&chunk);
        body[start..start + 8].copy_from_slice(&op.to_le_bytes());
        body[start + 8..start + 16].copy_from_slice(&index.to_le_bytes());
    }
    body.truncate(size);
    body
}

pub(crate) fn kind_for(op: u64) -> u16 {
    1 + (op % 7) as u16
}

pub(crate) fn timestamp_for(op: u64) -> u64 {
    1_000_000 + op * 1_000
}

/// Appends the standard record for the next op and returns its position.
pub(crate) fn append_standard(journal: &mut Journal, size_bytes_max: u64) -> RecordPosition {
    let op = journal.op_last() + 1;
    let position = journal
        .append(
            kind_for(op),
            timestamp_for(op),
            &body_for(op, size_bytes_max),
        )
        .expect("append");
    assert_eq!(position.op, op);
    position
}

/// Checks every record is the standard one, the chain links up, and returns the positions.
pub(crate) fn verify_standard(journal: &Journal, size_bytes_max: u64) -> Vec<RecordPosition> {
    let mut positions = Vec::new();
    let mut checksum_previous = None;
    for record in journal.records_from(1) {
        let op = record.position.op;
        assert_eq!(op, positions.len() as u64 + 1);
        assert_eq!(
            record.body,
            &body_for(op, size_bytes_max)[..],
            "body of op {op}"
        );
        assert_eq!(record.kind, kind_for(op));
        assert_eq!(record.timestamp, timestamp_for(op));
        if let Some(checksum_previous) = checksum_previous {
            assert_eq!(record.parent, checksum_previous, "parent of op {op}");
        }
        checksum_previous = Some(record.checksum);
        positions.push(record.position);
    }
    assert_eq!(positions.len() as u64, journal.op_last());
    positions
}

pub(crate) fn segment_path(directory: &Path, segment: u32) -> PathBuf {
    directory
        .join("journal")
        .join(format!("segment-{segment:08}"))
}

/// Every file under `directory` with its bytes: compared before and after to prove nothing wrote.
pub(crate) fn snapshot(directory: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut pending = vec![directory.to_path_buf()];
    while let Some(path) = pending.pop() {
        if path.is_dir() {
            for entry in fs::read_dir(&path).expect("read_dir") {
                pending.push(entry.expect("entry").path());
            }
        } else {
            files.insert(path.clone(), fs::read(&path).expect("read"));
        }
    }
    files
}

/// Copies a data directory (one level of subdirectories, as the journal has).
pub(crate) fn copy_directory(source: &Path, target: &Path) {
    fs::create_dir_all(target).expect("create target");
    for entry in fs::read_dir(source).expect("read_dir") {
        let path = entry.expect("entry").path();
        let destination = target.join(path.file_name().expect("name"));
        if path.is_dir() {
            copy_directory(&path, &destination);
        } else {
            fs::copy(&path, &destination).expect("copy");
        }
    }
}

/// Applies `edit` to the bytes of one segment file in place.
pub(crate) fn segment_edit(directory: &Path, segment: u32, edit: impl FnOnce(&mut Vec<u8>)) {
    let path = segment_path(directory, segment);
    let mut bytes = fs::read(&path).expect("read segment");
    edit(&mut bytes);
    fs::write(&path, bytes).expect("write segment");
}
