//! One safe function per hypercall of the hyp ABI. Each issues `HVC #0` with the
//! SMCCC register convention and decodes the status into `Result<_, HypError>`.

use hyp_abi::{decode_result, HostCall, HypError};

/// Issues the call with function ID `function` and arguments x1..x6.
pub fn raw_call(function: u32, args: [u64; 6]) -> [u64; 4] {
    let mut all = [0u64; 17];
    all[..6].copy_from_slice(&args);
    let r = smccc::hvc64(function, all);
    [r[0], r[1], r[2], r[3]]
}

fn call(call: HostCall, args: [u64; 6]) -> Result<[u64; 3], HypError> {
    // A status this shim does not know means a call it cannot use.
    decode_result(raw_call(call.function_id(), args))
        .map_err(|e| e.unwrap_or(HypError::NotSupported))
}

/// The hyp's ABI version as (major, minor).
pub fn version() -> Result<(u64, u64), HypError> {
    call(HostCall::Version, [0; 6]).map(|[major, minor, _]| (major, minor))
}

/// The bitmap of implemented host calls.
pub fn features() -> Result<u64, HypError> {
    call(HostCall::Features, [0; 6]).map(|[bits, _, _]| bits)
}
