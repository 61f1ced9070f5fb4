//! Set arithmetic on physical ranges.

#![forbid(unsafe_code)]

use crate::range::PhysRange;

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
}
