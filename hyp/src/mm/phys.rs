//! The hyp's own implementations of the memory environment: table pages from its
//! heap, and physical memory through its identity map.

use crate::mm::pgtable::{PageSource, PAGE_SIZE};
use crate::mm::phys_memory::PhysMemory;
use core::alloc::Layout;

/// Table pages from the hyp's heap (its pool).
pub struct HeapPages;

const PAGE_LAYOUT: Layout = match Layout::from_size_align(PAGE_SIZE, PAGE_SIZE) {
    Ok(layout) => layout,
    Err(_) => panic!("4 KiB page layout"),
};

impl PageSource for HeapPages {
    fn alloc_page(&mut self) -> Option<usize> {
        // Not zeroed here: page tables zero each page as they take it.
        // SAFETY: The layout has a non-zero size.
        let page = unsafe { alloc::alloc::alloc(PAGE_LAYOUT) };
        (!page.is_null()).then_some(page as usize)
    }

    fn free_page(&mut self, page: usize) {
        // SAFETY: `page` came from `alloc_page` with the same layout.
        unsafe { alloc::alloc::dealloc(page as *mut u8, PAGE_LAYOUT) };
    }
}

/// Physical memory through the hyp's identity-mapped stage-1. Callers only pass
/// pages the hyp has mapped (donated or lent to it), as the records say.
pub struct IdentityMemory;

impl PhysMemory for IdentityMemory {
    fn zero_page(&mut self, page: u64) {
        self.scrub(page, 1);
    }

    fn scrub(&mut self, start: u64, pages: u64) {
        // The zeroes must reach memory before the pages go back: the host may
        // read them with its caches off (the host's stage-2 has no FWB).
        // SAFETY: The pages are mapped read-write at these addresses in the
        // hyp's stage-1 and owned by (or lent to) the hyp, so nothing else
        // uses them as Rust memory.
        unsafe { crate::arch::aarch64::cache::zero_and_clean(start as usize, pages as usize * PAGE_SIZE) };
    }

    fn read_u64(&mut self, address: u64) -> u64 {
        // The host may have written it with its caches off: drop any stale line.
        crate::arch::aarch64::cache::clean_invalidate(address as usize, 8);
        // SAFETY: As above; volatile because the host may change the page concurrently.
        unsafe { core::ptr::read_volatile(address as *const u64) }
    }

    fn write_u64(&mut self, address: u64, value: u64) {
        // SAFETY: As above.
        unsafe { core::ptr::write_volatile(address as *mut u64, value) };
        crate::arch::aarch64::cache::clean_invalidate(address as usize, 8);
    }
}
