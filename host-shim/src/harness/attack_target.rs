//! The protected VM every device attack aims at: a console guest whose code
//! page is the target. After the attack the guest must run its code as
//! loaded, the hyp must answer, the VM must go away with its page, and the
//! invariant checker (test builds) must be clean.

use crate::guests::{self, GUEST_ENTRY};
use crate::harness::debug_calls::debug_calls;
use crate::harness::hypercall;
use crate::harness::report::check;
use crate::harness::vms::{console_prints, create_vm};
use hyp_abi::VmType;

/// A protected console guest holding `page`; its handle, or `None` (logged).
pub fn create(page: u64, attack: &str) -> Option<u64> {
    guests::load(page, guests::console());
    let Ok(handle) = create_vm(VmType::Protected, 1) else {
        check!(false, "{attack}: create the protected target VM");
        return None;
    };
    let ready = hypercall::vm_map(handle, page, GUEST_ENTRY, 1).is_ok()
        && hypercall::vcpu_init(handle, 0, GUEST_ENTRY, u64::from(b'P')).is_ok();
    check!(ready, "{attack}: protected target VM holds page {page:#x}").then_some(handle)
}

/// The checks after `attack`; tears the target down. True when all held.
pub fn check_intact(handle: u64, attack: &str) -> bool {
    let printed = console_prints(handle, 'P', "hello from guest P R1");
    let mut passed =
        check!(printed == Ok(true), "after the {attack} the protected guest runs its code unchanged: {printed:?}");
    passed &= check!(hypercall::version().is_ok(), "after the {attack} the hyp answers");
    passed &= check!(
        hypercall::vm_teardown(handle).is_ok() && hypercall::vm_reclaim(handle, GUEST_ENTRY, 1).is_ok(),
        "{attack}: target VM torn down and its page reclaimed"
    );
    if debug_calls() {
        let report = hypercall::check_invariants();
        passed &= check!(
            matches!(report, Ok(r) if r.violations == 0),
            "invariant checker clean after the {attack}: {report:?}"
        );
    }
    passed
}
