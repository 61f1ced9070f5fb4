//! The GICv2 virtual interface around a guest run: the control frame (GICH,
//! mapped for the hyp alone) gets the vCPU's list registers, VMCR and active
//! priorities on entry and gives them back on exit. The guest's CPU interface
//! accesses (GICC at its IPA) trap as stage-2 faults and are performed on the
//! virtual CPU interface frame (GICV), which the hyp maps: [`cpu_interface_access`].
//!
//! List registers are kept in [`VgicState`] in the GICv3 layout (a VM runs on
//! one GIC version only); they are converted here. GICv2 list registers carry
//! group 0, which the virtual interface signals as IRQ and `GICV_IAR`
//! acknowledges.

use crate::arch::list_registers::{self, from_v2, to_v2, ListRegisterFile, VgicState, MAX_LIST_REGISTERS};
use core::sync::atomic::{AtomicUsize, Ordering};

static GICH: AtomicUsize = AtomicUsize::new(0);
static GICV: AtomicUsize = AtomicUsize::new(0);

const GICH_HCR: usize = 0x0;
const GICH_VTR: usize = 0x4;
const GICH_VMCR: usize = 0x8;
const GICH_APR: usize = 0xf0;
const GICH_LR0: usize = 0x100;
/// GICH_HCR.En.
const HCR_EN: u32 = 1;

/// Records the GICH and GICV frames (identity-mapped for the hyp, device memory).
pub fn configure(gich: usize, gicv: usize) {
    GICH.store(gich, Ordering::Relaxed);
    GICV.store(gicv, Ordering::Relaxed);
}

/// Whether a GICv2 virtual interface was configured.
pub fn available() -> bool {
    GICH.load(Ordering::Relaxed) != 0 && GICV.load(Ordering::Relaxed) != 0
}

fn read(offset: usize) -> u32 {
    // SAFETY: GICH is mapped as device memory for the hyp (boot) and the offset
    // is one of its registers.
    unsafe { core::ptr::read_volatile((GICH.load(Ordering::Relaxed) + offset) as *const u32) }
}

fn write(offset: usize, value: u32) {
    // SAFETY: As for `read`.
    unsafe { core::ptr::write_volatile((GICH.load(Ordering::Relaxed) + offset) as *mut u32, value) };
}

/// The number of list registers (GICH_VTR.ListRegs + 1).
pub fn list_registers() -> usize {
    ((read(GICH_VTR) & 0x3f) as usize + 1).min(MAX_LIST_REGISTERS)
}

/// The list registers as `GICH_LR<n>`, converted to and from the layout kept.
struct GichLrs;

impl ListRegisterFile for GichLrs {
    #[inline(always)]
    fn read(&mut self, n: usize) -> u64 {
        from_v2(read(GICH_LR0 + 4 * n))
    }
    #[inline(always)]
    fn write(&mut self, n: usize, lr: u64) {
        write(GICH_LR0 + 4 * n, to_v2(lr));
    }
}

/// What [`exit`] needs from [`enter`]: the list registers written.
#[derive(Clone, Copy, Debug)]
pub struct Entered {
    used: usize,
}

impl Entered {
    /// How many list registers the run has written (the rest are empty).
    #[inline(always)]
    pub fn used(&self) -> usize {
        self.used
    }
}

/// Empties and turns off this CPU's virtual interface (once per CPU).
pub fn reset() {
    if !available() {
        return;
    }
    for n in 0..list_registers() {
        write(GICH_LR0 + 4 * n, 0);
    }
    write(GICH_APR, 0);
    write(GICH_VMCR, 0);
    write(GICH_HCR, 0);
}

/// Loads `state` into the virtual interface and turns it on.
pub fn enter(state: &VgicState) -> Entered {
    let used = list_registers::load(&mut GichLrs, state);
    write(GICH_VMCR, state.vmcr as u32);
    write(GICH_APR, state.ap1r[0]);
    write(GICH_HCR, HCR_EN);
    Entered { used }
}

/// Reads the list registers in use back into `state` (the guest still runs).
pub fn sync_live(state: &mut VgicState, entered: &Entered) {
    list_registers::sync_live(&mut GichLrs, state, entered.used);
}

/// While the guest runs: reads list register `slot` back into `state` (the
/// guest changed it through GICV just now).
pub fn sync_one(state: &mut VgicState, slot: usize) {
    if slot < list_registers() {
        state.set(slot, GichLrs.read(slot));
    }
}

/// While the guest runs: writes the list registers the hyp changed back.
pub fn load_live(state: &mut VgicState, entered: &mut Entered) {
    list_registers::load_live(&mut GichLrs, state, &mut entered.used);
}

/// GICH_HCR.UIE and GICH_MISR: the maintenance interrupt on (near) underflow.
const HCR_UIE: u32 = 1 << 1;
const GICH_MISR: usize = 0x10;

/// Asks for the maintenance interrupt when the list registers run (nearly) empty.
pub fn set_underflow_interrupt(on: bool) {
    write(GICH_HCR, HCR_EN | if on { HCR_UIE } else { 0 });
}

/// Whether the virtual interface asserts its maintenance interrupt.
pub fn maintenance_pending() -> bool {
    read(GICH_MISR) != 0
}

/// Saves the virtual interface into `state`, empties it and turns it off:
/// nothing of the guest's stays in GICH (its VMCR too is cleared, as pKVM
/// does, although the host is never given GICH).
pub fn exit(state: &mut VgicState, entered: Entered) {
    list_registers::save_and_empty(&mut GichLrs, state, entered.used);
    state.vmcr = u64::from(read(GICH_VMCR));
    state.ap1r[0] = read(GICH_APR);
    write(GICH_APR, 0);
    write(GICH_VMCR, 0);
    write(GICH_HCR, 0);
}

/// Size of the guest's CPU interface window (GICC: two 4 KiB pages).
pub const CPU_INTERFACE_SIZE: u64 = 0x2000;

/// Performs a guest's 32-bit access at `offset` of its CPU interface on this
/// CPU's virtual CPU interface (GICV); returns what a read gives.
pub fn cpu_interface_access(offset: u64, write_value: Option<u32>) -> u32 {
    let address = GICV.load(Ordering::Relaxed) + (offset & (CPU_INTERFACE_SIZE - 4)) as usize;
    match write_value {
        // SAFETY: GICV is mapped as device memory for the hyp; the offset is
        // inside its two pages and 4-byte aligned.
        Some(value) => unsafe {
            core::ptr::write_volatile(address as *mut u32, value);
            0
        },
        // SAFETY: As above.
        None => unsafe { core::ptr::read_volatile(address as *const u32) },
    }
}
