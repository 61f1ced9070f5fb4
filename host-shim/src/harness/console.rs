//! The shim's console: the `/chosen/stdout-path` PL011 and a `log` backend that
//! prefixes each line with `[host LEVEL]`. The shim runs on one CPU with its MMU
//! off, so the writer takes no lock (exclusive accesses are not dependable on
//! device memory); the level is set at build time by `HOST_LOG_LEVEL`. Every
//! wait on the UART is bounded (`hyp_drivers::tx`): output to a UART that is
//! switched off or does not drain is dropped.

use core::fmt::{self, Write};
use hyp_drivers::pl011::Pl011;
use hyp_drivers::tx::TxState;
use hyp_drivers::uart::{Uart, UartKind, UartSlot};
use log::{LevelFilter, Log, Metadata, Record};

static UART: UartSlot = UartSlot::new();
/// Whether the UART is stuck (plain loads and stores only).
static TX: TxState = TxState::new();

/// Writes to the console UART, if one was found.
pub struct Console;

impl Console {
    fn uart() -> Option<Uart> {
        UART.get()
    }

    /// A byte typed at the console, if one is waiting.
    pub fn read_byte() -> Option<u8> {
        Self::uart().and_then(|uart| uart.read_byte())
    }

    pub fn flush() {
        if let Some(uart) = Self::uart() {
            TX.flush(&uart);
        }
    }
}

impl Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if let Some(uart) = Self::uart() {
            TX.write(&uart, s.as_bytes());
        }
        Ok(())
    }
}

struct Logger;

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if self.enabled(record.metadata()) {
            let _ = writeln!(Console, "[host {}] {}", record.level(), record.args());
        }
    }

    fn flush(&self) {
        Console::flush();
    }
}

static LOGGER: Logger = Logger;

fn build_level() -> LevelFilter {
    hyp_drivers::log_level::parse(option_env!("HOST_LOG_LEVEL"))
}

/// Starts the console on the UART of `kind` at `base` (0: no console) and
/// installs the logger.
///
/// # Safety
///
/// A non-zero `base` must be such a UART's register block; call once, before
/// anything logs.
pub unsafe fn init(kind: UartKind, base: usize) {
    if base != 0 && kind == UartKind::Pl011 {
        // SAFETY: The caller guarantees a PL011 at `base`.
        let _ = unsafe { Pl011::new(base) };
    }
    // SAFETY: The caller's guarantee: a non-zero `base` is that UART.
    unsafe { UART.set(kind, base) };
    // SAFETY: Single CPU, called once, before any log record.
    unsafe {
        let _ = log::set_logger_racy(&LOGGER);
        log::set_max_level_racy(build_level());
    }
}
