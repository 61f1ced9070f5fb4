//! The hostile host's DMA attack from a PCIe device behind the SMMU: QEMU's
//! `edu` device (`-device edu,dma_mask=...`) has a DMA engine the host drives
//! from its BAR. The host gets the PCIe bus only when the hyp drives the SMMU
//! (`-machine virt,iommu=smmuv3`); then DMA into the host's own pages works,
//! while DMA into a protected VM's page or the hyp's image, and DMA that reads
//! a protected page, fault in the SMMU (the hyp logs each event) and change
//! nothing. Without the device (or the bus) there is nothing to attack and the
//! check says so.

use crate::guests::{self, GUEST_ENTRY};
use crate::harness::attack_target;
use crate::harness::hypercall;
use crate::harness::mmio::Registers;
use crate::harness::platform::HostPlatform;
use crate::harness::report::check;
use crate::harness::scratch::PAGE;

/// QEMU's edu: PCI vendor 0x1234, device 0x11e8.
const EDU_ID: u32 = 0x11e8_1234;
/// edu registers: DMA source, destination, count, command (bit 0 run, bit 1
/// direction: 1 = from the device to memory); its DMA buffer's device address.
const EDU_DMA_SRC: u64 = 0x80;
const EDU_DMA_DST: u64 = 0x88;
const EDU_DMA_COUNT: u64 = 0x90;
const EDU_DMA_CMD: u64 = 0x98;
const EDU_BUFFER: u64 = 0x4_0000;
const EDU_TO_MEMORY: u64 = 2;
/// PCI config space: command register (memory space, bus master) and BAR0.
const PCI_COMMAND: u64 = 0x04;
const PCI_BAR0: u64 = 0x10;

/// The bridge's ECAM and its 32-bit memory window, if the host's tree shows
/// the bridge (enabled).
fn pcie(fdt: &fdt::Fdt<'_>) -> Option<(u64, u64)> {
    let node = fdt.find_compatible(&["pci-host-ecam-generic"])?;
    if node.property("status").and_then(|p| p.as_str()).is_some_and(|s| s != "okay") {
        return None;
    }
    let ecam = node.reg()?.next()?.starting_address as u64;
    let ranges = node.property("ranges")?.value;
    // (flags, PCI address 2 cells), CPU address 2 cells, size 2 cells.
    ranges.chunks_exact(28).find_map(|entry| {
        let cell = |i: usize| {
            u64::from(u32::from_be_bytes([entry[4 * i], entry[4 * i + 1], entry[4 * i + 2], entry[4 * i + 3]]))
        };
        let space = (cell(0) >> 24) & 3;
        (space == 2).then(|| (ecam, cell(3) << 32 | cell(4)))
    })
}

/// One DMA of `count` bytes; waits (bounded) until the device is done.
fn dma(edu: Registers, src: u64, dst: u64, count: u64, to_memory: bool) -> bool {
    edu.write64(EDU_DMA_SRC, src);
    edu.write64(EDU_DMA_DST, dst);
    edu.write64(EDU_DMA_COUNT, count);
    edu.write64(EDU_DMA_CMD, 1 | if to_memory { EDU_TO_MEMORY } else { 0 });
    // edu completes a transfer 100 ms (virtual time) later: wait up to 5 s.
    use aarch64_cpu::registers::{Readable, CNTFRQ_EL0, CNTPCT_EL0};
    let deadline = CNTPCT_EL0.get() + 5 * CNTFRQ_EL0.get();
    while edu.read64(EDU_DMA_CMD) & 1 != 0 {
        if CNTPCT_EL0.get() > deadline {
            return false;
        }
    }
    true
}

/// The first four words of `page`: a scratch page, or one of the spare block
/// the shim alone uses (the MMU is off: plain physical reads).
fn words(page: u64) -> [u64; 4] {
    // SAFETY: As above: host RAM no one else writes through the CPU, read
    // volatile because devices and the hyp may have written it.
    core::array::from_fn(|i| unsafe { core::ptr::read_volatile((page + 8 * i as u64) as *const u64) })
}

/// Fills `page` (as for [`words`], and the host's at the time) with a pattern.
fn fill(page: u64, value: u64) {
    for i in 0..512 {
        // SAFETY: A page of the host's RAM the shim alone uses, not given to
        // anyone now.
        unsafe { core::ptr::write_volatile((page + 8 * i) as *mut u64, value ^ i) };
    }
}

/// Runs the attack if the bus and the device are there; `page` is a scratch
/// page the shim gives a protected VM, `a` and `b` two more of its own.
pub fn run_all(platform: &HostPlatform, page: u64, a: u64, b: u64) -> bool {
    // SAFETY: The device tree the hyp gave the shim, at the address it passed.
    let Ok(fdt) = (unsafe { fdt::Fdt::from_ptr(platform.device_tree.0 as *const u8) }) else {
        return check!(false, "PCIe DMA attack: the device tree does not parse");
    };
    let Some((ecam, window)) = pcie(&fdt) else {
        log::info!("PCIe DMA attack: no PCIe bus for the host (withheld without an SMMU the hyp drives)");
        return true;
    };
    // SAFETY: Config space of a device on the bus the hyp gave the host
    // (plain device registers), read for its ID and, for edu, given its BAR.
    let config_space = |config: u64| unsafe { Registers::new(config) };
    let Some(config) =
        (0..32).map(|device| ecam + (device << 15)).find(|&config| config_space(config).read32(0) == EDU_ID)
    else {
        log::info!("PCIe DMA attack: no edu device on bus 0");
        return true;
    };
    config_space(config).write32(PCI_BAR0, window as u32);
    config_space(config).write32(PCI_COMMAND, 0b110);
    let bar = window;
    // SAFETY: edu's BAR0, just placed in the bridge's window: its registers.
    let edu = unsafe { Registers::new(bar) };
    let hyp_image = platform.hyp_regions().first().map_or(0, |r| r.0);
    let mut passed = true;

    // The protected target: a guest whose code page the device aims at (its
    // first words read while the page is still the host's).
    guests::load(page, guests::console());
    let code = words(page);
    let Some(handle) = attack_target::create(page, "PCIe DMA attack") else {
        return false;
    };

    // DMA into and out of the host's own pages works.
    fill(a, 0x5eed_0000_0000_0000);
    fill(b, 0);
    let done = dma(edu, a, EDU_BUFFER, 32, false) && dma(edu, EDU_BUFFER, b, 32, true);
    passed &= check!(
        done && words(b) == words(a),
        "edu at {config:#x} (BAR0 {bar:#x}) copies the host's page {a:#x} to {b:#x} by DMA through the SMMU: {:x?}",
        words(b)
    );
    // DMA writes at the protected page and at the hyp's image.
    let writes = dma(edu, EDU_BUFFER, page, 32, true) & dma(edu, EDU_BUFFER, hyp_image, 32, true);
    // DMA read of the protected page, then back into a host page: must not
    // bring the guest's code out.
    fill(b, 0);
    let read = dma(edu, page, EDU_BUFFER, 32, false) & dma(edu, EDU_BUFFER, b, 32, true);
    passed &= check!(
        writes && read && words(b) != code,
        "edu DMA at the protected page and the hyp's image, and DMA reading the protected page, finish without reaching them: the host got {:x?}",
        words(b)
    );
    passed &= attack_target::check_intact(handle, "DMA attack");
    passed &= invalidations_past_the_queue(platform, edu, page, a, b);
    passed
}

/// Pages of one donation inside a 2 MiB block already split: one TLB
/// invalidation each in the SMMU, more than its command queue holds (256).
const OVERFLOW_PAGES: u64 = 300;

/// A donation of [`OVERFLOW_PAGES`] pages inside one split 2 MiB block queues
/// more invalidations before its sync than the SMMU's command queue holds: the
/// hyp must publish the queue as it fills. Dropped invalidations would leave
/// the device's cached translation of the last page, so edu could still write
/// and read it; a stalled queue would stop every DMA. The last page's
/// translation is cached by a DMA just before the donation.
fn invalidations_past_the_queue(platform: &HostPlatform, edu: Registers, page: u64, a: u64, b: u64) -> bool {
    const BLOCK: u64 = 2 << 20;
    let Some(block) = platform.spare_ram_below_pool(BLOCK) else {
        return check!(false, "SMMU queue overflow: no spare 2 MiB block below the hyp's pool");
    };
    let Some(handle) = attack_target::create(page, "SMMU queue overflow") else {
        return false;
    };
    // The guest's IPAs for the block's pages: 2 MiB above its code.
    let ipa = GUEST_ENTRY + BLOCK;
    // The block's first page splits it (in the SMMU's table as in the host's
    // stage-2); the rest of the block stays the host's.
    let split = hypercall::vm_map(handle, block, ipa, 1);
    let first = block + PAGE;
    let last = first + (OVERFLOW_PAGES - 1) * PAGE;
    fill(last, 0x1a57_0000_0000_0000);
    let host_data = words(last);
    fill(b, 0);
    let cached = dma(edu, last, EDU_BUFFER, 32, false) && dma(edu, EDU_BUFFER, b, 32, true) && words(b) == host_data;
    let mut passed = check!(
        split.is_ok() && cached,
        "SMMU queue overflow: block {block:#x} split ({split:?}), its page {last:#x} read by DMA (translation cached): {cached}"
    );
    let donated = hypercall::vm_map(handle, first, ipa + PAGE, OVERFLOW_PAGES);
    passed &= check!(
        donated.is_ok(),
        "SMMU queue overflow: {OVERFLOW_PAGES} pages of the split block donated in one call: {donated:?}"
    );
    // Write at the last page, then read it back (through edu's buffer, which
    // holds other data by then).
    fill(a, 0x0bad_0000_0000_0000);
    let written = dma(edu, a, EDU_BUFFER, 32, false) && dma(edu, EDU_BUFFER, last, 32, true);
    fill(a, 0x0ffe_0000_0000_0000);
    fill(b, 0);
    let read = dma(edu, a, EDU_BUFFER, 32, false)
        && dma(edu, last, EDU_BUFFER, 32, false)
        && dma(edu, EDU_BUFFER, b, 32, true);
    let seen = words(b);
    passed &= check!(
        written && read && seen[0] != 0x0bad_0000_0000_0000 && seen != host_data,
        "SMMU queue overflow: edu DMA at the donated page {last:#x} (written, then read) finishes without reaching it: the host got {seen:x?}"
    );
    // The queue still works: DMA between the host's own pages.
    fill(a, 0x5eed_0000_0000_0100);
    fill(b, 0);
    let copied = dma(edu, a, EDU_BUFFER, 32, false) && dma(edu, EDU_BUFFER, b, 32, true) && words(b) == words(a);
    passed &= check!(copied, "SMMU queue overflow: DMA between the host's pages still works after it: {:x?}", words(b));
    passed &= attack_target::check_intact(handle, "SMMU queue overflow");
    let reclaimed = hypercall::vm_reclaim(handle, ipa, OVERFLOW_PAGES + 1);
    let zeroed = reclaimed.is_ok() && (first..=last).step_by(PAGE as usize).all(|p| words(p) == [0; 4]);
    passed &= check!(
        zeroed,
        "SMMU queue overflow: the block's {} pages reclaimed and zeroed: {reclaimed:?}",
        OVERFLOW_PAGES + 1
    );
    passed
}
