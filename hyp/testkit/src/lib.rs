//! What the hyp's host-side tests and the host shim's randomised checks (the
//! hostile host, the all-CPU stress run) share. `no_std`, so that the shim
//! uses it on bare metal; neither the hyp binary nor the ABI depends on it.

#![no_std]

pub mod rng;
