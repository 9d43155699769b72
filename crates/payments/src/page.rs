//! Rafiki's pagination (`rafiki-admin-api.md` §3.4): rows in `(createdAt, id)` order, cursor =
//! the row's id, `after` wins over `before`, flags by probing one row past each end. Every list
//! is an index from a creation key (unique: each command has its own timestamps) to the id.

use imbl::OrdMap;
use std::ops::Bound;

use uuid::Uuid;

/// Rafiki's `SortOrder`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortOrder {
    /// Oldest first.
    Ascending,
    /// Newest first (the default).
    Descending,
}

/// Which page to read; the front has already checked the limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageRequest {
    /// Rows strictly after this row, in sort order.
    pub after: Option<Uuid>,
    /// Rows strictly before this row, in sort order (ignored when `after` is set).
    pub before: Option<Uuid>,
    /// Most rows returned.
    pub limit: usize,
    /// Sort order.
    pub order: SortOrder,
}

/// A page of ids, in sort order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Page {
    /// The rows' ids.
    pub ids: Vec<Uuid>,
    /// A row exists after the last one returned.
    pub has_next: bool,
    /// A row exists before the first one returned.
    pub has_previous: bool,
}

/// Reads a page of `index` within `[low, high]`; `key_of` finds a cursor row's key (`None`: the
/// cursor names no row of this list, and the page is empty, as Rafiki's SQL gives).
pub(crate) fn page<K: Ord + Copy>(
    index: &OrdMap<K, Uuid>,
    low: K,
    high: K,
    key_of: impl Fn(Uuid) -> Option<K>,
    request: &PageRequest,
) -> Page {
    let ascending = request.order == SortOrder::Ascending;
    // The cursor's key, and whether rows are wanted after it (true) or before it (false), in
    // sort order.
    let (cursor, forward) = match (request.after, request.before) {
        (Some(after), _) => (Some(after), true),
        (None, Some(before)) => (Some(before), false),
        (None, None) => (None, true),
    };
    let cursor_key = match cursor {
        Some(id) => match key_of(id).filter(|key| *key >= low && *key <= high) {
            Some(key) => Some(key),
            None => return Page::default(),
        },
        None => None,
    };
    // In key order: "after in sort order" is above the key when ascending, below when not.
    let upward = forward == ascending;
    let range = |from: Bound<K>, to: Bound<K>| index.range((from, to)).map(|(key, id)| (*key, *id));
    let mut rows: Vec<(K, Uuid)> = match (cursor_key, upward) {
        (None, true) => range(Bound::Included(low), Bound::Included(high))
            .take(request.limit)
            .collect(),
        (None, false) => range(Bound::Included(low), Bound::Included(high))
            .rev()
            .take(request.limit)
            .collect(),
        (Some(key), true) => range(Bound::Excluded(key), Bound::Included(high))
            .take(request.limit)
            .collect(),
        (Some(key), false) => range(Bound::Included(low), Bound::Excluded(key))
            .rev()
            .take(request.limit)
            .collect(),
    };
    if !forward {
        // Rows before the cursor were read nearest first; a page is in sort order.
        rows.reverse();
    }
    let exists_beyond = |key: K, upward: bool| {
        if upward {
            range(Bound::Excluded(key), Bound::Included(high))
                .next()
                .is_some()
        } else {
            range(Bound::Included(low), Bound::Excluded(key))
                .next()
                .is_some()
        }
    };
    let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
        return Page::default();
    };
    Page {
        has_next: exists_beyond(last.0, ascending),
        has_previous: exists_beyond(first.0, !ascending),
        ids: rows.iter().map(|(_, id)| *id).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(count: u64) -> OrdMap<u64, Uuid> {
        (1..=count)
            .map(|key| (key, Uuid::from_u128(key.into())))
            .collect()
    }

    fn ids(page: &Page) -> Vec<u128> {
        page.ids.iter().map(|id| id.as_u128()).collect()
    }

    fn request(
        after: Option<u128>,
        before: Option<u128>,
        limit: usize,
        order: SortOrder,
    ) -> PageRequest {
        PageRequest {
            after: after.map(Uuid::from_u128),
            before: before.map(Uuid::from_u128),
            limit,
            order,
        }
    }

    #[test]
    fn pages_in_both_orders_with_cursors() {
        let index = index(5);
        let key_of = |id: Uuid| {
            u64::try_from(id.as_u128())
                .ok()
                .filter(|key| (1..=5).contains(key))
        };
        let read = |request: PageRequest| page(&index, 0, u64::MAX, key_of, &request);

        let first = read(request(None, None, 2, SortOrder::Descending));
        assert_eq!(ids(&first), [5, 4]);
        assert!(first.has_next && !first.has_previous);
        let second = read(request(Some(4), None, 2, SortOrder::Descending));
        assert_eq!(ids(&second), [3, 2]);
        assert!(second.has_next && second.has_previous);
        let back = read(request(None, Some(2), 2, SortOrder::Descending));
        assert_eq!(ids(&back), [4, 3]);
        assert!(back.has_next && back.has_previous);

        let ascending = read(request(Some(3), None, 10, SortOrder::Ascending));
        assert_eq!(ids(&ascending), [4, 5]);
        assert!(!ascending.has_next && ascending.has_previous);
        let before_start = read(request(None, Some(1), 10, SortOrder::Ascending));
        assert_eq!(before_start, Page::default());
        let unknown = read(request(Some(99), None, 10, SortOrder::Ascending));
        assert_eq!(unknown, Page::default());
        let after_wins = read(request(Some(1), Some(5), 1, SortOrder::Ascending));
        assert_eq!(ids(&after_wins), [2]);
    }
}
