//! The host stage-2: an identity map (IPA = PA) of everything the host may touch.
//! All RAM except the hyp's memory is mapped up front as normal memory, in the
//! largest blocks alignment allows. Address space that is not RAM is device
//! space: it is mapped lazily, as device memory, the first time the host touches
//! it, in the largest block that holds no RAM (as pKVM does). Touching hyp memory
//! maps nothing; the fault handler injects an abort into the host instead.

use crate::mm::regions::{device_block_around, for_each_piece_outside};
use crate::range::PhysRange;
use aarch64_paging::descriptor::Stage2Attributes;
use aarch64_paging::idmap::IdMap;
use aarch64_paging::paging::{MemoryRegion, Stage2};
use aarch64_paging::MapError;

/// Normal memory, inner and outer write-back, inner shareable, read-write, executable.
const HOST_RAM: Stage2Attributes = Stage2Attributes::VALID
    .union(Stage2Attributes::MEMATTR_NORMAL_INNER_WB)
    .union(Stage2Attributes::MEMATTR_NORMAL_OUTER_WB)
    .union(Stage2Attributes::SH_INNER)
    .union(Stage2Attributes::S2AP_ACCESS_RW)
    .union(Stage2Attributes::ACCESS_FLAG);
/// Device-nGnRE, read-write, never executable.
const HOST_DEVICE: Stage2Attributes = Stage2Attributes::VALID
    .union(Stage2Attributes::MEMATTR_DEVICE_nGnRE)
    .union(Stage2Attributes::S2AP_ACCESS_RW)
    .union(Stage2Attributes::ACCESS_FLAG)
    .union(Stage2Attributes::XN);

/// What became of a host stage-2 fault.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum HostFault {
    /// Device space, now mapped: the host retries the access.
    MappedDevice(PhysRange),
    /// Memory the host may not touch (the hyp's): the host gets an abort.
    Refused,
}

/// The host's stage-2 tables and the facts needed to serve its faults.
pub struct HostStage2 {
    map: IdMap<Stage2>,
    /// Every RAM bank, hyp memory included: never device space.
    ram: crate::range::FixedVec<PhysRange, { crate::platform::MAX_RAM_BANKS }>,
    /// Exclusive end of the IPA space.
    ipa_limit: u64,
}

/// Start level of the stage-2 walk for `ipa_bits` with 4 KiB pages.
pub fn root_level(ipa_bits: u32) -> usize {
    if ipa_bits > 39 {
        0
    } else {
        1
    }
}

/// The IPA width the hyp uses for a CPU's PARange encoding: the physical address
/// size, at most 48 bits (52 would need LPA2 tables).
pub fn ipa_bits(pa_range: u64) -> u32 {
    match pa_range {
        0 => 32,
        1 => 36,
        2 => 40,
        3 => 42,
        4 => 44,
        _ => 48,
    }
}

/// VTCR_EL2 for an identity stage-2 of `ipa_bits` with 4 KiB pages: T0SZ (5:0),
/// SL0 (7:6) for the start level of [`root_level`], IRGN0/ORGN0 write-back (11:8),
/// SH0 inner shareable (13:12), TG0 4 KiB (15:14 = 0), PS = `pa_range` (18:16),
/// RES1 bit 31.
pub fn vtcr(ipa_bits: u32, pa_range: u64) -> u64 {
    let t0sz = u64::from(64 - ipa_bits);
    let sl0 = match root_level(ipa_bits) {
        0 => 2,
        _ => 1,
    };
    (1 << 31) | (pa_range << 16) | (3 << 12) | (1 << 10) | (1 << 8) | (sl0 << 6) | t0sz
}

impl HostStage2 {
    /// Builds the host stage-2: all of `ram` that lies below 2^`ipa_bits` minus `hyp`.
    ///
    /// # Errors
    ///
    /// What `aarch64-paging` reports.
    pub fn new(ram: &[PhysRange], hyp: &[PhysRange], ipa_bits: u32) -> Result<Self, MapError> {
        let ipa_limit = 1u64 << ipa_bits;
        let mut stage2 = Self {
            map: IdMap::new(root_level(ipa_bits), Stage2),
            ram: Default::default(),
            ipa_limit,
        };
        let mut result = Ok(());
        for bank in ram {
            stage2.ram.push(*bank);
            let clipped = PhysRange {
                start: bank.start.min(ipa_limit),
                end: bank.end.min(ipa_limit),
            }
            .page_aligned_outward();
            for_each_piece_outside(clipped, hyp, |piece| {
                if result.is_ok() && !piece.is_empty() {
                    let region = MemoryRegion::new(piece.start as usize, piece.end as usize);
                    result = stage2.map.map_range(&region, HOST_RAM);
                }
            });
        }
        result.map(|()| stage2)
    }

    /// Handles a stage-2 fault of the host at `ipa`.
    pub fn handle_fault(&mut self, ipa: u64) -> HostFault {
        let Some(block) = device_block_around(ipa, self.ram.as_slice(), self.ipa_limit) else {
            return HostFault::Refused;
        };
        let region = MemoryRegion::new(block.start as usize, block.end as usize);
        match self.map.map_range(&region, HOST_DEVICE) {
            Ok(()) => HostFault::MappedDevice(block),
            Err(_) => HostFault::Refused,
        }
    }

    /// Physical address of the root table, for VTTBR_EL2.
    pub fn root_address(&self) -> usize {
        self.map.root_address().0
    }

    /// Marks the tables live (break-before-make checks from now on).
    pub fn mark_active(&mut self) {
        self.map.mark_active();
    }

    /// Whether `ipa` translates for the host.
    #[cfg(test)]
    pub fn is_mapped(&self, ipa: u64) -> bool {
        let mut mapped = false;
        let region = MemoryRegion::new(ipa as usize, ipa as usize + 1);
        let _ = self.map.walk_range(&region, &mut |_, descriptor, _| {
            mapped |= descriptor.is_valid();
            Ok(())
        });
        mapped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(start: u64, end: u64) -> PhysRange {
        PhysRange { start, end }
    }

    #[test]
    fn hyp_memory_is_absent_and_the_rest_of_ram_present() {
        let ram = [r(0x4000_0000, 0x8000_0000)];
        let hyp = [r(0x4020_0000, 0x4040_0000), r(0x7f00_0000, 0x7f80_0000)];
        let s2 = HostStage2::new(&ram, &hyp, 40).unwrap();
        assert!(s2.is_mapped(0x4000_0000));
        assert!(s2.is_mapped(0x401f_f000));
        assert!(!s2.is_mapped(0x4020_0000));
        assert!(!s2.is_mapped(0x403f_f000));
        assert!(s2.is_mapped(0x4040_0000));
        assert!(!s2.is_mapped(0x7f40_0000));
        assert!(s2.is_mapped(0x7fff_f000));
        assert!(!s2.is_mapped(0x900_0000), "devices are mapped lazily");
    }

    #[test]
    fn faults_map_device_space_but_never_hyp_memory() {
        let ram = [r(0x4000_0000, 0x8000_0000)];
        let hyp = [r(0x4020_0000, 0x4040_0000)];
        let mut s2 = HostStage2::new(&ram, &hyp, 40).unwrap();
        assert_eq!(s2.handle_fault(0x4020_0000), HostFault::Refused);
        assert!(!s2.is_mapped(0x4020_0000));
        assert_eq!(
            s2.handle_fault(0x900_0000),
            HostFault::MappedDevice(r(0, 0x4000_0000))
        );
        assert!(s2.is_mapped(0x900_0000));
        assert_eq!(s2.handle_fault(1 << 40), HostFault::Refused);
    }

    #[test]
    fn vtcr_matches_the_ipa_size() {
        // 40-bit IPA (cortex-a57's PARange 2): T0SZ 24, start level 0 (SL0 = 2).
        assert_eq!(vtcr(ipa_bits(2), 2), 0x8002_3598);
        // 36-bit IPA: T0SZ 28, start level 1 (SL0 = 1).
        assert_eq!(vtcr(ipa_bits(1), 1) & 0xff, 28 | (1 << 6));
        assert_eq!(ipa_bits(6), 48);
    }

    #[test]
    fn ram_above_the_ipa_limit_is_left_out() {
        let ram = [r(0x4000_0000, 0x1_4000_0000)];
        let s2 = HostStage2::new(&ram, &[], 32).unwrap();
        assert!(s2.is_mapped(0xffff_f000));
        assert_eq!(root_level(32), 1);
        assert_eq!(root_level(44), 0);
    }
}
