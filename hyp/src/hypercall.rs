//! The host's door into the hyp: decoding an HVC's function ID and arguments and
//! producing its result registers. Every argument is hostile input: each handler
//! validates before it changes anything, and a failed call changes nothing.

#![forbid(unsafe_code)]

use hyp_abi::{encode_result, HostCall, HypError, ABI_VERSION_MAJOR, ABI_VERSION_MINOR};

/// Handles one host hypercall: `regs` are x0..x6 at the HVC, the result is the
/// x0..x3 to return. Function IDs that are not host calls get `NOT_SUPPORTED`.
pub fn handle_host_hvc(regs: &[u64; 7]) -> [u64; 4] {
    let result = match HostCall::from_function_id(regs[0]) {
        Some(HostCall::Version) => Ok([ABI_VERSION_MAJOR, ABI_VERSION_MINOR, 0]),
        Some(HostCall::Features) => Ok([HostCall::features_bitmap(), 0, 0]),
        None => Err(HypError::NotSupported),
    };
    encode_result(result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyp_abi::decode_result;

    fn call(id: u64) -> Result<[u64; 3], Result<HypError, hyp_abi::UnknownStatus>> {
        decode_result(handle_host_hvc(&[id, 0xdead, 0xbeef, u64::MAX, 0, 0, 0]))
    }

    #[test]
    fn version_reports_the_abi_version() {
        assert_eq!(
            call(HostCall::Version.function_id().into()),
            Ok([ABI_VERSION_MAJOR, ABI_VERSION_MINOR, 0])
        );
    }

    #[test]
    fn features_lists_every_call() {
        assert_eq!(
            call(HostCall::Features.function_id().into()),
            Ok([0b11, 0, 0])
        );
    }

    #[test]
    fn unknown_ids_are_not_supported() {
        for id in [
            0u64,
            0xC600_1002,
            0xC600_0000,
            0x8400_0000,
            u64::MAX,
            0xC600_1000 | (1 << 32),
        ] {
            assert_eq!(call(id), Err(Ok(HypError::NotSupported)), "{id:#x}");
        }
    }
}
