//! Which device space the host stage-2 maps: the device policy of
//! `platform::devices` turned into address ranges. Device space is mapped on
//! demand, in the largest block that lies inside one region the host may map
//! and touches no RAM, no withheld region and no page the hyp emulates; any
//! other address (withheld, the hyp's, or named by no node at all) is refused.

#![forbid(unsafe_code)]

use crate::platform::devices::DmaPolicy;
use crate::platform::DeviceRegion;
use crate::range::{align_down, PhysRange, PAGE_SIZE};
use alloc::vec::Vec;

/// The host's device space.
#[derive(Default)]
pub struct HostDevices {
    /// Page-aligned ranges the host may map.
    allowed: Vec<PhysRange>,
    /// Page-aligned ranges the host never maps; they win over `allowed`.
    withheld: Vec<PhysRange>,
    /// Sorted pages inside `allowed` that the hyp emulates instead (the
    /// redistributors' LPI registers).
    emulated: Vec<u64>,
}

impl HostDevices {
    /// The policy for `regions`: which bus masters the host gets is `policy`'s.
    pub fn new(regions: &[DeviceRegion], policy: DmaPolicy) -> HostDevices {
        let mut devices = HostDevices::default();
        for region in regions {
            let range = region.range.page_aligned_outward();
            if region.class.host_may_map(policy) {
                devices.allowed.push(range);
            } else {
                devices.withheld.push(range);
            }
        }
        devices
    }

    /// Keeps `range` from the host whatever the device tree says.
    pub fn withhold(&mut self, range: PhysRange) {
        self.withheld.push(range.page_aligned_outward());
    }

    /// Makes the page at `page` one the hyp emulates for the host.
    pub fn emulate_page(&mut self, page: u64) {
        let page = align_down(page, PAGE_SIZE);
        if let Err(at) = self.emulated.binary_search(&page) {
            self.emulated.insert(at, page);
        }
    }

    /// Whether the hyp emulates the page holding `address`.
    #[cfg(test)]
    pub fn is_emulated(&self, address: u64) -> bool {
        self.emulated.binary_search(&align_down(address, PAGE_SIZE)).is_ok()
    }

    fn any_emulated_in(&self, block: PhysRange) -> bool {
        let first = self.emulated.partition_point(|&p| p < block.start);
        self.emulated.get(first).is_some_and(|&p| p < block.end)
    }

    /// The block to map for a host access to `address`: the largest naturally
    /// aligned block (1 GiB, 2 MiB, 4 KiB) around it inside one allowed region,
    /// below `limit`, overlapping no range of `ram`, nothing withheld and no
    /// emulated page. `None`: the access is refused (or, for an emulated page,
    /// emulated).
    pub fn block_for(&self, address: u64, ram: &[PhysRange], limit: u64) -> Option<PhysRange> {
        let region = self.allowed.iter().find(|r| r.contains(address))?;
        const SIZES: [u64; 3] = [1 << 30, 2 << 20, PAGE_SIZE];
        SIZES.into_iter().find_map(|size| {
            let block = PhysRange::from_base_size(align_down(address, size), size)?;
            let fits = region.start <= block.start && block.end <= region.end && block.end <= limit;
            let clear = !ram.iter().chain(self.withheld.iter()).any(|m| m.overlaps(&block));
            (fits && clear && !self.any_emulated_in(block)).then_some(block)
        })
    }

    /// Whether a host stage-2 device mapping of `range` keeps to the policy
    /// (the invariant checker's question).
    pub fn may_map(&self, range: PhysRange) -> bool {
        self.allowed.iter().any(|r| r.start <= range.start && range.end <= r.end)
            && !self.withheld.iter().any(|w| w.overlaps(&range))
            && !self.any_emulated_in(range)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::devices::DeviceClass;
    use crate::platform::ShortName;

    fn region(start: u64, end: u64, class: DeviceClass) -> DeviceRegion {
        DeviceRegion { range: PhysRange { start, end }, class, name: ShortName::default() }
    }

    fn r(start: u64, end: u64) -> PhysRange {
        PhysRange { start, end }
    }

    const RAM: [PhysRange; 1] = [PhysRange { start: 0x4000_0000, end: 0x8000_0000 }];

    fn virt_like(permissive: bool) -> HostDevices {
        let regions = [
            region(0x800_0000, 0x801_0000, DeviceClass::Mmio),
            region(0x808_0000, 0x80a_0000, DeviceClass::Hyp),
            region(0x80a_0000, 0x900_0000, DeviceClass::Redistributors),
            region(0x900_0000, 0x900_1000, DeviceClass::Mmio),
            region(0x902_0000, 0x902_0018, DeviceClass::BusMaster),
            region(0xa00_0000, 0xa00_0200, DeviceClass::BusMaster),
            region(0xa00_0200, 0xa00_0400, DeviceClass::BusMaster),
        ];
        let mut devices = HostDevices::new(&regions, DmaPolicy { permissive, iommu: false });
        devices.emulate_page(0x80a_0000);
        devices.emulate_page(0x80c_0000);
        devices
    }

    #[test]
    fn plain_mmio_is_mapped_in_the_largest_block_inside_its_region() {
        let d = virt_like(false);
        assert_eq!(d.block_for(0x900_0010, &RAM, 1 << 40), Some(r(0x900_0000, 0x900_1000)));
        assert_eq!(d.block_for(0x800_4000, &RAM, 1 << 40), Some(r(0x800_4000, 0x800_5000)));
    }

    #[test]
    fn withheld_unknown_and_emulated_space_is_refused() {
        let d = virt_like(false);
        assert_eq!(d.block_for(0x808_0000, &RAM, 1 << 40), None, "ITS");
        assert_eq!(d.block_for(0x902_0000, &RAM, 1 << 40), None, "fw_cfg");
        assert_eq!(d.block_for(0xa00_0200, &RAM, 1 << 40), None, "virtio-mmio");
        assert_eq!(d.block_for(0xc00_0000, &RAM, 1 << 40), None, "named by no node");
        assert_eq!(d.block_for(0x4000_0000, &RAM, 1 << 40), None, "RAM");
        assert_eq!(d.block_for(0x80a_0070, &RAM, 1 << 40), None, "PROPBASER's page");
        assert!(d.is_emulated(0x80a_0070) && d.is_emulated(0x80c_0ffc) && !d.is_emulated(0x80b_0000));
        // The rest of the redistributors is the host's, page by page.
        assert_eq!(d.block_for(0x80b_0100, &RAM, 1 << 40), Some(r(0x80b_0000, 0x80b_1000)));
        assert_eq!(d.block_for(0x80a_1000, &RAM, 1 << 40), Some(r(0x80a_1000, 0x80a_2000)));
        assert!(!d.may_map(r(0x80a_0000, 0x80b_0000)));
        assert!(d.may_map(r(0x80a_1000, 0x80b_0000)));
        assert!(!d.may_map(r(0x800_0000, 0x900_0000)));
    }

    #[test]
    fn permissive_dma_maps_bus_masters_but_never_the_hyps_own() {
        let d = virt_like(true);
        assert_eq!(d.block_for(0xa00_0200, &RAM, 1 << 40), Some(r(0xa00_0000, 0xa00_1000)));
        assert_eq!(d.block_for(0x902_0000, &RAM, 1 << 40), Some(r(0x902_0000, 0x902_1000)));
        assert_eq!(d.block_for(0x808_0000, &RAM, 1 << 40), None);
    }

    #[test]
    fn a_shared_page_with_a_withheld_device_is_withheld() {
        let regions = [
            region(0x1000_0000, 0x1000_0800, DeviceClass::Mmio),
            region(0x1000_0800, 0x1000_1000, DeviceClass::BusMaster),
        ];
        let d = HostDevices::new(&regions, DmaPolicy::default());
        assert_eq!(d.block_for(0x1000_0000, &[], 1 << 40), None);
        let mut d = HostDevices::new(&[region(0, 0x4000_0000, DeviceClass::Mmio)], DmaPolicy::default());
        assert_eq!(d.block_for(0x1234, &[], 1 << 40), Some(r(0, 0x4000_0000)));
        d.withhold(r(0x3000_0000, 0x3000_1000));
        assert_eq!(d.block_for(0x1234, &[], 1 << 40), Some(r(0, 0x20_0000)));
        assert_eq!(d.block_for(0x3000_0000, &[], 1 << 40), None);
    }
}
