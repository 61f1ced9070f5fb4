//! The console UART, whichever model the device tree names, described by one
//! `u64` so that the lock-free console writers can keep it in an atomic.

use crate::ns16550::Ns16550;
use crate::pl011::Pl011;
use crate::tx::Transmitter;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

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

/// Where the console UART is, for writers that take no lock: nothing until
/// [`UartSlot::set`].
pub struct UartSlot {
    base: AtomicUsize,
    kind: AtomicU64,
}

impl UartSlot {
    pub const fn new() -> UartSlot {
        UartSlot { base: AtomicUsize::new(0), kind: AtomicU64::new(0) }
    }

    /// Makes the UART of `kind` at `base` the one [`UartSlot::get`] returns
    /// (0: none).
    ///
    /// # Safety
    ///
    /// A non-zero `base` must be such a UART's register block, mapped as
    /// device memory at that address for as long as the slot is read.
    pub unsafe fn set(&self, kind: UartKind, base: usize) {
        self.kind.store(kind.pack(), Ordering::Relaxed);
        self.base.store(base, Ordering::Release);
    }

    /// The UART, if one was set.
    pub fn get(&self) -> Option<Uart> {
        let base = self.base.load(Ordering::Acquire);
        let kind = UartKind::unpack(self.kind.load(Ordering::Relaxed));
        // SAFETY: `set`'s contract holds for every non-zero base stored.
        (base != 0).then(|| unsafe { Uart::attach(kind, base) })
    }
}

impl Default for UartSlot {
    fn default() -> UartSlot {
        UartSlot::new()
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
