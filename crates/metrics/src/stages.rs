//! Where a native request's time goes (issue 10): one histogram per stage, from the first byte
//! of the request to the last byte of its reply, under one metric with a fixed `stage` label.
//!
//! The stages are measured where they happen: the listener's connection task (receive, decode,
//! reply) and the core thread (queue, append, apply, fsync, fsync_wait). Each observation is an
//! `AtomicHistogram` observation (a few relaxed atomic adds), picked by array index, so the core
//! thread never looks up a label or takes a lock. The buckets are finer than `SECONDS_BUCKETS`
//! between 100 µs and 10 ms, where a full batch's stages lie, so that a scrape's quantiles mean
//! something.

use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::{MetricType, TypedMetric};

use crate::histogram::AtomicHistogram;

/// Stage durations in seconds, 10 µs to 1 s.
static STAGE_BUCKETS: [f64; 26] = [
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_2, 0.000_3, 0.000_4, 0.000_5, 0.000_75, 0.001,
    0.001_5, 0.002, 0.002_5, 0.003, 0.004, 0.005, 0.006, 0.008, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1,
    0.25, 1.0,
];

/// One stage of a native request's way through the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// From the first byte of a request to the whole frame in the connection's buffer.
    Receive,
    /// Verifying the body's checksum, parsing the header, and copying the message for the core.
    Decode,
    /// From the listener handing the message to the submit queue to the core taking it.
    Queue,
    /// Per record: stamping the entries and `Journal::append` (checksum, then `pwrite` into the
    /// segment).
    Append,
    /// Per record: `State::apply_record`.
    Apply,
    /// Per record: from submitting the fsync to the core seeing it complete (an upper bound of
    /// the device's time: the core looks only once it has nothing else to do).
    Fsync,
    /// Per record: how long the core blocked waiting for the fsync.
    FsyncWait,
    /// From the core seeing the record durable to the reply's last byte written to the socket.
    Reply,
}

impl Stage {
    /// Every stage, in the order a request meets them.
    pub const ALL: [Stage; 8] = [
        Stage::Receive,
        Stage::Decode,
        Stage::Queue,
        Stage::Append,
        Stage::Apply,
        Stage::Fsync,
        Stage::FsyncWait,
        Stage::Reply,
    ];

    /// The `stage` label's value.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Receive => "receive",
            Stage::Decode => "decode",
            Stage::Queue => "queue",
            Stage::Append => "append",
            Stage::Apply => "apply",
            Stage::Fsync => "fsync",
            Stage::FsyncWait => "fsync_wait",
            Stage::Reply => "reply",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabel {
    stage: &'static str,
}

/// A histogram per `Stage`. Clones share their buckets.
#[derive(Clone, Debug)]
pub struct StageHistograms {
    histograms: [AtomicHistogram; Stage::ALL.len()],
}

impl Default for StageHistograms {
    fn default() -> StageHistograms {
        StageHistograms::new()
    }
}

impl StageHistograms {
    /// Every stage at zero.
    pub fn new() -> StageHistograms {
        StageHistograms {
            histograms: std::array::from_fn(|_| AtomicHistogram::new(&STAGE_BUCKETS)),
        }
    }

    /// Counts one pass through `stage` that took `elapsed`.
    pub fn observe(&self, stage: Stage, elapsed: Duration) {
        self.histograms[stage.index()].observe(elapsed.as_secs_f64());
    }

    /// The histogram of `stage`.
    pub fn histogram(&self, stage: Stage) -> &AtomicHistogram {
        &self.histograms[stage.index()]
    }
}

impl TypedMetric for StageHistograms {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for StageHistograms {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        for stage in Stage::ALL {
            let label = StageLabel {
                stage: stage.name(),
            };
            self.histogram(stage)
                .encode(encoder.encode_family(&label)?)?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_stage_has_its_own_histogram_in_order() {
        let stages = StageHistograms::new();
        for (count, stage) in Stage::ALL.into_iter().enumerate() {
            assert_eq!(stage.index(), count);
            for _ in 0..=count {
                stages.observe(stage, Duration::from_millis(1));
            }
        }
        for (count, stage) in Stage::ALL.into_iter().enumerate() {
            assert_eq!(stages.histogram(stage).count(), count as u64 + 1);
        }
    }
}
