//! The core thread: the only owner of the state, the journal and the session table.
//!
//! Each turn it drains the submit queue into one batch of entries (bounded in count and bytes),
//! stamps them with the core clock, appends them to the journal as one record, applies the
//! record from the journal's bytes, and submits an fsync through io_uring. The fsync of batch N
//! overlaps the gathering and applying of batch N+1; the replies of batch N leave only after
//! batch N's fsync has completed (group commit: one write and one fsync for many clients'
//! requests).

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tally_journal::{Journal, SyncTicket};
use tally_ledger::PULSE_EVENTS_MAX;
use tally_wire::{
    decode_multi_batch, encode_eviction, encode_pong_client, EvictionHeader, EvictionReason,
    Header, Operation, ParsedHeader, PingClientHeader, PingDecision, PongClientHeader,
    RequestDecision, RequestHeader, HEADER_SIZE,
};
use tokio::sync::mpsc;

use crate::entry::{entry_append, EntryHeader, EntryKind, ENTRY_HEADER_SIZE, RECORD_KIND_BATCH};
use crate::state::{Reply, State};
use crate::storage::{body_position, JournalBytes};

/// Most entries one record holds (bounds the work of one turn).
pub const BATCH_ENTRIES_MAX: usize = 1024;
/// Most bytes one record holds: 32 full-size requests (less where a segment cannot hold it).
pub const BATCH_BYTES_MAX: usize = 32 << 20;
/// Log bytes between checkpoints (bounds replay after a crash).
pub const CHECKPOINT_INTERVAL_BYTES: u64 = 1 << 30;

/// Where to send a connection's outgoing messages.
#[derive(Clone)]
pub struct Connection {
    pub id: u64,
    pub outbox: mpsc::Sender<Vec<u8>>,
}

pub enum CoreCommand {
    /// A request or ping_client that passed the frame and header checks.
    Message {
        message: Vec<u8>,
        connection: Connection,
    },
    /// Drain, checkpoint and stop.
    Shutdown,
}

pub struct Core {
    state: State,
    journal: Journal,
    /// The newest connection each client spoke on (sessions outlive connections).
    connections: HashMap<u128, Connection>,
    log_bytes_since_checkpoint: u64,
    record_body: Vec<u8>,
    /// The record body limit: `BATCH_BYTES_MAX`, or less if a segment cannot hold that.
    record_bytes_max: usize,
    /// A command that did not fit in the last record; it opens the next one.
    carried: Option<CoreCommand>,
}

/// A batch whose fsync is in flight, and the replies waiting for it.
struct Unsynced {
    ticket: SyncTicket,
    replies: Vec<Reply>,
}

impl Core {
    /// `unsaved_log_bytes`: log bytes that recovery replayed on top of the checkpoint; they
    /// count towards the next checkpoint, so that a restart does not replay them again.
    pub fn new(
        state: State,
        journal: Journal,
        record_bytes_max: usize,
        unsaved_log_bytes: u64,
    ) -> Core {
        let record_bytes_max = record_bytes_max.min(BATCH_BYTES_MAX);
        // One full-size request and a pulse always fit in a record.
        assert!(record_bytes_max >= tally_wire::MESSAGE_SIZE_MAX + 4 * ENTRY_HEADER_SIZE);
        Core {
            state,
            journal,
            connections: HashMap::new(),
            log_bytes_since_checkpoint: unsaved_log_bytes,
            record_body: Vec::with_capacity(record_bytes_max),
            record_bytes_max,
            carried: None,
        }
    }

    /// The commands of one turn: waits for the first (up to 100 ms, so that due pulses run
    /// without traffic) unless a sync is in flight, then takes what is queued, up to
    /// `BATCH_ENTRIES_MAX` commands and `record_bytes_max` bytes (room for a pulse kept back).
    fn commands_gather(
        &mut self,
        queue: &mut mpsc::Receiver<CoreCommand>,
        timer: &tokio::runtime::Runtime,
        wait: bool,
    ) -> Vec<CoreCommand> {
        let first = if let Some(carried) = self.carried.take() {
            Some(carried)
        } else if wait {
            let wait =
                async { tokio::time::timeout(Duration::from_millis(100), queue.recv()).await };
            match timer.block_on(wait) {
                Ok(Some(command)) => Some(command),
                Ok(None) => Some(CoreCommand::Shutdown),
                Err(_elapsed) => None,
            }
        } else {
            queue.try_recv().ok()
        };
        let Some(first) = first else {
            return Vec::new();
        };
        let mut bytes = ENTRY_HEADER_SIZE + command_size(&first);
        let mut commands = vec![first];
        while commands.len() < BATCH_ENTRIES_MAX {
            let Ok(command) = queue.try_recv() else { break };
            bytes += command_size(&command);
            if bytes > self.record_bytes_max {
                self.carried = Some(command);
                break;
            }
            commands.push(command);
        }
        commands
    }

    pub fn run(mut self, mut queue: mpsc::Receiver<CoreCommand>) -> Result<(), String> {
        // A timer for the queue wait only; the core's work never awaits anything.
        let timer = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .map_err(|error| format!("core timer: {error}"))?;
        let mut unsynced: Option<Unsynced> = None;
        let mut shutdown = false;
        while !shutdown {
            let commands = self.commands_gather(&mut queue, &timer, unsynced.is_none());
            let mut entries = Vec::new();
            for command in commands {
                match command {
                    CoreCommand::Shutdown => shutdown = true,
                    CoreCommand::Message {
                        message,
                        connection,
                    } => {
                        self.message_receive(message, connection, &mut entries);
                    }
                }
            }
            let appended = self.batch_commit(entries)?;
            self.unsynced_finish(unsynced.take())?;
            unsynced = appended;
            if self.log_bytes_since_checkpoint >= CHECKPOINT_INTERVAL_BYTES {
                // Under sustained load a sync is always in flight; finish it so that the
                // checkpoint covers every appended record, else replay would grow unbounded.
                self.unsynced_finish(unsynced.take())?;
                self.checkpoint_maybe(false)?;
            }
        }
        self.unsynced_finish(unsynced.take())?;
        self.checkpoint_maybe(true)?;
        tracing::info!(op = self.state.op, digest = %hex(&self.state.digest(&JournalBytes(&self.journal))), "stopped");
        Ok(())
    }

    /// Decides what to do with one message; requests to execute join `entries`.
    fn message_receive(
        &mut self,
        message: Vec<u8>,
        connection: Connection,
        entries: &mut Vec<Vec<u8>>,
    ) {
        let Some(header) = Header::from_prefix(&message) else {
            return;
        };
        match header.parse() {
            Ok(ParsedHeader::Request(request)) => {
                self.connections.insert(request.client, connection.clone());
                let body = &message[HEADER_SIZE..];
                match self.state.sessions.check_request(&request, body) {
                    RequestDecision::Execute => {
                        self.state.sessions.begin_request(&request);
                        entries.push(message);
                    }
                    RequestDecision::ResendReply(reply) => send(&connection, reply.to_vec()),
                    RequestDecision::Drop(reason) => {
                        tracing::debug!(?reason, client = request.client, "drop")
                    }
                    RequestDecision::Evict(reason) => {
                        self.evict(&connection, request.client, &request, reason)
                    }
                }
            }
            Ok(ParsedHeader::PingClient(ping)) => self.ping(&ping, &connection),
            Ok(_) | Err(_) => {}
        }
    }

    fn ping(&mut self, ping: &PingClientHeader, connection: &Connection) {
        self.connections.insert(ping.client, connection.clone());
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
    fn batch_commit(&mut self, requests: Vec<Vec<u8>>) -> Result<Option<Unsynced>, String> {
        let now = realtime_ns();
        let pulse = self
            .state
            .ledger
            .pulse_needed(now.max(self.state.timestamp));
        if requests.is_empty() && !pulse {
            return Ok(None);
        }
        self.record_body.clear();
        let mut op = self.state.op;
        let mut timestamp = self.state.timestamp;
        for message in &requests {
            op += 1;
            let base = (timestamp + 1).max(now);
            let header = EntryHeader {
                kind: EntryKind::Request,
                timestamp: base,
                op,
                message_size: message.len() as u32,
            };
            entry_append(&mut self.record_body, &header, message);
            timestamp = base + request_event_count(message);
        }
        if pulse {
            op += 1;
            let base = (timestamp + 1).max(now);
            let header = EntryHeader {
                kind: EntryKind::Pulse,
                timestamp: base,
                op,
                message_size: 0,
            };
            entry_append(&mut self.record_body, &header, &[]);
            timestamp = base + PULSE_TIMESTAMPS;
        }
        let appended = match self
            .journal
            .append(RECORD_KIND_BATCH, timestamp, &self.record_body)
        {
            Ok(appended) => appended,
            Err(error) if !self.journal_failed(&error) => {
                // The log is unchanged (the journal appends all or nothing), so nothing was
                // applied: forget the requests, and their clients resend until there is room.
                tracing::error!(%error, requests = requests.len(), "journal append failed; requests not executed");
                for message in &requests {
                    let header = Header::from_prefix(message).expect("checked on receipt");
                    if let Ok(ParsedHeader::Request(request)) = header.parse() {
                        self.state.sessions.abandon_request(&request);
                    }
                }
                return Ok(None);
            }
            Err(error) => return Err(format!("journal failed: {error}")),
        };
        self.log_bytes_since_checkpoint += self.record_body.len() as u64;
        let mut replies = Vec::with_capacity(requests.len());
        let log = JournalBytes(&self.journal);
        self.state
            .apply_record(
                &log,
                body_position(&self.journal, &appended),
                self.record_body.len(),
                &mut replies,
            )
            .map_err(|error| format!("applying a record just appended failed: {error}"))?;
        assert_eq!(self.state.op, op);
        let ticket = self
            .journal
            .sync_begin()
            .map_err(|error| format!("journal sync failed: {error}"))?;
        Ok(Some(Unsynced { ticket, replies }))
    }

    /// Waits for a batch's fsync, then sends its replies.
    fn unsynced_finish(&mut self, unsynced: Option<Unsynced>) -> Result<(), String> {
        if let Some(unsynced) = unsynced {
            self.journal
                .sync_wait(unsynced.ticket)
                .map_err(|error| format!("journal sync failed: {error}"))?;
            self.replies_send(unsynced.replies);
        }
        Ok(())
    }

    /// Whether the journal can take no more appends (after a failed sync nothing written later
    /// could be trusted: fsyncgate), which ends the server.
    fn journal_failed(&self, error: &tally_journal::JournalError) -> bool {
        matches!(
            error,
            tally_journal::JournalError::Failed | tally_journal::JournalError::SyncFailed { .. }
        )
    }

    fn replies_send(&mut self, replies: Vec<Reply>) {
        for reply in replies {
            if let Some(connection) = self.connections.get(&reply.client) {
                send(connection, reply.message);
            }
        }
    }

    fn checkpoint_maybe(&mut self, force: bool) -> Result<(), String> {
        if self.log_bytes_since_checkpoint == 0
            || (!force && self.log_bytes_since_checkpoint < CHECKPOINT_INTERVAL_BYTES)
        {
            return Ok(());
        }
        let mut blob = Vec::new();
        self.state.encode_checkpoint(&mut blob);
        // A checkpoint names the journal record the state reflects (every appended record has
        // been applied), not the state's op: one record holds many entries, each an op.
        let record = self.journal.op_last();
        self.journal
            .write_checkpoint(record, &blob)
            .map_err(|error| format!("checkpoint failed: {error}"))?;
        self.log_bytes_since_checkpoint = 0;
        tracing::info!(record, op = self.state.op, bytes = blob.len(), "checkpoint");
        Ok(())
    }
}

/// The record bytes a command's entry takes (0 for what is not logged).
fn command_size(command: &CoreCommand) -> usize {
    match command {
        CoreCommand::Message { message, .. } => {
            (ENTRY_HEADER_SIZE + message.len()).next_multiple_of(crate::entry::ENTRY_ALIGNMENT)
        }
        CoreCommand::Shutdown => 0,
    }
}

/// How many timestamps a request consumes beyond its base: its events, for creates.
fn request_event_count(message: &[u8]) -> u64 {
    let operation = Operation::from_u8(message[crate::OPERATION_OFFSET]);
    match operation {
        Some(Operation::CreateAccounts | Operation::CreateTransfers) => {
            let size = 128;
            decode_multi_batch(&message[HEADER_SIZE..], size)
                .map(|batches| (batches.payload().len() / size) as u64)
                .unwrap_or(0)
        }
        _ => 0,
    }
}

/// Sends without waiting: a client that does not read its replies loses them and resends, which
/// the protocol makes safe; the core never blocks on a connection.
fn send(connection: &Connection, message: Vec<u8>) {
    if connection.outbox.try_send(message).is_err() {
        tracing::debug!(
            connection = connection.id,
            "outbox full or closed; message dropped"
        );
    }
}

pub fn realtime_ns() -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970");
    u64::try_from(now.as_nanos()).expect("clock before 2554")
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Pulses reserve timestamps above their base (`State::apply_pulse`).
pub const PULSE_TIMESTAMPS: u64 = PULSE_EVENTS_MAX as u64;
