//! A device's registers, reached by offset from its base: plain volatile
//! accesses, which are device accesses already (the shim's MMU is off).

/// The register block of one device the host has (the hyp maps it for the
/// host).
#[derive(Clone, Copy, Debug)]
pub struct Registers {
    base: u64,
}

impl Registers {
    /// The registers at `base`.
    ///
    /// # Safety
    ///
    /// `base` must be the register block of a device the host has, at
    /// least as large as the offsets its users pass, where their accesses
    /// (of the widths they use, aligned) touch no memory of the shim's.
    pub const unsafe fn new(base: u64) -> Registers {
        Registers { base }
    }

    pub fn read32(self, offset: u64) -> u32 {
        // SAFETY: A register of the device `new` was given (its contract).
        unsafe { core::ptr::read_volatile((self.base + offset) as *const u32) }
    }

    pub fn write32(self, offset: u64, value: u32) {
        // SAFETY: As in `read32`.
        unsafe { core::ptr::write_volatile((self.base + offset) as *mut u32, value) }
    }

    pub fn read64(self, offset: u64) -> u64 {
        // SAFETY: As in `read32`.
        unsafe { core::ptr::read_volatile((self.base + offset) as *const u64) }
    }

    pub fn write64(self, offset: u64, value: u64) {
        // SAFETY: As in `read32`.
        unsafe { core::ptr::write_volatile((self.base + offset) as *mut u64, value) }
    }

    pub fn write8(self, offset: u64, value: u8) {
        // SAFETY: As in `read32` (byte-accessible registers only).
        unsafe { core::ptr::write_volatile((self.base + offset) as *mut u8, value) }
    }
}
