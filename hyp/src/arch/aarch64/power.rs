//! Ending the machine: semihosting exit (under a debugger or QEMU `-semihosting`)
//! and PSCI calls to the firmware.

use core::arch::asm;

/// Semihosting SYS_EXIT (operation 0x18) with ADP_Stopped_ApplicationExit and a
/// status code: QEMU with `-semihosting` exits with that status.
///
/// # Safety
///
/// Only call when semihosting is known to be enabled: otherwise `hlt` is an
/// undefined instruction.
pub unsafe fn semihosting_exit(status: u32) {
    /// ADP_Stopped_ApplicationExit.
    const APPLICATION_EXIT: u64 = 0x20026;
    /// SYS_EXIT operation number.
    const SYS_EXIT: u64 = 0x18;
    let block: [u64; 2] = [APPLICATION_EXIT, u64::from(status)];
    // SAFETY: The caller guarantees a semihosting host; the parameter block stays
    // alive for the duration of the call.
    unsafe {
        asm!(
            "hlt #0xf000",
            inout("x0") SYS_EXIT => _,
            in("x1") block.as_ptr(),
            options(nostack),
        );
    }
}

/// Issues an SMCCC fast call with `SMC #0` (or `HVC #0` when `use_hvc`) and returns
/// x0..x3. Used to reach the firmware's PSCI.
pub fn firmware_call(use_hvc: bool, function: u32, args: [u64; 3]) -> [u64; 4] {
    let mut args17 = [0u64; 17];
    args17[..3].copy_from_slice(&args);
    let r = if use_hvc { smccc::hvc64(function, args17) } else { smccc::smc64(function, args17) };
    [r[0], r[1], r[2], r[3]]
}
