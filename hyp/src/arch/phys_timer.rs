//! The guest's EL1 physical timer (CNTP_CTL_EL0, CNTP_CVAL_EL0,
//! CNTP_TVAL_EL0), emulated: the hardware's EL1 physical timer stays the
//! host's (CNTHCTL_EL2.EL1PCEN is clear while a guest runs, so each access
//! traps as a system-register access, EC 0x18) and the guest's is this pair
//! of values, per vCPU. Its counter is the physical one (CNTPCT_EL0, which
//! the guest reads directly; there is no CNTPOFF), so the compare value is a
//! physical count and needs no offset. Its interrupt, PPI 30, is purely
//! virtual and follows the timer's output level: the hyp raises it when the
//! output is asserted (at entry, when the EL2 timer it arms at the deadline
//! fires, at the guest's accesses and traps) and lowers it when the guest
//! disables, masks or re-arms the timer into the future.
//!
//! The registers read as QEMU's and the Arm ARM's timers: ISTATUS is set
//! only while the timer is enabled and its condition met; TVAL reads the low
//! 32 bits of CVAL minus the count (negative after expiry), and a write sets
//! CVAL to the count plus the value sign-extended from 32 bits.

#![forbid(unsafe_code)]

use crate::arch::sysreg::SysReg;

/// The EL1 physical timer's PPI (the device tree's non-secure physical PPI).
pub const PTIMER_INTID: u32 = 30;
/// CNTP_CTL_EL0.ENABLE, .IMASK and .ISTATUS.
const CTL_ENABLE: u64 = 1;
const CTL_IMASK: u64 = 1 << 1;
const CTL_ISTATUS: u64 = 1 << 2;

/// One of the timer's registers.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum PhysTimerReg {
    /// CNTP_TVAL_EL0 (Op0 3, Op1 3, CRn 14, CRm 2, Op2 0).
    Tval,
    /// CNTP_CTL_EL0 (Op2 1).
    Ctl,
    /// CNTP_CVAL_EL0 (Op2 2).
    Cval,
}

impl PhysTimerReg {
    /// The timer register `reg` names, if it is one.
    pub fn decode(reg: SysReg) -> Option<PhysTimerReg> {
        match reg {
            SysReg { op0: 3, op1: 3, crn: 14, crm: 2, op2: 0 } => Some(PhysTimerReg::Tval),
            SysReg { op0: 3, op1: 3, crn: 14, crm: 2, op2: 1 } => Some(PhysTimerReg::Ctl),
            SysReg { op0: 3, op1: 3, crn: 14, crm: 2, op2: 2 } => Some(PhysTimerReg::Cval),
            _ => None,
        }
    }
}

/// A vCPU's physical timer: its control (ENABLE and IMASK; ISTATUS is
/// computed) and compare value. Out of reset: off.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct PhysTimer {
    pub ctl: u64,
    pub cval: u64,
}

impl PhysTimer {
    /// Whether the timer condition is met at physical count `now` (enabled
    /// and expired, masked or not): ISTATUS.
    pub fn status(&self, now: u64) -> bool {
        self.ctl & CTL_ENABLE != 0 && now >= self.cval
    }

    /// Whether the timer's output (its interrupt's line) is asserted at `now`.
    pub fn asserted(&self, now: u64) -> bool {
        self.ctl & CTL_IMASK == 0 && self.status(now)
    }

    /// Whether the timer is enabled and unmasked: its output rises at its
    /// compare value.
    pub fn armed(&self) -> bool {
        self.ctl & (CTL_ENABLE | CTL_IMASK) == CTL_ENABLE
    }

    /// The physical count at which the output rises; `u64::MAX` if it is off
    /// or masked.
    pub fn deadline(&self) -> u64 {
        if self.armed() {
            self.cval
        } else {
            u64::MAX
        }
    }

    /// What the guest reads from `reg` at physical count `now`.
    pub fn read(&self, reg: PhysTimerReg, now: u64) -> u64 {
        match reg {
            PhysTimerReg::Ctl => self.ctl | if self.status(now) { CTL_ISTATUS } else { 0 },
            PhysTimerReg::Cval => self.cval,
            PhysTimerReg::Tval => u64::from(self.cval.wrapping_sub(now) as u32),
        }
    }

    /// The guest writes `value` to `reg` at physical count `now`.
    pub fn write(&mut self, reg: PhysTimerReg, value: u64, now: u64) {
        match reg {
            PhysTimerReg::Ctl => self.ctl = value & (CTL_ENABLE | CTL_IMASK),
            PhysTimerReg::Cval => self.cval = value,
            PhysTimerReg::Tval => self.cval = now.wrapping_add(value as u32 as i32 as i64 as u64),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CTL: SysReg = SysReg { op0: 3, op1: 3, crn: 14, crm: 2, op2: 1 };

    #[test]
    fn the_three_registers_decode_and_nothing_else() {
        assert_eq!(PhysTimerReg::decode(SysReg { op2: 0, ..CTL }), Some(PhysTimerReg::Tval));
        assert_eq!(PhysTimerReg::decode(CTL), Some(PhysTimerReg::Ctl));
        assert_eq!(PhysTimerReg::decode(SysReg { op2: 2, ..CTL }), Some(PhysTimerReg::Cval));
        assert_eq!(PhysTimerReg::decode(SysReg { crm: 3, ..CTL }), None, "CNTV_CTL_EL0 is the hardware's");
        assert_eq!(PhysTimerReg::decode(SysReg { op1: 7, ..CTL }), None, "CNTPS_CTL_EL1");
        assert_eq!(PhysTimerReg::decode(SysReg { crm: 0, op2: 1, ..CTL }), None, "CNTPCT_EL0");
    }

    #[test]
    fn istatus_is_set_only_while_enabled_and_expired_masked_or_not() {
        let mut t = PhysTimer::default();
        t.write(PhysTimerReg::Cval, 100, 0);
        t.write(PhysTimerReg::Ctl, CTL_ENABLE, 0);
        assert_eq!(t.read(PhysTimerReg::Ctl, 99), CTL_ENABLE, "not yet");
        assert_eq!(t.read(PhysTimerReg::Ctl, 100), CTL_ENABLE | CTL_ISTATUS);
        assert!(t.asserted(100) && !t.asserted(99));
        t.write(PhysTimerReg::Ctl, CTL_ENABLE | CTL_IMASK | CTL_ISTATUS, 0);
        assert_eq!(t.read(PhysTimerReg::Ctl, 200), 0b111, "masked: ISTATUS still set, ISTATUS not writable");
        assert!(!t.asserted(200), "masked: output low");
        t.write(PhysTimerReg::Ctl, 0, 0);
        assert_eq!(t.read(PhysTimerReg::Ctl, 200), 0, "disabled: ISTATUS clear");
        assert!(!t.asserted(200));
    }

    #[test]
    fn tval_counts_down_and_goes_negative_after_expiry() {
        let mut t = PhysTimer::default();
        t.write(PhysTimerReg::Tval, 1000, 5000);
        assert_eq!(t.read(PhysTimerReg::Cval, 0), 6000);
        assert_eq!(t.read(PhysTimerReg::Tval, 5400), 600);
        assert_eq!(t.read(PhysTimerReg::Tval, 6010) as u32 as i32, -10, "32 bits, negative");
        assert_eq!(t.read(PhysTimerReg::Tval, 6010) >> 32, 0, "bits 63:32 read as zero");
        t.write(PhysTimerReg::Tval, (-50i64) as u64, 5000);
        assert_eq!(t.cval, 4950, "a negative value puts the compare value in the past");
        t.write(PhysTimerReg::Tval, 0xffff_ffff_0000_0010, 5000);
        assert_eq!(t.cval, 5016, "only the low 32 bits count");
    }

    #[test]
    fn the_deadline_is_the_compare_value_of_an_armed_timer() {
        let mut t = PhysTimer { ctl: CTL_ENABLE, cval: 1234 };
        assert_eq!(t.deadline(), 1234);
        t.ctl |= CTL_IMASK;
        assert_eq!(t.deadline(), u64::MAX, "masked");
        t.ctl = 0;
        assert_eq!(t.deadline(), u64::MAX, "off");
    }
}
