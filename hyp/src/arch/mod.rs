//! The bottom layer: what the architecture defines, and the code that touches
//! the hardware. It imports nothing from the layers above (`vm`, `mm`, `boot`,
//! the trap handlers); they import it.
//!
//! The modules here are portable definitions (register layouts and contexts,
//! ESR decoding, the trap record, system-register encodings, list-register and
//! timer arithmetic (the virtual timer's and the emulated physical timer's), the trap controls, the per-CPU layout the assembly reads,
//! the TLB-maintenance interface): plain data and arithmetic, built and
//! unit-tested on the development machine. `aarch64` is the hardware access
//! (everything with `asm!`, system registers, the assembly files), built for
//! the bare-metal target only.

pub mod context;
pub mod debug;
pub mod esr;
pub mod list_registers;
pub mod percpu;
pub mod phys_timer;
pub mod sysreg;
pub mod timer;
pub mod tlb;
pub mod trap_controls;
pub mod trap_record;

#[cfg(target_os = "none")]
pub mod aarch64;
