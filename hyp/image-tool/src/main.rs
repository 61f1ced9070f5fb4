//! `hyp-image-tool`: the development machine's side of the hyp Image's seal
//! (`hyp_abi::image_seal`).
//!
//! - `seal IMAGE` pads the Image file to the size its header records (the
//!   linker's `__image_file_size`) and writes the checksum into the header;
//!   `scripts/build-image` runs it on every hyp image it writes.
//! - `verify IMAGE` checks a copy (the size of the file, then the checksum,
//!   as the hyp does at boot): before flashing a board, or after a transfer.
//! - `check-head ELF --nm NM --objdump OBJDUMP` checks that the code that
//!   runs before the image is verified (the linker script's
//!   `__image_check_start..__image_check_code_end`: `image_check.S` and the
//!   `hyp-image-check` crate) branches only inside the Image's first pages
//!   (`__image_start..__image_check_code_end`), addresses nothing past
//!   `__image_check_end`, and has no indirect branch; `scripts/build-image`
//!   runs it, so that a change that makes the report call into `core` (a
//!   panic, a `memcpy`) fails the build instead of running unchecked code.

use hyp_abi::image_seal::{seal, sealed_size, verify};
use std::process::{Command, ExitCode};

const USAGE: &str = "usage: hyp-image-tool seal IMAGE
       hyp-image-tool verify IMAGE
       hyp-image-tool check-head ELF --nm LLVM_NM --objdump LLVM_OBJDUMP

seal        pad the hyp Image file to the size its header records and write its
            checksum into the header (scripts/build-image does this)
verify      check an Image file's size and checksum, as the hyp does at boot
check-head  check that the image check's code (before __image_check_code_end)
            reaches nothing past the Image's first pages (__image_check_end)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["seal", image] => seal_file(image),
        ["verify", image] => verify_file(image),
        ["check-head", elf, "--nm", nm, "--objdump", objdump] => check_head_of(elf, nm, objdump),
        ["--help" | "-h" | "help"] => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => Err(format!("bad arguments {args:?}\n{USAGE}")),
    };
    match result {
        Ok(line) => {
            eprintln!("{line}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("hyp-image-tool: {error}");
            ExitCode::FAILURE
        }
    }
}

fn read(path: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{path}: {e}"))
}

fn seal_file(path: &str) -> Result<String, String> {
    let mut image = read(path)?;
    let size = sealed_size(&image).map_err(|e| format!("{path}: {e}"))?;
    if image.len() > size {
        return Err(format!(
            "{path}: the file has {:#x} bytes, more than the {size:#x} the header records (__image_file_size \
             in linker/image.ld must cover every loaded section)",
            image.len()
        ));
    }
    image.resize(size, 0);
    let sum = seal(&mut image).map_err(|e| format!("{path}: {e}"))?;
    std::fs::write(path, &image).map_err(|e| format!("{path}: {e}"))?;
    Ok(format!("sealed {path}: {size:#x} bytes, checksum {sum:#018x}"))
}

fn verify_file(path: &str) -> Result<String, String> {
    let image = read(path)?;
    verify(&image).map_err(|e| format!("{path}: {e}"))?;
    Ok(format!("{path}: intact ({:#x} bytes, checksum as sealed)", image.len()))
}

fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program).args(args).output().map_err(|e| format!("{program}: {e}"))?;
    if !out.status.success() {
        return Err(format!("{program} {args:?} failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The linker symbols that bound the image check.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
struct HeadSymbols {
    image_start: u64,
    check_start: u64,
    code_end: u64,
    check_end: u64,
}

/// Reads the bounds from `llvm-nm` output (`ADDRESS TYPE NAME` lines).
fn head_symbols(nm: &str) -> Result<HeadSymbols, String> {
    let find = |name: &str| {
        nm.lines()
            .find_map(|line| {
                let mut fields = line.split_whitespace();
                let address = fields.next()?;
                let _kind = fields.next()?;
                (fields.next()? == name).then(|| u64::from_str_radix(address, 16).ok())?
            })
            .ok_or_else(|| format!("no symbol {name} (linker/image.ld defines it)"))
    };
    Ok(HeadSymbols {
        image_start: find("__image_start")?,
        check_start: find("__image_check_start")?,
        code_end: find("__image_check_code_end")?,
        check_end: find("__image_check_end")?,
    })
}

/// Largest head the check accepts: a cut image must still hold all of it.
const MAX_HEAD_BYTES: u64 = 64 << 10;
const PAGE: u64 = 4096;

/// Checks `llvm-objdump -d --no-show-raw-insn` output of the image check's
/// code: every direct branch stays in `image_start..code_end`, every other
/// PC-relative address (`adr`, `adrp`'s page, literal loads) lies in
/// `image_start..check_end`, and no branch is indirect. Returns the number of
/// instructions checked.
fn check_head(disassembly: &str, symbols: HeadSymbols) -> Result<usize, Vec<String>> {
    let HeadSymbols { image_start, check_start, code_end, check_end } = symbols;
    let mut problems = Vec::new();
    if !(image_start <= check_start && check_start <= code_end && code_end <= check_end) {
        problems.push(format!("bad bounds {symbols:x?}"));
    }
    if check_end.saturating_sub(image_start) > MAX_HEAD_BYTES || !check_end.is_multiple_of(PAGE) {
        problems.push(format!("__image_check_end {check_end:#x}: not page aligned within {MAX_HEAD_BYTES:#x} bytes"));
    }
    let mut count = 0;
    for line in disassembly.lines() {
        let Some((address, rest)) = line.trim_start().split_once(':') else {
            continue;
        };
        let Ok(address) = u64::from_str_radix(address.trim(), 16) else {
            continue; // a label line: `0000000000001000 <image_check>:`
        };
        if address < check_start || address >= code_end {
            continue;
        }
        count += 1;
        let text = rest.split("//").next().unwrap_or("").trim();
        let mut parts = text.splitn(2, char::is_whitespace);
        let mnemonic = parts.next().unwrap_or("");
        let operands = parts.next().unwrap_or("").split('<').next().unwrap_or("");
        let at = format!("{address:#x}: {}", text.split_whitespace().collect::<Vec<_>>().join(" "));
        if mnemonic.is_empty() || mnemonic.starts_with('<') || mnemonic.starts_with('.') {
            problems.push(format!("{at}: not an instruction (data in the code?)"));
            continue;
        }
        if matches!(
            mnemonic,
            "br" | "blr" | "braa" | "brab" | "braaz" | "brabz" | "blraa" | "blrab" | "blraaz" | "blrabz"
        ) {
            problems.push(format!("{at}: indirect branch (its target cannot be checked)"));
            continue;
        }
        let target = operands
            .split(',')
            .map(str::trim)
            .find_map(|op| op.strip_prefix("0x").and_then(|hex| u64::from_str_radix(hex, 16).ok()));
        let Some(target) = target else {
            continue;
        };
        let branch = mnemonic == "b"
            || mnemonic == "bl"
            || mnemonic.starts_with("b.")
            || mnemonic.starts_with("bc.")
            || matches!(mnemonic, "cbz" | "cbnz" | "tbz" | "tbnz");
        let ok = if branch {
            (image_start..code_end).contains(&target)
        } else if mnemonic == "adrp" {
            target.is_multiple_of(PAGE) && (image_start & !(PAGE - 1)..check_end).contains(&target)
        } else {
            (image_start..check_end).contains(&target)
        };
        if !ok {
            let limit = if branch { code_end } else { check_end };
            problems.push(format!("{at}: reaches {target:#x}, outside {image_start:#x}..{limit:#x}"));
        }
    }
    if count == 0 {
        problems.push("no instruction of the image check found in the disassembly".to_string());
    }
    if problems.is_empty() {
        Ok(count)
    } else {
        Err(problems)
    }
}

fn check_head_of(elf: &str, nm: &str, objdump: &str) -> Result<String, String> {
    let symbols = head_symbols(&run(nm, &[elf])?)?;
    let start = format!("--start-address={:#x}", symbols.check_start);
    let stop = format!("--stop-address={:#x}", symbols.code_end);
    let disassembly = run(objdump, &["-d", "--no-show-raw-insn", &start, &stop, elf])?;
    match check_head(&disassembly, symbols) {
        Ok(count) => Ok(format!(
            "{elf}: the image check ({count} instructions, {:#x} bytes with its text) reaches nothing past {:#x}",
            symbols.check_end - symbols.check_start,
            symbols.check_end
        )),
        Err(problems) => Err(format!(
            "{elf}: the image check, which runs before the image is verified, reaches outside the image's first \
             pages; keep hyp/image-check free of calls into core (panics, memcpy) and of pointers in data:\n  {}",
            problems.join("\n  ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SYMBOLS: HeadSymbols = HeadSymbols { image_start: 0, check_start: 0x100, code_end: 0x800, check_end: 0x1000 };

    #[test]
    fn symbols_come_from_nm() {
        let nm =
            "0000000000000000 T _start\n0000000000000000 t __image_start\n0000000000000100 T __image_check_start\n\
                  0000000000000800 T __image_check_code_end\n0000000000001000 T __image_check_end\n";
        assert_eq!(head_symbols(nm), Ok(SYMBOLS));
        assert!(head_symbols("0 T __image_start\n").is_err());
    }

    #[test]
    fn code_that_stays_in_the_head_passes() {
        let code = "
/tmp/hyp:	file format elf64-littleaarch64

Disassembly of section .text:

0000000000000100 <image_check>:
     100:      	ldr	x9, [x1, #0x28]
     104:      	cmp	x9, #0x40
     108:      	b.lo	0x130 <image_check+0x30>
     10c:      	bl	0x200 <hyp_image_damaged>
     110:      	adrp	x0, 0x0 <_start>
     114:      	add	x0, x0, #0x700
     118:      	adr	x1, 0x900 <TEXT>
     11c:      	cbz	x0, 0x100 <image_check>
     120:      	tbnz	w0, #0x5, 0x0 <_start>
     124:      	ret
     128:      	hlt	#0xf000
     12c:      	mov	x0, #0x84000008         // =2214592520
";
        assert_eq!(check_head(code, SYMBOLS), Ok(12));
    }

    #[test]
    fn code_that_reaches_out_fails() {
        for (line, why) in [
            ("     104:      	bl	0x2000 <memcpy>", "reaches 0x2000"),
            ("     104:      	b	0x800 <core::panicking::panic>", "reaches 0x800"),
            ("     104:      	b.ne	0x900 <TEXT>", "reaches 0x900"),
            ("     104:      	adrp	x0, 0x1000 <.rodata>", "reaches 0x1000"),
            ("     104:      	adr	x0, 0x1008", "reaches 0x1008"),
            ("     104:      	ldr	x0, 0x1010 <lit>", "reaches 0x1010"),
            ("     104:      	blr	x8", "indirect branch"),
            ("     104:      	br	x16", "indirect branch"),
            ("     104:      	<unknown>", "not an instruction"),
            ("     104:      	.word	0x12345678", "not an instruction"),
        ] {
            let code = format!("0000000000000100 <f>:\n     100:      	ret\n{line}\n");
            let problems = check_head(&code, SYMBOLS).expect_err(line);
            assert!(problems.iter().any(|p| p.contains(why)), "{line}: {problems:?}");
        }
        // Outside the checked range, anything goes (the code after the check).
        assert_eq!(check_head("     100:      	ret\n     900:      	blr	x8\n", SYMBOLS), Ok(1));
        assert!(check_head("", SYMBOLS).is_err());
        let unaligned = HeadSymbols { check_end: 0x1004, ..SYMBOLS };
        assert!(check_head("     100:      	ret\n", unaligned).is_err());
    }
}
