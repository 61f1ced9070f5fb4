//! Virtual interrupts of one vCPU, for the GICv3 virtual CPU interface: the
//! interrupts the host made pending, and the list registers that present them
//! to the guest. Plain data and decisions (which interrupt goes into which list
//! register), so that they are tested on the host; `arch::aarch64::gicv3` moves
//! the list registers in and out of the hardware around each run.
//!
//! A guest acknowledges and ends its interrupts itself, through the virtual CPU
//! interface (`ICC_IAR1_EL1`/`ICC_EOIR1_EL1` reach `ICV_*` while `HCR_EL2.IMO`
//! is set): no trap. An interrupt leaves its list register when the guest has
//! ended it (state invalid). More pending interrupts than list registers wait
//! here, in INTID order, and enter as list registers free up, at the next entry.

#![forbid(unsafe_code)]

/// INTIDs 0..1019 (1020..1023 are special, LPIs are not supported).
pub const MAX_INTID: u32 = 1020;
/// List registers the architecture allows (ICH_VTR_EL2.ListRegs + 1 <= 16).
pub const MAX_LIST_REGISTERS: usize = 16;
/// Priority of every injected interrupt (no virtual distributor yet to set
/// one): the middle of the range, above any sensible priority mask.
pub const DEFAULT_PRIORITY: u64 = 0xa0;

const LR_STATE_SHIFT: u32 = 62;
const LR_STATE_PENDING: u64 = 1 << LR_STATE_SHIFT;
const LR_STATE_MASK: u64 = 3 << LR_STATE_SHIFT;
const LR_GROUP1: u64 = 1 << 60;
const LR_PRIORITY_SHIFT: u32 = 48;
const LR_VINTID_MASK: u64 = 0xffff_ffff;

/// A list register presenting `intid` as pending, group 1.
pub fn pending_lr(intid: u32) -> u64 {
    LR_STATE_PENDING | LR_GROUP1 | DEFAULT_PRIORITY << LR_PRIORITY_SHIFT | u64::from(intid)
}

/// A list register of the (GICv3) layout kept here, in the GICv2 layout:
/// group 0 (signalled as IRQ and acknowledged by `GICV_IAR`), 5-bit priority.
pub fn to_v2(lr: u64) -> u32 {
    let state = ((lr >> LR_STATE_SHIFT) & 3) as u32;
    let priority = ((lr >> LR_PRIORITY_SHIFT) & 0xff) as u32 >> 3;
    (lr & 0x3ff) as u32 | priority << 23 | state << 28
}

/// A GICv2 list register back in the layout kept here (0 when empty).
pub fn from_v2(lr: u32) -> u64 {
    let state = u64::from((lr >> 28) & 3);
    if state == 0 {
        return 0;
    }
    state << LR_STATE_SHIFT
        | LR_GROUP1
        | u64::from((lr >> 23) & 0x1f) << (LR_PRIORITY_SHIFT + 3)
        | u64::from(lr & 0x3ff)
}

/// Interrupts waiting for a list register: one bit per INTID, and one bit per
/// non-empty word, so that the common case (nothing queued) costs one compare.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct IrqQueue {
    /// Bit n set: `bits[n]` is not zero.
    words: u32,
    bits: [u32; 32],
}

impl IrqQueue {
    /// Adds `intid`; false (and nothing added) unless it is below [`MAX_INTID`].
    pub fn add(&mut self, intid: u32) -> bool {
        if intid >= MAX_INTID {
            return false;
        }
        let word = (intid / 32) as usize;
        self.bits[word] |= 1 << (intid % 32);
        self.words |= 1 << word;
        true
    }

    pub fn is_empty(&self) -> bool {
        self.words == 0
    }

    /// Moves every interrupt of `other` here.
    pub fn take_all(&mut self, other: &mut IrqQueue) {
        let mut words = core::mem::take(&mut other.words);
        self.words |= words;
        while words != 0 {
            let word = words.trailing_zeros() as usize;
            words &= words - 1;
            self.bits[word] |= core::mem::take(&mut other.bits[word]);
        }
    }

    pub fn contains(&self, intid: u32) -> bool {
        intid < MAX_INTID && self.bits[(intid / 32) as usize] & 1 << (intid % 32) != 0
    }

    /// Takes the lowest INTID out.
    fn pop(&mut self) -> Option<u32> {
        if self.words == 0 {
            return None;
        }
        let word = self.words.trailing_zeros() as usize;
        let bit = self.bits[word].trailing_zeros();
        self.bits[word] &= !(1 << bit);
        if self.bits[word] == 0 {
            self.words &= !(1 << word);
        }
        Some(word as u32 * 32 + bit)
    }
}

/// A vCPU's virtual-interrupt state, saved in its context between runs.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct VgicState {
    /// Pending interrupts not yet in a list register.
    pub queue: IrqQueue,
    /// The list registers as of the last exit (0: empty).
    pub lrs: [u64; MAX_LIST_REGISTERS],
    /// ICH_VMCR_EL2: the guest's priority mask, group enables, EOI mode.
    pub vmcr: u64,
    /// ICH_AP1R0_EL2: the guest's active group-1 priorities.
    pub ap1r0: u64,
    /// List registers `0..used` may be non-zero; the rest are empty.
    pub used: u8,
}

impl VgicState {
    /// Fills the empty ones of the first `count` list registers from the queue,
    /// lowest INTID first (every injected interrupt has the same priority).
    /// An interrupt that is already in a list register (active) is made pending
    /// there instead of taking a second one.
    pub fn fill_list_registers(&mut self, count: usize) {
        let count = count.min(MAX_LIST_REGISTERS);
        self.refill(count);
        self.used = self.lrs[..count].iter().rposition(|&lr| lr != 0).map_or(0, |last| last + 1) as u8;
    }

    /// Whether `intid` is in a list register (pending or active) or queued.
    pub fn holds(&self, intid: u32) -> bool {
        let in_lr = self.lrs[..usize::from(self.used).min(MAX_LIST_REGISTERS)]
            .iter()
            .any(|lr| lr & LR_STATE_MASK != 0 && lr & LR_VINTID_MASK == u64::from(intid));
        in_lr || self.queue.contains(intid)
    }

    /// Whether an interrupt is pending for the guest: queued, or pending in a
    /// list register (`lrs` as last saved).
    pub fn any_pending(&self) -> bool {
        !self.queue.is_empty()
            || self.lrs[..usize::from(self.used).min(MAX_LIST_REGISTERS)].iter().any(|lr| lr & LR_STATE_PENDING != 0)
    }

    fn refill(&mut self, count: usize) {
        while let Some(intid) = self.queue.pop() {
            if let Some(lr) = self.lrs[..count]
                .iter_mut()
                .find(|lr| **lr & LR_STATE_MASK != 0 && **lr & LR_VINTID_MASK == u64::from(intid))
            {
                *lr |= LR_STATE_PENDING;
                continue;
            }
            match self.lrs[..count].iter_mut().find(|lr| **lr & LR_STATE_MASK == 0) {
                Some(free) => *free = pending_lr(intid),
                None => {
                    self.queue.add(intid);
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LR_STATE_ACTIVE: u64 = 2 << LR_STATE_SHIFT;

    fn intids(state: &VgicState) -> Vec<u64> {
        state.lrs.iter().filter(|lr| **lr & LR_STATE_MASK != 0).map(|lr| lr & LR_VINTID_MASK).collect()
    }

    fn injected(intids: &[u32]) -> VgicState {
        let mut s = VgicState::default();
        for &intid in intids {
            assert!(s.queue.add(intid));
        }
        s
    }

    #[test]
    fn list_registers_take_interrupts_in_intid_order_and_the_rest_wait() {
        let mut s = injected(&[45, 3, 27, 40, 1019, 33]);
        assert!(!s.queue.add(1020), "special INTIDs are refused");
        s.fill_list_registers(4);
        assert_eq!(intids(&s), vec![3, 27, 33, 40]);
        assert_eq!(s.used, 4);
        assert_eq!(s.lrs[0], 0x50a0_0000_0000_0003, "pending, group 1, priority 0xa0");
        assert!(!s.queue.is_empty());
        // The guest ends two of them: their list registers are free again.
        s.lrs[1] = 0;
        s.lrs[3] = 0;
        s.fill_list_registers(4);
        assert_eq!(intids(&s), vec![3, 45, 33, 1019]);
        assert!(s.queue.is_empty());
        s.lrs = [0; MAX_LIST_REGISTERS];
        s.lrs[1] = pending_lr(7);
        s.fill_list_registers(4);
        assert_eq!(s.used, 2, "up to the last one in use");
    }

    #[test]
    fn an_interrupt_already_presented_is_not_presented_twice() {
        let mut s = injected(&[40]);
        s.fill_list_registers(4);
        s.queue.add(40);
        s.fill_list_registers(4);
        assert_eq!(intids(&s), vec![40], "still pending: one list register");
        // The guest acknowledged it (active); a new edge makes it pending again.
        s.lrs[0] = s.lrs[0] & !LR_STATE_MASK | LR_STATE_ACTIVE;
        s.queue.add(40);
        s.fill_list_registers(4);
        assert_eq!(s.lrs[0] & LR_STATE_MASK, LR_STATE_PENDING | LR_STATE_ACTIVE);
        assert_eq!(intids(&s), vec![40]);
        assert!(s.queue.is_empty());
    }

    #[test]
    fn held_and_pending_interrupts_are_seen() {
        let mut s = injected(&[27]);
        assert!(s.holds(27) && s.any_pending() && !s.holds(28));
        s.fill_list_registers(4);
        assert!(s.holds(27) && s.any_pending());
        s.lrs[0] = s.lrs[0] & !LR_STATE_MASK | LR_STATE_ACTIVE;
        assert!(s.holds(27) && !s.any_pending(), "active only");
        s.lrs[0] = 0;
        assert!(!s.holds(27));
    }

    #[test]
    fn gicv2_list_registers_convert_both_ways() {
        let lr = pending_lr(40);
        assert_eq!(to_v2(lr), 40 | 20 << 23 | 1 << 28, "INTID 40, priority 0xa0 >> 3, pending");
        assert_eq!(from_v2(to_v2(lr)), lr);
        let active = lr & !LR_STATE_MASK | LR_STATE_ACTIVE;
        assert_eq!(from_v2(to_v2(active)), active);
        assert_eq!(from_v2(to_v2(lr) & !(3 << 28)), 0, "ended: empty");
    }

    #[test]
    fn queues_merge() {
        let (mut a, mut b) = (IrqQueue::default(), IrqQueue::default());
        assert!(a.add(1) && b.add(2) && b.add(999));
        assert!(!b.add(5000));
        a.take_all(&mut b);
        assert!(b.is_empty());
        assert_eq!((a.pop(), a.pop(), a.pop(), a.pop()), (Some(1), Some(2), Some(999), None));
    }
}
