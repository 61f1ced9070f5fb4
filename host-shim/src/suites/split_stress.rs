//! The host never gets an abort on its own RAM: while the boot CPU donates
//! and reclaims pages inside fresh 2 MiB and 1 GiB blocks of the host stage-2
//! (each first donation in a block makes the hyp split it, break-before-make),
//! every other CPU reads every other page of the blocks around it. A read that
//! faults during a split must be retried by the hyp, never refused: a refused
//! read is an abort the shim does not expect, which parks that CPU, so its job
//! never finishes and the check fails. `shim.split-stress=N` runs N donate +
//! reclaim transitions instead of the host checks (`-smp 4 -m 4G`: the blocks
//! are taken from the second GiB of RAM on, fresh 1 GiB blocks).

use crate::harness::cpus::{post, secondary_indices, start_secondaries, wait_for};
use crate::harness::debug_calls::debug_calls;
use crate::harness::hypercall;
use crate::harness::platform::HostPlatform;
use crate::harness::report::check;
use core::sync::atomic::{AtomicU64, Ordering};

const PAGE: u64 = 4096;
const BLOCK: u64 = 2 << 20;
/// Every 8th page of a block is the donor's; the readers leave those alone.
const DONOR_STRIDE: u64 = 8;
/// Transitions (donate or reclaim) per block before the donor moves on.
const TRANSITIONS_PER_BLOCK: u64 = 256;

/// The block the donor works in now (0: stop). Single writer: the boot CPU.
static CURRENT_BLOCK: AtomicU64 = AtomicU64::new(0);

/// A reader's job (secondary CPUs): until the donor stops, read every page
/// but the donor's of the block it works in and of its neighbours. Returns
/// `[0, passes, pages read, 0]`.
fn read_blocks(_cpu: usize, _args: [u64; 3]) -> [u64; 4] {
    let (mut passes, mut reads) = (0u64, 0u64);
    loop {
        let block = CURRENT_BLOCK.load(Ordering::Acquire);
        if block == 0 {
            return [0, passes, reads, 0];
        }
        for page in (block.saturating_sub(BLOCK)..block + 2 * BLOCK).step_by(PAGE as usize) {
            if (page / PAGE).is_multiple_of(DONOR_STRIDE) {
                continue;
            }
            // SAFETY: RAM the host owns (only the donor's pages change hands);
            // reading it has no effect on anything.
            let _ = unsafe { core::ptr::read_volatile(page as *const u64) };
            reads += 1;
        }
        passes += 1;
    }
}

/// Runs `transitions` donate/reclaim transitions in fresh blocks while the
/// other CPUs read around them.
pub fn run(platform: &HostPlatform, transitions: u64) -> bool {
    let secondaries = start_secondaries(platform);
    let first_free = platform.ram_start.next_multiple_of(1 << 30) + (1 << 30);
    let blocks = transitions.div_ceil(TRANSITIONS_PER_BLOCK);
    let last = first_free + blocks * BLOCK;
    let hyp = platform.hyp_regions();
    if secondaries == 0
        || last > platform.ram_end
        || hyp.iter().any(|&(base, size)| base < last && first_free < base + size)
    {
        return check!(
            false,
            "split stress: needs more CPUs and RAM (-smp 4 -m 4G): {secondaries} other CPUs, RAM up to {:#x}, blocks up to {last:#x}",
            platform.ram_end
        );
    }
    log::info!("split stress: {transitions} transitions in {blocks} fresh 2 MiB blocks from {first_free:#x}, {secondaries} CPUs reading");
    CURRENT_BLOCK.store(first_free, Ordering::Release);
    for cpu in secondary_indices(platform) {
        post(cpu, read_blocks, [0; 3]);
    }
    let mut done = 0u64;
    let mut failure = None;
    'blocks: for block in 0..blocks {
        let base = first_free + block * BLOCK;
        CURRENT_BLOCK.store(base, Ordering::Release);
        for k in 0..TRANSITIONS_PER_BLOCK / 2 {
            if done >= transitions {
                break 'blocks;
            }
            let page = base + (k % (BLOCK / PAGE / DONOR_STRIDE)) * DONOR_STRIDE * PAGE;
            let donated = hypercall::donate_hyp(page, 1);
            let reclaimed = hypercall::reclaim_hyp(page, 1);
            if donated.is_err() || reclaimed.is_err() {
                failure = Some((page, donated, reclaimed));
                break 'blocks;
            }
            done += 2;
        }
    }
    CURRENT_BLOCK.store(0, Ordering::Release);
    aarch64_cpu::asm::sev();
    let mut passed = check!(failure.is_none(), "split stress: every donation and reclaim answered Ok: {failure:?}");
    let mut reads = 0;
    for cpu in secondary_indices(platform) {
        let result = wait_for(cpu);
        passed &= check!(
            matches!(result, Some([0, passes, _, _]) if passes > 0),
            "split stress: CPU {cpu} read its blocks throughout without an abort: {result:?}"
        );
        reads += result.map_or(0, |r| r[2]);
    }
    // A production hyp has no invariant checker: the reads are the test there.
    let report = hypercall::check_invariants();
    passed &= check!(
        !debug_calls() || matches!(report, Ok(r) if r.violations == 0),
        "split stress: {done} transitions in fresh 2 MiB and 1 GiB blocks while {secondaries} CPUs read {reads} pages around them: zero host aborts, invariants clean ({report:?})"
    );
    passed
}
