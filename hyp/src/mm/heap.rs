//! The hyp's heap: a buddy allocator over the memory pool reserved at boot. It
//! backs the page tables (`aarch64-paging` allocates through `alloc`) and the
//! per-CPU stacks.
//!
//! The first allocations happen with the MMU off, when exclusive accesses (and so
//! spin locks) are not reliable on real hardware. Until [`Heap::finish_early_boot`]
//! only the boot CPU runs, and the heap is used without its lock.
//!
//! What the heap writes with the MMU off (its free-list links, and the blocks
//! it hands out) goes straight to memory, past any stale cache line for it:
//! boot must invalidate those lines before the MMU goes on. So that this is a
//! small part of the pool and not all of it (one `DC IVAC` per 64-byte line:
//! over half a million instructions for QEMU's 14 MiB pool), the pool is given
//! in two parts ([`Heap::add_pool`]): the early part serves the MMU-off
//! allocations, and the rest joins once the MMU is on, its links written
//! through the cache. Should the early part run out, the rest joins at once
//! and [`Heap::written_early`] says that all of the pool was written.

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
    /// The pool's two parts: written only by the boot CPU, in the early
    /// phase and at its end.
    pool: UnsafeCell<StagedPool>,
}

/// The pool [`Heap::add_pool`] was given, in its two parts.
#[derive(Clone, Copy)]
struct StagedPool {
    /// `[start, rest)`: given to the heap at once.
    start: usize,
    /// `[rest, end)`: given when the MMU is on, or when the early part runs out.
    rest: usize,
    end: usize,
    /// Whether `[rest, end)` is still held back.
    held: bool,
    /// Whether it joined with the MMU off, the early part having run out.
    joined_early: bool,
}

impl Heap {
    pub const fn new() -> Self {
        Self {
            lock: spin::Mutex::new(()),
            inner: UnsafeCell::new(buddy_system_allocator::Heap::new()),
            early: AtomicBool::new(true),
            pool: UnsafeCell::new(StagedPool { start: 0, rest: 0, end: 0, held: false, joined_early: false }),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut buddy_system_allocator::Heap<ORDERS>) -> R) -> R {
        let _guard = (!self.early.load(Ordering::Acquire)).then(|| self.lock.lock());
        // SAFETY: After the early phase the lock is held; in it, only the boot CPU
        // runs and nothing re-enters the allocator (no interrupts at EL2). Either
        // way this is the only reference to the heap while `f` runs.
        f(unsafe { &mut *self.inner.get() })
    }

    /// Gives the pool `[start, end)` to the heap: `early` bytes from `start`
    /// now, for the allocations made with the MMU off, and the rest at
    /// [`Heap::finish_early_boot`] (or as soon as the early part runs out).
    ///
    /// # Safety
    ///
    /// The range must be unused memory that the hyp owns for good, mapped (or, with
    /// the MMU off, reachable) at these addresses. Call once, in the early phase.
    pub unsafe fn add_pool(&self, start: usize, end: usize, early: usize) {
        let rest = start.saturating_add(early).min(end);
        // SAFETY: The early phase: only the boot CPU runs, and nothing else
        // refers to `pool`.
        unsafe { *self.pool.get() = StagedPool { start, rest, end, held: rest < end, joined_early: false } };
        // SAFETY: The caller hands over exclusive ownership of the range.
        self.with(|heap| unsafe { heap.add_to_heap(start, rest) });
    }

    /// The part of the pool the heap may have written so far: to call with the
    /// MMU still off, for the lines boot must invalidate (the early part, or
    /// the whole pool if the early part ran out).
    pub fn written_early(&self) -> (usize, usize) {
        // SAFETY: Read in the early phase, on the boot CPU alone.
        let pool = unsafe { *self.pool.get() };
        (pool.start, if pool.held { pool.rest } else { pool.end })
    }

    /// Whether the early part ran out and the whole pool joined with the MMU
    /// off (so that boot invalidated all of it), for the boot report.
    pub fn early_part_ran_out(&self) -> bool {
        // SAFETY: `pool` is written only on the boot CPU, in the early phase
        // and at its end; boot asks on the boot CPU before others run.
        unsafe { (*self.pool.get()).joined_early }
    }

    /// Gives the held-back rest of the pool to the heap, if it still is.
    fn join_rest(&self, heap: &mut buddy_system_allocator::Heap<ORDERS>) {
        // SAFETY: Called in the early phase (or at its end) on the boot CPU,
        // the only one running; nothing else refers to `pool`.
        let pool = unsafe { &mut *self.pool.get() };
        if pool.held {
            pool.held = false;
            // SAFETY: `add_pool`'s caller handed over the whole range; this
            // part was never given to the heap.
            unsafe { heap.add_to_heap(pool.rest, pool.end) };
        }
    }

    /// Ends the lock-free early phase: call on the boot CPU once the MMU is on and
    /// before any other CPU runs. The rest of the pool joins the heap now,
    /// through the cache.
    pub fn finish_early_boot(&self) {
        self.with(|heap| self.join_rest(heap));
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
        self.with(|heap| {
            if let Ok(block) = heap.alloc(layout) {
                return block.as_ptr();
            }
            if !self.early.load(Ordering::Acquire) {
                return null_mut();
            }
            // SAFETY: The early phase: the boot CPU alone, inside `with`.
            if !unsafe { (*self.pool.get()).held } {
                return null_mut();
            }
            // The early part ran out: the rest joins now, with the MMU off.
            self.join_rest(heap);
            // SAFETY: As above; `join_rest`'s reference is gone.
            unsafe { (*self.pool.get()).joined_early = true };
            heap.alloc(layout).map_or(null_mut(), |p| p.as_ptr())
        })
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if let Some(ptr) = NonNull::new(ptr) {
            // SAFETY: `GlobalAlloc::dealloc`'s contract: `ptr` came from `alloc`
            // with this layout.
            self.with(|heap| unsafe { heap.dealloc(ptr, layout) });
        }
    }
}
