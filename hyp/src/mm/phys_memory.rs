//! Access to physical memory by address: the memory state scrubs, the memcache
//! links its free pages, and the debug exchange reads and writes through it
//! (the hyp's identity map on the target, a fake in the tests).

/// Access to physical memory by address, for scrubbing and debug accesses.
pub trait PhysMemory {
    /// Zeroes the page at `page`.
    fn zero_page(&mut self, page: u64);
    /// Zeroes the `pages` pages from `start` (a scrub before the host gets
    /// them back): one call for a range, so that the target can do it in one
    /// pass.
    fn scrub(&mut self, start: u64, pages: u64) {
        for page in (start..start + pages * 4096).step_by(4096) {
            self.zero_page(page);
        }
    }
    fn read_u64(&mut self, address: u64) -> u64;
    fn write_u64(&mut self, address: u64, value: u64);
}
