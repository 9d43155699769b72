//! Logs as an operator captures them (issue 9): plain text without colour codes when stderr is
//! a file, one JSON object per line with `--log-format json`, and the level from `--log-level`.

use std::path::Path;
use std::process::{Command, Stdio};

/// Starts `tally start` with `flags`, stderr to `log`, waits for it to listen, stops it with
/// SIGTERM; returns the log.
fn run(data_dir: &Path, log: &Path, flags: &[&str]) -> String {
    let file = std::fs::File::create(log).expect("log file");
    let mut child = Command::new(env!("CARGO_BIN_EXE_tally"))
        .args(flags)
        .args(["start", "--addresses", "127.0.0.1:0"])
        .args(["--graphql-address", "off", "--auto-peering-address", "off"])
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--segment-mib", "4"])
        .stdout(Stdio::piped())
        .stderr(file)
        .spawn()
        .expect("spawn tally");
    let mut stdout = std::io::BufReader::new(child.stdout.take().expect("piped"));
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut line).expect("listening line");
    assert!(line.starts_with("listening on"), "{line}");
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().expect("wait").success());
    std::fs::read_to_string(log).expect("log")
}

#[test]
fn logs_captured_to_a_file_are_plain_and_json_when_asked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");

    let text = run(&data, &dir.path().join("text.log"), &[]);
    assert!(text.contains("recovered"), "{text}");
    assert!(!text.contains('\u{1b}'), "colour codes in a file:\n{text}");

    let json = run(
        &data,
        &dir.path().join("json.log"),
        &["--log-format", "json"],
    );
    let lines: Vec<serde_json::Value> = json
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect();
    assert!(lines
        .iter()
        .any(|line| line["fields"]["message"] == "recovered" && line["level"] == "INFO"));

    let quiet = run(
        &data,
        &dir.path().join("quiet.log"),
        &["--log-level", "warn"],
    );
    assert!(!quiet.contains("recovered"), "{quiet}");
}
