//! The hyp's portable modules, compiled from the hyp's own source files
//! (`#[path]`) and reachable under the names the hyp gives them
//! (`crate::arch::...`, `crate::vm::...`), so that every fuzz target drives the
//! code the hyp runs, not a copy, and declares none of it itself.

#![allow(dead_code)]

#[path = "../../src/arch/context.rs"]
#[doc(hidden)]
pub mod arch_context;
#[path = "../../src/arch/debug.rs"]
#[doc(hidden)]
pub mod arch_debug;
#[path = "../../src/arch/esr.rs"]
#[doc(hidden)]
pub mod arch_esr;
#[path = "../../src/arch/list_registers.rs"]
#[doc(hidden)]
pub mod arch_list_registers;
#[path = "../../src/arch/phys_timer.rs"]
#[doc(hidden)]
pub mod arch_phys_timer;
#[path = "../../src/arch/sysreg.rs"]
#[doc(hidden)]
pub mod arch_sysreg;
#[path = "../../src/arch/trap_record.rs"]
#[doc(hidden)]
pub mod arch_trap_record;
#[path = "../../src/vm/exit.rs"]
#[doc(hidden)]
pub mod vm_exit;
#[path = "../../src/vm/guest_trap.rs"]
#[doc(hidden)]
pub mod vm_guest_trap;
#[path = "../../src/vm/handle.rs"]
#[doc(hidden)]
pub mod vm_handle;
#[path = "../../src/vm/sysreg.rs"]
#[doc(hidden)]
pub mod vm_sysreg;
#[path = "../../src/vm/vgic_dist.rs"]
#[doc(hidden)]
pub mod vm_vgic_dist;
#[path = "../../src/vm/vgic_mmio.rs"]
#[doc(hidden)]
pub mod vm_vgic_mmio;

/// `crate::arch::...` as the hyp names these modules.
pub mod arch {
    pub use super::arch_context as context;
    pub use super::arch_debug as debug;
    pub use super::arch_esr as esr;
    pub use super::arch_list_registers as list_registers;
    pub use super::arch_phys_timer as phys_timer;
    pub use super::arch_sysreg as sysreg;
    pub use super::arch_trap_record as trap_record;
}

/// `crate::vm::...` as the hyp names these modules.
pub mod vm {
    pub use super::vm_exit as exit;
    pub use super::vm_guest_trap as guest_trap;
    pub use super::vm_handle as handle;
    pub use super::vm_sysreg as sysreg;
    pub use super::vm_vgic_dist as vgic_dist;
    pub use super::vm_vgic_mmio as vgic_mmio;
}

#[path = "../../src/addr.rs"]
pub mod addr;
#[path = "../../src/host_request.rs"]
pub mod host_request;
#[path = "../../src/hypercall.rs"]
pub mod hypercall;
#[path = "../../src/platform/mod.rs"]
pub mod platform;
#[path = "../../src/range.rs"]
pub mod range;
