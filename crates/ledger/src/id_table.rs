//! `IdIndex`: id → value (an account index or a transfer handle) in 8 bytes per slot.
//!
//! The index does not store the 16-byte ids. Each slot packs a 16-bit tag from the id's hash with
//! `value + 1` in the low 48 bits (0 = empty slot); a lookup compares tags first and reads the id
//! of a candidate back from where the object lives (the accounts array, or the transfer store).
//! With a 16-bit tag, a lookup of an absent id reads the store once in 65,536 probes. This is what
//! keeps the core's heap per stored transfer small (`docs/ledger.md`).
//!
//! Linear probing, load factor at most 7/8. Removal exists only to undo the newest insertions of
//! a rolled-back linked chain, in exact reverse order, and never across a `reserve` (which is
//! called before each batch, never inside one): under those two conditions clearing the slot is
//! correct, because no entry that stays could have probed past a slot that was empty when it
//! was placed.
//!
//! Growth is incremental, so that no batch pays for the whole index (at 7 M transfers a one-shot
//! rebuild held the core for a third of a second). It has three stages, each a bounded step of
//! every `reserve` (which each batch calls first), paced by the insertions reserved so that each
//! ends before the next is due:
//!
//! 1. **Prepare.** Once the table is half full (and the previous growth is over), the next
//!    table, twice the size, is allocated and its pages are written a few at a time (a fresh
//!    allocation is only backed by memory where it is first written; inserting at random
//!    places would fault all its pages in within a batch or two: 70 ms for 128 MB here).
//! 2. **Migrate.** When the table reaches its load limit the next one takes over: every
//!    insertion goes to it, and each `reserve` moves the next run of values (handles, or account
//!    positions) from the old table's contents, in value order, so that the ids are read back
//!    sequentially. A lookup searches the new table, then the old one: an entry whose value is
//!    below the migration's cursor is in the new table already, the rest only in the old one.
//!    The moves end when half of the new table's room is used, long before it must grow
//!    again; should a caller reserve more than that at once, the rest is moved first.
//! 3. **Release.** The old table is given back to the allocator from its end, a run of slots
//!    at a time (`Vec::shrink_to`, which glibc does in place with `mremap`), instead of in one
//!    `munmap` of up to 64 MB (5–10 ms here).
//!
//! Every step depends only on the calls made, so the layout is deterministic (and no result
//! depends on the layout anyway: every hit is verified against the stored id).
//!
//! **Ascending ids skip the table.** An id above every id the index holds is absent without a
//! search, and goes to `IdRuns` (runs of consecutive ids under consecutive values) instead of a
//! random slot: for ids that ascend by one, as TigerBeetle's benchmark driver's do, inserting
//! and finding touch no table memory (under the driver the slot's prefetch and probe were half
//! of `create_transfers`' own time, each a TLB miss in a table of tens of MiB). Runs shorter than
//! `RUN_LEN_MIN` move into the table at the next `reserve` (between batches, so undo never
//! crosses it); a migration skips the values runs held when it began.

use core::ops::Range;

use crate::id_runs::{ranges_without, IdRuns};

const VALUE_BITS: u32 = 48;
const VALUE_MASK: u64 = (1 << VALUE_BITS) - 1;
/// The largest value the index can hold (`value + 1` must fit in 48 bits).
pub(crate) const VALUE_MAX: u64 = VALUE_MASK - 1;
const CAPACITY_MIN: usize = 1024;
/// The first table of `small_for_tests`: it holds 14 entries.
const TESTS_CAPACITY: usize = 16;
/// A migration moves at least this many values per `reserve`, so that small batches (one
/// transfer per request, one `reserve` each) still end it soon, at a few microseconds each.
const MIGRATION_STEP_VALUES_MIN: u64 = 64;
/// A migration moves its values this many times faster than the new table's room is used up: 2
/// ends it when half of the room is used. Faster means fewer batches that also probe the old
/// table (at 7/8 load, a miss there scans about 32 slots), but more moves in each of them:
/// what sets a growing ledger's p99 batch.
const MIGRATION_SPEEDUP: u64 = 2;
/// Slots in a 4 KiB page: preparing a table writes one slot in each.
const PAGE_SLOTS: usize = 4096 / 8;
/// A table smaller than this (256 KiB) is neither prepared nor released in steps: all of it
/// costs less than one step.
const STEPPED_SLOTS_MIN: usize = 1 << 15;
/// A release gives back at least this many slots per `reserve` (64 KiB: one `mremap`).
const RELEASE_STEP_SLOTS_MIN: usize = 1 << 13;
/// And this many per insertion reserved (128 bytes: 1 MiB per batch of 8,190).
const RELEASE_SLOTS_PER_INSERTION: usize = 16;

pub(crate) struct IdIndex {
    /// The table every insertion goes to.
    slots: Vec<u64>,
    /// Entries in `slots`.
    count: usize,
    /// The table the next growth will move to, while its pages are being written.
    next: Option<NextTable>,
    /// The table being moved into `slots`, while a growth is in progress.
    migration: Option<Migration>,
    /// A table whose entries have all moved, being given back a run of slots at a time (empty
    /// when there is none).
    released: Vec<u64>,
    /// The fewest values a migration step moves (`MIGRATION_STEP_VALUES_MIN`, or 1 in tests
    /// that want migrations to span many batches).
    step_values_min: u64,
    /// The count the index was sized for (`with_capacity`): no next table is prepared before
    /// it is passed, so that an index sized up front never holds a second table.
    count_sized: usize,
    /// Ids taken above every id before them (see the module docs).
    runs: IdRuns,
    /// At least every id the index holds (0, never an id, when it holds none): an id above it
    /// is absent. Undo leaves it where it was (it stays a bound).
    id_bound: u128,
}

/// A table allocated ahead of its growth, whose pages are written a few per `reserve`.
struct NextTable {
    slots: Vec<u64>,
    /// Slots `0..touched` have been written (a multiple of `PAGE_SLOTS`, or the length).
    touched: usize,
    /// Slots to write per insertion reserved, so that all are written by the growth.
    slots_per_insertion: usize,
}

/// An old table whose entries move to the new one a run of values at a time.
struct Migration {
    slots: Vec<u64>,
    /// Entries in `slots`, all with a value below `values_end`.
    count: usize,
    /// One past the highest value the old table can hold: new values go to the new table.
    values_end: u64,
    /// Entries with a value below this have moved.
    cursor: u64,
    /// Entries moved so far (at most `count`).
    moved: usize,
    /// Values to move per insertion reserved, so that the moves end in time.
    values_per_insertion: u64,
    /// The values the runs held when the growth began (sorted): not in the old table, so not
    /// moved.
    skip: Vec<Range<u64>>,
}

/// Where a lookup ended: at the value, or where the id would go.
pub(crate) enum Probe {
    Found { value: u64 },
    Vacant { at: Vacancy },
}

/// Where an absent id goes: the empty slot (of the new table) that ended its probe, or the
/// runs, for an id above every id held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Vacancy {
    Slot(usize),
    Above,
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

/// The slots a table of `capacity` may fill (7/8).
fn load_max(capacity: usize) -> usize {
    capacity / 8 * 7
}

/// The smallest table (a power of two, at least `CAPACITY_MIN`) that holds `count_max`.
fn capacity_for(count_max: usize) -> usize {
    let mut capacity = CAPACITY_MIN;
    while count_max > load_max(capacity) {
        capacity *= 2;
    }
    capacity
}

/// Searches one table for `id` from its home slot: `Ok(value)`, or `Err(slot)`, the empty slot
/// that ended the probe.
#[inline]
fn search(slots: &[u64], hash: u64, id: u128, id_of: &impl Fn(u64) -> u128) -> Result<u64, usize> {
    let tag = hash >> VALUE_BITS;
    let mask = slots.len() - 1;
    let mut slot = (hash as usize) & mask;
    // Bounded: a table is never full (load <= 7/8), so an empty slot ends every probe.
    for _ in 0..slots.len() {
        let entry = slots[slot];
        if entry == 0 {
            return Err(slot);
        }
        if entry >> VALUE_BITS == tag {
            let value = (entry & VALUE_MASK) - 1;
            if id_of(value) == id {
                return Ok(value);
            }
        }
        slot = (slot + 1) & mask;
    }
    unreachable!("IdIndex has no empty slot: load factor invariant broken");
}

/// The value of the first slot of one table whose tag matches (see `IdIndex::peek`).
#[inline]
fn search_tag(slots: &[u64], hash: u64) -> Option<u64> {
    let tag = hash >> VALUE_BITS;
    let mask = slots.len() - 1;
    let mut slot = (hash as usize) & mask;
    for _ in 0..PEEK_PROBES_MAX {
        let entry = slots[slot];
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

/// Writes one slot of each page of an empty run of slots, so that every page is backed by
/// memory before the first probe reads it. A probe that reads a page no one has written maps
/// the shared zero page; the insertion that then writes it faults a second time, copies the
/// page and interrupts every other core to flush the old mapping from its TLB: on a fresh
/// statically sized table that was one fault and one inter-processor interrupt per insertion.
fn touch_pages(slots: &mut [u64]) {
    for slot in slots.iter_mut().step_by(PAGE_SLOTS) {
        // Pair: the run is still empty, so this write changes no value (only which pages are
        // backed by memory).
        debug_assert_eq!(*slot, 0);
        // SAFETY: `slot` is a valid, aligned `u64`; a volatile write of the zero it holds, so
        // that the compiler cannot drop it as redundant.
        unsafe { core::ptr::write_volatile(slot, 0) };
    }
}

/// A zeroed table of `capacity` slots with every page backed (see `touch_pages`): for a table
/// allocated whole, not prepared in steps.
fn table_backed(capacity: usize) -> Vec<u64> {
    let mut slots = vec![0; capacity];
    touch_pages(&mut slots);
    slots
}

impl IdIndex {
    pub(crate) fn new() -> Self {
        Self::with_capacity(0)
    }

    /// An index that holds `count_max` entries without growing (TigerBeetle-style static
    /// sizing: not even a migration runs while the count stays below it).
    pub(crate) fn with_capacity(count_max: usize) -> Self {
        Self {
            slots: table_backed(capacity_for(count_max)),
            count: 0,
            next: None,
            migration: None,
            released: Vec::new(),
            step_values_min: MIGRATION_STEP_VALUES_MIN,
            count_sized: count_max,
            runs: IdRuns::default(),
            id_bound: 0,
        }
    }

    /// An index that starts at `TESTS_CAPACITY` slots and moves as few values per step as it
    /// may: so that a test of a few hundred insertions goes through several growths, each
    /// spanning several batches.
    pub(crate) fn small_for_tests() -> Self {
        Self {
            slots: vec![0; TESTS_CAPACITY],
            count: 0,
            next: None,
            migration: None,
            released: Vec::new(),
            step_values_min: 1,
            count_sized: 0,
            runs: IdRuns::default(),
            id_bound: 0,
        }
    }

    /// Entries in the index (each once, whether it has moved yet or not).
    pub(crate) fn len(&self) -> usize {
        self.table_len() + self.runs.len() as usize
    }

    /// Entries in the tables, the new one's and those still to move: what the load limit
    /// counts.
    fn table_len(&self) -> usize {
        match &self.migration {
            None => self.count,
            Some(migration) => self.count + (migration.count - migration.moved),
        }
    }

    /// Whether a growth is still moving entries (tests and benchmarks).
    pub(crate) fn is_migrating(&self) -> bool {
        self.migration.is_some()
    }

    /// Whether a growth is in any stage: preparing, migrating or releasing.
    pub(crate) fn is_growing(&self) -> bool {
        self.next.is_some() || self.migration.is_some() || !self.released.is_empty()
    }

    /// Heap held by the tables (capacity; of a table being prepared, only the pages written
    /// so far: the rest is address space, not memory, until it takes over).
    pub(crate) fn heap_bytes(&self) -> usize {
        let next = self.next.as_ref().map_or(0, |next| next.touched);
        let old = self
            .migration
            .as_ref()
            .map_or(0, |migration| migration.slots.capacity());
        (self.slots.capacity() + next + old + self.released.capacity()) * 8 + self.runs.heap_bytes()
    }

    /// Finds `id`; `id_of(value)` returns the id stored under a value.
    #[inline]
    pub(crate) fn probe(&self, id: u128, id_of: impl Fn(u64) -> u128) -> Probe {
        if id > self.id_bound {
            return Probe::Vacant { at: Vacancy::Above };
        }
        if let Some(value) = self.runs.find(id) {
            return Probe::Found { value };
        }
        let hash = hash_id(id);
        let slot = match search(&self.slots, hash, id, &id_of) {
            Ok(value) => return Probe::Found { value },
            Err(slot) => slot,
        };
        if let Some(migration) = &self.migration {
            if let Ok(value) = search(&migration.slots, hash, id, &id_of) {
                // An entry below the cursor has moved, so the new table would have had it.
                assert!(value >= migration.cursor, "a moved entry is missing");
                assert!(value < migration.values_end);
                return Probe::Found { value };
            }
        }
        Probe::Vacant {
            at: Vacancy::Slot(slot),
        }
    }

    #[inline]
    pub(crate) fn get(&self, id: u128, id_of: impl Fn(u64) -> u128) -> Option<u64> {
        match self.probe(id, id_of) {
            Probe::Found { value } => Some(value),
            Probe::Vacant { .. } => None,
        }
    }

    /// Inserts where `probe` said `id` goes, with no insertion or `reserve` in between. The
    /// caller must have reserved room with `reserve`.
    #[inline]
    pub(crate) fn insert_vacant(&mut self, at: Vacancy, id: u128, value: u64) {
        assert!(value <= VALUE_MAX);
        let slot = match at {
            Vacancy::Above => {
                assert!(id > self.id_bound);
                self.runs.push(id, value);
                self.id_bound = id;
                return;
            }
            Vacancy::Slot(slot) => slot,
        };
        assert!(id <= self.id_bound);
        assert_eq!(self.slots[slot], 0);
        // Every entry still in the old table will move here too.
        assert!(
            self.table_len() < load_max(self.slots.len()),
            "IdIndex::reserve was not called"
        );
        if let Some(migration) = &self.migration {
            assert!(
                value >= migration.values_end,
                "the old table's values are closed"
            );
        }
        let tag = hash_id(id) >> VALUE_BITS;
        self.slots[slot] = (tag << VALUE_BITS) | (value + 1);
        self.count += 1;
    }

    /// Undoes the newest insertion (see the module docs for why clearing is enough).
    pub(crate) fn remove_newest(&mut self, at: Vacancy, value: u64) {
        let slot = match at {
            Vacancy::Above => return self.runs.pop_newest(value),
            Vacancy::Slot(slot) => slot,
        };
        assert_eq!(self.slots[slot] & VALUE_MASK, value + 1);
        self.slots[slot] = 0;
        self.count -= 1;
    }

    /// Makes room for `additional` insertions without any change in between, and takes the
    /// next step of a growth in progress (see the module docs). `values_end` is one past every
    /// value inserted so far (the next handle, or the number of accounts): the values a new
    /// migration leaves in the old table. `fill(placer, values)` must push the entry of every
    /// value of `values` that the index holds, in value order (so that the ids are read
    /// sequentially, which is what makes moving millions of entries fast). Short runs move into
    /// the table here, after the growth's step.
    pub(crate) fn reserve(
        &mut self,
        additional: usize,
        values_end: u64,
        mut fill: impl FnMut(&mut Placer<'_>, Range<u64>),
    ) {
        // Room for the batch and for the runs that move in now.
        let settling = self.runs.unsettled_len() as usize;
        self.reserve_table(additional + settling, values_end, &mut fill);
        if settling > 0 {
            self.settle();
        }
    }

    /// Moves the short runs (all but the last) into the table, which has room for them.
    fn settle(&mut self) {
        let mut runs = core::mem::take(&mut self.runs);
        Placer::fill(self, 0..VALUE_MAX + 1, |placer, _| {
            runs.settle(|id, value| placer.place_windowed(id, value));
        });
        self.runs = runs;
    }

    fn reserve_table(
        &mut self,
        additional: usize,
        values_end: u64,
        mut fill: impl FnMut(&mut Placer<'_>, Range<u64>),
    ) {
        self.release_step(additional);
        if let Some(migration) = &self.migration {
            assert!(values_end >= migration.values_end);
            let step = (additional as u64)
                .saturating_mul(migration.values_per_insertion)
                .max(self.step_values_min);
            self.migrate(step, &mut fill);
        }
        self.prepare_step(additional);
        let needed = self.table_len() + additional;
        if needed > load_max(self.slots.len()) {
            self.grow(needed, additional, values_end, &mut fill);
        } else if self.next.is_none()
            && !self.is_growing()
            && self.slots.len() >= STEPPED_SLOTS_MIN
            && self.table_len() >= self.slots.len() / 2
            && self.table_len() > self.count_sized
        {
            // Half full (and past what it was sized for): allocate the next table and write
            // its pages by the time this one is full (each insertion reserved uses at most one
            // slot of the room left).
            let slots = vec![0; self.slots.len() * 2];
            let room = load_max(self.slots.len()) - self.table_len();
            let slots_per_insertion = slots.len().div_ceil(room.max(1));
            self.next = Some(NextTable {
                slots,
                touched: 0,
                slots_per_insertion,
            });
            self.prepare_step(additional);
        }
    }

    /// Switches to a larger table and begins moving the entries to it.
    fn grow(
        &mut self,
        needed: usize,
        additional: usize,
        values_end: u64,
        fill: &mut impl FnMut(&mut Placer<'_>, Range<u64>),
    ) {
        // A growth before the last one ended: only a caller reserving more than half the room
        // at once gets here (the steps keep pace with batches). Finish it whole.
        self.migrate(u64::MAX, fill);
        assert!(self.migration.is_none());
        self.released = Vec::new();
        let count = self.count;
        let capacity = capacity_for(needed.max(load_max(self.slots.len()) + 1));
        let slots = match self.next.take() {
            Some(next) if next.slots.len() == capacity => next.slots,
            // Not prepared in steps: a small table, or a reservation of more than half the room
            // at once (`--transfers-max` at start-up, recovery's replay). Its pages are written
            // here, in one go, rather than by the probes and insertions that follow.
            _ => table_backed(capacity),
        };
        assert_eq!(slots.len(), capacity);
        let slots = core::mem::replace(&mut self.slots, slots);
        self.count = 0;
        let room = load_max(capacity) - needed + additional;
        // Move `values_end` values while at most half of `room` is used (at least 1 a step).
        let values_per_insertion = (values_end * MIGRATION_SPEEDUP)
            .div_ceil(room as u64)
            .max(1);
        self.migration = Some(Migration {
            slots,
            count,
            values_end,
            cursor: 0,
            moved: 0,
            values_per_insertion,
            skip: self.runs.value_ranges(),
        });
        let step = (additional as u64)
            .saturating_mul(values_per_insertion)
            .max(self.step_values_min);
        self.migrate(step, fill);
    }

    /// Writes the next run of the next table's pages.
    fn prepare_step(&mut self, additional: usize) {
        let Some(next) = &mut self.next else {
            return;
        };
        let step = additional
            .saturating_mul(next.slots_per_insertion)
            .max(PAGE_SLOTS);
        let end = next
            .touched
            .saturating_add(step)
            .next_multiple_of(PAGE_SLOTS)
            .min(next.slots.len());
        touch_pages(&mut next.slots[next.touched..end]);
        next.touched = end;
    }

    /// Gives back the next run of slots of a table whose entries have all moved.
    fn release_step(&mut self, additional: usize) {
        if self.released.is_empty() {
            return;
        }
        let step = additional
            .saturating_mul(RELEASE_SLOTS_PER_INSERTION)
            .max(RELEASE_STEP_SLOTS_MIN);
        if self.released.len() <= step {
            self.released = Vec::new();
        } else {
            let len = self.released.len() - step;
            self.released.truncate(len);
            self.released.shrink_to(len);
        }
    }

    /// Moves the entries of the next `step` values of the migration, and ends it when they
    /// are all moved.
    fn migrate(&mut self, step: u64, fill: &mut impl FnMut(&mut Placer<'_>, Range<u64>)) {
        let Some(migration) = &self.migration else {
            return;
        };
        let start = migration.cursor;
        let end = migration.values_end.min(start.saturating_add(step));
        let mut moved = 0;
        for values in ranges_without(start..end, &migration.skip) {
            moved += Placer::fill(self, values, |placer, values| fill(placer, values));
        }
        let migration = self.migration.as_mut().expect("migrating");
        migration.cursor = end;
        migration.moved += moved;
        assert!(
            migration.moved <= migration.count,
            "more entries than the old table held"
        );
        if end == migration.values_end {
            // Pair: every entry of the old table has moved.
            assert_eq!(migration.moved, migration.count, "fill skipped entries");
            let old = self.migration.take().expect("migrating").slots;
            if old.len() >= STEPPED_SLOTS_MIN {
                assert!(self.released.is_empty());
                self.released = old;
            }
        }
    }

    /// An index of the entries `fill` pushes for `values` (in value order, as for `reserve`)
    /// with room for `count_max` entries in all: how a checkpoint's index comes back, since
    /// checkpoints hold no index (it would cost its capacity, not its contents, on every
    /// checkpoint). Two passes: the first forms the runs and counts what goes to the table, the
    /// second fills a table sized for that (and for the room beyond the entries), so that a
    /// restored index of ascending ids is as small as the live one was.
    pub(crate) fn built(
        count_max: usize,
        values: Range<u64>,
        mut fill: impl FnMut(&mut Placer<'_>, Range<u64>),
    ) -> Self {
        let mut index = Self::with_capacity(0);
        let mut placer = Placer::new(&mut index, values.clone());
        placer.route = Route::RunsCounting;
        let table_entries = placer.run(&mut fill);
        let room = count_max.saturating_sub(index.runs.len() as usize + table_entries);
        let table_count_max = table_entries + room;
        index.slots = table_backed(capacity_for(table_count_max));
        index.count_sized = table_count_max;
        let mut placer = Placer::new(&mut index, values);
        placer.route = Route::TableBesideRuns { run: 0 };
        let placed = placer.run(fill);
        // Pair with the first pass: the table took what it counted.
        assert_eq!(placed, table_entries);
        index
    }

    /// Puts an entry in the first empty slot from its home slot (rebuilds and moves only).
    #[inline]
    fn place(&mut self, hash: u64, value: u64) {
        let mask = self.slots.len() - 1;
        let mut slot = (hash as usize) & mask;
        while self.slots[slot] != 0 {
            slot = (slot + 1) & mask;
        }
        self.slots[slot] = ((hash >> VALUE_BITS) << VALUE_BITS) | (value + 1);
        self.count += 1;
    }

    /// Hints the CPU to fetch the slot where a probe for `id` starts (in both tables while a
    /// migration runs): a batch prefetches a few events ahead so that the probe finds the line
    /// in cache (the index is far larger than the caches, so every probe would otherwise stall
    /// on memory).
    #[inline]
    pub(crate) fn prefetch(&self, id: u128) {
        if id > self.id_bound {
            // Most likely still above when its turn comes: then it goes to the runs.
            return;
        }
        let hash = hash_id(id) as usize;
        prefetch_read(&self.slots[hash & (self.slots.len() - 1)]);
        if let Some(migration) = &self.migration {
            // The old table is at its load limit, where a miss scans about 4 lines: fetch two.
            let mask = migration.slots.len() - 1;
            prefetch_read(&migration.slots[hash & mask]);
            prefetch_read(&migration.slots[(hash + 8) & mask]);
        }
    }
}

impl IdIndex {
    /// The value of the first slot whose tag matches `id` (in the new table, then the old),
    /// without reading the id back: a guess, right unless two ids share a tag, good only for
    /// prefetching what the value names (reading the id to verify would stall on exactly the
    /// memory being prefetched).
    #[inline]
    pub(crate) fn peek(&self, id: u128) -> Option<u64> {
        if id > self.id_bound {
            return None;
        }
        if let Some(value) = self.runs.find(id) {
            return Some(value);
        }
        let hash = hash_id(id);
        search_tag(&self.slots, hash).or_else(|| {
            self.migration
                .as_ref()
                .and_then(|migration| search_tag(&migration.slots, hash))
        })
    }
}

/// Places entries a window behind: `push` hashes each entry and prefetches its home slot, and
/// places the entry `REBUILD_WINDOW` pushes later, so that placing rarely waits on memory (the
/// table is far larger than the caches).
pub(crate) struct Placer<'a> {
    index: &'a mut IdIndex,
    window: [(u64, u64); REBUILD_WINDOW],
    /// Entries placed in the table (or waiting in the window to be).
    placed: usize,
    /// Entries in the table before the first push.
    count_start: usize,
    /// The values this fill may push, in increasing order: the next must be at least `start`.
    values: Range<u64>,
    /// Where pushed entries go.
    route: Route,
    /// Entries the first pass of a rebuild sends to the table.
    counted: usize,
}

/// Where a `Placer` puts what is pushed.
#[derive(Clone, Copy)]
enum Route {
    /// Into the table (a migration, whose values the runs do not hold, or short runs moving).
    Table,
    /// A rebuild's first pass: an id above every id before it to the runs; the rest only
    /// counted.
    RunsCounting,
    /// A rebuild's second pass: into the table, but for the values the runs hold (`run` is
    /// the first run that may hold the next value: pushes come in value order).
    TableBesideRuns { run: usize },
}

impl<'a> Placer<'a> {
    fn new(index: &'a mut IdIndex, values: Range<u64>) -> Placer<'a> {
        let count_start = index.count;
        Placer {
            index,
            window: [(0, 0); REBUILD_WINDOW],
            placed: 0,
            count_start,
            values,
            route: Route::Table,
            counted: 0,
        }
    }

    /// Runs `fill` on a placer over `index`'s table for the values of `values`; returns how
    /// many entries it placed in the table (or, on a rebuild's first pass, counted for it).
    fn fill(
        index: &mut IdIndex,
        values: Range<u64>,
        fill: impl FnOnce(&mut Placer<'_>, Range<u64>),
    ) -> usize {
        Placer::new(index, values).run(fill)
    }

    fn run(mut self, fill: impl FnOnce(&mut Placer<'_>, Range<u64>)) -> usize {
        let values = self.values.clone();
        fill(&mut self, values);
        let placed = self.placed;
        for index in placed.saturating_sub(REBUILD_WINDOW)..placed {
            let (hash, value) = self.window[index % REBUILD_WINDOW];
            self.index.place(hash, value);
        }
        // Pair with the pushes: each placed once.
        assert_eq!(self.index.count, self.count_start + placed);
        placed + self.counted
    }

    /// The entry `value` for `id`.
    #[inline]
    pub(crate) fn push(&mut self, id: u128, value: u64) {
        assert!(value <= VALUE_MAX);
        assert!(
            self.values.contains(&value),
            "a value outside the fill's run, or out of order"
        );
        self.values.start = value + 1;
        match self.route {
            Route::Table => self.place_windowed(id, value),
            Route::RunsCounting if id > self.index.id_bound => {
                self.index.runs.push(id, value);
                self.index.id_bound = id;
                // A run that can no longer grow and is short goes to the table, so that a
                // rebuild of ids ascending with gaps never holds them all as runs.
                let counted = &mut self.counted;
                self.index.runs.settle(|_, _| *counted += 1);
            }
            Route::RunsCounting => self.counted += 1,
            Route::TableBesideRuns { mut run } => {
                let held = self.index.runs.holds_value(value, &mut run);
                self.route = Route::TableBesideRuns { run };
                if !held {
                    self.place_windowed(id, value);
                }
            }
        }
    }

    /// Places the entry `value` for `id` in the table, `REBUILD_WINDOW` entries later.
    #[inline]
    fn place_windowed(&mut self, id: u128, value: u64) {
        let slots = &self.index.slots;
        // A table at its load limit has no empty slot left for `place` to find.
        assert!(
            self.count_start + self.placed < load_max(slots.len()),
            "more entries than room"
        );
        let hash = hash_id(id);
        prefetch_read(&slots[(hash as usize) & (slots.len() - 1)]);
        let at = self.placed % REBUILD_WINDOW;
        if self.placed >= REBUILD_WINDOW {
            let (hash, value) = self.window[at];
            self.index.place(hash, value);
        }
        self.window[at] = (hash, value);
        self.placed += 1;
    }
}

/// A peek gives up after this many slots (it is only a hint).
const PEEK_PROBES_MAX: usize = 8;
/// Entries a rebuild hashes ahead of the one it places.
const REBUILD_WINDOW: usize = 16;

#[inline]
pub(crate) fn prefetch_read<T>(value: &T) {
    // Every line the value spans: an `Account` (128 bytes, 16-aligned) lies across three.
    let address = core::ptr::from_ref(value).cast::<u8>();
    let first = (address as usize) % CACHE_LINE_BYTES;
    let mut offset = 0;
    while offset < first + core::mem::size_of::<T>() {
        prefetch_address(address.wrapping_sub(first).wrapping_add(offset));
        offset += CACHE_LINE_BYTES;
    }
}

const CACHE_LINE_BYTES: usize = 64;

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

    /// The ids of values `0..n`: structured, so that neighbours share bits, and descending, so
    /// that all but the first go to the table (the runs have tests of their own).
    fn ids(n: u64) -> Vec<u128> {
        (0..u128::from(n))
            .map(|i| ((1 << 40) - i * 7919) << 64 | i)
            .collect()
    }

    /// Pushes the values of a run that the index holds: all but those `undone` (as the ledger
    /// skips the handles of failed events).
    fn fill_from<'a>(
        ids: &'a [u128],
        undone: &'a [bool],
    ) -> impl FnMut(&mut Placer<'_>, Range<u64>) + 'a {
        |placer, values| {
            for value in values {
                if !undone.get(value as usize).copied().unwrap_or(false) {
                    placer.push(ids[value as usize], value);
                }
            }
        }
    }

    /// Inserts `ids[values]` one batch: reserve, then probe and insert each.
    fn insert_batch(
        index: &mut IdIndex,
        ids: &[u128],
        undone: &[bool],
        values: Range<u64>,
    ) -> Vec<(Vacancy, u64)> {
        index.reserve(
            (values.end - values.start) as usize,
            values.start,
            fill_from(ids, undone),
        );
        let mut inserted = Vec::new();
        for value in values {
            let id = ids[value as usize];
            match index.probe(id, |v| ids[v as usize]) {
                Probe::Vacant { at } => {
                    index.insert_vacant(at, id, value);
                    inserted.push((at, value));
                }
                Probe::Found { .. } => panic!("duplicate"),
            }
        }
        inserted
    }

    #[test]
    fn insert_find_undo_across_growths() {
        let n = 20_000u64;
        let all = ids(n + 500);
        let mut index = IdIndex::new();
        let mut growths = 0;
        for value in 0..n {
            let migrating = index.is_migrating();
            insert_batch(&mut index, &all, &[], value..value + 1);
            growths += usize::from(!migrating && index.is_migrating());
            assert_eq!(index.len(), value as usize + 1);
            // Every entry is found, moved or not (checked at a few points: the loop is long).
            if value % 1_999 == 0 {
                for earlier in 0..=value {
                    let found = index.get(all[earlier as usize], |v| all[v as usize]);
                    assert_eq!(found, Some(earlier));
                }
            }
        }
        // 1,024 slots hold 896; 20,000 need 32,768: five doublings, each migrated.
        assert_eq!(growths, 5);
        for value in 0..n {
            assert_eq!(
                index.get(all[value as usize], |v| all[v as usize]),
                Some(value)
            );
        }
        assert_eq!(index.get(u128::MAX - 3, |v| all[v as usize]), None);

        // Undo the newest 500 in reverse order; the rest stay findable.
        let undo = insert_batch(&mut index, &all, &[], n..n + 500);
        for (slot, value) in undo.into_iter().rev() {
            index.remove_newest(slot, value);
        }
        assert_eq!(index.len(), n as usize);
        for value in 0..n {
            assert_eq!(
                index.get(all[value as usize], |v| all[v as usize]),
                Some(value)
            );
        }
        for value in n..n + 500 {
            assert_eq!(index.get(all[value as usize], |v| all[v as usize]), None);
        }
    }

    /// A growth moves a bounded run per `reserve`, lookups see every entry while it runs, it
    /// ends before the new table fills, and a batch undone during it leaves the rest intact.
    #[test]
    fn migration_is_incremental_and_undoable() {
        let batch = 100u64;
        let all = ids(400_000);
        let mut index = IdIndex::new();
        let mut next = 0u64;
        let mut steps_max = 0usize;
        let mut migrating_batches = 0;
        let mut undone = vec![false; all.len()];
        let mut growths = 0;
        let mut prepared_growths = 0;
        let mut released_max = 0;
        while next + batch <= all.len() as u64 {
            let migrating = index.is_migrating();
            let len_before = index.len();
            let capacity = index.slots.len();
            let prepared = index
                .next
                .as_ref()
                .map(|next| (next.slots.as_ptr(), next.touched == next.slots.len()));
            let undo = next.is_multiple_of(7 * batch);
            let inserted = insert_batch(&mut index, &all, &undone, next..next + batch);
            if migrating || index.is_migrating() {
                migrating_batches += 1;
            }
            if index.slots.len() != capacity {
                // Each migration ended before its table had to grow again (no fallback).
                assert!(!migrating);
                growths += 1;
                if capacity >= STEPPED_SLOTS_MIN {
                    // A large table grows into the one prepared for it, all of it written.
                    assert_eq!(prepared, Some((index.slots.as_ptr(), true)));
                    prepared_growths += 1;
                }
            }
            released_max = released_max.max(index.released.len());
            if let Some(next) = &index.next {
                assert!(index.migration.is_none() && index.released.is_empty());
                assert!(next.touched <= next.slots.len());
            }
            if undo {
                for (slot, value) in inserted.into_iter().rev() {
                    index.remove_newest(slot, value);
                }
                assert_eq!(index.len(), len_before);
                // Undone values stay taken (as failed handles do): the next batch starts after.
                for value in next..next + batch {
                    assert_eq!(index.get(all[value as usize], |v| all[v as usize]), None);
                    undone[value as usize] = true;
                }
            }
            if let Some(migration) = &index.migration {
                // Bounded: one step moves at most values_per_insertion per insertion reserved.
                let step = (batch * migration.values_per_insertion).max(MIGRATION_STEP_VALUES_MIN);
                assert!(migration.cursor <= step * (migrating_batches as u64));
                steps_max = steps_max.max(step as usize);
                // The new table still has room for what remains to move.
                assert!(index.len() <= load_max(index.slots.len()));
            }
            next += batch;
        }
        assert!(growths >= 7, "{growths} growths");
        assert!(prepared_growths >= 2, "{prepared_growths} prepared growths");
        // A moved table of 32 Ki slots was released in steps: seen part-way.
        assert!(released_max >= STEPPED_SLOTS_MIN / 2, "{released_max}");
        assert!(
            steps_max > 0 && steps_max <= 4 * batch as usize + MIGRATION_STEP_VALUES_MIN as usize
        );
        for value in 0..next {
            let undone = (value / batch * batch).is_multiple_of(7 * batch);
            let expected = (!undone).then_some(value);
            assert_eq!(
                index.get(all[value as usize], |v| all[v as usize]),
                expected
            );
        }
    }

    /// An index sized up front holds no second table while it stays within its size, even past
    /// half full; beyond it, it prepares and grows like any other.
    #[test]
    fn sized_index_prepares_only_past_its_size() {
        let sized = 100_000u64;
        let all = ids(2 * sized);
        let mut index = IdIndex::with_capacity(sized as usize);
        let capacity = index.slots.len();
        for start in (0..sized).step_by(1_000) {
            insert_batch(&mut index, &all, &[], start..start + 1_000);
            assert!(!index.is_growing());
        }
        let mut start = sized;
        while index.slots.len() == capacity {
            insert_batch(&mut index, &all, &[], start..start + 1_000);
            start += 1_000;
        }
        assert!(index.is_migrating());
    }

    /// Reserving more than the room left finishes the migration first, then grows again.
    #[test]
    fn reserving_past_the_room_finishes_the_migration() {
        let all = ids(50_000);
        let mut index = IdIndex::new();
        let mut next = 0;
        while !index.is_migrating() || index.len() < 3_000 {
            insert_batch(&mut index, &all, &[], next..next + 10);
            next += 10;
        }
        assert!(index.is_migrating());
        let capacity = index.slots.len();
        insert_batch(&mut index, &all, &[], next..next + 40_000);
        next += 40_000;
        assert!(index.slots.len() > capacity);
        for value in 0..next {
            assert_eq!(
                index.get(all[value as usize], |v| all[v as usize]),
                Some(value)
            );
        }
        while index.is_migrating() {
            index.reserve(0, next, fill_from(&all, &[]));
        }
        assert_eq!(index.len(), next as usize);
    }

    /// The same calls give the same tables (the layout is deterministic), and `built` finds
    /// the same entries.
    #[test]
    fn growth_is_deterministic() {
        let all = ids(30_000);
        let run = || {
            let mut index = IdIndex::new();
            for start in (0..30_000).step_by(300) {
                insert_batch(&mut index, &all, &[], start..start + 300);
            }
            index
        };
        let (a, b) = (run(), run());
        assert_eq!(a.slots, b.slots);
        assert_eq!(
            a.migration.as_ref().map(|m| (&m.slots, m.cursor)),
            b.migration.as_ref().map(|m| (&m.slots, m.cursor))
        );
        let built = IdIndex::built(30_000, 0..30_000, fill_from(&all, &[]));
        for value in 0..30_000 {
            let id = all[value as usize];
            assert_eq!(
                built.get(id, |v| all[v as usize]),
                a.get(id, |v| all[v as usize])
            );
        }
    }

    /// Ids ascending by one, live or rebuilt, are a run and an empty table: the table only ever
    /// has room for a batch, and a rebuild sizes it for the room asked, not for the runs.
    #[test]
    fn ascending_ids_are_one_run_live_and_rebuilt() {
        let n = 100_000u64;
        let id_of = |value: u64| u128::from(value) + 1_000;
        let mut index = IdIndex::new();
        for start in (0..n).step_by(1_000) {
            index.reserve(1_000, start, |_, _| unreachable!("nothing to move"));
            for value in start..start + 1_000 {
                let Probe::Vacant { at } = index.probe(id_of(value), id_of) else {
                    panic!("absent")
                };
                assert_eq!(at, Vacancy::Above);
                index.insert_vacant(at, id_of(value), value);
            }
        }
        assert_eq!((index.len(), index.count), (n as usize, 0));
        // Room for one batch, which might have gone to the table.
        assert_eq!(index.slots.len(), capacity_for(1_000));
        assert_eq!(index.runs.value_ranges(), vec![0..n]);
        let built = IdIndex::built(n as usize + 10, 0..n, |placer, values| {
            for value in values {
                placer.push(id_of(value), value);
            }
        });
        assert_eq!((built.len(), built.count), (n as usize, 0));
        assert_eq!(built.slots.len(), CAPACITY_MIN);
        assert_eq!(built.get(id_of(77_777), id_of), Some(77_777));
        assert_eq!(built.get(id_of(n), id_of), None);
    }

    /// How a test batch picks its next id.
    #[derive(Clone, Debug)]
    enum Pick {
        /// One above the highest id so far: lengthens the last run.
        Next,
        /// Above the highest id by a gap: starts a run.
        Gap(u128),
        /// Any id of a small space: mostly below the highest (the table), sometimes taken.
        Small(u128),
        /// An id the index holds (a retry), if any.
        Held(usize),
    }

    fn pick() -> impl Strategy<Value = Pick> {
        prop_oneof![
            8 => Just(Pick::Next),
            3 => (2..40u128).prop_map(Pick::Gap),
            3 => (1..=3_000u128).prop_map(Pick::Small),
            1 => any::<usize>().prop_map(Pick::Held),
        ]
    }

    use proptest::prelude::*;
    use std::collections::BTreeMap;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Ids ascending by one, with gaps, below the highest and retried, in batches whose
        /// newest insertions are sometimes undone, through growths: the index finds exactly
        /// what a map holds, and a rebuild of that content finds the same.
        #[test]
        fn runs_and_table_hold_what_a_map_holds(
            batches in prop::collection::vec(
                (prop::collection::vec(pick(), 1..60), 0..8usize, prop::bool::weighted(0.3)),
                1..80,
            )
        ) {
            let mut index = IdIndex::small_for_tests();
            // value -> id, for the fill; id -> value, for the checks.
            let mut by_value: BTreeMap<u64, u128> = BTreeMap::new();
            let mut by_id: BTreeMap<u128, u64> = BTreeMap::new();
            let mut id_max: u128 = 0;
            let mut values_end: u64 = 0;
            for (picks, undo_count, undo) in batches {
                {
                    let by_value = &by_value;
                    index.reserve(picks.len(), values_end, |placer, values| {
                        for (&value, &id) in by_value.range(values) {
                            placer.push(id, value);
                        }
                    });
                }
                let mut inserted = Vec::new();
                for pick in picks {
                    let id = match pick {
                        Pick::Next => id_max + 1,
                        Pick::Gap(gap) => id_max + gap,
                        Pick::Small(id) => id,
                        Pick::Held(at) if !by_id.is_empty() => {
                            *by_id.keys().nth(at % by_id.len()).expect("in range")
                        }
                        Pick::Held(_) => id_max + 1,
                    };
                    // Every pick takes a value, as every event takes a handle.
                    let value = values_end;
                    values_end += 1;
                    let by_value_ref = &by_value;
                    let id_of = |v: u64| by_value_ref[&v];
                    match index.probe(id, id_of) {
                        Probe::Found { value: found } => {
                            prop_assert_eq!(Some(&found), by_id.get(&id));
                        }
                        Probe::Vacant { at } => {
                            prop_assert!(!by_id.contains_key(&id));
                            prop_assert_eq!(at == Vacancy::Above, id > id_max);
                            index.insert_vacant(at, id, value);
                            id_max = id_max.max(id);
                            by_id.insert(id, value);
                            by_value.insert(value, id);
                            inserted.push((at, id, value));
                        }
                    }
                }
                if undo {
                    for (at, id, value) in inserted.into_iter().rev().take(undo_count) {
                        index.remove_newest(at, value);
                        by_id.remove(&id);
                        by_value.remove(&value);
                    }
                }
                prop_assert_eq!(index.len(), by_id.len());
            }
            let by_value_ref = &by_value;
            let id_of = |v: u64| by_value_ref[&v];
            for (&id, &value) in &by_id {
                prop_assert_eq!(index.get(id, id_of), Some(value));
                // A peek is a guess (a shared tag, a long probe) but exact for a run.
                if index.runs.find(id).is_some() {
                    prop_assert_eq!(index.peek(id), Some(value));
                }
            }
            for id in [id_max + 1, id_max + 2, 0] {
                prop_assert_eq!(index.get(id, id_of), None);
            }
            // Runs that stay are long, but for the last.
            let short = index.runs.unsettled_len();
            prop_assert!(short <= 60 * 2, "{} entries in short runs", short);
            let built = IdIndex::built(by_id.len(), 0..values_end, |placer, values| {
                for (&value, &id) in by_value.range(values) {
                    placer.push(id, value);
                }
            });
            prop_assert_eq!(built.len(), by_id.len());
            for &id in by_id.keys().chain(&[id_max + 1]) {
                prop_assert_eq!(built.get(id, id_of), index.get(id, id_of));
            }
        }
    }
}
