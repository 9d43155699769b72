//! `payments`: the whole local payment flow over Rafiki's Admin API, against a real `tally start`
//! child (issue 8).
//!
//! Setup, over GraphQL: one asset (USD, scale 2) with a large liquidity deposit, a sending fee of
//! 1 % + 2, and `--addresses` sender and as many receiver wallet addresses. The server runs
//! with its defaults for payments (`--open-payments-url http://127.0.0.1:3003`, no exchange
//! rates: every payment stays in one asset).
//!
//! Each client, in a loop, makes one payment, four mutations one after the other, each with an
//! idempotency key as an ASE would send it:
//!
//! 1. `createIncomingPayment` on its receiver with `incomingAmount` 500;
//! 2. `createQuote` from its sender to `http://127.0.0.1:3003/incoming-payments/<id>` (no amount:
//!    the receiver's remaining 500; `debitAmount` 507 with the fee, checked);
//! 3. `createOutgoingPayment` of the quote (FUNDING, checked);
//! 4. `depositOutgoingPaymentLiquidity` (the fund step): the deposit of 507 and the payment of
//!    500 to the incoming payment, in the one journaled command that completes both.
//!
//! Runs at 1, 16 and 64 concurrent clients (`--clients`), for `--seconds` after `--warmup`
//! seconds not counted, or for `--count` payments. A payment counts when its fund step
//! completes in the measured window. Latency: the whole flow (four requests) and each step
//! alone, the fund step above all. After the last run a verify pass reads every payment made
//! (warm-up included) with the `outgoingPayment` query, `--verify-clients` at a time, and
//! checks it is COMPLETED with 500 sent; the asset's liquidity must not have moved (a payment
//! within one asset never touches it). Nothing is verified inside the timed loop beyond the
//! answers themselves.
//!
//! Client side as `graphql`: one HTTP/1.1 keep-alive connection per client, one request in
//! flight, all clients on one tokio thread (`--client-threads` for more).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use crate::harness::admin_api::{Check, Connection};
use crate::harness::child::Stream;
use crate::harness::data_dir::DataDir;
use crate::harness::options::ServerArgs;
use crate::harness::report::{self, round, thousands, LatencySummary, Progress, Stamp, Table};
use crate::harness::tally::{self, Tally};
use crate::harness::workload::client_runtime;
use crate::scenarios::graphql::own_cpu_time;

const DEFAULT_SECONDS: f64 = 5.0;
const DEFAULT_WARMUP_SECONDS: f64 = 1.0;
const DEFAULT_CLIENTS: [usize; 3] = [1, 16, 64];
const SMOKE_CLIENTS: [usize; 2] = [1, 4];
/// Payments per run with `--smoke`.
const SMOKE_COUNT: u64 = 8;
/// Sender (and receiver) wallet addresses: one pair per client at the largest client count.
const DEFAULT_ADDRESSES: usize = 64;
const SMOKE_ADDRESSES: usize = 4;
/// Most wallet addresses of each kind the setup creates (it creates them one at a time).
const ADDRESSES_MAX: usize = 4096;
/// The asset's liquidity: what a cross-asset payment would draw on; these never do.
const DEFAULT_LIQUIDITY: u64 = 1_000_000_000_000_000;
/// Transfers the server's index is sized for (`--transfers-max`), as `graphql` starts it.
const TRANSFERS_MAX: u64 = 8_000_000;
/// Connections of the verify pass.
const DEFAULT_VERIFY_CLIENTS: usize = 16;

/// Each payment: 500 cents arrive; the sending fee of 1 % + 2 makes the debit 507.
const INCOMING_AMOUNT: u64 = 500;
const FEE_FIXED: u64 = 2;
const FEE_BASIS_POINTS: u64 = 100;
const DEBIT_AMOUNT: u64 = INCOMING_AMOUNT + INCOMING_AMOUNT * FEE_BASIS_POINTS / 10_000 + FEE_FIXED;
const _: () = assert!(
    (INCOMING_AMOUNT * FEE_BASIS_POINTS).is_multiple_of(10_000),
    "the fee's percentage is whole, so the debit needs no rounding here"
);
/// The server's default `--open-payments-url`: receivers are incoming payments under it.
const OPEN_PAYMENTS_URL: &str = "http://127.0.0.1:3003";

// Targets (issue 8: local payments over HTTP on this 2-core machine, 64 concurrent clients).
const TARGET_PAYMENTS_PER_SECOND: f64 = 5_000.0;
const TARGET_FUND_P99_MS: f64 = 10.0;
const TARGET_CLIENTS: usize = 64;

const CREATE_ASSET: &str =
    "mutation($input: CreateAssetInput!) { createAsset(input: $input) { asset { id } } }";
const DEPOSIT: &str = "mutation($input: DepositAssetLiquidityInput!) { depositAssetLiquidity(input: $input) { success } }";
const SET_FEE: &str = "mutation($input: SetFeeInput!) { setFee(input: $input) { fee { id } } }";
const CREATE_WALLET_ADDRESS: &str = "mutation($input: CreateWalletAddressInput!) { createWalletAddress(input: $input) { walletAddress { id } } }";
const CREATE_INCOMING: &str = "mutation($input: CreateIncomingPaymentInput!) { createIncomingPayment(input: $input) { payment { id } } }";
const CREATE_QUOTE: &str = "mutation($input: CreateQuoteInput!) { createQuote(input: $input) { quote { id debitAmount { value } } } }";
const CREATE_OUTGOING: &str = "mutation($input: CreateOutgoingPaymentInput!) { createOutgoingPayment(input: $input) { payment { id state } } }";
const FUND: &str = "mutation($input: DepositOutgoingPaymentLiquidityInput!) { depositOutgoingPaymentLiquidity(input: $input) { success } }";
const OUTGOING: &str =
    "query($id: String!) { outgoingPayment(id: $id) { state sentAmount { value } } }";
const LIQUIDITY: &str = "query($id: String!) { asset(id: $id) { liquidity } }";

/// `payments`' command line.
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Seconds of each measured run (one client count) [default: 5]
    #[arg(long)]
    seconds: Option<f64>,
    /// Run each client count for this many payments (all clients together) instead of for a
    /// duration [default with --smoke: 8]
    #[arg(long)]
    count: Option<u64>,
    /// Seconds of payments before each measured run, not counted [default: 1; 0 with --smoke]
    #[arg(long)]
    warmup: Option<f64>,
    /// Concurrent clients (connections), one run per value [default: 1,16,64; 1,4 with --smoke]
    #[arg(long, value_delimiter = ',')]
    clients: Vec<usize>,
    /// Sender wallet addresses, and as many receivers; client i pays from sender i to receiver
    /// i (modulo) [default: 64; 4 with --smoke]
    #[arg(long)]
    addresses: Option<usize>,
    /// Liquidity deposited into the asset at setup
    #[arg(long, default_value_t = DEFAULT_LIQUIDITY)]
    liquidity: u64,
    /// Threads of the client side's tokio runtime (1: current-thread runtime)
    #[arg(long, default_value_t = 1)]
    client_threads: usize,
    /// Start the server with `--transfers-max N`
    #[arg(long, default_value_t = TRANSFERS_MAX)]
    transfers_max: u64,
    /// Connections of the verify pass after the runs
    #[arg(long, default_value_t = DEFAULT_VERIFY_CLIENTS)]
    verify_clients: usize,
    #[command(flatten)]
    server: ServerArgs,
}

struct Params {
    seconds: f64,
    count: Option<u64>,
    warmup: f64,
    clients: Vec<usize>,
    addresses: usize,
    liquidity: u64,
    client_threads: usize,
    transfers_max: u64,
    verify_clients: usize,
    smoke: bool,
}

impl Params {
    fn of(args: &Args) -> Params {
        let smoke = args.server.smoke;
        let params = Params {
            seconds: args.seconds.unwrap_or(DEFAULT_SECONDS),
            count: args.count.or(smoke.then_some(SMOKE_COUNT)),
            warmup: args
                .warmup
                .unwrap_or(if smoke { 0.0 } else { DEFAULT_WARMUP_SECONDS }),
            clients: if !args.clients.is_empty() {
                args.clients.clone()
            } else if smoke {
                SMOKE_CLIENTS.to_vec()
            } else {
                DEFAULT_CLIENTS.to_vec()
            },
            addresses: args.addresses.unwrap_or(if smoke {
                SMOKE_ADDRESSES
            } else {
                DEFAULT_ADDRESSES
            }),
            liquidity: args.liquidity,
            client_threads: args.client_threads,
            transfers_max: args.transfers_max,
            verify_clients: args.verify_clients,
            smoke,
        };
        if params.seconds <= 0.0
            || params.warmup < 0.0
            || params.clients.contains(&0)
            || params.client_threads == 0
            || params.count == Some(0)
            || !(1..=ADDRESSES_MAX).contains(&params.addresses)
            || params.verify_clients == 0
            || params.liquidity == 0
        {
            eprintln!(
                "need --seconds > 0, --warmup >= 0, --clients >= 1, --client-threads >= 1, \
                 --count >= 1, --addresses in 1..={ADDRESSES_MAX}, --verify-clients >= 1 and \
                 --liquidity >= 1"
            );
            std::process::exit(2);
        }
        params
    }
}

/// The four mutations of a payment, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Incoming,
    Quote,
    Outgoing,
    Fund,
}

impl Step {
    const ALL: [Step; 4] = [Step::Incoming, Step::Quote, Step::Outgoing, Step::Fund];

    fn name(self) -> &'static str {
        match self {
            Step::Incoming => "create_incoming_payment",
            Step::Quote => "create_quote",
            Step::Outgoing => "create_outgoing_payment",
            Step::Fund => "fund",
        }
    }
}

/// What the setup made: the asset and the wallet addresses' ids.
struct World {
    asset: String,
    senders: Vec<String>,
    receivers: Vec<String>,
}

/// Runs the scenario: prints the tables, writes `payments.json`.
pub(crate) fn run(args: Args) {
    let params = Params::of(&args);
    let stamp = Stamp::now();
    let mut tally = Tally::new(&args.server);
    tally.args = vec![
        "--transfers-max".to_string(),
        params.transfers_max.to_string(),
    ];
    tally.env = vec![("TALLY_GRAPHQL_ADDRESS".into(), "127.0.0.1:0".into())];
    let data = DataDir::new(&args.server, "payments");
    eprintln!(
        "[payments] tally {} on {} (filesystem {})",
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
    eprintln!("[payments] Admin API on http://{graphql}/graphql");
    let runtime = if params.client_threads == 1 {
        client_runtime()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(params.client_threads)
            .enable_all()
            .build()
            .expect("tokio runtime")
    };

    let world = Arc::new(runtime.block_on(setup(graphql, &params)));
    eprintln!(
        "[payments] asset {}, {} senders and {} receivers",
        world.asset,
        world.senders.len(),
        world.receivers.len()
    );
    let mut outcomes = Vec::with_capacity(params.clients.len());
    let mut payments_made = Vec::new();
    for &clients in &params.clients {
        let checkpoints_before = tally::checkpoints(&server.process.stderr_lines()).len();
        let cpu_server = server.process.cpu_time();
        let cpu_client = own_cpu_time();
        let (measured, made) =
            runtime.block_on(run_clients(clients, &params, graphql, world.clone()));
        outcomes.push(Outcome {
            clients,
            server_cpu: server.process.cpu_time().saturating_sub(cpu_server),
            client_cpu: own_cpu_time().saturating_sub(cpu_client),
            checkpoints: tally::checkpoints(&server.process.stderr_lines())
                .split_off(checkpoints_before),
            payments_all: made.len() as u64,
            measured,
        });
        payments_made.extend(made);
    }
    let verified = runtime.block_on(verify(graphql, &params, &world, &payments_made));
    let memory = server.process.memory();
    let (_, lines) = server.process.terminate();
    let warnings = tally::warnings(&lines);

    print!("{}", table(&outcomes).render());
    print!("\n{}", steps_table(&outcomes).render());
    // How long each checkpoint stopped the core (`head_us`, `step_us_max`): the tail's cause.
    for outcome in &outcomes {
        for checkpoint in &outcome.checkpoints {
            println!(
                "checkpoint during x{}: {}",
                outcome.clients,
                checkpoint.fields_text()
            );
        }
    }
    println!(
        "\npayments/s: payments whose fund step completed in the measured window, per second, all \
         clients together; each is 4 mutations (createIncomingPayment, createQuote, \
         createOutgoingPayment, depositOutgoingPaymentLiquidity). flow: latency of the 4 \
         requests of one payment; fund: depositOutgoingPaymentLiquidity alone. cpu: server / \
         bench client CPU seconds per second of the run (2 cores here). ckpts: checkpoints the \
         server wrote during the run.\nTarget (issue 8): >= 5,000 completed local payments/s \
         and fund p99 <= 10 ms at 64 clients."
    );
    let verdicts = verdicts(&outcomes);
    for (name, met, text) in &verdicts {
        println!(
            "target {name}: {text} -> {}",
            if *met { "met" } else { "MISSED" }
        );
    }
    println!(
        "verified: {} payments COMPLETED with {INCOMING_AMOUNT} sent; the asset's liquidity \
         unchanged",
        thousands(verified)
    );
    tally::print_warnings(&warnings);

    let params_json = json!({
        "seconds": params.count.is_none().then_some(params.seconds),
        "count": params.count,
        "warmup_seconds": params.warmup,
        "clients": params.clients,
        "addresses": params.addresses,
        "liquidity": params.liquidity,
        "client_threads": params.client_threads,
        "server_transfers_max": params.transfers_max,
        "verify_clients": params.verify_clients,
        "smoke": params.smoke,
        "http": "HTTP/1.1 keep-alive, one connection per client, one request in flight (harness::admin_api: one write per request, httparse for the head)",
        "incoming_amount": INCOMING_AMOUNT,
        "debit_amount": DEBIT_AMOUNT,
        "sending_fee": { "fixed": FEE_FIXED, "basis_points": FEE_BASIS_POINTS },
        "open_payments_url": OPEN_PAYMENTS_URL,
        "tally": tally.binary.display().to_string(),
        "data_dir": data.path.display().to_string(),
        "filesystem": data.filesystem(),
    });
    let mut runs = Map::new();
    for outcome in &outcomes {
        runs.insert(format!("payments_{}", outcome.clients), outcome.to_json());
    }
    let mut targets = Map::new();
    targets.insert(
        "payments_per_second_min".into(),
        json!(TARGET_PAYMENTS_PER_SECOND),
    );
    targets.insert("fund_p99_ms_max".into(), json!(TARGET_FUND_P99_MS));
    targets.insert("clients".into(), json!(TARGET_CLIENTS));
    for (name, met, _) in &verdicts {
        targets.insert(format!("{name}_met"), json!(met));
    }
    let path = report::write_json(
        "payments",
        &stamp,
        params_json,
        json!({
            "runs": runs,
            "verified": verified,
            "server_rss_bytes_end": memory.rss_bytes,
            "server_hwm_bytes_end": memory.hwm_bytes,
            "server_warnings": warnings,
            "targets": targets,
        }),
    );
    println!("wrote {}", path.display());
}

/// The asset, its liquidity and sending fee, and the wallet addresses.
async fn setup(graphql: SocketAddr, params: &Params) -> World {
    let mut connection = Connection::open(graphql).await;
    let asset = post_for(
        &mut connection,
        CREATE_ASSET,
        json!({ "code": "USD", "scale": 2 }),
        &["createAsset", "asset", "id"],
    )
    .await;
    post_for(
        &mut connection,
        DEPOSIT,
        json!({
            "assetId": asset,
            "amount": params.liquidity.to_string(),
            "id": uuid(),
            "idempotencyKey": uuid(),
        }),
        &["depositAssetLiquidity", "success"],
    )
    .await;
    post_for(
        &mut connection,
        SET_FEE,
        json!({
            "assetId": asset,
            "type": "SENDING",
            "fee": { "fixed": FEE_FIXED.to_string(), "basisPoints": FEE_BASIS_POINTS },
        }),
        &["setFee", "fee", "id"],
    )
    .await;
    let mut world = World {
        asset,
        senders: Vec::with_capacity(params.addresses),
        receivers: Vec::with_capacity(params.addresses),
    };
    for n in 0..params.addresses {
        for (kind, ids) in [("s", &mut world.senders), ("r", &mut world.receivers)] {
            let id = post_for(
                &mut connection,
                CREATE_WALLET_ADDRESS,
                json!({
                    "assetId": world.asset,
                    "url": format!("https://tally.bench/{kind}{n}"),
                    "publicName": format!("{kind}{n}"),
                }),
                &["createWalletAddress", "walletAddress", "id"],
            )
            .await;
            ids.push(id);
        }
    }
    world
}

/// Posts a setup mutation and returns the string at `path` under `data` (a `true` as "true");
/// panics with the answer otherwise.
async fn post_for(connection: &mut Connection, query: &str, input: Value, path: &[&str]) -> String {
    let body = json!({ "query": query, "variables": { "input": input } }).to_string();
    let response = connection
        .post(&body, Check::None)
        .await
        .unwrap_or_else(|e| panic!("setup: {e}"));
    let found = path
        .iter()
        .fold(&response["data"], |value, key| &value[*key]);
    match found {
        Value::String(text) => text.clone(),
        Value::Bool(true) => "true".into(),
        _ => panic!("setup: {query} answered {response}"),
    }
}

fn uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The string at `data.<path>` of an answer, or what was wrong.
fn answer<'a>(response: &'a Value, path: &[&str]) -> Result<&'a str, String> {
    path.iter()
        .fold(&response["data"], |value, key| &value[*key])
        .as_str()
        .ok_or_else(|| format!("no data.{} in {response}", path.join(".")))
}

fn incoming_body(receiver: &str) -> String {
    format!(
        r#"{{"query":"{CREATE_INCOMING}","variables":{{"input":{{"walletAddressId":"{receiver}","incomingAmount":{{"value":"{INCOMING_AMOUNT}","assetCode":"USD","assetScale":2}},"idempotencyKey":"{}"}}}}}}"#,
        uuid()
    )
}

fn quote_body(sender: &str, incoming: &str) -> String {
    format!(
        r#"{{"query":"{CREATE_QUOTE}","variables":{{"input":{{"walletAddressId":"{sender}","receiver":"{OPEN_PAYMENTS_URL}/incoming-payments/{incoming}","idempotencyKey":"{}"}}}}}}"#,
        uuid()
    )
}

fn outgoing_body(sender: &str, quote: &str) -> String {
    format!(
        r#"{{"query":"{CREATE_OUTGOING}","variables":{{"input":{{"walletAddressId":"{sender}","quoteId":"{quote}","idempotencyKey":"{}"}}}}}}"#,
        uuid()
    )
}

fn fund_body(payment: &str) -> String {
    format!(
        r#"{{"query":"{FUND}","variables":{{"input":{{"outgoingPaymentId":"{payment}","idempotencyKey":"{}"}}}}}}"#,
        uuid()
    )
}

/// One payment, its four requests in order; returns the outgoing payment's id and when each
/// step ended.
async fn pay(
    connection: &mut Connection,
    sender: &str,
    receiver: &str,
) -> Result<(String, [Instant; 4]), String> {
    let response = connection
        .post(&incoming_body(receiver), Check::None)
        .await?;
    let incoming = answer(&response, &["createIncomingPayment", "payment", "id"])?.to_owned();
    let created = Instant::now();
    let response = connection
        .post(&quote_body(sender, &incoming), Check::None)
        .await?;
    let quote = answer(&response, &["createQuote", "quote", "id"])?.to_owned();
    let debit = answer(&response, &["createQuote", "quote", "debitAmount", "value"])?;
    if debit != DEBIT_AMOUNT.to_string() {
        return Err(format!("quote debits {debit}, not {DEBIT_AMOUNT}"));
    }
    let quoted = Instant::now();
    let response = connection
        .post(&outgoing_body(sender, &quote), Check::None)
        .await?;
    let payment = answer(&response, &["createOutgoingPayment", "payment", "id"])?.to_owned();
    let state = answer(&response, &["createOutgoingPayment", "payment", "state"])?;
    if state != "FUNDING" {
        return Err(format!("a new payment is {state}, not FUNDING"));
    }
    let ordered = Instant::now();
    connection
        .post(
            &fund_body(&payment),
            Check::Success("depositOutgoingPaymentLiquidity"),
        )
        .await?;
    Ok((payment, [created, quoted, ordered, Instant::now()]))
}

/// What one run (one client count) measured.
struct Measured {
    /// Payments whose fund step completed in the timed window.
    payments: u64,
    elapsed: Duration,
    /// The whole run: connections, warm-up and the timed window.
    wall: Duration,
    flow: LatencySummary,
    /// Each step alone, in `Step::ALL` order.
    steps: [LatencySummary; 4],
}

/// One client's share of a run.
struct ClientResult {
    flow: hdrhistogram::Histogram<u64>,
    steps: [hdrhistogram::Histogram<u64>; 4],
    payments: u64,
    /// Every payment it made, warm-up included, for the verify pass.
    made: Vec<String>,
    ended: Instant,
}

impl ClientResult {
    fn new() -> ClientResult {
        ClientResult {
            flow: report::latency_histogram(),
            steps: std::array::from_fn(|_| report::latency_histogram()),
            payments: 0,
            made: Vec::new(),
            ended: Instant::now(),
        }
    }

    /// Counts a payment that started at `started` and whose steps ended at `ends`.
    fn record(&mut self, started: Instant, ends: [Instant; 4]) {
        report::record_latency(&mut self.flow, ends[3] - started);
        let mut begun = started;
        for (histogram, end) in self.steps.iter_mut().zip(ends) {
            report::record_latency(histogram, end - begun);
            begun = end;
        }
        self.payments += 1;
        self.ended = ends[3];
    }
}

/// Runs `clients` clients; returns the figures and the payments made (warm-up included).
async fn run_clients(
    clients: usize,
    params: &Params,
    graphql: SocketAddr,
    world: Arc<World>,
) -> (Measured, Vec<String>) {
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
    for (client, mut connection) in connections.into_iter().enumerate() {
        let remaining = remaining.clone();
        let done = done.clone();
        let world = world.clone();
        tasks.push(tokio::spawn(async move {
            let sender = &world.senders[client % world.senders.len()];
            let receiver = &world.receivers[client % world.receivers.len()];
            let mut result = ClientResult::new();
            loop {
                let started = Instant::now();
                // With --count, payments started after the warm-up draw from the budget.
                if let Some(remaining) = remaining.as_ref().filter(|_| started >= warmup_end) {
                    let budget =
                        remaining.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                            n.checked_sub(1)
                        });
                    if budget.is_err() {
                        break;
                    }
                } else if remaining.is_none() && started >= deadline {
                    break;
                }
                let (payment, ends) = pay(&mut connection, sender, receiver).await?;
                result.made.push(payment);
                // Counted: payments whose fund step completes after the warm-up.
                if ends[3] >= warmup_end {
                    result.record(started, ends);
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
            Ok::<ClientResult, String>(result)
        }));
    }

    let mut progress = Progress::new(format!("payments x{clients}"));
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
                "{} payments, {:.2} k/s",
                thousands(count),
                count as f64 / since.as_secs_f64().max(1e-3) / 1e3
            )
        });
    }
    let mut all = ClientResult::new();
    let mut last = warmup_end;
    for task in tasks {
        let result = task
            .await
            .expect("client task")
            .unwrap_or_else(|error| panic!("payments x{clients} failed: {error}"));
        all.flow.add(&result.flow).expect("same bounds");
        for (mine, theirs) in all.steps.iter_mut().zip(&result.steps) {
            mine.add(theirs).expect("same bounds");
        }
        all.payments += result.payments;
        all.made.extend(result.made);
        last = last.max(result.ended);
    }
    let measured = Measured {
        payments: all.payments,
        elapsed: last.saturating_duration_since(warmup_end),
        wall: run_started.elapsed(),
        flow: LatencySummary::of(&all.flow),
        steps: std::array::from_fn(|step| LatencySummary::of(&all.steps[step])),
    };
    progress.finish(&format!(
        "{} payments in {:.2} s, {:.2} k/s, fund p99 {:.3} ms",
        thousands(measured.payments),
        measured.elapsed.as_secs_f64(),
        measured.payments as f64 / measured.elapsed.as_secs_f64().max(1e-9) / 1e3,
        measured.steps[3].p99_ms
    ));
    (measured, all.made)
}

/// Reads every payment back (`outgoingPayment`): COMPLETED, with the incoming amount sent; and
/// the asset's liquidity as deposited. Returns how many payments were read.
async fn verify(graphql: SocketAddr, params: &Params, world: &World, payments: &[String]) -> u64 {
    let mut progress = Progress::new("payments verify");
    let share = payments.len().div_ceil(params.verify_clients).max(1);
    let mut tasks = Vec::with_capacity(params.verify_clients);
    for chunk in payments.chunks(share) {
        let chunk = chunk.to_vec();
        let mut connection = Connection::open(graphql).await;
        tasks.push(tokio::spawn(async move {
            for payment in &chunk {
                let body = format!(r#"{{"query":"{OUTGOING}","variables":{{"id":"{payment}"}}}}"#);
                let response = connection.post(&body, Check::None).await?;
                let state = answer(&response, &["outgoingPayment", "state"])?;
                let sent = answer(&response, &["outgoingPayment", "sentAmount", "value"])?;
                if state != "COMPLETED" || sent != INCOMING_AMOUNT.to_string() {
                    return Err(format!("payment {payment} is {state} with {sent} sent"));
                }
            }
            Ok::<u64, String>(chunk.len() as u64)
        }));
    }
    let mut verified = 0;
    for task in tasks {
        verified += task
            .await
            .expect("verify task")
            .unwrap_or_else(|error| panic!("verify: {error}"));
        progress.update(verified, payments.len() as u64, String::new);
    }
    let mut connection = Connection::open(graphql).await;
    let body = format!(
        r#"{{"query":"{LIQUIDITY}","variables":{{"id":"{}"}}}}"#,
        world.asset
    );
    let response = connection
        .post(&body, Check::None)
        .await
        .unwrap_or_else(|e| panic!("liquidity query: {e}"));
    let liquidity = answer(&response, &["asset", "liquidity"]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        liquidity,
        params.liquidity.to_string(),
        "payments within one asset never touch its liquidity"
    );
    progress.finish(&format!("{} payments COMPLETED", thousands(verified)));
    verified
}

struct Outcome {
    clients: usize,
    server_cpu: Duration,
    client_cpu: Duration,
    /// Checkpoints the server wrote during the run (its `checkpoint` log lines).
    checkpoints: Vec<tally::Checkpoint>,
    /// Payments made, warm-up included (the CPU counters cover them all).
    payments_all: u64,
    measured: Measured,
}

impl Outcome {
    fn payments_per_second(&self) -> f64 {
        self.measured.payments as f64 / self.measured.elapsed.as_secs_f64().max(1e-9)
    }

    /// CPU seconds per second of the whole run (connections and warm-up included, as the CPU
    /// counters are).
    fn cpu_share(&self, cpu: Duration) -> f64 {
        cpu.as_secs_f64() / self.measured.wall.as_secs_f64().max(1e-9)
    }

    /// Server CPU per payment made, in µs (the run's payments, warm-up included).
    fn server_cpu_us_per_payment(&self) -> f64 {
        self.server_cpu.as_secs_f64() * 1e6 / self.payments_all.max(1) as f64
    }

    fn to_json(&self) -> Value {
        let m = &self.measured;
        let mut o = Map::new();
        o.insert("clients".into(), json!(self.clients));
        o.insert("payments".into(), json!(m.payments));
        o.insert("errors".into(), json!(0));
        o.insert("seconds".into(), json!(round(m.elapsed.as_secs_f64(), 4)));
        o.insert(
            "payments_per_second".into(),
            json!(self.payments_per_second().round()),
        );
        o.insert(
            "mutations_per_second".into(),
            json!((4.0 * self.payments_per_second()).round()),
        );
        m.flow.insert_into(&mut o, "flows");
        for (step, latency) in Step::ALL.iter().zip(&m.steps) {
            let mut part = Map::new();
            latency.insert_into(&mut part, "requests");
            o.insert(format!("{}_latency", step.name()), Value::Object(part));
        }
        o.insert("server_checkpoints".into(), json!(self.checkpoints.len()));
        o.insert("payments_all".into(), json!(self.payments_all));
        o.insert(
            "server_cpu_per_second".into(),
            json!(round(self.cpu_share(self.server_cpu), 3)),
        );
        o.insert(
            "client_cpu_per_second".into(),
            json!(round(self.cpu_share(self.client_cpu), 3)),
        );
        o.insert(
            "server_cpu_us_per_payment".into(),
            json!(round(self.server_cpu_us_per_payment(), 1)),
        );
        Value::Object(o)
    }
}

fn table(outcomes: &[Outcome]) -> Table {
    let mut table = Table::new(&[
        "clients",
        "payments",
        "payments/s",
        "flow p50 ms",
        "p99",
        "p99.9",
        "p100",
        "fund p50 ms",
        "p99",
        "p99.9",
        "p100",
        "cpu srv/cli",
        "srv us/pay",
        "ckpts",
    ]);
    for outcome in outcomes {
        let m = &outcome.measured;
        let fund = &m.steps[3];
        table.row(vec![
            outcome.clients.to_string(),
            thousands(m.payments),
            thousands(outcome.payments_per_second().round() as u64),
            format!("{:.3}", m.flow.p50_ms),
            format!("{:.3}", m.flow.p99_ms),
            format!("{:.3}", m.flow.p999_ms),
            format!("{:.3}", m.flow.p100_ms),
            format!("{:.3}", fund.p50_ms),
            format!("{:.3}", fund.p99_ms),
            format!("{:.3}", fund.p999_ms),
            format!("{:.3}", fund.p100_ms),
            format!(
                "{:.2}/{:.2}",
                outcome.cpu_share(outcome.server_cpu),
                outcome.cpu_share(outcome.client_cpu)
            ),
            format!("{:.0}", outcome.server_cpu_us_per_payment()),
            outcome.checkpoints.len().to_string(),
        ]);
    }
    table
}

/// Each step's p50 and p99, per client count.
fn steps_table(outcomes: &[Outcome]) -> Table {
    let mut headers = vec!["clients".to_string()];
    for step in Step::ALL {
        headers.push(format!("{} p50/p99 ms", step.name()));
    }
    let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
    let mut table = Table::new(&headers);
    for outcome in outcomes {
        let mut row = vec![outcome.clients.to_string()];
        for latency in &outcome.measured.steps {
            row.push(format!("{:.3}/{:.3}", latency.p50_ms, latency.p99_ms));
        }
        table.row(row);
    }
    table
}

/// The target verdict of each run at 64 clients: >= 5,000 payments/s and fund p99 <= 10 ms.
/// `(name, met, text)`.
fn verdicts(outcomes: &[Outcome]) -> Vec<(String, bool, String)> {
    outcomes
        .iter()
        .filter(|o| o.clients == TARGET_CLIENTS)
        .map(|o| {
            let rate = o.payments_per_second();
            let p99 = o.measured.steps[3].p99_ms;
            (
                format!("payments_{}", o.clients),
                rate >= TARGET_PAYMENTS_PER_SECOND && p99 <= TARGET_FUND_P99_MS,
                format!(
                    "{} payments/s (>= {}), fund p99 {p99:.3} ms (<= {TARGET_FUND_P99_MS})",
                    thousands(rate.round() as u64),
                    thousands(TARGET_PAYMENTS_PER_SECOND as u64)
                ),
            )
        })
        .collect()
}
