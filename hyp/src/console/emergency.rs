//! The lock-free console writer.

use core::fmt;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use hyp_drivers::pl011::Pl011;
use hyp_drivers::uart::{Uart, UartKind};
use hyp_drivers::ConsoleWrite;

/// Base address of the console UART (0: none known yet) and its kind. Written
/// once per boot with plain stores, so they are usable before the MMU is on.
static UART_BASE: AtomicUsize = AtomicUsize::new(0);
static UART_KIND: AtomicU64 = AtomicU64::new(0);

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
        uart.flush();
    }
    UART_KIND.store(kind.pack(), Ordering::Relaxed);
    UART_BASE.store(base, Ordering::Release);
}

/// Writes formatted text straight to the UART; does nothing without one.
pub struct EmergencyWriter;

impl EmergencyWriter {
    fn uart() -> Option<Uart> {
        let base = UART_BASE.load(Ordering::Acquire);
        let kind = UartKind::unpack(UART_KIND.load(Ordering::Relaxed));
        // SAFETY: `set_uart`'s contract holds for every non-zero value stored.
        (base != 0).then(|| unsafe { Uart::attach(kind, base) })
    }

    /// Waits for the UART to drain, so a power-off does not cut the last line.
    pub fn flush() {
        if let Some(uart) = Self::uart() {
            uart.flush();
        }
    }
}

impl fmt::Write for EmergencyWriter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if let Some(uart) = Self::uart() {
            uart.write_bytes(s.as_bytes());
        }
        Ok(())
    }
}

/// Prints one line through the emergency path.
#[macro_export]
macro_rules! emergency_println {
    ($($arg:tt)*) => {{
        use core::fmt::Write as _;
        let _ = writeln!($crate::console::emergency::EmergencyWriter, $($arg)*);
    }};
}
