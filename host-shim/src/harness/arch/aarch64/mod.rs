//! The host shim's assembly: Image entry and EL1 vectors, and the one instruction
//! sequences the isolation check needs (a load that may be aborted) and the
//! register-preservation check (a hypercall with every register patterned).
//! The guests' code is in `crate::guests`.

use core::arch::{asm, global_asm};

/// A file of the assembler macros the shim shares with the hyp (`asm/aarch64/`).
macro_rules! shared_asm {
    ($file:literal) => {
        include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../asm/aarch64/", $file))
    };
}

global_asm!(shared_asm!("image_entry.S"), include_str!("head.S"));
global_asm!(shared_asm!("gpr_frame.S"), include_str!("vectors.S"));
global_asm!(shared_asm!("gpr_frame.S"), include_str!("register_probe.S"));
global_asm!(include_str!("fp_probe.S"));

extern "C" {
    fn hvc_register_probe(function: u64, out: *mut [u64; 31]);
    fn id_register_probe(out: *mut [u64; 4]);
    fn fp_hvc_probe(function: u64, x1: u64, x2: u64, x3: u64, x4: u64, seed: u64, out: *mut [u64; 5]);
    static __image_start: u8;
    static __image_end: u8;
    /// head.S: where a secondary CPU enters the shim, x0 = its mailbox.
    pub fn secondary_entry();
}

/// Where the shim's own image is in RAM: code, data, bss and boot stack.
pub fn image_range() -> (u64, u64) {
    // SAFETY: Only the addresses of the linker script's symbols are taken.
    let (start, end) = unsafe { (&__image_start as *const u8 as u64, &__image_end as *const u8 as u64) };
    (start, end)
}

/// x0..x30 as saved by `vectors.S`.
#[repr(C)]
pub struct ShimFrame {
    pub regs: [u64; 32],
}

const _: () = assert!(core::mem::size_of::<ShimFrame>() == 256);

/// Loads 8 bytes from `address`, which may abort: the exception handler then
/// skips the load and the result is whatever x0 held (the address itself).
///
/// # Safety
///
/// `address` must be 8-byte aligned, and an exception on it must be one that the
/// shim's handler is armed to skip.
pub unsafe fn probe_read(address: u64) -> u64 {
    let value: u64;
    // SAFETY: The caller guarantees the handler is armed for a fault here; if the
    // load succeeds it only reads.
    unsafe { asm!("ldr {v}, [{a}]", a = in(reg) address, v = lateout(reg) value, options(nostack, readonly)) };
    value
}

/// Stores `value` to `address`, which may abort: the handler then skips the store.
///
/// # Safety
///
/// As for [`probe_read`]; and if the store is not refused it really writes.
pub unsafe fn probe_write(address: u64, value: u64) {
    // SAFETY: The caller guarantees the handler is armed for a fault here.
    unsafe { asm!("str {v}, [{a}]", a = in(reg) address, v = in(reg) value, options(nostack)) };
}

/// Loads 4 bytes from `address`, which may abort (as [`probe_read`]).
///
/// # Safety
///
/// As for [`probe_read`], with 4-byte alignment.
pub unsafe fn probe_read32(address: u64) -> u32 {
    let value: u32;
    // SAFETY: As for `probe_read`.
    unsafe { asm!("ldr {v:w}, [{a}]", a = in(reg) address, v = lateout(reg) value, options(nostack, readonly)) };
    value
}

/// Stores 4 bytes to `address` from x25 (a register the hyp does not save on
/// its fast path, so a trapped store from it takes the hyp's slow path),
/// which may abort: the handler then skips the store.
///
/// # Safety
///
/// As for [`probe_write`], with 4-byte alignment.
pub unsafe fn probe_write32_from_x25(address: u64, value: u32) {
    // SAFETY: As for `probe_write`.
    unsafe {
        asm!("mov w25, {v:w}", "str w25, [{a}]", a = in(reg) address, v = in(reg) value, out("x25") _, options(nostack))
    };
}

/// An SMCCC 1.1 call with `HVC #0`: function ID in x0, arguments in x1..x6;
/// returns x0..x3. x4..x17 count as clobbered, as SMCCC 1.1 allows.
pub fn hvc(function: u32, args: [u64; 6]) -> [u64; 4] {
    let (r0, r1, r2, r3);
    // SAFETY: HVC #0 enters the hyp, which follows SMCCC: it returns here with
    // results in x0..x3 and changes no memory of ours.
    unsafe {
        asm!(
            "hvc #0",
            inout("x0") u64::from(function) => r0,
            inout("x1") args[0] => r1,
            inout("x2") args[1] => r2,
            inout("x3") args[2] => r3,
            inout("x4") args[3] => _,
            inout("x5") args[4] => _,
            inout("x6") args[5] => _,
            out("x7") _, out("x8") _, out("x9") _, out("x10") _, out("x11") _,
            out("x12") _, out("x13") _, out("x14") _, out("x15") _, out("x16") _, out("x17") _,
            options(nostack),
        );
    }
    [r0, r1, r2, r3]
}

/// One `HVC #0` (x0 = `function`, x1..x4 = `args`) with the host's V0..V31,
/// FPCR and FPSR set from `seed` (`fp_probe.S`): x0..x3 as returned, and a
/// mask of the FP/SIMD registers the call changed (bit n: Vn, bit 32 FPCR,
/// bit 33 FPSR), which must be 0 also when the call ran a guest that used
/// FP/SIMD.
pub fn hvc_keeping_fp(function: u32, args: [u64; 4], seed: u64) -> ([u64; 4], u64) {
    let mut out = [0u64; 5];
    // SAFETY: `fp_hvc_probe` follows AAPCS64 (it restores D8..D15, FPCR and
    // FPSR, and the other FP/SIMD registers are caller-saved), makes one
    // SMCCC call, which changes no memory of ours, and writes only `out`.
    unsafe { fp_hvc_probe(u64::from(function), args[0], args[1], args[2], args[3], seed, &mut out) };
    ([out[0], out[1], out[2], out[3]], out[4])
}

/// The value `register_probe.S` puts in x`n` before its hypercall.
pub const fn probe_pattern(n: usize) -> u64 {
    0x5a5a_0000_0000_0000 | n as u64
}

/// Calls `function` by `HVC #0` with x1..x3 zero and x4..x30 set to
/// `probe_pattern(n)`, and returns x0..x30 as the hyp left them.
pub fn hvc_registers_after(function: u32) -> [u64; 31] {
    let mut registers = [0u64; 31];
    // SAFETY: The probe saves and restores every callee-saved register (and
    // x18) itself, writes only the 31 words `registers` provides, and the
    // hypercall it makes changes no memory of ours.
    unsafe { hvc_register_probe(u64::from(function), &mut registers) };
    registers
}

/// ID_AA64PFR0_EL1 as read into x2, x19 and x28, and x20 (patterned
/// `probe_pattern(20)`) afterwards: see `register_probe.S`.
pub fn id_register_reads() -> [u64; 4] {
    let mut out = [0u64; 4];
    // SAFETY: The probe saves and restores the callee-saved registers it uses
    // and writes only the four words `out` provides.
    unsafe { id_register_probe(&mut out) };
    out
}

/// Runs `f` with `value` in d8 (a callee-saved FP register) and returns what d8
/// holds afterwards: the host's FP/SIMD state must survive what `f` does.
pub fn with_d8<R>(value: u64, f: impl FnOnce() -> R) -> (R, u64) {
    // SAFETY: Writing d8 only; AAPCS64 makes it callee-saved, and nothing between
    // here and the read below is expected to change it.
    unsafe { asm!("fmov d8, {}", in(reg) value, out("v8") _, options(nomem, nostack)) };
    let result = f();
    let after: u64;
    // SAFETY: Reading d8 has no side effect.
    unsafe { asm!("fmov {}, d8", out(reg) after, options(nomem, nostack)) };
    (result, after)
}

/// Waits forever.
pub fn park() -> ! {
    loop {
        aarch64_cpu::asm::wfe();
    }
}

/// The shim's own breakpoint 0 and watchpoint 0: DBGBVR0_EL1, DBGBCR0_EL1,
/// DBGWVR0_EL1, DBGWCR0_EL1 (the host reaches them directly: the hyp traps
/// only guests' debug accesses).
pub fn debug_point0() -> [u64; 4] {
    let (bvr, bcr, wvr, wcr);
    // SAFETY: Reading debug registers at EL1 has no side effect.
    unsafe {
        asm!(
            "mrs {}, dbgbvr0_el1", "mrs {}, dbgbcr0_el1", "mrs {}, dbgwvr0_el1", "mrs {}, dbgwcr0_el1",
            out(reg) bvr, out(reg) bcr, out(reg) wvr, out(reg) wcr,
            options(nomem, nostack, preserves_flags),
        )
    };
    [bvr, bcr, wvr, wcr]
}

/// Sets the shim's breakpoint 0 and watchpoint 0 (as [`debug_point0`] reads
/// them). The shim never enables its own debug exceptions (MDSCR_EL1.MDE and
/// KDE stay clear), so enabled points here never fire in the shim.
pub fn set_debug_point0([bvr, bcr, wvr, wcr]: [u64; 4]) {
    // SAFETY: The shim's own debug registers; with its debug exceptions
    // disabled they change nothing it runs.
    unsafe {
        asm!(
            "msr dbgbvr0_el1, {}", "msr dbgbcr0_el1, {}", "msr dbgwvr0_el1, {}", "msr dbgwcr0_el1, {}", "isb",
            in(reg) bvr, in(reg) bcr, in(reg) wvr, in(reg) wcr,
            options(nomem, nostack, preserves_flags),
        )
    };
}
