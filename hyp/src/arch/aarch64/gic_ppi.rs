//! The physical GIC's state of this CPU's private peripheral interrupts, where
//! the hyp needs it: the virtual timer's PPI is kept *active* while the guest's
//! timer output is high, so that the physical interrupt does not fire again
//! and again while the guest has not yet handled the virtual one. The list
//! register ties the two (HW bit): the guest's deactivation of the virtual
//! interrupt deactivates the physical one, and if the timer is still asserted
//! it fires again, as a level-triggered interrupt should.
//!
//! Both GIC versions keep the banked PPI state at the same offsets: GICv2 in
//! the distributor (banked per CPU), GICv3 in the CPU's redistributor SGI frame.

const ISACTIVER0: usize = 0x300;
const ICACTIVER0: usize = 0x380;

/// A CPU's frame holding its banked PPI registers (0: none known).
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct PpiFrame(pub usize);

impl PpiFrame {
    pub fn exists(self) -> bool {
        self.0 != 0
    }

    /// Makes `intid` (a PPI) active (`true`) or not, on this CPU.
    pub fn set_active(self, intid: u32, active: bool) {
        if !self.exists() {
            return;
        }
        let offset = if active { ISACTIVER0 } else { ICACTIVER0 };
        // SAFETY: The frame is this CPU's (boot found it) and mapped as device
        // memory for the hyp; the write touches only the bit of `intid`, which
        // the hyp owns while a guest runs.
        unsafe { core::ptr::write_volatile((self.0 + offset) as *mut u32, 1 << (intid % 32)) };
    }

    /// Whether `intid` is active on this CPU.
    pub fn is_active(self, intid: u32) -> bool {
        if !self.exists() {
            return false;
        }
        // SAFETY: As for `set_active`; a read has no side effect.
        let bits = unsafe { core::ptr::read_volatile((self.0 + ISACTIVER0) as *const u32) };
        bits & (1 << (intid % 32)) != 0
    }
}
