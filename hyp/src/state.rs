//! The hyp's state: one value, [`Hyp`], built once by `boot` before the host
//! first runs. The entries (the trap handlers the vectors call, and a secondary
//! CPU's first Rust code) fetch it from `boot` and pass it down; nothing below
//! them keeps state of its own or names `boot`.
//!
//! # Lock order
//!
//! This is the one place it is written. A path that takes more than one lock
//! takes them in this order, and releases none early to take an earlier one:
//!
//! 1. [`Hyp::vms`], the VM table (a vCPU is claimed under it and run without
//!    it: `vcpu_run`);
//! 2. [`Hyp::memory`], the memory state (host stage-2, page records, memcache,
//!    the devices' table of the host's pages, the SMMU's command queue);
//! 3. the heap's lock (`mm::heap`), taken by allocations under either;
//! 4. the console's line lock (`console::logger`), taken by logging under any
//!    of them, waited for boundedly and never held across another lock.
//!
//! [`Hyp::with_vms`] takes 1 then 2; nothing takes 1 while holding 2.

use crate::arch::aarch64::exception::{drop_to_host, HostEntry};
use crate::arch::aarch64::gic_ppi::PpiFrame;
use crate::arch::aarch64::host_regs;
use crate::arch::aarch64::percpu::this_cpu;
use crate::arch::aarch64::tlb::{El2Tlb, GuestStage2Tlb, HostStage2Tlb};
use crate::arch::aarch64::world::VgicHardware;
use crate::host_lpi::LpiPage;
use crate::mm::memory::{Env, MemoryState};
use crate::mm::phys::{HeapPages, IdentityMemory};
use crate::platform::Platform;
use crate::range::{FixedVec, PhysRange, PAGE_SIZE};
use crate::vm::table::VmTable;
use crate::vm::vgic_dist::GicVersion;
use aarch64_cpu::registers::{Writeable, ELR_EL2, SPSR_EL2};
use alloc::vec::Vec;
use hyp_abi::HypError;

/// The device frames the hyp maps for itself: the console UART, on GICv2 the
/// virtual interface frames (GICH, GICV), the GIC frames of the CPUs' PPIs,
/// and the SMMU it drives.
pub type HypDevices = FixedVec<PhysRange, 5>;

/// Everything the hyp knows and owns after boot.
pub struct Hyp {
    /// The platform the hyp booted on, from its device tree.
    pub platform: Platform,
    /// The device frames the hyp keeps for itself, computed once at boot.
    pub devices: HypDevices,
    /// The virtual interface that presents guests' interrupts.
    pub vgic: VgicHardware,
    /// The root of the host's stage-2 and its VTCR_EL2, for every CPU's entry.
    pub host_stage2_root: usize,
    pub host_vtcr: u64,
    /// The redistributor pages whose LPI controls the hyp emulates for the
    /// host, sorted by address.
    pub host_lpi_pages: Vec<(u64, LpiPage)>,
    memory: spin::Mutex<MemoryState>,
    vms: spin::Mutex<VmTable>,
}

impl Hyp {
    /// Puts the parts `boot` built together.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        platform: Platform,
        devices: HypDevices,
        vgic: VgicHardware,
        host_stage2_root: usize,
        host_vtcr: u64,
        host_lpi_pages: Vec<(u64, LpiPage)>,
        memory: MemoryState,
        vms: VmTable,
    ) -> Hyp {
        Hyp {
            platform,
            devices,
            vgic,
            host_stage2_root,
            host_vtcr,
            host_lpi_pages,
            memory: spin::Mutex::new(memory),
            vms: spin::Mutex::new(vms),
        }
    }

    /// Runs `f` with the memory state and the hyp's environment (heap pages,
    /// TLB maintenance of the host stage-2 and of EL2, identity-mapped memory).
    pub fn with_memory<R>(&self, f: impl FnOnce(&mut MemoryState, &mut Env<'_>) -> R) -> R {
        let mut state = self.memory.lock();
        with_env(|env| f(&mut state, env))
    }

    /// Runs `f` with the VM table, the memory state and the hyp's environment,
    /// in lock order (VMs, then memory).
    pub fn with_vms<T>(
        &self,
        f: impl FnOnce(&mut VmTable, &mut MemoryState, &mut Env<'_>) -> Result<T, HypError>,
    ) -> Result<T, HypError> {
        let mut vms = self.vms.lock();
        self.with_memory(|memory, env| f(&mut vms, memory, env))
    }

    /// [`Hyp::with_vms`] from a guest's trap: a vCPU runs on this CPU, so
    /// VTTBR_EL2 holds its VM's VMID, and the host stage-2's TLB maintenance
    /// switches to the host's (VMID 0) around each invalidation.
    pub fn with_vms_from_guest<T>(
        &self,
        f: impl FnOnce(&mut VmTable, &mut MemoryState, &mut Env<'_>) -> Result<T, HypError>,
    ) -> Result<T, HypError> {
        let mut vms = self.vms.lock();
        let mut state = self.memory.lock();
        let (mut source, mut el2_tlb, mut phys) = (HeapPages, El2Tlb, IdentityMemory);
        let mut stage2_tlb = GuestStage2Tlb { vttbr: crate::vcpu_run::vttbr_of(self.host_stage2_root as u64, 0) };
        let mut env = Env { source: &mut source, stage2_tlb: &mut stage2_tlb, el2_tlb: &mut el2_tlb, memory: &mut phys };
        f(&mut vms, &mut state, &mut env)
    }

    /// The VM table's lock alone (first in lock order).
    pub fn vms(&self) -> &spin::Mutex<VmTable> {
        &self.vms
    }

    /// Which LPI control page holds `address`, if the hyp emulates it.
    pub fn host_lpi_page(&self, address: u64) -> Option<LpiPage> {
        let page = address & !(PAGE_SIZE - 1);
        let pages = &self.host_lpi_pages;
        pages.binary_search_by_key(&page, |&(p, _)| p).ok().and_then(|i| pages.get(i)).map(|&(_, kind)| kind)
    }

    /// The GIC architecture guests see on this platform.
    pub fn guest_gic_version(&self) -> GicVersion {
        gic_version_of(self.vgic)
    }

    /// Sets this CPU's EL2 controls for the host and enters it at EL1 at
    /// `entry` with x0..x3 = `x`, on this CPU's (empty) trap stack.
    pub fn enter_host(&self, entry: u64, x: [u64; 4]) -> ! {
        // SAFETY: The stage-2 at `host_stage2_root` is the complete host
        // stage-2 of the shape `host_vtcr` describes, and excludes hyp memory.
        unsafe { host_regs::configure(self.host_stage2_root, self.host_vtcr) };
        crate::arch::aarch64::gicv3::reset();
        crate::arch::aarch64::gicv2::reset();
        if self.vgic == VgicHardware::V3 {
            // The EL2 physical timer, the stand-in for the host's tick while
            // a guest runs (`world`), must be signalled as an IRQ whatever the
            // host makes of its other PPIs.
            PpiFrame(this_cpu().ppi_frame).set_group1(crate::arch::aarch64::world::HYP_TIMER_PPI);
        }
        ELR_EL2.set(entry);
        // EL1h with D, A, I, F masked, as the boot protocol requires.
        SPSR_EL2.set(0x3c5);
        // SAFETY: ELR/SPSR/HCR/stage-2 are set; the trap stack is this CPU's,
        // and whatever is on it belongs to a path that never returns.
        unsafe { drop_to_host(&HostEntry { x }, this_cpu().trap_stack_top) }
    }
}

/// Runs `f` with the hyp's environment: heap pages, TLB maintenance of the
/// host stage-2 and of EL2, identity-mapped memory.
pub fn with_env<R>(f: impl FnOnce(&mut Env<'_>) -> R) -> R {
    let (mut source, mut stage2_tlb, mut el2_tlb, mut phys) =
        (HeapPages, HostStage2Tlb::default(), El2Tlb, IdentityMemory);
    let mut env = Env { source: &mut source, stage2_tlb: &mut stage2_tlb, el2_tlb: &mut el2_tlb, memory: &mut phys };
    f(&mut env)
}

/// The GIC architecture guests see given the virtual interface that serves them.
pub fn gic_version_of(hardware: VgicHardware) -> GicVersion {
    match hardware {
        VgicHardware::V2 => GicVersion::V2,
        VgicHardware::V3 | VgicHardware::None => GicVersion::V3,
    }
}
