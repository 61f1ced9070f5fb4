//! The debug conformance suite (issue 20; `host-shim/src/suites/conformance_debug.rs`)
//! on a GICv2 and a GICv3 board with two CPUs, so that the vCPU moves to the
//! other CPU at every run. Each check's line is exact: the syndromes and
//! addresses of the breakpoint, watchpoint and software-step exceptions the
//! guest takes at its own EL1, the registers it has (as many as
//! ID_AA64DFR0_EL1 says) and what they keep, and the host's own debug
//! registers untouched by the guest's, for both VM types.

use boot_tests::conformance::{assert_conformance, teardown_lines};
use std::time::Duration;

/// Generous for TCG on a loaded 2-core machine; a boot takes seconds.
const TIMEOUT: Duration = Duration::from_secs(300);

const RUNS: &str = "the vCPU on another CPU at every run";

/// The suite's lines for one VM type (`NonProtected` or `Protected`), in order.
fn lines(ty: &str) -> Vec<String> {
    let mut lines = vec![
        format!("[host INFO] ok: debug registers ({ty}, {RUNS}): ID_AA64DFR0_EL1's breakpoints, watchpoints and context comparators, then the DBGBVR<n>_EL1 and DBGWVR<n>_EL1 (n < 16) that exist: Ok(((6, 4, 2), (6, 4)))"),
        format!("[host INFO] ok: debug registers ({ty}, {RUNS}): every DBGBVR, DBGBCR, DBGWVR, DBGWCR written, then read back as written: Ok((20, 20))"),
        format!("[host INFO] ok: a breakpoint ({ty}, {RUNS}): MDSCR_EL1 with MDE and KDE, then (ESR_EL1, ELR_EL1 - the address, FAR_EL1, what the function returned after the handler disabled it), and the same call without it (the host's own breakpoint there does not fire): Ok((a000, (c6000022, 0, None, 42), 42))"),
        format!("[host INFO] ok: watchpoints ({ty}, {RUNS}): on a store, then on a load of the value stored: (ESR_EL1, FAR_EL1 - the data address, ELR_EL1 - the access's address) each: Ok([(d6000062, Some(0), 0), (d6000022, Some(0), 0)])"),
        // Each step's exception after the instruction it stepped; one the hyp
        // completed (the MMIO load and store) or that trapped to EL2 (the
        // HVC) ends its step there: the exception comes at the next
        // instruction with ISV 0, as on hardware.
        format!("[host INFO] ok: software step ({ty}, {RUNS}): add, an MMIO load and an MMIO store (exits to the host), a PSCI call (answered in the hyp) among plain instructions: the load's value, then (ESR_EL1, ELR_EL1 - the first instruction) of each step: Ok((52, [(cf000022, 4), (ce000022, 8), (cf000022, c), (ce000022, 10), (cf000022, 14), (cf000022, 18), (ce000022, 1c), (cf000022, 20)]))"),
        format!("[host INFO] ok: the host's own DBGBVR0, DBGBCR0, DBGWVR0, DBGWCR0 read back as the host set them after every run of the {ty} guest (runs after which they differed: 0)"),
        "[host INFO] ok: the debug VM ends with SYSTEM_OFF (Ok(SystemOff))".into(),
    ];
    lines.extend(teardown_lines("debug VM", ty));
    lines
}

fn conformance_on(gic: u32) {
    assert_conformance(gic, TIMEOUT, "debug", lines);
}

#[test]
fn debug_conformance_on_gicv2() {
    conformance_on(2);
}

#[test]
fn debug_conformance_on_gicv3() {
    conformance_on(3);
}
