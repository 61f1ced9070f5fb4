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

use crate::guests::{self, load, GUEST_ENTRY, GUEST_UART};
use crate::harness::cpus::{self, own_index, post, secondaries, wait_for};
use crate::harness::gic::GicConfig;
use crate::harness::hypercall;
use crate::harness::platform::HostPlatform;
use crate::harness::report::check;
use crate::harness::vms::{create_ready, run_vcpu, tear_down};
use hyp_abi::{
    Exit, HypError, VmType, GUEST_GICV2_CPU_INTERFACE as GICC, GUEST_GICV3_REDISTRIBUTORS as GICR,
    GUEST_GIC_DISTRIBUTOR as GICD,
};

/// The remote guest's registers (`REMOTE_*` in guests.S) and its fault report.
pub(crate) const CMD: u64 = GUEST_UART + 0x68;
pub(crate) const ARG: u64 = GUEST_UART + 0x70;
pub(crate) const RESULT: u64 = GUEST_UART + 0x78;
pub(crate) const FAULT: u64 = GUEST_UART + 0x40;
/// What GICC_IAR and ICC_IAR1_EL1 read with nothing to acknowledge.
pub(crate) const SPURIOUS: u64 = 1023;
/// The remote guest's polls for an interrupt before it reports none.
const POLLS: u64 = 4096;
/// Runs of one command before the guest is declared stuck.
pub(crate) const MAX_RUNS: usize = 64;
/// PSCI ALREADY_ON.
const PSCI_ALREADY_ON: i64 = -4;

/// The remote guest's operations (see guests.S; the timer suite's too).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Op {
    CpuOff = 0,
    SystemOff = 1,
    Store = 2,
    Load = 3,
    Sgi1r = 4,
    Sgi0r = 5,
    Asgi1r = 6,
    Iar = 7,
    Eoir = 8,
    Dir = 9,
    Pmr = 10,
    Bpr = 11,
    Ctlr = 12,
    Rpr = 13,
    Igrpen1 = 14,
    WaitIrq = 15,
    CpuOn = 16,
    CntvCtl = 17,
    CntvCtlRead = 18,
    CntvCval = 19,
    CntvTval = 20,
    CntvTvalRead = 21,
    CntpCtl = 22,
    CntpCtlRead = 23,
    CntpCval = 24,
    CntpTval = 25,
    CntpTvalRead = 26,
    CntvctRead = 27,
    CntpctRead = 28,
    Wfi = 29,
}

/// Why a step did not give its result.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Failure {
    Run(HypError),
    /// An exit the step did not expect.
    Unexpected(Exit),
    /// The guest took an exception (its ESR_EL1).
    Fault(u64),
    /// No answer (the other CPU, or too many runs).
    Lost,
}

/// The CPUs the vCPUs run on: this one, and another if there is one.
#[derive(Clone, Copy)]
pub(crate) struct Cpus {
    pub(crate) own: usize,
    /// (index, MPIDR, whether this suite started it).
    pub(crate) other: Option<(usize, u64, bool)>,
}

impl Cpus {
    /// The CPU of step `step`: with two, they take turns.
    fn for_step(&self, step: usize) -> usize {
        match self.other {
            Some((cpu, ..)) if step % 2 == 1 => cpu,
            _ => self.own,
        }
    }

    pub(crate) fn describe(&self) -> &'static str {
        if self.other.is_some() {
            "the vCPU on another CPU at every step"
        } else {
            "one CPU"
        }
    }
}

/// `VCPU_RUN` as another CPU's job: `[handle, vcpu, value]`.
fn run_job(_cpu: usize, [handle, vcpu, value]: [u64; 3]) -> [u64; 4] {
    hyp_abi::encode_result(hypercall::vcpu_run(handle, vcpu, value).map(Exit::encode))
}

/// A VM of the remote guest, driven one command at a time.
pub(crate) struct Remote {
    pub(crate) handle: u64,
    vcpus: u64,
    v2: bool,
    cpus: Cpus,
    /// Commands done (which CPU runs the next: [`Cpus::for_step`]).
    pub(crate) step: usize,
}

impl Remote {
    /// One `VCPU_RUN` of `vcpu` (answering a load with `value`), on the CPU
    /// whose turn it is.
    pub(crate) fn run(&self, vcpu: u64, value: u64) -> Result<Exit, Failure> {
        let cpu = self.cpus.for_step(self.step);
        if cpu == self.cpus.own {
            return run_vcpu(self.handle, vcpu, value).map_err(Failure::Run);
        }
        post(cpu, run_job, [self.handle, vcpu, value]);
        let regs = wait_for(cpu).ok_or(Failure::Lost)?;
        match hyp_abi::decode_result(regs) {
            Ok(exit) => Exit::decode(exit).ok_or(Failure::Lost),
            Err(error) => Err(error.map_or(Failure::Lost, Failure::Run)),
        }
    }

    /// Runs `vcpu` (answering its pending load with `value`) until it loads
    /// from or stores to `ipa`: the value stored. A wake, a CPU_ON or the
    /// host's own interrupt on the way is no business of these checks.
    pub(crate) fn until(&self, vcpu: u64, mut value: u64, ipa: u64) -> Result<u64, Failure> {
        for _ in 0..MAX_RUNS {
            match self.run(vcpu, value)? {
                Exit::Mmio { ipa: at, value: stored, .. } if at == ipa => return Ok(stored),
                Exit::Mmio { ipa: FAULT, write: true, value: esr, .. } => return Err(Failure::Fault(esr)),
                Exit::Wake { .. } | Exit::CpuOn { .. } | Exit::Interrupted => {}
                other => return Err(Failure::Unexpected(other)),
            }
            value = 0;
        }
        Err(Failure::Lost)
    }

    /// Runs a vCPU that was just started to its first command.
    fn boot(&self, vcpu: u64) -> Result<(), Failure> {
        self.until(vcpu, 0, CMD).map(|_| ())
    }

    /// `op` with `ipa` and `value` on `vcpu` (waiting for a command): its result.
    pub(crate) fn cmd(&mut self, vcpu: u64, op: Op, ipa: u64, value: u64) -> Result<u64, Failure> {
        self.until(vcpu, op as u64 | ipa << 32, ARG)?;
        let result = self.until(vcpu, value, RESULT)?;
        self.until(vcpu, 0, CMD)?;
        self.step += 1;
        Ok(result)
    }

    /// `op` on `vcpu` with a value only.
    pub(crate) fn op(&mut self, vcpu: u64, op: Op, value: u64) -> Result<u64, Failure> {
        self.cmd(vcpu, op, 0, value)
    }

    pub(crate) fn store(&mut self, vcpu: u64, ipa: u64, value: u64) -> Result<(), Failure> {
        self.cmd(vcpu, Op::Store, ipa, value).map(|_| ())
    }

    pub(crate) fn load(&mut self, vcpu: u64, ipa: u64) -> Result<u64, Failure> {
        self.cmd(vcpu, Op::Load, ipa, 0)
    }

    /// A CPU interface register: GICC at `gicc` (GICv2) or the system
    /// register `op` (GICv3); a read when `value` is `None`.
    fn cpu_interface(&mut self, vcpu: u64, gicc: u64, op: Op, value: Option<u64>) -> Result<u64, Failure> {
        match (self.v2, value) {
            (true, Some(value)) => self.store(vcpu, GICC + gicc, value).map(|()| 0),
            (true, None) => self.load(vcpu, GICC + gicc),
            (false, value) => self.op(vcpu, op, value.unwrap_or(0)),
        }
    }

    pub(crate) fn iar(&mut self, vcpu: u64) -> Result<u64, Failure> {
        self.cpu_interface(vcpu, 0xc, Op::Iar, None)
    }

    pub(crate) fn eoir(&mut self, vcpu: u64, intid: u64) -> Result<u64, Failure> {
        self.cpu_interface(vcpu, 0x10, Op::Eoir, Some(intid))
    }

    fn dir(&mut self, vcpu: u64, intid: u64) -> Result<u64, Failure> {
        self.cpu_interface(vcpu, 0x1000, Op::Dir, Some(intid))
    }

    fn pmr(&mut self, vcpu: u64, mask: u64) -> Result<u64, Failure> {
        self.cpu_interface(vcpu, 0x4, Op::Pmr, Some(mask))
    }

    /// The binary point as GICC_BPR counts it (group priority bits
    /// 7:`point` + 1); ICC_BPR1_EL1 (group 1) counts one more.
    fn bpr(&mut self, vcpu: u64, point: u64) -> Result<u64, Failure> {
        self.cpu_interface(vcpu, 0x8, Op::Bpr, Some(if self.v2 { point } else { point + 1 }))
    }

    fn rpr(&mut self, vcpu: u64) -> Result<u64, Failure> {
        self.cpu_interface(vcpu, 0x14, Op::Rpr, None)
    }

    /// Acknowledges what `vcpu` has pending and ends it (EOImode 0), until
    /// nothing is left: each acknowledged value, then the spurious one.
    fn drain<const N: usize>(&mut self, vcpu: u64) -> Result<[u64; N], Failure> {
        let mut taken = [SPURIOUS; N];
        for slot in taken.iter_mut() {
            *slot = self.iar(vcpu)?;
            if *slot == SPURIOUS {
                break;
            }
            self.eoir(vcpu, *slot)?;
        }
        Ok(taken)
    }

    /// Unmasks IRQs on `vcpu` until one is taken: the INTID its handler
    /// acknowledged (not ended), or [`SPURIOUS`].
    pub(crate) fn wait_irq(&mut self, vcpu: u64) -> Result<u64, Failure> {
        self.op(vcpu, Op::WaitIrq, POLLS)
    }

    /// EOImode: 1 (`split`: EOIR drops the priority, DIR deactivates) or 0.
    fn eoi_mode(&mut self, vcpu: u64, split: bool) -> Result<u64, Failure> {
        let value = if self.v2 { 1 | u64::from(split) << 9 } else { u64::from(split) << 1 };
        self.cpu_interface(vcpu, 0x0, Op::Ctlr, Some(value))
    }

    /// Opens `vcpu`'s side of the GIC: its redistributor awake (GICv3), its
    /// CPU interface on with the priority mask open.
    fn open_cpu(&mut self, vcpu: u64) -> Result<(), Failure> {
        if self.v2 {
            self.store(vcpu, GICC + 0x4, 0xff)?;
            return self.store(vcpu, GICC, 1);
        }
        self.store(vcpu, GICR + (vcpu << 17) + 0x14, 0)?;
        self.op(vcpu, Op::Pmr, 0xff)?;
        self.op(vcpu, Op::Igrpen1, 1).map(|_| ())
    }

    /// A VM of `vcpus` vCPUs running the remote guest, all started (by vCPU
    /// 0's PSCI CPU_ON: the only way a protected VM's secondaries start), the
    /// distributor and every CPU interface open.
    pub(crate) fn start(ty: VmType, vcpus: u64, pa: u64, v2: bool, cpus: Cpus) -> Result<Remote, Failure> {
        // (Again for each VM: a protected VM's page comes back zeroed.)
        load(pa, guests::remote());
        let handle = create_ready(ty, vcpus, pa, 1, if v2 { 2 } else { 3 }).map_err(Failure::Run)?;
        let mut remote = Remote { handle, vcpus, v2, cpus, step: 0 };
        remote.boot(0)?;
        for vcpu in 1..vcpus {
            let status = remote.op(0, Op::CpuOn, vcpu)?;
            if status != 0 {
                return Err(Failure::Fault(status));
            }
            remote.boot(vcpu)?;
        }
        remote.store(0, GICD, if v2 { 1 } else { 0x12 })?;
        for vcpu in 0..vcpus {
            remote.open_cpu(vcpu)?;
        }
        Ok(remote)
    }

    /// The exit with which `op` (CPU_OFF or SYSTEM_OFF) ends `vcpu`'s run.
    fn power_off(&self, vcpu: u64, op: Op) -> Result<Exit, Failure> {
        self.until(vcpu, op as u64, ARG)?;
        for _ in 0..MAX_RUNS {
            match self.run(vcpu, 0)? {
                Exit::Interrupted => {}
                exit => return Ok(exit),
            }
        }
        Err(Failure::Lost)
    }

    /// Turns the vCPUs off (CPU_OFF, then vCPU 0's SYSTEM_OFF), tears the VM
    /// down and takes its page back.
    pub(crate) fn finish(self, ty: VmType, what: &str) -> bool {
        let off = (1..self.vcpus).map(|vcpu| self.power_off(vcpu, Op::CpuOff)).find(|exit| *exit != Ok(Exit::CpuOff));
        let end = self.power_off(0, Op::SystemOff);
        let mut passed = check!(
            off.is_none() && end == Ok(Exit::SystemOff),
            "the {what} ends: its other vCPUs with CPU_OFF ({off:?}), vCPU 0 with SYSTEM_OFF ({end:?})"
        );
        passed &= tear_down(self.handle, what);
        if ty == VmType::Protected {
            passed &= check!(hypercall::vm_reclaim(self.handle, GUEST_ENTRY, 1).is_ok(), "reclaim the {what}'s page");
        }
        passed
    }
}

/// Runs the GIC conformance checks with the guest's code in the page at `pa`;
/// true when all passed. Without a GIC there is nothing to check.
pub fn run_all(platform: &HostPlatform, pa: u64) -> bool {
    let Some(gic) = platform.gic else {
        log::info!("no GIC: the GIC conformance checks are skipped");
        return true;
    };
    let v2 = matches!(gic, GicConfig::V2 { .. });
    let cpus = Cpus { own: own_index(platform), other: second_cpu(platform) };
    let mut passed = true;
    for ty in [VmType::NonProtected, VmType::Protected] {
        passed &= if v2 { gicv2_sgis(pa, ty, cpus) } else { gicv3_sgis(pa, ty, cpus) };
        passed &= priorities_and_eoi_modes(pa, ty, v2, cpus);
    }
    if let Some((cpu, mpidr, true)) = cpus.other {
        let (acknowledged, state) = cpus::turn_off(platform, cpu, mpidr);
        passed &= check!(
            acknowledged && state == cpus::AFFINITY_OFF,
            "the GIC conformance checks' second CPU ({cpu}) is off again: {state}"
        );
    }
    passed
}

/// A second CPU for the vCPUs to move to: started here (or already running
/// the shim), if the board has one.
pub(crate) fn second_cpu(platform: &HostPlatform) -> Option<(usize, u64, bool)> {
    if !platform.psci {
        return None;
    }
    let (cpu, mpidr) = secondaries(platform).next()?;
    match cpus::start_cpu(platform, cpu, mpidr) {
        Ok(()) => Some((cpu, mpidr, true)),
        Err(PSCI_ALREADY_ON) => Some((cpu, mpidr, false)),
        Err(_) => None,
    }
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
