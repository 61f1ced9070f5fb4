//! Reporting: one line per check (`ok: ...` or `FAILED: ...`), and whether
//! any check failed, on any CPU, which decides how the run ends.

use core::sync::atomic::{AtomicBool, Ordering};

/// The line that tells the boot tests every check passed.
pub const ALL_CHECKS_PASSED: &str = "all host checks passed";

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
            $crate::harness::report::note_failure();
            false
        }
    }};
}
pub(crate) use check;
