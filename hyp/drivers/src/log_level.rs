//! The build-time log level both programs use: a level name from an environment
//! variable read with `option_env!` (`HYP_LOG_LEVEL`, `HOST_LOG_LEVEL`).

use log::LevelFilter;

/// Parses `off`, `error`, `warn`, `info`, `debug` or `trace`; anything else (or
/// nothing) means `info`.
pub fn parse(name: Option<&str>) -> LevelFilter {
    match name.map(str::trim) {
        Some("off") => LevelFilter::Off,
        Some("error") => LevelFilter::Error,
        Some("warn") => LevelFilter::Warn,
        Some("debug") => LevelFilter::Debug,
        Some("trace") => LevelFilter::Trace,
        _ => LevelFilter::Info,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_default_to_info() {
        assert_eq!(parse(Some("debug")), LevelFilter::Debug);
        assert_eq!(parse(Some("warn\n")), LevelFilter::Warn);
        assert_eq!(parse(Some("bogus")), LevelFilter::Info);
        assert_eq!(parse(None), LevelFilter::Info);
    }
}
