/*
 * EL1 exception vectors of the host shim. Every exception saves x0..x30 on the
 * current stack and calls `shim_exception(frame, kind)`; if that returns, the
 * registers are restored and execution resumes at ELR_EL1 (which the handler may
 * have moved past a faulting instruction). The save and restore macros are the
 * hyp's too (asm/aarch64/gpr_frame.S).
 */

.set FRAME_SIZE, 256    /* x0..x30 and one pad word: size_of::<ShimFrame>() */

.macro vector kind
    .balign 0x80
    sub     sp, sp, #FRAME_SIZE
    stp     x0, x1, [sp, #0]
    mov     x1, #\kind
    b       common
.endm

.section .text.vectors, "ax"
.balign 0x800
.global shim_vectors
shim_vectors:
    .rept 4
    vector 0
    vector 1
    vector 2
    vector 3
    .endr

common:
    gpr_pairs stp, sp, 29
    str     x30, [sp, #16 * 15]
    mov     x0, sp
    bl      shim_exception
    gpr_pairs ldp, sp, 29
    ldr     x30, [sp, #16 * 15]
    ldp     x0, x1, [sp, #0]
    add     sp, sp, #FRAME_SIZE
    eret
