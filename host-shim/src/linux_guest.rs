//! A Linux guest, instead of the checks (`shim.linux-guest=protected` or
//! `=non-protected` in the bootargs; `scripts/run-linux` sets it up): the shim
//! as a small VMM. The bootloader (QEMU's `-device loader`) placed the kernel
//! Image, the initramfs and the guest's device tree in host RAM at the
//! addresses below; the shim gives those 256 MiB to a VM of two vCPUs at IPA
//! 0x8000_0000 (donated to a protected VM, lent to a non-protected one),
//! starts vCPU 0 at the Image with x0 = the device tree, runs both vCPUs on
//! this CPU in time slices of its own 100 Hz tick, serves a PL011 at IPA
//! 0x0900_0000 (SPI 33) from MMIO exits, and when the guest powers off tears
//! the VM down and takes every page back (a protected VM's zeroed).

use crate::checks::check;
use crate::hypercall;
use crate::platform::HostPlatform;
use hyp_abi::{Exit, VmType};

/// Where the loader put the Image (the initramfs follows at +128 MiB and the
/// device tree at +255 MiB, as `scripts/linux-guest.dts` says), and the VM's view.
pub const LOAD_ADDRESS: u64 = 0x6000_0000;
const GUEST_RAM: u64 = 0x8000_0000;
const GUEST_PAGES: u64 = 0x10000;
const DEVICE_TREE_OFFSET: u64 = 0x0ff0_0000;
/// The guest's PL011 and its interrupt.
const UART: u64 = 0x0900_0000;
const UART_SPI: u64 = 33;
/// Runs before the guest is declared stuck.
const MAX_RUNS: u64 = 50_000_000;

/// A PL011 as far as Linux's driver needs it: transmit only, always ready,
/// its transmit interrupt raised while unmasked; the PrimeCell ID registers.
struct Pl011 {
    imsc: u64,
    line: [u8; 160],
    len: usize,
    /// The instruction count at VM creation (see `crate::instructions`).
    created_at: u64,
}

/// The line of the guest's init that ends its boot.
const USER_SPACE_MARKER: &[u8] = b"linux-guest: user space reached";

const PL011_TXIM: u64 = 1 << 5;
/// Flags: transmit FIFO empty, receive FIFO empty.
const PL011_FR_IDLE: u64 = 0x90;
/// PeriphID0..3 (PL011 r1p5) and CellID0..3.
const PL011_IDS: [u64; 8] = [0x11, 0x10, 0x34, 0x00, 0x0d, 0xf0, 0x05, 0xb1];

impl Pl011 {
    fn access(&mut self, handle: u64, offset: u64, write: Option<u64>) -> u64 {
        match (offset, write) {
            (0x00, Some(byte)) => {
                self.put(byte as u8);
                self.raise(handle);
                0
            }
            (0x18, None) => PL011_FR_IDLE,
            (0x38, Some(mask)) => {
                self.imsc = mask;
                self.raise(handle);
                0
            }
            (0x38, None) => self.imsc,
            (0x3c, None) => PL011_TXIM,
            (0x40, None) => PL011_TXIM & self.imsc,
            (0xfe0..=0xffc, None) => PL011_IDS.get(((offset - 0xfe0) / 4) as usize).copied().unwrap_or(0),
            _ => 0,
        }
    }

    fn put(&mut self, byte: u8) {
        if byte == b'\n' || self.len == self.line.len() {
            log::info!("guest: {}", core::str::from_utf8(&self.line[..self.len]).unwrap_or("(not UTF-8)"));
            if &self.line[..self.len] == USER_SPACE_MARKER {
                // Exact under -icount shift=0 (e.g. scripts/run-linux -icount shift=0,sleep=off).
                log::info!(
                    "linux: user space reached {} instructions after VM creation",
                    crate::instructions::now().wrapping_sub(self.created_at)
                );
            }
            self.len = 0;
        } else if byte != b'\r' {
            self.line[self.len] = byte;
            self.len += 1;
        }
    }

    /// The transmitter is always empty: with its interrupt unmasked, it is raised.
    fn raise(&self, handle: u64) {
        if self.imsc & PL011_TXIM != 0 {
            let _ = hypercall::vcpu_inject_irq(handle, 0, UART_SPI);
        }
    }
}

/// Runs the guest to its power-off; true if it got there and every page came back.
pub fn run(platform: &HostPlatform, ty: VmType) -> bool {
    let memcache = crate::memory_checks::memcache_pages();
    let memcache_pages = crate::memory_checks::MEMCACHE_PAGES as u64;
    let mut passed = check!(hypercall::donate_hyp(memcache, memcache_pages).is_ok(), "donate the memcache");
    if let Some(gic) = platform.gic {
        passed &= check!(
            crate::gic::start_tick(gic, platform.timer_intid.unwrap_or(30), 100),
            "the host's 100 Hz tick (time slices)"
        );
    }
    crate::instructions::start();
    let created_at = crate::instructions::now();
    let ready = hypercall::vm_create(ty, 2).and_then(|handle| {
        for page in (0..GUEST_PAGES).step_by(512) {
            hypercall::vm_map(handle, LOAD_ADDRESS + page * 4096, GUEST_RAM + page * 4096, 512)?;
        }
        hypercall::vcpu_init(handle, 0, GUEST_RAM, GUEST_RAM + DEVICE_TREE_OFFSET)?;
        Ok(handle)
    });
    let Ok(handle) = ready else {
        return check!(false, "set up the Linux VM: {ready:?}");
    };
    log::info!("linux: a {ty:?} VM of 2 vCPUs with 256 MiB at IPA {GUEST_RAM:#x}");
    let end = run_vcpus(handle, created_at);
    crate::gic::stop_tick();
    passed &= check!(end == Some(Exit::SystemOff), "the Linux guest powered off: {end:?}");
    passed &= check!(hypercall::vm_teardown(handle).is_ok(), "tear the Linux VM down");
    // Lent pages come back with the teardown; donated ones are reclaimed, zeroed.
    let back = match ty {
        VmType::Protected => (0..GUEST_PAGES)
            .step_by(512)
            .try_for_each(|page| hypercall::vm_reclaim(handle, GUEST_RAM + page * 4096, 512)),
        VmType::NonProtected => Ok(()),
    };
    passed &= check!(back.is_ok(), "every page of the Linux VM back with the host: {back:?}");
    passed &= check!(hypercall::reclaim_hyp(memcache, memcache_pages).is_ok(), "the memcache back with the host");
    passed &= crate::memory_checks::invariants("the Linux guest");
    passed
}

/// Runs the two vCPUs in turn until the guest powers off, resets or dies.
fn run_vcpus(handle: u64, created_at: u64) -> Option<Exit> {
    let mut uart = Pl011 { imsc: 0, line: [0; 160], len: 0, created_at };
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
                crate::gic::take_pending_interrupts();
                vcpu ^= 1;
            }
            Ok(Exit::Wfi { .. } | Exit::Wake { .. }) => vcpu ^= 1,
            Ok(end @ (Exit::SystemOff | Exit::SystemReset | Exit::Fatal { .. })) => return Some(end),
            Err(error) => {
                log::warn!("linux: run of vCPU {vcpu}: {error}");
                vcpu ^= 1;
            }
        }
    }
    None
}
