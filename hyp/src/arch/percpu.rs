//! Per-CPU hyp state. Each CPU's `TPIDR_EL2` points at its own `PerCpu`, which
//! lives in the pool for good. Only its own CPU uses most of it; the fields
//! another CPU touches (to start this one) are atomics. `vectors.S`,
//! `switch.S` and `head.S` read fields at the offsets pinned below.

use core::sync::atomic::{AtomicU64, AtomicU8};

/// What a secondary CPU loads into its EL2 MMU registers at entry, before it
/// can read anything through the caches: MAIR, TCR, TTBR0 and SCTLR of EL2.
#[repr(C)]
#[derive(Debug, Default)]
pub struct BootMmu {
    pub mair: u64,
    pub tcr: u64,
    pub ttbr0: u64,
    pub sctlr: u64,
}

/// [`PerCpu::power`]: the CPU is off (or was never started).
pub const CPU_OFF: u8 = 0;
/// [`PerCpu::power`]: CPU_ON was sent to the firmware; the CPU has not yet
/// reached the hyp.
pub const CPU_BOOTING: u8 = 1;
/// [`PerCpu::power`]: the CPU runs under the hyp.
pub const CPU_ON: u8 = 2;

/// The host's EL2 controls on one CPU as `host_regs::configure` set them for
/// the host: nothing changes them while the host runs, so the world switch
/// puts them back from here after a guest's run instead of reading them
/// before it. Written and read by their own CPU only (relaxed atomics: plain
/// loads and stores).
#[derive(Debug, Default)]
pub struct HostEl2Controls {
    pub hcr: AtomicU64,
    pub vttbr: AtomicU64,
    pub vmpidr: AtomicU64,
    pub mdcr: AtomicU64,
    pub cnthctl: AtomicU64,
    pub cptr: AtomicU64,
    /// The base of a guest's controls derived from the host's (the world
    /// switch adds what depends on the run).
    pub guest_hcr: AtomicU64,
    pub guest_mdcr: AtomicU64,
    pub guest_cptr: AtomicU64,
}

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
    /// This CPU's MPIDR affinity, from the device tree.
    pub mpidr: u64,
    /// While a guest runs on this CPU: where its registers go when it traps
    /// (read by `vectors.S`; 0 when the host runs).
    pub guest_gprs: usize,
    /// While a guest runs: the hyp's stack pointer in `__guest_enter`.
    pub hyp_sp: usize,
    /// EL2 MMU setup for `head.S`'s secondary entry (same on every CPU).
    pub boot_mmu: BootMmu,
    /// The physical GIC frame with this CPU's banked PPI registers (GICv3: its
    /// redistributor's SGI frame; GICv2: the distributor); 0 if none.
    pub ppi_frame: usize,
    /// `CPU_OFF`, `CPU_BOOTING` or `CPU_ON`.
    pub power: AtomicU8,
    /// Where the host asked this CPU to start (PSCI CPU_ON), and its x0.
    pub host_entry: AtomicU64,
    pub host_context: AtomicU64,
    /// The host's EL2 controls on this CPU.
    pub host_el2: HostEl2Controls,
}

/// Offset of `emergency_stack_top`, for `vectors.S`.
pub const EMERGENCY_STACK_TOP_OFFSET: usize = core::mem::offset_of!(PerCpu, emergency_stack_top);

const _: () = assert!(EMERGENCY_STACK_TOP_OFFSET == 0);

/// Offset of `trap_stack_top`, for `head.S`.
pub const TRAP_STACK_TOP_OFFSET: usize = core::mem::offset_of!(PerCpu, trap_stack_top);
/// Offset of `guest_gprs`, for `vectors.S` and `switch.S`.
pub const GUEST_GPRS_OFFSET: usize = core::mem::offset_of!(PerCpu, guest_gprs);
/// Offset of `hyp_sp`, for `switch.S`.
pub const HYP_SP_OFFSET: usize = core::mem::offset_of!(PerCpu, hyp_sp);
/// Offset of `boot_mmu`, for `head.S`.
pub const BOOT_MMU_OFFSET: usize = core::mem::offset_of!(PerCpu, boot_mmu);
