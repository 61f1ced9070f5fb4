/*
 * The world switch: entering a guest with its general registers, coming back
 * when it traps, and saving/restoring FP/SIMD state (the hyp itself never uses
 * FP/SIMD, so only this code touches those registers). The register load
 * macro is shared with the host shim (asm/aarch64/gpr_frame.S).
 */

.arch_extension fp
.arch_extension simd

.set PERCPU_GUEST_GPRS, {guest_gprs}    /* offset_of!(PerCpu, guest_gprs) */
.set PERCPU_HYP_SP, {hyp_sp}            /* offset_of!(PerCpu, hyp_sp) */
.set FP_FPCR, {fp_fpcr}                 /* offset_of!(FpState, fpcr); fpsr follows */

.section .text.switch, "ax"

/*
 * u64 __guest_enter(gprs: *mut Gprs)
 * ELR_EL2, SPSR_EL2, VTTBR_EL2, HCR_EL2 and the guest's EL1 state are set.
 * Returns the vector kind of the trap that ended the run, with the guest's
 * x0..x30 saved in *gprs.
 */
.global __guest_enter
__guest_enter:
    stp     x29, x30, [sp, #-16]!
    stp     x27, x28, [sp, #-16]!
    stp     x25, x26, [sp, #-16]!
    stp     x23, x24, [sp, #-16]!
    stp     x21, x22, [sp, #-16]!
    stp     x19, x20, [sp, #-16]!
    mrs     x1, tpidr_el2
    mov     x2, sp
    str     x2, [x1, #PERCPU_HYP_SP]
    str     x0, [x1, #PERCPU_GUEST_GPRS]
    gpr_pairs ldp, x0, 29
    ldr     x30, [x0, #16 * 15]
    ldp     x0, x1, [x0, #16 * 0]
    eret

/*
 * From vectors.S: the guest's x0..x30 are saved in its vCPU's Gprs, x1 = the
 * vector kind, x2 = this CPU's PerCpu. The trap frame the vector pushed is
 * dropped with the rest of the guest-time stack when sp is reset below.
 */
.global guest_exit
guest_exit:
    str     xzr, [x2, #PERCPU_GUEST_GPRS]
    ldr     x4, [x2, #PERCPU_HYP_SP]
    mov     sp, x4
    mov     x0, x1
    ldp     x19, x20, [sp], #16
    ldp     x21, x22, [sp], #16
    ldp     x23, x24, [sp], #16
    ldp     x25, x26, [sp], #16
    ldp     x27, x28, [sp], #16
    ldp     x29, x30, [sp], #16
    ret

/* fpsimd_save(state: *mut FpState) */
.global fpsimd_save
fpsimd_save:
    stp     q0, q1, [x0, #32 * 0]
    stp     q2, q3, [x0, #32 * 1]
    stp     q4, q5, [x0, #32 * 2]
    stp     q6, q7, [x0, #32 * 3]
    stp     q8, q9, [x0, #32 * 4]
    stp     q10, q11, [x0, #32 * 5]
    stp     q12, q13, [x0, #32 * 6]
    stp     q14, q15, [x0, #32 * 7]
    stp     q16, q17, [x0, #32 * 8]
    stp     q18, q19, [x0, #32 * 9]
    stp     q20, q21, [x0, #32 * 10]
    stp     q22, q23, [x0, #32 * 11]
    stp     q24, q25, [x0, #32 * 12]
    stp     q26, q27, [x0, #32 * 13]
    stp     q28, q29, [x0, #32 * 14]
    stp     q30, q31, [x0, #32 * 15]
    mrs     x1, fpcr
    mrs     x2, fpsr
    add     x3, x0, #FP_FPCR
    stp     x1, x2, [x3]
    ret

/* fpsimd_restore(state: *const FpState) */
.global fpsimd_restore
fpsimd_restore:
    ldp     q0, q1, [x0, #32 * 0]
    ldp     q2, q3, [x0, #32 * 1]
    ldp     q4, q5, [x0, #32 * 2]
    ldp     q6, q7, [x0, #32 * 3]
    ldp     q8, q9, [x0, #32 * 4]
    ldp     q10, q11, [x0, #32 * 5]
    ldp     q12, q13, [x0, #32 * 6]
    ldp     q14, q15, [x0, #32 * 7]
    ldp     q16, q17, [x0, #32 * 8]
    ldp     q18, q19, [x0, #32 * 9]
    ldp     q20, q21, [x0, #32 * 10]
    ldp     q22, q23, [x0, #32 * 11]
    ldp     q24, q25, [x0, #32 * 12]
    ldp     q26, q27, [x0, #32 * 13]
    ldp     q28, q29, [x0, #32 * 14]
    ldp     q30, q31, [x0, #32 * 15]
    add     x3, x0, #FP_FPCR
    ldp     x1, x2, [x3]
    msr     fpcr, x1
    msr     fpsr, x2
    ret
