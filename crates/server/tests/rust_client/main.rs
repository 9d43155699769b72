//! The Rust client (`tally-client`) against the real `tally` server (a child process). Here in
//! the server's crate rather than the client's: cargo hands this crate's tests the binary it
//! built (`CARGO_BIN_EXE_tally`), where the client's tests had to run `cargo build` themselves,
//! which resolved features apart from the workspace's and rebuilt five crates in the middle of
//! the test run.

mod harness;

use std::time::Duration;

use std::sync::atomic::Ordering;

use harness::{Proxy, Server};
use tally_client::{
    Account, AccountFilter, AccountFilterFlags, AccountFlags, Client, ClientConfig, ClientError,
    CreateAccountStatus, CreateTransferStatus, EvictionReason, QueryFilter, QueryFilterFlags,
    Transfer,
};
use tokio::task::JoinSet;

/// Bound on any single await in these tests: a hang fails instead of blocking the suite.
const STEP: Duration = Duration::from_secs(20);

async fn step<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(STEP, future)
        .await
        .expect("step took too long")
}

fn account(id: u128, ledger: u32, code: u16, user_data_128: u128, flags: u16) -> Account {
    Account {
        id,
        ledger,
        code,
        user_data_128,
        flags: AccountFlags(flags),
        ..Account::default()
    }
}

fn transfer(id: u128, debit: u128, credit: u128, amount: u128, code: u16) -> Transfer {
    Transfer {
        id,
        debit_account_id: debit,
        credit_account_id: credit,
        amount,
        ledger: 1,
        code,
        ..Transfer::default()
    }
}

fn account_filter(account_id: u128, flags: u32, limit: u32) -> AccountFilter {
    AccountFilter {
        account_id,
        limit,
        flags: AccountFilterFlags(flags),
        ..AccountFilter::zeroed()
    }
}

async fn connect(server: &Server) -> Client {
    step(Client::connect(server.address, 0))
        .await
        .expect("connect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_returns_exact_results() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path());
    let client = connect(&server).await;
    assert!(client.session() > 0);
    assert_eq!(client.batch_size_limit(), 1_048_320);

    let history = AccountFlags::HISTORY;
    let mut a1 = account(1, 1, 10, 100, history);
    a1.user_data_64 = 7;
    let a2 = account(2, 1, 10, 100, history);
    let a3 = account(3, 1, 20, 200, 0);
    let batch = [a1, a2, a3, account(4, 0, 1, 0, 0), account(0, 1, 1, 0, 0)];
    let results = step(client.create_accounts(&batch)).await.expect("create");
    let statuses: Vec<_> = results.iter().map(|result| result.status).collect();
    assert_eq!(
        statuses,
        [
            CreateAccountStatus::Created,
            CreateAccountStatus::Created,
            CreateAccountStatus::Created,
            CreateAccountStatus::LedgerMustNotBeZero,
            CreateAccountStatus::IdMustNotBeZero,
        ]
    );
    // Events get consecutive timestamps (wire spec §6).
    for (index, result) in results.iter().enumerate() {
        assert_eq!(result.timestamp, results[0].timestamp + index as u64);
        assert_eq!(result.reserved, 0);
    }
    let account_timestamps: Vec<u64> = results[..3].iter().map(|r| r.timestamp).collect();

    // `exists` carries the stored account's timestamp.
    let again = step(client.create_accounts(&[a1])).await.expect("create");
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].status, CreateAccountStatus::Exists);
    assert_eq!(again[0].timestamp, account_timestamps[0]);

    let t1 = transfer(11, 1, 2, 100, 1);
    let mut t2 = transfer(12, 2, 1, 30, 1);
    t2.user_data_64 = 5;
    let t3 = transfer(13, 1, 3, 7, 2);
    let t4 = transfer(14, 1, 99, 1, 1);
    let results = step(client.create_transfers(&[t1, t2, t3, t4]))
        .await
        .expect("create");
    let statuses: Vec<_> = results.iter().map(|result| result.status).collect();
    assert_eq!(
        statuses,
        [
            CreateTransferStatus::Created,
            CreateTransferStatus::Created,
            CreateTransferStatus::Created,
            CreateTransferStatus::CreditAccountNotFound,
        ]
    );
    let transfer_timestamps: Vec<u64> = results[..3].iter().map(|r| r.timestamp).collect();
    assert!(transfer_timestamps[0] > account_timestamps[2]);
    let stamped = |transfer: Transfer, timestamp: u64| Transfer {
        timestamp,
        ..transfer
    };
    let (t1, t2, t3) = (
        stamped(t1, transfer_timestamps[0]),
        stamped(t2, transfer_timestamps[1]),
        stamped(t3, transfer_timestamps[2]),
    );

    // Lookups: found objects only, in request order, with balances and timestamps.
    let accounts = step(client.lookup_accounts(&[3, 99, 1, 2]))
        .await
        .expect("lookup");
    let expected_a1 = Account {
        debits_posted: 107,
        credits_posted: 30,
        timestamp: account_timestamps[0],
        ..a1
    };
    let expected_a2 = Account {
        debits_posted: 30,
        credits_posted: 100,
        timestamp: account_timestamps[1],
        ..a2
    };
    let expected_a3 = Account {
        credits_posted: 7,
        timestamp: account_timestamps[2],
        ..a3
    };
    assert_eq!(accounts, [expected_a3, expected_a1, expected_a2]);
    let transfers = step(client.lookup_transfers(&[13, 14, 11]))
        .await
        .expect("lookup");
    assert_eq!(transfers, [t3, t1]);
    assert!(step(client.lookup_accounts(&[]))
        .await
        .expect("lookup")
        .is_empty());

    // get_account_transfers: both sides, reversed, debits only, limit.
    let both = AccountFilterFlags::DEBITS | AccountFilterFlags::CREDITS;
    let filter = account_filter(1, both, 10);
    let transfers = step(client.get_account_transfers(filter))
        .await
        .expect("get");
    assert_eq!(transfers, [t1, t2, t3]);
    let reversed = account_filter(1, both | AccountFilterFlags::REVERSED, 10);
    let transfers = step(client.get_account_transfers(reversed))
        .await
        .expect("get");
    assert_eq!(transfers, [t3, t2, t1]);
    let debits = account_filter(1, AccountFilterFlags::DEBITS, 10);
    let transfers = step(client.get_account_transfers(debits))
        .await
        .expect("get");
    assert_eq!(transfers, [t1, t3]);
    let limited = account_filter(1, both, 2);
    let transfers = step(client.get_account_transfers(limited))
        .await
        .expect("get");
    assert_eq!(transfers, [t1, t2]);
    let invalid = account_filter(1, 0, 10);
    let transfers = step(client.get_account_transfers(invalid))
        .await
        .expect("get");
    assert!(transfers.is_empty());

    // get_account_balances: one row per transfer of a history account.
    let balances = step(client.get_account_balances(filter))
        .await
        .expect("get");
    let rows: Vec<(u128, u128, u64)> = balances
        .iter()
        .map(|b| (b.debits_posted, b.credits_posted, b.timestamp))
        .collect();
    assert_eq!(
        rows,
        [
            (100, 0, transfer_timestamps[0]),
            (100, 30, transfer_timestamps[1]),
            (107, 30, transfer_timestamps[2]),
        ]
    );
    assert!(balances
        .iter()
        .all(|b| b.debits_pending == 0 && b.credits_pending == 0));
    let no_history = account_filter(3, both, 10);
    let balances = step(client.get_account_balances(no_history))
        .await
        .expect("get");
    assert!(balances.is_empty());

    // query_accounts / query_transfers: AND of equality predicates.
    let query = |user_data_128: u128, code: u16, limit: u32| QueryFilter {
        user_data_128,
        code,
        limit,
        ..QueryFilter::zeroed()
    };
    let accounts = step(client.query_accounts(query(100, 0, 10)))
        .await
        .expect("query");
    assert_eq!(accounts, [expected_a1, expected_a2]);
    let accounts = step(client.query_accounts(QueryFilter {
        ledger: 1,
        code: 20,
        limit: 10,
        ..QueryFilter::zeroed()
    }))
    .await
    .expect("query");
    assert_eq!(accounts, [expected_a3]);
    let accounts = step(client.query_accounts(QueryFilter {
        flags: QueryFilterFlags(QueryFilterFlags::REVERSED),
        ..query(100, 0, 1)
    }))
    .await
    .expect("query");
    assert_eq!(accounts, [expected_a2]);
    let transfers = step(client.query_transfers(query(0, 1, 10)))
        .await
        .expect("query");
    assert_eq!(transfers, [t1, t2]);
    let transfers = step(client.query_transfers(QueryFilter {
        user_data_64: 5,
        limit: 10,
        ..QueryFilter::zeroed()
    }))
    .await
    .expect("query");
    assert_eq!(transfers, [t2]);

    // One request per call here: nothing was concurrent.
    let stats = client.stats();
    assert_eq!(stats.requests, stats.calls + 1, "{stats:?}");
    assert_eq!(stats.resends, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_calls_are_packed_and_get_their_own_results() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path());
    let client = connect(&server).await;
    let accounts: Vec<Account> = (1..=2).map(|id| account(id, 1, 1, 0, 0)).collect();
    step(client.create_accounts(&accounts))
        .await
        .expect("create");
    let before = client.stats();

    // 400 concurrent calls: call i creates i % 4 + 1 transfers of amount i; every third call
    // also has a transfer to a missing account at position i % (its length).
    const CALLS: u128 = 400;
    let mut tasks = JoinSet::new();
    for call in 0..CALLS {
        let client = client.clone();
        tasks.spawn(async move {
            let length = (call % 4 + 1) as usize;
            let bad = (call % 3 == 0).then_some(call as usize % length);
            let transfers: Vec<Transfer> = (0..length)
                .map(|index| {
                    let id = 1_000 * (call + 1) + index as u128;
                    let credit = if Some(index) == bad { 77 } else { 2 };
                    transfer(id, 1, credit, call + 1, 1)
                })
                .collect();
            let results = client.create_transfers(&transfers).await;
            (call, length, bad, results)
        });
    }
    // A different operation at the same time: its own requests, its own results.
    let lookups = {
        let client = client.clone();
        tokio::spawn(async move {
            let mut found = Vec::new();
            for _ in 0..5 {
                found.push(client.lookup_accounts(&[2, 1, 5]).await);
            }
            found
        })
    };
    let mut expected_credits = 0u128;
    let mut transfers_created = 0u128;
    while let Some(joined) = step(tasks.join_next()).await {
        let (call, length, bad, results) = joined.expect("task");
        let results = results.expect("create_transfers");
        assert_eq!(results.len(), length, "call {call}");
        for (index, result) in results.iter().enumerate() {
            if Some(index) == bad {
                assert_eq!(result.status, CreateTransferStatus::CreditAccountNotFound);
            } else {
                assert_eq!(result.status, CreateTransferStatus::Created, "call {call}");
                expected_credits += call + 1;
                transfers_created += 1;
            }
        }
        // Consecutive timestamps within a batch.
        for pair in results.windows(2) {
            assert_eq!(pair[1].timestamp, pair[0].timestamp + 1);
        }
    }
    for found in step(lookups).await.expect("lookups") {
        let found = found.expect("lookup");
        assert_eq!(found.iter().map(|a| a.id).collect::<Vec<_>>(), [2, 1]);
    }
    let stats = client.stats();
    let calls = stats.calls - before.calls;
    let requests = stats.requests - before.requests;
    assert_eq!(calls, CALLS as u64 + 5);
    assert!(
        requests < calls / 4,
        "calls were not packed: {requests} requests for {calls} calls"
    );

    let accounts = step(client.lookup_accounts(&[1, 2])).await.expect("lookup");
    assert_eq!(accounts[0].debits_posted, expected_credits);
    assert_eq!(accounts[1].credits_posted, expected_credits);
    let transfers =
        step(client.get_account_transfers(account_filter(2, AccountFilterFlags::CREDITS, 8189)))
            .await
            .expect("get");
    assert_eq!(transfers.len() as u128, transfers_created);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_much_data_is_refused_locally() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path());
    let client = connect(&server).await;
    let before = client.stats();

    let accounts: Vec<Account> = (1..=8190).map(|id| account(id, 1, 1, 0, 0)).collect();
    let refused = client.create_accounts(&accounts).await;
    assert!(
        matches!(refused, Err(ClientError::TooMuchData)),
        "{refused:?}"
    );
    let ids: Vec<u128> = (1..=8190).collect();
    let refused = client.lookup_accounts(&ids).await;
    assert!(
        matches!(refused, Err(ClientError::TooMuchData)),
        "{refused:?}"
    );
    let refused = client
        .query_accounts(QueryFilter {
            ledger: 1,
            limit: 8190,
            ..QueryFilter::zeroed()
        })
        .await;
    assert!(
        matches!(refused, Err(ClientError::TooMuchData)),
        "{refused:?}"
    );
    let refused = client
        .get_account_transfers(account_filter(1, AccountFilterFlags::DEBITS, u32::MAX))
        .await;
    assert!(
        matches!(refused, Err(ClientError::TooMuchData)),
        "{refused:?}"
    );
    assert_eq!(client.stats(), before, "nothing was sent");

    // The largest call that fits goes through, in one full-size request.
    let results = step(client.create_accounts(&accounts[..8189]))
        .await
        .expect("create");
    assert_eq!(results.len(), 8189);
    assert!(results
        .iter()
        .all(|result| result.status == CreateAccountStatus::Created));
    let found = step(client.lookup_accounts(&ids[..8189]))
        .await
        .expect("lookup");
    assert_eq!(found.len(), 8189);
    let found = step(client.query_accounts(QueryFilter {
        ledger: 1,
        limit: 8189,
        ..QueryFilter::zeroed()
    }))
    .await
    .expect("query");
    assert_eq!(found.len(), 8189);
    assert_eq!(client.stats().requests - before.requests, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_survive_server_restarts_without_duplicates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = Server::start(dir.path());
    let proxy = Proxy::start(server.address).await;
    let config = ClientConfig {
        request_timeout: Duration::from_millis(500),
        ..ClientConfig::default()
    };
    let client = step(Client::connect_with(proxy.address, 0, config))
        .await
        .expect("connect");
    let observer = connect(&server).await;
    let accounts = [account(1, 1, 1, 0, 0), account(2, 1, 1, 0, 0)];
    step(client.create_accounts(&accounts))
        .await
        .expect("create");
    let mut posted = 0u128;

    // The reply is lost for sure: the proxy swallows it. Once the server has executed the
    // request (the observer sees the transfer), it restarts; the client reconnects and resends
    // the same bytes, and the recovered server answers with the stored reply. A second
    // execution would answer `exists` and post the amount twice.
    proxy.drop_replies.store(true, Ordering::SeqCst);
    let call = {
        let client = client.clone();
        tokio::spawn(async move {
            client
                .create_transfers(&[transfer(99, 1, 2, 1000, 1)])
                .await
        })
    };
    step(async {
        while observer
            .lookup_transfers(&[99])
            .await
            .expect("lookup")
            .is_empty()
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    server = tokio::task::spawn_blocking(move || {
        server.restart();
        server
    })
    .await
    .expect("restart");
    proxy.drop_replies.store(false, Ordering::SeqCst);
    let results = step(call).await.expect("task").expect("create_transfers");
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].status, CreateTransferStatus::Created);
    posted += 1000;
    assert!(client.stats().resends > 0);

    // Then restarts at varying points of a pending call: before the server reads the request,
    // while it executes it, after the reply left.
    for round in 0..4u128 {
        let call = {
            let client = client.clone();
            tokio::spawn(async move {
                let transfers = [transfer(100 + round, 1, 2, round + 1, 1)];
                client.create_transfers(&transfers).await
            })
        };
        tokio::time::sleep(Duration::from_micros(round as u64 * 700)).await;
        let address = server.address;
        server = tokio::task::spawn_blocking(move || {
            server.restart();
            server
        })
        .await
        .expect("restart");
        assert_eq!(server.address, address);
        let results = step(call).await.expect("task").expect("create_transfers");
        assert_eq!(results.len(), 1);
        assert_eq!(
            results[0].status,
            CreateTransferStatus::Created,
            "round {round}"
        );
        posted += round + 1;
    }
    let found = step(client.lookup_accounts(&[1, 2])).await.expect("lookup");
    assert_eq!(found[0].debits_posted, posted);
    assert_eq!(found[1].credits_posted, posted);
    let stats = client.stats();
    assert!(stats.connections > 2, "{stats:?}");

    // A call made while the server is down completes once it is back.
    let address = server.address;
    server.stop();
    let call = {
        let client = client.clone();
        tokio::spawn(async move { client.lookup_transfers(&[100, 101, 999]).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let path = dir.path().to_path_buf();
    let _server = tokio::task::spawn_blocking(move || Server::start_at(&path, address))
        .await
        .expect("start");
    let found = step(call).await.expect("task").expect("lookup");
    assert_eq!(found.iter().map(|t| t.id).collect::<Vec<_>>(), [100, 101]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_recently_used_session_is_evicted_after_65_registers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path());
    let first = connect(&server).await;
    let second = connect(&server).await;
    // `first` registered before `second` but is used after it: `second` is now the least
    // recently used session (the lowest op of a latest reply), not `first`.
    step(first.create_accounts(&[account(1, 1, 1, 0, 0)]))
        .await
        .expect("create");
    let mut others = Vec::new();
    for _ in 0..62 {
        others.push(connect(&server).await);
    }
    // 64 sessions: the table is full, nobody is evicted yet.
    step(second.lookup_accounts(&[1]))
        .await
        .expect("still served");
    step(first.lookup_accounts(&[1]))
        .await
        .expect("still served");
    // The 65th register evicts the least recently used session: now `others[0]`'s.
    others.push(connect(&server).await);
    let evicted = others.remove(0);

    // Two calls pending on the evicted client: both fail, and so does every later call.
    let new_account = [account(2, 1, 1, 0, 0)];
    let (a, b) = tokio::join!(
        evicted.lookup_accounts(&[1]),
        evicted.create_accounts(&new_account)
    );
    assert!(no_session(a.as_ref().err()), "{a:?}");
    assert!(no_session(b.as_ref().err()), "{b:?}");
    let later = evicted.lookup_accounts(&[1]).await;
    assert!(no_session(later.as_ref().err()), "{later:?}");

    // Everybody else kept their session.
    for client in [&first, &second, &others[0], others.last().expect("clients")] {
        let found = step(client.lookup_accounts(&[1])).await.expect("served");
        assert_eq!(found.len(), 1);
    }
}

fn no_session(error: Option<&ClientError>) -> bool {
    matches!(error, Some(ClientError::Evicted(EvictionReason::NoSession)))
}

/// A server stops cleanly after core batches that held several requests each. (Regression: the
/// checkpoint once named the protocol op instead of the journal record, which a batch of several
/// requests put beyond the log's end, and the core thread panicked at shutdown.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_stops_cleanly_after_batched_requests() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = Server::start(dir.path());
    let mut clients = Vec::new();
    for _ in 0..8 {
        clients.push(connect(&server).await);
    }
    // Concurrent requests of 8 clients: some share a core batch.
    let mut tasks = JoinSet::new();
    for (index, client) in clients.iter().enumerate() {
        let client = client.clone();
        tasks.spawn(async move {
            for round in 0..20u128 {
                let id = 1 + index as u128 * 100 + round;
                client
                    .create_accounts(&[account(id, 1, 1, 0, 0)])
                    .await
                    .expect("create");
            }
        });
    }
    while let Some(joined) = step(tasks.join_next()).await {
        joined.expect("task");
    }
    let status = tokio::task::spawn_blocking(move || server.stop())
        .await
        .expect("stop");
    assert!(status.is_some_and(|status| status.success()), "{status:?}");
}
