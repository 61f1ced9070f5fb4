//! The trap record: what the world switch hands back about the trap that ended
//! a guest's run, before anything interprets it.

#![forbid(unsafe_code)]

use crate::arch::esr::Esr;

/// One trap, as the world switch saw it.
#[derive(Clone, Copy, Debug)]
pub struct GuestTrap {
    /// Vector kind: 0 synchronous, 1 IRQ, 2 FIQ, 3 SError.
    pub kind: u64,
    pub esr: Esr,
    /// FAR_EL2 (the guest VA of an abort).
    pub far: u64,
    /// The faulting IPA of an abort whose HPFAR_EL2 holds it
    /// ([`Esr::hpfar_valid`]); 0 for any other trap. Only such aborts may
    /// become MMIO exits (translation faults, which always have one) or
    /// lost-page exits; 0 is never one of the guest's GIC frames.
    pub ipa: u64,
}
