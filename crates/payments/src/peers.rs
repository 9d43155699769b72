//! Peers (`rafiki-admin-api.md` §7.2, §4.3 "Peer" and "Auto-peering"): the other ILP nodes this
//! instance settles with. Each peer has one asset, a static ILP address unique per asset, an
//! outgoing HTTP token and endpoint, incoming tokens unique across all peers, and a liquidity
//! account on its asset's ledger (id = the peer's id) whose balance is the credit line the peer
//! has with this instance.
//!
//! Checks run in the order Rafiki's `peer/service.ts` reaches them, and every command is
//! all-or-nothing: all checks, the deposit's included, come before the first change, so a failed
//! command leaves the state and the ledger as they were. Where Rafiki answers 500 (a duplicate
//! address on update, an update of an unknown peer with new tokens) Tally names the error.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use tally_ledger::{CreateAccountStatus, CreateTransferStatus, Transfer};
use uuid::Uuid;

use crate::accounts::{liquidity_account, settlement_account_id, AccountCode, TransferCode};
use crate::command::{Outcome, Success};
use crate::error::{AutoPeeringError, PeerError};
use crate::page::{page, Page, PageRequest};
use crate::port::LedgerPort;
use crate::state::Payments;

/// The longest valid ILP address, in bytes (ilp-packet's `ILP_ADDRESS_MAX_LENGTH`).
pub const ILP_ADDRESS_LENGTH_MAX: usize = 1023;

/// The allocation schemes an ILP address may start with (ilp-packet's `ILP_ADDRESS_REGEX`).
const ILP_ADDRESS_SCHEMES: [&str; 10] = [
    "g", "private", "example", "peer", "self", "test", "test1", "test2", "test3", "local",
];

/// How this instance reaches the peer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpOutgoing {
    /// Bearer token presented to the peer.
    pub auth_token: String,
    /// The peer's ILP-over-HTTP connector URL.
    pub endpoint: String,
}

/// `HttpInput`: the tokens the peer presents to this instance, and how this instance reaches it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerHttp {
    /// `http.incoming.authTokens`; `None` when `incoming` is absent. On update, `Some` replaces
    /// every incoming token of the peer (`Some(vec![])` removes them all).
    pub incoming_auth_tokens: Option<Vec<String>>,
    /// `http.outgoing`.
    pub outgoing: HttpOutgoing,
}

/// A peer as Rafiki has it. Its liquidity is not here: it is the ledger balance of the account
/// `liquidity_account_id()`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peer {
    /// Chosen by the front (UUID v4); also the id of its liquidity account.
    pub id: Uuid,
    /// The asset of the peering relationship (never changes).
    pub asset_id: Uuid,
    /// The peer's ILP address; unique per asset.
    pub static_ilp_address: String,
    /// `http.outgoing`.
    pub outgoing: HttpOutgoing,
    /// Tokens the peer authenticates with, unique across all peers. Write-only: the Admin API
    /// never returns them; the connector finds a peer by one (`peer_by_incoming_token`).
    pub incoming_auth_tokens: Vec<String>,
    /// Display name.
    pub name: Option<String>,
    /// Largest amount of one incoming ILP packet.
    pub max_packet_amount: Option<u128>,
    /// Liquidity at or below which `peer.liquidity_low` fires.
    pub liquidity_threshold: Option<u128>,
    /// Core timestamp (ns since the Unix epoch).
    pub created_at: u64,
}

impl Peer {
    /// The id of the peer's liquidity account (Rafiki: the peer's UUID as 128 bits).
    pub fn liquidity_account_id(&self) -> u128 {
        self.id.as_u128()
    }
}

/// The peer mutations.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerCommand {
    /// `createPeer`.
    Create(CreatePeer),
    /// `updatePeer`.
    Update(UpdatePeer),
    /// `deletePeer`.
    Delete(DeletePeer),
    /// `createOrUpdatePeerByUrl`, after the front's peering request to the other instance.
    CreateOrUpdate(CreateOrUpdatePeerByUrl),
}

/// `createPeer`'s input, with the ids the front chose.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatePeer {
    /// The new peer's id (a fresh UUID v4).
    pub id: Uuid,
    /// The asset; `None` when the client's id is not a UUID (then it is unknown).
    pub asset_id: Option<Uuid>,
    /// `staticIlpAddress`, checked here.
    pub static_ilp_address: String,
    /// `http`; the endpoint is checked here.
    pub http: PeerHttp,
    /// `name`.
    pub name: Option<String>,
    /// `maxPacketAmount`.
    pub max_packet_amount: Option<u128>,
    /// `liquidityThreshold`.
    pub liquidity_threshold: Option<u128>,
    /// `initialLiquidity`; `None` or zero deposits nothing.
    pub initial_liquidity: Option<u128>,
    /// The id of the initial deposit (a fresh UUID v4; Rafiki draws a random one).
    pub initial_liquidity_transfer_id: Uuid,
}

/// `updatePeer`'s input. A field left `None` keeps its value; for the nullable fields
/// `Some(None)` (the client sent `null`) clears it, as Rafiki's patch does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdatePeer {
    /// The peer; `None` when the client's id is not a UUID (then it is unknown).
    pub id: Option<Uuid>,
    /// New `staticIlpAddress`.
    pub static_ilp_address: Option<String>,
    /// New `http`: the outgoing pair always, the incoming tokens when given.
    pub http: Option<PeerHttp>,
    /// New `name`.
    pub name: Option<Option<String>>,
    /// New `maxPacketAmount`.
    pub max_packet_amount: Option<Option<u128>>,
    /// New `liquidityThreshold`.
    pub liquidity_threshold: Option<Option<u128>>,
}

/// `deletePeer`'s input.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletePeer {
    /// The peer; `None` when the client's id is not a UUID.
    pub id: Option<Uuid>,
}

/// `createOrUpdatePeerByUrl`: the client's input, the other instance's answer to the peering
/// request the front sent to `peerUrl`, and the ids and token the front generated. The front
/// maps a failed request itself (`InvalidPeerUrl`, `InvalidIlpConfiguration`,
/// `PeerUnsupportedAsset`, `InvalidPeeringRequest`) and submits nothing then.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateOrUpdatePeerByUrl {
    /// The peer's id if one is created (a fresh UUID v4).
    pub id: Uuid,
    /// `assetId`; `None` when not a UUID.
    pub asset_id: Option<Uuid>,
    /// The remote's `staticIlpAddress`.
    pub static_ilp_address: String,
    /// The remote's `ilpConnectorUrl`: the outgoing endpoint.
    pub ilp_connector_url: String,
    /// The remote's `httpToken`: the one incoming token.
    pub incoming_auth_token: String,
    /// The token the front generated and sent to the remote: the outgoing token.
    pub outgoing_auth_token: String,
    /// The client's `name`; when `None` the remote's name is used.
    pub name: Option<String>,
    /// The remote's instance `name`, if it sent one.
    pub remote_name: Option<String>,
    /// `maxPacketAmount`.
    pub max_packet_amount: Option<u128>,
    /// `liquidityThreshold` (a create sets it; Rafiki's update path leaves it as it was).
    pub liquidity_threshold: Option<u128>,
    /// `liquidityToDeposit`; `None` or zero deposits nothing.
    pub liquidity_to_deposit: Option<u128>,
    /// The id of that deposit (a fresh UUID v4).
    pub deposit_transfer_id: Uuid,
}

/// A deposit into a peer's liquidity account, checked before anything changes.
struct PeerDeposit {
    account: u128,
    asset: Uuid,
    ledger: u32,
    transfer_id: Uuid,
    amount: u128,
}

impl Payments {
    pub(crate) fn execute_peer<P: LedgerPort>(
        &mut self,
        port: &mut P,
        command: &PeerCommand,
        timestamp: u64,
    ) -> Outcome {
        match command {
            PeerCommand::Create(create) => self.execute_create_peer(port, create, timestamp),
            PeerCommand::Update(update) => self.execute_update_peer(update),
            PeerCommand::Delete(delete) => self.execute_delete_peer(delete),
            PeerCommand::CreateOrUpdate(request) => {
                self.execute_create_or_update_peer(port, request, timestamp)
            }
        }
    }

    /// Rafiki's order: address and endpoint (before the transaction), then the insert (unknown
    /// asset, duplicate address), the incoming tokens, and the initial deposit.
    fn execute_create_peer<P: LedgerPort>(
        &mut self,
        port: &mut P,
        create: &CreatePeer,
        timestamp: u64,
    ) -> Outcome {
        let peer = Peer {
            id: create.id,
            asset_id: create.asset_id.unwrap_or(Uuid::nil()),
            static_ilp_address: create.static_ilp_address.clone(),
            outgoing: create.http.outgoing.clone(),
            incoming_auth_tokens: create.http.incoming_auth_tokens.clone().unwrap_or_default(),
            name: create.name.clone(),
            max_packet_amount: create.max_packet_amount,
            liquidity_threshold: create.liquidity_threshold,
            created_at: timestamp,
        };
        self.peer_create_check(create.asset_id, &peer)?;
        let deposit = self.peer_deposit(
            port,
            &peer,
            create.initial_liquidity,
            create.initial_liquidity_transfer_id,
        );
        let deposit = deposit.map_err(|()| PeerError::InvalidInitialLiquidity)?;
        self.peer_insert(port, peer.clone());
        if let Some(deposit) = deposit {
            deposit_apply(port, &deposit);
        }
        Ok(Success::Peer(Box::new(peer)))
    }

    /// The checks of a create up to the deposit, in Rafiki's order.
    fn peer_create_check(&self, asset_id: Option<Uuid>, peer: &Peer) -> Result<(), PeerError> {
        if !is_valid_ilp_address(&peer.static_ilp_address) {
            return Err(PeerError::InvalidStaticIlpAddress);
        }
        if !is_valid_http_url(&peer.outgoing.endpoint) {
            return Err(PeerError::InvalidHTTPEndpoint);
        }
        // Rafiki's insert fails on the unique (asset, address) index or on the asset's foreign
        // key; both cannot happen at once (a peer's asset cannot be deleted), so the order of
        // the two is not observable.
        if asset_id.and_then(|id| self.asset_active(id)).is_none() {
            return Err(PeerError::UnknownAsset);
        }
        if self
            .peer_by_address
            .contains_key(&(peer.asset_id, peer.static_ilp_address.clone()))
        {
            return Err(PeerError::DuplicatePeer);
        }
        self.incoming_tokens_check(&peer.incoming_auth_tokens, None)
    }

    /// Rafiki's order: address and endpoint when given, then (in the transaction) the new
    /// incoming tokens, then the peer itself. A new address taken by another peer of the asset
    /// is `DuplicatePeer` (Rafiki: an uncaught unique violation, 500).
    fn execute_update_peer(&mut self, update: &UpdatePeer) -> Outcome {
        if let Some(address) = &update.static_ilp_address {
            if !is_valid_ilp_address(address) {
                return Err(PeerError::InvalidStaticIlpAddress.into());
            }
        }
        if let Some(http) = &update.http {
            if !is_valid_http_url(&http.outgoing.endpoint) {
                return Err(PeerError::InvalidHTTPEndpoint.into());
            }
        }
        let tokens = update
            .http
            .as_ref()
            .and_then(|http| http.incoming_auth_tokens.as_ref());
        if let Some(tokens) = tokens {
            self.incoming_tokens_check(tokens, update.id)?;
        }
        let id = update
            .id
            .filter(|id| self.peers.contains_key(id))
            .ok_or(PeerError::UnknownPeer)?;
        let mut peer = self.peers[&id].clone();
        if let Some(address) = &update.static_ilp_address {
            let key = (peer.asset_id, address.clone());
            if self
                .peer_by_address
                .get(&key)
                .is_some_and(|other| *other != id)
            {
                return Err(PeerError::DuplicatePeer.into());
            }
            peer.static_ilp_address = address.clone();
        }
        if let Some(http) = &update.http {
            peer.outgoing = http.outgoing.clone();
            if let Some(tokens) = &http.incoming_auth_tokens {
                peer.incoming_auth_tokens = tokens.clone();
            }
        }
        if let Some(name) = &update.name {
            peer.name = name.clone();
        }
        if let Some(amount) = update.max_packet_amount {
            peer.max_packet_amount = amount;
        }
        if let Some(threshold) = update.liquidity_threshold {
            peer.liquidity_threshold = threshold;
        }
        self.peer_replace(peer.clone());
        Ok(Success::Peer(Box::new(peer)))
    }

    /// A hard delete of the peer and its tokens; the ledger account stays, balance and all.
    fn execute_delete_peer(&mut self, delete: &DeletePeer) -> Outcome {
        let peer = delete
            .id
            .and_then(|id| self.peers.remove(&id))
            .ok_or(PeerError::UnknownPeer)?;
        self.peer_unindex(&peer);
        Ok(Success::PeerDeleted)
    }

    /// Rafiki's `initiatePeeringRequest` after the HTTP exchange: create the peer, or update the
    /// one with this asset and address, then deposit. Rafiki keeps the peer when the deposit
    /// fails; Tally checks the deposit first and changes nothing on `LiquidityError`.
    fn execute_create_or_update_peer<P: LedgerPort>(
        &mut self,
        port: &mut P,
        request: &CreateOrUpdatePeerByUrl,
        timestamp: u64,
    ) -> Outcome {
        let asset_id = request
            .asset_id
            .filter(|id| self.asset_active(*id).is_some())
            .ok_or(AutoPeeringError::UnknownAsset)?;
        let name = request.name.clone().or_else(|| request.remote_name.clone());
        let outgoing = HttpOutgoing {
            auth_token: request.outgoing_auth_token.clone(),
            endpoint: request.ilp_connector_url.clone(),
        };
        let tokens = vec![request.incoming_auth_token.clone()];
        let key = (asset_id, request.static_ilp_address.clone());
        let peer = match self.peer_by_address.get(&key) {
            None => {
                let peer = Peer {
                    id: request.id,
                    asset_id,
                    static_ilp_address: request.static_ilp_address.clone(),
                    outgoing,
                    incoming_auth_tokens: tokens,
                    name,
                    max_packet_amount: request.max_packet_amount,
                    liquidity_threshold: request.liquidity_threshold,
                    created_at: timestamp,
                };
                self.peer_create_check(Some(asset_id), &peer)
                    .map_err(auto_peering_error)?;
                peer
            }
            // Rafiki's update path: a zero or absent `maxPacketAmount` and an absent name keep
            // the peer's; the address and the threshold stay.
            Some(id) => {
                let mut peer = self.peers[id].clone();
                // The address is the one found, so only the endpoint can fail (it cannot here:
                // the create attempt Rafiki makes first checked it before reporting the
                // duplicate).
                if !is_valid_http_url(&outgoing.endpoint) {
                    return Err(AutoPeeringError::InvalidPeerIlpConfiguration.into());
                }
                self.incoming_tokens_check(&tokens, Some(peer.id))
                    .map_err(auto_peering_error)?;
                peer.outgoing = outgoing;
                peer.incoming_auth_tokens = tokens;
                if let Some(amount) = request.max_packet_amount.filter(|amount| *amount > 0) {
                    peer.max_packet_amount = Some(amount);
                }
                if name.is_some() {
                    peer.name = name;
                }
                peer
            }
        };
        let deposit = self
            .peer_deposit(
                port,
                &peer,
                request.liquidity_to_deposit,
                request.deposit_transfer_id,
            )
            .map_err(|()| AutoPeeringError::LiquidityError)?;
        if self.peers.contains_key(&peer.id) {
            self.peer_replace(peer.clone());
        } else {
            self.peer_insert(port, peer.clone());
        }
        if let Some(deposit) = deposit {
            deposit_apply(port, &deposit);
        }
        Ok(Success::Peer(Box::new(peer)))
    }

    /// `DuplicateIncomingToken` if a token is used by another peer than `owner`, or twice in
    /// `tokens` (Rafiki: the unique index on `httpTokens.token`).
    fn incoming_tokens_check(
        &self,
        tokens: &[String],
        owner: Option<Uuid>,
    ) -> Result<(), PeerError> {
        let mut seen = BTreeSet::new();
        for token in tokens {
            let taken = self
                .peer_by_incoming_token
                .get(token)
                .is_some_and(|peer| Some(*peer) != owner);
            if taken || !seen.insert(token.as_str()) {
                return Err(PeerError::DuplicateIncomingToken);
            }
        }
        Ok(())
    }

    /// The deposit of `amount` into `peer`'s account (existing or about to be created), if
    /// `amount` is not zero; `Err` if the ledger would refuse it.
    fn peer_deposit<P: LedgerPort>(
        &self,
        port: &P,
        peer: &Peer,
        amount: Option<u128>,
        transfer_id: Uuid,
    ) -> Result<Option<PeerDeposit>, ()> {
        let Some(amount) = amount.filter(|amount| *amount > 0) else {
            return Ok(None);
        };
        let ledger = self.assets[&peer.asset_id].ledger;
        let deposit = PeerDeposit {
            account: peer.liquidity_account_id(),
            asset: peer.asset_id,
            ledger,
            transfer_id,
            amount,
        };
        if deposit_possible(port, &deposit) {
            Ok(Some(deposit))
        } else {
            Err(())
        }
    }

    /// Adds a checked new peer and creates its liquidity account.
    fn peer_insert<P: LedgerPort>(&mut self, port: &mut P, peer: Peer) {
        assert!(
            !self.peers.contains_key(&peer.id),
            "the front chose a fresh peer id"
        );
        assert!(
            port.account(peer.liquidity_account_id()).is_none(),
            "the front chose a fresh peer id, so no account has it"
        );
        let ledger = self.assets[&peer.asset_id].ledger;
        let account = liquidity_account(
            peer.liquidity_account_id(),
            peer.asset_id,
            ledger,
            AccountCode::LiquidityPeer,
        );
        let mut results = Vec::with_capacity(1);
        port.create_accounts(&[account], &mut results);
        // A fresh id on an existing asset's ledger with valid flags and code: nothing to refuse.
        assert_eq!(results.len(), 1);
        assert_eq!(results[0].status, CreateAccountStatus::Created);
        self.peers_created.insert(peer.created_at, peer.id);
        self.peer_index(&peer);
        self.peers.insert(peer.id, peer);
    }

    /// Replaces a checked, existing peer.
    fn peer_replace(&mut self, peer: Peer) {
        let old = self
            .peers
            .insert(peer.id, peer.clone())
            .expect("peer_replace is called for an existing peer");
        assert_eq!(old.created_at, peer.created_at);
        assert_eq!(old.asset_id, peer.asset_id);
        self.peer_unindex(&old);
        self.peers_created.insert(peer.created_at, peer.id);
        self.peer_index(&peer);
    }

    fn peer_index(&mut self, peer: &Peer) {
        let previous = self
            .peer_by_address
            .insert((peer.asset_id, peer.static_ilp_address.clone()), peer.id);
        assert!(
            previous.is_none(),
            "checked: the address is free for this asset"
        );
        for token in &peer.incoming_auth_tokens {
            let previous = self.peer_by_incoming_token.insert(token.clone(), peer.id);
            assert!(previous.is_none(), "checked: the token is free");
        }
    }

    fn peer_unindex(&mut self, peer: &Peer) {
        let removed = self
            .peer_by_address
            .remove(&(peer.asset_id, peer.static_ilp_address.clone()));
        assert_eq!(removed, Some(peer.id));
        for token in &peer.incoming_auth_tokens {
            let removed = self.peer_by_incoming_token.remove(token);
            assert_eq!(removed, Some(peer.id));
        }
        let removed = self.peers_created.remove(&peer.created_at);
        assert_eq!(removed, Some(peer.id));
    }

    /// A peer's liquidity account id, and its asset's id and ledger.
    pub(crate) fn peer_liquidity_account(&self, id: Uuid) -> Option<(u128, (Uuid, u32))> {
        let peer = self.peers.get(&id)?;
        let asset = self
            .asset_active(peer.asset_id)
            .expect("a peer's asset is active: deleteAsset refuses an asset in use");
        Some((peer.liquidity_account_id(), (asset.id, asset.ledger)))
    }

    /// Whether any peer uses the asset.
    pub(crate) fn asset_has_peers(&self, asset: Uuid) -> bool {
        self.peer_by_address
            .range((asset, String::new())..)
            .next()
            .is_some_and(|((peer_asset, _), _)| *peer_asset == asset)
    }

    /// The peer (Rafiki's `peer` query; `None` is "unknown peer").
    pub fn peer(&self, id: Uuid) -> Option<&Peer> {
        self.peers.get(&id)
    }

    /// A page of peers, by creation (Rafiki's `peers` query).
    pub fn peers_page(&self, request: &PageRequest) -> (Vec<&Peer>, Page) {
        let result = page(
            &self.peers_created,
            0,
            u64::MAX,
            |id| self.peers.get(&id).map(|peer| peer.created_at),
            request,
        );
        (
            result.ids.iter().map(|id| &self.peers[id]).collect(),
            result,
        )
    }

    /// The peer of `asset_id` that `address` routes to (Rafiki's `peerByAddressAndAsset`): the
    /// one whose static ILP address is `address` or a prefix of it ending before a `.`. Rafiki
    /// v1 takes the first such row in no particular order (HEAD asks its router); Tally takes
    /// the longest match, which is the one a router picks. `None` when there is none.
    pub fn peer_by_address_and_asset(&self, address: &str, asset_id: Uuid) -> Option<&Peer> {
        let mut prefix = address;
        loop {
            if let Some(id) = self.peer_by_address.get(&(asset_id, prefix.to_owned())) {
                return Some(&self.peers[id]);
            }
            prefix = &prefix[..prefix.rfind('.')?];
        }
    }

    /// The peer that authenticates with this incoming token (for the ILP connector).
    pub fn peer_by_incoming_token(&self, token: &str) -> Option<&Peer> {
        self.peer_by_incoming_token
            .get(token)
            .map(|id| &self.peers[id])
    }
}

/// Rafiki's `handlePeerError`: a bad address or endpoint from the other instance is its
/// misconfiguration; anything else an invalid request.
fn auto_peering_error(error: PeerError) -> AutoPeeringError {
    match error {
        PeerError::InvalidHTTPEndpoint | PeerError::InvalidStaticIlpAddress => {
            AutoPeeringError::InvalidPeerIlpConfiguration
        }
        PeerError::DuplicateIncomingToken
        | PeerError::DuplicatePeer
        | PeerError::UnknownAsset
        | PeerError::UnknownPeer
        | PeerError::InvalidInitialLiquidity => AutoPeeringError::InvalidPeeringRequest,
    }
}

/// The transfer of a deposit: settlement → the peer's liquidity account, posted.
fn deposit_transfer(deposit: &PeerDeposit) -> Transfer {
    Transfer {
        id: deposit.transfer_id.as_u128(),
        debit_account_id: settlement_account_id(deposit.asset),
        credit_account_id: deposit.account,
        amount: deposit.amount,
        ledger: deposit.ledger,
        code: TransferCode::Deposit as u16,
        ..Transfer::default()
    }
}

/// Whether the ledger would create the deposit. Its accounts are on one ledger, differ, carry no
/// closing flags, and crediting a liquidity account or debiting a settlement account never
/// breaks a balance limit; what is left is the id (zero, maximal, or used) and the overflow of
/// the balances it adds to. An account about to be created counts as all zeros. (An id that
/// failed before is not visible through the port; the front's ids are fresh UUIDs v4.)
fn deposit_possible<P: LedgerPort>(port: &P, deposit: &PeerDeposit) -> bool {
    let id = deposit.transfer_id.as_u128();
    if id == 0 || id == u128::MAX || port.transfer(id).is_some() {
        return false;
    }
    let settlement = port
        .account(settlement_account_id(deposit.asset))
        .expect("every asset has its settlement account");
    let liquidity = port.account(deposit.account).unwrap_or_default();
    let adds = |posted: u128, pending: u128| {
        posted
            .checked_add(pending)
            .and_then(|total| total.checked_add(deposit.amount))
            .is_some()
    };
    adds(settlement.debits_posted, settlement.debits_pending)
        && adds(liquidity.credits_posted, liquidity.credits_pending)
}

/// Creates a deposit that `deposit_possible` accepted.
fn deposit_apply<P: LedgerPort>(port: &mut P, deposit: &PeerDeposit) {
    let mut results = Vec::with_capacity(1);
    port.create_transfers(&[deposit_transfer(deposit)], &mut results);
    assert_eq!(results.len(), 1);
    assert_eq!(
        results[0].status,
        CreateTransferStatus::Created,
        "deposit_possible checked every way a deposit can fail"
    );
}

/// Whether `address` is a valid ILP address, as ilp-packet's `isValidIlpAddress`: at most 1023
/// bytes, `^(g|private|example|peer|self|test[1-3]?|local)([.][a-zA-Z0-9_~-]+)+$`.
pub fn is_valid_ilp_address(address: &str) -> bool {
    if address.len() > ILP_ADDRESS_LENGTH_MAX {
        return false;
    }
    let mut segments = address.split('.');
    let scheme = segments.next().unwrap_or_default();
    if !ILP_ADDRESS_SCHEMES.contains(&scheme) {
        return false;
    }
    let mut count = 0;
    for segment in segments {
        let valid = !segment.is_empty()
            && segment
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'~' | b'-'));
        if !valid {
            return false;
        }
        count += 1;
    }
    count >= 1
}

/// Whether `input` passes Rafiki's `isValidHttpUrl`: `new URL(input.trim())` parses, the
/// protocol is `http:` or `https:`, and the hostname is non-empty with no empty label.
///
/// This follows the WHATWG URL parser as far as the rule can tell: tabs and newlines are
/// dropped, any run of `/` or `\` after the scheme is skipped, the authority ends at `/`, `\`,
/// `?` or `#`, user info ends at the last `@`, the port must be decimal and at most 65535, a
/// host that ends in a number must be an IPv4 address (decimal, octal or hex parts), and a
/// host may not hold a forbidden code point. It does not apply IDNA mapping to non-ASCII hosts
/// (which can turn a full-width dot into a label separator or refuse a label); such hosts are
/// checked as written.
pub fn is_valid_http_url(input: &str) -> bool {
    // JavaScript's `trim` (White_Space but U+0085, and U+FEFF), then WHATWG's own strip of
    // C0 controls and spaces and its removal of every tab and newline.
    let trimmed =
        input.trim_matches(|c: char| (c.is_whitespace() && c != '\u{85}') || c == '\u{feff}');
    let cleaned: String = trimmed
        .trim_matches(|c: char| c <= ' ')
        .chars()
        .filter(|c| !matches!(c, '\t' | '\n' | '\r'))
        .collect();
    let Some((scheme, rest)) = cleaned.split_once(':') else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return false;
    }
    let rest = rest.trim_start_matches(['/', '\\']);
    let authority = rest.split(['/', '\\', '?', '#']).next().unwrap_or_default();
    let host_port = match authority.rfind('@') {
        Some(at) => &authority[at + 1..],
        None => authority,
    };
    let (host, port) = if host_port.starts_with('[') {
        let Some(close) = host_port.find(']') else {
            return false;
        };
        let (host, after) = host_port.split_at(close + 1);
        let port = match after.strip_prefix(':') {
            Some(port) => port,
            None if after.is_empty() => "",
            None => return false,
        };
        if !host[1..close]
            .chars()
            .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
            || !host.contains(':')
        {
            return false;
        }
        (host.to_owned(), port)
    } else {
        let (host, port) = host_port.split_once(':').unwrap_or((host_port, ""));
        let Some(host) = host_domain(host) else {
            return false;
        };
        (host, port)
    };
    if !port.is_empty() && (!port.bytes().all(|b| b.is_ascii_digit()) || port_too_big(port)) {
        return false;
    }
    !host.is_empty() && !host.split('.').any(str::is_empty)
}

fn port_too_big(port: &str) -> bool {
    port.trim_start_matches('0').len() > 5 || port.parse::<u32>().is_ok_and(|value| value > 65535)
}

/// The hostname WHATWG gives a non-bracketed host, or `None` where parsing fails.
fn host_domain(host: &str) -> Option<String> {
    let decoded = percent_decode(host);
    let forbidden = |c: char| {
        c <= ' '
            || c == '\u{7f}'
            || matches!(
                c,
                '#' | '%' | '/' | ':' | '<' | '>' | '?' | '@' | '[' | '\\' | ']' | '^' | '|'
            )
    };
    if decoded.is_empty() || decoded.chars().any(forbidden) {
        return None;
    }
    let domain = decoded.to_ascii_lowercase();
    let mut parts: Vec<&str> = domain.split('.').collect();
    if parts.last() == Some(&"") && parts.len() > 1 {
        parts.pop();
    }
    let last = parts.last().copied().unwrap_or_default();
    let ends_in_number = !last.is_empty() && last.bytes().all(|b| b.is_ascii_digit())
        || (last.starts_with("0x") && last[2..].bytes().all(|b| b.is_ascii_hexdigit()));
    if ends_in_number {
        return ipv4(&parts);
    }
    Some(domain)
}

/// WHATWG's IPv4 parser over the dot-separated parts (a trailing empty part already dropped).
fn ipv4(parts: &[&str]) -> Option<String> {
    if parts.len() > 4 {
        return None;
    }
    let mut numbers = Vec::with_capacity(parts.len());
    for part in parts {
        if part.is_empty() {
            return None;
        }
        let (digits, radix) = if let Some(hex) = part.strip_prefix("0x").or(part.strip_prefix("0X"))
        {
            (hex, 16)
        } else if part.len() > 1 && part.starts_with('0') {
            (&part[1..], 8)
        } else {
            (*part, 10)
        };
        let value = if digits.is_empty() {
            0
        } else {
            u64::from_str_radix(digits, radix).ok()?
        };
        numbers.push(value);
    }
    let (last, first) = numbers.split_last()?;
    if first.iter().any(|number| *number > 255) || *last >= 256u64.pow(5 - numbers.len() as u32) {
        return None;
    }
    let mut address = *last;
    for (index, number) in first.iter().enumerate() {
        address += number << (8 * (3 - index));
    }
    let octets = u32::try_from(address).ok()?.to_be_bytes();
    Some(format!(
        "{}.{}.{}.{}",
        octets[0], octets[1], octets[2], octets[3]
    ))
}

/// Percent-decodes `input` as UTF-8, lossily, as WHATWG's host parser does.
fn percent_decode(input: &str) -> String {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let byte = bytes[index];
        let hex = |at: usize| bytes.get(at).and_then(|b| (*b as char).to_digit(16));
        if byte == b'%' {
            if let (Some(high), Some(low)) = (hex(index + 1), hex(index + 2)) {
                out.push((high * 16 + low) as u8);
                index += 3;
                continue;
            }
        }
        out.push(byte);
        index += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ilp_addresses() {
        for valid in [
            "g.a",
            "test.rafiki",
            "test3.x-y_z~1",
            "private.a.b.c",
            "self.x",
            "local.0",
        ] {
            assert!(is_valid_ilp_address(valid), "{valid}");
        }
        let long = format!("g.{}", "a".repeat(ILP_ADDRESS_LENGTH_MAX - 2));
        assert!(is_valid_ilp_address(&long));
        let too_long = format!("g.{}", "a".repeat(ILP_ADDRESS_LENGTH_MAX - 1));
        for invalid in [
            "",
            "g",
            "g.",
            "g..a",
            "a.b",
            "test4.a",
            "G.a",
            "g.a b",
            "g.a.",
            "g.a/",
            "g.ä",
            "test.rafiki\n",
            too_long.as_str(),
        ] {
            assert!(!is_valid_ilp_address(invalid), "{invalid:?}");
        }
    }

    #[test]
    fn http_urls() {
        for valid in [
            "http://peer.example",
            "https://peer.example:443/ilp?x#y",
            "  http://localhost:3002  ",
            "HTTP://Peer.Example",
            "http:peer.example",
            "http:\\\\peer.example\\ilp",
            "http://user:pass@peer.example",
            "http://127.0.0.1:3000",
            "http://[::1]:3000",
            "http://0x7f.1",
            "http://pe%41r.example",
            "http://p\teer.example",
        ] {
            assert!(is_valid_http_url(valid), "{valid:?}");
        }
        for invalid in [
            "",
            "peer.example",
            "ftp://peer.example",
            "http://",
            "http:///",
            "http://a..b",
            "http://.a",
            "http://a.b.",
            "http://peer.example:65536",
            "http://peer.example:x",
            "http://a b",
            "http://a.1",
            "http://256.1.1.1",
            "http://1.2.3.4.5",
            "http://user@",
            "http://[::1",
            "http://a%2Fb",
        ] {
            assert!(!is_valid_http_url(invalid), "{invalid:?}");
        }
    }
}
