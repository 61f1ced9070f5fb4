//! The lazy switch of the debug registers around a guest's run (the rules are
//! `arch::debug`'s): the host's breakpoint and watchpoint registers are saved
//! and the guest's loaded either at entry (its MDSCR_EL1 enables debug) or at
//! its first trapped access to a debug register (MDCR_EL2.TDA, which is then
//! cleared for the rest of the run); at the end of such a run the guest's go
//! back to its context and the host's are restored. A run that never touches
//! them (every exit of a guest that does not debug) costs a test of MDSCR_EL1
//! at entry, one of the exception class per trap and one at the exit.
//!
//! While the guest's registers are loaded the host's wait in the vCPU's
//! context (`VcpuContext::host_debug`: hyp memory, which neither the host nor
//! the guest can read), so that a protected guest's registers never reach
//! memory the host can read and the host's never stay in the CPU for the
//! guest. (Kept there rather than on the world switch's stack: 520 bytes
//! more of stack frame cost every run about 30 instructions of spills.)

use crate::arch::context::VcpuContext;
use crate::arch::debug::{access_loads_guest_state, in_use, DebugCounts, DebugRegs, MAX_POINTS};
use crate::arch::sysreg::SysRegAccess;
use core::arch::asm;

/// MDCR_EL2.TDA (9): the guest's accesses to the debug registers trap.
pub const MDCR_TDA: u64 = 1 << 9;

/// The accessors of breakpoint and watchpoint `n` (value and control
/// register together; `n` below the CPU's count, which the callers keep).
macro_rules! point_registers {
    ($($n:literal),*) => {
        fn read_breakpoint(n: usize) -> (u64, u64) {
            let (value, control): (u64, u64);
            match n {
                $(
                    // SAFETY: Reading a debug register at EL2 has no side effect.
                    $n => unsafe {
                        asm!(
                            concat!("mrs {}, dbgbvr", $n, "_el1"),
                            concat!("mrs {}, dbgbcr", $n, "_el1"),
                            out(reg) value, out(reg) control, options(nomem, nostack, preserves_flags),
                        )
                    },
                )*
                _ => {
                    value = 0;
                    control = 0;
                }
            }
            (value, control)
        }

        fn read_watchpoint(n: usize) -> (u64, u64) {
            let (value, control): (u64, u64);
            match n {
                $(
                    // SAFETY: Reading a debug register at EL2 has no side effect.
                    $n => unsafe {
                        asm!(
                            concat!("mrs {}, dbgwvr", $n, "_el1"),
                            concat!("mrs {}, dbgwcr", $n, "_el1"),
                            out(reg) value, out(reg) control, options(nomem, nostack, preserves_flags),
                        )
                    },
                )*
                _ => {
                    value = 0;
                    control = 0;
                }
            }
            (value, control)
        }

        fn write_breakpoint(n: usize, value: u64, control: u64) {
            match n {
                $(
                    // SAFETY: The registers belong to the debug state being
                    // switched (the host's or the guest's, which the world
                    // switch puts back); EL2 takes no debug exception from
                    // them (the debug target is EL1).
                    $n => unsafe {
                        asm!(
                            concat!("msr dbgbvr", $n, "_el1, {}"),
                            concat!("msr dbgbcr", $n, "_el1, {}"),
                            in(reg) value, in(reg) control, options(nomem, nostack, preserves_flags),
                        )
                    },
                )*
                _ => {}
            }
        }

        fn write_watchpoint(n: usize, value: u64, control: u64) {
            match n {
                $(
                    // SAFETY: As for the breakpoints.
                    $n => unsafe {
                        asm!(
                            concat!("msr dbgwvr", $n, "_el1, {}"),
                            concat!("msr dbgwcr", $n, "_el1, {}"),
                            in(reg) value, in(reg) control, options(nomem, nostack, preserves_flags),
                        )
                    },
                )*
                _ => {}
            }
        }
    };
}

point_registers!(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);

/// The CPU's debug registers (those it has; the rest read as zero).
fn save(counts: DebugCounts) -> DebugRegs {
    let mut regs = DebugRegs::default();
    for n in 0..counts.breakpoints.min(MAX_POINTS) {
        (regs.bvr[n], regs.bcr[n]) = read_breakpoint(n);
    }
    for n in 0..counts.watchpoints.min(MAX_POINTS) {
        (regs.wvr[n], regs.wcr[n]) = read_watchpoint(n);
    }
    // SAFETY: Reading MDCCINT_EL1 at EL2 has no side effect.
    unsafe { asm!("mrs {}, mdccint_el1", out(reg) regs.mdccint, options(nomem, nostack, preserves_flags)) };
    regs
}

/// Loads `regs` into the CPU's debug registers.
fn restore(regs: &DebugRegs, counts: DebugCounts) {
    for n in 0..counts.breakpoints.min(MAX_POINTS) {
        write_breakpoint(n, regs.bvr[n], regs.bcr[n]);
    }
    for n in 0..counts.watchpoints.min(MAX_POINTS) {
        write_watchpoint(n, regs.wvr[n], regs.wcr[n]);
    }
    // SAFETY: As for the breakpoints: MDCCINT_EL1 is part of the state switched.
    unsafe { asm!("msr mdccint_el1, {}", in(reg) regs.mdccint, options(nomem, nostack, preserves_flags)) };
}

/// The breakpoints and watchpoints of this machine's CPUs.
fn counts() -> DebugCounts {
    super::host_regs::controls().debug
}

/// Saves the host's debug registers (into `ctx.host_debug`) and loads the guest's.
#[cold]
#[inline(never)]
fn switch_in(ctx: &mut VcpuContext) {
    let counts = counts();
    ctx.host_debug = save(counts);
    restore(&ctx.debug, counts);
}

/// At entry: loads the guest's debug registers if its MDSCR_EL1 enables
/// debug; whether it did.
#[inline(always)]
pub fn enter(ctx: &mut VcpuContext) -> bool {
    let loaded = in_use(ctx.sysregs.mdscr);
    if loaded {
        switch_in(ctx);
    }
    loaded
}

/// MDCR_EL2 `mdcr` (with TDA) for the guest: without TDA if its debug
/// registers are `loaded`.
#[inline(always)]
pub fn guest_mdcr(mdcr: u64, loaded: bool) -> u64 {
    if loaded {
        mdcr & !MDCR_TDA
    } else {
        mdcr
    }
}

/// ESR_EL2 exception class of a trapped MSR/MRS: the only traps the caller
/// passes to [`load_on_access`] (the test stays in the hot loop, the rest of
/// the work out of it).
pub const EC_SYSREG: u64 = 0x18;

/// A trapped MSR/MRS with syndrome `esr`: if the guest's debug registers
/// are not `loaded` yet and it is an access (TDA) to one the CPU has, loads
/// them, stops the trapping (MDCR_EL2.TDA cleared) and returns true (they
/// are loaded now): the guest retries the instruction, which then reaches
/// the register itself.
#[cold]
#[inline(never)]
pub fn load_on_access(esr: u64, ctx: &mut VcpuContext, loaded: bool) -> bool {
    let access = SysRegAccess::decode(esr as u32 & 0x1ff_ffff);
    if loaded || !access_loads_guest_state(access.reg, counts()) {
        return false;
    }
    switch_in(ctx);
    // SAFETY: Only the guest's debug traps change (the world switch puts the
    // host's MDCR_EL2 back at the exit); the ERET back to the guest
    // synchronises the write.
    unsafe {
        asm!(
            "mrs {t}, mdcr_el2",
            "bic {t}, {t}, #{tda}",
            "msr mdcr_el2, {t}",
            t = out(reg) _,
            tda = const MDCR_TDA,
            options(nomem, nostack, preserves_flags),
        )
    };
    true
}

/// At the end of a run in which the guest's registers were loaded: they go
/// back to `ctx.debug` and the host's are restored.
#[cold]
#[inline(never)]
pub fn exit(ctx: &mut VcpuContext) {
    let counts = counts();
    ctx.debug = save(counts);
    restore(&ctx.host_debug, counts);
}
