//! Wallet addresses and keys over a real in-memory ledger: every error of the six commands in
//! Rafiki's precedence (each row breaks one rule more than the next row's winner), the promise
//! that a failed command changes nothing, the Web Monetization money path (receipts on the
//! address's ledger account, `createWalletAddressWithdrawal`, `triggerWalletAddressEvents` and
//! the webhook events it leaves), the reads the GraphQL front makes, and the asset an address
//! keeps from deletion.

mod common;

use common::{uuid, Harness};
use tally_ledger::{CreateAccountStatus, CreateTransferStatus, Transfer, TransferFlags};
use tally_payments::{
    event_id, settlement_account_id, AdditionalProperty, AssetCommand, AssetError, Command,
    CreateWalletAddress, CreateWalletAddressKey, CreateWalletAddressWithdrawal, DeleteAsset,
    Fingerprint, IdempotencyKey, Jwk, LedgerPort, LedgerRead, LiquidityCommand, LiquidityError,
    Mutation, PageRequest, Payments, PaymentsError, RevokeWalletAddressKey, SortOrder, Success,
    TriggerWalletAddressEvents, UpdateAsset, UpdateWalletAddress, Uuid, WalletAddress,
    WalletAddressCommand, WalletAddressError, WalletAddressKey, WalletAddressKeyError,
    WalletAddressStatus, WithdrawalResolve, TIMESTAMPS_PER_COMMAND,
    WALLET_ADDRESS_WEB_MONETIZATION,
};

const USD: u128 = 1;
const EUR: u128 = 2;
/// An asset created then deleted.
const GONE: u128 = 3;
/// The address every table starts with: on USD, `https://example.com/alice`.
const ALICE: u128 = 100;
const ALICE_URL: &str = "https://example.com/alice";
/// A transfer id the setup spends (a deposit to ALICE's Web Monetization account).
const SPENT_TRANSFER: u128 = 900;

fn wallet(command: WalletAddressCommand) -> Mutation {
    Mutation::WalletAddress(command)
}

fn create(n: u128, asset: u128, url: &str) -> CreateWalletAddress {
    CreateWalletAddress {
        id: uuid(n),
        asset_id: Some(uuid(asset)),
        url: url.to_owned(),
        public_name: Some(format!("address {n}")),
        additional_properties: Vec::new(),
    }
}

fn property(key: &str, value: &str, visible: bool) -> AdditionalProperty {
    AdditionalProperty {
        key: key.to_owned(),
        value: value.to_owned(),
        visible_in_open_payments: visible,
    }
}

fn address_of(outcome: Result<Success, PaymentsError>) -> WalletAddress {
    match outcome {
        Ok(Success::WalletAddress(address)) => *address,
        other => panic!("expected a wallet address, got {other:?}"),
    }
}

fn key_of(outcome: Result<Success, PaymentsError>) -> WalletAddressKey {
    match outcome {
        Ok(Success::WalletAddressKey(key)) => key,
        other => panic!("expected a wallet address key, got {other:?}"),
    }
}

fn jwk(kid: &str) -> Jwk {
    Jwk {
        kid: kid.to_owned(),
        x: format!("x-of-{kid}"),
        alg: Default::default(),
        kty: Default::default(),
        crv: Default::default(),
    }
}

fn create_key(n: u128, address: u128, kid: &str) -> Mutation {
    wallet(WalletAddressCommand::CreateKey(CreateWalletAddressKey {
        id: uuid(n),
        wallet_address_id: Some(uuid(address)),
        jwk: jwk(kid),
    }))
}

fn revoke(key: Option<u128>) -> Mutation {
    wallet(WalletAddressCommand::RevokeKey(RevokeWalletAddressKey {
        id: key.map(uuid),
    }))
}

fn withdraw(address: Option<u128>, transfer: Option<u128>, timeout_seconds: u64) -> Mutation {
    wallet(WalletAddressCommand::Withdraw(
        CreateWalletAddressWithdrawal {
            wallet_address_id: address.map(uuid),
            transfer_id: transfer.map(uuid),
            timeout_seconds,
        },
    ))
}

fn trigger(limit: u32, seed: u128) -> Mutation {
    wallet(WalletAddressCommand::TriggerEvents(
        TriggerWalletAddressEvents {
            limit,
            seed: uuid(seed),
        },
    ))
}

fn count_of(outcome: Result<Success, PaymentsError>) -> u32 {
    match outcome {
        Ok(Success::WalletAddressEvents { count }) => count,
        other => panic!("expected a count, got {other:?}"),
    }
}

fn request(limit: usize, order: SortOrder) -> PageRequest {
    PageRequest {
        after: None,
        before: None,
        limit,
        order,
    }
}

/// What the receive path does for a Web Monetization payment, in a command slot of its own:
/// creates the address's ledger account on the first receipt, credits it from the asset's
/// settlement account (a stand-in for the peer or payment that pays), then runs the `onCredit`
/// hook.
fn receive(h: &mut Harness, address: u128, amount: u128, transfer: u128, delay: Option<u64>) {
    h.now += TIMESTAMPS_PER_COMMAND;
    h.port.stamp_from(h.now + 1);
    let id = uuid(address);
    let account = h
        .payments
        .web_monetization_account(id)
        .expect("a known address");
    if h.port.account(account.id).is_none() {
        let mut results = Vec::new();
        h.port.create_accounts(&[account], &mut results);
        assert_eq!(results[0].status, CreateAccountStatus::Created);
    }
    if amount > 0 {
        let asset = h.payments.wallet_address(id).unwrap().asset_id;
        let deposit = Transfer {
            id: uuid(transfer).as_u128(),
            debit_account_id: settlement_account_id(asset),
            credit_account_id: account.id,
            amount,
            ledger: account.ledger,
            code: 2,
            ..Transfer::default()
        };
        let mut results = Vec::new();
        h.port.create_transfers(&[deposit], &mut results);
        assert_eq!(results[0].status, CreateTransferStatus::Created);
    }
    let now = h.now;
    h.payments.wallet_address_credited(&h.port, id, now, delay);
}

/// USD, EUR, a deleted asset, and ALICE on USD with 500 received.
fn setup() -> Harness {
    let mut h = Harness::new();
    h.create_asset(USD, "USD", 2);
    h.create_asset(EUR, "EUR", 2);
    h.create_asset(GONE, "GBP", 2);
    let deleted = h.execute(Mutation::Asset(AssetCommand::Delete(DeleteAsset {
        id: Some(uuid(GONE)),
    })));
    assert!(deleted.is_ok());
    address_of(h.execute(wallet(WalletAddressCommand::Create(create(
        ALICE, USD, ALICE_URL,
    )))));
    receive(&mut h, ALICE, 500, SPENT_TRANSFER, None);
    h
}

/// Runs `mutation`, expects `error`, and checks that nothing changed.
fn expect_error(h: &mut Harness, row: &str, mutation: Mutation, error: PaymentsError) {
    let before = h.snapshot();
    assert_eq!(h.execute(mutation), Err(error), "{row}");
    assert!(
        h.snapshot() == before,
        "{row}: a failed command changed the state or the ledger"
    );
}

#[test]
fn create_errors_in_rafiki_order() {
    use WalletAddressError as E;
    let unknown = Some(uuid(99));
    #[rustfmt::skip]
    let rows: &[(&str, &str, Option<Uuid>, E)] = &[
        ("http, duplicate, unknown asset", "http://example.com/alice", unknown, E::InvalidUrl),
        ("no path", "https://example.com", unknown, E::InvalidUrl),
        ("root path", "https://example.com/", unknown, E::InvalidUrl),
        ("incoming", "https://example.com/incoming-payments", unknown, E::InvalidUrl),
        ("outgoing", "https://example.com/a/outgoing-payments/b", unknown, E::InvalidUrl),
        ("quotes", "https://example.com/quotes", unknown, E::InvalidUrl),
        ("unparseable", "https//example.com/x", unknown, E::InvalidUrl),
        ("duplicate in another case, unknown asset", "https://EXAMPLE.com/Alice", unknown, E::DuplicateWalletAddress),
        ("unknown asset", "https://example.com/bob", unknown, E::UnknownAsset),
        ("asset id not a UUID", "https://example.com/bob", None, E::UnknownAsset),
        ("deleted asset", "https://example.com/bob", Some(uuid(GONE)), E::UnknownAsset),
    ];
    let mut h = setup();
    for (row, url, asset_id, error) in rows {
        let mut command = create(200, USD, url);
        command.asset_id = *asset_id;
        expect_error(
            &mut h,
            row,
            wallet(WalletAddressCommand::Create(command)),
            (*error).into(),
        );
    }
}

#[test]
fn create_lower_cases_and_cleans() {
    let mut h = setup();
    let mut command = create(200, EUR, "https://Example.com/Bob/Pay");
    command.additional_properties = vec![
        property(" iban ", "\tNL00 BANK 0000\n", false),
        property("  ", "dropped", true),
        property("dropped", "", true),
        property("nickname", "bobby", true),
    ];
    let bob = address_of(h.execute(wallet(WalletAddressCommand::Create(command))));
    assert_eq!(bob.id, uuid(200));
    assert_eq!(bob.asset_id, uuid(EUR));
    assert_eq!(bob.url, "https://example.com/bob/pay");
    assert_eq!(bob.public_name.as_deref(), Some("address 200"));
    assert_eq!(
        bob.additional_properties,
        [
            property("iban", "NL00 BANK 0000", false),
            property("nickname", "bobby", true)
        ]
    );
    assert_eq!(bob.status(), WalletAddressStatus::Active);
    assert_eq!(bob.created_at, h.now);
    assert_eq!((bob.total_events_amount, bob.process_at), (0, None));
    assert_eq!(h.payments.wallet_address(bob.id), Some(&bob));
    assert_eq!(
        h.payments
            .wallet_address_by_url("HTTPS://EXAMPLE.COM/BOB/PAY"),
        Some(&bob)
    );
    assert_eq!(
        h.payments
            .wallet_address_by_url("https://example.com/carol"),
        None
    );
    // No ledger account until the first receipt: `liquidity` is null.
    assert_eq!(h.liquidity(bob.id.as_u128()), None);
    assert_eq!(h.liquidity(uuid(ALICE).as_u128()), Some(500));

    let (rows, page) = h
        .payments
        .wallet_addresses_page(&request(10, SortOrder::Descending));
    let ids: Vec<Uuid> = rows.iter().map(|address| address.id).collect();
    assert_eq!(ids, [uuid(200), uuid(ALICE)]);
    assert!(!page.has_next && !page.has_previous);
    let (rows, page) = h
        .payments
        .wallet_addresses_page(&request(1, SortOrder::Ascending));
    assert_eq!(rows[0].id, uuid(ALICE));
    assert!(page.has_next);
}

fn update(n: Option<u128>) -> UpdateWalletAddress {
    UpdateWalletAddress {
        id: n.map(uuid),
        public_name: None,
        status: None,
        additional_properties: None,
    }
}

#[test]
fn update_errors() {
    let mut h = setup();
    for (row, id) in [("unknown", Some(99)), ("not a UUID", None)] {
        let mutation = wallet(WalletAddressCommand::Update(update(id)));
        expect_error(
            &mut h,
            row,
            mutation,
            WalletAddressError::UnknownWalletAddress.into(),
        );
    }
}

#[test]
fn update_changes_only_what_is_given() {
    let mut h = setup();
    fn run(h: &mut Harness, change: fn(&mut UpdateWalletAddress)) -> WalletAddress {
        let mut command = update(Some(ALICE));
        change(&mut command);
        address_of(h.execute(wallet(WalletAddressCommand::Update(command))))
    }
    let original = h.payments.wallet_address(uuid(ALICE)).unwrap().clone();
    assert_eq!(
        run(&mut h, |_| {}),
        original,
        "nothing given: nothing changes"
    );

    let renamed = run(&mut h, |c| {
        c.public_name = Some(Some("Alice".into()));
        c.additional_properties =
            Some(vec![property(" a ", " 1 ", true), property("b", " ", true)]);
    });
    assert_eq!(renamed.public_name.as_deref(), Some("Alice"));
    assert_eq!(renamed.additional_properties, [property("a", "1", true)]);

    let kept = run(&mut h, |c| c.status = Some(WalletAddressStatus::Active));
    assert_eq!(kept, renamed, "ACTIVE on an active address is a no-op");

    let deactivated = run(&mut h, |c| c.status = Some(WalletAddressStatus::Inactive));
    assert_eq!(deactivated.status(), WalletAddressStatus::Inactive);
    assert_eq!(deactivated.deactivated_at, Some(h.now));
    let deactivated_at = h.now;
    let again = run(&mut h, |c| c.status = Some(WalletAddressStatus::Inactive));
    assert_eq!(
        again.deactivated_at,
        Some(deactivated_at),
        "INACTIVE twice keeps the first time"
    );

    let cleared = run(&mut h, |c| {
        c.public_name = Some(None);
        c.additional_properties = Some(Vec::new());
        c.status = Some(WalletAddressStatus::Active);
    });
    assert_eq!(cleared.public_name, None);
    assert!(cleared.additional_properties.is_empty());
    assert_eq!(
        (cleared.status(), cleared.deactivated_at),
        (WalletAddressStatus::Active, None)
    );
    assert_eq!(
        (cleared.url.as_str(), cleared.asset_id, cleared.created_at),
        (ALICE_URL, original.asset_id, original.created_at)
    );
    assert_eq!(h.payments.wallet_address(uuid(ALICE)), Some(&cleared));
}

#[test]
fn key_errors() {
    use WalletAddressKeyError as E;
    let mut h = setup();
    key_of(h.execute(create_key(300, ALICE, "k1")));
    let no_uuid = wallet(WalletAddressCommand::CreateKey(CreateWalletAddressKey {
        id: uuid(301),
        wallet_address_id: None,
        jwk: jwk("k1"),
    }));
    #[rustfmt::skip]
    let rows: Vec<(&str, Mutation, E)> = vec![
        ("same kid, same address", create_key(301, ALICE, "k1"), E::DuplicateKey),
        ("unknown address", create_key(301, 99, "k1"), E::UnknownWalletAddress),
        ("address not a UUID", no_uuid, E::UnknownWalletAddress),
        ("revoke unknown", revoke(Some(99)), E::UnknownKey),
        ("revoke not a UUID", revoke(None), E::UnknownKey),
    ];
    for (row, mutation, error) in rows {
        expect_error(&mut h, row, mutation, error.into());
    }
}

#[test]
fn keys_create_revoke_and_list() {
    let mut h = setup();
    address_of(h.execute(wallet(WalletAddressCommand::Create(create(
        200,
        USD,
        "https://example.com/bob",
    )))));
    let k1 = key_of(h.execute(create_key(300, ALICE, "k1")));
    assert_eq!(
        (k1.id, k1.wallet_address_id, k1.revoked, k1.created_at),
        (uuid(300), uuid(ALICE), false, h.now)
    );
    assert_eq!(k1.jwk, jwk("k1"));
    // The same kid on another address is another key.
    key_of(h.execute(create_key(301, 200, "k1")));
    let k2 = key_of(h.execute(create_key(302, ALICE, "k2")));
    assert_eq!(
        h.payments.wallet_address_key_by_kid(uuid(ALICE), "k1"),
        Some(&k1)
    );

    let revoked = key_of(h.execute(revoke(Some(300))));
    assert!(revoked.revoked);
    assert_eq!(revoked.created_at, k1.created_at);
    assert_eq!(
        key_of(h.execute(revoke(Some(300)))),
        revoked,
        "revoking twice returns the key"
    );
    assert_eq!(
        h.payments.wallet_address_key_by_kid(uuid(ALICE), "k1"),
        None
    );
    // A revoked key frees its kid.
    let k1_again = key_of(h.execute(create_key(303, ALICE, "k1")));
    assert_eq!(
        h.payments.wallet_address_key_by_kid(uuid(ALICE), "k1"),
        Some(&k1_again)
    );
    assert_eq!(h.payments.wallet_address_key(uuid(300)), Some(&revoked));

    let (rows, page) = h
        .payments
        .wallet_address_keys_page(uuid(ALICE), &request(10, SortOrder::Ascending));
    let ids: Vec<Uuid> = rows.iter().map(|key| key.id).collect();
    assert_eq!(
        ids,
        [uuid(300), k2.id, uuid(303)],
        "revoked keys stay listed; other addresses' do not"
    );
    assert!(!page.has_next && !page.has_previous);
    let (rows, _) = h
        .payments
        .wallet_address_keys_page(uuid(200), &request(10, SortOrder::Descending));
    assert_eq!(rows.len(), 1);
}

#[test]
fn withdrawal_errors_in_rafiki_order() {
    use LiquidityError as L;
    let mut h = setup();
    // BOB has a ledger account with nothing left in it; CAROL has none.
    for (n, url) in [
        (200, "https://example.com/bob"),
        (201, "https://example.com/carol"),
    ] {
        address_of(h.execute(wallet(WalletAddressCommand::Create(create(n, USD, url)))));
    }
    receive(&mut h, 200, 5, 901, None);
    h.execute(withdraw(Some(200), Some(902), 0))
        .expect("bob withdraws his 5");
    // Row: name, address, transfer id, timeout, the error that wins.
    type Row = (&'static str, Option<u128>, Option<u128>, u64, PaymentsError);
    #[rustfmt::skip]
    let rows: &[Row] = &[
        ("unknown address, bad id", Some(99), None, 0, L::UnknownWalletAddress.into()),
        ("address not a UUID", None, Some(1000), 0, L::UnknownWalletAddress.into()),
        ("no account, bad id", Some(201), None, 0, WalletAddressError::MissingLedgerAccount.into()),
        ("empty balance, bad id", Some(200), None, 0, L::AmountZero.into()),
        ("bad id, bad timeout", Some(ALICE), None, u64::MAX, L::InvalidId.into()),
        ("bad timeout, spent id", Some(ALICE), Some(SPENT_TRANSFER), 1 << 32, L::InvalidTimeout.into()),
        ("spent id", Some(ALICE), Some(SPENT_TRANSFER), 0, L::TransferExists.into()),
        ("bob's withdrawal id", Some(ALICE), Some(902), 0, L::TransferExists.into()),
    ];
    for (row, address, transfer, timeout, error) in rows {
        expect_error(
            &mut h,
            row,
            withdraw(*address, *transfer, *timeout),
            error.clone(),
        );
    }
}

#[test]
fn withdrawal_takes_the_whole_balance() {
    let mut h = setup();
    let alice = uuid(ALICE);
    let settlement = settlement_account_id(uuid(USD));
    let outcome = h.execute(withdraw(Some(ALICE), Some(1000), 0));
    let expected = Success::WalletAddressWithdrawal {
        id: uuid(1000),
        amount: 500,
        wallet_address: Box::new(h.payments.wallet_address(alice).unwrap().clone()),
    };
    assert_eq!(outcome, Ok(expected));
    assert_eq!(h.liquidity(alice.as_u128()), Some(0));
    let transfer = h
        .port
        .ledger
        .transfer(&h.port.store, uuid(1000).as_u128())
        .unwrap();
    assert_eq!(
        (
            transfer.debit_account_id,
            transfer.credit_account_id,
            transfer.amount,
            transfer.code
        ),
        (alice.as_u128(), settlement, 500, 3)
    );
    assert!(!transfer.flags.contains(TransferFlags::PENDING));

    // With a timeout the withdrawal is pending: the balance is held at once, and
    // `postLiquidityWithdrawal` settles it.
    receive(&mut h, ALICE, 70, 1001, None);
    let outcome = h.execute(withdraw(Some(ALICE), Some(1002), 60));
    assert!(
        matches!(
            outcome,
            Ok(Success::WalletAddressWithdrawal { amount: 70, .. })
        ),
        "{outcome:?}"
    );
    let pending = h
        .port
        .ledger
        .transfer(&h.port.store, uuid(1002).as_u128())
        .unwrap();
    assert!(pending.flags.contains(TransferFlags::PENDING));
    assert_eq!(pending.timeout, 60);
    assert_eq!(h.liquidity(alice.as_u128()), Some(0));
    expect_error(
        &mut h,
        "all held",
        withdraw(Some(ALICE), Some(1003), 0),
        LiquidityError::AmountZero.into(),
    );
    let post = Mutation::Liquidity(LiquidityCommand::Post(WithdrawalResolve {
        withdrawal_id: Some(uuid(1002)),
        transfer_id: uuid(1004),
    }));
    assert_eq!(h.execute(post), Ok(Success::Liquidity));
    let account = h.port.ledger.account(alice.as_u128()).unwrap();
    assert_eq!(
        (
            account.credits_posted,
            account.debits_posted,
            account.debits_pending
        ),
        (570, 570, 0)
    );
}

#[test]
fn trigger_reports_what_was_received_since_the_last_event() {
    let mut h = setup();
    // ALICE is not due (no threshold, no delay); BOB and CAROL receive and are made due by the
    // throttle delay, DAVE is due with nothing received.
    for (n, url) in [(200, "bob"), (201, "carol"), (202, "dave")] {
        let url = format!("https://example.com/{url}");
        address_of(h.execute(wallet(WalletAddressCommand::Create(create(n, USD, &url)))));
    }
    receive(&mut h, 200, 10, 901, Some(1));
    receive(&mut h, 201, 20, 902, Some(1));
    receive(&mut h, 201, 5, 903, Some(1_000_000_000_000));
    assert!(
        h.payments.wallet_address(uuid(201)).unwrap().process_at < Some(h.now),
        "a scheduled address keeps its time"
    );
    receive(&mut h, 202, 0, 904, Some(1));

    assert_eq!(count_of(h.execute(trigger(0, 7000))), 0);
    assert_eq!(count_of(h.execute(trigger(1, 7001))), 1);
    let bob = h.payments.wallet_address(uuid(200)).unwrap();
    assert_eq!((bob.total_events_amount, bob.process_at), (10, None));
    let (events, _) = h
        .payments
        .webhook_events_page(&request(10, SortOrder::Ascending), &[]);
    assert_eq!(events.len(), 1);
    let event = events[0];
    assert_eq!(event.id, event_id(uuid(7001), 0));
    assert_eq!(event.id.get_version_num(), 4);
    assert_eq!(event.event_type, WALLET_ADDRESS_WEB_MONETIZATION);
    assert_eq!(event.created_at, h.now);
    let withdrawal = event.withdrawal.unwrap();
    assert_eq!(
        (
            withdrawal.account_id,
            withdrawal.asset_id,
            withdrawal.amount
        ),
        (uuid(200), uuid(USD), 10)
    );
    let created = bob.created_at / 1_000_000;
    let expected = format!(
        r#"{{"walletAddress":{{"id":"{}","createdAt":"1970-01-01T00:00:{:02}.{:03}Z","receivedAmount":{{"value":"10","assetCode":"USD","assetScale":2}}}}}}"#,
        uuid(200),
        created / 1000,
        created % 1000
    );
    assert_eq!(&*event.data.text(), expected);

    // CAROL (25 received) and DAVE (nothing) are processed; only CAROL has an event.
    assert_eq!(count_of(h.execute(trigger(5, 7002))), 2);
    assert_eq!(
        count_of(h.execute(trigger(5, 7003))),
        0,
        "nothing is due any more"
    );
    let (events, _) = h
        .payments
        .webhook_events_page(&request(10, SortOrder::Ascending), &[]);
    let amounts: Vec<u128> = events
        .iter()
        .map(|event| event.withdrawal.unwrap().amount)
        .collect();
    assert_eq!(amounts, [10, 25]);
    assert_eq!(events[1].id, event_id(uuid(7002), 0));
    assert_eq!(h.payments.webhook_event(events[1].id), Some(events[1]));

    // More for BOB: the next event reports only what came after the last one, whatever was
    // withdrawn in between.
    h.execute(withdraw(Some(200), Some(1000), 0))
        .expect("bob withdraws");
    receive(&mut h, 200, 7, 905, Some(1));
    assert_eq!(count_of(h.execute(trigger(5, 7004))), 1);
    let (events, _) = h
        .payments
        .webhook_events_page(&request(1, SortOrder::Descending), &[]);
    assert_eq!(events[0].withdrawal.unwrap().amount, 7);
    assert_eq!(
        h.payments
            .wallet_address(uuid(200))
            .unwrap()
            .total_events_amount,
        17
    );
}

#[test]
fn trigger_takes_several_events_per_command_and_the_threshold() {
    let mut h = setup();
    let threshold = Mutation::Asset(AssetCommand::Update(UpdateAsset {
        id: Some(uuid(USD)),
        withdrawal_threshold: Some(100),
        liquidity_threshold: None,
    }));
    assert!(h.execute(threshold).is_ok());
    receive(&mut h, ALICE, 0, 901, None);
    assert_eq!(
        h.payments.wallet_address(uuid(ALICE)).unwrap().process_at,
        Some(h.now),
        "500 ≥ 100"
    );
    address_of(h.execute(wallet(WalletAddressCommand::Create(create(
        200,
        USD,
        "https://example.com/bob",
    )))));
    receive(&mut h, 200, 60, 902, None);
    assert_eq!(
        h.payments.wallet_address(uuid(200)).unwrap().process_at,
        None,
        "60 < 100"
    );
    receive(&mut h, 200, 40, 903, None);
    assert_eq!(
        h.payments.wallet_address(uuid(200)).unwrap().process_at,
        Some(h.now),
        "100 ≥ 100"
    );

    assert_eq!(count_of(h.execute(trigger(10, 7000))), 2);
    let (events, page) = h
        .payments
        .webhook_events_page(&request(10, SortOrder::Ascending), &[]);
    let ids: Vec<Uuid> = events.iter().map(|event| event.id).collect();
    assert_eq!(ids, [event_id(uuid(7000), 0), event_id(uuid(7000), 1)]);
    assert!(events.iter().all(|event| event.created_at == h.now));
    assert!(!page.has_next && !page.has_previous);
    // Pages and cursors over events of one command.
    let (first, page) = h
        .payments
        .webhook_events_page(&request(1, SortOrder::Descending), &[]);
    assert_eq!(first[0].id, ids[1]);
    assert!(page.has_next);
    let after = PageRequest {
        after: Some(ids[1]),
        ..request(1, SortOrder::Descending)
    };
    let (second, page) = h.payments.webhook_events_page(&after, &[]);
    assert_eq!(second[0].id, ids[0]);
    assert!(!page.has_next && page.has_previous);
    // The type filter.
    let web_monetization = [WALLET_ADDRESS_WEB_MONETIZATION.to_owned()];
    let (all, _) = h
        .payments
        .webhook_events_page(&request(10, SortOrder::Ascending), &web_monetization);
    assert_eq!(all.len(), 2);
    let other = ["incoming_payment.completed".to_owned()];
    let (none, page) = h
        .payments
        .webhook_events_page(&request(10, SortOrder::Ascending), &other);
    assert!(none.is_empty() && !page.has_next);
}

#[test]
fn an_address_keeps_its_asset() {
    let mut h = setup();
    let delete = |n| Mutation::Asset(AssetCommand::Delete(DeleteAsset { id: Some(uuid(n)) }));
    expect_error(
        &mut h,
        "USD has ALICE",
        delete(USD),
        AssetError::CannotDeleteInUseAsset.into(),
    );
    assert!(h.execute(delete(EUR)).is_ok());
}

#[test]
fn idempotent_retries_and_checkpoints_keep_everything() {
    let mut h = setup();
    let command = Command {
        idempotency: Some(IdempotencyKey {
            key: "k".into(),
            fingerprint: Fingerprint([1; 32]),
        }),
        mutation: wallet(WalletAddressCommand::Create(create(
            200,
            USD,
            "https://example.com/bob",
        ))),
    };
    let first = h.execute_command(&command);
    assert!(first.is_ok());
    assert_eq!(
        h.execute_command(&command),
        first,
        "a retry returns the first outcome"
    );
    key_of(h.execute(create_key(300, 200, "k1")));
    receive(&mut h, 200, 3, 901, Some(1));
    assert_eq!(count_of(h.execute(trigger(5, 7000))), 1);

    let mut bytes = Vec::new();
    h.payments.encode_checkpoint(&mut bytes);
    let (decoded, used) = Payments::decode_checkpoint(&bytes).unwrap();
    assert_eq!(used, bytes.len());
    assert!(decoded == h.payments);
}
