//! Per-CPU hyp state. Each CPU's `TPIDR_EL2` points at its own `PerCpu`, which
//! lives in the pool for good; nothing in it is shared, so it needs no lock.
//! `vectors.S` reads the emergency stack top at offset 0 (pinned below).

/// One CPU's hyp state.
#[repr(C)]
#[derive(Debug)]
pub struct PerCpu {
    /// Top of the stack fatal EL2 exceptions switch to (read by `vectors.S`).
    pub emergency_stack_top: usize,
    /// Top of the stack host traps arrive on (SP_EL2 when the host runs).
    pub trap_stack_top: usize,
    /// Index of this CPU in the device tree's `/cpus`.
    pub index: usize,
    /// This CPU's MPIDR_EL1.
    pub mpidr: u64,
    /// While a guest runs on this CPU: where its registers go when it traps
    /// (read by `vectors.S`; 0 when the host runs).
    pub guest_gprs: usize,
    /// While a guest runs: the hyp's stack pointer in `__guest_enter`.
    pub hyp_sp: usize,
}

/// Offset of `emergency_stack_top`, for `vectors.S`.
pub const EMERGENCY_STACK_TOP_OFFSET: usize = core::mem::offset_of!(PerCpu, emergency_stack_top);

const _: () = assert!(EMERGENCY_STACK_TOP_OFFSET == 0);

/// Offset of `guest_gprs`, for `vectors.S` and `switch.S`.
pub const GUEST_GPRS_OFFSET: usize = core::mem::offset_of!(PerCpu, guest_gprs);
/// Offset of `hyp_sp`, for `switch.S`.
pub const HYP_SP_OFFSET: usize = core::mem::offset_of!(PerCpu, hyp_sp);

/// Makes `per_cpu` this CPU's state.
#[cfg(target_os = "none")]
pub fn install(per_cpu: &'static PerCpu) {
    use aarch64_cpu::registers::{Writeable, TPIDR_EL2};
    TPIDR_EL2.set(per_cpu as *const PerCpu as u64);
}

/// This CPU's state, once [`install`]ed.
#[cfg(target_os = "none")]
pub fn this_cpu() -> &'static PerCpu {
    use aarch64_cpu::registers::{Readable, TPIDR_EL2};
    // SAFETY: After `install`, TPIDR_EL2 holds a `&'static PerCpu`; the boot path
    // installs one before the host (the only caller's trigger) ever runs.
    unsafe { &*(TPIDR_EL2.get() as *const PerCpu) }
}
