//! Counting instructions with the PMU cycle counter: under QEMU's
//! `-icount shift=0` it advances exactly once per instruction, at every
//! exception level (PMCCFILTR_EL0.NSH lets it count at EL2 too; the hyp
//! leaves the PMU to the host). Used by the benchmarks and by the Linux
//! guest's boot-time figure.

use core::arch::asm;

/// PMCR_EL0: E (0) enable, C (2) reset the cycle counter, LC (6) 64-bit overflow.
const PMCR_ENABLE: u64 = 1 | 1 << 2 | 1 << 6;
/// PMCCFILTR_EL0: NSH (27) count at EL2 as well.
const PMCCFILTR_COUNT_EL2: u64 = 1 << 27;

/// Starts the cycle counter from zero.
pub fn start() {
    // SAFETY: Programming the PMU from EL1 has no memory-safety effect; the hyp
    // leaves the PMU to the host (MDCR_EL2.TPM clear).
    unsafe {
        asm!(
            "msr pmccfiltr_el0, {f}",
            "msr pmcntenset_el0, {c}",
            "msr pmcr_el0, {e}",
            "isb",
            f = in(reg) PMCCFILTR_COUNT_EL2,
            c = in(reg) 1u64 << 31,
            e = in(reg) PMCR_ENABLE,
            options(nostack),
        );
    }
}

/// Instructions so far (under -icount shift=0).
pub fn now() -> u64 {
    let value: u64;
    // SAFETY: Reading the cycle counter has no side effect.
    unsafe { asm!("isb", "mrs {}, pmccntr_el0", out(reg) value, options(nomem, nostack)) };
    value
}
