//! The hyp's guest-facing `vm` modules, compiled from its own source files for
//! the targets that fuzz them, under the path the hyp gives them
//! (`crate::vm::...`). Each target also declares `esr` at its root.

#[path = "../../src/vm/context.rs"]
pub mod context;
#[path = "../../src/vm/exit.rs"]
pub mod exit;
#[path = "../../src/vm/guest_trap.rs"]
pub mod guest_trap;
#[path = "../../src/vm/sysreg.rs"]
pub mod sysreg;
#[path = "../../src/vm/vgic.rs"]
pub mod vgic;
#[path = "../../src/vm/vgic_dist.rs"]
pub mod vgic_dist;
#[path = "../../src/vm/vgic_mmio.rs"]
pub mod vgic_mmio;
