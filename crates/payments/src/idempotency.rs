//! Idempotency keys (`rafiki-admin-api.md` §2), kept in the journaled state: a repeat of a key
//! with the same mutation and arguments returns the first outcome, success or error, without
//! running again, across restarts; the same key with anything else is an error. Keys expire
//! 24 hours of core time after their first use.

use imbl::OrdMap;
use serde::{Deserialize, Serialize};

use crate::command::Outcome;

/// How long a key is remembered, in core-clock nanoseconds (Rafiki's default 24 h).
pub const IDEMPOTENCY_KEY_LIFETIME_NS: u64 = 24 * 3600 * 1_000_000_000;

/// A hash of the mutation's name and its canonical arguments, computed by the front.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint(pub [u8; 32]);

/// The key a client sent with a mutation, and the fingerprint of that mutation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyKey {
    /// The key as sent (global, not scoped by mutation, as in Rafiki).
    pub key: String,
    /// What the key was used for.
    pub fingerprint: Fingerprint,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Remembered {
    fingerprint: Fingerprint,
    outcome: Outcome,
    expires_at: u64,
}

/// The keys in use, and their expiry order.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct IdempotencyKeys {
    keys: OrdMap<String, Remembered>,
    /// `(expires_at, key)`: the order in which keys are forgotten.
    expiry: OrdMap<(u64, String), ()>,
}

/// What a key says about a command about to run.
pub(crate) enum Recall {
    /// Never seen (or expired): run the command.
    Fresh,
    /// Seen with the same fingerprint: this is the outcome.
    Repeat(Outcome),
    /// Seen with another fingerprint.
    Reused,
}

impl IdempotencyKeys {
    /// Forgets every key whose lifetime ended at or before `timestamp`.
    pub(crate) fn expire(&mut self, timestamp: u64) {
        while let Some(((expires_at, key), ())) = self.expiry.get_min() {
            if *expires_at > timestamp {
                break;
            }
            let (expires_at, key) = (*expires_at, key.clone());
            let forgotten = self.expiry.remove(&(expires_at, key.clone()));
            assert!(forgotten.is_some(), "non-empty: just read");
            let removed = self.keys.remove(&key);
            assert!(removed.is_some(), "expiry order and keys agree");
        }
        assert_eq!(self.keys.len(), self.expiry.len());
    }

    pub(crate) fn recall(&self, key: &IdempotencyKey) -> Recall {
        match self.keys.get(&key.key) {
            None => Recall::Fresh,
            Some(remembered) if remembered.fingerprint == key.fingerprint => {
                Recall::Repeat(remembered.outcome.clone())
            }
            Some(_) => Recall::Reused,
        }
    }

    pub(crate) fn remember(&mut self, key: &IdempotencyKey, outcome: &Outcome, timestamp: u64) {
        let expires_at = timestamp + IDEMPOTENCY_KEY_LIFETIME_NS;
        let previous = self.keys.insert(
            key.key.clone(),
            Remembered {
                fingerprint: key.fingerprint,
                outcome: outcome.clone(),
                expires_at,
            },
        );
        assert!(
            previous.is_none(),
            "a remembered key is recalled, not run again"
        );
        self.expiry.insert((expires_at, key.key.clone()), ());
    }

    /// How many keys are held.
    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }
}
