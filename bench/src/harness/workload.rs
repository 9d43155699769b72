//! What the server scenarios send: accounts, random transfers with sequential ids, the clients
//! and the one-thread runtime they share, and the count of events that failed.

use std::net::SocketAddr;

use tally_client::{
    Account, Client, ClientStats, CreateAccountStatus, CreateTransferResult, CreateTransferStatus,
    Transfer,
};

use crate::harness::rng::SplitMix64;

/// Events (transfers to create, or ids to look up) in one full request: the server's
/// `batch_size_limit` (1 MiB of body) less the multi-batch trailer.
pub(crate) const REQUEST_EVENTS_MAX: usize = 8_189;
/// Accounts created first, unless a scenario is told otherwise.
const ACCOUNTS: u64 = 10_000;
/// Accounts with `--smoke`.
const SMOKE_ACCOUNTS: u64 = 1_000;
/// Amounts are uniform in `1..=AMOUNT_RANGE`.
pub(crate) const AMOUNT_RANGE: u64 = 1_000;

/// `--accounts` if given, else 10,000 (1,000 with `--smoke`).
pub(crate) fn accounts_or_default(accounts: Option<u64>, smoke: bool) -> u64 {
    accounts.unwrap_or(if smoke { SMOKE_ACCOUNTS } else { ACCOUNTS })
}

/// The client side's one thread: the server gets the rest of the machine.
pub(crate) fn client_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// `count` separate clients (each its own session and connection), connected and registered.
pub(crate) async fn connect(address: SocketAddr, count: usize) -> Vec<Client> {
    let mut clients = Vec::with_capacity(count);
    for _ in 0..count {
        clients.push(Client::connect(address, 0).await.expect("connect"));
    }
    clients
}

/// The clients' counters added up.
pub(crate) fn stats_sum(clients: &[Client]) -> ClientStats {
    let mut sum = ClientStats::default();
    for client in clients {
        let stats = client.stats();
        sum.calls += stats.calls;
        sum.requests += stats.requests;
        sum.resends += stats.resends;
        sum.connections += stats.connections;
    }
    sum
}

/// Accounts `1..=count`, ledger 1, code 1, in full requests; panics if any is not created.
pub(crate) async fn create_accounts(client: &Client, count: u64) {
    let mut id = 1u64;
    while id <= count {
        let end = (id + REQUEST_EVENTS_MAX as u64).min(count + 1);
        let accounts: Vec<Account> = (id..end)
            .map(|id| Account {
                id: u128::from(id),
                ledger: 1,
                code: 1,
                ..Account::default()
            })
            .collect();
        let results = client
            .create_accounts(&accounts)
            .await
            .expect("create_accounts");
        let failed = results
            .iter()
            .filter(|r| r.status != CreateAccountStatus::Created)
            .count();
        assert_eq!(failed, 0, "accounts not created: {:?}", results.first());
        id = end;
    }
}

/// The events of a `create_transfers` reply that did not create their transfer.
pub(crate) fn count_failed(results: &[CreateTransferResult]) -> u64 {
    results
        .iter()
        .filter(|r| r.status != CreateTransferStatus::Created)
        .count() as u64
}

/// Where a `TransferGen` starts.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TransferGenOptions {
    /// Accounts `1..=accounts` (created by `create_accounts`) to pick from.
    pub accounts: u64,
    /// Seed of the generator's random stream.
    pub seed: u64,
    /// The id of the first transfer `fill` makes.
    pub first_id: u64,
}

/// Transfers between uniformly random distinct accounts, amounts uniform in
/// `1..=AMOUNT_RANGE`, ledger 1, code 1: the same seed gives the same transfers.
pub(crate) struct TransferGen {
    /// The id `fill` gives its next transfer.
    pub next_id: u64,
    accounts: u64,
    rng: SplitMix64,
}

impl TransferGen {
    /// A generator at `options.first_id`.
    pub(crate) fn new(options: TransferGenOptions) -> Self {
        assert!(
            options.accounts >= 2,
            "transfers need two distinct accounts"
        );
        Self {
            next_id: options.first_id,
            accounts: options.accounts,
            rng: SplitMix64::new(options.seed),
        }
    }

    /// Appends `count` transfers with ids `next_id..`, and moves `next_id` past them.
    pub(crate) fn fill(&mut self, events: &mut Vec<Transfer>, count: usize) {
        for _ in 0..count {
            let id = self.next_id;
            self.next_id += 1;
            events.push(self.transfer(id));
        }
    }

    /// One transfer with this `id` (for ids handed out elsewhere; `next_id` stays).
    pub(crate) fn transfer(&mut self, id: u64) -> Transfer {
        let debit = self.rng.below(self.accounts);
        let mut credit = self.rng.below(self.accounts);
        while credit == debit {
            credit = self.rng.below(self.accounts);
        }
        Transfer {
            id: u128::from(id),
            debit_account_id: u128::from(debit + 1),
            credit_account_id: u128::from(credit + 1),
            amount: u128::from(1 + self.rng.below(AMOUNT_RANGE)),
            ledger: 1,
            code: 1,
            ..Default::default()
        }
    }

    /// Uniform in `0..n`, from the same stream (request sizes, say).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.rng.below(n)
    }
}
