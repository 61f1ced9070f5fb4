//! The hostile host: a seeded stream of hypercalls mixing real lifecycle work
//! (create, map, run, teardown, reclaim, share, donate) with hostile arguments
//! (stale and forged handles, hyp and device memory, unaligned and wrapping
//! ranges, huge counts, vCPUs out of range, unknown function IDs), on every CPU
//! at once. Every answer is checked against what the ABI says it must be
//! (`fuzz/model.rs`); after every call the hyp's invariant checker must report
//! nothing (over what the calls since the last check touched, and over
//! everything every [`FULL_CHECK_EVERY`] calls and at the end); every so often
//! the host reads its protected VMs' and donated pages and must be refused
//! (but for the pages they share with it). Guests in protected VMs share a
//! page with the host, share and unshare it, or relinquish it (a sharing
//! guest, `guests/share.S`); the model learns the page's state when the guest
//! turns its VM off, and hostile calls then aim at those pages: lend, donate,
//! reclaim, map into another VM, take back by force, tear down, exchange.
//! Every page a protected VM gives back must come back zeroed. At
//! the end everything is torn down and every page must be back with the host.
//!
//! Runs instead of the checks when the bootargs say `shim.fuzz-calls=N`
//! (`shim.fuzz-seed=S` picks the seed); with several CPUs in the device tree
//! (`scripts/fuzz-host --cpus 4`) each runs its share of the calls at the same
//! time, on its own window of host memory and its own VMs, and all of them aim
//! at one shared window too. A failure prints the seed, the CPU, the call, the
//! answer and what was expected.

mod model;

use crate::guests;
use crate::harness::cpus::{own_index, post, secondary_indices, start_secondaries, wait_for};
use crate::harness::gic;
use crate::harness::hostile_registers::{hostile_registers, MAX_HOSTILE_REGISTERS};
use crate::harness::hypercall::{self, raw_call};
use crate::harness::platform::{HostPlatform, MAX_CPUS};
use crate::harness::probe::{self, probe_hyp_memory, Access};
use crate::harness::report::check;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use hyp_abi::{vendor_hyp_fn, CheckScope, Exit, HostCall, HypError, HOST_CALL_BASE};
use model::{
    Answers, Expect, Model, OkCheck, Page, Sharing, VmState, CODE_PAGES, CORE_MEMCACHE, CORE_MEMCACHE_PAGES,
    GUEST_ENTRY, HOSTILE_MEMCACHE, HOSTILE_MEMCACHE_PAGES, HOSTILE_PAGES, PAGE, SHARING_DATA, SLOTS, WINDOW_PAGES,
};
use testkit::rng::Rng;

/// Every this many calls a CPU has the hyp check everything, not only what
/// the calls since the last check touched.
pub const FULL_CHECK_EVERY: u64 = 256;
/// The host's timer tick on each CPU (as the VM checks' spinning guest has it).
const TICK_HZ: u64 = 100;
/// IPAs the hostile `VM_MAP`s use (page counts 1 or 2 there).
/// (The last lies in a VM's GIC distributor window as it is out of reset: a
/// live VM's page there cannot be taken back by force.)
const HOSTILE_IPAS: [u64; 4] = [0, GUEST_ENTRY + 0x1000, GUEST_ENTRY + 0x2000, hyp_abi::GUEST_GIC_DISTRIBUTOR + 0x1000];
/// Runs the sharing guest gets to make its memory call and turn its VM off
/// (a tick may end a run first; the guest then goes on where it was).
const SHARING_RUNS: usize = 64;
/// What the host writes into a sharing guest's data page before giving it.
const SHARING_MARK: u64 = 0x5ea2_ed00_0000_0000;
/// Bytes per window (each CPU's, and the shared one).
const WINDOW: u64 = WINDOW_PAGES * PAGE;

/// What went wrong on a CPU (the first thing only: it stops there).
#[derive(Clone, Copy, Debug)]
enum Failure {
    /// A call answered what the ABI does not allow.
    Answer { function: u32, args: [u64; 6], got: [u64; 4], expected: Answers, ok: OkCheck },
    /// The invariant checker found violations, or did not answer.
    Invariants { scope: u64, got: [u64; 4] },
    /// A read of host memory refused when it must not be, or the reverse;
    /// a device register write that was not refused.
    Access { what: &'static str, address: u64, refused: bool },
    /// A VM the fuzzer created got a handle one of its VMs has.
    HandleTwice { handle: u64 },
    /// The host's read of a page a guest shared, unshared or relinquished
    /// (or a protected VM gave back) found something else than it must.
    Content { what: &'static str, address: u64, read: Option<u64>, expected: Option<u64> },
    /// The sharing guest of VM `handle` did not turn its VM off.
    SharingUnfinished { handle: u64 },
}

/// What a CPU counted.
#[derive(Clone, Copy, Debug, Default)]
struct Stats {
    calls: u64,
    /// Hypercalls made whose answer was checked, and how many said `Ok`.
    answers: u64,
    ok: u64,
    /// Calls not made: they could have changed another CPU's VMs or pages.
    skipped: u64,
    touched_checks: u64,
    full_checks: u64,
    probes: u64,
    created: u64,
    /// Pages taken back by force from a live protected VM (their IPAs poisoned).
    forced_reclaims: u64,
    /// Per host call (in `HostCall::ALL` order): answers checked, and `Ok`s among them.
    by_call: [[u64; 2]; CALLS],
    /// Sharing guests that made their call in a protected VM (in
    /// `Sharing::ALL` order), and in a non-protected one (refused).
    sharing: [u64; 3],
    sharing_refused: u64,
    /// Calls aimed at pages a sharing guest changed, per host call: answers
    /// checked, `Ok`s.
    aimed: [[u64; 2]; CALLS],
    /// Pages taken back from a protected VM while it shared them with the
    /// host (by force from a live VM, or after its teardown), and of those
    /// by force.
    borrowed_back: [u64; 2],
}

/// Host calls the ABI has.
const CALLS: usize = HostCall::ALL.len();

/// The position of `call` in `HostCall::ALL`.
fn call_index(call: HostCall) -> usize {
    HostCall::ALL.iter().position(|&c| c == call).unwrap_or(0)
}

/// One CPU's run: its model, what it counted, its failure.
struct CpuRun {
    model: Option<Model>,
    stats: Stats,
    failure: Option<(u64, u64, Failure)>,
}

/// Each CPU writes its own entry only; the boot CPU reads them once their
/// CPU has finished its job (the mailbox says so).
struct Runs([UnsafeCell<CpuRun>; MAX_CPUS]);

// SAFETY: Entry `i` is written by CPU `i` while its job runs and read by the
// boot CPU only after that job is done (see above).
unsafe impl Sync for Runs {}

static RUNS: Runs =
    Runs([const { UnsafeCell::new(CpuRun { model: None, stats: Stats::ZERO, failure: None }) }; MAX_CPUS]);

/// Set by CPU `i` when it failed, so that the others stop early (one writer each).
static FAILED: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];
/// Calls CPU `i` has made (one writer each): the boot CPU watches it while it waits.
static PROGRESS: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
/// The hypercall CPU `i` makes now (function ID, then x1..x6; one writer
/// each), for the report of a CPU that stopped answering.
static IN_FLIGHT: [[AtomicU64; 7]; MAX_CPUS] = [const { [const { AtomicU64::new(0) }; 7] }; MAX_CPUS];

/// Notes the hypercall this CPU is about to make.
fn in_flight(cpu: usize, function: u32, args: &[u64; 6]) {
    if let Some(slots) = IN_FLIGHT.get(cpu) {
        slots[0].store(u64::from(function), Ordering::Relaxed);
        for (slot, &arg) in slots[1..].iter().zip(args) {
            slot.store(arg, Ordering::Relaxed);
        }
    }
}

impl Stats {
    const ZERO: Stats = Stats {
        calls: 0,
        answers: 0,
        ok: 0,
        skipped: 0,
        touched_checks: 0,
        full_checks: 0,
        probes: 0,
        created: 0,
        forced_reclaims: 0,
        by_call: [[0; 2]; CALLS],
        sharing: [0; 3],
        sharing_refused: 0,
        aimed: [[0; 2]; CALLS],
        borrowed_back: [0; 2],
    };

    fn add(&mut self, other: &Stats) {
        self.calls += other.calls;
        self.answers += other.answers;
        self.ok += other.ok;
        self.skipped += other.skipped;
        self.touched_checks += other.touched_checks;
        self.full_checks += other.full_checks;
        self.probes += other.probes;
        self.created += other.created;
        self.forced_reclaims += other.forced_reclaims;
        for (mine, theirs) in self.by_call.iter_mut().zip(&other.by_call) {
            mine[0] += theirs[0];
            mine[1] += theirs[1];
        }
        for (mine, theirs) in self.sharing.iter_mut().zip(&other.sharing) {
            *mine += theirs;
        }
        self.sharing_refused += other.sharing_refused;
        for (mine, theirs) in self.aimed.iter_mut().zip(&other.aimed) {
            mine[0] += theirs[0];
            mine[1] += theirs[1];
        }
        self.borrowed_back[0] += other.borrowed_back[0];
        self.borrowed_back[1] += other.borrowed_back[1];
    }
}

/// The run of CPU `cpu`.
///
/// # Safety
///
/// Only CPU `cpu` may call this while its job runs, and the boot CPU after.
unsafe fn run_of(cpu: usize) -> &'static mut CpuRun {
    // SAFETY: As the caller guarantees: one user at a time.
    unsafe { &mut *RUNS.0[cpu].get() }
}

/// What every CPU needs to know, set by the boot CPU before any job starts.
struct Setup {
    platform: *const HostPlatform,
    seed: u64,
    /// CPUs taking part, the shared window (with several), and the span of
    /// all windows.
    participants: u64,
    shared: Option<u64>,
    windows: (u64, u64),
    features: [u64; 2],
}

struct SetupCell(UnsafeCell<Option<Setup>>);

// SAFETY: Written by the boot CPU before it posts any job, read by the CPUs
// while their jobs run (posting a job orders the write before the read).
unsafe impl Sync for SetupCell {}

static SETUP: SetupCell = SetupCell(UnsafeCell::new(None));

/// CPU `participant`'s window.
fn window_of(setup: &Setup, participant: u64) -> u64 {
    setup.windows.0 + participant * WINDOW
}

/// Runs `calls` hostile calls with `seed`, on every CPU the device tree
/// has; true when the hyp held.
pub fn run(platform: &HostPlatform, calls: u64, seed: u64) -> bool {
    let features = match hypercall::raw_call(HostCall::Features.function_id(), [0; 6]) {
        [0, bits, flags, _] => [bits, flags],
        other => return check!(false, "hostile host: FEATURES answered {other:x?}"),
    };
    let started = if platform.cpus().len() > 1 { start_secondaries(platform) } else { 0 };
    let secondaries: [Option<usize>; MAX_CPUS] = {
        let mut list = [None; MAX_CPUS];
        for (slot, cpu) in list.iter_mut().zip(secondary_indices(platform).take(started)) {
            *slot = Some(cpu);
        }
        list
    };
    let participants = 1 + started as u64;
    log::info!("hostile host: {calls} calls, seed {seed}, on {participants} CPU(s)");
    // The windows: below the hyp's pool, far from the shim's own memory;
    // with several CPUs the shared one is the highest.
    let multi = participants > 1;
    let count = participants + u64::from(multi);
    let Some(low) = platform.spare_ram_below_pool(count * WINDOW) else {
        return check!(false, "hostile host: RAM too small for {count} windows of 4 MiB below the hyp's pool");
    };
    let top = low + count * WINDOW;
    let setup =
        Setup { platform, seed, participants, shared: multi.then_some(top - WINDOW), windows: (low, top), features };
    // SAFETY: No job runs yet; the jobs posted below read it.
    unsafe { *SETUP.0.get() = Some(setup) };
    // SAFETY: Written just above, and only read from here on.
    let setup = unsafe { (*SETUP.0.get()).as_ref() }.expect("set up");
    let start = counter();
    let share = |p: u64| calls / participants + u64::from(p < calls % participants);
    for (p, cpu) in secondaries.iter().flatten().enumerate() {
        post(*cpu, run_on_this_cpu, [share(p as u64 + 1), seed, p as u64 + 1]);
    }
    let own = own_index(platform);
    run_on_this_cpu(own, [share(0), seed, 0]);
    let mut passed = true;
    let mut lost = [false; MAX_CPUS];
    for cpu in secondaries.iter().flatten().copied() {
        // A CPU still making calls is waited for; one that stopped is lost.
        let mut last = u64::MAX;
        let result = loop {
            if let Some(result) = wait_for(cpu) {
                break Some(result);
            }
            let now = PROGRESS[cpu].load(Ordering::Relaxed);
            if now == last {
                break None;
            }
            last = now;
        };
        if result.is_none() {
            lost[cpu] = true;
            let call: [u64; 7] = core::array::from_fn(|i| IN_FLIGHT[cpu][i].load(Ordering::Relaxed));
            passed &= check!(
                false,
                "hostile host seed {seed}: CPU {cpu} stopped answering ({last} calls made; the last hypercall it made or makes: {:?} ({:#x}) with x1..x6 {:x?})",
                HostCall::from_function_id(call[0]),
                call[0],
                &call[1..]
            );
        }
    }
    let elapsed = counter() - start;
    let mut total = Stats::default();
    let mut failures = 0;
    for cpu in core::iter::once(own).chain(secondaries.iter().flatten().copied()).filter(|&cpu| !lost[cpu]) {
        // SAFETY: Every job but the lost ones' is done.
        let run = unsafe { run_of(cpu) };
        total.add(&run.stats);
        if let Some((call, kind, failure)) = run.failure {
            failures += 1;
            passed &=
                check!(false, "hostile host seed {seed} CPU {cpu} call {call} (kind {kind}): {}", Described(failure));
        }
    }
    let frequency = counter_frequency().max(1);
    let micros = elapsed * 1_000_000 / frequency;
    log::info!(
        "hostile host: {} calls on {participants} CPU(s) in {}.{:03} s ({} us a call): {} answers checked ({} Ok, {} errors), {failures} unexpected, {} calls not made (they could touch another CPU's VMs or pages); {} touched and {} full invariant checks; {} reads probed; {} VMs created, {} pages taken from live ones by force",
        total.calls,
        micros / 1_000_000,
        micros / 1000 % 1000,
        micros / total.calls.max(1),
        total.answers,
        total.ok,
        total.answers - total.ok,
        total.skipped,
        total.touched_checks,
        total.full_checks,
        total.probes,
        total.created,
        total.forced_reclaims,
    );
    log::info!("hostile host: answers per call, Ok of all: {}", PerCall(&total.by_call));
    log::info!(
        "hostile host: sharing guests in protected VMs shared {}, shared and unshared {}, relinquished {} page(s) ({} in non-protected VMs were refused); {} pages taken back from protected VMs while shared with the host ({} by force); calls aimed at those pages, Ok of all: {}",
        total.sharing[0],
        total.sharing[1],
        total.sharing[2],
        total.sharing_refused,
        total.borrowed_back[0],
        total.borrowed_back[1],
        PerCall(&total.aimed),
    );
    if lost.contains(&true) {
        return false;
    }
    passed &= check!(
        failures == 0,
        "hostile host seed {seed}: every answer was one the ABI allows and the invariants held after every call ({failures} CPU(s) saw something else)"
    );
    passed &= take_everything_back(platform, setup, own, &secondaries, total.created);
    passed
}

/// The physical counter (CNTPCT_EL0).
fn counter() -> u64 {
    use aarch64_cpu::registers::{Readable, CNTPCT_EL0};
    CNTPCT_EL0.get()
}

/// Its frequency.
fn counter_frequency() -> u64 {
    use aarch64_cpu::registers::{Readable, CNTFRQ_EL0};
    CNTFRQ_EL0.get()
}

/// After every CPU's run (each tore its VMs down and took its pages from
/// them): the pages still donated or lent come back, exactly as the models
/// say, every window is the host's again, no VM of any CPU is left, and the
/// hyp's memcache is empty.
fn take_everything_back(
    platform: &HostPlatform,
    setup: &Setup,
    own: usize,
    secondaries: &[Option<usize>; MAX_CPUS],
    created: u64,
) -> bool {
    let mut passed = true;
    let mut left_in_vms = 0;
    let mut alive = 0;
    let mut back_wrong = 0;
    for cpu in core::iter::once(own).chain(secondaries.iter().flatten().copied()) {
        // SAFETY: Every job is done.
        let Some(model) = (unsafe { run_of(cpu) }).model.as_ref() else {
            continue;
        };
        left_in_vms += model.vms.iter().flatten().count();
        alive += model
            .stale_handles()
            .iter()
            .filter(|&&h| h != 0 && hypercall::vm_info(h) != Err(HypError::NoSuchVm))
            .count();
        for i in 0..WINDOW_PAGES {
            let page = model.page(i);
            let back = match model.page_state(i) {
                Page::Host => Ok(()),
                // No VM is left: nothing uses a donated page any more.
                Page::Donated => hypercall::reclaim_hyp(page, 1),
                Page::Shared => hypercall::unshare_hyp(page, 1),
                Page::InVm => Err(HypError::Busy),
            };
            back_wrong += u64::from(back.is_err());
        }
    }
    passed &= check!(
        left_in_vms == 0 && alive == 0,
        "hostile host: every VM of the {created} it created is gone; the VMs it still tracks are gone ({} left)",
        left_in_vms + alive
    );
    passed &= check!(
        back_wrong == 0,
        "hostile host: every page the models say is donated or lent came back ({back_wrong} did not)"
    );
    if let Some(shared) = setup.shared {
        // Whatever the CPUs left there (their VMs are gone: only lent or
        // donated pages, or none).
        let mut wrong = 0;
        for page in (shared..shared + WINDOW).step_by(PAGE as usize) {
            let unshared = hypercall::unshare_hyp(page, 1);
            let reclaimed = hypercall::reclaim_hyp(page, 1);
            wrong += u64::from(!matches!(unshared, Ok(()) | Err(HypError::NotOwned)));
            wrong += u64::from(!matches!(reclaimed, Ok(()) | Err(HypError::NotOwned)));
        }
        passed &= check!(wrong == 0, "hostile host: the shared window's pages came back ({wrong} odd answers)");
    }
    // Every page of every window is the host's: each 2 MiB lends to the hyp
    // as a whole, and comes back.
    let mut not_host = 0;
    for half in (setup.windows.0..setup.windows.1).step_by(2 << 20) {
        let lent = hypercall::share_hyp(half, 512);
        not_host += u64::from(lent.is_err() || hypercall::unshare_hyp(half, 512).is_err());
    }
    passed &= check!(
        not_host == 0,
        "hostile host: every page of the {} window(s) is the host's again ({not_host} blocks of 2 MiB are not)",
        (setup.windows.1 - setup.windows.0) / WINDOW
    );
    let after = hypercall::check_invariants();
    passed &= check!(
        matches!(after, Ok(r) if r.violations == 0 && r.memcache_free == 0 && r.memcache_used == 0),
        "hostile host: {} calls with seed {} and the hyp held; every page is back ({after:?})",
        platform.fuzz_calls,
        setup.seed
    );
    let hyp = platform.hyp_regions().first().map_or(0, |r| r.0);
    passed &= probe_hyp_memory(hyp, Access::Read);
    passed
}

/// Answers per host call, for the log.
struct PerCall<'a>(&'a [[u64; 2]; CALLS]);

impl core::fmt::Display for PerCall<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for (call, [all, ok]) in HostCall::ALL.iter().zip(self.0).filter(|(_, c)| c[0] > 0) {
            write!(f, "{call:?} {ok}/{all} ")?;
        }
        Ok(())
    }
}

/// A failure, for the log.
struct Described(Failure);

impl core::fmt::Display for Described {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0 {
            Failure::Answer { function, args, got, expected, ok } => {
                let name = HostCall::from_function_id(u64::from(function));
                let status = got[0] as i64;
                let error = HypError::from_code(status);
                write!(
                    f,
                    "{name:?} ({function:#x}) with x1..x6 {args:x?} answered x0 {status} ({error:?}), x1..x3 {:x?}; the ABI allows {expected:?}, with Ok {ok:?}",
                    &got[1..]
                )
            }
            Failure::Invariants { scope, got } => {
                write!(
                    f,
                    "the invariant checker (scope {scope}) answered {got:x?}: violations (see the hyp's warnings)"
                )
            }
            Failure::Access { what, address, refused } => {
                write!(f, "{what} at {address:#x}: refused {refused}")
            }
            Failure::HandleTwice { handle } => write!(f, "VM_CREATE gave handle {handle:#x}, which a live VM has"),
            Failure::Content { what, address, read, expected } => {
                write!(f, "{what} at {address:#x}: read {read:x?}, must be {expected:x?} (None: refused)")
            }
            Failure::SharingUnfinished { handle } => {
                write!(f, "the sharing guest of VM {handle:#x} did not turn its VM off in {SHARING_RUNS} runs")
            }
        }
    }
}

/// A CPU's job: its share of the calls (the boot CPU's too), `[calls, seed,
/// participant]`. Returns `[0 or 1 (failed), calls made, 0, 0]`; the details
/// are in its run.
fn run_on_this_cpu(cpu: usize, [calls, seed, participant]: [u64; 3]) -> [u64; 4] {
    // SAFETY: Set before any job was posted.
    let Some(setup) = (unsafe { (*SETUP.0.get()).as_ref() }) else {
        return [1, 0, 0, 0];
    };
    // SAFETY: The platform lives as long as the shim (its `main` never returns).
    let platform = unsafe { &*setup.platform };
    // SAFETY: This CPU's own run, while its job runs.
    let run = unsafe { run_of(cpu) };
    run.stats = Stats::default();
    run.failure = None;
    let model = Model::new(
        setup.participants > 1,
        platform,
        window_of(setup, participant),
        setup.windows,
        setup.shared,
        setup.features,
    );
    let model = run.model.insert(model);
    let mut rng = Rng::new(seed ^ participant.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut fuzzer = Fuzzer {
        cpu,
        platform,
        model,
        stats: &mut run.stats,
        failure: &mut run.failure,
        call: 0,
        kind: 0,
        device_registers: hostile_registers(platform),
    };
    // A tick, as an OS has: a guest that loops without a trap (the hostile
    // calls set random PCs and registers) loses the CPU at the next one.
    let tick = match (platform.gic, platform.timer_intid) {
        (Some(gic), Some(intid)) => gic::start_tick(gic, intid, TICK_HZ),
        _ => false,
    };
    fuzzer.start();
    for call in 0..calls {
        if fuzzer.failure.is_some() || (call % 64 == 0 && FAILED.iter().any(|f| f.load(Ordering::Relaxed))) {
            break;
        }
        fuzzer.call = call;
        fuzzer.one(&mut rng);
        fuzzer.stats.calls += 1;
        PROGRESS[cpu].store(call + 1, Ordering::Relaxed);
        if fuzzer.failure.is_none() {
            let scope = if (call + 1) % FULL_CHECK_EVERY == 0 { CheckScope::Full } else { CheckScope::Touched };
            fuzzer.check_invariants(scope);
        }
    }
    if fuzzer.failure.is_none() {
        fuzzer.call = calls;
        fuzzer.kind = u64::MAX;
        fuzzer.clean_up();
    }
    if tick {
        gic::stop_tick();
        gic::take_pending_interrupts();
    }
    let failed = fuzzer.failure.is_some();
    if failed {
        FAILED[cpu].store(true, Ordering::Relaxed);
    }
    [u64::from(failed), fuzzer.stats.calls, 0, 0]
}

/// One CPU's fuzzing (it never logs: only the boot CPU may, after the run).
struct Fuzzer<'a> {
    cpu: usize,
    platform: &'a HostPlatform,
    model: &'a mut Model,
    stats: &'a mut Stats,
    failure: &'a mut Option<(u64, u64, Failure)>,
    call: u64,
    kind: u64,
    device_registers: ([(u64, bool); MAX_HOSTILE_REGISTERS], usize),
}

impl Fuzzer<'_> {
    fn fail(&mut self, failure: Failure) {
        if self.failure.is_none() {
            *self.failure = Some((self.call, self.kind, failure));
        }
    }

    /// Makes `call` with `args` if the model allows it, checks its answer and
    /// follows it in the model; the answer, or `None` if the call was not made
    /// (or failed the check).
    fn issue(&mut self, call: HostCall, args: [u64; 6]) -> Option<[u64; 4]> {
        let expect = self.model.expect(call, args);
        self.issue_expecting(call, args, expect)
    }

    fn issue_expecting(&mut self, call: HostCall, args: [u64; 6], expect: Expect) -> Option<[u64; 4]> {
        if self.failure.is_some() {
            return None;
        }
        if expect.skip {
            self.stats.skipped += 1;
            return None;
        }
        let live = call == HostCall::VmReclaim && self.model.vm(args[0]).is_some_and(|v| v.state != VmState::TornDown);
        // The own window's pages a protected VM of ours would give back.
        let mut giving = [0u64; 8];
        let mut borrowed = false;
        if let Some(vm) = self.model.vm(args[0]).filter(|v| call == HostCall::VmReclaim && v.protected) {
            for (i, slot) in giving.iter_mut().enumerate().take(args[2].min(8) as usize) {
                let pa = vm.pa_at(args[1].wrapping_add(i as u64 * PAGE));
                borrowed |= pa.is_some() && pa == vm.host_borrowed;
                *slot = pa.filter(|&pa| self.model.is_own(pa)).unwrap_or(0);
            }
        }
        in_flight(self.cpu, call.function_id(), &args);
        let got = raw_call(call.function_id(), args);
        self.stats.forced_reclaims += u64::from(live && got[0] == 0);
        self.stats.answers += 1;
        self.stats.ok += u64::from(got[0] == 0);
        let counts = &mut self.stats.by_call[call_index(call)];
        counts[0] += 1;
        counts[1] += u64::from(got[0] == 0);
        if !expect.accepts(got) {
            self.fail(Failure::Answer {
                function: call.function_id(),
                args,
                got,
                expected: expect.answers,
                ok: expect.ok,
            });
            return None;
        }
        self.model.apply(call, args, got);
        if got[0] == 0 {
            self.stats.borrowed_back[0] += u64::from(borrowed);
            self.stats.borrowed_back[1] += u64::from(borrowed && live);
            for pa in giving.into_iter().filter(|&pa| pa != 0) {
                self.zeroed(pa, "a page a protected VM gave back");
            }
        }
        Some(got)
    }

    /// The host's page at `pa` reads as zero, every word of it.
    fn zeroed(&mut self, pa: u64, what: &'static str) {
        for at in (pa..pa + PAGE).step_by(8) {
            let word = probe::read(at);
            if word != Some(0) {
                self.fail(Failure::Content { what, address: at, read: word, expected: Some(0) });
                return;
            }
        }
    }

    fn check_invariants(&mut self, scope: CheckScope) {
        let args = [scope as u64, 0, 0, 0, 0, 0];
        in_flight(self.cpu, HostCall::DebugCheckInvariants.function_id(), &args);
        let got = raw_call(HostCall::DebugCheckInvariants.function_id(), args);
        match scope {
            CheckScope::Full => self.stats.full_checks += 1,
            CheckScope::Touched => self.stats.touched_checks += 1,
        }
        if got[0] != 0 || got[1] != 0 {
            self.fail(Failure::Invariants { scope: scope as u64, got });
        }
    }

    /// The memcache: the pages no hostile call reaches and the ones they may
    /// take back.
    fn start(&mut self) {
        for (first, count) in [(CORE_MEMCACHE, CORE_MEMCACHE_PAGES), (HOSTILE_MEMCACHE, HOSTILE_MEMCACHE_PAGES)] {
            let page = self.model.page(first);
            if self.issue(HostCall::DonateHyp, [page, count, 0, 0, 0, 0]).is_none_or(|r| r[0] != 0) {
                self.fail(Failure::Access { what: "donating the memcache", address: page, refused: true });
            }
        }
    }

    /// A VM of ours, or the handle of something else: forged, stale, another
    /// CPU's VM (only for calls that change nothing, `read_only`).
    fn handle(&mut self, rng: &mut Rng, read_only: bool) -> u64 {
        let live = self.model.vms[rng.below(SLOTS as u64) as usize].map_or(0, |v| v.handle);
        let stale = self.model.stale_handle(rng.next());
        // The next slot: another VM of ours, none, or (with several CPUs)
        // perhaps another CPU's.
        let next = if self.model.multi && !read_only { stale } else { live + 1 };
        let options = [live, live, live, live ^ 1 << 32, next, 0, u64::MAX, rng.state(), stale];
        rng.pick(&options)
    }

    fn address(&mut self, rng: &mut Rng) -> u64 {
        let scratch = self.model.page(rng.below(HOSTILE_PAGES));
        let shared = self.model.shared.map_or(scratch, |s| s + rng.below(HOSTILE_PAGES) * PAGE);
        let hyp = self.platform.hyp_regions().first().map_or(0, |r| r.0);
        let options = [
            scratch,
            scratch,
            scratch,
            scratch,
            self.model.page(HOSTILE_PAGES - 1),
            hyp,
            self.platform.uart_base as u64,
            0,
            self.platform.ram_end,
            scratch + 8,
            !0xfff,
            self.model.page(HOSTILE_MEMCACHE),
            rng.state(),
            shared,
            shared,
        ];
        rng.pick(&options)
    }

    fn count(rng: &mut Rng) -> u64 {
        rng.pick(&[1, 1, 2, 0, 511, 512, 513, u64::MAX / 4096 + 1])
    }

    /// One call (or a few, for lifecycle work) of a random kind.
    fn one(&mut self, rng: &mut Rng) {
        let kind = rng.below(20);
        self.kind = kind;
        match kind {
            // Legitimate-looking lifecycle work.
            0 | 1 => {
                let slot = rng.below(SLOTS as u64) as usize;
                if self.model.vms[slot].is_none() {
                    let protected = rng.below(2) == 0;
                    let vcpus = 1 + rng.below(2);
                    let args = [u64::from(protected), vcpus, 0, 0, 0, 0];
                    if let Some([0, handle, _, _]) = self.issue(HostCall::VmCreate, args) {
                        if self.model.vms.iter().flatten().any(|v| v.handle == handle) {
                            self.fail(Failure::HandleTwice { handle });
                        }
                        self.model.created(slot, handle, protected, vcpus);
                        self.stats.created += 1;
                    }
                }
            }
            2 => {
                let slot = rng.below(SLOTS as u64) as usize;
                let Some(vm) = self.model.vms[slot] else {
                    return;
                };
                let code = CODE_PAGES + slot as u64;
                if vm.state != VmState::Alive
                    || vm.pa_at(GUEST_ENTRY).is_some()
                    || self.model.page_state(code) != Page::Host
                {
                    return;
                }
                // The VMs' own pages, which no hostile call reaches.
                let pa = self.model.page(code);
                if probe_refused(pa) {
                    self.fail(Failure::Access { what: "the VMs' own code page", address: pa, refused: true });
                    return;
                }
                // The page is this CPU's and nobody else's now (the model says Host).
                guests::load(pa, guests::bench());
                if let Some([0, ..]) = self.issue(HostCall::VmMap, [vm.handle, pa, GUEST_ENTRY, 1, 0, 0]) {
                    self.issue(HostCall::VcpuInit, [vm.handle, 0, GUEST_ENTRY, 2, 0, 0]);
                }
            }
            3 => {
                let slot = rng.below(SLOTS as u64) as usize;
                if let Some(vm) = self.model.vms[slot] {
                    let vcpu = rng.pick(&[0, 0, 1, 7, 8, u64::MAX]);
                    // A tick that came while the host ran is the host's: taken
                    // now, it does not end the guest's run at once.
                    gic::take_pending_interrupts();
                    self.issue(HostCall::VcpuRun, [vm.handle, vcpu, rng.next(), 0, 0, 0]);
                    gic::take_pending_interrupts();
                    self.issue(HostCall::VmInfo, [vm.handle, 0, 0, 0, 0, 0]);
                }
            }
            4 => {
                // Teardown, and every page of a protected VM back.
                let slot = rng.below(SLOTS as u64) as usize;
                self.tear_down(slot);
            }
            // Hostile arguments to every call.
            5..=8 => {
                let call = [HostCall::ShareHyp, HostCall::UnshareHyp, HostCall::DonateHyp, HostCall::ReclaimHyp]
                    [kind as usize - 5];
                let (address, count) = (self.address(rng), Self::count(rng));
                self.issue(call, [address, count, 0, 0, 0, 0]);
            }
            9 => {
                // Half the time a map that may well work (a VM of ours, a page
                // of ours), so that VMs come to hold hostile pages, which the
                // host then takes back by force (kind 12), which poisons their
                // IPAs, which must never be mapped again.
                let plausible = rng.below(2) == 0;
                let live = self.model.vms[rng.below(SLOTS as u64) as usize].map(|v| v.handle);
                let handle = match live {
                    Some(live) if plausible => live,
                    _ => self.handle(rng, false),
                };
                // Also an IPA the host took back from that VM while it ran:
                // poisoned, never to be mapped again.
                let poisoned = self.model.vm(handle).and_then(|v| v.poisoned().first().copied());
                let options = [
                    HOSTILE_IPAS[0],
                    HOSTILE_IPAS[1],
                    HOSTILE_IPAS[2],
                    HOSTILE_IPAS[3],
                    GUEST_ENTRY + 8,
                    1 << 48,
                    !0xfff,
                    poisoned.unwrap_or(HOSTILE_IPAS[1]),
                ];
                let ipa = match poisoned {
                    Some(poisoned) if plausible && rng.below(2) == 0 => poisoned,
                    _ if plausible => rng.pick(&options[..4]),
                    _ => rng.pick(&options),
                };
                let pages =
                    if plausible { 1 + rng.below(2) } else { rng.pick(&[1, 1, 2, 0, 513, u64::MAX / 4096 + 1]) };
                let address = match self.model.host_page(rng.below(HOSTILE_PAGES)) {
                    Some(page) if plausible => page,
                    _ => self.address(rng),
                };
                self.issue(HostCall::VmMap, [handle, address, ipa, pages, 0, 0]);
            }
            10 => {
                let handle = self.handle(rng, false);
                let vcpu = rng.pick(&[0, 1, 8, u64::MAX]);
                self.issue(HostCall::VcpuInit, [handle, vcpu, rng.next(), rng.next(), 0, 0]);
            }
            11 => {
                let reg = rng.pick(&[0, 30, 31, 32, 33, 34, u64::MAX]);
                let handle = self.handle(rng, true);
                let vcpu = rng.pick(&[0, 1, 9]);
                self.issue(HostCall::VcpuGetReg, [handle, vcpu, reg, 0, 0, 0]);
                let handle = self.handle(rng, false);
                self.issue(HostCall::VcpuSetReg, [handle, 0, reg, rng.next(), 0, 0]);
            }
            12 => {
                let handle = self.handle(rng, true);
                self.issue(HostCall::VmInfo, [handle, 0, 0, 0, 0, 0]);
                let plausible = rng.below(2) == 0;
                // A VM of ours holding a page a hostile map gave it, if any.
                let first = rng.below(SLOTS as u64) as usize;
                let holder = (0..SLOTS).map(|i| (first + i) % SLOTS).find_map(|slot| {
                    self.model.vms[slot].filter(|v| v.maps().iter().any(|m| m.0 != GUEST_ENTRY)).map(|v| v.handle)
                });
                let handle = match holder {
                    Some(holder) if plausible => holder,
                    _ => self.handle(rng, false),
                };
                // A page the hostile maps gave that VM (never its code at
                // GUEST_ENTRY: kind 4 takes that back): taken back by force
                // while it is alive.
                let mapped =
                    self.model.vm(handle).and_then(|v| v.maps().iter().map(|m| m.0).find(|&ipa| ipa != GUEST_ENTRY));
                let options =
                    [GUEST_ENTRY + 0x1000, GUEST_ENTRY + 8, !0xfff, 0, mapped.unwrap_or(GUEST_ENTRY + 0x1000)];
                let ipa = if plausible { options[4] } else { rng.pick(&options) };
                let count = if plausible { 1 } else { Self::count(rng) };
                self.issue(HostCall::VmReclaim, [handle, ipa, count, 0, 0, 0]);
            }
            13 => {
                // Teardown of forged and stale handles (ours go through kind 4).
                let handle = self.handle(rng, false);
                if !self.model.vms.iter().flatten().any(|v| v.handle == handle) {
                    self.issue(HostCall::VmTeardown, [handle, 0, 0, 0, 0, 0]);
                }
            }
            14 => self.random_function(rng),
            15 => {
                // Interrupts for live, stale and forged VMs, good and bad INTIDs.
                let handle = self.handle(rng, false);
                let vcpu = rng.pick(&[0, 0, 1, 8, u64::MAX]);
                let options = [0, 27, 40, 95, 96, 287, 288, 1019, 1020, u64::from(u32::MAX), rng.state()];
                let intid = rng.pick(&options);
                self.issue(HostCall::VcpuInjectIrq, [handle, vcpu, intid, 0, 0, 0]);
                // And the IRQ line of boards without a GIC (refused with one).
                let level = rng.pick(&[0, 1, 2, u64::MAX]);
                self.issue(HostCall::VcpuSetIrqLine, [handle, vcpu, level, 0, 0, 0]);
                // SPI lines driven as levels (SGIs and PPIs refused).
                self.issue(HostCall::VmSetSpiLevel, [handle, vcpu, intid, level, 0, 0]);
                // The GIC moved: good and bad windows, before and after a run
                // (also over the IPAs the host may have taken back by force).
                let places =
                    [0x3fff_0000, 0x3ffd_0000, 0x0800_0000, 0x1000, !0xffff, 0x1_0000, GUEST_ENTRY, rng.state()];
                let (distributor, second) = (rng.pick(&places), rng.pick(&places));
                self.issue(HostCall::VmSetGic, [handle, distributor, second, 0, 0, 0]);
            }
            16 => {
                // Device registers that would make a bus master or the GIC write
                // memory (the ITS, the LPI tables, fw_cfg DMA, virtio): each
                // write must be refused.
                let (registers, count) = self.device_registers;
                if let Some(&(register, narrow)) = registers[..count].get(rng.below(count.max(1) as u64) as usize) {
                    let value = self.address(rng) | rng.pick(&[0, 1, 1 << 63, 0xfff]);
                    let refused = if narrow {
                        // GICR_CTLR: only a write that sets EnableLPIs is refused
                        // (the SMMU's 32-bit registers are refused whatever).
                        probe::write32_refused(register, value as u32 | 1)
                    } else {
                        probe::write_refused(register, value)
                    };
                    if !refused {
                        self.fail(Failure::Access { what: "device register write", address: register, refused });
                    }
                }
            }
            17 => self.probe(rng),
            18 => self.set_up_sharing_guest(rng),
            _ => self.aim_at_sharing_page(rng),
        }
    }

    /// A VM of ours gets the sharing guest: its code, and a hostile page of
    /// the window (marked) as its data page, which the guest shares, shares
    /// and unshares, or relinquishes before it turns its VM off. Then the
    /// host reads and writes the page: as it left it while the guest shares
    /// it (or when its VM is not protected, which refuses the guest's call),
    /// refused once the guest took it back, zero (and the host's) once the
    /// guest gave it up; and the VM holds one page less then.
    fn set_up_sharing_guest(&mut self, rng: &mut Rng) {
        let slot = rng.below(SLOTS as u64) as usize;
        let Some(vm) = self.model.vms[slot] else {
            return;
        };
        let code = CODE_PAGES + slot as u64;
        if vm.state != VmState::Alive
            || !vm.room_at(GUEST_ENTRY, 2)
            || !vm.room_at(SHARING_DATA, 2)
            || self.model.page_state(code) != Page::Host
        {
            return;
        }
        let Some(data) = self.model.host_page(rng.below(HOSTILE_PAGES)) else {
            return;
        };
        let pa = self.model.page(code);
        let mark = SHARING_MARK | data;
        // Both are this CPU's and nobody else's now (the model says Host).
        if probe_refused(pa) || probe::write_refused(data, mark) {
            self.fail(Failure::Access {
                what: "the sharing guest's pages, still the host's",
                address: data,
                refused: true,
            });
            return;
        }
        guests::load(pa, guests::share());
        let sharing = rng.pick(&Sharing::ALL);
        let handle = vm.handle;
        let worked = |answer: Option<[u64; 4]>| answer.is_some_and(|r| r[0] == 0);
        if !worked(self.issue(HostCall::VmMap, [handle, pa, GUEST_ENTRY, 1, 0, 0])) {
            return;
        }
        self.model.loaded_sharing_guest(slot);
        if !worked(self.issue(HostCall::VmMap, [handle, data, SHARING_DATA, 1, 0, 0]))
            || !worked(self.issue(HostCall::VcpuInit, [handle, 0, GUEST_ENTRY, sharing.arg(), 0, 0]))
        {
            return;
        }
        // Run until the guest turns its VM off (the model then knows what it did).
        let mut off = false;
        for _ in 0..SHARING_RUNS {
            gic::take_pending_interrupts();
            let got = self.issue(HostCall::VcpuRun, [handle, 0, 0, 0, 0, 0]);
            gic::take_pending_interrupts();
            match got {
                Some(r) if r[0] == 0 => {
                    if Exit::decode([r[1], r[2], r[3]]) == Some(Exit::SystemOff) {
                        off = true;
                        break;
                    }
                }
                _ => return,
            }
        }
        if !off {
            self.fail(Failure::SharingUnfinished { handle });
            return;
        }
        let (read, writable) = match (vm.protected, sharing) {
            (false, _) | (true, Sharing::Share) => (Some(mark), true),
            (true, Sharing::ShareUnshare) => (None, false),
            (true, Sharing::Relinquish) => (Some(0), true),
        };
        let got = probe::read(data);
        if got != read {
            self.fail(Failure::Content {
                what: "the sharing guest's data page",
                address: data,
                read: got,
                expected: read,
            });
            return;
        }
        if vm.protected && sharing == Sharing::Relinquish {
            self.zeroed(data, "a page a guest relinquished");
        }
        if self.failure.is_none() && probe::write_refused(data + 8, !mark) == writable {
            let what = "the host's write of the sharing guest's data page";
            self.fail(Failure::Access { what, address: data + 8, refused: writable });
            return;
        }
        // The VM holds one page less after a relinquish.
        self.issue(HostCall::VmInfo, [handle, 0, 0, 0, 0, 0]);
        if vm.protected {
            self.stats.sharing[Sharing::ALL.iter().position(|&s| s == sharing).unwrap_or(0)] += 1;
        } else {
            self.stats.sharing_refused += 1;
        }
    }

    /// A hostile call at a page a sharing guest changed, whatever the page is
    /// now (the VM's and the host's, the VM's alone, the host's, or since
    /// lent, donated or given to a VM): lent to the hyp or back, donated or
    /// reclaimed, a word of it exchanged, mapped into a VM of ours, taken
    /// back from the VM holding it (by force while it lives), or that VM torn
    /// down. Then the host reads it, refused exactly when the model says.
    fn aim_at_sharing_page(&mut self, rng: &mut Rng) {
        let Some(pa) = self.model.sharing_page(rng.next()) else {
            return;
        };
        let holder = self.model.holder_of(pa).and_then(|(slot, ipa)| self.model.vms[slot].map(|v| (v.handle, ipa)));
        let any = self.model.vms[rng.below(SLOTS as u64) as usize].map(|v| v.handle);
        let before = self.stats.by_call;
        match rng.below(8) {
            kind @ 0..=3 => {
                let call = [HostCall::ShareHyp, HostCall::UnshareHyp, HostCall::DonateHyp, HostCall::ReclaimHyp]
                    [kind as usize];
                self.issue(call, [pa, rng.pick(&[1, 1, 1, 2]), 0, 0, 0, 0]);
            }
            4 => {
                let word = pa + 8 * rng.below(PAGE / 8);
                self.issue(HostCall::DebugExchange, [word, rng.next(), 0, 0, 0, 0]);
            }
            5 => {
                // Into any VM of ours (its holder's too), at the IPA a guest
                // gave it up at among others.
                if let Some(handle) = any {
                    let ipa = rng.pick(&[SHARING_DATA, HOSTILE_IPAS[0], HOSTILE_IPAS[2]]);
                    self.issue(HostCall::VmMap, [handle, pa, ipa, 1, 0, 0]);
                }
            }
            6 => match (holder, any) {
                (Some((handle, ipa)), _) => {
                    self.issue(HostCall::VmReclaim, [handle, ipa, 1, 0, 0, 0]);
                }
                // An IPA a guest relinquished: nothing there.
                (None, Some(handle)) => {
                    self.issue(HostCall::VmReclaim, [handle, SHARING_DATA, 1, 0, 0, 0]);
                }
                (None, None) => {}
            },
            _ => {
                if let Some((handle, _)) = holder {
                    self.issue(HostCall::VmTeardown, [handle, 0, 0, 0, 0, 0]);
                }
            }
        }
        for ((aimed, after), before) in self.stats.aimed.iter_mut().zip(&self.stats.by_call).zip(&before) {
            aimed[0] += after[0] - before[0];
            aimed[1] += after[1] - before[1];
        }
        if let Some(must) = self.model.read_refused(pa) {
            self.stats.probes += 1;
            let refused = probe_refused(pa);
            if refused != must {
                self.fail(Failure::Access { what: "read of a page a guest shared or gave up", address: pa, refused });
            }
        }
    }

    /// The host reads every page its protected VMs own (each must be
    /// refused), and a page of its window (refused exactly when donated or a
    /// protected VM's).
    fn probe(&mut self, rng: &mut Rng) {
        for vm in self.model.vms.iter().flatten().filter(|v| v.protected) {
            for &(_, pa) in vm.maps() {
                self.stats.probes += 1;
                // Refused, but for the page it shares with the host.
                let must = vm.host_borrowed != Some(pa);
                if probe_refused(pa) != must {
                    *self.failure = Some((
                        self.call,
                        self.kind,
                        Failure::Access { what: "read of a protected VM's page", address: pa, refused: !must },
                    ));
                    return;
                }
            }
        }
        let pa = self.model.page(rng.below(CODE_PAGES + SLOTS as u64));
        if let Some(must) = self.model.read_refused(pa) {
            self.stats.probes += 1;
            let refused = probe_refused(pa);
            if refused != must {
                self.fail(Failure::Access { what: "read of a page of its window", address: pa, refused });
            }
        }
    }

    /// Every function ID of the vendor range and around it, with random
    /// arguments: a host call answers as the model says (a call that could
    /// create or change something the model would not know is not made);
    /// anything else is `NOT_SUPPORTED`.
    fn random_function(&mut self, rng: &mut Rng) {
        let options = [
            u64::from(vendor_hyp_fn(HOST_CALL_BASE + rng.below(0x100) as u16)),
            u64::from(vendor_hyp_fn(rng.below(0x10000) as u16)),
            0xC500_0000 | rng.below(0x10000),
            0x8600_0000 | rng.below(0x10000),
            rng.next(),
        ];
        let id = rng.pick(&options) as u32;
        let args: [u64; 6] = core::array::from_fn(|_| rng.next());
        if let Some(call) = HostCall::from_function_id(u64::from(id)) {
            let mut expect = self.model.expect(call, args);
            let changes = !matches!(
                call,
                HostCall::Version
                    | HostCall::Features
                    | HostCall::VmInfo
                    | HostCall::VcpuGetReg
                    | HostCall::DebugExchange
            );
            // The invariant check takes the log of what calls touched: only
            // the fuzzer's own checks may.
            expect.skip |= call == HostCall::DebugCheckInvariants || (changes && expect.answers.has_ok());
            self.issue_expecting(call, args, expect);
            return;
        }
        // PSCI and SMCCC calls (owners 0 and 4) go to the hyp's firmware
        // relay: CPU_OFF, SYSTEM_OFF and the like are not hostile calls.
        let owner = (id >> 24) & 0x3f;
        if (owner == 0 || owner == 4) && id & 0xffff < 0x40 {
            self.stats.skipped += 1;
            return;
        }
        in_flight(self.cpu, id, &args);
        let got = raw_call(id, args);
        self.stats.answers += 1;
        if got[0] as i64 != HypError::NotSupported.code() {
            self.fail(Failure::Answer {
                function: id,
                args,
                got,
                expected: Answers::err(HypError::NotSupported),
                ok: OkCheck::Any,
            });
        }
    }

    /// Tears the VM in `slot` down (unless it is already) and takes every
    /// page of it back: afterwards the slot is free.
    fn tear_down(&mut self, slot: usize) {
        let Some(vm) = self.model.vms[slot] else {
            return;
        };
        if vm.state != VmState::TornDown {
            self.issue(HostCall::VmTeardown, [vm.handle, 0, 0, 0, 0, 0]);
        }
        for _ in 0..8 {
            let Some(vm) = self.model.vms[slot] else {
                return;
            };
            let Some(&(ipa, _)) = vm.maps().first() else {
                break;
            };
            self.issue(HostCall::VmReclaim, [vm.handle, ipa, 1, 0, 0, 0]);
        }
        if self.model.vms[slot].is_some() && self.failure.is_none() {
            let handle = self.model.vms[slot].map_or(0, |v| v.handle);
            self.fail(Failure::Access {
                what: "a torn-down VM that kept its slot: handle",
                address: handle,
                refused: true,
            });
        }
    }

    /// The end of a CPU's run: its VMs gone, its lent pages back (donated
    /// ones wait for the boot CPU, when no VM of any CPU can use them).
    fn clean_up(&mut self) {
        for slot in 0..SLOTS {
            self.tear_down(slot);
        }
        for i in 0..WINDOW_PAGES {
            if self.model.page_state(i) == Page::Shared {
                let page = self.model.page(i);
                self.issue(HostCall::UnshareHyp, [page, 1, 0, 0, 0, 0]);
            }
        }
    }
}

/// Reads `pa` and reports whether the hyp refused it (without logging).
fn probe_refused(pa: u64) -> bool {
    probe::read(pa).is_none()
}
