//! The host's checks of VMs: a protected and a non-protected VM each run the
//! console guest to completion through MMIO exits the shim emulates; the host
//! reads the non-protected VM's memory and registers and is refused the
//! protected one's; teardown returns every page (the protected VM's zeroed); a
//! crashing guest ends with a fatal exit; bad VM calls return their errors.

use crate::guests::{self, load, GUEST_ENTRY, GUEST_UART, HOST_CALL};
use crate::harness::debug_calls::{debug_calls, invariants};
use crate::harness::gic;
use crate::harness::hypercall;
use crate::harness::platform::HostPlatform;
use crate::harness::probe::{probe_hyp_memory, Access};
use crate::harness::report::check;
use crate::harness::scratch::{memcache_pages, page, read, stress_page, MEMCACHE_PAGES};
use crate::harness::vms::{counts, create_ready, create_vm, run_console, run_vcpu, tear_down};
use hyp_abi::{Exit, HostCall, HypError, VcpuReg, VmType};

fn console_vm(ty: VmType, pa: u64, tag: char, gic: bool) -> bool {
    let protected = ty == VmType::Protected;
    let kind = if protected { "protected" } else { "non-protected" };
    let mut passed = true;
    load(pa, guests::console());
    let first_word = read(pa);
    let Ok(handle) = create_vm(ty, 1) else {
        return check!(false, "create a {kind} VM");
    };
    let info = hypercall::vm_info(handle);
    passed &= check!(info == Ok((protected, 1, 0)), "created a {kind} VM: info {info:?}");
    passed &= check!(
        hypercall::vm_map(handle, pa, GUEST_ENTRY, 1).is_ok(),
        "give the {kind} VM page {pa:#x} at IPA {GUEST_ENTRY:#x}"
    );
    passed &=
        check!(hypercall::vcpu_init(handle, 0, GUEST_ENTRY, tag as u64).is_ok(), "initialise the {kind} VM's vCPU");
    let reg = hypercall::vcpu_get_reg(handle, 0, VcpuReg::X(0));
    if protected {
        passed &= check!(reg == Err(HypError::PermissionDenied), "registers of the protected VM refused: {reg:?}");
        passed &= probe_hyp_memory(pa, Access::Read);
    } else {
        passed &= check!(reg == Ok(tag as u64), "host reads the non-protected VM's x0: {reg:x?}");
        passed &= check!(read(pa) == first_word, "host reads the non-protected VM's memory: {:#x}", read(pa));
    }
    let expected = match protected {
        true => "hello from guest P R1",
        false => "hello from guest N R1",
    };
    match run_console(handle, tag) {
        Ok(line) => {
            passed &= check!(line.as_str() == expected, "{kind} VM ran to SYSTEM_OFF printing {:?}", line.as_str())
        }
        Err(why) => passed &= check!(false, "{kind} VM run: {why}"),
    }
    passed &= invariants("running a VM");
    // The GIC of a VM that ran stays where it is (its guest may have opened it there).
    let moved = hyp_abi::decode_result(hypercall::raw_call(
        HostCall::VmSetGic.function_id(),
        [handle, 0x3fff_0000, 0x3ff0_0000, 0, 0, 0],
    ))
    .map_err(|e| e.ok());
    let refusal = if gic { HypError::Busy } else { HypError::NotSupported };
    passed &= check!(moved == Err(Some(refusal)), "moving the {kind} VM's GIC after it ran refused: {moved:?}");
    passed &= check!(hypercall::vm_teardown(handle).is_ok(), "tear the {kind} VM down");
    let again = run_vcpu(handle, 0, 0);
    passed &= check!(again == Err(HypError::NoSuchVm), "running the torn-down {kind} VM refused: {again:?}");
    if protected {
        let info = hypercall::vm_info(handle);
        passed &= check!(info == Ok((true, 1, 1)), "torn-down protected VM still holds its page: {info:?}");
        passed &= check!(hypercall::vm_reclaim(handle, GUEST_ENTRY, 1).is_ok(), "reclaim the protected VM's page");
        passed &= check!(read(pa) == 0, "the protected VM's page came back zeroed: {:#x}", read(pa));
    } else {
        passed &= check!(read(pa) == first_word, "the non-protected VM's page is the host's again, unchanged");
    }
    let gone = hypercall::vm_info(handle);
    passed &= check!(gone == Err(HypError::NoSuchVm), "the {kind} VM's handle is dead: {gone:?}");
    passed &= invariants("tearing a VM down");
    passed
}

/// The memory-test guest: its result, a call left to the host, WFI; then a
/// protected VM loses its data page (forced back, zeroed) and dies touching it,
/// while a non-protected VM's page stays visible to the host and the VM resets.
fn memtest_vm(ty: VmType, code: u64, data: u64) -> bool {
    const SEED: u64 = 0x1000_0000;
    let protected = ty == VmType::Protected;
    let kind = if protected { "protected" } else { "non-protected" };
    let mut passed = true;
    load(code, guests::memtest());
    let Ok(handle) = create_vm(ty, 1) else {
        return check!(false, "create the {kind} memory-test VM");
    };
    passed &= check!(
        hypercall::vm_map(handle, code, GUEST_ENTRY, 1).is_ok()
            && hypercall::vm_map(handle, data, GUEST_ENTRY + 0x1000, 1).is_ok(),
        "give the {kind} memory-test VM a code and a data page"
    );
    passed &=
        check!(hypercall::vcpu_init(handle, 0, GUEST_ENTRY, SEED).is_ok(), "initialise the {kind} memory-test VM");
    let (result, d8) = crate::harness::arch::with_d8(0x5eed_f00d, || run_vcpu(handle, 0, 0));
    passed &= check!(d8 == 0x5eed_f00d, "the host's FP registers survive a guest that uses FP/SIMD: d8 {d8:#x}");
    passed &= check!(
        result == Ok(Exit::Mmio { ipa: GUEST_UART + 0x20, size_bytes: 8, write: true, value: 1 }),
        "{kind} memory-test guest reports its memory good: {result:x?}"
    );
    let call = run_vcpu(handle, 0, 0);
    passed &= check!(
        call == Ok(Exit::Hypercall { function: HOST_CALL, arg: SEED }),
        "{kind} guest call left to the host: {call:x?}"
    );
    let wfi = run_vcpu(handle, 0, 0);
    passed &= check!(wfi == Ok(Exit::Wfi { timer_deadline: u64::MAX }), "{kind} guest WFI exits to the host: {wfi:?}");
    if protected {
        passed &= check!(
            hypercall::vm_reclaim(handle, GUEST_ENTRY + 0x1000, 1).is_ok(),
            "force the data page back from the live protected VM"
        );
        passed &= check!(
            read(data) == 0 && read(data + 8) == 0,
            "the forced-back page came back zeroed: {:#x}",
            read(data + 8)
        );
        let fatal = run_vcpu(handle, 0, 0);
        passed &= check!(
            fatal == Ok(Exit::Fatal { esr: 0, address: 0 }),
            "the protected VM touching its lost page ends, showing nothing: {fatal:x?}"
        );
        passed &= tear_down(handle, "crashed protected VM");
        passed &= check!(hypercall::vm_reclaim(handle, GUEST_ENTRY, 1).is_ok(), "reclaim its code page");
    } else {
        passed &= check!(
            read(data) == SEED && read(data + 8) == SEED + 1,
            "host reads what the non-protected guest wrote: {:#x}",
            read(data + 8)
        );
        let reset = run_vcpu(handle, 0, 0);
        passed &= check!(reset == Ok(Exit::SystemReset), "non-protected guest resets its VM: {reset:?}");
        passed &= tear_down(handle, "non-protected memory-test VM");
    }
    passed &= invariants("the memory-test VM");
    passed
}

/// The malicious guest: each thing it tries is contained, and it reports what it
/// saw; then another VM runs as if nothing had happened.
fn malicious_vm(pa: u64) -> bool {
    const REPORT: u64 = GUEST_UART + 0x28;
    let mut passed = true;
    load(pa, guests::evil());
    let Ok(handle) = create_vm(VmType::Protected, 1) else {
        return check!(false, "create the malicious VM");
    };
    passed &= check!(hypercall::vm_map(handle, pa, GUEST_ENTRY, 1).is_ok(), "give the malicious VM its page");
    passed &= check!(hypercall::vcpu_init(handle, 0, GUEST_ENTRY, 0).is_ok(), "initialise the malicious VM");
    let mut reports = [0u64; 5];
    let mut count = 0;
    let mut stray = None;
    let mut end = None;
    for _ in 0..16 {
        match run_vcpu(handle, 0, 0) {
            Ok(Exit::Mmio { ipa: REPORT, size_bytes: 8, write: true, value }) => {
                if count < reports.len() {
                    reports[count] = value;
                }
                count += 1;
            }
            Ok(Exit::Mmio { ipa, write: true, value, .. }) => stray = Some((ipa, value)),
            other => {
                end = Some(other);
                break;
            }
        }
    }
    let ec = |esr: u64| esr >> 26;
    passed &= check!(reports[0] == u64::MAX, "a guest SMC to a firmware service gets NOT_SUPPORTED: {:#x}", reports[0]);
    passed &=
        check!(ec(reports[1]) == 0 && reports[1] != 0, "a guest reading the PMU gets UNDEFINED: ESR {:#x}", reports[1]);
    passed &= check!(
        reports[2] == 0,
        "a guest reading its DBGBVR0_EL1 gets its own (zero out of reset), not the host's: {:#x}",
        reports[2]
    );
    let (pmu, debug) = (reports[3] >> 8 & 0xf, reports[3] & 0xf);
    passed &= check!(
        pmu == 0 && debug >= 6,
        "a guest's ID_AA64DFR0_EL1 shows no PMU (PMUVer {pmu}) and the debug architecture (DebugVer >= 6)"
    );
    passed &= check!(
        ec(reports[4]) == 0 && reports[4] != 0,
        "a guest reading an EL2 register gets UNDEFINED: ESR {:#x}",
        reports[4]
    );
    passed &= check!(count == 5, "the malicious guest reported {count} outcomes");
    passed &= check!(
        stray == Some((0x1000_0000, 0x5a)),
        "a guest store outside its memory is an MMIO exit for the host: {stray:x?}"
    );
    passed &= check!(end == Some(Ok(Exit::SystemOff)), "the malicious guest's SYSTEM_OFF ends only its VM: {end:?}");
    passed &= tear_down(handle, "malicious VM");
    passed &= check!(hypercall::vm_reclaim(handle, GUEST_ENTRY, 1).is_ok(), "reclaim the malicious VM's page");
    passed &= invariants("the malicious VM");
    passed
}

/// The MMIO-guard guest, in a VM of type `ty`: unguarded, its MMIO reaches
/// the host; once it enrolled, only the granule it allowed does, and its
/// stores anywhere else (or to that granule once disallowed) end in aborts
/// it takes itself, which the host never sees as MMIO.
fn guarded_vm(pa: u64, ty: VmType) -> bool {
    const REPORT: u64 = GUEST_UART + 0x28;
    /// A data abort from EL1 (EC 0x25), a write, synchronous external.
    const INJECTED_WRITE_ABORT: u64 = 0x25 << 26 | 1 << 25 | 1 << 6 | 0x10;
    const INVALID_PARAMETER: u64 = -3i64 as u64;
    let mut passed = true;
    load(pa, guests::guard());
    let ready = create_ready(ty, 1, pa, 1, 0);
    let Ok(handle) = ready else {
        return check!(false, "set up the MMIO-guard VM ({ty:?}): {ready:?}");
    };
    let (mut reports, mut calls) = ([0u64; 6], [0u64; 3]);
    let (mut report_count, mut call_count) = (0, 0);
    let mut stray = None;
    let mut end = None;
    for _ in 0..16 {
        match run_vcpu(handle, 0, 0) {
            Ok(Exit::Mmio { ipa: REPORT, size_bytes: 8, write: true, value }) => {
                if let Some(slot) = reports.get_mut(report_count) {
                    *slot = value;
                }
                report_count += 1;
            }
            Ok(Exit::Hypercall { arg, .. }) => {
                if let Some(slot) = calls.get_mut(call_count) {
                    *slot = arg;
                }
                call_count += 1;
            }
            Ok(Exit::Mmio { ipa, value, .. }) => stray = Some((ipa, value)),
            other => {
                end = Some(other);
                break;
            }
        }
    }
    let expected = [1, 0, 0, hyp_abi::MMIO_GUARD_GRANULE, INVALID_PARAMETER, INVALID_PARAMETER];
    passed &= check!(
        report_count == 6 && reports == expected,
        "MMIO guard ({ty:?}): unguarded MMIO reaches the host, then enrol, allow the UART, granule \
         {}, misaligned and memory IPAs refused: {reports:x?}",
        hyp_abi::MMIO_GUARD_GRANULE
    );
    passed &= check!(
        call_count == 3 && calls == [INJECTED_WRITE_ABORT, INJECTED_WRITE_ABORT, 0],
        "MMIO guard ({ty:?}): stores outside the allowed granule and to it once disallowed abort in the guest: \
         {calls:x?}"
    );
    passed &= check!(stray.is_none(), "MMIO guard ({ty:?}): no refused access reached the host: {stray:x?}");
    passed &= check!(end == Some(Ok(Exit::SystemOff)), "the MMIO-guard guest turned its VM off: {end:?}");
    passed &= tear_down(handle, "MMIO-guard VM");
    if ty == VmType::Protected {
        passed &= check!(hypercall::vm_reclaim(handle, GUEST_ENTRY, 1).is_ok(), "reclaim the MMIO-guard VM's page");
    }
    passed &= invariants("the MMIO-guard VM");
    passed
}

/// A protected guest probes IPAs that are the physical addresses of the hyp
/// (image and pool), of the host shim's code, and of a page the host lends to
/// another (non-protected) VM. None is its memory: every read is an MMIO exit
/// the host answers (the guest sees the host's answer, never the memory), every
/// write an MMIO exit that changes nothing; and the lent page cannot be given
/// to the protected VM as well.
fn probing_vm(code: u64, list: u64, lent: u64, hyp: &[(u64, u64)]) -> bool {
    const REPORT: u64 = GUEST_UART + 0x30;
    const LENT_CONTENT: u64 = 0x1e47_0000_cafe;
    let mut passed = true;
    // SAFETY: `lent` is a scratch page of the shim's, not given to anyone yet.
    unsafe { core::ptr::write_volatile(lent as *mut u64, LENT_CONTENT) };
    let other = create_vm(VmType::NonProtected, 1);
    let lent_ok = other.and_then(|h| hypercall::vm_map(h, lent, GUEST_ENTRY, 1));
    passed &= check!(lent_ok.is_ok(), "lend a page to a non-protected VM: {lent_ok:?}");
    let mut targets = [0u64; 5];
    let mut count = 0;
    // The list ends at 0, so a region at address 0 (a spin-table page) is left out.
    let hyp_bases = hyp.iter().map(|r| r.0).filter(|&base| base != 0).take(2);
    for address in hyp_bases.chain([crate::harness::arch::park as *const () as u64 & !7, lent]) {
        if count < targets.len() - 1 {
            targets[count] = address;
            count += 1;
        }
    }
    let targets = &targets[..count];
    load(code, guests::probe());
    for (i, &address) in targets.iter().chain([&0]).enumerate() {
        // SAFETY: `list` is a scratch page of the shim's, not given to anyone yet.
        unsafe { core::ptr::write_volatile((list as *mut u64).add(i), address) };
    }
    let Ok(handle) = create_vm(VmType::Protected, 1) else {
        return check!(false, "create the probing VM");
    };
    let twice = hypercall::vm_map(handle, lent, GUEST_ENTRY + 0x2000, 1);
    passed &= check!(
        twice == Err(HypError::NotOwned),
        "the page lent to a non-protected VM cannot be given to a protected VM too: {twice:?}"
    );
    passed &= check!(hypercall::vm_map(handle, code, GUEST_ENTRY, 2).is_ok(), "give the probing VM its pages");
    passed &= check!(hypercall::vcpu_init(handle, 0, GUEST_ENTRY, 0).is_ok(), "initialise the probing VM");
    let answer = |i: usize| 0x5afe_0000_0000_0000 | i as u64;
    let (mut reads, mut reports, mut writes) = (0usize, 0usize, 0usize);
    let mut faithful = true;
    let mut value = 0;
    let mut end = None;
    for _ in 0..64 {
        match run_vcpu(handle, 0, value) {
            Ok(Exit::Mmio { ipa: REPORT, write: true, value: got, .. }) => {
                faithful &= got == answer(reports);
                reports += 1;
            }
            Ok(Exit::Mmio { ipa, size_bytes: 8, write: false, .. }) if reads < targets.len() => {
                faithful &= ipa == targets[reads];
                value = answer(reads);
                reads += 1;
            }
            Ok(Exit::Mmio { ipa, size_bytes: 8, write: true, value: 0xbad }) if writes < targets.len() => {
                faithful &= ipa == targets[writes];
                writes += 1;
            }
            other => {
                end = Some(other);
                break;
            }
        }
    }
    passed &= check!(
        faithful && reads == targets.len() && reports == reads && writes == reads,
        "a protected guest probing the hyp's, the host's and another VM's physical addresses {targets:x?} only reaches the host, by MMIO exits ({reads} reads answered by the host, {writes} writes)"
    );
    passed &= check!(end == Some(Ok(Exit::SystemOff)), "the probing guest ends with SYSTEM_OFF: {end:?}");
    // SAFETY: As above; the page is lent, which leaves the host its access.
    let content = unsafe { core::ptr::read_volatile(lent as *const u64) };
    passed &= check!(content == LENT_CONTENT, "the page lent to the other VM is unchanged: {content:#x}");
    passed &= tear_down(handle, "probing VM");
    passed &= check!(hypercall::vm_reclaim(handle, GUEST_ENTRY, 2).is_ok(), "reclaim the probing VM's pages");
    passed &= check!(other.and_then(hypercall::vm_teardown).is_ok(), "tear the other VM down");
    passed &= invariants("the probing VM");
    passed
}

/// A protected guest that masks its interrupts and spins forever cannot keep
/// the CPU: while it runs, the host's timer interrupt goes to EL2, the hyp
/// returns to the host with an "interrupted" exit, and the host takes its tick
/// (its timer keeps ticking) and decides what to run; here it stops the VM after
/// a few ticks.
fn spinning_vm(platform: &HostPlatform, pa: u64) -> bool {
    const TICKS: u64 = 5;
    const TICK_HZ: u64 = 100;
    let (Some(gic), Some(intid)) = (platform.gic, platform.timer_intid) else {
        log::info!("no GIC or timer the shim drives: the preemption check is skipped");
        return true;
    };
    let mut passed = true;
    load(pa, guests::spin());
    let ready = create_ready(VmType::Protected, 1, pa, 1, 0);
    let Ok(handle) = ready else {
        return check!(false, "set up the spinning VM: {ready:?}");
    };
    passed &= check!(gic::start_tick(gic, intid, TICK_HZ), "host timer tick on INTID {intid} through {gic:x?}");
    let start = gic::ticks();
    let (mut interrupted, mut other) = (0u64, None);
    for _ in 0..10_000 {
        match run_vcpu(handle, 0, 0) {
            Ok(Exit::Interrupted) => {
                interrupted += 1;
                gic::take_pending_interrupts();
            }
            exit => {
                other = Some(exit);
                break;
            }
        }
        if gic::ticks() - start >= TICKS {
            break;
        }
    }
    gic::stop_tick();
    let ticks = gic::ticks() - start;
    passed &= check!(
        other.is_none() && ticks >= TICKS && interrupted >= TICKS,
        "a protected guest spinning with interrupts masked is preempted: {interrupted} interrupted exits, the host's timer ticked {ticks} times ({other:?})"
    );
    passed &= tear_down(handle, "spinning VM");
    passed &= check!(hypercall::vm_reclaim(handle, GUEST_ENTRY, 1).is_ok(), "reclaim the spinning VM's page");
    passed
}

/// Exceptions a guest catches itself in one run: many more than any limit on
/// injections would allow.
const CAUGHT_FAULTS: u64 = 1000;

/// A guest that catches [`CAUGHT_FAULTS`] injected UNDEFINED exceptions
/// without an exit runs on to its end; its VM is not declared dead.
fn fault_catching_vm(pa: u64) -> bool {
    const REPORT: u64 = GUEST_UART + 0x28;
    load(pa, guests::catch());
    let Ok(handle) = create_vm(VmType::Protected, 1) else {
        return check!(false, "create the fault-catching VM");
    };
    let mut passed = check!(
        hypercall::vm_map(handle, pa, GUEST_ENTRY, 1).is_ok()
            && hypercall::vcpu_init(handle, 0, GUEST_ENTRY, CAUGHT_FAULTS).is_ok(),
        "give the fault-catching VM its page and start it"
    );
    // Its report, past any interrupted exits (the host's timer).
    let mut report = None;
    let mut end = None;
    for _ in 0..64 {
        match run_vcpu(handle, 0, 0) {
            Ok(Exit::Interrupted) => continue,
            Ok(Exit::Mmio { ipa: REPORT, size_bytes: 8, write: true, value }) if report.is_none() => {
                report = Some(value)
            }
            other => {
                end = Some(other);
                break;
            }
        }
    }
    passed &= check!(
        report == Some(CAUGHT_FAULTS) && end == Some(Ok(Exit::SystemOff)),
        "a guest catching {CAUGHT_FAULTS} injected exceptions in a run goes on: it counted {report:?}, then {end:?}"
    );
    passed &= tear_down(handle, "fault-catching VM");
    passed &= check!(hypercall::vm_reclaim(handle, GUEST_ENTRY, 1).is_ok(), "reclaim the fault-catching VM's page");
    passed
}

fn crashing_vm(pa: u64) -> bool {
    let mut passed = true;
    load(pa, guests::crash());
    let Ok(handle) = create_vm(VmType::NonProtected, 1) else {
        return check!(false, "create the crashing VM");
    };
    passed &= check!(hypercall::vm_map(handle, pa, GUEST_ENTRY, 1).is_ok(), "give the crashing VM its page");
    passed &= check!(hypercall::vcpu_init(handle, 0, GUEST_ENTRY, 0).is_ok(), "initialise the crashing VM");
    let exit = run_vcpu(handle, 0, 0);
    passed &= check!(
        matches!(exit, Ok(Exit::Fatal { .. })),
        "a guest faulting without vectors ends with a fatal exit: {exit:x?}"
    );
    let again = run_vcpu(handle, 0, 0);
    passed &= check!(again == Err(HypError::NoSuchVm), "the crashed VM does not run again: {again:?}");
    passed &= tear_down(handle, "crashed VM");
    passed &= invariants("a crashed VM");
    passed
}

/// A guest that returns to AArch32 EL0 (Thumb, at a 16-bit WFI) ends with a
/// fatal exit carrying the WFI's syndrome: the hyp decodes and steps over
/// AArch64 instructions only, so none of its own trap handlers serves the
/// WFI (which would step 4 bytes over 2) before the path that ends the VM.
fn aarch32_vm(pa: u64) -> bool {
    let mut passed = true;
    load(pa, guests::aarch32());
    let Ok(handle) = create_vm(VmType::NonProtected, 1) else {
        return check!(false, "create the AArch32 VM");
    };
    passed &= check!(hypercall::vm_map(handle, pa, GUEST_ENTRY, 1).is_ok(), "give the AArch32 VM its page");
    passed &= check!(hypercall::vcpu_init(handle, 0, GUEST_ENTRY, 0).is_ok(), "initialise the AArch32 VM");
    let exit = run_vcpu(handle, 0, 0);
    passed &= check!(
        matches!(exit, Ok(Exit::Fatal { esr, address: 0 }) if esr >> 26 == 0x01),
        "a guest at AArch32 EL0 ends at its WFI with a fatal exit (EC 0x01): {exit:x?}"
    );
    passed &= tear_down(handle, "AArch32 VM");
    passed &= invariants("an AArch32 VM");
    passed
}

/// `VM_SET_GIC` and `VM_SET_SPI_LEVEL` with bad arguments for `handle`, a VM
/// of two vCPUs that has not run (then a good placement): each refused with
/// its error. Without a GIC both are `NotSupported`.
fn bad_gic_calls(handle: u64, raw: &dyn Fn(HostCall, [u64; 6]) -> Result<[u64; 3], HypError>) -> bool {
    let mut passed = true;
    let level = |intid: u64, vcpu: u64, level: u64| raw(HostCall::VmSetSpiLevel, [handle, vcpu, intid, level, 0, 0]);
    let place = |distributor: u64, second: u64| raw(HostCall::VmSetGic, [handle, distributor, second, 0, 0, 0]);
    if level(40, 0, 2) == Err(HypError::NotSupported) {
        return check!(
            place(0x3fff_0000, 0x3ff0_0000) == Err(HypError::NotSupported),
            "without a GIC, VM_SET_GIC and VM_SET_SPI_LEVEL are not supported"
        );
    }
    passed &= check!(level(40, 0, 2) == Err(HypError::InvalidArgument), "an SPI level of 2 refused");
    passed &= check!(level(31, 0, 1) == Err(HypError::InvalidArgument), "a PPI's level refused (SPIs only)");
    passed &= check!(level(288, 0, 1) == Err(HypError::InvalidArgument), "INTID 288's level refused (past the SPIs)");
    passed &= check!(level(287, 0, 1) == Ok([0, 0, 0]), "SPI 287's line raised (the last SPI): it goes to vCPU 0");
    passed &= check!(level(287, 0, 0) == Ok([0, 0, 0]), "SPI 287's line lowered");
    passed &= check!(level(40, 2, 1) == Err(HypError::NoSuchVcpu), "an SPI level naming vCPU 2 refused");
    passed &= check!(
        raw(HostCall::VmSetSpiLevel, [handle ^ (1 << 32), 0, 40, 1, 0, 0]) == Err(HypError::NoSuchVm),
        "an SPI level for a forged handle refused"
    );
    passed &= check!(level(40, 0, 1) == Ok([0, 0, 0]), "SPI 40's line raised: it goes to vCPU 0");
    passed &= check!(level(40, 0, 0) == Ok([0, 0, 0]), "SPI 40's line lowered");
    passed &= check!(place(0x3fff_1000, 0x3ff0_0000) == Err(HypError::NotAligned), "an unaligned distributor refused");
    passed &= check!(place(0x3fff_0000, 0x3ff0_0800) == Err(HypError::NotAligned), "an unaligned second frame refused");
    passed &=
        check!(place(1 << 60, 0x3ff0_0000) == Err(HypError::OutOfRange), "a distributor past the IPA space refused");
    passed &= check!(place(0x3fff_0000, !0xffff) == Err(HypError::OutOfRange), "a second frame that wraps refused");
    passed &= check!(place(0x3ff0_0000, 0x3ff0_0000) == Err(HypError::InvalidArgument), "overlapping windows refused");
    passed &= check!(place(0x3fff_0000, 0x3ff0_0000) == Ok([0, 0, 0]), "the GIC placed where kvmtool puts it");
    passed
}

fn bad_calls(hyp: u64) -> bool {
    let mut passed = true;
    let raw = |call: HostCall, args: [u64; 6]| {
        let r = hypercall::raw_call(call.function_id(), args);
        hyp_abi::decode_result(r).map_err(|e| e.unwrap_or(HypError::NotSupported))
    };
    passed &= check!(
        raw(HostCall::VmCreate, [2, 1, 0, 0, 0, 0]) == Err(HypError::InvalidArgument),
        "create a VM of unknown type refused"
    );
    passed &= check!(
        raw(HostCall::VmCreate, [0, 0, 0, 0, 0, 0]) == Err(HypError::InvalidArgument),
        "create a VM with no vCPU refused"
    );
    passed &= check!(
        raw(HostCall::VmCreate, [0, 9, 0, 0, 0, 0]) == Err(HypError::InvalidArgument),
        "create a VM with 9 vCPUs refused"
    );
    let Ok(handle) = create_vm(VmType::Protected, 2) else {
        return check!(false, "create a VM for the bad calls");
    };
    let forged = handle ^ (1 << 32);
    passed &= check!(hypercall::vm_info(forged) == Err(HypError::NoSuchVm), "a forged handle finds no VM");
    passed &= check!(hypercall::vm_info(0) == Err(HypError::NoSuchVm), "handle 0 finds no VM");
    passed &= check!(
        hypercall::vcpu_init(handle, 2, GUEST_ENTRY, 0) == Err(HypError::NoSuchVcpu),
        "vCPU index out of range refused"
    );
    let run_bad = run_vcpu(handle, 7, 0);
    passed &= check!(run_bad == Err(HypError::NoSuchVcpu), "running a vCPU out of range refused: {run_bad:?}");
    let set = hypercall::vcpu_set_reg(handle, 0, VcpuReg::Pc, 0);
    passed &= check!(set == Err(HypError::PermissionDenied), "writing a protected VM's register refused: {set:?}");
    let unaligned = hypercall::vm_map(handle, page(9), GUEST_ENTRY + 0x10, 1);
    passed &= check!(unaligned == Err(HypError::NotAligned), "an unaligned IPA refused: {unaligned:?}");
    let forged_run = run_vcpu(handle ^ (1 << 40), 0, 0);
    passed &= check!(forged_run == Err(HypError::NoSuchVm), "running a forged handle refused: {forged_run:?}");
    let off = run_vcpu(handle, 0, 0);
    passed &= check!(off == Err(HypError::VcpuOff), "running an uninitialised vCPU refused: {off:?}");
    passed &= bad_gic_calls(handle, &raw);
    passed &= check!(
        hypercall::vm_map(handle, hyp, GUEST_ENTRY, 1) == Err(HypError::NotOwned),
        "giving a VM hyp memory refused"
    );
    passed &= check!(
        hypercall::vm_map(handle, page(9), 1 << 60, 1) == Err(HypError::OutOfRange),
        "an IPA beyond the VM's space refused"
    );
    passed &= check!(hypercall::vm_map(handle, page(9), GUEST_ENTRY, 1).is_ok(), "give the VM a page");
    passed &= check!(
        hypercall::vm_map(handle, page(10), GUEST_ENTRY, 1) == Err(HypError::InvalidArgument),
        "an IPA already mapped refused"
    );
    passed &= check!(
        hypercall::vm_map(handle, page(9), GUEST_ENTRY + 0x1000, 1) == Err(HypError::NotOwned),
        "a page already given refused"
    );
    let empty = hypercall::vm_reclaim(handle, GUEST_ENTRY + 0x5000, 1);
    passed &=
        check!(empty == Err(HypError::InvalidArgument), "reclaiming an IPA that holds no page refused: {empty:?}");
    passed &= tear_down(handle, "VM");
    passed &= check!(hypercall::vm_teardown(handle) == Err(HypError::NoSuchVm), "tearing it down twice refused");
    passed &= check!(hypercall::vm_reclaim(handle, GUEST_ENTRY, 1).is_ok(), "reclaim its page");
    passed &= invariants("bad VM calls");
    passed
}

/// VMs alive at once in the stress rounds.
const STRESS_VMS: usize = 32;

/// `rounds` times: create 32 VMs (alternately protected and not), give each a
/// page, run each to SYSTEM_OFF, tear all down and reclaim; afterwards the hyp's
/// memory accounting must be what it was and the invariants must hold.
fn stress(rounds: u64) -> bool {
    let before = hypercall::check_invariants();
    let code = guests::off();
    for i in 0..STRESS_VMS {
        load(stress_page(i), code);
    }
    for round in 0..rounds {
        let mut handles = [0u64; STRESS_VMS];
        for (i, handle) in handles.iter_mut().enumerate() {
            let ty = if i % 2 == 0 { VmType::Protected } else { VmType::NonProtected };
            let pa = stress_page(i);
            let ok = create_vm(ty, 1).and_then(|h| {
                *handle = h;
                hypercall::vm_map(h, pa, GUEST_ENTRY, 1)?;
                hypercall::vcpu_init(h, 0, GUEST_ENTRY, 0)?;
                match run_vcpu(h, 0, 0)? {
                    Exit::SystemOff => Ok(()),
                    _ => Err(HypError::InvalidArgument),
                }
            });
            if let Err(e) = ok {
                return check!(false, "stress round {round}, VM {i}: {e}");
            }
        }
        for (i, &h) in handles.iter().enumerate() {
            let ok = hypercall::vm_teardown(h).and_then(|()| {
                if i % 2 == 0 {
                    hypercall::vm_reclaim(h, GUEST_ENTRY, 1)
                } else {
                    Ok(())
                }
            });
            if let Err(e) = ok {
                return check!(false, "stress round {round}, teardown of VM {i}: {e}");
            }
        }
        // The guests' code comes back zeroed from the protected VMs: load it again.
        for i in (0..STRESS_VMS).step_by(2) {
            load(stress_page(i), code);
        }
    }
    if !debug_calls() {
        return check!(
            true,
            "{rounds} rounds of {STRESS_VMS} VMs created, run, torn down and reclaimed (production hyp: no invariant checker to compare its memory)"
        );
    }
    let after = hypercall::check_invariants();
    check!(
        matches!((before, after), (Ok(b), Ok(a)) if a == b && a.violations == 0),
        "{rounds} rounds of {STRESS_VMS} VMs created, run, torn down and reclaimed: hyp memory unchanged ({after:?})"
    )
}

/// The first VM checks: a VM needs donated memory, which the host then
/// donates (for every VM check up to [`finish`]); then the console,
/// memory-test, malicious, MMIO-guard, probing, crashing and spinning guests.
/// True when all passed.
pub fn run_all(platform: &HostPlatform) -> bool {
    let mut passed = true;
    let refused = create_vm(VmType::Protected, 1);
    passed &= check!(refused == Err(HypError::NoMemory), "a VM needs donated memory first: {refused:?}");
    let pages = MEMCACHE_PAGES as u64;
    passed &= check!(
        hypercall::donate_hyp(memcache_pages(), pages).is_ok(),
        "donate {pages} pages for VM metadata (memcache)"
    );
    passed &= console_vm(VmType::Protected, page(1), 'P', platform.gic.is_some());
    passed &= console_vm(VmType::NonProtected, page(7), 'N', platform.gic.is_some());
    passed &= memtest_vm(VmType::Protected, page(2), page(3));
    passed &= memtest_vm(VmType::NonProtected, page(4), page(5));
    passed &= malicious_vm(page(6));
    passed &= guarded_vm(page(6), VmType::Protected);
    passed &= guarded_vm(page(6), VmType::NonProtected);
    passed &= probing_vm(page(2), page(3), page(4), platform.hyp_regions());
    passed &= fault_catching_vm(page(8));
    passed &= crashing_vm(page(8));
    passed &= aarch32_vm(page(8));
    passed &= spinning_vm(platform, page(8));
    passed
}

/// Bad VM calls (`hyp` is an address of hyp memory), then `stress_rounds`
/// rounds of the 32-VM stress run. True when all passed.
pub fn bad_calls_and_stress(hyp: u64, stress_rounds: u64) -> bool {
    let mut passed = bad_calls(hyp);
    passed &= stress(stress_rounds);
    passed
}

/// The end of the VM checks: the donated memcache comes back whole, and the
/// summary of every VM the checks ran. True when all passed.
pub fn finish() -> bool {
    let back = hypercall::reclaim_hyp(memcache_pages(), MEMCACHE_PAGES as u64);
    let mut passed = check!(back.is_ok(), "every memcache page is free again and comes back: {back:?}");
    passed &= invariants("reclaiming the memcache");
    let (created, protected, exits) = counts();
    log::info!(
        "summary: {created} VMs created ({protected} protected), {exits} exits handled, every page back with the host"
    );
    passed
}
