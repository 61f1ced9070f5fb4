//! The GICv3 virtual CPU interface (`ICH_*_EL2`) around a guest run: the vCPU's
//! list registers, VMCR and active priorities go into the hardware on entry and
//! come back on exit; the interface is off while the host runs (the host uses
//! the physical CPU interface, `ICC_*_EL1`).

use crate::arch::list_registers::{self, active_priority_registers, ListRegisterFile, VgicState, MAX_LIST_REGISTERS};
use core::arch::asm;
use core::sync::atomic::{AtomicUsize, Ordering};

/// ICH_HCR_EL2.En: the virtual CPU interface signals interrupts.
const ICH_HCR_EN: u64 = 1;
/// ICC_SRE_EL1 for guests: SRE (system registers), DFB and DIB (no FIQ/IRQ bypass).
const ICC_SRE_EL1_GUEST: u64 = 0x7;

/// Whether this CPU has the GIC system-register interface (ID_AA64PFR0_EL1.GIC).
pub fn has_system_registers() -> bool {
    let pfr0: u64;
    // SAFETY: Reading an ID register has no side effect.
    unsafe { asm!("mrs {}, id_aa64pfr0_el1", out(reg) pfr0, options(nomem, nostack, preserves_flags)) };
    (pfr0 >> 24) & 0xf != 0
}

fn vtr() -> u64 {
    let vtr: u64;
    // SAFETY: Reading ICH_VTR_EL2 has no side effect; callers checked that the
    // system-register interface exists.
    unsafe { asm!("mrs {}, ich_vtr_el2", out(reg) vtr, options(nomem, nostack, preserves_flags)) };
    vtr
}

/// The number of list registers (ICH_VTR_EL2.ListRegs + 1).
pub fn list_registers() -> usize {
    ((vtr() & 0xf) as usize + 1).min(MAX_LIST_REGISTERS)
}

/// Writes an active-priority register.
macro_rules! write_apr {
    ($name:literal, $value:expr) => {
        // SAFETY: The register belongs to the virtual interface (the running
        // guest's, or nobody's) and is implemented (the caller's count says so).
        unsafe {
            asm!(concat!("msr ", $name, ", {}"), in(reg) u64::from($value), options(nomem, nostack, preserves_flags))
        }
    };
}

/// Reads an active-priority register (its 32 bits).
macro_rules! read_apr {
    ($name:literal) => {{
        let value: u64;
        // SAFETY: Reading an active-priority register the interface implements
        // has no side effect.
        unsafe { asm!(concat!("mrs {}, ", $name), out(reg) value, options(nomem, nostack, preserves_flags)) };
        value as u32
    }};
}

/// Writes the first `count` (1, 2 or 4: [`active_priority_registers`])
/// ICH_AP0R<n>_EL2 and ICH_AP1R<n>_EL2.
fn write_active_priorities(count: usize, ap0r: &[u32; 4], ap1r: &[u32; 4]) {
    if count > 2 {
        write_apr!("ich_ap0r3_el2", ap0r[3]);
        write_apr!("ich_ap0r2_el2", ap0r[2]);
        write_apr!("ich_ap1r3_el2", ap1r[3]);
        write_apr!("ich_ap1r2_el2", ap1r[2]);
    }
    if count > 1 {
        write_apr!("ich_ap0r1_el2", ap0r[1]);
        write_apr!("ich_ap1r1_el2", ap1r[1]);
    }
    write_apr!("ich_ap0r0_el2", ap0r[0]);
    write_apr!("ich_ap1r0_el2", ap1r[0]);
}

/// Reads the first `count` ICH_AP0R<n>_EL2 and ICH_AP1R<n>_EL2 into
/// `ap0r`/`ap1r`. (They are not cleared: only EL2 reads them, and every
/// [`enter`] writes them all.)
fn save_active_priorities(count: usize, ap0r: &mut [u32; 4], ap1r: &mut [u32; 4]) {
    ap0r[0] = read_apr!("ich_ap0r0_el2");
    ap1r[0] = read_apr!("ich_ap1r0_el2");
    if count > 1 {
        ap0r[1] = read_apr!("ich_ap0r1_el2");
        ap1r[1] = read_apr!("ich_ap1r1_el2");
    }
    if count > 2 {
        ap0r[2] = read_apr!("ich_ap0r2_el2");
        ap0r[3] = read_apr!("ich_ap0r3_el2");
        ap1r[2] = read_apr!("ich_ap1r2_el2");
        ap1r[3] = read_apr!("ich_ap1r3_el2");
    }
}

/// The number of ICH_AP0R<n>_EL2 (and ICH_AP1R<n>_EL2) of this machine's
/// virtual interfaces, once [`reset`] found it (every CPU has the same GIC).
static ACTIVE_PRIORITY_REGISTERS: AtomicUsize = AtomicUsize::new(1);

macro_rules! list_register_access {
    ($($n:literal => $name:literal),* $(,)?) => {
        fn write_lr(n: usize, value: u64) {
            match n {
                // SAFETY: Writing a list register of the virtual CPU interface,
                // which only the running guest sees.
                $($n => unsafe { asm!(concat!("msr ", $name, ", {}"), in(reg) value, options(nomem, nostack, preserves_flags)) },)*
                _ => {}
            }
        }

        fn read_lr(n: usize) -> u64 {
            let value: u64;
            match n {
                // SAFETY: Reading a list register has no side effect.
                $($n => unsafe { asm!(concat!("mrs {}, ", $name), out(reg) value, options(nomem, nostack, preserves_flags)) },)*
                _ => value = 0,
            }
            value
        }
    };
}

list_register_access! {
    0 => "ich_lr0_el2", 1 => "ich_lr1_el2", 2 => "ich_lr2_el2", 3 => "ich_lr3_el2",
    4 => "ich_lr4_el2", 5 => "ich_lr5_el2", 6 => "ich_lr6_el2", 7 => "ich_lr7_el2",
    8 => "ich_lr8_el2", 9 => "ich_lr9_el2", 10 => "ich_lr10_el2", 11 => "ich_lr11_el2",
    12 => "ich_lr12_el2", 13 => "ich_lr13_el2", 14 => "ich_lr14_el2", 15 => "ich_lr15_el2",
}

/// Empties and turns off this CPU's virtual CPU interface (its list registers
/// are UNKNOWN out of reset, and [`enter`] writes only those in use): once per
/// CPU, before its first guest.
pub fn reset() {
    if !has_system_registers() {
        return;
    }
    for n in 0..list_registers() {
        write_lr(n, 0);
    }
    // Every active-priority register the interface has.
    let aprs = active_priority_registers(vtr());
    ACTIVE_PRIORITY_REGISTERS.store(aprs, Ordering::Relaxed);
    write_active_priorities(aprs, &[0; 4], &[0; 4]);
    // SAFETY: Turning the virtual interface off; the host does not use it.
    unsafe { asm!("msr ich_hcr_el2, xzr", "msr ich_vmcr_el2, xzr", "isb", options(nostack, preserves_flags)) };
}

/// The list registers as `ICH_LR<n>_EL2`.
struct SystemRegisterLrs;

impl ListRegisterFile for SystemRegisterLrs {
    #[inline(always)]
    fn read(&mut self, n: usize) -> u64 {
        read_lr(n)
    }
    #[inline(always)]
    fn write(&mut self, n: usize, lr: u64) {
        write_lr(n, lr);
    }
}

/// What [`exit`] needs from [`enter`].
#[derive(Clone, Copy, Debug)]
pub struct Entered {
    /// The host's ICC_SRE_EL1.
    host_sre: u64,
    /// List registers written (the rest were left empty and stay so: a guest
    /// only changes the state of interrupts it was given).
    used: usize,
    /// Active-priority registers of each group the interface has.
    aprs: usize,
}

impl Entered {
    /// How many list registers the run has written (the rest are empty).
    #[inline(always)]
    pub fn used(&self) -> usize {
        self.used
    }
}

/// ICH_HCR_EL2.UIE: the maintenance interrupt fires when no more than one list
/// register holds an interrupt.
const ICH_HCR_UIE: u64 = 1 << 1;

/// Loads `state` into the virtual CPU interface and turns it on.
pub fn enter(state: &VgicState) -> Entered {
    let used = list_registers::load(&mut SystemRegisterLrs, state);
    // Every active-priority register the interface has, for both groups: a
    // guest may set any of them (ICV_AP0Rn/ICV_AP1Rn), and none of one
    // guest's may be left for the next.
    let aprs = ACTIVE_PRIORITY_REGISTERS.load(Ordering::Relaxed);
    write_active_priorities(aprs, &state.ap0r, &state.ap1r);
    let host_sre: u64;
    // SAFETY: These registers belong to the guest's virtual interface and to its
    // EL1 view of the GIC; `exit` puts the host's ICC_SRE_EL1 back.
    unsafe {
        asm!(
            "mrs {sre}, icc_sre_el1",
            "msr icc_sre_el1, {guest_sre}",
            "msr ich_vmcr_el2, {vmcr}",
            "msr ich_hcr_el2, {hcr}",
            "isb",
            sre = out(reg) host_sre,
            guest_sre = in(reg) ICC_SRE_EL1_GUEST,
            vmcr = in(reg) state.vmcr,
            hcr = in(reg) ICH_HCR_EN,
            options(nostack, preserves_flags),
        );
    }
    Entered { host_sre, used, aprs }
}

/// While the guest runs: reads the list registers in use back into `state`.
pub fn sync_live(state: &mut VgicState, entered: &Entered) {
    list_registers::sync_live(&mut SystemRegisterLrs, state, entered.used);
}

/// While the guest runs: writes the list registers the hyp changed in `state`
/// back into the interface.
pub fn load_live(state: &mut VgicState, entered: &mut Entered) {
    list_registers::load_live(&mut SystemRegisterLrs, state, &mut entered.used);
}

/// Asks for the maintenance interrupt when the list registers run (nearly)
/// empty, so that interrupts waiting for one get in without an exit.
pub fn set_underflow_interrupt(on: bool) {
    let hcr = ICH_HCR_EN | if on { ICH_HCR_UIE } else { 0 };
    // SAFETY: The virtual interface's control belongs to the running guest's world switch.
    unsafe { asm!("msr ich_hcr_el2, {}", "isb", in(reg) hcr, options(nostack, preserves_flags)) };
}

/// Whether the virtual interface asserts its maintenance interrupt (ICH_MISR_EL2).
pub fn maintenance_pending() -> bool {
    let misr: u64;
    // SAFETY: Reading ICH_MISR_EL2 has no side effect.
    unsafe { asm!("mrs {}, ich_misr_el2", out(reg) misr, options(nomem, nostack, preserves_flags)) };
    misr != 0
}

/// Sends SGI `intid` (group 1) to the physical CPU of MPIDR `mpidr`
/// (ICC_SGI1R_EL1 at EL2: the physical CPU interface).
pub fn send_sgi(mpidr: u64, intid: u8) {
    let value = hyp_drivers::gic_sgi::sgi1r_to(mpidr, u32::from(intid));
    // SAFETY: Generates an SGI; stores that made the interrupt's cause visible
    // come first (DSB), and no memory of the hyp's is touched.
    unsafe { asm!("dsb ishst", "msr icc_sgi1r_el1, {}", "isb", in(reg) value, options(nostack, preserves_flags)) };
}

/// Saves the virtual CPU interface into `state` and turns it off; the host gets
/// its ICC_SRE_EL1 back.
pub fn exit(state: &mut VgicState, entered: Entered) {
    let Entered { host_sre, used, aprs } = entered;
    // An empty interface for the host (and nothing of a protected guest's left).
    list_registers::save_and_empty(&mut SystemRegisterLrs, state, used);
    save_active_priorities(aprs, &mut state.ap0r, &mut state.ap1r);
    // SAFETY: Saving the guest's virtual-interface state, then disabling it and
    // restoring the host's EL1 view of the GIC.
    unsafe {
        asm!(
            "mrs {vmcr}, ich_vmcr_el2",
            "msr ich_hcr_el2, xzr",
            "msr icc_sre_el1, {sre}",
            "isb",
            vmcr = out(reg) state.vmcr,
            sre = in(reg) host_sre,
            options(nostack, preserves_flags),
        );
    }
}

/// GICR_TYPER and the SGI_base frame's offset in a redistributor.
const GICR_TYPER: usize = 0x8;
const GICR_SGI_FRAME: usize = 0x1_0000;

/// The SGI frame of the redistributor (in `start..end`, mapped for the hyp)
/// whose GICR_TYPER affinity is `mpidr`'s, if any.
pub fn find_redistributor_sgi_frame(start: usize, end: usize, mpidr: u64) -> Option<usize> {
    let affinity = (mpidr & 0xff_ffff) | (mpidr >> 32 & 0xff) << 24;
    let mut frame = start;
    while frame + 2 * GICR_SGI_FRAME <= end {
        // SAFETY: `frame` is a redistributor frame inside the region, which the
        // hyp maps as device memory; reading GICR_TYPER has no side effect.
        let typer = unsafe { core::ptr::read_volatile((frame + GICR_TYPER) as *const u64) };
        if typer >> 32 == affinity {
            return Some(frame + GICR_SGI_FRAME);
        }
        if typer & (1 << 4) != 0 {
            return None;
        }
        // Two 64 KiB frames each, four with virtual LPIs (GICv4).
        frame += if typer & (1 << 1) != 0 { 4 * GICR_SGI_FRAME } else { 2 * GICR_SGI_FRAME };
    }
    None
}

/// Calls `f` with the address of each page of the redistributors in
/// `start..end` (mapped for the hyp) that holds LPI controls: every
/// redistributor's first page (GICR_CTLR, PROPBASER, PENDBASER, SETLPIR,
/// INVLPIR, ...) and, with virtual LPIs, the first page of its VLPI frame
/// (VPROPBASER, VPENDBASER).
/// `f` gets the page and whether it is a VLPI frame's.
pub fn for_each_lpi_control_page(start: usize, end: usize, mut f: impl FnMut(usize, bool)) {
    let mut frame = start;
    while frame + 2 * GICR_SGI_FRAME <= end {
        // SAFETY: As in `find_redistributor_sgi_frame`.
        let typer = unsafe { core::ptr::read_volatile((frame + GICR_TYPER) as *const u64) };
        f(frame, false);
        let has_vlpis = typer & (1 << 1) != 0;
        if has_vlpis {
            f(frame + 2 * GICR_SGI_FRAME, true);
        }
        if typer & (1 << 4) != 0 {
            return;
        }
        frame += if has_vlpis { 4 * GICR_SGI_FRAME } else { 2 * GICR_SGI_FRAME };
    }
}

/// Reads the 4- or 8-byte redistributor register at `address` for the host.
///
/// # Safety
///
/// `address` must be a naturally aligned register of a redistributor frame
/// the hyp maps as device memory.
pub unsafe fn read_redistributor(address: usize, bytes: usize) -> u64 {
    // SAFETY: The caller guarantees a mapped, aligned device register.
    unsafe {
        if bytes == 8 {
            core::ptr::read_volatile(address as *const u64)
        } else {
            u64::from(core::ptr::read_volatile(address as *const u32))
        }
    }
}

/// Writes the 4- or 8-byte redistributor register at `address` for the host.
///
/// # Safety
///
/// As [`read_redistributor`]; the caller decided the write is harmless.
pub unsafe fn write_redistributor(address: usize, bytes: usize, value: u64) {
    // SAFETY: The caller guarantees a mapped, aligned device register.
    unsafe {
        if bytes == 8 {
            core::ptr::write_volatile(address as *mut u64, value);
        } else {
            core::ptr::write_volatile(address as *mut u32, value as u32);
        }
    }
}
