//! The state's checkpoint encoding. Format 3 (`TLYSRV03`, written) puts everything that can
//! change in place first (the head: counters, sessions, the payments domain, the ledger's head)
//! and what only grows last (the tail: the ledger's per-account lists, the transfer locations,
//! the domain's transfers), so that the core takes the head at the checkpoint's moment and the
//! rest is encoded while later records change the state, the ledger's tail on a thread of its
//! own, the rest in slices between the core's turns (`CheckpointEncoding`): the bytes are those
//! of the state at that moment. It holds no id index (`tally_ledger::LedgerDecoded`): a decode
//! rebuilds the transfer index from the log. Formats 1 (`TLYSRV01`, before the Admin API) and 2
//! (`TLYSRV02`, with the payments domain, the ledger's index slots) still open. A newer format
//! is refused with both versions named.
//!
//! ```text
//! format 3  magic, cluster, op, timestamp, batch count, domain transfer count,
//!           sessions (u64 size + bytes), payments, ledger head | ledger tail, batches, domain
//! format 2  magic, cluster, op, timestamp, batches (count + items), sessions,
//!           domain transfers (count + items), payments, ledger (format 1)
//! format 1  format 2 without the domain transfers and the payments
//! ```

use tally_ledger::{Ledger, LedgerCheckpoint, LedgerDecoded, Record, Transfer};
use tally_payments::Payments;
use tally_wire::{SessionConfig, SessionTable};

use crate::state::State;
use crate::storage::LogBytes;
use crate::transfers::{LogTransfers, TransferBatch, TransferLocations};

/// The magic of every server checkpoint; two ASCII digits of format version follow.
const CHECKPOINT_MAGIC_PREFIX: &[u8; 6] = b"TLYSRV";
/// The format this binary writes.
pub const CHECKPOINT_FORMAT: u32 = 3;
/// The oldest format this binary reads.
pub const CHECKPOINT_FORMAT_MIN: u32 = 1;
/// Bytes of one transfer location in a checkpoint.
const BATCH_SIZE_BYTES: usize = 32;
/// A checkpoint that does not decode.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// Not a server checkpoint.
    #[error("not a server checkpoint (magic {magic:?})")]
    Magic {
        /// The first bytes found.
        magic: Vec<u8>,
    },
    /// A format this binary does not read.
    #[error(
        "checkpoint format {found}; this binary reads formats {CHECKPOINT_FORMAT_MIN}..={CHECKPOINT_FORMAT}"
    )]
    Format {
        /// The format found.
        found: u32,
    },
    /// The bytes end early.
    #[error("checkpoint truncated at byte {offset}")]
    Truncated {
        /// Where the read ran out.
        offset: usize,
    },
    /// The parts contradict each other.
    #[error("checkpoint inconsistent: {0}")]
    Inconsistent(&'static str),
    /// The session table does not decode.
    #[error("checkpoint sessions: {0}")]
    Sessions(tally_wire::DecodeError),
    /// The payments domain does not decode.
    #[error("checkpoint payments: {0}")]
    Payments(#[from] tally_payments::DecodeError),
    /// The ledger does not decode.
    #[error("checkpoint ledger: {0}")]
    Ledger(tally_ledger::CheckpointError),
}

/// A checkpoint being encoded. `State::checkpoint_begin` takes what the checkpoint needs of its
/// moment (the parts before the payments domain, a snapshot of that domain, the number of
/// transfer locations and domain transfers) and begins the copy of the ledger's head, which
/// `encode_step` continues in slices (`Ledger::checkpoint_head_step`). Once it is complete, the
/// head and the ledger's `LedgerCheckpoint` with its views of the block logs go with the rest
/// to a thread of its own, which encodes everything up to the end of the ledger's tail
/// (`front_encode`): hundreds of megabytes under TigerBeetle's driver, that used to be copied on
/// the core a slice per turn. `encode_step` then appends the transfer locations and the domain's
/// transfers, which live in vectors the core goes on growing, in slices. Use it with the state
/// it began on, and no other.
pub struct CheckpointEncoding {
    front: FrontEncoding,
    /// Empty until the front is done; then the whole encoding so far.
    blob: Vec<u8>,
    /// The front's buffers, handed back once it is in.
    moment_buffers: Option<MomentBuffers>,
    /// Transfer locations at the checkpoint's moment, and how many are copied.
    batch_count: usize,
    batches_copied: usize,
    /// Domain transfers at the checkpoint's moment, and how many are copied.
    domain_count: usize,
    domain_copied: usize,
    /// The blob's size once complete, but for the payments domain's bytes.
    size_bytes_without_payments: usize,
    /// Bytes of the payments domain, known once the front is done.
    payments_bytes: Option<usize>,
}

/// What the front encoder needs of the checkpoint's moment.
struct FrontJob {
    /// The parts before the payments domain.
    prefix: Vec<u8>,
    payments: Payments,
    /// The last checkpoint's blob, to encode into.
    buffer: Vec<u8>,
    /// The ledger's head, written at the moment (the block numbers stay in `ledger` until the
    /// tail is gathered).
    moment_buffers: MomentBuffers,
    ledger: LedgerCheckpoint,
    size_bytes_without_payments: usize,
}

/// What the front encoder hands back.
struct FrontEncoded {
    /// The encoding up to the end of the ledger's tail, in a buffer with room for all of it.
    blob: Vec<u8>,
    payments_bytes: usize,
    moment_buffers: MomentBuffers,
}

/// Most bytes of the ledger's head one step copies: its copies are first writes into the
/// moment's buffers and reads of accounts and lists not touched for a while, which cost up to
/// 4 µs a KiB on this machine's host when it is busy (against 0.2 when it is quiet), so a
/// quarter of `CHECKPOINT_STEP_BYTES` keeps a turn's share near a millisecond even then.
const HEAD_STEP_BYTES_MAX: usize = 256 << 10;

/// What the front encoder will need of the checkpoint's moment, kept while the ledger's head is
/// copied on the core.
struct FrontPending {
    prefix: Vec<u8>,
    payments: Payments,
    buffer: Vec<u8>,
    size_bytes_without_payments: usize,
}

/// The front of the encoding: waiting for the ledger's head, on its thread, then done.
enum FrontEncoding {
    /// The core copies the ledger's head in slices (`Ledger::checkpoint_head_step`).
    HeadCopying(Box<FrontPending>),
    Running(std::thread::JoinHandle<FrontEncoded>),
    Done(FrontEncoded),
    /// Taken into the blob.
    Taken,
}

/// Encodes the front of a checkpoint: the payments domain from its snapshot (whose `imbl` maps
/// are shared with the live state until either changes), which gives the whole encoding's size;
/// then the buffer, made that large with its new pages backed (so that the copies after it do
/// not fault a page per 4 KiB); then the prefix, the domain, the ledger's head and the ledger's
/// tail gathered from the block logs.
fn front_encode(job: FrontJob) -> FrontEncoded {
    let FrontJob {
        prefix,
        payments,
        buffer,
        mut moment_buffers,
        mut ledger,
        size_bytes_without_payments,
    } = job;
    let mut payments_encoded = Vec::new();
    payments.encode_checkpoint(&mut payments_encoded);
    drop(payments);
    let mut blob = buffer_prepare(buffer, payments_encoded.len() + size_bytes_without_payments);
    blob.extend_from_slice(&prefix);
    blob.extend_from_slice(&payments_encoded);
    blob.extend_from_slice(&moment_buffers.head);
    let complete = ledger.encode_step(&mut blob, usize::MAX);
    assert!(complete, "an unbounded step gathers the whole tail");
    moment_buffers.block_numbers = ledger.block_numbers_take();
    FrontEncoded {
        blob,
        payments_bytes: payments_encoded.len(),
        moment_buffers,
    }
}

/// Empties `buffer` and gives it room for `len` items, with every page it did not have before
/// backed by memory: one store per 4 KiB page of the new room, on the caller's thread. The pages
/// it had (a previous checkpoint's) are backed already.
fn buffer_prepare<T: Copy + Default>(mut buffer: Vec<T>, len: usize) -> Vec<T> {
    const PAGE_BYTES: usize = 4096;
    let backed = buffer.capacity();
    buffer.clear();
    buffer.reserve_exact(len);
    let spare = buffer.spare_capacity_mut();
    let per_page = (PAGE_BYTES / core::mem::size_of::<T>()).max(1);
    for item in spare.iter_mut().skip(backed).step_by(per_page) {
        item.write(T::default());
    }
    // The stores above are only for their side effect on the page tables: keep them.
    std::hint::black_box(&mut buffer);
    buffer
}

/// The buffers a checkpoint's moment writes into, reused from one checkpoint to the next: the
/// ledger's head (a byte per transfer, the accounts, ...) and the numbers of the blocks that hold
/// the ledger's tail (about 1.5 per transfer under TigerBeetle's driver). Both are written at
/// once at the checkpoint's moment, and they grow with the ledger: into a reused buffer that had
/// to grow, the page faults on the new room were a 38–51 ms pause at 8.5 M transfers. So once a
/// checkpoint hands them back, a thread of its own gives them room for a moment this much larger
/// and backs that room before the next checkpoint.
#[derive(Default)]
pub(crate) struct MomentBuffers {
    pub(crate) head: Vec<u8>,
    pub(crate) block_numbers: Vec<u32>,
}

/// The moment's buffers for the next checkpoint: ready, or being given room on a thread.
pub(crate) enum NextMomentBuffers {
    Ready(MomentBuffers),
    Preparing(std::thread::JoinHandle<MomentBuffers>),
}

/// The next moment's room, over the last one's: checkpoints come when replay since the last
/// one outgrows a share of the state, so a moment is about twice the one before.
const MOMENT_GROWTH_NUMERATOR: usize = 9;
const MOMENT_GROWTH_DENOMINATOR: usize = 4;

impl Default for NextMomentBuffers {
    fn default() -> NextMomentBuffers {
        NextMomentBuffers::Ready(MomentBuffers::default())
    }
}

impl NextMomentBuffers {
    /// Starts backing room for a moment larger than the last one (`last_head_bytes` of head and
    /// `last_block_numbers` block numbers) in `buffers`.
    pub(crate) fn prepare(
        buffers: MomentBuffers,
        last_head_bytes: usize,
        last_block_numbers: usize,
    ) -> NextMomentBuffers {
        let grown = |len: usize| len * MOMENT_GROWTH_NUMERATOR / MOMENT_GROWTH_DENOMINATOR;
        let thread = std::thread::Builder::new()
            .name("tally-ckpt-head".into())
            .spawn(move || {
                tally_journal::writer_yield_cpu();
                MomentBuffers {
                    head: buffer_prepare(buffers.head, grown(last_head_bytes)),
                    block_numbers: buffer_prepare(buffers.block_numbers, grown(last_block_numbers)),
                }
            });
        match thread {
            Ok(thread) => NextMomentBuffers::Preparing(thread),
            // No thread to be had: the buffers went with it; the next moment grows in line.
            Err(error) => {
                tracing::warn!(%error, "no thread to prepare the next checkpoint's moment buffers");
                NextMomentBuffers::default()
            }
        }
    }

    /// The buffers, emptied. A thread still at it (at its low priority, on a busy machine) is
    /// left to finish alone and the moment goes into new buffers: its page faults on the core
    /// thread are the pause the preparation was for, but bounded by the moment's size, where a
    /// thread starved at low priority could keep the core waiting for any time.
    pub(crate) fn take(self) -> MomentBuffers {
        match self {
            NextMomentBuffers::Ready(buffers) => buffers,
            NextMomentBuffers::Preparing(thread) if thread.is_finished() => {
                thread.join().unwrap_or_default()
            }
            NextMomentBuffers::Preparing(_) => MomentBuffers::default(),
        }
    }
}

impl FrontEncoding {
    /// Starts the front encoder on its thread, or encodes here if no thread can be had (a
    /// pause rather than no checkpoint).
    fn start(job: FrontJob) -> FrontEncoding {
        // The job goes over a channel rather than into the closure, so that a spawn that fails
        // leaves it here to encode in line.
        let (sender, receiver) = std::sync::mpsc::sync_channel(1);
        let thread = std::thread::Builder::new()
            .name("tally-ckpt".into())
            .spawn(move || {
                tally_journal::encoder_idle_cpu();
                let job = receiver.recv().expect("the job follows the spawn");
                front_encode(job)
            });
        match thread {
            Ok(thread) => {
                sender.send(job).expect("the thread waits for its job");
                FrontEncoding::Running(thread)
            }
            // No thread to be had: encode here, a pause rather than no checkpoint.
            Err(error) => {
                tracing::warn!(%error, "encoding the checkpoint on the core thread");
                FrontEncoding::Done(front_encode(job))
            }
        }
    }

    /// Copies the next slice of the ledger's head, about `budget_bytes`; once the head is
    /// complete, starts the front encoder on it.
    fn head_step(&mut self, state: &mut State, budget_bytes: usize) {
        if !matches!(self, FrontEncoding::HeadCopying(_)) {
            return;
        }
        if !state.ledger.checkpoint_head_step(budget_bytes) {
            return;
        }
        let (head, ledger) = state.ledger.checkpoint_head_finish();
        let FrontEncoding::HeadCopying(pending) = std::mem::replace(self, FrontEncoding::Taken)
        else {
            unreachable!("matched above");
        };
        *self = FrontEncoding::start(FrontJob {
            prefix: pending.prefix,
            payments: pending.payments,
            buffer: pending.buffer,
            moment_buffers: MomentBuffers {
                head,
                block_numbers: Vec::new(),
            },
            ledger,
            size_bytes_without_payments: pending.size_bytes_without_payments,
        });
    }

    /// Whether the encoder is still running.
    fn running(&self) -> bool {
        matches!(self, FrontEncoding::Running(thread) if !thread.is_finished())
    }

    /// Takes the encoder's result once it is done (waiting for it if `block`).
    fn take(&mut self, block: bool) -> Option<FrontEncoded> {
        if !block && self.running() {
            return None;
        }
        match std::mem::replace(self, FrontEncoding::Taken) {
            // The encoder has not started: the head is still being copied.
            FrontEncoding::HeadCopying(pending) => {
                *self = FrontEncoding::HeadCopying(pending);
                None
            }
            FrontEncoding::Running(thread) => match thread.join() {
                Ok(encoded) => Some(encoded),
                Err(panic) => std::panic::resume_unwind(panic),
            },
            FrontEncoding::Done(encoded) => Some(encoded),
            FrontEncoding::Taken => None,
        }
    }
}

impl CheckpointEncoding {
    /// Whether the next step can do nothing but wait for the front encoder.
    pub fn waits_for_encoder(&self) -> bool {
        self.front.running()
    }

    /// Appends the next slice: about `budget_bytes` (at least one item), never past the end.
    /// Returns whether the encoding is complete; never waits for the front encoder
    /// (`encode_rest` does).
    pub fn encode_step(&mut self, state: &mut State, budget_bytes: usize) -> bool {
        let budget_bytes = budget_bytes.max(1);
        if matches!(self.front, FrontEncoding::HeadCopying(_)) {
            self.front
                .head_step(state, budget_bytes.min(HEAD_STEP_BYTES_MAX));
            return false;
        }
        self.encode(state, budget_bytes, false)
    }

    /// Appends all that is left, waiting for the front encoder if it still runs.
    pub fn encode_rest(&mut self, state: &mut State) {
        self.front.head_step(state, usize::MAX);
        let complete = self.encode(state, usize::MAX, true);
        assert!(complete, "nothing is left once waited for");
    }

    fn encode(&mut self, state: &State, budget_bytes: usize, block: bool) -> bool {
        if let Some(front) = self.front.take(block) {
            self.blob = front.blob;
            self.payments_bytes = Some(front.payments_bytes);
            self.moment_buffers = Some(front.moment_buffers);
        }
        if self.payments_bytes.is_none() {
            return false;
        }
        let before = self.blob.len();
        let budget_left = |blob: &Vec<u8>| budget_bytes.saturating_sub(blob.len() - before);
        let batches = &state.locations.batches;
        let domain = &state.locations.domain;
        // They only grow: the prefixes being copied are those of the checkpoint's moment.
        assert!(batches.len() >= self.batch_count && domain.len() >= self.domain_count);
        if self.batches_copied < self.batch_count {
            let take = (self.batch_count - self.batches_copied)
                .min(budget_left(&self.blob).max(1).div_ceil(BATCH_SIZE_BYTES));
            for batch in &batches[self.batches_copied..self.batches_copied + take] {
                self.blob
                    .extend_from_slice(&batch.first_handle.to_le_bytes());
                self.blob.extend_from_slice(&batch.position.to_le_bytes());
                self.blob
                    .extend_from_slice(&u64::from(batch.count).to_le_bytes());
                self.blob.extend_from_slice(&batch.timestamp.to_le_bytes());
            }
            self.batches_copied += take;
        }
        if self.batches_copied == self.batch_count && budget_left(&self.blob) > 0 {
            let take = (self.domain_count - self.domain_copied)
                .min(budget_left(&self.blob).div_ceil(Transfer::SIZE));
            let slice = &domain[self.domain_copied..self.domain_copied + take];
            self.blob.extend_from_slice(Transfer::slice_as_bytes(slice));
            self.domain_copied += take;
        }
        let complete =
            self.batches_copied == self.batch_count && self.domain_copied == self.domain_count;
        // Pair with the size announced at the beginning.
        assert_eq!(complete, self.blob.len() == self.size_bytes());
        complete
    }

    /// The whole encoding's size: known once the front is done.
    fn size_bytes(&self) -> usize {
        let payments_bytes = self.payments_bytes.expect("asked once the front is done");
        self.size_bytes_without_payments + payments_bytes
    }

    /// The buffers of the checkpoint's moment, emptied, for the next checkpoint to reuse, and
    /// what the moment wrote into them (head bytes, block numbers); once the front is done.
    pub(crate) fn moment_buffers_take(&mut self) -> (MomentBuffers, usize, usize) {
        let mut buffers = self
            .moment_buffers
            .take()
            .expect("the front is done and its buffers not yet taken");
        let head_bytes = buffers.head.len();
        let block_numbers = buffers.block_numbers.len();
        buffers.head.clear();
        buffers.block_numbers.clear();
        (buffers, head_bytes, block_numbers)
    }

    /// The encoding, once complete.
    pub fn finish(self) -> Vec<u8> {
        assert_eq!(
            self.blob.len(),
            self.size_bytes(),
            "the encoding is complete"
        );
        self.blob
    }
}

impl State {
    /// Begins a checkpoint (format `CHECKPOINT_FORMAT`) of the state as it is now, into
    /// `buffer` (emptied first; the previous checkpoint's, whose pages are already faulted in,
    /// saves the encoder those faults): keeps what precedes the payments domain and a snapshot
    /// of that domain, and begins the copy of the ledger's head into `moment_buffers` (emptied
    /// first, and reused the same way: `CheckpointEncoding::moment_buffers_take`;
    /// `Ledger::checkpoint_head_begin`); `CheckpointEncoding::encode_step` copies the rest of
    /// the head, starts the front encoder, and appends the rest, now or after later records.
    pub(crate) fn checkpoint_begin(
        &mut self,
        buffer: Vec<u8>,
        moment_buffers: MomentBuffers,
    ) -> CheckpointEncoding {
        let batch_count = self.locations.batches.len();
        let domain_count = self.locations.domain.len();
        let mut sessions = Vec::new();
        self.sessions.encode(&mut sessions);
        // The ledger's head is copied in slices from here on (`Ledger::checkpoint_head_begin`):
        // written at once it was 10–25 MB of first writes at 4–6 M transfers, 3.6–83 ms of the
        // core as the host allowed.
        let MomentBuffers {
            head: mut ledger_head,
            block_numbers,
        } = moment_buffers;
        ledger_head.clear();
        let ledger_size_bytes = self
            .ledger
            .checkpoint_head_begin(ledger_head, block_numbers);
        let size_bytes_without_payments = 8
            + 16
            + 4 * 8
            + 8
            + sessions.len()
            + ledger_size_bytes
            + batch_count * BATCH_SIZE_BYTES
            + domain_count * Transfer::SIZE;
        let mut prefix = Vec::new();
        prefix.extend_from_slice(CHECKPOINT_MAGIC_PREFIX);
        prefix.extend_from_slice(format!("{CHECKPOINT_FORMAT:02}").as_bytes());
        prefix.extend_from_slice(&self.cluster.to_le_bytes());
        prefix.extend_from_slice(&self.op.to_le_bytes());
        prefix.extend_from_slice(&self.timestamp.to_le_bytes());
        prefix.extend_from_slice(&(batch_count as u64).to_le_bytes());
        prefix.extend_from_slice(&(domain_count as u64).to_le_bytes());
        prefix.extend_from_slice(&(sessions.len() as u64).to_le_bytes());
        prefix.extend_from_slice(&sessions);
        CheckpointEncoding {
            front: FrontEncoding::HeadCopying(Box::new(FrontPending {
                prefix,
                payments: self.payments.clone(),
                buffer,
                size_bytes_without_payments,
            })),
            blob: Vec::new(),
            moment_buffers: None,
            batch_count,
            batches_copied: 0,
            domain_count,
            domain_copied: 0,
            size_bytes_without_payments,
            payments_bytes: None,
        }
    }

    /// Decodes a checkpoint of any format from `CHECKPOINT_FORMAT_MIN` on. `log` holds the
    /// transfers the checkpoint's locations name (the transfer index is rebuilt from their
    /// ids), with room in it for `transfers_additional` more.
    pub fn decode_checkpoint<L: LogBytes>(
        bytes: &[u8],
        session_config: SessionConfig,
        log: &L,
        transfers_additional: usize,
    ) -> Result<State, CheckpointError> {
        let mut reader = Reader { bytes, offset: 0 };
        let magic = reader.take(8)?;
        let format = checkpoint_format(magic)?;
        let cluster = u128::from_le_bytes(reader.take(16)?.try_into().expect("16 bytes"));
        let op = reader.u64()?;
        let timestamp = reader.u64()?;
        let mut locations = TransferLocations::default();
        let (sessions, payments, ledger) = if format >= 3 {
            let batch_count = reader.count(BATCH_SIZE_BYTES)?;
            let domain_count = reader.count(Transfer::SIZE)?;
            let sessions = reader.sessions(session_config)?;
            let payments = reader.payments()?;
            let ledger = reader.ledger()?;
            reader.batches(batch_count, &mut locations)?;
            locations.domain = reader.domain(domain_count)?;
            (sessions, payments, ledger)
        } else {
            let batch_count = reader.count(BATCH_SIZE_BYTES)?;
            reader.batches(batch_count, &mut locations)?;
            let sessions = reader.sessions(session_config)?;
            let payments = if format >= 2 {
                let domain_count = reader.count(Transfer::SIZE)?;
                locations.domain = reader.domain(domain_count)?;
                reader.payments()?
            } else {
                Payments::default()
            };
            (sessions, payments, reader.ledger()?)
        };
        if reader.offset != bytes.len() {
            return Err(CheckpointError::Inconsistent("trailing bytes"));
        }
        let store = LogTransfers {
            log,
            locations: &locations,
        };
        let ledger = ledger
            .index(&store, transfers_additional)
            .map_err(CheckpointError::Ledger)?;
        if ledger.transfer_handle_next() < locations.event_count() {
            return Err(CheckpointError::Inconsistent(
                "transfer locations beyond the ledger's handles",
            ));
        }
        Ok(State {
            cluster,
            ledger,
            sessions,
            payments,
            op,
            timestamp,
            locations,
        })
    }
}

/// The format a checkpoint's magic names.
fn checkpoint_format(magic: &[u8]) -> Result<u32, CheckpointError> {
    let refuse = || CheckpointError::Magic {
        magic: magic.to_vec(),
    };
    if &magic[..6] != CHECKPOINT_MAGIC_PREFIX {
        return Err(refuse());
    }
    let found: u32 = std::str::from_utf8(&magic[6..8])
        .ok()
        .and_then(|digits| digits.parse().ok())
        .ok_or_else(refuse)?;
    if !(CHECKPOINT_FORMAT_MIN..=CHECKPOINT_FORMAT).contains(&found) {
        return Err(CheckpointError::Format { found });
    }
    Ok(found)
}

struct Reader<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, size: usize) -> Result<&'a [u8], CheckpointError> {
        let taken = self
            .bytes
            .get(self.offset..self.offset.saturating_add(size))
            .ok_or(CheckpointError::Truncated {
                offset: self.offset,
            })?;
        self.offset += size;
        Ok(taken)
    }

    fn u64(&mut self) -> Result<u64, CheckpointError> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    fn truncated(&self) -> CheckpointError {
        CheckpointError::Truncated {
            offset: self.offset,
        }
    }

    /// A count of items of `item_size` bytes, bounded by the bytes left.
    fn count(&mut self, item_size: usize) -> Result<usize, CheckpointError> {
        let count = usize::try_from(self.u64()?).map_err(|_| self.truncated())?;
        if count.saturating_mul(item_size) > self.bytes.len() - self.offset {
            return Err(self.truncated());
        }
        Ok(count)
    }

    /// `count` transfer locations, in handle order.
    fn batches(
        &mut self,
        count: usize,
        locations: &mut TransferLocations,
    ) -> Result<(), CheckpointError> {
        for _ in 0..count {
            let batch = TransferBatch {
                first_handle: self.u64()?,
                position: self.u64()?,
                count: u32::try_from(self.u64()?)
                    .map_err(|_| CheckpointError::Inconsistent("batch count"))?,
                timestamp: self.u64()?,
            };
            if batch.first_handle != locations.event_count() {
                return Err(CheckpointError::Inconsistent(
                    "transfer batches out of order",
                ));
            }
            locations.batches.push(batch);
        }
        Ok(())
    }

    /// `count` domain transfers.
    fn domain(&mut self, count: usize) -> Result<Vec<Transfer>, CheckpointError> {
        let size = count
            .checked_mul(Transfer::SIZE)
            .ok_or(CheckpointError::Inconsistent("domain transfer count"))?;
        Ok(self
            .take(size)?
            .chunks_exact(Transfer::SIZE)
            .map(Transfer::read_from)
            .collect())
    }

    fn sessions(&mut self, config: SessionConfig) -> Result<SessionTable, CheckpointError> {
        let size = self.count(1)?;
        SessionTable::decode(self.take(size)?, config).map_err(CheckpointError::Sessions)
    }

    fn payments(&mut self) -> Result<Payments, CheckpointError> {
        let (payments, size) = Payments::decode_checkpoint(&self.bytes[self.offset..])?;
        self.offset += size;
        Ok(payments)
    }

    fn ledger(&mut self) -> Result<LedgerDecoded, CheckpointError> {
        let (ledger, size) = Ledger::decode_checkpoint(&self.bytes[self.offset..])
            .map_err(CheckpointError::Ledger)?;
        self.offset += size;
        Ok(ledger)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use tally_payments::{
        AssetCommand, Command, CreateAsset, Deposit, Fingerprint, IdempotencyKey, LiquidityCommand,
        LiquidityOwner, Mutation, Uuid, Withdrawal,
    };

    use super::*;
    use crate::command::admin_encode;
    use crate::entry::{entry_append, EntryHeader, EntryKind};
    use crate::state::{ApplyMode, Reply};

    /// A log in memory: records appended one after the other.
    #[derive(Default)]
    struct MemoryLog(Vec<u8>);

    impl LogBytes for MemoryLog {
        fn bytes(&self, position: u64, size: usize) -> &[u8] {
            &self.0[position as usize..][..size]
        }
    }

    /// Appends one record of admin commands and applies it, as the core does; every command
    /// must succeed.
    fn admin_record(log: &mut MemoryLog, state: &mut State, commands: &[Command]) {
        let mut body = Vec::new();
        let (mut op, mut timestamp) = (state.op, state.timestamp);
        for command in commands {
            op += 1;
            let message = admin_encode(command);
            let header = EntryHeader {
                kind: EntryKind::Admin,
                timestamp: timestamp + 1,
                op,
                message_size: message.len() as u32,
            };
            entry_append(&mut body, &header, &message);
            timestamp = header.timestamp + crate::Command::ADMIN_TIMESTAMPS_RESERVED;
        }
        let position = log.0.len() as u64;
        log.0.extend_from_slice(&body);
        let mut replies = Vec::new();
        let last_request_op = HashMap::new();
        let mode = ApplyMode::Replay {
            last_request_op: &last_request_op,
        };
        state
            .apply_record(log, position, body.len(), mode, &mut replies)
            .expect("the record applies");
        for reply in replies {
            assert!(matches!(reply, Reply::Admin(Ok(_))), "{reply:?}");
        }
    }

    fn uuid(n: u128) -> Uuid {
        // Version 4, RFC 4122 variant: what the front hands the domain.
        Uuid::from_u128((n & !(0xF << 76) & !(0x3 << 62)) | (0x4 << 76) | (0x2 << 62))
    }

    fn deposit(asset: Uuid, n: u128) -> Command {
        Command {
            idempotency: Some(IdempotencyKey {
                key: format!("key-{n}"),
                fingerprint: Fingerprint([n as u8; 32]),
            }),
            mutation: Mutation::Liquidity(LiquidityCommand::Deposit(Deposit {
                owner: LiquidityOwner::Asset(Some(asset)),
                transfer_id: Some(uuid(1_000 + n)),
                amount: 10,
            })),
        }
    }

    /// A checkpoint begun at one moment and finished in small slices after more records (new
    /// domain transfers and their locations, pending withdrawals, idempotency keys) holds the
    /// bytes of that moment, and decodes, over the same log, to the state of that moment.
    #[test]
    fn slices_after_more_records_encode_the_moment_of_the_beginning() {
        let mut log = MemoryLog::default();
        let mut state = State::new(7, SessionConfig::default());
        let asset = uuid(1);
        let create = Command {
            idempotency: None,
            mutation: Mutation::Asset(AssetCommand::Create(CreateAsset {
                id: asset,
                code: "USD".into(),
                scale: 2,
                withdrawal_threshold: None,
                liquidity_threshold: None,
            })),
        };
        admin_record(&mut log, &mut state, &[create]);
        for n in 0..40 {
            admin_record(
                &mut log,
                &mut state,
                &[deposit(asset, n), deposit(asset, 100 + n)],
            );
        }
        let digest_at_beginning = state.digest(&log);
        let mut whole = state.checkpoint_begin(Vec::new(), MomentBuffers::default());
        whole.encode_rest(&mut state);
        let at_beginning = whole.finish();
        // Buffers left with bytes of before, as reused ones are.
        let moment_buffers = MomentBuffers {
            head: vec![4, 5],
            block_numbers: vec![6, 7, 8],
        };
        let mut sliced = state.checkpoint_begin(vec![1, 2, 3], moment_buffers);
        // A step now copies a slice of the ledger's head; the records below change accounts
        // and transfer states in place before the rest of it, and the rest, is copied.
        assert!(!sliced.encode_step(&mut state, 100));

        for n in 200..240 {
            let withdrawal = Command {
                idempotency: None,
                mutation: Mutation::Liquidity(LiquidityCommand::Withdraw(Withdrawal {
                    owner: LiquidityOwner::Asset(Some(asset)),
                    transfer_id: Some(uuid(2_000 + n)),
                    amount: 1,
                    timeout_seconds: 60,
                })),
            };
            admin_record(&mut log, &mut state, &[deposit(asset, n), withdrawal]);
        }
        assert_ne!(state.digest(&log), digest_at_beginning);
        while !sliced.encode_step(&mut state, 100) {}
        assert!(sliced.finish() == at_beginning, "the slices differ");

        let decoded =
            State::decode_checkpoint(&at_beginning, SessionConfig::default(), &log, 0).unwrap();
        assert_eq!(decoded.digest(&log), digest_at_beginning);
    }

    #[test]
    fn formats_are_named() {
        assert_eq!(checkpoint_format(b"TLYSRV01").unwrap(), 1);
        assert_eq!(checkpoint_format(b"TLYSRV02").unwrap(), 2);
        assert_eq!(checkpoint_format(b"TLYSRV03").unwrap(), 3);
        let newer = checkpoint_format(b"TLYSRV07").unwrap_err();
        assert_eq!(
            newer.to_string(),
            "checkpoint format 7; this binary reads formats 1..=3"
        );
        assert!(matches!(
            checkpoint_format(b"NOTTALLY"),
            Err(CheckpointError::Magic { .. })
        ));
    }

    #[test]
    fn prepared_moment_buffers_have_room_for_a_larger_moment() {
        let preparing = NextMomentBuffers::prepare(MomentBuffers::default(), 1000, 300);
        let NextMomentBuffers::Preparing(thread) = preparing else {
            panic!("a thread prepares the buffers");
        };
        while !thread.is_finished() {
            std::thread::yield_now();
        }
        let buffers = NextMomentBuffers::Preparing(thread).take();
        assert!(buffers.head.is_empty() && buffers.block_numbers.is_empty());
        let grown = |len: usize| len * MOMENT_GROWTH_NUMERATOR / MOMENT_GROWTH_DENOMINATOR;
        assert!(buffers.head.capacity() >= grown(1000));
        assert!(buffers.block_numbers.capacity() >= grown(300));
    }

    #[test]
    fn taking_moment_buffers_never_waits_for_their_thread() {
        let (release, released) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let _ = released.recv();
            MomentBuffers {
                head: Vec::with_capacity(4096),
                block_numbers: Vec::new(),
            }
        });
        // Released later, so that a take that waited would return the thread's buffer.
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(200));
            let _ = release.send(());
        });
        let buffers = NextMomentBuffers::Preparing(thread).take();
        assert_eq!(
            buffers.head.capacity(),
            0,
            "a fresh buffer, not the unfinished thread's"
        );
        releaser.join().expect("the releaser ends");
    }
}
