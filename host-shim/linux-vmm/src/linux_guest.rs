//! `hyp-vmm run` (and `hyp-vmm linux`): boots a Linux guest from the host's
//! shell with the kernel, initramfs, command line, RAM and vCPUs of its
//! options (default: 256 MiB, two vCPUs), on `/dev/kvm` through the rust-vmm
//! crates `kvm-ioctls` and `kvm-bindings`, as any KVM VMM would: on the hyp's
//! Linux host the driver's `/dev/kvm` (host-shim/linux-module/dev_kvm.c), or
//! Linux's own KVM. The portable parts are the host shim's (`vmm`: boot
//! layout, device tree, PL011); the platform is `kvm_layout`'s. The guest's
//! RAM is this process's memory (one slot), each vCPU runs in a thread of its
//! own, the vGIC is KVM's (`KVM_CREATE_DEVICE`), the guest's console is this
//! process's stdin and stdout with the PL011's interrupt a level on
//! `KVM_IRQ_LINE`.

use crate::guest_ram::GuestRam;
use crate::virtio_bus::VirtioBus;
use core::mem::offset_of;
use kvm_bindings::{
    kvm_create_device, kvm_device_attr, kvm_device_type_KVM_DEV_TYPE_ARM_VGIC_V2,
    kvm_device_type_KVM_DEV_TYPE_ARM_VGIC_V3, kvm_regs, kvm_userspace_memory_region, kvm_vcpu_init, PSR_MODE_EL1h,
    KVM_ARM_IRQ_TYPE_SHIFT, KVM_ARM_IRQ_TYPE_SPI, KVM_ARM_VCPU_POWER_OFF, KVM_ARM_VCPU_PSCI_0_2,
    KVM_DEV_ARM_VGIC_CTRL_INIT, KVM_DEV_ARM_VGIC_GRP_ADDR, KVM_DEV_ARM_VGIC_GRP_CTRL, KVM_DEV_ARM_VGIC_GRP_NR_IRQS,
    KVM_REG_ARM64, KVM_REG_ARM_CORE, KVM_REG_SIZE_U64, KVM_SYSTEM_EVENT_RESET, KVM_SYSTEM_EVENT_SHUTDOWN,
    KVM_VGIC_V2_ADDR_TYPE_CPU, KVM_VGIC_V2_ADDR_TYPE_DIST, KVM_VGIC_V3_ADDR_TYPE_DIST, KVM_VGIC_V3_ADDR_TYPE_REDIST,
    PSR_A_BIT, PSR_D_BIT, PSR_F_BIT, PSR_I_BIT,
};
use kvm_ioctls::{DeviceFd, Kvm, VcpuExit, VcpuFd, VmFd};
use linux_vmm::command_line::RunOptions;
use linux_vmm::kvm_layout::{self, DMA_POOL_SIZE, GIC_INTERRUPTS, GUEST_RAM, UART, UART_INTID};
use linux_vmm::mmio_data;
use std::collections::VecDeque;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;
use vmm::boot_layout;
use vmm::guest_tree::{GuestGic, GuestTree};
use vmm::pl011::Pl011;

const UART_SIZE: u64 = 0x1000;
/// How often the console thread offers waiting input to a guest not yet
/// ready for it.
const INPUT_POLL: Duration = Duration::from_millis(10);

/// `ONE_REG` ids of the core registers set at boot: `KVM_REG_ARM_CORE` with
/// the register's offset in `struct kvm_regs` in 32-bit words.
const fn core_register(offset: usize) -> u64 {
    KVM_REG_ARM64 | KVM_REG_SIZE_U64 | KVM_REG_ARM_CORE as u64 | (offset / 4) as u64
}
const REG_X0: u64 = core_register(offset_of!(kvm_regs, regs.regs));
const REG_PC: u64 = core_register(offset_of!(kvm_regs, regs.pc));
const REG_PSTATE: u64 = core_register(offset_of!(kvm_regs, regs.pstate));
/// EL1h with D, A, I and F masked: the boot protocol's state, and KVM's reset
/// value (so a protected VM takes the write: it changes nothing).
const BOOT_PSTATE: u64 = (PSR_MODE_EL1h | PSR_D_BIT | PSR_A_BIT | PSR_I_BIT | PSR_F_BIT) as u64;

// `kvm_layout`'s plain numbers are those of the uapi headers.
const _: () = assert!(kvm_layout::IRQ_TYPE_SHIFT == KVM_ARM_IRQ_TYPE_SHIFT);
const _: () = assert!(kvm_layout::IRQ_TYPE_SPI == KVM_ARM_IRQ_TYPE_SPI);
const _: () = assert!(BOOT_PSTATE == 0x3c5);

/// How the guest ended.
#[derive(Clone, Debug, Eq, PartialEq)]
enum End {
    /// PSCI SYSTEM_OFF (`KVM_SYSTEM_EVENT_SHUTDOWN`).
    PowerOff,
    /// PSCI SYSTEM_RESET (`KVM_SYSTEM_EVENT_RESET`): not served, the run ends.
    Reset,
    /// An exit or error this VMM cannot go on from.
    Failed(String),
}

/// A vCPU's `kvm_run.immediate_exit`, for another thread to set.
struct ImmediateExit(AtomicPtr<u8>);

/// What the vCPU threads share.
struct Shared<'a> {
    vm: &'a VmFd,
    virtio: &'a VirtioBus,
    uart: Mutex<Console>,
    /// Console input, filled by a thread of its own (it may block in read
    /// for ever, so it is not one of the scoped threads and holds nothing of
    /// the VM), and its arrival.
    input: Arc<(Mutex<VecDeque<u8>>, Condvar)>,
    /// Each vCPU thread's pthread, to signal it out of `KVM_RUN` (0: not started).
    threads: Vec<AtomicU64>,
    /// Each vCPU's `immediate_exit`, valid while its `VcpuFd` lives (longer
    /// than every thread that uses it: the fds are dropped after the scope).
    immediate_exits: Vec<ImmediateExit>,
    done: AtomicBool,
    end: Mutex<Option<End>>,
}

/// The guest's UART, its output line and its interrupt line's level.
struct Console {
    model: Pl011,
    line: Vec<u8>,
    level: bool,
}

impl Shared<'_> {
    /// Drives the UART's interrupt line to what the model says, if it changed:
    /// the line is a level (`KVM_IRQ_LINE` 1 while the PL011 asserts it, 0
    /// when it stops), and KVM's vGIC keeps it pending while it is high.
    fn follow_level(&self, console: &mut Console) {
        let level = console.model.interrupt();
        if level == console.level {
            return;
        }
        match self.vm.set_irq_line(kvm_layout::spi_line(UART_INTID), level) {
            Ok(()) => console.level = level,
            Err(e) => self.finish(End::Failed(format!("KVM_IRQ_LINE of INTID {UART_INTID} to {}: {e}", level as u8))),
        }
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
        // An access may make the driver ready for input (`Pl011::wants_input`).
        self.offer_input(&mut console);
        self.follow_level(&mut console);
        value
    }

    /// Moves waiting console input into the UART while the guest's driver
    /// listens. Lock order: the UART, then the input.
    fn offer_input(&self, console: &mut Console) {
        let mut input = self.input.0.lock().unwrap_or_else(|e| e.into_inner());
        while console.model.wants_input() {
            let Some(byte) = input.pop_front() else { break };
            console.model.receive(byte);
        }
    }

    /// The console thread: offers input as it arrives (a vCPU in WFI makes no
    /// UART access that would), and again while the guest is not ready for it.
    fn feed_console(&self) {
        while !self.done.load(Ordering::SeqCst) {
            {
                let mut console = self.uart.lock().unwrap_or_else(|e| e.into_inner());
                self.offer_input(&mut console);
                self.follow_level(&mut console);
            }
            let input = self.input.0.lock().unwrap_or_else(|e| e.into_inner());
            let wait = if input.is_empty() { INPUT_POLL * 10 } else { INPUT_POLL };
            let _ = self.input.1.wait_timeout(input, wait);
        }
    }

    /// Ends the run: the first end wins; every vCPU thread leaves `KVM_RUN`
    /// (its `immediate_exit` set, then a signal: in the driver or about to
    /// enter, `KVM_RUN` returns `EINTR`).
    fn finish(&self, end: End) {
        self.end.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(end);
        self.done.store(true, Ordering::SeqCst);
        for flag in &self.immediate_exits {
            // SAFETY: The pointer is into a live vCPU's kvm_run (see
            // `immediate_exits`); KVM reads the byte at each KVM_RUN.
            unsafe { flag.0.load(Ordering::SeqCst).write_volatile(1) };
        }
        for thread in &self.threads {
            let thread = thread.load(Ordering::SeqCst);
            if thread != 0 {
                // SAFETY: `thread` is a vCPU thread of this process, alive
                // until the scope ends, and SIGUSR1 has a no-op handler.
                unsafe { libc::pthread_kill(thread as libc::pthread_t, libc::SIGUSR1) };
            }
        }
        self.input.1.notify_all();
        self.virtio.stop();
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

/// One vCPU's thread: runs it until the guest ends. Secondary vCPUs start
/// powered off: their `KVM_RUN` waits until the guest's PSCI `CPU_ON`.
fn run_vcpu(shared: &Shared<'_>, vcpu: &mut VcpuFd, index: usize) {
    // SAFETY: pthread_self has no preconditions.
    shared.threads[index].store(unsafe { libc::pthread_self() } as u64, Ordering::SeqCst);
    while !shared.done.load(Ordering::SeqCst) {
        match vcpu.run() {
            Ok(VcpuExit::MmioWrite(address, data)) => {
                let value = mmio_data::stored_value(data);
                if (UART..UART + UART_SIZE).contains(&address) {
                    shared.uart_access(address - UART, Some(value));
                } else if shared.virtio.claims(address) {
                    if let Err(e) = shared.virtio.access(shared.vm, address, data.len(), Some(value)) {
                        shared.finish(End::Failed(e));
                    }
                }
            }
            Ok(VcpuExit::MmioRead(address, data)) => {
                let value = if (UART..UART + UART_SIZE).contains(&address) {
                    shared.uart_access(address - UART, None)
                } else if shared.virtio.claims(address) {
                    shared.virtio.access(shared.vm, address, data.len(), None).unwrap_or_else(|e| {
                        shared.finish(End::Failed(e));
                        0
                    })
                } else {
                    0
                };
                mmio_data::answer_load(data, value);
            }
            Ok(VcpuExit::SystemEvent(KVM_SYSTEM_EVENT_SHUTDOWN, _)) => shared.finish(End::PowerOff),
            Ok(VcpuExit::SystemEvent(KVM_SYSTEM_EVENT_RESET, _)) => shared.finish(End::Reset),
            // A hypercall this VMM offers nothing for: the guest sees it unanswered.
            Ok(VcpuExit::Hypercall(_) | VcpuExit::Intr) => {}
            Ok(other) => shared.finish(End::Failed(format!("vCPU {index}: exit {other:?}"))),
            Err(e) if e.errno() == libc::EINTR => {}
            Err(e) => shared.finish(End::Failed(format!("KVM_RUN of vCPU {index}: {e}"))),
        }
    }
}

extern "C" fn on_kick(_: i32) {}

/// SIGUSR1 does nothing but interrupt `KVM_RUN`: see `Shared::finish`.
fn install_kick_handler() {
    // SAFETY: A zeroed sigaction with a plain handler that touches nothing.
    let mut action: libc::sigaction = unsafe { core::mem::zeroed() };
    action.sa_sigaction = on_kick as *const () as usize;
    action.sa_flags = libc::SA_RESTART;
    // SAFETY: Installs that handler for the process.
    unsafe { libc::sigaction(libc::SIGUSR1, &action, core::ptr::null_mut()) };
}

/// Sets the vGIC's attribute `attr` of `group`; `value` is where KVM reads
/// its value (0: none).
fn set_gic_attribute(gic: &DeviceFd, group: u32, attr: u32, value: u64) -> Result<(), String> {
    let attribute = kvm_device_attr { flags: 0, group, attr: attr.into(), addr: value };
    gic.set_device_attr(&attribute)
        .map_err(|e| format!("KVM_SET_DEVICE_ATTR of the vGIC, group {group} attribute {attr}: {e}"))
}

/// Sets one of the vGIC's `KVM_DEV_ARM_VGIC_GRP_ADDR` addresses.
fn set_gic_address(gic: &DeviceFd, kind: u32, address: u64) -> Result<(), String> {
    set_gic_attribute(gic, KVM_DEV_ARM_VGIC_GRP_ADDR, kind, &address as *const u64 as u64)
}

/// KVM's vGIC: a GICv3, or a GICv2 where KVM has none (`ENODEV`), at
/// `kvm_layout`'s addresses, with `GIC_INTERRUPTS` interrupts, initialised
/// (after every vCPU is made).
fn create_gic(vm: &VmFd, vcpus: u32) -> Result<(GuestGic, DeviceFd), String> {
    let mut device = kvm_create_device { type_: kvm_device_type_KVM_DEV_TYPE_ARM_VGIC_V3, fd: 0, flags: 0 };
    let (gic, fd) = match vm.create_device(&mut device) {
        Ok(fd) => (kvm_layout::gic_v3(vcpus), fd),
        Err(e) if e.errno() == libc::ENODEV => {
            device.type_ = kvm_device_type_KVM_DEV_TYPE_ARM_VGIC_V2;
            let fd = vm.create_device(&mut device).map_err(|e| format!("KVM_CREATE_DEVICE of a vGICv2: {e}"))?;
            (kvm_layout::gic_v2(), fd)
        }
        Err(e) => return Err(format!("KVM_CREATE_DEVICE of a vGICv3: {e}")),
    };
    match gic {
        GuestGic::V3 { distributor, redistributors } => {
            set_gic_address(&fd, KVM_VGIC_V3_ADDR_TYPE_DIST, distributor)?;
            set_gic_address(&fd, KVM_VGIC_V3_ADDR_TYPE_REDIST, redistributors)?;
        }
        GuestGic::V2 { distributor, cpu_interface } => {
            set_gic_address(&fd, KVM_VGIC_V2_ADDR_TYPE_DIST, distributor)?;
            set_gic_address(&fd, KVM_VGIC_V2_ADDR_TYPE_CPU, cpu_interface)?;
        }
    }
    // The interrupt count is a 32-bit value.
    let interrupts: u32 = GIC_INTERRUPTS;
    set_gic_attribute(&fd, KVM_DEV_ARM_VGIC_GRP_NR_IRQS, 0, &interrupts as *const u32 as u64)?;
    set_gic_attribute(&fd, KVM_DEV_ARM_VGIC_GRP_CTRL, KVM_DEV_ARM_VGIC_CTRL_INIT, 0)?;
    Ok((gic, fd))
}

/// The VM's vCPUs, each initialised with PSCI 0.2; all but vCPU 0 powered off
/// (the guest starts them with PSCI `CPU_ON`).
fn create_vcpus(vm: &VmFd, count: u32) -> Result<Vec<VcpuFd>, String> {
    let mut init = kvm_vcpu_init::default();
    vm.get_preferred_target(&mut init).map_err(|e| format!("KVM_ARM_PREFERRED_TARGET: {e}"))?;
    init.features[0] |= 1 << KVM_ARM_VCPU_PSCI_0_2;
    (0..count)
        .map(|index| {
            let vcpu = vm.create_vcpu(index.into()).map_err(|e| format!("KVM_CREATE_VCPU {index}: {e}"))?;
            let mut features = init;
            if index > 0 {
                features.features[0] |= 1 << KVM_ARM_VCPU_POWER_OFF;
            }
            vcpu.vcpu_init(&features).map_err(|e| format!("KVM_ARM_VCPU_INIT of vCPU {index}: {e}"))?;
            Ok(vcpu)
        })
        .collect()
}

/// vCPU 0 enters the kernel at `entry` with the device tree's address in x0,
/// as the arm64 boot protocol wants.
fn set_boot_registers(vcpu: &VcpuFd, entry: u64, tree: u64) -> Result<(), String> {
    for (id, name, value) in [(REG_PSTATE, "pstate", BOOT_PSTATE), (REG_PC, "pc", entry), (REG_X0, "x0", tree)] {
        vcpu.set_one_reg(id, &value.to_le_bytes()).map_err(|e| format!("KVM_SET_ONE_REG of vCPU 0's {name}: {e}"))?;
    }
    Ok(())
}

/// Why a guest did not power off, and whether its VM had started to run
/// (then its memory had gone to the hyp).
#[derive(Debug)]
pub struct Failure {
    pub reason: String,
    pub ran: bool,
}

/// Boots the guest of `options` in `ram` to its end; Ok if it powered off.
/// Every KVM fd of the VM is closed when this returns (the driver then takes
/// the VM down and gives its pages back).
pub fn run(ram: &mut GuestRam, options: &RunOptions) -> Result<(), Failure> {
    let guest = set_up(ram, options).map_err(|reason| Failure { reason, ran: false })?;
    guest.run().map_err(|reason| Failure { reason, ran: true })
}

/// A VM made, loaded and ready to run.
struct Guest {
    vm: VmFd,
    vcpus: Vec<VcpuFd>,
    gic: DeviceFd,
    virtio: VirtioBus,
    /// Whether this process's stdin goes to the virtio console.
    input_to_hvc0: bool,
}

/// Loads the kernel, initramfs and device tree into `ram` and makes the VM
/// on `/dev/kvm`: its memory slot, vCPUs, vGIC and vCPU 0's boot registers.
fn set_up(ram: &mut GuestRam, options: &RunOptions) -> Result<Guest, String> {
    let image_path = &options.kernel;
    let image = std::fs::read(image_path).map_err(|e| format!("the kernel {image_path}: {e}"))?;
    let initrd = match &options.initrd {
        Some(path) => std::fs::read(path).map_err(|e| format!("the initramfs {path}: {e}"))?,
        None => Vec::new(),
    };
    // The whole file: its header must cover it (`image_size`), and an EFI
    // stub's PE/COFF header must not describe more of it than is there.
    let header = vmm::kernel_image::check(&image).map_err(|e| format!("the kernel {image_path}: {e}"))?;
    let ram_size = ram.size() as u64;
    // A protected guest's restricted DMA pool takes the top of its RAM; the
    // boot layout goes below it.
    let dma_pool = options.protected.then_some((GUEST_RAM + ram_size.saturating_sub(DMA_POOL_SIZE), DMA_POOL_SIZE));
    let layout_size = ram_size - dma_pool.map_or(0, |(_, size)| size);
    let layout = boot_layout::place(GUEST_RAM, layout_size, header, initrd.len() as u64)
        .map_err(|e| format!("{} MiB of guest RAM (--memory): {e}", ram_size >> 20))?;
    ram.slice(layout.kernel, image.len())?.copy_from_slice(&image);
    ram.slice(layout.initrd, initrd.len())?.copy_from_slice(&initrd);

    let kvm = Kvm::new().map_err(|e| format!("open /dev/kvm: {e}"))?;
    let ipa_limit = u32::try_from(kvm.get_host_ipa_limit()).unwrap_or(0);
    let vm_type = kvm_layout::vm_type(ipa_limit, GUEST_RAM + ram_size, options.protected)?;
    let vm = kvm.create_vm_with_type(vm_type).map_err(|e| format!("KVM_CREATE_VM of type {vm_type:#x}: {e}"))?;
    let slot = kvm_userspace_memory_region {
        slot: 0,
        flags: 0,
        guest_phys_addr: GUEST_RAM,
        memory_size: ram_size,
        userspace_addr: ram.host_address(),
    };
    // SAFETY: The slot is `ram`'s mapping, which this process never unmaps
    // (`GuestRam`); it outlives the VM.
    unsafe { vm.set_user_memory_region(slot) }.map_err(|e| format!("KVM_SET_USER_MEMORY_REGION: {e}"))?;
    let vcpus = create_vcpus(&vm, options.vcpus)?;
    let (gic, gic_fd) = create_gic(&vm, options.vcpus)?;
    let virtio = VirtioBus::new(ram, options)?;
    let virtio_nodes = virtio.nodes();

    let tree = GuestTree {
        ram: (GUEST_RAM, ram_size),
        vcpus: options.vcpus,
        gic,
        uart: UART,
        uart_intid: UART_INTID,
        bootargs: &options.cmdline,
        initrd: options.initrd.as_ref().map(|_| (layout.initrd, layout.initrd + initrd.len() as u64)),
        virtio: &virtio_nodes,
        dma_pool,
    };
    let tree_size = tree.write(ram.slice(layout.tree, boot_layout::TREE_ROOM as usize)?).map_err(|e| e.to_string())?;
    let vcpu0 = vcpus.first().ok_or("no vCPU")?;
    set_boot_registers(vcpu0, layout.kernel, layout.tree)?;
    println!(
        "hyp-vmm: linux: a {} VM of {} vCPUs on /dev/kvm (type {vm_type:#x}, vGIC{}), {} MiB of this process at IPA \
         {GUEST_RAM:#x}: Image at {:#x}, initramfs at {:#x}, device tree ({tree_size} bytes) at {:#x}",
        if options.protected { "protected" } else { "non-protected" },
        options.vcpus,
        if matches!(gic, GuestGic::V3 { .. }) { "v3" } else { "v2" },
        ram_size >> 20,
        layout.kernel,
        layout.initrd,
        layout.tree
    );
    println!("hyp-vmm: linux: virtio devices: {}", virtio.describe());
    if let Some((base, size)) = dma_pool {
        println!("hyp-vmm: linux: the guest's restricted DMA pool: {} MiB at IPA {base:#x}", size >> 20);
    }
    Ok(Guest { vm, vcpus, gic: gic_fd, virtio, input_to_hvc0: options.input_to_hvc0 })
}

impl Guest {
    /// Runs every vCPU in a thread of its own, and the console, until the
    /// guest ends; then closes every fd of the VM: the vCPUs (and their
    /// kvm_run mappings), the vGIC, the VM.
    fn run(self) -> Result<(), String> {
        let Guest { vm, mut vcpus, gic, virtio, input_to_hvc0 } = self;
        let shared = Shared {
            vm: &vm,
            virtio: &virtio,
            uart: Mutex::new(Console { model: Pl011::default(), line: Vec::new(), level: false }),
            input: Arc::new((Mutex::new(VecDeque::new()), Condvar::new())),
            threads: vcpus.iter().map(|_| AtomicU64::new(0)).collect(),
            immediate_exits: vcpus
                .iter_mut()
                .map(|vcpu| ImmediateExit(AtomicPtr::new(&mut vcpu.get_kvm_run().immediate_exit)))
                .collect(),
            done: AtomicBool::new(false),
            end: Mutex::new(None),
        };
        install_kick_handler();
        let input = shared.input.clone();
        // The PL011's input: this process's stdin, a byte at a time (unless
        // it goes to the virtio console, whose device reads it).
        if !input_to_hvc0 {
            std::thread::spawn(move || {
                let mut byte = [0u8];
                while matches!(std::io::stdin().read(&mut byte), Ok(1)) {
                    input.0.lock().unwrap_or_else(|e| e.into_inner()).push_back(byte[0]);
                    input.1.notify_all();
                }
            });
        }
        std::thread::scope(|scope| {
            let shared = &shared;
            scope.spawn(move || shared.feed_console());
            // The virtio devices' host sides (a tap, vsock's sockets).
            scope.spawn(move || {
                if let Err(e) = shared.virtio.serve_backends(shared.vm) {
                    shared.finish(End::Failed(e));
                }
            });
            for (index, vcpu) in vcpus.iter_mut().enumerate() {
                scope.spawn(move || run_vcpu(shared, vcpu, index));
            }
        });
        let _ = std::io::stdout().flush();
        let end = shared.end.lock().unwrap_or_else(|e| e.into_inner()).take();
        drop(shared);
        drop(vcpus);
        drop(gic);
        drop(vm);
        match end {
            Some(End::PowerOff) => Ok(()),
            other => Err(format!("the guest ended with {other:?}")),
        }
    }
}
