//! The parts of `hyp-vmm` that do not touch the hardware, as a library so
//! that their unit tests run on the development machine (the binary itself
//! builds for aarch64 Linux only).

pub mod command_line;
pub mod kvm_layout;
pub mod mmio_data;
pub mod page_pins;
pub mod smaps;
pub mod virtio;
