//! Links the bare-metal build with the shared image linker script.

use std::env;
use std::path::PathBuf;

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    if env::var("CARGO_CFG_TARGET_OS").unwrap_or_default() == "none" {
        let script = manifest_dir.join("../linker/image.ld");
        println!("cargo:rustc-link-arg-bins=-T{}", script.display());
        println!("cargo:rerun-if-changed={}", script.display());
    }
    println!("cargo:rerun-if-env-changed=HOST_LOG_LEVEL");
}
