//! Switching the EL2 stage-1 MMU on, and the EL2 system-register values it needs.

use aarch64_cpu::registers::{Readable, ID_AA64MMFR0_EL1};
use core::arch::asm;

/// MAIR_EL2: index 0 Device-nGnRE (0x04), index 1 normal memory, inner and outer
/// write-back read/write-allocate (0xff). `mm::stage1` uses these indices.
pub const MAIR_EL2_VALUE: u64 = 0x04 | (0xff << 8);

/// TCR_EL2 for a 48-bit VA, 4 KiB granule, inner-shareable write-back walks; the
/// physical address size (PS, bits 18:16) is filled in from ID_AA64MMFR0_EL1.
/// RES1 bits 31 and 23; T0SZ = 16; IRGN0 = ORGN0 = 1 (WBWA); SH0 = 3 (inner).
const TCR_EL2_BASE: u64 = (1 << 31) | (1 << 23) | 16 | (1 << 8) | (1 << 10) | (3 << 12);

/// SCTLR_EL2 with the MMU, D- and I-caches, SP alignment check and WXN on.
/// RES1 bits (nVHE layout): 4, 5, 11, 16, 18, 22, 23, 28, 29.
const SCTLR_EL2_RES1: u64 =
    (1 << 4) | (1 << 5) | (1 << 11) | (1 << 16) | (1 << 18) | (1 << 22) | (1 << 23) | (1 << 28) | (1 << 29);
const SCTLR_EL2_MMU_ON: u64 = SCTLR_EL2_RES1 | 1 /* M */ | (1 << 2) /* C */ | (1 << 3) /* SA */ | (1 << 12) /* I */ | (1 << 19) /* WXN */;

/// The CPU's physical address range as the 3-bit PARange encoding.
pub fn pa_range_encoding() -> u64 {
    ID_AA64MMFR0_EL1.read(ID_AA64MMFR0_EL1::PARange).min(0b110)
}

/// Turns the EL2 stage-1 MMU on with `root` (an identity map of everything the
/// hyp touches) as TTBR0_EL2.
///
/// # Safety
///
/// `root` must identity-map the code executing this, the current stack and all
/// memory the hyp uses afterwards, with the attributes of [`MAIR_EL2_VALUE`].
/// Memory written with the MMU off must have been invalidated from the D-cache.
pub unsafe fn enable(root: usize) {
    let tcr = TCR_EL2_BASE | (pa_range_encoding() << 16);
    // SAFETY: The caller guarantees the tables map everything in use; the barriers
    // order the table writes and the register writes before the switch.
    unsafe {
        asm!(
            "msr mair_el2, {mair}",
            "msr tcr_el2, {tcr}",
            "msr ttbr0_el2, {ttbr}",
            "dsb ish",
            "tlbi alle2",
            "dsb ish",
            "isb",
            "ic iallu",
            "dsb ish",
            "msr sctlr_el2, {sctlr}",
            "isb",
            mair = in(reg) MAIR_EL2_VALUE,
            tcr = in(reg) tcr,
            ttbr = in(reg) root,
            sctlr = in(reg) SCTLR_EL2_MMU_ON,
            options(nostack, preserves_flags),
        );
    }
}

/// This CPU's live EL2 MMU registers, for a secondary CPU to load at entry.
pub fn current_setup() -> crate::arch::percpu::BootMmu {
    let (mair, tcr, ttbr0, sctlr): (u64, u64, u64, u64);
    // SAFETY: Reading EL2 system registers at EL2 has no side effect.
    unsafe {
        asm!(
            "mrs {0}, mair_el2",
            "mrs {1}, tcr_el2",
            "mrs {2}, ttbr0_el2",
            "mrs {3}, sctlr_el2",
            out(reg) mair,
            out(reg) tcr,
            out(reg) ttbr0,
            out(reg) sctlr,
            options(nomem, nostack, preserves_flags),
        );
    }
    crate::arch::percpu::BootMmu { mair, tcr, ttbr0, sctlr }
}
