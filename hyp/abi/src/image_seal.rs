//! The seal of the hyp's own Image: its size and a checksum, in two of the
//! Linux arm64 Image header's reserved fields, so that a damaged or truncated
//! `hyp.img` stops with a clear message instead of hanging or running half an
//! image. `scripts/build-image` writes the seal (`hyp-image-tool seal`); the
//! hyp's entry code checks it before it applies a relocation or reads
//! anything past its first page (`hyp/src/arch/aarch64/image_check.S`).
//!
//! | offset | field (booting.rst) | the hyp's use |
//! |---|---|---|
//! | 40 | `res3` | sealed size: bytes of the Image file, a multiple of 8, at least 64 and at most `image_size` |
//! | 48 | `res4` | checksum of those bytes, this field read as zero |
//!
//! The Linux boot protocol's own fields (`code0`, `text_offset`,
//! `image_size`, `flags`, magic) keep their meaning, and `res5` (the PE/COFF
//! header offset of EFI-stub kernels) stays 0: a loader sees an ordinary
//! Image.
//!
//! The checksum is a multiply-add over 64-bit words with a fold: the bytes
//! are read as little-endian 64-bit words `w` (index 0, 1, ...), and from
//! `h = 0xcbf29ce484222325` (FNV-64's offset basis) each word does
//! `h = h * 0x9e3779b97f4a7c15 + w mod 2^64` (an odd multiplier: 2^64 over
//! the golden ratio); after each word whose index is 7 mod 8, and once more
//! at the end, `h ^= h >> 32`. Each step is a bijection of `h` for a given
//! word and an injection of the word for a given `h`, so a change confined to
//! one aligned 8-byte word always changes the checksum; a truncated image
//! changes it unless the cut bytes were zero in the file and read as zero in
//! memory (then the image in memory is the right one). Words, not bytes: the
//! check runs with the MMU and data cache off, where every load is a trip to
//! memory; and one multiply-add a word, folded every eighth, is a third of
//! FNV-1a's three instructions a word (the hyp checked itself with FNV-1a
//! before: 0.2 of reset to host's 1.0 million instructions). The same in
//! Python, with bytes 48..56 zeroed first: `h = 0xcbf29ce484222325;
//! for i, (w,) in enumerate(struct.iter_unpack('<Q', img)): h = (h *
//! 0x9e3779b97f4a7c15 + w) % 2**64; h ^= (h >> 32) if i % 8 == 7 else 0`,
//! then `h ^= h >> 32`.

use crate::image_header::{ImageError, ImageHeader, IMAGE_HEADER_SIZE};
use core::fmt;

/// Offset of the sealed size (`res3`).
pub const SEALED_SIZE_OFFSET: usize = 40;
/// Offset of the checksum (`res4`).
pub const CHECKSUM_OFFSET: usize = 48;
/// The hash before the first word (FNV-64's offset basis).
pub const CHECKSUM_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
/// The multiplier of each word's step: odd, so the step is a bijection.
pub const CHECKSUM_MULTIPLIER: u64 = 0x9e37_79b9_7f4a_7c15;

/// Why an Image is not a sealed hyp image, or not the one that was sealed.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum SealError {
    /// Not an arm64 Image at all.
    Image(ImageError),
    /// The sealed size is not a multiple of 8 between the header's 64 bytes
    /// and `image_size` (0: the link did not record it).
    BadSize { sealed_size: u64, image_size: u64 },
    /// The file is longer than the sealed size says.
    Longer { sealed_size: u64, file_size: u64 },
    /// Fewer bytes than the sealed size: the file was cut short.
    Truncated { sealed_size: u64, file_size: u64 },
    /// The checksum of the bytes is not the recorded one (0: never sealed).
    Mismatch { computed: u64, recorded: u64 },
}

impl fmt::Display for SealError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            SealError::Image(e) => write!(f, "not an arm64 Image: {e}"),
            SealError::BadSize { sealed_size, image_size } => write!(
                f,
                "the header's sealed size {sealed_size:#x} (res3) is not a multiple of 8 between 64 and \
                 image_size {image_size:#x}: not a hyp image linked with linker/image.ld, or a damaged header"
            ),
            SealError::Longer { sealed_size, file_size } => {
                write!(f, "the file has {file_size:#x} bytes, more than the sealed size {sealed_size:#x}")
            }
            SealError::Truncated { sealed_size, file_size } => write!(
                f,
                "truncated: the file has {file_size:#x} bytes, the header says {sealed_size:#x}; copy or build it again"
            ),
            SealError::Mismatch { recorded: 0, .. } => {
                f.write_str("never sealed (checksum field 0): build it with scripts/build-image")
            }
            SealError::Mismatch { computed, recorded } => write!(
                f,
                "damaged: checksum {computed:#018x}, the header says {recorded:#018x}; copy or build it again"
            ),
        }
    }
}

fn le64(bytes: &[u8], offset: usize) -> u64 {
    let mut b = [0u8; 8];
    if let Some(field) = bytes.get(offset..offset + 8) {
        b.copy_from_slice(field);
    }
    u64::from_le_bytes(b)
}

/// The checksum of `image` (see the module's documentation): its 64-bit
/// little-endian words (a last partial word zero-padded), the checksum field
/// read as zero.
pub fn checksum(image: &[u8]) -> u64 {
    let mut h = CHECKSUM_BASIS;
    for (index, chunk) in image.chunks(8).enumerate() {
        let mut word = [0u8; 8];
        word[..chunk.len()].copy_from_slice(chunk);
        let w = if index * 8 == CHECKSUM_OFFSET { 0 } else { u64::from_le_bytes(word) };
        h = h.wrapping_mul(CHECKSUM_MULTIPLIER).wrapping_add(w);
        if index % 8 == 7 {
            h ^= h >> 32;
        }
    }
    h ^ (h >> 32)
}

/// The sealed size the header of `image` records, checked against its
/// `image_size` (the file's own length is not looked at).
///
/// # Errors
///
/// [`SealError::Image`] if the header is not an arm64 Image's,
/// [`SealError::BadSize`] if the size is not a multiple of 8 in
/// `64..=image_size`.
pub fn sealed_size(image: &[u8]) -> Result<usize, SealError> {
    let header = ImageHeader::parse(image.get(..IMAGE_HEADER_SIZE).unwrap_or(image)).map_err(SealError::Image)?;
    let sealed = le64(image, SEALED_SIZE_OFFSET);
    let bad = SealError::BadSize { sealed_size: sealed, image_size: header.image_size };
    if sealed < IMAGE_HEADER_SIZE as u64 || sealed > header.image_size || !sealed.is_multiple_of(8) {
        return Err(bad);
    }
    usize::try_from(sealed).map_err(|_| bad)
}

/// Seals `image`, which must already be [`sealed_size`] bytes long: writes
/// its checksum into the header. Returns the checksum.
///
/// # Errors
///
/// Those of [`sealed_size`], and [`SealError::Longer`] or
/// [`SealError::Truncated`] if the length is not the sealed size.
pub fn seal(image: &mut [u8]) -> Result<u64, SealError> {
    let size = sealed_size(image)?;
    let file_size = image.len() as u64;
    if image.len() != size {
        let sealed_size = size as u64;
        return Err(if image.len() > size {
            SealError::Longer { sealed_size, file_size }
        } else {
            SealError::Truncated { sealed_size, file_size }
        });
    }
    let sum = checksum(image);
    image[CHECKSUM_OFFSET..CHECKSUM_OFFSET + 8].copy_from_slice(&sum.to_le_bytes());
    Ok(sum)
}

/// Checks a sealed image file as the hyp checks itself at boot (and its
/// length, which the hyp cannot see).
///
/// # Errors
///
/// See [`SealError`].
pub fn verify(image: &[u8]) -> Result<(), SealError> {
    let size = sealed_size(image)?;
    let file_size = image.len() as u64;
    if image.len() < size {
        return Err(SealError::Truncated { sealed_size: size as u64, file_size });
    }
    if image.len() > size {
        return Err(SealError::Longer { sealed_size: size as u64, file_size });
    }
    let (computed, recorded) = (checksum(image), le64(image, CHECKSUM_OFFSET));
    if computed != recorded {
        return Err(SealError::Mismatch { computed, recorded });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec;
    use std::vec::Vec;

    /// An Image of `len` bytes (image_size 2 * len) whose header records
    /// `sealed` as its size, with patterned contents.
    fn image(len: usize, sealed: u64) -> Vec<u8> {
        let mut img: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
        img[..64].fill(0);
        img[16..24].copy_from_slice(&(2 * len as u64).to_le_bytes());
        img[24..32].copy_from_slice(&0xau64.to_le_bytes());
        img[40..48].copy_from_slice(&sealed.to_le_bytes());
        img[56..60].copy_from_slice(b"ARM\x64");
        img
    }

    #[test]
    fn the_checksum_is_the_documented_multiply_add_and_fold() {
        let fold = |h: u64| h ^ (h >> 32);
        let step = |h: u64, w: u64| h.wrapping_mul(CHECKSUM_MULTIPLIER).wrapping_add(w);
        assert_eq!(checksum(&[]), fold(CHECKSUM_BASIS));
        // One word, by hand.
        assert_eq!(checksum(&[1, 2, 3, 4, 5, 6, 7, 8]), fold(step(CHECKSUM_BASIS, 0x0807_0605_0403_0201)));
        // Nine words: a fold after the eighth (index 7), then the ninth, then
        // the last fold; the seventh (the checksum field) read as zero.
        let words: Vec<u8> = (1..=72).collect();
        let mut h = CHECKSUM_BASIS;
        for (index, word) in words.chunks(8).enumerate() {
            let w =
                if index * 8 == CHECKSUM_OFFSET { 0 } else { u64::from_le_bytes(word.try_into().expect("8 bytes")) };
            h = step(h, w);
            if index == 7 {
                h = fold(h);
            }
        }
        assert_eq!(checksum(&words), fold(h));
        // A partial last word is zero-padded.
        assert_eq!(checksum(&[1, 2, 3]), checksum(&[1, 2, 3, 0, 0, 0, 0, 0]));
        // The checksum field does not count.
        let mut a = image(4096, 4096);
        let before = checksum(&a);
        a[CHECKSUM_OFFSET..CHECKSUM_OFFSET + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(checksum(&a), before);
    }

    #[test]
    fn sealed_images_verify() {
        let mut img = image(8192, 8192);
        assert_eq!(verify(&img), Err(SealError::Mismatch { computed: checksum(&img), recorded: 0 }));
        let sum = seal(&mut img).expect("seals");
        assert_eq!(le64(&img, CHECKSUM_OFFSET), sum);
        assert_eq!(verify(&img), Ok(()));
        // Sealing again changes nothing.
        let copy = img.clone();
        assert_eq!(seal(&mut img), Ok(sum));
        assert_eq!(img, copy);
    }

    #[test]
    fn every_single_byte_change_is_caught() {
        let mut img = image(2048, 2048);
        seal(&mut img).expect("seals");
        for at in (0..img.len()).filter(|at| !(CHECKSUM_OFFSET..CHECKSUM_OFFSET + 8).contains(at)) {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut bad = img.clone();
                bad[at] ^= flip;
                assert!(verify(&bad).is_err(), "byte {at:#x} ^ {flip:#x} not caught");
            }
        }
        // Two words swapped.
        let mut swapped = img.clone();
        let (a, b) = swapped.split_at_mut(1024);
        a[512..520].swap_with_slice(&mut b[8..16]);
        assert_ne!(swapped, img, "the two words differ");
        assert!(matches!(verify(&swapped), Err(SealError::Mismatch { .. })));
    }

    #[test]
    fn truncated_and_padded_files_are_refused() {
        let mut img = image(8192, 8192);
        seal(&mut img).expect("seals");
        assert_eq!(verify(&img[..4096]), Err(SealError::Truncated { sealed_size: 8192, file_size: 4096 }));
        let mut longer = img.clone();
        longer.extend_from_slice(&[0; 8]);
        assert_eq!(verify(&longer), Err(SealError::Longer { sealed_size: 8192, file_size: 8200 }));
        // What the hyp sees of a cut file: the missing bytes read as zero.
        let mut in_memory = img[..8192 - 3072].to_vec();
        in_memory.resize(8192, 0);
        assert!(matches!(verify(&in_memory), Err(SealError::Mismatch { .. })));
        assert_eq!(seal(&mut img.clone()[..4096]), Err(SealError::Truncated { sealed_size: 8192, file_size: 4096 }));
    }

    #[test]
    fn bad_sealed_sizes_are_refused() {
        for sealed in [0, 8, 63, 4097, 2 * 4096 + 8, u64::MAX] {
            let img = image(4096, sealed);
            assert_eq!(
                sealed_size(&img),
                Err(SealError::BadSize { sealed_size: sealed, image_size: 8192 }),
                "{sealed:#x}"
            );
        }
        assert_eq!(sealed_size(&image(4096, 64)), Ok(64));
        assert_eq!(sealed_size(&image(4096, 8192)), Ok(8192));
        assert_eq!(sealed_size(&[0u8; 10]), Err(SealError::Image(ImageError::TooShort)));
        assert_eq!(sealed_size(&vec![0u8; 4096]), Err(SealError::Image(ImageError::BadMagic)));
    }

    #[test]
    fn messages_say_what_to_do() {
        use std::string::ToString;
        assert!(SealError::Mismatch { computed: 1, recorded: 0 }.to_string().contains("scripts/build-image"));
        assert!(SealError::Mismatch { computed: 1, recorded: 2 }.to_string().contains("copy or build it again"));
        assert!(SealError::Truncated { sealed_size: 2, file_size: 1 }.to_string().contains("copy or build it again"));
    }
}
