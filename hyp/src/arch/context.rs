//! A vCPU's saved state. The layouts are read by the world-switch assembly
//! (`arch/aarch64/switch.S`), which pins them with the assertions below.

use crate::arch::debug::{DebugRegs, PSTATE_BTYPE, PSTATE_SS};

/// General registers x0..x30 (index 31 is padding), in `TrapFrame` order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct Gprs {
    pub x: [u64; 32],
}

/// The EL1 system registers of a guest, switched on every entry and exit.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct El1Sysregs {
    pub sctlr: u64,
    pub ttbr0: u64,
    pub ttbr1: u64,
    pub tcr: u64,
    pub mair: u64,
    pub amair: u64,
    pub vbar: u64,
    pub contextidr: u64,
    pub tpidr_el0: u64,
    pub tpidrro_el0: u64,
    pub tpidr_el1: u64,
    pub sp_el0: u64,
    pub sp_el1: u64,
    pub elr_el1: u64,
    pub spsr_el1: u64,
    pub esr_el1: u64,
    pub far_el1: u64,
    pub afsr0: u64,
    pub afsr1: u64,
    pub par: u64,
    pub cpacr: u64,
    pub cntkctl: u64,
    pub csselr: u64,
    pub mdscr: u64,
    pub cntv_ctl: u64,
    pub cntv_cval: u64,
}

/// FP/SIMD state: q0..q31, FPCR, FPSR.
#[repr(C, align(16))]
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct FpState {
    pub q: [u128; 32],
    pub fpcr: u64,
    pub fpsr: u64,
}

/// SCTLR_EL1 of a vCPU out of reset: MMU and caches off, RES1 bits set.
pub const SCTLR_EL1_RESET: u64 = (1 << 11) | (1 << 20) | (1 << 22) | (1 << 23) | (1 << 28) | (1 << 29);
/// PSTATE of a vCPU at its entry: EL1h with D, A, I, F masked.
pub const PSTATE_EL1H_MASKED: u64 = 0x3c5;

/// PSTATE.PAN, .DIT and .SSBS.
const PSTATE_PAN: u64 = 1 << 22;
const PSTATE_DIT: u64 = 1 << 24;
const PSTATE_SSBS: u64 = 1 << 12;
/// SCTLR_EL1.SPAN (0: PAN is set on an exception to EL1) and .DSSBS (SSBS's
/// value on one).
const SCTLR_SPAN: u64 = 1 << 23;
const SCTLR_DSSBS: u64 = 1 << 44;

/// The PSTATE an exception the hyp makes an EL1 take starts with, from the
/// `interrupted` PSTATE and the EL1's `sctlr` (Arm ARM `AArch64.TakeException`,
/// as KVM's `enter_exception64`): EL1h, D, A, I, F masked; PAN set if it was,
/// or if SCTLR_EL1.SPAN is 0 (the CPU's own exception would set it); DIT kept;
/// SSBS as SCTLR_EL1.DSSBS says; the rest (UAO, BTYPE, the flags) clear.
/// Without FEAT_PAN SPAN is RES1 and PAN never set; without SSBS DSSBS is RES0.
pub fn exception_pstate(interrupted: u64, sctlr: u64) -> u64 {
    let mut pstate = PSTATE_EL1H_MASKED | (interrupted & PSTATE_DIT);
    if interrupted & PSTATE_PAN != 0 || sctlr & SCTLR_SPAN == 0 {
        pstate |= PSTATE_PAN;
    }
    if sctlr & SCTLR_DSSBS != 0 {
        pstate |= PSTATE_SSBS;
    }
    pstate
}

/// Everything a vCPU is.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct VcpuContext {
    pub gprs: Gprs,
    pub pc: u64,
    pub pstate: u64,
    pub sysregs: El1Sysregs,
    pub fp: FpState,
    /// Virtual interrupts (GICv3 list registers and those waiting for one).
    pub vgic: crate::arch::list_registers::VgicState,
    /// TPIDR2_EL0, switched where the CPU has SME (no SME trap covers it).
    pub tpidr2: u64,
    /// DISR_EL1 as the guest sees it (VDISR_EL2), switched where the CPU has RAS.
    pub disr: u64,
    /// The breakpoint and watchpoint registers, loaded into the CPU only for
    /// runs that use them (`arch::debug`); MDSCR_EL1 is in `sysregs`.
    pub debug: DebugRegs,
    /// The host's breakpoint and watchpoint registers while this vCPU's are
    /// loaded (a run's scratch, kept in hyp memory that neither the host nor
    /// the guest reads: `arch::aarch64::debug_switch`).
    pub host_debug: DebugRegs,
    /// OSLSR_EL1.OSLK: the OS lock as the guest last set it with OSLAR_EL1
    /// (locked out of reset, as on a CPU's cold reset and under KVM).
    pub os_lock: bool,
    /// While the vCPU runs, `sysregs` is not read back after each trap (it is
    /// when the run ends): an exception injected by the hyp sets ESR_EL1,
    /// FAR_EL1, ELR_EL1 and SPSR_EL1 there and this flag, and the world switch
    /// loads them before the guest goes on (the injection reads VBAR_EL1 and
    /// SCTLR_EL1 live).
    pub exception_injected: bool,
    /// The guest's EL1 physical timer, emulated (its registers trap).
    pub ptimer: crate::arch::phys_timer::PhysTimer,
    /// What the hyp last found the page of one of this vCPU's stage-2
    /// aborts to be, kept while no guest's mappings changed since.
    pub abort_answer: AbortAnswer,
}

/// The hyp's last answer about the page of a stage-2 abort (what the page
/// is to the VM: memory, lost, MMIO, refused; opaque here), with the count of
/// guest mapping changes it was read at: a repeated MMIO exit to the same
/// page (a device's doorbell) then needs neither the VM table's lock nor a
/// walk of the stage-2 (`vm::guest_trap`).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct AbortAnswer {
    /// IPA >> 12 (`u64::MAX`: no answer yet).
    pub page: u64,
    pub generation: u64,
    pub answer: u8,
}

impl Default for AbortAnswer {
    fn default() -> AbortAnswer {
        AbortAnswer { page: u64::MAX, generation: 0, answer: 0 }
    }
}

impl VcpuContext {
    /// A vCPU that starts at `pc` with `x0`, MMU off, at EL1h, interrupts masked.
    pub fn at_entry(pc: u64, x0: u64) -> VcpuContext {
        let mut ctx = VcpuContext { pc, pstate: PSTATE_EL1H_MASKED, ..VcpuContext::default() };
        ctx.gprs.x[0] = x0;
        ctx.sysregs.sctlr = SCTLR_EL1_RESET;
        ctx.os_lock = true;
        ctx.sysregs.cpacr = crate::arch::sysreg::CPACR_HIDDEN_ENABLES;
        ctx
    }

    /// Moves the vCPU past the instruction that trapped, which the hyp
    /// completed for it: the PC by 4, and PSTATE.SS and BTYPE cleared as
    /// completing the instruction clears them, so that a guest stepping it
    /// (MDSCR_EL1.SS) takes its step exception before the next instruction
    /// (as KVM's `kvm_skip_instr`).
    pub fn skip_instruction(&mut self) {
        self.pc = self.pc.wrapping_add(4);
        self.pstate &= !(PSTATE_SS | PSTATE_BTYPE);
    }
}

const _: () = {
    assert!(core::mem::size_of::<Gprs>() == 256);
    // `el1_save` and `el1_restore` (switch.S) move 26 registers in field order.
    assert!(core::mem::size_of::<El1Sysregs>() == 26 * 8);
    assert!(core::mem::offset_of!(El1Sysregs, cntv_ctl) == 24 * 8);
    assert!(core::mem::size_of::<FpState>() == 32 * 16 + 16);
    assert!(core::mem::offset_of!(FpState, fpcr) == 512);
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exceptions_pstate_keeps_pan_dit_and_takes_ssbs_from_sctlr() {
        let span = SCTLR_SPAN;
        assert_eq!(exception_pstate(0, span), PSTATE_EL1H_MASKED, "nothing to keep");
        assert_eq!(exception_pstate(PSTATE_PAN, span), PSTATE_EL1H_MASKED | PSTATE_PAN, "PAN stays set");
        assert_eq!(exception_pstate(0, 0), PSTATE_EL1H_MASKED | PSTATE_PAN, "SPAN 0 sets PAN");
        assert_eq!(exception_pstate(PSTATE_DIT | 0xf000_0000 | 0x3c4, span), PSTATE_EL1H_MASKED | PSTATE_DIT);
        assert_eq!(exception_pstate(PSTATE_SSBS, span), PSTATE_EL1H_MASKED, "SSBS from DSSBS only");
        assert_eq!(exception_pstate(0, span | SCTLR_DSSBS), PSTATE_EL1H_MASKED | PSTATE_SSBS);
    }
}
