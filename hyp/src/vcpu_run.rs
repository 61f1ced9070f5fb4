//! One `VCPU_RUN`: claim the vCPU and fill its list registers under the VM
//! table's lock, run it without the lock, serve in the hyp the traps that need
//! no host (the guest's GIC distributor and redistributors, its CPU interface
//! on GICv2, SGIs, WFI with an interrupt pending, its virtual timer firing,
//! its emulated physical timer, the maintenance interrupt, PSCI), and release
//! it with its exit.
//!
//! Both timers' interrupts follow their output level: raised when it is
//! asserted, and lowered (the pending state only; an active interrupt is the
//! guest's to end) when the hyp sees it low: at entry, at every trap for an
//! interrupt a list register presents, and at each access to the physical
//! timer or to the guest's pending registers.

use crate::addr::Ipa;
use crate::arch::aarch64::gic_ppi::PpiFrame;
use crate::arch::aarch64::world::{run_guest, GuestEntry, LiveGic, VgicHardware};
use crate::arch::context::VcpuContext;
use crate::arch::esr::ExceptionClass;
use crate::arch::list_registers::VgicState;
use crate::arch::phys_timer::{PhysTimerReg, PTIMER_INTID};
use crate::arch::sysreg::SysRegAccess;
use crate::arch::timer::{self, VTIMER_INTID};
use crate::arch::trap_record::GuestTrap;
use crate::state::{gic_version_of, Hyp};
use crate::arch::aarch64::tlb::GuestStage2Tlb;
use crate::vm::exit::{GuardCall, MemoryCall, INVALID_PARAMETER, NOT_SUPPORTED};
use crate::vm::guest_trap::{self, IpaKind, Outcome, VmView};
use crate::vm::handle::{VcpuIndex, VmHandle};
use crate::vm::loaded::{self, Counted, Loaded};
use crate::vm::table::{vcpu_mpidr, GicWindows, PageRef, VcpuPower, Vm, VmState};
use crate::platform::MAX_CPUS;
use crate::vm::vgic_dist::Filled;
use crate::vm::vgic_mmio::{frame_of, reflects_list_registers, Frame};
use core::cell::{Cell, UnsafeCell};
use hyp_abi::{Exit, HypError, RunFlags};

/// Traps the hyp may serve in one run without returning to the host, so that a
/// guest calling the hyp in a loop cannot keep the host's CPU.
const MAX_TRAPS_PER_RUN: u32 = 4096;

/// The physical counter (CNTPCT_EL0).
pub fn physical_count() -> u64 {
    use aarch64_cpu::registers::{Readable, CNTPCT_EL0};
    CNTPCT_EL0.get()
}

pub fn vttbr_of(root: u64, vmid: u16) -> u64 {
    root | u64::from(vmid) << 48
}

/// The private interrupt tied to its physical twin in list registers (HW): the
/// virtual timer, on GICv3, where the hyp can reach this CPU's PPI state. On
/// GICv2 the guest's end of the interrupt traps anyway (its CPU interface is
/// emulated), and the hyp deactivates the physical PPI itself
/// ([`serve_gicv2_cpu_interface`]): QEMU's GICv2 left HW list registers
/// unsignalled at times, which hung guests under load.
fn hw_timer(hardware: VgicHardware, frame: PpiFrame) -> Option<u32> {
    (hardware == VgicHardware::V3 && frame.exists()).then_some(VTIMER_INTID)
}

/// Whether to ask for the maintenance interrupt after a fill: when interrupts
/// wait for a list register, and at least two are in use (underflow is "at
/// most one in use": with fewer, it would fire at once, again and again).
fn wants_underflow_interrupt(filled: Filled, lrs: &VgicState) -> bool {
    filled.overflow && lrs.held_intids().nth(1).is_some()
}

/// The VM of a running vCPU, as its trap handlers see it: each question takes
/// the VM table's lock for its answer only.
struct RunningVm<'a> {
    /// The hyp: its VM table (whose lock each question takes), and for the
    /// guest's memory calls its memory state.
    hyp: &'a Hyp,
    handle: VmHandle,
    vcpu: usize,
    hardware: VgicHardware,
    ppi_frame: PpiFrame,
    /// Its GIC windows (in the vCPU's page).
    gic: &'a GicWindows,
    /// How the host runs it (`hyp_abi::RunFlags`); the kick only on GICv3.
    flags: RunFlags,
    /// The distributor filled the vCPU's list registers during the run (it
    /// may have given them SPIs, which the exit must record).
    filled: Cell<bool>,
}

/// PSCI INTERNAL_FAILURE: the VM went away under the caller (cannot happen while
/// one of its vCPUs runs, which blocks teardown).
const PSCI_INTERNAL_FAILURE: i64 = -6;

impl RunningVm<'_> {
    fn with_vm<T>(&self, default: T, f: impl FnOnce(&mut Vm) -> T) -> T {
        let mut vms = self.hyp.vms().lock();
        match vms.get(self.handle) {
            Ok(vm) => f(vm),
            Err(_) => default,
        }
    }

    /// Moves what the vCPU can take into its list registers (live), and asks
    /// for the maintenance interrupt if some did not fit.
    fn fill(&self, ctx: &mut VcpuContext, live: &mut LiveGic) {
        self.filled.set(true);
        let count = self.hardware.list_registers();
        let hw = hw_timer(self.hardware, self.ppi_frame);
        let filled = self.with_vm(Default::default(), |vm| vm.gic.fill(self.vcpu, &mut ctx.vgic, count, hw));
        live.set_underflow_interrupt(wants_underflow_interrupt(filled, &ctx.vgic));
    }

    /// Gives what the vCPU's list registers hold as pending back to the
    /// distributor, for an access to its pending registers (the next fill
    /// puts back what is still pending); a timer's interrupt whose output is
    /// low is pending no more.
    #[cold]
    fn unfill_pending(&self, ctx: &mut VcpuContext, live: &LiveGic) {
        let vtimer_low = !live.timer_asserted();
        let ptimer_low = !ctx.ptimer.asserted(physical_count());
        self.with_vm((), |vm| {
            vm.gic.unfill_pending(self.vcpu, &mut ctx.vgic);
            if vtimer_low {
                vm.gic.lower_line(self.vcpu, VTIMER_INTID, &mut ctx.vgic);
            }
            if ptimer_low {
                vm.gic.lower_line(self.vcpu, PTIMER_INTID, &mut ctx.vgic);
            }
        });
    }

    /// After the guest's access to its pending registers: if neither a list
    /// register nor the distributor holds the virtual timer's interrupt from
    /// its physical PPI (the guest cleared it, or its output fell), the hyp's
    /// hold on the physical PPI ends, so that it can fire again.
    #[cold]
    fn settle_vtimer_ppi(&self, ctx: &VcpuContext, live: &mut LiveGic) {
        if ctx.vgic.slot_of(VTIMER_INTID).is_some() {
            return;
        }
        if !self.with_vm(false, |vm| vm.gic.pending_from_hardware(self.vcpu, VTIMER_INTID)) {
            live.deactivate_timer_ppi();
        }
    }

    /// The guest's physical timer asserts its output: PPI 30 is pending (also
    /// while a list register holds it active: pending and active).
    fn raise_ptimer(&self, ctx: &mut VcpuContext, live: &mut LiveGic) {
        if ctx.vgic.is_pending(PTIMER_INTID) {
            return;
        }
        self.with_vm((), |vm| vm.gic.make_pending_from_hardware(self.vcpu, PTIMER_INTID));
        self.fill(ctx, live);
    }

    /// The guest's physical timer's output is low: PPI 30's pending state
    /// goes.
    fn lower_ptimer(&self, ctx: &mut VcpuContext) {
        self.with_vm((), |vm| {
            vm.gic.lower_line(self.vcpu, PTIMER_INTID, &mut ctx.vgic);
        });
    }

    /// Without a GIC: the vCPU's virtual IRQ line as the host set it.
    fn irq_line(&self) -> bool {
        self.with_vm(false, |vm| vm.vcpus.get(self.vcpu).is_some_and(|v| v.irq_line))
    }

    /// The vCPU's virtual timer asserts its output: its interrupt is pending,
    /// tied to the physical PPI (the only interrupt that may be).
    fn timer_pending(&self) {
        self.with_vm((), |vm| {
            vm.gic.make_pending_from_hardware(self.vcpu, VTIMER_INTID);
        });
    }
}

impl VmView for RunningVm<'_> {
    fn ipa_kind(&self, ipa: u64) -> (IpaKind, u64) {
        self.hyp.vms().lock().ipa_kind(self.handle, Ipa::new(ipa))
    }

    fn mappings_generation(&self) -> u64 {
        crate::vm::table::guest_mappings_generation()
    }

    fn cpu_on(&self, target: u64, entry: u64, context: u64) -> Result<u64, i64> {
        self.with_vm(Err(PSCI_INTERNAL_FAILURE), |vm| vm.psci_cpu_on(target, entry, context))
    }

    fn affinity_info(&self, target: u64) -> i64 {
        self.with_vm(PSCI_INTERNAL_FAILURE, |vm| vm.psci_affinity_info(target))
    }

    fn send_sgi(&self, targets: u64, intid: u32) -> u64 {
        self.with_vm(0, |vm| {
            let before = vm.gic.deliverable_mask();
            vm.gic.send_sgi(targets, intid, self.vcpu);
            let after = vm.gic.deliverable_mask();
            let woken = after & !before | after & (1 << self.vcpu);
            woken & !kick_running(vm, woken & !(1 << self.vcpu))
        })
    }

    fn vcpu_index(&self) -> usize {
        self.vcpu
    }

    fn id_register(&self, reg: crate::arch::sysreg::SysReg) -> u64 {
        crate::arch::aarch64::id_regs::read_id_register(reg)
    }

    fn cpacr(&self) -> u64 {
        crate::arch::aarch64::cpacr::read()
    }

    fn sctlr(&self) -> u64 {
        crate::arch::aarch64::inject::live_sctlr_el1()
    }

    fn vbar(&self) -> u64 {
        crate::arch::aarch64::inject::live_vbar_el1()
    }

    fn set_cpacr(&self, value: u64) {
        crate::arch::aarch64::cpacr::write(value);
    }

    fn gicv3(&self) -> bool {
        self.hardware == VgicHardware::V3
    }

    fn mmio_guard(&self, call: GuardCall) -> u64 {
        self.hyp.vms().lock().mmio_guard(self.handle, call)
    }

    // Rare (a guest's I/O buffers change hands) and heavy (both locks, the
    // host's tables): kept out of the trap path's code.
    #[cold]
    #[inline(never)]
    fn guest_memory(&self, call: MemoryCall) -> u64 {
        let result = self.hyp.with_vms_from_guest(|vms, memory, env| {
            let vm = vms.get(self.handle)?;
            let mut tlb = GuestStage2Tlb { vttbr: vttbr_of(vm.stage2.root_address() as u64, vm.vmid()) };
            vms.guest_memory(self.handle, call, memory, env, &mut tlb)
        });
        match result {
            Ok(()) => 0,
            Err(HypError::NotSupported | HypError::NoSuchVm) => NOT_SUPPORTED,
            // pKVM refuses every bad request with INVALID_PARAMETER; the
            // reason is the guest's business (and a debug line's).
            Err(error) => {
                log::debug!("guest memory call {call:x?}: {error}");
                INVALID_PARAMETER
            }
        }
    }
}

/// Kicks the vCPUs in `targets` that run on a CPU whose host asked for kicks
/// (`RunFlags::kick_sgi`): sends each CPU its SGI. Returns those kicked, which
/// see their interrupts without the host. Under the VM table's lock, so a
/// target cannot leave its run unnoticed; a kick that lands after the target
/// went back to its host anyway is the host's to ignore.
fn kick_running(vm: &Vm, targets: u64) -> u64 {
    let mut kicked = 0;
    for (index, vcpu) in vm.vcpus.iter().enumerate().filter(|&(i, _)| targets & 1 << i != 0) {
        if let Some((mpidr, sgi)) = vcpu.ctx.kick_target() {
            crate::arch::aarch64::gicv3::send_sgi(mpidr, sgi);
            kicked |= 1 << index;
        }
    }
    kicked
}

/// The guest's physical timer after a change (its registers, the count):
/// its interrupt follows its output, and the EL2 timer is armed for the
/// moment the output rises.
fn update_phys_timer(ctx: &mut VcpuContext, live: &mut LiveGic, view: &RunningVm<'_>) {
    let asserted = ctx.ptimer.asserted(physical_count());
    live.set_phys_timer_deadline(if asserted { u64::MAX } else { ctx.ptimer.deadline() });
    if !live.is_present() {
        live.set_virtual_irq(view.irq_line() || live.timer_asserted() || asserted);
    } else if asserted {
        view.raise_ptimer(ctx, live);
    } else {
        view.lower_ptimer(ctx);
    }
}

/// A guest's access to its physical timer's registers (CNTP_CTL_EL0,
/// CNTP_CVAL_EL0, CNTP_TVAL_EL0, which trap: CNTHCTL_EL2.EL1PCEN is clear);
/// `None` for another system register.
fn serve_phys_timer(ctx: &mut VcpuContext, trap: &GuestTrap, live: &mut LiveGic, view: &RunningVm<'_>) -> Option<Outcome> {
    let access = SysRegAccess::decode(trap.esr.iss());
    let reg = PhysTimerReg::decode(access.reg)?;
    let rt = usize::from(access.rt);
    if access.read {
        if rt != 31 {
            ctx.gprs.x[rt] = ctx.ptimer.read(reg, physical_count());
        }
    } else {
        let value = if rt == 31 { 0 } else { ctx.gprs.x[rt] };
        ctx.ptimer.write(reg, value, physical_count());
        update_phys_timer(ctx, live, view);
    }
    // (Past it as the CPU would be: a step or branch-target state ends with it.)
    ctx.skip_instruction();
    Some(Outcome::Resume)
}

/// At every trap of a guest with a GIC, the timers' interrupts as the list
/// registers present them against the timers' outputs: the virtual timer's
/// pending interrupt goes when its output fell (the guest disabled, masked
/// or re-armed it without a trap), and the physical timer's comes back when
/// its output is still high after the guest ended it. Costs nothing while no
/// list register is in use and the physical timer is off.
#[inline(always)]
fn sample_timer_lines(ctx: &mut VcpuContext, live: &mut LiveGic, view: &RunningVm<'_>) {
    if ctx.vgic.used != 0 && ctx.vgic.is_pending(VTIMER_INTID) && !live.timer_asserted() {
        lower_vtimer(ctx, live);
    }
    if ctx.ptimer.armed() && ctx.ptimer.asserted(physical_count()) && !ctx.vgic.is_pending(PTIMER_INTID) {
        view.raise_ptimer(ctx, live);
    }
}

/// The virtual timer's output fell while a list register presents its
/// interrupt as pending: the pending state goes. If the list register is
/// empty then, the hyp's hold on the physical PPI ends too (the guest will
/// not deactivate what it never acknowledged); an active one stays, and the
/// guest's end of it deactivates the physical PPI as before.
#[cold]
fn lower_vtimer(ctx: &mut VcpuContext, live: &mut LiveGic) {
    if ctx.vgic.lower(VTIMER_INTID) == Some(true) {
        live.deactivate_timer_ppi();
    }
}

/// A physical interrupt while the guest ran: the guest's own virtual timer
/// firing, the EL2 timer at the guest's physical-timer deadline, the
/// maintenance interrupt and the host's kick (a sibling sent this vCPU an
/// interrupt) are served here; anything else (the EL2 timer at the host's
/// deadline among them) is the host's, which gets its CPU back.
fn serve_irq(ctx: &mut VcpuContext, live: &mut LiveGic, view: &RunningVm<'_>) -> Outcome {
    let hyp_timer = live.hyp_timer_fired();
    if hyp_timer && live.host_tick_due(physical_count()) {
        return Outcome::ToHost { exit: Exit::Interrupted, pending_read: None };
    }
    if hyp_timer {
        // The guest's physical timer's deadline: its output rose.
        update_phys_timer(ctx, live, view);
    }
    let kicked = view.flags.kick_sgi.is_some_and(|sgi| view.ppi_frame.take_pending(u32::from(sgi)));
    let mut ours = hyp_timer | kicked | live.maintenance_pending();
    if live.manages_timer_ppi() && live.timer_asserted() && !live.timer_ppi_active() {
        live.activate_timer_ppi();
        view.timer_pending();
        ours = true;
    }
    if !ours {
        return Outcome::ToHost { exit: Exit::Interrupted, pending_read: None };
    }
    view.fill(ctx, live);
    Outcome::Resume
}

/// A WFI or WFE: returns at once if the vCPU has an interrupt to take (also
/// with interrupts masked, as on hardware); else the host gets the CPU. A WFE
/// waits for an event the host cannot see (a sibling's SEV or store), so it
/// ends with the deadline 0, "runnable now": the host runs another vCPU of
/// that CPU first, if it has one (the yield to a lock holder), or this one again.
fn serve_wfi(ctx: &mut VcpuContext, wfe: bool, live: &mut LiveGic, view: &RunningVm<'_>) -> Outcome {
    if live.timer_asserted() {
        live.activate_timer_ppi();
        view.timer_pending();
    }
    if ctx.ptimer.asserted(physical_count()) {
        view.raise_ptimer(ctx, live);
    }
    view.fill(ctx, live);
    if !ctx.vgic.any_pending() && view.flags.wait_in_hyp {
        // The vCPU has this CPU to itself. A WFE goes on at once (it may end
        // early, as on hardware; a physical WFE here, with IRQs masked, might
        // not wake for the host's interrupts). A WFI waits here until a
        // physical interrupt (the guest's timer, a kick, the host's own, all
        // of which end a WFI also when masked); the guest then executes its
        // WFI again, which completes if an interrupt became pending for it,
        // and the physical one, still pending, traps first and is served
        // (`serve_irq`) or ends the run.
        if wfe {
            ctx.skip_instruction();
        } else {
            aarch64_cpu::asm::wfi();
        }
        return Outcome::Resume;
    }
    // Either way the guest goes on past its WFI (when the host runs it again).
    ctx.skip_instruction();
    if ctx.vgic.any_pending() {
        return Outcome::Resume;
    }
    let timer_deadline = if wfe { 0 } else { u64::MAX };
    Outcome::ToHost { exit: Exit::Wfi { timer_deadline }, pending_read: None }
}

/// A data abort (the caller checked) at the guest's GIC distributor or
/// redistributors: emulated. `None` if `trap` is not one (or cannot be
/// decoded: the caller injects an abort).
fn serve_gic_access(
    ctx: &mut VcpuContext,
    trap: &GuestTrap,
    live: &mut LiveGic,
    view: &RunningVm<'_>,
) -> Option<Outcome> {
    // Decided without the lock: most data aborts are the host's MMIO.
    let (frame, offset) = frame_of(gic_version_of(view.hardware), view.gic.vcpus, &view.gic.layout, trap.ipa)?;
    // (Without an IPA from HPFAR_EL2 `trap.ipa` is 0, which a window placed
    // at 0 would claim. From AArch32: `guest_trap::handle` ends the VM.)
    if !trap.esr.hpfar_valid() || guest_trap::in_aarch32(ctx) {
        return None;
    }
    let access = crate::vm::exit::decode_mmio(trap.esr)?;
    let register = usize::from(access.register);
    let write = access.write.then(|| if register == 31 { 0 } else { ctx.gprs.x[register] });
    // The pending and active registers see this vCPU's list registers (not
    // those of another vCPU, which may be running elsewhere).
    let own_pending =
        reflects_list_registers(frame, offset) && !matches!(frame, Frame::Redistributor { vcpu, .. } if vcpu != view.vcpu);
    if own_pending {
        view.unfill_pending(ctx, live);
    }
    // The load's register is written under the lock too: fewer values live
    // across it (scripts/bench).
    let gprs = &mut ctx.gprs;
    let woken = view.with_vm(0, |vm| {
        let before = if write.is_some() { vm.gic.deliverable_mask() } else { 0 };
        let effect = vm.gic.mmio(view.vcpu, frame, offset, access.size_bytes, write);
        if write.is_none() && register != 31 {
            gprs.x[register] = crate::vm::exit::load_value(access, effect.value);
        }
        if effect.may_deliver {
            vm.gic.deliverable_mask() & !before
        } else {
            0
        }
    });
    ctx.skip_instruction();
    if own_pending || woken & (1 << view.vcpu) != 0 {
        view.fill(ctx, live);
    }
    if own_pending {
        view.settle_vtimer_ppi(ctx, live);
    }
    Some(match woken & !(1 << view.vcpu) {
        0 => Outcome::Resume,
        targets => Outcome::ToHost { exit: Exit::Wake { targets }, pending_read: None },
    })
}

/// GICC_EOIR and GICC_DIR: where a GICv2 guest ends its interrupts.
const GICC_EOIR: u64 = 0x10;
const GICC_DIR: u64 = 0x1000;

/// On GICv2, a guest's access to its CPU interface (GICC at
/// `vgic_mmio::GicLayout::cpu_interface`) is performed on the virtual CPU
/// interface (GICV); `None` if `trap` (a data abort, the caller checked) was
/// not one. An access of another size than an aligned 32-bit word, or one
/// without a syndrome to decode, gets an abort: it never goes to the host as
/// MMIO, which would give it the guest's store. When the guest ends an SGI,
/// the same SGI from another source may take its list register.
fn serve_gicv2_cpu_interface(
    ctx: &mut VcpuContext,
    trap: &GuestTrap,
    live: &mut LiveGic,
    view: &RunningVm<'_>,
) -> Option<Outcome> {
    use crate::arch::aarch64::gicv2::{cpu_interface_access, CPU_INTERFACE_SIZE};
    let offset = trap.ipa.wrapping_sub(view.gic.layout.cpu_interface);
    // (From AArch32: `guest_trap::handle` ends the VM.)
    if offset >= CPU_INTERFACE_SIZE || !trap.esr.hpfar_valid() || guest_trap::in_aarch32(ctx) {
        return None;
    }
    let Some(access) = crate::vm::exit::decode_mmio(trap.esr).filter(|a| a.size_bytes == 4 && offset.is_multiple_of(4))
    else {
        guest_trap::inject_abort(ctx, trap, view);
        return Some(Outcome::Injected);
    };
    let register = usize::from(access.register);
    // The list registers as the hyp left them (a timer's interrupt lowered
    // at this trap) are what the access acts on; after it, the context
    // follows the interface (an acknowledged or ended interrupt), so that a
    // later load does not bring back a state the guest has moved past.
    live.flush(ctx);
    if access.write {
        let value = if register == 31 { 0 } else { ctx.gprs.x[register] as u32 };
        cpu_interface_access(offset, Some(value));
        live.resync(ctx);
        if (offset == GICC_EOIR || offset == GICC_DIR) && value & 0x3ff == VTIMER_INTID {
            // The guest ended its timer interrupt: the physical PPI may fire again.
            live.deactivate_timer_ppi();
        }
        if (offset == GICC_EOIR || offset == GICC_DIR) && value & 0x3ff < 16 {
            refill_after_sgi_end(ctx, value & 0x3ff, live, view);
        }
        if (offset == GICC_EOIR || offset == GICC_DIR) && value & 0x3ff == PTIMER_INTID {
            // Still asserted: pending again, as a level interrupt.
            refill_after_ptimer_end(ctx, live, view);
        }
    } else {
        let value = cpu_interface_access(offset, None);
        live.resync(ctx);
        if register != 31 {
            ctx.gprs.x[register] = crate::vm::exit::load_value(access, u64::from(value));
        }
    }
    ctx.skip_instruction();
    Some(Outcome::Resume)
}

/// The guest ended (or deactivated) GICv2 SGI `intid`: its list register as
/// the interface has it now, then the same SGI from its next source, if one
/// waits.
#[cold]
#[inline(never)]
fn refill_after_sgi_end(ctx: &mut VcpuContext, intid: u32, live: &mut LiveGic, view: &RunningVm<'_>) {
    if let Some(slot) = ctx.vgic.slot_of(intid) {
        crate::arch::aarch64::gicv2::sync_one(&mut ctx.vgic, slot);
    }
    view.fill(ctx, live);
}

/// The guest ended (or deactivated) its physical timer's interrupt (GICv2):
/// if the timer still asserts its output, the interrupt is pending again.
#[cold]
#[inline(never)]
fn refill_after_ptimer_end(ctx: &mut VcpuContext, live: &mut LiveGic, view: &RunningVm<'_>) {
    if let Some(slot) = ctx.vgic.slot_of(PTIMER_INTID) {
        crate::arch::aarch64::gicv2::sync_one(&mut ctx.vgic, slot);
    }
    if ctx.ptimer.asserted(physical_count()) {
        view.raise_ptimer(ctx, live);
    }
}

/// Without a GIC the guest's IRQ line (HCR_EL2.VI) is the host's line or one
/// of its timers' outputs, recomputed at every trap (a guest's interrupt
/// handler reads its interrupt controller, which traps) and at entry.
fn update_irq_line(
    ctx: &mut VcpuContext,
    trap: &GuestTrap,
    live: &mut LiveGic,
    view: &RunningVm<'_>,
) -> Option<Outcome> {
    let ptimer = ctx.ptimer.asserted(physical_count());
    live.set_virtual_irq(view.irq_line() || live.timer_asserted() || ptimer);
    if trap.kind == 0 && trap.esr.class() == ExceptionClass::WfiWfe && live.virtual_irq() && !guest_trap::in_aarch32(ctx)
    {
        // An interrupt is pending: WFI returns at once.
        ctx.skip_instruction();
        return Some(Outcome::Resume);
    }
    None
}

/// Serves one trap of the running guest.
fn serve(ctx: &mut VcpuContext, trap: GuestTrap, live: &mut LiveGic, view: &RunningVm<'_>, protected: bool) -> Outcome {
    if trap.kind == 0 && trap.esr.class() == ExceptionClass::SysReg {
        if let Some(outcome) = serve_phys_timer(ctx, &trap, live, view) {
            return outcome;
        }
    }
    // A GIC is present exactly when the hardware is not `None`: the GIC's
    // traps first (the most frequent), the line without a GIC after.
    if live.is_present() {
        sample_timer_lines(ctx, live, view);
    }
    if trap.kind == 0 && live.is_present() {
        match trap.esr.class() {
            // (From AArch32: `guest_trap::handle` ends the VM.)
            ExceptionClass::WfiWfe if !guest_trap::in_aarch32(ctx) => {
                return serve_wfi(ctx, trap.esr.is_wfe(), live, view)
            }
            // (An abort whose IPA HPFAR_EL2 did not give has `ipa` 0, which
            // is no GIC frame: it goes on to `guest_trap::handle`.)
            ExceptionClass::DataAbortLower => {
                if view.hardware == VgicHardware::V2 {
                    if let Some(outcome) = serve_gicv2_cpu_interface(ctx, &trap, live, view) {
                        return outcome;
                    }
                }
                if let Some(outcome) = serve_gic_access(ctx, &trap, live, view) {
                    return outcome;
                }
            }
            _ => {}
        }
    }
    if view.hardware == VgicHardware::None {
        if let Some(outcome) = update_irq_line(ctx, &trap, live, view) {
            return outcome;
        }
    }
    if trap.kind == 1 {
        return serve_irq(ctx, live, view);
    }
    guest_trap::handle(ctx, trap, protected, view)
}

/// What a `VCPU_RUN` asks for, and where it runs.
#[derive(Clone, Copy)]
struct RunRequest {
    /// This CPU's index.
    cpu: usize,
    handle: VmHandle,
    vcpu: VcpuIndex,
    /// The host's kick while the vCPU runs: this CPU's MPIDR and the SGI.
    kick: Option<(u64, u8)>,
    hardware: VgicHardware,
    ppi_frame: PpiFrame,
    /// What the MMIO load the vCPU waits for reads.
    mmio_read_value: u64,
}

/// A claimed vCPU, ready to run.
struct Claim {
    ctx: *mut VcpuContext,
    entry: GuestEntry,
    protected: bool,
    index: usize,
    /// The distributor holds records of the vCPU that its exit must update
    /// under the lock (SPIs its list registers hold, active interrupts noted
    /// at an earlier exit).
    exit_needs_distributor: bool,
    /// The vCPU's page (what releases it).
    page: PageRef,
    /// A claim under the lock that had nothing to do but claim: its VM's
    /// access count then (the CPU remembers the vCPU if its exit releases
    /// it without the lock too).
    quiet: Option<Counted>,
}

/// What a claim under the lock found that a claim without it reuses
/// (`vm::loaded`): remembered only when that claim had nothing to do but
/// claim (no interrupt to deliver or lower, no timer output high, nothing for
/// the exit to record), which stays so while nothing touches the VM.
#[derive(Clone, Copy)]
struct QuietRun {
    vttbr: u64,
    cntvoff: u64,
    protected: bool,
    /// Without a GIC: the vCPU's IRQ line as the host set it (the timers'
    /// outputs were low).
    irq_line: bool,
    index: usize,
}

/// Per CPU, the vCPU it claimed last under the lock if that claim was quiet
/// and its run ended in a release without the lock.
struct LoadedOnCpu(UnsafeCell<Option<Loaded<QuietRun>>>);

// SAFETY: Each CPU reads and writes only the element of its own index
// (`loaded_on`), at EL2 with interrupts masked: never two at once.
unsafe impl Sync for LoadedOnCpu {}

static LOADED: [LoadedOnCpu; MAX_CPUS] = [const { LoadedOnCpu(UnsafeCell::new(None)) }; MAX_CPUS];

/// CPU `cpu`'s remembered vCPU.
///
/// # Safety
///
/// `cpu` is this CPU's index, and no other reference to its element lives.
unsafe fn loaded_on(cpu: usize) -> Option<&'static mut Option<Loaded<QuietRun>>> {
    // SAFETY: As the caller vouches (see `LoadedOnCpu`'s Sync).
    LOADED.get(cpu).map(|cell| unsafe { &mut *cell.0.get() })
}

/// Claims the vCPU without the VM table's lock if this CPU ran it last and
/// nothing touched its VM since (`vm::loaded`), and it is still quiet: both
/// timers' outputs low, no line raised, empty list registers. Completes the
/// MMIO load it waits for.
#[inline(always)]
fn claim_loaded(request: RunRequest) -> Option<Claim> {
    let RunRequest { cpu, handle, vcpu, kick, hardware, ppi_frame, mmio_read_value } = request;
    // SAFETY: `cpu` is this CPU's index; the reference ends with this call.
    let loaded = unsafe { loaded_on(cpu) }?;
    let (page, run) = loaded::claim(cpu, loaded.as_ref(), handle, vcpu, kick)?;
    // SAFETY: Claimed just now at an unchanged count: the context is this
    // CPU's alone until it releases the vCPU.
    let ctx = unsafe { &mut *page.context() };
    let now = physical_count();
    let timer_output = timer::asserted(ctx.sysregs.cntv_ctl, ctx.sysregs.cntv_cval, now.wrapping_sub(run.cntvoff));
    // (Read before the pending load is taken, whose write the compiler does
    // not see past.)
    let phys_timer_deadline = ctx.ptimer.deadline();
    if timer_output || ctx.ptimer.asserted(now) || ctx.vgic.line != 0 || ctx.vgic.used != 0 {
        page.unclaim();
        return None;
    }
    // SAFETY: As above.
    if let Some(access) = unsafe { page.take_pending_read() } {
        guest_trap::complete_read(ctx, access, mmio_read_value);
    }
    let entry = GuestEntry {
        vttbr: run.vttbr,
        vmpidr: vcpu_mpidr(run.index),
        flush_local_tlb: false,
        vgic: hardware,
        cntvoff: run.cntvoff,
        ppi_frame,
        timer_physically_active: false,
        underflow_interrupt: false,
        virtual_irq: hardware == VgicHardware::None && run.irq_line,
        phys_timer_deadline,
        protected: run.protected,
    };
    Some(Claim {
        ctx: ctx as *mut VcpuContext,
        entry,
        protected: run.protected,
        index: run.index,
        exit_needs_distributor: false,
        page,
        quiet: None,
    })
}

/// Claims the vCPU under the VM table's lock: its timers' lines, the
/// distributor's decisions, the list registers filled; says whether there
/// was nothing to do but claim (`Claim::quiet`: the release then remembers
/// the vCPU for this CPU's next run).
// Out of line: the run's own function stays small enough that the claim
// without the lock and the trap loop keep their values in registers
// (scripts/bench: the MMIO round trip 907 inline, 895 out of line; a run
// that claims under the lock pays about 50 for the call).
#[inline(never)]
fn claim_locked(hyp: &Hyp, request: RunRequest) -> Result<Claim, HypError> {
    let RunRequest { cpu, handle, vcpu, kick, hardware, ppi_frame, mmio_read_value } = request;
    let mut vms = hyp.vms().lock();
    let (vm, touches) = vms.get_counted(handle)?;
    if vm.state != VmState::Alive {
        return Err(HypError::NoSuchVm);
    }
    let index = vcpu.to_usize().filter(|&i| i < vm.vcpus.len()).ok_or(HypError::NoSuchVcpu)?;
    if vm.vcpus[index].power == VcpuPower::Off {
        return Err(HypError::VcpuOff);
    }
    // First: from here on the context is this CPU's (a CPU that ran the
    // vCPU last may claim it without the lock: `vm::loaded`).
    if !vm.vcpus[index].ctx.claim(kick) {
        return Err(HypError::Busy);
    }
    let flush_local_tlb = vm.switch_vcpu_on_cpu(cpu, index);
    let vttbr = vttbr_of(vm.stage2.root_address() as u64, vm.vmid());
    vm.ran = true;
    let v = &mut vm.vcpus[index];
    // The timers are level-triggered: asserted at entry, their
    // interrupts are pending; low, they are not (an active one stays).
    let now = physical_count();
    let (ctl, cval) = (v.ctx.sysregs.cntv_ctl, v.ctx.sysregs.cntv_cval);
    let timer_output = timer::asserted(ctl, cval, now.wrapping_sub(vm.cntvoff));
    let timer_asserted = hardware != VgicHardware::None && timer_output;
    let ptimer_output = v.ctx.ptimer.asserted(now);
    if timer_asserted {
        vm.gic.make_pending_from_hardware(index, VTIMER_INTID);
    }
    if hardware != VgicHardware::None && ptimer_output {
        vm.gic.make_pending_from_hardware(index, PTIMER_INTID);
    }
    // (Only a timer interrupt raised from its line can fall: nothing to
    // look at for most runs.)
    let line = v.ctx.vgic.line;
    let raised = |intid: u32| line & 1 << intid != 0;
    let lines_to_look_at = hardware != VgicHardware::None && (line != 0 || vm.gic.any_from_hardware(index));
    if lines_to_look_at {
        if !timer_asserted && (raised(VTIMER_INTID) || vm.gic.pending_from_hardware(index, VTIMER_INTID)) {
            vm.gic.lower_line(index, VTIMER_INTID, &mut v.ctx.vgic);
        }
        if !ptimer_output && (raised(PTIMER_INTID) || vm.gic.pending_from_hardware(index, PTIMER_INTID)) {
            vm.gic.lower_line(index, PTIMER_INTID, &mut v.ctx.vgic);
        }
    }
    let may_fill = hardware != VgicHardware::None && vm.gic.may_fill(index);
    let filled = if may_fill {
        vm.gic.fill(index, &mut v.ctx.vgic, hardware.list_registers(), hw_timer(hardware, ppi_frame))
    } else {
        Default::default()
    };
    let entry = GuestEntry {
        vttbr,
        vmpidr: vcpu_mpidr(index),
        flush_local_tlb,
        vgic: hardware,
        cntvoff: vm.cntvoff,
        ppi_frame,
        timer_physically_active: timer_asserted || v.ctx.vgic.slot_of(VTIMER_INTID).is_some(),
        underflow_interrupt: wants_underflow_interrupt(filled, &v.ctx.vgic),
        virtual_irq: hardware == VgicHardware::None && (v.irq_line || timer_output || ptimer_output),
        phys_timer_deadline: if ptimer_output { u64::MAX } else { v.ctx.ptimer.deadline() },
        protected: vm.protected,
    };
    if let Some(access) = v.ctx.take_pending_read() {
        guest_trap::complete_read(&mut v.ctx, access, mmio_read_value);
    }
    v.power = VcpuPower::On;
    // Without records to update and without a change during the run, the
    // exit releases the vCPU without the lock.
    let exit_needs_distributor = vm.gic.holds_spis(index) || vm.gic.has_noted_active(index);
    // (The claim without the lock looks at the list registers and the
    // lines itself.)
    let quiet = !timer_output && !ptimer_output && !lines_to_look_at && !may_fill && !exit_needs_distributor;
    let (ctx, page) = (&mut *v.ctx as *mut VcpuContext, v.ctx.page_ref());
    // SAFETY: Claimed above; no reference to the windows lives.
    unsafe { page.set_gic_windows(GicWindows { layout: vm.gic_layout, vcpus: vm.vcpus.len() }) };
    Ok(Claim {
        ctx,
        entry,
        protected: vm.protected,
        index,
        exit_needs_distributor,
        page,
        quiet: quiet.then(|| Counted::now(touches)),
    })
}

/// `VCPU_RUN`: see `docs/abi.md`.
pub fn vcpu_run(
    hyp: &Hyp,
    handle: VmHandle,
    vcpu: VcpuIndex,
    mmio_read_value: u64,
    flags: RunFlags,
) -> Result<Exit, HypError> {
    let flags = RunFlags { kick_sgi: flags.kick_sgi.filter(|_| hyp.vgic == VgicHardware::V3), ..flags };
    // Claim the vCPU (without the lock if this CPU ran it last and nothing
    // touched its VM since: `vm::loaded`); run it without the lock.
    let vms_lock = hyp.vms();
    let this_cpu = crate::arch::aarch64::percpu::this_cpu();
    let hardware = hyp.vgic;
    let ppi_frame = PpiFrame(this_cpu.ppi_frame);
    let kick = flags.kick_sgi.map(|sgi| (this_cpu.mpidr, sgi));
    let request = || RunRequest { cpu: this_cpu.index, handle, vcpu, kick, hardware, ppi_frame, mmio_read_value };
    let Claim { ctx, entry, protected, index, exit_needs_distributor, page, quiet } = match claim_loaded(request()) {
        Some(claimed) => claimed,
        None => claim_locked(hyp, request())?,
    };
    // SAFETY: The claim gives this CPU the vCPU alone until it releases it below;
    // the context is in its own page (it does not move) and the VM cannot be
    // freed while a vCPU runs (teardown answers Busy).
    let ctx = unsafe { &mut *ctx };
    // SAFETY: As above; the reference ends with the run, before the release.
    let gic = unsafe { page.gic_windows() };
    let view = RunningVm {
        hyp,
        handle,
        vcpu: index,
        hardware,
        ppi_frame,
        gic,
        flags,
        filled: Cell::new(false),
    };
    let mut traps = 0u32;
    let (exit, pending_read) = run_guest(ctx, entry, |ctx, trap, live| {
        traps += 1;
        match serve(ctx, trap, live, &view, protected) {
            Outcome::ToHost { exit, pending_read } => return Some((exit, pending_read)),
            // A guest without a working vector ends. Any other injection is
            // the guest's to handle, however many it takes (a program
            // catching its own faults); a guest that loops through its
            // vectors anyway is bounded like any other by the traps of a run.
            Outcome::Injected if guest_trap::injected_at_its_own_vector(ctx) => {
                let (esr, address) = if protected { (0, 0) } else { (trap.esr.0, trap.ipa) };
                return Some((Exit::Fatal { esr, address }, None));
            }
            Outcome::Injected => {}
            Outcome::Deliver => view.fill(ctx, live),
            Outcome::Resume => {}
        }
        (traps >= MAX_TRAPS_PER_RUN).then_some((Exit::Interrupted, None))
    });
    // Most exits (MMIO, interrupts, hypercalls) of a vCPU with empty list
    // registers, no SPIs given to it and nothing noted: nothing to record
    // in the distributor, so no lock (`release_ended` and `note_active`
    // below would do nothing).
    let plain_exit = !matches!(exit, Exit::Fatal { .. } | Exit::Wfi { .. } | Exit::CpuOff);
    if plain_exit && !exit_needs_distributor && !view.filled.get() && ctx.vgic.used == 0 {
        if let Some(counted) = quiet {
            // Nothing to do but claim at the claim, nothing to record now:
            // this CPU's next run of the vCPU claims it without the lock
            // while nothing touches the VM (`vm::loaded`).
            let run = QuietRun {
                vttbr: entry.vttbr,
                cntvoff: entry.cntvoff,
                protected,
                irq_line: entry.virtual_irq,
                index,
            };
            // SAFETY: This CPU's index; the reference ends here.
            if let Some(loaded) = unsafe { loaded_on(this_cpu.index) } {
                *loaded = Some(Loaded::new(handle, vcpu, counted, page, run));
            }
        }
        page.release_handle().release(pending_read);
        return Ok(exit);
    }
    let mut vms = vms_lock.lock();
    // (The access below counts: what this CPU remembered of the vCPU no
    // longer holds, and its next claim need not look.)
    // SAFETY: This CPU's index; the reference ends here.
    if let Some(loaded) = unsafe { loaded_on(this_cpu.index) } {
        *loaded = None;
    }
    let Ok(vm) = vms.get(handle) else {
        page.release_handle().release(pending_read);
        return Ok(exit);
    };
    if matches!(exit, Exit::Fatal { .. }) {
        vm.state = VmState::Crashed;
    }
    if vm.gic.holds_spis(index) {
        vm.gic.release_ended(index, &ctx.vgic);
    }
    vm.gic.note_active(index, &ctx.vgic);
    let exit = match exit {
        // A WFE (see `serve_wfi`).
        Exit::Wfi { timer_deadline: 0 } => exit,
        // The earlier of the timers' deadlines (physical counts); a timer
        // whose interrupt the guest disabled wakes nothing.
        Exit::Wfi { .. } => {
            let enabled = |vm: &mut Vm, intid: u32| {
                hardware == VgicHardware::None || vm.gic.private(index).is_some_and(|p| p.enabled & 1 << intid != 0)
            };
            let virtual_deadline = if enabled(vm, VTIMER_INTID) {
                let (ctl, cval) = (ctx.sysregs.cntv_ctl, ctx.sysregs.cntv_cval);
                timer::deadline_with_offset(ctl, cval, entry.cntvoff, physical_count())
            } else {
                u64::MAX
            };
            let physical_deadline = if enabled(vm, PTIMER_INTID) { ctx.ptimer.deadline() } else { u64::MAX };
            Exit::Wfi { timer_deadline: virtual_deadline.min(physical_deadline) }
        }
        other => other,
    };
    if let Some(v) = vm.vcpus.get_mut(index) {
        if exit == Exit::CpuOff {
            v.power = VcpuPower::Off;
        }
    }
    page.release_handle().release(pending_read);
    Ok(exit)
}
