//! Old formats keep opening: data directories written by earlier versions of `tally` must open
//! with this one and reach exactly the state they had.
//!
//! Every `tests/fixtures/format-*/` directory holds `data/` (a data directory written by the
//! commit that introduced that format; never regenerated) and `EXPECTED` (facts recorded with
//! that same commit; see `format-1/README.md`). For each fixture, on a copy of `data/` (opening
//! may write: it fsyncs, cuts a torn tail, and `start` appends and checkpoints):
//!
//! 1. `tally inspect COPY` succeeds and reports a clean tail;
//! 2. `tally inspect COPY --digest` succeeds, and its op and both digests (checkpoint + replay,
//!    full replay) equal `op` and `digest` in `EXPECTED`;
//! 3. `tally start` on the copy serves: every `account` and `transfer` of `EXPECTED` looks up
//!    field for field as the old version served it, the first transfer resubmitted is `exists`,
//!    a new transfer is `created` with a timestamp after every old one; SIGTERM exits 0;
//! 4. `tally inspect COPY --digest` succeeds again, now over the checkpoint this version wrote.
//!
//! Why: the log is kept forever and is the store of transfer bodies, so a format change that
//! old directories cannot follow loses acknowledged data. A failure here means the change under
//! test broke compatibility: fix the change (or add a migration), never the fixture.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use tally_client::{Account, Client, CreateTransferStatus, Transfer, TransferFlags};

const TALLY: &str = env!("CARGO_BIN_EXE_tally");
const START_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on each client call: a hang fails the test.
const CALL_TIMEOUT: Duration = Duration::from_secs(20);

#[test]
fn every_old_format_opens_and_reaches_its_recorded_state() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut fixtures: Vec<PathBuf> = fs::read_dir(&root)
        .unwrap_or_else(|error| panic!("read {}: {error}", root.display()))
        .map(|entry| entry.expect("fixture entry").path())
        .filter(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with("format-"))
        })
        .collect();
    fixtures.sort();
    assert!(
        fixtures.iter().any(|path| path.ends_with("format-1")),
        "no fixture format-1 in {}",
        root.display()
    );
    for fixture in &fixtures {
        check_fixture(fixture);
    }
}

fn check_fixture(fixture: &Path) {
    let name = fixture.file_name().unwrap().to_string_lossy().into_owned();
    let expected = Expected::read(&fixture.join("EXPECTED"));
    let temp = tempfile::Builder::new()
        .prefix(&format!("tally-old-{name}-"))
        .tempdir()
        .expect("temporary directory");
    let data = temp.path().join("data");
    copy_dir(&fixture.join("data"), &data);

    // 1. The read-only inspection accepts it as it is.
    let output = tally_inspect(&data, false);
    let summary = success(&output, &format!("{name}: tally inspect"));
    let tail = summary
        .lines()
        .find(|line| line.trim_start().starts_with("tail"))
        .unwrap_or_else(|| panic!("{name}: no tail line in tally inspect:\n{summary}"));
    assert!(
        tail.trim_end().ends_with("clean"),
        "{name}: tally inspect does not find a clean tail:\n{summary}"
    );

    // 2. Both rebuilds reach the recorded op and digest.
    check_digest(&name, &data, Some(&expected));

    // 3. It serves what the old version served, and takes new writes.
    let server = Server::start(&data);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(check_served(&name, server.address, &expected));
    drop(runtime);
    server.terminate();

    // 4. Its own checkpoint over the old log rebuilds to the same state as a full replay.
    check_digest(&name, &data, None);
}

/// `tally inspect DATA --digest` succeeds (so the two digests agree) and, with `expected`, its op
/// and digests are the recorded ones.
fn check_digest(name: &str, data: &Path, expected: Option<&Expected>) {
    let output = tally_inspect(data, true);
    let stdout = success(&output, &format!("{name}: tally inspect --digest"));
    let value = |label: &str| {
        stdout
            .lines()
            .find_map(|line| line.strip_prefix(label))
            .map(|rest| rest.trim().to_string())
            .unwrap_or_else(|| panic!("{name}: no `{label}` line in:\n{stdout}"))
    };
    let op = value("op ");
    let from_checkpoint = value("digest (checkpoint + replay)");
    let from_start = value("digest (full replay)");
    assert_eq!(
        from_checkpoint, from_start,
        "{name}: the two digests:\n{stdout}"
    );
    if let Some(expected) = expected {
        assert_eq!(op, expected.op.to_string(), "{name}: op:\n{stdout}");
        assert_eq!(
            from_checkpoint, expected.digest,
            "{name}: digest (checkpoint + replay):\n{stdout}"
        );
        assert_eq!(
            from_start, expected.digest,
            "{name}: digest (full replay):\n{stdout}"
        );
    }
}

async fn check_served(name: &str, address: SocketAddr, expected: &Expected) {
    let client = call(Client::connect(address, 0)).await.expect("connect");

    let ids: Vec<u128> = expected
        .accounts
        .iter()
        .map(|fields| fields["id"])
        .collect();
    let accounts = call(client.lookup_accounts(&ids))
        .await
        .expect("lookup_accounts");
    let served: Vec<Fields> = accounts.iter().map(account_fields).collect();
    same_objects(name, "account", &served, &expected.accounts);

    let ids: Vec<u128> = expected
        .transfers
        .iter()
        .map(|fields| fields["id"])
        .collect();
    let transfers = call(client.lookup_transfers(&ids))
        .await
        .expect("lookup_transfers");
    let served: Vec<Fields> = transfers.iter().map(transfer_fields).collect();
    same_objects(name, "transfer", &served, &expected.transfers);

    // The old objects are what new requests are checked against; new timestamps follow theirs.
    let old = *transfers
        .first()
        .expect("EXPECTED lists at least one transfer");
    let resubmitted = Transfer {
        timestamp: 0,
        ..old
    };
    let new = Transfer {
        id: u128::MAX - 1,
        debit_account_id: old.debit_account_id,
        credit_account_id: old.credit_account_id,
        amount: 1,
        ledger: old.ledger,
        code: old.code,
        flags: TransferFlags(0),
        ..Transfer::default()
    };
    let results = call(client.create_transfers(&[resubmitted, new]))
        .await
        .expect("create_transfers");
    let statuses: Vec<_> = results.iter().map(|result| result.status).collect();
    assert_eq!(
        statuses,
        [CreateTransferStatus::Exists, CreateTransferStatus::Created],
        "{name}: resubmitting transfer {} and creating a new one",
        old.id
    );
    assert_eq!(
        results[0].timestamp, old.timestamp,
        "{name}: `exists` carries the old timestamp"
    );
    let newest_old = expected
        .accounts
        .iter()
        .chain(&expected.transfers)
        .map(|fields| fields["timestamp"])
        .max()
        .unwrap();
    assert!(
        u128::from(results[1].timestamp) > newest_old,
        "{name}: new timestamp {} not after the old ones (newest {newest_old})",
        results[1].timestamp
    );
}

/// The served objects are the expected ones, in order, field for field.
fn same_objects(name: &str, kind: &str, served: &[Fields], expected: &[Fields]) {
    let ids = |objects: &[Fields]| objects.iter().map(|o| o["id"]).collect::<Vec<_>>();
    assert_eq!(
        ids(served),
        ids(expected),
        "{name}: the {kind}s that lookup found"
    );
    for (served, expected) in served.iter().zip(expected) {
        assert_eq!(served, expected, "{name}: {kind} {}", expected["id"]);
    }
}

async fn call<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(CALL_TIMEOUT, future)
        .await
        .expect("client call took too long")
}

// ------------------------------------------------------------------------------------------
// EXPECTED.

/// One object's fields by name, as in `EXPECTED` (`account id=1 debits_pending=3 ...`).
type Fields = BTreeMap<String, u128>;

struct Expected {
    op: u64,
    digest: String,
    accounts: Vec<Fields>,
    transfers: Vec<Fields>,
}

impl Expected {
    /// Lines `KEY VALUE`; `#` starts a comment line. `commit` is for people only.
    fn read(path: &Path) -> Expected {
        let text = fs::read_to_string(path)
            .unwrap_or_else(|error| panic!("read {}: {error}", path.display()));
        let (mut op, mut digest) = (None, None);
        let (mut accounts, mut transfers) = (Vec::new(), Vec::new());
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (key, value) = line.split_once(' ').unwrap_or((line, ""));
            match key {
                "commit" => {}
                "op" => op = Some(value.parse().expect("op in EXPECTED")),
                "digest" => digest = Some(value.to_string()),
                "account" => accounts.push(parse_fields(value)),
                "transfer" => transfers.push(parse_fields(value)),
                _ => panic!("{}: unknown line {line:?}", path.display()),
            }
        }
        Expected {
            op: op.unwrap_or_else(|| panic!("{}: no op", path.display())),
            digest: digest.unwrap_or_else(|| panic!("{}: no digest", path.display())),
            accounts,
            transfers,
        }
    }
}

fn parse_fields(text: &str) -> Fields {
    text.split_whitespace()
        .map(|field| {
            let (name, value) = field
                .split_once('=')
                .unwrap_or_else(|| panic!("field {field:?} in EXPECTED is not NAME=VALUE"));
            let value = value
                .parse()
                .unwrap_or_else(|_| panic!("field {field:?} in EXPECTED is not a number"));
            (name.to_string(), value)
        })
        .collect()
}

fn account_fields(a: &Account) -> Fields {
    [
        ("id", a.id),
        ("debits_pending", a.debits_pending),
        ("debits_posted", a.debits_posted),
        ("credits_pending", a.credits_pending),
        ("credits_posted", a.credits_posted),
        ("user_data_128", a.user_data_128),
        ("user_data_64", a.user_data_64.into()),
        ("user_data_32", a.user_data_32.into()),
        ("ledger", a.ledger.into()),
        ("code", a.code.into()),
        ("flags", a.flags.0.into()),
        ("timestamp", a.timestamp.into()),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_string(), value))
    .collect()
}

fn transfer_fields(t: &Transfer) -> Fields {
    [
        ("id", t.id),
        ("debit_account_id", t.debit_account_id),
        ("credit_account_id", t.credit_account_id),
        ("amount", t.amount),
        ("pending_id", t.pending_id),
        ("user_data_128", t.user_data_128),
        ("user_data_64", t.user_data_64.into()),
        ("user_data_32", t.user_data_32.into()),
        ("timeout", t.timeout.into()),
        ("ledger", t.ledger.into()),
        ("code", t.code.into()),
        ("flags", t.flags.0.into()),
        ("timestamp", t.timestamp.into()),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_string(), value))
    .collect()
}

// ------------------------------------------------------------------------------------------
// Files and processes.

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir(to).unwrap_or_else(|error| panic!("create {}: {error}", to.display()));
    for entry in fs::read_dir(from).unwrap_or_else(|e| panic!("read {}: {e}", from.display())) {
        let entry = entry.expect("directory entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target)
                .unwrap_or_else(|error| panic!("copy {:?}: {error}", entry.path()));
        }
    }
}

/// Runs `tally inspect DATA` (with `--digest` if `digest`) to completion.
fn tally_inspect(data: &Path, digest: bool) -> Output {
    let mut command = Command::new(TALLY);
    command.arg("inspect").arg(data).env("NO_COLOR", "1");
    if digest {
        command.arg("--digest");
    }
    command.output().expect("run tally inspect")
}

/// Asserts that `output` is a success; returns its stdout.
fn success(output: &Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{stdout}{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

type Lines = Arc<Mutex<Vec<String>>>;

/// A `tally start` child process on a free port; killed on drop unless terminated.
struct Server {
    child: Child,
    address: SocketAddr,
    log: Lines,
    threads: Vec<JoinHandle<()>>,
    stopped: bool,
}

impl Server {
    fn start(data: &Path) -> Server {
        let mut child = Command::new(TALLY)
            .arg("start")
            .args(["--graphql-address", "off", "--auto-peering-address", "off"])
            .arg("--data-dir")
            .arg(data)
            .args(["--addresses", "127.0.0.1:0"])
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn tally start");
        let log = Lines::default();
        let (sender, stdout_lines) = mpsc::channel();
        let threads = vec![
            collect_lines(child.stderr.take().unwrap(), log.clone(), None),
            collect_lines(child.stdout.take().unwrap(), log.clone(), Some(sender)),
        ];
        let mut server = Server {
            child,
            address: "127.0.0.1:0".parse().unwrap(),
            log,
            threads,
            stopped: false,
        };
        // Stdout reaches end of file if tally exits; then the log says why.
        let line = stdout_lines
            .recv_timeout(START_TIMEOUT)
            .unwrap_or_else(|error| panic!("tally start printed no `listening on` ({error:?})"));
        server.address = line
            .strip_prefix("listening on ")
            .and_then(|address| address.trim().parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line of tally start: {line:?}"));
        server
    }

    /// SIGTERM: tally must write its checkpoint and exit 0.
    fn terminate(mut self) {
        let pid = i32::try_from(self.child.id()).expect("pid");
        // SAFETY: signals our own child, which has not been waited for (so the pid is its own).
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0, "kill -TERM");
        let deadline = Instant::now() + STOP_TIMEOUT;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for tally") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "tally did not exit within {STOP_TIMEOUT:?} of SIGTERM"
            );
            thread::sleep(Duration::from_millis(10));
        };
        self.stopped = true;
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        // A failed assertion prints the log (drop).
        assert!(status.success(), "tally exited with {status} after SIGTERM");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if !self.stopped {
            let _ = self.child.kill();
            let _ = self.child.wait();
            for thread in self.threads.drain(..) {
                let _ = thread.join();
            }
        }
        if thread::panicking() {
            eprintln!(
                "--- tally log:\n{}\n---",
                self.log.lock().unwrap().join("\n")
            );
        }
    }
}

/// Reads `reader` line by line into `lines` (and `sender`, if any) until end of file.
fn collect_lines(
    reader: impl Read + Send + 'static,
    lines: Lines,
    sender: Option<mpsc::Sender<String>>,
) -> JoinHandle<()> {
    thread::spawn(move || {
        for line in BufReader::new(reader).lines() {
            let Ok(line) = line else { break };
            lines.lock().unwrap().push(line.clone());
            if let Some(sender) = &sender {
                let _ = sender.send(line);
            }
        }
    })
}
