//! The console UART, whichever model the device tree names, described by one
//! `u64` so that the lock-free console writers can keep it in an atomic.

use crate::ns16550::Ns16550;
use crate::pl011::Pl011;
use crate::tx::Transmitter;

/// Which UART, and how to reach its registers.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub enum UartKind {
    #[default]
    Pl011,
    /// 8250/16550 family with the device tree's `reg-shift` and `reg-io-width`.
    Ns16550 { reg_shift: u8, io_width: u8 },
}

impl UartKind {
    /// Packs the kind into the low 16 bits of a word (for an atomic).
    pub const fn pack(self) -> u64 {
        match self {
            UartKind::Pl011 => 0,
            UartKind::Ns16550 { reg_shift, io_width } => 1 | (reg_shift as u64) << 4 | (io_width as u64) << 8,
        }
    }

    pub const fn unpack(bits: u64) -> UartKind {
        match bits & 0xf {
            0 => UartKind::Pl011,
            _ => UartKind::Ns16550 { reg_shift: ((bits >> 4) & 0xf) as u8, io_width: ((bits >> 8) & 0xff) as u8 },
        }
    }
}

/// A console UART of either kind.
pub enum Uart {
    Pl011(Pl011),
    Ns16550(Ns16550),
}

impl Uart {
    /// Takes the UART of `kind` at `base` as it is (nothing is reprogrammed).
    ///
    /// # Safety
    ///
    /// As for [`Pl011::attach`] and [`Ns16550::attach`]: a UART of that kind,
    /// mapped as device memory at `base`.
    pub unsafe fn attach(kind: UartKind, base: usize) -> Uart {
        match kind {
            UartKind::Pl011 => {
                // SAFETY: The caller's guarantee: a PL011 at `base`.
                let uart = unsafe { Pl011::attach(base) };
                Uart::Pl011(uart)
            }
            UartKind::Ns16550 { reg_shift, io_width } => {
                // SAFETY: The caller's guarantee: a 16550 at `base`.
                let uart = unsafe { Ns16550::attach(base, reg_shift, io_width) };
                Uart::Ns16550(uart)
            }
        }
    }

    /// The next received byte, if one is waiting.
    pub fn read_byte(&self) -> Option<u8> {
        match self {
            Uart::Pl011(u) => u.read_byte(),
            Uart::Ns16550(u) => u.read_byte(),
        }
    }
}

impl Transmitter for Uart {
    fn enabled(&self) -> bool {
        match self {
            Uart::Pl011(u) => u.enabled(),
            Uart::Ns16550(u) => u.enabled(),
        }
    }

    fn has_room(&self) -> bool {
        match self {
            Uart::Pl011(u) => u.has_room(),
            Uart::Ns16550(u) => u.has_room(),
        }
    }

    fn idle(&self) -> bool {
        match self {
            Uart::Pl011(u) => u.idle(),
            Uart::Ns16550(u) => u.idle(),
        }
    }

    fn push(&self, byte: u8) {
        match self {
            Uart::Pl011(u) => u.push(byte),
            Uart::Ns16550(u) => u.push(byte),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_pack_and_unpack() {
        for kind in [
            UartKind::Pl011,
            UartKind::Ns16550 { reg_shift: 2, io_width: 4 },
            UartKind::Ns16550 { reg_shift: 0, io_width: 1 },
        ] {
            assert_eq!(UartKind::unpack(kind.pack()), kind);
        }
    }
}
