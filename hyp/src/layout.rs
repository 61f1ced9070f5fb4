//! Placing things in RAM at boot: the hyp's memory pool, the host image and the
//! host's device tree must each land in a bank of RAM, aligned, clear of
//! everything already in use (the hyp image, the incoming device tree,
//! `/memreserve/` and `/reserved-memory`, and each other).

#![forbid(unsafe_code)]

use crate::range::{align_down, align_up, PhysRange};

/// Which end of RAM to prefer.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Placement {
    /// The lowest fitting address (where a kernel Image conventionally goes).
    Lowest,
    /// The highest fitting address (out of the way of the host).
    Highest,
}

/// Finds `size` bytes aligned to `align` (a power of two) inside one bank of `ram`
/// that overlap nothing in `avoid`.
pub fn find_free(
    ram: &[PhysRange],
    avoid: &[PhysRange],
    size: u64,
    align: u64,
    placement: Placement,
) -> Option<PhysRange> {
    if size == 0 || !align.is_power_of_two() {
        return None;
    }
    let first_clash = |candidate: &PhysRange| {
        avoid.iter().filter(|a| a.overlaps(candidate)).copied().reduce(|a, b| match placement {
            Placement::Lowest => {
                if b.end > a.end {
                    b
                } else {
                    a
                }
            }
            Placement::Highest => {
                if b.start < a.start {
                    b
                } else {
                    a
                }
            }
        })
    };
    let try_bank = |bank: &PhysRange| -> Option<PhysRange> {
        match placement {
            Placement::Lowest => {
                let mut start = align_up(bank.start, align)?;
                loop {
                    let candidate = PhysRange::from_base_size(start, size)?;
                    if candidate.end > bank.end {
                        return None;
                    }
                    match first_clash(&candidate) {
                        None => return Some(candidate),
                        Some(clash) => start = align_up(clash.end, align)?,
                    }
                }
            }
            Placement::Highest => {
                let mut start = align_down(bank.end.checked_sub(size)?, align);
                loop {
                    if start < bank.start {
                        return None;
                    }
                    let candidate = PhysRange::from_base_size(start, size)?;
                    match first_clash(&candidate) {
                        None => return Some(candidate),
                        Some(clash) => start = align_down(clash.start.checked_sub(size)?, align),
                    }
                }
            }
        }
    };
    match placement {
        Placement::Lowest => ram.iter().find_map(try_bank),
        Placement::Highest => ram.iter().rev().find_map(try_bank),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn r(start: u64, end: u64) -> PhysRange {
        PhysRange { start, end }
    }

    #[test]
    fn lowest_skips_every_clash_and_keeps_alignment() {
        let ram = [r(0x4000_0000, 0x8000_0000)];
        let avoid = [r(0x4000_0000, 0x4010_0000), r(0x4020_0000, 0x4030_0000)];
        let got = find_free(&ram, &avoid, 2 * MIB, 2 * MIB, Placement::Lowest);
        assert_eq!(got, Some(r(0x4040_0000, 0x4060_0000)));
    }

    #[test]
    fn highest_comes_down_from_the_top() {
        let ram = [r(0x4000_0000, 0x8000_0000)];
        let avoid = [r(0x7ff0_0000, 0x8000_0000)];
        let got = find_free(&ram, &avoid, 8 * MIB, 2 * MIB, Placement::Highest);
        assert_eq!(got, Some(r(0x7f60_0000, 0x7fe0_0000)));
    }

    #[test]
    fn later_banks_are_used_when_the_first_is_full() {
        let ram = [r(0, 4 * MIB), r(0x8000_0000, 0x9000_0000)];
        let avoid = [r(0, 4 * MIB)];
        assert_eq!(find_free(&ram, &avoid, MIB, 2 * MIB, Placement::Lowest), Some(r(0x8000_0000, 0x8010_0000)));
        assert_eq!(find_free(&ram[..1], &avoid, MIB, 2 * MIB, Placement::Lowest), None);
    }

    #[test]
    fn ram_at_zero_and_the_top_of_the_address_space_do_not_wrap() {
        let ram = [r(0, 2 * MIB), r(u64::MAX - 4 * MIB, u64::MAX)];
        assert_eq!(find_free(&ram, &[], 2 * MIB, 2 * MIB, Placement::Lowest), Some(r(0, 2 * MIB)));
        assert_eq!(find_free(&ram[..1], &[r(0, 1)], 2 * MIB, 2 * MIB, Placement::Highest), None);
        assert!(find_free(&ram[1..], &[], 2 * MIB, 2 * MIB, Placement::Lowest).is_some());
    }

    #[test]
    fn zero_size_and_bad_alignment_are_refused() {
        let ram = [r(0, 16 * MIB)];
        assert_eq!(find_free(&ram, &[], 0, 4096, Placement::Lowest), None);
        assert_eq!(find_free(&ram, &[], 4096, 3, Placement::Lowest), None);
    }
}
