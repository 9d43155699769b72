//! Group commit: `fdatasync` of the segments written since the last sync, submitted through the
//! storage (io_uring for real files) so that the caller can work while the disk flushes. `Syncer`
//! keeps the tickets; `SyncBackend` is the io_uring (or plain `fdatasync`) that `FileStorage` uses.

use std::collections::VecDeque;
use std::io;
use std::os::fd::RawFd;
use std::sync::Once;

use io_uring::{opcode, types, IoUring};

use crate::storage::Storage;

/// A sync in flight covers all appends before it, so two are enough to overlap the fsync of batch
/// N with the work on batch N + 1. A third `begin` first waits for the oldest.
pub const SYNCS_IN_FLIGHT_MAX: usize = 2;
/// The fsyncs one ticket submits through the ring. Appending over more segments than this between
/// two syncs is unusual (it takes huge batches); the older segments are then fsynced at once.
pub const SYNC_SEGMENTS_MAX: usize = 4;
const RING_ENTRIES: u32 = (SYNCS_IN_FLIGHT_MAX * SYNC_SEGMENTS_MAX) as u32;
/// io_uring_enter can be interrupted by signals; retrying is correct, but not forever.
const INTERRUPTS_MAX: u32 = 1024;

const _: () = assert!(RING_ENTRIES.is_power_of_two());

/// How `sync_begin` reaches the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncMode {
    /// io_uring `IORING_OP_FSYNC` with `IORING_FSYNC_DATASYNC`; plain `fdatasync` if the kernel
    /// refuses io_uring.
    IoUring,
    /// Plain `fdatasync` inside `sync_begin`, which then returns a ticket already complete.
    Blocking,
}

/// Names one `sync_begin`; `sync_wait` on it returns once every op up to `op()` is durable.
#[must_use = "a sync is only known complete after sync_wait"]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyncTicket {
    sequence: u64,
    op: u64,
}

impl SyncTicket {
    /// The last op this sync covers.
    pub fn op(&self) -> u64 {
        self.op
    }
}

struct Pending {
    sequence: u64,
    op: u64,
    completions_left: u32,
    errno: Option<i32>,
}

/// The ticket bookkeeping of group commit, whatever storage performs the fsyncs: tickets complete
/// in order, at most `SYNCS_IN_FLIGHT_MAX` are in flight, and one failed fsync fails every later
/// call.
pub(crate) struct Syncer {
    pending: VecDeque<Pending>,
    sequence_next: u64,
    /// Every ticket up to this one has completed without error.
    sequence_done: u64,
    op_synced: u64,
    /// Sticky: after one failed fsync every call fails (see `JournalError::SyncFailed`).
    failed_errno: Option<i32>,
}

impl Syncer {
    pub(crate) fn new(op_synced: u64) -> Syncer {
        Syncer {
            pending: VecDeque::with_capacity(SYNCS_IN_FLIGHT_MAX),
            sequence_next: 1,
            sequence_done: 0,
            op_synced,
            failed_errno: None,
        }
    }

    /// The highest op whose sync has completed (as far as this syncer has seen).
    pub(crate) fn op_synced(&self) -> u64 {
        self.op_synced
    }

    /// The highest op a begun sync covers, complete or not.
    pub(crate) fn op_sync_begun(&self) -> u64 {
        self.pending
            .back()
            .map_or(self.op_synced, |pending| pending.op)
    }

    /// Starts a sync of `segments` covering ops up to `op`. An error here is an fsync error: fatal.
    pub(crate) fn begin<S: Storage>(
        &mut self,
        storage: &mut S,
        op: u64,
        segments: &[S::Segment],
    ) -> io::Result<SyncTicket> {
        self.retire()?;
        assert!(op >= self.op_sync_begun());
        if self.pending.len() == SYNCS_IN_FLIGHT_MAX {
            let oldest = self.pending.front().expect("pending is full").sequence;
            self.wait(storage, oldest)?;
        }
        assert!(self.pending.len() < SYNCS_IN_FLIGHT_MAX);
        let ticket = SyncTicket {
            sequence: self.sequence_next,
            op,
        };
        self.sequence_next += 1;
        // Older segments beyond what one ticket submits are synced right here; see the constant.
        let split = segments.len().saturating_sub(SYNC_SEGMENTS_MAX);
        let submitted = self.submit(storage, ticket, &segments[..split], &segments[split..]);
        self.sticky(submitted)?;
        // Books what is already complete: a blocking sync, or a ring that was quick.
        self.retire()?;
        Ok(ticket)
    }

    /// Syncs `segments_now` at once and submits `segments_later`, then books the ticket with the
    /// number of completions the storage will report for it.
    fn submit<S: Storage>(
        &mut self,
        storage: &mut S,
        ticket: SyncTicket,
        segments_now: &[S::Segment],
        segments_later: &[S::Segment],
    ) -> io::Result<()> {
        assert!(segments_later.len() <= SYNC_SEGMENTS_MAX);
        for segment in segments_now {
            storage.sync_now(segment)?;
        }
        let completions_left = storage.sync_submit(ticket.sequence, segments_later)?;
        assert!(completions_left as usize <= segments_later.len());
        self.pending.push_back(Pending {
            sequence: ticket.sequence,
            op: ticket.op,
            completions_left,
            errno: None,
        });
        Ok(())
    }

    /// Waits until `ticket` and every ticket before it have completed.
    pub(crate) fn wait_ticket<S: Storage>(
        &mut self,
        storage: &mut S,
        ticket: SyncTicket,
    ) -> io::Result<()> {
        assert!(ticket.sequence < self.sequence_next);
        self.wait(storage, ticket.sequence)?;
        assert!(self.op_synced >= ticket.op);
        Ok(())
    }

    /// Reaps every completion still outstanding, whatever its result: before the segments close.
    pub(crate) fn drain<S: Storage>(&mut self, storage: &mut S) {
        for _ in 0..=RING_ENTRIES {
            if self
                .pending
                .iter()
                .all(|pending| pending.completions_left == 0)
            {
                return;
            }
            if let Err(error) = self.reap(storage) {
                tracing::error!(%error, "sync completion wait failed while closing the journal");
                return;
            }
        }
    }

    fn wait<S: Storage>(&mut self, storage: &mut S, sequence: u64) -> io::Result<()> {
        // Each reap consumes at least one completion, and at most RING_ENTRIES are outstanding.
        for _ in 0..=RING_ENTRIES {
            self.retire()?;
            if self.sequence_done >= sequence {
                return Ok(());
            }
            let reaped = self.reap(storage);
            self.sticky(reaped)?;
        }
        unreachable!("sync {sequence} did not complete after every completion was reaped");
    }

    /// Whether `ticket` and every ticket before it have completed, from the completions already
    /// reported: never blocks.
    pub(crate) fn poll_ticket<S: Storage>(
        &mut self,
        storage: &mut S,
        ticket: SyncTicket,
    ) -> io::Result<bool> {
        assert!(ticket.sequence < self.sequence_next);
        self.retire()?;
        if self.sequence_done < ticket.sequence {
            let pending = &mut self.pending;
            let polled = storage.sync_poll(|sequence, result| book(pending, sequence, result));
            self.sticky(polled)?;
            self.retire()?;
        }
        Ok(self.sequence_done >= ticket.sequence)
    }

    /// Passes `result` on; an error also fails the syncer for good (see `failed_errno`).
    fn sticky(&mut self, result: io::Result<()>) -> io::Result<()> {
        if let Err(error) = &result {
            self.failed_errno = Some(error.raw_os_error().unwrap_or(libc::EIO));
        }
        result
    }

    /// Blocks for at least one completion and books every completion the storage reports.
    fn reap<S: Storage>(&mut self, storage: &mut S) -> io::Result<()> {
        let pending = &mut self.pending;
        storage.sync_reap(|sequence, result| book(pending, sequence, result))
    }

    /// Retires completed tickets in order; the first failed one fails the syncer for good.
    fn retire(&mut self) -> io::Result<()> {
        if let Some(errno) = self.failed_errno {
            return Err(io::Error::from_raw_os_error(errno));
        }
        while let Some(front) = self.pending.front() {
            if front.completions_left > 0 {
                return Ok(());
            }
            let done = self.pending.pop_front().expect("front exists");
            if let Some(errno) = done.errno {
                self.failed_errno = Some(errno);
                return Err(io::Error::from_raw_os_error(errno));
            }
            assert!(done.sequence > self.sequence_done);
            assert!(done.op >= self.op_synced);
            self.sequence_done = done.sequence;
            self.op_synced = done.op;
        }
        Ok(())
    }
}

/// Books one completion against its pending sync.
fn book(pending: &mut VecDeque<Pending>, sequence: u64, result: i32) {
    let ticket = pending
        .iter_mut()
        .find(|pending| pending.sequence == sequence)
        .expect("every completion belongs to a pending sync");
    assert!(ticket.completions_left > 0);
    ticket.completions_left -= 1;
    if result < 0 && ticket.errno.is_none() {
        ticket.errno = Some(-result);
    }
}

/// How `FileStorage` reaches the disk: an io_uring, or plain `fdatasync` where the kernel refuses
/// io_uring or the options ask for blocking syncs.
pub(crate) enum SyncBackend {
    // Boxed: the ring is large and there is one per journal.
    Ring(Box<IoUring>),
    Blocking,
}

static FALLBACK_LOGGED: Once = Once::new();

impl SyncBackend {
    pub(crate) fn new(mode: SyncMode) -> SyncBackend {
        match mode {
            SyncMode::Blocking => SyncBackend::Blocking,
            SyncMode::IoUring => match IoUring::new(RING_ENTRIES) {
                Ok(ring) => SyncBackend::Ring(Box::new(ring)),
                // ENOSYS (old kernel, seccomp) and EPERM (io_uring_disabled) are the usual causes,
                // but any refusal leaves the same choice: fsync without the ring.
                Err(error) => {
                    FALLBACK_LOGGED.call_once(|| {
                        tracing::warn!(%error, "io_uring unavailable, syncing with fdatasync");
                    });
                    SyncBackend::Blocking
                }
            },
        }
    }

    pub(crate) fn is_io_uring(&self) -> bool {
        match self {
            SyncBackend::Ring(_) => true,
            SyncBackend::Blocking => false,
        }
    }

    /// Submits `IORING_OP_FSYNC` (datasync) for every descriptor, tagged with `sequence`, and
    /// returns how many completions will follow; without a ring, syncs at once and returns 0.
    pub(crate) fn submit(&mut self, sequence: u64, fds: &[RawFd]) -> io::Result<u32> {
        match self {
            SyncBackend::Ring(ring) => {
                ring_push(ring, sequence, fds);
                ring_submit(ring, fds.len())?;
                Ok(fds.len() as u32)
            }
            SyncBackend::Blocking => {
                for fd in fds {
                    fdatasync(*fd)?;
                }
                Ok(0)
            }
        }
    }

    /// Reports each completion already in the ring, without blocking.
    pub(crate) fn poll(&mut self, mut completion: impl FnMut(u64, i32)) {
        match self {
            SyncBackend::Ring(ring) => {
                for entry in ring.completion() {
                    completion(entry.user_data(), entry.result());
                }
            }
            // Nothing is ever outstanding.
            SyncBackend::Blocking => {}
        }
    }

    /// Blocks for at least one completion and reports each as (sequence, result).
    pub(crate) fn reap(&mut self, completion: impl FnMut(u64, i32)) -> io::Result<()> {
        match self {
            SyncBackend::Ring(ring) => ring_reap(ring, completion),
            SyncBackend::Blocking => unreachable!("blocking syncs complete inside submit"),
        }
    }
}

pub(crate) fn fdatasync(fd: RawFd) -> io::Result<()> {
    // SAFETY: fdatasync reads no memory; `fd` belongs to a segment the journal keeps open.
    let result = unsafe { libc::fdatasync(fd) };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn ring_push(ring: &mut IoUring, sequence: u64, fds: &[RawFd]) {
    assert!(fds.len() <= SYNC_SEGMENTS_MAX);
    for fd in fds {
        let entry = opcode::Fsync::new(types::Fd(*fd))
            .flags(types::FsyncFlags::DATASYNC)
            .build()
            .user_data(sequence);
        // SAFETY: an fsync entry points at no memory of ours, only at the descriptor, and the
        // journal keeps every segment open until the completion is reaped (its Drop waits).
        let pushed = unsafe { ring.submission().push(&entry) };
        pushed.expect("the ring has room for every fsync in flight");
    }
}

fn ring_submit(ring: &mut IoUring, entries: usize) -> io::Result<()> {
    for _ in 0..INTERRUPTS_MAX {
        match ring.submit() {
            Ok(submitted) => {
                assert_eq!(submitted, entries);
                return Ok(());
            }
            Err(error) if error.raw_os_error() == Some(libc::EINTR) => continue,
            Err(error) => return Err(error),
        }
    }
    Err(io::Error::from_raw_os_error(libc::EINTR))
}

/// Blocks for at least one completion and reports every completion available.
fn ring_reap(ring: &mut IoUring, mut completion: impl FnMut(u64, i32)) -> io::Result<()> {
    let mut interrupts: u32 = 0;
    while let Err(error) = ring.submit_and_wait(1) {
        if error.raw_os_error() != Some(libc::EINTR) || interrupts == INTERRUPTS_MAX {
            return Err(error);
        }
        interrupts += 1;
    }
    for entry in ring.completion() {
        completion(entry.user_data(), entry.result());
    }
    Ok(())
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::faulty::{FaultyDisk, FaultySegment, FaultyStorage};

    fn segments(disk: &FaultyDisk, count: u32) -> (FaultyStorage, Vec<FaultySegment>) {
        let mut storage = disk.storage();
        storage.format().expect("format");
        let segments = (0..count)
            .map(|index| storage.segment_create(index, 4096).expect("segment"))
            .collect();
        (storage, segments)
    }

    #[test]
    fn a_failed_sync_fails_every_later_call() {
        let disk = FaultyDisk::new();
        let (mut storage, segments) = segments(&disk, 1);
        disk.fsync_fail_after(1);
        let mut syncer = Syncer::new(0);
        let result = syncer
            .begin(&mut storage, 1, &segments)
            .and_then(|ticket| syncer.wait_ticket(&mut storage, ticket));
        let error = result.expect_err("the fsync fails");
        assert_eq!(error.raw_os_error(), Some(libc::EIO));
        assert_eq!(syncer.op_synced(), 0, "the failed sync counts for nothing");
        let later = syncer.begin(&mut storage, 2, &[]).expect_err("sticky");
        assert_eq!(later.raw_os_error(), Some(libc::EIO));
        syncer.drain(&mut storage);
    }

    #[test]
    fn tickets_complete_in_order_over_many_segments() {
        let disk = FaultyDisk::new();
        let (mut storage, segments) = segments(&disk, 6);
        let mut syncer = Syncer::new(0);
        // Six segments: two are synced at once, four submitted (SYNC_SEGMENTS_MAX).
        let first = syncer.begin(&mut storage, 10, &segments).expect("begin");
        let second = syncer
            .begin(&mut storage, 20, &segments[5..])
            .expect("begin");
        assert_eq!(
            syncer.op_synced(),
            0,
            "submitted fsyncs complete when reaped"
        );
        let third = syncer
            .begin(&mut storage, 20, &[])
            .expect("begin waits for the first");
        assert!(syncer.op_synced() >= 10);
        syncer.wait_ticket(&mut storage, third).expect("wait");
        assert_eq!(syncer.op_synced(), 20);
        syncer
            .wait_ticket(&mut storage, first)
            .expect("an old ticket is done");
        syncer
            .wait_ticket(&mut storage, second)
            .expect("an old ticket is done");
    }

    #[test]
    fn a_poll_sees_only_completions_already_reported() {
        let disk = FaultyDisk::new();
        let (mut storage, segments) = segments(&disk, 1);
        let mut syncer = Syncer::new(0);
        let ticket = syncer.begin(&mut storage, 5, &segments).expect("begin");
        // The faulty storage completes a submitted fsync only when reaped: a poll that blocked
        // or reaped would report it done here.
        for _ in 0..3 {
            let done = syncer.poll_ticket(&mut storage, ticket).expect("poll");
            assert!(!done);
            assert_eq!(syncer.op_synced(), 0);
        }
        syncer.wait_ticket(&mut storage, ticket).expect("wait");
        assert!(syncer.poll_ticket(&mut storage, ticket).expect("poll"));
        assert_eq!(syncer.op_synced(), 5);
    }

    /// Through a real ring: a poll never blocks, and once the fsync is done it says so without a
    /// wait. Blocking syncs are done before `begin` returns.
    #[test]
    fn a_poll_of_a_real_fsync_turns_true_without_a_wait() {
        let directory = tempfile::tempdir().expect("temporary directory");
        let file = std::fs::File::create(directory.path().join("segment")).expect("create");
        std::io::Write::write_all(&mut &file, b"bytes to make durable").expect("write");
        let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
        for mode in [SyncMode::IoUring, SyncMode::Blocking] {
            let mut backend = SyncBackend::new(mode);
            let completions = backend.submit(9, &[fd]).expect("submit");
            let mut results = Vec::new();
            // Bounded: 10 s for an fsync of a few bytes, else the poll never sees it.
            for _ in 0..10_000 {
                backend.poll(|sequence, result| results.push((sequence, result)));
                if results.len() == completions as usize {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            let expected: &[(u64, i32)] = match mode {
                SyncMode::IoUring => &[(9, 0)],
                SyncMode::Blocking => &[],
            };
            assert_eq!(results, expected, "{mode:?}");
        }
    }

    /// fdatasync of a pipe fails with EINVAL, through the ring and without it: a real failed sync.
    #[test]
    fn the_ring_reports_a_failed_fsync() {
        let mut fds: [RawFd; 2] = [-1; 2];
        // SAFETY: pipe writes two descriptors into the array it is given.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        for mode in [SyncMode::IoUring, SyncMode::Blocking] {
            let mut backend = SyncBackend::new(mode);
            let mut results = Vec::new();
            match backend.submit(7, &fds[..1]) {
                Ok(completions) => {
                    assert_eq!(completions, 1, "{mode:?}");
                    backend
                        .reap(|sequence, result| results.push((sequence, result)))
                        .expect("reap");
                }
                Err(error) => results.push((7, -error.raw_os_error().expect("errno"))),
            }
            assert_eq!(results, [(7, -libc::EINVAL)], "{mode:?}");
        }
        for fd in fds {
            // SAFETY: the descriptors came from `pipe` and are closed once.
            assert_eq!(unsafe { libc::close(fd) }, 0);
        }
    }
}
