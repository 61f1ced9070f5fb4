//! The flattened device tree format's numbers and header (Devicetree
//! Specification, chapter 5), for the hyp (which checks and rewrites the
//! host's tree) and the host shim's VMM (which writes its guests' trees).

pub const FDT_MAGIC: u32 = 0xd00d_feed;
pub const FDT_BEGIN_NODE: u32 = 1;
pub const FDT_END_NODE: u32 = 2;
pub const FDT_PROP: u32 = 3;
pub const FDT_NOP: u32 = 4;
pub const FDT_END: u32 = 9;
/// Size of the version 17 header.
pub const HEADER_SIZE: usize = 40;

/// What a version 17 header says of its tree (offsets from the tree's start).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Header {
    pub total_size: u32,
    pub struct_offset: u32,
    pub strings_offset: u32,
    pub reservations_offset: u32,
    pub boot_cpu: u32,
    pub strings_size: u32,
    pub struct_size: u32,
}

impl Header {
    /// The header as it starts the tree: big-endian words, version 17, last
    /// compatible version 16.
    pub fn to_bytes(&self) -> [u8; HEADER_SIZE] {
        let words = [
            FDT_MAGIC,
            self.total_size,
            self.struct_offset,
            self.strings_offset,
            self.reservations_offset,
            17,
            16,
            self.boot_cpu,
            self.strings_size,
            self.struct_size,
        ];
        let mut bytes = [0u8; HEADER_SIZE];
        for (chunk, word) in bytes.chunks_exact_mut(4).zip(words) {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_is_ten_big_endian_words() {
        let header = Header {
            total_size: 0x100,
            struct_offset: 0x38,
            strings_offset: 0xf0,
            reservations_offset: 0x28,
            boot_cpu: 1,
            strings_size: 0x10,
            struct_size: 0xb8,
        };
        let bytes = header.to_bytes();
        assert_eq!(bytes[..8], [0xd0, 0x0d, 0xfe, 0xed, 0, 0, 1, 0]);
        assert_eq!(bytes[20..24], 17u32.to_be_bytes(), "version");
        assert_eq!(bytes[24..28], 16u32.to_be_bytes(), "last compatible version");
        assert_eq!(bytes[36..40], 0xb8u32.to_be_bytes());
    }
}
