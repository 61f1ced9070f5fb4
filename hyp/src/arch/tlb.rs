//! The TLB-maintenance interface the page-table code drives: implemented by
//! `aarch64::tlb` for the hardware and by fakes in the tests.

#![forbid(unsafe_code)]

/// The TLB maintenance of one translation context.
pub trait TlbMaintenance {
    /// Removes cached translations of the leaf (page or block) at `address`, `level`.
    fn invalidate_leaf(&mut self, address: usize, level: usize);
    /// Removes every cached translation and walk of the context.
    fn invalidate_all(&mut self);
    /// Waits until all maintenance issued so far has completed everywhere.
    fn sync(&mut self);
}
