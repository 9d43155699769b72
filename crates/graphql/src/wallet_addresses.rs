//! Wallet addresses, their keys and the webhook events list: types, queries and mutations
//! (`rafiki-admin-api.md` §7.4, §8.4). The payment connections of `WalletAddress` are read by
//! `payments.rs`.

use async_graphql::{Context, Enum, Error, InputObject, Object, SimpleObject, ID};
use tally_payments::{
    AdditionalProperty as DomainAdditionalProperty, Alg as DomainAlg, CreateWalletAddress,
    CreateWalletAddressKey, CreateWalletAddressWithdrawal, Crv as DomainCrv, Jwk as DomainJwk,
    Kty as DomainKty, Mutation, RevokeWalletAddressKey, Success, TriggerWalletAddressEvents,
    UpdateWalletAddress, Uuid, WalletAddressCommand, WalletAddressStatus as DomainStatus,
};

use crate::assets::{asset_by_id, unexpected, Asset};
use crate::common::{
    account_liquidity, core, execute, idempotency, iso8601, page_request, uuid, uuid_v4, PageInfo,
    SortOrder,
};
use crate::errors::{error, error_plain, unavailable, Code};
use crate::payments::{
    wallet_address_incoming_payments, wallet_address_outgoing_payments, wallet_address_quotes,
    IncomingPaymentConnection, OutgoingPaymentConnection, QuoteConnection,
};
use crate::scalars::{JsonObject, UInt64};

/// A wallet address, as it was when read.
#[derive(Clone, Debug)]
pub(crate) struct WalletAddress(pub tally_payments::WalletAddress);

#[Object]
impl WalletAddress {
    /// Wallet address id.
    pub(crate) async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// Its asset.
    async fn asset(&self, context: &Context<'_>) -> Result<Asset, Error> {
        asset_by_id(context, self.0.asset_id).await
    }
    /// Web Monetization balance (`null` until the first receipt creates its account).
    async fn liquidity(&self, context: &Context<'_>) -> Result<Option<UInt64>, Error> {
        Ok(account_liquidity(context, self.0.id.as_u128())
            .await?
            .map(UInt64))
    }
    /// The wallet address URL (lower-cased).
    async fn url(&self) -> &str {
        &self.0.url
    }
    /// Public name.
    async fn public_name(&self) -> Option<&str> {
        self.0.public_name.as_deref()
    }
    /// When it was created.
    pub(crate) async fn created_at(&self) -> String {
        iso8601(self.0.created_at)
    }
    /// Active or inactive.
    async fn status(&self) -> WalletAddressStatus {
        WalletAddressStatus::of(self.0.status())
    }
    /// The address's keys, revoked ones included.
    async fn wallet_address_keys(
        &self,
        context: &Context<'_>,
        after: Option<String>,
        before: Option<String>,
        first: Option<i32>,
        last: Option<i32>,
        sort_order: Option<SortOrder>,
    ) -> Result<Option<WalletAddressKeyConnection>, Error> {
        let request = page_request(after, before, first, last, sort_order)?;
        let address = self.0.id;
        let (keys, page) = core(context)
            .read(move |view| {
                let (keys, page) = view.payments().wallet_address_keys_page(address, &request);
                (keys.into_iter().cloned().collect::<Vec<_>>(), page)
            })
            .await
            .map_err(unavailable)?;
        Ok(Some(WalletAddressKeyConnection {
            page_info: PageInfo::of(&page),
            edges: keys
                .into_iter()
                .map(|key| WalletAddressKeyEdge {
                    cursor: key.id.to_string(),
                    node: WalletAddressKey(key),
                })
                .collect(),
        }))
    }
    /// The address's incoming payments.
    async fn incoming_payments(
        &self,
        context: &Context<'_>,
        after: Option<String>,
        before: Option<String>,
        first: Option<i32>,
        last: Option<i32>,
        sort_order: Option<SortOrder>,
    ) -> Result<Option<IncomingPaymentConnection>, Error> {
        let request = page_request(after, before, first, last, sort_order)?;
        Ok(Some(
            wallet_address_incoming_payments(context, self.0.id, request).await?,
        ))
    }
    /// The address's quotes.
    async fn quotes(
        &self,
        context: &Context<'_>,
        after: Option<String>,
        before: Option<String>,
        first: Option<i32>,
        last: Option<i32>,
        sort_order: Option<SortOrder>,
    ) -> Result<Option<QuoteConnection>, Error> {
        let request = page_request(after, before, first, last, sort_order)?;
        Ok(Some(
            wallet_address_quotes(context, self.0.id, request).await?,
        ))
    }
    /// The address's outgoing payments.
    async fn outgoing_payments(
        &self,
        context: &Context<'_>,
        after: Option<String>,
        before: Option<String>,
        first: Option<i32>,
        last: Option<i32>,
        sort_order: Option<SortOrder>,
    ) -> Result<Option<OutgoingPaymentConnection>, Error> {
        let request = page_request(after, before, first, last, sort_order)?;
        Ok(Some(
            wallet_address_outgoing_payments(context, self.0.id, request).await?,
        ))
    }
    /// Extra properties.
    async fn additional_properties(&self) -> Option<Vec<Option<AdditionalProperty>>> {
        Some(
            self.0
                .additional_properties
                .iter()
                .map(|property| {
                    Some(AdditionalProperty {
                        key: property.key.clone(),
                        value: property.value.clone(),
                        visible_in_open_payments: property.visible_in_open_payments,
                    })
                })
                .collect(),
        )
    }
}

/// Rafiki's `WalletAddressStatus`.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WalletAddressStatus {
    /// Deactivated.
    #[graphql(name = "INACTIVE")]
    Inactive,
    /// Active.
    #[graphql(name = "ACTIVE")]
    Active,
}

impl WalletAddressStatus {
    fn of(status: DomainStatus) -> WalletAddressStatus {
        match status {
            DomainStatus::Active => WalletAddressStatus::Active,
            DomainStatus::Inactive => WalletAddressStatus::Inactive,
        }
    }
}

/// A key-value pair of a wallet address.
#[derive(SimpleObject)]
pub(crate) struct AdditionalProperty {
    key: String,
    value: String,
    visible_in_open_payments: bool,
}

/// A key-value pair of a wallet address.
#[derive(InputObject, Debug)]
pub(crate) struct AdditionalPropertyInput {
    key: String,
    value: String,
    visible_in_open_payments: bool,
}

fn properties(input: Vec<AdditionalPropertyInput>) -> Vec<DomainAdditionalProperty> {
    input
        .into_iter()
        .map(|property| DomainAdditionalProperty {
            key: property.key,
            value: property.value,
            visible_in_open_payments: property.visible_in_open_payments,
        })
        .collect()
}

/// Rafiki's `Alg`.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Alg {
    /// Ed25519 signatures.
    #[graphql(name = "EdDSA")]
    EdDsa,
}

/// Rafiki's `Kty`.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kty {
    /// Octet key pair.
    #[graphql(name = "OKP")]
    Okp,
}

/// Rafiki's `Crv`.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Crv {
    /// Curve25519 for signatures.
    #[graphql(name = "Ed25519")]
    Ed25519,
}

/// A public key (output always names EdDSA, OKP, Ed25519).
#[derive(SimpleObject)]
pub(crate) struct Jwk {
    kid: String,
    x: String,
    alg: Alg,
    kty: Kty,
    crv: Crv,
}

/// A public key.
#[derive(InputObject, Debug)]
pub(crate) struct JwkInput {
    kid: String,
    x: String,
    alg: Alg,
    kty: Kty,
    crv: Crv,
}

/// A wallet address key.
#[derive(Clone, Debug)]
pub(crate) struct WalletAddressKey(pub tally_payments::WalletAddressKey);

#[Object]
impl WalletAddressKey {
    /// Key row id.
    pub(crate) async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// Its wallet address.
    async fn wallet_address_id(&self) -> ID {
        ID(self.0.wallet_address_id.to_string())
    }
    /// The public key.
    async fn jwk(&self) -> Jwk {
        Jwk {
            kid: self.0.jwk.kid.clone(),
            x: self.0.jwk.x.clone(),
            alg: Alg::EdDsa,
            kty: Kty::Okp,
            crv: Crv::Ed25519,
        }
    }
    /// Whether it was revoked.
    async fn revoked(&self) -> bool {
        self.0.revoked
    }
    /// When it was added.
    pub(crate) async fn created_at(&self) -> String {
        iso8601(self.0.created_at)
    }
}

/// An edge of `WalletAddressesConnection`.
#[derive(SimpleObject)]
pub(crate) struct WalletAddressEdge {
    node: WalletAddress,
    cursor: String,
}

/// A page of wallet addresses.
#[derive(SimpleObject)]
pub(crate) struct WalletAddressesConnection {
    page_info: PageInfo,
    edges: Vec<WalletAddressEdge>,
}

/// An edge of `WalletAddressKeyConnection`.
#[derive(SimpleObject)]
pub(crate) struct WalletAddressKeyEdge {
    node: WalletAddressKey,
    cursor: String,
}

/// A page of wallet address keys.
#[derive(SimpleObject)]
pub(crate) struct WalletAddressKeyConnection {
    page_info: PageInfo,
    edges: Vec<WalletAddressKeyEdge>,
}

/// A webhook event.
#[derive(Clone, Debug)]
pub(crate) struct WebhookEvent(pub tally_payments::WebhookEvent);

#[Object]
impl WebhookEvent {
    /// Event id.
    pub(crate) async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// Event type, e.g. `wallet_address.web_monetization`.
    #[graphql(name = "type")]
    async fn event_type(&self) -> &str {
        &self.0.event_type
    }
    /// Event data.
    async fn data(&self) -> Result<JsonObject, Error> {
        match serde_json::from_str(&self.0.data.text()) {
            Ok(serde_json::Value::Object(object)) => Ok(JsonObject(object)),
            _ => Err(error_plain(format!(
                "event {} holds no JSON object",
                self.0.id
            ))),
        }
    }
    /// When it happened.
    pub(crate) async fn created_at(&self) -> String {
        iso8601(self.0.created_at)
    }
}

/// An edge of `WebhookEventsConnection`.
#[derive(SimpleObject)]
pub(crate) struct WebhookEventsEdge {
    node: WebhookEvent,
    cursor: String,
}

/// A page of webhook events.
#[derive(SimpleObject)]
pub(crate) struct WebhookEventsConnection {
    page_info: PageInfo,
    edges: Vec<WebhookEventsEdge>,
}

/// A filter on a string field (v1: `in` only).
#[derive(InputObject, Debug)]
pub(crate) struct FilterString {
    #[graphql(name = "in")]
    values: Vec<String>,
}

impl FilterString {
    /// The strings to keep.
    pub(crate) fn into_values(self) -> Vec<String> {
        self.values
    }
}

/// `webhookEvents`'s filter.
#[derive(InputObject, Debug)]
pub(crate) struct WebhookEventFilter {
    #[graphql(name = "type")]
    event_type: Option<FilterString>,
}

/// `createWalletAddress`'s input.
#[derive(InputObject, Debug)]
pub(crate) struct CreateWalletAddressInput {
    asset_id: String,
    url: String,
    public_name: Option<String>,
    idempotency_key: Option<String>,
    additional_properties: Option<Vec<AdditionalPropertyInput>>,
}

/// `updateWalletAddress`'s input.
#[derive(InputObject, Debug)]
pub(crate) struct UpdateWalletAddressInput {
    id: ID,
    public_name: async_graphql::MaybeUndefined<String>,
    status: Option<WalletAddressStatus>,
    idempotency_key: Option<String>,
    additional_properties: Option<Vec<AdditionalPropertyInput>>,
}

/// `createWalletAddressKey`'s input.
#[derive(InputObject, Debug)]
pub(crate) struct CreateWalletAddressKeyInput {
    wallet_address_id: String,
    jwk: JwkInput,
    idempotency_key: Option<String>,
}

/// `revokeWalletAddressKey`'s input.
#[derive(InputObject, Debug)]
pub(crate) struct RevokeWalletAddressKeyInput {
    id: String,
    idempotency_key: Option<String>,
}

/// `createWalletAddressWithdrawal`'s input.
#[derive(InputObject, Debug)]
pub(crate) struct CreateWalletAddressWithdrawalInput {
    wallet_address_id: String,
    id: String,
    idempotency_key: String,
    timeout_seconds: UInt64,
}

/// `triggerWalletAddressEvents`'s input.
#[derive(InputObject, Debug)]
pub(crate) struct TriggerWalletAddressEventsInput {
    limit: i32,
    idempotency_key: Option<String>,
}

/// What `createWalletAddress` returns.
#[derive(SimpleObject)]
pub(crate) struct CreateWalletAddressMutationResponse {
    wallet_address: Option<WalletAddress>,
}

/// What `updateWalletAddress` returns.
#[derive(SimpleObject)]
pub(crate) struct UpdateWalletAddressMutationResponse {
    wallet_address: Option<WalletAddress>,
}

/// What the key mutations return.
#[derive(SimpleObject)]
pub(crate) struct CreateWalletAddressKeyMutationResponse {
    wallet_address_key: Option<WalletAddressKey>,
}

/// What `revokeWalletAddressKey` returns.
#[derive(SimpleObject)]
pub(crate) struct RevokeWalletAddressKeyMutationResponse {
    wallet_address_key: Option<WalletAddressKey>,
}

/// A withdrawal of a wallet address's whole Web Monetization balance.
#[derive(SimpleObject)]
pub(crate) struct WalletAddressWithdrawal {
    id: ID,
    amount: UInt64,
    wallet_address: WalletAddress,
}

/// What `createWalletAddressWithdrawal` returns.
#[derive(SimpleObject)]
pub(crate) struct WalletAddressWithdrawalMutationResponse {
    withdrawal: Option<WalletAddressWithdrawal>,
}

/// What `triggerWalletAddressEvents` returns.
#[derive(SimpleObject)]
pub(crate) struct TriggerWalletAddressEventsMutationResponse {
    count: Option<i32>,
}

/// The wallet address queries.
#[derive(Default)]
pub(crate) struct WalletAddressQuery;

#[Object]
impl WalletAddressQuery {
    /// Fetch a wallet address.
    async fn wallet_address(
        &self,
        context: &Context<'_>,
        id: String,
    ) -> Result<Option<WalletAddress>, Error> {
        let not_found = || error(Code::NotFound, "unknown wallet address");
        let id = uuid(&id).ok_or_else(not_found)?;
        core(context)
            .read(move |view| view.payments().wallet_address(id).cloned())
            .await
            .map_err(unavailable)?
            .map(|address| Some(WalletAddress(address)))
            .ok_or_else(not_found)
    }

    /// Get a wallet address by its URL (`null` when none).
    async fn wallet_address_by_url(
        &self,
        context: &Context<'_>,
        url: String,
    ) -> Result<Option<WalletAddress>, Error> {
        Ok(core(context)
            .read(move |view| view.payments().wallet_address_by_url(&url).cloned())
            .await
            .map_err(unavailable)?
            .map(WalletAddress))
    }

    /// Fetch a page of wallet addresses.
    async fn wallet_addresses(
        &self,
        context: &Context<'_>,
        after: Option<String>,
        before: Option<String>,
        first: Option<i32>,
        last: Option<i32>,
        sort_order: Option<SortOrder>,
    ) -> Result<WalletAddressesConnection, Error> {
        let request = page_request(after, before, first, last, sort_order)?;
        let (addresses, page) = core(context)
            .read(move |view| {
                let (addresses, page) = view.payments().wallet_addresses_page(&request);
                (addresses.into_iter().cloned().collect::<Vec<_>>(), page)
            })
            .await
            .map_err(unavailable)?;
        Ok(WalletAddressesConnection {
            page_info: PageInfo::of(&page),
            edges: addresses
                .into_iter()
                .map(|address| WalletAddressEdge {
                    cursor: address.id.to_string(),
                    node: WalletAddress(address),
                })
                .collect(),
        })
    }

    /// Fetch a page of webhook events.
    #[allow(clippy::too_many_arguments)]
    async fn webhook_events(
        &self,
        context: &Context<'_>,
        after: Option<String>,
        before: Option<String>,
        first: Option<i32>,
        last: Option<i32>,
        sort_order: Option<SortOrder>,
        filter: Option<WebhookEventFilter>,
    ) -> Result<WebhookEventsConnection, Error> {
        let request = page_request(after, before, first, last, sort_order)?;
        let types = filter
            .and_then(|filter| filter.event_type)
            .map(|filter| filter.values)
            .unwrap_or_default();
        let (events, page) = core(context)
            .read(move |view| {
                let (events, page) = view.payments().webhook_events_page(&request, &types);
                (events.into_iter().cloned().collect::<Vec<_>>(), page)
            })
            .await
            .map_err(unavailable)?;
        Ok(WebhookEventsConnection {
            page_info: PageInfo::of(&page),
            edges: events
                .into_iter()
                .map(|event| WebhookEventsEdge {
                    cursor: event.id.to_string(),
                    node: WebhookEvent(event),
                })
                .collect(),
        })
    }
}

/// The wallet address mutations.
#[derive(Default)]
pub(crate) struct WalletAddressMutation;

#[Object]
impl WalletAddressMutation {
    /// Create a wallet address.
    async fn create_wallet_address(
        &self,
        context: &Context<'_>,
        input: CreateWalletAddressInput,
    ) -> Result<CreateWalletAddressMutationResponse, Error> {
        let key = idempotency(
            input.idempotency_key.as_deref(),
            "createWalletAddress",
            &input,
        );
        let create = CreateWalletAddress {
            id: Uuid::new_v4(),
            asset_id: uuid(&input.asset_id),
            url: input.url,
            public_name: input.public_name,
            additional_properties: properties(input.additional_properties.unwrap_or_default()),
        };
        let command = WalletAddressCommand::Create(create);
        let success = execute(context, key, Mutation::WalletAddress(command)).await?;
        Ok(CreateWalletAddressMutationResponse {
            wallet_address: Some(wallet_address_of(success)?),
        })
    }

    /// Update a wallet address.
    async fn update_wallet_address(
        &self,
        context: &Context<'_>,
        input: UpdateWalletAddressInput,
    ) -> Result<UpdateWalletAddressMutationResponse, Error> {
        let key = idempotency(
            input.idempotency_key.as_deref(),
            "updateWalletAddress",
            &input,
        );
        let update = UpdateWalletAddress {
            id: uuid(&input.id),
            public_name: match input.public_name {
                async_graphql::MaybeUndefined::Undefined => None,
                async_graphql::MaybeUndefined::Null => Some(None),
                async_graphql::MaybeUndefined::Value(name) => Some(Some(name)),
            },
            status: input.status.map(|status| match status {
                WalletAddressStatus::Active => DomainStatus::Active,
                WalletAddressStatus::Inactive => DomainStatus::Inactive,
            }),
            additional_properties: input.additional_properties.map(properties),
        };
        let command = WalletAddressCommand::Update(update);
        let success = execute(context, key, Mutation::WalletAddress(command)).await?;
        Ok(UpdateWalletAddressMutationResponse {
            wallet_address: Some(wallet_address_of(success)?),
        })
    }

    /// Add a public key to a wallet address.
    async fn create_wallet_address_key(
        &self,
        context: &Context<'_>,
        input: CreateWalletAddressKeyInput,
    ) -> Result<Option<CreateWalletAddressKeyMutationResponse>, Error> {
        let key = idempotency(
            input.idempotency_key.as_deref(),
            "createWalletAddressKey",
            &input,
        );
        let create = CreateWalletAddressKey {
            id: Uuid::new_v4(),
            wallet_address_id: uuid(&input.wallet_address_id),
            jwk: DomainJwk {
                kid: input.jwk.kid,
                x: input.jwk.x,
                alg: DomainAlg::EdDsa,
                kty: DomainKty::Okp,
                crv: DomainCrv::Ed25519,
            },
        };
        let command = WalletAddressCommand::CreateKey(create);
        let success = execute(context, key, Mutation::WalletAddress(command)).await?;
        Ok(Some(CreateWalletAddressKeyMutationResponse {
            wallet_address_key: Some(key_of(success)?),
        }))
    }

    /// Revoke a wallet address key.
    async fn revoke_wallet_address_key(
        &self,
        context: &Context<'_>,
        input: RevokeWalletAddressKeyInput,
    ) -> Result<Option<RevokeWalletAddressKeyMutationResponse>, Error> {
        let key = idempotency(
            input.idempotency_key.as_deref(),
            "revokeWalletAddressKey",
            &input,
        );
        let revoke = RevokeWalletAddressKey {
            id: uuid(&input.id),
        };
        let command = WalletAddressCommand::RevokeKey(revoke);
        let success = execute(context, key, Mutation::WalletAddress(command)).await?;
        Ok(Some(RevokeWalletAddressKeyMutationResponse {
            wallet_address_key: Some(key_of(success)?),
        }))
    }

    /// Withdraw a wallet address's whole Web Monetization balance.
    async fn create_wallet_address_withdrawal(
        &self,
        context: &Context<'_>,
        input: CreateWalletAddressWithdrawalInput,
    ) -> Result<Option<WalletAddressWithdrawalMutationResponse>, Error> {
        let name = "createWalletAddressWithdrawal";
        let key = idempotency(Some(&input.idempotency_key), name, &input);
        let withdraw = CreateWalletAddressWithdrawal {
            wallet_address_id: uuid(&input.wallet_address_id),
            transfer_id: uuid_v4(&input.id),
            timeout_seconds: u64::try_from(input.timeout_seconds.0).unwrap_or(u64::MAX),
        };
        let command = WalletAddressCommand::Withdraw(withdraw);
        match execute(context, key, Mutation::WalletAddress(command)).await? {
            Success::WalletAddressWithdrawal {
                id,
                amount,
                wallet_address,
            } => Ok(Some(WalletAddressWithdrawalMutationResponse {
                withdrawal: Some(WalletAddressWithdrawal {
                    id: ID(id.to_string()),
                    amount: UInt64(amount),
                    wallet_address: WalletAddress(*wallet_address),
                }),
            })),
            other => Err(unexpected(&other)),
        }
    }

    /// Emit due Web Monetization withdrawal events for up to `limit` wallet addresses.
    async fn trigger_wallet_address_events(
        &self,
        context: &Context<'_>,
        input: TriggerWalletAddressEventsInput,
    ) -> Result<TriggerWalletAddressEventsMutationResponse, Error> {
        let name = "triggerWalletAddressEvents";
        let key = idempotency(input.idempotency_key.as_deref(), name, &input);
        let limit = u32::try_from(input.limit)
            .map_err(|_| error_plain(format!("invalid limit {}", input.limit)))?;
        let trigger = TriggerWalletAddressEvents {
            limit,
            seed: Uuid::now_v7(),
        };
        let command = WalletAddressCommand::TriggerEvents(trigger);
        match execute(context, key, Mutation::WalletAddress(command)).await? {
            Success::WalletAddressEvents { count } => {
                Ok(TriggerWalletAddressEventsMutationResponse {
                    count: Some(i32::try_from(count).unwrap_or(i32::MAX)),
                })
            }
            other => Err(unexpected(&other)),
        }
    }
}

fn wallet_address_of(success: Success) -> Result<WalletAddress, Error> {
    match success {
        Success::WalletAddress(address) => Ok(WalletAddress(*address)),
        other => Err(unexpected(&other)),
    }
}

fn key_of(success: Success) -> Result<WalletAddressKey, Error> {
    match success {
        Success::WalletAddressKey(key) => Ok(WalletAddressKey(key)),
        other => Err(unexpected(&other)),
    }
}
