//! 8250/16550-compatible UART (`ns16550a`, `snps,dw-apb-uart`, ...), transmit side.
//!
//! Boards space the registers `1 << reg-shift` bytes apart and access them with
//! `reg-io-width` bytes, both from the device tree, so the layout is not fixed at
//! compile time and cannot be a `register_structs!` block: the two accessors
//! below compute each register's address from the shift, and are the only
//! places that touch the device.

use crate::tx::Transmitter;

/// Transmit holding register (write).
const THR: usize = 0;
/// Line status register.
const LSR: usize = 5;
/// LSR: a received byte is waiting in RBR (register 0).
const LSR_DR: u32 = 1;
/// LSR: transmit holding register empty.
const LSR_THRE: u32 = 1 << 5;
/// LSR: transmitter empty (holding and shift registers).
const LSR_TEMT: u32 = 1 << 6;

/// A 16550-compatible UART at a fixed MMIO address.
pub struct Ns16550 {
    base: usize,
    reg_shift: u8,
    /// 4: 32-bit accesses; anything else: byte accesses.
    io_width: u8,
}

impl Ns16550 {
    /// Takes the UART whose registers start at `base`, `1 << reg_shift` bytes
    /// apart, accessed `io_width` bytes wide (1 or 4).
    ///
    /// # Safety
    ///
    /// `base` must be the address (in the current translation regime) of such a
    /// UART's registers, mapped as device memory for `'static`.
    pub unsafe fn attach(base: usize, reg_shift: u8, io_width: u8) -> Self {
        Self { base, reg_shift: reg_shift.min(4), io_width }
    }

    fn address(&self, register: usize) -> usize {
        self.base + (register << self.reg_shift)
    }

    fn read(&self, register: usize) -> u32 {
        let address = self.address(register);
        // SAFETY: `attach`'s contract: the register block is mapped device memory;
        // the address stays inside it (register < 8, shift <= 4).
        unsafe {
            if self.io_width == 4 {
                core::ptr::read_volatile(address as *const u32)
            } else {
                u32::from(core::ptr::read_volatile(address as *const u8))
            }
        }
    }

    fn write(&self, register: usize, value: u8) {
        let address = self.address(register);
        // SAFETY: As for `read`.
        unsafe {
            if self.io_width == 4 {
                core::ptr::write_volatile(address as *mut u32, u32::from(value));
            } else {
                core::ptr::write_volatile(address as *mut u8, value);
            }
        }
    }

    /// The next received byte, if one is waiting.
    pub fn read_byte(&self) -> Option<u8> {
        (self.read(LSR) & LSR_DR != 0).then(|| self.read(0) as u8)
    }
}

/// A 16550 has no transmitter enable; flow control (auto-CTS) or a stopped
/// clock shows as a holding register that never empties.
impl Transmitter for Ns16550 {
    fn enabled(&self) -> bool {
        true
    }

    fn has_room(&self) -> bool {
        self.read(LSR) & LSR_THRE != 0
    }

    fn idle(&self) -> bool {
        self.read(LSR) & LSR_TEMT != 0
    }

    fn push(&self, byte: u8) {
        self.write(THR, byte);
    }
}
