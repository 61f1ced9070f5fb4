//! A guest's accesses to its GIC distributor (GICD) and, on GICv3, its
//! redistributors (GICR), served by the hyp from the VM's [`Distributor`]:
//! where the windows are in the guest's IPA space, and what each register
//! offset means. The active registers read the active state of the list
//! registers (`Distributor::note_active`); writes to them are ignored.
//! Registers the model does not keep read as zero and ignore writes (group
//! modifiers, LPIs), as the architecture allows for an implementation
//! without them.

#![forbid(unsafe_code)]

use crate::vm::vgic_dist::{Distributor, GicVersion, INTID_LIMIT};
use hyp_abi::{
    HypError, GUEST_GICV2_CPU_INTERFACE, GUEST_GICV2_CPU_INTERFACE_SIZE, GUEST_GICV3_REDISTRIBUTORS,
    GUEST_GIC_DISTRIBUTOR, MAX_VCPUS_PER_VM,
};

/// Size of the distributor window (GICv3: 64 KiB; GICv2's 4 KiB of registers
/// repeat nothing: the rest reads as zero).
pub const DISTRIBUTOR_SIZE: u64 = 0x1_0000;
/// One vCPU's redistributor: RD_base and SGI_base frames, 64 KiB each.
pub const REDISTRIBUTOR_STRIDE: u64 = 0x2_0000;
const SGI_FRAME: u64 = 0x1_0000;

/// Which of the VM's GIC frames an access reached.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Frame {
    Distributor,
    /// vCPU `vcpu`'s redistributor: RD_base (`sgi` false) or SGI_base.
    Redistributor {
        vcpu: usize,
        sgi: bool,
    },
    /// The redistributor window past the VM's last vCPU.
    Unused,
}

/// Where a VM's GIC windows are in its IPA space: the hyp's defaults
/// ([`GUEST_GIC_DISTRIBUTOR`] and its siblings) until the host places them
/// (`VM_SET_GIC`, before the VM first runs).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct GicLayout {
    pub distributor: u64,
    /// GICv3: vCPU 0's redistributor, the others' after it.
    pub redistributors: u64,
    /// Bytes of the redistributor window: past the VM's last vCPU and inside
    /// it, an access reads as zero ([`Frame::Unused`]); past it, the access
    /// is not the GIC's.
    pub redistributors_size: u64,
    /// GICv2: the CPU interface (GICC).
    pub cpu_interface: u64,
}

impl Default for GicLayout {
    fn default() -> GicLayout {
        GicLayout {
            distributor: GUEST_GIC_DISTRIBUTOR,
            redistributors: GUEST_GICV3_REDISTRIBUTORS,
            redistributors_size: REDISTRIBUTOR_STRIDE * MAX_VCPUS_PER_VM,
            cpu_interface: GUEST_GICV2_CPU_INTERFACE,
        }
    }
}

/// The alignment of the distributor and of GICv3's redistributors (their
/// 64 KiB frames), and of GICv2's CPU interface (4 KiB).
const FRAME_ALIGNMENT: u64 = 0x1_0000;
const GICV2_CPU_INTERFACE_ALIGNMENT: u64 = 0x1000;

impl GicLayout {
    /// The layout the host asks for: the distributor at `distributor` and,
    /// `second`, GICv3's redistributors (one per vCPU, `vcpus` of them) or
    /// GICv2's CPU interface, in an IPA space of `ipa_limit` bytes.
    ///
    /// # Errors
    ///
    /// `NotAligned` (distributor or redistributors not 64 KiB aligned, the
    /// CPU interface not 4 KiB aligned), `OutOfRange` (a window wraps or
    /// ends past the IPA space), `InvalidArgument` (the windows overlap).
    pub fn placed(
        version: GicVersion,
        vcpus: usize,
        distributor: u64,
        second: u64,
        ipa_limit: u64,
    ) -> Result<GicLayout, HypError> {
        let (second_size, second_alignment) = match version {
            GicVersion::V3 => (REDISTRIBUTOR_STRIDE * vcpus as u64, FRAME_ALIGNMENT),
            GicVersion::V2 => (GUEST_GICV2_CPU_INTERFACE_SIZE, GICV2_CPU_INTERFACE_ALIGNMENT),
        };
        if !distributor.is_multiple_of(FRAME_ALIGNMENT) || !second.is_multiple_of(second_alignment) {
            return Err(HypError::NotAligned);
        }
        let end = |base: u64, size: u64| base.checked_add(size).filter(|&end| end <= ipa_limit);
        let distributor_end = end(distributor, DISTRIBUTOR_SIZE).ok_or(HypError::OutOfRange)?;
        let second_end = end(second, second_size).ok_or(HypError::OutOfRange)?;
        if distributor < second_end && second < distributor_end {
            return Err(HypError::InvalidArgument);
        }
        Ok(match version {
            GicVersion::V3 => GicLayout {
                distributor,
                redistributors: second,
                redistributors_size: second_size,
                ..GicLayout::default()
            },
            GicVersion::V2 => GicLayout { distributor, cpu_interface: second, ..GicLayout::default() },
        })
    }

    /// The IPA ranges the emulated GIC answers in, for a GIC of `version`:
    /// the distributor's, and GICv3's redistributors' or GICv2's CPU
    /// interface's (each wrapping nowhere: `placed` checked them, and the
    /// default lies low).
    pub fn windows(&self, version: GicVersion) -> [core::ops::Range<u64>; 2] {
        let second = match version {
            GicVersion::V3 => self.redistributors..self.redistributors.saturating_add(self.redistributors_size),
            GicVersion::V2 => self.cpu_interface..self.cpu_interface.saturating_add(GUEST_GICV2_CPU_INTERFACE_SIZE),
        };
        [self.distributor..self.distributor.saturating_add(DISTRIBUTOR_SIZE), second]
    }

    /// Whether `[start, end)` meets a window of [`GicLayout::windows`].
    pub fn meets(&self, version: GicVersion, start: u64, end: u64) -> bool {
        self.windows(version).iter().any(|w| start < w.end && w.start < end)
    }
}

/// The frame and offset of `ipa`, if it is in the VM's GIC windows (as
/// `layout` places them).
pub fn frame_of(version: GicVersion, vcpus: usize, layout: &GicLayout, ipa: u64) -> Option<(Frame, u64)> {
    let in_distributor = ipa.wrapping_sub(layout.distributor);
    if in_distributor < DISTRIBUTOR_SIZE {
        return Some((Frame::Distributor, in_distributor));
    }
    let in_redistributors = ipa.wrapping_sub(layout.redistributors);
    if version != GicVersion::V3 || in_redistributors >= layout.redistributors_size {
        return None;
    }
    let vcpu = (in_redistributors / REDISTRIBUTOR_STRIDE) as usize;
    let offset = in_redistributors % REDISTRIBUTOR_STRIDE;
    if vcpu >= vcpus {
        return Some((Frame::Unused, offset));
    }
    Some((Frame::Redistributor { vcpu, sgi: offset >= SGI_FRAME }, offset % SGI_FRAME))
}

/// Whether the register at `offset` of `frame` holds pending or active state
/// (GICD/GICR_ISPENDR, ICPENDR, ISACTIVER, ICACTIVER; GICv2's
/// GICD_SPENDSGIR, CPENDSGIR): an access must see the accessing vCPU's list
/// registers as they are ([`Distributor::unfill_pending`]).
pub fn reflects_list_registers(frame: Frame, offset: u64) -> bool {
    match frame {
        Frame::Distributor => matches!(offset, 0x200..0x400 | 0xf10..0xf30),
        Frame::Redistributor { sgi: true, .. } => matches!(offset, 0x200..0x400),
        _ => false,
    }
}

/// What a register access did beyond its value.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct Effect {
    /// What a read returns.
    pub value: u64,
    /// The access may have made interrupts deliverable (enable, pend, route,
    /// a GICv2 GICD_SGIR write).
    pub may_deliver: bool,
}

const PIDR2_OFFSET_V3: u64 = 0xffe8;
const PIDR2_OFFSET_V2: u64 = 0xfe8;
/// GICD_IIDR/GICR_IIDR: implementer Arm (JEP106 0x43B), nothing else claimed.
const IIDR: u64 = 0x43b;

/// A bitmap register (one bit per INTID): which, and the word it starts at.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
enum Bitmap {
    Group,
    SetEnable,
    ClearEnable,
    SetPending,
    ClearPending,
    Active,
}

fn bitmap_at(offset: u64) -> Option<(Bitmap, usize)> {
    let kind = match offset & !0x7f {
        0x080 => Bitmap::Group,
        0x100 => Bitmap::SetEnable,
        0x180 => Bitmap::ClearEnable,
        0x200 => Bitmap::SetPending,
        0x280 => Bitmap::ClearPending,
        0x300 | 0x380 => Bitmap::Active,
        _ => return None,
    };
    Some((kind, ((offset & 0x7f) / 4) as usize))
}

impl Distributor {
    /// Performs vCPU `from`'s access of `size` bytes at `offset` of `frame`
    /// (`write`: the value stored), as the register map of the VM's GIC says.
    pub fn mmio(&mut self, from: usize, frame: Frame, offset: u64, size: u8, write: Option<u64>) -> Effect {
        match frame {
            Frame::Distributor => self.distributor_access(from, offset, size, write),
            Frame::Redistributor { vcpu, sgi: false } => self.rd_access(vcpu, offset, size, write),
            Frame::Redistributor { vcpu, sgi: true } => self.sgi_frame_access(vcpu, offset, size, write),
            Frame::Unused => Effect::default(),
        }
    }

    fn distributor_access(&mut self, from: usize, offset: u64, size: u8, write: Option<u64>) -> Effect {
        let v3 = self.version == GicVersion::V3;
        let word_access = size == 4 && offset.is_multiple_of(4);
        match offset {
            0x000 if word_access => match write {
                Some(value) => {
                    self.set_ctlr(value as u32);
                    Effect { may_deliver: true, ..Effect::default() }
                }
                // GICv3: ARE (4) and DS (6) read as one: affinity routing, a
                // single security state.
                None => read(u64::from(self.ctlr()) | if v3 { 1 << 4 | 1 << 6 } else { 0 }),
            },
            0x004 if word_access => read(self.typer()),
            0x008 if word_access => read(IIDR),
            0x080..0x400 if word_access => {
                let Some((kind, word)) = bitmap_at(offset) else {
                    return Effect::default();
                };
                // With affinity routing the SGIs and PPIs are the redistributor's.
                if v3 && word == 0 {
                    return Effect::default();
                }
                self.bitmap_access(from, kind, word, write)
            }
            0x400..0x800 => {
                let first = (offset - 0x400) as u32;
                if v3 && first < 32 {
                    return Effect::default();
                }
                self.byte_array_access(from, first, size, write, ByteArray::Priority)
            }
            0x800..0xc00 if !v3 => {
                self.byte_array_access(from, (offset - 0x800) as u32, size, write, ByteArray::Targets)
            }
            0xc00..0xd00 if word_access => {
                let word = ((offset - 0xc00) / 4) as usize;
                if v3 && word < 2 {
                    return Effect::default();
                }
                self.config_access(from, word, write)
            }
            // GICD_SGIR (write-only): the SGI comes from the writer.
            0xf00 if !v3 && word_access => match write {
                Some(value) => {
                    let (targets, intid) = crate::vm::guest_trap::gicv2_sgir_targets(value as u32, from);
                    self.send_sgi(targets, intid, from);
                    Effect { may_deliver: true, ..Effect::default() }
                }
                None => Effect::default(),
            },
            // GICD_CPENDSGIR<n>, GICD_SPENDSGIR<n>: a byte per SGI, bit n for
            // source CPU n, banked per vCPU.
            0xf10..0xf30 if !v3 => self.sgi_sources_access(from, offset, size, write),
            0x6100..0x7fe0 if v3 && offset.is_multiple_of(4) && (size == 8 || size == 4) => {
                let intid = ((offset - 0x6000) / 8) as u32;
                let high = offset % 8 == 4;
                if intid >= INTID_LIMIT || (size == 8 && high) {
                    return Effect::default();
                }
                let current = self.irouter(intid);
                match write {
                    Some(value) => {
                        let value = match (size, high) {
                            (8, _) => value,
                            (_, false) => current & !0xffff_ffff | value & 0xffff_ffff,
                            (_, true) => current & 0xffff_ffff | value << 32,
                        };
                        self.set_irouter(intid, value);
                        Effect { may_deliver: true, ..Effect::default() }
                    }
                    None => read(if size == 8 {
                        current
                    } else if high {
                        current >> 32
                    } else {
                        current & 0xffff_ffff
                    }),
                }
            }
            PIDR2_OFFSET_V3 if v3 && word_access => read(0x3b),
            PIDR2_OFFSET_V2 if !v3 && word_access => read(0x2b),
            _ => Effect::default(),
        }
    }

    /// GICD_CPENDSGIR<n> (from 0xf10) or GICD_SPENDSGIR<n> (from 0xf20) of
    /// `vcpu`: bytes or words.
    fn sgi_sources_access(&mut self, vcpu: usize, offset: u64, size: u8, write: Option<u64>) -> Effect {
        let set = offset >= 0xf20;
        let first = (offset & 0xf) as u32;
        if !(size == 1 || size == 4) || !first.is_multiple_of(u32::from(size)) {
            return Effect::default();
        }
        let intids = first..first + u32::from(size);
        match write {
            None => read(intids.rev().fold(0, |value, intid| value << 8 | u64::from(self.sgi_sources(vcpu, intid)))),
            Some(value) => {
                for (n, intid) in intids.enumerate() {
                    self.write_sgi_sources(vcpu, intid, (value >> (8 * n)) as u8, set);
                }
                Effect { may_deliver: set, ..Effect::default() }
            }
        }
    }

    /// GICD_TYPER: ITLinesNumber for [`INTID_LIMIT`], CPUNumber, and on GICv3
    /// IDbits (10-bit INTIDs, no LPIs).
    fn typer(&self) -> u64 {
        let lines = u64::from(INTID_LIMIT / 32 - 1);
        let cpus = (self.vcpus().min(8) as u64 - 1) << 5;
        match self.version {
            GicVersion::V3 => lines | cpus | 9 << 19,
            GicVersion::V2 => lines | cpus,
        }
    }

    fn bitmap_access(&mut self, vcpu: usize, kind: Bitmap, word: usize, write: Option<u64>) -> Effect {
        if word >= INTID_LIMIT as usize / 32 {
            return Effect::default();
        }
        let Some(value) = write else {
            return read(u64::from(match kind {
                // GICv3: every interrupt group 1 (RAO); GICv2: group 0 (RAZ).
                Bitmap::Group if self.version == GicVersion::V3 => u32::MAX,
                Bitmap::Group => 0,
                Bitmap::Active => self.active_word(vcpu, word),
                Bitmap::SetEnable | Bitmap::ClearEnable => self.enabled_word(vcpu, word),
                Bitmap::SetPending | Bitmap::ClearPending => self.pending_word(vcpu, word),
            }));
        };
        let bits = value as u32;
        match kind {
            Bitmap::SetEnable => self.write_enabled(vcpu, word, bits, true),
            Bitmap::ClearEnable => self.write_enabled(vcpu, word, bits, false),
            Bitmap::SetPending => self.write_pending(vcpu, word, bits, true),
            Bitmap::ClearPending => self.write_pending(vcpu, word, bits, false),
            Bitmap::Group | Bitmap::Active => return Effect::default(),
        }
        Effect { may_deliver: matches!(kind, Bitmap::SetEnable | Bitmap::SetPending), ..Effect::default() }
    }

    fn byte_array_access(&mut self, vcpu: usize, first: u32, size: u8, write: Option<u64>, array: ByteArray) -> Effect {
        if !(size == 1 || size == 4) || !first.is_multiple_of(u32::from(size)) || first >= INTID_LIMIT {
            return Effect::default();
        }
        let intids = first..first + u32::from(size);
        match write {
            None => read(intids.rev().fold(0, |value, intid| {
                value << 8
                    | u64::from(match array {
                        ByteArray::Priority => self.priority(vcpu, intid),
                        ByteArray::Targets => self.targets(vcpu, intid),
                    })
            })),
            Some(value) => {
                for (n, intid) in intids.enumerate() {
                    let byte = (value >> (8 * n)) as u8;
                    match array {
                        ByteArray::Priority => self.set_priority(vcpu, intid, byte),
                        ByteArray::Targets => self.set_targets(intid, byte),
                    }
                }
                Effect { may_deliver: array == ByteArray::Targets, ..Effect::default() }
            }
        }
    }

    /// GICD_ICFGR<word>: two bits per INTID, the upper one set for edge.
    fn config_access(&mut self, vcpu: usize, word: usize, write: Option<u64>) -> Effect {
        let edge_word = word / 2;
        let shift = (word % 2) * 16;
        if edge_word >= INTID_LIMIT as usize / 32 {
            return Effect::default();
        }
        let edges = self.edge_word(vcpu, edge_word);
        match write {
            None => read((0..16).fold(0, |value, n| value | u64::from((edges >> (shift + n)) & 1) << (2 * n + 1))),
            Some(value) => {
                let mut new = edges & !(0xffff << shift);
                for n in 0..16 {
                    new |= (((value >> (2 * n + 1)) & 1) as u32) << (shift + n);
                }
                self.set_edge_word(vcpu, edge_word, new);
                Effect::default()
            }
        }
    }

    /// A redistributor's RD_base frame (GICv3).
    fn rd_access(&mut self, vcpu: usize, offset: u64, size: u8, write: Option<u64>) -> Effect {
        let last = vcpu + 1 == self.vcpus();
        // Processor_Number, Last, and the affinity of vCPU n's MPIDR (Aff0 = n).
        let typer = (vcpu as u64) << 32 | (vcpu as u64) << 8 | u64::from(last) << 4;
        match (offset, size, write) {
            (0x008, 8, None) => read(typer),
            (0x008, 4, None) => read(typer & 0xffff_ffff),
            (0x00c, 4, None) => read(typer >> 32),
            (0x004, 4, None) => read(IIDR),
            (0x014, 4, _) => {
                let Some(p) = self.private(vcpu) else {
                    return Effect::default();
                };
                match write {
                    Some(value) => {
                        p.asleep = value & 2 != 0;
                        Effect::default()
                    }
                    // ChildrenAsleep (2) follows ProcessorSleep (1) at once.
                    None => read(if p.asleep { 0b110 } else { 0 }),
                }
            }
            (PIDR2_OFFSET_V3, 4, None) => read(0x3b),
            _ => Effect::default(),
        }
    }

    /// A redistributor's SGI_base frame (GICv3): the vCPU's SGIs and PPIs.
    fn sgi_frame_access(&mut self, vcpu: usize, offset: u64, size: u8, write: Option<u64>) -> Effect {
        let word_access = size == 4 && offset.is_multiple_of(4);
        match offset {
            0x080 | 0x100 | 0x180 | 0x200 | 0x280 | 0x300 | 0x380 if word_access => {
                let Some((kind, _)) = bitmap_at(offset) else {
                    return Effect::default();
                };
                self.bitmap_access(vcpu, kind, 0, write)
            }
            0x400..0x420 => self.byte_array_access(vcpu, (offset - 0x400) as u32, size, write, ByteArray::Priority),
            0xc00 | 0xc04 if word_access => self.config_access(vcpu, ((offset - 0xc00) / 4) as usize, write),
            _ => Effect::default(),
        }
    }
}

#[derive(Clone, Copy, Debug, Eq, PartialEq)]
enum ByteArray {
    Priority,
    Targets,
}

fn read(value: u64) -> Effect {
    Effect { value, ..Effect::default() }
}

#[cfg(test)]
#[path = "vgic_mmio_tests.rs"]
mod tests;
