//! Ending the run: how the hyp turns the machine off, with a status where the
//! platform can report one.
//!
//! PSCI SYSTEM_OFF reaches the firmware through the conduit the device tree names.
//! With `hyp.exit=semihosting` in the bootargs (what `scripts/run` passes together
//! with QEMU's `-semihosting`), a semihosting exit carries the status first, so
//! that a failed boot ends QEMU with a non-zero status.

use crate::arch::aarch64::power::firmware_call;
use crate::console::emergency::EmergencyWriter;
use crate::platform::PsciConduit;
use crate::state::Hyp;
use crate::vm::table::VmTable;
use core::sync::atomic::{AtomicBool, Ordering};
use hyp_abi::HypError;

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
        unsafe { hyp_drivers::semihosting::exit(status) };
    }
    psci_call(smccc::psci::PSCI_SYSTEM_OFF, [0; 3]);
    crate::arch::aarch64::park()
}

/// How long the hyp waits for protected vCPUs to return to their host before
/// it refuses the host's SYSTEM_RESET or SYSTEM_OFF.
const SCRUB_WAIT_SECONDS: u64 = 1;

/// Before the host's PSCI SYSTEM_RESET or SYSTEM_OFF is passed on (`name`
/// for the log): every protected VM stops for good, and once none of its
/// vCPUs runs any more, its memory and vCPU contexts are zeroed and written
/// back to memory ([`VmTable::scrub_for_power_off`]), so that nothing of it
/// survives into what the machine boots next. Returns the VM table's lock,
/// held: the caller keeps it until the machine goes down (or the firmware
/// returns), so that no VM is created, given memory or run meanwhile.
///
/// # Errors
///
/// `Busy` if a protected vCPU still runs after [`SCRUB_WAIT_SECONDS`] (a
/// guest that never traps, on a CPU whose host takes no interrupt: the host
/// gets its CPU back at its next interrupt, and may ask again); `NoMemory` if
/// the hyp could not map a page to zero it. Nothing is passed on then.
pub fn scrub_before_power_off<'a>(hyp: &'a Hyp, name: &str) -> Result<spin::MutexGuard<'a, VmTable>, HypError> {
    use aarch64_cpu::registers::{Readable, CNTFRQ_EL0};
    let vms = hyp.vms();
    let deadline = crate::vcpu_run::physical_count().saturating_add(CNTFRQ_EL0.get() * SCRUB_WAIT_SECONDS);
    loop {
        let mut table = vms.lock();
        let result = hyp.with_memory(|memory, env| table.scrub_for_power_off(memory, env));
        match result {
            Ok(0) => return Ok(table),
            Ok(pages) => {
                log::info!(
                    "host requested PSCI {name}: {pages} page(s) of protected VMs zeroed, and their vCPU contexts"
                );
                return Ok(table);
            }
            Err(HypError::Busy) if crate::vcpu_run::physical_count() < deadline => {
                drop(table);
                core::hint::spin_loop();
            }
            Err(error) => {
                log::warn!("host requested PSCI {name}: refused, protected VMs not scrubbed ({error})");
                return Err(error);
            }
        }
    }
}
