//! What the host sees of the machine: the hyp's PSCI relay answers for the
//! host's own CPU, the device tree carves the hyp's memory out, and reads and
//! writes of that memory abort without harming anything.

use crate::harness::platform::HostPlatform;
use crate::harness::probe::{probe_hyp_memory, Access};
use crate::harness::report::check;
use aarch64_cpu::registers::{Readable, MPIDR_EL1};

/// PSCI CPU_ON of the running CPU, and the device tree's carve-outs.
pub fn run_all(platform: &HostPlatform) -> bool {
    let mut passed = true;
    let own_mpidr = MPIDR_EL1.get() & 0xff_00ff_ffff;
    let cpu_on = platform.psci_call(smccc::psci::PSCI_CPU_ON_64, [own_mpidr, 0, 0])[0] as i64;
    passed &= if platform.psci {
        check!(cpu_on == -4, "PSCI CPU_ON of the running CPU: ALREADY_ON from the hyp ({cpu_on})")
    } else {
        check!(cpu_on == -1, "PSCI CPU_ON without PSCI firmware: NOT_SUPPORTED from the hyp ({cpu_on})")
    };
    passed &= check!(
        !platform.hyp_regions().is_empty(),
        "device tree carves out {} hyp region(s)",
        platform.hyp_regions().len()
    );
    passed
}

/// Reads at the start, middle and end of each hyp region, and a write in its
/// middle, are refused with a synchronous external abort.
pub fn hyp_memory_blocked(platform: &HostPlatform) -> bool {
    let mut passed = true;
    for &(base, size) in platform.hyp_regions() {
        for address in [base, base + size / 2, base + size - 8] {
            passed &= probe_hyp_memory(address, Access::Read);
        }
        passed &= probe_hyp_memory(base + size / 2, Access::Write);
    }
    passed
}
