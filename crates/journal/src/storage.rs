//! The storage seam: everything the journal does to its segments (create, open, list, write, read,
//! fsync) goes through `Storage` and `StorageSegment`. `Journal<S>` is generic over it, so the
//! append path is monomorphised (no `dyn`, no extra call on the hot path).
//!
//! Two implementations:
//! - `FileStorage`: the real one. Segment files under `DIR/journal`, preallocated and mapped;
//!   writes are `pwrite`s, reads come from the mapping; the next segment is allocated ahead on a
//!   thread; fsyncs go through io_uring (`IORING_OP_FSYNC`, datasync).
//! - `FaultyStorage` (in `faulty.rs`): an in-process disk that keeps the durable image apart from
//!   the written one, for power-loss tests without root.
//!
//! The format marker, the checkpoint files and the directory lock stay on real files in `DIR`
//! whatever the storage: they are written whole with write + fsync + rename, at most once per
//! checkpoint, and a crash can only leave the old file or the new one.

use std::fs::{self, File};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};

use crate::directory::{directory_sync, io_error, temporary_remove};
use crate::error::JournalError;
use crate::segment::{
    segment_create, segment_name, segment_open, segments_list, DataRuns, FileSegment,
    SegmentPreparer,
};
use crate::sync::{SyncBackend, SyncMode, SYNC_SEGMENTS_MAX};

/// Where the journal keeps its segments, and how it makes them durable.
///
/// The journal calls `format` (once, at format time) or `open` (at open time) before anything
/// else. Every other call names segments the storage created or opened.
pub trait Storage {
    /// One segment: `segment_size_bytes` of bytes, readable at once after a write.
    type Segment: StorageSegment;

    /// Creates the empty container for segments, durably.
    fn format(&mut self) -> Result<(), JournalError>;

    /// Opens the container and returns how many segments it holds (numbered from 0, without gaps,
    /// at least one). Leftovers of an interrupted allocation are noted for `leftovers_remove`.
    fn open(&mut self) -> Result<u32, JournalError>;

    /// Allocates segment `index` whole and durably (file, size and name) before returning it, or
    /// fails and leaves nothing behind.
    fn segment_create(
        &mut self,
        index: u32,
        segment_size_bytes: u64,
    ) -> Result<Self::Segment, JournalError>;

    /// A hint that segment `index` will be created next: a storage may start allocating it now,
    /// off the caller's thread, so that `segment_create(index, …)` finds it ready. The segment
    /// counts for nothing until `segment_create` returns it.
    fn segment_prepare(&mut self, _index: u32, _segment_size_bytes: u64) {}

    /// Opens an existing segment for reading and writing.
    fn segment_open(
        &mut self,
        index: u32,
        segment_size_bytes: u64,
    ) -> Result<Self::Segment, JournalError>;

    /// Removes the leftovers `open` found, durably. Returns whether there were any.
    fn leftovers_remove(&mut self) -> Result<bool, JournalError>;

    /// Makes every write to `segment` so far durable before returning (`fdatasync`).
    fn sync_now(&mut self, segment: &Self::Segment) -> io::Result<()>;

    /// Starts making every write to `segments` so far durable, tagged with `sequence`, and returns
    /// how many completions `sync_reap` will report for it (0: it is complete already). At most
    /// `SYNC_SEGMENTS_MAX` segments per call and `SYNC_SEGMENTS_MAX * SYNCS_IN_FLIGHT_MAX`
    /// completions outstanding.
    fn sync_submit(&mut self, sequence: u64, segments: &[Self::Segment]) -> io::Result<u32>;

    /// Blocks until at least one submitted sync completes, and reports every completion available
    /// as `(sequence, result)`: 0 for success, a negative errno for failure. Called only while
    /// completions are outstanding.
    fn sync_reap(&mut self, completion: impl FnMut(u64, i32)) -> io::Result<()>;

    /// Reports the completions already available, as `sync_reap` does, but never blocks: none
    /// may be reported.
    fn sync_poll(&mut self, completion: impl FnMut(u64, i32)) -> io::Result<()>;

    /// Whether syncs go through io_uring.
    fn sync_uses_io_uring(&self) -> bool;
}

/// One segment of a `Storage`.
pub trait StorageSegment: AsRef<[u8]> {
    /// Copies `bytes` into the segment at `offset`: readable at once, durable after a sync that
    /// began after it.
    fn write(&mut self, offset: u64, bytes: &[u8]);

    /// Where nonzero bytes may be, as ascending `[start, end)` offsets. Reporting too much is
    /// allowed (the whole segment is always correct); reporting too little is not.
    fn data_runs(&self) -> DataRuns;

    /// Appends go on from `offset`: what lies past it is read only once written, so reading
    /// it must not read ahead (a hint; storage without mapped reads ignores it).
    fn appends_from(&mut self, _offset: u64) {}
}

/// The real storage: segment files in `DIR/journal`, memory-mapped, synced through io_uring.
pub struct FileStorage {
    directory: PathBuf,
    /// Opened by `format` or `open`, for directory fsyncs after creating or removing a segment.
    directory_file: Option<File>,
    leftovers: Vec<PathBuf>,
    backend: SyncBackend,
    /// The next segment, being allocated (fallocate, then fsync) on a thread of its own.
    preparing: Option<SegmentPreparer>,
}

impl FileStorage {
    /// A storage for the segment directory `directory` (`DIR/journal`). Touches no file until the
    /// journal calls `format` or `open`.
    pub fn new(directory: PathBuf, sync_mode: SyncMode) -> FileStorage {
        FileStorage {
            directory,
            directory_file: None,
            leftovers: Vec::new(),
            backend: SyncBackend::new(sync_mode),
            preparing: None,
        }
    }

    fn directory_file(&self) -> &File {
        self.directory_file
            .as_ref()
            .expect("the journal calls format or open first")
    }
}

impl Storage for FileStorage {
    type Segment = FileSegment;

    fn format(&mut self) -> Result<(), JournalError> {
        let directory = &self.directory;
        fs::create_dir(directory).map_err(io_error(directory))?;
        let parent = directory
            .parent()
            .expect("the segment directory is inside DIR");
        let parent_file = File::open(parent).map_err(io_error(parent))?;
        directory_sync(&parent_file, parent)?;
        let file = File::open(directory).map_err(io_error(directory))?;
        self.directory_file = Some(file);
        Ok(())
    }

    fn open(&mut self) -> Result<u32, JournalError> {
        let listing = segments_list(&self.directory)?;
        if listing.count == 0 {
            let path = self.directory.join(segment_name(0));
            return Err(JournalError::SegmentInvalid {
                path,
                reason: "segment 0 is missing".into(),
            });
        }
        let file = File::open(&self.directory).map_err(io_error(&self.directory))?;
        self.directory_file = Some(file);
        self.leftovers = listing.temporaries;
        Ok(listing.count)
    }

    fn segment_create(
        &mut self,
        index: u32,
        segment_size_bytes: u64,
    ) -> Result<FileSegment, JournalError> {
        let prepared = self.preparing.take();
        segment_create(
            self.directory_file(),
            &self.directory,
            index,
            segment_size_bytes,
            prepared,
        )
    }

    fn segment_prepare(&mut self, index: u32, segment_size_bytes: u64) {
        if self.preparing.as_ref().map(SegmentPreparer::index) == Some(index) {
            return;
        }
        self.preparing = Some(SegmentPreparer::start(
            &self.directory,
            index,
            segment_size_bytes,
        ));
    }

    fn segment_open(
        &mut self,
        index: u32,
        segment_size_bytes: u64,
    ) -> Result<FileSegment, JournalError> {
        let path = self.directory.join(segment_name(index));
        segment_open(&path, segment_size_bytes)
    }

    fn leftovers_remove(&mut self) -> Result<bool, JournalError> {
        let mut removed = false;
        for path in std::mem::take(&mut self.leftovers) {
            removed |= temporary_remove(&path)?;
        }
        if removed {
            directory_sync(self.directory_file(), &self.directory)?;
        }
        Ok(removed)
    }

    fn sync_now(&mut self, segment: &FileSegment) -> io::Result<()> {
        segment.sync()
    }

    fn sync_submit(&mut self, sequence: u64, segments: &[FileSegment]) -> io::Result<u32> {
        assert!(segments.len() <= SYNC_SEGMENTS_MAX);
        let mut fds: [RawFd; SYNC_SEGMENTS_MAX] = [-1; SYNC_SEGMENTS_MAX];
        for (fd, segment) in fds.iter_mut().zip(segments) {
            *fd = segment.as_raw_fd();
        }
        self.backend.submit(sequence, &fds[..segments.len()])
    }

    fn sync_reap(&mut self, completion: impl FnMut(u64, i32)) -> io::Result<()> {
        self.backend.reap(completion)
    }

    fn sync_poll(&mut self, completion: impl FnMut(u64, i32)) -> io::Result<()> {
        self.backend.poll(completion);
        Ok(())
    }

    fn sync_uses_io_uring(&self) -> bool {
        self.backend.is_io_uring()
    }
}

/// The segment directory of a data directory.
pub(crate) fn segments_directory(directory: &Path) -> PathBuf {
    directory.join(crate::directory::SEGMENTS_DIRECTORY)
}
