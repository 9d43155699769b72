use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{compiler_fence, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tally_checksum::checksum;

use crate::checkpoint::{
    checkpoint_choose, checkpoint_proof, checkpoint_read, checkpoint_slot_next, checkpoint_write,
    Checkpoint, CheckpointRejection, CHECKPOINT_SLOT_COUNT,
};
use crate::directory::{
    self, directory_sync, file_replace, format_read, io_error, temporary_remove, LockMode,
    CHECKPOINT_FILES, CHECKPOINT_TEMPORARY, FORMAT_FILE, FORMAT_TEMPORARY, SEGMENTS_DIRECTORY,
};
use crate::error::{Damage, Evidence, JournalError};
use crate::layout::{
    header_bytes, is_zero, record_size_bytes, CheckpointHeader, FormatMarker, RecordHeader,
    HEADER_SIZE_BYTES, RECORD_ALIGNMENT_BYTES,
};
use crate::scan::{self, Log, RecordPosition, RecordView, Tail, INDEX_STRIDE_OPS};
use crate::segment::{DataRuns, SEGMENT_COUNT_MAX};
use crate::storage::{segments_directory, FileStorage, Storage, StorageSegment};
use crate::sync::{SyncMode, SyncTicket, Syncer};

/// The smallest segment size: `Options::segment_size_bytes` must lie between this and
/// `SEGMENT_SIZE_BYTES_MAX` and be a multiple of 4096.
pub const SEGMENT_SIZE_BYTES_MIN: u64 = 1024 * 1024;
/// Offsets within a segment stay far from any overflow, and one mapping stays a sane size.
pub const SEGMENT_SIZE_BYTES_MAX: u64 = 4 * 1024 * 1024 * 1024;

/// How to format and open a journal. `Default` gives the production values: 256 MiB segments,
/// bodies up to 64 MiB, checkpoint states up to 16 GiB, syncs through io_uring, no cutting of
/// unproven damage.
#[derive(Clone, Debug)]
pub struct Options {
    /// Size of every segment file. Fixed at format time: `open` takes it from the format marker.
    pub segment_size_bytes: u64,
    /// The largest body `append` takes. A record never spans segments, so header plus body must fit
    /// in one.
    pub body_size_bytes_max: u32,
    /// The largest checkpoint state `write_checkpoint` writes and `open` reads.
    pub state_size_bytes_max: u64,
    /// How `sync_begin` reaches the disk: io_uring in production, `Blocking` where a test wants
    /// each sync complete on return.
    pub sync_mode: SyncMode,
    /// Operator override (`tally start --cut-unproven-tail`) for a log that `open` refused with
    /// `Evidence::Unproven`: cut the tail at the damage even though a valid record follows it and
    /// the damage is not what a power loss leaves. A power loss never needs it: `open` cuts what a
    /// power loss leaves on its own (`Evidence::Unacknowledged`). Damage with proof
    /// (`Evidence::Synced`, `Evidence::Checkpoint`, `Evidence::OutOfOrder`) is never cut.
    pub cut_unproven_tail: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            segment_size_bytes: 256 * 1024 * 1024,
            body_size_bytes_max: 64 * 1024 * 1024,
            state_size_bytes_max: 16 * 1024 * 1024 * 1024,
            sync_mode: SyncMode::IoUring,
            cut_unproven_tail: false,
        }
    }
}

fn options_verify(options: &Options, segment_size_bytes: u64) -> Result<(), JournalError> {
    let invalid = |reason| Err(JournalError::OptionsInvalid { reason });
    if segment_size_bytes < SEGMENT_SIZE_BYTES_MIN {
        return invalid("segment_size_bytes is below 1 MiB");
    }
    if segment_size_bytes > SEGMENT_SIZE_BYTES_MAX {
        return invalid("segment_size_bytes is above 4 GiB");
    }
    if segment_size_bytes % 4096 != 0 {
        return invalid("segment_size_bytes is not a multiple of 4096");
    }
    if HEADER_SIZE_BYTES + u64::from(options.body_size_bytes_max) > segment_size_bytes {
        return invalid("a record of body_size_bytes_max does not fit in a segment");
    }
    Ok(())
}

/// What `open` found and did.
#[derive(Debug)]
pub struct Recovery {
    /// The last op of the recovered log (after any cut); 0 for an empty log.
    pub op_last: u64,
    /// The newest usable checkpoint: replay `records_from(checkpoint.op + 1)` on top of its state.
    pub checkpoint: Option<Checkpoint>,
    /// Checkpoint slots passed over, and why.
    pub checkpoints_rejected: Vec<CheckpointRejection>,
    /// The torn tail that was cut, if any.
    pub cut: Option<Cut>,
}

/// A tail that recovery zeroed: records from `op` on were never acknowledged (as far as the log
/// proves), or the operator chose to lose them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cut {
    /// The first op cut: the log now ends at `op - 1`, and the next append gets `op` again.
    pub op: u64,
    /// Where the damaged record was.
    pub segment: u32,
    /// Where the damaged record was, in bytes from its segment's start.
    pub offset: u64,
    /// From the damage to the end of the last nonzero 128-byte block (counted across segments).
    pub bytes: u64,
    /// What was wrong with the record at `op`.
    pub damage: Damage,
    /// `None` for a torn tail (no valid record after the damage); `Evidence::Unacknowledged` when
    /// a later record survived a power loss without this one; `Evidence::Unproven` when the
    /// operator allowed the cut.
    pub evidence: Option<Evidence>,
}

/// The write-ahead log of one data directory, open for appending. See the crate documentation.
///
/// Generic over the storage of its segments (`FileStorage` unless a test says otherwise), so that
/// appends compile to direct calls of the storage's writes.
pub struct Journal<S: Storage = FileStorage> {
    directory: PathBuf,
    /// Holds the exclusive flock for as long as the journal is open.
    directory_file: File,
    options: Options,
    marker: FormatMarker,
    storage: S,
    segments: Vec<S::Segment>,
    /// Sparse op index, see `INDEX_STRIDE_OPS`.
    index: Vec<u64>,
    op_last: u64,
    checksum_last: u128,
    /// Just past the last record (global address, see `scan`). Everything beyond it is zero.
    address_end: u64,
    /// The first segment written since the last `sync_begin`; the rest up to the head follow.
    dirty_segment_first: Option<u32>,
    syncer: Syncer,
    checkpoint_slot_ops: [Option<u64>; CHECKPOINT_SLOT_COUNT],
    /// The checkpoint the writer thread is writing (`checkpoint_start`), at most one.
    checkpoint_writing: Option<CheckpointWriting>,
    failed: bool,
}

/// A checkpoint on the writer thread: its slot counts as empty until the writer reports it
/// durable, so that nothing relies on it before then.
struct CheckpointWriting {
    op: u64,
    slot: usize,
    writer: JoinHandle<Result<(Duration, Vec<u8>), JournalError>>,
}

/// A checkpoint that is durable in its slot: recovery may choose it from now on.
pub struct CheckpointLanded {
    /// The record it follows.
    pub op: u64,
    /// How long the writer thread took: checksum, write, fsyncs and rename.
    pub write_duration: Duration,
    /// The state, handed back: a caller that encodes the next checkpoint into it finds its
    /// pages already faulted in.
    pub state: Vec<u8>,
}

impl Journal<FileStorage> {
    /// Creates `directory` if missing and formats it: the first segment, then the format marker,
    /// whose presence means format completed. Refuses a directory that holds any journal file.
    pub fn format(directory: &Path, options: &Options, cluster: u128) -> Result<(), JournalError> {
        let storage = FileStorage::new(segments_directory(directory), options.sync_mode);
        Journal::format_with(storage, directory, options, cluster)
    }

    /// Opens a formatted directory: verifies the whole log, cuts what a crash left unacknowledged
    /// (or refuses damage the log proves was acknowledged, writing nothing), makes the recovered
    /// log durable, picks a checkpoint.
    pub fn open(directory: &Path, options: Options) -> Result<(Journal, Recovery), JournalError> {
        let storage = FileStorage::new(segments_directory(directory), options.sync_mode);
        Journal::open_with(storage, directory, options)
    }

    /// The segment size a formatted directory was made with (from its format marker), so that
    /// a caller can size its `Options` before `open`.
    pub fn segment_size_of(directory: &Path) -> Result<u64, JournalError> {
        Ok(crate::directory::format_read(directory)?.segment_size_bytes)
    }
}

impl<S: Storage> Journal<S> {
    /// `format` with the segments in `storage`; the format marker, the checkpoints and the lock
    /// stay in `directory`.
    pub fn format_with(
        mut storage: S,
        directory: &Path,
        options: &Options,
        cluster: u128,
    ) -> Result<(), JournalError> {
        options_verify(options, options.segment_size_bytes)?;
        fs::create_dir_all(directory).map_err(io_error(directory))?;
        let directory_file = directory::lock(directory, LockMode::Exclusive)?;
        let mut names = vec![FORMAT_FILE, SEGMENTS_DIRECTORY];
        names.extend(CHECKPOINT_FILES);
        for name in names {
            let path = directory.join(name);
            match fs::symlink_metadata(&path) {
                Ok(_) => {
                    return Err(JournalError::AlreadyFormatted {
                        directory: directory.into(),
                    });
                }
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(error) => {
                    return Err(JournalError::Io {
                        path,
                        source: error,
                    })
                }
            }
        }
        storage.format()?;
        let size = options.segment_size_bytes;
        drop(storage.segment_create(0, size)?);
        let (marker, bytes) = FormatMarker::sealed(cluster, size);
        file_replace(
            &directory_file,
            directory,
            FORMAT_FILE,
            FORMAT_TEMPORARY,
            &[&bytes],
        )?;
        // Pair assertion: the marker reads back as written.
        assert_eq!(format_read(directory)?, marker);
        tracing::info!(directory = %directory.display(), cluster, "journal formatted");
        Ok(())
    }

    /// `open` with the segments in `storage`.
    pub fn open_with(
        mut storage: S,
        directory: &Path,
        options: Options,
    ) -> Result<(Journal<S>, Recovery), JournalError> {
        let directory_file = directory::lock(directory, LockMode::Exclusive)?;
        let marker = format_read(directory)?;
        options_verify(&options, marker.segment_size_bytes)?;
        let segment_count = storage.open()?;
        assert!(segment_count > 0);
        // Room for the spare segments appends will add, to begin with.
        let mut segments = Vec::with_capacity(segment_count as usize + 2);
        for index in 0..segment_count {
            segments.push(storage.segment_open(index, marker.segment_size_bytes)?);
        }
        // Before anything reads the segments: see `data_runs`.
        let runs: Vec<DataRuns> = segments.iter().map(StorageSegment::data_runs).collect();
        let log = Log {
            segments: &segments,
            segment_size_bytes: marker.segment_size_bytes,
            runs: &runs,
        };
        let mut walk = scan::walk(log, marker.checksum, &mut |_| {});
        let state_size_bytes_max = options.state_size_bytes_max;
        let checkpoints = [
            checkpoint_read(directory, 0, marker.cluster, state_size_bytes_max)?,
            checkpoint_read(directory, 1, marker.cluster, state_size_bytes_max)?,
        ];
        if let Tail::Damaged(damage) = &mut walk.tail {
            damage.checkpoint_proof(checkpoint_proof(&checkpoints));
        }
        let cut = tail_decide(&walk.tail, log, options.cut_unproven_tail)?;
        // Nothing was written so far: a refusal above leaves every file as it was.
        let mut journal = Journal {
            directory: directory.to_path_buf(),
            directory_file,
            // Everything recovered is durable once `recover` returns (or the journal is dropped).
            syncer: Syncer::new(walk.op_last),
            options,
            marker,
            storage,
            segments,
            index: walk.index,
            op_last: walk.op_last,
            checksum_last: walk.checksum_last,
            address_end: walk.address_end,
            dirty_segment_first: None,
            checkpoint_slot_ops: [None; CHECKPOINT_SLOT_COUNT],
            checkpoint_writing: None,
            failed: false,
        };
        journal.recover(&walk.tail, &runs, walk.op_synced_last)?;
        journal.appends_mark();
        // After recovery removed the leftovers of earlier preparations.
        journal.segment_next_prepare();
        let choice = checkpoint_choose(checkpoints, journal.op_last, |op| journal.checksum_of(op));
        journal.checkpoint_slot_ops = choice.slot_ops;
        for rejection in &choice.rejections {
            tracing::warn!(file = rejection.file, problem = %rejection.problem, "checkpoint unused");
        }
        let recovery = Recovery {
            op_last: journal.op_last,
            checkpoint: choice.chosen,
            checkpoints_rejected: choice.rejections,
            cut,
        };
        Ok((journal, recovery))
    }

    /// The writing half of recovery: cut the torn tail, make everything recovered durable (the
    /// last process may have died with records in the page cache only), drop leftover temporaries.
    fn recover(
        &mut self,
        tail: &Tail,
        runs: &[DataRuns],
        op_synced_last: u64,
    ) -> Result<(), JournalError> {
        match tail {
            Tail::Clean => {}
            Tail::Damaged(damage) => self.tail_zero(runs, damage.address_dirty_end),
        }
        // Ops up to op_synced_last were synced before; sync from the first op that may not be.
        let segment_first = match self.records_from(op_synced_last + 1).next() {
            Some(record) => record.position.segment,
            None => self.segment_of_end(),
        };
        for segment in &self.segments[segment_first as usize..] {
            self.storage
                .sync_now(segment)
                .map_err(|source| JournalError::SyncFailed { source })?;
        }
        let removed_segments = self.storage.leftovers_remove()?;
        let removed_checkpoint = temporary_remove(&self.directory.join(CHECKPOINT_TEMPORARY))?;
        if removed_segments || removed_checkpoint {
            directory_sync(&self.directory_file, &self.directory)?;
        }
        Ok(())
    }

    /// Zeroes every nonzero 128-byte block from the end of the log to `address_dirty_end`.
    fn tail_zero(&mut self, runs: &[DataRuns], address_dirty_end: u64) {
        assert!(address_dirty_end > self.address_end);
        let segment_size_bytes = self.marker.segment_size_bytes;
        let log = Log {
            segments: &self.segments,
            segment_size_bytes,
            runs,
        };
        let mut spans = Vec::new();
        let mut address = self.address_end;
        while let Some((start, end)) = log.data_run(address) {
            if start >= address_dirty_end {
                break;
            }
            spans.push((start, end.min(address_dirty_end)));
            address = end;
        }
        const ZEROS: [u8; RECORD_ALIGNMENT_BYTES as usize] = [0; RECORD_ALIGNMENT_BYTES as usize];
        for (start, end) in spans {
            let segment = &mut self.segments[(start / segment_size_bytes) as usize];
            let offset_start = start % segment_size_bytes;
            let offset_end = offset_start + (end - start);
            assert!(offset_start % RECORD_ALIGNMENT_BYTES == 0);
            for offset in (offset_start..offset_end).step_by(ZEROS.len()) {
                let block_end = (offset + RECORD_ALIGNMENT_BYTES).min(offset_end);
                if !is_zero(&segment.as_ref()[offset as usize..block_end as usize]) {
                    segment.write(offset, &ZEROS[..(block_end - offset) as usize]);
                }
            }
        }
        // Pair assertion: the invariant appends rely on (only zeros past the end) holds again.
        let log = Log {
            segments: &self.segments,
            segment_size_bytes,
            runs,
        };
        assert_eq!(scan::dirty_end(log, self.address_end), None);
    }

    /// Appends one record after the last. It is readable at once and durable only after a sync
    /// that began after it. Fails, leaving the log unchanged, if the body is too large or the next
    /// segment cannot be allocated.
    pub fn append(
        &mut self,
        kind: u16,
        timestamp: u64,
        body: &[u8],
    ) -> Result<RecordPosition, JournalError> {
        self.usable()?;
        assert_ne!(kind, 0, "kind 0 is reserved as invalid");
        let body_size = self.body_size_check(body)?;
        let address = self.append_address(body_size);
        let (segment, offset) = self.log().split(address);
        // Keep one segment allocated beyond the one written, so that a full disk fails an append
        // while a whole segment of room is left, and crossing into a new segment allocates nothing.
        self.segments_ensure(segment + 1)?;
        let op = self.op_last + 1;
        let header = RecordHeader {
            checksum: 0,
            checksum_body: checksum(body),
            parent: self.checksum_last,
            op,
            op_synced: self.syncer.op_synced(),
            timestamp,
            body_size,
            kind,
        };
        let header = self.record_write(address, header, body);
        if (op - 1) % INDEX_STRIDE_OPS == 0 {
            self.index.push(address);
        }
        self.op_last = op;
        self.checksum_last = header.checksum;
        self.address_end = address + record_size_bytes(body_size);
        self.dirty_segment_first.get_or_insert(segment);
        Ok(RecordPosition {
            op,
            segment,
            offset,
            body_size,
        })
    }

    fn body_size_check(&self, body: &[u8]) -> Result<u32, JournalError> {
        let body_size_bytes_max = self.options.body_size_bytes_max;
        match u32::try_from(body.len()) {
            Ok(body_size) if body_size <= body_size_bytes_max => Ok(body_size),
            _ => Err(JournalError::BodyTooLarge {
                body_size_bytes: body.len() as u64,
                body_size_bytes_max,
            }),
        }
    }

    /// Where a record of `body_size` goes: after the last, or at the next segment's start if it
    /// does not fit in the rest of this one (which then stays zero).
    fn append_address(&self, body_size: u32) -> u64 {
        let segment_size_bytes = self.marker.segment_size_bytes;
        let offset = self.address_end % segment_size_bytes;
        if record_size_bytes(body_size) <= segment_size_bytes - offset {
            self.address_end
        } else {
            self.address_end - offset + segment_size_bytes
        }
    }

    /// Allocates segments up to and including `segment`.
    fn segments_ensure(&mut self, segment: u32) -> Result<(), JournalError> {
        if segment >= SEGMENT_COUNT_MAX {
            return Err(JournalError::LogFull {
                segment,
                segment_count_max: SEGMENT_COUNT_MAX,
            });
        }
        assert!(segment as usize <= self.segments.len() + 1);
        while self.segments.len() <= segment as usize {
            let index = self.segments.len() as u32;
            let mut created = self
                .storage
                .segment_create(index, self.marker.segment_size_bytes)?;
            created.appends_from(0);
            self.segments.push(created);
            self.segment_next_prepare();
        }
        Ok(())
    }

    /// Tells the segment appends go into, and any after it, where appends go on (after
    /// recovery, which read the log below in order).
    fn appends_mark(&mut self) {
        let segment_size_bytes = self.marker.segment_size_bytes;
        let active = self.address_end / segment_size_bytes;
        for (index, segment) in self.segments.iter_mut().enumerate() {
            let start = segment_size_bytes * index as u64;
            if index as u64 >= active {
                segment.appends_from(self.address_end.saturating_sub(start));
            }
        }
    }

    /// Lets the storage allocate the segment after the last one now, off this thread, so that
    /// the append that needs it finds it ready.
    fn segment_next_prepare(&mut self) {
        let index = self.segments.len() as u32;
        if index < SEGMENT_COUNT_MAX {
            self.storage
                .segment_prepare(index, self.marker.segment_size_bytes);
        }
    }

    fn record_write(&mut self, address: u64, header: RecordHeader, body: &[u8]) -> RecordHeader {
        let segment_size_bytes = self.marker.segment_size_bytes;
        let segment = &mut self.segments[(address / segment_size_bytes) as usize];
        let offset = address % segment_size_bytes;
        let size = record_size_bytes(header.body_size);
        assert!(offset + size <= segment_size_bytes);
        let slot = &segment.as_ref()[offset as usize..][..HEADER_SIZE_BYTES as usize];
        assert!(is_zero(slot), "appending over a record");
        let (header, bytes) = header.sealed();
        if !body.is_empty() {
            segment.write(offset + HEADER_SIZE_BYTES, body);
        }
        // The header goes in last, so that a process killed during the copy leaves no valid header
        // in front of a partial body (a power loss may still reorder pages: recovery handles that).
        compiler_fence(Ordering::Release);
        segment.write(offset, &bytes);
        // Pair assertion: what recovery will read is what was meant.
        let written = header_bytes(&segment.as_ref()[offset as usize..]);
        assert_eq!(RecordHeader::verify(written), Ok(header));
        header
    }

    /// Starts making every record appended so far durable, and returns at once. Appends may go
    /// on; `sync_wait(ticket)` waits for it. A third sync waits for the oldest of two in flight.
    pub fn sync_begin(&mut self) -> Result<SyncTicket, JournalError> {
        self.usable()?;
        let dirty = match self.dirty_segment_first.take() {
            Some(segment_first) => segment_first as usize..self.segment_of_end() as usize + 1,
            None => 0..0,
        };
        let begun = self
            .syncer
            .begin(&mut self.storage, self.op_last, &self.segments[dirty]);
        self.sync_result(begun)
    }

    /// Waits until every op up to `ticket.op()` is durable. An fsync error fails the journal.
    pub fn sync_wait(&mut self, ticket: SyncTicket) -> Result<(), JournalError> {
        self.usable()?;
        let waited = self.syncer.wait_ticket(&mut self.storage, ticket);
        self.sync_result(waited)?;
        assert!(self.syncer.op_synced() >= ticket.op());
        Ok(())
    }

    /// Whether every op up to `ticket.op()` is durable, from the completions already reported:
    /// never blocks. An fsync error fails the journal.
    pub fn sync_poll(&mut self, ticket: SyncTicket) -> Result<bool, JournalError> {
        self.usable()?;
        let polled = self.syncer.poll_ticket(&mut self.storage, ticket);
        let done = self.sync_result(polled)?;
        assert!(!done || self.syncer.op_synced() >= ticket.op());
        Ok(done)
    }

    /// `sync_begin` and `sync_wait` in one.
    pub fn sync(&mut self) -> Result<(), JournalError> {
        let ticket = self.sync_begin()?;
        self.sync_wait(ticket)
    }

    fn sync_result<T>(&mut self, result: io::Result<T>) -> Result<T, JournalError> {
        result.map_err(|source| {
            self.failed = true;
            tracing::error!(error = %source, "fsync failed: the journal refuses all further work");
            JournalError::SyncFailed { source }
        })
    }

    /// Stores `state`, which reflects the state after record `op`, as the newest checkpoint, on
    /// this thread: returns once it is durable. Syncs the log through `op` first, so that a
    /// checkpoint is never ahead of the durable log. Waits for a checkpoint in flight first.
    pub fn write_checkpoint(&mut self, op: u64, state: &[u8]) -> Result<(), JournalError> {
        self.checkpoint_wait()?;
        let (slot, header) = self.checkpoint_prepare(op, state.len() as u64)?;
        checkpoint_write(&self.directory_file, &self.directory, slot, header, state)?;
        self.checkpoint_slot_ops[slot] = Some(op);
        Ok(())
    }

    /// `write_checkpoint` on the journal's writer thread: checks and prepares here (syncing the
    /// log through `op` if it is not yet), then returns while a thread of its own checksums,
    /// writes and fsyncs `state` and renames it over a slot. At most one checkpoint is in
    /// flight: `checkpoint_poll` or `checkpoint_wait` learns how it ended (and hands `state`
    /// back), and only then does the journal count on it. A failed write reports the error
    /// `write_checkpoint` would have.
    pub fn checkpoint_start(&mut self, op: u64, state: Vec<u8>) -> Result<(), JournalError> {
        assert!(
            self.checkpoint_writing.is_none(),
            "one checkpoint in flight at most"
        );
        let (slot, header) = self.checkpoint_prepare(op, state.len() as u64)?;
        let directory = self.directory.clone();
        let directory_file = self
            .directory_file
            .try_clone()
            .map_err(io_error(&self.directory))?;
        let writer = std::thread::Builder::new()
            .name("tally-checkpoint".into())
            .spawn(move || {
                writer_yield_cpu();
                let started = Instant::now();
                checkpoint_write(&directory_file, &directory, slot, header, &state)?;
                Ok((started.elapsed(), state))
            })
            .map_err(io_error(&self.directory))?;
        self.checkpoint_writing = Some(CheckpointWriting { op, slot, writer });
        Ok(())
    }

    /// Whether a checkpoint is on the writer thread (until `checkpoint_poll` or
    /// `checkpoint_wait` reports it).
    pub fn checkpoint_in_flight(&self) -> bool {
        self.checkpoint_writing.is_some()
    }

    /// Without waiting: the checkpoint in flight if it has landed since the last call, or the
    /// error that ended its write. `Ok(None)` while it is being written, or if none is.
    pub fn checkpoint_poll(&mut self) -> Result<Option<CheckpointLanded>, JournalError> {
        match &self.checkpoint_writing {
            Some(writing) if writing.writer.is_finished() => self.checkpoint_reap(),
            Some(_) | None => Ok(None),
        }
    }

    /// Waits for the checkpoint in flight, if any, and reports it as `checkpoint_poll` does.
    pub fn checkpoint_wait(&mut self) -> Result<Option<CheckpointLanded>, JournalError> {
        self.checkpoint_reap()
    }

    /// Joins the writer thread and counts the checkpoint's slot once it is durable.
    fn checkpoint_reap(&mut self) -> Result<Option<CheckpointLanded>, JournalError> {
        let Some(writing) = self.checkpoint_writing.take() else {
            return Ok(None);
        };
        let written = match writing.writer.join() {
            Ok(written) => written,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        let (write_duration, state) = written?;
        assert_eq!(self.checkpoint_slot_ops[writing.slot], None);
        self.checkpoint_slot_ops[writing.slot] = Some(writing.op);
        Ok(Some(CheckpointLanded {
            op: writing.op,
            write_duration,
            state,
        }))
    }

    /// What every checkpoint write starts with: the checks, the log synced through `op`, the
    /// header but for the state's checksum, and the slot, which counts as empty from now on.
    fn checkpoint_prepare(
        &mut self,
        op: u64,
        state_size_bytes: u64,
    ) -> Result<(usize, CheckpointHeader), JournalError> {
        self.usable()?;
        assert!(
            op <= self.op_last,
            "checkpoint op {op} is beyond the last op {}",
            self.op_last
        );
        let state_size_bytes_max = self.options.state_size_bytes_max;
        if state_size_bytes > state_size_bytes_max {
            return Err(JournalError::StateTooLarge {
                state_size_bytes,
                state_size_bytes_max,
            });
        }
        if op > self.syncer.op_synced() {
            self.sync()?;
        }
        let header = CheckpointHeader {
            checksum: 0,
            checksum_state: 0,
            checksum_record: self.checksum_of(op),
            cluster: self.marker.cluster,
            op,
            state_size_bytes,
        };
        let slot = checkpoint_slot_next(&self.checkpoint_slot_ops);
        // The slot's old checkpoint is gone as soon as the rename happens; if the write fails, the
        // slot counts as empty and is the next one written.
        self.checkpoint_slot_ops[slot] = None;
        Ok((slot, header))
    }

    /// Records `op..=op_last()` in order, with their bodies. `op_last() + 1` gives none.
    pub fn records_from(&self, op: u64) -> impl Iterator<Item = RecordView<'_>> + '_ {
        scan::records_from(self.log(), &self.index, op, self.op_last)
    }

    /// The body of an appended or recovered record. O(1), no syscalls.
    pub fn body(&self, position: RecordPosition) -> &[u8] {
        let header = self.bytes_at(position.segment, position.offset, HEADER_SIZE_BYTES);
        assert_eq!(
            RecordHeader::op_of(header_bytes(header)),
            position.op,
            "stale position"
        );
        self.bytes_at(
            position.segment,
            position.body_offset(),
            u64::from(position.body_size),
        )
    }

    /// Bytes of the log: within one segment and within what was appended. O(1), no syscalls.
    pub fn bytes_at(&self, segment: u32, offset: u64, size_bytes: u64) -> &[u8] {
        let segment_size_bytes = self.marker.segment_size_bytes;
        assert!((segment as usize) < self.segments.len());
        assert!(offset + size_bytes <= segment_size_bytes);
        let address = u64::from(segment) * segment_size_bytes + offset;
        assert!(
            address + size_bytes <= self.address_end,
            "bytes beyond the log's end"
        );
        self.log().bytes(address, size_bytes)
    }

    /// The last op appended or recovered (appended is not yet durable: see `op_synced`); 0 for
    /// an empty log.
    pub fn op_last(&self) -> u64 {
        self.op_last
    }

    /// Bytes from the first segment's start to the end of the last record (global address).
    pub fn log_size_bytes(&self) -> u64 {
        self.address_end
    }

    /// Segment files in use.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// The highest op known durable.
    pub fn op_synced(&self) -> u64 {
        self.syncer.op_synced()
    }

    /// The highest op covered by a `sync_begin`, whether or not that sync has completed: an
    /// appended op above it will not be durable until another `sync_begin`.
    pub fn op_sync_begun(&self) -> u64 {
        self.syncer.op_sync_begun()
    }

    /// The cluster id the directory was formatted for (from the format marker).
    pub fn cluster(&self) -> u128 {
        self.marker.cluster
    }

    /// The size of every segment file, fixed at format time (from the format marker).
    pub fn segment_size_bytes(&self) -> u64 {
        self.marker.segment_size_bytes
    }

    /// Whether syncs go through io_uring (false after a fallback to fdatasync).
    pub fn sync_uses_io_uring(&self) -> bool {
        self.storage.sync_uses_io_uring()
    }

    fn usable(&self) -> Result<(), JournalError> {
        if self.failed {
            Err(JournalError::Failed)
        } else {
            Ok(())
        }
    }

    fn log(&self) -> Log<'_, S::Segment> {
        Log {
            segments: &self.segments,
            segment_size_bytes: self.marker.segment_size_bytes,
            runs: &[],
        }
    }

    /// The segment holding the last byte of the log (segment 0 for an empty log).
    fn segment_of_end(&self) -> u32 {
        let address_last = self.address_end.saturating_sub(1);
        (address_last / self.marker.segment_size_bytes) as u32
    }

    /// The checksum of record `op`; for op 0, the format marker's (the parent of op 1).
    fn checksum_of(&self, op: u64) -> u128 {
        if op == 0 {
            return self.marker.checksum;
        }
        let record = self.records_from(op).next().expect("op is at most op_last");
        record.checksum
    }
}

impl<S: Storage> Drop for Journal<S> {
    fn drop(&mut self) {
        // Segments close after this; the kernel must be done with their descriptors first.
        self.syncer.drain(&mut self.storage);
        // The writer holds the directory (and its lock) until it is done; how it ended no
        // longer matters to anyone (recovery reads what landed).
        if let Some(writing) = self.checkpoint_writing.take() {
            let _ = writing.writer.join();
        }
    }
}

/// Nice value of the checkpoint writer thread: when the CPUs are busy, the caller's threads
/// (the core and the fronts, which replies wait for) go first; a checkpoint can wait.
const CHECKPOINT_WRITER_NICE: libc::c_int = 10;

/// Lowers the calling thread's CPU priority to `CHECKPOINT_WRITER_NICE`. On Linux the nice value
/// is per thread, so the rest of the process keeps its own. For any thread that prepares a
/// checkpoint in the background (the writer here, the core's encoders).
pub fn writer_yield_cpu() {
    // SAFETY: a plain syscall that changes the calling thread's nice value.
    let result = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, CHECKPOINT_WRITER_NICE) };
    // A writer at the default priority still writes correct checkpoints: say so and go on.
    if result != 0 {
        tracing::debug!(error = %io::Error::last_os_error(), "checkpoint writer keeps its priority");
    }
}

/// Moves the calling thread to `SCHED_IDLE`: it runs only on a CPU that nothing else wants. For
/// the checkpoint's encoder, whose gather of the ledger's tail is CPU and memory bound for a
/// second or more; at nice 10 it still took a share of a CPU from the core and the clients on a
/// 2-CPU machine, where the core used to fill its own idle time with that work.
pub fn encoder_idle_cpu() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: a plain syscall that changes the calling thread's policy (0: this thread).
    let result = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
    if result != 0 {
        tracing::debug!(error = %io::Error::last_os_error(), "checkpoint encoder keeps its policy");
        writer_yield_cpu();
    }
}

impl std::fmt::Debug for CheckpointLanded {
    // The state can be hundreds of MB: its size says enough.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointLanded")
            .field("op", &self.op)
            .field("write_duration", &self.write_duration)
            .field("state_size_bytes", &self.state.len())
            .finish()
    }
}

/// Cut what the log does not prove acknowledged, or refuse: never cut what evidence says was
/// durable. A cut is logged loudly, with where and why it was safe.
fn tail_decide<S: AsRef<[u8]>>(
    tail: &Tail,
    log: Log<'_, S>,
    cut_unproven_tail: bool,
) -> Result<Option<Cut>, JournalError> {
    let damage = match tail {
        Tail::Clean => return Ok(None),
        Tail::Damaged(damage) => damage,
    };
    let (segment, offset) = log.split(damage.address);
    let cut = Cut {
        op: damage.op,
        segment,
        offset,
        bytes: damage.address_dirty_end - damage.address,
        damage: damage.damage,
        evidence: damage.evidence,
    };
    if !damage.is_cut(cut_unproven_tail) {
        let evidence = damage.evidence.expect("a torn tail is always cut");
        return Err(JournalError::Corrupt {
            op: damage.op,
            segment,
            offset,
            damage: damage.damage,
            evidence,
        });
    }
    let why = match damage.evidence {
        None => "no valid record follows the damage: a torn tail, never acknowledged".to_string(),
        Some(evidence) if evidence.is_unproven() => {
            format!("the operator allowed cutting unproven damage (cut_unproven_tail): {evidence}")
        }
        Some(evidence) => evidence.to_string(),
    };
    tracing::warn!(
        op = cut.op,
        segment,
        offset,
        bytes = cut.bytes,
        damage = %cut.damage,
        why = %why,
        "cutting the journal at op {} (segment {segment}, offset {offset}): {}; {why}",
        cut.op,
        cut.damage,
    );
    Ok(Some(cut))
}
