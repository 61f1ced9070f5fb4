//! Conformance checks of self-hosted debug in guests (issue 20), in both VM
//! types: breakpoints, watchpoints and software step taken at the guest's
//! own EL1 with the syndromes and addresses the architecture gives, the
//! breakpoint and watchpoint registers the ID register announces (no more,
//! no fewer) keeping what the guest wrote, and the host's own debug
//! registers untouched by a guest's. The guest (`guest_debug`, debug.S)
//! does one command at a time for the host and reports each debug exception
//! it takes (ESR_EL1, FAR_EL1 for a watchpoint, ELR_EL1) with MMIO stores;
//! with a second CPU, every `VCPU_RUN` goes to the other CPU than the one
//! before, so that the vCPU's debug state moves between physical CPUs
//! between any two exits (between the steps of a single-step too).
//!
//! The host shim keeps its own breakpoint 0 and watchpoint 0 enabled on the
//! guest's breakpoint target and data word throughout (its MDSCR_EL1 leaves
//! its debug exceptions off, so they never fire in the shim): they must not
//! fire in the guest either, and must read back as the shim set them after
//! every guest run, of a protected guest too.

use crate::guests::{self, load, DebugGuestLayout, GUEST_UART, GUEST_UART_STATUS, STATUS_ANSWER};
use crate::harness::arch::{debug_point0, set_debug_point0};
use crate::harness::cpus::{own_index, start_second_cpu, turn_off_second_cpu};
use crate::harness::platform::HostPlatform;
use crate::harness::remote_guest::{run_on_other_cpu, Failure, ARG, CMD, FAULT, MAX_RUNS, RESULT};
use crate::harness::report::check;
use crate::harness::vms::{create_ready, run_vcpu, tear_down_and_reclaim};
use hyp_abi::{Exit, VmType};

/// The guest's debug-exception reports (`DEBUG_*` in debug.S); its command
/// registers and fault report are `remote_guest`'s.
const REPORT_ESR: u64 = GUEST_UART + 0x80;
const REPORT_FAR: u64 = GUEST_UART + 0x88;
const REPORT_ELR: u64 = GUEST_UART + 0x90;
const SCRATCH: u64 = GUEST_UART + 0x98;
/// Debug exceptions one command may report.
const MAX_REPORTS: usize = 12;

/// MDSCR_EL1.MDE (15) and KDE (13): breakpoints, watchpoints and step taken at EL1.
const MDSCR_MDE_KDE: u64 = 1 << 15 | 1 << 13;
/// DBGBCR<n>_EL1: E, PMC 0b11 (EL1 and EL0), BAS 0b1111 (an A64 instruction).
const BCR_ENABLED: u64 = 1 | 0b11 << 1 | 0xf << 5;
/// DBGWCR<n>_EL1: E, PAC 0b11 (EL1 and EL0), LSC (load 0b01, store 0b10),
/// BAS 0xff (eight bytes).
const WCR_STORE: u64 = 1 | 0b11 << 1 | 0b10 << 3 | 0xff << 5;
const WCR_LOAD: u64 = 1 | 0b11 << 1 | 0b01 << 3 | 0xff << 5;
/// The shim's own breakpoint 0 and watchpoint 0, enabled on the guest's
/// breakpoint target and data word (set in [`run_all`]).
fn host_points(layout: &DebugGuestLayout) -> [u64; 4] {
    [layout.bp_target, BCR_ENABLED, layout.data, WCR_STORE | WCR_LOAD]
}

/// The guest's operations (debug.S).
#[derive(Clone, Copy, Debug)]
enum Op {
    SystemOff = 0,
    Write = 1,
    Read = 2,
    Count = 3,
    Mdscr = 4,
    CallBreakpointTarget = 5,
    Store = 6,
    Load = 7,
    Step = 8,
    Dfr0 = 9,
}

/// The kinds of debug register (`arg` of Write and Read: kind << 4 | n).
#[derive(Clone, Copy)]
enum Kind {
    Bvr = 0,
    Bcr = 1,
    Wvr = 2,
    Wcr = 3,
}

/// One debug exception the guest reported: ESR_EL1, FAR_EL1 (watchpoints
/// only), ELR_EL1.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Report {
    esr: u64,
    far: Option<u64>,
    elr: u64,
}

/// The debug exceptions of one command.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Reports {
    taken: [Report; MAX_REPORTS],
    count: usize,
}

impl Reports {
    fn as_slice(&self) -> &[Report] {
        &self.taken[..self.count]
    }
}

/// The debug guest's VM (one vCPU), run on this CPU and another in turn.
struct DebugVm {
    handle: u64,
    own: usize,
    other: Option<usize>,
    runs: usize,
    /// The shim's own points, checked after every command.
    host_points: [u64; 4],
    /// Commands after which the shim's points read back otherwise.
    host_points_changed: usize,
}

impl DebugVm {
    fn start(ty: VmType, pa: u64, own: usize, other: Option<usize>, host_points: [u64; 4]) -> Result<DebugVm, Failure> {
        // (Again for each VM: a protected VM's page comes back zeroed.)
        load(pa, guests::debug());
        let handle = create_ready(ty, 1, pa, 1, 0).map_err(Failure::Run)?;
        Ok(DebugVm { handle, own, other, runs: 0, host_points, host_points_changed: 0 })
    }

    /// One `VCPU_RUN` (answering a load with `value`), on the CPU whose turn it is.
    fn run(&mut self, value: u64) -> Result<Exit, Failure> {
        self.runs += 1;
        let cpu = match self.other {
            Some(other) if self.runs.is_multiple_of(2) => other,
            _ => self.own,
        };
        if cpu == self.own {
            return run_vcpu(self.handle, 0, value).map_err(Failure::Run);
        }
        run_on_other_cpu(cpu, self.handle, 0, value)
    }

    /// `op` with `arg` (bits 63:32 of the command) and `value`: its result
    /// and the debug exceptions the guest reported on the way.
    fn command(&mut self, op: Op, arg: u64, value: u64) -> Result<(u64, Reports), Failure> {
        let mut reports = Reports::default();
        let mut answer = 0;
        let mut sent = false;
        for _ in 0..MAX_RUNS {
            let exit = self.run(answer)?;
            if debug_point0() != self.host_points {
                self.host_points_changed += 1;
            }
            answer = 0;
            match exit {
                Exit::Mmio { ipa: CMD, write: false, .. } if !sent => {
                    answer = op as u64 | arg << 32;
                    sent = true;
                }
                Exit::Mmio { ipa: ARG, write: false, .. } => answer = value,
                Exit::Mmio { ipa: GUEST_UART_STATUS, write: false, .. } => answer = STATUS_ANSWER,
                Exit::Mmio { ipa: RESULT, write: true, value: result, .. } => return Ok((result, reports)),
                Exit::Mmio { ipa: FAULT, write: true, value: esr, .. } => return Err(Failure::Fault(esr)),
                Exit::Mmio { ipa: REPORT_ESR, write: true, value: esr, .. } => {
                    let slot = reports.taken.get_mut(reports.count).ok_or(Failure::Lost)?;
                    *slot = Report { esr, far: None, elr: 0 };
                    reports.count += 1;
                }
                Exit::Mmio { ipa: REPORT_FAR, write: true, value: far, .. } if reports.count > 0 => {
                    reports.taken[reports.count - 1].far = Some(far);
                }
                Exit::Mmio { ipa: REPORT_ELR, write: true, value: elr, .. } if reports.count > 0 => {
                    reports.taken[reports.count - 1].elr = elr;
                }
                Exit::Mmio { ipa: SCRATCH, write: true, .. } | Exit::Interrupted | Exit::Wake { .. } => {}
                other => return Err(Failure::Unexpected(other)),
            }
        }
        Err(Failure::Lost)
    }

    /// A command whose result is all that counts (no debug exception).
    fn result(&mut self, op: Op, arg: u64, value: u64) -> Result<u64, Failure> {
        match self.command(op, arg, value)? {
            (result, reports) if reports.count == 0 => Ok(result),
            (_, reports) => Err(Failure::Fault(reports.taken[0].esr)),
        }
    }

    fn write(&mut self, kind: Kind, n: usize, value: u64) -> Result<(), Failure> {
        self.result(Op::Write, (kind as u64) << 4 | n as u64, value).map(|_| ())
    }

    fn read(&mut self, kind: Kind, n: usize) -> Result<u64, Failure> {
        self.result(Op::Read, (kind as u64) << 4 | n as u64, 0)
    }

    /// Turns the VM off (SYSTEM_OFF), tears it down and takes its page back.
    fn finish(mut self, ty: VmType, what: &str) -> bool {
        let end = (|| {
            let mut answer = 0;
            for _ in 0..MAX_RUNS {
                match self.run(answer)? {
                    Exit::Mmio { ipa: CMD, write: false, .. } => answer = Op::SystemOff as u64,
                    Exit::Mmio { write: false, .. } | Exit::Interrupted => answer = 0,
                    exit => return Ok(exit),
                }
            }
            Err(Failure::Lost)
        })();
        let passed = check!(end == Ok(Exit::SystemOff), "the {what} ends with SYSTEM_OFF ({end:?})");
        passed & tear_down_and_reclaim(self.handle, ty, what)
    }
}

/// Runs the debug conformance checks with the guest's code in the page at
/// `pa`; true when all passed.
pub fn run_all(platform: &HostPlatform, pa: u64) -> bool {
    let layout = guests::debug_layout();
    let own = own_index(platform);
    let other = start_second_cpu(platform);
    let steps = if other.is_some() { "the vCPU on another CPU at every run" } else { "one CPU" };
    let saved = debug_point0();
    let points = host_points(&layout);
    set_debug_point0(points);
    let mut passed = true;
    for ty in [VmType::NonProtected, VmType::Protected] {
        passed &= debug_checks(ty, pa, own, other.map(|(cpu, ..)| cpu), &layout, points, steps);
    }
    set_debug_point0(saved);
    passed & turn_off_second_cpu(platform, other, "debug conformance")
}

/// (ID_AA64DFR0_EL1's breakpoints, watchpoints, context comparators), and
/// the breakpoints and watchpoints that exist (read without UNDEFINED).
type Counts = ((u64, u64, u64), (u64, u64));

/// What the breakpoint check sees: MDSCR_EL1 read back; (ESR_EL1, ELR_EL1
/// less the target's address, FAR_EL1 if reported, the function's result);
/// the result of the same call with the guest's breakpoint disabled.
type Breakpoint = (u64, (u64, u64, Option<u64>, u64), u64);

/// The checks of one VM type, each on its own line.
fn debug_checks(
    ty: VmType,
    pa: u64,
    own: usize,
    other: Option<usize>,
    layout: &DebugGuestLayout,
    points: [u64; 4],
    steps: &str,
) -> bool {
    let Ok(mut vm) =
        DebugVm::start(ty, pa, own, other, points).map_err(|f| check!(false, "set up the debug VM ({ty:?}): {f:?}"))
    else {
        return false;
    };

    // Debug off (MDSCR_EL1 0): each run loads the guest's registers at its
    // first access only.
    let counts = (|| -> Result<Counts, Failure> {
        vm.result(Op::Mdscr, 0, 0)?;
        let dfr0 = vm.result(Op::Dfr0, 0, 0)?;
        let field = |shift: u32| (dfr0 >> shift & 0xf) + 1;
        let present = vm.result(Op::Count, 0, 0)?;
        Ok(((field(12), field(20), field(28)), (present & 0xff, present >> 8 & 0xff)))
    })();
    let mut passed = check!(
        matches!(counts, Ok(((b, w, _), (pb, pw))) if b == pb && w == pw),
        "debug registers ({ty:?}, {steps}): ID_AA64DFR0_EL1's breakpoints, watchpoints and context comparators, then the DBGBVR<n>_EL1 and DBGWVR<n>_EL1 (n < 16) that exist: {counts:?}"
    );
    let (breakpoints, watchpoints) = match counts {
        Ok((_, (b, w))) => (b as usize, w as usize),
        Err(_) => (0, 0),
    };

    // Every register of every point written, then read back (each on
    // another CPU than the one before).
    let bvr = |n: usize| 0x1000_0000 | (n as u64) << 8;
    let wvr = |n: usize| 0x2000_0000 | (n as u64) << 8;
    let (bcr, wcr) = (BCR_ENABLED & !1, WCR_STORE & !1);
    let kept = (|| -> Result<(usize, usize), Failure> {
        for n in 0..breakpoints {
            vm.write(Kind::Bvr, n, bvr(n))?;
            vm.write(Kind::Bcr, n, bcr)?;
        }
        for n in 0..watchpoints {
            vm.write(Kind::Wvr, n, wvr(n))?;
            vm.write(Kind::Wcr, n, wcr)?;
        }
        let mut kept = 0;
        for n in 0..breakpoints {
            kept += usize::from(vm.read(Kind::Bvr, n)? == bvr(n)) + usize::from(vm.read(Kind::Bcr, n)? == bcr);
        }
        for n in 0..watchpoints {
            kept += usize::from(vm.read(Kind::Wvr, n)? == wvr(n)) + usize::from(vm.read(Kind::Wcr, n)? == wcr);
        }
        Ok((kept, 2 * (breakpoints + watchpoints)))
    })();
    passed &= check!(
        matches!(kept, Ok((k, all)) if k == all && all > 0),
        "debug registers ({ty:?}, {steps}): every DBGBVR, DBGBCR, DBGWVR, DBGWCR written, then read back as written: {kept:?}"
    );

    // Debug on: a breakpoint on debug_bp_target, taken at EL1 (EC 0x31);
    // the handler disables it and the function runs.
    let breakpoint = (|| -> Result<Breakpoint, Failure> {
        let mdscr = vm.result(Op::Mdscr, 0, MDSCR_MDE_KDE)?;
        // The shim's own breakpoint is on the target too, and never fires here.
        vm.write(Kind::Bcr, 0, 0)?;
        let undisturbed = vm.result(Op::CallBreakpointTarget, 0, 0)?;
        vm.write(Kind::Bvr, 0, layout.bp_target)?;
        vm.write(Kind::Bcr, 0, BCR_ENABLED)?;
        let (result, reports) = vm.command(Op::CallBreakpointTarget, 0, 0)?;
        let [taken] = reports.as_slice() else { return Err(Failure::Lost) };
        Ok((mdscr, (taken.esr, taken.elr.wrapping_sub(layout.bp_target), taken.far, result), undisturbed))
    })();
    passed &= check!(
        breakpoint == Ok((MDSCR_MDE_KDE, (0xc600_0022, 0, None, 0x42), 0x42)),
        "a breakpoint ({ty:?}, {steps}): MDSCR_EL1 with MDE and KDE, then (ESR_EL1, ELR_EL1 - the address, FAR_EL1, what the function returned after the handler disabled it), and the same call without it (the host's own breakpoint there does not fire): {breakpoint:x?}"
    );

    // Watchpoints on the data word: a store, then a load (EC 0x35, WnR).
    let watchpoints_taken = (|| -> Result<[(u64, Option<u64>, u64); 2], Failure> {
        let mut seen = [(0, None, 0); 2];
        for (slot, (wcr, op, at)) in
            seen.iter_mut().zip([(WCR_STORE, Op::Store, layout.store), (WCR_LOAD, Op::Load, layout.load)])
        {
            vm.write(Kind::Wvr, 0, layout.data)?;
            vm.write(Kind::Wcr, 0, wcr)?;
            let (result, reports) = vm.command(op, layout.data, 0x5a5a_1234)?;
            let [taken] = reports.as_slice() else { return Err(Failure::Lost) };
            *slot = (taken.esr, taken.far.map(|far| far.wrapping_sub(layout.data)), taken.elr.wrapping_sub(at));
            if matches!(op, Op::Load) && result != 0x5a5a_1234 {
                return Err(Failure::Fault(result));
            }
        }
        Ok(seen)
    })();
    passed &= check!(
        watchpoints_taken == Ok([(0xd600_0062, Some(0), 0), (0xd600_0022, Some(0), 0)]),
        "watchpoints ({ty:?}, {steps}): on a store, then on a load of the value stored: (ESR_EL1, FAR_EL1 - the data address, ELR_EL1 - the access's address) each: {watchpoints_taken:x?}"
    );

    // Software step from debug_step_target to debug_step_done.
    let stepped = (|| -> Result<(u64, [(u64, u64); 8]), Failure> {
        let (result, reports) = vm.command(Op::Step, 0, 0)?;
        let mut seen = [(0, 0); 8];
        if reports.count != seen.len() {
            return Err(Failure::Fault(reports.count as u64));
        }
        for (slot, taken) in seen.iter_mut().zip(reports.as_slice()) {
            *slot = (taken.esr, taken.elr.wrapping_sub(layout.step_target));
        }
        Ok((result, seen))
    })();
    let expected_steps = [
        (0xce00_0022 | 1 << 24, 4),
        (0xce00_0022, 8),
        (0xce00_0022 | 1 << 24, 12),
        (0xce00_0022, 16),
        (0xce00_0022 | 1 << 24, 20),
        (0xce00_0022 | 1 << 24, 24),
        (0xce00_0022, 28),
        (0xce00_0022 | 1 << 24, layout.step_done - layout.step_target),
    ];
    passed &= check!(
        stepped == Ok((u64::from(b'R'), expected_steps)),
        "software step ({ty:?}, {steps}): add, an MMIO load and an MMIO store (exits to the host), a PSCI call (answered in the hyp) among plain instructions: the load's value, then (ESR_EL1, ELR_EL1 - the first instruction) of each step: {stepped:x?}"
    );

    let changed = vm.host_points_changed;
    passed &= check!(
        changed == 0 && debug_point0() == points,
        "the host's own DBGBVR0, DBGBCR0, DBGWVR0, DBGWCR0 read back as the host set them after every run of the {ty:?} guest (runs after which they differed: {changed})"
    );
    passed & vm.finish(ty, "debug VM")
}
