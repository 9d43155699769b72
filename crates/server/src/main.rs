//! `tally`: start, format, inspect, version.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tally_server::run::{self, StartError, StartOptions};

/// jemalloc below 1 MiB, glibc's malloc above (`tally_server::allocator`).
#[global_allocator]
static ALLOCATOR: tally_server::allocator::SplitAllocator = tally_server::allocator::SplitAllocator;

#[derive(Parser)]
#[command(
    name = "tally",
    about = "A TigerBeetle-compatible ledger service",
    version
)]
struct Cli {
    /// Log lines as text or as one JSON object per line (for log shippers).
    #[arg(long, global = true, env = "TALLY_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// What to log: a level (`info`, `debug`, ...) or a `tracing` filter
    /// (`info,tally_core=debug`); else `TALLY_LOG`, then `RUST_LOG`, then `info`.
    #[arg(long, global = true)]
    log_level: Option<String>,
    /// How often a long recovery logs its replay progress, in ms (once the replay has run
    /// this long).
    #[arg(
        long,
        global = true,
        env = "TALLY_PROGRESS_INTERVAL_MS",
        default_value_t = 1000,
        value_parser = clap::value_parser!(u64).range(1..=3_600_000)
    )]
    progress_interval_ms: u64,
    #[command(subcommand)]
    command: Command,
}

/// `--log-format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// Human-readable lines; colour only when stderr is a terminal.
    Text,
    /// One JSON object per line.
    Json,
}

/// Logs to stderr as the flags say. Colour codes only reach a terminal: a log captured to a
/// file or a pipe stays plain text.
fn logging_init(format: LogFormat, level: Option<&str>) {
    use std::io::IsTerminal;
    let filter = level
        .map(tracing_subscriber::EnvFilter::new)
        .or_else(|| tracing_subscriber::EnvFilter::try_from_env("TALLY_LOG").ok())
        .or_else(|| tracing_subscriber::EnvFilter::try_from_env("RUST_LOG").ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().init(),
    }
}

// Parsed once at start: the size of `Start` costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Serve the TigerBeetle client protocol (formats the data directory if it is missing).
    Start {
        #[arg(long, env = "TALLY_DATA_DIR", default_value = "./tally-data")]
        data_dir: PathBuf,
        #[arg(long, env = "TALLY_ADDRESSES", default_value = "127.0.0.1:3000")]
        addresses: SocketAddr,
        #[arg(long, env = "TALLY_CLUSTER", default_value_t = 0)]
        cluster: u128,
        /// Close a native connection that sends no request or ping for this many seconds,
        /// unless it serves a client with a session (official clients ping every 30 s); this
        /// also ends connections that trickle a partial frame or went away without closing.
        #[arg(
            long,
            env = "TALLY_IDLE_TIMEOUT_SECONDS",
            default_value_t = 60,
            value_parser = clap::value_parser!(u64).range(1..=86_400)
        )]
        idle_timeout_seconds: u64,
        /// Journal segment size in MiB (only used when formatting).
        #[arg(long, env = "TALLY_SEGMENT_MIB", default_value_t = 256)]
        segment_mib: u64,
        /// Size the transfer index for this many transfers at start-up (static sizing, as
        /// TigerBeetle allocates at start-up: its memory, 16 bytes a transfer or more, is
        /// written at start-up too), so that it never grows below that count; 0
        /// grows it as needed, a bounded step per batch (docs/ledger.md).
        #[arg(long, env = "TALLY_TRANSFERS_MAX", default_value_t = 0)]
        transfers_max: u64,
        /// Cut a damaged journal tail even where the log cannot prove it was never
        /// acknowledged: for a start after a known power loss, when recovery refused and named
        /// this flag (docs/journal.md, "Recovery").
        #[arg(long, env = "TALLY_CUT_UNPROVEN_TAIL")]
        cut_unproven_tail: bool,
        /// Serve Rafiki's Admin API (GraphQL) here; `off` serves none.
        #[arg(long, env = "TALLY_GRAPHQL_ADDRESS", default_value = "127.0.0.1:3001")]
        graphql_address: String,
        /// Serve `GET /metrics` and `GET /healthz` here too (they are always on the GraphQL
        /// listener); `off` serves no such listener. Binds before recovery.
        #[arg(long, env = "TALLY_METRICS_ADDRESS", default_value = "off")]
        metrics_address: String,
        /// Answer GraphQL introspection queries (GraphiQL and code generators need them).
        #[arg(
            long,
            env = "TALLY_ADMIN_API_INTROSPECTION",
            default_value_t = true,
            action = clap::ArgAction::Set
        )]
        admin_api_introspection: bool,
        /// Require Rafiki's `signature` header (HMAC-SHA256 with this secret) on every
        /// `POST /graphql`; unset or empty serves unsigned requests, as Rafiki's `API_SECRET`.
        #[arg(long, env = "TALLY_ADMIN_API_SECRET", hide_env_values = true)]
        admin_api_secret: Option<String>,
        /// The signature version required, `v<N>=` (Rafiki's `API_SIGNATURE_VERSION`).
        #[arg(long, env = "TALLY_ADMIN_API_SIGNATURE_VERSION", default_value_t = 1)]
        admin_api_signature_version: u32,
        /// How old a signature may be, in seconds (Rafiki's `ADMIN_API_SIGNATURE_TTL_SECONDS`).
        #[arg(
            long,
            env = "TALLY_ADMIN_API_SIGNATURE_TTL_SECONDS",
            default_value_t = 30
        )]
        admin_api_signature_ttl_seconds: u64,
        /// Answer other instances' peering requests here (Rafiki's auto-peering server);
        /// `off` serves none.
        #[arg(
            long,
            env = "TALLY_AUTO_PEERING_ADDRESS",
            default_value = "127.0.0.1:3005"
        )]
        auto_peering_address: String,
        /// This instance's ILP address, told to peers (Rafiki's `ILP_ADDRESS`).
        #[arg(long, env = "TALLY_ILP_ADDRESS", default_value = "test.tally")]
        ilp_address: String,
        /// Where peers send this instance ILP packets (Rafiki's `ILP_CONNECTOR_URL`).
        #[arg(
            long,
            env = "TALLY_ILP_CONNECTOR_URL",
            default_value = "http://127.0.0.1:3002"
        )]
        ilp_connector_url: String,
        /// This instance's name, told to peers (Rafiki's `INSTANCE_NAME`).
        #[arg(long, env = "TALLY_INSTANCE_NAME", default_value = "Tally")]
        instance_name: String,
        /// This instance's Open Payments URL (Rafiki's `OPEN_PAYMENTS_URL`): incoming payment
        /// URLs (receiver ids) are `<url>/incoming-payments/<id>`, and only receivers under it
        /// can be quoted and paid.
        #[arg(
            long,
            env = "TALLY_OPEN_PAYMENTS_URL",
            default_value = "http://127.0.0.1:3003"
        )]
        open_payments_url: String,
        /// Where exchange rates come from: `GET <url>?base=<CODE>` answering
        /// `{"base": ..., "rates": {...}}` (Rafiki's `EXCHANGE_RATES_URL`).
        #[arg(long, env = "TALLY_EXCHANGE_RATES_URL")]
        exchange_rates_url: Option<String>,
        /// Exchange rates from a file, `{"<BASE>": {"<CODE>": rate, ...}, ...}`, when no URL is
        /// given (offline use, tests).
        #[arg(long, env = "TALLY_EXCHANGE_RATES_FILE")]
        exchange_rates_file: Option<PathBuf>,
        /// How long a quote can be paid, in ms (Rafiki's `QUOTE_LIFESPAN`).
        #[arg(long, env = "TALLY_QUOTE_LIFESPAN", default_value_t = 300_000)]
        quote_lifespan: u64,
        /// The default and longest expiry of an incoming payment, in ms (Rafiki's
        /// `INCOMING_PAYMENT_EXPIRY_MAX_MS`, 30 days).
        #[arg(
            long,
            env = "TALLY_INCOMING_PAYMENT_EXPIRY_MAX",
            default_value_t = 2_592_000_000
        )]
        incoming_payment_expiry_max: u64,
        /// POST every webhook event here (Rafiki's `WEBHOOK_URL`); unset: events are only kept
        /// and listed by `webhookEvents`.
        #[arg(long, env = "TALLY_WEBHOOK_URL")]
        webhook_url: Option<String>,
        /// Sign deliveries with this secret (Rafiki's `SIGNATURE_SECRET`).
        #[arg(long, env = "TALLY_WEBHOOK_SECRET", hide_env_values = true)]
        webhook_secret: Option<String>,
        /// The delivery signature's version, `v<N>=` (Rafiki's `SIGNATURE_VERSION`).
        #[arg(long, env = "TALLY_WEBHOOK_SIGNATURE_VERSION", default_value_t = 1)]
        webhook_signature_version: u32,
        /// One delivery's time limit, in ms (Rafiki's `WEBHOOK_TIMEOUT`).
        #[arg(long, env = "TALLY_WEBHOOK_TIMEOUT", default_value_t = 2000)]
        webhook_timeout: u64,
        /// Attempts before an event is given up (Rafiki's `WEBHOOK_MAX_RETRY`).
        #[arg(long, env = "TALLY_WEBHOOK_MAX_RETRY", default_value_t = 10)]
        webhook_max_retry: u32,
        /// The retry back-off unit, in ms: attempt n waits min(n, 6) of it (Rafiki: 10 s).
        #[arg(long, env = "TALLY_WEBHOOK_RETRY_DELAY", default_value_t = 10_000)]
        webhook_retry_delay: u64,
    },
    /// Create and format a data directory.
    Format {
        #[arg(long, env = "TALLY_DATA_DIR", default_value = "./tally-data")]
        data_dir: PathBuf,
        #[arg(long, env = "TALLY_CLUSTER", default_value_t = 0)]
        cluster: u128,
        #[arg(long, env = "TALLY_SEGMENT_MIB", default_value_t = 256)]
        segment_mib: u64,
    },
    /// Verify the journal and checkpoints and print a summary; never writes.
    Inspect {
        data_dir: PathBuf,
        /// Also replay the whole log from the start (ignoring checkpoints) and from the newest
        /// checkpoint, and print both state digests.
        #[arg(long)]
        digest: bool,
    },
    /// Print the Admin API's GraphQL schema (SDL).
    Schema,
    /// Print the version.
    Version,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging_init(cli.log_format, cli.log_level.as_deref());
    let result: Result<(), StartError> = match cli.command {
        Command::Start {
            data_dir,
            addresses,
            cluster,
            idle_timeout_seconds,
            segment_mib,
            transfers_max,
            cut_unproven_tail,
            graphql_address,
            metrics_address,
            admin_api_introspection,
            admin_api_secret,
            admin_api_signature_version,
            admin_api_signature_ttl_seconds,
            auto_peering_address,
            ilp_address,
            ilp_connector_url,
            instance_name,
            open_payments_url,
            exchange_rates_url,
            exchange_rates_file,
            quote_lifespan,
            incoming_payment_expiry_max,
            webhook_url,
            webhook_secret,
            webhook_signature_version,
            webhook_timeout,
            webhook_max_retry,
            webhook_retry_delay,
        } => address_or_off(&graphql_address).and_then(|graphql_address| {
            let auto_peering_address = address_or_off(&auto_peering_address)?;
            let metrics_address = address_or_off(&metrics_address)?;
            let rates_table = match &exchange_rates_file {
                Some(path) => tally_graphql::load_rates_file(path).map_err(StartError::Config)?,
                None => Default::default(),
            };
            run::start(&StartOptions {
                directory: data_dir,
                addresses,
                cluster,
                idle_timeout: std::time::Duration::from_secs(idle_timeout_seconds),
                segment_size_bytes: segment_mib << 20,
                transfers_max,
                cut_unproven_tail,
                graphql_address,
                metrics_address,
                progress_interval: std::time::Duration::from_millis(cli.progress_interval_ms),
                graphql_introspection: admin_api_introspection,
                graphql_signature: admin_api_secret.filter(|secret| !secret.is_empty()).map(
                    |secret| tally_graphql::SignatureOptions {
                        secret,
                        version: admin_api_signature_version,
                        ttl: std::time::Duration::from_secs(admin_api_signature_ttl_seconds),
                    },
                ),
                auto_peering_address,
                auto_peering: tally_graphql::AutoPeeringOptions {
                    ilp_address,
                    ilp_connector_url,
                    instance_name,
                },
                payments: tally_graphql::PaymentsOptions {
                    open_payments_url,
                    incoming_payment_expiry_max: std::time::Duration::from_millis(
                        incoming_payment_expiry_max,
                    ),
                    quote_lifespan: std::time::Duration::from_millis(quote_lifespan),
                    rates: tally_graphql::RatesOptions {
                        url: exchange_rates_url,
                        table: rates_table,
                    },
                },
                webhooks: webhook_url.map(|url| tally_graphql::WebhookOptions {
                    url,
                    secret: webhook_secret.filter(|secret| !secret.is_empty()),
                    signature_version: webhook_signature_version,
                    timeout: std::time::Duration::from_millis(webhook_timeout),
                    retry_delay: std::time::Duration::from_millis(webhook_retry_delay),
                    attempts_max: webhook_max_retry.max(1),
                }),
            })
        }),
        Command::Format {
            data_dir,
            cluster,
            segment_mib,
        } => run::format(&data_dir, cluster, segment_mib << 20),
        Command::Inspect {
            data_dir,
            digest: false,
        } => tally_core::inspect(&data_dir).map_err(StartError::from),
        Command::Inspect {
            data_dir,
            digest: true,
        } => tally_core::digest(&data_dir).map_err(StartError::from),
        Command::Schema => {
            print!("{}", tally_graphql::sdl());
            Ok(())
        }
        Command::Version => {
            println!(
                "tally {} (TigerBeetle protocol {})",
                env!("CARGO_PKG_VERSION"),
                tally_wire::RELEASE
            );
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // One line naming what failed and where, for the operator and for scripts.
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// `--graphql-address`, `--auto-peering-address`: an address, or `off`.
fn address_or_off(text: &str) -> Result<Option<SocketAddr>, StartError> {
    if text == "off" {
        return Ok(None);
    }
    text.parse()
        .map(Some)
        .map_err(|_| StartError::Address(text.to_owned()))
}
