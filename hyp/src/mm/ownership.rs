//! Who owns every page of RAM: the single source of truth of the hyp's memory
//! protection. One 32-bit record per 4 KiB page of each RAM bank holds the owner
//! (host, hyp or a VM), the borrower it is shared with (if any), and whether a
//! hyp-owned page was donated by the host (and may go back to it).
//!
//! From one record both sides' states follow: the owner's page is *owned*, or
//! *shared-owned* while lent; the borrower's view is *shared-borrowed*. The page
//! tables (host stage-2, hyp stage-1, VM stage-2s) are derived from these records
//! by the transitions in `mm::memory`, and `mm::invariants` checks that they agree.

#![forbid(unsafe_code)]

use crate::range::{align_down, align_up, FixedVec, PhysRange, PAGE_SIZE, SIZE_2M};

/// A VM's slot number in the VM table.
pub type VmId = u16;

/// Who a page belongs to.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Owner {
    Host,
    Hyp,
    Vm(VmId),
}

/// A page as one party sees it.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum PageState {
    /// Owned and used only by its owner.
    Owned,
    /// Owned, and lent to a borrower.
    SharedOwned,
    /// Borrowed from its owner.
    SharedBorrowed,
}

/// The record of one page.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct PageRecord {
    pub owner: Owner,
    pub borrower: Option<Owner>,
    /// Hyp-owned page that the host donated (memcache), as opposed to the hyp's own.
    pub donated: bool,
    /// A donated page the hyp is using (not free to go back to the host).
    pub in_use: bool,
}

impl PageRecord {
    pub const HOST: PageRecord = PageRecord::owned_by(Owner::Host);
    pub const HYP: PageRecord = PageRecord::owned_by(Owner::Hyp);

    /// A page `owner` owns alone, neither lent nor donated.
    pub const fn owned_by(owner: Owner) -> PageRecord {
        PageRecord { owner, borrower: None, donated: false, in_use: false }
    }

    /// The state of this page for `who`, or `None` if `who` may not touch it.
    pub fn state_for(&self, who: Owner) -> Option<PageState> {
        if self.owner == who {
            Some(if self.borrower.is_some() { PageState::SharedOwned } else { PageState::Owned })
        } else if self.borrower == Some(who) {
            Some(PageState::SharedBorrowed)
        } else {
            None
        }
    }

    // Packed layout: bits 1:0 owner kind (0 host, 1 hyp, 2 VM), 2 donated,
    // 3 in_use, 5:4 borrower kind (0 none, 1 host, 2 hyp, 3 VM),
    // 15:8 unused, 31:16 VM id of the owner or borrower (only one may be a VM).
    const fn pack(&self) -> u32 {
        let (owner_kind, owner_vm) = match self.owner {
            Owner::Host => (0, 0),
            Owner::Hyp => (1, 0),
            Owner::Vm(id) => (2, id),
        };
        let (borrower_kind, borrower_vm) = match self.borrower {
            None => (0, 0),
            Some(Owner::Host) => (1, 0),
            Some(Owner::Hyp) => (2, 0),
            Some(Owner::Vm(id)) => (3, id),
        };
        owner_kind
            | (self.donated as u32) << 2
            | (self.in_use as u32) << 3
            | borrower_kind << 4
            | ((owner_vm | borrower_vm) as u32) << 16
    }

    fn unpack(bits: u32) -> PageRecord {
        let vm = (bits >> 16) as VmId;
        let owner = match bits & 3 {
            0 => Owner::Host,
            1 => Owner::Hyp,
            _ => Owner::Vm(vm),
        };
        let borrower = match (bits >> 4) & 3 {
            0 => None,
            1 => Some(Owner::Host),
            2 => Some(Owner::Hyp),
            _ => Some(Owner::Vm(vm)),
        };
        PageRecord { owner, borrower, donated: bits & 4 != 0, in_use: bits & 8 != 0 }
    }

    /// Whether the record can be stored: a VM may be owner or borrower, not both
    /// (there is one VM id field).
    fn is_representable(&self) -> bool {
        !matches!((self.owner, self.borrower), (Owner::Vm(_), Some(Owner::Vm(_))))
    }
}

/// Why a range of pages cannot be looked up.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum RangeError {
    /// Not page-aligned.
    NotAligned,
    /// Wraps, is empty, or is not inside one RAM bank.
    OutOfRange,
}

/// Most RAM banks with records.
pub const MAX_BANKS: usize = crate::platform::MAX_RAM_BANKS;

/// One RAM bank and the records of its pages.
struct Bank {
    range: PhysRange,
    records: &'static mut [u32],
}

/// Most separate ranges [`Touched`] remembers before it gives up and asks
/// for a check of everything.
pub const TOUCHED_RANGES: usize = 32;

/// What the transitions touched since the invariant checker last looked, so
/// that it can look only there (`invariants::check_touched`): physical ranges
/// (every range a transition was about to change, and every record that
/// changed), widened to whole 2 MiB blocks, where the leaves of a block split
/// lie, and the guests whose stage-2 a transition changed. Fixed size: when it
/// runs out of room it says "everything", and the next check is a full one.
#[derive(Clone, Copy, Debug)]
pub struct Touched {
    ranges: [PhysRange; TOUCHED_RANGES],
    len: usize,
    /// Bit `id` for guest `id` (ids of 128 and more set `all_guests`).
    guests: u128,
    all_guests: bool,
    everything: bool,
}

impl Default for Touched {
    fn default() -> Self {
        Touched {
            ranges: [PhysRange::default(); TOUCHED_RANGES],
            len: 0,
            guests: 0,
            all_guests: false,
            everything: false,
        }
    }
}

impl Touched {
    /// Nothing known: everything must be checked.
    pub fn everything() -> Touched {
        Touched { everything: true, ..Touched::default() }
    }

    /// Remembers `[start, end)` (any physical addresses; empty ranges are
    /// ignored), widened to 2 MiB blocks and merged with what it overlaps or
    /// adjoins.
    pub fn range(&mut self, start: u64, end: u64) {
        if self.everything || start >= end {
            return;
        }
        let mut new =
            PhysRange { start: align_down(start, SIZE_2M), end: align_up(end, SIZE_2M).unwrap_or(!(PAGE_SIZE - 1)) };
        let mut i = 0;
        while i < self.len {
            let old = self.ranges[i];
            if old.start <= new.end && new.start <= old.end {
                new = PhysRange { start: old.start.min(new.start), end: old.end.max(new.end) };
                self.len -= 1;
                self.ranges[i] = self.ranges[self.len];
                i = 0;
            } else {
                i += 1;
            }
        }
        if self.len == TOUCHED_RANGES {
            *self = Touched::everything();
            return;
        }
        self.ranges[self.len] = new;
        self.len += 1;
    }

    /// Remembers that guest `id`'s stage-2 changed.
    pub fn guest(&mut self, id: VmId) {
        match 1u128.checked_shl(u32::from(id)) {
            Some(bit) => self.guests |= bit,
            None => self.all_guests = true,
        }
    }

    /// The ranges, disjoint and 2 MiB-aligned (meaningless with [`Touched::is_everything`]).
    pub fn ranges(&self) -> &[PhysRange] {
        &self.ranges[..self.len]
    }

    /// Whether guest `id`'s stage-2 changed.
    pub fn has_guest(&self, id: VmId) -> bool {
        self.everything || self.all_guests || 1u128.checked_shl(u32::from(id)).is_some_and(|bit| self.guests & bit != 0)
    }

    /// Whether the log overflowed (or was never started): check everything.
    pub fn is_everything(&self) -> bool {
        self.everything
    }
}

/// The records of every page of RAM.
pub struct PageDb {
    banks: FixedVec<usize, MAX_BANKS>,
    storage: [Option<Bank>; MAX_BANKS],
    /// What changed since the checker last looked (every [`PageDb::update`]
    /// is noted here; transitions note what they are about to change).
    pub touched: Touched,
}

impl PageDb {
    /// Bytes of record storage `ram` needs.
    pub fn storage_bytes(ram: &[PhysRange]) -> usize {
        ram.iter().map(|b| (b.size() / PAGE_SIZE) as usize * 4).sum()
    }

    /// Records for `ram`, every page the host's, kept in `storage` (at least
    /// [`PageDb::storage_bytes`] long, in 4-byte words, and zeroed: a zero record
    /// is a host page, so boot can zero it the fastest way it has).
    ///
    /// # Errors
    ///
    /// [`RangeError::OutOfRange`] when `storage` is too small or a bank is not
    /// page-aligned.
    pub fn new(ram: &[PhysRange], storage: &'static mut [u32]) -> Result<PageDb, RangeError> {
        const _: () = assert!(PageRecord::HOST.pack() == 0);
        // Nothing has been checked yet: the first check looks at everything.
        let mut db =
            PageDb { banks: FixedVec::default(), storage: [const { None }; MAX_BANKS], touched: Touched::everything() };
        let mut rest = storage;
        for (i, bank) in ram.iter().enumerate().take(MAX_BANKS) {
            if bank.start % PAGE_SIZE != 0 || bank.end % PAGE_SIZE != 0 {
                return Err(RangeError::OutOfRange);
            }
            let pages = (bank.size() / PAGE_SIZE) as usize;
            if rest.len() < pages {
                return Err(RangeError::OutOfRange);
            }
            let (records, tail) = rest.split_at_mut(pages);
            // Zeroed by contract (checking costs a pass over every record at boot).
            debug_assert!(records.iter().all(|&r| r == 0));
            rest = tail;
            db.storage[i] = Some(Bank { range: *bank, records });
            db.banks.push(i);
        }
        Ok(db)
    }

    /// The RAM banks covered.
    pub fn banks(&self) -> impl Iterator<Item = PhysRange> + '_ {
        self.storage.iter().flatten().map(|b| b.range)
    }

    /// Checks that `[start, start + pages * 4K)` is page-aligned, non-empty, does
    /// not wrap and lies in one bank; returns the bank index and first record index.
    pub fn locate(&self, start: u64, pages: u64) -> Result<(usize, usize), RangeError> {
        if !start.is_multiple_of(PAGE_SIZE) {
            return Err(RangeError::NotAligned);
        }
        let size = pages.checked_mul(PAGE_SIZE).ok_or(RangeError::OutOfRange)?;
        let range = PhysRange::from_base_size(start, size).ok_or(RangeError::OutOfRange)?;
        if pages == 0 {
            return Err(RangeError::OutOfRange);
        }
        self.storage
            .iter()
            .enumerate()
            .find_map(|(i, bank)| {
                let bank = bank.as_ref()?;
                (bank.range.start <= range.start && range.end <= bank.range.end)
                    .then(|| (i, ((range.start - bank.range.start) / PAGE_SIZE) as usize))
            })
            .ok_or(RangeError::OutOfRange)
    }

    /// The record of the page at `address`, if RAM.
    #[cfg(test)]
    pub fn get(&self, address: u64) -> Option<PageRecord> {
        let (bank, index) = self.locate(address & !(PAGE_SIZE - 1), 1).ok()?;
        let bank = self.storage[bank].as_ref()?;
        bank.records.get(index).map(|&bits| PageRecord::unpack(bits))
    }

    /// The records of a located range (see [`PageDb::locate`]).
    fn records(&self, start: u64, pages: u64) -> Result<&[u32], RangeError> {
        let (bank, first) = self.locate(start, pages)?;
        let bank = self.storage[bank].as_ref().ok_or(RangeError::OutOfRange)?;
        Ok(&bank.records[first..first + pages as usize])
    }

    /// [`PageDb::records`], to write.
    fn records_mut(&mut self, start: u64, pages: u64) -> Result<&mut [u32], RangeError> {
        let (bank, first) = self.locate(start, pages)?;
        let bank = self.storage[bank].as_mut().ok_or(RangeError::OutOfRange)?;
        Ok(&mut bank.records[first..first + pages as usize])
    }

    /// Calls `f` with the record of each page of a located range; stops at the
    /// first `Err` and returns it.
    pub fn check<E>(
        &self,
        start: u64,
        pages: u64,
        mut f: impl FnMut(u64, PageRecord) -> Result<(), E>,
    ) -> Result<(), Result<E, RangeError>> {
        for (i, &bits) in self.records(start, pages).map_err(Err)?.iter().enumerate() {
            f(start + i as u64 * PAGE_SIZE, PageRecord::unpack(bits)).map_err(Ok)?;
        }
        Ok(())
    }

    /// Whether every page of a located range has exactly `record`: the
    /// packed records compared whole, without decoding them.
    ///
    /// # Errors
    ///
    /// As [`PageDb::locate`].
    pub fn all_are(&self, start: u64, pages: u64, record: PageRecord) -> Result<bool, RangeError> {
        let want = record.pack();
        let records = self.records(start, pages)?;
        // Two records a 64-bit word, eight a turn, no early exit: under three
        // instructions a page (a decoded check costs several times that).
        let pair = |pair: &[u32; 2]| u64::from(pair[0]) | u64::from(pair[1]) << 32;
        let want_pair = pair(&[want, want]);
        let (octets, rest) = records.as_chunks::<8>();
        let mut differ = rest.iter().fold(0, |differ, &bits| differ | u64::from(bits ^ want));
        for octet in octets {
            differ |= octet.as_chunks::<2>().0.iter().fold(0, |differ, word| differ | (pair(word) ^ want_pair));
        }
        Ok(differ == 0)
    }

    /// Sets the record of every page of a located range to `update(old)`.
    /// Callers check the range first; a range that does not locate changes nothing.
    ///
    /// # Errors
    ///
    /// As [`PageDb::locate`], or `OutOfRange` if an updated record cannot be
    /// represented (nothing is written then either).
    pub fn update(
        &mut self,
        start: u64,
        pages: u64,
        update: impl Fn(PageRecord) -> PageRecord,
    ) -> Result<(), RangeError> {
        let records = self.records_mut(start, pages)?;
        // The common case: a transition's pages all in one state (what one
        // call gave). The first page's new record is decided once and reused
        // for every page equal to it; the others are decided one by one. (An
        // update that ignores the old record compiles to a plain fill.)
        let Some(&head) = records.first() else {
            return Ok(());
        };
        let new_head = update(PageRecord::unpack(head));
        if !new_head.is_representable()
            || records.iter().any(|&bits| bits != head && !update(PageRecord::unpack(bits)).is_representable())
        {
            return Err(RangeError::OutOfRange);
        }
        let new_head = new_head.pack();
        for bits in records {
            *bits = if *bits == head { new_head } else { update(PageRecord::unpack(*bits)).pack() };
        }
        self.touched.range(start, start + pages * PAGE_SIZE);
        Ok(())
    }

    /// Sets the record of every page of a located range to `record`, whatever
    /// it was: [`PageDb::update`] for a transition that checked the range
    /// already, as a plain fill.
    ///
    /// # Errors
    ///
    /// As [`PageDb::locate`], or `OutOfRange` if `record` cannot be
    /// represented (nothing is written then either).
    pub fn set(&mut self, start: u64, pages: u64, record: PageRecord) -> Result<(), RangeError> {
        if !record.is_representable() {
            return Err(RangeError::OutOfRange);
        }
        let records = self.records_mut(start, pages)?;
        // Opaque to the optimiser, so that a fill of zeroes (a host record)
        // stays these 64-bit stores instead of a call of `memset`, which
        // stores 8 bytes a turn of three instructions.
        let bits = core::hint::black_box(record.pack());
        let (octets, rest) = records.as_chunks_mut::<8>();
        for octet in octets {
            *octet = [bits; 8];
        }
        rest.fill(bits);
        self.touched.range(start, start + pages * PAGE_SIZE);
        Ok(())
    }

    /// What changed since the last call (see [`Touched`]); starts a new log.
    pub fn take_touched(&mut self) -> Touched {
        core::mem::take(&mut self.touched)
    }

    /// Calls `f` for every run of equal records inside `range` (clipped to it), in
    /// address order; addresses of `range` outside RAM are skipped.
    pub fn for_each_run_in(&self, range: PhysRange, mut f: impl FnMut(PhysRange, PageRecord)) {
        for bank in self.storage.iter().flatten() {
            let start = range.start.max(bank.range.start);
            let end = range.end.min(bank.range.end);
            if start >= end {
                continue;
            }
            let first = ((start - bank.range.start) / PAGE_SIZE) as usize;
            let last = ((end - bank.range.start).div_ceil(PAGE_SIZE)) as usize;
            let records = &bank.records[first..last];
            let mut run_start = 0usize;
            for i in 1..=records.len() {
                if i == records.len() || records[i] != records[run_start] {
                    let run = PhysRange {
                        start: start.max(bank.range.start + (first + run_start) as u64 * PAGE_SIZE),
                        end: end.min(bank.range.start + (first + i) as u64 * PAGE_SIZE),
                    };
                    f(run, PageRecord::unpack(records[run_start]));
                    run_start = i;
                }
            }
        }
    }

    /// Calls `f` for every run of pages with equal records, in address order.
    pub fn for_each_run(&self, mut f: impl FnMut(PhysRange, PageRecord)) {
        for bank in self.banks() {
            self.for_each_run_in(bank, &mut f);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db(ram: &[PhysRange]) -> PageDb {
        let storage = vec![0u32; PageDb::storage_bytes(ram) / 4].leak();
        PageDb::new(ram, storage).unwrap()
    }

    #[test]
    fn touched_ranges_widen_to_2m_blocks_merge_and_overflow_to_everything() {
        let mut t = Touched::default();
        assert!(!t.is_everything() && t.ranges().is_empty());
        t.range(0x4020_1000, 0x4020_3000);
        assert_eq!(t.ranges(), &[PhysRange { start: 0x4020_0000, end: 0x4040_0000 }]);
        // Adjoining and overlapping ranges merge, also across several.
        t.range(0x4080_0000, 0x4080_1000);
        t.range(0x4040_0000, 0x4070_1000);
        assert_eq!(t.ranges(), &[PhysRange { start: 0x4020_0000, end: 0x40a0_0000 }]);
        t.range(0x5000, 0x5000);
        assert_eq!(t.ranges().len(), 1, "an empty range is nothing");
        t.guest(3);
        assert!(t.has_guest(3) && !t.has_guest(4));
        t.guest(200);
        assert!(t.has_guest(4), "a guest id past the bitmap makes every guest touched");
        for i in 0..TOUCHED_RANGES as u64 {
            t.range(0x1_0000_0000 + i * 0x40_0000, 0x1_0000_0000 + i * 0x40_0000 + 0x1000);
        }
        assert!(t.is_everything(), "out of room: everything");
        let mut db = db(&[PhysRange { start: 0, end: 0x40_0000 }]);
        assert!(db.take_touched().is_everything(), "nothing checked yet");
        assert!(db.take_touched().ranges().is_empty());
        db.update(0x1000, 1, |r| PageRecord { in_use: true, ..r }).unwrap();
        assert_eq!(db.take_touched().ranges(), &[PhysRange { start: 0, end: 0x20_0000 }], "every update is noted");
    }

    #[test]
    fn all_are_finds_one_different_record_anywhere() {
        let mut d = db(&[PhysRange { start: 0, end: 0x100_0000 }]);
        let vm = PageRecord { owner: Owner::Vm(9), borrower: None, donated: false, in_use: false };
        d.update(0x1000, 700, |_| vm).unwrap();
        assert_eq!(d.all_are(0x1000, 700, vm), Ok(true));
        assert_eq!(d.all_are(0, 700, vm), Ok(false), "the page before");
        assert_eq!(d.all_are(0x2000, 700, vm), Ok(false), "the page after");
        for page in [0, 1, 7, 8, 9, 350, 691, 699] {
            let at = 0x1000 + page * PAGE_SIZE;
            d.update(at, 1, |r| PageRecord { borrower: Some(Owner::Host), ..r }).unwrap();
            assert_eq!(d.all_are(0x1000, 700, vm), Ok(false), "page {page} differs");
            assert_eq!(d.all_are(at, 1, vm), Ok(false));
            d.update(at, 1, |_| vm).unwrap();
        }
        assert_eq!(d.all_are(0x1000, 700, vm), Ok(true));
        assert_eq!(d.all_are(0x1800, 1, vm), Err(RangeError::NotAligned));
        assert_eq!(d.all_are(0xff_f000, 2, vm), Err(RangeError::OutOfRange));
        assert_eq!(d.all_are(0x1000, 0, vm), Err(RangeError::OutOfRange));
    }

    #[test]
    fn set_fills_exactly_the_range() {
        let mut d = db(&[PhysRange { start: 0, end: 0x100_0000 }]);
        let vm = PageRecord { owner: Owner::Vm(3), borrower: None, donated: false, in_use: false };
        for (start, pages) in [(0x3000, 1), (0x5000, 8), (0x1_0000, 13), (0x2_0000, 700)] {
            d.set(start, pages, vm).unwrap();
            assert_eq!(d.all_are(start, pages, vm), Ok(true));
            assert_eq!(d.get(start - PAGE_SIZE).map(|r| r.owner), Some(Owner::Host), "the page before");
            assert_eq!(d.get(start + pages * PAGE_SIZE).map(|r| r.owner), Some(Owner::Host), "the page after");
            d.set(start, pages, PageRecord::HOST).unwrap();
            assert_eq!(d.all_are(0, 0x1000, PageRecord::HOST), Ok(true));
        }
        let unstorable =
            PageRecord { owner: Owner::Vm(1), borrower: Some(Owner::Vm(2)), donated: false, in_use: false };
        assert_eq!(d.set(0, 2, unstorable), Err(RangeError::OutOfRange));
        assert_eq!(d.set(0xff_f000, 2, vm), Err(RangeError::OutOfRange));
        assert_eq!(d.all_are(0, 0x1000, PageRecord::HOST), Ok(true), "refused: nothing written");
    }

    #[test]
    fn records_pack_and_unpack() {
        let all = [
            PageRecord::HOST,
            PageRecord::HYP,
            PageRecord { owner: Owner::Host, borrower: Some(Owner::Hyp), donated: false, in_use: false },
            PageRecord { owner: Owner::Hyp, borrower: None, donated: true, in_use: true },
            PageRecord { owner: Owner::Vm(7), borrower: Some(Owner::Host), donated: false, in_use: false },
            PageRecord { owner: Owner::Host, borrower: Some(Owner::Vm(65535)), donated: false, in_use: false },
        ];
        for r in all {
            assert_eq!(PageRecord::unpack(r.pack()), r);
        }
    }

    #[test]
    fn states_follow_from_one_record() {
        let shared = PageRecord { owner: Owner::Host, borrower: Some(Owner::Hyp), donated: false, in_use: false };
        assert_eq!(shared.state_for(Owner::Host), Some(PageState::SharedOwned));
        assert_eq!(shared.state_for(Owner::Hyp), Some(PageState::SharedBorrowed));
        assert_eq!(shared.state_for(Owner::Vm(0)), None);
        assert_eq!(PageRecord::HOST.state_for(Owner::Host), Some(PageState::Owned));
    }

    #[test]
    fn ranges_must_be_aligned_in_one_bank_and_not_wrap() {
        let d = db(&[
            PhysRange { start: 0x4000_0000, end: 0x4010_0000 },
            PhysRange { start: 0x8000_0000, end: 0x8000_4000 },
        ]);
        assert_eq!(d.locate(0x4000_0000, 1), Ok((0, 0)));
        assert_eq!(d.locate(0x8000_1000, 3), Ok((1, 1)));
        assert_eq!(d.locate(0x4000_0800, 1), Err(RangeError::NotAligned));
        assert_eq!(d.locate(0x8000_1000, 4), Err(RangeError::OutOfRange), "runs off the bank");
        assert_eq!(d.locate(0x900_0000, 1), Err(RangeError::OutOfRange), "device space");
        assert_eq!(d.locate(0x4000_0000, 0), Err(RangeError::OutOfRange));
        assert_eq!(d.locate(!0xfff, 2), Err(RangeError::OutOfRange), "wraps");
        assert_eq!(d.locate(0x4000_0000, u64::MAX), Err(RangeError::OutOfRange));
    }

    #[test]
    fn updates_apply_to_the_whole_range_or_not_at_all() {
        let mut d = db(&[PhysRange { start: 0, end: 0x10000 }]);
        d.update(0x1000, 2, |r| PageRecord { owner: Owner::Vm(3), ..r }).unwrap();
        assert_eq!(d.get(0x1000).map(|r| r.owner), Some(Owner::Vm(3)));
        assert_eq!(d.get(0x3000).map(|r| r.owner), Some(Owner::Host));
        // A VM owner lent to another VM cannot be stored: nothing changes.
        assert_eq!(d.update(0, 3, |r| PageRecord { borrower: Some(Owner::Vm(4)), ..r }), Err(RangeError::OutOfRange));
        assert_eq!(d.get(0).and_then(|r| r.borrower), None);
        let mut runs = Vec::new();
        d.for_each_run(|range, r| runs.push((range.start, range.end, r.owner)));
        assert_eq!(
            runs,
            vec![(0, 0x1000, Owner::Host), (0x1000, 0x3000, Owner::Vm(3)), (0x3000, 0x10000, Owner::Host)]
        );
    }
}
