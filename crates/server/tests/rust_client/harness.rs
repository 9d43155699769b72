//! The real `tally` binary as a child process, for the integration tests.
//!
//! The binary is the one cargo built with this test (`CARGO_BIN_EXE_tally`), run as
//! `tally start --data-dir DIR --addresses ADDR --segment-mib 8`. It prints
//! `listening on ADDR` when ready and stops on SIGTERM.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `tally start`; SIGTERM and wait on drop.
pub(crate) struct Server {
    child: Option<Child>,
    /// Kept open: the server must never write into a closed pipe.
    _stdout: Option<BufReader<ChildStdout>>,
    pub address: SocketAddr,
    pub data_dir: PathBuf,
}

impl Server {
    /// Starts a server on a free port.
    pub(crate) fn start(data_dir: &Path) -> Server {
        Server::start_at(data_dir, "127.0.0.1:0".parse().expect("address"))
    }

    /// Starts a server on `address` (retrying briefly while the port is still taken).
    pub(crate) fn start_at(data_dir: &Path, address: SocketAddr) -> Server {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match Server::try_start(data_dir, address) {
                Some(server) => return server,
                None if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
                None => panic!("tally did not start on {address}"),
            }
        }
    }

    fn try_start(data_dir: &Path, address: SocketAddr) -> Option<Server> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tally"))
            .arg("start")
            .args(["--graphql-address", "off", "--auto-peering-address", "off"])
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--addresses")
            .arg(address.to_string())
            .args(["--segment-mib", "8"])
            .env("TALLY_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn tally");
        let Some(stdout) = child.stdout.take() else {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        };
        let mut stdout = BufReader::new(stdout);
        let mut line = String::new();
        loop {
            line.clear();
            let listening = match stdout.read_line(&mut line) {
                Ok(0) | Err(_) => None,
                Ok(_) => match line.trim().strip_prefix("listening on ") {
                    Some(address) => Some(address.parse().ok()),
                    None => continue,
                },
            };
            match listening {
                Some(Some(address)) => {
                    return Some(Server {
                        child: Some(child),
                        _stdout: Some(stdout),
                        address,
                        data_dir: data_dir.to_path_buf(),
                    })
                }
                // Exited before listening (e.g. the port is still in use), or said nonsense.
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return None;
                }
            }
        }
    }

    /// SIGTERM, then wait for the process to exit (SIGKILL after 10 s). The exit status, if
    /// the server was running and exited by itself.
    pub(crate) fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        // Cast: process ids fit i32.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break None;
                }
            }
        };
        self._stdout = None;
        status
    }

    /// Stops and starts again on the same port and data directory.
    pub(crate) fn restart(&mut self) {
        self.stop();
        let restarted = Server::start_at(&self.data_dir, self.address);
        *self = restarted;
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A TCP proxy in front of a server that can swallow everything the server sends
/// (`drop_replies`), to lose replies on purpose. When either side closes, both connections
/// close.
pub(crate) struct Proxy {
    pub address: SocketAddr,
    pub drop_replies: std::sync::Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    pub(crate) async fn start(upstream: SocketAddr) -> Proxy {
        use std::sync::atomic::{AtomicBool, Ordering};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy");
        let address = listener.local_addr().expect("proxy address");
        let drop_replies = std::sync::Arc::new(AtomicBool::new(false));
        let dropping = drop_replies.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
                    continue;
                };
                let dropping = dropping.clone();
                tokio::spawn(async move {
                    let (mut client_read, mut client_write) = client.into_split();
                    let (mut server_read, mut server_write) = server.into_split();
                    let upstream = tokio::io::copy(&mut client_read, &mut server_write);
                    let downstream = async {
                        let mut buffer = vec![0u8; 64 << 10];
                        loop {
                            let read = server_read.read(&mut buffer).await?;
                            if read == 0 {
                                return Ok::<(), std::io::Error>(());
                            }
                            if !dropping.load(Ordering::SeqCst) {
                                client_write.write_all(&buffer[..read]).await?;
                            }
                        }
                    };
                    tokio::select! {
                        _ = upstream => {}
                        _ = downstream => {}
                    }
                });
            }
        });
        Proxy {
            address,
            drop_replies,
            task,
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
