//! What the scenarios share (as redb's `redb-bench` keeps it in one place), so that a new
//! scenario (`payments`, ...) is its workload and its figures, nothing else:
//!
//! * `admin_api`: one lean keep-alive HTTP/1.1 connection to the Admin API, and the checks of
//!   a GraphQL answer (`graphql`, `payments`).
//! * `report`: where results go, the date and machine stamp, latency summaries, the human table,
//!   the progress line and the JSON envelope. Every scenario.
//! * `rng`: deterministic randomness (splitmix64, zipf). Every scenario.
//! * `options`: the command-line options of the scenarios that run a server child
//!   (`ServerArgs`: data directory, `tally` binary, segment size, `--smoke`).
//! * `data_dir`: the fresh data directory on the real disk, and its filesystem.
//! * `child`: any child process: spawn with arguments and environment, wait for a ready line,
//!   keep its output, read its memory, SIGTERM (exit 0 checked) or SIGKILL.
//! * `tally`: `tally start` on top of `child` (ready on `listening on ADDR`), `tally inspect`,
//!   and the server's log lines (`recovered`, `checkpoint`, warnings).
//! * `workload`: accounts, random transfers with sequential ids, clients and their one-thread
//!   runtime, failed events.

pub(crate) mod admin_api;
pub(crate) mod child;
pub(crate) mod data_dir;
pub(crate) mod options;
pub(crate) mod report;
pub(crate) mod rng;
pub(crate) mod tally;
pub(crate) mod workload;
