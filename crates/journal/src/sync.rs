//! Group commit: `fdatasync` of the segments written since the last sync, submitted through
//! io_uring so that the caller can work while the disk flushes. Falls back to plain `fdatasync`
//! where the kernel refuses io_uring.

use std::collections::VecDeque;
use std::io;
use std::os::fd::RawFd;
use std::sync::Once;

use io_uring::{opcode, types, IoUring};

/// A sync in flight covers all appends before it, so two are enough to overlap the fsync of batch
/// N with the work on batch N + 1. A third `begin` first waits for the oldest.
pub const SYNCS_IN_FLIGHT_MAX: usize = 2;
/// The fsyncs one ticket submits through the ring. Appending over more segments than this between
/// two syncs is unusual (it takes huge batches); the older segments are then fsynced at once.
const SYNC_SEGMENTS_MAX: usize = 4;
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

enum Backend {
    // Boxed: the ring is large and there is one per journal.
    Ring(Box<IoUring>),
    Blocking,
}

pub struct Syncer {
    backend: Backend,
    pending: VecDeque<Pending>,
    sequence_next: u64,
    /// Every ticket up to this one has completed without error.
    sequence_done: u64,
    op_synced: u64,
    /// Sticky: after one failed fsync every call fails (see `JournalError::SyncFailed`).
    failed_errno: Option<i32>,
}

static FALLBACK_LOGGED: Once = Once::new();

impl Syncer {
    pub fn new(mode: SyncMode, op_synced: u64) -> Syncer {
        let backend = match mode {
            SyncMode::Blocking => Backend::Blocking,
            SyncMode::IoUring => match IoUring::new(RING_ENTRIES) {
                Ok(ring) => Backend::Ring(Box::new(ring)),
                // ENOSYS (old kernel, seccomp) and EPERM (io_uring_disabled) are the usual causes,
                // but any refusal leaves the same choice: fsync without the ring.
                Err(error) => {
                    FALLBACK_LOGGED.call_once(|| {
                        tracing::warn!(%error, "io_uring unavailable, syncing with fdatasync");
                    });
                    Backend::Blocking
                }
            },
        };
        Syncer {
            backend,
            pending: VecDeque::with_capacity(SYNCS_IN_FLIGHT_MAX),
            sequence_next: 1,
            sequence_done: 0,
            op_synced,
            failed_errno: None,
        }
    }

    /// The highest op whose sync has completed (as far as this syncer has seen).
    pub fn op_synced(&self) -> u64 {
        self.op_synced
    }

    pub fn is_io_uring(&self) -> bool {
        match self.backend {
            Backend::Ring(_) => true,
            Backend::Blocking => false,
        }
    }

    /// Starts a sync of `fds` covering ops up to `op`. An error here is an fsync error: fatal.
    pub fn begin(&mut self, op: u64, fds: &[RawFd]) -> io::Result<SyncTicket> {
        self.retire()?;
        assert!(
            op >= self
                .pending
                .back()
                .map_or(self.op_synced, |pending| pending.op)
        );
        if self.pending.len() == SYNCS_IN_FLIGHT_MAX {
            let oldest = self.pending.front().expect("pending is full").sequence;
            self.wait(oldest)?;
        }
        assert!(self.pending.len() < SYNCS_IN_FLIGHT_MAX);
        let ticket = SyncTicket {
            sequence: self.sequence_next,
            op,
        };
        self.sequence_next += 1;
        // Older segments beyond what one ticket submits are synced right here; see the constant.
        let split = fds.len().saturating_sub(SYNC_SEGMENTS_MAX);
        let submitted = self.submit(ticket, &fds[..split], &fds[split..]);
        if let Err(error) = &submitted {
            self.failed_errno = Some(error.raw_os_error().unwrap_or(libc::EIO));
        }
        submitted?;
        // Books what is already complete: a blocking sync, or a ring that was quick.
        self.retire()?;
        Ok(ticket)
    }

    /// Syncs `fds_now` at once and `fds_ring` through the ring (at once too without a ring), and
    /// books the ticket as soon as its entries are in the ring, so every completion finds it.
    fn submit(
        &mut self,
        ticket: SyncTicket,
        fds_now: &[RawFd],
        fds_ring: &[RawFd],
    ) -> io::Result<()> {
        for fd in fds_now {
            fdatasync(*fd)?;
        }
        let mut pending = Pending {
            sequence: ticket.sequence,
            op: ticket.op,
            completions_left: 0,
            errno: None,
        };
        match &mut self.backend {
            Backend::Ring(ring) => {
                ring_push(ring, ticket.sequence, fds_ring);
                pending.completions_left = fds_ring.len() as u32;
                self.pending.push_back(pending);
                ring_submit(ring, fds_ring.len())
            }
            Backend::Blocking => {
                for fd in fds_ring {
                    fdatasync(*fd)?;
                }
                self.pending.push_back(pending);
                Ok(())
            }
        }
    }

    /// Waits until `ticket` and every ticket before it have completed.
    pub fn wait_ticket(&mut self, ticket: SyncTicket) -> io::Result<()> {
        assert!(ticket.sequence < self.sequence_next);
        self.wait(ticket.sequence)?;
        assert!(self.op_synced >= ticket.op);
        Ok(())
    }

    /// Reaps every completion still outstanding, whatever its result: before the segments close.
    pub fn drain(&mut self) {
        let Backend::Ring(ring) = &mut self.backend else {
            return;
        };
        for _ in 0..=RING_ENTRIES {
            if self
                .pending
                .iter()
                .all(|pending| pending.completions_left == 0)
            {
                return;
            }
            if let Err(error) = ring_reap(ring, &mut self.pending) {
                tracing::error!(%error, "io_uring wait failed while closing the journal");
                return;
            }
        }
    }

    fn wait(&mut self, sequence: u64) -> io::Result<()> {
        // Each reap consumes at least one completion, and at most RING_ENTRIES are outstanding.
        for _ in 0..=RING_ENTRIES {
            self.retire()?;
            if self.sequence_done >= sequence {
                return Ok(());
            }
            let reaped = match &mut self.backend {
                Backend::Ring(ring) => ring_reap(ring, &mut self.pending),
                Backend::Blocking => unreachable!("blocking syncs complete inside begin"),
            };
            if let Err(error) = &reaped {
                self.failed_errno = Some(error.raw_os_error().unwrap_or(libc::EIO));
            }
            reaped?;
        }
        unreachable!("sync {sequence} did not complete after every completion was reaped");
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

fn fdatasync(fd: RawFd) -> io::Result<()> {
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

/// Blocks for at least one completion and books every completion available.
fn ring_reap(ring: &mut IoUring, pending: &mut VecDeque<Pending>) -> io::Result<()> {
    let mut interrupts: u32 = 0;
    while let Err(error) = ring.submit_and_wait(1) {
        if error.raw_os_error() != Some(libc::EINTR) || interrupts == INTERRUPTS_MAX {
            return Err(error);
        }
        interrupts += 1;
    }
    for completion in ring.completion() {
        let sequence = completion.user_data();
        let ticket = pending
            .iter_mut()
            .find(|pending| pending.sequence == sequence)
            .expect("every completion belongs to a pending sync");
        assert!(ticket.completions_left > 0);
        ticket.completions_left -= 1;
        if completion.result() < 0 && ticket.errno.is_none() {
            ticket.errno = Some(-completion.result());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// fdatasync on a pipe fails with EINVAL, through the ring and without it: a real failed sync.
    fn pipe() -> [RawFd; 2] {
        let mut fds: [RawFd; 2] = [-1; 2];
        // SAFETY: pipe writes two descriptors into the array it is given.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        fds
    }

    fn close(fds: [RawFd; 2]) {
        for fd in fds {
            // SAFETY: the descriptors came from `pipe` and are closed once.
            assert_eq!(unsafe { libc::close(fd) }, 0);
        }
    }

    #[test]
    fn a_failed_sync_fails_every_later_call() {
        for mode in [SyncMode::IoUring, SyncMode::Blocking] {
            let fds = pipe();
            let mut syncer = Syncer::new(mode, 0);
            let result = syncer
                .begin(1, &[fds[0]])
                .and_then(|ticket| syncer.wait_ticket(ticket));
            assert_eq!(
                result.expect_err("sync of a pipe").raw_os_error(),
                Some(libc::EINVAL)
            );
            assert_eq!(
                syncer.op_synced(),
                0,
                "{mode:?}: the failed sync counts for nothing"
            );
            let later = syncer.begin(2, &[]).expect_err("sticky");
            assert_eq!(later.raw_os_error(), Some(libc::EINVAL));
            syncer.drain();
            close(fds);
        }
    }

    #[test]
    fn tickets_complete_in_order_over_many_files() {
        let directory = tempfile::tempdir().expect("tempdir");
        let files: Vec<std::fs::File> = (0..6)
            .map(|index| std::fs::File::create(directory.path().join(index.to_string())))
            .collect::<Result<_, _>>()
            .expect("files");
        let fds: Vec<RawFd> = files.iter().map(std::os::fd::AsRawFd::as_raw_fd).collect();
        let mut syncer = Syncer::new(SyncMode::IoUring, 0);
        // Six files: two are synced at once, four through the ring (SYNC_SEGMENTS_MAX).
        let first = syncer.begin(10, &fds).expect("begin");
        let second = syncer.begin(20, &fds[5..]).expect("begin");
        let third = syncer.begin(20, &[]).expect("begin waits for the first");
        assert!(syncer.op_synced() >= 10);
        syncer.wait_ticket(third).expect("wait");
        assert_eq!(syncer.op_synced(), 20);
        syncer.wait_ticket(first).expect("an old ticket is done");
        syncer.wait_ticket(second).expect("an old ticket is done");
    }
}
