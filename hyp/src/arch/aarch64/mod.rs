//! Everything that needs `asm!`/`global_asm!`: entry, vectors, MMU switch-on, cache
//! and TLB maintenance, SMC/HVC conduits. This module imports nothing
//! from the layers above; the vectors call the trap handlers by symbol name.

pub mod bulk_copy;
pub mod cache;
pub mod cpacr;
pub mod debug_switch;
pub mod exception;
pub mod gic_ppi;
pub mod gicv2;
pub mod gicv3;
pub mod guest_controls;
pub mod host_regs;
pub mod id_regs;
pub mod inject;
pub mod mmu;
pub mod percpu;
pub mod power;
pub mod tlb;
pub mod world;

use core::arch::global_asm;

// The macros the hyp's assembly shares with the host shim's live outside
// either crate, in `asm/aarch64/`; each file goes in front of the code using it.
global_asm!(
    include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../asm/aarch64/image_entry.S")),
    include_str!("head.S"),
    trap_stack_top = const crate::arch::percpu::TRAP_STACK_TOP_OFFSET,
    boot_mmu = const crate::arch::percpu::BOOT_MMU_OFFSET,
);
global_asm!(include_str!("image_check.S"));
global_asm!(
    include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../asm/aarch64/gpr_frame.S")),
    include_str!("vectors.S"),
    trap_frame_size = const core::mem::size_of::<exception::TrapFrame>(),
    frame_x30 = const core::mem::offset_of!(exception::TrapFrame, regs) + 30 * 8,
    emergency_top = const crate::arch::percpu::EMERGENCY_STACK_TOP_OFFSET,
    guest_gprs = const crate::arch::percpu::GUEST_GPRS_OFFSET,
    need_callee_saved = const exception::NEED_CALLEE_SAVED,
);
global_asm!(
    include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../asm/aarch64/gpr_frame.S")),
    include_str!("switch.S"),
    guest_gprs = const crate::arch::percpu::GUEST_GPRS_OFFSET,
    hyp_sp = const crate::arch::percpu::HYP_SP_OFFSET,
    fp_fpcr = const core::mem::offset_of!(crate::arch::context::FpState, fpcr),
);

/// Waits for an event forever: the end of every path that cannot go on.
pub fn park() -> ! {
    loop {
        aarch64_cpu::asm::wfe();
    }
}
