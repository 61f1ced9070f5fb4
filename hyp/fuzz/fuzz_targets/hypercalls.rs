//! The host's door: any x0..x6 through the hypercall decoder, against services
//! that record what they were asked. Unknown IDs must reach nothing; each typed
//! argument must be the register the ABI names for it; every result must
//! decode as the ABI says.

#![no_main]

use hyp_abi::{decode_result, CheckScope, Exit, HostCall, HypError};
use hyp_fuzz::addr::{Ipa, PageCount, PhysAddr};
use hyp_fuzz::host_request::HostRequest;
use hyp_fuzz::hypercall;
use hyp_fuzz::vm::handle::{VcpuIndex, VmHandle};
use libfuzzer_sys::fuzz_target;

/// Answers every call with an error or a fixed value, counting the calls and
/// keeping the arguments of the last one as numbers.
#[derive(Default)]
struct Services {
    calls: u32,
    arguments: Vec<u64>,
}

impl Services {
    fn called(&mut self, arguments: &[u64]) {
        self.calls += 1;
        self.arguments = arguments.to_vec();
    }
}

impl hypercall::HostServices for Services {
    fn share_hyp(&mut self, start: PhysAddr, pages: PageCount) -> Result<(), HypError> {
        self.called(&[start.raw(), pages.raw()]);
        Err(HypError::NotOwned)
    }
    fn unshare_hyp(&mut self, start: PhysAddr, pages: PageCount) -> Result<(), HypError> {
        self.called(&[start.raw(), pages.raw()]);
        Ok(())
    }
    fn donate_hyp(&mut self, start: PhysAddr, pages: PageCount) -> Result<(), HypError> {
        self.called(&[start.raw(), pages.raw()]);
        Err(HypError::NoMemory)
    }
    fn reclaim_hyp(&mut self, start: PhysAddr, pages: PageCount) -> Result<(), HypError> {
        self.called(&[start.raw(), pages.raw()]);
        Err(HypError::Busy)
    }
    fn check_invariants(&mut self, scope: CheckScope) -> Result<[u64; 3], HypError> {
        self.called(&[scope as u64]);
        Ok([0, 1, 2])
    }
    fn debug_exchange(&mut self, address: PhysAddr, value: u64) -> Result<u64, HypError> {
        self.called(&[address.raw(), value]);
        Ok(value)
    }
    fn vm_create(&mut self, ty: u64, vcpus: u64) -> Result<VmHandle, HypError> {
        self.called(&[ty, vcpus]);
        Ok(VmHandle::new(1 << 32 | 1))
    }
    fn vm_map(&mut self, vm: VmHandle, pa: PhysAddr, ipa: Ipa, pages: PageCount) -> Result<(), HypError> {
        self.called(&[vm.raw(), pa.raw(), ipa.raw(), pages.raw()]);
        Err(HypError::OutOfRange)
    }
    fn vcpu_init(&mut self, vm: VmHandle, vcpu: VcpuIndex, pc: u64, x0: u64) -> Result<(), HypError> {
        self.called(&[vm.raw(), vcpu.raw(), pc, x0]);
        Ok(())
    }
    fn vcpu_run(
        &mut self,
        vm: VmHandle,
        vcpu: VcpuIndex,
        value: u64,
        flags: hyp_abi::RunFlags,
    ) -> Result<Exit, HypError> {
        self.called(&[vm.raw(), vcpu.raw(), value, flags.raw()]);
        Ok(Exit::Wfi { timer_deadline: value })
    }
    fn vcpu_get_reg(&mut self, vm: VmHandle, vcpu: VcpuIndex, reg: u64) -> Result<u64, HypError> {
        self.called(&[vm.raw(), vcpu.raw(), reg]);
        Err(HypError::PermissionDenied)
    }
    fn vcpu_set_reg(&mut self, vm: VmHandle, vcpu: VcpuIndex, reg: u64, value: u64) -> Result<(), HypError> {
        self.called(&[vm.raw(), vcpu.raw(), reg, value]);
        Err(HypError::NoSuchVcpu)
    }
    fn vm_info(&mut self, vm: VmHandle) -> Result<[u64; 3], HypError> {
        self.called(&[vm.raw()]);
        Ok([1, 2, 3])
    }
    fn vm_teardown(&mut self, vm: VmHandle) -> Result<(), HypError> {
        self.called(&[vm.raw()]);
        Err(HypError::NoSuchVm)
    }
    fn vm_reclaim(&mut self, vm: VmHandle, ipa: Ipa, pages: PageCount) -> Result<(), HypError> {
        self.called(&[vm.raw(), ipa.raw(), pages.raw()]);
        Err(HypError::InvalidArgument)
    }
    fn vcpu_inject_irq(&mut self, vm: VmHandle, vcpu: VcpuIndex, intid: u64) -> Result<u64, HypError> {
        self.called(&[vm.raw(), vcpu.raw(), intid]);
        Err(HypError::VcpuOff)
    }
    fn vcpu_set_irq_line(&mut self, vm: VmHandle, vcpu: VcpuIndex, level: u64) -> Result<(), HypError> {
        self.called(&[vm.raw(), vcpu.raw(), level]);
        Err(HypError::NotSupported)
    }
    fn vm_set_gic(&mut self, vm: VmHandle, distributor: u64, second: u64) -> Result<(), HypError> {
        self.called(&[vm.raw(), distributor, second]);
        Err(HypError::Busy)
    }
    fn vm_set_spi_level(&mut self, vm: VmHandle, vcpu: VcpuIndex, intid: u64, level: u64) -> Result<u64, HypError> {
        self.called(&[vm.raw(), vcpu.raw(), intid, level]);
        Ok(intid)
    }
}

/// How many argument registers (x1..) `call` takes.
fn argument_count(call: HostCall) -> usize {
    match call {
        HostCall::Version | HostCall::Features => 0,
        HostCall::VmInfo | HostCall::VmTeardown | HostCall::DebugCheckInvariants => 1,
        HostCall::ShareHyp
        | HostCall::UnshareHyp
        | HostCall::DonateHyp
        | HostCall::ReclaimHyp
        | HostCall::VmCreate
        | HostCall::DebugExchange => 2,
        HostCall::VcpuGetReg
        | HostCall::VmReclaim
        | HostCall::VcpuInjectIrq
        | HostCall::VcpuSetIrqLine
        | HostCall::VmSetGic => 3,
        HostCall::VmMap
        | HostCall::VcpuInit
        | HostCall::VcpuSetReg
        | HostCall::VcpuRun
        | HostCall::VmSetSpiLevel => 4,
    }
}

fuzz_target!(|data: &[u8]| {
    let mut regs = [0u64; 7];
    for (i, chunk) in data.chunks(8).take(7).enumerate() {
        let mut bytes = [0u8; 8];
        bytes[..chunk.len()].copy_from_slice(chunk);
        regs[i] = u64::from_le_bytes(bytes);
    }
    let mut services = Services::default();
    let out = hypercall::serve(HostRequest::decode(&regs), &mut services);
    let call = HostCall::from_function_id(regs[0]);
    match call {
        None => {
            assert_eq!(services.calls, 0, "an unknown ID reached a service");
            assert_eq!(out, [HypError::NotSupported.code() as u64, 0, 0, 0]);
        }
        Some(call) => {
            assert!(services.calls <= 1, "one call, one service");
            // Every status is success or an error of the ABI.
            assert!(matches!(decode_result(out), Ok(_) | Err(Ok(_))), "{out:x?}");
            if services.calls == 1 {
                let count = argument_count(call);
                assert_eq!(services.arguments, regs[1..=count], "{call:?}: the arguments are not x1..x{count}");
            }
            if call == HostCall::DebugCheckInvariants && CheckScope::from_raw(regs[1]).is_none() {
                assert_eq!(services.calls, 0, "a scope the ABI does not define reached the checker");
            }
        }
    }
    if let Some(HostCall::VcpuRun) = call {
        if let Ok(values) = decode_result(out) {
            assert_eq!(Exit::decode(values), Some(Exit::Wfi { timer_deadline: regs[3] }));
        }
    }
});
