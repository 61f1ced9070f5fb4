//! Calls to the firmware (PSCI). (The semihosting exit is `hyp_drivers::semihosting`,
//! shared with the host shim.)

/// Issues an SMCCC fast call with `SMC #0` (or `HVC #0` when `use_hvc`) and returns
/// x0..x3. Used to reach the firmware's PSCI.
pub fn firmware_call(use_hvc: bool, function: u32, args: [u64; 3]) -> [u64; 4] {
    let mut args17 = [0u64; 17];
    args17[..3].copy_from_slice(&args);
    let r = if use_hvc { smccc::hvc64(function, args17) } else { smccc::smc64(function, args17) };
    [r[0], r[1], r[2], r[3]]
}
