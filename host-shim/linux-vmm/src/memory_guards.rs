//! `hyp-vmm check`: what the driver keeps the kernel from doing with a
//! protected VM's memory (host-shim/linux-module/protected_memory.c). After
//! its guest ran, the page's mapping is left out of forks and core dumps and
//! is not KSM's, and a fork does not bring the kernel down (it would copy
//! the pinned page, reading what the hyp took); memory that is not the
//! process's own (a shared mapping) is refused before anything is pinned;
//! and no file gives memory to a VM another file made (which would not take
//! it back at its close).

use crate::dev_hyp::{CallError, DevHyp};
use crate::guest_ram::PAGE;
use crate::{guests, step};
use hyp_abi::VmType;
use linux_vmm::smaps;

/// After a protected VM ran on the page at `address`: its mapping's flags,
/// and a fork (the child exits at once).
pub fn after_protected_run(address: *const u8) -> bool {
    let text = std::fs::read_to_string("/proc/self/smaps").unwrap_or_default();
    let flags = smaps::vm_flags(&text, address as u64).unwrap_or_default();
    let guarded = flags.contains(&"dc") && flags.contains(&"dd") && !flags.contains(&"mg");
    let mut passed = step(
        guarded,
        format_args!("the protected VM's memory is left out of forks and core dumps, not KSM's: VmFlags {flags:?}"),
    );
    // SAFETY: The child calls only _exit; the parent waits for it.
    let child = unsafe { libc::fork() };
    if child == 0 {
        // SAFETY: In the child: end it at once, nothing run or flushed.
        unsafe { libc::_exit(0) };
    }
    let mut status = -1;
    // SAFETY: Waits for the child just made; `status` is ours.
    let waited = child > 0 && unsafe { libc::waitpid(child, &mut status, 0) } == child;
    passed &= step(
        waited && libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        format_args!("a fork after the protected guest ran: the child ran and exited, the kernel lives"),
    );
    passed
}

/// A protected VM given a shared mapping: refused (EINVAL), nothing pinned.
pub fn shared_memory_refused(hyp: &DevHyp) -> bool {
    let Some(address) = crate::guest_ram::shared_anonymous_memory(PAGE) else {
        return step(false, format_args!("a shared page: {}", std::io::Error::last_os_error()));
    };
    let before = hyp.accounting().map(|a| a.pinned);
    let answer = hyp.vm_create(VmType::Protected, 1).map(|handle| {
        let mapped = hyp.vm_map(handle, address, guests::GUEST_ENTRY, 1);
        let _ = hyp.vm_teardown(handle);
        mapped
    });
    let refused = matches!(&answer, Ok(Err(CallError::Driver(e))) if e.raw_os_error() == Some(libc::EINVAL));
    let after = hyp.accounting().map(|a| a.pinned);
    // SAFETY: Unmaps the page mapped above, which nothing uses any more.
    unsafe { libc::munmap(address.cast(), PAGE) };
    step(
        refused && before.is_ok() && before.ok() == after.ok(),
        format_args!("a protected VM given a shared mapping: refused with EINVAL, nothing pinned: {answer:?}"),
    )
}

/// `VM_MAP` into a VM another open file of `/dev/hyp` made: refused
/// (EINVAL), nothing pinned by either file.
pub fn foreign_vm_refused(hyp: &DevHyp) -> bool {
    let other = match DevHyp::open() {
        Ok(other) => other,
        Err(e) => return step(false, format_args!("a second open of /dev/hyp: {e}")),
    };
    let Some(address) = crate::guest_ram::anonymous_memory(PAGE) else {
        return step(false, format_args!("a page for the foreign VM_MAP"));
    };
    let answer = other.vm_create(VmType::Protected, 1).map(|handle| {
        let mapped = hyp.vm_map(handle, address, guests::GUEST_ENTRY, 1);
        let _ = other.vm_teardown(handle);
        mapped
    });
    let refused = matches!(&answer, Ok(Err(CallError::Driver(e))) if e.raw_os_error() == Some(libc::EINVAL));
    let pinned = (hyp.accounting().map(|a| a.pinned), other.accounting().map(|a| a.pinned));
    // SAFETY: Unmaps the page mapped above, which nothing uses any more.
    unsafe { libc::munmap(address.cast(), PAGE) };
    step(
        refused && matches!(pinned, (Ok(0), Ok(0))),
        format_args!("VM_MAP into a VM another file made: refused with EINVAL, nothing pinned: {answer:?}, {pinned:?}"),
    )
}
