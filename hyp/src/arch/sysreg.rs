//! System-register encodings: what a trapped MSR/MRS names, decoded from its
//! ISS, and the few registers the hardware-access layer reads by encoding.

#![forbid(unsafe_code)]

/// A system register's encoding (Op0, Op1, CRn, CRm, Op2).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct SysReg {
    pub op0: u8,
    pub op1: u8,
    pub crn: u8,
    pub crm: u8,
    pub op2: u8,
}

/// A trapped MSR or MRS (ESR_EL2.EC 0x18), from its ISS.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct SysRegAccess {
    pub reg: SysReg,
    /// The general register (31: xzr).
    pub rt: u8,
    /// MRS (a read), else MSR.
    pub read: bool,
}

impl SysRegAccess {
    pub fn decode(iss: u32) -> SysRegAccess {
        let bits = |shift: u32, width: u32| ((iss >> shift) & ((1 << width) - 1)) as u8;
        SysRegAccess {
            reg: SysReg { op0: bits(20, 2), op2: bits(17, 3), op1: bits(14, 3), crn: bits(10, 4), crm: bits(1, 4) },
            rt: bits(5, 5),
            read: iss & 1 != 0,
        }
    }
}

/// REVIDR_EL1 (Op0 3, Op1 0, CRn 0, CRm 0, Op2 6) and AIDR_EL1 (Op1 1, Op2 7).
pub const REVIDR_EL1: SysReg = SysReg { op0: 3, op1: 0, crn: 0, crm: 0, op2: 6 };
pub const AIDR_EL1: SysReg = SysReg { op0: 3, op1: 1, crn: 0, crm: 0, op2: 7 };
/// CPACR_EL1 (Op0 3, Op1 0, CRn 1, CRm 0, Op2 2): a guest's accesses trap
/// (CPTR_EL2.TCPAC), so that its SVE and SME enables stay hidden.
pub const CPACR_EL1: SysReg = SysReg { op0: 3, op1: 0, crn: 1, crm: 0, op2: 2 };
/// CPACR_EL1.ZEN (17:16) and SMEN (25:24), the EL1 enables of SVE and SME,
/// which guests do not have: always set in the hardware register while a
/// guest runs, so that its accesses to SVE and SME are not trapped to EL1
/// (EC 0x19, 0x1D, as on a CPU with them) but to EL2 (CPTR_EL2.TZ, TSM),
/// where the hyp makes them UNDEFINED; and read as zero (RES0 without the
/// features).
pub const CPACR_HIDDEN_ENABLES: u64 = 3 << 16 | 3 << 24;
