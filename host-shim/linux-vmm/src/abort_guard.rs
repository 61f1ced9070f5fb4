//! Loads whose SIGBUS is caught: the kernel delivers SIGBUS for a read of a
//! page the hyp refuses the host (a protected VM's, or one not given back);
//! the handler notes the signal and moves the PC past the load (a single
//! `ldr`, so 4 bytes). No child process: fork would make the kernel copy the
//! pinned pages for the child, reading pages the hyp gave away.

use core::sync::atomic::{AtomicI32, Ordering};

static CAUGHT: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_sigbus(signal: i32, _: *mut libc::siginfo_t, context: *mut libc::c_void) {
    CAUGHT.store(signal, Ordering::SeqCst);
    // SAFETY: The kernel passes the interrupted context; stepping its PC
    // over the faulting `ldr` resumes after it.
    unsafe { (*context.cast::<libc::ucontext_t>()).uc_mcontext.pc += 4 };
}

/// Runs `body` with the SIGBUS handler installed, then puts back what was there.
fn guarded<T>(body: impl FnOnce() -> T) -> T {
    // SAFETY: A zeroed sigaction with a handler of the SA_SIGINFO form.
    let mut action: libc::sigaction = unsafe { core::mem::zeroed() };
    action.sa_sigaction = on_sigbus as *const () as usize;
    action.sa_flags = libc::SA_SIGINFO;
    // SAFETY: As above: filled in by sigaction.
    let mut previous: libc::sigaction = unsafe { core::mem::zeroed() };
    // SAFETY: Installs the handler for the duration of `body`.
    unsafe { libc::sigaction(libc::SIGBUS, &action, &mut previous) };
    let result = body();
    // SAFETY: Restores what was there before.
    unsafe { libc::sigaction(libc::SIGBUS, &previous, core::ptr::null_mut()) };
    result
}

/// One guarded load (the handler must be installed): the word, or the signal.
///
/// # Safety
///
/// `address` is 8-byte aligned in a mapping of this process.
unsafe fn load(address: *const u64) -> Result<u64, i32> {
    CAUGHT.store(0, Ordering::SeqCst);
    let value: u64;
    // SAFETY: `address` is mapped (the caller's promise); if the hyp refuses
    // the access the handler skips this one instruction.
    unsafe { core::arch::asm!("mov {v}, xzr", "ldr {v}, [{a}]", v = out(reg) value, a = in(reg) address) };
    match CAUGHT.load(Ordering::SeqCst) {
        0 => Ok(value),
        signal => Err(signal),
    }
}

/// Reads the word at `address`: the word, or the signal that refused it.
///
/// # Safety
///
/// As [`load`].
pub unsafe fn read(address: *const u64) -> Result<u64, i32> {
    // SAFETY: The caller's promise.
    guarded(|| unsafe { load(address) })
}

/// The index of the first of the `count` pages of `stride` bytes from `base`
/// whose first word the host may not read, or None if it may read them all.
///
/// # Safety
///
/// The pages are mapped in this process and `base` is 8-byte aligned.
pub unsafe fn first_refused(base: *const u8, stride: usize, count: usize) -> Option<usize> {
    guarded(|| {
        // SAFETY: Each page is in the mapping (the caller's promise).
        (0..count).find(|&page| unsafe { load(base.add(page * stride).cast()) }.is_err())
    })
}
