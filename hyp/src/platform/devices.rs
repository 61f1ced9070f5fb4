//! The device policy: every device-tree node with MMIO registers gets a class
//! that decides whether the host may map it. Secure by default: a node the hyp
//! does not recognise counts as a bus master, and bus masters are withheld from
//! the host (their frames are holes in its stage-2 and their nodes disabled in
//! its device tree) unless the boot arguments say `hyp.dma=permissive`.
//!
//! `docs/security.md` has the table this code implements.

#![forbid(unsafe_code)]

use super::dt::{self, Bus};
use super::node::{Node, Prop};
use super::ShortName;
use crate::range::PhysRange;

/// Device regions the hyp records; more are reported and, being unknown to
/// the host stage-2, withheld.
pub const MAX_DEVICE_REGIONS: usize = 160;
/// Nodes the hyp can disable in the host's device tree.
pub const MAX_WITHHELD_NODES: usize = 96;

/// What the host may do with a device's registers.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub enum DeviceClass {
    /// (a) Plain MMIO that cannot master the bus: mapped for the host.
    #[default]
    Mmio,
    /// (a) GICv3 redistributors: mapped for the host, except each
    /// redistributor's LPI registers (its first page, and its VLPI page),
    /// which the hyp emulates so that LPIs, whose tables the redistributor
    /// reads and writes in memory, stay off.
    Redistributors,
    /// (b) The hyp's own, or kept by it: GICH, GICV, the SMMU, the GIC ITS
    /// (a bus master the hyp does not shadow). Never the host's.
    Hyp,
    /// (c) A bus master (DMA), or a device the hyp does not recognise:
    /// withheld unless `hyp.dma=permissive`.
    BusMaster,
    /// (c) A bus master whose DMA goes through an IOMMU (a PCI host bridge
    /// with `iommu-map`): the host's when the hyp drives that IOMMU.
    BehindIommu,
}

/// What decides whether the host gets a bus master.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct DmaPolicy {
    /// `hyp.dma=permissive`.
    pub permissive: bool,
    /// The hyp drives the SMMU the device tree names.
    pub iommu: bool,
}

impl DeviceClass {
    /// Whether the host may map this class's registers.
    pub fn host_may_map(self, policy: DmaPolicy) -> bool {
        match self {
            DeviceClass::Mmio | DeviceClass::Redistributors => true,
            DeviceClass::Hyp => false,
            DeviceClass::BusMaster => policy.permissive,
            DeviceClass::BehindIommu => policy.permissive || policy.iommu,
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            DeviceClass::Mmio => "plain MMIO",
            DeviceClass::Redistributors => "redistributors, LPI controls emulated",
            DeviceClass::Hyp => "hyp's own",
            DeviceClass::BusMaster => "bus master",
            DeviceClass::BehindIommu => "bus master behind the SMMU",
        }
    }
}

/// One MMIO range of a device-tree node and its class.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct DeviceRegion {
    pub range: PhysRange,
    pub class: DeviceClass,
    /// The node's first `compatible` string (or its name), for the boot log.
    pub name: ShortName,
}

/// Registers that cannot master the bus. Anything not here (and not below) is
/// a bus master as far as the hyp knows.
const PLAIN_MMIO: &[&str] = &[
    // Consoles.
    "arm,pl011",
    "ns16550a",
    "ns16550",
    "ns16450",
    "ns8250",
    "snps,dw-apb-uart",
    "brcm,bcm2835-aux-uart",
    "brcm,bcm2835-aux",
    // RTC, GPIO, watchdogs, flash, power controls.
    "arm,pl031",
    "arm,pl061",
    "arm,sp805",
    "arm,sbsa-gwdt",
    "cfi-flash",
    "brcm,bcm2835-gpio",
    "brcm,bcm2711-gpio",
    "brcm,bcm2835-pm-wdt",
    "brcm,bcm2835-pm",
    // Interrupt controllers without memory tables, and timers.
    "arm,gic-v2m-frame",
    "brcm,bcm2836-l1-intc",
    "brcm,bcm2836-armctrl-ic",
    "brcm,bcm2835-armctrl-ic",
    "brcm,bcm2835-system-timer",
    "arm,armv7-timer-mem",
];

/// Devices the hyp keeps for itself (or withholds whatever the policy).
const HYP_KEPT: &[&str] = &["arm,smmu-v3", "arm,gic-v3-its"];
const SMMU_V3: &[&str] = &["arm,smmu-v3"];

/// Whether the node's DMA goes through an IOMMU.
fn behind_iommu(node: &Node<'_>) -> bool {
    node.get(Prop::IommuMap).is_some() || node.get(Prop::Iommus).is_some()
}

/// The one IOMMU (its phandle) that every entry of the node's `iommus` and
/// `iommu-map` names, read as an SMMUv3's (`#iommu-cells` 1: `iommus` is
/// phandle and stream pairs, `iommu-map` is RID base, phandle, stream base
/// and length); 0 (no node's phandle) if the node names none, names two, or
/// its entries are not of that shape. The hyp drives one SMMU: a device whose
/// DMA goes through another (in bypass at reset, or an SMMUv2 with other
/// cells) is an unisolated bus master.
fn iommu_phandle(node: &Node<'_>) -> u32 {
    let mut named = 0;
    let mut name = |phandle: u32| {
        if phandle == 0 || (named != 0 && named != phandle) {
            return false;
        }
        named = phandle;
        true
    };
    let cell = |entry: &[u8], index: usize| -> Option<u32> {
        let bytes = entry.get(index * 4..index * 4 + 4)?;
        Some(u32::from_be_bytes(bytes.try_into().ok()?))
    };
    let props = [(Prop::Iommus, 2, 0), (Prop::IommuMap, 4, 1)];
    for (prop, cells, at) in props {
        let Some(value) = node.get(prop).map(|p| p.value) else {
            continue;
        };
        if value.is_empty() || value.len() % (cells * 4) != 0 {
            return 0;
        }
        for entry in value.chunks_exact(cells * 4) {
            if !cell(entry, at).is_some_and(&mut name) {
                return 0;
            }
        }
    }
    named
}

const GIC_V3: &[&str] = &["arm,gic-v3"];
const GIC_V2: &[&str] = &["arm,gic-400", "arm,cortex-a15-gic", "arm,cortex-a9-gic", "arm,cortex-a7-gic", "arm,gic-v2"];
const PCI_HOST: &[&str] = &["pci-host-ecam-generic", "pci-host-cam-generic"];

/// Whether the node is a PCI host bridge: its `reg` is config space, its
/// children's `reg` are PCI addresses, its `ranges` are the windows of the
/// devices' BARs.
pub fn is_pci_host(node: &Node<'_>) -> bool {
    dt::prop_str(node, Prop::DeviceType) == Some("pci") || dt::is_compatible(node, PCI_HOST)
}

/// Whether the node's MMIO is not a device at all (RAM, reserved memory, CPUs).
fn is_not_a_device(node: &Node<'_>) -> bool {
    matches!(dt::prop_str(node, Prop::DeviceType), Some("memory") | Some("cpu"))
}

/// The class of a node's `index`-th `reg` entry.
fn reg_class(node: &Node<'_>, index: usize) -> DeviceClass {
    if dt::is_compatible(node, GIC_V3) {
        // GICD, the redistributor regions, then GICC, GICH, GICV. The hyp
        // maps and emulates the LPI controls of the first redistributor region
        // only (its CPUs are the first ones, and it runs at most MAX_CPUS):
        // further regions are kept from the host.
        let redistributor_regions =
            node.get(Prop::RedistributorRegions).and_then(|p| dt::read_cells(p.value)).unwrap_or(1) as usize;
        return match index {
            0 => DeviceClass::Mmio,
            1 => DeviceClass::Redistributors,
            i if i <= redistributor_regions => DeviceClass::Hyp,
            i if i == redistributor_regions + 1 => DeviceClass::Mmio,
            _ => DeviceClass::Hyp,
        };
    }
    if dt::is_compatible(node, GIC_V2) {
        // GICD and GICC are the host's; GICH and GICV the hyp's.
        return if index < 2 { DeviceClass::Mmio } else { DeviceClass::Hyp };
    }
    if dt::is_compatible(node, HYP_KEPT) {
        return DeviceClass::Hyp;
    }
    if dt::is_compatible(node, PLAIN_MMIO) {
        return DeviceClass::Mmio;
    }
    DeviceClass::BusMaster
}

/// What the walk of the tree learns about devices.
#[derive(Clone, Copy, Default)]
pub struct DeviceTable {
    pub regions: crate::range::FixedVec<DeviceRegion, MAX_DEVICE_REGIONS>,
    /// Depth-first indices (the root is 0) of the nodes the host's tree shows
    /// as disabled.
    pub withheld_nodes: crate::range::FixedVec<u16, MAX_WITHHELD_NODES>,
    /// Of those, the ones behind an IOMMU: enabled again when the hyp drives
    /// it (only those behind the SMMU it drives, once
    /// [`DeviceTable::settle_iommus`] ran).
    pub iommu_nodes: crate::range::FixedVec<u16, 8>,
    /// Until then: the IOMMU each PCIe node behind one names, and its regions.
    iommu_claims: crate::range::FixedVec<IommuClaim, 8>,
    /// The first `arm,smmu-v3`'s register frame, the one the hyp drives.
    pub smmu: Option<PhysRange>,
    /// Its phandle (0: it has none, so no device names it).
    pub smmu_phandle: u32,
}

/// A PCIe node behind an IOMMU, as the walk found it
/// ([`DeviceTable::settle_iommus`]).
#[derive(Clone, Copy, Debug, Default)]
struct IommuClaim {
    /// The node's depth-first index.
    node: u16,
    /// The IOMMU's phandle (`iommu_phandle`).
    iommu: u32,
    /// Its regions: `regions[first..end]`.
    first: u16,
    end: u16,
}

impl DeviceTable {
    /// Records the MMIO of `node` (depth-first index `index`, on `bus`).
    /// Returns whether its children are to be skipped (a PCI host bridge's).
    pub fn visit(&mut self, node: &Node<'_>, bus: &Bus<'_, '_>, index: usize, dma_permissive: bool) -> bool {
        if is_not_a_device(node) {
            return false;
        }
        let strict = DmaPolicy { permissive: dma_permissive, iommu: false };
        if self.smmu.is_none() && dt::is_compatible(node, SMMU_V3) {
            self.smmu = bus.reg(node, 0).and_then(|(base, size)| PhysRange::from_base_size(base, size));
            // (Found by name: one node's lookup. Old trees say `linux,phandle` only.)
            let phandle = node.property("phandle").or_else(|| node.property("linux,phandle"));
            self.smmu_phandle = phandle.and_then(|p| dt::read_cells(p.value)).map_or(0, |p| p as u32);
        }
        let first_region = self.regions.len();
        let iommu = if behind_iommu(node) { iommu_phandle(node) } else { 0 };
        let name = ShortName::new(dt::prop_str(node, Prop::Compatible).unwrap_or(node.name));
        let mut withheld = false;
        // (Asked once per node, not per `reg` entry: each is string compares.)
        let pci = is_pci_host(node);
        let mut is_gic = None;
        for (i, (base, size)) in bus.regs(node).enumerate().filter_map(|(i, r)| Some((i, r?))) {
            let Some(range) = PhysRange::from_base_size(base, size).filter(|r| !r.is_empty()) else {
                continue;
            };
            let class = reg_class(node, i);
            let is_gic =
                *is_gic.get_or_insert_with(|| dt::is_compatible(node, GIC_V3) || dt::is_compatible(node, GIC_V2));
            let pci_class = if pci && iommu != 0 { DeviceClass::BehindIommu } else { class };
            withheld |= !is_gic && !pci_class.host_may_map(strict);
            self.regions.push(DeviceRegion { range: range.page_aligned_outward(), class: pci_class, name });
        }
        let class = if iommu != 0 { DeviceClass::BehindIommu } else { DeviceClass::BusMaster };
        if pci {
            for window in pci_windows(node, bus).flatten() {
                self.regions.push(DeviceRegion { range: window, class, name });
            }
            withheld |= !dma_permissive;
            let claim = (u16::try_from(index), u16::try_from(first_region), u16::try_from(self.regions.len()));
            if let (DeviceClass::BehindIommu, (Ok(node), Ok(first), Ok(end))) = (class, claim) {
                // (Past 8 such bridges the claim is not kept: `settle_iommus`
                // makes the rest plain bus masters.)
                self.iommu_claims.push(IommuClaim { node, iommu, first, end });
            }
        }
        if withheld {
            if let Ok(index) = u16::try_from(index) {
                self.withheld_nodes.push(index);
                if pci && class == DeviceClass::BehindIommu {
                    self.iommu_nodes.push(index);
                }
            }
        }
        pci
    }

    /// After the walk (the SMMU may come after the devices that name it):
    /// a region behind an IOMMU other than the one the hyp drives is a plain
    /// bus master, and its node stays disabled whatever the hyp drives.
    pub fn settle_iommus(&mut self) {
        let driven = self.smmu_phandle;
        let claims = self.iommu_claims;
        let behind_driven = |c: &&IommuClaim| driven != 0 && c.iommu == driven;
        for (i, region) in self.regions.as_mut_slice().iter_mut().enumerate() {
            if region.class != DeviceClass::BehindIommu {
                continue;
            }
            let claimed = claims.as_slice().iter().filter(behind_driven);
            if !claimed.into_iter().any(|c| usize::from(c.first) <= i && i < usize::from(c.end)) {
                region.class = DeviceClass::BusMaster;
            }
        }
        let mut kept = crate::range::FixedVec::default();
        for &node in self.iommu_nodes.as_slice() {
            if claims.as_slice().iter().filter(behind_driven).any(|c| c.node == node) {
                kept.push(node);
            }
        }
        self.iommu_nodes = kept;
    }

    /// The nodes the host's tree shows disabled under `policy`.
    pub fn disabled_nodes(&self, policy: DmaPolicy) -> crate::range::FixedVec<u16, MAX_WITHHELD_NODES> {
        let mut nodes = crate::range::FixedVec::default();
        for &node in self.withheld_nodes.as_slice() {
            if !(policy.iommu && self.iommu_nodes.as_slice().contains(&node)) {
                nodes.push(node);
            }
        }
        nodes
    }

    /// The class of the region holding `address`; `None` if no node names it.
    #[cfg(test)]
    pub fn class_at(&self, address: u64) -> Option<DeviceClass> {
        self.regions.as_slice().iter().find(|r| r.range.contains(address)).map(|r| r.class)
    }
}

/// The CPU-side windows of a PCI host bridge's `ranges` (3 PCI address
/// cells, the parent's address cells, 2 size cells).
fn pci_windows<'s>(node: &'s Node<'_>, bus: &'s Bus<'_, '_>) -> impl Iterator<Item = Option<PhysRange>> + 's {
    let value = node.get(Prop::Ranges).map(|p| p.value).unwrap_or(&[]);
    let entry = (3 + bus.address_cells + 2) * 4;
    value.chunks_exact(entry).map(move |e| {
        let parent = dt::read_cells(&e[12..12 + bus.address_cells * 4])?;
        let size = dt::read_cells(&e[12 + bus.address_cells * 4..])?;
        PhysRange::from_base_size(bus.translate(parent)?, size).map(|r| r.page_aligned_outward())
    })
}

#[cfg(test)]
mod tests {
    use crate::platform::devices::{DeviceClass, DmaPolicy};
    use crate::platform::Platform;

    const VIRT_GICV3: &[u8] = include_bytes!("testdata/virt-gicv3.dtb");
    const VIRT_GICV2: &[u8] = include_bytes!("testdata/virt-gicv2.dtb");

    fn class(p: &Platform, address: u64) -> Option<DeviceClass> {
        p.devices.class_at(address)
    }

    #[test]
    fn virt_gicv3_devices_are_classified() {
        let p = Platform::from_fdt(VIRT_GICV3).expect("parses");
        assert_eq!(class(&p, 0x900_0000), Some(DeviceClass::Mmio), "PL011");
        assert_eq!(class(&p, 0x901_0000), Some(DeviceClass::Mmio), "PL031");
        assert_eq!(class(&p, 0x903_0000), Some(DeviceClass::Mmio), "PL061");
        assert_eq!(class(&p, 0x800_0000), Some(DeviceClass::Mmio), "GICD");
        assert_eq!(class(&p, 0x80a_0000), Some(DeviceClass::Redistributors));
        assert_eq!(class(&p, 0x808_0000), Some(DeviceClass::Hyp), "ITS");
        assert_eq!(class(&p, 0x902_0000), Some(DeviceClass::BusMaster), "fw_cfg");
        assert_eq!(class(&p, 0xa00_0000), Some(DeviceClass::BusMaster), "virtio-mmio");
        assert_eq!(class(&p, 0xa00_3e00), Some(DeviceClass::BusMaster), "the last virtio-mmio");
        assert_eq!(class(&p, 0x40_1000_0000), Some(DeviceClass::BusMaster), "PCIe ECAM");
        assert_eq!(class(&p, 0x1000_0000), Some(DeviceClass::BusMaster), "PCIe MMIO window");
        assert_eq!(class(&p, 0x80_0000_0000), Some(DeviceClass::BusMaster), "PCIe 64-bit window");
        assert_eq!(class(&p, 0), Some(DeviceClass::Mmio), "flash");
        assert_eq!(class(&p, 0x4000_0000), None, "RAM is no device");
        assert_eq!(class(&p, 0x0c00_0000), None, "nothing there");
        // ITS, fw_cfg, 32 virtio-mmio transports, PCIe: disabled for the host.
        assert_eq!(p.devices.withheld_nodes.len(), 35);
        assert!(!p.devices.regions.overflowed());
    }

    #[test]
    fn permissive_dma_gives_the_host_its_bus_masters_but_not_the_its() {
        let permissive = DmaPolicy { permissive: true, iommu: false };
        let iommu = DmaPolicy { permissive: false, iommu: true };
        assert!(DeviceClass::BusMaster.host_may_map(permissive));
        assert!(!DeviceClass::Hyp.host_may_map(permissive));
        assert!(!DeviceClass::BusMaster.host_may_map(DmaPolicy::default()));
        assert!(!DeviceClass::BusMaster.host_may_map(iommu));
        assert!(DeviceClass::BehindIommu.host_may_map(iommu));
        assert!(!DeviceClass::BehindIommu.host_may_map(DmaPolicy::default()));
    }

    /// Only a root complex whose every `iommu-map` entry names the SMMU the
    /// hyp drives (the first `arm,smmu-v3`) is behind an IOMMU: one behind
    /// the second SMMUv3, one split between both, one behind an MMU-500 are
    /// plain bus masters, withheld whatever the hyp drives.
    #[test]
    fn only_the_driven_smmus_devices_are_behind_an_iommu() {
        let p = Platform::from_fdt(include_bytes!("testdata/two-smmus.dtb")).expect("parses");
        assert_eq!(p.devices.smmu.map(|r| r.start), Some(0x905_0000));
        assert_ne!(p.devices.smmu_phandle, 0);
        assert_eq!(class(&p, 0x40_1000_0000), Some(DeviceClass::BehindIommu), "ECAM behind the driven SMMU");
        assert_eq!(class(&p, 0x1000_0000), Some(DeviceClass::BehindIommu), "its window");
        assert_eq!(class(&p, 0x50_1000_0000), Some(DeviceClass::BusMaster), "behind the second SMMUv3");
        assert_eq!(class(&p, 0x3000_0000), Some(DeviceClass::BusMaster), "its window");
        assert_eq!(class(&p, 0x60_1000_0000), Some(DeviceClass::BusMaster), "split between both");
        assert_eq!(class(&p, 0x5000_0000), Some(DeviceClass::BusMaster), "its window");
        assert_eq!(class(&p, 0x70_1000_0000), Some(DeviceClass::BusMaster), "behind the MMU-500");
        assert_eq!(class(&p, 0x6000_0000), Some(DeviceClass::BusMaster), "its window");
        // All four bridges and the three IOMMUs are withheld; with the SMMU
        // driven, only the first bridge (the first node, index 2) comes back.
        let iommu = DmaPolicy { permissive: false, iommu: true };
        let strict = p.devices.disabled_nodes(DmaPolicy::default());
        let driven = p.devices.disabled_nodes(iommu);
        assert_eq!(strict.len(), 7, "{:?}", strict.as_slice());
        assert_eq!(driven.len(), 6);
        assert!(strict.as_slice().contains(&2) && !driven.as_slice().contains(&2));
    }

    #[test]
    fn virt_gicv2_keeps_gich_and_gicv_for_the_hyp() {
        let p = Platform::from_fdt(VIRT_GICV2).expect("parses");
        assert_eq!(class(&p, 0x800_0000), Some(DeviceClass::Mmio), "GICD");
        assert_eq!(class(&p, 0x801_0000), Some(DeviceClass::Mmio), "GICC");
        assert_eq!(class(&p, 0x803_0000), Some(DeviceClass::Hyp), "GICH");
        assert_eq!(class(&p, 0x804_0000), Some(DeviceClass::Hyp), "GICV");
        assert_eq!(class(&p, 0x802_0000), Some(DeviceClass::Mmio), "GICv2m");
    }
}
