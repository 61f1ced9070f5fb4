//! VM calls the suites share: `VM_CREATE` and `VCPU_RUN` counted for the VM
//! checks' summary line, and running a console guest to its end.

use crate::guests::{GUEST_ENTRY, GUEST_UART, GUEST_UART_STATUS, STATUS_ANSWER};
use crate::harness::hypercall;
use crate::harness::report::check;
use core::sync::atomic::{AtomicU64, Ordering};
use hyp_abi::{Exit, HypError, VmType};

/// Runs before a console guest is declared stuck.
const MAX_RUNS: usize = 256;

/// What the counted calls did, for the summary line.
static VMS_CREATED: AtomicU64 = AtomicU64::new(0);
static PROTECTED_CREATED: AtomicU64 = AtomicU64::new(0);
static EXITS: AtomicU64 = AtomicU64::new(0);

/// Adds one with a plain load and store: the shim runs on one CPU with its MMU
/// off, where exclusive accesses are not dependable.
fn bump(counter: &AtomicU64) {
    counter.store(counter.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
}

/// `VM_CREATE`, counted.
pub fn create_vm(ty: VmType, vcpus: u64) -> Result<u64, HypError> {
    let handle = hypercall::vm_create(ty, vcpus)?;
    bump(&VMS_CREATED);
    if ty == VmType::Protected {
        bump(&PROTECTED_CREATED);
    }
    Ok(handle)
}

/// A VM of `ty` with `vcpus` vCPUs (counted), given the `pages` pages at
/// `pa` from IPA [`GUEST_ENTRY`] on, its vCPU 0 to start there with `x0`.
pub fn create_ready(ty: VmType, vcpus: u64, pa: u64, pages: u64, x0: u64) -> Result<u64, HypError> {
    let handle = create_vm(ty, vcpus)?;
    hypercall::vm_map(handle, pa, GUEST_ENTRY, pages)?;
    hypercall::vcpu_init(handle, 0, GUEST_ENTRY, x0)?;
    Ok(handle)
}

/// Tears VM `handle` down, checked: "tear the `what` down".
pub fn tear_down(handle: u64, what: &str) -> bool {
    check!(hypercall::vm_teardown(handle).is_ok(), "tear the {what} down")
}

/// Tears the VM `what` down ([`tear_down`]) and, a protected one, takes its
/// page at [`GUEST_ENTRY`] back; true if all of it passed.
pub fn tear_down_and_reclaim(handle: u64, ty: VmType, what: &str) -> bool {
    let mut passed = tear_down(handle, what);
    if ty == VmType::Protected {
        passed &= check!(hypercall::vm_reclaim(handle, GUEST_ENTRY, 1).is_ok(), "reclaim the {what}'s page");
    }
    passed
}

/// `VCPU_RUN`, counting exits.
pub fn run_vcpu(handle: u64, vcpu: u64, value: u64) -> Result<Exit, HypError> {
    let exit = hypercall::vcpu_run(handle, vcpu, value)?;
    bump(&EXITS);
    Ok(exit)
}

/// What the counted calls did so far: (VMs created, of them protected, exits).
pub fn counts() -> (u64, u64, u64) {
    (VMS_CREATED.load(Ordering::Relaxed), PROTECTED_CREATED.load(Ordering::Relaxed), EXITS.load(Ordering::Relaxed))
}

/// A console line collected from MMIO writes.
pub struct Line {
    bytes: [u8; 64],
    len: usize,
}

impl Line {
    pub fn as_str(&self) -> &str {
        core::str::from_utf8(&self.bytes[..self.len]).unwrap_or("<not UTF-8>")
    }
}

/// Runs vCPU 0 until SYSTEM_OFF, emulating the UART; returns the first line.
pub fn run_console(handle: u64, tag: char) -> Result<Line, &'static str> {
    let mut line = Line { bytes: [0; 64], len: 0 };
    let mut answer = 0;
    for _ in 0..MAX_RUNS {
        match run_vcpu(handle, 0, answer) {
            Ok(Exit::Mmio { ipa: GUEST_UART, size_bytes: 1, write: true, value }) => {
                if value == u64::from(b'\n') {
                    log::info!("guest {tag}: {}", line.as_str());
                } else if line.len < line.bytes.len() {
                    line.bytes[line.len] = value as u8;
                    line.len += 1;
                }
            }
            Ok(Exit::Mmio { ipa: GUEST_UART_STATUS, size_bytes: 4, write: false, .. }) => answer = STATUS_ANSWER,
            Ok(Exit::SystemOff) => return Ok(line),
            Ok(_) => return Err("unexpected exit"),
            Err(_) => return Err("run failed"),
        }
    }
    Err("guest did not finish")
}

/// Runs a console guest's vCPU 0 to SYSTEM_OFF: whether it printed `expected`.
pub fn console_prints(handle: u64, tag: char, expected: &str) -> Result<bool, &'static str> {
    run_console(handle, tag).map(|line| line.as_str() == expected)
}
