//! Links the bare-metal build with the shared image linker script and embeds the
//! host shim Image whose path `scripts/build-image` passes in `HOST_SHIM_IMAGE`.

use std::env;
use std::path::PathBuf;

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let target_os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if target_os == "none" {
        let script = manifest_dir.join("../linker/image.ld");
        println!("cargo:rustc-link-arg-bins=-T{}", script.display());
        println!("cargo:rerun-if-changed={}", script.display());
    }
    println!("cargo:rerun-if-env-changed=HOST_SHIM_IMAGE");
    println!("cargo:rerun-if-env-changed=HYP_LOG_LEVEL");
    println!("cargo::rustc-check-cfg=cfg(host_shim_embedded)");
    match env::var("HOST_SHIM_IMAGE") {
        Ok(path) => {
            println!("cargo:rerun-if-changed={path}");
            println!("cargo:rustc-cfg=host_shim_embedded");
            println!("cargo:rustc-env=HOST_SHIM_IMAGE_PATH={path}");
        }
        Err(_) if target_os == "none" => {
            panic!("HOST_SHIM_IMAGE is not set: build the hyp with scripts/build-image");
        }
        Err(_) => {}
    }
}
