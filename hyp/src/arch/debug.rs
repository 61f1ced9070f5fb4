//! A vCPU's self-hosted debug state (breakpoints, watchpoints, software
//! step) and the rules of its lazy switch, as KVM has them. Portable: the
//! hardware access is `arch::aarch64::debug_switch`, which the world switch
//! calls.
//!
//! The guest's breakpoint and watchpoint registers live in its context and
//! are loaded into the CPU only when the guest uses them. A run starts with
//! MDCR_EL2.TDA set, so the guest's first access to a debug register traps;
//! the world switch then saves the host's registers, loads the guest's,
//! clears TDA and lets the instruction retry, so that the guest reaches the
//! registers directly for the rest of the run ([`access_loads_guest_state`]).
//! A vCPU whose MDSCR_EL1 enables debug (MDE, KDE or SS: [`in_use`]) has its
//! registers loaded from the start of every run, because its breakpoints,
//! watchpoints or step must fire without a prior access. At the end of a run
//! with the guest's registers loaded, they go back to the context and the
//! host's are restored.
//!
//! "Dirty" (KVM's word for a vCPU whose debug state is loaded) is therefore
//! decided afresh at every entry from MDSCR_EL1 alone, which is KVM's nVHE
//! rule (it clears the flag at each switch back to the host and sets it again
//! at entry when MDE or KDE is set). A guest that only wrote its registers
//! once, as Linux does at boot (zeroing them with MDE clear), pays one trap
//! in that run and nothing afterwards. With MDE, KDE and SS clear no
//! breakpoint, watchpoint or step exception can be taken at the guest's EL1
//! or EL0 (the debug target is EL1: MDCR_EL2.TDE and HCR_EL2.TGE are clear),
//! so the host's registers, left in place then, never fire in the guest.

#![forbid(unsafe_code)]

use crate::arch::sysreg::SysReg;

/// The most breakpoints or watchpoints ID_AA64DFR0_EL1 can describe (its
/// 4-bit fields hold the count minus one), and so the most that are switched.
pub const MAX_POINTS: usize = 16;

/// MDSCR_EL1.SS (0): software step enabled.
pub const MDSCR_SS: u64 = 1 << 0;
/// MDSCR_EL1.KDE (13): debug exceptions taken at the EL they come from (EL1).
pub const MDSCR_KDE: u64 = 1 << 13;
/// MDSCR_EL1.MDE (15): breakpoint and watchpoint exceptions enabled.
pub const MDSCR_MDE: u64 = 1 << 15;

/// PSTATE.SS (bit 21 of SPSR_ELx): the software-step state machine is
/// active-not-pending (the next instruction is stepped).
pub const PSTATE_SS: u64 = 1 << 21;
/// PSTATE.BTYPE (bits 11:10): the branch type of the last branch.
pub const PSTATE_BTYPE: u64 = 0b11 << 10;

/// ID_AA64DFR0_EL1 fields: DebugVer (3:0), BRPs (15:12), WRPs (23:20),
/// CTX_CMPs (31:28), each 4 bits.
const DFR0_DEBUGVER: u32 = 0;
const DFR0_BRPS: u32 = 12;
const DFR0_WRPS: u32 = 20;
/// DebugVer 0b1010 (FEAT_Debugv8p8): the last version without the banked
/// breakpoints of FEAT_Debugv8p9 (more than 16, selected by MDSELR_EL1,
/// counted in ID_AA64DFR1_EL1), which are not switched.
const DEBUGVER_V8P8: u64 = 0b1010;

/// A vCPU's breakpoint and watchpoint registers, and the debug
/// communications channel's interrupt enables (MDCCINT_EL1, which is
/// reachable with the others once MDCR_EL2.TDA is clear; KVM switches it
/// too). Entries past the CPU's counts stay zero.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct DebugRegs {
    /// DBGBVR<n>_EL1.
    pub bvr: [u64; MAX_POINTS],
    /// DBGBCR<n>_EL1.
    pub bcr: [u64; MAX_POINTS],
    /// DBGWVR<n>_EL1.
    pub wvr: [u64; MAX_POINTS],
    /// DBGWCR<n>_EL1.
    pub wcr: [u64; MAX_POINTS],
    /// MDCCINT_EL1.
    pub mdccint: u64,
}

/// How many breakpoints and watchpoints the CPU has (and the hyp switches).
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct DebugCounts {
    pub breakpoints: usize,
    pub watchpoints: usize,
}

impl DebugCounts {
    /// The counts ID_AA64DFR0_EL1 `dfr0` gives (each field is the count
    /// minus one; an ARMv8 CPU has at least two of each).
    pub fn from_dfr0(dfr0: u64) -> DebugCounts {
        let count = |shift: u32| ((dfr0 >> shift) & 0xf) as usize + 1;
        DebugCounts { breakpoints: count(DFR0_BRPS), watchpoints: count(DFR0_WRPS) }
    }
}

/// ID_AA64DFR0_EL1 as a guest reads it, for its debug part: the breakpoint,
/// watchpoint and context-comparator counts are the hardware's (all of them
/// are switched: at most 16 each, which is all the fields can say), and the
/// debug version at most FEAT_Debugv8p8, so that no breakpoint bank beyond
/// the 16 is announced.
pub fn guest_dfr0(hardware: u64) -> u64 {
    let version = (hardware >> DFR0_DEBUGVER) & 0xf;
    if version > DEBUGVER_V8P8 {
        hardware & !(0xf << DFR0_DEBUGVER) | DEBUGVER_V8P8 << DFR0_DEBUGVER
    } else {
        hardware
    }
}

/// Whether MDSCR_EL1 `mdscr` enables debug exceptions (breakpoints and
/// watchpoints, debug at EL1, or software step): then the vCPU's registers
/// are loaded for its whole run.
pub fn in_use(mdscr: u64) -> bool {
    mdscr & (MDSCR_MDE | MDSCR_KDE | MDSCR_SS) != 0
}

/// OSLAR_EL1 (write-only: the OS lock), OSLSR_EL1 (its status), OSDLR_EL1
/// (the OS double lock) and DBGPRCR_EL1 (core power-down requests), which
/// MDCR_EL2.TDOSA traps; MDRAR_EL1 (the memory-mapped debug registers'
/// address), which MDCR_EL2.TDRA traps. The hyp emulates these
/// (`vm::sysreg`): they never load the guest's state.
pub const OSLAR_EL1: SysReg = SysReg { op0: 2, op1: 0, crn: 1, crm: 0, op2: 4 };
pub const OSLSR_EL1: SysReg = SysReg { op0: 2, op1: 0, crn: 1, crm: 1, op2: 4 };
pub const OSDLR_EL1: SysReg = SysReg { op0: 2, op1: 0, crn: 1, crm: 3, op2: 4 };
pub const DBGPRCR_EL1: SysReg = SysReg { op0: 2, op1: 0, crn: 1, crm: 4, op2: 4 };
pub const MDRAR_EL1: SysReg = SysReg { op0: 2, op1: 0, crn: 1, crm: 0, op2: 0 };

/// Whether a trapped access to `reg` is one that MDCR_EL2.TDA traps and the
/// CPU has: the guest's first access to its debug registers in a run, which
/// loads them (and stops the trapping) before the access is retried. False
/// for the OS lock registers and MDRAR_EL1 (emulated), the trace unit's
/// registers (Op1 1, UNDEFINED to guests), a breakpoint or watchpoint the
/// CPU does not have (UNDEFINED) and anything outside the debug space.
pub fn access_loads_guest_state(reg: SysReg, counts: DebugCounts) -> bool {
    if reg.op0 != 2 || !(reg.op1 == 0 || reg.op1 == 3) {
        return false;
    }
    if reg == OSLAR_EL1 || reg == OSLSR_EL1 || reg == OSDLR_EL1 || reg == DBGPRCR_EL1 || reg == MDRAR_EL1 {
        return false;
    }
    match (reg.op1, reg.crn, reg.op2) {
        // DBGBVR<n>_EL1, DBGBCR<n>_EL1 (Op2 4, 5), DBGWVR<n>_EL1,
        // DBGWCR<n>_EL1 (Op2 6, 7), n = CRm.
        (0, 0, 4 | 5) => usize::from(reg.crm) < counts.breakpoints,
        (0, 0, 6 | 7) => usize::from(reg.crm) < counts.watchpoints,
        // MDSCR_EL1, MDCCINT_EL1, the DCC and claim registers, DBGAUTHSTATUS_EL1.
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Debugv8p4 CPU with 6 breakpoints, 4 watchpoints and 2 context
    /// comparators (the counts of QEMU's max CPU).
    const SAMPLE_DFR0: u64 = 0x1030_5109;

    fn dbg(crn: u8, crm: u8, op2: u8) -> SysReg {
        SysReg { op0: 2, op1: 0, crn, crm, op2 }
    }

    #[test]
    fn counts_come_from_the_id_register() {
        assert_eq!(DebugCounts::from_dfr0(SAMPLE_DFR0), DebugCounts { breakpoints: 6, watchpoints: 4 });
        assert_eq!(DebugCounts::from_dfr0(0xf0f0_f000), DebugCounts { breakpoints: 16, watchpoints: 16 });
        assert_eq!(DebugCounts::from_dfr0(0), DebugCounts { breakpoints: 1, watchpoints: 1 });
    }

    #[test]
    fn guests_read_the_counts_that_are_switched() {
        assert_eq!(guest_dfr0(SAMPLE_DFR0), SAMPLE_DFR0, "Debugv8p4 with 6/4/2: as it is");
        // A Debugv8p9 CPU: announced as v8p8, counts untouched.
        let v8p9 = 0xf0f0_f00b;
        assert_eq!(guest_dfr0(v8p9), 0xf0f0_f00a);
        let counts = DebugCounts::from_dfr0(guest_dfr0(v8p9));
        assert_eq!((counts.breakpoints, counts.watchpoints), (MAX_POINTS, MAX_POINTS));
    }

    #[test]
    fn mde_kde_or_ss_keep_the_registers_loaded() {
        assert!(!in_use(0));
        assert!(!in_use(!(MDSCR_MDE | MDSCR_KDE | MDSCR_SS)), "other bits (TDCC, the DCC flags) do not");
        for bit in [MDSCR_MDE, MDSCR_KDE, MDSCR_SS] {
            assert!(in_use(bit));
        }
    }

    #[test]
    fn the_registers_the_cpu_has_load_on_access_and_only_they() {
        let counts = DebugCounts::from_dfr0(SAMPLE_DFR0);
        for n in 0..16u8 {
            for op2 in [4, 5] {
                assert_eq!(access_loads_guest_state(dbg(0, n, op2), counts), n < 6, "breakpoint {n} {op2}");
            }
            for op2 in [6, 7] {
                assert_eq!(access_loads_guest_state(dbg(0, n, op2), counts), n < 4, "watchpoint {n} {op2}");
            }
        }
        // MDSCR_EL1, MDCCINT_EL1, OSDTRRX_EL1, OSECCR_EL1, DBGCLAIMSET_EL1,
        // DBGAUTHSTATUS_EL1, MDCCSR_EL0 (Op1 3), DBGDTR_EL0.
        for reg in [dbg(0, 2, 2), dbg(0, 2, 0), dbg(0, 0, 2), dbg(0, 6, 2), dbg(7, 8, 6), dbg(7, 14, 6)] {
            assert!(access_loads_guest_state(reg, counts), "{reg:?}");
        }
        assert!(access_loads_guest_state(SysReg { op0: 2, op1: 3, crn: 0, crm: 1, op2: 0 }, counts));
        assert!(access_loads_guest_state(SysReg { op0: 2, op1: 3, crn: 0, crm: 4, op2: 0 }, counts));
        for reg in [OSLAR_EL1, OSLSR_EL1, OSDLR_EL1, DBGPRCR_EL1, MDRAR_EL1] {
            assert!(!access_loads_guest_state(reg, counts), "emulated: {reg:?}");
        }
        // TRCIDR0 (trace, Op1 1), an ID register, MDSCR's encoding at Op0 3.
        assert!(!access_loads_guest_state(SysReg { op0: 2, op1: 1, crn: 0, crm: 8, op2: 7 }, counts));
        assert!(!access_loads_guest_state(SysReg { op0: 3, op1: 0, crn: 0, crm: 5, op2: 0 }, counts));
        assert!(!access_loads_guest_state(SysReg { op0: 3, op1: 0, crn: 0, crm: 2, op2: 2 }, counts));
    }
}
