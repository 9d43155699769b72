//! `IdRuns`: the ids an `IdIndex` took above every id before them, kept as runs of consecutive
//! ids with consecutive values, so that an ascending stream of ids (TigerBeetle's benchmark
//! driver's, or any client that numbers its transfers) is indexed without touching the hash
//! table: inserting id `x + 1` after `x` only lengthens a run, and a lookup is a binary search
//! over a few runs. TigerBeetle recommends ascending ids for the same reason (its LSM tree
//! appends them in order).
//!
//! Ids that ascend with gaps (time-based ids, say) each start a run of one. Such short runs are
//! moved into the hash table by the index's next `reserve` (`IdRuns::settle`), between batches,
//! so that undoing the newest insertions of a batch only ever shortens the last run, and the
//! runs that stay are at least `RUN_LEN_MIN` long (at most 2 bytes of runs per id).

use core::ops::Range;

/// Runs shorter than this move into the hash table at the next `reserve` (unless last).
pub(crate) const RUN_LEN_MIN: u64 = 16;

/// Ids `first_id..first_id + len` under values `first_value..first_value + len`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Run {
    pub(crate) first_id: u128,
    pub(crate) first_value: u64,
    pub(crate) len: u64,
}

impl Run {
    fn id_end(&self) -> u128 {
        self.first_id + u128::from(self.len)
    }

    fn value_end(&self) -> u64 {
        self.first_value + self.len
    }

    pub(crate) fn values(&self) -> Range<u64> {
        self.first_value..self.value_end()
    }
}

/// Runs in insertion order, which is both id order and value order (each run starts above
/// every id and value before it).
#[derive(Default)]
pub(crate) struct IdRuns {
    runs: Vec<Run>,
    /// Entries in all runs.
    len: u64,
    /// `runs[..settled]` are each at least `RUN_LEN_MIN` long: `settle` looks only past them.
    settled: usize,
}

impl IdRuns {
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        self.runs.capacity() * core::mem::size_of::<Run>()
    }

    /// The value of `id`, if a run holds it.
    #[inline]
    pub(crate) fn find(&self, id: u128) -> Option<u64> {
        let after = self.runs.partition_point(|run| run.first_id <= id);
        let run = self.runs.get(after.checked_sub(1)?)?;
        // `after` is past every run that starts at or below `id`, so `run` starts at or below.
        (id < run.id_end()).then(|| run.first_value + (id - run.first_id) as u64)
    }

    /// Adds `id` under `value`; both must be above every id and value the runs hold.
    pub(crate) fn push(&mut self, id: u128, value: u64) {
        if let Some(last) = self.runs.last_mut() {
            assert!(id >= last.id_end() && value >= last.value_end());
            if id == last.id_end() && value == last.value_end() {
                last.len += 1;
                self.len += 1;
                return;
            }
        }
        self.runs.push(Run {
            first_id: id,
            first_value: value,
            len: 1,
        });
        self.len += 1;
    }

    /// Whether a run holds `value`, for values asked in increasing order: `run` is where the
    /// last answer was found (0 to begin), so a pass over all values walks the runs once.
    pub(crate) fn holds_value(&self, value: u64, run: &mut usize) -> bool {
        while self
            .runs
            .get(*run)
            .is_some_and(|held| held.value_end() <= value)
        {
            *run += 1;
        }
        self.runs
            .get(*run)
            .is_some_and(|held| held.first_value <= value)
    }

    /// Undoes the newest `push`, which put `value` there.
    pub(crate) fn pop_newest(&mut self, value: u64) {
        let last = self.runs.last_mut().expect("an insertion to undo");
        assert_eq!(last.value_end() - 1, value, "undone out of order");
        last.len -= 1;
        self.len -= 1;
        if last.len == 0 {
            self.runs.pop();
            self.settled = self.settled.min(self.runs.len());
        }
    }

    /// Entries in runs that the next `settle` would move out.
    pub(crate) fn unsettled_len(&self) -> u64 {
        let end = self.unsettled_end();
        self.runs[self.settled.min(end)..end]
            .iter()
            .filter(|run| run.len < RUN_LEN_MIN)
            .map(|run| run.len)
            .sum()
    }

    /// Moves out every run shorter than `RUN_LEN_MIN` but the last (which may still grow),
    /// passing each entry to `demote` in value order; the rest stay in order.
    pub(crate) fn settle(&mut self, mut demote: impl FnMut(u128, u64)) {
        let end = self.unsettled_end();
        let start = self.settled.min(end);
        let mut kept = start;
        for at in start..end {
            let run = self.runs[at];
            if run.len < RUN_LEN_MIN {
                for offset in 0..run.len {
                    demote(run.first_id + u128::from(offset), run.first_value + offset);
                }
                self.len -= run.len;
            } else {
                self.runs[kept] = run;
                kept += 1;
            }
        }
        self.settled = kept;
        // The last run follows the runs kept.
        self.runs.drain(kept..end);
    }

    /// One past the runs `settle` looks at: all but the last.
    fn unsettled_end(&self) -> usize {
        self.runs.len().saturating_sub(1)
    }

    /// The value ranges of every run, in order.
    pub(crate) fn value_ranges(&self) -> Vec<Range<u64>> {
        self.runs.iter().map(Run::values).collect()
    }
}

/// The values of `values` outside every range of `held` (sorted, disjoint), in order.
pub(crate) fn ranges_without(values: Range<u64>, held: &[Range<u64>]) -> Vec<Range<u64>> {
    let mut gaps = Vec::new();
    let mut start = values.start;
    let first = held.partition_point(|range| range.end <= values.start);
    for range in &held[first..] {
        if range.start >= values.end {
            break;
        }
        if range.start > start {
            gaps.push(start..range.start);
        }
        start = start.max(range.end);
    }
    if start < values.end {
        gaps.push(start..values.end);
    }
    gaps
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_ids_lengthen_one_run_and_gaps_start_another() {
        let mut runs = IdRuns::default();
        for id in 10..20u128 {
            runs.push(id, id as u64 + 100);
        }
        runs.push(25, 120);
        // Consecutive ids under values with a gap (a failed event between them): a new run.
        runs.push(26, 122);
        assert_eq!(runs.runs.len(), 3);
        assert_eq!(runs.len(), 12);
        assert_eq!(runs.find(9), None);
        assert_eq!(runs.find(10), Some(110));
        assert_eq!(runs.find(19), Some(119));
        assert_eq!(runs.find(20), None);
        assert_eq!(runs.find(25), Some(120));
        assert_eq!(runs.find(26), Some(122));
        assert_eq!(runs.find(27), None);
        assert_eq!(runs.value_ranges(), vec![110..120, 120..121, 122..123]);
        runs.pop_newest(122);
        runs.pop_newest(120);
        assert_eq!(runs.runs.len(), 1);
        assert_eq!(runs.find(25), None);
    }

    #[test]
    fn settle_moves_short_runs_out_in_value_order_and_keeps_the_last() {
        let mut runs = IdRuns::default();
        let mut value = 0;
        // Runs of 3, 20, 1, 2 (last).
        for (start, len) in [(100u128, 3u64), (200, 20), (300, 1), (400, 2)] {
            for offset in 0..len {
                runs.push(start + u128::from(offset), value);
                value += 1;
            }
        }
        assert_eq!(runs.unsettled_len(), 4);
        let mut moved = Vec::new();
        runs.settle(|id, value| moved.push((id, value)));
        assert_eq!(moved, vec![(100, 0), (101, 1), (102, 2), (300, 23)]);
        assert_eq!(runs.len(), 22);
        assert_eq!(runs.find(205), Some(8));
        assert_eq!(runs.find(401), Some(25));
        assert_eq!(runs.find(100), None);
        assert_eq!(runs.unsettled_len(), 0);
        assert_eq!(runs.value_ranges(), vec![3..23, 24..26]);
    }

    #[test]
    fn ranges_without_leaves_the_gaps() {
        let held = [3..5, 8..9, 12..20];
        assert_eq!(
            ranges_without(0..30, &held),
            vec![0..3, 5..8, 9..12, 20..30]
        );
        assert_eq!(ranges_without(4..13, &held), vec![5..8, 9..12]);
        assert_eq!(ranges_without(13..19, &held), Vec::<Range<u64>>::new());
    }
}
