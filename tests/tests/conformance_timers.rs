//! The timer conformance suite (issue 20;
//! `host-shim/src/suites/conformance_timers.rs`) on a GICv2 and a GICv3 board
//! with two CPUs, so that the vCPU moves to the other CPU at every step. Each
//! check's line is exact: the virtual timer (the hardware's) and the physical
//! timer (the hyp's emulation) fire, mask, re-arm, disable, count down and
//! wake a WFI as the architecture has them, for both VM types, and their
//! interrupts follow their output level.

use boot_tests::conformance::{assert_conformance, vm_end_lines};
use std::time::Duration;

/// Generous for TCG on a loaded 2-core machine; a boot takes seconds.
const TIMEOUT: Duration = Duration::from_secs(300);

const STEPS: &str = "the vCPU on another CPU at every step";

/// The suite's lines for one VM type (`NonProtected` or `Protected`) on the
/// GIC of version `gic`, in order.
fn lines(gic: u32, ty: &str) -> Vec<String> {
    let mut lines = vec![format!("[host INFO] ok: GICv{gic} timer VM ({ty}): PPIs 27 and 30 enabled")];
    for (name, intid) in [("virtual", 27), ("physical", 30)] {
        lines.push(format!(
            "[host INFO] ok: GICv{gic} {name} timer ({ty}, {STEPS}): fires (taken, CTL, after disable and EOI), masked (CTL, pending, taken), compare in the past (taken at once), re-armed into the future (pending before, after, taken), disabled (pending before, after, taken), TVAL (counts from its value, decreases, negative after expiry, ISTATUS), WFI (woken at the deadline, taken): Ok(([{intid:x}, 5, 3ff], [7, 0, 3ff], {intid:x}, [1, 0, 3ff], [1, 0, 3ff], [true, true, true, true], (true, {intid:x})))"
        ));
    }
    let what = format!("GICv{gic} timer VM");
    lines.extend(vm_end_lines(&what, ty));
    lines
}

fn conformance_on(gic: u32) {
    assert_conformance(gic, TIMEOUT, "timer", |ty| lines(gic, ty));
}

#[test]
fn timer_conformance_on_gicv2() {
    conformance_on(2);
}

#[test]
fn timer_conformance_on_gicv3() {
    conformance_on(3);
}
