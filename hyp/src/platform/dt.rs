//! A depth-first walk of the device tree that knows each node's bus: the parent's
//! `#address-cells`/`#size-cells` and the chain of `ranges` up to the root, so that
//! every `reg` is translated to a CPU physical address (boards put UARTs behind a
//! `simple-bus` with non-identity `ranges`).
//!
//! The `fdt` crate parses the blob; this module only interprets cells. It never
//! panics on its own account: malformed cells make a `reg` unusable (`None`).

use super::node::{Node, Prop};

/// Deepest nesting the walk follows; real trees are under 10 levels.
pub const MAX_DEPTH: usize = 16;

/// The bus a node sits on: how to read its `reg` and translate it upwards.
#[derive(Clone, Copy)]
pub struct Bus<'p, 'a> {
    /// `#address-cells` of the parent (for this node's `reg` addresses).
    pub address_cells: usize,
    /// `#size-cells` of the parent.
    pub size_cells: usize,
    /// The parent's `ranges` (None: absent, so not translatable; empty: identity).
    ranges: Option<&'a [u8]>,
    /// Cells of the parent's own bus, needed to read the parent-side address in `ranges`.
    parent_address_cells: usize,
    /// The bus of the parent itself, for further translation.
    parent: Option<&'p Bus<'p, 'a>>,
}

impl<'p, 'a> Bus<'p, 'a> {
    /// The bus of the root node's children.
    pub fn root(root: &Node<'a>) -> Bus<'p, 'a> {
        let (address_cells, size_cells) = cells_of(root);
        Bus { address_cells, size_cells, ranges: Some(&[]), parent_address_cells: address_cells, parent: None }
    }

    /// The bus of `node`'s children, where `node` sits on `self`.
    pub fn child_bus<'c>(&'c self, node: &Node<'a>) -> Bus<'c, 'a>
    where
        'p: 'c,
    {
        let (address_cells, size_cells) = cells_of(node);
        Bus {
            address_cells,
            size_cells,
            ranges: node.get(Prop::Ranges).map(|p| p.value),
            parent_address_cells: self.address_cells,
            parent: Some(self),
        }
    }

    /// Translates an address on this bus to a CPU physical address.
    pub fn translate(&self, address: u64) -> Option<u64> {
        let Some(parent) = self.parent else {
            return Some(address);
        };
        let ranges = self.ranges?;
        if ranges.is_empty() {
            return parent.translate(address);
        }
        let entry_cells = self.address_cells + self.parent_address_cells + self.size_cells;
        for entry in ranges.chunks_exact(entry_cells * 4) {
            let (child, rest) = entry.split_at(self.address_cells * 4);
            let (parent_address, size) = rest.split_at(self.parent_address_cells * 4);
            let child = read_cells(child)?;
            let parent_address = read_cells(parent_address)?;
            let size = read_cells(size)?;
            if address >= child && address - child < size {
                return parent.translate(parent_address.checked_add(address - child)?);
            }
        }
        None
    }

    /// The `reg` entries of a node on this bus, translated; `None` entries where the
    /// cells cannot be read or translated.
    pub fn regs<'s>(&'s self, node: &Node<'a>) -> impl Iterator<Item = Option<(u64, u64)>> + 's
    where
        'a: 's,
    {
        let value = node.get(Prop::Reg).map(|p| p.value).unwrap_or(&[]);
        let entry_bytes = (self.address_cells + self.size_cells) * 4;
        value.chunks(entry_bytes.max(4)).filter(move |_| entry_bytes > 0).map(move |entry| {
            if entry.len() != entry_bytes {
                return None;
            }
            let (address, size) = entry.split_at(self.address_cells * 4);
            let size = if self.size_cells == 0 { 0 } else { read_cells(size)? };
            Some((self.translate(read_cells(address)?)?, size))
        })
    }

    /// The `index`-th `reg` entry, if present and readable.
    pub fn reg(&self, node: &Node<'_>, index: usize) -> Option<(u64, u64)> {
        let value = node.get(Prop::Reg)?.value;
        let entry_bytes = (self.address_cells + self.size_cells) * 4;
        let entry = value.get(index * entry_bytes..(index + 1) * entry_bytes)?;
        let (address, size) = entry.split_at(self.address_cells * 4);
        let size = if self.size_cells == 0 { 0 } else { read_cells(size)? };
        Some((self.translate(read_cells(address)?)?, size))
    }
}

/// `#address-cells` and `#size-cells` a node gives its children (spec defaults
/// 2, 1), at most 4 each (real trees use 1 to 3; a larger value, from a
/// corrupted tree, must not overflow the entry arithmetic: such `reg`s simply
/// do not read).
fn cells_of(node: &Node<'_>) -> (usize, usize) {
    let read =
        |name: Prop, default: usize| node.get(name).and_then(|p| read_cells(p.value)).map_or(default, |v| v as usize);
    (read(Prop::AddressCells, 2).min(4), read(Prop::SizeCells, 1).min(4))
}

/// Reads one or two big-endian 32-bit cells as a number; more than two cells keep
/// the low 64 bits only if the high ones are zero.
pub fn read_cells(bytes: &[u8]) -> Option<u64> {
    if bytes.is_empty() || !bytes.len().is_multiple_of(4) {
        return None;
    }
    let mut value: u64 = 0;
    for cell in bytes.chunks_exact(4) {
        if value >> 32 != 0 {
            return None;
        }
        let cell = u32::from_be_bytes([cell[0], cell[1], cell[2], cell[3]]);
        value = (value << 32) | u64::from(cell);
    }
    Some(value)
}

/// A property as a NUL-terminated string (the first one of a string list).
pub fn prop_str<'a>(node: &Node<'a>, name: Prop) -> Option<&'a str> {
    string_of(node.get(name)?.value)
}

/// A property's value as a NUL-terminated string (the first one of a string list).
pub fn string_of(value: &[u8]) -> Option<&str> {
    let end = value.iter().position(|&b| b == 0).unwrap_or(value.len());
    core::str::from_utf8(&value[..end]).ok()
}

/// Whether any string of the node's `compatible` list equals one of `names`.
pub fn is_compatible(node: &Node<'_>, names: &[&str]) -> bool {
    node.get(Prop::Compatible).is_some_and(|p| {
        p.value.split(|&b| b == 0).filter(|s| !s.is_empty()).any(|s| names.iter().any(|n| n.as_bytes() == s))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_cells_handles_one_two_and_wide_values() {
        assert_eq!(read_cells(&[0, 0, 0x10, 0]), Some(0x1000));
        assert_eq!(read_cells(&[0, 0, 0, 1, 0, 0, 0, 2]), Some(0x1_0000_0002));
        assert_eq!(read_cells(&[0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2]), Some(0x1_0000_0002));
        assert_eq!(read_cells(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2]), None);
        assert_eq!(read_cells(&[1, 2, 3]), None);
        assert_eq!(read_cells(&[]), None);
    }
}
