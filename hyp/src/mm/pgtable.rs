//! The one page-table type of the hyp, for its EL2 stage-1 and every stage-2: a
//! wrapper around `aarch64-paging`'s [`Mapping`] that adds what a hypervisor
//! needs and the crate leaves out:
//!
//! - **Fallible allocation.** The crate's table allocation cannot fail. Before each
//!   operation the wrapper computes the worst-case number of new tables and fills
//!   a reserve of zeroed pages (from a caller-supplied source: the hyp's pool, or
//!   pages the host donated); only then does it change anything. Without enough
//!   pages the operation fails with [`PgTableError::NoMemory`] and changes nothing.
//! - **Break-before-make on live tables.** The crate refuses to split a live block.
//!   The wrapper keeps the crate in its "not live" mode and orders every change
//!   itself: new mappings only go into invalid entries; a block that an unmap cuts
//!   is first invalidated whole (break), its TLB entries removed, then the parts
//!   that stay are mapped again (make).
//! - **Targeted TLB maintenance** through [`TlbMaintenance`] (by IPA in the
//!   table's VMID for a stage-2, by VA at EL2): one invalidation per leaf that was
//!   valid and changed, none for new mappings; a whole-context invalidation only
//!   when table pages were freed (the walk caches may hold them).
//! - **Freeing tables when their range empties**: after an unmap, each table that
//!   covered an edge of the range and is now empty is removed. Freed pages go back
//!   to the source only after the TLB maintenance has completed.
//! - **Direct leaf updates.** A map or unmap that stays inside one existing
//!   last-level table (and leaves it neither full of new blocks nor empty)
//!   reads and writes that table's entries directly, one walk of table
//!   descriptors to find it, instead of the crate's generic walks (about ten
//!   per operation with the checks above): the same descriptors, the same
//!   TLB maintenance, a fraction of the instructions. The same for whole
//!   2 MiB pieces of one level-2 table (a VM's memory in huge pages, one
//!   `VM_MAP` or reclaim per 2 MiB): a map into empty entries writes the
//!   blocks, an unmap of entries that hold no table clears them (when the
//!   table keeps something else). `is_vacant` and `destroy` read descriptors
//!   directly too. Everything else takes the crate's path.
//! - **Marked invalid entries** ([`PgTable::unmap_marking`]): an unmap may leave a
//!   software annotation in the invalid entries it writes (as pKVM annotates
//!   invalid stage-2 entries), which the walker ignores and [`PgTable::entry_at`]
//!   reports. A marked entry is not empty: `map` refuses it and no table holding
//!   one is freed, so the mark costs no memory beyond the tables already there.
//!
//! Tables are accessed at their physical address (the hyp's stage-1 is an identity
//! map of its pool and of donated pages; in host tests they are heap pages).

use crate::arch::tlb::TlbMaintenance;
use aarch64_paging::descriptor::{Descriptor, PagingAttributes, PhysicalAddress};
use aarch64_paging::paging::{Constraints, MemoryRegion, PageTable as HwTable, Translation, TranslationRegime};
use aarch64_paging::Mapping;
use bitflags::Flags;
use core::cell::RefCell;
use core::fmt;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicUsize, Ordering};

/// Size of a page and of a table.
pub const PAGE_SIZE: usize = 4096;
/// Levels of a 4 KiB-granule walk: 0..=3.
const LEAF_LEVEL: usize = 3;
/// Most new tables one operation may need; larger operations are refused (and
/// callers split their work to stay below it).
pub const MAX_TABLES_PER_OP: usize = 64;
/// Pages a table keeps in its reserve between operations, so that a page that
/// is mapped and unmapped again and again does not take a page from its source
/// and give it back each time.
const RESERVE_KEEP: usize = 4;

/// Entries of a table.
const ENTRIES: usize = PAGE_SIZE / 8;
/// The output address bits of a descriptor (48-bit physical addresses), as
/// aarch64-paging masks them.
const OUTPUT_ADDRESS: usize = !(PAGE_SIZE - 1) & !(0xffff << 48);
/// Bits 1:0 of a table descriptor (levels 0 to 2).
const TABLE_DESCRIPTOR: usize = 0b11;
/// Bit 0 of a descriptor: valid.
const VALID_BIT: usize = 0b1;
/// Bits 1:0 of a root's table descriptor that `destroy` made invalid (no
/// mark has bit 1: `unmap_marking` refuses such a marker).
const DETACHED_TABLE: usize = 0b10;

/// The entries of a range of whole entries of one level inside one table,
/// for a direct update.
struct TableEntries<'a> {
    /// The whole table.
    table: &'a [AtomicUsize],
    /// Its level, and the range's first entry in it and how many.
    level: usize,
    first: usize,
    count: usize,
}

impl TableEntries<'_> {
    fn range(&self) -> &[AtomicUsize] {
        &self.table[self.first..self.first + self.count]
    }

    /// Whether an entry outside the range holds something (so the table
    /// stays, whatever happens to the range).
    fn others_hold_something(&self) -> bool {
        // The neighbours first: a VM's memory is mapped and unmapped in
        // address order, up or down, so one of them usually holds something.
        let neighbours = [self.first.checked_sub(1), Some(self.first + self.count)];
        let loaded = |index: Option<usize>| index.and_then(|i| self.table.get(i)).map(|e| e.load(Ordering::Relaxed));
        if neighbours.into_iter().any(|index| loaded(index).is_some_and(|entry| entry != 0)) {
            return true;
        }
        let (before, rest) = self.table.split_at(self.first);
        before.iter().chain(&rest[self.count..]).any(|entry| entry.load(Ordering::Relaxed) != 0)
    }

    /// Whether every entry of the range is zero (invalid and unmarked).
    fn range_is_empty(&self) -> bool {
        self.range().iter().all(|entry| entry.load(Ordering::Relaxed) == 0)
    }
}

/// Bytes mapped by one entry at `level`.
pub const fn granule(level: usize) -> usize {
    PAGE_SIZE << (9 * (LEAF_LEVEL - level))
}

/// Why a page-table operation failed. A failed operation changed nothing.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum PgTableError {
    /// The range is empty, unaligned, backwards or beyond the table's reach.
    BadRange,
    /// Part of the range is already mapped (for `map`).
    AlreadyMapped,
    /// No pages for the tables the operation needs.
    NoMemory,
    /// The operation would need more tables than [`MAX_TABLES_PER_OP`].
    TooLarge,
}

impl fmt::Display for PgTableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PgTableError::BadRange => "bad address range",
            PgTableError::AlreadyMapped => "range already mapped",
            PgTableError::NoMemory => "no memory for page tables",
            PgTableError::TooLarge => "operation needs too many page tables",
        })
    }
}

/// Where table pages come from and go back to.
pub trait PageSource {
    /// A page (4 KiB, 4 KiB-aligned, accessible at its physical address), or `None`.
    fn alloc_page(&mut self) -> Option<usize>;
    /// Takes back a page `alloc_page` gave out.
    fn free_page(&mut self, page: usize);
}

/// A singly linked list of free pages, the link stored in each page's first word,
/// so that it never needs memory of its own.
struct PageList {
    head: usize,
    len: usize,
}

impl PageList {
    const fn new() -> Self {
        Self { head: 0, len: 0 }
    }

    fn push(&mut self, page: usize) {
        // SAFETY: `page` is a whole page that nobody else uses (a fresh page from
        // the source or a table the crate has detached), accessible at its address.
        unsafe { (page as *mut usize).write(self.head) };
        self.head = page;
        self.len += 1;
    }

    fn pop(&mut self) -> Option<usize> {
        if self.head == 0 {
            return None;
        }
        let page = self.head;
        // SAFETY: `page` was pushed by `push`, which wrote the link there.
        self.head = unsafe { (page as *const usize).read() };
        self.len -= 1;
        Some(page)
    }
}

/// The `Translation` the crate allocates tables through: pages come from the
/// reserve the wrapper filled, freed tables wait in `freed` until the TLB is clean.
pub struct ReserveTranslation {
    reserve: RefCell<PageList>,
    freed: RefCell<PageList>,
    /// Tables handed out when the reserve was empty (a worst-case estimate that was
    /// too low: a hyp bug). Counted, never zero in tests.
    underflows: RefCell<usize>,
}

impl ReserveTranslation {
    fn new() -> Self {
        Self {
            reserve: RefCell::new(PageList::new()),
            freed: RefCell::new(PageList::new()),
            underflows: RefCell::new(0),
        }
    }
}

impl<A: PagingAttributes> Translation<A> for ReserveTranslation {
    fn allocate_table(&mut self) -> (NonNull<HwTable<A>>, PhysicalAddress) {
        let page = self.reserve.get_mut().pop().unwrap_or_else(|| {
            // The worst-case estimate was wrong. Fall back to the global heap
            // rather than corrupt anything; tests check this never happens.
            *self.underflows.get_mut() += 1;
            HwTable::<A>::new().as_ptr() as usize
        });
        // SAFETY: The page is a whole, unused page: zero it to make an empty table.
        unsafe { core::ptr::write_bytes(page as *mut u8, 0, PAGE_SIZE) };
        // SAFETY: Pages are non-null (0 marks the end of the list).
        (unsafe { NonNull::new_unchecked(page as *mut HwTable<A>) }, PhysicalAddress(page))
    }

    unsafe fn deallocate_table(&mut self, page_table: NonNull<HwTable<A>>) {
        self.freed.get_mut().push(page_table.as_ptr() as usize);
    }

    fn physical_to_virtual(&self, pa: PhysicalAddress) -> NonNull<HwTable<A>> {
        // Tables are identity-mapped.
        NonNull::new(pa.0 as *mut HwTable<A>).unwrap_or(NonNull::dangling())
    }
}

/// One valid leaf of a table: `range` maps to `pa..` with `attributes`.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Leaf<A> {
    pub start: usize,
    pub end: usize,
    pub pa: usize,
    pub level: usize,
    pub attributes: A,
}

/// Whether a descriptor is all zeroes (invalid and unmarked).
fn is_empty<A: PagingAttributes>(descriptor: &Descriptor<A>) -> bool {
    descriptor.flags() == A::default() && descriptor.output_address().0 == 0
}

/// What one entry of a table says about an address.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Entry<A> {
    /// A valid leaf, whole (not clipped).
    Mapped(Leaf<A>),
    /// An invalid entry carrying a software annotation (see
    /// [`PgTable::unmap_marking`]): the attributes written there.
    Marked(A),
    /// Nothing: an empty entry, or an address beyond the table.
    Empty,
}

/// A live translation table of regime `R`.
pub struct PgTable<R: TranslationRegime> {
    mapping: Mapping<ReserveTranslation, R>,
    root_level: usize,
    /// Reserve pages kept between operations (see [`RESERVE_KEEP`]).
    keep: usize,
    /// Exclusive end of the input address space this table serves.
    limit: usize,
    /// Last-level tables stay when their range empties (see
    /// [`PgTable::keep_leaf_tables`]).
    keeps_leaf_tables: bool,
}

impl<R: TranslationRegime<Asid = (), VaRange = ()>> PgTable<R>
where
    ReserveTranslation: Translation<R::Attributes>,
{
    /// An empty table starting at `root_level`, for inputs below 2^`input_bits`,
    /// its root page taken from `source`.
    ///
    /// # Errors
    ///
    /// [`PgTableError::NoMemory`] without a page for the root.
    pub fn new(
        root_level: usize,
        input_bits: u32,
        regime: R,
        source: &mut dyn PageSource,
    ) -> Result<Self, PgTableError> {
        let translation = root_reserve(source)?;
        Ok(Self::with_mapping(Mapping::new(translation, root_level, regime), root_level, input_bits))
    }
}

impl PgTable<aarch64_paging::paging::El1And0> {
    /// An empty EL1&0 stage-1 table (the format an SMMU's stage 1 walks), as
    /// [`PgTable::new`], for ASID `asid`, lower VA range.
    ///
    /// # Errors
    ///
    /// [`PgTableError::NoMemory`] without a page for the root.
    pub fn new_stage1(
        root_level: usize,
        input_bits: u32,
        asid: usize,
        source: &mut dyn PageSource,
    ) -> Result<Self, PgTableError> {
        let translation = root_reserve(source)?;
        let mapping = Mapping::with_asid_and_va_range(
            translation,
            asid,
            root_level,
            aarch64_paging::paging::El1And0,
            aarch64_paging::paging::VaRange::Lower,
        );
        Ok(Self::with_mapping(mapping, root_level, input_bits))
    }
}

/// A reserve holding one page from `source`: the root the crate takes first.
fn root_reserve(source: &mut dyn PageSource) -> Result<ReserveTranslation, PgTableError> {
    let translation = ReserveTranslation::new();
    translation.reserve.borrow_mut().push(source.alloc_page().ok_or(PgTableError::NoMemory)?);
    Ok(translation)
}

impl<R: TranslationRegime> PgTable<R>
where
    ReserveTranslation: Translation<R::Attributes>,
{
    fn with_mapping(mapping: Mapping<ReserveTranslation, R>, root_level: usize, input_bits: u32) -> Self {
        Self { mapping, root_level, keep: RESERVE_KEEP, limit: 1usize << input_bits, keeps_leaf_tables: false }
    }

    /// From now on, an unmap that empties a last-level table at its edge keeps
    /// the table (a later map of its window writes one entry, with no table
    /// to allocate, zero and free, and no whole-context invalidation). For a
    /// table whose every last-level table is accounted for ahead of time: the
    /// hyp's own stage-1, whose pool holds one per 2 MiB of RAM.
    pub fn keep_leaf_tables(&mut self) {
        self.keeps_leaf_tables = true;
    }

    /// Keeps no reserve pages between operations: for tables whose pages are
    /// counted against someone (a VM's tables in the host's memcache).
    pub fn keep_no_reserve(&mut self) {
        self.keep = 0;
    }

    /// Physical address of the root table.
    pub fn root_address(&self) -> usize {
        self.mapping.root_address().0
    }

    /// Exclusive end of the input address space.
    pub fn limit(&self) -> usize {
        self.limit
    }

    fn check_range(&self, start: usize, end: usize) -> Result<MemoryRegion, PgTableError> {
        if start >= end || !start.is_multiple_of(PAGE_SIZE) || !end.is_multiple_of(PAGE_SIZE) || end > self.limit {
            return Err(PgTableError::BadRange);
        }
        Ok(MemoryRegion::new(start, end))
    }

    /// Worst-case new tables to map `[start, end)` to `pa..` in empty space.
    fn tables_to_map(&self, start: usize, end: usize, pa: usize) -> usize {
        let mut count = 0;
        for level in self.root_level + 1..=LEAF_LEVEL {
            // A table at `level` serves one window the size of a `level - 1` entry.
            let window = granule(level - 1);
            let touched = (end - 1) / window - start / window + 1;
            let can_block = level - 1 > 0 && (start ^ pa).is_multiple_of(window);
            count += if can_block { touched.min(2) } else { touched };
        }
        count
    }

    /// Fills the reserve up to `needed` pages from `source`.
    fn fill_reserve(&self, needed: usize, source: &mut dyn PageSource) -> Result<(), PgTableError> {
        if needed > MAX_TABLES_PER_OP {
            return Err(PgTableError::TooLarge);
        }
        let mut reserve = self.mapping.translation().reserve.try_borrow_mut().map_err(|_| PgTableError::NoMemory)?;
        while reserve.len < needed {
            let page = source.alloc_page().ok_or(PgTableError::NoMemory)?;
            reserve.push(page);
        }
        Ok(())
    }

    /// Gives back to `source` the reserve beyond `keep` pages and every freed table.
    /// Call only after the TLB maintenance of the operation has completed.
    fn release_pages(&self, keep: usize, source: &mut dyn PageSource) {
        let translation = self.mapping.translation();
        if let Ok(mut freed) = translation.freed.try_borrow_mut() {
            while let Some(page) = freed.pop() {
                source.free_page(page);
            }
        }
        if let Ok(mut reserve) = translation.reserve.try_borrow_mut() {
            while reserve.len > keep {
                if let Some(page) = reserve.pop() {
                    source.free_page(page);
                }
            }
        }
    }

    /// How many tables the crate had to take outside the reserve (must stay 0).
    pub fn reserve_underflows(&self) -> usize {
        self.mapping.translation().underflows.try_borrow().map_or(0, |u| *u)
    }

    /// Whether the table is walked here directly: one root page (every table
    /// the hyp builds; the crate's walk serves a concatenated root).
    fn walks_directly(&self) -> bool {
        self.root_level <= LEAF_LEVEL && self.limit <= granule(self.root_level) * ENTRIES
    }

    /// The descriptor of entry `index` of table page `table`.
    ///
    /// # Safety
    ///
    /// `table` is a table page of this mapping (its root, or the output
    /// address of one of its table descriptors), and `index` < 512.
    unsafe fn descriptor_in(table: usize, index: usize) -> usize {
        // SAFETY: The caller's contract: the page is identity-mapped and page
        // aligned, so the entry lies inside it; descriptors are only ever
        // accessed atomically; `&self` of the caller keeps the page from being
        // freed.
        unsafe { &*(table as *const AtomicUsize).add(index) }.load(Ordering::Acquire)
    }

    /// The 512 descriptors of table page `table`.
    ///
    /// # Safety
    ///
    /// As [`PgTable::descriptor_in`]; the page outlives the borrow.
    unsafe fn entries_of<'a>(table: usize) -> &'a [AtomicUsize] {
        // SAFETY: The caller's contract: a whole table page, identity-mapped,
        // page aligned, accessed only atomically.
        unsafe { core::slice::from_raw_parts(table as *const AtomicUsize, ENTRIES) }
    }

    /// The walk of a table with one root page to `address`, one descriptor
    /// per level, following table descriptors: the table that holds the
    /// entry where it stops (a leaf, an invalid entry, or the last level),
    /// its level, and the descriptor. `None` for a concatenated root (the
    /// crate's walk serves those) or an address beyond the table.
    fn descriptor_at(&self, address: usize) -> Option<(usize, usize, usize)> {
        if !self.walks_directly() || address >= self.limit {
            return None;
        }
        let mut table = self.root_address();
        let mut level = self.root_level;
        loop {
            let index = (address / granule(level)) % ENTRIES;
            // SAFETY: `table` is the root or a table descriptor's output address.
            let descriptor = unsafe { Self::descriptor_in(table, index) };
            if level < LEAF_LEVEL && descriptor & TABLE_DESCRIPTOR == TABLE_DESCRIPTOR {
                table = descriptor & OUTPUT_ADDRESS;
                level += 1;
            } else {
                return Some((table, level, descriptor));
            }
        }
    }

    /// The table page at `level` that serves `address`, when the walk there
    /// meets only table descriptors.
    fn table_at(&self, address: usize, level: usize) -> Option<usize> {
        if !self.walks_directly() || address >= self.limit || level > LEAF_LEVEL {
            return None;
        }
        let mut table = self.root_address();
        for above in self.root_level..level {
            // SAFETY: `table` is the root or a table descriptor's output address.
            let descriptor = unsafe { Self::descriptor_in(table, (address / granule(above)) % ENTRIES) };
            if descriptor & TABLE_DESCRIPTOR != TABLE_DESCRIPTOR {
                return None;
            }
            table = descriptor & OUTPUT_ADDRESS;
        }
        Some(table)
    }

    /// The entries of `[start, end)` at `level`, when the range is whole
    /// entries of that level inside one table of it (not all of them: a
    /// whole table's window may be one entry a level up), below the root,
    /// and the walk to that table meets only table descriptors: the case of
    /// the direct updates. `None` sends the caller down the crate's path.
    fn entries_at(&self, start: usize, end: usize, level: usize) -> Option<TableEntries<'_>> {
        let size = granule(level);
        let window = size * ENTRIES;
        if level <= self.root_level
            || start >= end
            || end - start >= window
            || !start.is_multiple_of(size)
            || !end.is_multiple_of(size)
            || start & !(window - 1) != (end - 1) & !(window - 1)
        {
            return None;
        }
        let table = self.table_at(start, level)?;
        // SAFETY: A table page of this mapping, borrowed for as long as `&self`.
        let entries = unsafe { Self::entries_of(table) };
        Some(TableEntries { table: entries, level, first: (start / size) % ENTRIES, count: (end - start) / size })
    }

    /// The last-level entries of `[start, end)` (pages), as
    /// [`PgTable::entries_at`].
    fn leaf_entries(&self, start: usize, end: usize) -> Option<TableEntries<'_>> {
        self.entries_at(start, end, LEAF_LEVEL)
    }

    /// The level-2 entries of `[start, end)` (2 MiB blocks), as
    /// [`PgTable::entries_at`].
    fn block_entries(&self, start: usize, end: usize) -> Option<TableEntries<'_>> {
        self.entries_at(start, end, LEAF_LEVEL - 1)
    }

    /// [`PgTable::for_each_leaf`] over `range`, clipped to the table's limit.
    pub fn for_each_leaf_in(&self, range: crate::range::PhysRange, f: impl FnMut(Leaf<R::Attributes>)) {
        let end = range.end.min(self.limit as u64);
        if range.start < end {
            self.for_each_leaf(range.start as usize, end as usize, f);
        }
    }

    /// Calls `f` with each valid leaf overlapping `[start, end)`, clipped to it.
    pub fn for_each_leaf(&self, start: usize, end: usize, mut f: impl FnMut(Leaf<R::Attributes>)) {
        let Ok(region) = self.check_range(start, end) else {
            return;
        };
        let _ = self.mapping.walk_range(&region, &mut |chunk, descriptor, level| {
            if descriptor.is_valid() {
                let block_start = chunk.start().0 & !(granule(level) - 1);
                let pa = descriptor.output_address().0 + (chunk.start().0 - block_start);
                let attributes = descriptor.flags() - R::Attributes::TABLE_OR_PAGE - R::Attributes::VALID;
                f(Leaf { start: chunk.start().0, end: chunk.end().0, pa, level, attributes });
            }
            Ok(())
        });
    }

    /// The leaf containing `address`, whole (not clipped), if mapped.
    pub fn leaf_at(&self, address: usize) -> Option<Leaf<R::Attributes>> {
        match self.entry_at(address) {
            Entry::Mapped(leaf) => Some(leaf),
            Entry::Marked(_) | Entry::Empty => None,
        }
    }

    /// The entry that translates `address`: one walk, whatever it finds.
    ///
    /// A table with one root page (every stage-2 and stage-1 table the hyp
    /// builds) is walked here directly, one descriptor per level: a guest's
    /// MMIO abort asks this once, and `walk_range`'s general walk cost it 161
    /// instructions (`docs/performance.md`, issue 23).
    pub fn entry_at(&self, address: usize) -> Entry<R::Attributes> {
        let page = address & !(PAGE_SIZE - 1);
        if !self.walks_directly() {
            return self.entry_at_walked(address);
        }
        let Some((_, level, descriptor)) = self.descriptor_at(page) else {
            return Entry::Empty;
        };
        let flags = R::Attributes::from_bits_retain(descriptor & !OUTPUT_ADDRESS);
        if flags.contains(R::Attributes::VALID) {
            let size = granule(level);
            let start = page & !(size - 1);
            let attributes = flags - R::Attributes::TABLE_OR_PAGE - R::Attributes::VALID;
            Entry::Mapped(Leaf { start, end: start + size, pa: descriptor & OUTPUT_ADDRESS, level, attributes })
        } else if descriptor != 0 {
            Entry::Marked(flags)
        } else {
            Entry::Empty
        }
    }

    /// [`PgTable::entry_at`] through `walk_range` (a concatenated root).
    fn entry_at_walked(&self, address: usize) -> Entry<R::Attributes> {
        let page = address & !(PAGE_SIZE - 1);
        let Ok(region) = self.check_range(page, page + PAGE_SIZE) else {
            return Entry::Empty;
        };
        let mut found = Entry::Empty;
        let _ = self.mapping.walk_range(&region, &mut |chunk, descriptor, level| {
            let size = granule(level);
            let start = chunk.start().0 & !(size - 1);
            found = if descriptor.is_valid() {
                let attributes = descriptor.flags() - R::Attributes::TABLE_OR_PAGE - R::Attributes::VALID;
                let pa = descriptor.output_address().0;
                Entry::Mapped(Leaf { start, end: start + size, pa, level, attributes })
            } else if !is_empty(descriptor) {
                Entry::Marked(descriptor.flags())
            } else {
                Entry::Empty
            };
            Ok(())
        });
        found
    }

    /// The first valid leaf at or after `start`, clipped to begin there (so
    /// that its `pa` is the output address of its `start`).
    pub fn first_leaf_from(&self, start: usize) -> Option<Leaf<R::Attributes>> {
        let region = self.check_range(start, self.limit).ok()?;
        let mut found = None;
        let _ = self.mapping.walk_range(&region, &mut |chunk, descriptor, level| {
            if !descriptor.is_valid() {
                return Ok(());
            }
            let block_start = chunk.start().0 & !(granule(level) - 1);
            let pa = descriptor.output_address().0 + (chunk.start().0 - block_start);
            let attributes = descriptor.flags() - R::Attributes::TABLE_OR_PAGE - R::Attributes::VALID;
            found = Some(Leaf { start: chunk.start().0, end: chunk.end().0, pa, level, attributes });
            Err(())
        });
        found
    }

    /// The (at most two) leaves holding the first and the last page of the range
    /// when they reach outside it: the blocks an unmap must split.
    fn straddling_leaves(&self, start: usize, end: usize) -> [Option<Leaf<R::Attributes>>; 2] {
        let mut straddling: [Option<Leaf<R::Attributes>>; 2] = [None, None];
        for (slot, address) in straddling.iter_mut().zip([start, end - PAGE_SIZE]) {
            *slot = self.leaf_at(address).filter(|leaf| leaf.start < start || leaf.end > end);
        }
        if straddling[0].is_some() && straddling[0] == straddling[1] {
            straddling[1] = None;
        }
        straddling
    }

    /// Worst-case new tables to map back what stays of the straddling blocks.
    fn tables_to_split(&self, start: usize, end: usize, straddling: &[Option<Leaf<R::Attributes>>; 2]) -> usize {
        let mut needed = 0;
        for leaf in straddling.iter().flatten() {
            for (s, e) in [(leaf.start, start.max(leaf.start)), (end.min(leaf.end), leaf.end)] {
                if s < e {
                    needed += self.tables_to_map(s, e, leaf.pa + (s - leaf.start));
                }
            }
        }
        needed
    }

    /// Takes from `source`, ahead of time, every page a later
    /// `map(start, end, pa, ..)` can need, so that it cannot fail for memory.
    /// Used by transitions that change several tables and must not fail halfway.
    ///
    /// # Errors
    ///
    /// [`PgTableError::BadRange`], [`PgTableError::NoMemory`], [`PgTableError::TooLarge`].
    pub fn reserve_for_map(
        &self,
        start: usize,
        end: usize,
        pa: usize,
        source: &mut dyn PageSource,
    ) -> Result<(), PgTableError> {
        self.check_range(start, end)?;
        self.fill_reserve(self.tables_to_map(start, end, pa), source)
    }

    /// As [`PgTable::reserve_for_map`], for a later `unmap(start, end, ..)`.
    ///
    /// # Errors
    ///
    /// As [`PgTable::reserve_for_map`].
    pub fn reserve_for_unmap(&self, start: usize, end: usize, source: &mut dyn PageSource) -> Result<(), PgTableError> {
        self.check_range(start, end)?;
        let straddling = self.straddling_leaves(start, end);
        self.fill_reserve(self.tables_to_split(start, end, &straddling), source)
    }

    /// Gives back the pages reserved ahead of time (after a transition gave up).
    pub fn release_reserve(&self, source: &mut dyn PageSource) {
        self.release_pages(0, source);
    }

    /// Maps `[start, end)` to `pa..` with `attributes` (which must include VALID),
    /// using blocks where alignment allows. The range must be empty: neither
    /// mapped nor marked.
    ///
    /// # Errors
    ///
    /// [`PgTableError::BadRange`], [`PgTableError::AlreadyMapped`] (also for a
    /// marked entry), [`PgTableError::NoMemory`], [`PgTableError::TooLarge`];
    /// nothing changes.
    pub fn map(
        &mut self,
        start: usize,
        end: usize,
        pa: usize,
        attributes: R::Attributes,
        source: &mut dyn PageSource,
        tlb: &mut dyn TlbMaintenance,
    ) -> Result<(), PgTableError> {
        let region = self.check_range(start, end)?;
        if !pa.is_multiple_of(PAGE_SIZE) || pa.checked_add(end - start).is_none() {
            return Err(PgTableError::BadRange);
        }
        if let Some(leaves) = self.leaf_entries(start, end) {
            // Pages of one existing table: the descriptors the crate would write.
            if !leaves.range_is_empty() {
                return Err(PgTableError::AlreadyMapped);
            }
            Self::fill_entries(&leaves, pa, attributes | R::Attributes::VALID | R::Attributes::TABLE_OR_PAGE, tlb);
            return Ok(());
        }
        if pa.is_multiple_of(granule(LEAF_LEVEL - 1)) && !attributes.contains(R::Attributes::TABLE_OR_PAGE) {
            if let Some(blocks) = self.block_entries(start, end).filter(TableEntries::range_is_empty) {
                // Whole 2 MiB pieces of one table, all empty: the blocks the
                // crate would write, without its walks.
                Self::fill_entries(&blocks, pa, attributes | R::Attributes::VALID, tlb);
                self.release_pages(self.keep, source);
                return Ok(());
            }
        }
        if !self.is_vacant(start, end) {
            return Err(PgTableError::AlreadyMapped);
        }
        let needed = self.tables_to_map(start, end, pa);
        self.fill_reserve(needed, source)?;
        self.mapping
            .map_range(&region, PhysicalAddress(pa), attributes | R::Attributes::VALID, Constraints::empty())
            .map_err(|_| PgTableError::BadRange)?;
        // Invalid -> valid needs no invalidation; make the new entries visible.
        tlb.sync();
        self.release_pages(self.keep, source);
        Ok(())
    }

    /// Unmaps `[start, end)` (mapped or not), splitting blocks that straddle its
    /// edges with break-before-make, and frees tables left empty at its edges.
    ///
    /// # Errors
    ///
    /// [`PgTableError::BadRange`], [`PgTableError::NoMemory`] (for the tables a
    /// split needs); nothing changes.
    pub fn unmap(
        &mut self,
        start: usize,
        end: usize,
        source: &mut dyn PageSource,
        tlb: &mut dyn TlbMaintenance,
    ) -> Result<(), PgTableError> {
        self.unmap_filling(start, end, R::Attributes::default(), source, tlb)
    }

    /// Unmaps `[start, end)`, which must be mapped whole, as [`PgTable::unmap`]
    /// does, but leaves `marker` (attributes without VALID, not empty) in the
    /// invalid entries it writes: the walker still finds nothing there, and
    /// [`PgTable::entry_at`] answers [`Entry::Marked`] for every page of the
    /// range until [`PgTable::destroy`] (or a later unmap that clears a piece of
    /// the table holding mappings beside the mark). The mark takes no memory:
    /// the entries are those the mappings had (a whole piece of the range
    /// becomes one marked entry of its level, freeing its subtable), and the
    /// tables holding them are kept until then.
    ///
    /// # Errors
    ///
    /// [`PgTableError::BadRange`] (also for a range not mapped whole, or a
    /// marker with VALID or nothing in it), [`PgTableError::NoMemory`] (for the
    /// tables a split needs); nothing changes.
    pub fn unmap_marking(
        &mut self,
        start: usize,
        end: usize,
        marker: R::Attributes,
        source: &mut dyn PageSource,
        tlb: &mut dyn TlbMaintenance,
    ) -> Result<(), PgTableError> {
        self.check_range(start, end)?;
        let descriptor_bits = R::Attributes::VALID | R::Attributes::TABLE_OR_PAGE;
        if marker & descriptor_bits != R::Attributes::default() || marker == R::Attributes::default() {
            return Err(PgTableError::BadRange);
        }
        let mut covered = 0;
        self.for_each_leaf(start, end, |leaf| covered += leaf.end - leaf.start);
        if covered != end - start {
            return Err(PgTableError::BadRange);
        }
        self.unmap_filling(start, end, marker, source, tlb)
    }

    /// [`PgTable::unmap`], writing `fill` (no VALID) into the entries it clears.
    fn unmap_filling(
        &mut self,
        start: usize,
        end: usize,
        fill: R::Attributes,
        source: &mut dyn PageSource,
        tlb: &mut dyn TlbMaintenance,
    ) -> Result<(), PgTableError> {
        let region = self.check_range(start, end)?;
        let marking = fill != R::Attributes::default();
        let table_stays =
            |leaves: &TableEntries<'_>| marking || self.keeps_leaf_tables || leaves.others_hold_something();
        if let Some(leaves) = self.leaf_entries(start, end).filter(table_stays) {
            // Pages of one existing table that stays.
            Self::clear_entries(&leaves, start, fill, marking, tlb);
            return Ok(());
        }
        // Whole 2 MiB pieces of one table that stays, none of them a table:
        // the same, one entry a block.
        let no_subtables = |blocks: &TableEntries<'_>| {
            blocks.range().iter().all(|entry| entry.load(Ordering::Relaxed) & TABLE_DESCRIPTOR != TABLE_DESCRIPTOR)
        };
        if let Some(blocks) = self
            .block_entries(start, end)
            .filter(no_subtables)
            .filter(|blocks| marking || blocks.others_hold_something())
        {
            Self::clear_entries(&blocks, start, fill, marking, tlb);
            self.release_pages(self.keep, source);
            return Ok(());
        }
        let straddling = self.straddling_leaves(start, end);
        let needed = self.tables_to_split(start, end, &straddling);
        self.fill_reserve(needed, source)?;

        // Break each straddling block, then make what stays of it.
        let mut freed_tables = false;
        for leaf in straddling.iter().flatten() {
            let block = MemoryRegion::new(leaf.start, leaf.end);
            self.mapping
                .map_range(&block, PhysicalAddress(0), R::Attributes::default(), Constraints::empty())
                .map_err(|_| PgTableError::BadRange)?;
            tlb.invalidate_leaf(leaf.start, leaf.level);
            tlb.sync();
            for (s, e) in [(leaf.start, start.max(leaf.start)), (end.min(leaf.end), leaf.end)] {
                if s < e {
                    let keep = MemoryRegion::new(s, e);
                    let pa = PhysicalAddress(leaf.pa + (s - leaf.start));
                    self.mapping
                        .map_range(&keep, pa, leaf.attributes | R::Attributes::VALID, Constraints::empty())
                        .map_err(|_| PgTableError::BadRange)?;
                }
            }
        }

        // Now every leaf in the range lies inside it. Clear the range in naturally
        // aligned pieces, each one entry of some level, and only pieces that hold a
        // leaf or a table: the crate then frees whole subtables and never has to
        // split an invalid entry (which would allocate). Each cleared piece becomes
        // one entry of its level holding `fill` (empty for a plain unmap).
        //
        // A marking unmap writes every piece: its range was mapped whole, so a
        // piece without content now is part of a block broken above, and the
        // table of its level exists (the piece is not a whole entry of the level
        // above, so the window of that entry also holds pages outside the range,
        // which the make step mapped at the piece's level or deeper).
        let mut leaves: LeafList = LeafList::new();
        let mut address = start;
        while address < end {
            let level = (self.root_level..=LEAF_LEVEL)
                .find(|&l| address.is_multiple_of(granule(l)) && address + granule(l) <= end)
                .unwrap_or(LEAF_LEVEL);
            let piece_end = address + granule(level);
            let mut content = false;
            if let Ok(piece) = self.check_range(address, piece_end) {
                let _ = self.mapping.walk_range(&piece, &mut |chunk, descriptor, l| {
                    if descriptor.is_valid() {
                        leaves.push(chunk.start().0, l);
                    }
                    content |= descriptor.is_valid() || l > level;
                    Ok(())
                });
                if content || marking {
                    self.mapping
                        .map_range(&piece, PhysicalAddress(0), fill, Constraints::empty())
                        .map_err(|_| PgTableError::BadRange)?;
                }
            }
            address = piece_end;
        }
        let _ = region;
        if leaves.overflowed() {
            tlb.invalidate_all();
        } else {
            for &(address, level) in leaves.as_slice() {
                tlb.invalidate_leaf(address, level);
            }
        }

        // Free the tables at the edges that are now empty, deepest first.
        let deepest_freed = if self.keeps_leaf_tables { LEAF_LEVEL - 1 } else { LEAF_LEVEL };
        for level in (self.root_level + 1..=deepest_freed).rev() {
            let window = granule(level - 1);
            let first = start & !(window - 1);
            let last = (end - PAGE_SIZE) & !(window - 1);
            let edges: &[usize] = if first == last { &[first] } else { &[first, last] };
            for &w_start in edges {
                let w_end = w_start.saturating_add(window).min(self.limit);
                if w_start >= start && w_end <= end {
                    continue; // entirely inside the range: already gone
                }
                if self.table_is_empty(w_start, level) == Some(true) {
                    let w = MemoryRegion::new(w_start, w_end);
                    self.mapping
                        .map_range(&w, PhysicalAddress(0), R::Attributes::default(), Constraints::empty())
                        .map_err(|_| PgTableError::BadRange)?;
                    freed_tables = true;
                }
            }
        }
        let freed_during_unmap = self.mapping.translation().freed.try_borrow().is_ok_and(|f| f.len > 0);
        if freed_tables || freed_during_unmap {
            // A freed table may sit in a walk cache: drop the whole context.
            tlb.invalidate_all();
        }
        tlb.sync();
        self.release_pages(self.keep, source);
        Ok(())
    }

    /// The direct map of `entries`, which are empty: each maps the next
    /// piece of its level from `pa` on, with the descriptor bits `flags`
    /// (what the crate writes for that level); new mappings need no
    /// invalidation, only the barrier that makes them visible.
    fn fill_entries(entries: &TableEntries<'_>, pa: usize, flags: R::Attributes, tlb: &mut dyn TlbMaintenance) {
        let size = granule(entries.level);
        for (i, entry) in entries.range().iter().enumerate() {
            entry.store(((pa + i * size) & OUTPUT_ADDRESS) | flags.bits(), Ordering::Release);
        }
        tlb.sync();
    }

    /// The direct unmap of `entries` (the range from `start`), which hold no
    /// table descriptor, in a table that stays: a plain unmap clears the
    /// valid entries (a mark stays), a marking one writes `fill` into every
    /// entry; each valid one is invalidated, as the crate's path would.
    fn clear_entries(
        entries: &TableEntries<'_>,
        start: usize,
        fill: R::Attributes,
        marking: bool,
        tlb: &mut dyn TlbMaintenance,
    ) {
        let size = granule(entries.level);
        for (i, entry) in entries.range().iter().enumerate() {
            let old = entry.load(Ordering::Relaxed);
            let valid = old & R::Attributes::VALID.bits() != 0;
            if valid || marking {
                entry.store(fill.bits(), Ordering::Release);
            }
            if valid {
                tlb.invalidate_leaf(start + i * size, entries.level);
            }
        }
        tlb.sync();
    }

    /// Frees every table, the root included, into `source`. The caller has made
    /// sure no walker uses the table any more (for a stage-2: the VM never runs
    /// again, and `tlb` drops the VMID's entries before the pages are reused).
    pub fn destroy(mut self, source: &mut dyn PageSource, tlb: &mut dyn TlbMaintenance) {
        let root = self.root_address();
        if self.walks_directly() {
            // The tables found through their table descriptors rather than
            // by the crate's unmap, which visits every entry of every table
            // (about 200,000 instructions for a VM of a page). Break first:
            // each table descriptor of the root loses VALID (keeping the
            // table's address for the walk below), so that no walk, not even
            // a speculative one, reaches the tables while the TLB forgets
            // them; then they go.
            // SAFETY: The root page of this mapping, 512 descriptors.
            let root_entries = unsafe { Self::entries_of(root) };
            for entry in root_entries {
                let descriptor = entry.load(Ordering::Relaxed);
                if descriptor & TABLE_DESCRIPTOR == TABLE_DESCRIPTOR {
                    entry.store(descriptor & !VALID_BIT, Ordering::Release);
                }
            }
            tlb.invalidate_all();
            tlb.sync();
            for entry in root_entries {
                let descriptor = entry.load(Ordering::Relaxed);
                if descriptor & TABLE_DESCRIPTOR == DETACHED_TABLE && descriptor & OUTPUT_ADDRESS != 0 {
                    let table = descriptor & OUTPUT_ADDRESS;
                    Self::free_subtables(table, self.root_level + 1, source);
                    source.free_page(table);
                }
            }
            self.release_pages(0, source);
            // Nothing is left for the crate to free but the root, which goes
            // back here: forgotten, not dropped (the mapping owns no memory
            // of its own, and was never activated, so its drop would only
            // visit the root's entries again).
            core::mem::forget(self.mapping);
            source.free_page(root);
            return;
        }
        let limit = self.limit;
        // Clearing everything frees every subtable (into `source`, after `tlb`).
        let _ = self.unmap(0, limit, source, tlb);
        tlb.invalidate_all();
        tlb.sync();
        self.release_pages(0, source);
        // Dropping the mapping hands the root to the translation, which goes too;
        // the page is then unused and goes back.
        drop(self.mapping);
        source.free_page(root);
    }

    /// Frees into `source` every table below `table` (a table page of this
    /// mapping at `level`), each after the tables below it.
    fn free_subtables(table: usize, level: usize, source: &mut dyn PageSource) {
        if level >= LEAF_LEVEL {
            return;
        }
        for index in 0..ENTRIES {
            // SAFETY: `table` is a table of this mapping below the root, not
            // freed yet (a table goes after its entries were read).
            let descriptor = unsafe { Self::descriptor_in(table, index) };
            if descriptor & TABLE_DESCRIPTOR == TABLE_DESCRIPTOR {
                let subtable = descriptor & OUTPUT_ADDRESS;
                Self::free_subtables(subtable, level + 1, source);
                source.free_page(subtable);
            }
        }
    }

    /// Whether the table at `level` that serves `window_start` (a window of one
    /// `level - 1` entry) holds nothing, neither a valid nor a marked entry:
    /// `None` if there is no such table.
    /// Reads the table's 512 descriptors directly (stopping at the first one
    /// that is not zero) rather than visiting them through the crate, which
    /// costs ten times more.
    fn table_is_empty(&self, window_start: usize, level: usize) -> Option<bool> {
        let region = self.check_range(window_start, window_start + PAGE_SIZE).ok()?;
        let mut state = None;
        let _ = self.mapping.walk_range(&region, &mut |_, descriptor, l| {
            if l == level {
                let table = (descriptor as *const _ as usize) & !(PAGE_SIZE - 1);
                // SAFETY: `descriptor` lies in one of this table's translation tables,
                // a whole page of 512 descriptors that `&self` keeps from changing.
                let entries = unsafe { core::slice::from_raw_parts(table as *const u64, PAGE_SIZE / 8) };
                state = Some(entries.iter().all(|&entry| entry == 0));
            } else if l > level {
                // A deeper table hangs off it: not empty.
                state = Some(false);
            }
            Err(())
        });
        state
    }

    /// Whether `[start, end)` holds nothing: no valid leaf and no marked entry.
    /// Stops at the first entry that is not empty, so an empty window costs one
    /// visit per entry of its table, a full one one visit.
    pub fn is_vacant(&self, start: usize, end: usize) -> bool {
        if let Some(vacant) = self.vacant_directly(start, end) {
            return vacant;
        }
        let mut found = false;
        if let Ok(region) = self.check_range(start, end) {
            let _ = self.mapping.walk_range(&region, &mut |_, descriptor, _| {
                found = !is_empty(descriptor);
                if found {
                    Err(())
                } else {
                    Ok(())
                }
            });
        }
        !found
    }

    /// [`PgTable::is_vacant`] where the direct walk decides it: a range whose
    /// first page is covered by an entry that is not empty, or that lies
    /// inside one empty entry, or that is whole empty entries of one table.
    /// `None` leaves it to the crate's walk.
    fn vacant_directly(&self, start: usize, end: usize) -> Option<bool> {
        self.check_range(start, end).ok()?;
        let (_, level, descriptor) = self.descriptor_at(start)?;
        if descriptor != 0 {
            return Some(false);
        }
        if end <= (start & !(granule(level) - 1)) + granule(level) {
            return Some(true);
        }
        let empty_entries = self.leaf_entries(start, end).or_else(|| self.block_entries(start, end));
        empty_entries.filter(TableEntries::range_is_empty).map(|_| true)
    }

    /// Whether the entry at `level` covering `address` points to a subtable.
    #[cfg(test)]
    fn has_table(&self, address: usize, level: usize) -> bool {
        // A window with a table: walking it visits entries below `level` (and the
        // walk stops at the first one); without a table it visits one entry.
        let end = (address + granule(level)).min(self.limit);
        let mut deeper = false;
        if let Ok(region) = self.check_range(address, end) {
            let _ = self.mapping.walk_range(&region, &mut |_, _, l| {
                deeper |= l > level;
                if deeper {
                    Err(())
                } else {
                    Ok(())
                }
            });
        }
        deeper
    }

    /// Number of table pages in use (root included), for tests.
    #[cfg(test)]
    pub fn table_pages(&self) -> usize {
        let mut tables = 1;
        self.count_tables(0, self.limit, self.root_level, &mut tables);
        tables
    }

    #[cfg(test)]
    fn count_tables(&self, start: usize, end: usize, level: usize, tables: &mut usize) {
        if level >= LEAF_LEVEL {
            return;
        }
        let size = granule(level);
        let mut address = start;
        while address < end {
            let next = address.saturating_add(size).min(end);
            if self.has_table(address, level) {
                *tables += 1;
                self.count_tables(address, next, level + 1, tables);
            }
            address = next;
        }
    }
}

/// Leaves to invalidate, `(address, level)`, at most [`LEAF_LIST_CAPACITY`]; past
/// that the caller invalidates the whole context instead (cheaper than hundreds
/// of single invalidations anyway).
struct LeafList {
    items: [(usize, usize); LEAF_LIST_CAPACITY],
    len: usize,
    overflowed: bool,
}

const LEAF_LIST_CAPACITY: usize = 64;

impl LeafList {
    fn new() -> Self {
        Self { items: [(0, 0); LEAF_LIST_CAPACITY], len: 0, overflowed: false }
    }

    fn push(&mut self, address: usize, level: usize) {
        match self.items.get_mut(self.len) {
            Some(slot) => {
                *slot = (address, level);
                self.len += 1;
            }
            None => self.overflowed = true,
        }
    }

    fn as_slice(&self) -> &[(usize, usize)] {
        &self.items[..self.len]
    }

    fn overflowed(&self) -> bool {
        self.overflowed
    }
}

#[cfg(test)]
#[path = "pgtable_tests.rs"]
mod tests;
