//! The TigerBeetle protocol listener: one task per connection splits the byte stream into
//! messages (`FrameReader`), drops what fails the header rules, and hands requests and pings to
//! the core through the bounded submit queue. A frame error (checksum, size, cluster) closes
//! the connection, as TigerBeetle does.
//!
//! A connection costs what it uses. Its frame buffer exists only while part of a message is
//! buffered, and grows to that message. A connection that sends no request or ping for the
//! idle timeout is closed unless the core routes a registered client's replies to it, and at
//! the connection limit a new connection displaces the longest-idle such one (`registry`).

mod registry;

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tally_metrics::{NativeMetrics, Stage, StageHistograms};
use tally_wire::{FrameError, FrameReader, Operation, ParsedHeader};
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::Instrument;

use tally_core::{Connection, Outbound, Submission};

use self::registry::{Registry, Slot};

/// Most connections served at once; beyond, a new connection displaces the longest-idle one
/// that serves no registered client.
pub(crate) const CONNECTIONS_MAX: usize = 1024;
/// Most messages waiting to be written to one connection.
pub(crate) const OUTBOX_MAX: usize = 64;
/// The pause after a failed accept: when the process is out of file descriptors the pending
/// connection stays queued and accept fails again at once, so retrying at once would spin.
const ACCEPT_RETRY_DELAY: Duration = Duration::from_millis(10);

/// How the listener treats its connections.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ListenerOptions {
    /// Messages of other clusters close the connection.
    pub(crate) cluster: u128,
    /// How long a connection no registered client is routed to may send no request or ping.
    pub(crate) idle_timeout: Duration,
}

/// Why a connection closed.
#[derive(Debug, thiserror::Error)]
enum Closed {
    /// The peer closed its side.
    #[error("closed by the peer")]
    Peer,
    /// Reading failed (a reset, say).
    #[error("read failed: {0}")]
    Read(std::io::Error),
    /// The stream broke a framing rule (spec §1.3).
    #[error("frame error: {0}")]
    Frame(FrameError),
    /// No request or ping within the idle timeout, and no registered client routed here.
    #[error("idle timeout")]
    Idle,
    /// A newer connection took this one's place at the connection limit.
    #[error("displaced at the connection limit")]
    Displaced,
    /// The core no longer takes submissions (the server is stopping).
    #[error("core stopped")]
    CoreStopped,
}

/// Accepts connections on `listener` until the future is dropped, one task each, and forwards
/// their requests and pings to the core through `core`, the submit queue. Beyond
/// `CONNECTIONS_MAX` a new connection displaces the longest-idle unrouted one (or, if every
/// connection serves a registered client, is closed at once). A failed accept is logged and
/// retried after a pause.
pub(crate) async fn serve(
    listener: TcpListener,
    options: ListenerOptions,
    core: mpsc::Sender<Submission>,
    metrics: &NativeMetrics,
) {
    let registry = Arc::new(Registry::new(CONNECTIONS_MAX));
    let counters = Arc::new(Counters::new(metrics));
    let mut connection_id: u64 = 0;
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(ACCEPT_RETRY_DELAY).await;
                continue;
            }
        };
        connection_id += 1;
        let id = connection_id;
        let (outbox, outbox_receiver) = mpsc::channel::<Outbound>(OUTBOX_MAX);
        let connection = Connection::new(id, outbox);
        let Some(slot) = registry.admit(id, connection.routed_clients.clone()) else {
            tracing::warn!(%peer, "connection limit reached, every connection serves a registered client; closing");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let core = core.clone();
        let registered = Registered {
            registry: registry.clone(),
            id,
            connections: counters.connections.clone(),
        };
        registered.connections.inc();
        let counters = counters.clone();
        tokio::spawn(async move {
            let closed = connection_serve(
                stream,
                outbox_receiver,
                connection,
                &slot,
                options,
                Forward {
                    core: &core,
                    counters: &counters,
                },
            )
            .await;
            drop(registered);
            tracing::debug!(id, %peer, reason = %closed, "connection closed");
        });
    }
}

/// A connection's place in the registry, given up when its task ends, however it ends.
struct Registered {
    registry: Arc<Registry>,
    id: u64,
    /// `tally_native_connections`, decremented with the place.
    connections: Gauge,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.registry.remove(self.id);
        self.connections.dec();
    }
}

/// The listener's metrics, with each operation's request counter looked up once: counting a
/// request is one atomic add, no lock.
struct Counters {
    connections: Gauge,
    /// By wire value; the values of operations Tally does not execute (and of none) share the
    /// `unsupported` counter, so that a scrape lists only the series that can move.
    requests: Vec<Counter>,
    /// Receive, decode and reply (`tally_core_stage_duration_seconds`).
    stages: StageHistograms,
}

impl Counters {
    fn new(metrics: &NativeMetrics) -> Counters {
        let unsupported = metrics.requests("unsupported");
        let requests = (0..=u8::MAX)
            .map(|value| match Operation::from_u8(value) {
                Some(operation) if operation.is_supported() => metrics.requests(operation.name()),
                Some(_) | None => unsupported.clone(),
            })
            .collect();
        Counters {
            connections: metrics.connections.clone(),
            requests,
            stages: metrics.stages.clone(),
        }
    }
}

/// Where a connection's messages go: the core's submit queue, counted.
#[derive(Clone, Copy)]
struct Forward<'a> {
    core: &'a mpsc::Sender<Submission>,
    counters: &'a Counters,
}

/// A new native request id: unique within the process, in the order requests arrived.
fn request_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// Serves one connection until it closes; returns why it did.
async fn connection_serve(
    stream: TcpStream,
    mut outbox_receiver: mpsc::Receiver<Outbound>,
    connection: Connection,
    slot: &Slot,
    options: ListenerOptions,
    forward: Forward<'_>,
) -> Closed {
    let (mut reader, mut writer) = stream.into_split();
    let stages = forward.counters.stages.clone();
    let writer_task = tokio::spawn(async move {
        while let Some(outbound) = outbox_receiver.recv().await {
            if writer.write_all(&outbound.message).await.is_err() {
                break;
            }
            if let Some(durable) = outbound.durable {
                stages.observe(Stage::Reply, durable.elapsed());
            }
        }
    });
    let closed = connection_read(&mut reader, &connection, slot, options, forward).await;
    drop(connection);
    // Ends the receiver too, which tells the core the connection is gone.
    writer_task.abort();
    closed
}

/// Reads and forwards messages until the connection must close.
async fn connection_read(
    reader: &mut OwnedReadHalf,
    connection: &Connection,
    slot: &Slot,
    options: ListenerOptions,
    forward: Forward<'_>,
) -> Closed {
    let mut frames = FrameReader::new(options.cluster);
    let idle = tokio::time::sleep(options.idle_timeout);
    tokio::pin!(idle);
    // When the first byte of the message being received arrived (the receive stage).
    let mut message_started: Option<std::time::Instant> = None;
    loop {
        // A connection waiting with nothing buffered holds no buffer: the buffer is taken only
        // once the socket is readable.
        frames.release();
        tokio::select! {
            readable = reader.readable() => {
                if let Err(error) = readable {
                    return Closed::Read(error);
                }
            }
            () = slot.displaced() => return Closed::Displaced,
            () = &mut idle => {
                if !slot.routed() {
                    return Closed::Idle;
                }
                // A registered client's connection may be quiet: look again later.
                idle.as_mut().reset(Instant::now() + options.idle_timeout);
                continue;
            }
        }
        if frames.buffered_size() == 0 {
            message_started = None;
        }
        let read_started = std::time::Instant::now();
        let spare = frames.spare_capacity();
        assert!(!spare.is_empty(), "frames are drained after every read");
        let read = match read_ready(reader, spare) {
            Some(Ok(0)) => return Closed::Peer,
            Some(Ok(read)) => read,
            // The readiness was stale: wait again.
            None => continue,
            Some(Err(error)) => return Closed::Read(error),
        };
        frames.advance(read);
        let started = *message_started.get_or_insert(read_started);
        let received = std::time::Instant::now();
        match forward_messages(&mut frames, connection, forward, started, received).await {
            Ok(0) => {}
            Ok(_forwarded) => {
                // A message still incomplete after one that ended here began in this read.
                message_started = Some(received);
                slot.touch();
                idle.as_mut().reset(Instant::now() + options.idle_timeout);
            }
            Err(closed) => return closed,
        }
    }
}

/// Reads what a socket reported readable holds now, without waiting: `None` if it holds
/// nothing after all. Through `AsyncRead`, which clears the readiness after a read that leaves
/// room in `spare` (the socket is drained then), so that a request costs one read call; `try_read`
/// left the readiness set, and every request cost a second read that found nothing.
fn read_ready(reader: &mut OwnedReadHalf, spare: &mut [u8]) -> Option<std::io::Result<usize>> {
    let mut buffer = ReadBuf::new(spare);
    let waker = std::task::Waker::noop();
    match Pin::new(reader).poll_read(&mut Context::from_waker(waker), &mut buffer) {
        Poll::Ready(Ok(())) => Some(Ok(buffer.filled().len())),
        Poll::Ready(Err(error)) => Some(Err(error)),
        Poll::Pending => None,
    }
}

/// Forwards the whole requests and pings buffered in `frames`; returns how many. The first
/// message's first byte arrived at `started`, and the last read ended at `received`.
async fn forward_messages(
    frames: &mut FrameReader,
    connection: &Connection,
    forward: Forward<'_>,
    mut started: std::time::Instant,
    received: std::time::Instant,
) -> Result<usize, Closed> {
    let mut forwarded = 0;
    loop {
        let decode_started = std::time::Instant::now();
        let message = match frames.next_message() {
            Ok(Some(message)) => message,
            Ok(None) => return Ok(forwarded),
            Err(error) => return Err(Closed::Frame(error)),
        };
        // Messages that fail the validity rules are dropped silently (wire spec §2.6).
        // A request gets a span with its id (at debug: a span per request at info would cost
        // the hot path an allocation for its formatted fields).
        let is_request;
        let span = match message.header.parse() {
            Ok(ParsedHeader::Request(request)) => {
                is_request = true;
                forward.counters.requests[usize::from(request.operation)].inc();
                tracing::debug_span!(
                    "native_request",
                    request_id = request_id(),
                    connection = connection.id,
                    client = request.client,
                    request = request.request,
                    operation = request.operation,
                )
            }
            Ok(ParsedHeader::PingClient(_)) => {
                is_request = false;
                tracing::Span::none()
            }
            Ok(_) | Err(_) => continue,
        };
        let message = message.to_vec();
        let queued = std::time::Instant::now();
        if is_request {
            let stages = &forward.counters.stages;
            stages.observe(Stage::Receive, received.saturating_duration_since(started));
            stages.observe(
                Stage::Decode,
                queued.saturating_duration_since(decode_started),
            );
        }
        // A later message in the same buffer arrived with the last read.
        started = received;
        let command = Submission::Native {
            message,
            connection: connection.clone(),
            queued,
        };
        async {
            tracing::debug!("forwarded to the core");
            forward.core.send(command).await
        }
        .instrument(span)
        .await
        .map_err(|_| Closed::CoreStopped)?;
        forwarded += 1;
    }
}
