//! The TigerBeetle protocol listener: one task per connection splits the byte stream into
//! messages (`FrameReader`, one fixed 1 MiB buffer), drops what fails the header rules, and
//! hands requests and pings to the core through the bounded submit queue. A frame error
//! (checksum, size, cluster) closes the connection, as TigerBeetle does.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use tally_wire::{FrameReader, ParsedHeader};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use tally_core::{Connection, Submission};

/// Most connections served at once; beyond, new connections are closed at once.
pub(crate) const CONNECTIONS_MAX: usize = 1024;
/// Most messages waiting to be written to one connection.
pub(crate) const OUTBOX_MAX: usize = 64;

/// Accepts connections on `listener` until the future is dropped, one task each (beyond
/// `CONNECTIONS_MAX` a new connection is closed at once), and forwards their requests and pings
/// to the core through `core`, the submit queue. A frame error (checksum, size, a `cluster` other
/// than this one) closes its connection; a failed accept is logged and skipped.
pub(crate) async fn serve(listener: TcpListener, cluster: u128, core: mpsc::Sender<Submission>) {
    let connection_ids = AtomicU64::new(1);
    let open = Arc::new(AtomicUsize::new(0));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "accept failed");
                continue;
            }
        };
        if open.load(Ordering::Relaxed) >= CONNECTIONS_MAX {
            tracing::warn!(%peer, "connection limit reached; closing");
            continue;
        }
        let _ = stream.set_nodelay(true);
        let id = connection_ids.fetch_add(1, Ordering::Relaxed);
        let core = core.clone();
        let open = open.clone();
        open.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            if let Err(reason) = connection_serve(stream, id, cluster, core).await {
                tracing::debug!(id, %peer, reason, "connection closed");
            }
            open.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

async fn connection_serve(
    stream: TcpStream,
    id: u64,
    cluster: u128,
    core: mpsc::Sender<Submission>,
) -> Result<(), String> {
    let (mut reader, mut writer) = stream.into_split();
    let (outbox, mut outbox_receiver) = mpsc::channel::<Vec<u8>>(OUTBOX_MAX);
    let writer_task = tokio::spawn(async move {
        while let Some(message) = outbox_receiver.recv().await {
            if writer.write_all(&message).await.is_err() {
                break;
            }
        }
    });
    let connection = Connection::new(id, outbox);
    let mut frames = FrameReader::new(cluster);
    let result = loop {
        let read = match reader.read(frames.spare_capacity()).await {
            Ok(0) => break Ok(()),
            Ok(read) => read,
            Err(error) => break Err(error.to_string()),
        };
        frames.advance(read);
        let forwarded = forward_messages(&mut frames, &connection, &core).await;
        if let Err(reason) = forwarded {
            break Err(reason);
        }
    };
    drop(connection);
    writer_task.abort();
    result
}

async fn forward_messages(
    frames: &mut FrameReader,
    connection: &Connection,
    core: &mpsc::Sender<Submission>,
) -> Result<(), String> {
    loop {
        let message = match frames.next_message() {
            Ok(Some(message)) => message,
            Ok(None) => return Ok(()),
            Err(error) => return Err(format!("frame error: {error:?}")),
        };
        // Messages that fail the validity rules are dropped silently (wire spec §2.6).
        let forward = matches!(
            message.header.parse(),
            Ok(ParsedHeader::Request(_)) | Ok(ParsedHeader::PingClient(_))
        );
        if !forward {
            continue;
        }
        let command = Submission::Native {
            message: message.to_vec(),
            connection: connection.clone(),
        };
        core.send(command)
            .await
            .map_err(|_| "core stopped".to_string())?;
    }
}
