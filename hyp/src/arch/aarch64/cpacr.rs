//! The running guest's CPACR_EL1, live in the CPU while it runs: its accesses
//! trap (CPTR_EL2.TCPAC) and `vm::sysreg` decides what the hardware register
//! holds and what the guest reads.

use core::arch::asm;

/// CPACR_EL1 as it is now.
pub fn read() -> u64 {
    let value: u64;
    // SAFETY: Reading CPACR_EL1 has no side effect.
    unsafe { asm!("mrs {}, cpacr_el1", out(reg) value, options(nomem, nostack, preserves_flags)) };
    value
}

/// Sets CPACR_EL1 (the running guest's: the world switch saves it at the exit).
pub fn write(value: u64) {
    // SAFETY: CPACR_EL1 controls EL1's and EL0's access to FP/SIMD, SVE, SME
    // and trace; while a guest's EL1 state is loaded it is the guest's, and
    // EL2's own accesses are governed by CPTR_EL2, not by it. The ISB makes
    // the new value apply to the guest's next instruction.
    unsafe { asm!("msr cpacr_el1, {}", "isb", in(reg) value, options(nostack, preserves_flags)) };
}
