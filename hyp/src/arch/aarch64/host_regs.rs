//! The EL2 controls that hold the host in its place, set once per CPU before the
//! first entry to the host.

use aarch64_cpu::registers::{
    Readable, Writeable, CNTHCTL_EL2, CNTVOFF_EL2, HCR_EL2, ID_AA64ISAR1_EL1, ID_AA64PFR0_EL1, MIDR_EL1, MPIDR_EL1,
    VMPIDR_EL2, VTCR_EL2, VTTBR_EL2,
};
use core::arch::asm;

/// HCR_EL2 for the host:
/// VM (0) stage-2 on; SWIO (1); FB (9) broadcast TLB/cache maintenance;
/// BSU (11:10) = inner shareable; TID3 (18) trap ID register reads, so that
/// the host is not told of SVE, SME and MTE, which stay trapped; TSC (19) trap
/// SMC, so PSCI goes through the hyp; RW (31) EL1 is AArch64. Interrupts
/// (IMO/FMO/AMO) stay with the host.
const HCR_HOST: u64 = 1 | (1 << 1) | (1 << 9) | (1 << 10) | (1 << 18) | (1 << 19) | (1 << 31);
/// HCR_EL2.APK (40) and API (41): do not trap pointer-authentication use.
const HCR_PAUTH: u64 = (1 << 40) | (1 << 41);

/// SCTLR_EL1 the host starts with: MMU off, RES1 bits of ARMv8.0 set (as Linux's
/// INIT_SCTLR_EL1_MMU_OFF), little-endian.
const SCTLR_EL1_MMU_OFF: u64 = (1 << 11) | (1 << 20) | (1 << 22) | (1 << 23) | (1 << 28) | (1 << 29);

/// CPTR_EL2 (nVHE layout): RES1 bits 13:12 and 9:0 set, TZ (8) set so SVE traps
/// (the hyp does not switch SVE state yet), TFP (10) clear: FP/SIMD is the host's.
const CPTR_EL2_HOST: u64 = 0x33ff;

/// Programs this CPU's EL2 controls for running the host behind `stage2_root`.
///
/// # Safety
///
/// `stage2_root` must be the root of a complete host stage-2 for `ipa_bits`, and
/// the hyp's memory must not be mapped in it.
pub unsafe fn configure(stage2_root: usize, ipa_bits: u32, pa_range: u64) {
    VTCR_EL2.set(crate::mm::host_stage2::vtcr(ipa_bits, pa_range));
    // VMID 0 is the host's.
    VTTBR_EL2.set(stage2_root as u64);
    let pauth = ID_AA64ISAR1_EL1.read(ID_AA64ISAR1_EL1::APA) != 0 || ID_AA64ISAR1_EL1.read(ID_AA64ISAR1_EL1::API) != 0;
    HCR_EL2.set(HCR_HOST | if pauth { HCR_PAUTH } else { 0 });
    // The host reads its own IDs.
    VMPIDR_EL2.set(MPIDR_EL1.get());
    // EL1 may use the physical counter and timer; no virtual offset.
    CNTHCTL_EL2.set(0b11);
    CNTVOFF_EL2.set(0);
    // ID_AA64PFR0_EL1.GIC (bits 27:24): GICv3 system-register interface present.
    let gicv3_sysregs = (ID_AA64PFR0_EL1.get() >> 24) & 0xf != 0;
    // SAFETY: These writes configure traps and EL1 reset state only; the hyp's own
    // translation is untouched. ICC_SRE_EL2 exists when ID_AA64PFR0_EL1.GIC says so.
    unsafe {
        asm!(
            "msr vpidr_el2, {midr}",
            "msr cptr_el2, {cptr}",
            "msr hstr_el2, xzr",
            "mrs {tmp}, pmcr_el0",
            "ubfx {tmp}, {tmp}, #11, #5",
            "msr mdcr_el2, {tmp}",
            "msr sctlr_el1, {sctlr}",
            "isb",
            midr = in(reg) MIDR_EL1.get(),
            cptr = in(reg) CPTR_EL2_HOST,
            sctlr = in(reg) SCTLR_EL1_MMU_OFF,
            tmp = out(reg) _,
            options(nostack, preserves_flags),
        );
        if gicv3_sysregs {
            // ICC_SRE_EL2: SRE (0) and Enable (3): EL1 uses the GIC system registers.
            asm!("mrs {t}, icc_sre_el2", "orr {t}, {t}, #1", "orr {t}, {t}, #8", "msr icc_sre_el2, {t}", "isb", t = out(reg) _, options(nostack, preserves_flags));
        }
        asm!("tlbi vmalls12e1", "dsb ish", "isb", options(nostack, preserves_flags));
    }
}
