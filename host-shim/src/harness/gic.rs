//! The host's own interrupts: just enough of the GIC (v3 or v2, as the device
//! tree says) and of the EL1 physical timer for the shim to have a timer tick,
//! which is how it shows that a guest cannot keep its CPU. Runs with the MMU
//! off (register accesses are device accesses already); on the boot CPU, and
//! with the hostile host on every CPU (each enables its own PPI and timer; the
//! tick count is then approximate). Also what lets one CPU wake another:
//! the kick (an SGI, [`kick`]) and a wait until a deadline or a kick
//! ([`wait_for_interrupt`]), with which the Linux-guest mode runs each vCPU on
//! a CPU of its own.

use crate::harness::mmio::Registers;
use aarch64_cpu::registers::{Readable, CNTFRQ_EL0};
use core::arch::asm;
use core::sync::atomic::{AtomicU64, Ordering};

/// Which GIC and where (from the device tree).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum GicConfig {
    V3 {
        distributor: u64,
        redistributors: u64,
    },
    /// `control`: the virtual interface control frame (GICH), if listed.
    V2 {
        distributor: u64,
        cpu_interface: u64,
        control: Option<u64>,
    },
}

impl GicConfig {
    /// The configuration as three words, for a job on another CPU
    /// ([`GicConfig::from_words`] reads them back).
    pub fn to_words(self) -> [u64; 3] {
        match self {
            GicConfig::V3 { distributor, redistributors } => [distributor, redistributors, u64::MAX],
            GicConfig::V2 { distributor, cpu_interface, control } => [distributor, cpu_interface, control.unwrap_or(0)],
        }
    }

    /// What [`GicConfig::to_words`] wrote (GICH is never at 0, GICv3 never
    /// has it).
    pub fn from_words([distributor, second, third]: [u64; 3]) -> GicConfig {
        match third {
            u64::MAX => GicConfig::V3 { distributor, redistributors: second },
            control => GicConfig::V2 { distributor, cpu_interface: second, control: (control != 0).then_some(control) },
        }
    }

    /// The interrupt controller of the device tree, if it is one the shim drives.
    pub fn from_fdt(fdt: &fdt::Fdt<'_>) -> Option<GicConfig> {
        if let Some(node) = fdt.find_compatible(&["arm,gic-v3"]) {
            let mut reg = node.reg()?;
            let distributor = reg.next()?.starting_address as u64;
            let redistributors = reg.next()?.starting_address as u64;
            return Some(GicConfig::V3 { distributor, redistributors });
        }
        let node = fdt.find_compatible(&["arm,gic-400", "arm,cortex-a15-gic", "arm,cortex-a9-gic"])?;
        let mut reg = node.reg()?;
        let distributor = reg.next()?.starting_address as u64;
        let cpu_interface = reg.next()?.starting_address as u64;
        let control = reg.next().map(|r| r.starting_address as u64);
        Some(GicConfig::V2 { distributor, cpu_interface, control })
    }
}

/// Timer interrupts taken so far.
static TICKS: AtomicU64 = AtomicU64::new(0);
/// The tick's INTID, and how to acknowledge: 0 none, 3 GICv3, 2 GICv2 (then
/// `CPU_INTERFACE` holds the GICC base).
static TIMER_INTID: AtomicU64 = AtomicU64::new(u64::MAX);
static GIC_VERSION: AtomicU64 = AtomicU64::new(0);
static CPU_INTERFACE: AtomicU64 = AtomicU64::new(0);
static PERIOD: AtomicU64 = AtomicU64::new(0);

/// Distributor registers (both versions).
const GICD_CTLR: u64 = 0x0;
const GICD_IGROUPR: u64 = 0x80;
const GICD_ISENABLER: u64 = 0x100;
const GICD_IPRIORITYR: u64 = 0x400;
/// GICv2: the CPU targets of the banked interrupts (read: this CPU's own
/// interface bit), and the SGI register.
const GICD_ITARGETSR: u64 = 0x800;
const GICD_SGIR: u64 = 0xf00;
/// GICv3 redistributor registers (RD frame, then SGI frame at +64 KiB).
const GICR_TYPER: u64 = 0x8;
const GICR_WAKER: u64 = 0x14;
const GICR_SGI_FRAME: u64 = 0x1_0000;
/// GICv2 CPU interface registers.
const GICC_CTLR: u64 = 0x0;
const GICC_PMR: u64 = 0x4;
const GICC_IAR: u64 = 0xc;
const GICC_EOIR: u64 = 0x10;
/// Priority of the tick (any value the priority mask lets through).
const TICK_PRIORITY: u8 = 0x80;
/// Polls of a GIC status bit before giving up.
const MAX_POLLS: u32 = 1 << 20;
/// Redistributor frames walked looking for this CPU's, at most: a bound only
/// (the last frame of a real GIC says so first), 64 for each of 8 CPUs.
const MAX_REDISTRIBUTOR_FRAMES: usize = 8 * 64;

/// The registers at `base`: a frame of the device tree's GIC.
fn registers(base: u64) -> Registers {
    // SAFETY: Every base this module passes is the device tree's GIC's
    // (distributor, CPU interface, a redistributor's RD or SGI frame), and it
    // accesses registers of theirs only, bytes only where they allow them.
    unsafe { Registers::new(base) }
}

/// Polls until the bits `mask` of register `offset` of `frame` are clear.
fn wait_while(frame: Registers, offset: u64, mask: u32) -> bool {
    (0..MAX_POLLS).any(|_| frame.read32(offset) & mask == 0)
}

/// Enables `intid` (a PPI) as a group 1 interrupt for this CPU, and this CPU's
/// interface. Returns whether the GIC answered as expected.
fn enable_ppi(gic: GicConfig, intid: u32) -> bool {
    let bit = 1u32 << intid;
    match gic {
        GicConfig::V3 { distributor, redistributors } => {
            // ARE and both group enables, in either security view.
            let gicd = registers(distributor);
            gicd.write32(GICD_CTLR, 0x13);
            if !wait_while(gicd, GICD_CTLR, 1 << 31) {
                return false;
            }
            let Some(frame) = own_redistributor(redistributors) else {
                return false;
            };
            let rd = registers(frame);
            let waker = rd.read32(GICR_WAKER);
            rd.write32(GICR_WAKER, waker & !(1 << 1));
            if !wait_while(rd, GICR_WAKER, 1 << 2) {
                return false;
            }
            let sgi = registers(frame + GICR_SGI_FRAME);
            sgi.write32(GICD_IGROUPR, sgi.read32(GICD_IGROUPR) | bit);
            sgi.write8(GICD_IPRIORITYR + u64::from(intid), TICK_PRIORITY);
            sgi.write32(GICD_ISENABLER, bit);
            // SAFETY: The hyp enabled the system-register interface for EL1
            // (ICC_SRE_EL2.Enable); these set this CPU's interface only.
            unsafe {
                asm!(
                    "mrs {t}, icc_sre_el1",
                    "orr {t}, {t}, #1",
                    "msr icc_sre_el1, {t}",
                    "isb",
                    "msr icc_pmr_el1, {pmr}",
                    "msr icc_bpr1_el1, xzr",
                    "mov {t}, #1",
                    "msr icc_igrpen1_el1, {t}",
                    "isb",
                    t = out(reg) _,
                    pmr = in(reg) 0xffu64,
                    options(nostack),
                );
            }
            GIC_VERSION.store(3, Ordering::Relaxed);
        }
        GicConfig::V2 { distributor, cpu_interface, .. } => {
            let (gicd, gicc) = (registers(distributor), registers(cpu_interface));
            gicd.write32(GICD_CTLR, 1);
            gicd.write8(GICD_IPRIORITYR + u64::from(intid), TICK_PRIORITY);
            gicd.write32(GICD_ISENABLER, bit);
            gicc.write32(GICC_PMR, 0xff);
            gicc.write32(GICC_CTLR, 1);
            CPU_INTERFACE.store(cpu_interface, Ordering::Relaxed);
            GIC_VERSION.store(2, Ordering::Relaxed);
        }
    }
    true
}

/// This CPU's GICv3 redistributor frame: the one whose GICR_TYPER affinity is
/// this CPU's MPIDR.
fn own_redistributor(base: u64) -> Option<u64> {
    use aarch64_cpu::registers::MPIDR_EL1;
    let mpidr = MPIDR_EL1.get();
    let affinity = (mpidr & 0xff_ffff) | (mpidr >> 32 & 0xff) << 24;
    let mut frame = base;
    for _ in 0..MAX_REDISTRIBUTOR_FRAMES {
        let typer = registers(frame).read64(GICR_TYPER);
        if typer >> 32 == affinity {
            return Some(frame);
        }
        if typer & (1 << 4) != 0 {
            return None;
        }
        // Two 64 KiB frames each, four with virtual LPIs (GICv4).
        frame += if typer & (1 << 1) != 0 { 0x4_0000 } else { 0x2_0000 };
    }
    None
}

fn arm_timer(period: u64) {
    // SAFETY: The hyp lets EL1 use the physical timer (CNTHCTL_EL2.EL1PCEN);
    // these program this CPU's timer only.
    unsafe {
        asm!("msr cntp_tval_el0, {}", "mov {t}, #1", "msr cntp_ctl_el0, {t}", "isb", in(reg) period, t = out(reg) _, options(nostack))
    };
}

/// Enables, on this CPU, the PPIs through which the hyp serves running guests
/// without the host: the GIC's maintenance interrupt (25) and the virtual
/// timer (27). They reach the hyp while a guest runs; the host only ever sees
/// them by accident (then it ends them).
pub fn enable_guest_ppis(gic: GicConfig) -> bool {
    enable_ppi(gic, 25) && enable_ppi(gic, 27)
}

/// Starts a tick every `hz`-th of a second on this CPU, through `gic`. Returns
/// false if the GIC did not respond.
pub fn start_tick(gic: GicConfig, intid: u32, hz: u64) -> bool {
    TIMER_INTID.store(u64::from(intid), Ordering::Relaxed);
    if !enable_ppi(gic, intid) {
        return false;
    }
    let period = CNTFRQ_EL0.get() / hz.max(1);
    PERIOD.store(period, Ordering::Relaxed);
    arm_timer(period);
    true
}

/// The SGI with which one CPU of the shim wakes another: out of a guest (the
/// hyp ends the run with `Exit::Interrupted`) or out of [`wait_for_interrupt`].
pub const KICK_SGI: u32 = 1;
/// The SGI with which one CPU wakes another's vCPU: the shim names it to the
/// hyp (`hyp_abi::RunFlags::kick_sgi`), which then sends it itself for a
/// sibling's SGI and takes it at EL2 while the vCPU runs (on GICv3), without
/// an exit; in the host it wakes [`wait_for_interrupt`] like [`KICK_SGI`].
pub const VCPU_KICK_SGI: u32 = 2;

/// Enables the kick SGIs and `timer_intid` (the EL1 physical timer, which
/// [`wait_for_interrupt`] arms) on this CPU; returns this CPU's GICv2 CPU
/// interface bit (0 on GICv3), which [`kick`] needs, or `None` if the GIC did
/// not respond.
pub fn enable_kick(gic: GicConfig, timer_intid: u32) -> Option<u64> {
    if !(enable_ppi(gic, KICK_SGI) && enable_ppi(gic, VCPU_KICK_SGI) && enable_ppi(gic, timer_intid)) {
        return None;
    }
    Some(match gic {
        GicConfig::V3 { .. } => 0,
        // The banked ITARGETSR0..7 read as this CPU's own interface bit.
        GicConfig::V2 { distributor, .. } => u64::from(registers(distributor).read32(GICD_ITARGETSR) & 0xff),
    })
}

/// Sends SGI `sgi` ([`KICK_SGI`] or [`VCPU_KICK_SGI`]) to the CPU of MPIDR
/// `mpidr` (GICv3) or of CPU interface bit `gicv2_mask` (GICv2).
pub fn kick(gic: GicConfig, mpidr: u64, gicv2_mask: u64, sgi: u32) {
    match gic {
        GicConfig::V3 { .. } => {
            let value = hyp_drivers::gic_sgi::sgi1r_to(mpidr, sgi);
            // SAFETY: Sends an SGI; the host owns its physical CPU interface.
            unsafe { asm!("dsb ishst", "msr icc_sgi1r_el1, {}", "isb", in(reg) value, options(nostack)) };
        }
        GicConfig::V2 { distributor, .. } => {
            aarch64_cpu::asm::barrier::dsb(aarch64_cpu::asm::barrier::ISHST);
            registers(distributor).write32(GICD_SGIR, ((gicv2_mask as u32 & 0xff) << 16) | (sgi & 0xf));
        }
    }
}

/// Waits on this CPU (WFI) until the physical count reaches `deadline`
/// (`u64::MAX`: no deadline) or another interrupt (a kick) arrives, then
/// takes the pending interrupts. The timer is the EL1 physical one, enabled by
/// [`enable_kick`]; it is off again on return.
pub fn wait_for_interrupt(deadline: u64) {
    set_wakeup(deadline);
    // A pending interrupt ends WFI also with IRQs masked (they are, in the shim).
    aarch64_cpu::asm::wfi();
    stop_tick();
    take_pending_interrupts();
}

/// Arms this CPU's physical timer to interrupt at physical count `deadline`
/// (`u64::MAX`: not at all), e.g. to end a guest's time slice.
pub fn set_wakeup(deadline: u64) {
    if deadline == u64::MAX {
        stop_tick();
        return;
    }
    // SAFETY: Programs this CPU's physical timer (CNTHCTL_EL2.EL1PCEN).
    unsafe {
        asm!("msr cntp_cval_el0, {}", "mov {t}, #1", "msr cntp_ctl_el0, {t}", "isb", in(reg) deadline, t = out(reg) _, options(nostack))
    };
}

/// Stops the tick: the timer's output goes low, so nothing stays pending for
/// the next guest run to trip over.
pub fn stop_tick() {
    // SAFETY: Disabling this CPU's physical timer.
    unsafe { asm!("msr cntp_ctl_el0, xzr", "isb", options(nostack)) };
}

/// Ticks so far.
pub fn ticks() -> u64 {
    TICKS.load(Ordering::Relaxed)
}

/// Takes pending interrupts: unmasks IRQs for one context synchronisation, then
/// masks them again. The only place the shim takes interrupts.
pub fn take_pending_interrupts() {
    // SAFETY: The IRQ handler saves every general register (vectors.S) and is an
    // `extern "C"` function; the clobber list covers the FP/SIMD registers the
    // AAPCS lets it change.
    unsafe { asm!("msr daifclr, #2", "isb", "msr daifset, #2", clobber_abi("C"), options(nostack)) };
}

/// The IRQ handler (from `shim_exception`): acknowledges, counts a tick and
/// re-arms the timer, ends the interrupt.
pub fn handle_irq() {
    let version = GIC_VERSION.load(Ordering::Relaxed);
    let intid: u64 = match version {
        3 => {
            let iar: u64;
            // SAFETY: Acknowledging the highest-priority pending group 1 interrupt.
            unsafe { asm!("mrs {}, icc_iar1_el1", out(reg) iar, options(nostack)) };
            iar & 0xff_ffff
        }
        2 => u64::from(registers(CPU_INTERFACE.load(Ordering::Relaxed)).read32(GICC_IAR)),
        _ => return,
    };
    if intid == TIMER_INTID.load(Ordering::Relaxed) {
        TICKS.store(TICKS.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        arm_timer(PERIOD.load(Ordering::Relaxed));
    }
    // 1020..1023 are "no interrupt": nothing to end.
    if (1020..1024).contains(&intid) {
        return;
    }
    match version {
        // SAFETY: Ending the interrupt just acknowledged.
        3 => unsafe { asm!("msr icc_eoir1_el1, {}", "isb", in(reg) intid, options(nostack)) },
        _ => registers(CPU_INTERFACE.load(Ordering::Relaxed)).write32(GICC_EOIR, intid as u32),
    }
}
