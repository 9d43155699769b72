//! A SIGKILL while a checkpoint is being written in the background loses nothing, and a
//! checkpoint that cannot be written stops the server as it always did.
//!
//! The core copies a checkpoint's growing parts between turns and hands the blob to the
//! journal's writer thread, serving meanwhile (docs/server.md, "Checkpoints and recovery"). This
//! test builds a state big enough for that to take a while (about 4.2 M transfers, the work that
//! makes a checkpoint due), kills the server with SIGKILL once it logged `writing checkpoint`
//! and the writer began, and restarts it: recovery must pass over the half-written checkpoint (or use it,
//! if it landed first), replay the rest, and serve every transfer that was acknowledged, as it
//! was sent. Then SIGTERM, and `tally inspect --digest` must rebuild the same state from the
//! checkpoint and from the first record.
//!
//! Real files, real fsyncs, a real child process; the load comes from `tally-client` (the
//! official client's pace would make the state take minutes). The kill aims at the write (it
//! comes once the writer's temporary file appears); whether it landed there is printed, not
//! asserted: it depends on timing.

// Shared with the other server tests; this one uses only `strip_ansi`.
#[allow(dead_code)]
mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use tally_client::{Account, Client, CreateAccountStatus, CreateTransferStatus, Transfer};
use tokio::sync::watch;

const TALLY: &str = env!("CARGO_BIN_EXE_tally");
const ACCOUNTS: u128 = 1_000;
/// Transfers per request: a full request.
const REQUEST_TRANSFERS: u128 = 8_189;
/// Concurrent clients loading.
const CLIENTS: u128 = 2;
/// Bound on each client call and on each wait for the server.
const TIMEOUT: Duration = Duration::from_secs(120);

/// A `tally start` child; its log lines arrive on `lines`.
struct Server {
    child: Child,
    address: SocketAddr,
    lines: Receiver<String>,
    log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    fn start(data: &Path) -> Server {
        let mut child = Command::new(TALLY)
            .arg("start")
            .args(["--graphql-address", "off", "--auto-peering-address", "off"])
            .arg("--data-dir")
            .arg(data)
            .args(["--addresses", "127.0.0.1:0", "--segment-mib", "64"])
            .env("NO_COLOR", "1")
            .env("TALLY_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn tally start");
        let log: Arc<Mutex<Vec<String>>> = Arc::default();
        let (sender, lines) = mpsc::channel();
        let stderr = BufReader::new(child.stderr.take().expect("stderr"));
        let stderr_log = log.clone();
        thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                let line = common::strip_ansi(&line);
                stderr_log.lock().unwrap().push(line.clone());
                let _ = sender.send(line);
            }
        });
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut first = String::new();
        stdout.read_line(&mut first).expect("read stdout");
        let address = first
            .trim()
            .strip_prefix("listening on ")
            .and_then(|address| address.parse().ok())
            .unwrap_or_else(|| {
                let _ = child.kill();
                panic!(
                    "tally start did not listen ({first:?}):\n{}",
                    log.lock().unwrap().join("\n")
                )
            });
        Server {
            child,
            address,
            lines,
            log,
        }
    }

    /// Waits for a log line containing `text`; returns it.
    fn wait_for(&self, text: &str) -> String {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(text) => return line,
                Ok(_) => {}
                Err(error) => panic!(
                    "no `{text}` in the server's log ({error}):\n{}",
                    self.log_text()
                ),
            }
        }
    }

    fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    fn sigkill(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("wait");
    }

    /// SIGTERM: the server drains, checkpoints and exits 0.
    fn sigterm(self) {
        let (status, log) = self.sigterm_status();
        assert!(status.success(), "SIGTERM: {status}\n{log}");
    }

    /// SIGTERM; how the server exited, and its log.
    fn sigterm_status(mut self) -> (ExitStatus, String) {
        let pid = i32::try_from(self.child.id()).expect("pid");
        // SAFETY: signals our own child, not yet waited for (so the pid is its own).
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        let status = self.child.wait().expect("wait");
        // Stderr ends with the process: every line is in the log once the reader is done.
        while self.lines.recv_timeout(TIMEOUT).is_ok() {}
        (status, self.log_text())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if thread::panicking() {
            eprintln!("--- tally log:\n{}\n---", self.log_text());
        }
    }
}

/// The transfer with `id`: between accounts that follow from the id, amount 1.
fn transfer(id: u128) -> Transfer {
    let debit = 1 + id % ACCOUNTS;
    Transfer {
        id,
        debit_account_id: debit,
        credit_account_id: 1 + (debit % ACCOUNTS),
        amount: 1,
        ledger: 1,
        code: 1,
        ..Transfer::default()
    }
}

/// Sends full requests of fresh transfers from `CLIENTS` clients until `stop` turns true (a
/// call in flight then is abandoned: its server is gone); every request acknowledged (all
/// created) is added to `acknowledged` as its first id.
async fn load(
    address: SocketAddr,
    first_request: u128,
    stop: watch::Receiver<bool>,
    acknowledged: Arc<Mutex<Vec<u128>>>,
) {
    let mut tasks = Vec::new();
    for client_index in 0..CLIENTS {
        let mut stop = stop.clone();
        let acknowledged = acknowledged.clone();
        tasks.push(tokio::spawn(async move {
            let client = Client::connect(address, 0).await.expect("connect");
            let mut request = first_request + client_index;
            loop {
                let first_id = 1 + request * REQUEST_TRANSFERS;
                let events: Vec<Transfer> = (first_id..first_id + REQUEST_TRANSFERS)
                    .map(transfer)
                    .collect();
                let results = tokio::select! {
                    results = client.create_transfers(&events) => results,
                    _ = stop.wait_for(|stop| *stop) => break,
                };
                let Ok(results) = results else {
                    break;
                };
                assert!(results
                    .iter()
                    .all(|result| result.status == CreateTransferStatus::Created));
                acknowledged.lock().unwrap().push(first_id);
                request += CLIENTS;
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
}

/// A checkpoint whose write fails (here: a directory where the writer creates its temporary
/// file) stops the server with the error, as before the write moved to a thread of its own;
/// nothing acknowledged is lost, and once the obstacle is gone the server starts and checkpoints.
#[test]
fn a_failed_checkpoint_write_stops_the_server_and_loses_nothing() {
    let temporary = tempfile::Builder::new()
        .prefix("tally-checkpoint-fails-")
        .tempdir()
        .expect("temporary directory");
    let data = temporary.path().join("data");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let server = Server::start(&data);
    let events: Vec<Transfer> = (1..=REQUEST_TRANSFERS).map(transfer).collect();
    runtime.block_on(async {
        let client = Client::connect(server.address, 0).await.expect("connect");
        let accounts: Vec<Account> = (1..=ACCOUNTS)
            .map(|id| Account {
                id,
                ledger: 1,
                code: 1,
                ..Account::default()
            })
            .collect();
        client.create_accounts(&accounts).await.expect("accounts");
        client.create_transfers(&events).await.expect("transfers");
    });
    let obstacle = data.join("checkpoint.tmp");
    std::fs::create_dir(&obstacle).expect("a directory in the writer's way");
    let (status, log) = server.sigterm_status();
    assert!(
        !status.success(),
        "the checkpoint could not be written:\n{log}"
    );
    assert!(
        log.contains("checkpoint at record") && log.contains("failed"),
        "the error names the checkpoint:\n{log}"
    );

    std::fs::remove_dir(&obstacle).expect("remove the obstacle");
    let server = Server::start(&data);
    runtime.block_on(async {
        let client = Client::connect(server.address, 0).await.expect("connect");
        let ids: Vec<u128> = events.iter().map(|event| event.id).collect();
        let found = client.lookup_transfers(&ids).await.expect("lookup");
        assert_eq!(found.len(), events.len());
    });
    server.sigterm();
    assert!(data.join("checkpoint-a").exists());
}

#[test]
fn sigkill_during_a_background_checkpoint_loses_nothing() {
    let temporary = tempfile::Builder::new()
        .prefix("tally-checkpoint-")
        .tempdir()
        .expect("temporary directory");
    let data = temporary.path().join("data");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let acknowledged: Arc<Mutex<Vec<u128>>> = Arc::default();

    // A first checkpoint (on SIGTERM) for recovery to fall back on.
    let server = Server::start(&data);
    runtime.block_on(async {
        let client = Client::connect(server.address, 0).await.expect("connect");
        let accounts: Vec<Account> = (1..=ACCOUNTS)
            .map(|id| Account {
                id,
                ledger: 1,
                code: 1,
                ..Account::default()
            })
            .collect();
        let results = client.create_accounts(&accounts).await.expect("accounts");
        assert!(results
            .iter()
            .all(|result| result.status == CreateAccountStatus::Created));
        for request in 0..CLIENTS {
            let first_id = 1 + request * REQUEST_TRANSFERS;
            let events: Vec<Transfer> = (first_id..first_id + REQUEST_TRANSFERS)
                .map(transfer)
                .collect();
            client.create_transfers(&events).await.expect("transfers");
            acknowledged.lock().unwrap().push(first_id);
        }
    });
    server.sigterm();

    // Load until the next checkpoint is handed to the writer thread, then SIGKILL.
    let server = Server::start(&data);
    let (stop, stopped) = watch::channel(false);
    let loading = {
        let (address, acknowledged) = (server.address, acknowledged.clone());
        let handle = runtime.handle().clone();
        thread::spawn(move || handle.block_on(load(address, CLIENTS, stopped, acknowledged)))
    };
    let writing = server.wait_for("writing checkpoint");
    // Aim for the write itself: once the writer's temporary file is there (or the checkpoint
    // landed first, or after a while).
    let aimed = Instant::now();
    while !data.join("checkpoint.tmp").exists()
        && !server.log_text().contains(": checkpoint record=")
        && aimed.elapsed() < Duration::from_secs(5)
    {
        thread::sleep(Duration::from_micros(200));
    }
    server.sigkill();
    let temporary_left = data.join("checkpoint.tmp").exists();
    stop.send(true).expect("the load listens");
    loading.join().expect("load");
    let acknowledged = acknowledged.lock().unwrap().clone();
    eprintln!(
        "SIGKILL after `{writing}`; checkpoint.tmp {}; {} requests acknowledged",
        if temporary_left {
            "left behind: the kill landed during the write"
        } else {
            "absent: the write had not begun or had finished"
        },
        acknowledged.len()
    );

    // Recovery serves every acknowledged transfer, as sent.
    let server = Server::start(&data);
    let recovered = server.wait_for(" recovered ");
    eprintln!("{recovered}");
    assert!(!data.join("checkpoint.tmp").exists());
    runtime.block_on(async {
        let client = Client::connect(server.address, 0).await.expect("connect");
        for &first_id in &acknowledged {
            let ids: Vec<u128> = (first_id..first_id + REQUEST_TRANSFERS).collect();
            let found = tokio::time::timeout(TIMEOUT, client.lookup_transfers(&ids))
                .await
                .expect("lookup in time")
                .expect("lookup");
            assert_eq!(found.len(), ids.len(), "request at id {first_id}");
            for (found, id) in found.iter().zip(ids) {
                let sent = transfer(id);
                assert_eq!(
                    (found.id, found.debit_account_id, found.credit_account_id),
                    (sent.id, sent.debit_account_id, sent.credit_account_id)
                );
                assert_eq!(found.amount, sent.amount);
            }
        }
    });
    server.sigterm();

    let output = Command::new(TALLY)
        .arg("inspect")
        .arg(&data)
        .arg("--digest")
        .env("NO_COLOR", "1")
        .output()
        .expect("tally inspect --digest");
    assert!(
        output.status.success(),
        "tally inspect --digest:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
