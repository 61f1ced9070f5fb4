//! A pKVM-style hypervisor for arm64: entered at EL2 as a Linux arm64 Image, it
//! takes the CPU, builds its own EL2 stage-1, hides its memory from the host
//! behind a stage-2, and serves the host's hypercalls.
//!
//! Portable logic (device-tree interpretation, placement, page-table policy,
//! hypercall decoding, ESR decoding) builds for the development machine as well,
//! where `cargo test` runs it; everything under `arch/aarch64` and the boot and
//! trap paths build only for the bare-metal target.

#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]
#![deny(clippy::undocumented_unsafe_blocks)]
#![deny(unsafe_op_in_unsafe_fn)]
// On the development machine only the tests use the portable modules.
#![cfg_attr(not(target_os = "none"), allow(dead_code))]

extern crate alloc;

mod addr;
mod arch;
mod console;
mod fdt_edit;
mod host_lpi;
mod host_request;
mod hypercall;
#[cfg(test)]
mod layering_tests;
mod layout;
mod log_budget;
mod mm;
mod platform;
mod psci_relay;
mod range;
mod smmu;
#[cfg(test)]
mod testing;

// The report of a damaged image, called by name from `image_check.S`.
#[cfg(target_os = "none")]
use hyp_image_check as _;
#[cfg(test)]
mod image_check_tests;
mod vm;

/// Declares modules of the bare-metal build only.
macro_rules! target_only {
    ($($module:ident),* $(,)?) => {
        $(
            #[cfg(target_os = "none")]
            mod $module;
        )*
    };
}

// The boot and trap paths and the state they build and serve.
target_only!(boot, cpus, entry, host_calls, power, state, trap, vcpu_run);

/// The hyp's heap, fed with its memory pool at boot.
#[cfg(target_os = "none")]
#[global_allocator]
static HEAP: mm::heap::Heap = mm::heap::Heap::new();

#[cfg(target_os = "none")]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    emergency_println!("[hyp PANIC] {info}");
    power::system_off(1)
}

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("the hyp runs on bare metal: build it with scripts/build-image");
}
