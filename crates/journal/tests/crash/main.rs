//! Tests with a child process: this test binary run again with one ignored test selected and an
//! environment variable naming the data directory.
//!
//! They live in a binary of their own and run one at a time: a child holds a copy of every file
//! descriptor of the parent from fork until exec (all are close-on-exec), the directory flock
//! included, so a test in the same process that closes and reopens a journal just then would find
//! it locked.
//!
//! - Crash: the child appends and syncs in a loop and prints each acknowledged op after its sync
//!   returns, and each checkpoint once its writer thread reports it durable; the parent SIGKILLs
//!   it at a random moment (often while a checkpoint is being written), reopens, and checks that
//!   every acknowledged op (and checkpoint) is there and intact.
//! - Full disk: the child runs under a file size limit (RLIMIT_FSIZE), so the kernel refuses to
//!   allocate the next segment (EFBIG), a real allocation failure without root or mocks.

use std::env;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use tally_journal::{Journal, JournalError, SyncTicket};

// Shared with the journal tests; this binary uses part of it.
#[allow(dead_code)]
#[path = "../journal/common.rs"]
mod common;

use common::{
    append_standard, body_for, formatted, kind_for, options, segment_path, timestamp_for,
    verify_standard, Rng, SEGMENT_SIZE_BYTES,
};

const ENV_DIRECTORY: &str = "TALLY_JOURNAL_TEST_CHILD_DIRECTORY";
const BODY_SIZE_MAX: u64 = 4 * 1024;
const CYCLES: u64 = 10;
const ACK_TIMEOUT: Duration = Duration::from_secs(20);

/// Held by each parent test for its whole run (see the module comment).
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn child_directory() -> PathBuf {
    PathBuf::from(env::var_os(ENV_DIRECTORY).expect("set by the parent test"))
}

fn child_spawn(test: &str, directory: &Path) -> Child {
    Command::new(env::current_exe().expect("test binary"))
        .args([
            "--exact",
            test,
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ENV_DIRECTORY, directory)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the child")
}

/// Up to about 4 MB, so that a kill often lands while the writer thread writes it.
fn checkpoint_state(op: u64) -> Vec<u8> {
    format!("state after op {op};")
        .repeat(1 + (op % 50) as usize * 4096)
        .into_bytes()
}

#[test]
#[ignore = "child process of crash_recovery_keeps_every_acknowledged_op"]
fn crash_writer_child() {
    let (mut journal, recovery) = Journal::open(&child_directory(), options()).expect("open");
    println!("\nopened {}", recovery.op_last);
    let mut ticket_previous: Option<SyncTicket> = None;
    // The parent kills this process long before the loop ends.
    for round in 0..10_000_000u64 {
        for _ in 0..1 + round % 4 {
            append_standard(&mut journal, BODY_SIZE_MAX);
        }
        // Group commit as the server does it: begin this sync, then finish the previous one.
        let ticket = journal.sync_begin().expect("sync_begin");
        if let Some(previous) = ticket_previous.replace(ticket) {
            journal.sync_wait(previous).expect("sync_wait");
            println!("ack {}", previous.op());
        }
        // Checkpoints on the writer thread, as the server writes them: said once landed.
        if let Some(landed) = journal.checkpoint_poll().expect("checkpoint") {
            println!("checkpoint {}", landed.op);
        }
        if round % 64 == 63 && !journal.checkpoint_in_flight() {
            let op = journal.op_synced();
            journal
                .checkpoint_start(op, checkpoint_state(op))
                .expect("checkpoint");
        }
    }
}

/// What the child said before it died: (last acknowledged op, last written checkpoint).
struct Said {
    op_acknowledged: Option<u64>,
    op_checkpoint: Option<u64>,
}

fn said_parse(lines: &[String], said: &mut Said) {
    for line in lines {
        if let Some(op) = line.strip_prefix("ack ") {
            said.op_acknowledged = Some(op.parse().expect("op"));
        } else if let Some(op) = line.strip_prefix("checkpoint ") {
            said.op_checkpoint = Some(op.parse().expect("op"));
        }
    }
}

/// Runs the writer and kills it: after its first acknowledgement and a random pause, or (every
/// fifth cycle) a random moment after start, to crash during recovery too. Returns its lines.
fn crash_cycle(directory: &Path, rng: &mut Rng, cycle: u64) -> Vec<String> {
    let mut child = child_spawn("crash_writer_child", directory);
    let stdout = child.stdout.take().expect("stdout");
    let (sender, receiver) = mpsc::channel::<String>();
    let reader = thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    if cycle % 5 == 4 {
        thread::sleep(Duration::from_millis(rng.range(0, 40)));
    } else {
        let started = Instant::now();
        while !lines.iter().any(|line: &String| line.starts_with("ack ")) {
            match receiver.recv_timeout(ACK_TIMEOUT.saturating_sub(started.elapsed())) {
                Ok(line) => lines.push(line),
                Err(_) => {
                    let _ = child.kill();
                    let mut stderr = String::new();
                    let _ = child
                        .stderr
                        .take()
                        .expect("stderr")
                        .read_to_string(&mut stderr);
                    panic!("cycle {cycle}: no acknowledgement from the writer; stderr:\n{stderr}");
                }
            }
        }
        thread::sleep(Duration::from_millis(rng.range(0, 100)));
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("wait");
    reader.join().expect("reader");
    lines.extend(receiver.try_iter());
    lines
}

#[test]
fn crash_recovery_keeps_every_acknowledged_op() {
    let _one_at_a_time = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let (_temporary, directory) = formatted();
    let mut rng = Rng::new(0xC4A5_11ED);
    let mut said = Said {
        op_acknowledged: None,
        op_checkpoint: None,
    };
    let mut killed_writing = 0;
    for cycle in 0..CYCLES {
        let lines = crash_cycle(&directory, &mut rng, cycle);
        said_parse(&lines, &mut said);
        if directory.join("checkpoint.tmp").exists() {
            killed_writing += 1;
        }
        let (journal, recovery) = Journal::open(&directory, options()).expect("open after a kill");
        let op_acknowledged = said.op_acknowledged.unwrap_or(0);
        assert!(
            recovery.op_last >= op_acknowledged,
            "cycle {cycle}: op {op_acknowledged} was acknowledged, the log ends at {}",
            recovery.op_last
        );
        // Every record there, acknowledged or not, is whole and the one the writer wrote.
        verify_standard(&journal, BODY_SIZE_MAX);
        if let Some(op_checkpoint) = said.op_checkpoint {
            let checkpoint = recovery.checkpoint.expect("the acknowledged checkpoint");
            assert!(checkpoint.op >= op_checkpoint, "cycle {cycle}");
            assert!(checkpoint.state() == &checkpoint_state(checkpoint.op)[..]);
        }
    }
    let op_acknowledged = said.op_acknowledged.expect("acknowledgements");
    assert!(
        said.op_checkpoint.is_some(),
        "no checkpoint was written in {CYCLES} cycles"
    );
    println!(
        "{CYCLES} crashes ({killed_writing} while a checkpoint was being written), \
         {op_acknowledged} ops acknowledged, all recovered"
    );
}

#[test]
#[ignore = "child process of a_full_disk_fails_the_append_and_changes_nothing"]
fn full_disk_child() {
    // SAFETY: this process runs only this test. Ignoring SIGXFSZ turns passing the file size
    // limit into an EFBIG error rather than death; setrlimit reads a valid struct.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        let limit = libc::rlimit {
            rlim_cur: SEGMENT_SIZE_BYTES / 2,
            rlim_max: libc::RLIM_INFINITY,
        };
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &limit), 0);
    }
    let directory = child_directory();
    let (mut journal, _) = Journal::open(&directory, options()).expect("open");
    let mut failure = None;
    for _ in 0..10_000 {
        let op = journal.op_last() + 1;
        let body = body_for(op, BODY_SIZE_MAX);
        match journal.append(kind_for(op), timestamp_for(op), &body) {
            Ok(_) => continue,
            Err(error) => {
                failure = Some(error);
                break;
            }
        }
    }
    let segment = match failure.expect("segment allocation never failed") {
        JournalError::SegmentAllocate { segment, source } => {
            assert_eq!(source.raw_os_error(), Some(libc::EFBIG));
            segment
        }
        other => panic!("expected SegmentAllocate, got {other}"),
    };
    // Nothing changed: the op did not advance, no file was left behind, the log still syncs.
    let op_last = journal.op_last();
    let op = op_last + 1;
    assert!(journal
        .append(
            kind_for(op),
            timestamp_for(op),
            &body_for(op, BODY_SIZE_MAX)
        )
        .is_err());
    assert_eq!(journal.op_last(), op_last);
    assert!(!segment_path(&directory, segment).exists());
    assert!(!segment_path(&directory, segment)
        .with_extension("tmp")
        .exists());
    journal.sync().expect("sync");
    verify_standard(&journal, BODY_SIZE_MAX);
    // On a line of its own: the test harness has written "test … ... " without a newline.
    println!("\nfull {op_last} {segment}");
}

#[test]
fn a_full_disk_fails_the_append_and_changes_nothing() {
    let _one_at_a_time = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let (_temporary, directory) = formatted();
    let (mut journal, _) = Journal::open(&directory, options()).expect("open");
    append_standard(&mut journal, BODY_SIZE_MAX);
    journal.sync().expect("sync");
    drop(journal);
    let output = child_spawn("full_disk_child", &directory)
        .wait_with_output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "child failed:\n{stdout}\n{stderr}");
    let line = stdout.lines().find_map(|line| line.strip_prefix("full "));
    let line = line.unwrap_or_else(|| panic!("no report from the child:\n{stdout}\n{stderr}"));
    let numbers: Vec<u64> = line
        .split(' ')
        .map(|n| n.parse().expect("number"))
        .collect();
    let (op_last, segment) = (numbers[0], numbers[1]);
    // Segments 0 and 1 existed; the append that first needed segment 2 (as its spare) failed.
    assert_eq!(segment, 2);

    let (mut journal, recovery) = Journal::open(&directory, options()).expect("reopen");
    assert_eq!(recovery.op_last, op_last);
    assert!(recovery.cut.is_none());
    verify_standard(&journal, BODY_SIZE_MAX);
    // Without the limit, appends go on into the segment that could not be allocated before.
    while journal
        .records_from(journal.op_last())
        .next()
        .expect("last")
        .position
        .segment
        < 2
    {
        append_standard(&mut journal, BODY_SIZE_MAX);
    }
    journal.sync().expect("sync");
    drop(journal);
    let (journal, _) = Journal::open(&directory, options()).expect("reopen");
    verify_standard(&journal, BODY_SIZE_MAX);
}
