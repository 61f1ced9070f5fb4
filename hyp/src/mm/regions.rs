//! Set arithmetic on physical ranges, and the choice of block size for device
//! mappings of the host stage-2.

#![forbid(unsafe_code)]

use crate::range::{align_down, PhysRange, PAGE_SIZE};

/// Calls `f` with each piece of `range` that none of `holes` covers, in order.
pub fn for_each_piece_outside(range: PhysRange, holes: &[PhysRange], mut f: impl FnMut(PhysRange)) {
    let mut cursor = range.start;
    while cursor < range.end {
        // The hole that contains the cursor, or else the nearest one after it.
        let covering = holes.iter().filter(|h| h.contains(cursor)).map(|h| h.end).max();
        if let Some(end) = covering {
            cursor = end;
            continue;
        }
        let next_hole = holes.iter().filter(|h| h.start > cursor && h.start < range.end).map(|h| h.start).min();
        let end = next_hole.unwrap_or(range.end);
        f(PhysRange { start: cursor, end });
        cursor = end;
    }
}

/// The largest naturally aligned block (1 GiB, 2 MiB or 4 KiB) around `address`
/// that overlaps none of `memory` and ends within `limit`: what the host stage-2
/// maps as device memory when the host first touches non-RAM address space.
pub fn device_block_around(address: u64, memory: &[PhysRange], limit: u64) -> Option<PhysRange> {
    const SIZES: [u64; 3] = [1 << 30, 2 << 20, PAGE_SIZE];
    SIZES.into_iter().find_map(|size| {
        let block = PhysRange::from_base_size(align_down(address, size), size)?;
        (block.end <= limit && !memory.iter().any(|m| m.overlaps(&block))).then_some(block)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(start: u64, end: u64) -> PhysRange {
        PhysRange { start, end }
    }

    fn pieces(range: PhysRange, holes: &[PhysRange]) -> Vec<PhysRange> {
        let mut v = Vec::new();
        for_each_piece_outside(range, holes, |p| v.push(p));
        v
    }

    #[test]
    fn holes_are_cut_out() {
        let got = pieces(r(0, 100), &[r(10, 20), r(50, 60), r(90, 200)]);
        assert_eq!(got, vec![r(0, 10), r(20, 50), r(60, 90)]);
    }

    #[test]
    fn overlapping_and_outside_holes() {
        assert_eq!(pieces(r(0, 100), &[r(0, 30), r(20, 40)]), vec![r(40, 100)]);
        assert_eq!(pieces(r(0, 100), &[r(200, 300)]), vec![r(0, 100)]);
        assert_eq!(pieces(r(0, 100), &[r(0, 100)]), vec![]);
    }

    #[test]
    fn device_blocks_avoid_ram() {
        let ram = [r(0x4000_0000, 0x8000_0000)];
        // The UART's GiB (0..1 GiB) holds no RAM: one 1 GiB block.
        assert_eq!(device_block_around(0x900_0000, &ram, 1 << 40), Some(r(0, 0x4000_0000)));
        // RAM itself is never device memory.
        assert_eq!(device_block_around(0x4000_1000, &ram, 1 << 40), None);
        // Next to RAM that does not fill its GiB, smaller blocks are used.
        let ram = [r(0x4000_0000, 0x4010_0000)];
        assert_eq!(device_block_around(0x4020_0000, &ram, 1 << 40), Some(r(0x4020_0000, 0x4040_0000)));
        assert_eq!(device_block_around(0x4010_0000, &ram, 1 << 40), Some(r(0x4010_0000, 0x4010_1000)));
        // Nothing beyond the IPA limit.
        assert_eq!(device_block_around(1 << 40, &[], 1 << 40), None);
    }
}
