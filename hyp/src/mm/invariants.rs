//! The invariant checker: walks the host stage-2 and the hyp's stage-1 against the
//! page records and reports every disagreement. Run by the host-side tests after
//! every operation, and by the hyp on the debug hypercall of test builds: whole
//! ([`check`]), or only where the transitions since the last check touched
//! ([`check_touched`]), which is what makes a check after every call of a long
//! hostile run affordable.

#![forbid(unsafe_code)]

use crate::mm::memory::{
    MemoryState, GUEST_RAM, HOST_BORROWED, HOST_DEVICE, HOST_DMA_RAM, HOST_RAM, HYP_DATA, HYP_DEVICE,
};
use crate::mm::ownership::{Owner, PageRecord, Touched, VmId};
use crate::mm::pgtable::PgTable;
use crate::range::{FixedVec, PhysRange};
use aarch64_paging::paging::Stage2;
use core::fmt;

/// What is wrong at an address.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum ViolationKind {
    /// The host stage-2 maps a RAM page the host neither owns nor borrows.
    HostMapsForeignPage,
    /// A page the host owns or borrows is missing from the host stage-2.
    HostPageUnmapped,
    /// The host stage-2 maps a page with attributes other than its state
    /// implies (its own RAM, or a guest's page it borrows: never executable).
    HostWrongAttributes,
    /// The host stage-2 maps device space the device policy withholds (or
    /// that no device-tree node names, or a page the hyp emulates).
    HostMapsWithheldDevice,
    /// A stage-2 or hyp stage-1 leaf is not an identity mapping.
    NotIdentity,
    /// The hyp's stage-1 maps a page that is neither the hyp's nor lent to it.
    HypMapsForeignPage,
    /// A page lent or donated to the hyp is missing from its stage-1.
    HypPageUnmapped,
    /// The hyp's stage-1 maps a page with attributes other than its state implies.
    HypWrongAttributes,
    /// A guest's stage-2 maps a page that guest neither owns nor borrows.
    GuestMapsForeignPage,
    /// A guest's stage-2 maps a page with attributes other than guest memory's.
    GuestWrongAttributes,
    /// Pages owned by or lent to a guest that its stage-2 does not map, or
    /// that name a guest that does not exist (address: the guest id).
    GuestPageUnmapped,
    /// The memcache list does not hold exactly the donated pages not in use
    /// (address: the list's length).
    MemcacheMismatch,
    /// The host's devices (the IOMMU's table) reach a page the host neither
    /// owns nor borrows, or with other attributes than host RAM's, or not
    /// at its own address.
    DeviceMapsForeignPage,
    /// A page the host may use is missing from its devices' table.
    DevicePageUnmapped,
    /// A table operation needed more pages than it reserved (address 0: the count
    /// of such tables is the number of these violations).
    TableReserveExceeded,
}

/// One violation.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Violation {
    pub address: u64,
    pub kind: ViolationKind,
}

impl Default for Violation {
    fn default() -> Self {
        Violation { address: 0, kind: ViolationKind::NotIdentity }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} at {:#x}", self.kind, self.address)
    }
}

/// Everything the checker found: the count, and the first few in detail.
#[derive(Default)]
pub struct Report {
    pub count: usize,
    pub first: FixedVec<Violation, 8>,
}

impl Report {
    fn add(&mut self, address: u64, kind: ViolationKind) {
        self.count += 1;
        self.first.push(Violation { address, kind });
    }

    #[cfg(test)]
    pub fn is_clean(&self) -> bool {
        self.count == 0
    }
}

/// The host may map a page when it owns or borrows it.
fn host_may_map(record: PageRecord) -> bool {
    record.state_for(Owner::Host).is_some()
}

/// The attributes the host stage-2 maps a page with: its own RAM's, or a
/// guest's page it borrows (a protected VM's MEM_SHARE), never executable.
fn host_attributes(record: PageRecord) -> aarch64_paging::descriptor::Stage2Attributes {
    if record.owner == Owner::Host {
        HOST_RAM
    } else {
        HOST_BORROWED
    }
}

/// The hyp maps a page when it is its own, donated to it, or lent to it.
fn hyp_maps(record: PageRecord) -> bool {
    record.state_for(Owner::Hyp).is_some()
}

/// The hyp's own memory (image, pool): mapped with per-section attributes.
fn hyp_private(record: PageRecord) -> bool {
    record.owner == Owner::Hyp && !record.donated
}

/// The guests a page record names (as owner or borrower).
fn guests_of(record: PageRecord) -> impl Iterator<Item = VmId> {
    let owner = match record.owner {
        Owner::Vm(id) => Some(id),
        _ => None,
    };
    let borrower = match record.borrower {
        Some(Owner::Vm(id)) => Some(id),
        _ => None,
    };
    owner.into_iter().chain(borrower)
}

/// The bytes of `range` that are RAM, calling `per_run` on each run of page
/// records there.
fn ram_under(state: &MemoryState, range: PhysRange, mut per_run: impl FnMut(PhysRange, PageRecord)) -> u64 {
    let mut ram_bytes = 0;
    state.pages.for_each_run_in(range, |run, record| {
        ram_bytes += run.size();
        per_run(run, record);
    });
    ram_bytes
}

/// The output range of the leaf `[start, end)` mapped at `pa`, which must be
/// the identity (else reported).
fn identity_output(start: usize, end: usize, pa: usize, report: &mut Report) -> PhysRange {
    if pa != start {
        report.add(start as u64, ViolationKind::NotIdentity);
    }
    PhysRange { start: start as u64, end: end as u64 }
}

/// Checks `state` and the stage-2s of `guests` whole; `hyp_devices` are the
/// MMIO ranges the hyp maps for itself.
pub fn check(state: &MemoryState, hyp_devices: &[PhysRange], guests: &[(VmId, &PgTable<Stage2>)]) -> Report {
    let mut c = Checker { state, hyp_devices, guests, report: Report::default() };
    c.table_reserves();
    let (free, _) = state.memcache_pages();
    if state.memcache.len() != free {
        c.report.add(state.memcache.len(), ViolationKind::MemcacheMismatch);
    }
    let everything = PhysRange { start: 0, end: u64::MAX };
    c.host_stage2(everything);
    c.devices(everything);
    c.hyp_stage1(everything);
    // One pass over the records, counting every guest's pages as it goes.
    let mut held = alloc::vec![0u64; guests.len()];
    for bank in state.pages.banks() {
        c.records(bank, Some(&mut held));
    }
    for (i, &(id, stage2)) in guests.iter().enumerate() {
        let mapped_pages = c.guest(id, stage2);
        if held[i] != mapped_pages {
            c.report.add(u64::from(id), ViolationKind::GuestPageUnmapped);
        }
    }
    c.report
}

/// Checks only what `touched` names (what the transitions since the last
/// check touched; see [`Touched`]): every leaf of the host stage-2, the
/// devices' table and the hyp's stage-1 inside its ranges, every record there
/// (mapped where it must be, and a guest's page mapped by that guest), and
/// the stage-2s of the guests it names, whole. Everything else was clean at
/// the last check and no transition has changed it since; a full [`check`] now
/// and then covers what a transition could change outside what it names (a
/// bug, or the other 2 MiB blocks of a 1 GiB block it split). When the log
/// overflowed, this is a full check.
pub fn check_touched(
    state: &MemoryState,
    hyp_devices: &[PhysRange],
    guests: &[(VmId, &PgTable<Stage2>)],
    touched: &Touched,
) -> Report {
    if touched.is_everything() {
        return check(state, hyp_devices, guests);
    }
    let mut c = Checker { state, hyp_devices, guests, report: Report::default() };
    c.table_reserves();
    for &range in touched.ranges() {
        c.host_stage2(range);
        c.devices(range);
        c.hyp_stage1(range);
        c.records(range, None);
    }
    for &(id, stage2) in guests.iter().filter(|(id, _)| touched.has_guest(*id)) {
        c.guest(id, stage2);
    }
    c.report
}

/// One check's inputs and findings.
struct Checker<'a> {
    state: &'a MemoryState,
    hyp_devices: &'a [PhysRange],
    guests: &'a [(VmId, &'a PgTable<Stage2>)],
    report: Report,
}

impl Checker<'_> {
    /// No table took a page outside its reserve (the host's and the hyp's;
    /// guests' in [`Checker::guest`]).
    fn table_reserves(&mut self) {
        let state = self.state;
        for _ in 0..state.host_stage2.reserve_underflows() + state.hyp_stage1.reserve_underflows() {
            self.report.add(0, ViolationKind::TableReserveExceeded);
        }
    }

    /// Every host stage-2 leaf in `range`: identity, and RAM only where the host may be.
    fn host_stage2(&mut self, range: PhysRange) {
        let (state, report) = (self.state, &mut self.report);
        state.host_stage2.for_each_leaf_in(range, |leaf| {
            let range = identity_output(leaf.start, leaf.end, leaf.pa, report);
            let ram_bytes = ram_under(state, range, |run, record| {
                if !host_may_map(record) {
                    report.add(run.start, ViolationKind::HostMapsForeignPage);
                } else if leaf.attributes != host_attributes(record) {
                    report.add(run.start, ViolationKind::HostWrongAttributes);
                }
            });
            if ram_bytes < range.size() && leaf.attributes != HOST_DEVICE {
                report.add(range.start, ViolationKind::HostWrongAttributes);
            }
            if ram_bytes == 0 && !state.host_devices.may_map(range) {
                report.add(range.start, ViolationKind::HostMapsWithheldDevice);
            }
        });
    }

    /// Every leaf of the host's devices' table in `range`: identity, host RAM only.
    fn devices(&mut self, range: PhysRange) {
        let (state, report) = (self.state, &mut self.report);
        let Some(dma) = &state.host_dma else {
            return;
        };
        dma.table.for_each_leaf_in(range, |leaf| {
            let range = PhysRange { start: leaf.start as u64, end: leaf.end as u64 };
            let ram_bytes = ram_under(state, range, |run, record| {
                if !host_may_map(record) {
                    report.add(run.start, ViolationKind::DeviceMapsForeignPage);
                }
            });
            if leaf.pa != leaf.start || leaf.attributes != HOST_DMA_RAM || ram_bytes < range.size() {
                report.add(range.start, ViolationKind::DeviceMapsForeignPage);
            }
        });
    }

    /// Every hyp stage-1 leaf in `range`: identity, and only pages the hyp may use.
    fn hyp_stage1(&mut self, range: PhysRange) {
        let (state, hyp_devices, report) = (self.state, self.hyp_devices, &mut self.report);
        state.hyp_stage1.for_each_leaf_in(range, |leaf| {
            let range = identity_output(leaf.start, leaf.end, leaf.pa, report);
            let ram_bytes = ram_under(state, range, |run, record| {
                if !hyp_maps(record) {
                    report.add(run.start, ViolationKind::HypMapsForeignPage);
                } else if !hyp_private(record) && leaf.attributes != HYP_DATA {
                    report.add(run.start, ViolationKind::HypWrongAttributes);
                }
            });
            if ram_bytes < range.size() {
                let is_hyp_device =
                    hyp_devices.iter().any(|d| d.start <= range.start && range.end <= d.end.next_multiple_of(4096));
                if !is_hyp_device || leaf.attributes != HYP_DEVICE {
                    report.add(range.start, ViolationKind::HypMapsForeignPage);
                }
            }
        });
    }

    /// Every page of `range` someone may use is mapped where it must be: the
    /// host's in its stage-2 and its devices' table, the hyp's borrowed and
    /// donated ones in its stage-1, a guest's in that guest's stage-2 (and
    /// the guest exists). With `held`, counts each guest's pages there.
    fn records(&mut self, range: PhysRange, mut held: Option<&mut [u64]>) {
        let (state, guests, report) = (self.state, self.guests, &mut self.report);
        state.pages.for_each_run_in(range, |run, record| {
            let (s, e) = (run.start as usize, run.end as usize);
            if host_may_map(record) {
                if let Some(gap) = first_gap(s, e, |f| state.host_stage2.for_each_leaf(s, e, f)) {
                    report.add(gap as u64, ViolationKind::HostPageUnmapped);
                }
                if let Some(dma) = state.host_dma.as_ref().filter(|d| e <= d.table.limit()) {
                    if let Some(gap) = first_gap(s, e, |f| dma.table.for_each_leaf(s, e, f)) {
                        report.add(gap as u64, ViolationKind::DevicePageUnmapped);
                    }
                }
            }
            if hyp_maps(record) && !hyp_private(record) {
                if let Some(gap) = first_gap(s, e, |f| state.hyp_stage1.for_each_leaf(s, e, f)) {
                    report.add(gap as u64, ViolationKind::HypPageUnmapped);
                }
            }
            for id in guests_of(record) {
                let Some(i) = guests.iter().position(|&(g, _)| g == id) else {
                    // A page of a VM that does not exist.
                    report.add(u64::from(id), ViolationKind::GuestPageUnmapped);
                    continue;
                };
                if let Some(held) = held.as_deref_mut() {
                    held[i] += run.size() / 4096;
                }
                // The guest maps every page of the run (somewhere in its IPA space).
                let mut covered = 0;
                let stage2 = guests[i].1;
                stage2.for_each_leaf(0, stage2.limit(), |leaf| {
                    let pa = PhysRange { start: leaf.pa as u64, end: (leaf.pa + (leaf.end - leaf.start)) as u64 };
                    covered += pa.end.min(run.end).saturating_sub(pa.start.max(run.start));
                });
                if covered < run.size() {
                    report.add(u64::from(id), ViolationKind::GuestPageUnmapped);
                }
            }
        });
    }

    /// Every leaf of a guest's stage-2 maps a page of that guest with guest
    /// memory's attributes; returns how many pages it maps. (Pages the host
    /// forced back from a live protected VM are no leaves: their poisoned
    /// entries are invalid and map nothing. Their marks live in the tables the
    /// VM's mappings used, so a guest table too must never take a page outside
    /// its reserve.)
    fn guest(&mut self, id: VmId, stage2: &PgTable<Stage2>) -> u64 {
        let (state, report) = (self.state, &mut self.report);
        for _ in 0..stage2.reserve_underflows() {
            report.add(0, ViolationKind::TableReserveExceeded);
        }
        let mut mapped_pages = 0u64;
        stage2.for_each_leaf(0, stage2.limit(), |leaf| {
            if leaf.attributes != GUEST_RAM {
                report.add(leaf.start as u64, ViolationKind::GuestWrongAttributes);
            }
            let range = PhysRange { start: leaf.pa as u64, end: (leaf.pa + (leaf.end - leaf.start)) as u64 };
            let ram_bytes = ram_under(state, range, |run, record| {
                if record.state_for(Owner::Vm(id)).is_none() {
                    report.add(run.start, ViolationKind::GuestMapsForeignPage);
                }
            });
            if ram_bytes < range.size() {
                report.add(range.start, ViolationKind::GuestMapsForeignPage);
            }
            mapped_pages += range.size() / 4096;
        });
        mapped_pages
    }
}

/// The first address of `[start, end)` that the leaves `walk` reports (in
/// address order, clipped to the range) leave uncovered.
fn first_gap<A>(
    start: usize,
    end: usize,
    walk: impl FnOnce(&mut dyn FnMut(crate::mm::pgtable::Leaf<A>)),
) -> Option<usize> {
    let mut cursor = start;
    let mut gap = None;
    walk(&mut |leaf| {
        if gap.is_none() && leaf.start > cursor {
            gap = Some(cursor);
        }
        cursor = cursor.max(leaf.end);
    });
    gap.or((cursor < end).then_some(cursor))
}
