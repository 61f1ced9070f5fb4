//! The Rust entries the assembly calls after boot: every exception the host
//! takes to EL2 (from `vectors.S`), and a secondary CPU's first Rust code
//! (from `head.S`). With `boot`, the only module that names `boot`: each entry
//! fetches the hyp's state ([`crate::state::Hyp`]) once and passes it down.

use crate::arch::aarch64::exception::{ExceptionKind, TrapFrame};
use crate::arch::percpu::{PerCpu, CPU_ON};
use crate::state::Hyp;
use crate::trap::{handle_host_sync, report_spurious_exception};
use core::sync::atomic::Ordering;

/// The hyp's state for a secondary CPU. The host starts the secondary CPUs
/// only after boot built it, so its absence is a hyp bug: reported, and the
/// machine stops.
fn hyp() -> &'static Hyp {
    match crate::boot::hyp() {
        Some(hyp) => hyp,
        None => no_state(),
    }
}

#[cold]
#[inline(never)]
fn no_state() -> ! {
    crate::emergency_println!("[hyp] an entry ran before boot built the hyp's state");
    crate::power::system_off(1)
}

/// The hyp's state on an exception from the host.
#[inline(always)]
fn hyp_on_host_trap() -> &'static Hyp {
    // SAFETY: The host traps only once it runs, and it runs only after boot
    // built the state (`hyp_built`'s contract).
    unsafe { crate::boot::hyp_built() }
}

/// Entry from `vectors.S` for every exception taken from the host. Returns 0,
/// or n (19..=28) when the host's xn must be loaded from the frame's spare
/// slot (see [`TrapFrame::set_x`]).
#[no_mangle]
extern "C" fn handle_lower_el_exception(frame: &mut TrapFrame, kind: u64) -> u64 {
    if ExceptionKind::from_vector(kind) != ExceptionKind::Synchronous {
        return report_spurious_exception(kind);
    }
    handle_host_sync(hyp_on_host_trap(), frame, false)
}

/// Entry from `vectors.S` after [`handle_lower_el_exception`] returned
/// [`crate::arch::aarch64::exception::NEED_CALLEE_SAVED`]: the frame now holds
/// the host's x19..x28 too, and the synchronous exception is handled again
/// from the start (nothing was changed the first time). Never returns
/// `NEED_CALLEE_SAVED`.
#[no_mangle]
extern "C" fn handle_lower_el_exception_full_frame(frame: &mut TrapFrame) -> u64 {
    handle_host_sync(hyp_on_host_trap(), frame, true)
}

/// Rust entry of a secondary CPU (from `head.S`), MMU on, on its trap stack:
/// it enters the host where the host's PSCI CPU_ON asked.
#[no_mangle]
extern "C" fn hyp_boot_secondary(cpu: &'static PerCpu) -> ! {
    cpu.power.store(CPU_ON, Ordering::Release);
    let (entry, context) = (cpu.host_entry.load(Ordering::Relaxed), cpu.host_context.load(Ordering::Relaxed));
    log::info!("CPU {} (MPIDR {:#x}) up at EL2: entering the host at {entry:#x}", cpu.index, cpu.mpidr);
    hyp().enter_host(entry, [context, 0, 0, 0])
}
