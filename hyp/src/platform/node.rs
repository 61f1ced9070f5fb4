//! Device-tree nodes read straight from the structure block, for the walk.
//!
//! The `fdt` crate finds a property by decoding every property of the node in
//! turn (the name's length and its UTF-8 check, byte by byte, from the strings
//! block) until one matches, and steps over a child by decoding all of its
//! subtree's properties the same way; the walk asks each node for a dozen
//! properties, with the MMU off, where each byte is a device access. That was
//! the largest part of reset to host (1.4 million instructions for QEMU's 58
//! nodes and 229 properties, docs/performance.md). Here a lookup compares the
//! wanted name with each property's name in the strings block, most of them
//! rejected at their first byte, and nothing is decoded that is not used.
//!
//! [`super::fdt_check::check`] has walked the whole tree first (every token
//! known, every offset and length inside its block, nodes balanced, names
//! NUL-terminated UTF-8); all the same, every read here is bounds-checked and
//! a malformed tree ends a lookup or an iteration, never panics.

use hyp_abi::fdt::{FDT_BEGIN_NODE, FDT_END_NODE, FDT_NOP, FDT_PROP};

/// The structure and strings blocks of a device tree.
#[derive(Clone, Copy)]
pub struct Tree<'a> {
    structure: &'a [u8],
    strings: &'a [u8],
}

/// One property's value.
#[derive(Clone, Copy)]
pub struct Property<'a> {
    pub value: &'a [u8],
}

/// A node: its name (unit address included, "" for the root) and where its
/// properties start.
#[derive(Clone, Copy)]
pub struct Node<'a> {
    pub name: &'a str,
    tree: Tree<'a>,
    /// Offset in the structure block of the first token after the name.
    body: usize,
}

fn align4(at: usize) -> Option<usize> {
    at.checked_add(3).map(|a| a & !3)
}

impl<'a> Tree<'a> {
    /// The blocks of the tree `blob` (its header's offsets and sizes).
    pub fn new(blob: &'a [u8]) -> Option<Tree<'a>> {
        let field = |index: usize| be32(blob, index * 4).map(|v| v as usize);
        let (struct_offset, strings_offset) = (field(2)?, field(3)?);
        let (strings_size, struct_size) = (field(8)?, field(9)?);
        Some(Tree {
            structure: blob.get(struct_offset..struct_offset.checked_add(struct_size)?)?,
            strings: blob.get(strings_offset..strings_offset.checked_add(strings_size)?)?,
        })
    }

    /// The root node (the first node of the structure block).
    pub fn root(self) -> Option<Node<'a>> {
        let mut at = 0;
        while self.token(at)? == FDT_NOP {
            at += 4;
        }
        self.node_at(at)
    }

    fn token(&self, at: usize) -> Option<u32> {
        be32(self.structure, at)
    }

    /// The node whose FDT_BEGIN_NODE token is at `at`.
    fn node_at(self, at: usize) -> Option<Node<'a>> {
        if self.token(at)? != FDT_BEGIN_NODE {
            return None;
        }
        let name_at = at.checked_add(4)?;
        let rest = self.structure.get(name_at..)?;
        let length = rest.iter().position(|&b| b == 0)?;
        let name = core::str::from_utf8(&rest[..length]).unwrap_or("");
        Some(Node { name, tree: self, body: align4(name_at + length + 1)? })
    }

    /// The offset just past the subtree whose FDT_BEGIN_NODE token is at `at`.
    fn skip_subtree(&self, mut at: usize) -> Option<usize> {
        let mut depth = 0usize;
        loop {
            match self.token(at)? {
                FDT_BEGIN_NODE => {
                    depth += 1;
                    let name_at = at.checked_add(4)?;
                    let length = self.structure.get(name_at..)?.iter().position(|&b| b == 0)?;
                    at = align4(name_at + length + 1)?;
                }
                FDT_END_NODE => {
                    depth = depth.checked_sub(1)?;
                    at += 4;
                    if depth == 0 {
                        return Some(at);
                    }
                }
                FDT_PROP => at = self.after_property(at)?,
                FDT_NOP => at += 4,
                _ => return None,
            }
        }
    }

    /// The offset just past the property whose FDT_PROP token is at `at`.
    fn after_property(&self, at: usize) -> Option<usize> {
        let length = self.token(at.checked_add(4)?)? as usize;
        align4(at.checked_add(12)?.checked_add(length)?)
    }

    /// Whether the strings block holds `name`, NUL-terminated, at `offset`.
    fn name_at_is(&self, offset: usize, name: &str) -> bool {
        let name = name.as_bytes();
        // The first byte rejects most names without a call to compare slices.
        self.strings.get(offset) == name.first()
            && self.strings.get(offset..offset.saturating_add(name.len())) == Some(name)
            && self.strings.get(offset.saturating_add(name.len())) == Some(&0)
    }
}

impl<'a> Node<'a> {
    /// The first property called `name`, if the node has one.
    pub fn property(&self, name: &str) -> Option<Property<'a>> {
        let tree = &self.tree;
        let mut at = self.body;
        loop {
            match tree.token(at)? {
                FDT_NOP => at += 4,
                FDT_PROP => {
                    let length = tree.token(at.checked_add(4)?)? as usize;
                    let name_offset = tree.token(at.checked_add(8)?)? as usize;
                    let value_at = at.checked_add(12)?;
                    if tree.name_at_is(name_offset, name) {
                        let value = tree.structure.get(value_at..value_at.checked_add(length)?)?;
                        return Some(Property { value });
                    }
                    at = align4(value_at.checked_add(length)?)?;
                }
                // A child or the node's end: no further properties.
                _ => return None,
            }
        }
    }

    /// The node's children, in the tree's order.
    pub fn children(&self) -> Children<'a> {
        Children { tree: self.tree, at: Some(self.body) }
    }
}

/// The children of a node: [`Node::children`].
pub struct Children<'a> {
    tree: Tree<'a>,
    /// The next token to look at (after the properties, the next child);
    /// `None` once the node's end (or something malformed) was reached.
    at: Option<usize>,
}

impl<'a> Iterator for Children<'a> {
    type Item = Node<'a>;

    fn next(&mut self) -> Option<Node<'a>> {
        let mut at = self.at.take()?;
        loop {
            match self.tree.token(at)? {
                FDT_NOP => at += 4,
                FDT_PROP => at = self.tree.after_property(at)?,
                FDT_BEGIN_NODE => {
                    let child = self.tree.node_at(at)?;
                    self.at = self.tree.skip_subtree(at);
                    return Some(child);
                }
                _ => return None,
            }
        }
    }
}

fn be32(bytes: &[u8], at: usize) -> Option<u32> {
    let word = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([word[0], word[1], word[2], word[3]]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use fdt::node::FdtNode;
    use fdt::Fdt;

    /// Compares `node` with the crate's reading of it, and so on down its subtree.
    fn compare(node: Node<'_>, raw: FdtNode<'_, '_>, lookups: &mut usize) {
        assert_eq!(node.name, raw.name);
        for wanted in raw.properties().map(|p| p.name).chain(["absent", "status", "reg", "", "re", "regs"]) {
            let expected = raw.property(wanted).map(|p| p.value);
            assert_eq!(node.property(wanted).map(|p| p.value), expected, "{} {wanted:?}", raw.name);
            *lookups += 1;
        }
        let children: Vec<Node<'_>> = node.children().collect();
        let raw_children: Vec<FdtNode<'_, '_>> = raw.children().collect();
        assert_eq!(children.len(), raw_children.len(), "{}", raw.name);
        for (child, raw_child) in children.into_iter().zip(raw_children) {
            compare(child, raw_child, lookups);
        }
    }

    /// Every node of every test tree answers every lookup of its properties
    /// (and of a few names it lacks, and prefixes of names) as the crate does,
    /// and has the crate's children.
    #[test]
    fn nodes_and_lookups_match_the_crates_on_the_test_trees() {
        for blob in [
            &include_bytes!("testdata/virt-gicv3.dtb")[..],
            include_bytes!("testdata/virt-gicv2.dtb"),
            include_bytes!("testdata/virt-bootargs.dtb"),
            include_bytes!("testdata/virt-initrd.dtb"),
            include_bytes!("testdata/board-8250.dtb"),
        ] {
            let fdt = Fdt::new(blob).expect("parses");
            let root = Tree::new(blob).and_then(Tree::root).expect("has a root");
            let mut lookups = 0;
            compare(root, fdt.find_node("/").expect("root"), &mut lookups);
            assert!(lookups > 100, "{lookups}");
        }
    }

    /// A tree cut short ends iterations and lookups instead of panicking.
    #[test]
    fn a_cut_tree_ends_lookups_without_panicking() {
        let blob = include_bytes!("testdata/virt-gicv3.dtb");
        let tree = Tree::new(blob).expect("blocks");
        for cut in (0..tree.structure.len()).step_by(4) {
            let short = Tree { structure: &tree.structure[..cut], strings: tree.strings };
            let Some(root) = short.root() else { continue };
            for child in root.children() {
                let _ = child.property("reg");
                let _ = child.children().count();
            }
        }
    }
}
