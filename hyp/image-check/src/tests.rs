extern crate std;

use super::*;
use std::string::String;
use std::vec::Vec;

const VIRT_GICV3: &[u8] = include_bytes!("../../src/platform/testdata/virt-gicv3.dtb");
const VIRT_GICV2: &[u8] = include_bytes!("../../src/platform/testdata/virt-gicv2.dtb");
const VIRT_BOOTARGS: &[u8] = include_bytes!("../../src/platform/testdata/virt-bootargs.dtb");
const BOARD_8250: &[u8] = include_bytes!("../../src/platform/testdata/board-8250.dtb");

struct Text(Vec<u8>);

impl Sink for Text {
    fn put(&mut self, byte: u8) {
        self.0.push(byte);
    }
}

fn report_text(damage: &Damage) -> String {
    let mut text = Text(Vec::new());
    report(damage, &mut text);
    String::from_utf8(text.0).expect("ASCII")
}

#[test]
fn qemu_virt_trees_give_the_pl011_and_smc() {
    let pl011 = Some(Console { kind: UartKind::Pl011, base: 0x900_0000 });
    for blob in [VIRT_GICV3, VIRT_GICV2] {
        assert_eq!(stop_info(blob), StopInfo { console: pl011, semihosting_exit: false, psci: Conduit::Smc });
    }
    // Dumped with -append "console=ttyAMA0 hyp.exit=semihosting hyp.selftest=stack-guard".
    assert_eq!(stop_info(VIRT_BOOTARGS), StopInfo { console: pl011, semihosting_exit: true, psci: Conduit::Smc });
}

#[test]
fn an_8250_behind_a_bus_is_found_through_its_alias_and_ranges() {
    // board-8250.dts: stdout-path = "serial0:115200n8", the UART at 0x1c28000
    // on a bus mapping 0 to 0x40000000, reg-shift 2, reg-io-width 4; no PSCI.
    assert_eq!(
        stop_info(BOARD_8250),
        StopInfo {
            console: Some(Console { kind: UartKind::Ns16550 { reg_shift: 2, io_width: 4 }, base: 0x41c2_8000 }),
            semihosting_exit: false,
            psci: Conduit::None,
        }
    );
}

#[test]
fn malformed_trees_give_nothing_and_never_panic() {
    let nothing = StopInfo { console: None, semihosting_exit: false, psci: Conduit::None };
    assert_eq!(stop_info(&[]), nothing);
    assert_eq!(stop_info(&[0u8; 64]), nothing);
    // Every cut of a real tree.
    for len in 0..VIRT_BOOTARGS.len() {
        let _ = stop_info(&VIRT_BOOTARGS[..len]);
    }
    // Every byte of the header and the first tokens set to hostile values,
    // and a pseudo-random sample of single-byte changes everywhere.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for at in 0..VIRT_BOOTARGS.len() {
        let sample = at < 512 || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed.is_multiple_of(8)
        };
        if !sample {
            continue;
        }
        for value in [0x00, 0x01, 0x7f, 0x80, 0xff] {
            let mut blob = VIRT_BOOTARGS.to_vec();
            blob[at] = value;
            let _ = stop_info(&blob);
        }
    }
}

#[test]
fn paths_and_names() {
    assert_eq!(count_components(b"/"), 0);
    assert_eq!(count_components(b"/a/b@1"), 2);
    assert_eq!(component(b"/a//b@1/", 1), Some(&b"b@1"[..]));
    assert_eq!(component(b"/a", 1), None);
    assert_eq!(parent_path(b"/pl011@9000000"), b"/");
    assert_eq!(parent_path(b"/soc/serial@1c28000"), b"/soc");
    assert_eq!(parent_path(b"/a/b/c/"), b"/a/b");
    assert!(name_matches(b"serial@1c28000", b"serial"));
    assert!(name_matches(b"serial@1c28000", b"serial@1c28000"));
    assert!(!name_matches(b"serial@1c28000", b"serial@0"));
    assert!(!name_matches(b"serial2", b"serial"));
    assert!(has_word(b"console=ttyAMA0 hyp.exit=semihosting", b"hyp.exit=semihosting"));
    assert!(has_word(b"hyp.exit=semihosting\tx", b"hyp.exit=semihosting"));
    assert!(!has_word(b"hyp.exit=semihostingx", b"hyp.exit=semihosting"));
    assert!(!has_word(b"", b"hyp.exit=semihosting"));
}

#[test]
fn reports_say_what_is_wrong_and_what_to_do() {
    let damage =
        Damage { reason: Reason::Mismatch, sealed_size: 0x8_4000, image_size: 0x9_a000, recorded: 0xabc, computed: 1 };
    assert_eq!(
        report_text(&damage),
        "[hyp ERROR] hyp image damaged: checksum 0x1 over its 0x84000 bytes, the header says 0xabc: the Image \
         changed or was cut short after scripts/build-image sealed it; load it again, or rebuild it (cargo run -p \
         hyp-image-tool -- verify FILE checks a copy)\n"
    );
    assert_eq!(
        report_text(&Damage { recorded: 0, ..damage }),
        "[hyp ERROR] hyp image not sealed: its header has no checksum (res4 is 0), so it cannot be checked; build \
         it with scripts/build-image, which seals it\n"
    );
    assert_eq!(
        report_text(&Damage { reason: Reason::BadSize, sealed_size: 0x7, ..damage }),
        "[hyp ERROR] hyp image damaged: its header's sealed size 0x7 (res3) is not a multiple of 8 between 64 and \
         image_size 0x9a000: a damaged header, or an Image not built by scripts/build-image; rebuild it with \
         scripts/build-image\n"
    );
    let full = Damage { computed: u64::MAX, recorded: 0x8000_0000_0000_0000, ..damage };
    assert!(report_text(&full)
        .contains("checksum 0xffffffffffffffff over its 0x84000 bytes, the header says 0x8000000000000000:"));
}
