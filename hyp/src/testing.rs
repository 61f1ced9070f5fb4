//! Helpers of the host-side tests: a small deterministic PRNG and the knobs of
//! the long random runs (`HYP_TEST_SEED`, and an operation count per test).

/// xorshift64*: deterministic, fast, good enough to drive random operations.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The seed of the random runs: `HYP_TEST_SEED`, or a fixed default.
pub fn seed_from_env() -> u64 {
    std::env::var("HYP_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_2026)
}

/// An operation count from the environment variable `name`, or `default`.
pub fn ops_from_env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}
