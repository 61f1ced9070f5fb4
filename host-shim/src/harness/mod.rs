//! What every check suite stands on: the shim's entry and exceptions, its
//! console, the device tree, one safe function per hypercall, the `check!`
//! report, the hyp's debug calls, scratch memory, the other CPUs, running a
//! VM's vCPUs each on a CPU of its own, and the
//! helpers several suites share (counted VM calls, the target VM of the device
//! attacks, the device registers a host must not write). It imports only
//! `crate::guests`, never a suite.

pub mod arch;
pub mod attack_target;
pub mod console;
pub mod cpus;
pub mod debug_calls;
pub mod exceptions;
pub mod gic;
pub mod hostile_registers;
pub mod hypercall;
pub mod instructions;
pub mod ipi_guest;
pub mod mmio;
pub mod platform;
pub mod probe;
pub mod remote_guest;
pub mod report;
pub mod scratch;
pub mod vcpu_cpus;
pub mod vms;
