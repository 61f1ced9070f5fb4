//! Whether the hyp answers its debug hypercalls (`DEBUG_CHECK_INVARIANTS`,
//! `DEBUG_EXCHANGE`): a test build does, a production build does not, and
//! says so in FEATURES. Checks that need them are left out against a
//! production hyp (which must refuse them instead).

use crate::harness::hypercall::{self, InvariantReport};
use crate::harness::report::check;
use core::sync::atomic::{AtomicBool, Ordering};
use hyp_abi::{HostCall, HypError};

static DEBUG_CALLS: AtomicBool = AtomicBool::new(true);

/// Learns from the hyp's FEATURES answer (`features`) whether it is a
/// production build; returns whether it is.
pub fn note_features(features: Result<u64, HypError>) -> bool {
    let production = features == Ok(HostCall::features_bitmap(false));
    DEBUG_CALLS.store(!production, Ordering::Relaxed);
    production
}

/// Whether the hyp under test answers `DEBUG_CHECK_INVARIANTS` and `DEBUG_EXCHANGE`.
pub fn debug_calls() -> bool {
    DEBUG_CALLS.load(Ordering::Relaxed)
}

/// The hyp's invariant checker is clean (left out against a production hyp,
/// which has none).
pub fn invariants(what: &str) -> bool {
    if !debug_calls() {
        return true;
    }
    match hypercall::check_invariants() {
        Ok(InvariantReport { violations: 0, .. }) => true,
        other => check!(false, "invariant check after {what}: {other:?}"),
    }
}
