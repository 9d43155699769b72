//! One module per scenario. Each has an `Args` struct (clap) and `run(args)`, prints its table
//! through `harness::report::Table` and writes its JSON through `harness::report::write_json`.

pub mod core;
pub mod durable;
pub mod recovery;
pub mod recovery_mixed;
