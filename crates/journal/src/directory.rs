//! The data directory: its names, its lock, atomic file replacement and the format marker.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use crate::error::JournalError;
use crate::layout::{FormatMarker, HeaderProblem, HEADER_SIZE_BYTES};

pub(crate) const FORMAT_FILE: &str = "format";
pub(crate) const FORMAT_TEMPORARY: &str = "format.tmp";
pub(crate) const SEGMENTS_DIRECTORY: &str = "journal";
pub(crate) const CHECKPOINT_FILES: [&str; 2] = ["checkpoint-a", "checkpoint-b"];
pub(crate) const CHECKPOINT_TEMPORARY: &str = "checkpoint.tmp";

pub(crate) fn io_error(path: &Path) -> impl FnOnce(io::Error) -> JournalError + '_ {
    move |source| JournalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LockMode {
    /// Held by the one process that reads and writes the journal.
    Exclusive,
    /// Held by `inspect`, which only reads: it may run beside another reader, never a writer.
    Shared,
}

/// Opens `directory` and takes an advisory `flock` on it, held until the returned file is closed.
/// Locking the directory itself (not a lock file) means taking the lock writes nothing.
pub(crate) fn lock(directory: &Path, mode: LockMode) -> Result<File, JournalError> {
    let file = File::open(directory).map_err(io_error(directory))?;
    let operation = match mode {
        LockMode::Exclusive => libc::LOCK_EX,
        LockMode::Shared => libc::LOCK_SH,
    };
    // SAFETY: flock on a file descriptor that `file` owns and keeps open for this call.
    let result = unsafe { libc::flock(file.as_raw_fd(), operation | libc::LOCK_NB) };
    if result == 0 {
        return Ok(file);
    }
    let error = io::Error::last_os_error();
    if error.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Err(JournalError::Locked {
            directory: directory.to_path_buf(),
        })
    } else {
        Err(JournalError::Io {
            path: directory.to_path_buf(),
            source: error,
        })
    }
}

/// Makes the directory's entries (creations, renames, removals) durable.
pub(crate) fn directory_sync(directory_file: &File, directory: &Path) -> Result<(), JournalError> {
    directory_file.sync_all().map_err(io_error(directory))
}

/// Bytes of a file written between two waits for their writeback (`file_replace`): a checkpoint
/// of hundreds of MB reaches the disk a slice at a time, so that the log's fsyncs, which replies
/// wait for, queue behind one slice at most (a few ms of this disk) rather than the whole file.
/// Measured: a 195 MB checkpoint took about as long in slices of 1 MiB as of 8 MiB.
const WRITEBACK_SLICE_BYTES: usize = 1 << 20;

/// Replaces `directory/name` atomically with `parts` concatenated: write a temporary file, fsync
/// it, rename it over `name`, fsync the directory. A crash leaves either the old or the new file.
/// Large files are written back a slice at a time (`WRITEBACK_SLICE_BYTES`) before the fsync.
pub(crate) fn file_replace(
    directory_file: &File,
    directory: &Path,
    name: &str,
    temporary: &str,
    parts: &[&[u8]],
) -> Result<(), JournalError> {
    assert_ne!(name, temporary);
    let temporary_path = directory.join(temporary);
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&temporary_path)
        .map_err(io_error(&temporary_path))?;
    let mut offset = 0;
    for part in parts {
        for slice in part.chunks(WRITEBACK_SLICE_BYTES) {
            file.write_all(slice).map_err(io_error(&temporary_path))?;
            if slice.len() == WRITEBACK_SLICE_BYTES {
                writeback_wait(&file, offset, slice.len()).map_err(io_error(&temporary_path))?;
            }
            offset += slice.len();
        }
    }
    // Durable only now: writeback neither flushes the disk's cache nor the file's metadata.
    file.sync_all().map_err(io_error(&temporary_path))?;
    drop(file);
    let path = directory.join(name);
    fs::rename(&temporary_path, &path).map_err(io_error(&path))?;
    directory_sync(directory_file, directory)
}

/// Starts writeback of `size` bytes at `offset` and waits for it (after waiting for any earlier
/// writeback of the range), so that at most one slice of the file is queued at the disk.
fn writeback_wait(file: &File, offset: usize, size: usize) -> io::Result<()> {
    let flags = libc::SYNC_FILE_RANGE_WAIT_BEFORE
        | libc::SYNC_FILE_RANGE_WRITE
        | libc::SYNC_FILE_RANGE_WAIT_AFTER;
    let offset = libc::off64_t::try_from(offset).expect("a file offset fits off64_t");
    let size = libc::off64_t::try_from(size).expect("a slice fits off64_t");
    // SAFETY: a plain syscall on a descriptor `file` owns; it reads no memory of ours.
    let result = unsafe { libc::sync_file_range(file.as_raw_fd(), offset, size, flags) };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Removes a leftover temporary file from an interrupted write, if there is one.
pub(crate) fn temporary_remove(path: &Path) -> Result<bool, JournalError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(error) => Err(JournalError::Io {
            path: path.to_path_buf(),
            source: error,
        }),
    }
}

pub(crate) fn format_read(directory: &Path) -> Result<FormatMarker, JournalError> {
    let path: PathBuf = directory.join(FORMAT_FILE);
    let file = match File::open(&path) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            return Err(JournalError::NotFormatted {
                directory: directory.to_path_buf(),
            });
        }
        Err(error) => {
            return Err(JournalError::Io {
                path,
                source: error,
            })
        }
    };
    // One byte more than a marker, so that a longer file is caught rather than truncated.
    let mut bytes = Vec::with_capacity(HEADER_SIZE_BYTES as usize + 1);
    file.take(HEADER_SIZE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io_error(&path))?;
    FormatMarker::verify(&bytes).map_err(|problem| match problem {
        HeaderProblem::Invalid(reason) => JournalError::FormatInvalid { path, reason },
        HeaderProblem::Version(version) => JournalError::FormatVersion { path, version },
    })
}
