//! `core`: the ledger core alone, on one thread, with `MemoryStore` as the transfer store.
//!
//! For each batch: generate the events (not timed), `store.append_batch(T, &events)` (timed on
//! its own: it is the write-ahead step, not the core), then `ledger.create_transfers(...)` (the
//! figure). `T` is a virtual clock, never the wall clock, so that runs are reproducible: it
//! advances by `TICK_NS` per event (a virtual 1 M events/s), which is what gives timeouts meaning
//! in `two_phase`. Everything random comes from a fixed-seed splitmix64.
//!
//! Heap per stored transfer: a counting global allocator gives live bytes before the first
//! transfer batch (accounts created, buffers allocated) and after the last; the difference minus
//! the store's own bytes (`MemoryStore::heap_bytes`) is what the core holds for the transfers.
//! Next to it, the core's own accounting (`Ledger::heap_bytes().transfers_total()`). The core
//! keeps no transfer records (they live in the store, as they will in the journal), so all of its
//! bytes are "beyond the 128-byte record": that is the figure the design's ≤ 64 B target is about.

use std::time::{Duration, Instant};

use clap::ValueEnum;
use serde_json::{json, Map, Value};
use tally_ledger::{
    Account, AccountFlags, CreateAccountStatus, CreateTransferResult, CreateTransferStatus, Ledger,
    MemoryStore, Transfer, TransferFlags, AMOUNT_MAX, BATCH_EVENTS_MAX, PULSE_EVENTS_MAX,
};

use crate::alloc;
use crate::harness::report::{self, round, thousands, LatencySummary, Progress, Stamp, Table};
use crate::harness::rng::{mix64, SplitMix64, Zipf};

/// Transfers per workload when `--transfers` is not given: all six workloads together take
/// about a minute on the 2-core reference machine (`docs/benchmarks.md`).
pub(crate) const DEFAULT_TRANSFERS: u64 = 10_000_000;
const SMOKE_TRANSFERS: u64 = 8_000;
const SMOKE_BATCH: usize = 1_000;
/// Virtual nanoseconds per event: the clock `T` moves as if 1 M events/s arrived.
const TICK_NS: u64 = 1_000;
/// In `--smoke`, a virtual millisecond per event, so that 1-second timeouts expire within a few
/// batches and the pulse path runs too.
const SMOKE_TICK_NS: u64 = 1_000_000;
const ZIPF_S: f64 = 1.0;
/// Amounts are uniform in `1..=AMOUNT_RANGE`.
const AMOUNT_RANGE: u64 = 1_000;
/// A batch slower than this many times the median batch is counted as a slow batch.
const SLOW_BATCH_FACTOR: u32 = 4;

/// `core`'s command line.
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Transfers per workload [default: 10,000,000 (all six workloads: about 42 s on 2 cores);
    /// 8,000 with --smoke]
    #[arg(long)]
    transfers: Option<u64>,
    /// Events per create_transfers batch (at most 8190) [default: 8190; 1000 with --smoke]
    #[arg(long)]
    batch: Option<usize>,
    /// Run only this workload (repeat to pick several) [default: all]
    #[arg(long, value_enum)]
    workload: Vec<Workload>,
    /// Tiny sizes (for CI: checks that the harness works; the figures mean nothing)
    #[arg(long)]
    smoke: bool,
    /// Seed of the event generator (each workload derives its own stream from it)
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Experiment: advise transparent huge pages (MADV_HUGEPAGE) for every allocation of 2 MiB
    /// or more, to see how much time goes to TLB misses (the ledger itself does not ask for them)
    #[arg(long)]
    huge_pages: bool,
    /// Size the ledger's indexes for the workload's transfers up front
    /// (`Ledger::with_capacity`, TigerBeetle-style static sizing), so no index is rebuilt while
    /// batches run; the heap per transfer then reflects the reserved capacity
    #[arg(long)]
    presize: bool,
}

/// A workload (`--workload`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Workload {
    /// 10,000 accounts, uniformly random distinct pairs, sequential transfer ids
    #[value(name = "uniform")]
    Uniform,
    /// As `uniform`, with transfer ids scrambled by a fixed bijection (random-looking u128s)
    #[value(name = "uniform_random_ids")]
    UniformRandomIds,
    /// 10,000 accounts, zipfian (s = 1) choice of both accounts: a few hot accounts
    #[value(name = "zipfian")]
    Zipfian,
    /// 1,000,000 accounts, uniform
    #[value(name = "accounts_1m")]
    Accounts1m,
    /// Pending transfers (some with timeouts) and posts/voids of earlier batches' pendings
    #[value(name = "two_phase")]
    TwoPhase,
    /// As `uniform`, with `flags.history` on every account (as TigerBeetle's benchmark driver
    /// creates them): each transfer also stores two balance snapshots
    #[value(name = "history")]
    History,
}

impl Workload {
    const ALL: [Workload; 6] = [
        Workload::Uniform,
        Workload::UniformRandomIds,
        Workload::Zipfian,
        Workload::Accounts1m,
        Workload::TwoPhase,
        Workload::History,
    ];

    /// The `--workload` name (and the key in the JSON).
    fn name(self) -> &'static str {
        match self {
            Workload::Uniform => "uniform",
            Workload::UniformRandomIds => "uniform_random_ids",
            Workload::Zipfian => "zipfian",
            Workload::Accounts1m => "accounts_1m",
            Workload::TwoPhase => "two_phase",
            Workload::History => "history",
        }
    }

    fn accounts(self, smoke: bool) -> usize {
        match (self, smoke) {
            (Workload::Accounts1m, false) => 1_000_000,
            (Workload::Accounts1m, true) => 50_000,
            _ => 10_000,
        }
    }

    fn choice(self) -> Choice {
        match self {
            Workload::Zipfian => Choice::Zipfian,
            _ => Choice::Uniform,
        }
    }

    fn ids(self) -> Ids {
        match self {
            Workload::UniformRandomIds => Ids::Scrambled,
            _ => Ids::Sequential,
        }
    }
}

#[derive(Clone, Copy)]
enum Choice {
    Uniform,
    Zipfian,
}

#[derive(Clone, Copy)]
enum Ids {
    Sequential,
    Scrambled,
}

/// The resolved parameters of a run.
struct Params {
    transfers: u64,
    batch: usize,
    seed: u64,
    smoke: bool,
    tick_ns: u64,
    huge_pages: bool,
    presize: bool,
    workloads: Vec<Workload>,
}

/// Runs the scenario: prints the table, writes `core.json`.
pub(crate) fn run(args: Args) {
    let params = Params {
        transfers: args.transfers.unwrap_or(if args.smoke {
            SMOKE_TRANSFERS
        } else {
            DEFAULT_TRANSFERS
        }),
        batch: args.batch.unwrap_or(if args.smoke {
            SMOKE_BATCH
        } else {
            BATCH_EVENTS_MAX
        }),
        seed: args.seed,
        smoke: args.smoke,
        tick_ns: if args.smoke { SMOKE_TICK_NS } else { TICK_NS },
        huge_pages: args.huge_pages,
        presize: args.presize,
        workloads: if args.workload.is_empty() {
            Workload::ALL.to_vec()
        } else {
            args.workload
        },
    };
    if params.batch == 0 || params.batch > BATCH_EVENTS_MAX {
        eprintln!("--batch must be in 1..={BATCH_EVENTS_MAX}");
        std::process::exit(2);
    }
    if params.transfers == 0 {
        eprintln!("--transfers must be at least 1");
        std::process::exit(2);
    }

    alloc::set_huge_pages(params.huge_pages);
    let stamp = Stamp::now();
    let mut outcomes = Vec::new();
    for &workload in &params.workloads {
        outcomes.push(run_workload(workload, &params));
    }

    print!("{}", table(&outcomes).render());
    println!(
        "\nMtx/s: millions of transfers per second in create_transfers alone (store append not \
         included), overall and the median over batches (target: >= 5 on one core).\n\
         p50/p99/p100 ms: create_transfers latency per batch.\n\
         heap B/tx alloc: the core's heap per stored transfer by the counting allocator \
         (live bytes after - before - the store's bytes); \
         ledger: Ledger::heap_bytes().transfers_total() / transfers.\n\
         beyond rec.: the core's bytes beyond the 128-byte record (target: <= 64); the core keeps \
         no records (the store does), so it equals the alloc figure.\n\
         store B/tx: MemoryStore::heap_bytes() / transfers (144-byte entries, Vec capacity)."
    );

    let params_json = json!({
        "transfers_per_workload": params.transfers,
        "batch": params.batch,
        "seed": params.seed,
        "smoke": params.smoke,
        "virtual_ns_per_event": params.tick_ns,
        "zipf_s": ZIPF_S,
        "amounts": format!("uniform 1..={AMOUNT_RANGE}"),
        "store": "MemoryStore",
        "threads": 1,
        "huge_pages_advised": params.huge_pages,
        "presized_indexes": params.presize,
        "workloads": params.workloads.iter().map(|w| w.name()).collect::<Vec<_>>(),
    });
    let mut workloads = Map::new();
    for outcome in &outcomes {
        workloads.insert(outcome.workload.name().into(), outcome.to_json());
    }
    let path = report::write_json(
        "core",
        &stamp,
        params_json,
        json!({ "workloads": workloads }),
    );
    println!("wrote {}", path.display());
}

/// What one workload measured.
struct Outcome {
    workload: Workload,
    accounts: usize,
    account_create: Duration,
    transfers: u64,
    batches: u64,
    failed: u64,
    first_failure: Option<CreateTransferStatus>,
    pendings: u64,
    posts: u64,
    voids: u64,
    expired: u64,
    pulses: u64,
    pulse_time: Duration,
    core_time: Duration,
    append_time: Duration,
    generate_time: Duration,
    batch_tps_median: f64,
    /// Batches that took over `SLOW_BATCH_FACTOR` times the median batch time (in practice: the
    /// batches whose `reserve` doubled and rehashed the transfer index), and their total time.
    slow_batches: u64,
    slow_batch_time: Duration,
    latency: LatencySummary,
    /// Live heap growth over the transfer batches (core + store), by the counting allocator.
    live_delta: i64,
    peak_delta: i64,
    store_bytes: usize,
    core_accounting: tally_ledger::HeapBytes,
    rss_delta: Option<i64>,
}

impl Outcome {
    fn per_transfer(&self, bytes: f64) -> f64 {
        bytes / self.transfers.max(1) as f64
    }

    fn transfers_per_second(&self) -> f64 {
        self.transfers as f64 / self.core_time.as_secs_f64()
    }

    fn core_heap_alloc(&self) -> f64 {
        self.per_transfer(self.live_delta as f64 - self.store_bytes as f64)
    }

    fn core_heap_accounting(&self) -> f64 {
        self.per_transfer(self.core_accounting.transfers_total() as f64)
    }

    fn to_json(&self) -> Value {
        let mut o = Map::new();
        let seconds = self.core_time.as_secs_f64();
        o.insert("accounts".into(), json!(self.accounts));
        o.insert(
            "account_choice".into(),
            json!(match self.workload.choice() {
                Choice::Uniform => "uniform".to_string(),
                Choice::Zipfian => format!("zipfian s={ZIPF_S}"),
            }),
        );
        if let Choice::Zipfian = self.workload.choice() {
            let share = Zipf::new(self.accounts, ZIPF_S).top_probability();
            o.insert("hottest_account_pick_share".into(), json!(round(share, 4)));
        }
        o.insert(
            "transfer_ids".into(),
            json!(match self.workload.ids() {
                Ids::Sequential => "sequential",
                Ids::Scrambled => "scrambled (bijective mix of the sequence number)",
            }),
        );
        o.insert("transfers".into(), json!(self.transfers));
        o.insert("failed".into(), json!(self.failed));
        if let Some(status) = self.first_failure {
            o.insert("first_failure".into(), json!(format!("{status:?}")));
        }
        if self.workload == Workload::TwoPhase {
            o.insert("pending".into(), json!(self.pendings));
            o.insert("posted".into(), json!(self.posts));
            o.insert("voided".into(), json!(self.voids));
            o.insert("expired".into(), json!(self.expired));
            o.insert("pulses".into(), json!(self.pulses));
            o.insert(
                "pulse_ms_total".into(),
                json!(round(self.pulse_time.as_secs_f64() * 1e3, 3)),
            );
        }
        o.insert(
            "transfers_per_second".into(),
            json!(self.transfers_per_second().round()),
        );
        o.insert(
            "transfers_per_second_median_batch".into(),
            json!(self.batch_tps_median.round()),
        );
        o.insert(
            "ns_per_transfer".into(),
            json!(round(seconds * 1e9 / self.transfers as f64, 2)),
        );
        o.insert("core_seconds".into(), json!(round(seconds, 4)));
        o.insert(
            "slow_batches".into(),
            json!({
                "threshold": format!("{SLOW_BATCH_FACTOR}x the median batch time"),
                "count": self.slow_batches,
                "seconds": round(self.slow_batch_time.as_secs_f64(), 4),
                "share_of_core_time": round(self.slow_batch_time.as_secs_f64() / seconds, 4),
            }),
        );
        self.latency.insert_into(&mut o, "batches");
        o.insert(
            "store_append_ns_per_transfer".into(),
            json!(round(
                self.append_time.as_secs_f64() * 1e9 / self.transfers as f64,
                2
            )),
        );
        o.insert(
            "transfers_per_second_with_store_append".into(),
            json!(
                (self.transfers as f64 / (self.core_time + self.append_time).as_secs_f64()).round()
            ),
        );
        o.insert(
            "generate_seconds".into(),
            json!(round(self.generate_time.as_secs_f64(), 3)),
        );
        o.insert(
            "account_create_seconds".into(),
            json!(round(self.account_create.as_secs_f64(), 4)),
        );
        // Memory.
        let core = self.core_heap_alloc();
        o.insert("heap_bytes_per_transfer".into(), json!(round(core, 2)));
        o.insert(
            "heap_bytes_per_transfer_beyond_record".into(),
            json!(round(core, 2)),
        );
        o.insert(
            "heap_bytes_per_transfer_core_accounting".into(),
            json!(round(self.core_heap_accounting(), 2)),
        );
        let h = &self.core_accounting;
        o.insert(
            "heap_bytes_per_transfer_core_accounting_by_part".into(),
            json!({
                "transfer_index": round(self.per_transfer(h.transfer_index as f64), 2),
                "transfer_state": round(self.per_transfer(h.transfer_state as f64), 2),
                "account_transfer_lists": round(self.per_transfer(h.account_transfer_lists as f64), 2),
                "history": round(self.per_transfer(h.history as f64), 2),
                "pending_and_balancing": round(self.per_transfer(h.pending_and_balancing as f64), 2),
            }),
        );
        o.insert(
            "heap_bytes_accounts_core_accounting".into(),
            json!(self.core_accounting.accounts),
        );
        o.insert(
            "store_heap_bytes_per_transfer".into(),
            json!(round(self.per_transfer(self.store_bytes as f64), 2)),
        );
        o.insert(
            "total_heap_bytes_per_transfer".into(),
            json!(round(self.per_transfer(self.live_delta as f64), 2)),
        );
        o.insert(
            "peak_heap_bytes_per_transfer".into(),
            json!(round(self.per_transfer(self.peak_delta as f64), 2)),
        );
        if let Some(rss) = self.rss_delta {
            o.insert(
                "rss_bytes_per_transfer".into(),
                json!(round(self.per_transfer(rss as f64), 2)),
            );
        }
        Value::Object(o)
    }
}

fn table(outcomes: &[Outcome]) -> Table {
    let mut table = Table::new(&[
        "workload",
        "accounts",
        "transfers",
        "Mtx/s",
        "Mtx/s med",
        "ns/tx",
        "p50 ms",
        "p99 ms",
        "p100 ms",
        "heap B/tx alloc",
        "heap B/tx ledger",
        "beyond rec.",
        "store B/tx",
    ]);
    for o in outcomes {
        table.row(vec![
            o.workload.name().to_string(),
            thousands(o.accounts as u64),
            thousands(o.transfers),
            format!("{:.2}", o.transfers_per_second() / 1e6),
            format!("{:.2}", o.batch_tps_median / 1e6),
            format!("{:.1}", 1e9 / o.transfers_per_second()),
            format!("{:.3}", o.latency.p50_ms),
            format!("{:.3}", o.latency.p99_ms),
            format!("{:.3}", o.latency.p100_ms),
            format!("{:.1}", o.core_heap_alloc()),
            format!("{:.1}", o.core_heap_accounting()),
            format!("{:.1}", o.core_heap_alloc()),
            format!("{:.1}", o.per_transfer(o.store_bytes as f64)),
        ]);
    }
    table
}

/// The virtual clock that stamps batches: strictly increasing, never the wall clock.
struct Clock {
    now: u64,
    tick_ns: u64,
}

impl Clock {
    /// The timestamp of a batch of `count` events: `count` ticks later. A batch stamped `T`
    /// takes `T - count + 1 ..= T`, so the next must be above `T + count`; a tick of at least 2
    /// (and the +1) keeps that.
    fn batch(&mut self, count: usize) -> u64 {
        self.now += count as u64 * self.tick_ns + 1;
        self.now
    }

    /// The timestamp of a pulse, which reserves `PULSE_EVENTS_MAX` timestamps but takes no time.
    fn pulse(&mut self) -> u64 {
        self.now += PULSE_EVENTS_MAX as u64 + 1;
        self.now
    }
}

fn run_workload(workload: Workload, params: &Params) -> Outcome {
    let name = workload.name();
    let accounts = workload.accounts(params.smoke);
    let mut rng = SplitMix64::new(params.seed ^ mix64(workload as u64 + 1));
    let mut ledger = if params.presize {
        Ledger::with_capacity(accounts, params.transfers as usize)
    } else {
        Ledger::new()
    };
    let mut store = MemoryStore::new();
    let mut clock = Clock {
        now: 0,
        tick_ns: params.tick_ns,
    };
    assert!(clock.tick_ns >= 2);

    // Accounts: ids 1..=accounts, ledger 1, code 1, no flags but `history` where the workload
    // asks for it.
    let account_flags = match workload {
        Workload::History => AccountFlags(AccountFlags::HISTORY),
        _ => AccountFlags::default(),
    };
    let started = Instant::now();
    let mut account_events = Vec::with_capacity(BATCH_EVENTS_MAX);
    let mut account_results = Vec::with_capacity(BATCH_EVENTS_MAX);
    let mut next_account = 0usize;
    while next_account < accounts {
        account_events.clear();
        let end = (next_account + BATCH_EVENTS_MAX).min(accounts);
        account_events.extend((next_account..end).map(|index| Account {
            id: index as u128 + 1,
            ledger: 1,
            code: 1,
            flags: account_flags,
            ..Default::default()
        }));
        let timestamp = clock.batch(account_events.len());
        account_results.clear();
        ledger.create_accounts(&store, timestamp, &account_events, &mut account_results);
        assert!(
            account_results
                .iter()
                .all(|r| r.status == CreateAccountStatus::Created),
            "account creation failed"
        );
        next_account = end;
    }
    drop((account_events, account_results));
    let account_create = started.elapsed();

    let mut generator = Generator::new(workload, accounts, &mut rng);
    let batch_count = params.transfers.div_ceil(params.batch as u64);
    let mut events: Vec<Transfer> = Vec::with_capacity(params.batch);
    let mut results: Vec<CreateTransferResult> = Vec::with_capacity(params.batch);
    let mut batch_tps: Vec<f64> = Vec::with_capacity(batch_count as usize);
    let mut batch_times: Vec<Duration> = Vec::with_capacity(batch_count as usize);
    let mut histogram = report::latency_histogram();
    let mut progress = Progress::new(format!("core/{name}"));
    let mut failed = 0u64;
    let mut first_failure = None;
    let mut expired = 0u64;
    let mut pulses = 0u64;
    let (mut core_time, mut append_time, mut generate_time, mut pulse_time) = (
        Duration::ZERO,
        Duration::ZERO,
        Duration::ZERO,
        Duration::ZERO,
    );

    let rss_before = report::rss_bytes();
    let live_before = alloc::live_bytes();
    alloc::reset_peak();
    let transfers_before = ledger.transfer_count();

    let mut submitted = 0u64;
    while submitted < params.transfers {
        let count = (params.transfers - submitted).min(params.batch as u64) as usize;
        let timestamp = clock.batch(count);

        let started = Instant::now();
        events.clear();
        generator.fill(&mut events, count, &mut rng);
        generate_time += started.elapsed();

        let started = Instant::now();
        let first_handle = store.append_batch(timestamp, &events);
        append_time += started.elapsed();

        results.clear();
        let started = Instant::now();
        ledger.create_transfers(&store, timestamp, first_handle, &events, &mut results);
        let elapsed = started.elapsed();
        core_time += elapsed;
        histogram
            .record((elapsed.as_nanos() as u64).max(1))
            .expect("batch latency within an hour");
        batch_tps.push(count as f64 / elapsed.as_secs_f64().max(1e-9));
        batch_times.push(elapsed);

        for result in &results {
            if result.status != CreateTransferStatus::Created {
                failed += 1;
                first_failure.get_or_insert(result.status);
            }
        }
        submitted += count as u64;

        // Expire what is due, as the server's periodic pulse would (only `two_phase` has
        // timeouts; elsewhere `pulse_needed` is a look at an empty set).
        let pulse_timestamp = clock.pulse();
        if ledger.pulse_needed(pulse_timestamp) {
            let started = Instant::now();
            expired += ledger.expire_pending_transfers(&store, pulse_timestamp) as u64;
            let elapsed = started.elapsed();
            pulse_time += elapsed;
            core_time += elapsed;
            pulses += 1;
        }

        progress.update(submitted, params.transfers, || {
            format!(
                "{:.2} M transfers/s",
                submitted as f64 / core_time.as_secs_f64() / 1e6
            )
        });
    }

    let live_after = alloc::live_bytes();
    let peak = alloc::peak_bytes();
    let rss_after = report::rss_bytes();
    let transfers = ledger.transfer_count() - transfers_before;
    batch_times.sort_unstable();
    let slow_threshold = batch_times[batch_times.len() / 2] * SLOW_BATCH_FACTOR;
    let slow: Vec<Duration> = batch_times
        .iter()
        .copied()
        .filter(|&t| t > slow_threshold)
        .collect();
    let outcome = Outcome {
        workload,
        accounts,
        account_create,
        transfers,
        batches: batch_count,
        failed,
        first_failure,
        pendings: generator.pendings,
        posts: generator.posts,
        voids: generator.voids,
        expired,
        pulses,
        pulse_time,
        core_time,
        append_time,
        generate_time,
        batch_tps_median: report::median(&mut batch_tps),
        slow_batches: slow.len() as u64,
        slow_batch_time: slow.iter().sum(),
        latency: LatencySummary::of(&histogram),
        live_delta: live_after as i64 - live_before as i64,
        peak_delta: peak as i64 - live_before as i64,
        store_bytes: store.heap_bytes(),
        core_accounting: ledger.heap_bytes(),
        rss_delta: rss_before.zip(rss_after).map(|(b, a)| a as i64 - b as i64),
    };
    progress.finish(&format!(
        "{} transfers in {} batches, {:.2} M transfers/s, {} failed",
        thousands(transfers),
        thousands(outcome.batches),
        outcome.transfers_per_second() / 1e6,
        failed
    ));
    outcome
}

/// Makes the events of each batch, deterministically from the workload's rng.
struct Generator {
    workload: Workload,
    accounts: u64,
    /// For `zipfian`: rank → account index, so that hot accounts are spread over the table.
    zipf: Option<(Zipf, Vec<u32>)>,
    next_id: u64,
    // two_phase state: pending transfers are numbered 0, 1, 2, ... in creation order.
    pending_next: u64,
    resolve_next: u64,
    resolution_next: u64,
    pendings: u64,
    posts: u64,
    voids: u64,
}

/// Id namespaces of `two_phase` (the high 64 bits).
const PENDING_NAMESPACE: u128 = 1 << 64;
const RESOLUTION_NAMESPACE: u128 = 2 << 64;
/// Salts for the per-pending decisions of `two_phase`.
const SALT_EXPIRES: u64 = 0x5EED_0001;
const SALT_LONG_TIMEOUT: u64 = 0x5EED_0002;
const SALT_VOID: u64 = 0x5EED_0003;
const SALT_AMOUNT: u64 = 0x5EED_0004;

impl Generator {
    fn new(workload: Workload, accounts: usize, rng: &mut SplitMix64) -> Self {
        let zipf = matches!(workload.choice(), Choice::Zipfian)
            .then(|| (Zipf::new(accounts, ZIPF_S), rng.permutation(accounts)));
        Self {
            workload,
            accounts: accounts as u64,
            zipf,
            next_id: 1,
            pending_next: 0,
            resolve_next: 0,
            resolution_next: 0,
            pendings: 0,
            posts: 0,
            voids: 0,
        }
    }

    fn account(&self, rng: &mut SplitMix64) -> u64 {
        match &self.zipf {
            Some((zipf, permutation)) => u64::from(permutation[zipf.sample(rng)]),
            None => rng.below(self.accounts),
        }
    }

    /// Two distinct account ids.
    fn pair(&self, rng: &mut SplitMix64) -> (u128, u128) {
        let debit = self.account(rng);
        let mut credit = self.account(rng);
        while credit == debit {
            credit = self.account(rng);
        }
        (u128::from(debit) + 1, u128::from(credit) + 1)
    }

    fn transfer_id(&mut self) -> u128 {
        let sequence = self.next_id;
        self.next_id += 1;
        match self.workload.ids() {
            Ids::Sequential => u128::from(sequence),
            // mix64 is a bijection with mix64(0) = 0, so the low halves are distinct and non-zero
            // for sequence >= 1; the high half only makes the ids look random.
            Ids::Scrambled => {
                let id =
                    (u128::from(mix64(sequence ^ 0xA5A5_A5A5)) << 64) | u128::from(mix64(sequence));
                assert_ne!(id, u128::MAX);
                id
            }
        }
    }

    fn fill(&mut self, events: &mut Vec<Transfer>, count: usize, rng: &mut SplitMix64) {
        if self.workload == Workload::TwoPhase {
            return self.fill_two_phase(events, count, rng);
        }
        for _ in 0..count {
            let (debit, credit) = self.pair(rng);
            events.push(Transfer {
                id: self.transfer_id(),
                debit_account_id: debit,
                credit_account_id: credit,
                amount: u128::from(1 + rng.below(AMOUNT_RANGE)),
                ledger: 1,
                code: 1,
                ..Default::default()
            });
        }
    }

    /// Pending transfer `p` is left to expire (timeout 1 s, never resolved): 1 in 32.
    fn expires(p: u64) -> bool {
        mix64(p ^ SALT_EXPIRES).is_multiple_of(32)
    }

    /// Every other event resolves (posts, or 1 in 16 voids) the oldest unresolved pending transfer
    /// of an earlier batch that is not left to expire; the rest are new pending transfers, 1 in 4
    /// of them with a one-hour timeout (they enter and leave the expiry index) and 1 in 32 with a
    /// one-second timeout (left to expire). So a little over half are pending.
    fn fill_two_phase(&mut self, events: &mut Vec<Transfer>, count: usize, rng: &mut SplitMix64) {
        let resolvable_end = self.pending_next;
        for index in 0..count {
            if index % 2 == 1 {
                if let Some(p) = self.next_resolvable(resolvable_end) {
                    let void = mix64(p ^ SALT_VOID).is_multiple_of(16);
                    self.resolution_next += 1;
                    events.push(Transfer {
                        id: RESOLUTION_NAMESPACE | u128::from(self.resolution_next),
                        pending_id: PENDING_NAMESPACE | u128::from(p + 1),
                        // Post the full pending amount; a void's 0 means the full amount too.
                        amount: if void { 0 } else { AMOUNT_MAX },
                        flags: TransferFlags(if void {
                            TransferFlags::VOID_PENDING_TRANSFER
                        } else {
                            TransferFlags::POST_PENDING_TRANSFER
                        }),
                        ..Default::default()
                    });
                    if void {
                        self.voids += 1;
                    } else {
                        self.posts += 1;
                    }
                    continue;
                }
            }
            let p = self.pending_next;
            self.pending_next += 1;
            self.pendings += 1;
            let timeout = if Self::expires(p) {
                1
            } else if mix64(p ^ SALT_LONG_TIMEOUT).is_multiple_of(4) {
                3_600
            } else {
                0
            };
            let (debit, credit) = self.pair(rng);
            events.push(Transfer {
                id: PENDING_NAMESPACE | u128::from(p + 1),
                debit_account_id: debit,
                credit_account_id: credit,
                amount: u128::from(1 + mix64(p ^ SALT_AMOUNT) % AMOUNT_RANGE),
                ledger: 1,
                code: 1,
                timeout,
                flags: TransferFlags(TransferFlags::PENDING),
                ..Default::default()
            });
        }
    }

    fn next_resolvable(&mut self, end: u64) -> Option<u64> {
        while self.resolve_next < end {
            let p = self.resolve_next;
            self.resolve_next += 1;
            if !Self::expires(p) {
                return Some(p);
            }
        }
        None
    }
}
