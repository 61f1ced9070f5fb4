//! The `log` backend: one line per record, prefixed `[hyp LEVEL]`. The maximum
//! level is fixed at build time through the `HYP_LOG_LEVEL` environment
//! variable (error, warn, info, debug, trace; default info).
//!
//! A record is formatted on the stack first, with no lock held; only writing
//! the finished line takes the line lock, which keeps lines of different CPUs
//! whole. The writing is bounded (the UART driver's budget per byte), and so
//! is waiting for the lock: after [`LOCK_BUDGET`] attempts the line is
//! written without it (it may then interleave with another CPU's). No CPU ever
//! waits without bound on a lock whose holder waits on the UART.

use super::emergency::{EmergencyWriter, Line};
use core::fmt::Write;
use log::{LevelFilter, Log, Metadata, Record};

/// Attempts at the line lock before a line is written without it: far longer
/// than writing a few lines to a working UART takes.
const LOCK_BUDGET: u32 = 1 << 20;

struct Logger {
    line_lock: spin::Mutex<()>,
}

static LOGGER: Logger = Logger { line_lock: spin::Mutex::new(()) };

/// The level chosen at build time.
pub fn build_level() -> LevelFilter {
    hyp_drivers::log_level::parse(option_env!("HYP_LOG_LEVEL"))
}

/// `record` as the console line it becomes.
fn format_line(line: &mut Line, record: &Record<'_>) {
    let _ = writeln!(line, "[hyp {}] {}", record.level(), record.args());
}

impl Logger {
    /// The line lock, if it can be had within [`LOCK_BUDGET`] attempts.
    fn lock_bounded(&self) -> Option<spin::MutexGuard<'_, ()>> {
        for _ in 0..LOCK_BUDGET {
            if let Some(guard) = self.line_lock.try_lock() {
                return Some(guard);
            }
            core::hint::spin_loop();
        }
        None
    }
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let mut line = Line::new();
        format_line(&mut line, record);
        let _line_lock = self.lock_bounded();
        EmergencyWriter::write_line(line.as_bytes());
    }

    fn flush(&self) {
        EmergencyWriter::flush();
    }
}

/// Installs the logger.
///
/// # Safety
///
/// Must run once, on one CPU, before any other CPU runs (it uses `log`'s racy
/// initialisers, which are plain stores) and after the MMU is on.
pub unsafe fn init() {
    // SAFETY: The caller guarantees no concurrent use of the `log` globals.
    unsafe {
        let _ = log::set_logger_racy(&LOGGER);
        log::set_max_level_racy(build_level());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_becomes_one_prefixed_line() {
        let mut line = Line::new();
        format_line(
            &mut line,
            &Record::builder()
                .level(log::Level::Info)
                .args(format_args!("host access to {:#x} blocked", 0x4020_0000))
                .build(),
        );
        assert_eq!(line.as_bytes(), b"[hyp INFO] host access to 0x40200000 blocked\n");
    }

    #[test]
    fn the_lock_wait_is_bounded() {
        let logger = Logger { line_lock: spin::Mutex::new(()) };
        let held = logger.line_lock.lock();
        assert!(logger.lock_bounded().is_none());
        drop(held);
        assert!(logger.lock_bounded().is_some());
    }
}
