//! Arm PrimeCell UART (PL011): polled transmit, and polled receive for a host
//! that forwards its console input (the host shim's Linux guest).
//!
//! The firmware or bootloader has already configured baud rate and line control
//! (as the Linux boot protocol assumes for the `stdout-path` UART), so we only make
//! sure the UART and its transmitter are enabled and then poll `FR.TXFF`, with
//! the budget of [`crate::tx`]: the host shares this UART and may switch it off
//! or hold its FIFO full.

use crate::tx::Transmitter;
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
        BUSY OFFSET(3) NUMBITS(1) [],
        /// Transmit FIFO empty.
        TXFE OFFSET(7) NUMBITS(1) []
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

    /// The next received byte, if one is waiting (errors in the upper bits of
    /// the data register are dropped with the byte's status).
    pub fn read_byte(&self) -> Option<u8> {
        if self.registers.fr.is_set(FR::RXFE) {
            return None;
        }
        Some(self.registers.dr.read(DR::DATA) as u8)
    }
}

impl Transmitter for Pl011 {
    fn enabled(&self) -> bool {
        self.registers.cr.matches_all(CR::UARTEN::SET + CR::TXE::SET)
    }

    fn has_room(&self) -> bool {
        !self.registers.fr.is_set(FR::TXFF)
    }

    /// BUSY is set while the FIFO holds a byte or one is being shifted out,
    /// whether or not the UART is enabled.
    fn idle(&self) -> bool {
        !self.registers.fr.is_set(FR::BUSY)
    }

    fn push(&self, byte: u8) {
        self.registers.dr.write(DR::DATA.val(byte.into()));
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use crate::tx::{Sent, TxState};
    use std::boxed::Box;
    use std::time::{Duration, Instant};

    /// A PL011 register block in ordinary memory: whatever the test stores in
    /// FR stays there, so a FIFO marked full never drains.
    #[repr(C, align(4096))]
    struct FakeBlock([u32; PL011_MMIO_SIZE / 4]);

    const DR_INDEX: usize = 0;
    const FR_INDEX: usize = 0x18 / 4;
    const CR_INDEX: usize = 0x30 / 4;
    const FR_TXFF: u32 = 1 << 5;
    const FR_BUSY: u32 = 1 << 3;
    const CR_ON: u32 = 1 | 1 << 8;

    fn fake(fr: u32, cr: u32) -> &'static mut FakeBlock {
        let mut block = Box::new(FakeBlock([0; PL011_MMIO_SIZE / 4]));
        block.0[FR_INDEX] = fr;
        block.0[CR_INDEX] = cr;
        Box::leak(block)
    }

    fn read(block: &FakeBlock, index: usize) -> u32 {
        // SAFETY: An aligned element of a live array; volatile because the
        // driver wrote it through another reference.
        unsafe { core::ptr::read_volatile(&block.0[index]) }
    }

    #[test]
    fn a_pl011_whose_fifo_never_drains_returns_after_the_budget_and_drops_the_line() {
        let block = fake(FR_TXFF | FR_BUSY, CR_ON);
        // SAFETY: The block is leaked (lives for 'static) and only read and
        // written through volatile accesses from here on.
        let uart = unsafe { Pl011::attach(block as *mut FakeBlock as usize) };
        let state = TxState::new();
        let start = Instant::now();
        let sent = state.write(&uart, b"[hyp INFO] a line nobody will see\n");
        assert_eq!(sent, Sent { written: 0, dropped: 34 });
        assert!(state.is_stuck());
        // The next lines cost one status read each: a thousand of them take
        // far less than one budget did.
        for _ in 0..1000 {
            assert_eq!(state.write(&uart, b"more\n").written, 0);
        }
        state.flush(&uart);
        assert!(start.elapsed() < Duration::from_secs(5), "took {:?}", start.elapsed());
        assert_eq!(read(block, DR_INDEX), 0, "nothing reached the data register");
        // It drains: output resumes.
        // SAFETY: As above.
        unsafe { core::ptr::write_volatile(&mut block.0[FR_INDEX], 0) };
        assert_eq!(state.take_dropped(&uart), Some(34 + 5000));
        assert_eq!(state.write(&uart, b"ok"), Sent { written: 2, dropped: 0 });
        assert_eq!(read(block, DR_INDEX), u32::from(b'k'));
    }

    #[test]
    fn a_switched_off_pl011_is_left_alone() {
        let block = fake(0, 0);
        // SAFETY: As in the test above.
        let uart = unsafe { Pl011::attach(block as *mut FakeBlock as usize) };
        let state = TxState::new();
        assert_eq!(state.write(&uart, b"off\n"), Sent { written: 0, dropped: 4 });
        assert_eq!(read(block, DR_INDEX), 0);
        assert!(!state.is_stuck(), "switched off is not stuck: it is asked again every line");
        // SAFETY: As above.
        unsafe { core::ptr::write_volatile(&mut block.0[CR_INDEX], CR_ON) };
        assert_eq!(state.write(&uart, b"on"), Sent { written: 2, dropped: 0 });
    }
}
