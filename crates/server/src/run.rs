//! `tally start`: recover, start the core thread, serve connections until SIGTERM or SIGINT,
//! then let the core drain, checkpoint and stop.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tally_core::{Core, CoreError, CoreOptions, OpenOptions, RecoveryError, Submission};
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, oneshot};

use crate::net;

/// Commands waiting for the core; a full queue makes connections wait (backpressure).
pub(crate) const SUBMIT_QUEUE_MAX: usize = 4096;

/// What `tally start` was asked for.
#[derive(Clone, Debug)]
pub struct StartOptions {
    /// The data directory (formatted if missing).
    pub directory: PathBuf,
    /// The native protocol's address.
    pub addresses: SocketAddr,
    /// The cluster id.
    pub cluster: u128,
    /// How long a native connection that serves no registered client may send no request or
    /// ping before it is closed.
    pub idle_timeout: Duration,
    /// Segment size when formatting.
    pub segment_size_bytes: u64,
    /// Transfers to size the index for at start-up (0: grow as needed).
    pub transfers_max: u64,
    /// Cut a damaged tail that the log cannot prove unacknowledged.
    pub cut_unproven_tail: bool,
    /// The Admin API's address (`None`: not served).
    pub graphql_address: Option<SocketAddr>,
    /// Answer GraphQL introspection queries.
    pub graphql_introspection: bool,
    /// Require Rafiki's request signature on the Admin API (`None`: unsigned requests served).
    pub graphql_signature: Option<tally_graphql::SignatureOptions>,
    /// The auto-peering endpoint's address (`None`: not served).
    pub auto_peering_address: Option<SocketAddr>,
    /// This instance's ILP address, connector URL and name, for peering.
    pub auto_peering: tally_graphql::AutoPeeringOptions,
    /// Open Payments URL, expiries and exchange rates for the payment mutations.
    pub payments: tally_graphql::PaymentsOptions,
    /// Deliver webhook events (`None`: events are only kept and listed).
    pub webhooks: Option<tally_graphql::WebhookOptions>,
}

/// Why `tally start` stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Formatting or recovery failed.
    #[error(transparent)]
    Recovery(#[from] RecoveryError),
    /// The data directory was formatted for another cluster.
    #[error("{directory}: data directory belongs to cluster {found}, not {cluster}")]
    Cluster {
        /// The data directory.
        directory: PathBuf,
        /// Its cluster.
        found: u128,
        /// The cluster asked for.
        cluster: u128,
    },
    /// A flag's value cannot be used (a rates file that does not read, ...).
    #[error("{0}")]
    Config(String),
    /// `--transfers-max` does not fit this machine's memory addressing.
    #[error("--transfers-max {0} is too large")]
    TransfersMax(u64),
    /// A thread or runtime could not be started.
    #[error("{what}: {source}")]
    Spawn {
        /// Which.
        what: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// The listener could not bind.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// A listener address is neither an address nor `off`.
    #[error("listener address {0}: not HOST:PORT or off")]
    Address(String),
    /// A signal handler could not be installed.
    #[error("signal handler: {0}")]
    Signal(std::io::Error),
    /// The core stopped with an error.
    #[error(transparent)]
    Core(#[from] CoreError),
    /// The core stopped while the listener was serving.
    #[error("the core stopped")]
    CoreStopped,
    /// The core thread panicked.
    #[error("the core thread panicked")]
    CorePanicked,
}

/// Recovers and serves until SIGTERM or SIGINT.
pub fn start(options: &StartOptions) -> Result<(), StartError> {
    let directory = options.directory.as_path();
    if !tally_core::is_formatted(directory) {
        tally_core::format(directory, options.cluster, options.segment_size_bytes)?;
        tracing::info!(directory = %directory.display(), "formatted");
    }
    let open = OpenOptions {
        cut_unproven_tail: options.cut_unproven_tail,
    };
    let tally_core::Recovered {
        journal,
        mut state,
        replayed_bytes,
        replayed_entries,
        replayed_work,
    } = tally_core::open(directory, open)?;
    if state.cluster != options.cluster {
        return Err(StartError::Cluster {
            directory: directory.to_path_buf(),
            found: state.cluster,
            cluster: options.cluster,
        });
    }
    reserve(&mut state, &journal, options.transfers_max)?;
    let core_options = CoreOptions {
        record_bytes_max: tally_core::journal_options(journal.segment_size_bytes())
            .body_size_bytes_max as usize,
        unsaved_log_bytes: replayed_bytes,
        unsaved_entries: replayed_entries,
        unsaved_work: replayed_work,
    };
    let (submit, queue) = mpsc::channel(SUBMIT_QUEUE_MAX);
    let (stopped, core_stopped) = oneshot::channel();
    let core = std::thread::Builder::new()
        .name("tally-core".into())
        .spawn(move || {
            let result = Core::new(state, journal, core_options).run(queue);
            let _ = stopped.send(());
            result
        })
        .map_err(|source| StartError::Spawn {
            what: "core thread",
            source,
        })?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|source| StartError::Spawn {
            what: "runtime",
            source,
        })?;
    let served = runtime.block_on(serve_until_stopped(options, submit, core_stopped));
    runtime.shutdown_background();
    let core_result = core.join().map_err(|_| StartError::CorePanicked)?;
    // The core's own error says more than "the core stopped".
    core_result?;
    served
}

/// Sizes the transfer index for `transfers_max` transfers in all.
fn reserve(
    state: &mut tally_core::State,
    journal: &tally_journal::Journal,
    transfers_max: u64,
) -> Result<(), StartError> {
    let transfers_more = transfers_max.saturating_sub(state.ledger.transfer_count());
    if transfers_more > 0 {
        let transfers_more =
            usize::try_from(transfers_more).map_err(|_| StartError::TransfersMax(transfers_max))?;
        state.reserve_transfers(&tally_core::JournalBytes(journal), transfers_more);
    }
    Ok(())
}

async fn serve_until_stopped(
    options: &StartOptions,
    submit: mpsc::Sender<Submission>,
    core_stopped: oneshot::Receiver<()>,
) -> Result<(), StartError> {
    let (listener, local) = bind(options.addresses).await?;
    // The handlers come first: a SIGTERM sent as soon as the line below appears must drain.
    let mut terminate = signal(SignalKind::terminate()).map_err(StartError::Signal)?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(StartError::Signal)?;
    // Tests and scripts wait for this line (the port may have been 0).
    announce(&format!("listening on {local}"));
    let listener_options = net::ListenerOptions {
        cluster: options.cluster,
        idle_timeout: options.idle_timeout,
    };
    let serving = net::serve(listener, listener_options, submit.clone());
    let graphql = graphql_serve(options, submit.clone()).await?;
    let auto_peering = auto_peering_serve(options, submit.clone()).await?;
    if let Some(webhooks) = &options.webhooks {
        // Runs until the core stops answering; it owes nothing on shutdown (what is owed is
        // in the core's state).
        tokio::spawn(tally_graphql::webhooks_deliver(
            tally_graphql::CoreHandle::new(submit.clone()),
            webhooks.clone(),
        ));
    }
    tokio::select! {
        () = serving => {}
        () = graphql => {}
        () = auto_peering => {}
        _ = terminate.recv() => tracing::info!("SIGTERM: draining"),
        _ = interrupt.recv() => tracing::info!("SIGINT: draining"),
        _ = core_stopped => return Err(StartError::CoreStopped),
    }
    // Ask the core to finish what it has, checkpoint and stop.
    let _ = submit.send(Submission::Shutdown).await;
    Ok(())
}

/// Prints a line that tests and scripts wait for. A closed stdout (the reader went away) must
/// not stop the server, so write errors are ignored.
fn announce(line: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{line}");
    let _ = stdout.flush();
}

/// Binds a listener; returns it with the address it got (the port may have been 0).
async fn bind(address: SocketAddr) -> Result<(TcpListener, SocketAddr), StartError> {
    let listener = TcpListener::bind(address)
        .await
        .map_err(|source| StartError::Bind { address, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| StartError::Bind { address, source })?;
    Ok((listener, local))
}

/// Binds the Admin API's listener and returns the future that serves it (pending forever when
/// the API is off).
async fn graphql_serve(
    options: &StartOptions,
    submit: mpsc::Sender<Submission>,
) -> Result<Serving, StartError> {
    let Some(address) = options.graphql_address else {
        return Ok(Box::pin(std::future::pending()));
    };
    let (listener, local) = bind(address).await?;
    let app_options = tally_graphql::AppOptions {
        signature: options.graphql_signature.clone(),
        auto_peering: options.auto_peering.clone(),
        introspection: options.graphql_introspection,
        payments: options.payments.clone(),
    };
    // Built after the core has recovered and just before serving: signatures timestamped
    // before this moment (plus the allowance for clocks ahead) are refused (docs/graphql.md).
    let app = tally_graphql::app(tally_graphql::CoreHandle::new(submit), app_options);
    announce(&format!("graphql listening on {local}"));
    Ok(Box::pin(async move {
        if let Err(error) = axum::serve(listener, app).await {
            tracing::error!(%error, "graphql listener stopped");
        }
    }))
}

/// Binds the auto-peering endpoint and returns the future that serves it (pending forever when
/// it is off).
async fn auto_peering_serve(
    options: &StartOptions,
    submit: mpsc::Sender<Submission>,
) -> Result<Serving, StartError> {
    let Some(address) = options.auto_peering_address else {
        return Ok(Box::pin(std::future::pending()));
    };
    let (listener, local) = bind(address).await?;
    let app = tally_graphql::auto_peering_app(
        tally_graphql::CoreHandle::new(submit),
        options.auto_peering.clone(),
    );
    announce(&format!("auto-peering listening on {local}"));
    Ok(Box::pin(async move {
        if let Err(error) = axum::serve(listener, app).await {
            tracing::error!(%error, "auto-peering listener stopped");
        }
    }))
}

/// A listener's serving future.
type Serving = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// `tally format`: creates and formats a data directory.
pub fn format(directory: &Path, cluster: u128, segment_size_bytes: u64) -> Result<(), StartError> {
    tally_core::format(directory, cluster, segment_size_bytes)?;
    println!("formatted {}", directory.display());
    Ok(())
}
