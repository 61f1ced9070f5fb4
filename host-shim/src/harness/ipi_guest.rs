//! The IPI ping-pong guest (`guests::ipi`) run on two vCPUs, each on a CPU of
//! its own where there are two ([`vcpu_cpus`]): its SGIs cross CPUs through
//! the host's kicks. The benchmark measures a round trip with it; the SMP
//! checks require that its rounds complete without waiting for any timer.

use crate::guests::{self, load, GUEST_ENTRY, GUEST_UART};
use crate::harness::gic::GicConfig;
use crate::harness::hypercall;
use crate::harness::instructions::now;
use crate::harness::platform::HostPlatform;
use crate::harness::vcpu_cpus::{self, Devices, RunError};
use aarch64_cpu::registers::{Readable, CNTPCT_EL0};
use hyp_abi::{Exit, HypError, VmType};

/// Where the guest reports the rounds it did (`IRQ_REPORT` in macros.S).
const REPORT: u64 = GUEST_UART + 0x38;

/// What one run of the guest did.
pub struct PingPong {
    /// The rounds vCPU 0 reported (`None`: it reported nothing).
    pub rounds: Option<u64>,
    /// How the run ended.
    pub end: Exit,
    /// Whether vCPU 1 had a CPU of its own.
    pub own_cpus: bool,
    /// From `VCPU_INIT` to the end: PMU cycles (instructions under
    /// `-icount shift=0`) and physical counter ticks.
    pub instructions: u64,
    pub ticks: u64,
}

/// Why the run did not happen.
#[derive(Debug)]
pub enum PingPongError {
    /// No GICv3 (the guest uses ICC_SGI1R_EL1).
    NoGicV3,
    Setup(HypError),
    Run(RunError),
}

impl core::fmt::Display for PingPongError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            PingPongError::NoGicV3 => write!(f, "no GICv3"),
            PingPongError::Setup(error) => write!(f, "setting the VM up or down: {error}"),
            PingPongError::Run(error) => write!(f, "{error}"),
        }
    }
}

impl core::fmt::Display for PingPong {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "{:?} rounds, ended {:?}, {}, {} instructions, {} counter ticks",
            self.rounds,
            self.end,
            if self.own_cpus { "a CPU each" } else { "on one CPU" },
            self.instructions,
            self.ticks
        )
    }
}

/// The guest's only device: where it reports.
struct Report(Option<u64>);

impl Devices for Report {
    fn mmio(&mut self, _handle: u64, _vcpu: usize, ipa: u64, write: Option<u64>) -> (u64, Option<usize>) {
        if ipa == REPORT {
            self.0 = write;
        }
        (0, None)
    }

    fn poll(&mut self, _handle: u64) -> Option<usize> {
        None
    }
}

/// Runs the guest for `rounds` in a VM of type `ty` whose two pages are at
/// `pa` (the caller has donated the memcache); tears the VM down and takes
/// its pages back.
pub fn ping_pong(platform: &HostPlatform, ty: VmType, pa: u64, rounds: u64) -> Result<PingPong, PingPongError> {
    let Some(gic @ GicConfig::V3 { .. }) = platform.gic else {
        return Err(PingPongError::NoGicV3);
    };
    let placement = vcpu_cpus::place(platform, gic, 2).ok_or(PingPongError::Run(RunError::Gic))?;
    load(pa, guests::ipi());
    let handle = hypercall::vm_create(ty, 2).map_err(PingPongError::Setup)?;
    let mut report = Report(None);
    let (start, ticks) = (now(), CNTPCT_EL0.get());
    let ran = hypercall::vm_map(handle, pa, GUEST_ENTRY, 2)
        .and_then(|()| hypercall::vcpu_init(handle, 0, GUEST_ENTRY, rounds))
        .map_err(PingPongError::Setup)
        .and_then(|()| vcpu_cpus::run(&placement, handle, &mut report).map_err(PingPongError::Run));
    let (instructions, ticks) = (now() - start, CNTPCT_EL0.get() - ticks);
    let back = hypercall::vm_teardown(handle).and_then(|()| match ty {
        VmType::Protected => hypercall::vm_reclaim(handle, GUEST_ENTRY, 2),
        VmType::NonProtected => Ok(()),
    });
    let end = ran?;
    back.map_err(PingPongError::Setup)?;
    Ok(PingPong { rounds: report.0, end, own_cpus: placement.job_cpu(1).is_some(), instructions, ticks })
}
