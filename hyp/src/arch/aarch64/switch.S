/*
 * The world switch: entering a guest with its general registers, coming back
 * when it traps, and saving/restoring FP/SIMD state (the hyp itself never uses
 * FP/SIMD, so only this code touches those registers). The register pair
 * macros are shared with the host shim (asm/aarch64/gpr_frame.S).
 */

.arch_extension fp
.arch_extension simd

.set PERCPU_GUEST_GPRS, {guest_gprs}    /* offset_of!(PerCpu, guest_gprs) */
.set PERCPU_HYP_SP, {hyp_sp}            /* offset_of!(PerCpu, hyp_sp) */
.set FP_FPCR, {fp_fpcr}                 /* offset_of!(FpState, fpcr); fpsr follows */

/* `op` (stp: save, ldp: restore) of q0..q31 as an FpState at `base`. */
.macro fp_pairs op, base
    reg_pair_each \op, \base, q, 16, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31
.endm

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
    fp_pairs stp, x0
    mrs     x1, fpcr
    mrs     x2, fpsr
    add     x3, x0, #FP_FPCR
    stp     x1, x2, [x3]
    ret

/* fpsimd_restore(state: *const FpState) */
.global fpsimd_restore
fpsimd_restore:
    fp_pairs ldp, x0
    add     x3, x0, #FP_FPCR
    ldp     x1, x2, [x3]
    msr     fpcr, x1
    msr     fpsr, x2
    ret
