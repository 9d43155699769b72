//! Model-based property test of the payments domain over a real in-memory ledger.
//!
//! `Model` is a small reference of the Admin API mutations this crate executes, written apart
//! from `src/`: a few vectors and maps (assets by code and scale with a deleted flag, the
//! balances of every ledger account as plain integers, the transfers with their pending states,
//! peers, tokens, wallet addresses, keys, and each idempotency key with its first outcome), with
//! its own checks in Rafiki's order and its own few lines of ledger arithmetic (overflows,
//! balance limits, retired ids, exact expiry). Its tables of valid and invalid ILP addresses,
//! endpoints and wallet address URLs are written by hand, not computed by the crate's
//! validators.
//!
//! Random command sequences run through `Payments::execute` on the test `Harness` and through
//! the model. After every command: the outcome (success kind and its key fields, or the exact
//! error) equals the model's; every account's balances, so every asset and peer liquidity, equal
//! the model's (invariant 7: the figure is read from the ledger); per ledger, debits equal
//! credits, posted and pending (invariant 1); each account's balances equal the fold of the
//! stored transfers that touched it (invariant 2); no liquidity account has more debits than
//! credits and no settlement account more credits than debits, pending included (invariant 3);
//! the reads the front makes agree with the model; and a failed command changes neither the
//! domain state nor the ledger's accounts. At the end of each case the whole run is replayed on
//! a fresh `Payments` and ledger (same outcomes, equal state, same ledger digest) and the
//! checkpoint must round-trip; a `Checkpoint` step also swaps the live state for its decoded
//! copy mid-run.
//!
//! Time: each command gets the harness's timestamp (the previous one plus
//! `TIMESTAMPS_PER_COMMAND`, its ledger events right after it). A `Tick` step advances the clock
//! by whole seconds (now and then by 25 hours, so that idempotency keys expire) and runs the
//! ledger's pulse (`expire_pending_transfers`) as the core's `tick` would, so withdrawals with
//! short timeouts do expire: before the pulse a post or void is refused as expired while the
//! amount is still held, after it the amount is back in the liquidity account.
//!
//! Not generated: `createOrUpdatePeerByUrl`, and Web Monetization receipts (no wallet address
//! account is ever created here, so its withdrawal is always `MissingLedgerAccount` and
//! `triggerWalletAddressEvents` finds nothing due).
//!
//! `TALLY_MODEL_CASES` sets the number of cases (default 64).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{DefaultHasher, Hash, Hasher};

use common::{uuid, Harness};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use tally_ledger::{
    AccountFlags, CreateTransferStatus, TransferFlags, PULSE_EVENTS_MAX, TIMESTAMP_MAX,
};
use tally_payments::{
    liquidity_of, settlement_account_id, AssetCommand, AssetError, Command, CreateAsset,
    CreatePeer, CreateWalletAddress, CreateWalletAddressKey, CreateWalletAddressWithdrawal,
    DeleteAsset, DeletePeer, Deposit, FeeError, FeeType, Fingerprint, HttpOutgoing, IdempotencyKey,
    Jwk, LedgerStatus, LiquidityCommand, LiquidityError, LiquidityOwner, Mutation, Outcome,
    Payments, PaymentsError, PeerCommand, PeerError, PeerHttp, RevokeWalletAddressKey, SetFee,
    Success, TriggerWalletAddressEvents, UpdateAsset, UpdatePeer, UpdateWalletAddress, Uuid,
    WalletAddressCommand, WalletAddressError, WalletAddressKeyError, WalletAddressStatus,
    Withdrawal, WithdrawalResolve, IDEMPOTENCY_KEY_LIFETIME_NS, TIMESTAMPS_PER_COMMAND,
};

// -------------------------------------------------------------------------------------------------
// The inputs: fixed tables, so that collisions come up often and validity is known by hand.

const CODES: [&str; 3] = ["USD", "EUR", "XRP"];
const SCALES: [u8; 2] = [2, 9];
/// ILP addresses and whether ilp-packet accepts them.
const ILP_ADDRESSES: [(&str, bool); 6] = [
    ("test.alice", true),
    ("test.bob", true),
    ("g.peer-1.x_y", true),
    ("test", false),
    ("example", false),
    ("test.a..b", false),
];
/// Outgoing endpoints and whether Rafiki's `isValidHttpUrl` accepts them.
const ENDPOINTS: [(&str, bool); 6] = [
    ("http://peer.example", true),
    ("https://peer.example:8443/ilp", true),
    ("  http://localhost:3002 ", true),
    ("ftp://peer.example", false),
    ("http://", false),
    ("peer.example", false),
];
/// Wallet address URLs and whether Rafiki's `isValidWalletAddressUrl` accepts them.
const URLS: [(&str, bool); 8] = [
    ("https://example.com/alice", true),
    ("https://EXAMPLE.com/Alice", true),
    ("https://example.com/bob", true),
    ("https://example.com/carol/pay", true),
    ("http://example.com/dave", false),
    ("https://example.com/", false),
    ("https://example.com/a/quotes", false),
    ("not a url", false),
];
const TOKENS: [&str; 4] = ["t1", "t2", "t3", "t4"];
const KIDS: [&str; 2] = ["k1", "k2"];
const IDEMPOTENCY_KEYS: [&str; 8] = ["i0", "i1", "i2", "i3", "i4", "i5", "i6", "i7"];
/// Client-chosen transfer ids (deposits, withdrawals) come from this many; retries collide.
const TRANSFER_POOL: usize = 8;
/// Front-chosen ids (objects, posts and voids) count up from here: always fresh.
const FRESH_FIRST: u128 = 1 << 40;
/// A UUID that names nothing.
const UNKNOWN: u128 = 7;
const NANOS_PER_SECOND: u64 = 1_000_000_000;

fn pool_transfer_id(index: usize) -> Uuid {
    uuid(100 + index as u128)
}

// -------------------------------------------------------------------------------------------------
// The generated steps. References to earlier objects are symbolic and resolved against the
// model when the step runs, so that a shrunk case still points at something that exists.

#[derive(Clone, Copy, Debug)]
enum Ref {
    /// The object at this index (modulo the count) of those created so far, if any.
    Known(usize),
    /// A UUID that names nothing.
    Unknown,
    /// The client's id is not a UUID.
    NotUuid,
}

/// What a post or void names.
#[derive(Clone, Copy, Debug)]
enum Target {
    /// A withdrawal still pending, if any (else as `Pool`).
    Pending(usize),
    /// A client transfer id: a withdrawal, a deposit, a failed one, or nothing.
    Pool(usize),
    /// Any transfer the ledger holds (a post or void included).
    Created(usize),
    NotUuid,
}

#[derive(Clone, Debug)]
enum Op {
    CreateAsset {
        code: usize,
        scale: usize,
        withdrawal_threshold: Option<u128>,
        liquidity_threshold: Option<u128>,
    },
    UpdateAsset {
        asset: Ref,
        withdrawal_threshold: Option<u128>,
        liquidity_threshold: Option<u128>,
    },
    DeleteAsset {
        asset: Ref,
    },
    SetFee {
        asset: Ref,
        receiving: bool,
        fixed: u128,
        basis_points: i32,
    },
    Deposit {
        peer: bool,
        owner: Ref,
        transfer: Option<usize>,
        amount: u128,
    },
    Withdraw {
        peer: bool,
        owner: Ref,
        transfer: Option<usize>,
        amount: u128,
        timeout_seconds: u64,
    },
    Resolve {
        post: bool,
        pending: Target,
    },
    CreatePeer {
        asset: Ref,
        address: usize,
        endpoint: usize,
        tokens: Option<Vec<usize>>,
        initial_liquidity: Option<u128>,
    },
    UpdatePeer {
        peer: Ref,
        address: Option<usize>,
        http: Option<(usize, Option<Vec<usize>>)>,
        name: Option<Option<u8>>,
    },
    DeletePeer {
        peer: Ref,
    },
    CreateWalletAddress {
        asset: Ref,
        url: usize,
    },
    UpdateWalletAddress {
        address: Ref,
        active: Option<bool>,
    },
    CreateKey {
        address: Ref,
        kid: usize,
    },
    RevokeKey {
        key: Ref,
    },
    WalletAddressWithdraw {
        address: Ref,
        transfer: Option<usize>,
        timeout_seconds: u64,
    },
    TriggerEvents {
        limit: u32,
    },
    /// Advance the clock by this many seconds, then pulse the ledger.
    Tick {
        seconds: u64,
    },
    /// Swap the live state for its checkpoint's decoding.
    Checkpoint,
    /// Send an earlier command again (same key, same arguments, new front-chosen ids).
    Repeat {
        index: usize,
    },
}

#[derive(Clone, Debug)]
struct Step {
    op: Op,
    /// Index into `IDEMPOTENCY_KEYS`.
    key: Option<usize>,
}

fn a_ref() -> impl Strategy<Value = Ref> {
    prop_oneof![
        8 => (0..8usize).prop_map(Ref::Known),
        1 => Just(Ref::Unknown),
        1 => Just(Ref::NotUuid),
    ]
}

fn amount() -> impl Strategy<Value = u128> {
    prop_oneof![
        2 => Just(0u128),
        8 => 1..=500u128,
        1 => Just(u128::MAX),
        1 => (1u128 << 126)..=u128::MAX,
    ]
}

/// Mostly below what deposits bring, sometimes above.
fn withdrawal_amount() -> impl Strategy<Value = u128> {
    prop_oneof![
        1 => Just(0u128),
        8 => 1..=100u128,
        2 => 101..=10_000u128,
        1 => Just(u128::MAX),
    ]
}

/// Mostly a valid entry of a table whose first `valid` entries are the valid ones.
fn entry(valid: usize, len: usize) -> impl Strategy<Value = usize> {
    prop_oneof![4 => 0..valid, 1 => valid..len]
}

/// Whether a deposit or withdrawal is a peer's (else an asset's).
fn peer_owner() -> impl Strategy<Value = bool> {
    prop_oneof![2 => Just(false), 1 => Just(true)]
}

fn timeout() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => Just(0u64),
        3 => 1..=3u64,
        1 => Just(3600u64),
        1 => Just(u64::from(u32::MAX)),
        1 => Just(u64::from(u32::MAX) + 1),
    ]
}

fn threshold() -> impl Strategy<Value = Option<u128>> {
    proptest::option::of(0..100u128)
}

fn transfer() -> impl Strategy<Value = Option<usize>> {
    prop_oneof![9 => (0..TRANSFER_POOL).prop_map(Some), 1 => Just(None)]
}

fn tokens() -> impl Strategy<Value = Option<Vec<usize>>> {
    proptest::option::of(proptest::collection::vec(0..TOKENS.len(), 0..3))
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..CODES.len(), 0..SCALES.len(), threshold(), threshold()).prop_map(
            |(code, scale, withdrawal_threshold, liquidity_threshold)| Op::CreateAsset {
                code,
                scale,
                withdrawal_threshold,
                liquidity_threshold,
            }
        ),
        1 => (a_ref(), threshold(), threshold()).prop_map(
            |(asset, withdrawal_threshold, liquidity_threshold)| Op::UpdateAsset {
                asset,
                withdrawal_threshold,
                liquidity_threshold,
            }
        ),
        1 => a_ref().prop_map(|asset| Op::DeleteAsset { asset }),
        1 => (a_ref(), any::<bool>(), 0..10u128, prop_oneof![Just(-1), 0..=10_000i32, Just(10_001)])
            .prop_map(|(asset, receiving, fixed, basis_points)| Op::SetFee {
                asset,
                receiving,
                fixed,
                basis_points,
            }),
        6 => (peer_owner(), a_ref(), transfer(), amount()).prop_map(
            |(peer, owner, transfer, amount)| Op::Deposit {
                peer,
                owner,
                transfer,
                amount,
            }
        ),
        6 => (peer_owner(), a_ref(), transfer(), withdrawal_amount(), timeout()).prop_map(
            |(peer, owner, transfer, amount, timeout_seconds)| Op::Withdraw {
                peer,
                owner,
                transfer,
                amount,
                timeout_seconds,
            }
        ),
        4 => (
            any::<bool>(),
            prop_oneof![
                4 => any::<usize>().prop_map(Target::Pending),
                3 => (0..TRANSFER_POOL).prop_map(Target::Pool),
                2 => any::<usize>().prop_map(Target::Created),
                1 => Just(Target::NotUuid),
            ]
        )
            .prop_map(|(post, pending)| Op::Resolve { post, pending }),
        3 => (
            a_ref(),
            entry(3, ILP_ADDRESSES.len()),
            entry(3, ENDPOINTS.len()),
            tokens(),
            proptest::option::of(amount()),
        )
            .prop_map(|(asset, address, endpoint, tokens, initial_liquidity)| {
                Op::CreatePeer {
                    asset,
                    address,
                    endpoint,
                    tokens,
                    initial_liquidity,
                }
            }),
        2 => (
            a_ref(),
            proptest::option::of(entry(3, ILP_ADDRESSES.len())),
            proptest::option::of((entry(3, ENDPOINTS.len()), tokens())),
            proptest::option::of(proptest::option::of(0..3u8)),
        )
            .prop_map(|(peer, address, http, name)| Op::UpdatePeer {
                peer,
                address,
                http,
                name,
            }),
        1 => a_ref().prop_map(|peer| Op::DeletePeer { peer }),
        2 => (a_ref(), entry(4, URLS.len()))
            .prop_map(|(asset, url)| Op::CreateWalletAddress { asset, url }),
        1 => (a_ref(), proptest::option::of(any::<bool>()))
            .prop_map(|(address, active)| Op::UpdateWalletAddress { address, active }),
        2 => (a_ref(), 0..KIDS.len()).prop_map(|(address, kid)| Op::CreateKey { address, kid }),
        1 => a_ref().prop_map(|key| Op::RevokeKey { key }),
        1 => (a_ref(), transfer(), timeout()).prop_map(|(address, transfer, timeout_seconds)| {
            Op::WalletAddressWithdraw {
                address,
                transfer,
                timeout_seconds,
            }
        }),
        1 => (0..4u32).prop_map(|limit| Op::TriggerEvents { limit }),
        2 => prop_oneof![6 => 1..=4u64, 1 => Just(25 * 3600u64)]
            .prop_map(|seconds| Op::Tick { seconds }),
        1 => Just(Op::Checkpoint),
        4 => any::<usize>().prop_map(|index| Op::Repeat { index }),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    let key = prop_oneof![
        3 => Just(None),
        1 => (0..IDEMPOTENCY_KEYS.len()).prop_map(Some),
    ];
    (op(), key).prop_map(|(op, key)| Step { op, key })
}

// -------------------------------------------------------------------------------------------------
// The reference model.

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Balances {
    debits_pending: u128,
    debits_posted: u128,
    credits_pending: u128,
    credits_posted: u128,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// Debits never exceed credits.
    Liquidity,
    /// Credits never exceed debits.
    Settlement,
}

#[derive(Clone, Debug)]
struct ModelAccount {
    kind: Kind,
    ledger: u32,
    balances: Balances,
}

#[derive(Clone, Debug)]
struct ModelAsset {
    id: Uuid,
    code: String,
    scale: u8,
    ledger: u32,
    withdrawal_threshold: Option<u128>,
    liquidity_threshold: Option<u128>,
    deleted: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PendingState {
    Pending,
    Posted,
    Voided,
    Expired,
}

#[derive(Clone, Copy, Debug)]
enum TransferKind {
    Posted,
    Pending {
        expires_at: u64,
        state: PendingState,
    },
    Resolved {
        post: bool,
        pending: u128,
    },
}

#[derive(Clone, Debug)]
struct ModelTransfer {
    debit: u128,
    credit: u128,
    amount: u128,
    kind: TransferKind,
}

#[derive(Clone, Debug)]
struct ModelPeer {
    id: Uuid,
    asset: Uuid,
    address: String,
    tokens: Vec<String>,
    deleted: bool,
}

#[derive(Clone, Debug)]
struct ModelWalletAddress {
    id: Uuid,
    asset: Uuid,
    url: String,
    active: bool,
}

#[derive(Clone, Debug)]
struct ModelKey {
    id: Uuid,
    address: Uuid,
    kid: String,
    revoked: bool,
}

/// A success as the model predicts it: its kind and the fields that matter.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Seen {
    Asset {
        id: Uuid,
        code: String,
        scale: u8,
        ledger: u32,
        withdrawal_threshold: Option<u128>,
        liquidity_threshold: Option<u128>,
        deleted: bool,
    },
    Fee {
        id: Uuid,
        asset: Uuid,
        fee_type: FeeType,
        basis_points: u16,
    },
    Liquidity,
    Peer {
        id: Uuid,
        asset: Uuid,
        address: String,
        tokens: Vec<String>,
    },
    PeerDeleted,
    WalletAddress {
        id: Uuid,
        asset: Uuid,
        url: String,
        active: bool,
    },
    Key {
        id: Uuid,
        address: Uuid,
        kid: String,
        revoked: bool,
    },
    Events {
        count: u32,
    },
    /// Never predicted: no wallet address account exists here.
    WalletAddressWithdrawal {
        id: Uuid,
        amount: u128,
    },
}

type Expect = Result<Seen, PaymentsError>;

/// How the model answered a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Answer {
    /// The mutation ran.
    Ran,
    /// The idempotency key gave back an earlier outcome, or was refused: nothing ran.
    Recalled,
}

#[derive(Clone, Debug)]
struct Remembered {
    fingerprint: Fingerprint,
    outcome: Expect,
    expires_at: u64,
}

#[derive(Clone, Debug, Default)]
struct Model {
    assets: Vec<ModelAsset>,
    ledger_last: u32,
    accounts: BTreeMap<u128, ModelAccount>,
    transfers: BTreeMap<u128, ModelTransfer>,
    /// Ids of transfers that failed with a transient status: spent for good.
    failed: BTreeSet<u128>,
    peers: Vec<ModelPeer>,
    wallet_addresses: Vec<ModelWalletAddress>,
    keys: Vec<ModelKey>,
    fees_latest: BTreeMap<(Uuid, FeeType), Uuid>,
    idempotency: BTreeMap<String, Remembered>,
}

fn table_valid(table: &[(&str, bool)], value: &str) -> bool {
    table
        .iter()
        .find(|(entry, _)| *entry == value)
        .map(|(_, valid)| *valid)
        .expect("inputs come from the table")
}

fn ledger_error(status: CreateTransferStatus) -> LiquidityError {
    LiquidityError::Ledger(LedgerStatus(status as u32))
}

impl ModelAsset {
    fn seen(&self) -> Seen {
        Seen::Asset {
            id: self.id,
            code: self.code.clone(),
            scale: self.scale,
            ledger: self.ledger,
            withdrawal_threshold: self.withdrawal_threshold,
            liquidity_threshold: self.liquidity_threshold,
            deleted: self.deleted,
        }
    }
}

impl ModelPeer {
    fn seen(&self) -> Seen {
        Seen::Peer {
            id: self.id,
            asset: self.asset,
            address: self.address.clone(),
            tokens: self.tokens.clone(),
        }
    }
}

impl Model {
    /// Forgets expired keys, then answers from a key or runs the mutation. Also says whether
    /// a key expired.
    fn execute(&mut self, command: &Command, timestamp: u64) -> (Expect, Answer, bool) {
        let keys_before = self.idempotency.len();
        self.idempotency
            .retain(|_, remembered| remembered.expires_at > timestamp);
        let expired = self.idempotency.len() < keys_before;
        if let Some(key) = &command.idempotency {
            if let Some(remembered) = self.idempotency.get(&key.key) {
                let outcome = if remembered.fingerprint == key.fingerprint {
                    remembered.outcome.clone()
                } else {
                    Err(PaymentsError::IdempotencyKeyReused {
                        key: key.key.clone(),
                    })
                };
                return (outcome, Answer::Recalled, expired);
            }
        }
        let outcome = self.apply(&command.mutation, timestamp);
        if let Some(key) = &command.idempotency {
            self.idempotency.insert(
                key.key.clone(),
                Remembered {
                    fingerprint: key.fingerprint,
                    outcome: outcome.clone(),
                    expires_at: timestamp + 24 * 3600 * NANOS_PER_SECOND,
                },
            );
        }
        (outcome, Answer::Ran, expired)
    }

    /// Every handler checks before it changes anything (but the ledger's retired ids).
    fn apply(&mut self, mutation: &Mutation, timestamp: u64) -> Expect {
        // The ledger stamps the command's first event right after the command.
        let event_timestamp = timestamp + 1;
        match mutation {
            Mutation::IncomingPayment(_)
            | Mutation::Quote(_)
            | Mutation::OutgoingPayment(_)
            | Mutation::WebhookDelivery(_) => {
                unreachable!("the generator makes no payment commands (tests/flows.rs has them)")
            }
            Mutation::Asset(AssetCommand::Create(create)) => self.create_asset(create),
            Mutation::Asset(AssetCommand::Update(update)) => {
                let asset = self
                    .active_asset_mut(update.id)
                    .ok_or(AssetError::UnknownAsset)?;
                asset.withdrawal_threshold = update.withdrawal_threshold;
                asset.liquidity_threshold = update.liquidity_threshold;
                Ok(asset.seen())
            }
            Mutation::Asset(AssetCommand::Delete(delete)) => {
                let id = self
                    .active_asset_mut(delete.id)
                    .ok_or(AssetError::UnknownAsset)?
                    .id;
                let in_use = self.peers.iter().any(|p| !p.deleted && p.asset == id)
                    || self.wallet_addresses.iter().any(|a| a.asset == id);
                if in_use {
                    return Err(AssetError::CannotDeleteInUseAsset.into());
                }
                let asset = self.active_asset_mut(Some(id)).expect("found above");
                asset.deleted = true;
                Ok(asset.seen())
            }
            Mutation::Fee(set) => {
                if !(0..=10_000).contains(&set.basis_points) {
                    return Err(FeeError::InvalidBasisPointFee.into());
                }
                let asset = self
                    .active_asset_mut(set.asset_id)
                    .ok_or(FeeError::UnknownAsset)?
                    .id;
                self.fees_latest.insert((asset, set.fee_type), set.id);
                Ok(Seen::Fee {
                    id: set.id,
                    asset,
                    fee_type: set.fee_type,
                    basis_points: set.basis_points as u16,
                })
            }
            Mutation::Liquidity(LiquidityCommand::Deposit(deposit)) => {
                if deposit.amount == 0 {
                    return Err(LiquidityError::AmountZero.into());
                }
                let (account, asset) = self.owner(deposit.owner)?;
                let id = deposit.transfer_id.ok_or(LiquidityError::InvalidId)?;
                let settlement = settlement_account_id(asset);
                self.transfer(
                    id.as_u128(),
                    settlement,
                    account,
                    deposit.amount,
                    0,
                    event_timestamp,
                )?;
                Ok(Seen::Liquidity)
            }
            Mutation::Liquidity(LiquidityCommand::Withdraw(withdrawal)) => {
                if withdrawal.amount == 0 {
                    return Err(LiquidityError::AmountZero.into());
                }
                let (account, asset) = self.owner(withdrawal.owner)?;
                let id = withdrawal.transfer_id.ok_or(LiquidityError::InvalidId)?;
                let timeout = u32::try_from(withdrawal.timeout_seconds)
                    .map_err(|_| LiquidityError::InvalidTimeout)?;
                let settlement = settlement_account_id(asset);
                self.transfer(
                    id.as_u128(),
                    account,
                    settlement,
                    withdrawal.amount,
                    timeout,
                    event_timestamp,
                )?;
                Ok(Seen::Liquidity)
            }
            Mutation::Liquidity(LiquidityCommand::Post(resolve)) => {
                self.resolve(resolve, true, event_timestamp)
            }
            Mutation::Liquidity(LiquidityCommand::Void(resolve)) => {
                self.resolve(resolve, false, event_timestamp)
            }
            Mutation::Peer(PeerCommand::Create(create)) => {
                self.create_peer(create, event_timestamp)
            }
            Mutation::Peer(PeerCommand::Update(update)) => self.update_peer(update),
            Mutation::Peer(PeerCommand::Delete(delete)) => {
                let peer = self
                    .live_peer_mut(delete.id)
                    .ok_or(PeerError::UnknownPeer)?;
                peer.deleted = true;
                Ok(Seen::PeerDeleted)
            }
            Mutation::Peer(PeerCommand::CreateOrUpdate(_)) => {
                unreachable!("createOrUpdatePeerByUrl is not generated")
            }
            Mutation::WalletAddress(command) => self.wallet_address(command),
        }
    }

    fn active_asset_mut(&mut self, id: Option<Uuid>) -> Option<&mut ModelAsset> {
        let id = id?;
        self.assets
            .iter_mut()
            .find(|asset| asset.id == id && !asset.deleted)
    }

    fn live_peer_mut(&mut self, id: Option<Uuid>) -> Option<&mut ModelPeer> {
        let id = id?;
        self.peers
            .iter_mut()
            .find(|peer| peer.id == id && !peer.deleted)
    }

    fn create_asset(&mut self, create: &CreateAsset) -> Expect {
        let existing = self
            .assets
            .iter_mut()
            .find(|asset| asset.code == create.code && asset.scale == create.scale);
        if let Some(asset) = existing {
            if !asset.deleted {
                return Err(AssetError::DuplicateAsset.into());
            }
            // Re-activated as it was: same id, ledger and thresholds.
            asset.deleted = false;
            return Ok(asset.seen());
        }
        self.ledger_last += 1;
        let ledger = self.ledger_last;
        for (id, kind) in [
            (create.id.as_u128(), Kind::Liquidity),
            (settlement_account_id(create.id), Kind::Settlement),
        ] {
            let account = ModelAccount {
                kind,
                ledger,
                balances: Balances::default(),
            };
            assert!(self.accounts.insert(id, account).is_none());
        }
        let asset = ModelAsset {
            id: create.id,
            code: create.code.clone(),
            scale: create.scale,
            ledger,
            withdrawal_threshold: create.withdrawal_threshold,
            liquidity_threshold: create.liquidity_threshold,
            deleted: false,
        };
        self.assets.push(asset.clone());
        Ok(asset.seen())
    }

    /// The owner's liquidity account and its asset.
    fn owner(&self, owner: LiquidityOwner) -> Result<(u128, Uuid), LiquidityError> {
        match owner {
            LiquidityOwner::Asset(id) => self
                .assets
                .iter()
                .find(|asset| Some(asset.id) == id && !asset.deleted)
                .map(|asset| (asset.id.as_u128(), asset.id))
                .ok_or(LiquidityError::UnknownAsset),
            LiquidityOwner::Peer(id) => self
                .peers
                .iter()
                .find(|peer| Some(peer.id) == id && !peer.deleted)
                .map(|peer| (peer.id.as_u128(), peer.asset))
                .ok_or(LiquidityError::UnknownPeer),
        }
    }

    /// A single-phase (`timeout == 0`) or pending transfer, as the ledger decides it.
    fn transfer(
        &mut self,
        id: u128,
        debit: u128,
        credit: u128,
        amount: u128,
        timeout: u32,
        timestamp: u64,
    ) -> Result<(), LiquidityError> {
        use CreateTransferStatus as S;
        if self.transfers.contains_key(&id) || self.failed.contains(&id) {
            return Err(LiquidityError::TransferExists);
        }
        let dr = &self.accounts[&debit];
        let cr = &self.accounts[&credit];
        let (d, c) = (dr.balances, cr.balances);
        let pending = timeout > 0;
        let status = if pending && amount.checked_add(d.debits_pending).is_none() {
            Some(S::OverflowsDebitsPending)
        } else if pending && amount.checked_add(c.credits_pending).is_none() {
            Some(S::OverflowsCreditsPending)
        } else if amount.checked_add(d.debits_posted).is_none() {
            Some(S::OverflowsDebitsPosted)
        } else if amount.checked_add(c.credits_posted).is_none() {
            Some(S::OverflowsCreditsPosted)
        } else if amount
            .checked_add(d.debits_pending + d.debits_posted)
            .is_none()
        {
            Some(S::OverflowsDebits)
        } else if amount
            .checked_add(c.credits_pending + c.credits_posted)
            .is_none()
        {
            Some(S::OverflowsCredits)
        } else if timestamp + u64::from(timeout) * NANOS_PER_SECOND > TIMESTAMP_MAX {
            Some(S::OverflowsTimeout)
        } else if dr.kind == Kind::Liquidity
            && d.debits_pending + d.debits_posted + amount > d.credits_posted
        {
            Some(S::ExceedsCredits)
        } else if cr.kind == Kind::Settlement
            && c.credits_pending + c.credits_posted + amount > c.debits_posted
        {
            Some(S::ExceedsDebits)
        } else {
            None
        };
        match status {
            Some(S::ExceedsCredits) => {
                self.failed.insert(id);
                return Err(LiquidityError::InsufficientBalance);
            }
            Some(S::ExceedsDebits) => {
                self.failed.insert(id);
                return Err(LiquidityError::InsufficientDebitBalance);
            }
            Some(status) => return Err(ledger_error(status)),
            None => {}
        }
        let kind = if pending {
            let d = &mut self.accounts.get_mut(&debit).unwrap().balances;
            d.debits_pending += amount;
            let c = &mut self.accounts.get_mut(&credit).unwrap().balances;
            c.credits_pending += amount;
            TransferKind::Pending {
                expires_at: timestamp + u64::from(timeout) * NANOS_PER_SECOND,
                state: PendingState::Pending,
            }
        } else {
            self.accounts
                .get_mut(&debit)
                .unwrap()
                .balances
                .debits_posted += amount;
            self.accounts
                .get_mut(&credit)
                .unwrap()
                .balances
                .credits_posted += amount;
            TransferKind::Posted
        };
        let transfer = ModelTransfer {
            debit,
            credit,
            amount,
            kind,
        };
        self.transfers.insert(id, transfer);
        Ok(())
    }

    fn resolve(&mut self, resolve: &WithdrawalResolve, post: bool, timestamp: u64) -> Expect {
        let pending_id = resolve
            .withdrawal_id
            .ok_or(LiquidityError::InvalidId)?
            .as_u128();
        let id = resolve.transfer_id.as_u128();
        if self.transfers.contains_key(&id) || self.failed.contains(&id) {
            return Err(LiquidityError::TransferExists.into());
        }
        let Some(pending) = self.transfers.get(&pending_id).cloned() else {
            self.failed.insert(id);
            return Err(LiquidityError::UnknownTransfer.into());
        };
        let resolved = if post {
            LiquidityError::AlreadyPosted
        } else {
            LiquidityError::AlreadyVoided
        };
        let TransferKind::Pending { expires_at, state } = pending.kind else {
            return Err(resolved.into());
        };
        match state {
            PendingState::Pending if expires_at <= timestamp => {
                return Err(LiquidityError::TransferExpired.into())
            }
            PendingState::Pending => {}
            PendingState::Posted => return Err(LiquidityError::AlreadyPosted.into()),
            PendingState::Voided => return Err(LiquidityError::AlreadyVoided.into()),
            PendingState::Expired => return Err(LiquidityError::TransferExpired.into()),
        }
        let amount = pending.amount;
        let d = &mut self.accounts.get_mut(&pending.debit).unwrap().balances;
        d.debits_pending -= amount;
        if post {
            d.debits_posted += amount;
        }
        let c = &mut self.accounts.get_mut(&pending.credit).unwrap().balances;
        c.credits_pending -= amount;
        if post {
            c.credits_posted += amount;
        }
        let state = if post {
            PendingState::Posted
        } else {
            PendingState::Voided
        };
        self.transfers.get_mut(&pending_id).unwrap().kind =
            TransferKind::Pending { expires_at, state };
        let transfer = ModelTransfer {
            debit: pending.debit,
            credit: pending.credit,
            amount,
            kind: TransferKind::Resolved {
                post,
                pending: pending_id,
            },
        };
        self.transfers.insert(id, transfer);
        Ok(Seen::Liquidity)
    }

    /// Whether a live peer other than `owner` holds one of `tokens`, or `tokens` repeats one.
    fn tokens_taken(&self, tokens: &[String], owner: Option<Uuid>) -> bool {
        let repeated = tokens
            .iter()
            .enumerate()
            .any(|(index, token)| tokens[..index].contains(token));
        let held = self.peers.iter().any(|peer| {
            !peer.deleted
                && Some(peer.id) != owner
                && peer.tokens.iter().any(|token| tokens.contains(token))
        });
        repeated || held
    }

    fn create_peer(&mut self, create: &CreatePeer, timestamp: u64) -> Expect {
        if !table_valid(&ILP_ADDRESSES, &create.static_ilp_address) {
            return Err(PeerError::InvalidStaticIlpAddress.into());
        }
        if !table_valid(&ENDPOINTS, &create.http.outgoing.endpoint) {
            return Err(PeerError::InvalidHTTPEndpoint.into());
        }
        let asset = self
            .active_asset_mut(create.asset_id)
            .ok_or(PeerError::UnknownAsset)?;
        let (asset, ledger) = (asset.id, asset.ledger);
        let address_taken = self.peers.iter().any(|peer| {
            !peer.deleted && peer.asset == asset && peer.address == create.static_ilp_address
        });
        if address_taken {
            return Err(PeerError::DuplicatePeer.into());
        }
        let tokens = create.http.incoming_auth_tokens.clone().unwrap_or_default();
        if self.tokens_taken(&tokens, None) {
            return Err(PeerError::DuplicateIncomingToken.into());
        }
        let mut after = self.clone();
        let account = ModelAccount {
            kind: Kind::Liquidity,
            ledger,
            balances: Balances::default(),
        };
        assert!(after
            .accounts
            .insert(create.id.as_u128(), account)
            .is_none());
        if let Some(amount) = create.initial_liquidity.filter(|amount| *amount > 0) {
            let deposit = after.transfer(
                create.initial_liquidity_transfer_id.as_u128(),
                settlement_account_id(asset),
                create.id.as_u128(),
                amount,
                0,
                // The account is created first: the deposit is the second event.
                timestamp + 1,
            );
            if deposit.is_err() {
                return Err(PeerError::InvalidInitialLiquidity.into());
            }
        }
        *self = after;
        let peer = ModelPeer {
            id: create.id,
            asset,
            address: create.static_ilp_address.clone(),
            tokens,
            deleted: false,
        };
        self.peers.push(peer.clone());
        Ok(peer.seen())
    }

    fn update_peer(&mut self, update: &UpdatePeer) -> Expect {
        if let Some(address) = &update.static_ilp_address {
            if !table_valid(&ILP_ADDRESSES, address) {
                return Err(PeerError::InvalidStaticIlpAddress.into());
            }
        }
        if let Some(http) = &update.http {
            if !table_valid(&ENDPOINTS, &http.outgoing.endpoint) {
                return Err(PeerError::InvalidHTTPEndpoint.into());
            }
        }
        let tokens = update
            .http
            .as_ref()
            .and_then(|http| http.incoming_auth_tokens.clone());
        if let Some(tokens) = &tokens {
            if self.tokens_taken(tokens, update.id) {
                return Err(PeerError::DuplicateIncomingToken.into());
            }
        }
        let peer = self
            .peers
            .iter()
            .find(|peer| Some(peer.id) == update.id && !peer.deleted)
            .ok_or(PeerError::UnknownPeer)?;
        let (id, asset) = (peer.id, peer.asset);
        if let Some(address) = &update.static_ilp_address {
            let taken = self.peers.iter().any(|other| {
                !other.deleted
                    && other.id != id
                    && other.asset == asset
                    && other.address == *address
            });
            if taken {
                return Err(PeerError::DuplicatePeer.into());
            }
        }
        let peer = self.live_peer_mut(Some(id)).expect("found above");
        if let Some(address) = &update.static_ilp_address {
            peer.address = address.clone();
        }
        if let Some(tokens) = tokens {
            peer.tokens = tokens;
        }
        Ok(peer.seen())
    }

    fn wallet_address(&mut self, command: &WalletAddressCommand) -> Expect {
        match command {
            WalletAddressCommand::Create(create) => {
                if !table_valid(&URLS, &create.url) {
                    return Err(WalletAddressError::InvalidUrl.into());
                }
                let url = create.url.to_lowercase();
                if self.wallet_addresses.iter().any(|a| a.url == url) {
                    return Err(WalletAddressError::DuplicateWalletAddress.into());
                }
                let asset = self
                    .active_asset_mut(create.asset_id)
                    .ok_or(WalletAddressError::UnknownAsset)?
                    .id;
                let address = ModelWalletAddress {
                    id: create.id,
                    asset,
                    url,
                    active: true,
                };
                self.wallet_addresses.push(address.clone());
                Ok(Seen::WalletAddress {
                    id: address.id,
                    asset,
                    url: address.url,
                    active: true,
                })
            }
            WalletAddressCommand::Update(update) => {
                let address = self
                    .wallet_addresses
                    .iter_mut()
                    .find(|a| Some(a.id) == update.id)
                    .ok_or(WalletAddressError::UnknownWalletAddress)?;
                match update.status {
                    Some(WalletAddressStatus::Active) => address.active = true,
                    Some(WalletAddressStatus::Inactive) => address.active = false,
                    None => {}
                }
                Ok(Seen::WalletAddress {
                    id: address.id,
                    asset: address.asset,
                    url: address.url.clone(),
                    active: address.active,
                })
            }
            WalletAddressCommand::CreateKey(create) => {
                let duplicate = self.keys.iter().any(|key| {
                    Some(key.address) == create.wallet_address_id
                        && key.kid == create.jwk.kid
                        && !key.revoked
                });
                if duplicate {
                    return Err(WalletAddressKeyError::DuplicateKey.into());
                }
                let address = self
                    .wallet_addresses
                    .iter()
                    .find(|a| Some(a.id) == create.wallet_address_id)
                    .ok_or(WalletAddressKeyError::UnknownWalletAddress)?
                    .id;
                let key = ModelKey {
                    id: create.id,
                    address,
                    kid: create.jwk.kid.clone(),
                    revoked: false,
                };
                self.keys.push(key.clone());
                Ok(key.seen())
            }
            WalletAddressCommand::RevokeKey(revoke) => {
                let key = self
                    .keys
                    .iter_mut()
                    .find(|key| Some(key.id) == revoke.id)
                    .ok_or(WalletAddressKeyError::UnknownKey)?;
                key.revoked = true;
                Ok(key.seen())
            }
            WalletAddressCommand::Withdraw(withdrawal) => {
                let address = self
                    .wallet_addresses
                    .iter()
                    .find(|a| Some(a.id) == withdrawal.wallet_address_id)
                    .ok_or(LiquidityError::UnknownWalletAddress)?;
                assert!(!self.accounts.contains_key(&address.id.as_u128()));
                Err(WalletAddressError::MissingLedgerAccount.into())
            }
            WalletAddressCommand::TriggerEvents(_) => Ok(Seen::Events { count: 0 }),
        }
    }

    /// The ledger's pulse at `timestamp`: pending transfers due by then expire and release
    /// their amounts.
    fn pulse(&mut self, timestamp: u64) {
        let due: Vec<u128> = self
            .transfers
            .iter()
            .filter(|(_, transfer)| {
                matches!(
                    transfer.kind,
                    TransferKind::Pending { expires_at, state: PendingState::Pending }
                        if expires_at <= timestamp
                )
            })
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            let transfer = self.transfers.get_mut(&id).unwrap();
            let TransferKind::Pending { expires_at, .. } = transfer.kind else {
                unreachable!()
            };
            transfer.kind = TransferKind::Pending {
                expires_at,
                state: PendingState::Expired,
            };
            let (debit, credit, amount) = (transfer.debit, transfer.credit, transfer.amount);
            self.accounts
                .get_mut(&debit)
                .unwrap()
                .balances
                .debits_pending -= amount;
            self.accounts
                .get_mut(&credit)
                .unwrap()
                .balances
                .credits_pending -= amount;
        }
    }

    fn liquidity(&self, id: u128) -> u128 {
        let b = self.accounts[&id].balances;
        b.credits_posted - b.debits_posted - b.debits_pending
    }
}

impl ModelKey {
    fn seen(&self) -> Seen {
        Seen::Key {
            id: self.id,
            address: self.address,
            kid: self.kid.clone(),
            revoked: self.revoked,
        }
    }
}

/// What the crate answered, cut down to what the model predicts.
fn seen(outcome: &Outcome) -> Expect {
    let success = match outcome {
        Ok(success) => success,
        Err(error) => return Err(error.clone()),
    };
    Ok(match success {
        Success::Asset(asset) => Seen::Asset {
            id: asset.id,
            code: asset.code.clone(),
            scale: asset.scale,
            ledger: asset.ledger,
            withdrawal_threshold: asset.withdrawal_threshold,
            liquidity_threshold: asset.liquidity_threshold,
            deleted: asset.deleted_at.is_some(),
        },
        Success::Fee(fee) => Seen::Fee {
            id: fee.id,
            asset: fee.asset_id,
            fee_type: fee.fee_type,
            basis_points: fee.basis_points,
        },
        Success::Liquidity => Seen::Liquidity,
        Success::Peer(peer) => Seen::Peer {
            id: peer.id,
            asset: peer.asset_id,
            address: peer.static_ilp_address.clone(),
            tokens: peer.incoming_auth_tokens.clone(),
        },
        Success::PeerDeleted => Seen::PeerDeleted,
        Success::WalletAddress(address) => Seen::WalletAddress {
            id: address.id,
            asset: address.asset_id,
            url: address.url.clone(),
            active: address.status() == WalletAddressStatus::Active,
        },
        Success::WalletAddressKey(key) => Seen::Key {
            id: key.id,
            address: key.wallet_address_id,
            kid: key.jwk.kid.clone(),
            revoked: key.revoked,
        },
        Success::WalletAddressWithdrawal { id, amount, .. } => Seen::WalletAddressWithdrawal {
            id: *id,
            amount: *amount,
        },
        Success::WalletAddressEvents { count } => Seen::Events { count: *count },
        Success::IncomingPayment(_)
        | Success::Receiver(_)
        | Success::Quote(_)
        | Success::OutgoingPayment(_)
        | Success::WebhookDelivery => {
            unreachable!("the generator makes no payment commands (tests/flows.rs has them)")
        }
    })
}

// -------------------------------------------------------------------------------------------------
// Building commands: the client's arguments, then the ids the front chooses.

/// Replaces every id the front chooses (new objects, posting and voiding transfers, seeds).
fn with_front_ids(mutation: &Mutation, mut fresh: impl FnMut() -> Uuid) -> Mutation {
    let mut mutation = mutation.clone();
    match &mut mutation {
        Mutation::IncomingPayment(_)
        | Mutation::Quote(_)
        | Mutation::OutgoingPayment(_)
        | Mutation::WebhookDelivery(_) => {
            unreachable!("the generator makes no payment commands (tests/flows.rs has them)")
        }
        Mutation::Asset(AssetCommand::Create(create)) => create.id = fresh(),
        Mutation::Asset(AssetCommand::Update(_) | AssetCommand::Delete(_)) => {}
        Mutation::Fee(set) => set.id = fresh(),
        Mutation::Liquidity(LiquidityCommand::Post(resolve) | LiquidityCommand::Void(resolve)) => {
            resolve.transfer_id = fresh();
        }
        Mutation::Liquidity(LiquidityCommand::Deposit(_) | LiquidityCommand::Withdraw(_)) => {}
        Mutation::Peer(PeerCommand::Create(create)) => {
            create.id = fresh();
            create.initial_liquidity_transfer_id = fresh();
        }
        Mutation::Peer(PeerCommand::CreateOrUpdate(request)) => {
            request.id = fresh();
            request.deposit_transfer_id = fresh();
        }
        Mutation::Peer(PeerCommand::Update(_) | PeerCommand::Delete(_)) => {}
        Mutation::WalletAddress(WalletAddressCommand::Create(create)) => create.id = fresh(),
        Mutation::WalletAddress(WalletAddressCommand::CreateKey(create)) => create.id = fresh(),
        Mutation::WalletAddress(WalletAddressCommand::TriggerEvents(trigger)) => {
            trigger.seed = fresh();
        }
        Mutation::WalletAddress(
            WalletAddressCommand::Update(_)
            | WalletAddressCommand::RevokeKey(_)
            | WalletAddressCommand::Withdraw(_),
        ) => {}
    }
    mutation
}

/// The front's hash of the mutation's name and the client's arguments (not the ids it chose).
fn fingerprint(mutation: &Mutation) -> Fingerprint {
    let text = format!("{:?}", with_front_ids(mutation, Uuid::nil));
    let mut bytes = [0u8; 32];
    for (round, chunk) in bytes.chunks_mut(8).enumerate() {
        let mut hasher = DefaultHasher::new();
        (round, &text).hash(&mut hasher);
        chunk.copy_from_slice(&hasher.finish().to_le_bytes());
    }
    Fingerprint(bytes)
}

fn resolve_ref(reference: Ref, ids: &[Uuid]) -> Option<Uuid> {
    match reference {
        Ref::Known(index) if !ids.is_empty() => Some(ids[index % ids.len()]),
        Ref::Known(_) | Ref::Unknown => Some(uuid(UNKNOWN)),
        Ref::NotUuid => None,
    }
}

fn http(endpoint: usize, tokens: &Option<Vec<usize>>) -> PeerHttp {
    PeerHttp {
        incoming_auth_tokens: tokens.as_ref().map(|tokens| {
            tokens
                .iter()
                .map(|token| TOKENS[*token].to_owned())
                .collect()
        }),
        outgoing: HttpOutgoing {
            auth_token: "outgoing".to_owned(),
            endpoint: ENDPOINTS[endpoint].0.to_owned(),
        },
    }
}

/// The client's mutation for `op`, with nil where the front chooses an id.
fn mutation(op: &Op, model: &Model) -> Mutation {
    let assets: Vec<Uuid> = model.assets.iter().map(|asset| asset.id).collect();
    let peers: Vec<Uuid> = model.peers.iter().map(|peer| peer.id).collect();
    let addresses: Vec<Uuid> = model.wallet_addresses.iter().map(|a| a.id).collect();
    let keys: Vec<Uuid> = model.keys.iter().map(|key| key.id).collect();
    let owner = |peer: bool, owner: Ref| {
        if peer {
            LiquidityOwner::Peer(resolve_ref(owner, &peers))
        } else {
            LiquidityOwner::Asset(resolve_ref(owner, &assets))
        }
    };
    let nil = Uuid::nil();
    match op {
        Op::CreateAsset {
            code,
            scale,
            withdrawal_threshold,
            liquidity_threshold,
        } => Mutation::Asset(AssetCommand::Create(CreateAsset {
            id: nil,
            code: CODES[*code].to_owned(),
            scale: SCALES[*scale],
            withdrawal_threshold: *withdrawal_threshold,
            liquidity_threshold: *liquidity_threshold,
        })),
        Op::UpdateAsset {
            asset,
            withdrawal_threshold,
            liquidity_threshold,
        } => Mutation::Asset(AssetCommand::Update(UpdateAsset {
            id: resolve_ref(*asset, &assets),
            withdrawal_threshold: *withdrawal_threshold,
            liquidity_threshold: *liquidity_threshold,
        })),
        Op::DeleteAsset { asset } => Mutation::Asset(AssetCommand::Delete(DeleteAsset {
            id: resolve_ref(*asset, &assets),
        })),
        Op::SetFee {
            asset,
            receiving,
            fixed,
            basis_points,
        } => Mutation::Fee(SetFee {
            id: nil,
            asset_id: resolve_ref(*asset, &assets),
            fee_type: if *receiving {
                FeeType::Receiving
            } else {
                FeeType::Sending
            },
            fixed: *fixed,
            basis_points: *basis_points,
        }),
        Op::Deposit {
            peer,
            owner: who,
            transfer,
            amount,
        } => Mutation::Liquidity(LiquidityCommand::Deposit(Deposit {
            owner: owner(*peer, *who),
            transfer_id: transfer.map(pool_transfer_id),
            amount: *amount,
        })),
        Op::Withdraw {
            peer,
            owner: who,
            transfer,
            amount,
            timeout_seconds,
        } => Mutation::Liquidity(LiquidityCommand::Withdraw(Withdrawal {
            owner: owner(*peer, *who),
            transfer_id: transfer.map(pool_transfer_id),
            amount: *amount,
            timeout_seconds: *timeout_seconds,
        })),
        Op::Resolve { post, pending } => {
            let created: Vec<u128> = model.transfers.keys().copied().collect();
            let pending_ids: Vec<u128> = model
                .transfers
                .iter()
                .filter(|(_, transfer)| {
                    matches!(
                        transfer.kind,
                        TransferKind::Pending {
                            state: PendingState::Pending,
                            ..
                        }
                    )
                })
                .map(|(id, _)| *id)
                .collect();
            let withdrawal_id = match pending {
                Target::Pending(index) if !pending_ids.is_empty() => {
                    Some(Uuid::from_u128(pending_ids[index % pending_ids.len()]))
                }
                Target::Pending(index) | Target::Pool(index) => {
                    Some(pool_transfer_id(index % TRANSFER_POOL))
                }
                Target::Created(index) if !created.is_empty() => {
                    Some(Uuid::from_u128(created[index % created.len()]))
                }
                Target::Created(_) => Some(uuid(UNKNOWN)),
                Target::NotUuid => None,
            };
            let resolve = WithdrawalResolve {
                withdrawal_id,
                transfer_id: nil,
            };
            Mutation::Liquidity(if *post {
                LiquidityCommand::Post(resolve)
            } else {
                LiquidityCommand::Void(resolve)
            })
        }
        Op::CreatePeer {
            asset,
            address,
            endpoint,
            tokens,
            initial_liquidity,
        } => Mutation::Peer(PeerCommand::Create(CreatePeer {
            id: nil,
            asset_id: resolve_ref(*asset, &assets),
            static_ilp_address: ILP_ADDRESSES[*address].0.to_owned(),
            http: http(*endpoint, tokens),
            name: None,
            max_packet_amount: None,
            liquidity_threshold: None,
            initial_liquidity: *initial_liquidity,
            initial_liquidity_transfer_id: nil,
        })),
        Op::UpdatePeer {
            peer,
            address,
            http: outgoing,
            name,
        } => Mutation::Peer(PeerCommand::Update(UpdatePeer {
            id: resolve_ref(*peer, &peers),
            static_ilp_address: address.map(|address| ILP_ADDRESSES[address].0.to_owned()),
            http: outgoing
                .as_ref()
                .map(|(endpoint, tokens)| http(*endpoint, tokens)),
            name: name.map(|name| name.map(|n| format!("peer {n}"))),
            max_packet_amount: None,
            liquidity_threshold: None,
        })),
        Op::DeletePeer { peer } => Mutation::Peer(PeerCommand::Delete(DeletePeer {
            id: resolve_ref(*peer, &peers),
        })),
        Op::CreateWalletAddress { asset, url } => {
            Mutation::WalletAddress(WalletAddressCommand::Create(CreateWalletAddress {
                id: nil,
                asset_id: resolve_ref(*asset, &assets),
                url: URLS[*url].0.to_owned(),
                public_name: None,
                additional_properties: Vec::new(),
            }))
        }
        Op::UpdateWalletAddress { address, active } => {
            Mutation::WalletAddress(WalletAddressCommand::Update(UpdateWalletAddress {
                id: resolve_ref(*address, &addresses),
                public_name: None,
                status: active.map(|active| {
                    if active {
                        WalletAddressStatus::Active
                    } else {
                        WalletAddressStatus::Inactive
                    }
                }),
                additional_properties: None,
            }))
        }
        Op::CreateKey { address, kid } => {
            Mutation::WalletAddress(WalletAddressCommand::CreateKey(CreateWalletAddressKey {
                id: nil,
                wallet_address_id: resolve_ref(*address, &addresses),
                jwk: Jwk {
                    kid: KIDS[*kid].to_owned(),
                    x: "x".to_owned(),
                    alg: Default::default(),
                    kty: Default::default(),
                    crv: Default::default(),
                },
            }))
        }
        Op::RevokeKey { key } => {
            Mutation::WalletAddress(WalletAddressCommand::RevokeKey(RevokeWalletAddressKey {
                id: resolve_ref(*key, &keys),
            }))
        }
        Op::WalletAddressWithdraw {
            address,
            transfer,
            timeout_seconds,
        } => Mutation::WalletAddress(WalletAddressCommand::Withdraw(
            CreateWalletAddressWithdrawal {
                wallet_address_id: resolve_ref(*address, &addresses),
                transfer_id: transfer.map(pool_transfer_id),
                timeout_seconds: *timeout_seconds,
            },
        )),
        Op::TriggerEvents { limit } => Mutation::WalletAddress(
            WalletAddressCommand::TriggerEvents(TriggerWalletAddressEvents {
                limit: *limit,
                seed: nil,
            }),
        ),
        Op::Tick { .. } | Op::Checkpoint | Op::Repeat { .. } => {
            unreachable!("not a mutation")
        }
    }
}

// -------------------------------------------------------------------------------------------------
// The run.

/// What a replay needs: commands and clock moves, in order.
#[derive(Clone, Debug)]
enum Logged {
    Command(Box<Command>),
    Tick(u64),
}

/// Advances the clock by `seconds` and runs the ledger's pulse there, as the core's `tick`
/// would: the pulse reserves `PULSE_EVENTS_MAX` timestamps; the next command comes after them.
fn tick(harness: &mut Harness, seconds: u64) -> u64 {
    harness.now += seconds * NANOS_PER_SECOND;
    let pulse = harness.now + PULSE_EVENTS_MAX as u64;
    if harness.port.ledger.pulse_needed(pulse) {
        harness
            .port
            .ledger
            .expire_pending_transfers(&harness.port.store, pulse);
    }
    harness.now = pulse;
    pulse
}

fn checkpoint_round_trip(payments: &Payments) -> Result<Payments, TestCaseError> {
    let mut bytes = Vec::new();
    payments.encode_checkpoint(&mut bytes);
    let (decoded, size) = Payments::decode_checkpoint(&bytes)
        .map_err(|error| TestCaseError::fail(format!("checkpoint: {error}")))?;
    prop_assert_eq!(size, bytes.len());
    prop_assert!(
        decoded == *payments,
        "checkpoint round trip changed the state"
    );
    let mut again = Vec::new();
    decoded.encode_checkpoint(&mut again);
    prop_assert!(again == bytes, "re-encoding changed the bytes");
    Ok(decoded)
}

/// A 256-bit sum of `u128`s: (carries, low bits).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Wide(u128, u128);

impl Wide {
    fn add(&mut self, value: u128) {
        let (low, carry) = self.1.overflowing_add(value);
        self.1 = low;
        self.0 += u128::from(carry);
    }
}

/// Every check that holds after any command.
fn check(harness: &Harness, model: &Model) -> Result<(), TestCaseError> {
    let ledger = &harness.port.ledger;
    let payments = &harness.payments;
    // Every account the model knows, with its balances, flags and ledger; no other account.
    prop_assert_eq!(ledger.account_count(), model.accounts.len());
    for (id, expected) in &model.accounts {
        let account = ledger.account(*id).copied();
        prop_assert!(account.is_some(), "account {:x} missing", id);
        let account = account.unwrap();
        let balances = Balances {
            debits_pending: account.debits_pending,
            debits_posted: account.debits_posted,
            credits_pending: account.credits_pending,
            credits_posted: account.credits_posted,
        };
        prop_assert_eq!(balances, expected.balances, "balances of {:x}", id);
        prop_assert_eq!(account.ledger, expected.ledger);
        let debits = account.debits_posted + account.debits_pending;
        let credits = account.credits_posted + account.credits_pending;
        match expected.kind {
            Kind::Liquidity => {
                prop_assert!(account
                    .flags
                    .contains(AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS));
                // Invariant 3; pending credits never count towards what may be debited.
                prop_assert!(debits <= account.credits_posted);
                // Invariant 7: the figure is the ledger's.
                prop_assert_eq!(liquidity_of(&account), model.liquidity(*id));
            }
            Kind::Settlement => {
                prop_assert!(account
                    .flags
                    .contains(AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS));
                prop_assert!(credits <= account.debits_posted);
            }
        }
    }
    // Invariant 1, per ledger; the sums may pass 2^128 (a settlement account can hold
    // `u128::MAX` of debits while a liquidity account holds debits of its own).
    let mut sums: BTreeMap<u32, [Wide; 4]> = BTreeMap::new();
    for account in ledger.accounts() {
        let sum = sums.entry(account.ledger).or_default();
        sum[0].add(account.debits_posted);
        sum[1].add(account.credits_posted);
        sum[2].add(account.debits_pending);
        sum[3].add(account.credits_pending);
    }
    for (ledger_number, [debits_posted, credits_posted, debits_pending, credits_pending]) in sums {
        prop_assert_eq!(
            debits_posted,
            credits_posted,
            "posted, ledger {}",
            ledger_number
        );
        prop_assert_eq!(
            debits_pending,
            credits_pending,
            "pending, ledger {}",
            ledger_number
        );
    }
    // Invariant 2: each account's balances are the fold of the stored transfers.
    prop_assert_eq!(ledger.transfer_count(), model.transfers.len() as u64);
    let mut folded: BTreeMap<u128, Balances> = BTreeMap::new();
    for (id, expected) in &model.transfers {
        let stored = harness.port.ledger.transfer(&harness.port.store, *id);
        prop_assert!(stored.is_some(), "transfer {:x} missing", id);
        let stored = stored.unwrap();
        prop_assert_eq!(
            (stored.debit_account_id, stored.credit_account_id),
            (expected.debit, expected.credit)
        );
        let (pending, posted) = match expected.kind {
            TransferKind::Posted => (0, stored.amount),
            TransferKind::Pending { state, .. } => {
                prop_assert!(stored.flags.contains(TransferFlags::PENDING));
                let held = if state == PendingState::Pending {
                    stored.amount
                } else {
                    0
                };
                (held, 0)
            }
            TransferKind::Resolved {
                post: true,
                pending,
            } => {
                prop_assert!(stored.flags.contains(TransferFlags::POST_PENDING_TRANSFER));
                prop_assert_eq!(stored.pending_id, pending);
                prop_assert_eq!(stored.amount, expected.amount);
                (0, stored.amount)
            }
            TransferKind::Resolved {
                post: false,
                pending,
            } => {
                prop_assert!(stored.flags.contains(TransferFlags::VOID_PENDING_TRANSFER));
                prop_assert_eq!(stored.pending_id, pending);
                (0, 0)
            }
        };
        if let TransferKind::Posted | TransferKind::Pending { .. } = expected.kind {
            prop_assert_eq!(stored.amount, expected.amount);
        }
        let debit = folded.entry(stored.debit_account_id).or_default();
        debit.debits_pending += pending;
        debit.debits_posted += posted;
        let credit = folded.entry(stored.credit_account_id).or_default();
        credit.credits_pending += pending;
        credit.credits_posted += posted;
    }
    for account in ledger.accounts() {
        let fold = folded.get(&account.id).copied().unwrap_or_default();
        let balances = Balances {
            debits_pending: account.debits_pending,
            debits_posted: account.debits_posted,
            credits_pending: account.credits_pending,
            credits_posted: account.credits_posted,
        };
        prop_assert_eq!(balances, fold, "fold of {:x}", account.id);
    }
    // The reads the front makes.
    for asset in &model.assets {
        prop_assert_eq!(payments.asset(asset.id).is_some(), !asset.deleted);
        let by_code = payments.asset_by_code_and_scale(&asset.code, asset.scale);
        prop_assert_eq!(by_code.map(|found| found.id), Some(asset.id));
        for fee_type in [FeeType::Sending, FeeType::Receiving] {
            let latest = payments.fee_latest(asset.id, fee_type).map(|fee| fee.id);
            prop_assert_eq!(
                latest,
                model.fees_latest.get(&(asset.id, fee_type)).copied()
            );
        }
    }
    for peer in &model.peers {
        let found = payments.peer(peer.id);
        prop_assert_eq!(found.is_some(), !peer.deleted);
        if let Some(found) = found {
            prop_assert_eq!(&found.static_ilp_address, &peer.address);
            prop_assert_eq!(&found.incoming_auth_tokens, &peer.tokens);
        }
    }
    for token in TOKENS {
        let holder = model
            .peers
            .iter()
            .find(|peer| !peer.deleted && peer.tokens.iter().any(|t| t == token))
            .map(|peer| peer.id);
        prop_assert_eq!(payments.peer_by_incoming_token(token).map(|p| p.id), holder);
    }
    for address in &model.wallet_addresses {
        let found = payments.wallet_address(address.id);
        prop_assert!(found.is_some());
        let active = found.unwrap().status() == WalletAddressStatus::Active;
        prop_assert_eq!(active, address.active);
    }
    for (url, _) in URLS {
        let url = url.to_lowercase();
        let expected = model
            .wallet_addresses
            .iter()
            .find(|address| address.url == url)
            .map(|address| address.id);
        prop_assert_eq!(payments.wallet_address_by_url(&url).map(|a| a.id), expected);
    }
    for key in &model.keys {
        let found = payments.wallet_address_key(key.id);
        prop_assert_eq!(found.map(|found| found.revoked), Some(key.revoked));
    }
    prop_assert_eq!(payments.idempotency_key_count(), model.idempotency.len());
    Ok(())
}

fn run(steps: &[Step]) -> Result<(), TestCaseError> {
    let mut harness = Harness::new();
    let mut model = Model::default();
    let mut fresh_next = FRESH_FIRST;
    let mut fresh = || {
        fresh_next += 1;
        uuid(fresh_next)
    };
    let mut log: Vec<Logged> = Vec::new();
    let mut outcomes: Vec<Outcome> = Vec::new();
    // The client's commands so far (front-chosen ids nil), for `Repeat`.
    let mut sent: Vec<(Option<usize>, Mutation)> = Vec::new();
    for (index, step) in steps.iter().enumerate() {
        let (key, client) = match &step.op {
            Op::Tick { seconds } => {
                let pulse = tick(&mut harness, *seconds);
                model.pulse(pulse);
                log.push(Logged::Tick(*seconds));
                check(&harness, &model)?;
                continue;
            }
            Op::Checkpoint => {
                harness.payments = checkpoint_round_trip(&harness.payments)?;
                continue;
            }
            Op::Repeat { .. } if sent.is_empty() => continue,
            Op::Repeat { index } => sent[index % sent.len()].clone(),
            op => (step.key, mutation(op, &model)),
        };
        let command = Command {
            idempotency: key.map(|key| IdempotencyKey {
                key: IDEMPOTENCY_KEYS[key].to_owned(),
                fingerprint: fingerprint(&client),
            }),
            mutation: with_front_ids(&client, &mut fresh),
        };
        sent.push((key, client));

        let timestamp = harness.now + TIMESTAMPS_PER_COMMAND;
        let (expected, answer, keys_expired) = model.execute(&command, timestamp);
        let before = harness.snapshot();
        let outcome = harness.execute_command(&command);
        prop_assert_eq!(harness.now, timestamp);
        prop_assert_eq!(
            seen(&outcome),
            expected,
            "step {} {:?}\ncommand {:#?}",
            index,
            step,
            command
        );
        // A failed command, or one answered from its idempotency key, changes nothing but
        // the key it leaves behind (and the keys that expired at its timestamp).
        let unchanged = outcome.is_err() || answer == Answer::Recalled;
        if unchanged {
            prop_assert!(harness.port.snapshot() == before.1, "the ledger changed");
            let key_stored = answer == Answer::Ran && key.is_some();
            if !key_stored && !keys_expired {
                prop_assert!(harness.payments == before.0, "the state changed");
            }
        }
        check(&harness, &model)?;
        log.push(Logged::Command(Box::new(command)));
        outcomes.push(outcome);
    }

    // Determinism: the same commands and clock on a fresh state and ledger.
    let mut replay = Harness::new();
    let mut replayed = Vec::new();
    for entry in &log {
        match entry {
            Logged::Command(command) => replayed.push(replay.execute_command(command)),
            Logged::Tick(seconds) => {
                tick(&mut replay, *seconds);
            }
        }
    }
    prop_assert_eq!(&replayed, &outcomes);
    prop_assert!(replay.payments == harness.payments, "replay differs");
    prop_assert_eq!(
        replay.port.ledger.digest(&replay.port.store),
        harness.port.ledger.digest(&harness.port.store)
    );
    checkpoint_round_trip(&harness.payments)?;
    Ok(())
}

fn config() -> ProptestConfig {
    let cases = std::env::var("TALLY_MODEL_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(256);
    ProptestConfig {
        cases,
        // A failure prints its minimal case; no regression files in the source tree.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn payments_match_model(steps in proptest::collection::vec(step(), 1..200)) {
        run(&steps)?;
    }
}

#[test]
fn idempotency_lifetime_is_a_day() {
    // The model forgets keys after 24 h of core time; so must the crate.
    assert_eq!(IDEMPOTENCY_KEY_LIFETIME_NS, 24 * 3600 * NANOS_PER_SECOND);
}
