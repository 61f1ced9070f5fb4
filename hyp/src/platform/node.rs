//! Device-tree nodes read straight from the structure block, for the walk.
//!
//! The `fdt` crate finds a property by decoding every property of the node in
//! turn (the name's length and its UTF-8 check, byte by byte, from the strings
//! block) until one matches, and steps over a child by decoding all of its
//! subtree's properties the same way; the walk asks each node for a dozen
//! properties, with the MMU off, where each byte is a device access. That was
//! the largest part of reset to host (1.4 million instructions for QEMU's 58
//! nodes and 229 properties, docs/performance.md). Here a node is read once
//! when the walk reaches it: each property name the walk uses ([`Prop`]) is
//! recognised as it passes and its value kept, so that a lookup is one load;
//! a child is stepped over without decoding its properties. A name the walk
//! does not know in advance (an alias) is found by comparing names in the
//! strings block ([`Node::property`]).
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

/// The properties the walk reads, found in one pass over each node.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Prop {
    Compatible,
    Status,
    Reg,
    Ranges,
    AddressCells,
    SizeCells,
    DeviceType,
    IommuMap,
    Iommus,
    RedistributorRegions,
    Method,
    EnableMethod,
    CpuReleaseAddr,
    RegShift,
    RegIoWidth,
    Bootargs,
    StdoutPath,
    LinuxStdoutPath,
    InitrdStart,
    InitrdEnd,
}

/// How many [`Prop`]s there are.
const PROPS: usize = Prop::InitrdEnd as usize + 1;

impl Prop {
    /// Every [`Prop`], in the order of their discriminants.
    #[cfg(test)]
    pub const ALL: [Prop; PROPS] = [
        Prop::Compatible,
        Prop::Status,
        Prop::Reg,
        Prop::Ranges,
        Prop::AddressCells,
        Prop::SizeCells,
        Prop::DeviceType,
        Prop::IommuMap,
        Prop::Iommus,
        Prop::RedistributorRegions,
        Prop::Method,
        Prop::EnableMethod,
        Prop::CpuReleaseAddr,
        Prop::RegShift,
        Prop::RegIoWidth,
        Prop::Bootargs,
        Prop::StdoutPath,
        Prop::LinuxStdoutPath,
        Prop::InitrdStart,
        Prop::InitrdEnd,
    ];

    /// The property's name in the tree (the inverse of [`Prop::of_name`]).
    #[cfg(test)]
    pub const fn name(self) -> &'static str {
        match self {
            Prop::Compatible => "compatible",
            Prop::Status => "status",
            Prop::Reg => "reg",
            Prop::Ranges => "ranges",
            Prop::AddressCells => "#address-cells",
            Prop::SizeCells => "#size-cells",
            Prop::DeviceType => "device_type",
            Prop::IommuMap => "iommu-map",
            Prop::Iommus => "iommus",
            Prop::RedistributorRegions => "#redistributor-regions",
            Prop::Method => "method",
            Prop::EnableMethod => "enable-method",
            Prop::CpuReleaseAddr => "cpu-release-addr",
            Prop::RegShift => "reg-shift",
            Prop::RegIoWidth => "reg-io-width",
            Prop::Bootargs => "bootargs",
            Prop::StdoutPath => "stdout-path",
            Prop::LinuxStdoutPath => "linux,stdout-path",
            Prop::InitrdStart => "linux,initrd-start",
            Prop::InitrdEnd => "linux,initrd-end",
        }
    }

    /// The [`Prop`] called `name`, if any.
    fn of_name(name: &[u8]) -> Option<Prop> {
        Some(match name {
            b"compatible" => Prop::Compatible,
            b"status" => Prop::Status,
            b"reg" => Prop::Reg,
            b"ranges" => Prop::Ranges,
            b"#address-cells" => Prop::AddressCells,
            b"#size-cells" => Prop::SizeCells,
            b"device_type" => Prop::DeviceType,
            b"iommu-map" => Prop::IommuMap,
            b"iommus" => Prop::Iommus,
            b"#redistributor-regions" => Prop::RedistributorRegions,
            b"method" => Prop::Method,
            b"enable-method" => Prop::EnableMethod,
            b"cpu-release-addr" => Prop::CpuReleaseAddr,
            b"reg-shift" => Prop::RegShift,
            b"reg-io-width" => Prop::RegIoWidth,
            b"bootargs" => Prop::Bootargs,
            b"stdout-path" => Prop::StdoutPath,
            b"linux,stdout-path" => Prop::LinuxStdoutPath,
            b"linux,initrd-start" => Prop::InitrdStart,
            b"linux,initrd-end" => Prop::InitrdEnd,
            _ => return None,
        })
    }
}

/// A [`Prop`]'s place: the offset in the structure block of its value,
/// whose length is the word 8 bytes before it (the FDT_PROP token's `len`);
/// `ABSENT`: the node has no such property.
type Slot = u32;

const ABSENT: Slot = u32::MAX;

/// A node: its name (unit address included, "" for the root), where its
/// properties and its children start, and the values of its [`Prop`]s. Kept
/// within 128 bytes, which the compiler copies inline rather than calling
/// `memcpy` (a call per copy cost 30,000 instructions of the walk).
#[derive(Clone, Copy)]
pub struct Node<'a> {
    pub name: &'a str,
    tree: &'a Tree<'a>,
    /// Offset in the structure block of the first token after the name.
    body: u32,
    /// Offset of the first token after the properties (a child, or the end).
    children: u32,
    slots: [Slot; PROPS],
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
    pub fn root(&'a self) -> Option<Node<'a>> {
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
    fn node_at(&'a self, at: usize) -> Option<Node<'a>> {
        if self.token(at)? != FDT_BEGIN_NODE {
            return None;
        }
        let name_at = at.checked_add(4)?;
        let rest = self.structure.get(name_at..)?;
        let length = rest.iter().position(|&b| b == 0)?;
        let name = core::str::from_utf8(&rest[..length]).unwrap_or("");
        let body = align4(name_at + length + 1)?;
        // One pass over the properties: the value of each Prop's first one.
        let mut slots = [ABSENT; PROPS];
        let mut at = body;
        loop {
            match self.token(at) {
                Some(FDT_NOP) => at += 4,
                Some(FDT_PROP) => {
                    let length = self.token(at.checked_add(4)?)?;
                    let name_offset = self.token(at.checked_add(8)?)? as usize;
                    let value_at = at.checked_add(12)?;
                    let names = self.strings.get(name_offset..)?;
                    let name = &names[..names.iter().position(|&b| b == 0)?];
                    if let Some(prop) = Prop::of_name(name) {
                        let slot = &mut slots[prop as usize];
                        if *slot == ABSENT {
                            *slot = u32::try_from(value_at).ok().filter(|&at| at != ABSENT)?;
                        }
                    }
                    at = align4(value_at.checked_add(length as usize)?)?;
                }
                _ => break,
            }
        }
        let (body, children) = (u32::try_from(body).ok()?, u32::try_from(at).ok()?);
        Some(Node { name, tree: self, body, children, slots })
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
    /// The node's first `prop`, if it has one.
    pub fn get(&self, prop: Prop) -> Option<Property<'a>> {
        let slot = self.slots[prop as usize];
        if slot == ABSENT {
            return None;
        }
        let start = slot as usize;
        let length = self.tree.token(start.checked_sub(8)?)? as usize;
        let value = self.tree.structure.get(start..start.checked_add(length)?)?;
        Some(Property { value })
    }

    /// The first property called `name`, if the node has one (for names not
    /// known in advance: [`Node::get`] finds a [`Prop`] at once).
    pub fn property(&self, name: &str) -> Option<Property<'a>> {
        let tree = &self.tree;
        let mut at = self.body as usize;
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
        Children { tree: self.tree, at: Some(self.children as usize) }
    }
}

/// The children of a node: [`Node::children`].
pub struct Children<'a> {
    tree: &'a Tree<'a>,
    /// The next token to look at (after the properties, the next child);
    /// `None` once the node's end (or something malformed) was reached.
    at: Option<usize>,
}

impl<'a> Children<'a> {
    /// The offset of the next child's `FDT_BEGIN_NODE`, past NOPs and the
    /// parent's properties; the walk then stands after that child's
    /// subtree. `None` at the parent's end (or at something malformed), and
    /// from then on.
    fn next_child_at(&mut self) -> Option<usize> {
        let mut at = self.at.take()?;
        loop {
            match self.tree.token(at)? {
                FDT_NOP => at += 4,
                FDT_PROP => at = self.tree.after_property(at)?,
                FDT_BEGIN_NODE => {
                    self.at = self.tree.skip_subtree(at);
                    return Some(at);
                }
                _ => return None,
            }
        }
    }

    /// The first child called `name` (any unit address), as the crate's
    /// `find_node` finds it; only that one is read.
    pub fn named(mut self, name: &str) -> Option<Node<'a>> {
        while let Some(at) = self.next_child_at() {
            let full = self.tree.structure.get(at.checked_add(4)?..)?;
            let base = full.iter().position(|&b| b == 0 || b == b'@')?;
            if full[..base] == *name.as_bytes() {
                return self.tree.node_at(at);
            }
        }
        None
    }
}

impl<'a> Iterator for Children<'a> {
    type Item = Node<'a>;

    fn next(&mut self) -> Option<Node<'a>> {
        let at = self.next_child_at()?;
        let child = self.tree.node_at(at);
        if child.is_none() {
            // A malformed child ends the walk.
            self.at = None;
        }
        child
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
        for prop in Prop::ALL {
            let expected = raw.property(prop.name()).map(|p| p.value);
            assert_eq!(node.get(prop).map(|p| p.value), expected, "{} {prop:?}", raw.name);
            assert_eq!(Prop::of_name(prop.name().as_bytes()), Some(prop));
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
            let tree = Tree::new(blob).expect("blocks");
            let root = tree.root().expect("has a root");
            for name in ["chosen", "aliases", "cpus", "memory", "pl011", "absent", "psci", "intc"] {
                let expected = root.children().find(|c| c.name.split('@').next() == Some(name));
                assert_eq!(root.children().named(name).map(|c| c.name), expected.map(|c| c.name), "{name}");
            }
            let mut lookups = 0;
            compare(root, fdt.find_node("/").expect("root"), &mut lookups);
            assert!(lookups > 100, "{lookups}");
        }
    }

    /// A node stays within the 128 bytes the compiler copies inline.
    #[test]
    fn a_node_is_at_most_128_bytes() {
        assert!(core::mem::size_of::<Node<'_>>() <= 128, "{}", core::mem::size_of::<Node<'_>>());
    }

    /// A tree cut short ends iterations and lookups instead of panicking.
    #[test]
    fn a_cut_tree_ends_lookups_without_panicking() {
        let blob = include_bytes!("testdata/virt-gicv3.dtb");
        let tree = Tree::new(blob).expect("blocks");
        for cut in (0..tree.structure.len()).step_by(4) {
            let short = Tree { structure: &tree.structure[..cut], strings: tree.strings };
            let Some(root) = short.root() else { continue };
            let _ = root.children().named("chosen");
            for child in root.children() {
                let _ = child.property("reg");
                let _ = child.get(Prop::Reg);
                let _ = child.children().count();
            }
        }
    }
}
