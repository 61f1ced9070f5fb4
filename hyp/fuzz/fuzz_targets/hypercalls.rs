//! The host's door: any x0..x6 through the hypercall decoder, against services
//! that record what they were asked. Unknown IDs must reach nothing; every
//! result must decode as the ABI says.

#![no_main]

use hyp_abi::{decode_result, Exit, HostCall, HypError};
use libfuzzer_sys::fuzz_target;
use hyp_fuzz::hypercall;

/// Answers every call with an error or a fixed value, counting the calls.
#[derive(Default)]
struct Services {
    calls: u32,
}

impl hypercall::HostServices for Services {
    fn share_hyp(&mut self, _: u64, _: u64) -> Result<(), HypError> {
        self.calls += 1;
        Err(HypError::NotOwned)
    }
    fn unshare_hyp(&mut self, _: u64, _: u64) -> Result<(), HypError> {
        self.calls += 1;
        Ok(())
    }
    fn donate_hyp(&mut self, _: u64, _: u64) -> Result<(), HypError> {
        self.calls += 1;
        Err(HypError::NoMemory)
    }
    fn reclaim_hyp(&mut self, _: u64, _: u64) -> Result<(), HypError> {
        self.calls += 1;
        Err(HypError::Busy)
    }
    fn check_invariants(&mut self, _: u64) -> Result<[u64; 3], HypError> {
        self.calls += 1;
        Ok([0, 1, 2])
    }
    fn debug_exchange(&mut self, _: u64, value: u64) -> Result<u64, HypError> {
        self.calls += 1;
        Ok(value)
    }
    fn vm_create(&mut self, _: u64, _: u64) -> Result<u64, HypError> {
        self.calls += 1;
        Ok(1 << 32 | 1)
    }
    fn vm_map(&mut self, _: u64, _: u64, _: u64, _: u64) -> Result<(), HypError> {
        self.calls += 1;
        Err(HypError::OutOfRange)
    }
    fn vcpu_init(&mut self, _: u64, _: u64, _: u64, _: u64) -> Result<(), HypError> {
        self.calls += 1;
        Ok(())
    }
    fn vcpu_run(&mut self, _: u64, _: u64, value: u64) -> Result<Exit, HypError> {
        self.calls += 1;
        Ok(Exit::Wfi { timer_deadline: value })
    }
    fn vcpu_get_reg(&mut self, _: u64, _: u64, _: u64) -> Result<u64, HypError> {
        self.calls += 1;
        Err(HypError::PermissionDenied)
    }
    fn vcpu_set_reg(&mut self, _: u64, _: u64, _: u64, _: u64) -> Result<(), HypError> {
        self.calls += 1;
        Err(HypError::NoSuchVcpu)
    }
    fn vm_info(&mut self, _: u64) -> Result<[u64; 3], HypError> {
        self.calls += 1;
        Ok([1, 2, 3])
    }
    fn vm_teardown(&mut self, _: u64) -> Result<(), HypError> {
        self.calls += 1;
        Err(HypError::NoSuchVm)
    }
    fn vm_reclaim(&mut self, _: u64, _: u64, _: u64) -> Result<(), HypError> {
        self.calls += 1;
        Err(HypError::InvalidArgument)
    }
    fn vcpu_inject_irq(&mut self, _: u64, _: u64, _: u64) -> Result<u64, HypError> {
        self.calls += 1;
        Err(HypError::VcpuOff)
    }
    fn vcpu_set_irq_line(&mut self, _: u64, _: u64, _: u64) -> Result<(), HypError> {
        self.calls += 1;
        Err(HypError::NotSupported)
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
    let out = hypercall::handle_host_hvc(&regs, &mut services);
    let call = HostCall::from_function_id(regs[0]);
    match call {
        None => {
            assert_eq!(services.calls, 0, "an unknown ID reached a service");
            assert_eq!(out, [HypError::NotSupported.code() as u64, 0, 0, 0]);
        }
        Some(_) => {
            assert!(services.calls <= 1, "one call, one service");
            // Every status is success or an error of the ABI.
            assert!(matches!(decode_result(out), Ok(_) | Err(Ok(_))), "{out:x?}");
        }
    }
    if let Some(HostCall::VcpuRun) = call {
        if let Ok(values) = decode_result(out) {
            assert_eq!(Exit::decode(values), Some(Exit::Wfi { timer_deadline: regs[3] }));
        }
    }
});
