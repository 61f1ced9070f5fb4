//! The VM table: per-VM state behind handles that carry a generation, so that a
//! stale or forged handle finds no VM (never another one). A VM's id (its slot
//! number + 1) names it in the page records and is its VMID; VMID 0 is the host's.

use crate::addr::{GuestPages, Ipa, PageCount, PhysAddr};
use crate::arch::context::VcpuContext;
use crate::arch::tlb::TlbMaintenance;
use crate::mm::memory::{Env, Guest, GuestIpas, MemoryState, GUEST_POISONED, HYP_DATA};
use crate::mm::ownership::{Owner, VmId};
use crate::mm::pgtable::{Entry, PgTable};
use crate::vm::exit::{GuardCall, MemoryCall, MmioAccess, INVALID_PARAMETER, NOT_SUPPORTED};
use crate::vm::handle::{VcpuIndex, VmHandle};
use crate::vm::mmio_guard::{GuardError, MmioGuard};
use crate::vm::vgic_dist::{Distributor, GicVersion, Routed};
use crate::vm::vgic_mmio::GicLayout;
use aarch64_paging::paging::Stage2;
use alloc::vec::Vec;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU64, Ordering};
use hyp_abi::{HypError, VcpuReg, VmType, MAX_VCPUS_PER_VM};

/// Counts changes to the guests' mappings: bumped under the VM table's lock
/// *before* any guest's stage-2 or MMIO guard changes. What an IPA is to a VM
/// (`VmTable::ipa_kind`), read under the lock at count G, still holds while
/// the count reads G: the trap path then answers a repeated abort on the
/// same page without the lock (`vm::guest_trap`). A change that removes a
/// mapping completes its stores before its TLB invalidation, so a vCPU that
/// faults because of it sees the new count.
static GUEST_MAPPINGS_GENERATION: AtomicU64 = AtomicU64::new(0);

/// The count of guest mapping changes so far ([`GUEST_MAPPINGS_GENERATION`]).
pub fn guest_mappings_generation() -> u64 {
    GUEST_MAPPINGS_GENERATION.load(Ordering::Acquire)
}

/// A guest's side of a transition that may change its stage-2: counted first.
fn changing_guest<'a>(id: VmId, stage2: &'a mut PgTable<Stage2>, tlb: &'a mut dyn TlbMaintenance) -> Guest<'a> {
    GUEST_MAPPINGS_GENERATION.fetch_add(1, Ordering::SeqCst);
    Guest { id, stage2, tlb }
}

/// Most VMs alive at once.
pub const MAX_VMS: usize = 64;

/// A vCPU context in a page of its own: from the host-donated memcache in the
/// hyp, so that a VM's state grows the host's donation, not the hyp's pool. The
/// page never moves, which the world switch relies on.
pub struct ContextPage {
    context: NonNull<VcpuContext>,
}

const _: () = assert!(core::mem::size_of::<VcpuContext>() <= 4096);

// SAFETY: The page belongs to this value alone (see `ContextPage::new`); moving
// the value between CPUs moves that ownership with it.
unsafe impl Send for ContextPage {}

impl ContextPage {
    /// Puts a fresh context at the start of `page`.
    ///
    /// # Safety
    ///
    /// `page` must be a whole 4 KiB, 4 KiB-aligned page, mapped read-write, that
    /// nothing else uses until [`ContextPage::into_page`].
    unsafe fn new(page: usize) -> ContextPage {
        let context = page as *mut VcpuContext;
        // SAFETY: The caller hands over the page; alignment 4096 suits the context.
        unsafe { context.write(VcpuContext::default()) };
        // SAFETY: As above: the record's place is in the page, after the
        // context, and 64-byte aligned.
        unsafe { ((page + RUN_RECORD_OFFSET) as *mut RunRecord).write(RunRecord::default()) };
        // SAFETY: Pages are never at address 0.
        ContextPage { context: unsafe { NonNull::new_unchecked(context) } }
    }

    /// The page, to give back.
    fn into_page(self) -> usize {
        self.context.as_ptr() as usize
    }

    /// The page's address.
    fn page(&self) -> u64 {
        self.context.as_ptr() as u64
    }

    fn record(&self) -> *mut RunRecord {
        self.page_ref().record()
    }

    fn state(&self) -> &AtomicU64 {
        // SAFETY: `new` initialised the record, which lives as long as the
        // page; no reference to the whole record is ever made, and its state
        // is only ever accessed atomically.
        unsafe { &*core::ptr::addr_of!((*self.record()).state) }
    }

    /// Whether some CPU runs the vCPU now. (Sequentially consistent: read
    /// after the VM's access count was bumped, it sees a claim that CPU's
    /// check of the count missed: `vm::loaded`.)
    pub fn running(&self) -> bool {
        self.state().load(Ordering::SeqCst) & RUN_STATE_RUNNING != 0
    }

    /// While it runs with a kick (`hyp_abi::RunFlags::kick_sgi`): the MPIDR
    /// of its CPU and the SGI.
    pub fn kick_target(&self) -> Option<(u64, u8)> {
        // Sequentially consistent, as `running`: read after an access
        // counted, it sees a claim without the lock that missed the count.
        let state = self.state().load(Ordering::SeqCst);
        let kicked = RUN_STATE_RUNNING | RUN_STATE_KICK;
        (state & kicked == kicked).then_some((state >> 16, (state >> 8) as u8))
    }

    /// Claims the vCPU for this CPU, with its kick, under the VM table's lock;
    /// false if another CPU claimed it first (a CPU that ran it last claims
    /// it again without the lock: `vm::loaded`).
    pub fn claim(&mut self, kick: Option<(u64, u8)>) -> bool {
        self.page_ref().try_claim(kick)
    }

    /// The page, for the CPU that keeps the vCPU loaded between runs
    /// (`vm::loaded`).
    pub fn page_ref(&self) -> PageRef {
        PageRef { context: self.context }
    }

    /// The MMIO load the vCPU waits for, taken (under the lock, while it
    /// does not run).
    pub fn take_pending_read(&mut self) -> Option<MmioAccess> {
        // SAFETY: `&mut self`, and the vCPU does not run: nothing else
        // touches the record's load.
        unsafe { self.page_ref().take_pending_read() }
    }

    /// Forgets the MMIO load the vCPU waits for (a reset; it does not run).
    fn forget_pending_read(&mut self) {
        let _ = self.take_pending_read();
    }
}

/// A vCPU's page as a CPU that ran the vCPU keeps it between runs
/// (`vm::loaded`): valid while the VM's access count is the one it was taken
/// at, or while that CPU's claim window is open (a teardown frees no page
/// before every window open at its count closed:
/// [`crate::vm::claim_window::wait_for_claims`]).
#[derive(Clone, Copy)]
pub struct PageRef {
    context: NonNull<VcpuContext>,
}

impl PageRef {
    /// The page's run record, after the context.
    fn record(&self) -> *mut RunRecord {
        (self.context.as_ptr() as usize + RUN_RECORD_OFFSET) as *mut RunRecord
    }

    fn state(&self) -> &AtomicU64 {
        // SAFETY: The page's record was initialised with it (`ContextPage::new`)
        // and lives as long as the page (see the type's validity); its state is
        // only ever accessed atomically.
        unsafe { &*core::ptr::addr_of!((*self.record()).state) }
    }

    /// Claims the vCPU for this CPU, with its kick: false if a CPU runs it.
    pub fn try_claim(&self, kick: Option<(u64, u8)>) -> bool {
        let kick =
            kick.map_or(0, |(mpidr, sgi)| RUN_STATE_KICK | u64::from(sgi) << 8 | (mpidr & MPIDR_AFFINITY_MASK) << 16);
        self.state().compare_exchange(0, RUN_STATE_RUNNING | kick, Ordering::SeqCst, Ordering::Relaxed).is_ok()
    }

    /// Gives back a claim this CPU made and used for nothing.
    pub fn unclaim(&self) {
        self.state().store(0, Ordering::Release);
    }

    /// The vCPU's context.
    ///
    /// # Safety
    ///
    /// This CPU claimed the vCPU ([`PageRef::try_claim`]) and the VM's access
    /// count has not moved since the page was taken: the page is the vCPU's
    /// and this CPU's alone until it releases it.
    pub unsafe fn context(&self) -> *mut VcpuContext {
        self.context.as_ptr()
    }

    /// The MMIO load the vCPU waits for, taken.
    ///
    /// # Safety
    ///
    /// As [`PageRef::context`].
    pub unsafe fn take_pending_read(&self) -> Option<MmioAccess> {
        // SAFETY: The caller owns the vCPU (see above): nothing else touches
        // the record's load.
        let pending_read = unsafe { &mut (*self.record()).pending_read };
        // (Most runs wait for no load: nothing to write back then.)
        if pending_read.is_some() {
            pending_read.take()
        } else {
            None
        }
    }

    /// The VM's GIC windows as the last claim under the lock copied them.
    ///
    /// # Safety
    ///
    /// As [`PageRef::context`]; the reference is not used after the release.
    pub unsafe fn gic_windows<'a>(&self) -> &'a GicWindows {
        // SAFETY: The caller owns the vCPU (see above): only it writes them.
        unsafe { &*core::ptr::addr_of!((*self.record()).gic) }
    }

    /// Copies the VM's GIC windows into the page (a claim under the lock).
    ///
    /// # Safety
    ///
    /// As [`PageRef::context`], and no reference from
    /// [`PageRef::gic_windows`] lives.
    pub unsafe fn set_gic_windows(&self, windows: GicWindows) {
        // SAFETY: As the caller vouches: this CPU owns the vCPU.
        unsafe { core::ptr::addr_of_mut!((*self.record()).gic).write(windows) };
    }

    /// What releases the vCPU ([`VcpuRelease::release`]).
    pub fn release_handle(&self) -> VcpuRelease {
        VcpuRelease { record: self.record() }
    }
}

/// The vCPU's run state: a CPU runs it.
const RUN_STATE_RUNNING: u64 = 1;
/// The vCPU's run state: kick it with SGI (bits 15:8) at MPIDR (bits 63:16).
const RUN_STATE_KICK: u64 = 1 << 1;

/// What a vCPU's page holds after its context: whether a CPU runs the vCPU
/// (and how to kick it there), and the MMIO load it waits for. Outside
/// [`VcpuContext`], so that no reference to the context covers it: the CPU
/// that runs the vCPU releases it without the VM table's lock, while other
/// CPUs read its state under the lock.
#[repr(C)]
#[derive(Default)]
struct RunRecord {
    state: AtomicU64,
    pending_read: Option<MmioAccess>,
    /// The VM's GIC windows, for the CPU that runs the vCPU.
    gic: GicWindows,
}

/// What a running vCPU's trap handlers need of its VM's GIC windows: where
/// they are and how many vCPUs the redistributors cover. Both are fixed once
/// a vCPU ran; each claim under the lock copies them into the vCPU's page, so
/// that a run (also one claimed without the lock) reads them there.
#[derive(Clone, Copy, Debug, Default)]
pub struct GicWindows {
    pub layout: GicLayout,
    pub vcpus: usize,
}

const RUN_RECORD_OFFSET: usize = (core::mem::size_of::<VcpuContext>() + 63) & !63;
const _: () = assert!(RUN_RECORD_OFFSET + core::mem::size_of::<RunRecord>() <= 4096);

/// Releases a vCPU its CPU claimed: taken at the claim, with or without the
/// VM table's lock ([`PageRef::release_handle`]), valid until used (the VM,
/// and the vCPU's page, cannot go away while the vCPU runs: teardown and
/// every reset refuse).
pub struct VcpuRelease {
    record: *mut RunRecord,
}

impl VcpuRelease {
    /// Records the MMIO load the vCPU now waits for, then releases it: the
    /// release is the last access of this CPU to the vCPU, and the next CPU
    /// to claim it sees everything written before (Release/Acquire).
    pub fn release(self, pending_read: Option<MmioAccess>) {
        // SAFETY: The vCPU is still claimed by this CPU, so nothing else
        // touches the record's load; the record lives in the vCPU's page,
        // which cannot be freed while the vCPU runs.
        unsafe {
            (*self.record).pending_read = pending_read;
            (*core::ptr::addr_of!((*self.record).state)).store(0, Ordering::Release);
        }
    }
}

impl core::ops::Deref for ContextPage {
    type Target = VcpuContext;

    fn deref(&self) -> &VcpuContext {
        // SAFETY: The page holds an initialised context owned by `self`.
        unsafe { self.context.as_ref() }
    }
}

impl core::ops::DerefMut for ContextPage {
    fn deref_mut(&mut self) -> &mut VcpuContext {
        // SAFETY: As above, and `&mut self` makes the access exclusive.
        unsafe { self.context.as_mut() }
    }
}

/// Whether a vCPU may run (its PSCI power state).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum VcpuPower {
    /// Never initialised, or it called PSCI CPU_OFF.
    Off,
    /// Started (by `VCPU_INIT` or a sibling's CPU_ON) but not run since.
    OnPending,
    /// Has run since it was started.
    On,
}

/// PSCI statuses of CPU_ON and AFFINITY_INFO.
mod psci_status {
    pub const ALREADY_ON: i64 = -4;
    pub const ON_PENDING: i64 = -5;
    pub const INVALID_ADDRESS: i64 = -9;
    pub const AFFINITY_ON: i64 = 0;
    pub const AFFINITY_OFF: i64 = 1;
    pub const AFFINITY_ON_PENDING: i64 = 2;
}

/// MPIDR affinity fields (Aff3 at 39:32, Aff2..Aff0 at 23:0).
const MPIDR_AFFINITY_MASK: u64 = 0xff_00ff_ffff;

/// The MPIDR_EL1 a guest reads on its vCPU `index`: Aff0 = index, bit 31 RES1.
pub fn vcpu_mpidr(index: usize) -> u64 {
    1 << 31 | index as u64
}

/// One vCPU.
pub struct Vcpu {
    pub ctx: ContextPage,
    pub power: VcpuPower,
    /// Ever started (by `VCPU_INIT` or a sibling's CPU_ON). A protected VM's
    /// vCPU takes its entry state from the host only before this.
    pub started: bool,
    /// Without a GIC: the virtual IRQ line as the host set it.
    pub irq_line: bool,
}

/// No TLB maintenance: for a stage-2 no walker has ever used.
struct NoTlb;

impl TlbMaintenance for NoTlb {
    fn invalidate_leaf(&mut self, _: usize, _: usize) {}
    fn invalidate_all(&mut self) {}
    fn sync(&mut self) {}
}

/// Lifecycle of a VM.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum VmState {
    Alive,
    /// Ended by a fatal guest fault: never runs again, can be torn down.
    Crashed,
    /// Torn down: only its memory remains, waiting for reclaim.
    TornDown,
}

/// One VM.
pub struct Vm {
    pub id: VmId,
    pub protected: bool,
    pub vcpus: Vec<Vcpu>,
    pub stage2: PgTable<Stage2>,
    /// Pages of memory the VM owns or borrows (mapped in its stage-2). Pages
    /// the host forced back while the VM was alive are not here: its stage-2
    /// keeps them as poisoned entries ([`GUEST_POISONED`]), and the VM's next
    /// touch of one ends it.
    pub pages_held: u64,
    /// CNTVOFF_EL2 of the VM: its virtual counter starts near 0 when created.
    pub cntvoff: u64,
    /// The VM's GIC distributor (and redistributors): its interrupts' state.
    pub gic: Distributor,
    /// Where its GIC windows are in its IPA space.
    pub gic_layout: GicLayout,
    /// Some vCPU of the VM has run (its GIC can no longer move).
    pub ran: bool,
    /// The MMIO the guest allows to reach the host, once it enrolled.
    pub mmio_guard: MmioGuard,
    pub state: VmState,
    /// Per physical CPU, the vCPU of this VM that ran there last
    /// ([`NO_VCPU`]: none since the VM was created). Guest TLB entries are tagged
    /// by VMID, not vCPU: when another vCPU of the VM comes to that CPU, it must
    /// not see what the last one cached there.
    pub last_vcpu_on_cpu: [u8; crate::platform::MAX_CPUS],
}

/// The x1 of `VCPU_INJECT_IRQ` and `VM_SET_SPI_LEVEL`: the vCPU an interrupt
/// goes to (`u64::MAX`: none yet); `InvalidArgument` for an INTID the VM lacks.
fn routed_answer(routed: Option<Routed>) -> Result<u64, HypError> {
    match routed {
        Some(Routed::Vcpu(target)) => Ok(target as u64),
        Some(Routed::Unrouted) => Ok(u64::MAX),
        None => Err(HypError::InvalidArgument),
    }
}

/// No vCPU ran on that CPU.
pub const NO_VCPU: u8 = u8::MAX;

impl Vm {
    /// The VMID in VTTBR_EL2.
    pub fn vmid(&self) -> u16 {
        self.id
    }

    fn vcpu(&mut self, index: VcpuIndex) -> Result<&mut Vcpu, HypError> {
        index.to_usize().and_then(|i| self.vcpus.get_mut(i)).ok_or(HypError::NoSuchVcpu)
    }

    /// The index of the vCPU whose MPIDR affinity is `target`.
    fn vcpu_by_mpidr(&self, target: u64) -> Option<usize> {
        (0..self.vcpus.len()).find(|&i| vcpu_mpidr(i) & MPIDR_AFFINITY_MASK == target & MPIDR_AFFINITY_MASK)
    }

    /// Records that `vcpu` runs on physical CPU `cpu`; true if another vCPU of
    /// this VM ran there last, so that the CPU's TLB entries for the VMID must go.
    pub fn switch_vcpu_on_cpu(&mut self, cpu: usize, vcpu: usize) -> bool {
        let Some(last) = self.last_vcpu_on_cpu.get_mut(cpu) else {
            return true;
        };
        let previous = core::mem::replace(last, vcpu as u8);
        previous != NO_VCPU && usize::from(previous) != vcpu
    }

    /// PSCI CPU_ON from one of this VM's vCPUs: see [`VmView::cpu_on`].
    ///
    /// [`VmView::cpu_on`]: crate::vm::guest_trap::VmView::cpu_on
    pub fn psci_cpu_on(&mut self, target: u64, entry: u64, context: u64) -> Result<u64, i64> {
        let index = self.vcpu_by_mpidr(target).ok_or(crate::vm::guest_trap::PSCI_INVALID_PARAMETERS)?;
        // PSCI (DEN0022) answers INVALID_ADDRESS for an entry point known to
        // be unavailable to the caller: unaligned, or not the VM's memory (its
        // stage-2 maps nothing else; MMIO is not memory to start a CPU in).
        if !entry.is_multiple_of(4) || self.stage2.leaf_at(entry as usize).is_none() {
            return Err(psci_status::INVALID_ADDRESS);
        }
        let vcpu = &mut self.vcpus[index];
        match vcpu.power {
            VcpuPower::On => return Err(psci_status::ALREADY_ON),
            VcpuPower::OnPending => return Err(psci_status::ON_PENDING),
            VcpuPower::Off => {}
        }
        // An off vCPU never runs, so nothing else has its context now.
        *vcpu.ctx = VcpuContext::at_entry(entry, context);
        vcpu.ctx.forget_pending_read();
        vcpu.power = VcpuPower::OnPending;
        vcpu.started = true;
        Ok(index as u64)
    }

    /// PSCI AFFINITY_INFO (level 0) about one of this VM's vCPUs.
    pub fn psci_affinity_info(&self, target: u64) -> i64 {
        match self.vcpu_by_mpidr(target).map(|i| self.vcpus[i].power) {
            None => crate::vm::guest_trap::PSCI_INVALID_PARAMETERS,
            Some(VcpuPower::On) => psci_status::AFFINITY_ON,
            Some(VcpuPower::OnPending) => psci_status::AFFINITY_ON_PENDING,
            Some(VcpuPower::Off) => psci_status::AFFINITY_OFF,
        }
    }
}

struct Slot {
    generation: u32,
    vm: Option<Vm>,
}

/// Per slot: accesses to the slot's VM under the VM table's lock
/// ([`VmTable::get`], and those that walk every VM): a CPU that ran one of
/// its vCPUs runs it again without the lock while the count holds
/// (`vm::loaded`). Written only under the lock, read by any CPU, and only
/// ever through shared references (never part of a `&mut` of the table).
type AccessCounts = [AtomicU64; MAX_VMS];

/// Counts an access to a slot's VM under the lock: sequentially consistent,
/// before the access reads whether a vCPU runs.
fn touch(count: &AtomicU64) {
    count.store(count.load(Ordering::Relaxed).wrapping_add(1), Ordering::SeqCst);
}

/// All VMs.
pub struct VmTable {
    slots: Vec<Slot>,
    /// The slots' access counts: allocated once and never freed (other CPUs
    /// read them without the lock, through records that outlive nothing).
    touches: &'static AccessCounts,
    /// IPA size of every guest stage-2 (VTCR_EL2 is shared by all of them).
    ipa_bits: u32,
}

impl VmTable {
    /// An empty table for guests with `ipa_bits`-bit IPAs.
    pub fn new(ipa_bits: u32) -> VmTable {
        VmTable {
            slots: (0..MAX_VMS).map(|_| Slot { generation: 1, vm: None }).collect(),
            // One table lives as long as the hyp; the unit tests' leak 512 bytes each.
            touches: alloc::boxed::Box::leak(alloc::boxed::Box::new([const { AtomicU64::new(0) }; MAX_VMS])),
            ipa_bits,
        }
    }

    /// The VM behind `handle`.
    ///
    /// # Errors
    ///
    /// `NoSuchVm` for a handle of no live slot or of an earlier generation.
    pub fn get(&mut self, handle: VmHandle) -> Result<&mut Vm, HypError> {
        self.get_counted(handle).map(|(vm, _)| vm)
    }

    /// As [`VmTable::get`], with the access count of the VM's slot (for
    /// `vm::loaded`; the counts are never freed).
    ///
    /// # Errors
    ///
    /// As [`VmTable::get`].
    pub fn get_counted(&mut self, handle: VmHandle) -> Result<(&mut Vm, &'static AtomicU64), HypError> {
        let index = handle.slot().ok_or(HypError::NoSuchVm)?;
        let slot = self.slots.get_mut(index).ok_or(HypError::NoSuchVm)?;
        if u64::from(slot.generation) != handle.generation() {
            return Err(HypError::NoSuchVm);
        }
        let touches = &self.touches[index];
        touch(touches);
        Ok((slot.vm.as_mut().ok_or(HypError::NoSuchVm)?, touches))
    }

    /// Creates a VM; returns its handle.
    ///
    /// # Errors
    ///
    /// `InvalidArgument` (type, vCPU count 0 or above the limit), `NoMemory` (no
    /// free slot, or no memory for its stage-2 or vCPUs).
    pub fn create(
        &mut self,
        ty: u64,
        vcpus: u64,
        gic_version: GicVersion,
        memory: &mut MemoryState,
        env: &mut Env<'_>,
    ) -> Result<VmHandle, HypError> {
        let ty = VmType::from_raw(ty).ok_or(HypError::InvalidArgument)?;
        if vcpus == 0 || vcpus > MAX_VCPUS_PER_VM {
            return Err(HypError::InvalidArgument);
        }
        let index = self.slots.iter().position(|s| s.vm.is_none()).ok_or(HypError::NoMemory)?;
        let mut list: Vec<Vcpu> = Vec::new();
        list.try_reserve_exact(vcpus as usize).map_err(|_| HypError::NoMemory)?;
        let stage2 = memory.new_guest_table(self.ipa_bits, env)?;
        for _ in 0..vcpus {
            let Some(page) = memory.alloc_guest_page(env) else {
                for vcpu in list {
                    memory.free_guest_page(vcpu.ctx.into_page(), env);
                }
                memory.destroy_guest_table(stage2, env, &mut NoTlb);
                return Err(HypError::NoMemory);
            };
            // SAFETY: The page is fresh from the guest source, mapped for the hyp,
            // and this vCPU's alone until the VM is freed.
            let ctx = unsafe { ContextPage::new(page) };
            list.push(Vcpu { ctx, power: VcpuPower::Off, started: false, irq_line: false });
        }
        touch(&self.touches[index]);
        let slot = &mut self.slots[index];
        let id = (index + 1) as VmId;
        slot.vm = Some(Vm {
            id,
            protected: ty == VmType::Protected,
            vcpus: list,
            stage2,
            pages_held: 0,
            mmio_guard: MmioGuard::default(),
            cntvoff: 0,
            gic: Distributor::new(gic_version, vcpus as usize),
            gic_layout: GicLayout::default(),
            ran: false,
            state: VmState::Alive,
            last_vcpu_on_cpu: [NO_VCPU; crate::platform::MAX_CPUS],
        });
        Ok(VmHandle::of_slot(index, slot.generation))
    }

    /// Gives the VM the host `pages`: donated to a
    /// protected VM, lent to a non-protected one.
    ///
    /// # Errors
    ///
    /// `NoSuchVm`; `NoSuchVm` too for a VM that no longer runs; what the memory
    /// transition reports.
    pub fn map(
        &mut self,
        handle: VmHandle,
        pages: GuestPages,
        memory: &mut MemoryState,
        env: &mut Env<'_>,
        tlb: &mut dyn TlbMaintenance,
    ) -> Result<(), HypError> {
        let vm = self.get(handle)?;
        if vm.state != VmState::Alive {
            return Err(HypError::NoSuchVm);
        }
        let mut guest = changing_guest(vm.id, &mut vm.stage2, tlb);
        if vm.protected {
            memory.host_donate_guest(&mut guest, pages, env)?;
        } else {
            memory.host_share_guest(&mut guest, pages, env)?;
        }
        vm.pages_held += pages.count.raw();
        Ok(())
    }

    /// Sets a vCPU's entry point and x0, and turns it on. A protected VM's state
    /// is its guest's: the host sets the entry of its vCPU 0 once, before it
    /// first runs; its other vCPUs start only through the guest's PSCI CPU_ON.
    ///
    /// # Errors
    ///
    /// `NoSuchVm`, `NoSuchVcpu`; `PermissionDenied` for a protected VM's vCPU
    /// other than 0, or its vCPU 0 once started (a second `VCPU_INIT`, or after
    /// it ran); `Busy` while a non-protected VM's vCPU runs. A refused call
    /// changes nothing.
    pub fn vcpu_init(&mut self, handle: VmHandle, index: VcpuIndex, pc: u64, x0: u64) -> Result<(), HypError> {
        let vm = self.get(handle)?;
        if vm.state != VmState::Alive {
            return Err(HypError::NoSuchVm);
        }
        let protected = vm.protected;
        let vcpu = vm.vcpu(index)?;
        if protected && (index.raw() != 0 || vcpu.started) {
            return Err(HypError::PermissionDenied);
        }
        if vcpu.ctx.running() {
            return Err(HypError::Busy);
        }
        *vcpu.ctx = VcpuContext::at_entry(pc, x0);
        vcpu.power = VcpuPower::OnPending;
        vcpu.started = true;
        vcpu.ctx.forget_pending_read();
        Ok(())
    }

    /// Makes interrupt `intid` pending: an SGI or PPI for vCPU `index`, an SPI
    /// for the vCPU the guest routed it to. Returns that vCPU's index, or
    /// `u64::MAX` while the guest routes the SPI to none.
    ///
    /// # Errors
    ///
    /// `NoSuchVm` (also for a VM that no longer runs), `NoSuchVcpu`,
    /// `InvalidArgument` for an INTID the VM does not have (96 or more).
    pub fn inject_irq(&mut self, handle: VmHandle, index: VcpuIndex, intid: u64) -> Result<u64, HypError> {
        let vm = self.get(handle)?;
        if vm.state != VmState::Alive {
            return Err(HypError::NoSuchVm);
        }
        let index = index.to_usize().filter(|&i| i < vm.vcpus.len()).ok_or(HypError::NoSuchVcpu)?;
        let intid = u32::try_from(intid).map_err(|_| HypError::InvalidArgument)?;
        routed_answer(vm.gic.make_pending(index, intid))
    }

    /// Places the VM's GIC windows (`VM_SET_GIC`), before any of its vCPUs ran.
    ///
    /// # Errors
    ///
    /// `NoSuchVm` (also for a VM that no longer runs), `Busy` once a vCPU
    /// ran, and [`GicLayout::placed`]'s.
    pub fn set_gic_layout(&mut self, handle: VmHandle, distributor: u64, second: u64) -> Result<(), HypError> {
        let ipa_limit = 1u64 << self.ipa_bits;
        let vm = self.get(handle)?;
        if vm.state != VmState::Alive {
            return Err(HypError::NoSuchVm);
        }
        if vm.ran {
            return Err(HypError::Busy);
        }
        let layout = GicLayout::placed(vm.gic.version, vm.vcpus.len(), distributor, second, ipa_limit)?;
        // Memory the host took back from the VM (poisoned IPAs) ends the VM
        // when touched: a window there would answer with GIC registers the
        // host sets instead ([`VmTable::reclaim`] keeps the other order out).
        let poisoned = |window: &core::ops::Range<u64>| {
            (window.start..window.end)
                .step_by(4096)
                .any(|ipa| matches!(vm.stage2.entry_at(ipa as usize), Entry::Marked(mark) if mark == GUEST_POISONED))
        };
        if layout.windows(vm.gic.version).iter().any(poisoned) {
            return Err(HypError::InvalidArgument);
        }
        vm.gic_layout = layout;
        Ok(())
    }

    /// Sets the input line of SPI `intid` (`VM_SET_SPI_LEVEL`); returns the
    /// vCPU to run for it, as [`VmTable::inject_irq`] does.
    ///
    /// # Errors
    ///
    /// `NoSuchVm` (also for a VM that no longer runs), `NoSuchVcpu`,
    /// `InvalidArgument` (not an SPI of the VM, a level other than 0 or 1).
    pub fn set_spi_level(
        &mut self,
        handle: VmHandle,
        index: VcpuIndex,
        intid: u64,
        level: u64,
    ) -> Result<u64, HypError> {
        let vm = self.get(handle)?;
        if vm.state != VmState::Alive {
            return Err(HypError::NoSuchVm);
        }
        index.to_usize().filter(|&i| i < vm.vcpus.len()).ok_or(HypError::NoSuchVcpu)?;
        let level = match level {
            0 => false,
            1 => true,
            _ => return Err(HypError::InvalidArgument),
        };
        let intid = u32::try_from(intid).map_err(|_| HypError::InvalidArgument)?;
        routed_answer(vm.gic.set_spi_level(intid, level))
    }

    /// Sets a vCPU's virtual IRQ line (platforms without a GIC).
    ///
    /// # Errors
    ///
    /// `NoSuchVm` (also for a VM that no longer runs), `NoSuchVcpu`,
    /// `InvalidArgument` for a level other than 0 or 1.
    pub fn set_irq_line(&mut self, handle: VmHandle, index: VcpuIndex, level: u64) -> Result<(), HypError> {
        let vm = self.get(handle)?;
        if vm.state != VmState::Alive {
            return Err(HypError::NoSuchVm);
        }
        let vcpu = vm.vcpu(index)?;
        vcpu.irq_line = match level {
            0 => false,
            1 => true,
            _ => return Err(HypError::InvalidArgument),
        };
        Ok(())
    }

    /// The vCPU and register a register call names, if the host may touch them.
    fn register_access(
        &mut self,
        handle: VmHandle,
        index: VcpuIndex,
        reg: u64,
        write: bool,
    ) -> Result<(&mut Vm, usize, VcpuReg), HypError> {
        let vm = self.get(handle)?;
        let vcpu = vm.vcpu(index)?;
        let running = vcpu.ctx.running();
        let reg = VcpuReg::from_raw(reg).ok_or(HypError::InvalidArgument)?;
        // A protected VM's registers are its guest's. Its virtual count is
        // not: the physical count less an offset taken from it, which its
        // host may read, and may set before the VM first runs (as it sets
        // vCPU 0's entry), a KVM VMM's `KVM_REG_ARM_TIMER_CNT`.
        let host_may = reg == VcpuReg::TimerCount && (!write || !vm.ran);
        if vm.protected && !host_may {
            return Err(HypError::PermissionDenied);
        }
        // The virtual count is the VM's: not moved under any running vCPU,
        // and readable while they run (it changes only under the lock, with
        // none running).
        let busy = match reg {
            VcpuReg::TimerCount if write => vm.vcpus.iter().any(|v| v.ctx.running()),
            VcpuReg::TimerCount => false,
            _ => running,
        };
        if busy {
            return Err(HypError::Busy);
        }
        let index = index.to_usize().ok_or(HypError::NoSuchVcpu)?;
        Ok((vm, index, reg))
    }

    /// Reads a register of a non-protected VM's vCPU, or a VM's virtual count;
    /// `now` is the physical count (for the virtual count).
    ///
    /// # Errors
    ///
    /// `NoSuchVm`, `NoSuchVcpu`, `InvalidArgument` (register), `PermissionDenied`
    /// for a protected VM (not for its virtual count, which the host may read,
    /// and set before the VM first runs), `Busy` while it runs (not for the
    /// virtual count: the VM's, readable at any time).
    pub fn get_reg(&mut self, handle: VmHandle, index: VcpuIndex, reg: u64, now: u64) -> Result<u64, HypError> {
        let (vm, index, reg) = self.register_access(handle, index, reg, false)?;
        let cntvoff = vm.cntvoff;
        let ctx = &vm.vcpus.get(index).ok_or(HypError::NoSuchVcpu)?.ctx;
        Ok(match reg {
            VcpuReg::X(n) => ctx.gprs.x[usize::from(n)],
            VcpuReg::Pc => ctx.pc,
            VcpuReg::Pstate => ctx.pstate,
            VcpuReg::SpEl1 => ctx.sysregs.sp_el1,
            VcpuReg::SpEl0 => ctx.sysregs.sp_el0,
            VcpuReg::ElrEl1 => ctx.sysregs.elr_el1,
            VcpuReg::SpsrEl1 => ctx.sysregs.spsr_el1,
            VcpuReg::Fpsr => ctx.fp.fpsr,
            VcpuReg::Fpcr => ctx.fp.fpcr,
            VcpuReg::TimerCtl => ctx.sysregs.cntv_ctl,
            VcpuReg::TimerCval => ctx.sysregs.cntv_cval,
            VcpuReg::TimerCount => now.wrapping_sub(cntvoff),
            VcpuReg::V { n, high } => (ctx.fp.q[usize::from(n)] >> if high { 64 } else { 0 }) as u64,
        })
    }

    /// Writes a register of a non-protected VM's vCPU (the virtual count: the
    /// VM's counter offset, for all its vCPUs).
    ///
    /// # Errors
    ///
    /// As [`VmTable::get_reg`], and `Busy` for the virtual count while any of
    /// the VM's vCPUs runs.
    pub fn set_reg(
        &mut self,
        handle: VmHandle,
        index: VcpuIndex,
        reg: u64,
        value: u64,
        now: u64,
    ) -> Result<(), HypError> {
        let (vm, index, reg) = self.register_access(handle, index, reg, true)?;
        if reg == VcpuReg::TimerCount {
            vm.cntvoff = now.wrapping_sub(value);
            return Ok(());
        }
        let ctx = &mut vm.vcpus.get_mut(index).ok_or(HypError::NoSuchVcpu)?.ctx;
        match reg {
            VcpuReg::X(n) => ctx.gprs.x[usize::from(n)] = value,
            VcpuReg::Pc => ctx.pc = value,
            // Only EL1/EL0 AArch64 states with their flags: never EL2.
            VcpuReg::Pstate => ctx.pstate = sanitize_pstate(value),
            VcpuReg::SpEl1 => ctx.sysregs.sp_el1 = value,
            VcpuReg::SpEl0 => ctx.sysregs.sp_el0 = value,
            VcpuReg::ElrEl1 => ctx.sysregs.elr_el1 = value,
            // (The guest may write any of these itself: an ERET to a mode it
            // may not enter is an illegal return, which the CPU handles.)
            VcpuReg::SpsrEl1 => ctx.sysregs.spsr_el1 = value,
            // 32-bit registers (KVM's ids for them are 32 bits wide).
            VcpuReg::Fpsr => ctx.fp.fpsr = value & 0xffff_ffff,
            VcpuReg::Fpcr => ctx.fp.fpcr = value & 0xffff_ffff,
            // ENABLE and IMASK; ISTATUS is the timer's to say.
            VcpuReg::TimerCtl => ctx.sysregs.cntv_ctl = value & 0b11,
            VcpuReg::TimerCval => ctx.sysregs.cntv_cval = value,
            VcpuReg::V { n, high } => {
                let q = &mut ctx.fp.q[usize::from(n)];
                let (shift, keep) = if high { (64, u128::from(u64::MAX)) } else { (0, u128::from(u64::MAX) << 64) };
                *q = (*q & keep) | u128::from(value) << shift;
            }
            VcpuReg::TimerCount => {}
        }
        Ok(())
    }

    /// `[is_protected, vCPUs, pages held]`.
    ///
    /// # Errors
    ///
    /// `NoSuchVm`.
    pub fn info(&mut self, handle: VmHandle) -> Result<[u64; 3], HypError> {
        let vm = self.get(handle)?;
        Ok([u64::from(vm.protected), vm.vcpus.len() as u64, vm.pages_held])
    }

    /// Tears a VM down: it never runs again. A non-protected VM's borrowed pages
    /// return to the host at once; a protected VM's pages wait for [`VmTable::reclaim`]
    /// (each is zeroed then). A VM holding no pages is freed now.
    ///
    /// # Errors
    ///
    /// `NoSuchVm` (also if already torn down), `Busy` while a vCPU runs, `NoMemory`.
    pub fn teardown(
        &mut self,
        handle: VmHandle,
        memory: &mut MemoryState,
        env: &mut Env<'_>,
        tlb: &mut dyn TlbMaintenance,
    ) -> Result<(), HypError> {
        let vm = self.get(handle)?;
        if vm.state == VmState::TornDown {
            return Err(HypError::NoSuchVm);
        }
        if vm.vcpus.iter().any(|v| v.ctx.running()) {
            return Err(HypError::Busy);
        }
        if !vm.protected {
            // Every leaf of a non-protected VM is a page the host lent it; runs of
            // leaves contiguous in both spaces (up to one call's pages) go back in
            // one transition each, found one after the other in the table itself
            // (a list of them would be hyp memory the host could grow).
            const MOST: usize = hyp_abi::MAX_PAGES_PER_CALL as usize * 4096;
            let mut guest = changing_guest(vm.id, &mut vm.stage2, tlb);
            let mut cursor = 0;
            while let Some(first) = guest.stage2.first_leaf_from(cursor) {
                let (start, pa) = (first.start, first.pa);
                let mut end = first.end.min(start + MOST);
                while end < start + MOST {
                    match guest.stage2.leaf_at(end) {
                        Some(next) if next.start == end && next.pa == pa + (end - start) => {
                            end = next.end.min(start + MOST);
                        }
                        _ => break,
                    }
                }
                let pages = ((end - start) / 4096) as u64;
                let (pa, ipa) = (PhysAddr::new(pa as u64), Ipa::new(start as u64));
                memory.host_unshare_guest(&mut guest, GuestPages { pa, ipa, count: PageCount::new(pages) }, env)?;
                vm.pages_held -= pages;
                cursor = end;
            }
        }
        vm.state = VmState::TornDown;
        self.free_if_empty(handle, memory, env, tlb);
        Ok(())
    }

    /// Takes back `pages` pages of a protected VM at its IPAs `ipa..`, zeroed:
    /// after teardown (the VM and its handle go away with its last page), or by
    /// force from a live VM (those IPAs stay poisoned in its stage-2: its next
    /// touch of one ends it with a fatal exit, never a leak, and nothing can be
    /// mapped there again).
    ///
    /// # Errors
    ///
    /// `NoSuchVm`; `Busy` for a non-protected VM not torn down (its pages are only
    /// lent: teardown returns them) or while one of its vCPUs runs;
    /// `InvalidArgument` if the IPAs do not map pages that are contiguous in host
    /// memory (reclaim what one `VM_MAP` gave), `NotOwned` if they are not the
    /// VM's; `NoMemory`. A failed call takes nothing back.
    pub fn reclaim(
        &mut self,
        handle: VmHandle,
        ipa: Ipa,
        pages: PageCount,
        memory: &mut MemoryState,
        env: &mut Env<'_>,
        tlb: &mut dyn TlbMaintenance,
    ) -> Result<(), HypError> {
        let (ipa, pages) = (ipa.raw(), pages.raw());
        let vm = self.get(handle)?;
        let live = vm.state != VmState::TornDown;
        if live && (!vm.protected || vm.vcpus.iter().any(|v| v.ctx.running())) {
            return Err(HypError::Busy);
        }
        if pages == 0 || pages > hyp_abi::MAX_PAGES_PER_CALL {
            return Err(HypError::InvalidArgument);
        }
        if !ipa.is_multiple_of(4096) {
            return Err(HypError::NotAligned);
        }
        if ipa.checked_add(pages * 4096).is_none_or(|end| end > vm.stage2.limit() as u64) {
            return Err(HypError::OutOfRange);
        }
        // A live VM's IPA taken back is poisoned: the guest's next access
        // ends it. Inside a GIC window the access would be the emulated
        // GIC's, answered with registers the host sets: `Busy` (the host
        // tears the VM down first, as for a live non-protected VM).
        if live && vm.gic_layout.meets(vm.gic.version, ipa, ipa + pages * 4096) {
            return Err(HypError::Busy);
        }
        // The range must map host-physically contiguous pages (what the host gave
        // in one call): then one transition takes them all back, or none.
        let pa = vm
            .stage2
            .leaf_at(ipa as usize)
            .map(|l| (l.pa + (ipa as usize - l.start)) as u64)
            .ok_or(HypError::InvalidArgument)?;
        let mut guest = changing_guest(vm.id, &mut vm.stage2, &mut *tlb);
        let at = GuestPages { pa: PhysAddr::new(pa), ipa: Ipa::new(ipa), count: PageCount::new(pages) };
        let ipas = if live { GuestIpas::Poisoned } else { GuestIpas::Unmapped };
        memory.host_reclaim_guest(&mut guest, at, ipas, env)?;
        vm.pages_held -= pages;
        self.free_if_empty(handle, memory, env, tlb);
        Ok(())
    }

    /// Frees a torn-down VM's slot when it holds no memory any more: its stage-2
    /// goes back to `source` and its handle stops working.
    fn free_if_empty(
        &mut self,
        handle: VmHandle,
        memory: &mut MemoryState,
        env: &mut Env<'_>,
        tlb: &mut dyn TlbMaintenance,
    ) {
        // (The caller found the VM: `usize::MAX`, no slot, is never taken.)
        let index = handle.slot().unwrap_or(usize::MAX);
        let (Some(slot), Some(touches)) = (self.slots.get_mut(index), self.touches.get(index)) else {
            return;
        };
        let done = slot.vm.as_ref().is_some_and(|vm| vm.state == VmState::TornDown && vm.pages_held == 0);
        if done {
            touch(touches);
            // A CPU that ran one of its vCPUs may be in its claim window, at
            // the page it kept: the pages go only once no window is open.
            crate::vm::claim_window::wait_for_claims();
            if let Some(vm) = slot.vm.take() {
                GUEST_MAPPINGS_GENERATION.fetch_add(1, Ordering::SeqCst);
                memory.destroy_guest_table(vm.stage2, env, tlb);
                for vcpu in vm.vcpus {
                    memory.free_guest_page(vcpu.ctx.into_page(), env);
                }
            }
            slot.generation = slot.generation.wrapping_add(1).max(1);
        }
    }

    /// What `ipa` is to the VM behind `handle` (one walk of its stage-2), and
    /// the count of guest mapping changes it holds for
    /// ([`guest_mappings_generation`]).
    pub fn ipa_kind(&mut self, handle: VmHandle, ipa: Ipa) -> (crate::vm::guest_trap::IpaKind, u64) {
        use crate::vm::guest_trap::IpaKind;
        // Every change is counted under the lock this table is behind.
        let generation = GUEST_MAPPINGS_GENERATION.load(Ordering::Relaxed);
        let Ok(vm) = self.get(handle) else {
            return (IpaKind::Other, generation);
        };
        let ipa = ipa.raw();
        let kind = match usize::try_from(ipa).map_or(Entry::Empty, |ipa| vm.stage2.entry_at(ipa)) {
            Entry::Mapped(_) => IpaKind::Memory,
            Entry::Marked(mark) if mark == GUEST_POISONED => IpaKind::Lost,
            Entry::Marked(_) | Entry::Empty if vm.mmio_guard.allows(ipa) => IpaKind::Other,
            Entry::Marked(_) | Entry::Empty => IpaKind::Refused,
        };
        (kind, generation)
    }

    /// Serves a protected guest's memory `call` for the VM behind `handle`
    /// (one of whose vCPUs runs and made it): its page shared with the host,
    /// unshared, or given back. `host_tlb` is the TLB maintenance of the host
    /// stage-2 from the guest's context (its VMID, not the guest's), `tlb`
    /// the guest's.
    ///
    /// # Errors
    ///
    /// `NotSupported` for a VM that is not protected (or gone); what the
    /// transition reports (`NotAligned`, `OutOfRange`, `NotOwned`,
    /// `NoMemory`). Nothing changes then.
    pub fn guest_memory(
        &mut self,
        handle: VmHandle,
        call: MemoryCall,
        memory: &mut MemoryState,
        env: &mut Env<'_>,
        tlb: &mut dyn TlbMaintenance,
    ) -> Result<(), HypError> {
        let vm = self.get(handle).map_err(|_| HypError::NotSupported)?;
        if !vm.protected || vm.state != VmState::Alive {
            return Err(HypError::NotSupported);
        }
        let mut guest = changing_guest(vm.id, &mut vm.stage2, tlb);
        match call {
            MemoryCall::Share { ipa } => memory.guest_share_host(&mut guest, Ipa::new(ipa), env),
            MemoryCall::Unshare { ipa } => memory.guest_unshare_host(&mut guest, Ipa::new(ipa), env),
            MemoryCall::Relinquish { ipa } => {
                memory.guest_relinquish(&mut guest, Ipa::new(ipa), env)?;
                vm.pages_held -= 1;
                Ok(())
            }
        }
    }

    /// Serves the guest's MMIO guard `call` for the VM behind `handle`; the
    /// SMCCC result (0, or INVALID_PARAMETER for an IPA that is misaligned,
    /// the VM's memory or beyond its IPA space, or NOT_SUPPORTED).
    pub fn mmio_guard(&mut self, handle: VmHandle, call: GuardCall) -> u64 {
        let ipa_limit = 1u64 << self.ipa_bits;
        let Ok(vm) = self.get(handle) else {
            return NOT_SUPPORTED;
        };
        // What the guard allows is part of what an IPA is to the VM.
        GUEST_MAPPINGS_GENERATION.fetch_add(1, Ordering::SeqCst);
        let result = match call {
            GuardCall::Enroll => {
                vm.mmio_guard.enroll();
                Ok(())
            }
            GuardCall::Map { ipa } | GuardCall::Unmap { ipa }
                if ipa >= ipa_limit || vm.stage2.leaf_at(ipa as usize).is_some() =>
            {
                Err(GuardError::Misaligned)
            }
            GuardCall::Map { ipa } => vm.mmio_guard.map(ipa),
            GuardCall::Unmap { ipa } => vm.mmio_guard.unmap(ipa),
        };
        match result {
            Ok(()) => 0,
            Err(GuardError::Misaligned | GuardError::NotMapped) => INVALID_PARAMETER,
            Err(GuardError::NotEnrolled | GuardError::Full) => NOT_SUPPORTED,
        }
    }

    /// Before the machine is reset or turned off at the host's request (PSCI
    /// SYSTEM_RESET, SYSTEM_OFF), so that nothing of a protected VM survives
    /// into whatever the machine boots next: every protected VM stops for
    /// good (a live one becomes `Crashed`: it never runs again), then every
    /// page a protected VM owns (the page records say which) and each of its
    /// vCPU contexts (its registers, in donated hyp pages) are zeroed, the
    /// zeroes written back to memory ([`PhysMemory::zero_page`]), and its
    /// distributor is reset. Non-protected VMs are left alone: their memory
    /// and registers are the host's to see. Returns the guest pages zeroed.
    ///
    /// # Errors
    ///
    /// `Busy` while a protected vCPU runs: nothing is zeroed (none of them
    /// can start again; the caller waits for the running ones to return to
    /// their host and asks again). `NoMemory` if a page could not be mapped
    /// for the hyp to zero it.
    ///
    /// [`PhysMemory::zero_page`]: crate::mm::phys_memory::PhysMemory::zero_page
    pub fn scrub_for_power_off(&mut self, memory: &mut MemoryState, env: &mut Env<'_>) -> Result<u64, HypError> {
        let mut running = false;
        // Every VM counts (no vCPU runs again without the lock while the
        // caller holds it, as `power` says), and no claim window stays open
        // at a page this writes.
        for (slot, touches) in self.slots.iter().zip(self.touches.iter()) {
            if slot.vm.is_some() {
                touch(touches);
            }
        }
        crate::vm::claim_window::wait_for_claims();
        for vm in self.slots.iter_mut().filter_map(|s| s.vm.as_mut()).filter(|vm| vm.protected) {
            if vm.state == VmState::Alive {
                vm.state = VmState::Crashed;
            }
            running |= vm.vcpus.iter().any(|v| v.ctx.running());
        }
        if running {
            return Err(HypError::Busy);
        }
        for vm in self.slots.iter_mut().filter_map(|s| s.vm.as_mut()).filter(|vm| vm.protected) {
            for vcpu in &mut vm.vcpus {
                *vcpu.ctx = VcpuContext::default();
                // Through the page too: the zeroes must reach memory, which a
                // reset may keep while it drops the caches.
                env.memory.zero_page(vcpu.ctx.page());
                vcpu.ctx.forget_pending_read();
                vcpu.power = VcpuPower::Off;
            }
            vm.gic = Distributor::new(vm.gic.version, vm.gic.vcpus());
        }
        scrub_vm_owned_pages(memory, env)
    }

    /// Live VMs (for the invariant checker): id and stage-2.
    pub fn stage2s(&self) -> impl Iterator<Item = (VmId, &PgTable<Stage2>)> {
        self.slots.iter().filter_map(|s| s.vm.as_ref()).map(|vm| (vm.id, &vm.stage2))
    }

    /// Number of VMs that hold a slot.
    #[cfg(test)]
    pub fn count(&self) -> usize {
        self.slots.iter().filter(|s| s.vm.is_some()).count()
    }
}

/// Zeroes every page a VM owns (only protected VMs own pages: a non-protected
/// VM's are lent by the host, which sees them anyway): each run of them is
/// mapped for the hyp in pieces of at most 2 MiB, zeroed page by page and
/// cleaned to memory, and unmapped again. The records do not change. Returns
/// the pages zeroed.
fn scrub_vm_owned_pages(memory: &mut MemoryState, env: &mut Env<'_>) -> Result<u64, HypError> {
    const PIECE: u64 = 2 << 20;
    const PAGE: u64 = crate::range::PAGE_SIZE;
    let MemoryState { pages, hyp_stage1, .. } = memory;
    let (mut scrubbed, mut result) = (0, Ok(()));
    pages.for_each_run(|run, record| {
        // (A page a VM lends the hyp is mapped for it already: there is no such page yet.)
        if result.is_err() || !matches!(record.owner, Owner::Vm(_)) || record.borrower == Some(Owner::Hyp) {
            return;
        }
        let mut start = run.start;
        while start < run.end {
            let end = ((start / PIECE + 1) * PIECE).min(run.end);
            let (s, e) = (start as usize, end as usize);
            if hyp_stage1.map(s, e, s, HYP_DATA, env.source, env.el2_tlb).is_err() {
                result = Err(HypError::NoMemory);
                return;
            }
            env.memory.scrub(start, (end - start) / PAGE);
            if hyp_stage1.unmap(s, e, env.source, env.el2_tlb).is_err() {
                result = Err(HypError::NoMemory);
                return;
            }
            scrubbed += (end - start) / PAGE;
            start = end;
        }
    });
    result.map(|()| scrubbed)
}

/// PSTATE the host may give a non-protected vCPU: EL0 or EL1 (t or h), AArch64,
/// with NZCV and DAIF; anything else becomes EL1h with DAIF masked.
pub fn sanitize_pstate(value: u64) -> u64 {
    const FLAGS: u64 = 0xf << 28 | 0xf << 6;
    let mode = value & 0x1f;
    let mode = if matches!(mode, 0b00000 | 0b00100 | 0b00101) { mode } else { 0b00101 };
    (value & FLAGS) | mode
}

#[cfg(test)]
#[path = "table_tests.rs"]
mod tests;
