//! The Linux arm64 Image header (Documentation/arch/arm64/booting.rst): the 64
//! bytes at the start of the hyp's own image, of the host Image it loads, and
//! of the guest kernels the host's VMMs load. Here because every loader of the
//! project reads it.

use core::fmt;

/// `ARM\x64`, little-endian at offset 56.
pub const IMAGE_MAGIC: u32 = 0x644d_5241;
/// Size of the header.
pub const IMAGE_HEADER_SIZE: usize = 64;

/// The fields a loader needs.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct ImageHeader {
    /// Offset from the 2 MiB-aligned base at which the Image must sit.
    pub text_offset: u64,
    /// Bytes from the start of the Image that it uses, bss included.
    pub image_size: u64,
    /// Bit 0 big-endian, bits 2:1 page size, bit 3 placement anywhere.
    pub flags: u64,
}

/// Why a blob is not a loadable Image.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum ImageError {
    TooShort,
    BadMagic,
    /// `image_size` is zero (pre-3.17 kernel) or smaller than the file.
    BadSize,
    BigEndian,
}

impl fmt::Display for ImageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ImageError::TooShort => "shorter than an Image header",
            ImageError::BadMagic => "no ARM\\x64 magic: not an arm64 Image",
            ImageError::BadSize => "image_size is zero or smaller than the file",
            ImageError::BigEndian => "big-endian Image",
        })
    }
}

fn le64(bytes: &[u8], offset: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[offset..offset + 8]);
    u64::from_le_bytes(b)
}

impl ImageHeader {
    /// Reads and checks the header of `image`.
    ///
    /// # Errors
    ///
    /// See [`ImageError`].
    pub fn parse(image: &[u8]) -> Result<ImageHeader, ImageError> {
        if image.len() < IMAGE_HEADER_SIZE {
            return Err(ImageError::TooShort);
        }
        if u32::from_le_bytes([image[56], image[57], image[58], image[59]]) != IMAGE_MAGIC {
            return Err(ImageError::BadMagic);
        }
        let header = ImageHeader { text_offset: le64(image, 8), image_size: le64(image, 16), flags: le64(image, 24) };
        if header.image_size < image.len() as u64 {
            return Err(ImageError::BadSize);
        }
        if header.flags & 1 != 0 {
            return Err(ImageError::BigEndian);
        }
        Ok(header)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(text_offset: u64, image_size: u64, flags: u64) -> [u8; 128] {
        let mut h = [0u8; 128];
        h[8..16].copy_from_slice(&text_offset.to_le_bytes());
        h[16..24].copy_from_slice(&image_size.to_le_bytes());
        h[24..32].copy_from_slice(&flags.to_le_bytes());
        h[56..60].copy_from_slice(b"ARM\x64");
        h
    }

    #[test]
    fn parses_a_valid_header() {
        assert_eq!(
            ImageHeader::parse(&header(0, 0x20000, 0xa)),
            Ok(ImageHeader { text_offset: 0, image_size: 0x20000, flags: 0xa })
        );
        // A loader that has only the header reads it alone.
        let kernel = header(0x8_0000, 0x2d1_0000, 0);
        let parsed = ImageHeader::parse(&kernel[..IMAGE_HEADER_SIZE]);
        assert_eq!(parsed.map(|h| (h.text_offset, h.image_size)), Ok((0x8_0000, 0x2d1_0000)));
    }

    #[test]
    fn rejects_bad_images() {
        assert_eq!(ImageHeader::parse(&[0u8; 10]), Err(ImageError::TooShort));
        let mut bad = header(0, 0x1000, 0);
        bad[56] = b'X';
        assert_eq!(ImageHeader::parse(&bad), Err(ImageError::BadMagic));
        assert_eq!(ImageHeader::parse(&header(0, 0, 0)), Err(ImageError::BadSize));
        assert_eq!(ImageHeader::parse(&header(0, 0x1000, 1)), Err(ImageError::BigEndian));
    }
}
