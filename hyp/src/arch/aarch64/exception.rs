//! The trap frame the vectors build, and the host entry record `enter_host` reads.
//! Both layouts are read by `vectors.S`; the assertions below pin them.

/// The registers of the interrupted context, saved by `vectors.S` on entry.
#[repr(C)]
#[derive(Debug)]
pub struct TrapFrame {
    /// x0..x30 (a host trap saves only x0..x18, x29 and x30: the handler
    /// preserves x19..x28); index 31 holds a new value for one of x19..x28
    /// (see [`TrapFrame::set_x`]).
    pub regs: [u64; 32],
}

/// The frame slot `vectors.S` loads into x19..x28 when a host trap handler asks.
const CALLEE_SAVED_VALUE_SLOT: usize = 31;

/// What a host trap handler returns when it needs the host's x19..x28 (a
/// store from one of them to emulate): the vectors save them into the frame
/// and call `handle_lower_el_exception_full_frame`. Rare, so the fast path
/// never saves them.
pub const NEED_CALLEE_SAVED: u64 = 64;

impl TrapFrame {
    /// Gives the host's register x`n` (n < 31) `value` on return from a host
    /// trap. Returns what `handle_lower_el_exception` must return: 0, or `n`
    /// for x19..x28, which the vectors then load from the frame's spare slot
    /// (they do not save or restore those registers on the fast path).
    pub fn set_x(&mut self, n: usize, value: u64) -> u64 {
        match n {
            19..=28 => {
                self.regs[CALLEE_SAVED_VALUE_SLOT] = value;
                n as u64
            }
            0..=30 => {
                self.regs[n] = value;
                0
            }
            _ => 0,
        }
    }
}

const _: () = {
    assert!(core::mem::size_of::<TrapFrame>() == 256);
    assert!(core::mem::size_of::<TrapFrame>().is_multiple_of(16));
};

/// Which of the four vectors of a group was taken.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum ExceptionKind {
    Synchronous,
    Irq,
    Fiq,
    SError,
}

impl ExceptionKind {
    /// Decodes the `KIND_*` number `vectors.S` passes in x1.
    pub fn from_vector(kind: u64) -> Self {
        match kind {
            0 => ExceptionKind::Synchronous,
            1 => ExceptionKind::Irq,
            2 => ExceptionKind::Fiq,
            _ => ExceptionKind::SError,
        }
    }
}

/// Argument registers the host is entered with (x0..x3), read by `enter_host`.
#[repr(C)]
pub struct HostEntry {
    pub x: [u64; 4],
}

const _: () = assert!(core::mem::size_of::<HostEntry>() == 32);

extern "C" {
    fn enter_host(entry: &HostEntry, trap_stack_top: usize) -> !;
}

/// Drops to the host: SP_EL2 becomes `trap_stack_top`, x0..x3 come from `entry`,
/// every other general register is zeroed, then `eret` to ELR_EL2/SPSR_EL2.
///
/// # Safety
///
/// ELR_EL2, SPSR_EL2, HCR_EL2 and the host stage-2 must be set up, and
/// `trap_stack_top` must be the top of this CPU's mapped trap stack, which nothing
/// else uses: everything on the current stack is abandoned.
pub unsafe fn drop_to_host(entry: &HostEntry, trap_stack_top: usize) -> ! {
    // SAFETY: The caller guarantees the EL2 state for the return; `enter_host` only
    // reads `entry` and never returns.
    unsafe { enter_host(entry, trap_stack_top) }
}
