//! `tally start`: recover, start the core thread, serve connections until SIGTERM or SIGINT,
//! then let the core drain, checkpoint and stop.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tally_core::{Core, CoreError, CoreOptions, OpenOptions, Recovered, RecoveryError, Submission};
use tally_metrics::{Metrics, Phase};
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, oneshot};

use crate::{net, ops};

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
    /// Where `/healthz` and `/metrics` are served on their own (`None`: only on the GraphQL
    /// listener).
    pub metrics_address: Option<SocketAddr>,
    /// How often long work (a replay) reports its progress.
    pub progress_interval: Duration,
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
    #[error("cannot listen on {address} ({flag}): {source}")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// The flag that asked for it.
        flag: &'static str,
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

/// Binds every listener, recovers and serves until SIGTERM or SIGINT.
///
/// The listeners bind before recovery, so that a port in use stops the start at once, and the
/// HTTP listener (GraphQL, or `--metrics-address`) serves `/healthz` (503) and `/metrics`
/// while the journal is replayed.
pub fn start(options: &StartOptions) -> Result<(), StartError> {
    let metrics = Metrics::new();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|source| StartError::Spawn {
            what: "runtime",
            source,
        })?;
    let (submit, queue) = mpsc::channel(SUBMIT_QUEUE_MAX);
    let mut listeners = runtime.block_on(Listeners::bind(options))?;
    let early = runtime.block_on(early_serve(options, &mut listeners, &metrics, &submit));
    let recovered = recover(options, &metrics)?;
    let core_options = CoreOptions {
        record_bytes_max: tally_core::journal_options(recovered.journal.segment_size_bytes())
            .body_size_bytes_max as usize,
        unsaved_log_bytes: recovered.replayed_bytes,
        unsaved_entries: recovered.replayed_entries,
        unsaved_work: recovered.replayed_work,
        checkpoint_bytes: recovered.checkpoint_bytes,
    };
    let (stopped, core_stopped) = oneshot::channel();
    // Built here: it publishes the state's gauges before health says it serves.
    let core = Core::new(
        recovered.state,
        recovered.journal,
        core_options,
        metrics.clone(),
    );
    let core = std::thread::Builder::new()
        .name("tally-core".into())
        .spawn(move || {
            let result = core.run(queue);
            let _ = stopped.send(());
            result
        })
        .map_err(|source| StartError::Spawn {
            what: "core thread",
            source,
        })?;
    // Before any listener says it is ready: the core takes submissions from now on.
    metrics.health.phase_set(Phase::Serving);
    let served = runtime.block_on(serve_until_stopped(
        options,
        listeners,
        early,
        &metrics,
        submit,
        core_stopped,
    ));
    runtime.shutdown_background();
    let core_result = core.join().map_err(|_| StartError::CorePanicked)?;
    // The core's own error says more than "the core stopped".
    core_result?;
    served
}

/// Formats the data directory if it is missing, and rebuilds the state from it.
fn recover(options: &StartOptions, metrics: &Metrics) -> Result<Recovered, StartError> {
    let directory = options.directory.as_path();
    if !tally_core::is_formatted(directory) {
        tally_core::format(directory, options.cluster, options.segment_size_bytes)?;
        tracing::info!(directory = %directory.display(), "formatted");
    }
    let open = OpenOptions {
        cut_unproven_tail: options.cut_unproven_tail,
        progress_interval: options.progress_interval,
        metrics: metrics.recovery.clone(),
    };
    let mut recovered = tally_core::open(directory, open)?;
    if recovered.state.cluster != options.cluster {
        return Err(StartError::Cluster {
            directory: directory.to_path_buf(),
            found: recovered.state.cluster,
            cluster: options.cluster,
        });
    }
    reserve(
        &mut recovered.state,
        &recovered.journal,
        options.transfers_max,
    )?;
    Ok(recovered)
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

/// Every listener `tally start` serves, bound and not yet serving.
struct Listeners {
    native: Bound,
    graphql: Option<Bound>,
    auto_peering: Option<Bound>,
    metrics: Option<Bound>,
}

/// A bound listener and the address it got (the port may have been 0).
struct Bound {
    listener: TcpListener,
    local: SocketAddr,
}

impl Listeners {
    async fn bind(options: &StartOptions) -> Result<Listeners, StartError> {
        Ok(Listeners {
            native: bind(options.addresses, "--addresses").await?,
            graphql: bind_or_off(options.graphql_address, "--graphql-address").await?,
            auto_peering: bind_or_off(options.auto_peering_address, "--auto-peering-address")
                .await?,
            metrics: bind_or_off(options.metrics_address, "--metrics-address").await?,
        })
    }
}

/// What serves during recovery, and goes on serving after it.
struct Early {
    /// The Admin API with `/healthz` and `/metrics`, and its address (`None`:
    /// `--graphql-address off`).
    graphql: Option<(SocketAddr, Serving)>,
    /// `/healthz` and `/metrics` alone (`None`: `--metrics-address off`).
    metrics: Option<Serving>,
}

/// Starts serving the HTTP listeners: the Admin API answers 503 until the core serves
/// (`tally_graphql::app`), `/healthz` and `/metrics` answer at once.
async fn early_serve(
    options: &StartOptions,
    listeners: &mut Listeners,
    metrics: &Metrics,
    submit: &mpsc::Sender<Submission>,
) -> Early {
    let graphql = listeners.graphql.take().map(|bound| {
        let app_options = tally_graphql::AppOptions {
            signature: options.graphql_signature.clone(),
            auto_peering: options.auto_peering.clone(),
            introspection: options.graphql_introspection,
            payments: options.payments.clone(),
            metrics: metrics.clone(),
        };
        // Built before recovery: signatures timestamped before this moment (plus the allowance
        // for clocks ahead) are refused (docs/graphql.md). An earlier process of this data
        // directory has stopped by now, or this one could not have bound its ports.
        let app = tally_graphql::app(tally_graphql::CoreHandle::new(submit.clone()), app_options)
            .merge(ops::router(metrics.clone()));
        (bound.local, http_serve(bound.listener, app, "graphql"))
    });
    let metrics_serving = listeners.metrics.take().map(|bound| {
        // Tests and scripts wait for this line; it comes before recovery, since this listener
        // serves from now on.
        announce(&format!("metrics listening on {}", bound.local));
        http_serve(bound.listener, ops::router(metrics.clone()), "metrics")
    });
    Early {
        graphql,
        metrics: metrics_serving,
    }
}

/// Spawns the serving of `app` on a listener, so that it serves while this thread recovers;
/// the returned future ends only if serving fails.
fn http_serve(listener: TcpListener, app: axum::Router, name: &'static str) -> Serving {
    let task = tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            tracing::error!(%error, listener = name, "listener stopped");
        }
    });
    Box::pin(async move {
        let _ = task.await;
    })
}

async fn serve_until_stopped(
    options: &StartOptions,
    listeners: Listeners,
    early: Early,
    metrics: &Metrics,
    submit: mpsc::Sender<Submission>,
    core_stopped: oneshot::Receiver<()>,
) -> Result<(), StartError> {
    // The handlers come first: a SIGTERM sent as soon as the line below appears must drain.
    let mut terminate = signal(SignalKind::terminate()).map_err(StartError::Signal)?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(StartError::Signal)?;
    // Tests and scripts wait for this line (the port may have been 0).
    announce(&format!("listening on {}", listeners.native.local));
    let listener_options = net::ListenerOptions {
        cluster: options.cluster,
        idle_timeout: options.idle_timeout,
    };
    let serving = net::serve(
        listeners.native.listener,
        listener_options,
        submit.clone(),
        &metrics.native,
    );
    let graphql = match early.graphql {
        Some((local, serving)) => {
            announce(&format!("graphql listening on {local}"));
            serving
        }
        None => pending(),
    };
    let metrics_serving = early.metrics.unwrap_or_else(pending);
    let auto_peering = auto_peering_serve(options, listeners.auto_peering, submit.clone());
    if let Some(webhooks) = &options.webhooks {
        // Runs until the core stops answering; it owes nothing on shutdown (what is owed is
        // in the core's state).
        tokio::spawn(tally_graphql::webhooks_deliver(
            tally_graphql::CoreHandle::new(submit.clone()),
            webhooks.clone(),
            metrics.webhooks.clone(),
        ));
    }
    tokio::select! {
        () = serving => {}
        () = graphql => {}
        () = metrics_serving => {}
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

/// Binds a listener asked for by `flag`.
async fn bind(address: SocketAddr, flag: &'static str) -> Result<Bound, StartError> {
    let bind_error = |source| StartError::Bind {
        address,
        flag,
        source,
    };
    let listener = TcpListener::bind(address).await.map_err(bind_error)?;
    let local = listener.local_addr().map_err(bind_error)?;
    Ok(Bound { listener, local })
}

async fn bind_or_off(
    address: Option<SocketAddr>,
    flag: &'static str,
) -> Result<Option<Bound>, StartError> {
    match address {
        Some(address) => bind(address, flag).await.map(Some),
        None => Ok(None),
    }
}

/// Serves the auto-peering endpoint (pending forever when it is off).
fn auto_peering_serve(
    options: &StartOptions,
    bound: Option<Bound>,
    submit: mpsc::Sender<Submission>,
) -> Serving {
    let Some(bound) = bound else {
        return pending();
    };
    let app = tally_graphql::auto_peering_app(
        tally_graphql::CoreHandle::new(submit),
        options.auto_peering.clone(),
    );
    announce(&format!("auto-peering listening on {}", bound.local));
    Box::pin(async move {
        if let Err(error) = axum::serve(bound.listener, app).await {
            tracing::error!(%error, "auto-peering listener stopped");
        }
    })
}

/// A listener that is off: serves nothing, forever.
fn pending() -> Serving {
    Box::pin(std::future::pending())
}

/// A listener's serving future.
type Serving = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// `tally format`: creates and formats a data directory.
pub fn format(directory: &Path, cluster: u128, segment_size_bytes: u64) -> Result<(), StartError> {
    tally_core::format(directory, cluster, segment_size_bytes)?;
    println!("formatted {}", directory.display());
    Ok(())
}
