//! Counting instructions with the PMU: under QEMU's `-icount shift=0` the
//! cycle counter advances exactly once per instruction, at every exception
//! level (PMCCFILTR_EL0.NSH lets it count at EL2 too; the hyp leaves the PMU
//! to the host), and event counter 0 counts the instructions retired at EL2
//! alone (INST_RETIRED filtered to EL2), so that each figure's EL2 share is
//! measured rather than estimated. Used by the benchmarks and by the Linux
//! guest's boot-time figure.

use core::arch::asm;
#[cfg(feature = "bench")]
use core::ops::Sub;

/// PMCR_EL0: E (0) enable, P (1) reset the event counters, C (2) reset the
/// cycle counter, LC (6) 64-bit cycle counter overflow.
const PMCR_ENABLE: u64 = 1 | 1 << 1 | 1 << 2 | 1 << 6;
/// PMCCFILTR_EL0: NSH (27) count at EL2 as well.
const PMCCFILTR_COUNT_EL2: u64 = 1 << 27;
/// PMEVTYPER0_EL0: P (31) not at EL1, U (30) not at EL0, NSH (27) at EL2;
/// event 0x08, INST_RETIRED (QEMU counts it under -icount).
const PMEVTYPER_EL2_INSTRUCTIONS: u64 = 1 << 31 | 1 << 30 | 1 << 27 | 0x08;
/// PMCNTENSET_EL0: the cycle counter (31) and event counter 0.
const COUNTERS: u64 = 1 << 31 | 1;

/// Starts the cycle counter and the EL2 instruction counter from zero.
pub fn start() {
    // SAFETY: Programming the PMU from EL1 has no memory-safety effect; the hyp
    // leaves the PMU to the host (MDCR_EL2.TPM clear, HPMN = PMCR_EL0.N).
    unsafe {
        asm!(
            "msr pmccfiltr_el0, {f}",
            "msr pmselr_el0, xzr",
            "isb",
            "msr pmxevtyper_el0, {t}",
            "msr pmcntenset_el0, {c}",
            "msr pmcr_el0, {e}",
            "isb",
            f = in(reg) PMCCFILTR_COUNT_EL2,
            t = in(reg) PMEVTYPER_EL2_INSTRUCTIONS,
            c = in(reg) COUNTERS,
            e = in(reg) PMCR_ENABLE,
            options(nostack),
        );
    }
}

/// Instructions so far at all exception levels (under -icount shift=0).
pub fn now() -> u64 {
    let value: u64;
    // SAFETY: Reading the cycle counter has no side effect.
    unsafe { asm!("isb", "mrs {}, pmccntr_el0", out(reg) value, options(nomem, nostack)) };
    value
}

/// Instructions so far: all, and those at EL2 (the benchmarks' figures).
#[cfg(feature = "bench")]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub all: u64,
    pub el2: u64,
}

/// Both counters, read back to back (the read of the second is in neither).
#[cfg(feature = "bench")]
pub fn counts() -> Counts {
    let (all, el2): (u64, u64);
    // SAFETY: Reading the counters has no side effect.
    unsafe {
        asm!(
            "isb",
            "mrs {a}, pmccntr_el0",
            "mrs {e}, pmevcntr0_el0",
            a = out(reg) all,
            e = out(reg) el2,
            options(nomem, nostack),
        );
    }
    Counts { all, el2 }
}

#[cfg(feature = "bench")]
impl Sub for Counts {
    type Output = Counts;
    fn sub(self, earlier: Counts) -> Counts {
        Counts { all: self.all.wrapping_sub(earlier.all), el2: self.el2.wrapping_sub(earlier.el2) }
    }
}

#[cfg(feature = "bench")]
impl Counts {
    /// Less `other`, never below zero.
    pub fn saturating_sub(self, other: Counts) -> Counts {
        Counts { all: self.all.saturating_sub(other.all), el2: self.el2.saturating_sub(other.el2) }
    }

    /// Each count divided by `n`.
    pub fn per(self, n: u64) -> Counts {
        let n = n.max(1);
        Counts { all: self.all / n, el2: self.el2 / n }
    }
}
