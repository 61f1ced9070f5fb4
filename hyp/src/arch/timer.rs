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

/// The count at which a timer without an offset (the host's: its virtual
/// count is the physical one) fires; `u64::MAX` if it is off or masked.
pub fn deadline(ctl: u64, cval: u64) -> u64 {
    if ctl & (CTL_ENABLE | CTL_IMASK) == CTL_ENABLE {
        cval
    } else {
        u64::MAX
    }
}

/// The physical count at which a VM's timer fires, at physical count `now`,
/// given the VM's counter offset (virtual = physical - `cntvoff`, modulo
/// 2^64, as the CPU counts it: a host may set the virtual count ahead of the
/// physical one); `now` if it fired already, `u64::MAX` if it is off or
/// masked (or beyond the physical count's range).
pub fn deadline_with_offset(ctl: u64, cval: u64, cntvoff: u64, now: u64) -> u64 {
    let virtual_now = now.wrapping_sub(cntvoff);
    match deadline(ctl, cval) {
        u64::MAX => u64::MAX,
        due if due <= virtual_now => now,
        due => now.saturating_add(due - virtual_now),
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
        assert_eq!(deadline_with_offset(CTL_ENABLE, 1000, 50, 60), 1050);
        assert_eq!(deadline_with_offset(CTL_ENABLE, u64::MAX - 1, 50, 60), u64::MAX, "saturates");
        assert_eq!(deadline_with_offset(CTL_ENABLE | CTL_IMASK, 1000, 50, 60), u64::MAX);
        assert_eq!(deadline_with_offset(0, 1000, 50, 60), u64::MAX);
        assert_eq!(deadline(CTL_ENABLE, 1000), 1000);
        assert_eq!(deadline(CTL_ENABLE | CTL_IMASK, 1000), u64::MAX);
        // A virtual count set 2^40 ahead of the physical one (the offset
        // wraps): its deadline is still 2000 physical ticks on, not "never".
        let ahead = 0u64.wrapping_sub(1 << 40);
        assert_eq!(deadline_with_offset(CTL_ENABLE, (1 << 40) + 3000, ahead, 1000), 3000);
        assert_eq!(deadline_with_offset(CTL_ENABLE, 5, ahead, 1000), 1000, "fired already");
    }
}
