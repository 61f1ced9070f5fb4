//! A VM's MMIO guard (as in pKVM): once the guest enrols, only the MMIO
//! granules it named leave the hyp as exits to the host; any other access
//! outside its memory gets an abort injected instead. A guest that never
//! enrols (a stock Linux kernel) has every such access forwarded, and for a
//! protected VM the host then sees only the access itself (address, size and
//! the stored value), never the guest's registers.
//!
//! Linux's pKVM guest (from 6.12) names each granule it maps as a device
//! (MMIO_GUARD, function 7: Android's MMIO_GUARD_MAP, same argument) but never
//! enrols: before enrolment a map only checks its argument and succeeds, as
//! every access passes then anyway; Android's guests enrol first.
//!
//! The allowed granules live in a fixed array, not in the stage-2 and not on
//! the heap: a guest's calls cannot make the hyp allocate.

#![forbid(unsafe_code)]

use hyp_abi::{MMIO_GUARD_CAPACITY, MMIO_GUARD_GRANULE};

/// Why a guard call was refused.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum GuardError {
    /// The guest has not enrolled.
    NotEnrolled,
    /// The IPA is not the start of a granule.
    Misaligned,
    /// The guard already allows [`MMIO_GUARD_CAPACITY`] granules.
    Full,
    /// Unmapping a granule that was not allowed.
    NotMapped,
}

/// The granules a VM allows as MMIO, once it enrolled.
#[derive(Clone, Debug, Default)]
pub struct MmioGuard {
    enrolled: bool,
    len: usize,
    granules: [u64; MMIO_GUARD_CAPACITY],
}

impl MmioGuard {
    /// Enrols the VM (for good; enrolling again changes nothing).
    pub fn enroll(&mut self) {
        self.enrolled = true;
    }

    fn allowed(&self) -> &[u64] {
        &self.granules[..self.len]
    }

    /// Allows MMIO to the granule at `ipa` (allowing it twice is not an error;
    /// before enrolment everything is allowed and nothing is noted).
    pub fn map(&mut self, ipa: u64) -> Result<(), GuardError> {
        if !self.enrolled {
            return if ipa.is_multiple_of(MMIO_GUARD_GRANULE) { Ok(()) } else { Err(GuardError::Misaligned) };
        }
        self.check(ipa)?;
        if self.allowed().contains(&ipa) {
            return Ok(());
        }
        let slot = self.granules.get_mut(self.len).ok_or(GuardError::Full)?;
        *slot = ipa;
        self.len += 1;
        Ok(())
    }

    /// Stops allowing the granule at `ipa`.
    pub fn unmap(&mut self, ipa: u64) -> Result<(), GuardError> {
        self.check(ipa)?;
        let index = self.allowed().iter().position(|&g| g == ipa).ok_or(GuardError::NotMapped)?;
        self.granules.copy_within(index + 1..self.len, index);
        self.len -= 1;
        Ok(())
    }

    fn check(&self, ipa: u64) -> Result<(), GuardError> {
        if !self.enrolled {
            return Err(GuardError::NotEnrolled);
        }
        if !ipa.is_multiple_of(MMIO_GUARD_GRANULE) {
            return Err(GuardError::Misaligned);
        }
        Ok(())
    }

    /// Whether an access at `ipa` (outside the VM's memory) may go to the host.
    pub fn allows(&self, ipa: u64) -> bool {
        !self.enrolled || self.allowed().contains(&(ipa & !(MMIO_GUARD_GRANULE - 1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn everything_passes_until_the_guest_enrols() {
        let mut guard = MmioGuard::default();
        assert!(guard.allows(0x900_0000) && guard.allows(u64::MAX));
        assert_eq!(guard.map(0x900_0000), Ok(()), "Linux maps without enrolling: everything passes anyway");
        assert_eq!(guard.map(0x900_0008), Err(GuardError::Misaligned));
        assert_eq!(guard.unmap(0x900_0000), Err(GuardError::NotEnrolled));
        guard.enroll();
        assert!(!guard.allows(0x900_0000), "enrolled: nothing allowed yet, not even what was mapped before");
    }

    #[test]
    fn mapped_granules_pass_whole_and_others_do_not() {
        let mut guard = MmioGuard::default();
        guard.enroll();
        assert_eq!(guard.map(0x900_0000), Ok(()));
        assert_eq!(guard.map(0x900_0000), Ok(()), "twice is fine");
        assert!(guard.allows(0x900_0000) && guard.allows(0x900_0ffc));
        assert!(!guard.allows(0x900_1000) && !guard.allows(0x8ff_fffc));
        assert_eq!(guard.map(0x900_0008), Err(GuardError::Misaligned));
        assert_eq!(guard.unmap(0x900_1000), Err(GuardError::NotMapped));
        assert_eq!(guard.unmap(0x900_0000), Ok(()));
        assert!(!guard.allows(0x900_0000));
        assert_eq!(guard.unmap(0x900_0000), Err(GuardError::NotMapped));
    }

    #[test]
    fn the_guard_is_bounded_and_unmapping_makes_room() {
        let mut guard = MmioGuard::default();
        guard.enroll();
        for n in 0..MMIO_GUARD_CAPACITY as u64 {
            assert_eq!(guard.map(n * MMIO_GUARD_GRANULE), Ok(()));
        }
        assert_eq!(guard.map(0x1000_0000), Err(GuardError::Full));
        assert_eq!(guard.map(0), Ok(()), "already allowed: no room needed");
        assert_eq!(guard.unmap(3 * MMIO_GUARD_GRANULE), Ok(()));
        assert_eq!(guard.map(0x1000_0000), Ok(()));
        assert!(guard.allows(0x1000_0000) && guard.allows(4 * MMIO_GUARD_GRANULE));
        assert!(!guard.allows(3 * MMIO_GUARD_GRANULE));
    }
}
