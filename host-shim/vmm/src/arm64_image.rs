//! The header of an arm64 Linux kernel Image (Linux's
//! Documentation/arch/arm64/booting.rst): where in a 2 MiB-aligned region the
//! Image goes and how much room it needs from there.

use core::fmt;

/// "ARM\x64", little-endian, at offset 0x38.
const MAGIC: u32 = 0x644d_5241;
/// Bytes of the header this reads.
pub const HEADER_SIZE: usize = 64;

/// What the header says.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct ImageHeader {
    /// Where the Image goes, from a 2 MiB-aligned base.
    pub text_offset: u64,
    /// The room it needs from its start (its code, data and bss).
    pub image_size: u64,
}

/// Why bytes are not a usable Image.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum ImageError {
    /// No arm64 Image magic: not a kernel (or a compressed one).
    NotAnImage,
    /// `image_size` 0: a kernel older than 3.17, whose needs are unknown.
    NoSize,
    /// A big-endian kernel (flags bit 0).
    BigEndian,
}

impl fmt::Display for ImageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ImageError::NotAnImage => "not an arm64 kernel Image (no \"ARM\\x64\" magic)",
            ImageError::NoSize => "the Image gives no image_size (a kernel older than 3.17)",
            ImageError::BigEndian => "a big-endian kernel",
        })
    }
}

fn le64(bytes: &[u8; HEADER_SIZE], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

impl ImageHeader {
    /// Reads the header from the first [`HEADER_SIZE`] bytes of an Image.
    pub fn parse(bytes: &[u8; HEADER_SIZE]) -> Result<ImageHeader, ImageError> {
        let magic = u32::from_le_bytes([bytes[0x38], bytes[0x39], bytes[0x3a], bytes[0x3b]]);
        if magic != MAGIC {
            return Err(ImageError::NotAnImage);
        }
        let (text_offset, image_size, flags) = (le64(bytes, 8), le64(bytes, 16), le64(bytes, 24));
        if image_size == 0 {
            return Err(ImageError::NoSize);
        }
        if flags & 1 != 0 {
            return Err(ImageError::BigEndian);
        }
        Ok(ImageHeader { text_offset, image_size })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(text_offset: u64, image_size: u64, flags: u64) -> [u8; HEADER_SIZE] {
        let mut h = [0u8; HEADER_SIZE];
        h[8..16].copy_from_slice(&text_offset.to_le_bytes());
        h[16..24].copy_from_slice(&image_size.to_le_bytes());
        h[24..32].copy_from_slice(&flags.to_le_bytes());
        h[0x38..0x3c].copy_from_slice(b"ARM\x64");
        h
    }

    #[test]
    fn a_kernel_header_gives_its_offset_and_size() {
        assert_eq!(
            ImageHeader::parse(&header(0, 0x2d1_0000, 0b1010)),
            Ok(ImageHeader { text_offset: 0, image_size: 0x2d1_0000 })
        );
    }

    #[test]
    fn other_bytes_are_refused() {
        assert_eq!(ImageHeader::parse(&[0; HEADER_SIZE]), Err(ImageError::NotAnImage));
        assert_eq!(ImageHeader::parse(&header(0x8_0000, 0, 0)), Err(ImageError::NoSize));
        assert_eq!(ImageHeader::parse(&header(0, 0x100_0000, 1)), Err(ImageError::BigEndian));
    }
}
