//! The flattened device tree format's numbers (Devicetree Specification,
//! chapter 5), shared by the structural check and the rewrite for the host.

pub const FDT_MAGIC: u32 = 0xd00d_feed;
pub const FDT_BEGIN_NODE: u32 = 1;
pub const FDT_END_NODE: u32 = 2;
pub const FDT_PROP: u32 = 3;
pub const FDT_NOP: u32 = 4;
pub const FDT_END: u32 = 9;
/// Size of the version 17 header.
pub const HEADER_SIZE: usize = 40;
