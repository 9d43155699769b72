//! Deterministic randomness for workloads: splitmix64 and a zipfian sampler. Same seed, same
//! events, on every machine.

/// splitmix64 (Steele, Lea, Flood 2014): tiny, fast, passes BigCrush, and its finaliser is a
/// bijection on u64 (used by `mix64` to scramble ids without collisions).
#[derive(Clone)]
pub(crate) struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A stream starting at `seed`.
    pub(crate) fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The next 64 random bits.
    #[inline]
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix64(self.state)
    }

    /// Uniform in `0..n` (Lemire's multiply-shift; the bias is below 2^-40 for the sizes here).
    #[inline]
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `[0, 1)` with 53 bits.
    #[inline]
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// A uniformly random permutation of `0..n` (Fisher–Yates).
    pub(crate) fn permutation(&mut self, n: usize) -> Vec<u32> {
        let mut items: Vec<u32> = (0..n as u32).collect();
        for i in (1..n).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
        items
    }
}

/// splitmix64's finaliser: a bijection on u64 with full avalanche.
#[inline]
pub(crate) fn mix64(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Zipf over ranks `0..n`: P(rank k) ∝ 1 / (k + 1)^s. Inverse-CDF by binary search over a
/// precomputed table (n f64s), which is exact and fast enough for event generation (which is not
/// timed).
pub(crate) struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    /// Zipf over `n` ranks with exponent `s`.
    pub(crate) fn new(n: usize, s: f64) -> Self {
        assert!(n > 0);
        let mut cdf = Vec::with_capacity(n);
        let mut sum = 0.0;
        for k in 0..n {
            sum += 1.0 / ((k + 1) as f64).powf(s);
            cdf.push(sum);
        }
        for value in &mut cdf {
            *value /= sum;
        }
        Self { cdf }
    }

    #[inline]
    /// A rank drawn from `rng`.
    pub(crate) fn sample(&self, rng: &mut SplitMix64) -> usize {
        let u = rng.unit();
        self.cdf
            .partition_point(|&c| c <= u)
            .min(self.cdf.len() - 1)
    }

    /// The probability of the hottest rank.
    pub(crate) fn top_probability(&self) -> f64 {
        self.cdf[0]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_in_range() {
        let mut a = SplitMix64::new(42);
        let mut b = SplitMix64::new(42);
        for _ in 0..1000 {
            assert_eq!(a.next_u64(), b.next_u64());
            assert!(a.below(10) < 10);
            b.below(10);
        }
        let mut p = SplitMix64::new(1).permutation(1000);
        p.sort_unstable();
        assert!(p.iter().enumerate().all(|(i, &v)| i as u32 == v));
    }

    #[test]
    fn zipf_is_skewed() {
        let zipf = Zipf::new(10_000, 1.0);
        let mut rng = SplitMix64::new(7);
        let hits = (0..100_000).filter(|_| zipf.sample(&mut rng) == 0).count();
        // P(rank 0) = 1 / H(10000) ≈ 0.102.
        assert!((9_000..11_500).contains(&hits), "{hits}");
        assert!((zipf.top_probability() - 0.102).abs() < 0.002);
    }
}
