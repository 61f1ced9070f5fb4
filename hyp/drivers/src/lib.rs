//! Small MMIO drivers used by both bare-metal programs of this repository
//! (and the GICv3 SGI register's encoding, `gic_sgi`).
//!
//! Each driver turns a raw base address into a typed register block once, in an
//! `unsafe` constructor whose contract is written down; every access after that is
//! safe. Nothing here allocates or locks, and no wait is unbounded: transmission
//! goes through [`tx::TxState`], which gives every byte a budget of polls.

#![no_std]
#![deny(clippy::undocumented_unsafe_blocks)]
#![deny(unsafe_op_in_unsafe_fn)]

pub mod gic_sgi;
pub mod line;
pub mod log_level;
pub mod ns16550;
pub mod pl011;
pub mod semihosting;
pub mod tx;
pub mod uart;
