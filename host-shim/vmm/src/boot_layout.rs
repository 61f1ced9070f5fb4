//! Where a Linux guest's kernel, initramfs and device tree go in its RAM, as
//! the arm64 boot protocol wants: the Image `text_offset` bytes past a 2 MiB
//! boundary with `image_size` bytes free from there, the initramfs after it,
//! the tree (at most 2 MiB, 8-byte aligned) in the last 2 MiB.

use core::fmt;
use hyp_abi::image_header::ImageHeader;

const MIB_2: u64 = 2 << 20;

/// Guest-physical addresses of what the VMM copies in.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct BootLayout {
    pub kernel: u64,
    pub initrd: u64,
    pub tree: u64,
}

/// Room the device tree gets.
pub const TREE_ROOM: u64 = MIB_2;

/// Why the guest cannot boot from that RAM.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum LayoutError {
    /// The RAM does not start on a 2 MiB boundary.
    MisalignedRam,
    /// Kernel, initramfs and tree do not fit in the RAM.
    TooSmall,
}

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LayoutError::MisalignedRam => "guest RAM must start on a 2 MiB boundary",
            LayoutError::TooSmall => "the kernel, initramfs and device tree do not fit in guest RAM",
        })
    }
}

/// Places an Image with `header` and an initramfs of `initrd_size` bytes in
/// guest RAM at `ram_base` of `ram_size` bytes.
pub fn place(ram_base: u64, ram_size: u64, header: ImageHeader, initrd_size: u64) -> Result<BootLayout, LayoutError> {
    if !ram_base.is_multiple_of(MIB_2) {
        return Err(LayoutError::MisalignedRam);
    }
    let ram_end = ram_base.checked_add(ram_size).ok_or(LayoutError::TooSmall)?;
    let tree = ram_end.checked_sub(TREE_ROOM).ok_or(LayoutError::TooSmall)?;
    let kernel = ram_base.checked_add(header.text_offset).ok_or(LayoutError::TooSmall)?;
    let kernel_end = kernel.checked_add(header.image_size).ok_or(LayoutError::TooSmall)?;
    let initrd = kernel_end.checked_next_multiple_of(MIB_2).ok_or(LayoutError::TooSmall)?;
    let initrd_end = initrd.checked_add(initrd_size).ok_or(LayoutError::TooSmall)?;
    if initrd_end > tree {
        return Err(LayoutError::TooSmall);
    }
    Ok(BootLayout { kernel, initrd, tree })
}

/// The highest `size` bytes, aligned to `align` (a power of two), of host RAM
/// `ram` (start, end) that overlap none of the `(start, end)` ranges in `busy`:
/// where a VMM can take a guest's RAM from.
pub fn highest_free(ram: (u64, u64), busy: &[(u64, u64)], size: u64, align: u64) -> Option<u64> {
    if size == 0 || !align.is_power_of_two() {
        return None;
    }
    let mut end = ram.1;
    loop {
        let start = end.checked_sub(size)? & !(align - 1);
        if start < ram.0 {
            return None;
        }
        match busy.iter().filter(|b| b.0 < start + size && start < b.1).map(|b| b.0).min() {
            Some(clash) => end = clash,
            None => return Some(start),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KERNEL: ImageHeader = ImageHeader { text_offset: 0, image_size: 0x2d1_0000, flags: 0 };

    #[test]
    fn kernel_then_initramfs_then_the_tree_at_the_top() {
        let layout = place(0x8000_0000, 0x1000_0000, KERNEL, 0x14_0000).unwrap();
        assert_eq!(layout, BootLayout { kernel: 0x8000_0000, initrd: 0x82e0_0000, tree: 0x8fe0_0000 });
        let offset = ImageHeader { text_offset: 0x8_0000, image_size: 0x20_0000, flags: 0 };
        assert_eq!(place(0x4000_0000, 0x100_0000, offset, 1).unwrap().kernel, 0x4008_0000);
    }

    #[test]
    fn guest_ram_comes_from_the_top_below_everything_busy() {
        let ram = (0x4000_0000, 0x8000_0000);
        let hyp_pool = (0x7f60_0000, 0x8000_0000);
        let kernel = (0x6000_0000, 0x61d4_0200);
        assert_eq!(highest_free(ram, &[hyp_pool, kernel], 0x1000_0000, MIB_2), Some(0x6f60_0000));
        let low = (0x7000_0000, 0x7000_1000);
        assert_eq!(highest_free(ram, &[hyp_pool, low, kernel], 0x1000_0000, MIB_2), Some(0x5000_0000));
        assert_eq!(highest_free(ram, &[(0x4800_0000, 0x4800_1000), low], 0x3000_0000, MIB_2), None);
        assert_eq!(highest_free(ram, &[], 0x4000_0001, MIB_2), None);
        assert_eq!(highest_free(ram, &[], 0, MIB_2), None);
        assert_eq!(highest_free((0, 0x1000), &[], 0x2000, 0x1000), None);
    }

    #[test]
    fn what_does_not_fit_is_refused() {
        assert_eq!(place(0x8010_0000, 0x1000_0000, KERNEL, 1), Err(LayoutError::MisalignedRam));
        assert_eq!(place(0x8000_0000, 0x300_0000, KERNEL, 0x20_0000), Err(LayoutError::TooSmall));
        assert_eq!(place(0x8000_0000, 0x100_0000, KERNEL, 1), Err(LayoutError::TooSmall));
        assert_eq!(place(u64::MAX - 0x1f_ffff, 0x1000_0000, KERNEL, 1), Err(LayoutError::TooSmall));
        assert_eq!(place(0x8000_0000, 0x1000_0000, KERNEL, u64::MAX), Err(LayoutError::TooSmall));
    }
}
