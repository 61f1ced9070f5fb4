//! What the shim needs from its device tree: the console, the PSCI conduit and the
//! hyp's carve-outs under `/reserved-memory` (what a real OS would avoid, and what
//! the isolation check deliberately touches).

use core::sync::atomic::{AtomicBool, Ordering};
use fdt::Fdt;
use hyp_abi::bootargs::{BootArgError, HypArgs, ShimArgs};

/// Most carve-outs the shim remembers.
pub const MAX_HYP_REGIONS: usize = 4;
/// Most CPUs the shim uses.
pub const MAX_CPUS: usize = 8;

pub struct HostPlatform {
    pub uart_base: usize,
    pub uart_kind: hyp_drivers::uart::UartKind,
    pub psci_hvc: bool,
    /// A `/psci` node exists (CPUs can be started with CPU_ON).
    pub psci: bool,
    /// MPIDR (`reg`) of each CPU in `/cpus` whose enable method is PSCI.
    pub cpus: [u64; MAX_CPUS],
    pub cpu_count: usize,
    /// Rounds of the all-CPU stress run per CPU: `shim.smp-rounds=N`.
    pub smp_stress_rounds: u64,
    /// The interrupt controller, if the shim can drive it.
    pub gic: Option<crate::harness::gic::GicConfig>,
    /// INTID of the EL1 non-secure physical timer (`/timer`, second entry).
    pub timer_intid: Option<u32>,
    /// `(base, size)` of each `/reserved-memory/hyp@...` node.
    pub hyp_regions: [(u64, u64); MAX_HYP_REGIONS],
    pub hyp_region_count: usize,
    /// Start and end of the first RAM bank (the first address past it is not RAM).
    pub ram_start: u64,
    pub ram_end: u64,
    /// Rounds of the 32-VM stress run: `shim.vm-rounds=N` in the bootargs.
    pub vm_stress_rounds: u64,
    /// Run a Linux guest instead of the checks, in a VM of this type:
    /// `shim.linux-guest=protected` or `=non-protected` (see `linux_guest.rs`).
    pub linux_guest: Option<hyp_abi::VmType>,
    /// Where the bootloader put the guest's kernel Image, and its size in
    /// bytes: `shim.guest-kernel=<address>,<size>` in the bootargs.
    pub guest_kernel: Option<(u64, u64)>,
    /// Start and end of the initramfs the bootloader loaded
    /// (`/chosen/linux,initrd-start` and `-end`).
    pub initrd: Option<(u64, u64)>,
    /// Address and size of this device tree.
    pub device_tree: (u64, u64),
    /// Hostile-host calls instead of the checks: `shim.fuzz-calls=N`.
    pub fuzz_calls: u64,
    /// Their seed: `shim.fuzz-seed=S`.
    pub fuzz_seed: u64,
    /// Block-split stress instead of the checks: `shim.split-stress=N`
    /// transitions (see `split_stress.rs`).
    pub split_stress: u64,
    /// The console check instead of the others: `shim.console-attack`
    /// (see `console_checks.rs`).
    pub console_attack: bool,
    /// The reset check: `shim.reset-scrub` (see `leak_checks.rs`).
    pub reset_scrub: bool,
    /// The first bad `shim.*` word of the bootargs: the run fails with its
    /// message instead of running anything.
    pub bootargs_error: Option<BootArgError>,
}

/// `hyp.exit=semihosting` in the bootargs: QEMU runs with `-semihosting`, and
/// a failed run ends with a semihosting exit of status 1 (plain store and
/// load: the MMU is off).
static SEMIHOSTING_EXIT: AtomicBool = AtomicBool::new(false);
/// The PSCI conduit is HVC (for [`fail_stop`], which has no platform).
static PSCI_HVC: AtomicBool = AtomicBool::new(false);
/// [`fail_stop`] has begun (a fault in it must not start it again).
static STOPPING: AtomicBool = AtomicBool::new(false);

/// Rounds of the VM stress run unless the bootargs say otherwise.
const DEFAULT_VM_STRESS_ROUNDS: u64 = 20;
/// Rounds per CPU of the all-CPU stress run unless the bootargs say otherwise.
const DEFAULT_SMP_STRESS_ROUNDS: u64 = 100;

/// Big-endian cells `at..at + count` of a property value, as one number.
fn cells(value: &[u8], at: usize, count: usize) -> Option<u64> {
    (at..at + count).try_fold(0u64, |acc, i| {
        let b = value.get(i * 4..i * 4 + 4)?;
        Some(acc << 32 | u64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]])))
    })
}

/// `#address-cells` / `#size-cells` of the node at `path` (defaults 2 and 1).
fn cell_counts(fdt: &Fdt<'_>, path: &str) -> (usize, usize) {
    let node = fdt.find_node(if path.is_empty() { "/" } else { path });
    let read =
        |name: &str, default: usize| node.and_then(|n| n.property(name)).and_then(|p| p.as_usize()).unwrap_or(default);
    (read("#address-cells", 2), read("#size-cells", 1))
}

/// Translates `address`, a `reg` address of the node at `path`, through the
/// `ranges` of every bus above it to a CPU physical address. `None` if a bus
/// does not map it.
fn translate(fdt: &Fdt<'_>, path: &str, mut address: u64) -> Option<u64> {
    let mut bus = path.rsplit_once('/')?.0;
    while !bus.is_empty() {
        let parent = bus.rsplit_once('/').map_or("", |(p, _)| p);
        let ranges = fdt.find_node(bus)?.property("ranges")?.value;
        if !ranges.is_empty() {
            let (child_cells, size_cells) = cell_counts(fdt, bus);
            let (parent_cells, _) = cell_counts(fdt, parent);
            let entry = child_cells + parent_cells + size_cells;
            let mapped = (0..ranges.len() / 4 / entry.max(1)).find_map(|i| {
                let child = cells(ranges, i * entry, child_cells)?;
                let target = cells(ranges, i * entry + child_cells, parent_cells)?;
                let size = cells(ranges, i * entry + child_cells + parent_cells, size_cells)?;
                (child <= address && address - child < size).then(|| target + (address - child))
            });
            address = mapped?;
        }
        bus = parent;
    }
    Some(address)
}

impl HostPlatform {
    /// Reads the device tree at `dtb` (from x0 at entry).
    pub fn read(dtb: usize) -> HostPlatform {
        let mut platform = HostPlatform {
            uart_base: 0,
            uart_kind: hyp_drivers::uart::UartKind::Pl011,
            psci_hvc: false,
            psci: false,
            cpus: [0; MAX_CPUS],
            cpu_count: 0,
            smp_stress_rounds: DEFAULT_SMP_STRESS_ROUNDS,
            gic: None,
            timer_intid: None,
            hyp_regions: [(0, 0); MAX_HYP_REGIONS],
            hyp_region_count: 0,
            ram_start: 0,
            ram_end: 0,
            vm_stress_rounds: DEFAULT_VM_STRESS_ROUNDS,
            fuzz_calls: 0,
            split_stress: 0,
            linux_guest: None,
            guest_kernel: None,
            initrd: None,
            device_tree: (dtb as u64, 0),
            fuzz_seed: 1,
            console_attack: false,
            reset_scrub: false,
            bootargs_error: None,
        };
        // SAFETY: x0 at entry is the address of a device tree, per the boot protocol.
        let Ok(fdt) = (unsafe { Fdt::from_ptr(dtb as *const u8) }) else {
            return platform;
        };
        platform.device_tree.1 = fdt.total_size() as u64;
        let stdout = fdt
            .find_node("/chosen")
            .and_then(|c| c.property("stdout-path"))
            .and_then(|p| p.as_str())
            .map(|p| p.split(':').next().unwrap_or(p));
        let stdout_path = stdout.and_then(|path| {
            if path.starts_with('/') {
                Some(path)
            } else {
                fdt.find_node("/aliases").and_then(|a| a.property(path)).and_then(|p| p.as_str())
            }
        });
        let stdout = stdout_path.and_then(|p| fdt.find_node(p));
        if let Some(node) = stdout {
            if let Some(region) = node.reg().and_then(|mut r| r.next()) {
                let bus_address = region.starting_address as u64;
                let cpu_address = stdout_path.and_then(|p| translate(&fdt, p, bus_address));
                platform.uart_base = cpu_address.unwrap_or(bus_address) as usize;
            }
            let is = |names: &[&str]| node.compatible().is_some_and(|c| c.all().any(|n| names.contains(&n)));
            let cell = |name: &str| node.property(name).and_then(|p| p.as_usize());
            if is(&["ns16550a", "ns16550", "ns16450", "ns8250", "snps,dw-apb-uart"]) {
                let io_width = if cell("reg-io-width") == Some(4) { 4 } else { 1 };
                platform.uart_kind = hyp_drivers::uart::UartKind::Ns16550 {
                    reg_shift: cell("reg-shift").unwrap_or(0).min(4) as u8,
                    io_width,
                };
            }
        }
        if let Some(ram) = fdt.find_node("/memory").and_then(|n| n.reg()).and_then(|mut r| r.next()) {
            platform.ram_start = ram.starting_address as u64;
            platform.ram_end = ram.starting_address as u64 + ram.size.unwrap_or(0) as u64;
        }
        let bootargs = fdt.find_node("/chosen").and_then(|c| c.property("bootargs")).and_then(|p| p.as_str());
        let args = ShimArgs::parse(bootargs.unwrap_or(""));
        platform.bootargs_error = args.error;
        let args = args.args;
        platform.vm_stress_rounds = args.vm_rounds.unwrap_or(DEFAULT_VM_STRESS_ROUNDS);
        platform.smp_stress_rounds = args.smp_rounds.unwrap_or(DEFAULT_SMP_STRESS_ROUNDS);
        platform.linux_guest = args.linux_guest;
        platform.guest_kernel = args.guest_kernel;
        platform.fuzz_calls = args.fuzz_calls.unwrap_or(0);
        platform.fuzz_seed = args.fuzz_seed.unwrap_or(1);
        platform.split_stress = args.split_stress.unwrap_or(0);
        platform.console_attack = args.console_attack;
        platform.reset_scrub = args.reset_scrub;
        let chosen_number = |name: &str| {
            let value = fdt.find_node("/chosen")?.property(name)?.value;
            matches!(value.len(), 4 | 8).then(|| cells(value, 0, value.len() / 4))?
        };
        platform.initrd = chosen_number("linux,initrd-start")
            .zip(chosen_number("linux,initrd-end"))
            .filter(|(start, end)| start < end);
        // The hyp's words are the hyp's to check (it stopped on a bad one).
        let semihosting = bootargs.is_some_and(|args| HypArgs::parse(args).args.exit_semihosting);
        SEMIHOSTING_EXIT.store(semihosting, Ordering::Relaxed);
        platform.gic = crate::harness::gic::GicConfig::from_fdt(&fdt);
        platform.timer_intid = fdt
            .find_compatible(&["arm,armv8-timer", "arm,armv7-timer"])
            .and_then(|t| t.property("interrupts"))
            .and_then(|p| {
                // Second <type number flags> triple: the non-secure EL1 physical timer (a PPI).
                let cell =
                    |i: usize| p.value.get(i * 4..i * 4 + 4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
                (cell(3)? == 1).then_some(cell(4)? + 16)
            });
        let psci = fdt.find_node("/psci");
        platform.psci = psci.is_some();
        platform.psci_hvc = psci.and_then(|p| p.property("method")).and_then(|m| m.as_str()) == Some("hvc");
        PSCI_HVC.store(platform.psci_hvc, Ordering::Relaxed);
        for cpu in fdt.cpus() {
            let method = cpu.property("enable-method").and_then(|m| m.as_str());
            // The boot CPU may have no enable-method.
            if method.is_some_and(|m| m != "psci") || platform.cpu_count == MAX_CPUS {
                continue;
            }
            if let Some(mpidr) = cpu.property("reg").and_then(|r| r.as_usize()) {
                platform.cpus[platform.cpu_count] = mpidr as u64;
                platform.cpu_count += 1;
            }
        }
        if let Some(reserved) = fdt.find_node("/reserved-memory") {
            for node in reserved.children().filter(|n| n.name.starts_with("hyp@")) {
                if let Some(region) = node.reg().and_then(|mut r| r.next()) {
                    if platform.hyp_region_count < MAX_HYP_REGIONS {
                        platform.hyp_regions[platform.hyp_region_count] =
                            (region.starting_address as u64, region.size.unwrap_or(0) as u64);
                        platform.hyp_region_count += 1;
                    }
                }
            }
        }
        platform
    }

    pub fn hyp_regions(&self) -> &[(u64, u64)] {
        &self.hyp_regions[..self.hyp_region_count]
    }

    /// `size` bytes of RAM nothing else uses, ending at the 2 MiB boundary at
    /// or below the hyp's pool (its last carve-out, at the top of RAM), far
    /// from the shim's own memory: their start, or `None` if that would come
    /// within 2 MiB of another carve-out or of the start of RAM.
    pub fn spare_ram_below_pool(&self, size: u64) -> Option<u64> {
        let pool = self.hyp_regions().last()?.0;
        let top = pool & !0x1f_ffff;
        let low = top.checked_sub(size)?;
        let below = self.hyp_regions().iter().rev().skip(1).map(|&(base, size)| base + size).max().unwrap_or(0);
        (low >= below.max(self.ram_start) + (2 << 20)).then_some(low)
    }

    /// The MPIDRs of the CPUs the shim may use.
    pub fn cpus(&self) -> &[u64] {
        &self.cpus[..self.cpu_count]
    }

    /// A PSCI call through the device tree's conduit (SMC64/32 by function ID).
    pub fn psci_call(&self, function: u32, args: [u64; 3]) -> [u64; 4] {
        let mut all = [0u64; 17];
        all[..3].copy_from_slice(&args);
        let r = if self.psci_hvc { smccc::hvc64(function, all) } else { smccc::smc64(function, all) };
        [r[0], r[1], r[2], r[3]]
    }

    /// Ends the run: PSCI SYSTEM_OFF through the device tree's conduit, which
    /// the hyp relays and which ends QEMU with status 0. So a failed run (`passed`
    /// false, or any check failed on any CPU) ends with [`fail_stop`] instead,
    /// whose status is 1, and scripts require the success line too.
    pub fn power_off(&self, passed: bool) -> ! {
        if !passed || crate::harness::report::any_failed() {
            log::error!("host checks FAILED");
            fail_stop();
        }
        log::info!("{}", crate::harness::report::ALL_CHECKS_PASSED);
        log::info!("PSCI SYSTEM_OFF");
        crate::harness::console::Console::flush();
        let args = [0u64; 17];
        if self.psci_hvc {
            smccc::hvc64(smccc::psci::PSCI_SYSTEM_OFF, args);
        } else {
            smccc::smc64(smccc::psci::PSCI_SYSTEM_OFF, args);
        }
        log::error!("SYSTEM_OFF returned");
        crate::harness::arch::park()
    }
}

/// Ends a failed run (a failed check, an unexpected exception, a panic): with
/// `hyp.exit=semihosting`, a semihosting exit of status 1 (QEMU's
/// `-semihosting`; the shim is a test host); otherwise PSCI SYSTEM_OFF, and
/// the missing success line fails the run.
pub fn fail_stop() -> ! {
    if STOPPING.load(Ordering::Relaxed) {
        crate::harness::arch::park()
    }
    STOPPING.store(true, Ordering::Relaxed);
    crate::harness::console::Console::flush();
    if SEMIHOSTING_EXIT.load(Ordering::Relaxed) {
        // SAFETY: The bootargs say QEMU runs with -semihosting, which serves
        // the call and does not return (were it absent, the HLT's exception
        // comes back here, and STOPPING parks the CPU).
        unsafe { hyp_drivers::semihosting::exit(1) };
    }
    let args = [0u64; 17];
    if PSCI_HVC.load(Ordering::Relaxed) {
        smccc::hvc64(smccc::psci::PSCI_SYSTEM_OFF, args);
    } else {
        smccc::smc64(smccc::psci::PSCI_SYSTEM_OFF, args);
    }
    crate::harness::arch::park()
}
