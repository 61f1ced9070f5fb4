//! Per-CPU claim windows: the few instructions in which a CPU claims a vCPU
//! without the VM table's lock (`vm::loaded`), at a page it remembered. A
//! teardown frees no vCPU page before every window that was open when it
//! counted its access closed ([`wait_for_claims`]).

use crate::platform::MAX_CPUS;
use core::sync::atomic::{fence, AtomicBool, Ordering};

/// Per CPU: in its claim window.
static CLAIMING: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];

/// Opens CPU `cpu`'s window (`None` for an index past the table); the window
/// is open before anything after this call is read.
pub fn open(cpu: usize) -> Option<&'static AtomicBool> {
    let window = CLAIMING.get(cpu)?;
    window.store(true, Ordering::Relaxed);
    fence(Ordering::SeqCst);
    Some(window)
}

/// Closes a window [`open`] opened, after everything the claim read.
pub fn close(window: &AtomicBool) {
    window.store(false, Ordering::Release);
}

/// Waits until no CPU is in a claim window that opened before now: for a
/// teardown, after it counted its access, before it frees the VM's pages.
/// (A window is a few dozen instructions with interrupts masked.)
pub fn wait_for_claims() {
    fence(Ordering::SeqCst);
    for window in &CLAIMING {
        while window.load(Ordering::Acquire) {
            core::hint::spin_loop();
        }
    }
}
