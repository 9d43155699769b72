//! Peers over a real in-memory ledger: every `PeerError` and `AutoPeeringError` the domain
//! raises, in Rafiki's precedence (each row breaks one rule more than the next row's winner,
//! so the winner shows the order), the all-or-nothing promise (a failed command leaves the state
//! and the ledger as they were), the liquidity account and its deposits and withdrawals, the
//! reads the GraphQL front makes, and the asset a peer keeps from deletion.

mod common;

use common::{uuid, Harness};
use tally_payments::{
    AssetCommand, AssetError, AutoPeeringError, CreateOrUpdatePeerByUrl, CreatePeer, DeleteAsset,
    DeletePeer, Deposit, HttpOutgoing, LiquidityCommand, LiquidityError, LiquidityOwner, Mutation,
    PageRequest, Payments, PaymentsError, Peer, PeerCommand, PeerError, PeerHttp, SortOrder,
    Success, UpdatePeer, Uuid, Withdrawal,
};

const USD: u128 = 50;
const EUR: u128 = 51;
/// The peer every table starts with: on USD, `test.p0`, incoming token `t0`.
const P0: u128 = 100;
/// A transfer id the setup spends (P0's initial deposit).
const SPENT_TRANSFER: u128 = 900;

fn create(n: u128, asset: u128, address: &str, tokens: &[&str]) -> CreatePeer {
    CreatePeer {
        id: uuid(n),
        asset_id: Some(uuid(asset)),
        static_ilp_address: address.to_owned(),
        http: PeerHttp {
            incoming_auth_tokens: Some(tokens.iter().map(|t| (*t).to_owned()).collect()),
            outgoing: HttpOutgoing {
                auth_token: format!("out-{n}"),
                endpoint: format!("http://peer-{n}.example:3002"),
            },
        },
        name: Some(format!("peer {n}")),
        max_packet_amount: Some(1000),
        liquidity_threshold: Some(10),
        initial_liquidity: None,
        initial_liquidity_transfer_id: uuid(n + 10_000),
    }
}

fn peer_command(command: PeerCommand) -> Mutation {
    Mutation::Peer(command)
}

fn peer_of(outcome: Result<Success, PaymentsError>) -> Peer {
    match outcome {
        Ok(Success::Peer(peer)) => *peer,
        other => panic!("expected a peer, got {other:?}"),
    }
}

/// USD and EUR, and P0 on USD with 500 of initial liquidity.
fn setup() -> Harness {
    let mut h = Harness::new();
    h.create_asset(USD, "USD", 2);
    h.create_asset(EUR, "EUR", 2);
    let mut p0 = create(P0, USD, "test.p0", &["t0"]);
    p0.initial_liquidity = Some(500);
    p0.initial_liquidity_transfer_id = uuid(SPENT_TRANSFER);
    peer_of(h.execute(peer_command(PeerCommand::Create(p0))));
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
    type Tweak = fn(&mut CreatePeer);
    let bad_address: Tweak = |c| c.static_ilp_address = "nope.x".into();
    let bad_endpoint: Tweak = |c| c.http.outgoing.endpoint = "ftp://x".into();
    let unknown_asset: Tweak = |c| c.asset_id = Some(uuid(77));
    let no_uuid_asset: Tweak = |c| c.asset_id = None;
    let duplicate_peer: Tweak = |c| c.static_ilp_address = "test.p0".into();
    let taken_token: Tweak = |c| c.http.incoming_auth_tokens = Some(vec!["t0".into()]);
    let token_twice: Tweak = |c| c.http.incoming_auth_tokens = Some(vec!["a".into(), "a".into()]);
    let spent_id: Tweak = |c| {
        c.initial_liquidity = Some(1);
        c.initial_liquidity_transfer_id = uuid(SPENT_TRANSFER);
    };
    let overflow: Tweak = |c| c.initial_liquidity = Some(u128::MAX);
    use PeerError::*;
    let rows: &[(&str, &[Tweak], PeerError)] = &[
        (
            "address before endpoint",
            &[bad_address, bad_endpoint],
            InvalidStaticIlpAddress,
        ),
        (
            "endpoint before asset",
            &[bad_endpoint, unknown_asset],
            InvalidHTTPEndpoint,
        ),
        (
            "asset before token",
            &[unknown_asset, taken_token],
            UnknownAsset,
        ),
        ("asset id not a UUID", &[no_uuid_asset], UnknownAsset),
        (
            "duplicate peer before token",
            &[duplicate_peer, taken_token],
            DuplicatePeer,
        ),
        (
            "token before liquidity",
            &[taken_token, spent_id],
            DuplicateIncomingToken,
        ),
        (
            "token twice in the input",
            &[token_twice],
            DuplicateIncomingToken,
        ),
        ("deposit id spent", &[spent_id], InvalidInitialLiquidity),
        (
            "deposit overflows settlement",
            &[overflow],
            InvalidInitialLiquidity,
        ),
    ];
    let mut h = setup();
    for (row, tweaks, error) in rows {
        let mut command = create(1, USD, "test.new", &["new"]);
        for tweak in *tweaks {
            tweak(&mut command);
        }
        expect_error(
            &mut h,
            row,
            peer_command(PeerCommand::Create(command)),
            (*error).into(),
        );
    }
    // The same address on another asset, and no incoming tokens at all, are fine.
    let mut other_asset = create(2, EUR, "test.p0", &[]);
    other_asset.http.incoming_auth_tokens = None;
    peer_of(h.execute(peer_command(PeerCommand::Create(other_asset))));
}

#[test]
fn create_makes_the_account_and_deposits() {
    let mut h = setup();
    let p0 = h.payments.peer(uuid(P0)).expect("created").clone();
    assert_eq!(p0.static_ilp_address, "test.p0");
    assert_eq!(p0.incoming_auth_tokens, ["t0"]);
    assert_eq!(p0.name.as_deref(), Some("peer 100"));
    assert_eq!(
        (p0.max_packet_amount, p0.liquidity_threshold),
        (Some(1000), Some(10))
    );
    assert_eq!(p0.liquidity_account_id(), uuid(P0).as_u128());
    assert_eq!(h.liquidity(p0.liquidity_account_id()), Some(500));
    let account = h
        .port
        .ledger
        .account(uuid(P0).as_u128())
        .copied()
        .expect("account");
    assert_eq!(account.code, 3, "LIQUIDITY_PEER");
    assert_eq!(account.user_data_128, uuid(USD).as_u128());
    let usd_ledger = h.payments.asset(uuid(USD)).expect("USD").ledger;
    assert_eq!(account.ledger, usd_ledger);
    let deposit = h
        .port
        .ledger
        .transfer(&h.port.store, uuid(SPENT_TRANSFER).as_u128());
    assert_eq!(
        deposit.map(|t| (t.amount, t.code)),
        Some((500, 2)),
        "a DEPOSIT of 500"
    );

    // Zero initial liquidity deposits nothing, as Rafiki's `if (initialLiquidity)`.
    let mut zero = create(1, USD, "test.zero", &[]);
    zero.initial_liquidity = Some(0);
    let transfers = h.port.ledger.transfer_count();
    peer_of(h.execute(peer_command(PeerCommand::Create(zero))));
    assert_eq!(h.port.ledger.transfer_count(), transfers);
    assert_eq!(h.liquidity(uuid(1).as_u128()), Some(0));
}

fn update(n: u128) -> UpdatePeer {
    UpdatePeer {
        id: Some(uuid(n)),
        static_ilp_address: None,
        http: None,
        name: None,
        max_packet_amount: None,
        liquidity_threshold: None,
    }
}

fn http(endpoint: &str, tokens: Option<&[&str]>) -> Option<PeerHttp> {
    Some(PeerHttp {
        incoming_auth_tokens: tokens.map(|tokens| tokens.iter().map(|t| (*t).to_owned()).collect()),
        outgoing: HttpOutgoing {
            auth_token: "out-new".into(),
            endpoint: endpoint.into(),
        },
    })
}

#[test]
fn update_errors_in_rafiki_order() {
    type Tweak = fn(&mut UpdatePeer);
    let bad_address: Tweak = |u| u.static_ilp_address = Some("g".into());
    let bad_endpoint: Tweak = |u| u.http = http("http://a..b", None);
    let taken_token: Tweak = |u| u.http = http("http://ok.example", Some(&["t0"]));
    let both: Tweak = |u| u.http = http("http://a..b", Some(&["t0"]));
    let token_twice: Tweak = |u| u.http = http("http://ok.example", Some(&["z", "z"]));
    let unknown: Tweak = |u| u.id = Some(uuid(77));
    let no_uuid: Tweak = |u| u.id = None;
    let duplicate_peer: Tweak = |u| u.static_ilp_address = Some("test.p0".into());
    use PeerError::*;
    let rows: &[(&str, &[Tweak], PeerError)] = &[
        (
            "address before endpoint",
            &[bad_address, bad_endpoint],
            InvalidStaticIlpAddress,
        ),
        ("endpoint before token", &[both], InvalidHTTPEndpoint),
        (
            "token before peer",
            &[taken_token, unknown],
            DuplicateIncomingToken,
        ),
        (
            "token twice in the input",
            &[token_twice],
            DuplicateIncomingToken,
        ),
        (
            "peer before duplicate",
            &[unknown, duplicate_peer],
            UnknownPeer,
        ),
        ("id not a UUID", &[no_uuid], UnknownPeer),
        ("address of another peer", &[duplicate_peer], DuplicatePeer),
    ];
    let mut h = setup();
    peer_of(h.execute(peer_command(PeerCommand::Create(create(
        1,
        USD,
        "test.p1",
        &["t1"],
    )))));
    for (row, tweaks, error) in rows {
        let mut command = update(1);
        for tweak in *tweaks {
            tweak(&mut command);
        }
        expect_error(
            &mut h,
            row,
            peer_command(PeerCommand::Update(command)),
            (*error).into(),
        );
    }
}

#[test]
fn update_changes_only_what_is_given() {
    let mut h = setup();
    let before = peer_of(h.execute(peer_command(PeerCommand::Create(create(
        1,
        USD,
        "test.p1",
        &["t1", "t2"],
    )))));

    let mut threshold = update(1);
    threshold.liquidity_threshold = Some(Some(99));
    let after = peer_of(h.execute(peer_command(PeerCommand::Update(threshold))));
    assert_eq!(
        after,
        Peer {
            liquidity_threshold: Some(99),
            ..before.clone()
        }
    );

    // `null` clears; the outgoing pair is replaced, the incoming tokens kept when not given.
    let mut clear = update(1);
    clear.name = Some(None);
    clear.max_packet_amount = Some(None);
    clear.http = http("https://new.example", None);
    let after = peer_of(h.execute(peer_command(PeerCommand::Update(clear))));
    assert_eq!((after.name.clone(), after.max_packet_amount), (None, None));
    assert_eq!(after.outgoing.endpoint, "https://new.example");
    assert_eq!(after.incoming_auth_tokens, ["t1", "t2"]);

    // New tokens replace all of them (keeping one of its own is no duplicate); the old ones
    // are free for anyone.
    let mut tokens = update(1);
    tokens.http = http("https://new.example", Some(&["t2", "t3"]));
    tokens.static_ilp_address = Some("test.p1".into());
    let after = peer_of(h.execute(peer_command(PeerCommand::Update(tokens))));
    assert_eq!(after.incoming_auth_tokens, ["t2", "t3"]);
    assert_eq!(
        h.payments.peer_by_incoming_token("t3").map(|p| p.id),
        Some(uuid(1))
    );
    assert!(h.payments.peer_by_incoming_token("t1").is_none());
    peer_of(h.execute(peer_command(PeerCommand::Create(create(
        2,
        USD,
        "test.p2",
        &["t1"],
    )))));

    // A new address moves the routing entry.
    let mut address = update(1);
    address.static_ilp_address = Some("test.moved".into());
    peer_of(h.execute(peer_command(PeerCommand::Update(address))));
    assert!(h
        .payments
        .peer_by_address_and_asset("test.p1", uuid(USD))
        .is_none());
    let found = h
        .payments
        .peer_by_address_and_asset("test.moved", uuid(USD));
    assert_eq!(found.map(|p| p.id), Some(uuid(1)));
    assert_eq!(
        h.payments.peer(uuid(1)).map(|p| p.created_at),
        Some(before.created_at)
    );
}

#[test]
fn delete_is_hard_and_leaves_the_account() {
    let mut h = setup();
    let unknown = DeletePeer { id: Some(uuid(77)) };
    expect_error(
        &mut h,
        "unknown",
        peer_command(PeerCommand::Delete(unknown)),
        PeerError::UnknownPeer.into(),
    );
    let no_uuid = DeletePeer { id: None };
    expect_error(
        &mut h,
        "not a UUID",
        peer_command(PeerCommand::Delete(no_uuid)),
        PeerError::UnknownPeer.into(),
    );

    let delete = DeletePeer { id: Some(uuid(P0)) };
    assert_eq!(
        h.execute(peer_command(PeerCommand::Delete(delete.clone()))),
        Ok(Success::PeerDeleted)
    );
    assert!(h.payments.peer(uuid(P0)).is_none());
    assert_eq!(
        h.liquidity(uuid(P0).as_u128()),
        Some(500),
        "the ledger account stays"
    );
    assert_eq!(
        h.execute(peer_command(PeerCommand::Delete(delete))),
        Err(PeerError::UnknownPeer.into())
    );
    let deposit = Deposit {
        owner: LiquidityOwner::Peer(Some(uuid(P0))),
        transfer_id: Some(uuid(901)),
        amount: 1,
    };
    let outcome = h.execute(Mutation::Liquidity(LiquidityCommand::Deposit(deposit)));
    assert_eq!(outcome, Err(LiquidityError::UnknownPeer.into()));

    // Address and token are free again.
    peer_of(h.execute(peer_command(PeerCommand::Create(create(
        1,
        USD,
        "test.p0",
        &["t0"],
    )))));
}

#[test]
fn peer_liquidity_deposit_and_withdrawal() {
    let mut h = setup();
    let owner = LiquidityOwner::Peer(Some(uuid(P0)));
    let deposit = Deposit {
        owner,
        transfer_id: Some(uuid(901)),
        amount: 250,
    };
    assert_eq!(
        h.execute(Mutation::Liquidity(LiquidityCommand::Deposit(deposit))),
        Ok(Success::Liquidity)
    );
    assert_eq!(h.liquidity(uuid(P0).as_u128()), Some(750));
    let withdrawal = Withdrawal {
        owner,
        transfer_id: Some(uuid(902)),
        amount: 700,
        timeout_seconds: 0,
    };
    assert_eq!(
        h.execute(Mutation::Liquidity(LiquidityCommand::Withdraw(withdrawal))),
        Ok(Success::Liquidity)
    );
    assert_eq!(h.liquidity(uuid(P0).as_u128()), Some(50));
    let too_much = Withdrawal {
        transfer_id: Some(uuid(903)),
        amount: 51,
        ..withdrawal
    };
    let outcome = h.execute(Mutation::Liquidity(LiquidityCommand::Withdraw(too_much)));
    assert_eq!(outcome, Err(LiquidityError::InsufficientBalance.into()));
    let unknown = Deposit {
        owner: LiquidityOwner::Peer(Some(uuid(77))),
        ..deposit
    };
    let outcome = h.execute(Mutation::Liquidity(LiquidityCommand::Deposit(unknown)));
    assert_eq!(outcome, Err(LiquidityError::UnknownPeer.into()));
}

#[test]
fn an_asset_in_use_by_a_peer_cannot_be_deleted() {
    let mut h = setup();
    let delete_usd = || {
        Mutation::Asset(AssetCommand::Delete(DeleteAsset {
            id: Some(uuid(USD)),
        }))
    };
    expect_error(
        &mut h,
        "in use",
        delete_usd(),
        AssetError::CannotDeleteInUseAsset.into(),
    );
    // EUR has no peer; the peer of an asset created after USD does not count for USD.
    assert!(matches!(
        h.execute(Mutation::Asset(AssetCommand::Delete(DeleteAsset {
            id: Some(uuid(EUR))
        }))),
        Ok(Success::Asset(_))
    ));
    h.execute(peer_command(PeerCommand::Delete(DeletePeer {
        id: Some(uuid(P0)),
    })))
    .expect("deleted");
    assert!(matches!(h.execute(delete_usd()), Ok(Success::Asset(_))));
    // A deleted asset is unknown to a new peer.
    let outcome = h.execute(peer_command(PeerCommand::Create(create(
        1,
        USD,
        "test.x",
        &[],
    ))));
    assert_eq!(outcome, Err(PeerError::UnknownAsset.into()));
}

#[test]
fn reads_for_the_front() {
    let mut h = setup();
    for (n, address) in [(1, "test.p0.sub"), (2, "test.p2"), (3, "test.p3")] {
        peer_of(h.execute(peer_command(PeerCommand::Create(create(
            n,
            USD,
            address,
            &[],
        )))));
    }
    let route = |h: &Harness, address: &str, asset: u128| {
        h.payments
            .peer_by_address_and_asset(address, uuid(asset))
            .map(|p| p.id)
    };
    assert_eq!(route(&h, "test.p0", USD), Some(uuid(P0)));
    assert_eq!(route(&h, "test.p0.alice", USD), Some(uuid(P0)));
    assert_eq!(
        route(&h, "test.p0.sub", USD),
        Some(uuid(1)),
        "the longest prefix wins"
    );
    assert_eq!(route(&h, "test.p0.sub.bob", USD), Some(uuid(1)));
    assert_eq!(
        route(&h, "test.p0x", USD),
        None,
        "a prefix must end before a dot"
    );
    assert_eq!(route(&h, "test", USD), None);
    assert_eq!(route(&h, "test.p0", EUR), None);

    let request = |after: Option<Uuid>, order| PageRequest {
        after,
        before: None,
        limit: 2,
        order,
    };
    let ids = |page: Vec<&Peer>| page.iter().map(|p| p.id).collect::<Vec<_>>();
    let (first, info) = h.payments.peers_page(&request(None, SortOrder::Descending));
    assert_eq!(ids(first), [uuid(3), uuid(2)]);
    assert!(info.has_next && !info.has_previous);
    let (second, info) = h
        .payments
        .peers_page(&request(Some(uuid(2)), SortOrder::Descending));
    assert_eq!(ids(second), [uuid(1), uuid(P0)]);
    assert!(!info.has_next && info.has_previous);
    h.execute(peer_command(PeerCommand::Delete(DeletePeer {
        id: Some(uuid(2)),
    })))
    .expect("deleted");
    let (ascending, _) = h
        .payments
        .peers_page(&request(Some(uuid(P0)), SortOrder::Ascending));
    assert_eq!(ids(ascending), [uuid(1), uuid(3)]);

    // The state, peers included, survives a checkpoint.
    let mut bytes = Vec::new();
    h.payments.encode_checkpoint(&mut bytes);
    let (decoded, size) = Payments::decode_checkpoint(&bytes).expect("decodes");
    assert_eq!(size, bytes.len());
    assert!(decoded == h.payments);
}

fn auto(n: u128, address: &str, token: &str) -> CreateOrUpdatePeerByUrl {
    CreateOrUpdatePeerByUrl {
        id: uuid(n),
        asset_id: Some(uuid(USD)),
        static_ilp_address: address.into(),
        ilp_connector_url: format!("http://remote-{n}.example:3002"),
        incoming_auth_token: token.into(),
        outgoing_auth_token: format!("generated-{n}"),
        name: None,
        remote_name: Some("remote".into()),
        max_packet_amount: None,
        liquidity_threshold: Some(5),
        liquidity_to_deposit: None,
        deposit_transfer_id: uuid(n + 10_000),
    }
}

#[test]
fn auto_peering_errors_in_order() {
    type Tweak = fn(&mut CreateOrUpdatePeerByUrl);
    let unknown_asset: Tweak = |a| a.asset_id = Some(uuid(77));
    let bad_address: Tweak = |a| a.static_ilp_address = "x".into();
    let bad_url: Tweak = |a| a.ilp_connector_url = "http://".into();
    let taken_token: Tweak = |a| a.incoming_auth_token = "t0".into();
    let spent_id: Tweak = |a| {
        a.liquidity_to_deposit = Some(1);
        a.deposit_transfer_id = uuid(SPENT_TRANSFER);
    };
    let existing_peer: Tweak = |a| a.static_ilp_address = "test.p1".into();
    use AutoPeeringError::*;
    let rows: &[(&str, &[Tweak], AutoPeeringError)] = &[
        (
            "asset before address",
            &[unknown_asset, bad_address],
            UnknownAsset,
        ),
        (
            "address before token",
            &[bad_address, taken_token],
            InvalidPeerIlpConfiguration,
        ),
        (
            "url before token",
            &[bad_url, taken_token],
            InvalidPeerIlpConfiguration,
        ),
        (
            "url of an update",
            &[existing_peer, bad_url],
            InvalidPeerIlpConfiguration,
        ),
        (
            "token before deposit",
            &[taken_token, spent_id],
            InvalidPeeringRequest,
        ),
        (
            "token of an update",
            &[existing_peer, taken_token],
            InvalidPeeringRequest,
        ),
        ("deposit of a create", &[spent_id], LiquidityError),
        (
            "deposit of an update",
            &[existing_peer, spent_id],
            LiquidityError,
        ),
    ];
    let mut h = setup();
    peer_of(h.execute(peer_command(PeerCommand::Create(create(
        1,
        USD,
        "test.p1",
        &["t1"],
    )))));
    for (row, tweaks, error) in rows {
        let mut command = auto(2, "test.remote", "remote-token");
        for tweak in *tweaks {
            tweak(&mut command);
        }
        expect_error(
            &mut h,
            row,
            peer_command(PeerCommand::CreateOrUpdate(command)),
            (*error).into(),
        );
    }
}

#[test]
fn auto_peering_creates_then_updates_and_deposits() {
    let mut h = setup();
    let mut first = auto(1, "test.remote", "remote-token-1");
    first.max_packet_amount = Some(300);
    first.liquidity_to_deposit = Some(40);
    let created = peer_of(h.execute(peer_command(PeerCommand::CreateOrUpdate(first))));
    assert_eq!(created.id, uuid(1));
    assert_eq!(
        created.name.as_deref(),
        Some("remote"),
        "the remote's name when none is given"
    );
    assert_eq!(created.incoming_auth_tokens, ["remote-token-1"]);
    assert_eq!(
        created.outgoing,
        HttpOutgoing {
            auth_token: "generated-1".into(),
            endpoint: "http://remote-1.example:3002".into()
        }
    );
    assert_eq!(
        (created.max_packet_amount, created.liquidity_threshold),
        (Some(300), Some(5))
    );
    assert_eq!(h.liquidity(uuid(1).as_u128()), Some(40));

    // The same asset and address again: an update of that peer, then a second deposit.
    let mut again = auto(2, "test.remote", "remote-token-2");
    again.name = Some("mine".into());
    again.max_packet_amount = Some(0);
    again.liquidity_threshold = Some(77);
    again.liquidity_to_deposit = Some(2);
    let updated = peer_of(h.execute(peer_command(PeerCommand::CreateOrUpdate(again))));
    assert_eq!(updated.id, uuid(1));
    assert_eq!(updated.name.as_deref(), Some("mine"));
    assert_eq!(updated.incoming_auth_tokens, ["remote-token-2"]);
    assert_eq!(updated.outgoing.auth_token, "generated-2");
    assert_eq!(
        updated.max_packet_amount,
        Some(300),
        "zero keeps it, as Rafiki's update path"
    );
    assert_eq!(
        updated.liquidity_threshold,
        Some(5),
        "Rafiki's update path keeps the threshold"
    );
    assert_eq!(updated.created_at, created.created_at);
    assert!(h.payments.peer(uuid(2)).is_none());
    assert!(h
        .payments
        .peer_by_incoming_token("remote-token-1")
        .is_none());
    assert_eq!(h.liquidity(uuid(1).as_u128()), Some(42));
}
