//! The core thread: the only owner of the state, the journal and the session table.
//!
//! Each turn it drains the submit queue into one batch of entries (bounded in count and bytes),
//! stamps them with the core clock, appends them to the journal as one record, submits the
//! record's fsync through io_uring, and applies the record from the journal's bytes while the
//! fsync runs. The fsync of batch N also overlaps the gathering and applying of batch N+1; the
//! replies of batch N leave only after batch N's fsync has completed (group commit: one write
//! and one fsync for many clients' requests). Reads run on the state after the turn's record
//! and answer after it is durable, so that no read shows a write that could still be lost;
//! peeks, which only shape a command and never reach a client, answer in the turn they arrive.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tally_journal::{CheckpointLanded, Journal, JournalError, SyncTicket};
use tally_metrics::{Metrics, Phase, Stage};
use tally_payments::Outcome;
use tally_wire::{
    encode_eviction, encode_pong_client, EvictionHeader, EvictionReason, Header, ParsedHeader,
    PingClientHeader, PingDecision, PongClientHeader, RequestDecision, RequestHeader, HEADER_SIZE,
};
use tokio::sync::{mpsc, oneshot};

use crate::checkpoint::{CheckpointEncoding, NextMomentBuffers};
use crate::command::{Command, Request, ADMIN_REPLAY_COST};
use crate::entry::{
    entry_append_with, EntryKind, ENTRY_ALIGNMENT, ENTRY_HEADER_SIZE, RECORD_KIND_BATCH,
};
use crate::error::CoreError;
use crate::routes::{Connection, Outbound, Routes};
use crate::state::{ApplyMode, Reply, State};
use crate::storage::{body_position, JournalBytes};
use crate::view::StateView;

/// Most entries one record holds (bounds the work of one turn).
pub const BATCH_ENTRIES_MAX: usize = 1024;
/// Most bytes one record holds: 32 full-size requests (less where a segment cannot hold it).
pub const BATCH_BYTES_MAX: usize = 32 << 20;
/// Log bytes between checkpoints.
pub const CHECKPOINT_INTERVAL_BYTES: u64 = 1 << 30;
/// Entries between checkpoints, at least: bounds replay by work as well as bytes, since a small
/// entry (a 1-transfer request, an admin command) costs replay about as much as a large one.
pub const CHECKPOINT_INTERVAL_ENTRIES: u64 = 1 << 18;
/// Replay work between checkpoints, at least, in events (each created transfer or account, each
/// id looked up, each result a filter may return): about a second of replay on one core.
pub const CHECKPOINT_INTERVAL_WORK: u64 = 1 << 22;
/// Checkpoint bytes per unit of replay work that the bounds grow by (see `checkpoint_due`): an
/// admin command counts 64 (`ADMIN_REPLAY_COST`) and leaves about 1.2 KB in the checkpoint
/// under the payments benchmark (4.7 KB per payment of four), so 32 lets replay reach about
/// half of the work that built the domain before the next checkpoint.
pub(crate) const CHECKPOINT_BYTES_PER_WORK: u64 = 32;
/// Checkpoint bytes one turn copies after the checkpoint's moment (`CheckpointEncoding`: the
/// transfer locations and the domain's transfers, once the front encoder is done), while the
/// turn's fsync is in flight, so that no turn stops for the size of the state: about 0.1 ms into
/// the encoder's buffer, whose pages it backed.
pub const CHECKPOINT_STEP_BYTES: usize = 1 << 20;
/// Most bytes of one admin command; the front refuses larger ones before submitting.
pub const ADMIN_COMMAND_SIZE_MAX: usize = 256 << 10;

// A full-size request, an admin command and a pulse always fit one record.
const _: () = assert!(ADMIN_COMMAND_SIZE_MAX <= tally_wire::MESSAGE_SIZE_MAX);

/// A read that runs on the core thread against the current state and returns what to do once
/// that state is durable (typically: send the result on a channel).
pub type Read = Box<dyn FnOnce(&StateView<'_>) -> Deferred + Send>;
/// Work held back until the turn's record is durable.
pub type Deferred = Box<dyn FnOnce() + Send>;

/// Everything a front hands the core.
pub enum Submission {
    /// A TigerBeetle request or ping_client that passed the frame and header checks.
    Native {
        /// Header and body, as received.
        message: Vec<u8>,
        /// Where replies go.
        connection: Connection,
        /// When the front handed it to the submit queue (the queue stage).
        queued: Instant,
    },
    /// An Admin API mutation, encoded by `command::admin_encode` (at most
    /// `ADMIN_COMMAND_SIZE_MAX` bytes).
    Admin {
        /// The encoded command.
        command: Vec<u8>,
        /// Receives the outcome once it is durable.
        reply: oneshot::Sender<Outcome>,
    },
    /// A read of the state, answered once the state it saw is durable.
    Read(Read),
    /// A read that only shapes a command the core checks again when it runs (which rates the
    /// front fetches for a quote): answered in the turn it arrives, without waiting for the
    /// state it saw to be durable. What it returns must never reach a client: a crash could
    /// still lose the record that made it true.
    Peek(Read),
    /// Drain, checkpoint and stop.
    Shutdown,
}

/// How the core is sized.
#[derive(Clone, Copy, Debug)]
pub struct CoreOptions {
    /// The journal's record body limit; the core caps it at `BATCH_BYTES_MAX`.
    pub record_bytes_max: usize,
    /// Log bytes that recovery replayed on top of the checkpoint.
    pub unsaved_log_bytes: u64,
    /// Entries that recovery replayed on top of the checkpoint.
    pub unsaved_entries: u64,
    /// Replay work (events) that recovery replayed on top of the checkpoint.
    pub unsaved_work: u64,
    /// The size of the checkpoint recovery loaded (0 without one).
    pub checkpoint_bytes: u64,
}

/// The core thread's state.
pub struct Core {
    state: State,
    journal: Journal,
    /// The newest open connection of each client the session table holds (sessions outlive
    /// connections; routes do not).
    routes: Routes,
    log_bytes_since_checkpoint: u64,
    entries_since_checkpoint: u64,
    /// Replay work appended since the last checkpoint (`CHECKPOINT_INTERVAL_WORK`).
    work_since_checkpoint: u64,
    /// The size of the newest durable checkpoint: what the next one will cost, about.
    checkpoint_bytes_last: u64,
    record_body: Vec<u8>,
    /// The record body limit: `BATCH_BYTES_MAX`, or less if a segment cannot hold that.
    record_bytes_max: usize,
    /// A submission that did not fit in the last record; it opens the next one.
    carried: Option<Submission>,
    /// The checkpoint being encoded or written, at most one.
    checkpoint: Option<CheckpointUnderWay>,
    /// The last checkpoint's buffer, for the next one: its pages are faulted in already, so
    /// the core does not stop for page faults while it copies (the memory a checkpoint needs
    /// stays allocated, as TigerBeetle allocates at start-up).
    checkpoint_buffer: Vec<u8>,
    /// The last checkpoint's buffers for the ledger's head and the block numbers of its tail,
    /// kept for the same reason and given room for the next, larger moment off the core thread:
    /// both are written at the checkpoint's moment, all at once.
    checkpoint_moment_buffers: NextMomentBuffers,
    /// Atomics the scrape reads; the core only stores and adds to them.
    metrics: Metrics,
}

/// An idle core's longest wait for a submission: due pulses run at least this often.
const IDLE_WAIT_MAX: Duration = Duration::from_millis(100);
/// An idle core's wait while a checkpoint waits for its front encoder (the payments domain and
/// the ledger), which does not wake it: short, since the copy goes on after it.
const CHECKPOINT_ENCODER_POLL: Duration = Duration::from_millis(1);

/// What a checkpoint under way needs of the core's turns.
enum CheckpointStage {
    /// No encoding under way (none, or the journal's writer has it).
    None,
    /// Slices to copy: every turn copies one.
    Copying,
    /// Nothing to do until the front encoder finishes.
    WaitingForEncoder,
}

/// A checkpoint from its moment (`State::checkpoint_begin`) until it is durable.
struct CheckpointUnderWay {
    /// The journal record the state reflects.
    record: u64,
    /// The state's op.
    op: u64,
    /// Known once the encoding is complete.
    size_bytes: Option<usize>,
    /// The tail still being copied, a slice per turn; `None` once the journal's writer has it.
    encoding: Option<CheckpointEncoding>,
    began: Instant,
    /// Core time spent encoding: the head, then every slice.
    encode: Duration,
    /// How long the head took (the core stops for it at the checkpoint's moment).
    head: Duration,
    /// The longest slice.
    step_max: Duration,
    /// Turns that copied a slice.
    steps: u32,
}

/// An entry waiting for the turn's record, with what its reply needs.
enum Pending {
    /// A request that passed the session checks.
    Request {
        message: Vec<u8>,
        header: RequestHeader,
    },
    /// An admin command and the caller waiting for it.
    Admin {
        command: Vec<u8>,
        reply: oneshot::Sender<Outcome>,
    },
}

/// A reply ready to leave once its record is durable.
enum Outgoing {
    /// A reply, and the client's connection when its record was applied (none: it closed).
    Native {
        connection: Option<Connection>,
        message: Vec<u8>,
    },
    Admin {
        reply: oneshot::Sender<Outcome>,
        outcome: Outcome,
    },
    Deferred(Deferred),
}

/// How much replay may pile up before a checkpoint is due, besides `CHECKPOINT_INTERVAL_BYTES`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ReplayBounds {
    entries_max: u64,
    work_max: u64,
}

impl ReplayBounds {
    /// The bounds for a state of `transfers` stored transfers whose last checkpoint took
    /// `checkpoint_bytes` (see `Core::checkpoint_due`).
    fn of(transfers: u64, checkpoint_bytes: u64) -> ReplayBounds {
        let state_work = (transfers / 2).max(checkpoint_bytes / CHECKPOINT_BYTES_PER_WORK);
        ReplayBounds {
            entries_max: CHECKPOINT_INTERVAL_ENTRIES.max(state_work / 8),
            work_max: CHECKPOINT_INTERVAL_WORK.max(state_work),
        }
    }
}

/// A batch whose fsync is in flight, and the replies waiting for it.
struct Unsynced {
    ticket: SyncTicket,
    /// When the fsync was submitted (`tally_journal_fsync_duration_seconds`).
    submitted: Instant,
    outgoing: Vec<Outgoing>,
}

impl Core {
    /// A core over recovered state and journal, reporting to `metrics`.
    pub fn new(state: State, journal: Journal, options: CoreOptions, metrics: Metrics) -> Core {
        let record_bytes_max = options.record_bytes_max.min(BATCH_BYTES_MAX);
        // One full-size request and a pulse always fit in a record.
        assert!(record_bytes_max >= tally_wire::MESSAGE_SIZE_MAX + 4 * ENTRY_HEADER_SIZE);
        let core = Core {
            state,
            journal,
            routes: Routes::default(),
            log_bytes_since_checkpoint: options.unsaved_log_bytes,
            entries_since_checkpoint: options.unsaved_entries,
            work_since_checkpoint: options.unsaved_work,
            checkpoint_bytes_last: options.checkpoint_bytes,
            record_body: Vec::with_capacity(record_bytes_max),
            record_bytes_max,
            carried: None,
            checkpoint: None,
            checkpoint_buffer: Vec::new(),
            checkpoint_moment_buffers: NextMomentBuffers::default(),
            metrics,
        };
        core.metrics_publish();
        core
    }

    /// The submissions of one turn: waits for the first up to `wait` (`None`: takes only what
    /// is queued), then takes what is queued, up to `BATCH_ENTRIES_MAX` and `record_bytes_max`
    /// bytes (room for a pulse kept back).
    fn submissions_gather(
        &mut self,
        queue: &mut mpsc::Receiver<Submission>,
        timer: &tokio::runtime::Runtime,
        wait: Option<Duration>,
    ) -> Vec<Submission> {
        let first = if let Some(carried) = self.carried.take() {
            Some(carried)
        } else if let Some(wait) = wait {
            let wait = async { tokio::time::timeout(wait, queue.recv()).await };
            match timer.block_on(wait) {
                Ok(Some(submission)) => Some(submission),
                Ok(None) => Some(Submission::Shutdown),
                Err(_elapsed) => None,
            }
        } else {
            queue.try_recv().ok()
        };
        let Some(first) = first else {
            return Vec::new();
        };
        let mut bytes = ENTRY_HEADER_SIZE + submission_size(&first);
        let mut submissions = vec![first];
        while submissions.len() < BATCH_ENTRIES_MAX {
            let Ok(submission) = queue.try_recv() else {
                break;
            };
            bytes += submission_size(&submission);
            if bytes > self.record_bytes_max {
                self.carried = Some(submission);
                break;
            }
            submissions.push(submission);
        }
        submissions
    }

    /// Serves until a `Shutdown` submission (or the queue closing), then drains, checkpoints
    /// and returns. An error means the journal can no longer be trusted: health says so until
    /// the process ends.
    pub fn run(self, queue: mpsc::Receiver<Submission>) -> Result<(), CoreError> {
        let health = self.metrics.health.clone();
        let result = self.serve(queue);
        if result.is_err() {
            health.phase_set(Phase::Failed);
        }
        result
    }

    fn serve(mut self, mut queue: mpsc::Receiver<Submission>) -> Result<(), CoreError> {
        // A timer for the queue wait only; the core's work never awaits anything.
        let timer = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .map_err(CoreError::Timer)?;
        let mut unsynced: Option<Unsynced> = None;
        let mut shutdown = false;
        while !shutdown {
            self.metrics
                .core
                .submit_queue_depth
                .set(i64::try_from(queue.len()).unwrap_or(i64::MAX));
            // An idle core waits for work (up to 100 ms, so that due pulses run without
            // traffic), but not while a checkpoint's tail is being copied, and only briefly while
            // the front encoder runs (it does not wake the core when it is done).
            let wait = match (unsynced.is_some(), self.checkpoint_encoding()) {
                (true, _) => None,
                (false, CheckpointStage::Copying) => None,
                (false, CheckpointStage::WaitingForEncoder) => Some(CHECKPOINT_ENCODER_POLL),
                (false, CheckpointStage::None) => Some(IDLE_WAIT_MAX),
            };
            let submissions = self.submissions_gather(&mut queue, &timer, wait);
            let gathered = Instant::now();
            let mut pending = Vec::new();
            let mut reads = Vec::new();
            let mut peeks = Vec::new();
            for submission in submissions {
                match submission {
                    Submission::Shutdown => shutdown = true,
                    Submission::Native {
                        message,
                        connection,
                        queued,
                    } => {
                        let stages = &self.metrics.core.stages;
                        stages.observe(Stage::Queue, gathered.saturating_duration_since(queued));
                        self.message_receive(message, connection, &mut pending)
                    }
                    Submission::Admin { command, reply } => {
                        pending.push(Pending::Admin { command, reply })
                    }
                    Submission::Read(read) => reads.push(read),
                    Submission::Peek(peek) => peeks.push(peek),
                }
            }
            let appended = self.batch_commit(pending)?;
            if !peeks.is_empty() {
                let view = StateView::new(&self.state, &self.journal);
                let answers: Vec<Outgoing> = peeks
                    .into_iter()
                    .map(|peek| Outgoing::Deferred(peek(&view)))
                    .collect();
                self.outgoing_send(answers);
            }
            // While this turn's fsync is in flight: the replies wait for it anyway.
            self.checkpoint_advance()?;
            // Reads see this turn's record; they answer once it (or, without one, the
            // previous record) is durable.
            let view = StateView::new(&self.state, &self.journal);
            let deferred: Vec<Outgoing> = reads
                .into_iter()
                .map(|read| Outgoing::Deferred(read(&view)))
                .collect();
            self.unsynced_finish(unsynced.take())?;
            match appended {
                Some(mut appended) => {
                    appended.outgoing.extend(deferred);
                    // Its fsync began before the apply and may be done already: then its
                    // replies leave now, not after the next turn's apply.
                    let durable = self.journal.sync_poll(appended.ticket);
                    let durable = durable.map_err(|source| CoreError::Sync { source })?;
                    if durable {
                        self.unsynced_finish(Some(appended))?;
                    } else {
                        unsynced = Some(appended);
                    }
                    self.metrics_publish();
                }
                None => self.outgoing_send(deferred),
            }
            if self.checkpoint.is_none() {
                self.checkpoint_moment_room_prepare();
                if self.checkpoint_due() {
                    // Under sustained load a sync is always in flight; finish it so that the
                    // checkpoint covers every appended record, else replay would grow unbounded.
                    self.unsynced_finish(unsynced.take())?;
                    self.checkpoint_begin();
                }
            }
            // Replies waiting for a sync already hold their connection.
            self.routes.prune(&self.state.sessions);
        }
        self.unsynced_finish(unsynced.take())?;
        self.checkpoint_finish()?;
        if self.log_bytes_since_checkpoint > 0 {
            self.checkpoint_begin();
            self.checkpoint_finish()?;
        }
        tracing::info!(op = self.state.op, digest = %hex(&self.state.digest(&JournalBytes(&self.journal))), "stopped");
        Ok(())
    }

    /// Decides what to do with one message; requests to execute join `pending`.
    fn message_receive(
        &mut self,
        message: Vec<u8>,
        connection: Connection,
        pending: &mut Vec<Pending>,
    ) {
        let Some(header) = Header::from_prefix(&message) else {
            return;
        };
        match header.parse() {
            Ok(ParsedHeader::Request(request)) => {
                let body = &message[HEADER_SIZE..];
                match self.state.sessions.check_request(&request, body) {
                    RequestDecision::Execute => {
                        self.state.sessions.begin_request(&request);
                        pending.push(Pending::Request {
                            message,
                            header: request,
                        });
                    }
                    RequestDecision::ResendReply(reply) => send(&connection, reply.to_vec()),
                    RequestDecision::Drop(reason) => {
                        tracing::debug!(?reason, client = request.client, "drop")
                    }
                    RequestDecision::Evict(reason) => {
                        self.evict(&connection, request.client, &request, reason)
                    }
                }
                // After the decision: a register now executing needs a route for its reply.
                self.routes
                    .update(request.client, &connection, &self.state.sessions);
            }
            Ok(ParsedHeader::PingClient(ping)) => self.ping(&ping, &connection),
            // The listener forwards requests and pings only.
            Ok(_) | Err(_) => {}
        }
    }

    fn ping(&mut self, ping: &PingClientHeader, connection: &Connection) {
        // A ping moves a known client's replies to the connection it came on (wire spec §1.5).
        self.routes
            .update(ping.client, connection, &self.state.sessions);
        match self.state.sessions.check_ping(ping, self.state.op) {
            PingDecision::Pong => {
                let pong = PongClientHeader {
                    cluster: self.state.cluster,
                    view: self.state.sessions.config().view,
                    release: ping.release,
                    ping_timestamp_monotonic: ping.ping_timestamp_monotonic,
                };
                send(connection, encode_pong_client(&pong).to_vec());
            }
            PingDecision::Evict(reason) => {
                let eviction = EvictionHeader {
                    cluster: self.state.cluster,
                    view: self.state.sessions.config().view,
                    release: ping.release,
                    client: ping.client,
                    reason,
                };
                send(connection, encode_eviction(&eviction).to_vec());
            }
        }
    }

    fn evict(
        &self,
        connection: &Connection,
        client: u128,
        request: &RequestHeader,
        reason: EvictionReason,
    ) {
        tracing::info!(client, ?reason, "evict");
        let eviction = EvictionHeader {
            cluster: self.state.cluster,
            view: self.state.sessions.config().view,
            release: request.release,
            client,
            reason,
        };
        send(connection, encode_eviction(&eviction).to_vec());
    }

    /// Stamps the entries, appends them as one record, applies it, and submits its fsync.
    fn batch_commit(&mut self, pending: Vec<Pending>) -> Result<Option<Unsynced>, CoreError> {
        let now = realtime_ns();
        let pulse = self.state.pulse_needed(now.max(self.state.timestamp));
        if pending.is_empty() && !pulse {
            return Ok(None);
        }
        let append_started = Instant::now();
        self.record_body.clear();
        let mut op = self.state.op;
        let mut timestamp = self.state.timestamp;
        let mut work = 0;
        let mut events = 0;
        // Stamps the next entry (op, time base) with what `write` appends as its message;
        // `write` may refuse (appending nothing), and then nothing is stamped.
        let mut stamp = |body: &mut Vec<u8>,
                         kind: EntryKind,
                         reserved: u64,
                         write: &mut dyn FnMut(&mut Vec<u8>) -> bool| {
            let base = (timestamp + 1).max(now);
            let written = entry_append_with(body, kind, base, op + 1, write);
            if written {
                op += 1;
                timestamp = base + reserved;
            }
            written
        };
        for entry in &pending {
            match entry {
                Pending::Request { message, header } => {
                    let request =
                        Request::from_header(*header, message).expect("checked on receipt");
                    work += request.replay_cost();
                    events += request.batch_event_count();
                    let reserved = Command::Request(request).timestamps_reserved();
                    // Batch requests are logged compact (docs/server.md), written straight into
                    // the record body; registers whole.
                    let compacted = stamp(
                        &mut self.record_body,
                        EntryKind::RequestCompact,
                        reserved,
                        &mut |body| request.compact(body),
                    );
                    if !compacted {
                        stamp(
                            &mut self.record_body,
                            EntryKind::Request,
                            reserved,
                            &mut |body| {
                                body.extend_from_slice(message);
                                true
                            },
                        );
                    }
                }
                Pending::Admin { command, .. } => {
                    work += ADMIN_REPLAY_COST;
                    events += 1;
                    stamp(
                        &mut self.record_body,
                        EntryKind::Admin,
                        Command::ADMIN_TIMESTAMPS_RESERVED,
                        &mut |body| {
                            body.extend_from_slice(command);
                            true
                        },
                    );
                }
            }
        }
        if pulse {
            stamp(
                &mut self.record_body,
                EntryKind::Pulse,
                Command::Pulse.timestamps_reserved(),
                &mut |_| true,
            );
        }
        let entries = op - self.state.op;
        let appended = match self
            .journal
            .append(RECORD_KIND_BATCH, timestamp, &self.record_body)
        {
            Ok(appended) => appended,
            Err(error) if !journal_failed(&error) => {
                self.metrics.core.append_failures.inc();
                self.metrics.health.journal_writable_set(false);
                // The log is unchanged (the journal appends all or nothing), so nothing was
                // applied: forget the requests (their clients resend until there is room) and
                // answer admin callers that nothing happened.
                tracing::error!(%error, entries = pending.len(), "journal append failed; nothing executed");
                for entry in pending {
                    match entry {
                        Pending::Request { header, .. } => {
                            self.state.sessions.abandon_request(&header)
                        }
                        // Dropping the sender tells the caller the command did not run.
                        Pending::Admin { reply, .. } => drop(reply),
                    }
                }
                return Ok(None);
            }
            Err(source) => return Err(CoreError::Append { source }),
        };
        self.metrics
            .core
            .stages
            .observe(Stage::Append, append_started.elapsed());
        self.metrics.health.journal_writable_set(true);
        self.metrics.core.batches.inc();
        self.metrics.core.batch_entries.observe(entries as f64);
        self.metrics.core.batch_events.observe(events as f64);
        self.log_bytes_since_checkpoint += self.record_body.len() as u64;
        self.entries_since_checkpoint += entries;
        self.work_since_checkpoint += work;
        // The record holds the commands, so its fsync need not wait for them to be applied:
        // the disk flushes while the core applies. No reply leaves before both are done
        // (`unsynced_finish` waits for the ticket; the replies exist only after the apply).
        let ticket = self
            .journal
            .sync_begin()
            .map_err(|source| CoreError::Sync { source })?;
        let submitted = Instant::now();
        // Pair with the sync just begun: it covers this record, which is not applied yet.
        assert_eq!(self.journal.op_sync_begun(), appended.op);
        assert!(self.state.op < op);
        let mut replies = Vec::with_capacity(pending.len());
        let requests: Vec<RequestHeader> = pending
            .iter()
            .filter_map(|entry| match entry {
                Pending::Request { header, .. } => Some(*header),
                Pending::Admin { .. } => None,
            })
            .collect();
        let log = JournalBytes(&self.journal);
        let apply_started = Instant::now();
        self.state
            .apply_record(
                &log,
                body_position(&self.journal, &appended),
                self.record_body.len(),
                ApplyMode::Live {
                    requests: &requests,
                },
                &mut replies,
            )
            .map_err(|source| CoreError::Apply {
                op: appended.op,
                source,
            })?;
        self.metrics
            .core
            .stages
            .observe(Stage::Apply, apply_started.elapsed());
        // Pair with the stamping above: the state consumed exactly what was stamped.
        assert_eq!(self.state.op, op);
        assert_eq!(self.state.timestamp, timestamp);
        assert_eq!(replies.len(), pending.len());
        let outgoing = pending
            .into_iter()
            .zip(replies)
            .map(|(entry, reply)| match (entry, reply) {
                (Pending::Request { header, .. }, Reply::Native { client, message }) => {
                    assert_eq!(header.client, client);
                    // Resolved now, while the route exists: the prune at the end of this turn
                    // drops it if a later register in this record evicted the client's session,
                    // and the reply still goes out once the record is durable.
                    let connection = self.routes.connection(client).cloned();
                    Outgoing::Native {
                        connection,
                        message,
                    }
                }
                (Pending::Admin { reply, .. }, Reply::Admin(outcome)) => {
                    Outgoing::Admin { reply, outcome }
                }
                (Pending::Request { .. }, Reply::Admin(_))
                | (Pending::Admin { .. }, Reply::Native { .. }) => {
                    panic!("replies come in entry order, one per entry")
                }
            })
            .collect();
        Ok(Some(Unsynced {
            ticket,
            submitted,
            outgoing,
        }))
    }

    /// Waits for a batch's fsync, then sends its replies.
    fn unsynced_finish(&mut self, unsynced: Option<Unsynced>) -> Result<(), CoreError> {
        if let Some(unsynced) = unsynced {
            let wait_started = Instant::now();
            self.journal
                .sync_wait(unsynced.ticket)
                .map_err(|source| CoreError::Sync { source })?;
            let durable = Instant::now();
            let fsync = durable.saturating_duration_since(unsynced.submitted);
            let metrics = &self.metrics.core;
            metrics.fsync_seconds.observe(fsync.as_secs_f64());
            metrics.stages.observe(Stage::Fsync, fsync);
            metrics.stages.observe(
                Stage::FsyncWait,
                durable.saturating_duration_since(wait_started),
            );
            self.outgoing_send(unsynced.outgoing);
        }
        Ok(())
    }

    fn outgoing_send(&mut self, outgoing: Vec<Outgoing>) {
        // When the replies' record was seen durable (or, for reads without a record, when
        // they were answered): the reply stage starts here.
        let durable = Instant::now();
        for reply in outgoing {
            match reply {
                Outgoing::Native {
                    connection,
                    message,
                } => {
                    if let Some(connection) = connection {
                        send_reply(&connection, message, durable);
                    }
                }
                // A caller that stopped waiting (its HTTP request was cancelled) loses nothing:
                // the outcome is logged, and an idempotent retry returns it.
                Outgoing::Admin { reply, outcome } => {
                    let _ = reply.send(outcome);
                }
                Outgoing::Deferred(deferred) => deferred(),
            }
        }
    }

    /// Whether replay since the last checkpoint has grown past its bounds. The entry and work
    /// bounds grow with the state, because a checkpoint's own cost does: a large state then
    /// checkpoints as rarely as a small one in proportion to what a checkpoint writes, and
    /// replay stays a fraction of a full rebuild. The state's size in replay work is the larger
    /// of half the stored transfers and the last checkpoint's bytes over
    /// `CHECKPOINT_BYTES_PER_WORK`: the payments domain is written whole by every checkpoint
    /// and creates few transfers, so with transfers alone a server that had taken a million
    /// payments wrote gigabytes every 16,384 payments.
    fn checkpoint_due(&self) -> bool {
        self.checkpoint_due_by(1)
    }

    /// Whether `1 / share` of any of the bounds that make a checkpoint due has been used.
    fn checkpoint_due_by(&self, share: u64) -> bool {
        let bounds = ReplayBounds::of(
            self.state.ledger.transfer_count(),
            self.checkpoint_bytes_last,
        );
        self.log_bytes_since_checkpoint.saturating_mul(share) >= CHECKPOINT_INTERVAL_BYTES
            || self.entries_since_checkpoint.saturating_mul(share) >= bounds.entries_max
            || self.work_since_checkpoint.saturating_mul(share) >= bounds.work_max
    }

    /// Backs room for the next checkpoint's head on a thread once that checkpoint is half due,
    /// if no earlier checkpoint left a buffer being prepared: the first checkpoint after a start.
    /// Without it that head went into fresh pages, faulted in on this thread inside the
    /// checkpoint's moment: 6.2–8.6 ms at 4.2 M transfers, against 2 ms for later heads.
    fn checkpoint_moment_room_prepare(&mut self) {
        let NextMomentBuffers::Ready(buffers) = &self.checkpoint_moment_buffers else {
            return;
        };
        // Due first: the sizes walk every account's lists, which every turn could not afford
        // (4–5% of the core's time under 1-transfer requests).
        if !self.checkpoint_due_by(2) {
            return;
        }
        let head_bytes = self.state.ledger.checkpoint_head_size_bytes();
        let block_numbers = self.state.ledger.checkpoint_block_numbers_len();
        let room = buffers.head.capacity() >= head_bytes
            && buffers.block_numbers.capacity() >= block_numbers;
        if room {
            return;
        }
        let buffers = std::mem::take(&mut self.checkpoint_moment_buffers).take();
        self.checkpoint_moment_buffers =
            NextMomentBuffers::prepare(buffers, head_bytes, block_numbers);
    }

    /// Where the checkpoint under way, if any, stands from the core's side.
    fn checkpoint_encoding(&self) -> CheckpointStage {
        match self.checkpoint.as_ref().and_then(|c| c.encoding.as_ref()) {
            None => CheckpointStage::None,
            Some(encoding) if encoding.waits_for_encoder() => CheckpointStage::WaitingForEncoder,
            Some(_) => CheckpointStage::Copying,
        }
    }

    /// The checkpoint's moment: encodes the head of the state after every appended record
    /// (applied, and synced by the caller); the tail follows in slices (`checkpoint_advance`).
    fn checkpoint_begin(&mut self) {
        assert!(self.checkpoint.is_none(), "one checkpoint at a time");
        let began = Instant::now();
        let encoding = self.state.checkpoint_begin(
            std::mem::take(&mut self.checkpoint_buffer),
            std::mem::take(&mut self.checkpoint_moment_buffers).take(),
        );
        let head = began.elapsed();
        self.checkpoint = Some(CheckpointUnderWay {
            // A checkpoint names the journal record the state reflects (every appended record
            // has been applied), not the state's op: one record holds many entries, each an op.
            record: self.journal.op_last(),
            op: self.state.op,
            size_bytes: None,
            encoding: Some(encoding),
            began,
            encode: head,
            head,
            step_max: Duration::ZERO,
            steps: 0,
        });
        // What comes after this moment is what the next checkpoint bounds.
        self.log_bytes_since_checkpoint = 0;
        self.entries_since_checkpoint = 0;
        self.work_since_checkpoint = 0;
    }

    /// One turn's share of the checkpoint under way: copies a slice of its tail (handing the
    /// blob to the journal's writer thread once complete), or learns whether the write landed.
    /// A failed write stops the core as a failed `write_checkpoint` did.
    fn checkpoint_advance(&mut self) -> Result<(), CoreError> {
        let Some(checkpoint) = &mut self.checkpoint else {
            return Ok(());
        };
        match &mut checkpoint.encoding {
            Some(encoding) => {
                let started = Instant::now();
                let complete = encoding.encode_step(&mut self.state, CHECKPOINT_STEP_BYTES);
                let step = started.elapsed();
                checkpoint.encode += step;
                checkpoint.step_max = checkpoint.step_max.max(step);
                checkpoint.steps += 1;
                if complete {
                    self.checkpoint_write()?;
                }
            }
            None => {
                let landed =
                    self.journal
                        .checkpoint_poll()
                        .map_err(|source| CoreError::Checkpoint {
                            record: checkpoint.record,
                            source,
                        })?;
                if let Some(landed) = landed {
                    self.checkpoint_landed(landed);
                }
            }
        }
        Ok(())
    }

    /// Hands the complete blob to the journal's writer thread.
    fn checkpoint_write(&mut self) -> Result<(), CoreError> {
        let checkpoint = self.checkpoint.as_mut().expect("a checkpoint under way");
        let mut encoding = checkpoint.encoding.take().expect("being encoded");
        let (buffers, head_bytes, block_numbers) = encoding.moment_buffers_take();
        self.checkpoint_moment_buffers =
            NextMomentBuffers::prepare(buffers, head_bytes, block_numbers);
        let blob = encoding.finish();
        checkpoint.size_bytes = Some(blob.len());
        tracing::info!(
            record = checkpoint.record,
            op = checkpoint.op,
            bytes = blob.len(),
            head_us = checkpoint.head.as_micros(),
            step_us_max = checkpoint.step_max.as_micros(),
            encode_ms = checkpoint.encode.as_millis(),
            steps = checkpoint.steps,
            "writing checkpoint"
        );
        self.journal
            .checkpoint_start(checkpoint.record, blob)
            .map_err(|source| CoreError::Checkpoint {
                record: checkpoint.record,
                source,
            })
    }

    /// Completes the checkpoint under way, if any, on this thread, and waits until it is
    /// durable (at shutdown).
    fn checkpoint_finish(&mut self) -> Result<(), CoreError> {
        let Some(checkpoint) = &mut self.checkpoint else {
            return Ok(());
        };
        if let Some(encoding) = &mut checkpoint.encoding {
            let started = Instant::now();
            encoding.encode_rest(&mut self.state);
            checkpoint.encode += started.elapsed();
            checkpoint.steps += 1;
            self.checkpoint_write()?;
        }
        let record = self.checkpoint.as_ref().expect("under way").record;
        let landed = self
            .journal
            .checkpoint_wait()
            .map_err(|source| CoreError::Checkpoint { record, source })?
            .expect("the checkpoint was in flight");
        self.checkpoint_landed(landed);
        Ok(())
    }

    /// The checkpoint is durable: recovery replays from it from now on.
    fn checkpoint_landed(&mut self, landed: CheckpointLanded) {
        let checkpoint = self.checkpoint.take().expect("a checkpoint under way");
        // Pair with the hand-off: the journal wrote what the core encoded.
        assert_eq!(landed.op, checkpoint.record);
        let bytes = landed.state.len();
        assert_eq!(Some(bytes), checkpoint.size_bytes);
        self.checkpoint_bytes_last = bytes as u64;
        self.checkpoint_buffer = landed.state;
        let metrics = &self.metrics.core;
        metrics.checkpoints.inc();
        metrics
            .checkpoint_seconds
            .observe(checkpoint.began.elapsed().as_secs_f64());
        metrics.checkpoint_bytes.set(gauge(bytes));
        metrics.checkpoint_age.reset();
        // Operators see what it cost, and how long the core stopped for it at once: the head, or
        // the longest slice.
        tracing::info!(
            record = checkpoint.record,
            op = checkpoint.op,
            bytes,
            head_us = checkpoint.head.as_micros(),
            step_us_max = checkpoint.step_max.as_micros(),
            encode_ms = checkpoint.encode.as_millis(),
            steps = checkpoint.steps,
            write_ms = landed.write_duration.as_millis(),
            total_ms = checkpoint.began.elapsed().as_millis(),
            "checkpoint"
        );
    }
}

impl Core {
    /// Stores what the scrape reads of the state and the journal: a handful of relaxed atomic
    /// stores once per committed record.
    fn metrics_publish(&self) {
        let metrics = &self.metrics.core;
        let (backlog, given_up) = self.state.payments.webhook_backlog();
        metrics.op.set(gauge(self.state.op));
        metrics
            .journal_bytes
            .set(gauge(self.journal.log_size_bytes()));
        metrics
            .journal_segments
            .set(gauge(self.journal.segment_count()));
        metrics
            .accounts
            .set(gauge(self.state.ledger.account_count()));
        metrics
            .transfers
            .set(gauge(self.state.ledger.transfer_count()));
        metrics
            .sessions
            .set(gauge(self.state.sessions.sessions().len()));
        metrics
            .idempotency_keys
            .set(gauge(self.state.payments.idempotency_key_count()));
        metrics.webhook_backlog.set(gauge(backlog));
        tally_metrics::CoreMetrics::counter_set(&metrics.webhook_given_up, given_up);
    }
}

/// A count as a Prometheus gauge's value (they are i64; no count here comes near 2^63).
fn gauge<N: TryInto<i64>>(count: N) -> i64 {
    count.try_into().unwrap_or(i64::MAX)
}

/// Whether the journal can take no more appends (after a failed sync nothing written later
/// could be trusted: fsyncgate), which ends the server.
fn journal_failed(error: &JournalError) -> bool {
    matches!(
        error,
        JournalError::Failed | JournalError::SyncFailed { .. }
    )
}

/// The record bytes a submission's entry takes (0 for what is not logged).
fn submission_size(submission: &Submission) -> usize {
    match submission {
        Submission::Native { message, .. } => {
            (ENTRY_HEADER_SIZE + message.len()).next_multiple_of(ENTRY_ALIGNMENT)
        }
        Submission::Admin { command, .. } => {
            (ENTRY_HEADER_SIZE + command.len()).next_multiple_of(ENTRY_ALIGNMENT)
        }
        Submission::Read(_) | Submission::Peek(_) | Submission::Shutdown => 0,
    }
}

/// Sends without waiting: a client that does not read its replies loses them and resends, which
/// the protocol makes safe; the core never blocks on a connection.
fn send(connection: &Connection, message: Vec<u8>) {
    outbox_push(
        connection,
        Outbound {
            message,
            durable: None,
        },
    );
}

/// Sends a request's reply, which left the core at `durable` (the reply stage starts there).
fn send_reply(connection: &Connection, message: Vec<u8>, durable: Instant) {
    outbox_push(
        connection,
        Outbound {
            message,
            durable: Some(durable),
        },
    );
}

fn outbox_push(connection: &Connection, outbound: Outbound) {
    if connection.outbox.try_send(outbound).is_err() {
        tracing::debug!(
            connection = connection.id,
            "outbox full or closed; message dropped"
        );
    }
}

/// The wall clock in ns since the Unix epoch; the core's only clock reading.
pub fn realtime_ns() -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970");
    u64::try_from(now.as_nanos()).expect("clock before 2554")
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_bounds_hold_their_minimums_for_a_small_state() {
        let minimums = ReplayBounds {
            entries_max: CHECKPOINT_INTERVAL_ENTRIES,
            work_max: CHECKPOINT_INTERVAL_WORK,
        };
        assert_eq!(ReplayBounds::of(0, 0), minimums);
        assert_eq!(ReplayBounds::of(1_000_000, 64 << 20), minimums);
    }

    #[test]
    fn replay_bounds_grow_with_the_ledger_and_with_the_checkpoint() {
        // A ledger of 100 M transfers: half of them in work, a sixteenth in entries.
        assert_eq!(
            ReplayBounds::of(100_000_000, 0),
            ReplayBounds {
                entries_max: 6_250_000,
                work_max: 50_000_000,
            }
        );
        // A checkpoint of 4 GiB (a payments domain of about a million payments) with few
        // transfers: the bounds follow its size, so that the domain is not written whole every
        // 65,536 admin commands.
        let bounds = ReplayBounds::of(3_000_000, 4 << 30);
        assert_eq!(bounds.work_max, (4 << 30) / CHECKPOINT_BYTES_PER_WORK);
        assert_eq!(bounds.entries_max, bounds.work_max / 8);
        // Whichever is larger sets them.
        assert_eq!(ReplayBounds::of(1 << 30, 4 << 30).work_max, (1 << 30) / 2);
    }
}
