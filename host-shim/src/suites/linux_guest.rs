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
//! starts vCPU 0 at the Image with x0 = the tree, serves a PL011 at IPA
//! 0x0900_0000 (SPI 33) from MMIO exits, passing what is typed at its own
//! console to the guest, and when the guest powers off tears the VM down and
//! takes every page back (a protected VM's zeroed).
//!
//! Scheduling (`harness::vcpu_cpus`): with a second CPU, vCPU 1 runs there
//! and vCPU 0 on the boot CPU, which has the UART (the other CPU forwards its
//! vCPU's accesses); with one CPU, both share it in 10 ms slices.

use crate::harness::console::Console;
use crate::harness::cpus;
use crate::harness::gic::GicConfig;
use crate::harness::hypercall;
use crate::harness::platform::HostPlatform;
use crate::harness::report::check;
use crate::harness::vcpu_cpus::{self, Devices};
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
/// The guest's vCPUs.
const VCPUS: usize = 2;

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
        Some(GicConfig::V3 { .. }) => GuestGic::HYP_V3,
        Some(GicConfig::V2 { .. }) => GuestGic::HYP_V2,
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
        virtio: &[],
        dma_pool: None,
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
    let Some(gic) = platform.gic else {
        return check!(false, "a Linux guest needs a GIC");
    };
    // vCPU 1 on a CPU of its own if there is one; else both on this CPU.
    let Some(placement) = vcpu_cpus::place(platform, gic, VCPUS) else {
        return check!(false, "kicks and wake-ups on the boot CPU: the GIC did not answer");
    };
    crate::harness::instructions::start();
    let created_at = crate::harness::instructions::now();
    let pages = GUEST_RAM_SIZE / PAGE;
    let ready = hypercall::vm_create(ty, VCPUS as u64).and_then(|handle| {
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
    match placement.job_cpu(1) {
        Some(cpu) => log::info!("linux: vCPU 0 runs on CPU {}, vCPU 1 on CPU {cpu}", cpus::own_index(platform)),
        None => log::info!("linux: both vCPUs run on CPU {} in time slices", cpus::own_index(platform)),
    }
    let mut uart = GuestUart { model: Pl011::default(), lines: ConsoleLines { line: [0; 160], len: 0, created_at } };
    let end = vcpu_cpus::run(&placement, handle, &mut uart).map_err(|error| log::error!("linux: {error}")).ok();
    passed &= check!(end == Some(Exit::SystemOff), "the Linux guest powered off: {end:?}");
    let teardown = hypercall::vm_teardown(handle);
    passed &= check!(teardown.is_ok(), "tear the Linux VM down: {teardown:?}");
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
                log::info!(
                    "linux: user space reached {} instructions after VM creation ({} MMIO, {} WFI, {} interrupted, \
                     {} other exits)",
                    crate::harness::instructions::now().wrapping_sub(self.created_at),
                    vcpu_cpus::total_exits(|e| &e.mmio),
                    vcpu_cpus::total_exits(|e| &e.wfi),
                    vcpu_cpus::total_exits(|e| &e.interrupted),
                    vcpu_cpus::total_exits(|e| &e.other)
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

impl Devices for GuestUart {
    fn mmio(&mut self, handle: u64, _vcpu: usize, ipa: u64, write: Option<u64>) -> (u64, Option<usize>) {
        // The UART is the only device; other loads read 0.
        match ipa.checked_sub(UART).filter(|&offset| offset < 0x1000) {
            Some(offset) => self.access(handle, offset, write),
            None => (0, None),
        }
    }

    fn poll(&mut self, handle: u64) -> Option<usize> {
        self.poll_input(handle)
    }
}

impl GuestUart {
    /// An MMIO access at `offset`: the value a load reads, and the vCPU its
    /// interrupt went to, if it was raised.
    fn access(&mut self, handle: u64, offset: u64, write: Option<u64>) -> (u64, Option<usize>) {
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
        let woken = if write.is_some() || offset == 0 { self.raise(handle) } else { None };
        (value, woken)
    }

    /// Moves what was typed at the shim's console into the UART, while the
    /// guest's driver listens; the vCPU its interrupt went to, if raised.
    fn poll_input(&mut self, handle: u64) -> Option<usize> {
        let mut received = false;
        while self.model.wants_input() {
            let Some(byte) = Console::read_byte() else {
                break;
            };
            received |= self.model.receive(byte);
        }
        if received {
            self.raise(handle)
        } else {
            None
        }
    }

    fn raise(&self, handle: u64) -> Option<usize> {
        if !self.model.interrupt() {
            return None;
        }
        let vcpu = hypercall::vcpu_inject_irq(handle, 0, u64::from(UART_INTID)).ok()?;
        usize::try_from(vcpu).ok().filter(|&v| v < VCPUS)
    }
}
