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

/*
 * el1_save(regs: *mut El1Sysregs): the EL1 registers a world switch moves,
 * read into `regs` (in El1Sysregs' field order, two per store).
 */
.global el1_save
el1_save:
    mrs     x1, sctlr_el1
    mrs     x2, ttbr0_el1
    stp     x1, x2, [x0, #0]
    mrs     x1, ttbr1_el1
    mrs     x2, tcr_el1
    stp     x1, x2, [x0, #16]
    mrs     x1, mair_el1
    mrs     x2, amair_el1
    stp     x1, x2, [x0, #32]
    mrs     x1, vbar_el1
    mrs     x2, contextidr_el1
    stp     x1, x2, [x0, #48]
    mrs     x1, tpidr_el0
    mrs     x2, tpidrro_el0
    stp     x1, x2, [x0, #64]
    mrs     x1, tpidr_el1
    mrs     x2, sp_el0
    stp     x1, x2, [x0, #80]
    mrs     x1, sp_el1
    mrs     x2, elr_el1
    stp     x1, x2, [x0, #96]
    mrs     x1, spsr_el1
    mrs     x2, esr_el1
    stp     x1, x2, [x0, #112]
    mrs     x1, far_el1
    mrs     x2, afsr0_el1
    stp     x1, x2, [x0, #128]
    mrs     x1, afsr1_el1
    mrs     x2, par_el1
    stp     x1, x2, [x0, #144]
    mrs     x1, cpacr_el1
    mrs     x2, cntkctl_el1
    stp     x1, x2, [x0, #160]
    mrs     x1, csselr_el1
    mrs     x2, mdscr_el1
    stp     x1, x2, [x0, #176]
    mrs     x1, cntv_ctl_el0
    mrs     x2, cntv_cval_el0
    stp     x1, x2, [x0, #192]
    ret

/*
 * el1_restore(regs: *const El1Sysregs): the reverse. The virtual timer's
 * compare value is written before its control, so that it never fires on a
 * stale value. The caller synchronises (ISB or ERET).
 */
.global el1_restore
el1_restore:
    ldp     x1, x2, [x0, #0]
    msr     sctlr_el1, x1
    msr     ttbr0_el1, x2
    ldp     x1, x2, [x0, #16]
    msr     ttbr1_el1, x1
    msr     tcr_el1, x2
    ldp     x1, x2, [x0, #32]
    msr     mair_el1, x1
    msr     amair_el1, x2
    ldp     x1, x2, [x0, #48]
    msr     vbar_el1, x1
    msr     contextidr_el1, x2
    ldp     x1, x2, [x0, #64]
    msr     tpidr_el0, x1
    msr     tpidrro_el0, x2
    ldp     x1, x2, [x0, #80]
    msr     tpidr_el1, x1
    msr     sp_el0, x2
    ldp     x1, x2, [x0, #96]
    msr     sp_el1, x1
    msr     elr_el1, x2
    ldp     x1, x2, [x0, #112]
    msr     spsr_el1, x1
    msr     esr_el1, x2
    ldp     x1, x2, [x0, #128]
    msr     far_el1, x1
    msr     afsr0_el1, x2
    ldp     x1, x2, [x0, #144]
    msr     afsr1_el1, x1
    msr     par_el1, x2
    ldp     x1, x2, [x0, #160]
    msr     cpacr_el1, x1
    msr     cntkctl_el1, x2
    ldp     x1, x2, [x0, #176]
    msr     csselr_el1, x1
    msr     mdscr_el1, x2
    ldp     x1, x2, [x0, #192]
    msr     cntv_cval_el0, x2
    msr     cntv_ctl_el0, x1
    ret
