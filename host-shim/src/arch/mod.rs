//! Architecture-specific code; the only place with assembly.

pub mod aarch64;

pub use aarch64::*;
