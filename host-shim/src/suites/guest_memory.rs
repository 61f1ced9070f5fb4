//! The guest's side of the pKVM ABI, as Linux's `CONFIG_ARM_PKVM_GUEST`
//! makes its calls: the memory-call guest (`guests/memcall.S`), driven by the
//! host one command at a time, finds KVM's vendor UID and the FEATURES of its
//! VM type, asks HYP_MEMINFO, shares a page the host then reads and writes,
//! unshares it (the host's accesses then abort), gives a page back with
//! MEM_RELINQUISH (it comes back zeroed), and is refused every bad request
//! with INVALID_PARAMETER and no change. The host forces back a page the
//! live guest shares, and tears the VM down with a page still shared: both
//! come back zeroed. A non-protected VM finds the same UID and is offered
//! none of the memory calls (NOT_SUPPORTED, as pKVM's host KVM answers).

use crate::guests::{self, load, GUEST_ENTRY, GUEST_UART};
use crate::harness::debug_calls::invariants;
use crate::harness::hypercall;
use crate::harness::probe;
use crate::harness::report::check;
use crate::harness::scratch::{read, write};
use crate::harness::vms::{create_ready, run_vcpu, tear_down};
use hyp_abi::{Exit, GuestCall, VmType, KVM_FEATURES_SMC32, KVM_VENDOR_HYP_UID, VENDOR_HYP_CALL_UID};

/// The guest's command registers and its report (`MEMCALL_*` in memcall.S),
/// and where its exception vectors report ESR_EL1 (`IRQ_FAULT`).
const CMD: u64 = GUEST_UART + 0x80;
const RESULT: u64 = GUEST_UART + 0xa0;
const FAULT: u64 = GUEST_UART + 0x40;
/// The guest's commands other than a function ID.
const LOAD: u64 = 0;
const STORE: u64 = 1;
/// SMCCC's answers.
const NOT_SUPPORTED: u64 = -1i64 as u64;
const INVALID_PARAMETER: u64 = -3i64 as u64;
const PSCI_SYSTEM_OFF: u64 = 0x8400_0008;
/// Runs one command may take (four loads, up to four reports).
const MAX_RUNS: usize = 16;

/// Why a command did not give its reports: the exit it met instead.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Stop {
    Exit(Exit),
    Fault(u64),
    Run(hyp_abi::HypError),
    Stuck,
}

/// Gives the guest `cmd` (x0..x3) and collects its `reports` reports.
fn command(vm: u64, cmd: [u64; 4], reports: usize) -> Result<[u64; 4], Stop> {
    let (mut out, mut got, mut answer) = ([0u64; 4], 0, 0);
    for _ in 0..MAX_RUNS {
        match run_vcpu(vm, 0, answer).map_err(Stop::Run)? {
            Exit::Mmio { ipa, size_bytes: 8, write: false, .. } if (CMD..CMD + 32).contains(&ipa) => {
                answer = cmd[((ipa - CMD) / 8) as usize];
            }
            Exit::Mmio { ipa: RESULT, size_bytes: 8, write: true, value } => {
                out[got] = value;
                got += 1;
                if got == reports {
                    return Ok(out);
                }
            }
            Exit::Mmio { ipa: FAULT, write: true, value, .. } => return Err(Stop::Fault(value)),
            other => return Err(Stop::Exit(other)),
        }
    }
    Err(Stop::Stuck)
}

/// The guest's vendor call `call` with x1..x3: its x0..x3 after it.
fn hvc(vm: u64, function: u64, x1: u64, x2: u64, x3: u64) -> Result<[u64; 4], Stop> {
    command(vm, [function, x1, x2, x3], 4)
}

/// The guest's memory call `call` of the granule at `ipa`: its x0.
fn memory_call(vm: u64, call: GuestCall, ipa: u64) -> Result<u64, Stop> {
    hvc(vm, u64::from(call.function_id()), ipa, 0, 0).map(|x| x[0])
}

fn guest_load(vm: u64, ipa: u64) -> Result<u64, Stop> {
    command(vm, [LOAD, ipa, 0, 0], 1).map(|x| x[0])
}

fn guest_store(vm: u64, ipa: u64, value: u64) -> Result<u64, Stop> {
    command(vm, [STORE, ipa, value, 0], 1).map(|x| x[0])
}

/// The host's read of `pa` (`None`: refused with an abort).
fn host_read(pa: u64) -> Option<u64> {
    probe::read(pa)
}

/// The VM's calls that find the hyp (both VM types).
fn discovery(vm: u64, protected: bool, kind: &str) -> bool {
    let uid = hvc(vm, u64::from(VENDOR_HYP_CALL_UID), 0, 0, 0);
    let mut passed = check!(uid == Ok(KVM_VENDOR_HYP_UID), "{kind} guest: the vendor-hyp call UID is KVM's: {uid:x?}");
    let features = hvc(vm, u64::from(KVM_FEATURES_SMC32), 0, 0, 0);
    let bitmap = GuestCall::features_bitmap(protected);
    passed &= check!(
        features == Ok([bitmap, 0, 0, 0]) && bitmap == if protected { 0x3fd } else { 0x1e1 },
        "{kind} guest: KVM FEATURES (SMC32 0x8600_0000) offers {features:x?}"
    );
    // Linux's MMIO_GUARD (7): no enrolment; the call checks its argument.
    let guard = memory_call(vm, GuestCall::MmioGuardMap, GUEST_UART);
    passed &= check!(guard == Ok(0), "{kind} guest: MMIO_GUARD of its UART without enrolling succeeds: {guard:x?}");
    passed
}

/// A protected VM with pages `pa..pa + 4 pages` (code, then three data pages
/// at IPAs `GUEST_ENTRY + 0x1000..`).
fn protected_guest(pa: u64) -> bool {
    let (data, other, third) = (pa + 0x1000, pa + 0x2000, pa + 0x3000);
    let (ipa, other_ipa, third_ipa) = (GUEST_ENTRY + 0x1000, GUEST_ENTRY + 0x2000, GUEST_ENTRY + 0x3000);
    load(pa, guests::memcall());
    let Ok(vm) = create_ready(VmType::Protected, 1, pa, 4, 0) else {
        return check!(false, "create the protected memory-call VM");
    };
    let mut passed = discovery(vm, true, "protected");
    let meminfo = hvc(vm, u64::from(GuestCall::HypMeminfo.function_id()), 0, 0, 0);
    passed &= check!(meminfo == Ok([4096, 0, 0, 0]), "HYP_MEMINFO: the granule is 4096: {meminfo:x?}");
    let meminfo = hvc(vm, u64::from(GuestCall::HypMeminfo.function_id()), 1, 0, 0);
    passed &= check!(meminfo == Ok([INVALID_PARAMETER, 0, 0, 0]), "HYP_MEMINFO with x1 set: {meminfo:x?}");

    // Share: the host reads the guest's value and writes one back.
    passed &= check!(guest_store(vm, ipa, 0x5ec2_e7da_7a00_0001) == Ok(0), "the guest writes its data page");
    passed &= check!(host_read(data).is_none(), "before MEM_SHARE the host's read of the guest's page aborts");
    let shared = memory_call(vm, GuestCall::MemShare, ipa);
    passed &= check!(shared == Ok(0), "MEM_SHARE of the data page: {shared:x?}");
    let seen = host_read(data);
    passed &= check!(seen == Some(0x5ec2_e7da_7a00_0001), "the host reads what the guest wrote: {seen:x?}");
    write(data + 8, 0x4057_0000_0000_0002);
    let back = guest_load(vm, ipa + 8);
    passed &= check!(back == Ok(0x4057_0000_0000_0002), "the guest reads what the host wrote: {back:x?}");
    passed &= invariants("a guest's MEM_SHARE");

    // Bad requests: INVALID_PARAMETER, and nothing changes.
    let share = GuestCall::MemShare;
    let bad: [(GuestCall, u64, u64, &str); 9] = [
        (share, ipa, 0, "the same page twice"),
        (share, ipa + 8, 0, "an unaligned IPA"),
        (share, GUEST_UART, 0, "MMIO"),
        (share, GUEST_ENTRY + 0x10_0000, 0, "an IPA it has no memory at"),
        (share, 1 << 52, 0, "an IPA beyond its IPA space"),
        (share, other_ipa, 1, "a page with x2 set"),
        (GuestCall::MemUnshare, other_ipa, 0, "a page it never shared"),
        (GuestCall::MemUnshare, GUEST_ENTRY + 0x10_0000, 0, "an IPA it has no memory at"),
        (GuestCall::MemRelinquish, GUEST_UART, 0, "MMIO"),
    ];
    for (call, at, x2, what) in bad {
        let answer = hvc(vm, u64::from(call.function_id()), at, x2, 0);
        passed &= check!(answer == Ok([INVALID_PARAMETER, 0, 0, 0]), "{call:?} of {what}: refused: {answer:x?}");
    }
    passed &=
        check!(host_read(other).is_none(), "after the refusals the unshared page is still out of the host's reach");
    passed &= check!(host_read(data) == Some(0x5ec2_e7da_7a00_0001), "and the shared one still in it");
    passed &= invariants("a guest's refused memory calls");

    // Unshare: every host access aborts from then on.
    let unshared = memory_call(vm, GuestCall::MemUnshare, ipa);
    passed &= check!(unshared == Ok(0), "MEM_UNSHARE of the data page: {unshared:x?}");
    passed &= check!(host_read(data).is_none(), "after MEM_UNSHARE the host's read aborts");
    passed &= check!(probe::write_refused(data, 0xbad), "after MEM_UNSHARE the host's write aborts");
    let again = memory_call(vm, GuestCall::MemUnshare, ipa);
    passed &= check!(again == Ok(INVALID_PARAMETER), "MEM_UNSHARE twice: {again:x?}");
    let kept = guest_load(vm, ipa + 8);
    passed &= check!(kept == Ok(0x4057_0000_0000_0002), "the guest keeps its page's content: {kept:x?}");
    passed &= invariants("a guest's MEM_UNSHARE");

    // Relinquish: the page is the host's again, zeroed; the IPA maps nothing.
    passed &= check!(guest_store(vm, other_ipa, 0x005e_c2e7) == Ok(0), "the guest writes a second page");
    let given = memory_call(vm, GuestCall::MemRelinquish, other_ipa);
    passed &= check!(given == Ok(0), "MEM_RELINQUISH of the second page: {given:x?}");
    passed &= check!(host_read(other) == Some(0), "the relinquished page is the host's, zeroed");
    write(other, 0x4057);
    passed &= check!(read(other) == 0x4057, "and the host writes it");
    let info = hypercall::vm_info(vm);
    passed &= check!(info == Ok((true, 1, 3)), "the VM holds one page less: {info:?}");
    let again = memory_call(vm, GuestCall::MemRelinquish, other_ipa);
    passed &= check!(again == Ok(INVALID_PARAMETER), "MEM_RELINQUISH twice: {again:x?}");
    // (As in pKVM, a later access is the host's to serve: an exit, not memory.)
    let touch = guest_load(vm, other_ipa);
    passed &= check!(
        touch == Err(Stop::Exit(Exit::Mmio { ipa: other_ipa, size_bytes: 8, write: false, value: 0 })),
        "the guest's load from the relinquished IPA is an exit to the host: {touch:x?}"
    );
    let resumed = run_vcpu(vm, 0, 0x77);
    passed &= check!(
        resumed == Ok(Exit::Mmio { ipa: RESULT, size_bytes: 8, write: true, value: 0x77 }),
        "and it loads what the host answers: {resumed:x?}"
    );
    passed &= invariants("a guest's MEM_RELINQUISH");

    // The host forces back a page the live guest shares: zeroed, and the
    // guest's next touch of it ends the VM.
    passed &= check!(guest_store(vm, third_ipa, 0x7417d) == Ok(0), "the guest writes a third page");
    passed &= check!(memory_call(vm, GuestCall::MemShare, third_ipa) == Ok(0), "and shares it");
    passed &= check!(memory_call(vm, GuestCall::MemShare, ipa) == Ok(0), "and shares the data page again");
    let forced = hypercall::vm_reclaim(vm, third_ipa, 1);
    passed &= check!(forced.is_ok(), "the host forces the shared page back from the live VM: {forced:?}");
    passed &= check!(read(third) == 0, "it comes back zeroed: {:#x}", read(third));
    passed &= invariants("forcing back a shared page");
    let fatal = guest_load(vm, third_ipa);
    passed &= check!(
        fatal == Err(Stop::Exit(Exit::Fatal { esr: 0, address: 0 })),
        "the guest touching it ends, showing nothing: {fatal:x?}"
    );

    // Teardown with the data page still shared: it comes back zeroed.
    passed &= tear_down(vm, "protected memory-call VM");
    let back = hypercall::vm_reclaim(vm, GUEST_ENTRY, 2);
    passed &= check!(back.is_ok(), "reclaim its code and its shared data page: {back:?}");
    passed &= check!(read(data) == 0 && read(data + 8) == 0, "the shared page came back zeroed");
    let gone = hypercall::vm_info(vm);
    passed &= check!(gone == Err(hyp_abi::HypError::NoSuchVm), "the VM is gone: {gone:?}");
    passed &= invariants("tearing down a VM with a shared page");
    passed
}

/// A non-protected VM: KVM's UID, the MMIO guard, and none of the memory calls.
fn non_protected_guest(pa: u64) -> bool {
    load(pa, guests::memcall());
    let Ok(vm) = create_ready(VmType::NonProtected, 1, pa, 2, 0) else {
        return check!(false, "create the non-protected memory-call VM");
    };
    let mut passed = discovery(vm, false, "non-protected");
    for call in [GuestCall::HypMeminfo, GuestCall::MemShare, GuestCall::MemUnshare, GuestCall::MemRelinquish] {
        let answer = hvc(vm, u64::from(call.function_id()), GUEST_ENTRY + 0x1000, 0, 0);
        passed &= check!(
            answer == Ok([NOT_SUPPORTED, 0, 0, 0]),
            "non-protected guest: {call:?} is not supported: {answer:x?}"
        );
    }
    let off = command(vm, [PSCI_SYSTEM_OFF, 0, 0, 0], 4);
    passed &= check!(off == Err(Stop::Exit(Exit::SystemOff)), "the non-protected guest turns its VM off: {off:x?}");
    passed &= tear_down(vm, "non-protected memory-call VM");
    passed &= invariants("the non-protected memory-call VM");
    passed
}

/// Both VM types, on the four consecutive scratch pages from `pa`. True when
/// all passed.
pub fn run_all(pa: u64) -> bool {
    let mut passed = protected_guest(pa);
    passed &= non_protected_guest(pa);
    passed
}
