//! A vCPU kept loaded on the CPU that ran it last, so that the host's next
//! `VCPU_RUN` of it there claims it without the VM table's lock (pKVM's
//! `vcpu_load` without the extra hypercall: the hyp loads on a run and puts
//! lazily, when anyone else touches the VM).
//!
//! A claim under the lock that had nothing to do but claim, whose run then
//! ends in a release without the lock, leaves the CPU a record of the vCPU
//! ([`Loaded`]: its handle, its page, the VM slot's access count at the
//! claim, and what that claim found for the run). Every access to the VM
//! under the lock counts first (`VmTable::get`), so an unchanged count means
//! that nothing of the VM changed since: not its interrupts, its vCPUs'
//! power, its state, nor its existence. The CPU's next claim of that vCPU then
//! only takes the vCPU's run state ([`claim`]):
//!
//! 1. it opens its claim window (a per-CPU flag, sequentially consistent);
//! 2. checks the count, claims the run state (compare-and-swap: a claim under
//!    the lock uses one too, so two CPUs never both win), checks the count
//!    again (an access that read "not running" before the claim counted
//!    first, so the second check sees it: the claim is given back);
//! 3. closes the window.
//!
//! The page stays valid through the window because a teardown counts first
//! and frees no vCPU page until every open window closed
//! (`vm::claim_window`): a CPU in its window either sees the new count, or
//! opened the window before the teardown looked.

use crate::vm::claim_window;
use crate::vm::handle::{VcpuIndex, VmHandle};
use crate::vm::table::PageRef;
use core::sync::atomic::{AtomicU64, Ordering};

/// A VM slot's access count as a claim under the VM table's lock read it.
#[derive(Clone, Copy)]
pub struct Counted {
    touches: &'static AtomicU64,
    seen: u64,
}

impl Counted {
    /// Reads `touches`, a slot's access count (never freed:
    /// `VmTable::get_counted`), under the VM table's lock.
    pub fn now(touches: &'static AtomicU64) -> Counted {
        Counted { touches, seen: touches.load(Ordering::Relaxed) }
    }

    /// Whether nothing touched the VM since.
    fn holds(&self) -> bool {
        self.touches.load(Ordering::SeqCst) == self.seen
    }
}

/// What a CPU keeps of the vCPU it claimed last under the lock, with `P`,
/// what that claim found for the run (its caller's to define).
#[derive(Clone, Copy)]
pub struct Loaded<P> {
    handle: VmHandle,
    vcpu: VcpuIndex,
    counted: Counted,
    page: PageRef,
    payload: P,
}

impl<P: Copy> Loaded<P> {
    /// Remembers the vCPU `vcpu` of the VM `handle`, claimed under the VM
    /// table's lock when its slot's count was `counted`.
    pub fn new(handle: VmHandle, vcpu: VcpuIndex, counted: Counted, page: PageRef, payload: P) -> Loaded<P> {
        Loaded { handle, vcpu, counted, page, payload }
    }
}

/// Claims the vCPU `vcpu` of the VM `handle` on CPU `cpu` without the VM
/// table's lock, if `loaded` (what that CPU remembered) is that vCPU and
/// nothing touched its VM since; with its kick, as a claim under the lock.
/// Returns its page, claimed (the caller owns the vCPU until it releases or
/// [`PageRef::unclaim`]s it), and what the last claim under the lock found.
pub fn claim<P: Copy>(
    cpu: usize,
    loaded: Option<&Loaded<P>>,
    handle: VmHandle,
    vcpu: VcpuIndex,
    kick: Option<(u64, u8)>,
) -> Option<(PageRef, P)> {
    let loaded = loaded.filter(|l| l.handle == handle && l.vcpu == vcpu)?;
    let window = claim_window::open(cpu)?;
    let claimed = loaded.counted.holds() && loaded.page.try_claim(kick);
    let result = if claimed && loaded.counted.holds() {
        Some((loaded.page, loaded.payload))
    } else {
        if claimed {
            loaded.page.unclaim();
        }
        None
    };
    claim_window::close(window);
    result
}
