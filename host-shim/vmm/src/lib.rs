//! The portable parts of the host's VMM: what the host shim (and, later, a
//! user-space VMM on a Linux host) needs to boot a Linux guest, without
//! touching hardware: a device-tree writer, the guest's tree, where the
//! kernel, initramfs and tree go in guest RAM, and the PL011 the guest's
//! console talks to. Tested on the development machine.

#![no_std]
#![forbid(unsafe_code)]

#[cfg(test)]
#[macro_use]
extern crate std;

pub mod boot_layout;
pub mod fdt_writer;
pub mod guest_tree;
pub mod kernel_image;
pub mod pl011;
