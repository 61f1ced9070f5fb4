//! Console output: the `log` logger for normal work and a lock-free emergency
//! writer for panics and fatal exceptions.
//!
//! - [`emergency`] never takes a lock and never allocates: safe anywhere, even
//!   with the MMU off or while another CPU holds the logger lock (lines may then
//!   interleave, which is the price of never waiting).
//! - [`logger`] serialises whole lines with a spin lock; it is installed only once
//!   the MMU is on, because exclusive accesses need cacheable memory.

pub mod emergency;
pub mod logger;
