//! Copying a large buffer 64 bytes per loop turn: boot copies the host shim's
//! Image (160 KiB and more) with the MMU off, where the compiler's `memcpy`
//! takes 22 instructions per 8 bytes from a source that is not 8-byte aligned
//! and 5 from one that is (0.45 million instructions of reset to host).

use core::arch::asm;

/// Bytes one loop turn copies: four pairs of 64-bit registers.
const TURN: usize = 64;

/// Copies `len` bytes from `src` to `dst`: the whole 64-byte blocks with
/// pairs of loads and stores, the rest (under 64 bytes) with `memcpy`. Any
/// alignment works; both 16-byte aligned is the fast case (with the MMU off
/// every access is to Device memory, where an unaligned one faults: those
/// copies go to `memcpy` whole).
///
/// # Safety
///
/// `src` must be valid for reads and `dst` for writes of `len` bytes, and the
/// two ranges must not overlap.
pub unsafe fn copy(dst: *mut u8, src: *const u8, len: usize) {
    let whole = if (dst as usize | src as usize).is_multiple_of(16) { len - len % TURN } else { 0 };
    if whole > 0 {
        // SAFETY: The caller vouches for both ranges; the loop reads and
        // writes exactly their first `whole` bytes, 16-byte aligned pairs.
        unsafe {
            asm!(
                "2:",
                "ldp {a}, {b}, [{s}], #16",
                "stp {a}, {b}, [{d}], #16",
                "ldp {a}, {b}, [{s}], #16",
                "stp {a}, {b}, [{d}], #16",
                "ldp {a}, {b}, [{s}], #16",
                "stp {a}, {b}, [{d}], #16",
                "ldp {a}, {b}, [{s}], #16",
                "stp {a}, {b}, [{d}], #16",
                "cmp {s}, {e}",
                "b.lo 2b",
                s = inout(reg) src => _,
                d = inout(reg) dst => _,
                e = in(reg) src.wrapping_add(whole),
                a = out(reg) _,
                b = out(reg) _,
                options(nostack),
            );
        }
    }
    // SAFETY: The rest of the caller's ranges, past the copied blocks.
    unsafe { core::ptr::copy_nonoverlapping(src.wrapping_add(whole), dst.wrapping_add(whole), len - whole) };
}
