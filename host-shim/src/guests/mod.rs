//! The guests the shim runs in VMs: small position-independent EL1 programs
//! (`guests.S`; the leak checks' in `leak.S`, the IPI ping-pong in `ipi.S`, the debug conformance
//! guest in `debug.S`, the CPU conformance guest in `cpu.S`, the memory-call guest in
//! `memcall.S`, the hostile host's sharing guest in `share.S`; their shared macros and
//! constants in `macros.S`), each described where it is written, and the IPA
//! layout they expect. The shim copies one into a page it gives a VM at
//! [`GUEST_ENTRY`] and starts a vCPU there with x0 as its argument.

use core::arch::global_asm;

global_asm!(
    include_str!("macros.S"),
    include_str!("guests.S"),
    include_str!("leak.S"),
    include_str!("ipi.S"),
    include_str!("debug.S"),
    include_str!("cpu.S"),
    include_str!("memcall.S"),
    include_str!("share.S")
);

/// Where the guests' code goes in guest-physical memory.
pub const GUEST_ENTRY: u64 = 0x8000_0000;
/// The UART the shim emulates for its guests (`GUEST_UART` in macros.S).
pub const GUEST_UART: u64 = 0x0300_0000;
/// Reads of this register get [`STATUS_ANSWER`].
pub const GUEST_UART_STATUS: u64 = GUEST_UART + 0x18;
pub const STATUS_ANSWER: u64 = b'R' as u64;
/// The call the guests report with, which the hyp leaves to the host
/// (`HOST_CALL` in macros.S).
pub const HOST_CALL: u64 = 0xC500_0001;

/// Copies `code` to the start of the page at `pa` (host memory, MMU off).
pub fn load(pa: u64, code: &[u8]) {
    for (i, byte) in code.iter().enumerate() {
        // SAFETY: `pa` is a scratch page of the shim's, not given to anyone yet;
        // the code is far smaller than a page.
        unsafe { core::ptr::write_volatile((pa as *mut u8).add(i), *byte) };
    }
}

/// The code between two labels of the guests' assembly.
fn image(start: &'static u8, end: &'static u8) -> &'static [u8] {
    let (s, e) = (start as *const u8, end as *const u8);
    // SAFETY: The two labels delimit one read-only blob in `.rodata.guests`
    // (or `.rodata.leak_guests`).
    unsafe { core::slice::from_raw_parts(s, e as usize - s as usize) }
}

/// One function per guest, returning its code: `name: start_label..end_label`.
macro_rules! guest_images {
    ($($(#[$attr:meta])* $name:ident: $start:ident..$end:ident,)*) => {
        extern "C" {
            $(static $start: u8; static $end: u8;)*
        }
        $(
            $(#[$attr])*
            pub fn $name() -> &'static [u8] {
                // SAFETY: Only the addresses of the labels are taken.
                image(unsafe { &$start }, unsafe { &$end })
            }
        )*
    };
}

guest_images! {
    /// The console guest's code.
    console: guest_console_start..guest_console_end,
    /// The misbehaving guest's code.
    crash: guest_crash_start..guest_crash_end,
    /// The guest that returns to AArch32 EL0 at a Thumb WFI.
    aarch32: guest_aarch32_start..guest_aarch32_end,
    /// The benchmark guest's code.
    bench: guest_bench_start..guest_bench_end,
    /// The counting guest (one MMIO store of each count, then zeroes).
    count: guest_count_start..guest_count_end,
    /// The guest that turns its VM off at once.
    off: guest_off_start..guest_off_end,
    /// The memory-test guest's code (its data page follows it at +0x1000).
    memtest: guest_memtest_start..guest_memtest_end,
    /// The malicious guest's code (one page: code, then its vectors at +0x800).
    evil: guest_evil_start..guest_evil_end,
    /// The fault-catching guest's code (its vectors at its start, its handler at +0x200).
    catch: guest_catch_start..guest_catch_end,
    /// The MMIO-guard guest's code (one page: code, then its vectors at +0x800).
    guard: guest_guard_start..guest_guard_end,
    /// The SMP guest's code (its data page follows it at +0x1000).
    smp: guest_smp_start..guest_smp_end,
    /// The probing guest's code (its list of IPAs goes at +0x1000).
    probe: guest_probe_start..guest_probe_end,
    /// The guest that spins forever with interrupts masked.
    spin: guest_spin_start..guest_spin_end,
    /// The interrupt guest's code (one page: code, then its vectors at +0x800).
    irq: guest_irq_start..guest_irq_end,
    /// The timer guest's code (one page: code, then its vectors at +0x800).
    timer: guest_timer_start..guest_timer_end,
    /// The SGI-sending guest's code.
    sgi: guest_sgi_start..guest_sgi_end,
    /// The interrupt guest for GICv2's memory-mapped CPU interface.
    irq2: guest_irq2_start..guest_irq2_end,
    /// The timer guest for GICv2's memory-mapped CPU interface.
    timer2: guest_timer2_start..guest_timer2_end,
    /// The SGI-sending guest for GICv2 (GICD_SGIR).
    sgi2: guest_sgi2_start..guest_sgi2_end,
    /// The timer benchmark guest's code.
    #[cfg_attr(not(feature = "bench"), allow(dead_code))]
    vtimer_bench: guest_vtimer_bench_start..guest_vtimer_bench_end,
    /// The IPI ping-pong guest's code (two pages: vCPU 0's, then vCPU 1's; `ipi.S`).
    ipi: guest_ipi_start..guest_ipi_end,
    /// The distributor guest's code.
    gic: guest_gic_start..guest_gic_end,
    /// The burst guest's code.
    burst: guest_burst_start..guest_burst_end,
    /// The remote-controlled GIC guest (one page: code, then its vectors at +0x800).
    remote: guest_remote_start..guest_remote_end,
    /// The CPU conformance guest (`cpu.S`; one page: code, then its vectors at +0x800).
    cpu: guest_cpu_start..guest_cpu_end,
    /// The IRQ-line guest's code (boards without a GIC).
    line: guest_line_start..guest_line_end,
    /// The leak checks' counting guest (`leak.S`).
    leak_count: guest_leak_count_start..guest_leak_count_end,
    /// The leak checks' probing guest (`leak.S`; its vectors at +0x800).
    leak_probe: guest_leak_probe_start..guest_leak_probe_end,
    /// The debug conformance guest (`debug.S`; its vectors at +0x800).
    debug: guest_debug_start..guest_debug_end,
    /// The memory-call guest (`memcall.S`; its vectors at +0x800).
    memcall: guest_memcall_start..guest_memcall_end,
    /// The hostile host's sharing guest (`share.S`; its page follows it at +0x1000).
    share: guest_share_start..guest_share_end,
}

extern "C" {
    static guest_debug_bp_target: u8;
    static guest_debug_step_target: u8;
    static guest_debug_step_done: u8;
    static guest_debug_data: u8;
    static guest_debug_store: u8;
    static guest_debug_load: u8;
}

/// Where the debug guest's labels are in its VM (at [`GUEST_ENTRY`]).
#[derive(Clone, Copy, Debug)]
pub struct DebugGuestLayout {
    /// The function its breakpoint checks break on.
    pub bp_target: u64,
    /// The code it steps, and where stepping ends.
    pub step_target: u64,
    pub step_done: u64,
    /// The word its watchpoint checks watch, and its store and load of it.
    pub data: u64,
    pub store: u64,
    pub load: u64,
}

/// The debug guest's labels as IPAs.
pub fn debug_layout() -> DebugGuestLayout {
    let start = debug().as_ptr() as u64;
    let at = |label: &'static u8| GUEST_ENTRY + (label as *const u8 as u64 - start);
    // SAFETY: Only the addresses of the labels are taken.
    unsafe {
        DebugGuestLayout {
            bp_target: at(&guest_debug_bp_target),
            step_target: at(&guest_debug_step_target),
            step_done: at(&guest_debug_step_done),
            data: at(&guest_debug_data),
            store: at(&guest_debug_store),
            load: at(&guest_debug_load),
        }
    }
}
