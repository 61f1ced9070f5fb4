/*
 * hvc_register_probe(function: u64, out: *mut [u64; 31])
 *
 * Makes one `HVC #0` call with x1..x3 zero and x4..x30 holding a pattern
 * (0x5a5a_0000_0000_00nn for xnn), then stores x0..x30 as the hyp left them in
 * `out`. The check compares: a hypercall returns results in x0..x3 and must
 * leave every other register as it was (SMCCC 1.1 and later; AAPCS64's
 * callee-saved x19..x29 in particular).
 */
.section .text.register_probe, "ax"
.global hvc_register_probe
hvc_register_probe:
    stp     x29, x30, [sp, #-112]!
    stp     x19, x20, [sp, #16]
    stp     x21, x22, [sp, #32]
    stp     x23, x24, [sp, #48]
    stp     x25, x26, [sp, #64]
    stp     x27, x28, [sp, #80]
    stp     x18, x1, [sp, #96]      /* x18 in case the platform owns it; out */
    mov     x1, xzr
    mov     x2, xzr
    mov     x3, xzr
    .irp    n, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30
    movz    x\n, #\n
    movk    x\n, #0x5a5a, lsl #48
    .endr
    hvc     #0
    stp     x0, x1, [sp, #-16]!     /* results x0, x1 while x0 takes `out` */
    ldr     x0, [sp, #16 + 104]
    gpr_pairs stp, x0, 29
    str     x30, [x0, #16 * 15]
    ldp     x2, x3, [sp], #16
    stp     x2, x3, [x0, #16 * 0]
    ldr     x18, [sp, #96]
    ldp     x19, x20, [sp, #16]
    ldp     x21, x22, [sp, #32]
    ldp     x23, x24, [sp, #48]
    ldp     x25, x26, [sp, #64]
    ldp     x27, x28, [sp, #80]
    ldp     x29, x30, [sp], #112
    ret

/*
 * id_register_probe(out: *mut [u64; 4])
 *
 * Reads ID_AA64PFR0_EL1 (trapped by the hyp, HCR_EL2.TID3) into x2, x19 and
 * x28 with x20 patterned, and stores x2, x19, x28, x20 in `out`: the hyp's
 * answer must reach any register, x19..x28 included (its trap path does not
 * save those), and leave the others alone.
 */
.global id_register_probe
id_register_probe:
    stp     x19, x20, [sp, #-32]!
    str     x28, [sp, #16]
    mov     x19, xzr
    mov     x28, xzr
    movz    x20, #20
    movk    x20, #0x5a5a, lsl #48
    mrs     x2, id_aa64pfr0_el1
    mrs     x19, id_aa64pfr0_el1
    mrs     x28, id_aa64pfr0_el1
    stp     x2, x19, [x0]
    stp     x28, x20, [x0, #16]
    ldr     x28, [sp, #16]
    ldp     x19, x20, [sp], #32
    ret
