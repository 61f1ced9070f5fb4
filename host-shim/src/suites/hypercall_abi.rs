//! The hypercall ABI from the host's side: the shim runs at EL1, hypercalls
//! round-trip, unknown calls are refused (and a production hyp's debug calls),
//! a hypercall leaves the registers it does not answer in alone, and the
//! host's ID registers come from the hyp.

use crate::harness::arch::{hvc_registers_after, id_register_reads, probe_pattern};
use crate::harness::debug_calls::debug_calls;
use crate::harness::hypercall;
use crate::harness::platform::HostPlatform;
use crate::harness::report::check;
use aarch64_cpu::registers::{CurrentEL, Readable};
use hyp_abi::{HostCall, HypError, ABI_VERSION_MAJOR, ABI_VERSION_MINOR};

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
    let after = hvc_registers_after(HostCall::Version.function_id());
    let answered = after[..3] == [0, ABI_VERSION_MAJOR, ABI_VERSION_MINOR];
    let changed = (4..=30).find(|&n| after[n] != probe_pattern(n));
    check!(
        answered && changed.is_none(),
        "VERSION with x4..x30 patterned: answered {:x?}, first register changed {changed:?}",
        &after[..3]
    )
}

/// The host's ID registers come from the hyp (HCR_EL2.TID3): SVE hidden, and
/// the answer reaches whichever register the MRS names, x19..x28 included.
fn check_id_registers_read_through_the_hyp() -> bool {
    let [x2, x19, x28, x20] = id_register_reads();
    let sve = x2 >> 32 & 0xf;
    check!(
        x2 == x19 && x2 == x28 && x20 == probe_pattern(20) && sve == 0,
        "ID_AA64PFR0_EL1 read into x2, x19 and x28 alike ({x2:#x}, {x19:#x}, {x28:#x}), SVE {sve} (hidden), x20 kept"
    )
}

/// Runs the ABI checks; `features` is FEATURES' answer at the start of the
/// run. True when all passed.
pub fn run_all(platform: &HostPlatform, features: Result<u64, HypError>) -> bool {
    let production = !debug_calls();
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
    passed
}
