//! The `tally` server: the TigerBeetle protocol listener, and `tally start`, which wires the
//! fronts to the core (`tally-core`).

//!
//! The library exists for the `tally` binary alone: `run` is what `main.rs` calls and `allocator`
//! what it allocates with; everything else is private to the crate.

pub mod allocator;
mod net;
mod ops;
pub mod run;
