//! Writing the device tree the host receives: a copy of the boot device tree with
//! the hyp's memory carved out as `/reserved-memory/hyp@<addr>` nodes marked
//! `no-map`, so that an operating system as host never touches it, and the
//! devices the hyp withholds from the host marked `status = "disabled"`.
//!
//! The blob is rebuilt (header, memory reservations, structure, strings) rather than
//! patched in place, because the new nodes and strings need room the original does
//! not have. Everything else is copied byte for byte.

#![forbid(unsafe_code)]

use core::fmt;

use hyp_abi::fdt::{Header, FDT_BEGIN_NODE, FDT_END, FDT_END_NODE, FDT_MAGIC, FDT_NOP, FDT_PROP, HEADER_SIZE};

/// Why a device tree could not be rewritten.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum FdtEditError {
    /// The input is not a well-formed version 16/17 device tree.
    Malformed,
    /// The output buffer is smaller than [`max_output_size`].
    OutputTooSmall,
}

impl fmt::Display for FdtEditError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FdtEditError::Malformed => f.write_str("malformed device tree"),
            FdtEditError::OutputTooSmall => f.write_str("output buffer too small"),
        }
    }
}

fn be32(blob: &[u8], offset: usize) -> Result<u32, FdtEditError> {
    let bytes =
        blob.get(offset..offset.checked_add(4).ok_or(FdtEditError::Malformed)?).ok_or(FdtEditError::Malformed)?;
    Ok(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// Bytes a `status = "disabled"` property takes: token, length, name, value.
const DISABLED_PROP_SIZE: usize = 12 + 12;

/// Upper bound of the output size for `regions` carve-outs and `disabled`
/// nodes of `input`.
pub fn max_output_size(input: &[u8], regions: usize, disabled: usize) -> Result<usize, FdtEditError> {
    let total = be32(input, 4)? as usize;
    Ok(total + 256 + 96 * regions + DISABLED_PROP_SIZE * disabled)
}

/// The pieces of the input that matter for the edit.
struct Layout {
    struct_offset: usize,
    struct_size: usize,
    strings_offset: usize,
    strings_size: usize,
    rsvmap_offset: usize,
    /// Offset (in the structure block) of the root node's FDT_END_NODE.
    root_end: usize,
    /// Offset of `/reserved-memory`'s FDT_END_NODE and its child cells, if present.
    reserved_memory: Option<(usize, u32, u32)>,
    /// Root `#address-cells` and `#size-cells`.
    root_cells: (u32, u32),
}

fn parse(input: &[u8]) -> Result<Layout, FdtEditError> {
    if be32(input, 0)? != FDT_MAGIC || input.len() < HEADER_SIZE {
        return Err(FdtEditError::Malformed);
    }
    let total = be32(input, 4)? as usize;
    let struct_offset = be32(input, 8)? as usize;
    let strings_offset = be32(input, 12)? as usize;
    let rsvmap_offset = be32(input, 16)? as usize;
    let version = be32(input, 20)?;
    let strings_size = be32(input, 32)? as usize;
    let struct_size = be32(input, 36)? as usize;
    if version < 17 || total > input.len() {
        return Err(FdtEditError::Malformed);
    }
    let structure = input
        .get(struct_offset..struct_offset.checked_add(struct_size).ok_or(FdtEditError::Malformed)?)
        .ok_or(FdtEditError::Malformed)?;
    let strings = input
        .get(strings_offset..strings_offset.checked_add(strings_size).ok_or(FdtEditError::Malformed)?)
        .ok_or(FdtEditError::Malformed)?;
    if rsvmap_offset >= total {
        return Err(FdtEditError::Malformed);
    }

    let mut offset = 0;
    let mut depth = 0usize;
    let mut root_end = None;
    let mut reserved_memory = None;
    let mut in_reserved_memory = false;
    let mut root_cells = (2, 1);
    let mut reserved_cells = (2, 1);
    loop {
        let token = be32(structure, offset)?;
        let token_start = offset;
        offset += 4;
        match token {
            FDT_BEGIN_NODE => {
                let name_len = structure
                    .get(offset..)
                    .ok_or(FdtEditError::Malformed)?
                    .iter()
                    .position(|&b| b == 0)
                    .ok_or(FdtEditError::Malformed)?;
                let name = &structure[offset..offset + name_len];
                offset = align4(offset + name_len + 1);
                depth += 1;
                if depth == 2 && name == b"reserved-memory" {
                    in_reserved_memory = true;
                }
            }
            FDT_END_NODE => {
                if depth == 0 {
                    return Err(FdtEditError::Malformed);
                }
                if depth == 2 && in_reserved_memory {
                    reserved_memory = Some((token_start, reserved_cells.0, reserved_cells.1));
                    in_reserved_memory = false;
                }
                if depth == 1 {
                    root_end = Some(token_start);
                }
                depth -= 1;
            }
            FDT_PROP => {
                let len = be32(structure, offset)? as usize;
                let name_offset = be32(structure, offset + 4)? as usize;
                let value = structure.get(offset + 8..offset + 8 + len).ok_or(FdtEditError::Malformed)?;
                let name = strings
                    .get(name_offset..)
                    .and_then(|s| s.split(|&b| b == 0).next())
                    .ok_or(FdtEditError::Malformed)?;
                let cell = (len == 4).then(|| u32::from_be_bytes([value[0], value[1], value[2], value[3]]));
                match (depth, in_reserved_memory, name, cell) {
                    (1, _, b"#address-cells", Some(v)) => root_cells.0 = v,
                    (1, _, b"#size-cells", Some(v)) => root_cells.1 = v,
                    (2, true, b"#address-cells", Some(v)) => reserved_cells.0 = v,
                    (2, true, b"#size-cells", Some(v)) => reserved_cells.1 = v,
                    _ => {}
                }
                offset = align4(offset + 8 + len);
            }
            FDT_NOP => {}
            FDT_END => break,
            _ => return Err(FdtEditError::Malformed),
        }
        if offset > structure.len() {
            return Err(FdtEditError::Malformed);
        }
    }
    if reserved_memory.is_none() && in_reserved_memory {
        return Err(FdtEditError::Malformed);
    }
    Ok(Layout {
        struct_offset,
        struct_size,
        strings_offset,
        strings_size,
        rsvmap_offset,
        root_end: root_end.ok_or(FdtEditError::Malformed)?,
        reserved_memory,
        root_cells,
    })
}

/// A cursor that appends to an output buffer.
struct Out<'o> {
    buf: &'o mut [u8],
    len: usize,
}

impl Out<'_> {
    fn bytes(&mut self, bytes: &[u8]) -> Result<(), FdtEditError> {
        let end = self.len + bytes.len();
        self.buf.get_mut(self.len..end).ok_or(FdtEditError::OutputTooSmall)?.copy_from_slice(bytes);
        self.len = end;
        Ok(())
    }

    fn u32(&mut self, v: u32) -> Result<(), FdtEditError> {
        self.bytes(&v.to_be_bytes())
    }

    fn pad4(&mut self) -> Result<(), FdtEditError> {
        while !self.len.is_multiple_of(4) {
            self.bytes(&[0])?;
        }
        Ok(())
    }

    fn cells(&mut self, value: u64, cells: u32) -> Result<(), FdtEditError> {
        match cells {
            1 => self.u32(value as u32),
            2 => self.bytes(&value.to_be_bytes()),
            _ => Err(FdtEditError::Malformed),
        }
    }
}

/// The strings the new nodes use, found in or appended to the strings block.
struct Names {
    reg: u32,
    no_map: u32,
    address_cells: u32,
    size_cells: u32,
    ranges: u32,
    status: u32,
}

fn find_or_append(strings: &[u8], appended: &mut Out<'_>, base_len: usize, name: &[u8]) -> Result<u32, FdtEditError> {
    let mut start = 0;
    for s in strings.split(|&b| b == 0) {
        if s == name {
            return Ok(start as u32);
        }
        start += s.len() + 1;
    }
    let offset = base_len + appended.len;
    // Look again among the strings appended so far.
    let mut start = 0;
    let extra = &appended.buf[..appended.len];
    for s in extra.split(|&b| b == 0) {
        if s == name && start < extra.len() {
            return Ok((base_len + start) as u32);
        }
        start += s.len() + 1;
    }
    appended.bytes(name)?;
    appended.bytes(&[0])?;
    Ok(offset as u32)
}

fn write_hyp_node(
    out: &mut Out<'_>,
    names: &Names,
    cells: (u32, u32),
    base: u64,
    size: u64,
) -> Result<(), FdtEditError> {
    out.u32(FDT_BEGIN_NODE)?;
    let mut name = [0u8; 24];
    let prefix = b"hyp@";
    name[..4].copy_from_slice(prefix);
    let digits = hex_digits(base, &mut name[4..]);
    out.bytes(&name[..4 + digits])?;
    out.bytes(&[0])?;
    out.pad4()?;
    out.u32(FDT_PROP)?;
    out.u32((cells.0 + cells.1) * 4)?;
    out.u32(names.reg)?;
    out.cells(base, cells.0)?;
    out.cells(size, cells.1)?;
    out.u32(FDT_PROP)?;
    out.u32(0)?;
    out.u32(names.no_map)?;
    out.u32(FDT_END_NODE)
}

/// The FDT_BEGIN_NODE tokens in a well-formed piece of the structure block.
fn count_nodes(structure: &[u8]) -> Result<usize, FdtEditError> {
    let mut nodes = 0;
    walk_tokens(structure, |token, _| {
        nodes += usize::from(token == FDT_BEGIN_NODE);
        Ok(())
    })?;
    Ok(nodes)
}

/// Calls `f` with each token of `structure` and its bytes (token included).
fn walk_tokens(
    structure: &[u8],
    mut f: impl FnMut(u32, &[u8]) -> Result<(), FdtEditError>,
) -> Result<(), FdtEditError> {
    let mut offset = 0;
    while offset < structure.len() {
        let token = be32(structure, offset)?;
        let end = match token {
            FDT_BEGIN_NODE => {
                let name_len = structure
                    .get(offset + 4..)
                    .ok_or(FdtEditError::Malformed)?
                    .iter()
                    .position(|&b| b == 0)
                    .ok_or(FdtEditError::Malformed)?;
                align4(offset + 4 + name_len + 1)
            }
            FDT_PROP => align4(offset + 12 + be32(structure, offset + 4)? as usize),
            FDT_END_NODE | FDT_NOP | FDT_END => offset + 4,
            _ => return Err(FdtEditError::Malformed),
        };
        f(token, structure.get(offset..end).ok_or(FdtEditError::Malformed)?)?;
        offset = end;
    }
    Ok(())
}

/// Copies `structure`, whose first node has depth-first index `first_node`,
/// giving each node of `disabled` the property `status = "disabled"` in place
/// of its own `status`.
fn copy_structure(
    out: &mut Out<'_>,
    structure: &[u8],
    first_node: usize,
    disabled: &[u16],
    status_name: u32,
    strings: &[u8],
) -> Result<(), FdtEditError> {
    let mut next_node = first_node;
    // Whether the properties being copied belong to a disabled node.
    let mut in_disabled = false;
    walk_tokens(structure, |token, bytes| match token {
        FDT_BEGIN_NODE => {
            out.bytes(bytes)?;
            in_disabled = u16::try_from(next_node).is_ok_and(|i| disabled.contains(&i));
            next_node += 1;
            if in_disabled {
                out.u32(FDT_PROP)?;
                out.u32(9)?;
                out.u32(status_name)?;
                out.bytes(b"disabled\0\0\0\0")?;
            }
            Ok(())
        }
        FDT_PROP => {
            let name_offset = be32(bytes, 8)? as usize;
            let is_status = strings.get(name_offset..).is_some_and(|s| s.starts_with(b"status\0"));
            if in_disabled && is_status {
                return Ok(());
            }
            out.bytes(bytes)
        }
        _ => {
            in_disabled = false;
            out.bytes(bytes)
        }
    })
}

/// Lower-case hex without leading zeros; returns the number of digits written.
fn hex_digits(mut value: u64, out: &mut [u8]) -> usize {
    let mut tmp = [0u8; 16];
    let mut n = 0;
    loop {
        tmp[n] = b"0123456789abcdef"[(value & 0xf) as usize];
        n += 1;
        value >>= 4;
        if value == 0 {
            break;
        }
    }
    for i in 0..n {
        out[i] = tmp[n - 1 - i];
    }
    n
}

/// Writes into `output` a copy of `input` in which each `(base, size)` of
/// `regions` is a `no-map` child of `/reserved-memory` (created if missing) and
/// each node whose depth-first index (the root is 0) is in `disabled` has
/// `status = "disabled"` (replacing its own `status`), and returns the new
/// blob's size.
///
/// # Errors
///
/// [`FdtEditError::Malformed`] if `input` is not a valid device tree (or uses
/// cells wider than 64 bits), [`FdtEditError::OutputTooSmall`] if `output` is
/// smaller than needed ([`max_output_size`] is always enough).
pub fn with_reserved_memory(
    input: &[u8],
    regions: &[(u64, u64)],
    disabled: &[u16],
    output: &mut [u8],
) -> Result<usize, FdtEditError> {
    let layout = parse(input)?;
    let structure = &input[layout.struct_offset..layout.struct_offset + layout.struct_size];
    let strings = &input[layout.strings_offset..layout.strings_offset + layout.strings_size];
    let rsvmap_end = {
        let mut o = layout.rsvmap_offset;
        loop {
            let entry = input.get(o..o + 16).ok_or(FdtEditError::Malformed)?;
            o += 16;
            if entry.iter().all(|&b| b == 0) {
                break o;
            }
        }
    };

    let mut extra_strings_buf = [0u8; 64];
    let mut extra = Out { buf: &mut extra_strings_buf, len: 0 };
    let names = Names {
        reg: find_or_append(strings, &mut extra, layout.strings_size, b"reg")?,
        no_map: find_or_append(strings, &mut extra, layout.strings_size, b"no-map")?,
        address_cells: find_or_append(strings, &mut extra, layout.strings_size, b"#address-cells")?,
        size_cells: find_or_append(strings, &mut extra, layout.strings_size, b"#size-cells")?,
        ranges: find_or_append(strings, &mut extra, layout.strings_size, b"ranges")?,
        status: find_or_append(strings, &mut extra, layout.strings_size, b"status")?,
    };
    let extra_len = extra.len;

    let mut out = Out { buf: output, len: 0 };
    out.bytes(&[0; HEADER_SIZE])?;
    while !out.len.is_multiple_of(8) {
        out.bytes(&[0])?;
    }
    let rsvmap_offset = out.len;
    out.bytes(&input[layout.rsvmap_offset..rsvmap_end])?;
    let struct_offset = out.len;
    let (insert_at, cells) = match layout.reserved_memory {
        Some((end, ac, sc)) => (end, (ac, sc)),
        None => (layout.root_end, layout.root_cells),
    };
    copy_structure(&mut out, &structure[..insert_at], 0, disabled, names.status, strings)?;
    if layout.reserved_memory.is_none() {
        out.u32(FDT_BEGIN_NODE)?;
        out.bytes(b"reserved-memory\0")?;
        out.pad4()?;
        for (name, value) in [(names.address_cells, cells.0), (names.size_cells, cells.1)] {
            out.u32(FDT_PROP)?;
            out.u32(4)?;
            out.u32(name)?;
            out.u32(value)?;
        }
        out.u32(FDT_PROP)?;
        out.u32(0)?;
        out.u32(names.ranges)?;
    }
    for &(base, size) in regions {
        write_hyp_node(&mut out, &names, cells, base, size)?;
    }
    if layout.reserved_memory.is_none() {
        out.u32(FDT_END_NODE)?;
    }
    let nodes_before = count_nodes(&structure[..insert_at])?;
    copy_structure(&mut out, &structure[insert_at..], nodes_before, disabled, names.status, strings)?;
    let struct_size = out.len - struct_offset;
    let strings_offset = out.len;
    out.bytes(strings)?;
    out.bytes(&extra_strings_buf[..extra_len])?;
    let strings_size = out.len - strings_offset;
    let total = out.len;

    let header = Header {
        total_size: total as u32,
        struct_offset: struct_offset as u32,
        strings_offset: strings_offset as u32,
        reservations_offset: rsvmap_offset as u32,
        boot_cpu: be32(input, 28)?,
        strings_size: strings_size as u32,
        struct_size: struct_size as u32,
    };
    out.buf[..HEADER_SIZE].copy_from_slice(&header.to_bytes());
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use fdt::Fdt;

    const VIRT: &[u8] = include_bytes!("platform/testdata/virt-gicv3.dtb");

    fn carve(input: &[u8], regions: &[(u64, u64)]) -> Vec<u8> {
        let mut out = vec![0u8; max_output_size(input, regions.len(), 0).unwrap()];
        let len = with_reserved_memory(input, regions, &[], &mut out).expect("edit succeeds");
        out.truncate(len);
        out
    }

    fn hyp_nodes(blob: &[u8]) -> Vec<(String, u64, u64, bool)> {
        let fdt = Fdt::new(blob).expect("output parses");
        let rm = fdt.find_node("/reserved-memory").expect("reserved-memory exists");
        rm.children()
            .map(|c| {
                let reg = c.reg().unwrap().next().unwrap();
                (
                    c.name.to_string(),
                    reg.starting_address as u64,
                    reg.size.unwrap() as u64,
                    c.property("no-map").is_some(),
                )
            })
            .collect()
    }

    #[test]
    fn creates_reserved_memory_with_no_map_children() {
        let out = carve(VIRT, &[(0x4020_0000, 0x20_0000), (0x7f00_0000, 0x80_0000)]);
        assert_eq!(
            hyp_nodes(&out),
            vec![
                ("hyp@40200000".to_string(), 0x4020_0000, 0x20_0000, true),
                ("hyp@7f000000".to_string(), 0x7f00_0000, 0x80_0000, true),
            ]
        );
    }

    #[test]
    fn everything_else_is_preserved() {
        let before = Fdt::new(VIRT).unwrap();
        let out = carve(VIRT, &[(0x4020_0000, 0x1000)]);
        let after = Fdt::new(&out).unwrap();
        let names = |f: &Fdt| f.all_nodes().map(|n| n.name.to_string()).collect::<Vec<_>>();
        let mut expected = names(&before);
        expected.push("reserved-memory".into());
        expected.push("hyp@40200000".into());
        let mut got = names(&after);
        expected.sort();
        got.sort();
        assert_eq!(got, expected);
        assert_eq!(
            after.find_node("/pl011@9000000").unwrap().reg().unwrap().next().unwrap().starting_address as u64,
            0x900_0000
        );
        let p = crate::platform::Platform::from_fdt(&out).unwrap();
        assert_eq!(p.reserved(), &[crate::range::PhysRange { start: 0x4020_0000, end: 0x4020_1000 }]);
    }

    #[test]
    fn an_existing_reserved_memory_node_gets_one_more_child() {
        let once = carve(VIRT, &[(0x4020_0000, 0x1000)]);
        let twice = carve(&once, &[(0x5000_0000, 0x2000)]);
        assert_eq!(hyp_nodes(&twice).len(), 2);
        assert_eq!(hyp_nodes(&twice)[1], ("hyp@50000000".to_string(), 0x5000_0000, 0x2000, true));
        let fdt = Fdt::new(&twice).unwrap();
        assert_eq!(fdt.all_nodes().filter(|n| n.name == "reserved-memory").count(), 1);
    }

    #[test]
    fn small_output_and_garbage_are_errors() {
        let mut small = [0u8; 100];
        assert_eq!(with_reserved_memory(VIRT, &[(0, 0x1000)], &[], &mut small), Err(FdtEditError::OutputTooSmall));
        let mut out = [0u8; 4096];
        assert_eq!(with_reserved_memory(&[0u8; 64], &[], &[], &mut out), Err(FdtEditError::Malformed));
        let mut truncated = VIRT.to_vec();
        truncated.truncate(200);
        assert_eq!(with_reserved_memory(&truncated, &[], &[], &mut out), Err(FdtEditError::Malformed));
    }

    #[test]
    fn withheld_nodes_are_disabled_and_nothing_else_changes() {
        let platform = crate::platform::Platform::from_fdt(VIRT).unwrap();
        let disabled = platform.devices.withheld_nodes.as_slice();
        let mut out = vec![0u8; max_output_size(VIRT, 1, disabled.len()).unwrap()];
        let len = with_reserved_memory(VIRT, &[(0x4020_0000, 0x1000)], disabled, &mut out).unwrap();
        out.truncate(len);
        let after = Fdt::new(&out).unwrap();
        let status = |path: &str| after.find_node(path).and_then(|n| n.property("status")).and_then(|p| p.as_str());
        assert_eq!(status("/fw-cfg@9020000"), Some("disabled"));
        assert_eq!(status("/virtio_mmio@a000000"), Some("disabled"));
        assert_eq!(status("/pcie@10000000"), Some("disabled"));
        assert_eq!(status("/intc@8000000/its@8080000"), Some("disabled"));
        assert_eq!(status("/pl011@9000000"), None);
        assert_eq!(status("/intc@8000000"), None);
        let disabled_count =
            after.all_nodes().filter(|n| n.property("status").and_then(|p| p.as_str()) == Some("disabled")).count();
        assert_eq!(disabled_count, disabled.len());
        // The edited tree still parses to the same platform, reserved range added.
        let again = crate::platform::Platform::from_fdt(&out).unwrap();
        assert_eq!(again.uart, platform.uart);
        assert_eq!(again.gic, platform.gic);
        // Disabling again replaces the status rather than adding a second one.
        let again_disabled = again.devices.withheld_nodes.as_slice();
        let mut twice = vec![0u8; max_output_size(&out, 0, again_disabled.len()).unwrap()];
        let len = with_reserved_memory(&out, &[], again_disabled, &mut twice).unwrap();
        twice.truncate(len);
        let fdt = Fdt::new(&twice).unwrap();
        let statuses = fdt.find_node("/fw-cfg@9020000").unwrap().properties().filter(|p| p.name == "status").count();
        assert_eq!(statuses, 1);
    }
}
