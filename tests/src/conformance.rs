//! What the guest conformance suites (`host-shim/src/suites/conformance_*.rs`)
//! have in common as the boot tests see them: each runs on a GICv2 or GICv3
//! board with two CPUs, its checks once per VM type (non-protected, then
//! protected), each VM ending, torn down and (a protected one) its page
//! reclaimed, and finally its second CPU off again.

use crate::boot;
use std::time::Duration;

/// The lines of a VM `what` (e.g. "GICv2 SGI VM") whose other vCPUs end with
/// CPU_OFF and vCPU 0 with SYSTEM_OFF, then its teardown (`teardown_lines`).
pub fn vm_end_lines(what: &str, ty: &str) -> Vec<String> {
    let mut lines = vec![format!(
        "[host INFO] ok: the {what} ends: its other vCPUs with CPU_OFF (None), vCPU 0 with SYSTEM_OFF (Ok(SystemOff))"
    )];
    lines.extend(teardown_lines(what, ty));
    lines
}

/// The lines of tearing the VM `what` of type `ty` (`NonProtected` or
/// `Protected`) down, and for a protected one reclaiming its page.
pub fn teardown_lines(what: &str, ty: &str) -> Vec<String> {
    let mut lines = vec![format!("[host INFO] ok: tear the {what} down")];
    if ty == "Protected" {
        lines.push(format!("[host INFO] ok: reclaim the {what}'s page"));
    }
    lines
}

/// Boots on a GICv`gic` board with two CPUs and asserts, each line whole and
/// in order, `lines("NonProtected")`, then `lines("Protected")`, then that the
/// `suite` conformance checks' second CPU is off again and all host checks
/// passed; and that nothing logged an error or a warning.
pub fn assert_conformance(gic: u32, timeout: Duration, suite: &str, lines: impl Fn(&str) -> Vec<String>) {
    let machine = format!("virt,virtualization=on,gic-version={gic}");
    let boot = boot(&["-M", &machine, "-smp", "2"], timeout);
    let mut expected = lines("NonProtected");
    expected.extend(lines("Protected"));
    expected.push(format!("[host INFO] ok: the {suite} conformance checks' second CPU (1) is off again: 1"));
    expected.push("[host INFO] all host checks passed".into());
    // Each line whole: it ends where the console's line ends.
    let expected: Vec<String> = expected.into_iter().map(|line| line + "\r\n").collect();
    let markers: Vec<&str> = expected.iter().map(String::as_str).collect();
    boot.assert_passed(&markers);
    boot.assert_absent(&["ERROR", "WARN"]);
}
