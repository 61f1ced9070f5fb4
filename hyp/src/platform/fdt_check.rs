//! A structural check of a flattened device tree before the `fdt` crate reads
//! it. The crate panics on some malformed blobs (a node without its end token,
//! a name that is not UTF-8, a `#address-cells` shorter than a cell, a token
//! stream that runs off its block); a hyp must answer a corrupted tree with an
//! error, never a panic. So every token of the structure block is walked here
//! first, with every offset and length checked against its block.

#![forbid(unsafe_code)]

use hyp_abi::fdt::{FDT_BEGIN_NODE, FDT_END, FDT_END_NODE, FDT_MAGIC, FDT_NOP, FDT_PROP, HEADER_SIZE};

/// Deepest node nesting accepted (real trees stay below 10; the crate keeps 64
/// parents).
const MAX_DEPTH: usize = 32;

#[inline(always)]
fn be32(bytes: &[u8], at: usize) -> Option<u32> {
    let word = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([word[0], word[1], word[2], word[3]]))
}

fn be64(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from(be32(bytes, at)?) << 32 | u64::from(be32(bytes, at.checked_add(4)?)?))
}

fn align4(at: usize) -> Option<usize> {
    at.checked_add(3).map(|a| a & !3)
}

/// The NUL-terminated UTF-8 string at the start of `bytes`, and its length
/// without the NUL.
fn c_str(bytes: &[u8]) -> Option<(&str, usize)> {
    let end = bytes.iter().position(|&b| b == 0)?;
    Some((core::str::from_utf8(&bytes[..end]).ok()?, end))
}

/// The tree's total size if `blob` holds a well-formed device tree (version 17
/// or later): header, reservation block, strings and structure all inside
/// `totalsize`, which fits in `blob`; every token known; nodes balanced, one
/// root; names NUL-terminated UTF-8; property values inside the block; in each
/// node its properties before its children (as the specification requires).
/// NOP tokens are accepted only just before a node's end: the crate's node walk
/// does not skip them elsewhere (found by `cargo fuzz`, target `device_tree`).
pub fn check(blob: &[u8]) -> Option<usize> {
    let field = |i: usize| be32(blob, i * 4).map(|v| v as usize);
    if be32(blob, 0)? != FDT_MAGIC {
        return None;
    }
    let total = field(1)?;
    if total < HEADER_SIZE || total > blob.len() || field(5)? < 17 {
        return None;
    }
    let blob = &blob[..total];
    let (off_struct, off_strings, off_reservations) = (field(2)?, field(3)?, field(4)?);
    let (size_strings, size_struct) = (field(8)?, field(9)?);
    let structs = blob.get(off_struct..off_struct.checked_add(size_struct)?)?;
    let strings = blob.get(off_strings..off_strings.checked_add(size_strings)?)?;
    let mut at = off_reservations;
    loop {
        let (address, size) = (be64(blob, at)?, be64(blob, at.checked_add(8)?)?);
        at = at.checked_add(16)?;
        if address == 0 && size == 0 {
            break;
        }
    }
    let (mut pos, mut depth, mut roots) = (0usize, 0usize, 0usize);
    // Bit d: the open node at depth d has had a child (no property may follow).
    let mut had_child = 0u64;
    loop {
        let token = be32(structs, pos)?;
        pos += 4;
        match token {
            FDT_BEGIN_NODE => {
                if depth == 0 {
                    roots += 1;
                }
                had_child |= 1 << depth;
                depth += 1;
                if roots > 1 || depth > MAX_DEPTH {
                    return None;
                }
                had_child &= !(1 << depth);
                let (_, len) = c_str(structs.get(pos..)?)?;
                pos = align4(pos + len + 1)?;
            }
            FDT_END_NODE => depth = depth.checked_sub(1)?,
            FDT_PROP => {
                if depth == 0 || had_child & (1 << depth) != 0 {
                    return None;
                }
                let len = be32(structs, pos)? as usize;
                let name_offset = be32(structs, pos + 4)? as usize;
                pos += 8;
                let (name, _) = c_str(strings.get(name_offset..)?)?;
                let end = pos.checked_add(len)?;
                if end > structs.len() || (matches!(name, "#address-cells" | "#size-cells") && len < 4) {
                    return None;
                }
                pos = align4(end)?;
            }
            FDT_NOP => {
                let mut next = pos;
                while be32(structs, next)? == FDT_NOP {
                    next += 4;
                }
                if be32(structs, next)? != FDT_END_NODE {
                    return None;
                }
            }
            FDT_END => return (depth == 0 && roots == 1).then_some(total),
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal tree: a root with `#address-cells = <2>` and an empty child.
    fn tiny() -> Vec<u8> {
        let mut structs = Vec::new();
        let word = |v: &mut Vec<u8>, w: u32| v.extend_from_slice(&w.to_be_bytes());
        word(&mut structs, FDT_BEGIN_NODE);
        word(&mut structs, 0);
        word(&mut structs, FDT_PROP);
        word(&mut structs, 4);
        word(&mut structs, 0);
        word(&mut structs, 2);
        word(&mut structs, FDT_BEGIN_NODE);
        structs.extend_from_slice(b"cpu\0");
        word(&mut structs, FDT_END_NODE);
        word(&mut structs, FDT_END_NODE);
        word(&mut structs, FDT_END);
        let strings = b"#address-cells\0".to_vec();
        let reservations = [0u8; 16];
        let off_reservations = HEADER_SIZE;
        let off_struct = off_reservations + reservations.len();
        let off_strings = off_struct + structs.len();
        let total = off_strings + strings.len();
        let mut blob = Vec::new();
        for w in [
            FDT_MAGIC,
            total as u32,
            off_struct as u32,
            off_strings as u32,
            off_reservations as u32,
            17,
            16,
            0,
            strings.len() as u32,
            structs.len() as u32,
        ] {
            word(&mut blob, w);
        }
        blob.extend_from_slice(&reservations);
        blob.extend_from_slice(&structs);
        blob.extend_from_slice(&strings);
        blob
    }

    #[test]
    fn a_well_formed_tree_passes() {
        let blob = tiny();
        assert_eq!(check(&blob), Some(blob.len()));
    }

    #[test]
    fn every_kind_of_damage_is_refused() {
        let blob = tiny();
        let struct_at = HEADER_SIZE + 16;
        let damaged = |at: usize, value: u32| {
            let mut b = blob.clone();
            b[at..at + 4].copy_from_slice(&value.to_be_bytes());
            check(&b)
        };
        assert_eq!(damaged(0, 0xd00d_fee0), None, "magic");
        assert_eq!(damaged(4, blob.len() as u32 + 1), None, "total size beyond the blob");
        assert_eq!(damaged(20, 16), None, "version 16 has no structure size");
        assert_eq!(damaged(36, 1 << 20), None, "structure block beyond the tree");
        assert_eq!(damaged(struct_at + 12, 1 << 20), None, "property value beyond the block");
        assert_eq!(damaged(struct_at + 16, 1 << 20), None, "property name beyond the strings");
        assert_eq!(damaged(struct_at + 12, 2), None, "#address-cells shorter than a cell");
        assert_eq!(damaged(struct_at + 40, FDT_END_NODE), None, "one end too many");
        assert_eq!(damaged(struct_at + 40, FDT_NOP), None, "the root never ends");
        assert_eq!(damaged(struct_at + 24, 7), None, "unknown token");
        assert_eq!(damaged(struct_at + 8, FDT_NOP), None, "a NOP where the crate does not skip one");
        let mut not_utf8 = blob.clone();
        not_utf8[struct_at + 28] = 0xff;
        assert_eq!(check(&not_utf8), None, "node name not UTF-8");
        assert_eq!(check(&blob[..blob.len() - 1]), None, "cut short");
    }
}
