//! `hyp-vmm run` (and `hyp-vmm linux`): boots a Linux guest from the host's
//! shell with the kernel, initramfs, command line, RAM and vCPUs of its
//! command line (default: 256 MiB, two vCPUs), as the host shim does on bare
//! metal (host-shim/src/suites/linux_guest.rs) and with the same portable parts
//! (`vmm`: boot layout, device tree, PL011): the guest's RAM is this process's
//! memory (pinned and given to the VM by /dev/hyp), each vCPU runs in a thread
//! of its own, the guest's console is this process's stdin and stdout.

use crate::dev_hyp::DevHyp;
use hyp_abi::{Exit, VmType};
use linux_vmm::command_line::RunOptions;
use std::collections::VecDeque;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;
use vmm::boot_layout;
use vmm::guest_tree::{GuestGic, GuestTree};
use vmm::pl011::Pl011;

const GUEST_RAM: u64 = 0x8000_0000;
const PAGE: usize = 4096;
/// Pages per VM_MAP call: 2 MiB, the granule of the guest's RAM size.
const MAP_CHUNK: u64 = 512;
const UART: u64 = 0x0900_0000;
const UART_INTID: u32 = 33;
/// Longest a vCPU thread sleeps in a WFI before it looks for console input.
const WFI_POLL: Duration = Duration::from_millis(10);

/// The guest's RAM: an anonymous mapping of this process.
struct GuestRam {
    base: *mut u8,
    size: usize,
}

impl GuestRam {
    fn new(size: usize) -> Result<GuestRam, String> {
        let base = crate::anonymous_memory(size)
            .ok_or_else(|| format!("no {} MiB for the guest's RAM: give less with --memory", size >> 20))?;
        Ok(GuestRam { base, size })
    }

    /// The bytes at guest-physical `ipa`, `len` long, for loading (before the
    /// VM gets the memory: a protected VM's pages are not the host's after).
    fn slice(&mut self, ipa: u64, len: usize) -> Result<&mut [u8], String> {
        let offset = ipa.checked_sub(GUEST_RAM).map(|o| o as usize).filter(|o| o + len <= self.size);
        let offset = offset.ok_or("outside the guest's RAM")?;
        // SAFETY: In the mapping (checked above), which `&mut self` makes exclusive.
        Ok(unsafe { core::slice::from_raw_parts_mut(self.base.add(offset), len) })
    }
}

/// What the vCPU threads share.
struct Shared<'a> {
    hyp: &'a DevHyp,
    handle: u64,
    uart: Mutex<Console>,
    /// Console input, filled by a thread of its own (it may block in read
    /// for ever, so it is not one of the scoped threads).
    input: Arc<Mutex<VecDeque<u8>>>,
    /// Whether each vCPU is on (PSCI CPU_ON and CPU_OFF), by index.
    on: Vec<AtomicBool>,
    /// Each vCPU thread's pthread, to kick it out of a run (0: not started).
    threads: Vec<AtomicU64>,
    done: AtomicBool,
    end: Mutex<Option<Exit>>,
    /// Wakes threads sleeping in a WFI or waiting to be started.
    kick: Arc<(Mutex<()>, Condvar)>,
}

/// The guest's UART and its output line.
struct Console {
    model: Pl011,
    line: Vec<u8>,
}

impl Shared<'_> {
    fn kick(&self) {
        self.kick.1.notify_all();
    }

    fn sleep(&self, at_most: Duration) {
        let guard = self.kick.0.lock().unwrap_or_else(|e| e.into_inner());
        let _ = self.kick.1.wait_timeout(guard, at_most);
    }

    fn raise(&self, console: &Console) {
        if console.model.interrupt() {
            if let Ok(target) = self.hyp.vcpu_inject_irq(self.handle, 0, u64::from(UART_INTID)) {
                self.kick_vcpus(1 << target.min(63));
            }
        }
    }

    /// Makes the vCPUs of `targets` (bit n: vCPU n) take what is pending for
    /// them now: a signal to a thread inside VCPU_RUN interrupts its CPU, the
    /// hyp ends the run, and the thread enters again with the interrupt in
    /// place (the hyp does not interrupt a running vCPU itself); a sleeping
    /// thread is woken.
    fn kick_vcpus(&self, targets: u64) {
        for (vcpu, thread) in self.threads.iter().enumerate() {
            let thread = thread.load(Ordering::SeqCst);
            if targets & 1 << vcpu != 0 && thread != 0 {
                // SAFETY: `thread` is a live vCPU thread of this process (they
                // end only after `done`), and SIGUSR1 has a no-op handler.
                unsafe { libc::pthread_kill(thread as libc::pthread_t, libc::SIGUSR1) };
            }
        }
        self.kick();
    }

    /// An MMIO access to the UART at `offset`; what a load reads.
    fn uart_access(&self, offset: u64, write: Option<u64>) -> u64 {
        let mut console = self.uart.lock().unwrap_or_else(|e| e.into_inner());
        let value = match write {
            Some(value) => {
                if let Some(byte) = console.model.write(offset, value as u32) {
                    console.put(byte);
                }
                0
            }
            None => u64::from(console.model.read(offset)),
        };
        if write.is_some() || offset == 0 {
            self.raise(&console);
        }
        value
    }

    /// Moves console input into the UART while the guest's driver listens.
    fn poll_input(&self) {
        let mut input = self.input.lock().unwrap_or_else(|e| e.into_inner());
        if input.is_empty() {
            return;
        }
        let mut console = self.uart.lock().unwrap_or_else(|e| e.into_inner());
        let mut received = false;
        while console.model.wants_input() {
            let Some(byte) = input.pop_front() else { break };
            received |= console.model.receive(byte);
        }
        if received {
            self.raise(&console);
        }
    }

    fn finish(&self, exit: Option<Exit>) {
        let mut end = self.end.lock().unwrap_or_else(|e| e.into_inner());
        if end.is_none() {
            *end = exit;
        }
        self.done.store(true, Ordering::SeqCst);
        self.kick();
    }
}

impl Console {
    fn put(&mut self, byte: u8) {
        if byte == b'\n' {
            println!("guest: {}", String::from_utf8_lossy(&self.line));
            self.line.clear();
        } else if byte != b'\r' {
            self.line.push(byte);
        }
    }
}

/// The virtual counter (the host's CNTVOFF_EL2 is 0: the physical count).
fn counter() -> u64 {
    let value: u64;
    // SAFETY: Linux lets EL0 read the virtual counter.
    unsafe { core::arch::asm!("isb", "mrs {}, cntvct_el0", out(reg) value) };
    value
}

fn counter_frequency() -> u64 {
    let value: u64;
    // SAFETY: Reading CNTFRQ_EL0 at EL0 is allowed.
    unsafe { core::arch::asm!("mrs {}, cntfrq_el0", out(reg) value) };
    value.max(1)
}

/// One vCPU's thread: runs it until the guest ends.
fn run_vcpu(shared: &Shared<'_>, vcpu: usize) {
    // SAFETY: pthread_self has no preconditions.
    shared.threads[vcpu].store(unsafe { libc::pthread_self() } as u64, Ordering::SeqCst);
    let frequency = counter_frequency();
    let mut answer = 0;
    while !shared.done.load(Ordering::SeqCst) {
        if !shared.on[vcpu].load(Ordering::SeqCst) {
            shared.sleep(WFI_POLL);
            continue;
        }
        shared.poll_input();
        let exit = shared.hyp.vcpu_run(shared.handle, vcpu as u64, answer);
        answer = 0;
        match exit {
            Ok(Exit::Mmio { ipa, write, value, .. }) if (UART..UART + 0x1000).contains(&ipa) => {
                answer = shared.uart_access(ipa - UART, write.then_some(value));
            }
            Ok(Exit::Mmio { .. } | Exit::Hypercall { .. } | Exit::Interrupted) => {}
            Ok(Exit::CpuOn { vcpu: other }) => {
                if let Some(on) = shared.on.get(other as usize) {
                    on.store(true, Ordering::SeqCst);
                }
                shared.kick();
            }
            Ok(Exit::CpuOff) => shared.on[vcpu].store(false, Ordering::SeqCst),
            // A WFE: runnable now; let a thread this one waits for (sharing
            // its CPU) run first.
            Ok(Exit::Wfi { timer_deadline: 0 }) => std::thread::yield_now(),
            Ok(Exit::Wfi { timer_deadline }) => {
                let ticks = timer_deadline.saturating_sub(counter());
                let wait = Duration::from_nanos(ticks.saturating_mul(1_000_000_000) / frequency);
                shared.sleep(wait.min(WFI_POLL));
            }
            Ok(Exit::Wake { targets }) => shared.kick_vcpus(targets),
            Ok(end @ (Exit::SystemOff | Exit::SystemReset | Exit::Fatal { .. })) => shared.finish(Some(end)),
            Err(e) => {
                println!("hyp-vmm: run of vCPU {vcpu}: {e}");
                shared.finish(None);
            }
        }
    }
}

extern "C" fn on_kick(_: i32) {}

/// SIGUSR1 does nothing but interrupt: see `Shared::kick_vcpus`.
fn install_kick_handler() {
    // SAFETY: A zeroed sigaction with a plain handler that touches nothing.
    let mut action: libc::sigaction = unsafe { core::mem::zeroed() };
    action.sa_sigaction = on_kick as *const () as usize;
    action.sa_flags = libc::SA_RESTART;
    // SAFETY: Installs that handler for the process.
    unsafe { libc::sigaction(libc::SIGUSR1, &action, core::ptr::null_mut()) };
}

/// Which GIC the hyp emulates for guests: the one the host has.
fn host_gic() -> GuestGic {
    let base = std::path::Path::new("/sys/firmware/devicetree/base");
    let gicv3 = std::fs::read_dir(base).into_iter().flatten().flatten().any(|node| {
        std::fs::read(node.path().join("compatible"))
            .is_ok_and(|c| c.split(|&b| b == 0).any(|name| name == b"arm,gic-v3"))
    });
    if gicv3 {
        GuestGic::V3
    } else {
        GuestGic::V2
    }
}

/// Boots the guest of `options` to its power-off; true if it got there and
/// every page came back.
pub fn run(hyp: &DevHyp, ty: VmType, options: &RunOptions) -> Result<(), String> {
    let image_path = &options.kernel;
    let image = std::fs::read(image_path).map_err(|e| format!("the kernel {image_path}: {e}"))?;
    let initrd = match &options.initrd {
        Some(path) => std::fs::read(path).map_err(|e| format!("the initramfs {path}: {e}"))?,
        None => Vec::new(),
    };
    // The whole file: its header must cover it (`image_size`), and an EFI
    // stub's PE/COFF header must not describe more of it than is there.
    let header = vmm::kernel_image::check(&image).map_err(|e| format!("the kernel {image_path}: {e}"))?;
    let ram_size = options.memory;
    let layout = boot_layout::place(GUEST_RAM, ram_size, header, initrd.len() as u64)
        .map_err(|e| format!("{} MiB of guest RAM (--memory): {e}", ram_size >> 20))?;
    let mut ram = GuestRam::new(ram_size as usize)?;
    ram.slice(layout.kernel, image.len())?.copy_from_slice(&image);
    ram.slice(layout.initrd, initrd.len())?.copy_from_slice(&initrd);
    let vcpus = options.vcpus as usize;
    let tree = GuestTree {
        ram: (GUEST_RAM, ram_size),
        vcpus: options.vcpus,
        gic: host_gic(),
        uart: UART,
        uart_intid: UART_INTID,
        bootargs: &options.cmdline,
        initrd: options.initrd.as_ref().map(|_| (layout.initrd, layout.initrd + initrd.len() as u64)),
    };
    let tree_size = tree.write(ram.slice(layout.tree, boot_layout::TREE_ROOM as usize)?).map_err(|e| e.to_string())?;
    println!(
        "hyp-vmm: linux: a {ty:?} VM of {vcpus} vCPUs, {} MiB of this process at IPA {GUEST_RAM:#x}: Image at \
         {:#x}, initramfs at {:#x}, device tree ({tree_size} bytes) at {:#x}",
        ram_size >> 20,
        layout.kernel,
        layout.initrd,
        layout.tree
    );
    let pages = ram_size / PAGE as u64;
    let handle = hyp.vm_create(ty, vcpus as u64).map_err(|e| format!("create the VM: {e}"))?;
    for chunk in (0..pages).step_by(MAP_CHUNK as usize) {
        // SAFETY: Inside the mapping.
        let address = unsafe { ram.base.add(chunk as usize * PAGE) };
        hyp.vm_map(handle, address, GUEST_RAM + chunk * PAGE as u64, MAP_CHUNK)
            .map_err(|e| format!("map the guest's RAM at IPA {:#x}: {e}", GUEST_RAM + chunk * PAGE as u64))?;
    }
    hyp.vcpu_init(handle, 0, layout.kernel, layout.tree).map_err(|e| format!("vCPU 0: {e}"))?;
    let shared = Shared {
        hyp,
        handle,
        uart: Mutex::new(Console { model: Pl011::default(), line: Vec::new() }),
        input: Arc::new(Mutex::new(VecDeque::new())),
        on: (0..vcpus).map(|vcpu| AtomicBool::new(vcpu == 0)).collect(),
        threads: (0..vcpus).map(|_| AtomicU64::new(0)).collect(),
        done: AtomicBool::new(false),
        end: Mutex::new(None),
        kick: Arc::new((Mutex::new(()), Condvar::new())),
    };
    install_kick_handler();
    let (input, kick) = (shared.input.clone(), shared.kick.clone());
    // Console input: this process's stdin, a byte at a time.
    std::thread::spawn(move || {
        let mut byte = [0u8];
        while matches!(std::io::stdin().read(&mut byte), Ok(1)) {
            input.lock().unwrap_or_else(|e| e.into_inner()).push_back(byte[0]);
            kick.1.notify_all();
        }
    });
    std::thread::scope(|scope| {
        for vcpu in 0..vcpus {
            let shared = &shared;
            scope.spawn(move || run_vcpu(shared, vcpu));
        }
    });
    let _ = std::io::stdout().flush();
    let end = *shared.end.lock().unwrap_or_else(|e| e.into_inner());
    hyp.vm_teardown(handle).map_err(|e| format!("teardown: {e}"))?;
    if ty == VmType::Protected {
        for chunk in (0..pages).step_by(MAP_CHUNK as usize) {
            hyp.vm_reclaim(handle, GUEST_RAM + chunk * PAGE as u64, MAP_CHUNK).map_err(|e| format!("reclaim: {e}"))?;
        }
    }
    match end {
        Some(Exit::SystemOff) => Ok(()),
        other => Err(format!("the guest ended with {other:?}")),
    }
}
