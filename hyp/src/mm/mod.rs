//! Memory management: the hyp's heap (its memory pool), its own EL2 stage-1
//! translation tables, and the host stage-2 that hides hyp memory from the host.

pub mod heap;
pub mod host_devices;
pub mod host_stage2;
pub mod invariants;
pub mod memcache;
pub mod memory;
pub mod ownership;
pub mod pgtable;
#[cfg(target_os = "none")]
pub mod phys;
pub mod phys_memory;
pub mod regions;
pub mod stage1;
