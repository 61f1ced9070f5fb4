//! The device tree a Linux guest boots with: its RAM, its vCPUs (started with
//! PSCI over HVC), its GIC where the VMM put it (the hyp's fixed addresses
//! for a VM made through host calls, the VMM's choice on `/dev/kvm`), the architected timer
//! (its virtual timer is the hardware's, its non-secure physical timer, PPI
//! 30, the hyp's emulation: both work as the tree says), one PL011 and
//! `/chosen` (bootargs, initramfs, console). Nothing the hyp hides from guests
//! (the PMU, statistical profiling, trace) has a node.

use crate::fdt_writer::{FdtWriteError, FdtWriter};
use hyp_abi::{GUEST_GICV2_CPU_INTERFACE, GUEST_GICV3_REDISTRIBUTORS, GUEST_GIC_DISTRIBUTOR, MAX_VCPUS_PER_VM};

/// Which GIC the guest finds (the hyp emulates the one the hardware has) and
/// where, in its IPA space.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum GuestGic {
    /// Distributor (4 KiB) and CPU interface (8 KiB).
    V2 { distributor: u64, cpu_interface: u64 },
    /// Distributor (64 KiB) and the redistributors, 128 KiB per vCPU from
    /// `redistributors` on.
    V3 { distributor: u64, redistributors: u64 },
}

impl GuestGic {
    /// Where the hyp puts a GICv2 of a VM made through host calls (`hyp_abi`).
    pub const HYP_V2: GuestGic =
        GuestGic::V2 { distributor: GUEST_GIC_DISTRIBUTOR, cpu_interface: GUEST_GICV2_CPU_INTERFACE };
    /// Where the hyp puts a GICv3 of a VM made through host calls (`hyp_abi`).
    pub const HYP_V3: GuestGic =
        GuestGic::V3 { distributor: GUEST_GIC_DISTRIBUTOR, redistributors: GUEST_GICV3_REDISTRIBUTORS };

    pub fn distributor(&self) -> u64 {
        match *self {
            GuestGic::V2 { distributor, .. } | GuestGic::V3 { distributor, .. } => distributor,
        }
    }
}

/// What goes into the guest's tree.
#[derive(Clone, Copy, Debug)]
pub struct GuestTree<'a> {
    /// Guest-physical base and size of its RAM.
    pub ram: (u64, u64),
    pub vcpus: u32,
    pub gic: GuestGic,
    /// Guest-physical address of the PL011 and its INTID (an SPI, 32 or more).
    pub uart: u64,
    pub uart_intid: u32,
    pub bootargs: &'a str,
    /// Guest-physical start and end of the initramfs.
    pub initrd: Option<(u64, u64)>,
    /// The virtio-mmio devices.
    pub virtio: &'a [VirtioMmioNode],
    /// Guest-physical base and size of the pool a protected guest bounces
    /// its devices' DMA through (a `restricted-dma-pool` its virtio devices
    /// name): the guest shares it with the host at boot, and its drivers
    /// hand the devices only buffers inside it.
    pub dma_pool: Option<(u64, u64)>,
}

/// A virtio-mmio device's window and its interrupt (an SPI, level high).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct VirtioMmioNode {
    pub base: u64,
    pub intid: u32,
}

/// The size of a virtio-mmio device's register window.
pub const VIRTIO_MMIO_SIZE: u64 = 0x200;

/// Why no tree was written.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum TreeError {
    /// No vCPUs, or more than a VM can have.
    VcpuCount,
    /// The UART's interrupt is not an SPI.
    UartInterrupt,
    /// A virtio device's interrupt is not an SPI.
    VirtioInterrupt,
    Write(FdtWriteError),
}

impl From<FdtWriteError> for TreeError {
    fn from(error: FdtWriteError) -> TreeError {
        TreeError::Write(error)
    }
}

impl core::fmt::Display for TreeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            TreeError::VcpuCount => write!(f, "a VM has 1 to {MAX_VCPUS_PER_VM} vCPUs"),
            TreeError::UartInterrupt => f.write_str("the UART's interrupt must be an SPI (INTID 32 or more)"),
            TreeError::VirtioInterrupt => f.write_str("a virtio device's interrupt must be an SPI (INTID 32 or more)"),
            TreeError::Write(error) => write!(f, "{error}"),
        }
    }
}

const GIC_PHANDLE: u32 = 1;
const CLOCK_PHANDLE: u32 = 2;
const DMA_POOL_PHANDLE: u32 = 3;
/// Interrupt specifier cells: type (SPI 0, PPI 1), number, flags.
const GIC_SPI: u32 = 0;
const GIC_PPI: u32 = 1;
const IRQ_LEVEL_HIGH: u32 = 4;
/// The architected timer's PPIs (secure, non-secure physical, virtual, hypervisor).
const TIMER_PPIS: [u32; 4] = [13, 14, 11, 10];
/// GICv3: distributor 64 KiB; each redistributor 128 KiB (RD and SGI frames).
pub const GICV3_DISTRIBUTOR_SIZE: u64 = 0x1_0000;
pub const GICV3_REDISTRIBUTOR_SIZE: u64 = 0x2_0000;
/// GICv2: distributor 4 KiB, CPU interface 8 KiB.
pub const GICV2_DISTRIBUTOR_SIZE: u64 = 0x1000;
pub const GICV2_CPU_INTERFACE_SIZE: u64 = 0x2000;
const PL011_SIZE: u64 = 0x1000;
/// The PL011's reference clock (what QEMU's virt board describes).
const PL011_CLOCK_HZ: u32 = 24_000_000;

impl GuestTree<'_> {
    /// Writes the tree into `buffer`; its size.
    pub fn write(&self, buffer: &mut [u8]) -> Result<usize, TreeError> {
        if self.vcpus == 0 || u64::from(self.vcpus) > MAX_VCPUS_PER_VM {
            return Err(TreeError::VcpuCount);
        }
        if self.uart_intid < 32 {
            return Err(TreeError::UartInterrupt);
        }
        if self.virtio.iter().any(|device| device.intid < 32) {
            return Err(TreeError::VirtioInterrupt);
        }
        let mut w = FdtWriter::new(buffer)?;
        let mut name = NameBuffer { bytes: [0; 48] };
        w.begin_node("")?;
        w.property_u32("#address-cells", 2)?;
        w.property_u32("#size-cells", 2)?;
        w.property_string("compatible", "linux,dummy-virt")?;
        w.property_u32("interrupt-parent", GIC_PHANDLE)?;

        w.begin_node("chosen")?;
        w.property_string("bootargs", self.bootargs)?;
        w.property_string("stdout-path", name.format("/pl011@", self.uart))?;
        if let Some((start, end)) = self.initrd {
            w.property_u64s("linux,initrd-start", &[start])?;
            w.property_u64s("linux,initrd-end", &[end])?;
        }
        w.end_node()?;

        w.begin_node(name.format("memory@", self.ram.0))?;
        w.property_string("device_type", "memory")?;
        w.property_u64s("reg", &[self.ram.0, self.ram.1])?;
        w.end_node()?;

        if let Some((base, size)) = self.dma_pool {
            w.begin_node("reserved-memory")?;
            w.property_u32("#address-cells", 2)?;
            w.property_u32("#size-cells", 2)?;
            w.property_empty("ranges")?;
            w.begin_node(name.format("restricted-dma@", base))?;
            w.property_string("compatible", "restricted-dma-pool")?;
            w.property_u64s("reg", &[base, size])?;
            w.property_u32("phandle", DMA_POOL_PHANDLE)?;
            w.end_node()?;
            w.end_node()?;
        }

        w.begin_node("cpus")?;
        w.property_u32("#address-cells", 1)?;
        w.property_u32("#size-cells", 0)?;
        for cpu in 0..self.vcpus {
            w.begin_node(name.format("cpu@", cpu.into()))?;
            w.property_string("device_type", "cpu")?;
            w.property_string("compatible", "arm,armv8")?;
            w.property_u32("reg", cpu)?;
            w.property_string("enable-method", "psci")?;
            w.end_node()?;
        }
        w.end_node()?;

        w.begin_node("psci")?;
        w.property_strings("compatible", &["arm,psci-1.0", "arm,psci-0.2"])?;
        w.property_string("method", "hvc")?;
        w.end_node()?;

        // GICv2 PPI specifiers name the CPUs they reach (bits 15:8).
        let ppi_flags = match self.gic {
            GuestGic::V2 { .. } => ((1 << self.vcpus) - 1) << 8 | IRQ_LEVEL_HIGH,
            GuestGic::V3 { .. } => IRQ_LEVEL_HIGH,
        };
        w.begin_node("timer")?;
        w.property_string("compatible", "arm,armv8-timer")?;
        let mut interrupts = [0u32; 12];
        for (cells, ppi) in interrupts.chunks_exact_mut(3).zip(TIMER_PPIS) {
            cells.copy_from_slice(&[GIC_PPI, ppi, ppi_flags]);
        }
        w.property_cells("interrupts", &interrupts)?;
        w.property_empty("always-on")?;
        w.end_node()?;

        w.begin_node(name.format("interrupt-controller@", self.gic.distributor()))?;
        match self.gic {
            GuestGic::V3 { distributor, redistributors } => {
                w.property_string("compatible", "arm,gic-v3")?;
                let redistributors_size = GICV3_REDISTRIBUTOR_SIZE * u64::from(self.vcpus);
                w.property_u64s("reg", &[distributor, GICV3_DISTRIBUTOR_SIZE, redistributors, redistributors_size])?;
            }
            GuestGic::V2 { distributor, cpu_interface } => {
                w.property_string("compatible", "arm,cortex-a15-gic")?;
                w.property_u64s(
                    "reg",
                    &[distributor, GICV2_DISTRIBUTOR_SIZE, cpu_interface, GICV2_CPU_INTERFACE_SIZE],
                )?;
            }
        }
        w.property_u32("#interrupt-cells", 3)?;
        w.property_empty("interrupt-controller")?;
        w.property_u32("phandle", GIC_PHANDLE)?;
        w.end_node()?;

        w.begin_node("apb-pclk")?;
        w.property_string("compatible", "fixed-clock")?;
        w.property_u32("#clock-cells", 0)?;
        w.property_u32("clock-frequency", PL011_CLOCK_HZ)?;
        w.property_u32("phandle", CLOCK_PHANDLE)?;
        w.end_node()?;

        w.begin_node(name.format("pl011@", self.uart))?;
        w.property_strings("compatible", &["arm,pl011", "arm,primecell"])?;
        w.property_u64s("reg", &[self.uart, PL011_SIZE])?;
        w.property_cells("interrupts", &[GIC_SPI, self.uart_intid - 32, IRQ_LEVEL_HIGH])?;
        w.property_cells("clocks", &[CLOCK_PHANDLE, CLOCK_PHANDLE])?;
        w.property_strings("clock-names", &["uartclk", "apb_pclk"])?;
        w.end_node()?;

        for device in self.virtio {
            w.begin_node(name.format("virtio_mmio@", device.base))?;
            w.property_string("compatible", "virtio,mmio")?;
            w.property_u64s("reg", &[device.base, VIRTIO_MMIO_SIZE])?;
            w.property_cells("interrupts", &[GIC_SPI, device.intid - 32, IRQ_LEVEL_HIGH])?;
            w.property_empty("dma-coherent")?;
            if self.dma_pool.is_some() {
                w.property_u32("memory-region", DMA_POOL_PHANDLE)?;
            }
            w.end_node()?;
        }

        w.end_node()?;
        Ok(w.finish()?)
    }
}

/// Room to spell a node name with a unit address ("prefix@hex").
struct NameBuffer {
    bytes: [u8; 48],
}

impl NameBuffer {
    /// `prefix` followed by `address` in lower-case hex without leading zeros.
    fn format(&mut self, prefix: &str, address: u64) -> &str {
        let mut digits = [0u8; 16];
        let mut count = 0;
        let mut rest = address;
        loop {
            digits[count] = b"0123456789abcdef"[(rest & 0xf) as usize];
            count += 1;
            rest >>= 4;
            if rest == 0 {
                break;
            }
        }
        let len = prefix.len().min(self.bytes.len() - 16);
        self.bytes[..len].copy_from_slice(&prefix.as_bytes()[..len]);
        for (i, digit) in digits[..count].iter().rev().enumerate() {
            self.bytes[len + i] = *digit;
        }
        // Only ASCII was written.
        core::str::from_utf8(&self.bytes[..len + count]).unwrap_or("")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    fn tree(gic: GuestGic) -> GuestTree<'static> {
        GuestTree {
            ram: (0x8000_0000, 0x1000_0000),
            vcpus: 2,
            gic,
            uart: 0x900_0000,
            uart_intid: 33,
            bootargs: "console=ttyAMA0 rdinit=/init",
            initrd: Some((0x8300_0000, 0x8314_0000)),
            virtio: &[],
            dma_pool: None,
        }
    }

    fn cells(value: &[u8]) -> Vec<u32> {
        value.chunks_exact(4).map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]])).collect()
    }

    #[test]
    fn a_gicv3_guest_tree_describes_everything_linux_needs() {
        let mut buffer = [0u8; 4096];
        let size = tree(GuestGic::HYP_V3).write(&mut buffer).unwrap();
        let fdt = fdt::Fdt::new(&buffer[..size]).unwrap();
        let chosen = fdt.chosen();
        assert_eq!(chosen.bootargs(), Some("console=ttyAMA0 rdinit=/init"));
        assert_eq!(chosen.stdout().map(|s| s.name), Some("pl011@9000000"));
        let initrd = fdt.find_node("/chosen").unwrap();
        assert_eq!(cells(initrd.property("linux,initrd-start").unwrap().value), [0, 0x8300_0000]);
        assert_eq!(cells(initrd.property("linux,initrd-end").unwrap().value), [0, 0x8314_0000]);
        let ram = fdt.memory().regions().next().unwrap();
        assert_eq!((ram.starting_address as u64, ram.size), (0x8000_0000, Some(0x1000_0000)));
        assert_eq!(fdt.cpus().count(), 2);
        assert!(fdt.cpus().all(|c| c.property("enable-method").and_then(|p| p.as_str()) == Some("psci")));
        let gic = fdt.find_compatible(&["arm,gic-v3"]).unwrap();
        let reg: Vec<_> = gic.reg().unwrap().map(|r| (r.starting_address as u64, r.size)).collect();
        assert_eq!(reg, [(0x200_0000, Some(0x1_0000)), (0x210_0000, Some(0x4_0000))]);
        let timer = fdt.find_compatible(&["arm,armv8-timer"]).unwrap();
        assert_eq!(cells(timer.property("interrupts").unwrap().value)[6..9], [1, 11, 4], "virtual timer PPI 27");
        let uart = fdt.find_compatible(&["arm,pl011"]).unwrap();
        assert_eq!(cells(uart.property("interrupts").unwrap().value), [0, 1, 4], "SPI 1 = INTID 33");
        let root_parent = fdt.find_node("/").unwrap().property("interrupt-parent").unwrap().as_usize();
        assert_eq!(root_parent, gic.property("phandle").unwrap().as_usize(), "interrupts go to the GIC");
        let clock = fdt.find_node("/apb-pclk").unwrap();
        assert_eq!(clock.property("clock-frequency").unwrap().as_usize(), Some(24_000_000));
        assert_eq!(fdt.find_node("/psci").unwrap().property("method").unwrap().as_str(), Some("hvc"));
    }

    /// The hyp hides the PMU, statistical profiling and trace from guests (the
    /// ID registers say 0, their registers UNDEF): no node may announce them.
    #[test]
    fn the_guest_tree_announces_no_pmu_profiling_or_trace() {
        for gic in [GuestGic::HYP_V2, GuestGic::HYP_V3] {
            let mut buffer = [0u8; 4096];
            let size = tree(gic).write(&mut buffer).unwrap();
            let fdt = fdt::Fdt::new(&buffer[..size]).unwrap();
            let hidden = ["arm,armv8-pmuv3", "arm,statistical-profiling-extension-v1", "arm,embedded-trace-extension"];
            for compatible in hidden {
                assert!(fdt.find_compatible(&[compatible]).is_none(), "{gic:?}: {compatible}");
            }
            assert!(fdt.all_nodes().all(|n| !n.name.starts_with("pmu")), "{gic:?}: a pmu node");
        }
    }

    #[test]
    fn a_gicv2_guest_tree_names_the_cpu_interface_and_the_timer_cpus() {
        let mut buffer = [0u8; 4096];
        let size = GuestTree { initrd: None, ..tree(GuestGic::HYP_V2) }.write(&mut buffer).unwrap();
        let fdt = fdt::Fdt::new(&buffer[..size]).unwrap();
        let gic = fdt.find_compatible(&["arm,cortex-a15-gic"]).unwrap();
        let reg: Vec<_> = gic.reg().unwrap().map(|r| (r.starting_address as u64, r.size)).collect();
        assert_eq!(reg, [(0x200_0000, Some(0x1000)), (0x201_0000, Some(0x2000))]);
        let timer = fdt.find_compatible(&["arm,armv8-timer"]).unwrap();
        assert_eq!(cells(timer.property("interrupts").unwrap().value)[2], 0x304, "both CPUs, level high");
        assert!(fdt.find_node("/chosen").unwrap().property("linux,initrd-start").is_none());
    }

    /// A VMM on `/dev/kvm` puts the GIC where it likes (kvmtool's layout
    /// here): the node's name and registers follow.
    #[test]
    fn the_gic_is_described_where_the_vmm_put_it() {
        let mut buffer = [0u8; 4096];
        let v3 = GuestGic::V3 { distributor: 0x3fff_0000, redistributors: 0x3ffb_0000 };
        let size = GuestTree { vcpus: 2, ..tree(v3) }.write(&mut buffer).unwrap();
        let fdt = fdt::Fdt::new(&buffer[..size]).unwrap();
        let gic = fdt.find_node("/interrupt-controller@3fff0000").unwrap();
        let reg: Vec<_> = gic.reg().unwrap().map(|r| (r.starting_address as u64, r.size)).collect();
        assert_eq!(reg, [(0x3fff_0000, Some(0x1_0000)), (0x3ffb_0000, Some(0x4_0000))]);
        let v2 = GuestGic::V2 { distributor: 0x3fff_0000, cpu_interface: 0x3ffd_0000 };
        let size = tree(v2).write(&mut buffer).unwrap();
        let fdt = fdt::Fdt::new(&buffer[..size]).unwrap();
        let gic = fdt.find_compatible(&["arm,cortex-a15-gic"]).unwrap();
        assert_eq!(gic.name, "interrupt-controller@3fff0000");
        let reg: Vec<_> = gic.reg().unwrap().map(|r| (r.starting_address as u64, r.size)).collect();
        assert_eq!(reg, [(0x3fff_0000, Some(0x1000)), (0x3ffd_0000, Some(0x2000))]);
    }

    /// A protected guest's virtio devices name the pool it bounces their
    /// DMA through; a non-protected guest's devices have none.
    #[test]
    fn virtio_devices_and_the_restricted_dma_pool_are_described() {
        let devices = [VirtioMmioNode { base: 0xa00_0000, intid: 34 }, VirtioMmioNode { base: 0xa00_0200, intid: 35 }];
        let mut buffer = [0u8; 4096];
        let protected =
            GuestTree { virtio: &devices, dma_pool: Some((0x8f00_0000, 0x100_0000)), ..tree(GuestGic::HYP_V3) };
        let size = protected.write(&mut buffer).unwrap();
        let fdt = fdt::Fdt::new(&buffer[..size]).unwrap();
        let pool = fdt.find_node("/reserved-memory/restricted-dma@8f000000").unwrap();
        assert_eq!(pool.compatible().map(|c| c.first()), Some("restricted-dma-pool"));
        let reg: Vec<_> = pool.reg().unwrap().map(|r| (r.starting_address as u64, r.size)).collect();
        assert_eq!(reg, [(0x8f00_0000, Some(0x100_0000))]);
        let nodes: Vec<_> = fdt.all_nodes().filter(|n| n.name.starts_with("virtio_mmio@")).collect();
        assert_eq!(nodes.len(), 2);
        let second = fdt.find_node("/virtio_mmio@a000200").unwrap();
        assert_eq!(second.compatible().map(|c| c.first()), Some("virtio,mmio"));
        let reg: Vec<_> = second.reg().unwrap().map(|r| (r.starting_address as u64, r.size)).collect();
        assert_eq!(reg, [(0xa00_0200, Some(0x200))]);
        assert_eq!(cells(second.property("interrupts").unwrap().value), [0, 3, 4], "SPI 3 = INTID 35, level");
        assert!(second.property("dma-coherent").is_some());
        let phandle = pool.property("phandle").unwrap().as_usize();
        assert_eq!(second.property("memory-region").unwrap().as_usize(), phandle);
        let size = GuestTree { virtio: &devices, ..tree(GuestGic::HYP_V3) }.write(&mut buffer).unwrap();
        let fdt = fdt::Fdt::new(&buffer[..size]).unwrap();
        assert!(fdt.find_node("/reserved-memory").is_none());
        assert!(fdt.find_node("/virtio_mmio@a000000").unwrap().property("memory-region").is_none());
        let bad = [VirtioMmioNode { base: 0xa00_0000, intid: 16 }];
        assert_eq!(
            GuestTree { virtio: &bad, ..tree(GuestGic::HYP_V3) }.write(&mut buffer),
            Err(TreeError::VirtioInterrupt)
        );
    }

    #[test]
    fn impossible_trees_are_refused() {
        let mut buffer = [0u8; 4096];
        assert_eq!(GuestTree { vcpus: 0, ..tree(GuestGic::HYP_V3) }.write(&mut buffer), Err(TreeError::VcpuCount));
        assert_eq!(GuestTree { vcpus: 9, ..tree(GuestGic::HYP_V3) }.write(&mut buffer), Err(TreeError::VcpuCount));
        let ppi = GuestTree { uart_intid: 27, ..tree(GuestGic::HYP_V3) };
        assert_eq!(ppi.write(&mut buffer), Err(TreeError::UartInterrupt));
        assert_eq!(tree(GuestGic::HYP_V3).write(&mut buffer[..256]), Err(TreeError::Write(FdtWriteError::NoRoom)));
    }
}
