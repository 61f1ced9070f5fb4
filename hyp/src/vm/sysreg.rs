//! Trapped system-register accesses that the hyp answers itself. For the host
//! only its ID registers are trapped (HCR_EL2.TID3), to hide SVE, SME and MTE,
//! which the hyp keeps trapped ([`sanitize_host_id`]). A guest's, so
//! that an unmodified OS boots: the ID registers (trapped by HCR_EL2.TID3),
//! reported with the features guests do not get hidden, and the debug
//! registers that MDCR_EL2.TDOSA and TDRA trap: the OS lock (OSLSR_EL1.OSLK
//! reflects the last OSLAR_EL1 write; it does not block the guest's debug
//! exceptions, which is the one way it differs from the architecture) and,
//! as KVM, OSDLR_EL1, DBGPRCR_EL1 and MDRAR_EL1 reading as zero and ignoring
//! writes. The other debug registers (MDCR_EL2.TDA) are the guest's own: the
//! world switch loads them at the first access (`arch::debug`), so only those
//! the CPU does not have come here, and they are UNDEFINED. The PMU stays UNDEFINED, which the PMUVer of 0 in the ID
//! registers announces; pointer authentication is hidden (its keys are not
//! switched yet). With the controls of issue 19 (`arch::trap_controls`), as
//! KVM has them: REVIDR_EL1 and AIDR_EL1 (HCR_EL2.TID1) read as the
//! hardware's; the RAS error records (TERR) read as zero and ignore writes
//! (ERRIDR_EL1 reads 0: no records); LORegions (TLOR), the trace unit
//! (CPTR_EL2.TTA) and its filter TRFCR_EL1 (MDCR_EL2.TTRF) are UNDEFINED and
//! hidden from the ID registers.

#![forbid(unsafe_code)]

use crate::arch::debug::{guest_dfr0, DBGPRCR_EL1, MDRAR_EL1, OSDLR_EL1, OSLAR_EL1, OSLSR_EL1};
use crate::arch::sysreg::{SysReg, SysRegAccess, AIDR_EL1, CPACR_EL1, CPACR_HIDDEN_ENABLES, REVIDR_EL1};

/// What the hyp does with a trapped system-register access.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum SysRegHandling {
    /// An ID register (Op0 3, Op1 0, CRn 0, CRm 1..7): its sanitised value.
    IdRegister,
    /// REVIDR_EL1 or AIDR_EL1 (HCR_EL2.TID1): the hardware's value.
    ImplementationId,
    /// An OSLSR_EL1 read: the OS lock is implemented, and locked or not as
    /// the guest last set it ([`oslsr`]).
    OsLockStatus,
    /// An OSLAR_EL1 write: bit 0 locks or unlocks the OS lock.
    OsLockSet,
    /// OSDLR_EL1, DBGPRCR_EL1 or MDRAR_EL1 (read), or a RAS error-record
    /// register (ERR*, HCR_EL2.TERR): reads as zero, writes ignored.
    ReadsAsZero,
    /// CPACR_EL1 (CPTR_EL2.TCPAC): the guest's value, without the SVE and SME
    /// enables ([`cpacr_as_read`], [`cpacr_as_written`]).
    ArchitecturalFeatureAccess,
    /// Anything else (the PMU among them): UNDEFINED.
    Undefined,
}

/// OSLSR_EL1 as the guest reads it: OSLM = 0b10 (bit 3: the OS lock is
/// implemented), OSLK (bit 1) as the guest set it.
pub fn oslsr(locked: bool) -> u64 {
    0b1000 | u64::from(locked) << 1
}

/// CPACR_EL1 as a guest reads it, given the hardware's: ZEN and SMEN are RES0
/// (no SVE, no SME).
pub fn cpacr_as_read(hardware: u64) -> u64 {
    hardware & !CPACR_HIDDEN_ENABLES
}

/// The hardware CPACR_EL1 for a guest's write of `value`: with ZEN and SMEN
/// set, so that SVE and SME trap to EL2, which makes them UNDEFINED
/// ([`CPACR_HIDDEN_ENABLES`]).
pub fn cpacr_as_written(value: u64) -> u64 {
    value | CPACR_HIDDEN_ENABLES
}

pub fn classify(access: SysRegAccess) -> SysRegHandling {
    match access.reg {
        SysReg { op0: 3, op1: 0, crn: 0, crm: 1..=7, .. } if access.read => SysRegHandling::IdRegister,
        reg if access.read && (reg == REVIDR_EL1 || reg == AIDR_EL1) => SysRegHandling::ImplementationId,
        CPACR_EL1 => SysRegHandling::ArchitecturalFeatureAccess,
        // ERRIDR_EL1, ERRSELR_EL1 (CRm 3), ERXFR/CTLR/STATUS/ADDR/PFG* (CRm 4),
        // ERXMISC0..3 (CRm 5): RAZ/WI, as KVM.
        SysReg { op0: 3, op1: 0, crn: 5, crm: 3..=5, .. } => SysRegHandling::ReadsAsZero,
        reg if reg == OSLSR_EL1 && access.read => SysRegHandling::OsLockStatus,
        reg if reg == OSLAR_EL1 && !access.read => SysRegHandling::OsLockSet,
        reg if reg == OSDLR_EL1 || reg == DBGPRCR_EL1 || (reg == MDRAR_EL1 && access.read) => {
            SysRegHandling::ReadsAsZero
        }
        // ICC_ASGI1R_EL1 (Op2 6) and ICC_SGI0R_EL1 (Op2 7) writes: with one
        // security state (GICD_CTLR.DS reads one) both pend only SGIs of
        // group 0 at their targets, and every SGI of a VM is group 1
        // (GICR_IGROUPR0 reads all ones): nothing becomes pending, as on such
        // a GIC (and under KVM). ICC_SGI1R_EL1 is `guest_trap`'s.
        SysReg { op0: 3, op1: 0, crn: 12, crm: 11, op2: 6 | 7 } if !access.read => SysRegHandling::ReadsAsZero,
        // The trace unit's registers (TRC*, Op1 1): the guest has no trace.
        // The other debug registers trap only before the world switch has
        // loaded the guest's, which it does at the first access to one the
        // CPU has (`arch::debug::access_loads_guest_state`): what comes here
        // is a breakpoint or watchpoint beyond the CPU's count.
        _ => SysRegHandling::Undefined,
    }
}

/// Replaces the 4-bit field at `shift` of `value` with `field`.
fn set_field(value: u64, shift: u32, field: u64) -> u64 {
    value & !(0xf << shift) | (field & 0xf) << shift
}

/// The value a guest reads from ID register `reg` given the hardware's:
/// features the hyp does not give guests are hidden. `gicv3`: the guest's GIC
/// has the system-register interface.
pub fn sanitize_id(reg: SysReg, hardware: u64, gicv3: bool) -> u64 {
    match (reg.crm, reg.op2) {
        // ID_AA64PFR0_EL1: no SVE (CPTR_EL2.TZ traps it), no AMU, no MPAM,
        // and the GIC interface the VM really has.
        (4, 0) => {
            // AArch64 only at EL0 and EL1 (the hyp decodes and steps over
            // AArch64 instructions only: `guest_trap::handle`).
            let value = set_field(hardware, 0, (hardware & 0xf).min(1));
            let value = set_field(value, 4, (hardware >> 4 & 0xf).min(1));
            let value = set_field(value, 32, 0);
            let value = set_field(value, 40, 0);
            let value = set_field(value, 44, 0);
            set_field(value, 24, u64::from(gicv3))
        }
        // ID_AA64PFR1_EL1: no SME (trapped), no MTE (no tagged stage-2), no
        // MPAM fraction.
        (4, 1) => set_field(set_field(set_field(hardware, 24, 0), 8, 0), 16, 0),
        // ID_AA64ZFR0_EL1, ID_AA64SMFR0_EL1: no SVE, no SME.
        (4, 4) | (4, 5) => 0,
        // ID_AA64ISAR1_EL1, ID_AA64ISAR2_EL1: no pointer authentication (its
        // key registers are not switched: HCR_EL2.APK/API stay clear, so they
        // and the PAC instructions would trap).
        (6, 1) => set_field(set_field(set_field(set_field(hardware, 4, 0), 8, 0), 24, 0), 28, 0),
        (6, 2) => set_field(set_field(hardware, 8, 0), 12, 0),
        // ID_AA64DFR0_EL1: no PMU, no statistical profiling, no trace (unit,
        // filter or buffer), no branch records; the breakpoints, watchpoints
        // and context comparators as they are (all are switched), the debug
        // version at most one without banked breakpoints (`guest_dfr0`).
        (5, 0) => {
            let value = set_field(guest_dfr0(hardware), 4, 0);
            let value = set_field(value, 8, 0);
            let value = set_field(value, 32, 0);
            let value = set_field(value, 40, 0);
            let value = set_field(value, 44, 0);
            let value = set_field(value, 48, 0);
            set_field(value, 52, 0)
        }
        // ID_DFR0_EL1 (AArch32 view): no PMU, no trace.
        (1, 2) => set_field(set_field(set_field(hardware, 24, 0), 12, 0), 28, 0),
        // ID_AA64MMFR1_EL1: no LORegions (HCR_EL2.TLOR traps them).
        (7, 1) => set_field(hardware, 16, 0),
        _ => hardware,
    }
}

/// Whether `access` is a read of an ID register (Op0 3, Op1 0, CRn 0, CRm 1..7).
pub fn is_id_register_read(access: SysRegAccess) -> bool {
    classify(access) == SysRegHandling::IdRegister
}

/// The value the host reads from ID register `reg` given the hardware's: as it
/// is, but without SVE and SME (CPTR_EL2.TZ and TSM trap them: the hyp does not
/// save a host's SVE or SME state around guest runs), without MTE (the
/// host's HCR_EL2.ATA is clear, so tag accesses would trap), and without
/// statistical profiling and the trace buffer (their buffers are EL2's,
/// MDCR_EL2.E2PB/E2TB 0b00, and their controls trap).
pub fn sanitize_host_id(reg: SysReg, hardware: u64) -> u64 {
    match (reg.crm, reg.op2) {
        // ID_AA64DFR0_EL1.PMSVer and .TraceBuffer.
        (5, 0) => set_field(set_field(hardware, 32, 0), 44, 0),
        // ID_AA64PFR0_EL1.SVE.
        (4, 0) => set_field(hardware, 32, 0),
        // ID_AA64PFR1_EL1.SME and .MTE.
        (4, 1) => set_field(set_field(hardware, 24, 0), 8, 0),
        // ID_AA64ZFR0_EL1, ID_AA64SMFR0_EL1.
        (4, 4) | (4, 5) => 0,
        _ => hardware,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_sees_its_cpu_without_sve_sme_and_mte() {
        let all = u64::MAX;
        let pfr0 = sanitize_host_id(id(4, 0), all);
        assert_eq!(pfr0 >> 32 & 0xf, 0, "no SVE");
        assert_eq!(pfr0 | 0xf << 32, all, "everything else as it is (GIC, AMU, exception levels)");
        let pfr1 = sanitize_host_id(id(4, 1), all);
        assert_eq!((pfr1 >> 24 & 0xf, pfr1 >> 8 & 0xf), (0, 0), "no SME, no MTE");
        assert_eq!(sanitize_host_id(id(4, 4), all), 0);
        assert_eq!(sanitize_host_id(id(4, 5), all), 0);
        let dfr0 = sanitize_host_id(id(5, 0), all);
        assert_eq!((dfr0 >> 32 & 0xf, dfr0 >> 44 & 0xf), (0, 0), "no SPE, no trace buffer");
        assert_eq!(dfr0 | 0xf << 32 | 0xf << 44, all, "the host keeps its PMU, trace filter and debug");
        assert_eq!(sanitize_host_id(id(6, 1), all), all, "and pointer authentication");
        assert!(is_id_register_read(SysRegAccess { reg: id(4, 0), rt: 0, read: true }));
        assert!(!is_id_register_read(SysRegAccess { reg: id(4, 0), rt: 0, read: false }));
    }

    fn id(crm: u8, op2: u8) -> SysReg {
        SysReg { op0: 3, op1: 0, crn: 0, crm, op2 }
    }

    #[test]
    fn accesses_decode_from_the_syndrome() {
        // mrs x3, id_aa64dfr0_el1: Op0 3, Op2 0, Op1 0, CRn 0, Rt 3, CRm 5, read.
        let iss = 3 << 20 | 3 << 5 | 5 << 1 | 1;
        let access = SysRegAccess::decode(iss);
        assert_eq!(access, SysRegAccess { reg: id(5, 0), rt: 3, read: true });
        assert_eq!(classify(access), SysRegHandling::IdRegister);
        // msr oslar_el1, xzr: Op0 2, Op1 0, CRn 1, CRm 0, Op2 4, write.
        let oslar = SysRegAccess::decode(2 << 20 | 4 << 17 | 1 << 10 | 31 << 5);
        assert_eq!(classify(oslar), SysRegHandling::OsLockSet);
        let oslsr = SysRegAccess::decode(2 << 20 | 4 << 17 | 1 << 10 | 1 << 1 | 1);
        assert_eq!(classify(oslsr), SysRegHandling::OsLockStatus);
        // mrs pmccntr_el0: Op0 3, Op1 3, CRn 9, CRm 13, Op2 0.
        let pmu = SysRegAccess::decode(3 << 20 | 3 << 14 | 9 << 10 | 13 << 1 | 1);
        assert_eq!(classify(pmu), SysRegHandling::Undefined);
        let write_id = SysRegAccess::decode(3 << 20 | 5 << 1);
        assert_eq!(classify(write_id), SysRegHandling::Undefined, "ID registers are read-only");
    }

    /// Issue 19 item 5: what HCR_EL2.TID1, TERR, TLOR, CPTR_EL2.TTA and
    /// MDCR_EL2.TTRF bring to the hyp, handled as KVM does.
    #[test]
    fn implementation_ids_error_records_lorregions_and_trace_are_handled_as_kvm_does() {
        let access = |op0: u32, op1: u32, crn: u32, crm: u32, op2: u32, read: bool| {
            SysRegAccess::decode(op0 << 20 | op2 << 17 | op1 << 14 | crn << 10 | crm << 1 | u32::from(read))
        };
        assert_eq!(classify(access(3, 0, 0, 0, 6, true)), SysRegHandling::ImplementationId, "REVIDR_EL1");
        assert_eq!(classify(access(3, 1, 0, 0, 7, true)), SysRegHandling::ImplementationId, "AIDR_EL1");
        assert_eq!(classify(access(3, 0, 0, 0, 6, false)), SysRegHandling::Undefined, "read-only");
        assert_eq!(classify(access(3, 1, 0, 0, 6, true)), SysRegHandling::Undefined, "SMIDR_EL1: no SME");
        for (crm, op2) in [(3, 0), (3, 1), (4, 0), (4, 1), (4, 2), (4, 3), (5, 0), (5, 3)] {
            for read in [true, false] {
                assert_eq!(classify(access(3, 0, 5, crm, op2, read)), SysRegHandling::ReadsAsZero, "ERR* {crm} {op2}");
            }
        }
        for op2 in [0, 1, 2, 3, 7] {
            assert_eq!(classify(access(3, 0, 10, 4, op2, true)), SysRegHandling::Undefined, "LOR* {op2}");
        }
        // TRCIDR0 (Op0 2, Op1 1, CRn 0, CRm 8, Op2 7), TRCPRGCTLR (CRn 0, CRm 1, Op2 0).
        assert_eq!(classify(access(2, 1, 0, 8, 7, true)), SysRegHandling::Undefined);
        assert_eq!(classify(access(2, 1, 0, 1, 0, false)), SysRegHandling::Undefined);
        // TRFCR_EL1 (Op0 3, Op1 0, CRn 1, CRm 2, Op2 1).
        assert_eq!(classify(access(3, 0, 1, 2, 1, false)), SysRegHandling::Undefined);
        // OSDLR_EL1, DBGPRCR_EL1 and MDRAR_EL1 are RAZ/WI as in KVM; the
        // debug registers MDCR_EL2.TDA traps are loaded by the world switch
        // before they get here, so a breakpoint the CPU lacks (DBGBVR15_EL1)
        // or MDCCSR_EL0 once loaded is UNDEFINED.
        for read in [true, false] {
            assert_eq!(classify(access(2, 0, 1, 3, 4, read)), SysRegHandling::ReadsAsZero, "OSDLR_EL1");
            assert_eq!(classify(access(2, 0, 1, 4, 4, read)), SysRegHandling::ReadsAsZero, "DBGPRCR_EL1");
        }
        assert_eq!(classify(access(2, 0, 1, 0, 0, true)), SysRegHandling::ReadsAsZero, "MDRAR_EL1");
        assert_eq!(classify(access(2, 0, 1, 0, 0, false)), SysRegHandling::Undefined, "MDRAR_EL1 is read-only");
        assert_eq!(classify(access(2, 0, 1, 0, 4, true)), SysRegHandling::Undefined, "OSLAR_EL1 is write-only");
        assert_eq!(classify(access(2, 0, 1, 1, 4, false)), SysRegHandling::Undefined, "OSLSR_EL1 is read-only");
        assert_eq!(classify(access(2, 0, 0, 15, 4, true)), SysRegHandling::Undefined, "DBGBVR15_EL1");
        assert_eq!(classify(access(2, 3, 0, 1, 0, true)), SysRegHandling::Undefined, "MDCCSR_EL0");
        let all = u64::MAX;
        assert_eq!(sanitize_id(id(7, 1), all, true) >> 16 & 0xf, 0, "no LORegions");
        assert_eq!(sanitize_id(id(7, 1), all, true) | 0xf << 16, all);
        assert_eq!(sanitize_id(id(5, 0), all, true) >> 40 & 0xf, 0, "no trace filter");
    }

    #[test]
    fn cpacr_hides_the_sve_and_sme_enables() {
        let cpacr = |read: bool| SysRegAccess::decode(3 << 20 | 2 << 17 | 1 << 10 | u32::from(read));
        assert_eq!(classify(cpacr(true)), SysRegHandling::ArchitecturalFeatureAccess);
        assert_eq!(classify(cpacr(false)), SysRegHandling::ArchitecturalFeatureAccess);
        // FPEN (21:20) and TTA (28) as written; ZEN (17:16), SMEN (25:24) set
        // underneath and read as zero.
        let written = 3 << 20 | 1 << 28 | 3 << 16;
        assert_eq!(cpacr_as_written(written), 3 << 20 | 1 << 28 | 3 << 16 | 3 << 24);
        assert_eq!(cpacr_as_read(cpacr_as_written(written)), 3 << 20 | 1 << 28);
        assert_eq!(cpacr_as_read(crate::arch::context::VcpuContext::at_entry(0, 0).sysregs.cpacr), 0, "out of reset");
    }

    #[test]
    fn group_0_and_alternate_group_1_sgi_writes_are_accepted_and_pend_nothing() {
        let access =
            |op2: u32, read: bool| SysRegAccess::decode(3 << 20 | op2 << 17 | 12 << 10 | 11 << 1 | u32::from(read));
        assert_eq!(classify(access(6, false)), SysRegHandling::ReadsAsZero, "msr icc_asgi1r_el1");
        assert_eq!(classify(access(7, false)), SysRegHandling::ReadsAsZero, "msr icc_sgi0r_el1");
        assert_eq!(classify(access(6, true)), SysRegHandling::Undefined, "write-only");
        assert_eq!(classify(access(7, true)), SysRegHandling::Undefined, "write-only");
    }

    #[test]
    fn features_guests_do_not_get_are_hidden() {
        let all = u64::MAX;
        let pfr0 = sanitize_id(id(4, 0), all, false);
        assert_eq!((pfr0 >> 32 & 0xf, pfr0 >> 24 & 0xf, pfr0 >> 44 & 0xf), (0, 0, 0), "SVE, GIC, AMU");
        assert_eq!(sanitize_id(id(4, 0), 0, true) >> 24 & 0xf, 1, "GICv3 system registers");
        assert_eq!(pfr0 & 0xff, 0x11, "EL0 and EL1 in AArch64 only");
        assert_eq!(pfr0 >> 8 & 0xff, 0xff, "EL2 and EL3 as they are");
        assert_eq!(sanitize_id(id(4, 0), 0x11, true) & 0xff, 0x11, "AArch64-only hardware as it is");
        let dfr0 = sanitize_id(id(5, 0), all, true);
        assert_eq!(dfr0 >> 8 & 0xf, 0, "no PMU");
        assert_eq!(dfr0 & 0xf, 0xa, "the debug version at most Debugv8p8");
        assert_eq!(dfr0 >> 12 & 0xff, 0xff, "breakpoints and watchpoints untouched");
        assert_eq!(dfr0 >> 28 & 0xf, 0xf, "context comparators untouched");
        assert_eq!(sanitize_id(id(5, 0), 0xb, true) & 0xf, 0xa, "Debugv8p9 (banked breakpoints) is not announced");
        assert_eq!(sanitize_id(id(5, 0), 0x9, true) & 0xf, 0x9, "Debugv8p4 as it is");
        assert_eq!(sanitize_id(id(4, 4), all, true), 0, "no SVE");
        assert_eq!(sanitize_id(id(4, 1), all, true) >> 24 & 0xf, 0, "no SME");
        assert_eq!(sanitize_id(id(1, 2), all, true) >> 24 & 0xf, 0, "AArch32 view: no PMU");
        assert_eq!(sanitize_id(id(6, 0), 0x1234, true), 0x1234, "instruction sets untouched");
        let isar1 = sanitize_id(id(6, 1), all, true);
        assert_eq!((isar1 >> 4 & 0xff, isar1 >> 24 & 0xff), (0, 0), "no pointer authentication");
        assert_eq!(sanitize_id(id(6, 2), all, true) >> 8 & 0xff, 0, "no QARMA3 pointer authentication");
    }
}
