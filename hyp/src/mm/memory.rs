//! The memory state of the machine and its transitions: page records
//! (`ownership`), the host stage-2 and the hyp's stage-1, changed together under
//! one lock.
//!
//! Every transition first checks the whole range against the records (and fails
//! with a specific error, changing nothing), then changes the page tables in an
//! order that can be undone without memory if the second table runs out of it,
//! and only then writes the records.
//!
//! The transitions take what the host named as typed addresses and counts
//! ([`crate::addr`]); below them, records and tables work on plain numbers.

use crate::addr::{GuestPages, Ipa, PageCount, PhysAddr};
use crate::arch::tlb::TlbMaintenance;
use crate::mm::host_devices::HostDevices;
use crate::mm::host_stage2::{root_level, HostFault};
use crate::mm::memcache::{Memcache, MemcacheSource};
use crate::mm::ownership::{Owner, PageDb, PageRecord, RangeError, VmId};
use crate::mm::pgtable::{PageSource, PgTable, PgTableError};
use crate::mm::phys_memory::PhysMemory;
use crate::mm::regions::for_each_piece_outside;
use crate::range::{PhysRange, PAGE_SIZE};
use aarch64_paging::descriptor::{El1Attributes, El23Attributes, Stage2Attributes};
use aarch64_paging::paging::{El1And0, El2, Stage2};
use hyp_abi::HypError;

pub use hyp_abi::MAX_PAGES_PER_CALL;

/// Host RAM in the host stage-2: normal write-back memory, inner shareable,
/// read-write, executable.
pub const HOST_RAM: Stage2Attributes = Stage2Attributes::MEMATTR_NORMAL_INNER_WB
    .union(Stage2Attributes::MEMATTR_NORMAL_OUTER_WB)
    .union(Stage2Attributes::SH_INNER)
    .union(Stage2Attributes::S2AP_ACCESS_RW)
    .union(Stage2Attributes::ACCESS_FLAG);
/// A protected VM's page it shares with the host (MEM_SHARE), in the host
/// stage-2: as host RAM but never executable. The host needs to read and
/// write a guest's I/O buffers, never to run them: a page whose content the
/// guest may change under the host at any time is no code the host should
/// take, and the distinct attributes let the checker tell a borrowed page
/// from one of the host's own in every leaf.
pub const HOST_BORROWED: Stage2Attributes = HOST_RAM.union(Stage2Attributes::XN);
/// Device space in the host stage-2: Device-nGnRE, read-write, never executable.
pub const HOST_DEVICE: Stage2Attributes = Stage2Attributes::MEMATTR_DEVICE_nGnRE
    .union(Stage2Attributes::S2AP_ACCESS_RW)
    .union(Stage2Attributes::ACCESS_FLAG)
    .union(Stage2Attributes::XN);

/// Guest memory in a guest's stage-2: normal write-back memory, inner shareable,
/// read-write, executable.
pub const GUEST_RAM: Stage2Attributes = HOST_RAM;
/// The mark of a poisoned page in a guest's stage-2: an invalid entry (the
/// walker ignores everything but bit 0) carrying a software bit, left where the
/// host took a page back from a live protected VM. The guest's access faults to
/// the hyp, which ends the VM; the host cannot map anything there again.
pub const GUEST_POISONED: Stage2Attributes = Stage2Attributes::SWFLAG_0;

/// EL2 stage-1 attributes (AP[1] is RES1 in this regime).
const EL2_BASE: El23Attributes = El23Attributes::ACCESSED.union(El23Attributes::USER_RES1);
/// Hyp code: normal memory (MAIR index 1), read-only, executable.
pub const HYP_TEXT: El23Attributes = EL2_BASE
    .union(El23Attributes::ATTRIBUTE_INDEX_1)
    .union(El23Attributes::INNER_SHAREABLE)
    .union(El23Attributes::READ_ONLY);
/// Hyp constants: normal memory, read-only, never executable.
pub const HYP_RODATA: El23Attributes = HYP_TEXT.union(El23Attributes::XN);
/// Hyp data and pages it borrows or was donated: normal memory, read-write, never executable.
pub const HYP_DATA: El23Attributes =
    EL2_BASE.union(El23Attributes::ATTRIBUTE_INDEX_1).union(El23Attributes::INNER_SHAREABLE).union(El23Attributes::XN);
/// MMIO the hyp uses: Device-nGnRE (MAIR index 0), never executable.
pub const HYP_DEVICE: El23Attributes = EL2_BASE.union(El23Attributes::ATTRIBUTE_INDEX_0).union(El23Attributes::XN);

/// What a transition needs from the environment: table pages and TLB maintenance
/// for both tables, and access to memory.
pub struct Env<'a> {
    pub source: &'a mut dyn PageSource,
    pub stage2_tlb: &'a mut dyn TlbMaintenance,
    pub el2_tlb: &'a mut dyn TlbMaintenance,
    pub memory: &'a mut dyn PhysMemory,
}

/// One guest's side of a transition: its id in the records, its stage-2 and the
/// TLB maintenance of its VMID.
pub struct Guest<'a> {
    pub id: VmId,
    pub stage2: &'a mut PgTable<Stage2>,
    pub tlb: &'a mut dyn TlbMaintenance,
}

/// What a guest transition returns.
pub type GuestResult = Result<(), HypError>;

/// What a reclaim leaves at the guest's IPAs.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum GuestIpas {
    /// Nothing (a torn-down guest).
    Unmapped,
    /// Invalid entries marked [`GUEST_POISONED`] (a guest that may still run).
    Poisoned,
}

/// The machine's memory state.
pub struct MemoryState {
    pub pages: PageDb,
    pub host_stage2: PgTable<Stage2>,
    pub hyp_stage1: PgTable<El2>,
    /// Donated pages the hyp does not use yet.
    pub memcache: Memcache,
    /// Guest stage-2 tables come from the memcache (the hyp), or from the
    /// environment's page source (host-side tests, whose RAM is not real memory).
    guest_tables_from_memcache: bool,
    /// The device space the host may map (the device policy).
    pub host_devices: HostDevices,
    /// With an IOMMU the hyp drives: what the host's devices may reach.
    pub host_dma: Option<HostDmaMirror>,
}

/// The table every stream of the host's devices translates through (an
/// IOMMU's stage 1, QEMU's SMMUv3 having no stage 2): an identity map of
/// exactly the RAM the host stage-2 maps, changed with it in every transition
/// (a page leaves the devices' reach, TLBs invalidated, before it leaves the
/// host's; it comes back after).
pub struct HostDmaMirror {
    pub table: PgTable<El1And0>,
    pub tlb: alloc::boxed::Box<dyn TlbMaintenance + Send>,
}

/// Host RAM in the devices' stage 1: normal write-back memory (MAIR index 1 of
/// the hyp's MAIR), inner shareable, read-write, never executable, tagged with
/// the ASID (so that invalidation by ASID reaches it).
pub const HOST_DMA_RAM: El1Attributes = El1Attributes::ATTRIBUTE_INDEX_1
    .union(El1Attributes::INNER_SHAREABLE)
    .union(El1Attributes::ACCESSED)
    .union(El1Attributes::USER)
    .union(El1Attributes::NON_GLOBAL)
    .union(El1Attributes::UXN)
    .union(El1Attributes::PXN);

/// Table pages for guests: from the memcache, or from a fallback source.
struct GuestSource<'a> {
    memcache: Option<(&'a mut Memcache, &'a mut PageDb)>,
    fallback: &'a mut dyn PageSource,
    memory: &'a mut dyn PhysMemory,
}

impl PageSource for GuestSource<'_> {
    fn alloc_page(&mut self) -> Option<usize> {
        match &mut self.memcache {
            Some((memcache, pages)) => MemcacheSource { memcache, pages, memory: &mut *self.memory }.alloc_page(),
            None => self.fallback.alloc_page(),
        }
    }

    fn free_page(&mut self, page: usize) {
        match &mut self.memcache {
            Some((memcache, pages)) => MemcacheSource { memcache, pages, memory: &mut *self.memory }.free_page(page),
            None => self.fallback.free_page(page),
        }
    }
}

/// The source of guest table pages for a transition of `$state` in `$env`.
macro_rules! guest_source {
    ($state:ident, $env:ident) => {
        GuestSource {
            memcache: if $state.guest_tables_from_memcache {
                Some((&mut $state.memcache, &mut $state.pages))
            } else {
                None
            },
            fallback: &mut *$env.source,
            memory: &mut *$env.memory,
        }
    };
}

fn range_error(error: RangeError) -> HypError {
    match error {
        RangeError::NotAligned => HypError::NotAligned,
        RangeError::OutOfRange => HypError::OutOfRange,
    }
}

fn table_error(error: PgTableError) -> HypError {
    match error {
        PgTableError::NoMemory => HypError::NoMemory,
        PgTableError::TooLarge | PgTableError::BadRange => HypError::OutOfRange,
        // The records said the range was free: tables and records disagree.
        PgTableError::AlreadyMapped => HypError::Busy,
    }
}

/// Checks the argument shape shared by all memory calls.
fn check_count(pages: u64) -> Result<(), HypError> {
    if pages == 0 || pages > MAX_PAGES_PER_CALL {
        return Err(HypError::InvalidArgument);
    }
    Ok(())
}

/// Maps `[start, end)` identity in pieces that never cross a 1 GiB boundary, so
/// that no piece needs more tables than one operation may reserve.
///
/// # Errors
///
/// As [`PgTable::map`].
pub fn map_identity_chunked<R: aarch64_paging::paging::TranslationRegime>(
    table: &mut PgTable<R>,
    start: usize,
    end: usize,
    attributes: R::Attributes,
    source: &mut dyn PageSource,
    tlb: &mut dyn TlbMaintenance,
) -> Result<(), PgTableError>
where
    crate::mm::pgtable::ReserveTranslation: aarch64_paging::paging::Translation<R::Attributes>,
{
    const CHUNK: usize = 1 << 30;
    let mut address = start;
    while address < end {
        let next = ((address / CHUNK) + 1).saturating_mul(CHUNK).min(end);
        table.map(address, next, address, attributes, source, tlb)?;
        address = next;
    }
    Ok(())
}

impl MemoryState {
    /// The boot state: every page of `ram` the host's except `hyp` (the hyp's image
    /// and pool, already mapped in `hyp_stage1`); the host stage-2 maps all RAM the
    /// host owns (below 2^`ipa_bits`); device space is mapped on demand.
    ///
    /// # Errors
    ///
    /// `OutOfRange` if a hyp range is not page-aligned RAM or the records do not
    /// fit `records`; `NoMemory` if the tables do not fit the source.
    pub fn new(
        ram: &[PhysRange],
        hyp: &[PhysRange],
        records: &'static mut [u32],
        ipa_bits: u32,
        hyp_stage1: PgTable<El2>,
        env: &mut Env<'_>,
    ) -> Result<MemoryState, HypError> {
        let mut hyp_stage1 = hyp_stage1;
        // Its last-level tables are in the pool's budget (one per 2 MiB of
        // RAM): donating, sharing and scrubbing need no table work once a
        // window has one.
        hyp_stage1.keep_leaf_tables();
        let mut pages = PageDb::new(ram, records).map_err(range_error)?;
        for range in hyp {
            pages.update(range.start, range.size() / PAGE_SIZE, |_| PageRecord::HYP).map_err(range_error)?;
        }
        let mut host_stage2 = PgTable::new(root_level(ipa_bits), ipa_bits, Stage2, env.source).map_err(table_error)?;
        let limit = host_stage2.limit() as u64;
        for bank in ram {
            let clipped = PhysRange { start: bank.start.min(limit), end: bank.end.min(limit) };
            let mut result = Ok(());
            for_each_piece_outside(clipped, hyp, |piece| {
                if result.is_ok() && !piece.is_empty() {
                    result = map_identity_chunked(
                        &mut host_stage2,
                        piece.start as usize,
                        piece.end as usize,
                        HOST_RAM,
                        env.source,
                        env.stage2_tlb,
                    );
                }
            });
            result.map_err(table_error)?;
        }
        Ok(MemoryState {
            pages,
            host_stage2,
            hyp_stage1,
            memcache: Memcache::default(),
            guest_tables_from_memcache: false,
            host_devices: HostDevices::default(),
            host_dma: None,
        })
    }

    /// Takes guest stage-2 tables from the memcache from now on (the hyp does;
    /// host-side tests keep the environment's source).
    pub fn use_memcache_for_guest_tables(&mut self) {
        self.guest_tables_from_memcache = true;
    }

    /// Gives the host's devices `mirror` (empty), filled with every RAM run
    /// the host stage-2 maps: from now on they reach exactly the host's RAM.
    ///
    /// # Errors
    ///
    /// `NoMemory` if the tables do not fit the source (the mirror is dropped).
    pub fn attach_host_dma(&mut self, mut mirror: HostDmaMirror, env: &mut Env<'_>) -> Result<(), HypError> {
        let mut runs: alloc::vec::Vec<(usize, usize)> = alloc::vec::Vec::new();
        self.host_stage2.for_each_leaf(0, self.host_stage2.limit(), |leaf| {
            if leaf.attributes == HOST_RAM || leaf.attributes == HOST_BORROWED {
                match runs.last_mut() {
                    Some(last) if last.1 == leaf.start => last.1 = leaf.end,
                    _ => runs.push((leaf.start, leaf.end)),
                }
            }
        });
        for (start, end) in runs {
            map_identity_chunked(&mut mirror.table, start, end, HOST_DMA_RAM, env.source, &mut *mirror.tlb)
                .map_err(table_error)?;
        }
        self.host_dma = Some(mirror);
        Ok(())
    }

    /// Takes `[s, e)` of RAM from the host: first from its devices (their TLBs
    /// invalidated), then from its stage-2; undone if the second fails.
    fn host_unmap_ram(&mut self, s: usize, e: usize, env: &mut Env<'_>) -> Result<(), PgTableError> {
        if let Some(dma) = &mut self.host_dma {
            dma.table.unmap(s, e, env.source, &mut *dma.tlb)?;
        }
        if let Err(error) = self.host_stage2.unmap(s, e, env.source, env.stage2_tlb) {
            if let Some(dma) = &mut self.host_dma {
                let _ = dma.table.map(s, e, s, HOST_DMA_RAM, env.source, &mut *dma.tlb);
            }
            return Err(error);
        }
        Ok(())
    }

    /// Gives `[s, e)` of RAM back to the host: its stage-2, then its devices;
    /// undone if the second fails.
    fn host_map_ram(&mut self, s: usize, e: usize, env: &mut Env<'_>) -> Result<(), PgTableError> {
        self.host_map_ram_as(s, e, HOST_RAM, env)
    }

    /// [`MemoryState::host_map_ram`] with the host stage-2's `attributes`
    /// ([`HOST_RAM`], or [`HOST_BORROWED`] for a guest's shared page).
    fn host_map_ram_as(
        &mut self,
        s: usize,
        e: usize,
        attributes: Stage2Attributes,
        env: &mut Env<'_>,
    ) -> Result<(), PgTableError> {
        self.host_stage2.map(s, e, s, attributes, env.source, env.stage2_tlb)?;
        if let Some(dma) = &mut self.host_dma {
            if let Err(error) = dma.table.map(s, e, s, HOST_DMA_RAM, env.source, &mut *dma.tlb) {
                let _ = self.host_stage2.unmap(s, e, env.source, env.stage2_tlb);
                return Err(error);
            }
        }
        Ok(())
    }

    /// A new, empty guest stage-2 for `ipa_bits`, its root from the guest source.
    ///
    /// # Errors
    ///
    /// `NoMemory` (the host must donate pages first).
    pub fn new_guest_table(&mut self, ipa_bits: u32, env: &mut Env<'_>) -> Result<PgTable<Stage2>, HypError> {
        let level = root_level(ipa_bits);
        let mut table =
            PgTable::new(level, ipa_bits, Stage2, &mut guest_source!(self, env)).map_err(|_| HypError::NoMemory)?;
        table.keep_no_reserve();
        Ok(table)
    }

    /// A page for a VM's own state (a vCPU context), from the guest source.
    pub fn alloc_guest_page(&mut self, env: &mut Env<'_>) -> Option<usize> {
        guest_source!(self, env).alloc_page()
    }

    /// Gives back a page from [`MemoryState::alloc_guest_page`], zeroed and
    /// cleaned to the point of coherency first: it held a vCPU's registers,
    /// and a page of the memcache stays in the host's RAM, which a host that
    /// never reclaims it reads after a reset.
    pub fn free_guest_page(&mut self, page: usize, env: &mut Env<'_>) {
        env.memory.scrub(page as u64, 1);
        guest_source!(self, env).free_page(page);
    }

    /// Frees a guest stage-2 no vCPU uses any more into the guest source, after
    /// `tlb` dropped the VM's translations.
    pub fn destroy_guest_table(&mut self, table: PgTable<Stage2>, env: &mut Env<'_>, tlb: &mut dyn TlbMaintenance) {
        table.destroy(&mut guest_source!(self, env), tlb);
    }

    /// Keeps `range` (device space) from the host whatever the device policy
    /// says: its stage-2 faults there are refused, and no device block mapped
    /// for it overlaps it.
    pub fn forbid_device(&mut self, range: PhysRange) {
        self.host_devices.withhold(range);
    }

    /// Serves a host stage-2 translation fault at `ipa`: device space the
    /// policy gives the host is mapped (the largest block inside its region
    /// that holds no RAM and nothing withheld), anything else refused.
    /// Without `room_for_tables` nothing new is mapped (the environment's source
    /// may not be able to give table pages).
    pub fn host_device_fault(&mut self, ipa: u64, room_for_tables: bool, env: &mut Env<'_>) -> HostFault {
        // Under the lock every change of the table is complete: what faulted
        // during another CPU's break-before-make (the host's own RAM, even
        // its stage-1 walk) or beside its mapping of the same device block is
        // mapped now. The host retries; it never gets an abort for that.
        if self.host_stage2.leaf_at(ipa as usize).is_some() {
            return HostFault::AlreadyMapped;
        }
        if !room_for_tables {
            return HostFault::Refused;
        }
        let banks: crate::range::FixedVec<PhysRange, { crate::platform::MAX_RAM_BANKS }> = {
            let mut v = crate::range::FixedVec::default();
            for bank in self.pages.banks() {
                v.push(bank);
            }
            v
        };
        let Some(block) = self.host_devices.block_for(ipa, banks.as_slice(), self.host_stage2.limit() as u64) else {
            return HostFault::Refused;
        };
        self.pages.touched.range(block.start, block.end);
        match self.host_stage2.map(
            block.start as usize,
            block.end as usize,
            block.start as usize,
            HOST_DEVICE,
            env.source,
            env.stage2_tlb,
        ) {
            Ok(()) => HostFault::MappedDevice(block),
            Err(_) => HostFault::Refused,
        }
    }

    /// Checks that every page of the range satisfies `wanted`, with the specific
    /// error of the first failure. A range that passes is about to change: it
    /// is noted for the invariant checker ([`Touched`]), whatever happens next.
    ///
    /// [`Touched`]: crate::mm::ownership::Touched
    fn require(&mut self, start: u64, pages: u64, wanted: impl Fn(PageRecord) -> bool) -> Result<(), HypError> {
        check_count(pages)?;
        self.pages
            .check(start, pages, |_, record| if wanted(record) { Ok(()) } else { Err(HypError::NotOwned) })
            .map_err(|e| match e {
                Ok(error) => error,
                Err(range) => range_error(range),
            })?;
        self.pages.touched.range(start, start + pages * PAGE_SIZE);
        Ok(())
    }

    /// [`MemoryState::require`], first asking whether every record of a
    /// range of 16 pages or more is exactly `typical` (which `wanted`
    /// accepts): one comparison of the packed records per page, where
    /// decoding each costs several times that. Only a range that fails it
    /// is checked record by record.
    fn require_typical(
        &mut self,
        start: u64,
        pages: u64,
        typical: PageRecord,
        wanted: impl Fn(PageRecord) -> bool,
    ) -> Result<(), HypError> {
        check_count(pages)?;
        // (A few pages are checked as fast one by one: no second pass then.)
        if pages >= 16 && self.pages.all_are(start, pages, typical) == Ok(true) {
            self.pages.touched.range(start, start + pages * PAGE_SIZE);
            return Ok(());
        }
        self.require(start, pages, wanted)
    }

    /// [`MemoryState::require`] of pages that must all be exactly `record`.
    fn require_exactly(&mut self, start: u64, pages: u64, record: PageRecord) -> Result<(), HypError> {
        self.require_typical(start, pages, record, |r| r == record)
    }

    fn span(start: u64, pages: u64) -> (usize, usize) {
        (start as usize, (start + pages * PAGE_SIZE) as usize)
    }

    /// The host lends pages it owns to the hyp (HOST_SHARE_HYP).
    ///
    /// # Errors
    ///
    /// `InvalidArgument` (count), `NotAligned`, `OutOfRange` (wraps, not RAM),
    /// `NotOwned` (not the host's, or already lent), `NoMemory`.
    pub fn host_share_hyp(&mut self, start: PhysAddr, pages: PageCount, env: &mut Env<'_>) -> Result<(), HypError> {
        let (start, pages) = (start.raw(), pages.raw());
        self.require_exactly(start, pages, PageRecord::HOST)?;
        let (s, e) = Self::span(start, pages);
        self.hyp_stage1.map(s, e, s, HYP_DATA, env.source, env.el2_tlb).map_err(table_error)?;
        self.pages.update(start, pages, |r| PageRecord { borrower: Some(Owner::Hyp), ..r }).map_err(range_error)
    }

    /// The host takes back pages it lent to the hyp (HOST_UNSHARE_HYP).
    ///
    /// # Errors
    ///
    /// As [`MemoryState::host_share_hyp`]; `NotOwned` if a page is not lent to the hyp.
    pub fn host_unshare_hyp(&mut self, start: PhysAddr, pages: PageCount, env: &mut Env<'_>) -> Result<(), HypError> {
        let (start, pages) = (start.raw(), pages.raw());
        self.require(start, pages, |r| r.owner == Owner::Host && r.borrower == Some(Owner::Hyp))?;
        let (s, e) = Self::span(start, pages);
        self.hyp_stage1.unmap(s, e, env.source, env.el2_tlb).map_err(table_error)?;
        self.pages.update(start, pages, |r| PageRecord { borrower: None, ..r }).map_err(range_error)
    }

    /// The host gives pages to the hyp for its metadata (HOST_DONATE_HYP): they
    /// leave the host stage-2 and join the hyp's memcache.
    ///
    /// # Errors
    ///
    /// As [`MemoryState::host_share_hyp`].
    pub fn host_donate_hyp(&mut self, start: PhysAddr, pages: PageCount, env: &mut Env<'_>) -> Result<(), HypError> {
        let (start, pages) = (start.raw(), pages.raw());
        self.require_exactly(start, pages, PageRecord::HOST)?;
        let (s, e) = Self::span(start, pages);
        self.hyp_stage1.map(s, e, s, HYP_DATA, env.source, env.el2_tlb).map_err(table_error)?;
        if let Err(error) = self.host_unmap_ram(s, e, env) {
            // Undo: unmapping exactly what was just mapped needs no memory.
            let _ = self.hyp_stage1.unmap(s, e, env.source, env.el2_tlb);
            return Err(table_error(error));
        }
        self.pages
            .update(start, pages, |_| PageRecord { owner: Owner::Hyp, borrower: None, donated: true, in_use: false })
            .map_err(range_error)?;
        for page in (start..start + pages * PAGE_SIZE).step_by(PAGE_SIZE as usize) {
            self.memcache.push(page, env.memory);
        }
        Ok(())
    }

    /// The host takes back donated pages the hyp no longer uses (HOST_RECLAIM_HYP).
    /// They are zeroed before the host can see them again.
    ///
    /// # Errors
    ///
    /// As [`MemoryState::host_share_hyp`]; `NotOwned` if a page was never donated
    /// (or is the hyp's own), `Busy` if the hyp is using it.
    pub fn host_reclaim_hyp(&mut self, start: PhysAddr, pages: PageCount, env: &mut Env<'_>) -> Result<(), HypError> {
        let (start, pages) = (start.raw(), pages.raw());
        self.require(start, pages, |r| r.owner == Owner::Hyp && r.donated && r.borrower.is_none())?;
        self.require(start, pages, |r| !r.in_use).map_err(|_| HypError::Busy)?;
        // Free donated pages are exactly the memcache's.
        if !self.memcache.remove_range(start, pages, env.memory) {
            return Err(HypError::Busy);
        }
        let (s, e) = Self::span(start, pages);
        let give_back = |memcache: &mut Memcache, memory: &mut dyn PhysMemory| {
            for page in (start..start + pages * PAGE_SIZE).step_by(PAGE_SIZE as usize) {
                memcache.push(page, memory);
            }
        };
        if let Err(error) = self.hyp_stage1.reserve_for_unmap(s, e, env.source) {
            give_back(&mut self.memcache, env.memory);
            return Err(table_error(error));
        }
        // Scrub before the host (and its devices) can reach the pages again.
        env.memory.scrub(start, pages);
        if let Err(error) = self.host_map_ram(s, e, env) {
            give_back(&mut self.memcache, env.memory);
            return Err(table_error(error));
        }
        // Nothing can fail from here: hide from the hyp.
        self.hyp_stage1.unmap(s, e, env.source, env.el2_tlb).map_err(table_error)?;
        self.pages.set(start, pages, PageRecord::HOST).map_err(range_error)
    }

    /// Checks a guest IPA range of `pages` pages: aligned, inside the guest's IPA
    /// space, and (for `must_be_free`) neither mapped nor poisoned.
    fn check_guest_range(
        guest: &Guest<'_>,
        ipa: u64,
        pages: u64,
        must_be_free: bool,
    ) -> Result<(usize, usize), HypError> {
        if !ipa.is_multiple_of(PAGE_SIZE) {
            return Err(HypError::NotAligned);
        }
        let end = pages.checked_mul(PAGE_SIZE).and_then(|size| ipa.checked_add(size)).ok_or(HypError::OutOfRange)?;
        if end > guest.stage2.limit() as u64 {
            return Err(HypError::OutOfRange);
        }
        let (s, e) = (ipa as usize, end as usize);
        if must_be_free && !guest.stage2.is_vacant(s, e) {
            return Err(HypError::InvalidArgument);
        }
        Ok((s, e))
    }

    /// Whether the guest maps `[ipa, ipa + pages)` exactly to `pa..`.
    fn guest_maps(guest: &Guest<'_>, ipa: usize, end: usize, pa: u64) -> bool {
        // One leaf holding the whole range (a block mapped whole, the common
        // case of a VM's memory): one walk.
        if let Some(leaf) = guest.stage2.leaf_at(ipa).filter(|leaf| end <= leaf.end) {
            return (leaf.pa + (ipa - leaf.start)) as u64 == pa;
        }
        let mut covered = 0;
        let mut identical = true;
        guest.stage2.for_each_leaf(ipa, end, |leaf| {
            covered += leaf.end - leaf.start;
            identical &= leaf.pa as u64 == pa + (leaf.start - ipa) as u64;
        });
        identical && covered == end - ipa
    }

    /// Gives host pages to a guest (a protected VM's memory): they leave the host
    /// stage-2 and appear at their IPAs in the guest's.
    ///
    /// # Errors
    ///
    /// As the host-hyp calls for the pages; for the IPA range `NotAligned`,
    /// `OutOfRange` (beyond the guest's IPA space, or wraps), `InvalidArgument`
    /// (already mapped in the guest).
    pub fn host_donate_guest(&mut self, guest: &mut Guest<'_>, at: GuestPages, env: &mut Env<'_>) -> GuestResult {
        // The host (its CPUs and its devices) loses the pages before the guest
        // maps them, as in pKVM: no moment has both at a page, in which a
        // sibling vCPU could already write there while the host still reads.
        let (pa, ipa, pages) = (at.pa.raw(), at.ipa.raw(), at.count.raw());
        self.require_exactly(pa, pages, PageRecord::HOST)?;
        self.pages.touched.guest(guest.id);
        let (gs, ge) = Self::check_guest_range(guest, ipa, pages, true)?;
        let (s, e) = Self::span(pa, pages);
        self.host_unmap_ram(s, e, env).map_err(table_error)?;
        if let Err(error) = guest.stage2.map(gs, ge, s, GUEST_RAM, &mut guest_source!(self, env), guest.tlb) {
            // Back in the tables the unmap split: no table page is needed.
            let _ = self.host_map_ram(s, e, env);
            return Err(table_error(error));
        }
        let id = guest.id;
        self.pages.set(pa, pages, PageRecord::owned_by(Owner::Vm(id))).map_err(range_error)
    }

    /// Lends host pages to a guest (a non-protected VM's memory): the host keeps
    /// them, the guest maps them at their IPAs.
    ///
    /// # Errors
    ///
    /// As [`MemoryState::host_donate_guest`].
    pub fn host_share_guest(&mut self, guest: &mut Guest<'_>, at: GuestPages, env: &mut Env<'_>) -> GuestResult {
        self.map_host_pages_in_guest(guest, at, env)?;
        let id = guest.id;
        let (pa, pages) = (at.pa.raw(), at.count.raw());
        self.pages.update(pa, pages, |r| PageRecord { borrower: Some(Owner::Vm(id)), ..r }).map_err(range_error)
    }

    /// What a share begins with: the pages must be the host's alone, and are
    /// mapped at free IPAs of the guest. The guest's range.
    fn map_host_pages_in_guest(
        &mut self,
        guest: &mut Guest<'_>,
        at: GuestPages,
        env: &mut Env<'_>,
    ) -> Result<(usize, usize), HypError> {
        let (pa, ipa, pages) = (at.pa.raw(), at.ipa.raw(), at.count.raw());
        self.require_exactly(pa, pages, PageRecord::HOST)?;
        self.pages.touched.guest(guest.id);
        let (gs, ge) = Self::check_guest_range(guest, ipa, pages, true)?;
        let (s, _) = Self::span(pa, pages);
        guest.stage2.map(gs, ge, s, GUEST_RAM, &mut guest_source!(self, env), guest.tlb).map_err(table_error)?;
        Ok((gs, ge))
    }

    /// What an unshare and a reclaim begin with: every page's record passes
    /// `wanted`, and the guest maps exactly these pages at their IPAs. The
    /// guest's range.
    fn require_guest_mapping(
        &mut self,
        guest: &Guest<'_>,
        at: GuestPages,
        typical: PageRecord,
        wanted: impl Fn(PageRecord) -> bool,
    ) -> Result<(usize, usize), HypError> {
        let (pa, ipa, pages) = (at.pa.raw(), at.ipa.raw(), at.count.raw());
        self.require_typical(pa, pages, typical, wanted)?;
        self.pages.touched.guest(guest.id);
        let (gs, ge) = Self::check_guest_range(guest, ipa, pages, false)?;
        if !Self::guest_maps(guest, gs, ge, pa) {
            return Err(HypError::InvalidArgument);
        }
        Ok((gs, ge))
    }

    /// Ends a share with a guest: it loses the IPAs, which must map the pages.
    ///
    /// # Errors
    ///
    /// `NotOwned` unless every page is host-owned and lent to this guest;
    /// `InvalidArgument` unless the guest maps exactly these pages there.
    pub fn host_unshare_guest(&mut self, guest: &mut Guest<'_>, at: GuestPages, env: &mut Env<'_>) -> GuestResult {
        let id = guest.id;
        let lent = PageRecord { owner: Owner::Host, borrower: Some(Owner::Vm(id)), donated: false, in_use: false };
        let wanted = |r: PageRecord| r.owner == Owner::Host && r.borrower == Some(Owner::Vm(id));
        let (gs, ge) = self.require_guest_mapping(guest, at, lent, wanted)?;
        guest.stage2.unmap(gs, ge, &mut guest_source!(self, env), guest.tlb).map_err(table_error)?;
        self.pages.update(at.pa.raw(), at.count.raw(), |r| PageRecord { borrower: None, ..r }).map_err(range_error)
    }

    /// Takes pages back from a guest that owns them: the guest loses their
    /// IPAs, the hyp zeroes the pages, the host gets them back. All table
    /// pages are reserved first, so nothing fails halfway. Pages the guest
    /// shares with the host are unshared first (taken from the host and its
    /// devices, as the guest's MEM_UNSHARE would), so that the host never
    /// sees them being zeroed; they come back as its own with the rest. A
    /// call that then fails for memory has ended those shares (the pages the
    /// host asked for are the guest's alone), and changed nothing else.
    ///
    /// With [`GuestIpas::Poisoned`], for a guest that may still run: its
    /// stage-2 keeps every page of the range as an invalid entry marked
    /// [`GUEST_POISONED`], in the tables that mapped them (from the host's
    /// donation: no hyp memory per page), so that its next access faults and
    /// the IPAs can never be given to it again.
    ///
    /// # Errors
    ///
    /// `NotOwned` unless every page is owned by this guest (alone, or shared
    /// with the host); `InvalidArgument` unless the guest maps exactly these
    /// pages there; `NoMemory`.
    pub fn host_reclaim_guest(
        &mut self,
        guest: &mut Guest<'_>,
        at: GuestPages,
        ipas: GuestIpas,
        env: &mut Env<'_>,
    ) -> GuestResult {
        let id = guest.id;
        // The common case first, checked as cheaply as before sharing
        // existed: pages the guest owns alone. Only if that fails, the check
        // that admits pages it shares with the host, which then leave the
        // host (and its devices) first, each run a complete unshare of its
        // own: a later failure for memory leaves them the guest's alone,
        // never half-shared.
        let alone = |r: PageRecord| r.owner == Owner::Vm(id) && r.borrower.is_none();
        let owned = |r: PageRecord| r.owner == Owner::Vm(id) && matches!(r.borrower, None | Some(Owner::Host));
        let typical = PageRecord::owned_by(Owner::Vm(id));
        let (shared, (gs, ge)) = match self.require_guest_mapping(guest, at, typical, alone) {
            Err(HypError::NotOwned) => (true, self.require_guest_mapping(guest, at, typical, owned)?),
            other => (false, other?),
        };
        let shared = core::cell::Cell::new(shared);
        let (pa, pages) = (at.pa.raw(), at.count.raw());
        let (s, e) = Self::span(pa, pages);
        while shared.get() {
            // (Up to 8 runs a pass: the records change under the walk.)
            let mut shared_runs: crate::range::FixedVec<PhysRange, 8> = crate::range::FixedVec::default();
            self.pages.for_each_run_in(PhysRange { start: pa, end: pa + pages * PAGE_SIZE }, |run, r| {
                if r.borrower == Some(Owner::Host) {
                    shared_runs.push(run);
                }
            });
            shared.set(shared_runs.as_slice().len() == 8);
            for run in shared_runs.as_slice() {
                self.host_unmap_ram(run.start as usize, run.end as usize, env).map_err(table_error)?;
                let unshared = |r: PageRecord| PageRecord { borrower: None, ..r };
                self.pages.update(run.start, run.size() / PAGE_SIZE, unshared).map_err(range_error)?;
            }
        }
        let reserved = self
            .hyp_stage1
            .reserve_for_map(s, e, s, env.source)
            .and_then(|()| guest.stage2.reserve_for_unmap(gs, ge, &mut guest_source!(self, env)))
            .and_then(|()| self.host_stage2.reserve_for_map(s, e, s, env.source));
        if let Err(error) = reserved {
            self.hyp_stage1.release_reserve(env.source);
            guest.stage2.release_reserve(&mut guest_source!(self, env));
            self.host_stage2.release_reserve(env.source);
            return Err(table_error(error));
        }
        // From here on nothing can fail for memory (poisoning reuses the entries
        // the mappings had: it needs no table an unmap does not need).
        match ipas {
            GuestIpas::Poisoned => {
                guest.stage2.unmap_marking(gs, ge, GUEST_POISONED, &mut guest_source!(self, env), guest.tlb)
            }
            GuestIpas::Unmapped => guest.stage2.unmap(gs, ge, &mut guest_source!(self, env), guest.tlb),
        }
        .map_err(table_error)?;
        self.hyp_stage1.map(s, e, s, HYP_DATA, env.source, env.el2_tlb).map_err(table_error)?;
        env.memory.scrub(pa, pages);
        self.hyp_stage1.unmap(s, e, env.source, env.el2_tlb).map_err(table_error)?;
        self.host_map_ram(s, e, env).map_err(table_error)?;
        self.pages.set(pa, pages, PageRecord::HOST).map_err(range_error)
    }

    /// The page a guest's memory call names: its IPA must be page-aligned,
    /// inside the guest's IPA space and map a page (not MMIO, not a page the
    /// host took back). The page's physical address.
    fn guest_page(guest: &Guest<'_>, ipa: Ipa) -> Result<u64, HypError> {
        let ipa = ipa.raw();
        if !ipa.is_multiple_of(PAGE_SIZE) {
            return Err(HypError::NotAligned);
        }
        if ipa.checked_add(PAGE_SIZE).is_none_or(|end| end > guest.stage2.limit() as u64) {
            return Err(HypError::OutOfRange);
        }
        let leaf = guest.stage2.leaf_at(ipa as usize).ok_or(HypError::NotOwned)?;
        Ok((leaf.pa + (ipa as usize - leaf.start)) as u64)
    }

    /// A guest shares one of its own pages with the host (MEM_SHARE): the
    /// page stays the guest's (and mapped for it), the host borrows it, and
    /// the host stage-2 and the host's devices map it ([`HOST_BORROWED`]).
    ///
    /// # Errors
    ///
    /// `NotAligned`, `OutOfRange` (beyond the guest's IPA space), `NotOwned`
    /// (nothing mapped there, or not a page the guest owns alone: lent to it
    /// by the host, or already shared), `NoMemory`. Nothing changes then.
    pub fn guest_share_host(&mut self, guest: &mut Guest<'_>, ipa: Ipa, env: &mut Env<'_>) -> GuestResult {
        let id = guest.id;
        let pa = Self::guest_page(guest, ipa)?;
        self.require(pa, 1, |r| r.owner == Owner::Vm(id) && r.borrower.is_none())?;
        let (s, e) = Self::span(pa, 1);
        self.host_map_ram_as(s, e, HOST_BORROWED, env).map_err(table_error)?;
        self.pages.update(pa, 1, |r| PageRecord { borrower: Some(Owner::Host), ..r }).map_err(range_error)
    }

    /// A guest ends the share of a page with the host (MEM_UNSHARE): the
    /// host's devices, then the host stage-2, lose it, with their TLBs
    /// invalidated before this returns.
    ///
    /// # Errors
    ///
    /// As [`MemoryState::guest_share_host`]; `NotOwned` unless the guest
    /// shares the page with the host.
    pub fn guest_unshare_host(&mut self, guest: &mut Guest<'_>, ipa: Ipa, env: &mut Env<'_>) -> GuestResult {
        let id = guest.id;
        let pa = Self::guest_page(guest, ipa)?;
        self.require(pa, 1, |r| r.owner == Owner::Vm(id) && r.borrower == Some(Owner::Host))?;
        let (s, e) = Self::span(pa, 1);
        self.host_unmap_ram(s, e, env).map_err(table_error)?;
        self.pages.update(pa, 1, |r| PageRecord { borrower: None, ..r }).map_err(range_error)
    }

    /// A guest gives one of its pages back to the host (MEM_RELINQUISH):
    /// zeroed and cleaned to memory, the host's again, and nothing at the IPA
    /// (as in pKVM, where the host may then give the IPA a page again). Also a
    /// page the guest shares with the host.
    ///
    /// # Errors
    ///
    /// As [`MemoryState::guest_share_host`]; `NotOwned` unless the guest owns
    /// the page.
    pub fn guest_relinquish(&mut self, guest: &mut Guest<'_>, ipa: Ipa, env: &mut Env<'_>) -> GuestResult {
        let pa = Self::guest_page(guest, ipa)?;
        let at = GuestPages { pa: PhysAddr::new(pa), ipa, count: PageCount::new(1) };
        self.host_reclaim_guest(guest, at, GuestIpas::Unmapped, env)
    }

    /// Reads the u64 at `address` and writes `value` there, for the host's tests of
    /// sharing (a debug hypercall). Only pages the host lent to the hyp qualify.
    ///
    /// # Errors
    ///
    /// `NotAligned` unless 8-byte aligned; `OutOfRange` outside RAM; `NotOwned`
    /// unless the page is lent to the hyp by the host.
    pub fn debug_exchange(&mut self, address: PhysAddr, value: u64, env: &mut Env<'_>) -> Result<u64, HypError> {
        let address = address.raw();
        if !address.is_multiple_of(8) {
            return Err(HypError::NotAligned);
        }
        let page = address & !(PAGE_SIZE - 1);
        self.require(page, 1, |r| r.owner == Owner::Host && r.borrower == Some(Owner::Hyp))?;
        let old = env.memory.read_u64(address);
        env.memory.write_u64(address, value);
        Ok(old)
    }

    /// Donated pages the hyp holds: (free, in use).
    pub fn memcache_pages(&self) -> (u64, u64) {
        let (mut free, mut used) = (0, 0);
        self.pages.for_each_run(|range, r| {
            if r.owner == Owner::Hyp && r.donated {
                let n = range.size() / PAGE_SIZE;
                if r.in_use {
                    used += n;
                } else {
                    free += n;
                }
            }
        });
        (free, used)
    }
}

#[cfg(test)]
#[path = "memory_tests.rs"]
mod tests;
