//! The host's checks of virtual interrupts, at whichever GIC version the
//! board has: injected interrupts, the guest's distributor (enables,
//! priorities, pending state, routing), the virtual timer (waiting in WFI and
//! interrupting a running guest), SGIs between vCPUs.

use crate::guests::{self, load, GUEST_ENTRY, GUEST_UART, HOST_CALL};
use crate::harness::gic::{self, GicConfig};
use crate::harness::hypercall;
use crate::harness::platform::HostPlatform;
use crate::harness::probe;
use crate::harness::report::check;
use crate::harness::vms::{create_ready, run_vcpu, tear_down};
use hyp_abi::{Exit, HypError, VmType};

const REPORT: u64 = GUEST_UART + 0x38;
const FAULT: u64 = GUEST_UART + 0x40;
const READY: u64 = GUEST_UART + 0x48;
const GIC_VALUE: u64 = GUEST_UART + 0x50;

/// The board's GIC: whether it is a GICv2, and its name; `None` (logged:
/// the `check` is skipped) without one.
fn board_gic(platform: &HostPlatform, check: &str) -> Option<(bool, &'static str)> {
    let Some(gic) = platform.gic else {
        log::info!("no GIC: the {check} check is skipped");
        return None;
    };
    let v2 = matches!(gic, GicConfig::V2 { .. });
    Some((v2, if v2 { "GICv2" } else { "GICv3" }))
}

/// Runs the interrupt checks with the guests' code in the pages at `pa`.
pub fn run_all(platform: &HostPlatform, pa: u64) -> bool {
    let mut passed = true;
    if let Some(gic) = platform.gic {
        passed &= check!(
            gic::enable_guest_ppis(gic),
            "the host lets the maintenance (PPI 25) and virtual timer (PPI 27) interrupts reach the hyp"
        );
    }
    passed &= interrupt_vm(platform, pa);
    passed &= irq_line_vm(platform, pa);
    passed &= distributor_vm(platform, pa);
    passed &= burst_vm(platform, pa);
    passed &= timer_vm(platform, pa, false);
    passed &= timer_vm(platform, pa, true);
    passed &= host_tick_vm(platform, pa);
    passed &= sgi_vm(platform, pa);
    passed
}

/// Virtual interrupts: the host makes SPIs, an SGI and a PPI pending for a
/// protected vCPU (more than the GIC has list registers), and the guest takes
/// each exactly once through its virtual CPU interface, acknowledging and
/// ending them itself. Bad injections get their errors. Without a GIC the
/// call answers `NotSupported`.
fn interrupt_vm(platform: &HostPlatform, pa: u64) -> bool {
    const INTIDS: [u64; 7] = [90, 40, 41, 3, 27, 42, 95];
    let mut passed = true;
    let gic = platform.gic;
    load(pa, if matches!(gic, Some(GicConfig::V2 { .. })) { guests::irq2() } else { guests::irq() });
    let ready = create_ready(VmType::Protected, 1, pa, 1, INTIDS.len() as u64);
    let Ok(handle) = ready else {
        return check!(false, "set up the interrupt VM: {ready:?}");
    };
    if let Some(GicConfig::V2 { control: Some(gich), .. }) = gic {
        probe::arm_probe();
        // SAFETY: The probe handler is armed for an abort here; a read has no effect.
        let value = unsafe { crate::harness::arch::probe_read(gich) };
        passed &= check!(
            probe::probe_was_refused(),
            "the GICv2 virtual interface control frame (GICH at {gich:#x}) is refused to the host ({value:#x})"
        );
    }
    if gic.is_none() {
        let refused = hypercall::vcpu_inject_irq(handle, 0, 40);
        passed &= check!(refused == Err(HypError::NotSupported), "virtual interrupts need a GIC: {refused:?}");
    } else {
        for intid in INTIDS {
            passed &= check!(hypercall::vcpu_inject_irq(handle, 0, intid) == Ok(0), "inject INTID {intid}: for vCPU 0");
        }
        let bad = [
            hypercall::vcpu_inject_irq(handle, 0, 288),
            hypercall::vcpu_inject_irq(handle, 0, 1020),
            hypercall::vcpu_inject_irq(handle, 1, 40),
            hypercall::vcpu_inject_irq(handle ^ 1 << 40, 0, 40),
        ];
        passed &= check!(
            bad == [
                Err(HypError::InvalidArgument),
                Err(HypError::InvalidArgument),
                Err(HypError::NoSuchVcpu),
                Err(HypError::NoSuchVm)
            ],
            "bad injections refused: {bad:?}"
        );
        let (mut taken, mut count, mut fault, mut end) = ([0u64; 8], 0, None, None);
        for _ in 0..64 {
            match run_vcpu(handle, 0, 0) {
                Ok(Exit::Mmio { ipa: REPORT, write: true, value, .. }) => {
                    if count < taken.len() {
                        taken[count] = value;
                    }
                    count += 1;
                }
                Ok(Exit::Mmio { ipa: FAULT, write: true, value, .. }) => fault = Some(value),
                Ok(Exit::Mmio { ipa: READY, write: true, .. }) => {}
                other => {
                    end = Some(other);
                    break;
                }
            }
        }
        let gic_name = if matches!(gic, Some(GicConfig::V2 { .. })) { "GICv2" } else { "GICv3" };
        let mut sorted = taken;
        sorted[..count.min(8)].sort_unstable();
        let mut expected = INTIDS;
        expected.sort_unstable();
        passed &= check!(
            count == INTIDS.len() && sorted[..INTIDS.len()] == expected && fault.is_none(),
            "a protected guest took each injected interrupt once through its virtual CPU interface ({gic_name}): {:?} (fault {fault:x?})",
            &taken[..count.min(8)]
        );
        passed &= check!(end == Some(Ok(Exit::SystemOff)), "the interrupt guest ends with SYSTEM_OFF: {end:?}");
    }
    passed &= tear_down(handle, "interrupt VM");
    passed &= check!(hypercall::vm_reclaim(handle, GUEST_ENTRY, 1).is_ok(), "reclaim the interrupt VM's page");
    passed
}

/// The virtual timer: a protected guest arms CNTV every millisecond and waits
/// with WFI. Each wait leaves the CPU to the host with the timer's deadline; the
/// host waits until then and runs the vCPU again, and the hyp presents the
/// expired timer as PPI 27. The guest counts its ticks. With `spin` the guest
/// never waits or traps: each tick must interrupt it while it runs (the
/// physical timer interrupt reaches the hyp, which presents it at once).
fn timer_vm(platform: &HostPlatform, pa: u64, spin: bool) -> bool {
    use aarch64_cpu::registers::{Readable, CNTFRQ_EL0, CNTPCT_EL0};
    const TICKS: u64 = 10;
    let Some((v2, gic_name)) = board_gic(platform, "virtual timer") else {
        return true;
    };
    let period = (CNTFRQ_EL0.get() / 1000).max(1);
    let mut passed = true;
    load(pa, if v2 { guests::timer2() } else { guests::timer() });
    let ready = create_ready(VmType::Protected, 1, pa, 1, TICKS | u64::from(spin) << 15 | period << 16);
    let Ok(handle) = ready else {
        return check!(false, "set up the timer VM: {ready:?}");
    };
    let mut other_exits = 0u64;
    let (mut waits, mut reported, mut fault, mut end) = (0u64, None, None, None);
    for _ in 0..1000 {
        match run_vcpu(handle, 0, 0) {
            Ok(Exit::Wfi { timer_deadline }) if timer_deadline != u64::MAX => {
                waits += 1;
                while CNTPCT_EL0.get() < timer_deadline {
                    core::hint::spin_loop();
                }
            }
            Ok(Exit::Interrupted) => other_exits += 1,
            Ok(Exit::Hypercall { function: HOST_CALL, arg }) => reported = Some(arg),
            Ok(Exit::Mmio { ipa, write: true, value, .. }) if ipa == GUEST_UART + 0x40 => fault = Some(value),
            other => {
                end = Some(other);
                break;
            }
        }
    }
    if spin {
        passed &= check!(
            reported == Some(TICKS) && waits == 0 && other_exits == 0 && fault.is_none(),
            "a protected guest spinning with IRQs unmasked took {reported:?} virtual timer ticks while it ran, without exits to the host (1 ms period, {gic_name})"
        );
    } else {
        // How often the guest had to wait depends on how fast the host came back
        // (a tick already due when the guest reaches WFI is taken at once): not checked.
        passed &= check!(
            reported == Some(TICKS) && fault.is_none(),
            "a protected guest's virtual timer ticked {reported:?} times (1 ms period, {gic_name}), the host waiting for its deadline {waits} times (fault {fault:x?})"
        );
    }
    passed &= check!(end == Some(Ok(Exit::SystemOff)), "the timer guest ends with SYSTEM_OFF: {end:?}");
    passed &= tear_down(handle, "timer VM");
    passed &= check!(hypercall::vm_reclaim(handle, GUEST_ENTRY, 1).is_ok(), "reclaim the timer VM's page");
    passed
}

/// The host's own tick while a guest has the virtual timer. A Linux host at
/// EL1 ticks with its virtual timer (CNTV), which is the guest's during a run;
/// a guest that computes, its own timer served in the hyp, must still give the
/// CPU back at the host's deadline. The host arms its CNTV 20 periods ahead
/// (its physical-timer tick stopped) and runs a non-protected timer guest that
/// spins for 30,000 of its own 1 ms ticks: the run must end with
/// `Interrupted` once the host's deadline has passed, long before the guest
/// is done (its tick count, x19, is read back; without the host's deadline the
/// run lasted until the hyp's 4,096-trap limit). Counted in guest ticks and
/// host counter values, not wall-clock time.
fn host_tick_vm(platform: &crate::harness::platform::HostPlatform, pa: u64) -> bool {
    use aarch64_cpu::registers::{Readable, CNTFRQ_EL0, CNTVCT_EL0};
    use core::arch::asm;
    const TICKS: u64 = 30_000;
    const DEADLINE_PERIODS: u64 = 20;
    let Some(gic) = platform.gic else {
        log::info!("no GIC: the host-tick check is skipped");
        return true;
    };
    let gic_name = if matches!(gic, crate::harness::gic::GicConfig::V2 { .. }) { "GICv2" } else { "GICv3" };
    let period = (CNTFRQ_EL0.get() / 1000).max(1);
    load(pa, if gic_name == "GICv2" { guests::timer2() } else { guests::timer() });
    let ready = create_ready(VmType::NonProtected, 1, pa, 1, TICKS | 1 << 15 | period << 16);
    let Ok(handle) = ready else {
        return check!(false, "set up the host-tick VM: {ready:?}");
    };
    crate::harness::gic::stop_tick();
    let deadline = CNTVCT_EL0.get() + DEADLINE_PERIODS * period;
    // SAFETY: The host's own virtual timer, armed with its interrupt left to
    // the hyp while the guest runs (this CPU's IRQs stay as they are).
    unsafe {
        asm!("msr cntv_cval_el0, {}", "mov {t}, #1", "msr cntv_ctl_el0, {t}", "isb", in(reg) deadline, t = out(reg) _, options(nostack))
    };
    let exit = run_vcpu(handle, 0, 0);
    let returned_at = CNTVCT_EL0.get();
    // SAFETY: Turning the host's virtual timer off again.
    unsafe { asm!("msr cntv_ctl_el0, xzr", "isb", options(nostack)) };
    let ticks = hypercall::vcpu_get_reg(handle, 0, hyp_abi::VcpuReg::X(19));
    let passed = check!(
        exit == Ok(Exit::Interrupted)
            && returned_at >= deadline
            && ticks.is_ok_and(|t| t < TICKS / 30),
        "a guest computing with its own timer ticking gives the CPU back at the host's virtual-timer deadline ({gic_name}): {exit:?} after {:?} of its ticks, {} periods after the deadline",
        ticks,
        returned_at.saturating_sub(deadline) / period
    );
    // A non-protected VM's pages come back with its teardown.
    passed & tear_down(handle, "host-tick VM")
}

/// An SGI between vCPUs: vCPU 0 of a protected VM starts vCPU 1 with PSCI
/// CPU_ON (the host may not: it is refused a VCPU_INIT of either vCPU from
/// then on); vCPU 1 writes ICC_SGI1R_EL1 (GICv3) or GICD_SGIR (GICv2) for
/// vCPU 0; the hyp makes SGI 5 pending for vCPU 0 and tells the host
/// (`Exit::Wake`), which runs vCPU 0; its handler takes SGI 5.
fn sgi_vm(platform: &HostPlatform, pa: u64) -> bool {
    let Some((v2, _)) = board_gic(platform, "SGI") else {
        return true;
    };
    let mut passed = true;
    load(pa, if v2 { guests::irq2() } else { guests::irq() });
    load(pa + 0x1000, if v2 { guests::sgi2() } else { guests::sgi() });
    let ready = create_ready(VmType::Protected, 2, pa, 2, 1);
    let Ok(handle) = ready else {
        return check!(false, "set up the SGI VM: {ready:?}");
    };
    // A protected VM's secondaries start only through its guest's CPU_ON.
    let started = run_vcpu(handle, 0, 0);
    passed &= check!(started == Ok(Exit::CpuOn { vcpu: 1 }), "vCPU 0 starts vCPU 1 with PSCI CPU_ON: {started:?}");
    let taken_over =
        [hypercall::vcpu_init(handle, 0, GUEST_ENTRY, 1), hypercall::vcpu_init(handle, 1, GUEST_ENTRY + 0x1000, 0)];
    passed &= check!(
        taken_over == [Err(HypError::PermissionDenied); 2],
        "the protected SGI VM's vCPUs are its guest's: VCPU_INIT of vCPU 0 (it ran) and of vCPU 1 (its guest started it) refused: {taken_over:?}"
    );
    let sent = run_vcpu(handle, 1, 0);
    passed &= check!(sent == Ok(Exit::Wake { targets: 1 }), "vCPU 1 sends SGI 5 to vCPU 0: {sent:?}");
    let off = run_vcpu(handle, 1, 0);
    passed &= check!(off == Ok(Exit::CpuOff), "then turns itself off: {off:?}");
    let (mut taken, mut end) = (None, None);
    for _ in 0..16 {
        match run_vcpu(handle, 0, 0) {
            Ok(Exit::Mmio { ipa: REPORT, write: true, value, .. }) => taken = Some(value),
            Ok(Exit::Mmio { ipa, write: true, .. }) if ipa == GUEST_UART + 0x48 => {}
            other => {
                end = Some(other);
                break;
            }
        }
    }
    passed &= check!(
        taken == Some(5) && end == Some(Ok(Exit::SystemOff)),
        "vCPU 0 takes the SGI from vCPU 1 through its virtual CPU interface: INTID {taken:?}, then {end:?}"
    );
    passed &= tear_down(handle, "SGI VM");
    passed &= check!(hypercall::vm_reclaim(handle, GUEST_ENTRY, 2).is_ok(), "reclaim the SGI VM's pages");
    passed
}

/// What one run of the distributor guest showed the host.
#[derive(Debug, Default)]
struct Seen {
    reports: [u64; 12],
    count: usize,
    values: [u64; 4],
    value_count: usize,
    fault: Option<u64>,
}

impl Seen {
    /// Runs vCPU `vcpu` until it exits other than with a report or a value.
    fn run_until_stop(&mut self, handle: u64, vcpu: u64) -> Result<Exit, HypError> {
        for _ in 0..64 {
            match run_vcpu(handle, vcpu, 0)? {
                Exit::Mmio { ipa: REPORT, write: true, value, .. } => {
                    if let Some(slot) = self.reports.get_mut(self.count) {
                        *slot = value;
                    }
                    self.count += 1;
                }
                Exit::Mmio { ipa: GIC_VALUE, write: true, value, .. } => {
                    if let Some(slot) = self.values.get_mut(self.value_count) {
                        *slot = value;
                    }
                    self.value_count += 1;
                }
                Exit::Mmio { ipa: FAULT, write: true, value, .. } => self.fault = Some(value),
                other => return Ok(other),
            }
        }
        Ok(Exit::Interrupted)
    }

    fn reports(&self) -> &[u64] {
        &self.reports[..self.count.min(self.reports.len())]
    }

    fn values(&self) -> &[u64] {
        &self.values[..self.value_count.min(self.values.len())]
    }
}

/// The guest's own distributor, emulated by the hyp (the host sees none of
/// these accesses): a protected guest enables, prioritises, pends and routes
/// its interrupts (see `guest_gic` in guests.S) and takes them as configured.
fn distributor_vm(platform: &HostPlatform, pa: u64) -> bool {
    let Some((v2, gic_name)) = board_gic(platform, "distributor") else {
        return true;
    };
    let mut passed = true;
    load(pa, guests::gic());
    load(pa + 0x1000, if v2 { guests::irq2() } else { guests::irq() });
    let ready = create_ready(VmType::Protected, 2, pa, 2, if v2 { 2 } else { 3 });
    let Ok(handle) = ready else {
        return check!(false, "set up the distributor VM: {ready:?}");
    };
    let mut seen = Seen::default();
    // Its guest starts vCPU 1 (the interrupt guest) first, with PSCI CPU_ON.
    let started = seen.run_until_stop(handle, 0);
    passed &= check!(started == Ok(Exit::CpuOn { vcpu: 1 }), "the distributor guest starts vCPU 1: {started:?}");
    let first = seen.run_until_stop(handle, 0);
    passed &= check!(
        matches!(first, Ok(Exit::Mmio { ipa: READY, .. })) && seen.values() == [8, 0x20],
        "{gic_name} distributor: 288 INTIDs (ITLinesNumber {:?}), a priority reads back ({:#x?})",
        seen.values().first(),
        seen.values().get(1)
    );
    let injected = [50, 51, 52, 53, 54, 55, 42].map(|intid| hypercall::vcpu_inject_irq(handle, 0, intid));
    passed &= check!(injected == [Ok(0); 7], "SPIs 50..55 and 42 made pending, routed to vCPU 0: {injected:?}");
    let waited = seen.run_until_stop(handle, 0);
    passed &= check!(
        seen.reports() == [51, 53, 55, 54, 52, 50] && matches!(waited, Ok(Exit::Wfi { .. })),
        "enabled SPIs are taken most urgent first: {:?}; the disabled one wakes nothing ({waited:?})",
        seen.reports()
    );
    let second = seen.run_until_stop(handle, 0);
    passed &= check!(
        seen.reports() == [51, 53, 55, 54, 52, 50, 42, 43] && seen.values().get(2) == Some(&0),
        "enabling SPI 42 delivers it; a set-pending cleared before enable is gone, set again it is taken: {:?} (pending {:?})",
        &seen.reports()[6.min(seen.reports().len())..],
        seen.values().get(2)
    );
    passed &= check!(matches!(second, Ok(Exit::Mmio { ipa: READY, .. })), "SPI 44 routed to vCPU 1: {second:?}");
    let routed = hypercall::vcpu_inject_irq(handle, 0, 44);
    passed &= check!(routed == Ok(1), "SPI 44 injected: the hyp names vCPU 1 ({routed:?})");
    let off = seen.run_until_stop(handle, 0);
    passed &= check!(off == Ok(Exit::CpuOff), "vCPU 0 turns itself off: {off:?}");
    // vCPU 1 (the interrupt guest) says it is ready first.
    let ready = seen.run_until_stop(handle, 1);
    let end = if matches!(ready, Ok(Exit::Mmio { ipa: READY, .. })) { seen.run_until_stop(handle, 1) } else { ready };
    passed &= check!(
        seen.reports().get(8) == Some(&44) && end == Ok(Exit::SystemOff) && seen.fault.is_none(),
        "vCPU 1 takes SPI 44: {:?}, then {end:?} (fault {:x?})",
        seen.reports().get(8),
        seen.fault
    );
    passed &= tear_down(handle, "distributor VM");
    passed &= check!(hypercall::vm_reclaim(handle, GUEST_ENTRY, 2).is_ok(), "reclaim the distributor VM's pages");
    passed
}

/// More interrupts than list registers, to a guest that never exits while it
/// takes them: the rest arrive through the maintenance interrupt (the list
/// registers ran low), in INTID order (all of priority 0).
fn burst_vm(platform: &HostPlatform, pa: u64) -> bool {
    const COUNT: usize = 10;
    let Some((v2, gic_name)) = board_gic(platform, "maintenance interrupt") else {
        return true;
    };
    let mut passed = true;
    load(pa, guests::burst());
    let ready = create_ready(VmType::Protected, 1, pa, 2, COUNT as u64 | if v2 { 2 << 16 } else { 0 });
    let Ok(handle) = ready else {
        return check!(false, "set up the burst VM: {ready:?}");
    };
    let first = run_vcpu(handle, 0, 0);
    let intids: [u64; COUNT] = core::array::from_fn(|i| 60 + (i as u64 * 7) % COUNT as u64);
    let injected = intids.iter().all(|&intid| hypercall::vcpu_inject_irq(handle, 0, intid) == Ok(0));
    passed &= check!(
        matches!(first, Ok(Exit::Mmio { ipa: READY, .. })) && injected,
        "the burst guest is ready; SPIs 60..70 made pending: {first:?}"
    );
    let mut seen = Seen::default();
    let end = seen.run_until_stop(handle, 0);
    // All of one priority: which of those in list registers the GIC presents
    // first is up to it. Each must arrive exactly once.
    let mut taken = [0u64; COUNT];
    let count = seen.reports().len();
    taken[..count.min(COUNT)].copy_from_slice(&seen.reports()[..count.min(COUNT)]);
    taken.sort_unstable();
    let expected: [u64; COUNT] = core::array::from_fn(|i| 60 + i as u64);
    passed &= check!(
        count == COUNT && taken == expected && end == Ok(Exit::SystemOff),
        "a guest that never exits takes each of {COUNT} interrupts once through the list registers and the maintenance interrupt ({gic_name}): {taken:?}"
    );
    passed &= tear_down(handle, "burst VM");
    passed &= check!(hypercall::vm_reclaim(handle, GUEST_ENTRY, 2).is_ok(), "reclaim the burst VM's pages");
    passed
}

/// Without a GIC: the virtual IRQ line (HCR_EL2.VI). A protected guest's
/// virtual timer ticks through it (the hyp ORs the timer's output into the
/// line), then the host raises the line itself and lowers it when the guest
/// acknowledges (see `guest_line` in guests.S). With a GIC the call is refused.
fn irq_line_vm(platform: &HostPlatform, pa: u64) -> bool {
    use aarch64_cpu::registers::{Readable, CNTFRQ_EL0, CNTPCT_EL0};
    const TICKS: u64 = 5;
    const STATUS: u64 = GUEST_UART + 0x58;
    const ACK: u64 = GUEST_UART + 0x60;
    let mut passed = true;
    load(pa, guests::line());
    let period = (CNTFRQ_EL0.get() / 1000).max(1);
    let ready = create_ready(VmType::Protected, 1, pa, 1, TICKS | period << 16);
    let Ok(handle) = ready else {
        return check!(false, "set up the IRQ-line VM: {ready:?}");
    };
    if platform.gic.is_some() {
        let refused =
            [hypercall::vcpu_set_irq_line(handle, 0, 1), hypercall::vcpu_inject_irq(handle, 0, 288).map(|_| ())];
        passed &= check!(
            refused == [Err(HypError::NotSupported), Err(HypError::InvalidArgument)],
            "with a GIC the IRQ line is not the host's to set: {refused:?}"
        );
    } else {
        let bad = [hypercall::vcpu_set_irq_line(handle, 0, 2), hypercall::vcpu_set_irq_line(handle, 1, 1)];
        passed &= check!(
            bad == [Err(HypError::InvalidArgument), Err(HypError::NoSuchVcpu)],
            "bad IRQ-line calls refused: {bad:?}"
        );
        let (mut line, mut answer, mut reported, mut end) = (false, 0, None, None);
        for _ in 0..4096 {
            let exit = run_vcpu(handle, 0, answer);
            answer = 0;
            match exit {
                Ok(Exit::Mmio { ipa: STATUS, write: false, .. }) => answer = u64::from(line),
                Ok(Exit::Mmio { ipa: ACK, write: true, .. }) => {
                    line = false;
                    passed &= hypercall::vcpu_set_irq_line(handle, 0, 0).is_ok();
                }
                Ok(Exit::Mmio { ipa: READY, write: true, .. }) => {
                    line = true;
                    passed &= hypercall::vcpu_set_irq_line(handle, 0, 1).is_ok();
                }
                Ok(Exit::Wfi { timer_deadline }) => {
                    while timer_deadline != u64::MAX && CNTPCT_EL0.get() < timer_deadline {
                        core::hint::spin_loop();
                    }
                }
                Ok(Exit::Interrupted) => {}
                Ok(Exit::Hypercall { function: HOST_CALL, arg }) => reported = Some((arg & 0xffff, arg >> 16)),
                other => {
                    end = Some(other);
                    break;
                }
            }
        }
        passed &= check!(
            reported == Some((TICKS, 1)) && end == Some(Ok(Exit::SystemOff)),
            "without a GIC a protected guest takes its timer ticks and the host's interrupt through its virtual IRQ line: (ticks, host interrupts) {reported:?}, then {end:?}"
        );
    }
    passed &= tear_down(handle, "IRQ-line VM");
    passed &= check!(hypercall::vm_reclaim(handle, GUEST_ENTRY, 1).is_ok(), "reclaim the IRQ-line VM's page");
    passed
}
