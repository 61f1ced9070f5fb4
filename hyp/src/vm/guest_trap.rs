//! What a guest's trap turns into: resumed in the hyp, or an exit to the host.
//! Works on the saved vCPU context only, so it is tested on the host.

#![forbid(unsafe_code)]

use crate::arch::context::{exception_pstate, AbortAnswer, VcpuContext};
use crate::arch::esr::ExceptionClass;
use crate::arch::sysreg::{SysReg, SysRegAccess};
use crate::vm::exit::{
    decode_mmio, guest_call, store_value, GuardCall, GuestCall, MemoryCall, MmioAccess, NOT_SUPPORTED,
};
use crate::vm::sysreg::{classify, cpacr_as_read, cpacr_as_written, oslsr, sanitize_id, SysRegHandling};
use hyp_abi::Exit;

use crate::arch::trap_record::GuestTrap;

/// What an IPA is to the VM that faulted on it.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum IpaKind {
    /// Its memory (a fault there is not MMIO).
    Memory,
    /// Memory the host took back from the live VM: touching it ends the VM.
    Lost,
    /// Anything else: MMIO, if the access can be decoded.
    Other,
    /// Outside its memory and outside what its MMIO guard allows: an access
    /// gets an abort and never reaches the host.
    Refused,
}

/// What a trap handler may ask of the VM whose vCPU trapped (the hyp answers
/// these under the VM table's lock; tests use fakes).
pub trait VmView {
    /// What `ipa` is to the VM, and the count of guest mapping changes the
    /// answer holds for (`vm::table::guest_mappings_generation`).
    fn ipa_kind(&self, ipa: u64) -> (IpaKind, u64);
    /// The count of guest mapping changes now.
    fn mappings_generation(&self) -> u64;
    /// PSCI CPU_ON of the vCPU whose MPIDR is `target`: makes it runnable at
    /// `entry` with x0 = `context` and returns its index, or the PSCI status
    /// that refuses the call.
    fn cpu_on(&self, target: u64, entry: u64, context: u64) -> Result<u64, i64>;
    /// PSCI AFFINITY_INFO (level 0) of the vCPU whose MPIDR is `target`.
    fn affinity_info(&self, target: u64) -> i64;
    /// Makes SGI `intid` pending for the vCPUs of `targets` (bit n: vCPU n);
    /// returns those that can now take an interrupt they could not before, and
    /// the sender itself if it can take one.
    fn send_sgi(&self, targets: u64, intid: u32) -> u64;
    /// The index of the vCPU that trapped.
    fn vcpu_index(&self) -> usize;
    /// The hardware value of ID register `reg` (also REVIDR_EL1 and AIDR_EL1).
    fn id_register(&self, reg: SysReg) -> u64;
    /// The running guest's CPACR_EL1 (live in the CPU while it runs).
    fn cpacr(&self) -> u64;
    /// The running guest's SCTLR_EL1 (live too): an injected exception's
    /// PSTATE depends on it.
    fn sctlr(&self) -> u64;
    /// The running guest's VBAR_EL1 (live too, and read only here: not at
    /// every trap): where an injected exception enters.
    fn vbar(&self) -> u64;
    fn set_cpacr(&self, value: u64);
    /// Whether the VM's GIC has the GICv3 system-register interface.
    fn gicv3(&self) -> bool;
    /// Serves an MMIO guard call; the SMCCC result for the guest's x0.
    fn mmio_guard(&self, call: GuardCall) -> u64;
    /// Serves a protected VM's memory call (share, unshare, relinquish); the
    /// SMCCC result for the guest's x0.
    fn guest_memory(&self, call: MemoryCall) -> u64;
}

/// ICC_SGI1R_EL1 as a trapped system-register access (Op0 3, Op1 0, CRn 12,
/// CRm 11, Op2 5) in ESR_EL2.ISS, with Rt and the direction masked out.
const ISS_ICC_SGI1R_EL1: u32 = 3 << 20 | 5 << 17 | 12 << 10 | 11 << 1;
const ISS_SYSREG_MASK: u32 = 0x3f_fc1e;

/// The vCPUs a GICv2 GICD_SGIR value names, sent by vCPU `from`
/// (TargetListFilter 0: CPUTargetList, 1: all but the sender, 2: the sender),
/// and the INTID.
pub fn gicv2_sgir_targets(value: u32, from: usize) -> (u64, u32) {
    let intid = value & 0xf;
    let targets = match (value >> 24) & 3 {
        0 => u64::from((value >> 16) & 0xff),
        1 => !(1u64 << from) & 0xff,
        2 => 1 << from,
        _ => 0,
    };
    (targets, intid)
}

/// The vCPUs an ICC_SGI1R_EL1 value names, for a VM whose vCPU n has MPIDR
/// affinity n (Aff3..Aff1 zero), sent by vCPU `from`: all but `from` with the
/// IRM bit, else the TargetList of affinity 0.0.0 (RS 0). The INTID too.
pub fn sgi_targets(value: u64, from: usize) -> (u64, u32) {
    let intid = ((value >> 24) & 0xf) as u32;
    let targets = if value & (1 << 40) != 0 {
        !(1u64 << from) & 0xffff
    } else if value & (0xff << 48 | 0xff << 32 | 0xf << 44 | 0xff << 16) == 0 {
        value & 0xffff
    } else {
        0
    };
    (targets, intid)
}

/// PSCI INVALID_PARAMETERS.
pub const PSCI_INVALID_PARAMETERS: i64 = -2;

/// What to do after a trap.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Outcome {
    /// Enter the guest again.
    Resume,
    /// Enter the guest again, after moving the interrupts that became pending
    /// for it into its list registers.
    Deliver,
    /// Enter the guest again, at its exception vector (an exception was injected).
    Injected,
    /// Return to the host with this exit; `pending_read` is an MMIO load the host
    /// must answer in its next run.
    ToHost { exit: Exit, pending_read: Option<MmioAccess> },
}

/// Synchronous external abort fault status.
const FSC_EXTERNAL_ABORT: u64 = 0x10;

/// Makes the guest take a synchronous exception with `esr` (and `far`) at its
/// EL1 vector, as the architecture would have. Without `far`, FAR_EL1 is 0
/// (the architecture makes it UNKNOWN). `sctlr` and `vbar` are the guest's
/// SCTLR_EL1 and VBAR_EL1.
pub fn inject(ctx: &mut VcpuContext, esr: u64, far: Option<u64>, sctlr: u64, vbar: u64) {
    let from_el0 = (ctx.pstate >> 2) & 3 == 0;
    let aarch32 = ctx.pstate & (1 << 4) != 0;
    let sp_elx = ctx.pstate & 1 != 0;
    let offset = match (aarch32, from_el0, sp_elx) {
        (true, _, _) => 0x600,
        (false, true, _) => 0x400,
        (false, false, false) => 0x000,
        (false, false, true) => 0x200,
    };
    ctx.sysregs.esr_el1 = esr;
    ctx.sysregs.far_el1 = far.unwrap_or(0);
    ctx.exception_injected = true;
    ctx.sysregs.elr_el1 = ctx.pc;
    ctx.sysregs.spsr_el1 = ctx.pstate;
    ctx.pc = vbar.wrapping_add(offset);
    ctx.pstate = exception_pstate(ctx.pstate, sctlr);
}

/// SPSR's M[4]: the interrupted state was AArch32.
const PSTATE_AARCH32: u64 = 1 << 4;
/// PSTATE's M[4:0]: the exception level, the stack pointer, AArch32.
const PSTATE_MODE: u64 = 0x1f;

/// Whether the exception [`inject`] just made the guest take was taken at the
/// very vector it enters, in the mode it enters it in (a guest without a
/// working vector): it would be taken there again forever, in the same state.
pub fn injected_at_its_own_vector(ctx: &VcpuContext) -> bool {
    ctx.pc == ctx.sysregs.elr_el1 && (ctx.sysregs.spsr_el1 ^ ctx.pstate) & PSTATE_MODE == 0
}

/// Injects a synchronous external abort for the access of `trap`.
pub fn inject_abort(ctx: &mut VcpuContext, trap: &GuestTrap, vm: &impl VmView) {
    let same_el = (ctx.pstate >> 2) & 3 == 1;
    let instruction = trap.esr.class() == ExceptionClass::InstructionAbortLower;
    let class: u64 = match (instruction, same_el) {
        (false, true) => 0x25,
        (false, false) => 0x24,
        (true, true) => 0x21,
        (true, false) => 0x20,
    };
    let wnr = if trap.esr.is_write() && !instruction { 1 << 6 } else { 0 };
    inject(ctx, (class << 26) | (1 << 25) | wnr | FSC_EXTERNAL_ABORT, Some(trap.far), vm.sctlr(), vm.vbar());
}

/// Injects an UNDEFINED exception (EC 0).
pub fn inject_undefined(ctx: &mut VcpuContext, vm: &impl VmView) {
    inject(ctx, 1 << 25, None, vm.sctlr(), vm.vbar());
}

impl IpaKind {
    fn from_answer(answer: u8) -> Option<IpaKind> {
        [IpaKind::Memory, IpaKind::Lost, IpaKind::Other, IpaKind::Refused].get(usize::from(answer)).copied()
    }
}

/// What `ipa` is to the VM: the vCPU's last answer if it was about the same
/// page and no guest mapping changed since (a device's doorbell, written
/// again and again), else `vm`'s, remembered.
fn ipa_kind_remembered(ctx: &mut VcpuContext, vm: &impl VmView, ipa: u64) -> IpaKind {
    let page = ipa >> 12;
    let last = ctx.abort_answer;
    if last.page == page && last.generation == vm.mappings_generation() {
        if let Some(kind) = IpaKind::from_answer(last.answer) {
            return kind;
        }
    }
    let (kind, generation) = vm.ipa_kind(ipa);
    ctx.abort_answer = AbortAnswer { page, generation, answer: kind as u8 };
    kind
}

/// Handles `trap` on `ctx`. `vm` answers what the faulting IPA is to the VM and
/// serves PSCI calls about its other vCPUs; `protected` withholds the syndrome
/// of a fatal exit.
pub fn handle(ctx: &mut VcpuContext, trap: GuestTrap, protected: bool, vm: &impl VmView) -> Outcome {
    if trap.kind != 0 {
        // An interrupt (or SError) for the host: give the CPU back.
        return Outcome::ToHost { exit: Exit::Interrupted, pending_read: None };
    }
    if let Some(fatal) = aarch32_fatal(ctx, &trap, protected) {
        return fatal;
    }
    let step = |ctx: &mut VcpuContext| ctx.skip_instruction();
    match trap.esr.class() {
        ExceptionClass::Hvc64 | ExceptionClass::Smc64 => {
            // HVC returns past itself; a trapped SMC returns to itself.
            if trap.esr.class() == ExceptionClass::Smc64 {
                step(ctx);
            }
            let (function, arg) = (ctx.gprs.x[0], ctx.gprs.x[1]);
            if trap.esr.immediate() != 0 {
                ctx.gprs.x[0] = NOT_SUPPORTED;
                return Outcome::Resume;
            }
            let x = &ctx.gprs.x;
            match guest_call([x[0], x[1], x[2], x[3]], protected) {
                GuestCall::Return(value) => {
                    ctx.gprs.x[0] = value;
                    Outcome::Resume
                }
                GuestCall::ReturnAll(values) => {
                    ctx.gprs.x[..4].copy_from_slice(&values);
                    Outcome::Resume
                }
                GuestCall::Memory(call) => {
                    let status = vm.guest_memory(call);
                    ctx.gprs.x[..4].copy_from_slice(&[status, 0, 0, 0]);
                    Outcome::Resume
                }
                GuestCall::SystemOff => Outcome::ToHost { exit: Exit::SystemOff, pending_read: None },
                GuestCall::SystemReset => Outcome::ToHost { exit: Exit::SystemReset, pending_read: None },
                GuestCall::Host => Outcome::ToHost { exit: Exit::Hypercall { function, arg }, pending_read: None },
                GuestCall::CpuOn { target, entry, context } => match vm.cpu_on(target, entry, context) {
                    Ok(vcpu) => {
                        ctx.gprs.x[0] = 0;
                        Outcome::ToHost { exit: Exit::CpuOn { vcpu }, pending_read: None }
                    }
                    Err(status) => {
                        ctx.gprs.x[0] = status as u64;
                        Outcome::Resume
                    }
                },
                GuestCall::CpuOff => Outcome::ToHost { exit: Exit::CpuOff, pending_read: None },
                GuestCall::MmioGuard(call) => {
                    ctx.gprs.x[0] = vm.mmio_guard(call);
                    Outcome::Resume
                }
                GuestCall::AffinityInfo { target, level } => {
                    let status = if level == 0 { vm.affinity_info(target) } else { PSCI_INVALID_PARAMETERS };
                    ctx.gprs.x[0] = status as u64;
                    Outcome::Resume
                }
            }
        }
        ExceptionClass::SysReg if trap.esr.iss() & ISS_SYSREG_MASK == ISS_ICC_SGI1R_EL1 && trap.esr.iss() & 1 == 0 => {
            let rt = ((trap.esr.iss() >> 5) & 0x1f) as usize;
            let value = if rt == 31 { 0 } else { ctx.gprs.x[rt] };
            step(ctx);
            let sender = vm.vcpu_index();
            let (targets, intid) = sgi_targets(value, sender);
            let woken = vm.send_sgi(targets, intid);
            match woken & !(1 << sender) {
                0 if woken != 0 => Outcome::Deliver,
                0 => Outcome::Resume,
                others => Outcome::ToHost { exit: Exit::Wake { targets: others }, pending_read: None },
            }
        }
        ExceptionClass::SysReg => {
            let access = SysRegAccess::decode(trap.esr.iss());
            let value = match classify(access) {
                SysRegHandling::IdRegister => sanitize_id(access.reg, vm.id_register(access.reg), vm.gicv3()),
                SysRegHandling::ImplementationId => vm.id_register(access.reg),
                SysRegHandling::OsLockStatus => oslsr(ctx.os_lock),
                SysRegHandling::OsLockSet => {
                    let value = if access.rt == 31 { 0 } else { ctx.gprs.x[usize::from(access.rt)] };
                    ctx.os_lock = value & 1 != 0;
                    0
                }
                SysRegHandling::ArchitecturalFeatureAccess if access.read => cpacr_as_read(vm.cpacr()),
                SysRegHandling::ArchitecturalFeatureAccess => {
                    let rt = usize::from(access.rt);
                    vm.set_cpacr(cpacr_as_written(if rt == 31 { 0 } else { ctx.gprs.x[rt] }));
                    0
                }
                SysRegHandling::ReadsAsZero => 0,
                SysRegHandling::Undefined => {
                    inject_undefined(ctx, vm);
                    return Outcome::Injected;
                }
            };
            if access.read && access.rt != 31 {
                ctx.gprs.x[usize::from(access.rt)] = value;
            }
            step(ctx);
            Outcome::Resume
        }
        ExceptionClass::WfiWfe => {
            step(ctx);
            // The caller fills in the timer deadline (the live timer registers
            // are not in `ctx` during a run); a WFE's is 0, "runnable now"
            // (`vcpu_run::serve_wfi`).
            let timer_deadline = if trap.esr.is_wfe() { 0 } else { u64::MAX };
            Outcome::ToHost { exit: Exit::Wfi { timer_deadline }, pending_read: None }
        }
        // One stage-2 walk answers both questions an abort asks: is its IPA
        // a lost page, is it the VM's memory.
        ExceptionClass::DataAbortLower | ExceptionClass::InstructionAbortLower => abort(ctx, trap, protected, vm),
        _ => {
            inject_undefined(ctx, vm);
            Outcome::Injected
        }
    }
}

/// Whether the guest trapped from AArch32 (EL0: its ID registers offer no
/// AArch32, but a CPU that has it lets EL1 return there): the hyp decodes
/// and steps over AArch64 instructions only, so it serves no such trap
/// (the run's own handlers leave it to [`handle`], which ends the VM).
#[inline(always)]
pub fn in_aarch32(ctx: &VcpuContext) -> bool {
    ctx.pstate & PSTATE_AARCH32 != 0
}

/// A guest that entered AArch32 at EL0, though its ID registers say it has
/// none, ends at its next trap the hyp would decode: the hyp decodes and
/// steps over AArch64 instructions only (KVM ends a VM too in a 32-bit mode
/// it does not offer).
#[inline(always)]
fn aarch32_fatal(ctx: &VcpuContext, trap: &GuestTrap, protected: bool) -> Option<Outcome> {
    in_aarch32(ctx).then(|| {
        let esr = if protected { 0 } else { trap.esr.0 };
        Outcome::ToHost { exit: Exit::Fatal { esr, address: 0 }, pending_read: None }
    })
}

/// A stage-2 data or instruction abort: the VM's memory met a transient
/// break (retried), its MMIO (an exit), or neither (an abort injected).
#[inline(always)]
fn abort(ctx: &mut VcpuContext, trap: GuestTrap, protected: bool, vm: &impl VmView) -> Outcome {
    let kind = ipa_kind_remembered(ctx, vm, trap.ipa);
    if kind == IpaKind::Lost && trap.esr.hpfar_valid() {
        let (esr, address) = if protected { (0, 0) } else { (trap.esr.0, trap.ipa) };
        return Outcome::ToHost { exit: Exit::Fatal { esr, address }, pending_read: None };
    }
    // (A translation fault's HPFAR_EL2 holds its IPA: `Esr::hpfar_valid`.)
    let translation = matches!(trap.esr.fault_status(), 0x04..=0x07);
    // A translation or access-flag fault at what is the VM's memory
    // now met a break-before-make on another CPU (a block split
    // under the lock for a relinquish, or a forced reclaim elsewhere
    // in the block): the access retries (the run's trap limit bounds
    // it), where an abort would have hit the guest on its own memory.
    let transient = translation || matches!(trap.esr.fault_status(), 0x08..=0x0b);
    if kind == IpaKind::Memory && transient && trap.esr.hpfar_valid() {
        return Outcome::Resume;
    }
    let data = trap.esr.class() == ExceptionClass::DataAbortLower;
    match decode_mmio(trap.esr) {
        Some(access) if data && translation && kind == IpaKind::Other => {
            if access.write {
                let reg = usize::from(access.register);
                let value = if reg == 31 { 0 } else { store_value(access, ctx.gprs.x[reg]) };
                ctx.skip_instruction();
                let exit = Exit::Mmio { ipa: trap.ipa, size_bytes: access.size_bytes, write: true, value };
                Outcome::ToHost { exit, pending_read: None }
            } else {
                let exit = Exit::Mmio { ipa: trap.ipa, size_bytes: access.size_bytes, write: false, value: 0 };
                Outcome::ToHost { exit, pending_read: Some(access) }
            }
        }
        _ => {
            inject_abort(ctx, &trap, vm);
            Outcome::Injected
        }
    }
}

/// Completes an MMIO load with the host's `data`: the register gets it, the
/// guest moves past the load.
pub fn complete_read(ctx: &mut VcpuContext, access: MmioAccess, data: u64) {
    let reg = usize::from(access.register);
    if reg != 31 {
        ctx.gprs.x[reg] = crate::vm::exit::load_value(access, data);
    }
    ctx.skip_instruction();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The guest's VBAR_EL1 as the fake views give it.
    const TEST_VBAR: u64 = 0x8000_1000;
    use crate::arch::esr::Esr;

    /// A VM whose IPAs are all `kind` and whose vCPU 1 may be started (index 1).
    /// Its answers are never remembered (each is for a count of mapping
    /// changes already past).
    struct Fake(IpaKind);

    impl VmView for Fake {
        fn ipa_kind(&self, _: u64) -> (IpaKind, u64) {
            (self.0, 0)
        }
        fn mappings_generation(&self) -> u64 {
            1
        }
        fn cpu_on(&self, target: u64, _: u64, _: u64) -> Result<u64, i64> {
            if target == 1 {
                Ok(1)
            } else {
                Err(-4)
            }
        }
        fn affinity_info(&self, target: u64) -> i64 {
            i64::from(target != 0)
        }
        fn send_sgi(&self, targets: u64, _intid: u32) -> u64 {
            targets & 0b11
        }
        fn vcpu_index(&self) -> usize {
            0
        }
        fn id_register(&self, _: SysReg) -> u64 {
            u64::MAX
        }
        /// FP/SIMD enabled, and the hidden enables the hyp keeps set.
        fn cpacr(&self) -> u64 {
            3 << 20 | crate::arch::sysreg::CPACR_HIDDEN_ENABLES
        }
        /// SPAN set (PAN kept as it was), DSSBS clear: out of reset.
        fn sctlr(&self) -> u64 {
            crate::arch::context::SCTLR_EL1_RESET
        }
        fn vbar(&self) -> u64 {
            TEST_VBAR
        }
        fn set_cpacr(&self, _: u64) {}
        fn gicv3(&self) -> bool {
            true
        }
        fn mmio_guard(&self, call: GuardCall) -> u64 {
            match call {
                GuardCall::Map { ipa: 0x900_0000 } => 0,
                _ => NOT_SUPPORTED,
            }
        }
        fn guest_memory(&self, call: MemoryCall) -> u64 {
            match call {
                MemoryCall::Share { ipa: 0x8000_1000 } => 0,
                _ => crate::vm::exit::INVALID_PARAMETER,
            }
        }
    }

    const OTHER: Fake = Fake(IpaKind::Other);

    fn trap(esr: u64, ipa: u64) -> GuestTrap {
        GuestTrap { kind: 0, esr: Esr(esr), far: ipa, ipa }
    }

    fn ctx() -> VcpuContext {
        VcpuContext::at_entry(0x8000_0000, 0)
    }

    #[test]
    fn psci_version_is_answered_without_the_host() {
        let mut c = ctx();
        c.gprs.x[0] = 0x8400_0000;
        assert_eq!(handle(&mut c, trap(0x16 << 26 | 1 << 25, 0), false, &OTHER), Outcome::Resume);
        assert_eq!(c.gprs.x[0], 0x1_0001);
        assert_eq!(c.pc, 0x8000_0000, "HVC already returns past itself");
    }

    #[test]
    fn smc_is_stepped_over_and_unknown_calls_fail() {
        let mut c = ctx();
        c.gprs.x[0] = 0xC200_0000;
        assert_eq!(handle(&mut c, trap(0x17 << 26 | 1 << 25, 0), false, &OTHER), Outcome::Resume);
        assert_eq!(c.gprs.x[0], NOT_SUPPORTED);
        assert_eq!(c.pc, 0x8000_0004);
    }

    #[test]
    fn cpu_on_starts_another_vcpu_through_the_host_and_refusals_return() {
        let mut c = ctx();
        c.gprs.x[..4].copy_from_slice(&[0xC400_0003, 1, 0x8000_2000, 9]);
        assert_eq!(
            handle(&mut c, trap(0x16 << 26, 0), false, &OTHER),
            Outcome::ToHost { exit: Exit::CpuOn { vcpu: 1 }, pending_read: None }
        );
        assert_eq!(c.gprs.x[0], 0, "SUCCESS for the caller");
        c.gprs.x[..4].copy_from_slice(&[0xC400_0003, 0, 0x8000_2000, 9]);
        assert_eq!(handle(&mut c, trap(0x16 << 26, 0), false, &OTHER), Outcome::Resume);
        assert_eq!(c.gprs.x[0] as i64, -4, "ALREADY_ON");
        c.gprs.x[..3].copy_from_slice(&[0xC400_0004, 2, 0]);
        assert_eq!(handle(&mut c, trap(0x16 << 26, 0), false, &OTHER), Outcome::Resume);
        assert_eq!(c.gprs.x[0], 1, "AFFINITY_INFO: OFF");
        c.gprs.x[..3].copy_from_slice(&[0xC400_0004, 2, 1]);
        assert_eq!(handle(&mut c, trap(0x16 << 26, 0), false, &OTHER), Outcome::Resume);
        assert_eq!(c.gprs.x[0] as i64, PSCI_INVALID_PARAMETERS, "only level 0");
        c.gprs.x[0] = 0x8400_0002;
        assert_eq!(
            handle(&mut c, trap(0x16 << 26, 0), false, &OTHER),
            Outcome::ToHost { exit: Exit::CpuOff, pending_read: None }
        );
    }

    #[test]
    fn gicv2_sgir_names_its_targets() {
        assert_eq!(gicv2_sgir_targets(0b101 << 16 | 5, 0), (0b101, 5));
        assert_eq!(gicv2_sgir_targets(1 << 24 | 3, 1), (0xfd, 3), "all but the sender");
        assert_eq!(gicv2_sgir_targets(2 << 24 | 3, 2), (0b100, 3), "the sender");
        assert_eq!(gicv2_sgir_targets(3 << 24 | 3, 2), (0, 3), "reserved filter");
    }

    #[test]
    fn sgis_name_their_targets_and_reach_the_host() {
        assert_eq!(sgi_targets(5 << 24 | 0b110, 0), (0b110, 5));
        assert_eq!(sgi_targets(1 << 40 | 3 << 24, 1), (0xfffd, 3), "everyone but the sender");
        assert_eq!(sgi_targets(1 << 16 | 1, 0), (0, 0), "Aff1 1: no such vCPU");
        let mut c = ctx();
        c.gprs.x[4] = 7 << 24 | 0b10;
        // msr icc_sgi1r_el1, x4: EC 0x18, ISS Op0 3, Op2 5, CRn 12, Rt 4, CRm 11, write.
        let msr = 0x18 << 26 | 1 << 25 | 3 << 20 | 5 << 17 | 12 << 10 | 4 << 5 | 11 << 1;
        assert_eq!(
            handle(&mut c, trap(msr, 0), false, &OTHER),
            Outcome::ToHost { exit: Exit::Wake { targets: 0b10 }, pending_read: None }
        );
        assert_eq!(c.pc, 0x8000_0004);
        c.gprs.x[4] = 7 << 24 | 0b100;
        assert_eq!(handle(&mut c, trap(msr, 0), false, &OTHER), Outcome::Resume, "no such vCPU: nothing sent");
        c.gprs.x[4] = 7 << 24 | 0b1;
        assert_eq!(handle(&mut c, trap(msr, 0), false, &OTHER), Outcome::Deliver, "to itself: delivered at once");
        // A read of the register (direction 1) is not an SGI: UNDEFINED.
        assert_eq!(handle(&mut c, trap(msr | 1, 0), false, &OTHER), Outcome::Injected);
    }

    #[test]
    fn id_registers_are_sanitised_and_the_os_lock_is_emulated() {
        let mut c = ctx();
        // mrs x3, id_aa64dfr0_el1.
        let mrs_dfr0 = 0x18 << 26 | 1 << 25 | 3 << 20 | 3 << 5 | 5 << 1 | 1;
        assert_eq!(handle(&mut c, trap(mrs_dfr0, 0), false, &OTHER), Outcome::Resume);
        assert_eq!((c.gprs.x[3] >> 8 & 0xf, c.pc), (0, 0x8000_0004), "no PMU");
        // mrs x5, oslsr_el1 (Op0 2, Op2 4, CRn 1, CRm 1): locked out of reset.
        let oslsr = 0x18 << 26 | 1 << 25 | 2 << 20 | 4 << 17 | 1 << 10 | 5 << 5 | 1 << 1 | 1;
        assert_eq!(handle(&mut c, trap(oslsr, 0), false, &OTHER), Outcome::Resume);
        assert_eq!(c.gprs.x[5], 0b1010, "OSLM 0b10, OSLK 1");
        // msr oslar_el1, xzr unlocks; msr oslar_el1, x6 (1) locks again.
        let oslar = 0x18 << 26 | 1 << 25 | 2 << 20 | 4 << 17 | 1 << 10;
        assert_eq!(handle(&mut c, trap(oslar | 31 << 5, 0), false, &OTHER), Outcome::Resume);
        assert_eq!(handle(&mut c, trap(oslsr, 0), false, &OTHER), Outcome::Resume);
        assert_eq!((c.gprs.x[5], c.os_lock), (0b1000, false));
        c.gprs.x[6] = 1;
        assert_eq!(handle(&mut c, trap(oslar | 6 << 5, 0), false, &OTHER), Outcome::Resume);
        assert!(c.os_lock);
        // mrs x5, dbgbvr0_el1 (Op0 2, CRn 0, CRm 0, Op2 4) reaches the hyp
        // only for a breakpoint the CPU lacks (the world switch loads the
        // others): UNDEFINED.
        let dbgbvr0 = 0x18 << 26 | 1 << 25 | 2 << 20 | 4 << 17 | 5 << 5 | 1;
        assert_eq!(handle(&mut c, trap(dbgbvr0, 0), false, &OTHER), Outcome::Injected);
        // mrs x1, pmccntr_el0: UNDEFINED.
        let mut c = ctx();
        let pmccntr = 0x18 << 26 | 1 << 25 | 3 << 20 | 3 << 14 | 9 << 10 | 1 << 5 | 13 << 1 | 1;
        assert_eq!(handle(&mut c, trap(pmccntr, 0), false, &OTHER), Outcome::Injected);
    }

    #[test]
    fn an_emulated_instruction_completes_a_software_step() {
        // The guest steps (PSTATE.SS set, BTYPE 2) a WFI the hyp completes:
        // the step is over, so it takes its step exception before the next one.
        let mut c = ctx();
        c.pstate |= crate::arch::debug::PSTATE_SS | 2 << 10;
        let pstate = c.pstate & !(crate::arch::debug::PSTATE_SS | 3 << 10);
        let wfi = 0x01 << 26 | 1 << 25;
        assert!(matches!(handle(&mut c, trap(wfi, 0), false, &OTHER), Outcome::ToHost { .. }));
        assert_eq!((c.pc, c.pstate), (0x8000_0004, pstate));
    }

    #[test]
    fn system_off_goes_to_the_host() {
        let mut c = ctx();
        c.gprs.x[0] = 0x8400_0008;
        assert_eq!(
            handle(&mut c, trap(0x16 << 26, 0), false, &OTHER),
            Outcome::ToHost { exit: Exit::SystemOff, pending_read: None }
        );
    }

    #[test]
    fn mmio_writes_exit_with_the_value_and_reads_wait_for_the_host() {
        let mut c = ctx();
        c.gprs.x[1] = 0x1_2341;
        // strb w1, [x0] at IPA 0x900_0000.
        let strb = 0x24 << 26 | 1 << 25 | 1 << 24 | 1 << 16 | 1 << 6 | 0x7;
        let out = handle(&mut c, trap(strb, 0x900_0000), false, &OTHER);
        assert_eq!(
            out,
            Outcome::ToHost {
                exit: Exit::Mmio { ipa: 0x900_0000, size_bytes: 1, write: true, value: 0x41 },
                pending_read: None
            }
        );
        assert_eq!(c.pc, 0x8000_0004);
        // ldr w2, [x0, #0x18].
        let ldr = 0x24 << 26 | 1 << 25 | 1 << 24 | 2 << 22 | 2 << 16 | 0x7;
        let Outcome::ToHost { exit, pending_read: Some(access) } = handle(&mut c, trap(ldr, 0x900_0018), false, &OTHER)
        else {
            panic!("read must wait for the host");
        };
        assert_eq!(exit, Exit::Mmio { ipa: 0x900_0018, size_bytes: 4, write: false, value: 0 });
        assert_eq!(c.pc, 0x8000_0004, "not past the load until it completes");
        complete_read(&mut c, access, 0xffff_ffff_0000_0090);
        assert_eq!((c.gprs.x[2], c.pc), (0x90, 0x8000_0008));
    }

    #[test]
    fn undecodable_or_memory_faults_inject_an_abort() {
        let mut c = ctx();
        let no_isv = 0x24 << 26 | 1 << 25 | 0x7;
        assert_eq!(handle(&mut c, trap(no_isv, 0x900_0000), false, &OTHER), Outcome::Injected);
        assert_eq!(c.pc, 0x8000_1200, "current EL, SPx vector");
        assert_eq!(c.sysregs.esr_el1 >> 26, 0x25);
        assert_eq!(c.sysregs.esr_el1 & 0x3f, 0x10);
        assert_eq!(c.sysregs.elr_el1, 0x8000_0000);
        assert_eq!(c.sysregs.far_el1, 0x900_0000);
        assert!(c.exception_injected, "the world switch must load the EL1 registers set");
        // A permission fault on its memory (a write where it may not) gets
        // the abort.
        let mut c = ctx();
        let permission_on_memory = 0x24 << 26 | 1 << 25 | 1 << 24 | 1 << 6 | 0xf;
        assert_eq!(
            handle(&mut c, trap(permission_on_memory, 0x4000), false, &Fake(IpaKind::Memory)),
            Outcome::Injected
        );
        assert_eq!(c.sysregs.esr_el1 >> 26, 0x25);
    }

    /// An injected exception keeps the guest's PAN (its kernel's guard
    /// against touching user memory), as the CPU's own would.
    #[test]
    fn an_injected_exception_keeps_pan() {
        let mut c = ctx();
        c.pstate |= 1 << 22;
        let no_isv = 0x24 << 26 | 1 << 25 | 0x7;
        assert_eq!(handle(&mut c, trap(no_isv, 0x900_0000), false, &OTHER), Outcome::Injected);
        assert_eq!(c.pstate, 0x3c5 | 1 << 22);
        assert_eq!(c.sysregs.spsr_el1 & 1 << 22, 1 << 22);
    }

    /// An abort at the vector the injection enters, in the mode it enters
    /// it in, is a guest without a working vector; one taken elsewhere, or
    /// at that address from EL0, is the guest's to handle.
    #[test]
    fn only_a_fault_at_the_vector_it_enters_is_a_dead_vector() {
        let fetch = 0x20 << 26 | 1 << 25 | 0x07;
        // EL1h at VBAR + 0x200 (its own vector for EL1h).
        let mut c = ctx();
        c.pc = 0x8000_1200;
        assert_eq!(handle(&mut c, trap(fetch, 0x9000_0000), false, &OTHER), Outcome::Injected);
        assert!(injected_at_its_own_vector(&c));
        // EL1h elsewhere.
        let mut c = ctx();
        c.pc = 0x8000_1400;
        assert_eq!(handle(&mut c, trap(fetch, 0x9000_0000), false, &OTHER), Outcome::Injected);
        assert!(!injected_at_its_own_vector(&c));
        // EL0 at VBAR + 0x400, the address of EL0's vector, but in another mode.
        let mut c = ctx();
        c.pc = 0x8000_1400;
        c.pstate = 0;
        assert_eq!(handle(&mut c, trap(fetch, 0x9000_0000), false, &OTHER), Outcome::Injected);
        assert_eq!(c.pc, 0x8000_1400);
        assert!(!injected_at_its_own_vector(&c));
    }

    /// A guest that entered AArch32 EL0 anyway ends at its next trap the hyp
    /// would decode (no syndrome for a protected one).
    #[test]
    fn a_guest_in_aarch32_ends() {
        let mut c = ctx();
        c.pstate = 0x10;
        let load = 0x24 << 26 | 1 << 25 | 1 << 24 | 2 << 22 | 0x07;
        let fatal = |esr| Outcome::ToHost { exit: Exit::Fatal { esr, address: 0 }, pending_read: None };
        assert_eq!(handle(&mut c, trap(load, 0x900_0000), true, &OTHER), fatal(0));
        assert_eq!(handle(&mut c, trap(load, 0x900_0000), false, &OTHER), fatal(load));
        assert_eq!(c.pc, 0x8000_0000, "nothing stepped");
    }

    /// A translation (or access-flag) fault at what is the VM's memory by the
    /// time the hyp looks came from another CPU's break-before-make of the
    /// block: the guest retries the access, nothing injected, PC unchanged.
    #[test]
    fn a_fault_on_memory_mapped_meanwhile_is_retried() {
        for fault_status in [0x07, 0x06, 0x0b] {
            let mut c = ctx();
            let load = 0x24 << 26 | 1 << 25 | 1 << 24 | 2 << 22 | fault_status;
            assert_eq!(handle(&mut c, trap(load, 0x4000), true, &Fake(IpaKind::Memory)), Outcome::Resume);
            assert_eq!(c.pc, 0x8000_0000);
            assert!(!c.exception_injected);
        }
    }

    #[test]
    fn mmio_the_guard_refuses_gets_an_abort_and_guard_calls_answer_in_x0() {
        let mut c = ctx();
        let write = 0x24 << 26 | 1 << 25 | 1 << 24 | 1 << 6 | 0x7;
        assert_eq!(handle(&mut c, trap(write, 0x900_1000), true, &Fake(IpaKind::Refused)), Outcome::Injected);
        assert_eq!((c.sysregs.esr_el1 >> 26, c.sysregs.esr_el1 & 0x3f), (0x25, 0x10));
        let mut c = ctx();
        c.gprs.x[..2].copy_from_slice(&[0xC600_0007, 0x900_0000]);
        let hvc = 0x16 << 26 | 1 << 25;
        assert_eq!(handle(&mut c, trap(hvc, 0), true, &OTHER), Outcome::Resume);
        assert_eq!(c.gprs.x[0], 0, "the VM's answer");
        c.gprs.x[..2].copy_from_slice(&[0xC600_0007, 0x900_1000]);
        assert_eq!(handle(&mut c, trap(hvc, 0), true, &OTHER), Outcome::Resume);
        assert_eq!(c.gprs.x[0], NOT_SUPPORTED);
    }

    #[test]
    fn memory_calls_answer_in_x0_with_x1_to_x3_zeroed_and_only_for_protected_vms() {
        let hvc = 0x16 << 26 | 1 << 25;
        let mut c = ctx();
        c.gprs.x[..4].copy_from_slice(&[0xC600_0003, 0x8000_1000, 0, 0]);
        assert_eq!(handle(&mut c, trap(hvc, 0), true, &OTHER), Outcome::Resume);
        assert_eq!(&c.gprs.x[..4], &[0, 0, 0, 0], "the VM's answer");
        c.gprs.x[..4].copy_from_slice(&[0xC600_0004, 0x8000_1000, 0, 0]);
        assert_eq!(handle(&mut c, trap(hvc, 0), true, &OTHER), Outcome::Resume);
        assert_eq!(&c.gprs.x[..4], &[crate::vm::exit::INVALID_PARAMETER, 0, 0, 0]);
        c.gprs.x[..4].copy_from_slice(&[0xC600_0003, 0x8000_1000, 0, 0]);
        assert_eq!(handle(&mut c, trap(hvc, 0), false, &OTHER), Outcome::Resume);
        assert_eq!(c.gprs.x[0], NOT_SUPPORTED, "a non-protected VM is not offered sharing");
        c.gprs.x[..4].copy_from_slice(&[0x8600_FF01, 5, 5, 5]);
        assert_eq!(handle(&mut c, trap(hvc, 0), false, &OTHER), Outcome::Resume);
        assert_eq!(&c.gprs.x[..4], &hyp_abi::KVM_VENDOR_HYP_UID);
    }

    #[test]
    fn touching_memory_the_host_took_back_is_fatal() {
        let mut c = ctx();
        let read = 0x24 << 26 | 1 << 25 | 1 << 24 | 0x7;
        let lost = &Fake(IpaKind::Lost);
        assert_eq!(
            handle(&mut c, trap(read, 0x8000_1000), true, lost),
            Outcome::ToHost { exit: Exit::Fatal { esr: 0, address: 0 }, pending_read: None },
            "protected: nothing about the fault is shown"
        );
        assert!(matches!(
            handle(&mut c, trap(read, 0x8000_1000), false, lost),
            Outcome::ToHost { exit: Exit::Fatal { address: 0x8000_1000, .. }, .. }
        ));
    }

    #[test]
    fn aborts_whose_hpfar_is_unknown_never_use_the_ipa() {
        // A synchronous external abort (with HCR_EL2.TEA) and a stage-2
        // permission fault carry no IPA: whatever the trap's `ipa` says, the
        // guest gets an abort, never an MMIO exit or a lost-page fatal exit.
        for fsc in [0x10, 0x0f, 0x21] {
            let esr = 0x24 << 26 | 1 << 25 | 1 << 24 | 1 << 6 | fsc;
            for view in [Fake(IpaKind::Lost), Fake(IpaKind::Other)] {
                let mut c = ctx();
                assert_eq!(handle(&mut c, trap(esr, 0x900_0000), true, &view), Outcome::Injected, "FSC {fsc:#x}");
                assert_eq!(c.sysregs.esr_el1 & 0x3f, 0x10);
            }
        }
    }

    #[test]
    fn other_traps_are_undefined_and_interrupts_go_home() {
        let mut c = ctx();
        assert_eq!(handle(&mut c, trap(0x18 << 26 | 1 << 25, 0), false, &OTHER), Outcome::Injected);
        assert_eq!((c.sysregs.esr_el1 >> 26, c.pc), (0, 0x8000_1200));
        let mut c = ctx();
        let irq = GuestTrap { kind: 1, ..trap(0, 0) };
        assert_eq!(handle(&mut c, irq, false, &OTHER), Outcome::ToHost { exit: Exit::Interrupted, pending_read: None });
        assert_eq!(c.pc, 0x8000_0000);
    }

    /// A VM whose mapping changes the test counts, and which counts its walks.
    struct Counting {
        kind: core::cell::Cell<IpaKind>,
        generation: core::cell::Cell<u64>,
        walks: core::cell::Cell<u32>,
    }

    impl Counting {
        fn new(kind: IpaKind) -> Counting {
            Counting { kind: kind.into(), generation: 7.into(), walks: 0.into() }
        }
    }

    impl VmView for Counting {
        fn ipa_kind(&self, _: u64) -> (IpaKind, u64) {
            self.walks.set(self.walks.get() + 1);
            (self.kind.get(), self.generation.get())
        }
        fn mappings_generation(&self) -> u64 {
            self.generation.get()
        }
        fn cpu_on(&self, _: u64, _: u64, _: u64) -> Result<u64, i64> {
            Err(-2)
        }
        fn affinity_info(&self, _: u64) -> i64 {
            1
        }
        fn send_sgi(&self, _: u64, _: u32) -> u64 {
            0
        }
        fn vcpu_index(&self) -> usize {
            0
        }
        fn id_register(&self, _: SysReg) -> u64 {
            0
        }
        fn cpacr(&self) -> u64 {
            0
        }
        fn sctlr(&self) -> u64 {
            crate::arch::context::SCTLR_EL1_RESET
        }
        fn vbar(&self) -> u64 {
            TEST_VBAR
        }
        fn set_cpacr(&self, _: u64) {}
        fn gicv3(&self) -> bool {
            true
        }
        fn mmio_guard(&self, _: GuardCall) -> u64 {
            NOT_SUPPORTED
        }
        fn guest_memory(&self, _: MemoryCall) -> u64 {
            NOT_SUPPORTED
        }
    }

    /// A 32-bit store of x1 that faults on translation (level 3), with a valid syndrome.
    const STORE_X1: u64 = 0x24 << 26 | 1 << 25 | 1 << 24 | 2 << 22 | 1 << 16 | 1 << 6 | 0x07;

    #[test]
    fn a_repeated_abort_on_one_page_is_answered_without_a_walk_until_a_mapping_changes() {
        let vm = Counting::new(IpaKind::Other);
        let mut c = ctx();
        let mmio = |outcome: Outcome| matches!(outcome, Outcome::ToHost { exit: Exit::Mmio { .. }, .. });
        assert!(mmio(handle(&mut c, trap(STORE_X1, 0x900_0000), false, &vm)));
        assert!(mmio(handle(&mut c, trap(STORE_X1, 0x900_0ff8), false, &vm)));
        assert_eq!(vm.walks.get(), 1, "the same page, nothing changed: remembered");
        assert!(mmio(handle(&mut c, trap(STORE_X1, 0x900_1000), false, &vm)));
        assert_eq!(vm.walks.get(), 2, "another page: walked");
        // The host maps memory there (any mapping change counts): the same
        // page is walked again, and the new answer holds.
        vm.kind.set(IpaKind::Lost);
        vm.generation.set(8);
        let lost = handle(&mut c, trap(STORE_X1, 0x900_1000), false, &vm);
        assert!(matches!(lost, Outcome::ToHost { exit: Exit::Fatal { .. }, .. }), "{lost:?}");
        assert_eq!(vm.walks.get(), 3);
        vm.kind.set(IpaKind::Refused);
        vm.generation.set(9);
        assert_eq!(handle(&mut c, trap(STORE_X1, 0x900_1000), true, &vm), Outcome::Injected);
        assert_eq!(vm.walks.get(), 4);
    }
}
