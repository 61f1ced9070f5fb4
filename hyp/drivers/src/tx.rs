//! Bounded transmission: a console that can never wedge its caller.
//!
//! The hyp shares its console UART with the host, which may switch it off,
//! reprogram it, or hold its transmit FIFO full (flow control, a baud rate of a
//! few bits per second). A writer that waits for room without bound then stops
//! the hyp. Here every wait has a budget: at most [`BYTE_BUDGET`] polls of the
//! FIFO status per byte; when one byte's budget runs out, the rest of that
//! write is dropped and the UART is remembered as stuck. While it is stuck each
//! write costs one status read (has everything drained?) before it is dropped,
//! so later lines do not each burn a budget; once the UART has drained,
//! writing resumes. A UART whose transmitter is switched off (PL011
//! `CR.UARTEN` or `CR.TXE` clear) is not written at all.
//!
//! The state is kept with plain loads and stores only (no read-modify-write
//! atomics), so that it works before the MMU is on and in the host shim, whose
//! memory is device memory (MMU off). Races between CPUs can lose a count or
//! let one extra write try the UART; neither can make anyone wait longer.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// The transmit side of a UART, as the bounded writer needs it.
pub trait Transmitter {
    /// Whether the transmitter is switched on (bytes written now will go out).
    fn enabled(&self) -> bool;
    /// Whether the transmit FIFO has room for one byte now.
    fn has_room(&self) -> bool;
    /// Whether every byte written has left the transmitter (FIFO and shift
    /// register empty).
    fn idle(&self) -> bool;
    /// Puts one byte in the transmit FIFO; call only when [`Self::has_room`].
    fn push(&self, byte: u8);
}

/// Polls of the FIFO status allowed for one byte before the UART counts as
/// stuck. One byte takes 87 us at 115200 baud; a poll is one device read, at
/// least ~50 ns on hardware and more under emulation, so this is a
/// millisecond or more: many byte times for a working UART, and at most a few
/// tens of milliseconds lost, once, to one that never drains.
pub const BYTE_BUDGET: u32 = 20_000;

/// Polls [`TxState::flush`] allows for the whole FIFO to drain (a PL011 FIFO
/// holds 32 bytes).
pub const FLUSH_BUDGET: u32 = 64 * BYTE_BUDGET;

/// What one write did.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct Sent {
    /// Input bytes handed to the UART.
    pub written: usize,
    /// Input bytes dropped (UART off, stuck, or its budget ran out here).
    pub dropped: usize,
}

/// What a console remembers of its UART between writes: stuck or not, and how
/// many bytes it dropped since [`TxState::take_dropped`] last asked.
pub struct TxState {
    stuck: AtomicBool,
    dropped: AtomicU64,
}

impl Default for TxState {
    fn default() -> Self {
        Self::new()
    }
}

impl TxState {
    pub const fn new() -> Self {
        Self { stuck: AtomicBool::new(false), dropped: AtomicU64::new(0) }
    }

    /// Whether the last write ran out of budget and nothing has drained since.
    pub fn is_stuck(&self) -> bool {
        self.stuck.load(Ordering::Relaxed)
    }

    /// Bytes dropped since the last call, if the UART takes output again
    /// (switched on, and not stuck or drained since); the count restarts.
    /// `None` while it does not, or when nothing was dropped.
    pub fn take_dropped(&self, tx: &impl Transmitter) -> Option<u64> {
        let dropped = self.dropped.load(Ordering::Relaxed);
        if dropped == 0 || !self.usable(tx) {
            return None;
        }
        self.dropped.store(0, Ordering::Relaxed);
        Some(dropped)
    }

    /// Whether a write now would reach the UART: it is switched on and not
    /// stuck, or stuck but drained since (then it is not stuck any more).
    fn usable(&self, tx: &impl Transmitter) -> bool {
        if !tx.enabled() {
            return false;
        }
        if self.stuck.load(Ordering::Relaxed) {
            // The cheap retry: one status read.
            if !tx.idle() {
                return false;
            }
            self.stuck.store(false, Ordering::Relaxed);
        }
        true
    }

    fn drop_bytes(&self, count: usize) {
        let dropped = self.dropped.load(Ordering::Relaxed);
        self.dropped.store(dropped.saturating_add(count as u64), Ordering::Relaxed);
    }

    /// Writes `bytes` (each `\n` as `\r\n`) with [`BYTE_BUDGET`] polls per byte.
    pub fn write(&self, tx: &impl Transmitter, bytes: &[u8]) -> Sent {
        self.write_with_budget(tx, bytes, BYTE_BUDGET)
    }

    /// Writes `bytes` (each `\n` as `\r\n`), polling the FIFO at most `budget`
    /// times for each byte; what does not fit in time is dropped.
    pub fn write_with_budget(&self, tx: &impl Transmitter, bytes: &[u8], budget: u32) -> Sent {
        if !self.usable(tx) {
            self.drop_bytes(bytes.len());
            return Sent { written: 0, dropped: bytes.len() };
        }
        for (index, &byte) in bytes.iter().enumerate() {
            let out: &[u8] = if byte == b'\n' { b"\r\n" } else { core::slice::from_ref(&byte) };
            for &b in out {
                if !wait_for_room(tx, budget) {
                    self.stuck.store(true, Ordering::Relaxed);
                    let dropped = bytes.len() - index;
                    self.drop_bytes(dropped);
                    return Sent { written: index, dropped };
                }
                tx.push(b);
            }
        }
        Sent { written: bytes.len(), dropped: 0 }
    }

    /// Waits, at most [`FLUSH_BUDGET`] polls, until everything written has
    /// left the UART (so that a power-off does not cut the last line); returns
    /// at once if the UART is switched off or stuck.
    pub fn flush(&self, tx: &impl Transmitter) {
        if !tx.enabled() || self.is_stuck() {
            return;
        }
        for _ in 0..FLUSH_BUDGET {
            if tx.idle() {
                return;
            }
            core::hint::spin_loop();
        }
    }
}

/// Polls for room at most `budget` times; whether there is room.
fn wait_for_room(tx: &impl Transmitter, budget: u32) -> bool {
    for _ in 0..budget {
        if tx.has_room() {
            return true;
        }
        core::hint::spin_loop();
    }
    false
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use core::cell::{Cell, RefCell};
    use std::vec::Vec;

    /// A UART model: a FIFO of `depth` bytes that drains `drain_per_poll`
    /// bytes per status poll (0: never), counting every poll.
    struct FakeUart {
        enabled: Cell<bool>,
        fifo: Cell<usize>,
        depth: usize,
        drain_per_poll: Cell<usize>,
        polls: Cell<u64>,
        out: RefCell<Vec<u8>>,
    }

    impl FakeUart {
        fn new(depth: usize, drain_per_poll: usize) -> Self {
            FakeUart {
                enabled: Cell::new(true),
                fifo: Cell::new(0),
                depth,
                drain_per_poll: Cell::new(drain_per_poll),
                polls: Cell::new(0),
                out: RefCell::new(Vec::new()),
            }
        }

        fn poll(&self) {
            self.polls.set(self.polls.get() + 1);
            self.fifo.set(self.fifo.get().saturating_sub(self.drain_per_poll.get()));
        }
    }

    impl Transmitter for FakeUart {
        fn enabled(&self) -> bool {
            self.enabled.get()
        }
        fn has_room(&self) -> bool {
            self.poll();
            self.fifo.get() < self.depth
        }
        fn idle(&self) -> bool {
            self.poll();
            self.fifo.get() == 0
        }
        fn push(&self, byte: u8) {
            assert!(self.fifo.get() < self.depth, "pushed into a full FIFO");
            self.fifo.set(self.fifo.get() + 1);
            self.out.borrow_mut().push(byte);
        }
    }

    #[test]
    fn a_working_uart_gets_every_byte_with_newlines_as_crlf() {
        let uart = FakeUart::new(32, 1);
        let state = TxState::new();
        let sent = state.write(&uart, b"hello\nworld\n");
        assert_eq!(sent, Sent { written: 12, dropped: 0 });
        assert_eq!(uart.out.borrow().as_slice(), b"hello\r\nworld\r\n");
        assert!(!state.is_stuck());
        assert_eq!(state.take_dropped(&uart), None);
    }

    #[test]
    fn a_slow_uart_that_drains_within_the_budget_loses_nothing() {
        // One byte leaves every 1000 polls: well inside the budget.
        let uart = FakeUart::new(4, 0);
        let state = TxState::new();
        let slow = FakeUartDrain { uart: &uart, every: 1000 };
        let line = [b'x'; 100];
        assert_eq!(state.write(&slow, &line), Sent { written: 100, dropped: 0 });
        assert_eq!(uart.out.borrow().len(), 100);
    }

    /// Drains one byte every `every` polls.
    struct FakeUartDrain<'a> {
        uart: &'a FakeUart,
        every: u64,
    }

    impl Transmitter for FakeUartDrain<'_> {
        fn enabled(&self) -> bool {
            self.uart.enabled()
        }
        fn has_room(&self) -> bool {
            let polls = self.uart.polls.get() + 1;
            self.uart.polls.set(polls);
            if polls.is_multiple_of(self.every) {
                self.uart.fifo.set(self.uart.fifo.get().saturating_sub(1));
            }
            self.uart.fifo.get() < self.uart.depth
        }
        fn idle(&self) -> bool {
            self.uart.fifo.get() == 0
        }
        fn push(&self, byte: u8) {
            self.uart.push(byte);
        }
    }

    #[test]
    fn a_fifo_that_never_drains_costs_one_budget_then_one_poll_per_write() {
        let uart = FakeUart::new(32, 0);
        let state = TxState::new();
        // The first 32 bytes fit; the 33rd byte waits its budget, then the
        // rest of the write is dropped.
        let line = [b'a'; 100];
        let sent = state.write(&uart, &line);
        assert_eq!(sent, Sent { written: 32, dropped: 68 });
        assert!(state.is_stuck());
        assert_eq!(uart.polls.get(), 32 + u64::from(BYTE_BUDGET));
        // Later writes: one poll (has it drained?) each, everything dropped.
        for _ in 0..1000 {
            let before = uart.polls.get();
            assert_eq!(state.write(&uart, b"another line\n"), Sent { written: 0, dropped: 13 });
            assert_eq!(uart.polls.get() - before, 1);
        }
        assert_eq!(uart.out.borrow().len(), 32);
        // Still stuck: nothing to report yet, and flushing returns at once.
        assert_eq!(state.take_dropped(&uart), None);
        let before = uart.polls.get();
        state.flush(&uart);
        assert_eq!(uart.polls.get(), before);
        // The FIFO drains: writing resumes, and the loss is reported once.
        uart.fifo.set(0);
        uart.drain_per_poll.set(1);
        assert_eq!(state.take_dropped(&uart), Some(68 + 1000 * 13));
        assert_eq!(state.take_dropped(&uart), None);
        assert_eq!(state.write(&uart, b"back\n"), Sent { written: 5, dropped: 0 });
        assert!(!state.is_stuck());
        assert!(uart.out.borrow().ends_with(b"back\r\n"));
    }

    #[test]
    fn a_switched_off_uart_is_not_written_or_polled() {
        let uart = FakeUart::new(32, 1);
        let state = TxState::new();
        uart.enabled.set(false);
        assert_eq!(state.write(&uart, b"lost\n"), Sent { written: 0, dropped: 5 });
        state.flush(&uart);
        assert_eq!(uart.polls.get(), 0);
        assert!(uart.out.borrow().is_empty());
        assert_eq!(state.take_dropped(&uart), None);
        uart.enabled.set(true);
        assert_eq!(state.take_dropped(&uart), Some(5));
        assert_eq!(state.write(&uart, b"ok\n"), Sent { written: 3, dropped: 0 });
    }

    #[test]
    fn flush_is_bounded() {
        let uart = FakeUart::new(32, 0);
        uart.fifo.set(5);
        let state = TxState::new();
        state.flush(&uart);
        assert_eq!(uart.polls.get(), u64::from(FLUSH_BUDGET));
    }
}
