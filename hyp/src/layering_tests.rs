//! The layering rules of `docs/ARCHITECTURE.md`, checked on the source itself:
//! `arch` is the bottom layer and imports nothing above it, and only `boot`
//! and the entries (`entry`) name `boot`, where the hyp's state is built and
//! fetched.

use std::path::{Path, PathBuf};

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display())) {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The lines of `path` that are code (not comments) and name `crate::<module>`
/// for one of `modules`.
fn naming(path: &Path, modules: &[&str]) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    text.lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .filter(|line| {
            modules.iter().any(|m| line.contains(&format!("crate::{m}::")) || line.contains(&format!("crate::{m};")))
        })
        .map(|line| format!("{}: {}", path.display(), line.trim()))
        .collect()
}

#[test]
fn arch_imports_nothing_above_it() {
    let mut files = Vec::new();
    sources(&src().join("arch"), &mut files);
    assert!(files.len() > 10, "the arch sources were found");
    // Every other top-level module of the hyp (a file or a folder of `src`)
    // is above arch.
    let mut modules: Vec<String> = std::fs::read_dir(src())
        .expect("src")
        .filter_map(|entry| entry.ok()?.path().file_stem()?.to_str().map(String::from))
        .filter(|module| !matches!(module.as_str(), "arch" | "main") && !module.ends_with("_tests"))
        .collect();
    modules.sort();
    modules.dedup();
    let above: Vec<&str> = modules.iter().map(String::as_str).collect();
    assert!(above.contains(&"vm") && above.contains(&"mm"), "main.rs's modules were found: {above:?}");
    let offending: Vec<String> = files.iter().flat_map(|f| naming(f, &above)).collect();
    assert!(offending.is_empty(), "arch names a layer above it:\n{}", offending.join("\n"));
}

#[test]
fn only_boot_and_the_entries_name_boot() {
    let mut files = Vec::new();
    sources(&src(), &mut files);
    let allowed = ["boot.rs", "entry.rs", "main.rs", "layering_tests.rs"];
    let offending: Vec<String> = files
        .iter()
        .filter(|f| !allowed.iter().any(|a| f.file_name().is_some_and(|n| n == *a)))
        .flat_map(|f| naming(f, &["boot"]))
        .collect();
    assert!(offending.is_empty(), "only boot and the entries may name boot:\n{}", offending.join("\n"));
}
