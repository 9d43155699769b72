//! Smoke test of the public API end to end: accounts, a single-phase transfer, a pending
//! transfer posted in full and a void that comes too late, then a checkpoint round trip that
//! must reproduce the same digest.

use tally_ledger::*;

#[test]
fn single_phase_pending_post_void() {
    let mut ledger = Ledger::new();
    let mut store = MemoryStore::new();
    let mut account_results = Vec::new();
    let accounts: Vec<Account> = (1..=2u128)
        .map(|id| Account {
            id,
            ledger: 1,
            code: 1,
            ..Default::default()
        })
        .collect();
    ledger.create_accounts(&store, 10, &accounts, &mut account_results);
    assert!(account_results
        .iter()
        .all(|r| r.status == CreateAccountStatus::Created));
    assert_eq!(account_results[0].timestamp, 9);

    let transfers = [
        Transfer {
            id: 10,
            debit_account_id: 1,
            credit_account_id: 2,
            amount: 5,
            ledger: 1,
            code: 1,
            ..Default::default()
        },
        Transfer {
            id: 11,
            debit_account_id: 1,
            credit_account_id: 2,
            amount: 7,
            ledger: 1,
            code: 1,
            flags: TransferFlags(TransferFlags::PENDING),
            timeout: 10,
            ..Default::default()
        },
        Transfer {
            id: 12,
            pending_id: 11,
            amount: AMOUNT_MAX,
            flags: TransferFlags(TransferFlags::POST_PENDING_TRANSFER),
            ..Default::default()
        },
        Transfer {
            id: 13,
            pending_id: 11,
            flags: TransferFlags(TransferFlags::VOID_PENDING_TRANSFER),
            ..Default::default()
        },
    ];
    let first = store.append_batch(100, &transfers);
    let mut results = Vec::new();
    ledger.create_transfers(&store, 100, first, &transfers, &mut results);
    let statuses: Vec<_> = results.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses,
        [
            CreateTransferStatus::Created,
            CreateTransferStatus::Created,
            CreateTransferStatus::Created,
            CreateTransferStatus::PendingTransferAlreadyPosted
        ]
    );
    let a = ledger.account(1).unwrap();
    assert_eq!((a.debits_pending, a.debits_posted), (0, 12));
    let posted = ledger.transfer(&store, 12).unwrap();
    assert_eq!(
        (posted.amount, posted.debit_account_id, posted.timestamp),
        (7, 1, 99)
    );

    let mut encoded = Vec::new();
    ledger.encode_checkpoint(&mut encoded);
    let (decoded, size) = Ledger::decode_checkpoint(&encoded).unwrap();
    assert_eq!(size, encoded.len());
    let decoded = decoded.index(&store, 0).unwrap();
    assert_eq!(decoded.digest(&store), ledger.digest(&store));
}
