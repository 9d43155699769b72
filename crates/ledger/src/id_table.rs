//! `IdIndex`: id → value (an account index or a transfer handle) in 8 bytes per slot.
//!
//! The index does not store the 16-byte ids. Each slot packs a 16-bit tag from the id's hash with
//! `value + 1` in the low 48 bits (0 = empty slot); a lookup compares tags first and reads the id
//! of a candidate back from where the object lives (the accounts array, or the transfer store).
//! With a 16-bit tag, a lookup of an absent id reads the store once in 65,536 probes. This is what
//! keeps the core's heap per stored transfer small (`docs/ledger.md`).
//!
//! Linear probing, load factor at most 7/8. Removal exists only to undo the newest insertions of
//! a rolled-back linked chain, in exact reverse order, and never across a resize
//! (`reserve` is called before each batch): under those two conditions clearing the slot is
//! correct, because no entry that stays could have probed past a slot that was empty when it
//! was placed.

const VALUE_BITS: u32 = 48;
const VALUE_MASK: u64 = (1 << VALUE_BITS) - 1;
/// The largest value the index can hold (`value + 1` must fit in 48 bits).
pub(crate) const VALUE_MAX: u64 = VALUE_MASK - 1;
const CAPACITY_MIN: usize = 1024;

pub(crate) struct IdIndex {
    slots: Vec<u64>,
    count: usize,
}

/// Where a lookup ended: at the value, or at the empty slot where the id would go.
pub(crate) enum Probe {
    Found { value: u64 },
    Vacant { slot: usize },
}

/// A strong 64-bit mix of a 128-bit id (splitmix64's finaliser over both halves). Sequential and
/// structured ids spread evenly; the function is fixed, so the table is deterministic.
#[inline]
pub(crate) fn hash_id(id: u128) -> u64 {
    let mut x = (id as u64)
        ^ ((id >> 64) as u64)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .rotate_left(29);
    x ^= x >> 30;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

impl Default for IdIndex {
    fn default() -> Self {
        Self::new()
    }
}

impl IdIndex {
    pub(crate) fn new() -> Self {
        Self::with_capacity(0)
    }

    /// An index that holds `count_max` entries without growing (TigerBeetle-style static
    /// sizing: no rebuild ever stalls a batch while the count stays below it).
    pub(crate) fn with_capacity(count_max: usize) -> Self {
        let mut capacity = CAPACITY_MIN;
        while count_max * 8 > capacity * 7 {
            capacity *= 2;
        }
        Self {
            slots: vec![0; capacity],
            count: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.count
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        self.slots.capacity() * 8
    }

    /// Finds `id`; `id_of(value)` returns the id stored under a value.
    #[inline]
    pub(crate) fn probe(&self, id: u128, id_of: impl Fn(u64) -> u128) -> Probe {
        let hash = hash_id(id);
        let tag = hash >> VALUE_BITS;
        let mask = self.slots.len() - 1;
        let mut slot = (hash as usize) & mask;
        // Bounded: the table is never full (load <= 7/8), so an empty slot ends every probe.
        for _ in 0..self.slots.len() {
            let entry = self.slots[slot];
            if entry == 0 {
                return Probe::Vacant { slot };
            }
            if entry >> VALUE_BITS == tag {
                let value = (entry & VALUE_MASK) - 1;
                if id_of(value) == id {
                    return Probe::Found { value };
                }
            }
            slot = (slot + 1) & mask;
        }
        unreachable!("IdIndex has no empty slot: load factor invariant broken");
    }

    #[inline]
    pub(crate) fn get(&self, id: u128, id_of: impl Fn(u64) -> u128) -> Option<u64> {
        match self.probe(id, id_of) {
            Probe::Found { value } => Some(value),
            Probe::Vacant { .. } => None,
        }
    }

    /// Inserts at the vacant slot that `probe` returned for `id`, with no insertion or resize in
    /// between. The caller must have reserved room with `reserve`.
    #[inline]
    pub(crate) fn insert_vacant(&mut self, slot: usize, id: u128, value: u64) {
        assert!(value <= VALUE_MAX);
        assert_eq!(self.slots[slot], 0);
        assert!(
            (self.count + 1) * 8 <= self.slots.len() * 7,
            "IdIndex::reserve was not called"
        );
        let tag = hash_id(id) >> VALUE_BITS;
        self.slots[slot] = (tag << VALUE_BITS) | (value + 1);
        self.count += 1;
    }

    /// Undoes the newest insertion (see the module docs for why clearing is enough).
    pub(crate) fn remove_newest(&mut self, slot: usize, value: u64) {
        assert_eq!(self.slots[slot] & VALUE_MASK, value + 1);
        self.slots[slot] = 0;
        self.count -= 1;
    }

    /// Makes room for `additional` insertions without a resize in between. On a resize, `fill`
    /// pushes every entry of the index into the `Placer` it is given, in insertion order (so
    /// that a rebuilt index is laid out exactly as one built by inserting: deterministic); in
    /// order, the ids are read sequentially, which is what makes a rebuild of millions of
    /// entries fast.
    pub(crate) fn reserve(&mut self, additional: usize, fill: impl FnOnce(&mut Placer<'_>)) {
        let needed = self.count + additional;
        if needed * 8 <= self.slots.len() * 7 {
            return;
        }
        let mut capacity = self.slots.len();
        while needed * 8 > capacity * 7 {
            capacity *= 2;
        }
        self.slots = vec![0; capacity];
        let count = self.count;
        let placed = Placer::fill(self, fill);
        assert_eq!(placed, count, "reserve was given every entry");
    }

    /// An index of the entries `fill` pushes (in insertion order, as for `reserve`) with room
    /// for `count_max` entries in all: how a checkpoint's index comes back, since checkpoints
    /// hold no index (it would cost its capacity, not its contents, on every checkpoint).
    pub(crate) fn built(count_max: usize, fill: impl FnOnce(&mut Placer<'_>)) -> Self {
        let mut index = Self::with_capacity(count_max);
        index.count = Placer::fill(&mut index, fill);
        index
    }

    /// Puts an entry in the first empty slot from its home slot (rebuilds only).
    #[inline]
    fn place(&mut self, hash: u64, value: u64) {
        let mask = self.slots.len() - 1;
        let mut slot = (hash as usize) & mask;
        while self.slots[slot] != 0 {
            slot = (slot + 1) & mask;
        }
        self.slots[slot] = ((hash >> VALUE_BITS) << VALUE_BITS) | (value + 1);
    }

    /// Hints the CPU to fetch the slot where a probe for `id` starts: a batch prefetches a few
    /// events ahead so that the probe finds the line in cache (the index is far larger than the
    /// caches, so every probe would otherwise stall on memory).
    #[inline]
    pub(crate) fn prefetch(&self, id: u128) {
        let slot = (hash_id(id) as usize) & (self.slots.len() - 1);
        prefetch_read(&self.slots[slot]);
    }
}

impl IdIndex {
    /// The value of the first slot whose tag matches `id`, without reading the id back: a
    /// guess, right unless two ids share a tag, good only for prefetching what the value names
    /// (reading the id to verify would stall on exactly the memory being prefetched).
    #[inline]
    pub(crate) fn peek(&self, id: u128) -> Option<u64> {
        let hash = hash_id(id);
        let tag = hash >> VALUE_BITS;
        let mask = self.slots.len() - 1;
        let mut slot = (hash as usize) & mask;
        for _ in 0..PEEK_PROBES_MAX {
            let entry = self.slots[slot];
            if entry == 0 {
                return None;
            }
            if entry >> VALUE_BITS == tag {
                return Some((entry & VALUE_MASK) - 1);
            }
            slot = (slot + 1) & mask;
        }
        None
    }
}

/// Places entries into an empty table a window behind: `push` hashes each entry and prefetches
/// its home slot, and places the entry `REBUILD_WINDOW` pushes later, so that placing rarely
/// waits on memory (the table is far larger than the caches).
pub(crate) struct Placer<'a> {
    index: &'a mut IdIndex,
    window: [(u64, u64); REBUILD_WINDOW],
    pushed: usize,
}

impl Placer<'_> {
    /// Runs `fill` on a placer over `index`'s table, just allocated and so all empty; returns
    /// how many entries it placed.
    fn fill(index: &mut IdIndex, fill: impl FnOnce(&mut Placer<'_>)) -> usize {
        let mut placer = Placer {
            index,
            window: [(0, 0); REBUILD_WINDOW],
            pushed: 0,
        };
        fill(&mut placer);
        let pushed = placer.pushed;
        for index in pushed.saturating_sub(REBUILD_WINDOW)..pushed {
            let (hash, value) = placer.window[index % REBUILD_WINDOW];
            placer.index.place(hash, value);
        }
        pushed
    }

    /// The entry `value` for `id`.
    #[inline]
    pub(crate) fn push(&mut self, id: u128, value: u64) {
        assert!(value <= VALUE_MAX);
        let slots = &self.index.slots;
        // A table at its load limit has no empty slot left for `place` to find.
        assert!(
            (self.pushed + 1) * 8 <= slots.len() * 7,
            "more entries than room"
        );
        let hash = hash_id(id);
        prefetch_read(&slots[(hash as usize) & (slots.len() - 1)]);
        let at = self.pushed % REBUILD_WINDOW;
        if self.pushed >= REBUILD_WINDOW {
            let (hash, value) = self.window[at];
            self.index.place(hash, value);
        }
        self.window[at] = (hash, value);
        self.pushed += 1;
    }
}

/// A peek gives up after this many slots (it is only a hint).
const PEEK_PROBES_MAX: usize = 8;
/// Entries a rebuild hashes ahead of the one it places.
const REBUILD_WINDOW: usize = 16;

#[inline]
pub(crate) fn prefetch_read<T>(value: &T) {
    prefetch_address(value as *const T);
}

/// Hints the CPU to fetch the line at `address`, which may point anywhere (even one past the
/// end of an allocation): a prefetch never faults and never dereferences in the Rust sense.
#[inline]
pub fn prefetch_address<T>(address: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint; it never faults, and SSE is part of the x86_64 baseline.
    unsafe {
        core::arch::x86_64::_mm_prefetch(address.cast::<i8>(), core::arch::x86_64::_MM_HINT_T0);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = address;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_find_undo_across_resizes() {
        let ids: Vec<u128> = (0..20_000u128).map(|i| (i * 7919) << 64 | i).collect();
        let mut index = IdIndex::new();
        let id_of = |ids: &Vec<u128>, value: u64| ids[value as usize];
        for (value, &id) in ids.iter().enumerate() {
            index.reserve(1, |placer| {
                for earlier in 0..value as u64 {
                    placer.push(id_of(&ids, earlier), earlier);
                }
            });
            match index.probe(id, |v| id_of(&ids, v)) {
                Probe::Vacant { slot } => index.insert_vacant(slot, id, value as u64),
                Probe::Found { .. } => panic!("duplicate"),
            }
        }
        for (value, &id) in ids.iter().enumerate() {
            assert_eq!(index.get(id, |v| id_of(&ids, v)), Some(value as u64));
        }
        assert_eq!(index.get(u128::MAX - 3, |v| id_of(&ids, v)), None);

        // Undo the newest 500 in reverse order; the rest stay findable.
        let mut undo = Vec::new();
        let more: Vec<u128> = (0..500u128).map(|i| u128::MAX - 10 - i).collect();
        let all: Vec<u128> = ids.iter().chain(more.iter()).copied().collect();
        index.reserve(more.len(), |placer| {
            for value in 0..ids.len() as u64 {
                placer.push(id_of(&all, value), value);
            }
        });
        for (i, &id) in more.iter().enumerate() {
            let value = (ids.len() + i) as u64;
            match index.probe(id, |v| id_of(&all, v)) {
                Probe::Vacant { slot } => {
                    index.insert_vacant(slot, id, value);
                    undo.push((slot, value));
                }
                Probe::Found { .. } => panic!("duplicate"),
            }
        }
        for (slot, value) in undo.into_iter().rev() {
            index.remove_newest(slot, value);
        }
        assert_eq!(index.len(), ids.len());
        for (value, &id) in ids.iter().enumerate() {
            assert_eq!(index.get(id, |v| id_of(&all, v)), Some(value as u64));
        }
        for &id in &more {
            assert_eq!(index.get(id, |v| id_of(&all, v)), None);
        }
    }
}
