//! Issue 19 item 5 from the host's side: nothing of a protected guest leaks
//! through the PMU, trace, RAS, implementation-defined registers or state
//! left in the CPU, and nothing of its memory survives a reset.
//!
//! - The PMU: the host programs event counter 0 (INST_RETIRED where the PMU
//!   counts it, which QEMU does only under `-icount`; else CPU_CYCLES) to
//!   count at EL1 only, counter 1 to count at EL2 only, and the cycle counter
//!   at EL1, then runs a guest that executes a known number of instructions
//!   and makes calls the hyp answers itself, once in a non-protected VM (whose
//!   guest the host may count) and once in a protected VM (whose guest it must
//!   not): the protected run must show (next to) nothing.
//! - A protected guest probes what HCR_EL2.TID1, TERR, TLOR and CPTR_EL2.TTA
//!   now trap: REVIDR_EL1 and AIDR_EL1 read as the host reads them,
//!   ERRIDR_EL1 reads 0 (or is UNDEFINED without RAS), LORID_EL1 and the trace
//!   unit's TRCIDR0 are UNDEFINED; and where the CPU has TPIDR2_EL0 (SME), the
//!   value the guest writes there never reaches the host, whose own comes back.
//! - `shim.reset-scrub` in the bootargs: a protected guest fills a page in the
//!   middle of RAM, the host asks for PSCI SYSTEM_RESET with the VM alive, and
//!   after the reboot (QEMU keeps RAM) the page must read zero.
//!
//! Its guests are in `guests/leak.S`. Its VMs and exits are not in the VM
//! checks' summary.

use crate::guests::{self, load, GUEST_ENTRY, GUEST_UART};
use crate::harness::hypercall;
use crate::harness::platform::HostPlatform;
use crate::harness::report::check;
use crate::harness::scratch::{memcache_pages, page, MEMCACHE_PAGES};
use core::arch::asm;
use hyp_abi::{Exit, VmType};

/// Loop iterations of the counting guest: 2^23, so 2^24 instructions at EL1
/// and 2^11 calls the hyp answers.
const COUNT: u64 = 1 << 23;
/// Runs before a guest is declared stuck (interrupts end runs early).
const MAX_RUNS: usize = 4096;

/// PMU events: INST_RETIRED and CPU_CYCLES.
const INST_RETIRED: u64 = 0x08;
const CPU_CYCLES: u64 = 0x11;
/// PMEVTYPER/PMCCFILTR filters: count at EL1 only (U: not EL0; NSH clear:
/// not EL2), or at EL2 only (P: not EL1; U; NSH: EL2).
const AT_EL1: u64 = 1 << 30;
const AT_EL2: u64 = 1 << 31 | 1 << 30 | 1 << 27;
/// PMCR_EL0: E, P (event counters to 0), C (cycle counter to 0), LC.
const PMCR_START: u64 = 1 | 1 << 1 | 1 << 2 | 1 << 6;

macro_rules! read_reg {
    ($name:literal) => {{
        let value: u64;
        // SAFETY: Reading this EL1/EL0 register has no side effect; the hyp
        // leaves the PMU to the host (MDCR_EL2.TPM clear).
        unsafe { asm!(concat!("mrs {}, ", $name), out(reg) value, options(nomem, nostack, preserves_flags)) };
        value
    }};
}

macro_rules! write_reg {
    ($name:literal, $value:expr) => {{
        let value: u64 = $value;
        // SAFETY: Programming the host's own PMU (or its TPIDR2_EL0) from EL1
        // has no memory-safety effect.
        unsafe { asm!(concat!("msr ", $name, ", {}"), "isb", in(reg) value, options(nostack, preserves_flags)) };
    }};
}

/// What the counters saw over one run: event counter 0 (EL1), event
/// counter 1 (EL2, if the PMU has two), the cycle counter (EL1).
#[derive(Clone, Copy, Debug, Default)]
struct Counts {
    el1: u64,
    el2: u64,
    cycles: u64,
}

/// Runs the counting guest in a VM of type `ty` with the counters running;
/// `Err` says what went wrong.
fn counted_run(ty: VmType, code_page: u64, two_counters: bool) -> Result<Counts, &'static str> {
    load(code_page, guests::leak_count());
    let handle = hypercall::vm_create(ty, 1).map_err(|_| "VM_CREATE")?;
    let mut result = (|| {
        hypercall::vm_map(handle, code_page, GUEST_ENTRY, 1).map_err(|_| "VM_MAP")?;
        hypercall::vcpu_init(handle, 0, GUEST_ENTRY, COUNT).map_err(|_| "VCPU_INIT")?;
        write_reg!("pmcr_el0", PMCR_START);
        let enabled = 1 | u64::from(two_counters) << 1 | 1 << 31;
        write_reg!("pmcntenset_el0", enabled);
        let start = Counts {
            el1: read_reg!("pmevcntr0_el0"),
            el2: if two_counters { read_reg!("pmevcntr1_el0") } else { 0 },
            cycles: read_reg!("pmccntr_el0"),
        };
        let mut off = false;
        for _ in 0..MAX_RUNS {
            match hypercall::vcpu_run(handle, 0, 0) {
                Ok(Exit::SystemOff) => {
                    off = true;
                    break;
                }
                Ok(Exit::Interrupted) => {}
                _ => return Err("the counting guest stopped unexpectedly"),
            }
        }
        let end = Counts {
            el1: read_reg!("pmevcntr0_el0"),
            el2: if two_counters { read_reg!("pmevcntr1_el0") } else { 0 },
            cycles: read_reg!("pmccntr_el0"),
        };
        let still_enabled = read_reg!("pmcntenset_el0") & enabled == enabled;
        write_reg!("pmcntenclr_el0", enabled);
        if !off {
            return Err("the counting guest did not finish");
        }
        if !still_enabled {
            return Err("the host's counters were left disabled after the run");
        }
        Ok(Counts {
            el1: end.el1.wrapping_sub(start.el1),
            el2: end.el2.wrapping_sub(start.el2),
            cycles: end.cycles.wrapping_sub(start.cycles),
        })
    })();
    if hypercall::vm_teardown(handle).is_err()
        || (ty == VmType::Protected && hypercall::vm_reclaim(handle, GUEST_ENTRY, 1).is_err())
    {
        result = Err("teardown");
    }
    result
}

/// The PMU check (see the module comment).
fn pmu_check() -> bool {
    // ID_AA64DFR0_EL1.PMUVer (through the hyp: HCR_EL2.TID3).
    let pmu_version = read_reg!("id_aa64dfr0_el1") >> 8 & 0xf;
    if pmu_version == 0 || pmu_version == 0xf {
        log::info!("no PMUv3 (PMUVer {pmu_version}): the PMU check is left out");
        return true;
    }
    let counters = read_reg!("pmcr_el0") >> 11 & 0x1f;
    if counters == 0 {
        log::info!("a PMU without event counters: the PMU check is left out");
        return true;
    }
    let two = counters >= 2;
    // PMCEID0_EL0 bit 8: INST_RETIRED is counted (QEMU: only under -icount).
    let exact = read_reg!("pmceid0_el0") >> INST_RETIRED & 1 != 0;
    let (event, name) = if exact { (INST_RETIRED, "INST_RETIRED") } else { (CPU_CYCLES, "CPU_CYCLES") };
    write_reg!("pmevtyper0_el0", event | AT_EL1);
    if two {
        write_reg!("pmevtyper1_el0", event | AT_EL2);
    }
    write_reg!("pmccfiltr_el0", AT_EL1);
    let runs = [VmType::NonProtected, VmType::Protected].map(|ty| counted_run(ty, page(1), two));
    let (open, mut hidden) = match runs {
        [Ok(open), Ok(hidden)] => (open, hidden),
        [a, b] => {
            write_reg!("pmcr_el0", 0);
            return check!(false, "PMU check: {:?} / {:?}", a.err(), b.err());
        }
    };
    if !exact {
        // Without -icount the counts are times, which a busy machine
        // stretches (the full boot matrix runs two QEMUs on two cores): the
        // quietest of three protected runs. A leak would show in every one.
        for _ in 0..2 {
            match counted_run(VmType::Protected, page(1), two) {
                Ok(again) if again.el1 < hidden.el1 => hidden = again,
                Ok(_) => {}
                Err(error) => {
                    write_reg!("pmcr_el0", 0);
                    return check!(false, "PMU check, protected run again: {error}");
                }
            }
        }
    }
    write_reg!("pmcr_el0", 0);
    let guest_instructions = 2 * COUNT;
    let hidden_at_el1 = if exact {
        // Every guest instruction of the non-protected run is counted, none
        // of the protected one's: what is left is the host's own calls.
        open.el1 >= guest_instructions && hidden.el1 < COUNT / 64 && hidden.cycles < COUNT / 64
    } else {
        // Time at EL1 (QEMU counts cycles as nanoseconds without -icount).
        open.el1 > 16 * hidden.el1.max(1) && open.cycles > 16 * hidden.cycles.max(1) && open.el1 >= 100_000
    };
    let mut passed = check!(
        hidden_at_el1,
        "the host's PMU counted none of the protected guest's {guest_instructions} instructions: {name} at EL1 \
         non-protected {}, protected {}; cycle counter at EL1 non-protected {}, protected {}",
        open.el1,
        hidden.el1,
        open.cycles,
        hidden.cycles
    );
    if two && exact {
        // The hyp's work for the guest's calls (EL2) is not counted either:
        // what is left is its work for the host's VCPU_RUN.
        passed &= check!(
            open.el2 >= (COUNT >> 12) * 32 && hidden.el2 * 8 < open.el2,
            "nor the hyp's work for it at EL2: {name} at EL2 non-protected {}, protected {}",
            open.el2,
            hidden.el2
        );
    } else if two {
        log::info!("{name} at EL2 (not exact without -icount): non-protected {}, protected {}", open.el2, hidden.el2);
    }
    passed
}

/// The probing guest's reports: (value, ESR of the exception it took).
#[derive(Clone, Copy, Debug)]
struct Probe {
    revidr: (u64, u64),
    aidr: (u64, u64),
    erridr: (u64, u64),
    lorid: (u64, u64),
    tpidr2: (u64, u64),
    trcidr0: (u64, u64),
}

/// Runs the probing guest in a protected VM with `secret` for TPIDR2_EL0.
fn probe(code_page: u64, secret: u64) -> Result<Probe, &'static str> {
    load(code_page, guests::leak_probe());
    let handle = hypercall::vm_create(VmType::Protected, 1).map_err(|_| "VM_CREATE")?;
    let mut words = [0u64; 12];
    let mut result = (|| {
        hypercall::vm_map(handle, code_page, GUEST_ENTRY, 1).map_err(|_| "VM_MAP")?;
        hypercall::vcpu_init(handle, 0, GUEST_ENTRY, secret).map_err(|_| "VCPU_INIT")?;
        for _ in 0..MAX_RUNS {
            match hypercall::vcpu_run(handle, 0, 0) {
                Ok(Exit::Mmio { ipa, size_bytes: 8, write: true, value })
                    if (GUEST_UART + 0x100..GUEST_UART + 0x160).contains(&ipa) =>
                {
                    words[((ipa - GUEST_UART - 0x100) / 8) as usize] = value;
                }
                Ok(Exit::Interrupted) => {}
                Ok(Exit::SystemOff) => return Ok(()),
                _ => return Err("the probing guest stopped unexpectedly"),
            }
        }
        Err("the probing guest did not finish")
    })();
    if hypercall::vm_teardown(handle).is_err() || hypercall::vm_reclaim(handle, GUEST_ENTRY, 1).is_err() {
        result = Err("teardown");
    }
    result.map(|()| Probe {
        revidr: (words[0], words[1]),
        aidr: (words[2], words[3]),
        erridr: (words[4], words[5]),
        lorid: (words[6], words[7]),
        tpidr2: (words[8], words[9]),
        trcidr0: (words[10], words[11]),
    })
}

/// ESR_EL1 of an UNDEFINED instruction (EC 0): as the CPU reports it, or as
/// the hyp injects it.
fn undefined(esr: u64) -> bool {
    esr != 0 && esr >> 26 == 0
}

/// The probing check (see the module comment).
fn probe_check() -> bool {
    const SECRET: u64 = 0x5ec7_e700_0000_7e57;
    let probed = match probe(page(1), SECRET) {
        Ok(p) => p,
        Err(why) => return check!(false, "protected probing guest: {why}"),
    };
    let mut passed = true;
    let (revidr, aidr) = (read_reg!("revidr_el1"), read_reg!("aidr_el1"));
    passed &= check!(
        probed.revidr == (revidr, 0) && probed.aidr == (aidr, 0),
        "a protected guest reads REVIDR_EL1 and AIDR_EL1 through the hyp as the host reads them: {:x?} {:x?} (host {revidr:#x} {aidr:#x})",
        probed.revidr,
        probed.aidr
    );
    // ID_AA64PFR0_EL1.RAS (through the hyp).
    let ras = read_reg!("id_aa64pfr0_el1") >> 28 & 0xf != 0;
    passed &= if ras {
        check!(
            probed.erridr == (0, 0),
            "RAS error records read as zero in a protected guest: ERRIDR_EL1 {:x?}",
            probed.erridr
        )
    } else {
        check!(undefined(probed.erridr.1), "ERRIDR_EL1 is UNDEFINED without RAS: {:x?}", probed.erridr)
    };
    passed &= check!(
        undefined(probed.lorid.1) && probed.lorid.0 == u64::MAX,
        "LORID_EL1 is UNDEFINED in a protected guest (LORegions hidden): {:x?}",
        probed.lorid
    );
    passed &= check!(
        undefined(probed.trcidr0.1) && probed.trcidr0.0 == u64::MAX,
        "the trace unit (TRCIDR0) is UNDEFINED in a protected guest: {:x?}",
        probed.trcidr0
    );
    if undefined(probed.tpidr2.1) {
        log::info!("TPIDR2_EL0 is not implemented (no SME): nothing of it to switch");
        return passed;
    }
    // The CPU has TPIDR2_EL0: the guest's value stays the guest's, and the
    // host's own comes back, run after run.
    let after_first = read_reg!("s3_3_c13_c0_5");
    write_reg!("s3_3_c13_c0_5", 0x4057_0000_0000_0002);
    let second = probe(page(1), SECRET ^ 0xffff);
    let after_second = read_reg!("s3_3_c13_c0_5");
    write_reg!("s3_3_c13_c0_5", 0);
    passed &= check!(
        probed.tpidr2 == (SECRET, 0)
            && after_first != SECRET
            && matches!(second, Ok(p) if p.tpidr2 == (SECRET ^ 0xffff, 0))
            && after_second == 0x4057_0000_0000_0002,
        "TPIDR2_EL0 is switched: the protected guest's {:#x} never reaches the host, which reads {after_first:#x}, \
         then its own {after_second:#x} after a second run",
        probed.tpidr2.0
    );
    passed
}

/// Marks the page after the protected guest's page across the reset.
const RESET_MAGIC: u64 = 0x5c2b_0000_0000_2e5e;

fn read_word(address: u64) -> u64 {
    // SAFETY: `address` is an 8-byte aligned host page in the middle of RAM
    // that nothing else uses (the shim's MMU is off).
    unsafe { core::ptr::read_volatile(address as *const u64) }
}

fn write_word(address: u64, value: u64) {
    // SAFETY: As for `read_word`.
    unsafe { core::ptr::write_volatile(address as *mut u64, value) }
}

/// The reset check: before the reset, a protected guest fills the page in
/// the middle of RAM and the host resets the machine with the VM alive
/// (never returns if the reset happens); after it, the page must read zero.
fn reset_scrub(platform: &HostPlatform) -> bool {
    const SEED: u64 = 0x5ec7_e700_0000_0000;
    let data = (platform.ram_start + (platform.ram_end - platform.ram_start) / 2) & !0xfff;
    let mark = data + 0x1000;
    if read_word(mark) == RESET_MAGIC && read_word(mark + 8) == data {
        write_word(mark, 0);
        let left = (0..512).map(|i| read_word(data + 8 * i)).find(|&w| w != 0);
        return check!(
            left.is_none(),
            "after PSCI SYSTEM_RESET, the protected VM's page at {data:#x} reads zero (first word left: {left:x?})"
        );
    }
    let memcache = memcache_pages();
    let donated = hypercall::donate_hyp(memcache, MEMCACHE_PAGES as u64).is_ok();
    load(page(1), guests::memtest());
    let Ok(handle) = hypercall::vm_create(VmType::Protected, 1) else {
        return check!(false, "reset scrub: VM_CREATE (memcache donated: {donated})");
    };
    let given = hypercall::vm_map(handle, page(1), GUEST_ENTRY, 1).is_ok()
        && hypercall::vm_map(handle, data, GUEST_ENTRY + 0x1000, 1).is_ok()
        && hypercall::vcpu_init(handle, 0, GUEST_ENTRY, SEED).is_ok();
    let filled = hypercall::vcpu_run(handle, 0, 0);
    if !check!(
        given && filled == Ok(Exit::Mmio { ipa: GUEST_UART + 0x20, size_bytes: 8, write: true, value: 1 }),
        "reset scrub: a protected guest filled page {data:#x} with its data: {filled:x?}"
    ) {
        return false;
    }
    write_word(mark, RESET_MAGIC);
    write_word(mark + 8, data);
    log::info!("reset scrub: PSCI SYSTEM_RESET with the protected VM alive");
    let answer = platform.psci_call(smccc::psci::PSCI_SYSTEM_RESET, [0; 3]);
    write_word(mark, 0);
    check!(false, "PSCI SYSTEM_RESET returned {:#x}", answer[0])
}

/// Runs the checks; true when all passed.
pub fn run_all(platform: &HostPlatform) -> bool {
    let mut passed = true;
    if platform.reset_scrub {
        passed &= reset_scrub(platform);
    }
    let memcache = memcache_pages();
    let pages = MEMCACHE_PAGES as u64;
    if !check!(hypercall::donate_hyp(memcache, pages).is_ok(), "donate {pages} pages for the leak checks' VMs") {
        return false;
    }
    passed &= pmu_check();
    passed &= probe_check();
    passed &= check!(hypercall::reclaim_hyp(memcache, pages).is_ok(), "the leak checks' memcache comes back");
    passed
}
