//! `recovery`: how long `tally start` takes on a big data directory, after a crash and after a
//! clean stop, and how fast it replays the log.
//!
//! 1. **Load**: a fresh data directory, 10,000 accounts, then N transfers (10 M by default) in
//!    full requests of 8,189 from several clients at once (4 by default, so that group commit
//!    always has the next request waiting: as fast as the server takes them).
//! 2. **Crash restart**: SIGKILL, then time `tally start` from spawn to `listening on`. The
//!    server checkpoints on SIGTERM and after every GiB of log, so after 10 M transfers (about
//!    1.3 GB of log) it starts from the checkpoint at about 1 GiB and replays the rest. The
//!    `recovered op=... checkpoint_op=... records=...` line gives the records replayed; the
//!    transfers replayed are 8,189 per request op after the checkpoint's op (from the
//!    `checkpoint record=... op=...` line the loading server logged).
//! 3. **Full replay**: SIGKILL again, delete `checkpoint-a` and `checkpoint-b`, start: the whole
//!    journal replays from record 1 (checked: `checkpoint_op=0`).
//! 4. **SIGTERM with nothing new**: SIGTERM right after that start, start again. The server
//!    writes a checkpoint on SIGTERM only if it appended log since its last checkpoint (none
//!    since the start here), so this start replays the whole journal again.
//! 5. **Clean restart**: one client registers (one record), SIGTERM (drain, checkpoint), start:
//!    no replay (checked: `records=0`).
//!
//! Each start-up time includes opening the journal, which reads and verifies every record (the
//! whole log, whatever the checkpoint), so the replay rate is given twice: transfers / start-up
//! seconds (a lower bound), and transfers / (full-replay start-up - clean start-up), which takes
//! the journal scan and the process start out. The journal was just written, so it is in the
//! page cache: these are warm-cache figures.
//!
//! Memory: VmRSS, VmHWM, RssAnon (the heap) and RssFile (the mapped journal pages) of the server
//! process right after each start-up, per transfer.
//!
//! A history of small writes and large reads, restarted after every cycle, is
//! `recovery-mixed` (`recovery_mixed.rs`).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};
use tally_client::Client;

use crate::harness::child::Memory;
use crate::harness::data_dir::DataDir;
use crate::harness::options::ServerArgs;
use crate::harness::report::{self, round, thousands, Progress, Stamp, Table};
use crate::harness::rng::mix64;
use crate::harness::tally::{self, Recovered, Tally};
use crate::harness::workload::{
    accounts_or_default, client_runtime, connect, count_failed, create_accounts, TransferGen,
    TransferGenOptions, REQUEST_EVENTS_MAX,
};

const DEFAULT_TRANSFERS: u64 = 10_000_000;
const SMOKE_TRANSFERS: u64 = 5 * REQUEST_EVENTS_MAX as u64;
const DEFAULT_LOAD_CLIENTS: usize = 4;

// Targets (the issue).
const TARGET_REPLAY_TPS: f64 = 5_000_000.0;
const TARGET_RESTART_SECONDS: f64 = 5.0;

/// `recovery`'s command line.
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Transfers loaded before the restarts, in full requests of 8,189 (rounded up)
    /// [default: 10,000,000; 40,945 with --smoke]
    #[arg(long)]
    transfers: Option<u64>,
    /// Clients loading at once, each with sequential full requests
    #[arg(long, default_value_t = DEFAULT_LOAD_CLIENTS)]
    load_clients: usize,
    /// Accounts created first [default: 10,000; 1,000 with --smoke]
    #[arg(long)]
    accounts: Option<u64>,
    /// Seed of the transfer generator
    #[arg(long, default_value_t = 42)]
    seed: u64,
    #[command(flatten)]
    server: ServerArgs,
}

/// One timed start-up.
struct Restart {
    kind: &'static str,
    seconds: f64,
    recovered: Recovered,
    transfers_replayed: u64,
    memory: Memory,
}

impl Restart {
    fn replay_tps(&self) -> Option<f64> {
        (self.transfers_replayed > 0).then(|| self.transfers_replayed as f64 / self.seconds)
    }

    fn to_json(&self, transfers: u64) -> Value {
        let per = |bytes: u64| round(bytes as f64 / transfers.max(1) as f64, 2);
        json!({
            "restart_seconds": round(self.seconds, 4),
            "recovered_op": self.recovered.op,
            "checkpoint_record": self.recovered.checkpoint_record,
            "records_replayed": self.recovered.records,
            "recovered": self.recovered.fields,
            "transfers_replayed": self.transfers_replayed,
            "replay_transfers_per_second": self.replay_tps().map(f64::round),
            "rss_bytes": self.memory.rss_bytes,
            "hwm_bytes": self.memory.hwm_bytes,
            "rss_anon_bytes": self.memory.rss_anon_bytes,
            "rss_file_bytes": self.memory.rss_file_bytes,
            "rss_bytes_per_transfer": per(self.memory.rss_bytes),
            "hwm_bytes_per_transfer": per(self.memory.hwm_bytes),
            "rss_anon_bytes_per_transfer": per(self.memory.rss_anon_bytes),
            "rss_file_bytes_per_transfer": per(self.memory.rss_file_bytes),
        })
    }
}

/// Runs the scenario: prints the table, writes `recovery.json`.
pub(crate) fn run(args: Args) {
    let smoke = args.server.smoke;
    let requested = args.transfers.unwrap_or(if smoke {
        SMOKE_TRANSFERS
    } else {
        DEFAULT_TRANSFERS
    });
    let batches = requested.div_ceil(REQUEST_EVENTS_MAX as u64).max(1);
    let transfers = batches * REQUEST_EVENTS_MAX as u64;
    let accounts = accounts_or_default(args.accounts, smoke);
    let segment_mib = args.server.segment_mib();
    let load_clients = args.load_clients.max(1);

    let stamp = Stamp::now();
    let tally = Tally::new(&args.server);
    let data = DataDir::new(&args.server, "recovery");
    eprintln!(
        "[recovery] tally {} on {} (filesystem {})",
        tally.binary.display(),
        data.path.display(),
        data.filesystem()
    );
    let runtime = client_runtime();
    let mut warnings = Vec::new();

    // 1. Load.
    let loader = tally.start(&data.path);
    let empty_start_seconds = loader.process.startup().as_secs_f64();
    let (load_seconds, failed) = runtime.block_on(load(
        loader.address,
        Load {
            accounts,
            batches,
            clients: load_clients,
            seed: args.seed,
        },
    ));
    let load_memory = loader.process.memory();
    let load_lines = loader.process.kill();
    warnings.extend(tally::warnings(&load_lines));
    let checkpoints = tally::checkpoints(&load_lines);
    // A checkpoint the loader handed to its writer may have landed just before the SIGKILL,
    // unlogged: recovery uses it, so its op is looked up among those begun as well.
    let checkpoints_begun = tally::checkpoints_begun(&load_lines);
    let journal = tally.inspect(&data.path);
    eprintln!(
        "[recovery] loaded {} transfers in {:.1} s ({:.0} k tx/s); {} records, {} bytes of log; \
         {} checkpoint(s) while loading",
        thousands(transfers),
        load_seconds,
        transfers as f64 / load_seconds / 1e3,
        thousands(journal.records),
        thousands(journal.log_bytes),
        checkpoints.len()
    );

    // The protocol op of the last request is recovered from the log; every op after the first
    // transfer request carries 8,189 transfers.
    let replayed_after = |recovered: &Recovered, op_last: u64| -> u64 {
        if recovered.checkpoint_record == 0 {
            return transfers;
        }
        match checkpoints
            .iter()
            .chain(&checkpoints_begun)
            .find(|checkpoint| checkpoint.record == recovered.checkpoint_record)
        {
            Some(checkpoint) => {
                (op_last.saturating_sub(checkpoint.op) * REQUEST_EVENTS_MAX as u64).min(transfers)
            }
            None => 0,
        }
    };

    // 2. Crash restart: SIGKILL, start from the newest checkpoint, replay the rest.
    let crash = tally.start(&data.path);
    let crash_recovered = crash.recovered();
    assert_eq!(
        crash_recovered.records + crash_recovered.checkpoint_record,
        journal.records
    );
    let op_last = crash_recovered.op;
    let crash_restart = Restart {
        kind: "after SIGKILL (newest checkpoint + replay)",
        seconds: crash.process.startup().as_secs_f64(),
        transfers_replayed: replayed_after(&crash_recovered, op_last),
        recovered: crash_recovered,
        memory: crash.process.memory(),
    };
    warnings.extend(tally::warnings(&crash.process.kill()));

    // 3. Full replay: no checkpoint at all.
    for name in ["checkpoint-a", "checkpoint-b"] {
        let path = data.path.join(name);
        if path.exists() {
            std::fs::remove_file(&path)
                .unwrap_or_else(|e| panic!("remove {}: {e}", path.display()));
        }
    }
    let full = tally.start(&data.path);
    let full_recovered = full.recovered();
    assert_eq!(
        full_recovered.checkpoint_record, 0,
        "checkpoints deleted, yet the server started from one"
    );
    assert_eq!(full_recovered.records, journal.records);
    assert_eq!(full_recovered.op, op_last);
    let full_restart = Restart {
        kind: "no checkpoint (full replay)",
        seconds: full.process.startup().as_secs_f64(),
        recovered: full_recovered,
        transfers_replayed: transfers,
        memory: full.process.memory(),
    };

    // 4. SIGTERM right after that start-up, with nothing appended since: the server writes a
    //    checkpoint only if it appended log since the last one, so this start replays again.
    let (_, lines) = full.process.terminate();
    warnings.extend(tally::warnings(&lines));
    let idle = tally.start(&data.path);
    let idle_recovered = idle.recovered();
    let idle_restart = Restart {
        kind: "after SIGTERM, nothing appended since start",
        seconds: idle.process.startup().as_secs_f64(),
        transfers_replayed: if idle_recovered.checkpoint_record == 0 {
            transfers
        } else {
            0
        },
        recovered: idle_recovered,
        memory: idle.process.memory(),
    };

    // 5. Clean restart: one client registers (a record), SIGTERM writes a checkpoint, and the
    //    start replays nothing.
    runtime.block_on(async {
        let client = Client::connect(idle.address, 0).await.expect("connect");
        drop(client);
    });
    let (stop, lines) = idle.process.terminate();
    warnings.extend(tally::warnings(&lines));
    let clean = tally.start(&data.path);
    let clean_recovered = clean.recovered();
    assert_eq!(
        clean_recovered.records, 0,
        "a clean stop after new records left records to replay"
    );
    let clean_restart = Restart {
        kind: "after SIGTERM (checkpoint, no replay)",
        seconds: clean.process.startup().as_secs_f64(),
        recovered: clean_recovered,
        transfers_replayed: 0,
        memory: clean.process.memory(),
    };
    let (_, lines) = clean.process.terminate();
    warnings.extend(tally::warnings(&lines));

    let net_replay_seconds = full_restart.seconds - clean_restart.seconds;
    let net_replay_tps = (net_replay_seconds > 0.0).then(|| transfers as f64 / net_replay_seconds);
    let restarts = [&crash_restart, &full_restart, &idle_restart, &clean_restart];

    // Report.
    let mut table = Table::new(&[
        "start-up",
        "seconds",
        "records replayed",
        "transfers replayed",
        "replay tx/s",
        "RSS B/tx",
        "HWM B/tx",
        "anon B/tx",
        "file B/tx",
    ]);
    for r in restarts {
        let per = |bytes: u64| format!("{:.1}", bytes as f64 / transfers as f64);
        table.row(vec![
            r.kind.into(),
            format!("{:.3}", r.seconds),
            thousands(r.recovered.records),
            thousands(r.transfers_replayed),
            r.replay_tps()
                .map_or("-".into(), |tps| thousands(tps.round() as u64)),
            per(r.memory.rss_bytes),
            per(r.memory.hwm_bytes),
            per(r.memory.rss_anon_bytes),
            per(r.memory.rss_file_bytes),
        ]);
    }
    print!("{}", table.render());
    let verdict = |met: bool| if met { "met" } else { "MISSED" };
    let worst_restart = crash_restart.seconds.max(clean_restart.seconds);
    println!(
        "\n{} transfers ({} accounts) loaded in {:.1} s: {} tx/s with {load_clients} clients; \
         {} journal records, {:.1} log bytes per transfer; {} checkpoint(s) while loading.\n\
         SIGTERM (drain + checkpoint) took {:.3} s. An empty server starts in {:.3} s.\n\
         Full replay net of the clean start-up: {} tx/s ({:.3} s).\n\
         Targets: replay >= 5 M tx/s: {} (full replay, net); restart with {} transfers <= 5 s: \
         {} (slowest of crash and clean restart, {:.3} s). Warm page cache.",
        thousands(transfers),
        thousands(accounts),
        load_seconds,
        thousands((transfers as f64 / load_seconds).round() as u64),
        thousands(journal.records),
        journal.log_bytes as f64 / transfers as f64,
        checkpoints.len(),
        stop.as_secs_f64(),
        empty_start_seconds,
        net_replay_tps.map_or("-".into(), |tps| thousands(tps.round() as u64)),
        net_replay_seconds,
        verdict(net_replay_tps.is_some_and(|tps| tps >= TARGET_REPLAY_TPS)),
        thousands(transfers),
        verdict(worst_restart <= TARGET_RESTART_SECONDS),
        worst_restart,
    );
    tally::print_warnings(&warnings);

    let params = json!({
        "transfers": transfers,
        "transfers_requested": requested,
        "batch_size": REQUEST_EVENTS_MAX,
        "load_clients": load_clients,
        "accounts": accounts,
        "segment_mib": segment_mib,
        "seed": args.seed,
        "smoke": smoke,
        "tally": tally.binary.display().to_string(),
        "data_dir": data.path.display().to_string(),
        "filesystem": data.filesystem(),
        "page_cache": "warm (the journal was just written)",
    });
    let mut results = Map::new();
    results.insert("load_seconds".into(), json!(round(load_seconds, 3)));
    results.insert(
        "load_transfers_per_second".into(),
        json!((transfers as f64 / load_seconds).round()),
    );
    results.insert("load_failed".into(), json!(failed));
    results.insert(
        "load_server_rss_bytes_per_transfer".into(),
        json!(round(load_memory.rss_bytes as f64 / transfers as f64, 2)),
    );
    results.insert(
        "load_server_hwm_bytes_per_transfer".into(),
        json!(round(load_memory.hwm_bytes as f64 / transfers as f64, 2)),
    );
    results.insert("journal_records".into(), json!(journal.records));
    results.insert("log_bytes".into(), json!(journal.log_bytes));
    results.insert(
        "disk_bytes_per_transfer".into(),
        json!(round(journal.log_bytes as f64 / transfers as f64, 2)),
    );
    results.insert(
        "checkpoints_while_loading".into(),
        json!(checkpoints
            .iter()
            .map(|c| json!({"record": c.record, "op": c.op, "bytes": c.bytes}))
            .collect::<Vec<_>>()),
    );
    results.insert(
        "empty_start_seconds".into(),
        json!(round(empty_start_seconds, 4)),
    );
    results.insert(
        "sigterm_stop_seconds".into(),
        json!(round(stop.as_secs_f64(), 4)),
    );
    results.insert("crash_restart".into(), crash_restart.to_json(transfers));
    results.insert(
        "full_replay_restart".into(),
        full_restart.to_json(transfers),
    );
    results.insert(
        "idle_sigterm_restart".into(),
        idle_restart.to_json(transfers),
    );
    results.insert("clean_restart".into(), clean_restart.to_json(transfers));
    results.insert(
        "restart_seconds".into(),
        json!(round(crash_restart.seconds, 4)),
    );
    results.insert(
        "replay_transfers_per_second".into(),
        json!(full_restart.replay_tps().map(f64::round)),
    );
    results.insert(
        "replay_transfers_per_second_net".into(),
        json!(net_replay_tps.map(f64::round)),
    );
    results.insert("server_warnings".into(), json!(warnings));
    results.insert(
        "targets".into(),
        json!({
            "replay_transfers_per_second_min": TARGET_REPLAY_TPS,
            "restart_seconds_max": TARGET_RESTART_SECONDS,
            "replay_met": net_replay_tps.is_some_and(|tps| tps >= TARGET_REPLAY_TPS),
            "restart_met": worst_restart <= TARGET_RESTART_SECONDS,
        }),
    );
    let path = report::write_json("recovery", &stamp, params, Value::Object(results));
    println!("wrote {}", path.display());
}

/// What `load` sends.
#[derive(Clone, Copy, Debug)]
struct Load {
    accounts: u64,
    /// Full requests of 8,189 transfers.
    batches: u64,
    /// Clients sending at once.
    clients: usize,
    seed: u64,
}

/// Accounts, then `load.batches` full requests from `load.clients` clients at once. Returns the
/// seconds the transfers took and the failed events.
async fn load(address: SocketAddr, load: Load) -> (f64, u64) {
    let Load {
        accounts,
        batches,
        clients,
        seed,
    } = load;
    {
        let client = Client::connect(address, 0).await.expect("connect");
        create_accounts(&client, accounts).await;
    }
    let connected = connect(address, clients).await;
    let next_batch = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for client in connected {
        let next_batch = next_batch.clone();
        let done = done.clone();
        tasks.push(tokio::spawn(async move {
            let mut events = Vec::with_capacity(REQUEST_EVENTS_MAX);
            let mut failed = 0;
            loop {
                let batch = next_batch.fetch_add(1, Ordering::Relaxed);
                if batch >= batches {
                    break;
                }
                // Batch b holds ids b * 8189 + 1 ..= (b + 1) * 8189, whichever client sends it.
                let mut generator = TransferGen::new(TransferGenOptions {
                    accounts,
                    seed: mix64(seed ^ batch),
                    first_id: batch * REQUEST_EVENTS_MAX as u64 + 1,
                });
                events.clear();
                generator.fill(&mut events, REQUEST_EVENTS_MAX);
                let results = client
                    .create_transfers(&events)
                    .await
                    .expect("create_transfers");
                failed += count_failed(&results);
                done.fetch_add(1, Ordering::Relaxed);
            }
            failed
        }));
    }
    let total = batches * REQUEST_EVENTS_MAX as u64;
    let mut progress = Progress::new("recovery load");
    while !tasks.iter().all(|task| task.is_finished()) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let count = done.load(Ordering::Relaxed) * REQUEST_EVENTS_MAX as u64;
        progress.update(count, total, || {
            format!(
                "{:.0} k tx/s",
                count as f64 / started.elapsed().as_secs_f64() / 1e3
            )
        });
    }
    let mut failed = 0;
    for task in tasks {
        failed += task.await.expect("load task");
    }
    let seconds = started.elapsed().as_secs_f64();
    progress.finish(&format!(
        "{} transfers in {:.1} s, {:.0} k tx/s, {failed} failed",
        thousands(total),
        seconds,
        total as f64 / seconds / 1e3
    ));
    (seconds, failed)
}
