//! Ending the machine through semihosting (under a debugger, or QEMU with
//! `-semihosting`): `SYS_EXIT` with a status, for the hyp and the host shim.

/// Semihosting SYS_EXIT (operation 0x18) with ADP_Stopped_ApplicationExit and
/// `status`: QEMU with `-semihosting` exits with that status.
///
/// # Safety
///
/// Only call when semihosting is known to be served: otherwise `HLT` is an
/// undefined instruction.
#[cfg(target_arch = "aarch64")]
pub unsafe fn exit(status: u32) {
    /// ADP_Stopped_ApplicationExit.
    const APPLICATION_EXIT: u64 = 0x20026;
    /// SYS_EXIT operation number.
    const SYS_EXIT: u64 = 0x18;
    let block: [u64; 2] = [APPLICATION_EXIT, u64::from(status)];
    // SAFETY: The caller guarantees a semihosting host; the parameter block
    // stays alive for the duration of the call.
    unsafe {
        core::arch::asm!(
            "hlt #0xf000",
            inout("x0") SYS_EXIT => _,
            in("x1") block.as_ptr(),
            options(nostack),
        );
    }
}
