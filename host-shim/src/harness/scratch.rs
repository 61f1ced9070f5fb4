//! The shim's scratch memory: page-aligned host RAM in its bss (the shim
//! runs with its MMU off, so these addresses are physical) that the checks
//! lend, donate and give to VMs.

use core::cell::UnsafeCell;

pub const PAGE: u64 = 4096;
/// Pages the checks lend and donate and give VMs, by index ([`page`]).
const CHECK_PAGES: usize = 12;
/// Pages the VM stress run gives its 32 VMs, after those.
const STRESS_PAGES: usize = 32;
/// Pages donated to the hyp for VM stage-2 tables, after those.
pub const MEMCACHE_PAGES: usize = 192;
const SCRATCH_PAGES: usize = CHECK_PAGES + STRESS_PAGES + MEMCACHE_PAGES;

/// `N` bytes of page-aligned memory in the shim's bss.
#[repr(C, align(4096))]
pub struct PageAligned<const N: usize>(UnsafeCell<[u8; N]>);

// SAFETY: The shim hands each page to one user at a time (a CPU, the hyp, or a
// guest while it is lent or donated, which is what the checks are about);
// nothing here gives out references to the contents, only addresses.
unsafe impl<const N: usize> Sync for PageAligned<N> {}

impl<const N: usize> PageAligned<N> {
    pub const fn new() -> Self {
        Self(UnsafeCell::new([0; N]))
    }

    /// The physical address of its first byte.
    pub fn base(&self) -> u64 {
        self.0.get() as u64
    }
}

static SCRATCH: PageAligned<{ SCRATCH_PAGES * PAGE as usize }> = PageAligned::new();

/// Scratch page `index` (0..12) of the checks.
pub fn page(index: usize) -> u64 {
    SCRATCH.base() + index as u64 * PAGE
}

/// The first page donated for the hyp's memcache.
pub fn memcache_pages() -> u64 {
    page(CHECK_PAGES + STRESS_PAGES)
}

/// The page the stress run gives its VM `index`.
pub fn stress_page(index: usize) -> u64 {
    page(CHECK_PAGES + index)
}

pub fn read(address: u64) -> u64 {
    // SAFETY: `address` is in SCRATCH and 8-byte aligned; volatile because the hyp
    // may write it.
    unsafe { core::ptr::read_volatile(address as *const u64) }
}

pub fn write(address: u64, value: u64) {
    // SAFETY: As for `read`.
    unsafe { core::ptr::write_volatile(address as *mut u64, value) }
}
