//! Tally's benchmark harness. One scenario per module, chosen by the first argument:
//!
//! ```text
//! cargo run --release -p tally-bench -- core [--transfers N] [--batch N] [--workload NAME] ...
//! ```
//!
//! Every scenario prints a human table to stdout (with a progress line on stderr while it runs)
//! and writes `target/bench/SCENARIO.json` (`$CARGO_TARGET_DIR/bench/` if that is set) through
//! `harness::report`: `{scenario, date, machine, params, ...figures}` in plain units.
//! `durable`, `recovery` and `recovery-mixed` run a real `tally start` child; what they share
//! (options, data directory, child process, accounts and transfers) is in `harness/`.
//! `graphql` runs one too, with its Admin API on, and drives it over HTTP; `payments` drives
//! whole local payments through it on `graphql`'s connections.
//! `connections` runs one and reads its resident memory as connections and client ids come and
//! go.
//! To add a scenario: a module under `scenarios/` with an `Args` struct
//! (flattening `harness::options::ServerArgs` if it runs a server) and a `run(args)` function,
//! and one variant in `Scenario` below.

mod alloc;
mod harness;
mod scenarios;

use clap::{Parser, Subcommand};

/// Heap bytes are counted (live and peak) so that scenarios can report what their subject holds.
#[global_allocator]
static ALLOCATOR: alloc::Counting = alloc::Counting;

#[derive(Parser)]
#[command(
    name = "tally-bench",
    version,
    about = "Tally's benchmark harness: runs one scenario, prints a table, writes target/bench/SCENARIO.json",
    after_help = "Results go to $CARGO_TARGET_DIR/bench/SCENARIO.json, else <workspace>/target/bench/."
)]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// The ledger core alone on one thread (MemoryStore as the transfer store): throughput,
    /// per-batch latency and heap per stored transfer, for several workloads.
    Core(scenarios::core::Args),
    /// A real `tally start` on the real disk, through tally-client: full batches and
    /// 1-transfer requests from 1, 8, 64 clients; throughput, latency, fsyncs and disk bytes
    /// per transfer.
    Durable(scenarios::durable::Args),
    /// Restart times of a big data directory (after SIGKILL, with no checkpoint, after
    /// SIGTERM), replay rate, and the server's memory per transfer after a restart.
    Recovery(scenarios::recovery::Args),
    /// Restart time after SIGKILL as a mixed history grows: cycles of small writes from several
    /// clients, a read-back of every transfer in large lookups, SIGKILL and a timed restart.
    RecoveryMixed(scenarios::recovery_mixed::Args),
    /// What an idle connection, a connection holding a partial frame, and a client id cost a
    /// real `tally start` in resident memory (VmRSS), open and after they close.
    Connections(scenarios::connections::Args),
    /// Rafiki's Admin API over HTTP against a real `tally start`: liquidity deposits,
    /// two-phase withdrawals and liquidity queries from 1, 16, 64 keep-alive clients;
    /// throughput and latency, optionally after preloading the ledger with N transfers.
    Graphql(scenarios::graphql::Args),
    /// Local payments over the Admin API against a real `tally start`: incoming payment,
    /// quote, outgoing payment and its funding, from 1, 16, 64 keep-alive clients; completed
    /// payments/s and the latency of the flow and of the fund step.
    Payments(scenarios::payments::Args),
}

fn main() {
    let cli = Cli::parse();
    match cli.scenario {
        Scenario::Core(args) => scenarios::core::run(args),
        Scenario::Durable(args) => scenarios::durable::run(args),
        Scenario::Recovery(args) => scenarios::recovery::run(args),
        Scenario::RecoveryMixed(args) => scenarios::recovery_mixed::run(args),
        Scenario::Graphql(args) => scenarios::graphql::run(args),
        Scenario::Payments(args) => scenarios::payments::run(args),
        Scenario::Connections(args) => scenarios::connections::run(args),
    }
}
