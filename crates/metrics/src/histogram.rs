//! A histogram whose observations are atomic adds, for paths that must not take a lock: the
//! core thread's fsync latency and batch sizes, and every GraphQL request's latency.
//!
//! `prometheus_client::metrics::histogram::Histogram` keeps its buckets behind a mutex, which a
//! scrape holds while it encodes; the core thread would then wait for the scraper. Here each
//! bucket is its own `AtomicU64` and the sum an `f64` kept as bits: an observation is two or three
//! relaxed atomic operations and never waits, and a scrape reads the buckets one by one. A scrape
//! that races an observation may see the bucket without the sum (or the other way round), which
//! Prometheus tolerates as it does for every client library's histogram.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

/// A fixed-bucket histogram updated with atomics only. Clones share their buckets.
#[derive(Clone, Debug)]
pub struct AtomicHistogram {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Upper bounds, ascending; the `+Inf` bucket follows them.
    bounds: &'static [f64],
    /// One count per bound, then the `+Inf` bucket's: not cumulative (the encoder adds them up).
    counts: Box<[AtomicU64]>,
    /// The sum of the observations, as `f64::to_bits`.
    sum_bits: AtomicU64,
}

impl AtomicHistogram {
    /// A histogram with these upper bounds (ascending, finite).
    pub fn new(bounds: &'static [f64]) -> AtomicHistogram {
        assert!(
            bounds.windows(2).all(|pair| pair[0] < pair[1]),
            "bounds ascend"
        );
        assert!(bounds.iter().all(|bound| bound.is_finite()));
        AtomicHistogram {
            inner: Arc::new(Inner {
                bounds,
                counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
                sum_bits: AtomicU64::new(0f64.to_bits()),
            }),
        }
    }

    /// Counts `value` in the first bucket whose bound is at least `value`.
    pub fn observe(&self, value: f64) {
        let inner = &*self.inner;
        let bucket = inner.bounds.partition_point(|bound| *bound < value);
        inner.counts[bucket].fetch_add(1, Ordering::Relaxed);
        // Never fails: the closure always returns Some.
        let _ = inner
            .sum_bits
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + value).to_bits())
            });
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.inner
            .counts
            .iter()
            .map(|count| count.load(Ordering::Relaxed))
            .sum()
    }

    /// The sum of the observations so far.
    pub fn sum(&self) -> f64 {
        f64::from_bits(self.inner.sum_bits.load(Ordering::Relaxed))
    }
}

impl TypedMetric for AtomicHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for AtomicHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let inner = &*self.inner;
        let buckets: Vec<(f64, u64)> = inner
            .bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(inner.counts.iter())
            .map(|(bound, count)| (bound, count.load(Ordering::Relaxed)))
            .collect();
        // The count is the buckets' total as read, so that `+Inf` always equals `_count`.
        let count = buckets.iter().map(|(_, count)| count).sum();
        encoder.encode_histogram::<NoLabelSet>(self.sum(), count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_the_first_bucket_at_least_as_large() {
        static BOUNDS: [f64; 3] = [1.0, 2.0, 4.0];
        let histogram = AtomicHistogram::new(&BOUNDS);
        for value in [0.5, 1.0, 1.5, 4.0, 9.0] {
            histogram.observe(value);
        }
        let counts: Vec<u64> = histogram
            .inner
            .counts
            .iter()
            .map(|count| count.load(Ordering::Relaxed))
            .collect();
        assert_eq!(counts, [2, 1, 1, 1]);
        assert_eq!(histogram.count(), 5);
        assert_eq!(histogram.sum(), 16.0);
    }
}
