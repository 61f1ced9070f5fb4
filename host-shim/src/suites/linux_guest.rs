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
//! Scheduling: with a second CPU, vCPU 1 runs there (a job, `harness::cpus`)
//! and vCPU 0 on the boot CPU, each until the guest ends. A vCPU that waits
//! (`Exit::Wfi`) waits on its CPU (WFI) until its timer's deadline (the CPU's
//! EL1 physical timer) or a kick: the SGI [`gic::KICK_SGI`], which another CPU
//! sends when the hyp names the vCPU in `Exit::Wake` (an SGI or an interrupt
//! the guest enabled for it), when it starts it (`Exit::CpuOn`), or when the
//! UART's interrupt goes to it. The kick also ends a run of the vCPU in its
//! guest (`Exit::Interrupted`), and the next entry presents the interrupt.
//! The UART is the boot CPU's: the other CPU forwards its vCPU's accesses
//! through a mailbox and kicks the boot CPU. With one CPU, both vCPUs share it
//! in 10 ms slices (the same timer), each waiting one sitting out. No limit on
//! the runs: the guest runs until it powers off, resets or dies.

use crate::checks::check;
use crate::console::Console;
use crate::gic::{self, GicConfig};
use crate::harness::cpus;
use crate::hypercall;
use crate::platform::HostPlatform;
use aarch64_cpu::registers::{Readable, CNTFRQ_EL0, CNTPCT_EL0};
use core::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use core::sync::atomic::{AtomicBool, AtomicU64};
use hyp_abi::{Exit, HypError, VmType};
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
/// How often a vCPU sharing its CPU gives it up, and how often the CPU with
/// the guest's UART looks at the console while its vCPU waits: 100 times a
/// second.
const SLICES_PER_SECOND: u64 = 100;

/// Exits of one vCPU so far, by kind: MMIO, WFI, interrupted, other.
struct ExitCounts {
    mmio: AtomicU64,
    wfi: AtomicU64,
    interrupted: AtomicU64,
    other: AtomicU64,
}

/// What the CPUs running the guest share about one vCPU. The shim runs with
/// its MMU off, where exclusives are not dependable (`harness::cpus`), so
/// every word has one writer: the CPU running the vCPU, except `served` and
/// `answer`, which the boot CPU (which has the guest's UART) writes.
struct VcpuSeat {
    /// The CPU that runs the vCPU: its MPIDR and GICv2 CPU interface bit,
    /// valid once `ready` is set, so that others can kick it.
    mpidr: AtomicU64,
    gicv2_mask: AtomicU64,
    ready: AtomicBool,
    /// The guest ended on this vCPU's CPU: the others stop too.
    stopped: AtomicBool,
    /// A UART access forwarded to the boot CPU: the `posted`-th, at
    /// `offset`, a store of `value` if `write` is set; the boot CPU answers
    /// the `served`-th with `answer` (what a load reads).
    posted: AtomicU64,
    offset: AtomicU64,
    write: AtomicBool,
    value: AtomicU64,
    served: AtomicU64,
    answer: AtomicU64,
    exits: ExitCounts,
}

impl VcpuSeat {
    const fn new() -> VcpuSeat {
        VcpuSeat {
            mpidr: AtomicU64::new(0),
            gicv2_mask: AtomicU64::new(0),
            ready: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            posted: AtomicU64::new(0),
            offset: AtomicU64::new(0),
            write: AtomicBool::new(false),
            value: AtomicU64::new(0),
            served: AtomicU64::new(0),
            answer: AtomicU64::new(0),
            exits: ExitCounts {
                mmio: AtomicU64::new(0),
                wfi: AtomicU64::new(0),
                interrupted: AtomicU64::new(0),
                other: AtomicU64::new(0),
            },
        }
    }

    /// Sends the kick to the CPU of this vCPU (nothing before it is ready).
    fn kick(&self, gic: GicConfig) {
        if self.ready.load(Acquire) {
            gic::kick(gic, self.mpidr.load(Relaxed), self.gicv2_mask.load(Relaxed));
        }
    }
}

static SEATS: [VcpuSeat; VCPUS] = [const { VcpuSeat::new() }; VCPUS];
/// The guest's GIC as [`GicConfig::to_words`] gives it, for the other CPUs
/// (written by the boot CPU before it starts them).
static GIC_WORDS: [AtomicU64; 3] = [const { AtomicU64::new(0) }; 3];

/// Counts one exit (the counter's single writer is this vCPU's CPU).
fn count(counter: &AtomicU64) {
    counter.store(counter.load(Relaxed) + 1, Relaxed);
}

/// Exits of every vCPU of one kind.
fn total(kind: impl Fn(&ExitCounts) -> &AtomicU64) -> u64 {
    SEATS.iter().map(|seat| kind(&seat.exits).load(Relaxed)).sum()
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
    let image = crate::arch::image_range();
    let (tree, tree_size) = platform.device_tree;
    let mut busy = [(0, 0); 4 + crate::platform::MAX_HYP_REGIONS];
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
    let memcache = crate::memory_checks::memcache_pages();
    let memcache_pages = crate::memory_checks::MEMCACHE_PAGES as u64;
    let mut passed = check!(hypercall::donate_hyp(memcache, memcache_pages).is_ok(), "donate the memcache");
    let Some(gic) = platform.gic else {
        return check!(false, "a Linux guest needs a GIC");
    };
    let timer_intid = platform.timer_intid.unwrap_or(30);
    // vCPU 1 on a CPU of its own if there is one; else both on this CPU.
    let helper = cpus::secondaries(platform).find(|&(cpu, mpidr)| {
        let started = cpus::start_cpu(platform, cpu, mpidr);
        if let Err(status) = started {
            log::warn!("linux: CPU {cpu} (MPIDR {mpidr:#x}) did not start: PSCI status {status}");
        }
        started.is_ok()
    });
    passed &= check!(take_seat(gic, 0, timer_intid), "kicks and wake-ups on the boot CPU");
    for (slot, word) in GIC_WORDS.iter().zip(gic.to_words()) {
        slot.store(word, Release);
    }
    crate::instructions::start();
    let created_at = crate::instructions::now();
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
    match helper {
        Some((cpu, _)) => log::info!("linux: vCPU 0 runs on CPU {}, vCPU 1 on CPU {cpu}", cpus::own_index(platform)),
        None => log::info!("linux: both vCPUs run on CPU {} in time slices", cpus::own_index(platform)),
    }
    let mut uart = GuestUart { model: Pl011::default(), lines: ConsoleLines { line: [0; 160], len: 0, created_at } };
    if let Some((cpu, _)) = helper {
        cpus::post(cpu, vcpu_job, [handle, 1, u64::from(timer_intid)]);
    }
    let mine = if helper.is_some() { 1 } else { (1 << VCPUS) - 1 };
    let mut share = CpuShare { gic, handle, mine, uart: Some(&mut uart), wait_until: [0; VCPUS] };
    let here = share.run();
    let there = helper.map(|(cpu, _)| cpus::wait_for(cpu));
    let end = match (here, there) {
        (Ok(end), _) => Some(end),
        (Err(error), Some(Some([1, a, b, c]))) => {
            passed &= check!(error.is_none(), "every run of vCPU 0: {error:?}");
            Exit::decode([a, b, c])
        }
        (error, other) => {
            log::error!("linux: the runs ended with {error:?} here and {other:?} on the other CPU");
            None
        }
    };
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
    passed &= crate::memory_checks::invariants("the Linux guest");
    passed
}

/// The guest's console as the shim shows it: one log line per guest line.
struct ConsoleLines {
    line: [u8; 160],
    len: usize,
    /// The instruction count at VM creation (see `crate::instructions`).
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
                    crate::instructions::now().wrapping_sub(self.created_at),
                    total(|e| &e.mmio),
                    total(|e| &e.wfi),
                    total(|e| &e.interrupted),
                    total(|e| &e.other)
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

/// Whether the guest ended on any CPU.
fn stopped_anywhere() -> bool {
    SEATS.iter().any(|seat| seat.stopped.load(Acquire))
}

/// The physical count (CNTPCT_EL0), the timeline of WFI deadlines.
fn physical_count() -> u64 {
    CNTPCT_EL0.get()
}

/// What one CPU needs to run its share of the guest.
struct CpuShare<'a> {
    gic: GicConfig,
    handle: u64,
    /// The vCPUs this CPU runs (bit n: vCPU n).
    mine: u64,
    /// The guest's UART, on the CPU that serves it (the boot CPU); the
    /// others forward their accesses to it.
    uart: Option<&'a mut GuestUart>,
    /// Physical count until which each vCPU of this CPU waits (0: runnable,
    /// `u64::MAX`: until something wakes it).
    wait_until: [u64; VCPUS],
}

impl CpuShare<'_> {
    fn is_mine(&self, vcpu: usize) -> bool {
        self.mine & 1 << vcpu != 0
    }

    /// An interrupt became pending for `vcpu`: run it (here) or kick its CPU.
    fn wake(&mut self, vcpu: usize) {
        if self.is_mine(vcpu) {
            self.wait_until[vcpu] = 0;
        } else if let Some(seat) = SEATS.get(vcpu) {
            seat.kick(self.gic);
        }
    }

    /// A UART access of `vcpu` (at `offset`, a store of `write` if any): the
    /// value a load reads.
    fn uart_access(&mut self, vcpu: usize, offset: u64, write: Option<u64>) -> u64 {
        if let Some(uart) = self.uart.as_deref_mut() {
            let (value, woken) = uart.access(self.handle, offset, write);
            if let Some(woken) = woken {
                self.wake(woken);
            }
            return value;
        }
        // Forwarded to the boot CPU, which the kick takes out of its guest.
        let seat = &SEATS[vcpu];
        seat.offset.store(offset, Relaxed);
        seat.write.store(write.is_some(), Relaxed);
        seat.value.store(write.unwrap_or(0), Relaxed);
        let posted = seat.posted.load(Relaxed) + 1;
        seat.posted.store(posted, Release);
        SEATS[0].kick(self.gic);
        while seat.served.load(Acquire) != posted {
            if stopped_anywhere() {
                return 0;
            }
            aarch64_cpu::asm::wfe();
        }
        seat.answer.load(Relaxed)
    }

    /// On the boot CPU: the UART accesses other CPUs forwarded, and console
    /// input.
    fn serve_uart(&mut self) {
        let Some(uart) = self.uart.as_deref_mut() else {
            return;
        };
        let mut woken = [None; VCPUS + 1];
        for (seat, slot) in SEATS.iter().zip(&mut woken) {
            let posted = seat.posted.load(Acquire);
            if posted == seat.served.load(Relaxed) {
                continue;
            }
            let write = seat.write.load(Relaxed).then(|| seat.value.load(Relaxed));
            let (value, raised) = uart.access(self.handle, seat.offset.load(Relaxed), write);
            seat.answer.store(value, Relaxed);
            seat.served.store(posted, Release);
            aarch64_cpu::asm::sev();
            *slot = raised;
        }
        woken[VCPUS] = uart.poll_input(self.handle);
        for vcpu in woken.into_iter().flatten() {
            self.wake(vcpu);
        }
    }

    /// The next vCPU of this CPU that can run, from `from` on (round robin).
    fn next_runnable(&self, from: usize, now: u64) -> Option<usize> {
        (from..from + VCPUS).map(|v| v % VCPUS).find(|&v| self.is_mine(v) && self.wait_until[v] <= now)
    }

    /// When this CPU must take its CPU back from `running` (`u64::MAX`: only
    /// for a kick): the end of its slice if another vCPU of this CPU can run,
    /// else the earliest deadline of the others, and the next look at the
    /// console on the boot CPU.
    fn wakeup(&self, running: Option<usize>, now: u64, slice: u64) -> u64 {
        let others = (0..VCPUS).filter(|&v| self.is_mine(v) && Some(v) != running);
        let earliest = others.map(|v| if self.wait_until[v] <= now { now + slice } else { self.wait_until[v] });
        let console = if self.uart.is_some() { now + slice } else { u64::MAX };
        earliest.fold(console, u64::min)
    }

    /// Runs this CPU's vCPUs until the guest ends here (its last exit) or on
    /// another CPU (`None`).
    fn run(&mut self) -> Result<Exit, Option<HypError>> {
        let slice = CNTFRQ_EL0.get() / SLICES_PER_SECOND;
        let mut answer = [0u64; VCPUS];
        let mut from = self.mine.trailing_zeros() as usize % VCPUS;
        loop {
            if stopped_anywhere() {
                return Err(None);
            }
            self.serve_uart();
            let now = physical_count();
            let Some(vcpu) = self.next_runnable(from, now) else {
                gic::wait_for_interrupt(self.wakeup(None, now, slice));
                // A kick names no vCPU: each of this CPU's tries again (the
                // hyp answers at once if it still has nothing to take).
                self.wait_until = [0; VCPUS];
                continue;
            };
            gic::set_wakeup(self.wakeup(Some(vcpu), now, slice));
            let exit = hypercall::vcpu_run(self.handle, vcpu as u64, answer[vcpu]);
            gic::set_wakeup(u64::MAX);
            answer[vcpu] = 0;
            let exits = &SEATS[vcpu].exits;
            count(match exit {
                Ok(Exit::Mmio { .. }) => &exits.mmio,
                Ok(Exit::Wfi { .. }) => &exits.wfi,
                Ok(Exit::Interrupted) => &exits.interrupted,
                _ => &exits.other,
            });
            // The same vCPU goes on after an exit the host serves at once;
            // otherwise the next of this CPU's has its turn.
            from = vcpu + 1;
            match exit {
                Ok(Exit::Mmio { ipa, write, value, .. }) if (UART..UART + 0x1000).contains(&ipa) => {
                    answer[vcpu] = self.uart_access(vcpu, ipa - UART, write.then_some(value));
                    from = vcpu;
                }
                Ok(Exit::Mmio { .. } | Exit::Hypercall { .. }) => from = vcpu,
                Ok(Exit::CpuOn { vcpu: other }) => self.wake(other as usize),
                Ok(Exit::CpuOff) | Err(HypError::VcpuOff) => self.wait_until[vcpu] = u64::MAX,
                Ok(Exit::Interrupted) => gic::take_pending_interrupts(),
                Ok(Exit::Wfi { timer_deadline }) => self.wait_until[vcpu] = timer_deadline.max(1),
                Ok(Exit::Wake { targets }) => {
                    for target in (0..VCPUS).filter(|&t| targets & 1 << t != 0) {
                        self.wake(target);
                    }
                }
                Ok(end @ (Exit::SystemOff | Exit::SystemReset | Exit::Fatal { .. })) => {
                    self.stop();
                    return Ok(end);
                }
                Err(error) => {
                    self.stop();
                    return Err(Some(error));
                }
            }
        }
    }

    /// The guest ended on this CPU: the others stop too.
    fn stop(&self) {
        if let Some(seat) = SEATS.get(self.mine.trailing_zeros() as usize) {
            seat.stopped.store(true, Release);
        }
        for (vcpu, seat) in SEATS.iter().enumerate() {
            if !self.is_mine(vcpu) {
                seat.kick(self.gic);
            }
        }
        aarch64_cpu::asm::sev();
    }
}

/// Takes seat `vcpu` for this CPU: enables its kick, wake-up timer and the
/// guest's PPIs (maintenance, virtual timer) here, and tells the others how
/// to kick it. False if the GIC did not answer.
fn take_seat(gic: GicConfig, vcpu: usize, timer_intid: u32) -> bool {
    let Some(gicv2_mask) = gic::enable_kick(gic, timer_intid).filter(|_| gic::enable_guest_ppis(gic)) else {
        return false;
    };
    use aarch64_cpu::registers::MPIDR_EL1;
    let seat = &SEATS[vcpu];
    seat.mpidr.store(MPIDR_EL1.get() & cpus::MPIDR_AFFINITY_MASK, Relaxed);
    seat.gicv2_mask.store(gicv2_mask, Relaxed);
    seat.ready.store(true, Release);
    true
}

/// The job of a CPU other than the boot CPU: runs vCPU `vcpu` of VM `handle`
/// until the guest ends; returns [1, its exit as x1..x3] if it ended there,
/// [2, error, 0, 0] if a run failed, else zeros.
fn vcpu_job(_cpu: usize, [handle, vcpu, timer_intid]: [u64; 3]) -> [u64; 4] {
    let gic = GicConfig::from_words(core::array::from_fn(|i| GIC_WORDS[i].load(Acquire)));
    let vcpu = vcpu as usize % VCPUS;
    if !take_seat(gic, vcpu, timer_intid as u32) {
        return [2, 0, 0, 0];
    }
    let mut share = CpuShare { gic, handle, mine: 1 << vcpu, uart: None, wait_until: [0; VCPUS] };
    match share.run() {
        Ok(end) => {
            let [a, b, c] = end.encode();
            [1, a, b, c]
        }
        Err(Some(error)) => [2, error as i64 as u64, 0, 0],
        Err(None) => [0; 4],
    }
}
