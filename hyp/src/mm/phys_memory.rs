//! Access to physical memory by address: the memory state scrubs, the memcache
//! links its free pages, and the debug exchange reads and writes through it
//! (the hyp's identity map on the target, a fake in the tests).

/// Access to physical memory by address, for scrubbing and debug accesses.
pub trait PhysMemory {
    /// Zeroes the page at `page`.
    fn zero_page(&mut self, page: u64);
    fn read_u64(&mut self, address: u64) -> u64;
    fn write_u64(&mut self, address: u64, value: u64);
}
