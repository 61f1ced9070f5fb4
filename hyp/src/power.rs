//! Ending the run: how the hyp turns the machine off, with a status where the
//! platform can report one.
//!
//! PSCI SYSTEM_OFF reaches the firmware through the conduit the device tree names.
//! With `hyp.exit=semihosting` in the bootargs (what `scripts/run` passes together
//! with QEMU's `-semihosting`), a semihosting exit carries the status first, so
//! that a failed boot ends QEMU with a non-zero status.

use crate::arch::aarch64::power::{firmware_call, semihosting_exit};
use crate::console::emergency::EmergencyWriter;
use crate::platform::PsciConduit;
use core::sync::atomic::{AtomicBool, Ordering};

static SEMIHOSTING_EXIT: AtomicBool = AtomicBool::new(false);
static PSCI_OVER_HVC: AtomicBool = AtomicBool::new(false);

/// Records how to power off (plain stores: usable with the MMU off).
pub fn configure(semihosting_exit: bool, conduit: Option<PsciConduit>) {
    SEMIHOSTING_EXIT.store(semihosting_exit, Ordering::Relaxed);
    PSCI_OVER_HVC.store(conduit == Some(PsciConduit::Hvc), Ordering::Relaxed);
}

/// Issues a PSCI call to the firmware.
pub fn psci_call(function: u32, args: [u64; 3]) -> [u64; 4] {
    firmware_call(PSCI_OVER_HVC.load(Ordering::Relaxed), function, args)
}

/// Turns the machine off with `status` (0 = success); never returns.
pub fn system_off(status: u32) -> ! {
    EmergencyWriter::flush();
    if SEMIHOSTING_EXIT.load(Ordering::Relaxed) {
        // SAFETY: The bootargs say a semihosting host is attached.
        unsafe { semihosting_exit(status) };
    }
    psci_call(smccc::psci::PSCI_SYSTEM_OFF, [0; 3]);
    crate::arch::aarch64::park()
}
