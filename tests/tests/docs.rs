//! The docs say what the code does: the ABI version in `docs/abi.md` is
//! `hyp_abi`'s, `CHANGELOG.md` has a section for the version the crates carry
//! (which the hyp prints at boot), and the README's console sample shows the
//! version, ABI and FEATURES the boot tests see. No QEMU: plain file reads.

use boot_tests::repo_root;
use hyp_abi::{HostCall, ABI_VERSION_MAJOR, ABI_VERSION_MINOR};

/// The workspace's version: this crate takes it (`version.workspace = true`), as the hyp does.
const VERSION: &str = env!("CARGO_PKG_VERSION");

fn read(path: &str) -> String {
    std::fs::read_to_string(repo_root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn abi_md_states_the_abi_version_of_the_code() {
    let abi = read("docs/abi.md");
    let stated = format!("The ABI version is {ABI_VERSION_MAJOR}.{ABI_VERSION_MINOR}");
    assert!(abi.contains(&stated), "docs/abi.md does not say \"{stated}\" (hyp/abi/src/lib.rs has that version)");
    // HOST_VERSION's table gives the same numbers.
    let row = |register: &str, what: &str| {
        abi.lines()
            .find(|line| line.starts_with(&format!("| {register} |")) && line.contains(what))
            .unwrap_or_else(|| panic!("docs/abi.md: HOST_VERSION's {register} row ({what}) is missing"))
            .to_owned()
    };
    let major = row("x1", "major version");
    let minor = row("x2", "minor version");
    assert!(major.contains(&format!("major version ({ABI_VERSION_MAJOR})")), "docs/abi.md: {major}");
    assert!(minor.contains(&format!("minor version ({ABI_VERSION_MINOR})")), "docs/abi.md: {minor}");
}

#[test]
fn changelog_has_a_section_for_the_crates_version() {
    let changelog = read("CHANGELOG.md");
    let headings: Vec<&str> = changelog.lines().filter(|line| line.starts_with("## ")).collect();
    assert_eq!(headings.first().copied(), Some("## Unreleased"), "CHANGELOG.md starts with what is not released yet");
    assert!(
        headings.iter().any(|h| h.starts_with(&format!("## [{VERSION}]"))),
        "CHANGELOG.md has no section \"## [{VERSION}]\" for the crates' version; its sections: {headings:?}"
    );
    // The crates outside the workspace carry the same version.
    let linux_vmm = read("host-shim/linux-vmm/Cargo.toml");
    assert!(
        linux_vmm.lines().any(|line| line == format!("version = \"{VERSION}\"")),
        "host-shim/linux-vmm/Cargo.toml is not at version {VERSION}"
    );
    for manifest in ["hyp/Cargo.toml", "hyp/abi/Cargo.toml", "host-shim/Cargo.toml"] {
        assert!(
            read(manifest).contains("version.workspace = true"),
            "{manifest} does not take the workspace's version"
        );
    }
}

/// The hyp prints its crate's version at boot; the boot tests check that
/// line, and the README shows it.
#[test]
fn the_version_printed_at_boot_is_the_crates() {
    let boot_rs = read("hyp/src/boot.rs");
    assert!(
        boot_rs.contains("\"pkvm-style hyp v{} at EL2") && boot_rs.contains("env!(\"CARGO_PKG_VERSION\")"),
        "hyp/src/boot.rs no longer prints the crate's version at boot"
    );
    let printed = format!("[hyp INFO] pkvm-style hyp v{VERSION} at EL2");
    assert!(read("tests/tests/boot.rs").contains(&printed), "the boot tests do not check \"{printed}\"");
    assert!(read("README.md").contains(&printed), "README.md's console sample does not show \"{printed}\"");
}

/// The README's console sample shows what a boot prints today.
#[test]
fn readme_sample_shows_the_current_abi() {
    let readme = read("README.md");
    let (major, minor) = (ABI_VERSION_MAJOR, ABI_VERSION_MINOR);
    let features = HostCall::features_bitmap(true);
    for (what, line) in [
        ("VERSION", format!("VERSION returned Ok(({major}, {minor}))")),
        ("patterned VERSION", format!("answered [0, {major}, {minor}]")),
        ("FEATURES", format!("FEATURES returned Ok({features:x})")),
    ] {
        assert!(readme.contains(&line), "README.md's console sample is stale: its {what} line is not \"{line}\"");
        assert!(read("tests/tests/boot.rs").contains(&line), "the boot tests do not check \"{line}\"");
    }
}
