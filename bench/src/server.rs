//! A real `tally start` child process for the `durable` and `recovery` scenarios, and
//! `tally inspect` for the journal's record and byte counts.
//!
//! The binary is `tally` next to the bench binary (same target directory and profile), else
//! `<target>/release/tally`, else it is built with `cargo build --release -p tally-server` into
//! the target directory the bench binary lives in; `--tally PATH` overrides all of that.
//!
//! The server's stderr (tracing, info level) is read by a thread into memory, so that the
//! scenarios can pick out `recovered`, `checkpoint` and `stopped` lines; its stdout is read
//! until `listening on ADDR` (the ready signal, and the end of the timed start-up) and then
//! drained, so the server never writes into a closed pipe.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The `tally` binary to run: `explicit` if given, else next to this executable, else
/// `<target>/release/tally`, building it if it is not there.
pub fn tally_binary(explicit: Option<&Path>) -> PathBuf {
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

/// A running `tally start`. Dropping it kills the process (SIGKILL) if it still runs.
pub struct Server {
    child: Option<Child>,
    pub address: SocketAddr,
    pub pid: u32,
    /// From spawn to `listening on` on stdout.
    pub startup: Duration,
    stderr: Arc<Mutex<Vec<String>>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Starts `tally start --data-dir DIR --addresses 127.0.0.1:0 --segment-mib N` and waits
    /// (up to 10 minutes: a replay of a big journal takes a while) for `listening on`.
    pub fn start(binary: &Path, data_dir: &Path, segment_mib: u64) -> Server {
        Server::start_with(binary, data_dir, segment_mib, &[])
    }

    /// `start` with more arguments for `tally start` (e.g. `--transfers-max N`).
    pub fn start_with(
        binary: &Path,
        data_dir: &Path,
        segment_mib: u64,
        extra: &[String],
    ) -> Server {
        let started = Instant::now();
        let mut child = Command::new(binary)
            .arg("start")
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--addresses", "127.0.0.1:0"])
            .arg("--segment-mib")
            .arg(segment_mib.to_string())
            .args(extra)
            .env("TALLY_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", binary.display()));
        let pid = child.id();
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let mut readers = Vec::new();
        {
            let pipe = child.stderr.take().expect("stderr piped");
            let lines = stderr.clone();
            readers.push(std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    lines.lock().unwrap().push(strip_ansi(&line));
                }
            }));
        }
        let pipe = child.stdout.take().expect("stdout piped");
        let (ready, listening) = std::sync::mpsc::channel();
        readers.push(std::thread::spawn(move || {
            let mut ready = Some(ready);
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                if let Some(address) = line.trim().strip_prefix("listening on ") {
                    if let Some(ready) = ready.take() {
                        let _ = ready.send(address.parse::<SocketAddr>().ok());
                    }
                }
            }
        }));
        let address = match listening.recv_timeout(Duration::from_secs(600)) {
            Ok(Some(address)) => address,
            outcome => {
                let _ = child.kill();
                let status = child.wait();
                for reader in readers {
                    let _ = reader.join();
                }
                panic!(
                    "tally start did not print `listening on` ({outcome:?}, exit {status:?}); \
                     stderr:\n{}",
                    stderr.lock().unwrap().join("\n")
                );
            }
        };
        Server {
            child: Some(child),
            address,
            pid,
            startup: started.elapsed(),
            stderr,
            readers,
        }
    }

    /// The server's stderr lines so far, ANSI colours removed.
    pub fn stderr_lines(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }

    /// The `recovered` line of this start-up. The server logs it (stderr) before it prints
    /// `listening on` (stdout), but the two pipes are read by two threads: wait for it.
    pub fn recovered(&self) -> Recovered {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(recovered) = recovered(&self.stderr_lines()) {
                return recovered;
            }
            assert!(
                Instant::now() < deadline,
                "no `recovered` line from tally start; stderr:\n{}",
                self.stderr_lines().join("\n")
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// `VmRSS`, `VmHWM`, `RssAnon`, `RssFile` of the server process, in bytes.
    pub fn memory(&self) -> Memory {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap_or_default();
        let field = |key: &str| {
            status.lines().find_map(|line| {
                let value = line.strip_prefix(key)?.strip_prefix(':')?;
                value
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
        };
        Memory {
            rss_bytes: field("VmRSS").unwrap_or(0) * 1024,
            hwm_bytes: field("VmHWM").unwrap_or(0) * 1024,
            rss_anon_bytes: field("RssAnon").unwrap_or(0) * 1024,
            rss_file_bytes: field("RssFile").unwrap_or(0) * 1024,
        }
    }

    /// SIGTERM (drain, checkpoint, exit 0) and wait. Returns the time to exit and the stderr
    /// lines; panics unless the exit status is 0.
    pub fn terminate(mut self) -> (Duration, Vec<String>) {
        // `tally start` prints `listening on` before it installs its SIGTERM handler, so a
        // SIGTERM right after that line kills it outright (exit by signal, no checkpoint).
        // Wait until the process catches SIGTERM (SigCgt in /proc/PID/status).
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.catches(libc::SIGTERM) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        let started = Instant::now();
        let status = self.signal_and_wait(libc::SIGTERM);
        let elapsed = started.elapsed();
        let lines = self.stderr_lines();
        assert!(
            status.success(),
            "tally exited with {status} after SIGTERM; stderr:\n{}",
            lines.join("\n")
        );
        (elapsed, lines)
    }

    /// Whether the process has a handler for `signal` (bit `signal - 1` of SigCgt).
    fn catches(&self, signal: i32) -> bool {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap_or_default();
        status
            .lines()
            .find_map(|line| line.strip_prefix("SigCgt:"))
            .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
            .is_some_and(|mask| mask & (1 << (signal - 1)) != 0)
    }

    /// SIGKILL and wait: a crash. Returns the stderr lines.
    pub fn kill(mut self) -> Vec<String> {
        let _ = self.signal_and_wait(libc::SIGKILL);
        self.stderr_lines()
    }

    fn signal_and_wait(&mut self, signal: i32) -> ExitStatus {
        let mut child = self.child.take().expect("server running");
        // SAFETY: kill(2) on our own child's pid, which has not been waited for yet.
        unsafe {
            libc::kill(child.id() as i32, signal);
        }
        let status = child.wait().expect("wait for tally");
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        status
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[derive(Clone, Copy, Debug, Default)]
pub struct Memory {
    /// VmRSS: resident now.
    pub rss_bytes: u64,
    /// VmHWM: the peak of VmRSS.
    pub hwm_bytes: u64,
    /// RssAnon: the heap (and other anonymous memory).
    pub rss_anon_bytes: u64,
    /// RssFile: resident file pages mapped, i.e. the memory-mapped journal segments touched.
    pub rss_file_bytes: u64,
}

/// What `tally inspect DIR` says about the journal (the server must be stopped: inspect takes a
/// shared lock and refuses while the server holds it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Inspection {
    /// Journal records: one per core turn, each one write and one fsync (group commit).
    pub records: u64,
    /// Bytes of log (record headers and bodies).
    pub log_bytes: u64,
    pub body_bytes: u64,
}

pub fn inspect(binary: &Path, data_dir: &Path) -> Inspection {
    let output = Command::new(binary)
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

/// `key=value` of a tracing line (`... recovered op=12 checkpoint_op=3 records=9`).
pub fn field(line: &str, key: &str) -> Option<u64> {
    line.split_whitespace().find_map(|word| {
        word.strip_prefix(key)?
            .strip_prefix('=')?
            .trim_matches('"')
            .parse()
            .ok()
    })
}

/// The last stderr line whose message is `message` (the word after the target's `: `).
pub fn find_line<'a>(lines: &'a [String], message: &str) -> Option<&'a String> {
    lines.iter().rev().find(|line| {
        line.split_once(": ")
            .is_some_and(|(_, rest)| rest.split_whitespace().next() == Some(message))
    })
}

/// The `recovered op=... checkpoint_op=... records=...` line of a start-up.
#[derive(Clone, Copy, Debug, Default)]
pub struct Recovered {
    /// Protocol op of the state after recovery.
    pub op: u64,
    /// Journal record the checkpoint named (0: none, replay from record 1).
    pub checkpoint_record: u64,
    /// Records replayed.
    pub records: u64,
}

pub fn recovered(lines: &[String]) -> Option<Recovered> {
    let line = find_line(lines, "recovered")?;
    Some(Recovered {
        op: field(line, "op")?,
        checkpoint_record: field(line, "checkpoint_op")?,
        records: field(line, "records")?,
    })
}

/// Removes ANSI escape sequences (in case the server colours its log anyway).
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // CSI: ESC [ params final-byte (0x40..=0x7e).
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if ('\x40'..='\x7e').contains(&c) {
                        break;
                    }
                }
            }
        } else {
            out.push(c);
        }
    }
    out
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
        let line = strip_ansi(
            "\x1b[2m2026-11-24T03:26:21.469189Z\x1b[0m \x1b[32m INFO\x1b[0m \
             \x1b[2mtally_server::recovery\x1b[0m\x1b[2m:\x1b[0m recovered \x1b[3mop\x1b[0m\
             \x1b[2m=\x1b[0m7 \x1b[3mcheckpoint_op\x1b[0m\x1b[2m=\x1b[0m3 records=4",
        );
        let lines = vec![line];
        let r = recovered(&lines).expect("recovered line");
        assert_eq!((r.op, r.checkpoint_record, r.records), (7, 3, 4));
    }
}
