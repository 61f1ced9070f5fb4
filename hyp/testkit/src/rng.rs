//! xorshift64*: deterministic, fast, and good enough to drive random
//! operations. A seed replays its stream exactly, on any machine, which is
//! what a failure report needs.

/// The state of one stream (never zero: zero is xorshift's fixed point).
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A stream from `seed` (0 is taken as 1).
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    /// The next number. Not `Iterator::next`: the stream never ends, and
    /// every caller wants the number, not an `Option` of it.
    #[allow(clippy::should_implement_trait)]
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

    /// One of `values` (not empty).
    pub fn pick<T: Copy>(&mut self, values: &[T]) -> T {
        values[self.below(values.len() as u64) as usize]
    }

    /// The current state, without advancing: as random as the last output,
    /// and a value no table of interesting ones would list.
    pub fn state(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::Rng;

    #[test]
    fn a_seed_replays_its_stream() {
        let (mut a, mut b) = (Rng::new(2026), Rng::new(2026));
        for _ in 0..1000 {
            assert_eq!(a.next(), b.next());
        }
    }

    #[test]
    fn the_stream_is_xorshift64_star() {
        // Seed 1's first outputs, worked out apart from this code: the
        // seeds of recorded failures must keep replaying.
        let mut rng = Rng::new(1);
        let first = [rng.next(), rng.next(), rng.next()];
        assert_eq!(first, [0x47e4_ce4b_896c_dd1d, 0xabcf_a6a8_e079_651d, 0xb9d1_0d8f_eb73_1f57]);
    }

    #[test]
    fn zero_seed_is_not_stuck() {
        let mut rng = Rng::new(0);
        assert_ne!(rng.next(), 0);
        assert_eq!(Rng::new(0).state(), Rng::new(1).state());
    }

    #[test]
    fn below_and_pick_stay_in_range() {
        let mut rng = Rng::new(7);
        for n in 1..100 {
            assert!(rng.below(n) < n);
        }
        let values = [3u8, 5, 9];
        for _ in 0..100 {
            assert!(values.contains(&rng.pick(&values)));
        }
    }
}
