//! Is the guest's kernel a whole arm64 Image? Checked before a VMM copies it
//! into guest RAM, so that a damaged or cut kernel is refused with a reason
//! instead of leaving a guest that hangs or dies early.
//!
//! The Linux arm64 Image header (`hyp_abi::image_header`) gives the magic
//! `ARM\x64` at 0x38 and `image_size`, which covers the file (bss included,
//! so a file longer than it is not an Image). It does not say how long the
//! file is; an EFI-stub kernel (Debian's, every distribution's) also carries a
//! PE/COFF header (its offset in the header's last word, `res5`) whose
//! section table says where each section's bytes are in the file: a file that
//! ends before the last of them was cut short.

use core::fmt;
use hyp_abi::image_header::{ImageError, ImageHeader};

/// Why a kernel cannot be loaded.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum KernelError {
    /// Not an arm64 Image (no magic, too short, `image_size` smaller than the
    /// file, big-endian).
    Header(ImageError),
    /// The file ends before the bytes its PE/COFF header describes.
    Truncated { expected: u64, present: u64 },
}

impl fmt::Display for KernelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KernelError::Header(ImageError::BadMagic) => f.write_str(
                "not an arm64 kernel Image (no ARM\\x64 magic at offset 0x38): give the uncompressed Image \
                 (a distribution's vmlinuz is often gzip-compressed: gunzip it, as scripts/fetch-linux does)",
            ),
            KernelError::Header(e) => {
                write!(f, "not a usable arm64 kernel Image: {e}; give a whole, little-endian Image")
            }
            KernelError::Truncated { expected, present } => write!(
                f,
                "the kernel Image is cut short: its PE/COFF header describes {expected:#x} bytes, {present:#x} are \
                 present; copy it again (and give its whole size)"
            ),
        }
    }
}

fn le16(bytes: &[u8], at: usize) -> Option<u64> {
    let b = bytes.get(at..at.checked_add(2)?)?;
    Some(u64::from(u16::from_le_bytes([b[0], b[1]])))
}

fn le32(bytes: &[u8], at: usize) -> Option<u64> {
    let b = bytes.get(at..at.checked_add(4)?)?;
    Some(u64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]])))
}

/// Offset of the PE/COFF header's offset in the Image header (`res5`).
const PE_OFFSET_FIELD: usize = 0x3c;
/// Bytes of a COFF section table entry.
const SECTION_ENTRY: u64 = 40;

/// The bytes of the file the PE/COFF header's sections reach (the end of the
/// furthest section's raw data), or `None` without a PE/COFF header.
///
/// # Errors
///
/// [`KernelError::Truncated`] if the PE/COFF header or its section table
/// itself lies past the bytes present.
pub fn pe_file_size(bytes: &[u8]) -> Result<Option<u64>, KernelError> {
    let present = bytes.len() as u64;
    let cut = |expected: u64| KernelError::Truncated { expected, present };
    let pe = le32(bytes, PE_OFFSET_FIELD).unwrap_or(0);
    if pe == 0 {
        return Ok(None);
    }
    let at = |offset: u64| usize::try_from(pe + offset).unwrap_or(usize::MAX);
    match bytes.get(at(0)..at(4)) {
        None => return Err(cut(pe + 4)),
        Some(signature) if signature != b"PE\0\0" => return Ok(None),
        Some(_) => {}
    }
    let sections = le16(bytes, at(6)).ok_or(cut(pe + 8))?;
    let optional_header = le16(bytes, at(20)).ok_or(cut(pe + 22))?;
    let table = pe + 24 + optional_header;
    let table_end = table + sections * SECTION_ENTRY;
    if table_end > present {
        return Err(cut(table_end));
    }
    let mut end = table_end;
    for index in 0..sections {
        let entry = table + index * SECTION_ENTRY;
        let entry_at = |offset: u64| usize::try_from(entry + offset).unwrap_or(usize::MAX);
        let raw_size = le32(bytes, entry_at(16)).ok_or(cut(table_end))?;
        let raw_pointer = le32(bytes, entry_at(20)).ok_or(cut(table_end))?;
        if raw_size != 0 {
            end = end.max(raw_pointer + raw_size);
        }
    }
    Ok(Some(end))
}

/// Checks the whole kernel file `bytes`: its Image header, and that it is
/// as long as its PE/COFF header (if any) says.
///
/// # Errors
///
/// See [`KernelError`].
pub fn check(bytes: &[u8]) -> Result<ImageHeader, KernelError> {
    let header = ImageHeader::parse(bytes).map_err(KernelError::Header)?;
    if let Some(expected) = pe_file_size(bytes)? {
        let present = bytes.len() as u64;
        if present < expected {
            return Err(KernelError::Truncated { expected, present });
        }
    }
    Ok(header)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;
    use std::vec::Vec;

    /// An EFI-stub-like Image of `len` bytes: the arm64 header, a PE/COFF
    /// header at 0x40 with an optional header of 0xa0 bytes and two
    /// sections, `.text` at 0x1000 and `.data` ending at `len`.
    fn efi_image(len: usize) -> Vec<u8> {
        let mut img = std::vec![0u8; len];
        img[16..24].copy_from_slice(&(2 * len as u64).to_le_bytes());
        img[24..32].copy_from_slice(&0xau64.to_le_bytes());
        img[56..60].copy_from_slice(b"ARM\x64");
        img[60..64].copy_from_slice(&0x40u32.to_le_bytes());
        img[0x40..0x44].copy_from_slice(b"PE\0\0");
        img[0x46..0x48].copy_from_slice(&2u16.to_le_bytes());
        img[0x54..0x56].copy_from_slice(&0xa0u16.to_le_bytes());
        let table = 0x40 + 24 + 0xa0;
        let half = (len as u32 - 0x1000) / 2;
        for (i, (pointer, size)) in [(0x1000u32, half), (0x1000 + half, len as u32 - 0x1000 - half)].iter().enumerate()
        {
            let entry = table + i * 40;
            img[entry..entry + 5].copy_from_slice(if i == 0 { b".text" } else { b".data" });
            img[entry + 16..entry + 20].copy_from_slice(&size.to_le_bytes());
            img[entry + 20..entry + 24].copy_from_slice(&pointer.to_le_bytes());
        }
        img
    }

    #[test]
    fn a_whole_efi_image_passes() {
        let img = efi_image(0x10000);
        assert_eq!(pe_file_size(&img), Ok(Some(0x10000)));
        assert_eq!(check(&img).map(|h| h.image_size), Ok(0x20000));
    }

    #[test]
    fn a_cut_efi_image_is_refused_at_any_length() {
        let img = efi_image(0x10000);
        for len in [0x200, 0x1000, 0x8000, 0xf000, 0xfff8] {
            assert_eq!(
                check(&img[..len]),
                Err(KernelError::Truncated { expected: 0x10000, present: len as u64 }),
                "{len:#x}"
            );
        }
        // Cut inside the PE/COFF header itself.
        assert!(matches!(check(&img[..0x80]), Err(KernelError::Truncated { present: 0x80, .. })));
        assert!(matches!(check(&img[..0x42]), Err(KernelError::Truncated { present: 0x42, .. })));
        // Shorter than the Image header.
        assert_eq!(check(&img[..0x20]), Err(KernelError::Header(ImageError::TooShort)));
    }

    #[test]
    fn images_without_a_pe_header_are_checked_by_their_header() {
        let mut img = efi_image(0x4000);
        img[60..64].fill(0);
        assert_eq!(pe_file_size(&img), Ok(None));
        assert!(check(&img).is_ok());
        // res5 points at something that is not a PE header.
        img[60..64].copy_from_slice(&0x80u32.to_le_bytes());
        assert_eq!(pe_file_size(&img), Ok(None));
    }

    #[test]
    fn bad_headers_are_refused_with_a_reason() {
        let mut img = efi_image(0x4000);
        img[56] = b'X';
        let error = check(&img).expect_err("no magic");
        assert_eq!(error, KernelError::Header(ImageError::BadMagic));
        assert!(error.to_string().contains("gunzip"), "{error}");
        let gzip = [0x1f, 0x8b, 0x08, 0x00].iter().copied().cycle().take(4096).collect::<Vec<u8>>();
        assert_eq!(check(&gzip), Err(KernelError::Header(ImageError::BadMagic)));
        let mut small = efi_image(0x4000);
        small[16..24].copy_from_slice(&0x100u64.to_le_bytes());
        assert_eq!(check(&small), Err(KernelError::Header(ImageError::BadSize)));
        assert!(KernelError::Truncated { expected: 2, present: 1 }.to_string().contains("copy it again"));
    }

    #[test]
    fn hostile_pe_headers_never_panic() {
        let img = efi_image(0x4000);
        for field in [0x3c, 0x46, 0x54] {
            for value in [u32::MAX, 0xffff, 0x7fff_ffff, 1] {
                let mut bad = img.clone();
                let width = if field == 0x3c { 4 } else { 2 };
                bad[field..field + width].copy_from_slice(&value.to_le_bytes()[..width]);
                let _ = check(&bad);
            }
        }
        let table = 0x40 + 24 + 0xa0;
        let mut huge = img.clone();
        huge[table + 16..table + 24].copy_from_slice(&[0xff; 8]);
        assert!(matches!(check(&huge), Err(KernelError::Truncated { .. })));
    }
}
