//! The benchmark variant of the host shim (cargo feature `bench`, run by
//! `scripts/bench` under QEMU with `-icount shift=0`): every figure is a count of
//! instructions from the PMU cycle counter, which then counts exactly one per
//! instruction, at EL2 too (PMCCFILTR_EL0.NSH), with its EL2 share from an
//! event counter that counts instructions at EL2 only. Each is printed as a
//! line `BENCH <name> <all> <el2>` (`-` where the EL2 share is not measured:
//! sizes, and figures spanning several CPUs) for the script to collect. The
//! result of every timed call is checked: one failure fails the run, which
//! then ends with `BENCH failed` instead of `BENCH complete`.

use crate::guests::{self, load, GUEST_ENTRY};
use crate::harness::hypercall;
use crate::harness::instructions::{counts, start as pmu_start, Counts};
use crate::harness::ipi_guest::ping_pong;
use crate::harness::platform::HostPlatform;
use crate::harness::scratch::{memcache_pages, page, MEMCACHE_PAGES};
use core::arch::asm;
use hyp_abi::{Exit, HypError, VmType, MAX_PAGES_PER_CALL};

const MIB: u64 = 1 << 20;
/// Operations per averaged figure.
const ITERATIONS: u64 = 1000;

/// Instructions `f` takes, per call, over `n` calls, less the loop's own
/// cost; the first failure of `f` ends the measurement with its error.
fn per_op(n: u64, mut f: impl FnMut() -> Result<(), HypError>) -> Result<Counts, HypError> {
    let empty = {
        let start = counts();
        for _ in 0..n {
            core::hint::black_box(Ok::<(), HypError>(()))?;
        }
        counts() - start
    };
    let start = counts();
    for _ in 0..n {
        f()?;
    }
    Ok((counts() - start).saturating_sub(empty).per(n))
}

/// A figure with its EL2 share.
fn report(name: &str, value: Counts) {
    log::info!("BENCH {name} {} {}", value.all, value.el2);
}

/// A figure without an EL2 share (a size, or instructions of several CPUs).
fn report_plain(name: &str, value: u64) {
    log::info!("BENCH {name} {value} -");
}

/// `Err` unless `exit` is what the call should have ended with.
fn expect_exit(exit: Exit, expected: impl FnOnce(&Exit) -> bool) -> Result<(), HypError> {
    if expected(&exit) {
        Ok(())
    } else {
        log::error!("BENCH failed: unexpected exit {exit:?}");
        Err(HypError::InvalidArgument)
    }
}

/// A VM with the benchmark guest at `pa` (`pages` pages from there); returns its handle.
fn vm_with(ty: VmType, pa: u64, pages: u64, mode: u64, count: u64) -> Result<u64, HypError> {
    load(pa, guests::bench());
    let handle = hypercall::vm_create(ty, 1)?;
    for chunk in (0..pages).step_by(MAX_PAGES_PER_CALL as usize) {
        let n = (pages - chunk).min(MAX_PAGES_PER_CALL);
        hypercall::vm_map(handle, pa + chunk * 4096, GUEST_ENTRY + chunk * 4096, n)?;
    }
    hypercall::vcpu_init(handle, 0, GUEST_ENTRY, mode)?;
    hypercall::vcpu_set_reg(handle, 0, hyp_abi::VcpuReg::X(1), count).or_else(|e| {
        if ty == VmType::Protected {
            Ok(())
        } else {
            Err(e)
        }
    })?;
    Ok(handle)
}

/// Tears a VM down and takes its memory back.
fn destroy(handle: u64, ty: VmType, pages: u64) -> Result<(), HypError> {
    hypercall::vm_teardown(handle)?;
    if ty == VmType::Protected {
        for chunk in (0..pages).step_by(MAX_PAGES_PER_CALL as usize) {
            let n = (pages - chunk).min(MAX_PAGES_PER_CALL);
            hypercall::vm_reclaim(handle, GUEST_ENTRY + chunk * 4096, n)?;
        }
    }
    Ok(())
}

/// Runs vCPU 0 until SYSTEM_OFF, answering nothing; returns the instructions.
fn run_to_off(handle: u64) -> Result<Counts, HypError> {
    let start = counts();
    loop {
        match hypercall::vcpu_run(handle, 0, 0)? {
            Exit::SystemOff => return Ok(counts() - start),
            Exit::Mmio { .. } => {}
            exit => return expect_exit(exit, |_| false).map(|()| Counts::default()),
        }
    }
}

/// Guest-loop figures: (run with `count` operations - run with none) / count.
fn guest_loop(mode: u64) -> Result<Counts, HypError> {
    let mut costs = [Counts::default(); 2];
    for (i, count) in [0, ITERATIONS].into_iter().enumerate() {
        let handle = vm_with(VmType::NonProtected, page(1), 1, mode, count)?;
        costs[i] = run_to_off(handle)?;
        destroy(handle, VmType::NonProtected, 1)?;
    }
    Ok((costs[1] - costs[0]).per(ITERATIONS))
}

/// A virtual interrupt from the host to the guest's handler: `VCPU_INJECT_IRQ`,
/// then `VCPU_RUN` of a vCPU waiting with interrupts unmasked, until its IRQ
/// handler's first store (an MMIO exit) reaches the host. Each round also
/// holds the end of the previous interrupt (EOI, ERET), as a guest's would.
fn virtual_irq_to_handler() -> Result<Counts, HypError> {
    interrupt_round_trips(guests::irq(), |handle| hypercall::vcpu_inject_irq(handle, 0, 40).map(|_| ()), 40)
}

/// The virtual timer to the guest's handler: `VCPU_RUN` of a vCPU whose timer
/// stays expired; it ends its previous timer interrupt, waits with WFI, the hyp
/// sees the timer asserted and presents PPI 27, and the handler's first store
/// reaches the host.
fn virtual_timer_to_handler() -> Result<Counts, HypError> {
    interrupt_round_trips(guests::vtimer_bench(), |_| Ok(()), 27)
}

/// Loads `code` into a non-protected VM, runs it until it is ready, then
/// measures `before(handle)` + `VCPU_RUN` until an MMIO exit reports `intid`.
/// (Non-protected: the host's PMU does not count a protected guest's run at
/// all, issue 19; the path is the same for both types.)
fn interrupt_round_trips(
    code: &[u8],
    mut before: impl FnMut(u64) -> Result<(), HypError>,
    intid: u64,
) -> Result<Counts, HypError> {
    let pa = page(1);
    load(pa, code);
    let handle = hypercall::vm_create(VmType::NonProtected, 1)?;
    hypercall::vm_map(handle, pa, GUEST_ENTRY, 1)?;
    hypercall::vcpu_init(handle, 0, GUEST_ENTRY, u64::MAX)?;
    // Its interface is set up when it says it is ready.
    let _ = hypercall::vcpu_run(handle, 0, 0)?;
    let cost = per_op(ITERATIONS, || {
        before(handle)?;
        let exit = hypercall::vcpu_run(handle, 0, 0)?;
        expect_exit(exit, |exit| matches!(exit, Exit::Mmio { value, .. } if *value == intid))
    });
    destroy(handle, VmType::NonProtected, 1)?;
    cost
}

/// An IPI from vCPU 0 to vCPU 1 of a non-protected VM and back, each on a CPU
/// of its own: (the ping-pong guest's run with `ITERATIONS` rounds - its run
/// with none) / `ITERATIONS`. Every CPU's instructions count (virtual time).
fn ipi_round_trip(platform: &HostPlatform) -> Result<u64, HypError> {
    let mut costs = [0u64; 2];
    for (cost, rounds) in costs.iter_mut().zip([0, ITERATIONS]) {
        let run = ping_pong(platform, VmType::NonProtected, page(1), rounds).map_err(|error| {
            log::error!("BENCH failed: the IPI ping-pong: {error}");
            HypError::InvalidArgument
        })?;
        if run.rounds != Some(rounds) || run.end != Exit::SystemOff || !run.own_cpus {
            log::error!("BENCH failed: the IPI ping-pong ran {run}");
            return Err(HypError::InvalidArgument);
        }
        *cost = run.instructions;
    }
    Ok((costs[1] - costs[0]) / ITERATIONS)
}

fn run_benches(platform: &HostPlatform, entry_counter: u64) -> Result<(), HypError> {
    // Reset to the shim's first instruction: the counter's ticks, scaled to
    // nanoseconds, which are instructions under -icount shift=0.
    let frequency: u64;
    // SAFETY: Reading CNTFRQ_EL0 has no side effect.
    unsafe { asm!("mrs {}, cntfrq_el0", out(reg) frequency, options(nomem, nostack)) };
    report_plain("reset_to_host_instructions", entry_counter * 1_000_000_000 / frequency.max(1));

    pmu_start();
    let abi = hypercall::version()?;
    report(
        "null_hypercall",
        per_op(ITERATIONS, || match hypercall::version()? {
            version if version == abi => Ok(()),
            _ => Err(HypError::InvalidArgument),
        })?,
    );
    let p = page(0);
    report(
        "share_unshare_one_page",
        per_op(ITERATIONS, || {
            hypercall::share_hyp(p, 1)?;
            hypercall::unshare_hyp(p, 1)
        })?,
    );
    report(
        "donate_reclaim_one_page",
        per_op(ITERATIONS, || {
            hypercall::donate_hyp(p, 1)?;
            hypercall::reclaim_hyp(p, 1)
        })?,
    );

    hypercall::donate_hyp(memcache_pages(), MEMCACHE_PAGES as u64)?;
    // The same with the memcache holding MEMCACHE_PAGES free pages: taking
    // one given page off its list must not walk the list.
    report(
        "donate_reclaim_one_page_beside_memcache",
        per_op(ITERATIONS, || {
            hypercall::donate_hyp(p, 1)?;
            hypercall::reclaim_hyp(p, 1)
        })?,
    );
    report("guest_psci_version", guest_loop(1)?);
    report("guest_mmio_exit_round_trip", guest_loop(2)?);
    report("guest_gic_distributor_read", guest_loop(4)?);

    report("virtual_irq_to_guest_handler", virtual_irq_to_handler()?);
    report("virtual_timer_to_guest_handler", virtual_timer_to_handler()?);

    for (ty, name) in [(VmType::Protected, "protected"), (VmType::NonProtected, "non_protected")] {
        let handle = vm_with(ty, page(1), 1, 3, 0)?;
        let _ = hypercall::vcpu_run(handle, 0, 0)?;
        report(
            &alloc_name("run_exit_at_once_", name),
            per_op(ITERATIONS, || {
                let exit = hypercall::vcpu_run(handle, 0, 0)?;
                expect_exit(exit, |exit| matches!(exit, Exit::Wfi { .. }))
            })?,
        );
        destroy(handle, ty, 1)?;
    }

    // Lifecycles with 1, 16 and 256 MiB, from free RAM a quarter into the bank.
    let region = platform.ram_start + (platform.ram_end - platform.ram_start) / 4;
    for (ty, name) in [(VmType::Protected, "protected"), (VmType::NonProtected, "non_protected")] {
        for mib in [1u64, 16, 256] {
            let pages = mib * MIB / 4096;
            let start = counts();
            let handle = vm_with(ty, region, pages, 0, 0)?;
            run_to_off(handle)?;
            destroy(handle, ty, pages)?;
            report(&alloc_name(&alloc_name("lifecycle_", name), &lifecycle_suffix(mib)), counts() - start);
        }
    }

    // Memory: memcache pages one VM holds, per vCPU, and per GiB of guest memory.
    let used = || hypercall::check_invariants().map(|r| r.memcache_used);
    let base = used()?;
    let one = hypercall::vm_create(VmType::Protected, 1)?;
    let with_one = used()?;
    let two = hypercall::vm_create(VmType::Protected, 2)?;
    let with_two = used()? - with_one;
    let per_vcpu = with_two - (with_one - base);
    report_plain("hyp_bytes_per_vcpu", per_vcpu * 4096);
    report_plain("hyp_bytes_per_vm", (with_one - base - per_vcpu) * 4096);
    let before_map = used()?;
    let pages = 256 * MIB / 4096;
    for chunk in (0..pages).step_by(MAX_PAGES_PER_CALL as usize) {
        hypercall::vm_map(one, region + chunk * 4096, GUEST_ENTRY + chunk * 4096, MAX_PAGES_PER_CALL)?;
    }
    report_plain("stage2_table_bytes_per_gib", (used()? - before_map) * 4096 * 4);
    destroy(one, VmType::Protected, pages)?;
    destroy(two, VmType::Protected, 0)?;
    // Last: it starts a second CPU, which waits for jobs afterwards.
    report_plain("ipi_round_trip", ipi_round_trip(platform)?);
    hypercall::reclaim_hyp(memcache_pages(), MEMCACHE_PAGES as u64)?;
    Ok(())
}

/// `prefix` + `suffix` in a fixed buffer (the shim has no allocator).
fn alloc_name(prefix: &str, suffix: &str) -> Name {
    let mut name = Name { bytes: [0; 48], len: 0 };
    for &b in prefix.as_bytes().iter().chain(suffix.as_bytes()) {
        if name.len < name.bytes.len() {
            name.bytes[name.len] = b;
            name.len += 1;
        }
    }
    name
}

fn lifecycle_suffix(mib: u64) -> Name {
    match mib {
        1 => alloc_name("_1mib", ""),
        16 => alloc_name("_16mib", ""),
        _ => alloc_name("_256mib", ""),
    }
}

/// A short name in a fixed buffer.
struct Name {
    bytes: [u8; 48],
    len: usize,
}

impl core::ops::Deref for Name {
    type Target = str;
    fn deref(&self) -> &str {
        core::str::from_utf8(&self.bytes[..self.len]).unwrap_or("?")
    }
}

/// Runs every benchmark; true when all ran.
pub fn run_all(platform: &HostPlatform, entry_counter: u64) -> bool {
    match run_benches(platform, entry_counter) {
        Ok(()) => {
            log::info!("BENCH complete");
            true
        }
        Err(error) => {
            log::error!("BENCH failed: {error}");
            false
        }
    }
}
