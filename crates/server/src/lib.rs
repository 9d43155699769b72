//! The `tally` server: the TigerBeetle protocol listener, and `tally start`, which wires the
//! fronts to the core (`tally-core`).

pub mod net;
pub mod run;
