//! Tests of the VM table: handles, limits, registers, and the memory lifecycle
//! of protected and non-protected VMs against the real memory state.

use super::*;
use crate::addr::{Ipa, PageCount, PhysAddr};
use crate::mm::invariants::check;
use crate::mm::memory::HYP_DATA;
use crate::mm::ownership::PageDb;
use crate::mm::phys_memory::PhysMemory;
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

    fn create(&mut self, ty: u64, vcpus: u64) -> Result<VmHandle, HypError> {
        let mut env = Env {
            source: &mut self.source,
            stage2_tlb: &mut self.s2,
            el2_tlb: &mut self.el2,
            memory: &mut self.zeroes,
        };
        self.vms.create(ty, vcpus, crate::vm::vgic_dist::GicVersion::V3, &mut self.memory, &mut env)
    }

    /// `VM_MAP` with the host's raw numbers.
    fn map(&mut self, h: VmHandle, pa: u64, ipa: u64, pages: u64) -> Result<(), HypError> {
        let mut env = Env {
            source: &mut self.source,
            stage2_tlb: &mut self.s2,
            el2_tlb: &mut self.el2,
            memory: &mut self.zeroes,
        };
        let pages = GuestPages { pa: PhysAddr::new(pa), ipa: Ipa::new(ipa), count: PageCount::new(pages) };
        self.vms.map(h, pages, &mut self.memory, &mut env, &mut self.guest_tlb)
    }

    fn teardown(&mut self, h: VmHandle) -> Result<(), HypError> {
        let mut env = Env {
            source: &mut self.source,
            stage2_tlb: &mut self.s2,
            el2_tlb: &mut self.el2,
            memory: &mut self.zeroes,
        };
        self.vms.teardown(h, &mut self.memory, &mut env, &mut self.guest_tlb)
    }

    /// `VM_RECLAIM` with the host's raw numbers.
    fn reclaim(&mut self, h: VmHandle, ipa: u64, pages: u64) -> Result<(), HypError> {
        let mut env = Env {
            source: &mut self.source,
            stage2_tlb: &mut self.s2,
            el2_tlb: &mut self.el2,
            memory: &mut self.zeroes,
        };
        self.vms.reclaim(h, Ipa::new(ipa), PageCount::new(pages), &mut self.memory, &mut env, &mut self.guest_tlb)
    }

    fn assert_clean(&self) {
        let guests: Vec<_> = self.vms.stage2s().collect();
        let report = check(&self.memory, &[], &guests);
        assert_eq!(report.count, 0, "{:?}", report.first.as_slice());
    }

    fn host_maps(&self, pa: u64) -> bool {
        self.memory.host_stage2.leaf_at(pa as usize).is_some()
    }

    /// A guest's memory call, as a running vCPU of VM `h` makes it.
    fn guest_memory(&mut self, h: VmHandle, call: crate::vm::exit::MemoryCall) -> Result<(), HypError> {
        let mut env = Env {
            source: &mut self.source,
            stage2_tlb: &mut self.s2,
            el2_tlb: &mut self.el2,
            memory: &mut self.zeroes,
        };
        self.vms.guest_memory(h, call, &mut self.memory, &mut env, &mut self.guest_tlb)
    }
}

#[test]
fn stale_and_forged_handles_find_no_vm() {
    let mut w = World::new();
    let h = w.create(0, 1).unwrap();
    assert!(w.vms.get(h).is_ok());
    let raw = h.raw();
    for forged in [0, raw + 1, raw ^ (1 << 32), raw & 0xffff_ffff, u64::MAX, (MAX_VMS as u64 + 1) | 1 << 32] {
        assert_eq!(w.vms.get(VmHandle::new(forged)).err(), Some(HypError::NoSuchVm), "{forged:#x}");
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
    w.vms.vcpu_init(p, VcpuIndex::new(0), 0x8000_0000, 7).unwrap();
    w.vms.vcpu_init(n, VcpuIndex::new(1), 0x8000_0000, 7).unwrap();
    for vcpu in [0, 1] {
        assert_eq!(w.vms.get_reg(p, VcpuIndex::new(vcpu), 0, 0), Err(HypError::PermissionDenied));
        assert_eq!(w.vms.set_reg(p, VcpuIndex::new(vcpu), 0, 1, 0), Err(HypError::PermissionDenied));
    }
    assert_eq!(w.vms.get_reg(n, VcpuIndex::new(1), 0, 0), Ok(7));
    assert_eq!(w.vms.get_reg(n, VcpuIndex::new(1), 31, 0), Ok(0x8000_0000));
    w.vms.set_reg(n, VcpuIndex::new(1), 3, 0x33, 0).unwrap();
    assert_eq!(w.vms.get_reg(n, VcpuIndex::new(1), 3, 0), Ok(0x33));
    // PSTATE can never name EL2.
    w.vms.set_reg(n, VcpuIndex::new(1), 32, 0x3c9, 0).unwrap();
    assert_eq!(w.vms.get_reg(n, VcpuIndex::new(1), 32, 0), Ok(0x3c5));
    assert_eq!(w.vms.get_reg(n, VcpuIndex::new(2), 0, 0), Err(HypError::NoSuchVcpu));
    assert_eq!(w.vms.get_reg(n, VcpuIndex::new(1), 42, 0), Err(HypError::InvalidArgument));
    assert_eq!(w.vms.get_reg(n, VcpuIndex::new(1), 128, 0), Err(HypError::InvalidArgument));
    assert_eq!(w.vms.vcpu_init(n, VcpuIndex::new(u64::MAX), 0, 0), Err(HypError::NoSuchVcpu));
}

#[test]
fn the_rest_of_a_non_protected_vcpus_registers_read_back_as_written() {
    let mut w = World::new();
    let n = w.create(0, 2).unwrap();
    let p = w.create(1, 1).unwrap();
    let v1 = VcpuIndex::new(1);
    for (reg, value, read_back) in [
        (VcpuReg::SpEl0, u64::MAX, u64::MAX),
        (VcpuReg::ElrEl1, 0x1234, 0x1234),
        (VcpuReg::SpsrEl1, 0x3c5, 0x3c5),
        (VcpuReg::Fpsr, 0xffff_ffff_0800_0000, 0x0800_0000),
        (VcpuReg::Fpcr, 0x0300_0000, 0x0300_0000),
        (VcpuReg::TimerCtl, 0b111, 0b011),
        (VcpuReg::TimerCval, 0xdead_beef, 0xdead_beef),
    ] {
        assert_eq!(w.vms.get_reg(n, v1, reg.raw(), 0), Ok(0), "{reg:?} out of reset");
        w.vms.set_reg(n, v1, reg.raw(), value, 0).unwrap();
        assert_eq!(w.vms.get_reg(n, v1, reg.raw(), 0), Ok(read_back), "{reg:?}");
        assert_eq!(w.vms.get_reg(n, VcpuIndex::new(0), reg.raw(), 0), Ok(0), "{reg:?} of the other vCPU");
        assert_eq!(w.vms.set_reg(p, VcpuIndex::new(0), reg.raw(), value, 0), Err(HypError::PermissionDenied));
    }
    // The two halves of a SIMD register, each alone.
    let (low, high) = (VcpuReg::V { n: 31, high: false }, VcpuReg::V { n: 31, high: true });
    w.vms.set_reg(n, v1, high.raw(), 0xaaaa, 0).unwrap();
    w.vms.set_reg(n, v1, low.raw(), 0x5555, 0).unwrap();
    assert_eq!(w.vms.get_reg(n, v1, high.raw(), 0), Ok(0xaaaa));
    assert_eq!(w.vms.get_reg(n, v1, low.raw(), 0), Ok(0x5555));
    assert_eq!(w.vms.get_reg(n, v1, VcpuReg::V { n: 30, high: true }.raw(), 0), Ok(0));
    // The virtual count: the physical count less the VM's offset, for every vCPU.
    let count = VcpuReg::TimerCount.raw();
    let offset = w.vms.get(n).unwrap().cntvoff;
    assert_eq!(w.vms.get_reg(n, v1, count, offset + 500), Ok(500));
    w.vms.set_reg(n, v1, count, 100, 1_000).unwrap();
    assert_eq!(w.vms.get_reg(n, VcpuIndex::new(0), count, 1_050), Ok(150));
    // A protected VM's count: read at any time, set only before it first runs.
    let protected_offset = w.vms.get(p).unwrap().cntvoff;
    assert_eq!(w.vms.get_reg(p, VcpuIndex::new(0), count, protected_offset + 9), Ok(9));
    assert_eq!(w.vms.set_reg(p, VcpuIndex::new(0), count, 1 << 40, 5_000), Ok(()));
    assert_eq!(w.vms.get_reg(p, VcpuIndex::new(0), count, 5_001), Ok((1 << 40) + 1));
    w.vms.get(p).unwrap().ran = true;
    assert_eq!(w.vms.set_reg(p, VcpuIndex::new(0), count, 0, 6_000), Err(HypError::PermissionDenied));
    assert_eq!(w.vms.get_reg(p, VcpuIndex::new(0), count, 5_002), Ok((1 << 40) + 2));
    // While vCPU 0 runs: its own registers are Busy, the VM's count reads but
    // does not move, vCPU 1's registers are the host's.
    assert!(w.vms.get(n).unwrap().vcpus[0].ctx.claim(None));
    assert_eq!(w.vms.get_reg(n, VcpuIndex::new(0), 0, 0), Err(HypError::Busy));
    assert_eq!(w.vms.get_reg(n, v1, count, 1_100), Ok(200));
    assert_eq!(w.vms.set_reg(n, v1, count, 7, 1_100), Err(HypError::Busy));
    assert_eq!(w.vms.get_reg(n, v1, count, 1_100), Ok(200), "the count did not move");
    assert_eq!(w.vms.set_reg(n, v1, VcpuReg::ElrEl1.raw(), 7, 0), Ok(()));
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
    assert_eq!(w.vms.ipa_kind(h, Ipa::new(0x8000_f008)).0, crate::vm::guest_trap::IpaKind::Lost);
    assert_eq!(w.vms.ipa_kind(h, Ipa::new(0x8000_e000)).0, crate::vm::guest_trap::IpaKind::Memory);
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
        // (The hyp's stage-1 keeps the last-level tables of the windows its
        // scrubs touched in the first round, too.)
        let now = w.source.outstanding.len();
        if round >= 1 {
            assert_eq!(*outstanding.get_or_insert(now), now, "round {round}: table pages leaked");
        }
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
    w.memory_call(|m, env| m.host_donate_hyp(PhysAddr::new(base), PageCount::new(PAGES as u64), env)).unwrap();
    assert_eq!(w.memory.memcache_pages(), (PAGES as u64, 0));
    let h = w.create(1, 1).unwrap();
    w.map(h, 0x4010_0000, 0x8000_0000, 2).unwrap();
    let (free, used) = w.memory.memcache_pages();
    assert_eq!((free + used, w.memory.memcache.len()), (PAGES as u64, free));
    assert!(used >= 2, "root and tables in use: {used}");
    assert_eq!(
        w.memory_call(|m, env| m.host_reclaim_hyp(PhysAddr::new(base), PageCount::new(PAGES as u64), env)),
        Err(HypError::Busy),
        "tables in use"
    );
    w.assert_clean();
    w.teardown(h).unwrap();
    w.reclaim(h, 0x8000_0000, 2).unwrap();
    assert_eq!(w.memory.memcache_pages(), (PAGES as u64, 0), "every table page came back");
    w.memory_call(|m, env| m.host_reclaim_hyp(PhysAddr::new(base), PageCount::new(PAGES as u64), env)).unwrap();
    assert_eq!(w.memory.memcache_pages(), (0, 0));
    w.assert_clean();
    // SAFETY: Allocated above with this layout; no record refers to it any more.
    unsafe { std::alloc::dealloc(base as *mut u8, layout) };
}

#[test]
fn guest_psci_cpu_on_starts_only_an_off_vcpu_and_affinity_info_follows() {
    let mut w = World::new();
    let h = w.create(1, 3).unwrap();
    w.map(h, 0x4010_0000, 0x8000_0000, 2).unwrap();
    w.vms.vcpu_init(h, VcpuIndex::new(0), 0x8000_0000, 0).unwrap();
    let vm = w.vms.get(h).unwrap();
    assert_eq!(vm.vcpus[1].power, VcpuPower::Off);
    assert_eq!(vm.psci_affinity_info(vcpu_mpidr(1)), 1, "OFF");
    assert_eq!(vm.psci_cpu_on(vcpu_mpidr(1), 0x8000_1002, 5), Err(-9), "unaligned entry: INVALID_ADDRESS");
    assert_eq!(vm.psci_cpu_on(vcpu_mpidr(1), 0x8000_2000, 5), Err(-9), "not the VM's memory: INVALID_ADDRESS");
    assert_eq!(vm.psci_cpu_on(vcpu_mpidr(1), 0x0300_0000, 5), Err(-9), "MMIO: INVALID_ADDRESS");
    assert_eq!(vm.vcpus[1].power, VcpuPower::Off, "a refused CPU_ON changes nothing");
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
    assert_eq!(
        w.vms.inject_irq(h, VcpuIndex::new(1), 40),
        Ok(0),
        "an SPI goes where the guest routes it: vCPU 0 out of reset"
    );
    assert_eq!(w.vms.inject_irq(h, VcpuIndex::new(1), 27), Ok(1), "a PPI goes to the vCPU named");
    assert_eq!(w.vms.inject_irq(h, VcpuIndex::new(1), 288), Err(HypError::InvalidArgument), "beyond the VM's SPIs");
    assert_eq!(w.vms.inject_irq(h, VcpuIndex::new(1), 287), Ok(0), "the VM's last SPI");
    assert_eq!(w.vms.inject_irq(h, VcpuIndex::new(1), 1020), Err(HypError::InvalidArgument));
    assert_eq!(w.vms.inject_irq(h, VcpuIndex::new(1), 1 << 40), Err(HypError::InvalidArgument));
    assert_eq!(w.vms.inject_irq(h, VcpuIndex::new(2), 40), Err(HypError::NoSuchVcpu));
    assert_eq!(w.vms.inject_irq(VmHandle::new(h.raw() ^ 1 << 32), VcpuIndex::new(0), 40), Err(HypError::NoSuchVm));
    let vm = w.vms.get(h).unwrap();
    assert_eq!(vm.gic.pending_word(1, 0), 1 << 27);
    assert_eq!(vm.gic.pending_word(0, 1), 1 << 8);
    vm.gic.set_irouter(41, 7);
    assert_eq!(w.vms.inject_irq(h, VcpuIndex::new(0), 41), Ok(u64::MAX), "routed to no vCPU of the VM");
    w.teardown(h).unwrap();
    assert_eq!(w.vms.inject_irq(h, VcpuIndex::new(1), 40), Err(HypError::NoSuchVm));
}

#[test]
fn a_protected_guest_shares_unshares_and_relinquishes_its_pages() {
    use crate::vm::exit::MemoryCall::{Relinquish, Share, Unshare};
    let mut w = World::new();
    let p = w.create(1, 1).unwrap();
    let n = w.create(0, 1).unwrap();
    w.map(p, 0x4010_0000, 0x8000_0000, 4).unwrap();
    w.map(n, 0x4020_0000, 0x8000_0000, 1).unwrap();
    assert_eq!(w.guest_memory(n, Share { ipa: 0x8000_0000 }), Err(HypError::NotSupported), "non-protected");
    assert_eq!(w.guest_memory(p, Share { ipa: 0x8000_1000 }), Ok(()));
    assert!(w.host_maps(0x4010_1000) && !w.host_maps(0x4010_0000));
    w.assert_clean();
    assert_eq!(w.guest_memory(p, Share { ipa: 0x8000_1000 }), Err(HypError::NotOwned), "twice");
    assert_eq!(w.guest_memory(p, Unshare { ipa: 0x8000_2000 }), Err(HypError::NotOwned), "never shared");
    assert_eq!(w.guest_memory(p, Share { ipa: 0x8000_1800 }), Err(HypError::NotAligned));
    assert_eq!(w.guest_memory(p, Share { ipa: 0x900_0000 }), Err(HypError::NotOwned), "MMIO");
    assert_eq!(w.guest_memory(p, Share { ipa: !0xfff }), Err(HypError::OutOfRange));
    assert_eq!(w.guest_memory(p, Unshare { ipa: 0x8000_1000 }), Ok(()));
    assert!(!w.host_maps(0x4010_1000), "unshared: out of the host's reach");
    w.assert_clean();
    // Relinquish: the page is the host's again, zeroed; the VM holds one less.
    assert_eq!(w.guest_memory(p, Share { ipa: 0x8000_3000 }), Ok(()));
    assert_eq!(w.guest_memory(p, Relinquish { ipa: 0x8000_2000 }), Ok(()));
    assert!(w.host_maps(0x4010_2000) && w.zeroes.0.contains(&0x4010_2000));
    assert_eq!(w.vms.info(p), Ok([1, 1, 3]));
    assert_eq!(w.guest_memory(p, Relinquish { ipa: 0x8000_2000 }), Err(HypError::NotOwned), "nothing there now");
    assert_eq!(w.vms.ipa_kind(p, Ipa::new(0x8000_2000)).0, crate::vm::guest_trap::IpaKind::Other);
    w.assert_clean();
    // Teardown with a page still shared: the reclaim takes it from the host,
    // zeroes it and gives it back as the host's own.
    w.teardown(p).unwrap();
    assert_eq!(w.guest_memory(p, Unshare { ipa: 0x8000_3000 }), Err(HypError::NotSupported), "torn down");
    assert_eq!(w.reclaim(p, 0x8000_0000, 2), Ok(()));
    assert_eq!(w.reclaim(p, 0x8000_3000, 1), Ok(()));
    assert!(w.zeroes.0.contains(&0x4010_3000) && w.host_maps(0x4010_3000));
    assert_eq!(w.vms.info(p), Err(HypError::NoSuchVm));
    w.assert_clean();
}

#[test]
fn the_mmio_guard_refuses_memory_and_far_ipas_and_decides_what_is_mmio() {
    use crate::vm::exit::{GuardCall, NOT_SUPPORTED};
    use crate::vm::guest_trap::IpaKind;
    let mut w = World::new();
    let h = w.create(1, 1).unwrap();
    w.map(h, 0x4010_0000, 0x8000_0000, 16).unwrap();
    let invalid = -3i64 as u64;
    // Linux's guest maps without enrolling: checked, and everything passes.
    assert_eq!(w.vms.mmio_guard(h, GuardCall::Map { ipa: 0x900_0000 }), 0, "not enrolled");
    assert_eq!(w.vms.mmio_guard(h, GuardCall::Map { ipa: 0x8000_1000 }), invalid, "not enrolled: the VM's memory");
    assert_eq!(w.vms.mmio_guard(h, GuardCall::Unmap { ipa: 0x900_0000 }), NOT_SUPPORTED, "not enrolled");
    assert_eq!(
        w.vms.ipa_kind(h, Ipa::new(0x900_0000)).0,
        IpaKind::Other,
        "no guard: everything outside memory is MMIO"
    );
    assert_eq!(w.vms.ipa_kind(h, Ipa::new(0x900_1000)).0, IpaKind::Other);
    assert_eq!(w.vms.mmio_guard(h, GuardCall::Enroll), 0);
    assert_eq!(w.vms.ipa_kind(h, Ipa::new(0x900_0000)).0, IpaKind::Refused);
    assert_eq!(w.vms.mmio_guard(h, GuardCall::Map { ipa: 0x900_0000 }), 0);
    assert_eq!(w.vms.ipa_kind(h, Ipa::new(0x900_0ff8)).0, IpaKind::Other);
    assert_eq!(w.vms.ipa_kind(h, Ipa::new(0x900_1000)).0, IpaKind::Refused);
    assert_eq!(w.vms.ipa_kind(h, Ipa::new(0x8000_0000)).0, IpaKind::Memory, "memory is never MMIO");
    assert_eq!(w.vms.mmio_guard(h, GuardCall::Map { ipa: 0x8000_1000 }), invalid, "the VM's memory");
    assert_eq!(w.vms.mmio_guard(h, GuardCall::Map { ipa: 1 << 48 }), invalid, "beyond the IPA space");
    assert_eq!(w.vms.mmio_guard(h, GuardCall::Map { ipa: 0x900_0004 }), invalid, "misaligned");
    assert_eq!(w.vms.mmio_guard(h, GuardCall::Unmap { ipa: 0x900_0000 }), 0);
    assert_eq!(w.vms.ipa_kind(h, Ipa::new(0x900_0000)).0, IpaKind::Refused);
    assert_eq!(w.vms.mmio_guard(h, GuardCall::Unmap { ipa: 0x900_0000 }), invalid, "not allowed any more");
    assert_eq!(w.vms.mmio_guard(VmHandle::new(h.raw() + 1), GuardCall::Enroll), NOT_SUPPORTED, "no such VM");
}

/// A vCPU's power state and entry (PC, x0), as the table holds them.
fn vcpu_state(w: &mut World, h: VmHandle, index: usize) -> (VcpuPower, u64, u64) {
    let v = &w.vms.get(h).unwrap().vcpus[index];
    (v.power, v.ctx.pc, v.ctx.gprs.x[0])
}

/// What `VCPU_RUN` does to a vCPU under the lock when it enters (`true`) and
/// when the run ends (`false`).
fn set_running(w: &mut World, h: VmHandle, index: usize, running: bool) {
    let v = &mut w.vms.get(h).unwrap().vcpus[index];
    if running {
        v.ctx.claim(None);
        v.power = VcpuPower::On;
    } else {
        v.ctx.page_ref().release_handle().release(None);
    }
}

/// A protected vCPU's state belongs to its guest: the host sets vCPU 0's entry
/// once, before it first runs; every later `VCPU_INIT` (before the first run,
/// while it runs, after it exited, after its guest turned it off), and any of a
/// secondary (before or after the guest's own CPU_ON, after its CPU_OFF), is
/// refused with `PermissionDenied` and changes nothing, as is every register
/// write; a crashed or torn-down VM answers `NoSuchVm`.
#[test]
fn protected_vcpu_entry_is_set_once_by_the_host_and_only_for_vcpu_0() {
    use HypError::{NoSuchVcpu, NoSuchVm, PermissionDenied};
    use VcpuPower::{Off, On, OnPending};
    let mut w = World::new();
    let h = w.create(1, 3).unwrap();
    w.map(h, 0x4010_0000, 0x8000_0000, 4).unwrap();
    // Before anything ran: no secondary takes the host's entry.
    for vcpu in [1, 2] {
        assert_eq!(w.vms.vcpu_init(h, VcpuIndex::new(vcpu), 0x8000_1000, 1), Err(PermissionDenied), "secondary {vcpu}");
        assert_eq!(vcpu_state(&mut w, h, vcpu as usize), (Off, 0, 0));
    }
    assert_eq!(w.vms.vcpu_init(h, VcpuIndex::new(3), 0x8000_1000, 1), Err(NoSuchVcpu));
    // vCPU 0: once. (`other_entry`: a later VCPU_INIT of the host's.)
    let other_entry = |w: &mut World, vcpu: u64| w.vms.vcpu_init(h, VcpuIndex::new(vcpu), 0x6666_0000, 66);
    w.vms.vcpu_init(h, VcpuIndex::new(0), 0x8000_0000, 7).unwrap();
    assert_eq!(vcpu_state(&mut w, h, 0), (OnPending, 0x8000_0000, 7));
    assert_eq!(other_entry(&mut w, 0), Err(PermissionDenied), "a second entry before it ran");
    assert_eq!(vcpu_state(&mut w, h, 0), (OnPending, 0x8000_0000, 7));
    // While it runs, and after it exited.
    set_running(&mut w, h, 0, true);
    assert_eq!(other_entry(&mut w, 0), Err(PermissionDenied), "while it runs");
    w.vms.get(h).unwrap().vcpus[0].ctx.pc = 0x8000_0040;
    set_running(&mut w, h, 0, false);
    assert_eq!(other_entry(&mut w, 0), Err(PermissionDenied), "after it exited");
    assert_eq!(vcpu_state(&mut w, h, 0), (On, 0x8000_0040, 7), "the guest's own state, untouched");
    // A secondary the guest started with CPU_ON: its entry is the guest's.
    assert_eq!(w.vms.get(h).unwrap().psci_cpu_on(vcpu_mpidr(1), 0x8000_2000, 5), Ok(1));
    assert_eq!(other_entry(&mut w, 1), Err(PermissionDenied), "after the guest's CPU_ON");
    assert_eq!(vcpu_state(&mut w, h, 1), (OnPending, 0x8000_2000, 5));
    set_running(&mut w, h, 1, true);
    assert_eq!(other_entry(&mut w, 1), Err(PermissionDenied), "while it runs");
    set_running(&mut w, h, 1, false);
    // Its guest turns it off (the CPU_OFF exit): only the guest starts it again.
    w.vms.get(h).unwrap().vcpus[1].power = Off;
    assert_eq!(other_entry(&mut w, 1), Err(PermissionDenied), "after its CPU_OFF");
    assert_eq!(vcpu_state(&mut w, h, 1).0, Off);
    assert_eq!(w.vms.get(h).unwrap().psci_cpu_on(vcpu_mpidr(1), 0x8000_3000, 6), Ok(1));
    assert_eq!(vcpu_state(&mut w, h, 1), (OnPending, 0x8000_3000, 6));
    // vCPU 0 off by its guest's CPU_OFF: the host cannot start it again either.
    w.vms.get(h).unwrap().vcpus[0].power = Off;
    assert_eq!(other_entry(&mut w, 0), Err(PermissionDenied), "vCPU 0 after its CPU_OFF");
    assert_eq!(vcpu_state(&mut w, h, 0), (Off, 0x8000_0040, 7));
    // The secondary its guest never started stays off.
    assert_eq!(other_entry(&mut w, 2), Err(PermissionDenied));
    assert_eq!(vcpu_state(&mut w, h, 2), (Off, 0, 0));
    // No register read or write, at any stage, by any number the ABI has
    // (but the VM's virtual count: below).
    for vcpu in 0..3 {
        for reg in (0..=40).chain(64..=127) {
            assert_eq!(w.vms.set_reg(h, VcpuIndex::new(vcpu), reg, 0x6666_0000, 0), Err(PermissionDenied));
            assert_eq!(w.vms.get_reg(h, VcpuIndex::new(vcpu), reg, 0), Err(PermissionDenied));
        }
    }
    // Crashed, then torn down: no VM to initialise.
    w.vms.get(h).unwrap().state = VmState::Crashed;
    assert_eq!(w.vms.vcpu_init(h, VcpuIndex::new(0), 0x6666_0000, 66), Err(NoSuchVm), "crashed");
    w.teardown(h).unwrap();
    assert_eq!(w.vms.vcpu_init(h, VcpuIndex::new(0), 0x6666_0000, 66), Err(NoSuchVm), "torn down");
    assert_eq!(w.vms.vcpu_init(h, VcpuIndex::new(2), 0x6666_0000, 66), Err(NoSuchVm), "torn down");
    w.reclaim(h, 0x8000_0000, 4).unwrap();
    assert_eq!(w.vms.vcpu_init(h, VcpuIndex::new(0), 0x6666_0000, 66), Err(NoSuchVm), "gone");
    w.assert_clean();
}

/// A non-protected VM's vCPUs are the host's to start (and restart) at any time,
/// except while they run.
#[test]
fn non_protected_vcpus_are_started_by_the_host_whenever_they_do_not_run() {
    let mut w = World::new();
    let h = w.create(0, 2).unwrap();
    w.vms.vcpu_init(h, VcpuIndex::new(1), 0x8000_1000, 1).unwrap();
    w.vms.vcpu_init(h, VcpuIndex::new(0), 0x8000_0000, 2).unwrap();
    w.vms.vcpu_init(h, VcpuIndex::new(0), 0x8000_0100, 3).unwrap();
    assert_eq!(vcpu_state(&mut w, h, 0), (VcpuPower::OnPending, 0x8000_0100, 3));
    set_running(&mut w, h, 0, true);
    assert_eq!(w.vms.vcpu_init(h, VcpuIndex::new(0), 0x8000_0200, 4), Err(HypError::Busy));
    set_running(&mut w, h, 0, false);
    w.vms.vcpu_init(h, VcpuIndex::new(0), 0x8000_0200, 4).unwrap();
    assert_eq!(vcpu_state(&mut w, h, 0), (VcpuPower::OnPending, 0x8000_0200, 4));
    w.vms.set_reg(h, VcpuIndex::new(1), 31, 0x8000_1100, 0).unwrap();
    assert_eq!(vcpu_state(&mut w, h, 1), (VcpuPower::OnPending, 0x8000_1100, 1));
    w.teardown(h).unwrap();
    assert_eq!(w.vms.vcpu_init(h, VcpuIndex::new(0), 0x8000_0000, 0), Err(HypError::NoSuchVm));
}

/// A VM's view for `guest_trap::handle`: its IPAs as the table says.
struct TableView<'a> {
    vms: std::cell::RefCell<&'a mut VmTable>,
    handle: VmHandle,
}

impl crate::vm::guest_trap::VmView for TableView<'_> {
    fn ipa_kind(&self, ipa: u64) -> (crate::vm::guest_trap::IpaKind, u64) {
        self.vms.borrow_mut().ipa_kind(self.handle, Ipa::new(ipa))
    }
    fn mappings_generation(&self) -> u64 {
        crate::vm::table::guest_mappings_generation()
    }
    fn cpu_on(&self, _: u64, _: u64, _: u64) -> Result<u64, i64> {
        Err(-2)
    }
    fn affinity_info(&self, _: u64) -> i64 {
        -2
    }
    fn send_sgi(&self, _: u64, _: u32) -> u64 {
        0
    }
    fn vcpu_index(&self) -> usize {
        0
    }
    fn id_register(&self, _: crate::arch::sysreg::SysReg) -> u64 {
        0
    }
    fn cpacr(&self) -> u64 {
        0
    }
    fn sctlr(&self) -> u64 {
        crate::arch::context::SCTLR_EL1_RESET
    }
    fn vbar(&self) -> u64 {
        0
    }
    fn set_cpacr(&self, _: u64) {}
    fn gicv3(&self) -> bool {
        true
    }
    fn mmio_guard(&self, _: GuardCall) -> u64 {
        NOT_SUPPORTED
    }
    fn guest_memory(&self, _: crate::vm::exit::MemoryCall) -> u64 {
        NOT_SUPPORTED
    }
}

/// Whether the protected VM behind `handle` touching `ipa` (a load, a store,
/// an instruction fetch: stage-2 translation faults) ends with the fatal exit
/// that shows nothing, never an exit the host could serve.
fn touching_is_fatal(vms: &mut VmTable, handle: VmHandle, ipa: u64) -> bool {
    use crate::arch::esr::Esr;
    use crate::arch::trap_record::GuestTrap;
    use crate::vm::guest_trap::{handle as serve, Outcome};
    const LOAD: u64 = 0x24 << 26 | 1 << 25 | 1 << 24 | 3 << 22 | 0x7;
    const STORE: u64 = LOAD | 1 << 6;
    const FETCH: u64 = 0x20 << 26 | 1 << 25 | 0x7;
    let view = TableView { vms: std::cell::RefCell::new(vms), handle };
    [LOAD, STORE, FETCH].into_iter().all(|esr| {
        let mut ctx = VcpuContext::at_entry(0x8000_0000, 0);
        let trap = GuestTrap { kind: 0, esr: Esr(esr), far: ipa, ipa };
        serve(&mut ctx, trap, true, &view)
            == Outcome::ToHost { exit: hyp_abi::Exit::Fatal { esr: 0, address: 0 }, pending_read: None }
    })
}

/// A bank of this process's memory to donate as the memcache, freed on drop.
struct Bank {
    range: PhysRange,
    layout: std::alloc::Layout,
}

impl Bank {
    fn new(pages: usize) -> Bank {
        let layout = std::alloc::Layout::from_size_align(pages * 4096, 4096).unwrap();
        // SAFETY: Non-zero size; freed on drop.
        let base = unsafe { std::alloc::alloc_zeroed(layout) } as u64;
        Bank { range: PhysRange { start: base, end: base + (pages * 4096) as u64 }, layout }
    }

    fn pages(&self) -> u64 {
        self.range.size() / 4096
    }
}

impl Drop for Bank {
    fn drop(&mut self) {
        // SAFETY: Allocated in `new` with this layout; the tests drop a bank
        // only after the hyp gave every page of it back (or when failing).
        unsafe { std::alloc::dealloc(self.range.start as *mut u8, self.layout) };
    }
}

/// A world whose guest tables and vCPU contexts come from `bank`, donated.
fn world_with_memcache(bank: &Bank) -> World {
    let mut w = World::with_real_bank(Some(bank.range));
    w.memory.use_memcache_for_guest_tables();
    let (start, pages) = (bank.range.start, bank.pages());
    w.memory_call(|m, env| m.host_donate_hyp(PhysAddr::new(start), PageCount::new(pages), env)).unwrap();
    w
}

/// Forgets the fakes' records of TLB maintenance (kept allocated: flat).
fn forget_tlb_records(w: &mut World) {
    for tlb in [&mut w.s2, &mut w.el2, &mut w.guest_tlb] {
        tlb.leaves.clear();
    }
}

/// 100,000 cycles of map + forced reclaim against one live protected VM, each
/// at a new IPA: the hyp's own memory (its page source and every allocation on
/// the heap, which is the hyp's pool on the target) stays exactly flat; what
/// grows is the VM's stage-2, whose tables come from the pages the host donated
/// (one leaf table per 2 MiB of poisoned IPAs). Every poisoned page then faults
/// (fatal exit, nothing shown, never MMIO) and can never be mapped again.
#[test]
fn forced_reclaims_poison_the_stage2_and_take_no_hyp_memory() {
    const CYCLES: u64 = 100_000;
    const WARM_UP: u64 = 1_000;
    const BASE: u64 = 0x8000_0000;
    const PA: u64 = 0x4010_0000;
    let bank = Bank::new(512);
    let mut w = world_with_memcache(&bank);
    let h = w.create(1, 1).unwrap();
    w.vms.vcpu_init(h, VcpuIndex::new(0), BASE, 0).unwrap();
    let mut flat = None;
    for i in 0..CYCLES {
        let ipa = BASE + i * 4096;
        w.map(h, PA, ipa, 1).unwrap();
        w.reclaim(h, ipa, 1).unwrap();
        forget_tlb_records(&mut w);
        if i + 1 >= WARM_UP && (i + 1) % 10_000 == 0 || i + 1 == WARM_UP {
            let now = (crate::testing::live_heap_bytes(), w.source.outstanding.len());
            assert_eq!(*flat.get_or_insert(now), now, "after {} cycles: hyp memory (heap bytes, pages) grew", i + 1);
        }
    }
    let (_, used) = w.memory.memcache_pages();
    assert!(used <= 4 + CYCLES.div_ceil(512), "the VM's tables and context: {used} donated pages");
    assert_eq!(w.vms.info(h), Ok([1, 1, 0]));
    assert!(w.host_maps(PA) && w.zeroes.0.contains(&PA));
    w.assert_clean();
    for i in 0..CYCLES {
        let ipa = BASE + i * 4096;
        assert_eq!(w.vms.ipa_kind(h, Ipa::new(ipa + 8)).0, crate::vm::guest_trap::IpaKind::Lost, "{ipa:#x}");
        assert!(touching_is_fatal(&mut w.vms, h, ipa + 0x10), "{ipa:#x}");
    }
    assert!(!touching_is_fatal(&mut w.vms, h, BASE + CYCLES * 4096), "past the poisoned pages: not fatal");
    for ipa in [BASE, BASE + 4096 * (CYCLES / 2), BASE + 4096 * (CYCLES - 1)] {
        assert_eq!(w.map(h, PA, ipa, 1), Err(HypError::InvalidArgument), "a poisoned IPA is never given again");
    }
    w.assert_clean();
    // The VM goes with its teardown (it holds no page), its tables back to the memcache.
    w.teardown(h).unwrap();
    assert_gone_and_memcache_returned(&mut w, h, &bank);
}

/// The VM `h` is gone with its tables: the memcache holds all of `bank`
/// again, which the host then takes back, leaving a clean state.
fn assert_gone_and_memcache_returned(w: &mut World, h: VmHandle, bank: &Bank) {
    assert_eq!(w.vms.get(h).err(), Some(HypError::NoSuchVm));
    assert_eq!(w.memory.memcache_pages(), (bank.pages(), 0));
    let (start, pages) = (bank.range.start, bank.pages());
    w.memory_call(|m, env| m.host_reclaim_hyp(PhysAddr::new(start), PageCount::new(pages), env)).unwrap();
    w.assert_clean();
}

/// Poisoning takes no memory: with the memcache used up, maps that need a table
/// fail with `NoMemory` and change nothing, a forced reclaim that would split a
/// block fails the same way, and a forced reclaim of a page still poisons it.
#[test]
fn with_the_memcache_used_up_maps_fail_cleanly_and_forced_reclaims_still_poison() {
    use crate::vm::guest_trap::IpaKind;
    const M2: u64 = 2 << 20;
    let bank = Bank::new(8);
    let mut w = world_with_memcache(&bank);
    let h = w.create(1, 1).unwrap();
    // A 2 MiB block (one level-2 entry), a page, then pages in other 2 MiB
    // windows until no table can be had.
    w.map(h, 0x4020_0000, 0x8020_0000, 512).unwrap();
    w.map(h, 0x4011_0000, 0x8000_1000, 1).unwrap();
    let mut windows = 0;
    for k in 2..64 {
        match w.map(h, 0x4010_0000, 0x8000_0000 + k * M2, 1) {
            Ok(()) => {
                w.reclaim(h, 0x8000_0000 + k * M2, 1).unwrap();
                windows += 1;
            }
            Err(error) => {
                assert_eq!(error, HypError::NoMemory);
                assert_eq!(w.vms.ipa_kind(h, Ipa::new(0x8000_0000 + k * M2)).0, IpaKind::Other, "nothing there");
                break;
            }
        }
    }
    assert!(windows >= 1 && w.memory.memcache_pages().0 == 0, "{windows} windows, memcache used up");
    w.assert_clean();
    // Splitting the block needs a table: refused, nothing changed.
    assert_eq!(w.reclaim(h, 0x8020_1000, 1), Err(HypError::NoMemory));
    assert_eq!(w.vms.ipa_kind(h, Ipa::new(0x8020_1000)).0, IpaKind::Memory);
    assert_eq!(w.vms.info(h), Ok([1, 1, 513]));
    // A page of its own: forced back and poisoned without memory.
    w.reclaim(h, 0x8000_1000, 1).unwrap();
    assert_eq!(w.vms.ipa_kind(h, Ipa::new(0x8000_1000)).0, IpaKind::Lost);
    assert!(touching_is_fatal(&mut w.vms, h, 0x8000_1000));
    w.assert_clean();
    // The whole block goes back at once after teardown (no split), and the VM with it.
    w.teardown(h).unwrap();
    w.reclaim(h, 0x8020_0000, 512).unwrap();
    assert_gone_and_memcache_returned(&mut w, h, &bank);
}

/// A non-protected VM's teardown returns its pages in runs found in its
/// stage-2 (contiguous in both spaces, at most one call's pages each), keeping
/// no list of them in the hyp.
#[test]
fn non_protected_teardown_returns_runs_longer_than_a_call_and_scattered_pages() {
    let mut w = World::new();
    let h = w.create(0, 1).unwrap();
    // 612 pages contiguous in both spaces (two calls), and 3 scattered pages.
    w.map(h, 0x4020_0000, 0x8020_0000, 512).unwrap();
    w.map(h, 0x4040_0000, 0x8040_0000, 100).unwrap();
    for (k, (pa, ipa)) in
        [(0x4010_0000, 0x9000_0000), (0x4010_2000, 0x9000_1000), (0x4011_0000, 0x1000)].iter().enumerate()
    {
        w.map(h, *pa, *ipa, 1).unwrap_or_else(|e| panic!("scattered page {k}: {e:?}"));
    }
    assert_eq!(w.vms.info(h), Ok([0, 1, 615]));
    let before = crate::testing::live_heap_bytes();
    w.teardown(h).unwrap();
    assert_eq!(w.vms.get(h).err(), Some(HypError::NoSuchVm));
    assert!(crate::testing::live_heap_bytes() <= before, "teardown kept nothing on the heap");
    let borrowed = (0x4000_0000..0x4400_0000u64)
        .step_by(4096)
        .filter(|&pa| w.memory.pages.get(pa).is_some_and(|r| r.borrower.is_some()))
        .count();
    assert_eq!(borrowed, 0, "every page back with the host alone");
    w.assert_clean();
}

/// Issue 19 item 5: before the host's PSCI SYSTEM_RESET or SYSTEM_OFF is
/// passed on, every page a protected VM owns (also one torn down and waiting
/// for reclaim) and its vCPU contexts are zeroed; nothing of the host's, of a
/// non-protected VM's or of the hyp's is touched; the protected VMs never run
/// again; the hyp's stage-1 maps nothing more than before; the records and
/// tables stay consistent. While a protected vCPU runs, nothing is zeroed.
#[test]
fn power_off_scrubs_every_page_and_register_of_protected_vms_only() {
    let mut w = World::new();
    let live = w.create(1, 2).unwrap();
    let gone = w.create(1, 1).unwrap();
    let other = w.create(0, 1).unwrap();
    // 3 pages, then one run of 600 pages (two calls) across two 2 MiB
    // boundaries, then one.
    w.map(live, 0x4010_0000, 0x8000_0000, 3).unwrap();
    w.map(live, 0x405f_0000, 0x9000_0000, 512).unwrap();
    w.map(live, 0x407f_0000, 0x9020_0000, 88).unwrap();
    w.map(gone, 0x4030_0000, 0x8000_0000, 1).unwrap();
    w.map(other, 0x4040_0000, 0x8000_0000, 4).unwrap();
    w.vms.vcpu_init(live, VcpuIndex::new(0), 0x8000_0000, 0x5ec7e7).unwrap();
    w.vms.vcpu_init(other, VcpuIndex::new(0), 0x8000_0000, 0x0bed).unwrap();
    w.vms.get(live).unwrap().vcpus[0].ctx.gprs.x[5] = 0x5ec7e7;
    w.vms.get(live).unwrap().vcpus[0].ctx.tpidr2 = 0x5ec7e7;
    w.teardown(gone).unwrap();
    let stage1_tables = w.memory.hyp_stage1.table_pages();
    let context = |w: &mut World, h: VmHandle, vcpu: usize| w.vms.get(h).unwrap().vcpus[vcpu].ctx.page();
    let contexts = [context(&mut w, live, 0), context(&mut w, live, 1), context(&mut w, gone, 0)];
    let other_context = context(&mut w, other, 0);
    let scrub = |w: &mut World| {
        let mut env = Env { source: &mut w.source, stage2_tlb: &mut w.s2, el2_tlb: &mut w.el2, memory: &mut w.zeroes };
        w.vms.scrub_for_power_off(&mut w.memory, &mut env)
    };

    // A protected vCPU runs: it may not start again, but nothing is zeroed yet.
    set_running(&mut w, live, 1, true);
    assert_eq!(scrub(&mut w), Err(HypError::Busy));
    assert!(w.zeroes.0.is_empty(), "nothing zeroed while the guest runs: {:x?}", w.zeroes.0);
    assert_eq!(w.vms.get(live).unwrap().state, VmState::Crashed, "stopped for good");
    set_running(&mut w, live, 1, false);

    assert_eq!(scrub(&mut w), Ok(3 + 600 + 1));
    let guest_pages: Vec<u64> = (0..3)
        .map(|i| 0x4010_0000 + i * 4096)
        .chain((0..600).map(|i| 0x405f_0000 + i * 4096))
        .chain([0x4030_0000])
        .collect();
    let expected: HashSet<u64> = guest_pages.iter().copied().chain(contexts).collect();
    assert_eq!(w.zeroes.0, expected, "exactly the protected VMs' pages and their vCPU contexts");
    assert!(!w.zeroes.0.contains(&other_context) && !w.zeroes.0.contains(&0x4040_0000));
    let vcpu = &w.vms.get(live).unwrap().vcpus[0];
    assert_eq!((vcpu.ctx.gprs.x[0], vcpu.ctx.gprs.x[5], vcpu.ctx.tpidr2, vcpu.ctx.pc), (0, 0, 0, 0));
    assert_eq!(vcpu.power, VcpuPower::Off);
    assert_eq!(
        w.vms.get_reg(other, VcpuIndex::new(0), 0, 0),
        Ok(0x0bed),
        "a non-protected VM is the host's to see: untouched"
    );
    assert_eq!(w.vms.get(other).unwrap().state, VmState::Alive);
    // The hyp mapped each piece only while it zeroed it (keeping at most a
    // last-level table per 2 MiB window of the pages).
    let windows: std::collections::BTreeSet<u64> = guest_pages.iter().map(|&pa| pa >> 21).collect();
    assert!(w.memory.hyp_stage1.table_pages() <= stage1_tables + windows.len());
    for &pa in &guest_pages {
        assert!(w.memory.hyp_stage1.leaf_at(pa as usize).is_none(), "{pa:#x} still mapped for the hyp");
        assert!(!w.host_maps(pa), "{pa:#x}: still the protected VM's");
    }
    w.assert_clean();
    // The protected VMs can be torn down and reclaimed as before (should the
    // firmware return); the live one never runs again.
    assert_eq!(w.vms.vcpu_init(live, VcpuIndex::new(0), 0, 0), Err(HypError::NoSuchVm));
    w.teardown(live).unwrap();
    w.reclaim(live, 0x8000_0000, 3).unwrap();
    w.reclaim(live, 0x9000_0000, 512).unwrap();
    w.reclaim(live, 0x9020_0000, 88).unwrap();
    w.reclaim(gone, 0x8000_0000, 1).unwrap();
    assert_eq!(w.vms.count(), 1);
    w.assert_clean();
}

/// Every change of what an IPA is to a VM moves the count a vCPU's
/// remembered answer is checked against (`vm::guest_trap`): a map, a reclaim
/// (the page becomes lost), the MMIO guard's enrolment and changes, a
/// teardown. (Other tests run at once and move it too: only growth is
/// checked.)
#[test]
fn every_change_of_a_guests_mappings_is_counted() {
    use crate::vm::exit::GuardCall;
    use crate::vm::table::guest_mappings_generation as count;
    let mut w = World::new();
    let h = w.create(1, 1).unwrap();
    let before = count();
    w.map(h, 0x4010_0000, 0x8000_0000, 16).unwrap();
    let (kind, at) = w.vms.ipa_kind(h, Ipa::new(0x8000_f000));
    assert_eq!(kind, crate::vm::guest_trap::IpaKind::Memory);
    assert!(at > before, "a map");
    w.reclaim(h, 0x8000_f000, 1).unwrap();
    assert!(count() > at, "a reclaim from the live VM");
    let at = count();
    assert_eq!(w.vms.mmio_guard(h, GuardCall::Enroll), 0);
    assert!(count() > at, "the guard's enrolment");
    let at = count();
    assert_eq!(w.vms.mmio_guard(h, GuardCall::Map { ipa: 0x900_0000 }), 0);
    assert!(count() > at, "a guard map");
    let at = count();
    w.teardown(h).unwrap();
    w.reclaim(h, 0x8000_0000, 15).unwrap();
    assert!(count() > at, "a teardown and its reclaim");
}

/// What `VCPU_RUN` does under the lock when it claims vCPU `index` and
/// remembers it for its CPU (`vm::loaded`); then the run ends, and the CPU
/// releases the vCPU without the lock.
fn run_once_under_the_lock(w: &mut World, h: VmHandle, index: u64) -> crate::vm::loaded::Loaded<u64> {
    let (vm, touches) = w.vms.get_counted(h).unwrap();
    let v = &mut vm.vcpus[index as usize];
    assert!(v.ctx.claim(None));
    v.power = VcpuPower::On;
    let page = v.ctx.page_ref();
    let loaded = crate::vm::loaded::Loaded::new(
        h,
        VcpuIndex::new(index),
        crate::vm::loaded::Counted::now(touches),
        page,
        0x5eed + index,
    );
    page.release_handle().release(None);
    loaded
}

#[test]
fn a_cpu_claims_the_vcpu_it_ran_last_without_the_lock_until_anything_touches_the_vm() {
    use crate::vm::loaded::claim;
    let mut w = World::new();
    let h = w.create(0, 2).unwrap();
    w.vms.vcpu_init(h, VcpuIndex::new(0), 0x8000_0000, 0).unwrap();
    let loaded = run_once_under_the_lock(&mut w, h, 0);
    // This CPU claims it again, as often as it likes, with what the claim
    // under the lock found; while it holds it, neither kind of claim gets it.
    for _ in 0..3 {
        let (page, payload) = claim(0, Some(&loaded), h, VcpuIndex::new(0), None).unwrap();
        assert_eq!(payload, 0x5eed);
        assert!(claim(0, Some(&loaded), h, VcpuIndex::new(0), None).is_none());
        page.release_handle().release(None);
    }
    let (page, _) = claim(0, Some(&loaded), h, VcpuIndex::new(0), None).unwrap();
    assert!(!w.vms.get(h).unwrap().vcpus[0].ctx.claim(None), "a claim under the lock while it runs");
    page.release_handle().release(None);
    assert!(claim(0, Some(&loaded), h, VcpuIndex::new(0), None).is_none(), "the access above counted");
    // Another vCPU, another generation's handle, no record: not this one.
    let loaded = run_once_under_the_lock(&mut w, h, 0);
    assert!(claim(0, Some(&loaded), h, VcpuIndex::new(1), None).is_none());
    assert!(claim(0, Some(&loaded), VmHandle::new(h.raw() + (1 << 32)), VcpuIndex::new(0), None).is_none());
    assert!(claim(0, None::<&crate::vm::loaded::Loaded<u64>>, h, VcpuIndex::new(0), None).is_none());
    assert!(claim(0, Some(&loaded), h, VcpuIndex::new(0), None).is_some_and(|(page, _)| {
        page.release_handle().release(None);
        true
    }));
    // Every kind of access under the lock ends it: an injected interrupt, a
    // register read, teardown.
    let touches: [&dyn Fn(&mut World); 3] = [
        &|w| {
            w.vms.inject_irq(h, VcpuIndex::new(0), 1).unwrap();
        },
        &|w| {
            w.vms.get_reg(h, VcpuIndex::new(0), 0, 0).unwrap();
        },
        &|w| w.teardown(h).unwrap(),
    ];
    for touch in touches {
        let loaded = run_once_under_the_lock(&mut w, h, 0);
        touch(&mut w);
        assert!(claim(0, Some(&loaded), h, VcpuIndex::new(0), None).is_none());
    }
    // The power-off scrub walks every protected VM (without `get`): it counts too.
    let p = w.create(1, 1).unwrap();
    w.vms.vcpu_init(p, VcpuIndex::new(0), 0x8000_0000, 0).unwrap();
    let loaded = run_once_under_the_lock(&mut w, p, 0);
    let World { vms, memory, source, s2, el2, zeroes, .. } = &mut w;
    let mut env = Env { source, stage2_tlb: s2, el2_tlb: el2, memory: zeroes };
    vms.scrub_for_power_off(memory, &mut env).unwrap();
    assert!(claim(0, Some(&loaded), p, VcpuIndex::new(0), None).is_none());
}

#[test]
fn claims_with_and_without_the_lock_never_both_win() {
    use std::sync::atomic::{AtomicBool, AtomicUsize};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};
    /// A CPU's record: raw pointers into the table, which outlives both threads.
    struct Record(crate::vm::loaded::Loaded<u64>);
    // SAFETY: The table the record points into lives until both threads joined.
    unsafe impl Send for Record {}
    const WINS: usize = 2_000;
    let mut w = World::new();
    let h = w.create(0, 1).unwrap();
    w.vms.vcpu_init(h, VcpuIndex::new(0), 0x8000_0000, 0).unwrap();
    let record = Record(run_once_under_the_lock(&mut w, h, 0));
    let world = Arc::new(Mutex::new(w));
    let inside = Arc::new(AtomicBool::new(false));
    let (fast_wins, locked_wins) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let deadline = Instant::now() + Duration::from_secs(60);
    let done = {
        let (fast_wins, locked_wins) = (fast_wins.clone(), locked_wins.clone());
        move || {
            assert!(Instant::now() < deadline, "no progress");
            fast_wins.load(Ordering::Relaxed) >= WINS && locked_wins.load(Ordering::Relaxed) >= WINS
        }
    };
    fn hold(inside: &AtomicBool) {
        assert!(!inside.swap(true, Ordering::SeqCst), "two CPUs hold the vCPU at once");
        for _ in 0..50 {
            std::hint::spin_loop();
        }
        inside.store(false, Ordering::SeqCst);
    }
    let fast = {
        let (world, inside, wins, done) = (world.clone(), inside.clone(), fast_wins.clone(), done.clone());
        std::thread::spawn(move || {
            let mut record = record;
            while !done() {
                match crate::vm::loaded::claim(1, Some(&record.0), h, VcpuIndex::new(0), None) {
                    Some((page, _)) => {
                        hold(&inside);
                        wins.fetch_add(1, Ordering::Relaxed);
                        page.release_handle().release(None);
                    }
                    None => {
                        // Its claim under the lock, which remembers afresh.
                        let mut w = world.lock().unwrap();
                        let (vm, touches) = w.vms.get_counted(h).unwrap();
                        let v = &mut vm.vcpus[0];
                        if v.ctx.claim(None) {
                            let page = v.ctx.page_ref();
                            let counted = crate::vm::loaded::Counted::now(touches);
                            record = Record(crate::vm::loaded::Loaded::new(h, VcpuIndex::new(0), counted, page, 0));
                            drop(w);
                            hold(&inside);
                            page.release_handle().release(None);
                        }
                    }
                }
            }
        })
    };
    while !done() {
        {
            let mut w = world.lock().unwrap();
            let v = &mut w.vms.get(h).unwrap().vcpus[0];
            if v.ctx.claim(None) {
                let page = v.ctx.page_ref();
                drop(w);
                hold(&inside);
                locked_wins.fetch_add(1, Ordering::Relaxed);
                page.release_handle().release(None);
            }
        }
        for _ in 0..200 {
            std::hint::spin_loop();
        }
    }
    fast.join().unwrap();
}

/// A freed VM's vCPU contexts go back to the memcache (host RAM the hyp
/// holds) zeroed: a host that never reclaims them and resets would otherwise
/// read a protected guest's last registers there.
#[test]
fn a_freed_vms_vcpu_contexts_are_zeroed_before_their_pages_are_reused() {
    let mut w = World::new();
    let vm = w.create(1, 2).unwrap();
    w.map(vm, 0x4010_0000, 0x8000_0000, 1).unwrap();
    w.vms.vcpu_init(vm, VcpuIndex::new(0), 0x8000_0000, 0x5ec7e7).unwrap();
    w.vms.get(vm).unwrap().vcpus[0].ctx.gprs.x[7] = 0x5ec7e7;
    let contexts: Vec<u64> = (0..2).map(|i| w.vms.get(vm).unwrap().vcpus[i].ctx.page()).collect();
    w.teardown(vm).unwrap();
    assert!(contexts.iter().all(|c| !w.zeroes.0.contains(c)), "not before the VM is freed");
    w.reclaim(vm, 0x8000_0000, 1).unwrap();
    assert!(w.vms.get(vm).is_err(), "the last reclaim freed the VM");
    for &page in &contexts {
        assert!(w.zeroes.0.contains(&page), "context {page:#x} freed without a scrub");
    }
    w.assert_clean();
}

/// A live VM's memory inside its GIC windows cannot be taken back (there a
/// poisoned IPA would be the emulated GIC's, whose registers the host sets,
/// rather than a fatal exit), and the windows cannot be moved over poisoned
/// IPAs; nothing changes on either refusal.
#[test]
fn memory_in_a_gic_window_is_not_taken_from_a_live_vm() {
    let distributor = hyp_abi::GUEST_GIC_DISTRIBUTOR;
    let mut w = World::new();
    let vm = w.create(1, 1).unwrap();
    w.map(vm, 0x4010_0000, distributor + 0x1000, 1).unwrap();
    w.map(vm, 0x4020_0000, 0x8000_0000, 1).unwrap();
    assert_eq!(w.reclaim(vm, distributor + 0x1000, 1), Err(HypError::Busy));
    assert!(!w.host_maps(0x4010_0000), "still the VM's");
    assert_eq!(w.vms.ipa_kind(vm, Ipa::new(distributor + 0x1000)).0, crate::vm::guest_trap::IpaKind::Memory);
    // Outside the windows a forced reclaim poisons the IPA; the windows may
    // not move there.
    w.reclaim(vm, 0x8000_0000, 1).unwrap();
    assert_eq!(w.vms.ipa_kind(vm, Ipa::new(0x8000_0000)).0, crate::vm::guest_trap::IpaKind::Lost);
    let before = w.vms.get(vm).unwrap().gic_layout;
    assert_eq!(w.vms.set_gic_layout(vm, 0x8000_0000, 0x8010_0000), Err(HypError::InvalidArgument));
    assert_eq!(
        w.vms.set_gic_layout(vm, 0x7ff0_0000, 0x8000_0000),
        Err(HypError::InvalidArgument),
        "the redistributors over it"
    );
    assert_eq!(w.vms.get(vm).unwrap().gic_layout, before);
    assert!(w.vms.set_gic_layout(vm, 0x9000_0000, 0x9010_0000).is_ok(), "elsewhere");
    // Torn down, the VM gives everything back.
    w.teardown(vm).unwrap();
    w.reclaim(vm, distributor + 0x1000, 1).unwrap();
    assert!(w.host_maps(0x4010_0000));
    w.assert_clean();
}
