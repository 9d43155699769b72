//! `tally`: start, format, inspect, version.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tally_server::run::{self, StartError, StartOptions};

#[derive(Parser)]
#[command(
    name = "tally",
    about = "A TigerBeetle-compatible ledger service",
    version
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once per process: the size of `Start` next to the other commands costs nothing.
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
        #[arg(long, default_value_t = 256)]
        segment_mib: u64,
        /// Size the transfer index for this many transfers at start-up (static sizing, as
        /// TigerBeetle allocates at start-up), so that it never stalls a batch by growing
        /// below that count; 0 grows it as needed.
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
    },
    /// Create and format a data directory.
    Format {
        #[arg(long, env = "TALLY_DATA_DIR", default_value = "./tally-data")]
        data_dir: PathBuf,
        #[arg(long, env = "TALLY_CLUSTER", default_value_t = 0)]
        cluster: u128,
        #[arg(long, default_value_t = 256)]
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
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TALLY_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
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
            admin_api_introspection,
            admin_api_secret,
            admin_api_signature_version,
            admin_api_signature_ttl_seconds,
            auto_peering_address,
            ilp_address,
            ilp_connector_url,
            instance_name,
        } => address_or_off(&graphql_address).and_then(|graphql_address| {
            let auto_peering_address = address_or_off(&auto_peering_address)?;
            run::start(&StartOptions {
                directory: data_dir,
                addresses,
                cluster,
                idle_timeout: std::time::Duration::from_secs(idle_timeout_seconds),
                segment_size_bytes: segment_mib << 20,
                transfers_max,
                cut_unproven_tail,
                graphql_address,
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
        Err(error) => {
            eprintln!("tally: {error}");
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
