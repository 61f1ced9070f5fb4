//! The hyp's SMMUv3: when the device tree has an `arm,smmu-v3`, the hyp takes
//! it (its frame is a hole in the host stage-2 and its node is disabled in the
//! host's tree) and every stream translates through one stage-1 context whose
//! table is `mm::memory::HostDmaMirror`: an identity map of exactly the host's
//! RAM, kept in step with every ownership change (TLB invalidations through the
//! command queue, completed with CMD_SYNC before the change returns). Streams
//! beyond the stream table abort. Faults are recorded in the event queue, which
//! the hyp drains and logs; they are never fatal to it.
//!
//! `format` (portable, unit-tested) encodes what this driver writes.

pub mod format;

#[cfg(target_os = "none")]
mod driver;

#[cfg(target_os = "none")]
pub use driver::{drain_events, init, read_features, SmmuTlb, SMMU_ASID};
