//! The hyp's own EL2 stage-1 translation: an identity map of exactly what the hyp
//! uses, each region with the least permission it needs. Text is read-only and
//! executable; rodata read-only; data, bss, stacks and the pool writable and never
//! executable (SCTLR_EL2.WXN enforces that writable is never executable too); the
//! console UART is device memory. Guard pages below stacks stay unmapped.
//! Host memory is not mapped at all.

use crate::range::{PhysRange, PAGE_SIZE};
use aarch64_paging::descriptor::El23Attributes;
use aarch64_paging::idmap::IdMap;
use aarch64_paging::paging::{El2, MemoryRegion};
use aarch64_paging::MapError;

/// Root level for a 48-bit VA (TCR_EL2.T0SZ = 16) with 4 KiB pages.
const ROOT_LEVEL: usize = 0;

/// Bits every valid EL2 mapping has (AP[1] is RES1 in the EL2 regime).
const BASE: El23Attributes = El23Attributes::VALID
    .union(El23Attributes::ACCESSED)
    .union(El23Attributes::USER_RES1);
/// Normal write-back memory (MAIR index 1), inner shareable.
const NORMAL: El23Attributes = BASE
    .union(El23Attributes::ATTRIBUTE_INDEX_1)
    .union(El23Attributes::INNER_SHAREABLE);
/// Device-nGnRE (MAIR index 0), never executable.
const DEVICE: El23Attributes = BASE
    .union(El23Attributes::ATTRIBUTE_INDEX_0)
    .union(El23Attributes::XN);

/// Permissions of one region of the hyp's address space.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Permission {
    /// Code: read-only, executable.
    Text,
    /// Constants: read-only, never executable.
    ReadOnly,
    /// Data, stacks, heap: read-write, never executable.
    ReadWrite,
    /// MMIO registers.
    Device,
}

impl Permission {
    fn attributes(self) -> El23Attributes {
        match self {
            Permission::Text => NORMAL.union(El23Attributes::READ_ONLY),
            Permission::ReadOnly => NORMAL
                .union(El23Attributes::READ_ONLY)
                .union(El23Attributes::XN),
            Permission::ReadWrite => NORMAL.union(El23Attributes::XN),
            Permission::Device => DEVICE,
        }
    }
}

/// The hyp's stage-1 page tables.
pub struct HypStage1 {
    map: IdMap<El2>,
}

impl HypStage1 {
    pub fn new() -> Self {
        Self {
            map: IdMap::new(ROOT_LEVEL, El2),
        }
    }

    /// Maps `range` (rounded out to pages) with `permission`, except the pages in `holes`.
    ///
    /// # Errors
    ///
    /// What `aarch64-paging` reports (address out of range, break-before-make).
    pub fn map(
        &mut self,
        range: PhysRange,
        permission: Permission,
        holes: &[PhysRange],
    ) -> Result<(), MapError> {
        let range = range.page_aligned_outward();
        let mut result = Ok(());
        super::regions::for_each_piece_outside(range, holes, |piece| {
            if result.is_ok() && !piece.is_empty() {
                let region = MemoryRegion::new(piece.start as usize, piece.end as usize);
                result = self.map.map_range(&region, permission.attributes());
            }
        });
        result
    }

    /// Physical address of the root table, for TTBR0_EL2.
    pub fn root_address(&self) -> usize {
        self.map.root_address().0
    }

    /// Tells `aarch64-paging` that the tables are live, so later changes are
    /// checked against break-before-make.
    pub fn mark_active(&mut self) {
        self.map.mark_active();
    }
}

impl Default for HypStage1 {
    fn default() -> Self {
        Self::new()
    }
}

const _: () = assert!(PAGE_SIZE == 4096);
