//! This CPU's [`PerCpu`], through `TPIDR_EL2`.

use crate::arch::percpu::PerCpu;

/// Makes `per_cpu` this CPU's state.
pub fn install(per_cpu: &'static PerCpu) {
    use aarch64_cpu::registers::{Writeable, TPIDR_EL2};
    TPIDR_EL2.set(per_cpu as *const PerCpu as u64);
}

/// This CPU's state, once [`install`]ed (by the boot path, or `head.S` for a
/// secondary CPU).
pub fn this_cpu() -> &'static PerCpu {
    use aarch64_cpu::registers::{Readable, TPIDR_EL2};
    // SAFETY: After `install`, TPIDR_EL2 holds a `&'static PerCpu`; the boot path
    // installs one before the host (the only caller's trigger) ever runs.
    unsafe { &*(TPIDR_EL2.get() as *const PerCpu) }
}
