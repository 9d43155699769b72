//! End to end: a real `tally start` child process, driven by the official TigerBeetle Python
//! client 0.17.9 through the scripts in `tests/python/` at the repository root.
//!
//! Every test formats a fresh data directory, starts the server on port 0 (so tests can run in
//! parallel), runs one script against it (the scripts check exact results and exit non-zero,
//! printing what differed, on any mismatch), stops the server with SIGTERM (it must exit 0 and
//! log `stopped op=N digest=HEX`), and finally runs `tally inspect DIR --digest`, which must
//! succeed and print that same digest from a full replay and from the checkpoint. Every child
//! process is killed when a test fails (the guards below kill on drop).
//!
//! The client is installed with pip when `import tigerbeetle` fails or finds another version;
//! a failed install fails the tests.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

const TALLY: &str = env!("CARGO_BIN_EXE_tally");
/// Journal segments of the test servers: small, so that a test's data directory stays small.
const SEGMENT_MIB: &str = "8";
const SERVER_START_TIMEOUT: Duration = Duration::from_secs(30);
const SERVER_STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// A script's own watchdog ends it sooner; this is the harness's last resort.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);

// ------------------------------------------------------------------------------------------
// The tests.

/// All eight operations with exact results: statuses, timestamps, balances, filters.
#[test]
fn every_operation() {
    run_script("operations.py");
}

/// Many concurrent ClientAsync calls packed into multi-batch requests.
#[test]
fn multi_batch_requests() {
    run_script("multi_batch.py");
}

/// Linked chains (failing, open, complete, rolled back) and idempotent resubmission.
#[test]
fn linked_chains_and_idempotency() {
    run_script("chains.py");
}

/// Pending transfers: full and partial post, void, double resolution, balances and history.
#[test]
fn two_phase_transfers() {
    run_script("two_phase.py");
}

/// A pending transfer with a 1 s timeout is released by the server's pulse after its deadline
/// and can then be neither posted nor voided.
#[test]
fn pending_transfer_expiry() {
    run_script("expiry.py");
}

/// 8,189 events in one call work; 8,190 are refused by the client; full-size replies work.
#[test]
fn full_size_batches() {
    run_script("big_batch.py");
}

/// 64 concurrent sessions; a 65th evicts the least recently used one, whose next call fails.
#[test]
fn sixty_five_sessions_evict_the_least_recently_used() {
    run_script("sessions.py");
}

/// The server is killed with SIGKILL while a client is making calls, and restarted on the same
/// address: the same client object carries on, nothing acknowledged is lost.
#[test]
fn client_survives_a_sigkill_restart() {
    restart_under_client(Stop::Kill);
}

/// As above with SIGTERM: the server drains, checkpoints (checked with `inspect --digest`
/// before the restart) and recovers from the checkpoint.
#[test]
fn client_survives_a_sigterm_restart() {
    restart_under_client(Stop::Term);
}

// ------------------------------------------------------------------------------------------
// Test bodies.

fn run_script(script: &str) {
    let fixture = Fixture::new();
    let server = Server::start(&fixture.data, 0);
    let client = Script::start(script, &server.address());
    client.finish();
    let digest = server.terminate();
    check_digest(&fixture.data, &digest);
}

enum Stop {
    Kill,
    Term,
}

fn restart_under_client(stop: Stop) {
    let fixture = Fixture::new();
    let server = Server::start(&fixture.data, 0);
    let port = server.port;
    let mut client = Script::start("restart.py", &server.address());
    client.wait_for_line("READY", Duration::from_secs(60));
    // The client's loop makes calls back to back: some are in flight when the server stops.
    thread::sleep(Duration::from_millis(150));
    match stop {
        Stop::Kill => server.kill(),
        Stop::Term => {
            let digest = server.terminate();
            check_digest(&fixture.data, &digest);
        }
    }
    // The client meanwhile resends into a closed port.
    thread::sleep(Duration::from_millis(300));
    let server = Server::start(&fixture.data, port);
    // Which path recovery took: a full replay after SIGKILL, the checkpoint after SIGTERM.
    let recovered = server.wait_for_log("recovered", Duration::from_secs(10));
    let field = |name: &str| -> u64 {
        recovered
            .split_whitespace()
            .find_map(|field| field.strip_prefix(name)?.strip_prefix('='))
            .and_then(|value| value.parse().ok())
            .unwrap_or_else(|| panic!("no {name}= in {recovered:?}"))
    };
    match stop {
        Stop::Kill => assert!(
            field("checkpoint_op") == 0 && field("records") > 0,
            "expected a replay without checkpoint: {recovered}"
        ),
        Stop::Term => assert!(
            field("checkpoint_op") > 0 && field("records") == 0,
            "expected a recovery from the shutdown checkpoint: {recovered}"
        ),
    }
    client.send_line("go");
    client.finish();
    let digest = server.terminate();
    check_digest(&fixture.data, &digest);
}

/// `tally inspect DIR --digest` succeeds and both of its digests are the one the server logged
/// when it stopped.
fn check_digest(data: &Path, logged: &str) {
    let output = Command::new(TALLY)
        .arg("inspect")
        .arg(data)
        .arg("--digest")
        .env("NO_COLOR", "1")
        .output()
        .expect("run tally inspect");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "tally inspect --digest failed ({}):\n{stdout}{stderr}",
        output.status
    );
    let digest_of = |label: &str| {
        stdout
            .lines()
            .find_map(|line| line.strip_prefix(label))
            .map(|rest| rest.trim().to_string())
            .unwrap_or_else(|| panic!("no `{label}` line in:\n{stdout}"))
    };
    assert_eq!(
        digest_of("digest (checkpoint + replay)"),
        logged,
        "checkpoint digest:\n{stdout}"
    );
    assert_eq!(
        digest_of("digest (full replay)"),
        logged,
        "replay digest:\n{stdout}"
    );
}

// ------------------------------------------------------------------------------------------
// Child processes.

/// A temporary directory; the data directory inside it does not exist yet (`start` formats it).
struct Fixture {
    _dir: tempfile::TempDir,
    data: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        common::ensure_official_client();
        let dir = tempfile::Builder::new()
            .prefix("tally-official-client-")
            .tempdir()
            .expect("temporary directory");
        let data = dir.path().join("data");
        Fixture { _dir: dir, data }
    }
}

type Lines = Arc<Mutex<Vec<String>>>;

/// Reads `reader` line by line into `lines` (and `sender`, if any) until end of file.
fn collect_lines(
    reader: impl Read + Send + 'static,
    lines: Lines,
    sender: Option<Sender<String>>,
) -> JoinHandle<()> {
    thread::spawn(move || {
        for line in BufReader::new(reader).lines() {
            let Ok(line) = line else { break };
            let line = common::strip_ansi(&line);
            lines.lock().unwrap().push(line.clone());
            if let Some(sender) = &sender {
                let _ = sender.send(line);
            }
        }
    })
}

/// Removes terminal colour sequences (`ESC [ ... m`) from a log line.
fn wait_with_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("wait for a child") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

fn join_all(threads: &mut Vec<JoinHandle<()>>) {
    for thread in threads.drain(..) {
        let _ = thread.join();
    }
}

/// A `tally start` child process; killed on drop unless it was stopped.
struct Server {
    child: Child,
    port: u16,
    log: Lines,
    threads: Vec<JoinHandle<()>>,
    stopped: bool,
    /// A panic message already carries the log.
    reported: bool,
}

impl Server {
    /// Starts a server on `port` (0: any), formatting `data` if needed, and waits for its
    /// `listening on` line. A fixed port (a restart) may still be taken for a moment, for
    /// example by another test's client connection: that is retried for a while.
    fn start(data: &Path, port: u16) -> Server {
        let deadline = Instant::now() + SERVER_START_TIMEOUT;
        loop {
            match Server::try_start(data, port) {
                Ok(server) => return server,
                Err(log) if port != 0 && log.contains("bind") && Instant::now() < deadline => {
                    thread::sleep(Duration::from_millis(100));
                }
                Err(log) => panic!("tally start on port {port} failed:\n{log}"),
            }
        }
    }

    fn try_start(data: &Path, port: u16) -> Result<Server, String> {
        let mut child = Command::new(TALLY)
            .arg("start")
            .args(["--graphql-address", "off", "--auto-peering-address", "off"])
            .arg("--data-dir")
            .arg(data)
            .args(["--addresses", &format!("127.0.0.1:{port}")])
            .args(["--segment-mib", SEGMENT_MIB])
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
            port: 0,
            log,
            threads,
            stopped: false,
            reported: false,
        };
        let line = match stdout_lines.recv_timeout(SERVER_START_TIMEOUT) {
            Ok(line) => line,
            Err(error) => {
                // Exited (stdout closed) or hung: kill, and report its whole log.
                let _ = server.child.kill();
                let status = server.child.wait().expect("wait for tally");
                server.stopped = true;
                join_all(&mut server.threads);
                return Err(format!("{error:?}, {status}:\n{}", server.log_text()));
            }
        };
        let listening = line
            .strip_prefix("listening on 127.0.0.1:")
            .and_then(|port| port.trim().parse::<u16>().ok());
        match listening {
            Some(listening) if port == 0 || listening == port => {
                server.port = listening;
                Ok(server)
            }
            _ => Err(format!("unexpected first line {line:?}")),
        }
    }

    fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Waits for a log line containing `needle` (stderr is read by another thread); returns it.
    fn wait_for_log(&self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let found = self
                .log
                .lock()
                .unwrap()
                .iter()
                .find(|line| line.contains(needle))
                .cloned();
            if let Some(line) = found {
                return line;
            }
            // The log itself is printed by `drop`.
            assert!(Instant::now() < deadline, "tally did not log {needle:?}");
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGTERM: the server must drain, checkpoint and exit 0. Returns the digest it logged.
    fn terminate(mut self) -> String {
        let pid = i32::try_from(self.child.id()).expect("pid");
        // SAFETY: signals our own child, which has not been waited for (so the pid is its own).
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0, "kill -TERM");
        let status = wait_with_timeout(&mut self.child, SERVER_STOP_TIMEOUT);
        self.reported = true;
        let Some(status) = status else {
            panic!(
                "tally did not exit within {SERVER_STOP_TIMEOUT:?} of SIGTERM:\n{}",
                self.log_text()
            );
        };
        self.stopped = true;
        join_all(&mut self.threads);
        assert!(
            status.success(),
            "tally exited with {status} after SIGTERM:\n{}",
            self.log_text()
        );
        let log = self.log.lock().unwrap();
        let digest = log
            .iter()
            .filter(|line| line.contains("stopped"))
            .find_map(|line| {
                line.split_whitespace()
                    .find_map(|f| f.strip_prefix("digest="))
            })
            .map(str::to_string);
        drop(log);
        digest.unwrap_or_else(|| panic!("no `stopped ... digest=` line:\n{}", self.log_text()))
    }

    /// SIGKILL: no draining, no checkpoint.
    fn kill(mut self) {
        self.child.kill().expect("kill tally");
        self.child.wait().expect("wait for tally");
        self.stopped = true;
        join_all(&mut self.threads);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if !self.stopped {
            let _ = self.child.kill();
            let _ = self.child.wait();
            join_all(&mut self.threads);
        }
        if thread::panicking() && !self.reported {
            eprintln!(
                "--- tally log (port {}):\n{}\n---",
                self.port,
                self.log_text()
            );
        }
    }
}

/// A Python script from `tests/python/`, run with the server's address; killed on drop unless
/// it finished.
struct Script {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout_lines: Receiver<String>,
    stdout: Lines,
    stderr: Lines,
    threads: Vec<JoinHandle<()>>,
    finished: bool,
    /// A panic message already carries the output.
    reported: bool,
}

impl Script {
    fn start(name: &str, address: &str) -> Script {
        let path = common::python_dir().join(name);
        assert!(path.is_file(), "no script {}", path.display());
        let mut child = Command::new("python3")
            .arg(&path)
            .arg(address)
            .env("PYTHONUNBUFFERED", "1")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn python3");
        let stdout = Lines::default();
        let stderr = Lines::default();
        let (sender, stdout_lines) = mpsc::channel();
        let threads = vec![
            collect_lines(child.stdout.take().unwrap(), stdout.clone(), Some(sender)),
            collect_lines(child.stderr.take().unwrap(), stderr.clone(), None),
        ];
        Script {
            name: name.to_string(),
            stdin: child.stdin.take(),
            child,
            stdout_lines,
            stdout,
            stderr,
            threads,
            finished: false,
            reported: false,
        }
    }

    fn output(&self) -> String {
        format!(
            "--- {} stdout:\n{}\n--- {} stderr:\n{}\n---",
            self.name,
            self.stdout.lock().unwrap().join("\n"),
            self.name,
            self.stderr.lock().unwrap().join("\n")
        )
    }

    /// Waits until the script prints `expected` as a whole line.
    fn wait_for_line(&mut self, expected: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stdout_lines.recv_timeout(left) {
                Ok(line) if line.trim() == expected => return,
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => {
                    self.reported = true;
                    panic!(
                        "{} did not print {expected:?}:\n{}",
                        self.name,
                        self.output()
                    )
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait().expect("wait for python3");
                    join_all(&mut self.threads);
                    self.reported = true;
                    panic!(
                        "{} ended ({status}) before {expected:?}:\n{}",
                        self.name,
                        self.output()
                    )
                }
            }
        }
    }

    fn send_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin");
        writeln!(stdin, "{line}").expect("write to the script");
        stdin.flush().expect("flush the script's stdin");
    }

    /// Waits for the script to exit; it must exit 0 with `OK <name>` as its last line.
    fn finish(mut self) {
        self.stdin = None;
        let status = wait_with_timeout(&mut self.child, SCRIPT_TIMEOUT);
        let Some(status) = status else {
            self.reported = true;
            panic!(
                "{} did not finish within {SCRIPT_TIMEOUT:?}:\n{}",
                self.name,
                self.output()
            );
        };
        self.finished = true;
        self.reported = true;
        join_all(&mut self.threads);
        let stem = self.name.trim_end_matches(".py");
        let last = self.stdout.lock().unwrap().last().cloned();
        assert!(
            status.success() && last.as_deref() == Some(&format!("OK {stem}")),
            "{} failed ({status}):\n{}",
            self.name,
            self.output()
        );
        // Shown with --nocapture: what the scripts measured (expiry latency, packing, ...).
        println!("{}", self.output());
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        if !self.finished {
            let _ = self.child.kill();
            let _ = self.child.wait();
            join_all(&mut self.threads);
        }
        if thread::panicking() && !self.reported {
            eprintln!("{}", self.output());
        }
    }
}
