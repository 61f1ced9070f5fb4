//! The guest memory a virtio device may touch. A device reaches the guest's
//! RAM only through this (`vm-memory`'s `GuestMemory`, the form an IOMMU
//! takes there), so each access is checked before it is made: in the guest's
//! RAM, and for a protected VM, in pages the host may access now, that is
//! pages the guest shared (`MEM_SHARE`). The hyp refuses the host every other
//! page of a protected VM; a device that followed a guest's pointer into one
//! without this check would take a SIGBUS. A refused access is an error the
//! device reports (`DeviceError::Memory`).

use std::sync::Arc;
use vm_memory::bitmap::BS;
use vm_memory::guest_memory::GuestMemorySliceIterator;
use vm_memory::{
    GuestAddress, GuestMemory, GuestMemoryBackend, GuestMemoryError as MemoryError, GuestMemoryMmap, Permissions,
};

/// The granule in which a protected guest shares its memory (`HYP_MEMINFO`).
pub const SHARE_GRANULE: u64 = 4096;

/// Whether the host may access a page of the guest's RAM now. For a protected
/// VM the binary asks the hardware (a guarded load: the hyp refuses an
/// unshared page); the tests use a fake.
pub trait HostAccess: Send + Sync {
    /// `page` is the host address of a page of the guest's RAM, aligned to
    /// `SHARE_GRANULE`.
    fn page_accessible(&self, page: *const u8) -> bool;
}

/// The guest's RAM as its devices see it.
pub struct DeviceMemory {
    ram: GuestMemoryMmap,
    /// None: a non-protected VM, whose whole RAM the host may access.
    access: Option<Arc<dyn HostAccess>>,
}

impl DeviceMemory {
    /// A non-protected VM's memory: all of its RAM.
    pub fn whole(ram: GuestMemoryMmap) -> DeviceMemory {
        DeviceMemory { ram, access: None }
    }

    /// A protected VM's memory: the pages of its RAM `access` allows.
    pub fn shared_only(ram: GuestMemoryMmap, access: Arc<dyn HostAccess>) -> DeviceMemory {
        DeviceMemory { ram, access: Some(access) }
    }

    /// The guest's RAM without the checks: the guest's own view (tests' fake drivers).
    #[cfg(test)]
    pub fn guest_view(&self) -> &GuestMemoryMmap {
        &self.ram
    }

    /// The first guest-physical page of `[addr, addr + count)` the device may
    /// not touch: outside the RAM, or not accessible to the host.
    pub fn first_refused(&self, addr: GuestAddress, count: usize) -> Option<GuestAddress> {
        if count == 0 {
            return None;
        }
        if !GuestMemoryBackend::check_range(&self.ram, addr, count) {
            return Some(addr);
        }
        let access = self.access.as_ref()?;
        let end = addr.0 + count as u64;
        let mut page = addr.0 & !(SHARE_GRANULE - 1);
        while page < end {
            // The first page may start before `addr`, in the same region.
            let probe = GuestAddress(page.max(addr.0));
            let host = match self.ram.get_host_address(probe) {
                Ok(host) => (host as usize & !(SHARE_GRANULE as usize - 1)) as *const u8,
                Err(_) => return Some(probe),
            };
            if !access.page_accessible(host) {
                return Some(GuestAddress(page));
            }
            page += SHARE_GRANULE;
        }
        None
    }
}

impl GuestMemory for DeviceMemory {
    type PhysicalMemory = GuestMemoryMmap;
    type Bitmap = ();

    fn check_range(&self, addr: GuestAddress, count: usize, _access: Permissions) -> bool {
        self.first_refused(addr, count).is_none()
    }

    fn get_slices<'a>(
        &'a self,
        addr: GuestAddress,
        count: usize,
        _access: Permissions,
    ) -> Result<impl GuestMemorySliceIterator<'a, BS<'a, ()>>, MemoryError> {
        match self.first_refused(addr, count) {
            Some(refused) => Err(MemoryError::InvalidGuestAddress(refused)),
            None => Ok(GuestMemoryBackend::get_slices(&self.ram, addr, count)),
        }
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::sync::Mutex;
    use vm_memory::{Bytes, GuestMemoryRegion};

    /// A fake protected guest: the pages it shared, by host address.
    #[derive(Default)]
    pub struct FakeShares {
        pub pages: Mutex<BTreeSet<usize>>,
    }

    impl HostAccess for FakeShares {
        fn page_accessible(&self, page: *const u8) -> bool {
            self.pages.lock().unwrap().contains(&(page as usize))
        }
    }

    impl FakeShares {
        /// Shares the guest-physical pages `[from, to)` of `ram`.
        pub fn share(&self, ram: &GuestMemoryMmap, from: u64, to: u64) {
            let mut pages = self.pages.lock().unwrap();
            for page in (from..to).step_by(SHARE_GRANULE as usize) {
                pages.insert(ram.get_host_address(GuestAddress(page)).unwrap() as usize);
            }
        }
    }

    pub fn ram(base: u64, size: usize) -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(base), size)]).unwrap()
    }

    #[test]
    fn a_non_protected_vm_s_device_reaches_its_whole_ram_and_nothing_else() {
        let memory = DeviceMemory::whole(ram(0x8000_0000, 0x10_0000));
        assert_eq!(memory.first_refused(GuestAddress(0x8000_0000), 0x10_0000), None);
        assert_eq!(memory.first_refused(GuestAddress(0x800f_ffff), 2), Some(GuestAddress(0x800f_ffff)));
        assert_eq!(memory.first_refused(GuestAddress(0x7fff_ffff), 1), Some(GuestAddress(0x7fff_ffff)));
        assert!(memory.write_slice(&[1, 2, 3], GuestAddress(0x8000_1000)).is_ok());
        assert!(memory.write_slice(&[1, 2, 3], GuestAddress(0x9000_0000)).is_err());
    }

    #[test]
    fn a_protected_vm_s_device_reaches_only_what_was_shared() {
        let guest = ram(0x8000_0000, 0x10_0000);
        let shares = Arc::new(FakeShares::default());
        shares.share(&guest, 0x8000_2000, 0x8000_4000);
        let memory = DeviceMemory::shared_only(guest.clone(), shares.clone());
        assert_eq!(memory.first_refused(GuestAddress(0x8000_2000), 0x2000), None);
        assert_eq!(memory.first_refused(GuestAddress(0x8000_2ff0), 0x20), None);
        assert_eq!(memory.first_refused(GuestAddress(0x8000_3ff0), 0x20), Some(GuestAddress(0x8000_4000)));
        assert_eq!(memory.first_refused(GuestAddress(0x8000_1fff), 2), Some(GuestAddress(0x8000_1000)));
        assert_eq!(memory.first_refused(GuestAddress(0x8000_0000), 0), None);
        // Through vm-memory's accessors, as virtio-queue uses them.
        assert!(memory.write_obj(0x1234u32, GuestAddress(0x8000_2100)).is_ok());
        assert_eq!(memory.read_obj::<u32>(GuestAddress(0x8000_2100)).ok(), Some(0x1234));
        assert!(memory.read_obj::<u32>(GuestAddress(0x8000_5000)).is_err());
        assert!(memory.write_obj(7u64, GuestAddress(0x8000_3ffc)).is_err());
        // Nothing was written across the refused boundary.
        assert_eq!(guest.read_obj::<u32>(GuestAddress(0x8000_3ffc)).ok(), Some(0));
        // Unshared again: refused again.
        shares.pages.lock().unwrap().clear();
        assert!(memory.read_obj::<u32>(GuestAddress(0x8000_2100)).is_err());
        assert_eq!(guest.iter().count(), 1);
        assert_eq!(guest.iter().next().map(|r| r.len()), Some(0x10_0000));
    }
}
