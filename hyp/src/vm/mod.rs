//! Virtual machines: the VM table (per-VM state behind generation-checked
//! handles), vCPU contexts, and what the hyp does with each guest exit.

pub mod claim_window;
pub mod exit;
pub mod guest_trap;
pub mod handle;
pub mod loaded;
pub mod mmio_guard;
pub mod sysreg;
pub mod table;
pub mod vgic_dist;
pub mod vgic_mmio;
