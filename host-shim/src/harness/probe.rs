//! Probes: an access the hyp may refuse with an abort, which the exception
//! handler then skips (`exceptions.rs`), so that the shim learns whether it
//! was refused instead of stopping.

use crate::harness::arch::{probe_read, probe_read32, probe_write, probe_write32_from_x25};
use crate::harness::platform::MAX_CPUS;
use crate::harness::report::check;
use aarch64_cpu::registers::{Readable, MPIDR_EL1};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

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

/// DFSC of a synchronous external abort.
const DFSC_SYNC_EXTERNAL: u64 = 0x10;
/// ESR_EL1 WnR: the abort was caused by a write.
const ESR_WNR: u64 = 1 << 6;

/// From the exception handler, for a data abort at EL1 (ESR `esr`, FAR
/// `far`): whether a probe was armed for it, in which case it is recorded
/// and the probe disarmed (the handler then skips the instruction).
pub fn take_abort(esr: u64, far: u64) -> bool {
    let slot = probe_slot();
    if !PROBE_ARMED[slot].load(Ordering::Relaxed) {
        return false;
    }
    PROBE_ESR[slot].store(esr, Ordering::Relaxed);
    PROBE_FAR[slot].store(far, Ordering::Relaxed);
    PROBE_ARMED[slot].store(false, Ordering::Relaxed);
    true
}

#[derive(Clone, Copy, PartialEq)]
pub enum Access {
    Read,
    Write,
}

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

/// Reads 8 bytes at `address` (8-byte aligned); `None` if refused.
pub fn read(address: u64) -> Option<u64> {
    arm_probe();
    // SAFETY: The handler is armed to skip the abort; a read of the device
    // registers and memory the shim probes has no effect.
    let value = unsafe { probe_read(address) };
    (!probe_was_refused()).then_some(value)
}

/// Reads 4 bytes at `address` (4-byte aligned); `None` if refused.
pub fn read32(address: u64) -> Option<u32> {
    arm_probe();
    // SAFETY: As in `read`.
    let value = unsafe { probe_read32(address) };
    (!probe_was_refused()).then_some(value)
}

/// Writes 8 bytes at `address` (8-byte aligned): whether the hyp refused it.
pub fn write_refused(address: u64, value: u64) -> bool {
    arm_probe();
    // SAFETY: The handler is armed; the address is aligned device space, and
    // the store is what the hyp must refuse.
    unsafe { probe_write(address, value) };
    probe_was_refused()
}

/// Writes 4 bytes at `address` (4-byte aligned) from x25 (the hyp's slow
/// path): whether the hyp refused it.
pub fn write32_refused(address: u64, value: u32) -> bool {
    arm_probe();
    // SAFETY: As in `write_refused`.
    unsafe { probe_write32_from_x25(address, value) };
    probe_was_refused()
}
