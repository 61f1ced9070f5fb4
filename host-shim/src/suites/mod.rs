//! The check suites. Each stands on `crate::harness` and `crate::guests`
//! alone, never on another suite; `main.rs` decides which run, in what order.

pub mod conformance_cpu;
pub mod conformance_debug;
pub mod conformance_gic;
pub mod conformance_timers;
pub mod console_attack;
pub mod device_attacks;
pub mod fuzz;
pub mod guest_memory;
pub mod host_view;
pub mod hypercall_abi;
pub mod interrupts;
pub mod leaks;
pub mod linux_guest;
pub mod memory;
pub mod pci_dma_attacks;
pub mod smp;
pub mod split_stress;
pub mod vms;

#[cfg(feature = "bench")]
pub mod bench;
