//! `tally` itself: the binary, `tally start` as a `child::Child` (ready on `listening on ADDR`),
//! `tally inspect` for the journal's record and byte counts, and the server's log lines the
//! scenarios read (`recovered`, `checkpoint`, WARN and ERROR).
//!
//! The binary is `tally` next to the bench binary (same target directory and profile), else
//! `<target>/release/tally`, else it is built with `cargo build --release -p tally-server` into
//! the target directory the bench binary lives in; `--tally PATH` overrides all of that.
//!
//! Naming: a journal **record** is one core turn (one write, one fdatasync); a protocol **op**
//! is one client request. The server's `recovered` line calls the checkpoint's record
//! `checkpoint_op`; here it is `checkpoint_record`.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::harness::child::{Child, Spawn, Stream};
use crate::harness::options::ServerArgs;

/// How long a start-up may take before the harness gives up: a replay of a big journal takes a
/// while.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(600);

/// How to run `tally start` in a scenario: the binary, the segment size of a fresh data
/// directory, and more arguments and environment for the child.
pub(crate) struct Tally {
    /// The `tally` binary.
    pub binary: PathBuf,
    /// `--segment-mib`: the journal segment size when `tally start` formats the directory.
    pub segment_mib: u64,
    /// More arguments for `tally start` (e.g. `--transfers-max N`).
    pub args: Vec<String>,
    /// More environment variables (on top of `TALLY_LOG=info` and `NO_COLOR=1`).
    pub env: Vec<(String, String)>,
}

impl Tally {
    /// The binary (found or built) and segment size the shared options ask for; no extra
    /// arguments or environment.
    pub(crate) fn new(server: &ServerArgs) -> Tally {
        Tally {
            binary: binary(server.tally.as_deref()),
            segment_mib: server.segment_mib(),
            args: Vec::new(),
            env: Vec::new(),
        }
    }

    /// Starts `tally start --data-dir DIR --addresses 127.0.0.1:0 --segment-mib N ARGS...` and
    /// waits (up to 10 minutes) for `listening on ADDR` on stdout.
    pub(crate) fn start(&self, data_dir: &Path) -> Server {
        let mut args: Vec<OsString> = vec!["start".into(), "--data-dir".into()];
        args.push(data_dir.into());
        args.extend(["--addresses", "127.0.0.1:0", "--segment-mib"].map(OsString::from));
        args.push(self.segment_mib.to_string().into());
        args.extend(self.args.iter().map(OsString::from));
        let mut env: Vec<(OsString, OsString)> = vec![
            ("TALLY_LOG".into(), "info".into()),
            ("NO_COLOR".into(), "1".into()),
            // Native scenarios serve no Admin API nor auto-peering (so that parallel runs never contend for its
            // port); an environment variable, which older binaries ignore, not a flag. A
            // scenario that wants it overrides this through `env`.
            ("TALLY_GRAPHQL_ADDRESS".into(), "off".into()),
            ("TALLY_AUTO_PEERING_ADDRESS".into(), "off".into()),
        ];
        env.extend(
            self.env
                .iter()
                .map(|(key, value)| (key.into(), value.into())),
        );
        let process = Child::spawn(&Spawn {
            program: &self.binary,
            args,
            env,
            ready_stream: Stream::Stdout,
            ready_marker: "listening on ",
            ready_timeout: STARTUP_TIMEOUT,
        });
        let address = process
            .ready()
            .parse()
            .unwrap_or_else(|e| panic!("`listening on {}`: {e}", process.ready()));
        Server { process, address }
    }

    /// `tally inspect DIR`: the journal's records and bytes. The server must be stopped
    /// (inspect takes a shared lock and refuses while the server holds it).
    pub(crate) fn inspect(&self, data_dir: &Path) -> Inspection {
        let output = Command::new(&self.binary)
            .arg("inspect")
            .arg(data_dir)
            .env("NO_COLOR", "1")
            .output()
            .unwrap_or_else(|e| panic!("run tally inspect: {e}"));
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "tally inspect {} failed: {}\n{stdout}\n{}",
            data_dir.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        parse_inspection(&stdout)
            .unwrap_or_else(|| panic!("unexpected tally inspect output:\n{stdout}"))
    }
}

/// The `tally` binary to run: `explicit` if given, else next to this executable, else
/// `<target>/release/tally`, building it if it is not there.
fn binary(explicit: Option<&Path>) -> PathBuf {
    if let Some(path) = explicit {
        assert!(path.exists(), "--tally {}: no such file", path.display());
        return path.to_path_buf();
    }
    let exe = std::env::current_exe().expect("own executable path");
    let profile_dir = exe.parent().expect("executable has a directory");
    let beside = profile_dir.join("tally");
    if beside.exists() {
        return beside;
    }
    // The bench binary is <target>/<profile>/tally-bench (or <target>/<profile>/deps/...).
    let target = if profile_dir.ends_with("deps") {
        profile_dir.parent().and_then(Path::parent)
    } else {
        profile_dir.parent()
    }
    .expect("executable lives in <target>/<profile>")
    .to_path_buf();
    let release = target.join("release").join("tally");
    if release.exists() {
        return release;
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("bench/ sits in the workspace root");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!(
        "building tally (cargo build --release -p tally-server) into {}",
        target.display()
    );
    let status = Command::new(cargo)
        .args(["build", "--release", "-p", "tally-server", "--bin", "tally"])
        .current_dir(workspace)
        .env("CARGO_TARGET_DIR", &target)
        .status()
        .expect("run cargo build");
    assert!(status.success(), "building tally-server failed");
    assert!(
        release.exists(),
        "{} missing after build",
        release.display()
    );
    release
}

/// A running `tally start`.
pub(crate) struct Server {
    /// The child process: start-up time, memory, SIGTERM and SIGKILL, log lines.
    pub process: Child,
    /// The native protocol's address (`listening on ADDR`).
    pub address: SocketAddr,
}

impl Server {
    /// The `recovered` line of this start-up. The server logs it (stderr) before it prints
    /// `listening on` (stdout); the two pipes are read by two threads, so this waits for it.
    pub(crate) fn recovered(&self) -> Recovered {
        self.process
            .wait_for_line(Duration::from_secs(10), recovered)
    }
}

/// What `tally inspect DIR` says about the journal.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Inspection {
    /// Journal records: one per core turn, each one write and one fsync (group commit).
    pub records: u64,
    /// Bytes of log (record headers and bodies).
    pub log_bytes: u64,
    /// Bytes of record bodies.
    pub body_bytes: u64,
}

/// Parses `  records     N (ops 1..=N), L bytes of log, B bytes of bodies`.
fn parse_inspection(text: &str) -> Option<Inspection> {
    let line = text
        .lines()
        .find_map(|line| line.trim_start().strip_prefix("records"))?;
    // "N (ops 1..=N), L bytes of log, B bytes of bodies": drop the "(ops 1..=N)" part first.
    let without_ops = match (line.find('('), line.find(')')) {
        (Some(open), Some(close)) if open < close => {
            format!("{}{}", &line[..open], &line[close + 1..])
        }
        _ => line.to_string(),
    };
    let numbers: Vec<u64> = without_ops
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|word| word.parse().ok())
        .collect();
    match numbers[..] {
        [records, log_bytes, body_bytes] => Some(Inspection {
            records,
            log_bytes,
            body_bytes,
        }),
        _ => None,
    }
}

/// The `key=value` pairs of a tracing line, in order (`... recovered op=12 checkpoint_op=3`).
fn fields(line: &str) -> impl Iterator<Item = (&str, &str)> {
    line.split_whitespace().filter_map(|word| {
        let (key, value) = word.split_once('=')?;
        Some((key, value.trim_matches('"')))
    })
}

/// The number `key=N` of a tracing line.
fn field(line: &str, key: &str) -> Option<u64> {
    fields(line).find_map(|(k, value)| (k == key).then(|| value.parse().ok())?)
}

/// The last stderr line whose message is `message` (the word after the target's `: `).
fn find_line<'a>(lines: &'a [String], message: &str) -> Option<&'a String> {
    lines.iter().rev().find(|line| is_message(line, message))
}

fn is_message(line: &str, message: &str) -> bool {
    line.split_once(": ")
        .is_some_and(|(_, rest)| rest.split_whitespace().next() == Some(message))
}

/// The `recovered op=... checkpoint_op=... records=...` line of a start-up.
#[derive(Clone, Debug, Default)]
pub(crate) struct Recovered {
    /// Protocol op of the state after recovery.
    pub op: u64,
    /// Journal record the checkpoint named (0: none, replay from record 1).
    pub checkpoint_record: u64,
    /// Records replayed.
    pub records: u64,
    /// Every `key=value` of the line as it was logged (numbers as numbers), so that fields the
    /// server adds reach the JSON without a change here.
    pub fields: Map<String, Value>,
}

/// The last `recovered` line of `lines`.
pub(crate) fn recovered(lines: &[String]) -> Option<Recovered> {
    let line = find_line(lines, "recovered")?;
    let checkpoint_record = field(line, "checkpoint_record").or(field(line, "checkpoint_op"))?;
    Some(Recovered {
        op: field(line, "op")?,
        checkpoint_record,
        records: field(line, "records")?,
        fields: fields_json(line),
    })
}

/// A `checkpoint record=R op=Y bytes=B ...` line: a checkpoint the server wrote (logged once
/// durable).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Checkpoint {
    /// The journal record the checkpoint covers.
    pub record: u64,
    /// The protocol op of the state it holds.
    pub op: u64,
    /// Its size.
    pub bytes: u64,
    /// Every `key=value` of the line (what it cost: `encode_ms`, `total_ms`, and since format 3
    /// `head_us`, `step_us_max`, `write_ms`), numbers as numbers.
    pub fields: Map<String, Value>,
}

impl Checkpoint {
    /// Its `key=value` fields, as the server logged them (what a bench prints after its runs).
    pub(crate) fn fields_text(&self) -> String {
        let fields: Vec<String> = self
            .fields
            .iter()
            .map(|(key, value)| format!("{key}={value}"))
            .collect();
        fields.join(" ")
    }
}

/// Every `checkpoint` line of `lines`, in order.
pub(crate) fn checkpoints(lines: &[String]) -> Vec<Checkpoint> {
    checkpoint_lines(lines, "checkpoint")
}

/// Every checkpoint handed to the server's writer thread (`writing checkpoint` lines, since
/// format 3), in order: a superset of `checkpoints`, since one may land on disk, and be what
/// recovery uses, after the server last logged.
pub(crate) fn checkpoints_begun(lines: &[String]) -> Vec<Checkpoint> {
    checkpoint_lines(lines, "writing")
}

fn checkpoint_lines(lines: &[String], message: &str) -> Vec<Checkpoint> {
    lines
        .iter()
        .filter(|line| is_message(line, message))
        .filter_map(|line| {
            Some(Checkpoint {
                record: field(line, "record")?,
                op: field(line, "op")?,
                bytes: field(line, "bytes").unwrap_or(0),
                fields: fields_json(line),
            })
        })
        .collect()
}

/// The `key=value` pairs of a line as JSON, numbers as numbers.
fn fields_json(line: &str) -> Map<String, Value> {
    fields(line)
        .map(|(key, value)| {
            let value = value
                .parse::<u64>()
                .map_or_else(|_| Value::from(value), Value::from);
            (key.to_string(), value)
        })
        .collect()
}

/// WARN and ERROR lines of the server's log.
pub(crate) fn warnings(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .filter(|line| line.contains(" WARN ") || line.contains(" ERROR "))
        .cloned()
        .collect()
}

/// Prints the server's WARN and ERROR lines (the first 10), or that there were none.
pub(crate) fn print_warnings(warnings: &[String]) {
    if warnings.is_empty() {
        println!("server: no WARN or ERROR lines");
    } else {
        println!("server WARN/ERROR lines ({}):", warnings.len());
        for line in warnings.iter().take(10) {
            println!("  {line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_inspect_and_log_lines() {
        let text = "journal /x\n  cluster     0x0\n  segments    1 x 268435456 bytes\n  \
                    records     12 (ops 1..=12), 4096 bytes of log, 3000 bytes of bodies\n";
        assert_eq!(
            parse_inspection(text),
            Some(Inspection {
                records: 12,
                log_bytes: 4096,
                body_bytes: 3000
            })
        );
        let empty = "  records     0, 0 bytes of log, 0 bytes of bodies\n";
        assert_eq!(parse_inspection(empty), Some(Inspection::default()));
        let lines = vec![
            "2026-11-24T03:26:20Z  INFO tally_server::core: checkpoint record=3 op=5 bytes=99"
                .to_string(),
            "2026-11-24T03:26:21Z  INFO tally_server::recovery: recovered op=7 checkpoint_op=3 \
             records=4 reads=x"
                .to_string(),
            "2026-11-24T03:26:22Z  INFO tally_core::core_thread: writing checkpoint record=9 \
             op=11 bytes=200"
                .to_string(),
        ];
        let r = recovered(&lines).expect("recovered line");
        assert_eq!((r.op, r.checkpoint_record, r.records), (7, 3, 4));
        assert_eq!(r.fields["checkpoint_op"], 3);
        assert_eq!(r.fields["reads"], "x");
        let checkpoint = checkpoints(&lines);
        assert_eq!(
            checkpoint
                .iter()
                .map(|c| (c.record, c.op, c.bytes))
                .collect::<Vec<_>>(),
            vec![(3, 5, 99)]
        );
        assert_eq!(checkpoint[0].fields["bytes"], 99);
        let begun = checkpoints_begun(&lines);
        assert_eq!(
            begun
                .iter()
                .map(|c| (c.record, c.op, c.bytes))
                .collect::<Vec<_>>(),
            vec![(9, 11, 200)]
        );
        assert!(warnings(&lines).is_empty());
    }
}
