//! Helpers of the host-side tests: a small deterministic PRNG and the knobs of
//! the long random runs (`HYP_TEST_SEED`, and an operation count per test), and
//! fakes of the page source and the TLB.

use crate::mm::pgtable::{PageSource, TlbMaintenance};
use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::collections::HashSet;

const K4: usize = 4096;

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
    std::env::var("HYP_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed_2026)
}

/// An operation count from the environment variable `name`, or `default`.
pub fn ops_from_env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

/// Pages from the test process's heap, counted; `limit` pages at most outstanding.
#[derive(Default)]
pub struct HeapSource {
    pub outstanding: HashSet<usize>,
    pub limit: Option<usize>,
}

impl PageSource for HeapSource {
    fn alloc_page(&mut self) -> Option<usize> {
        if self.limit.is_some_and(|l| self.outstanding.len() >= l) {
            return None;
        }
        // SAFETY: Non-zero size.
        let page = unsafe { alloc_zeroed(Layout::from_size_align(K4, K4).unwrap()) } as usize;
        assert!(self.outstanding.insert(page));
        Some(page)
    }

    fn free_page(&mut self, page: usize) {
        assert!(self.outstanding.remove(&page), "freed a page never given out: {page:#x}");
        // SAFETY: Allocated above with this layout.
        unsafe { dealloc(page as *mut u8, Layout::from_size_align(K4, K4).unwrap()) };
    }
}

/// Records maintenance instead of doing it.
#[derive(Default, Debug)]
pub struct FakeTlb {
    pub leaves: Vec<(usize, usize)>,
    pub all: usize,
    pub syncs: usize,
}

impl TlbMaintenance for FakeTlb {
    fn invalidate_leaf(&mut self, address: usize, level: usize) {
        self.leaves.push((address, level));
    }
    fn invalidate_all(&mut self) {
        self.all += 1;
    }
    fn sync(&mut self) {
        self.syncs += 1;
    }
}
