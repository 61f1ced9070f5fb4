//! The host shim's small test guests (host-shim/src/guests/guests.S, with
//! the macros of macros.S), assembled into this binary too: the same code
//! runs in VMs made from a Linux host.

use core::arch::global_asm;

global_asm!(include_str!("../../src/guests/macros.S"), include_str!("../../src/guests/guests.S"));

extern "C" {
    static guest_console_start: u8;
    static guest_console_end: u8;
}

/// The console guest: prints "hello from guest <x0> R<PSCI minor>" through
/// MMIO byte writes to `GUEST_UART` and turns its VM off.
pub fn console() -> &'static [u8] {
    // SAFETY: The two labels delimit one read-only blob in `.rodata.guests`;
    // only their addresses are taken.
    unsafe {
        let start = &guest_console_start as *const u8;
        let end = &guest_console_end as *const u8;
        core::slice::from_raw_parts(start, end as usize - start as usize)
    }
}

/// Where the guests expect their UART (GUEST_UART in macros.S), and the
/// register whose reads the host answers.
pub const GUEST_UART: u64 = 0x0300_0000;
pub const GUEST_UART_STATUS: u64 = GUEST_UART + 0x18;
/// What the host answers to a read of the status register.
pub const STATUS_ANSWER: u64 = b'R' as u64;
/// Where guest code goes in its VM.
pub const GUEST_ENTRY: u64 = 0x8000_0000;
