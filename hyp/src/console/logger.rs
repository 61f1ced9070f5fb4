//! The `log` backend: one line per record, prefixed `[hyp LEVEL]`, whole lines kept
//! together by a spin lock. The maximum level is fixed at build time through the
//! `HYP_LOG_LEVEL` environment variable (error, warn, info, debug, trace; default info).

use super::emergency::EmergencyWriter;
use core::fmt::Write;
use log::{LevelFilter, Log, Metadata, Record};

struct Logger {
    line_lock: spin::Mutex<()>,
}

static LOGGER: Logger = Logger {
    line_lock: spin::Mutex::new(()),
};

/// The level chosen at build time.
pub fn build_level() -> LevelFilter {
    parse_level(option_env!("HYP_LOG_LEVEL").unwrap_or("info"))
}

/// Parses a level name; anything unknown means the default, info.
pub fn parse_level(name: &str) -> LevelFilter {
    match name.trim() {
        "off" => LevelFilter::Off,
        "error" => LevelFilter::Error,
        "warn" => LevelFilter::Warn,
        "debug" => LevelFilter::Debug,
        "trace" => LevelFilter::Trace,
        _ => LevelFilter::Info,
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
        let _line = self.line_lock.lock();
        let _ = writeln!(
            EmergencyWriter,
            "[hyp {}] {}",
            record.level(),
            record.args()
        );
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
    fn level_names_parse() {
        assert_eq!(parse_level("debug"), LevelFilter::Debug);
        assert_eq!(parse_level("warn\n"), LevelFilter::Warn);
        assert_eq!(parse_level("bogus"), LevelFilter::Info);
    }
}
