//! The lock-free console writer. Every wait on the UART is bounded
//! (`hyp_drivers::tx`): the host shares this UART and may switch it off or hold
//! its FIFO full, which costs the hyp dropped output, never its progress.

use core::fmt::Write;
use hyp_drivers::line::LineBuffer;
use hyp_drivers::pl011::Pl011;
use hyp_drivers::tx::{Sent, TxState};
use hyp_drivers::uart::{Uart, UartKind, UartSlot};

/// Base address of the console UART (0: none known yet) and its kind. Written
/// once per boot with plain stores, so they are usable before the MMU is on.
static UART: UartSlot = UartSlot::new();

/// Whether the UART is stuck, and what was dropped (plain loads and stores).
static TX: TxState = TxState::new();

/// Longest line written in one piece; longer ones are cut (and marked).
pub const LINE_BYTES: usize = 512;

/// A line being formatted for the console.
pub type Line = LineBuffer<LINE_BYTES>;

/// Makes the UART of `kind` at `base` the console.
///
/// # Safety
///
/// `base` must be such a UART's register block mapped as device memory at this
/// address, now and (identity-mapped) after the MMU is switched on.
pub unsafe fn set_uart(kind: UartKind, base: usize) {
    if kind == UartKind::Pl011 {
        // SAFETY: The caller guarantees a PL011 lives at `base`.
        let uart = unsafe { Pl011::new(base) };
        TX.flush(&uart);
    }
    // SAFETY: The caller's guarantee: `base` is that UART, identity-mapped.
    unsafe { UART.set(kind, base) };
}

/// Writes lines straight to the UART, taking no lock; does nothing without one.
pub struct EmergencyWriter;

impl EmergencyWriter {
    fn uart() -> Option<Uart> {
        UART.get()
    }

    /// Writes one whole line. If output was dropped since the last line that
    /// got through (the UART switched off or stuck), a line saying how much
    /// comes first, once the UART takes output again.
    pub fn write_line(bytes: &[u8]) -> Sent {
        let Some(uart) = Self::uart() else {
            return Sent::default();
        };
        if let Some(lost) = TX.take_dropped(&uart) {
            let mut note = Line::new();
            let _ = writeln!(
                note,
                "[hyp WARN] console: {lost} bytes of output dropped while the UART was switched off or not draining"
            );
            TX.write(&uart, note.as_bytes());
        }
        TX.write(&uart, bytes)
    }

    /// Waits (boundedly) for the UART to drain, so a power-off does not cut the
    /// last line.
    pub fn flush() {
        if let Some(uart) = Self::uart() {
            TX.flush(&uart);
        }
    }
}

/// Prints one line through the emergency path: formatted on the stack first,
/// then written in one piece.
#[macro_export]
macro_rules! emergency_println {
    ($($arg:tt)*) => {{
        use core::fmt::Write as _;
        let mut line = $crate::console::emergency::Line::new();
        let _ = writeln!(line, $($arg)*);
        let _ = $crate::console::emergency::EmergencyWriter::write_line(line.as_bytes());
    }};
}
