//! Tests of the memory transitions: each call and each error, the invariant
//! checker on good and corrupted states, and a long random run of transitions
//! against a plain per-page model.

use super::*;
use crate::addr::{GuestPages, Ipa};
use crate::mm::invariants::{check, check_touched, Report, ViolationKind};
use crate::mm::ownership::PageDb;
use crate::mm::ownership::VmId;
use crate::mm::pgtable::Entry;
use crate::testing::{FakeTlb, HeapSource, Rng};
use std::collections::{HashMap, HashSet};

const K4: u64 = 4096;
const RAM0: PhysRange = PhysRange { start: 0x4000_0000, end: 0x4400_0000 };
const RAM1: PhysRange = PhysRange { start: 0x8000_0000, end: 0x8020_0000 };
const HYP_IMAGE: PhysRange = PhysRange { start: 0x4020_0000, end: 0x4030_0000 };
const HYP_POOL: PhysRange = PhysRange { start: 0x4300_0000, end: 0x4400_0000 };
const UART: PhysRange = PhysRange { start: 0x900_0000, end: 0x900_1000 };

/// Physical memory as a sparse map of words; pages zeroed are remembered.
#[derive(Default)]
struct FakeMemory {
    words: HashMap<u64, u64>,
    zeroed: HashSet<u64>,
}

impl PhysMemory for FakeMemory {
    fn zero_page(&mut self, page: u64) {
        self.words.retain(|&a, _| a & !(K4 - 1) != page);
        self.zeroed.insert(page);
    }
    fn read_u64(&mut self, address: u64) -> u64 {
        self.words.get(&address).copied().unwrap_or(0)
    }
    fn write_u64(&mut self, address: u64, value: u64) {
        self.words.insert(address, value);
    }
}

/// IPA bits of the test guests' stage-2s.
const GUEST_IPA_BITS: u32 = 32;

struct Fixture {
    state: MemoryState,
    source: HeapSource,
    stage2_tlb: FakeTlb,
    el2_tlb: FakeTlb,
    memory: FakeMemory,
    guests: [PgTable<Stage2>; 2],
    guest_tlbs: [FakeTlb; 2],
}

impl Fixture {
    fn new() -> Fixture {
        let mut source = HeapSource::default();
        let (mut stage2_tlb, mut el2_tlb, mut memory) = (FakeTlb::default(), FakeTlb::default(), FakeMemory::default());
        let mut hyp_stage1 = PgTable::new(0, 48, El2, &mut source).unwrap();
        for (r, attributes) in [(HYP_IMAGE, HYP_DATA), (HYP_POOL, HYP_DATA), (UART, HYP_DEVICE)] {
            let (s, e) = (r.start as usize, r.end as usize);
            hyp_stage1.map(s, e, s, attributes, &mut source, &mut el2_tlb).unwrap();
        }
        let ram = [RAM0, RAM1];
        let records = vec![0u32; PageDb::storage_bytes(&ram) / 4].leak();
        let mut env =
            Env { source: &mut source, stage2_tlb: &mut stage2_tlb, el2_tlb: &mut el2_tlb, memory: &mut memory };
        let mut state = MemoryState::new(&ram, &[HYP_IMAGE, HYP_POOL], records, 40, hyp_stage1, &mut env).unwrap();
        // Everything below RAM is plain MMIO, as the tests assume.
        let mmio = crate::platform::DeviceRegion {
            range: PhysRange { start: 0, end: RAM0.start },
            class: crate::platform::devices::DeviceClass::Mmio,
            name: Default::default(),
        };
        state.host_devices = crate::mm::host_devices::HostDevices::new(&[mmio], Default::default());
        // The host's devices behind an IOMMU: their table follows every transition.
        let table = PgTable::new_stage1(0, 40, 1, &mut source).unwrap();
        let mut env =
            Env { source: &mut source, stage2_tlb: &mut stage2_tlb, el2_tlb: &mut el2_tlb, memory: &mut memory };
        state.attach_host_dma(HostDmaMirror { table, tlb: Box::new(FakeTlb::default()) }, &mut env).unwrap();
        let level = crate::mm::host_stage2::root_level(GUEST_IPA_BITS);
        let guests = [
            PgTable::new(level, GUEST_IPA_BITS, Stage2, &mut source).unwrap(),
            PgTable::new(level, GUEST_IPA_BITS, Stage2, &mut source).unwrap(),
        ];
        Fixture { state, source, stage2_tlb, el2_tlb, memory, guests, guest_tlbs: Default::default() }
    }

    fn env(&mut self) -> (&mut MemoryState, Env<'_>) {
        (
            &mut self.state,
            Env {
                source: &mut self.source,
                stage2_tlb: &mut self.stage2_tlb,
                el2_tlb: &mut self.el2_tlb,
                memory: &mut self.memory,
            },
        )
    }

    fn call(&mut self, op: Op, start: u64, pages: u64) -> Result<(), HypError> {
        self.call_guest(op, 0, start, 0, pages)
    }

    /// Runs `op` with the host's raw numbers; guest operations act on guest `g`
    /// (VM id `g + 1`) at `ipa`.
    fn call_guest(&mut self, op: Op, g: usize, start: u64, ipa: u64, pages: u64) -> Result<(), HypError> {
        let (start, ipa, pages) = (PhysAddr::new(start), Ipa::new(ipa), PageCount::new(pages));
        let at = GuestPages { pa: start, ipa, count: pages };
        let mut env = Env {
            source: &mut self.source,
            stage2_tlb: &mut self.stage2_tlb,
            el2_tlb: &mut self.el2_tlb,
            memory: &mut self.memory,
        };
        let mut guest = Guest { id: g as VmId + 1, stage2: &mut self.guests[g], tlb: &mut self.guest_tlbs[g] };
        let state = &mut self.state;
        match op {
            Op::Share => state.host_share_hyp(start, pages, &mut env),
            Op::Unshare => state.host_unshare_hyp(start, pages, &mut env),
            Op::Donate => state.host_donate_hyp(start, pages, &mut env),
            Op::Reclaim => state.host_reclaim_hyp(start, pages, &mut env),
            Op::DonateGuest => state.host_donate_guest(&mut guest, at, &mut env),
            Op::ShareGuest => state.host_share_guest(&mut guest, at, &mut env),
            Op::UnshareGuest => state.host_unshare_guest(&mut guest, at, &mut env),
            Op::ReclaimGuest => state.host_reclaim_guest(&mut guest, at, GuestIpas::Unmapped, &mut env),
            Op::PoisonGuest => state.host_reclaim_guest(&mut guest, at, GuestIpas::Poisoned, &mut env),
            Op::GuestShareHost => state.guest_share_host(&mut guest, ipa, &mut env),
            Op::GuestUnshareHost => state.guest_unshare_host(&mut guest, ipa, &mut env),
            Op::GuestRelinquish => state.guest_relinquish(&mut guest, ipa, &mut env),
        }
    }

    fn assert_clean(&self) {
        let report = check(&self.state, &[UART], &[(1, &self.guests[0]), (2, &self.guests[1])]);
        assert!(report.is_clean(), "violations: {:?}", report.first.as_slice());
        let underflows = self.state.host_stage2.reserve_underflows()
            + self.state.hyp_stage1.reserve_underflows()
            + self.guests.iter().map(PgTable::reserve_underflows).sum::<usize>();
        assert_eq!(underflows, 0);
    }

    /// The checker over what the calls since the last check touched, as the
    /// hyp's debug call runs it (which starts a new log).
    fn check_touched(&mut self) -> Report {
        let touched = self.state.pages.take_touched();
        check_touched(&self.state, &[UART], &[(1, &self.guests[0]), (2, &self.guests[1])], &touched)
    }

    fn assert_touched_clean(&mut self) {
        let report = self.check_touched();
        assert!(report.is_clean(), "violations: {:?}", report.first.as_slice());
    }

    fn host_maps(&self, address: u64) -> bool {
        self.state.host_stage2.leaf_at(address as usize).is_some()
    }

    fn devices_reach(&self, address: u64) -> bool {
        self.state.host_dma.as_ref().is_some_and(|d| d.table.leaf_at(address as usize).is_some())
    }

    fn hyp_maps(&self, address: u64) -> bool {
        self.state.hyp_stage1.leaf_at(address as usize).is_some()
    }

    /// Everything observable: all tables' leaves and the records.
    fn snapshot(&self) -> Snapshot {
        self.snapshot_of(PhysRange { start: 0, end: 1 << 40 })
    }

    /// What is observable in `window` (and the guests' tables, whole).
    fn snapshot_of(&self, window: PhysRange) -> Snapshot {
        let (s, e) = (window.start as usize, window.end as usize);
        let mut s2 = Vec::new();
        self.state.host_stage2.for_each_leaf(s, e, |l| s2.push((l.start, l.end, l.pa)));
        let mut s1 = Vec::new();
        self.state.hyp_stage1.for_each_leaf(s, e, |l| s1.push((l.start, l.end, l.pa)));
        let mut records = Vec::new();
        self.state.pages.for_each_run_in(window, |r, rec| records.push((r.start, r.end, rec)));
        let mut guests = Vec::new();
        for g in &self.guests {
            g.for_each_leaf(0, g.limit(), |l| guests.push((l.start, l.end, l.pa)));
        }
        (s2, s1, records, guests)
    }
}

type Leaves = Vec<(usize, usize, usize)>;
type Snapshot = (Leaves, Leaves, Vec<(u64, u64, PageRecord)>, Leaves);

#[derive(Clone, Copy, Debug, PartialEq)]
enum Op {
    Share,
    Unshare,
    Donate,
    Reclaim,
    DonateGuest,
    ShareGuest,
    UnshareGuest,
    ReclaimGuest,
    /// A reclaim from a guest that may still run: its IPAs stay poisoned.
    PoisonGuest,
    /// The guest's MEM_SHARE of the page at its IPA (the PA is not named).
    GuestShareHost,
    /// The guest's MEM_UNSHARE.
    GuestUnshareHost,
    /// The guest's MEM_RELINQUISH.
    GuestRelinquish,
}

/// The guest's own calls: one page at an IPA.
const GUEST_CALLS: [Op; 3] = [Op::GuestShareHost, Op::GuestUnshareHost, Op::GuestRelinquish];

const ALL_OPS: [Op; 12] = [
    Op::Share,
    Op::Unshare,
    Op::Donate,
    Op::Reclaim,
    Op::DonateGuest,
    Op::ShareGuest,
    Op::UnshareGuest,
    Op::ReclaimGuest,
    Op::PoisonGuest,
    Op::GuestShareHost,
    Op::GuestUnshareHost,
    Op::GuestRelinquish,
];

#[test]
fn boot_state_hides_hyp_memory_and_is_clean() {
    let f = Fixture::new();
    f.assert_clean();
    assert!(f.host_maps(RAM0.start) && f.host_maps(RAM1.end - K4));
    assert!(!f.host_maps(HYP_IMAGE.start) && !f.host_maps(HYP_POOL.end - K4));
    assert!(!f.host_maps(UART.start), "device space is mapped on demand");
}

#[test]
fn share_lets_the_hyp_use_a_page_until_unshared() {
    let mut f = Fixture::new();
    let page = RAM0.start + 0x5000;
    f.memory.write_u64(page + 8, 0x1234);
    f.call(Op::Share, page, 1).unwrap();
    f.assert_clean();
    assert!(f.hyp_maps(page) && f.host_maps(page), "shared: both map it");
    let (state, mut env) = f.env();
    assert_eq!(state.debug_exchange(PhysAddr::new(page + 8), 0xabcd, &mut env), Ok(0x1234));
    assert_eq!(f.memory.read_u64(page + 8), 0xabcd);
    f.call(Op::Unshare, page, 1).unwrap();
    f.assert_clean();
    assert!(!f.hyp_maps(page));
    let (state, mut env) = f.env();
    assert_eq!(state.debug_exchange(PhysAddr::new(page + 8), 1, &mut env), Err(HypError::NotOwned));
    assert!(!f.el2_tlb.leaves.is_empty(), "unshare invalidated the hyp's TLB");
}

#[test]
fn donated_pages_leave_the_host_and_come_back_zeroed() {
    let mut f = Fixture::new();
    let start = RAM0.start + 0x10_0000;
    f.memory.write_u64(start + 0x1000, 42);
    f.call(Op::Donate, start, 4).unwrap();
    f.assert_clean();
    assert!(!f.host_maps(start) && !f.host_maps(start + 3 * K4) && f.host_maps(start + 4 * K4));
    assert!(f.hyp_maps(start));
    assert_eq!(f.state.memcache_pages(), (4, 0));
    assert!(f.stage2_tlb.leaves.iter().any(|&(a, _)| a as u64 <= start), "host TLB invalidated");
    f.call(Op::Reclaim, start, 4).unwrap();
    f.assert_clean();
    assert!(f.host_maps(start) && !f.hyp_maps(start));
    assert_eq!(f.memory.read_u64(start + 0x1000), 0);
    assert!((0..4).all(|i| f.memory.zeroed.contains(&(start + i * K4))));
    assert_eq!(f.state.memcache_pages(), (0, 0));
}

#[test]
fn the_host_devices_reach_exactly_the_host_pages() {
    let mut f = Fixture::new();
    let page = RAM0.start + 0x40_1000;
    assert!(f.devices_reach(page) && f.devices_reach(RAM1.start) && !f.devices_reach(HYP_IMAGE.start));
    assert_eq!(f.call(Op::Donate, page, 2), Ok(()));
    f.assert_clean();
    assert!(!f.devices_reach(page) && !f.devices_reach(page + K4) && f.devices_reach(page + 2 * K4));
    assert_eq!(f.call(Op::Reclaim, page, 2), Ok(()));
    assert!(f.devices_reach(page));
    assert_eq!(f.call_guest(Op::DonateGuest, 0, page, 0x1000, 1), Ok(()));
    assert!(!f.devices_reach(page));
    assert_eq!(f.call_guest(Op::ShareGuest, 1, page + K4, 0x1000, 1), Ok(()));
    assert!(f.devices_reach(page + K4), "a non-protected VM's page stays the host's");
    assert_eq!(f.call_guest(Op::ReclaimGuest, 0, page, 0x1000, 1), Ok(()));
    assert!(f.devices_reach(page));
    f.assert_clean();
}

#[test]
fn every_bad_call_returns_its_error_and_changes_nothing() {
    let mut f = Fixture::new();
    let page = RAM0.start + 0x7000;
    f.call(Op::Share, page, 1).unwrap();
    f.call(Op::Donate, page + 0x10000, 2).unwrap();
    let before = f.snapshot();
    let cases: &[(Op, u64, u64, HypError, &str)] = &[
        (Op::Share, page + 0x800, 1, HypError::NotAligned, "unaligned"),
        (Op::Share, 0x2000_0000, 1, HypError::OutOfRange, "outside RAM"),
        (Op::Share, UART.start, 1, HypError::OutOfRange, "device"),
        (Op::Share, HYP_IMAGE.start, 1, HypError::NotOwned, "hyp image"),
        (Op::Donate, HYP_POOL.start, 2, HypError::NotOwned, "hyp pool"),
        (Op::Share, !(K4 - 1), 2, HypError::OutOfRange, "wraps"),
        (Op::Share, RAM0.start, 0, HypError::InvalidArgument, "no pages"),
        (Op::Share, RAM0.start, MAX_PAGES_PER_CALL + 1, HypError::InvalidArgument, "too long"),
        (Op::Share, RAM1.end - K4, 2, HypError::OutOfRange, "runs off the bank"),
        (Op::Share, page, 1, HypError::NotOwned, "double share"),
        (Op::Donate, page, 1, HypError::NotOwned, "donate a shared page"),
        (Op::Unshare, page + K4, 1, HypError::NotOwned, "unshare a page not shared"),
        (Op::Reclaim, page + K4, 1, HypError::NotOwned, "reclaim a page never donated"),
        (Op::Reclaim, page, 1, HypError::NotOwned, "reclaim a shared page"),
        (Op::Reclaim, HYP_POOL.start, 1, HypError::NotOwned, "reclaim the hyp's own page"),
        (Op::Reclaim, page + 0x10000, 3, HypError::NotOwned, "reclaim more than was donated"),
        (Op::Unshare, page - K4, 2, HypError::NotOwned, "unshare a range only partly shared"),
    ];
    for &(op, start, pages, error, what) in cases {
        assert_eq!(f.call(op, start, pages), Err(error), "{what}");
        assert!(f.snapshot() == before, "{what} changed something");
        f.assert_clean();
    }
}

/// A protected guest shares a page with the host: still its own and mapped
/// for it, the host (and its devices) may use it, never execute it; unshared,
/// it leaves every host table with their TLBs invalidated; relinquished, it
/// is the host's own again, zeroed, and the guest's IPA maps nothing.
#[test]
fn a_guest_shares_its_page_with_the_host_until_it_unshares_or_relinquishes_it() {
    let mut f = Fixture::new();
    let page = RAM0.start + 0x60_0000;
    f.call_guest(Op::DonateGuest, 0, page, 0x8000_0000, 4).unwrap();
    f.memory.write_u64(page + K4, 0x5ec2e7);
    f.call_guest(Op::GuestShareHost, 0, 0, 0x8000_1000, 0).unwrap();
    f.assert_clean();
    let leaf = f.state.host_stage2.leaf_at((page + K4) as usize).map(|l| l.attributes);
    assert_eq!(leaf, Some(HOST_BORROWED), "read-write for the host, never executable");
    assert!(f.devices_reach(page + K4) && !f.host_maps(page) && !f.devices_reach(page + 2 * K4));
    assert_eq!(f.state.pages.get(page + K4).map(|r| (r.owner, r.borrower)), Some((Owner::Vm(1), Some(Owner::Host))));
    assert!(f.guests[0].leaf_at(0x8000_1000).is_some(), "still the guest's");
    assert_eq!(f.memory.read_u64(page + K4), 0x5ec2e7, "sharing does not touch the content");
    f.stage2_tlb.leaves.clear();
    f.call_guest(Op::GuestUnshareHost, 0, 0, 0x8000_1000, 0).unwrap();
    f.assert_clean();
    assert!(!f.host_maps(page + K4) && !f.devices_reach(page + K4));
    assert!(f.stage2_tlb.leaves.iter().any(|&(a, _)| a as u64 == page + K4), "host TLB invalidated");
    f.call_guest(Op::GuestShareHost, 0, 0, 0x8000_2000, 0).unwrap();
    f.call_guest(Op::GuestRelinquish, 0, 0, 0x8000_2000, 0).unwrap();
    f.call_guest(Op::GuestRelinquish, 0, 0, 0x8000_3000, 0).unwrap();
    f.assert_clean();
    for p in [page + 2 * K4, page + 3 * K4] {
        assert!(f.memory.zeroed.contains(&p) && f.host_maps(p) && f.devices_reach(p));
        assert_eq!(f.state.pages.get(p), Some(PageRecord::HOST));
        assert_eq!(f.state.host_stage2.leaf_at(p as usize).map(|l| l.attributes), Some(HOST_RAM));
    }
    assert_eq!(f.guests[0].entry_at(0x8000_2000), Entry::Empty, "nothing at the IPA, as in pKVM");
    // The host takes the rest back (a teardown's reclaim), one page shared.
    f.call_guest(Op::GuestShareHost, 0, 0, 0x8000_1000, 0).unwrap();
    f.call_guest(Op::ReclaimGuest, 0, page, 0x8000_0000, 2).unwrap();
    f.assert_clean();
    assert!(f.memory.zeroed.contains(&(page + K4)) && f.state.pages.get(page + K4) == Some(PageRecord::HOST));
    assert_eq!(f.state.host_stage2.leaf_at((page + K4) as usize).map(|l| l.attributes), Some(HOST_RAM));
}

/// Every bad guest call: its error, and nothing changed.
#[test]
fn every_bad_guest_call_returns_its_error_and_changes_nothing() {
    let mut f = Fixture::new();
    let page = RAM0.start + 0x60_0000;
    f.call_guest(Op::DonateGuest, 0, page, 0x8000_0000, 2).unwrap();
    f.call_guest(Op::ShareGuest, 1, page + 0x10000, 0x8000_0000, 1).unwrap();
    f.call_guest(Op::GuestShareHost, 0, 0, 0x8000_1000, 0).unwrap();
    let before = f.snapshot();
    let cases: &[(Op, usize, u64, HypError, &str)] = &[
        (Op::GuestShareHost, 0, 0x8000_0800, HypError::NotAligned, "unaligned"),
        (Op::GuestShareHost, 0, 1 << GUEST_IPA_BITS, HypError::OutOfRange, "beyond its IPA space"),
        (Op::GuestShareHost, 0, !(K4 - 1), HypError::OutOfRange, "wraps"),
        (Op::GuestShareHost, 0, 0x900_0000, HypError::NotOwned, "MMIO: nothing mapped"),
        (Op::GuestShareHost, 0, 0x8000_2000, HypError::NotOwned, "past its memory"),
        (Op::GuestShareHost, 0, 0x8000_1000, HypError::NotOwned, "twice"),
        (Op::GuestShareHost, 1, 0x8000_0000, HypError::NotOwned, "a page the host lends it"),
        (Op::GuestUnshareHost, 0, 0x8000_0000, HypError::NotOwned, "never shared"),
        (Op::GuestUnshareHost, 1, 0x8000_0000, HypError::NotOwned, "a page the host lends it"),
        (Op::GuestUnshareHost, 1, 0x8000_1000, HypError::NotOwned, "another guest's IPA"),
        (Op::GuestRelinquish, 1, 0x8000_0000, HypError::NotOwned, "a page the host lends it"),
        (Op::GuestRelinquish, 0, 0x8000_0008, HypError::NotAligned, "unaligned"),
    ];
    for &(op, g, ipa, error, what) in cases {
        assert_eq!(f.call_guest(op, g, 0, ipa, 0), Err(error), "{what}");
        assert!(f.snapshot() == before, "{what} changed something");
        f.assert_clean();
    }
    // A poisoned IPA (the host took the page back from the live guest) is
    // nothing to share.
    f.call_guest(Op::GuestUnshareHost, 0, 0, 0x8000_1000, 0).unwrap();
    f.call_guest(Op::PoisonGuest, 0, page + K4, 0x8000_1000, 1).unwrap();
    assert_eq!(f.call_guest(Op::GuestShareHost, 0, 0, 0x8000_1000, 0), Err(HypError::NotOwned));
    f.assert_clean();
}

/// The checker sees a shared page the host maps executable, and a guest's
/// page the host maps while not shared.
#[test]
fn the_checker_holds_the_host_to_exactly_the_pages_guests_share() {
    let mut f = Fixture::new();
    let page = RAM0.start + 0x60_0000;
    f.call_guest(Op::DonateGuest, 0, page, 0x8000_0000, 2).unwrap();
    f.call_guest(Op::GuestShareHost, 0, 0, 0x8000_0000, 0).unwrap();
    let (s, env) = f.env();
    s.host_stage2.unmap(page as usize, (page + K4) as usize, env.source, env.stage2_tlb).unwrap();
    s.host_stage2
        .map(page as usize, (page + K4) as usize, page as usize, HOST_RAM, env.source, env.stage2_tlb)
        .unwrap();
    let report = check(&f.state, &[UART], &[(1, &f.guests[0]), (2, &f.guests[1])]);
    assert!(kinds(&report).contains(&(ViolationKind::HostWrongAttributes, page)), "{:?}", kinds(&report));
    let (s, env) = f.env();
    s.host_stage2.unmap(page as usize, (page + K4) as usize, env.source, env.stage2_tlb).unwrap();
    let report = check(&f.state, &[UART], &[(1, &f.guests[0]), (2, &f.guests[1])]);
    assert!(kinds(&report).contains(&(ViolationKind::HostPageUnmapped, page)), "{:?}", kinds(&report));
    let (s, env) = f.env();
    s.host_stage2
        .map(page as usize, (page + K4) as usize, page as usize, HOST_BORROWED, env.source, env.stage2_tlb)
        .unwrap();
    f.assert_clean();
    f.call_guest(Op::GuestUnshareHost, 0, 0, 0x8000_0000, 0).unwrap();
    let (s, env) = f.env();
    let next = (page + K4) as usize;
    s.host_stage2.map(next, next + 4096, next, HOST_BORROWED, env.source, env.stage2_tlb).unwrap();
    let report = check(&f.state, &[UART], &[(1, &f.guests[0]), (2, &f.guests[1])]);
    assert!(kinds(&report).contains(&(ViolationKind::HostMapsForeignPage, page + K4)), "{:?}", kinds(&report));
}

#[test]
fn without_memory_for_tables_nothing_changes() {
    let mut f = Fixture::new();
    let before = f.snapshot();
    f.source.limit = Some(f.source.outstanding.len());
    // Donating one page out of a 2 MiB block needs tables to split it.
    assert_eq!(f.call(Op::Donate, RAM0.start + 0x40_1000, 1), Err(HypError::NoMemory));
    assert!(f.snapshot() == before);
    assert_eq!(f.call(Op::Share, RAM0.start + 0x40_1000, 1), Err(HypError::NoMemory));
    assert!(f.snapshot() == before);
    f.assert_clean();
}

#[test]
fn device_faults_map_device_space_and_never_ram() {
    let mut f = Fixture::new();
    let (state, mut env) = f.env();
    assert_eq!(
        state.host_device_fault(UART.start, true, &mut env),
        HostFault::MappedDevice(PhysRange { start: 0, end: 0x4000_0000 })
    );
    assert_eq!(state.host_device_fault(HYP_IMAGE.start, true, &mut env), HostFault::Refused);
    assert_eq!(state.host_device_fault(1 << 40, true, &mut env), HostFault::Refused);
    // Above RAM no node names anything: refused.
    assert_eq!(state.host_device_fault(RAM1.end + 0x1000_0000, true, &mut env), HostFault::Refused);
    // A fault on what is mapped by now (the host's RAM after another CPU's
    // block split, a device block another CPU mapped) is retried, never refused.
    assert_eq!(state.host_device_fault(RAM0.start + 0x1234, true, &mut env), HostFault::AlreadyMapped);
    assert_eq!(state.host_device_fault(UART.start + 8, false, &mut env), HostFault::AlreadyMapped);
    f.assert_clean();
    assert!(f.host_maps(UART.start));
}

#[test]
fn device_holes_are_never_mapped_for_the_host() {
    let mut f = Fixture::new();
    let (state, mut env) = f.env();
    let gich = PhysRange { start: 0x803_0000, end: 0x804_0000 };
    state.forbid_device(gich);
    assert_eq!(state.host_device_fault(gich.start + 0x100, true, &mut env), HostFault::Refused);
    // Next to it, only blocks that leave it out.
    assert_eq!(
        state.host_device_fault(gich.end, true, &mut env),
        HostFault::MappedDevice(PhysRange { start: 0x804_0000, end: 0x804_1000 })
    );
    assert_eq!(
        state.host_device_fault(UART.start, true, &mut env),
        HostFault::MappedDevice(PhysRange { start: 0x900_0000, end: 0x920_0000 })
    );
    f.assert_clean();
    assert!(!f.host_maps(gich.start));
}

#[test]
fn the_checker_reports_each_kind_of_corruption() {
    let mut f = Fixture::new();
    let (s, env) = f.env();
    s.host_stage2
        .map(
            HYP_IMAGE.start as usize,
            HYP_IMAGE.start as usize + 4096,
            HYP_IMAGE.start as usize,
            HOST_RAM,
            env.source,
            env.stage2_tlb,
        )
        .unwrap();
    let page = (RAM0.start + 0x9000) as usize;
    s.host_stage2.unmap(page, page + 4096, env.source, env.stage2_tlb).unwrap();
    s.hyp_stage1.map(page + 4096, page + 8192, page + 4096, HYP_DATA, env.source, env.el2_tlb).unwrap();
    let kinds: Vec<_> = check(s, &[UART], &[]).first.as_slice().iter().map(|v| (v.kind, v.address)).collect();
    assert!(kinds.contains(&(ViolationKind::HostMapsForeignPage, HYP_IMAGE.start)), "{kinds:?}");
    assert!(kinds.contains(&(ViolationKind::HostPageUnmapped, page as u64)), "{kinds:?}");
    assert!(kinds.contains(&(ViolationKind::HypMapsForeignPage, page as u64 + 4096)), "{kinds:?}");
}

/// What a report says, as (kind, address) pairs.
fn kinds(report: &Report) -> Vec<(ViolationKind, u64)> {
    report.first.as_slice().iter().map(|v| (v.kind, v.address)).collect()
}

#[test]
fn the_touched_check_reports_corruption_where_the_calls_touched() {
    let mut f = Fixture::new();
    // The first check looks at everything (nothing was checked before).
    f.assert_touched_clean();
    f.assert_touched_clean();

    // Corruption no call touched is for the full check (the fuzzer runs one
    // every so often, and at the end) ...
    let far = RAM1.start + 0x10_0000;
    let (s, env) = f.env();
    s.host_stage2.unmap(far as usize, far as usize + 4096, env.source, env.stage2_tlb).unwrap();
    assert!(f.check_touched().is_clean(), "nothing was touched");
    let full = check(&f.state, &[UART], &[(1, &f.guests[0]), (2, &f.guests[1])]);
    assert!(kinds(&full).contains(&(ViolationKind::HostPageUnmapped, far)), "{:?}", kinds(&full));
    // ... until a call touches its 2 MiB block (here: a page 5 pages on).
    f.call(Op::Share, far + 5 * K4, 1).unwrap();
    let report = f.check_touched();
    assert!(kinds(&report).contains(&(ViolationKind::HostPageUnmapped, far)), "{:?}", kinds(&report));
    let (s, env) = f.env();
    s.host_stage2.map(far as usize, far as usize + 4096, far as usize, HOST_RAM, env.source, env.stage2_tlb).unwrap();
    f.call(Op::Unshare, far + 5 * K4, 1).unwrap();
    f.assert_touched_clean();

    // Each kind of corruption a transition could leave behind, next to what
    // it touched (the raw table operations below log nothing themselves).
    let page = RAM0.start + 0x80_0000;
    f.call(Op::Donate, page, 1).unwrap();
    let (s, env) = f.env();
    s.host_stage2
        .map(page as usize, page as usize + 4096, page as usize, HOST_RAM, env.source, env.stage2_tlb)
        .unwrap();
    let report = f.check_touched();
    assert!(kinds(&report).contains(&(ViolationKind::HostMapsForeignPage, page)), "{:?}", kinds(&report));
    let (s, env) = f.env();
    s.host_stage2.unmap(page as usize, page as usize + 4096, env.source, env.stage2_tlb).unwrap();
    let dma = f.state.host_dma.as_mut().unwrap();
    dma.table
        .map(page as usize, page as usize + 4096, page as usize, HOST_DMA_RAM, &mut f.source, &mut FakeTlb::default())
        .unwrap();
    // As a transition notes the range it is about to change.
    f.state.pages.touched.range(page, page + K4);
    let report = f.check_touched();
    assert!(kinds(&report).contains(&(ViolationKind::DeviceMapsForeignPage, page)), "{:?}", kinds(&report));
    let dma = f.state.host_dma.as_mut().unwrap();
    dma.table.unmap(page as usize, page as usize + 4096, &mut f.source, &mut FakeTlb::default()).unwrap();
    f.call(Op::Reclaim, page, 1).unwrap();
    f.assert_touched_clean();

    let (s, env) = f.env();
    s.hyp_stage1.map(page as usize, page as usize + 4096, page as usize, HYP_DATA, env.source, env.el2_tlb).unwrap();
    f.call(Op::Share, page + K4, 1).unwrap();
    let report = f.check_touched();
    assert!(kinds(&report).contains(&(ViolationKind::HypMapsForeignPage, page)), "{:?}", kinds(&report));
    let (s, env) = f.env();
    s.hyp_stage1.unmap(page as usize, page as usize + 4096, env.source, env.el2_tlb).unwrap();
    s.hyp_stage1.unmap(page as usize + 4096, page as usize + 8192, env.source, env.el2_tlb).unwrap();
    assert!(f.check_touched().is_clean(), "the last check took the log: nothing is touched");
    f.state.pages.touched.range(page + K4, page + 2 * K4);
    let report = f.check_touched();
    assert!(kinds(&report).contains(&(ViolationKind::HypPageUnmapped, page + K4)), "{:?}", kinds(&report));
    f.call(Op::Unshare, page + K4, 1).unwrap();
    f.assert_touched_clean();

    // Guests: a leaf mapping a page not theirs, a page of theirs not mapped.
    f.call_guest(Op::DonateGuest, 0, page, 0x1000, 1).unwrap();
    let foreign = RAM0.start + 0x100_0000;
    f.guests[0].map(0x2000, 0x3000, foreign as usize, GUEST_RAM, &mut f.source, &mut FakeTlb::default()).unwrap();
    let report = f.check_touched();
    assert!(kinds(&report).contains(&(ViolationKind::GuestMapsForeignPage, foreign)), "{:?}", kinds(&report));
    f.guests[0].unmap(0x2000, 0x3000, &mut f.source, &mut FakeTlb::default()).unwrap();
    f.guests[0].unmap(0x1000, 0x2000, &mut f.source, &mut FakeTlb::default()).unwrap();
    f.state.pages.touched.guest(1);
    f.state.pages.touched.range(page, page + K4);
    let report = f.check_touched();
    assert!(kinds(&report).contains(&(ViolationKind::GuestPageUnmapped, 1)), "{:?}", kinds(&report));
    f.guests[0].map(0x1000, 0x2000, page as usize, GUEST_RAM, &mut f.source, &mut FakeTlb::default()).unwrap();
    f.call_guest(Op::ReclaimGuest, 0, page, 0x1000, 1).unwrap();
    f.assert_touched_clean();

    // A record naming a guest that does not exist (here: id 9).
    f.state.pages.update(page, 1, |r| PageRecord { borrower: Some(Owner::Vm(9)), ..r }).unwrap();
    let report = f.check_touched();
    assert!(kinds(&report).contains(&(ViolationKind::GuestPageUnmapped, 9)), "{:?}", kinds(&report));
    f.state.pages.update(page, 1, |_| PageRecord::HOST).unwrap();
    f.assert_touched_clean();

    // More separate blocks than the log holds: the next check is a full one,
    // which sees the corruption far from all of them.
    let (s, env) = f.env();
    s.host_stage2.unmap(far as usize, far as usize + 4096, env.source, env.stage2_tlb).unwrap();
    for i in 0..=crate::mm::ownership::TOUCHED_RANGES as u64 {
        let block = RAM0.start + 0x40_0000 + 2 * i * crate::range::SIZE_2M;
        f.state.pages.touched.range(block, block + K4);
    }
    assert!(f.state.pages.touched.is_everything());
    let report = f.check_touched();
    assert!(kinds(&report).contains(&(ViolationKind::HostPageUnmapped, far)), "{:?}", kinds(&report));
}

/// The model: a record per page (absent: the host's), and per guest its
/// IPA page -> PA page mappings and its poisoned IPA pages.
#[derive(Default)]
struct Model {
    records: HashMap<u64, PageRecord>,
    guests: [HashMap<u64, u64>; 2],
    poisoned: [HashSet<u64>; 2],
}

/// A guest's own call on the page at `ipa`, by the rules written out.
fn model_guest_call(model: &mut Model, op: Op, g: usize, ipa: u64) -> Result<(), HypError> {
    if !ipa.is_multiple_of(K4) {
        return Err(HypError::NotAligned);
    }
    if ipa.checked_add(K4).is_none_or(|end| end > 1 << GUEST_IPA_BITS) {
        return Err(HypError::OutOfRange);
    }
    let vm = Owner::Vm(g as VmId + 1);
    let pa = *model.guests[g].get(&ipa).ok_or(HypError::NotOwned)?;
    let r = model.records.get(&pa).copied().unwrap_or(PageRecord::HOST);
    let acceptable = match op {
        Op::GuestShareHost => r.owner == vm && r.borrower.is_none(),
        Op::GuestUnshareHost => r.owner == vm && r.borrower == Some(Owner::Host),
        _ => r.owner == vm && matches!(r.borrower, None | Some(Owner::Host)),
    };
    if !acceptable {
        return Err(HypError::NotOwned);
    }
    let new = match op {
        Op::GuestShareHost => PageRecord { borrower: Some(Owner::Host), ..r },
        Op::GuestUnshareHost => PageRecord { borrower: None, ..r },
        _ => {
            model.guests[g].remove(&ipa);
            PageRecord::HOST
        }
    };
    model.records.insert(pa, new);
    Ok(())
}

/// The rules, written out per page, independently of `MemoryState`.
fn model_call(model: &mut Model, op: Op, g: usize, start: u64, ipa: u64, pages: u64) -> Result<(), HypError> {
    if GUEST_CALLS.contains(&op) {
        return model_guest_call(model, op, g, ipa);
    }
    if pages == 0 || pages > MAX_PAGES_PER_CALL {
        return Err(HypError::InvalidArgument);
    }
    if !start.is_multiple_of(K4) {
        return Err(HypError::NotAligned);
    }
    let Some(end) = pages.checked_mul(K4).and_then(|size| start.checked_add(size)) else {
        return Err(HypError::OutOfRange);
    };
    if ![RAM0, RAM1].iter().any(|b| b.start <= start && end <= b.end) {
        return Err(HypError::OutOfRange);
    }
    let addresses: Vec<u64> = (start..end).step_by(K4 as usize).collect();
    let vm = Owner::Vm(g as VmId + 1);
    let get = |m: &Model, a: u64| m.records.get(&a).copied().unwrap_or(PageRecord::HOST);
    let wanted = |r: PageRecord| match op {
        Op::Share | Op::Donate | Op::DonateGuest | Op::ShareGuest => r == PageRecord::HOST,
        Op::Unshare => r.owner == Owner::Host && r.borrower == Some(Owner::Hyp),
        Op::Reclaim => r.owner == Owner::Hyp && r.donated && r.borrower.is_none(),
        Op::UnshareGuest => r.owner == Owner::Host && r.borrower == Some(vm),
        Op::ReclaimGuest | Op::PoisonGuest => r.owner == vm && matches!(r.borrower, None | Some(Owner::Host)),
        Op::GuestShareHost | Op::GuestUnshareHost | Op::GuestRelinquish => false,
    };
    if !addresses.iter().all(|&a| wanted(get(model, a))) {
        return Err(HypError::NotOwned);
    }
    if matches!(op, Op::DonateGuest | Op::ShareGuest | Op::UnshareGuest | Op::ReclaimGuest | Op::PoisonGuest) {
        if !ipa.is_multiple_of(K4) {
            return Err(HypError::NotAligned);
        }
        let ipa_end = pages.checked_mul(K4).and_then(|size| ipa.checked_add(size));
        if ipa_end.is_none_or(|e| e > 1 << GUEST_IPA_BITS) {
            return Err(HypError::OutOfRange);
        }
        let ipas: Vec<u64> = (0..pages).map(|i| ipa + i * K4).collect();
        let fresh = matches!(op, Op::DonateGuest | Op::ShareGuest);
        let (map, poisoned) = (&mut model.guests[g], &mut model.poisoned[g]);
        let acceptable = if fresh {
            ipas.iter().all(|i| !map.contains_key(i) && !poisoned.contains(i))
        } else {
            ipas.iter().zip(&addresses).all(|(i, a)| map.get(i) == Some(a))
        };
        if !acceptable {
            return Err(HypError::InvalidArgument);
        }
        for (i, &a) in ipas.into_iter().zip(&addresses) {
            if fresh {
                map.insert(i, a);
            } else {
                map.remove(&i);
            }
            if op == Op::PoisonGuest {
                poisoned.insert(i);
            }
        }
    }
    for a in addresses {
        let r = get(model, a);
        let new = match op {
            Op::Share => PageRecord { borrower: Some(Owner::Hyp), ..r },
            Op::Unshare | Op::UnshareGuest => PageRecord { borrower: None, ..r },
            Op::Donate => PageRecord { owner: Owner::Hyp, borrower: None, donated: true, in_use: false },
            Op::Reclaim | Op::ReclaimGuest | Op::PoisonGuest => PageRecord::HOST,
            Op::DonateGuest => PageRecord { owner: vm, ..PageRecord::HOST },
            Op::ShareGuest => PageRecord { borrower: Some(vm), ..r },
            Op::GuestShareHost | Op::GuestUnshareHost | Op::GuestRelinquish => r,
        };
        model.records.insert(a, new);
    }
    Ok(())
}

/// A successful share or donation: (op, guest, pa, ipa, pages).
type Recent = (Op, usize, u64, u64, u64);

fn interesting_start(rng: &mut Rng, recent: &[Recent]) -> u64 {
    let bases = [
        RAM0.start,
        RAM1.start,
        HYP_IMAGE.start,
        HYP_IMAGE.end,
        HYP_POOL.start,
        RAM0.start + 0x20_0000,
        RAM1.end,
        UART.start,
        0,
    ];
    let base = match rng.below(4) {
        0 => bases[rng.below(bases.len() as u64) as usize],
        1 if !recent.is_empty() => {
            let (_, _, start, _, pages) = recent[rng.below(recent.len() as u64) as usize];
            return start + rng.below(pages) * K4;
        }
        _ => RAM0.start + rng.below(16) * 0x10_0000,
    };
    let offset = match rng.below(8) {
        0 => 0x800,
        1 => 0u64.wrapping_sub(K4),
        _ => rng.below(32) * K4,
    };
    base.wrapping_add(offset)
}

/// Guest `g` goes away and a new one takes its place (poisoned IPAs last as
/// long as the guest's stage-2): every page it holds goes back (reclaimed or
/// unshared, as the model says), its stage-2 is destroyed and a fresh one made.
fn replace_guest(f: &mut Fixture, model: &mut Model, g: usize, context: &str) {
    let held: Vec<(u64, u64)> = model.guests[g].iter().map(|(&ipa, &pa)| (ipa, pa)).collect();
    for (ipa, pa) in held {
        let lent = model.records.get(&pa).is_some_and(|r| r.owner == Owner::Host);
        let op = if lent { Op::UnshareGuest } else { Op::ReclaimGuest };
        let expected = model_call(model, op, g, pa, ipa, 1);
        assert_eq!(expected, Ok(()), "{context}: replacing guest {g}, {op:?} of {ipa:#x}");
        assert_eq!(f.call_guest(op, g, pa, ipa, 1), expected, "{context}: replacing guest {g}, {op:?} of {ipa:#x}");
    }
    let level = crate::mm::host_stage2::root_level(GUEST_IPA_BITS);
    let fresh = PgTable::new(level, GUEST_IPA_BITS, Stage2, &mut f.source).unwrap();
    let old = core::mem::replace(&mut f.guests[g], fresh);
    old.destroy(&mut f.source, &mut f.guest_tlbs[g]);
    model.poisoned[g].clear();
    f.assert_clean();
}

/// Random transitions among the host, the hyp and two guests, against the model:
/// the same result, the same records and guest mappings, a clean checker, and no
/// change of anything at all when a call fails.
#[test]
fn random_transitions_agree_with_the_model() {
    let ops = crate::testing::ops_from_env("HYP_MEMORY_OPS", 50_000);
    let seed = crate::testing::seed_from_env();
    let mut rng = Rng::new(seed);
    let mut f = Fixture::new();
    let mut model = Model::default();
    for r in [HYP_IMAGE, HYP_POOL] {
        for a in (r.start..r.end).step_by(K4 as usize) {
            model.records.insert(a, PageRecord::HYP);
        }
    }
    let mut successes = [0usize; ALL_OPS.len()];
    let mut recent: Vec<Recent> = Vec::new();
    // The guests' recent successful shares with the host: (guest, IPA).
    let mut recent_shares: Vec<(usize, u64)> = Vec::new();
    for i in 0..ops {
        let which = rng.below(ALL_OPS.len() as u64) as usize;
        let op = ALL_OPS[which];
        let g = rng.below(2) as usize;
        let mut start = interesting_start(&mut rng, &recent);
        let mut ipa = match rng.below(8) {
            0 => 1 << GUEST_IPA_BITS,
            1 => rng.below(64) * K4 + 0x800,
            _ => rng.below(64) * 0x4_0000 + rng.below(4) * K4,
        };
        let mut pages = match rng.below(16) {
            0 => 0,
            1 => MAX_PAGES_PER_CALL + rng.below(3),
            2 => u64::MAX / K4,
            3 => MAX_PAGES_PER_CALL,
            _ => 1 + rng.below(8),
        };
        // Now and then a whole 2 MiB block at a 2 MiB IPA (a VM's memory in
        // huge pages): the tables' direct block paths.
        if rng.below(8) == 0 {
            start = RAM0.start + rng.below(32) * crate::range::SIZE_2M;
            ipa = rng.below(16) * crate::range::SIZE_2M;
            pages = MAX_PAGES_PER_CALL;
        }
        // Half the time, undo a recent share or donation exactly.
        let undoes = match op {
            Op::Unshare => Some(Op::Share),
            Op::Reclaim => Some(Op::Donate),
            Op::UnshareGuest => Some(Op::ShareGuest),
            Op::ReclaimGuest | Op::PoisonGuest => Some(Op::DonateGuest),
            _ => None,
        };
        let guest_op = matches!(op, Op::UnshareGuest | Op::ReclaimGuest | Op::PoisonGuest);
        // The guest's own calls: mostly at a page of one of its donations,
        // an unshare mostly at a page it shared.
        if GUEST_CALLS.contains(&op) && rng.below(4) != 0 {
            if let Some(&(_, _, _, guest_ipa, p)) = recent.iter().rev().find(|r| r.0 == Op::DonateGuest && r.1 == g) {
                ipa = guest_ipa + rng.below(p) * K4;
            }
            if let (Op::GuestUnshareHost, Some(&(_, shared))) =
                (op, recent_shares.iter().rev().find(|r| r.0 == g && rng.below(2) == 0))
            {
                ipa = shared;
            }
        }
        // (A guest's reclaims more often: its own calls take pages from its
        // donations, which then no longer come back whole.)
        let undo = if matches!(op, Op::ReclaimGuest | Op::PoisonGuest) { rng.below(4) != 0 } else { rng.below(2) == 0 };
        if let (Some(u), true) = (undoes, undo) {
            if let Some(&(_, _, s, guest_ipa, p)) = recent.iter().rev().find(|r| r.0 == u && (!guest_op || r.1 == g)) {
                (start, ipa, pages) = (s, guest_ipa, p);
            }
        }
        let context = format!("seed {seed} op {i}: {op:?} guest {g} pa {start:#x} ipa {ipa:#x} x{pages}");
        let window = PhysRange { start: start.saturating_sub(0x40_0000), end: start.saturating_add(0x80_0000) };
        let before = if i % 64 == 0 { f.snapshot() } else { f.snapshot_of(window) };
        let expected = model_call(&mut model, op, g, start, ipa, pages);
        let got = f.call_guest(op, g, start, ipa, pages);
        assert_eq!(got, expected, "{context}");
        successes[which] += usize::from(got.is_ok());
        if got.is_err() {
            let after = if i % 64 == 0 { f.snapshot() } else { f.snapshot_of(window) };
            assert!(after == before, "{context}: a failed call changed something");
        } else if let Some(u) = undoes {
            // Undone: not worth undoing again.
            recent.retain(|r| !(r.0 == u && r.2 == start && r.4 == pages && (!guest_op || (r.1 == g && r.3 == ipa))));
        }
        if got.is_ok() && matches!(op, Op::GuestUnshareHost | Op::GuestRelinquish) {
            recent_shares.retain(|&r| r != (g, ipa));
        }
        if got.is_ok() && op == Op::GuestShareHost {
            recent_shares.push((g, ipa));
            if recent_shares.len() > 8 {
                recent_shares.remove(0);
            }
        } else if got.is_ok() && matches!(op, Op::Share | Op::Donate | Op::ShareGuest | Op::DonateGuest) {
            recent.push((op, g, start, ipa, pages));
            if recent.len() > 32 {
                recent.remove(0);
            }
        }
        // The hyp's fuzzer checks what each call touched, and everything now
        // and then: the touched check must never see what is not there.
        f.assert_touched_clean();
        if i % 16 == 0 {
            f.assert_clean();
        }
        if i % 4096 == 4095 {
            replace_guest(&mut f, &mut model, i / 4096 % 2, &context);
        }
        if i % 512 == 0 {
            for (&a, &r) in &model.records {
                assert_eq!(f.state.pages.get(a), Some(r), "{context}: record of {a:#x}");
            }
            for (g, map) in model.guests.iter().enumerate() {
                let mut mapped = HashMap::new();
                f.guests[g].for_each_leaf(0, f.guests[g].limit(), |l| {
                    for off in (0..l.end - l.start).step_by(K4 as usize) {
                        mapped.insert((l.start + off) as u64, (l.pa + off) as u64);
                    }
                });
                assert_eq!(&mapped, map, "{context}: guest {g} stage-2");
            }
            for (g, poisoned) in model.poisoned.iter().enumerate() {
                for &ipa in poisoned {
                    let entry = f.guests[g].entry_at(ipa as usize);
                    assert_eq!(entry, Entry::Marked(GUEST_POISONED), "{context}: guest {g} IPA {ipa:#x}");
                }
            }
        }
    }
    f.assert_clean();
    eprintln!("successful calls per operation: {successes:?}");
    if ops >= 10_000 {
        assert!(successes.iter().all(|&n| n >= ops / 500), "too few successful calls to mean much: {successes:?}");
    }
}
