//! Keeps the harness compiling and working: `core --smoke` must exit 0 and write a well-formed
//! `core.json`. Nothing here looks at speed (CI machines vary, and benchmarks never gate CI).

use std::process::Command;

use serde_json::Value;

#[test]
fn core_smoke_writes_json() {
    let target = tempfile::tempdir().expect("temp dir");
    let output = Command::new(env!("CARGO_BIN_EXE_tally-bench"))
        .args(["core", "--smoke"])
        .env("CARGO_TARGET_DIR", target.path())
        .output()
        .expect("run tally-bench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "tally-bench core --smoke failed: {}\nstdout:\n{stdout}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("workload"), "no table on stdout:\n{stdout}");

    let path = target.path().join("bench").join("core.json");
    let text = std::fs::read_to_string(&path).expect("core.json written");
    let json: Value = serde_json::from_str(&text).expect("core.json is JSON");

    assert_eq!(json["scenario"], "core");
    let date = json["date"].as_str().expect("date");
    assert!(
        date.len() == 20 && date.ends_with('Z') && date.as_bytes()[10] == b'T',
        "{date}"
    );
    assert!(json["machine"]["cores"].as_u64().expect("cores") >= 1);
    assert!(json["machine"]["kernel"].is_string());
    assert!(json["machine"]["cpu_model"].is_string());
    assert_eq!(json["params"]["smoke"], true);

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
fn help_lists_scenarios() {
    let output = Command::new(env!("CARGO_BIN_EXE_tally-bench"))
        .arg("--help")
        .output()
        .expect("run tally-bench --help");
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains("core"));
}
