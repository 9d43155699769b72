//! `tally-client`: a Rust client for Tally's native protocol, which is TigerBeetle's client
//! protocol (0.17.x; `shared/spec/tigerbeetle-wire.md`, cited as "spec §n").
//!
//! # API
//!
//! ```no_run
//! # async fn example() -> Result<(), tally_client::ClientError> {
//! use tally_client::{Account, Client};
//! let client = Client::connect("127.0.0.1:3000".parse().unwrap(), 0).await?;
//! let account = Account { id: 1, ledger: 1, code: 1, ..Account::default() };
//! let results = client.create_accounts(&[account]).await?;
//! let accounts = client.lookup_accounts(&[1]).await?;
//! # Ok(()) }
//! ```
//!
//! * [`Client::connect`] (or [`Client::connect_with`] and a [`ClientConfig`]) connects and
//!   registers a session (request 0, spec §4.2), keeping the server's `batch_size_limit`. It
//!   must run inside a tokio runtime: the connection lives in a background task.
//! * Operations: [`Client::create_accounts`], [`Client::create_transfers`] (one result per
//!   event, statuses decoded to the ledger's enums), [`Client::lookup_accounts`],
//!   [`Client::lookup_transfers`] (found objects only, in request order),
//!   [`Client::get_account_transfers`], [`Client::get_account_balances`],
//!   [`Client::query_accounts`], [`Client::query_transfers`] (one filter each).
//! * [`Client`] is a cheap `Clone` handle; the session ends when the last handle is dropped.
//! * Errors: [`ClientError`]. Nothing the server sends can make the client panic.
//!
//! # Batching
//!
//! Like TigerBeetle's clients, a client has at most one request in flight. Calls made while a
//! request is in flight are queued; calls of the **same operation** are packed into one
//! request as a multi-batch (spec §5.2), each call one batch, as long as the request body stays
//! within the server's `batch_size_limit` and the largest possible reply within a message
//! (1,048,320 bytes of body). Calls of another operation, or that no longer fit, go into the
//! next request. When a reply arrives, each call gets exactly its own batch's results, and the
//! oldest queued request is sent. A call that cannot fit in a request on its own (more than
//! 8,189 creates or lookups with the default limit, or a query `limit` above 8,189) fails
//! with [`ClientError::TooMuchData`] without sending anything.
//!
//! Events are copied once, from the caller's slice straight into the pending request body;
//! buffers are reused, so nothing is allocated per event.
//!
//! # Reliability
//!
//! A request not answered within [`ClientConfig::request_timeout`] is resent, byte for byte
//! (same checksum, so the server answers a duplicate with its stored reply instead of
//! executing it again). A broken connection is reopened with back-off (50 ms–1 s) and the
//! request resent at once; the server keeps sessions across reconnects and restarts. Calls
//! are retried forever: wrap them in `tokio::time::timeout` to bound them. An eviction ends
//! the client: every pending and later call fails with [`ClientError::Evicted`].

#![forbid(unsafe_code)]

mod batch;
mod driver;
mod error;

use std::io::Read;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tally_ledger::{CreateResult, Record};
use tally_wire::{Operation, CREATE_RESULT_SIZE};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::batch::{call_fits, CallSize, Pending, Waiter};
use crate::driver::{Driver, Shared};

pub use crate::error::{ClientError, ProtocolError};
pub use tally_ledger::{
    Account, AccountBalance, AccountFilter, AccountFilterFlags, AccountFlags, CreateAccountResult,
    CreateAccountStatus, CreateTransferResult, CreateTransferStatus, QueryFilter, QueryFilterFlags,
    Transfer, TransferFlags,
};
pub use tally_wire::EvictionReason;

/// Client settings.
#[derive(Clone, Copy, Debug)]
pub struct ClientConfig {
    /// How long to wait for a reply before resending the request (and the longest a connect
    /// attempt or a write may take before the connection is given up and reopened).
    pub request_timeout: Duration,
    /// How long [`Client::connect`] may take to connect and register.
    pub connect_timeout: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            request_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// Counters since the client connected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// Calls accepted (not counting those refused with `TooMuchData` or after the end).
    pub calls: u64,
    /// Requests sent, the register included; a resend does not count.
    pub requests: u64,
    /// Retransmissions: after a timeout or a reconnection.
    pub resends: u64,
    /// TCP connections opened, the first included.
    pub connections: u64,
}

/// A session with a Tally (or TigerBeetle) server. Cheap to clone; all clones share the
/// session and its one request in flight.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    driver: JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closes the connection; nobody can be waiting on a call any more.
        self.driver.abort();
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("address", &self.inner.shared.address)
            .field("client_id", &self.inner.shared.client_id)
            .field("session", &self.session())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Connects to `address` and registers a session with cluster `cluster`, with the default
    /// [`ClientConfig`].
    pub async fn connect(address: SocketAddr, cluster: u128) -> Result<Client, ClientError> {
        Client::connect_with(address, cluster, ClientConfig::default()).await
    }

    /// Connects and registers. Connection failures are retried with back-off until
    /// `config.connect_timeout`; an eviction (e.g. release too high) or a broken register reply
    /// fails at once.
    pub async fn connect_with(
        address: SocketAddr,
        cluster: u128,
        config: ClientConfig,
    ) -> Result<Client, ClientError> {
        let shared = Arc::new(Shared::new(address, cluster, client_id_new(), config));
        let (registered, registered_receiver) = oneshot::channel();
        let driver = tokio::spawn(Driver::new(shared.clone(), registered).run());
        let inner = Inner { shared, driver };
        match tokio::time::timeout(config.connect_timeout, registered_receiver).await {
            Ok(Ok(Ok(()))) => Ok(Client {
                inner: Arc::new(inner),
            }),
            Ok(Ok(Err(error))) => Err(error),
            Ok(Err(_)) => Err(ClientError::Closed),
            Err(_) => Err(ClientError::ConnectTimeout {
                address,
                timeout: config.connect_timeout,
                last_error: inner.shared.lock().last_connect_error.clone(),
            }),
        }
    }

    /// This client's id (random, fresh per client).
    pub fn client_id(&self) -> u128 {
        self.inner.shared.client_id
    }

    /// The session number the server assigned at register (spec §4.3).
    pub fn session(&self) -> u64 {
        self.inner.shared.session.load(Ordering::Relaxed)
    }

    /// The largest request body the server accepts, from the register reply.
    pub fn batch_size_limit(&self) -> u32 {
        self.inner.shared.lock().batch_size_limit
    }

    /// A snapshot of the counters shared by all clones of this client.
    pub fn stats(&self) -> ClientStats {
        let counters = &self.inner.shared.counters;
        ClientStats {
            calls: counters.calls.load(Ordering::Relaxed),
            requests: counters.requests.load(Ordering::Relaxed),
            resends: counters.resends.load(Ordering::Relaxed),
            connections: counters.connections.load(Ordering::Relaxed),
        }
    }

    /// Creates `accounts` as one batch: exactly one result per account, in order, with the
    /// status decoded (`Created` or `Exists` mean the account is there). A failed event is a
    /// result, not an error; errors are for the call as a whole.
    pub async fn create_accounts(
        &self,
        accounts: &[Account],
    ) -> Result<Vec<CreateAccountResult>, ClientError> {
        let bytes = self
            .call_events(Operation::CreateAccounts, accounts, true)
            .await?;
        decode_create_results(&bytes, CreateAccountStatus::from_u32)
    }

    /// Creates `transfers` as one batch: exactly one result per transfer, in order, with the
    /// status decoded. Linked chains must close within the slice: the batch is never split.
    pub async fn create_transfers(
        &self,
        transfers: &[Transfer],
    ) -> Result<Vec<CreateTransferResult>, ClientError> {
        let bytes = self
            .call_events(Operation::CreateTransfers, transfers, true)
            .await?;
        decode_create_results(&bytes, CreateTransferStatus::from_u32)
    }

    /// The accounts that exist, in the order of `ids`; missing ids are left out.
    pub async fn lookup_accounts(&self, ids: &[u128]) -> Result<Vec<Account>, ClientError> {
        let bytes = self.call_ids(Operation::LookupAccounts, ids).await?;
        Ok(decode_records(&bytes))
    }

    /// The transfers that exist, in the order of `ids`; missing ids are left out.
    pub async fn lookup_transfers(&self, ids: &[u128]) -> Result<Vec<Transfer>, ClientError> {
        let bytes = self.call_ids(Operation::LookupTransfers, ids).await?;
        Ok(decode_records(&bytes))
    }

    /// The transfers of `filter.account_id` that match the filter, at most `filter.limit`.
    /// An invalid filter gives an empty result, not an error.
    pub async fn get_account_transfers(
        &self,
        filter: AccountFilter,
    ) -> Result<Vec<Transfer>, ClientError> {
        let bytes = self
            .call_filter(Operation::GetAccountTransfers, &filter, filter.limit)
            .await?;
        Ok(decode_records(&bytes))
    }

    /// The balances of `filter.account_id` after each matching transfer, at most
    /// `filter.limit`; empty unless the account has the `history` flag.
    pub async fn get_account_balances(
        &self,
        filter: AccountFilter,
    ) -> Result<Vec<AccountBalance>, ClientError> {
        let bytes = self
            .call_filter(Operation::GetAccountBalances, &filter, filter.limit)
            .await?;
        Ok(decode_records(&bytes))
    }

    /// Accounts matching every non-zero field of `filter`, at most `filter.limit`.
    pub async fn query_accounts(&self, filter: QueryFilter) -> Result<Vec<Account>, ClientError> {
        let bytes = self
            .call_filter(Operation::QueryAccounts, &filter, filter.limit)
            .await?;
        Ok(decode_records(&bytes))
    }

    /// Transfers matching every non-zero field of `filter`, at most `filter.limit`.
    pub async fn query_transfers(&self, filter: QueryFilter) -> Result<Vec<Transfer>, ClientError> {
        let bytes = self
            .call_filter(Operation::QueryTransfers, &filter, filter.limit)
            .await?;
        Ok(decode_records(&bytes))
    }

    /// Creates: one batch of records, exactly one result each.
    async fn call_events<T: Record>(
        &self,
        operation: Operation,
        events: &[T],
        exact: bool,
    ) -> Result<Bytes, ClientError> {
        let bytes = T::slice_as_bytes(events);
        let size = CallSize {
            event_bytes: bytes.len(),
            events: events.len(),
            results_max: events.len() as u64,
        };
        self.call(operation, size, exact, |body| body.extend_from_slice(bytes))
            .await
    }

    /// Lookups: one batch of ids, at most one result each.
    async fn call_ids(&self, operation: Operation, ids: &[u128]) -> Result<Bytes, ClientError> {
        let size = CallSize {
            event_bytes: ids.len() * 16,
            events: ids.len(),
            results_max: ids.len() as u64,
        };
        self.call(operation, size, false, |body| {
            for id in ids {
                body.extend_from_slice(&id.to_le_bytes());
            }
        })
        .await
    }

    /// Queries: a batch of exactly one filter, at most `limit` results.
    async fn call_filter<T: Record>(
        &self,
        operation: Operation,
        filter: &T,
        limit: u32,
    ) -> Result<Bytes, ClientError> {
        let bytes = filter.as_bytes();
        let size = CallSize {
            event_bytes: bytes.len(),
            events: 1,
            results_max: u64::from(limit),
        };
        self.call(operation, size, false, |body| body.extend_from_slice(bytes))
            .await
    }

    /// Queues one batch: appended to the oldest pending request of the same operation that has
    /// room, else to a new request at the back of the queue. `write` appends exactly
    /// `size.event_bytes` bytes.
    async fn call(
        &self,
        operation: Operation,
        size: CallSize,
        exact: bool,
        write: impl FnOnce(&mut Vec<u8>),
    ) -> Result<Bytes, ClientError> {
        let shared = &self.inner.shared;
        let receiver = {
            let mut guard = shared.lock();
            let state = &mut *guard;
            if let Some(error) = &state.terminal {
                return Err(error.clone());
            }
            let limit = state.batch_size_limit;
            if !call_fits(operation, size, limit) {
                return Err(ClientError::TooMuchData);
            }
            let (sender, receiver) = oneshot::channel();
            let waiter = Waiter {
                // Casts: call_fits bounds events by u16::MAX and results by what one reply
                // can hold.
                events: size.events as u16,
                results_max: size.results_max as u32,
                exact,
                sender,
            };
            let found = state
                .queue
                .iter()
                .position(|pending| pending.operation == operation && pending.fits(size, limit));
            let index = match found {
                Some(index) => index,
                None => {
                    let body = state.spare_bodies.pop().unwrap_or_default();
                    state.queue.push_back(Pending::new(operation, body));
                    state.queue.len() - 1
                }
            };
            let pending = &mut state.queue[index];
            let before = pending.body.len();
            write(&mut pending.body);
            debug_assert_eq!(pending.body.len() - before, size.event_bytes);
            pending.push(waiter);
            receiver
        };
        shared.counters.calls.fetch_add(1, Ordering::Relaxed);
        shared.wake.notify_one();
        receiver.await.unwrap_or(Err(ClientError::Closed))
    }
}

fn decode_records<T: Record>(bytes: &[u8]) -> Vec<T> {
    bytes.chunks_exact(T::SIZE).map(T::read_from).collect()
}

/// Dense create results (spec §5.3): `timestamp u64, status u32, reserved u32`.
fn decode_create_results<S>(
    bytes: &[u8],
    decode: fn(u32) -> Option<S>,
) -> Result<Vec<CreateResult<S>>, ClientError> {
    let mut results = Vec::with_capacity(bytes.len() / CREATE_RESULT_SIZE);
    for chunk in bytes.chunks_exact(CREATE_RESULT_SIZE) {
        let word = |offset: usize| {
            u32::from_le_bytes([
                chunk[offset],
                chunk[offset + 1],
                chunk[offset + 2],
                chunk[offset + 3],
            ])
        };
        let timestamp = u64::from(word(0)) | (u64::from(word(4)) << 32);
        let status = word(8);
        results.push(CreateResult {
            timestamp,
            status: decode(status).ok_or(ClientError::UnknownStatus(status))?,
            reserved: word(12),
        });
    }
    Ok(results)
}

/// A random client id, never 0 or `u128::MAX` (spec §2.2).
fn client_id_new() -> u128 {
    let mut bytes = [0u8; 16];
    let random =
        std::fs::File::open("/dev/urandom").and_then(|mut file| file.read_exact(&mut bytes));
    let mut id = u128::from_le_bytes(bytes);
    if random.is_err() || id == 0 || id == u128::MAX {
        // Fallback: per-process random hash keys, the time and a counter.
        use std::collections::hash_map::RandomState;
        use std::hash::{BuildHasher, Hash, Hasher};
        use std::sync::atomic::AtomicU64;
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let mut words = [0u64; 2];
        for word in &mut words {
            let mut hasher = RandomState::new().build_hasher();
            COUNTER.fetch_add(1, Ordering::Relaxed).hash(&mut hasher);
            std::time::SystemTime::now().hash(&mut hasher);
            std::process::id().hash(&mut hasher);
            *word = hasher.finish();
        }
        id = (u128::from(words[0]) << 64 | u128::from(words[1])).clamp(1, u128::MAX - 1);
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_results_decode_and_reject_unknown_statuses() {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&7u64.to_le_bytes());
        bytes.extend_from_slice(&0xFFFF_FFFFu32.to_le_bytes());
        bytes.extend_from_slice(&0u32.to_le_bytes());
        bytes.extend_from_slice(&(1u64 << 40).to_le_bytes());
        bytes.extend_from_slice(&21u32.to_le_bytes());
        bytes.extend_from_slice(&0u32.to_le_bytes());
        let results = decode_create_results(&bytes, CreateAccountStatus::from_u32).expect("valid");
        assert_eq!(results[0].timestamp, 7);
        assert_eq!(results[0].status, CreateAccountStatus::Created);
        assert_eq!(results[1].timestamp, 1 << 40);
        assert_eq!(results[1].status, CreateAccountStatus::Exists);
        bytes[24..28].copy_from_slice(&999u32.to_le_bytes());
        assert!(matches!(
            decode_create_results(&bytes, CreateAccountStatus::from_u32),
            Err(ClientError::UnknownStatus(999))
        ));
    }

    #[test]
    fn client_ids_are_random_and_valid() {
        let a = client_id_new();
        let b = client_id_new();
        assert_ne!(a, b);
        assert!(a != 0 && a != u128::MAX);
    }
}
