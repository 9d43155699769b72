//! Rafiki's backend Admin API (v1.2.1, single tenant) over GraphQL: `POST /graphql`, GraphiQL
//! on `GET /graphql`. A thin front: each resolver parses its input, builds a
//! `tally_payments::Command` (new ids are chosen here, the clock and everything else by the
//! core), awaits the core's durable outcome and maps it to Rafiki's payload or error. Reads run
//! on the core thread through `CoreHandle::read`.

mod accounting;
mod assets;
mod auto_peering;
mod bounded_map;
mod common;
mod core_handle;
mod document_cache;
mod errors;
mod http;
mod interfaces;
mod known_valid;
mod liquidity;
mod observe;
mod payments;
mod peers;
mod rates;
mod scalars;
mod schema;
mod signature;
#[doc(hidden)]
pub mod testing;
mod wallet_addresses;
mod webhooks;

use std::sync::Arc;
use std::time::Instant;

use async_graphql::http::GraphiQLSource;
use async_graphql::{ParseRequestError, ValidationMode};
use async_graphql_axum::rejection::GraphQLRejection;
use async_graphql_axum::{GraphQLRequest, GraphQLResponse};
use axum::extract::{FromRequest, State};
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
use crate::known_valid::Schemas;
pub use crate::payments::PaymentsOptions;
pub use crate::rates::{load_rates_file, RatesOptions, RATES_LIFETIME, RATES_TIMEOUT};
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
    let payments = payments::PaymentsContext::new(&options.payments);
    let build = |mode: ValidationMode| {
        let mut schema = schema::schema_builder()
            .validation_mode(mode)
            .data(core.clone())
            .data(options.auto_peering.clone())
            .data(payments.clone());
        if !options.introspection {
            schema = schema.disable_introspection();
        }
        schema.finish()
    };
    let schemas = Schemas::new(build);
    let mut router = Router::new().route("/graphql", get(graphiql).post(graphql));
    if let Some(signature) = &options.signature {
        router = signature::protect(router, signature);
    }
    router
        // The GraphQL extractor reads the body stream itself, past axum's DefaultBodyLimit: the
        // limit is enforced on the stream, with 413 as the answer.
        .layer(RequestBodyLimitLayer::new(REQUEST_BODY_BYTES_MAX))
        .layer(cors())
        // In an `Arc`: axum clones the state for each request, and `Metrics` alone is dozens
        // of `Arc`s, each an atomic increment and decrement shared with the core thread.
        .with_state(Arc::new(Front {
            schemas,
            documents: Arc::default(),
            metrics: options.metrics,
        }))
}

/// What every `POST /graphql` uses.
struct Front {
    schemas: Schemas,
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
/// it; counts and times it once answered. The span is at debug level: at info the subscriber's
/// work for it was 7–13% of the tokio workers' CPU under payments (`docs/operations.md`).
/// While the core recovers the answer is 503: the listener is up early so that `/healthz` can
/// say so.
async fn graphql(State(front): State<Arc<Front>>, request: axum::extract::Request) -> Response {
    if front.metrics.health.phase() != tally_metrics::Phase::Serving {
        return (StatusCode::SERVICE_UNAVAILABLE, "recovering").into_response();
    }
    let request = match graphql_request(request).await {
        Ok(request) => request,
        Err(rejection) => return rejection.into_response(),
    };
    let span = tracing::debug_span!("graphql", request_id = observe::request_id());
    graphql_execute(&front, request)
        .instrument(span)
        .await
        .into_response()
}

async fn graphql_execute(front: &Front, mut request: async_graphql::Request) -> GraphQLResponse {
    let started = Instant::now();
    let cached = front.documents.prepare(&mut request);
    // Taken out and put back: `parsed_query` borrows the whole request mutably.
    let operation_name = request.operation_name.take();
    let operation = match request.parsed_query() {
        Ok(document) => observe::operation_label(document, operation_name.as_deref()),
        Err(_) => observe::OPERATION_OTHER,
    };
    request.operation_name = operation_name;
    let known_valid = cached.as_ref().is_some_and(|cached| {
        cached.rules_passed()
            && front
                .schemas
                .input_types
                .variables_valid(&cached.document, &request.variables)
    });
    let schema = if known_valid {
        &front.schemas.known_valid
    } else {
        &front.schemas.strict
    };
    let mut response = schema.execute(request).await;
    if let Some(cached) = cached.filter(|_| !known_valid && response.errors.is_empty()) {
        cached.rules_pass();
    }
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

/// The request of a `POST /graphql`, as async-graphql-axum's `GraphQLRequest` extracts it, but
/// a JSON body is parsed straight into one request: the extractor parses into its untagged
/// `BatchRequest` (single or batch), which buffers the whole document in serde's generic
/// `Content` first, about 5% of a mutation's CPU. Anything that does not parse so (a batch,
/// garbage, multipart) goes the extractor's way, for its exact answer.
async fn graphql_request(
    request: axum::extract::Request,
) -> Result<async_graphql::Request, GraphQLRejection> {
    let content_type = request
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .map(ToString::to_string);
    if content_type
        .as_deref()
        .is_some_and(|c| c.starts_with("multipart/"))
    {
        return GraphQLRequest::<GraphQLRejection>::from_request(request, &())
            .await
            .map(GraphQLRequest::into_inner);
    }
    // The body limit layer has bounded what this reads.
    let body = axum::body::to_bytes(request.into_body(), usize::MAX)
        .await
        .map_err(|error| ParseRequestError::Io(std::io::Error::other(error.to_string())))?;
    if let Ok(request) = serde_json::from_slice::<async_graphql::Request>(&body) {
        return Ok(request);
    }
    let batch = async_graphql::http::receive_batch_body(
        content_type,
        body.as_ref(),
        async_graphql::http::MultipartOptions::default(),
    )
    .await?;
    Ok(batch.into_single()?)
}

async fn graphiql() -> impl IntoResponse {
    Html(GraphiQLSource::build().endpoint("/graphql").finish())
}
