/*
 * The EL2 exception vector table (VBAR_EL2) and the register save/restore around
 * the Rust trap handlers.
 *
 * Exceptions from a lower EL run on the current SP_EL2: the per-CPU trap stack
 * the host was entered with, or, while a guest runs, the hyp stack below
 * `__guest_enter`'s frame, from where `guest_exit` (switch.S) returns to it. Exceptions taken from EL2 itself are
 * always fatal: they switch to this CPU's emergency stack (its top is the first
 * word of the PerCpu that TPIDR_EL2 points at) without touching the faulting
 * stack, which may be the one that overflowed. The register save/restore
 * macros are shared with the host shim (asm/aarch64/gpr_frame.S).
 */

.set TRAP_FRAME_SIZE, {trap_frame_size}  /* size_of::<TrapFrame>() */
.set FRAME_X30, {frame_x30}              /* offset_of!(TrapFrame, x30) */
.set PERCPU_EMERGENCY_TOP, {emergency_top}  /* offset_of!(PerCpu, emergency_stack_top) */
.set PERCPU_GUEST_GPRS, {guest_gprs}        /* offset_of!(PerCpu, guest_gprs) */
.set NEED_CALLEE_SAVED, {need_callee_saved}  /* exception::NEED_CALLEE_SAVED */

.set KIND_SYNC, 0
.set KIND_IRQ, 1
.set KIND_FIQ, 2
.set KIND_SERROR, 3

/* Saves x0..x30 into a TrapFrame at sp (x0, x1 already saved by the vector stub). */
.macro save_frame_rest
    gpr_pairs stp, sp, 29
    str     x30, [sp, #FRAME_X30]
.endm

/* Saves x2..x18, x29 and x30 (x0, x1 already saved by the vector stub). */
.macro save_frame_caller_saved
    gpr_pairs stp, sp, 17
    str     x18, [sp, #16 * 9]
    stp     x29, x30, [sp, #16 * 14 + 8]
.endm

/* Undoes save_frame_caller_saved and pops the frame. */
.macro restore_frame_caller_saved
    gpr_pairs ldp, sp, 17
    ldr     x18, [sp, #16 * 9]
    ldp     x29, x30, [sp, #16 * 14 + 8]
    ldp     x0, x1, [sp, #16 * 0]
    add     sp, sp, #TRAP_FRAME_SIZE
.endm

/* An exception taken from EL2: move to the emergency stack, save, report, stop. */
.macro vector_from_el2 kind
    .balign 0x80
    msr     sp_el0, x0          /* SP_EL0 is unused at EL2: borrow it as scratch */
    mrs     x0, tpidr_el2       /* this CPU's PerCpu */
    ldr     x0, [x0, #PERCPU_EMERGENCY_TOP]
    sub     x0, x0, #TRAP_FRAME_SIZE
    mov     sp, x0
    mrs     x0, sp_el0
    stp     x0, x1, [sp, #16 * 0]
    mov     x1, #\kind
    b       el2_fatal_common
.endm

/* An exception taken from the host: save its registers on the trap stack. */
.macro vector_from_lower kind
    .balign 0x80
    sub     sp, sp, #TRAP_FRAME_SIZE
    stp     x0, x1, [sp, #16 * 0]
    mov     x1, #\kind
    b       lower_el_common
.endm

.section .text.vectors, "ax"
.balign 0x800
.global hyp_vectors
hyp_vectors:
    /* Current EL with SP_EL0 */
    vector_from_el2 KIND_SYNC
    vector_from_el2 KIND_IRQ
    vector_from_el2 KIND_FIQ
    vector_from_el2 KIND_SERROR
    /* Current EL with SP_ELx */
    vector_from_el2 KIND_SYNC
    vector_from_el2 KIND_IRQ
    vector_from_el2 KIND_FIQ
    vector_from_el2 KIND_SERROR
    /* Lower EL using AArch64 */
    vector_from_lower KIND_SYNC
    vector_from_lower KIND_IRQ
    vector_from_lower KIND_FIQ
    vector_from_lower KIND_SERROR
    /* Lower EL using AArch32 (e.g. a 32-bit EL0 task of the host) */
    vector_from_lower KIND_SYNC
    vector_from_lower KIND_IRQ
    vector_from_lower KIND_FIQ
    vector_from_lower KIND_SERROR

el2_fatal_common:
    save_frame_rest
    mov     x0, sp
    bl      handle_el2_exception    /* never returns */
1:  wfe
    b       1b

/*
 * From a lower EL. A host trap saves only the registers a Rust call may
 * clobber (x0..x18, x29, x30): the handler preserves x19..x28 (AAPCS64) and
 * reads no host argument from them. A guest trap saves all of x0..x30 straight
 * into its vCPU's Gprs (they all belong to the vCPU), then leaves through
 * guest_exit.
 */
lower_el_common:
    mrs     x0, tpidr_el2
    ldr     x0, [x0, #PERCPU_GUEST_GPRS]
    cbnz    x0, guest_trap
    save_frame_caller_saved
    mov     x0, sp
    bl      handle_lower_el_exception
    cbnz    x0, host_set_callee_saved
host_return:
    restore_frame_caller_saved
    eret

/*
 * The handler returned n (19..28): the host's xn gets the value the handler
 * left in the frame's spare slot (x19..x28 are not in the frame: the handler
 * preserved the host's values, so only xn changes).
 */
host_set_callee_saved:
    cmp     x0, #NEED_CALLEE_SAVED
    b.eq    host_save_callee_saved
    ldr     x1, [sp, #8 * 31]
    sub     x0, x0, #19
    adr     x2, 1f
    add     x2, x2, x0, lsl #3
    br      x2
1:  mov     x19, x1
    b       host_return
    mov     x20, x1
    b       host_return
    mov     x21, x1
    b       host_return
    mov     x22, x1
    b       host_return
    mov     x23, x1
    b       host_return
    mov     x24, x1
    b       host_return
    mov     x25, x1
    b       host_return
    mov     x26, x1
    b       host_return
    mov     x27, x1
    b       host_return
    mov     x28, x1
    b       host_return

/*
 * The handler returned NEED_CALLEE_SAVED: it must read one of the host's
 * x19..x28, which still hold the host's values (the handler preserved them).
 * Store them into the frame and handle the exception again with the full frame.
 */
host_save_callee_saved:
    stp     x19, x20, [sp, #8 * 19]
    stp     x21, x22, [sp, #8 * 21]
    stp     x23, x24, [sp, #8 * 23]
    stp     x25, x26, [sp, #8 * 25]
    stp     x27, x28, [sp, #8 * 27]
    mov     x0, sp
    bl      handle_lower_el_exception_full_frame
    cbnz    x0, host_set_callee_saved
    b       host_return

/* x0 = the running vCPU's Gprs; the guest's x0, x1 are in the frame at sp. */
guest_trap:
    gpr_pairs stp, x0, 29
    str     x30, [x0, #16 * 15]
    ldp     x2, x3, [sp, #16 * 0]
    stp     x2, x3, [x0, #16 * 0]
    mrs     x2, tpidr_el2
    b       guest_exit

/*
 * enter_host(entry: &HostEntry, trap_stack_top: usize) -> !
 * Resets SP_EL2 to the trap stack, loads x0..x3 and ERETs to the host.
 * HostEntry layout: x0..x3 at 0, 8, 16, 24 (asserted in Rust).
 */
.global enter_host
enter_host:
    mov     sp, x1
    ldp     x2, x3, [x0, #16]
    ldr     x1, [x0, #8]
    ldr     x0, [x0, #0]
    mov     x4, xzr
    mov     x5, xzr
    mov     x6, xzr
    mov     x7, xzr
    mov     x8, xzr
    mov     x9, xzr
    mov     x10, xzr
    mov     x11, xzr
    mov     x12, xzr
    mov     x13, xzr
    mov     x14, xzr
    mov     x15, xzr
    mov     x16, xzr
    mov     x17, xzr
    mov     x18, xzr
    mov     x19, xzr
    mov     x20, xzr
    mov     x21, xzr
    mov     x22, xzr
    mov     x23, xzr
    mov     x24, xzr
    mov     x25, xzr
    mov     x26, xzr
    mov     x27, xzr
    mov     x28, xzr
    mov     x29, xzr
    mov     x30, xzr
    eret
