//! The guest's virtual timer (CNTV_*), as the hyp sees it between and during
//! runs: whether its output is asserted, and when it will be. The timer
//! interrupt (PPI 27) is level-triggered: the hyp presents it whenever the
//! vCPU enters with its timer asserted and the interrupt not already in a list
//! register, and a guest waiting in WFI for it leaves the CPU to the host until
//! its deadline.

#![forbid(unsafe_code)]

/// The virtual timer's PPI.
pub const VTIMER_INTID: u32 = 27;
/// CNTV_CTL_EL0.ENABLE and .IMASK.
const CTL_ENABLE: u64 = 1;
const CTL_IMASK: u64 = 1 << 1;

/// Whether the timer (`ctl`, `cval`) asserts its interrupt at virtual count `now`.
pub fn asserted(ctl: u64, cval: u64, now: u64) -> bool {
    ctl & (CTL_ENABLE | CTL_IMASK) == CTL_ENABLE && now >= cval
}

/// The physical count at which the timer fires, given the VM's counter offset
/// (virtual = physical - `cntvoff`); `u64::MAX` if it is off or masked.
pub fn deadline(ctl: u64, cval: u64, cntvoff: u64) -> u64 {
    if ctl & (CTL_ENABLE | CTL_IMASK) == CTL_ENABLE {
        cval.saturating_add(cntvoff)
    } else {
        u64::MAX
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_enabled_unmasked_expired_timer_asserts() {
        assert!(asserted(CTL_ENABLE, 100, 100));
        assert!(!asserted(CTL_ENABLE, 101, 100), "not yet");
        assert!(!asserted(CTL_ENABLE | CTL_IMASK, 100, 200), "masked");
        assert!(!asserted(0, 100, 200), "off");
    }

    #[test]
    fn deadlines_are_physical() {
        assert_eq!(deadline(CTL_ENABLE, 1000, 50), 1050);
        assert_eq!(deadline(CTL_ENABLE, u64::MAX - 1, 50), u64::MAX, "saturates");
        assert_eq!(deadline(CTL_ENABLE | CTL_IMASK, 1000, 50), u64::MAX);
        assert_eq!(deadline(0, 1000, 50), u64::MAX);
    }
}
