//! The invariant checker: walks the host stage-2 and the hyp's stage-1 against the
//! page records and reports every disagreement. Run by the host-side tests after
//! every operation, and by the hyp on the debug hypercall of test builds.

#![forbid(unsafe_code)]

use crate::mm::memory::{MemoryState, GUEST_RAM, HOST_DEVICE, HOST_DMA_RAM, HOST_RAM, HYP_DATA, HYP_DEVICE};
use crate::mm::ownership::{Owner, PageRecord, VmId};
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
    /// The host stage-2 maps a page with attributes other than its state implies.
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
    /// Pages owned by or lent to a guest that its stage-2 does not map (address:
    /// the guest id).
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

/// The hyp maps a page when it is its own, donated to it, or lent to it.
fn hyp_maps(record: PageRecord) -> bool {
    record.state_for(Owner::Hyp).is_some()
}

/// The hyp's own memory (image, pool): mapped with per-section attributes.
fn hyp_private(record: PageRecord) -> bool {
    record.owner == Owner::Hyp && !record.donated
}

/// Checks `state` and the stage-2s of `guests`; `hyp_devices` are the MMIO ranges
/// the hyp maps for itself.
pub fn check(state: &MemoryState, hyp_devices: &[PhysRange], guests: &[(VmId, &PgTable<Stage2>)]) -> Report {
    let mut report = Report::default();
    let pages = &state.pages;
    for _ in 0..state.host_stage2.reserve_underflows() + state.hyp_stage1.reserve_underflows() {
        report.add(0, ViolationKind::TableReserveExceeded);
    }
    let (free, _) = state.memcache_pages();
    if state.memcache.len() != free {
        report.add(state.memcache.len(), ViolationKind::MemcacheMismatch);
    }

    // Every host stage-2 leaf: identity, and RAM only where the host may be.
    state.host_stage2.for_each_leaf(0, state.host_stage2.limit(), |leaf| {
        if leaf.pa != leaf.start {
            report.add(leaf.start as u64, ViolationKind::NotIdentity);
        }
        let range = PhysRange { start: leaf.start as u64, end: leaf.end as u64 };
        let mut ram_bytes = 0;
        pages.for_each_run_in(range, |run, record| {
            ram_bytes += run.size();
            if !host_may_map(record) {
                report.add(run.start, ViolationKind::HostMapsForeignPage);
            } else if leaf.attributes != HOST_RAM {
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

    // The host's devices reach exactly the host's RAM.
    if let Some(dma) = &state.host_dma {
        dma.table.for_each_leaf(0, dma.table.limit(), |leaf| {
            let range = PhysRange { start: leaf.start as u64, end: leaf.end as u64 };
            let mut ram_bytes = 0;
            pages.for_each_run_in(range, |run, record| {
                ram_bytes += run.size();
                if !host_may_map(record) {
                    report.add(run.start, ViolationKind::DeviceMapsForeignPage);
                }
            });
            if leaf.pa != leaf.start || leaf.attributes != HOST_DMA_RAM || ram_bytes < range.size() {
                report.add(range.start, ViolationKind::DeviceMapsForeignPage);
            }
        });
        pages.for_each_run(|run, record| {
            let (s, e) = (run.start as usize, run.end as usize);
            if host_may_map(record) && (run.end as usize) <= dma.table.limit() {
                if let Some(gap) = first_gap(s, e, |f| dma.table.for_each_leaf(s, e, f)) {
                    report.add(gap as u64, ViolationKind::DevicePageUnmapped);
                }
            }
        });
    }

    // Every hyp stage-1 leaf: identity, and only pages the hyp may use.
    state.hyp_stage1.for_each_leaf(0, state.hyp_stage1.limit(), |leaf| {
        if leaf.pa != leaf.start {
            report.add(leaf.start as u64, ViolationKind::NotIdentity);
        }
        let range = PhysRange { start: leaf.start as u64, end: leaf.end as u64 };
        let mut ram_bytes = 0;
        pages.for_each_run_in(range, |run, record| {
            ram_bytes += run.size();
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

    // Every guest leaf maps pages of that guest, and all of them. (Pages the
    // host forced back from a live protected VM are no leaves: their poisoned
    // entries are invalid and map nothing. Their marks live in the tables the
    // VM's mappings used, so a guest table too must never take a page outside
    // its reserve.)
    for &(id, stage2) in guests {
        for _ in 0..stage2.reserve_underflows() {
            report.add(0, ViolationKind::TableReserveExceeded);
        }
        let mut mapped_pages = 0u64;
        stage2.for_each_leaf(0, stage2.limit(), |leaf| {
            if leaf.attributes != GUEST_RAM {
                report.add(leaf.start as u64, ViolationKind::GuestWrongAttributes);
            }
            let range = PhysRange { start: leaf.pa as u64, end: (leaf.pa + (leaf.end - leaf.start)) as u64 };
            let mut ram_bytes = 0;
            pages.for_each_run_in(range, |run, record| {
                ram_bytes += run.size();
                if record.state_for(Owner::Vm(id)).is_none() {
                    report.add(run.start, ViolationKind::GuestMapsForeignPage);
                }
            });
            if ram_bytes < range.size() {
                report.add(range.start, ViolationKind::GuestMapsForeignPage);
            }
            mapped_pages += range.size() / 4096;
        });
        let mut held_pages = 0u64;
        pages.for_each_run(|run, record| {
            if record.state_for(Owner::Vm(id)).is_some() {
                held_pages += run.size() / 4096;
            }
        });
        if held_pages != mapped_pages {
            report.add(u64::from(id), ViolationKind::GuestPageUnmapped);
        }
    }

    // Every page someone may use is mapped where it must be.
    pages.for_each_run(|run, record| {
        let (s, e) = (run.start as usize, run.end as usize);
        if host_may_map(record) {
            if let Some(gap) = first_gap(s, e, |f| state.host_stage2.for_each_leaf(s, e, f)) {
                report.add(gap as u64, ViolationKind::HostPageUnmapped);
            }
        }
        if hyp_maps(record) && !hyp_private(record) {
            if let Some(gap) = first_gap(s, e, |f| state.hyp_stage1.for_each_leaf(s, e, f)) {
                report.add(gap as u64, ViolationKind::HypPageUnmapped);
            }
        }
    });
    report
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
