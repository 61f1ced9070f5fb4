//! The hostile host: a seeded stream of hypercalls mixing real lifecycle work
//! (create, map, run, teardown, reclaim, share, donate) with hostile arguments
//! (stale and forged handles, hyp and device memory, unaligned and wrapping
//! ranges, huge counts, vCPUs out of range, unknown function IDs). After every
//! call the hyp's invariant checker must report nothing; every so often the host
//! tries to read each protected VM's memory and must be refused. At the end
//! everything is torn down and every page must be back with the host.
//!
//! Runs instead of the checks when the bootargs say `shim.fuzz-calls=N`
//! (`shim.fuzz-seed=S` picks the seed); prints the seed and call of a failure.

use crate::arch::{guest_bench, probe_read};
use crate::checks::{check, probe_hyp_memory, Access};
use crate::hypercall::{self, raw_call};
use crate::memory_checks::{memcache_pages, stress_page, MEMCACHE_PAGES};
use crate::platform::HostPlatform;
use hyp_abi::{vendor_hyp_fn, HostCall, HOST_CALL_BASE};

const GUEST_ENTRY: u64 = 0x8000_0000;
/// Live VMs the fuzzer keeps track of.
const SLOTS: usize = 8;
/// Pages of host memory the hostile calls aim at: below the hyp's pool (the
/// last carve-out), far from the shim's own memory, so that even a 512-page
/// range from them only ever reaches host memory nobody uses, or the hyp's.
const HOSTILE_PAGES: u64 = 16;
/// Every VM handle the fuzzer ever got, for the final cleanup.
const MAX_HANDLES: usize = 1024;
/// IPAs the hostile `VM_MAP`s use (page counts 1 or 2 there).
const HOSTILE_IPAS: [u64; 3] = [0, GUEST_ENTRY + 0x1000, GUEST_ENTRY + 0x2000];

/// xorshift64*.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick(&mut self, values: &[u64]) -> u64 {
        values[self.below(values.len() as u64) as usize]
    }
}

/// A VM the fuzzer created: handle, protected, the page it holds (if any).
#[derive(Clone, Copy)]
struct Vm {
    handle: u64,
    protected: bool,
    page: Option<u64>,
    torn_down: bool,
}

/// Runs `calls` hostile calls with `seed`; true when the hyp held.
pub fn run(platform: &HostPlatform, calls: u64, seed: u64) -> bool {
    log::info!("hostile host: {calls} calls, seed {seed}");
    let mut rng = Rng(seed.max(1));
    let hyp = platform.hyp_regions().first().map_or(0, |r| r.0);
    let pool = platform.hyp_regions().last().map_or(0, |r| r.0);
    let hostile_base = (pool & !0x1f_ffff).saturating_sub(4 << 20);
    let hostile_page = |i: u64| hostile_base + i * 4096;
    let mut handles = [0u64; MAX_HANDLES];
    let mut handle_count = 0usize;
    let uart = platform.uart_base as u64;
    let mut vms: [Option<Vm>; SLOTS] = [None; SLOTS];
    if hypercall::donate_hyp(memcache_pages(), MEMCACHE_PAGES as u64).is_err() {
        return check!(false, "hostile host: donate the memcache");
    }
    let code = guest_bench();
    let (device_registers, device_register_count) = crate::device_attacks::hostile_registers(platform);
    let device_registers = &device_registers[..device_register_count];
    for call in 0..calls {
        let which = rng.below(18);
        let handle_pool = |rng: &mut Rng, vms: &[Option<Vm>; SLOTS]| -> u64 {
            let live = vms[rng.below(SLOTS as u64) as usize].map_or(0, |v| v.handle);
            {
                let options = [live, live, live ^ 1 << 32, live + 1, 0, u64::MAX, rng.0];
                rng.pick(&options)
            }
        };
        let address = |rng: &mut Rng| -> u64 {
            let scratch = hostile_page(rng.below(HOSTILE_PAGES));
            {
                let options = [
                    scratch,
                    scratch,
                    hostile_page(HOSTILE_PAGES - 1),
                    hyp,
                    uart,
                    0,
                    platform.ram_end,
                    scratch + 8,
                    !0xfff,
                    memcache_pages(),
                    rng.0,
                ];
                rng.pick(&options)
            }
        };
        let count = |rng: &mut Rng| {
            let options = [1, 1, 2, 0, 511, 512, 513, u64::MAX / 4096 + 1];
            rng.pick(&options)
        };
        match which {
            // Legitimate-looking lifecycle work.
            0 | 1 => {
                let slot = rng.below(SLOTS as u64) as usize;
                if vms[slot].is_none() {
                    let protected = rng.below(2) == 0;
                    if let Ok(handle) = hypercall::vm_create(
                        if protected { hyp_abi::VmType::Protected } else { hyp_abi::VmType::NonProtected },
                        1 + rng.below(2),
                    ) {
                        log::debug!("fuzz {call}: slot {slot} <- VM {handle:#x} protected {protected}");
                        if handle_count == MAX_HANDLES {
                            handle_count = forget_dead_handles(&mut handles);
                        }
                        if let Some(h) = handles.get_mut(handle_count) {
                            *h = handle;
                            handle_count += 1;
                            vms[slot] = Some(Vm { handle, protected, page: None, torn_down: false });
                        } else {
                            // Nothing may outlive the final cleanup untracked.
                            let _ = hypercall::vm_teardown(handle);
                        }
                    }
                }
            }
            2 => {
                let slot = rng.below(SLOTS as u64) as usize;
                if let Some(vm) = vms[slot].as_mut() {
                    // The VMs' own pages, which no hostile call reaches.
                    let pa = stress_page(slot);
                    if vm.page.is_none() && !vm.torn_down {
                        if probe_quietly(pa) {
                            return check!(
                                false,
                                "hostile host seed {seed} call {call}: the VMs' own page {pa:#x} is not the host's"
                            );
                        }
                        for (i, byte) in code.iter().enumerate() {
                            // SAFETY: The page is the shim's and not given away (page is None).
                            unsafe { core::ptr::write_volatile((pa as *mut u8).add(i), *byte) };
                        }
                        let mapped = hypercall::vm_map(vm.handle, pa, GUEST_ENTRY, 1);
                        log::debug!("fuzz {call}: slot {slot} VM {:#x} map {pa:#x}: {mapped:?}", vm.handle);
                        if mapped.is_ok() {
                            vm.page = Some(pa);
                            let _ = hypercall::vcpu_init(vm.handle, 0, GUEST_ENTRY, 2);
                        }
                    }
                }
            }
            3 => {
                let slot = rng.below(SLOTS as u64) as usize;
                if let Some(vm) = vms[slot] {
                    let _ = hypercall::vcpu_run(
                        vm.handle,
                        {
                            let options = [0, 0, 1, 7, 8, u64::MAX];
                            rng.pick(&options)
                        },
                        rng.next(),
                    );
                }
            }
            4 => {
                let slot = rng.below(SLOTS as u64) as usize;
                if let Some(vm) = vms[slot].as_mut() {
                    if hypercall::vm_teardown(vm.handle).is_ok() {
                        vm.torn_down = true;
                    }
                    if vm.torn_down {
                        let gone = match vm.page {
                            Some(_) if vm.protected => hypercall::vm_reclaim(vm.handle, GUEST_ENTRY, 1).is_ok(),
                            _ => true,
                        };
                        log::debug!("fuzz {call}: slot {slot} VM {:#x} torn down, gone {gone}", vm.handle);
                        if gone {
                            vms[slot] = None;
                        }
                    }
                }
            }
            // Hostile arguments to every call.
            5 => {
                let _ = hypercall::share_hyp(address(&mut rng), count(&mut rng));
            }
            6 => {
                let _ = hypercall::unshare_hyp(address(&mut rng), count(&mut rng));
            }
            7 => {
                let _ = hypercall::donate_hyp(address(&mut rng), count(&mut rng));
            }
            8 => {
                let _ = hypercall::reclaim_hyp(address(&mut rng), count(&mut rng));
            }
            9 => {
                let ipa = {
                    let options = [HOSTILE_IPAS[0], HOSTILE_IPAS[1], HOSTILE_IPAS[2], GUEST_ENTRY + 8, 1 << 48, !0xfff];
                    rng.pick(&options)
                };
                let pages = {
                    let options = [1, 2, 0, 513, u64::MAX / 4096 + 1];
                    rng.pick(&options)
                };
                let _ = hypercall::vm_map(handle_pool(&mut rng, &vms), address(&mut rng), ipa, pages);
            }
            10 => {
                let h = handle_pool(&mut rng, &vms);
                let _ = hypercall::vcpu_init(
                    h,
                    {
                        let options = [0, 1, 8, u64::MAX];
                        rng.pick(&options)
                    },
                    rng.next(),
                    rng.next(),
                );
            }
            11 => {
                let h = handle_pool(&mut rng, &vms);
                let reg = {
                    let options = [0, 30, 31, 32, 33, 34, u64::MAX];
                    rng.pick(&options)
                };
                let _ = raw_call(
                    HostCall::VcpuGetReg.function_id(),
                    [
                        h,
                        {
                            let options = [0, 1, 9];
                            rng.pick(&options)
                        },
                        reg,
                        0,
                        0,
                        0,
                    ],
                );
                let _ = raw_call(HostCall::VcpuSetReg.function_id(), [h, 0, reg, rng.next(), 0, 0]);
            }
            12 => {
                let h = handle_pool(&mut rng, &vms);
                let _ = hypercall::vm_info(h);
                let _ = hypercall::vm_reclaim(
                    h,
                    {
                        // Never GUEST_ENTRY: a tracked VM's page is the fuzzer's to reclaim.
                        let options = [GUEST_ENTRY + 0x1000, GUEST_ENTRY + 8, !0xfff];
                        rng.pick(&options)
                    },
                    count(&mut rng),
                );
            }
            13 => {
                // Teardown of forged and stale handles (live ones go through case 4).
                let h = handle_pool(&mut rng, &vms);
                if !vms.iter().flatten().any(|v| v.handle == h) {
                    let _ = hypercall::vm_teardown(h);
                }
            }
            14 => {
                // Every function ID of the vendor range and around it.
                let id = {
                    let options = [
                        u64::from(vendor_hyp_fn(HOST_CALL_BASE + rng.below(0x100) as u16)),
                        u64::from(vendor_hyp_fn(rng.below(0x10000) as u16)),
                        0xC500_0000 | rng.below(0x10000),
                        0x8600_0000 | rng.below(0x10000),
                        rng.next(),
                    ];
                    rng.pick(&options)
                };
                let r = raw_call(id as u32, [rng.next(), rng.next(), rng.next(), rng.next(), rng.next(), rng.next()]);
                let _ = r;
            }
            15 => {
                // Interrupts for live, stale and forged VMs, good and bad INTIDs.
                let h = handle_pool(&mut rng, &vms);
                let vcpu = {
                    let options = [0, 0, 1, 8, u64::MAX];
                    rng.pick(&options)
                };
                let intid = {
                    let options = [0, 27, 40, 95, 96, 1019, 1020, u64::from(u32::MAX), rng.next()];
                    rng.pick(&options)
                };
                let _ = hypercall::vcpu_inject_irq(h, vcpu, intid);
                // And the IRQ line of boards without a GIC (refused with one).
                let level = {
                    let options = [0, 1, 2, u64::MAX];
                    rng.pick(&options)
                };
                let _ = hypercall::vcpu_set_irq_line(h, vcpu, level);
            }
            16 => {
                // Device registers that would make a bus master or the GIC write
                // memory (the ITS, the LPI tables, fw_cfg DMA, virtio): each
                // write must be refused.
                if let Some(&(register, narrow)) =
                    device_registers.get(rng.below(device_registers.len().max(1) as u64) as usize)
                {
                    let value = address(&mut rng) | rng.pick(&[0, 1, 1 << 63, 0xfff]);
                    let refused = if narrow {
                        // GICR_CTLR: only a write that sets EnableLPIs is refused
                        // (the SMMU's 32-bit registers are refused whatever).
                        crate::device_attacks::write32_refused(register, value as u32 | 1)
                    } else {
                        crate::device_attacks::write_refused(register, value)
                    };
                    if !refused {
                        return check!(
                            false,
                            "hostile host seed {seed} call {call}: device register write at {register:#x} not refused"
                        );
                    }
                }
            }
            _ => {
                // The host tries to read every protected VM's memory.
                for vm in vms.iter().flatten() {
                    if let (true, Some(pa)) = (vm.protected, vm.page) {
                        if !probe_quietly(pa) {
                            return check!(
                                false,
                                "hostile host seed {seed} call {call}: read protected VM memory at {pa:#x}"
                            );
                        }
                    }
                }
            }
        }
        match hypercall::check_invariants() {
            Ok(report) if report.violations == 0 => {}
            other => return check!(false, "hostile host seed {seed} call {call} (kind {which}): invariants {other:?}"),
        }
    }
    // Everything back: every VM gone (tracked or not), every page the host's.
    for &handle in &handles[..handle_count] {
        let _ = hypercall::vm_teardown(handle);
        for ipa in [
            GUEST_ENTRY,
            HOSTILE_IPAS[0],
            HOSTILE_IPAS[0] + 0x1000,
            HOSTILE_IPAS[1],
            HOSTILE_IPAS[2],
            HOSTILE_IPAS[2] + 0x1000,
        ] {
            let _ = hypercall::vm_reclaim(handle, ipa, 1);
        }
    }
    // Shares and donations of the hostile pages (ranges reach 512 pages on).
    for i in 0..HOSTILE_PAGES + 512 {
        let _ = hypercall::unshare_hyp(hostile_page(i), 1);
        let _ = hypercall::reclaim_hyp(hostile_page(i), 1);
    }
    // The hostile calls may have reclaimed some memcache pages already: take the
    // rest back page by page.
    for i in 0..MEMCACHE_PAGES as u64 {
        let _ = hypercall::reclaim_hyp(memcache_pages() + i * 4096, 1);
    }
    let mut passed = true;
    let alive =
        handles[..handle_count].iter().filter(|&&h| hypercall::vm_info(h) != Err(hyp_abi::HypError::NoSuchVm)).count();
    passed &= check!(alive == 0, "hostile host: all {handle_count} VMs it still tracks are gone ({alive} left)");
    let after = hypercall::check_invariants();
    passed &= check!(
        matches!(after, Ok(r) if r.violations == 0 && r.memcache_free == 0 && r.memcache_used == 0),
        "hostile host: {calls} calls with seed {seed} and the hyp held; every page is back ({after:?})"
    );
    passed &= probe_hyp_memory(hyp, Access::Read);
    passed
}

/// Drops the handles of VMs that are wholly gone (the hyp answers `NoSuchVm`
/// only once a VM is torn down and every page of it reclaimed), keeping the
/// rest at the front; returns how many are kept. Long runs create more VMs than
/// `MAX_HANDLES`, and every live one must be found by the final cleanup.
fn forget_dead_handles(handles: &mut [u64; MAX_HANDLES]) -> usize {
    let mut kept = 0;
    for i in 0..MAX_HANDLES {
        if hypercall::vm_info(handles[i]) != Err(hyp_abi::HypError::NoSuchVm) {
            handles[kept] = handles[i];
            kept += 1;
        }
    }
    kept
}

/// Reads `pa` and reports whether the hyp refused it (without logging success).
fn probe_quietly(pa: u64) -> bool {
    crate::checks::arm_probe();
    // SAFETY: The handler is armed to skip the abort; `pa` is page-aligned.
    let _ = unsafe { probe_read(pa) };
    crate::checks::probe_was_refused()
}
