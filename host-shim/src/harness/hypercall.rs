//! One safe function per hypercall of the hyp ABI. Each issues `HVC #0` with the
//! SMCCC register convention and decodes the status into `Result<_, HypError>`.

use hyp_abi::{decode_result, HostCall, HypError};

/// Issues the call with function ID `function` and arguments x1..x6.
pub fn raw_call(function: u32, args: [u64; 6]) -> [u64; 4] {
    crate::harness::arch::hvc(function, args)
}

fn call(call: HostCall, args: [u64; 6]) -> Result<[u64; 3], HypError> {
    // A status this shim does not know means a call it cannot use.
    decode_result(raw_call(call.function_id(), args)).map_err(|e| e.unwrap_or(HypError::NotSupported))
}

/// The hyp's ABI version as (major, minor).
pub fn version() -> Result<(u64, u64), HypError> {
    call(HostCall::Version, [0; 6]).map(|[major, minor, _]| (major, minor))
}

/// The bitmap of implemented host calls.
pub fn features() -> Result<u64, HypError> {
    call(HostCall::Features, [0; 6]).map(|[bits, _, _]| bits)
}

/// The platform flags FEATURES reports in x2 (`hyp_abi::platform_flags`).
pub fn platform_flags() -> Result<u64, HypError> {
    call(HostCall::Features, [0; 6]).map(|[_, flags, _]| flags)
}

/// Lends `pages` pages at physical address `start` to the hyp.
pub fn share_hyp(start: u64, pages: u64) -> Result<(), HypError> {
    call(HostCall::ShareHyp, [start, pages, 0, 0, 0, 0]).map(|_| ())
}

/// Takes back pages lent to the hyp.
pub fn unshare_hyp(start: u64, pages: u64) -> Result<(), HypError> {
    call(HostCall::UnshareHyp, [start, pages, 0, 0, 0, 0]).map(|_| ())
}

/// Gives pages to the hyp's memcache.
pub fn donate_hyp(start: u64, pages: u64) -> Result<(), HypError> {
    call(HostCall::DonateHyp, [start, pages, 0, 0, 0, 0]).map(|_| ())
}

/// Takes back donated pages the hyp does not use (they come back zeroed).
pub fn reclaim_hyp(start: u64, pages: u64) -> Result<(), HypError> {
    call(HostCall::ReclaimHyp, [start, pages, 0, 0, 0, 0]).map(|_| ())
}

/// What the hyp's invariant checker reports (test builds of the hyp only).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct InvariantReport {
    pub violations: u64,
    pub memcache_free: u64,
    pub memcache_used: u64,
    /// Bytes of the hyp's own pool in use.
    pub pool_used: u64,
}

/// Runs the hyp's invariant checker (test builds of the hyp only).
pub fn check_invariants() -> Result<InvariantReport, HypError> {
    call(HostCall::DebugCheckInvariants, [0; 6]).map(|[violations, memcache, pool_used]| InvariantReport {
        violations,
        memcache_free: memcache & 0xffff_ffff,
        memcache_used: memcache >> 32,
        pool_used,
    })
}

/// Has the hyp exchange the u64 at `address` (in a page lent to it) with `value`;
/// returns the old value (test builds of the hyp only).
pub fn debug_exchange(address: u64, value: u64) -> Result<u64, HypError> {
    call(HostCall::DebugExchange, [address, value, 0, 0, 0, 0]).map(|[old, _, _]| old)
}

/// Creates a VM of `ty` with `vcpus` vCPUs; returns its handle.
pub fn vm_create(ty: hyp_abi::VmType, vcpus: u64) -> Result<u64, HypError> {
    call(HostCall::VmCreate, [ty as u64, vcpus, 0, 0, 0, 0]).map(|[handle, _, _]| handle)
}

/// Gives a VM `pages` pages at `pa` for its IPAs `ipa..`.
pub fn vm_map(handle: u64, pa: u64, ipa: u64, pages: u64) -> Result<(), HypError> {
    call(HostCall::VmMap, [handle, pa, ipa, pages, 0, 0]).map(|_| ())
}

/// Sets a vCPU's entry point and x0.
pub fn vcpu_init(handle: u64, vcpu: u64, pc: u64, x0: u64) -> Result<(), HypError> {
    call(HostCall::VcpuInit, [handle, vcpu, pc, x0, 0, 0]).map(|_| ())
}

/// Runs a vCPU until it exits; `mmio_read_value` answers a pending MMIO read.
pub fn vcpu_run(handle: u64, vcpu: u64, mmio_read_value: u64) -> Result<hyp_abi::Exit, HypError> {
    vcpu_run_with(handle, vcpu, mmio_read_value, hyp_abi::RunFlags::default())
}

/// `vcpu_run` with `flags` (x4): waits in the hyp, the host's vCPU kick.
pub fn vcpu_run_with(
    handle: u64,
    vcpu: u64,
    mmio_read_value: u64,
    flags: hyp_abi::RunFlags,
) -> Result<hyp_abi::Exit, HypError> {
    call(HostCall::VcpuRun, [handle, vcpu, mmio_read_value, flags.raw(), 0, 0])
        .and_then(|regs| hyp_abi::Exit::decode(regs).ok_or(HypError::NotSupported))
}

/// Reads a vCPU register.
pub fn vcpu_get_reg(handle: u64, vcpu: u64, reg: hyp_abi::VcpuReg) -> Result<u64, HypError> {
    call(HostCall::VcpuGetReg, [handle, vcpu, reg.raw(), 0, 0, 0]).map(|[value, _, _]| value)
}

/// VM information: (is_protected, vCPUs, pages held).
pub fn vm_info(handle: u64) -> Result<(bool, u64, u64), HypError> {
    call(HostCall::VmInfo, [handle, 0, 0, 0, 0, 0]).map(|[p, v, pages]| (p != 0, v, pages))
}

/// Tears a VM down.
pub fn vm_teardown(handle: u64) -> Result<(), HypError> {
    call(HostCall::VmTeardown, [handle, 0, 0, 0, 0, 0]).map(|_| ())
}

/// Takes back a torn-down VM's pages at its IPAs `ipa..`.
pub fn vm_reclaim(handle: u64, ipa: u64, pages: u64) -> Result<(), HypError> {
    call(HostCall::VmReclaim, [handle, ipa, pages, 0, 0, 0]).map(|_| ())
}

/// Writes a vCPU register (non-protected VMs).
pub fn vcpu_set_reg(handle: u64, vcpu: u64, reg: hyp_abi::VcpuReg, value: u64) -> Result<(), HypError> {
    call(HostCall::VcpuSetReg, [handle, vcpu, reg.raw(), value, 0, 0]).map(|_| ())
}

/// Without a GIC: sets vCPU `vcpu`'s virtual IRQ line (`level` 1 or 0).
pub fn vcpu_set_irq_line(handle: u64, vcpu: u64, level: u64) -> Result<(), HypError> {
    call(HostCall::VcpuSetIrqLine, [handle, vcpu, level, 0, 0, 0]).map(|_| ())
}

/// Makes `intid` pending for the VM (an SGI or PPI for vCPU `vcpu`); returns
/// the vCPU it goes to (`u64::MAX`: an SPI the guest routes nowhere yet).
pub fn vcpu_inject_irq(handle: u64, vcpu: u64, intid: u64) -> Result<u64, HypError> {
    call(HostCall::VcpuInjectIrq, [handle, vcpu, intid, 0, 0, 0]).map(|[vcpu, ..]| vcpu)
}
