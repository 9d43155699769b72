//! The listener's table of open connections. It holds at most `connections_max`; at the limit a
//! new connection displaces the open one that has been silent longest among those no client is
//! routed to, so that idle or hostile connections cannot lock registered clients out (a
//! connection storm churns through the idle connections instead of refusing everyone).
//!
//! A connection is "routed to" while the core routes a client's replies to it: the client has
//! a session or a request executing (`tally_core::Connection::routed_clients`). At most
//! `clients_max + in_flight_max` connections are, far below the limit, so a connection can
//! always be admitted with the default limits.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use tokio::sync::Notify;

/// The open connections.
pub(crate) struct Registry {
    connections_max: usize,
    /// The zero of every slot's `active_ms`.
    epoch: Instant,
    /// By connection id: the oldest first, which breaks ties between equally idle connections.
    open: Mutex<BTreeMap<u64, Arc<Slot>>>,
}

/// What the listener knows about one open connection.
pub(crate) struct Slot {
    epoch: Instant,
    routed_clients: Arc<AtomicUsize>,
    /// When the connection last sent a whole request or ping (or opened), in ms since `epoch`.
    active_ms: AtomicU64,
    /// Notified when a newer connection displaces this one.
    displaced: Notify,
}

impl Slot {
    /// Records that the connection just sent a request or ping.
    pub(crate) fn touch(&self) {
        self.active_ms
            .store(milliseconds_since(self.epoch), Ordering::Relaxed);
    }

    /// Whether the core routes some client's replies to this connection.
    pub(crate) fn routed(&self) -> bool {
        self.routed_clients.load(Ordering::Relaxed) > 0
    }

    /// Completes once a newer connection has displaced this one.
    pub(crate) async fn displaced(&self) {
        self.displaced.notified().await;
    }
}

impl Registry {
    /// An empty table for at most `connections_max` connections.
    pub(crate) fn new(connections_max: usize) -> Registry {
        assert!(connections_max > 0);
        Registry {
            connections_max,
            epoch: Instant::now(),
            open: Mutex::new(BTreeMap::new()),
        }
    }

    /// Admits connection `id`, displacing the longest-silent unrouted connection if the table
    /// is full (its task is told to close). `None`: full, and every connection is routed to.
    pub(crate) fn admit(&self, id: u64, routed_clients: Arc<AtomicUsize>) -> Option<Arc<Slot>> {
        let mut open = self.lock();
        assert!(open.len() <= self.connections_max);
        if open.len() == self.connections_max {
            let displaced = displaceable(&open)?;
            let slot = open.remove(&displaced).expect("found in the table");
            slot.displaced.notify_one();
            tracing::debug!(
                displaced,
                id,
                "connection limit reached; closing the longest-idle connection"
            );
        }
        let slot = Arc::new(Slot {
            epoch: self.epoch,
            routed_clients,
            active_ms: AtomicU64::new(milliseconds_since(self.epoch)),
            displaced: Notify::new(),
        });
        let previous = open.insert(id, slot.clone());
        assert!(previous.is_none(), "connection ids are unique");
        Some(slot)
    }

    /// Forgets connection `id` (a no-op if it was displaced).
    pub(crate) fn remove(&self, id: u64) {
        self.lock().remove(&id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Arc<Slot>>> {
        // The table stays consistent whatever panicked while holding it: every change is one
        // insert or remove.
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The unrouted connection that has been silent longest (the oldest among equals).
fn displaceable(open: &BTreeMap<u64, Arc<Slot>>) -> Option<u64> {
    open.iter()
        .filter(|(_, slot)| !slot.routed())
        .min_by_key(|(&id, slot)| (slot.active_ms.load(Ordering::Relaxed), id))
        .map(|(&id, _)| id)
}

fn milliseconds_since(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_millis()).expect("the server runs for less than 500 My")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unrouted() -> Arc<AtomicUsize> {
        Arc::new(AtomicUsize::new(0))
    }

    #[test]
    fn a_full_table_displaces_the_longest_idle_unrouted_connection() {
        let registry = Registry::new(3);
        let routed = Arc::new(AtomicUsize::new(1));
        let first = registry.admit(1, routed.clone()).expect("room");
        let second = registry.admit(2, unrouted()).expect("room");
        let third = registry.admit(3, unrouted()).expect("room");
        // Connection 2 is older than 3, but it sent something since.
        second.active_ms.store(u64::MAX, Ordering::Relaxed);
        let fourth = registry.admit(4, unrouted()).expect("3 is displaced");
        assert_eq!(Arc::strong_count(&third), 1, "3 left the table");
        assert!(registry.lock().keys().eq([1u64, 2, 4].iter()));
        // Routed connections are never displaced: when only they are left, refuse.
        fourth.routed_clients.fetch_add(1, Ordering::Relaxed);
        second.routed_clients.fetch_add(1, Ordering::Relaxed);
        assert!(registry.admit(5, unrouted()).is_none());
        registry.remove(1);
        assert!(registry.admit(5, unrouted()).is_some());
        assert!(first.routed());
    }

    #[tokio::test]
    async fn a_displaced_connection_is_told() {
        let registry = Registry::new(1);
        let first = registry.admit(1, unrouted()).expect("room");
        registry.admit(2, unrouted()).expect("1 is displaced");
        // The permit is kept until the connection's task next waits for it.
        first.displaced().await;
    }
}
