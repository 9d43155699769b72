//! Rafiki's backend Admin API (v1.2.1, single tenant) over GraphQL: `POST /graphql`, GraphiQL
//! on `GET /graphql`. A thin front: each resolver parses its input, builds a
//! `tally_payments::Command` (new ids are chosen here, the clock and everything else by the
//! core), awaits the core's durable outcome and maps it to Rafiki's payload or error. Reads run
//! on the core thread through `CoreHandle::read`.

mod accounting;
mod assets;
mod auto_peering;
mod common;
mod core_handle;
mod document_cache;
mod errors;
mod http;
mod liquidity;
mod observe;
mod payments;
mod peers;
mod rates;
mod scalars;
mod schema;
mod signature;
mod wallet_addresses;
mod webhooks;

use std::sync::Arc;
use std::time::Instant;

use async_graphql::http::GraphiQLSource;
use async_graphql_axum::{GraphQLRequest, GraphQLResponse};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer};
use tower_http::limit::RequestBodyLimitLayer;
use tracing::Instrument;

pub use crate::auto_peering::{auto_peering_app, AutoPeeringOptions, PEERING_REQUEST_TIMEOUT};
pub use crate::core_handle::{CoreHandle, CoreUnavailable};
use crate::document_cache::DocumentCache;
pub use crate::payments::PaymentsOptions;
pub use crate::rates::{load_rates_file, RatesOptions, RATES_LIFETIME, RATES_TIMEOUT};
use crate::schema::AdminSchema;
pub use crate::schema::{sdl, COMPLEXITY_MAX, DEPTH_MAX};
pub use crate::signature::{
    SignatureOptions, FUTURE_SKEW_MS_MAX, SEEN_MAX, SIGNATURE_BYTES_MAX, SIGNATURE_HEADER,
};
pub use crate::webhooks::{deliver as webhooks_deliver, WebhookOptions, DELIVERIES_IN_FLIGHT_MAX};

/// Largest request body accepted (bytes).
pub const REQUEST_BODY_BYTES_MAX: usize = 1 << 20;

/// How the Admin API is served, beyond the core it fronts.
#[derive(Clone, Debug)]
pub struct AppOptions {
    /// Require Rafiki's `signature` header on `POST /graphql` (docs/graphql.md, "Signing");
    /// `None` serves unsigned requests.
    pub signature: Option<SignatureOptions>,
    /// What `createOrUpdatePeerByUrl` tells the other instance about this one.
    pub auto_peering: AutoPeeringOptions,
    /// Answer introspection queries (GraphiQL and code generators need them; Rafiki turns them
    /// off in production).
    pub introspection: bool,
    /// Open Payments URL, expiries and exchange rates for the payment mutations.
    pub payments: PaymentsOptions,
    /// Where operations are counted and timed, and whether the core serves yet.
    pub metrics: tally_metrics::Metrics,
}

/// The Admin API's routes over `core`.
pub fn app(core: CoreHandle, options: AppOptions) -> Router {
    let mut schema = schema::schema_builder()
        .data(core)
        .data(options.auto_peering.clone())
        .data(payments::PaymentsContext::new(&options.payments));
    if !options.introspection {
        schema = schema.disable_introspection();
    }
    let schema = schema.finish();
    let mut router = Router::new().route("/graphql", get(graphiql).post(graphql));
    if let Some(signature) = &options.signature {
        router = signature::protect(router, signature);
    }
    router
        // The GraphQL extractor reads the body stream itself, past axum's DefaultBodyLimit: the
        // limit is enforced on the stream, with 413 as the answer.
        .layer(RequestBodyLimitLayer::new(REQUEST_BODY_BYTES_MAX))
        .layer(cors())
        .with_state(Front {
            schema,
            documents: Arc::default(),
            metrics: options.metrics,
        })
}

/// What every `POST /graphql` uses.
#[derive(Clone)]
struct Front {
    schema: AdminSchema,
    documents: Arc<DocumentCache>,
    metrics: tally_metrics::Metrics,
}

/// CORS as Rafiki's Koa `cors()` answers: the request's origin and requested headers mirrored,
/// Koa's default methods, no credentials.
fn cors() -> CorsLayer {
    use axum::http::Method;
    CorsLayer::new()
        .allow_origin(AllowOrigin::mirror_request())
        .allow_headers(AllowHeaders::mirror_request())
        .allow_methods([
            Method::GET,
            Method::HEAD,
            Method::PUT,
            Method::POST,
            Method::DELETE,
            Method::PATCH,
        ])
}

/// Serves one request inside a span carrying its request id, so that every line it logs names
/// it; counts and times it once answered. While the core recovers the answer is 503: the
/// listener is up early so that `/healthz` can say so.
async fn graphql(State(front): State<Front>, request: GraphQLRequest) -> Response {
    if front.metrics.health.phase() != tally_metrics::Phase::Serving {
        return (StatusCode::SERVICE_UNAVAILABLE, "recovering").into_response();
    }
    let span = tracing::info_span!("graphql", request_id = observe::request_id());
    graphql_execute(front, request.into_inner())
        .instrument(span)
        .await
        .into_response()
}

async fn graphql_execute(front: Front, mut request: async_graphql::Request) -> GraphQLResponse {
    let started = Instant::now();
    front.documents.prepare(&mut request);
    // Taken out and put back: `parsed_query` borrows the whole request mutably.
    let operation_name = request.operation_name.take();
    let operation = match request.parsed_query() {
        Ok(document) => observe::operation_label(document, operation_name.as_deref()),
        Err(_) => observe::OPERATION_OTHER,
    };
    request.operation_name = operation_name;
    let mut response = front.schema.execute(request).await;
    errors::codes_complete(&mut response);
    let code = observe::code_label(&response);
    front
        .metrics
        .graphql
        .observe(operation, code, started.elapsed());
    if code != observe::CODE_OK {
        tracing::debug!(operation, code, "graphql error");
    }
    response.into()
}

async fn graphiql() -> impl IntoResponse {
    Html(GraphiQLSource::build().endpoint("/graphql").finish())
}
