//! `recovery-mixed`: restart time after SIGKILL as a history of small writes and large reads
//! grows, cycle after cycle (the restart-time sub-scenario of `recovery` for a mixed history).
//!
//! `recovery` measures one big history of full write requests. This one builds the history the
//! crash-test suites build, where restart time was seen to grow with the history (0.1 s at
//! first, 27.5 s after 100 cycles and 325 k journal records): the server logs read requests as
//! well as writes, replay executes every logged request again, and checkpoints come only every
//! GiB of log.
//!
//! A fresh data directory, 10,000 accounts, then `--cycles` times:
//!
//! 1. **Writes**: `--clients` clients (separate sessions), together `--writes` sequential
//!    `create_transfers` requests of 1 to `--write-transfers-max` transfers each (uniform),
//!    fresh sequential ids, uniformly random distinct accounts. Every transfer must be created.
//! 2. **Read-back**: every transfer so far, `lookup_transfers` of 8,189 ids per request (the
//!    last one shorter), shared among the same clients. Every transfer must be found: the
//!    previous cycles' SIGKILLs lost nothing acknowledged.
//! 3. **SIGKILL**, then `tally inspect` (journal records and log bytes, outside any timing).
//! 4. **Restart**, timed from spawn to `listening on`, with the `recovered` line's fields
//!    (records replayed, the checkpoint's record, and whatever else the server logs there).
//!    The next cycle runs on this server.
//!
//! Figures: per cycle, the restart seconds, the records replayed and their ratio (µs of
//! restart per record replayed); over the run, the slowest and the last restart, and the
//! least-squares slope of restart seconds against journal records (how much each 100 k records
//! of history add). Target (the issue): a restart after SIGKILL takes at most 2 s after any
//! history. The journal was just written: warm page cache.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};
use tally_client::{Client, Transfer};

use crate::harness::data_dir::DataDir;
use crate::harness::options::ServerArgs;
use crate::harness::report::{self, round, thousands, LatencySummary, Progress, Stamp, Table};
use crate::harness::rng::mix64;
use crate::harness::tally::{self, Inspection, Recovered, Tally};
use crate::harness::workload::{
    accounts_or_default, client_runtime, connect, count_failed, create_accounts, TransferGen,
    TransferGenOptions, REQUEST_EVENTS_MAX,
};

const DEFAULT_CYCLES: u64 = 40;
const SMOKE_CYCLES: u64 = 3;
const DEFAULT_CLIENTS: usize = 4;
const SMOKE_CLIENTS: usize = 2;
const DEFAULT_WRITES: u64 = 2_000;
const SMOKE_WRITES: u64 = 40;
const DEFAULT_WRITE_TRANSFERS_MAX: u64 = 10;

/// Target (the issue): restart after SIGKILL, after any history.
const TARGET_RESTART_SECONDS: f64 = 2.0;

/// `recovery-mixed`'s command line.
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Cycles of writes, read-back, SIGKILL and restart [default: 40; 3 with --smoke]
    #[arg(long)]
    cycles: Option<u64>,
    /// Clients, each with one request in flight [default: 4; 2 with --smoke]
    #[arg(long)]
    clients: Option<usize>,
    /// Write requests per cycle, all clients together [default: 2,000; 40 with --smoke]
    #[arg(long)]
    writes: Option<u64>,
    /// Transfers in one write request: uniform in 1..=N
    #[arg(long, default_value_t = DEFAULT_WRITE_TRANSFERS_MAX)]
    write_transfers_max: u64,
    /// Accounts created first [default: 10,000; 1,000 with --smoke]
    #[arg(long)]
    accounts: Option<u64>,
    /// Seed of the transfer generators
    #[arg(long, default_value_t = 42)]
    seed: u64,
    #[command(flatten)]
    server: ServerArgs,
}

/// The sizes of one run.
#[derive(Clone, Copy, Debug)]
struct Params {
    cycles: u64,
    clients: usize,
    writes: u64,
    write_transfers_max: u64,
    accounts: u64,
    seed: u64,
}

/// What one cycle did and what its restart took.
struct Cycle {
    /// 1-based.
    number: u64,
    writes: Writes,
    reads: Reads,
    /// The journal after the SIGKILL.
    journal: Inspection,
    restart_seconds: f64,
    recovered: Recovered,
}

impl Cycle {
    /// Seconds of restart per record replayed, in µs; none if nothing was replayed.
    fn us_per_record(&self) -> Option<f64> {
        (self.recovered.records > 0)
            .then(|| self.restart_seconds * 1e6 / self.recovered.records as f64)
    }

    fn to_json(&self) -> Value {
        let mut o = Map::new();
        o.insert("cycle".into(), json!(self.number));
        o.insert("transfers_total".into(), json!(self.reads.ids));
        o.insert("write_requests".into(), json!(self.writes.requests));
        o.insert("write_transfers".into(), json!(self.writes.transfers));
        o.insert("write_failed".into(), json!(self.writes.failed));
        o.insert(
            "write_seconds".into(),
            json!(round(self.writes.elapsed.as_secs_f64(), 4)),
        );
        o.insert(
            "write_requests_per_second".into(),
            json!(round(self.writes.per_second(), 1)),
        );
        o.insert(
            "write_p99_ms".into(),
            json!(round(self.writes.latency.p99_ms, 4)),
        );
        o.insert("lookup_requests".into(), json!(self.reads.requests));
        o.insert("lookup_ids".into(), json!(self.reads.ids));
        o.insert("transfers_missing".into(), json!(self.reads.missing));
        o.insert(
            "lookup_seconds".into(),
            json!(round(self.reads.elapsed.as_secs_f64(), 4)),
        );
        o.insert("journal_records".into(), json!(self.journal.records));
        o.insert("log_bytes".into(), json!(self.journal.log_bytes));
        o.insert(
            "restart_seconds".into(),
            json!(round(self.restart_seconds, 4)),
        );
        o.insert("records_replayed".into(), json!(self.recovered.records));
        o.insert(
            "checkpoint_record".into(),
            json!(self.recovered.checkpoint_record),
        );
        o.insert(
            "restart_us_per_record_replayed".into(),
            json!(self.us_per_record().map(|us| round(us, 3))),
        );
        o.insert(
            "recovered".into(),
            Value::Object(self.recovered.fields.clone()),
        );
        Value::Object(o)
    }
}

/// Runs the scenario: prints the table, writes `recovery-mixed.json`.
pub(crate) fn run(args: Args) {
    let smoke = args.server.smoke;
    let params = Params {
        cycles: args
            .cycles
            .unwrap_or(if smoke { SMOKE_CYCLES } else { DEFAULT_CYCLES }),
        clients: args.clients.unwrap_or(if smoke {
            SMOKE_CLIENTS
        } else {
            DEFAULT_CLIENTS
        }),
        writes: args
            .writes
            .unwrap_or(if smoke { SMOKE_WRITES } else { DEFAULT_WRITES }),
        write_transfers_max: args.write_transfers_max,
        accounts: accounts_or_default(args.accounts, smoke),
        seed: args.seed,
    };
    if params.cycles == 0
        || params.clients == 0
        || params.writes == 0
        || params.write_transfers_max == 0
        || params.write_transfers_max > REQUEST_EVENTS_MAX as u64
        || params.accounts < 2
    {
        eprintln!(
            "need --cycles, --clients and --writes >= 1, --write-transfers-max in 1..=8189 and \
             --accounts >= 2"
        );
        std::process::exit(2);
    }

    let stamp = Stamp::now();
    let tally = Tally::new(&args.server);
    let data = DataDir::new(&args.server, "recovery-mixed");
    eprintln!(
        "[recovery-mixed] tally {} on {} (filesystem {}); {} cycles of {} write requests \
         (1..={} transfers) from {} clients, read-back, SIGKILL, restart",
        tally.binary.display(),
        data.path.display(),
        data.filesystem(),
        params.cycles,
        thousands(params.writes),
        params.write_transfers_max,
        params.clients
    );
    let runtime = client_runtime();
    let mut warnings = Vec::new();

    let mut server = tally.start(&data.path);
    let empty_start_seconds = server.process.startup().as_secs_f64();
    runtime.block_on(async {
        let client = Client::connect(server.address, 0).await.expect("connect");
        create_accounts(&client, params.accounts).await;
    });
    let next_id = Arc::new(AtomicU64::new(1));
    let mut cycles: Vec<Cycle> = Vec::new();
    let mut progress = Progress::new("recovery-mixed");
    for number in 1..=params.cycles {
        let (writes, reads) = runtime.block_on(async {
            let clients = connect(server.address, params.clients).await;
            let writes = write(&clients, &params, number, &next_id).await;
            let reads = read_back(&clients, next_id.load(Ordering::Relaxed) - 1).await;
            (writes, reads)
        });
        warnings.extend(tally::warnings(&server.process.kill()));
        let journal = tally.inspect(&data.path);
        server = tally.start(&data.path);
        let recovered = server.recovered();
        assert_eq!(
            recovered.checkpoint_record + recovered.records,
            journal.records,
            "the restart did not recover the whole journal"
        );
        let cycle = Cycle {
            number,
            writes,
            reads,
            journal,
            restart_seconds: server.process.startup().as_secs_f64(),
            recovered,
        };
        progress.update(number, params.cycles, || {
            format!(
                "{} transfers, {} records; restart {:.3} s, {} records replayed",
                thousands(cycle.reads.ids),
                thousands(cycle.journal.records),
                cycle.restart_seconds,
                thousands(cycle.recovered.records)
            )
        });
        cycles.push(cycle);
    }
    let (_, lines) = server.process.terminate();
    warnings.extend(tally::warnings(&lines));
    progress.finish(&format!("{} cycles", params.cycles));

    let summary = Summary::of(&cycles);
    print!("{}", table(&cycles).render());
    let verdict = if summary.restart_seconds_max <= TARGET_RESTART_SECONDS {
        "met"
    } else {
        "MISSED"
    };
    println!(
        "\nrestart: spawn to `listening on` after SIGKILL; replayed: the `recovered` line's \
         records; us/rec: restart time / records replayed.\n\
         writes/s: write requests per second, all clients; lookups: read-back requests of up to \
         8,189 ids.\n\
         Restart after SIGKILL: max {:.3} s (cycle {}), last {:.3} s with {} records replayed \
         ({} us/record); slope {} s per 100 k journal records.\n\
         Target: restart after SIGKILL <= {TARGET_RESTART_SECONDS} s after any history: {verdict}. \
         Transfers missing at read-back: {}; write events failed: {}. An empty server starts in \
         {:.3} s. Warm page cache.",
        summary.restart_seconds_max,
        summary.restart_max_cycle,
        summary.restart_seconds_last,
        thousands(summary.records_replayed_last),
        summary
            .us_per_record_last
            .map_or("-".into(), |us| format!("{us:.1}")),
        summary
            .seconds_per_100k_records
            .map_or("-".into(), |slope| format!("{slope:.3}")),
        summary.transfers_missing,
        summary.write_failed,
        empty_start_seconds,
    );
    tally::print_warnings(&warnings);

    let params_json = json!({
        "cycles": params.cycles,
        "clients": params.clients,
        "write_requests_per_cycle": params.writes,
        "write_transfers_per_request": format!("uniform 1..={}", params.write_transfers_max),
        "lookup_ids_per_request_max": REQUEST_EVENTS_MAX,
        "accounts": params.accounts,
        "segment_mib": tally.segment_mib,
        "seed": params.seed,
        "smoke": smoke,
        "tally": tally.binary.display().to_string(),
        "data_dir": data.path.display().to_string(),
        "filesystem": data.filesystem(),
        "client_runtime": "tokio current_thread (one thread for all clients)",
        "page_cache": "warm (the journal was just written)",
    });
    let path = report::write_json(
        "recovery-mixed",
        &stamp,
        params_json,
        json!({
            "restart_seconds": round(summary.restart_seconds_last, 4),
            "restart_seconds_max": round(summary.restart_seconds_max, 4),
            "restart_seconds_max_cycle": summary.restart_max_cycle,
            "restart_seconds_last": round(summary.restart_seconds_last, 4),
            "records_replayed_last": summary.records_replayed_last,
            "records_replayed_max": summary.records_replayed_max,
            "restart_us_per_record_replayed_last": summary.us_per_record_last.map(|us| round(us, 3)),
            "restart_seconds_per_100k_journal_records": summary.seconds_per_100k_records.map(|s| round(s, 4)),
            "journal_records": cycles.last().map_or(0, |c| c.journal.records),
            "log_bytes": cycles.last().map_or(0, |c| c.journal.log_bytes),
            "transfers": cycles.last().map_or(0, |c| c.reads.ids),
            "transfers_missing": summary.transfers_missing,
            "write_failed": summary.write_failed,
            "empty_start_seconds": round(empty_start_seconds, 4),
            "cycles": cycles.iter().map(Cycle::to_json).collect::<Vec<_>>(),
            "server_warnings": warnings,
            "targets": {
                "restart_seconds_max": TARGET_RESTART_SECONDS,
                "restart_met": summary.restart_seconds_max <= TARGET_RESTART_SECONDS,
            },
        }),
    );
    println!("wrote {}", path.display());
}

/// The run's figures, over all cycles.
struct Summary {
    restart_seconds_max: f64,
    restart_max_cycle: u64,
    restart_seconds_last: f64,
    records_replayed_last: u64,
    records_replayed_max: u64,
    us_per_record_last: Option<f64>,
    /// Least-squares slope of restart seconds against journal records, per 100 k records.
    seconds_per_100k_records: Option<f64>,
    transfers_missing: u64,
    write_failed: u64,
}

impl Summary {
    fn of(cycles: &[Cycle]) -> Summary {
        let slowest = cycles
            .iter()
            .max_by(|a, b| a.restart_seconds.total_cmp(&b.restart_seconds))
            .expect("at least one cycle");
        let last = cycles.last().expect("at least one cycle");
        let points: Vec<(f64, f64)> = cycles
            .iter()
            .map(|c| (c.journal.records as f64, c.restart_seconds))
            .collect();
        Summary {
            restart_seconds_max: slowest.restart_seconds,
            restart_max_cycle: slowest.number,
            restart_seconds_last: last.restart_seconds,
            records_replayed_last: last.recovered.records,
            records_replayed_max: cycles
                .iter()
                .map(|c| c.recovered.records)
                .max()
                .unwrap_or(0),
            us_per_record_last: last.us_per_record(),
            seconds_per_100k_records: slope(&points).map(|s| s * 100_000.0),
            transfers_missing: cycles.iter().map(|c| c.reads.missing).sum(),
            write_failed: cycles.iter().map(|c| c.writes.failed).sum(),
        }
    }
}

/// The least-squares slope of y on x; none with fewer than two distinct x.
fn slope(points: &[(f64, f64)]) -> Option<f64> {
    let n = points.len() as f64;
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mean_x).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mean_x) * (p.1 - mean_y)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}

fn table(cycles: &[Cycle]) -> Table {
    let mut table = Table::new(&[
        "cycle",
        "transfers",
        "journal records",
        "log MiB",
        "writes/s",
        "lookups",
        "restart s",
        "replayed",
        "checkpoint rec",
        "us/rec",
    ]);
    for c in cycles {
        table.row(vec![
            c.number.to_string(),
            thousands(c.reads.ids),
            thousands(c.journal.records),
            format!("{:.1}", c.journal.log_bytes as f64 / (1 << 20) as f64),
            thousands(c.writes.per_second().round() as u64),
            thousands(c.reads.requests),
            format!("{:.3}", c.restart_seconds),
            thousands(c.recovered.records),
            thousands(c.recovered.checkpoint_record),
            c.us_per_record()
                .map_or("-".into(), |us| format!("{us:.1}")),
        ]);
    }
    table
}

/// The write phase of one cycle.
struct Writes {
    requests: u64,
    transfers: u64,
    failed: u64,
    elapsed: Duration,
    /// Per `create_transfers` call.
    latency: LatencySummary,
}

impl Writes {
    fn per_second(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// `params.writes` requests of 1..=`write_transfers_max` transfers from all `clients` at once,
/// ids from `next_id`.
async fn write(
    clients: &[Client],
    params: &Params,
    cycle: u64,
    next_id: &Arc<AtomicU64>,
) -> Writes {
    let remaining = Arc::new(AtomicU64::new(params.writes));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(clients.len());
    for (index, client) in clients.iter().cloned().enumerate() {
        let remaining = remaining.clone();
        let next_id = next_id.clone();
        let mut generator = TransferGen::new(TransferGenOptions {
            accounts: params.accounts,
            seed: mix64(params.seed ^ (cycle << 32) ^ index as u64),
            first_id: 0,
        });
        let write_transfers_max = params.write_transfers_max;
        tasks.push(tokio::spawn(async move {
            let mut histogram = report::latency_histogram();
            let (mut requests, mut transfers, mut failed) = (0u64, 0u64, 0u64);
            let mut events: Vec<Transfer> = Vec::with_capacity(write_transfers_max as usize);
            while remaining
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok()
            {
                let count = 1 + generator.below(write_transfers_max);
                let first = next_id.fetch_add(count, Ordering::Relaxed);
                events.clear();
                events.extend((first..first + count).map(|id| generator.transfer(id)));
                let sent = Instant::now();
                let results = client
                    .create_transfers(&events)
                    .await
                    .expect("create_transfers");
                report::record_latency(&mut histogram, sent.elapsed());
                failed += count_failed(&results);
                requests += 1;
                transfers += count;
            }
            (histogram, requests, transfers, failed)
        }));
    }
    let mut histogram = report::latency_histogram();
    let (mut requests, mut transfers, mut failed) = (0, 0, 0);
    for task in tasks {
        let (h, r, t, f) = task.await.expect("write task");
        histogram.add(&h).expect("same histogram bounds");
        requests += r;
        transfers += t;
        failed += f;
    }
    Writes {
        requests,
        transfers,
        failed,
        elapsed: started.elapsed(),
        latency: LatencySummary::of(&histogram),
    }
}

/// The read-back of one cycle.
struct Reads {
    /// Ids looked up: every transfer so far.
    ids: u64,
    requests: u64,
    /// Ids the server did not find.
    missing: u64,
    elapsed: Duration,
}

/// Looks up transfers `1..=transfers` in requests of up to 8,189 ids, shared among `clients`.
async fn read_back(clients: &[Client], transfers: u64) -> Reads {
    let chunk = REQUEST_EVENTS_MAX as u64;
    let requests = transfers.div_ceil(chunk);
    let next_request = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(clients.len());
    for client in clients {
        let client = client.clone();
        let next_request = next_request.clone();
        tasks.push(tokio::spawn(async move {
            let mut missing = 0u64;
            let mut ids: Vec<u128> = Vec::with_capacity(REQUEST_EVENTS_MAX);
            loop {
                let request = next_request.fetch_add(1, Ordering::Relaxed);
                if request >= requests {
                    break;
                }
                let first = request * chunk + 1;
                let last = ((request + 1) * chunk).min(transfers);
                ids.clear();
                ids.extend((first..=last).map(u128::from));
                let found = client
                    .lookup_transfers(&ids)
                    .await
                    .expect("lookup_transfers");
                missing += ids.len() as u64 - found.len() as u64;
            }
            missing
        }));
    }
    let mut missing = 0;
    for task in tasks {
        missing += task.await.expect("read-back task");
    }
    Reads {
        ids: transfers,
        requests,
        missing,
        elapsed: started.elapsed(),
    }
}
