//! Conformance checks of the timers a guest sees (issue 20), at whichever GIC
//! version the board has, in both VM types: the virtual timer (the
//! hardware's, CNTV_*, PPI 27) and the EL1 physical timer (emulated by the
//! hyp, CNTP_*, PPI 30), each checked the same way, as an outside
//! conformance suite would. The remote guest of the GIC checks
//! (`harness::remote_guest`, `guest_remote` in guests.S) does one timer-register
//! access, pending-register read, WFI or interrupt wait at a time for the
//! host; with a second CPU each step runs on the other CPU than the one
//! before.
//!
//! For each timer: it fires (the interrupt is taken, ISTATUS reads set;
//! disabled and ended, nothing more comes); masked (IMASK) it asserts no
//! interrupt while ISTATUS stays set; a compare value in the past fires at
//! once; re-armed into the future or disabled after it fired (with IRQs
//! masked), its interrupt is no longer pending (GICD_ISPENDR0 or
//! GICR_ISPENDR0) and is not taken: the interrupt follows the timer's level;
//! TVAL counts down and reads negative after expiry; a WFI with only this
//! timer armed ends at its deadline (for the physical timer, exactly its
//! compare value, a physical count) and the interrupt is taken.

use crate::harness::cpus::{own_index, start_second_cpu, turn_off_second_cpu};
use crate::harness::gic::GicConfig;
use crate::harness::platform::HostPlatform;
use crate::harness::remote_guest::{Cpus, Failure, Op, Remote, ARG, CMD, FAULT, MAX_RUNS, RESULT, SPURIOUS};
use crate::harness::report::check;
use hyp_abi::{Exit, VmType, GUEST_GICV3_REDISTRIBUTORS as GICR, GUEST_GIC_DISTRIBUTOR as GICD};

/// CNT*_CTL_EL0.ENABLE and .IMASK.
const ENABLE: u64 = 1;
const IMASK: u64 = 2;
/// Timer ticks (62.5 MHz on QEMU's virt board: 16 ns each) until the timer
/// fires while the guest waits unmasked: 100 µs.
const FIRE_TICKS: u64 = 6_250;
/// Far enough in the future that no step reaches it: about 17 s.
const FAR_TICKS: u64 = 1 << 30;
/// Until the timer a WFI waits for fires: 100 ms, so that the few steps
/// between arming it and the WFI (each an exit to this host) are done first
/// however slow the run.
const WFI_TICKS: u64 = 6_250_000;
/// The guest's polls while it waits for a timer to fire (a few instructions
/// each: far longer than [`FIRE_TICKS`] under TCG).
const LONG_POLLS: u64 = 1 << 24;

/// One of the guest's timers, as the remote guest's operations reach it.
struct Timer {
    name: &'static str,
    intid: u64,
    ctl: Op,
    ctl_read: Op,
    cval: Op,
    tval: Op,
    tval_read: Op,
    count: Op,
}

const VIRTUAL: Timer = Timer {
    name: "virtual",
    intid: 27,
    ctl: Op::CntvCtl,
    ctl_read: Op::CntvCtlRead,
    cval: Op::CntvCval,
    tval: Op::CntvTval,
    tval_read: Op::CntvTvalRead,
    count: Op::CntvctRead,
};

const PHYSICAL: Timer = Timer {
    name: "physical",
    intid: 30,
    ctl: Op::CntpCtl,
    ctl_read: Op::CntpCtlRead,
    cval: Op::CntpCval,
    tval: Op::CntpTval,
    tval_read: Op::CntpTvalRead,
    count: Op::CntpctRead,
};

/// What [`check_timer`] sees: fires (taken, CTL, taken after disable and
/// EOI), masked (CTL, pending, taken), compare in the past (taken), re-arm
/// (pending before, after, taken), disable (the same), TVAL (in range,
/// decreasing, negative after expiry, ISTATUS then), WFI (woken at the
/// deadline, taken).
type Seen = ([u64; 3], [u64; 3], u64, [u64; 3], [u64; 3], [bool; 4], (bool, u64));

/// Runs the timer conformance checks with the guest's code in the page at
/// `pa`; true when all passed. Without a GIC there is nothing to check.
pub fn run_all(platform: &HostPlatform, pa: u64) -> bool {
    let Some(gic) = platform.gic else {
        log::info!("no GIC: the timer conformance checks are skipped");
        return true;
    };
    let v2 = matches!(gic, GicConfig::V2 { .. });
    let cpus = Cpus { own: own_index(platform), other: start_second_cpu(platform) };
    let mut passed = true;
    for ty in [VmType::NonProtected, VmType::Protected] {
        passed &= timers(pa, ty, v2, cpus);
    }
    passed & turn_off_second_cpu(platform, cpus.other, "timer conformance")
}

/// Both timers of one vCPU of a VM of type `ty`.
fn timers(pa: u64, ty: VmType, v2: bool, cpus: Cpus) -> bool {
    let gic_name = if v2 { "GICv2" } else { "GICv3" };
    let Ok(mut vm) =
        Remote::start(ty, 1, pa, v2, cpus).map_err(|f| check!(false, "set up the {gic_name} timer VM: {f:?}"))
    else {
        return false;
    };
    // The timers' PPIs enabled: GICD_ISENABLER0 (banked) or GICR_ISENABLER0.
    let (enable, pending) = if v2 { (GICD + 0x100, GICD + 0x200) } else { (GICR + 0x1_0100, GICR + 0x1_0200) };
    let mut passed = check!(
        vm.store(0, enable, 1 << VIRTUAL.intid | 1 << PHYSICAL.intid).is_ok(),
        "{gic_name} timer VM ({ty:?}): PPIs 27 and 30 enabled"
    );
    for timer in [VIRTUAL, PHYSICAL] {
        let seen = check_timer(&mut vm, &timer, pending);
        let i = timer.intid;
        let expected: Seen = (
            [i, ENABLE | 4, SPURIOUS],
            [ENABLE | IMASK | 4, 0, SPURIOUS],
            i,
            [1, 0, SPURIOUS],
            [1, 0, SPURIOUS],
            [true; 4],
            (true, i),
        );
        passed &= check!(
            seen == Ok(expected),
            "{gic_name} {} timer ({ty:?}, {}): fires (taken, CTL, after disable and EOI), masked (CTL, pending, taken), compare in the past (taken at once), re-armed into the future (pending before, after, taken), disabled (pending before, after, taken), TVAL (counts from its value, decreases, negative after expiry, ISTATUS), WFI (woken at the deadline, taken): {seen:x?}",
            timer.name,
            cpus.describe()
        );
    }
    passed & vm.finish(ty, if v2 { "GICv2 timer VM" } else { "GICv3 timer VM" })
}

/// The checks of one timer on vCPU 0 (IRQs masked between the steps; the
/// guest's pending register for its PPIs at `pending_reg`).
fn check_timer(vm: &mut Remote, t: &Timer, pending_reg: u64) -> Result<Seen, Failure> {
    let pending = |vm: &mut Remote| vm.load(0, pending_reg).map(|word| word >> t.intid & 1);

    vm.op(0, t.ctl, 0)?;
    vm.op(0, t.tval, FIRE_TICKS)?;
    vm.op(0, t.ctl, ENABLE)?;
    let taken = vm.op(0, Op::WaitIrq, LONG_POLLS)?;
    let ctl = vm.op(0, t.ctl_read, 0)?;
    vm.op(0, t.ctl, 0)?;
    vm.eoir(0, taken)?;
    let fires = [taken, ctl, vm.wait_irq(0)?];

    vm.op(0, t.cval, 0)?;
    vm.op(0, t.ctl, ENABLE | IMASK)?;
    let masked = [vm.op(0, t.ctl_read, 0)?, pending(vm)?, vm.wait_irq(0)?];

    vm.op(0, t.ctl, ENABLE)?;
    let past = vm.wait_irq(0)?;
    vm.op(0, t.ctl, 0)?;
    vm.eoir(0, past)?;

    // Fired with IRQs masked, then re-armed into the future.
    vm.op(0, t.ctl, ENABLE)?;
    let before = pending(vm)?;
    vm.op(0, t.tval, FAR_TICKS)?;
    let rearmed = [before, pending(vm)?, vm.wait_irq(0)?];

    // Fired with IRQs masked, then disabled.
    vm.op(0, t.cval, 0)?;
    let before = pending(vm)?;
    vm.op(0, t.ctl, 0)?;
    let disabled = [before, pending(vm)?, vm.wait_irq(0)?];

    vm.op(0, t.ctl, ENABLE | IMASK)?;
    vm.op(0, t.tval, FAR_TICKS)?;
    let first = vm.op(0, t.tval_read, 0)? as u32 as i32;
    let second = vm.op(0, t.tval_read, 0)? as u32 as i32;
    vm.op(0, t.tval, (-100i64) as u64)?;
    let expired = vm.op(0, t.tval_read, 0)? as u32 as i32;
    let istatus = vm.op(0, t.ctl_read, 0)?;
    let tval = [0 < first && first as u64 <= FAR_TICKS, second < first, expired < -100, istatus == ENABLE | IMASK | 4];

    vm.op(0, t.ctl, 0)?;
    let cval = vm.op(0, t.count, 0)? + WFI_TICKS;
    vm.op(0, t.cval, cval)?;
    vm.op(0, t.ctl, ENABLE)?;
    let deadline = wfi(vm)?;
    let woken = vm.wait_irq(0)?;
    vm.op(0, t.ctl, 0)?;
    vm.eoir(0, woken)?;
    // The physical timer's deadline is its compare value; the virtual one's
    // is offset by the VM's CNTVOFF_EL2, which the guest cannot read.
    let at_deadline = if t.intid == PHYSICAL.intid { deadline == cval } else { deadline != u64::MAX };
    Ok((fires, masked, past, rearmed, disabled, tval, (at_deadline, woken)))
}

/// The guest's WFI (vCPU 0): the deadline its run ended with
/// (`Exit::Wfi`), after which the host waits until the physical count
/// reaches it and runs the vCPU again, past its WFI.
fn wfi(vm: &mut Remote) -> Result<u64, Failure> {
    use aarch64_cpu::registers::{Readable, CNTVCT_EL0};
    vm.until(0, Op::Wfi as u64, ARG)?;
    let mut deadline = None;
    for _ in 0..MAX_RUNS {
        match vm.run(0, 0)? {
            Exit::Mmio { ipa: RESULT, .. } => {
                vm.until(0, 0, CMD)?;
                vm.step += 1;
                return deadline.ok_or(Failure::Lost);
            }
            Exit::Mmio { ipa: FAULT, write: true, value: esr, .. } => return Err(Failure::Fault(esr)),
            Exit::Wfi { timer_deadline: u64::MAX } => {
                return Err(Failure::Unexpected(Exit::Wfi { timer_deadline: u64::MAX }))
            }
            Exit::Wfi { timer_deadline } => {
                deadline.get_or_insert(timer_deadline);
                // The host's virtual count is the physical one (its
                // CNTVOFF_EL2 is 0).
                while CNTVCT_EL0.get() < timer_deadline {
                    core::hint::spin_loop();
                }
            }
            Exit::Wake { .. } | Exit::Interrupted => {}
            other => return Err(Failure::Unexpected(other)),
        }
    }
    Err(Failure::Lost)
}
