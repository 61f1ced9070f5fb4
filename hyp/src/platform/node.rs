//! A device-tree node with its properties read once.
//!
//! The `fdt` crate finds a property by decoding every property of the node in
//! turn (the name's length and its UTF-8 check, byte by byte, from the strings
//! block) until one matches; the walk asks each node for a dozen properties,
//! with the MMU off, where each byte is a device access. At 5,224 decoded
//! properties for QEMU's 229 that was the largest part of reset to host (about
//! 1.1 million instructions, docs/performance.md); reading a node's
//! properties once into a table makes each lookup a scan of a few names.

use crate::range::FixedVec;
use fdt::node::FdtNode;

/// Properties of one node kept in the table; a node with more (none of QEMU's
/// has more than 13) finds the rest through the crate's own search.
const MAX_PROPERTIES: usize = 16;

/// One property: its name and its value's bytes.
#[derive(Clone, Copy, Default)]
pub struct Property<'a> {
    pub name: &'a str,
    pub value: &'a [u8],
}

/// A node and the table of its properties (the first [`MAX_PROPERTIES`], in
/// the tree's order).
#[derive(Clone, Copy)]
pub struct Node<'b, 'a> {
    pub name: &'a str,
    node: FdtNode<'b, 'a>,
    properties: FixedVec<Property<'a>, MAX_PROPERTIES>,
    /// Whether the table holds all of the node's properties.
    complete: bool,
}

impl<'b, 'a> Node<'b, 'a> {
    /// Reads `node`'s properties (each decoded once).
    pub fn new(node: FdtNode<'b, 'a>) -> Node<'b, 'a> {
        Node::with_table_of(node, MAX_PROPERTIES)
    }

    /// Reads at most `limit` of `node`'s properties into the table.
    fn with_table_of(node: FdtNode<'b, 'a>, limit: usize) -> Node<'b, 'a> {
        let mut properties = FixedVec::default();
        let mut complete = true;
        for (index, property) in node.properties().enumerate() {
            if index == limit || !properties.push(Property { name: property.name, value: property.value }) {
                complete = false;
                break;
            }
        }
        Node { name: node.name, node, properties, complete }
    }

    /// The first property called `name`, as the crate's `property` finds it.
    pub fn property(&self, name: &str) -> Option<Property<'a>> {
        match self.properties.as_slice().iter().find(|p| p.name == name) {
            Some(property) => Some(*property),
            // Past the table: the crate searches them all (those of the
            // table again, which do not match).
            None if !self.complete => self.node.property(name).map(|p| Property { name: p.name, value: p.value }),
            None => None,
        }
    }

    /// The node's children, in the tree's order, each with its properties read.
    pub fn children(&self) -> impl Iterator<Item = Node<'b, 'a>> + 'b {
        self.node.children().map(Node::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fdt::Fdt;

    const VIRT_GICV3: &[u8] = include_bytes!("testdata/virt-gicv3.dtb");

    /// Every node of the tree answers every lookup as the crate does, whether
    /// its table holds all of its properties or only the first 0, 1 or 2 (the
    /// crate's search takes over past the table).
    #[test]
    fn lookups_match_the_crates_for_every_node_and_property() {
        let fdt = Fdt::new(VIRT_GICV3).expect("parses");
        let mut lookups = 0;
        let mut cut_tables = 0;
        for raw in fdt.all_nodes() {
            for limit in [0, 1, 2, MAX_PROPERTIES] {
                let node = Node::with_table_of(raw, limit);
                assert_eq!(node.name, raw.name);
                cut_tables += usize::from(!node.complete);
                for wanted in raw.properties().map(|p| p.name).chain(["absent", "status", "reg", ""]) {
                    let expected = raw.property(wanted).map(|p| (p.name, p.value));
                    assert_eq!(node.property(wanted).map(|p| (p.name, p.value)), expected, "{} {wanted}", raw.name);
                    lookups += 1;
                }
                let names: Vec<&str> = node.children().map(|c| c.name).collect();
                assert_eq!(names, raw.children().map(|c| c.name).collect::<Vec<_>>());
            }
            assert!(Node::new(raw).complete, "{}: more than {MAX_PROPERTIES} properties", raw.name);
        }
        assert!(lookups > 900, "{lookups}");
        assert!(cut_tables > 100, "{cut_tables}");
    }
}
