//! Data-cache maintenance by virtual address, to the point of coherency.

use core::arch::asm;

/// Smallest data-cache line size of this CPU (CTR_EL0.DminLine).
fn dcache_line_size() -> usize {
    let ctr: u64;
    // SAFETY: Reading CTR_EL0 has no side effects.
    unsafe { asm!("mrs {}, ctr_el0", out(reg) ctr, options(nomem, nostack, preserves_flags)) };
    4 << ((ctr >> 16) & 0xf)
}

/// Applies `DC <op>` to every data-cache line of `[start, start + len)`, eight
/// lines per loop turn (boot invalidates the whole pool this way, and every
/// scrubbed page is cleaned line by line), then waits for completion.
macro_rules! dc_by_line {
    ($op:literal, $start:expr, $len:expr) => {{
        let start: usize = $start;
        let line = dcache_line_size();
        let mut addr = start & !(line - 1);
        let end = start.saturating_add($len);
        while addr.saturating_add(8 * line) <= end {
            // SAFETY: The caller of the enclosing function vouches for the range
            // (mapped, and for invalidation holding no data anyone needs).
            unsafe {
                asm!(
                    concat!("dc ", $op, ", {a}"), "add {a}, {a}, {l}",
                    concat!("dc ", $op, ", {a}"), "add {a}, {a}, {l}",
                    concat!("dc ", $op, ", {a}"), "add {a}, {a}, {l}",
                    concat!("dc ", $op, ", {a}"), "add {a}, {a}, {l}",
                    concat!("dc ", $op, ", {a}"), "add {a}, {a}, {l}",
                    concat!("dc ", $op, ", {a}"), "add {a}, {a}, {l}",
                    concat!("dc ", $op, ", {a}"), "add {a}, {a}, {l}",
                    concat!("dc ", $op, ", {a}"), "add {a}, {a}, {l}",
                    a = inout(reg) addr,
                    l = in(reg) line,
                    options(nostack, preserves_flags),
                );
            }
        }
        while addr < end {
            // SAFETY: As above.
            unsafe { asm!(concat!("dc ", $op, ", {}"), in(reg) addr, options(nostack, preserves_flags)) };
            addr += line;
        }
        // SAFETY: A barrier has no memory-safety effect.
        unsafe { asm!("dsb sy", options(nostack, preserves_flags)) };
    }};
}

/// Cleans and invalidates `[start, start + len)` to the point of coherency: for
/// memory the hyp wrote through its cacheable mapping that an observer without
/// the cache (a host running with its MMU off, a device) reads next. Callers
/// pass mapped ranges; cleaning before invalidating keeps the data.
pub fn clean_invalidate(start: usize, len: usize) {
    dc_by_line!("civac", start, len);
}

/// Invalidates `[start, start + len)` to the point of coherency, discarding any
/// cached copy (dirty or not).
///
/// # Safety
///
/// No cache line of the range may hold data newer than memory that anyone needs:
/// true for memory only ever written with the MMU (and so the D-cache) off.
pub unsafe fn invalidate(start: usize, len: usize) {
    dc_by_line!("ivac", start, len);
}

/// Scrubs `[start, start + len)`, whole pages: zeroes every line and cleans it
/// to the point of coherency in one pass (`DC ZVA` then `DC CIVAC` on each
/// line, a page per loop turn for 64-byte lines and eight lines otherwise, the
/// cache geometry read once per call), so
/// that an observer without the cache (a host with its MMU off, a device)
/// reads zeroes. Where the `DC ZVA` block is not the line size (or ZVA is
/// prohibited), it zeroes page by page and cleans the range after.
///
/// # Safety
///
/// As [`zero_page`], for every page of the range; `start` and `len` are
/// multiples of 4 KiB.
pub unsafe fn zero_and_clean(start: usize, len: usize) {
    const PAGE: usize = 4096;
    let dczid: u64;
    // SAFETY: Reading DCZID_EL0 has no side effect.
    unsafe { asm!("mrs {}, dczid_el0", out(reg) dczid, options(nomem, nostack, preserves_flags)) };
    let line = dcache_line_size();
    let fused = dczid & (1 << 4) == 0 && 4usize << (dczid & 0xf) == line && (8 * line) <= PAGE;
    if !fused {
        // SAFETY: The caller vouches for every page of the range.
        unsafe { zero_pages(start, len) };
        clean_invalidate(start, len);
        return;
    }
    if len == 0 {
        return;
    }
    if line == 64 {
        // The common line (QEMU's, most cores'): a whole page per loop turn,
        // 192 instructions for its 64 lines and 2 for the loop.
        // SAFETY: As below, 64 lines (one page) per turn.
        unsafe {
            asm!(
                "2:",
                ".rept 64",
                "dc zva, {a}", "dc civac, {a}", "add {a}, {a}, #64",
                ".endr",
                "cmp {a}, {e}",
                "b.lo 2b",
                "dsb sy",
                a = inout(reg) start => _,
                e = in(reg) start + len,
                options(nostack),
            );
        }
        return;
    }
    // SAFETY: The caller vouches for every page of `[start, start + len)`; the
    // loop writes (zeroes) and cleans exactly its lines, eight per turn (a page
    // holds a multiple of eight lines: checked above).
    unsafe {
        asm!(
            "2:",
            "dc zva, {a}", "dc civac, {a}", "add {a}, {a}, {l}",
            "dc zva, {a}", "dc civac, {a}", "add {a}, {a}, {l}",
            "dc zva, {a}", "dc civac, {a}", "add {a}, {a}, {l}",
            "dc zva, {a}", "dc civac, {a}", "add {a}, {a}, {l}",
            "dc zva, {a}", "dc civac, {a}", "add {a}, {a}, {l}",
            "dc zva, {a}", "dc civac, {a}", "add {a}, {a}, {l}",
            "dc zva, {a}", "dc civac, {a}", "add {a}, {a}, {l}",
            "dc zva, {a}", "dc civac, {a}", "add {a}, {a}, {l}",
            "cmp {a}, {e}",
            "b.lo 2b",
            "dsb sy",
            a = inout(reg) start => _,
            l = in(reg) line,
            e = in(reg) start + len,
            options(nostack),
        );
    }
}

/// Zeroes `[start, start + len)`, whole pages, with `DC ZVA`, eight blocks per
/// loop turn and the block size read once (boot zeroes the page records of
/// all RAM, 1 MiB per GiB: page by page, [`zero_page`] took twice the
/// instructions); page by page with [`zero_page`] where the block is over
/// 512 bytes or ZVA is prohibited.
///
/// # Safety
///
/// As [`zero_page`], for every page of the range; `start` and `len` are
/// multiples of 4 KiB.
pub unsafe fn zero_pages(start: usize, len: usize) {
    const PAGE: usize = 4096;
    let dczid: u64;
    // SAFETY: Reading DCZID_EL0 has no side effect.
    unsafe { asm!("mrs {}, dczid_el0", out(reg) dczid, options(nomem, nostack, preserves_flags)) };
    let block = 4usize << (dczid & 0xf);
    if dczid & (1 << 4) != 0 || 8 * block > PAGE {
        for page in (start..start.saturating_add(len)).step_by(PAGE) {
            // SAFETY: The caller vouches for every page of the range.
            unsafe { zero_page(page) };
        }
        return;
    }
    if len == 0 {
        return;
    }
    // SAFETY: The caller vouches for every page of `[start, start + len)`; the
    // loop zeroes exactly its blocks, eight per turn (a page holds a multiple
    // of eight blocks: checked above).
    unsafe {
        asm!(
            "2:",
            "dc zva, {a}", "add {a}, {a}, {b}",
            "dc zva, {a}", "add {a}, {a}, {b}",
            "dc zva, {a}", "add {a}, {a}, {b}",
            "dc zva, {a}", "add {a}, {a}, {b}",
            "dc zva, {a}", "add {a}, {a}, {b}",
            "dc zva, {a}", "add {a}, {a}, {b}",
            "dc zva, {a}", "add {a}, {a}, {b}",
            "dc zva, {a}", "add {a}, {a}, {b}",
            "cmp {a}, {e}",
            "b.lo 2b",
            a = inout(reg) start => _,
            b = in(reg) block,
            e = in(reg) start + len,
            options(nostack),
        );
    }
}

/// Zeroes the 4 KiB page at `page` with `DC ZVA` (one instruction per block of
/// DCZID_EL0 bytes), or with pairs of stores where ZVA is prohibited.
///
/// # Safety
///
/// `page` must be a page mapped read-write as normal memory, that nothing else
/// uses as Rust memory.
pub unsafe fn zero_page(page: usize) {
    const PAGE: usize = 4096;
    let dczid: u64;
    // SAFETY: Reading DCZID_EL0 has no side effect.
    unsafe { asm!("mrs {}, dczid_el0", out(reg) dczid, options(nomem, nostack, preserves_flags)) };
    let prohibited = dczid & (1 << 4) != 0;
    let block = 4usize << (dczid & 0xf);
    if prohibited || block > PAGE {
        // SAFETY: The caller guarantees the page is ours to write.
        unsafe { core::ptr::write_bytes(page as *mut u8, 0, PAGE) };
        return;
    }
    let mut addr = page;
    while addr < page + PAGE {
        // Four blocks per turn (a page holds a multiple of four blocks of at most
        // 1 KiB, and larger ones took the store path above).
        if block <= PAGE / 4 {
            // SAFETY: The four blocks lie inside the caller's page.
            unsafe {
                asm!(
                    "dc zva, {a}",
                    "add {t}, {a}, {b}",
                    "dc zva, {t}",
                    "add {t}, {t}, {b}",
                    "dc zva, {t}",
                    "add {t}, {t}, {b}",
                    "dc zva, {t}",
                    a = in(reg) addr,
                    b = in(reg) block,
                    t = out(reg) _,
                    options(nostack, preserves_flags),
                );
            }
            addr += 4 * block;
        } else {
            // SAFETY: The block lies inside the caller's page.
            unsafe { asm!("dc zva, {}", in(reg) addr, options(nostack, preserves_flags)) };
            addr += block;
        }
    }
}
