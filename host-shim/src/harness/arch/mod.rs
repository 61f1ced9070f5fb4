//! The harness's architecture-specific code: entry, exception vectors, and the
//! instruction sequences of the probes (the guests' assembly is `crate::guests`).

pub mod aarch64;

pub use aarch64::*;
