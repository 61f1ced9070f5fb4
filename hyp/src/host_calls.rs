//! The hyp's implementation of the host's memory calls: each takes the memory
//! lock, runs the transition with the hyp's environment, and logs failures at
//! debug level (a hostile host must not be able to flood the console).

use crate::addr::{GuestPages, Ipa, PageCount, PhysAddr};
use crate::arch::aarch64::tlb::GuestStage2Tlb;
use crate::arch::aarch64::world::VgicHardware;
use crate::hypercall::HostServices;
use crate::mm::invariants;
use crate::mm::memory::{Env, MemoryState};
use crate::state::Hyp;
use crate::vcpu_run::{physical_count, vttbr_of};
use crate::vm::handle::{VcpuIndex, VmHandle};
use crate::vm::table::VmTable;
use alloc::vec::Vec;
use hyp_abi::{CheckScope, Exit, HypError};

/// The host calls, served by the hyp's state.
pub struct HypServices<'a> {
    pub hyp: &'a Hyp,
}

/// The TLB maintenance of a VM's stage-2.
fn guest_tlb(vms: &mut VmTable, handle: VmHandle) -> Result<GuestStage2Tlb, HypError> {
    let vm = vms.get(handle)?;
    Ok(GuestStage2Tlb { vttbr: vttbr_of(vm.stage2.root_address() as u64, vm.vmid()) })
}

impl HypServices<'_> {
    /// Runs the host's memory call `name` on `start`, `pages`.
    fn run(
        &self,
        name: &str,
        start: PhysAddr,
        pages: PageCount,
        f: impl FnOnce(&mut MemoryState, &mut Env<'_>) -> Result<(), HypError>,
    ) -> Result<(), HypError> {
        let result = self.hyp.with_memory(f);
        // Faults of the host's devices are logged as they come.
        crate::smmu::drain_events();
        if let Err(error) = result {
            // As numbers: with the types' formatters the calls took more
            // instructions (scripts/bench), for a line that is rarely printed.
            log::debug!("host {name} {:#x} x{}: {error}", start.raw(), pages.raw());
        }
        result
    }
}

impl HostServices for HypServices<'_> {
    fn platform_flags(&mut self) -> u64 {
        let permissive = self.hyp.platform.dma_permissive;
        if permissive {
            hyp_abi::platform_flags::DMA_NOT_ISOLATED
        } else {
            0
        }
    }

    fn share_hyp(&mut self, start: PhysAddr, pages: PageCount) -> Result<(), HypError> {
        self.run("share", start, pages, |s, env| s.host_share_hyp(start, pages, env))
    }

    fn unshare_hyp(&mut self, start: PhysAddr, pages: PageCount) -> Result<(), HypError> {
        self.run("unshare", start, pages, |s, env| s.host_unshare_hyp(start, pages, env))
    }

    fn donate_hyp(&mut self, start: PhysAddr, pages: PageCount) -> Result<(), HypError> {
        self.run("donate", start, pages, |s, env| s.host_donate_hyp(start, pages, env))
    }

    fn reclaim_hyp(&mut self, start: PhysAddr, pages: PageCount) -> Result<(), HypError> {
        self.run("reclaim", start, pages, |s, env| s.host_reclaim_hyp(start, pages, env))
    }

    fn check_invariants(&mut self, scope: CheckScope) -> Result<[u64; 3], HypError> {
        crate::smmu::drain_events();
        let devices = self.hyp.devices.as_slice();
        let vms = self.hyp.vms().lock();
        let guests: Vec<_> = vms.stage2s().collect();
        self.hyp.with_memory(|state, _| {
            // Either scope starts a new log of what the transitions touch.
            let touched = state.pages.take_touched();
            let report = match scope {
                CheckScope::Full => invariants::check(state, devices, &guests),
                CheckScope::Touched => invariants::check_touched(state, devices, &guests, &touched),
            };
            for violation in report.first.as_slice() {
                log::warn!("invariant violated: {violation}");
            }
            let memcache = match scope {
                CheckScope::Full => {
                    let (free, used) = state.memcache_pages();
                    free | used << 32
                }
                // Counting them takes a pass over every record.
                CheckScope::Touched => u64::MAX,
            };
            let (pool_used, _) = crate::HEAP.usage();
            Ok([report.count as u64, memcache, pool_used as u64])
        })
    }

    fn debug_exchange(&mut self, address: PhysAddr, value: u64) -> Result<u64, HypError> {
        self.hyp.with_memory(|state, env| state.debug_exchange(address, value, env))
    }

    fn vm_create(&mut self, ty: u64, vcpus: u64) -> Result<VmHandle, HypError> {
        self.hyp.with_vms(|vms, memory, env| {
            let handle = vms.create(ty, vcpus, self.hyp.guest_gic_version(), memory, env)?;
            vms.get(handle)?.cntvoff = physical_count();
            Ok(handle)
        })
    }

    fn vm_map(&mut self, handle: VmHandle, pa: PhysAddr, ipa: Ipa, pages: PageCount) -> Result<(), HypError> {
        self.hyp.with_vms(|vms, memory, env| {
            let mut tlb = guest_tlb(vms, handle)?;
            vms.map(handle, GuestPages { pa, ipa, count: pages }, memory, env, &mut tlb)
        })
    }

    fn vcpu_init(&mut self, handle: VmHandle, vcpu: VcpuIndex, pc: u64, x0: u64) -> Result<(), HypError> {
        self.hyp.with_vms(|vms, _, _| vms.vcpu_init(handle, vcpu, pc, x0))
    }

    fn vcpu_run(
        &mut self,
        handle: VmHandle,
        vcpu: VcpuIndex,
        mmio_read_value: u64,
        flags: hyp_abi::RunFlags,
    ) -> Result<Exit, HypError> {
        crate::vcpu_run::vcpu_run(self.hyp, handle, vcpu, mmio_read_value, flags)
    }

    fn vcpu_get_reg(&mut self, handle: VmHandle, vcpu: VcpuIndex, reg: u64) -> Result<u64, HypError> {
        self.hyp.with_vms(|vms, _, _| vms.get_reg(handle, vcpu, reg, physical_count()))
    }

    fn vcpu_set_reg(&mut self, handle: VmHandle, vcpu: VcpuIndex, reg: u64, value: u64) -> Result<(), HypError> {
        self.hyp.with_vms(|vms, _, _| vms.set_reg(handle, vcpu, reg, value, physical_count()))
    }

    fn vm_info(&mut self, handle: VmHandle) -> Result<[u64; 3], HypError> {
        self.hyp.with_vms(|vms, _, _| vms.info(handle))
    }

    fn vm_teardown(&mut self, handle: VmHandle) -> Result<(), HypError> {
        self.hyp.with_vms(|vms, memory, env| {
            let mut tlb = guest_tlb(vms, handle)?;
            vms.teardown(handle, memory, env, &mut tlb)
        })
    }

    fn vcpu_set_irq_line(&mut self, handle: VmHandle, vcpu: VcpuIndex, level: u64) -> Result<(), HypError> {
        if self.hyp.vgic != VgicHardware::None {
            return Err(HypError::NotSupported);
        }
        self.hyp.with_vms(|vms, _, _| vms.set_irq_line(handle, vcpu, level))
    }

    fn vcpu_inject_irq(&mut self, handle: VmHandle, vcpu: VcpuIndex, intid: u64) -> Result<u64, HypError> {
        if self.hyp.vgic == VgicHardware::None {
            return Err(HypError::NotSupported);
        }
        self.hyp.with_vms(|vms, _, _| vms.inject_irq(handle, vcpu, intid))
    }

    fn vm_set_gic(&mut self, handle: VmHandle, distributor: u64, second: u64) -> Result<(), HypError> {
        if self.hyp.vgic == VgicHardware::None {
            return Err(HypError::NotSupported);
        }
        self.hyp.with_vms(|vms, _, _| vms.set_gic_layout(handle, distributor, second))
    }

    fn vm_set_spi_level(&mut self, handle: VmHandle, vcpu: VcpuIndex, intid: u64, level: u64) -> Result<u64, HypError> {
        if self.hyp.vgic == VgicHardware::None {
            return Err(HypError::NotSupported);
        }
        self.hyp.with_vms(|vms, _, _| vms.set_spi_level(handle, vcpu, intid, level))
    }

    fn vm_reclaim(&mut self, handle: VmHandle, ipa: Ipa, pages: PageCount) -> Result<(), HypError> {
        self.hyp.with_vms(|vms, memory, env| {
            let mut tlb = guest_tlb(vms, handle)?;
            vms.reclaim(handle, ipa, pages, memory, env, &mut tlb)
        })
    }
}
