//! Running a VM's vCPUs each on a CPU of its own, with kicks: the shim's
//! scheduler (the Linux guest's and the IPI benchmark's).
//!
//! vCPU 0 runs on the boot CPU; vCPU n on the n-th other CPU, a job there
//! (`harness::cpus`), while there are CPUs; the rest share the boot CPU in
//! time slices. Each CPU runs its vCPUs until the guest ends on any of them.
//! A vCPU that waits (`Exit::Wfi`) waits on its CPU (WFI) until its timer's
//! deadline (the CPU's EL1 physical timer) or a kick: the SGI
//! [`gic::KICK_SGI`], which another CPU sends when the hyp names the vCPU in
//! `Exit::Wake` (an SGI, or an interrupt its guest enabled or routed for it),
//! when its guest starts it (`Exit::CpuOn`), or when a device's interrupt goes
//! to it. A kick also ends a run in the guest (`Exit::Interrupted`); the next
//! entry presents the interrupt. The devices ([`Devices`]) are the boot CPU's:
//! the other CPUs forward their MMIO exits to it through their seat and kick
//! it. Nothing limits the number of runs: the guest runs until it powers off,
//! resets or dies.
//!
//! The shim runs with its MMU off, where exclusives are not dependable, so
//! every shared word has one writer (as in `harness::cpus`); the boot CPU
//! resets the seats of idle CPUs before a VM starts.

use crate::harness::cpus::{self, MPIDR_AFFINITY_MASK};
use crate::harness::gic::{self, GicConfig};
use crate::harness::hypercall;
use crate::harness::platform::{HostPlatform, MAX_CPUS};
use aarch64_cpu::registers::{Readable, CNTFRQ_EL0, CNTPCT_EL0, MPIDR_EL1};
use core::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use core::sync::atomic::{AtomicBool, AtomicU64};
use hyp_abi::{Exit, HypError, RunFlags};

/// The most vCPUs a VM run this way has.
pub const MAX_VCPUS: usize = MAX_CPUS;
/// How often vCPUs sharing a CPU take turns, and how often the boot CPU looks
/// at its devices ([`Devices::poll`]) while its vCPUs wait: 100 times a second.
const SLICES_PER_SECOND: u64 = 100;
/// PSCI CPU_ON's answer for a CPU that is on already (a job CPU of an earlier VM).
const PSCI_ALREADY_ON: i64 = -4;

/// The boot CPU's devices: what the VM's MMIO exits reach.
pub trait Devices {
    /// An access of vCPU `vcpu` at `ipa` (a store of `write` if any): the value
    /// a load reads, and the vCPU an interrupt it raised went to.
    fn mmio(&mut self, handle: u64, vcpu: usize, ipa: u64, write: Option<u64>) -> (u64, Option<usize>);
    /// Looked at before each run on the boot CPU and at least every slice
    /// while it waits (console input): the vCPU an interrupt went to.
    fn poll(&mut self, handle: u64) -> Option<usize>;
}

/// Exits of one vCPU so far, by kind.
pub struct ExitCounts {
    pub mmio: AtomicU64,
    pub wfi: AtomicU64,
    pub interrupted: AtomicU64,
    pub other: AtomicU64,
}

/// What the CPUs share about one vCPU. Every word is written by the CPU
/// running the vCPU, except `served` and `answer` (the boot CPU's).
struct VcpuSeat {
    /// The CPU that runs the vCPU: its MPIDR and GICv2 CPU interface bit,
    /// valid once `ready` is set, so that others can kick it.
    mpidr: AtomicU64,
    gicv2_mask: AtomicU64,
    ready: AtomicBool,
    /// The guest ended on this vCPU's CPU: the others stop too.
    stopped: AtomicBool,
    /// An MMIO exit forwarded to the boot CPU: the `posted`-th, at `ipa`, a
    /// store of `value` if `write`; the boot CPU answers the `served`-th with
    /// `answer` (what a load reads).
    posted: AtomicU64,
    ipa: AtomicU64,
    write: AtomicBool,
    value: AtomicU64,
    served: AtomicU64,
    answer: AtomicU64,
    exits: ExitCounts,
}

impl VcpuSeat {
    const fn new() -> VcpuSeat {
        VcpuSeat {
            mpidr: AtomicU64::new(0),
            gicv2_mask: AtomicU64::new(0),
            ready: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            posted: AtomicU64::new(0),
            ipa: AtomicU64::new(0),
            write: AtomicBool::new(false),
            value: AtomicU64::new(0),
            served: AtomicU64::new(0),
            answer: AtomicU64::new(0),
            exits: ExitCounts {
                mmio: AtomicU64::new(0),
                wfi: AtomicU64::new(0),
                interrupted: AtomicU64::new(0),
                other: AtomicU64::new(0),
            },
        }
    }

    /// Sends SGI `sgi` to the CPU of this vCPU (nothing before it is ready).
    fn kick(&self, gic: GicConfig, sgi: u32) {
        if self.ready.load(Acquire) {
            gic::kick(gic, self.mpidr.load(Relaxed), self.gicv2_mask.load(Relaxed), sgi);
        }
    }

    /// Back to its state before any VM (boot CPU, with no job running).
    fn reset(&self) {
        for word in [&self.posted, &self.served, &self.exits.mmio, &self.exits.wfi, &self.exits.interrupted] {
            word.store(0, Relaxed);
        }
        self.exits.other.store(0, Relaxed);
        self.ready.store(false, Relaxed);
        self.stopped.store(false, Release);
    }
}

static SEATS: [VcpuSeat; MAX_VCPUS] = [const { VcpuSeat::new() }; MAX_VCPUS];
/// The GIC as [`GicConfig::to_words`] gives it and the timer's INTID, for the
/// job CPUs (written by the boot CPU before it posts their jobs).
static GIC_WORDS: [AtomicU64; 3] = [const { AtomicU64::new(0) }; 3];
static TIMER_INTID: AtomicU64 = AtomicU64::new(0);

/// Where a VM's vCPUs run: `job_cpus[n - 1]` is the CPU index of vCPU n, for
/// the first `jobs` vCPUs after vCPU 0; the rest run on the boot CPU.
pub struct Placement {
    gic: GicConfig,
    vcpus: usize,
    job_cpus: [usize; MAX_VCPUS],
    jobs: usize,
}

impl Placement {
    /// The CPU index of vCPU `vcpu`, if it has one of its own besides the boot CPU.
    pub fn job_cpu(&self, vcpu: usize) -> Option<usize> {
        vcpu.checked_sub(1).filter(|&i| i < self.jobs).map(|i| self.job_cpus[i])
    }
}

/// Why [`run`] ended without an exit of the guest.
#[derive(Debug)]
pub enum RunError {
    /// A run of vCPU `.0` failed with `.1`.
    Run(usize, HypError),
    /// A CPU's GIC did not answer.
    Gic,
    /// A job CPU never came back.
    Lost(usize),
}

impl core::fmt::Display for RunError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            RunError::Run(vcpu, error) => write!(f, "a run of vCPU {vcpu} failed: {error}"),
            RunError::Gic => write!(f, "a CPU's GIC did not answer"),
            RunError::Lost(cpu) => write!(f, "CPU {cpu} never came back from its vCPU"),
        }
    }
}

/// Prepares a VM of `vcpus` vCPUs: starts a CPU for each vCPU after the
/// first while there are CPUs, and enables kicks and wake-ups (and the guest
/// PPIs the hyp serves) on this CPU. `None` if the GIC did not answer.
pub fn place(platform: &HostPlatform, gic: GicConfig, vcpus: usize) -> Option<Placement> {
    let vcpus = vcpus.clamp(1, MAX_VCPUS);
    for seat in &SEATS {
        seat.reset();
    }
    let timer_intid = platform.timer_intid.unwrap_or(30);
    let mut placement = Placement { gic, vcpus, job_cpus: [0; MAX_VCPUS], jobs: 0 };
    for (cpu, mpidr) in cpus::secondaries(platform) {
        if placement.jobs + 1 >= vcpus {
            break;
        }
        let started = cpus::start_cpu(platform, cpu, mpidr);
        if matches!(started, Ok(()) | Err(PSCI_ALREADY_ON)) {
            placement.job_cpus[placement.jobs] = cpu;
            placement.jobs += 1;
        }
    }
    for (slot, word) in GIC_WORDS.iter().zip(gic.to_words()) {
        slot.store(word, Release);
    }
    TIMER_INTID.store(u64::from(timer_intid), Release);
    take_seat(gic, 0, timer_intid).then_some(placement)
}

/// Runs VM `handle` (its vCPU 0 initialised) as `placement` says until its
/// guest ends: the exit that ended it.
pub fn run(placement: &Placement, handle: u64, devices: &mut dyn Devices) -> Result<Exit, RunError> {
    for vcpu in 1..placement.vcpus {
        if let Some(cpu) = placement.job_cpu(vcpu) {
            cpus::post(cpu, vcpu_job, [handle, vcpu as u64, placement.vcpus as u64]);
        }
    }
    let mine = (0..placement.vcpus).filter(|&v| placement.job_cpu(v).is_none()).fold(0, |m, v| m | 1 << v);
    let mut share = CpuShare::new(placement.gic, handle, mine, placement.vcpus, Some(devices));
    let here = share.run();
    let mut end = here;
    for vcpu in 1..placement.vcpus {
        let Some(cpu) = placement.job_cpu(vcpu) else { continue };
        let there = match cpus::wait_for(cpu) {
            Some([1, a, b, c]) => Exit::decode([a, b, c]).ok_or(RunError::Run(vcpu, HypError::NotSupported)).map(Some),
            Some([2, error, ..]) => {
                Err(HypError::from_code(error as i64).map_or(RunError::Gic, |e| RunError::Run(vcpu, e)))
            }
            Some(_) => Ok(None),
            None => Err(RunError::Lost(cpu)),
        };
        end = match (end, there) {
            (Ok(Some(exit)), _) | (Ok(None), Ok(Some(exit))) => Ok(Some(exit)),
            (Err(error), _) | (_, Err(error)) => Err(error),
            (Ok(None), Ok(None)) => Ok(None),
        };
    }
    end.and_then(|exit| exit.ok_or(RunError::Lost(0)))
}

/// Exits of every vCPU of one kind so far.
pub fn total_exits(kind: impl Fn(&ExitCounts) -> &AtomicU64) -> u64 {
    SEATS.iter().map(|seat| kind(&seat.exits).load(Relaxed)).sum()
}

/// Whether the guest ended on any CPU.
fn stopped_anywhere() -> bool {
    SEATS.iter().any(|seat| seat.stopped.load(Acquire))
}

/// Counts one exit (the counter's single writer is this vCPU's CPU).
fn count(counter: &AtomicU64) {
    counter.store(counter.load(Relaxed) + 1, Relaxed);
}

/// Takes seat `vcpu` for this CPU: enables its kick, wake-up timer and the
/// guest's PPIs (maintenance, virtual timer) here, and tells the others how
/// to kick it. False if the GIC did not answer.
fn take_seat(gic: GicConfig, vcpu: usize, timer_intid: u32) -> bool {
    let Some(gicv2_mask) = gic::enable_kick(gic, timer_intid).filter(|_| gic::enable_guest_ppis(gic)) else {
        return false;
    };
    let seat = &SEATS[vcpu];
    seat.mpidr.store(MPIDR_EL1.get() & MPIDR_AFFINITY_MASK, Relaxed);
    seat.gicv2_mask.store(gicv2_mask, Relaxed);
    seat.ready.store(true, Release);
    true
}

/// The job of a CPU other than the boot CPU: runs vCPU `vcpu` of VM `handle`
/// (of `vcpus`) until the guest ends; returns [1, its exit as x1..x3] if it
/// ended there, [2, error, 0, 0] if a run failed (error 0: the GIC), else
/// zeros.
fn vcpu_job(_cpu: usize, [handle, vcpu, vcpus]: [u64; 3]) -> [u64; 4] {
    let gic = GicConfig::from_words(core::array::from_fn(|i| GIC_WORDS[i].load(Acquire)));
    let vcpu = vcpu as usize % MAX_VCPUS;
    if !take_seat(gic, vcpu, TIMER_INTID.load(Acquire) as u32) {
        SEATS[vcpu].stopped.store(true, Release);
        return [2, 0, 0, 0];
    }
    let mut share = CpuShare::new(gic, handle, 1 << vcpu, vcpus as usize, None);
    match share.run() {
        Ok(Some(end)) => {
            let [a, b, c] = end.encode();
            [1, a, b, c]
        }
        Err(RunError::Run(_, error)) => [2, error.code() as u64, 0, 0],
        Ok(None) | Err(_) => [0; 4],
    }
}

/// What one CPU needs to run its share of the VM.
struct CpuShare<'a> {
    gic: GicConfig,
    handle: u64,
    /// The vCPUs this CPU runs (bit n: vCPU n), of `vcpus`.
    mine: u64,
    vcpus: usize,
    /// The devices, on the boot CPU; the others forward their MMIO exits.
    devices: Option<&'a mut dyn Devices>,
    /// Physical count until which each vCPU of this CPU waits (0: runnable,
    /// `u64::MAX`: until something wakes it).
    wait_until: [u64; MAX_VCPUS],
}

impl<'a> CpuShare<'a> {
    fn new(gic: GicConfig, handle: u64, mine: u64, vcpus: usize, devices: Option<&'a mut dyn Devices>) -> Self {
        CpuShare { gic, handle, mine, vcpus: vcpus.min(MAX_VCPUS), devices, wait_until: [0; MAX_VCPUS] }
    }

    fn is_mine(&self, vcpu: usize) -> bool {
        vcpu < self.vcpus && self.mine & 1 << vcpu != 0
    }

    /// An interrupt became pending for `vcpu`: run it (here) or kick its CPU.
    fn wake(&mut self, vcpu: usize) {
        if self.is_mine(vcpu) {
            self.wait_until[vcpu] = 0;
        } else if let Some(seat) = SEATS.get(vcpu) {
            seat.kick(self.gic, gic::VCPU_KICK_SGI);
        }
    }

    /// An MMIO exit of `vcpu` at `ipa` (a store of `write` if any): the value
    /// a load reads.
    fn mmio(&mut self, vcpu: usize, ipa: u64, write: Option<u64>) -> u64 {
        if let Some(devices) = self.devices.as_deref_mut() {
            let (value, woken) = devices.mmio(self.handle, vcpu, ipa, write);
            if let Some(woken) = woken {
                self.wake(woken);
            }
            return value;
        }
        // Forwarded to the boot CPU, which the kick takes out of its guest.
        let seat = &SEATS[vcpu];
        seat.ipa.store(ipa, Relaxed);
        seat.write.store(write.is_some(), Relaxed);
        seat.value.store(write.unwrap_or(0), Relaxed);
        let posted = seat.posted.load(Relaxed) + 1;
        seat.posted.store(posted, Release);
        SEATS[0].kick(self.gic, gic::KICK_SGI);
        while seat.served.load(Acquire) != posted {
            if stopped_anywhere() {
                return 0;
            }
            aarch64_cpu::asm::wfe();
        }
        seat.answer.load(Relaxed)
    }

    /// On the boot CPU: the MMIO exits other CPUs forwarded, and the devices' poll.
    fn serve_devices(&mut self) {
        let Some(devices) = self.devices.as_deref_mut() else {
            return;
        };
        let mut woken = [None; MAX_VCPUS + 1];
        for (vcpu, (seat, slot)) in SEATS.iter().zip(&mut woken).enumerate() {
            let posted = seat.posted.load(Acquire);
            if posted == seat.served.load(Relaxed) {
                continue;
            }
            let write = seat.write.load(Relaxed).then(|| seat.value.load(Relaxed));
            let (value, raised) = devices.mmio(self.handle, vcpu, seat.ipa.load(Relaxed), write);
            seat.answer.store(value, Relaxed);
            seat.served.store(posted, Release);
            aarch64_cpu::asm::sev();
            *slot = raised;
        }
        woken[MAX_VCPUS] = devices.poll(self.handle);
        for vcpu in woken.into_iter().flatten() {
            self.wake(vcpu);
        }
    }

    /// The next vCPU of this CPU that can run, from `from` on (round robin).
    fn next_runnable(&self, from: usize, now: u64) -> Option<usize> {
        (from..from + self.vcpus).map(|v| v % self.vcpus).find(|&v| self.is_mine(v) && self.wait_until[v] <= now)
    }

    /// When this CPU must take itself back from `running` (`u64::MAX`: only
    /// for a kick): the end of its slice if another vCPU of this CPU can run,
    /// else the earliest deadline of the others, and the next look at the
    /// devices on the boot CPU.
    fn wakeup(&self, running: Option<usize>, now: u64, slice: u64) -> u64 {
        let others = (0..self.vcpus).filter(|&v| self.is_mine(v) && Some(v) != running);
        let earliest = others.map(|v| if self.wait_until[v] <= now { now + slice } else { self.wait_until[v] });
        let devices = if self.devices.is_some() { now + slice } else { u64::MAX };
        earliest.fold(devices, u64::min)
    }

    /// Runs this CPU's vCPUs until the guest ends here (its last exit) or on
    /// another CPU (`None`).
    fn run(&mut self) -> Result<Option<Exit>, RunError> {
        let slice = CNTFRQ_EL0.get() / SLICES_PER_SECOND;
        let mut answer = [0u64; MAX_VCPUS];
        let mut from = self.mine.trailing_zeros() as usize % self.vcpus;
        // A vCPU with this CPU to itself waits in the hyp, and its siblings'
        // SGIs reach it there through the hyp's kick (GICv3).
        let flags = if self.mine.count_ones() == 1 {
            RunFlags { wait_in_hyp: true, kick_sgi: Some(gic::VCPU_KICK_SGI as u8) }
        } else {
            RunFlags::default()
        };
        loop {
            if stopped_anywhere() {
                return Ok(None);
            }
            self.serve_devices();
            let now = CNTPCT_EL0.get();
            let Some(vcpu) = self.next_runnable(from, now) else {
                gic::wait_for_interrupt(self.wakeup(None, now, slice));
                // A kick names no vCPU: each of this CPU's tries again (the
                // hyp answers at once if it still has nothing to take).
                self.wait_until = [0; MAX_VCPUS];
                continue;
            };
            gic::set_wakeup(self.wakeup(Some(vcpu), now, slice));
            let exit = hypercall::vcpu_run_with(self.handle, vcpu as u64, answer[vcpu], flags);
            gic::set_wakeup(u64::MAX);
            answer[vcpu] = 0;
            let exits = &SEATS[vcpu].exits;
            count(match exit {
                Ok(Exit::Mmio { .. }) => &exits.mmio,
                Ok(Exit::Wfi { .. }) => &exits.wfi,
                Ok(Exit::Interrupted) => &exits.interrupted,
                _ => &exits.other,
            });
            // The same vCPU goes on after an exit the host serves at once;
            // otherwise the next of this CPU's has its turn.
            from = vcpu + 1;
            match exit {
                Ok(Exit::Mmio { ipa, write, value, .. }) => {
                    answer[vcpu] = self.mmio(vcpu, ipa, write.then_some(value));
                    from = vcpu;
                }
                Ok(Exit::Hypercall { .. }) => from = vcpu,
                Ok(Exit::CpuOn { vcpu: other }) => self.wake(other as usize),
                Ok(Exit::CpuOff) | Err(HypError::VcpuOff) => self.wait_until[vcpu] = u64::MAX,
                Ok(Exit::Interrupted) => gic::take_pending_interrupts(),
                Ok(Exit::Wfi { timer_deadline }) => self.wait_until[vcpu] = timer_deadline.max(1),
                Ok(Exit::Wake { targets }) => {
                    for target in (0..self.vcpus).filter(|&t| targets & 1 << t != 0) {
                        self.wake(target);
                    }
                }
                Ok(end @ (Exit::SystemOff | Exit::SystemReset | Exit::Fatal { .. })) => {
                    self.stop();
                    return Ok(Some(end));
                }
                Err(error) => {
                    self.stop();
                    return Err(RunError::Run(vcpu, error));
                }
            }
        }
    }

    /// The guest ended on this CPU: the others stop too.
    fn stop(&self) {
        if let Some(seat) = SEATS.get(self.mine.trailing_zeros() as usize) {
            seat.stopped.store(true, Release);
        }
        for (vcpu, seat) in SEATS.iter().enumerate().take(self.vcpus) {
            if !self.is_mine(vcpu) {
                seat.kick(self.gic, gic::KICK_SGI);
            }
        }
        aarch64_cpu::asm::sev();
    }
}
