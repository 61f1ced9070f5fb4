//! Console output: the `log` logger for normal work and a lock-free emergency
//! writer for panics and fatal exceptions.
//!
//! - [`emergency`] never takes a lock and never allocates: safe anywhere, even
//!   with the MMU off or while another CPU holds the logger lock (lines may then
//!   interleave, which is the price of never waiting).
//! - [`logger`] formats each record on the stack, then writes the line under a
//!   spin lock it waits for only boundedly; it is installed only once the MMU is
//!   on, because exclusive accesses need cacheable memory.
//!
//! Both write through `hyp_drivers::tx`, which bounds every wait on the UART:
//! the host shares it and may switch it off or hold its FIFO full; the hyp then
//! drops output (and says how much once the UART works again) but never stops.

pub mod emergency;
pub mod logger;
