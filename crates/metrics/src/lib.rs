//! Tally's Prometheus metrics and health (issue 9; every metric is listed in
//! `docs/operations.md`).
//!
//! One `Metrics` per process, built before recovery and shared by the core thread, the native
//! listener, the GraphQL front and the webhook worker. Every handle here updates with atomics
//! (prometheus-client's counters and gauges, and `AtomicHistogram`), so the core thread never
//! takes a lock for a metric and a scrape never waits for the core. Labelled families are looked
//! up off the core thread only (the GraphQL front), or once at start and kept (the native
//! operations). Names follow Prometheus conventions: the unit last, `_total` on counters (added
//! by the encoder).

mod health;
mod histogram;
mod stages;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::{Registry, Unit};

pub use crate::health::{Health, Phase};
pub use crate::histogram::AtomicHistogram;
pub use crate::stages::{Stage, StageHistograms};

/// The `Content-Type` of `GET /metrics`: Prometheus text exposition 0.0.4.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Latency buckets in seconds, 50 µs to 10 s: an fsync on a fast disk takes tens of µs, a
/// GraphQL mutation about a millisecond, a checkpoint of a large ledger seconds.
static SECONDS_BUCKETS: [f64; 17] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0,
];
/// Entries per journal record: up to the core's 1,024.
static ENTRIES_BUCKETS: [f64; 11] = [
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];
/// Events per journal record: powers of 4 up to about 4 M (1,024 requests of 8,189 events at
/// most).
static EVENTS_BUCKETS: [f64; 12] = [
    1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0,
];

/// Every metric of the process, and its health.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    /// Updated by the core thread.
    pub core: CoreMetrics,
    /// Updated while recovery replays the journal.
    pub recovery: RecoveryMetrics,
    /// Updated by the TigerBeetle-protocol listener.
    pub native: NativeMetrics,
    /// Updated by the GraphQL front.
    pub graphql: GraphqlMetrics,
    /// Updated by the webhook worker.
    pub webhooks: WebhookMetrics,
    /// What `/healthz` answers.
    pub health: Arc<Health>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Metrics")
            .field("health", &self.health)
            .finish_non_exhaustive()
    }
}

impl Metrics {
    /// Every metric at zero, registered under `tally_`, and health `Recovering`.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("tally");
        let core = CoreMetrics::register(&mut registry);
        let recovery = RecoveryMetrics::register(&mut registry);
        let native = NativeMetrics::register(&mut registry, core.stages.clone());
        let graphql = GraphqlMetrics::register(&mut registry);
        let webhooks = WebhookMetrics::register(&mut registry);
        Metrics {
            registry: Arc::new(registry),
            core,
            recovery,
            native,
            graphql,
            webhooks,
            health: Arc::default(),
        }
    }

    /// The Prometheus text exposition of every metric, as `GET /metrics` answers.
    pub fn encode(&self) -> String {
        let mut text = String::with_capacity(16 << 10);
        prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }
}

/// What the core thread reports: batches, the queue, the journal, checkpoints, and the sizes of
/// what the state holds.
#[derive(Clone, Debug)]
pub struct CoreMetrics {
    /// Journal records (batches) committed.
    pub batches: Counter,
    /// Entries (requests, admin commands, pulses) per record.
    pub batch_entries: AtomicHistogram,
    /// Events (accounts, transfers, ids, filters; one per admin command) per record.
    pub batch_events: AtomicHistogram,
    /// Submissions waiting in the submit queue, at the start of the last turn.
    pub submit_queue_depth: Gauge,
    /// From submitting a record's fsync to the core seeing it complete.
    pub fsync_seconds: AtomicHistogram,
    /// Where a native request's time goes, stage by stage (`Stage`).
    pub stages: StageHistograms,
    /// Appends that failed and were not executed (a full disk).
    pub append_failures: Counter,
    /// Bytes of log, from the first segment's start to the end of the last record.
    pub journal_bytes: Gauge,
    /// Segment files of the journal.
    pub journal_segments: Gauge,
    /// The op of the last applied entry.
    pub op: Gauge,
    /// Checkpoints that landed.
    pub checkpoints: Counter,
    /// From a checkpoint's moment until it is durable.
    pub checkpoint_seconds: AtomicHistogram,
    /// The newest checkpoint's state size.
    pub checkpoint_bytes: Gauge,
    /// When the newest checkpoint landed.
    pub checkpoint_age: Age,
    /// Accounts in the ledger.
    pub accounts: Gauge,
    /// Transfers in the ledger.
    pub transfers: Gauge,
    /// TigerBeetle client sessions held.
    pub sessions: Gauge,
    /// Payments idempotency keys held.
    pub idempotency_keys: Gauge,
    /// Webhook events owed to the webhook URL.
    pub webhook_backlog: Gauge,
    /// Webhook events given up after their last attempt (kept in the state, so it survives
    /// restarts).
    pub webhook_given_up: Counter,
}

impl CoreMetrics {
    fn register(registry: &mut Registry) -> CoreMetrics {
        let metrics = CoreMetrics {
            batches: Counter::default(),
            batch_entries: AtomicHistogram::new(&ENTRIES_BUCKETS),
            batch_events: AtomicHistogram::new(&EVENTS_BUCKETS),
            submit_queue_depth: Gauge::default(),
            fsync_seconds: AtomicHistogram::new(&SECONDS_BUCKETS),
            stages: StageHistograms::new(),
            append_failures: Counter::default(),
            journal_bytes: Gauge::default(),
            journal_segments: Gauge::default(),
            op: Gauge::default(),
            checkpoints: Counter::default(),
            checkpoint_seconds: AtomicHistogram::new(&SECONDS_BUCKETS),
            checkpoint_bytes: Gauge::default(),
            checkpoint_age: Age::default(),
            accounts: Gauge::default(),
            transfers: Gauge::default(),
            sessions: Gauge::default(),
            idempotency_keys: Gauge::default(),
            webhook_backlog: Gauge::default(),
            webhook_given_up: Counter::default(),
        };
        let m = metrics.clone();
        registry.register(
            "core_batches",
            "Journal records (batches) committed",
            m.batches,
        );
        registry.register(
            "core_batch_entries",
            "Entries (requests, admin commands, pulses) per journal record",
            m.batch_entries,
        );
        registry.register(
            "core_batch_events",
            "Events (accounts, transfers, ids, filters; one per admin command) per journal record",
            m.batch_events,
        );
        registry.register(
            "core_submit_queue_depth",
            "Submissions waiting for the core thread",
            m.submit_queue_depth,
        );
        registry.register_with_unit(
            "journal_fsync_duration",
            "From submitting a record's fsync to the core seeing it complete",
            Unit::Seconds,
            m.fsync_seconds,
        );
        registry.register_with_unit(
            "core_stage_duration",
            "Time of each stage of a native request or of its journal record, by stage",
            Unit::Seconds,
            m.stages,
        );
        registry.register(
            "journal_append_failures",
            "Appends that failed (a full disk); their commands were not executed",
            m.append_failures,
        );
        registry.register_with_unit(
            "journal_size",
            "Log bytes from the first segment's start to the end of the last record",
            Unit::Bytes,
            m.journal_bytes,
        );
        registry.register(
            "journal_segments",
            "Segment files of the journal",
            m.journal_segments,
        );
        registry.register("core_op", "The op of the last applied entry", m.op);
        registry.register("checkpoints", "Checkpoints that landed", m.checkpoints);
        registry.register_with_unit(
            "checkpoint_duration",
            "From a checkpoint's moment until it is durable",
            Unit::Seconds,
            m.checkpoint_seconds,
        );
        registry.register_with_unit(
            "checkpoint_size",
            "The newest checkpoint's state size",
            Unit::Bytes,
            m.checkpoint_bytes,
        );
        registry.register_with_unit(
            "checkpoint_age",
            "Since the newest checkpoint landed (since start until one lands)",
            Unit::Seconds,
            m.checkpoint_age,
        );
        registry.register("ledger_accounts", "Accounts in the ledger", m.accounts);
        registry.register("ledger_transfers", "Transfers in the ledger", m.transfers);
        registry.register(
            "native_sessions",
            "TigerBeetle client sessions held",
            m.sessions,
        );
        registry.register(
            "idempotency_keys",
            "Payments idempotency keys held",
            m.idempotency_keys,
        );
        registry.register(
            "webhook_backlog_events",
            "Webhook events owed to the webhook URL",
            m.webhook_backlog,
        );
        registry.register(
            "webhook_events_given_up",
            "Webhook events given up after their last attempt",
            m.webhook_given_up,
        );
        metrics
    }

    /// Sets a counter that the state keeps (it only grows) to `value`.
    pub fn counter_set(counter: &Counter, value: u64) {
        counter.inner().store(value, Ordering::Relaxed);
    }
}

/// Seconds since a moment, computed when scraped (a gauge). Starts at the process's start.
#[derive(Clone, Debug)]
pub struct Age {
    origin: Instant,
    /// Milliseconds from `origin` to the moment.
    moment_ms: Arc<AtomicU64>,
}

impl Default for Age {
    fn default() -> Age {
        Age {
            origin: Instant::now(),
            moment_ms: Arc::default(),
        }
    }
}

impl Age {
    /// The moment is now.
    pub fn reset(&self) {
        let ms = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.moment_ms.store(ms, Ordering::Relaxed);
    }

    /// Seconds since the moment.
    pub fn seconds(&self) -> f64 {
        let moment = Duration::from_millis(self.moment_ms.load(Ordering::Relaxed));
        self.origin.elapsed().saturating_sub(moment).as_secs_f64()
    }
}

impl TypedMetric for Age {
    const TYPE: MetricType = MetricType::Gauge;
}

impl EncodeMetric for Age {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_gauge(&self.seconds())
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// Replay progress while the journal is recovered (they stay at their final values after).
#[derive(Clone, Debug)]
pub struct RecoveryMetrics {
    /// Records to replay after the checkpoint.
    pub records: Gauge,
    /// Records replayed so far.
    pub records_replayed: Gauge,
    /// Log bytes to replay after the checkpoint.
    pub bytes: Gauge,
    /// Log bytes replayed so far.
    pub bytes_replayed: Gauge,
}

impl RecoveryMetrics {
    fn register(registry: &mut Registry) -> RecoveryMetrics {
        let metrics = RecoveryMetrics {
            records: Gauge::default(),
            records_replayed: Gauge::default(),
            bytes: Gauge::default(),
            bytes_replayed: Gauge::default(),
        };
        let m = metrics.clone();
        registry.register(
            "recovery_records",
            "Journal records recovery replays after the checkpoint",
            m.records,
        );
        registry.register(
            "recovery_replayed_records",
            "Journal records replayed so far",
            m.records_replayed,
        );
        registry.register_with_unit(
            "recovery",
            "Log bytes recovery replays after the checkpoint",
            Unit::Bytes,
            m.bytes,
        );
        registry.register_with_unit(
            "recovery_replayed",
            "Log bytes replayed so far",
            Unit::Bytes,
            m.bytes_replayed,
        );
        metrics
    }
}

/// The label of a native request: its operation's name.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabel {
    operation: &'static str,
}

/// What the TigerBeetle-protocol listener reports.
#[derive(Clone, Debug)]
pub struct NativeMetrics {
    /// Connections open.
    pub connections: Gauge,
    requests: Family<OperationLabel, Counter>,
    /// The stages the listener measures (receive, decode, reply), shared with `CoreMetrics`.
    pub stages: StageHistograms,
}

impl NativeMetrics {
    fn register(registry: &mut Registry, stages: StageHistograms) -> NativeMetrics {
        let metrics = NativeMetrics {
            connections: Gauge::default(),
            requests: Family::default(),
            stages,
        };
        let m = metrics.clone();
        registry.register(
            "native_connections",
            "TigerBeetle-protocol connections open",
            m.connections,
        );
        registry.register(
            "native_requests",
            "TigerBeetle-protocol requests received, by operation",
            m.requests,
        );
        metrics
    }

    /// The request counter of `operation`: looked up once and kept by the caller, so that
    /// counting a request takes no lock.
    pub fn requests(&self, operation: &'static str) -> Counter {
        self.requests
            .get_or_create_owned(&OperationLabel { operation })
    }
}

/// The labels of a GraphQL operation's outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    operation: &'static str,
    code: &'static str,
}

/// What the GraphQL front reports. Label values are static strings from fixed sets (the
/// schema's root fields, the error codes), so the number of series is bounded.
#[derive(Clone, Debug)]
pub struct GraphqlMetrics {
    operations: Family<OutcomeLabels, Counter>,
    durations: Family<OperationLabel, AtomicHistogram, fn() -> AtomicHistogram>,
}

impl GraphqlMetrics {
    fn register(registry: &mut Registry) -> GraphqlMetrics {
        let seconds: fn() -> AtomicHistogram = || AtomicHistogram::new(&SECONDS_BUCKETS);
        let metrics = GraphqlMetrics {
            operations: Family::default(),
            durations: Family::new_with_constructor(seconds),
        };
        let m = metrics.clone();
        registry.register(
            "graphql_operations",
            "GraphQL operations answered, by root field and error code (`ok` without error)",
            m.operations,
        );
        registry.register_with_unit(
            "graphql_operation_duration",
            "GraphQL operations' time from request to response, by root field",
            Unit::Seconds,
            m.durations,
        );
        metrics
    }

    /// Counts one operation and its latency.
    pub fn observe(&self, operation: &'static str, code: &'static str, elapsed: Duration) {
        self.operations
            .get_or_create(&OutcomeLabels { operation, code })
            .inc();
        self.durations
            .get_or_create(&OperationLabel { operation })
            .observe(elapsed.as_secs_f64());
    }
}

/// What the webhook worker reports.
#[derive(Clone, Debug)]
pub struct WebhookMetrics {
    /// Delivery attempts the webhook URL answered with a 2xx.
    pub deliveries: Counter,
    /// Delivery attempts that failed (an error, a timeout, a non-2xx answer).
    pub delivery_failures: Counter,
}

impl WebhookMetrics {
    fn register(registry: &mut Registry) -> WebhookMetrics {
        let metrics = WebhookMetrics {
            deliveries: Counter::default(),
            delivery_failures: Counter::default(),
        };
        let m = metrics.clone();
        registry.register(
            "webhook_deliveries",
            "Webhook delivery attempts answered with a 2xx",
            m.deliveries,
        );
        registry.register(
            "webhook_delivery_failures",
            "Webhook delivery attempts that failed (error, timeout, non-2xx answer)",
            m.delivery_failures,
        );
        metrics
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_prometheus_text_with_units_and_totals() {
        let metrics = Metrics::new();
        metrics.core.batches.inc();
        metrics.core.fsync_seconds.observe(0.001);
        metrics
            .core
            .stages
            .observe(Stage::Apply, Duration::from_micros(1_600));
        metrics.native.requests("create_transfers").inc();
        metrics
            .graphql
            .observe("createAsset", "ok", Duration::from_millis(2));
        let text = metrics.encode();
        for line in [
            "tally_core_batches_total 1",
            "tally_journal_fsync_duration_seconds_count 1",
            "tally_core_stage_duration_seconds_bucket{stage=\"apply\",le=\"0.0015\"} 0",
            "tally_core_stage_duration_seconds_bucket{stage=\"apply\",le=\"0.002\"} 1",
            "tally_core_stage_duration_seconds_count{stage=\"receive\"} 0",
            "tally_native_requests_total{operation=\"create_transfers\"} 1",
            "tally_graphql_operations_total{operation=\"createAsset\",code=\"ok\"} 1",
            "tally_graphql_operation_duration_seconds_bucket{operation=\"createAsset\",le=\"0.0025\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
    }
}
