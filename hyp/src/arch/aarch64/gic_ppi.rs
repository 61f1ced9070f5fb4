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

const IGROUPR0: usize = 0x80;
const ISENABLER0: usize = 0x100;
const ICENABLER0: usize = 0x180;
const ISPENDR0: usize = 0x200;
const ICPENDR0: usize = 0x280;
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

    /// Enables (`true`) or disables `intid` (a PPI) on this CPU.
    pub fn set_enabled(self, intid: u32, enabled: bool) {
        if !self.exists() {
            return;
        }
        let offset = if enabled { ISENABLER0 } else { ICENABLER0 };
        // SAFETY: As for `set_active`: only the bit of `intid`, a PPI the hyp
        // owns (the EL2 physical timer's).
        unsafe { core::ptr::write_volatile((self.0 + offset) as *mut u32, 1 << (intid % 32)) };
    }

    /// Whether `intid` is enabled on this CPU.
    pub fn is_enabled(self, intid: u32) -> bool {
        self.exists() && self.read(ISENABLER0) & 1 << (intid % 32) != 0
    }

    /// Puts `intid` back in group 0 (undoing [`PpiFrame::set_group1`] for a
    /// PPI the hyp borrowed from the host for a run).
    pub fn set_group0(self, intid: u32) {
        if !self.exists() {
            return;
        }
        let address = (self.0 + IGROUPR0) as *mut u32;
        // SAFETY: As for `move_to_group1`.
        unsafe { core::ptr::write_volatile(address, core::ptr::read_volatile(address) & !(1 << (intid % 32))) };
    }

    fn read(self, offset: usize) -> u32 {
        // SAFETY: As for `set_active`; the caller checked that the frame
        // exists, and a read of these registers has no side effect.
        unsafe { core::ptr::read_volatile((self.0 + offset) as *const u32) }
    }

    /// Puts `intid` (a PPI the hyp owns) in group 1, which the host's CPU
    /// interface signals as an IRQ (GICv3; a GICv2 without security keeps
    /// group 0, which it signals as an IRQ too).
    pub fn set_group1(self, intid: u32) {
        self.move_to_group1(intid);
    }

    /// [`PpiFrame::set_group1`], unless `intid` is there already; says
    /// whether it moved it (one read of the register either way).
    pub fn move_to_group1(self, intid: u32) -> bool {
        if !self.exists() {
            return false;
        }
        let address = (self.0 + IGROUPR0) as *mut u32;
        let bit = 1 << (intid % 32);
        // SAFETY: As for `set_active`; read-modify-write of the one bit of a
        // PPI the hyp owns, on this CPU, before the host runs on it.
        unsafe {
            let groups = core::ptr::read_volatile(address);
            if groups & bit != 0 {
                return false;
            }
            core::ptr::write_volatile(address, groups | bit);
        }
        true
    }

    /// If `intid` (the host's kick SGI, GICv3: its redistributor clears an
    /// SGI's pending state through ICPENDR0) is pending on this CPU, clears it
    /// and says so.
    pub fn take_pending(self, intid: u32) -> bool {
        if !self.exists() {
            return false;
        }
        let bit = 1 << (intid % 32);
        // SAFETY: As for `set_active`; a read, then a write of the one bit of
        // the SGI the host named as its kick (`hyp_abi::RunFlags`).
        unsafe {
            if core::ptr::read_volatile((self.0 + ISPENDR0) as *const u32) & bit == 0 {
                return false;
            }
            core::ptr::write_volatile((self.0 + ICPENDR0) as *mut u32, bit);
        }
        true
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
