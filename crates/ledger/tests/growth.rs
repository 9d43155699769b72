//! Incremental index growth is invisible: a ledger whose indexes start tiny and grow many times,
//! each growth moving its entries over several batches, gives the same result for every event,
//! the same lookups and the same digest as a ledger sized up front that never grows, through
//! duplicates, posts and voids of pending transfers created before a growth, failed events
//! (handles without an entry) and linked chains rolled back while a migration is in progress.
//! Its checkpoint, taken mid-migration, decodes to the same state.

use tally_ledger::*;

const ACCOUNTS: u128 = 300;
const BATCHES: usize = 400;

/// splitmix64: a fixed stream, so the test is the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Both ledgers, fed the same batches over one store.
struct Pair {
    growing: Ledger,
    sized: Ledger,
    store: MemoryStore,
    timestamp: u64,
    /// Batches applied while the growing ledger had a migration in progress.
    migrating_batches: usize,
}

impl Pair {
    fn accounts(&mut self, events: &[Account]) {
        self.timestamp += events.len() as u64 + 1;
        let (mut grown, mut sized) = (Vec::new(), Vec::new());
        self.growing
            .create_accounts(&self.store, self.timestamp, events, &mut grown);
        self.sized
            .create_accounts(&self.store, self.timestamp, events, &mut sized);
        assert_eq!(grown, sized);
        assert!(grown
            .iter()
            .all(|r| r.status == CreateAccountStatus::Created));
    }

    fn transfers(&mut self, events: &[Transfer]) -> Vec<CreateTransferResult> {
        self.timestamp += events.len() as u64 + 1;
        let migrating = self.growing.index_migrating();
        let first = self.store.append_batch(self.timestamp, events);
        let (mut grown, mut sized) = (Vec::new(), Vec::new());
        self.growing
            .create_transfers(&self.store, self.timestamp, first, events, &mut grown);
        self.sized
            .create_transfers(&self.store, self.timestamp, first, events, &mut sized);
        assert_eq!(grown, sized, "batch at {}", self.timestamp);
        if migrating || self.growing.index_migrating() {
            self.migrating_batches += 1;
        }
        grown
    }
}

fn transfer(id: u128, rng: &mut Rng) -> Transfer {
    let debit = 1 + u128::from(rng.below(ACCOUNTS as u64));
    let credit = 1 + (debit + u128::from(rng.below(ACCOUNTS as u64 - 1))) % ACCOUNTS;
    Transfer {
        id,
        debit_account_id: debit,
        credit_account_id: credit,
        amount: 1 + u128::from(rng.below(100)),
        ledger: 1,
        code: 1,
        ..Transfer::default()
    }
}

#[test]
fn growing_indexes_give_the_same_results_as_sized_ones() {
    let mut pair = Pair {
        growing: Ledger::with_small_indexes_for_tests(),
        sized: Ledger::with_capacity(ACCOUNTS as usize, 20 * BATCHES),
        store: MemoryStore::new(),
        timestamp: 0,
        migrating_batches: 0,
    };
    let accounts: Vec<Account> = (1..=ACCOUNTS)
        .map(|id| Account {
            id,
            ledger: 1,
            code: 1,
            ..Account::default()
        })
        .collect();
    // Small batches, so that the account index grows (and migrates) across them too.
    for chunk in accounts.chunks(7) {
        pair.accounts(chunk);
    }

    let mut rng = Rng(7);
    let mut next_id: u128 = 1_000;
    let mut created: Vec<u128> = Vec::new();
    let mut pending: Vec<u128> = Vec::new();
    for _ in 0..BATCHES {
        let count = 1 + rng.below(20) as usize;
        let mut events = Vec::with_capacity(count);
        for _ in 0..count {
            let mut t = transfer(next_id, &mut rng);
            next_id += 1;
            match rng.below(10) {
                // A retry of a created transfer: `exists` found in either table.
                0 if !created.is_empty() => {
                    t.id = created[rng.below(created.len() as u64) as usize];
                }
                // A new pending transfer.
                1 | 2 => t.flags = TransferFlags(TransferFlags::PENDING),
                // A post or void of a pending transfer, maybe from before a growth.
                3 if !pending.is_empty() => {
                    let index = rng.below(pending.len() as u64) as usize;
                    let flag = if rng.below(2) == 0 {
                        TransferFlags::POST_PENDING_TRANSFER
                    } else {
                        TransferFlags::VOID_PENDING_TRANSFER
                    };
                    t = Transfer {
                        id: t.id,
                        pending_id: pending.swap_remove(index),
                        amount: if flag == TransferFlags::POST_PENDING_TRANSFER {
                            AMOUNT_MAX
                        } else {
                            0
                        },
                        flags: TransferFlags(flag),
                        ..Transfer::default()
                    };
                }
                // A failure: a handle without an index entry.
                4 => t.credit_account_id = ACCOUNTS + 1,
                _ => {}
            }
            events.push(t);
        }
        // One batch in four ends in a linked chain whose last member fails: rolled back.
        if count >= 3 && rng.below(4) == 0 {
            for event in &mut events[count - 3..count - 1] {
                event.flags = TransferFlags(event.flags.0 | TransferFlags::LINKED);
            }
            events[count - 1].debit_account_id = ACCOUNTS + 2;
        }
        let results = pair.transfers(&events);
        for (event, result) in events.iter().zip(&results) {
            if result.status == CreateTransferStatus::Created {
                created.push(event.id);
                if event.flags.contains(TransferFlags::PENDING) {
                    pending.push(event.id);
                }
            }
        }
    }

    // The growing ledger grew and migrated over many batches; it did not just sit still.
    assert!(
        pair.migrating_batches >= 50,
        "{} batches met a migration",
        pair.migrating_batches
    );
    assert!(created.len() > 1_000);
    for &id in created.iter().chain(&[next_id, next_id + 1]) {
        assert_eq!(
            pair.growing.transfer(&pair.store, id),
            pair.sized.transfer(&pair.store, id)
        );
    }
    for id in 1..=ACCOUNTS + 1 {
        assert_eq!(pair.growing.account(id), pair.sized.account(id));
    }
    let digest = pair.sized.digest(&pair.store);
    assert_eq!(pair.growing.digest(&pair.store), digest);

    // A checkpoint taken whatever the migration's progress comes back as the same state.
    let mut encoded = Vec::new();
    pair.growing.encode_checkpoint(&mut encoded);
    let mut sized_encoded = Vec::new();
    pair.sized.encode_checkpoint(&mut sized_encoded);
    assert!(
        encoded == sized_encoded,
        "the index is not in the checkpoint"
    );
    let (decoded, _) = Ledger::decode_checkpoint(&encoded).expect("decodes");
    let decoded = decoded.index(&pair.store, 0).expect("indexes");
    assert_eq!(decoded.digest(&pair.store), digest);
}
