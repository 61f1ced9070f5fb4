//! Conformance checks of the GIC a guest sees (issue 20), at whichever GIC
//! version the board has, in both VM types: what the architecture says a
//! guest observes, step by step, as an outside conformance suite would check
//! it. The guest (`guest_remote` in guests.S) does one command at a time for
//! the host (a register access, an acknowledge, an EOI, waiting for an
//! interrupt); the host checks each result and, with a second CPU, runs each
//! command on the other CPU than the one before, so that the vCPU's active
//! interrupts, priorities and list registers move between physical CPUs
//! between the steps.
//!
//! - SGIs: every GICD_SGIR filter (GICv2; the source CPU in GICC_IAR, one
//!   interrupt per source, GICD_SPENDSGIR/CPENDSGIR) or ICC_SGI1R_EL1 form
//!   (GICv3: a target list, all but self, affinities and a range no vCPU has,
//!   and ICC_SGI0R_EL1/ICC_ASGI1R_EL1, which pend nothing: every SGI is group 1).
//! - Priorities: a more urgent interrupt preempts an active one, a less urgent
//!   one waits; the priority mask; the binary point's group priority.
//! - Active state and EOI modes: EOImode 0 (EOIR ends), EOImode 1 (EOIR drops
//!   the priority, DIR deactivates; until then the interrupt stays active).
//! - GICv2's CPU interface takes aligned 32-bit accesses only: a byte store
//!   aborts in the guest, and never reaches the host.

use crate::harness::cpus::{own_index, start_second_cpu, turn_off_second_cpu};
use crate::harness::gic::GicConfig;
use crate::harness::hypercall;
use crate::harness::platform::HostPlatform;
use crate::harness::remote_guest::{check_vm_ends, Cpus, Failure, Op, Remote, SPURIOUS};
use crate::harness::report::check;
use hyp_abi::{
    VmType, GUEST_GICV2_CPU_INTERFACE as GICC, GUEST_GICV3_REDISTRIBUTORS as GICR, GUEST_GIC_DISTRIBUTOR as GICD,
};

/// Runs the GIC conformance checks with the guest's code in the page at `pa`;
/// true when all passed. Without a GIC there is nothing to check.
pub fn run_all(platform: &HostPlatform, pa: u64) -> bool {
    let Some(gic) = platform.gic else {
        log::info!("no GIC: the GIC conformance checks are skipped");
        return true;
    };
    let v2 = matches!(gic, GicConfig::V2 { .. });
    let cpus = Cpus { own: own_index(platform), other: start_second_cpu(platform) };
    let mut passed = true;
    for ty in [VmType::NonProtected, VmType::Protected] {
        passed &= if v2 { gicv2_sgis(pa, ty, cpus) } else { gicv3_sgis(pa, ty, cpus) };
        passed &= priorities_and_eoi_modes(pa, ty, v2, cpus);
        if v2 {
            passed &= gicv2_cpu_interface_byte_store(pa, ty, cpus);
        }
    }
    passed & turn_off_second_cpu(platform, cpus.other, "GIC conformance")
}

/// What [`gicv2_sgis`] sees.
type Gicv2Sgis = ([u64; 3], u64, [[u64; 4]; 3], [u64; 2], [u64; 3]);

/// GICv2 SGIs among three vCPUs: vCPU 1 sends SGI 3 to the list {0, 2}, vCPU
/// 2 to all but itself, vCPU 0 to itself, and vCPU 0 SGI 4 with the reserved
/// filter (to no one). Each vCPU's GICD_SPENDSGIR0 shows SGI 3 pending per
/// source; GICC_IAR gives SGI 3 once per source, with the source CPU in bits
/// 12:10, each after the one before is ended. Then vCPU 0 sets SGI 4 pending
/// from vCPUs 1 and 2 (GICD_SPENDSGIR1), clears it from 2 (GICD_CPENDSGIR1)
/// and takes it from 1 only. Last, in EOImode 1, vCPUs 1 and 2 send it SGI 5:
/// it takes the one from vCPU 1, drops its priority and deactivates it
/// (GICC_DIR with the source), then the one from vCPU 2.
fn gicv2_sgis(pa: u64, ty: VmType, cpus: Cpus) -> bool {
    let Ok(mut vm) = Remote::start(ty, 3, pa, true, cpus).map_err(|f| check!(false, "set up the GICv2 SGI VM: {f:?}"))
    else {
        return false;
    };
    let seen = (|| -> Result<Gicv2Sgis, Failure> {
        vm.store(1, GICD + 0xf00, 0b101 << 16 | 3)?;
        vm.store(2, GICD + 0xf00, 1 << 24 | 3)?;
        vm.store(0, GICD + 0xf00, 2 << 24 | 3)?;
        vm.store(0, GICD + 0xf00, 3 << 24 | 0xff << 16 | 4)?;
        let pending = [vm.load(0, GICD + 0xf20)?, vm.load(1, GICD + 0xf20)?, vm.load(2, GICD + 0xf20)?];
        let reserved = vm.load(0, GICD + 0xf24)?;
        let taken = [vm.drain(0)?, vm.drain(1)?, vm.drain(2)?];
        vm.store(0, GICD + 0xf24, 0b110)?;
        vm.store(0, GICD + 0xf14, 0b100)?;
        let cleared = vm.drain(0)?;
        vm.eoi_mode(0, true)?;
        vm.store(2, GICD + 0xf00, 1 << 16 | 5)?;
        vm.store(1, GICD + 0xf00, 1 << 16 | 5)?;
        let mut split = [SPURIOUS; 3];
        for slot in split.iter_mut() {
            *slot = vm.iar(0)?;
            if *slot == SPURIOUS {
                break;
            }
            vm.eoir(0, *slot)?;
            vm.dir(0, *slot)?;
        }
        vm.eoi_mode(0, false)?;
        Ok((pending, reserved, taken, cleared, split))
    })();
    let expected: Gicv2Sgis = (
        [0x0700_0000, 0x0400_0000, 0x0200_0000],
        0,
        [[0x003, 0x403, 0x803, SPURIOUS], [0x803, SPURIOUS, SPURIOUS, SPURIOUS], [0x403, SPURIOUS, SPURIOUS, SPURIOUS]],
        [0x404, SPURIOUS],
        [0x405, 0x805, SPURIOUS],
    );
    let passed = check!(
        seen == Ok(expected),
        "GICv2 SGIs ({ty:?}, {}): GICD_SGIR to a list, to all but the sender, to the sender and with the reserved filter; (GICD_SPENDSGIR0 of vCPUs 0..3, SGI 4 pending by the reserved filter), then GICC_IAR per vCPU, the source in bits 12:10, then SGI 4 set pending from vCPUs 1 and 2 and cleared from 2, then SGI 5 from vCPUs 2 and 1 in EOImode 1 (GICC_IAR, each ended by EOIR and DIR): {seen:x?}",
        cpus.describe()
    );
    passed & vm.finish(ty, "GICv2 SGI VM")
}

/// A GICv2 guest's byte store to its CPU interface (GICC_PMR): the hyp
/// performs only aligned 32-bit accesses there, and anything else gets a
/// synchronous external abort (EC 0x25 from EL1, DFSC 0x10); it never reaches
/// the host as an MMIO exit, which would hand it the stored value (a
/// protected guest's too). The guest reports the abort and powers off.
fn gicv2_cpu_interface_byte_store(pa: u64, ty: VmType, cpus: Cpus) -> bool {
    let Ok(mut vm) =
        Remote::start(ty, 1, pa, true, cpus).map_err(|f| check!(false, "set up the GICv2 byte-store VM: {f:?}"))
    else {
        return false;
    };
    let stored = vm.cmd(0, Op::StoreByte, GICC + 0x4, 0xa5);
    let aborted = matches!(stored, Err(Failure::Fault(esr)) if esr >> 26 == 0x25 && esr & 0x3f == 0x10);
    let passed = check!(
        aborted,
        "GICv2 CPU interface ({ty:?}): a byte store to GICC_PMR takes a synchronous external abort, no MMIO exit: {stored:x?}"
    );
    passed & check_vm_ends(vm.handle, ty, "GICv2 byte-store VM", None, vm.run(0, 0))
}

/// What [`gicv3_sgis`] sees.
type Gicv3Sgis = (u64, [[u64; 3]; 3]);

/// GICv3 SGIs among three vCPUs (MPIDR affinity 0.0.0.n): vCPU 1 sends SGI 3
/// (priority 0xa0) to the target list {0, 2}, vCPU 2 SGI 4 (priority 0x90) to
/// all but itself (IRM); vCPU 0 sends SGI 5 to Aff1 1 and to range 1 (no such
/// vCPUs), and SGIs 6 and 7 to itself through ICC_SGI0R_EL1 and
/// ICC_ASGI1R_EL1 (group 0 only: every SGI here is group 1, nothing pends).
/// vCPU 0's GICR_ISPENDR0 shows 3 and 4; each vCPU then takes what was sent
/// to it, most urgent first, each once.
fn gicv3_sgis(pa: u64, ty: VmType, cpus: Cpus) -> bool {
    let Ok(mut vm) = Remote::start(ty, 3, pa, false, cpus).map_err(|f| check!(false, "set up the GICv3 SGI VM: {f:?}"))
    else {
        return false;
    };
    let seen = (|| -> Result<Gicv3Sgis, Failure> {
        vm.store(0, GICR + 0x1_0400, 0xa0 << 24)?;
        vm.store(0, GICR + 0x1_0404, 0x90)?;
        vm.op(1, Op::Sgi1r, 3 << 24 | 0b101)?;
        vm.op(2, Op::Sgi1r, 1 << 40 | 4 << 24)?;
        vm.op(0, Op::Sgi1r, 1 << 16 | 5 << 24 | 1)?;
        vm.op(0, Op::Sgi1r, 1 << 44 | 5 << 24 | 1)?;
        vm.op(0, Op::Sgi0r, 6 << 24 | 1)?;
        vm.op(0, Op::Asgi1r, 7 << 24 | 1)?;
        let pending = vm.load(0, GICR + 0x1_0200)?;
        Ok((pending, [vm.drain(0)?, vm.drain(1)?, vm.drain(2)?]))
    })();
    let expected: Gicv3Sgis = (1 << 3 | 1 << 4, [[4, 3, SPURIOUS], [4, SPURIOUS, SPURIOUS], [3, SPURIOUS, SPURIOUS]]);
    let passed = check!(
        seen == Ok(expected),
        "GICv3 SGIs ({ty:?}, {}): ICC_SGI1R_EL1 to a target list, to all but the sender (IRM), to Aff1 1 and range 1 (nobody), ICC_SGI0R_EL1 and ICC_ASGI1R_EL1 (group 0: nothing); vCPU 0's GICR_ISPENDR0, then ICC_IAR1_EL1 per vCPU: {seen:x?}",
        cpus.describe()
    );
    passed & vm.finish(ty, "GICv3 SGI VM")
}

/// What [`priorities_and_eoi_modes`] sees.
type Priorities = ([u64; 7], [u64; 3], [[u64; 3]; 2], [u64; 2], [u64; 5]);

/// One vCPU, SPIs 40..43 at priorities 0x80, 0x40, 0xa0, 0x60, injected by
/// the host as the steps need them:
/// - preemption: 40 acknowledged (running priority 0x80); 41 preempts it, 42
///   waits until both are ended; the running priority follows (idle: 0xff);
/// - the priority mask: at 0x90, 42 (0xa0) is neither acknowledged nor taken,
///   at 0xff it is;
/// - the binary point (as GICC_BPR counts it): with 5 (group priority bits
///   7:6), 43 (0x60) active holds off 41 (0x40) until ended; with 4 (bits
///   7:5) 41 preempts 43 (and nothing is left after);
/// - EOImode 0: EOIR ends 40, which injected again is taken at once;
/// - EOImode 1: EOIR only drops 40's priority (running priority idle); 40
///   injected again stays pending behind its active self until DIR; then it
///   is taken, and ended, nothing remains.
fn priorities_and_eoi_modes(pa: u64, ty: VmType, v2: bool, cpus: Cpus) -> bool {
    let gic_name = if v2 { "GICv2" } else { "GICv3" };
    let Ok(mut vm) =
        Remote::start(ty, 1, pa, v2, cpus).map_err(|f| check!(false, "set up the {gic_name} priority VM: {f:?}"))
    else {
        return false;
    };
    let handle = vm.handle;
    let inject = |intid: u64| hypercall::vcpu_inject_irq(handle, 0, intid).map(|_| ()).map_err(Failure::Run);
    let seen = (|| -> Result<Priorities, Failure> {
        vm.store(0, GICD + 0x428, 0x60a0_4080)?;
        vm.store(0, GICD + 0x104, 0xf << 8)?;
        inject(40)?;
        let (acked, running) = (vm.iar(0)?, vm.rpr(0)?);
        inject(41)?;
        inject(42)?;
        let (preempted, running_now, waiting) = (vm.wait_irq(0)?, vm.rpr(0)?, vm.wait_irq(0)?);
        vm.eoir(0, 41)?;
        vm.eoir(0, 40)?;
        let last = vm.wait_irq(0)?;
        vm.eoir(0, last)?;
        let preemption = [acked, running, preempted, running_now, waiting, last, vm.rpr(0)?];

        vm.pmr(0, 0x90)?;
        inject(42)?;
        let (masked_iar, masked_wait) = (vm.iar(0)?, vm.wait_irq(0)?);
        vm.pmr(0, 0xff)?;
        let unmasked = vm.wait_irq(0)?;
        vm.eoir(0, unmasked)?;
        let mask = [masked_iar, masked_wait, unmasked];

        // 43 active, 41 pending: what is taken before 43 ends, and after.
        let mut binary_point = [[SPURIOUS; 3]; 2];
        for (point, seen) in [5, 4].into_iter().zip(binary_point.iter_mut()) {
            vm.bpr(0, point)?;
            inject(43)?;
            seen[0] = vm.iar(0)?;
            inject(41)?;
            for (slot, end_active) in [(1, true), (2, false)] {
                seen[slot] = vm.wait_irq(0)?;
                if seen[slot] != SPURIOUS {
                    vm.eoir(0, seen[slot])?;
                }
                if end_active {
                    vm.eoir(0, seen[0])?;
                }
            }
        }

        vm.eoi_mode(0, false)?;
        inject(40)?;
        let first = vm.iar(0)?;
        vm.eoir(0, first)?;
        inject(40)?;
        let again = vm.wait_irq(0)?;
        vm.eoir(0, again)?;
        let mode0 = [first, again];

        vm.eoi_mode(0, true)?;
        inject(40)?;
        let split = vm.iar(0)?;
        vm.eoir(0, split)?;
        let dropped = vm.rpr(0)?;
        inject(40)?;
        let still_active = vm.wait_irq(0)?;
        vm.dir(0, split)?;
        let taken = vm.wait_irq(0)?;
        vm.eoir(0, taken)?;
        vm.dir(0, taken)?;
        let mode1 = [split, dropped, still_active, taken, vm.wait_irq(0)?];
        vm.eoi_mode(0, false)?;
        Ok((preemption, mask, binary_point, mode0, mode1))
    })();
    let expected: Priorities = (
        [40, 0x80, 41, 0x40, SPURIOUS, 42, 0xff],
        [SPURIOUS, SPURIOUS, 42],
        [[43, SPURIOUS, 41], [43, 41, SPURIOUS]],
        [40, 40],
        [40, 0xff, SPURIOUS, 40, SPURIOUS],
    );
    let passed = check!(
        seen == Ok(expected),
        "{gic_name} priorities and EOI modes ({ty:?}, {}): preemption (IAR, RPR, taken, RPR, waiting, taken after both ended, RPR idle), priority mask 0x90 then 0xff, binary point 5 then 4, EOImode 0, EOImode 1 (IAR, RPR after EOIR, pending behind its active self, taken after DIR, nothing left): {seen:x?}",
        cpus.describe()
    );
    passed & vm.finish(ty, if v2 { "GICv2 priority VM" } else { "GICv3 priority VM" })
}
