//! The `log` backend: one line per record, prefixed `[hyp LEVEL]`, whole lines kept
//! together by a spin lock. The maximum level is fixed at build time through the
//! `HYP_LOG_LEVEL` environment variable (error, warn, info, debug, trace; default info).

use super::emergency::EmergencyWriter;
use core::fmt::Write;
use log::{LevelFilter, Log, Metadata, Record};

struct Logger {
    line_lock: spin::Mutex<()>,
}

static LOGGER: Logger = Logger { line_lock: spin::Mutex::new(()) };

/// The level chosen at build time.
pub fn build_level() -> LevelFilter {
    hyp_drivers::log_level::parse(option_env!("HYP_LOG_LEVEL"))
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let _line = self.line_lock.lock();
        let _ = writeln!(EmergencyWriter, "[hyp {}] {}", record.level(), record.args());
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
