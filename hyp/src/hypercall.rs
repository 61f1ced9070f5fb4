//! The host's door into the hyp: decoding an HVC's function ID and arguments and
//! producing its result registers. Every argument is hostile input: each handler
//! validates before it changes anything, and a failed call changes nothing.

#![forbid(unsafe_code)]

use hyp_abi::{encode_result, Exit, HostCall, HypError, ABI_VERSION_MAJOR, ABI_VERSION_MINOR};

/// Whether this build answers the debug hypercalls (cargo feature `debug-hypercalls`).
pub const DEBUG_HYPERCALLS: bool = cfg!(feature = "debug-hypercalls");

/// The services behind the host calls (the hyp's state, or a fake in tests).
pub trait HostServices {
    /// The [`hyp_abi::platform_flags`] FEATURES reports in x2.
    fn platform_flags(&mut self) -> u64 {
        0
    }
    fn share_hyp(&mut self, start: u64, pages: u64) -> Result<(), HypError>;
    fn unshare_hyp(&mut self, start: u64, pages: u64) -> Result<(), HypError>;
    fn donate_hyp(&mut self, start: u64, pages: u64) -> Result<(), HypError>;
    fn reclaim_hyp(&mut self, start: u64, pages: u64) -> Result<(), HypError>;
    /// Runs the invariant checker over `scope` (a [`hyp_abi::CheckScope`]):
    /// violations found, memcache pages (free | in use << 32), pool bytes in use.
    ///
    /// # Errors
    ///
    /// `InvalidArgument` for a scope the ABI does not define.
    fn check_invariants(&mut self, scope: u64) -> Result<[u64; 3], HypError>;
    fn debug_exchange(&mut self, address: u64, value: u64) -> Result<u64, HypError>;
    fn vm_create(&mut self, ty: u64, vcpus: u64) -> Result<u64, HypError>;
    fn vm_map(&mut self, handle: u64, pa: u64, ipa: u64, pages: u64) -> Result<(), HypError>;
    fn vcpu_init(&mut self, handle: u64, vcpu: u64, pc: u64, x0: u64) -> Result<(), HypError>;
    fn vcpu_run(&mut self, handle: u64, vcpu: u64, mmio_read_value: u64) -> Result<Exit, HypError>;
    fn vcpu_get_reg(&mut self, handle: u64, vcpu: u64, reg: u64) -> Result<u64, HypError>;
    fn vcpu_set_reg(&mut self, handle: u64, vcpu: u64, reg: u64, value: u64) -> Result<(), HypError>;
    fn vm_info(&mut self, handle: u64) -> Result<[u64; 3], HypError>;
    fn vm_teardown(&mut self, handle: u64) -> Result<(), HypError>;
    fn vm_reclaim(&mut self, handle: u64, ipa: u64, pages: u64) -> Result<(), HypError>;
    fn vcpu_inject_irq(&mut self, handle: u64, vcpu: u64, intid: u64) -> Result<u64, HypError>;
    fn vcpu_set_irq_line(&mut self, handle: u64, vcpu: u64, level: u64) -> Result<(), HypError>;
}

/// Handles one host hypercall: `regs` are x0..x6 at the HVC, the result is the
/// x0..x3 to return. Function IDs that are not host calls get `NOT_SUPPORTED`.
pub fn handle_host_hvc(regs: &[u64; 7], memory: &mut dyn HostServices) -> [u64; 4] {
    let call = HostCall::from_function_id(regs[0]).filter(|call| DEBUG_HYPERCALLS || !call.is_debug());
    let [_, a1, a2, a3, a4, _, _] = *regs;
    let done = |r: Result<(), HypError>| r.map(|()| [0, 0, 0]);
    let result = match call {
        Some(HostCall::Version) => Ok([ABI_VERSION_MAJOR, ABI_VERSION_MINOR, 0]),
        Some(HostCall::Features) => Ok([HostCall::features_bitmap(DEBUG_HYPERCALLS), memory.platform_flags(), 0]),
        Some(HostCall::ShareHyp) => done(memory.share_hyp(a1, a2)),
        Some(HostCall::UnshareHyp) => done(memory.unshare_hyp(a1, a2)),
        Some(HostCall::DonateHyp) => done(memory.donate_hyp(a1, a2)),
        Some(HostCall::ReclaimHyp) => done(memory.reclaim_hyp(a1, a2)),
        Some(HostCall::DebugCheckInvariants) => memory.check_invariants(a1),
        Some(HostCall::DebugExchange) => memory.debug_exchange(a1, a2).map(|old| [old, 0, 0]),
        Some(HostCall::VmCreate) => memory.vm_create(a1, a2).map(|handle| [handle, 0, 0]),
        Some(HostCall::VmMap) => done(memory.vm_map(a1, a2, a3, a4)),
        Some(HostCall::VcpuInit) => done(memory.vcpu_init(a1, a2, a3, a4)),
        Some(HostCall::VcpuRun) => memory.vcpu_run(a1, a2, a3).map(Exit::encode),
        Some(HostCall::VcpuGetReg) => memory.vcpu_get_reg(a1, a2, a3).map(|value| [value, 0, 0]),
        Some(HostCall::VcpuSetReg) => done(memory.vcpu_set_reg(a1, a2, a3, a4)),
        Some(HostCall::VmInfo) => memory.vm_info(a1),
        Some(HostCall::VmTeardown) => done(memory.vm_teardown(a1)),
        Some(HostCall::VmReclaim) => done(memory.vm_reclaim(a1, a2, a3)),
        Some(HostCall::VcpuInjectIrq) => memory.vcpu_inject_irq(a1, a2, a3).map(|vcpu| [vcpu, 0, 0]),
        Some(HostCall::VcpuSetIrqLine) => done(memory.vcpu_set_irq_line(a1, a2, a3)),
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

    impl HostServices for Recorder {
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
        fn check_invariants(&mut self, scope: u64) -> Result<[u64; 3], HypError> {
            self.0.push(("check", scope, 0));
            Ok([0, 7, 1])
        }
        fn debug_exchange(&mut self, address: u64, value: u64) -> Result<u64, HypError> {
            Ok(address ^ value)
        }
        fn vm_create(&mut self, ty: u64, vcpus: u64) -> Result<u64, HypError> {
            self.0.push(("create", ty, vcpus));
            Ok(0x1_0000_0001)
        }
        fn vm_map(&mut self, handle: u64, pa: u64, _ipa: u64, _pages: u64) -> Result<(), HypError> {
            self.0.push(("map", handle, pa));
            Ok(())
        }
        fn vcpu_init(&mut self, handle: u64, vcpu: u64, _pc: u64, _x0: u64) -> Result<(), HypError> {
            self.0.push(("init", handle, vcpu));
            Ok(())
        }
        fn vcpu_run(&mut self, _handle: u64, _vcpu: u64, _value: u64) -> Result<Exit, HypError> {
            Ok(Exit::Mmio { ipa: 0x900_0000, size_bytes: 1, write: true, value: 0x41 })
        }
        fn vcpu_get_reg(&mut self, _handle: u64, _vcpu: u64, _reg: u64) -> Result<u64, HypError> {
            Err(HypError::PermissionDenied)
        }
        fn vcpu_set_reg(&mut self, _handle: u64, _vcpu: u64, _reg: u64, _value: u64) -> Result<(), HypError> {
            Err(HypError::PermissionDenied)
        }
        fn vm_info(&mut self, _handle: u64) -> Result<[u64; 3], HypError> {
            Ok([1, 2, 3])
        }
        fn vm_teardown(&mut self, _handle: u64) -> Result<(), HypError> {
            Err(HypError::NoSuchVm)
        }
        fn vm_reclaim(&mut self, _handle: u64, _ipa: u64, _pages: u64) -> Result<(), HypError> {
            Err(HypError::Busy)
        }
        fn vcpu_inject_irq(&mut self, _handle: u64, _vcpu: u64, intid: u64) -> Result<u64, HypError> {
            self.0.push(("inject", intid, 0));
            Ok(0)
        }
        fn vcpu_set_irq_line(&mut self, _handle: u64, _vcpu: u64, level: u64) -> Result<(), HypError> {
            self.0.push(("irq line", level, 0));
            Ok(())
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
        assert_eq!(call(m, HostCall::ShareHyp.function_id().into(), 0x4000_0000, 3), Err(Ok(HypError::NotOwned)));
        assert_eq!(call(m, HostCall::UnshareHyp.function_id().into(), 0x5000, 1), Ok([0, 0, 0]));
        assert_eq!(call(m, HostCall::DonateHyp.function_id().into(), 0x6000, 2), Ok([0, 0, 0]));
        assert_eq!(call(m, HostCall::ReclaimHyp.function_id().into(), 0x7000, 4), Ok([0, 0, 0]));
        assert_eq!(
            m.0,
            vec![("share", 0x4000_0000, 3), ("unshare", 0x5000, 1), ("donate", 0x6000, 2), ("reclaim", 0x7000, 4)]
        );
    }

    #[test]
    fn vm_calls_pass_arguments_and_encode_results() {
        let m = &mut Recorder::default();
        assert_eq!(call(m, HostCall::VmCreate.function_id().into(), 1, 2), Ok([0x1_0000_0001, 0, 0]));
        assert_eq!(call(m, HostCall::VmMap.function_id().into(), 5, 0x4000_0000), Ok([0, 0, 0]));
        assert_eq!(call(m, HostCall::VcpuRun.function_id().into(), 5, 0), Ok([1 << 8 | 1 << 16, 0x900_0000, 0x41]));
        assert_eq!(call(m, HostCall::VcpuGetReg.function_id().into(), 5, 0), Err(Ok(HypError::PermissionDenied)));
        assert_eq!(call(m, HostCall::VmInfo.function_id().into(), 5, 0), Ok([1, 2, 3]));
        assert_eq!(call(m, HostCall::VmTeardown.function_id().into(), 5, 0), Err(Ok(HypError::NoSuchVm)));
        assert_eq!(call(m, HostCall::VmReclaim.function_id().into(), 5, 0), Err(Ok(HypError::Busy)));
        assert_eq!(m.0, vec![("create", 1, 2), ("map", 5, 0x4000_0000)]);
    }

    #[test]
    fn debug_calls_exist_only_in_debug_builds() {
        let m = &mut Recorder::default();
        let got = call(m, HostCall::DebugCheckInvariants.function_id().into(), 1, 0);
        if DEBUG_HYPERCALLS {
            assert_eq!(got, Ok([0, 7, 1]));
            assert_eq!(m.0, vec![("check", 1, 0)], "the scope reaches the checker");
        } else {
            assert_eq!(got, Err(Ok(HypError::NotSupported)));
        }
    }

    #[test]
    fn unknown_ids_are_not_supported_and_reach_nothing() {
        let m = &mut Recorder::default();
        for id in [0u64, 0xC600_1011, 0xC600_0000, 0x8400_0000, u64::MAX, 0xC600_1002 | (1 << 32), 0x8600_1002] {
            assert_eq!(call(m, id, 0, 0), Err(Ok(HypError::NotSupported)), "{id:#x}");
        }
        assert!(m.0.is_empty());
    }
}
