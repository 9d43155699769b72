//! `tally start`: recover, start the core thread, serve connections until SIGTERM or SIGINT,
//! then let the core drain, checkpoint and stop.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;

use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, oneshot};

use crate::core::{Core, CoreCommand};
use crate::{net, recovery};

/// Commands waiting for the core; a full queue makes connections wait (backpressure).
pub const SUBMIT_QUEUE_MAX: usize = 4096;

pub fn start(
    directory: &Path,
    addresses: SocketAddr,
    cluster: u128,
    segment_size_bytes: u64,
    transfers_max: u64,
) -> Result<(), String> {
    if !recovery::is_formatted(directory) {
        recovery::format(directory, cluster, segment_size_bytes)?;
        tracing::info!(directory = %directory.display(), "formatted");
    }
    let recovery::Recovered {
        journal,
        mut state,
        replayed_bytes,
    } = recovery::open(directory)?;
    let transfers_more = transfers_max.saturating_sub(state.ledger.transfer_count());
    if transfers_more > 0 {
        let transfers_more =
            usize::try_from(transfers_more).map_err(|_| "--transfers-max too large")?;
        state.reserve_transfers(&crate::storage::JournalBytes(&journal), transfers_more);
    }
    if state.cluster != cluster {
        return Err(format!(
            "data directory belongs to cluster {}, not {cluster}",
            state.cluster
        ));
    }
    let record_bytes_max =
        recovery::journal_options(journal.segment_size_bytes()).body_size_bytes_max as usize;
    let (submit, queue) = mpsc::channel(SUBMIT_QUEUE_MAX);
    let (stopped, core_stopped) = oneshot::channel();
    let core = std::thread::Builder::new()
        .name("tally-core".into())
        .spawn(move || {
            let result = Core::new(state, journal, record_bytes_max, replayed_bytes).run(queue);
            let _ = stopped.send(());
            result
        })
        .map_err(|error| format!("core thread: {error}"))?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|error| format!("runtime: {error}"))?;
    runtime.block_on(serve_until_stopped(
        addresses,
        cluster,
        submit,
        core_stopped,
    ))?;
    runtime.shutdown_background();
    core.join()
        .map_err(|_| "core thread panicked".to_string())?
}

async fn serve_until_stopped(
    addresses: SocketAddr,
    cluster: u128,
    submit: mpsc::Sender<CoreCommand>,
    core_stopped: oneshot::Receiver<()>,
) -> Result<(), String> {
    let listener = TcpListener::bind(addresses)
        .await
        .map_err(|error| format!("bind {addresses}: {error}"))?;
    let local = listener.local_addr().map_err(|error| error.to_string())?;
    // The handlers come first: a SIGTERM sent as soon as the line below appears must drain.
    let mut terminate = signal(SignalKind::terminate()).map_err(|error| error.to_string())?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(|error| error.to_string())?;
    // Tests and scripts wait for this line (the port may have been 0).
    println!("listening on {local}");
    let _ = std::io::stdout().flush();
    let serving = net::serve(listener, cluster, submit.clone());
    tokio::select! {
        () = serving => {}
        _ = terminate.recv() => tracing::info!("SIGTERM: draining"),
        _ = interrupt.recv() => tracing::info!("SIGINT: draining"),
        _ = core_stopped => return Err("the core stopped".into()),
    }
    // Ask the core to finish what it has, checkpoint and stop.
    let _ = submit.send(CoreCommand::Shutdown).await;
    Ok(())
}
