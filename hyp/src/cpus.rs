//! Every CPU under the hyp. The boot CPU makes a `PerCpu` (with its own stacks)
//! for each CPU of the device tree; the others start only when the host asks,
//! with PSCI CPU_ON, which the hyp serves itself: the firmware starts the CPU at
//! the hyp's `secondary_entry` (head.S), the hyp sets up EL2 there, and only then
//! enters the host at EL1 at the address the host gave. So the host can never
//! point a CPU at code of its choosing at EL2, nor start one outside the hyp.

use crate::arch::aarch64::cache;
use crate::arch::percpu::{PerCpu, CPU_BOOTING, CPU_OFF, CPU_ON};
use alloc::vec::Vec;
use core::sync::atomic::Ordering;
use smccc::psci::{PSCI_CPU_OFF, PSCI_CPU_ON_64};

/// MPIDR affinity fields (Aff3 at 39:32, Aff2..Aff0 at 23:0).
pub const MPIDR_AFFINITY_MASK: u64 = 0xff_00ff_ffff;

/// PSCI statuses the hyp returns itself.
const PSCI_NOT_SUPPORTED: i64 = -1;
const PSCI_INVALID_PARAMETERS: i64 = -2;
const PSCI_ALREADY_ON: i64 = -4;
const PSCI_ON_PENDING: i64 = -5;

static CPUS: spin::Once<Vec<&'static PerCpu>> = spin::Once::new();

extern "C" {
    /// head.S: where a secondary CPU enters the hyp, x0 = its `PerCpu`.
    fn secondary_entry();
}

/// Records the CPUs (the boot CPU already running, the others off). Call once,
/// on the boot CPU, before the host runs.
pub fn init(cpus: Vec<&'static PerCpu>) {
    CPUS.call_once(|| cpus);
}

fn cpus() -> &'static [&'static PerCpu] {
    CPUS.get().map_or(&[], Vec::as_slice)
}

/// The host's PSCI CPU_ON(`target` MPIDR, `entry`, `context`): the PSCI
/// status. `psci`: the platform has PSCI firmware to start CPUs with.
pub fn host_cpu_on(psci: bool, target: u64, entry: u64, context: u64) -> i64 {
    if !psci {
        return PSCI_NOT_SUPPORTED;
    }
    let Some(cpu) = cpus().iter().find(|c| c.mpidr & MPIDR_AFFINITY_MASK == target & MPIDR_AFFINITY_MASK) else {
        return PSCI_INVALID_PARAMETERS;
    };
    match cpu.power.compare_exchange(CPU_OFF, CPU_BOOTING, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => {}
        Err(CPU_BOOTING) => return PSCI_ON_PENDING,
        Err(_) => return PSCI_ALREADY_ON,
    }
    // The CPU is ours to prepare until it runs.
    cpu.host_entry.store(entry, Ordering::Relaxed);
    cpu.host_context.store(context, Ordering::Relaxed);
    // The new CPU reads its PerCpu with its MMU (and caches) off.
    cache::clean_invalidate(*cpu as *const PerCpu as usize, core::mem::size_of::<PerCpu>());
    let hyp_entry = secondary_entry as *const () as u64;
    let status =
        crate::power::psci_call(PSCI_CPU_ON_64, [cpu.mpidr, hyp_entry, *cpu as *const PerCpu as u64])[0] as i64;
    if status != 0 {
        cpu.power.store(CPU_OFF, Ordering::Release);
        log::warn!("CPU_ON of MPIDR {:#x}: the firmware answered {status}", cpu.mpidr);
    }
    status
}

/// The host's PSCI CPU_OFF on this CPU: returns only if the firmware refuses.
pub fn host_cpu_off() -> i64 {
    let cpu = crate::arch::aarch64::percpu::this_cpu();
    log::info!("CPU {} (MPIDR {:#x}) off at the host's request", cpu.index, cpu.mpidr);
    cpu.power.store(CPU_OFF, Ordering::Release);
    let status = crate::power::psci_call(PSCI_CPU_OFF, [0; 3])[0] as i64;
    cpu.power.store(CPU_ON, Ordering::Release);
    status
}
