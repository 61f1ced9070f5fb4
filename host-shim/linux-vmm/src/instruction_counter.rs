//! The PMU's instruction counter on this thread (`perf_event_open`), at
//! every exception level or at EL2 alone, as kvm-mmio-bench
//! (host-shim/linux-kvm-test/kvm_mmio_bench.c) counts. The host kernel runs
//! at EL1, so `exclude_hv` clear counts the hyp's instructions at EL2 made
//! for this thread's hypercalls; the hyp stops the counters at EL2 only
//! while a protected guest is switched in (`MDCR_EL2.HPMD`), so a protected
//! guest's run is not counted, by design. QEMU's PMU counts instructions
//! only with `-icount`, and exactly then.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::FromRawFd;

/// `struct perf_event_attr` up to `PERF_ATTR_SIZE_VER0` (64 bytes), the
/// part this counter sets (the kernel takes the older, shorter layout).
#[repr(C)]
#[derive(Default)]
struct PerfEventAttr {
    kind: u32,
    size: u32,
    config: u64,
    sample_period: u64,
    sample_type: u64,
    read_format: u64,
    /// The bit fields: bit 4 `exclude_user`, bit 5 `exclude_kernel`.
    flags: u64,
    wakeup_events: u32,
    bp_type: u32,
    config1: u64,
}

const PERF_TYPE_HARDWARE: u32 = 0;
const PERF_COUNT_HW_INSTRUCTIONS: u64 = 1;
const EXCLUDE_USER: u64 = 1 << 4;
const EXCLUDE_KERNEL: u64 = 1 << 5;

/// One counter, counting from its opening.
pub struct InstructionCounter {
    file: File,
}

impl InstructionCounter {
    /// Every exception level (`el2_only` false), or EL2 alone.
    ///
    /// # Errors
    ///
    /// The kernel's refusal (no PMU, or QEMU without `-icount`).
    pub fn open(el2_only: bool) -> io::Result<InstructionCounter> {
        let attr = PerfEventAttr {
            kind: PERF_TYPE_HARDWARE,
            size: core::mem::size_of::<PerfEventAttr>() as u32,
            config: PERF_COUNT_HW_INSTRUCTIONS,
            flags: if el2_only { EXCLUDE_USER | EXCLUDE_KERNEL } else { 0 },
            ..PerfEventAttr::default()
        };
        // SAFETY: `attr` is a valid perf_event_attr of the size it names; pid
        // 0 and cpu -1 count this thread on any CPU; no group, no flags.
        let fd = unsafe { libc::syscall(libc::SYS_perf_event_open, &attr as *const PerfEventAttr, 0, -1, -1, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: The descriptor was just opened and nothing else owns it.
        Ok(InstructionCounter { file: unsafe { File::from_raw_fd(fd as i32) } })
    }

    /// The count now.
    ///
    /// # Errors
    ///
    /// A failed or short read.
    pub fn read(&mut self) -> io::Result<u64> {
        let mut value = [0u8; 8];
        self.file.read_exact(&mut value)?;
        Ok(u64::from_ne_bytes(value))
    }
}
