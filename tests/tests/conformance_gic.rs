//! The GIC conformance suite (issue 20; `host-shim/src/suites/conformance_gic.rs`)
//! on a GICv2 and a GICv3 board with two CPUs, so that the vCPU moves to the
//! other CPU at every step. Each check's line is exact: the values a guest
//! reads (GICC_IAR with its source CPU, the SGI pending registers, the
//! running priority, what it took when) are the architecture's, for both VM
//! types.

use boot_tests::conformance::{assert_conformance, vm_end_lines};
use std::time::Duration;

/// Generous for TCG on a loaded 2-core machine; a boot takes seconds.
const TIMEOUT: Duration = Duration::from_secs(300);

const STEPS: &str = "the vCPU on another CPU at every step";

/// The suite's lines for one VM type (`NonProtected` or `Protected`) on the
/// GIC of version `gic`, in order.
fn lines(gic: u32, ty: &str) -> Vec<String> {
    let sgis = if gic == 2 {
        format!(
            "[host INFO] ok: GICv2 SGIs ({ty}, {STEPS}): GICD_SGIR to a list, to all but the sender, to the sender and with the reserved filter; (GICD_SPENDSGIR0 of vCPUs 0..3, SGI 4 pending by the reserved filter), then GICC_IAR per vCPU, the source in bits 12:10, then SGI 4 set pending from vCPUs 1 and 2 and cleared from 2, then SGI 5 from vCPUs 2 and 1 in EOImode 1 (GICC_IAR, each ended by EOIR and DIR): Ok(([7000000, 4000000, 2000000], 0, [[3, 403, 803, 3ff], [803, 3ff, 3ff, 3ff], [403, 3ff, 3ff, 3ff]], [404, 3ff], [405, 805, 3ff]))"
        )
    } else {
        format!(
            "[host INFO] ok: GICv3 SGIs ({ty}, {STEPS}): ICC_SGI1R_EL1 to a target list, to all but the sender (IRM), to Aff1 1 and range 1 (nobody), ICC_SGI0R_EL1 and ICC_ASGI1R_EL1 (group 0: nothing); vCPU 0's GICR_ISPENDR0, then ICC_IAR1_EL1 per vCPU: Ok((18, [[4, 3, 3ff], [4, 3ff, 3ff], [3, 3ff, 3ff]]))"
        )
    };
    let priorities = format!(
        "[host INFO] ok: GICv{gic} priorities and EOI modes ({ty}, {STEPS}): preemption (IAR, RPR, taken, RPR, waiting, taken after both ended, RPR idle), priority mask 0x90 then 0xff, binary point 5 then 4, EOImode 0, EOImode 1 (IAR, RPR after EOIR, pending behind its active self, taken after DIR, nothing left): Ok(([28, 80, 29, 40, 3ff, 2a, ff], [3ff, 3ff, 2a], [[2b, 3ff, 29], [2b, 29, 3ff]], [28, 28], [28, ff, 3ff, 28, 3ff]))"
    );
    let mut lines = Vec::new();
    for (check, vm) in [(sgis, "SGI"), (priorities, "priority")] {
        let what = format!("GICv{gic} {vm} VM");
        lines.push(check);
        lines.extend(vm_end_lines(&what, ty));
    }
    lines
}

fn conformance_on(gic: u32) {
    assert_conformance(gic, TIMEOUT, "GIC", |ty| lines(gic, ty));
}

#[test]
fn gic_conformance_on_gicv2() {
    conformance_on(2);
}

#[test]
fn gic_conformance_on_gicv3() {
    conformance_on(3);
}
