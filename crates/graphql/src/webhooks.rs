//! Webhook delivery (`rafiki-admin-api.md` §8.6): every event the core keeps is POSTed to the
//! account servicing entity's `--webhook-url` as Rafiki does: the body `{id, type, data}`, the
//! header `Rafiki-Signature: t=<ms>, v<version>=<hex HMAC-SHA256(secret, "<t>.<body>")>` when
//! `--webhook-secret` is set, and only HTTP 200 counts.
//!
//! What is owed lives in the core (journaled, so it survives restarts); this worker only reads
//! the events that are due, POSTs a bounded number of them at once, each within its timeout,
//! and reports every result as a command. The core schedules retries (Rafiki's back-off,
//! `min(attempts, 6) × delay`, given up after `attempts_max`). A receiver that is down, slow
//! or answers 500 costs the worker a timeout per round and never blocks the core: the core
//! never waits for the worker. Delivery is at least once: a restart between a POST and its
//! report repeats the POST.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_graphql::futures_util::future::join_all;
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tally_metrics::WebhookMetrics;
use tally_payments::{Command, Mutation, WebhookDeliveryResult, WebhookEvent};

use crate::core_handle::CoreHandle;
use crate::http;

/// Deliveries in flight at most (one round of the worker).
pub const DELIVERIES_IN_FLIGHT_MAX: usize = 16;
/// How often the worker looks for due events when none were due.
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// Largest answer body read (and dropped).
const ANSWER_BYTES_MAX: usize = 64 << 10;
/// Rafiki's header.
const SIGNATURE_HEADER: &str = "rafiki-signature";

/// Where and how events are delivered.
#[derive(Clone, Debug)]
pub struct WebhookOptions {
    /// `--webhook-url`.
    pub url: String,
    /// `--webhook-secret`: sign deliveries when set.
    pub secret: Option<String>,
    /// The signature version, `v<N>=` (Rafiki's `SIGNATURE_VERSION`).
    pub signature_version: u32,
    /// One POST's limit (Rafiki's `WEBHOOK_TIMEOUT`, 2 s).
    pub timeout: Duration,
    /// Rafiki's back-off unit (10 s).
    pub retry_delay: Duration,
    /// Attempts before an event is given up (Rafiki's `WEBHOOK_MAX_RETRY`, 10).
    pub attempts_max: u32,
}

/// Delivers until the core stops answering (the server is shutting down); counts attempts in
/// `metrics`.
pub async fn deliver(core: CoreHandle, options: WebhookOptions, metrics: WebhookMetrics) {
    assert!(options.attempts_max > 0);
    loop {
        let now = now_ns();
        let due = core
            .read(move |view| {
                view.payments()
                    .webhook_deliveries_due(now, DELIVERIES_IN_FLIGHT_MAX)
            })
            .await;
        let Ok(due) = due else {
            return;
        };
        if due.is_empty() {
            tokio::time::sleep(POLL_INTERVAL).await;
            continue;
        }
        assert!(due.len() <= DELIVERIES_IN_FLIGHT_MAX);
        // All of a round's POSTs run together, each bounded by the timeout.
        let delivered = join_all(due.iter().map(|event| post(&options, event))).await;
        for (event, delivered) in due.iter().zip(delivered) {
            if delivered {
                metrics.deliveries.inc();
            } else {
                metrics.delivery_failures.inc();
                tracing::warn!(event = %event.id, event_type = %event.event_type, "webhook delivery failed");
            }
            let command = Command {
                idempotency: None,
                mutation: Mutation::WebhookDelivery(WebhookDeliveryResult {
                    event_id: event.id,
                    delivered,
                    retry_delay_ns: nanos(options.retry_delay),
                    attempts_max: options.attempts_max,
                }),
            };
            if core.execute(&command).await.is_err() {
                return;
            }
        }
    }
}

/// POSTs one event; true when the answer was HTTP 200 within the timeout.
async fn post(options: &WebhookOptions, event: &WebhookEvent) -> bool {
    let data: serde_json::Value =
        serde_json::from_str(&event.data.text()).unwrap_or(serde_json::Value::Null);
    let body =
        serde_json::json!({ "id": event.id.to_string(), "type": event.event_type, "data": data });
    let Ok(canonical) = serde_jcs::to_string(&body) else {
        return false;
    };
    let mut headers = Vec::with_capacity(1);
    if let Some(secret) = &options.secret {
        let timestamp_ms = now_ns() / 1_000_000;
        let signature = sign(secret, timestamp_ms, &canonical);
        let value = format!(
            "t={timestamp_ms}, v{}={signature}",
            options.signature_version
        );
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.push((HeaderName::from_static(SIGNATURE_HEADER), value));
        }
    }
    let answer = tokio::time::timeout(
        options.timeout,
        http::request(
            Method::POST,
            &options.url,
            &headers,
            canonical.into_bytes(),
            ANSWER_BYTES_MAX,
        ),
    )
    .await;
    matches!(answer, Ok(Ok((StatusCode::OK, _))))
}

/// Hex HMAC-SHA256 of `"<timestamp_ms>.<body>"`.
fn sign(secret: &str, timestamp_ms: u64, body: &str) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(format!("{timestamp_ms}.{body}").as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
        })
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}
