//! Auto-peering (`rafiki-admin-api.md` §7.2): `createOrUpdatePeerByUrl` asks another instance to
//! peer by POSTing a peering request to its auto-peering endpoint, and this instance answers such
//! requests on its own (`tally start --auto-peering-address`). Both sides end in the same domain
//! command, `PeerCommand::CreateOrUpdate`; the HTTP call happens here, in the front, before the
//! command is submitted, and its answer travels inside the command.

use std::time::Duration;

use async_graphql::{Context, Error, InputObject, Object, SimpleObject};
use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tally_payments::{
    AutoPeeringError, CreateOrUpdatePeerByUrl, Mutation, PaymentsError, PeerCommand, Success, Uuid,
};

use crate::assets::unexpected;
use crate::common::{core, execute, idempotency, uuid};
use crate::core_handle::CoreHandle;
use crate::errors::{payments_error, unavailable};
use crate::http::{self, HttpError};
use crate::peers::Peer;
use crate::scalars::UInt64;

/// How long a peering request may take, connection included.
pub const PEERING_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest peering answer read.
const PEERING_ANSWER_BYTES_MAX: usize = 64 << 10;
/// What the accepting side deposits into the new peer's liquidity (Rafiki: JavaScript's
/// `Number.MAX_SAFE_INTEGER`, a credit line the peer will not exhaust).
const ACCEPTED_PEER_LIQUIDITY: u128 = (1 << 53) - 1;

/// This instance's side of peering: what it tells other instances.
#[derive(Clone, Debug)]
pub struct AutoPeeringOptions {
    /// This instance's ILP address (`--ilp-address`).
    pub ilp_address: String,
    /// Where peers send ILP packets to this instance (`--ilp-connector-url`).
    pub ilp_connector_url: String,
    /// This instance's name (`--instance-name`).
    pub instance_name: String,
}

impl Default for AutoPeeringOptions {
    /// `tally start`'s defaults: a test-network address, a connector on loopback.
    fn default() -> AutoPeeringOptions {
        AutoPeeringOptions {
            ilp_address: "test.tally".to_owned(),
            ilp_connector_url: "http://127.0.0.1:3002".to_owned(),
            instance_name: "Tally".to_owned(),
        }
    }
}

/// The body of a peering request (Rafiki's `PeeringRequestArgs`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PeeringRequest {
    static_ilp_address: String,
    ilp_connector_url: String,
    asset: PeeringAsset,
    http_token: String,
    max_packet_amount: Option<u64>,
    name: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct PeeringAsset {
    code: String,
    scale: u8,
}

/// The answer to a peering request (Rafiki's `PeeringDetails`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PeeringDetails {
    static_ilp_address: String,
    ilp_connector_url: String,
    http_token: String,
    name: Option<String>,
}

/// `createOrUpdatePeerByUrl`'s input.
#[derive(InputObject, Debug)]
pub(crate) struct CreateOrUpdatePeerByUrlInput {
    max_packet_amount: Option<UInt64>,
    asset_id: String,
    peer_url: String,
    name: Option<String>,
    liquidity_threshold: Option<UInt64>,
    liquidity_to_deposit: Option<UInt64>,
    idempotency_key: Option<String>,
}

/// What `createOrUpdatePeerByUrl` returns.
#[derive(SimpleObject)]
pub(crate) struct CreateOrUpdatePeerByUrlMutationResponse {
    peer: Option<Peer>,
}

/// The auto-peering mutation.
#[derive(Default)]
pub(crate) struct AutoPeeringMutation;

#[Object]
impl AutoPeeringMutation {
    /// Peer with another instance through its auto-peering endpoint.
    async fn create_or_update_peer_by_url(
        &self,
        context: &Context<'_>,
        input: CreateOrUpdatePeerByUrlInput,
    ) -> Result<CreateOrUpdatePeerByUrlMutationResponse, Error> {
        let key = idempotency(
            input.idempotency_key.as_deref(),
            "createOrUpdatePeerByUrl",
            &input,
        );
        let options = context.data_unchecked::<AutoPeeringOptions>();
        let asset_id = uuid(&input.asset_id);
        let asset = match asset_id {
            Some(id) => core(context)
                .read(move |view| view.payments().asset(id).cloned())
                .await
                .map_err(unavailable)?,
            None => None,
        };
        let Some(asset) = asset else {
            return Err(payments_error(&AutoPeeringError::UnknownAsset.into()));
        };
        let outgoing_auth_token = Uuid::new_v4().to_string();
        let request = PeeringRequest {
            static_ilp_address: options.ilp_address.clone(),
            ilp_connector_url: options.ilp_connector_url.clone(),
            asset: PeeringAsset {
                code: asset.code.clone(),
                scale: asset.scale,
            },
            http_token: outgoing_auth_token.clone(),
            max_packet_amount: input
                .max_packet_amount
                .and_then(|amount| u64::try_from(amount.0).ok()),
            name: Some(options.instance_name.clone()),
        };
        let details = peering_request_send(&input.peer_url, &request)
            .await
            .map_err(|error| payments_error(&error.into()))?;
        let command = CreateOrUpdatePeerByUrl {
            id: Uuid::new_v4(),
            asset_id,
            static_ilp_address: details.static_ilp_address,
            ilp_connector_url: details.ilp_connector_url,
            incoming_auth_token: details.http_token,
            outgoing_auth_token,
            name: input.name,
            remote_name: details.name,
            max_packet_amount: input.max_packet_amount.map(|amount| amount.0),
            liquidity_threshold: input.liquidity_threshold.map(|amount| amount.0),
            liquidity_to_deposit: input.liquidity_to_deposit.map(|amount| amount.0),
            deposit_transfer_id: Uuid::new_v4(),
        };
        let mutation = Mutation::Peer(PeerCommand::CreateOrUpdate(command));
        match execute(context, key, mutation).await? {
            Success::Peer(peer) => Ok(CreateOrUpdatePeerByUrlMutationResponse {
                peer: Some(Peer(*peer)),
            }),
            other => Err(unexpected(&other)),
        }
    }
}

/// POSTs a peering request; maps failures as Rafiki does.
async fn peering_request_send(
    url: &str,
    request: &PeeringRequest,
) -> Result<PeeringDetails, AutoPeeringError> {
    let body = serde_json::to_vec(request).expect("a peering request encodes");
    let answer = tokio::time::timeout(
        PEERING_REQUEST_TIMEOUT,
        http::request(Method::POST, url, &[], body, PEERING_ANSWER_BYTES_MAX),
    )
    .await;
    match answer {
        Ok(Ok((StatusCode::OK, body))) => {
            serde_json::from_slice(&body).map_err(|_| AutoPeeringError::InvalidPeeringRequest)
        }
        Ok(Ok((_, body))) => {
            let error_type = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|body| body["error"]["type"].as_str().map(str::to_owned));
            Err(match error_type.as_deref() {
                Some("InvalidPeerIlpConfiguration") => AutoPeeringError::InvalidIlpConfiguration,
                Some("UnknownAsset") => AutoPeeringError::PeerUnsupportedAsset,
                _ => AutoPeeringError::InvalidPeeringRequest,
            })
        }
        Ok(Err(HttpError::Unreachable)) => Err(AutoPeeringError::InvalidPeerUrl),
        Ok(Err(HttpError::Protocol)) | Err(_) => Err(AutoPeeringError::InvalidPeeringRequest),
    }
}

/// The accepting side: `POST /` with a peering request.
pub fn auto_peering_app(core: CoreHandle, options: AutoPeeringOptions) -> Router {
    Router::new()
        .route("/", post(peering_accept))
        .with_state((core, options))
}

async fn peering_accept(
    State((core, options)): State<(CoreHandle, AutoPeeringOptions)>,
    Json(request): Json<PeeringRequest>,
) -> Response {
    let code = request.asset.code.clone();
    let scale = request.asset.scale;
    let asset = core
        .read(move |view| {
            view.payments()
                .asset_by_code_and_scale(&code, scale)
                .filter(|asset| asset.deleted_at.is_none())
                .map(|asset| asset.id)
        })
        .await;
    let asset_id = match asset {
        Ok(Some(asset_id)) => asset_id,
        Ok(None) => return peering_refusal(AutoPeeringError::UnknownAsset),
        Err(_) => return StatusCode::SERVICE_UNAVAILABLE.into_response(),
    };
    let outgoing_auth_token = Uuid::new_v4().to_string();
    let command = CreateOrUpdatePeerByUrl {
        id: Uuid::new_v4(),
        asset_id: Some(asset_id),
        static_ilp_address: request.static_ilp_address,
        ilp_connector_url: request.ilp_connector_url,
        incoming_auth_token: request.http_token,
        outgoing_auth_token: outgoing_auth_token.clone(),
        name: request.name,
        remote_name: None,
        max_packet_amount: request.max_packet_amount.map(u128::from),
        liquidity_threshold: None,
        liquidity_to_deposit: Some(ACCEPTED_PEER_LIQUIDITY),
        deposit_transfer_id: Uuid::new_v4(),
    };
    let command = tally_payments::Command {
        idempotency: None,
        mutation: Mutation::Peer(PeerCommand::CreateOrUpdate(command)),
    };
    match core.execute(&command).await {
        Ok(Ok(_)) => Json(PeeringDetails {
            static_ilp_address: options.ilp_address,
            ilp_connector_url: options.ilp_connector_url,
            http_token: outgoing_auth_token,
            name: Some(options.instance_name),
        })
        .into_response(),
        Ok(Err(PaymentsError::AutoPeering(error))) => peering_refusal(error),
        // A peer error here means the request named an address or endpoint this instance
        // cannot use.
        Ok(Err(_)) => peering_refusal(AutoPeeringError::InvalidPeerIlpConfiguration),
        Err(_) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

/// Rafiki's error answer: `{error: {code, message, type}}` with the error's HTTP status.
fn peering_refusal(error: AutoPeeringError) -> Response {
    let (status, message) = match error {
        AutoPeeringError::UnknownAsset => (StatusCode::NOT_FOUND, "Unknown asset"),
        AutoPeeringError::InvalidPeerIlpConfiguration => (
            StatusCode::BAD_REQUEST,
            "Requested peer's ILP configuration is misconfigured",
        ),
        AutoPeeringError::InvalidIlpConfiguration => (
            StatusCode::BAD_REQUEST,
            "The ILP configuration is misconfigured",
        ),
        AutoPeeringError::PeerUnsupportedAsset => {
            (StatusCode::BAD_REQUEST, "Peer does not support asset")
        }
        AutoPeeringError::InvalidPeerUrl => (
            StatusCode::BAD_REQUEST,
            "Peer URL is invalid or peer does not support auto-peering",
        ),
        AutoPeeringError::InvalidPeeringRequest => {
            (StatusCode::BAD_REQUEST, "Invalid peering request")
        }
        AutoPeeringError::LiquidityError => (
            StatusCode::BAD_REQUEST,
            "Could not deposit liquidity to peer",
        ),
    };
    let body = serde_json::json!({
        "error": { "code": status.as_u16(), "message": message, "type": format!("{error:?}") }
    });
    (status, Json(body)).into_response()
}
