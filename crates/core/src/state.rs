//! The server's deterministic state: the ledger, the client sessions, the payments domain, the
//! op and timestamp counters, and where each transfer body is.
//!
//! `State::apply_record` is the only way the state changes, live and on replay alike: the core
//! thread appends a record to the journal and then applies it from the journal's bytes, and
//! recovery applies the same records in the same order. Each entry decodes into one `Command`,
//! dispatched once, to one `execute_<operation>` per operation (TigerBeetle's
//! `state_machine.zig` shape). Nothing here reads a clock or does I/O (the log is read through
//! `LogBytes`, which the journal's memory map backs).

use std::collections::HashMap;

use tally_ledger::{Account, AccountBalance, AccountFilter, Ledger, QueryFilter, Record, Transfer};
use tally_payments::{Outcome, Payments};
use tally_wire::{
    decode_multi_batch_aligned, encode_register_reply, encode_reply, MultiBatchEncoder,
    ReplyParams, RequestHeader, SessionConfig, SessionTable, MESSAGE_BODY_SIZE_MAX,
};

use crate::command::{
    admin_decode, BatchOperation, Command, Request, RequestInvalid, StateOperation,
};
use crate::entry::{entry_offsets, EntryError, EntryHeader, EntryKind, ENTRY_HEADER_SIZE};
use crate::storage::LogBytes;
use crate::transfers::{DomainLedger, LogTransfers, TransferLocations};

/// A reply produced by applying an entry, in entry order.
#[derive(Debug)]
pub enum Reply {
    /// To a TigerBeetle client: the whole reply message.
    Native {
        /// The client it goes to.
        client: u128,
        /// Header and body.
        message: Vec<u8>,
    },
    /// The outcome of an admin command.
    Admin(Outcome),
}

/// A record that cannot be applied: the log holds something the state did not write.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The entries do not parse.
    #[error("record at log position {position}: {error}")]
    Entry {
        /// Log position of the record body.
        position: u64,
        /// What is wrong.
        error: EntryError,
    },
    /// An entry's op is not the next one.
    #[error("entry op {found} at log position {position}, expected {expected}")]
    Op {
        /// Log position of the entry.
        position: u64,
        /// The next op.
        expected: u64,
        /// The op the entry has.
        found: u64,
    },
    /// An entry's timestamp does not advance.
    #[error("entry timestamp {found} at log position {position} is not above {last}")]
    Timestamp {
        /// Log position of the entry.
        position: u64,
        /// The state's timestamp.
        last: u64,
        /// The entry's.
        found: u64,
    },
    /// A request entry holds no executable request.
    #[error("request at log position {position} is not a valid request: {reason}")]
    Request {
        /// Log position of the message.
        position: u64,
        /// Why.
        reason: RequestInvalid,
    },
    /// A request body that passed validation on receipt does not decode.
    #[error("request body at log position {position} does not decode: {reason}")]
    Body {
        /// Log position of the body.
        position: u64,
        /// The wire crate's reason.
        reason: String,
    },
    /// An admin entry does not decode.
    #[error("admin command at log position {position} does not decode: {error}")]
    Admin {
        /// Log position of the command.
        position: u64,
        /// The decoder's error.
        error: postcard::Error,
    },
}

/// How a record is applied.
#[derive(Clone, Copy)]
pub enum ApplyMode<'a> {
    /// Serving: every command runs and every reply is built. The record's request headers,
    /// in entry order, were parsed on receipt and are not parsed again.
    Live {
        /// The headers of the record's request entries.
        requests: &'a [RequestHeader],
    },
    /// Recovering: a read whose client sent a later request in the replayed log is not run,
    /// since its reply (the read's only effect) is replaced before anyone can see it. This is
    /// what keeps a replayed read as cheap as rebuilding its session needs.
    Replay {
        /// Each client's last request op in the log being replayed.
        last_request_op: &'a HashMap<u128, u64>,
    },
}

/// The most results of 128 bytes one reply batch carries (wire spec §5.5).
const RESULTS_128_MAX: u32 = ((MESSAGE_BODY_SIZE_MAX - 128) / 128) as u32;

/// Everything replay rebuilds.
pub struct State {
    /// The cluster id the data directory was formatted with.
    pub cluster: u128,
    /// Accounts and transfers.
    pub ledger: Ledger,
    /// TigerBeetle client sessions and their last replies.
    pub sessions: SessionTable,
    /// The Rafiki domain.
    pub payments: Payments,
    /// The op of the last applied entry; session numbers are ops.
    pub op: u64,
    /// The highest timestamp used.
    pub timestamp: u64,
    pub(crate) locations: TransferLocations,
}

impl State {
    /// The empty state of a freshly formatted data directory.
    pub fn new(cluster: u128, session_config: SessionConfig) -> State {
        State {
            cluster,
            ledger: Ledger::new(),
            sessions: SessionTable::new(session_config),
            payments: Payments::default(),
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

    /// The ledger's store of transfer bodies.
    pub fn transfers<'a, L: LogBytes>(&'a self, log: &'a L) -> LogTransfers<'a, L> {
        LogTransfers {
            log,
            locations: &self.locations,
        }
    }

    /// Applies every entry of the record whose body starts at `body_position` in the log;
    /// appends one reply per request and admin command to `replies`, in entry order.
    pub fn apply_record<L: LogBytes>(
        &mut self,
        log: &L,
        body_position: u64,
        body_size: usize,
        mode: ApplyMode<'_>,
        replies: &mut Vec<Reply>,
    ) -> Result<(), ApplyError> {
        let body = log.bytes(body_position, body_size);
        let entries = entry_offsets(body).map_err(|error| ApplyError::Entry {
            position: body_position,
            error,
        })?;
        let mut requests_received = match mode {
            ApplyMode::Live { requests } => Some(requests.iter()),
            ApplyMode::Replay { .. } => None,
        };
        for (offset, entry) in entries {
            let position = body_position + offset as u64;
            self.entry_check(position, &entry)?;
            let message_position = position + ENTRY_HEADER_SIZE as u64;
            let message = log.bytes(message_position, entry.message_size as usize);
            let received = match (&mut requests_received, entry.kind) {
                (Some(requests), EntryKind::Request | EntryKind::RequestCompact) => Some(
                    *requests
                        .next()
                        .expect("one received header per request entry"),
                ),
                _ => None,
            };
            let command = command_decode(&entry, message, message_position, received)?;
            let timestamp_end = entry.timestamp + command.timestamps_reserved();
            match command {
                Command::Request(request) => {
                    if let Some(reply) =
                        self.execute_request(log, message_position, &entry, &request, mode)?
                    {
                        replies.push(reply);
                    }
                }
                Command::Pulse => self.execute_pulse(log, timestamp_end),
                Command::Admin(admin) => {
                    let outcome = self.execute_admin(log, &admin, entry.timestamp, timestamp_end);
                    replies.push(Reply::Admin(outcome));
                }
            }
            // Pair with `entry_check`: the entry consumed exactly one op and its reservation.
            self.op = entry.op;
            self.timestamp = timestamp_end;
            assert!(self.ledger_timestamp_within(timestamp_end));
        }
        if let Some(mut requests) = requests_received {
            assert!(
                requests.next().is_none(),
                "every received header was applied"
            );
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

    /// Whether the ledger used no timestamp beyond what the entries reserved.
    fn ledger_timestamp_within(&self, timestamp_end: u64) -> bool {
        self.locations
            .batches
            .last()
            .is_none_or(|batch| batch.timestamp <= timestamp_end)
    }

    fn execute_pulse<L: LogBytes>(&mut self, log: &L, timestamp: u64) {
        let store = LogTransfers {
            log,
            locations: &self.locations,
        };
        self.ledger.expire_pending_transfers(&store, timestamp);
        self.payments
            .pulse(&LedgerAccounts(&self.ledger), timestamp);
    }

    /// Whether a pulse at core time `timestamp` has work: pending transfers or incoming
    /// payments past their deadline.
    pub fn pulse_needed(&self, timestamp: u64) -> bool {
        self.ledger.pulse_needed(timestamp)
            || self
                .payments
                .deadline()
                .is_some_and(|deadline| deadline <= timestamp)
    }

    fn execute_admin<L: LogBytes>(
        &mut self,
        log: &L,
        command: &tally_payments::Command,
        timestamp: u64,
        timestamp_end: u64,
    ) -> Outcome {
        let mut port = DomainLedger {
            ledger: &mut self.ledger,
            locations: &mut self.locations,
            log,
            timestamp,
            timestamp_max: timestamp_end,
        };
        self.payments.execute(&mut port, command, timestamp)
    }

    /// Runs a request and commits its reply to the client's session; `None` when a replayed
    /// read is skipped (`ApplyMode::Replay`).
    fn execute_request<L: LogBytes>(
        &mut self,
        log: &L,
        message_position: u64,
        entry: &EntryHeader,
        request: &Request<'_>,
        mode: ApplyMode<'_>,
    ) -> Result<Option<Reply>, ApplyError> {
        let header = request;
        let params = ReplyParams {
            cluster: self.cluster,
            view: self.sessions.config().view,
            release: header.release,
            request_checksum: header.checksum,
            client: header.client,
            op: entry.op,
            timestamp: entry.timestamp + Command::Request(*request).timestamps_reserved(),
            request: header.request,
            operation: header.operation_wire,
        };
        let operation = match request.operation {
            StateOperation::Register => {
                let reply = encode_register_reply(&params, self.sessions.config().batch_size_limit);
                self.sessions.commit_register(
                    header.client,
                    header.release,
                    header.checksum,
                    entry.op,
                    reply.clone(),
                );
                return Ok(Some(Reply::Native {
                    client: header.client,
                    message: reply,
                }));
            }
            StateOperation::GetChangeEvents => None,
            StateOperation::Batch(operation) => Some(operation),
        };
        if let ApplyMode::Replay { last_request_op } = mode {
            let superseded = last_request_op
                .get(&header.client)
                .is_some_and(|last| *last > entry.op);
            if request.operation.is_read() && superseded {
                // The stored reply is replaced by the client's later request before any
                // resend could ask for it, so an empty one stands in; the session's counters
                // advance as they did live.
                self.sessions.commit_request(
                    header.client,
                    header.request,
                    header.checksum,
                    entry.op,
                    encode_reply(&params, &[]),
                );
                return Ok(None);
            }
        }
        let body = match operation {
            // Change events (CDC) are not kept (docs/server.md): an empty reply.
            None => Vec::new(),
            Some(operation) => {
                let body_position = message_position + request.body_offset() as u64;
                self.execute_batches(log, operation, body_position, request, entry.timestamp)?
            }
        };
        let reply = encode_reply(&params, &body);
        // A register in the same batch may have evicted this session; the client then still
        // gets this reply, and `no_session` at its next request.
        self.sessions.commit_request(
            header.client,
            header.request,
            header.checksum,
            entry.op,
            reply.clone(),
        );
        Ok(Some(Reply::Native {
            client: header.client,
            message: reply,
        }))
    }

    /// Executes a multi-batch request body; returns the reply body.
    fn execute_batches<L: LogBytes>(
        &mut self,
        log: &L,
        operation: BatchOperation,
        body_position: u64,
        request: &Request<'_>,
        timestamp_base: u64,
    ) -> Result<Vec<u8>, ApplyError> {
        let body = request.body();
        let invalid = |reason: String| ApplyError::Body {
            position: body_position,
            reason,
        };
        let wire = operation.operation();
        let event_size = wire
            .event_size()
            .expect("batch operations have an event size");
        let result_size = wire
            .result_size()
            .expect("batch operations have a result size");
        let batches = decode_multi_batch_aligned(body, event_size, request.trailer_alignment())
            .map_err(|error| invalid(error.to_string()))?;
        let mut encoder = MultiBatchEncoder::new(result_size);
        let mut timestamp = timestamp_base;
        let mut results = Vec::new();
        for batch in batches.batches() {
            results.clear();
            let batch_position =
                body_position + (batch.as_ptr() as usize - body.as_ptr() as usize) as u64;
            timestamp += operation.creates_events() * (batch.len() / event_size) as u64;
            match operation {
                BatchOperation::CreateAccounts => {
                    self.execute_create_accounts(log, batch, timestamp, &mut results)
                }
                BatchOperation::CreateTransfers => self.execute_create_transfers(
                    log,
                    batch,
                    batch_position,
                    timestamp,
                    &mut results,
                ),
                BatchOperation::LookupAccounts => self.execute_lookup_accounts(batch, &mut results),
                BatchOperation::LookupTransfers => {
                    self.execute_lookup_transfers(log, batch, &mut results)
                }
                BatchOperation::GetAccountTransfers => {
                    self.execute_get_account_transfers(log, batch, &mut results)
                }
                BatchOperation::GetAccountBalances => {
                    self.execute_get_account_balances(log, batch, &mut results)
                }
                BatchOperation::QueryAccounts => self.execute_query_accounts(batch, &mut results),
                BatchOperation::QueryTransfers => {
                    self.execute_query_transfers(log, batch, &mut results)
                }
            }
            encoder
                .push_batch(&results)
                .map_err(|error| invalid(error.to_string()))?;
        }
        Ok(encoder.finish())
    }

    fn execute_create_accounts<L: LogBytes>(
        &mut self,
        log: &L,
        batch: &[u8],
        timestamp: u64,
        results: &mut Vec<u8>,
    ) {
        let events = records::<Account>(batch);
        let mut created = Vec::with_capacity(events.len());
        let store = LogTransfers {
            log,
            locations: &self.locations,
        };
        self.ledger
            .create_accounts(&store, timestamp, &events, &mut created);
        assert_eq!(created.len(), events.len());
        created
            .iter()
            .for_each(|result| results.extend_from_slice(&result.to_bytes()));
    }

    fn execute_create_transfers<L: LogBytes>(
        &mut self,
        log: &L,
        batch: &[u8],
        batch_position: u64,
        timestamp: u64,
        results: &mut Vec<u8>,
    ) {
        let events = records::<Transfer>(batch);
        let first_handle = self.ledger.transfer_handle_next();
        if !events.is_empty() {
            // Write-ahead: the events are in the log already; the ledger reads them there.
            self.locations.push_logged(
                first_handle,
                batch_position,
                u32::try_from(events.len()).expect("a batch holds at most 8,190 events"),
                timestamp,
            );
        }
        let mut created = Vec::with_capacity(events.len());
        let store = LogTransfers {
            log,
            locations: &self.locations,
        };
        self.ledger
            .create_transfers(&store, timestamp, first_handle, &events, &mut created);
        assert_eq!(created.len(), events.len());
        created
            .iter()
            .for_each(|result| results.extend_from_slice(&result.to_bytes()));
    }

    fn execute_lookup_accounts(&self, batch: &[u8], results: &mut Vec<u8>) {
        let mut found = Vec::new();
        self.ledger.lookup_accounts(&ids(batch), &mut found);
        results.extend_from_slice(Account::slice_as_bytes(&found));
    }

    fn execute_lookup_transfers<L: LogBytes>(&self, log: &L, batch: &[u8], results: &mut Vec<u8>) {
        let mut found = Vec::new();
        self.ledger
            .lookup_transfers(&self.transfers(log), &ids(batch), &mut found);
        results.extend_from_slice(Transfer::slice_as_bytes(&found));
    }

    fn execute_get_account_transfers<L: LogBytes>(
        &self,
        log: &L,
        batch: &[u8],
        results: &mut Vec<u8>,
    ) {
        let mut found = Vec::new();
        for filter in filters::<AccountFilter>(batch) {
            self.ledger.get_account_transfers(
                &self.transfers(log),
                &filter,
                RESULTS_128_MAX,
                &mut found,
            );
        }
        results.extend_from_slice(Transfer::slice_as_bytes(&found));
    }

    fn execute_get_account_balances<L: LogBytes>(
        &self,
        log: &L,
        batch: &[u8],
        results: &mut Vec<u8>,
    ) {
        let mut found = Vec::new();
        for filter in filters::<AccountFilter>(batch) {
            self.ledger.get_account_balances(
                &self.transfers(log),
                &filter,
                RESULTS_128_MAX,
                &mut found,
            );
        }
        results.extend_from_slice(AccountBalance::slice_as_bytes(&found));
    }

    fn execute_query_accounts(&self, batch: &[u8], results: &mut Vec<u8>) {
        let mut found = Vec::new();
        for filter in filters::<QueryFilter>(batch) {
            self.ledger
                .query_accounts(&filter, RESULTS_128_MAX, &mut found);
        }
        results.extend_from_slice(Account::slice_as_bytes(&found));
    }

    fn execute_query_transfers<L: LogBytes>(&self, log: &L, batch: &[u8], results: &mut Vec<u8>) {
        let mut found = Vec::new();
        for filter in filters::<QueryFilter>(batch) {
            self.ledger
                .query_transfers(&self.transfers(log), &filter, RESULTS_128_MAX, &mut found);
        }
        results.extend_from_slice(Transfer::slice_as_bytes(&found));
    }

    /// A SHA-256 over the ledger's digest, the sessions, the counters and, once it holds
    /// anything, the payments domain (so that data from before the Admin API keeps its digest).
    pub fn digest<L: LogBytes>(&self, log: &L) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        let mut hasher = Sha256::new();
        hasher.update(self.ledger.digest(&self.transfers(log)));
        let mut sessions = Vec::new();
        self.sessions.encode(&mut sessions);
        hasher.update(&sessions);
        hasher.update(self.op.to_le_bytes());
        hasher.update(self.timestamp.to_le_bytes());
        if !self.payments.is_empty() {
            let mut payments = Vec::new();
            self.payments.encode_checkpoint(&mut payments);
            hasher.update(&payments);
        }
        hasher.finalize().into()
    }
}

/// Decodes one entry's message into its command.
/// `received`: the request's header as parsed on receipt (live), else it is parsed here.
fn command_decode<'a>(
    entry: &EntryHeader,
    message: &'a [u8],
    message_position: u64,
    received: Option<RequestHeader>,
) -> Result<Command<'a>, ApplyError> {
    let request_invalid = |reason| ApplyError::Request {
        position: message_position,
        reason,
    };
    // Pair with receipt: the logged request is the one whose header was parsed (both forms
    // start with the header's checksum).
    let received_check = |request: Request<'a>| {
        if let Some(header) = received {
            assert_eq!(request.checksum, header.checksum);
            assert_eq!(request.client, header.client);
            assert_eq!(request.request, header.request);
        }
        request
    };
    match entry.kind {
        EntryKind::Request => match received {
            Some(header) => Request::from_header(header, message),
            None => Request::parse(message),
        }
        .map(received_check)
        .map(Command::Request)
        .map_err(request_invalid),
        EntryKind::RequestCompact => Request::parse_compact(message)
            .map(received_check)
            .map(Command::Request)
            .map_err(request_invalid),
        EntryKind::Pulse => Ok(Command::Pulse),
        EntryKind::Admin => admin_decode(message)
            .map(|command| Command::Admin(Box::new(command)))
            .map_err(|error| ApplyError::Admin {
                position: message_position,
                error,
            }),
    }
}

/// The filters of a filter batch (each batch of a filter operation holds one).
fn filters<F: Record>(batch: &[u8]) -> impl Iterator<Item = F> + '_ {
    batch.chunks_exact(F::SIZE).map(F::read_from)
}

/// The 16-byte ids of a lookup batch.
fn ids(batch: &[u8]) -> Vec<u128> {
    batch
        .chunks_exact(16)
        .map(|id| u128::from_le_bytes(id.try_into().expect("16 bytes")))
        .collect()
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

/// The ledger's accounts, for the domain's time-driven work (which reads, never writes).
struct LedgerAccounts<'a>(&'a tally_ledger::Ledger);

impl tally_payments::LedgerRead for LedgerAccounts<'_> {
    fn account(&self, id: u128) -> Option<tally_ledger::Account> {
        self.0.account(id).copied()
    }
}

#[cfg(test)]
mod tests {
    //! A request logged compact (`EntryKind::RequestCompact`) applies exactly as the same
    //! request logged as its whole message (`EntryKind::Request`, what older versions wrote):
    //! the same replies, byte for byte, and the same state digest, live and on replay.

    use tally_ledger::{Account, Transfer};
    use tally_wire::{
        encode_request, Header, MultiBatchEncoder, Operation, ParsedHeader, Release, RequestParams,
    };

    use super::*;
    use crate::entry::{entry_append, EntryHeader};

    /// A log in memory: records appended one after the other.
    #[derive(Default)]
    struct MemoryLog(Vec<u8>);

    impl LogBytes for MemoryLog {
        fn bytes(&self, position: u64, size: usize) -> &[u8] {
            &self.0[position as usize..][..size]
        }
    }

    const CLIENT: u128 = 0xC0FFEE;

    /// A request message of `operation` with `batches` (each the bytes of its events).
    fn request(number: u32, operation: Operation, batches: &[Vec<u8>]) -> Vec<u8> {
        let body = match operation.event_size() {
            None => vec![0; 256],
            Some(event_size) => {
                let mut encoder = MultiBatchEncoder::new(event_size);
                for batch in batches {
                    encoder.push_batch(batch).unwrap();
                }
                encoder.finish()
            }
        };
        let params = RequestParams {
            cluster: 0,
            view: 0,
            release: Release::new(0, 17, 9),
            parent: u128::from(number) * 7,
            client: CLIENT,
            session: u64::from(number > 0),
            timestamp: 0,
            request: number,
            operation: operation.as_u8(),
            previous_request_latency: 0,
        };
        encode_request(&params, &body)
    }

    fn header_of(message: &[u8]) -> RequestHeader {
        match Header::from_prefix(message).unwrap().parse() {
            Ok(ParsedHeader::Request(header)) => header,
            other => panic!("not a request: {other:?}"),
        }
    }

    fn event<R: Record>(record: R) -> Vec<u8> {
        R::slice_as_bytes(&[record]).to_vec()
    }

    /// Appends `messages` as one record, each compact where it can be or whole, and applies it
    /// live (`compact`) or as a replay; returns the replies' bytes.
    fn apply(
        log: &mut MemoryLog,
        state: &mut State,
        messages: &[Vec<u8>],
        compact: bool,
    ) -> Vec<Vec<u8>> {
        let mut body = Vec::new();
        let (mut op, mut timestamp) = (state.op, state.timestamp);
        let mut received = Vec::new();
        for message in messages {
            let header = header_of(message);
            received.push(header);
            let request = Request::from_header(header, message).unwrap();
            let mut compacted = Vec::new();
            let (kind, logged) = if compact && request.compact(&mut compacted) {
                (EntryKind::RequestCompact, &compacted)
            } else {
                (EntryKind::Request, message)
            };
            op += 1;
            let entry = EntryHeader {
                kind,
                timestamp: timestamp + 1,
                op,
                message_size: logged.len() as u32,
            };
            entry_append(&mut body, &entry, logged);
            timestamp = entry.timestamp + Command::Request(request).timestamps_reserved();
        }
        let position = log.0.len() as u64;
        log.0.extend_from_slice(&body);
        let last_request_op = HashMap::new();
        let mode = if compact {
            ApplyMode::Live {
                requests: &received,
            }
        } else {
            ApplyMode::Replay {
                last_request_op: &last_request_op,
            }
        };
        let mut replies = Vec::new();
        state
            .apply_record(log, position, body.len(), mode, &mut replies)
            .expect("the record applies");
        replies
            .into_iter()
            .map(|reply| match reply {
                Reply::Native { message, .. } => message,
                Reply::Admin(_) => unreachable!("no admin commands here"),
            })
            .collect()
    }

    #[test]
    fn compact_requests_apply_as_whole_messages() {
        let accounts: Vec<u8> = (1..=3u128)
            .flat_map(|id| {
                event(Account {
                    id,
                    ledger: 1,
                    code: 1,
                    ..Account::default()
                })
            })
            .collect();
        let transfer = |id: u128, debit: u128| {
            event(Transfer {
                id,
                debit_account_id: debit,
                credit_account_id: 3,
                amount: 5,
                ledger: 1,
                code: 1,
                ..Transfer::default()
            })
        };
        let lookup: Vec<u8> = [10u128, 12, 99]
            .iter()
            .flat_map(|id| id.to_le_bytes())
            .collect();
        let records = [
            vec![request(0, Operation::Register, &[])],
            vec![request(1, Operation::CreateAccounts, &[accounts])],
            // One transfer in one batch (the common small request), then three batches, one
            // empty and one whose second event fails (a duplicate id).
            vec![request(2, Operation::CreateTransfers, &[transfer(10, 1)])],
            vec![request(
                3,
                Operation::CreateTransfers,
                &[
                    transfer(11, 1),
                    vec![],
                    [transfer(12, 2), transfer(10, 2)].concat(),
                ],
            )],
            vec![request(4, Operation::LookupTransfers, &[lookup])],
        ];

        let (mut whole_log, mut compact_log) = (MemoryLog::default(), MemoryLog::default());
        let mut whole = State::new(0, SessionConfig::default());
        let mut compact = State::new(0, SessionConfig::default());
        for messages in &records {
            let expected = apply(&mut whole_log, &mut whole, messages, false);
            let replies = apply(&mut compact_log, &mut compact, messages, true);
            assert_eq!(replies, expected);
        }
        assert_eq!(compact.digest(&compact_log), whole.digest(&whole_log));
        assert_eq!(compact.ledger.transfer_count(), 3);
        // The compact log is smaller: each batch request drops 208 header bytes, and the
        // creates (128-byte events) 112 bytes of trailer padding; the register is whole.
        assert_eq!(
            whole_log.0.len() - compact_log.0.len(),
            3 * (208 + 112) + 208
        );

        // A replay of the compact log reaches the same state.
        let mut replayed = State::new(0, SessionConfig::default());
        let last_request_op = HashMap::new();
        let mut replies = Vec::new();
        replayed
            .apply_record(
                &compact_log,
                0,
                compact_log.0.len(),
                ApplyMode::Replay {
                    last_request_op: &last_request_op,
                },
                &mut replies,
            )
            .expect("the compact log replays");
        assert_eq!(replayed.digest(&compact_log), whole.digest(&whole_log));
    }

    #[test]
    fn a_one_transfer_request_is_logged_in_224_bytes() {
        let message = request(1, Operation::CreateTransfers, &[vec![1; 128]]);
        assert_eq!(message.len(), 512);
        let request = Request::from_header(header_of(&message), &message).unwrap();
        let mut compacted = Vec::new();
        assert!(request.compact(&mut compacted));
        assert_eq!(crate::entry::ENTRY_HEADER_SIZE + compacted.len(), 224);
        let parsed = Request::parse_compact(&compacted).unwrap();
        assert_eq!(
            (
                parsed.checksum,
                parsed.client,
                parsed.request,
                parsed.release
            ),
            (
                request.checksum,
                request.client,
                request.request,
                request.release
            )
        );
        assert_eq!(parsed.operation_wire, request.operation_wire);
        assert_eq!(parsed.operation, request.operation);
        assert_eq!(parsed.replay_cost(), request.replay_cost());
        // Reserved bytes must be zero; a register is never compact.
        compacted[45] = 1;
        assert_eq!(
            Request::parse_compact(&compacted).err(),
            Some(RequestInvalid::Reserved)
        );
        let register = request_register();
        let request = Request::from_header(header_of(&register), &register).unwrap();
        assert!(!request.compact(&mut Vec::new()));
    }

    fn request_register() -> Vec<u8> {
        request(0, Operation::Register, &[])
    }
}
