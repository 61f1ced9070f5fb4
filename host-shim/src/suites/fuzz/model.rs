//! What the ABI says each hostile call must answer (`docs/abi.md`, the
//! errors of `hyp-abi`), computed from a model of everything this CPU's calls
//! did: each page of its own window of host memory (the host's, lent to the
//! hyp, donated to it, given to one of its VMs) and each of its VMs (handle,
//! type, state, vCPUs, the pages at each IPA, the poisoned IPAs).
//!
//! A protected VM's sharing guest (`guests/share.S`) shares its data page
//! with the host, shares and unshares it, or relinquishes it, then turns its
//! VM off: from that exit on the model knows the page as the VM's and
//! borrowed by the host, as the host's again, or as the VM's alone.
//!
//! Where the model knows the state the answer is exact. It does not know two
//! things, by design of the ABI: whether the hyp uses a donated page right now
//! (a reclaim answers `Ok` or `Busy`), and, when several CPUs fuzz at once,
//! the state of the pages of the shared window, which every CPU aims at: there
//! the answer must be one of the documented errors of the call or `Ok`, and a
//! call that could change another CPU's VMs or pages is not made at all.

use hyp_abi::{CheckScope, Exit, HostCall, HypError, MAX_PAGES_PER_CALL, MAX_VCPUS_PER_VM};

pub const PAGE: u64 = 4096;
/// Each CPU's window of host memory, and the shared one: 4 MiB.
pub const WINDOW_PAGES: u64 = 1024;
/// The window's pages the hostile calls aim at (ranges of up to 512 pages from
/// them stay inside the window).
pub const HOSTILE_PAGES: u64 = 16;
/// Pages donated at the start that the hostile calls may reclaim (what a
/// hostile call names as "the memcache"), right after the hostile pages.
pub const HOSTILE_MEMCACHE: u64 = HOSTILE_PAGES;
pub const HOSTILE_MEMCACHE_PAGES: u64 = 8;
/// Pages donated at the start that no hostile call reaches (beyond 16 + 512):
/// enough for every table and vCPU of this CPU's VMs, so that no call of any
/// CPU ever needs to answer `NoMemory`.
pub const CORE_MEMCACHE: u64 = 528;
pub const CORE_MEMCACHE_PAGES: u64 = SLOTS as u64 * PAGES_PER_VM;
/// The code page of each VM slot (its guest's entry), after those.
pub const CODE_PAGES: u64 = CORE_MEMCACHE + CORE_MEMCACHE_PAGES;
/// Live VMs per CPU.
pub const SLOTS: usize = 8;
/// Donated pages one VM may use at most: its stage-2 root and the tables for
/// IPAs 0.. and 0x8000_0000.. (6 with a level-0 root), its two vCPU contexts,
/// and a map's reserve while it runs (6 more, for a moment), rounded up.
pub const PAGES_PER_VM: u64 = 16;
/// The IPA of each VM's code.
pub use crate::guests::GUEST_ENTRY;
/// The IPA of the sharing guest's data page (the page after its code).
pub const SHARING_DATA: u64 = GUEST_ENTRY + PAGE;
/// Pages a guest memory call changed, remembered for the calls aimed at them.
const SHARING_PAGES: usize = 4;
/// Most IPA pages a VM can have mapped or poisoned here (0, 0x1000, and four
/// from `GUEST_ENTRY` on).
const MAX_MAPS: usize = 8;
/// VMs a hyp holds at most (the handles' slot numbers are 1..=64).
const HYP_VM_SLOTS: u64 = 64;
/// Guest IPA spaces are at least this large (so our IPAs are in range) and at
/// most 2^48 (so `1 << 48` is not).
const IPA_BITS_MIN: u32 = 36;
const IPA_BITS_MAX: u32 = 48;
/// The SPIs a VM has end here.
const INTID_LIMIT: u64 = hyp_abi::GUEST_SPI_LIMIT;

/// A set of acceptable outcomes of a call: `Ok` and any of the ABI's errors.
#[derive(Clone, Copy, Default, Eq, PartialEq)]
pub struct Answers(u16);

impl Answers {
    pub const OK: Answers = Answers(1);

    pub const fn err(error: HypError) -> Answers {
        Answers(1u16 << (-(error as i64)) as u32)
    }

    pub const fn or(self, other: Answers) -> Answers {
        Answers(self.0 | other.0)
    }

    pub fn or_err(self, error: HypError) -> Answers {
        self.or(Answers::err(error))
    }

    pub fn has_ok(self) -> bool {
        self.0 & 1 != 0
    }

    /// The same outcomes but `Ok`.
    pub fn without_ok(self) -> Answers {
        Answers(self.0 & !1)
    }

    /// Whether the status in x0 is one of these (0 for `Ok`; an unknown
    /// status never is).
    pub fn accepts(self, status: u64) -> bool {
        match status as i64 {
            0 => self.has_ok(),
            code => HypError::from_code(code).is_some_and(|e| self.0 & Answers::err(e).0 != 0),
        }
    }
}

impl core::fmt::Debug for Answers {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let mut list = f.debug_set();
        if self.has_ok() {
            list.entry(&"Ok");
        }
        for e in HypError::ALL.iter().filter(|&&e| self.0 & Answers::err(e).0 != 0) {
            list.entry(e);
        }
        list.finish()
    }
}

/// What an `Ok` must carry in x1..x3.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum OkCheck {
    Any,
    Exact([u64; 3]),
    /// A fresh handle: slot 1..=64, a generation, no VM of ours has it.
    Created,
    /// `VM_INFO` of a VM of another CPU: protected 0 or 1, 1..=8 vCPUs.
    ForeignInfo,
    /// A `VCPU_RUN` exit: with `pristine`, the guest's code running as set up
    /// (PSCI SYSTEM_OFF, or a physical interrupt); else any exit the ABI
    /// defines, a protected VM's fatal exit showing nothing, a CPU_ON of one
    /// of its `vcpus`.
    Exit {
        pristine: bool,
        protected: bool,
        vcpus: u64,
    },
    /// The vCPU an SPI went to: none (`u64::MAX`) or one of `vcpus`.
    SpiTarget {
        vcpus: u64,
    },
    /// The invariant checker's answer: no violations.
    NoViolations,
}

/// What a call must answer, or that it must not be made.
#[derive(Clone, Copy, Debug)]
pub struct Expect {
    pub answers: Answers,
    pub ok: OkCheck,
    /// The call could change what another CPU owns (its VMs, its pages):
    /// its answers there would no longer be known. Not made.
    pub skip: bool,
}

impl Expect {
    fn err(error: HypError) -> Expect {
        Expect { answers: Answers::err(error), ok: OkCheck::Any, skip: false }
    }

    fn ok(check: OkCheck) -> Expect {
        Expect { answers: Answers::OK, ok: check, skip: false }
    }

    fn skip() -> Expect {
        Expect { answers: Answers::default(), ok: OkCheck::Any, skip: true }
    }

    /// Whether x0..x3 are an acceptable answer.
    pub fn accepts(&self, regs: [u64; 4]) -> bool {
        if !self.answers.accepts(regs[0]) {
            return false;
        }
        if regs[0] != 0 {
            return true;
        }
        let [a, b, c] = [regs[1], regs[2], regs[3]];
        match self.ok {
            OkCheck::Any => true,
            OkCheck::Exact(values) => values == [a, b, c],
            OkCheck::Created => (1..=HYP_VM_SLOTS).contains(&(a & 0xffff_ffff)) && a >> 32 != 0,
            OkCheck::ForeignInfo => a <= 1 && (1..=MAX_VCPUS_PER_VM).contains(&b),
            OkCheck::Exit { pristine, protected, vcpus } => match Exit::decode([a, b, c]) {
                None => false,
                Some(Exit::SystemOff | Exit::Interrupted) => true,
                Some(_) if pristine => false,
                Some(Exit::Fatal { esr, address }) => !protected || (esr == 0 && address == 0),
                Some(Exit::CpuOn { vcpu }) => vcpu < vcpus,
                Some(Exit::Wake { targets }) => targets >> vcpus == 0,
                Some(_) => true,
            },
            OkCheck::SpiTarget { vcpus } => a == u64::MAX || a < vcpus,
            OkCheck::NoViolations => a == 0,
        }
    }
}

/// What `VM_SET_GIC` answers for a VM of `vcpus` vCPUs that has not run: its
/// distributor (64 KiB) at `distributor`, and at `second` GICv3's
/// redistributors (128 KiB a vCPU) or GICv2's CPU interface (8 KiB). The
/// hyp's IPA size lies between `IPA_BITS_MIN` and `IPA_BITS_MAX`, so an end
/// between the two may be either.
fn gic_layout_answers(v3: bool, vcpus: u64, distributor: u64, second: u64) -> Answers {
    let (second_size, second_alignment) = if v3 { (0x2_0000 * vcpus, 0x1_0000) } else { (0x2000, 0x1000) };
    if !distributor.is_multiple_of(0x1_0000) || !second.is_multiple_of(second_alignment) {
        return Answers::err(HypError::NotAligned);
    }
    let ends = [distributor.checked_add(0x1_0000), second.checked_add(second_size)];
    let mut maybe_out_of_range = false;
    for end in ends {
        match end {
            None => return Answers::err(HypError::OutOfRange),
            Some(end) if end > 1 << IPA_BITS_MAX => return Answers::err(HypError::OutOfRange),
            Some(end) if end > 1 << IPA_BITS_MIN => maybe_out_of_range = true,
            Some(_) => {}
        }
    }
    let overlap = distributor < second + second_size && second < distributor + 0x1_0000;
    let answers = if overlap { Answers::err(HypError::InvalidArgument) } else { Answers::OK };
    if maybe_out_of_range {
        answers.or_err(HypError::OutOfRange)
    } else {
        answers
    }
}

/// What the sharing guest does with its data page (its x0).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Sharing {
    /// MEM_SHARE: the page stays the VM's, the host borrows it.
    Share,
    /// MEM_SHARE then MEM_UNSHARE: the VM's alone again.
    ShareUnshare,
    /// MEM_RELINQUISH: the host's, zeroed; nothing at the IPA any more.
    Relinquish,
}

impl Sharing {
    pub const ALL: [Sharing; 3] = [Sharing::Share, Sharing::ShareUnshare, Sharing::Relinquish];

    /// The guest's x0 for it (`share.S`).
    pub fn arg(self) -> u64 {
        match self {
            Sharing::Share => 1,
            Sharing::ShareUnshare => 2,
            Sharing::Relinquish => 3,
        }
    }

    fn from_arg(x0: u64) -> Sharing {
        match x0 {
            2 => Sharing::ShareUnshare,
            3 => Sharing::Relinquish,
            _ => Sharing::Share,
        }
    }
}

/// Three-valued: a predicate over pages some of whose state is unknown.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
enum Tri {
    Yes,
    No,
    Maybe,
}

/// What a page of the own window is (a page given to one of our VMs is
/// described by that VM's mappings).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Page {
    Host,
    /// Lent to the hyp.
    Shared,
    /// Donated to the hyp (it may be using it).
    Donated,
    /// Given to one of this CPU's VMs (owned or lent: see its maps).
    InVm,
}

/// What a page is, as the model knows it.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
enum Kind {
    Host,
    Shared,
    Donated,
    /// The hyp's own (image, pool).
    Hyp,
    /// Owned by (a protected VM) or lent to (a non-protected VM) our VM in this slot.
    VmOwned(usize),
    VmLent(usize),
    /// Owned by our protected VM in this slot, which shares it with the host.
    HostBorrowed(usize),
}

#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum VmState {
    Alive,
    Crashed,
    TornDown,
}

#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Power {
    Off,
    OnPending,
    On,
}

#[derive(Clone, Copy, Debug)]
pub struct Vcpu {
    pub power: Power,
    pub started: bool,
    /// Set up by `VCPU_INIT` at the guest's code with x0 = 2 (and not
    /// touched since): it turns its VM off at every run.
    pub pristine: bool,
}

/// One of this CPU's VMs.
#[derive(Clone, Copy, Debug)]
pub struct Vm {
    pub handle: u64,
    pub protected: bool,
    pub vcpus: u64,
    pub state: VmState,
    pub vcpu: [Vcpu; 2],
    /// (IPA, PA) of each page it holds.
    maps: [(u64, u64); MAX_MAPS],
    nmaps: usize,
    /// IPAs the host took back while it was alive.
    poisoned: [u64; MAX_MAPS],
    npoisoned: usize,
    /// One of its vCPUs ran code other than the pristine path (its GIC's
    /// routing may be anything since).
    pub wild: bool,
    /// One of its vCPUs ran (its GIC can no longer move: `VM_SET_GIC` is `Busy`).
    pub ran: bool,
    /// Its code at `GUEST_ENTRY` is the sharing guest's (else the bench guest's).
    pub sharing_guest: bool,
    /// What the sharing guest, started and not yet off, does to its data page.
    program: Option<Sharing>,
    /// The page it shares with the host (its sharing guest's data page).
    pub host_borrowed: Option<u64>,
    /// Its GIC's distributor and second window as `VM_SET_GIC` placed them
    /// (`None`: where they are out of reset).
    gic_placed: Option<(u64, u64)>,
}

impl Vm {
    fn new(handle: u64, protected: bool, vcpus: u64) -> Vm {
        let off = Vcpu { power: Power::Off, started: false, pristine: false };
        Vm {
            handle,
            protected,
            vcpus,
            state: VmState::Alive,
            vcpu: [off; 2],
            maps: [(0, 0); MAX_MAPS],
            nmaps: 0,
            poisoned: [0; MAX_MAPS],
            npoisoned: 0,
            wild: false,
            ran: false,
            sharing_guest: false,
            program: None,
            host_borrowed: None,
            gic_placed: None,
        }
    }

    /// The IPA ranges its emulated GIC answers in (GICv3's on a platform
    /// without a GIC, as the hyp's).
    fn gic_windows(&self, v3: bool) -> [(u64, u64); 2] {
        let default_second = if v3 { hyp_abi::GUEST_GICV3_REDISTRIBUTORS } else { hyp_abi::GUEST_GICV2_CPU_INTERFACE };
        let (distributor, second) = self.gic_placed.unwrap_or((hyp_abi::GUEST_GIC_DISTRIBUTOR, default_second));
        let second_size = match (v3, self.gic_placed) {
            (true, None) => 0x2_0000 * hyp_abi::MAX_VCPUS_PER_VM,
            (true, Some(_)) => 0x2_0000 * self.vcpus,
            (false, _) => hyp_abi::GUEST_GICV2_CPU_INTERFACE_SIZE,
        };
        [(distributor, distributor + 0x1_0000), (second, second.saturating_add(second_size))]
    }

    /// Whether `[start, end)` meets its GIC windows.
    fn meets_gic(&self, v3: bool, start: u64, end: u64) -> bool {
        self.gic_windows(v3).iter().any(|&(s, e)| start < e && s < end)
    }

    pub fn maps(&self) -> &[(u64, u64)] {
        &self.maps[..self.nmaps]
    }

    /// The IPAs the host took back while it was alive.
    pub fn poisoned(&self) -> &[u64] {
        &self.poisoned[..self.npoisoned]
    }

    /// The page at `ipa`, if it holds one.
    pub fn pa_at(&self, ipa: u64) -> Option<u64> {
        self.maps().iter().find(|m| m.0 == ipa).map(|m| m.1)
    }

    fn holds(&self, pa: u64) -> bool {
        self.maps().iter().any(|m| m.1 == pa)
    }

    fn vacant(&self, ipa: u64) -> bool {
        self.pa_at(ipa).is_none() && !self.poisoned[..self.npoisoned].contains(&ipa)
    }

    fn unmap(&mut self, ipa: u64) {
        if let Some(i) = self.maps().iter().position(|m| m.0 == ipa) {
            if self.host_borrowed == Some(self.maps[i].1) {
                self.host_borrowed = None;
            }
            self.nmaps -= 1;
            self.maps[i] = self.maps[self.nmaps];
        }
    }

    /// Whether `ipa` is free to map and `pages` more pages fit the model.
    pub fn room_at(&self, ipa: u64, pages: usize) -> bool {
        self.vacant(ipa) && self.nmaps + pages <= MAX_MAPS
    }
}

/// What a handle names, as far as this CPU knows.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
enum Target {
    /// Our VM in this slot.
    Own(usize),
    /// Maybe a VM of another CPU.
    Foreign,
    /// No VM.
    Nothing,
}

/// Handles of our VMs that are gone, kept to be used as stale handles.
const STALE: usize = 16;

/// One CPU's model.
pub struct Model {
    /// Other CPUs fuzz at the same time.
    pub multi: bool,
    ram: (u64, u64),
    hyp: [(u64, u64); crate::harness::platform::MAX_HYP_REGIONS],
    hyp_count: usize,
    /// This CPU's window, and the span of all windows (the shared one included).
    pub window: u64,
    windows: (u64, u64),
    /// The shared window (several CPUs only).
    pub shared: Option<u64>,
    pages: [Page; WINDOW_PAGES as usize],
    pub vms: [Option<Vm>; SLOTS],
    stale: [u64; STALE],
    stale_next: usize,
    /// The hyp serves `VCPU_INJECT_IRQ` (a GIC) rather than `VCPU_SET_IRQ_LINE`.
    pub gic: bool,
    /// The guests' GIC is a GICv3 (else GICv2, if there is one).
    gic_v3: bool,
    /// FEATURES x1 and x2, as read at the start.
    pub features: [u64; 2],
    /// Pages a sharing guest's memory call changed (0: none yet).
    sharing_pages: [u64; SHARING_PAGES],
    sharing_next: usize,
}

impl Model {
    /// The model of a CPU whose window is at `window`; `windows` is the
    /// span of every CPU's window and the shared one (`shared`).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        multi: bool,
        platform: &crate::harness::platform::HostPlatform,
        window: u64,
        windows: (u64, u64),
        shared: Option<u64>,
        features: [u64; 2],
    ) -> Model {
        let mut hyp = [(0, 0); crate::harness::platform::MAX_HYP_REGIONS];
        for (slot, &region) in hyp.iter_mut().zip(platform.hyp_regions()) {
            *slot = region;
        }
        Model {
            multi,
            ram: (platform.ram_start, platform.ram_end),
            hyp,
            hyp_count: platform.hyp_regions().len(),
            window,
            windows,
            shared,
            pages: [Page::Host; WINDOW_PAGES as usize],
            vms: [None; SLOTS],
            stale: [0; STALE],
            stale_next: 0,
            gic: platform.gic.is_some(),
            gic_v3: matches!(platform.gic, Some(crate::harness::gic::GicConfig::V3 { .. })),
            features,
            sharing_pages: [0; SHARING_PAGES],
            sharing_next: 0,
        }
    }

    /// Page `index` of the own window.
    pub fn page(&self, index: u64) -> u64 {
        self.window + index * PAGE
    }

    pub fn page_state(&self, index: u64) -> Page {
        self.pages[index as usize]
    }

    /// A hostile page of the own window that is the host's, the first from
    /// `from` on (round the hostile pages), if any.
    pub fn host_page(&self, from: u64) -> Option<u64> {
        (0..HOSTILE_PAGES)
            .map(|i| (from + i) % HOSTILE_PAGES)
            .find(|&i| self.pages[i as usize] == Page::Host)
            .map(|i| self.page(i))
    }

    /// A page a sharing guest's memory call changed, if any (whatever it is now).
    pub fn sharing_page(&self, pick: u64) -> Option<u64> {
        let known = self.sharing_next.min(SHARING_PAGES);
        (known > 0).then(|| self.sharing_pages[pick as usize % known])
    }

    /// Our VM in `slot` has the sharing guest's code at `GUEST_ENTRY`.
    pub fn loaded_sharing_guest(&mut self, slot: usize) {
        if let Some(vm) = self.vms[slot].as_mut() {
            vm.sharing_guest = true;
        }
    }

    /// The slot of our VM that holds `pa`, and the IPA it holds it at.
    pub fn holder_of(&self, pa: u64) -> Option<(usize, u64)> {
        let slot = self.holder(pa)?;
        let ipa = self.vms[slot]?.maps().iter().find(|m| m.1 == pa)?.0;
        Some((slot, ipa))
    }

    /// Our VM with this handle.
    pub fn vm(&self, handle: u64) -> Option<&Vm> {
        self.vms.iter().flatten().find(|v| v.handle == handle)
    }

    /// A stale handle (of a VM of ours that is gone), if any.
    pub fn stale_handle(&self, pick: u64) -> u64 {
        self.stale[pick as usize % STALE]
    }

    pub fn stale_handles(&self) -> &[u64] {
        &self.stale
    }

    /// Whether `pa` is in the own window (which no other CPU touches).
    pub fn is_own(&self, pa: u64) -> bool {
        self.own_index(pa).is_some()
    }

    fn own_index(&self, pa: u64) -> Option<u64> {
        (self.window <= pa && pa < self.window + WINDOW_PAGES * PAGE).then(|| (pa - self.window) / PAGE)
    }

    fn in_windows(&self, pa: u64) -> bool {
        self.windows.0 <= pa && pa < self.windows.1
    }

    /// In another CPU's window (not ours, not the shared one).
    fn foreign_private(&self, pa: u64) -> bool {
        self.in_windows(pa)
            && self.own_index(pa).is_none()
            && !self.shared.is_some_and(|s| s <= pa && pa < s + WINDOW_PAGES * PAGE)
    }

    /// The VM of ours that holds `pa`, if any.
    fn holder(&self, pa: u64) -> Option<usize> {
        self.vms.iter().position(|v| v.is_some_and(|v| v.holds(pa)))
    }

    /// What the page at `pa` (page-aligned, RAM) is; `None` when unknown.
    fn kind(&self, pa: u64) -> Option<Kind> {
        let vm_kind = |slot: usize| {
            if self.vms[slot].is_some_and(|v| v.host_borrowed == Some(pa)) {
                Kind::HostBorrowed(slot)
            } else if self.vms[slot].is_some_and(|v| v.protected) {
                Kind::VmOwned(slot)
            } else {
                Kind::VmLent(slot)
            }
        };
        if let Some(i) = self.own_index(pa) {
            return Some(match self.pages[i as usize] {
                Page::Host => Kind::Host,
                Page::Shared => Kind::Shared,
                Page::Donated => Kind::Donated,
                Page::InVm => vm_kind(self.holder(pa)?),
            });
        }
        if self.in_windows(pa) {
            return self.holder(pa).map(vm_kind);
        }
        if self.hyp[..self.hyp_count].iter().any(|&(base, size)| base <= pa && pa < base + size) {
            return Some(Kind::Hyp);
        }
        // The rest of RAM is the shim's own, which it lends to nobody here.
        Some(Kind::Host)
    }

    /// The argument checks every memory call makes first, in the hyp's
    /// order: count, alignment, a range inside RAM that does not wrap.
    fn shape(&self, start: u64, pages: u64) -> Result<(), HypError> {
        if pages == 0 || pages > MAX_PAGES_PER_CALL {
            return Err(HypError::InvalidArgument);
        }
        if !start.is_multiple_of(PAGE) {
            return Err(HypError::NotAligned);
        }
        match start.checked_add(pages * PAGE) {
            Some(end) if self.ram.0 <= start && end <= self.ram.1 => Ok(()),
            _ => Err(HypError::OutOfRange),
        }
    }

    /// Whether every page of a (shaped) range satisfies `wanted`.
    fn all(&self, start: u64, pages: u64, wanted: impl Fn(Kind) -> bool) -> Tri {
        let mut result = Tri::Yes;
        for pa in (start..start + pages * PAGE).step_by(PAGE as usize) {
            match self.kind(pa) {
                Some(kind) if !wanted(kind) => return Tri::No,
                Some(_) => {}
                None => result = Tri::Maybe,
            }
        }
        result
    }

    /// Whether a range reaches another CPU's own pages.
    fn reaches_foreign(&self, start: u64, pages: u64) -> bool {
        let end = start.saturating_add(pages.saturating_mul(PAGE));
        self.foreign_private(start) || self.foreign_private(end - 1)
    }

    /// A host memory call's answers: `NotOwned` unless `wanted` holds for
    /// every page, then `then`.
    fn memory_call(&self, start: u64, pages: u64, wanted: impl Fn(Kind) -> bool, then: Answers) -> Expect {
        if let Err(error) = self.shape(start, pages) {
            return Expect::err(error);
        }
        let answers = match self.all(start, pages, wanted) {
            Tri::Yes => then,
            Tri::No => Answers::err(HypError::NotOwned),
            Tri::Maybe => then.or_err(HypError::NotOwned),
        };
        let skip = answers.has_ok() && self.reaches_foreign(start, pages);
        Expect { answers, ok: OkCheck::Any, skip }
    }

    fn target(&self, handle: u64) -> Target {
        if let Some(slot) = self.vms.iter().position(|v| v.is_some_and(|v| v.handle == handle)) {
            return Target::Own(slot);
        }
        let index = handle & 0xffff_ffff;
        let ours = self.vms.iter().flatten().any(|v| v.handle & 0xffff_ffff == index);
        if !self.multi
            || ours
            || self.stale.contains(&handle)
            || index == 0
            || index > HYP_VM_SLOTS
            || handle >> 32 == 0
        {
            Target::Nothing
        } else {
            Target::Foreign
        }
    }

    /// Our VM behind `handle`, or the expectation for a handle that is not.
    fn own(&self, handle: u64) -> Result<usize, Expect> {
        match self.target(handle) {
            Target::Own(slot) => Ok(slot),
            Target::Foreign => Err(Expect::skip()),
            Target::Nothing => Err(Expect::err(HypError::NoSuchVm)),
        }
    }

    /// VM `handle`, one of this CPU's, alive, with a vCPU `vcpu`; else what a
    /// call about that vCPU must answer.
    fn live_vcpu(&self, handle: u64, vcpu: u64) -> Result<Vm, Expect> {
        let vm = self.vms[self.own(handle)?].expect("own");
        if vm.state != VmState::Alive {
            Err(Expect::err(HypError::NoSuchVm))
        } else if vcpu >= vm.vcpus {
            Err(Expect::err(HypError::NoSuchVcpu))
        } else {
            Ok(vm)
        }
    }

    /// What `call` with x1..x6 = `args` must answer.
    pub fn expect(&self, call: HostCall, args: [u64; 6]) -> Expect {
        let [a1, a2, a3, a4, _, _] = args;
        let host = |kind: Kind| kind == Kind::Host;
        match call {
            HostCall::Version => {
                Expect::ok(OkCheck::Exact([hyp_abi::ABI_VERSION_MAJOR, hyp_abi::ABI_VERSION_MINOR, 0]))
            }
            HostCall::Features => Expect::ok(OkCheck::Exact([self.features[0], self.features[1], 0])),
            HostCall::ShareHyp => self.memory_call(a1, a2, host, Answers::OK),
            HostCall::UnshareHyp => self.memory_call(a1, a2, |k| k == Kind::Shared, Answers::OK),
            HostCall::DonateHyp => self.memory_call(a1, a2, host, Answers::OK),
            HostCall::ReclaimHyp => {
                // The hyp may be using a donated page: the host cannot know.
                self.memory_call(a1, a2, |k| k == Kind::Donated, Answers::OK.or_err(HypError::Busy))
            }
            HostCall::VmCreate => {
                if hyp_abi::VmType::from_raw(a1).is_none() || a2 == 0 || a2 > MAX_VCPUS_PER_VM {
                    Expect::err(HypError::InvalidArgument)
                } else {
                    Expect::ok(OkCheck::Created)
                }
            }
            HostCall::VmMap => self.expect_map(a1, a2, a3, a4),
            HostCall::VcpuInit => match self.live_vcpu(a1, a2) {
                Err(e) => e,
                Ok(vm) if vm.protected && (a2 != 0 || vm.vcpu[0].started) => Expect::err(HypError::PermissionDenied),
                Ok(_) => Expect::ok(OkCheck::Any),
            },
            // Unknown run flags are refused at decode, before the handle.
            HostCall::VcpuRun if hyp_abi::RunFlags::from_raw(a4).is_none() => Expect::err(HypError::InvalidArgument),
            HostCall::VcpuRun => match self.live_vcpu(a1, a2) {
                Err(e) => e,
                Ok(vm) if vm.vcpu[a2 as usize].power == Power::Off => Expect::err(HypError::VcpuOff),
                Ok(vm) => {
                    let pristine = vm.vcpu[a2 as usize].pristine;
                    Expect::ok(OkCheck::Exit { pristine, protected: vm.protected, vcpus: vm.vcpus })
                }
            },
            HostCall::VcpuGetReg | HostCall::VcpuSetReg => match self.target(a1) {
                Target::Nothing => Expect::err(HypError::NoSuchVm),
                Target::Foreign if call == HostCall::VcpuSetReg => Expect::skip(),
                Target::Foreign => {
                    let mut answers = Answers::err(HypError::NoSuchVm).or_err(HypError::NoSuchVcpu);
                    if a2 < MAX_VCPUS_PER_VM {
                        answers = if hyp_abi::VcpuReg::from_raw(a3).is_none() {
                            answers.or_err(HypError::InvalidArgument)
                        } else {
                            answers.or_err(HypError::PermissionDenied).or_err(HypError::Busy).or(Answers::OK)
                        };
                    }
                    Expect { answers, ok: OkCheck::Any, skip: false }
                }
                Target::Own(slot) => {
                    let vm = self.vms[slot].expect("own");
                    if a2 >= vm.vcpus {
                        Expect::err(HypError::NoSuchVcpu)
                    } else if hyp_abi::VcpuReg::from_raw(a3).is_none() {
                        Expect::err(HypError::InvalidArgument)
                    } else if vm.protected {
                        // Its virtual count is the host's to read, and to set
                        // before the VM first ran.
                        let count = a3 == hyp_abi::VcpuReg::TimerCount.raw();
                        let set = call == HostCall::VcpuSetReg;
                        if count && !(set && vm.ran) {
                            Expect::ok(OkCheck::Any)
                        } else {
                            Expect::err(HypError::PermissionDenied)
                        }
                    } else {
                        Expect::ok(OkCheck::Any)
                    }
                }
            },
            HostCall::VmInfo => match self.target(a1) {
                Target::Nothing => Expect::err(HypError::NoSuchVm),
                Target::Foreign => {
                    Expect { answers: Answers::OK.or_err(HypError::NoSuchVm), ok: OkCheck::ForeignInfo, skip: false }
                }
                Target::Own(slot) => {
                    let vm = self.vms[slot].expect("own");
                    Expect::ok(OkCheck::Exact([u64::from(vm.protected), vm.vcpus, vm.nmaps as u64]))
                }
            },
            HostCall::VmTeardown => match self.own(a1) {
                Err(e) => e,
                Ok(slot) if self.vms[slot].expect("own").state == VmState::TornDown => Expect::err(HypError::NoSuchVm),
                Ok(_) => Expect::ok(OkCheck::Any),
            },
            HostCall::VmReclaim => self.expect_reclaim(a1, a2, a3),
            HostCall::VcpuInjectIrq if !self.gic => Expect::err(HypError::NotSupported),
            HostCall::VcpuSetIrqLine if self.gic => Expect::err(HypError::NotSupported),
            HostCall::VcpuInjectIrq | HostCall::VcpuSetIrqLine => match self.live_vcpu(a1, a2) {
                Err(e) => e,
                Ok(vm) => {
                    if call == HostCall::VcpuSetIrqLine {
                        if a3 > 1 {
                            Expect::err(HypError::InvalidArgument)
                        } else {
                            Expect::ok(OkCheck::Any)
                        }
                    } else if a3 >= INTID_LIMIT {
                        Expect::err(HypError::InvalidArgument)
                    } else if a3 < 32 {
                        Expect::ok(OkCheck::Exact([a2, 0, 0]))
                    } else if vm.wild {
                        Expect::ok(OkCheck::SpiTarget { vcpus: vm.vcpus })
                    } else {
                        // Out of reset every SPI targets vCPU 0.
                        Expect::ok(OkCheck::Exact([0, 0, 0]))
                    }
                }
            },
            HostCall::VmSetGic | HostCall::VmSetSpiLevel if !self.gic => Expect::err(HypError::NotSupported),
            HostCall::VmSetGic => match self.own(a1) {
                Err(e) => e,
                Ok(slot) => {
                    let vm = self.vms[slot].expect("own");
                    if vm.state != VmState::Alive {
                        Expect::err(HypError::NoSuchVm)
                    } else if vm.ran {
                        Expect::err(HypError::Busy)
                    } else {
                        let mut answers = gic_layout_answers(self.gic_v3, vm.vcpus, a2, a3);
                        // Not over IPAs the host took back from the VM.
                        let placed = Vm { gic_placed: Some((a2, a3)), ..vm };
                        if answers.has_ok()
                            && vm.poisoned().iter().any(|&ipa| placed.meets_gic(self.gic_v3, ipa, ipa + PAGE))
                        {
                            answers = answers.without_ok().or_err(HypError::InvalidArgument);
                        }
                        Expect { answers, ok: OkCheck::Any, skip: false }
                    }
                }
            },
            HostCall::VmSetSpiLevel => match self.live_vcpu(a1, a2) {
                Err(e) => e,
                Ok(_) if a4 > 1 || !(32..INTID_LIMIT).contains(&a3) => Expect::err(HypError::InvalidArgument),
                Ok(vm) if vm.wild => Expect::ok(OkCheck::SpiTarget { vcpus: vm.vcpus }),
                // Out of reset every SPI targets vCPU 0.
                Ok(_) => Expect::ok(OkCheck::Exact([0, 0, 0])),
            },
            HostCall::DebugCheckInvariants => match CheckScope::from_raw(a1) {
                None => Expect::err(HypError::InvalidArgument),
                Some(_) => Expect::ok(OkCheck::NoViolations),
            },
            HostCall::DebugExchange => {
                if !a1.is_multiple_of(8) {
                    Expect::err(HypError::NotAligned)
                } else {
                    let mut e = self.memory_call(a1 & !(PAGE - 1), 1, |k| k == Kind::Shared, Answers::OK);
                    // It writes a word of a page lent to the hyp: no state changes.
                    e.skip = false;
                    e
                }
            }
        }
    }

    fn expect_map(&self, handle: u64, pa: u64, ipa: u64, pages: u64) -> Expect {
        let slot = match self.own(handle) {
            Ok(slot) => slot,
            Err(e) => return e,
        };
        let vm = self.vms[slot].expect("own");
        if vm.state != VmState::Alive {
            return Expect::err(HypError::NoSuchVm);
        }
        if let Err(error) = self.shape(pa, pages) {
            return Expect::err(error);
        }
        let owned = self.all(pa, pages, |k| k == Kind::Host);
        // Then the IPA range, which does not depend on the pages.
        let then = if !ipa.is_multiple_of(PAGE) {
            Answers::err(HypError::NotAligned)
        } else {
            match ipa.checked_add(pages * PAGE) {
                None => Answers::err(HypError::OutOfRange),
                Some(end) if end > 1 << IPA_BITS_MAX => Answers::err(HypError::OutOfRange),
                Some(end) if end > 1 << IPA_BITS_MIN => Answers::OK.or_err(HypError::OutOfRange),
                Some(_) if (0..pages).any(|i| !vm.vacant(ipa + i * PAGE)) => Answers::err(HypError::InvalidArgument),
                Some(_) => Answers::OK,
            }
        };
        let answers = match owned {
            Tri::Yes => then,
            Tri::No => Answers::err(HypError::NotOwned),
            Tri::Maybe => then.or_err(HypError::NotOwned),
        };
        // A success the model could not hold (more pages than a VM here has).
        let too_many = vm.nmaps + pages as usize > MAX_MAPS;
        let skip = answers.has_ok() && (self.reaches_foreign(pa, pages) || too_many);
        Expect { answers, ok: OkCheck::Any, skip }
    }

    fn expect_reclaim(&self, handle: u64, ipa: u64, pages: u64) -> Expect {
        let slot = match self.own(handle) {
            Ok(slot) => slot,
            Err(e) => return e,
        };
        let vm = self.vms[slot].expect("own");
        let live = vm.state != VmState::TornDown;
        if live && !vm.protected {
            return Expect::err(HypError::Busy);
        }
        if pages == 0 || pages > MAX_PAGES_PER_CALL {
            return Expect::err(HypError::InvalidArgument);
        }
        if !ipa.is_multiple_of(PAGE) {
            return Expect::err(HypError::NotAligned);
        }
        match ipa.checked_add(pages * PAGE) {
            None => return Expect::err(HypError::OutOfRange),
            Some(end) if end > 1 << IPA_BITS_MAX => return Expect::err(HypError::OutOfRange),
            Some(end) if end > 1 << IPA_BITS_MIN => return Expect::skip(),
            Some(_) => {}
        }
        // A live VM keeps what lies in its GIC windows (a poisoned IPA there
        // would be the emulated GIC's).
        if live && vm.meets_gic(self.gic_v3 || !self.gic, ipa, ipa + pages * PAGE) {
            return Expect::err(HypError::Busy);
        }
        let Some(pa) = vm.pa_at(ipa) else {
            return Expect::err(HypError::InvalidArgument);
        };
        if let Err(error) = self.shape(pa, pages) {
            return Expect::err(error);
        }
        // Ownership by our VM is known for every page, wherever it is.
        if !vm.protected || (0..pages).any(|i| !vm.holds(pa + i * PAGE)) {
            return Expect::err(HypError::NotOwned);
        }
        if (0..pages).any(|i| vm.pa_at(ipa + i * PAGE) != Some(pa + i * PAGE)) {
            return Expect::err(HypError::InvalidArgument);
        }
        Expect::ok(OkCheck::Any)
    }

    /// Sets the state of the own window's pages of a range.
    fn set_range(&mut self, start: u64, pages: u64, from: Page, to: Page) {
        for pa in (start..start + pages * PAGE).step_by(PAGE as usize) {
            if let Some(i) = self.own_index(pa) {
                if self.pages[i as usize] == from {
                    self.pages[i as usize] = to;
                }
            }
        }
    }

    /// Forgets a VM that is gone (its handle joins the stale ones).
    fn free(&mut self, slot: usize) {
        if let Some(vm) = self.vms[slot].take() {
            self.stale[self.stale_next % STALE] = vm.handle;
            self.stale_next += 1;
        }
    }

    /// Takes `pa` back from a VM into the own window's records.
    fn give_back(&mut self, pa: u64) {
        if let Some(i) = self.own_index(pa) {
            self.pages[i as usize] = Page::Host;
        }
    }

    /// A new VM of ours in `slot`.
    pub fn created(&mut self, slot: usize, handle: u64, protected: bool, vcpus: u64) {
        self.vms[slot] = Some(Vm::new(handle, protected, vcpus));
    }

    /// Follows what an accepted answer `regs` to `call` with `args` did.
    pub fn apply(&mut self, call: HostCall, args: [u64; 6], regs: [u64; 4]) {
        if regs[0] != 0 {
            return;
        }
        let [a1, a2, a3, a4, _, _] = args;
        match call {
            HostCall::ShareHyp => self.set_range(a1, a2, Page::Host, Page::Shared),
            HostCall::UnshareHyp => self.set_range(a1, a2, Page::Shared, Page::Host),
            HostCall::DonateHyp => self.set_range(a1, a2, Page::Host, Page::Donated),
            HostCall::ReclaimHyp => self.set_range(a1, a2, Page::Donated, Page::Host),
            HostCall::VmMap => {
                if let Target::Own(slot) = self.target(a1) {
                    self.set_range(a2, a4, Page::Host, Page::InVm);
                    if let Some(vm) = self.vms[slot].as_mut() {
                        for i in 0..a4 {
                            vm.maps[vm.nmaps] = (a3 + i * PAGE, a2 + i * PAGE);
                            vm.nmaps += 1;
                        }
                    }
                }
            }
            HostCall::VcpuInit => {
                if let Target::Own(slot) = self.target(a1) {
                    if let Some(vm) = self.vms[slot].as_mut() {
                        // The bench guest with x0 = 2, or the sharing guest.
                        let at_entry = vm.pa_at(GUEST_ENTRY).is_some() && a2 == 0 && a3 == GUEST_ENTRY;
                        let set_up = at_entry && (a4 == 2 || vm.sharing_guest);
                        vm.vcpu[a2 as usize] = Vcpu { power: Power::OnPending, started: true, pristine: set_up };
                        // (A non-protected VM's memory calls change nothing.)
                        vm.program = (at_entry && vm.sharing_guest && vm.protected).then(|| Sharing::from_arg(a4));
                    }
                }
            }
            HostCall::VcpuRun => {
                if let Target::Own(slot) = self.target(a1) {
                    let mut done = None;
                    if let Some(vm) = self.vms[slot].as_mut() {
                        vm.ran = true;
                        let vcpu = &mut vm.vcpu[a2 as usize];
                        vcpu.power = Power::On;
                        if !vcpu.pristine {
                            vm.wild = true;
                        }
                        let exit = Exit::decode([regs[1], regs[2], regs[3]]);
                        // The sharing guest turns its VM off once its call is made.
                        if exit == Some(Exit::SystemOff) {
                            done = vm.program.take();
                        }
                        match exit {
                            Some(Exit::Fatal { .. }) => vm.state = VmState::Crashed,
                            Some(Exit::CpuOff) => {
                                vm.vcpu[a2 as usize] = Vcpu { power: Power::Off, started: true, pristine: false };
                            }
                            Some(Exit::CpuOn { vcpu }) => {
                                vm.vcpu[vcpu as usize] =
                                    Vcpu { power: Power::OnPending, started: true, pristine: false };
                            }
                            _ => {}
                        }
                    }
                    if let Some(sharing) = done {
                        self.shared_by_guest(slot, sharing);
                    }
                }
            }
            HostCall::VcpuSetReg => {
                if let Target::Own(slot) = self.target(a1) {
                    if let Some(vm) = self.vms[slot].as_mut() {
                        vm.vcpu[a2 as usize].pristine = false;
                    }
                }
            }
            HostCall::VmTeardown => {
                if let Target::Own(slot) = self.target(a1) {
                    let Some(vm) = self.vms[slot].as_mut() else {
                        return;
                    };
                    vm.state = VmState::TornDown;
                    if !vm.protected {
                        // Its borrowed pages went back to the host at once.
                        let maps = vm.maps;
                        let n = vm.nmaps;
                        vm.nmaps = 0;
                        for &(_, pa) in &maps[..n] {
                            self.give_back(pa);
                        }
                    }
                    if self.vms[slot].is_some_and(|v| v.nmaps == 0) {
                        self.free(slot);
                    }
                }
            }
            HostCall::VmSetGic => {
                if let Target::Own(slot) = self.target(a1) {
                    if let Some(vm) = self.vms[slot].as_mut() {
                        vm.gic_placed = Some((a2, a3));
                    }
                }
            }
            HostCall::VmReclaim => {
                if let Target::Own(slot) = self.target(a1) {
                    let Some(vm) = self.vms[slot].as_mut() else {
                        return;
                    };
                    let live = vm.state != VmState::TornDown;
                    let mut back = [0u64; MAX_MAPS];
                    for i in 0..a3 {
                        let ipa = a2 + i * PAGE;
                        back[i as usize] = vm.pa_at(ipa).unwrap_or(0);
                        vm.unmap(ipa);
                        if live {
                            vm.poisoned[vm.npoisoned] = ipa;
                            vm.npoisoned += 1;
                        }
                    }
                    let gone = !live && vm.nmaps == 0;
                    for &pa in &back[..a3 as usize] {
                        self.give_back(pa);
                    }
                    if gone {
                        self.free(slot);
                    }
                }
            }
            _ => {}
        }
    }

    /// What the sharing guest of our protected VM in `slot` did to its data
    /// page (if it has one there: else its call failed, and nothing changed).
    fn shared_by_guest(&mut self, slot: usize, sharing: Sharing) {
        let Some(vm) = self.vms[slot].as_mut() else {
            return;
        };
        let Some(pa) = vm.pa_at(SHARING_DATA) else {
            return;
        };
        match sharing {
            Sharing::Share => vm.host_borrowed = Some(pa),
            Sharing::ShareUnshare => vm.host_borrowed = None,
            Sharing::Relinquish => {
                // Nothing at the IPA now (not poisoned: it may be given a page again).
                vm.unmap(SHARING_DATA);
                self.give_back(pa);
            }
        }
        self.sharing_pages[self.sharing_next % SHARING_PAGES] = pa;
        self.sharing_next += 1;
    }

    /// Whether the host's read of `pa` must be refused: a page our protected
    /// VM owns alone or the hyp holds (donated, its own); `None` if unknown.
    pub fn read_refused(&self, pa: u64) -> Option<bool> {
        self.kind(pa).map(|k| matches!(k, Kind::Donated | Kind::Hyp | Kind::VmOwned(_)))
    }
}
