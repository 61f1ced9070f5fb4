//! A PL011 UART as a guest sees it (Arm DDI 0183), served from MMIO exits:
//! transmit is immediate (the transmit FIFO is always empty), receive has a
//! 32-byte FIFO the VMM fills from its own console. The interrupt is a level:
//! [`Pl011::interrupt`] says whether it is asserted: the host shim re-injects
//! it after each change while it is (the hyp's injection is an edge),
//! `hyp-vmm` drives a `KVM_IRQ_LINE` level with it.

/// Register offsets.
const DR: u64 = 0x00;
const RSR: u64 = 0x04;
pub const FR: u64 = 0x18;
const ILPR: u64 = 0x20;
const IBRD: u64 = 0x24;
const FBRD: u64 = 0x28;
const LCR_H: u64 = 0x2c;
pub const CR: u64 = 0x30;
const IFLS: u64 = 0x34;
const IMSC: u64 = 0x38;
const RIS: u64 = 0x3c;
const MIS: u64 = 0x40;
const ICR: u64 = 0x44;
const DMACR: u64 = 0x48;
const ID_FIRST: u64 = 0xfe0;
const ID_LAST: u64 = 0xffc;

/// Flag register bits.
const FR_RXFE: u32 = 1 << 4;
const FR_RXFF: u32 = 1 << 6;
const FR_TXFE: u32 = 1 << 7;
/// Interrupt bits (IMSC, RIS, MIS): receive, transmit, receive timeout.
pub const INT_RX: u32 = 1 << 4;
pub const INT_TX: u32 = 1 << 5;
pub const INT_RT: u32 = 1 << 6;
/// The bits IMSC keeps (the PL011 has 11 interrupt sources).
const INT_ALL: u32 = 0x7ff;
/// Control register enables: the UART, its transmitter.
pub const CR_UARTEN: u32 = 1;
pub const CR_TXE: u32 = 1 << 8;
/// Reset values: CR with TXE and RXE set, IFLS with both triggers at half.
const CR_RESET: u32 = 0x300;
const IFLS_RESET: u32 = 0x12;
/// PeriphID0..3 (PL011 r1p5) and PrimeCell CellID0..3.
const IDS: [u32; 8] = [0x11, 0x10, 0x34, 0x00, 0x0d, 0xf0, 0x05, 0xb1];
/// Depth of the receive FIFO.
pub const RX_FIFO_DEPTH: usize = 32;

/// The UART's state.
#[derive(Clone, Debug)]
pub struct Pl011 {
    imsc: u32,
    cr: u32,
    lcr_h: u32,
    ibrd: u32,
    fbrd: u32,
    ifls: u32,
    ilpr: u32,
    dmacr: u32,
    rx: [u8; RX_FIFO_DEPTH],
    rx_head: usize,
    rx_len: usize,
    /// Register accesses since the receive interrupts were last unmasked
    /// (saturating).
    accesses_since_rx_unmasked: u32,
}

/// Register accesses a driver gets after unmasking the receive interrupts
/// before input is offered: Linux unmasks them while it sets the port up and
/// drains the FIFO afterwards, so input offered at once would be lost.
const RX_SETTLE_ACCESSES: u32 = 16;

impl Default for Pl011 {
    fn default() -> Pl011 {
        Pl011 {
            imsc: 0,
            cr: CR_RESET,
            lcr_h: 0,
            ibrd: 0,
            fbrd: 0,
            ifls: IFLS_RESET,
            ilpr: 0,
            dmacr: 0,
            rx: [0; RX_FIFO_DEPTH],
            rx_head: 0,
            rx_len: 0,
            accesses_since_rx_unmasked: 0,
        }
    }
}

impl Pl011 {
    /// The raw interrupt status: transmit always (its FIFO is always empty),
    /// receive and receive timeout while a byte waits.
    fn raw_status(&self) -> u32 {
        let rx = if self.rx_len > 0 { INT_RX | INT_RT } else { 0 };
        INT_TX | rx
    }

    /// A guest load at `offset` in the UART's 4 KiB window.
    pub fn read(&mut self, offset: u64) -> u32 {
        self.count_access();
        match offset {
            DR => self.pop().map_or(0, u32::from),
            RSR => 0,
            FR => {
                let empty = if self.rx_len == 0 { FR_RXFE } else { 0 };
                let full = if self.rx_len == RX_FIFO_DEPTH { FR_RXFF } else { 0 };
                FR_TXFE | empty | full
            }
            ILPR => self.ilpr,
            IBRD => self.ibrd,
            FBRD => self.fbrd,
            LCR_H => self.lcr_h,
            CR => self.cr,
            IFLS => self.ifls,
            IMSC => self.imsc,
            RIS => self.raw_status(),
            MIS => self.raw_status() & self.imsc,
            DMACR => self.dmacr,
            ID_FIRST..=ID_LAST if offset.is_multiple_of(4) => {
                IDS.get(((offset - ID_FIRST) / 4) as usize).copied().unwrap_or(0)
            }
            _ => 0,
        }
    }

    /// A guest store of `value` at `offset`; the byte to transmit, if any.
    pub fn write(&mut self, offset: u64, value: u32) -> Option<u8> {
        self.count_access();
        match offset {
            DR => return Some(value as u8),
            ILPR => self.ilpr = value & 0xff,
            IBRD => self.ibrd = value & 0xffff,
            FBRD => self.fbrd = value & 0x3f,
            LCR_H => self.lcr_h = value & 0xff,
            CR => self.cr = value & 0xff87,
            IFLS => self.ifls = value & 0x3f,
            IMSC => {
                let rx = INT_RX | INT_RT;
                if self.imsc & rx == 0 && value & rx != 0 {
                    self.accesses_since_rx_unmasked = 0;
                }
                self.imsc = value & INT_ALL;
            }
            DMACR => self.dmacr = value & 0x7,
            // Every status here follows the FIFOs, so clearing changes nothing.
            ICR => {}
            // RSR's errors never happen; other offsets are reserved.
            _ => {}
        }
        None
    }

    /// Whether the interrupt line is asserted.
    pub fn interrupt(&self) -> bool {
        self.raw_status() & self.imsc != 0
    }

    fn count_access(&mut self) {
        self.accesses_since_rx_unmasked = self.accesses_since_rx_unmasked.saturating_add(1);
    }

    /// Whether the guest is ready for input: its driver has had the receive
    /// interrupts unmasked for [`RX_SETTLE_ACCESSES`] register accesses and
    /// the FIFO has room.
    pub fn wants_input(&self) -> bool {
        self.imsc & (INT_RX | INT_RT) != 0
            && self.accesses_since_rx_unmasked >= RX_SETTLE_ACCESSES
            && self.rx_len < RX_FIFO_DEPTH
    }

    /// Puts a received byte in the FIFO; false (and the byte dropped) if full.
    pub fn receive(&mut self, byte: u8) -> bool {
        if self.rx_len == RX_FIFO_DEPTH {
            return false;
        }
        self.rx[(self.rx_head + self.rx_len) % RX_FIFO_DEPTH] = byte;
        self.rx_len += 1;
        true
    }

    fn pop(&mut self) -> Option<u8> {
        if self.rx_len == 0 {
            return None;
        }
        let byte = self.rx[self.rx_head];
        self.rx_head = (self.rx_head + 1) % RX_FIFO_DEPTH;
        self.rx_len -= 1;
        Some(byte)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transmit_is_immediate_and_its_interrupt_follows_the_mask() {
        let mut uart = Pl011::default();
        assert_eq!(uart.write(DR, 0x141), Some(b'A'), "the data byte only");
        assert_eq!(uart.read(FR), FR_TXFE | FR_RXFE);
        assert!(!uart.interrupt(), "masked");
        uart.write(IMSC, INT_TX);
        assert!(uart.interrupt());
        assert_eq!(uart.read(MIS), INT_TX);
        uart.write(ICR, 0x7ff);
        assert!(uart.interrupt(), "a level: clearing does not lower it while the FIFO is empty");
        uart.write(IMSC, 0);
        assert!(!uart.interrupt());
    }

    #[test]
    fn received_bytes_come_out_in_order_and_raise_the_receive_interrupt() {
        let mut uart = Pl011::default();
        assert!(!uart.wants_input(), "not before the driver unmasks receive");
        uart.write(IMSC, INT_RX | INT_RT);
        assert!(!uart.wants_input(), "not while the port is being set up (Linux drains the FIFO next)");
        for _ in 0..RX_SETTLE_ACCESSES {
            uart.read(FR);
        }
        uart.write(IMSC, INT_RX | INT_RT | INT_TX);
        assert!(uart.wants_input(), "once the driver has settled; unmasking more does not restart the wait");
        uart.write(IMSC, 0);
        uart.write(IMSC, INT_RX);
        assert!(!uart.wants_input(), "masked and unmasked again: wait again");
        for _ in 0..RX_SETTLE_ACCESSES {
            uart.read(FR);
        }
        assert!(uart.receive(b'h') && uart.receive(b'i'));
        assert!(uart.interrupt());
        assert_eq!(uart.read(RIS) & (INT_RX | INT_RT), INT_RX | INT_RT);
        assert_eq!(uart.read(FR) & FR_RXFE, 0);
        assert_eq!((uart.read(DR), uart.read(DR)), (u32::from(b'h'), u32::from(b'i')));
        assert_eq!(uart.read(FR) & FR_RXFE, FR_RXFE);
        assert!(!uart.interrupt(), "drained");
        assert_eq!(uart.read(DR), 0, "reading an empty FIFO");
    }

    #[test]
    fn a_full_fifo_refuses_input_and_wraps_correctly() {
        let mut uart = Pl011::default();
        uart.write(IMSC, INT_RX);
        for _ in 0..RX_SETTLE_ACCESSES {
            uart.read(FR);
        }
        for round in 0..3u8 {
            for i in 0..RX_FIFO_DEPTH as u8 {
                assert!(uart.receive(round.wrapping_mul(64).wrapping_add(i)));
            }
            assert!(!uart.wants_input() && !uart.receive(0xff));
            assert_eq!(uart.read(FR) & FR_RXFF, FR_RXFF);
            uart.read(DR);
            assert!(uart.receive(0xee), "room again");
            for i in 1..RX_FIFO_DEPTH as u8 {
                assert_eq!(uart.read(DR), u32::from(round.wrapping_mul(64).wrapping_add(i)));
            }
            assert_eq!(uart.read(DR), 0xee);
        }
    }

    #[test]
    fn configuration_reads_back_and_ids_identify_a_pl011() {
        let mut uart = Pl011::default();
        assert_eq!(uart.read(CR), CR_RESET);
        uart.write(IBRD, 13);
        uart.write(FBRD, 1);
        uart.write(LCR_H, 0x70);
        uart.write(CR, 0x301);
        assert_eq!([uart.read(IBRD), uart.read(FBRD), uart.read(LCR_H), uart.read(CR)], [13, 1, 0x70, 0x301]);
        let ids: [u32; 8] = core::array::from_fn(|i| uart.read(ID_FIRST + 4 * i as u64));
        assert_eq!(ids, IDS);
        assert_eq!(uart.read(0xfe2), 0, "unaligned");
        assert_eq!(uart.read(0x800), 0);
    }
}
