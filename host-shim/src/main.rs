//! The host shim: the untrusted host of this project, entered by the hyp at EL1
//! like a kernel (x0 = device tree). It exercises the hypercall ABI and checks
//! the hyp's isolation from the host's side, printing one line per check, then
//! turns the machine off through PSCI (which the hyp relays).
//!
//! Three layers, each importing only those below it: `guests` (the guests'
//! code), `harness` (entry, console, hypercalls, reporting, CPUs, shared
//! helpers) and `suites` (the checks). This file alone decides which suites
//! run and in what order.

#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]
#![deny(clippy::undocumented_unsafe_blocks)]
#![deny(unsafe_op_in_unsafe_fn)]
// The benchmark build runs the benchmarks instead of the checks.
#![cfg_attr(feature = "bench", allow(dead_code))]

#[cfg(target_os = "none")]
mod guests;
#[cfg(target_os = "none")]
mod harness;
#[cfg(target_os = "none")]
mod suites;

#[cfg(target_os = "none")]
use harness::platform::HostPlatform;

#[cfg(target_os = "none")]
#[no_mangle]
extern "C" fn shim_main(dtb: usize, entry_counter: u64) -> ! {
    let platform = HostPlatform::read(dtb);
    // SAFETY: The base is the device tree's console PL011 (or 0 for none), and
    // this is the first and only call.
    unsafe { harness::console::init(platform.uart_kind, platform.uart_base) };
    if let Some(error) = platform.bootargs_error {
        log::error!("{error}");
        platform.power_off(false);
    }
    #[cfg(feature = "bench")]
    let status = suites::bench::run_all(&platform, entry_counter);
    #[cfg(not(feature = "bench"))]
    let status = {
        let _ = entry_counter;
        run(&platform)
    };
    platform.power_off(status)
}

/// What the bootargs ask for: the hostile host, the block-split stress, a
/// Linux guest or the console attack instead of the checks, or else every
/// check. True when all passed.
#[cfg(target_os = "none")]
fn run(platform: &HostPlatform) -> bool {
    // A production hyp (built without the debug calls) says so in FEATURES.
    let features = harness::hypercall::features();
    harness::debug_calls::note_features(features);
    if platform.fuzz_calls > 0 {
        return suites::fuzz::run(platform, platform.fuzz_calls, platform.fuzz_seed);
    }
    if platform.split_stress > 0 {
        return suites::split_stress::run(platform, platform.split_stress);
    }
    if let Some(ty) = platform.linux_guest {
        return suites::linux_guest::run(platform, ty);
    }
    if platform.console_attack {
        return suites::console_attack::run(platform);
    }
    run_checks(platform, features)
}

/// Every check suite, in order; `features` is FEATURES' answer. The VM
/// suites between `vms::run_all` and `vms::finish` use the memcache the first
/// donates and the last takes back. True when all passed.
#[cfg(target_os = "none")]
fn run_checks(platform: &HostPlatform, features: Result<u64, hyp_abi::HypError>) -> bool {
    use harness::scratch::page;
    let hyp = platform.hyp_regions().first().map_or(0, |r| r.0);
    let mut passed = suites::hypercall_abi::run_all(platform, features);
    passed &= suites::leaks::run_all(platform);
    passed &= suites::host_view::run_all(platform);
    passed &= suites::memory::run_all(platform);
    passed &= suites::vms::run_all(platform);
    passed &= suites::guest_memory::run_all(page(8));
    passed &= suites::interrupts::run_all(platform, page(8));
    passed &= suites::conformance_gic::run_all(platform, page(8));
    passed &= suites::conformance_debug::run_all(platform, page(8));
    passed &= suites::conformance_cpu::run_all(platform, page(8), page(9));
    passed &= suites::conformance_timers::run_all(platform, page(8));
    passed &= suites::device_attacks::run_all(platform, page(8));
    passed &= suites::pci_dma_attacks::run_all(platform, page(8), page(9), page(10));
    passed &= suites::vms::bad_calls_and_stress(hyp, platform.vm_stress_rounds);
    passed &= suites::smp::run_all(platform);
    passed &= suites::vms::finish();
    passed &= suites::host_view::hyp_memory_blocked(platform);
    passed
}

#[cfg(target_os = "none")]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    log::error!("PANIC: {info}");
    harness::platform::fail_stop()
}

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("the host shim runs under the hyp: build it with scripts/build-image");
}
