//! Segment files: `DIR/journal/segment-NNNNNNNN`, each preallocated to the segment size and mapped
//! whole. A segment only ever appears under its final name at full size: it is allocated under a
//! temporary name, fsynced, then renamed. `SegmentPreparer` allocates and fsyncs it on a thread
//! of its own, ahead of the append that needs it, which then only renames it.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use memmap2::{Mmap, MmapMut};

use crate::directory::{directory_sync, io_error, temporary_remove};
use crate::error::JournalError;
use crate::storage::StorageSegment;

/// Each segment is one memory mapping, and Linux limits a process to `vm.max_map_count` (65,530
/// by default) mappings in all: stay well below it. At the default 256 MiB that is 8 TiB of log.
pub const SEGMENT_COUNT_MAX: u32 = 32_768;

const SEGMENT_PREFIX: &str = "segment-";
const TEMPORARY_SUFFIX: &str = ".tmp";

pub(crate) fn segment_name(index: u32) -> String {
    assert!(index < SEGMENT_COUNT_MAX);
    format!("{SEGMENT_PREFIX}{index:08}")
}

/// A segment file the journal writes: the file stays open for fsync, the mapping for reads and
/// writes. `FileStorage`'s segment.
pub struct FileSegment {
    file: File,
    map: MmapMut,
}

/// Where nonzero bytes may be in a segment: [start, end) offsets, ascending, 128-byte aligned.
pub type DataRuns = Vec<(u64, u64)>;

/// Runs beyond this many are merged into one that ends at the segment's end: a bound, not a loss.
const DATA_RUNS_MAX: usize = 1024;

/// Asks the file system where data may be (SEEK_DATA, SEEK_HOLE), so that recovery need not read
/// (and map, and keep resident) the untouched rest of a segment and the preallocated spare: both
/// are unwritten extents that read as zeros. A file system may call a hole data, never data a hole
/// (dirty pages in the page cache count as data), so skipping holes is safe; without support the
/// whole file is one run. Take the runs before reading the mapping: reading makes the kernel read
/// ahead, which caches zero pages past the end, which the file system then reports as data.
pub(crate) fn data_runs(file: &File, size_bytes: u64) -> DataRuns {
    let alignment = crate::layout::RECORD_ALIGNMENT_BYTES;
    let seek = |from: u64, whence| {
        let from = libc::off_t::try_from(from).expect("segment offsets fit off_t");
        // SAFETY: lseek only moves the file position of a descriptor `file` owns.
        let result = unsafe { libc::lseek(file.as_raw_fd(), from, whence) };
        u64::try_from(result).map_err(|_| io::Error::last_os_error())
    };
    let mut runs = DataRuns::new();
    let mut offset = 0;
    while offset < size_bytes {
        if runs.len() == DATA_RUNS_MAX - 1 {
            runs.push((offset, size_bytes));
            break;
        }
        let start = match seek(offset, libc::SEEK_DATA) {
            Ok(start) => start,
            Err(error) if error.raw_os_error() == Some(libc::ENXIO) => break,
            Err(_) => offset,
        };
        let end = seek(start, libc::SEEK_HOLE)
            .unwrap_or(size_bytes)
            .min(size_bytes);
        // Runs are block-aligned in practice; widen them to whole 128-byte blocks regardless.
        let start = start.max(offset) / alignment * alignment;
        let end = (end.div_ceil(alignment) * alignment).min(size_bytes);
        assert!(start >= offset);
        if start >= end {
            break;
        }
        runs.push((start, end));
        offset = end;
    }
    assert!(runs.len() <= DATA_RUNS_MAX);
    runs
}

impl FileSegment {
    /// Makes every write to the segment so far durable before returning (`fdatasync`):
    /// `FileStorage::sync_now`, the path that does not go through io_uring.
    pub fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }
}

impl AsRawFd for FileSegment {
    fn as_raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

impl AsRef<[u8]> for FileSegment {
    fn as_ref(&self) -> &[u8] {
        &self.map
    }
}

impl StorageSegment for FileSegment {
    /// A `pwrite` into the file; the mapping sees it at once (one page cache). Not a copy into
    /// the mapping: a store into a mapped page that is not yet in the page cache faults, and for
    /// fallocated (unwritten) blocks the fault's readahead zeroes many pages at once on the
    /// writing thread (tens of ms now and then, issue 10), where `pwrite` fills the pages it
    /// writes directly. A file size limit (`RLIMIT_FSIZE`) below the segment's end refuses the
    /// `pwrite` (EFBIG) but not stores into the mapping, which is how it was written before:
    /// then the bytes go into the mapping. Any other failure (an I/O error: the blocks are
    /// reserved) ends the process, as the SIGBUS of a failed store into the mapping did.
    #[inline]
    fn write(&mut self, offset: u64, bytes: &[u8]) {
        assert!(offset + bytes.len() as u64 <= self.map.len() as u64);
        match self.file.write_all_at(bytes, offset) {
            Ok(()) => {}
            Err(error) if error.raw_os_error() == Some(libc::EFBIG) => {
                let offset = usize::try_from(offset).expect("segment offsets fit usize");
                self.map[offset..][..bytes.len()].copy_from_slice(bytes);
            }
            Err(error) => panic!(
                "writing {} bytes at {offset} into a segment: {error}",
                bytes.len()
            ),
        }
    }

    fn data_runs(&self) -> DataRuns {
        data_runs(&self.file, self.map.len() as u64)
    }

    /// The kernel reads ahead on a fault in a mapped file, and past the appends that reads
    /// unwritten (fallocated) blocks: it zeroes whole large folios on the faulting thread, the
    /// core's, when it decodes the record just written (90–110 ms now and then under
    /// TigerBeetle's driver once nothing else read the log at random, issue 10). Every page
    /// from `offset` on is written by `pwrite` before it is read, so it is in the page cache
    /// and needs no readahead: `MADV_RANDOM` turns it off there, and leaves it on below, where
    /// recovery reads the log in order.
    fn appends_from(&mut self, offset: u64) {
        let offset = usize::try_from(offset).expect("segment offsets fit usize");
        if offset < self.map.len() {
            // Only a hint: without it, reads are as correct, and only slower at times. (memmap2
            // widens the range to the page the offset lies in.)
            let _ = self
                .map
                .advise_range(memmap2::Advice::Random, offset, self.map.len() - offset);
        }
    }
}

/// Allocates segment `index` in full, or fails and leaves no file behind (so that the append that
/// needed it fails cleanly and a later one can try again).
/// If `prepared` holds segment `index`, allocated and fsynced under its temporary name by a
/// `SegmentPreparer`, only renames it into place.
pub(crate) fn segment_create(
    directory_file: &File,
    directory: &Path,
    index: u32,
    segment_size_bytes: u64,
    prepared: Option<SegmentPreparer>,
) -> Result<FileSegment, JournalError> {
    let path = directory.join(segment_name(index));
    let temporary = segment_temporary(directory, index);
    if path.symlink_metadata().is_ok() {
        let source = io::Error::from(io::ErrorKind::AlreadyExists);
        return Err(JournalError::SegmentAllocate {
            segment: index,
            source,
        });
    }
    // A preparation that failed (a full disk, say) left nothing: allocate here, which reports
    // the error if it is still there.
    let prepared = prepared.is_some_and(|preparer| preparer.finish(index, segment_size_bytes));
    if !prepared {
        temporary_remove(&temporary)?;
        if let Err(source) = segment_allocate(&temporary, segment_size_bytes) {
            // Best effort: a leftover temporary is removed again by the next attempt or open.
            let _ = fs::remove_file(&temporary);
            return Err(JournalError::SegmentAllocate {
                segment: index,
                source,
            });
        }
    }
    let installed = fs::rename(&temporary, &path)
        .map_err(io_error(&path))
        .and_then(|()| directory_sync(directory_file, directory))
        .and_then(|()| segment_open(&path, segment_size_bytes));
    if installed.is_err() {
        // Best effort again: should the removal not reach the disk, the next open finds a whole
        // segment of zeros, which is valid.
        let _ = fs::remove_file(&path);
        let _ = fs::remove_file(&temporary);
    }
    installed
}

fn segment_temporary(directory: &Path, index: u32) -> PathBuf {
    directory.join(format!("{}{TEMPORARY_SUFFIX}", segment_name(index)))
}

fn segment_allocate(path: &Path, segment_size_bytes: u64) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path)?;
    let length = libc::off_t::try_from(segment_size_bytes).expect("segment size fits off_t");
    // posix_fallocate reserves the blocks now, so that writes into the segment cannot meet a full
    // disk later (a store into the mapping would be a SIGBUS, not an error we could return).
    // SAFETY: the descriptor is owned by `file`, which outlives the call.
    let result = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, length) };
    if result != 0 {
        return Err(io::Error::from_raw_os_error(result));
    }
    file.sync_all()?;
    Ok(file)
}

/// Allocates and fsyncs the next segment under its temporary name on a thread of its own
/// (`tally-segment`, at the checkpoint writer's lower priority), so that the append that moves
/// into a new segment only renames it. Dropping it waits for the thread and removes what it
/// wrote; a temporary left by a crash is removed by the next open.
pub(crate) struct SegmentPreparer {
    index: u32,
    segment_size_bytes: u64,
    temporary: PathBuf,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl SegmentPreparer {
    /// Starts preparing segment `index` in `directory`. If the thread cannot be started, the
    /// segment is allocated when needed, as without a preparer.
    pub(crate) fn start(directory: &Path, index: u32, segment_size_bytes: u64) -> SegmentPreparer {
        let temporary = segment_temporary(directory, index);
        let thread = {
            let temporary = temporary.clone();
            std::thread::Builder::new()
                .name("tally-segment".into())
                .spawn(move || {
                    crate::journal::writer_yield_cpu();
                    let _ = fs::remove_file(&temporary);
                    let allocated = segment_allocate(&temporary, segment_size_bytes);
                    if allocated.is_err() {
                        let _ = fs::remove_file(&temporary);
                    }
                    allocated.map(drop)
                })
                .ok()
        };
        SegmentPreparer {
            index,
            segment_size_bytes,
            temporary,
            thread,
        }
    }

    /// The segment this preparer prepares.
    pub(crate) fn index(&self) -> u32 {
        self.index
    }

    /// Waits for the preparation; true if segment `index` of this size is ready under its
    /// temporary name.
    fn finish(mut self, index: u32, segment_size_bytes: u64) -> bool {
        let Some(thread) = self.thread.take() else {
            return false;
        };
        let prepared = match thread.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        match prepared {
            Ok(()) if self.index == index && self.segment_size_bytes == segment_size_bytes => true,
            Ok(()) => {
                let _ = fs::remove_file(&self.temporary);
                false
            }
            Err(error) => {
                tracing::debug!(%error, segment = self.index, "segment preparation failed");
                false
            }
        }
    }
}

impl Drop for SegmentPreparer {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
            let _ = fs::remove_file(&self.temporary);
        }
    }
}

/// Opens and maps an existing segment for reading and writing.
pub(crate) fn segment_open(
    path: &Path,
    segment_size_bytes: u64,
) -> Result<FileSegment, JournalError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(io_error(path))?;
    segment_size_verify(&file, path, segment_size_bytes)?;
    // SAFETY: the directory's exclusive flock keeps other Tally processes out, and the file is
    // preallocated and never truncated while mapped, so the mapping stays backed. (An I/O error
    // while faulting a page in still raises SIGBUS: as with a failed fsync, that is fatal.)
    let map = unsafe { MmapMut::map_mut(&file) }.map_err(io_error(path))?;
    assert_eq!(map.len() as u64, segment_size_bytes);
    Ok(FileSegment { file, map })
}

/// Opens and maps an existing segment read-only, for `inspect`, with its data runs.
pub(crate) fn segment_open_read_only(
    path: &Path,
    segment_size_bytes: u64,
) -> Result<(Mmap, DataRuns), JournalError> {
    let file = File::open(path).map_err(io_error(path))?;
    segment_size_verify(&file, path, segment_size_bytes)?;
    let runs = data_runs(&file, segment_size_bytes);
    // SAFETY: read-only mapping under a shared flock, which no writer holds at the same time.
    let map = unsafe { Mmap::map(&file) }.map_err(io_error(path))?;
    assert_eq!(map.len() as u64, segment_size_bytes);
    Ok((map, runs))
}

fn segment_size_verify(
    file: &File,
    path: &Path,
    segment_size_bytes: u64,
) -> Result<(), JournalError> {
    let size_bytes = file.metadata().map_err(io_error(path))?.len();
    if size_bytes == segment_size_bytes {
        Ok(())
    } else {
        Err(JournalError::SegmentInvalid {
            path: path.to_path_buf(),
            reason: format!("size is {size_bytes} bytes, the format says {segment_size_bytes}"),
        })
    }
}

/// The segment files present: `count` of them, numbered 0..count without gaps, plus any temporary
/// files an interrupted allocation left behind.
pub(crate) struct SegmentListing {
    pub count: u32,
    pub temporaries: Vec<PathBuf>,
}

pub(crate) fn segments_list(directory: &Path) -> Result<SegmentListing, JournalError> {
    let mut indexes = Vec::new();
    let mut temporaries = Vec::new();
    for entry in fs::read_dir(directory).map_err(io_error(directory))? {
        let path = entry.map_err(io_error(directory))?.path();
        match segment_name_parse(&path) {
            Some(SegmentName::Segment(index)) => indexes.push(index),
            Some(SegmentName::Temporary) => temporaries.push(path),
            None => {
                return Err(JournalError::SegmentInvalid {
                    path,
                    reason: "unexpected file in the segment directory".to_string(),
                });
            }
        }
    }
    indexes.sort_unstable();
    for (expected, index) in indexes.iter().enumerate() {
        if *index as usize != expected {
            return Err(JournalError::SegmentInvalid {
                path: directory.join(segment_name(expected as u32)),
                reason: "segment file missing (later segments exist)".to_string(),
            });
        }
    }
    let count = u32::try_from(indexes.len()).expect("names are bounded by SEGMENT_COUNT_MAX");
    Ok(SegmentListing { count, temporaries })
}

enum SegmentName {
    Segment(u32),
    Temporary,
}

fn segment_name_parse(path: &Path) -> Option<SegmentName> {
    let name = path.file_name()?.to_str()?;
    let digits = name.strip_prefix(SEGMENT_PREFIX)?;
    let (digits, temporary) = match digits.strip_suffix(TEMPORARY_SUFFIX) {
        Some(digits) => (digits, true),
        None => (digits, false),
    };
    if digits.len() != 8 || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    let index: u32 = digits.parse().ok()?;
    if index >= SEGMENT_COUNT_MAX {
        return None;
    }
    if temporary {
        Some(SegmentName::Temporary)
    } else {
        Some(SegmentName::Segment(index))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Per 4 KiB page of the segment, whether it is in the page cache (`mincore`).
    fn pages_resident(segment: &FileSegment) -> Vec<bool> {
        let map = segment.as_ref();
        let mut pages = vec![0u8; map.len().div_ceil(4096)];
        // SAFETY: the mapping is page-aligned and `pages` has one byte per page of it.
        let result = unsafe {
            libc::mincore(
                map.as_ptr() as *mut libc::c_void,
                map.len(),
                pages.as_mut_ptr(),
            )
        };
        assert_eq!(result, 0, "mincore: {}", io::Error::last_os_error());
        pages.iter().map(|page| page & 1 == 1).collect()
    }

    /// A prepared segment is renamed into place; a preparer for another segment is not used and
    /// leaves nothing behind; writes are readable through the mapping at once.
    #[test]
    fn prepared_segments_are_taken_and_writes_show_in_the_mapping() {
        const SIZE: u64 = 4 << 20;
        let temporary = tempfile::tempdir().expect("temporary directory");
        let directory = temporary.path();
        let directory_file = File::open(directory).expect("open directory");
        let preparer = SegmentPreparer::start(directory, 0, SIZE);
        let mut segment = segment_create(&directory_file, directory, 0, SIZE, Some(preparer))
            .expect("segment_create");
        assert!(!segment_temporary(directory, 0).exists());
        assert!(directory.join(segment_name(0)).exists());
        segment.write(4096 - 3, b"across a page");
        assert_eq!(&segment.as_ref()[4096 - 3..][..13], b"across a page");
        assert!(segment.as_ref()[..4096 - 3].iter().all(|byte| *byte == 0));
        // The write brought no page past its own into the page cache: a store into the mapping
        // would have faulted, and the fault's readahead would have zeroed the pages after it.
        segment.write(64 << 10, &[7; 64 << 10]);
        let resident = pages_resident(&segment);
        assert!(resident[16..32].iter().all(|page| *page), "written pages");
        assert!(
            resident[32..].iter().all(|page| !*page),
            "pages past the write are in the page cache"
        );
        let preparer = SegmentPreparer::start(directory, 7, SIZE);
        let segment = segment_create(&directory_file, directory, 1, SIZE, Some(preparer))
            .expect("segment_create");
        assert_eq!(segment.as_ref().len() as u64, SIZE);
        assert!(!segment_temporary(directory, 7).exists());
        assert!(!directory.join(segment_name(7)).exists());
    }
}
