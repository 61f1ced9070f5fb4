//! The hyp's implementation of the host's memory calls: each takes the memory
//! lock, runs the transition with the hyp's environment, and logs failures at
//! debug level (a hostile host must not be able to flood the console).

use crate::hypercall::HostMemoryCalls;
use crate::mm::invariants;
use crate::mm::memory::{Env, MemoryState};
use hyp_abi::HypError;

/// The memory calls, served by the hyp's global memory state.
pub struct HypMemoryCalls;

fn run(
    name: &str,
    start: u64,
    pages: u64,
    f: impl FnOnce(&mut MemoryState, &mut Env<'_>) -> Result<(), HypError>,
) -> Result<(), HypError> {
    let result = crate::boot::with_memory(f).unwrap_or(Err(HypError::Busy));
    if let Err(error) = result {
        log::debug!("host {name} {start:#x} x{pages}: {error}");
    }
    result
}

impl HostMemoryCalls for HypMemoryCalls {
    fn share_hyp(&mut self, start: u64, pages: u64) -> Result<(), HypError> {
        run("share", start, pages, |s, env| {
            s.host_share_hyp(start, pages, env)
        })
    }

    fn unshare_hyp(&mut self, start: u64, pages: u64) -> Result<(), HypError> {
        run("unshare", start, pages, |s, env| {
            s.host_unshare_hyp(start, pages, env)
        })
    }

    fn donate_hyp(&mut self, start: u64, pages: u64) -> Result<(), HypError> {
        run("donate", start, pages, |s, env| {
            s.host_donate_hyp(start, pages, env)
        })
    }

    fn reclaim_hyp(&mut self, start: u64, pages: u64) -> Result<(), HypError> {
        run("reclaim", start, pages, |s, env| {
            s.host_reclaim_hyp(start, pages, env)
        })
    }

    fn check_invariants(&mut self) -> [u64; 3] {
        let uart = crate::boot::platform().and_then(|p| p.uart).map(|u| u.regs);
        let devices = uart.as_slice();
        crate::boot::with_memory(|state, _| {
            let report = invariants::check(state, devices, &[]);
            for violation in report.first.as_slice() {
                log::warn!("invariant violated: {violation}");
            }
            let (free, used) = state.memcache_pages();
            [report.count as u64, free, used]
        })
        .unwrap_or([u64::MAX, 0, 0])
    }

    fn debug_exchange(&mut self, address: u64, value: u64) -> Result<u64, HypError> {
        crate::boot::with_memory(|state, env| state.debug_exchange(address, value, env))
            .unwrap_or(Err(HypError::Busy))
    }
}
