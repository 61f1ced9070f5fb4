//! The hyp's own EL2 stage-1 at boot: an identity map of exactly what the hyp
//! uses, each region with the least permission it needs. Text is read-only and
//! executable; rodata read-only; data, bss, stacks and the pool writable and never
//! executable (SCTLR_EL2.WXN enforces that writable is never executable too); the
//! console UART is device memory. Guard pages below stacks stay unmapped. Host
//! memory is not mapped; pages the host lends or donates are added (and removed)
//! at run time by `mm::memory`.

use crate::arch::tlb::TlbMaintenance;
use crate::mm::memory::{map_identity_chunked, HYP_DATA, HYP_DEVICE, HYP_RODATA, HYP_TEXT};
use crate::mm::pgtable::{PageSource, PgTable, PgTableError};
use crate::mm::regions::for_each_piece_outside;
use crate::range::PhysRange;
use aarch64_paging::descriptor::El23Attributes;
use aarch64_paging::paging::El2;

/// Root level for a 48-bit VA (TCR_EL2.T0SZ = 16) with 4 KiB pages.
const ROOT_LEVEL: usize = 0;
/// VA bits of the EL2 stage-1 (TCR_EL2.T0SZ = 16).
const VA_BITS: u32 = 48;

/// Permissions of one region of the hyp's address space.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub enum Permission {
    /// Code: read-only, executable.
    Text,
    /// Constants: read-only, never executable (the least privilege, so the default).
    #[default]
    ReadOnly,
    /// Data, stacks, heap: read-write, never executable.
    ReadWrite,
    /// MMIO registers.
    Device,
}

impl Permission {
    fn attributes(self) -> El23Attributes {
        match self {
            Permission::Text => HYP_TEXT,
            Permission::ReadOnly => HYP_RODATA,
            Permission::ReadWrite => HYP_DATA,
            Permission::Device => HYP_DEVICE,
        }
    }
}

/// Builds the stage-1 tables from `regions`, leaving `holes` (guard pages) out.
///
/// # Errors
///
/// What [`PgTable::map`] reports.
pub fn build(
    regions: &[(PhysRange, Permission)],
    holes: &[PhysRange],
    source: &mut dyn PageSource,
    tlb: &mut dyn TlbMaintenance,
) -> Result<PgTable<El2>, PgTableError> {
    let mut table = PgTable::new(ROOT_LEVEL, VA_BITS, El2, source)?;
    for &(range, permission) in regions {
        let mut result = Ok(());
        for_each_piece_outside(range.page_aligned_outward(), holes, |piece| {
            if result.is_ok() && !piece.is_empty() {
                result = map_identity_chunked(
                    &mut table,
                    piece.start as usize,
                    piece.end as usize,
                    permission.attributes(),
                    source,
                    tlb,
                );
            }
        });
        result?;
    }
    Ok(table)
}
