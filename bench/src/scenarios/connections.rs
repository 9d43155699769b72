//! `connections`: what an idle connection and a client id cost a `tally start` in resident
//! memory (VmRSS of the server process, from `/proc/PID/status`).
//!
//! 1. **Warm-up**: W client ids (2,000 by default) each connect, send one `ping_client`, read the
//!    pong and close, so that the runtime's and the allocator's pools exist before anything is
//!    measured. RSS, then a 300 ms settle, is the baseline.
//! 2. **Client ids**: M new client ids (100,000 by default), each on its own connection: connect,
//!    one `ping_client`, read the pong, close (the reproduction of issue 11), from T threads;
//!    RSS every tenth of the way. This comes before the phases that hold many connections: the
//!    memory those free stays with the allocator and would hide growth here.
//! 3. **Idle connections**: N connections (1,000 by default, under the server's limit of 1,024)
//!    that send nothing. One more connection does a ping round trip (accepts are served in
//!    order, so every idle connection was accepted by then); after a 300 ms settle, RSS. Then
//!    all N close; after a 500 ms settle, RSS again: what closed connections left behind.
//! 4. **Partial frames**: N connections that each send the first 100 bytes of a header (a
//!    slowloris frame) and nothing more; RSS as in 3, then they close.
//!
//! Per idle connection: (RSS with the N connections open − RSS before) / N; per client id:
//! (RSS after the M ids − RSS before them) / M. The server runs with its default idle timeout
//! (60 s): no connection times out while it is measured. The figures depend on the allocator's
//! state (glibc malloc here), so `docs/benchmarks.md` quotes medians of several runs.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tally_wire::{encode_ping_client, Command, Header, PingClientHeader, HEADER_SIZE, RELEASE};

use crate::harness::data_dir::DataDir;
use crate::harness::options::ServerArgs;
use crate::harness::report::{self, round, thousands, Progress, Stamp, Table};
use crate::harness::tally::{self, Server, Tally};

const DEFAULT_WARM_UP_CLIENT_IDS: u64 = 2_000;
const DEFAULT_IDLE_CONNECTIONS: usize = 1_000;
const DEFAULT_CLIENT_IDS: u64 = 100_000;
const DEFAULT_THREADS: usize = 4;
const SMOKE_WARM_UP_CLIENT_IDS: u64 = 50;
const SMOKE_IDLE_CONNECTIONS: usize = 20;
const SMOKE_CLIENT_IDS: u64 = 200;
/// The server's connection limit: the idle connections and one probe must fit under it, or
/// the probe would displace one of them.
const CONNECTIONS_MAX: usize = 1_024;
/// Bytes of a header a partial-frame connection sends: never a whole header.
const PARTIAL_FRAME_SIZE: usize = 100;
/// How long a socket operation may block before the scenario gives up.
const SOCKET_TIMEOUT: Duration = Duration::from_secs(10);
/// Client ids of the warm-up, the probes and the measured phase do not overlap.
const CLIENT_ID_BASE: u128 = 1 << 64;

/// `connections`'s command line.
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Idle connections held open at once (at most 1,023) [default: 1,000; 20 with --smoke]
    #[arg(long)]
    idle_connections: Option<usize>,
    /// New client ids, one connection and one ping each [default: 100,000; 200 with --smoke]
    #[arg(long)]
    client_ids: Option<u64>,
    /// Client ids pinged before anything is measured [default: 2,000; 50 with --smoke]
    #[arg(long)]
    warm_up_client_ids: Option<u64>,
    /// Threads connecting and pinging at once
    #[arg(long, default_value_t = DEFAULT_THREADS)]
    threads: usize,
    #[command(flatten)]
    server: ServerArgs,
}

/// Runs the scenario: prints the table, writes `connections.json`.
pub(crate) fn run(args: Args) {
    let smoke = args.server.smoke;
    let idle_connections = args.idle_connections.unwrap_or(if smoke {
        SMOKE_IDLE_CONNECTIONS
    } else {
        DEFAULT_IDLE_CONNECTIONS
    });
    assert!(
        (1..CONNECTIONS_MAX).contains(&idle_connections),
        "--idle-connections must be 1 to {}",
        CONNECTIONS_MAX - 1
    );
    let client_ids = args
        .client_ids
        .unwrap_or(if smoke {
            SMOKE_CLIENT_IDS
        } else {
            DEFAULT_CLIENT_IDS
        })
        .max(1);
    let warm_up = args.warm_up_client_ids.unwrap_or(if smoke {
        SMOKE_WARM_UP_CLIENT_IDS
    } else {
        DEFAULT_WARM_UP_CLIENT_IDS
    });
    let threads = args.threads.max(1);

    let stamp = Stamp::now();
    let tally = Tally::new(&args.server);
    let data = DataDir::new(&args.server, "connections");
    eprintln!("[connections] tally {}", tally.binary.display());
    let server = tally.start(&data.path);
    let rss = || server.process.memory().rss_bytes;
    let mut next_id = CLIENT_ID_BASE;

    // 1. Warm-up.
    ping_client_ids(&server, next_id, warm_up, threads, &mut |_, _| {});
    next_id += u128::from(warm_up);
    settle(Duration::from_millis(300));
    let rss_start = rss();

    // 2. Client ids.
    let rss_ids_start = rss_start;
    let mut samples = vec![(0u64, rss_ids_start)];
    let started = Instant::now();
    let mut progress = Progress::new("connections");
    let step = (client_ids / 10).max(1);
    let mut sample_next = step;
    ping_client_ids(&server, next_id, client_ids, threads, &mut |done, rss| {
        if done >= sample_next && done < client_ids {
            samples.push((done, rss));
            sample_next = (done / step + 1) * step;
        }
        progress.update(done, client_ids, || format!("RSS {} MiB", rss >> 20));
    });
    let ids_seconds = started.elapsed().as_secs_f64();
    progress.finish(&format!(
        "{} client ids in {ids_seconds:.1} s",
        thousands(client_ids)
    ));
    settle(Duration::from_millis(300));
    let rss_ids_end = rss();
    samples.push((client_ids, rss_ids_end));
    next_id += u128::from(client_ids);

    // 3. Idle connections, then closed.
    let rss_connections_start = rss_ids_end;
    let (rss_idle, rss_idle_closed) =
        hold_connections(&server, idle_connections, &[], &mut next_id);
    // 4. Partial frames, then closed.
    let partial = &ping(next_id)[..PARTIAL_FRAME_SIZE];
    let (rss_partial, rss_partial_closed) =
        hold_connections(&server, idle_connections, partial, &mut next_id);

    let (_, lines) = server.process.terminate();
    let warnings = tally::warnings(&lines);

    let per = |after: u64, before: u64, count: u64| {
        round((after as f64 - before as f64) / count as f64, 1)
    };
    let connections = idle_connections as u64;
    let per_idle = per(rss_idle, rss_connections_start, connections);
    let per_idle_closed = per(rss_idle_closed, rss_connections_start, connections);
    let per_partial = per(rss_partial, rss_idle_closed, connections);
    let per_partial_closed = per(rss_partial_closed, rss_idle_closed, connections);
    let per_id = per(rss_ids_end, rss_ids_start, client_ids);

    let mib = |bytes: u64| format!("{:.1}", bytes as f64 / f64::from(1 << 20));
    let mut table = Table::new(&[
        "phase",
        "count",
        "RSS before MiB",
        "RSS after MiB",
        "B each",
    ]);
    let mut row = |phase: &str, count: u64, before: u64, after: u64, each: f64| {
        table.row(vec![
            phase.into(),
            thousands(count),
            mib(before),
            mib(after),
            format!("{each:.0}"),
        ]);
    };
    row(
        "client ids (ping each)",
        client_ids,
        rss_ids_start,
        rss_ids_end,
        per_id,
    );
    row(
        "idle connections, open",
        connections,
        rss_connections_start,
        rss_idle,
        per_idle,
    );
    row(
        "idle connections, closed",
        connections,
        rss_connections_start,
        rss_idle_closed,
        per_idle_closed,
    );
    row(
        "partial frames, open",
        connections,
        rss_idle_closed,
        rss_partial,
        per_partial,
    );
    row(
        "partial frames, closed",
        connections,
        rss_idle_closed,
        rss_partial_closed,
        per_partial_closed,
    );
    print!("{}", table.render());
    println!(
        "\nRSS along the client ids (MiB): {}",
        samples
            .iter()
            .map(|(done, rss)| format!("{}: {}", thousands(*done), mib(*rss)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "{} client ids in {ids_seconds:.1} s from {threads} threads.",
        thousands(client_ids)
    );
    tally::print_warnings(&warnings);

    let params = json!({
        "idle_connections": idle_connections,
        "client_ids": client_ids,
        "warm_up_client_ids": warm_up,
        "threads": threads,
        "partial_frame_bytes": PARTIAL_FRAME_SIZE,
        "smoke": smoke,
        "tally": tally.binary.display().to_string(),
    });
    let results = json!({
        "rss_bytes_start": rss_start,
        "rss_bytes_idle_connections_open": rss_idle,
        "rss_bytes_idle_connections_closed": rss_idle_closed,
        "rss_bytes_partial_frames_open": rss_partial,
        "rss_bytes_partial_frames_closed": rss_partial_closed,
        "rss_bytes_client_ids_start": rss_ids_start,
        "rss_bytes_client_ids_end": rss_ids_end,
        "rss_bytes_per_idle_connection": per_idle,
        "rss_bytes_per_idle_connection_after_close": per_idle_closed,
        "rss_bytes_per_partial_frame_connection": per_partial,
        "rss_bytes_per_partial_frame_connection_after_close": per_partial_closed,
        "rss_bytes_per_client_id": per_id,
        "rss_bytes_by_client_ids": samples
            .iter()
            .map(|(done, rss)| json!([done, rss]))
            .collect::<Vec<Value>>(),
        "client_ids_seconds": round(ids_seconds, 3),
        "server_warnings": warnings,
    });
    let path = report::write_json("connections", &stamp, params, results);
    eprintln!("[connections] wrote {}", path.display());
}

/// Opens `count` connections that each send `prefix` (possibly nothing) and then wait; returns
/// the server's RSS while they are open and after they closed. The first value `next_id`
/// names is a probe's client id.
fn hold_connections(
    server: &Server,
    count: usize,
    prefix: &[u8],
    next_id: &mut u128,
) -> (u64, u64) {
    let mut streams = Vec::with_capacity(count);
    for _ in 0..count {
        let mut stream = connect(server.address);
        if !prefix.is_empty() {
            stream.write_all(prefix).expect("write a partial frame");
        }
        streams.push(stream);
    }
    // Accepts are served in order: once a later connection is answered, every one of these was
    // accepted and its task has run.
    ping_round_trip(server.address, *next_id);
    *next_id += 1;
    settle(Duration::from_millis(300));
    let rss_open = server.process.memory().rss_bytes;
    drop(streams);
    ping_round_trip(server.address, *next_id);
    *next_id += 1;
    settle(Duration::from_millis(500));
    (rss_open, server.process.memory().rss_bytes)
}

/// `count` client ids from `first` on, each on its own connection: connect, ping, read the
/// pong, close; `threads` at once. `sampled(done, rss)` runs on this thread every 1,000 ids.
fn ping_client_ids(
    server: &Server,
    first: u128,
    count: u64,
    threads: usize,
    sampled: &mut dyn FnMut(u64, u64),
) {
    let done = std::sync::atomic::AtomicU64::new(0);
    let address = server.address;
    std::thread::scope(|scope| {
        for thread in 0..threads as u64 {
            let done = &done;
            scope.spawn(move || {
                let mut index = thread;
                while index < count {
                    ping_round_trip(address, first + u128::from(index));
                    done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    index += threads as u64;
                }
            });
        }
        let mut reported = 0;
        loop {
            let now = done.load(std::sync::atomic::Ordering::Relaxed);
            if now / 1_000 > reported / 1_000 || now == count {
                sampled(now, server.process.memory().rss_bytes);
                reported = now;
            }
            if now == count {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    });
}

/// One connection: a `ping_client` from `client`, the pong read back, closed.
fn ping_round_trip(address: SocketAddr, client: u128) {
    let mut stream = connect(address);
    stream.write_all(&ping(client)).expect("write a ping");
    let mut pong = [0u8; HEADER_SIZE];
    stream.read_exact(&mut pong).expect("read the pong");
    let header = Header::from_bytes(pong);
    assert!(header.checksum_valid(), "a pong with a valid checksum");
    assert_eq!(header.command_byte(), Command::PongClient as u8, "a pong");
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

fn connect(address: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&address, SOCKET_TIMEOUT).expect("connect to tally");
    stream
        .set_read_timeout(Some(SOCKET_TIMEOUT))
        .expect("read timeout");
    stream
        .set_write_timeout(Some(SOCKET_TIMEOUT))
        .expect("write timeout");
    let _ = stream.set_nodelay(true);
    stream
}

/// Lets the server's tasks run and the allocator settle before RSS is read.
fn settle(duration: Duration) {
    std::thread::sleep(duration);
}
