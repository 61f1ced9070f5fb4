//! The remote guest (`guest_remote` in guests.S), driven from the host one
//! command at a time (a register access, an acknowledge, an EOI, waiting for
//! an interrupt or a timer), each command on the CPU whose turn it is: with a
//! second CPU, this one and that one take turns, so that a vCPU's state moves
//! between physical CPUs between the steps. Also what the other conformance
//! guests' drivers share: why a step failed, running a vCPU on the other
//! CPU, and the check that a VM ended and was torn down.

use crate::guests::{self, load, GUEST_UART};
use crate::harness::cpus::{post, wait_for};
use crate::harness::hypercall;
use crate::harness::report::check;
use crate::harness::vms::{create_ready, run_vcpu, tear_down_and_reclaim};
use hyp_abi::{
    Exit, HypError, VmType, GUEST_GICV2_CPU_INTERFACE as GICC, GUEST_GICV3_REDISTRIBUTORS as GICR,
    GUEST_GIC_DISTRIBUTOR as GICD,
};

/// The command registers of every guest driven one command at a time
/// (`REMOTE_*` in macros.S: the remote, debug and CPU conformance guests),
/// and their fault report (`IRQ_FAULT`).
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
    StoreByte = 30,
}

/// Why a step did not give its result.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Failure {
    Run(HypError),
    /// An exit the step did not expect.
    Unexpected(Exit),
    /// The guest took an exception (its ESR_EL1).
    Fault(u64),
    /// No answer (the other CPU, or too many runs or reports).
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
    pub(crate) fn for_step(&self, step: usize) -> usize {
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

/// One `VCPU_RUN` of `vcpu` of `handle` on CPU `cpu` (not this one), as its
/// job ([`run_job`]).
pub(crate) fn run_on_other_cpu(cpu: usize, handle: u64, vcpu: u64, value: u64) -> Result<Exit, Failure> {
    post(cpu, run_job, [handle, vcpu, value]);
    decode(wait_for(cpu).ok_or(Failure::Lost)?)
}

/// An exit from `VCPU_RUN`'s registers.
pub(crate) fn decode(regs: [u64; 4]) -> Result<Exit, Failure> {
    match hyp_abi::decode_result(regs) {
        Ok(exit) => Exit::decode(exit).ok_or(Failure::Lost),
        Err(error) => Err(error.map_or(Failure::Lost, Failure::Run)),
    }
}

/// The check that a VM `what` ended, its vCPUs other than 0 (the first of
/// their exits that was not CPU_OFF: `off`) with CPU_OFF and vCPU 0 with
/// SYSTEM_OFF (`end`); then its teardown ([`tear_down_and_reclaim`]).
pub(crate) fn check_vm_ends(
    handle: u64,
    ty: VmType,
    what: &str,
    off: Option<Result<Exit, Failure>>,
    end: Result<Exit, Failure>,
) -> bool {
    let passed = check!(
        off.is_none() && end == Ok(Exit::SystemOff),
        "the {what} ends: its other vCPUs with CPU_OFF ({off:?}), vCPU 0 with SYSTEM_OFF ({end:?})"
    );
    passed & tear_down_and_reclaim(handle, ty, what)
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
        run_on_other_cpu(cpu, self.handle, vcpu, value)
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
    pub(crate) fn boot(&self, vcpu: u64) -> Result<(), Failure> {
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
    pub(crate) fn cpu_interface(&mut self, vcpu: u64, gicc: u64, op: Op, value: Option<u64>) -> Result<u64, Failure> {
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

    pub(crate) fn dir(&mut self, vcpu: u64, intid: u64) -> Result<u64, Failure> {
        self.cpu_interface(vcpu, 0x1000, Op::Dir, Some(intid))
    }

    pub(crate) fn pmr(&mut self, vcpu: u64, mask: u64) -> Result<u64, Failure> {
        self.cpu_interface(vcpu, 0x4, Op::Pmr, Some(mask))
    }

    /// The binary point as GICC_BPR counts it (group priority bits
    /// 7:`point` + 1); ICC_BPR1_EL1 (group 1) counts one more.
    pub(crate) fn bpr(&mut self, vcpu: u64, point: u64) -> Result<u64, Failure> {
        self.cpu_interface(vcpu, 0x8, Op::Bpr, Some(if self.v2 { point } else { point + 1 }))
    }

    pub(crate) fn rpr(&mut self, vcpu: u64) -> Result<u64, Failure> {
        self.cpu_interface(vcpu, 0x14, Op::Rpr, None)
    }

    /// Acknowledges what `vcpu` has pending and ends it (EOImode 0), until
    /// nothing is left: each acknowledged value, then the spurious one.
    pub(crate) fn drain<const N: usize>(&mut self, vcpu: u64) -> Result<[u64; N], Failure> {
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
    pub(crate) fn eoi_mode(&mut self, vcpu: u64, split: bool) -> Result<u64, Failure> {
        let value = if self.v2 { 1 | u64::from(split) << 9 } else { u64::from(split) << 1 };
        self.cpu_interface(vcpu, 0x0, Op::Ctlr, Some(value))
    }

    /// Opens `vcpu`'s side of the GIC: its redistributor awake (GICv3), its
    /// CPU interface on with the priority mask open.
    pub(crate) fn open_cpu(&mut self, vcpu: u64) -> Result<(), Failure> {
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
    pub(crate) fn power_off(&self, vcpu: u64, op: Op) -> Result<Exit, Failure> {
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
        check_vm_ends(self.handle, ty, what, off, end)
    }
}
