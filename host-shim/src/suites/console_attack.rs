//! The console cannot wedge the hyp (`shim.console-attack` in the bootargs):
//! the host shares the console PL011 with the hyp, as plain MMIO, and switches
//! its transmitter off (`UARTCR.UARTEN` and `TXE` clear), then makes the hyp
//! log: host accesses to hyp memory, which the hyp refuses and logs at info,
//! and unknown hypercalls. Every one must come back promptly, the hyp's lines
//! of that time are dropped (it does not write to a UART its owner switched
//! off), and once the host switches the UART on again the hyp's console works:
//! it says how much it dropped and logs the next refused access.
//!
//! QEMU's PL011 model (7.2) never shows a full FIFO (`FR.TXFF`) or `BUSY`, and
//! sends what is written even while disabled, so a UART that does not drain
//! cannot be shown here; the unit tests of `hyp_drivers::tx` and
//! `hyp_drivers::pl011` run the bounded writer against a FIFO that never
//! drains. What QEMU does show is the host's control register, which the hyp
//! reads before each line.

use crate::harness::hypercall;
use crate::harness::mmio::Registers;
use crate::harness::platform::HostPlatform;
use crate::harness::probe;
use crate::harness::report::check;
use aarch64_cpu::registers::{Readable, CNTFRQ_EL0, CNTVCT_EL0};
use hyp_drivers::uart::UartKind;
use vmm::pl011::{CR, CR_TXE, CR_UARTEN, FR};

/// Refused accesses (and unknown hypercalls) made while the UART is off.
const CALLS_WHILE_OFF: u64 = 16;

/// Offsets into the hyp's image of the accesses: one before the UART goes off,
/// `CALLS_WHILE_OFF` while it is, one after. The boot test looks for the hyp's
/// lines naming each address.
const BEFORE_OFFSET: u64 = 0x100;
const WHILE_OFF_OFFSET: u64 = 0x200;
const AFTER_OFFSET: u64 = 0x300;

/// A refused read of hyp memory at `address` (which the hyp logs): whether it
/// was refused, and how long it took in counter ticks.
fn refused_access(address: u64) -> (bool, u64) {
    let start = CNTVCT_EL0.get();
    let refused = probe::read(address).is_none();
    (refused, CNTVCT_EL0.get() - start)
}

/// An unknown hypercall: whether it was refused with NOT_SUPPORTED, and its ticks.
fn unknown_call() -> (bool, u64) {
    let start = CNTVCT_EL0.get();
    let answer = hypercall::raw_call(hyp_abi::vendor_hyp_fn(0x1ffe), [0; 6])[0] as i64;
    (answer == hyp_abi::HypError::NotSupported.code(), CNTVCT_EL0.get() - start)
}

/// Runs the console check; true when it passed.
pub fn run(platform: &HostPlatform) -> bool {
    let Some(&(hyp, _)) = platform.hyp_regions().first() else {
        return check!(false, "console attack: the device tree names no hyp memory");
    };
    if platform.uart_kind != UartKind::Pl011 || platform.uart_base == 0 {
        return check!(false, "console attack: the console is not a PL011");
    }
    // SAFETY: The device tree's console PL011, the host's device (mapped for
    // it by the hyp); only its flag and control registers are touched.
    let uart = unsafe { Registers::new(platform.uart_base as u64) };
    let ticks_per_ms = (CNTFRQ_EL0.get() / 1000).max(1);
    let cr = uart.read32(CR);
    let (before_refused, before_ticks) = refused_access(hyp + BEFORE_OFFSET);

    // The UART off: from here until it is on again, nothing logs (the shim's
    // own console would drop its lines too).
    uart.write32(CR, cr & !(CR_UARTEN | CR_TXE));
    let cr_off = uart.read32(CR);
    let fr_off = uart.read32(FR);
    let mut all_refused = true;
    let mut slowest = 0;
    for i in 0..CALLS_WHILE_OFF {
        let (refused, ticks) = refused_access(hyp + WHILE_OFF_OFFSET + 8 * i);
        let (unknown_refused, unknown_ticks) = unknown_call();
        all_refused &= refused && unknown_refused;
        slowest = slowest.max(ticks).max(unknown_ticks);
    }
    uart.write32(CR, cr);

    let (after_refused, after_ticks) = refused_access(hyp + AFTER_OFFSET);
    let version = hypercall::version();
    let us = |ticks: u64| ticks * 1000 / ticks_per_ms;
    check!(
        before_refused && all_refused && after_refused && version.is_ok() && slowest < 1000 * ticks_per_ms,
        "console attack: with the UART switched off by the host (CR {cr:#x} -> {cr_off:#x}, FR {fr_off:#x}), \
         {CALLS_WHILE_OFF} refused accesses to hyp memory at {:#x}.. and {CALLS_WHILE_OFF} unknown hypercalls came back, \
         the slowest in {} us ({} us before, {} us after; the bound is 1 s); the UART on again (CR {cr:#x}), the hyp answers: {version:?}",
        hyp + WHILE_OFF_OFFSET,
        us(slowest),
        us(before_ticks),
        us(after_ticks),
    )
}
