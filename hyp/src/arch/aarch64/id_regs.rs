//! Reading the CPU's ID registers by encoding, for the guests' sanitised view
//! (`vm::sysreg`): Op0 3, Op1 0, CRn 0, CRm 1..7, any Op2.

use crate::vm::sysreg::SysReg;
use core::arch::asm;

macro_rules! id_register_reads {
    ($($crm:literal: [$($op2:literal),*]),* $(,)?) => {
        /// The hardware value of ID register `reg` (0 for an encoding outside
        /// the ID space, which the caller does not ask for).
        pub fn read_id_register(reg: SysReg) -> u64 {
            let value: u64;
            match (reg.crm, reg.op2) {
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
