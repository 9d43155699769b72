//! Crash-recovery suite: drives the real `tally` binary with TigerBeetle's official Python client
//! (`tests/python/crash_load.py` generates load, `tests/python/crash_check.py` verifies), kills it,
//! damages its journal, and counts what survived (design invariants 1-6).
//!
//! * `sigkill_under_load_cycles`: N cycles (`TALLY_CRASH_CYCLES`, default 20) of load, SIGKILL of
//!   the server at a random moment, restart, check; then SIGTERM and `tally inspect --digest`.
//! * `torn_tail_is_cut`: zeroes or garbles the last record (a torn tail: cut at start-up, the
//!   records before it intact); damages a record a later one does not prove synced (a power
//!   loss's shapes cut on their own, other shapes refused until `--cut-unproven-tail`), one a
//!   later record proves synced, and one a checkpoint covers (both refused, even with the flag).
//! * `corruption_before_tail_is_refused`: one flipped bit in an earlier record makes `start` and
//!   `inspect` report op, segment and offset, and leaves every file byte-identical.
//! * `checkpoint_then_replay_after_sigkill`: checkpoint on SIGTERM, more load, SIGKILL, replay.
//! * `sigterm_checkpoints_after_group_commit`: regression test for the shutdown checkpoint.
//!
//! The generator prints one JSON line per call before sending it and one per reply; the harness
//! saves them as they arrive, so the checker knows what was acknowledged and what was only sent
//! when the server died. The tests run one at a time (they time kills on a 2-core machine).
//!
//! Every random choice comes from one seed, printed at the start of each test; set
//! `TALLY_CRASH_SEED` to repeat a run. A failing test keeps its scratch directory (server logs,
//! the generator's lines, the data directory) and prints where it is.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

const TALLY: &str = env!("CARGO_BIN_EXE_tally");
const HEADER_SIZE: u64 = 128;
/// Segment size for most tests.
const SEGMENT_MIB: u64 = 8;
/// The smallest segment the server formats (one full-size request must fit in a record): for
/// logs that span several segments with little load.
const SEGMENT_MIB_SMALL: u64 = 2;

// ---------------------------------------------------------------------------------------------
// Small tools: serial execution, seeded PRNG, scratch directories, child processes.

/// The tests kill servers at timed moments; running them one at a time keeps the timing honest
/// on a 2-core machine.
fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// SplitMix64: small, seedable, good enough to pick moments and offsets.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `low..=high`.
    fn range(&mut self, low: u64, high: u64) -> u64 {
        assert!(low <= high);
        low + self.next_u64() % (high - low + 1)
    }
}

fn test_seed(test: &str) -> u64 {
    let seed = match std::env::var("TALLY_CRASH_SEED") {
        Ok(value) => value.parse().expect("TALLY_CRASH_SEED is a u64"),
        Err(_) => {
            let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
            now.as_nanos() as u64 ^ u64::from(std::process::id())
        }
    };
    eprintln!("{test}: seed {seed} (repeat with TALLY_CRASH_SEED={seed})");
    seed
}

/// A temporary directory that survives a failing test, for the post-mortem.
struct Scratch {
    dir: Option<tempfile::TempDir>,
    logs: std::cell::Cell<u32>,
}

impl Scratch {
    fn new(test: &str) -> Scratch {
        let dir = tempfile::Builder::new()
            .prefix(&format!("tally-crash-{test}-"))
            .tempdir()
            .expect("temporary directory");
        Scratch {
            dir: Some(dir),
            logs: std::cell::Cell::new(0),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.as_ref().expect("scratch").path().join(name)
    }

    /// A fresh file name for one process's log.
    fn log(&self, what: &str) -> PathBuf {
        let number = self.logs.get() + 1;
        self.logs.set(number);
        self.path(&format!("{number:05}-{what}.log"))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if thread::panicking() {
            if let Some(dir) = self.dir.take() {
                eprintln!(
                    "scratch directory kept for inspection: {}",
                    dir.keep().display()
                );
            }
        }
    }
}

/// A child process that is killed (SIGKILL) and reaped when dropped, so that no failing test
/// leaves a server or a generator behind.
struct Guard {
    child: Child,
    name: String,
}

impl Guard {
    fn spawn(command: &mut Command, name: &str) -> Guard {
        let child = command
            .spawn()
            .unwrap_or_else(|error| panic!("spawn {name}: {error}"));
        Guard {
            child,
            name: name.to_string(),
        }
    }

    fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid");
        // SAFETY: kill(2) on our own child, which is not reaped yet (we hold its `Child`).
        unsafe {
            libc::kill(pid, signal);
        }
    }

    fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    fn wait_or_panic(&mut self, timeout: Duration) -> ExitStatus {
        match self.wait_timeout(timeout) {
            Some(status) => status,
            None => panic!("{} did not exit within {timeout:?}", self.name),
        }
    }

    fn kill(&mut self) {
        self.signal(libc::SIGKILL);
        self.wait_or_panic(Duration::from_secs(10));
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Lines of a pipe, as they arrive; the channel closes at end of file.
fn lines_of(pipe: impl Read + Send + 'static) -> Receiver<String> {
    let (sender, receiver) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    receiver
}

/// Runs a command to completion within `timeout`, capturing stdout and stderr.
fn run(command: &mut Command, timeout: Duration, what: &str) -> Output {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut guard = Guard::spawn(command, what);
    let mut stdout = guard.child.stdout.take().expect("stdout");
    let mut stderr = guard.child.stderr.take().expect("stderr");
    let out = thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stdout.read_to_end(&mut bytes);
        bytes
    });
    let err = thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stderr.read_to_end(&mut bytes);
        bytes
    });
    let status = guard.wait_or_panic(timeout);
    Output {
        status,
        stdout: out.join().expect("stdout reader"),
        stderr: err.join().expect("stderr reader"),
    }
}

/// Output as text; the server's log is plain with NO_COLOR, but colour codes are stripped
/// anyway.
fn text(bytes: &[u8]) -> String {
    common::strip_ansi(&String::from_utf8_lossy(bytes))
}

// ---------------------------------------------------------------------------------------------
// The server.

struct Server {
    guard: Guard,
    address: String,
    log: PathBuf,
    _stdout: Receiver<String>,
}

impl Server {
    fn start(scratch: &Scratch, data: &Path, segment_mib: u64) -> Server {
        Server::start_with(scratch, data, segment_mib, &[])
    }

    /// `start`, with `extra` arguments for `tally start`.
    fn start_with(scratch: &Scratch, data: &Path, segment_mib: u64, extra: &[&str]) -> Server {
        let log = scratch.log("server");
        let mut command = Command::new(TALLY);
        command
            .arg("start")
            .args(["--graphql-address", "off", "--auto-peering-address", "off"])
            .arg("--data-dir")
            .arg(data)
            .args(["--addresses", "127.0.0.1:0", "--segment-mib"])
            .arg(segment_mib.to_string())
            .args(extra)
            .env("NO_COLOR", "1")
            .env("TALLY_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(File::create(&log).expect("server log"));
        let mut guard = Guard::spawn(&mut command, "tally start");
        let stdout = lines_of(guard.child.stdout.take().expect("stdout"));
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match stdout.recv_timeout(Duration::from_millis(20)) {
                Ok(line) => {
                    let address = line
                        .strip_prefix("listening on ")
                        .unwrap_or_else(|| panic!("unexpected server output {line:?}"));
                    return Server {
                        guard,
                        address: address.trim().to_string(),
                        log,
                        _stdout: stdout,
                    };
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    let status = guard.wait_or_panic(Duration::from_secs(10));
                    panic!(
                        "server exited ({status}) before listening:\n{}",
                        read_text(&log)
                    );
                }
            }
            if Instant::now() > deadline {
                panic!("server not listening after 60 s:\n{}", read_text(&log));
            }
        }
    }

    fn log_text(&self) -> String {
        read_text(&self.log)
    }

    fn sigkill(mut self) {
        self.guard.kill();
    }

    /// SIGTERM: the server drains, checkpoints and exits 0. Returns the digest it logged.
    fn sigterm(mut self) -> String {
        self.guard.signal(libc::SIGTERM);
        let status = self.guard.wait_or_panic(Duration::from_secs(120));
        let log = self.log_text();
        assert!(
            status.success(),
            "SIGTERM: server exited with {status}:\n{log}"
        );
        let stopped = log
            .lines()
            .rev()
            .find(|line| line.contains(" stopped ") && line.contains("digest="))
            .unwrap_or_else(|| panic!("no `stopped ... digest=` line in the log:\n{log}"));
        field(stopped, "digest").to_string()
    }
}

fn read_text(path: &Path) -> String {
    common::strip_ansi(&fs::read_to_string(path).unwrap_or_default())
}

/// The value of `name=value` in a log line.
fn field<'a>(line: &'a str, name: &str) -> &'a str {
    let key = format!("{name}=");
    let start = line
        .find(&key)
        .unwrap_or_else(|| panic!("no {key} in {line:?}"))
        + key.len();
    line[start..].split_whitespace().next().unwrap_or("")
}

/// `tally start` (with `extra` arguments) on a directory that must be refused: the exit status
/// and the log.
fn start_refused(data: &Path, timeout: Duration, extra: &[&str]) -> (ExitStatus, String) {
    let output = run(
        Command::new(TALLY)
            .arg("start")
            .args(["--graphql-address", "off", "--auto-peering-address", "off"])
            .arg("--data-dir")
            .arg(data)
            .args(["--addresses", "127.0.0.1:0"])
            .args(extra)
            .env("NO_COLOR", "1"),
        timeout,
        "tally start (expected to refuse)",
    );
    let log = format!("{}{}", text(&output.stdout), text(&output.stderr));
    (output.status, log)
}

fn inspect(data: &Path) -> Output {
    run(
        Command::new(TALLY)
            .arg("inspect")
            .arg(data)
            .env("NO_COLOR", "1"),
        Duration::from_secs(120),
        "tally inspect",
    )
}

/// `tally inspect DIR --digest` succeeds and both its digests equal `digest`, if given. Returns
/// the digest.
fn inspect_digest(data: &Path, digest: Option<&str>) -> String {
    let output = run(
        Command::new(TALLY)
            .arg("inspect")
            .arg(data)
            .arg("--digest")
            .env("NO_COLOR", "1"),
        Duration::from_secs(300),
        "tally inspect --digest",
    );
    let stdout = text(&output.stdout);
    assert!(
        output.status.success(),
        "tally inspect --digest failed ({}):\n{stdout}\n{}",
        output.status,
        text(&output.stderr)
    );
    let digest_of = |prefix: &str| {
        stdout
            .lines()
            .find_map(|line| line.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} line in:\n{stdout}"))
            .trim()
            .to_string()
    };
    let from_checkpoint = digest_of("digest (checkpoint + replay)");
    let from_start = digest_of("digest (full replay)");
    assert_eq!(from_checkpoint, from_start, "inspect --digest:\n{stdout}");
    if let Some(digest) = digest {
        assert_eq!(
            from_checkpoint, digest,
            "the replayed state differs from the one the server stopped with"
        );
    }
    from_checkpoint
}

// ---------------------------------------------------------------------------------------------
// Load and checks.

/// A running `crash_load.py`: its lines are saved to `path` as they arrive.
struct Load {
    guard: Guard,
    lines: Receiver<String>,
    file: BufWriter<File>,
    path: PathBuf,
    sent: u64,
    acked: u64,
    ready: bool,
    done: bool,
    eof: bool,
}

impl Load {
    fn spawn(scratch: &Scratch, address: &str, cycle: u64, seed: u64, extra: &[&str]) -> Load {
        let path = scratch.path(&format!("load-{cycle:05}.jsonl"));
        let mut command = Command::new("python3");
        command
            .arg(common::python_dir().join("crash_load.py"))
            .args(["--address", address])
            .args(["--cycle", &cycle.to_string()])
            .args(["--seed", &seed.to_string()])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(File::create(scratch.log("load")).expect("load log"));
        let mut guard = Guard::spawn(&mut command, "crash_load.py");
        let lines = lines_of(guard.child.stdout.take().expect("stdout"));
        Load {
            guard,
            lines,
            file: BufWriter::new(File::create(&path).expect("load lines")),
            path,
            sent: 0,
            acked: 0,
            ready: false,
            done: false,
            eof: false,
        }
    }

    /// Saves lines until `deadline`, until end of file, or until `stop(self)` holds.
    fn pump(&mut self, deadline: Instant, stop: impl Fn(&Load) -> bool) {
        while !self.eof && !stop(self) {
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            match self.lines.recv_timeout(deadline - now) {
                Ok(line) => {
                    if line.starts_with("{\"t\":\"send\"") {
                        self.sent += 1;
                    } else if line.starts_with("{\"t\":\"ack\"") {
                        self.acked += 1;
                    } else if line == "{\"t\":\"ready\"}" {
                        self.ready = true;
                    } else if line == "{\"t\":\"done\"}" {
                        self.done = true;
                    }
                    writeln!(self.file, "{line}").expect("save a line");
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => self.eof = true,
            }
        }
    }

    fn wait_ready(&mut self) {
        self.pump(Instant::now() + Duration::from_secs(60), |load| load.ready);
        assert!(self.ready, "the load generator did not get ready");
    }

    /// SIGKILL, then save the lines it printed before it died.
    fn kill(mut self) -> Load {
        self.guard.kill();
        self.drain();
        self
    }

    /// Waits for a bounded load (`--calls`) to finish and exit 0.
    fn finish(mut self, timeout: Duration) -> Load {
        self.pump(Instant::now() + timeout, |_| false);
        assert!(self.eof, "the load generator did not finish in {timeout:?}");
        let status = self.guard.wait_or_panic(Duration::from_secs(30));
        assert!(status.success(), "the load generator failed: {status}");
        assert!(self.done);
        self.drain();
        self
    }

    fn drain(&mut self) {
        self.pump(Instant::now() + Duration::from_secs(30), |_| false);
        assert!(self.eof, "the generator's stdout stayed open");
        self.file.flush().expect("flush the load lines");
    }
}

/// Runs `crash_check.py` against the server; panics with its reasons if a check fails. What
/// the checks carry from one run to the next is kept under the name `state`.
fn check(scratch: &Scratch, address: &str, load: &Path, state: &str, extra: &[&str]) -> String {
    let mut command = Command::new("python3");
    command
        .arg(common::python_dir().join("crash_check.py"))
        .args(["--address", address])
        .arg("--log")
        .arg(load)
        .arg("--state")
        .arg(scratch.path(&format!("{state}.json")))
        .arg("--expected")
        .arg(scratch.path(&format!("{state}-expected.jsonl")))
        .args(extra);
    let output = run(&mut command, Duration::from_secs(900), "crash_check.py");
    let stdout = text(&output.stdout);
    assert!(
        output.status.success(),
        "check of {} failed:\n{}{stdout}",
        load.display(),
        text(&output.stderr)
    );
    stdout.trim().to_string()
}

// ---------------------------------------------------------------------------------------------
// The journal, read from the test's side (docs/journal.md), to aim damage.

#[derive(Clone, Copy, Debug)]
struct RecordAt {
    op: u64,
    op_synced: u64,
    segment: u64,
    offset: u64,
    body_size: u64,
}

impl RecordAt {
    fn size(&self) -> u64 {
        (HEADER_SIZE + self.body_size).div_ceil(128) * 128
    }

    /// Bytes covered by checksums: header and body (not the padding).
    fn covered(&self) -> u64 {
        HEADER_SIZE + self.body_size
    }
}

fn segment_path(data: &Path, segment: u64) -> PathBuf {
    data.join("journal").join(format!("segment-{segment:08}"))
}

fn read_at(data: &Path, segment: u64, offset: u64, size: u64) -> Vec<u8> {
    let file = File::open(segment_path(data, segment)).expect("open segment");
    let mut bytes = vec![0; size as usize];
    file.read_exact_at(&mut bytes, offset)
        .expect("read segment");
    bytes
}

fn write_at(data: &Path, segment: u64, offset: u64, bytes: &[u8]) {
    let file = fs::OpenOptions::new()
        .write(true)
        .open(segment_path(data, segment))
        .expect("open segment for writing");
    file.write_all_at(bytes, offset).expect("write segment");
    file.sync_all().expect("sync segment");
}

fn flip_bit(data: &Path, segment: u64, offset: u64, bit: u8) {
    let mut byte = read_at(data, segment, offset, 1);
    byte[0] ^= 1 << bit;
    write_at(data, segment, offset, &byte);
}

/// The records of an undamaged log, by walking headers (op, sizes; checksums are the server's
/// business): a record follows the previous one, or starts the next segment when it did not fit.
fn journal_records(data: &Path) -> Vec<RecordAt> {
    let segment_size = fs::metadata(segment_path(data, 0))
        .expect("segment 0")
        .len();
    let header_at = |segment: u64, offset: u64| -> Option<RecordAt> {
        if !segment_path(data, segment).exists() || offset + HEADER_SIZE > segment_size {
            return None;
        }
        let header = read_at(data, segment, offset, HEADER_SIZE);
        let u64_at = |at: usize| u64::from_le_bytes(header[at..at + 8].try_into().unwrap());
        let body_size = u64::from(u32::from_le_bytes(header[72..76].try_into().unwrap()));
        Some(RecordAt {
            op: u64_at(48),
            op_synced: u64_at(56),
            segment,
            offset,
            body_size,
        })
    };
    let mut records: Vec<RecordAt> = Vec::new();
    let (mut segment, mut offset) = (0, 0);
    loop {
        let op = records.last().map_or(1, |record| record.op + 1);
        match header_at(segment, offset) {
            Some(record) if record.op == op => {
                offset += record.size();
                records.push(record);
            }
            _ if offset > 0 => match header_at(segment + 1, 0) {
                Some(record) if record.op == op => {
                    segment += 1;
                    offset = record.size();
                    records.push(record);
                }
                _ => break,
            },
            _ => break,
        }
    }
    records
}

/// Copies a data directory (the journal's files are plain files).
fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("create copy");
    for entry in fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).expect("copy file");
        }
    }
}

/// SHA-256 of every file under `dir`, by relative path.
fn dir_hashes(dir: &Path) -> BTreeMap<PathBuf, String> {
    fn walk(root: &Path, dir: &Path, hashes: &mut BTreeMap<PathBuf, String>) {
        for entry in fs::read_dir(dir).expect("read dir") {
            let entry = entry.expect("entry");
            let path = entry.path();
            if entry.file_type().expect("file type").is_dir() {
                walk(root, &path, hashes);
            } else {
                let mut hasher = Sha256::new();
                let mut file = File::open(&path).expect("open");
                let mut buffer = vec![0; 1 << 20];
                loop {
                    let read = file.read(&mut buffer).expect("read");
                    if read == 0 {
                        break;
                    }
                    hasher.update(&buffer[..read]);
                }
                let digest: String = hasher
                    .finalize()
                    .iter()
                    .map(|byte| format!("{byte:02x}"))
                    .collect();
                hashes.insert(path.strip_prefix(root).unwrap().to_path_buf(), digest);
            }
        }
    }
    let mut hashes = BTreeMap::new();
    walk(dir, dir, &mut hashes);
    hashes
}

/// Every event the generator sent, as the numbers of its list (`crash_common.FIELDS`).
fn sent_events(load: &Path) -> Vec<Vec<u128>> {
    let mut events = Vec::new();
    for line in fs::read_to_string(load).expect("load lines").lines() {
        let Some(start) = line.find("\"ev\":[") else {
            continue;
        };
        let mut depth = 0;
        let mut event: Vec<u128> = Vec::new();
        let mut number = String::new();
        for c in line[start + 5..].chars() {
            if c.is_ascii_digit() {
                number.push(c);
                continue;
            }
            if !number.is_empty() {
                event.push(number.parse().expect("a u128"));
                number.clear();
            }
            match c {
                '[' => depth += 1,
                ']' => {
                    depth -= 1;
                    if depth == 1 {
                        events.push(std::mem::take(&mut event));
                    } else if depth == 0 {
                        break;
                    }
                }
                _ => {}
            }
        }
    }
    events
}

/// Ids of the sent events that are in `body`: a transfer sits 16-byte aligned in a record body,
/// its id followed by its debit and credit account ids (which tells it from a post or void that
/// names it in `pending_id`).
fn ids_in(body: &[u8], events: &[Vec<u128>]) -> Vec<u128> {
    let by_id: HashMap<u128, &Vec<u128>> = events.iter().map(|event| (event[0], event)).collect();
    let u128_at = |at: usize| u128::from_le_bytes(body[at..at + 16].try_into().unwrap());
    let mut found = Vec::new();
    for at in (0..body.len().saturating_sub(47)).step_by(16) {
        if let Some(event) = by_id.get(&u128_at(at)) {
            if u128_at(at + 16) == event[1] && u128_at(at + 32) == event[2] {
                found.push(event[0]);
            }
        }
    }
    found
}

// ---------------------------------------------------------------------------------------------
// 1. SIGKILL under load, N cycles.

#[test]
fn sigkill_under_load_cycles() {
    let _serial = serial();
    common::ensure_official_client();
    let cycles: u64 = std::env::var("TALLY_CRASH_CYCLES")
        .map(|value| value.parse().expect("TALLY_CRASH_CYCLES is a number"))
        .unwrap_or(20);
    assert!(cycles >= 1);
    let seed = test_seed("sigkill_under_load_cycles");
    let mut rng = Rng(seed);
    let scratch = Scratch::new("cycles");
    let data = scratch.path("data");
    let mib = SEGMENT_MIB;
    let started = Instant::now();
    let mut server = Server::start(&scratch, &data, mib);
    let (mut sent_total, mut acked_total, mut cuts) = (0, 0, 0);
    for cycle in 1..=cycles {
        let mut load = Load::spawn(&scratch, &server.address, cycle, seed, &[]);
        load.wait_ready();
        let delay = Duration::from_millis(rng.range(50, 800));
        load.pump(Instant::now() + delay, |_| false);
        server.sigkill();
        let load = load.kill();
        server = Server::start(&scratch, &data, mib);
        let recovered = server.log_text();
        if recovered.contains("cut a torn tail") {
            cuts += 1;
        }
        let mut extra = vec!["--seed".to_string(), (seed ^ cycle).to_string()];
        if cycle == cycles {
            extra.push("--full".into());
        }
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let summary = check(&scratch, &server.address, &load.path, "check", &extra);
        eprintln!(
            "cycle {cycle}/{cycles}: SIGKILL {} ms into the load, {} calls sent, {} acknowledged; \
             {summary}",
            delay.as_millis(),
            load.sent,
            load.acked
        );
        sent_total += load.sent;
        acked_total += load.acked;
    }
    assert!(acked_total > 0, "no call was ever acknowledged");
    let digest = server.sigterm();
    inspect_digest(&data, Some(&digest));
    eprintln!(
        "{cycles} cycles in {:.1} s: {sent_total} calls sent, {acked_total} acknowledged, {cuts} \
         torn tails cut; digest {digest}",
        started.elapsed().as_secs_f64()
    );
}

// ---------------------------------------------------------------------------------------------
// 2. Torn tails, and damage before a later record.

/// What recovery must do with one damaged journal (docs/journal.md, "Recovery", step 4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    /// Only zeros follow the last intact record: nothing to cut.
    Clean,
    /// Nonzero bytes and no valid record after them: a torn tail, cut on its own.
    Torn,
    /// A later record survived without proof that the damaged one was synced, and the damage
    /// has a power loss's shape: cut on its own (`Evidence::Unacknowledged`).
    Unacknowledged,
    /// A later record, no proof, and a shape no power loss leaves: refused naming
    /// `tally start --cut-unproven-tail`, and cut with it (`Evidence::Unproven`).
    Unproven,
    /// A later record proves the damaged one was synced: refused, even with the flag.
    Synced,
    /// A checkpoint at or beyond the damaged op proves it was synced: refused, even with the flag.
    Checkpoint,
}

/// What every case of `torn_tail_is_cut` shares.
struct TornContext<'a> {
    scratch: &'a Scratch,
    /// The undamaged data directory, stopped by SIGKILL (no checkpoint).
    pristine: &'a Path,
    /// Its records.
    records: &'a [RecordAt],
    /// Every event the load sent (all were acknowledged: the load finished).
    events: &'a [Vec<u128>],
    load: &'a Path,
    mib: u64,
}

fn place(record: RecordAt) -> String {
    format!(
        "at op {} (segment {}, offset {})",
        record.op, record.segment, record.offset
    )
}

impl TornContext<'_> {
    fn body(&self, record: RecordAt) -> Vec<u8> {
        read_at(
            self.pristine,
            record.segment,
            record.offset + HEADER_SIZE,
            record.body_size,
        )
    }

    /// The transfers of `record`, as stored in the pristine log.
    fn transfers(&self, record: RecordAt) -> Vec<u128> {
        ids_in(&self.body(record), self.events)
    }

    /// Writes the ids of the transfers in every record from op `op` on (acknowledged, and gone
    /// once a cut at `op` removed their records) to a file for `crash_check.py --absent`.
    fn absent_from(&self, op: u64, name: &str) -> PathBuf {
        let ids: Vec<String> = self
            .records
            .iter()
            .filter(|record| record.op >= op)
            .flat_map(|record| self.transfers(*record))
            .map(|id| id.to_string())
            .collect();
        assert!(!ids.is_empty(), "no transfer in the records from op {op}");
        let path = self.scratch.path(&format!("absent-{name}.txt"));
        fs::write(&path, ids.join("\n")).expect("write absent ids");
        path
    }

    /// The first record after `damaged` (in the pristine log) that recovery names as evidence:
    /// with `proof`, the first one appended after `damaged` was synced.
    fn later(&self, damaged: RecordAt, proof: bool) -> RecordAt {
        *self
            .records
            .iter()
            .find(|record| record.op > damaged.op && (!proof || record.op_synced >= damaged.op))
            .unwrap_or_else(|| panic!("no later record for op {}", damaged.op))
    }

    /// The text the evidence for `verdict` must carry, in `tally start`'s error, its warning or
    /// `tally inspect`'s summary.
    fn evidence(&self, damaged: RecordAt, verdict: Verdict) -> String {
        match verdict {
            Verdict::Clean => String::new(),
            Verdict::Torn => {
                "no valid record follows the damage: a torn tail, never acknowledged".into()
            }
            Verdict::Unacknowledged => {
                let later = self.later(damaged, false);
                assert!(
                    later.op_synced < damaged.op,
                    "{later:?} proves op {}",
                    damaged.op
                );
                format!(
                    "a valid record (op {}) follows at segment {}, offset {}, but no record or \
                     checkpoint proves the damaged op was synced",
                    later.op, later.segment, later.offset
                )
            }
            Verdict::Unproven => {
                let later = self.later(damaged, false);
                assert!(
                    later.op_synced < damaged.op,
                    "{later:?} proves op {}",
                    damaged.op
                );
                format!(
                    "a valid record (op {}) follows at segment {}, offset {}; nothing proves the \
                     damaged record was synced, but the damage is not what a power loss leaves",
                    later.op, later.segment, later.offset
                )
            }
            Verdict::Synced => {
                let later = self.later(damaged, true);
                format!(
                    "proof: op {} at segment {}, offset {} was appended after op {} was synced",
                    later.op, later.segment, later.offset, later.op_synced
                )
            }
            // The checkpoint is at the damaged (last) op.
            Verdict::Checkpoint => format!(
                "holds a checkpoint at op {op}, written only after the log through op {op} was \
                 synced",
                op = damaged.op
            ),
        }
    }

    /// Judges `data`, a copy of the pristine directory damaged at `damaged`: `tally inspect`
    /// says what `start` does; `start` refuses (and writes nothing) or cuts exactly at the
    /// damage; after a cut, every acknowledged transfer before the damage is there and the
    /// records before it are byte for byte the pristine ones.
    fn judge(&self, data: &Path, damaged: RecordAt, verdict: Verdict, what: &str) {
        let place = place(damaged);
        let evidence = self.evidence(damaged, verdict);
        let summary = text(&inspect(data).stdout);
        match verdict {
            Verdict::Clean => {
                assert!(summary.contains("tail        clean"), "{what}:\n{summary}")
            }
            Verdict::Torn | Verdict::Unacknowledged => assert!(
                summary.contains(&format!("tail        torn {place}")),
                "{what}: inspect does not report a tail `open` cuts {place}:\n{summary}"
            ),
            Verdict::Unproven | Verdict::Synced | Verdict::Checkpoint => assert!(
                summary.contains(&format!("PROBLEM     corrupt {place}")),
                "{what}: inspect does not report {place} refused:\n{summary}"
            ),
        }
        if verdict == Verdict::Unacknowledged {
            assert!(
                summary.contains(&evidence),
                "{what}: {evidence:?}:\n{summary}"
            );
        }
        if matches!(
            verdict,
            Verdict::Unproven | Verdict::Synced | Verdict::Checkpoint
        ) {
            assert!(
                summary.contains(&evidence),
                "{what}: {evidence:?}:\n{summary}"
            );
            self.refused(data, damaged, verdict, what, &evidence);
            if verdict != Verdict::Unproven {
                eprintln!("{what}: {verdict:?}, refused with and without --cut-unproven-tail");
                return;
            }
        }

        // Started: cut exactly at the damage (or nothing to cut).
        let flags: &[&str] = match verdict {
            Verdict::Unproven => &["--cut-unproven-tail"],
            _ => &[],
        };
        let server = Server::start_with(self.scratch, data, self.mib, flags);
        let log = server.log_text();
        let cuts: Vec<&str> = log
            .lines()
            .filter(|line| line.contains("cutting the journal"))
            .collect();
        let cut_line = log.lines().find(|line| line.contains("cut a torn tail"));
        if verdict == Verdict::Clean {
            assert!(cuts.is_empty(), "{what}: unexpected cut: {cuts:?}");
            assert!(cut_line.is_none(), "{what}: unexpected cut: {cut_line:?}");
        } else {
            assert_eq!(cuts.len(), 1, "{what}: one cut expected:\n{log}");
            assert!(
                cuts[0].contains(&format!("cutting the journal {place}")),
                "{what}: the cut is not {place}:\n{log}"
            );
            let why = match verdict {
                Verdict::Unacknowledged => "the damage is what a power loss leaves",
                Verdict::Unproven => "the operator allowed cutting unproven damage",
                _ => evidence.as_str(),
            };
            assert!(cuts[0].contains(why), "{what}: {why:?}:\n{log}");
            if verdict != Verdict::Torn {
                assert!(cuts[0].contains(&evidence), "{what}: {evidence:?}:\n{log}");
            }
            let line = cut_line.unwrap_or_else(|| panic!("{what}: no cut logged:\n{log}"));
            assert_eq!(field(line, "op"), damaged.op.to_string(), "{line}");
            assert_eq!(
                field(line, "segment"),
                damaged.segment.to_string(),
                "{line}"
            );
            assert_eq!(field(line, "offset"), damaged.offset.to_string(), "{line}");
        }
        // No checkpoint covers the damaged record (the server was killed), so none is passed
        // over; one that covers it proves it durable (`Verdict::Checkpoint`).
        assert!(!log.contains("checkpoint passed over"), "{what}:\n{log}");
        let name = what.replace(|c: char| !c.is_ascii_alphanumeric(), "-");
        let absent = self.absent_from(damaged.op, &name);
        let summary = check(
            self.scratch,
            &server.address,
            self.load,
            &format!("check-{name}"),
            &["--absent", absent.to_str().unwrap()],
        );
        let digest = server.sigterm();
        inspect_digest(data, Some(&digest));
        // Exactly the records before the damaged one: their bytes are untouched.
        for segment in 0..=damaged.segment {
            let end = if segment == damaged.segment {
                damaged.offset
            } else {
                fs::metadata(segment_path(self.pristine, segment))
                    .unwrap()
                    .len()
            };
            assert!(
                read_at(data, segment, 0, end) == read_at(self.pristine, segment, 0, end),
                "{what}: records before op {} changed in segment {segment}",
                damaged.op
            );
        }
        eprintln!("{what}: {verdict:?}, started, {summary}");
    }

    /// `start` refuses, naming the damage and `evidence`, and changes no file; with
    /// `--cut-unproven-tail` too unless `verdict` is `Unproven` (the flag's case).
    fn refused(
        &self,
        data: &Path,
        damaged: RecordAt,
        verdict: Verdict,
        what: &str,
        evidence: &str,
    ) {
        let place = place(damaged);
        let before = dir_hashes(data);
        let flag_runs: &[&[&str]] = match verdict {
            Verdict::Unproven => &[&[]],
            _ => &[&[], &["--cut-unproven-tail"]],
        };
        for flags in flag_runs {
            let (status, log) = start_refused(data, Duration::from_secs(20), flags);
            assert!(
                !status.success(),
                "{what}: start {flags:?} accepted the damage:\n{log}"
            );
            assert!(
                log.contains(&format!("corrupt journal {place}")),
                "{what}: start {flags:?}: the error does not name {place}:\n{log}"
            );
            assert!(
                log.contains(evidence),
                "{what}: start {flags:?}: expected {evidence:?}:\n{log}"
            );
            let advice = match verdict {
                Verdict::Unproven => "start with `tally start --cut-unproven-tail`",
                _ => {
                    "the journal never cuts proven damage (not even with `tally start \
                      --cut-unproven-tail`)"
                }
            };
            assert!(
                log.contains(advice),
                "{what}: start {flags:?}: expected {advice:?}:\n{log}"
            );
            assert_eq!(
                dir_hashes(data),
                before,
                "{what}: start {flags:?} changed files"
            );
        }
    }
}

/// The last pair of records where the later one was appended while the earlier one's sync was
/// in flight (so it does not prove the earlier one synced), the earlier holding transfers.
fn unproven_pair(
    records: &[RecordAt],
    transfers: impl Fn(RecordAt) -> Vec<u128>,
) -> Option<[RecordAt; 2]> {
    records
        .windows(2)
        .rev()
        .find(|pair| pair[1].op_synced < pair[0].op && !transfers(pair[0]).is_empty())
        .map(|pair| [pair[0], pair[1]])
}

/// A data directory of acknowledged records from many concurrent clients, stopped by SIGKILL:
/// a SIGTERM would write a checkpoint covering the last record, which proves it durable, and
/// damage to a proven record is refused, never cut (docs/journal.md). The cases of
/// `torn_tail_is_cut` need its last record to hold transfers and some record to have been
/// appended while the previous one's sync was in flight. Whether the load produced such an
/// overlap depends on timing (on a loaded machine every sync may end before the next append),
/// so a run without one is repeated, with a new seed and more clients, a bounded number of
/// times.
fn torn_pristine(
    scratch: &Scratch,
    seed: u64,
    mib: u64,
) -> (PathBuf, Load, Vec<RecordAt>, Vec<Vec<u128>>) {
    const ATTEMPTS_MAX: u64 = 4;
    let mut tails = Vec::new();
    for attempt in 0..ATTEMPTS_MAX {
        let pristine = scratch.path(&format!("pristine-{attempt}"));
        let server = Server::start(scratch, &pristine, mib);
        let clients = (8 << attempt).to_string();
        let load = Load::spawn(
            scratch,
            &server.address,
            1 + attempt,
            seed.wrapping_add(attempt),
            &["--clients", &clients, "--tasks", "2", "--calls", "15"],
        );
        let load = load.finish(Duration::from_secs(120));
        server.sigkill();
        let records = journal_records(&pristine);
        let summary = text(&inspect(&pristine).stdout);
        assert!(summary.contains("tail        clean"), "{summary}");
        assert!(
            summary.contains("recovery    replays from op 1 (no usable checkpoint)"),
            "a checkpoint would prove records durable:\n{summary}"
        );
        let last = *records.last().expect("records");
        assert!(
            summary.contains(&format!("(ops 1..={})", last.op)),
            "the test's walk found {} records:\n{summary}",
            last.op
        );
        let events = sent_events(&load.path);
        let context = TornContext {
            scratch,
            pristine: &pristine,
            records: &records,
            events: &events,
            load: &load.path,
            mib,
        };
        let transfers = |record: RecordAt| context.transfers(record);
        let usable = !transfers(last).is_empty() && unproven_pair(&records, transfers).is_some();
        if usable {
            return (pristine, load, records, events);
        }
        let tail: Vec<(u64, u64)> = records
            .iter()
            .rev()
            .take(40)
            .map(|record| (record.op, record.op_synced))
            .collect();
        eprintln!("attempt {attempt}: no usable overlap; (op, op_synced) of the tail: {tail:?}");
        tails.push(tail);
    }
    panic!(
        "{ATTEMPTS_MAX} loads left no record holding transfers appended before its \
         predecessor's sync completed (or a last record without transfers): {tails:?}"
    );
}

#[test]
fn torn_tail_is_cut() {
    let _serial = serial();
    common::ensure_official_client();
    let seed = test_seed("torn_tail_is_cut");
    let mut rng = Rng(seed);
    let scratch = Scratch::new("torn");
    let mib = SEGMENT_MIB;
    let (pristine, load, records, events) = torn_pristine(&scratch, seed, mib);
    let last = *records.last().expect("records");
    let context = TornContext {
        scratch: &scratch,
        pristine: &pristine,
        records: &records,
        events: &events,
        load: &load.path,
        mib,
    };
    let in_last = context.transfers(last);
    assert!(!in_last.is_empty(), "the last record holds no transfer");
    eprintln!(
        "{} records; the last, op {} (op_synced {}) at segment {} offset {}, holds {} of {} \
         transfers",
        records.len(),
        last.op,
        last.op_synced,
        last.segment,
        last.offset,
        in_last.len(),
        events.len()
    );

    // Damage to the last record: nothing valid follows it, so whatever the shape (zeros or
    // garbage, in the header or the body) it is a torn tail and `start` cuts it on its own.
    // The last nonzero byte of a record's body, as stored in `data`.
    let body_last_nonzero = |data: &Path, record: RecordAt| {
        record.covered()
            - 1
            - read_at(
                data,
                record.segment,
                record.offset + HEADER_SIZE,
                record.body_size,
            )
            .iter()
            .rev()
            .position(|byte| *byte != 0)
            .expect("a nonzero body") as u64
    };
    let zero_from = |data: &Path, record: RecordAt, from: u64| {
        let size = record.size() - from;
        write_at(
            data,
            record.segment,
            record.offset + from,
            &vec![0; size as usize],
        );
    };
    let garble = |data: &Path, from: u64, size: u64, rng: &mut Rng| {
        let original = read_at(data, last.segment, last.offset + from, size);
        // Every byte changes, by construction (xor with a non-zero random value): drawing random
        // bytes until all of them differ never ends for a long run (255/256 per byte).
        let bytes: Vec<u8> = original
            .iter()
            .map(|&old| old ^ (1 + (rng.next_u64() % 255) as u8))
            .collect();
        write_at(data, last.segment, last.offset + from, &bytes);
    };
    let covered = last.covered();
    type Damage<'a> = Box<dyn Fn(&Path, &mut Rng) -> String + 'a>;
    let cases: Vec<(Verdict, Damage)> = vec![
        (
            Verdict::Torn,
            Box::new(|data, rng| {
                let from = rng.range(HEADER_SIZE, body_last_nonzero(data, last));
                zero_from(data, last, from);
                format!("last record zeroed from byte {from} (in the body)")
            }),
        ),
        (
            Verdict::Torn,
            Box::new(|data, rng| {
                let from = rng.range(1, HEADER_SIZE - 1);
                zero_from(data, last, from);
                format!("last record zeroed from byte {from} (in the header)")
            }),
        ),
        (
            Verdict::Clean,
            Box::new(|data, _| {
                zero_from(data, last, 0);
                "last record zeroed whole (never written)".into()
            }),
        ),
        (
            Verdict::Torn,
            Box::new(|data, rng| {
                let from = rng.range(0, HEADER_SIZE - 8);
                let size = rng.range(1, (HEADER_SIZE - from).min(32));
                garble(data, from, size, rng);
                format!("last record, {size} random bytes at byte {from} (header)")
            }),
        ),
        (
            Verdict::Torn,
            Box::new(|data, rng| {
                let from = rng.range(HEADER_SIZE, covered - 1);
                let size = rng.range(1, (covered - from).min(64));
                garble(data, from, size, rng);
                format!("last record, {size} random bytes at byte {from} (body)")
            }),
        ),
        (
            Verdict::Torn,
            Box::new(|data, rng| {
                let from = rng.range(HEADER_SIZE / 2, covered - 1);
                garble(data, from, covered - from, rng);
                format!("last record, random bytes from byte {from} to its end")
            }),
        ),
    ];
    for (index, (verdict, damage)) in cases.iter().enumerate() {
        let data = scratch.path(&format!("torn-{index}"));
        copy_dir(&pristine, &data);
        let what = damage(&data, &mut rng);
        context.judge(&data, last, *verdict, &what);
    }

    // Damage before a later record that does not prove it synced: a record appended while the
    // sync of the one before it was in flight (group commit overlaps two), made the last one
    // (the records after it never written). A power loss with two syncs in flight leaves this:
    // the later record written back, the earlier one not, or only partly. Its shapes are cut
    // on their own; shapes no write leaves are refused until the operator says
    // `--cut-unproven-tail`.
    let pair = unproven_pair(&records, |record| context.transfers(record))
        .expect("torn_pristine found one");
    let (damaged, later) = (pair[0], pair[1]);
    let unproven_base = scratch.path("unproven-base");
    copy_dir(&pristine, &unproven_base);
    for record in records.iter().filter(|record| record.op > later.op) {
        zero_from(&unproven_base, *record, 0);
    }
    eprintln!(
        "op {} damaged, op {} (op_synced {}) last",
        damaged.op, later.op, later.op_synced
    );
    type Harm<'a> = &'a dyn Fn(&Path, RecordAt, &mut Rng) -> String;
    let zeroed_header = |data: &Path, record: RecordAt, _: &mut Rng| {
        write_at(
            data,
            record.segment,
            record.offset,
            &[0; HEADER_SIZE as usize],
        );
        format!("op {}: header zeroed", record.op)
    };
    let zeroed_body = |data: &Path, record: RecordAt, rng: &mut Rng| {
        let from = rng.range(HEADER_SIZE, body_last_nonzero(data, record));
        zero_from(data, record, from);
        format!("op {}: zeroed from byte {from} (in the body)", record.op)
    };
    let body_bit = |data: &Path, record: RecordAt, rng: &mut Rng| {
        let at = rng.range(HEADER_SIZE, record.covered() - 1);
        let bit = rng.range(0, 7) as u8;
        flip_bit(data, record.segment, record.offset + at, bit);
        format!(
            "op {}: bit {bit} of byte {at} flipped (in the body)",
            record.op
        )
    };
    // A bit set where the header holds a zero bit: the byte is nonzero, and one flip away from
    // the valid header. No write puts it there. Bytes 78.. are reserved (always zero).
    let header_bit_set = |reserved: bool| {
        move |data: &Path, record: RecordAt, rng: &mut Rng| loop {
            let at = if reserved {
                rng.range(78, HEADER_SIZE - 1)
            } else {
                rng.range(0, 77)
            };
            let bit = rng.range(0, 7) as u8;
            if read_at(data, record.segment, record.offset + at, 1)[0] & (1 << bit) == 0 {
                flip_bit(data, record.segment, record.offset + at, bit);
                let part = if reserved { "reserved" } else { "checksummed" };
                return format!("op {}: bit {bit} of {part} header byte {at} set", record.op);
            }
        }
    };
    let (reserved_bit_set, header_bit_set) = (header_bit_set(true), header_bit_set(false));
    let cases: Vec<(Verdict, Harm)> = vec![
        (Verdict::Unacknowledged, &zeroed_header),
        (Verdict::Unacknowledged, &zeroed_body),
        // A body bit flip is indistinguishable from a partly written body: cut as unacknowledged
        // (the limit of one copy, docs/journal.md "Known limits of the design").
        (Verdict::Unacknowledged, &body_bit),
        (Verdict::Unproven, &reserved_bit_set),
        (Verdict::Unproven, &header_bit_set),
    ];
    for (index, (verdict, harm)) in cases.iter().enumerate() {
        let data = scratch.path(&format!("unproven-{index}"));
        copy_dir(&unproven_base, &data);
        let what = format!("{}, op {} last", harm(&data, damaged, &mut rng), later.op);
        context.judge(&data, damaged, *verdict, &what);
    }

    // Damage to a record a later one proves synced (it was appended after the damaged op's
    // sync completed): refused whatever the shape, even one a power loss leaves.
    assert!(last.op_synced >= 1, "no record proves another synced");
    let proven = records[last.op_synced as usize - 1];
    assert_eq!(proven.op, last.op_synced);
    let cases: Vec<(Verdict, Harm)> = vec![
        (Verdict::Synced, &zeroed_header),
        (Verdict::Synced, &body_bit),
    ];
    for (index, (verdict, harm)) in cases.iter().enumerate() {
        let data = scratch.path(&format!("synced-{index}"));
        copy_dir(&pristine, &data);
        let what = harm(&data, proven, &mut rng);
        context.judge(&data, proven, *verdict, &what);
    }

    // A checkpoint at the last op (the server started on the pristine copy and stopped with
    // SIGTERM) proves every record through it synced: the torn tail that is cut without it is
    // refused, and not even the flag cuts it.
    let checkpointed = scratch.path("checkpointed");
    copy_dir(&pristine, &checkpointed);
    let server = Server::start(&scratch, &checkpointed, mib);
    let digest = server.sigterm();
    inspect_digest(&checkpointed, Some(&digest));
    let last_checkpointed = *journal_records(&checkpointed).last().expect("records");
    let summary = text(&inspect(&checkpointed).stdout);
    assert!(
        summary.contains(&format!(
            "recovery    from checkpoint op {} ",
            last_checkpointed.op
        )),
        "no checkpoint at the last op, {}:\n{summary}",
        last_checkpointed.op
    );
    let data = scratch.path("checkpoint-0");
    copy_dir(&checkpointed, &data);
    let what = format!(
        "{}, the last record, with a checkpoint at op {}",
        zeroed_body(&data, last_checkpointed, &mut rng),
        last_checkpointed.op
    );
    context.judge(&data, last_checkpointed, Verdict::Checkpoint, &what);
}

// ---------------------------------------------------------------------------------------------
// 3. Corruption before the tail.

#[test]
fn corruption_before_tail_is_refused() {
    let _serial = serial();
    common::ensure_official_client();
    let seed = test_seed("corruption_before_tail_is_refused");
    let mut rng = Rng(seed);
    let scratch = Scratch::new("corrupt");
    let data = scratch.path("data");
    let mib = SEGMENT_MIB_SMALL;
    let segment_size = mib << 20;

    // Enough load for the log to span two segments and more.
    let server = Server::start(&scratch, &data, mib);
    let events_per_call = 400;
    let (clients, tasks) = (2, 2);
    let events_needed = segment_size * 5 / 4 / 128;
    let calls = events_needed
        .div_ceil(events_per_call * clients * tasks)
        .max(2);
    let load = Load::spawn(
        &scratch,
        &server.address,
        1,
        seed,
        &[
            "--clients",
            &clients.to_string(),
            "--tasks",
            &tasks.to_string(),
            "--calls",
            &calls.to_string(),
            "--events-min",
            &(events_per_call / 2).to_string(),
            "--events-max",
            &(events_per_call * 3 / 2).to_string(),
            "--no-events",
            "--max-seconds",
            "600",
        ],
    );
    load.finish(Duration::from_secs(600));
    // The walk checks every record whatever the checkpoint says, so how the server stopped does
    // not matter here.
    server.sigkill();
    let records = journal_records(&data);
    let last = *records.last().unwrap();
    assert!(
        last.segment >= 1,
        "the log stays in segment 0: {} records",
        records.len()
    );
    let pristine = dir_hashes(&data);

    let segment_first = *records
        .iter()
        .find(|record| record.segment == 1)
        .expect("a record in segment 1");
    let segment_end = records[segment_first.op as usize - 2];
    let middle = records[records.len() / 2];
    // Another record of an earlier segment than the last one's, if there is one.
    let taken = [1, middle.op, segment_end.op, segment_first.op];
    let earlier: Vec<RecordAt> = records
        .iter()
        .copied()
        .filter(|record| record.segment < last.segment && !taken.contains(&record.op))
        .collect();
    let earlier = if earlier.is_empty() {
        segment_end
    } else {
        earlier[rng.range(0, earlier.len() as u64 - 1) as usize]
    };
    let body = |rng: &mut Rng, record: RecordAt| rng.range(HEADER_SIZE, record.covered() - 1);
    let header = |rng: &mut Rng, _record: RecordAt| rng.range(0, HEADER_SIZE - 1);
    type Place = fn(&mut Rng, RecordAt) -> u64;
    let cases: Vec<(&str, RecordAt, Place)> = vec![
        ("the first record's header", records[0], header),
        ("the first record's body", records[0], body),
        ("a middle record's header", middle, header),
        ("a middle record's body", middle, body),
        (
            "a record of an earlier segment",
            earlier,
            if rng.range(0, 1) == 0 { header } else { body },
        ),
        ("the last record of segment 0", segment_end, body),
        (
            "the first record of segment 1 (header)",
            segment_first,
            header,
        ),
    ];
    for (what, record, place) in cases {
        assert!(record.op < last.op, "{what}: not before the tail");
        let offset = place(&mut rng, record);
        let bit = rng.range(0, 7) as u8;
        flip_bit(&data, record.segment, record.offset + offset, bit);
        let before = dir_hashes(&data);
        let started = Instant::now();
        let (status, log) = start_refused(&data, Duration::from_secs(30), &[]);
        let elapsed = started.elapsed();
        let place = format!(
            "at op {} (segment {}, offset {})",
            record.op, record.segment, record.offset
        );
        let what = format!("{what}, op {}, byte {offset} bit {bit}", record.op);
        assert!(!status.success(), "{what}: start accepted it:\n{log}");
        assert!(
            log.contains(&format!("corrupt journal {place}")),
            "{what}: the error does not name {place}:\n{log}"
        );
        assert!(
            elapsed < Duration::from_secs(10),
            "{what}: refusing took {elapsed:?}"
        );
        assert_eq!(dir_hashes(&data), before, "{what}: start changed files");
        let summary = text(&inspect(&data).stdout);
        assert!(
            summary.contains(&format!("PROBLEM     corrupt {place}")),
            "{what}: inspect does not report it:\n{summary}"
        );
        let digest = run(
            Command::new(TALLY)
                .arg("inspect")
                .arg(&data)
                .arg("--digest")
                .env("NO_COLOR", "1"),
            Duration::from_secs(60),
            "tally inspect --digest",
        );
        assert!(
            !digest.status.success(),
            "{what}: inspect --digest accepted it"
        );
        assert_eq!(dir_hashes(&data), before, "{what}: inspect changed files");
        eprintln!(
            "{what}: refused in {:.0} ms, files unchanged",
            elapsed.as_secs_f64() * 1000.0
        );
        flip_bit(&data, record.segment, record.offset + offset, bit);
        assert_eq!(dir_hashes(&data), pristine);
    }
    // Repaired, the directory starts again.
    let server = Server::start(&scratch, &data, mib);
    server.sigkill();
    inspect_digest(&data, None);
}

// ---------------------------------------------------------------------------------------------
// 4. Checkpoint, then replay after SIGKILL.

#[test]
fn checkpoint_then_replay_after_sigkill() {
    let _serial = serial();
    common::ensure_official_client();
    let seed = test_seed("checkpoint_then_replay_after_sigkill");
    let mut rng = Rng(seed);
    let scratch = Scratch::new("checkpoint");
    let data = scratch.path("data");
    let mib = SEGMENT_MIB;

    // Load, then SIGTERM: a checkpoint.
    let server = Server::start(&scratch, &data, mib);
    let first = Load::spawn(
        &scratch,
        &server.address,
        1,
        seed,
        &["--clients", "2", "--tasks", "3", "--calls", "10"],
    );
    let first = first.finish(Duration::from_secs(120));
    let digest = server.sigterm();
    inspect_digest(&data, Some(&digest));
    let summary = text(&inspect(&data).stdout);
    assert!(
        summary.contains("recovery    from checkpoint op"),
        "{summary}"
    );

    // More load, SIGKILL in the middle of it.
    let server = Server::start(&scratch, &data, mib);
    let summary = check(&scratch, &server.address, &first.path, "check", &[]);
    eprintln!("after SIGTERM: {summary}");
    let mut second = Load::spawn(&scratch, &server.address, 2, seed, &[]);
    second.wait_ready();
    let delay = Duration::from_millis(rng.range(100, 600));
    second.pump(Instant::now() + delay, |_| false);
    server.sigkill();
    let second = second.kill();

    // Checkpoint + replay equals the replay of everything, then the server agrees.
    inspect_digest(&data, None);
    let server = Server::start(&scratch, &data, mib);
    let log = server.log_text();
    let recovered = log
        .lines()
        .find(|line| line.contains(" recovered "))
        .expect("a recovered line");
    assert_ne!(field(recovered, "checkpoint_op"), "0", "{recovered}");
    assert_ne!(field(recovered, "records"), "0", "{recovered}");
    let summary = check(
        &scratch,
        &server.address,
        &second.path,
        "check",
        &["--full"],
    );
    eprintln!(
        "SIGKILL {} ms into the second load ({} sent, {} acknowledged); {recovered}; {summary}",
        delay.as_millis(),
        second.sent,
        second.acked
    );
    let digest = server.sigterm();
    inspect_digest(&data, Some(&digest));
}

// ---------------------------------------------------------------------------------------------
// Regressions.

/// SIGTERM after group commit put several requests in one record: the shutdown checkpoint must
/// name the journal record, not the protocol op (the core panicked with "checkpoint op N is
/// beyond the last op M"). Then it logs the digest that replay gives.
#[test]
fn sigterm_checkpoints_after_group_commit() {
    let _serial = serial();
    common::ensure_official_client();
    let seed = test_seed("sigterm_checkpoints_after_group_commit");
    let scratch = Scratch::new("sigterm");
    let data = scratch.path("data");
    let server = Server::start(&scratch, &data, SEGMENT_MIB);
    let load = Load::spawn(
        &scratch,
        &server.address,
        1,
        seed,
        &["--clients", "3", "--tasks", "4", "--calls", "20"],
    );
    load.finish(Duration::from_secs(120));
    let digest = server.sigterm();
    inspect_digest(&data, Some(&digest));
}
