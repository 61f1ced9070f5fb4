//! The hyp's implementation of the host's memory calls: each takes the memory
//! lock, runs the transition with the hyp's environment, and logs failures at
//! debug level (a hostile host must not be able to flood the console).

use crate::arch::aarch64::tlb::GuestStage2Tlb;
use crate::arch::aarch64::world::{run_guest, GuestEntry, VgicHardware};
use crate::hypercall::HostServices;
use crate::mm::invariants;
use crate::mm::memory::{Env, MemoryState};
use crate::vm::context::VcpuContext;
use crate::vm::guest_trap::{self, IpaKind, Outcome, VmView};
use crate::vm::table::{vcpu_mpidr, GuestPages, VcpuPower, VmState, VmTable};
use crate::vm::vtimer;
use alloc::vec::Vec;
use hyp_abi::{Exit, HypError};

/// Injected exceptions one run may take before the VM is declared dead: a
/// guest with no working vector faults at its vector forever.
const MAX_INJECTIONS_PER_RUN: u32 = 64;
/// Traps the hyp may serve in one run without returning to the host, so that a
/// guest calling the hyp in a loop cannot keep the host's CPU.
const MAX_TRAPS_PER_RUN: u32 = 4096;

/// The host calls, served by the hyp's global state.
pub struct HypServices;

/// Runs `f` with the VM table, the memory state and the hyp's environment, in
/// lock order (VMs, then memory).
fn with_vms<T>(
    f: impl FnOnce(&mut VmTable, &mut MemoryState, &mut Env<'_>) -> Result<T, HypError>,
) -> Result<T, HypError> {
    let vms = crate::boot::vms().ok_or(HypError::Busy)?;
    let mut vms = vms.lock();
    crate::boot::with_memory(|memory, env| f(&mut vms, memory, env)).unwrap_or(Err(HypError::Busy))
}

/// The TLB maintenance of a VM's stage-2.
fn guest_tlb(vms: &mut VmTable, handle: u64) -> Result<GuestStage2Tlb, HypError> {
    let vm = vms.get(handle)?;
    Ok(GuestStage2Tlb { vttbr: vttbr_of(vm.stage2.root_address() as u64, vm.vmid()) })
}

/// The VM of a running vCPU, as its trap handler sees it: each question takes
/// the VM table's lock for its answer only.
struct RunningVm {
    vms: &'static spin::Mutex<VmTable>,
    handle: u64,
    vcpu: usize,
}

/// PSCI INTERNAL_FAILURE: the VM went away under the caller (cannot happen while
/// one of its vCPUs runs, which blocks teardown).
const PSCI_INTERNAL_FAILURE: i64 = -6;

impl VmView for RunningVm {
    fn ipa_kind(&self, ipa: u64) -> IpaKind {
        self.vms.lock().ipa_kind(self.handle, ipa)
    }

    fn cpu_on(&self, target: u64, entry: u64, context: u64) -> Result<u64, i64> {
        let mut vms = self.vms.lock();
        let vm = vms.get(self.handle).map_err(|_| PSCI_INTERNAL_FAILURE)?;
        vm.psci_cpu_on(target, entry, context)
    }

    fn affinity_info(&self, target: u64) -> i64 {
        let mut vms = self.vms.lock();
        vms.get(self.handle).map_or(PSCI_INTERNAL_FAILURE, |vm| vm.psci_affinity_info(target))
    }

    fn send_sgi(&self, targets: u64, intid: u32) -> u64 {
        let mut vms = self.vms.lock();
        let Ok(vm) = vms.get(self.handle) else {
            return 0;
        };
        let mut sent = 0;
        for (index, vcpu) in vm.vcpus.iter_mut().enumerate().filter(|(i, _)| targets & (1 << i) != 0) {
            if vcpu.irq_queue.add(intid) {
                sent |= 1 << index;
            }
        }
        sent
    }

    fn vcpu_index(&self) -> usize {
        self.vcpu
    }
}

/// The physical counter (CNTPCT_EL0).
fn physical_count() -> u64 {
    use aarch64_cpu::registers::{Readable, CNTPCT_EL0};
    CNTPCT_EL0.get()
}

/// The virtual interface that presents guests' interrupts: GICv3's (in the
/// device tree, with its system registers on this CPU), GICv2's (GICH and GICV
/// in the device tree), or none.
fn vgic_hardware() -> VgicHardware {
    let gicv3 = crate::boot::platform().is_some_and(|p| matches!(p.gic, Some(crate::platform::Gic::V3 { .. })));
    if gicv3 && crate::arch::aarch64::gicv3::has_system_registers() {
        VgicHardware::V3
    } else if crate::arch::aarch64::gicv2::available() {
        VgicHardware::V2
    } else {
        VgicHardware::None
    }
}

/// On GICv2, a guest's write of GICD_SGIR (in its distributor window at
/// [`hyp_abi::GUEST_GICV2_DISTRIBUTOR`]) sends an SGI to its vCPUs: queued for
/// them; `Some(the vCPUs sent to)` if `trap` was one (the guest moves past it).
fn serve_gicv2_sgir(ctx: &mut VcpuContext, trap: &guest_trap::GuestTrap, view: &RunningVm) -> Option<u64> {
    const GICD_SGIR: u64 = 0xf00;
    if trap.esr.class() != crate::esr::ExceptionClass::DataAbortLower
        || trap.ipa != hyp_abi::GUEST_GICV2_DISTRIBUTOR + GICD_SGIR
    {
        return None;
    }
    let access = crate::vm::exit::decode_mmio(trap.esr).filter(|a| a.write && a.size_bytes == 4)?;
    let register = usize::from(access.register);
    let value = if register == 31 { 0 } else { ctx.gprs.x[register] as u32 };
    ctx.pc = ctx.pc.wrapping_add(4);
    let (targets, intid) = guest_trap::gicv2_sgir_targets(value, view.vcpu_index());
    Some(view.send_sgi(targets, intid))
}

/// On GICv2, a guest's access to its CPU interface (GICC at
/// [`hyp_abi::GUEST_GICV2_CPU_INTERFACE`]) is performed on the virtual CPU
/// interface (GICV); true if `trap` was one (then the guest moves past it).
fn serve_gicv2_cpu_interface(ctx: &mut VcpuContext, trap: &guest_trap::GuestTrap) -> bool {
    use crate::arch::aarch64::gicv2::{cpu_interface_access, CPU_INTERFACE_SIZE};
    let offset = trap.ipa.wrapping_sub(hyp_abi::GUEST_GICV2_CPU_INTERFACE);
    if trap.esr.class() != crate::esr::ExceptionClass::DataAbortLower || offset >= CPU_INTERFACE_SIZE {
        return false;
    }
    let Some(access) = crate::vm::exit::decode_mmio(trap.esr).filter(|a| a.size_bytes == 4 && offset.is_multiple_of(4))
    else {
        return false;
    };
    let register = usize::from(access.register);
    if access.write {
        let value = if register == 31 { 0 } else { ctx.gprs.x[register] as u32 };
        cpu_interface_access(offset, Some(value));
    } else {
        let value = cpu_interface_access(offset, None);
        if register != 31 {
            ctx.gprs.x[register] = crate::vm::exit::load_value(access, u64::from(value));
        }
    }
    ctx.pc = ctx.pc.wrapping_add(4);
    true
}

fn vttbr_of(root: u64, vmid: u16) -> u64 {
    root | u64::from(vmid) << 48
}

fn run(
    name: &str,
    start: u64,
    pages: u64,
    f: impl FnOnce(&mut MemoryState, &mut Env<'_>) -> Result<(), HypError>,
) -> Result<(), HypError> {
    let result = crate::boot::with_memory(f).unwrap_or(Err(HypError::Busy));
    if let Err(error) = result {
        log::debug!("host {name} {start:#x} x{pages}: {error}");
    }
    result
}

impl HostServices for HypServices {
    fn share_hyp(&mut self, start: u64, pages: u64) -> Result<(), HypError> {
        run("share", start, pages, |s, env| s.host_share_hyp(start, pages, env))
    }

    fn unshare_hyp(&mut self, start: u64, pages: u64) -> Result<(), HypError> {
        run("unshare", start, pages, |s, env| s.host_unshare_hyp(start, pages, env))
    }

    fn donate_hyp(&mut self, start: u64, pages: u64) -> Result<(), HypError> {
        run("donate", start, pages, |s, env| s.host_donate_hyp(start, pages, env))
    }

    fn reclaim_hyp(&mut self, start: u64, pages: u64) -> Result<(), HypError> {
        run("reclaim", start, pages, |s, env| s.host_reclaim_hyp(start, pages, env))
    }

    fn check_invariants(&mut self) -> [u64; 3] {
        let devices = crate::boot::hyp_devices();
        let devices = devices.as_slice();
        let Some(vms) = crate::boot::vms() else {
            return [u64::MAX, 0, 0];
        };
        let vms = vms.lock();
        let guests: Vec<_> = vms.stage2s().collect();
        crate::boot::with_memory(|state, _| {
            let report = invariants::check(state, devices, &guests);
            for violation in report.first.as_slice() {
                log::warn!("invariant violated: {violation}");
            }
            let (free, used) = state.memcache_pages();
            let (pool_used, _) = crate::HEAP.usage();
            [report.count as u64, free | used << 32, pool_used as u64]
        })
        .unwrap_or([u64::MAX, 0, 0])
    }

    fn debug_exchange(&mut self, address: u64, value: u64) -> Result<u64, HypError> {
        crate::boot::with_memory(|state, env| state.debug_exchange(address, value, env)).unwrap_or(Err(HypError::Busy))
    }

    fn vm_create(&mut self, ty: u64, vcpus: u64) -> Result<u64, HypError> {
        with_vms(|vms, memory, env| {
            let handle = vms.create(ty, vcpus, memory, env)?;
            vms.get(handle)?.cntvoff = physical_count();
            Ok(handle)
        })
    }

    fn vm_map(&mut self, handle: u64, pa: u64, ipa: u64, pages: u64) -> Result<(), HypError> {
        with_vms(|vms, memory, env| {
            let mut tlb = guest_tlb(vms, handle)?;
            vms.map(handle, GuestPages { pa, ipa, count: pages }, memory, env, &mut tlb)
        })
    }

    fn vcpu_init(&mut self, handle: u64, vcpu: u64, pc: u64, x0: u64) -> Result<(), HypError> {
        with_vms(|vms, _, _| vms.vcpu_init(handle, vcpu, pc, x0))
    }

    fn vcpu_run(&mut self, handle: u64, vcpu: u64, mmio_read_value: u64) -> Result<Exit, HypError> {
        // Claim the vCPU under the lock; run it without the lock.
        let Some(vms_lock) = crate::boot::vms() else {
            return Err(HypError::Busy);
        };
        let cpu = crate::percpu::this_cpu().index;
        let (ctx, entry, protected) = {
            let mut vms = vms_lock.lock();
            let vm = vms.get(handle)?;
            if vm.state != VmState::Alive {
                return Err(HypError::NoSuchVm);
            }
            let index = usize::try_from(vcpu).ok().filter(|&i| i < vm.vcpus.len()).ok_or(HypError::NoSuchVcpu)?;
            let v = &vm.vcpus[index];
            if v.running {
                return Err(HypError::Busy);
            }
            if v.power == VcpuPower::Off {
                return Err(HypError::VcpuOff);
            }
            let entry = GuestEntry {
                vttbr: vttbr_of(vm.stage2.root_address() as u64, vm.vmid()),
                vmpidr: vcpu_mpidr(index),
                flush_local_tlb: vm.switch_vcpu_on_cpu(cpu, index),
                vgic: vgic_hardware(),
                cntvoff: vm.cntvoff,
            };
            let protected = vm.protected;
            let v = &mut vm.vcpus[index];
            if !v.irq_queue.is_empty() {
                v.ctx.vgic.queue.take_all(&mut v.irq_queue);
            }
            // The timer is level-triggered: asserted at entry, it is presented.
            let timer = (v.ctx.sysregs.cntv_ctl, v.ctx.sysregs.cntv_cval);
            let virtual_now = physical_count().wrapping_sub(entry.cntvoff);
            if entry.vgic != VgicHardware::None
                && vtimer::asserted(timer.0, timer.1, virtual_now)
                && !v.ctx.vgic.holds(vtimer::VTIMER_INTID)
            {
                v.ctx.vgic.queue.add(vtimer::VTIMER_INTID);
            }
            if let Some(access) = v.pending_read.take() {
                guest_trap::complete_read(&mut v.ctx, access, mmio_read_value);
            }
            v.running = true;
            v.power = VcpuPower::On;
            (&mut *v.ctx as *mut VcpuContext, entry, protected)
        };
        // SAFETY: `running` gives this CPU the vCPU alone until it is cleared below;
        // the context is in its own page (it does not move) and the VM cannot be
        // freed while a vCPU runs (teardown answers Busy).
        let ctx = unsafe { &mut *ctx };
        let view = RunningVm { vms: vms_lock, handle, vcpu: vcpu as usize };
        let (mut injections, mut traps) = (0u32, 0u32);
        let (exit, pending_read) = run_guest(ctx, entry, |ctx, trap| {
            traps += 1;
            if entry.vgic == VgicHardware::V2 && trap.kind == 0 {
                if serve_gicv2_cpu_interface(ctx, &trap) {
                    return (traps >= MAX_TRAPS_PER_RUN).then_some((Exit::Interrupted, None));
                }
                if let Some(sent) = serve_gicv2_sgir(ctx, &trap, &view) {
                    return match sent {
                        0 => (traps >= MAX_TRAPS_PER_RUN).then_some((Exit::Interrupted, None)),
                        targets => Some((Exit::Sgi { targets }, None)),
                    };
                }
            }
            match guest_trap::handle(ctx, trap, protected, &view) {
                Outcome::ToHost { exit, pending_read } => return Some((exit, pending_read)),
                Outcome::Injected if injections + 1 >= MAX_INJECTIONS_PER_RUN => {
                    let (esr, address) = if protected { (0, 0) } else { (trap.esr.0, trap.ipa) };
                    return Some((Exit::Fatal { esr, address }, None));
                }
                Outcome::Injected => injections += 1,
                Outcome::Resume => {}
            }
            (traps >= MAX_TRAPS_PER_RUN).then_some((Exit::Interrupted, None))
        });
        let exit = match exit {
            Exit::Wfi { .. } => Exit::Wfi {
                timer_deadline: vtimer::deadline(ctx.sysregs.cntv_ctl, ctx.sysregs.cntv_cval, entry.cntvoff),
            },
            other => other,
        };
        let mut vms = vms_lock.lock();
        if let Ok(vm) = vms.get(handle) {
            if matches!(exit, Exit::Fatal { .. }) {
                vm.state = VmState::Crashed;
            }
            if let Some(v) = usize::try_from(vcpu).ok().and_then(|i| vm.vcpus.get_mut(i)) {
                v.running = false;
                v.pending_read = pending_read;
                if exit == Exit::CpuOff {
                    v.power = VcpuPower::Off;
                }
            }
        }
        Ok(exit)
    }

    fn vcpu_get_reg(&mut self, handle: u64, vcpu: u64, reg: u64) -> Result<u64, HypError> {
        with_vms(|vms, _, _| vms.get_reg(handle, vcpu, reg))
    }

    fn vcpu_set_reg(&mut self, handle: u64, vcpu: u64, reg: u64, value: u64) -> Result<(), HypError> {
        with_vms(|vms, _, _| vms.set_reg(handle, vcpu, reg, value))
    }

    fn vm_info(&mut self, handle: u64) -> Result<[u64; 3], HypError> {
        with_vms(|vms, _, _| vms.info(handle))
    }

    fn vm_teardown(&mut self, handle: u64) -> Result<(), HypError> {
        with_vms(|vms, memory, env| {
            let mut tlb = guest_tlb(vms, handle)?;
            vms.teardown(handle, memory, env, &mut tlb)
        })
    }

    fn vcpu_inject_irq(&mut self, handle: u64, vcpu: u64, intid: u64) -> Result<(), HypError> {
        if vgic_hardware() == VgicHardware::None {
            return Err(HypError::NotSupported);
        }
        with_vms(|vms, _, _| vms.inject_irq(handle, vcpu, intid))
    }

    fn vm_reclaim(&mut self, handle: u64, ipa: u64, pages: u64) -> Result<(), HypError> {
        with_vms(|vms, memory, env| {
            let mut tlb = guest_tlb(vms, handle)?;
            vms.reclaim(handle, ipa, pages, memory, env, &mut tlb)
        })
    }
}
