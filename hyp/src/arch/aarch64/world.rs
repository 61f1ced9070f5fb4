//! Running a vCPU: switching the EL1 state, FP/SIMD and the EL2 controls from the
//! host to the guest and back around `__guest_enter` (switch.S).
//!
//! FP/SIMD is switched lazily: a run enters the guest with CPTR_EL2.TFP set, and
//! only the guest's first FP/SIMD instruction of the run (a trap, EC 0x07) saves
//! the host's registers and loads the guest's. A run in which the guest does not
//! touch FP/SIMD (most exits of device-heavy code, every exit of the test guests)
//! then costs no FP work at all: the benchmarks measured 1,779 instructions for
//! an MMIO round trip with eager switching, and the trap costs a guest that does
//! use FP about 150 instructions once per run.

use super::debug_switch;
use super::gic_ppi::PpiFrame;
use super::host_regs::controls;
use crate::arch::context::{El1Sysregs, FpState, Gprs, VcpuContext};
use crate::arch::esr::Esr;
use crate::arch::trap_controls::TrapControls;
use crate::arch::trap_record::GuestTrap;
use core::arch::asm;
use core::mem::MaybeUninit;
use core::sync::atomic::Ordering;

extern "C" {
    fn __guest_enter(gprs: *mut Gprs) -> u64;
    fn fpsimd_save(state: *mut FpState);
    fn fpsimd_restore(state: *const FpState);
    fn el1_save(regs: *mut El1Sysregs);
    fn el1_restore(regs: *const El1Sysregs);
}

/// CNTHCTL_EL2 for guests: EL1PCTEN (0) the physical counter is readable; EL1PCEN
/// (1) clear, the physical timer's registers trap: the hardware's stays the
/// host's, the guest's is emulated (`crate::arch::phys_timer`).
const CNTHCTL_GUEST: u64 = 1;

/// CPTR_EL2.TFP: trap FP/SIMD to EL2 (until the guest's state is loaded).
const CPTR_TFP: u64 = 1 << 10;
/// ESR_EL2 exception class of a trapped FP/SIMD access.
const EC_FP_ACCESS: u64 = 0x07;

macro_rules! read_sysreg {
    ($name:literal) => {{
        let value: u64;
        // SAFETY: Reading an EL1/EL2 system register at EL2 has no side effect.
        unsafe { asm!(concat!("mrs {}, ", $name), out(reg) value, options(nomem, nostack, preserves_flags)) };
        value
    }};
}

macro_rules! write_sysreg {
    ($name:literal, $value:expr) => {{
        let value: u64 = $value;
        // SAFETY: The register belongs to the EL1 context being switched (or an
        // EL2 control the world switch owns); the caller restores it on the way back.
        unsafe { asm!(concat!("msr ", $name, ", {}"), in(reg) value, options(nomem, nostack, preserves_flags)) };
    }};
}

/// Reads the EL1 registers a world switch moves into `regs` (`el1_save`).
#[inline(always)]
fn save_el1(regs: &mut El1Sysregs) {
    // SAFETY: `el1_save` reads system registers and writes all of `*regs`,
    // a valid El1Sysregs (repr(C), 26 u64 in the order it stores them).
    unsafe { el1_save(regs) };
}

/// Writes them back from `regs` (`el1_restore`).
#[inline(always)]
fn restore_el1(regs: &El1Sysregs) {
    // SAFETY: The registers belong to the EL1 context being switched; the
    // caller owns the switch and synchronises before EL1 runs.
    unsafe { el1_restore(regs) };
}

/// Loads the EL1 exception registers an injection set
/// ([`VcpuContext::exception_injected`]).
#[inline(always)]
fn load_injected_exception(ctx: &mut VcpuContext) {
    ctx.exception_injected = false;
    write_sysreg!("esr_el1", ctx.sysregs.esr_el1);
    write_sysreg!("far_el1", ctx.sysregs.far_el1);
    write_sysreg!("elr_el1", ctx.sysregs.elr_el1);
    write_sysreg!("spsr_el1", ctx.sysregs.spsr_el1);
}

/// Where and as what a vCPU runs.
#[derive(Clone, Copy, Debug)]
pub struct GuestEntry {
    /// VTTBR_EL2: the VM's stage-2 root | VMID << 48.
    pub vttbr: u64,
    /// The MPIDR_EL1 the guest reads (VMPIDR_EL2).
    pub vmpidr: u64,
    /// Another vCPU of the VM ran on this CPU last: drop this CPU's stage-1
    /// TLB entries of the VMID before the guest runs.
    pub flush_local_tlb: bool,
    /// Which virtual interface presents the vCPU's interrupts.
    pub vgic: VgicHardware,
    /// The VM's CNTVOFF_EL2 (its virtual counter is the physical one minus this).
    pub cntvoff: u64,
    /// This CPU's banked PPI registers in the physical GIC.
    pub ppi_frame: PpiFrame,
    /// Keep the virtual timer's physical PPI active from the start (its output
    /// is high at entry, or a list register still holds the virtual one).
    pub timer_physically_active: bool,
    /// Ask for the maintenance interrupt from the start (interrupts wait for a
    /// list register).
    pub underflow_interrupt: bool,
    /// Without a GIC: assert the vCPU's virtual IRQ line (HCR_EL2.VI).
    pub virtual_irq: bool,
    /// The physical count at which the guest's physical timer's output rises
    /// (`u64::MAX`: not during this run, or already risen).
    pub phys_timer_deadline: u64,
    /// A protected VM's vCPU: the host's PMU counters and trace stop while it
    /// is switched in.
    pub protected: bool,
}

/// HCR_EL2.VI: a virtual IRQ is pending for the guest.
const HCR_VI: u64 = 1 << 7;

/// The GIC virtual interface of the platform, if the hyp drives one.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum VgicHardware {
    None,
    V3,
    V2,
}

impl VgicHardware {
    /// The number of list registers of this CPU's virtual interface.
    pub fn list_registers(self) -> usize {
        match self {
            VgicHardware::V3 => super::gicv3::list_registers(),
            VgicHardware::V2 => super::gicv2::list_registers(),
            VgicHardware::None => 0,
        }
    }
}

/// A virtual interface loaded for a run.
enum VgicEntered {
    V3(super::gicv3::Entered),
    V2(super::gicv2::Entered),
}

/// The virtual timer's PPI, physically.
const VTIMER_PPI: u32 = crate::arch::timer::VTIMER_INTID;
/// The EL2 physical timer's PPI (CNTHP), which stands in for the host's
/// virtual timer while a guest has it ([`HypTimer`]).
pub const HYP_TIMER_PPI: u32 = 26;

/// The EL2 physical timer (CNTHP, PPI 26) while a guest runs: it stands in
/// for the host's tick and brings the hyp the guest's emulated physical
/// timer's deadline ([`crate::arch::phys_timer`]), armed at the earlier of
/// the two.
///
/// The host's tick: a host at EL1 (Linux entered there by the hyp) ticks with
/// the virtual timer, which is the guest's during its run; a guest that
/// computes without exiting (its own timer is served in the hyp) would keep
/// the CPU from its host for as long as it likes: a Linux host running four
/// guests saw soft lockups of 23 s and RCU stalls. So the EL2 physical timer
/// is armed with the host's deadline (same count: the host's CNTVOFF_EL2 is
/// 0) and its PPI enabled for the run; when it fires at the host's deadline,
/// the physical interrupt ends the run (HCR_EL2.IMO) like any other host
/// interrupt, and the host takes its own timer interrupt on return. When it
/// fires at the guest's deadline, the hyp raises the guest's PPI 30 and arms
/// it again for the host alone. Nothing of it stays armed or enabled for the
/// host.
struct HypTimer {
    /// The host's virtual-timer deadline (physical count; `u64::MAX`: none).
    host_deadline: u64,
    /// The guest's physical-timer deadline (`u64::MAX`: none, or already
    /// raised).
    guest_deadline: u64,
    /// CNTHP_CTL_EL2 is enabled.
    armed: bool,
    /// PPI 26 is enabled for this run.
    ppi_enabled: bool,
}

impl HypTimer {
    fn arm(host: &El1Sysregs, guest_deadline: u64, ppi_frame: PpiFrame) -> HypTimer {
        // The host's virtual count is the physical count (CNTVOFF_EL2 0).
        let host_deadline = crate::arch::timer::deadline(host.cntv_ctl, host.cntv_cval);
        let mut timer = HypTimer { host_deadline, guest_deadline, armed: false, ppi_enabled: false };
        timer.program(ppi_frame);
        timer
    }

    /// Arms CNTHP at the earlier deadline (or stops it).
    fn program(&mut self, ppi_frame: PpiFrame) {
        let deadline = self.host_deadline.min(self.guest_deadline);
        if deadline == u64::MAX || !ppi_frame.exists() {
            if self.armed {
                write_sysreg!("cnthp_ctl_el2", 0);
                self.armed = false;
            }
            return;
        }
        write_sysreg!("cnthp_cval_el2", deadline);
        if !self.armed {
            write_sysreg!("cnthp_ctl_el2", CNTHP_CTL_ENABLE);
            self.armed = true;
        }
        if !self.ppi_enabled {
            ppi_frame.set_enabled(HYP_TIMER_PPI, true);
            self.ppi_enabled = true;
        }
    }

    fn disarm(self, ppi_frame: PpiFrame) {
        if self.armed {
            write_sysreg!("cnthp_ctl_el2", 0);
        }
        if self.ppi_enabled {
            ppi_frame.set_enabled(HYP_TIMER_PPI, false);
        }
    }
}

/// How the virtual timer's physical PPI was set up for a run: a host that
/// did not enable PPI 27 itself on this CPU (a Linux host that ticks with
/// its physical timer, or `hyp-vmm`'s host, or the shim before it enables
/// it) gets it enabled for the run only, so that the guest's timer reaches
/// the hyp the moment it fires without the host's help.
#[derive(Clone, Copy)]
struct VtimerPpi {
    enabled_for_run: bool,
    grouped_for_run: bool,
}

impl VtimerPpi {
    /// On GICv3 the PPI goes to group 1 (which the host's CPU interface
    /// signals as an IRQ) for the run if it is not there; a GICv2's host
    /// signals group 0 as an IRQ (the shim enables no other group), where it
    /// stays.
    fn borrow(ppi_frame: PpiFrame, vgic: VgicHardware) -> VtimerPpi {
        let mut ppi = VtimerPpi { enabled_for_run: false, grouped_for_run: false };
        if !ppi_frame.exists() || ppi_frame.is_enabled(VTIMER_PPI) {
            return ppi;
        }
        ppi.grouped_for_run = vgic == VgicHardware::V3 && ppi_frame.move_to_group1(VTIMER_PPI);
        ppi_frame.set_enabled(VTIMER_PPI, true);
        ppi.enabled_for_run = true;
        ppi
    }

    /// Gives the host its own setting back (after the exit made the PPI
    /// inactive again).
    fn give_back(self, ppi_frame: PpiFrame) {
        if self.enabled_for_run {
            ppi_frame.set_enabled(VTIMER_PPI, false);
        }
        if self.grouped_for_run {
            ppi_frame.set_group0(VTIMER_PPI);
        }
    }
}

/// CNTHP_CTL_EL2.ENABLE, with IMASK clear.
const CNTHP_CTL_ENABLE: u64 = 1;

/// The running guest's interrupt state, for its trap handler: the list
/// registers (read into the context before each handler runs; written back
/// after it if it changed them), the live virtual timer, the EL2 timer that
/// brings the guest's physical-timer deadline, the maintenance interrupt.
pub struct LiveGic {
    entered: Option<VgicEntered>,
    ppi_frame: PpiFrame,
    /// This run made the timer's PPI active: the exit makes it inactive again.
    timer_activated: bool,
    /// HCR_EL2.VI as last written.
    virtual_irq: bool,
    /// HCR_EL2 of this run without VI.
    hcr: u64,
    /// The underflow maintenance interrupt as last asked for.
    underflow_interrupt: bool,
    hyp_timer: HypTimer,
    vtimer_ppi: VtimerPpi,
}

impl LiveGic {
    fn enter(entry: &GuestEntry, ctx: &mut VcpuContext, hcr: u64, host: &El1Sysregs) -> LiveGic {
        let hyp_timer = HypTimer::arm(host, entry.phys_timer_deadline, entry.ppi_frame);
        let vtimer_ppi = if entry.vgic != VgicHardware::None {
            VtimerPpi::borrow(entry.ppi_frame, entry.vgic)
        } else {
            VtimerPpi { enabled_for_run: false, grouped_for_run: false }
        };
        // The physical PPI is made active before the list registers that
        // present the timer are loaded, so that it never fires meanwhile.
        let timer_activated =
            entry.timer_physically_active && entry.ppi_frame.exists() && entry.vgic != VgicHardware::None;
        if timer_activated {
            entry.ppi_frame.set_active(VTIMER_PPI, true);
        }
        let entered = match entry.vgic {
            VgicHardware::V3 => Some(VgicEntered::V3(super::gicv3::enter(&ctx.vgic))),
            VgicHardware::V2 => Some(VgicEntered::V2(super::gicv2::enter(&ctx.vgic))),
            VgicHardware::None => None,
        };
        ctx.vgic.changed = false;
        let mut live = LiveGic {
            entered,
            ppi_frame: entry.ppi_frame,
            timer_activated,
            virtual_irq: entry.virtual_irq,
            hcr,
            underflow_interrupt: false,
            hyp_timer,
            vtimer_ppi,
        };
        if entry.underflow_interrupt {
            live.set_underflow_interrupt(true);
        }
        live
    }

    /// Whether a GIC virtual interface is loaded.
    pub fn is_present(&self) -> bool {
        self.entered.is_some()
    }

    /// After a trap: the list registers in use read back into `ctx` (none
    /// in use, most traps: nothing to read, and no call).
    #[inline(always)]
    fn sync(&mut self, ctx: &mut VcpuContext) {
        let used = match &self.entered {
            Some(VgicEntered::V3(e)) => e.used(),
            Some(VgicEntered::V2(e)) => e.used(),
            None => 0,
        };
        if used != 0 {
            self.sync_lrs(ctx);
        }
    }

    #[inline(never)]
    fn sync_lrs(&mut self, ctx: &mut VcpuContext) {
        match &self.entered {
            Some(VgicEntered::V3(e)) => super::gicv3::sync_live(&mut ctx.vgic, e),
            Some(VgicEntered::V2(e)) => super::gicv2::sync_live(&mut ctx.vgic, e),
            None => {}
        }
    }

    fn load(&mut self, ctx: &mut VcpuContext) {
        // Active before the list registers that tie to it (see `enter`).
        if ctx.vgic.slot_of(VTIMER_PPI).is_some() {
            self.activate_timer_ppi();
        }
        match &mut self.entered {
            Some(VgicEntered::V3(e)) => super::gicv3::load_live(&mut ctx.vgic, e),
            Some(VgicEntered::V2(e)) => super::gicv2::load_live(&mut ctx.vgic, e),
            None => {}
        }
    }

    /// Before the hyp performs a guest's access on the virtual CPU interface
    /// (GICv2's GICV): the list registers the hyp changed in this trap reach
    /// the interface first, so that the access acts on them.
    pub fn flush(&mut self, ctx: &mut VcpuContext) {
        if ctx.vgic.changed {
            self.load(ctx);
        }
    }

    /// After such an access: the context sees what it did to the list
    /// registers (an acknowledge, an end), so that no later load of the
    /// context undoes it.
    pub fn resync(&mut self, ctx: &mut VcpuContext) {
        self.sync(ctx);
    }

    /// Whether the guest's virtual timer asserts its output now (ISTATUS set,
    /// enabled, not masked).
    pub fn timer_asserted(&self) -> bool {
        read_sysreg!("cntv_ctl_el0") & 0b111 == 0b101
    }

    /// Whether the EL2 timer fired (its deadline, the host's or the guest's
    /// physical timer's, has come).
    pub fn hyp_timer_fired(&self) -> bool {
        self.hyp_timer.armed && read_sysreg!("cnthp_ctl_el2") & 0b101 == 0b101
    }

    /// Whether the host's tick is due at physical count `now`.
    pub fn host_tick_due(&self, now: u64) -> bool {
        now >= self.hyp_timer.host_deadline
    }

    /// The guest's physical timer's output rises at physical count
    /// `deadline` (`u64::MAX`: not before the guest changes it): the EL2
    /// timer is armed for it (and the host's tick).
    pub fn set_phys_timer_deadline(&mut self, deadline: u64) {
        if deadline != self.hyp_timer.guest_deadline {
            self.hyp_timer.guest_deadline = deadline;
            self.hyp_timer.program(self.ppi_frame);
        }
    }

    /// Whether the timer's physical PPI is active (so it cannot fire now).
    pub fn timer_ppi_active(&self) -> bool {
        self.ppi_frame.is_active(VTIMER_PPI)
    }

    /// Whether the hyp can tie the virtual timer interrupt to the physical one.
    pub fn manages_timer_ppi(&self) -> bool {
        self.ppi_frame.exists() && self.entered.is_some()
    }

    /// Keeps the timer's physical PPI from firing until the guest deactivates
    /// the virtual one (or the run ends).
    pub fn activate_timer_ppi(&mut self) {
        if self.manages_timer_ppi() {
            self.ppi_frame.set_active(VTIMER_PPI, true);
            self.timer_activated = true;
        }
    }

    /// Without a GIC: sets the guest's virtual IRQ line (HCR_EL2.VI).
    pub fn set_virtual_irq(&mut self, asserted: bool) {
        if asserted != self.virtual_irq {
            write_sysreg!("hcr_el2", self.hcr | if asserted { HCR_VI } else { 0 });
            self.virtual_irq = asserted;
        }
    }

    /// Whether the guest's virtual IRQ line is asserted (HCR_EL2.VI).
    pub fn virtual_irq(&self) -> bool {
        self.virtual_irq
    }

    /// The guest ended its timer interrupt (GICv2, where the hyp sees it):
    /// the physical PPI may fire again.
    pub fn deactivate_timer_ppi(&mut self) {
        if self.manages_timer_ppi() {
            self.ppi_frame.set_active(VTIMER_PPI, false);
        }
    }

    /// Whether the virtual interface asserts its maintenance interrupt.
    pub fn maintenance_pending(&self) -> bool {
        match self.entered {
            Some(VgicEntered::V3(_)) => super::gicv3::maintenance_pending(),
            Some(VgicEntered::V2(_)) => super::gicv2::maintenance_pending(),
            None => false,
        }
    }

    /// Asks for (or stops asking for) the maintenance interrupt on underflow.
    pub fn set_underflow_interrupt(&mut self, on: bool) {
        if on == self.underflow_interrupt {
            return;
        }
        self.underflow_interrupt = on;
        match self.entered {
            Some(VgicEntered::V3(_)) => super::gicv3::set_underflow_interrupt(on),
            Some(VgicEntered::V2(_)) => super::gicv2::set_underflow_interrupt(on),
            None => {}
        }
    }

    /// Empties the virtual interface into `ctx`: whether the run made the
    /// timer's PPI active, and what to undo once the host's timers are back.
    fn exit(self, ctx: &mut VcpuContext) -> (bool, HypTimer, VtimerPpi) {
        match self.entered {
            Some(VgicEntered::V3(e)) => super::gicv3::exit(&mut ctx.vgic, e),
            Some(VgicEntered::V2(e)) => super::gicv2::exit(&mut ctx.vgic, e),
            None => {}
        }
        (self.timer_activated, self.hyp_timer, self.vtimer_ppi)
    }
}

/// Where the host's HVC returns to, and its PSTATE, while a guest runs. (Its
/// EL2 controls come back from `PerCpu::host_el2`, its EL1 registers are
/// saved beside these, its FP/SIMD state separately and only if the guest
/// uses FP/SIMD.)
struct HostReturn {
    elr: u64,
    spsr: u64,
}

/// What a protected guest's run takes from the host and gives back
/// ([`enter_protected`], [`leave_protected`]).
#[derive(Clone, Copy, Default)]
struct Hidden {
    /// The counters the host enabled (PMCNTENSET_EL0).
    counters: u64,
    /// The host's trace filter (TRFCR_EL1).
    trfcr: u64,
    /// The host's TPIDR2_EL0.
    tpidr2: u64,
}

/// For a protected guest's run, before it is switched in: the host's PMU
/// counters stop (event counters and the cycle counter: they would count the
/// guest's EL1 and EL0 and the hyp's work for it), trace at EL1 and EL0 is
/// prohibited (TRFCR_EL1 = 0, which the guest cannot change: MDCR_EL2.TTRF),
/// and the guest gets its own TPIDR2_EL0 (SME's, which no SME trap covers)
/// and deferred-SError record (VDISR_EL2, its DISR_EL1). A non-protected
/// guest runs with the host's counters, trace and TPIDR2_EL0 (the host may
/// watch it) and with whatever VDISR_EL2 another non-protected guest left:
/// a protected guest's never stays there ([`leave_protected`] clears it).
fn enter_protected(controls: &TrapControls, ctx: &VcpuContext) -> Hidden {
    let mut hidden = Hidden::default();
    if controls.pmu {
        hidden.counters = read_sysreg!("pmcntenset_el0");
        write_sysreg!("pmcntenclr_el0", hidden.counters);
    }
    if controls.trace_filter {
        hidden.trfcr = read_sysreg!("s3_0_c1_c2_1");
        write_sysreg!("s3_0_c1_c2_1", 0);
    }
    if controls.tpidr2 {
        hidden.tpidr2 = read_sysreg!("s3_3_c13_c0_5");
        write_sysreg!("s3_3_c13_c0_5", ctx.tpidr2);
    }
    if controls.ras {
        write_sysreg!("s3_4_c12_c1_1", ctx.disr);
    }
    hidden
}

/// After a protected guest's run, once it is switched out: its TPIDR2_EL0 and
/// VDISR_EL2 go to `ctx` (VDISR_EL2 is cleared), and the host gets back what
/// [`enter_protected`] took.
fn leave_protected(controls: &TrapControls, ctx: &mut VcpuContext, hidden: Hidden) {
    if controls.tpidr2 {
        ctx.tpidr2 = read_sysreg!("s3_3_c13_c0_5");
        write_sysreg!("s3_3_c13_c0_5", hidden.tpidr2);
    }
    if controls.ras {
        ctx.disr = read_sysreg!("s3_4_c12_c1_1");
        write_sysreg!("s3_4_c12_c1_1", 0);
    }
    if controls.trace_filter {
        write_sysreg!("s3_0_c1_c2_1", hidden.trfcr);
    }
    if controls.pmu {
        write_sysreg!("pmcntenset_el0", hidden.counters);
    }
}

/// Runs `ctx` on this CPU as `entry` says until
/// `on_trap` returns a result. Traps that `on_trap` resolves inside the hyp
/// (`None`) re-enter the guest at once, without switching back to the host: only
/// the registers a trap handler reads or writes (PC, PSTATE, and ESR, FAR, ELR,
/// SPSR of EL1 for injected exceptions, which read VBAR_EL1 and SCTLR_EL1 live)
/// move between the CPU and `ctx`.
/// The host's EL1, FP/SIMD and EL2 controls are as they were on return.
///
/// A protected guest's run is invisible to the host's PMU and trace: from the
/// switch in to the switch out, the host's counters are off (and do not count
/// at EL2 where MDCR_EL2.HPMD/HCCD exist) and trace is prohibited. The hyp's
/// work for the host outside that window stays countable at EL2
/// (PMCCFILTR_EL0.NSH), which `scripts/bench` measures with.
pub fn run_guest<R>(
    ctx: &mut VcpuContext,
    entry: GuestEntry,
    mut on_trap: impl FnMut(&mut VcpuContext, GuestTrap, &mut LiveGic) -> Option<R>,
) -> R {
    // The host's EL2 controls (as `host_regs::configure` set them).
    let host_el2 = &super::percpu::this_cpu().host_el2;
    // Whether the guest's debug registers are in the CPU (`debug_switch`).
    let mut debug_loaded = debug_switch::enter(ctx);
    let base_mdcr = host_el2.guest_mdcr.load(Ordering::Relaxed);
    let mut guest_mdcr = debug_switch::guest_mdcr(base_mdcr, debug_loaded);
    // (Only a protected run has something hidden: nothing kept for the others.)
    let hidden = if entry.protected {
        // The counters stop at EL2 first, then everywhere.
        guest_mdcr |= controls().mdcr_protected;
        write_sysreg!("mdcr_el2", guest_mdcr);
        Some(enter_protected(controls(), ctx))
    } else {
        None
    };
    let host = HostReturn { elr: read_sysreg!("elr_el2"), spsr: read_sysreg!("spsr_el2") };
    // Every field is written by `el1_save`: not zeroed first.
    let mut host_sysregs = MaybeUninit::<El1Sysregs>::uninit();
    // SAFETY: `el1_save` reads system registers and writes all 26 fields of
    // the (repr(C)) El1Sysregs behind the pointer.
    unsafe { el1_save(host_sysregs.as_mut_ptr()) };
    // SAFETY: Initialised just above.
    let host_sysregs = unsafe { host_sysregs.assume_init_ref() };
    // Written by `fpsimd_save` when the guest first uses FP/SIMD, read back only
    // then: left uninitialised so that runs which never touch FP/SIMD (most) do
    // not pay for zeroing 528 bytes.
    let mut host_fp = MaybeUninit::<FpState>::uninit();
    restore_el1(&ctx.sysregs);
    // The host's FP/SIMD registers stay live until the guest first needs them.
    let mut guest_fp_loaded = false;
    let guest_cptr = host_el2.guest_cptr.load(Ordering::Relaxed);
    write_sysreg!("cptr_el2", guest_cptr | CPTR_TFP);
    write_sysreg!("vttbr_el2", entry.vttbr);
    write_sysreg!("vmpidr_el2", entry.vmpidr);
    if entry.flush_local_tlb {
        // SAFETY: TLB maintenance of the guest's VMID (now in VTTBR_EL2) on this
        // CPU only; it has no memory-safety effect.
        unsafe { asm!("isb", "tlbi vmalle1", "dsb nsh", options(nostack, preserves_flags)) };
    }
    let hcr = host_el2.guest_hcr.load(Ordering::Relaxed);
    write_sysreg!("hcr_el2", hcr | if entry.virtual_irq { HCR_VI } else { 0 });
    write_sysreg!("cntvoff_el2", entry.cntvoff);
    if !entry.protected {
        write_sysreg!("mdcr_el2", guest_mdcr);
    }
    write_sysreg!("cnthctl_el2", CNTHCTL_GUEST);

    let mut live = LiveGic::enter(&entry, ctx, hcr, host_sysregs);

    let result = loop {
        write_sysreg!("elr_el2", ctx.pc);
        write_sysreg!("spsr_el2", ctx.pstate);
        // SAFETY: The EL2 controls and the guest's EL1 state are in place; the
        // registers come from (and go back to) `ctx.gprs`, which outlives the call.
        let kind = unsafe { __guest_enter(&mut ctx.gprs) };
        ctx.pc = read_sysreg!("elr_el2");
        ctx.pstate = read_sysreg!("spsr_el2");
        let esr = read_sysreg!("esr_el2");
        let far = read_sysreg!("far_el2");
        if kind == 0 && esr >> 26 == EC_FP_ACCESS && !guest_fp_loaded {
            // First FP/SIMD use of this run: stop trapping (EL2's own accesses
            // trap too), swap the registers, let the instruction retry.
            write_sysreg!("cptr_el2", guest_cptr);
            // SAFETY: Barrier only.
            unsafe { asm!("isb", options(nostack, preserves_flags)) };
            // SAFETY: `host_fp` has room for a whole FpState (fpsimd_save only
            // writes it) and `ctx.fp` is a valid one; the hyp itself never uses
            // FP/SIMD, so the live registers are the host's until this point.
            unsafe {
                fpsimd_save(host_fp.as_mut_ptr());
                fpsimd_restore(&ctx.fp);
            }
            guest_fp_loaded = true;
            continue;
        }
        if kind == 0 && esr >> 26 == debug_switch::EC_SYSREG && debug_switch::load_on_access(esr, ctx, debug_loaded) {
            debug_loaded = true;
            continue;
        }
        // HPFAR_EL2 holds the faulting IPA only for the aborts `hpfar_valid`
        // names (its FIPA is IPA[51:12]; the page offset comes from FAR);
        // otherwise it is UNKNOWN and the trap gets no IPA.
        let esr = Esr(esr);
        let ipa = if kind == 0 && esr.hpfar_valid() {
            let hpfar = read_sysreg!("hpfar_el2");
            ((hpfar & 0x0000_0fff_ffff_fff0) << 8) | (far & 0xfff)
        } else {
            0
        };
        let trap = GuestTrap { kind, esr, far, ipa };
        live.sync(ctx);
        if let Some(result) = on_trap(ctx, trap, &mut live) {
            break result;
        }
        if ctx.exception_injected {
            load_injected_exception(ctx);
        }
        if ctx.vgic.changed {
            live.load(ctx);
        }
    };
    // An injection just before an exit: loaded, so that the read below keeps it.
    if ctx.exception_injected {
        load_injected_exception(ctx);
    }
    // List registers the last trap changed (a timer's interrupt lowered, a
    // fill before a wake): loaded, so that the save at the exit keeps them.
    if ctx.vgic.changed {
        live.load(ctx);
    }

    let (timer_activated, hyp_timer, vtimer_ppi) = live.exit(ctx);
    save_el1(&mut ctx.sysregs);
    if debug_loaded {
        debug_switch::exit(ctx);
    }
    // (If the guest used FP/SIMD, TFP is already clear: EL2 may touch them.)
    if guest_fp_loaded {
        // SAFETY: As above; `guest_fp_loaded` is set only after `fpsimd_save`
        // wrote every field of `host_fp`, which `fpsimd_restore` reads.
        unsafe {
            fpsimd_save(&mut ctx.fp);
            fpsimd_restore(host_fp.as_ptr());
        }
    }

    write_sysreg!("cptr_el2", host_el2.cptr.load(Ordering::Relaxed));
    write_sysreg!("hcr_el2", host_el2.hcr.load(Ordering::Relaxed));
    write_sysreg!("vttbr_el2", host_el2.vttbr.load(Ordering::Relaxed));
    write_sysreg!("vmpidr_el2", host_el2.vmpidr.load(Ordering::Relaxed));
    // The host's virtual counter has no offset.
    write_sysreg!("cntvoff_el2", 0);
    write_sysreg!("cnthctl_el2", host_el2.cnthctl.load(Ordering::Relaxed));
    write_sysreg!("elr_el2", host.elr);
    write_sysreg!("spsr_el2", host.spsr);
    // The guest's virtual timer must not fire for the host, nor the stand-in
    // for the host's own.
    write_sysreg!("cntv_ctl_el0", 0);
    hyp_timer.disarm(entry.ppi_frame);
    restore_el1(host_sysregs);
    if let Some(hidden) = hidden {
        // Everything of the guest's is put away: the host's counters and trace
        // come back, then the counting at EL2.
        leave_protected(controls(), ctx, hidden);
    }
    write_sysreg!("mdcr_el2", host_el2.mdcr.load(Ordering::Relaxed));
    // SAFETY: Barrier only.
    unsafe { asm!("isb", options(nostack, preserves_flags)) };
    if timer_activated {
        // The host's own timer state is loaded: its output drives the PPI again.
        entry.ppi_frame.set_active(VTIMER_PPI, false);
    }
    vtimer_ppi.give_back(entry.ppi_frame);
    result
}
