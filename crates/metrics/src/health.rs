//! What `GET /healthz` answers: whether the core serves and the journal takes writes.
//!
//! The server sets `Recovering` before it binds its HTTP listener and `Serving` once the core
//! thread runs; the core thread marks the journal unwritable when an append fails (a full disk,
//! until an append succeeds again) and the process failed after an fsync error, which ends it.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

/// Where the process is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// Opening the journal and replaying it; nothing is served yet.
    Recovering = 0,
    /// The core thread serves.
    Serving = 1,
    /// The journal failed (an fsync error): nothing more is written and the process ends.
    Failed = 2,
}

/// The health every front reads and the core writes: atomics, so that neither waits.
#[derive(Debug)]
pub struct Health {
    phase: AtomicU8,
    journal_writable: AtomicBool,
}

impl Default for Health {
    fn default() -> Health {
        Health {
            phase: AtomicU8::new(Phase::Recovering as u8),
            journal_writable: AtomicBool::new(true),
        }
    }
}

impl Health {
    /// The current phase.
    pub fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Relaxed) {
            0 => Phase::Recovering,
            1 => Phase::Serving,
            _ => Phase::Failed,
        }
    }

    /// Moves to `phase`; `Failed` is final.
    pub fn phase_set(&self, phase: Phase) {
        let _ = self
            .phase
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |current| {
                (current != Phase::Failed as u8).then_some(phase as u8)
            });
    }

    /// Whether the last append reached the journal.
    pub fn journal_writable(&self) -> bool {
        self.journal_writable.load(Ordering::Relaxed)
    }

    /// Records whether the last append reached the journal.
    pub fn journal_writable_set(&self, writable: bool) {
        self.journal_writable.store(writable, Ordering::Relaxed);
    }

    /// What `/healthz` says: `Ok` while serving with a writable journal, else why not.
    pub fn check(&self) -> Result<(), &'static str> {
        match self.phase() {
            Phase::Recovering => Err("recovering"),
            Phase::Failed => Err("journal failed"),
            Phase::Serving if !self.journal_writable() => Err("journal not writable"),
            Phase::Serving => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn healthy_only_while_serving_with_a_writable_journal() {
        let health = Health::default();
        assert_eq!(health.check(), Err("recovering"));
        health.phase_set(Phase::Serving);
        assert_eq!(health.check(), Ok(()));
        health.journal_writable_set(false);
        assert_eq!(health.check(), Err("journal not writable"));
        health.journal_writable_set(true);
        health.phase_set(Phase::Failed);
        health.phase_set(Phase::Serving);
        assert_eq!(health.check(), Err("journal failed"));
    }
}
