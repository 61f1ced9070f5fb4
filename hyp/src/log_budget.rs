//! A budget of log lines for what a host can repeat at will (its refused
//! accesses and traps): the first ones in full, then one line per
//! `every` with their count. A host looping on a withheld page would
//! otherwise fill the console, and hold each CPU that logs at the UART.

#![forbid(unsafe_code)]

use core::sync::atomic::{AtomicU64, Ordering};

/// What to log for one more event.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum LogLine {
    /// The event's own line.
    Full,
    /// A line saying `n` such events happened so far.
    Count(u64),
    /// Nothing.
    Quiet,
}

pub struct LogBudget {
    seen: AtomicU64,
    full: u64,
    every: u64,
}

impl LogBudget {
    /// `full` lines in full, then a count every `every` events (at least 1).
    pub const fn new(full: u64, every: u64) -> LogBudget {
        LogBudget { seen: AtomicU64::new(0), full, every: if every == 0 { 1 } else { every } }
    }

    /// Counts one more event and says what to log for it.
    pub fn next(&self) -> LogLine {
        let n = self.seen.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
        if n <= self.full {
            LogLine::Full
        } else if n.is_multiple_of(self.every) {
            LogLine::Count(n)
        } else {
            LogLine::Quiet
        }
    }
}

/// The host's refused accesses and traps (`trap`): 64 lines, then a count
/// every 4096.
pub static HOST_REFUSALS: LogBudget = LogBudget::new(64, 4096);

/// Counts one more host refusal in `HOST_REFUSALS`: logs it with `full` while
/// the budget lasts, then only the count line every 4096.
pub fn log_host_refusal(full: impl FnOnce()) {
    match HOST_REFUSALS.next() {
        LogLine::Full => full(),
        LogLine::Count(n) => {
            log::info!("{n} host accesses and traps refused so far (after the first 64, one line per 4096)")
        }
        LogLine::Quiet => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_lines_are_full_then_one_in_every_n_is_a_count() {
        let budget = LogBudget::new(3, 4);
        let lines: Vec<LogLine> = (0..12).map(|_| budget.next()).collect();
        assert_eq!(&lines[..3], &[LogLine::Full; 3]);
        assert_eq!(lines[3], LogLine::Count(4));
        assert_eq!(&lines[4..7], &[LogLine::Quiet; 3]);
        assert_eq!(lines[7], LogLine::Count(8));
        assert_eq!(lines[11], LogLine::Count(12));
        assert_eq!(LogBudget::new(0, 0).next(), LogLine::Count(1), "every 0 counts as 1");
    }
}
