//! TLB maintenance for the hyp's two kinds of tables, broadcast to the inner
//! shareable domain so that every CPU sees it.

use crate::arch::tlb::TlbMaintenance;
use core::arch::asm;

/// The host's stage-2 (VMID 0). Valid while VTTBR_EL2 holds the host's VMID,
/// which is the case whenever the hyp runs on behalf of the host.
#[derive(Default)]
pub struct HostStage2Tlb {
    /// Something was invalidated since the last sync.
    pending: bool,
}

impl TlbMaintenance for HostStage2Tlb {
    fn invalidate_leaf(&mut self, address: usize, _level: usize) {
        // SAFETY: TLB invalidation has no memory-safety effect.
        unsafe {
            asm!("dsb ishst", "tlbi ipas2e1is, {}", in(reg) address >> 12, options(nostack, preserves_flags));
        }
        self.pending = true;
    }

    fn invalidate_all(&mut self) {
        // SAFETY: TLB invalidation has no memory-safety effect.
        unsafe { asm!("dsb ishst", "tlbi vmalls12e1is", options(nostack, preserves_flags)) };
        self.pending = true;
    }

    fn sync(&mut self) {
        if self.pending {
            // Stage-2 invalidation by IPA leaves combined stage-1+2 entries: the
            // architecture requires a stage-1 invalidation of the VMID after it.
            // SAFETY: TLB maintenance and barriers have no memory-safety effect.
            unsafe { asm!("dsb ish", "tlbi vmalle1is", "dsb ish", "isb", options(nostack, preserves_flags)) };
            self.pending = false;
        } else {
            // New entries only: make them visible to the walkers.
            // SAFETY: A barrier has no memory-safety effect.
            unsafe { asm!("dsb ishst", "isb", options(nostack, preserves_flags)) };
        }
    }
}

/// The hyp's own EL2 stage-1.
#[derive(Default)]
pub struct El2Tlb;

impl TlbMaintenance for El2Tlb {
    fn invalidate_leaf(&mut self, address: usize, _level: usize) {
        // SAFETY: TLB invalidation has no memory-safety effect.
        unsafe { asm!("dsb ishst", "tlbi vae2is, {}", in(reg) address >> 12, options(nostack, preserves_flags)) };
    }

    fn invalidate_all(&mut self) {
        // SAFETY: TLB invalidation has no memory-safety effect.
        unsafe { asm!("dsb ishst", "tlbi alle2is", options(nostack, preserves_flags)) };
    }

    fn sync(&mut self) {
        // SAFETY: Barriers have no memory-safety effect.
        unsafe { asm!("dsb ish", "isb", options(nostack, preserves_flags)) };
    }
}

/// A guest's stage-2, by its VMID: VTTBR_EL2 is switched to the guest's around
/// each invalidation (the TLBI instructions act on the current VMID), then back.
pub struct GuestStage2Tlb {
    /// The guest's VTTBR_EL2 value (root | VMID << 48).
    pub vttbr: u64,
}

impl GuestStage2Tlb {
    fn with_guest_vmid(&self, f: impl FnOnce()) {
        let host: u64;
        // SAFETY: Switching VTTBR_EL2 at EL2 affects only EL1/EL0 translation,
        // which does not run until it is restored below.
        unsafe {
            asm!("mrs {h}, vttbr_el2", "msr vttbr_el2, {g}", "isb", h = out(reg) host, g = in(reg) self.vttbr, options(nostack, preserves_flags));
        }
        f();
        // SAFETY: As above: the host's value goes back.
        unsafe { asm!("msr vttbr_el2, {}", "isb", in(reg) host, options(nostack, preserves_flags)) };
    }
}

impl TlbMaintenance for GuestStage2Tlb {
    fn invalidate_leaf(&mut self, address: usize, _level: usize) {
        self.with_guest_vmid(|| {
            // SAFETY: TLB maintenance has no memory-safety effect.
            unsafe {
                asm!("dsb ishst", "tlbi ipas2e1is, {}", "dsb ish", "tlbi vmalle1is", "dsb ish", in(reg) address >> 12, options(nostack, preserves_flags));
            }
        });
    }

    fn invalidate_all(&mut self) {
        self.with_guest_vmid(|| {
            // SAFETY: TLB maintenance has no memory-safety effect.
            unsafe { asm!("dsb ishst", "tlbi vmalls12e1is", "dsb ish", options(nostack, preserves_flags)) };
        });
    }

    fn sync(&mut self) {
        // SAFETY: Barriers have no memory-safety effect.
        unsafe { asm!("dsb ish", "isb", options(nostack, preserves_flags)) };
    }
}
