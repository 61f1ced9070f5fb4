//! The hyp's heap: a buddy allocator over the memory pool reserved at boot. It
//! backs the page tables (`aarch64-paging` allocates through `alloc`) and the
//! per-CPU stacks.
//!
//! The first allocations happen with the MMU off, when exclusive accesses (and so
//! spin locks) are not reliable on real hardware. Until [`Heap::finish_early_boot`]
//! only the boot CPU runs, and the heap is used without its lock.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::ptr::{null_mut, NonNull};
use core::sync::atomic::{AtomicBool, Ordering};

/// Orders of the buddy allocator: blocks up to 2^31 bytes.
const ORDERS: usize = 32;

/// The global heap.
pub struct Heap {
    /// Guards `inner` once the early phase is over.
    lock: spin::Mutex<()>,
    inner: UnsafeCell<buddy_system_allocator::Heap<ORDERS>>,
    /// True while only the boot CPU runs with the MMU off: no locking.
    early: AtomicBool,
}

impl Heap {
    pub const fn new() -> Self {
        Self {
            lock: spin::Mutex::new(()),
            inner: UnsafeCell::new(buddy_system_allocator::Heap::new()),
            early: AtomicBool::new(true),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut buddy_system_allocator::Heap<ORDERS>) -> R) -> R {
        let _guard = (!self.early.load(Ordering::Acquire)).then(|| self.lock.lock());
        // SAFETY: After the early phase the lock is held; in it, only the boot CPU
        // runs and nothing re-enters the allocator (no interrupts at EL2). Either
        // way this is the only reference to the heap while `f` runs.
        f(unsafe { &mut *self.inner.get() })
    }

    /// Gives `[start, end)` to the heap.
    ///
    /// # Safety
    ///
    /// The range must be unused memory that the hyp owns for good, mapped (or, with
    /// the MMU off, reachable) at these addresses.
    pub unsafe fn add_memory(&self, start: usize, end: usize) {
        // SAFETY: The caller hands over exclusive ownership of the range.
        self.with(|heap| unsafe { heap.add_to_heap(start, end) });
    }

    /// Ends the lock-free early phase: call on the boot CPU once the MMU is on and
    /// before any other CPU runs.
    pub fn finish_early_boot(&self) {
        self.early.store(false, Ordering::Release);
    }

    /// Bytes handed out and bytes available, for the boot report.
    pub fn usage(&self) -> (usize, usize) {
        self.with(|heap| (heap.stats_alloc_actual(), heap.stats_total_bytes()))
    }
}

impl Default for Heap {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: Access to `inner` is serialised as `with` explains.
unsafe impl Sync for Heap {}

// SAFETY: `alloc` returns blocks of at least `layout.size()` bytes aligned to
// `layout.align()`, owned by nobody else until `dealloc`, which only takes blocks
// `alloc` returned, as the buddy allocator requires.
unsafe impl GlobalAlloc for Heap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.with(|heap| heap.alloc(layout).map_or(null_mut(), |p| p.as_ptr()))
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if let Some(ptr) = NonNull::new(ptr) {
            // SAFETY: `GlobalAlloc::dealloc`'s contract: `ptr` came from `alloc`
            // with this layout.
            self.with(|heap| unsafe { heap.dealloc(ptr, layout) });
        }
    }
}
