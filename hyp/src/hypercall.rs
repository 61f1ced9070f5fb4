//! The host's door into the hyp: decoding an HVC's function ID and arguments and
//! producing its result registers. Every argument is hostile input: each handler
//! validates before it changes anything, and a failed call changes nothing.

#![forbid(unsafe_code)]

use hyp_abi::{encode_result, HostCall, HypError, ABI_VERSION_MAJOR, ABI_VERSION_MINOR};

/// Whether this build answers the debug hypercalls (cargo feature `debug-hypercalls`).
pub const DEBUG_HYPERCALLS: bool = cfg!(feature = "debug-hypercalls");

/// The memory services behind the host calls (the hyp's memory state, or a fake).
pub trait HostMemoryCalls {
    fn share_hyp(&mut self, start: u64, pages: u64) -> Result<(), HypError>;
    fn unshare_hyp(&mut self, start: u64, pages: u64) -> Result<(), HypError>;
    fn donate_hyp(&mut self, start: u64, pages: u64) -> Result<(), HypError>;
    fn reclaim_hyp(&mut self, start: u64, pages: u64) -> Result<(), HypError>;
    /// Violations found, free memcache pages, memcache pages in use.
    fn check_invariants(&mut self) -> [u64; 3];
    fn debug_exchange(&mut self, address: u64, value: u64) -> Result<u64, HypError>;
}

/// Handles one host hypercall: `regs` are x0..x6 at the HVC, the result is the
/// x0..x3 to return. Function IDs that are not host calls get `NOT_SUPPORTED`.
pub fn handle_host_hvc(regs: &[u64; 7], memory: &mut dyn HostMemoryCalls) -> [u64; 4] {
    let call =
        HostCall::from_function_id(regs[0]).filter(|call| DEBUG_HYPERCALLS || !call.is_debug());
    let (a1, a2) = (regs[1], regs[2]);
    let done = |r: Result<(), HypError>| r.map(|()| [0, 0, 0]);
    let result = match call {
        Some(HostCall::Version) => Ok([ABI_VERSION_MAJOR, ABI_VERSION_MINOR, 0]),
        Some(HostCall::Features) => Ok([HostCall::features_bitmap(DEBUG_HYPERCALLS), 0, 0]),
        Some(HostCall::ShareHyp) => done(memory.share_hyp(a1, a2)),
        Some(HostCall::UnshareHyp) => done(memory.unshare_hyp(a1, a2)),
        Some(HostCall::DonateHyp) => done(memory.donate_hyp(a1, a2)),
        Some(HostCall::ReclaimHyp) => done(memory.reclaim_hyp(a1, a2)),
        Some(HostCall::DebugCheckInvariants) => Ok(memory.check_invariants()),
        Some(HostCall::DebugExchange) => memory.debug_exchange(a1, a2).map(|old| [old, 0, 0]),
        None => Err(HypError::NotSupported),
    };
    encode_result(result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyp_abi::decode_result;

    /// Records the calls it gets; fails share with `NotOwned`.
    #[derive(Default)]
    struct Recorder(Vec<(&'static str, u64, u64)>);

    impl HostMemoryCalls for Recorder {
        fn share_hyp(&mut self, start: u64, pages: u64) -> Result<(), HypError> {
            self.0.push(("share", start, pages));
            Err(HypError::NotOwned)
        }
        fn unshare_hyp(&mut self, start: u64, pages: u64) -> Result<(), HypError> {
            self.0.push(("unshare", start, pages));
            Ok(())
        }
        fn donate_hyp(&mut self, start: u64, pages: u64) -> Result<(), HypError> {
            self.0.push(("donate", start, pages));
            Ok(())
        }
        fn reclaim_hyp(&mut self, start: u64, pages: u64) -> Result<(), HypError> {
            self.0.push(("reclaim", start, pages));
            Ok(())
        }
        fn check_invariants(&mut self) -> [u64; 3] {
            [0, 7, 1]
        }
        fn debug_exchange(&mut self, address: u64, value: u64) -> Result<u64, HypError> {
            Ok(address ^ value)
        }
    }

    fn call(
        memory: &mut Recorder,
        id: u64,
        a1: u64,
        a2: u64,
    ) -> Result<[u64; 3], Result<HypError, hyp_abi::UnknownStatus>> {
        decode_result(handle_host_hvc(&[id, a1, a2, u64::MAX, 0, 0, 0], memory))
    }

    #[test]
    fn version_and_features() {
        let m = &mut Recorder::default();
        assert_eq!(
            call(m, HostCall::Version.function_id().into(), 0, 0),
            Ok([ABI_VERSION_MAJOR, ABI_VERSION_MINOR, 0])
        );
        assert_eq!(
            call(m, HostCall::Features.function_id().into(), 0, 0),
            Ok([HostCall::features_bitmap(DEBUG_HYPERCALLS), 0, 0])
        );
    }

    #[test]
    fn memory_calls_pass_their_arguments_and_errors_through() {
        let m = &mut Recorder::default();
        assert_eq!(
            call(m, HostCall::ShareHyp.function_id().into(), 0x4000_0000, 3),
            Err(Ok(HypError::NotOwned))
        );
        assert_eq!(
            call(m, HostCall::UnshareHyp.function_id().into(), 0x5000, 1),
            Ok([0, 0, 0])
        );
        assert_eq!(
            call(m, HostCall::DonateHyp.function_id().into(), 0x6000, 2),
            Ok([0, 0, 0])
        );
        assert_eq!(
            call(m, HostCall::ReclaimHyp.function_id().into(), 0x7000, 4),
            Ok([0, 0, 0])
        );
        assert_eq!(
            m.0,
            vec![
                ("share", 0x4000_0000, 3),
                ("unshare", 0x5000, 1),
                ("donate", 0x6000, 2),
                ("reclaim", 0x7000, 4)
            ]
        );
    }

    #[test]
    fn debug_calls_exist_only_in_debug_builds() {
        let m = &mut Recorder::default();
        let got = call(m, HostCall::DebugCheckInvariants.function_id().into(), 0, 0);
        if DEBUG_HYPERCALLS {
            assert_eq!(got, Ok([0, 7, 1]));
        } else {
            assert_eq!(got, Err(Ok(HypError::NotSupported)));
        }
    }

    #[test]
    fn unknown_ids_are_not_supported_and_reach_nothing() {
        let m = &mut Recorder::default();
        for id in [
            0u64,
            0xC600_1006,
            0xC600_0000,
            0x8400_0000,
            u64::MAX,
            0xC600_1002 | (1 << 32),
            0x8600_1002,
        ] {
            assert_eq!(
                call(m, id, 0, 0),
                Err(Ok(HypError::NotSupported)),
                "{id:#x}"
            );
        }
        assert!(m.0.is_empty());
    }
}
