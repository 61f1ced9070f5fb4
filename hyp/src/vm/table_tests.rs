//! Tests of the VM table: handles, limits, registers, and the memory lifecycle
//! of protected and non-protected VMs against the real memory state.

use super::*;
use crate::mm::invariants::check;
use crate::mm::memory::{PhysMemory, HYP_DATA};
use crate::mm::ownership::PageDb;
use crate::range::PhysRange;
use crate::testing::{FakeTlb, HeapSource};
use aarch64_paging::paging::El2;
use std::collections::HashSet;

const RAM: PhysRange = PhysRange { start: 0x4000_0000, end: 0x4400_0000 };
const HYP: PhysRange = PhysRange { start: 0x4300_0000, end: 0x4400_0000 };

/// Records zeroed pages; inside `real` (pages of this process) reads and writes
/// are real, elsewhere (the fake RAM) they are dropped.
#[derive(Default)]
struct Zeroes(HashSet<u64>, Option<PhysRange>);

impl Zeroes {
    fn is_real(&self, address: u64) -> bool {
        self.1.is_some_and(|r| r.contains(address))
    }
}

impl PhysMemory for Zeroes {
    fn zero_page(&mut self, page: u64) {
        self.0.insert(page);
        if self.is_real(page) {
            // SAFETY: A page of the test's own real bank.
            unsafe { core::ptr::write_bytes(page as *mut u8, 0, 4096) };
        }
    }
    fn read_u64(&mut self, address: u64) -> u64 {
        if self.is_real(address) {
            // SAFETY: As above.
            unsafe { (address as *const u64).read() }
        } else {
            0
        }
    }
    fn write_u64(&mut self, address: u64, value: u64) {
        if self.is_real(address) {
            // SAFETY: As above.
            unsafe { (address as *mut u64).write(value) };
        }
    }
}

struct World {
    vms: VmTable,
    memory: MemoryState,
    source: HeapSource,
    s2: FakeTlb,
    el2: FakeTlb,
    guest_tlb: FakeTlb,
    zeroes: Zeroes,
}

impl World {
    fn new() -> World {
        Self::with_real_bank(None)
    }

    /// A world whose RAM also has `real`, a bank of this process's own memory
    /// (for the memcache, whose pages the hyp really writes).
    fn with_real_bank(real: Option<PhysRange>) -> World {
        let mut source = HeapSource::default();
        let (mut s2, mut el2, mut zeroes) = (FakeTlb::default(), FakeTlb::default(), Zeroes(HashSet::new(), real));
        let mut stage1 = PgTable::new(0, 48, El2, &mut source).unwrap();
        stage1.map(HYP.start as usize, HYP.end as usize, HYP.start as usize, HYP_DATA, &mut source, &mut el2).unwrap();
        let ram: Vec<PhysRange> = [Some(RAM), real].into_iter().flatten().collect();
        let records = vec![0u32; PageDb::storage_bytes(&ram) / 4].leak();
        let mut env = Env { source: &mut source, stage2_tlb: &mut s2, el2_tlb: &mut el2, memory: &mut zeroes };
        let memory = MemoryState::new(&ram, &[HYP], records, 48, stage1, &mut env).unwrap();
        World { vms: VmTable::new(48), memory, source, s2, el2, guest_tlb: FakeTlb::default(), zeroes }
    }

    /// Runs a memory call with this world's environment.
    fn memory_call(
        &mut self,
        f: impl FnOnce(&mut MemoryState, &mut Env<'_>) -> Result<(), HypError>,
    ) -> Result<(), HypError> {
        let mut env = Env {
            source: &mut self.source,
            stage2_tlb: &mut self.s2,
            el2_tlb: &mut self.el2,
            memory: &mut self.zeroes,
        };
        f(&mut self.memory, &mut env)
    }

    fn create(&mut self, ty: u64, vcpus: u64) -> Result<u64, HypError> {
        let mut env = Env {
            source: &mut self.source,
            stage2_tlb: &mut self.s2,
            el2_tlb: &mut self.el2,
            memory: &mut self.zeroes,
        };
        self.vms.create(ty, vcpus, crate::vm::vgic_dist::GicVersion::V3, &mut self.memory, &mut env)
    }

    fn map(&mut self, h: u64, pa: u64, ipa: u64, pages: u64) -> Result<(), HypError> {
        let mut env = Env {
            source: &mut self.source,
            stage2_tlb: &mut self.s2,
            el2_tlb: &mut self.el2,
            memory: &mut self.zeroes,
        };
        self.vms.map(h, GuestPages { pa, ipa, count: pages }, &mut self.memory, &mut env, &mut self.guest_tlb)
    }

    fn teardown(&mut self, h: u64) -> Result<(), HypError> {
        let mut env = Env {
            source: &mut self.source,
            stage2_tlb: &mut self.s2,
            el2_tlb: &mut self.el2,
            memory: &mut self.zeroes,
        };
        self.vms.teardown(h, &mut self.memory, &mut env, &mut self.guest_tlb)
    }

    fn reclaim(&mut self, h: u64, ipa: u64, pages: u64) -> Result<(), HypError> {
        let mut env = Env {
            source: &mut self.source,
            stage2_tlb: &mut self.s2,
            el2_tlb: &mut self.el2,
            memory: &mut self.zeroes,
        };
        self.vms.reclaim(h, ipa, pages, &mut self.memory, &mut env, &mut self.guest_tlb)
    }

    fn assert_clean(&self) {
        let guests: Vec<_> = self.vms.stage2s().collect();
        let report = check(&self.memory, &[], &guests);
        assert_eq!(report.count, 0, "{:?}", report.first.as_slice());
    }

    fn host_maps(&self, pa: u64) -> bool {
        self.memory.host_stage2.leaf_at(pa as usize).is_some()
    }
}

#[test]
fn stale_and_forged_handles_find_no_vm() {
    let mut w = World::new();
    let h = w.create(0, 1).unwrap();
    assert!(w.vms.get(h).is_ok());
    for forged in [0, h + 1, h ^ (1 << 32), h & 0xffff_ffff, u64::MAX, (MAX_VMS as u64 + 1) | 1 << 32] {
        assert_eq!(w.vms.get(forged).err(), Some(HypError::NoSuchVm), "{forged:#x}");
    }
    w.teardown(h).unwrap();
    assert_eq!(w.vms.get(h).err(), Some(HypError::NoSuchVm), "freed at teardown: held nothing");
    let h2 = w.create(0, 1).unwrap();
    assert_ne!(h, h2, "the slot's next VM has a new generation");
    assert_eq!(w.vms.info(h).err(), Some(HypError::NoSuchVm));
}

#[test]
fn bad_create_arguments_and_the_vm_limit() {
    let mut w = World::new();
    assert_eq!(w.create(2, 1), Err(HypError::InvalidArgument));
    assert_eq!(w.create(0, 0), Err(HypError::InvalidArgument));
    assert_eq!(w.create(1, MAX_VCPUS_PER_VM + 1), Err(HypError::InvalidArgument));
    for _ in 0..MAX_VMS {
        w.create(1, 1).unwrap();
    }
    assert_eq!(w.create(1, 1), Err(HypError::NoMemory));
    assert_eq!(w.vms.count(), MAX_VMS);
}

#[test]
fn registers_of_protected_vms_are_refused() {
    let mut w = World::new();
    let p = w.create(1, 2).unwrap();
    let n = w.create(0, 2).unwrap();
    w.vms.vcpu_init(p, 1, 0x8000_0000, 7).unwrap();
    w.vms.vcpu_init(n, 1, 0x8000_0000, 7).unwrap();
    assert_eq!(w.vms.get_reg(p, 1, 0), Err(HypError::PermissionDenied));
    assert_eq!(w.vms.set_reg(p, 1, 0, 1), Err(HypError::PermissionDenied));
    assert_eq!(w.vms.get_reg(n, 1, 0), Ok(7));
    assert_eq!(w.vms.get_reg(n, 1, 31), Ok(0x8000_0000));
    w.vms.set_reg(n, 1, 3, 0x33).unwrap();
    assert_eq!(w.vms.get_reg(n, 1, 3), Ok(0x33));
    // PSTATE can never name EL2.
    w.vms.set_reg(n, 1, 32, 0x3c9).unwrap();
    assert_eq!(w.vms.get_reg(n, 1, 32), Ok(0x3c5));
    assert_eq!(w.vms.get_reg(n, 2, 0), Err(HypError::NoSuchVcpu));
    assert_eq!(w.vms.get_reg(n, 1, 34), Err(HypError::InvalidArgument));
    assert_eq!(w.vms.vcpu_init(n, u64::MAX, 0, 0), Err(HypError::NoSuchVcpu));
}

#[test]
fn protected_memory_leaves_the_host_until_reclaimed_zeroed() {
    let mut w = World::new();
    let h = w.create(1, 1).unwrap();
    w.map(h, 0x4010_0000, 0x8000_0000, 16).unwrap();
    assert!(!w.host_maps(0x4010_0000));
    assert_eq!(w.vms.info(h), Ok([1, 1, 16]));
    w.assert_clean();
    assert_eq!(w.map(h, 0x4020_0000, 0x8000_0000, 1), Err(HypError::InvalidArgument), "IPA overlap");
    assert_eq!(w.map(h, 0x4010_0000, 0x9000_0000, 1), Err(HypError::NotOwned), "page already given");
    assert_eq!(w.map(h, 0x4030_0000, 1 << 48, 1), Err(HypError::OutOfRange), "IPA out of range");
    // Forced back from the live VM: zeroed, and the IPA is now lost to the VM.
    w.reclaim(h, 0x8000_f000, 1).unwrap();
    assert_eq!(w.vms.ipa_kind(h, 0x8000_f008), crate::vm::guest_trap::IpaKind::Lost);
    assert_eq!(w.vms.ipa_kind(h, 0x8000_e000), crate::vm::guest_trap::IpaKind::Memory);
    assert!(w.host_maps(0x4010_f000) && w.zeroes.0.contains(&0x4010_f000));
    w.assert_clean();
    w.teardown(h).unwrap();
    assert_eq!(w.map(h, 0x4020_0000, 0, 1), Err(HypError::NoSuchVm));
    assert_eq!(w.teardown(h), Err(HypError::NoSuchVm));
    w.reclaim(h, 0x8000_0000, 10).unwrap();
    assert_eq!(w.vms.info(h), Ok([1, 1, 5]));
    w.assert_clean();
    assert_eq!(w.reclaim(h, 0x8000_a000, 6), Err(HypError::NotOwned), "the lost page is not the VM's any more");
    w.reclaim(h, 0x8000_a000, 5).unwrap();
    assert_eq!(w.vms.get(h).err(), Some(HypError::NoSuchVm), "gone with its last page");
    assert!(w.host_maps(0x4010_0000) && w.host_maps(0x4010_f000));
    assert!((0..16).all(|i| w.zeroes.0.contains(&(0x4010_0000 + i * 4096))));
    w.assert_clean();
}

#[test]
fn non_protected_memory_stays_with_the_host_and_returns_at_teardown() {
    let mut w = World::new();
    let h = w.create(0, 1).unwrap();
    w.map(h, 0x4010_0000, 0x8000_0000, 4).unwrap();
    assert_eq!(w.reclaim(h, 0x8000_0000, 1), Err(HypError::Busy), "lent pages return at teardown");
    assert!(w.host_maps(0x4010_0000), "the host still sees a non-protected VM's memory");
    w.assert_clean();
    w.teardown(h).unwrap();
    assert_eq!(w.vms.get(h).err(), Some(HypError::NoSuchVm));
    w.assert_clean();
    // The pages are plain host pages again.
    let h2 = w.create(1, 1).unwrap();
    w.map(h2, 0x4010_0000, 0, 4).unwrap();
    w.assert_clean();
}

#[test]
fn many_vms_created_and_torn_down_leave_nothing_behind() {
    let mut w = World::new();
    // The host stage-2 keeps the tables of its first splits (it does not merge
    // pages back into blocks), so memory is compared from the second round on.
    let mut outstanding = None;
    for round in 0..50u64 {
        let mut handles = Vec::new();
        for i in 0..32u64 {
            let h = w.create(i % 2, 1).unwrap();
            w.map(h, 0x4000_0000 + i * 0x10_0000, 0x8000_0000, 2).unwrap();
            handles.push(h);
        }
        w.assert_clean();
        for (i, h) in handles.into_iter().enumerate() {
            w.teardown(h).unwrap();
            if i % 2 == 1 {
                w.reclaim(h, 0x8000_0000, 2).unwrap();
            }
        }
        assert_eq!(w.vms.count(), 0, "round {round}");
        let now = w.source.outstanding.len();
        assert_eq!(*outstanding.get_or_insert(now), now, "round {round}: table pages leaked");
    }
    w.assert_clean();
}

/// VM stage-2 tables come from pages the host donated: without them a VM cannot
/// be created; while a VM lives its tables are in use and cannot be reclaimed;
/// after teardown every table page is back in the memcache.
#[test]
fn vm_tables_live_in_donated_memory() {
    const PAGES: usize = 16;
    let layout = std::alloc::Layout::from_size_align(PAGES * 4096, 4096).unwrap();
    // SAFETY: Non-zero size; freed at the end.
    let base = unsafe { std::alloc::alloc_zeroed(layout) } as u64;
    let real = PhysRange { start: base, end: base + (PAGES * 4096) as u64 };
    let mut w = World::with_real_bank(Some(real));
    w.memory.use_memcache_for_guest_tables();
    assert_eq!(w.create(1, 1), Err(HypError::NoMemory), "nothing donated yet");
    w.memory_call(|m, env| m.host_donate_hyp(base, PAGES as u64, env)).unwrap();
    assert_eq!(w.memory.memcache_pages(), (PAGES as u64, 0));
    let h = w.create(1, 1).unwrap();
    w.map(h, 0x4010_0000, 0x8000_0000, 2).unwrap();
    let (free, used) = w.memory.memcache_pages();
    assert_eq!((free + used, w.memory.memcache.len()), (PAGES as u64, free));
    assert!(used >= 2, "root and tables in use: {used}");
    assert_eq!(
        w.memory_call(|m, env| m.host_reclaim_hyp(base, PAGES as u64, env)),
        Err(HypError::Busy),
        "tables in use"
    );
    w.assert_clean();
    w.teardown(h).unwrap();
    w.reclaim(h, 0x8000_0000, 2).unwrap();
    assert_eq!(w.memory.memcache_pages(), (PAGES as u64, 0), "every table page came back");
    w.memory_call(|m, env| m.host_reclaim_hyp(base, PAGES as u64, env)).unwrap();
    assert_eq!(w.memory.memcache_pages(), (0, 0));
    w.assert_clean();
    // SAFETY: Allocated above with this layout; no record refers to it any more.
    unsafe { std::alloc::dealloc(base as *mut u8, layout) };
}

#[test]
fn guest_psci_cpu_on_starts_only_an_off_vcpu_and_affinity_info_follows() {
    let mut w = World::new();
    let h = w.create(1, 3).unwrap();
    w.vms.vcpu_init(h, 0, 0x8000_0000, 0).unwrap();
    let vm = w.vms.get(h).unwrap();
    assert_eq!(vm.vcpus[1].power, VcpuPower::Off);
    assert_eq!(vm.psci_affinity_info(vcpu_mpidr(1)), 1, "OFF");
    assert_eq!(vm.psci_cpu_on(vcpu_mpidr(1), 0x8000_1002, 5), Err(-9), "unaligned entry: INVALID_ADDRESS");
    assert_eq!(vm.psci_cpu_on(7, 0x8000_1000, 5), Err(-2), "no vCPU with that MPIDR");
    assert_eq!(vm.psci_cpu_on(1, 0x8000_1000, 5), Ok(1), "Aff0 alone names vCPU 1");
    assert_eq!(vm.vcpus[1].power, VcpuPower::OnPending);
    assert_eq!((vm.vcpus[1].ctx.pc, vm.vcpus[1].ctx.gprs.x[0]), (0x8000_1000, 5));
    assert_eq!(vm.psci_affinity_info(1), 2, "ON_PENDING until it runs");
    assert_eq!(vm.psci_cpu_on(1, 0x8000_1000, 5), Err(-5), "ON_PENDING");
    vm.vcpus[1].power = VcpuPower::On;
    assert_eq!(vm.psci_cpu_on(1, 0x8000_1000, 5), Err(-4), "ALREADY_ON");
    assert_eq!(vm.psci_affinity_info(1), 0, "ON");
    assert_eq!(vm.psci_affinity_info(3), -2, "no vCPU 3");
}

#[test]
fn another_vcpu_on_a_cpu_asks_for_a_local_tlb_flush() {
    let mut w = World::new();
    let h = w.create(0, 2).unwrap();
    let vm = w.vms.get(h).unwrap();
    assert!(!vm.switch_vcpu_on_cpu(0, 0), "first vCPU there: the VMID is clean");
    assert!(!vm.switch_vcpu_on_cpu(0, 0), "same vCPU again");
    assert!(!vm.switch_vcpu_on_cpu(1, 1), "first on CPU 1");
    assert!(vm.switch_vcpu_on_cpu(0, 1), "vCPU 1 where vCPU 0 ran");
    assert!(vm.switch_vcpu_on_cpu(1, 0), "vCPU 0 where vCPU 1 ran");
    assert!(vm.switch_vcpu_on_cpu(99, 0), "an unknown CPU always flushes");
}

#[test]
fn injected_interrupts_are_routed_and_bad_ones_are_refused() {
    let mut w = World::new();
    let h = w.create(1, 2).unwrap();
    assert_eq!(w.vms.inject_irq(h, 1, 40), Ok(0), "an SPI goes where the guest routes it: vCPU 0 out of reset");
    assert_eq!(w.vms.inject_irq(h, 1, 27), Ok(1), "a PPI goes to the vCPU named");
    assert_eq!(w.vms.inject_irq(h, 1, 96), Err(HypError::InvalidArgument), "beyond the VM's SPIs");
    assert_eq!(w.vms.inject_irq(h, 1, 1020), Err(HypError::InvalidArgument));
    assert_eq!(w.vms.inject_irq(h, 1, 1 << 40), Err(HypError::InvalidArgument));
    assert_eq!(w.vms.inject_irq(h, 2, 40), Err(HypError::NoSuchVcpu));
    assert_eq!(w.vms.inject_irq(h ^ 1 << 32, 0, 40), Err(HypError::NoSuchVm));
    let vm = w.vms.get(h).unwrap();
    assert_eq!(vm.gic.pending_word(1, 0), 1 << 27);
    assert_eq!(vm.gic.pending_word(0, 1), 1 << 8);
    vm.gic.set_irouter(41, 7);
    assert_eq!(w.vms.inject_irq(h, 0, 41), Ok(u64::MAX), "routed to no vCPU of the VM");
    w.teardown(h).unwrap();
    assert_eq!(w.vms.inject_irq(h, 1, 40), Err(HypError::NoSuchVm));
}

#[test]
fn the_mmio_guard_refuses_memory_and_far_ipas_and_decides_what_is_mmio() {
    use crate::vm::exit::{GuardCall, NOT_SUPPORTED};
    use crate::vm::guest_trap::IpaKind;
    let mut w = World::new();
    let h = w.create(1, 1).unwrap();
    w.map(h, 0x4010_0000, 0x8000_0000, 16).unwrap();
    let invalid = -3i64 as u64;
    assert_eq!(w.vms.mmio_guard(h, GuardCall::Map { ipa: 0x900_0000 }), NOT_SUPPORTED, "not enrolled");
    assert_eq!(w.vms.ipa_kind(h, 0x900_0000), IpaKind::Other, "no guard: everything outside memory is MMIO");
    assert_eq!(w.vms.mmio_guard(h, GuardCall::Enroll), 0);
    assert_eq!(w.vms.ipa_kind(h, 0x900_0000), IpaKind::Refused);
    assert_eq!(w.vms.mmio_guard(h, GuardCall::Map { ipa: 0x900_0000 }), 0);
    assert_eq!(w.vms.ipa_kind(h, 0x900_0ff8), IpaKind::Other);
    assert_eq!(w.vms.ipa_kind(h, 0x900_1000), IpaKind::Refused);
    assert_eq!(w.vms.ipa_kind(h, 0x8000_0000), IpaKind::Memory, "memory is never MMIO");
    assert_eq!(w.vms.mmio_guard(h, GuardCall::Map { ipa: 0x8000_1000 }), invalid, "the VM's memory");
    assert_eq!(w.vms.mmio_guard(h, GuardCall::Map { ipa: 1 << 48 }), invalid, "beyond the IPA space");
    assert_eq!(w.vms.mmio_guard(h, GuardCall::Map { ipa: 0x900_0004 }), invalid, "misaligned");
    assert_eq!(w.vms.mmio_guard(h, GuardCall::Unmap { ipa: 0x900_0000 }), 0);
    assert_eq!(w.vms.ipa_kind(h, 0x900_0000), IpaKind::Refused);
    assert_eq!(w.vms.mmio_guard(h, GuardCall::Unmap { ipa: 0x900_0000 }), invalid, "not allowed any more");
    assert_eq!(w.vms.mmio_guard(h + 1, GuardCall::Enroll), NOT_SUPPORTED, "no such VM");
}
