//! The machine as the device tree describes it: RAM banks, reserved memory, the
//! console UART, the GIC, the CPUs and how to reach PSCI. Nothing about a
//! particular board is written anywhere else in the hyp.
//!
//! Parsing happens once at boot, with the MMU off, so the result is copied into
//! fixed-size arrays: the hyp never reads the device tree again.

#![forbid(unsafe_code)]

pub mod devices;
mod dt;
mod fdt_check;
mod node;

pub use devices::{DeviceRegion, DeviceTable};

use crate::range::{FixedVec, PhysRange};
use core::fmt;
use dt::Bus;
use fdt::Fdt;
use node::{Node, Prop, Tree};

/// RAM banks the hyp keeps track of.
pub const MAX_RAM_BANKS: usize = 16;
/// Reserved ranges (`/memreserve/` entries and `/reserved-memory` children).
pub const MAX_RESERVED: usize = 32;
/// CPUs the hyp can manage; more in the device tree are reported and left alone.
pub const MAX_CPUS: usize = 8;

/// The console UART models the hyp can drive (PL011, the 8250/16550 family).
pub use hyp_drivers::uart::UartKind as UartModel;

/// The console named by `/chosen/stdout-path`.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct Uart {
    pub model: UartModel,
    pub regs: PhysRange,
}

/// The interrupt controller and its register frames.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Gic {
    /// GICv2: distributor, CPU interface, and (with virtualization) GICH and GICV.
    V2 { gicd: PhysRange, gicc: PhysRange, gich: Option<PhysRange>, gicv: Option<PhysRange> },
    /// GICv3: distributor and the first redistributor region.
    V3 { gicd: PhysRange, gicr: PhysRange },
}

/// How PSCI calls reach the firmware.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum PsciConduit {
    Smc,
    Hvc,
}

/// How a CPU is started, from its `enable-method`.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub enum EnableMethod {
    #[default]
    Psci,
    SpinTable {
        release_address: u64,
    },
    /// Absent or unknown: the hyp cannot start this CPU.
    Unknown,
}

/// One CPU node.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct Cpu {
    /// MPIDR affinity fields, from `reg`.
    pub mpidr: u64,
    pub enable_method: EnableMethod,
}

/// Why the device tree cannot be used.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum PlatformError {
    /// The blob is not a device tree (bad magic, version or size).
    BadDeviceTree,
    /// No `device_type = "memory"` node with a usable `reg`.
    NoMemory,
}

impl fmt::Display for PlatformError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlatformError::BadDeviceTree => f.write_str("not a valid flattened device tree"),
            PlatformError::NoMemory => f.write_str("the device tree describes no RAM"),
        }
    }
}

/// Everything the hyp learned from the device tree.
#[derive(Clone, Copy, Default)]
pub struct Platform {
    pub ram: FixedVec<PhysRange, MAX_RAM_BANKS>,
    pub reserved: FixedVec<PhysRange, MAX_RESERVED>,
    pub uart: Option<Uart>,
    /// The stdout UART exists but is of a model the hyp cannot drive: its
    /// first `compatible` string.
    pub unsupported_console: Option<ShortName>,
    pub gic: Option<Gic>,
    pub cpus: FixedVec<Cpu, MAX_CPUS>,
    pub psci: Option<PsciConduit>,
    /// `hyp.exit=semihosting` in `/chosen/bootargs`: end runs with a semihosting
    /// exit status (QEMU `-semihosting`), not only PSCI SYSTEM_OFF.
    pub semihosting_exit: bool,
    /// `hyp.selftest=stack-guard` in the bootargs: after the MMU is on, the hyp
    /// reads its boot stack's guard page, to show that the guard is unmapped and
    /// that a fatal EL2 exception is reported and stops the machine.
    pub selftest_stack_guard: bool,
    /// `hyp.host-kernel=<address>` in the bootargs: the host is the Linux
    /// kernel Image the bootloader placed there, entered in place, instead of
    /// the embedded host shim.
    pub host_kernel: Option<u64>,
    /// Size of the device tree blob in bytes.
    pub fdt_size: usize,
    /// Every node's MMIO and its class (`devices`), and the nodes the host's
    /// tree shows disabled.
    pub devices: DeviceTable,
    /// `hyp.dma=permissive` in the bootargs: the host gets its bus masters
    /// without an IOMMU, and protected VMs are not DMA-isolated.
    pub dma_permissive: bool,
    /// The first bad `hyp.*` word of the bootargs (`hyp_abi::bootargs`): the
    /// boot stops with its message.
    pub bootargs_error: Option<hyp_abi::bootargs::BootArgError>,
    /// The tree nests deeper than the walk follows: node indices past the cut
    /// are unknown, so no node is disabled in the host's tree.
    pub walk_truncated: bool,
}

/// A device-tree string kept in the platform record (which holds no borrow of
/// the blob): up to 32 bytes, longer ones cut.
#[derive(Clone, Copy, Default, Eq, PartialEq)]
pub struct ShortName {
    bytes: [u8; 32],
    len: u8,
}

impl ShortName {
    fn new(name: &str) -> ShortName {
        let mut short = ShortName { bytes: [0; 32], len: 0 };
        let mut len = name.len().min(short.bytes.len());
        while !name.is_char_boundary(len) {
            len -= 1;
        }
        short.bytes[..len].copy_from_slice(&name.as_bytes()[..len]);
        short.len = len as u8;
        short
    }

    pub fn as_str(&self) -> &str {
        core::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or("")
    }
}

impl fmt::Debug for ShortName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for ShortName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

const GIC_V3_COMPATIBLE: &[&str] = &["arm,gic-v3"];
const GIC_V2_COMPATIBLE: &[&str] =
    &["arm,gic-400", "arm,cortex-a15-gic", "arm,cortex-a9-gic", "arm,cortex-a7-gic", "arm,gic-v2"];
const PL011_COMPATIBLE: &[&str] = &["arm,pl011"];
const NS16550_COMPATIBLE: &[&str] = &["ns16550a", "ns16550", "ns16450", "ns8250", "snps,dw-apb-uart"];

impl Platform {
    /// Reads the platform from a device tree blob.
    ///
    /// # Errors
    ///
    /// [`PlatformError::BadDeviceTree`] if the blob does not parse,
    /// [`PlatformError::NoMemory`] if it names no RAM.
    #[cfg(test)]
    pub fn from_fdt(blob: &[u8]) -> Result<Platform, PlatformError> {
        let mut platform = Platform::default();
        platform.fill_from_fdt(blob)?;
        Ok(platform)
    }

    /// [`Platform::from_fdt`] into `self`, which must be `Platform::default()`:
    /// boot reads the tree with the MMU off, where returning the 12 KiB
    /// `Platform` by value cost two copies of it (58,000 instructions).
    ///
    /// # Errors
    ///
    /// As [`Platform::from_fdt`].
    pub fn fill_from_fdt(&mut self, blob: &[u8]) -> Result<(), PlatformError> {
        let platform = self;
        fdt_check::check(blob).ok_or(PlatformError::BadDeviceTree)?;
        let fdt = Fdt::new(blob).map_err(|_| PlatformError::BadDeviceTree)?;
        platform.fdt_size = fdt.total_size();
        for reservation in fdt.memory_reservations() {
            let start = reservation.address() as u64;
            if let Some(range) = PhysRange::from_base_size(start, reservation.size() as u64) {
                platform.reserved.push(range);
            }
        }
        let tree = Tree::new(blob).ok_or(PlatformError::BadDeviceTree)?;
        let root = tree.root().ok_or(PlatformError::BadDeviceTree)?;
        let chosen = top_level_node(&root, "chosen");
        if let Some(args) = chosen.as_ref().and_then(|c| dt::prop_str(c, Prop::Bootargs)) {
            let parsed = hyp_abi::bootargs::HypArgs::parse(args);
            platform.semihosting_exit = parsed.args.exit_semihosting;
            platform.selftest_stack_guard = parsed.args.selftest_stack_guard;
            platform.host_kernel = parsed.args.host_kernel;
            platform.dma_permissive = parsed.args.dma_permissive;
            platform.bootargs_error = parsed.error;
        }
        // The initramfs the bootloader loaded for the host: never the hyp's.
        let chosen_number = |name: Prop| chosen.as_ref()?.get(name).and_then(|p| dt::read_cells(p.value));
        if let (Some(start), Some(end)) = (chosen_number(Prop::InitrdStart), chosen_number(Prop::InitrdEnd)) {
            if start < end {
                platform.reserved.push(PhysRange { start, end });
            }
        }
        let stdout_path = chosen
            .as_ref()
            .and_then(|c| dt::prop_str(c, Prop::StdoutPath).or_else(|| dt::prop_str(c, Prop::LinuxStdoutPath)))
            .map(|p| p.split(':').next().unwrap_or(p))
            .and_then(|p| resolve_alias(&root, p));

        let bus = Bus::root(&root);
        let mut walker = Walker { platform, next_index: 1 };
        walker.visit_children(&root, &bus, 1, stdout_path, false);
        walker.platform.devices.settle_iommus();

        if walker.platform.ram.is_empty() {
            return Err(PlatformError::NoMemory);
        }
        Ok(())
    }

    /// Every range of RAM the hyp must never hand out: `/memreserve/` and
    /// `/reserved-memory`.
    pub fn reserved(&self) -> &[PhysRange] {
        self.reserved.as_slice()
    }
}

/// Adds `range` to `ram`, as one bank with every bank it touches or
/// overlaps: a page range that crosses from one bank of the tree into the
/// next, adjacent one is one range of RAM to the page records (a VM's run of
/// physically consecutive pages may cross there, and would otherwise be
/// refused for lying in two banks, for good).
fn add_ram<const N: usize>(ram: &mut FixedVec<PhysRange, N>, range: PhysRange) {
    let mut merged = range;
    // (The union may touch a bank the range alone did not: again until none.)
    while let Some(i) = ram.as_slice().iter().position(|b| b.start <= merged.end && merged.start <= b.end) {
        if let Some(bank) = ram.swap_remove(i) {
            merged = PhysRange { start: bank.start.min(merged.start), end: bank.end.max(merged.end) };
        }
    }
    ram.push(merged);
}

/// A node's name without its unit address (`pl011@9000000` -> `pl011`).
fn base_name(name: &str) -> &str {
    // A byte search: '@' is ASCII, so the cut is at a character boundary.
    match name.as_bytes().iter().position(|&b| b == b'@') {
        Some(at) => name.get(..at).unwrap_or(name),
        None => name,
    }
}

/// The root's child called `name` (any unit address), as the crate's
/// `find_node("/name")` finds it.
fn top_level_node<'a>(root: &Node<'a>, name: &str) -> Option<Node<'a>> {
    root.children().named(name)
}

/// Turns an alias (`serial0`) into a path; paths pass through.
fn resolve_alias<'a>(root: &Node<'a>, path: &'a str) -> Option<&'a str> {
    if path.starts_with('/') {
        return Some(path);
    }
    let aliases = top_level_node(root, "aliases")?;
    dt::string_of(aliases.property(path)?.value)
}

struct Walker<'p> {
    platform: &'p mut Platform,
    /// Depth-first index of the next node (the root is 0).
    next_index: usize,
}

impl Walker<'_> {
    /// Visits the children of `node`, whose own children sit on `bus`. `stdout` is
    /// the rest of the stdout path if `node` lies on it.
    /// `no_devices`: `node` is (or sits below) a PCI host bridge, whose
    /// children's `reg` are PCI addresses, or `/reserved-memory`, whose
    /// children are RAM: none of them is a device.
    fn visit_children(
        &mut self,
        node: &Node<'_>,
        bus: &Bus<'_, '_>,
        depth: usize,
        stdout: Option<&str>,
        no_devices: bool,
    ) {
        if depth > dt::MAX_DEPTH {
            self.platform.walk_truncated |= node.children().next().is_some();
            return;
        }
        // The next component of the stdout path, the same for every child.
        let stdout = stdout.map(|rest| {
            let rest = rest.trim_start_matches('/');
            let (component, remainder) = rest.split_once('/').unwrap_or((rest, ""));
            (component, !component.contains('@'), remainder)
        });
        for child in node.children() {
            let index = self.next_index;
            self.next_index += 1;
            let not_devices = depth == 1 && matches!(child.name, "reserved-memory" | "cpus");
            let pci = !no_devices
                && !not_devices
                && self.platform.devices.visit(&child, bus, index, self.platform.dma_permissive);
            let on_stdout = stdout.and_then(|(component, any_address, remainder)| {
                let matches = child.name == component || (any_address && base_name(child.name) == component);
                matches.then_some(remainder)
            });
            self.visit(&child, bus, depth, on_stdout);
            let child_bus = bus.child_bus(&child);
            self.visit_children(
                &child,
                &child_bus,
                depth + 1,
                on_stdout.filter(|r| !r.is_empty()),
                no_devices || not_devices || pci,
            );
        }
    }

    fn visit(&mut self, node: &Node<'_>, bus: &Bus<'_, '_>, depth: usize, stdout_rest: Option<&str>) {
        let name = base_name(node.name);
        if depth == 1 && dt::prop_str(node, Prop::DeviceType) == Some("memory") && is_enabled(node) {
            for (base, size) in bus.regs(node).flatten() {
                if let Some(range) = PhysRange::from_base_size(base, size).filter(|r| !r.is_empty()) {
                    add_ram(&mut self.platform.ram, range);
                }
            }
        }
        if depth == 1 && name == "reserved-memory" {
            let child_bus = bus.child_bus(node);
            for region in node.children().filter(is_enabled) {
                for (base, size) in child_bus.regs(&region).flatten() {
                    if let Some(range) = PhysRange::from_base_size(base, size) {
                        self.platform.reserved.push(range);
                    }
                }
            }
        }
        if depth == 1 && name == "psci" {
            self.platform.psci = match dt::prop_str(node, Prop::Method) {
                Some("smc") => Some(PsciConduit::Smc),
                Some("hvc") => Some(PsciConduit::Hvc),
                _ => None,
            };
        }
        if depth == 2 && dt::prop_str(node, Prop::DeviceType) == Some("cpu") && is_enabled(node) {
            self.visit_cpu(node, bus);
        }
        if stdout_rest == Some("") {
            self.visit_stdout(node, bus);
        }
        if self.platform.gic.is_none() && is_enabled(node) {
            self.platform.gic = gic_of(node, bus);
        }
    }

    fn visit_cpu(&mut self, node: &Node<'_>, bus: &Bus<'_, '_>) {
        let Some(mpidr) = node.get(Prop::Reg).and_then(|p| dt::read_cells(p.value)) else {
            return;
        };
        let enable_method = match dt::prop_str(node, Prop::EnableMethod) {
            Some("psci") => EnableMethod::Psci,
            Some("spin-table") => node
                .get(Prop::CpuReleaseAddr)
                .and_then(|p| dt::read_cells(p.value))
                .map_or(EnableMethod::Unknown, |release_address| EnableMethod::SpinTable { release_address }),
            // The boot CPU often has no enable-method; PSCI is what starts it again.
            None if self.platform.cpus.is_empty() => EnableMethod::Psci,
            _ => EnableMethod::Unknown,
        };
        let _ = bus;
        self.platform.cpus.push(Cpu { mpidr, enable_method });
    }

    fn visit_stdout(&mut self, node: &Node<'_>, bus: &Bus<'_, '_>) {
        let cell = |name: Prop| node.get(name).and_then(|p| dt::read_cells(p.value));
        let model = if dt::is_compatible(node, PL011_COMPATIBLE) {
            Some(UartModel::Pl011)
        } else if dt::is_compatible(node, NS16550_COMPATIBLE) {
            let reg_shift = cell(Prop::RegShift).unwrap_or(0).min(4) as u8;
            let io_width = cell(Prop::RegIoWidth).unwrap_or(1) as u8;
            Some(UartModel::Ns16550 { reg_shift, io_width: if io_width == 4 { 4 } else { 1 } })
        } else {
            None
        };
        if let Some(model) = model {
            if let Some(regs) = bus.reg(node, 0).and_then(|(b, s)| PhysRange::from_base_size(b, s.max(0x1000))) {
                self.platform.uart = Some(Uart { model, regs });
                return;
            }
        }
        let compatible = dt::prop_str(node, Prop::Compatible).unwrap_or("(no compatible)");
        self.platform.unsupported_console = Some(ShortName::new(compatible));
    }
}

fn is_enabled(node: &Node<'_>) -> bool {
    matches!(dt::prop_str(node, Prop::Status), None | Some("okay") | Some("ok"))
}

fn gic_of(node: &Node<'_>, bus: &Bus<'_, '_>) -> Option<Gic> {
    let frame = |i: usize| bus.reg(node, i).and_then(|(b, s)| PhysRange::from_base_size(b, s));
    if dt::is_compatible(node, GIC_V3_COMPATIBLE) {
        return Some(Gic::V3 { gicd: frame(0)?, gicr: frame(1)? });
    }
    if dt::is_compatible(node, GIC_V2_COMPATIBLE) {
        // The hyp serves a guest's whole 8 KiB CPU interface from GICV
        // (GICC_DIR at 0x1000): a smaller frame in the tree would make a
        // guest's access there an abort at EL2, so such a GIC counts as
        // without virtualization.
        let gicv = frame(3).filter(|r| r.size() >= hyp_abi::GUEST_GICV2_CPU_INTERFACE_SIZE);
        return Some(Gic::V2 { gicd: frame(0)?, gicc: frame(1)?, gich: frame(2), gicv });
    }
    None
}

impl fmt::Display for Gic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Gic::V3 { gicd, gicr } => write!(f, "GICv3 distributor {gicd}, redistributors {gicr}"),
            Gic::V2 { gicd, gicc, gich, gicv } => {
                write!(f, "GICv2 distributor {gicd}, CPU interface {gicc}")?;
                match (gich, gicv) {
                    (Some(h), Some(v)) => write!(f, ", GICH {h}, GICV {v}"),
                    _ => write!(f, ", no virtualization extensions"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VIRT_GICV3: &[u8] = include_bytes!("testdata/virt-gicv3.dtb");
    const VIRT_GICV2: &[u8] = include_bytes!("testdata/virt-gicv2.dtb");

    fn r(start: u64, end: u64) -> PhysRange {
        PhysRange { start, end }
    }

    #[test]
    fn virt_gicv3_board_is_fully_described() {
        let p = Platform::from_fdt(VIRT_GICV3).expect("parses");
        assert_eq!(p.ram.as_slice(), &[r(0x4000_0000, 0x8000_0000)]);
        assert_eq!(p.uart, Some(Uart { model: UartModel::Pl011, regs: r(0x900_0000, 0x900_1000) }));
        assert_eq!(p.gic, Some(Gic::V3 { gicd: r(0x800_0000, 0x801_0000), gicr: r(0x80a_0000, 0x900_0000) }));
        assert_eq!(p.psci, Some(PsciConduit::Smc));
        assert_eq!(p.cpus.len(), 4);
        assert_eq!(p.cpus.as_slice()[3], Cpu { mpidr: 3, enable_method: EnableMethod::Psci });
        assert!(!p.semihosting_exit);
        assert!(p.reserved().is_empty());
    }

    #[test]
    fn virt_gicv2_board_has_virtualization_frames_and_4g() {
        let p = Platform::from_fdt(VIRT_GICV2).expect("parses");
        assert_eq!(p.ram.as_slice(), &[r(0x4000_0000, 0x1_4000_0000)]);
        match p.gic {
            Some(Gic::V2 { gicd, gicc, gich: Some(_), gicv: Some(_) }) => {
                assert_eq!(gicd, r(0x800_0000, 0x801_0000));
                assert_eq!(gicc, r(0x801_0000, 0x802_0000));
            }
            other => panic!("unexpected GIC {other:?}"),
        }
        assert_eq!(p.cpus.len(), 2);
    }

    #[test]
    fn bootargs_select_semihosting_exit_and_self_tests() {
        // Dumped with -append "console=ttyAMA0 hyp.exit=semihosting hyp.selftest=stack-guard".
        let p = Platform::from_fdt(include_bytes!("testdata/virt-bootargs.dtb")).expect("parses");
        assert!(p.semihosting_exit);
        assert!(p.selftest_stack_guard);
        assert_eq!(p.bootargs_error, None);
        let plain = Platform::from_fdt(VIRT_GICV3).expect("parses");
        assert!(!plain.semihosting_exit && !plain.selftest_stack_guard);
        assert_eq!(plain.host_kernel, None);
    }

    #[test]
    fn a_board_with_an_8250_console_behind_a_bus_is_understood() {
        let p = Platform::from_fdt(include_bytes!("testdata/board-8250.dtb")).expect("parses");
        assert_eq!(p.ram.as_slice(), &[r(0, 0x2000_0000), r(0x1_0000_0000, 0x1_1000_0000)]);
        // The bus maps 0 -> 0x4000_0000: the console is at 0x4000_0000 + 0x1c2_8000.
        assert_eq!(
            p.uart,
            Some(Uart { model: UartModel::Ns16550 { reg_shift: 2, io_width: 4 }, regs: r(0x41c2_8000, 0x41c2_9000) })
        );
        assert_eq!(p.unsupported_console, None);
        match p.gic {
            Some(Gic::V2 { gicd, gich: Some(_), .. }) => assert_eq!(gicd, r(0x41c8_1000, 0x41c8_2000)),
            other => panic!("unexpected GIC {other:?}"),
        }
        assert_eq!(
            p.cpus.as_slice()[1],
            Cpu { mpidr: 1, enable_method: EnableMethod::SpinTable { release_address: 0x8000_fff8 } }
        );
        assert_eq!(p.reserved(), &[r(0, 0x10000), r(0x800_0000, 0x820_0000)]);
        assert_eq!(p.psci, None);
    }

    #[test]
    fn the_hosts_initramfs_is_reserved() {
        let p = Platform::from_fdt(include_bytes!("testdata/virt-initrd.dtb")).expect("parses");
        assert_eq!(p.reserved(), &[r(0x4800_0000, 0x480f_11a3)]);
    }

    /// Banks that touch or overlap become one, in any order of the tree;
    /// apart ones stay apart.
    #[test]
    fn adjacent_ram_banks_are_one_bank() {
        let mut ram: FixedVec<PhysRange, 4> = FixedVec::default();
        add_ram(&mut ram, r(0x4000_0000, 0x5000_0000));
        add_ram(&mut ram, r(0x6000_0000, 0x7000_0000));
        add_ram(&mut ram, r(0x8000_0000, 0x9000_0000));
        assert_eq!(ram.len(), 3);
        // Fills the gap between the first two: the three of them one bank.
        add_ram(&mut ram, r(0x5000_0000, 0x6000_0000));
        assert_eq!(ram.as_slice(), &[r(0x8000_0000, 0x9000_0000), r(0x4000_0000, 0x7000_0000)]);
        // Touches the last one's end; lies inside the first.
        add_ram(&mut ram, r(0x9000_0000, 0x9000_1000));
        add_ram(&mut ram, r(0x4800_0000, 0x4900_0000));
        let mut banks: Vec<PhysRange> = ram.as_slice().to_vec();
        banks.sort_by_key(|b| b.start);
        assert_eq!(banks, [r(0x4000_0000, 0x7000_0000), r(0x8000_0000, 0x9000_1000)]);
        assert!(!ram.overflowed());
    }

    #[test]
    fn garbage_is_not_a_device_tree() {
        assert_eq!(Platform::from_fdt(&[0u8; 64]).err(), Some(PlatformError::BadDeviceTree));
    }
}

#[cfg(test)]
#[path = "boards_tests.rs"]
mod boards_tests;
