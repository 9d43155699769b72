//! `durable`: a real `tally start` child on a real disk, driven through `tally-client`.
//!
//! A fresh data directory (by default a temp dir under the target directory, which is on the
//! real disk; `/tmp` may be tmpfs, where fsync costs nothing), 10,000 accounts, then one
//! sub-workload after another:
//!
//! * `batch_8189`: one client, sequential `create_transfers` calls of 8,189 transfers (a full
//!   request), 2 M transfers by default. Latency is that of a whole call.
//! * `single_1`, `single_8`, `single_64`: 1, 8, 64 clients (separate `Client`s, so separate
//!   sessions and connections), each making sequential 1-transfer calls, for 5 s each.
//!
//! Transfers go between uniformly random distinct accounts, with fresh sequential ids.
//!
//! **Fsyncs and disk bytes.** `tally inspect` gives the journal's record count (one record per
//! core turn, each one write and one fdatasync: group commit) and its log bytes, but it refuses
//! while the server runs. So the server is stopped (SIGTERM: drain, checkpoint, exit 0) after
//! each sub-workload and started again for the next: `inspect` before and after gives the
//! records and bytes that sub-workload added, exactly. The restart costs nothing measured (the
//! checkpoint makes it a restart without replay, outside the timed window). The records include
//! the clients' register requests (at most one per client; 64 at most against hundreds of
//! thousands of transfers), and the log bytes are what the journal holds (record headers, entry
//! headers, the requests as logged: compact, 48 bytes of header and the body); the segment files
//! are preallocated, so `du` on the directory says more and means less.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::ValueEnum;
use serde_json::{json, Map, Value};
use tally_client::{Client, ClientStats};

use crate::harness::child::Memory;
use crate::harness::data_dir::DataDir;
use crate::harness::options::ServerArgs;
use crate::harness::report::{self, round, thousands, LatencySummary, Progress, Stamp, Table};
use crate::harness::tally::{self, Inspection, Tally};
use crate::harness::workload::{
    accounts_or_default, client_runtime, connect, count_failed, create_accounts, stats_sum,
    TransferGen, TransferGenOptions, AMOUNT_RANGE, REQUEST_EVENTS_MAX,
};

const DEFAULT_BATCH_TRANSFERS: u64 = 2_000_000;
const DEFAULT_SECONDS: f64 = 5.0;
const SMOKE_BATCH_TRANSFERS: u64 = 3 * REQUEST_EVENTS_MAX as u64;
const SMOKE_SINGLE_TRANSFERS: u64 = 200;

// Targets (the issue).
const TARGET_BATCH_TPS: f64 = 1_000_000.0;
const TARGET_BATCH_P99_MS: f64 = 10.0;
const TARGET_SINGLE_64_TPS: f64 = 50_000.0;
const TARGET_DISK_BYTES: f64 = 160.0;

/// `durable`'s command line.
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Transfers of `batch_8189`, in full requests of 8,189 [default: 2,000,000; 24,567 with
    /// --smoke]
    #[arg(long)]
    batch_transfers: Option<u64>,
    /// Seconds of each `single_N` sub-workload [default: 5]
    #[arg(long)]
    seconds: Option<f64>,
    /// Run each `single_N` for this many transfers (all clients together) instead of for a
    /// duration [default with --smoke: 200]
    #[arg(long)]
    single_transfers: Option<u64>,
    /// Run only this sub-workload (repeat to pick several) [default: all, in this order]
    #[arg(long, value_enum)]
    workload: Vec<Workload>,
    /// Accounts created first [default: 10,000; 1,000 with --smoke]
    #[arg(long)]
    accounts: Option<u64>,
    /// Start the server with `--transfers-max N` (its transfer index sized up front, so that it
    /// never stalls a request by growing) [default: the batch transfers + 1,000,000; 0 lets
    /// the index grow]
    #[arg(long)]
    transfers_max: Option<u64>,
    /// Seed of the transfer generator
    #[arg(long, default_value_t = 42)]
    seed: u64,
    #[command(flatten)]
    server: ServerArgs,
}

/// A sub-workload (`--workload`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Workload {
    /// 1 client, sequential full requests of 8,189 transfers
    #[value(name = "batch_8189")]
    Batch8189,
    /// 1 client, sequential 1-transfer requests
    #[value(name = "single_1")]
    Single1,
    /// 8 clients, each with sequential 1-transfer requests
    #[value(name = "single_8")]
    Single8,
    /// 64 clients, each with sequential 1-transfer requests
    #[value(name = "single_64")]
    Single64,
}

impl Workload {
    const ALL: [Workload; 4] = [
        Workload::Batch8189,
        Workload::Single1,
        Workload::Single8,
        Workload::Single64,
    ];

    fn name(self) -> &'static str {
        match self {
            Workload::Batch8189 => "batch_8189",
            Workload::Single1 => "single_1",
            Workload::Single8 => "single_8",
            Workload::Single64 => "single_64",
        }
    }

    fn clients(self) -> usize {
        match self {
            Workload::Batch8189 | Workload::Single1 => 1,
            Workload::Single8 => 8,
            Workload::Single64 => 64,
        }
    }
}

struct Params {
    batch_transfers: u64,
    seconds: f64,
    single_transfers: Option<u64>,
    accounts: u64,
    segment_mib: u64,
    transfers_max: u64,
    seed: u64,
    smoke: bool,
    workloads: Vec<Workload>,
}

/// Runs the scenario: prints the table, writes `durable.json`.
pub(crate) fn run(args: Args) {
    let smoke = args.server.smoke;
    let mut params = Params {
        batch_transfers: args.batch_transfers.unwrap_or(if smoke {
            SMOKE_BATCH_TRANSFERS
        } else {
            DEFAULT_BATCH_TRANSFERS
        }),
        seconds: args.seconds.unwrap_or(DEFAULT_SECONDS),
        single_transfers: args
            .single_transfers
            .or(smoke.then_some(SMOKE_SINGLE_TRANSFERS)),
        accounts: accounts_or_default(args.accounts, smoke),
        segment_mib: args.server.segment_mib(),
        transfers_max: 0,
        seed: args.seed,
        smoke,
        workloads: if args.workload.is_empty() {
            Workload::ALL.to_vec()
        } else {
            args.workload
        },
    };
    params.transfers_max = args
        .transfers_max
        .unwrap_or(params.batch_transfers + 1_000_000);
    if params.accounts < 2 || params.batch_transfers == 0 || params.seconds <= 0.0 {
        eprintln!("need --accounts >= 2, --batch-transfers >= 1 and --seconds > 0");
        std::process::exit(2);
    }

    let stamp = Stamp::now();
    let mut tally = Tally::new(&args.server);
    tally.args = vec![
        "--transfers-max".to_string(),
        params.transfers_max.to_string(),
    ];
    let data = DataDir::new(&args.server, "durable");
    eprintln!(
        "[durable] tally {} on {} (filesystem {})",
        tally.binary.display(),
        data.path.display(),
        data.filesystem()
    );
    let runtime = client_runtime();
    let mut generator = TransferGen::new(TransferGenOptions {
        accounts: params.accounts,
        seed: params.seed,
        first_id: 1,
    });

    // Accounts, on a first server run.
    let server = tally.start(&data.path);
    let accounts_started = Instant::now();
    runtime.block_on(async {
        let client = Client::connect(server.address, 0).await.expect("connect");
        create_accounts(&client, params.accounts).await;
    });
    let accounts_seconds = accounts_started.elapsed().as_secs_f64();
    let (_, lines) = server.process.terminate();
    let mut warnings = tally::warnings(&lines);
    let mut previous = tally.inspect(&data.path);
    assert!(
        previous.records > 0,
        "accounts created but no journal records"
    );

    let mut outcomes = Vec::new();
    for &workload in &params.workloads {
        let server = tally.start(&data.path);
        let startup = server.process.startup();
        let measured = runtime.block_on(run_workload(
            workload,
            &params,
            server.address,
            &mut generator,
        ));
        let memory = server.process.memory();
        let (stop, lines) = server.process.terminate();
        warnings.extend(tally::warnings(&lines));
        let after = tally.inspect(&data.path);
        outcomes.push(Outcome {
            workload,
            measured,
            before: previous,
            after,
            memory,
            startup,
            stop,
        });
        previous = after;
    }

    print!("{}", table(&outcomes).render());
    println!(
        "\ntx/s: transfers acknowledged per second, all clients together. p50/p99/p100: latency \
         of one create_transfers call (for batch_8189, a whole 8,189-transfer request).\n\
         fsyncs/tx: journal records added / transfers (one record = one write + one fdatasync, \
         group commit); register requests included. tx/fsync: the inverse.\n\
         disk B/tx: journal log bytes added / transfers (record + entry headers + the requests \
         as logged: 48 bytes of their header, and the body).\n\
         requests, resends: the clients' own counters (registers included).\n\
         Targets: batch_8189 >= 1 M tx/s with p99 <= 10 ms; single_64 >= 50 k tx/s; <= 160 B on \
         disk per transfer. TigerBeetle 0.17 on this machine: 189-332 k tx/s at full batches \
         (p99 52-127 ms), about 1.4 k tx/s for 1-transfer requests at any client count."
    );
    tally::print_warnings(&warnings);

    let params_json = json!({
        "accounts": params.accounts,
        "batch_transfers": params.batch_transfers,
        "batch_size": REQUEST_EVENTS_MAX,
        "single_seconds": params.single_transfers.is_none().then_some(params.seconds),
        "single_transfers": params.single_transfers,
        "segment_mib": params.segment_mib,
        "server_transfers_max": params.transfers_max,
        "seed": params.seed,
        "smoke": params.smoke,
        "workloads": params.workloads.iter().map(|w| w.name()).collect::<Vec<_>>(),
        "account_choice": "uniform, distinct debit and credit",
        "amounts": format!("uniform 1..={AMOUNT_RANGE}"),
        "tally": tally.binary.display().to_string(),
        "data_dir": data.path.display().to_string(),
        "filesystem": data.filesystem(),
        "client_runtime": "tokio current_thread (one thread for all clients)",
        "measurement": "server stopped (SIGTERM) after each sub-workload; tally inspect before \
                        and after gives journal records (fsyncs) and log bytes",
    });
    let mut workloads = Map::new();
    for outcome in &outcomes {
        workloads.insert(outcome.workload.name().into(), outcome.to_json());
    }
    let path = report::write_json(
        "durable",
        &stamp,
        params_json,
        json!({
            "account_create_seconds": round(accounts_seconds, 3),
            "workloads": workloads,
            "server_warnings": warnings,
            "targets": {
                "batch_8189_transfers_per_second_min": TARGET_BATCH_TPS,
                "batch_8189_p99_ms_max": TARGET_BATCH_P99_MS,
                "single_64_transfers_per_second_min": TARGET_SINGLE_64_TPS,
                "disk_bytes_per_transfer_max": TARGET_DISK_BYTES,
            },
        }),
    );
    println!("wrote {}", path.display());
}

/// What one sub-workload measured on the client side.
struct Measured {
    transfers: u64,
    calls: u64,
    failed: u64,
    elapsed: Duration,
    latency: LatencySummary,
    stats: ClientStats,
}

struct Outcome {
    workload: Workload,
    measured: Measured,
    before: Inspection,
    after: Inspection,
    memory: Memory,
    startup: Duration,
    stop: Duration,
}

impl Outcome {
    fn tps(&self) -> f64 {
        self.measured.transfers as f64 / self.measured.elapsed.as_secs_f64()
    }

    fn records(&self) -> u64 {
        self.after.records - self.before.records
    }

    fn log_bytes(&self) -> u64 {
        self.after.log_bytes - self.before.log_bytes
    }

    fn per_transfer(&self, value: u64) -> f64 {
        value as f64 / self.measured.transfers.max(1) as f64
    }

    /// The targets that apply, and whether each is met.
    fn verdicts(&self) -> Vec<(String, bool)> {
        let mut verdicts = Vec::new();
        match self.workload {
            Workload::Batch8189 => {
                verdicts.push((">= 1 M tx/s".to_string(), self.tps() >= TARGET_BATCH_TPS));
                verdicts.push((
                    "p99 <= 10 ms".to_string(),
                    self.measured.latency.p99_ms <= TARGET_BATCH_P99_MS,
                ));
            }
            Workload::Single64 => verdicts.push((
                ">= 50 k tx/s".to_string(),
                self.tps() >= TARGET_SINGLE_64_TPS,
            )),
            _ => {}
        }
        verdicts.push((
            "<= 160 B/tx".to_string(),
            self.per_transfer(self.log_bytes()) <= TARGET_DISK_BYTES,
        ));
        verdicts
    }

    fn to_json(&self) -> Value {
        let m = &self.measured;
        let mut o = Map::new();
        o.insert("clients".into(), json!(self.workload.clients()));
        o.insert(
            "transfers_per_call".into(),
            json!(if self.workload == Workload::Batch8189 {
                REQUEST_EVENTS_MAX
            } else {
                1
            }),
        );
        o.insert("transfers".into(), json!(m.transfers));
        o.insert("failed".into(), json!(m.failed));
        o.insert("seconds".into(), json!(round(m.elapsed.as_secs_f64(), 4)));
        o.insert("transfers_per_second".into(), json!(self.tps().round()));
        m.latency.insert_into(&mut o, "calls");
        o.insert("journal_records".into(), json!(self.records()));
        o.insert("log_bytes".into(), json!(self.log_bytes()));
        o.insert(
            "fsyncs_per_transfer".into(),
            json!(round(self.per_transfer(self.records()), 6)),
        );
        o.insert(
            "transfers_per_fsync".into(),
            json!(round(m.transfers as f64 / self.records().max(1) as f64, 2)),
        );
        o.insert(
            "disk_bytes_per_transfer".into(),
            json!(round(self.per_transfer(self.log_bytes()), 2)),
        );
        o.insert(
            "log_body_bytes_per_transfer".into(),
            json!(round(
                self.per_transfer(self.after.body_bytes - self.before.body_bytes),
                2
            )),
        );
        o.insert("client_requests".into(), json!(m.stats.requests));
        o.insert("client_resends".into(), json!(m.stats.resends));
        o.insert("client_connections".into(), json!(m.stats.connections));
        o.insert("client_calls".into(), json!(m.stats.calls));
        o.insert("server_rss_bytes_end".into(), json!(self.memory.rss_bytes));
        o.insert("server_hwm_bytes_end".into(), json!(self.memory.hwm_bytes));
        o.insert(
            "server_start_seconds".into(),
            json!(round(self.startup.as_secs_f64(), 4)),
        );
        o.insert(
            "server_stop_seconds".into(),
            json!(round(self.stop.as_secs_f64(), 4)),
        );
        let mut targets = Map::new();
        for (target, met) in self.verdicts() {
            targets.insert(target, json!(met));
        }
        o.insert("targets_met".into(), Value::Object(targets));
        Value::Object(o)
    }
}

fn table(outcomes: &[Outcome]) -> Table {
    let mut table = Table::new(&[
        "workload",
        "clients",
        "transfers",
        "tx/s",
        "p50 ms",
        "p99 ms",
        "p100 ms",
        "fsyncs/tx",
        "tx/fsync",
        "disk B/tx",
        "requests",
        "resends",
        "targets",
    ]);
    for outcome in outcomes {
        let m = &outcome.measured;
        let verdicts: Vec<String> = outcome
            .verdicts()
            .into_iter()
            .map(|(target, met)| format!("{target} {}", if met { "met" } else { "MISSED" }))
            .collect();
        table.row(vec![
            outcome.workload.name().into(),
            outcome.workload.clients().to_string(),
            thousands(m.transfers),
            thousands(outcome.tps().round() as u64),
            format!("{:.3}", m.latency.p50_ms),
            format!("{:.3}", m.latency.p99_ms),
            format!("{:.3}", m.latency.p100_ms),
            format!("{:.6}", outcome.per_transfer(outcome.records())),
            format!(
                "{:.1}",
                m.transfers as f64 / outcome.records().max(1) as f64
            ),
            format!("{:.1}", outcome.per_transfer(outcome.log_bytes())),
            thousands(m.stats.requests),
            thousands(m.stats.resends),
            verdicts.join(", "),
        ]);
    }
    table
}

async fn run_workload(
    workload: Workload,
    params: &Params,
    address: std::net::SocketAddr,
    generator: &mut TransferGen,
) -> Measured {
    let label = format!("durable {}", workload.name());
    match workload {
        Workload::Batch8189 => {
            let client = Client::connect(address, 0).await.expect("connect");
            let calls = params.batch_transfers.div_ceil(REQUEST_EVENTS_MAX as u64);
            let mut progress = Progress::new(label.clone());
            let mut histogram = report::latency_histogram();
            let mut events = Vec::with_capacity(REQUEST_EVENTS_MAX);
            let mut failed = 0;
            let started = Instant::now();
            for call in 0..calls {
                events.clear();
                generator.fill(&mut events, REQUEST_EVENTS_MAX);
                let sent = Instant::now();
                let results = client
                    .create_transfers(&events)
                    .await
                    .expect("create_transfers");
                report::record_latency(&mut histogram, sent.elapsed());
                failed += count_failed(&results);
                let done = (call + 1) * REQUEST_EVENTS_MAX as u64;
                progress.update(done, calls * REQUEST_EVENTS_MAX as u64, || {
                    format!(
                        "{:.0} k tx/s",
                        done as f64 / started.elapsed().as_secs_f64() / 1e3
                    )
                });
            }
            let elapsed = started.elapsed();
            let measured = Measured {
                transfers: calls * REQUEST_EVENTS_MAX as u64,
                calls,
                failed,
                elapsed,
                latency: LatencySummary::of(&histogram),
                stats: client.stats(),
            };
            finish(&mut progress, &measured);
            measured
        }
        _ => run_single(workload.clients(), params, address, generator, label).await,
    }
}

/// `clients` separate clients, each making sequential 1-transfer calls until the deadline (or
/// until `single_transfers` calls have been made, all clients together).
async fn run_single(
    clients: usize,
    params: &Params,
    address: std::net::SocketAddr,
    generator: &mut TransferGen,
    label: String,
) -> Measured {
    let connected = connect(address, clients).await;
    let next_id = Arc::new(AtomicU64::new(generator.next_id));
    let remaining = params
        .single_transfers
        .map(|count| Arc::new(AtomicU64::new(count)));
    let done = Arc::new(AtomicU64::new(0));
    let duration = Duration::from_secs_f64(params.seconds);
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::with_capacity(clients);
    for (index, client) in connected.iter().cloned().enumerate() {
        let next_id = next_id.clone();
        let remaining = remaining.clone();
        let done = done.clone();
        let mut transfers = TransferGen::new(TransferGenOptions {
            accounts: params.accounts,
            seed: params.seed ^ ((index as u64 + 1) << 32) ^ generator.next_id,
            first_id: 0,
        });
        tasks.push(tokio::spawn(async move {
            let mut histogram = report::latency_histogram();
            let mut failed = 0u64;
            let mut calls = 0u64;
            loop {
                match &remaining {
                    Some(remaining) => {
                        if remaining
                            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                                n.checked_sub(1)
                            })
                            .is_err()
                        {
                            break;
                        }
                    }
                    None => {
                        if Instant::now() >= deadline {
                            break;
                        }
                    }
                }
                let id = next_id.fetch_add(1, Ordering::Relaxed);
                let transfer = transfers.transfer(id);
                let sent = Instant::now();
                let results = client
                    .create_transfers(std::slice::from_ref(&transfer))
                    .await
                    .expect("create_transfers");
                report::record_latency(&mut histogram, sent.elapsed());
                failed += count_failed(&results);
                calls += 1;
                done.fetch_add(1, Ordering::Relaxed);
            }
            (histogram, calls, failed, Instant::now())
        }));
    }
    let mut progress = Progress::new(label);
    let total = params
        .single_transfers
        .unwrap_or((params.seconds * 1000.0) as u64);
    while !tasks.iter().all(|task| task.is_finished()) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let count = done.load(Ordering::Relaxed);
        let shown = if params.single_transfers.is_some() {
            count
        } else {
            started.elapsed().as_millis() as u64
        };
        progress.update(shown.min(total), total, || {
            format!(
                "{} transfers, {:.1} k tx/s",
                thousands(count),
                count as f64 / started.elapsed().as_secs_f64() / 1e3
            )
        });
    }
    let mut histogram = report::latency_histogram();
    let (mut calls, mut failed) = (0, 0);
    let mut last = started;
    for task in tasks {
        let (h, c, f, ended) = task.await.expect("client task");
        histogram.add(&h).expect("same histogram bounds");
        calls += c;
        failed += f;
        last = last.max(ended);
    }
    generator.next_id = next_id.load(Ordering::Relaxed);
    let stats = stats_sum(&connected);
    let measured = Measured {
        transfers: calls,
        calls,
        failed,
        elapsed: last - started,
        latency: LatencySummary::of(&histogram),
        stats,
    };
    finish(&mut progress, &measured);
    measured
}

fn finish(progress: &mut Progress, m: &Measured) {
    progress.finish(&format!(
        "{} transfers in {} calls, {:.1} k tx/s, p99 {:.3} ms, {} failed",
        thousands(m.transfers),
        thousands(m.calls),
        m.transfers as f64 / m.elapsed.as_secs_f64() / 1e3,
        m.latency.p99_ms,
        m.failed
    ));
}
