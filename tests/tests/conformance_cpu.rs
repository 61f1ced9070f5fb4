//! The CPU conformance suite (issue 20; `host-shim/src/suites/conformance_cpu.rs`)
//! on a GICv2 and a GICv3 board with two CPUs, so that the vCPUs move between
//! them. Each check's line is exact: the ID registers a guest reads (QEMU's
//! `-cpu max` with what the hyp hides), what each hidden feature's registers
//! do (UNDEF), FP/SIMD state per vCPU and the host's own, PSCI's answers as
//! another vCPU starts and stops, WFI wake-ups and the active registers, for
//! both VM types.

use boot_tests::conformance::{assert_conformance, vm_end_lines};
use std::time::Duration;

/// Generous for TCG on a loaded 2-core machine; a boot takes minutes.
const TIMEOUT: Duration = Duration::from_secs(600);

const CPUS: &str = "the vCPUs on alternate CPUs";

/// QEMU's `-cpu max` as a guest sees it (PFR0 without the GIC field; EL0 and
/// EL1 AArch64 only, where the CPU also has AArch32 at both).
const PFR0_WITHOUT_GIC: u64 = 0x1201_0010_2011_0211;
const REST_OF_THE_ID_REGISTERS: &str = "PFR1 0x21 ZFR0 0x0 SMFR0 0x0 DFR0 0x10305009 DFR1 0x0 ISAR0 0x1221111110212120 ISAR1 0x11111100211002 ISAR2 0x0 MMFR0 0x32310201126 MMFR1 0x11010201122 MMFR2 0x1021011010011011 MMFR3 0x0";

/// The suite's lines for one VM type (`NonProtected` or `Protected`) on the
/// GIC of version `gic`, in order.
fn lines(gic: u32, ty: &str) -> Vec<String> {
    let v2 = gic == 2;
    let pfr0 = PFR0_WITHOUT_GIC | u64::from(!v2) << 24;
    let icc_sre = if v2 { "ICC_SRE_EL1 UNDEF" } else { "ICC_SRE_EL1 reads 0x7" };
    let (sgi, private) = if v2 { (1029, "GICD_ISACTIVER0") } else { (5, "GICR_ISACTIVER0") };
    let other_view = if v2 { 0 } else { 8 };
    let vm_lines = |kind: &str| vm_end_lines(&format!("GICv{gic} {kind} VM"), ty);
    let mut lines = vec![
        format!("[host INFO] ok: GICv{gic} ID registers ({ty}, {CPUS}): all 56 of the ID space read without an exception (0 took one), the same on both vCPUs (true): PFR0 {pfr0:#x} {REST_OF_THE_ID_REGISTERS}"),
        format!("[host INFO] ok: GICv{gic} ID fields and traps agree ({ty}): CPACR_EL1 written with FPEN, ZEN and SMEN reads 0x300000 (no SVE, SME enables); a hidden feature's registers UNDEF, an announced one's work; PMU (DFR0.PMUVer) 0: PMCR_EL0 UNDEF PMCCNTR_EL0 UNDEF PMUSERENR_EL0 UNDEF; SPE (DFR0.PMSVer) 0: PMSIDR_EL1 UNDEF PMBIDR_EL1 UNDEF; trace buffer (DFR0.TraceBuffer) 0: TRBIDR_EL1 UNDEF; trace unit (DFR0.TraceVer) 0: TRCIDR0 UNDEF; trace filter (DFR0.TraceFilt) 0: TRFCR_EL1 UNDEF; AMU (PFR0.AMU) 0: AMCR_EL0 UNDEF; SVE (PFR0.SVE) 0: ZCR_EL1 UNDEF; SME (PFR1.SME) 0: SMCR_EL1 UNDEF; MTE 2 (PFR1.MTE) 0: GCR_EL1 UNDEF TFSR_EL1 UNDEF; LORegions (MMFR1.LO) 0: LORID_EL1 UNDEF; pointer authentication (ISAR1.APA, API) 0: APIAKEYLO_EL1 UNDEF; MPAM (PFR0.MPAM) 0: MPAM1_EL1 UNDEF; BRBE (DFR0.BRBE) 0: BRBIDR0_EL1 UNDEF; RAS (PFR0.RAS) 2: ERRIDR_EL1 reads 0x0; GICv3 CPU interface (PFR0.GIC) {}: {icc_sre}", u32::from(!v2)),
    ];
    lines.extend(vm_lines("ID register"));
    lines.push(format!("[host INFO] ok: GICv{gic} FP/SIMD ({ty}, {CPUS}): vCPUs 0 and 1 of a VM and vCPU 0 of another each read back their own V0..V31, FPCR and FPSR, twice (registers that differ), and the host's own FP/SIMD registers survive every run (on each CPU): Ok(([0, 0, 0, 0, 0, 0], [0, 0]))"));
    lines.extend(vm_lines("FP/SIMD"));
    lines.extend(vm_lines("second FP/SIMD"));
    lines.push(format!("[host INFO] ok: GICv{gic} PSCI ({ty}, {CPUS}): AFFINITY_INFO of vCPU 1 and of no vCPU, CPU_ON of no vCPU (Aff0 2, Aff1 1), unaligned and outside memory; CPU_ON, AFFINITY_INFO, CPU_ON again while pending; vCPU 1's entry and context; AFFINITY_INFO, CPU_ON of vCPU 1 and of vCPU 0 itself once on; AFFINITY_INFO polled while vCPU 1 turns off elsewhere, CPU_ON at the other entry; its entry and context, AFFINITY_INFO: Ok(([1, -2, -2, -2, -9, -9], [0, 2, -5], (50331776, 4369), [0, -4, -4], [1, 0], (50331784, 8738), 0))"));
    lines.extend(vm_lines("PSCI"));
    lines.push(format!("[host INFO] ok: GICv{gic} WFI with IRQs masked ({ty}, {CPUS}): with SPI 40 pending (ISR_EL1, WFI exits, acknowledged); vCPU 0 in WFI (on the other CPU where there is one) seen ON by vCPU 1 (AFFINITY_INFO, CPU_ON), woken by its SGI 5 (status, ISR_EL1, WFI exits, acknowledged), then by SPI 40 from the host: Ok(([128, 0, 40], [0, -4], [0, 128, 0, {sgi}], [0, 128, 0, 40]))"));
    lines.extend(vm_lines("WFI"));
    lines.push(format!("[host INFO] ok: GICv{gic} active state ({ty}, {CPUS}): vCPU 0 acknowledges SPI 40 and SGI 3; its GICD_ISACTIVER1, ICACTIVER1, {private} and vCPU 1's GICD_ISACTIVER1; vCPU 1's view of vCPU 0's SGIs, then after both ended GICD_ISACTIVER1 and the SGIs' again: Ok(([28, 3], [100, 100, 8, 100], [{other_view}, 0, 0]))"));
    lines.extend(vm_lines("active-state"));
    lines
}

fn conformance_on(gic: u32) {
    assert_conformance(gic, TIMEOUT, "CPU", |ty| lines(gic, ty));
}

#[test]
fn cpu_conformance_on_gicv2() {
    conformance_on(2);
}

#[test]
fn cpu_conformance_on_gicv3() {
    conformance_on(3);
}
