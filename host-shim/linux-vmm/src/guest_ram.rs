//! A guest's RAM: an anonymous mapping of this process, loaded before the VM
//! gets it and looked at again after the VM is gone, to see that every page
//! came back to the host.

use linux_vmm::page_pins::{self, PinCounts};

pub const PAGE: usize = 4096;

/// The kernel's page pin counts now, exact: each CPU's pending deltas are
/// folded in first (`vm/stat_refresh`, root only; without it the counts may
/// lag by a few pages a CPU).
pub fn pin_counts() -> Option<PinCounts> {
    let _ = std::fs::write("/proc/sys/vm/stat_refresh", "1");
    page_pins::parse(&std::fs::read_to_string("/proc/vmstat").ok()?)
}

/// `len` bytes of fresh private anonymous memory, page aligned.
pub fn anonymous_memory(len: usize) -> Option<*mut u8> {
    fresh_anonymous(len, libc::MAP_PRIVATE)
}

/// `len` bytes of fresh shared anonymous memory, page aligned (what a
/// protected VM must refuse).
pub fn shared_anonymous_memory(len: usize) -> Option<*mut u8> {
    fresh_anonymous(len, libc::MAP_SHARED)
}

/// A fresh anonymous mapping, readable and writable, `sharing` (MAP_PRIVATE
/// or MAP_SHARED).
fn fresh_anonymous(len: usize, sharing: libc::c_int) -> Option<*mut u8> {
    // SAFETY: A fresh anonymous mapping; nothing else refers to it.
    let address = unsafe {
        libc::mmap(core::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, sharing | libc::MAP_ANONYMOUS, -1, 0)
    };
    (address != libc::MAP_FAILED).then_some(address.cast())
}

/// The guest's RAM at guest-physical `base_ipa`. Never unmapped: the process
/// ends after its one guest.
pub struct GuestRam {
    base: *mut u8,
    size: usize,
    base_ipa: u64,
    /// The kernel's page pin counts before any VM had the RAM.
    pins_before: Option<PinCounts>,
}

impl GuestRam {
    pub fn new(base_ipa: u64, size: usize) -> Result<GuestRam, String> {
        let base = anonymous_memory(size)
            .ok_or_else(|| format!("no {} MiB for the guest's RAM: give less with --memory", size >> 20))?;
        Ok(GuestRam { base, size, base_ipa, pins_before: pin_counts() })
    }

    /// Where the mapping is in this process (for `KVM_SET_USER_MEMORY_REGION`).
    pub fn host_address(&self) -> u64 {
        self.base as u64
    }

    pub fn size(&self) -> usize {
        self.size
    }

    /// The bytes at guest-physical `ipa`, `len` long, for loading (before the
    /// VM runs: a protected VM's pages are not the host's after).
    pub fn slice(&mut self, ipa: u64, len: usize) -> Result<&mut [u8], String> {
        let offset = ipa.checked_sub(self.base_ipa).map(|o| o as usize).filter(|o| o + len <= self.size);
        let offset = offset.ok_or("outside the guest's RAM")?;
        // SAFETY: In the mapping (checked above), which `&mut self` makes exclusive.
        Ok(unsafe { core::slice::from_raw_parts_mut(self.base.add(offset), len) })
    }

    /// After the VM is gone (every KVM fd of it closed): whether every page is
    /// the host's again. Every pin taken since this RAM was made must be
    /// dropped (`page_pins`: the driver unpins a page when the hyp gives it
    /// back); each page must be readable (the hyp refuses the host a page it
    /// has not given back: SIGBUS); a protected VM's pages must also read as
    /// zeros (the hyp scrubs each page it reclaims from one). What it found,
    /// or what is not back.
    pub fn check_returned(&self, protected: bool) -> Result<String, String> {
        let pages = self.size / PAGE;
        let pins = self.pins_before.zip(pin_counts()).ok_or("/proc/vmstat has no page pin counts")?;
        let pins = page_pins::judge(pages as u64, pins.0, pins.1)?;
        // SAFETY: The mapping is this process's, page aligned, `pages` long.
        if let Some(page) = unsafe { crate::abort_guard::first_refused(self.base, PAGE, pages) } {
            return Err(format!("the page at IPA {:#x} is refused to the host", self.base_ipa + (page * PAGE) as u64));
        }
        if !protected {
            return Ok(format!("{pages} pages readable again; {pins}"));
        }
        // SAFETY: Every page was just read without a fault: the whole mapping
        // is readable, and no VM uses it any more.
        let bytes = unsafe { core::slice::from_raw_parts(self.base, self.size) };
        match bytes.chunks_exact(PAGE).position(|page| page.iter().any(|&byte| byte != 0)) {
            Some(page) => {
                Err(format!("the page at IPA {:#x} came back unscrubbed", self.base_ipa + (page * PAGE) as u64))
            }
            None => Ok(format!("{pages} pages readable again, every one zeroed; {pins}")),
        }
    }
}
