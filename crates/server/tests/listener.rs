//! The native listener under hostile load, against a real `tally start` child process over real
//! sockets (issue 11): what client ids and idle connections cost in resident memory (VmRSS from
//! `/proc/PID/status`), that idle connections are closed after `--idle-timeout-seconds`, and
//! that the limit's worth of idle connections cannot lock a real client out.
//!
//! The memory bounds are generous on purpose (the machine is shared and the allocator's state
//! varies): each is at least 8 times what `tally-bench connections` measures now and at least
//! 10 times below what the listener cost before (docs/benchmarks.md, "connections").

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use tally_client::{Account, Client, ClientConfig, CreateAccountStatus};
use tally_wire::{
    encode_ping_client, encode_request, Command as WireCommand, Header, MultiBatchEncoder,
    Operation, PingClientHeader, RequestParams, HEADER_SIZE, RELEASE,
};

const TALLY: &str = env!("CARGO_BIN_EXE_tally");
/// The server's connection limit (`CONNECTIONS_MAX` in `src/net.rs`).
const CONNECTIONS_MAX: usize = 1024;
/// How long a socket operation may block before the test fails.
const SOCKET_TIMEOUT: Duration = Duration::from_secs(20);
/// Threads opening connections at once.
const THREADS: u64 = 4;

/// Client ids pinged before memory is first read: the runtime's and the allocator's pools are
/// filled by then.
const WARM_UP_CLIENT_IDS: u64 = 5_000;
/// New client ids, each on its own connection.
const CLIENT_IDS: u64 = 100_000;
/// One client id in this many registers a session (so sessions are evicted, least recently
/// used first, once there are 64), and one sends a request without a session (`no_session`).
const SESSION_EVERY: u64 = 500;
/// Allowed growth over `CLIENT_IDS`: 16 MiB, 168 bytes per id. Measured: flat (under 1 MiB).
/// Before, every id kept a route and its closed connection's channel, about 1.8 KB: 170 MiB.
const CLIENT_IDS_RSS_GROWTH_MAX: u64 = 16 << 20;

/// The idle timeout of the idle-connection test.
const IDLE_TIMEOUT_SECONDS: u64 = 2;
/// Bytes of a header a partial-frame connection sends.
const PARTIAL_FRAME_SIZE: usize = 100;
/// Allowed growth for `CONNECTIONS_MAX` idle connections: 32 MiB, 32 KiB each. Measured: about
/// 4 KiB each. Before, each held a 1 MiB frame buffer: 400–600 KiB resident each, 400+ MiB.
const IDLE_CONNECTIONS_RSS_GROWTH_MAX: u64 = 32 << 20;

/// Memory stays flat however many client ids come and go: a ping, a request without a
/// session, or a session evicted by newer ones leaves nothing behind in the core's routing.
#[test]
fn resident_memory_is_flat_over_100000_client_ids() {
    let data = tempfile::tempdir().expect("temporary directory");
    let server = Server::start(&data.path().join("data"), &[]);
    client_ids(server.address, 1, WARM_UP_CLIENT_IDS);
    let before = server.rss_bytes();
    let started = Instant::now();
    client_ids(server.address, 1 + WARM_UP_CLIENT_IDS, CLIENT_IDS);
    let after = server.rss_bytes();
    let growth = after.saturating_sub(before);
    println!(
        "VmRSS {before} -> {after} bytes over {CLIENT_IDS} client ids ({:.1} bytes each) in \
         {:.1} s",
        growth as f64 / CLIENT_IDS as f64,
        started.elapsed().as_secs_f64()
    );
    assert!(
        growth < CLIENT_IDS_RSS_GROWTH_MAX,
        "VmRSS grew by {growth} bytes over {CLIENT_IDS} client ids ({before} -> {after})"
    );
    server.terminate();
}

/// The limit's worth of idle connections (half silent, half holding a partial frame) costs a
/// few MB, does not lock out a real client (it displaces the longest-idle connection), and is
/// closed after the idle timeout, while the registered client's quiet connection and a
/// connection that pings are kept.
#[test]
fn idle_connections_cost_little_time_out_and_do_not_lock_out_clients() {
    let data = tempfile::tempdir().expect("temporary directory");
    let timeout = IDLE_TIMEOUT_SECONDS.to_string();
    let server = Server::start(
        &data.path().join("data"),
        &["--idle-timeout-seconds", &timeout],
    );
    let before = server.rss_bytes();
    let partial = &ping(u128::MAX - 1)[..PARTIAL_FRAME_SIZE];
    let mut idle: Vec<TcpStream> = (0..CONNECTIONS_MAX)
        .map(|index| {
            let mut stream = connect(server.address);
            if index % 2 == 1 {
                stream.write_all(partial).expect("write a partial frame");
            }
            stream
        })
        .collect();

    // A real client at the limit: served.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let config = ClientConfig {
        request_timeout: Duration::from_secs(1),
        connect_timeout: SOCKET_TIMEOUT,
    };
    let client = runtime
        .block_on(Client::connect_with(server.address, 0, config))
        .expect("a client connects and registers with the limit's worth of idle connections open");
    let account = Account {
        id: 1,
        ledger: 1,
        code: 1,
        ..Account::default()
    };
    let results = runtime
        .block_on(client.create_accounts(&[account]))
        .expect("create_accounts");
    assert_eq!(results[0].status, CreateAccountStatus::Created);
    // Accepts are served in order: every idle connection was accepted before the client's.
    let open = server.rss_bytes();
    let growth = open.saturating_sub(before);
    println!(
        "VmRSS {before} -> {open} bytes with {CONNECTIONS_MAX} idle connections open ({:.0} \
         bytes each)",
        growth as f64 / CONNECTIONS_MAX as f64
    );
    assert!(
        growth < IDLE_CONNECTIONS_RSS_GROWTH_MAX,
        "VmRSS grew by {growth} bytes with {CONNECTIONS_MAX} idle connections ({before} -> {open})"
    );

    // A connection that pings is not idle; the silent ones are closed by the server.
    let pinger = Pinger::start(
        server.address,
        Duration::from_secs(2 * IDLE_TIMEOUT_SECONDS + 1),
    );
    let waited = Instant::now();
    for (index, stream) in idle.iter_mut().enumerate() {
        assert!(
            closed_by_server(stream),
            "idle connection {index} of {CONNECTIONS_MAX} was not closed within \
             {SOCKET_TIMEOUT:?} (idle timeout {IDLE_TIMEOUT_SECONDS} s)"
        );
    }
    println!(
        "all idle connections closed {:.1} s after the client was served",
        waited.elapsed().as_secs_f64()
    );
    pinger.finish();

    // The registered client's connection was quiet for longer than the timeout, and kept.
    let found = runtime
        .block_on(client.lookup_accounts(&[1]))
        .expect("lookup_accounts");
    assert_eq!(found.len(), 1);
    assert_eq!(
        client.stats().connections,
        1,
        "the registered client's connection was closed"
    );
    drop(client);
    drop(runtime);
    server.terminate();
}

// ------------------------------------------------------------------------------------------
// Client ids and connections.

/// `count` client ids from `first` on, each on its own connection, from `THREADS` threads: most
/// ping; one in `SESSION_EVERY` registers, and one sends a request without a session.
fn client_ids(address: SocketAddr, first: u64, count: u64) {
    thread::scope(|scope| {
        for thread in 0..THREADS {
            scope.spawn(move || {
                let mut index = thread;
                while index < count {
                    let client = u128::from(first + index);
                    match index % SESSION_EVERY {
                        0 => register(address, client),
                        1 => request_without_session(address, client),
                        _ => ping_round_trip(address, client),
                    }
                    index += THREADS;
                }
            });
        }
    });
}

/// Connect, one `ping_client`, the pong read back, close.
fn ping_round_trip(address: SocketAddr, client: u128) {
    let answer = round_trip(address, &ping(client), HEADER_SIZE);
    assert_eq!(command(&answer), WireCommand::PongClient as u8);
}

/// Connect, a register, its reply read back, close: a new session.
fn register(address: SocketAddr, client: u128) {
    let request = encode_request(
        &request_params(client, Operation::Register, 0, 0),
        &[0; 256],
    );
    // Register reply: a header and the 64-byte RegisterResult.
    let answer = round_trip(address, &request, HEADER_SIZE + 64);
    assert_eq!(command(&answer), WireCommand::Reply as u8);
}

/// Connect, a lookup from a client without a session, the eviction read back, close.
fn request_without_session(address: SocketAddr, client: u128) {
    let mut body = MultiBatchEncoder::new(16);
    body.push_batch(&1u128.to_le_bytes()).expect("one id");
    let params = request_params(client, Operation::LookupAccounts, 1, 1);
    let answer = round_trip(
        address,
        &encode_request(&params, &body.finish()),
        HEADER_SIZE,
    );
    assert_eq!(command(&answer), WireCommand::Eviction as u8);
}

fn request_params(client: u128, operation: Operation, session: u64, request: u32) -> RequestParams {
    RequestParams {
        cluster: 0,
        view: 0,
        release: RELEASE,
        parent: 0,
        client,
        session,
        timestamp: 0,
        request,
        operation: operation.as_u8(),
        previous_request_latency: 0,
    }
}

fn ping(client: u128) -> [u8; HEADER_SIZE] {
    encode_ping_client(&PingClientHeader {
        cluster: 0,
        view: 0,
        release: RELEASE,
        client,
        ping_timestamp_monotonic: 1,
        session: 0,
    })
}

/// Sends `message` on a new connection and reads `answer_size` bytes back.
fn round_trip(address: SocketAddr, message: &[u8], answer_size: usize) -> Vec<u8> {
    let mut stream = connect(address);
    stream.write_all(message).expect("write");
    let mut answer = vec![0; answer_size];
    stream.read_exact(&mut answer).expect("read the answer");
    answer
}

/// The command byte of a message whose header checksum is valid.
fn command(message: &[u8]) -> u8 {
    let header = Header::from_prefix(message).expect("a whole header");
    assert!(header.checksum_valid(), "a valid header checksum");
    header.command_byte()
}

fn connect(address: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&address, SOCKET_TIMEOUT).expect("connect to tally");
    stream
        .set_read_timeout(Some(SOCKET_TIMEOUT))
        .expect("read timeout");
    stream
        .set_write_timeout(Some(SOCKET_TIMEOUT))
        .expect("write timeout");
    stream
}

/// Whether the server closed `stream` (end of file or a reset) within `SOCKET_TIMEOUT`.
fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => panic!("the server sent something unasked on an idle connection"),
        Err(error) => error.kind() == ErrorKind::ConnectionReset,
    }
}

/// A connection that pings every 250 ms on a thread, and fails if it ever goes unanswered.
struct Pinger {
    thread: JoinHandle<()>,
}

impl Pinger {
    fn start(address: SocketAddr, duration: Duration) -> Pinger {
        let thread = thread::spawn(move || {
            let mut stream = connect(address);
            let deadline = Instant::now() + duration;
            let mut pings = 0;
            while Instant::now() < deadline {
                stream.write_all(&ping(u128::MAX)).expect("ping");
                let mut pong = [0u8; HEADER_SIZE];
                stream
                    .read_exact(&mut pong)
                    .unwrap_or_else(|error| panic!("no pong to ping {pings}: {error}"));
                assert_eq!(command(&pong), WireCommand::PongClient as u8);
                pings += 1;
                thread::sleep(Duration::from_millis(250));
            }
        });
        Pinger { thread }
    }

    fn finish(self) {
        if let Err(panic) = self.thread.join() {
            std::panic::resume_unwind(panic);
        }
    }
}

// ------------------------------------------------------------------------------------------
// The server.

/// A `tally start` child process; killed on drop unless it was stopped, and its log printed
/// if the test failed.
struct Server {
    child: Child,
    address: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
    readers: Vec<JoinHandle<()>>,
    stopped: bool,
}

impl Server {
    /// Starts a server on a free port with `args` added, formatting `data`, and waits for its
    /// `listening on` line.
    fn start(data: &Path, args: &[&str]) -> Server {
        let mut child = Command::new(TALLY)
            .arg("start")
            .args(["--graphql-address", "off", "--auto-peering-address", "off"])
            .arg("--data-dir")
            .arg(data)
            .args(["--addresses", "127.0.0.1:0", "--segment-mib", "8"])
            .args(args)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn tally start");
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = BufReader::new(child.stderr.take().expect("stderr piped"));
        let readers = vec![thread::spawn({
            let log = log.clone();
            move || {
                for line in stderr.lines().map_while(Result::ok) {
                    log.lock().unwrap().push(line);
                }
            }
        })];
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout piped"));
        let mut line = String::new();
        let _ = stdout.read_line(&mut line);
        let mut server = Server {
            child,
            address: SocketAddr::from(([127, 0, 0, 1], 0)),
            log,
            readers,
            stopped: false,
        };
        server.address = line
            .trim()
            .strip_prefix("listening on ")
            .and_then(|address| address.parse().ok())
            .unwrap_or_else(|| panic!("tally start printed {line:?}, not `listening on ADDR`"));
        server
    }

    /// VmRSS of the server process, from `/proc/PID/status`.
    fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("read /proc/PID/status");
        let kib: u64 = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("a VmRSS line");
        kib * 1024
    }

    /// SIGTERM: the server must drain, checkpoint and exit 0.
    fn terminate(mut self) {
        let pid = i32::try_from(self.child.id()).expect("pid");
        // SAFETY: signals our own child, which has not been waited for (so the pid is its own).
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0, "kill -TERM");
        let deadline = Instant::now() + SOCKET_TIMEOUT;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for tally") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "tally did not stop after SIGTERM"
            );
            thread::sleep(Duration::from_millis(10));
        };
        self.stopped = true;
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        assert!(
            status.success(),
            "tally exited with {status} after SIGTERM:\n{}",
            self.log.lock().unwrap().join("\n")
        );
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if !self.stopped {
            let _ = self.child.kill();
            let _ = self.child.wait();
            for reader in self.readers.drain(..) {
                let _ = reader.join();
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
