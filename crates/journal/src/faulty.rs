//! `FaultyStorage`: an in-process disk for power-loss tests, deterministic from a seed, without
//! root. It keeps what was *written* (what reads see, the page cache) apart from what is *durable*
//! (what a completed fsync covered), and on `FaultyDisk::crash` builds the image a crash leaves:
//!
//! - `Crash::ProcessKill`: everything written survives (the page cache belongs to the kernel).
//! - `Crash::DropUnsynced`: only what completed fsyncs covered survives.
//! - `Crash::TearInOrder`: unsynced writes reach the disk in the order they were issued up to one,
//!   which is torn at a 512-byte sector boundary; the rest are lost.
//! - `Crash::Reorder`: each 512-byte sector the unsynced writes touched reaches the disk at any of
//!   its versions, independently: a later write can be durable without an earlier one, as on a
//!   disk with a volatile write cache and two fsyncs in flight.
//!
//! `FaultyDisk::fsync_fail_after` fails a chosen fsync (its writes stay unsynced, as the kernel may
//! drop the pages of a failed fsync). Sectors are the unit of atomicity: a sector holds either one
//! of its written versions or what was durable, never a mix; bytes are never flipped by a crash.

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::error::JournalError;
use crate::segment::DataRuns;
use crate::storage::{Storage, StorageSegment};

/// A crash writes back (or not) whole sectors of this size.
pub const SECTOR_SIZE_BYTES: u64 = 512;

/// What a crash does to the writes that no completed fsync covered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Crash {
    /// The process dies; every write survives.
    ProcessKill,
    /// Power loss with nothing unsynced written back.
    DropUnsynced,
    /// Power loss: unsynced writes written back in order, the last one torn at a sector boundary.
    TearInOrder,
    /// Power loss: every unsynced sector written back at a random version, or not at all.
    Reorder,
}

/// What a crash kept of the unsynced writes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CrashReport {
    /// Writes no completed fsync covered when the crash came.
    pub writes_unsynced: usize,
    /// Unsynced writes that reached the disk whole.
    pub writes_kept: usize,
    /// Unsynced writes that reached the disk in part (some of their sectors).
    pub writes_torn: usize,
    /// Unsynced writes of which nothing reached the disk.
    pub writes_lost: usize,
    /// Some write reached the disk (whole or in part) while an earlier one did not reach it whole.
    pub reordered: bool,
}

/// The disk under a sequence of `FaultyStorage`s (one per journal opened on it). Cloning gives
/// another handle to the same disk.
#[derive(Clone, Default)]
pub struct FaultyDisk {
    state: Arc<Mutex<DiskState>>,
}

#[derive(Default)]
struct DiskState {
    formatted: bool,
    /// The durable image of each segment.
    segments: Vec<Vec<u8>>,
    /// Writes no completed fsync covers yet, in the order they were issued.
    writes: Vec<Write>,
    write_sequence_next: u64,
    /// Submitted fsyncs, oldest first; each completes at a `sync_reap`.
    fsyncs: VecDeque<Fsync>,
    /// Fsyncs started so far (immediate and submitted).
    fsync_count: u64,
    /// The fsync that fails, counted like `fsync_count`.
    fsync_fail_at: Option<u64>,
    fsyncs_failed: u64,
    /// Bumped by each crash: storages and segments from before it are dead.
    generation: u64,
}

struct Write {
    sequence: u64,
    segment: u32,
    offset: u64,
    bytes: Vec<u8>,
}

struct Fsync {
    ticket: u64,
    segment: u32,
    /// Covers the segment's writes with a sequence below this.
    write_sequence_end: u64,
    fails: bool,
}

impl FaultyDisk {
    /// An empty, unformatted disk.
    pub fn new() -> FaultyDisk {
        FaultyDisk::default()
    }

    /// A storage for one journal on this disk. Its segments start as the disk's written image
    /// (durable bytes plus unsynced writes: what the page cache holds after a clean close).
    pub fn storage(&self) -> FaultyStorage {
        FaultyStorage {
            disk: self.clone(),
            generation: self.state().generation,
        }
    }

    fn state(&self) -> MutexGuard<'_, DiskState> {
        // A panic elsewhere (a failed test assertion) must not hide the disk from the report.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Makes the fsync `count` fsyncs from now fail (1: the next one).
    pub fn fsync_fail_after(&self, count: u64) {
        assert!(count > 0);
        let mut state = self.state();
        state.fsync_fail_at = Some(state.fsync_count + count);
    }

    /// How many fsyncs failed so far.
    pub fn fsyncs_failed(&self) -> u64 {
        self.state().fsyncs_failed
    }

    /// Crashes: every storage and segment from before is dead, and the durable image becomes what
    /// `crash` leaves of the unsynced writes, chosen from `seed`.
    pub fn crash(&self, crash: Crash, seed: u64) -> CrashReport {
        let mut state = self.state();
        let mut rng = SplitMix64(seed);
        let writes = std::mem::take(&mut state.writes);
        // Per sector, the unsynced writes touching it in issue order.
        let mut sectors: BTreeMap<(u32, u64), Vec<usize>> = BTreeMap::new();
        for (index, write) in writes.iter().enumerate() {
            assert!(!write.bytes.is_empty());
            let first = write.offset / SECTOR_SIZE_BYTES;
            let last = (write.offset + write.bytes.len() as u64 - 1) / SECTOR_SIZE_BYTES;
            for sector in first..=last {
                sectors
                    .entry((write.segment, sector))
                    .or_default()
                    .push(index);
            }
        }
        let (torn_index, torn_boundary) = match crash {
            Crash::TearInOrder => tear_choose(&writes, &mut rng),
            _ => (writes.len(), 0),
        };
        // Per write, in how many of its sectors it reached the disk, and in how many it could.
        let mut applied = vec![(0u64, 0u64); writes.len()];
        for ((segment, sector), indexes) in &sectors {
            let version = match crash {
                Crash::ProcessKill => indexes.len(),
                Crash::DropUnsynced => 0,
                Crash::TearInOrder => {
                    let sector_end = (sector + 1) * SECTOR_SIZE_BYTES;
                    indexes
                        .iter()
                        .take_while(|index| {
                            **index < torn_index
                                || (**index == torn_index && sector_end <= torn_boundary)
                        })
                        .count()
                }
                Crash::Reorder => match rng.below(4) {
                    0 | 1 => indexes.len(),
                    2 => 0,
                    _ => rng.below(indexes.len() as u64 + 1) as usize,
                },
            };
            let image = &mut state.segments[*segment as usize];
            let sector_start = sector * SECTOR_SIZE_BYTES;
            for (rank, index) in indexes.iter().enumerate() {
                applied[*index].1 += 1;
                if rank < version {
                    applied[*index].0 += 1;
                    write_apply_within(image, &writes[*index], sector_start);
                }
            }
        }
        let mut report = CrashReport {
            writes_unsynced: writes.len(),
            ..CrashReport::default()
        };
        let mut earlier_incomplete = false;
        for (kept, total) in applied {
            match kept {
                0 => report.writes_lost += 1,
                kept if kept == total => report.writes_kept += 1,
                _ => report.writes_torn += 1,
            }
            report.reordered |= kept > 0 && earlier_incomplete;
            earlier_incomplete |= kept < total;
        }
        state.fsyncs.clear();
        state.fsync_fail_at = None;
        state.generation += 1;
        // Pair assertion: every unsynced write was counted once.
        assert_eq!(
            report.writes_kept + report.writes_torn + report.writes_lost,
            report.writes_unsynced
        );
        report
    }

    /// Flips one bit of the durable image: damage no crash makes (bit rot, a bad sector). Only
    /// between crashes, while nothing is unsynced.
    pub fn bit_flip(&self, segment: u32, offset: u64, bit: u8) {
        let mut state = self.state();
        assert!(state.writes.is_empty(), "flip bits only in a crashed disk");
        state.segments[segment as usize][offset as usize] ^= 1 << bit;
    }
}

/// For `Crash::TearInOrder`: the write that is torn and the sector boundary it is torn at (the
/// sectors of that write below the boundary reach the disk). Writes before it reach the disk whole.
fn tear_choose(writes: &[Write], rng: &mut SplitMix64) -> (usize, u64) {
    let torn_index = rng.below(writes.len() as u64 + 1) as usize;
    let Some(write) = writes.get(torn_index) else {
        return (torn_index, 0);
    };
    let end = write.offset + write.bytes.len() as u64;
    let first = write.offset.div_ceil(SECTOR_SIZE_BYTES);
    let last = end.div_ceil(SECTOR_SIZE_BYTES);
    (torn_index, rng.range(first, last + 1) * SECTOR_SIZE_BYTES)
}

/// Copies the part of `write` inside the sector starting at `sector_start` into `image`.
fn write_apply_within(image: &mut [u8], write: &Write, sector_start: u64) {
    let start = write.offset.max(sector_start);
    let end = (write.offset + write.bytes.len() as u64).min(sector_start + SECTOR_SIZE_BYTES);
    assert!(start < end);
    let source = &write.bytes[(start - write.offset) as usize..(end - write.offset) as usize];
    image[start as usize..end as usize].copy_from_slice(source);
}

impl DiskState {
    fn fsync_start(&mut self) -> bool {
        self.fsync_count += 1;
        let fails = self.fsync_fail_at == Some(self.fsync_count);
        self.fsyncs_failed += u64::from(fails);
        fails
    }

    /// Makes the writes to `segment` below `write_sequence_end` durable.
    fn writes_apply(&mut self, segment: u32, write_sequence_end: u64) {
        let writes = std::mem::take(&mut self.writes);
        for write in writes {
            if write.segment == segment && write.sequence < write_sequence_end {
                let image = &mut self.segments[segment as usize];
                let offset = write.offset as usize;
                image[offset..offset + write.bytes.len()].copy_from_slice(&write.bytes);
            } else {
                self.writes.push(write);
            }
        }
    }
}

/// The storage of one journal on a `FaultyDisk`.
pub struct FaultyStorage {
    disk: FaultyDisk,
    generation: u64,
}

/// A segment of a `FaultyStorage`: the written image in memory; each write is also logged on the
/// disk until an fsync covers it.
pub struct FaultySegment {
    index: u32,
    written: Vec<u8>,
    disk: FaultyDisk,
    generation: u64,
}

impl AsRef<[u8]> for FaultySegment {
    fn as_ref(&self) -> &[u8] {
        &self.written
    }
}

impl StorageSegment for FaultySegment {
    fn write(&mut self, offset: u64, bytes: &[u8]) {
        let start = offset as usize;
        self.written[start..start + bytes.len()].copy_from_slice(bytes);
        let mut state = self.disk.state();
        if state.generation != self.generation || bytes.is_empty() {
            return;
        }
        let sequence = state.write_sequence_next;
        state.write_sequence_next += 1;
        state.writes.push(Write {
            sequence,
            segment: self.index,
            offset,
            bytes: bytes.to_vec(),
        });
    }

    fn data_runs(&self) -> DataRuns {
        vec![(0, self.written.len() as u64)]
    }
}

fn crashed() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the faulty disk crashed")
}

impl FaultyStorage {
    fn state(&self) -> Result<MutexGuard<'_, DiskState>, io::Error> {
        let state = self.disk.state();
        if state.generation == self.generation {
            Ok(state)
        } else {
            Err(crashed())
        }
    }

    fn journal_error(error: io::Error) -> JournalError {
        JournalError::Io {
            path: "<faulty disk>".into(),
            source: error,
        }
    }
}

impl Storage for FaultyStorage {
    type Segment = FaultySegment;

    fn format(&mut self) -> Result<(), JournalError> {
        let mut state = self.state().map_err(FaultyStorage::journal_error)?;
        if state.formatted {
            return Err(JournalError::AlreadyFormatted {
                directory: "<faulty disk>".into(),
            });
        }
        state.formatted = true;
        Ok(())
    }

    fn open(&mut self) -> Result<u32, JournalError> {
        let state = self.state().map_err(FaultyStorage::journal_error)?;
        assert!(
            state.formatted,
            "a faulty disk is formatted with its journal"
        );
        assert!(!state.segments.is_empty());
        Ok(state.segments.len() as u32)
    }

    fn segment_create(
        &mut self,
        index: u32,
        segment_size_bytes: u64,
    ) -> Result<FaultySegment, JournalError> {
        let mut state = self.state().map_err(FaultyStorage::journal_error)?;
        assert_eq!(index as usize, state.segments.len());
        // Allocation is durable before the segment is used, as `FileStorage` does it.
        state.segments.push(vec![0; segment_size_bytes as usize]);
        Ok(FaultySegment {
            index,
            written: vec![0; segment_size_bytes as usize],
            disk: self.disk.clone(),
            generation: self.generation,
        })
    }

    fn segment_open(
        &mut self,
        index: u32,
        segment_size_bytes: u64,
    ) -> Result<FaultySegment, JournalError> {
        let state = self.state().map_err(FaultyStorage::journal_error)?;
        let mut written = state.segments[index as usize].clone();
        assert_eq!(written.len() as u64, segment_size_bytes);
        for write in state.writes.iter().filter(|write| write.segment == index) {
            let offset = write.offset as usize;
            written[offset..offset + write.bytes.len()].copy_from_slice(&write.bytes);
        }
        Ok(FaultySegment {
            index,
            written,
            disk: self.disk.clone(),
            generation: self.generation,
        })
    }

    fn leftovers_remove(&mut self) -> Result<bool, JournalError> {
        Ok(false)
    }

    fn sync_now(&mut self, segment: &FaultySegment) -> io::Result<()> {
        let mut state = self.state()?;
        if state.fsync_start() {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        let end = state.write_sequence_next;
        state.writes_apply(segment.index, end);
        Ok(())
    }

    fn sync_submit(&mut self, sequence: u64, segments: &[FaultySegment]) -> io::Result<u32> {
        let mut state = self.state()?;
        for segment in segments {
            let fails = state.fsync_start();
            let write_sequence_end = state.write_sequence_next;
            state.fsyncs.push_back(Fsync {
                ticket: sequence,
                segment: segment.index,
                write_sequence_end,
                fails,
            });
        }
        Ok(segments.len() as u32)
    }

    /// Completes the oldest submitted fsync: one completion per call.
    fn sync_reap(&mut self, mut completion: impl FnMut(u64, i32)) -> io::Result<()> {
        let mut state = self.state()?;
        let fsync = state
            .fsyncs
            .pop_front()
            .expect("sync_reap is called only while completions are outstanding");
        if fsync.fails {
            // The writes stay unsynced: the kernel may have dropped the pages it failed to write.
            completion(fsync.ticket, -libc::EIO);
        } else {
            state.writes_apply(fsync.segment, fsync.write_sequence_end);
            completion(fsync.ticket, 0);
        }
        Ok(())
    }

    /// Reports nothing: a submitted fsync completes only at a `sync_reap`. A storage from
    /// before a crash fails, as every call does.
    fn sync_poll(&mut self, _completion: impl FnMut(u64, i32)) -> io::Result<()> {
        drop(self.state()?);
        Ok(())
    }

    fn sync_uses_io_uring(&self) -> bool {
        false
    }
}

/// SplitMix64: small, seedable, enough to choose what a crash keeps.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, bound).
    fn below(&mut self, bound: u64) -> u64 {
        assert!(bound > 0);
        self.next() % bound
    }

    /// Uniform in [low, high).
    fn range(&mut self, low: u64, high: u64) -> u64 {
        low + self.below(high - low)
    }
}
