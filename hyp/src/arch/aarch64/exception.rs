//! The trap frame the vectors build, and the host entry record `enter_host` reads.
//! Both layouts are read by `vectors.S`; the assertions below pin them.

/// The registers of the interrupted context, saved by `vectors.S` on entry.
#[repr(C)]
#[derive(Debug)]
pub struct TrapFrame {
    /// x0..x30; index 31 is padding that keeps the frame 16-byte aligned.
    pub regs: [u64; 32],
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
