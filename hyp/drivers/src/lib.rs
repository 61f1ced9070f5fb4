//! Small MMIO drivers used by both bare-metal programs of this repository.
//!
//! Each driver turns a raw base address into a typed register block once, in an
//! `unsafe` constructor whose contract is written down; every access after that is
//! safe. Nothing here allocates or locks: callers wrap drivers in their own locks.

#![no_std]
#![deny(clippy::undocumented_unsafe_blocks)]
#![deny(unsafe_op_in_unsafe_fn)]

pub mod log_level;
pub mod ns16550;
pub mod pl011;
pub mod uart;

/// A byte sink for console output.
pub trait ConsoleWrite {
    /// Writes all bytes, waiting for room in the transmit FIFO as needed.
    fn write_bytes(&self, bytes: &[u8]);
}
