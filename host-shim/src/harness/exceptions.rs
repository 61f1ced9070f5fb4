//! EL1 exceptions of the shim (entered from `vectors.S`): its timer tick, and
//! the data aborts of armed probes, which it skips; anything else stops the run.

use crate::harness::arch::ShimFrame;
use crate::harness::probe;
use aarch64_cpu::registers::{Readable, Writeable, ELR_EL1, ESR_EL1, FAR_EL1};

/// EC of a data abort taken without a change of EL.
const EC_DATA_ABORT_SAME_EL: u64 = 0x25;

/// EL1 exception entry (from `vectors.S`).
#[no_mangle]
extern "C" fn shim_exception(_frame: &mut ShimFrame, kind: u64) {
    if kind == 1 {
        crate::harness::gic::handle_irq();
        return;
    }
    let esr = ESR_EL1.get();
    if kind == 0 && (esr >> 26) == EC_DATA_ABORT_SAME_EL && probe::take_abort(esr, FAR_EL1.get()) {
        ELR_EL1.set(ELR_EL1.get() + 4);
        return;
    }
    log::error!(
        "unexpected exception (vector kind {kind}): ESR_EL1 {esr:#x}, ELR_EL1 {:#x}, FAR_EL1 {:#x}",
        ELR_EL1.get(),
        FAR_EL1.get()
    );
    crate::harness::platform::fail_stop()
}
