//! `graphql`: Rafiki's Admin API over HTTP, against a real `tally start` child.
//!
//! Setup: a fresh data directory, `tally start` with the Admin API on an ephemeral port
//! (`TALLY_GRAPHQL_ADDRESS=127.0.0.1:0`; the harness reads `graphql listening on ADDR` from its
//! stdout), optionally `--preload N` transfers through the native protocol (`tally-client`, full
//! requests of 8,189 random transfers between 10,000 accounts, as `durable` makes them), then one
//! asset (`createAsset`) and a large deposit of liquidity.
//!
//! Workloads, each at 1, 16 and 64 concurrent clients (`--clients`), for `--seconds` (after
//! `--warmup` seconds not counted) or for `--count` operations:
//!
//! * `deposit`: `depositAssetLiquidity` of 1, with a new UUID v4 transfer id and idempotency key
//!   per call.
//! * `withdrawal`: `createAssetLiquidityWithdrawal` of 1 with `timeoutSeconds: 60`, then
//!   `postLiquidityWithdrawal` of it: a pair counts as 2 mutations, and the latency is per
//!   mutation.
//! * `query`: `asset(id) { liquidity }`.
//!
//! Each client is one HTTP/1.1 keep-alive connection (`harness::admin_api`, one request in
//! flight), opened before the timed window. All clients share one tokio runtime thread
//! (`--client-threads` for more), so the server gets the rest of the machine. Every response is
//! checked: HTTP 200, no `errors`, `success: true` (or a `liquidity` string); any other answer
//! stops the run with the response. A mutation's reply means it is durable (the server answers
//! only after the journal record holding it is fsynced).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::ValueEnum;
use serde_json::{json, Map, Value};
use tally_client::Client;

use crate::harness::admin_api::{Check, Connection};
use crate::harness::child::Stream;
use crate::harness::data_dir::DataDir;
use crate::harness::options::ServerArgs;
use crate::harness::report::{self, round, thousands, LatencySummary, Progress, Stamp, Table};
use crate::harness::tally::{self, Tally};
use crate::harness::workload::{
    accounts_or_default, client_runtime, count_failed, create_accounts, TransferGen,
    TransferGenOptions, REQUEST_EVENTS_MAX,
};

const DEFAULT_SECONDS: f64 = 5.0;
const DEFAULT_WARMUP_SECONDS: f64 = 1.0;
const DEFAULT_CLIENTS: [usize; 3] = [1, 16, 64];
const SMOKE_CLIENTS: [usize; 2] = [1, 4];
const SMOKE_COUNT: u64 = 40;
/// The liquidity deposited at setup: enough for every withdrawal of 1 a run can make.
const DEFAULT_LIQUIDITY: u64 = 1_000_000_000_000_000;
/// Transfers the server's index is sized for beyond the preload (`--transfers-max`).
const TRANSFERS_HEADROOM: u64 = 8_000_000;

// Targets (design: GraphQL liquidity mutations over HTTP, 64 concurrent clients).
const TARGET_MUTATIONS_PER_SECOND: f64 = 20_000.0;
const TARGET_P99_MS: f64 = 10.0;
const TARGET_CLIENTS: usize = 64;

const CREATE_ASSET: &str =
    "mutation($input: CreateAssetInput!) { createAsset(input: $input) { asset { id } } }";
const DEPOSIT: &str = "mutation($input: DepositAssetLiquidityInput!) { depositAssetLiquidity(input: $input) { success } }";
const WITHDRAW: &str = "mutation($input: CreateAssetLiquidityWithdrawalInput!) { createAssetLiquidityWithdrawal(input: $input) { success } }";
const POST: &str = "mutation($input: PostLiquidityWithdrawalInput!) { postLiquidityWithdrawal(input: $input) { success } }";
const LIQUIDITY: &str = "query($id: String!) { asset(id: $id) { liquidity } }";

/// `graphql`'s command line.
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Seconds of each measured run (one workload at one client count) [default: 5]
    #[arg(long)]
    seconds: Option<f64>,
    /// Run each workload for this many operations (all clients together; a withdrawal pair is
    /// 2) instead of for a duration [default with --smoke: 40]
    #[arg(long)]
    count: Option<u64>,
    /// Seconds of requests before each measured run, not counted [default: 1; 0 with --smoke]
    #[arg(long)]
    warmup: Option<f64>,
    /// Concurrent clients (connections), one run per value [default: 1,16,64; 1,4 with --smoke]
    #[arg(long, value_delimiter = ',')]
    clients: Vec<usize>,
    /// Run only this workload (repeat to pick several) [default: all, in this order]
    #[arg(long, value_enum)]
    workload: Vec<Workload>,
    /// Transfers created through the native protocol before the asset, in full requests (the
    /// ledger's size when the GraphQL runs start)
    #[arg(long, default_value_t = 0)]
    preload: u64,
    /// Accounts the preload's transfers go between [default: 10,000; 1,000 with --smoke]
    #[arg(long)]
    accounts: Option<u64>,
    /// Liquidity deposited into the asset at setup
    #[arg(long, default_value_t = DEFAULT_LIQUIDITY)]
    liquidity: u64,
    /// Threads of the client side's tokio runtime (1: current-thread runtime)
    #[arg(long, default_value_t = 1)]
    client_threads: usize,
    /// Start the server with `--transfers-max N` [default: the preload + 8,000,000]
    #[arg(long)]
    transfers_max: Option<u64>,
    /// Seed of the preload's transfer generator
    #[arg(long, default_value_t = 42)]
    seed: u64,
    #[command(flatten)]
    server: ServerArgs,
}

/// A workload (`--workload`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Workload {
    /// `depositAssetLiquidity`, a new transfer id and idempotency key per call
    Deposit,
    /// `createAssetLiquidityWithdrawal` (timeoutSeconds 60) then `postLiquidityWithdrawal`
    Withdrawal,
    /// `asset(id) { liquidity }`
    Query,
}

impl Workload {
    const ALL: [Workload; 3] = [Workload::Deposit, Workload::Withdrawal, Workload::Query];

    fn name(self) -> &'static str {
        match self {
            Workload::Deposit => "deposit",
            Workload::Withdrawal => "withdrawal",
            Workload::Query => "query",
        }
    }

    fn is_mutation(self) -> bool {
        self != Workload::Query
    }

    /// Operations per iteration of a client's loop.
    fn ops_per_iteration(self) -> u64 {
        if self == Workload::Withdrawal {
            2
        } else {
            1
        }
    }
}

struct Params {
    seconds: f64,
    count: Option<u64>,
    warmup: f64,
    clients: Vec<usize>,
    workloads: Vec<Workload>,
    preload: u64,
    accounts: u64,
    liquidity: u64,
    client_threads: usize,
    transfers_max: u64,
    seed: u64,
    smoke: bool,
}

/// Runs the scenario: prints the table, writes `graphql.json`.
pub(crate) fn run(args: Args) {
    let smoke = args.server.smoke;
    let preload = args.preload;
    let params = Params {
        seconds: args.seconds.unwrap_or(DEFAULT_SECONDS),
        count: args.count.or(smoke.then_some(SMOKE_COUNT)),
        warmup: args
            .warmup
            .unwrap_or(if smoke { 0.0 } else { DEFAULT_WARMUP_SECONDS }),
        clients: if !args.clients.is_empty() {
            args.clients
        } else if smoke {
            SMOKE_CLIENTS.to_vec()
        } else {
            DEFAULT_CLIENTS.to_vec()
        },
        workloads: if args.workload.is_empty() {
            Workload::ALL.to_vec()
        } else {
            args.workload
        },
        preload,
        accounts: accounts_or_default(args.accounts, smoke),
        liquidity: args.liquidity,
        client_threads: args.client_threads,
        transfers_max: args.transfers_max.unwrap_or(preload + TRANSFERS_HEADROOM),
        seed: args.seed,
        smoke,
    };
    if params.seconds <= 0.0
        || params.warmup < 0.0
        || params.clients.contains(&0)
        || params.client_threads == 0
        || params.count == Some(0)
        || (params.preload > 0 && params.accounts < 2)
    {
        eprintln!(
            "need --seconds > 0, --warmup >= 0, --clients >= 1, --client-threads >= 1, \
             --count >= 1, and --accounts >= 2 with --preload"
        );
        std::process::exit(2);
    }

    let stamp = Stamp::now();
    let mut tally = Tally::new(&args.server);
    tally.args = vec![
        "--transfers-max".to_string(),
        params.transfers_max.to_string(),
    ];
    tally.env = vec![("TALLY_GRAPHQL_ADDRESS".into(), "127.0.0.1:0".into())];
    let data = DataDir::new(&args.server, "graphql");
    eprintln!(
        "[graphql] tally {} on {} (filesystem {})",
        tally.binary.display(),
        data.path.display(),
        data.filesystem()
    );
    let server = tally.start(&data.path);
    let graphql: SocketAddr =
        server
            .process
            .wait_for_line_on(Stream::Stdout, Duration::from_secs(10), |lines| {
                lines.iter().find_map(|line| {
                    line.strip_prefix("graphql listening on ")?
                        .trim()
                        .parse()
                        .ok()
                })
            });
    eprintln!("[graphql] Admin API on http://{graphql}/graphql");
    let runtime = if params.client_threads == 1 {
        client_runtime()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(params.client_threads)
            .enable_all()
            .build()
            .expect("tokio runtime")
    };

    let preload = runtime.block_on(preload_transfers(&params, server.address));
    let asset = runtime.block_on(setup_asset(graphql, params.liquidity));
    eprintln!("[graphql] asset {asset}, liquidity {}", params.liquidity);

    let mut outcomes = Vec::new();
    // Transfers in the ledger: the preload's, the setup deposit, and what each run adds.
    let mut ledger_transfers = preload.transfers + 1;
    for &workload in &params.workloads {
        for &clients in &params.clients {
            let checkpoints_before = tally::checkpoints(&server.process.stderr_lines()).len();
            let cpu_server = server.process.cpu_time();
            let cpu_client = own_cpu_time();
            let measured =
                runtime.block_on(run_workload(workload, clients, &params, graphql, &asset));
            let outcome = Outcome {
                workload,
                clients,
                ledger_transfers_start: ledger_transfers,
                server_cpu: server.process.cpu_time().saturating_sub(cpu_server),
                client_cpu: own_cpu_time().saturating_sub(cpu_client),
                checkpoints: tally::checkpoints(&server.process.stderr_lines())
                    .split_off(checkpoints_before),
                measured,
            };
            ledger_transfers += outcome.measured.transfers_created;
            outcomes.push(outcome);
        }
    }
    // The asset's liquidity after every run: what was deposited less what was withdrawn.
    let liquidity_end = runtime.block_on(async {
        let mut connection = Connection::open(graphql).await;
        let response = connection
            .post(&query_body(&asset), Check::Liquidity)
            .await
            .unwrap_or_else(|e| panic!("final liquidity query: {e}"));
        response["data"]["asset"]["liquidity"]
            .as_str()
            .and_then(|s| s.parse::<u64>().ok())
            .expect("liquidity is a number")
    });
    let expected_liquidity = params.liquidity
        + outcomes
            .iter()
            .map(|o| o.measured.deposits_all)
            .sum::<u64>()
        - outcomes
            .iter()
            .map(|o| o.measured.withdrawals_all)
            .sum::<u64>();
    assert_eq!(
        liquidity_end, expected_liquidity,
        "the asset's liquidity does not add up"
    );
    let memory = server.process.memory();
    let (_, lines) = server.process.terminate();
    let warnings = tally::warnings(&lines);

    print!("{}", table(&outcomes).render());
    println!(
        "\nops/s: operations answered per second, all clients together (withdrawal: each of \
         createAssetLiquidityWithdrawal and postLiquidityWithdrawal is one mutation). p50..p100: \
         latency of one HTTP request (one mutation or query), keep-alive connections, one request \
         in flight per client. cpu: server / bench client CPU seconds per second of the run \
         (2 cores here). ckpts: checkpoints the server wrote during the run.\nTarget: >= 20,000 durable liquidity mutations/s with p99 <= 10 ms at 64 \
         clients (Rafiki on Postgres: 226/s, p99 450 ms)."
    );
    if params.preload > 0 {
        println!(
            "preload: {} transfers through the native protocol in {:.1} s ({:.0} k/s)",
            thousands(preload.transfers),
            preload.seconds,
            preload.transfers as f64 / preload.seconds.max(1e-9) / 1e3
        );
    }
    let verdicts = verdicts(&outcomes);
    for (name, met, text) in &verdicts {
        println!(
            "target {name}: {text} -> {}",
            if *met { "met" } else { "MISSED" }
        );
    }
    println!(
        "liquidity at the end: {} (as expected)",
        thousands(liquidity_end)
    );
    for outcome in &outcomes {
        for checkpoint in &outcome.checkpoints {
            println!(
                "checkpoint during {}: {}",
                outcome.key(),
                checkpoint.fields_text()
            );
        }
    }
    tally::print_warnings(&warnings);

    let params_json = json!({
        "seconds": params.count.is_none().then_some(params.seconds),
        "count": params.count,
        "warmup_seconds": params.warmup,
        "clients": params.clients,
        "workloads": params.workloads.iter().map(|w| w.name()).collect::<Vec<_>>(),
        "preload_transfers": params.preload,
        "preload_accounts": (params.preload > 0).then_some(params.accounts),
        "liquidity": params.liquidity,
        "client_threads": params.client_threads,
        "server_transfers_max": params.transfers_max,
        "seed": params.seed,
        "smoke": params.smoke,
        "http": "HTTP/1.1 keep-alive, one connection per client, one request in flight (harness::admin_api: one write per request, httparse for the head)",
        "amount_per_mutation": 1,
        "withdrawal_timeout_seconds": 60,
        "tally": tally.binary.display().to_string(),
        "data_dir": data.path.display().to_string(),
        "filesystem": data.filesystem(),
    });
    let mut runs = Map::new();
    for outcome in &outcomes {
        runs.insert(outcome.key(), outcome.to_json());
    }
    let mut targets = Map::new();
    targets.insert(
        "mutations_per_second_min".into(),
        json!(TARGET_MUTATIONS_PER_SECOND),
    );
    targets.insert("p99_ms_max".into(), json!(TARGET_P99_MS));
    targets.insert("clients".into(), json!(TARGET_CLIENTS));
    for (name, met, _) in &verdicts {
        targets.insert(format!("{name}_met"), json!(met));
    }
    let path = report::write_json(
        "graphql",
        &stamp,
        params_json,
        json!({
            "preload": {
                "transfers": preload.transfers,
                "failed": preload.failed,
                "seconds": round(preload.seconds, 3),
                "transfers_per_second": (preload.transfers as f64 / preload.seconds.max(1e-9)).round(),
            },
            "runs": runs,
            "liquidity_end": liquidity_end,
            "server_rss_bytes_end": memory.rss_bytes,
            "server_hwm_bytes_end": memory.hwm_bytes,
            "server_warnings": warnings,
            "targets": targets,
        }),
    );
    println!("wrote {}", path.display());
}

/// The target verdicts: each mutation workload run at 64 clients, against >= 20 k/s and p99 <=
/// 10 ms. `(name, met, text)`.
fn verdicts(outcomes: &[Outcome]) -> Vec<(String, bool, String)> {
    outcomes
        .iter()
        .filter(|o| o.workload.is_mutation() && o.clients == TARGET_CLIENTS)
        .map(|o| {
            let ops = o.ops_per_second();
            let p99 = o.measured.latency.p99_ms;
            (
                o.key(),
                ops >= TARGET_MUTATIONS_PER_SECOND && p99 <= TARGET_P99_MS,
                format!(
                    "{} mutations/s (>= {}), p99 {p99:.3} ms (<= {TARGET_P99_MS})",
                    thousands(ops.round() as u64),
                    thousands(TARGET_MUTATIONS_PER_SECOND as u64)
                ),
            )
        })
        .collect()
}

/// What the preload did.
#[derive(Default)]
struct Preload {
    transfers: u64,
    failed: u64,
    seconds: f64,
}

/// `--preload N`: accounts, then N random transfers in full requests through `tally-client`.
async fn preload_transfers(params: &Params, address: SocketAddr) -> Preload {
    if params.preload == 0 {
        return Preload::default();
    }
    let client = Client::connect(address, 0).await.expect("connect");
    create_accounts(&client, params.accounts).await;
    let mut generator = TransferGen::new(TransferGenOptions {
        accounts: params.accounts,
        seed: params.seed,
        first_id: 1,
    });
    let mut progress = Progress::new("graphql preload");
    let mut events = Vec::with_capacity(REQUEST_EVENTS_MAX);
    let (mut done, mut failed) = (0u64, 0u64);
    let started = Instant::now();
    while done < params.preload {
        let count = (params.preload - done).min(REQUEST_EVENTS_MAX as u64) as usize;
        events.clear();
        generator.fill(&mut events, count);
        let results = client
            .create_transfers(&events)
            .await
            .expect("create_transfers");
        failed += count_failed(&results);
        done += count as u64;
        progress.update(done, params.preload, || {
            format!(
                "{:.0} k tx/s",
                done as f64 / started.elapsed().as_secs_f64() / 1e3
            )
        });
    }
    let seconds = started.elapsed().as_secs_f64();
    progress.finish(&format!(
        "{} transfers in {seconds:.1} s, {failed} failed",
        thousands(done)
    ));
    assert_eq!(failed, 0, "preload transfers failed");
    Preload {
        transfers: done - failed,
        failed,
        seconds,
    }
}

/// `createAsset` and a deposit of `liquidity`; returns the asset's id.
async fn setup_asset(graphql: SocketAddr, liquidity: u64) -> String {
    let mut connection = Connection::open(graphql).await;
    let body = json!({
        "query": CREATE_ASSET,
        "variables": { "input": { "code": "USD", "scale": 2 } },
    })
    .to_string();
    let response = connection
        .post(&body, Check::None)
        .await
        .unwrap_or_else(|e| panic!("createAsset: {e}"));
    let asset = response["data"]["createAsset"]["asset"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("createAsset answered {response}"))
        .to_owned();
    connection
        .post(
            &deposit_body(&asset, liquidity),
            Check::Success("depositAssetLiquidity"),
        )
        .await
        .unwrap_or_else(|e| panic!("setup deposit: {e}"));
    asset
}

fn uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn deposit_body(asset: &str, amount: u64) -> String {
    format!(
        r#"{{"query":"{DEPOSIT}","variables":{{"input":{{"assetId":"{asset}","amount":"{amount}","id":"{}","idempotencyKey":"{}"}}}}}}"#,
        uuid(),
        uuid()
    )
}

fn withdraw_body(asset: &str, id: &str) -> String {
    format!(
        r#"{{"query":"{WITHDRAW}","variables":{{"input":{{"assetId":"{asset}","amount":"1","id":"{id}","idempotencyKey":"{}","timeoutSeconds":"60"}}}}}}"#,
        uuid()
    )
}

fn post_body(withdrawal: &str) -> String {
    format!(
        r#"{{"query":"{POST}","variables":{{"input":{{"withdrawalId":"{withdrawal}","idempotencyKey":"{}"}}}}}}"#,
        uuid()
    )
}

fn query_body(asset: &str) -> String {
    format!(r#"{{"query":"{LIQUIDITY}","variables":{{"id":"{asset}"}}}}"#)
}

/// What one run (a workload at one client count) measured.
struct Measured {
    /// Mutations or queries answered in the timed window.
    ops: u64,
    elapsed: Duration,
    /// The whole run: connections, warm-up and the timed window.
    wall: Duration,
    latency: LatencySummary,
    /// For `withdrawal`: each half alone.
    create_latency: Option<LatencySummary>,
    post_latency: Option<LatencySummary>,
    /// Ledger transfers created, warm-up included (a withdrawal pair: pending + post).
    transfers_created: u64,
    /// Amounts deposited and withdrawn, warm-up included.
    deposits_all: u64,
    withdrawals_all: u64,
}

/// One client's share of a run.
struct ClientResult {
    histogram: hdrhistogram::Histogram<u64>,
    create: hdrhistogram::Histogram<u64>,
    post: hdrhistogram::Histogram<u64>,
    ops: u64,
    iterations_all: u64,
    ended: Instant,
}

async fn run_workload(
    workload: Workload,
    clients: usize,
    params: &Params,
    graphql: SocketAddr,
    asset: &str,
) -> Measured {
    let run_started = Instant::now();
    let mut connections = Vec::with_capacity(clients);
    for _ in 0..clients {
        connections.push(Connection::open(graphql).await);
    }
    let remaining = params.count.map(|count| Arc::new(AtomicU64::new(count)));
    let done = Arc::new(AtomicU64::new(0));
    let warmup_end = Instant::now() + Duration::from_secs_f64(params.warmup);
    let deadline = warmup_end + Duration::from_secs_f64(params.seconds);
    let mut tasks = Vec::with_capacity(clients);
    for mut connection in connections {
        let remaining = remaining.clone();
        let done = done.clone();
        let asset = asset.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut result = ClientResult {
                histogram: report::latency_histogram(),
                create: report::latency_histogram(),
                post: report::latency_histogram(),
                ops: 0,
                iterations_all: 0,
                ended: Instant::now(),
            };
            loop {
                let started = Instant::now();
                // With --count, iterations started after the warm-up draw from the budget.
                if let Some(remaining) = remaining.as_ref().filter(|_| started >= warmup_end) {
                    let per = workload.ops_per_iteration();
                    if remaining
                        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(per))
                        .is_err()
                    {
                        break;
                    }
                } else if remaining.is_none() && started >= deadline {
                    break;
                }
                let ops_before = result.ops;
                // Counted: what completes after the warm-up (so a stall that straddles its end
                // shows in the latency).
                match workload {
                    Workload::Deposit => {
                        connection
                            .post(
                                &deposit_body(&asset, 1),
                                Check::Success("depositAssetLiquidity"),
                            )
                            .await?;
                        let ended = Instant::now();
                        if ended >= warmup_end {
                            report::record_latency(&mut result.histogram, ended - started);
                            result.ops += 1;
                            result.ended = ended;
                        }
                    }
                    Workload::Withdrawal => {
                        let id = uuid();
                        connection
                            .post(
                                &withdraw_body(&asset, &id),
                                Check::Success("createAssetLiquidityWithdrawal"),
                            )
                            .await?;
                        let between = Instant::now();
                        if between >= warmup_end {
                            report::record_latency(&mut result.histogram, between - started);
                            report::record_latency(&mut result.create, between - started);
                            result.ops += 1;
                        }
                        connection
                            .post(&post_body(&id), Check::Success("postLiquidityWithdrawal"))
                            .await?;
                        let ended = Instant::now();
                        if ended >= warmup_end {
                            report::record_latency(&mut result.histogram, ended - between);
                            report::record_latency(&mut result.post, ended - between);
                            result.ops += 1;
                            result.ended = ended;
                        }
                    }
                    Workload::Query => {
                        connection
                            .post(&query_body(&asset), Check::Liquidity)
                            .await?;
                        let ended = Instant::now();
                        if ended >= warmup_end {
                            report::record_latency(&mut result.histogram, ended - started);
                            result.ops += 1;
                            result.ended = ended;
                        }
                    }
                }
                result.iterations_all += 1;
                done.fetch_add(result.ops - ops_before, Ordering::Relaxed);
            }
            Ok::<ClientResult, String>(result)
        }));
    }

    let label = format!("graphql {} x{clients}", workload.name());
    let mut progress = Progress::new(label);
    let total = params.count.unwrap_or((params.seconds * 1000.0) as u64);
    while !tasks.iter().all(|task| task.is_finished()) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let count = done.load(Ordering::Relaxed);
        let since = Instant::now().saturating_duration_since(warmup_end);
        let shown = if params.count.is_some() {
            count
        } else {
            since.as_millis() as u64
        };
        progress.update(shown.min(total), total, || {
            format!(
                "{} ops, {:.1} k ops/s",
                thousands(count),
                count as f64 / since.as_secs_f64().max(1e-3) / 1e3
            )
        });
    }
    let mut histogram = report::latency_histogram();
    let mut create = report::latency_histogram();
    let mut post = report::latency_histogram();
    let (mut ops, mut iterations_all) = (0, 0);
    let mut last = warmup_end;
    for task in tasks {
        let result = task
            .await
            .expect("client task")
            .unwrap_or_else(|error| panic!("{} run failed: {error}", workload.name()));
        histogram.add(&result.histogram).expect("same bounds");
        create.add(&result.create).expect("same bounds");
        post.add(&result.post).expect("same bounds");
        ops += result.ops;
        iterations_all += result.iterations_all;
        last = last.max(result.ended);
    }
    let withdrawal = workload == Workload::Withdrawal;
    let measured = Measured {
        ops,
        elapsed: last.saturating_duration_since(warmup_end),
        wall: run_started.elapsed(),
        latency: LatencySummary::of(&histogram),
        create_latency: withdrawal.then(|| LatencySummary::of(&create)),
        post_latency: withdrawal.then(|| LatencySummary::of(&post)),
        transfers_created: match workload {
            Workload::Deposit => iterations_all,
            Workload::Withdrawal => 2 * iterations_all,
            Workload::Query => 0,
        },
        deposits_all: if workload == Workload::Deposit {
            iterations_all
        } else {
            0
        },
        withdrawals_all: if withdrawal { iterations_all } else { 0 },
    };
    progress.finish(&format!(
        "{} ops in {:.2} s, {:.1} k ops/s, p99 {:.3} ms",
        thousands(measured.ops),
        measured.elapsed.as_secs_f64(),
        measured.ops as f64 / measured.elapsed.as_secs_f64().max(1e-9) / 1e3,
        measured.latency.p99_ms
    ));
    measured
}

/// This process's CPU time (user + system, all threads).
pub(crate) fn own_cpu_time() -> Duration {
    // SAFETY: getrusage fills the struct it is given; a zeroed rusage is a valid value.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let micros = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    Duration::from_micros(micros(usage.ru_utime) + micros(usage.ru_stime))
}

struct Outcome {
    workload: Workload,
    clients: usize,
    ledger_transfers_start: u64,
    server_cpu: Duration,
    client_cpu: Duration,
    /// Checkpoints the server wrote during the run (its `checkpoint` log lines).
    checkpoints: Vec<tally::Checkpoint>,
    measured: Measured,
}

impl Outcome {
    fn key(&self) -> String {
        format!("{}_{}", self.workload.name(), self.clients)
    }

    fn ops_per_second(&self) -> f64 {
        self.measured.ops as f64 / self.measured.elapsed.as_secs_f64().max(1e-9)
    }

    /// CPU seconds per second of the whole run (connections and warm-up included, as the CPU
    /// counters are).
    fn cpu_share(&self, cpu: Duration) -> f64 {
        cpu.as_secs_f64() / self.measured.wall.as_secs_f64().max(1e-9)
    }

    fn to_json(&self) -> Value {
        let m = &self.measured;
        let mut o = Map::new();
        o.insert("workload".into(), json!(self.workload.name()));
        o.insert("clients".into(), json!(self.clients));
        o.insert(
            if self.workload.is_mutation() {
                "mutations"
            } else {
                "queries"
            }
            .into(),
            json!(m.ops),
        );
        o.insert("errors".into(), json!(0));
        o.insert("seconds".into(), json!(round(m.elapsed.as_secs_f64(), 4)));
        o.insert(
            "ops_per_second".into(),
            json!(self.ops_per_second().round()),
        );
        m.latency.insert_into(&mut o, "requests");
        for (key, latency) in [("create", &m.create_latency), ("post", &m.post_latency)] {
            if let Some(latency) = latency {
                let mut part = Map::new();
                latency.insert_into(&mut part, "requests");
                o.insert(format!("{key}_latency"), Value::Object(part));
            }
        }
        o.insert("server_checkpoints".into(), json!(self.checkpoints.len()));
        // What each cost the server, as its log line says.
        o.insert(
            "server_checkpoint_lines".into(),
            Value::Array(
                self.checkpoints
                    .iter()
                    .map(|checkpoint| Value::Object(checkpoint.fields.clone()))
                    .collect(),
            ),
        );
        o.insert(
            "ledger_transfers_start".into(),
            json!(self.ledger_transfers_start),
        );
        o.insert(
            "server_cpu_per_second".into(),
            json!(round(self.cpu_share(self.server_cpu), 3)),
        );
        o.insert(
            "client_cpu_per_second".into(),
            json!(round(self.cpu_share(self.client_cpu), 3)),
        );
        Value::Object(o)
    }
}

fn table(outcomes: &[Outcome]) -> Table {
    let mut table = Table::new(&[
        "workload",
        "clients",
        "ledger tx",
        "ops",
        "ops/s",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
        "p100 ms",
        "cpu srv/cli",
        "ckpts",
    ]);
    for outcome in outcomes {
        let m = &outcome.measured;
        table.row(vec![
            outcome.workload.name().into(),
            outcome.clients.to_string(),
            thousands(outcome.ledger_transfers_start),
            thousands(m.ops),
            thousands(outcome.ops_per_second().round() as u64),
            format!("{:.3}", m.latency.p50_ms),
            format!("{:.3}", m.latency.p99_ms),
            format!("{:.3}", m.latency.p999_ms),
            format!("{:.3}", m.latency.p100_ms),
            format!(
                "{:.2}/{:.2}",
                outcome.cpu_share(outcome.server_cpu),
                outcome.cpu_share(outcome.client_cpu)
            ),
            outcome.checkpoints.len().to_string(),
        ]);
    }
    table
}
