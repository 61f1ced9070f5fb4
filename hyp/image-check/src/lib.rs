//! What the hyp runs before it knows its own Image is intact: the report of a
//! damaged one.
//!
//! The entry code checks the Image's seal (`hyp_abi::image_seal`: its size
//! and checksum in the header) before it applies a relocation or reads past
//! its first pages (`hyp/src/arch/aarch64/image_check.S`). When the check
//! fails, nothing else of the Image can be trusted, so the report is made by
//! this crate alone: it finds the console UART, whether the bootargs ask for
//! semihosting exits and the PSCI conduit in the device tree with its own
//! small reader, writes one line, and stops the machine with a failure
//! status. Its code and text carry the sections `.text.image_check` and
//! `.rodata.image_check`, which `linker/image.ld` places right after the
//! Image header, before everything else; `scripts/build-image` checks that
//! this code branches to and addresses nothing beyond them (no call into
//! `core`, no panic), and the workspace builds this crate optimised in every
//! profile so that `core`'s helpers are inlined. It touches the hardware only
//! through the five routines of `image_check.S`.
//!
//! Like the hyp's platform code it reads `/chosen/stdout-path` (an alias or a
//! path), the node's `compatible` (PL011, or the 8250/16550 family with its
//! `reg-shift` and `reg-io-width`) and its first `reg`, translated through
//! the `ranges` of every bus above it; `/chosen/bootargs` for the word
//! `hyp.exit=semihosting`; `/psci`'s `method`. A malformed tree gives no
//! console (the stop still happens); nothing here can panic.

#![no_std]
#![deny(clippy::undocumented_unsafe_blocks)]
#![deny(unsafe_op_in_unsafe_fn)]

/// Puts the items that follow in the Image's first pages on the target.
macro_rules! head_text {
    ($($item:item)*) => {
        $(
            #[cfg_attr(target_os = "none", link_section = ".text.image_check")]
            $item
        )*
    };
}

/// A byte string kept with the code (a `static` array: no pointer, so no
/// relocation, which is not applied yet when this runs).
macro_rules! head_bytes {
    ($($name:ident = $text:literal;)*) => {
        $(
            #[cfg_attr(target_os = "none", link_section = ".rodata.image_check")]
            static $name: [u8; $text.len()] = *$text;
        )*
    };
}

/// The console UART models this report can drive.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum UartKind {
    Pl011,
    /// 8250/16550: registers `1 << reg_shift` bytes apart, accessed with
    /// `io_width`-byte (1 or 4) accesses.
    Ns16550 {
        reg_shift: u8,
        io_width: u8,
    },
}

/// The console: its model and base address.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Console {
    pub kind: UartKind,
    pub base: u64,
}

/// How PSCI reaches the firmware (`/psci`'s `method`).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Conduit {
    None,
    Smc,
    Hvc,
}

/// What the device tree says about reporting and stopping.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct StopInfo {
    pub console: Option<Console>,
    /// `hyp.exit=semihosting` is a word of the bootargs.
    pub semihosting_exit: bool,
    pub psci: Conduit,
}

const FDT_MAGIC: u32 = 0xd00d_feed;
const FDT_BEGIN_NODE: u32 = 1;
const FDT_END_NODE: u32 = 2;
const FDT_PROP: u32 = 3;
const FDT_NOP: u32 = 4;
const FDT_END: u32 = 9;

/// A checked device-tree header: where its blocks are.
#[derive(Clone, Copy)]
struct Fdt<'a> {
    blob: &'a [u8],
    structs: usize,
    struct_end: usize,
    strings: usize,
    strings_end: usize,
}

/// One structure-block token.
#[derive(Clone, Copy)]
struct Token {
    kind: u32,
    /// Start of the node name or property value.
    data: usize,
    /// Length of the name (without its NUL) or of the value.
    len: usize,
    /// Property name offset in the strings block.
    name: usize,
    /// Offset of the next token.
    next: usize,
}

head_bytes! {
    ROOT = b"/";
    CHOSEN = b"/chosen";
    ALIASES = b"/aliases";
    PSCI = b"/psci";
    STDOUT_PATH = b"stdout-path";
    LINUX_STDOUT_PATH = b"linux,stdout-path";
    BOOTARGS = b"bootargs";
    SEMIHOSTING_EXIT = b"hyp.exit=semihosting";
    METHOD = b"method";
    SMC = b"smc";
    HVC = b"hvc";
    COMPATIBLE = b"compatible";
    PL011 = b"arm,pl011";
    NS16550A = b"ns16550a";
    NS16550 = b"ns16550";
    NS16450 = b"ns16450";
    NS8250 = b"ns8250";
    DW_APB_UART = b"snps,dw-apb-uart";
    REG = b"reg";
    REG_SHIFT = b"reg-shift";
    REG_IO_WIDTH = b"reg-io-width";
    RANGES = b"ranges";
    ADDRESS_CELLS = b"#address-cells";
    SIZE_CELLS = b"#size-cells";
}

head_text! {
    /// Byte strings compared byte by byte (slice equality would call `memcmp`,
    /// which lives outside the image's first pages).
    fn same(a: &[u8], b: &[u8]) -> bool {
        if a.len() != b.len() {
            return false;
        }
        let mut i = 0;
        while i < a.len() {
            if a.get(i) != b.get(i) {
                return false;
            }
            i += 1;
        }
        true
    }

    fn be32(bytes: &[u8], at: usize) -> Option<u32> {
        let b = bytes.get(at..at.checked_add(4)?)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn align4(value: usize) -> Option<usize> {
        Some(value.checked_add(3)? & !3)
    }

    /// Reads the header and checks that both blocks lie in the blob.
    fn open(blob: &[u8]) -> Option<Fdt<'_>> {
        if be32(blob, 0)? != FDT_MAGIC {
            return None;
        }
        let total = be32(blob, 4)? as usize;
        let blob = blob.get(..total)?;
        if be32(blob, 20)? < 17 {
            return None;
        }
        let structs = be32(blob, 8)? as usize;
        let strings = be32(blob, 12)? as usize;
        let struct_end = structs.checked_add(be32(blob, 36)? as usize)?;
        let strings_end = strings.checked_add(be32(blob, 32)? as usize)?;
        if struct_end > total || strings_end > total {
            return None;
        }
        Some(Fdt { blob, structs, struct_end, strings, strings_end })
    }

    /// The token at `at`, checked to lie in the structure block.
    fn token(fdt: &Fdt<'_>, at: usize) -> Option<Token> {
        if at < fdt.structs || at.checked_add(4)? > fdt.struct_end {
            return None;
        }
        let kind = be32(fdt.blob, at)?;
        let data = at + 4;
        let mut token = Token { kind, data, len: 0, name: 0, next: data };
        if kind == FDT_BEGIN_NODE {
            let mut end = data;
            while *fdt.blob.get(end)? != 0 {
                end += 1;
            }
            token.len = end - data;
            token.next = align4(end + 1)?;
        } else if kind == FDT_PROP {
            token.len = be32(fdt.blob, data)? as usize;
            token.name = be32(fdt.blob, data + 4)? as usize;
            token.data = data + 8;
            token.next = align4(token.data.checked_add(token.len)?)?;
        } else if kind != FDT_END_NODE && kind != FDT_NOP && kind != FDT_END {
            return None;
        }
        if token.next > fdt.struct_end {
            return None;
        }
        Some(token)
    }

    /// The `index`-th component of `path` (`/a/b@1` has `a` and `b@1`).
    fn component(path: &[u8], index: usize) -> Option<&[u8]> {
        let mut at = 0;
        let mut seen = 0;
        loop {
            while path.get(at) == Some(&b'/') {
                at += 1;
            }
            if at >= path.len() {
                return None;
            }
            let start = at;
            while at < path.len() && path.get(at) != Some(&b'/') {
                at += 1;
            }
            if seen == index {
                return path.get(start..at);
            }
            seen += 1;
        }
    }

    fn count_components(path: &[u8]) -> usize {
        let mut count = 0;
        while component(path, count).is_some() {
            count += 1;
        }
        count
    }

    /// A node name matches a path component exactly, or by its name before
    /// `@` when the component has no unit address.
    fn name_matches(name: &[u8], wanted: &[u8]) -> bool {
        if same(name, wanted) {
            return true;
        }
        let mut has_at = false;
        let mut i = 0;
        while i < wanted.len() {
            has_at |= wanted.get(i) == Some(&b'@');
            i += 1;
        }
        !has_at
            && name.len() > wanted.len()
            && name.get(wanted.len()) == Some(&b'@')
            && same(name.get(..wanted.len()).unwrap_or(&[]), wanted)
    }

    /// The node at `path`: the offset of its first token after its name. The
    /// first child matching each component is taken, as the hyp does.
    fn find_node(fdt: &Fdt<'_>, path: &[u8]) -> Option<usize> {
        if path.first() != Some(&b'/') {
            return None;
        }
        let wanted = count_components(path);
        let mut at = fdt.structs;
        let mut depth = 0usize;
        let mut matched = 0usize;
        loop {
            let token = token(fdt, at)?;
            match token.kind {
                FDT_BEGIN_NODE => {
                    depth += 1;
                    if depth == 1 {
                        if wanted == 0 {
                            return Some(token.next);
                        }
                    } else if matched == depth - 2 {
                        let name = fdt.blob.get(token.data..token.data + token.len)?;
                        if name_matches(name, component(path, matched)?) {
                            matched += 1;
                            if matched == wanted {
                                return Some(token.next);
                            }
                        }
                    }
                }
                FDT_END_NODE => {
                    // Leaving the deepest matched node: the path is not below it.
                    if depth < 2 || matched == depth - 1 {
                        return None;
                    }
                    depth -= 1;
                }
                FDT_END => return None,
                _ => {}
            }
            at = token.next;
        }
    }

    /// Whether the strings block holds `name`, NUL-terminated, at `offset`.
    fn string_is(fdt: &Fdt<'_>, offset: usize, name: &[u8]) -> bool {
        let Some(start) = fdt.strings.checked_add(offset) else {
            return false;
        };
        let Some(end) = start.checked_add(name.len()) else {
            return false;
        };
        end < fdt.strings_end
            && same(fdt.blob.get(start..end).unwrap_or(&[]), name)
            && fdt.blob.get(end) == Some(&0)
    }

    /// The value of property `name` of the node whose tokens start at `node`.
    fn property<'a>(fdt: &Fdt<'a>, node: usize, name: &[u8]) -> Option<&'a [u8]> {
        let mut at = node;
        loop {
            let token = token(fdt, at)?;
            match token.kind {
                FDT_PROP => {
                    if string_is(fdt, token.name, name) {
                        return fdt.blob.get(token.data..token.data + token.len);
                    }
                }
                FDT_NOP => {}
                _ => return None,
            }
            at = token.next;
        }
    }

    /// A string value up to its first NUL.
    fn c_string(value: &[u8]) -> &[u8] {
        let mut len = 0;
        while len < value.len() && value.get(len) != Some(&0) {
            len += 1;
        }
        value.get(..len).unwrap_or(&[])
    }

    /// Whether the NUL-separated string list `list` holds `name`.
    fn list_has(list: &[u8], name: &[u8]) -> bool {
        let mut at = 0;
        while at < list.len() {
            let item = c_string(list.get(at..).unwrap_or(&[]));
            if same(item, name) {
                return true;
            }
            at += item.len() + 1;
        }
        false
    }

    /// One or two big-endian cells as a number (more only if the high ones are zero).
    fn read_cells(bytes: &[u8]) -> Option<u64> {
        if bytes.is_empty() || !bytes.len().is_multiple_of(4) {
            return None;
        }
        let mut value: u64 = 0;
        let mut at = 0;
        while at < bytes.len() {
            if value >> 32 != 0 {
                return None;
            }
            value = (value << 32) | u64::from(be32(bytes, at)?);
            at += 4;
        }
        Some(value)
    }

    /// A one-cell property of `node` as a number (`default` without it),
    /// at most `max`.
    fn cell_property(fdt: &Fdt<'_>, node: usize, name: &[u8], default: u64, max: u64) -> u64 {
        match property(fdt, node, name) {
            Some(value) => match read_cells(value) {
                Some(value) if value < max => value,
                Some(_) => max,
                None => default,
            },
            None => default,
        }
    }

    /// `#address-cells` and `#size-cells` a node gives its children (defaults
    /// 2 and 1, at most 4).
    fn cells_of(fdt: &Fdt<'_>, node: usize) -> (usize, usize) {
        (
            cell_property(fdt, node, &ADDRESS_CELLS, 2, 4) as usize,
            cell_property(fdt, node, &SIZE_CELLS, 1, 4) as usize,
        )
    }

    /// `path` without its last component (`/` for a child of the root).
    fn parent_path(path: &[u8]) -> &[u8] {
        let mut cut = 0;
        let mut i = 0;
        while i < path.len() {
            if path.get(i) == Some(&b'/') && i + 1 < path.len() {
                cut = i;
            }
            i += 1;
        }
        path.get(..cut.max(1)).unwrap_or(&ROOT)
    }

    /// Translates `address`, on the bus of the node at `bus_path`'s
    /// children, through the `ranges` of that node and every node above it.
    fn translate(fdt: &Fdt<'_>, bus_path: &[u8], mut address: u64) -> Option<u64> {
        let mut path = bus_path;
        while count_components(path) > 0 {
            let bus = find_node(fdt, path)?;
            let (child_cells, size_cells) = cells_of(fdt, bus);
            let parent = parent_path(path);
            let (parent_cells, _) = cells_of(fdt, find_node(fdt, parent)?);
            let ranges = property(fdt, bus, &RANGES)?;
            if !ranges.is_empty() {
                let entry = (child_cells + parent_cells + size_cells) * 4;
                if entry == 0 {
                    return None;
                }
                let mut at = 0;
                let mut mapped = None;
                while mapped.is_none() && at + entry <= ranges.len() {
                    let child = read_cells(ranges.get(at..at + child_cells * 4)?)?;
                    let target = ranges.get(at + child_cells * 4..at + (child_cells + parent_cells) * 4)?;
                    let size = read_cells(ranges.get(at + (child_cells + parent_cells) * 4..at + entry)?)?;
                    if address >= child && address - child < size {
                        mapped = Some(read_cells(target)?.checked_add(address - child)?);
                    }
                    at += entry;
                }
                address = mapped?;
            }
            path = parent;
        }
        Some(address)
    }

    /// The console `/chosen/stdout-path` names, if this report can drive it.
    fn console(fdt: &Fdt<'_>, chosen: usize) -> Option<Console> {
        let stdout = match property(fdt, chosen, &STDOUT_PATH) {
            Some(path) => path,
            None => property(fdt, chosen, &LINUX_STDOUT_PATH)?,
        };
        let stdout = c_string(stdout);
        let mut end = 0;
        while end < stdout.len() && stdout.get(end) != Some(&b':') {
            end += 1;
        }
        let mut path = stdout.get(..end)?;
        if path.first() != Some(&b'/') {
            let aliases = find_node(fdt, &ALIASES)?;
            path = c_string(property(fdt, aliases, path)?);
        }
        let node = find_node(fdt, path)?;
        let compatible = property(fdt, node, &COMPATIBLE)?;
        let kind = if list_has(compatible, &PL011) {
            UartKind::Pl011
        } else if list_has(compatible, &NS16550A)
            || list_has(compatible, &NS16550)
            || list_has(compatible, &NS16450)
            || list_has(compatible, &NS8250)
            || list_has(compatible, &DW_APB_UART)
        {
            UartKind::Ns16550 {
                reg_shift: cell_property(fdt, node, &REG_SHIFT, 0, 4) as u8,
                io_width: if cell_property(fdt, node, &REG_IO_WIDTH, 1, 8) == 4 { 4 } else { 1 },
            }
        } else {
            return None;
        };
        let bus_path = parent_path(path);
        let (address_cells, _) = cells_of(fdt, find_node(fdt, bus_path)?);
        let reg = property(fdt, node, &REG)?;
        let address = read_cells(reg.get(..address_cells * 4)?)?;
        Some(Console { kind, base: translate(fdt, bus_path, address)? })
    }

    /// Whether `bootargs` has the word `word`.
    fn has_word(bootargs: &[u8], word: &[u8]) -> bool {
        let mut at = 0;
        while at < bootargs.len() {
            let start = at;
            while at < bootargs.len() && !bootargs.get(at).is_some_and(u8::is_ascii_whitespace) {
                at += 1;
            }
            if same(bootargs.get(start..at).unwrap_or(&[]), word) {
                return true;
            }
            at += 1;
        }
        false
    }

    /// What the device tree `blob` says about reporting and stopping;
    /// nothing for a malformed tree.
    pub fn stop_info(blob: &[u8]) -> StopInfo {
        let mut info = StopInfo { console: None, semihosting_exit: false, psci: Conduit::None };
        let Some(fdt) = open(blob) else {
            return info;
        };
        if let Some(chosen) = find_node(&fdt, &CHOSEN) {
            info.console = console(&fdt, chosen);
            if let Some(bootargs) = property(&fdt, chosen, &BOOTARGS) {
                info.semihosting_exit = has_word(c_string(bootargs), &SEMIHOSTING_EXIT);
            }
        }
        if let Some(psci) = find_node(&fdt, &PSCI) {
            if let Some(method) = property(&fdt, psci, &METHOD) {
                let method = c_string(method);
                if same(method, &SMC) {
                    info.psci = Conduit::Smc;
                } else if same(method, &HVC) {
                    info.psci = Conduit::Hvc;
                }
            }
        }
        info
    }
}

/// Where a report goes, one byte at a time.
pub trait Sink {
    fn put(&mut self, byte: u8);
}

/// Why the entry code refused the Image.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Reason {
    /// The header's sealed size is not a multiple of 8 in `64..=image_size`.
    BadSize,
    /// The checksum of the sealed bytes is not the recorded one.
    Mismatch,
}

/// What the entry code found.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Damage {
    pub reason: Reason,
    pub sealed_size: u64,
    pub image_size: u64,
    pub recorded: u64,
    pub computed: u64,
}

head_bytes! {
    PREFIX = b"[hyp ERROR] ";
    BAD_SIZE = b"hyp image damaged: its header's sealed size ";
    BAD_SIZE_2 = b" (res3) is not a multiple of 8 between 64 and image_size ";
    BAD_SIZE_3 = b": a damaged header, or an Image not built by scripts/build-image; rebuild it with scripts/build-image";
    NOT_SEALED = b"hyp image not sealed: its header has no checksum (res4 is 0), so it cannot be checked; build it with scripts/build-image, which seals it";
    MISMATCH = b"hyp image damaged: checksum ";
    MISMATCH_2 = b" over its ";
    MISMATCH_3 = b" bytes, the header says ";
    MISMATCH_4 = b": the Image changed or was cut short after scripts/build-image sealed it; load it again, or rebuild it (cargo run -p hyp-image-tool -- verify FILE checks a copy)";
    NEWLINE = b"\n";
    HEX_DIGITS = b"0123456789abcdef";
}

head_text! {
    fn put_bytes(sink: &mut impl Sink, bytes: &[u8]) {
        let mut i = 0;
        while let Some(&byte) = bytes.get(i) {
            sink.put(byte);
            i += 1;
        }
    }

    /// `value` as `0x` and hex digits without leading zeros (Rust's `{:#x}`).
    fn put_hex(sink: &mut impl Sink, value: u64) {
        sink.put(b'0');
        sink.put(b'x');
        let mut shift = 60u32;
        let mut started = false;
        loop {
            let digit = ((value >> shift) & 0xf) as usize;
            started |= digit != 0 || shift == 0;
            if started {
                sink.put(HEX_DIGITS.get(digit).copied().unwrap_or(b'?'));
            }
            if shift == 0 {
                return;
            }
            shift -= 4;
        }
    }

    /// Writes the report of `damage`: one line saying what is wrong and what
    /// to do.
    pub fn report(damage: &Damage, sink: &mut impl Sink) {
        put_bytes(sink, &PREFIX);
        match damage.reason {
            Reason::BadSize => {
                put_bytes(sink, &BAD_SIZE);
                put_hex(sink, damage.sealed_size);
                put_bytes(sink, &BAD_SIZE_2);
                put_hex(sink, damage.image_size);
                put_bytes(sink, &BAD_SIZE_3);
            }
            Reason::Mismatch if damage.recorded == 0 => put_bytes(sink, &NOT_SEALED),
            Reason::Mismatch => {
                put_bytes(sink, &MISMATCH);
                put_hex(sink, damage.computed);
                put_bytes(sink, &MISMATCH_2);
                put_hex(sink, damage.sealed_size);
                put_bytes(sink, &MISMATCH_3);
                put_hex(sink, damage.recorded);
                put_bytes(sink, &MISMATCH_4);
            }
        }
        put_bytes(sink, &NEWLINE);
    }
}

#[cfg(target_os = "none")]
mod target;

#[cfg(test)]
mod tests;
