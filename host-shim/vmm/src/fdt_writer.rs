//! Writes a flattened device tree (version 17, as the devicetree specification
//! v0.4 chapter 5 describes it) into a caller's buffer, node by node, without
//! allocating: the structure block grows in the buffer, the strings in a fixed
//! table that [`FdtWriter::finish`] appends.

use core::fmt;

use hyp_abi::fdt::{Header, FDT_BEGIN_NODE, FDT_END, FDT_END_NODE, FDT_PROP, HEADER_SIZE};
/// The memory reservation block: one terminating (0, 0) entry.
const RESERVATION_BLOCK_SIZE: usize = 16;
/// Room for distinct property names.
const STRINGS_CAPACITY: usize = 512;

/// Why a tree could not be written.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum FdtWriteError {
    /// The buffer (or the property-name table) is full.
    NoRoom,
    /// `end_node` without a node open, or `finish` with one still open.
    Unbalanced,
    /// A node or property name with a NUL in it, or empty where not allowed.
    BadName,
}

impl fmt::Display for FdtWriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FdtWriteError::NoRoom => "no room left for the device tree",
            FdtWriteError::Unbalanced => "device tree nodes not balanced",
            FdtWriteError::BadName => "bad device tree node or property name",
        })
    }
}

/// A tree being written into a buffer.
pub struct FdtWriter<'a> {
    buffer: &'a mut [u8],
    /// End of the structure block written so far (an offset into `buffer`).
    end: usize,
    strings: [u8; STRINGS_CAPACITY],
    strings_len: usize,
    depth: usize,
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

impl<'a> FdtWriter<'a> {
    /// Starts a tree in `buffer` (which it overwrites).
    pub fn new(buffer: &'a mut [u8]) -> Result<FdtWriter<'a>, FdtWriteError> {
        let start = HEADER_SIZE + RESERVATION_BLOCK_SIZE;
        buffer.get_mut(..start).ok_or(FdtWriteError::NoRoom)?.fill(0);
        Ok(FdtWriter { buffer, end: start, strings: [0; STRINGS_CAPACITY], strings_len: 0, depth: 0 })
    }

    fn put(&mut self, bytes: &[u8]) -> Result<(), FdtWriteError> {
        let padded = align4(bytes.len());
        let room = self.buffer.get_mut(self.end..self.end + padded).ok_or(FdtWriteError::NoRoom)?;
        room[..bytes.len()].copy_from_slice(bytes);
        room[bytes.len()..].fill(0);
        self.end += padded;
        Ok(())
    }

    fn put_u32(&mut self, value: u32) -> Result<(), FdtWriteError> {
        self.put(&value.to_be_bytes())
    }

    /// The offset of `name` in the strings block, adding it if new.
    fn string_offset(&mut self, name: &str) -> Result<u32, FdtWriteError> {
        let table = &self.strings[..self.strings_len];
        let mut at = 0;
        for entry in table.split(|&b| b == 0) {
            if entry == name.as_bytes() && at < table.len() {
                return Ok(at as u32);
            }
            at += entry.len() + 1;
        }
        let offset = self.strings_len;
        let slot = self.strings.get_mut(offset..offset + name.len() + 1).ok_or(FdtWriteError::NoRoom)?;
        slot[..name.len()].copy_from_slice(name.as_bytes());
        slot[name.len()] = 0;
        self.strings_len += name.len() + 1;
        Ok(offset as u32)
    }

    /// Opens node `name` (the root's name is empty) inside the open node.
    pub fn begin_node(&mut self, name: &str) -> Result<(), FdtWriteError> {
        if name.contains('\0') || (name.is_empty() && self.depth != 0) {
            return Err(FdtWriteError::BadName);
        }
        self.put_u32(FDT_BEGIN_NODE)?;
        self.put(name.as_bytes())?;
        if name.len().is_multiple_of(4) {
            self.put_u32(0)?; // The name's terminating NUL needs a word of its own.
        }
        self.depth += 1;
        Ok(())
    }

    /// Closes the innermost open node.
    pub fn end_node(&mut self) -> Result<(), FdtWriteError> {
        if self.depth == 0 {
            return Err(FdtWriteError::Unbalanced);
        }
        self.put_u32(FDT_END_NODE)?;
        self.depth -= 1;
        Ok(())
    }

    /// A property with raw bytes as its value.
    pub fn property(&mut self, name: &str, value: &[u8]) -> Result<(), FdtWriteError> {
        if name.is_empty() || name.contains('\0') || self.depth == 0 {
            return Err(FdtWriteError::BadName);
        }
        let name_offset = self.string_offset(name)?;
        let length = u32::try_from(value.len()).map_err(|_| FdtWriteError::NoRoom)?;
        self.put_u32(FDT_PROP)?;
        self.put_u32(length)?;
        self.put_u32(name_offset)?;
        self.put(value)
    }

    /// A property without a value (a flag such as `interrupt-controller`).
    pub fn property_empty(&mut self, name: &str) -> Result<(), FdtWriteError> {
        self.property(name, &[])
    }

    /// A property of 32-bit cells.
    pub fn property_cells(&mut self, name: &str, cells: &[u32]) -> Result<(), FdtWriteError> {
        let mut bytes = [0u8; 64];
        let value = bytes.get_mut(..cells.len() * 4).ok_or(FdtWriteError::NoRoom)?;
        for (chunk, cell) in value.chunks_exact_mut(4).zip(cells) {
            chunk.copy_from_slice(&cell.to_be_bytes());
        }
        self.property(name, value)
    }

    /// A property of one cell.
    pub fn property_u32(&mut self, name: &str, value: u32) -> Result<(), FdtWriteError> {
        self.property_cells(name, &[value])
    }

    /// A property of 64-bit numbers, each as two cells (addresses and sizes
    /// with `#address-cells` and `#size-cells` of 2).
    pub fn property_u64s(&mut self, name: &str, values: &[u64]) -> Result<(), FdtWriteError> {
        let mut cells = [0u32; 16];
        let used = cells.get_mut(..values.len() * 2).ok_or(FdtWriteError::NoRoom)?;
        for (pair, value) in used.chunks_exact_mut(2).zip(values) {
            pair[0] = (value >> 32) as u32;
            pair[1] = *value as u32;
        }
        self.property_cells(name, used)
    }

    /// A property holding one or more NUL-terminated strings.
    pub fn property_strings(&mut self, name: &str, strings: &[&str]) -> Result<(), FdtWriteError> {
        let mut bytes = [0u8; 256];
        let mut len = 0;
        for s in strings {
            if s.contains('\0') {
                return Err(FdtWriteError::BadName);
            }
            let slot = bytes.get_mut(len..len + s.len() + 1).ok_or(FdtWriteError::NoRoom)?;
            slot[..s.len()].copy_from_slice(s.as_bytes());
            slot[s.len()] = 0;
            len += s.len() + 1;
        }
        self.property(name, &bytes[..len])
    }

    /// A property holding one string.
    pub fn property_string(&mut self, name: &str, value: &str) -> Result<(), FdtWriteError> {
        self.property_strings(name, &[value])
    }

    /// Ends the tree and writes its header; the tree's size in bytes.
    pub fn finish(mut self) -> Result<usize, FdtWriteError> {
        if self.depth != 0 {
            return Err(FdtWriteError::Unbalanced);
        }
        self.put_u32(FDT_END)?;
        let struct_start = HEADER_SIZE + RESERVATION_BLOCK_SIZE;
        let struct_size = self.end - struct_start;
        let strings_start = self.end;
        let strings_len = self.strings_len;
        let total = strings_start + strings_len;
        let strings = self.buffer.get_mut(strings_start..total).ok_or(FdtWriteError::NoRoom)?;
        strings.copy_from_slice(&self.strings[..strings_len]);
        let header = Header {
            total_size: total as u32,
            struct_offset: struct_start as u32,
            strings_offset: strings_start as u32,
            // The memory reservation block follows the header.
            reservations_offset: HEADER_SIZE as u32,
            boot_cpu: 0,
            strings_size: strings_len as u32,
            struct_size: struct_size as u32,
        };
        self.buffer[..HEADER_SIZE].copy_from_slice(&header.to_bytes());
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    #[test]
    fn a_written_tree_parses_with_its_nodes_and_properties() {
        let mut buffer = [0u8; 1024];
        let mut w = FdtWriter::new(&mut buffer).unwrap();
        w.begin_node("").unwrap();
        w.property_u32("#address-cells", 2).unwrap();
        w.property_u32("#size-cells", 2).unwrap();
        w.begin_node("memory@80000000").unwrap();
        w.property_string("device_type", "memory").unwrap();
        w.property_u64s("reg", &[0x8000_0000, 0x1000_0000]).unwrap();
        w.end_node().unwrap();
        w.begin_node("abcd").unwrap(); // a name of 4 bytes: its NUL takes a word
        w.property_strings("compatible", &["a,b", "c"]).unwrap();
        w.property_empty("flag").unwrap();
        w.end_node().unwrap();
        w.end_node().unwrap();
        let size = w.finish().unwrap();
        let fdt = fdt::Fdt::new(&buffer[..size]).unwrap();
        let memory = fdt.memory();
        let region = memory.regions().next().unwrap();
        assert_eq!((region.starting_address as u64, region.size), (0x8000_0000, Some(0x1000_0000)));
        let node = fdt.find_node("/abcd").unwrap();
        assert_eq!(node.compatible().unwrap().all().collect::<Vec<_>>(), ["a,b", "c"]);
        assert_eq!(node.property("flag").unwrap().value, b"");
        assert_eq!(fdt.find_node("/").unwrap().property("#size-cells").unwrap().as_usize(), Some(2));
    }

    #[test]
    fn names_are_stored_once_and_bad_use_is_refused() {
        let mut buffer = [0u8; 512];
        let mut w = FdtWriter::new(&mut buffer).unwrap();
        assert_eq!(w.property_u32("x", 1), Err(FdtWriteError::BadName), "a property outside any node");
        assert_eq!(w.end_node(), Err(FdtWriteError::Unbalanced));
        w.begin_node("").unwrap();
        assert_eq!(w.begin_node(""), Err(FdtWriteError::BadName), "only the root is unnamed");
        w.property_u32("reg", 1).unwrap();
        w.begin_node("a").unwrap();
        w.property_u32("reg", 2).unwrap();
        assert_eq!(w.strings_len, 4, "\"reg\" once");
        w.end_node().unwrap();
        assert_eq!(w.property_string("bad", "a\0b"), Err(FdtWriteError::BadName));
        let mut other = [0u8; 512];
        let mut open = FdtWriter::new(&mut other).unwrap();
        open.begin_node("").unwrap();
        assert_eq!(open.finish(), Err(FdtWriteError::Unbalanced));
    }

    #[test]
    fn a_full_buffer_is_an_error_not_a_panic() {
        for size in [0, 40, 60, 80, 100] {
            let mut buffer = vec![0u8; size];
            let result = FdtWriter::new(&mut buffer).and_then(|mut w| {
                w.begin_node("")?;
                w.property_string("model", "a long enough model name")?;
                w.end_node()?;
                w.finish()
            });
            assert_eq!(result, Err(FdtWriteError::NoRoom), "buffer of {size}");
        }
    }
}
