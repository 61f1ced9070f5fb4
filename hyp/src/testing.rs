//! Helpers of the host-side tests: the deterministic PRNG and the knobs of
//! the long random runs (`HYP_TEST_SEED`, and an operation count per test), and
//! fakes of the page source and the TLB.

use crate::arch::tlb::TlbMaintenance;
use crate::mm::pgtable::PageSource;
use std::alloc::{alloc_zeroed, dealloc, GlobalAlloc, Layout};
use std::collections::HashSet;

const K4: usize = 4096;

/// The PRNG of the random runs (shared with the host shim).
pub use testkit::rng::Rng;

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

/// The test binary's global allocator: the system's, counting per thread the
/// bytes it holds for that thread, so that a test can see whether code under
/// test (whose allocations are the hyp's pool on the target) grows the heap.
/// Only allocations and frees of the same thread are counted consistently; the
/// tests that read the count allocate and free on their own thread.
struct CountingAllocator;

thread_local! {
    static LIVE_BYTES: std::cell::Cell<isize> = const { std::cell::Cell::new(0) };
}

fn count_bytes(delta: isize) {
    // A thread being torn down has no counter any more: nothing to count.
    let _ = LIVE_BYTES.try_with(|live| live.set(live.get() + delta));
}

// SAFETY: Every call goes to the system allocator with the caller's arguments;
// the counting touches a plain thread-local cell and never allocates.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: The caller's contract is the system allocator's.
        let pointer = unsafe { std::alloc::System.alloc(layout) };
        if !pointer.is_null() {
            count_bytes(layout.size() as isize);
        }
        pointer
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: As above.
        let pointer = unsafe { std::alloc::System.alloc_zeroed(layout) };
        if !pointer.is_null() {
            count_bytes(layout.size() as isize);
        }
        pointer
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        // SAFETY: As above.
        unsafe { std::alloc::System.dealloc(pointer, layout) };
        count_bytes(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: As above.
        let moved = unsafe { std::alloc::System.realloc(pointer, layout, new_size) };
        if !moved.is_null() {
            count_bytes(new_size as isize - layout.size() as isize);
        }
        moved
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Bytes the global allocator holds for this thread (allocated minus freed
/// since the thread started).
pub fn live_heap_bytes() -> isize {
    LIVE_BYTES.with(std::cell::Cell::get)
}
