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

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};
use tally_client::Client;

use crate::report::{self, round, thousands, Progress, Stamp, Table};
use crate::rng::mix64;
use crate::scenarios::durable::{
    count_failed, create_accounts, filesystem_type, runtime, server_warnings, DataDir, TransferGen,
    ACCOUNTS, BATCH_FULL, DEFAULT_SEGMENT_MIB, SMOKE_SEGMENT_MIB,
};
use crate::server::{self, field, Memory, Recovered, Server};

const DEFAULT_TRANSFERS: u64 = 10_000_000;
const SMOKE_TRANSFERS: u64 = 5 * BATCH_FULL as u64;
const SMOKE_ACCOUNTS: u64 = 1_000;
const DEFAULT_LOAD_CLIENTS: usize = 4;

// Targets (the issue).
const TARGET_REPLAY_TPS: f64 = 5_000_000.0;
const TARGET_RESTART_SECONDS: f64 = 5.0;

#[derive(clap::Args, Debug)]
pub struct Args {
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
    /// Parent directory of the data directory [default: a temp dir under the target directory]
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Keep the data directory afterwards
    #[arg(long)]
    keep_data: bool,
    /// The `tally` binary [default: next to this one, else built with cargo]
    #[arg(long)]
    tally: Option<PathBuf>,
    /// Journal segment size, MiB [default: 256 (the server's); 8 with --smoke]
    #[arg(long)]
    segment_mib: Option<u64>,
    /// Tiny sizes (for CI: checks that the harness works; the figures mean nothing)
    #[arg(long)]
    smoke: bool,
    /// Seed of the transfer generator
    #[arg(long, default_value_t = 42)]
    seed: u64,
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

pub fn run(args: Args) {
    let requested = args.transfers.unwrap_or(if args.smoke {
        SMOKE_TRANSFERS
    } else {
        DEFAULT_TRANSFERS
    });
    let batches = requested.div_ceil(BATCH_FULL as u64).max(1);
    let transfers = batches * BATCH_FULL as u64;
    let accounts = args
        .accounts
        .unwrap_or(if args.smoke { SMOKE_ACCOUNTS } else { ACCOUNTS });
    let segment_mib = args.segment_mib.unwrap_or(if args.smoke {
        SMOKE_SEGMENT_MIB
    } else {
        DEFAULT_SEGMENT_MIB
    });
    let load_clients = args.load_clients.max(1);

    let stamp = Stamp::now();
    let binary = server::tally_binary(args.tally.as_deref());
    let data = DataDir::new(args.data_dir.as_deref(), "recovery", args.keep_data);
    eprintln!(
        "[recovery] tally {} on {} (filesystem {})",
        binary.display(),
        data.path.display(),
        filesystem_type(&data.path)
    );
    let runtime = runtime();
    let mut warnings = Vec::new();

    // 1. Load.
    let loader = Server::start(&binary, &data.path, segment_mib);
    let empty_start_seconds = loader.startup.as_secs_f64();
    let (load_seconds, failed) = runtime.block_on(load(
        loader.address,
        accounts,
        batches,
        load_clients,
        args.seed,
    ));
    let load_memory = loader.memory();
    let load_lines = loader.kill();
    warnings.extend(server_warnings(&load_lines));
    // `checkpoint record=R op=Y bytes=B` lines: record → protocol op.
    let checkpoints: Vec<(u64, u64, u64)> = load_lines
        .iter()
        .filter(|line| server::find_line(std::slice::from_ref(line), "checkpoint").is_some())
        .filter_map(|line| {
            Some((
                field(line, "record")?,
                field(line, "op")?,
                field(line, "bytes").unwrap_or(0),
            ))
        })
        .collect();
    let journal = server::inspect(&binary, &data.path);
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
            .find(|(record, _, _)| *record == recovered.checkpoint_record)
        {
            Some(&(_, checkpoint_op, _)) => {
                (op_last.saturating_sub(checkpoint_op) * BATCH_FULL as u64).min(transfers)
            }
            None => 0,
        }
    };

    // 2. Crash restart: SIGKILL, start from the newest checkpoint, replay the rest.
    let crash = Server::start(&binary, &data.path, segment_mib);
    let crash_recovered = crash.recovered();
    assert_eq!(
        crash_recovered.records + crash_recovered.checkpoint_record,
        journal.records
    );
    let op_last = crash_recovered.op;
    let crash_restart = Restart {
        kind: "after SIGKILL (newest checkpoint + replay)",
        seconds: crash.startup.as_secs_f64(),
        recovered: crash_recovered,
        transfers_replayed: replayed_after(&crash_recovered, op_last),
        memory: crash.memory(),
    };
    warnings.extend(server_warnings(&crash.kill()));

    // 3. Full replay: no checkpoint at all.
    for name in ["checkpoint-a", "checkpoint-b"] {
        let path = data.path.join(name);
        if path.exists() {
            std::fs::remove_file(&path)
                .unwrap_or_else(|e| panic!("remove {}: {e}", path.display()));
        }
    }
    let full = Server::start(&binary, &data.path, segment_mib);
    let full_recovered = full.recovered();
    assert_eq!(
        full_recovered.checkpoint_record, 0,
        "checkpoints deleted, yet the server started from one"
    );
    assert_eq!(full_recovered.records, journal.records);
    assert_eq!(full_recovered.op, op_last);
    let full_restart = Restart {
        kind: "no checkpoint (full replay)",
        seconds: full.startup.as_secs_f64(),
        recovered: full_recovered,
        transfers_replayed: transfers,
        memory: full.memory(),
    };

    // 4. SIGTERM right after that start-up, with nothing appended since: the server writes a
    //    checkpoint only if it appended log since the last one, so this start replays again.
    let (_, lines) = full.terminate();
    warnings.extend(server_warnings(&lines));
    let idle = Server::start(&binary, &data.path, segment_mib);
    let idle_recovered = idle.recovered();
    let idle_restart = Restart {
        kind: "after SIGTERM, nothing appended since start",
        seconds: idle.startup.as_secs_f64(),
        recovered: idle_recovered,
        transfers_replayed: if idle_recovered.checkpoint_record == 0 {
            transfers
        } else {
            0
        },
        memory: idle.memory(),
    };

    // 5. Clean restart: one client registers (a record), SIGTERM writes a checkpoint, and the
    //    start replays nothing.
    runtime.block_on(async {
        let client = Client::connect(idle.address, 0).await.expect("connect");
        drop(client);
    });
    let (stop, lines) = idle.terminate();
    warnings.extend(server_warnings(&lines));
    let clean = Server::start(&binary, &data.path, segment_mib);
    let clean_recovered = clean.recovered();
    assert_eq!(
        clean_recovered.records, 0,
        "a clean stop after new records left records to replay"
    );
    let clean_restart = Restart {
        kind: "after SIGTERM (checkpoint, no replay)",
        seconds: clean.startup.as_secs_f64(),
        recovered: clean_recovered,
        transfers_replayed: 0,
        memory: clean.memory(),
    };
    let (_, lines) = clean.terminate();
    warnings.extend(server_warnings(&lines));

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
    if warnings.is_empty() {
        println!("server: no WARN or ERROR lines");
    } else {
        println!("server WARN/ERROR lines ({}):", warnings.len());
        for line in warnings.iter().take(10) {
            println!("  {line}");
        }
    }

    let params = json!({
        "transfers": transfers,
        "transfers_requested": requested,
        "batch_size": BATCH_FULL,
        "load_clients": load_clients,
        "accounts": accounts,
        "segment_mib": segment_mib,
        "seed": args.seed,
        "smoke": args.smoke,
        "tally": binary.display().to_string(),
        "data_dir": data.path.display().to_string(),
        "filesystem": filesystem_type(&data.path),
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
            .map(|(record, op, bytes)| json!({"record": record, "op": op, "bytes": bytes}))
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

/// Accounts, then `batches` full requests from `clients` clients at once. Returns the seconds
/// the transfers took and the failed events.
async fn load(
    address: std::net::SocketAddr,
    accounts: u64,
    batches: u64,
    clients: usize,
    seed: u64,
) -> (f64, u64) {
    {
        let client = Client::connect(address, 0).await.expect("connect");
        create_accounts(&client, accounts).await;
    }
    let mut connected = Vec::with_capacity(clients);
    for _ in 0..clients {
        connected.push(Client::connect(address, 0).await.expect("connect"));
    }
    let next_batch = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for client in connected {
        let next_batch = next_batch.clone();
        let done = done.clone();
        tasks.push(tokio::spawn(async move {
            let mut events = Vec::with_capacity(BATCH_FULL);
            let mut failed = 0;
            loop {
                let batch = next_batch.fetch_add(1, Ordering::Relaxed);
                if batch >= batches {
                    break;
                }
                // Batch b holds ids b * 8189 + 1 ..= (b + 1) * 8189, whichever client sends it.
                let mut generator = TransferGen::new(accounts, mix64(seed ^ batch));
                generator.next_id = batch * BATCH_FULL as u64 + 1;
                events.clear();
                generator.fill(&mut events, BATCH_FULL);
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
    let total = batches * BATCH_FULL as u64;
    let mut progress = Progress::new("recovery load");
    while !tasks.iter().all(|task| task.is_finished()) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let count = done.load(Ordering::Relaxed) * BATCH_FULL as u64;
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
