//! The damaged-image report (`hyp-image-check`) finds, with its own small
//! device-tree reader, the console, PSCI conduit and semihosting exit that the
//! hyp's platform code finds: on the trees of `platform/testdata` and, with
//! `HYP_BOARD_DTBS` (`scripts/fetch-board-dtbs`), on real boards' trees.

use crate::platform::{Platform, PsciConduit, UartModel};
use hyp_image_check::{stop_info, Conduit, UartKind};

/// Compares the two readings of `blob`; whether a console was found.
fn agree(name: &str, blob: &[u8]) -> bool {
    let Ok(platform) = Platform::from_fdt(blob) else {
        return false;
    };
    let info = stop_info(blob);
    let early = info.console.map(|c| {
        let model = match c.kind {
            UartKind::Pl011 => UartModel::Pl011,
            UartKind::Ns16550 { reg_shift, io_width } => UartModel::Ns16550 { reg_shift, io_width },
        };
        (model, c.base)
    });
    assert_eq!(early, platform.uart.map(|u| (u.model, u.regs.start)), "{name}: console");
    let psci = match info.psci {
        Conduit::None => None,
        Conduit::Smc => Some(PsciConduit::Smc),
        Conduit::Hvc => Some(PsciConduit::Hvc),
    };
    assert_eq!(psci, platform.psci, "{name}: PSCI");
    assert_eq!(info.semihosting_exit, platform.semihosting_exit, "{name}: semihosting exit");
    early.is_some()
}

#[test]
fn the_report_finds_what_the_platform_finds_on_the_test_trees() {
    for (name, blob) in [
        ("virt-gicv3", &include_bytes!("platform/testdata/virt-gicv3.dtb")[..]),
        ("virt-gicv2", include_bytes!("platform/testdata/virt-gicv2.dtb")),
        ("virt-bootargs", include_bytes!("platform/testdata/virt-bootargs.dtb")),
        ("virt-initrd", include_bytes!("platform/testdata/virt-initrd.dtb")),
        ("board-8250", include_bytes!("platform/testdata/board-8250.dtb")),
    ] {
        assert!(agree(name, blob), "{name}: no console");
    }
}

#[test]
fn the_report_finds_what_the_platform_finds_on_board_trees() {
    let Some(dir) = std::env::var_os("HYP_BOARD_DTBS").map(std::path::PathBuf::from) else {
        eprintln!("HYP_BOARD_DTBS is not set: run HYP_BOARD_DTBS=$(scripts/fetch-board-dtbs) cargo test -p hyp board");
        return;
    };
    let (mut seen, mut consoles) = (0, 0);
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())).flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "dtb") {
            let blob = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            consoles += usize::from(agree(&path.display().to_string(), &blob));
            seen += 1;
        }
    }
    // QEMU's four, the Raspberry Pi 3B's with its PL011 console behind a bus,
    // RockPro64's 8250 and Juno's PL011.
    assert!(seen >= 5 && consoles >= 7, "{consoles} consoles in {seen} trees in {}", dir.display());
}
