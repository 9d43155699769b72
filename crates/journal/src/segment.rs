//! Segment files: `DIR/journal/segment-NNNNNNNN`, each preallocated to the segment size and mapped
//! whole. A segment only ever appears under its final name at full size: it is allocated under a
//! temporary name, fsynced, then renamed.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};

use memmap2::{Mmap, MmapMut};

use crate::directory::{directory_sync, io_error, temporary_remove};
use crate::error::JournalError;

/// Each segment is one memory mapping, and Linux limits a process to `vm.max_map_count` (65,530
/// by default) mappings in all: stay well below it. At the default 256 MiB that is 8 TiB of log.
pub const SEGMENT_COUNT_MAX: u32 = 32_768;

const SEGMENT_PREFIX: &str = "segment-";
const TEMPORARY_SUFFIX: &str = ".tmp";

pub fn segment_name(index: u32) -> String {
    assert!(index < SEGMENT_COUNT_MAX);
    format!("{SEGMENT_PREFIX}{index:08}")
}

/// A segment the journal writes: the file stays open for fsync, the mapping for reads and writes.
pub struct Segment {
    file: File,
    map: MmapMut,
}

impl Segment {
    pub fn fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    pub fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.map
    }

    pub fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }
}

impl AsRef<[u8]> for Segment {
    fn as_ref(&self) -> &[u8] {
        &self.map
    }
}

/// Allocates segment `index` in full, or fails and leaves no file behind.
pub fn segment_create(
    directory_file: &File,
    directory: &Path,
    index: u32,
    segment_size_bytes: u64,
) -> Result<Segment, JournalError> {
    let path = directory.join(segment_name(index));
    let temporary = directory.join(format!("{}{TEMPORARY_SUFFIX}", segment_name(index)));
    assert!(!path.exists(), "segment {index} exists already");
    temporary_remove(&temporary)?;
    match segment_allocate(&temporary, segment_size_bytes) {
        Ok(file) => drop(file),
        Err(source) => {
            // Best effort: a leftover temporary is removed again by the next open or attempt.
            let _ = fs::remove_file(&temporary);
            return Err(JournalError::SegmentAllocate {
                segment: index,
                source,
            });
        }
    }
    fs::rename(&temporary, &path).map_err(io_error(&path))?;
    directory_sync(directory_file, directory)?;
    segment_open(&path, segment_size_bytes)
}

fn segment_allocate(path: &Path, segment_size_bytes: u64) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path)?;
    let length = libc::off_t::try_from(segment_size_bytes).expect("segment size fits off_t");
    // posix_fallocate reserves the blocks now, so that stores into the mapping cannot meet a full
    // disk later (that would be a SIGBUS, not an error we could return).
    // SAFETY: the descriptor is owned by `file`, which outlives the call.
    let result = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, length) };
    if result != 0 {
        return Err(io::Error::from_raw_os_error(result));
    }
    file.sync_all()?;
    Ok(file)
}

/// Opens and maps an existing segment for reading and writing.
pub fn segment_open(path: &Path, segment_size_bytes: u64) -> Result<Segment, JournalError> {
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
    Ok(Segment { file, map })
}

/// Opens and maps an existing segment read-only, for `inspect`.
pub fn segment_open_read_only(path: &Path, segment_size_bytes: u64) -> Result<Mmap, JournalError> {
    let file = File::open(path).map_err(io_error(path))?;
    segment_size_verify(&file, path, segment_size_bytes)?;
    // SAFETY: read-only mapping under a shared flock, which no writer holds at the same time.
    let map = unsafe { Mmap::map(&file) }.map_err(io_error(path))?;
    assert_eq!(map.len() as u64, segment_size_bytes);
    Ok(map)
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
pub struct SegmentListing {
    pub count: u32,
    pub temporaries: Vec<PathBuf>,
}

pub fn segments_list(directory: &Path) -> Result<SegmentListing, JournalError> {
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
