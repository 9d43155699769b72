//! Incoming payments, receivers, quotes and outgoing payments: types, queries and mutations
//! (`rafiki-admin-api.md` §5–§8; docs/payments.md). The front parses what the client sent,
//! turns receiver URLs into local incoming payment ids, fetches exchange rates when the assets
//! differ, and hands one command to the core; everything else is decided there.

use std::sync::Arc;
use std::time::Duration;

use async_graphql::{Context, Enum, Error, InputObject, Object, SimpleObject, ID};
use tally_payments::{
    AmountInput as DomainAmountInput, CreateIncomingPayment, CreateQuote, CreateReceiver,
    IncomingPaymentCommand, IncomingPaymentState as DomainIncomingState, IncomingPaymentView,
    Mutation, OutgoingPaymentCommand, OutgoingPaymentState as DomainOutgoingState,
    OutgoingPaymentView, QuoteView, Rates, Success, Uuid,
};

use crate::assets::unexpected;
use crate::bounded_map::BoundedMap;
use crate::common::{
    core, execute, idempotency, iso8601, page_request, parse_iso8601, uuid, PageInfo, SortOrder,
};
use crate::errors::{error, unavailable, Code, REMOTE_RECEIVERS_UNSUPPORTED};
use crate::liquidity::LiquidityMutationResponse;
use crate::rates::{RatesOptions, RatesSource};
use crate::scalars::{JsonObject, UInt64, UInt8};
use crate::wallet_addresses::FilterString;

/// What the payment mutations need beyond the core.
#[derive(Clone, Debug)]
pub struct PaymentsOptions {
    /// This instance's Open Payments URL (`--open-payments-url`): incoming payment URLs are
    /// `<url>/incoming-payments/<id>`, and only receivers under it can be paid.
    pub open_payments_url: String,
    /// `--incoming-payment-expiry-max`: the default and the cap of `expiresAt`.
    pub incoming_payment_expiry_max: Duration,
    /// `--quote-lifespan`.
    pub quote_lifespan: Duration,
    /// Where exchange rates come from.
    pub rates: RatesOptions,
}

/// `PaymentsOptions` with the rates source built: what resolvers find in the context.
pub(crate) struct PaymentsContext {
    open_payments_url: String,
    expiry_max_ns: u64,
    lifespan_ns: u64,
    rates: RatesSource,
    asset_codes: AssetCodes,
}

/// Asset codes at most kept by `AssetCodes`; when full it is emptied (`BoundedMap`).
const ASSET_CODES_MAX: usize = 1 << 16;

/// The asset code of wallet addresses and incoming payments this front has seen, so that a
/// quote knows which rates its command needs without asking the core. Safe to keep without
/// ever updating: a wallet address's asset, an incoming payment's wallet address and an
/// asset's code never change once created. A miss asks the core (`quote_create`).
struct AssetCodes {
    codes: BoundedMap<Uuid, Arc<str>>,
}

impl AssetCodes {
    fn get(&self, id: Uuid) -> Option<Arc<str>> {
        self.codes.get(&id)
    }

    fn remember(&self, entries: &[(Uuid, &Arc<str>)]) {
        self.codes
            .insert_all(entries.iter().map(|&(id, code)| (id, Arc::clone(code))));
    }

    /// An incoming payment and its wallet address, from a view of it.
    fn remember_incoming(&self, view: &IncomingPaymentView) {
        let code: Arc<str> = view.asset_code.as_str().into();
        self.remember(&[
            (view.payment.id, &code),
            (view.payment.wallet_address_id, &code),
        ]);
    }
}

impl PaymentsContext {
    pub(crate) fn new(options: &PaymentsOptions) -> Arc<PaymentsContext> {
        let nanos = |duration: Duration| u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
        Arc::new(PaymentsContext {
            open_payments_url: options.open_payments_url.trim_end_matches('/').to_owned(),
            expiry_max_ns: nanos(options.incoming_payment_expiry_max),
            lifespan_ns: nanos(options.quote_lifespan),
            rates: RatesSource::new(&options.rates),
            asset_codes: AssetCodes {
                codes: BoundedMap::new(ASSET_CODES_MAX),
            },
        })
    }

    /// `<open payments url>/incoming-payments/<id>`.
    fn incoming_payment_url(&self, id: Uuid) -> String {
        format!("{}/incoming-payments/{id}", self.open_payments_url)
    }

    /// The local incoming payment a receiver URL names: `Ok(None)` for a URL under this
    /// instance that names none; `Err` for a URL on another instance.
    fn receiver_payment(&self, url: &str) -> Result<Option<Uuid>, Error> {
        let prefix = format!("{}/", self.open_payments_url);
        let Some(path) = url.strip_prefix(&prefix) else {
            return Err(error(Code::BadUserInput, REMOTE_RECEIVERS_UNSUPPORTED));
        };
        Ok(path
            .strip_prefix("incoming-payments/")
            .and_then(|id| Uuid::parse_str(id).ok()))
    }
}

fn payments_context<'a>(context: &Context<'a>) -> &'a PaymentsContext {
    context.data_unchecked::<Arc<PaymentsContext>>()
}

// --- Shared types -------------------------------------------------------------------------

/// Rafiki's `Amount`.
#[derive(SimpleObject, Clone, Debug)]
pub(crate) struct Amount {
    value: UInt64,
    asset_code: String,
    asset_scale: UInt8,
}

impl Amount {
    fn of(amount: &tally_payments::Amount) -> Amount {
        Amount {
            value: UInt64(amount.value),
            asset_code: amount.asset_code.clone(),
            asset_scale: UInt8(amount.asset_scale),
        }
    }
}

/// Rafiki's `AmountInput`.
#[derive(InputObject, Clone, Debug)]
pub(crate) struct AmountInput {
    value: UInt64,
    asset_code: String,
    asset_scale: UInt8,
}

impl AmountInput {
    fn domain(&self) -> DomainAmountInput {
        DomainAmountInput {
            value: self.value.0,
            asset_code: self.asset_code.clone(),
            asset_scale: self.asset_scale.0,
        }
    }
}

fn metadata_text(metadata: &Option<JsonObject>) -> Option<String> {
    metadata
        .as_ref()
        .map(|object| serde_json::Value::Object(object.0.clone()).to_string())
}

fn metadata_object(metadata: Option<&str>) -> Option<JsonObject> {
    match serde_json::from_str(metadata?) {
        Ok(serde_json::Value::Object(object)) => Some(JsonObject(object)),
        _ => None,
    }
}

/// Rafiki's `IncomingPaymentState`.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
#[graphql(rename_items = "SCREAMING_SNAKE_CASE")]
pub(crate) enum IncomingPaymentState {
    /// Created; nothing received yet.
    Pending,
    /// Receiving.
    Processing,
    /// `incomingAmount` reached.
    Completed,
    /// Expired before completion.
    Expired,
}

impl IncomingPaymentState {
    fn of(state: DomainIncomingState) -> IncomingPaymentState {
        match state {
            DomainIncomingState::Pending => IncomingPaymentState::Pending,
            DomainIncomingState::Processing => IncomingPaymentState::Processing,
            DomainIncomingState::Completed => IncomingPaymentState::Completed,
            DomainIncomingState::Expired => IncomingPaymentState::Expired,
        }
    }
}

/// Rafiki's `OutgoingPaymentState`.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
#[graphql(rename_items = "SCREAMING_SNAKE_CASE")]
pub(crate) enum OutgoingPaymentState {
    /// Waiting for the deposit.
    Funding,
    /// Sending.
    Sending,
    /// Delivered.
    Completed,
    /// Failed.
    Failed,
    /// Cancelled.
    Cancelled,
}

impl OutgoingPaymentState {
    fn of(state: DomainOutgoingState) -> OutgoingPaymentState {
        match state {
            DomainOutgoingState::Funding => OutgoingPaymentState::Funding,
            DomainOutgoingState::Sending => OutgoingPaymentState::Sending,
            DomainOutgoingState::Completed => OutgoingPaymentState::Completed,
            DomainOutgoingState::Failed => OutgoingPaymentState::Failed,
            DomainOutgoingState::Cancelled => OutgoingPaymentState::Cancelled,
        }
    }
}

/// Rafiki's `PaymentType`.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
#[graphql(rename_items = "SCREAMING_SNAKE_CASE")]
pub(crate) enum PaymentType {
    /// An incoming payment.
    Incoming,
    /// An outgoing payment.
    Outgoing,
}

// --- Objects ------------------------------------------------------------------------------

/// An incoming payment, as it was when read.
#[derive(Clone, Debug)]
pub(crate) struct IncomingPayment(pub IncomingPaymentView);

#[Object]
impl IncomingPayment {
    /// Incoming payment id.
    pub(crate) async fn id(&self) -> ID {
        ID(self.0.payment.id.to_string())
    }
    /// The receiving wallet address.
    pub(crate) async fn wallet_address_id(&self) -> ID {
        ID(self.0.payment.wallet_address_id.to_string())
    }
    /// The Open Payments client that created it (always `null`: made through the Admin API).
    pub(crate) async fn client(&self) -> Option<String> {
        None
    }
    /// Its account's balance (`null` until money first arrives).
    async fn liquidity(&self) -> Option<UInt64> {
        self.0.liquidity.map(UInt64)
    }
    /// Its state.
    async fn state(&self) -> IncomingPaymentState {
        IncomingPaymentState::of(self.0.payment.state)
    }
    /// When it stops accepting money.
    async fn expires_at(&self) -> String {
        iso8601(self.0.payment.expires_at)
    }
    /// The most it should receive.
    async fn incoming_amount(&self) -> Option<Amount> {
        self.0.incoming_amount().as_ref().map(Amount::of)
    }
    /// What it received (its account's posted credits).
    async fn received_amount(&self) -> Amount {
        Amount::of(&self.0.received_amount())
    }
    /// The client's metadata.
    pub(crate) async fn metadata(&self) -> Option<JsonObject> {
        metadata_object(self.0.payment.metadata.as_deref())
    }
    /// When it was created.
    pub(crate) async fn created_at(&self) -> String {
        iso8601(self.0.payment.created_at)
    }
}

/// A receiver: an incoming payment seen by its URL.
pub(crate) struct Receiver {
    url: String,
    view: IncomingPaymentView,
}

#[Object]
impl Receiver {
    /// The incoming payment's URL.
    async fn id(&self) -> &str {
        &self.url
    }
    /// Its wallet address's URL.
    async fn wallet_address_url(&self) -> &str {
        &self.view.wallet_address_url
    }
    /// Whether it completed.
    async fn completed(&self) -> bool {
        self.view.payment.state == DomainIncomingState::Completed
    }
    /// The most it should receive.
    async fn incoming_amount(&self) -> Option<Amount> {
        self.view.incoming_amount().as_ref().map(Amount::of)
    }
    /// What it received.
    async fn received_amount(&self) -> Amount {
        Amount::of(&self.view.received_amount())
    }
    /// When it stops accepting money.
    async fn expires_at(&self) -> Option<String> {
        Some(iso8601(self.view.payment.expires_at))
    }
    /// The client's metadata.
    async fn metadata(&self) -> Option<JsonObject> {
        metadata_object(self.view.payment.metadata.as_deref())
    }
    /// When it was created.
    async fn created_at(&self) -> String {
        iso8601(self.view.payment.created_at)
    }
}

/// A quote, as it was when read.
#[derive(Clone, Debug)]
pub(crate) struct Quote(pub QuoteView);

#[Object]
impl Quote {
    /// Quote id (and the id of the outgoing payment made from it).
    async fn id(&self) -> ID {
        ID(self.0.quote.id.to_string())
    }
    /// The sending wallet address.
    async fn wallet_address_id(&self) -> ID {
        ID(self.0.quote.wallet_address_id.to_string())
    }
    /// The receiver's URL.
    async fn receiver(&self) -> &str {
        &self.0.quote.receiver
    }
    /// What the sender pays, fee included.
    async fn debit_amount(&self) -> Amount {
        Amount::of(&self.0.debit_amount)
    }
    /// What the receiver gets.
    async fn receive_amount(&self) -> Amount {
        Amount::of(&self.0.receive_amount)
    }
    /// When it was created.
    async fn created_at(&self) -> String {
        iso8601(self.0.quote.created_at)
    }
    /// When it can no longer be paid.
    async fn expires_at(&self) -> String {
        iso8601(self.0.quote.expires_at)
    }
    /// Receive units per debit unit.
    async fn estimated_exchange_rate(&self) -> Option<f64> {
        Some(self.0.quote.estimated_exchange_rate.0)
    }
}

/// An outgoing payment, as it was when read.
#[derive(Clone, Debug)]
pub(crate) struct OutgoingPayment(pub OutgoingPaymentView);

#[Object]
impl OutgoingPayment {
    /// Outgoing payment id (its quote's id).
    pub(crate) async fn id(&self) -> ID {
        ID(self.0.payment.id.to_string())
    }
    /// The sending wallet address.
    pub(crate) async fn wallet_address_id(&self) -> ID {
        ID(self.0.payment.wallet_address_id.to_string())
    }
    /// The Open Payments client that created it (always `null`: made through the Admin API).
    pub(crate) async fn client(&self) -> Option<String> {
        None
    }
    /// Its account's balance (`null` until funded).
    async fn liquidity(&self) -> Option<UInt64> {
        self.0.liquidity.map(UInt64)
    }
    /// Its state.
    async fn state(&self) -> OutgoingPaymentState {
        OutgoingPaymentState::of(self.0.payment.state)
    }
    /// Why it failed.
    async fn error(&self) -> Option<&str> {
        self.0.payment.error.as_deref()
    }
    /// Attempts at its current state.
    async fn state_attempts(&self) -> i32 {
        i32::try_from(self.0.payment.state_attempts).unwrap_or(i32::MAX)
    }
    /// What the sender pays, fee included.
    async fn debit_amount(&self) -> Amount {
        Amount::of(&self.0.quote.debit_amount)
    }
    /// What the receiver gets.
    async fn receive_amount(&self) -> Amount {
        Amount::of(&self.0.quote.receive_amount)
    }
    /// The receiver's URL.
    async fn receiver(&self) -> &str {
        &self.0.quote.quote.receiver
    }
    /// The client's metadata.
    pub(crate) async fn metadata(&self) -> Option<JsonObject> {
        metadata_object(self.0.payment.metadata.as_deref())
    }
    /// Its quote.
    async fn quote(&self) -> Option<Quote> {
        Some(Quote(self.0.quote.clone()))
    }
    /// What left its account (its account's posted debits).
    async fn sent_amount(&self) -> Amount {
        let mut sent = self.0.quote.debit_amount.clone();
        sent.value = self.0.sent;
        Amount::of(&sent)
    }
    /// When it was created.
    pub(crate) async fn created_at(&self) -> String {
        iso8601(self.0.payment.created_at)
    }
    /// The Open Payments grant (always `null`: made through the Admin API).
    async fn grant_id(&self) -> Option<String> {
        None
    }
}

/// A row of the combined `payments` list.
#[derive(SimpleObject, Clone, Debug)]
pub(crate) struct Payment {
    // `owned`: the `Model` and `BasePayment` interfaces resolve these by value.
    #[graphql(owned)]
    pub(crate) id: ID,
    #[graphql(name = "type")]
    payment_type: PaymentType,
    #[graphql(owned)]
    pub(crate) wallet_address_id: ID,
    #[graphql(owned)]
    pub(crate) client: Option<String>,
    state: String,
    liquidity: Option<UInt64>,
    #[graphql(owned)]
    pub(crate) metadata: Option<JsonObject>,
    #[graphql(owned)]
    pub(crate) created_at: String,
}

macro_rules! connection {
    ($connection:ident, $edge:ident, $node:ty) => {
        /// An edge of the connection.
        #[derive(SimpleObject)]
        pub(crate) struct $edge {
            node: $node,
            cursor: String,
        }

        /// A page.
        #[derive(SimpleObject)]
        pub(crate) struct $connection {
            page_info: PageInfo,
            edges: Vec<$edge>,
        }

        impl $connection {
            /// The page of `nodes`, each node's id its cursor.
            fn of(nodes: Vec<$node>, page: &tally_payments::Page) -> $connection {
                $connection {
                    page_info: PageInfo::of(page),
                    edges: nodes
                        .into_iter()
                        .map(|node| $edge {
                            cursor: node.cursor(),
                            node,
                        })
                        .collect(),
                }
            }
        }
    };
}

impl IncomingPayment {
    fn cursor(&self) -> String {
        self.0.payment.id.to_string()
    }
}

impl OutgoingPayment {
    fn cursor(&self) -> String {
        self.0.payment.id.to_string()
    }
}

impl Quote {
    fn cursor(&self) -> String {
        self.0.quote.id.to_string()
    }
}

impl Payment {
    fn cursor(&self) -> String {
        self.id.to_string()
    }
}

connection!(
    IncomingPaymentConnection,
    IncomingPaymentEdge,
    IncomingPayment
);
connection!(
    OutgoingPaymentConnection,
    OutgoingPaymentEdge,
    OutgoingPayment
);
connection!(QuoteConnection, QuoteEdge, Quote);
connection!(PaymentConnection, PaymentEdge, Payment);

// --- Payloads and inputs --------------------------------------------------------------------

/// `createIncomingPayment`, `updateIncomingPayment`.
#[derive(SimpleObject)]
pub(crate) struct IncomingPaymentResponse {
    payment: Option<IncomingPayment>,
}

/// `approveIncomingPayment`.
#[derive(SimpleObject)]
pub(crate) struct ApproveIncomingPaymentResponse {
    payment: Option<IncomingPayment>,
}

/// `cancelIncomingPayment`.
#[derive(SimpleObject)]
pub(crate) struct CancelIncomingPaymentResponse {
    payment: Option<IncomingPayment>,
}

/// `createReceiver`.
#[derive(SimpleObject)]
pub(crate) struct CreateReceiverResponse {
    receiver: Option<Receiver>,
}

/// `createQuote`.
#[derive(SimpleObject)]
pub(crate) struct QuoteResponse {
    quote: Option<Quote>,
}

/// The outgoing payment mutations.
#[derive(SimpleObject)]
pub(crate) struct OutgoingPaymentResponse {
    payment: Option<OutgoingPayment>,
}

/// `createIncomingPayment`'s input.
#[derive(InputObject, Debug)]
pub(crate) struct CreateIncomingPaymentInput {
    wallet_address_id: String,
    expires_at: Option<String>,
    metadata: Option<JsonObject>,
    incoming_amount: Option<AmountInput>,
    idempotency_key: Option<String>,
}

/// `createReceiver`'s input.
#[derive(InputObject, Debug)]
pub(crate) struct CreateReceiverInput {
    wallet_address_url: String,
    expires_at: Option<String>,
    incoming_amount: Option<AmountInput>,
    metadata: Option<JsonObject>,
    idempotency_key: Option<String>,
}

/// `updateIncomingPayment`'s input.
#[derive(InputObject, Debug)]
pub(crate) struct UpdateIncomingPaymentInput {
    id: ID,
    metadata: JsonObject,
}

/// `approveIncomingPayment`'s input.
#[derive(InputObject, Debug)]
pub(crate) struct ApproveIncomingPaymentInput {
    id: ID,
}

/// `cancelIncomingPayment`'s input.
#[derive(InputObject, Debug)]
pub(crate) struct CancelIncomingPaymentInput {
    id: ID,
}

/// `createQuote`'s input.
#[derive(InputObject, Debug)]
pub(crate) struct CreateQuoteInput {
    wallet_address_id: String,
    debit_amount: Option<AmountInput>,
    receive_amount: Option<AmountInput>,
    receiver: String,
    idempotency_key: Option<String>,
}

/// `createOutgoingPayment`'s input.
#[derive(InputObject, Debug)]
pub(crate) struct CreateOutgoingPaymentInput {
    wallet_address_id: String,
    quote_id: String,
    metadata: Option<JsonObject>,
    idempotency_key: Option<String>,
}

/// `createOutgoingPaymentFromIncomingPayment`'s input.
#[derive(InputObject, Debug)]
pub(crate) struct CreateOutgoingPaymentFromIncomingPaymentInput {
    wallet_address_id: String,
    incoming_payment: String,
    debit_amount: AmountInput,
    metadata: Option<JsonObject>,
    idempotency_key: Option<String>,
}

/// `cancelOutgoingPayment`'s input.
#[derive(InputObject, Debug)]
pub(crate) struct CancelOutgoingPaymentInput {
    id: ID,
    reason: Option<String>,
}

/// `depositOutgoingPaymentLiquidity`'s input.
#[derive(InputObject, Debug)]
pub(crate) struct DepositOutgoingPaymentLiquidityInput {
    outgoing_payment_id: String,
    idempotency_key: String,
}

/// `createOutgoingPaymentWithdrawal`'s input.
#[derive(InputObject, Debug)]
pub(crate) struct CreateOutgoingPaymentWithdrawalInput {
    outgoing_payment_id: String,
    idempotency_key: String,
    timeout_seconds: UInt64,
}

/// `createIncomingPaymentWithdrawal`'s input.
#[derive(InputObject, Debug)]
pub(crate) struct CreateIncomingPaymentWithdrawalInput {
    incoming_payment_id: String,
    idempotency_key: String,
    timeout_seconds: UInt64,
}

/// `depositEventLiquidity`'s input.
#[derive(InputObject, Debug)]
pub(crate) struct DepositEventLiquidityInput {
    event_id: String,
    idempotency_key: String,
}

/// `withdrawEventLiquidity`'s input.
#[derive(InputObject, Debug)]
pub(crate) struct WithdrawEventLiquidityInput {
    event_id: String,
    idempotency_key: String,
}

/// `outgoingPayments`'s filter.
#[derive(InputObject, Debug)]
pub(crate) struct OutgoingPaymentFilter {
    receiver: Option<FilterString>,
    wallet_address_id: Option<FilterString>,
    state: Option<FilterString>,
}

/// `payments`'s filter.
#[derive(InputObject, Debug)]
pub(crate) struct PaymentFilter {
    #[graphql(name = "type")]
    payment_type: Option<FilterString>,
    wallet_address_id: Option<FilterString>,
}

// --- Mutations ------------------------------------------------------------------------------

/// The payment mutations.
#[derive(Default)]
pub(crate) struct PaymentMutation;

#[Object]
impl PaymentMutation {
    /// Create an incoming payment on a wallet address of this instance.
    async fn create_incoming_payment(
        &self,
        context: &Context<'_>,
        input: CreateIncomingPaymentInput,
    ) -> Result<IncomingPaymentResponse, Error> {
        let key = idempotency(
            input.idempotency_key.as_deref(),
            "createIncomingPayment",
            &input,
        );
        let create = incoming_payment_create(
            context,
            uuid(&input.wallet_address_id),
            input.expires_at.as_deref(),
            input.incoming_amount.as_ref(),
            &input.metadata,
        );
        let command = IncomingPaymentCommand::Create(create);
        match execute(context, key, Mutation::IncomingPayment(command)).await? {
            Success::IncomingPayment(view) => {
                payments_context(context)
                    .asset_codes
                    .remember_incoming(&view);
                Ok(IncomingPaymentResponse {
                    payment: Some(IncomingPayment(*view)),
                })
            }
            other => Err(unexpected(&other)),
        }
    }

    /// Create a receiver: an incoming payment on the wallet address with this URL. Only
    /// addresses on this instance: others get `BAD_USER_INPUT` until interledger between
    /// instances exists.
    async fn create_receiver(
        &self,
        context: &Context<'_>,
        input: CreateReceiverInput,
    ) -> Result<CreateReceiverResponse, Error> {
        let key = idempotency(input.idempotency_key.as_deref(), "createReceiver", &input);
        let payment = incoming_payment_create(
            context,
            None,
            input.expires_at.as_deref(),
            input.incoming_amount.as_ref(),
            &input.metadata,
        );
        let command = IncomingPaymentCommand::CreateReceiver(CreateReceiver {
            wallet_address_url: input.wallet_address_url.clone(),
            payment,
        });
        match execute(context, key, Mutation::IncomingPayment(command)).await? {
            Success::Receiver(view) => {
                let payments = payments_context(context);
                payments.asset_codes.remember_incoming(&view);
                Ok(CreateReceiverResponse {
                    receiver: Some(Receiver {
                        url: payments.incoming_payment_url(view.payment.id),
                        view: *view,
                    }),
                })
            }
            other => Err(unexpected(&other)),
        }
    }

    /// Replace an incoming payment's metadata.
    async fn update_incoming_payment(
        &self,
        context: &Context<'_>,
        input: UpdateIncomingPaymentInput,
    ) -> Result<IncomingPaymentResponse, Error> {
        let command = IncomingPaymentCommand::Update {
            id: uuid(&input.id),
            metadata: serde_json::Value::Object(input.metadata.0.clone()).to_string(),
        };
        let payment = incoming_payment_changed(context, command).await?;
        Ok(IncomingPaymentResponse { payment })
    }

    /// Approve a PENDING incoming payment.
    async fn approve_incoming_payment(
        &self,
        context: &Context<'_>,
        input: ApproveIncomingPaymentInput,
    ) -> Result<ApproveIncomingPaymentResponse, Error> {
        let command = IncomingPaymentCommand::Approve {
            id: uuid(&input.id),
        };
        let payment = incoming_payment_changed(context, command).await?;
        Ok(ApproveIncomingPaymentResponse { payment })
    }

    /// Cancel a PENDING incoming payment.
    async fn cancel_incoming_payment(
        &self,
        context: &Context<'_>,
        input: CancelIncomingPaymentInput,
    ) -> Result<CancelIncomingPaymentResponse, Error> {
        let command = IncomingPaymentCommand::Cancel {
            id: uuid(&input.id),
        };
        let payment = incoming_payment_changed(context, command).await?;
        Ok(CancelIncomingPaymentResponse { payment })
    }

    /// Create a quote to a receiver on this instance.
    async fn create_quote(
        &self,
        context: &Context<'_>,
        input: CreateQuoteInput,
    ) -> Result<QuoteResponse, Error> {
        let key = idempotency(input.idempotency_key.as_deref(), "createQuote", &input);
        let create = quote_create(
            context,
            &input.wallet_address_id,
            &input.receiver,
            input.debit_amount.as_ref(),
            input.receive_amount.as_ref(),
        )
        .await?;
        match execute(context, key, Mutation::Quote(create)).await? {
            Success::Quote(view) => Ok(QuoteResponse {
                quote: Some(Quote(*view)),
            }),
            other => Err(unexpected(&other)),
        }
    }

    /// Create an outgoing payment from a quote.
    async fn create_outgoing_payment(
        &self,
        context: &Context<'_>,
        input: CreateOutgoingPaymentInput,
    ) -> Result<OutgoingPaymentResponse, Error> {
        let key = idempotency(
            input.idempotency_key.as_deref(),
            "createOutgoingPayment",
            &input,
        );
        let command = OutgoingPaymentCommand::Create {
            wallet_address_id: uuid(&input.wallet_address_id),
            quote_id: uuid(&input.quote_id),
            metadata: metadata_text(&input.metadata),
        };
        outgoing_payment(context, key, command).await
    }

    /// Create an outgoing payment to an incoming payment of this instance (fixed send).
    async fn create_outgoing_payment_from_incoming_payment(
        &self,
        context: &Context<'_>,
        input: CreateOutgoingPaymentFromIncomingPaymentInput,
    ) -> Result<OutgoingPaymentResponse, Error> {
        let name = "createOutgoingPaymentFromIncomingPayment";
        let key = idempotency(input.idempotency_key.as_deref(), name, &input);
        let quote = quote_create(
            context,
            &input.wallet_address_id,
            &input.incoming_payment,
            Some(&input.debit_amount),
            None,
        )
        .await?;
        let command = OutgoingPaymentCommand::CreateFromIncomingPayment {
            quote: Box::new(quote),
            metadata: metadata_text(&input.metadata),
        };
        outgoing_payment(context, key, command).await
    }

    /// Cancel an outgoing payment that is still FUNDING.
    async fn cancel_outgoing_payment(
        &self,
        context: &Context<'_>,
        input: CancelOutgoingPaymentInput,
    ) -> Result<OutgoingPaymentResponse, Error> {
        let command = OutgoingPaymentCommand::Cancel {
            id: uuid(&input.id),
            reason: input.reason.clone(),
        };
        outgoing_payment(context, None, command).await
    }

    /// Fund an outgoing payment; a payment to this instance completes in the same step.
    async fn deposit_outgoing_payment_liquidity(
        &self,
        context: &Context<'_>,
        input: DepositOutgoingPaymentLiquidityInput,
    ) -> Result<Option<LiquidityMutationResponse>, Error> {
        let name = "depositOutgoingPaymentLiquidity";
        let key = idempotency(Some(&input.idempotency_key), name, &input);
        let command = OutgoingPaymentCommand::Deposit {
            id: uuid(&input.outgoing_payment_id),
        };
        liquidity(context, key, Mutation::OutgoingPayment(command)).await
    }

    /// Withdraw what is left on a completed or failed outgoing payment.
    async fn create_outgoing_payment_withdrawal(
        &self,
        context: &Context<'_>,
        input: CreateOutgoingPaymentWithdrawalInput,
    ) -> Result<Option<LiquidityMutationResponse>, Error> {
        let name = "createOutgoingPaymentWithdrawal";
        let key = idempotency(Some(&input.idempotency_key), name, &input);
        let command = OutgoingPaymentCommand::Withdraw {
            id: uuid(&input.outgoing_payment_id),
            timeout_seconds: timeout_seconds(input.timeout_seconds),
        };
        liquidity(context, key, Mutation::OutgoingPayment(command)).await
    }

    /// Withdraw what a completed or expired incoming payment received.
    async fn create_incoming_payment_withdrawal(
        &self,
        context: &Context<'_>,
        input: CreateIncomingPaymentWithdrawalInput,
    ) -> Result<Option<LiquidityMutationResponse>, Error> {
        let name = "createIncomingPaymentWithdrawal";
        let key = idempotency(Some(&input.idempotency_key), name, &input);
        let command = IncomingPaymentCommand::Withdraw {
            id: uuid(&input.incoming_payment_id),
            timeout_seconds: timeout_seconds(input.timeout_seconds),
        };
        liquidity(context, key, Mutation::IncomingPayment(command)).await
    }

    /// Fund the outgoing payment an `outgoing_payment.created` event names.
    #[graphql(deprecation = "Use `depositOutgoingPaymentLiquidity`")]
    async fn deposit_event_liquidity(
        &self,
        context: &Context<'_>,
        input: DepositEventLiquidityInput,
    ) -> Result<Option<LiquidityMutationResponse>, Error> {
        let key = idempotency(
            Some(&input.idempotency_key),
            "depositEventLiquidity",
            &input,
        );
        let command = OutgoingPaymentCommand::DepositEvent {
            event_id: uuid(&input.event_id),
        };
        liquidity(context, key, Mutation::OutgoingPayment(command)).await
    }

    /// Make the withdrawal an event names.
    #[graphql(
        deprecation = "Use `createOutgoingPaymentWithdrawal, createIncomingPaymentWithdrawal, or createWalletAddressWithdrawal`"
    )]
    async fn withdraw_event_liquidity(
        &self,
        context: &Context<'_>,
        input: WithdrawEventLiquidityInput,
    ) -> Result<Option<LiquidityMutationResponse>, Error> {
        let key = idempotency(
            Some(&input.idempotency_key),
            "withdrawEventLiquidity",
            &input,
        );
        let command = OutgoingPaymentCommand::WithdrawEvent {
            event_id: uuid(&input.event_id),
        };
        liquidity(context, key, Mutation::OutgoingPayment(command)).await
    }
}

/// A timeout beyond what the ledger holds is refused by the domain (`InvalidTimeout`).
fn timeout_seconds(timeout: UInt64) -> u64 {
    u64::try_from(timeout.0).unwrap_or(u64::MAX)
}

fn incoming_payment_create(
    context: &Context<'_>,
    wallet_address_id: Option<Uuid>,
    expires_at: Option<&str>,
    incoming_amount: Option<&AmountInput>,
    metadata: &Option<JsonObject>,
) -> CreateIncomingPayment {
    CreateIncomingPayment {
        id: Uuid::now_v7(),
        wallet_address_id,
        // A date that does not parse is in the past: Rafiki's `InvalidExpiry`.
        expires_at: expires_at.map(|text| parse_iso8601(text).unwrap_or(0)),
        incoming_amount: incoming_amount.map(AmountInput::domain),
        metadata: metadata_text(metadata),
        expiry_max_ns: payments_context(context).expiry_max_ns,
    }
}

async fn incoming_payment_changed(
    context: &Context<'_>,
    command: IncomingPaymentCommand,
) -> Result<Option<IncomingPayment>, Error> {
    match execute(context, None, Mutation::IncomingPayment(command)).await? {
        Success::IncomingPayment(view) => Ok(Some(IncomingPayment(*view))),
        other => Err(unexpected(&other)),
    }
}

async fn outgoing_payment(
    context: &Context<'_>,
    key: Option<tally_payments::IdempotencyKey>,
    command: OutgoingPaymentCommand,
) -> Result<OutgoingPaymentResponse, Error> {
    match execute(context, key, Mutation::OutgoingPayment(command)).await? {
        Success::OutgoingPayment(view) => Ok(OutgoingPaymentResponse {
            payment: Some(OutgoingPayment(*view)),
        }),
        other => Err(unexpected(&other)),
    }
}

async fn liquidity(
    context: &Context<'_>,
    key: Option<tally_payments::IdempotencyKey>,
    mutation: Mutation,
) -> Result<Option<LiquidityMutationResponse>, Error> {
    match execute(context, key, mutation).await? {
        Success::Liquidity => Ok(Some(LiquidityMutationResponse::succeeded())),
        other => Err(unexpected(&other)),
    }
}

/// Builds a quote command: the receiver URL resolved to a local incoming payment, and, when
/// the two assets' codes differ, the rate between them from the rates source.
async fn quote_create(
    context: &Context<'_>,
    wallet_address_id: &str,
    receiver: &str,
    debit_amount: Option<&AmountInput>,
    receive_amount: Option<&AmountInput>,
) -> Result<CreateQuote, Error> {
    let payments = payments_context(context);
    let receiver_payment = payments.receiver_payment(receiver)?;
    let wallet_address_id = uuid(wallet_address_id);
    let rates = match asset_codes(context, wallet_address_id, receiver_payment).await? {
        (Some(from), Some(to)) if from != to => payments
            .rates
            .rates(&from)
            .await
            .map(|rates| rates_to(rates, &to)),
        _ => None,
    };
    Ok(CreateQuote {
        id: Uuid::now_v7(),
        wallet_address_id,
        receiver: receiver.to_owned(),
        receiver_payment,
        debit_amount: debit_amount.map(AmountInput::domain),
        receive_amount: receive_amount.map(AmountInput::domain),
        rates,
        lifespan_ns: payments.lifespan_ns,
    })
}

/// The asset codes of a quote's sending wallet address and receiving incoming payment (`None`
/// for one that does not exist), known to the front or asked of the core.
async fn asset_codes(
    context: &Context<'_>,
    wallet_address_id: Option<Uuid>,
    receiver_payment: Option<Uuid>,
) -> Result<(Option<Arc<str>>, Option<Arc<str>>), Error> {
    let known = &payments_context(context).asset_codes;
    let sending = wallet_address_id.and_then(|id| known.get(id));
    let receiving = receiver_payment.and_then(|id| known.get(id));
    if sending.is_some() && receiving.is_some() {
        return Ok((sending, receiving));
    }
    // A peek: the codes only choose which rates travel in the command, and the core checks
    // the wallet address and the receiver again when it runs it. Waiting for durability here
    // would add a whole fsync to every quote.
    let (sending, receiving) = core(context)
        .peek(move |view| {
            let payments = view.payments();
            let code_of = |asset_id| payments.asset(asset_id).map(|asset| asset.code.clone());
            let sending = wallet_address_id
                .and_then(|id| payments.wallet_address(id))
                .and_then(|address| code_of(address.asset_id));
            let receiving = receiver_payment
                .and_then(|id| payments.incoming_payment(id))
                .and_then(|payment| code_of(payment.asset_id));
            (sending, receiving)
        })
        .await
        .map_err(unavailable)?;
    let sending: Option<Arc<str>> = sending.map(Into::into);
    let receiving: Option<Arc<str>> = receiving.map(Into::into);
    let mut seen = Vec::with_capacity(2);
    if let (Some(id), Some(code)) = (wallet_address_id, &sending) {
        seen.push((id, code));
    }
    if let (Some(id), Some(code)) = (receiver_payment, &receiving) {
        seen.push((id, code));
    }
    known.remember(&seen);
    Ok((sending, receiving))
}

/// Only the rate the quote needs travels in the command.
fn rates_to(rates: Rates, code: &str) -> Rates {
    Rates {
        base: rates.base,
        rates: rates.rates.into_iter().filter(|(c, _)| c == code).collect(),
    }
}

// --- Queries ----------------------------------------------------------------------------------

/// The payment queries.
#[derive(Default)]
pub(crate) struct PaymentQuery;

#[Object]
impl PaymentQuery {
    /// Fetch an incoming payment by its id.
    async fn incoming_payment(
        &self,
        context: &Context<'_>,
        id: String,
    ) -> Result<Option<IncomingPayment>, Error> {
        let id = uuid(&id);
        let view = core(context)
            .read(move |view| id.and_then(|id| view.payments().incoming_payment_view(view, id)))
            .await
            .map_err(unavailable)?;
        view.map(|view| Some(IncomingPayment(view)))
            .ok_or_else(|| error(Code::NotFound, "payment does not exist"))
    }

    /// Fetch an outgoing payment by its id.
    async fn outgoing_payment(
        &self,
        context: &Context<'_>,
        id: String,
    ) -> Result<Option<OutgoingPayment>, Error> {
        let id = uuid(&id);
        let view = core(context)
            .read(move |view| id.and_then(|id| view.payments().outgoing_payment_view(view, id)))
            .await
            .map_err(unavailable)?;
        view.map(|view| Some(OutgoingPayment(view)))
            .ok_or_else(|| error(Code::NotFound, "payment does not exist"))
    }

    /// Fetch a quote by its id.
    async fn quote(&self, context: &Context<'_>, id: String) -> Result<Option<Quote>, Error> {
        let id = uuid(&id);
        let view = core(context)
            .read(move |view| id.and_then(|id| view.payments().quote_view(id)))
            .await
            .map_err(unavailable)?;
        view.map(|view| Some(Quote(view)))
            .ok_or_else(|| error(Code::NotFound, "quote does not exist"))
    }

    /// Fetch a receiver (an incoming payment of this instance) by its URL.
    async fn receiver(&self, context: &Context<'_>, id: String) -> Result<Option<Receiver>, Error> {
        let not_found = || error(Code::NotFound, "receiver does not exist");
        let payment = payments_context(context)
            .receiver_payment(&id)
            .map_err(|_| not_found())?;
        let view = core(context)
            .read(move |view| {
                payment.and_then(|id| view.payments().incoming_payment_view(view, id))
            })
            .await
            .map_err(unavailable)?
            .ok_or_else(not_found)?;
        Ok(Some(Receiver { url: id, view }))
    }

    /// A page of outgoing payments.
    #[allow(clippy::too_many_arguments)]
    async fn outgoing_payments(
        &self,
        context: &Context<'_>,
        after: Option<String>,
        before: Option<String>,
        first: Option<i32>,
        last: Option<i32>,
        sort_order: Option<SortOrder>,
        filter: Option<OutgoingPaymentFilter>,
    ) -> Result<OutgoingPaymentConnection, Error> {
        let request = page_request(after, before, first, last, sort_order)?;
        let values = |filter: Option<FilterString>| filter.map(FilterString::into_values);
        let (receivers, addresses, states) = match filter {
            Some(filter) => (
                values(filter.receiver),
                values(filter.wallet_address_id),
                values(filter.state),
            ),
            None => (None, None, None),
        };
        let (views, page) = core(context)
            .read(move |view| {
                let payments = view.payments();
                let (ids, page) = payments.outgoing_payments_page(&request, |payment, receiver| {
                    receivers
                        .as_ref()
                        .is_none_or(|values| values.iter().any(|r| r == receiver))
                        && addresses.as_ref().is_none_or(|values| {
                            values
                                .iter()
                                .any(|a| *a == payment.wallet_address_id.to_string())
                        })
                        && states
                            .as_ref()
                            .is_none_or(|values| values.iter().any(|s| s == payment.state.name()))
                });
                let views: Vec<OutgoingPaymentView> = ids
                    .iter()
                    .filter_map(|id| payments.outgoing_payment_view(view, *id))
                    .collect();
                (views, page)
            })
            .await
            .map_err(unavailable)?;
        Ok(OutgoingPaymentConnection::of(
            views.into_iter().map(OutgoingPayment).collect(),
            &page,
        ))
    }

    /// A page of incoming and outgoing payments together, newest first by default.
    #[allow(clippy::too_many_arguments)]
    async fn payments(
        &self,
        context: &Context<'_>,
        after: Option<String>,
        before: Option<String>,
        first: Option<i32>,
        last: Option<i32>,
        sort_order: Option<SortOrder>,
        filter: Option<PaymentFilter>,
    ) -> Result<PaymentConnection, Error> {
        let request = page_request(after, before, first, last, sort_order)?;
        let (types, addresses) = match filter {
            Some(filter) => (
                filter.payment_type.map(FilterString::into_values),
                filter.wallet_address_id.map(FilterString::into_values),
            ),
            None => (None, None),
        };
        let incoming = types
            .as_ref()
            .is_none_or(|types| types.iter().any(|t| t == "INCOMING"));
        let outgoing = types
            .as_ref()
            .is_none_or(|types| types.iter().any(|t| t == "OUTGOING"));
        let (rows, page) = core(context)
            .read(move |view| {
                let payments = view.payments();
                let keep = |address: Uuid| {
                    addresses
                        .as_ref()
                        .is_none_or(|values| values.iter().any(|a| *a == address.to_string()))
                };
                let (ids, page) = payments.payments_page(&request, incoming, outgoing, keep);
                let rows: Vec<Payment> =
                    ids.iter().filter_map(|id| payment_row(view, *id)).collect();
                (rows, page)
            })
            .await
            .map_err(unavailable)?;
        Ok(PaymentConnection::of(rows, &page))
    }
}

/// One row of `payments`, read on the core thread.
fn payment_row(view: &tally_core::StateView<'_>, id: Uuid) -> Option<Payment> {
    let payments = view.payments();
    if let Some(incoming) = payments.incoming_payment_view(view, id) {
        return Some(Payment {
            id: ID(id.to_string()),
            payment_type: PaymentType::Incoming,
            wallet_address_id: ID(incoming.payment.wallet_address_id.to_string()),
            client: None,
            state: incoming.payment.state.name().to_owned(),
            liquidity: incoming.liquidity.map(UInt64),
            metadata: metadata_object(incoming.payment.metadata.as_deref()),
            created_at: iso8601(incoming.payment.created_at),
        });
    }
    let outgoing = payments.outgoing_payment_view(view, id)?;
    Some(Payment {
        id: ID(id.to_string()),
        payment_type: PaymentType::Outgoing,
        wallet_address_id: ID(outgoing.payment.wallet_address_id.to_string()),
        client: None,
        state: outgoing.payment.state.name().to_owned(),
        liquidity: outgoing.liquidity.map(UInt64),
        metadata: metadata_object(outgoing.payment.metadata.as_deref()),
        created_at: iso8601(outgoing.payment.created_at),
    })
}

// --- WalletAddress connections ----------------------------------------------------------------

/// `WalletAddress.incomingPayments`.
pub(crate) async fn wallet_address_incoming_payments(
    context: &Context<'_>,
    wallet_address: Uuid,
    request: tally_payments::PageRequest,
) -> Result<IncomingPaymentConnection, Error> {
    let (views, page) = core(context)
        .read(move |view| {
            let payments = view.payments();
            let (found, page) = payments.incoming_payments_page(wallet_address, &request);
            let views: Vec<IncomingPaymentView> = found
                .iter()
                .filter_map(|payment| payments.incoming_payment_view(view, payment.id))
                .collect();
            (views, page)
        })
        .await
        .map_err(unavailable)?;
    Ok(IncomingPaymentConnection::of(
        views.into_iter().map(IncomingPayment).collect(),
        &page,
    ))
}

/// `WalletAddress.outgoingPayments`.
pub(crate) async fn wallet_address_outgoing_payments(
    context: &Context<'_>,
    wallet_address: Uuid,
    request: tally_payments::PageRequest,
) -> Result<OutgoingPaymentConnection, Error> {
    let (views, page) = core(context)
        .read(move |view| {
            let payments = view.payments();
            let (ids, page) = payments.outgoing_payments_of(wallet_address, &request);
            let views: Vec<OutgoingPaymentView> = ids
                .iter()
                .filter_map(|id| payments.outgoing_payment_view(view, *id))
                .collect();
            (views, page)
        })
        .await
        .map_err(unavailable)?;
    Ok(OutgoingPaymentConnection::of(
        views.into_iter().map(OutgoingPayment).collect(),
        &page,
    ))
}

/// `WalletAddress.quotes`.
pub(crate) async fn wallet_address_quotes(
    context: &Context<'_>,
    wallet_address: Uuid,
    request: tally_payments::PageRequest,
) -> Result<QuoteConnection, Error> {
    let (views, page) = core(context)
        .read(move |view| {
            let payments = view.payments();
            let (ids, page) = payments.quotes_page(wallet_address, &request);
            let views: Vec<QuoteView> = ids
                .iter()
                .filter_map(|id| payments.quote_view(*id))
                .collect();
            (views, page)
        })
        .await
        .map_err(unavailable)?;
    Ok(QuoteConnection::of(
        views.into_iter().map(Quote).collect(),
        &page,
    ))
}
