//! The journal's integration tests, one binary (the crash tests run it again as a child process).

mod common;
mod round_trip;
