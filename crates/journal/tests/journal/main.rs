//! The journal's integration tests, one binary (the crash tests run it again as a child process).

mod checkpoints;
mod common;
mod corruption;
mod crash;
mod round_trip;
mod torn_tail;
