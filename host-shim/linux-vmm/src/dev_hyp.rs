//! `/dev/hyp` (host-shim/linux-module): one ioctl per hypercall, its x1..x6 in,
//! x0..x3 out, with the status decoded as the hyp's ABI says
//! (`hyp_abi::decode_result`). Mirrors `hyp_dev.h`.

use hyp_abi::{decode_result, Exit, HostCall, HypError, VmType};
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// `struct hyp_call` of hyp_dev.h.
#[repr(C)]
#[derive(Default)]
struct HypCallArgs {
    args: [u64; 6],
    results: [u64; 4],
}

/// `_IOWR('H', number, struct hyp_call)`.
const fn ioctl_number(number: u64) -> u64 {
    const READ_WRITE: u64 = 3;
    let size = core::mem::size_of::<HypCallArgs>() as u64;
    READ_WRITE << 30 | size << 16 | (b'H' as u64) << 8 | number
}

/// The driver's own accounting ioctl (no hypercall).
const ACCOUNTING: u64 = 0x40;

/// An error of a call: the hyp's, or the driver's (errno).
#[derive(Debug)]
pub enum CallError {
    Hyp(HypError),
    Driver(io::Error),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Hyp(e) => write!(f, "the hyp refused: {e}"),
            CallError::Driver(e) => write!(f, "/dev/hyp: {e}"),
        }
    }
}

/// What the driver counted: pages pinned for VMs now, ever given, ever
/// returned, and its memcache's size.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Accounting {
    pub pinned: u64,
    pub given: u64,
    pub returned: u64,
    pub memcache: u64,
}

/// An open `/dev/hyp`.
pub struct DevHyp {
    file: File,
}

impl DevHyp {
    pub fn open() -> io::Result<DevHyp> {
        Ok(DevHyp { file: File::options().read(true).write(true).open("/dev/hyp")? })
    }

    fn ioctl(&self, number: u64, args: [u64; 6]) -> Result<[u64; 4], CallError> {
        let mut call = HypCallArgs { args, results: [0; 4] };
        // SAFETY: The request names `struct hyp_call`, which `call` is (same
        // layout), and the driver reads and writes only that struct.
        let status = unsafe { libc::ioctl(self.file.as_raw_fd(), ioctl_number(number) as _, &mut call) };
        if status < 0 {
            return Err(CallError::Driver(io::Error::last_os_error()));
        }
        Ok(call.results)
    }

    fn call(&self, call: HostCall, args: [u64; 6]) -> Result<[u64; 3], CallError> {
        let number = u64::from(call.function_id() & 0xfff);
        let results = self.ioctl(number, args)?;
        decode_result(results).map_err(|e| CallError::Hyp(e.unwrap_or(HypError::NotSupported)))
    }

    pub fn version(&self) -> Result<(u64, u64), CallError> {
        self.call(HostCall::Version, [0; 6]).map(|[major, minor, _]| (major, minor))
    }

    pub fn vm_create(&self, ty: VmType, vcpus: u64) -> Result<u64, CallError> {
        self.call(HostCall::VmCreate, [ty as u64, vcpus, 0, 0, 0, 0]).map(|[handle, _, _]| handle)
    }

    /// Gives the VM `pages` pages of this process's memory at `address` (page
    /// aligned) at `ipa`: the driver pins them.
    pub fn vm_map(&self, handle: u64, address: *const u8, ipa: u64, pages: u64) -> Result<(), CallError> {
        self.call(HostCall::VmMap, [handle, address as u64, ipa, pages, 0, 0]).map(|_| ())
    }

    pub fn vcpu_init(&self, handle: u64, vcpu: u64, pc: u64, x0: u64) -> Result<(), CallError> {
        self.call(HostCall::VcpuInit, [handle, vcpu, pc, x0, 0, 0]).map(|_| ())
    }

    pub fn vcpu_run(&self, handle: u64, vcpu: u64, read_value: u64) -> Result<Exit, CallError> {
        let words = self.call(HostCall::VcpuRun, [handle, vcpu, read_value, 0, 0, 0])?;
        Exit::decode(words).ok_or(CallError::Hyp(HypError::NotSupported))
    }

    pub fn vcpu_get_reg(&self, handle: u64, vcpu: u64, reg: u64) -> Result<u64, CallError> {
        self.call(HostCall::VcpuGetReg, [handle, vcpu, reg, 0, 0, 0]).map(|[value, _, _]| value)
    }

    pub fn vm_teardown(&self, handle: u64) -> Result<(), CallError> {
        self.call(HostCall::VmTeardown, [handle, 0, 0, 0, 0, 0]).map(|_| ())
    }

    pub fn vm_reclaim(&self, handle: u64, ipa: u64, pages: u64) -> Result<(), CallError> {
        self.call(HostCall::VmReclaim, [handle, ipa, pages, 0, 0, 0]).map(|_| ())
    }

    pub fn accounting(&self) -> Result<Accounting, CallError> {
        let [pinned, given, returned, memcache] = self.ioctl(ACCOUNTING, [0; 6])?;
        Ok(Accounting { pinned, given, returned, memcache })
    }
}
