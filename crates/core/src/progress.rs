//! Progress of a long replay (issue 9): the recovery gauges move with every record, and once the
//! replay has run for an interval a line is logged every interval with the records and bytes
//! replayed, the rate and the time left, so that an operator watching a long restart knows it
//! is working and when it will serve.

use std::time::{Duration, Instant};

use tally_metrics::RecoveryMetrics;

/// How often a long replay reports, unless told otherwise (`--progress-interval-ms`).
pub const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);

/// A replay's progress towards known totals.
pub(crate) struct ReplayProgress<'a> {
    metrics: &'a RecoveryMetrics,
    interval: Duration,
    records: u64,
    bytes: u64,
    started: Instant,
    /// When the last line was logged (or the replay began).
    reported: Instant,
}

impl<'a> ReplayProgress<'a> {
    /// A replay of `records` records, `bytes` bytes of log, starting now.
    pub(crate) fn new(
        metrics: &'a RecoveryMetrics,
        interval: Duration,
        records: u64,
        bytes: u64,
    ) -> ReplayProgress<'a> {
        metrics.records.set(gauge(records));
        metrics.bytes.set(gauge(bytes));
        metrics.records_replayed.set(0);
        metrics.bytes_replayed.set(0);
        let now = Instant::now();
        ReplayProgress {
            metrics,
            interval,
            records,
            bytes,
            started: now,
            reported: now,
        }
    }

    /// `records` records and `bytes` bytes are replayed so far.
    pub(crate) fn advance(&mut self, records: u64, bytes: u64) {
        self.metrics.records_replayed.set(gauge(records));
        self.metrics.bytes_replayed.set(gauge(bytes));
        let now = Instant::now();
        if now.duration_since(self.reported) < self.interval {
            return;
        }
        self.reported = now;
        let elapsed_s = now.duration_since(self.started).as_secs_f64();
        let bytes_per_s = bytes as f64 / elapsed_s;
        let seconds_left = self.bytes.saturating_sub(bytes) as f64 / bytes_per_s.max(1.0);
        tracing::info!(
            records = format_args!("{records}/{}", self.records),
            mib = format_args!("{:.1}/{:.1}", mib(bytes), mib(self.bytes)),
            mib_per_s = format_args!("{:.1}", mib(bytes) / elapsed_s),
            seconds_left = format_args!("{seconds_left:.1}"),
            "replaying"
        );
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1 << 20)
}

fn gauge(count: u64) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}
