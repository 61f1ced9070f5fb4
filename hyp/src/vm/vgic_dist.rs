//! The guest-facing GIC distributor of one VM (and, for GICv3, its vCPUs'
//! redistributors): which interrupts the guest enabled, at which priority, to
//! which vCPU it routed each SPI, and which are pending. The hyp keeps it for
//! every VM, so that a protected VM's interrupt configuration never reaches its
//! host; `vgic_mmio` maps the guest's register accesses onto it.
//!
//! Interrupts become pending here (host injection, SGIs, the guest's own
//! set-pending writes, the virtual timer's level) and move into a vCPU's list
//! registers ([`VgicState`]) only when the guest can take them: distributor
//! group enabled, interrupt enabled, SPI routed to that vCPU and not held by
//! another's list registers. Those that fit go in priority order (then INTID);
//! a more urgent one may push a less urgent, unacknowledged one back out.
//!
//! On GICv2 an SGI is pending per (target, INTID, source CPU): each source is
//! its own interrupt, which GICC_IAR reports with the source and GICC_EOIR
//! ends. The list registers present one source of an SGI at a time (two list
//! registers with the same virtual INTID are UNPREDICTABLE); the next goes in
//! when the guest has ended the one before (the hyp sees that end: GICv2's CPU
//! interface traps). GICv3 SGIs have no source.

#![forbid(unsafe_code)]

use crate::arch::list_registers::{lr_intid, lr_is_hw, lr_source, pending_lr, with_source, VgicState};
use hyp_abi::MAX_VCPUS_PER_VM;

/// One past the last INTID a VM has (`hyp_abi::GUEST_SPI_LIMIT`; a KVM VMM
/// asks for its count with the vGIC device's `NR_IRQS`, which the driver
/// refuses past this).
pub const INTID_LIMIT: u32 = hyp_abi::GUEST_SPI_LIMIT as u32;
/// Shared peripheral interrupts a VM has: INTIDs 32..[`INTID_LIMIT`].
pub const SPI_COUNT: usize = INTID_LIMIT as usize - 32;
const SPI_WORDS: usize = SPI_COUNT / 32;
// Whole bitmap words, below the special INTIDs (1020..), and a word summary
// fits a u32.
const _: () = assert!(SPI_COUNT.is_multiple_of(32) && INTID_LIMIT <= 1020 && SPI_WORDS <= 32);
const MAX_VCPUS: usize = MAX_VCPUS_PER_VM as usize;

/// The GIC architecture a VM sees (that of the platform's GIC).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum GicVersion {
    V2,
    V3,
}

/// The SGIs and PPIs of one vCPU (banked per vCPU).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct PrivateIrqs {
    pub enabled: u32,
    pub pending: u32,
    /// ICFGR: bit n set, INTID n is edge-triggered (SGIs always are).
    pub edge: u32,
    pub priority: [u8; 32],
    /// GICR_WAKER.ProcessorSleep (GICv3): set out of reset.
    pub asleep: bool,
    /// SPIs in this vCPU's list registers (bit n: INTID 32 + n).
    held_spis: [u32; SPI_WORDS],
    /// The words of `held_spis` that are not zero (bit w: word w), so that
    /// the common questions cost one test however many SPIs a VM has.
    held_words: u32,
    /// Pending because their physical twin asserts (the virtual timer, made
    /// pending by the hyp itself): only these may get a hardware list
    /// register. The host's injection of the same INTID, or the guest's own
    /// set-pending write, gives a purely virtual one.
    from_hardware: u32,
    /// GICv2: the source CPUs each SGI is pending from (bit n: vCPU n);
    /// `pending` has SGI n's bit exactly when `sgi_sources[n]` is not zero.
    sgi_sources: [u8; 16],
    /// Active in this vCPU's list registers as last seen ([`Distributor::note_active`]):
    /// its SGIs and PPIs (bit n: INTID n) and SPIs (bit n: INTID 32 + n).
    active: u32,
    active_spis: [u32; SPI_WORDS],
    /// The words of `active_spis` that are not zero (bit w: word w).
    active_words: u32,
}

impl Default for PrivateIrqs {
    fn default() -> Self {
        // SGIs enabled and edge-triggered out of reset (as KVM and most GICv2
        // implementations have them); PPIs disabled, level.
        PrivateIrqs {
            enabled: 0xffff,
            pending: 0,
            edge: 0xffff,
            priority: [0; 32],
            asleep: true,
            held_spis: [0; SPI_WORDS],
            held_words: 0,
            from_hardware: 0,
            sgi_sources: [0; 16],
            active: 0,
            active_spis: [0; SPI_WORDS],
            active_words: 0,
        }
    }
}

/// Where an interrupt went when it was made pending.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Routed {
    /// To this vCPU (the one to run so that the guest sees it).
    Vcpu(usize),
    /// Nowhere yet: an SPI whose route names no vCPU of the VM. It stays
    /// pending until the guest routes it.
    Unrouted,
}

/// What became of a GICv2 SGI in [`Distributor::fill`].
enum SgiFill {
    /// It is in a list register.
    Placed,
    /// Its list register presents it from a source not pending again: the
    /// next source waits until the guest has ended that one.
    Waits,
    /// No list register for it.
    Overflow,
}

/// What filling a vCPU's list registers did.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct Filled {
    /// Deliverable interrupts did not all fit (a maintenance interrupt, or the
    /// next entry, brings them in).
    pub overflow: bool,
}

/// Notes in `lrs` whether private interrupt `intid`, going into its list
/// register as pending, comes from its line (`VgicState::line`).
fn note_line(lrs: &mut VgicState, intid: u32, from_line: bool) {
    if intid < 32 {
        if from_line {
            lrs.line |= 1 << intid;
        } else {
            lrs.line &= !(1 << intid);
        }
    }
}

/// One VM's distributor.
#[derive(Clone, Debug)]
pub struct Distributor {
    pub version: GicVersion,
    vcpus: usize,
    /// GICD_CTLR bits the guest wrote (group enables).
    ctlr: u32,
    enabled: [u32; SPI_WORDS],
    /// The words of `enabled` that are not zero (bit w: word w): an SPI is
    /// deliverable only if enabled, so the search for one looks at these
    /// words alone (a guest enables the few its devices use).
    enabled_words: u32,
    pending: [u32; SPI_WORDS],
    edge: [u32; SPI_WORDS],
    priority: [u8; SPI_COUNT],
    /// vCPUs an SPI may go to (bit n: vCPU n): from GICD_ITARGETSR (GICv2) or
    /// GICD_IROUTER (GICv3).
    targets: [u8; SPI_COUNT],
    /// GICD_IROUTER as the guest wrote it (GICv3).
    irouter: [u64; SPI_COUNT],
    /// SPIs some vCPU's list registers hold (they go to no other until ended).
    held: [u32; SPI_WORDS],
    /// The input lines of the SPIs the host drives as levels
    /// ([`Distributor::set_spi_level`]): high ones are pending whenever no
    /// list register holds them.
    line: [u32; SPI_WORDS],
    /// The vCPUs whose noted active state is not empty (bit n: vCPU n).
    noted_active: u64,
    private: [PrivateIrqs; MAX_VCPUS],
}

/// GICD_CTLR group enable our interrupts belong to: GICv3 presents everything
/// as group 1 (EnableGrp1, bit 1 with a single security state), GICv2 as
/// group 0 (Enable, bit 0), matching the list registers' group.
fn group_enable_bit(version: GicVersion) -> u32 {
    match version {
        GicVersion::V3 => 1 << 1,
        GicVersion::V2 => 1,
    }
}

/// Sets (`set`) or clears `bits` of a bitmap word, if there is one.
fn set_or_clear(word: Option<&mut u32>, bits: u32, set: bool) {
    if let Some(word) = word {
        if set {
            *word |= bits;
        } else {
            *word &= !bits;
        }
    }
}

/// The set bits of `bits` (a word summary: bit w, word w), lowest first.
fn set_bits(mut bits: u32) -> impl Iterator<Item = usize> {
    core::iter::from_fn(move || {
        let n = (bits != 0).then(|| bits.trailing_zeros() as usize)?;
        bits &= bits - 1;
        Some(n)
    })
}

/// Keeps bit `word` of the word summary `summary` in step with `value`, that
/// word's bitmap: set while it is not zero.
fn note_word(summary: &mut u32, word: usize, value: u32) {
    if value != 0 {
        *summary |= 1 << word;
    } else {
        *summary &= !(1 << word);
    }
}

fn bit(intid: u32) -> (usize, u32) {
    ((intid / 32) as usize, 1 << (intid % 32))
}

impl Distributor {
    /// A distributor out of reset for a VM of `vcpus` vCPUs: disabled, SPIs
    /// disabled, level-triggered, priority 0, routed to vCPU 0.
    pub fn new(version: GicVersion, vcpus: usize) -> Distributor {
        Distributor {
            version,
            vcpus: vcpus.clamp(1, MAX_VCPUS),
            ctlr: 0,
            enabled: [0; SPI_WORDS],
            enabled_words: 0,
            pending: [0; SPI_WORDS],
            edge: [0; SPI_WORDS],
            priority: [0; SPI_COUNT],
            targets: [1; SPI_COUNT],
            irouter: [0; SPI_COUNT],
            held: [0; SPI_WORDS],
            line: [0; SPI_WORDS],
            noted_active: 0,
            private: [PrivateIrqs::default(); MAX_VCPUS],
        }
    }

    pub fn vcpus(&self) -> usize {
        self.vcpus
    }

    pub fn ctlr(&self) -> u32 {
        self.ctlr
    }

    pub fn set_ctlr(&mut self, value: u32) {
        self.ctlr = value & 3;
    }

    fn group_enabled(&self) -> bool {
        self.ctlr & group_enable_bit(self.version) != 0
    }

    /// The banked SGIs and PPIs of `vcpu`.
    pub fn private(&mut self, vcpu: usize) -> Option<&mut PrivateIrqs> {
        self.private[..self.vcpus].get_mut(vcpu)
    }

    /// Makes `intid` pending: an SGI or PPI for `vcpu`, an SPI for the vCPU the
    /// guest routed it to. `None` for an INTID the VM does not have or a vCPU
    /// it does not have.
    pub fn make_pending(&mut self, vcpu: usize, intid: u32) -> Option<Routed> {
        if vcpu >= self.vcpus || intid >= INTID_LIMIT {
            return None;
        }
        if intid < 32 {
            if intid < 16 {
                // (GICv2: the SGI comes from the vCPU itself.)
                self.pend_sgi(vcpu, intid, vcpu);
            } else {
                self.private[vcpu].pending |= 1 << intid;
            }
            return Some(Routed::Vcpu(vcpu));
        }
        let spi = (intid - 32) as usize;
        let (word, mask) = bit(intid - 32);
        self.pending[word] |= mask;
        Some(self.route_of(spi))
    }

    /// Where SPI number `spi` (INTID 32 + `spi`) goes now: the first vCPU the
    /// guest routed it to, or none.
    fn route_of(&self, spi: usize) -> Routed {
        let targets = u32::from(self.targets[spi]) & ((1 << self.vcpus) - 1);
        if targets == 0 {
            Routed::Unrouted
        } else {
            Routed::Vcpu(targets.trailing_zeros() as usize)
        }
    }

    /// Sets the input line of SPI `intid` (the host's device model drives it as
    /// a level): while high, the SPI is pending whenever no list register
    /// holds it (so again after the guest ends it, [`Distributor::release_ended`]);
    /// when it falls, a level-configured SPI no list register holds stops
    /// being pending (an edge-configured one keeps the edge it latched). One
    /// already in a list register stays there until the guest takes or ends
    /// it: the guest may take it once after the line fell, which a level
    /// interrupt's handler must tolerate anyway. `None` for an INTID that is
    /// not one of the VM's SPIs.
    pub fn set_spi_level(&mut self, intid: u32, high: bool) -> Option<Routed> {
        if !(32..INTID_LIMIT).contains(&intid) {
            return None;
        }
        let spi = (intid - 32) as usize;
        let (word, mask) = bit(intid - 32);
        let rising = high && self.line[word] & mask == 0;
        if high {
            self.line[word] |= mask;
            if rising || self.held[word] & mask == 0 {
                self.pending[word] |= mask;
            }
        } else {
            self.line[word] &= !mask;
            if self.edge[word] & mask == 0 {
                self.pending[word] &= !mask;
            }
        }
        Some(self.route_of(spi))
    }

    /// Makes PPI `intid` of `vcpu` pending because its line asserts (a
    /// timer's output: the virtual timer's mirrors its physical PPI, which
    /// [`Distributor::fill`] may tie it to), not latched: it falls with the
    /// line ([`Distributor::lower_line`]). Nothing for an INTID that is not a
    /// PPI.
    pub fn make_pending_from_hardware(&mut self, vcpu: usize, intid: u32) {
        if vcpu < self.vcpus && (16..32).contains(&intid) {
            let p = &mut self.private[vcpu];
            p.pending |= 1 << intid;
            p.from_hardware |= 1 << intid;
        }
    }

    /// Whether PPI `intid` of `vcpu` is pending from its physical twin (not
    /// yet in a list register).
    pub fn pending_from_hardware(&self, vcpu: usize, intid: u32) -> bool {
        self.private[..self.vcpus].get(vcpu).is_some_and(|p| intid < 32 && p.from_hardware & 1 << intid != 0)
    }

    /// Whether any PPI of `vcpu` is pending from its line.
    #[inline(always)]
    pub fn any_from_hardware(&self, vcpu: usize) -> bool {
        self.private[..self.vcpus].get(vcpu).is_some_and(|p| p.from_hardware != 0)
    }

    /// Makes SGI `intid` (0..16) pending for the vCPUs of `targets` (bit n:
    /// vCPU n) that the VM has, sent by vCPU `source` (GICv2 keeps it).
    pub fn send_sgi(&mut self, targets: u64, intid: u32, source: usize) {
        for vcpu in (0..self.vcpus).filter(|v| targets & (1 << v) != 0) {
            self.pend_sgi(vcpu, intid % 16, source);
        }
    }

    /// SGI `intid` of `vcpu` pending from `source` (only GICv2 keeps sources).
    fn pend_sgi(&mut self, vcpu: usize, intid: u32, source: usize) {
        let p = &mut self.private[vcpu];
        p.pending |= 1 << intid;
        if self.version == GicVersion::V2 {
            p.sgi_sources[intid as usize] |= 1 << (source % 8);
        }
    }

    /// GICv2 GICD_SPENDSGIR/CPENDSGIR byte of SGI `intid` as `vcpu` sees it:
    /// the source CPUs it is pending from.
    pub fn sgi_sources(&self, vcpu: usize, intid: u32) -> u8 {
        self.private[..self.vcpus].get(vcpu).and_then(|p| p.sgi_sources.get(intid as usize)).copied().unwrap_or(0)
    }

    /// The line of level-sensitive PPI `intid` of `vcpu` (a timer's) fell:
    /// the pending state it gave goes, here and in the vCPU's list registers
    /// `lrs` (an active one stays active: only the guest ends it; a latched
    /// one, the host's injection or the guest's set-pending write, stays).
    /// The result is [`VgicState::lower`]'s.
    pub fn lower_line(&mut self, vcpu: usize, intid: u32, lrs: &mut VgicState) -> Option<bool> {
        if let Some(p) = self.private[..self.vcpus].get_mut(vcpu) {
            if (16..32).contains(&intid) && p.from_hardware & 1 << intid != 0 {
                p.pending &= !(1 << intid);
                p.from_hardware &= !(1 << intid);
            }
        }
        lrs.lower(intid)
    }

    /// Sets (`set`) or clears the SGI `intid` of `vcpu` pending from the
    /// sources of `sources` (bit n: vCPU n), those the VM has (GICv2
    /// GICD_SPENDSGIR/CPENDSGIR). Sources already in a list register are not
    /// affected.
    pub fn write_sgi_sources(&mut self, vcpu: usize, intid: u32, sources: u8, set: bool) {
        let implemented = ((1u32 << self.vcpus.min(8)) - 1) as u8;
        if self.version != GicVersion::V2 || intid >= 16 {
            return;
        }
        let Some(p) = self.private[..self.vcpus].get_mut(vcpu) else {
            return;
        };
        let byte = &mut p.sgi_sources[intid as usize];
        if set {
            *byte |= sources & implemented;
        } else {
            *byte &= !sources;
        }
        if *byte == 0 {
            p.pending &= !(1 << intid);
        } else {
            p.pending |= 1 << intid;
        }
    }

    /// Whether [`Distributor::fill`] could do anything for `vcpu`: not for a
    /// guest that never opened its GIC (the common case of exit-heavy guests).
    pub fn may_fill(&self, vcpu: usize) -> bool {
        self.group_enabled() || self.holds_spis(vcpu)
    }

    /// Whether `vcpu`'s list registers held SPIs when last filled.
    pub fn holds_spis(&self, vcpu: usize) -> bool {
        self.private.get(vcpu).is_some_and(|p| p.held_words != 0)
    }

    /// Forgets the SPIs `vcpu`'s list registers (`lrs`, as just saved) no
    /// longer hold: the guest ended them, so another vCPU may take them.
    pub fn release_ended(&mut self, vcpu: usize, lrs: &VgicState) {
        let Some(p) = self.private[..self.vcpus].get_mut(vcpu) else {
            return;
        };
        if p.held_words == 0 {
            return;
        }
        // Word by word of those held (a few list registers each time: no
        // bitmap of every word built or copied).
        for word in set_bits(p.held_words) {
            let still = lrs
                .held_intids()
                .filter(|i| (32..INTID_LIMIT).contains(i))
                .map(|intid| bit(intid - 32))
                .filter(|&(w, _)| w == word)
                .fold(0, |still, (_, mask)| still | mask)
                & p.held_spis[word];
            let ended = p.held_spis[word] & !still;
            self.held[word] &= !ended;
            // A level SPI whose line is still high is pending again.
            self.pending[word] |= ended & self.line[word] & !self.edge[word];
            p.held_spis[word] = still;
            note_word(&mut p.held_words, word, still);
        }
    }

    /// Records what `vcpu`'s list registers (`lrs`, as just saved) hold as
    /// active, for the active registers (GICD_ISACTIVER/ICACTIVER,
    /// GICR_ISACTIVER0/ICACTIVER0). The active state lives in the list
    /// registers, where the guest acknowledges and ends its interrupts
    /// without a trap: a vCPU's own accesses see them as they are
    /// ([`Distributor::unfill_pending`] records them first), another vCPU's
    /// as of its last exit.
    #[inline(always)]
    pub fn note_active(&mut self, vcpu: usize, lrs: &VgicState) {
        // At every exit: nothing to do for a vCPU with empty list registers
        // and nothing noted (the common case of an exit-heavy guest).
        if lrs.used == 0 && !self.has_noted_active(vcpu) {
            return;
        }
        self.note_active_from(vcpu, lrs);
    }

    /// Whether [`Distributor::note_active`] has something to forget for
    /// `vcpu` even when its list registers are empty.
    pub fn has_noted_active(&self, vcpu: usize) -> bool {
        self.noted_active & (1 << (vcpu % 64)) != 0
    }

    fn note_active_from(&mut self, vcpu: usize, lrs: &VgicState) {
        let Some(p) = self.private[..self.vcpus].get_mut(vcpu) else {
            return;
        };
        // The words noted before are cleared, then the list registers' set
        // (no bitmap of every word built or copied).
        for word in set_bits(p.active_words) {
            p.active_spis[word] = 0;
        }
        p.active_words = 0;
        let mut private = 0u32;
        for intid in lrs.active_intids() {
            match intid {
                0..32 => private |= 1 << intid,
                32..INTID_LIMIT => {
                    let (word, mask) = bit(intid - 32);
                    p.active_spis[word] |= mask;
                    p.active_words |= 1 << word;
                }
                _ => {}
            }
        }
        p.active = private;
        let nothing = private == 0 && p.active_words == 0;
        let bit = 1 << (vcpu % 64);
        if nothing {
            self.noted_active &= !bit;
        } else {
            self.noted_active |= bit;
        }
    }

    /// Bitmap word `word` (INTIDs 32*word..) of active interrupts as `vcpu`
    /// sees it: its own SGIs and PPIs, and the SPIs active on any vCPU.
    pub fn active_word(&self, vcpu: usize, word: usize) -> u32 {
        match word {
            0 => self.private[..self.vcpus].get(vcpu).map_or(0, |p| p.active),
            w => self.private[..self.vcpus].iter().filter_map(|p| p.active_spis.get(w - 1)).fold(0, |all, &s| all | s),
        }
    }

    /// The most urgent interrupt `vcpu` could take now: (priority, INTID),
    /// leaving out the private INTIDs of `blocked`.
    fn best_candidate(&self, vcpu: usize, blocked: u32) -> Option<(u8, u32)> {
        if !self.group_enabled() {
            return None;
        }
        let p = &self.private[vcpu];
        let mut best: Option<(u8, u32)> = None;
        let mut consider = |priority: u8, intid: u32| {
            if best.is_none_or(|b| (priority, intid) < b) {
                best = Some((priority, intid));
            }
        };
        let mut bits = p.pending & p.enabled & !blocked;
        while bits != 0 {
            let n = bits.trailing_zeros();
            bits &= bits - 1;
            consider(p.priority[n as usize], n);
        }
        for word in set_bits(self.enabled_words) {
            // (Always below SPI_WORDS: spares the bounds checks.)
            let word = word % SPI_WORDS;
            let mut bits = self.pending[word] & self.enabled[word] & !(self.held[word] & !p.held_spis[word]);
            while bits != 0 {
                let n = bits.trailing_zeros();
                bits &= bits - 1;
                let spi = word * 32 + n as usize;
                if self.targets[spi] & (1 << vcpu) != 0 {
                    consider(self.priority[spi], 32 + spi as u32);
                }
            }
        }
        best
    }

    /// The vCPUs that have an interrupt they could take (bit n: vCPU n):
    /// pending, enabled, routed to it, whether or not it fits in a list register.
    pub fn deliverable_mask(&self) -> u64 {
        (0..self.vcpus).filter(|&v| self.best_candidate(v, 0).is_some()).fold(0, |mask, v| mask | 1 << v)
    }

    /// Clears `intid`'s pending state for `vcpu` (not a GICv2 SGI's, which is
    /// per source).
    fn clear_pending(&mut self, vcpu: usize, intid: u32) {
        if intid < 32 {
            self.private[vcpu].pending &= !(1 << intid);
            self.private[vcpu].from_hardware &= !(1 << intid);
        } else if intid < INTID_LIMIT {
            let (word, mask) = bit(intid - 32);
            self.pending[word] &= !mask;
        }
    }

    fn hold(&mut self, vcpu: usize, intid: u32, held: bool) {
        if !(32..INTID_LIMIT).contains(&intid) {
            return;
        }
        let (word, mask) = bit(intid - 32);
        let p = &mut self.private[vcpu];
        if held {
            self.held[word] |= mask;
            p.held_spis[word] |= mask;
        } else {
            self.held[word] &= !mask;
            p.held_spis[word] &= !mask;
        }
        note_word(&mut p.held_words, word, p.held_spis[word]);
    }

    /// Moves the interrupts `vcpu` can take into its first `count` list
    /// registers, most urgent first. `hw_intid` is a private interrupt to tie
    /// to the same physical one (the virtual timer, when the hyp manages its
    /// physical active state), when it is pending from its physical twin
    /// ([`Distributor::make_pending_from_hardware`]) and only then.
    pub fn fill(&mut self, vcpu: usize, lrs: &mut VgicState, count: usize, hw_intid: Option<u32>) -> Filled {
        if vcpu >= self.vcpus {
            return Filled::default();
        }
        if !self.may_fill(vcpu) {
            return Filled::default();
        }
        self.release_ended(vcpu, lrs);
        // GICv2 SGIs in a list register from a source not pending again: the
        // next source waits until the guest has ended that one.
        let mut blocked = 0u32;
        while let Some((priority, intid)) = self.best_candidate(vcpu, blocked) {
            if intid < 16 && self.version == GicVersion::V2 {
                match self.fill_gicv2_sgi(vcpu, lrs, count, priority, intid) {
                    SgiFill::Placed => {}
                    SgiFill::Waits => blocked |= 1 << intid,
                    SgiFill::Overflow => return Filled { overflow: true },
                }
                continue;
            }
            let from_hardware = intid < 32 && self.private[vcpu].from_hardware & (1 << intid) != 0;
            if let Some(slot) = lrs.slot_of(intid) {
                // Acknowledged already (active): pending again too.
                self.clear_pending(vcpu, intid);
                note_line(lrs, intid, from_hardware);
                lrs.make_pending(slot);
                continue;
            }
            let Some(slot) = self.slot_for(vcpu, lrs, count, priority) else {
                return Filled { overflow: true };
            };
            self.clear_pending(vcpu, intid);
            note_line(lrs, intid, from_hardware);
            let physical = hw_intid.filter(|&hw| hw == intid && from_hardware);
            lrs.set(slot, pending_lr(intid, priority, physical));
            self.hold(vcpu, intid, true);
        }
        Filled::default()
    }

    /// A list register for an interrupt of `priority` among `vcpu`'s first
    /// `count`: an empty one, or one whose less urgent, unacknowledged
    /// interrupt goes back to pending.
    fn slot_for(&mut self, vcpu: usize, lrs: &mut VgicState, count: usize, priority: u8) -> Option<usize> {
        if let Some(slot) = lrs.free_slot(count) {
            return Some(slot);
        }
        let slot = lrs.evictable_slot(count, priority)?;
        let evicted = lrs.lrs[slot];
        let from_line = lr_intid(evicted) < 32 && lrs.line & 1 << lr_intid(evicted) != 0;
        self.hold(vcpu, lr_intid(evicted), false);
        self.pend_again(vcpu, evicted, from_line);
        Some(slot)
    }

    /// GICv2 SGI `intid` into `vcpu`'s list registers, one source at a time:
    /// into the list register that presents it if that is the same source
    /// (active and pending), else into a list register of its own if none
    /// presents it, from its lowest source.
    #[cold]
    fn fill_gicv2_sgi(&mut self, vcpu: usize, lrs: &mut VgicState, count: usize, priority: u8, intid: u32) -> SgiFill {
        let sources = self.sgi_sources(vcpu, intid);
        if let Some(slot) = lrs.slot_of(intid) {
            let source = lr_source(lrs.lrs[slot]);
            if sources & (1 << source) == 0 {
                return SgiFill::Waits;
            }
            self.write_sgi_sources(vcpu, intid, 1 << source, false);
            lrs.make_pending(slot);
            return SgiFill::Placed;
        }
        let Some(slot) = self.slot_for(vcpu, lrs, count, priority) else {
            return SgiFill::Overflow;
        };
        let source = sources.trailing_zeros();
        self.write_sgi_sources(vcpu, intid, 1 << source, false);
        lrs.set(slot, with_source(pending_lr(intid, priority, None), source));
        SgiFill::Placed
    }

    /// The interrupt of list register `lr`, pushed out before the guest
    /// acknowledged it, is pending again (a GICv2 SGI from its source; one
    /// tied to its physical twin, or pending from its line, as pending from
    /// the line, so that the next fill ties it again and it still falls
    /// with the line).
    fn pend_again(&mut self, vcpu: usize, lr: u64, from_line: bool) {
        let intid = lr_intid(lr);
        if lr_is_hw(lr) || from_line {
            self.make_pending_from_hardware(vcpu, intid);
        } else if intid < 16 {
            self.pend_sgi(vcpu, intid, lr_source(lr) as usize);
        } else {
            self.make_pending(vcpu, intid);
        }
    }

    /// Takes what `vcpu`'s list registers (`lrs`, as just saved) present as
    /// pending back into the distributor (an active one stays in its list
    /// register, active), so that a guest's access to its pending registers
    /// sees and changes those too, as the architecture has them; the next
    /// [`Distributor::fill`] puts back what is still pending (the virtual
    /// timer's tied to its PPI again).
    pub fn unfill_pending(&mut self, vcpu: usize, lrs: &mut VgicState) {
        if vcpu >= self.vcpus {
            return;
        }
        self.note_active(vcpu, lrs);
        for slot in 0..usize::from(lrs.used) {
            let line = lrs.line;
            let Some(lr) = lrs.take_pending(slot) else {
                continue;
            };
            if lrs.lrs[slot] == 0 {
                self.hold(vcpu, lr_intid(lr), false);
            }
            self.pend_again(vcpu, lr, lr_intid(lr) < 32 && line & 1 << lr_intid(lr) != 0);
        }
    }

    /// Bitmap word `word` (INTIDs 32*word..) of enables, as `vcpu` sees it.
    pub fn enabled_word(&self, vcpu: usize, word: usize) -> u32 {
        match word {
            0 => self.private.get(vcpu).map_or(0, |p| p.enabled),
            w => self.enabled.get(w - 1).copied().unwrap_or(0),
        }
    }

    pub fn pending_word(&self, vcpu: usize, word: usize) -> u32 {
        match word {
            0 => self.private.get(vcpu).map_or(0, |p| p.pending),
            w => self.pending.get(w - 1).copied().unwrap_or(0),
        }
    }

    /// Sets (`set`) or clears the enable bits `bits` of word `word`.
    pub fn write_enabled(&mut self, vcpu: usize, word: usize, bits: u32, set: bool) {
        match word {
            0 => set_or_clear(self.private[..self.vcpus].get_mut(vcpu).map(|p| &mut p.enabled), bits, set),
            w => {
                set_or_clear(self.enabled.get_mut(w - 1), bits, set);
                if let Some(&enabled) = self.enabled.get(w - 1) {
                    note_word(&mut self.enabled_words, w - 1, enabled);
                }
            }
        }
    }

    /// Sets or clears pending bits (a guest's GICD_ISPENDR/ICPENDR write).
    /// Only interrupts not yet in a list register are affected. GICv2's SGI
    /// bits are read-only here (GICD_SPENDSGIR/CPENDSGIR set and clear them,
    /// per source).
    pub fn write_pending(&mut self, vcpu: usize, word: usize, bits: u32, set: bool) {
        let bits = if word == 0 && self.version == GicVersion::V2 { bits & !0xffff } else { bits };
        if word == 0 && !set {
            if let Some(p) = self.private[..self.vcpus].get_mut(vcpu) {
                p.from_hardware &= !bits;
            }
        }
        let target = match word {
            0 => self.private[..self.vcpus].get_mut(vcpu).map(|p| &mut p.pending),
            w => self.pending.get_mut(w - 1),
        };
        set_or_clear(target, bits, set);
    }

    /// The priority byte of `intid` as `vcpu` sees it.
    pub fn priority(&self, vcpu: usize, intid: u32) -> u8 {
        match intid {
            0..32 => self.private.get(vcpu).map_or(0, |p| p.priority[intid as usize]),
            _ => self.priority.get((intid - 32) as usize).copied().unwrap_or(0),
        }
    }

    pub fn set_priority(&mut self, vcpu: usize, intid: u32, priority: u8) {
        let slot = match intid {
            0..32 => self.private[..self.vcpus].get_mut(vcpu).map(|p| &mut p.priority[intid as usize]),
            _ => self.priority.get_mut((intid - 32) as usize),
        };
        if let Some(slot) = slot {
            *slot = priority;
        }
    }

    /// Edge bits of word `word` (INTIDs 32*word..; bit n: INTID 32*word + n).
    pub fn edge_word(&self, vcpu: usize, word: usize) -> u32 {
        match word {
            0 => self.private.get(vcpu).map_or(0xffff, |p| p.edge),
            w => self.edge.get(w - 1).copied().unwrap_or(0),
        }
    }

    /// Sets the edge bits of word `word` (SGIs stay edge-triggered).
    pub fn set_edge_word(&mut self, vcpu: usize, word: usize, edge: u32) {
        match word {
            0 => {
                if let Some(p) = self.private[..self.vcpus].get_mut(vcpu) {
                    p.edge = edge | 0xffff;
                }
            }
            w => {
                if let Some(e) = self.edge.get_mut(w - 1) {
                    *e = edge;
                }
            }
        }
    }

    /// GICD_ITARGETSR byte of `intid` (GICv2): SGIs and PPIs read as the
    /// reading vCPU itself.
    pub fn targets(&self, vcpu: usize, intid: u32) -> u8 {
        match intid {
            0..32 => 1 << (vcpu % 8),
            _ => self.targets.get((intid - 32) as usize).copied().unwrap_or(0),
        }
    }

    /// Routes an SPI to the vCPUs of `mask` (GICv2), those the VM has.
    pub fn set_targets(&mut self, intid: u32, mask: u8) {
        let vcpus = ((1u32 << self.vcpus) - 1) as u8;
        if let Some(t) = intid.checked_sub(32).and_then(|spi| self.targets.get_mut(spi as usize)) {
            *t = mask & vcpus;
        }
    }

    /// GICD_IROUTER of an SPI (GICv3).
    pub fn irouter(&self, intid: u32) -> u64 {
        intid.checked_sub(32).and_then(|spi| self.irouter.get(spi as usize)).copied().unwrap_or(0)
    }

    /// Routes an SPI by affinity (GICv3): to the vCPU whose MPIDR is the
    /// affinity (vCPU n: Aff0 = n, the rest 0), to any vCPU with
    /// Interrupt_Routing_Mode (bit 31), else to none.
    pub fn set_irouter(&mut self, intid: u32, value: u64) {
        const IRM: u64 = 1 << 31;
        const AFFINITY: u64 = 0xff_00ff_ffff;
        let Some(spi) = intid.checked_sub(32).map(|s| s as usize).filter(|&s| s < SPI_COUNT) else {
            return;
        };
        let value = value & (AFFINITY | IRM);
        let all = ((1u32 << self.vcpus) - 1) as u8;
        self.irouter[spi] = value;
        self.targets[spi] = if value & IRM != 0 {
            all
        } else if value & AFFINITY < self.vcpus as u64 {
            1 << (value & AFFINITY)
        } else {
            0
        };
    }
}

#[cfg(test)]
#[path = "vgic_dist_tests.rs"]
mod tests;
