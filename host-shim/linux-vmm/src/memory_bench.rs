//! `hyp-vmm bench-memory`: what a VM's memory costs through `/dev/hyp`, in
//! instructions (issue 23: "a 256 MiB protected VM's create, map, teardown
//! and reclaim"). For each size, a non-protected and a protected VM: the
//! memory is allocated and faulted in first (the VM's memory exists before
//! the VM; 2 MiB aligned, as the IPAs it gets); then, counted, `VM_CREATE`,
//! one `VM_MAP` ioctl of it all (the driver pins it and gives it in runs of
//! physically consecutive pages) and `VCPU_INIT`; the console guest run to
//! SYSTEM_OFF (counted apart); `VM_TEARDOWN` and, for the protected VM, one
//! `VM_RECLAIM` ioctl of it all (the hyp scrubs each page). Every call is
//! checked, and after each VM the driver's accounting and the memory itself
//! (readable again; a protected VM's zeroed): any failure fails the run.
//!
//! Counted with the PMU's instruction counter on this thread, at every
//! level and at EL2 alone (`instruction_counter`), and with the monotonic
//! clock (the generic timer's virtual counter): under QEMU's `-icount
//! shift=0` one instruction is one nanosecond, so the clock counts every
//! instruction of the (single) CPU, a protected guest's too, at the timer's
//! granule (1 / CNTFRQ_EL0, 16 ns at 62.5 MHz).

use crate::dev_hyp::DevHyp;
use crate::guest_ram::PAGE;
use crate::instruction_counter::InstructionCounter;
use crate::{guests, run_console};
use hyp_abi::VmType;
use std::time::Instant;

/// The counters, read together.
struct Counters {
    all: InstructionCounter,
    el2: InstructionCounter,
    clock: Instant,
}

/// One reading of the counters.
#[derive(Clone, Copy)]
struct Sample {
    all: u64,
    el2: u64,
    nanos: u64,
}

impl Sample {
    fn since(self, earlier: Sample) -> Sample {
        Sample {
            all: self.all.saturating_sub(earlier.all),
            el2: self.el2.saturating_sub(earlier.el2),
            nanos: self.nanos.saturating_sub(earlier.nanos),
        }
    }

    fn plus(self, other: Sample) -> Sample {
        Sample { all: self.all + other.all, el2: self.el2 + other.el2, nanos: self.nanos + other.nanos }
    }
}

impl Counters {
    fn open() -> Result<Counters, String> {
        let open = |el2_only| {
            InstructionCounter::open(el2_only).map_err(|e| {
                format!("perf_event_open of the instruction counter: {e} (QEMU counts instructions only with -icount)")
            })
        };
        Ok(Counters { all: open(false)?, el2: open(true)?, clock: Instant::now() })
    }

    fn sample(&mut self) -> Result<Sample, String> {
        let el2 = self.el2.read().map_err(|e| format!("reading the EL2 counter: {e}"))?;
        let all = self.all.read().map_err(|e| format!("reading the instruction counter: {e}"))?;
        let nanos = self.clock.elapsed().as_nanos() as u64;
        Ok(Sample { all, el2, nanos })
    }
}

/// 2 MiB: where the memory starts, so that its transparent huge pages (2 MiB
/// aligned in this process) are 2 MiB aligned at their IPAs too, as a VMM
/// lays out guest RAM for huge pages.
const HUGE_PAGE: usize = 2 << 20;

/// `len` bytes of private anonymous memory, 2 MiB aligned, every page
/// faulted in.
struct PopulatedMemory {
    /// The whole mapping, and its 2 MiB aligned part the VM gets.
    mapping: *mut u8,
    mapping_len: usize,
    base: *mut u8,
    len: usize,
}

impl PopulatedMemory {
    fn new(len: usize) -> Result<PopulatedMemory, String> {
        let mapping_len = len + HUGE_PAGE;
        // SAFETY: A fresh private anonymous mapping; nothing else refers to it.
        let mapping = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                mapping_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if mapping == libc::MAP_FAILED {
            return Err(format!("mmap of {} MiB: {}", len >> 20, std::io::Error::last_os_error()));
        }
        let mapping = mapping.cast::<u8>();
        let base = ((mapping as usize + HUGE_PAGE - 1) & !(HUGE_PAGE - 1)) as *mut u8;
        Ok(PopulatedMemory { mapping, mapping_len, base, len })
    }

    fn load(&mut self, code: &[u8]) {
        // SAFETY: The mapping is ours, writable and at least a page long;
        // `code` is cut to a page.
        unsafe { core::ptr::copy_nonoverlapping(code.as_ptr(), self.base, code.len().min(PAGE)) };
    }

    /// After the VM is gone: each page readable again and, for a protected
    /// VM's, zeroed; the first page that is not, or None.
    fn first_not_back(&self, zeroed: bool) -> Option<usize> {
        let pages = self.len / PAGE;
        // SAFETY: The mapping is this process's, page aligned, `pages` long.
        if let Some(page) = unsafe { crate::abort_guard::first_refused(self.base, PAGE, pages) } {
            return Some(page);
        }
        if !zeroed {
            return None;
        }
        // SAFETY: Every page was just read without a fault, and no VM has them.
        let bytes = unsafe { core::slice::from_raw_parts(self.base, self.len) };
        bytes.chunks_exact(PAGE).position(|page| page.iter().any(|&byte| byte != 0))
    }
}

impl Drop for PopulatedMemory {
    fn drop(&mut self) {
        // SAFETY: The mapping made in `new`, unmapped once. A protected VM's
        // pages the driver still holds stay pinned by it (the kernel keeps them).
        unsafe { libc::munmap(self.mapping.cast(), self.mapping_len) };
    }
}

/// What one VM cost.
struct Figures {
    setup: Sample,
    run: Sample,
    end: Sample,
}

/// One VM of `mib` MiB of type `ty`, counted.
fn one_vm(hyp: &DevHyp, counters: &mut Counters, ty: VmType, mib: u64) -> Result<Figures, String> {
    let protected = ty == VmType::Protected;
    let tag = if protected { b'P' } else { b'N' };
    let pages = mib << 20 >> 12;
    let mut memory = PopulatedMemory::new((mib << 20) as usize)?;
    memory.load(guests::console());
    let before = hyp.accounting().map_err(|e| format!("accounting: {e}"))?;

    let start = counters.sample()?;
    let handle = hyp.vm_create(ty, 1).map_err(|e| format!("VM_CREATE: {e}"))?;
    hyp.vm_map(handle, memory.base, guests::GUEST_ENTRY, pages).map_err(|e| format!("VM_MAP: {e}"))?;
    hyp.vcpu_init(handle, 0, guests::GUEST_ENTRY, u64::from(tag)).map_err(|e| format!("VCPU_INIT: {e}"))?;
    let mapped = counters.sample()?;
    let line = run_console(hyp, handle)?;
    let ran = counters.sample()?;
    hyp.vm_teardown(handle).map_err(|e| format!("VM_TEARDOWN: {e}"))?;
    if protected {
        hyp.vm_reclaim(handle, guests::GUEST_ENTRY, pages).map_err(|e| format!("VM_RECLAIM: {e}"))?;
    }
    let end = counters.sample()?;

    let expected = format!("hello from guest {} R1", tag as char);
    if line != expected {
        return Err(format!("the guest printed {line:?}, not {expected:?}"));
    }
    let after = hyp.accounting().map_err(|e| format!("accounting: {e}"))?;
    let (given, returned) = (after.given - before.given, after.returned - before.returned);
    if after.pinned != before.pinned || given != pages || returned != pages {
        return Err(format!("the driver's accounting: {pages} pages given, {given} counted given, {returned} back"));
    }
    if let Some(page) = memory.first_not_back(protected) {
        return Err(format!("page {page} of the VM's memory did not come back (readable{})", {
            if protected {
                " and zeroed"
            } else {
                ""
            }
        }));
    }
    Ok(Figures { setup: mapped.since(start), run: ran.since(mapped), end: end.since(ran) })
}

/// Counts each size in each VM type; prints a line each. Whether all held.
pub fn bench(sizes: &[u64]) -> bool {
    let hyp = match DevHyp::open() {
        Ok(hyp) => hyp,
        Err(e) => return crate::step(false, format_args!("open /dev/hyp: {e}")),
    };
    let mut counters = match Counters::open() {
        Ok(counters) => counters,
        Err(e) => return crate::step(false, format_args!("{e}")),
    };
    let mut passed = true;
    for &mib in sizes {
        for ty in [VmType::NonProtected, VmType::Protected] {
            let kind = if ty == VmType::Protected { "protected" } else { "non-protected" };
            match one_vm(&hyp, &mut counters, ty, mib) {
                Ok(f) => {
                    let memory = f.setup.plus(f.end);
                    println!(
                        "hyp-vmm: bench-memory: {kind} {mib} MiB: create+map {} (EL2 {}), run {} (EL2 {}), \
                         teardown+reclaim {} (EL2 {}) instructions; per MiB {} (EL2 {}) instructions, \
                         {} ns virtual time",
                        f.setup.all,
                        f.setup.el2,
                        f.run.all,
                        f.run.el2,
                        f.end.all,
                        f.end.el2,
                        memory.all / mib,
                        memory.el2 / mib,
                        memory.nanos / mib,
                    );
                }
                Err(e) => passed = crate::step(false, format_args!("bench-memory: {kind} {mib} MiB: {e}")),
            }
        }
    }
    passed
}
