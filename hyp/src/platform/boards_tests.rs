//! Platform discovery on the device trees of real boards: Debian's arm64 kernel
//! package's trees and QEMU's dumped virt trees, fetched by
//! `scripts/fetch-board-dtbs` into the directory `HYP_BOARD_DTBS` names
//! (`scripts/test` sets it). Without it these tests say so and check nothing;
//! with it, a missing tree fails.

use super::*;
use std::path::PathBuf;

fn board_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("HYP_BOARD_DTBS").map(PathBuf::from);
    if dir.is_none() {
        eprintln!("HYP_BOARD_DTBS is not set: run HYP_BOARD_DTBS=$(scripts/fetch-board-dtbs) cargo test -p hyp board");
    }
    dir
}

fn read(dir: &std::path::Path, name: &str) -> Vec<u8> {
    let path = dir.join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e} (scripts/fetch-board-dtbs fetches it)", path.display()))
}

/// What discovery must find on one board.
struct Expected {
    file: &'static str,
    ram: &'static [(u64, u64)],
    /// The console: `Ok(model)` or `Err(compatible)` for an unsupported one.
    console: Result<UartModel, &'static str>,
    gic: Option<&'static str>,
    cpus: usize,
    psci: Option<PsciConduit>,
    spin_table: bool,
}

fn gic_name(gic: Option<Gic>) -> Option<&'static str> {
    gic.map(|g| match g {
        Gic::V2 { .. } => "v2",
        Gic::V3 { .. } => "v3",
    })
}

const BOARDS: &[Expected] = &[
    Expected {
        file: "rpi-3-b.dtb",
        ram: &[(0, 0x4000_0000)],
        console: Err("brcm,bcm2835-aux-uart"),
        gic: None,
        cpus: 4,
        psci: None,
        spin_table: true,
    },
    Expected {
        file: "rpi-4-b-with-memory.dtb",
        ram: &[(0, 0x3b40_0000)],
        console: Err("brcm,bcm2835-aux-uart"),
        gic: Some("v2"),
        cpus: 4,
        psci: None,
        spin_table: true,
    },
    Expected {
        file: "rockpro64-with-memory.dtb",
        ram: &[(0x20_0000, 0x8000_0000)],
        console: Ok(UartModel::Ns16550 { reg_shift: 2, io_width: 4 }),
        gic: Some("v3"),
        cpus: 6,
        psci: Some(PsciConduit::Smc),
        spin_table: false,
    },
    Expected {
        file: "imx8mp-evk.dtb",
        // Two adjacent banks in the tree (3 GiB below 4 GiB, 3 GiB above):
        // one bank of RAM (`add_ram`).
        ram: &[(0x4000_0000, 0x1_c000_0000)],
        console: Err("fsl,imx8mp-uart"),
        gic: Some("v3"),
        cpus: 4,
        psci: Some(PsciConduit::Smc),
        spin_table: false,
    },
    Expected {
        file: "juno-r2.dtb",
        ram: &[(0x8000_0000, 0xff00_0000), (0x8_8000_0000, 0xa_0000_0000)],
        console: Ok(UartModel::Pl011),
        gic: Some("v2"),
        cpus: 6,
        psci: Some(PsciConduit::Smc),
        spin_table: false,
    },
];

#[test]
fn board_trees_yield_ram_console_interrupt_controller_and_cpus() {
    let Some(dir) = board_dir() else {
        return;
    };
    for board in BOARDS {
        let blob = read(&dir, board.file);
        let p = Platform::from_fdt(&blob).unwrap_or_else(|e| panic!("{}: {e}", board.file));
        let ram: Vec<(u64, u64)> = p.ram.as_slice().iter().map(|r| (r.start, r.end)).collect();
        assert_eq!(ram, board.ram, "{}: RAM", board.file);
        match board.console {
            Ok(model) => assert_eq!(p.uart.map(|u| u.model), Some(model), "{}: console", board.file),
            Err(compatible) => {
                assert_eq!(p.uart, None, "{}", board.file);
                assert_eq!(p.unsupported_console.map(|c| c.to_string()).as_deref(), Some(compatible), "{}", board.file);
            }
        }
        assert_eq!(gic_name(p.gic), board.gic, "{}: interrupt controller", board.file);
        assert_eq!(p.cpus.len(), board.cpus, "{}: CPUs", board.file);
        assert_eq!(p.psci, board.psci, "{}: PSCI", board.file);
        let spin = p.cpus.as_slice().iter().any(|c| matches!(c.enable_method, EnableMethod::SpinTable { .. }));
        assert_eq!(spin, board.spin_table, "{}: spin-table CPUs", board.file);
    }
}

#[test]
fn board_trees_without_ram_say_so() {
    let Some(dir) = board_dir() else {
        return;
    };
    // As shipped, these leave /memory to the firmware or U-Boot.
    for file in ["rpi-4-b.dtb", "rockpro64.dtb"] {
        assert_eq!(Platform::from_fdt(&read(&dir, file)).err(), Some(PlatformError::NoMemory), "{file}");
    }
}

#[test]
fn qemu_virt_trees_yield_their_gic_and_cpus() {
    let Some(dir) = board_dir() else {
        return;
    };
    for (file, gic, cpus) in [
        ("qemu-virt-gicv2-1cpu.dtb", "v2", 1),
        ("qemu-virt-gicv2-4cpu.dtb", "v2", 4),
        ("qemu-virt-gicv3-1cpu.dtb", "v3", 1),
        ("qemu-virt-gicv3-4cpu.dtb", "v3", 4),
    ] {
        let p = Platform::from_fdt(&read(&dir, file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(p.ram.as_slice(), &[PhysRange { start: 0x4000_0000, end: 0xc000_0000 }], "{file}");
        assert_eq!(p.uart.map(|u| u.model), Some(UartModel::Pl011), "{file}");
        assert_eq!(gic_name(p.gic), Some(gic), "{file}");
        assert_eq!(p.cpus.len(), cpus, "{file}");
        assert_eq!(p.psci, Some(PsciConduit::Smc), "{file}");
    }
}

/// Every tree cut short at many lengths, and with bytes flipped through its
/// header and structure block: discovery answers with an error or a platform,
/// never a panic; a cut or bad header is always `BadDeviceTree`.
#[test]
fn truncated_and_corrupted_board_trees_give_errors_not_panics() {
    let Some(dir) = board_dir() else {
        return;
    };
    for board in BOARDS {
        let blob = read(&dir, board.file);
        for len in [0, 4, 39, 40, 100, blob.len() / 2, blob.len() - 1] {
            assert_eq!(
                Platform::from_fdt(&blob[..len]).err(),
                Some(PlatformError::BadDeviceTree),
                "{} cut at {len}",
                board.file
            );
        }
        let mut bad_magic = blob.clone();
        bad_magic[0] ^= 0xff;
        assert_eq!(Platform::from_fdt(&bad_magic).err(), Some(PlatformError::BadDeviceTree), "{}", board.file);
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..400 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let mut copy = blob.clone();
            let at = (seed % copy.len() as u64) as usize;
            copy[at] ^= (seed >> 32) as u8 | 1;
            let result = std::panic::catch_unwind(|| Platform::from_fdt(&copy).map(|p| p.ram.len()));
            assert!(result.is_ok(), "{}: byte {at} flipped: discovery panicked", board.file);
        }
    }
}
