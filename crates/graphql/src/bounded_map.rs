//! A map the front's request tasks share, holding at most a fixed number of entries: an insert
//! that would pass it empties the map first. For caches of facts that never change (parsed
//! documents, asset codes), where a miss only costs recomputing the entry, so emptying is
//! simpler than evicting and a steady working set is back within one request each.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::RwLock;

pub(crate) struct BoundedMap<K, V> {
    entries: RwLock<HashMap<K, V>>,
    entries_max: usize,
}

impl<K: Eq + Hash, V: Clone> BoundedMap<K, V> {
    pub(crate) fn new(entries_max: usize) -> Self {
        Self {
            entries: RwLock::new(HashMap::new()),
            entries_max,
        }
    }

    pub(crate) fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        // A poisoned lock only means a panic elsewhere while holding it; the map itself is
        // always whole (insert and clear are single calls).
        let entries = self.entries.read().unwrap_or_else(|p| p.into_inner());
        entries.get(key).cloned()
    }

    /// Inserts every entry, emptying the map first if they would not all fit.
    pub(crate) fn insert_all(&self, new: impl ExactSizeIterator<Item = (K, V)>) {
        assert!(new.len() <= self.entries_max);
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        if entries.len() + new.len() > self.entries_max {
            entries.clear();
        }
        entries.extend(new);
        assert!(entries.len() <= self.entries_max);
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.read().map(|e| e.len()).unwrap_or(0)
    }
}
