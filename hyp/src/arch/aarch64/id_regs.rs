//! Reading the CPU's ID registers by encoding, for the guests' sanitised view
//! (`vm::sysreg`): Op0 3, Op1 0, CRn 0, CRm 1..7, any Op2; and REVIDR_EL1 and
//! AIDR_EL1, which guests read through the hyp (HCR_EL2.TID1).

use crate::arch::sysreg::{SysReg, AIDR_EL1, REVIDR_EL1};
use core::arch::asm;

macro_rules! id_register_reads {
    ($($crm:literal: [$($op2:literal),*]),* $(,)?) => {
        /// The hardware value of ID register `reg`, or of REVIDR_EL1 or
        /// AIDR_EL1 (0 for an encoding outside the ID space, which the caller
        /// does not ask for).
        pub fn read_id_register(reg: SysReg) -> u64 {
            let value: u64;
            match (reg.crm, reg.op2) {
                // SAFETY: Reading REVIDR_EL1 or AIDR_EL1 has no side effect.
                _ if reg == REVIDR_EL1 => unsafe {
                    asm!("mrs {}, revidr_el1", out(reg) value, options(nomem, nostack, preserves_flags))
                },
                // SAFETY: As above.
                _ if reg == AIDR_EL1 => unsafe {
                    asm!("mrs {}, aidr_el1", out(reg) value, options(nomem, nostack, preserves_flags))
                },
                $($(
                    // SAFETY: Reading an ID register has no side effect.
                    ($crm, $op2) => unsafe {
                        asm!(concat!("mrs {}, S3_0_C0_C", $crm, "_", $op2), out(reg) value, options(nomem, nostack, preserves_flags))
                    },
                )*)*
                _ => value = 0,
            }
            value
        }
    };
}

id_register_reads! {
    1: [0, 1, 2, 3, 4, 5, 6, 7],
    2: [0, 1, 2, 3, 4, 5, 6, 7],
    3: [0, 1, 2, 3, 4, 5, 6, 7],
    4: [0, 1, 2, 3, 4, 5, 6, 7],
    5: [0, 1, 2, 3, 4, 5, 6, 7],
    6: [0, 1, 2, 3, 4, 5, 6, 7],
    7: [0, 1, 2, 3, 4, 5, 6, 7],
}
