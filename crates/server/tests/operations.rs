//! What an operator sees of a real `tally start` (issue 9): `/metrics` parses as Prometheus text
//! exposition (with a parser, as a scraper reads it) and its counters move with the work done;
//! `/healthz` is 200 while serving and 503 while a recovery replays the journal, which logs its
//! progress; requests run in spans with a request id; a log captured to a file has no escape
//! codes and no secret, even at `trace`.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use tally_client::Client;
use tally_ledger::{Account, Transfer};

const ADMIN_SECRET: &str = "admin-secret-never-logged";
const WEBHOOK_SECRET: &str = "webhook-secret-never-logged";

/// A `tally start` child: stdout lines on a channel, stderr to a file.
struct Tally {
    child: Child,
    lines: mpsc::Receiver<String>,
    log: PathBuf,
}

impl Drop for Tally {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Tally {
    fn start(data_dir: &Path, log: &Path, flags: &[&str]) -> Tally {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tally"))
            .arg("start")
            .arg("--data-dir")
            .arg(data_dir)
            .args([
                "--addresses",
                "127.0.0.1:0",
                "--auto-peering-address",
                "off",
            ])
            .args(flags)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log).expect("log file"))
            .spawn()
            .expect("spawn tally");
        let stdout = BufReader::new(child.stdout.take().expect("piped"));
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Tally {
            child,
            lines,
            log: log.to_path_buf(),
        }
    }

    /// The address on the first stdout line that starts with `prefix`.
    fn address(&self, prefix: &str) -> SocketAddr {
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(60))
                .unwrap_or_else(|_| panic!("no `{prefix}` line; log:\n{}", self.log_text()));
            if let Some(address) = line.strip_prefix(prefix) {
                return address.parse().expect("an address");
            }
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then the exit status.
    fn stop(mut self) -> std::process::ExitStatus {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        self.child.wait().expect("wait")
    }
}

/// GET `http://address/path`: the status and the body.
fn get(address: SocketAddr, path: &str) -> (u16, String) {
    match ureq::get(&format!("http://{address}{path}")).call() {
        Ok(response) => (response.status(), response.into_string().expect("text")),
        Err(ureq::Error::Status(status, response)) => {
            (status, response.into_string().unwrap_or_default())
        }
        Err(error) => panic!("GET {path}: {error}"),
    }
}

/// A scrape of `/metrics`, parsed.
struct Scrape(prometheus_parse::Scrape);

impl Scrape {
    fn of(address: SocketAddr) -> Scrape {
        let (status, text) = get(address, "/metrics");
        assert_eq!(status, 200);
        let lines = text.lines().map(|line| Ok(line.to_owned()));
        Scrape(prometheus_parse::Scrape::parse(lines).expect("Prometheus text exposition"))
    }

    /// The value of a counter or gauge sample whose labels include `labels`; 0 if absent.
    fn value(&self, metric: &str, labels: &[(&str, &str)]) -> f64 {
        self.0
            .samples
            .iter()
            .filter(|sample| sample.metric == metric)
            .filter(|sample| {
                labels
                    .iter()
                    .all(|(name, value)| sample.labels.get(name) == Some(value))
            })
            .map(|sample| match &sample.value {
                prometheus_parse::Value::Counter(value)
                | prometheus_parse::Value::Gauge(value)
                | prometheus_parse::Value::Untyped(value) => *value,
                prometheus_parse::Value::Histogram(buckets) => {
                    buckets.last().map_or(0.0, |bucket| bucket.count)
                }
                prometheus_parse::Value::Summary(_) => panic!("no summaries"),
            })
            .sum()
    }
}

/// Rafiki's `generateApiSignature(secret, 1, body)`.
fn sign(body: &str) -> String {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let parsed: Value = serde_json::from_str(body).expect("JSON");
    let canonical = serde_jcs::to_string(&parsed).expect("canonical JSON");
    let mut mac = Hmac::<Sha256>::new_from_slice(ADMIN_SECRET.as_bytes()).expect("any key");
    mac.update(format!("{t}.{canonical}").as_bytes());
    let digest: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    format!("t={t}, v1={digest}")
}

/// A signed `POST /graphql`; the JSON answer.
fn graphql(address: SocketAddr, query: &str, variables: Value) -> Value {
    let body = serde_json::to_string(&json!({ "query": query, "variables": variables })).unwrap();
    let signature = sign(&body);
    ureq::post(&format!("http://{address}/graphql"))
        .set("content-type", "application/json")
        .set("signature", &signature)
        .send_string(&body)
        .expect("POST /graphql")
        .into_json()
        .expect("JSON")
}

const CREATE_ASSET: &str =
    "mutation($input: CreateAssetInput!) { createAsset(input: $input) { asset { id } } }";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn accounts() -> Vec<Account> {
    (1..=2)
        .map(|id| Account {
            id,
            ledger: 1,
            code: 1,
            ..Default::default()
        })
        .collect()
}

fn transfers(first_id: u128, count: u128) -> Vec<Transfer> {
    (first_id..first_id + count)
        .map(|id| Transfer {
            id,
            debit_account_id: 1,
            credit_account_id: 2,
            amount: 1,
            ledger: 1,
            code: 1,
            ..Default::default()
        })
        .collect()
}

#[test]
fn metrics_count_the_work_and_the_log_names_requests_and_keeps_secrets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tally = Tally::start(
        &dir.path().join("data"),
        &dir.path().join("tally.log"),
        &[
            "--graphql-address",
            "127.0.0.1:0",
            "--segment-mib",
            "4",
            "--log-level",
            "trace",
            "--admin-api-secret",
            ADMIN_SECRET,
            "--webhook-url",
            "http://127.0.0.1:9/",
            "--webhook-secret",
            WEBHOOK_SECRET,
        ],
    );
    let native = tally.address("listening on ");
    let http = tally.address("graphql listening on ");
    assert_eq!(get(http, "/healthz"), (200, "ok\n".to_owned()));
    let before = Scrape::of(http);
    // Signatures must be timestamped after the server's start plus the allowance for clocks
    // ahead (docs/graphql.md, "Signing").
    std::thread::sleep(Duration::from_millis(
        tally_graphql::FUTURE_SKEW_MS_MAX + 100,
    ));

    // Two createAsset calls, the second a duplicate; then native accounts and transfers.
    for _ in 0..2 {
        graphql(
            http,
            CREATE_ASSET,
            json!({ "input": { "code": "USD", "scale": 2 } }),
        );
    }
    let runtime = runtime();
    runtime.block_on(async {
        let client = Client::connect(native, 0).await.expect("connect");
        client.create_accounts(&accounts()).await.expect("accounts");
        client
            .create_transfers(&transfers(1, 100))
            .await
            .expect("transfers");
    });

    // The reply stage is observed once a reply's last byte is written, and the client can read
    // the reply before the server's writer task gets there: scrape until the third reply's
    // observation is in, for at most a second (the assertions below still require it).
    let reply = [("stage", "reply")];
    let replied = |scrape: &Scrape| {
        scrape.value("tally_core_stage_duration_seconds", &reply)
            - before.value("tally_core_stage_duration_seconds", &reply)
            >= 3.0
    };
    let mut after = Scrape::of(http);
    for _ in 0..50 {
        if replied(&after) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
        after = Scrape::of(http);
    }
    let moved = |metric: &str, labels: &[(&str, &str)]| {
        after.value(metric, labels) - before.value(metric, labels)
    };
    let created = [("operation", "createAsset"), ("code", "ok")];
    let duplicate = [("operation", "createAsset"), ("code", "DUPLICATE")];
    assert_eq!(moved("tally_graphql_operations_total", &created), 1.0);
    assert_eq!(moved("tally_graphql_operations_total", &duplicate), 1.0);
    let latency = [("operation", "createAsset")];
    assert_eq!(
        moved("tally_graphql_operation_duration_seconds", &latency),
        2.0
    );
    let create_transfers = [("operation", "create_transfers")];
    assert_eq!(moved("tally_native_requests_total", &create_transfers), 1.0);
    assert_eq!(moved("tally_ledger_transfers", &[]), 100.0);
    assert!(moved("tally_core_batches_total", &[]) >= 3.0);
    assert!(moved("tally_journal_fsync_duration_seconds", &[]) >= 3.0);
    assert!(moved("tally_journal_size_bytes", &[]) > 100.0 * 128.0);
    // Every stage of a native request was timed: the register, the accounts and the transfers
    // are three requests, each in a record of its own (one client, one request in flight).
    for stage in [
        "receive",
        "decode",
        "queue",
        "append",
        "apply",
        "fsync",
        "fsync_wait",
        "reply",
    ] {
        let moved = moved("tally_core_stage_duration_seconds", &[("stage", stage)]);
        assert!(moved >= 3.0, "stage {stage}: {moved} observations");
    }
    assert_eq!(after.value("tally_native_sessions", &[]), 1.0);

    assert!(tally.stop().success());
    let log = std::fs::read_to_string(dir.path().join("tally.log")).expect("log");
    assert!(!log.contains('\u{1b}'), "escape codes in a file");
    assert!(log.contains("graphql{request_id="), "no GraphQL request id");
    assert!(
        log.contains("native_request{request_id="),
        "no native request id"
    );
    for secret in [ADMIN_SECRET, WEBHOOK_SECRET, "v1="] {
        assert!(!log.contains(secret), "{secret} logged");
    }
}

/// Writes `transfers` transfers through a server killed afterwards, so that no checkpoint covers
/// them and the next start replays them all.
fn journal_to_replay(data_dir: &Path, log: &Path, transfers_count: u128) {
    let tally = Tally::start(
        data_dir,
        log,
        &["--graphql-address", "off", "--segment-mib", "64"],
    );
    let native = tally.address("listening on ");
    runtime().block_on(async {
        let client = Client::connect(native, 0).await.expect("connect");
        client.create_accounts(&accounts()).await.expect("accounts");
        for first in (0..transfers_count).step_by(8189) {
            let count = 8189.min(transfers_count - first);
            client
                .create_transfers(&transfers(first + 1, count))
                .await
                .expect("transfers");
        }
    });
    // Tally's drop kills it: SIGKILL, no shutdown checkpoint.
}

#[test]
fn healthz_is_503_while_recovery_replays_and_progress_is_logged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("data");
    // About 0.3 s of replay on this project's 2-core machine: long enough to be seen as it
    // runs, with progress reported every 20 ms instead of every second.
    journal_to_replay(&data_dir, &dir.path().join("first.log"), 1_000_000);

    let tally = Tally::start(
        &data_dir,
        &dir.path().join("tally.log"),
        &[
            "--graphql-address",
            "off",
            "--metrics-address",
            "127.0.0.1:0",
            "--progress-interval-ms",
            "20",
        ],
    );
    let http = tally.address("metrics listening on ");
    let mut statuses = Vec::new();
    let mut replay_seen = false;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = get(http, "/healthz");
        statuses.push(status);
        if status == 200 {
            break;
        }
        assert_eq!((status, body.as_str()), (503, "recovering\n"));
        replay_seen |= Scrape::of(http).value("tally_recovery_records", &[]) > 0.0;
        assert!(Instant::now() < deadline, "never healthy");
    }
    assert_eq!(statuses.first(), Some(&503), "{statuses:?}");
    tally.address("listening on ");
    let after = Scrape::of(http);
    assert_eq!(after.value("tally_ledger_transfers", &[]), 1_000_000.0);
    assert_eq!(
        after.value("tally_recovery_replayed_records", &[]),
        after.value("tally_recovery_records", &[])
    );
    assert!(replay_seen || after.value("tally_recovery_records", &[]) > 0.0);
    let log = tally.log_text();
    let progress = log
        .lines()
        .find(|line| line.contains("replaying"))
        .unwrap_or_else(|| panic!("no progress line:\n{log}"));
    for field in ["records=", "mib=", "mib_per_s=", "seconds_left="] {
        assert!(progress.contains(field), "{progress}");
    }
    assert!(tally.stop().success());
}
