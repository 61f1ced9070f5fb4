//! The boot path of the primary CPU, from the assembly entry to the first entry
//! into the host, and the EL1 entry that only explains what is missing.
//!
//! Order matters: with the MMU off, the hyp parses the device tree, reserves its
//! pool, lays out the host (its Image and its device tree with the hyp carved out)
//! and builds its stage-1 tables, all without locks and without logging. Then the
//! MMU goes on, the logger starts, the host stage-2 is built and the host runs.

use crate::arch::aarch64::bulk_copy;
use crate::arch::aarch64::cache;
use crate::arch::aarch64::mmu;
use crate::arch::aarch64::percpu;
use crate::arch::aarch64::tlb::El2Tlb;
use crate::arch::aarch64::world::VgicHardware;
use crate::arch::percpu::{PerCpu, CPU_OFF, CPU_ON};
use crate::console::{emergency, logger};
use crate::emergency_println;
use crate::host_lpi::LpiPage;
use crate::layout::{find_free, Placement};
use crate::mm::host_devices::HostDevices;
use crate::mm::host_stage2;
use crate::mm::memory::HostDmaMirror;
use crate::mm::memory::{Env, MemoryState};
use crate::mm::ownership::PageDb;
use crate::mm::pgtable::PgTable;
use crate::mm::phys::HeapPages;
use crate::mm::stage1::{self, Permission};
use crate::platform::devices::DmaPolicy;
use crate::platform::MAX_CPUS;
use crate::platform::{Platform, PlatformError};
use crate::range::{align_up, FixedVec, PhysRange, PAGE_SIZE, SIZE_2M};
use crate::state::{with_env, Hyp, HypDevices};
use crate::vm::table::VmTable;
use crate::{cpus, fdt_edit, power, HEAP};
use aarch64_cpu::registers::{Readable, MIDR_EL1, MPIDR_EL1};
use alloc::vec::Vec;
use core::alloc::Layout;
use core::sync::atomic::{AtomicU64, AtomicU8};

/// The hyp's memory pool, beyond the page records: page tables, per-CPU stacks,
/// and (later) VM metadata the host has not donated.
const POOL_BASE_SIZE: u64 = 8 << 20;
/// Ranges of RAM in use at boot: image, device tree, reserved ranges, a host
/// kernel, pool, spin-table release pages, host image and device tree.
const TAKEN_RANGES: usize = 2 + crate::platform::MAX_RESERVED + 1 + 1 + MAX_CPUS + 2;
/// Per-CPU trap stack (the SP_EL2 the host traps arrive on).
const TRAP_STACK_SIZE: usize = 64 << 10;
/// Per-CPU emergency stack for fatal exceptions taken at EL2.
const EMERGENCY_STACK_SIZE: usize = 16 << 10;
/// One CPU's stacks with their guard pages, as the buddy heap hands them out
/// (a power of two): 88 KiB in a 128 KiB block.
const CPU_STACKS_BLOCK: u64 = (PAGE_SIZE as usize + TRAP_STACK_SIZE + PAGE_SIZE as usize + EMERGENCY_STACK_SIZE)
    .next_power_of_two() as u64;
/// Room in the pool's early part for the EL2 stage-1 tables: 32 pages, where
/// QEMU's virt board needs under ten (one per level and a last-level table per
/// 2 MiB window that has a region's end or a guard page in it). Should a
/// board need more, the whole pool joins early, and is invalidated (slower,
/// as correct; the boot log says so).
const EARLY_TABLES_SIZE: u64 = 128 << 10;

/// Bytes aligned to 64, so that boot copies them a 64-byte block per loop turn.
#[cfg(host_shim_embedded)]
#[repr(C, align(64))]
struct Aligned<T: ?Sized>(T);

/// The host shim Image, embedded by `scripts/build-image`.
#[cfg(host_shim_embedded)]
static HOST_IMAGE: &Aligned<[u8]> = &Aligned(*include_bytes!(env!("HOST_SHIM_IMAGE_PATH")));

extern "C" {
    static __image_start: u8;
    static __text_end: u8;
    static __rodata_end: u8;
    static __image_end: u8;
    static __boot_stack_guard: u8;
    static __boot_stack_bottom: u8;
}

/// The hyp image's sections as loaded.
struct ImageLayout {
    start: u64,
    text_end: u64,
    rodata_end: u64,
    end: u64,
    boot_stack_guard: PhysRange,
}

fn image_layout() -> ImageLayout {
    let addr = |sym: &u8| sym as *const u8 as u64;
    // SAFETY: Only the addresses of these linker symbols are taken, never their contents.
    unsafe {
        ImageLayout {
            start: addr(&__image_start),
            text_end: addr(&__text_end),
            rodata_end: addr(&__rodata_end),
            end: addr(&__image_end),
            boot_stack_guard: PhysRange { start: addr(&__boot_stack_guard), end: addr(&__boot_stack_bottom) },
        }
    }
}

/// One CPU's stacks, each above an unmapped guard page.
#[derive(Clone, Copy, Default)]
struct CpuStacks {
    trap_top: usize,
    emergency_top: usize,
    guards: [PhysRange; 2],
}

fn allocate_stacks() -> Option<CpuStacks> {
    let page = PAGE_SIZE as usize;
    let size = page + TRAP_STACK_SIZE + page + EMERGENCY_STACK_SIZE;
    let layout = Layout::from_size_align(size, page).ok()?;
    // SAFETY: The layout has a non-zero size.
    let base = unsafe { alloc::alloc::alloc(layout) } as usize;
    if base == 0 {
        return None;
    }
    let trap_bottom = base + page;
    let emergency_guard = trap_bottom + TRAP_STACK_SIZE;
    let emergency_bottom = emergency_guard + page;
    Some(CpuStacks {
        trap_top: trap_bottom + TRAP_STACK_SIZE,
        emergency_top: emergency_bottom + EMERGENCY_STACK_SIZE,
        guards: [
            PhysRange { start: base as u64, end: trap_bottom as u64 },
            PhysRange { start: emergency_guard as u64, end: emergency_bottom as u64 },
        ],
    })
}

/// The hyp's state, once boot has built it.
static HYP: spin::Once<Hyp> = spin::Once::new();

/// The hyp's state, for the entries (the trap handlers, a secondary CPU's
/// entry); `None` before boot has finished building it.
pub fn hyp() -> Option<&'static Hyp> {
    HYP.get()
}

/// The hyp's state without [`hyp`]'s check that it is built: its address,
/// known at link time, so that the host's trap entry spends no instruction
/// on it (the check cost the null hypercall five).
///
/// # Safety
///
/// Boot must have built the state. It has when the host traps: the host runs
/// only after [`Hyp::enter_host`], and the one `Hyp` it is called on is the
/// one `boot` stores here before entering the host (a secondary CPU enters
/// the host through [`hyp`]'s checked value).
pub unsafe fn hyp_built() -> &'static Hyp {
    // SAFETY: The caller guarantees `HYP` is initialised.
    unsafe { HYP.get_unchecked() }
}

/// The device frames the hyp maps for itself: the console UART, on GICv2 the
/// virtual interface frames (GICH, GICV), the GIC frames of the CPUs' PPIs,
/// and the SMMU it drives (`smmu`).
fn hyp_devices(platform: &Platform, smmu: Option<PhysRange>) -> HypDevices {
    let mut devices = HypDevices::default();
    if let Some(uart) = platform.uart {
        devices.push(uart.regs);
    }
    if let Some(crate::platform::Gic::V2 { gich: Some(gich), gicv: Some(gicv), .. }) = platform.gic {
        devices.push(gich);
        devices.push(gicv);
    }
    if let Some(ppis) = gic_ppi_region(platform) {
        devices.push(ppis);
    }
    if let Some(frame) = smmu {
        devices.push(frame);
    }
    devices
}

/// Stops boot with a message on the console (if any) and a failure status.
fn fatal(args: core::fmt::Arguments<'_>) -> ! {
    emergency_println!("[hyp ERROR] {args}");
    power::system_off(1)
}

/// Reads the platform from the device tree at `dtb` into `platform` (a
/// `Platform::default()`), and selects the console.
fn read_platform(dtb: usize, platform: &mut Platform) {
    // SAFETY: The boot protocol passes the device tree's address in x0; the header
    // is read first and only `totalsize` bytes are used after that.
    let blob = unsafe {
        let header = core::slice::from_raw_parts(dtb as *const u8, 8);
        let total = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
        if u32::from_be_bytes([header[0], header[1], header[2], header[3]]) != 0xd00d_feed {
            fatal(format_args!("{}", PlatformError::BadDeviceTree));
        }
        core::slice::from_raw_parts(dtb as *const u8, total)
    };
    if let Err(e) = platform.fill_from_fdt(blob) {
        fatal(format_args!("device tree at {dtb:#x}: {e}"));
    }
    power::configure(platform.semihosting_exit, platform.psci);
    if let Some(uart) = platform.uart {
        // SAFETY: The device tree names this PL011 as the console; with the MMU off
        // (and later identity-mapped as device memory) its registers are at this address.
        unsafe { emergency::set_uart(uart.model, uart.regs.start as usize) };
    }
    if let Some(error) = platform.bootargs_error {
        fatal(format_args!("{error}"));
    }
}

/// Rust entry of the boot CPU at EL2 (from `head.S`), MMU off.
#[no_mangle]
extern "C" fn hyp_boot_primary(dtb: usize, load_address: usize) -> ! {
    // Filled in place: the MMU is off, and a copy of it is dear.
    let mut platform = Platform::default();
    read_platform(dtb, &mut platform);
    let image = image_layout();
    debug_assert_eq!(image.start, load_address as u64);
    let Some(image_range) = PhysRange::from_base_size(image.start, image.end - image.start) else {
        fatal(format_args!("hyp image wraps"));
    };
    let dtb_range = PhysRange::from_base_size(dtb as u64, platform.fdt_size as u64).unwrap_or(image_range);

    // Everything that is already taken.
    let mut taken: FixedVec<PhysRange, TAKEN_RANGES> = FixedVec::default();
    taken.push(image_range);
    taken.push(dtb_range);
    for r in platform.reserved() {
        taken.push(*r);
    }
    let ram = platform.ram.as_slice();
    let host_kernel = platform.host_kernel.map(|address| host_kernel_range(&platform, address, taken.as_slice()));
    if let Some(kernel) = host_kernel {
        taken.push(kernel);
    }
    let release_pages = spin_table_release_pages(&platform);
    for page in release_pages.as_slice() {
        taken.push(*page);
    }
    let records_bytes = PageDb::storage_bytes(ram) as u64;
    // The host can split every block of its RAM (a donation per 2 MiB): room
    // for the host stage-2's tables of all of it, and the SMMU's copy.
    let split_tables = host_table_reserve(ram) * if platform.devices.smmu.is_some() { 2 } else { 1 };
    // The hyp's stage-1 keeps a last-level table per 2 MiB window it ever
    // mapped (donated, shared or scrubbed pages): room for all of RAM's.
    let hyp_stage1_tables = host_table_reserve(ram);
    let pool_size =
        align_up(POOL_BASE_SIZE + records_bytes + split_tables + hyp_stage1_tables, SIZE_2M).unwrap_or(u64::MAX);
    let Some(pool) = find_free(ram, taken.as_slice(), pool_size, SIZE_2M, Placement::Highest) else {
        fatal(format_args!("no room for the hyp's {pool_size:#x}-byte memory pool in RAM"));
    };
    taken.push(pool);
    // The MMU-off allocations (the CPUs' stacks, the stage-1 tables) come from
    // an early part of the pool, the only part boot invalidates (see `mm::heap`).
    let early_part = platform.cpus.len().max(1) as u64 * CPU_STACKS_BLOCK + EARLY_TABLES_SIZE;
    // SAFETY: The pool lies in RAM, clear of every range in use; the hyp owns it.
    unsafe { HEAP.add_pool(pool.start as usize, pool.end as usize, early_part as usize) };

    // Every CPU's stacks now: their guard pages are holes in the stage-1.
    let mut stacks: FixedVec<CpuStacks, MAX_CPUS> = FixedVec::default();
    for _ in 0..platform.cpus.len().max(1) {
        let Some(cpu_stacks) = allocate_stacks() else {
            fatal(format_args!("no memory for the CPUs' stacks"));
        };
        stacks.push(cpu_stacks);
    }
    // Hyp-owned memory: never mapped for the host, carved out of its device tree.
    let mut hyp_ranges: FixedVec<PhysRange, { 2 + MAX_CPUS }> = FixedVec::default();
    hyp_ranges.push(image_range);
    hyp_ranges.push(pool);
    for page in release_pages.as_slice() {
        hyp_ranges.push(*page);
    }
    let hyp_ranges = hyp_ranges;
    // The SMMU is the hyp's when the tree has one the hyp can drive; then the
    // PCIe behind it is the host's (its tree shows it), else withheld.
    let smmu = platform.devices.smmu;
    // SAFETY: The device tree names this SMMUv3 frame; reading its ID registers
    // (MMU off: a device access) has no side effect.
    let iommu =
        smmu.is_some_and(|frame| unsafe { crate::smmu::read_features(frame.start as usize) }.unusable().is_none());
    let dma_policy = DmaPolicy { permissive: platform.dma_permissive, iommu };
    let host = prepare_host(&platform, dma_policy, dtb_range, hyp_ranges.as_slice(), &mut taken, host_kernel);

    let mut holes: FixedVec<PhysRange, { 1 + 2 * MAX_CPUS }> = FixedVec::default();
    holes.push(image.boot_stack_guard);
    for cpu_stacks in stacks.as_slice() {
        holes.push(cpu_stacks.guards[0]);
        holes.push(cpu_stacks.guards[1]);
    }
    let mut regions: FixedVec<(PhysRange, Permission), 10> = FixedVec::default();
    regions.push((PhysRange { start: image.start, end: image.text_end }, Permission::Text));
    regions.push((PhysRange { start: image.text_end, end: image.rodata_end }, Permission::ReadOnly));
    regions.push((PhysRange { start: image.rodata_end, end: image.end }, Permission::ReadWrite));
    regions.push((pool, Permission::ReadWrite));
    if let Some(uart) = platform.uart {
        regions.push((uart.regs, Permission::Device));
    }
    // The GICv2 virtual interface: its control frame (GICH) and the virtual CPU
    // interface the hyp serves guests' CPU-interface accesses from (GICV).
    let gicv2_virtual = match platform.gic {
        Some(crate::platform::Gic::V2 { gich: Some(gich), gicv: Some(gicv), .. }) => Some((gich, gicv)),
        _ => None,
    };
    if let Some((gich, gicv)) = gicv2_virtual {
        regions.push((gich, Permission::Device));
        regions.push((gicv, Permission::Device));
    }
    if let Some(ppis) = gic_ppi_region(&platform) {
        regions.push((ppis, Permission::Device));
    }
    if let Some(frame) = smmu.filter(|_| iommu) {
        regions.push((frame, Permission::Device));
    }
    let stage1 = match stage1::build(regions.as_slice(), holes.as_slice(), &mut HeapPages, &mut El2Tlb) {
        Ok(table) => table,
        Err(e) => fatal(format_args!("building the EL2 stage-1 tables failed: {e}")),
    };

    // Memory written with the MMU off went straight to memory, past any line
    // the caches may hold for it from before the hyp (the boot protocol has
    // the bootloader clean only the loaded Image to the point of coherency).
    // Once the MMU is on, a stale line there would be read instead of what
    // was written (and a dirty one could be written back over it): so every
    // line of what was written with the MMU off, and will be read through a
    // cacheable mapping, is invalidated first. That is the hyp image's data
    // and bss (with the boot stack), the part of the pool the heap wrote (its
    // early part: the stage-1 tables, the free-list links there), and the
    // host's Image and device tree (the host reads them with its caches on).
    // The rest of the pool needs none: the hyp never read it with the MMU
    // off, and writes it through the cache before reading it (a stale line
    // for it holds nothing anyone reads; a write updates it). With the MMU
    // off, data accesses are Device-nGnRnE and allocate no line in between.
    let (pool_written, pool_written_end) = HEAP.written_early();
    // SAFETY: These ranges were written only with the MMU off, i.e. straight to
    // memory: any cached line for them is stale and must not be used or written back.
    unsafe {
        cache::invalidate(image.rodata_end as usize, (image.end - image.rodata_end) as usize);
        cache::invalidate(pool_written, pool_written_end - pool_written);
        cache::invalidate(host.image.start as usize, host.image.size() as usize);
        cache::invalidate(host.fdt.start as usize, host.fdt.size() as usize);
    }
    // SAFETY: The tables identity-map this code (text), the boot stack and all data
    // the hyp uses from here on, with the MAIR indices of `mmu`.
    unsafe { mmu::enable(stage1.root_address()) };
    HEAP.finish_early_boot();
    let (boot_cpu, per_cpus) = make_per_cpus(&platform, stacks.as_slice());
    percpu::install(boot_cpu);
    cpus::init(per_cpus);
    // SAFETY: The MMU is on, only this CPU runs, and this is the only call.
    unsafe { logger::init() };

    report_boot(&platform, dma_policy, image_range, pool);
    if platform.selftest_stack_guard {
        log::info!("self-test: reading the boot stack guard page at {}", image.boot_stack_guard);
        // SAFETY: The guard page is never mapped: this read must take a fatal EL2
        // data abort, which is what the self-test shows. Nothing is written.
        unsafe { core::ptr::read_volatile(image.boot_stack_guard.start as *const u64) };
        fatal(format_args!("self-test: the boot stack guard page is mapped"));
    }

    let pa_range = mmu::pa_range_encoding();
    let ipa_bits = host_stage2::ipa_bits(pa_range);
    let records = allocate_records(records_bytes as usize);
    let built = with_env(|env| MemoryState::new(ram, hyp_ranges.as_slice(), records, ipa_bits, stage1, env));
    let mut state = match built {
        Ok(state) => state,
        Err(e) => fatal(format_args!("building the host stage-2 failed: {e}")),
    };
    state.use_memcache_for_guest_tables();
    state.host_devices = HostDevices::new(platform.devices.regions.as_slice(), dma_policy);
    let smmu_taken = smmu.filter(|_| iommu);
    if let Some(frame) = smmu_taken {
        take_smmu(&mut state, frame, ipa_bits);
    } else if let Some(frame) = smmu {
        log::warn!("SMMU {frame}: not one the hyp can drive; withheld, and the devices behind it with it");
    }
    let mut host_lpi_pages = Vec::new();
    if let Some(crate::platform::Gic::V3 { gicr, .. }) = platform.gic {
        // Mapped for the hyp (`gic_ppi_region`): the LPI controls are read here.
        let pages = &mut host_lpi_pages;
        crate::arch::aarch64::gicv3::for_each_lpi_control_page(gicr.start as usize, gicr.end as usize, |page, vlpi| {
            state.host_devices.emulate_page(page as u64);
            pages.push((page as u64, if vlpi { LpiPage::VirtualLpis } else { LpiPage::Controls }));
        });
        log::info!(
            "GICv3: the LPI controls of {} redistributor page(s) emulated: LPIs withheld from the host",
            pages.len()
        );
    }
    if let Some((gich, gicv)) = gicv2_virtual {
        // The host must not rewrite guests' list registers.
        state.forbid_device(gich);
        crate::arch::aarch64::gicv2::configure(gich.start as usize, gicv.start as usize);
        log::info!("GICv2 virtual interface: GICH {gich} kept from the host, GICV {gicv} serves guests");
    }
    let root = state.host_stage2.root_address();
    log::info!("host stage-2: {ipa_bits}-bit IPA, all RAM but hyp memory mapped, device space on demand");
    let (used, total) = HEAP.usage();
    log::info!("hyp pool: {used} of {total} bytes in use");
    if HEAP.early_part_ran_out() {
        log::warn!("hyp pool: its early part ({early_part:#x} bytes) ran out with the MMU off: all of the pool was invalidated");
    }
    let devices = hyp_devices(&platform, smmu_taken);
    let vgic = vgic_hardware(&platform);
    let vtcr = host_stage2::vtcr(ipa_bits, pa_range);
    let vms = VmTable::new(ipa_bits);
    let hyp = HYP.call_once(|| Hyp::new(platform, devices, vgic, root, vtcr, host_lpi_pages, state, vms));
    log::info!("entering the host at EL1: entry {:#x}, device tree {}", host.entry, host.fdt);
    hyp.enter_host(host.entry, [host.fdt.start, 0, 0, 0])
}

/// The virtual interface that presents guests' interrupts: GICv3's (in the
/// device tree, with its system registers on this CPU), GICv2's (GICH and GICV
/// in the device tree), or none. Every CPU has the same GIC.
fn vgic_hardware(platform: &Platform) -> VgicHardware {
    let gicv3 = matches!(platform.gic, Some(crate::platform::Gic::V3 { .. }));
    if gicv3 && crate::arch::aarch64::gicv3::has_system_registers() {
        VgicHardware::V3
    } else if crate::arch::aarch64::gicv2::available() {
        VgicHardware::V2
    } else {
        VgicHardware::None
    }
}

/// Takes the SMMU at `frame` (mapped for the hyp): the host's devices get a
/// stage-1 identity map of exactly the host's RAM, kept in step with the host
/// stage-2 from now on. The host's tree already shows the devices behind it,
/// so failing here stops the boot.
fn take_smmu(state: &mut MemoryState, frame: PhysRange, ipa_bits: u32) {
    with_env(|env| take_smmu_with(state, frame, ipa_bits, env));
}

fn take_smmu_with(state: &mut MemoryState, frame: PhysRange, ipa_bits: u32, env: &mut Env<'_>) {
    let asid = usize::from(crate::smmu::SMMU_ASID);
    let table = match PgTable::new_stage1(host_stage2::root_level(ipa_bits), ipa_bits, asid, env.source) {
        Ok(table) => table,
        Err(e) => fatal(format_args!("SMMU {frame}: its table: {e}")),
    };
    let root = table.root_address() as u64;
    let mirror = HostDmaMirror { table, tlb: alloc::boxed::Box::new(crate::smmu::SmmuTlb) };
    if let Err(e) = state.attach_host_dma(mirror, env) {
        fatal(format_args!("SMMU {frame}: mapping the host's RAM for its devices: {e}"));
    }
    // SAFETY: The frame is the device tree's SMMUv3, mapped for the hyp as
    // device memory, withheld from the host; only the hyp programs it.
    if let Err(why) = unsafe { crate::smmu::init(frame.start as usize, root, ipa_bits, mmu::MAIR_EL2_VALUE) } {
        fatal(format_args!("SMMU {frame}: {why}; the host's device tree gives it the devices behind it"));
    }
}

/// Bytes of the tables that map all of `ram` in 4 KiB pages (one level-3
/// table per 2 MiB, one level-2 table per 1 GiB, with a table of slack per
/// bank for unaligned ends): the most a host can make its stage-2 need.
fn host_table_reserve(ram: &[PhysRange]) -> u64 {
    ram.iter()
        .map(|bank| {
            let pages = bank.size() / PAGE_SIZE;
            (pages.div_ceil(512) + pages.div_ceil(512 * 512) + 4) * PAGE_SIZE
        })
        .sum()
}

/// One `PerCpu` per CPU of the device tree (at least one: the boot CPU, if the
/// tree lists none), the boot CPU's on and the others off. Returns the boot
/// CPU's and the list.
fn make_per_cpus(platform: &Platform, stacks: &[CpuStacks]) -> (&'static PerCpu, Vec<&'static PerCpu>) {
    let own_mpidr = MPIDR_EL1.get() & cpus::MPIDR_AFFINITY_MASK;
    let listed = platform.cpus.as_slice();
    let boot_index = listed.iter().position(|c| c.mpidr & cpus::MPIDR_AFFINITY_MASK == own_mpidr);
    if boot_index.is_none() && !listed.is_empty() {
        emergency_println!("[hyp WARN] the boot CPU (MPIDR {own_mpidr:#x}) is not in the device tree's /cpus");
    }
    let boot_index = boot_index.unwrap_or(0);
    let mut list: Vec<&'static PerCpu> = Vec::with_capacity(stacks.len());
    for (index, cpu_stacks) in stacks.iter().enumerate() {
        let mpidr = listed.get(index).map_or(own_mpidr, |c| c.mpidr);
        let power = if index == boot_index { CPU_ON } else { CPU_OFF };
        let per_cpu: &'static PerCpu = alloc::boxed::Box::leak(alloc::boxed::Box::new(PerCpu {
            emergency_stack_top: cpu_stacks.emergency_top,
            trap_stack_top: cpu_stacks.trap_top,
            index,
            mpidr,
            guest_gprs: 0,
            hyp_sp: 0,
            boot_mmu: mmu::current_setup(),
            ppi_frame: ppi_frame(platform, mpidr),
            power: AtomicU8::new(power),
            host_entry: AtomicU64::new(0),
            host_context: AtomicU64::new(0),
            host_el2: Default::default(),
        }));
        list.push(per_cpu);
    }
    let Some(&boot_cpu) = list.get(boot_index).or(list.first()) else {
        fatal(format_args!("no CPU to run on"));
    };
    (boot_cpu, list)
}

/// The frame of the physical GIC holding the banked PPI registers of the CPU
/// with `mpidr` (mapped for the hyp: see [`gic_ppi_region`]).
fn ppi_frame(platform: &Platform, mpidr: u64) -> usize {
    match platform.gic {
        Some(crate::platform::Gic::V3 { gicr, .. }) => {
            crate::arch::aarch64::gicv3::find_redistributor_sgi_frame(gicr.start as usize, gicr.end as usize, mpidr)
                .unwrap_or(0)
        }
        Some(crate::platform::Gic::V2 { gicd, .. }) => gicd.start as usize,
        None => 0,
    }
}

/// The physical GIC registers the hyp maps (shared with the host) to keep the
/// virtual timer's PPI active while a guest's timer is asserted: GICv3's
/// redistributors, GICv2's distributor.
fn gic_ppi_region(platform: &Platform) -> Option<PhysRange> {
    match platform.gic {
        Some(crate::platform::Gic::V3 { gicr, .. }) => Some(gicr),
        Some(crate::platform::Gic::V2 { gicd, .. }) => Some(gicd),
        None => None,
    }
}

/// The page records' storage: whole pages from the pool, zeroed with `DC ZVA`
/// (every record zero: every page the host's).
fn allocate_records(bytes: usize) -> &'static mut [u32] {
    let size = bytes.next_multiple_of(PAGE_SIZE as usize).max(PAGE_SIZE as usize);
    let Ok(layout) = Layout::from_size_align(size, PAGE_SIZE as usize) else {
        fatal(format_args!("page records too large"));
    };
    // SAFETY: The layout has a non-zero size.
    let base = unsafe { alloc::alloc::alloc(layout) } as usize;
    if base == 0 {
        fatal(format_args!("no memory for the page records"));
    }
    // SAFETY: The pages are the fresh allocation above, mapped read-write.
    unsafe { cache::zero_pages(base, size) };
    // SAFETY: `size` bytes at `base` are allocated for good (never freed) and
    // zeroed, so they are valid u32s; nothing else refers to them.
    unsafe { core::slice::from_raw_parts_mut(base as *mut u32, bytes / 4) }
}

/// The pages holding the spin-table release addresses of the device tree's
/// CPUs (those in RAM). A host that could write one could release a CPU the
/// firmware parked at whatever exception level it parked it in (EL2 on the
/// Raspberry Pi), outside the hyp: the hyp keeps these pages for itself.
fn spin_table_release_pages(platform: &Platform) -> FixedVec<PhysRange, MAX_CPUS> {
    let mut pages: FixedVec<PhysRange, MAX_CPUS> = FixedVec::default();
    for cpu in platform.cpus.as_slice() {
        let crate::platform::EnableMethod::SpinTable { release_address } = cpu.enable_method else {
            continue;
        };
        let Some(page) = PhysRange::from_base_size(release_address & !(PAGE_SIZE - 1), PAGE_SIZE) else {
            continue;
        };
        let in_ram = platform.ram.as_slice().iter().any(|bank| bank.start <= page.start && page.end <= bank.end);
        if in_ram && !pages.as_slice().contains(&page) {
            pages.push(page);
        }
    }
    pages
}

/// Where the host was laid out.
struct HostLayout {
    image: PhysRange,
    fdt: PhysRange,
    entry: u64,
}

/// The range a host kernel Image at `address` (placed by the bootloader) runs
/// in: `image_size` bytes from there, which must be RAM clear of everything in
/// `taken`, at a 2 MiB boundary plus the Image's `text_offset`. A bad
/// placement stops the boot with its reason (the bootloader is trusted; this
/// catches mistakes).
fn host_kernel_range(platform: &Platform, address: u64, taken: &[PhysRange]) -> PhysRange {
    let in_ram =
        |range: PhysRange| platform.ram.as_slice().iter().any(|b| b.start <= range.start && range.end <= b.end);
    let header_range = PhysRange::from_base_size(address, hyp_abi::image_header::IMAGE_HEADER_SIZE as u64);
    if !header_range.is_some_and(in_ram) {
        fatal(format_args!("host kernel at {address:#x} (hyp.host-kernel=): not in RAM"));
    }
    // SAFETY: The header lies in RAM (checked above), where the bootloader put the
    // Image; MMU off, so this reads memory.
    let bytes = unsafe { core::slice::from_raw_parts(address as *const u8, hyp_abi::image_header::IMAGE_HEADER_SIZE) };
    let header = match hyp_abi::image_header::ImageHeader::parse(bytes) {
        Ok(header) => header,
        Err(e) => fatal(format_args!("host kernel at {address:#x}: {e}")),
    };
    if !address.wrapping_sub(header.text_offset).is_multiple_of(SIZE_2M) {
        fatal(format_args!(
            "host kernel at {address:#x}: must sit {:#x} (its text_offset) past a 2 MiB boundary",
            header.text_offset
        ));
    }
    let Some(range) = PhysRange::from_base_size(address, header.image_size).filter(|r| in_ram(*r)) else {
        fatal(format_args!("host kernel at {address:#x}: its {:#x} bytes are not all RAM", header.image_size));
    };
    if let Some(clash) = taken.iter().find(|t| t.overlaps(&range)) {
        fatal(format_args!("host kernel {range} overlaps {clash}, which is in use"));
    }
    range
}

/// Lays the host out: the bootloader's kernel Image where it is (`kernel`),
/// or else the embedded host shim copied to a 2 MiB-aligned base, and the
/// host's device tree, with the hyp carved out, written after it.
fn prepare_host(
    platform: &Platform,
    dma_policy: DmaPolicy,
    dtb: PhysRange,
    hyp: &[PhysRange],
    taken: &mut FixedVec<PhysRange, TAKEN_RANGES>,
    kernel: Option<PhysRange>,
) -> HostLayout {
    let image = match kernel {
        Some(range) => range,
        None => place_host_shim(platform, taken),
    };
    let ram = platform.ram.as_slice();
    // SAFETY: `dtb` is the boot device tree, already validated by `Platform::from_fdt`.
    let source = unsafe { core::slice::from_raw_parts(dtb.start as *const u8, dtb.size() as usize) };
    let mut regions: FixedVec<(u64, u64), { 2 + MAX_CPUS }> = FixedVec::default();
    for range in hyp {
        regions.push((range.start, range.size()));
    }
    let regions = regions.as_slice();
    // Withheld devices are disabled in the host's tree, so that it does not
    // probe them (and take aborts); unless the walk was cut short, when the
    // node indices past the cut are unknown.
    let disabled = platform.devices.disabled_nodes(dma_policy);
    let disabled = if platform.walk_truncated { &[][..] } else { disabled.as_slice() };
    let max = fdt_edit::max_output_size(source, regions.len(), disabled.len()).unwrap_or(0) as u64;
    let Some(fdt_slot) =
        align_up(max, PAGE_SIZE).and_then(|size| find_free(ram, taken.as_slice(), size, PAGE_SIZE, Placement::Lowest))
    else {
        fatal(format_args!("no room in RAM for the host device tree"));
    };
    taken.push(fdt_slot);
    // SAFETY: `fdt_slot` is RAM nobody uses (checked against every taken range).
    let output = unsafe { core::slice::from_raw_parts_mut(fdt_slot.start as *mut u8, fdt_slot.size() as usize) };
    let fdt_len = match fdt_edit::with_reserved_memory(source, regions, disabled, output) {
        Ok(len) => len as u64,
        Err(e) => fatal(format_args!("writing the host device tree: {e}")),
    };
    HostLayout { image, fdt: PhysRange { start: fdt_slot.start, end: fdt_slot.start + fdt_len }, entry: image.start }
}

/// Copies the embedded host shim Image to a 2 MiB-aligned base in host RAM
/// (plus its text_offset). MMU off: these are physical writes.
#[cfg(host_shim_embedded)]
fn place_host_shim(platform: &Platform, taken: &mut FixedVec<PhysRange, TAKEN_RANGES>) -> PhysRange {
    let host_image = &HOST_IMAGE.0;
    let header = match hyp_abi::image_header::ImageHeader::parse(host_image) {
        Ok(h) => h,
        Err(e) => fatal(format_args!("embedded host image: {e}")),
    };
    let span = align_up(header.text_offset + header.image_size, PAGE_SIZE).unwrap_or(u64::MAX);
    let Some(slot) = find_free(platform.ram.as_slice(), taken.as_slice(), span, SIZE_2M, Placement::Lowest) else {
        fatal(format_args!("no room in RAM for the host image ({span:#x} bytes)"));
    };
    taken.push(slot);
    let image = PhysRange { start: slot.start + header.text_offset, end: slot.end };
    if image.size() < host_image.len() as u64 {
        fatal(format_args!("embedded host image: {:#x} bytes, more than its image_size", host_image.len()));
    }
    // SAFETY: `slot` is RAM nobody uses (checked against every taken range
    // above), and the Image's bytes fit in it (just checked).
    unsafe { bulk_copy::copy(image.start as *mut u8, host_image.as_ptr(), host_image.len()) };
    image
}

#[cfg(not(host_shim_embedded))]
fn place_host_shim(_: &Platform, _: &mut FixedVec<PhysRange, TAKEN_RANGES>) -> PhysRange {
    fatal(format_args!("this hyp was built without a host image (use scripts/build-image)"))
}

fn report_boot(platform: &Platform, dma_policy: DmaPolicy, image: PhysRange, pool: PhysRange) {
    log::info!(
        "pkvm-style hyp v{} at EL2 (MIDR {:#x}, MPIDR {:#x})",
        env!("CARGO_PKG_VERSION"),
        MIDR_EL1.get(),
        MPIDR_EL1.get()
    );
    let total: u64 = platform.ram.as_slice().iter().map(PhysRange::size).sum();
    log::info!("RAM: {} MiB in {} bank(s)", total >> 20, platform.ram.len());
    for bank in platform.ram.as_slice() {
        log::info!("  RAM bank {bank}");
    }
    for r in platform.reserved() {
        log::info!("  reserved {r} (left alone)");
    }
    if platform.ram.overflowed() || platform.reserved.overflowed() {
        log::warn!("device tree lists more memory ranges than the hyp tracks; extra ranges ignored");
    }
    match (platform.uart, platform.unsupported_console) {
        (Some(uart), _) => log::info!("UART: {:?} at {}", uart.model, uart.regs),
        (None, Some(compatible)) => log::warn!("UART: unsupported console \"{compatible}\": no hyp console"),
        (None, None) => log::warn!("UART: none usable"),
    }
    match platform.gic {
        Some(gic) => log::info!("GIC: {gic}"),
        None => log::warn!("GIC: none found; virtual interrupts will not be available"),
    }
    log::info!("CPUs: {} in the device tree", platform.cpus.len());
    for cpu in platform.cpus.as_slice() {
        log::info!("  CPU MPIDR {:#x}, enable method {:?}", cpu.mpidr, cpu.enable_method);
        let is_boot_cpu = cpu.mpidr & cpus::MPIDR_AFFINITY_MASK == MPIDR_EL1.get() & cpus::MPIDR_AFFINITY_MASK;
        if let crate::platform::EnableMethod::SpinTable { release_address } = cpu.enable_method {
            let kept = spin_table_release_pages(platform).as_slice().iter().any(|p| p.contains(release_address));
            let fate = if kept {
                "the page of its release address is the hyp's, out of the host's reach"
            } else {
                "its release address is not in RAM, and the hyp cannot keep it from the host"
            };
            if is_boot_cpu {
                log::info!("  (the boot CPU: {fate})");
            } else {
                log::warn!("  CPU MPIDR {:#x} stays off: the hyp starts CPUs through PSCI only; {fate}", cpu.mpidr);
            }
        } else if !is_boot_cpu && cpu.enable_method == crate::platform::EnableMethod::Unknown {
            log::warn!("  CPU MPIDR {:#x} stays off: no enable method the hyp knows", cpu.mpidr);
        }
    }
    if platform.cpus.overflowed() {
        log::warn!("more than {} CPUs: the rest stay off", crate::platform::MAX_CPUS);
    }
    match platform.psci {
        Some(conduit) => log::info!("PSCI via {conduit:?}"),
        None => log::warn!("no PSCI node: power-off will not work"),
    }
    log::info!("hyp memory: image {image}, pool {pool}");
    report_devices(platform, dma_policy);
}

/// The device policy, one line per run of regions of one node kind and class.
fn report_devices(platform: &Platform, dma_policy: DmaPolicy) {
    let regions = platform.devices.regions.as_slice();
    let mut i = 0;
    while let Some(first) = regions.get(i) {
        let run = regions[i..].iter().take_while(|r| r.name == first.name && r.class == first.class).count();
        let last = regions[i + run - 1];
        let fate = if first.class.host_may_map(dma_policy) { "the host's" } else { "withheld" };
        log::info!(
            "device {} x{run} [{:#x}..{:#x}): {}, {fate}",
            first.name,
            first.range.start,
            last.range.end,
            first.class.description()
        );
        i += run;
    }
    if platform.devices.regions.overflowed() {
        log::warn!("more device regions than the hyp records: the rest are withheld from the host");
    }
    if platform.devices.withheld_nodes.overflowed() || platform.walk_truncated {
        log::warn!("not every withheld device could be disabled in the host's device tree: the host may probe one and take an abort");
    }
    if platform.dma_permissive {
        log::warn!("**************************************************************************");
        log::warn!("hyp.dma=permissive: the host gets its DMA-capable devices with no IOMMU.");
        log::warn!("Protected VMs and the hyp itself are NOT isolated from DMA the host programs.");
        log::warn!("**************************************************************************");
    } else {
        log::info!("DMA policy: strict (bus masters withheld from the host; hyp.dma=permissive gives them)");
    }
}

/// Rust entry when the image was entered at EL1 (from `head.S`), MMU off: say why
/// this cannot work and power off with a failure status.
#[no_mangle]
extern "C" fn boot_not_at_el2(dtb: usize) -> ! {
    read_platform(dtb, &mut Platform::default());
    fatal(format_args!(
        "entered at EL1, but this hypervisor must be entered at EL2: under QEMU add virtualization=on to -M (e.g. -M virt,virtualization=on); on a board, have the firmware or bootloader enter the Image at EL2"
    ))
}
