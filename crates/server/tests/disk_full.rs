//! A full disk fails the requests that cannot be logged, keeps the server up and the log intact,
//! and the requests go through once there is room again.
//!
//! The disk is real: a 6 MiB tmpfs mounted for the test (this needs root, which CI and the
//! development machines of this project have; without it the test fails and says why).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tally_client::{Client, ClientConfig};
use tally_ledger::{Account, CreateAccountStatus, CreateTransferStatus, Transfer};

const TALLY: &str = env!("CARGO_BIN_EXE_tally");

/// A tmpfs mounted for the test's lifetime.
struct Mount {
    path: PathBuf,
}

impl Mount {
    fn tmpfs(path: &Path, size: &str) -> Mount {
        std::fs::create_dir_all(path).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "mounting a tmpfs failed: this test needs root (it fills a real, small disk)"
        );
        Mount {
            path: path.to_path_buf(),
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// The server process; killed if the test ends early.
struct Server {
    child: Child,
    address: SocketAddr,
    log: mpsc::Receiver<String>,
}

impl Server {
    fn start(data_dir: &Path) -> Server {
        let mut child = Command::new(TALLY)
            .args([
                "start",
                "--addresses",
                "127.0.0.1:0",
                "--graphql-address",
                "off",
                "--auto-peering-address",
                "off",
                "--segment-mib",
                "2",
                "--data-dir",
            ])
            .arg(data_dir)
            .env("TALLY_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tally");
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let (sender, log) = mpsc::channel();
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                eprintln!("tally: {line}");
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let line = stdout.lines().next().expect("a line").expect("stdout");
        let address = line
            .strip_prefix("listening on ")
            .expect("listening line")
            .parse()
            .unwrap();
        Server {
            child,
            address,
            log,
        }
    }

    /// Waits for a log line containing `text`.
    fn wait_log(&self, text: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.log.recv_timeout(left) {
                Ok(line) if line.contains(text) => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
        false
    }

    fn terminate(mut self) -> std::process::ExitStatus {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "server did not stop after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn transfers(batch: u128, count: u128) -> Vec<Transfer> {
    (0..count)
        .map(|i| Transfer {
            id: batch * 1_000_000 + i + 1,
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
fn full_disk_fails_requests_and_recovers_when_there_is_room() {
    let temporary = tempfile::tempdir().unwrap();
    let mount = Mount::tmpfs(&temporary.path().join("disk"), "10m");
    let filler = mount.path.join("filler");
    std::fs::write(&filler, vec![7u8; 4 << 20]).unwrap();
    let data_dir = mount.path.join("data");
    let server = Server::start(&data_dir);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let config = ClientConfig {
        request_timeout: Duration::from_millis(500),
        ..ClientConfig::default()
    };
    let client = runtime
        .block_on(Client::connect_with(server.address, 0, config))
        .expect("connect");
    let accounts: Vec<Account> = (1..=2)
        .map(|id| Account {
            id,
            ledger: 1,
            code: 1,
            ..Default::default()
        })
        .collect();
    let results = runtime.block_on(client.create_accounts(&accounts)).unwrap();
    assert!(results
        .iter()
        .all(|r| r.status == CreateAccountStatus::Created));

    // Write 128 KiB batches until one is not acknowledged within a few seconds: the disk is
    // full. The server must say so and stay up.
    let mut acknowledged = 0u128;
    let stuck = loop {
        let batch = transfers(acknowledged, 1000);
        let call = runtime.spawn({
            let client = client.clone();
            async move { client.create_transfers(&batch).await }
        });
        let waited =
            runtime.block_on(async { tokio::time::timeout(Duration::from_secs(3), call).await });
        match waited {
            Ok(joined) => {
                let results = joined.unwrap().expect("create_transfers");
                assert!(results
                    .iter()
                    .all(|r| r.status == CreateTransferStatus::Created));
                acknowledged += 1;
                assert!(acknowledged < 60, "the disk never filled up");
            }
            Err(_elapsed) => break acknowledged,
        }
    };
    assert!(
        server.wait_log("journal append failed", Duration::from_secs(5)),
        "no append failure logged"
    );
    assert!(stuck > 0, "some batches fit before the disk filled");

    // Room again: the client's resends go through, and nothing acknowledged was lost.
    std::fs::remove_file(&filler).unwrap();
    let batch = transfers(stuck, 1000);
    let results = runtime
        .block_on(async {
            tokio::time::timeout(Duration::from_secs(20), client.create_transfers(&batch)).await
        })
        .expect("the resent request went through once there was room")
        .expect("create_transfers");
    // The stuck request is this batch's resend or an earlier attempt of it: either created now
    // or already created (exists) if the earlier attempt was logged after all.
    assert!(results.iter().all(|r| matches!(
        r.status,
        CreateTransferStatus::Created | CreateTransferStatus::Exists
    )));
    let ids: Vec<u128> = (0..=stuck)
        .flat_map(|batch| transfers(batch, 1000))
        .map(|t| t.id)
        .collect();
    let found = ids
        .chunks(8000)
        .map(|chunk| {
            runtime
                .block_on(client.lookup_transfers(chunk))
                .unwrap()
                .len()
        })
        .sum::<usize>();
    assert_eq!(found, ids.len(), "every acknowledged transfer is there");
    let balances = runtime.block_on(client.lookup_accounts(&[1, 2])).unwrap();
    assert_eq!(balances[0].debits_posted, ids.len() as u128);
    drop(client);
    runtime.shutdown_timeout(Duration::from_secs(1));

    let status = server.terminate();
    assert!(
        status.success(),
        "clean stop after the disk was full: {status:?}"
    );
    let digest = Command::new(TALLY)
        .args(["inspect", "--digest"])
        .arg(&data_dir)
        .output()
        .unwrap();
    assert!(
        digest.status.success(),
        "{}",
        String::from_utf8_lossy(&digest.stderr)
    );
    drop(mount);
}
