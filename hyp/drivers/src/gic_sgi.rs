//! The value of GICv3's `ICC_SGI1R_EL1` that sends an SGI to one CPU: both
//! programs send them (the hyp's vCPU kicks, the host shim's own kicks), and
//! the field layout is the GIC architecture's, written once here.

#![forbid(unsafe_code)]

/// `ICC_SGI1R_EL1` for SGI `intid` (0..15) to the one CPU of MPIDR `mpidr`:
/// Aff3 [55:48], RS [47:44] (Aff0 / 16), Aff2 [39:32], INTID [27:24], Aff1
/// [23:16], target list [15:0] (bit Aff0 % 16); IRM (40) clear.
pub fn sgi1r_to(mpidr: u64, intid: u32) -> u64 {
    let aff0 = mpidr & 0xff;
    (mpidr >> 32 & 0xff) << 48
        | (aff0 >> 4) << 44
        | (mpidr >> 16 & 0xff) << 32
        | u64::from(intid & 0xf) << 24
        | (mpidr >> 8 & 0xff) << 16
        | 1 << (aff0 & 0xf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sgi1r_names_one_cpu_by_its_affinity() {
        assert_eq!(sgi1r_to(0x8000_0001, 2), 2 << 24 | 1 << 1);
        assert_eq!(sgi1r_to(0x8000_0000, 1), 1 << 24 | 1);
        // Aff0 17: range selector 1, bit 1; Aff1 2, Aff2 3, Aff3 4.
        assert_eq!(sgi1r_to(0x04_0003_0211, 15), 4 << 48 | 1 << 44 | 3 << 32 | 15 << 24 | 2 << 16 | 1 << 1);
    }
}
