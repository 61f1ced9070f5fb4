//! Physical address ranges and the small containers the boot path uses before the
//! hyp has a heap.

use core::fmt;

/// 4 KiB: the translation granule of every table the hyp builds.
pub const PAGE_SIZE: u64 = 4096;
/// 2 MiB: the Linux arm64 Image base alignment, and a level-2 block.
pub const SIZE_2M: u64 = 2 << 20;

/// A half-open range of physical addresses `[start, end)`.
#[derive(Clone, Copy, Default, Eq, PartialEq)]
pub struct PhysRange {
    pub start: u64,
    pub end: u64,
}

impl PhysRange {
    /// The range `[start, start + size)`, or `None` if it would wrap.
    pub fn from_base_size(start: u64, size: u64) -> Option<Self> {
        Some(Self { start, end: start.checked_add(size)? })
    }

    pub fn size(&self) -> u64 {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }

    pub fn contains(&self, address: u64) -> bool {
        self.start <= address && address < self.end
    }

    pub fn overlaps(&self, other: &PhysRange) -> bool {
        self.start < other.end && other.start < self.end
    }

    /// The smallest page-aligned range that covers `self`.
    pub fn page_aligned_outward(&self) -> Self {
        Self {
            start: align_down(self.start, PAGE_SIZE),
            end: align_up(self.end, PAGE_SIZE).unwrap_or(!(PAGE_SIZE - 1)),
        }
    }
}

impl fmt::Debug for PhysRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{:#x}..{:#x})", self.start, self.end)
    }
}

impl fmt::Display for PhysRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Rounds down to a power-of-two `align`.
pub const fn align_down(value: u64, align: u64) -> u64 {
    value & !(align - 1)
}

/// Rounds up to a power-of-two `align`; `None` if that overflows.
pub const fn align_up(value: u64, align: u64) -> Option<u64> {
    match value.checked_add(align - 1) {
        Some(v) => Some(v & !(align - 1)),
        None => None,
    }
}

/// A vector of at most `N` items that needs no heap; pushing more sets `overflowed`
/// instead of failing, so that boot can report what it had to leave out.
#[derive(Clone, Copy)]
pub struct FixedVec<T: Copy + Default, const N: usize> {
    items: [T; N],
    len: usize,
    overflowed: bool,
}

impl<T: Copy + Default, const N: usize> Default for FixedVec<T, N> {
    fn default() -> Self {
        Self { items: [T::default(); N], len: 0, overflowed: false }
    }
}

impl<T: Copy + Default, const N: usize> FixedVec<T, N> {
    /// Appends `item`; returns false (and remembers it) when full.
    pub fn push(&mut self, item: T) -> bool {
        match self.items.get_mut(self.len) {
            Some(slot) => {
                *slot = item;
                self.len += 1;
                true
            }
            None => {
                self.overflowed = true;
                false
            }
        }
    }

    pub fn as_slice(&self) -> &[T] {
        &self.items[..self.len]
    }

    pub fn as_mut_slice(&mut self) -> &mut [T] {
        &mut self.items[..self.len]
    }

    /// Takes out the item at `index`, the last one taking its place.
    pub fn swap_remove(&mut self, index: usize) -> Option<T> {
        if index >= self.len {
            return None;
        }
        self.items.swap(index, self.len - 1);
        self.len -= 1;
        self.items.get(self.len).copied()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether some push was refused for lack of room.
    pub fn overflowed(&self) -> bool {
        self.overflowed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_overlap_only_when_they_share_a_byte() {
        let a = PhysRange { start: 0x1000, end: 0x2000 };
        assert!(a.overlaps(&PhysRange { start: 0x1fff, end: 0x3000 }));
        assert!(!a.overlaps(&PhysRange { start: 0x2000, end: 0x3000 }));
        assert!(!a.overlaps(&PhysRange { start: 0x0, end: 0x1000 }));
    }

    #[test]
    fn from_base_size_rejects_wrapping() {
        assert_eq!(PhysRange::from_base_size(u64::MAX, 2), None);
        assert_eq!(PhysRange::from_base_size(0x1000, 0x1000).map(|r| r.end), Some(0x2000));
    }

    #[test]
    fn alignment_helpers() {
        assert_eq!(align_down(0x1234, 0x1000), 0x1000);
        assert_eq!(align_up(0x1234, 0x1000), Some(0x2000));
        assert_eq!(align_up(0x2000, 0x1000), Some(0x2000));
        assert_eq!(align_up(u64::MAX, 0x1000), None);
    }

    #[test]
    fn fixed_vec_reports_overflow() {
        let mut v: FixedVec<u32, 2> = FixedVec::default();
        assert!(v.push(1) && v.push(2));
        assert!(!v.push(3));
        assert!(v.overflowed());
        assert_eq!(v.as_slice(), &[1, 2]);
    }
}
