//! Arm PrimeCell UART (PL011): polled transmit, and polled receive for a host
//! that forwards its console input (the host shim's Linux guest).
//!
//! The firmware or bootloader has already configured baud rate and line control
//! (as the Linux boot protocol assumes for the `stdout-path` UART), so we only make
//! sure the UART and its transmitter are enabled and then poll `FR.TXFF`.

use crate::ConsoleWrite;
use tock_registers::interfaces::{ReadWriteable, Readable, Writeable};
use tock_registers::register_bitfields;
use tock_registers::register_structs;
use tock_registers::registers::{ReadOnly, ReadWrite};

register_bitfields! [u32,
    /// Data register.
    DR [
        DATA OFFSET(0) NUMBITS(8) []
    ],
    /// Flag register.
    FR [
        /// Receive FIFO empty.
        RXFE OFFSET(4) NUMBITS(1) [],
        /// Transmit FIFO full.
        TXFF OFFSET(5) NUMBITS(1) [],
        /// UART busy transmitting.
        BUSY OFFSET(3) NUMBITS(1) []
    ],
    /// Control register.
    CR [
        UARTEN OFFSET(0) NUMBITS(1) [],
        TXE OFFSET(8) NUMBITS(1) []
    ]
];

register_structs! {
    /// PL011 register block (Arm DDI 0183, section 3.2).
    pub Pl011Registers {
        (0x000 => dr: ReadWrite<u32, DR::Register>),
        (0x004 => _reserved0),
        (0x018 => fr: ReadOnly<u32, FR::Register>),
        (0x01c => _reserved1),
        (0x030 => cr: ReadWrite<u32, CR::Register>),
        (0x034 => _reserved2),
        (0x1000 => @END),
    }
}

/// Size of the PL011 register window that must be mapped.
pub const PL011_MMIO_SIZE: usize = 0x1000;

/// A PL011 UART at a fixed MMIO address.
pub struct Pl011 {
    registers: &'static Pl011Registers,
}

impl Pl011 {
    /// Takes the PL011 whose registers are at `base`.
    ///
    /// # Safety
    ///
    /// `base` must be the address (as seen by the current translation regime) of a
    /// PL011 register block mapped as device memory for `'static`, and nothing else
    /// may treat that memory as ordinary memory.
    pub unsafe fn new(base: usize) -> Self {
        // SAFETY: The caller guarantees `base` is a live, device-mapped PL011 block.
        let registers = unsafe { &*(base as *const Pl011Registers) };
        registers.cr.modify(CR::UARTEN::SET + CR::TXE::SET);
        Self { registers }
    }

    /// Takes the PL011 at `base` as it is, without touching its control register.
    ///
    /// # Safety
    ///
    /// As for [`Pl011::new`].
    pub unsafe fn attach(base: usize) -> Self {
        // SAFETY: The caller guarantees `base` is a live, device-mapped PL011 block.
        let registers = unsafe { &*(base as *const Pl011Registers) };
        Self { registers }
    }

    fn write_byte(&self, byte: u8) {
        while self.registers.fr.is_set(FR::TXFF) {
            core::hint::spin_loop();
        }
        self.registers.dr.write(DR::DATA.val(byte.into()));
    }

    /// The next received byte, if one is waiting (errors in the upper bits of
    /// the data register are dropped with the byte's status).
    pub fn read_byte(&self) -> Option<u8> {
        if self.registers.fr.is_set(FR::RXFE) {
            return None;
        }
        Some(self.registers.dr.read(DR::DATA) as u8)
    }

    /// Waits until every queued byte has left the transmitter (used before power-off,
    /// so that the last line is not lost).
    pub fn flush(&self) {
        while self.registers.fr.is_set(FR::BUSY) {
            core::hint::spin_loop();
        }
    }
}

impl ConsoleWrite for Pl011 {
    fn write_bytes(&self, bytes: &[u8]) {
        for &byte in bytes {
            if byte == b'\n' {
                self.write_byte(b'\r');
            }
            self.write_byte(byte);
        }
    }
}
