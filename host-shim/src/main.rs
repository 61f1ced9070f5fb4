//! The host shim: the untrusted host of this project, entered by the hyp at EL1
//! like a kernel (x0 = device tree). It exercises the hypercall ABI and checks
//! the hyp's isolation from the host's side, printing one line per check, then
//! turns the machine off through PSCI (which the hyp relays).

#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]
#![deny(clippy::undocumented_unsafe_blocks)]
#![deny(unsafe_op_in_unsafe_fn)]
// The benchmark build runs the benchmarks instead of the checks.
#![cfg_attr(feature = "bench", allow(dead_code))]

#[cfg(target_os = "none")]
mod arch;
#[cfg(target_os = "none")]
mod attack_target;
#[cfg(all(target_os = "none", feature = "bench"))]
mod bench;
#[cfg(target_os = "none")]
mod checks;
#[cfg(target_os = "none")]
mod console;
#[cfg(target_os = "none")]
mod console_checks;
#[cfg(target_os = "none")]
mod device_attacks;
#[cfg(target_os = "none")]
mod fuzz;
#[cfg(target_os = "none")]
mod gic;
#[cfg(target_os = "none")]
mod hypercall;
#[cfg(target_os = "none")]
mod instructions;
#[cfg(target_os = "none")]
mod interrupt_checks;
#[cfg(target_os = "none")]
mod leak_checks;
#[cfg(target_os = "none")]
mod linux_guest;
#[cfg(target_os = "none")]
mod memory_checks;
#[cfg(target_os = "none")]
mod pci_dma_attacks;
#[cfg(target_os = "none")]
mod platform;
#[cfg(target_os = "none")]
mod smp;
#[cfg(target_os = "none")]
mod split_stress;
#[cfg(target_os = "none")]
mod vm_checks;

/// The line that tells the boot tests every check passed.
pub const ALL_CHECKS_PASSED: &str = "all host checks passed";

#[cfg(target_os = "none")]
#[no_mangle]
extern "C" fn shim_main(dtb: usize, entry_counter: u64) -> ! {
    let platform = platform::HostPlatform::read(dtb);
    // SAFETY: The base is the device tree's console PL011 (or 0 for none), and
    // this is the first and only call.
    unsafe { console::init(platform.uart_kind, platform.uart_base) };
    if let Some(error) = platform.bootargs_error {
        log::error!("{error}");
        platform.power_off(false);
    }
    #[cfg(feature = "bench")]
    let status = bench::run_all(&platform, entry_counter);
    #[cfg(not(feature = "bench"))]
    let status = {
        let _ = entry_counter;
        checks::run_all(&platform)
    };
    platform.power_off(status)
}

#[cfg(target_os = "none")]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    log::error!("PANIC: {info}");
    platform::fail_stop()
}

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("the host shim runs under the hyp: build it with scripts/build-image");
}
