//! A Linux guest, instead of the checks (`shim.linux-guest=protected` or
//! `=non-protected` in the bootargs; `scripts/run-linux` sets it up): the shim
//! as a small VMM.
//!
//! The bootloader placed the kernel Image (`shim.guest-kernel=<address>,<size>`
//! in the bootargs) and the initramfs (`/chosen/linux,initrd-start` and `-end`,
//! as for any kernel) in host RAM. The shim takes 256 MiB of free host RAM
//! (the highest 2 MiB-aligned range clear of itself, its device tree, the hyp
//! and those two), copies the Image and the initramfs in where the arm64 boot
//! protocol wants them, writes the guest's device tree beside them
//! (`vmm::guest_tree`), and gives the range to a VM of two vCPUs at IPA
//! 0x8000_0000 (donated to a protected VM, lent to a non-protected one). It
//! starts vCPU 0 at the Image with x0 = the tree, runs both vCPUs on this CPU
//! in time slices of its own 100 Hz tick, serves a PL011 at IPA 0x0900_0000
//! (SPI 33) from MMIO exits, passing what is typed at its own console to the
//! guest, and when the guest powers off tears the VM down and takes every page
//! back (a protected VM's zeroed).

use crate::harness::console::Console;
use crate::harness::gic::GicConfig;
use crate::harness::hypercall;
use crate::harness::platform::HostPlatform;
use crate::harness::report::check;
use hyp_abi::{Exit, VmType};
use vmm::boot_layout::{self, BootLayout, TREE_ROOM};
use vmm::guest_tree::{GuestGic, GuestTree};
use vmm::pl011::Pl011;

/// The VM's RAM in its IPA space.
const GUEST_RAM: u64 = 0x8000_0000;
const GUEST_RAM_SIZE: u64 = 256 << 20;
const PAGE: u64 = 4096;
/// The guest's PL011 and its interrupt.
const UART: u64 = 0x0900_0000;
const UART_INTID: u32 = 33;
const BOOTARGS: &str = "console=ttyAMA0 earlycon=pl011,0x9000000 rdinit=/init";
/// Runs before the guest is declared stuck.
const MAX_RUNS: u64 = 50_000_000;
/// Exits of the Linux VM so far, by kind: MMIO, WFI, interrupted, other. The
/// shim runs on one CPU with its MMU off: plain counters.
struct ExitCounts {
    mmio: core::sync::atomic::AtomicU64,
    wfi: core::sync::atomic::AtomicU64,
    interrupted: core::sync::atomic::AtomicU64,
    other: core::sync::atomic::AtomicU64,
}

static EXITS: ExitCounts = ExitCounts {
    mmio: core::sync::atomic::AtomicU64::new(0),
    wfi: core::sync::atomic::AtomicU64::new(0),
    interrupted: core::sync::atomic::AtomicU64::new(0),
    other: core::sync::atomic::AtomicU64::new(0),
};

fn count(counter: &core::sync::atomic::AtomicU64) {
    use core::sync::atomic::Ordering::Relaxed;
    counter.store(counter.load(Relaxed) + 1, Relaxed);
}

/// The line of the guest's init that ends its boot.
const USER_SPACE_MARKER: &[u8] = b"linux-guest: user space reached";

/// What the VMM set up in host RAM before creating the VM.
struct Prepared {
    /// Host physical address of the guest's RAM.
    host_ram: u64,
    layout: BootLayout,
}

/// Copies `size` bytes from host physical `from` to `to`.
///
/// # Safety
///
/// Both ranges must be RAM that nothing else uses during the copy, and must
/// not overlap.
unsafe fn copy(from: u64, to: u64, size: u64) {
    // SAFETY: The caller's guarantee; the shim's MMU is off, so physical
    // addresses are what it dereferences.
    unsafe { core::ptr::copy_nonoverlapping(from as *const u8, to as *mut u8, size as usize) };
}

/// Whether `(start, start + size)` lies in the first RAM bank.
fn in_ram(platform: &HostPlatform, start: u64, size: u64) -> bool {
    start >= platform.ram_start && start.checked_add(size).is_some_and(|end| end <= platform.ram_end)
}

/// Finds the guest's RAM and fills it: Image, initramfs, device tree.
fn prepare(platform: &HostPlatform) -> Result<Prepared, &'static str> {
    let (kernel, kernel_size) =
        platform.guest_kernel.ok_or("no kernel: shim.guest-kernel=<address>,<size> is not in the bootargs")?;
    let (initrd, initrd_end) = platform.initrd.ok_or("no initramfs: /chosen has no linux,initrd-start/end")?;
    let initrd_size = initrd_end - initrd;
    if !in_ram(platform, kernel, kernel_size) || !in_ram(platform, initrd, initrd_size) {
        return Err("the kernel or the initramfs is not in RAM");
    }
    // SAFETY: The kernel lies in RAM (checked above), where the bootloader
    // put it; nothing writes it while the shim reads it.
    let kernel_bytes = unsafe { core::slice::from_raw_parts(kernel as *const u8, kernel_size as usize) };
    let header = vmm::kernel_image::check(kernel_bytes).map_err(|error| {
        log::error!("linux: the guest kernel at {kernel:#x} ({kernel_size} bytes): {error}");
        "the kernel is not a whole arm64 Image"
    })?;
    let layout = boot_layout::place(GUEST_RAM, GUEST_RAM_SIZE, header, initrd_size).map_err(|error| {
        log::error!("linux: {error}");
        "the kernel and initramfs do not fit in the guest's RAM"
    })?;
    let gic = match platform.gic {
        Some(GicConfig::V3 { .. }) => GuestGic::V3,
        Some(GicConfig::V2 { .. }) => GuestGic::V2,
        None => return Err("a Linux guest needs a GIC"),
    };
    let image = crate::harness::arch::image_range();
    let (tree, tree_size) = platform.device_tree;
    let mut busy = [(0, 0); 4 + crate::harness::platform::MAX_HYP_REGIONS];
    busy[..4].copy_from_slice(&[image, (tree, tree + tree_size), (kernel, kernel + kernel_size), (initrd, initrd_end)]);
    for (slot, (base, size)) in busy[4..].iter_mut().zip(platform.hyp_regions()) {
        *slot = (*base, base + size);
    }
    let host_ram = boot_layout::highest_free((platform.ram_start, platform.ram_end), &busy, GUEST_RAM_SIZE, 2 << 20)
        .ok_or("no 256 MiB of free host RAM for the guest")?;
    let host = |ipa: u64| host_ram + (ipa - GUEST_RAM);
    // SAFETY: The destination is the free range just found (clear of the
    // shim, its device tree, the hyp and both sources); the sources are in RAM.
    unsafe {
        copy(kernel, host(layout.kernel), kernel_size);
        copy(initrd, host(layout.initrd), initrd_size);
    }
    let guest_tree = GuestTree {
        ram: (GUEST_RAM, GUEST_RAM_SIZE),
        vcpus: 2,
        gic,
        uart: UART,
        uart_intid: UART_INTID,
        bootargs: BOOTARGS,
        initrd: Some((layout.initrd, layout.initrd + initrd_size)),
    };
    // SAFETY: The tree's room is the top TREE_ROOM bytes of the free range
    // found above, which nothing else uses.
    let room = unsafe { core::slice::from_raw_parts_mut(host(layout.tree) as *mut u8, TREE_ROOM as usize) };
    let size = guest_tree.write(room).map_err(|error| {
        log::error!("linux: {error}");
        "the guest's device tree could not be written"
    })?;
    log::info!(
        "linux: guest RAM at host {host_ram:#x}: Image ({kernel_size} bytes) at IPA {:#x}, initramfs ({initrd_size} \
         bytes) at {:#x}, device tree ({size} bytes) at {:#x}",
        layout.kernel,
        layout.initrd,
        layout.tree
    );
    Ok(Prepared { host_ram, layout })
}

/// Runs the guest to its power-off; true if it got there and every page came back.
pub fn run(platform: &HostPlatform, ty: VmType) -> bool {
    let prepared = match prepare(platform) {
        Ok(prepared) => prepared,
        Err(reason) => return check!(false, "prepare the Linux guest: {reason}"),
    };
    let memcache = crate::harness::scratch::memcache_pages();
    let memcache_pages = crate::harness::scratch::MEMCACHE_PAGES as u64;
    let mut passed = check!(hypercall::donate_hyp(memcache, memcache_pages).is_ok(), "donate the memcache");
    if let Some(gic) = platform.gic {
        passed &= check!(
            crate::harness::gic::start_tick(gic, platform.timer_intid.unwrap_or(30), 100),
            "the host's 100 Hz tick (time slices)"
        );
    }
    crate::harness::instructions::start();
    let created_at = crate::harness::instructions::now();
    let pages = GUEST_RAM_SIZE / PAGE;
    let ready = hypercall::vm_create(ty, 2).and_then(|handle| {
        for page in (0..pages).step_by(512) {
            hypercall::vm_map(handle, prepared.host_ram + page * PAGE, GUEST_RAM + page * PAGE, 512)?;
        }
        hypercall::vcpu_init(handle, 0, prepared.layout.kernel, prepared.layout.tree)?;
        Ok(handle)
    });
    let Ok(handle) = ready else {
        return check!(false, "set up the Linux VM: {ready:?}");
    };
    log::info!("linux: a {ty:?} VM of 2 vCPUs with 256 MiB at IPA {GUEST_RAM:#x}");
    let end = run_vcpus(handle, created_at);
    crate::harness::gic::stop_tick();
    passed &= check!(end == Some(Exit::SystemOff), "the Linux guest powered off: {end:?}");
    passed &= check!(hypercall::vm_teardown(handle).is_ok(), "tear the Linux VM down");
    // Lent pages come back with the teardown; donated ones are reclaimed, zeroed.
    let back = match ty {
        VmType::Protected => {
            (0..pages).step_by(512).try_for_each(|page| hypercall::vm_reclaim(handle, GUEST_RAM + page * PAGE, 512))
        }
        VmType::NonProtected => Ok(()),
    };
    passed &= check!(back.is_ok(), "every page of the Linux VM back with the host: {back:?}");
    passed &= check!(hypercall::reclaim_hyp(memcache, memcache_pages).is_ok(), "the memcache back with the host");
    passed &= crate::harness::debug_calls::invariants("the Linux guest");
    passed
}

/// The guest's console as the shim shows it: one log line per guest line.
struct ConsoleLines {
    line: [u8; 160],
    len: usize,
    /// The instruction count at VM creation (see `crate::harness::instructions`).
    created_at: u64,
}

impl ConsoleLines {
    fn put(&mut self, byte: u8) {
        if byte == b'\n' || self.len == self.line.len() {
            log::info!("guest: {}", core::str::from_utf8(&self.line[..self.len]).unwrap_or("(not UTF-8)"));
            if &self.line[..self.len] == USER_SPACE_MARKER {
                // Exact under -icount shift=0 (e.g. scripts/run-linux -icount shift=0,sleep=off).
                use core::sync::atomic::Ordering::Relaxed;
                log::info!(
                    "linux: user space reached {} instructions after VM creation ({} MMIO, {} WFI, {} interrupted, \
                     {} other exits)",
                    crate::harness::instructions::now().wrapping_sub(self.created_at),
                    EXITS.mmio.load(Relaxed),
                    EXITS.wfi.load(Relaxed),
                    EXITS.interrupted.load(Relaxed),
                    EXITS.other.load(Relaxed)
                );
            }
            self.len = 0;
        } else if byte != b'\r' {
            self.line[self.len] = byte;
            self.len += 1;
        }
    }
}

/// The guest's UART: the model, where its output goes, and its interrupt.
struct GuestUart {
    model: Pl011,
    lines: ConsoleLines,
}

impl GuestUart {
    /// An MMIO access at `offset`; the value a load reads.
    fn access(&mut self, handle: u64, offset: u64, write: Option<u64>) -> u64 {
        let value = match write {
            Some(value) => {
                if let Some(byte) = self.model.write(offset, value as u32) {
                    self.lines.put(byte);
                }
                0
            }
            None => u64::from(self.model.read(offset)),
        };
        // A level interrupt over an edge injection: inject again after any
        // store or data read that leaves it asserted.
        if write.is_some() || offset == 0 {
            self.raise(handle);
        }
        value
    }

    /// Moves what was typed at the shim's console into the UART, while the
    /// guest's driver listens.
    fn poll_input(&mut self, handle: u64) {
        let mut received = false;
        while self.model.wants_input() {
            let Some(byte) = Console::read_byte() else {
                break;
            };
            received |= self.model.receive(byte);
        }
        if received {
            self.raise(handle);
        }
    }

    fn raise(&self, handle: u64) {
        if self.model.interrupt() {
            let _ = hypercall::vcpu_inject_irq(handle, 0, u64::from(UART_INTID));
        }
    }
}

/// Runs the two vCPUs in turn until the guest powers off, resets or dies.
fn run_vcpus(handle: u64, created_at: u64) -> Option<Exit> {
    let mut uart = GuestUart { model: Pl011::default(), lines: ConsoleLines { line: [0; 160], len: 0, created_at } };
    let mut on = [true, false];
    let mut answer = [0u64; 2];
    let mut vcpu = 0usize;
    for _ in 0..MAX_RUNS {
        if !on[vcpu] {
            vcpu ^= 1;
            continue;
        }
        let exit = hypercall::vcpu_run(handle, vcpu as u64, answer[vcpu]);
        answer[vcpu] = 0;
        count(match exit {
            Ok(Exit::Mmio { .. }) => &EXITS.mmio,
            Ok(Exit::Wfi { .. }) => &EXITS.wfi,
            Ok(Exit::Interrupted) => &EXITS.interrupted,
            _ => &EXITS.other,
        });
        match exit {
            Ok(Exit::Mmio { ipa, write, value, .. }) if (UART..UART + 0x1000).contains(&ipa) => {
                answer[vcpu] = uart.access(handle, ipa - UART, write.then_some(value));
            }
            Ok(Exit::Mmio { .. } | Exit::Hypercall { .. }) => {}
            Ok(Exit::CpuOn { vcpu: other }) => on[other as usize & 1] = true,
            Ok(Exit::CpuOff) => {
                on[vcpu] = false;
                vcpu ^= 1;
            }
            Ok(Exit::Interrupted) => {
                crate::harness::gic::take_pending_interrupts();
                uart.poll_input(handle);
                vcpu ^= 1;
            }
            Ok(Exit::Wfi { .. } | Exit::Wake { .. }) => {
                uart.poll_input(handle);
                vcpu ^= 1;
            }
            Ok(end @ (Exit::SystemOff | Exit::SystemReset | Exit::Fatal { .. })) => return Some(end),
            Err(error) => {
                log::warn!("linux: run of vCPU {vcpu}: {error}");
                vcpu ^= 1;
            }
        }
    }
    None
}
