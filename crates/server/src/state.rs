//! The server's deterministic state: the ledger, the client sessions, the op and timestamp
//! counters, and where in the log each `create_transfers` batch's events are.
//!
//! `State::apply_record` is the only way the state changes, live and on replay alike: the core
//! thread appends a record to the journal and then applies it from the journal's bytes, and
//! recovery applies the same records in the same order. Nothing here reads a clock or does I/O
//! (the log is read through `LogBytes`, which the journal's memory map backs).

use tally_ledger::{
    Account, AccountBalance, AccountFilter, Ledger, QueryFilter, Record, StoredEvent, Transfer,
    TransferStore, PULSE_EVENTS_MAX,
};
use tally_wire::{
    decode_multi_batch, encode_register_reply, encode_reply, Header, MultiBatchEncoder, Operation,
    ParsedHeader, ReplyParams, RequestHeader, SessionConfig, SessionTable, HEADER_SIZE,
    MESSAGE_BODY_SIZE_MAX,
};

use crate::entry::{entry_offsets, EntryError, EntryHeader, EntryKind, ENTRY_HEADER_SIZE};

/// Read access to bytes already appended to the log, by global position.
pub trait LogBytes {
    fn bytes(&self, position: u64, size: usize) -> &[u8];
}

/// Where one `create_transfers` batch's events are in the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct TransferBatch {
    first_handle: u64,
    /// Log position of the first event.
    position: u64,
    count: u32,
    /// The batch's timestamp (its highest).
    timestamp: u64,
}

/// Handle → log position, for the ledger's `TransferStore`. One entry per batch, so a full
/// batch costs 32 bytes for 8,189 transfers.
#[derive(Default)]
pub struct TransferLocations {
    batches: Vec<TransferBatch>,
}

impl TransferLocations {
    fn event_count(&self) -> u64 {
        self.batches
            .last()
            .map_or(0, |batch| batch.first_handle + u64::from(batch.count))
    }

    fn batch_of(&self, handle: u64) -> &TransferBatch {
        let index = self
            .batches
            .partition_point(|batch| batch.first_handle <= handle)
            - 1;
        let batch = &self.batches[index];
        assert!(handle < batch.first_handle + u64::from(batch.count));
        batch
    }
}

/// The ledger's view of transfer bodies: events in the log.
pub struct LogTransfers<'a, L: LogBytes> {
    pub log: &'a L,
    locations: &'a TransferLocations,
}

impl<L: LogBytes> TransferStore for LogTransfers<'_, L> {
    fn event_count(&self) -> u64 {
        self.locations.event_count()
    }

    fn event(&self, handle: u64) -> StoredEvent {
        let batch = self.locations.batch_of(handle);
        let index = handle - batch.first_handle;
        let position = batch.position + index * Transfer::SIZE as u64;
        let event = Transfer::read_from(self.log.bytes(position, Transfer::SIZE));
        let timestamp = tally_ledger::event_timestamp(
            &event,
            batch.timestamp,
            batch.count as usize,
            index as usize,
        );
        StoredEvent { event, timestamp }
    }

    fn prefetch(&self, handle: u64) {
        // Events live in the mapped log; a guessed handle may not exist yet, so check first.
        if handle < self.locations.event_count() {
            let batch = self.locations.batch_of(handle);
            let position = batch.position + (handle - batch.first_handle) * Transfer::SIZE as u64;
            tally_ledger::prefetch_address(self.log.bytes(position, Transfer::SIZE).as_ptr());
        }
    }

    fn event_id(&self, handle: u64) -> u128 {
        let batch = self.locations.batch_of(handle);
        let position = batch.position + (handle - batch.first_handle) * Transfer::SIZE as u64;
        u128::from_le_bytes(self.log.bytes(position, 16).try_into().expect("16 bytes"))
    }
}

/// A reply produced by applying a request: to whom, and the whole message.
pub struct Reply {
    pub client: u128,
    pub message: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("record at log position {position}: {error}")]
    Entry { position: u64, error: EntryError },
    #[error("entry op {found} at log position {position}, expected {expected}")]
    Op {
        position: u64,
        expected: u64,
        found: u64,
    },
    #[error("entry timestamp {found} at log position {position} is not above {last}")]
    Timestamp {
        position: u64,
        last: u64,
        found: u64,
    },
    #[error("request at log position {position} is not a valid request: {reason}")]
    Request { position: u64, reason: String },
}

/// The most results of 128 bytes one reply batch carries (wire spec §5.5).
const RESULTS_128_MAX: u32 = ((MESSAGE_BODY_SIZE_MAX - 128) / 128) as u32;

pub struct State {
    pub cluster: u128,
    pub ledger: Ledger,
    pub sessions: SessionTable,
    /// The op of the last applied entry; session numbers are ops.
    pub op: u64,
    /// The highest timestamp used.
    pub timestamp: u64,
    locations: TransferLocations,
}

impl State {
    pub fn new(cluster: u128, session_config: SessionConfig) -> State {
        State {
            cluster,
            ledger: Ledger::new(),
            sessions: SessionTable::new(session_config),
            op: 0,
            timestamp: 0,
            locations: TransferLocations::default(),
        }
    }

    /// Sizes the ledger's transfer index for `additional` more transfers (see
    /// `Ledger::reserve_transfers`).
    pub fn reserve_transfers<L: LogBytes>(&mut self, log: &L, additional: usize) {
        let store = LogTransfers {
            log,
            locations: &self.locations,
        };
        self.ledger.reserve_transfers(&store, additional);
    }

    pub fn transfers<'a, L: LogBytes>(&'a self, log: &'a L) -> LogTransfers<'a, L> {
        LogTransfers {
            log,
            locations: &self.locations,
        }
    }

    /// Applies every entry of the record whose body starts at `body_position` in the log.
    /// Replies to requests are appended to `replies`.
    pub fn apply_record<L: LogBytes>(
        &mut self,
        log: &L,
        body_position: u64,
        body_size: usize,
        replies: &mut Vec<Reply>,
    ) -> Result<(), ApplyError> {
        let body = log.bytes(body_position, body_size);
        let entries = entry_offsets(body).map_err(|error| ApplyError::Entry {
            position: body_position,
            error,
        })?;
        for (offset, entry) in entries {
            let position = body_position + offset as u64;
            self.entry_check(position, &entry)?;
            match entry.kind {
                EntryKind::Pulse => self.apply_pulse(log, &entry),
                EntryKind::Request => {
                    let message_position = position + ENTRY_HEADER_SIZE as u64;
                    let reply = self.apply_request(log, message_position, &entry)?;
                    replies.push(reply);
                }
            }
        }
        Ok(())
    }

    fn entry_check(&self, position: u64, entry: &EntryHeader) -> Result<(), ApplyError> {
        if entry.op != self.op + 1 {
            return Err(ApplyError::Op {
                position,
                expected: self.op + 1,
                found: entry.op,
            });
        }
        if entry.timestamp <= self.timestamp {
            return Err(ApplyError::Timestamp {
                position,
                last: self.timestamp,
                found: entry.timestamp,
            });
        }
        Ok(())
    }

    fn apply_pulse<L: LogBytes>(&mut self, log: &L, entry: &EntryHeader) {
        let timestamp = entry.timestamp + PULSE_EVENTS_MAX as u64;
        let store = LogTransfers {
            log,
            locations: &self.locations,
        };
        self.ledger.expire_pending_transfers(&store, timestamp);
        self.op = entry.op;
        self.timestamp = timestamp;
    }

    fn apply_request<L: LogBytes>(
        &mut self,
        log: &L,
        message_position: u64,
        entry: &EntryHeader,
    ) -> Result<Reply, ApplyError> {
        let message = log.bytes(message_position, entry.message_size as usize);
        let request = parse_request(message).map_err(|reason| ApplyError::Request {
            position: message_position,
            reason,
        })?;
        let operation =
            Operation::from_u8(request.operation).ok_or_else(|| ApplyError::Request {
                position: message_position,
                reason: format!("operation {}", request.operation),
            })?;
        let body_position = message_position + HEADER_SIZE as u64;
        let body = &message[HEADER_SIZE..];
        let (reply_body, timestamp) = match operation {
            Operation::Register => (None, entry.timestamp),
            _ => {
                let (body, timestamp) =
                    self.execute(log, operation, body_position, body, entry.timestamp)?;
                (Some(body), timestamp)
            }
        };
        self.op = entry.op;
        self.timestamp = timestamp;
        let params = ReplyParams {
            cluster: self.cluster,
            view: self.sessions.config().view,
            release: request.release,
            request_checksum: request.checksum,
            client: request.client,
            op: entry.op,
            timestamp,
            request: request.request,
            operation: request.operation,
        };
        let message = match reply_body {
            None => {
                let reply = encode_register_reply(&params, self.sessions.config().batch_size_limit);
                self.sessions.commit_register(
                    request.client,
                    request.release,
                    request.checksum,
                    entry.op,
                    reply.clone(),
                );
                reply
            }
            Some(body) => {
                let reply = encode_reply(&params, &body);
                // A register in the same batch may have evicted this session; the client then
                // still gets this reply, and `no_session` at its next request.
                self.sessions.commit_request(
                    request.client,
                    request.request,
                    request.checksum,
                    entry.op,
                    reply.clone(),
                );
                reply
            }
        };
        Ok(Reply {
            client: request.client,
            message,
        })
    }

    /// Executes a multi-batch request body; returns the reply body and the reply timestamp.
    fn execute<L: LogBytes>(
        &mut self,
        log: &L,
        operation: Operation,
        body_position: u64,
        body: &[u8],
        timestamp_base: u64,
    ) -> Result<(Vec<u8>, u64), ApplyError> {
        let invalid = |reason: String| ApplyError::Request {
            position: body_position,
            reason,
        };
        if operation == Operation::GetChangeEvents {
            // Change events (CDC) are not kept (docs/server.md): an empty reply.
            return Ok((Vec::new(), timestamp_base));
        }
        let event_size = operation
            .event_size()
            .ok_or_else(|| invalid(format!("{operation:?}")))?;
        let result_size = operation
            .result_size()
            .ok_or_else(|| invalid(format!("{operation:?}")))?;
        let batches =
            decode_multi_batch(body, event_size).map_err(|error| invalid(error.to_string()))?;
        let mut encoder = MultiBatchEncoder::new(result_size);
        let mut timestamp = timestamp_base;
        let mut results = Vec::new();
        for batch in batches.batches() {
            results.clear();
            let batch_position =
                body_position + (batch.as_ptr() as usize - body.as_ptr() as usize) as u64;
            match operation {
                Operation::CreateAccounts => {
                    let events = records::<Account>(batch);
                    timestamp += events.len() as u64;
                    let mut created = Vec::with_capacity(events.len());
                    let store = LogTransfers {
                        log,
                        locations: &self.locations,
                    };
                    self.ledger
                        .create_accounts(&store, timestamp, &events, &mut created);
                    created
                        .iter()
                        .for_each(|result| results.extend_from_slice(&result.to_bytes()));
                }
                Operation::CreateTransfers => {
                    let events = records::<Transfer>(batch);
                    timestamp += events.len() as u64;
                    let first_handle = self.ledger.transfer_handle_next();
                    if !events.is_empty() {
                        self.locations.batches.push(TransferBatch {
                            first_handle,
                            position: batch_position,
                            count: events.len() as u32,
                            timestamp,
                        });
                    }
                    let mut created = Vec::with_capacity(events.len());
                    let store = LogTransfers {
                        log,
                        locations: &self.locations,
                    };
                    self.ledger.create_transfers(
                        &store,
                        timestamp,
                        first_handle,
                        &events,
                        &mut created,
                    );
                    created
                        .iter()
                        .for_each(|result| results.extend_from_slice(&result.to_bytes()));
                }
                _ => self.read(log, operation, batch, &mut results),
            }
            encoder
                .push_batch(&results)
                .map_err(|error| invalid(error.to_string()))?;
        }
        Ok((encoder.finish(), timestamp))
    }

    fn read<L: LogBytes>(
        &self,
        log: &L,
        operation: Operation,
        batch: &[u8],
        results: &mut Vec<u8>,
    ) {
        let store = LogTransfers {
            log,
            locations: &self.locations,
        };
        let ids = || {
            batch
                .chunks_exact(16)
                .map(|id| u128::from_le_bytes(id.try_into().expect("16 bytes")))
        };
        match operation {
            Operation::LookupAccounts => {
                let mut found = Vec::new();
                self.ledger
                    .lookup_accounts(&ids().collect::<Vec<_>>(), &mut found);
                results.extend_from_slice(Account::slice_as_bytes(&found));
            }
            Operation::LookupTransfers => {
                let mut found = Vec::new();
                self.ledger
                    .lookup_transfers(&store, &ids().collect::<Vec<_>>(), &mut found);
                results.extend_from_slice(Transfer::slice_as_bytes(&found));
            }
            Operation::GetAccountTransfers => {
                let mut found = Vec::new();
                for filter in batch
                    .chunks_exact(AccountFilter::SIZE)
                    .map(AccountFilter::read_from)
                {
                    self.ledger
                        .get_account_transfers(&store, &filter, RESULTS_128_MAX, &mut found);
                }
                results.extend_from_slice(Transfer::slice_as_bytes(&found));
            }
            Operation::GetAccountBalances => {
                let mut found = Vec::new();
                for filter in batch
                    .chunks_exact(AccountFilter::SIZE)
                    .map(AccountFilter::read_from)
                {
                    self.ledger
                        .get_account_balances(&store, &filter, RESULTS_128_MAX, &mut found);
                }
                results.extend_from_slice(AccountBalance::slice_as_bytes(&found));
            }
            Operation::QueryAccounts => {
                let mut found = Vec::new();
                for filter in batch
                    .chunks_exact(QueryFilter::SIZE)
                    .map(QueryFilter::read_from)
                {
                    self.ledger
                        .query_accounts(&filter, RESULTS_128_MAX, &mut found);
                }
                results.extend_from_slice(Account::slice_as_bytes(&found));
            }
            Operation::QueryTransfers => {
                let mut found = Vec::new();
                for filter in batch
                    .chunks_exact(QueryFilter::SIZE)
                    .map(QueryFilter::read_from)
                {
                    self.ledger
                        .query_transfers(&store, &filter, RESULTS_128_MAX, &mut found);
                }
                results.extend_from_slice(Transfer::slice_as_bytes(&found));
            }
            other => unreachable!("{other:?} passed body validation but is not executable"),
        }
    }

    /// A SHA-256 over the ledger's digest, the sessions and the counters.
    pub fn digest<L: LogBytes>(&self, log: &L) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        let mut hasher = Sha256::new();
        hasher.update(self.ledger.digest(&self.transfers(log)));
        let mut sessions = Vec::new();
        self.sessions.encode(&mut sessions);
        hasher.update(&sessions);
        hasher.update(self.op.to_le_bytes());
        hasher.update(self.timestamp.to_le_bytes());
        hasher.finalize().into()
    }

    pub fn encode_checkpoint(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(CHECKPOINT_MAGIC);
        out.extend_from_slice(&self.cluster.to_le_bytes());
        out.extend_from_slice(&self.op.to_le_bytes());
        out.extend_from_slice(&self.timestamp.to_le_bytes());
        out.extend_from_slice(&(self.locations.batches.len() as u64).to_le_bytes());
        for batch in &self.locations.batches {
            out.extend_from_slice(&batch.first_handle.to_le_bytes());
            out.extend_from_slice(&batch.position.to_le_bytes());
            out.extend_from_slice(&u64::from(batch.count).to_le_bytes());
            out.extend_from_slice(&batch.timestamp.to_le_bytes());
        }
        let mut sessions = Vec::new();
        self.sessions.encode(&mut sessions);
        out.extend_from_slice(&(sessions.len() as u64).to_le_bytes());
        out.extend_from_slice(&sessions);
        self.ledger.encode_checkpoint(out);
    }

    pub fn decode_checkpoint(bytes: &[u8], session_config: SessionConfig) -> Result<State, String> {
        let mut offset = 0;
        let mut take = |size: usize| -> Result<&[u8], String> {
            let taken = bytes
                .get(offset..offset + size)
                .ok_or("checkpoint truncated")?;
            offset += size;
            Ok(taken)
        };
        if take(CHECKPOINT_MAGIC.len())? != CHECKPOINT_MAGIC {
            return Err("not a server checkpoint".into());
        }
        let u64_of = |bytes: &[u8]| u64::from_le_bytes(bytes.try_into().expect("8 bytes"));
        let cluster = u128::from_le_bytes(take(16)?.try_into().expect("16 bytes"));
        let op = u64_of(take(8)?);
        let timestamp = u64_of(take(8)?);
        let batch_count = u64_of(take(8)?) as usize;
        let mut locations = TransferLocations::default();
        for _ in 0..batch_count.min(bytes.len() / 32) {
            let batch = TransferBatch {
                first_handle: u64_of(take(8)?),
                position: u64_of(take(8)?),
                count: u32::try_from(u64_of(take(8)?)).map_err(|_| "batch count")?,
                timestamp: u64_of(take(8)?),
            };
            let expected_first = locations.event_count();
            if batch.first_handle < expected_first {
                return Err("transfer batches out of order".into());
            }
            locations.batches.push(batch);
        }
        if locations.batches.len() != batch_count {
            return Err("checkpoint truncated".into());
        }
        let sessions_size = u64_of(take(8)?) as usize;
        let sessions = SessionTable::decode(take(sessions_size)?, session_config)
            .map_err(|e| format!("{e:?}"))?;
        let ledger = Ledger::decode_checkpoint(&bytes[offset..]).map_err(|e| e.to_string())?;
        if ledger.transfer_handle_next() < locations.event_count() {
            return Err("transfer locations beyond the ledger's handles".into());
        }
        Ok(State {
            cluster,
            ledger,
            sessions,
            op,
            timestamp,
            locations,
        })
    }
}

const CHECKPOINT_MAGIC: &[u8; 8] = b"TLYSRV01";

/// The request header of a logged message; the log holds only requests that passed every check.
fn parse_request(message: &[u8]) -> Result<RequestHeader, String> {
    let header = Header::from_prefix(message).ok_or("message shorter than a header")?;
    match header.parse() {
        Ok(ParsedHeader::Request(request)) if request.size as usize == message.len() => Ok(request),
        Ok(_) => Err("not a request of its own size".into()),
        Err(error) => Err(format!("{error:?}")),
    }
}

/// Events of a batch, in place when aligned (always, for bodies in the log), else copied.
fn records<R: Record>(batch: &[u8]) -> std::borrow::Cow<'_, [R]>
where
    [R]: ToOwned<Owned = Vec<R>>,
{
    match R::slice_from(batch) {
        Some(events) => std::borrow::Cow::Borrowed(events),
        None => std::borrow::Cow::Owned(batch.chunks_exact(R::SIZE).map(R::read_from).collect()),
    }
}
