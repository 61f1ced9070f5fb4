//! A protected VM's memory taken back in parts through `/dev/hyp` (part of
//! `hyp-vmm check`): after its teardown, a range in the middle of what one
//! `VM_MAP` ioctl gave, then the whole range (of which the driver holds the
//! rest only). The driver keeps what it gave as runs of physically
//! consecutive pages and reclaims by ranges: the middle part splits a run
//! (and, where the memory is a transparent huge page the hyp maps as a
//! 2 MiB block, that block). The driver's accounting must follow page for
//! page, and every page come back zeroed. Then a VM left to the driver's
//! release: a live one whose middle part was reclaimed (forced: poisoned in
//! its stage-2) when its file is closed; the driver tears it down and
//! reclaims the rest itself, every page back, zeroed and unpinned.

use crate::dev_hyp::DevHyp;
use crate::guest_ram::{anonymous_memory, PAGE};
use crate::{abort_guard, guest_ram, guests, step};
use hyp_abi::VmType;
use linux_vmm::page_pins;

/// The VM's pages: 2 MiB.
pub const PAGES: u64 = 512;
const BLOCK: usize = 2 << 20;
/// The part taken back first: pages FIRST..FIRST + MIDDLE.
const FIRST: u64 = 5;
const MIDDLE: u64 = 37;

/// 2 MiB of this process's memory, 2 MiB aligned, a transparent huge page
/// if the kernel gives one (then physically consecutive), every page
/// written (none is the shared zero page).
fn block_memory() -> Option<*mut u8> {
    let base = anonymous_memory(2 * BLOCK)?;
    let aligned = ((base as usize + BLOCK - 1) & !(BLOCK - 1)) as *mut u8;
    // SAFETY: `aligned..aligned + BLOCK` lies inside the fresh mapping; the
    // advice only asks for huge pages there.
    unsafe {
        libc::madvise(aligned.cast(), BLOCK, libc::MADV_HUGEPAGE);
        core::ptr::write_bytes(aligned, 0xa5, BLOCK);
    }
    Some(aligned)
}

/// How many runs of physically consecutive pages `pages` pages at
/// `address` are in (`/proc/self/pagemap`, root only), or None.
fn physical_runs(address: *const u8, pages: u64) -> Option<u64> {
    use std::os::unix::fs::FileExt;
    let pagemap = std::fs::File::open("/proc/self/pagemap").ok()?;
    let mut runs = 0;
    let mut last = None;
    for page in 0..pages {
        let mut entry = [0u8; 8];
        let virtual_page = address as u64 / PAGE as u64 + page;
        pagemap.read_exact_at(&mut entry, virtual_page * 8).ok()?;
        let pfn = u64::from_ne_bytes(entry) & ((1 << 55) - 1);
        if pfn == 0 {
            return None;
        }
        if last.is_none_or(|last: u64| pfn != last + 1) {
            runs += 1;
        }
        last = Some(pfn);
    }
    Some(runs)
}

/// Whether every page of `address..` (PAGES pages) is readable and zeroed:
/// None, or the first page that is not.
fn first_not_zeroed(address: *const u8) -> Option<usize> {
    // SAFETY: The memory is ours, page aligned, PAGES pages long.
    let refused = unsafe { abort_guard::first_refused(address, PAGE, PAGES as usize) };
    refused.or_else(|| {
        // SAFETY: Every page was just read without a fault, and no VM has them.
        let bytes = unsafe { core::slice::from_raw_parts(address, BLOCK) };
        bytes.chunks_exact(PAGE).position(|page| page.iter().any(|&byte| byte != 0))
    })
}

/// A live protected VM left to the driver's release with a run split by a
/// forced reclaim: whether every step held.
fn left_to_release() -> bool {
    let Some(address) = block_memory() else {
        return step(false, format_args!("2 MiB for the VM left to release"));
    };
    let pins_before = guest_ram::pin_counts();
    let left = DevHyp::open().map_err(|e| e.to_string()).and_then(|hyp| {
        let handle = hyp.vm_create(VmType::Protected, 1).map_err(|e| e.to_string())?;
        hyp.vm_map(handle, address, guests::GUEST_ENTRY, PAGES).map_err(|e| e.to_string())?;
        // From the live VM (a forced reclaim: those IPAs stay poisoned).
        hyp.vm_reclaim(handle, guests::GUEST_ENTRY + FIRST * PAGE as u64, MIDDLE).map_err(|e| e.to_string())
        // Dropped: the file is closed, the driver takes the rest back.
    });
    let mut passed = step(
        left.is_ok(),
        format_args!(
            "a protected VM of {PAGES} pages, pages {FIRST}..{} reclaimed from it live, its file closed: {left:?}",
            FIRST + MIDDLE
        ),
    );
    let dirty = first_not_zeroed(address);
    passed &= step(dirty.is_none(), format_args!("the release took every page back zeroed (first not: {dirty:?})"));
    let pins = pins_before.zip(guest_ram::pin_counts()).ok_or("/proc/vmstat has no page pin counts".to_owned());
    let pins = pins.and_then(|(before, after)| page_pins::judge(PAGES, before, after));
    passed &= step(pins.is_ok(), format_args!("the release unpinned every page: {pins:?}"));
    passed
}

/// Runs the checks; whether every step held.
pub fn check(hyp: &DevHyp) -> bool {
    let Some(address) = block_memory() else {
        return step(false, format_args!("2 MiB for the VM reclaimed in parts"));
    };
    let runs = physical_runs(address, PAGES);
    let before = hyp.accounting();
    let made = hyp.vm_create(VmType::Protected, 1).and_then(|handle| {
        hyp.vm_map(handle, address, guests::GUEST_ENTRY, PAGES)?;
        hyp.vm_teardown(handle)?;
        Ok(handle)
    });
    let (handle, before) = match (made, before) {
        (Ok(handle), Ok(before)) => (handle, before),
        (made, before) => {
            return step(false, format_args!("a protected VM of {PAGES} pages, torn down: {made:?} {before:?}"))
        }
    };
    let mut passed = step(
        true,
        format_args!("a protected VM of {PAGES} pages ({runs:?} runs of physically consecutive pages), torn down"),
    );
    let part = hyp.vm_reclaim(handle, guests::GUEST_ENTRY + FIRST * PAGE as u64, MIDDLE);
    passed &= step(part.is_ok(), format_args!("reclaim pages {FIRST}..{} of {PAGES}: {part:?}", FIRST + MIDDLE));
    let counted = hyp.accounting();
    passed &= step(
        counted.as_ref().is_ok_and(|a| {
            a.pinned == before.pinned + PAGES - MIDDLE
                && a.given == before.given + PAGES
                && a.returned == before.returned + MIDDLE
        }),
        format_args!("the driver counts {MIDDLE} pages back, {} still given: {counted:?}", PAGES - MIDDLE),
    );
    let rest = hyp.vm_reclaim(handle, guests::GUEST_ENTRY, PAGES);
    passed &= step(rest.is_ok(), format_args!("reclaim the rest (the whole range asked): {rest:?}"));
    let counted = hyp.accounting();
    passed &= step(
        counted.as_ref().is_ok_and(|a| a.pinned == before.pinned && a.returned == before.returned + PAGES),
        format_args!("every page of the VM counted back: {counted:?}"),
    );
    let dirty = first_not_zeroed(address);
    passed &= step(dirty.is_none(), format_args!("every page back and zeroed (first not: {dirty:?})"));
    passed &= left_to_release();
    passed
}
