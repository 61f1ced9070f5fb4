//! The list registers of one vCPU: how the GIC's virtual CPU interface presents
//! interrupts to the guest. Plain data, kept in the GICv3 layout (converted for
//! GICv2 by `arch::aarch64::gicv2`), and the operations the distributor model
//! (`vm::vgic_dist`) needs to fill them; `arch::aarch64::gicv3`/`gicv2`
//! move them in and out of the hardware around each run.
//!
//! A guest acknowledges and ends its interrupts itself, through the virtual CPU
//! interface (`ICC_IAR1_EL1`/`ICC_EOIR1_EL1` reach `ICV_*` while `HCR_EL2.IMO`
//! is set, or GICV on GICv2): no trap. An interrupt leaves its list register
//! when the guest has ended it (state invalid).

#![forbid(unsafe_code)]

/// List registers the architecture allows (ICH_VTR_EL2.ListRegs + 1 <= 16).
pub const MAX_LIST_REGISTERS: usize = 16;

const LR_STATE_SHIFT: u32 = 62;
const LR_STATE_PENDING: u64 = 1 << LR_STATE_SHIFT;
const LR_STATE_ACTIVE: u64 = 2 << LR_STATE_SHIFT;
const LR_STATE_MASK: u64 = 3 << LR_STATE_SHIFT;
/// The virtual interrupt is tied to a physical one (pINTID): the guest's
/// deactivation deactivates it too.
const LR_HW: u64 = 1 << 61;
const LR_GROUP1: u64 = 1 << 60;
const LR_PRIORITY_SHIFT: u32 = 48;
const LR_PINTID_SHIFT: u32 = 32;
const LR_VINTID_MASK: u64 = 0xffff_ffff;
/// A GICv2 SGI's source CPU (0..8), which GICC_IAR reports and GICC_EOIR
/// names: kept in the low bits of the pINTID field of a list register that is
/// not tied to a physical interrupt, where GICv2's GICH_LR has its CPUID
/// (bits 12:10, the low bits of its PhysicalID). Only GICv2 distributors set
/// it; a GICv3 SGI has no source, so it never reaches ICH_LR<n>_EL2.
const LR_SOURCE_MASK: u64 = 7 << LR_PINTID_SHIFT;

/// How many ICH_AP0R<n>_EL2 (and as many ICH_AP1R<n>_EL2) a virtual CPU
/// interface with this ICH_VTR_EL2 has: one bit per preemption level, 32 per
/// register, so 1 with 5 bits of preemption, 2 with 6, 4 with 7
/// (ICH_VTR_EL2.PREbits, bits 28:26, is that number minus one). The others
/// are not implemented: accessing one is UNDEFINED. (PREbits, not PRIbits,
/// decides, as in Linux's `vgic_v3_save_aprs`; PRIbits may be larger.)
pub fn active_priority_registers(vtr: u64) -> usize {
    match ((vtr >> 26) & 7) + 1 {
        7 => 4,
        6 => 2,
        _ => 1,
    }
}

/// A list register presenting `intid` as pending, group 1, at `priority`;
/// with `physical`, tied to that physical INTID (HW).
pub fn pending_lr(intid: u32, priority: u8, physical: Option<u32>) -> u64 {
    let hw = physical.map_or(0, |p| LR_HW | u64::from(p & 0x3ff) << LR_PINTID_SHIFT);
    LR_STATE_PENDING | hw | LR_GROUP1 | u64::from(priority) << LR_PRIORITY_SHIFT | u64::from(intid)
}

/// `lr` presenting a GICv2 SGI from CPU `source`; a list register tied to a
/// physical interrupt is left as it is (its pINTID is no source).
pub fn with_source(lr: u64, source: u32) -> u64 {
    if lr_is_hw(lr) {
        return lr;
    }
    lr & !LR_SOURCE_MASK | (u64::from(source) << LR_PINTID_SHIFT) & LR_SOURCE_MASK
}

/// The source CPU of the GICv2 SGI a list register presents (0 for anything
/// else).
pub fn lr_source(lr: u64) -> u32 {
    if lr_is_hw(lr) {
        0
    } else {
        ((lr & LR_SOURCE_MASK) >> LR_PINTID_SHIFT) as u32
    }
}

/// The INTID a list register presents.
pub fn lr_intid(lr: u64) -> u32 {
    (lr & LR_VINTID_MASK) as u32
}

/// The priority a list register presents its interrupt at.
pub fn lr_priority(lr: u64) -> u8 {
    (lr >> LR_PRIORITY_SHIFT) as u8
}

/// Whether a list register is tied to a physical interrupt.
pub fn lr_is_hw(lr: u64) -> bool {
    lr & LR_HW != 0
}

/// A list register of the (GICv3) layout kept here, in the GICv2 layout:
/// group 0 (signalled as IRQ and acknowledged by `GICV_IAR`), 5-bit priority,
/// HW with the physical ID at bits 19:10, or else an SGI's source CPU at bits
/// 12:10 (CPUID).
pub fn to_v2(lr: u64) -> u32 {
    let state = ((lr >> LR_STATE_SHIFT) & 3) as u32;
    let priority = u32::from(lr_priority(lr)) >> 3;
    let id =
        if lr_is_hw(lr) { 1 << 31 | (((lr >> LR_PINTID_SHIFT) & 0x3ff) as u32) << 10 } else { lr_source(lr) << 10 };
    (lr & 0x3ff) as u32 | id | priority << 23 | state << 28
}

/// A GICv2 list register back in the layout kept here (0 when empty).
pub fn from_v2(lr: u32) -> u64 {
    let state = u64::from((lr >> 28) & 3);
    if state == 0 {
        return 0;
    }
    let id = if lr & (1 << 31) != 0 {
        LR_HW | u64::from((lr >> 10) & 0x3ff) << LR_PINTID_SHIFT
    } else {
        u64::from((lr >> 10) & 7) << LR_PINTID_SHIFT
    };
    state << LR_STATE_SHIFT
        | id
        | LR_GROUP1
        | u64::from((lr >> 23) & 0x1f) << (LR_PRIORITY_SHIFT + 3)
        | u64::from(lr & 0x3ff)
}

/// A vCPU's virtual-interrupt state, saved in its context between runs.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct VgicState {
    /// The list registers as of the last exit (0: empty).
    pub lrs: [u64; MAX_LIST_REGISTERS],
    /// ICH_VMCR_EL2: the guest's priority mask, group enables, EOI mode.
    pub vmcr: u64,
    /// ICH_AP0R<n>_EL2 and ICH_AP1R<n>_EL2, n below
    /// [`active_priority_registers`]: the guest's active priorities of each
    /// group (it can write its ICV_AP0R<n>/ICV_AP1R<n> itself). On GICv2,
    /// `ap1r[0]` holds GICH_APR.
    pub ap0r: [u32; 4],
    pub ap1r: [u32; 4],
    /// List registers `0..used` may be non-zero; the rest are empty.
    pub used: u8,
    /// The list registers changed in the hyp since they were last loaded into
    /// the hardware (the running guest must see them).
    pub changed: bool,
    /// PPIs (bit n: INTID n) whose list register presents them as pending
    /// because their line (a timer's output) is high, not latched by a
    /// host's injection or a guest's set-pending write: only these fall
    /// with the line ([`VgicState::lower`]).
    pub line: u32,
}

impl VgicState {
    fn live(&self) -> &[u64] {
        &self.lrs[..usize::from(self.used).min(MAX_LIST_REGISTERS)]
    }

    /// The list register presenting `intid` (pending or active), if any.
    pub fn slot_of(&self, intid: u32) -> Option<usize> {
        self.live().iter().position(|&lr| lr & LR_STATE_MASK != 0 && lr_intid(lr) == intid)
    }

    /// Whether a list register presents an interrupt as pending.
    pub fn any_pending(&self) -> bool {
        self.live().iter().any(|lr| lr & LR_STATE_PENDING != 0)
    }

    /// Whether a list register presents `intid` as pending.
    pub fn is_pending(&self, intid: u32) -> bool {
        self.live().iter().any(|&lr| lr & LR_STATE_PENDING != 0 && lr_intid(lr) == intid)
    }

    /// The line of level-sensitive `intid` fell: the pending state leaves the
    /// list register presenting it from its line (tied to a physical
    /// interrupt or not; [`VgicState::line`]); an active one stays active,
    /// the guest's to end. `Some(true)` if that list
    /// register is empty now, `Some(false)` if it stays (active), `None` if
    /// none presented `intid` as pending.
    pub fn lower(&mut self, intid: u32) -> Option<bool> {
        if intid >= 32 || self.line & 1 << intid == 0 {
            return None;
        }
        self.line &= !(1 << intid);
        let slot = self.live().iter().position(|&lr| lr & LR_STATE_PENDING != 0 && lr_intid(lr) == intid)?;
        let left = self.lrs[slot] & !LR_STATE_PENDING;
        let empty = left & LR_STATE_MASK == 0;
        self.set(slot, if empty { 0 } else { left });
        Some(empty)
    }

    /// Makes the interrupt in `slot` pending again (a new edge while active).
    pub fn make_pending(&mut self, slot: usize) {
        if let Some(lr) = self.lrs.get_mut(slot) {
            if *lr & LR_STATE_PENDING == 0 {
                *lr |= LR_STATE_PENDING;
                self.changed = true;
            }
        }
    }

    /// Takes the pending state out of list register `slot`: the list
    /// register as it was, if it was pending. An active one stays active; one
    /// that was only pending is empty now. (One tied to a physical interrupt
    /// goes back to the distributor as pending from its physical twin, so
    /// that the next fill ties it again: its physical interrupt stays active
    /// meanwhile.)
    pub fn take_pending(&mut self, slot: usize) -> Option<u64> {
        let lr = *self.lrs.get(slot)?;
        if lr & LR_STATE_PENDING == 0 {
            return None;
        }
        if lr_intid(lr) < 32 {
            self.line &= !(1 << lr_intid(lr));
        }
        let left = lr & !LR_STATE_PENDING;
        self.set(slot, if left & LR_STATE_MASK == 0 { 0 } else { left });
        Some(lr)
    }

    /// An empty list register among the first `count`.
    pub fn free_slot(&self, count: usize) -> Option<usize> {
        self.lrs[..count.min(MAX_LIST_REGISTERS)].iter().position(|lr| lr & LR_STATE_MASK == 0)
    }

    /// Among the first `count`, the list register with the lowest-priority
    /// interrupt that is only pending (not yet acknowledged, not tied to a
    /// physical interrupt) and of lower priority than `priority`: it may give
    /// its place to a more urgent interrupt.
    pub fn evictable_slot(&self, count: usize, priority: u8) -> Option<usize> {
        self.lrs[..count.min(MAX_LIST_REGISTERS)]
            .iter()
            .enumerate()
            .filter(|(_, &lr)| lr & LR_STATE_MASK == LR_STATE_PENDING && !lr_is_hw(lr) && lr_priority(lr) > priority)
            .max_by_key(|(_, &lr)| lr_priority(lr))
            .map(|(slot, _)| slot)
    }

    /// Puts `lr` (an interrupt, not an empty one) into `slot`.
    pub fn set(&mut self, slot: usize, lr: u64) {
        if let Some(entry) = self.lrs.get_mut(slot) {
            *entry = lr;
            self.changed = true;
            if lr & LR_STATE_MASK != 0 {
                self.used = self.used.max(slot as u8 + 1);
            } else {
                self.recount();
            }
        }
    }

    /// Recomputes `used` after list registers changed.
    pub fn recount(&mut self) {
        self.recount_below(MAX_LIST_REGISTERS);
    }

    /// Recomputes `used` when only the first `bound` list registers can be in
    /// use (the rest are known empty): the hot paths look at no more.
    pub fn recount_below(&mut self, bound: usize) {
        let bound = bound.min(MAX_LIST_REGISTERS);
        self.used = self.lrs[..bound].iter().rposition(|&lr| lr & LR_STATE_MASK != 0).map_or(0, |last| last + 1) as u8;
    }

    /// The INTIDs the guest acknowledged and has not deactivated (state
    /// active, or active and pending): the active state the distributor's
    /// GICD_ISACTIVER/ICACTIVER report.
    pub fn active_intids(&self) -> impl Iterator<Item = u32> + '_ {
        self.live().iter().filter(|&&lr| lr & LR_STATE_ACTIVE != 0).map(|&lr| lr_intid(lr))
    }

    /// The INTIDs in list registers (pending or active), for the distributor
    /// to see which of its interrupts the vCPU has ended.
    pub fn held_intids(&self) -> impl Iterator<Item = u32> + '_ {
        self.live().iter().filter(|&&lr| lr & LR_STATE_MASK != 0).map(|&lr| lr_intid(lr))
    }
}

/// The list registers of a virtual CPU interface, in the layout kept here:
/// GICv3's system registers, GICv2's GICH (converted with [`to_v2`] and
/// [`from_v2`]), or a fake in the tests. The moves between a [`VgicState`] and
/// the interface are written once, below, for both.
pub trait ListRegisterFile {
    /// List register `n` (below [`MAX_LIST_REGISTERS`]).
    fn read(&mut self, n: usize) -> u64;
    /// Sets list register `n` (below [`MAX_LIST_REGISTERS`]).
    fn write(&mut self, n: usize, lr: u64);
}

/// Loads the list registers `state` uses into `file` (none at all for a vCPU
/// without interrupts in flight, the common case of an exit-heavy guest);
/// returns how many were written. The others are empty and stay so: a guest
/// only changes the state of interrupts it was given.
#[inline(always)]
pub fn load(file: &mut impl ListRegisterFile, state: &VgicState) -> usize {
    let used = usize::from(state.used).min(MAX_LIST_REGISTERS);
    for (n, &lr) in state.lrs[..used].iter().enumerate() {
        file.write(n, lr);
    }
    used
}

/// While the guest runs: reads the first `used` list registers back into
/// `state` (those the guest has ended are empty now).
#[inline(always)]
pub fn sync_live(file: &mut impl ListRegisterFile, state: &mut VgicState, used: usize) {
    if used == 0 {
        return;
    }
    for (n, lr) in state.lrs[..used].iter_mut().enumerate() {
        *lr = file.read(n);
    }
    state.recount_below(used);
}

/// While the guest runs: writes the list registers the hyp changed in `state`
/// back into `file`; `used` grows to cover them.
#[inline(always)]
pub fn load_live(file: &mut impl ListRegisterFile, state: &mut VgicState, used: &mut usize) {
    let live = usize::from(state.used).min(MAX_LIST_REGISTERS).max(*used);
    for (n, &lr) in state.lrs[..live].iter().enumerate() {
        file.write(n, lr);
    }
    *used = live;
    state.changed = false;
}

/// At the exit: reads the first `used` list registers back into `state` and
/// empties them, so that nothing of the guest's is left in the interface
/// (those the guest has ended are empty in `state` too).
#[inline(always)]
pub fn save_and_empty(file: &mut impl ListRegisterFile, state: &mut VgicState, used: usize) {
    if used == 0 {
        // Nothing was loaded: what the hyp queued since stays queued.
        return;
    }
    for (n, lr) in state.lrs[..used.min(MAX_LIST_REGISTERS)].iter_mut().enumerate() {
        *lr = file.read(n);
        file.write(n, 0);
    }
    state.recount_below(used);
}

#[cfg(test)]
mod tests {
    use super::*;

    const LR_STATE_ACTIVE: u64 = 2 << LR_STATE_SHIFT;

    #[test]
    fn list_registers_encode_intid_priority_and_hw() {
        assert_eq!(pending_lr(3, 0xa0, None), 0x50a0_0000_0000_0003, "pending, group 1, priority 0xa0");
        let hw = pending_lr(27, 0x20, Some(27));
        assert!(lr_is_hw(hw) && lr_intid(hw) == 27 && lr_priority(hw) == 0x20);
        assert_eq!(hw >> 32 & 0x3ff, 27, "pINTID");
    }

    #[test]
    fn slots_are_found_freed_and_evicted_by_priority() {
        let mut s = VgicState::default();
        s.set(0, pending_lr(40, 0x80, None));
        s.set(1, pending_lr(41, 0xc0, None) & !LR_STATE_MASK | LR_STATE_ACTIVE);
        s.set(2, pending_lr(42, 0xe0, None));
        s.set(3, pending_lr(27, 0xf0, Some(27)));
        assert_eq!(s.used, 4);
        assert_eq!(s.slot_of(41), Some(1));
        assert_eq!(s.free_slot(4), None);
        assert_eq!(s.evictable_slot(4, 0x10), Some(2), "lowest-priority pending one; not active, not HW");
        assert_eq!(s.evictable_slot(4, 0xe0), None, "not more urgent");
        s.set(3, 0);
        assert_eq!((s.free_slot(4), s.used), (Some(3), 3));
        s.make_pending(1);
        assert_eq!(s.lrs[1] & LR_STATE_MASK, LR_STATE_PENDING | LR_STATE_ACTIVE);
        assert!(s.any_pending());
        let mut taken = s;
        assert_eq!(taken.take_pending(1), Some(s.lrs[1]));
        assert_eq!(taken.lrs[1] & LR_STATE_MASK, LR_STATE_ACTIVE, "active and pending: active stays");
        assert_eq!(taken.take_pending(1), None, "only active");
        assert_eq!((taken.take_pending(0), taken.lrs[0]), (Some(s.lrs[0]), 0), "only pending: empty");
        assert_eq!(taken.take_pending(3), None, "empty");
        let mut hw = VgicState::default();
        hw.set(0, pending_lr(27, 0xf0, Some(27)));
        assert_eq!(hw.take_pending(0), Some(pending_lr(27, 0xf0, Some(27))), "tied: taken too");
        assert_eq!(hw.used, 0);
        assert_eq!(s.held_intids().collect::<Vec<_>>(), vec![40, 41, 42]);
    }

    #[test]
    fn a_falling_line_takes_only_the_pending_state() {
        let mut s = VgicState::default();
        s.set(0, pending_lr(30, 0xa0, None));
        s.set(1, pending_lr(27, 0xa0, Some(27)) | LR_STATE_ACTIVE);
        s.set(2, pending_lr(26, 0xa0, None) & !LR_STATE_MASK | LR_STATE_ACTIVE);
        s.set(3, pending_lr(29, 0xa0, None));
        s.line = 1 << 30 | 1 << 27 | 1 << 26;
        assert_eq!(s.lower(29), None, "latched, not from the line: stays pending");
        assert!(s.is_pending(30) && s.is_pending(27) && !s.is_pending(26));
        assert_eq!(s.lower(30), Some(true), "only pending: gone");
        assert_eq!(s.lrs[0], 0);
        assert_eq!(s.lower(27), Some(false), "pending and active: stays active");
        assert_eq!(s.lrs[1] & LR_STATE_MASK, LR_STATE_ACTIVE);
        assert!(lr_is_hw(s.lrs[1]), "still tied");
        assert_eq!(s.lower(26), None, "active only: untouched");
        assert_eq!(s.lrs[2] & LR_STATE_MASK, LR_STATE_ACTIVE);
        assert_eq!(s.lower(40), None, "not held");
        assert_eq!(s.lower(30), None, "once");
        assert_eq!(s.used, 4);
        assert_eq!(s.line, 0);
    }

    #[test]
    fn the_active_priority_registers_follow_the_preemption_bits() {
        let vtr = |pri_bits: u64, pre_bits: u64| (pri_bits - 1) << 29 | (pre_bits - 1) << 26 | 3;
        assert_eq!(active_priority_registers(vtr(5, 5)), 1, "AP0R0/AP1R0 only");
        assert_eq!(active_priority_registers(vtr(6, 6)), 2, "AP*R0..1");
        assert_eq!(active_priority_registers(vtr(7, 7)), 4, "AP*R0..3");
        assert_eq!(active_priority_registers(vtr(8, 7)), 4, "8 priority bits, 7 of preemption");
        assert_eq!(active_priority_registers(vtr(7, 5)), 1, "more priority than preemption bits: PREbits decides");
        assert_eq!(active_priority_registers(vtr(6, 5)), 1);
        assert_eq!(active_priority_registers(0), 1, "at least 5 bits: never fewer than one");
    }

    #[test]
    fn gicv2_list_registers_convert_both_ways() {
        let lr = pending_lr(40, 0xa0, None);
        assert_eq!(to_v2(lr), 40 | 20 << 23 | 1 << 28, "INTID 40, priority 0xa0 >> 3, pending");
        assert_eq!(from_v2(to_v2(lr)), lr);
        let active = lr & !LR_STATE_MASK | LR_STATE_ACTIVE;
        assert_eq!(from_v2(to_v2(active)), active);
        assert_eq!(from_v2(to_v2(lr) & !(3 << 28)), 0, "ended: empty");
        let hw = pending_lr(27, 0x40, Some(27));
        assert_eq!(to_v2(hw), 27 | 1 << 31 | 27 << 10 | 8 << 23 | 1 << 28);
        assert_eq!(from_v2(to_v2(hw)), hw);
    }

    #[test]
    fn a_gicv2_sgi_carries_its_source_cpu_in_cpuid() {
        let sgi = with_source(pending_lr(5, 0xa0, None), 3);
        assert_eq!((lr_intid(sgi), lr_source(sgi)), (5, 3));
        assert_eq!(to_v2(sgi), 5 | 3 << 10 | 20 << 23 | 1 << 28, "CPUID (bits 12:10) 3");
        assert_eq!(from_v2(to_v2(sgi)), sgi);
        let active_from_7 = from_v2(5 | 7 << 10 | 2 << 28);
        assert_eq!((lr_source(active_from_7), lr_intid(active_from_7)), (7, 5));
        assert_eq!(with_source(sgi, 9), with_source(sgi, 1), "three bits only");
        let hw = pending_lr(27, 0x20, Some(27));
        assert_eq!(lr_source(hw), 0, "a HW list register's pINTID is no source");
        assert_eq!(with_source(hw, 0), hw, "nor is it overwritten by one");
        assert_eq!(lr_source(pending_lr(40, 0x20, None)), 0);
    }

    /// A list-register file that keeps what it is given and counts accesses.
    #[derive(Default)]
    struct FakeFile {
        lrs: [u64; MAX_LIST_REGISTERS],
        accesses: usize,
    }

    impl ListRegisterFile for FakeFile {
        fn read(&mut self, n: usize) -> u64 {
            self.accesses += 1;
            self.lrs[n]
        }
        fn write(&mut self, n: usize, lr: u64) {
            self.accesses += 1;
            self.lrs[n] = lr;
        }
    }

    #[test]
    fn the_model_moves_only_the_list_registers_in_use_and_leaves_none_behind() {
        let mut file = FakeFile::default();
        let mut state = VgicState::default();
        assert_eq!(load(&mut file, &state), 0);
        assert_eq!(file.accesses, 0, "no interrupt in flight: no list register moves");
        state.set(0, pending_lr(40, 0xa0, None));
        state.set(2, pending_lr(41, 0x80, None));
        let mut used = load(&mut file, &state);
        assert_eq!(used, 3);
        assert_eq!(file.lrs[2], state.lrs[2]);
        // The guest ends the interrupt in list register 2 while it runs.
        file.lrs[2] = 0;
        sync_live(&mut file, &mut state, used);
        assert_eq!(state.used, 1, "list register 2 ended: only 0 stays in use");
        // The hyp adds one in list register 4 while the guest runs.
        state.set(4, pending_lr(42, 0x10, None));
        load_live(&mut file, &mut state, &mut used);
        assert_eq!((used, file.lrs[4], state.changed), (5, state.lrs[4], false));
        save_and_empty(&mut file, &mut state, used);
        assert!(file.lrs.iter().all(|&lr| lr == 0), "nothing of the guest's is left in the interface");
        assert_eq!((lr_intid(state.lrs[0]), lr_intid(state.lrs[4]), state.used), (40, 42, 5));
    }
}
