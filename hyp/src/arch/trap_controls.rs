//! What the EL2 controls keep from the host and from guests beyond the base
//! traps, decided once from the CPU's ID registers: the trace unit, its filter
//! and the trace buffer; statistical profiling; the PMU around protected runs;
//! the RAS error records; LORegions; the implementation ID registers; SME's
//! `TPIDR2_EL0`. A control bit of a feature the CPU does not have is RES0, so
//! each is set only with its feature. Portable: `arch::aarch64::host_regs`
//! reads the ID registers and applies the result, the world switch uses it.

#![forbid(unsafe_code)]

use crate::arch::debug::DebugCounts;

/// The ID register values the decisions depend on.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct CpuIds {
    pub pfr0: u64,
    pub pfr1: u64,
    pub dfr0: u64,
    pub mmfr1: u64,
}

/// HCR_EL2.TID1 (16): AIDR_EL1 and REVIDR_EL1 (and SMIDR_EL1) trap.
pub const HCR_TID1: u64 = 1 << 16;
/// HCR_EL2.TLOR (35): the LORegion registers trap (FEAT_LOR).
pub const HCR_TLOR: u64 = 1 << 35;
/// HCR_EL2.TERR (36): the RAS error-record registers trap (FEAT_RAS).
pub const HCR_TERR: u64 = 1 << 36;
/// HCR_EL2.TEA (37): synchronous external aborts go to EL2 (FEAT_RAS).
pub const HCR_TEA: u64 = 1 << 37;

/// MDCR_EL2.TPMS (14): the statistical profiling controls (PMS*) trap.
/// E2PB (13:12) stays 0b00: the profiling buffer belongs to EL2, and its
/// controls (PMB*) trap from EL1, so neither the host nor a guest can point it
/// anywhere; the hyp keeps it disabled.
pub const MDCR_TPMS: u64 = 1 << 14;
/// MDCR_EL2.HPMD (17, FEAT_PMUv3p1): event counters do not count at EL2.
pub const MDCR_HPMD: u64 = 1 << 17;
/// MDCR_EL2.TTRF (19, FEAT_TRF): TRFCR_EL1 traps. E2TB (25:24) stays 0b00:
/// the trace buffer belongs to EL2 and its controls (TRB*) trap from EL1.
pub const MDCR_TTRF: u64 = 1 << 19;
/// MDCR_EL2.HCCD (23, FEAT_PMUv3p5): the cycle counter does not count at EL2.
pub const MDCR_HCCD: u64 = 1 << 23;

/// What the EL2 controls add, on this CPU.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct TrapControls {
    /// HCR_EL2 bits every guest runs with on top of the base set: TID1; TERR
    /// and TEA with RAS; TLOR with LORegions (as KVM sets them).
    pub hcr_guest: u64,
    /// MDCR_EL2 bits of the host (beside HPMN): TPMS with SPE.
    pub mdcr_host: u64,
    /// MDCR_EL2 bits every guest runs with (beside the PMU and debug traps):
    /// TPMS with SPE, TTRF with the trace filter.
    pub mdcr_guest: u64,
    /// MDCR_EL2 bits a protected guest adds: the counters do not count at
    /// EL2 while it is switched in (HPMD, HCCD where the PMU has them).
    pub mdcr_protected: u64,
    /// A PMUv3: the host's counters are switched off around protected runs.
    pub pmu: bool,
    /// FEAT_TRF: TRFCR_EL1 is saved and cleared around protected runs (trace
    /// of EL1 and EL0 prohibited), TRFCR_EL2 prohibits trace at EL2.
    pub trace_filter: bool,
    /// FEAT_SPE: the profiling buffer and sampling are kept disabled.
    pub spe: bool,
    /// FEAT_TRBE: the trace buffer is kept disabled.
    pub trace_buffer: bool,
    /// FEAT_SME: TPIDR2_EL0 (which no SME trap covers) is switched with the
    /// rest of a vCPU's EL1 state.
    pub tpidr2: bool,
    /// FEAT_RAS: the guest's deferred-SError record (its DISR_EL1, which is
    /// VDISR_EL2 while HCR_EL2.AMO is set) is switched with its state.
    pub ras: bool,
    /// The breakpoints and watchpoints switched for guests that debug.
    pub debug: DebugCounts,
}

impl TrapControls {
    /// Nothing added (before the CPU's features are known).
    pub const NONE: TrapControls = TrapControls {
        hcr_guest: 0,
        mdcr_host: 0,
        mdcr_guest: 0,
        mdcr_protected: 0,
        pmu: false,
        trace_filter: false,
        spe: false,
        trace_buffer: false,
        tpidr2: false,
        ras: false,
        debug: DebugCounts { breakpoints: 0, watchpoints: 0 },
    };
}

/// The 4-bit ID field at `shift`.
fn field(value: u64, shift: u32) -> u64 {
    (value >> shift) & 0xf
}

/// ID_AA64DFR0_EL1.PMUVer values: PMUv3p1 and PMUv3p5; 0xf is an
/// IMPLEMENTATION DEFINED PMU, not a PMUv3.
const PMUV3P1: u64 = 4;
const PMUV3P5: u64 = 6;
const PMU_IMPDEF: u64 = 0xf;

/// The controls for a CPU with these ID registers.
pub fn trap_controls(ids: CpuIds) -> TrapControls {
    let pmu_version = field(ids.dfr0, 8);
    let pmu = pmu_version != 0 && pmu_version != PMU_IMPDEF;
    let spe = field(ids.dfr0, 32) != 0;
    let trace_filter = field(ids.dfr0, 40) != 0;
    let trace_buffer = field(ids.dfr0, 44) != 0;
    let ras = field(ids.pfr0, 28) != 0;
    let lor = field(ids.mmfr1, 16) != 0;
    let tpidr2 = field(ids.pfr1, 24) != 0;
    let spe_traps = if spe { MDCR_TPMS } else { 0 };
    let mut mdcr_protected = 0;
    if pmu && pmu_version >= PMUV3P1 {
        mdcr_protected |= MDCR_HPMD;
    }
    if pmu && pmu_version >= PMUV3P5 {
        mdcr_protected |= MDCR_HCCD;
    }
    TrapControls {
        hcr_guest: HCR_TID1 | if ras { HCR_TERR | HCR_TEA } else { 0 } | if lor { HCR_TLOR } else { 0 },
        mdcr_host: spe_traps,
        mdcr_guest: spe_traps | if trace_filter { MDCR_TTRF } else { 0 },
        mdcr_protected,
        pmu,
        trace_filter,
        spe,
        trace_buffer,
        tpidr2,
        ras,
        debug: DebugCounts::from_dfr0(ids.dfr0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_armv8_0_cpu_gets_tid1_and_counters_switched_off_only() {
        // Cortex-A57: PMUv3 (PMUVer 1), no RAS, LOR, SPE, trace filter, SME.
        let a57 = trap_controls(CpuIds { dfr0: 0x1010_6106, pfr0: 0x2222, ..CpuIds::default() });
        assert_eq!(a57.hcr_guest, HCR_TID1);
        assert_eq!((a57.mdcr_host, a57.mdcr_guest, a57.mdcr_protected), (0, 0, 0), "no HPMD before PMUv3p1");
        assert!(a57.pmu && !a57.trace_filter && !a57.spe && !a57.trace_buffer && !a57.tpidr2 && !a57.ras);
    }

    #[test]
    fn every_feature_brings_its_control() {
        let all = trap_controls(CpuIds {
            pfr0: 1 << 28,
            pfr1: 1 << 24,
            dfr0: 1 << 44 | 1 << 40 | 1 << 32 | (PMUV3P5 << 8),
            mmfr1: 1 << 16,
        });
        assert_eq!(all.hcr_guest, HCR_TID1 | HCR_TERR | HCR_TEA | HCR_TLOR);
        assert_eq!(all.mdcr_host, MDCR_TPMS, "the host has no SPE; E2PB and E2TB stay 0 (EL2's buffers)");
        assert_eq!(all.mdcr_guest, MDCR_TPMS | MDCR_TTRF);
        assert_eq!(all.mdcr_protected, MDCR_HPMD | MDCR_HCCD);
        assert!(all.pmu && all.trace_filter && all.spe && all.trace_buffer && all.tpidr2 && all.ras);
        let p1 = trap_controls(CpuIds { dfr0: PMUV3P1 << 8, ..CpuIds::default() });
        assert_eq!(p1.mdcr_protected, MDCR_HPMD, "HCCD only from PMUv3p5");
    }

    #[test]
    fn no_pmu_or_an_implementation_defined_one_is_left_alone() {
        for version in [0, PMU_IMPDEF] {
            let c = trap_controls(CpuIds { dfr0: version << 8, ..CpuIds::default() });
            assert!(!c.pmu);
            assert_eq!(c.mdcr_protected, 0);
        }
        assert_eq!(TrapControls::NONE, TrapControls::default());
    }
}
