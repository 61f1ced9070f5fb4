//! The EL2 controls that hold the host in its place, set once per CPU before the
//! first entry to the host.

use crate::arch::trap_controls::{trap_controls, CpuIds, TrapControls};
use aarch64_cpu::registers::{
    Readable, Writeable, CNTHCTL_EL2, CNTVOFF_EL2, HCR_EL2, ID_AA64DFR0_EL1, ID_AA64ISAR1_EL1, ID_AA64MMFR1_EL1,
    ID_AA64PFR0_EL1, ID_AA64PFR1_EL1, MIDR_EL1, MPIDR_EL1, VMPIDR_EL2, VTCR_EL2, VTTBR_EL2,
};
use core::arch::asm;
use core::sync::atomic::{AtomicU64, Ordering};

/// The trap controls of this machine's CPUs (decided by the first CPU that
/// configures itself; every CPU of a machine has the same features).
static CONTROLS: spin::Once<TrapControls> = spin::Once::new();

/// What the EL2 controls withhold beyond the base traps (see
/// [`crate::arch::trap_controls`]); nothing before the first CPU is configured.
#[inline]
pub fn controls() -> &'static TrapControls {
    CONTROLS.get().unwrap_or(&TrapControls::NONE)
}

/// This CPU's ID registers that [`trap_controls`] needs.
fn cpu_ids() -> CpuIds {
    CpuIds {
        pfr0: ID_AA64PFR0_EL1.get(),
        pfr1: ID_AA64PFR1_EL1.get(),
        dfr0: ID_AA64DFR0_EL1.get(),
        mmfr1: ID_AA64MMFR1_EL1.get(),
    }
}

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

/// Programs this CPU's EL2 controls for running the host behind `stage2_root`,
/// and records them in its `PerCpu::host_el2` (the world switch puts them
/// back from there).
///
/// # Safety
///
/// `stage2_root` must be the root of a complete host stage-2 of the shape `vtcr`
/// (VTCR_EL2) describes, and
/// the hyp's memory must not be mapped in it.
pub unsafe fn configure(stage2_root: usize, vtcr: u64) {
    let recorded = &super::percpu::this_cpu().host_el2;
    let record = |field: &AtomicU64, value: u64| {
        field.store(value, Ordering::Relaxed);
        value
    };
    VTCR_EL2.set(vtcr);
    // VMID 0 is the host's.
    VTTBR_EL2.set(record(&recorded.vttbr, stage2_root as u64));
    let pauth = ID_AA64ISAR1_EL1.read(ID_AA64ISAR1_EL1::APA) != 0 || ID_AA64ISAR1_EL1.read(ID_AA64ISAR1_EL1::API) != 0;
    HCR_EL2.set(record(&recorded.hcr, HCR_HOST | if pauth { HCR_PAUTH } else { 0 }));
    // The host reads its own IDs.
    VMPIDR_EL2.set(record(&recorded.vmpidr, MPIDR_EL1.get()));
    // EL1 may use the physical counter and timer; no virtual offset.
    CNTHCTL_EL2.set(record(&recorded.cnthctl, 0b11));
    CNTVOFF_EL2.set(0);
    // ID_AA64PFR0_EL1.GIC (bits 27:24): GICv3 system-register interface present.
    let gicv3_sysregs = (ID_AA64PFR0_EL1.get() >> 24) & 0xf != 0;
    let controls = *CONTROLS.call_once(|| trap_controls(cpu_ids()));
    // MDCR_EL2.HPMN = PMCR_EL0.N: every event counter is the host's.
    let hpmn = if controls.pmu {
        let pmcr: u64;
        // SAFETY: Reading PMCR_EL0 has no side effect; the PMU exists.
        unsafe { asm!("mrs {}, pmcr_el0", out(reg) pmcr, options(nomem, nostack, preserves_flags)) };
        (pmcr >> 11) & 0x1f
    } else {
        0
    };
    let host_mdcr = hpmn | controls.mdcr_host;
    let guest = super::guest_controls::guest_base_controls(host_mdcr, CPTR_EL2_HOST, &controls);
    record(&recorded.guest_hcr, guest.hcr);
    record(&recorded.guest_mdcr, guest.mdcr);
    record(&recorded.guest_cptr, guest.cptr);
    // SAFETY: These writes configure traps and EL1 reset state only; the hyp's own
    // translation is untouched. ICC_SRE_EL2 exists when ID_AA64PFR0_EL1.GIC says so.
    unsafe {
        asm!(
            "msr vpidr_el2, {midr}",
            "msr cptr_el2, {cptr}",
            "msr hstr_el2, xzr",
            "msr mdcr_el2, {mdcr}",
            "msr sctlr_el1, {sctlr}",
            "isb",
            midr = in(reg) MIDR_EL1.get(),
            cptr = in(reg) record(&recorded.cptr, CPTR_EL2_HOST),
            mdcr = in(reg) record(&recorded.mdcr, host_mdcr),
            sctlr = in(reg) SCTLR_EL1_MMU_OFF,
            options(nostack, preserves_flags),
        );
        disable_trace_and_profiling(&controls);
        if gicv3_sysregs {
            // ICC_SRE_EL2: SRE (0) and Enable (3): EL1 uses the GIC system registers.
            asm!("mrs {t}, icc_sre_el2", "orr {t}, {t}, #1", "orr {t}, {t}, #8", "msr icc_sre_el2, {t}", "isb", t = out(reg) _, options(nostack, preserves_flags));
        }
        asm!("tlbi vmalls12e1", "dsb ish", "isb", options(nostack, preserves_flags));
    }
}

/// Keeps the trace unit and statistical profiling off where no one may use
/// them (their reset values are UNKNOWN): trace prohibited at EL2
/// (TRFCR_EL2 = 0: E2TRE, E0HTRE clear); the profiling buffer (EL2's, E2PB
/// 0b00) disabled and no sampling at EL2 or EL1 (PMBLIMITR_EL1, PMSCR_EL2,
/// PMSCR_EL1 = 0; the host's and guests' PMS*/PMB* accesses trap); the trace
/// buffer (EL2's, E2TB 0b00) disabled (TRBLIMITR_EL1 = 0).
///
/// # Safety
///
/// `controls` must describe this CPU (each register exists with its feature).
unsafe fn disable_trace_and_profiling(controls: &TrapControls) {
    // SAFETY: The caller guarantees each feature; clearing these registers
    // only stops trace and sampling, which nothing of the hyp's uses.
    unsafe {
        if controls.trace_filter {
            // TRFCR_EL2.
            asm!("msr s3_4_c1_c2_1, xzr", options(nomem, nostack, preserves_flags));
        }
        if controls.spe {
            // PMBLIMITR_EL1, PMSCR_EL2, PMSCR_EL1.
            asm!(
                "msr s3_0_c9_c10_0, xzr",
                "msr s3_4_c9_c9_0, xzr",
                "msr s3_0_c9_c9_0, xzr",
                options(nomem, nostack, preserves_flags)
            );
        }
        if controls.trace_buffer {
            // TRBLIMITR_EL1.
            asm!("msr s3_0_c9_c11_0, xzr", options(nomem, nostack, preserves_flags));
        }
    }
}
