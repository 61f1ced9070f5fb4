//! The shape of the host stage-2: an identity map (IPA = PA) whose IPA size comes
//! from the CPU's physical address size. Its contents are kept by `mm::memory`:
//! all RAM the host owns is mapped up front, in the largest blocks alignment
//! allows; address space that is not RAM is device space, mapped lazily as
//! device memory the first time the host touches it, in the largest block that
//! holds no RAM (as pKVM does). Touching memory the host does not own maps
//! nothing; the fault handler injects an abort into the host instead.

#![forbid(unsafe_code)]

use crate::range::PhysRange;

/// What became of a host stage-2 fault.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum HostFault {
    /// Device space, now mapped: the host retries the access.
    MappedDevice(PhysRange),
    /// Memory the host may not touch: the host gets an abort.
    Refused,
    /// The host stage-2 maps the address now: the fault came while another
    /// CPU changed the table (a block split's break-before-make, or the same
    /// device block being mapped). The host retries the access.
    AlreadyMapped,
}

/// Start level of the stage-2 walk for `ipa_bits` with 4 KiB pages.
pub fn root_level(ipa_bits: u32) -> usize {
    if ipa_bits > 39 {
        0
    } else {
        1
    }
}

/// The IPA width the hyp uses for a CPU's PARange encoding: the physical address
/// size, at most 48 bits (52 would need LPA2 tables). With 4 KiB pages a walk
/// may start at level 0 only on CPUs of 44 or more physical address bits (VTCR_EL2.SL0
/// = 2 is reserved below that, e.g. on Cortex-A53's 40 bits); a single level-1
/// root covers 39 bits, so 40- and 42-bit CPUs get a 39-bit IPA space (the hyp
/// does not use concatenated root tables).
pub fn ipa_bits(pa_range: u64) -> u32 {
    match pa_range {
        0 => 32,
        1 => 36,
        2 | 3 => 39,
        4 => 44,
        _ => 48,
    }
}

/// VTCR_EL2 for an identity stage-2 of `ipa_bits` with 4 KiB pages: T0SZ (5:0),
/// SL0 (7:6) for the start level of [`root_level`], IRGN0/ORGN0 write-back (11:8),
/// SH0 inner shareable (13:12), TG0 4 KiB (15:14 = 0), PS = `pa_range` (18:16),
/// RES1 bit 31.
pub fn vtcr(ipa_bits: u32, pa_range: u64) -> u64 {
    let t0sz = u64::from(64 - ipa_bits);
    let sl0 = match root_level(ipa_bits) {
        0 => 2,
        _ => 1,
    };
    (1 << 31) | (pa_range << 16) | (3 << 12) | (1 << 10) | (1 << 8) | (sl0 << 6) | t0sz
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vtcr_matches_the_ipa_size() {
        // 40-bit PA (cortex-a53's PARange 2): a 39-bit IPA, T0SZ 25, start level 1
        // (SL0 = 1): level 0 (SL0 = 2) is reserved below 44 bits.
        assert_eq!(vtcr(ipa_bits(2), 2), 0x8002_3559);
        // 44-bit PA (cortex-a57): T0SZ 20, start level 0.
        assert_eq!(vtcr(ipa_bits(4), 4) & 0xff, 20 | (2 << 6));
        // 36-bit IPA: T0SZ 28, start level 1 (SL0 = 1).
        assert_eq!(vtcr(ipa_bits(1), 1) & 0xff, 28 | (1 << 6));
        assert_eq!(ipa_bits(6), 48);
        assert_eq!(root_level(32), 1);
        assert_eq!(root_level(44), 0);
    }
}
