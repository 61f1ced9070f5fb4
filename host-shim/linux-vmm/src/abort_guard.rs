//! Loads whose SIGBUS is caught: the kernel delivers SIGBUS for a read of a
//! page the hyp refuses the host (a protected VM's page it did not share, or
//! one not given back). One handler for the whole process, installed once:
//! it recognises the probe's own load by its address and makes the probe
//! return "refused"; any other SIGBUS is reported, then kills the process as
//! it would have. No child process: fork would make the kernel copy the
//! pinned pages for the child, reading pages the hyp gave away.

use std::sync::Once;

/// What the probe returns in x0 and x1: the word, and 1 if the load was refused.
#[repr(C)]
struct Probe {
    value: u64,
    refused: u64,
}

// The probe: x0 is the address; the handler finds `hyp_vmm_probe_load` by
// its address, sets x1 and steps over it.
core::arch::global_asm!(
    ".global hyp_vmm_probe",
    ".global hyp_vmm_probe_load",
    ".type hyp_vmm_probe, %function",
    "hyp_vmm_probe:",
    "    mov x1, xzr",
    "hyp_vmm_probe_load:",
    "    ldr x0, [x0]",
    "    ret",
);

extern "C" {
    fn hyp_vmm_probe(address: *const u64) -> Probe;
    static hyp_vmm_probe_load: u32;
}

extern "C" fn on_sigbus(signal: i32, info: *mut libc::siginfo_t, context: *mut libc::c_void) {
    // SAFETY: The kernel passes the interrupted context, and the probe's
    // label is a symbol of this program.
    let (context, probe_load) =
        unsafe { (&mut *context.cast::<libc::ucontext_t>(), core::ptr::addr_of!(hyp_vmm_probe_load) as u64) };
    if context.uc_mcontext.pc == probe_load {
        context.uc_mcontext.regs[0] = 0;
        context.uc_mcontext.regs[1] = 1;
        context.uc_mcontext.pc += 4;
        return;
    }
    // Not the probe: a device touched a page the guest stopped sharing while
    // the device used it. Say so, then die of the signal as before.
    // SAFETY: The kernel filled `info` for this SIGBUS.
    let address = unsafe { (*info).si_addr() } as usize;
    let mut message = *b"hyp-vmm: SIGBUS at host address 0x0000000000000000: the hyp refused an access (a protected guest unshared memory a device was using); stopping\n";
    for (i, slot) in message[34..50].iter_mut().enumerate() {
        *slot = b"0123456789abcdef"[address >> (60 - 4 * i) & 0xf];
    }
    // SAFETY: write(2) and signal(2) are async-signal-safe; after the
    // default action is back, returning re-runs the load, which kills the
    // process with SIGBUS.
    unsafe {
        libc::write(2, message.as_ptr().cast(), message.len());
        libc::signal(signal, libc::SIG_DFL);
    }
}

/// Installs the handler, once for the process.
fn install() {
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        // SAFETY: A zeroed sigaction with a handler of the SA_SIGINFO form.
        let mut action: libc::sigaction = unsafe { core::mem::zeroed() };
        action.sa_sigaction = on_sigbus as *const () as usize;
        action.sa_flags = libc::SA_SIGINFO;
        // SAFETY: Installs that handler; nothing else in this process handles SIGBUS.
        unsafe { libc::sigaction(libc::SIGBUS, &action, core::ptr::null_mut()) };
    });
}

/// Reads the word at `address`: the word, or the signal that refused it.
///
/// # Safety
///
/// `address` is 8-byte aligned in a mapping of this process.
pub unsafe fn read(address: *const u64) -> Result<u64, i32> {
    install();
    // SAFETY: `address` is mapped (the caller's promise); if the hyp refuses
    // the access the handler makes the probe say so.
    let probe = unsafe { hyp_vmm_probe(address) };
    if probe.refused == 0 {
        Ok(probe.value)
    } else {
        Err(libc::SIGBUS)
    }
}

/// The index of the first of the `count` pages of `stride` bytes from `base`
/// whose first word the host may not read, or None if it may read them all.
///
/// # Safety
///
/// The pages are mapped in this process and `base` is 8-byte aligned.
pub unsafe fn first_refused(base: *const u8, stride: usize, count: usize) -> Option<usize> {
    // SAFETY: Each page is in the mapping (the caller's promise).
    (0..count).find(|&page| unsafe { read(base.add(page * stride).cast()) }.is_err())
}

/// A protected guest's RAM as its devices may touch it: a page is accessible
/// while the host may read it (the guest shared it).
pub struct SharedPages;

impl linux_vmm::virtio::device_memory::HostAccess for SharedPages {
    fn page_accessible(&self, page: *const u8) -> bool {
        // SAFETY: `DeviceMemory` asks only for pages of the guest's RAM,
        // which this process maps for the VM's life, page aligned.
        unsafe { read(page.cast()) }.is_ok()
    }
}
