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

/// A key's text with its first 16 bytes held inline, big-endian (zero-padded): ordered as the
/// text is, but a comparison in a map's node reads the prefix there instead of following each
/// candidate's pointer to its text, which is where a lookup among a day's keys spent its time
/// (one cache miss per comparison). The text is compared only when the prefixes are equal.
/// Encoded as the text alone, so the checkpoint's bytes are what a map of strings wrote.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct KeyText {
    prefix: u128,
    text: String,
}

impl KeyText {
    fn new(text: String) -> KeyText {
        let mut prefix = [0; 16];
        let head = &text.as_bytes()[..text.len().min(16)];
        prefix[..head.len()].copy_from_slice(head);
        KeyText {
            prefix: u128::from_be_bytes(prefix),
            text,
        }
    }
}

impl Serialize for KeyText {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for KeyText {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<KeyText, D::Error> {
        String::deserialize(deserializer).map(KeyText::new)
    }
}

/// The keys in use, and their expiry order.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct IdempotencyKeys {
    /// Boxed: an insertion shifts half a node's entries, 48 bytes each instead of 216.
    keys: OrdMap<KeyText, Box<Remembered>>,
    /// `(expires_at, key)`: the order in which keys are forgotten.
    expiry: OrdMap<(u64, KeyText), ()>,
}

/// A key `recall` found unused, with its command's fingerprint: what `remember` stores once the
/// command has run (so the key's text is copied and its prefix read once per command).
pub(crate) struct FreshKey {
    text: KeyText,
    fingerprint: Fingerprint,
}

/// What a key says about a command about to run.
pub(crate) enum Recall {
    /// Never seen (or expired): run the command, then remember its outcome under this.
    Fresh(FreshKey),
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
        let text = KeyText::new(key.key.clone());
        match self.keys.get(&text) {
            None => Recall::Fresh(FreshKey {
                text,
                fingerprint: key.fingerprint,
            }),
            Some(remembered) if remembered.fingerprint == key.fingerprint => {
                Recall::Repeat(remembered.outcome.clone())
            }
            Some(_) => Recall::Reused,
        }
    }

    pub(crate) fn remember(&mut self, key: FreshKey, outcome: &Outcome, timestamp: u64) {
        let expires_at = timestamp + IDEMPOTENCY_KEY_LIFETIME_NS;
        let FreshKey { text, fingerprint } = key;
        let previous = self.keys.insert(
            text.clone(),
            Box::new(Remembered {
                fingerprint,
                outcome: outcome.clone(),
                expires_at,
            }),
        );
        assert!(
            previous.is_none(),
            "a remembered key is recalled, not run again"
        );
        self.expiry.insert((expires_at, text), ());
    }

    /// How many keys are held.
    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn text() -> impl Strategy<Value = String> {
        // Short and long, with shared prefixes and NUL bytes (where zero padding could tie).
        prop_oneof![
            "[ab\\x00]{0,20}",
            "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
            ".{0,40}",
        ]
    }

    proptest! {
        #[test]
        fn key_texts_order_as_their_texts(a in text(), b in text()) {
            let (key_a, key_b) = (KeyText::new(a.clone()), KeyText::new(b.clone()));
            prop_assert_eq!(key_a.cmp(&key_b), a.cmp(&b));
            prop_assert_eq!(key_a == key_b, a == b);
        }

        #[test]
        fn key_texts_encode_as_their_texts(keys in proptest::collection::vec(text(), 0..20)) {
            let texts: OrdMap<String, u64> =
                keys.iter().enumerate().map(|(i, key)| (key.clone(), i as u64)).collect();
            let inline: OrdMap<KeyText, u64> = texts
                .iter()
                .map(|(key, value)| (KeyText::new(key.clone()), *value))
                .collect();
            let encoded = postcard::to_allocvec(&inline).expect("encodes");
            prop_assert_eq!(&encoded, &postcard::to_allocvec(&texts).expect("encodes"));
            let decoded: OrdMap<KeyText, u64> = postcard::from_bytes(&encoded).expect("decodes");
            prop_assert_eq!(decoded, inline);
        }
    }
}
