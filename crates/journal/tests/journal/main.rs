//! The journal's integration tests (the child-process tests are in `tests/crash`).

mod checkpoints;
mod common;
mod corruption;
mod inspect;
mod round_trip;
mod torn_tail;
mod versions;
