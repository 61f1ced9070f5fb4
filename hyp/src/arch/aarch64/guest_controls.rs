//! The base of a guest's EL2 controls: the traps every guest runs with,
//! derived once per CPU from the host's controls (`host_regs::configure`
//! records them in `PerCpu::host_el2`; the world switch adds what depends on
//! the run: the virtual IRQ line, the debug registers, protection, the
//! FP/SIMD trap).

use crate::arch::trap_controls::TrapControls;

/// HCR_EL2 while a guest runs (with the bits of [`TrapControls::hcr_guest`]:
/// TID1, and TERR, TEA, TLOR where the CPU has them): VM (0) stage-2; SWIO (1); FMO, IMO, AMO (3..5)
/// physical interrupts and SErrors to EL2, so the host gets its CPU back; FB (9)
/// and BSU = inner shareable (10); TWI, TWE (13, 14) trap WFI/WFE; TID3 (18)
/// the ID registers, which guests read sanitised (`vm::sysreg`); TIDCP (20)
/// implementation-defined registers; TSC (19) trap SMC; TACR (21) ACTLR; TSW (22)
/// set/way cache maintenance; TPCP (23), TPU (24) cache maintenance to PoC/PoU
/// by VA... left to the guest (not set: they are safe with stage-2 in place);
/// RW (31) EL1 is AArch64.
const HCR_GUEST: u64 = 1
    | 1 << 1
    | 1 << 3
    | 1 << 4
    | 1 << 5
    | 1 << 9
    | 1 << 10
    | 1 << 13
    | 1 << 14
    | 1 << 18
    | 1 << 19
    | 1 << 20
    | 1 << 21
    | 1 << 22
    | 1 << 31;

/// MDCR_EL2 bits for guests: TPMCR (5) and TPM (6) trap the PMU; TDA (9),
/// TDOSA (10) and TDRA (11) trap the debug registers (TDA only until the
/// guest's debug registers are loaded: `debug_switch`); TDE (8) stays clear,
/// so that the guest's debug exceptions go to its own EL1. HPMN comes from PMCR_EL0.N;
/// [`TrapControls`] adds the trace-filter and profiling traps, and for a
/// protected guest HPMD/HCCD.
const MDCR_GUEST_TRAPS: u64 = 1 << 5 | 1 << 6 | 1 << 9 | 1 << 10 | 1 << 11;

/// CPTR_EL2.TTA: a guest's accesses to the trace unit's system registers trap
/// (and are UNDEFINED: `vm::sysreg`), so that it can neither program the
/// host's trace unit nor read it.
const CPTR_TTA: u64 = 1 << 20;

/// CPTR_EL2.TCPAC: a guest's CPACR_EL1 accesses trap, so that the hyp keeps
/// the SVE and SME enables set underneath and hidden (`vm::sysreg`).
const CPTR_TCPAC: u64 = 1 << 31;
/// CPTR_EL2.TAM: the activity monitors trap (their counters count the host's
/// and other VMs' cycles and instructions too; guests are told there is no
/// AMU, and an access is UNDEFINED). Set whether or not the CPU has them, as
/// KVM's nVHE switch does.
const CPTR_TAM: u64 = 1 << 30;

/// A guest's EL2 controls before what depends on its run (the virtual IRQ
/// line, its debug registers, protection, the FP/SIMD trap).
pub struct GuestBaseControls {
    pub hcr: u64,
    pub mdcr: u64,
    pub cptr: u64,
}

/// The base of a guest's EL2 controls on a CPU whose host runs with MDCR_EL2
/// `host_mdcr` (its HPMN is kept) and CPTR_EL2 `host_cptr`: computed once per
/// CPU.
pub fn guest_base_controls(host_mdcr: u64, host_cptr: u64, controls: &TrapControls) -> GuestBaseControls {
    GuestBaseControls {
        hcr: HCR_GUEST | controls.hcr_guest,
        mdcr: (host_mdcr & 0x1f) | MDCR_GUEST_TRAPS | controls.mdcr_guest,
        cptr: host_cptr | CPTR_TTA | CPTR_TCPAC | CPTR_TAM,
    }
}
