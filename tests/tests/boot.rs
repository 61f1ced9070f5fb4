//! Boot tests: the image boots at EL2 on QEMU's virt board across CPU models, RAM
//! sizes and GIC versions, the host shim's checks pass, and an EL1 entry fails
//! cleanly. Every test has a timeout and checks exact console lines and QEMU's
//! exit status.

use boot_tests::{boot, boot_typing, repo_root, run_with_timeout, Boot};
use std::process::Command;
use std::time::Duration;

/// Generous for TCG on a loaded 2-core machine; a boot takes about a second.
const TIMEOUT: Duration = Duration::from_secs(120);

/// Lines every successful boot prints, in this order.
const SUCCESS_MARKERS: &[&str] = &[
    "[hyp INFO] pkvm-style hyp v0.1.0 at EL2",
    "[hyp INFO] RAM: ",
    "[hyp INFO] UART: Pl011 at [0x9000000..0x9001000)",
    "[hyp INFO] GIC: ",
    "[hyp INFO] CPUs: ",
    "[hyp INFO] PSCI via Smc",
    "[hyp INFO] hyp memory: image [",
    "[hyp INFO] host stage-2: ",
    "[hyp INFO] entering the host at EL1: entry ",
    "[host INFO] ok: host shim running at EL1",
    "[host INFO] ok: hypercall round trip: VERSION returned Ok((0, 9))",
    "[host INFO] ok: hypercall round trip: FEATURES returned Ok(c00000000007ffff)",
    "[host INFO] ok: unknown hypercall 0xc6001fff returned -1",
    "[host INFO] ok: VERSION with x4..x30 patterned: answered [0, 0, 9], first register changed None",
    "[host INFO] ok: ID_AA64PFR0_EL1 read into x2, x19 and x28 alike (0x",
    "), SVE 0 (hidden), x20 kept",
    "[host INFO] ok: PSCI CPU_ON of the running CPU: ALREADY_ON from the hyp (-4)",
    "[host INFO] ok: device tree carves out 2 hyp region(s)",
    "[host INFO] ok: invariant checker clean at start: Ok(InvariantReport { violations: 0, memcache_free: 0, memcache_used: 0, pool_used: ",
    "[host INFO] ok: share page 0x",
    "[host INFO] ok: hyp read the shared page (Ok(5eed1234)) and wrote it (0xc0ffee00)",
    "[host INFO] ok: unshare page 0x",
    "[host INFO] ok: hyp refuses the unshared page: Err(NotOwned)",
    "[host INFO] ok: donate 4 pages at 0x",
    "[host INFO] ok: hyp memcache holds them: Ok(InvariantReport { violations: 0, memcache_free: 4, memcache_used: 0, pool_used: ",
    "[host INFO] ok: blocked host read of hyp memory at 0x",
    "[host INFO] ok: blocked host write of hyp memory at 0x",
    "[host INFO] ok: reclaim the 4 donated pages",
    "[host INFO] ok: reclaimed pages read back zeroed: [0, 0, 0, 0]",
    "[host INFO] ok: share an unaligned address (0x",
    ") refused: Err(NotAligned)",
    "[host INFO] ok: share memory outside RAM (0x",
    ") refused: Err(OutOfRange)",
    "[host INFO] ok: share device (UART) memory (0x9000000 x1) refused: Err(OutOfRange)",
    "[host INFO] ok: share the hyp's memory (0x",
    ") refused: Err(NotOwned)",
    "[host INFO] ok: donate the hyp's memory (0x",
    "[host INFO] ok: share a wrapping range (0xfffffffffffff000 x2) refused: Err(OutOfRange)",
    "[host INFO] ok: share too many pages (0x",
    " x513) refused: Err(InvalidArgument)",
    "[host INFO] ok: share zero pages (0x",
    " x0) refused: Err(InvalidArgument)",
    "[host INFO] ok: share a page twice (0x",
    "[host INFO] ok: unshare a page never shared (0x",
    "[host INFO] ok: reclaim a page never donated (0x",
    "[host INFO] ok: reclaim the hyp's own memory (0x",
    "[host INFO] ok: memory checks leave the hyp as they found it: Ok(InvariantReport { violations: 0, memcache_free: 0, memcache_used: 0, pool_used: ",
    "[host INFO] ok: a VM needs donated memory first: Err(NoMemory)",
    "[host INFO] ok: donate 192 pages for VM metadata (memcache)",
    "[host INFO] ok: created a protected VM: info Ok((true, 1, 0))",
    "[host INFO] ok: registers of the protected VM refused: Err(PermissionDenied)",
    "[host INFO] ok: blocked host read of hyp memory at 0x",
    "[host INFO] guest P: hello from guest P R1",
    "[host INFO] ok: protected VM ran to SYSTEM_OFF printing \"hello from guest P R1\"",
    "[host INFO] ok: running the torn-down protected VM refused: Err(NoSuchVm)",
    "[host INFO] ok: torn-down protected VM still holds its page: Ok((true, 1, 1))",
    "[host INFO] ok: the protected VM's page came back zeroed: 0x0",
    "[host INFO] ok: the protected VM's handle is dead: Err(NoSuchVm)",
    "[host INFO] ok: created a non-protected VM: info Ok((false, 1, 0))",
    "[host INFO] ok: host reads the non-protected VM's x0: Ok(4e)",
    "[host INFO] ok: host reads the non-protected VM's memory: 0x",
    "[host INFO] guest N: hello from guest N R1",
    "[host INFO] ok: non-protected VM ran to SYSTEM_OFF printing \"hello from guest N R1\"",
    "[host INFO] ok: the non-protected VM's page is the host's again, unchanged",
    "[host INFO] ok: the host's FP registers survive a guest that uses FP/SIMD: d8 0x5eedf00d",
    "[host INFO] ok: protected memory-test guest reports its memory good: Ok(Mmio { ipa: 3000020, size_bytes: 8, write: true, value: 1 })",
    "[host INFO] ok: protected guest call left to the host: Ok(Hypercall { function: c5000001, arg: 10000000 })",
    "[host INFO] ok: protected guest WFI exits to the host: Ok(Wfi { timer_deadline: 18446744073709551615 })",
    "[host INFO] ok: force the data page back from the live protected VM",
    "[host INFO] ok: the forced-back page came back zeroed: 0x0",
    "[host INFO] ok: the protected VM touching its lost page ends, showing nothing: Ok(Fatal { esr: 0, address: 0 })",
    "[host INFO] ok: the host's FP registers survive a guest that uses FP/SIMD: d8 0x5eedf00d",
    "[host INFO] ok: non-protected memory-test guest reports its memory good: Ok(Mmio { ipa: 3000020, size_bytes: 8, write: true, value: 1 })",
    "[host INFO] ok: host reads what the non-protected guest wrote: 0x10000001",
    "[host INFO] ok: non-protected guest resets its VM: Ok(SystemReset)",
    "[host INFO] ok: a guest SMC to a firmware service gets NOT_SUPPORTED: 0xffffffffffffffff",
    "[host INFO] ok: a guest reading the PMU gets UNDEFINED: ESR 0x2000000",
    "[host INFO] ok: a guest reading its DBGBVR0_EL1 gets its own (zero out of reset), not the host's: 0x0",
    "[host INFO] ok: a guest's ID_AA64DFR0_EL1 shows no PMU (PMUVer 0) and the debug architecture (DebugVer >= 6)",
    "[host INFO] ok: a guest reading an EL2 register gets UNDEFINED: ESR 0x2000000",
    "[host INFO] ok: a guest store outside its memory is an MMIO exit for the host: Some((10000000, 5a))",
    "[host INFO] ok: the malicious guest's SYSTEM_OFF ends only its VM: Some(Ok(SystemOff))",
    "[host INFO] ok: MMIO guard (Protected): unguarded MMIO reaches the host, then enrol, allow the UART, granule 4096, misaligned and memory IPAs refused: [1, 0, 0, 1000, fffffffffffffffd, fffffffffffffffd]",
    "[host INFO] ok: MMIO guard (Protected): stores outside the allowed granule and to it once disallowed abort in the guest: [96000050, 96000050, 0]",
    "[host INFO] ok: MMIO guard (Protected): no refused access reached the host: None",
    "[host INFO] ok: MMIO guard (NonProtected): stores outside the allowed granule and to it once disallowed abort in the guest: [96000050, 96000050, 0]",
    "[host INFO] ok: lend a page to a non-protected VM: Ok(())",
    "[host INFO] ok: the page lent to a non-protected VM cannot be given to a protected VM too: Err(NotOwned)",
    "[host INFO] ok: a protected guest probing the hyp's, the host's and another VM's physical addresses [",
    "] only reaches the host, by MMIO exits (4 reads answered by the host, 4 writes)",
    "[host INFO] ok: the probing guest ends with SYSTEM_OFF: Some(Ok(SystemOff))",
    "[host INFO] ok: the page lent to the other VM is unchanged: 0x1e470000cafe",
    "[host INFO] ok: a guest catching 1000 injected exceptions in a run goes on: it counted Some(1000), then Some(Ok(SystemOff))",
    "[host INFO] ok: a guest faulting without vectors ends with a fatal exit: Ok(Fatal {",
    "[host INFO] ok: the crashed VM does not run again: Err(NoSuchVm)",
    "[host INFO] ok: a guest at AArch32 EL0 ends at its WFI with a fatal exit (EC 0x01): Ok(Fatal {",
    "[host INFO] ok: host timer tick on INTID 30 through V",
    "[host INFO] ok: a protected guest spinning with interrupts masked is preempted: ",
    " interrupted exits, the host's timer ticked 5 times (None)",
    "[host INFO] ok: reclaim the spinning VM's page",
    "[host INFO] ok: FEATURES platform flags Ok(0) (DMA isolated: true)",
    "[host INFO] ok: device attacks: protected target VM holds page 0x",
    "[host INFO] ok: fw_cfg at 0x9020000 withheld: its data read and its DMA address (the protected page, the hyp's image) aborted",
    "[host INFO] ok: virtio-mmio at 0xa000000 withheld: its magic read aborted",
    "[host INFO] guest P: hello from guest P R1",
    "[host INFO] ok: after the device attacks the protected guest runs its code unchanged: Ok(true)",
    "[host INFO] ok: after the device attacks the hyp answers",
    "[host INFO] ok: device attacks: target VM torn down and its page reclaimed",
    "[host INFO] ok: invariant checker clean after the device attacks",
    "[host INFO] ok: create a VM of unknown type refused",
    "[host INFO] ok: a forged handle finds no VM",
    "[host INFO] ok: vCPU index out of range refused",
    "[host INFO] ok: running a vCPU out of range refused: Err(NoSuchVcpu)",
    "[host INFO] ok: writing a protected VM's register refused: Err(PermissionDenied)",
    "[host INFO] ok: an unaligned IPA refused: Err(NotAligned)",
    "[host INFO] ok: running a forged handle refused: Err(NoSuchVm)",
    "[host INFO] ok: giving a VM hyp memory refused",
    "[host INFO] ok: an IPA already mapped refused",
    "[host INFO] ok: reclaiming an IPA that holds no page refused: Err(InvalidArgument)",
    "[host INFO] ok: tearing it down twice refused",
    "[host INFO] ok: 20 rounds of 32 VMs created, run, torn down and reclaimed: hyp memory unchanged (Ok(InvariantReport { violations: 0,",
    "[host INFO] ok: every memcache page is free again and comes back: Ok(())",
    "[host INFO] summary: ",
    " exits handled, every page back with the host",
    "[hyp INFO] host access to 0x",
    " blocked: synchronous external abort injected, ESR ",
    "EC 0x24 (data abort from a lower EL)",
    "[host INFO] ok: blocked host read of hyp memory at 0x",
    ": synchronous external abort (ESR_EL1 0x96000010, FAR_EL1 0x",
    "[host INFO] all host checks passed",
    "[hyp INFO] host requested PSCI SYSTEM_OFF: powering off",
];

fn assert_success(boot: &Boot) {
    assert_success_blocking(boot, GICV3_BLOCKED);
}

/// Host accesses the hyp refuses in a GICv3 run: per carve-out three reads and
/// one write, a read and a write of donated pages, the device attacks'
/// ITS (5) and fw_cfg and virtio-mmio (4) accesses, and the guest-memory
/// checks' reads of a protected guest's pages it did not share (2) and has
/// unshared (a read and a write).
const GICV3_BLOCKED: usize = 11 + 5 + 4 + 4;

/// As [`assert_success`], with `blocked` host accesses refused by the hyp in
/// all (GICv2 adds one: the host's probe of the GICH frame).
fn assert_success_blocking(boot: &Boot, blocked: usize) {
    boot.assert_markers_in_order(SUCCESS_MARKERS);
    boot.assert_absent(&["FAILED", "PANIC", "ERROR", "WARN"]);
    // Per carve-out three reads and one write, and a read and a write of donated
    // pages: each refused by the hyp and seen by the host.
    let count = |needle: &str| boot.console.matches(needle).count();
    assert_eq!(count("[host INFO] ok: blocked host read of hyp memory"), 8, "{}", boot.console);
    assert_eq!(count("[host INFO] ok: blocked host write of hyp memory"), 3, "{}", boot.console);
    assert_eq!(count(" blocked: synchronous external abort injected"), blocked, "{}", boot.console);
    // Each bad memory call was refused, and followed by a clean invariant check.
    assert_eq!(count(") refused: Err("), 12, "{}", boot.console);
    assert_eq!(count("invariant check after"), 0, "{}", boot.console);
    boot.assert_status(0);
}

#[test]
fn default_boot_reports_platform_and_passes_host_checks() {
    let boot = boot(&[], TIMEOUT);
    assert_success(&boot);
    boot.assert_markers_in_order(&[
        "[hyp INFO] RAM: 1024 MiB in 1 bank(s)",
        "[hyp INFO]   RAM bank [0x40000000..0x80000000)",
        "[hyp INFO] GIC: GICv3 distributor [0x8000000..0x8010000), redistributors [0x80a0000..0x9000000)",
        "[hyp INFO] CPUs: 1 in the device tree",
        "[hyp INFO]   CPU MPIDR 0x0, enable method Psci",
        "[hyp INFO] device qemu,fw-cfg-mmio x1 [0x9020000..0x9021000): bus master, withheld",
        "[hyp INFO] device virtio,mmio x32 [0xa000000..0xa004000): bus master, withheld",
        "[hyp INFO] device pci-host-ecam-generic x4 [0x4010000000..0x10000000000): bus master, withheld",
        "[hyp INFO] device arm,pl011 x1 [0x9000000..0x9001000): plain MMIO, the host's",
        "[hyp INFO] device arm,gic-v3 x1 [0x80a0000..0x9000000): redistributors, LPI controls emulated, the host's",
        "[hyp INFO] device arm,gic-v3-its x1 [0x8080000..0x80a0000): hyp's own, withheld",
        "[hyp INFO] DMA policy: strict (bus masters withheld from the host; hyp.dma=permissive gives them)",
        "[hyp INFO] GICv3: the LPI controls of 1 redistributor page(s) emulated: LPIs withheld from the host",
        "[host INFO] ok: protected guest: the vendor-hyp call UID is KVM's: Ok([b66fb428, e911c52e, 564bcaa9, 743a004d])",
        "[host INFO] ok: protected guest: KVM FEATURES (SMC32 0x8600_0000) offers Ok([3fd, 0, 0, 0])",
        "[host INFO] ok: the guest reads what the host wrote: Ok(4057000000000002)",
        "[host INFO] ok: after MEM_UNSHARE the host's write aborts",
        "[host INFO] ok: the relinquished page is the host's, zeroed",
        "[host INFO] ok: the shared page came back zeroed",
        "[host INFO] ok: non-protected guest: MemShare is not supported: Ok([ffffffffffffffff, 0, 0, 0])",
        "[host INFO] ok: the host lets the maintenance (PPI 25) and virtual timer (PPI 27) interrupts reach the hyp",
        "[host INFO] ok: bad injections refused: [Err(InvalidArgument), Err(InvalidArgument), Err(NoSuchVcpu), Err(NoSuchVm)]",
        "[host INFO] ok: a protected guest took each injected interrupt once through its virtual CPU interface (GICv3): [",
        "[host INFO] ok: the interrupt guest ends with SYSTEM_OFF: Some(Ok(SystemOff))",
        "[host INFO] ok: with a GIC the IRQ line is not the host's to set: [Err(NotSupported), Err(InvalidArgument)]",
        "[host INFO] ok: the distributor guest starts vCPU 1: Ok(CpuOn { vcpu: 1 })",
        "[host INFO] ok: GICv3 distributor: 288 INTIDs (ITLinesNumber Some(8)), a priority reads back (Some(",
        "[host INFO] ok: SPIs 50..55 and 42 made pending, routed to vCPU 0: [Ok(0), Ok(0), Ok(0), Ok(0), Ok(0), Ok(0), Ok(0)]",
        "[host INFO] ok: enabled SPIs are taken most urgent first: [51, 53, 55, 54, 52, 50]; the disabled one wakes nothing (Ok(Wfi { timer_deadline: 18446744073709551615 }))",
        "[host INFO] ok: enabling SPI 42 delivers it; a set-pending cleared before enable is gone, set again it is taken: [42, 43] (pending Some(0))",
        "[host INFO] ok: SPI 44 injected: the hyp names vCPU 1 (Ok(1))",
        "[host INFO] ok: vCPU 1 takes SPI 44: Some(44), then Ok(SystemOff) (fault None)",
        "[host INFO] ok: a guest that never exits takes each of 10 interrupts once through the list registers and the maintenance interrupt (GICv3): [60, 61, 62, 63, 64, 65, 66, 67, 68, 69]",
        "[host INFO] ok: a protected guest's virtual timer ticked Some(10) times (1 ms period, GICv3), the host waiting for its deadline ",
        "[host INFO] ok: the timer guest ends with SYSTEM_OFF: Some(Ok(SystemOff))",
        "[host INFO] ok: a protected guest spinning with IRQs unmasked took Some(10) virtual timer ticks while it ran, without exits to the host (1 ms period, GICv3)",
        "[host INFO] ok: vCPU 0 starts vCPU 1 with PSCI CPU_ON: Ok(CpuOn { vcpu: 1 })",
        "[host INFO] ok: the protected SGI VM's vCPUs are its guest's: VCPU_INIT of vCPU 0 (it ran) and of vCPU 1 (its guest started it) refused: [Err(PermissionDenied), Err(PermissionDenied)]",
        "[host INFO] ok: vCPU 1 sends SGI 5 to vCPU 0: Ok(Wake { targets: 1 })",
        "[host INFO] ok: then turns itself off: Ok(CpuOff)",
        "[host INFO] ok: vCPU 0 takes the SGI from vCPU 1 through its virtual CPU interface: INTID Some(5), then Some(Ok(SystemOff))",
        "[host INFO] ok: ITS at 0x8080000 withheld: GITS_CTLR read, GITS_BASER0 (at the protected page, at the hyp's image), GITS_CBASER and GITS_CWRITER writes all aborted",
        "[host INFO] ok: GICR_TYPER of CPU 0's redistributor read through the hyp: Some(",
        "[host INFO] ok: LPIs withheld: PROPBASER and PENDBASER (at the protected page, at the hyp's image), GICR_CTLR.EnableLPIs, INVALLR, SETLPIR writes aborted; GICR_CTLR reads Some(",
        "[host INFO] ok: GICR_WAKER written from x25 through the hyp (its slow path): Some(",
        "[host INFO] summary: 685 VMs created (347 protected), ",
    ]);
}

/// The host never gets an abort on its own RAM: 100,000 donations and
/// reclaims in fresh 2 MiB blocks (the first in a fresh 1 GiB block), each
/// block split break-before-make while three other CPUs read every page
/// around it; a read that faults during a split is retried by the hyp.
#[test]
fn host_reads_during_block_splits_never_abort() {
    let boot = boot(
        &["-smp", "4", "-m", "4G", "-append", "hyp.exit=semihosting shim.split-stress=100000"],
        Duration::from_secs(1500),
    );
    boot.assert_markers_in_order(&[
        "[host INFO] split stress: 100000 transitions in 391 fresh 2 MiB blocks from 0x80000000, 3 CPUs reading",
        "[host INFO] ok: split stress: every donation and reclaim answered Ok: None",
        "[host INFO] ok: split stress: CPU 1 read its blocks throughout without an abort: Some([0, ",
        "[host INFO] ok: split stress: CPU 2 read its blocks throughout without an abort: Some([0, ",
        "[host INFO] ok: split stress: CPU 3 read its blocks throughout without an abort: Some([0, ",
        "[host INFO] ok: split stress: 100000 transitions in fresh 2 MiB and 1 GiB blocks while 3 CPUs read ",
        " pages around them: zero host aborts, invariants clean (Ok(InvariantReport { violations: 0,",
        "[host INFO] all host checks passed",
    ]);
    boot.assert_absent(&["FAILED", "PANIC", "blocked: synchronous external abort injected", "unexpected exception"]);
    boot.assert_status(0);
}

/// The hyp owns the SMMU (`iommu=smmuv3`): the host gets the PCIe bus behind
/// it, QEMU's edu device copies between the host's pages by DMA, and its DMA
/// at a protected VM's page and at the hyp's image, and its DMA read of the
/// protected page, fault in the SMMU (logged by the hyp) and change nothing.
/// Then a donation of 300 pages inside one split 2 MiB block (more per-page
/// invalidations than the SMMU's command queue holds) still removes the
/// device's cached translation of its last page and leaves DMA working.
#[test]
fn smmu_confines_pcie_dma_to_the_hosts_pages() {
    let boot = boot(
        &["-M", "virt,virtualization=on,gic-version=3,iommu=smmuv3", "-device", "edu,dma_mask=0xffffffffffffffff"],
        TIMEOUT,
    );
    assert_success(&boot);
    boot.assert_markers_in_order(&[
        "[hyp INFO] device arm,smmu-v3 x1 [0x9050000..0x9070000): hyp's own, withheld",
        "[hyp INFO] device pci-host-ecam-generic x4 [0x4010000000..0x10000000000): bus master behind the SMMU, the host's",
        "[hyp INFO] SMMUv3: the hyp's; 256 streams translate through the host's RAM only (stage 1, ASID 1), OAS 44 bits",
        "[host INFO] ok: PCIe DMA attack: protected target VM holds page 0x",
        "[host INFO] ok: edu at 0x40100",
        "by DMA through the SMMU: [5eed000000000000, 5eed000000000001, 5eed000000000002, 5eed000000000003]",
        "[host INFO] ok: edu DMA at the protected page and the hyp's image, and DMA reading the protected page, finish without reaching them",
        "[host INFO] ok: after the DMA attack the protected guest runs its code unchanged: Ok(true)",
        "[host INFO] ok: after the DMA attack the hyp answers",
        "[host INFO] ok: invariant checker clean after the DMA attack: Ok(InvariantReport { violations: 0,",
        "[host INFO] ok: SMMU queue overflow: protected target VM holds page 0x",
        "[host INFO] ok: SMMU queue overflow: block 0x",
        " split (Ok(())), its page 0x",
        " read by DMA (translation cached): true",
        "[host INFO] ok: SMMU queue overflow: 300 pages of the split block donated in one call: Ok(())",
        "[host INFO] ok: SMMU queue overflow: edu DMA at the donated page 0x",
        "[host INFO] ok: SMMU queue overflow: DMA between the host's pages still works after it: [5eed000000000100, 5eed000000000101, 5eed000000000102, 5eed000000000103]",
        "[host INFO] ok: after the SMMU queue overflow the protected guest runs its code unchanged: Ok(true)",
        "[host INFO] ok: invariant checker clean after the SMMU queue overflow: Ok(InvariantReport { violations: 0,",
        "[host INFO] ok: SMMU queue overflow: the block's 301 pages reclaimed and zeroed: Ok(())",
        "[host INFO] all host checks passed",
    ]);
    // One line per run of faulting transactions: the two writes and the read
    // of the first attack, the write and the read at the donated page.
    let faults: Vec<&str> = boot.console.lines().filter(|l| l.starts_with("[hyp INFO] SMMU: F_TRANSLATION")).collect();
    assert_eq!(faults.len(), 5, "{}", boot.console);
    for (fault, access) in faults.iter().zip(["write", "write", "read", "write", "read"]) {
        assert!(
            fault.contains(&format!(" {access} at 0x")) && fault.ends_with("refused (8 transaction(s) in the page)"),
            "{fault}"
        );
    }
}

/// `hyp.dma=permissive`: the hyp says loudly that protected VMs are not
/// DMA-isolated, FEATURES reports it, the host gets fw_cfg and virtio-mmio,
/// and the ITS and the LPI controls stay withheld.
#[test]
fn permissive_dma_gives_the_host_its_bus_masters_and_says_so() {
    let boot = boot(&["-append", "hyp.exit=semihosting hyp.dma=permissive"], TIMEOUT);
    boot.assert_passed(&[
        "[hyp INFO] device virtio,mmio x32 [0xa000000..0xa004000): bus master, the host's",
        "[hyp WARN] hyp.dma=permissive: the host gets its DMA-capable devices with no IOMMU.",
        "[hyp WARN] Protected VMs and the hyp itself are NOT isolated from DMA the host programs.",
        "[host INFO] ok: FEATURES platform flags Ok(1) (DMA isolated: false)",
        "[host INFO] ok: ITS at 0x8080000 withheld: GITS_CTLR read, GITS_BASER0 (at the protected page, at the hyp's image), GITS_CBASER and GITS_CWRITER writes all aborted",
        "[host INFO] ok: LPIs withheld: PROPBASER and PENDBASER",
        "[host INFO] ok: fw_cfg at 0x9020000 is the host's under hyp.dma=permissive",
        "[host INFO] ok: virtio-mmio at 0xa000000 is the host's under hyp.dma=permissive: magic Some(74726976)",
        "[host INFO] ok: after the device attacks the protected guest runs its code unchanged: Ok(true)",
        "[host INFO] all host checks passed",
    ]);
}

/// The VMs acceptance: 32 VMs created, run, torn down and reclaimed, 1,000 times
/// over, leave the hyp's memory as it was.
#[test]
fn thousand_rounds_of_32_vms_leave_memory_unchanged() {
    let boot = boot(&["-append", "hyp.exit=semihosting shim.vm-rounds=1000"], TIMEOUT);
    boot.assert_markers_in_order(&[
        "[host INFO] ok: 1000 rounds of 32 VMs created, run, torn down and reclaimed: hyp memory unchanged (Ok(InvariantReport { violations: 0,",
        "[host INFO] all host checks passed",
    ]);
    boot.assert_status(0);
}

/// The hostile host: 100,000 seeded hypercalls mixing lifecycle work with
/// hostile arguments and device-register writes (ITS, LPI controls, SMMU,
/// fw_cfg, virtio), every answer checked against what the ABI allows, the
/// invariant checker after each (over what the calls touched; over everything
/// every 256 calls and at the end; the SMMU's table of the host's pages
/// included), protected and donated memory probed, and every page back at the
/// end (`scripts/fuzz-host` runs any number).
#[test]
fn hostile_host_100000_calls_with_a_fixed_seed() {
    hostile_host(100_000, 1);
}

/// The hostile host on four CPUs at once: each with its own VMs and window of
/// pages (exact answers) and all of them on one shared window (answers from
/// the documented set), with every answer checked, the invariant checker after
/// every call, and everything back at the end.
#[test]
fn hostile_host_on_four_cpus_at_once() {
    hostile_host(40_000, 4);
}

/// `calls` hostile calls with seed 2026 on `cpus` CPUs (`scripts/fuzz-host`'s
/// machine): every answer allowed, every page back.
fn hostile_host(calls: u64, cpus: u32) {
    let smp = cpus.to_string();
    let append = format!("hyp.exit=semihosting shim.fuzz-calls={calls} shim.fuzz-seed=2026");
    let machine = ["-M", "virt,virtualization=on,gic-version=3,iommu=smmuv3", "-m", "256M"];
    let boot = boot(&[&machine[..], &["-smp", &smp, "-append", &append]].concat(), Duration::from_secs(900));
    // Each CPU's window, and with several one more that they share.
    let windows = if cpus > 1 { cpus + 1 } else { 1 };
    let mut markers = vec![
        format!("[host INFO] hostile host: {calls} calls, seed 2026, on {cpus} CPU(s)"),
        format!("[host INFO] hostile host: {calls} calls on {cpus} CPU(s) in "),
        " 0 unexpected, ".to_string(),
        "[host INFO] ok: hostile host seed 2026: every answer was one the ABI allows and the invariants held after every call (0 CPU(s) saw something else)".to_string(),
        "VMs it still tracks are gone (0 left)".to_string(),
        "[host INFO] ok: hostile host: every page the models say is donated or lent came back (0 did not)".to_string(),
    ];
    if cpus > 1 {
        markers.push("[host INFO] ok: hostile host: the shared window's pages came back (0 odd answers)".to_string());
    }
    markers.extend([
        format!("[host INFO] ok: hostile host: every page of the {windows} window(s) is the host's again (0 blocks of 2 MiB are not)"),
        format!("[host INFO] ok: hostile host: {calls} calls with seed 2026 and the hyp held; every page is back (Ok(InvariantReport {{ violations: 0, memcache_free: 0, memcache_used: 0,"),
        "[host INFO] all host checks passed".to_string(),
    ]);
    boot.assert_passed(&markers.iter().map(String::as_str).collect::<Vec<_>>());
}

/// Boots with `extra`, every host check passes, and `markers` appear.
fn boots_and_passes(extra: &[&str], markers: &[&str]) {
    let boot = boot(extra, TIMEOUT);
    assert_success(&boot);
    boot.assert_markers_in_order(markers);
}

#[test]
fn boots_on_cortex_a57() {
    boots_and_passes(&["-cpu", "cortex-a57"], &["[hyp INFO] host stage-2: 44-bit IPA"]);
}

#[test]
fn boots_on_cortex_a72() {
    boots_and_passes(&["-cpu", "cortex-a72"], &[]);
}

#[test]
fn boots_with_512m() {
    boots_and_passes(&["-m", "512M"], &["[hyp INFO] RAM: 512 MiB in 1 bank(s)"]);
}

#[test]
fn boots_with_4g() {
    boots_and_passes(&["-m", "4G"], &["[hyp INFO]   RAM bank [0x40000000..0x140000000)"]);
}

#[test]
fn boots_with_gicv2() {
    let boot = boot(&["-M", "virt,virtualization=on,gic-version=2"], TIMEOUT);
    // The GICH probe, and no ITS.
    assert_success_blocking(&boot, GICV3_BLOCKED + 1 - 5);
    boot.assert_markers_in_order(&[
        "[hyp INFO] GIC: GICv2 distributor [0x8000000..0x8010000), CPU interface [0x8010000..0x8020000), GICH [0x8030000..0x8040000), GICV [0x8040000..0x8050000)",
        "[hyp INFO] GICv2 virtual interface: GICH [0x8030000..0x8040000) kept from the host, GICV [0x8040000..0x8050000) serves guests",
        "[host INFO] ok: a protected guest spinning with interrupts masked is preempted: ",
        "[host INFO] ok: the GICv2 virtual interface control frame (GICH at 0x8030000) is refused to the host",
        "[host INFO] ok: a protected guest took each injected interrupt once through its virtual CPU interface (GICv2): [",
        "[host INFO] ok: GICv2 distributor: 288 INTIDs (ITLinesNumber Some(8)), a priority reads back (Some(",
        "[host INFO] ok: enabled SPIs are taken most urgent first: [51, 53, 55, 54, 52, 50]; the disabled one wakes nothing (Ok(Wfi { timer_deadline: 18446744073709551615 }))",
        "[host INFO] ok: enabling SPI 42 delivers it; a set-pending cleared before enable is gone, set again it is taken: [42, 43] (pending Some(0))",
        "[host INFO] ok: vCPU 1 takes SPI 44: Some(44), then Ok(SystemOff) (fault None)",
        "[host INFO] ok: a guest that never exits takes each of 10 interrupts once through the list registers and the maintenance interrupt (GICv2): [60, 61, 62, 63, 64, 65, 66, 67, 68, 69]",
        "[host INFO] ok: a protected guest's virtual timer ticked Some(10) times (1 ms period, GICv2), the host waiting for its deadline ",
        "[host INFO] ok: a protected guest spinning with IRQs unmasked took Some(10) virtual timer ticks while it ran, without exits to the host (1 ms period, GICv2)",
        "[host INFO] ok: vCPU 0 starts vCPU 1 with PSCI CPU_ON: Ok(CpuOn { vcpu: 1 })",
        "[host INFO] ok: the protected SGI VM's vCPUs are its guest's: VCPU_INIT of vCPU 0 (it ran) and of vCPU 1 (its guest started it) refused: [Err(PermissionDenied), Err(PermissionDenied)]",
        "[host INFO] ok: vCPU 0 takes the SGI from vCPU 1 through its virtual CPU interface: INTID Some(5), then Some(Ok(SystemOff))",
        "[host INFO] ok: GICv2 CPU interface (NonProtected): a byte store to GICC_PMR takes a synchronous external abort, no MMIO exit: Err(Fault(",
        "[host INFO] ok: GICv2 CPU interface (Protected): a byte store to GICC_PMR takes a synchronous external abort, no MMIO exit: Err(Fault(",
    ]);
}

/// The SMP acceptance: every CPU comes up under the hyp through the host's PSCI
/// CPU_ON and runs the shim; a 4-vCPU guest (protected and not) starts its
/// secondaries with PSCI CPU_ON and all four run at once on four CPUs; one
/// vCPU run from two CPUs at once counts every exit exactly once, and its VM
/// torn down under a CPU running it is gone for that CPU; two
/// vCPUs on two CPUs send each other 200 SGIs through the host's kicks; every
/// CPU creates, runs and tears down VMs and shares and donates pages at once,
/// with a fixed seed, and the hyp's memory is unchanged afterwards; CPU_OFF
/// and a second CPU_ON work.
#[test]
fn smp4_every_cpu_runs_the_host_vcpus_run_in_parallel_and_stress_leaves_memory_unchanged() {
    let boot = boot(&["-smp", "4"], TIMEOUT);
    assert_success(&boot);
    let mut markers = vec!["[hyp INFO] CPUs: 4 in the device tree", "[hyp INFO]   CPU MPIDR 0x3, enable method Psci"];
    let up: Vec<String> = (1..4)
        .flat_map(|cpu| {
            [
                format!("[hyp INFO] CPU {cpu} (MPIDR {cpu:#x}) up at EL2: entering the host at 0x"),
                format!("[host INFO] ok: CPU {cpu} (MPIDR {cpu:#x}) started with PSCI CPU_ON (Ok(())): runs the shim at EL1, MPIDR_EL1 0x8000000{cpu}, VERSION 0x9"),
            ]
        })
        .collect();
    markers.extend(up.iter().map(String::as_str));
    markers.extend([
        "[host INFO] ok: CPU_ON of a running CPU: ALREADY_ON (-4)",
        "[host INFO] ok: CPU_ON of an MPIDR no CPU has: INVALID_PARAMETERS (-2)",
        "[host INFO] ok: non-protected VM: vCPU 1 cannot run before its guest starts it: Err(VcpuOff)",
        "[host INFO] ok: non-protected VM: vCPU 0 started vCPUs 1..3 with PSCI CPU_ON, each ran on the CPU of its index, all 4 ran at the same time, then CPU_OFF and SYSTEM_OFF ([Some([0, 1, e, ",
        "[host INFO] ok: non-protected 4-vCPU VM torn down and its memory back: Ok(())",
        "[host INFO] ok: protected VM: vCPU 1 cannot run before its guest starts it: Err(VcpuOff)",
        "[host INFO] ok: protected VM: vCPU 0 started vCPUs 1..3 with PSCI CPU_ON, each ran on the CPU of its index, all 4 ran at the same time, then CPU_OFF and SYSTEM_OFF ([Some([0, 1, e, ",
        "[host INFO] ok: protected VM: VCPU_INIT of its live vCPU 0 and of vCPU 2 before its guest started it refused ([Err(PermissionDenied), Err(PermissionDenied)]); the guest went on unaffected",
        "[host INFO] ok: protected 4-vCPU VM torn down and its memory back: Ok(())",
        "[host INFO] ok: a vCPU moved between 4 CPUs at every exit and its guest printed \"hello from guest M R1\" whole (Some(Some(SystemOff)))",
        "[host INFO] ok: one vCPU run from two CPUs at once: counts 1..=6000 each seen once (",
        ", none on both: 0, none missing: 0; ended 1 and 1, errors 0 and 0)",
        "[host INFO] ok: a VM torn down by one CPU while another ran its vCPU in a loop: teardown Ok(()) (",
        "(ended 2, error 0), invariants hold",
        "[host INFO] ok: a NonProtected VM's two vCPUs on two CPUs ping-pong 200 SGIs, each round under a 10 ms tick: Some(200) rounds, ended SystemOff, a CPU each, ",
        "[host INFO] ok: a Protected VM's two vCPUs on two CPUs ping-pong 200 SGIs, each round under a 10 ms tick: Some(200) rounds, ended SystemOff, a CPU each, ",
        "[host INFO] ok: stress on CPU 0: 100 rounds of VM create/run/teardown/reclaim with page sharing and donation, concurrently with the other CPUs (seed 2026): Some([0, 100,",
        "[host INFO] ok: stress on CPU 1: 100 rounds",
        "[host INFO] ok: stress on CPU 2: 100 rounds",
        "[host INFO] ok: stress on CPU 3: 100 rounds",
        "[host INFO] ok: after the all-CPU stress run the hyp's memory is what it was and its invariants hold (Ok(InvariantReport { violations: 0, memcache_free: 192, memcache_used: 0,",
        "[host INFO] ok: CPU 1 off with PSCI CPU_OFF: AFFINITY_INFO 1",
        "[host INFO] ok: CPU 3 off with PSCI CPU_OFF: AFFINITY_INFO 1",
        "[hyp INFO] CPU 1 (MPIDR 0x1) up at EL2",
        "[host INFO] ok: CPU 1 started again after CPU_OFF: Ok(())",
        "[host INFO] ok: CPU 1 off again: AFFINITY_INFO 1",
        "[host INFO] ok: every memcache page is free again and comes back: Ok(())",
    ]);
    boot.assert_markers_in_order(&markers);
}

/// A fatal EL2 exception (here a read of the unmapped guard page below the boot
/// stack, asked for by a bootarg) is reported with the ESR decoded, and the run
/// ends with a failure status.
#[test]
fn fatal_el2_exception_is_decoded_and_stops_the_machine() {
    let boot = boot(&["-append", "hyp.exit=semihosting hyp.selftest=stack-guard"], TIMEOUT);
    boot.assert_markers_in_order(&[
        "[hyp INFO] self-test: reading the boot stack guard page at [0x",
        "[hyp PANIC] Synchronous exception at EL2",
        "[hyp PANIC] ESR 0x",
        ": EC 0x25 (data abort at the same EL), IL 1, ISS 0x",
        " [FSC 0x07 translation fault level 3, read",
        "[hyp PANIC] ELR 0x",
        " FAR 0x",
        "[hyp PANIC] x30 0x",
    ]);
    boot.assert_absent(&["[host", "guard page is mapped"]);
    boot.assert_status(1);
    // FAR is the guard page the hyp named.
    let guard = boot.console.split("guard page at [").nth(1).and_then(|s| s.split("..").next()).expect("guard address");
    let far = boot.console.split(" FAR ").nth(1).and_then(|s| s.split_whitespace().next()).expect("FAR");
    assert_eq!(guard, far, "{}", boot.console);
}

#[test]
fn entry_at_el1_explains_and_fails() {
    let boot = boot(&["-M", "virt,virtualization=off"], TIMEOUT);
    boot.assert_markers_in_order(&[
        "[hyp ERROR] entered at EL1, but this hypervisor must be entered at EL2: under QEMU add virtualization=on to -M",
    ]);
    boot.assert_absent(&["[host", "[hyp INFO]"]);
    boot.assert_status(1);
    assert!(boot.elapsed < Duration::from_secs(60), "took {:?}", boot.elapsed);
}

#[test]
fn scripts_run_exits_zero_on_success_and_nonzero_without_el2() {
    let run = |extra: &[&str]| {
        let mut command = Command::new(repo_root().join("scripts/run"));
        command.args(extra).env("RUN_TIMEOUT", "120");
        run_with_timeout(command, Duration::from_secs(600))
    };
    let ok = run(&[]);
    ok.assert_markers_in_order(&["[host INFO] all host checks passed", "run succeeded"]);
    ok.assert_status(0);
    let failed = run(&["-M", "virt,virtualization=off"]);
    failed.assert_markers_in_order(&["entered at EL1", "run failed: QEMU exited with status 1"]);
    failed.assert_status(1);
}

/// The Linux-guest acceptance: an unmodified Debian arm64 kernel boots to its
/// user-space marker in a non-protected and in a protected VM of 2 vCPUs, with
/// the hyp's GIC (v3, and v2 on a GICv2 board), its timer and the shim's PL011
/// working both ways (the guest echoes the console line the script types; the
/// PL011 driver receives only by interrupt), from a device tree the shim wrote,
/// and every page comes back after it powers off. The GICv2 run has 512 MiB of
/// RAM (`--memory 512M`: the kernel's load address follows the RAM size).
#[test]
fn linux_guest_reaches_user_space_in_both_vm_types() {
    let gicv2: &[&str] = &["--protected", "--memory", "512M", "-M", "virt,virtualization=on,gic-version=2"];
    for (args, kind, gic) in
        [(&[][..], "NonProtected", 3), (&["--protected"][..], "Protected", 3), (gicv2, "Protected", 2)]
    {
        let mut command = Command::new(repo_root().join("scripts/run-linux"));
        command.args(args).env("RUN_TIMEOUT", "300");
        let run = run_with_timeout(command, Duration::from_secs(900));
        let created = format!("[host INFO] linux: a {kind} VM of 2 vCPUs with 256 MiB at IPA 0x80000000");
        let ram =
            if gic == 2 { "[hyp INFO] RAM: 512 MiB in 1 bank(s)" } else { "[hyp INFO] RAM: 1024 MiB in 1 bank(s)" };
        let mut markers = vec![
            ram,
            "[host INFO] linux: guest RAM at host 0x",
            ": Image (",
            "bytes) at IPA 0x80000000, initramfs (",
            created.as_str(),
            "[host INFO] linux: vCPU 0 runs on CPU 0, vCPU 1 on CPU 1",
            "Kernel command line: console=ttyAMA0 earlycon=pl011,0x9000000 rdinit=/init",
        ];
        if gic == 3 {
            markers.push("GICv3: CPU0: found redistributor 0 region 0:0x0000000002100000");
        }
        markers.push("arch_timer: cp15 timer(s) running at");
        if gic == 3 {
            markers.push("GICv3: CPU1: found redistributor 1 region 0:0x0000000002120000");
        }
        markers.extend([
            "CPU1: Booted secondary processor 0x0000000001",
            "smp: Brought up 1 node, 2 CPUs",
            "ttyAMA0 at MMIO 0x9000000",
            "[host INFO] guest: linux-guest: user space reached",
            "[host INFO] guest: processor\t: 1",
        ]);
        markers.extend(match gic {
            3 => ["GICv3  27 Level     arch_timer", "GICv3  33 Level     uart-pl011"],
            _ => ["GIC-0  27 Level     arch_timer", "GIC-0  33 Level     uart-pl011"],
        });
        markers.extend([
            "[host INFO] guest: linux-guest: console input: hello from the host console",
            "[host INFO] ok: the Linux guest powered off: Some(SystemOff)",
            "[host INFO] ok: every page of the Linux VM back with the host: Ok(())",
            "[host INFO] all host checks passed",
            "run succeeded",
        ]);
        run.assert_markers_in_order(&markers);
        run.assert_absent(&["FAILED", "PANIC", "Kernel panic", "Oops"]);
        run.assert_status(0);
    }
}

/// Linux as the host: the hyp enters Debian's stock arm64 kernel at EL1
/// instead of the host shim; it boots to its busybox user space with all 4
/// CPUs (PSCI relayed), the GIC, its timer and the UART; `/proc/iomem` shows
/// the hyp's image and pool as reserved; its read of the hyp's memory through
/// /dev/mem is refused (an abort the kernel reports as the reader's unhandled
/// exception) and it goes on; the /dev/hyp driver loads and the user-space VMM
/// runs a guest in a non-protected and a protected VM, is refused the
/// protected one's memory and registers, and gets every page back; then it
/// boots the Linux guest in each VM type on /dev/kvm (`hyp-vmm linux`: 2
/// vCPUs in threads, 256 MiB; `hyp-vmm run`: 3 vCPUs, 320 MiB; console both
/// ways) and again gets every page back (every pin dropped, every page
/// readable, a protected VM's zeroed);
/// `hyp-vmm run` refuses a ninth vCPU. In
/// between, `kvm-api-test` drives the driver's /dev/kvm through the KVM API in
/// both VM types: each ioctl and its errors, and a tiny guest's exact exits.
#[test]
fn linux_host_boots_and_is_refused_the_hyps_memory() {
    let mut command = Command::new(repo_root().join("scripts/run-linux-host"));
    command.env("RUN_TIMEOUT", "300");
    let run = run_with_timeout(command, Duration::from_secs(600));
    // The hyp's own memory, as it reports it: `image [a..b), pool [c..d)`.
    let line = run.console.lines().find(|l| l.contains("[hyp INFO] hyp memory: image [")).unwrap_or("");
    let numbers: Vec<u64> = line
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter_map(|word| word.strip_prefix("0x"))
        .filter_map(|hex| u64::from_str_radix(hex, 16).ok())
        .collect();
    assert_eq!(numbers.len(), 4, "the hyp's memory line: {line:?}");
    let reserved = |start: u64, end: u64| format!("\n{start:08x}-{:08x} : reserved", end - 1);
    let (image, pool) = (reserved(numbers[0], numbers[1]), reserved(numbers[2], numbers[3]));
    run.assert_markers_in_order(&[
        "[hyp INFO] entering the host at EL1: entry 0x42000000",
        "Booting Linux on physical CPU 0x0000000000",
        "GICv3: CPU0: found redistributor 0 region",
        "arch_timer: cp15 timer(s) running at",
        "smp: Brought up 1 node, 4 CPUs",
        "ttyAMA0 at MMIO 0x9000000",
        "linux-host: user space reached",
        "linux-host: CPUs online: 4",
        "GICv3  27 Level     arch_timer",
        "GICv3  33 Level     uart-pl011",
        &image,
        &pool,
        "linux-host: reading the hyp's memory at 0x",
        "[hyp INFO] host access to 0x",
        "blocked: synchronous external abort injected",
        "devmem[",
        "]: unhandled exception: DABT (lower EL), ESR 0x0000000092000010, synchronous external abort",
        "linux-host: the read of the hyp's memory was refused",
        "linux-host: still running",
        "hyp: ABI 0.9, /dev/hyp ready",
        "hyp: /dev/kvm ready (KVM API 12, IPA limit 48 bits)",
        "linux-host: /dev/hyp ready",
        "hyp-vmm: ok: /dev/hyp answers: ABI Ok((0, 9))",
        "hyp-vmm: ok: the host reads the VM's x0: Ok(78)",
        "hyp-vmm: ok: the non-protected guest ran to SYSTEM_OFF printing Ok(\"hello from guest N R1\")",
        "hyp-vmm: ok: the lent page came back as it was",
        "hyp-vmm: ok: the protected VM's registers refused: Err(Hyp(PermissionDenied))",
        "hyp-vmm: ok: reading the protected VM's memory refused: Err(7) (signal 7 is SIGBUS)",
        "hyp-vmm: ok: the protected guest ran to SYSTEM_OFF printing Ok(\"hello from guest P R1\")",
        "hyp-vmm: ok: reclaim the protected VM's page: Ok(())",
        "hyp-vmm: ok: the page came back zeroed: 0x0",
        // The driver's range reclaims: part of a run (and of a 2 MiB block),
        // then the rest; a live VM's pages at the file's release.
        "hyp-vmm: ok: reclaim pages 5..42 of 512: Ok(())",
        "hyp-vmm: ok: the driver counts 37 pages back, 475 still given: Ok(Accounting { pinned: 475, given: 514, returned: 39, memcache: 256 })",
        "hyp-vmm: ok: every page of the VM counted back: Ok(Accounting { pinned: 0, given: 514, returned: 514, memcache: 256 })",
        "hyp-vmm: ok: every page back and zeroed (first not: None)",
        "hyp-vmm: ok: the release took every page back zeroed (first not: None)",
        "hyp-vmm: ok: the release unpinned every page: Ok(\"512 pins taken and 512 dropped\")",
        "hyp-vmm: ok: every page given to a VM came back: Ok(Accounting { pinned: 0, given: 514, returned: 514, memcache: 256 })",
        "hyp-vmm: all checks passed",
        "linux-host: hyp-vmm check exited with status 0",
        // The driver's /dev/kvm, through the KVM API (kvm-api-test).
        "kvm-api-test: ok: system: KVM_GET_API_VERSION: 12",
        "kvm-api-test: ok: system: KVM_CREATE_VM with type bit 8: Invalid argument",
        "kvm-api-test: ok: non-protected: overlapping slot: File exists",
        "kvm-api-test: ok: non-protected: unaligned guest address: Invalid argument",
        "kvm-api-test: ok: non-protected: a register the driver does not have (SCTLR_EL1): No such file or directory",
        "kvm-api-test: ok: non-protected: KVM_RUN with immediate_exit: Interrupted system call",
        "kvm-api-test: ok: non-protected: V5 in the hyp's vCPU: 0xfedcba9876543210:0x123456789abcdef",
        "kvm-api-test: ok: non-protected: the virtual count moved in the hyp: 0x2000",
        "kvm-api-test: ok: non-protected: KVM_SET_MP_STATE STOPPED after the first run: Device or resource busy",
        "kvm-api-test: ok: non-protected: MMIO store exit: reason 6, address 0x10000000, len 4, write 1, data 0xbeef",
        "kvm-api-test: ok: non-protected: MMIO load exit: reason 6, address 0x10000008, len 4, write 0",
        "kvm-api-test: ok: non-protected: the loaded value stored back: reason 6, address 0x10000010, len 4, write 1, data 0xcafef00d",
        "kvm-api-test: ok: non-protected: a signal during the guest's WFI: Interrupted system call, reason 10",
        "kvm-api-test: ok: non-protected: PSCI SYSTEM_OFF: reason 24, type 1, ndata 1",
        "kvm-api-test: ok: non-protected: x3 after the run: 0xcafef00d",
        "kvm-api-test: ok: non-protected: every pin dropped at release: 16 pages pinned, 16 unpinned",
        "kvm-api-test: ok: non-protected: the guest's memory after release: first word 0xd2a20001",
        "kvm-api-test: ok: protected: KVM_CREATE_VM(0x80000000): a VM fd",
        "kvm-api-test: ok: protected: the guest's memory offered to KSM first, as QEMU offers its RAM",
        "kvm-api-test: ok: protected: overlapping slot: File exists",
        "kvm-api-test: ok: protected: setting x5 before the first run: Operation not permitted",
        "kvm-api-test: ok: protected: the module's references with the VM in the hyp: ",
        "kvm-api-test: ok: protected: pc after the first run: Operation not permitted",
        "kvm-api-test: ok: protected: MMIO store exit: reason 6, address 0x10000000, len 4, write 1, data 0xbeef",
        "kvm-api-test: ok: protected: the slot's mapping is left out of forks and core dumps, not KSM's: VmFlags",
        "kvm-api-test: ok: protected: a fork after the guest ran: the child has no mapping of the guest's memory",
        "kvm-api-test: ok: protected: hibernation while a protected VM lives: Device or resource busy",
        "kvm-api-test: ok: protected: MMIO load exit: reason 6, address 0x10000008, len 4, write 0",
        "kvm-api-test: ok: protected: the loaded value stored back: reason 6, address 0x10000010, len 4, write 1, data 0xcafef00d",
        "kvm-api-test: ok: protected: a signal during the guest's WFI: Interrupted system call, reason 10",
        "kvm-api-test: ok: protected: PSCI SYSTEM_OFF: reason 24, type 1, ndata 1",
        "kvm-api-test: ok: protected: x3 after the run: Operation not permitted",
        "kvm-api-test: ok: protected: the module's references after the VM: ",
        "kvm-api-test: ok: protected: every pin dropped at release: 16 pages pinned, 16 unpinned",
        "kvm-api-test: ok: protected: the guest's memory after release: first word 0",
        // The vGIC device, KVM_IRQ_LINE levels, irqfd and ioeventfd (kvm_vgic_test.c).
        "kvm-api-test: ok: non-protected vGIC: the guest took SPI 40 at its first run: ok, reason 6, address 0x10000000, INTID 40",
        "kvm-api-test: ok: non-protected vGIC: the guest took SPI 40 again, its line still high when the guest ended it: ok, reason 6, address 0x10000000, INTID 40",
        "kvm-api-test: ok: non-protected vGIC: 100 irqfds of GSI 8 assigned, each eventfd closed after: 100 accepted (all)",
        "kvm-api-test: ok: non-protected vGIC: the guest took the irqfd's interrupt, its store went to the ioeventfd, it powered off: reason 24",
        "kvm-api-test: ok: non-protected vGIC: the ioeventfd was signalled once: 1",
        "kvm-api-test: ok: protected vGIC: the guest took SPI 40 at its first run: ok, reason 6, address 0x10000000, INTID 40",
        "kvm-api-test: ok: protected vGIC: the guest took SPI 40 again, its line still high when the guest ended it: ok, reason 6, address 0x10000000, INTID 40",
        "kvm-api-test: ok: protected vGIC: 100 irqfds of GSI 8 assigned, each eventfd closed after: 100 accepted (all)",
        "kvm-api-test: ok: protected vGIC: the guest took the irqfd's interrupt, its store went to the ioeventfd, it powered off: reason 24",
        "kvm-api-test: ok: protected vGIC: the ioeventfd was signalled once: 1",
        "kvm-api-test: ok: irqfd close races: 32 VMs with an irqfd, its eventfd closed before or after the VM: 32 done",
        "kvm-api-test: ok: memcg: VMs made under a memory.max of 3670016 bytes: 3, then ENOMEM: yes",
        "kvm-api-test: all 275 checks passed",
        "linux-host: kvm-api-test exited with status 0",
        "hyp-vmm: linux: a non-protected VM of 2 vCPUs on /dev/kvm (type 0x20, vGICv3), 256 MiB of this process at IPA 0x80000000",
        "guest: [",
        "smp: Brought up 1 node, 2 CPUs",
        "guest: linux-guest: user space reached",
        "guest: linux-guest: console input: hello from the linux host",
        "hyp-vmm: ok: the NonProtected Linux guest powered off: Ok(())",
        "hyp-vmm: ok: every page of the Linux guest came back: Ok(\"65536 pages readable again; 65536 pins taken and 65536 dropped\")",
        "linux-host: hyp-vmm linux (non-protected) exited with status 0",
        "hyp-vmm: linux: a protected VM of 3 vCPUs on /dev/kvm (type 0x80000020, vGICv3), 320 MiB of this process at IPA 0x80000000",
        "smp: Brought up 1 node, 3 CPUs",
        "guest: linux-guest: user space reached",
        "guest: linux-guest: console input: hello from the linux host",
        "hyp-vmm: ok: the Protected Linux guest powered off: Ok(())",
        "hyp-vmm: ok: every page of the Linux guest came back: Ok(\"81920 pages readable again, every one zeroed; 81920 pins taken and 81920 dropped\")",
        "linux-host: hyp-vmm run (protected, 3 vCPUs, 320 MiB) exited with status 0",
        "hyp-vmm: --vcpus 9: a VM has 1 to 8 vCPUs (the hyp's limit per VM) (usage: hyp-vmm --help)",
        "linux-host: hyp-vmm run --vcpus 9 exited with status 2",
        "[hyp INFO] host requested PSCI SYSTEM_OFF: powering off",
        "run succeeded",
    ]);
    run.assert_absent(&[
        "Kernel panic",
        "Oops",
        "PANIC",
        "UNDEFINED injected",
        "the hyp's memory was readable",
        "kvm-api-test: FAILED",
        "not returned",
    ]);
    run.assert_status(0);
}

/// QEMU, unmodified (Debian's arm64 `qemu-system-aarch64`, `scripts/fetch-qemu-arm64`),
/// as the KVM VMM on the Linux host's `/dev/kvm` (`scripts/run-qemu-vmm`):
/// `-accel kvm -cpu host` boots the Linux guest with two vCPUs (the second
/// powered off through `KVM_SET_MP_STATE` until the guest's PSCI `CPU_ON`),
/// the guest echoes a line from QEMU's serial port (the UART's interrupt
/// through `KVM_IRQ_LINE`), powers off, and QEMU reads the virtual counter
/// (`KVM_REG_ARM_TIMER_CNT`) and exits 0; then the same as a protected VM
/// (`with-protected-vm` sets the type bit in QEMU's `KVM_CREATE_VM`); then
/// QEMU's own virtio-mmio devices (one ioeventfd per virtqueue, 64 for its
/// virtio-serial alone): 16 MiB through virtio-blk, ext4 on a second disk, the
/// virtio console, entropy, and 4 MiB over TCP through virtio-net, each
/// checked on the host (the script compares the sums).
#[test]
fn qemu_runs_a_linux_guest_on_dev_kvm() {
    let mut command = Command::new(repo_root().join("scripts/run-qemu-vmm"));
    command.env("RUN_TIMEOUT", "600");
    let run = run_with_timeout(command, Duration::from_secs(900));
    run.assert_markers_in_order(&[
        "linux-qemu-vmm: /dev/kvm is there",
        "linux-qemu-vmm: QEMU unpacked: QEMU emulator version 7.2",
        "linux-qemu-vmm: run (non-protected): qemu-system-aarch64 -accel kvm, 2 vCPUs",
        "linux-guest: user space reached",
        "linux-guest: console input: ",
        "reboot: Power down",
        "linux-qemu-vmm: run (non-protected) exited with status 0",
        "linux-qemu-vmm: run (protected): qemu-system-aarch64 -accel kvm, 2 vCPUs",
        "with-protected-vm: KVM_CREATE_VM(type 0x80000028) made VM fd",
        "linux-guest: user space reached",
        "linux-guest: console input: ",
        "reboot: Power down",
        "linux-qemu-vmm: run (protected) exited with status 0",
        "linux-qemu-vmm: run (virtio): qemu-system-aarch64 -accel kvm, 2 vCPUs, QEMU's virtio devices",
        "virtio-guest: user space reached",
        "virtio-guest: disk: read 16 MiB back from /dev/vda, sha256 matches",
        "virtio-guest: disk: ext4 on /dev/vdb: wrote, synced, remounted and read back",
        "virtio-guest: net: nc to 10.0.2.2:5555 exited with status 0",
        "linux-qemu-vmm: run (virtio) exited with status 0",
        "linux-qemu-vmm: virtio: hvc0 file: virtio-guest: hello on hvc0",
        "linux-qemu-vmm: done",
        "run succeeded: QEMU ran the guest on /dev/kvm with 2 vCPUs, non-protected and protected, and its virtio devices",
    ]);
    run.assert_absent(&["kvm run failed", "Segmentation fault", "Aborted", "Oops", "PANIC"]);
    run.assert_status(0);
}

/// hyp-vmm's virtio devices on the Linux host (`scripts/run-linux-host
/// --virtio`), under Debian's guest kernel: 64 MiB written through
/// virtio-blk, read back in the guest and checked against the host's image
/// file; ext4 on a second disk written, synced, remounted and read back; the
/// virtio console and entropy device; the VMM killed while the guest writes,
/// after a flush: the flushed data is in the file; a protected guest whose
/// kernel cannot share memory puts its rings in private memory: the VMM
/// refuses the device and says why, the guest goes on and powers off, every
/// page comes back zeroed.
#[test]
fn linux_host_runs_virtio_guests() {
    let mut command = Command::new(repo_root().join("scripts/run-linux-host"));
    command.arg("--virtio").env("RUN_TIMEOUT", "600");
    let run = run_with_timeout(command, Duration::from_secs(900));
    run.assert_markers_in_order(&[
        "linux-host: hyp-vmm check exited with status 0",
        "hyp-vmm: linux: virtio devices: virtio-blk at 0xa000000 (INTID 34), virtio-blk at 0xa000200 (INTID 35), virtio-console at 0xa000400 (INTID 36), virtio-rng at 0xa000600 (INTID 37), virtio-net at 0xa000800 (INTID 38), virtio-vsock at 0xa000a00 (INTID 39)",
        "guest: virtio-guest: user space reached",
        "guest: virtio-guest: hvc0 input: hello on hvc0 from the host",
        "guest hvc0: virtio-guest: hello on hvc0",
        "guest: virtio-guest: hw_random: virtio_rng.0, 32 bytes read from /dev/hwrng",
        "guest: virtio-guest: disk: /dev/vda has 147456 sectors",
        "guest: virtio-guest: disk: wrote 64 MiB to /dev/vda, sha256 ",
        "guest: virtio-guest: disk: read 64 MiB back from /dev/vda, sha256 matches",
        "guest: virtio-guest: disk: ext4 on /dev/vdb: wrote, synced, remounted and read back \"virtio disk token ",
        "guest: virtio-guest: net: 10.0.2.1 answers ping: 3 packets transmitted, 3 packets received, 0% packet loss",
        "guest: virtio-guest: payload: 16 MiB, sha256 ",
        "guest: virtio-guest: net: nc to 10.0.2.1:5555 exited with status 0",
        "guest: vsock-pipe: sent 16777216 bytes to 2:5556, the peer closed",
        "guest: virtio-guest: vsock: vsock-pipe connect 2 5556 exited with status 0",
        "guest: vsock-pipe: received 16777216 bytes on vsock port 5557",
        "guest: virtio-guest: vsock: vsock-pipe listen 5557 exited with status 0",
        "hyp-vmm: linux: the virtio backend thread woke ",
        "hyp-vmm: ok: every page of the Linux guest came back: Ok(\"65536 pages readable again; 65536 pins taken and 65536 dropped\")",
        "linux-host: hyp-vmm run (virtio integrity, non-protected) exited with status 0",
        "linux-host: virtio-net (non-protected): the host received the 16 MiB the guest sent over TCP (sha256 matches)",
        "linux-host: virtio-vsock (non-protected): the host received the 16 MiB the guest sent over vsock (sha256 matches)",
        "linux-host: virtio-vsock (non-protected): the guest received the 16 MiB the host sent over vsock (sha256 matches)",
        "linux-host: virtio-blk (non-protected): the image file holds the 64 MiB the guest wrote (sha256 matches)",
        "linux-host: the VMM was killed mid-write (non-protected, status 137)",
        "[killed guest] guest: virtio-guest: disk: flushed 8 MiB, sha256 ",
        "linux-host: virtio-blk (non-protected): after the kill, the image file holds the 8 MiB flushed before it (sha256 matches)",
        "hyp-vmm: linux: the guest's restricted DMA pool: 16 MiB at IPA 0x8f000000",
        "guest: virtio-guest: kernel: smccc: KVM: hypervisor services detected (0x00000000 0x00000000 0x00000000 0x000003fd)",
        "hyp-vmm: virtio-rng at 0xa000200: queue 0's rings (descriptors 0x",
        "are not in memory the device may use: the device needs a reset",
        "guest: virtio-guest: refused: 0 bytes read from /dev/hwrng in 10 s",
        "hyp-vmm: ok: every page of the Linux guest came back: Ok(\"65536 pages readable again, every one zeroed; 65536 pins taken and 65536 dropped\")",
        "linux-host: hyp-vmm run (virtio refused, protected) exited with status 0",
        "linux-host: virtio: host kernel log clean",
        "run succeeded",
    ]);
    run.assert_absent(&[
        "Kernel panic",
        "Oops",
        "PANIC",
        "SIGBUS at host address",
        "not what was written",
        "is not the",
        "not the guest's",
        "not the host's",
        "vsock: no /dev/vsock",
        "net: no eth0",
        "no input on hvc0",
    ]);
    run.assert_status(0);
}

/// The image runs wherever a loader puts it: U-Boot's `booti` loads it at its own
/// `kernel_addr_r`, not where QEMU's `-kernel` does.
#[test]
fn boots_through_uboot_booti_at_another_address() {
    let uboot = "/usr/lib/u-boot/qemu_arm64/u-boot.bin";
    assert!(std::path::Path::new(uboot).exists(), "{uboot} missing: scripts/test installs Debian's u-boot-qemu");
    let direct = boot(&[], TIMEOUT);
    let via_uboot = boot(&["-bios", uboot], TIMEOUT);
    assert_success(&via_uboot);
    via_uboot.assert_markers_in_order(&["Starting kernel ...", "[hyp INFO] pkvm-style hyp"]);
    let load_address = |b: &Boot| {
        let line = b.console.lines().find(|l| l.contains("hyp memory: image [")).expect("layout line");
        line.split("image [").nth(1).and_then(|s| s.split("..").next()).map(str::to_owned).expect("address")
    };
    assert_ne!(load_address(&direct), load_address(&via_uboot), "both boots used the same load address");
}

/// A second load address through U-Boot: its command line loads the image
/// from QEMU's fw_cfg to 0x4800_0000 (`qfw load`) and starts it with `booti`,
/// as one would on a board; the hyp runs from there and passes the same checks.
#[test]
fn boots_through_uboot_booti_typed_at_a_second_address() {
    let uboot = "/usr/lib/u-boot/qemu_arm64/u-boot.bin";
    assert!(std::path::Path::new(uboot).exists(), "{uboot} missing: scripts/test installs Debian's u-boot-qemu");
    let script = [
        ("Hit any key to stop autoboot", "\n"),
        ("=> ", "qfw load 0x48000000 0x4c000000\n"),
        ("=> ", "booti 0x48000000 - ${fdtcontroladdr}\n"),
    ];
    let boot = boot_typing(&["-bios", uboot], &script, TIMEOUT);
    assert_success(&boot);
    boot.assert_markers_in_order(&[
        "loading kernel to address 0000000048000000",
        "Starting kernel ...",
        "[hyp INFO] hyp memory: image [0x48000000..",
        "[host INFO] all host checks passed",
    ]);
}

/// A board unlike `virt`: QEMU's Raspberry Pi 3B with the Raspberry Pi 3B device
/// tree of Debian's kernel package (fetched by `scripts/fetch-board-dtbs`, its
/// console moved to the PL011 that QEMU emulates well). RAM starts at 0, there
/// is no GIC, the CPUs use spin-table and there is no PSCI, and the console sits
/// behind a bus `ranges`: the hyp says what it cannot use, keeps the page of the
/// spin-table release addresses from the host (who could otherwise release the
/// parked CPUs at EL2), and the host shim's checks pass (without the SMP and
/// preemption checks, which need PSCI and a GIC).
#[test]
fn boots_on_raspberry_pi_3b_with_its_own_device_tree() {
    let fetch = Command::new(repo_root().join("scripts/fetch-board-dtbs")).output().expect("the fetch script runs");
    assert!(fetch.status.success(), "scripts/fetch-board-dtbs failed: {}", String::from_utf8_lossy(&fetch.stderr));
    let dir = String::from_utf8_lossy(&fetch.stdout).trim().to_owned();
    let dtb = format!("{dir}/rpi-3-b-pl011-console.dtb");
    let mut command = Command::new("qemu-system-aarch64");
    command
        .args(["-M", "raspi3b", "-display", "none", "-serial", "stdio", "-semihosting"])
        .args(["-append", "hyp.exit=semihosting", "-dtb", &dtb, "-kernel"])
        .arg(boot_tests::image());
    let boot = run_with_timeout(command, TIMEOUT);
    boot.assert_markers_in_order(&[
        "[hyp INFO] pkvm-style hyp v0.1.0 at EL2 (MIDR 0x410fd034",
        "[hyp INFO]   RAM bank [0x0..0x3c000000)",
        "[hyp INFO]   reserved [0x0..0x1000) (left alone)",
        "[hyp INFO] UART: Pl011 at [0x3f201000..0x3f202000)",
        "[hyp WARN] GIC: none found; virtual interrupts will not be available",
        "[hyp INFO]   CPU MPIDR 0x0, enable method SpinTable { release_address: 216 }",
        "[hyp INFO]   (the boot CPU: the page of its release address is the hyp's, out of the host's reach)",
        "[hyp WARN]   CPU MPIDR 0x3 stays off: the hyp starts CPUs through PSCI only; the page of its release address is the hyp's, out of the host's reach",
        "[hyp WARN] no PSCI node: power-off will not work",
        "[hyp INFO] host stage-2: 39-bit IPA",
        "[host INFO] ok: host shim running at EL1",
        "[host INFO] ok: PSCI CPU_ON without PSCI firmware: NOT_SUPPORTED from the hyp (-1)",
        "[host INFO] ok: device tree carves out 3 hyp region(s)",
        "[host INFO] guest P: hello from guest P R1",
        "[host INFO] no GIC or timer the shim drives: the preemption check is skipped",
        "[host INFO] ok: without a GIC a protected guest takes its timer ticks and the host's interrupt through its virtual IRQ line: (ticks, host interrupts) Some((5, 1)), then Some(Ok(SystemOff))",
        "[host INFO] one CPU (or no PSCI): the SMP checks need more",
        "[host INFO] ok: blocked host read of hyp memory at 0x200000",
        "[host INFO] ok: blocked host read of hyp memory at 0x0: synchronous external abort",
        "[host INFO] ok: blocked host write of hyp memory at 0x800: synchronous external abort",
        "[host INFO] all host checks passed",
    ]);
    boot.assert_absent(&["FAILED", "PANIC", "ERROR"]);
    boot.assert_status(0);
}

/// The message every bad `hyp.*` word ends with: the valid words and their forms.
const VALID_HYP_WORDS: &str = "; fix or remove it (QEMU -append, the bootloader's bootargs). Valid hyp.* arguments: \
     hyp.exit=semihosting, hyp.selftest=stack-guard, hyp.host-kernel=<address>, hyp.dma=permissive (numbers: \
     decimal, or hex with 0x)";

/// Panics unless `line` is a whole line of the console.
fn assert_line(boot: &Boot, line: &str) {
    assert!(
        boot.console.lines().any(|l| l.trim_end_matches('\r') == line),
        "line {line:?} missing; console:\n{}",
        boot.console
    );
}

/// A bad boot argument of the hyp stops the boot before the host runs, with
/// a line naming the word and listing the valid ones, and a failure status.
fn assert_hyp_refuses_bootargs(append: &str, line: &str) {
    let boot = boot(&["-append", append], TIMEOUT);
    assert_line(&boot, &format!("[hyp ERROR] {line}{VALID_HYP_WORDS}"));
    boot.assert_absent(&["[host", "entering the host"]);
    boot.assert_status(1);
}

#[test]
fn an_unknown_hyp_boot_argument_stops_the_boot() {
    assert_hyp_refuses_bootargs(
        "console=ttyAMA0 hyp.exit=semihosting hyp.frobnicate=1",
        "boot argument \"hyp.frobnicate=1\": unknown hyp.* argument",
    );
}

#[test]
fn a_host_kernel_address_that_is_not_a_number_stops_the_boot() {
    // Before, this ran the test shim as if the word were absent.
    assert_hyp_refuses_bootargs(
        "hyp.exit=semihosting hyp.host-kernel=zzz",
        "boot argument \"hyp.host-kernel=zzz\": not a number: hyp.host-kernel=<address>",
    );
}

/// A bad `shim.*` word fails the shim's run before any check, naming the
/// word and listing the valid ones.
#[test]
fn an_unknown_shim_boot_argument_fails_the_run() {
    let boot = boot(&["-append", "hyp.exit=semihosting shim.frobnicate"], TIMEOUT);
    let error = "[host ERROR] boot argument \"shim.frobnicate\": unknown shim.* argument; fix or remove it (QEMU \
                 -append, the bootloader's bootargs). Valid shim.* arguments: shim.vm-rounds=<N>, \
                 shim.smp-rounds=<N>, shim.linux-guest=protected|non-protected, shim.guest-kernel=<address>,<size>, \
                 shim.fuzz-calls=<N>, shim.fuzz-seed=<N>, shim.split-stress=<N>, shim.console-attack, \
                 shim.reset-scrub (numbers: decimal, or hex with 0x)";
    assert_line(&boot, error);
    boot.assert_markers_in_order(&["[hyp INFO] entering the host at EL1", error, "[host ERROR] host checks FAILED"]);
    boot.assert_absent(&["[host INFO] ok:", "all host checks passed"]);
    boot.assert_status(1);
}

/// A file for a test under `target/image/test-inputs`.
fn test_input(name: &str, bytes: &[u8]) -> String {
    let dir = repo_root().join("target/image/test-inputs");
    std::fs::create_dir_all(&dir).expect("target/image is writable");
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("the test input is written");
    path.display().to_string()
}

/// A damaged `hyp.img` is refused by its first instructions: one line saying
/// so (from the image's first pages, with the console found in the device
/// tree), then a failure status; nothing of the rest of the image runs.
fn assert_damaged_image_refused(name: &str, original: &[u8], image: &[u8]) {
    assert_eq!(hyp_abi::image_seal::verify(original), Ok(()), "the built image is sealed");
    let path = test_input(name, image);
    let boot = boot_tests::boot_image(std::path::Path::new(&path), &[], TIMEOUT);
    // The checksum of what was loaded, the size and checksum the header records.
    let sealed = u64::from_le_bytes(original[40..48].try_into().expect("8 bytes"));
    let recorded = u64::from_le_bytes(original[48..56].try_into().expect("8 bytes"));
    let mut loaded = image.to_vec();
    loaded.resize(sealed as usize, 0);
    let computed = hyp_abi::image_seal::checksum(&loaded);
    assert_ne!(computed, recorded);
    assert_line(
        &boot,
        &format!(
            "[hyp ERROR] hyp image damaged: checksum {computed:#x} over its {sealed:#x} bytes, the header says \
             {recorded:#x}: the Image changed or was cut short after scripts/build-image sealed it; load it again, \
             or rebuild it (cargo run -p hyp-image-tool -- verify FILE checks a copy)"
        ),
    );
    boot.assert_absent(&["[hyp INFO]", "[host"]);
    boot.assert_status(1);
    assert!(boot.elapsed < Duration::from_secs(60), "took {:?}", boot.elapsed);
}

/// A flipped byte is caught wherever it is: in the header (res2, which no
/// loader reads), in the words the check reads 64 bytes per turn, and in the
/// last word (read word by word after the whole turns, unless the sealed
/// bytes past the header happen to be whole turns).
#[test]
fn a_hyp_image_with_a_byte_flipped_is_refused() {
    let original = std::fs::read(boot_tests::image()).expect("the image reads");
    let sealed = u64::from_le_bytes(original[40..48].try_into().expect("8 bytes")) as usize;
    for (name, offset) in [("header", 32), ("middle", original.len() / 2), ("last", sealed - 1)] {
        let mut image = original.clone();
        image[offset] ^= 0x10;
        assert_damaged_image_refused(&format!("hyp-flipped-{name}.img"), &original, &image);
    }
}

#[test]
fn a_truncated_hyp_image_is_refused() {
    let original = std::fs::read(boot_tests::image()).expect("the image reads");
    assert_damaged_image_refused("hyp-truncated.img", &original, &original[..original.len() - 3 * 1024]);
}

/// The Linux-guest loader of the host shim refuses a kernel that is not an
/// arm64 Image, and an EFI-stub Image cut short, naming what is wrong.
#[test]
fn the_linux_guest_loader_refuses_bad_kernels() {
    // The arm64 Image header and a PE/COFF header whose one section ends at 1 MiB.
    let mut efi = vec![0u8; 0x1_0000];
    efi[16..24].copy_from_slice(&0x20_0000u64.to_le_bytes());
    efi[24..32].copy_from_slice(&0xau64.to_le_bytes());
    efi[56..60].copy_from_slice(b"ARM\x64");
    efi[60..64].copy_from_slice(&0x40u32.to_le_bytes());
    efi[0x40..0x44].copy_from_slice(b"PE\0\0");
    efi[0x46..0x48].copy_from_slice(&1u16.to_le_bytes());
    let section = 0x40 + 24;
    efi[section + 16..section + 20].copy_from_slice(&0xf_f000u32.to_le_bytes());
    efi[section + 20..section + 24].copy_from_slice(&0x1000u32.to_le_bytes());
    let gzip: Vec<u8> = [0x1f, 0x8b, 0x08, 0x00].iter().copied().cycle().take(0x1_0000).collect();
    let initrd = test_input("initrd.bin", &[0x30; 512]);
    for (name, kernel, error) in [
        (
            "kernel-cut.img",
            &efi[..],
            "the kernel Image is cut short: its PE/COFF header describes 0x100000 bytes, 0x10000 are present; copy \
             it again (and give its whole size)",
        ),
        (
            "kernel-gzip.img",
            &gzip[..],
            "not an arm64 kernel Image (no ARM\\x64 magic at offset 0x38): give the uncompressed Image",
        ),
    ] {
        let kernel_path = test_input(name, kernel);
        let append = format!(
            "hyp.exit=semihosting shim.linux-guest=non-protected shim.guest-kernel=0x60000000,{}",
            kernel.len()
        );
        let loader = format!("loader,file={kernel_path},addr=0x60000000,force-raw=on");
        let boot = boot(&["-append", &append, "-initrd", &initrd, "-device", &loader], TIMEOUT);
        let line = format!("[host ERROR] linux: the guest kernel at 0x60000000 ({} bytes): {error}", kernel.len());
        boot.assert_markers_in_order(&[
            &line,
            "[host ERROR] FAILED: prepare the Linux guest: the kernel is not a whole arm64 Image",
            "[host ERROR] host checks FAILED",
        ]);
        boot.assert_absent(&["[host INFO] guest: ", "all host checks passed"]);
        boot.assert_status(1);
    }
}
