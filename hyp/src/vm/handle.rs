//! The names the host gives VMs and vCPUs. A VM handle carries its slot in
//! the VM table and the slot's generation, so that a stale or forged handle
//! finds no VM (never another one); a vCPU is its index in its VM.
//!
//! Both hold what the host passed, unchecked: the VM table checks the handle
//! first, then the index, so that a call with both wrong gets `NoSuchVm`.

#![forbid(unsafe_code)]

use core::fmt;

/// A VM's handle: generation << 32 | slot number + 1 (0 is no VM).
#[derive(Clone, Copy, Debug, Eq, PartialEq, Ord, PartialOrd, Hash)]
#[repr(transparent)]
pub struct VmHandle(u64);

impl VmHandle {
    pub const fn new(raw: u64) -> VmHandle {
        VmHandle(raw)
    }

    pub const fn raw(self) -> u64 {
        self.0
    }

    /// The handle of the VM in slot `index`, `generation`.
    pub fn of_slot(index: usize, generation: u32) -> VmHandle {
        VmHandle(u64::from(generation) << 32 | (index as u64 + 1))
    }

    /// The slot this handle names (not checked against the table's size).
    pub fn slot(self) -> Option<usize> {
        usize::try_from(self.0 & 0xffff_ffff).ok().and_then(|number| number.checked_sub(1))
    }

    /// The generation of the slot this handle was given for (below 2^32; a
    /// u64, which the comparison with the slot's takes in one instruction).
    pub fn generation(self) -> u64 {
        self.0 >> 32
    }
}

impl fmt::LowerHex for VmHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::LowerHex::fmt(&self.0, f)
    }
}

/// A vCPU's index in its VM.
#[derive(Clone, Copy, Debug, Eq, PartialEq, Ord, PartialOrd, Hash)]
#[repr(transparent)]
pub struct VcpuIndex(u64);

impl VcpuIndex {
    pub const fn new(raw: u64) -> VcpuIndex {
        VcpuIndex(raw)
    }

    pub const fn raw(self) -> u64 {
        self.0
    }

    /// The index, if it can index a list.
    pub fn to_usize(self) -> Option<usize> {
        usize::try_from(self.0).ok()
    }
}

impl fmt::Display for VcpuIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handle_names_its_slot_and_generation() {
        let handle = VmHandle::of_slot(5, 7);
        assert_eq!(handle.raw(), 7 << 32 | 6);
        assert_eq!(handle.slot(), Some(5));
        assert_eq!(handle.generation(), 7);
        assert_eq!(VmHandle::new(0).slot(), None, "slot number 0 is no VM");
        assert_eq!(VmHandle::new(u64::MAX).generation(), u64::from(u32::MAX));
    }
}
