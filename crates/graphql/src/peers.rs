//! Peers: the `Peer` type, its queries and its mutations (`rafiki-admin-api.md` §7.2).
//! `createOrUpdatePeerByUrl` needs the auto-peering client and is not served yet.

use async_graphql::{Context, Error, InputObject, MaybeUndefined, Object, SimpleObject, ID};
use tally_payments::{
    CreatePeer, DeletePeer, HttpOutgoing as DomainHttpOutgoing, Mutation, PeerCommand, PeerHttp,
    Success, UpdatePeer, Uuid,
};

use crate::assets::{asset_by_id, unexpected, Asset};
use crate::common::{
    account_liquidity, core, execute, idempotency, iso8601, page_request, uuid, PageInfo, SortOrder,
};
use crate::errors::{error, unavailable, Code};
use crate::scalars::UInt64;

/// A peer, as it was when read.
#[derive(Clone, Debug)]
pub(crate) struct Peer(pub tally_payments::Peer);

#[Object]
impl Peer {
    /// Peer id.
    pub(crate) async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// Largest amount of one incoming ILP packet.
    async fn max_packet_amount(&self) -> Option<UInt64> {
        self.0.max_packet_amount.map(UInt64)
    }
    /// How this instance reaches the peer.
    async fn http(&self) -> Http {
        Http {
            outgoing: HttpOutgoing {
                auth_token: self.0.outgoing.auth_token.clone(),
                endpoint: self.0.outgoing.endpoint.clone(),
            },
        }
    }
    /// The asset of the peering relationship.
    async fn asset(&self, context: &Context<'_>) -> Result<Asset, Error> {
        asset_by_id(context, self.0.asset_id).await
    }
    /// The peer's ILP address.
    async fn static_ilp_address(&self) -> &str {
        &self.0.static_ilp_address
    }
    /// Display name.
    async fn name(&self) -> Option<&str> {
        self.0.name.as_deref()
    }
    /// Liquidity at or below which `peer.liquidity_low` fires.
    async fn liquidity_threshold(&self) -> Option<UInt64> {
        self.0.liquidity_threshold.map(UInt64)
    }
    /// The peer's liquidity account balance, read from the ledger.
    async fn liquidity(&self, context: &Context<'_>) -> Result<Option<UInt64>, Error> {
        Ok(account_liquidity(context, self.0.liquidity_account_id())
            .await?
            .map(UInt64))
    }
    /// When it was created.
    pub(crate) async fn created_at(&self) -> String {
        iso8601(self.0.created_at)
    }
}

/// The peer's HTTP settings (incoming tokens are write-only).
#[derive(SimpleObject)]
pub(crate) struct Http {
    outgoing: HttpOutgoing,
}

/// How this instance calls the peer.
#[derive(SimpleObject)]
pub(crate) struct HttpOutgoing {
    auth_token: String,
    endpoint: String,
}

/// An edge of `PeersConnection`.
#[derive(SimpleObject)]
pub(crate) struct PeerEdge {
    node: Peer,
    cursor: String,
}

/// A page of peers.
#[derive(SimpleObject)]
pub(crate) struct PeersConnection {
    page_info: PageInfo,
    edges: Vec<PeerEdge>,
}

/// Tokens this instance accepts from the peer.
#[derive(InputObject, Debug)]
pub(crate) struct HttpIncomingInput {
    auth_tokens: Vec<String>,
}

/// How this instance calls the peer.
#[derive(InputObject, Debug)]
pub(crate) struct HttpOutgoingInput {
    auth_token: String,
    endpoint: String,
}

/// The peer's HTTP settings.
#[derive(InputObject, Debug)]
pub(crate) struct HttpInput {
    incoming: Option<HttpIncomingInput>,
    outgoing: HttpOutgoingInput,
}

impl HttpInput {
    fn domain(self) -> PeerHttp {
        PeerHttp {
            incoming_auth_tokens: self.incoming.map(|incoming| incoming.auth_tokens),
            outgoing: DomainHttpOutgoing {
                auth_token: self.outgoing.auth_token,
                endpoint: self.outgoing.endpoint,
            },
        }
    }
}

/// `createPeer`'s input.
#[derive(InputObject, Debug)]
pub(crate) struct CreatePeerInput {
    max_packet_amount: Option<UInt64>,
    http: HttpInput,
    asset_id: String,
    static_ilp_address: String,
    name: Option<String>,
    liquidity_threshold: Option<UInt64>,
    initial_liquidity: Option<UInt64>,
    idempotency_key: Option<String>,
}

/// `updatePeer`'s input: only the fields given change (`null` clears).
#[derive(InputObject, Debug)]
pub(crate) struct UpdatePeerInput {
    id: String,
    max_packet_amount: MaybeUndefined<UInt64>,
    http: Option<HttpInput>,
    static_ilp_address: Option<String>,
    name: MaybeUndefined<String>,
    liquidity_threshold: MaybeUndefined<UInt64>,
    idempotency_key: Option<String>,
}

/// `deletePeer`'s input.
#[derive(InputObject, Debug)]
pub(crate) struct DeletePeerInput {
    id: ID,
    idempotency_key: Option<String>,
}

/// What `createPeer` returns.
#[derive(SimpleObject)]
pub(crate) struct CreatePeerMutationResponse {
    peer: Option<Peer>,
}

/// What `updatePeer` returns.
#[derive(SimpleObject)]
pub(crate) struct UpdatePeerMutationResponse {
    peer: Option<Peer>,
}

/// What `deletePeer` returns.
#[derive(SimpleObject)]
pub(crate) struct DeletePeerMutationResponse {
    success: bool,
}

/// The peer queries.
#[derive(Default)]
pub(crate) struct PeerQuery;

#[Object]
impl PeerQuery {
    /// Fetch a peer.
    async fn peer(&self, context: &Context<'_>, id: String) -> Result<Option<Peer>, Error> {
        let not_found = || error(Code::NotFound, "unknown peer");
        let id = uuid(&id).ok_or_else(not_found)?;
        core(context)
            .read(move |view| view.payments().peer(id).cloned())
            .await
            .map_err(unavailable)?
            .map(|peer| Some(Peer(peer)))
            .ok_or_else(not_found)
    }

    /// The peer that an ILP address routes to for an asset (`null` when none).
    async fn peer_by_address_and_asset(
        &self,
        context: &Context<'_>,
        static_ilp_address: String,
        asset_id: String,
    ) -> Result<Option<Peer>, Error> {
        let Some(asset_id) = uuid(&asset_id) else {
            return Ok(None);
        };
        Ok(core(context)
            .read(move |view| {
                view.payments()
                    .peer_by_address_and_asset(&static_ilp_address, asset_id)
                    .cloned()
            })
            .await
            .map_err(unavailable)?
            .map(Peer))
    }

    /// Fetch a page of peers.
    async fn peers(
        &self,
        context: &Context<'_>,
        after: Option<String>,
        before: Option<String>,
        first: Option<i32>,
        last: Option<i32>,
        sort_order: Option<SortOrder>,
    ) -> Result<PeersConnection, Error> {
        let request = page_request(after, before, first, last, sort_order)?;
        let (peers, page) = core(context)
            .read(move |view| {
                let (peers, page) = view.payments().peers_page(&request);
                (peers.into_iter().cloned().collect::<Vec<_>>(), page)
            })
            .await
            .map_err(unavailable)?;
        Ok(PeersConnection {
            page_info: PageInfo::of(&page),
            edges: peers
                .into_iter()
                .map(|peer| PeerEdge {
                    cursor: peer.id.to_string(),
                    node: Peer(peer),
                })
                .collect(),
        })
    }
}

/// The peer mutations.
#[derive(Default)]
pub(crate) struct PeerMutation;

#[Object]
impl PeerMutation {
    /// Create a peer.
    async fn create_peer(
        &self,
        context: &Context<'_>,
        input: CreatePeerInput,
    ) -> Result<CreatePeerMutationResponse, Error> {
        let key = idempotency(input.idempotency_key.as_deref(), "createPeer", &input);
        let create = CreatePeer {
            id: Uuid::new_v4(),
            asset_id: uuid(&input.asset_id),
            static_ilp_address: input.static_ilp_address,
            http: input.http.domain(),
            name: input.name,
            max_packet_amount: input.max_packet_amount.map(|amount| amount.0),
            liquidity_threshold: input.liquidity_threshold.map(|amount| amount.0),
            initial_liquidity: input.initial_liquidity.map(|amount| amount.0),
            initial_liquidity_transfer_id: Uuid::new_v4(),
        };
        let success = execute(context, key, Mutation::Peer(PeerCommand::Create(create))).await?;
        Ok(CreatePeerMutationResponse {
            peer: Some(peer_of(success)?),
        })
    }

    /// Update a peer.
    async fn update_peer(
        &self,
        context: &Context<'_>,
        input: UpdatePeerInput,
    ) -> Result<UpdatePeerMutationResponse, Error> {
        let key = idempotency(input.idempotency_key.as_deref(), "updatePeer", &input);
        let amount = |value: MaybeUndefined<UInt64>| match value {
            MaybeUndefined::Undefined => None,
            MaybeUndefined::Null => Some(None),
            MaybeUndefined::Value(amount) => Some(Some(amount.0)),
        };
        let update = UpdatePeer {
            id: uuid(&input.id),
            static_ilp_address: input.static_ilp_address,
            http: input.http.map(HttpInput::domain),
            name: match input.name {
                MaybeUndefined::Undefined => None,
                MaybeUndefined::Null => Some(None),
                MaybeUndefined::Value(name) => Some(Some(name)),
            },
            max_packet_amount: amount(input.max_packet_amount),
            liquidity_threshold: amount(input.liquidity_threshold),
        };
        let success = execute(context, key, Mutation::Peer(PeerCommand::Update(update))).await?;
        Ok(UpdatePeerMutationResponse {
            peer: Some(peer_of(success)?),
        })
    }

    /// Delete a peer (its ledger account stays).
    async fn delete_peer(
        &self,
        context: &Context<'_>,
        input: DeletePeerInput,
    ) -> Result<DeletePeerMutationResponse, Error> {
        let key = idempotency(input.idempotency_key.as_deref(), "deletePeer", &input);
        let delete = DeletePeer {
            id: uuid(&input.id),
        };
        match execute(context, key, Mutation::Peer(PeerCommand::Delete(delete))).await? {
            Success::PeerDeleted => Ok(DeletePeerMutationResponse { success: true }),
            other => Err(unexpected(&other)),
        }
    }
}

fn peer_of(success: Success) -> Result<Peer, Error> {
    match success {
        Success::Peer(peer) => Ok(Peer(*peer)),
        other => Err(unexpected(&other)),
    }
}
