//! The shim on every CPU: the boot CPU starts the others with PSCI CPU_ON
//! (which the hyp serves) and hands them jobs.
//!
//! The shim runs with its MMU off, where exclusive accesses (and so locks) are
//! not dependable. The CPUs therefore share nothing but one mailbox per
//! secondary CPU, in which every word has a single writer: the boot CPU posts a
//! job and bumps `posted`; the secondary does it, writes its results and sets
//! `done` to the same number. Secondaries never log; the boot CPU reports.

use crate::harness::arch::secondary_entry;
use crate::harness::hypercall;
use crate::harness::platform::{HostPlatform, MAX_CPUS};
use crate::harness::report::check;
use crate::harness::scratch::PageAligned;
use aarch64_cpu::registers::{CurrentEL, Readable, MPIDR_EL1};
use core::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
use smccc::psci::{PSCI_AFFINITY_INFO_64, PSCI_CPU_ON_64};

/// Stack of each secondary CPU.
const STACK_SIZE: usize = 32 << 10;
/// Polls of a mailbox before the boot CPU declares a secondary lost.
const MAX_POLLS: u64 = 1 << 32;
/// MPIDR affinity fields.
pub const MPIDR_AFFINITY_MASK: u64 = 0xff_00ff_ffff;
/// PSCI statuses.
const PSCI_SUCCESS: i64 = 0;
/// AFFINITY_INFO: the CPU is off.
pub const AFFINITY_OFF: i64 = 1;

/// Work for a secondary CPU: it runs there with the CPU's index and three
/// arguments, and its four words go back to the boot CPU ([`wait_for`]).
pub type Job = fn(cpu: usize, args: [u64; 3]) -> [u64; 4];

/// One secondary CPU's mailbox. Every field has one writer (see the module
/// comment); `head.S` reads `stack_top` at offset 0.
#[repr(C)]
pub struct Mailbox {
    stack_top: AtomicU64,
    /// Times this CPU entered the shim (secondary).
    arrivals: AtomicU64,
    /// Its MPIDR_EL1 and CurrentEL, and the VERSION hypercall's answer, from
    /// its last arrival (secondary).
    mpidr: AtomicU64,
    el: AtomicU64,
    version: AtomicU64,
    /// Jobs posted (boot CPU) and done (secondary).
    posted: AtomicU64,
    done: AtomicU64,
    /// The job (boot CPU): a [`Job`], or null to turn the CPU off (`args[0]`:
    /// PSCI through HVC), and its arguments.
    job: AtomicPtr<()>,
    args: [AtomicU64; 3],
    /// What it did (secondary).
    result: [AtomicU64; 4],
}

impl Mailbox {
    const fn new() -> Mailbox {
        Mailbox {
            stack_top: AtomicU64::new(0),
            arrivals: AtomicU64::new(0),
            mpidr: AtomicU64::new(0),
            el: AtomicU64::new(0),
            version: AtomicU64::new(0),
            posted: AtomicU64::new(0),
            done: AtomicU64::new(0),
            job: AtomicPtr::new(core::ptr::null_mut()),
            args: [const { AtomicU64::new(0) }; 3],
            result: [const { AtomicU64::new(0) }; 4],
        }
    }
}

static MAILBOXES: [Mailbox; MAX_CPUS] = [const { Mailbox::new() }; MAX_CPUS];

// Each stack is used by one CPU only.
static STACKS: PageAligned<{ STACK_SIZE * MAX_CPUS }> = PageAligned::new();

/// Rust entry of a secondary CPU (from `head.S`), on its own stack.
#[no_mangle]
extern "C" fn shim_secondary_main(mailbox: &'static Mailbox) -> ! {
    mailbox.mpidr.store(MPIDR_EL1.get(), Ordering::Relaxed);
    mailbox.el.store(CurrentEL.read(CurrentEL::EL), Ordering::Relaxed);
    let version = hypercall::version().map_or(u64::MAX, |(major, minor)| major << 32 | minor);
    mailbox.version.store(version, Ordering::Relaxed);
    // Jobs posted before a CPU_OFF are finished: start from the last one.
    mailbox.done.store(mailbox.posted.load(Ordering::Acquire), Ordering::Release);
    mailbox.arrivals.store(mailbox.arrivals.load(Ordering::Relaxed) + 1, Ordering::Release);
    aarch64_cpu::asm::sev();
    let cpu = MAILBOXES.iter().position(|m| core::ptr::eq(m, mailbox)).unwrap_or(0);
    loop {
        let posted = mailbox.posted.load(Ordering::Acquire);
        if posted == mailbox.done.load(Ordering::Relaxed) {
            aarch64_cpu::asm::wfe();
            continue;
        }
        let job = mailbox.job.load(Ordering::Relaxed);
        let args: [u64; 3] = core::array::from_fn(|i| mailbox.args[i].load(Ordering::Relaxed));
        let result = if job.is_null() {
            [0; 4]
        } else {
            // SAFETY: `post` stores nothing but a `Job` cast to a pointer, and
            // null (turn off) was ruled out above.
            let job = unsafe { core::mem::transmute::<*mut (), Job>(job) };
            job(cpu, args)
        };
        for (slot, value) in mailbox.result.iter().zip(result) {
            slot.store(value, Ordering::Relaxed);
        }
        mailbox.done.store(posted, Ordering::Release);
        aarch64_cpu::asm::sev();
        if job.is_null() {
            // The boot CPU watches AFFINITY_INFO; the hyp relays CPU_OFF.
            let psci_hvc = args[0] != 0;
            let args = [0; 17];
            let _ = if psci_hvc {
                smccc::hvc64(smccc::psci::PSCI_CPU_OFF, args)
            } else {
                smccc::smc64(smccc::psci::PSCI_CPU_OFF, args)
            };
        }
    }
}

/// Waits for a secondary's word to change: it signals each (SEV). Under
/// QEMU's single-threaded TCG (`-icount`) a WFE also hands the emulation to the
/// other CPUs, which a spinning poll starved (the secondary never arrived).
fn wait_for_event() {
    aarch64_cpu::asm::wfe();
}

/// Posts `job` (null: turn off) with `args` to CPU `cpu`'s mailbox.
fn post_raw(cpu: usize, job: *mut (), args: [u64; 3]) {
    let mailbox = &MAILBOXES[cpu];
    mailbox.job.store(job, Ordering::Relaxed);
    for (slot, value) in mailbox.args.iter().zip(args) {
        slot.store(value, Ordering::Relaxed);
    }
    mailbox.posted.store(mailbox.posted.load(Ordering::Relaxed) + 1, Ordering::Release);
    aarch64_cpu::asm::sev();
}

/// Has CPU `cpu` run `job` with `args`.
pub fn post(cpu: usize, job: Job, args: [u64; 3]) {
    post_raw(cpu, job as *mut (), args);
}

/// Waits until CPU `cpu` has done its last job: its results, or `None` if it
/// never finished.
pub fn wait_for(cpu: usize) -> Option<[u64; 4]> {
    let mailbox = &MAILBOXES[cpu];
    let posted = mailbox.posted.load(Ordering::Relaxed);
    for _ in 0..MAX_POLLS {
        if mailbox.done.load(Ordering::Acquire) == posted {
            return Some(core::array::from_fn(|i| mailbox.result[i].load(Ordering::Relaxed)));
        }
        wait_for_event();
    }
    None
}

/// What CPU `cpu` found at its last arrival in the shim.
#[derive(Clone, Copy, Debug)]
pub struct Arrival {
    /// Times it entered the shim.
    pub count: u64,
    pub mpidr: u64,
    /// Its CurrentEL.
    pub el: u64,
    /// VERSION's answer, major << 32 | minor.
    pub version: u64,
}

/// CPU `cpu`'s last arrival.
pub fn arrival(cpu: usize) -> Arrival {
    let mailbox = &MAILBOXES[cpu];
    Arrival {
        count: mailbox.arrivals.load(Ordering::Acquire),
        mpidr: mailbox.mpidr.load(Ordering::Relaxed),
        el: mailbox.el.load(Ordering::Relaxed),
        version: mailbox.version.load(Ordering::Relaxed),
    }
}

/// Starts CPU `cpu` (MPIDR `mpidr`) in the shim and waits for it to arrive.
pub fn start_cpu(platform: &HostPlatform, cpu: usize, mpidr: u64) -> Result<(), i64> {
    let mailbox = &MAILBOXES[cpu];
    let top = STACKS.base() + ((cpu + 1) * STACK_SIZE) as u64;
    mailbox.stack_top.store(top, Ordering::Relaxed);
    let arrivals = mailbox.arrivals.load(Ordering::Acquire);
    let entry = secondary_entry as *const () as u64;
    let status = platform.psci_call(PSCI_CPU_ON_64, [mpidr, entry, mailbox as *const Mailbox as u64])[0] as i64;
    if status != PSCI_SUCCESS {
        return Err(status);
    }
    for _ in 0..MAX_POLLS {
        if mailbox.arrivals.load(Ordering::Acquire) != arrivals {
            return Ok(());
        }
        wait_for_event();
    }
    Err(i64::MIN)
}

/// The index (in the device tree's list) of the CPU running this.
pub fn own_index(platform: &HostPlatform) -> usize {
    let own = MPIDR_EL1.get() & MPIDR_AFFINITY_MASK;
    platform.cpus().iter().position(|&m| m & MPIDR_AFFINITY_MASK == own).unwrap_or(0)
}

/// The CPUs the shim can use besides the boot CPU: (index, MPIDR).
pub fn secondaries(platform: &HostPlatform) -> impl Iterator<Item = (usize, u64)> + '_ {
    let own = MPIDR_EL1.get() & MPIDR_AFFINITY_MASK;
    platform.cpus().iter().copied().enumerate().filter(move |&(_, mpidr)| mpidr & MPIDR_AFFINITY_MASK != own)
}

/// Starts every other CPU in the shim; returns how many came up.
pub fn start_secondaries(platform: &HostPlatform) -> usize {
    if !platform.psci {
        return 0;
    }
    secondaries(platform).filter(|&(cpu, mpidr)| start_cpu(platform, cpu, mpidr).is_ok()).count()
}

/// The indices of the CPUs besides the boot CPU.
pub fn secondary_indices(platform: &HostPlatform) -> impl Iterator<Item = usize> + '_ {
    secondaries(platform).map(|(cpu, _)| cpu)
}

/// Asks CPU `cpu` to turn itself off and waits until AFFINITY_INFO says it is;
/// returns whether it took the job and the last AFFINITY_INFO answer.
pub fn turn_off(platform: &HostPlatform, cpu: usize, mpidr: u64) -> (bool, i64) {
    post_raw(cpu, core::ptr::null_mut(), [u64::from(platform.psci_hvc), 0, 0]);
    let acknowledged = wait_for(cpu).is_some();
    let mut state = i64::MIN;
    for _ in 0..MAX_POLLS {
        state = platform.psci_call(PSCI_AFFINITY_INFO_64, [mpidr, 0, 0])[0] as i64;
        if state == AFFINITY_OFF {
            break;
        }
        core::hint::spin_loop();
    }
    (acknowledged, state)
}

/// PSCI ALREADY_ON: CPU_ON of a CPU that is running.
const PSCI_ALREADY_ON: i64 = -4;

/// A second CPU for a suite's vCPUs to move to, if the board has one:
/// (index, MPIDR, whether it was started here rather than already running
/// the shim).
pub fn start_second_cpu(platform: &HostPlatform) -> Option<(usize, u64, bool)> {
    if !platform.psci {
        return None;
    }
    let (cpu, mpidr) = secondaries(platform).next()?;
    match start_cpu(platform, cpu, mpidr) {
        Ok(()) => Some((cpu, mpidr, true)),
        Err(PSCI_ALREADY_ON) => Some((cpu, mpidr, false)),
        Err(_) => None,
    }
}

/// Turns the second CPU of [`start_second_cpu`] off again if it was started
/// there, checked on a line of "the `checks` checks"; true if it is off (or
/// was not started there).
pub fn turn_off_second_cpu(platform: &HostPlatform, second: Option<(usize, u64, bool)>, checks: &str) -> bool {
    let Some((cpu, mpidr, true)) = second else {
        return true;
    };
    let (acknowledged, state) = turn_off(platform, cpu, mpidr);
    check!(acknowledged && state == AFFINITY_OFF, "the {checks} checks' second CPU ({cpu}) is off again: {state}")
}
