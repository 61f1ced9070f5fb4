//! Injecting synchronous exceptions into the host's EL1, as the architecture would
//! have taken them had the hyp not been there: the host's own vector handles them.

use crate::arch::context::exception_pstate;
use aarch64_cpu::registers::{
    Readable, Writeable, ELR_EL1, ELR_EL2, ESR_EL1, FAR_EL1, FAR_EL2, SCTLR_EL1, SPSR_EL1, SPSR_EL2, VBAR_EL1,
};

/// SCTLR_EL1 as it is in the CPU now (the host's, or the running guest's):
/// what the PSTATE of an exception taken to that EL1 depends on.
pub fn live_sctlr_el1() -> u64 {
    SCTLR_EL1.get()
}

/// VBAR_EL1 as it is in the CPU now: where an exception taken to that EL1
/// enters.
pub fn live_vbar_el1() -> u64 {
    VBAR_EL1.get()
}
/// ESR IL bit: 32-bit instruction.
const ESR_IL: u64 = 1 << 25;
/// Fault status: synchronous external abort, not on a table walk.
const FSC_SYNC_EXTERNAL_ABORT: u64 = 0x10;

/// Offset of the vector the exception goes to, from the interrupted PSTATE.
fn vector_offset(spsr: u64) -> u64 {
    let aarch32 = spsr & (1 << 4) != 0;
    let el = (spsr >> 2) & 3;
    let sp_elx = spsr & 1 != 0;
    match (aarch32, el, sp_elx) {
        (true, _, _) => 0x600,      // lower EL, AArch32
        (false, 0, _) => 0x400,     // lower EL, AArch64
        (false, _, false) => 0x000, // current EL with SP_EL0
        (false, _, true) => 0x200,  // current EL with SP_ELx
    }
}

/// Whether the interrupted context was EL1 (not EL0).
fn from_el1(spsr: u64) -> bool {
    spsr & (1 << 4) == 0 && (spsr >> 2) & 3 == 1
}

fn inject(esr: u64) {
    let spsr = SPSR_EL2.get();
    let elr = ELR_EL2.get();
    ESR_EL1.set(esr);
    ELR_EL1.set(elr);
    SPSR_EL1.set(spsr);
    ELR_EL2.set(VBAR_EL1.get() + vector_offset(spsr));
    SPSR_EL2.set(exception_pstate(spsr, SCTLR_EL1.get()));
}

/// Makes the interrupted host access take a synchronous external abort (data
/// abort, or instruction abort if `instruction`), with FAR_EL1 = the faulting VA.
pub fn inject_external_abort(instruction: bool, write: bool) {
    let spsr = SPSR_EL2.get();
    let same_el = from_el1(spsr);
    let class: u64 = match (instruction, same_el) {
        (false, true) => 0x25,
        (false, false) => 0x24,
        (true, true) => 0x21,
        (true, false) => 0x20,
    };
    let wnr = if write && !instruction { 1 << 6 } else { 0 };
    FAR_EL1.set(FAR_EL2.get());
    inject((class << 26) | ESR_IL | wnr | FSC_SYNC_EXTERNAL_ABORT);
}

/// Makes the interrupted host instruction UNDEFINED (EC 0).
pub fn inject_undefined() {
    inject(ESR_IL);
}
