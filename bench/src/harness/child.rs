//! A child process under test: spawned with its arguments and environment, timed until it prints
//! a ready line, its output kept in memory, its memory read from `/proc`, and stopped by SIGTERM
//! (checked exit 0) or SIGKILL (a crash).
//!
//! Nothing here knows about `tally`: `tally.rs` builds a `Spawn` for `tally start` (ready line
//! `listening on ADDR`), and a scenario that runs another front (an HTTP one, say) builds its own
//! `Spawn` with its own ready marker, arguments and environment.
//!
//! Both pipes are read by threads into memory, line by line, ANSI colours removed: the child
//! never blocks on a full pipe, and a scenario can pick out log lines (`wait_for_line`) while
//! the child runs and after it stopped.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What to run and when it is ready.
pub(crate) struct Spawn<'a> {
    /// The executable.
    pub program: &'a Path,
    /// Its arguments.
    pub args: Vec<OsString>,
    /// Environment variables set on top of this process's environment.
    pub env: Vec<(OsString, OsString)>,
    /// The stream that carries the ready line.
    pub ready_stream: Stream,
    /// The child is ready once a line on `ready_stream` contains this; the text after it is
    /// `Child::ready`.
    pub ready_marker: &'a str,
    /// How long to wait for the ready line before giving up (and panicking with the child's
    /// output).
    pub ready_timeout: Duration,
}

/// One of the child's output streams.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error (where `tally` logs).
    Stderr,
}

/// A running child. Dropping it kills the process (SIGKILL) if it still runs.
pub(crate) struct Child {
    process: Option<std::process::Child>,
    pid: u32,
    startup: Duration,
    ready: String,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
    readers: Vec<JoinHandle<()>>,
}

impl Child {
    /// Spawns `spawn.program` and waits for its ready line; panics (showing the child's output)
    /// if it exits first or the timeout passes.
    pub(crate) fn spawn(spawn: &Spawn) -> Child {
        let started = Instant::now();
        let mut process = Command::new(spawn.program)
            .args(&spawn.args)
            .envs(spawn.env.iter().map(|(key, value)| (key, value)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", spawn.program.display()));
        let pid = process.id();
        let (ready_sender, ready_receiver) = std::sync::mpsc::channel();
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let ready = |stream: Stream| {
            (spawn.ready_stream == stream)
                .then(|| (spawn.ready_marker.to_string(), ready_sender.clone()))
        };
        let readers = vec![
            read_lines(
                process.stdout.take().expect("stdout piped"),
                stdout.clone(),
                ready(Stream::Stdout),
            ),
            read_lines(
                process.stderr.take().expect("stderr piped"),
                stderr.clone(),
                ready(Stream::Stderr),
            ),
        ];
        drop(ready_sender);
        let mut child = Child {
            process: Some(process),
            pid,
            startup: Duration::ZERO,
            ready: String::new(),
            stdout,
            stderr,
            readers,
        };
        // The reader drops its sender at end of file, so an early exit ends the wait too.
        match ready_receiver.recv_timeout(spawn.ready_timeout) {
            Ok(ready) => {
                child.startup = started.elapsed();
                child.ready = ready;
                child
            }
            Err(outcome) => {
                let status = child.signal_and_wait(libc::SIGKILL);
                panic!(
                    "{} printed no line with `{}` on {:?} ({outcome:?}, exit {status}); \
                     stdout:\n{}\nstderr:\n{}",
                    spawn.program.display(),
                    spawn.ready_marker,
                    spawn.ready_stream,
                    child.stdout.lock().unwrap().join("\n"),
                    child.stderr_lines().join("\n")
                );
            }
        }
    }

    /// From spawn to the ready line.
    pub(crate) fn startup(&self) -> Duration {
        self.startup
    }

    /// The text after the ready marker on the ready line, trimmed.
    pub(crate) fn ready(&self) -> &str {
        &self.ready
    }

    /// The stderr lines so far.
    pub(crate) fn stderr_lines(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }

    /// The last stderr line that `find` picks, waiting up to `timeout` for it: the two pipes
    /// are read by two threads, so a line logged before the ready line may arrive after it.
    /// Panics (showing stderr) if none comes.
    pub(crate) fn wait_for_line<T>(
        &self,
        timeout: Duration,
        find: impl Fn(&[String]) -> Option<T>,
    ) -> T {
        self.wait_for_line_on(Stream::Stderr, timeout, find)
    }

    /// As `wait_for_line`, on either stream (a second listener's address on stdout, say).
    pub(crate) fn wait_for_line_on<T>(
        &self,
        stream: Stream,
        timeout: Duration,
        find: impl Fn(&[String]) -> Option<T>,
    ) -> T {
        let lines = match stream {
            Stream::Stdout => &self.stdout,
            Stream::Stderr => &self.stderr,
        };
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(found) = find(&lines.lock().unwrap()) {
                return found;
            }
            assert!(
                Instant::now() < deadline,
                "the line looked for never came on {stream:?}; stdout:\n{}\nstderr:\n{}",
                self.stdout.lock().unwrap().join("\n"),
                self.stderr_lines().join("\n")
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// CPU time the process has used so far (user + system, all its threads), from
    /// `/proc/PID/stat`; zero once it is gone.
    pub(crate) fn cpu_time(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).unwrap_or_default();
        // The fields after the command name (which may hold spaces) start after the last ')'.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map_or("", |(_, rest)| rest)
            .split_whitespace()
            .collect();
        // utime and stime are fields 14 and 15 of the line: 11 and 12 counting from 0 after the name.
        let ticks: u64 = [11, 12]
            .iter()
            .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
            .sum();
        // SAFETY: sysconf has no preconditions.
        let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        Duration::from_nanos(ticks * 1_000_000_000 / per_second)
    }

    /// `VmRSS`, `VmHWM`, `RssAnon`, `RssFile` of the process, in bytes.
    pub(crate) fn memory(&self) -> Memory {
        let status = proc_status(self.pid);
        let kib = |key: &str| {
            status
                .lines()
                .find_map(|line| {
                    let value = line.strip_prefix(key)?.strip_prefix(':')?;
                    value
                        .trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<u64>()
                        .ok()
                })
                .unwrap_or(0)
        };
        Memory {
            rss_bytes: kib("VmRSS") * 1024,
            hwm_bytes: kib("VmHWM") * 1024,
            rss_anon_bytes: kib("RssAnon") * 1024,
            rss_file_bytes: kib("RssFile") * 1024,
        }
    }

    /// SIGTERM and wait. Returns the time from the signal to the exit, and the stderr lines;
    /// panics unless the exit status is 0.
    ///
    /// A process that prints its ready line before it installs its SIGTERM handler would die
    /// by the signal's default action in that window, so this first waits (up to 10 s) until
    /// the process catches SIGTERM (`SigCgt` in `/proc/PID/status`).
    pub(crate) fn terminate(mut self) -> (Duration, Vec<String>) {
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
            "exit {status} after SIGTERM; stderr:\n{}",
            lines.join("\n")
        );
        (elapsed, lines)
    }

    /// SIGKILL and wait: a crash. Returns the stderr lines.
    pub(crate) fn kill(mut self) -> Vec<String> {
        let _ = self.signal_and_wait(libc::SIGKILL);
        self.stderr_lines()
    }

    /// Whether the process has a handler for `signal` (bit `signal - 1` of `SigCgt`).
    fn catches(&self, signal: i32) -> bool {
        proc_status(self.pid)
            .lines()
            .find_map(|line| line.strip_prefix("SigCgt:"))
            .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
            .is_some_and(|mask| mask & (1 << (signal - 1)) != 0)
    }

    /// Sends `signal`, waits for the exit and for both pipes to reach end of file.
    fn signal_and_wait(&mut self, signal: i32) -> ExitStatus {
        let mut process = self.process.take().expect("child running");
        // SAFETY: kill(2) on our own child's pid, which has not been waited for yet.
        unsafe {
            libc::kill(process.id() as i32, signal);
        }
        let status = process.wait().expect("wait for the child");
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        status
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if let Some(mut process) = self.process.take() {
            let _ = process.kill();
            let _ = process.wait();
        }
    }
}

/// Resident memory of a process, from `/proc/PID/status`.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Memory {
    /// VmRSS: resident now.
    pub rss_bytes: u64,
    /// VmHWM: the peak of VmRSS.
    pub hwm_bytes: u64,
    /// RssAnon: the heap (and other anonymous memory).
    pub rss_anon_bytes: u64,
    /// RssFile: resident file pages mapped (for `tally`, the memory-mapped journal segments).
    pub rss_file_bytes: u64,
}

fn proc_status(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default()
}

/// A thread that appends every line of `pipe` to `lines`, ANSI colours removed; with a
/// `(marker, sender)`, it sends the text after the marker of the first line that holds it.
fn read_lines(
    pipe: impl Read + Send + 'static,
    lines: Arc<Mutex<Vec<String>>>,
    mut ready: Option<(String, Sender<String>)>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            let line = strip_ansi(&line);
            let at = ready
                .as_ref()
                .and_then(|(marker, _)| Some(line.find(marker.as_str())? + marker.len()));
            if let Some(at) = at {
                let (_, sender) = ready.take().expect("ready marker");
                let _ = sender.send(line[at..].trim().to_string());
            }
            lines.lock().unwrap().push(line);
        }
    })
}

/// Removes ANSI escape sequences (in case the child colours its log anyway).
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
    fn strips_colours() {
        let line = strip_ansi(
            "\x1b[2m2026-11-24T03:26:21.469189Z\x1b[0m \x1b[32m INFO\x1b[0m \
             \x1b[2mtally_server::recovery\x1b[0m\x1b[2m:\x1b[0m recovered \x1b[3mop\x1b[0m\
             \x1b[2m=\x1b[0m7",
        );
        assert_eq!(
            line,
            "2026-11-24T03:26:21.469189Z  INFO tally_server::recovery: recovered op=7"
        );
    }
}
