//! What an operator's tools poll (issue 9): `GET /healthz`, 200 while the core serves and the
//! journal takes writes, else 503 with the reason (as Rafiki's admin port answers), and
//! `GET /metrics`, the Prometheus text exposition of `tally_metrics::Metrics`. Neither takes a
//! lock the core thread holds: both read atomics.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tally_metrics::Metrics;

/// `/healthz` and `/metrics` over `metrics`.
pub(crate) fn router(metrics: Metrics) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_text))
        .with_state(metrics)
}

async fn healthz(State(metrics): State<Metrics>) -> Response {
    match metrics.health.check() {
        Ok(()) => (StatusCode::OK, "ok\n").into_response(),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")).into_response(),
    }
}

async fn metrics_text(State(metrics): State<Metrics>) -> Response {
    (
        [(header::CONTENT_TYPE, tally_metrics::CONTENT_TYPE)],
        metrics.encode(),
    )
        .into_response()
}
