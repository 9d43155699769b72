//! One module per scenario. Each has an `Args` struct (clap) and `run(args)`, prints its table
//! through `harness::report::Table` and writes its JSON through `harness::report::write_json`.

pub(crate) mod connections;
pub(crate) mod core;
pub(crate) mod durable;
pub(crate) mod graphql;
pub(crate) mod payments;
pub(crate) mod recovery;
pub(crate) mod recovery_mixed;
