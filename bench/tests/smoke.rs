//! Keeps the harness compiling and working: `core --smoke`, `durable --smoke`,
//! `recovery --smoke`, `recovery-mixed --smoke`, `graphql --smoke`, `payments --smoke` and
//! `connections --smoke` must exit 0 and write well-formed JSON.
//! Nothing here looks at speed (CI machines vary, and benchmarks never gate CI). The server
//! scenarios run the real `tally` binary (built with `cargo build --release -p tally-server` if
//! it is not in the target directory yet).

use std::process::Command;

use serde_json::Value;

/// Runs `tally-bench SCENARIO --smoke` with its output (and data directories) in a temp
/// target directory; checks the exit status, the table and the JSON envelope; returns the JSON.
fn smoke(scenario: &str, table_word: &str) -> Value {
    let target = tempfile::tempdir().expect("temp dir");
    let output = Command::new(env!("CARGO_BIN_EXE_tally-bench"))
        .args([scenario, "--smoke"])
        .env("CARGO_TARGET_DIR", target.path())
        .output()
        .expect("run tally-bench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "tally-bench {scenario} --smoke failed: {}\nstdout:\n{stdout}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains(table_word), "no table on stdout:\n{stdout}");

    let path = target.path().join("bench").join(format!("{scenario}.json"));
    let text = std::fs::read_to_string(&path).expect("SCENARIO.json written");
    let json: Value = serde_json::from_str(&text).expect("SCENARIO.json is JSON");

    assert_eq!(json["scenario"], scenario);
    let date = json["date"].as_str().expect("date");
    assert!(
        date.len() == 20 && date.ends_with('Z') && date.as_bytes()[10] == b'T',
        "{date}"
    );
    assert!(json["machine"]["cores"].as_u64().expect("cores") >= 1);
    assert!(json["machine"]["kernel"].is_string());
    assert!(json["machine"]["cpu_model"].is_string());
    assert_eq!(json["params"]["smoke"], true);
    // The data directories are temp dirs, removed at the end.
    let leftovers: Vec<_> = std::fs::read_dir(target.path())
        .expect("read target dir")
        .filter_map(Result::ok)
        .filter(|entry| entry.file_name().to_string_lossy().contains("-data-"))
        .collect();
    assert!(leftovers.is_empty(), "data directories left behind");
    json
}

fn non_negative(object: &Value, key: &str) {
    let value = object[key].as_f64();
    assert!(
        value.is_some_and(|v| v.is_finite() && v >= 0.0),
        "{key} = {} in {object}",
        object[key]
    );
}

#[test]
fn core_smoke_writes_json() {
    let json = smoke("core", "workload");

    let workloads = json["workloads"].as_object().expect("workloads object");
    for name in [
        "uniform",
        "uniform_random_ids",
        "zipfian",
        "accounts_1m",
        "two_phase",
    ] {
        let w = &workloads[name];
        assert!(w.is_object(), "workload {name} missing");
        for key in [
            "transfers_per_second",
            "transfers_per_second_median_batch",
            "ns_per_transfer",
            "p50_ms",
            "p99_ms",
            "p100_ms",
            "heap_bytes_per_transfer",
            "heap_bytes_per_transfer_beyond_record",
            "heap_bytes_per_transfer_core_accounting",
            "store_heap_bytes_per_transfer",
        ] {
            let value = w[key].as_f64();
            assert!(
                value.is_some_and(|v| v.is_finite() && v >= 0.0),
                "{name}.{key} = {}",
                w[key]
            );
        }
        // Every generated event is valid, so every one becomes a transfer.
        assert_eq!(w["failed"], 0, "{name}: {w}");
        assert_eq!(w["transfers"], json["params"]["transfers_per_workload"]);
    }
    // The smoke clock makes 1-second timeouts run out, so the pulse path runs too.
    let two_phase = &workloads["two_phase"];
    assert!(two_phase["expired"].as_u64().unwrap() > 0, "{two_phase}");
    assert!(two_phase["posted"].as_u64().unwrap() > 0, "{two_phase}");
    assert!(two_phase["voided"].as_u64().unwrap() > 0, "{two_phase}");
}

#[test]
fn durable_smoke_writes_json() {
    let json = smoke("durable", "workload");
    assert!(json["params"]["filesystem"].is_string());
    let workloads = json["workloads"].as_object().expect("workloads object");
    for name in ["batch_8189", "single_1", "single_8", "single_64"] {
        let w = &workloads[name];
        assert!(w.is_object(), "workload {name} missing");
        for key in [
            "transfers_per_second",
            "p50_ms",
            "p99_ms",
            "p100_ms",
            "fsyncs_per_transfer",
            "disk_bytes_per_transfer",
            "client_requests",
            "client_resends",
            "server_rss_bytes_end",
        ] {
            non_negative(w, key);
        }
        assert_eq!(w["failed"], 0, "{name}: {w}");
        assert!(w["transfers"].as_u64().unwrap() > 0, "{name}: {w}");
        // Every transfer is in the journal: at least its 128 bytes, and at least one record.
        assert!(
            w["disk_bytes_per_transfer"].as_f64().unwrap() >= 128.0,
            "{name}: {w}"
        );
        assert!(w["journal_records"].as_u64().unwrap() >= 1, "{name}: {w}");
        assert_eq!(w["clients"], w["client_connections"], "{name}: {w}");
    }
    assert_eq!(workloads["batch_8189"]["transfers_per_call"], 8189);
    assert_eq!(workloads["single_64"]["clients"], 64);
    assert_eq!(json["server_warnings"], serde_json::json!([]));
}

#[test]
fn recovery_smoke_writes_json() {
    let json = smoke("recovery", "start-up");
    let transfers = json["params"]["transfers"].as_u64().expect("transfers");
    assert!(transfers > 0);
    assert_eq!(json["load_failed"], 0);
    non_negative(&json, "restart_seconds");
    non_negative(&json, "replay_transfers_per_second");
    non_negative(&json, "disk_bytes_per_transfer");
    for name in ["crash_restart", "full_replay_restart", "clean_restart"] {
        let r = &json[name];
        non_negative(r, "restart_seconds");
        non_negative(r, "rss_bytes_per_transfer");
        non_negative(r, "hwm_bytes_per_transfer");
        assert!(r["rss_bytes"].as_u64().unwrap() > 0, "{name}: {r}");
    }
    // Without checkpoints the whole journal replays; after a clean stop nothing does.
    let full = &json["full_replay_restart"];
    assert_eq!(full["checkpoint_record"], 0);
    assert_eq!(full["records_replayed"], json["journal_records"]);
    assert_eq!(full["transfers_replayed"], transfers);
    assert_eq!(json["clean_restart"]["records_replayed"], 0);
    assert_eq!(json["server_warnings"], serde_json::json!([]));
}

#[test]
fn recovery_mixed_smoke_writes_json() {
    let json = smoke("recovery-mixed", "restart s");
    let cycles = json["cycles"].as_array().expect("cycles array");
    assert_eq!(
        cycles.len() as u64,
        json["params"]["cycles"].as_u64().unwrap()
    );
    for key in [
        "restart_seconds",
        "restart_seconds_max",
        "restart_seconds_last",
        "records_replayed_last",
    ] {
        non_negative(&json, key);
    }
    let mut transfers_before = 0;
    for cycle in cycles {
        non_negative(cycle, "restart_seconds");
        assert_eq!(cycle["write_failed"], 0, "{cycle}");
        assert_eq!(cycle["transfers_missing"], 0, "{cycle}");
        // Every transfer so far is read back, in requests of at most 8,189 ids.
        let transfers = cycle["transfers_total"].as_u64().unwrap();
        assert!(transfers > transfers_before, "{cycle}");
        assert_eq!(
            cycle["lookup_requests"].as_u64().unwrap(),
            transfers.div_ceil(8189),
            "{cycle}"
        );
        transfers_before = transfers;
        // The restart recovered the whole journal: from the checkpoint, then the replay.
        let recovered = &cycle["recovered"];
        assert!(recovered["op"].as_u64().unwrap() > 0, "{cycle}");
        assert_eq!(
            cycle["checkpoint_record"].as_u64().unwrap()
                + cycle["records_replayed"].as_u64().unwrap(),
            cycle["journal_records"].as_u64().unwrap(),
            "{cycle}"
        );
    }
    assert_eq!(json["transfers_missing"], 0);
    assert!(json["targets"]["restart_met"].is_boolean());
    assert_eq!(json["server_warnings"], serde_json::json!([]));
}

#[test]
fn graphql_smoke_writes_json() {
    let json = smoke("graphql", "workload");
    let runs = json["runs"].as_object().expect("runs object");
    for workload in ["deposit", "withdrawal", "query"] {
        for clients in [1, 4] {
            let name = format!("{workload}_{clients}");
            let r = &runs[&name];
            assert!(r.is_object(), "run {name} missing");
            for key in ["ops_per_second", "p50_ms", "p99_ms", "p999_ms", "p100_ms"] {
                non_negative(r, key);
            }
            assert_eq!(r["errors"], 0, "{name}: {r}");
            assert_eq!(r["requests"], 40, "{name}: {r}");
        }
    }
    assert_eq!(runs["withdrawal_4"]["mutations"], 40);
    assert_eq!(runs["query_1"]["queries"], 40);
    assert!(runs["withdrawal_1"]["post_latency"].is_object());
    assert_eq!(json["server_warnings"], serde_json::json!([]));
}

#[test]
fn payments_smoke_writes_json() {
    let json = smoke("payments", "clients");
    let runs = json["runs"].as_object().expect("runs object");
    let per_run = json["params"]["count"].as_u64().expect("count");
    for clients in [1, 4] {
        let name = format!("payments_{clients}");
        let r = &runs[&name];
        assert!(r.is_object(), "run {name} missing");
        for key in [
            "payments_per_second",
            "mutations_per_second",
            "p50_ms",
            "p99_ms",
            "p999_ms",
            "p100_ms",
            "server_cpu_per_second",
            "client_cpu_per_second",
        ] {
            non_negative(r, key);
        }
        for step in [
            "create_incoming_payment",
            "create_quote",
            "create_outgoing_payment",
            "fund",
        ] {
            let latency = &r[format!("{step}_latency")];
            non_negative(latency, "p99_ms");
            assert_eq!(latency["requests"], per_run, "{name}.{step}: {r}");
        }
        assert_eq!(r["errors"], 0, "{name}: {r}");
        assert_eq!(r["payments"], per_run, "{name}: {r}");
        assert_eq!(r["flows"], per_run, "{name}: {r}");
    }
    // Every payment made was read back COMPLETED (no warm-up with --smoke).
    assert_eq!(json["verified"], 2 * per_run);
    assert!(json["targets"]["fund_p99_ms_max"].is_number());
    assert_eq!(json["server_warnings"], serde_json::json!([]));
}

#[test]
fn connections_smoke_writes_json() {
    let json = smoke("connections", "phase");
    for key in [
        "rss_bytes_start",
        "rss_bytes_idle_connections_open",
        "rss_bytes_partial_frames_open",
        "rss_bytes_client_ids_end",
    ] {
        assert!(
            json[key].as_u64().is_some_and(|rss| rss > 0),
            "{key}: {json}"
        );
    }
    // Per-connection and per-id figures are differences of noisy readings: any sign.
    for key in [
        "rss_bytes_per_idle_connection",
        "rss_bytes_per_partial_frame_connection",
        "rss_bytes_per_client_id",
    ] {
        assert!(
            json[key].as_f64().is_some_and(f64::is_finite),
            "{key}: {json}"
        );
    }
    assert_eq!(json["params"]["client_ids"], 200);
    assert_eq!(json["server_warnings"], serde_json::json!([]));
}

#[test]
fn help_lists_scenarios() {
    let output = Command::new(env!("CARGO_BIN_EXE_tally-bench"))
        .arg("--help")
        .output()
        .expect("run tally-bench --help");
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for scenario in [
        "core",
        "durable",
        "recovery",
        "recovery-mixed",
        "graphql",
        "payments",
        "connections",
    ] {
        assert!(
            help.contains(scenario),
            "{scenario} missing from --help:\n{help}"
        );
    }
}
