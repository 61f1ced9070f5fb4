//! The host's checks of the hyp, in order: it runs at EL1, hypercalls round-trip,
//! unknown calls are refused, the refused PSCI calls stay refused, and reads of
//! hyp memory abort without harming anything.

use crate::arch::{probe_read, probe_write, ShimFrame};
use crate::hypercall;
use crate::platform::HostPlatform;
use crate::platform::MAX_CPUS;
use aarch64_cpu::registers::{CurrentEL, Readable, Writeable, ELR_EL1, ESR_EL1, FAR_EL1, MPIDR_EL1};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use hyp_abi::{HostCall, HypError, ABI_VERSION_MAJOR, ABI_VERSION_MINOR};

/// Per CPU (see [`probe_slot`]; the hostile host probes on every CPU at
/// once): set while a probe that may abort is in flight; the handler then skips it.
static PROBE_ARMED: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];
/// Per CPU: ESR_EL1 and FAR_EL1 of the last skipped abort (0: none).
static PROBE_ESR: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
static PROBE_FAR: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

/// This CPU's probe state: by MPIDR Aff0 (QEMU virt and the boards the shim
/// runs on number their CPUs from 0 there).
fn probe_slot() -> usize {
    (MPIDR_EL1.get() & 0xff) as usize % MAX_CPUS
}

/// EC of a data abort taken without a change of EL.
const EC_DATA_ABORT_SAME_EL: u64 = 0x25;
/// DFSC of a synchronous external abort.
const DFSC_SYNC_EXTERNAL: u64 = 0x10;

/// EL1 exception entry (from `vectors.S`).
#[no_mangle]
extern "C" fn shim_exception(_frame: &mut ShimFrame, kind: u64) {
    if kind == 1 {
        crate::gic::handle_irq();
        return;
    }
    let esr = ESR_EL1.get();
    let slot = probe_slot();
    if kind == 0 && (esr >> 26) == EC_DATA_ABORT_SAME_EL && PROBE_ARMED[slot].load(Ordering::Relaxed) {
        PROBE_ESR[slot].store(esr, Ordering::Relaxed);
        PROBE_FAR[slot].store(FAR_EL1.get(), Ordering::Relaxed);
        PROBE_ARMED[slot].store(false, Ordering::Relaxed);
        ELR_EL1.set(ELR_EL1.get() + 4);
        return;
    }
    log::error!(
        "unexpected exception (vector kind {kind}): ESR_EL1 {esr:#x}, ELR_EL1 {:#x}, FAR_EL1 {:#x}",
        ELR_EL1.get(),
        FAR_EL1.get()
    );
    crate::platform::fail_stop()
}

/// Set by every failed check, on any CPU, whatever its caller does with the
/// result: the run then ends as failed (plain stores only: the MMU is off).
static ANY_CHECK_FAILED: AtomicBool = AtomicBool::new(false);

/// Records a failed check (see [`check`]).
pub fn note_failure() {
    ANY_CHECK_FAILED.store(true, Ordering::Relaxed);
}

/// Whether any check failed so far.
pub fn any_failed() -> bool {
    ANY_CHECK_FAILED.load(Ordering::Relaxed)
}

/// Logs `ok: ...` or `FAILED: ...` and evaluates to whether the check held; a
/// failure also fails the run (see [`any_failed`]).
macro_rules! check {
    ($ok:expr, $($fmt:tt)*) => {{
        if $ok {
            log::info!("ok: {}", format_args!($($fmt)*));
            true
        } else {
            log::error!("FAILED: {}", format_args!($($fmt)*));
            $crate::checks::note_failure();
            false
        }
    }};
}
pub(crate) use check;

/// Whether the hyp answers the debug hypercalls (its FEATURES says so). A
/// production build does not: the checks that need them are then left out,
/// and [`check_debug_calls_refused`] checks that they are refused instead.
static DEBUG_CALLS: AtomicBool = AtomicBool::new(true);

/// Whether the hyp under test answers `DEBUG_CHECK_INVARIANTS` and `DEBUG_EXCHANGE`.
pub fn debug_calls() -> bool {
    DEBUG_CALLS.load(Ordering::Relaxed)
}

/// A production hyp refuses both debug calls with NOT_SUPPORTED, whatever
/// their arguments (here: an address in hyp memory for the exchange).
fn check_debug_calls_refused(hyp: u64) -> bool {
    let code = |call: HostCall, args: [u64; 6]| hypercall::raw_call(call.function_id(), args)[0] as i64;
    let invariants = code(HostCall::DebugCheckInvariants, [0; 6]);
    let exchange = code(HostCall::DebugExchange, [hyp, 0xbad, 0, 0, 0, 0]);
    let not_supported = HypError::NotSupported.code();
    check!(
        invariants == not_supported && exchange == not_supported,
        "production hyp: DEBUG_CHECK_INVARIANTS and DEBUG_EXCHANGE (at {hyp:#x}) refused: [{invariants}, {exchange}] (NOT_SUPPORTED is {not_supported})"
    )
}

/// A hypercall answers in x0..x3 and leaves x4..x30 as the host had them.
fn check_hypercall_preserves_registers() -> bool {
    let after = crate::arch::hvc_registers_after(HostCall::Version.function_id());
    let answered = after[..3] == [0, ABI_VERSION_MAJOR, ABI_VERSION_MINOR];
    let changed = (4..=30).find(|&n| after[n] != crate::arch::probe_pattern(n));
    check!(
        answered && changed.is_none(),
        "VERSION with x4..x30 patterned: answered {:x?}, first register changed {changed:?}",
        &after[..3]
    )
}

/// The host's ID registers come from the hyp (HCR_EL2.TID3): SVE hidden, and
/// the answer reaches whichever register the MRS names, x19..x28 included.
fn check_id_registers_read_through_the_hyp() -> bool {
    let [x2, x19, x28, x20] = crate::arch::id_register_reads();
    let sve = x2 >> 32 & 0xf;
    check!(
        x2 == x19 && x2 == x28 && x20 == crate::arch::probe_pattern(20) && sve == 0,
        "ID_AA64PFR0_EL1 read into x2, x19 and x28 alike ({x2:#x}, {x19:#x}, {x28:#x}), SVE {sve} (hidden), x20 kept"
    )
}

/// Runs every check; true when all passed.
pub fn run_all(platform: &HostPlatform) -> bool {
    // A production hyp (built without the debug calls) says so in FEATURES.
    let features = hypercall::features();
    let production = features == Ok(HostCall::features_bitmap(false));
    DEBUG_CALLS.store(!production, Ordering::Relaxed);
    if platform.fuzz_calls > 0 {
        return crate::fuzz::run(platform, platform.fuzz_calls, platform.fuzz_seed);
    }
    if platform.split_stress > 0 {
        return crate::split_stress::run(platform, platform.split_stress);
    }
    if let Some(ty) = platform.linux_guest {
        return crate::linux_guest::run(platform, ty);
    }
    if platform.console_attack {
        return crate::console_checks::run(platform);
    }
    let mut passed = true;
    let el = CurrentEL.read(CurrentEL::EL);
    passed &= check!(el == 1, "host shim running at EL{el}");

    let version = hypercall::version();
    passed &= check!(
        version == Ok((ABI_VERSION_MAJOR, ABI_VERSION_MINOR)),
        "hypercall round trip: VERSION returned {version:?}"
    );
    passed &= check!(
        features == Ok(HostCall::features_bitmap(!production)),
        "hypercall round trip: FEATURES returned {features:x?}"
    );
    if production {
        log::info!("production hyp: FEATURES shows no debug calls; the checks that need them are left out");
        passed &= check_debug_calls_refused(platform.hyp_regions().first().map_or(0, |r| r.0));
    }
    let unknown = hypercall::raw_call(hyp_abi::vendor_hyp_fn(0x1fff), [0; 6]);
    passed &= check!(
        unknown[0] as i64 == HypError::NotSupported.code(),
        "unknown hypercall 0x{:x} returned {}",
        hyp_abi::vendor_hyp_fn(0x1fff),
        unknown[0] as i64
    );
    passed &= check_hypercall_preserves_registers();
    passed &= check_id_registers_read_through_the_hyp();
    passed &= crate::leak_checks::run_all(platform);
    let own_mpidr = aarch64_cpu::registers::MPIDR_EL1.get() & 0xff_00ff_ffff;
    let cpu_on = platform.psci_call(smccc::psci::PSCI_CPU_ON_64, [own_mpidr, 0, 0])[0] as i64;
    passed &= if platform.psci {
        check!(cpu_on == -4, "PSCI CPU_ON of the running CPU: ALREADY_ON from the hyp ({cpu_on})")
    } else {
        check!(cpu_on == -1, "PSCI CPU_ON without PSCI firmware: NOT_SUPPORTED from the hyp ({cpu_on})")
    };
    passed &= check!(
        !platform.hyp_regions().is_empty(),
        "device tree carves out {} hyp region(s)",
        platform.hyp_regions().len()
    );
    passed &= crate::memory_checks::run_all(platform);
    passed &= crate::vm_checks::run_all(
        platform,
        platform.hyp_regions().first().map_or(0, |r| r.0),
        platform.vm_stress_rounds,
    );
    for &(base, size) in platform.hyp_regions() {
        for address in [base, base + size / 2, base + size - 8] {
            passed &= probe_hyp_memory(address, Access::Read);
        }
        passed &= probe_hyp_memory(base + size / 2, Access::Write);
    }
    passed
}

#[derive(Clone, Copy, PartialEq)]
pub enum Access {
    Read,
    Write,
}

/// ESR_EL1 WnR: the abort was caused by a write.
const ESR_WNR: u64 = 1 << 6;

/// Arms the handler to skip one data abort (for a probe that logs nothing).
pub fn arm_probe() {
    let slot = probe_slot();
    PROBE_ESR[slot].store(0, Ordering::Relaxed);
    PROBE_ARMED[slot].store(true, Ordering::Relaxed);
}

/// After an armed probe: whether it was refused with a synchronous external abort.
pub fn probe_was_refused() -> bool {
    let slot = probe_slot();
    let still_armed = PROBE_ARMED[slot].load(Ordering::Relaxed);
    PROBE_ARMED[slot].store(false, Ordering::Relaxed);
    !still_armed && PROBE_ESR[slot].load(Ordering::Relaxed) & 0x3f == DFSC_SYNC_EXTERNAL
}

/// Reads or writes `address` (hyp memory) and expects a synchronous external abort.
pub fn probe_hyp_memory(address: u64, access: Access) -> bool {
    let address = address & !7;
    let slot = probe_slot();
    PROBE_ESR[slot].store(0, Ordering::Relaxed);
    PROBE_ARMED[slot].store(true, Ordering::Relaxed);
    let word = match access {
        // SAFETY: The handler is armed to skip a data abort on this access, and the
        // address is 8-byte aligned.
        Access::Read => unsafe { probe_read(address) },
        Access::Write => {
            // SAFETY: As above; the hyp must refuse the store, which is the check.
            unsafe { probe_write(address, 0xbad0_c0de) };
            0xbad0_c0de
        }
    };
    let name = if access == Access::Read { "read" } else { "write" };
    // Plain load and store: no exclusive accesses with the MMU off.
    let still_armed = PROBE_ARMED[slot].load(Ordering::Relaxed);
    PROBE_ARMED[slot].store(false, Ordering::Relaxed);
    let esr = PROBE_ESR[slot].load(Ordering::Relaxed);
    let far = PROBE_FAR[slot].load(Ordering::Relaxed);
    if still_armed {
        return check!(false, "{name} of hyp memory at {address:#x} was NOT blocked ({word:#x})");
    }
    let wnr_matches = (esr & ESR_WNR != 0) == (access == Access::Write);
    check!(
        esr & 0x3f == DFSC_SYNC_EXTERNAL && far == address && wnr_matches,
        "blocked host {name} of hyp memory at {address:#x}: synchronous external abort (ESR_EL1 {esr:#x}, FAR_EL1 {far:#x})"
    )
}
