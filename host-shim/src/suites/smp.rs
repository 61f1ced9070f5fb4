//! The SMP checks: every CPU up in the shim through PSCI CPU_ON (which the
//! hyp serves), a 4-vCPU guest whose vCPUs run at once on four CPUs, a vCPU
//! moving between CPUs, one vCPU run from two CPUs at once (and its VM torn
//! down under one of them), two vCPUs on two CPUs sending each other SGIs, every CPU creating, running and tearing down VMs at
//! the same time, and CPUs turned off and on again. The other CPUs get their
//! work through `harness::cpus`; only the boot CPU logs.

use crate::guests::{self, load, GUEST_ENTRY, GUEST_UART, GUEST_UART_STATUS, HOST_CALL, STATUS_ANSWER};
use crate::harness::cpus::{
    self, arrival, own_index, post, secondaries, start_cpu, turn_off, wait_for, AFFINITY_OFF, MPIDR_AFFINITY_MASK,
};
use crate::harness::debug_calls::debug_calls;
use crate::harness::hypercall;
use crate::harness::ipi_guest::{ping_pong, PingPongError};
use crate::harness::platform::{HostPlatform, MAX_CPUS};
use crate::harness::report::check;
use crate::harness::scratch::{PageAligned, PAGE};
use aarch64_cpu::registers::{Readable, CNTFRQ_EL0, CNTPCT_EL0, MPIDR_EL1};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use hyp_abi::{Exit, HypError, VcpuReg, VmType, ABI_VERSION_MAJOR, ABI_VERSION_MINOR};
use smccc::psci::PSCI_CPU_ON_64;
use testkit::rng::Rng;

/// vCPUs of the SMP guest's VM (`SMP_VCPUS` in guests/macros.S).
const SMP_VCPUS: usize = 4;
/// Runs of one vCPU before it is declared stuck.
const MAX_RUNS: u64 = 100_000;
/// Scratch pages per CPU for the stress run: guest code, a page to share, one
/// to donate.
const PAGES_PER_CPU: usize = 3;
/// Scratch pages: the SMP guest's code and data, then each CPU's.
const SCRATCH_PAGES: usize = 2 + PAGES_PER_CPU * MAX_CPUS;

/// PSCI statuses the checks expect.
const PSCI_INVALID_PARAMETERS: i64 = -2;
const PSCI_ALREADY_ON: i64 = -4;

// Each page is used by one CPU at a time (the boot CPU hands pages out with
// the jobs), or by the hyp and guests while lent, which is what the checks are
// about.
static SCRATCH: PageAligned<{ SCRATCH_PAGES * PAGE as usize }> = PageAligned::new();

fn scratch_page(index: usize) -> u64 {
    SCRATCH.base() + index as u64 * PAGE
}

/// The stress pages of CPU `cpu`.
fn cpu_pages(cpu: usize) -> u64 {
    scratch_page(2 + cpu * PAGES_PER_CPU)
}

fn zero_page(pa: u64) {
    for offset in (0..PAGE).step_by(8) {
        // SAFETY: `pa` is one of the shim's scratch pages, not lent to anyone now.
        unsafe { core::ptr::write_volatile((pa + offset) as *mut u64, 0) };
    }
}

/// Runs the SMP checks (with more than one CPU); true when all passed.
pub fn run_all(platform: &HostPlatform) -> bool {
    let count = platform.cpus().len();
    if count < 2 || !platform.psci {
        log::info!("one CPU (or no PSCI): the SMP checks need more");
        return true;
    }
    let mut passed = bring_up(platform);
    passed &= smp_guest(platform, VmType::NonProtected);
    passed &= smp_guest(platform, VmType::Protected);
    passed &= migrating_vcpu(platform);
    passed &= contended_vcpu(platform);
    passed &= ipi_ping_pong(platform, VmType::NonProtected);
    passed &= ipi_ping_pong(platform, VmType::Protected);
    passed &= stress_all(platform);
    passed &= off_and_on_again(platform);
    passed
}

/// IPI rounds of the ping-pong check.
const IPI_ROUNDS: u64 = 200;

/// Two vCPUs, each on a CPU of its own, send each other SGIs `IPI_ROUNDS`
/// times (`harness::ipi_guest`): every round completes through the host's
/// kicks, in less time than one 10 ms tick per round (which is what an IPI
/// cost when the vCPUs shared a CPU; the guest arms no timer).
fn ipi_ping_pong(platform: &HostPlatform, ty: VmType) -> bool {
    let run = ping_pong(platform, ty, scratch_page(0), IPI_ROUNDS);
    if let Err(PingPongError::NoGicV3) = run {
        log::info!("no GICv3: the IPI ping-pong guest needs ICC_SGI1R_EL1");
        return true;
    }
    let tick = CNTFRQ_EL0.get() / 100;
    let ok = run.as_ref().is_ok_and(|r| {
        r.rounds == Some(IPI_ROUNDS) && r.end == Exit::SystemOff && r.own_cpus && r.ticks < IPI_ROUNDS * tick
    });
    match run {
        Ok(run) => check!(
            ok,
            "a {ty:?} VM's two vCPUs on two CPUs ping-pong {IPI_ROUNDS} SGIs, each round under a 10 ms tick: {run}"
        ),
        Err(error) => check!(false, "a {ty:?} VM's two vCPUs on two CPUs ping-pong {IPI_ROUNDS} SGIs: {error}"),
    }
}

fn bring_up(platform: &HostPlatform) -> bool {
    let mut passed = true;
    for (cpu, mpidr) in secondaries(platform) {
        let started = start_cpu(platform, cpu, mpidr);
        let cpus::Arrival { mpidr: seen, el, version, .. } = arrival(cpu);
        passed &= check!(
            started.is_ok()
                && seen & MPIDR_AFFINITY_MASK == mpidr
                && el == 1
                && version == ABI_VERSION_MAJOR << 32 | ABI_VERSION_MINOR,
            "CPU {cpu} (MPIDR {mpidr:#x}) started with PSCI CPU_ON ({started:?}): runs the shim at EL{el}, MPIDR_EL1 {seen:#x}, VERSION {version:#x}"
        );
    }
    let (_, first) = secondaries(platform).next().unwrap_or((0, 0));
    let again = platform.psci_call(PSCI_CPU_ON_64, [first, 0, 0])[0] as i64;
    passed &= check!(again == PSCI_ALREADY_ON, "CPU_ON of a running CPU: ALREADY_ON ({again})");
    let nobody = platform.psci_call(PSCI_CPU_ON_64, [0xff_00ff_fffe, 0, 0])[0] as i64;
    passed &= check!(nobody == PSCI_INVALID_PARAMETERS, "CPU_ON of an MPIDR no CPU has: INVALID_PARAMETERS ({nobody})");
    passed
}

/// Runs vCPU `vcpu` of `handle` until it turns itself (or its VM) off, and
/// returns `[status, reported, started, runs]`: status 0 when it ended as
/// the SMP guest should; `reported` what it said with `HOST_CALL` (its x1);
/// `started` the vCPUs it started (bit n: vCPU n). vCPU 0 also hands the vCPUs it starts to the CPUs
/// with the same index.
fn run_reporting_vcpu(handle: u64, vcpu: u64) -> [u64; 4] {
    let mut reported = u64::MAX;
    let mut started = 0u64;
    for runs in 1..=MAX_RUNS {
        match hypercall::vcpu_run(handle, vcpu, 0) {
            Ok(Exit::Hypercall { function: HOST_CALL, arg }) => reported = arg,
            Ok(Exit::CpuOn { vcpu: target }) if vcpu == 0 => {
                post(target as usize, run_vcpu_job, [handle, target, 0]);
                started |= 1 << target;
            }
            Ok(Exit::Interrupted) => {}
            Ok(Exit::CpuOff) if vcpu != 0 => return [0, reported, started, runs],
            Ok(Exit::SystemOff) if vcpu == 0 => return [0, reported, started, runs],
            Ok(_) => return [1, reported, started, runs],
            Err(e) => return [e.code() as u64, reported, started, runs],
        }
    }
    [2, reported, started, MAX_RUNS]
}

/// vCPU 0 of the protected SMP guest, run as [`run_reporting_vcpu`] runs it,
/// with the host trying to take the VM's vCPUs over when the guest starts
/// vCPU 1: a `VCPU_INIT` of vCPU 0 (live: it has run) and of vCPU 2 (its guest
/// has not started it yet). Returns what `run_reporting_vcpu` returns and the
/// two answers (both must be `PermissionDenied`, and the guest unaffected).
fn run_vcpu0_refusing_the_host(handle: u64) -> ([u64; 4], [Result<(), HypError>; 2]) {
    for runs in 1..=MAX_RUNS {
        match hypercall::vcpu_run(handle, 0, 0) {
            Ok(Exit::CpuOn { vcpu: 1 }) => {
                let attempts =
                    [hypercall::vcpu_init(handle, 0, GUEST_ENTRY, 0), hypercall::vcpu_init(handle, 2, GUEST_ENTRY, 0)];
                if attempts != [Err(HypError::PermissionDenied); 2] {
                    // The host took the VM over: its guest cannot finish as it
                    // should (it would wait for vCPUs forever). Stop here.
                    return ([3, u64::MAX, 0, runs], attempts);
                }
                post(1, run_vcpu_job, [handle, 1, 0]);
                let mut rest = run_reporting_vcpu(handle, 0);
                rest[2] |= 0b10;
                rest[3] += runs;
                return (rest, attempts);
            }
            Ok(Exit::Interrupted) => {}
            _ => return ([1, u64::MAX, 0, runs], [Ok(()); 2]),
        }
    }
    ([2, u64::MAX, 0, MAX_RUNS], [Ok(()); 2])
}

/// A VM of four vCPUs runs the SMP guest: vCPU 0 on this CPU starts the others
/// with PSCI CPU_ON, each runs on the CPU of its index, and all four must have
/// run at the same time. In the protected VM the host also tries to set the
/// entry of vCPU 0 once it ran and of vCPU 2 before its guest started it: both
/// refused, and the guest goes on as if nothing happened.
fn smp_guest(platform: &HostPlatform, ty: VmType) -> bool {
    let kind = if ty == VmType::Protected { "protected" } else { "non-protected" };
    if platform.cpus().len() < SMP_VCPUS || MPIDR_EL1.get() & MPIDR_AFFINITY_MASK != platform.cpus()[0] {
        log::info!("the {SMP_VCPUS}-vCPU guest needs {SMP_VCPUS} CPUs with the boot CPU first: skipped");
        return true;
    }
    let (code, data) = (scratch_page(0), scratch_page(1));
    load(code, guests::smp());
    zero_page(data);
    let ready = hypercall::vm_create(ty, SMP_VCPUS as u64).and_then(|h| {
        hypercall::vm_map(h, code, GUEST_ENTRY, 2)?;
        hypercall::vcpu_init(h, 0, GUEST_ENTRY, 0)?;
        Ok(h)
    });
    let Ok(handle) = ready else {
        return check!(false, "{kind} {SMP_VCPUS}-vCPU VM: set up failed: {ready:?}");
    };
    let early = hypercall::vcpu_run(handle, 1, 0);
    let mut passed =
        check!(early == Err(HypError::VcpuOff), "{kind} VM: vCPU 1 cannot run before its guest starts it: {early:?}");
    let (own, taken_over) = if ty == VmType::Protected {
        let (own, attempts) = run_vcpu0_refusing_the_host(handle);
        (own, Some(attempts))
    } else {
        (run_reporting_vcpu(handle, 0), None)
    };
    let others: [Option<[u64; 4]>; SMP_VCPUS] =
        core::array::from_fn(|cpu| if cpu == 0 { Some(own) } else { wait_for(cpu) });
    let all_met = others.iter().all(|r| matches!(r, Some([0, reported, _, _]) if reported & 0xff == 1));
    let indices_right = others
        .iter()
        .enumerate()
        .all(|(i, r)| matches!(r, Some([_, reported, _, _]) if (reported >> 8) & 0xff == i as u64));
    let unaffected = all_met && indices_right && own[2] == 0b1110 && (own[1] >> 16) & 0xff == 0;
    passed &= check!(
        unaffected,
        "{kind} VM: vCPU 0 started vCPUs 1..{} with PSCI CPU_ON, each ran on the CPU of its index, all {SMP_VCPUS} ran at the same time, then CPU_OFF and SYSTEM_OFF ({others:x?})",
        SMP_VCPUS - 1
    );
    if let Some(attempts) = taken_over {
        passed &= check!(
            attempts == [Err(HypError::PermissionDenied); 2] && unaffected,
            "{kind} VM: VCPU_INIT of its live vCPU 0 and of vCPU 2 before its guest started it refused ({attempts:?}); the guest went on unaffected"
        );
    }
    let down = hypercall::vm_teardown(handle).and_then(|()| {
        if ty == VmType::Protected {
            hypercall::vm_reclaim(handle, GUEST_ENTRY, 2)
        } else {
            Ok(())
        }
    });
    passed &= check!(down.is_ok(), "{kind} {SMP_VCPUS}-vCPU VM torn down and its memory back: {down:?}");
    passed
}

/// One `VCPU_RUN`: `[0, x1, x2, x3 of the exit]`, or `[error code, 0, 0, 0]`.
fn run_once(handle: u64, vcpu: u64, value: u64) -> [u64; 4] {
    match hypercall::vcpu_run(handle, vcpu, value) {
        Ok(exit) => {
            let [a, b, c] = exit.encode();
            [0, a, b, c]
        }
        Err(e) => [e.code() as u64, 0, 0, 0],
    }
}

/// [`run_reporting_vcpu`] as another CPU's job: `[handle, vcpu, _]`.
fn run_vcpu_job(_cpu: usize, [handle, vcpu, _]: [u64; 3]) -> [u64; 4] {
    run_reporting_vcpu(handle, vcpu)
}

/// [`run_once`] as another CPU's job: `[handle, vcpu, value]`.
fn run_once_job(_cpu: usize, [handle, vcpu, value]: [u64; 3]) -> [u64; 4] {
    run_once(handle, vcpu, value)
}

/// A vCPU moves between CPUs: the console guest's vCPU runs on every CPU in
/// turn, one exit each, and its output comes out whole (its registers, EL1
/// state and the per-CPU TLB bookkeeping follow it).
fn migrating_vcpu(platform: &HostPlatform) -> bool {
    let count = platform.cpus().len();
    let own = own_index(platform);
    let code = scratch_page(0);
    load(code, guests::console());
    let ready = hypercall::vm_create(VmType::NonProtected, 1).and_then(|h| {
        hypercall::vm_map(h, code, GUEST_ENTRY, 1)?;
        hypercall::vcpu_init(h, 0, GUEST_ENTRY, u64::from(b'M'))?;
        Ok(h)
    });
    let Ok(handle) = ready else {
        return check!(false, "set up the migrating VM: {ready:?}");
    };
    let (mut line, mut len, mut value, mut used, mut end) = ([0u8; 48], 0, 0, 0u64, None);
    for round in 0..256 {
        let cpu = round % count;
        let result = if cpu == own {
            run_once(handle, 0, value)
        } else {
            post(cpu, run_once_job, [handle, 0, value]);
            wait_for(cpu).unwrap_or([u64::MAX, 0, 0, 0])
        };
        used |= 1 << cpu;
        let exit = (result[0] == 0).then(|| Exit::decode([result[1], result[2], result[3]])).flatten();
        match exit {
            Some(Exit::Mmio { ipa: GUEST_UART, write: true, value: byte, .. }) => {
                if byte != u64::from(b'\n') && len < line.len() {
                    line[len] = byte as u8;
                    len += 1;
                }
                value = 0;
            }
            Some(Exit::Mmio { ipa: GUEST_UART_STATUS, write: false, .. }) => value = STATUS_ANSWER,
            other => {
                end = Some(other);
                break;
            }
        }
    }
    let text = core::str::from_utf8(&line[..len]).unwrap_or("?");
    let mut passed = check!(
        text == "hello from guest M R1" && end == Some(Some(Exit::SystemOff)) && used.count_ones() as usize == count,
        "a vCPU moved between {count} CPUs at every exit and its guest printed {text:?} whole ({end:?})"
    );
    passed &= check!(hypercall::vm_teardown(handle).is_ok(), "tear the migrating VM down");
    passed
}

/// Counts the counting guest stores while two CPUs run its vCPU at once.
const CONTENDED_COUNTS: u64 = 6_000;
/// `VCPU_RUN`s one CPU tries before it gives up on a contended vCPU.
const CONTENDED_ATTEMPTS: u64 = 200_000;
/// How a contended run loop ended (its result's last word).
const ENDED_COUNTED_OUT: u64 = 1;
const ENDED_NO_VM: u64 = 2;
const ENDED_AT_LIMIT: u64 = 3;
/// How long the boot CPU waits for the other CPU's first counts.
const CONTENDED_WAIT_SECONDS: u64 = 10;
/// Runs of the second CPU so far in [`contend`] (written by it alone).
static CONTENDED_PROGRESS: AtomicU64 = AtomicU64::new(0);
/// Set by the boot CPU (alone) when the second CPU's [`contend`] is to stop
/// (a teardown that never got in).
static CONTENDED_STOP: AtomicBool = AtomicBool::new(false);
/// How [`contend`] ended when told to stop.
const ENDED_STOPPED: u64 = 4;

/// Runs vCPU 0 of `handle` (the counting guest) until its guest counted out
/// (stores 0) or its VM is gone, marking each count it sees in the bitmap at
/// `bitmap` (0: none); every `touch_every`-th attempt (0: never) first reads a
/// register of the vCPU, an access under the VM table's lock (`Busy` while
/// the other CPU runs it). Returns `[error (0: none), counts seen, Busy
/// answers, how it ended]`; error 1: a count seen twice on this CPU, 2: an
/// answer no run may give (the answer's code in the third word), 3: the
/// attempts ran out (on the boot CPU; the other CPU's job tries until its VM
/// is gone, the guest counted out, or [`CONTENDED_STOP`]). Stops after
/// `limit` counts.
fn contend(handle: u64, bitmap: u64, touch_every: u64, report_progress: bool, limit: u64) -> [u64; 4] {
    let (mut seen, mut busy) = (0u64, 0u64);
    let attempts = if report_progress { u64::MAX } else { CONTENDED_ATTEMPTS };
    for attempt in 0..attempts {
        if report_progress && CONTENDED_STOP.load(Ordering::Acquire) {
            return [0, seen, busy, ENDED_STOPPED];
        }
        if touch_every != 0 && attempt % touch_every == 0 {
            let _ = hypercall::vcpu_get_reg(handle, 0, VcpuReg::X(20));
        }
        match hypercall::vcpu_run(handle, 0, 0) {
            Ok(Exit::Mmio { ipa: GUEST_UART, write: true, value: 0, .. }) => {
                return [0, seen, busy, ENDED_COUNTED_OUT];
            }
            Ok(Exit::Mmio { ipa: GUEST_UART, write: true, size_bytes: 8, value }) => {
                if bitmap != 0 && value <= CONTENDED_COUNTS {
                    let word = (bitmap + value / 64 * 8) as *mut u64;
                    // SAFETY: One of this CPU's scratch pages, which it alone
                    // writes until its job is done (CONTENDED_COUNTS / 8 bytes
                    // fit in a page).
                    let bits = unsafe { word.read_volatile() };
                    if bits & 1 << (value % 64) != 0 {
                        return [1, seen, value, 0];
                    }
                    // SAFETY: As above.
                    unsafe { word.write_volatile(bits | 1 << (value % 64)) };
                }
                seen += 1;
                if report_progress {
                    CONTENDED_PROGRESS.store(seen, Ordering::Release);
                }
                if seen == limit {
                    return [0, seen, busy, ENDED_AT_LIMIT];
                }
            }
            Err(HypError::Busy) => busy += 1,
            Err(HypError::NoSuchVm) => return [0, seen, busy, ENDED_NO_VM],
            Ok(_) => return [2, seen, u64::MAX, 0],
            Err(error) => return [2, seen, error.code() as u64, 0],
        }
    }
    [3, seen, busy, 0]
}

/// [`contend`] as the second CPU's job: `[handle, bitmap, touch_every]`.
fn contend_job(_cpu: usize, [handle, bitmap, touch_every]: [u64; 3]) -> [u64; 4] {
    contend(handle, bitmap, touch_every, true, u64::MAX)
}

/// Waits until the other CPU's [`contend`] reported `counts` counts, or
/// [`CONTENDED_WAIT_SECONDS`] passed (its job failed: its result says why).
fn wait_for_progress(counts: u64) {
    let deadline = CNTPCT_EL0.get() + CNTFRQ_EL0.get() * CONTENDED_WAIT_SECONDS;
    while CONTENDED_PROGRESS.load(Ordering::Acquire) < counts && CNTPCT_EL0.get() < deadline {
        core::hint::spin_loop();
    }
}

/// A CPU runs a vCPU again without the VM table's lock while nothing touched
/// its VM (`vm::loaded` in the hyp): two CPUs run one vCPU at once, each as
/// fast as it can, one of them also reading its registers now and then; the
/// guest's counts must come out each exactly once (two CPUs never both run
/// it, no run is lost or repeated). Then one CPU tears the VM down while the
/// other runs its vCPU in a loop: teardown is `Busy` while that run lasts,
/// the other CPU's next run gets `NoSuchVm`, and the hyp's memory and
/// invariants hold afterwards.
fn contended_vcpu(platform: &HostPlatform) -> bool {
    let own = own_index(platform);
    let Some(other) = cpus::secondary_indices(platform).next() else {
        return true;
    };
    let code = scratch_page(0);
    load(code, guests::count());
    let (own_bitmap, other_bitmap) = (cpu_pages(own), cpu_pages(other));
    zero_page(own_bitmap);
    zero_page(other_bitmap);
    let ready = |count: u64| {
        hypercall::vm_create(VmType::NonProtected, 1).and_then(|h| {
            hypercall::vm_map(h, code, GUEST_ENTRY, 1)?;
            hypercall::vcpu_init(h, 0, GUEST_ENTRY, count)?;
            Ok(h)
        })
    };
    let Ok(handle) = ready(CONTENDED_COUNTS) else {
        return check!(false, "set up the contended VM");
    };
    // This CPU takes the first count, and goes on only once the other took
    // one too: both run the vCPU, however the host's CPUs are scheduled.
    let first = contend(handle, own_bitmap, 0, false, 1);
    CONTENDED_PROGRESS.store(0, Ordering::Release);
    CONTENDED_STOP.store(false, Ordering::Release);
    post(other, contend_job, [handle, other_bitmap, 0]);
    wait_for_progress(1);
    let rest = contend(handle, own_bitmap, 64, false, u64::MAX);
    let mine = [first[0] | rest[0], first[1] + rest[1], first[2] + rest[2], rest[3]];
    let theirs = wait_for(other).unwrap_or([u64::MAX; 4]);
    // Every count once: on neither CPU twice (each checked its own), never on
    // both, and all of them.
    let (mut both, mut missing) = (0u64, 0u64);
    for value in 1..=CONTENDED_COUNTS {
        let bit = |bitmap: u64| {
            // SAFETY: The bitmaps are scratch pages both CPUs are done with.
            let word = unsafe { ((bitmap + value / 64 * 8) as *const u64).read_volatile() };
            word & 1 << (value % 64) != 0
        };
        match (bit(own_bitmap), bit(other_bitmap)) {
            (true, true) => both += 1,
            (false, false) => missing += 1,
            _ => {}
        }
    }
    let counted = mine[0] == 0
        && theirs[0] == 0
        && mine[3] == ENDED_COUNTED_OUT
        && theirs[3] == ENDED_COUNTED_OUT
        && mine[1] + theirs[1] == CONTENDED_COUNTS
        && first[3] == ENDED_AT_LIMIT
        && theirs[1] > 0
        && both == 0
        && missing == 0;
    let mut passed = check!(
        counted,
        "one vCPU run from two CPUs at once: counts 1..={CONTENDED_COUNTS} each seen once ({} on CPU {own}, {} on CPU {other}, none on both: {both}, none missing: {missing}; ended {} and {}, errors {} and {})",
        mine[1],
        theirs[1],
        mine[3],
        theirs[3],
        mine[0],
        theirs[0]
    );
    passed &= check!(hypercall::vm_teardown(handle).is_ok(), "tear the contended VM down");
    // Teardown while the other CPU runs the vCPU over and over.
    let Ok(handle) = ready(u64::MAX) else {
        return check!(false, "set up the VM torn down under a running CPU");
    };
    let warm = contend_quietly(handle, 64);
    CONTENDED_PROGRESS.store(0, Ordering::Release);
    post(other, contend_job, [handle, 0, 0]);
    wait_for_progress(256);
    // (Busy while the other CPU's run lasts: it may take many tries to fall
    // between two runs, so the bound is time, not tries.)
    let (mut busy, deadline) = (0u64, CNTPCT_EL0.get() + CNTFRQ_EL0.get() * 3 * CONTENDED_WAIT_SECONDS);
    let down = loop {
        match hypercall::vm_teardown(handle) {
            Err(HypError::Busy) if CNTPCT_EL0.get() < deadline => busy += 1,
            other => break other,
        }
    };
    if down.is_err() {
        CONTENDED_STOP.store(true, Ordering::Release);
    }
    let theirs = wait_for(other).unwrap_or([u64::MAX; 4]);
    let after = hypercall::vcpu_run(handle, 0, 0);
    let report = hypercall::check_invariants();
    passed &= check!(
        warm && down.is_ok()
            && theirs[0] == 0
            && theirs[3] == ENDED_NO_VM
            && after == Err(HypError::NoSuchVm)
            && (!debug_calls() || report.as_ref().is_ok_and(|r| r.violations == 0)),
        "a VM torn down by one CPU while another ran its vCPU in a loop: teardown {down:?} ({busy} times Busy before), the other CPU's next run NoSuchVm after {} runs (ended {}, error {}), invariants {}",
        theirs[1],
        theirs[3],
        theirs[0],
        match &report {
            Ok(r) if r.violations == 0 => "hold",
            Ok(_) => "VIOLATED",
            Err(_) => "not checked (production hyp)",
        }
    );
    passed
}

/// `runs` runs of vCPU 0 of `handle` on this CPU, each an MMIO exit (so that
/// this CPU remembers the vCPU).
fn contend_quietly(handle: u64, runs: u64) -> bool {
    (0..runs).all(|_| matches!(hypercall::vcpu_run(handle, 0, 0), Ok(Exit::Mmio { .. })))
}

/// `rounds` rounds of CPU `cpu`'s share of the stress run, with `seed`: create
/// a VM (protected or not, by the seed), give it a page, run it to SYSTEM_OFF,
/// lend a page to the hyp and take it back, donate one and reclaim it, tear the
/// VM down and take its memory back.
///
/// A donated page joins the hyp's memcache, where another CPU's new VM may be
/// using it: its reclaim then answers `Busy` (rightly), and the page is tried
/// again in later rounds. Returns `[error code (0: none), rounds done, reclaims
/// answered Busy, the page still donated (0: none)]`; on an error, the step
/// that failed is in the last word.
fn stress(cpu: usize, seed: u64, rounds: u64) -> [u64; 4] {
    let pages = cpu_pages(cpu);
    let (code, shared, donated) = (pages, pages + PAGE, pages + 2 * PAGE);
    let mut rng = Rng::new(seed ^ (cpu as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let fail = |e: HypError, round: u64, step: u64| [e.code() as u64, round, 0, step];
    let (mut busy, mut still_donated) = (0u64, false);
    for round in 0..rounds {
        let choice = rng.next();
        let ty = if choice & 1 == 0 { VmType::Protected } else { VmType::NonProtected };
        let vcpus = 1 + (choice >> 1) % 2;
        load(code, guests::off());
        let handle = match hypercall::vm_create(ty, vcpus) {
            Ok(h) => h,
            Err(e) => return fail(e, round, 1),
        };
        let ran = hypercall::vm_map(handle, code, GUEST_ENTRY, 1)
            .and_then(|()| hypercall::vcpu_init(handle, 0, GUEST_ENTRY, 0))
            .and_then(|()| hypercall::vcpu_run(handle, 0, 0));
        match ran {
            Ok(Exit::SystemOff) => {}
            Ok(_) => return fail(HypError::InvalidArgument, round, 2),
            Err(e) => return fail(e, round, 2),
        }
        if choice & 4 != 0 {
            if let Err(e) = hypercall::share_hyp(shared, 1).and_then(|()| hypercall::unshare_hyp(shared, 1)) {
                return fail(e, round, 3);
            }
        }
        if choice & 8 != 0 || still_donated {
            if !still_donated {
                if let Err(e) = hypercall::donate_hyp(donated, 1) {
                    return fail(e, round, 4);
                }
            }
            match hypercall::reclaim_hyp(donated, 1) {
                Ok(()) => still_donated = false,
                Err(HypError::Busy) => {
                    busy += 1;
                    still_donated = true;
                }
                Err(e) => return fail(e, round, 5),
            }
        }
        let down = hypercall::vm_teardown(handle).and_then(|()| {
            if ty == VmType::Protected {
                hypercall::vm_reclaim(handle, GUEST_ENTRY, 1)
            } else {
                Ok(())
            }
        });
        if let Err(e) = down {
            return fail(e, round, 6);
        }
    }
    [0, rounds, busy, if still_donated { donated } else { 0 }]
}

/// [`stress`] as another CPU's job: `[seed, rounds, _]`.
fn stress_job(cpu: usize, [seed, rounds, _]: [u64; 3]) -> [u64; 4] {
    stress(cpu, seed, rounds)
}

/// Every CPU runs its share of the stress run at once; afterwards the hyp's
/// memory accounting must be what it was and its invariants must hold.
fn stress_all(platform: &HostPlatform) -> bool {
    const SEED: u64 = 2026;
    let rounds = platform.smp_stress_rounds;
    let before = hypercall::check_invariants();
    let cpus: [bool; MAX_CPUS] = core::array::from_fn(|i| i < platform.cpus().len());
    for (cpu, _) in secondaries(platform) {
        post(cpu, stress_job, [SEED, rounds, 0]);
    }
    let own_cpu = own_index(platform);
    let own = stress(own_cpu, SEED, rounds);
    let mut passed = true;
    let mut busy = 0;
    let mut results: [Option<[u64; 4]>; MAX_CPUS] = [None; MAX_CPUS];
    for (cpu, &present) in cpus.iter().enumerate() {
        if present {
            results[cpu] = if cpu == own_cpu { Some(own) } else { wait_for(cpu) };
        }
    }
    for (cpu, &result) in results.iter().enumerate().filter(|&(cpu, _)| cpus[cpu]) {
        passed &= check!(
            matches!(result, Some([0, done, _, _]) if done == rounds),
            "stress on CPU {cpu}: {rounds} rounds of VM create/run/teardown/reclaim with page sharing and donation, concurrently with the other CPUs (seed {SEED}): {result:?}"
        );
        let Some([_, _, cpu_busy, still_donated]) = result else {
            continue;
        };
        busy += cpu_busy;
        if still_donated != 0 {
            // Every CPU is done, so every VM is gone: the page is free in the memcache.
            let back = hypercall::reclaim_hyp(still_donated, 1);
            passed &= check!(back.is_ok(), "CPU {cpu}'s donated page comes back once every VM is gone: {back:?}");
        }
    }
    log::info!("stress: {busy} reclaims of a donated page answered Busy while another CPU's VM used it");
    if !debug_calls() {
        log::info!("production hyp: no invariant checker to compare its memory after the all-CPU stress run");
        return passed;
    }
    let after = hypercall::check_invariants();
    passed &= check!(
        matches!((before, after), (Ok(b), Ok(a)) if a == b && a.violations == 0),
        "after the all-CPU stress run the hyp's memory is what it was and its invariants hold ({after:?})"
    );
    passed
}

/// The secondaries turn themselves off (PSCI CPU_OFF through the hyp), which
/// AFFINITY_INFO confirms; the first one is started again and must come back.
fn off_and_on_again(platform: &HostPlatform) -> bool {
    let mut passed = true;
    for (cpu, mpidr) in secondaries(platform) {
        let (acknowledged, state) = turn_off(platform, cpu, mpidr);
        passed &=
            check!(acknowledged && state == AFFINITY_OFF, "CPU {cpu} off with PSCI CPU_OFF: AFFINITY_INFO {state}");
    }
    if let Some((cpu, mpidr)) = secondaries(platform).next() {
        let arrivals = arrival(cpu).count;
        let again = start_cpu(platform, cpu, mpidr);
        let now = arrival(cpu).count;
        passed &= check!(again.is_ok() && now == arrivals + 1, "CPU {cpu} started again after CPU_OFF: {again:?}");
        let (acknowledged, state) = turn_off(platform, cpu, mpidr);
        passed &= check!(acknowledged && state == AFFINITY_OFF, "CPU {cpu} off again: AFFINITY_INFO {state}");
    }
    passed
}
