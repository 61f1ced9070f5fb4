//! The host's door into the hyp: an HVC's registers decoded once into a
//! [`HostRequest`], served by [`HostServices`], and the result registers.
//! Every argument is hostile input: each handler validates before it changes
//! anything, and a failed call changes nothing.

#![forbid(unsafe_code)]

use crate::addr::{Ipa, PageCount, PhysAddr};
use crate::host_request::{HostRequest, DEBUG_HYPERCALLS};
use crate::vm::handle::{VcpuIndex, VmHandle};
use hyp_abi::{encode_result, CheckScope, Exit, HostCall, HypError, ABI_VERSION_MAJOR, ABI_VERSION_MINOR};

/// The services behind the host calls (the hyp's state, or a fake in tests).
pub trait HostServices {
    /// The [`hyp_abi::platform_flags`] FEATURES reports in x2.
    fn platform_flags(&mut self) -> u64 {
        0
    }
    fn share_hyp(&mut self, start: PhysAddr, pages: PageCount) -> Result<(), HypError>;
    fn unshare_hyp(&mut self, start: PhysAddr, pages: PageCount) -> Result<(), HypError>;
    fn donate_hyp(&mut self, start: PhysAddr, pages: PageCount) -> Result<(), HypError>;
    fn reclaim_hyp(&mut self, start: PhysAddr, pages: PageCount) -> Result<(), HypError>;
    /// Runs the invariant checker over `scope`: violations found, memcache
    /// pages (free | in use << 32), pool bytes in use.
    fn check_invariants(&mut self, scope: CheckScope) -> Result<[u64; 3], HypError>;
    fn debug_exchange(&mut self, address: PhysAddr, value: u64) -> Result<u64, HypError>;
    fn vm_create(&mut self, ty: u64, vcpus: u64) -> Result<VmHandle, HypError>;
    fn vm_map(&mut self, vm: VmHandle, pa: PhysAddr, ipa: Ipa, pages: PageCount) -> Result<(), HypError>;
    fn vcpu_init(&mut self, vm: VmHandle, vcpu: VcpuIndex, pc: u64, x0: u64) -> Result<(), HypError>;
    fn vcpu_run(
        &mut self,
        vm: VmHandle,
        vcpu: VcpuIndex,
        mmio_read_value: u64,
        flags: hyp_abi::RunFlags,
    ) -> Result<Exit, HypError>;
    fn vcpu_get_reg(&mut self, vm: VmHandle, vcpu: VcpuIndex, reg: u64) -> Result<u64, HypError>;
    fn vcpu_set_reg(&mut self, vm: VmHandle, vcpu: VcpuIndex, reg: u64, value: u64) -> Result<(), HypError>;
    fn vm_info(&mut self, vm: VmHandle) -> Result<[u64; 3], HypError>;
    fn vm_teardown(&mut self, vm: VmHandle) -> Result<(), HypError>;
    fn vm_reclaim(&mut self, vm: VmHandle, ipa: Ipa, pages: PageCount) -> Result<(), HypError>;
    fn vcpu_inject_irq(&mut self, vm: VmHandle, vcpu: VcpuIndex, intid: u64) -> Result<u64, HypError>;
    fn vcpu_set_irq_line(&mut self, vm: VmHandle, vcpu: VcpuIndex, level: u64) -> Result<(), HypError>;
    fn vm_set_gic(&mut self, vm: VmHandle, distributor: u64, second: u64) -> Result<(), HypError>;
    fn vm_set_spi_level(&mut self, vm: VmHandle, vcpu: VcpuIndex, intid: u64, level: u64) -> Result<u64, HypError>;
}

/// Handles one host hypercall, as [`HostRequest::decode`] gave it (from x0..x6
/// at the HVC): the x0..x3 to return. Function IDs that are not host calls
/// get `NOT_SUPPORTED`.
#[inline(always)]
pub fn serve(decoded: Result<HostRequest, HypError>, services: &mut dyn HostServices) -> [u64; 4] {
    match decoded {
        Ok(request) => dispatch(request, services),
        Err(error) => encode_result(Err(error)),
    }
}

/// Serves a decoded request: its result registers x0..x3. Inlined with the
/// decoder into the trap handler, where the two matches become one jump table
/// (without it some calls took more instructions than before the typed edge:
/// scripts/bench).
#[inline(always)]
fn dispatch(request: HostRequest, services: &mut dyn HostServices) -> [u64; 4] {
    // Each arm encodes its own result: merged into one `Result` first, the
    // results of all arms went through the stack (scripts/bench).
    let done = |r: Result<(), HypError>| encode_result(r.map(|()| [0, 0, 0]));
    let one = |r: Result<u64, HypError>| encode_result(r.map(|value| [value, 0, 0]));
    match request {
        HostRequest::Version => encode_result(Ok([ABI_VERSION_MAJOR, ABI_VERSION_MINOR, 0])),
        HostRequest::Features => {
            encode_result(Ok([HostCall::features_bitmap(DEBUG_HYPERCALLS), services.platform_flags(), 0]))
        }
        HostRequest::ShareHyp { start, pages } => done(services.share_hyp(start, pages)),
        HostRequest::UnshareHyp { start, pages } => done(services.unshare_hyp(start, pages)),
        HostRequest::DonateHyp { start, pages } => done(services.donate_hyp(start, pages)),
        HostRequest::ReclaimHyp { start, pages } => done(services.reclaim_hyp(start, pages)),
        HostRequest::DebugCheckInvariants { scope } => encode_result(services.check_invariants(scope)),
        HostRequest::DebugExchange { address, value } => one(services.debug_exchange(address, value)),
        HostRequest::VmCreate { ty, vcpus } => one(services.vm_create(ty, vcpus).map(VmHandle::raw)),
        HostRequest::VmMap { vm, pa, ipa, pages } => done(services.vm_map(vm, pa, ipa, pages)),
        HostRequest::VcpuInit { vm, vcpu, pc, x0 } => done(services.vcpu_init(vm, vcpu, pc, x0)),
        HostRequest::VcpuRun { vm, vcpu, mmio_read_value, flags } => {
            encode_result(services.vcpu_run(vm, vcpu, mmio_read_value, flags).map(Exit::encode))
        }
        HostRequest::VcpuGetReg { vm, vcpu, reg } => one(services.vcpu_get_reg(vm, vcpu, reg)),
        HostRequest::VcpuSetReg { vm, vcpu, reg, value } => done(services.vcpu_set_reg(vm, vcpu, reg, value)),
        HostRequest::VmInfo { vm } => encode_result(services.vm_info(vm)),
        HostRequest::VmTeardown { vm } => done(services.vm_teardown(vm)),
        HostRequest::VmReclaim { vm, ipa, pages } => done(services.vm_reclaim(vm, ipa, pages)),
        HostRequest::VcpuInjectIrq { vm, vcpu, intid } => one(services.vcpu_inject_irq(vm, vcpu, intid)),
        HostRequest::VcpuSetIrqLine { vm, vcpu, level } => done(services.vcpu_set_irq_line(vm, vcpu, level)),
        HostRequest::VmSetGic { vm, distributor, second } => done(services.vm_set_gic(vm, distributor, second)),
        HostRequest::VmSetSpiLevel { vm, vcpu, intid, level } => one(services.vm_set_spi_level(vm, vcpu, intid, level)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyp_abi::decode_result;

    /// Records the calls it gets; fails share with `NotOwned`.
    #[derive(Default)]
    struct Recorder(Vec<(&'static str, u64, u64)>);

    impl HostServices for Recorder {
        fn share_hyp(&mut self, start: PhysAddr, pages: PageCount) -> Result<(), HypError> {
            self.0.push(("share", start.raw(), pages.raw()));
            Err(HypError::NotOwned)
        }
        fn unshare_hyp(&mut self, start: PhysAddr, pages: PageCount) -> Result<(), HypError> {
            self.0.push(("unshare", start.raw(), pages.raw()));
            Ok(())
        }
        fn donate_hyp(&mut self, start: PhysAddr, pages: PageCount) -> Result<(), HypError> {
            self.0.push(("donate", start.raw(), pages.raw()));
            Ok(())
        }
        fn reclaim_hyp(&mut self, start: PhysAddr, pages: PageCount) -> Result<(), HypError> {
            self.0.push(("reclaim", start.raw(), pages.raw()));
            Ok(())
        }
        fn check_invariants(&mut self, scope: CheckScope) -> Result<[u64; 3], HypError> {
            self.0.push(("check", scope as u64, 0));
            Ok([0, 7, 1])
        }
        fn debug_exchange(&mut self, address: PhysAddr, value: u64) -> Result<u64, HypError> {
            Ok(address.raw() ^ value)
        }
        fn vm_create(&mut self, ty: u64, vcpus: u64) -> Result<VmHandle, HypError> {
            self.0.push(("create", ty, vcpus));
            Ok(VmHandle::new(0x1_0000_0001))
        }
        fn vm_map(&mut self, vm: VmHandle, pa: PhysAddr, _ipa: Ipa, _pages: PageCount) -> Result<(), HypError> {
            self.0.push(("map", vm.raw(), pa.raw()));
            Ok(())
        }
        fn vcpu_init(&mut self, vm: VmHandle, vcpu: VcpuIndex, _pc: u64, _x0: u64) -> Result<(), HypError> {
            self.0.push(("init", vm.raw(), vcpu.raw()));
            Ok(())
        }
        fn vcpu_run(
            &mut self,
            _vm: VmHandle,
            _vcpu: VcpuIndex,
            _value: u64,
            _flags: hyp_abi::RunFlags,
        ) -> Result<Exit, HypError> {
            Ok(Exit::Mmio { ipa: 0x900_0000, size_bytes: 1, write: true, value: 0x41 })
        }
        fn vcpu_get_reg(&mut self, _vm: VmHandle, _vcpu: VcpuIndex, _reg: u64) -> Result<u64, HypError> {
            Err(HypError::PermissionDenied)
        }
        fn vcpu_set_reg(&mut self, _vm: VmHandle, _vcpu: VcpuIndex, _reg: u64, _value: u64) -> Result<(), HypError> {
            Err(HypError::PermissionDenied)
        }
        fn vm_info(&mut self, _vm: VmHandle) -> Result<[u64; 3], HypError> {
            Ok([1, 2, 3])
        }
        fn vm_teardown(&mut self, _vm: VmHandle) -> Result<(), HypError> {
            Err(HypError::NoSuchVm)
        }
        fn vm_reclaim(&mut self, _vm: VmHandle, _ipa: Ipa, _pages: PageCount) -> Result<(), HypError> {
            Err(HypError::Busy)
        }
        fn vcpu_inject_irq(&mut self, _vm: VmHandle, _vcpu: VcpuIndex, intid: u64) -> Result<u64, HypError> {
            self.0.push(("inject", intid, 0));
            Ok(0)
        }
        fn vcpu_set_irq_line(&mut self, _vm: VmHandle, _vcpu: VcpuIndex, level: u64) -> Result<(), HypError> {
            self.0.push(("irq line", level, 0));
            Ok(())
        }
        fn vm_set_gic(&mut self, _vm: VmHandle, distributor: u64, second: u64) -> Result<(), HypError> {
            self.0.push(("gic", distributor, second));
            Ok(())
        }
        fn vm_set_spi_level(
            &mut self,
            _vm: VmHandle,
            _vcpu: VcpuIndex,
            intid: u64,
            level: u64,
        ) -> Result<u64, HypError> {
            self.0.push(("spi level", intid, level));
            Ok(1)
        }
    }

    fn call(
        memory: &mut Recorder,
        id: u64,
        a1: u64,
        a2: u64,
    ) -> Result<[u64; 3], Result<HypError, hyp_abi::UnknownStatus>> {
        decode_result(serve(HostRequest::decode(&[id, a1, a2, u64::MAX, 0, 0, 0]), memory))
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
            let bad_scope = call(m, HostCall::DebugCheckInvariants.function_id().into(), 2, 0);
            assert_eq!(bad_scope, Err(Ok(HypError::InvalidArgument)));
            assert_eq!(m.0.len(), 1, "a scope the ABI does not define reaches nothing");
        } else {
            assert_eq!(got, Err(Ok(HypError::NotSupported)));
        }
    }

    #[test]
    fn unknown_ids_are_not_supported_and_reach_nothing() {
        let m = &mut Recorder::default();
        for id in [0u64, 0xC600_1013, 0xC600_0000, 0x8400_0000, u64::MAX, 0xC600_1002 | (1 << 32), 0x8600_1002] {
            assert_eq!(call(m, id, 0, 0), Err(Ok(HypError::NotSupported)), "{id:#x}");
        }
        assert!(m.0.is_empty());
    }
}
