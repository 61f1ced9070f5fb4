/*
 * fp_hvc_probe(function, x1, x2, x3, x4, seed, out: *mut [u64; 5])
 *
 * Makes one `HVC #0` call (x0 = function, x1..x4 as given) with V0..V31,
 * FPCR and FPSR holding a pattern of `seed` (Vn: low half seed + n, high half its complement;
 * FPCR.RMode from seed bits 1:0 with DN set; FPSR's cumulative flags from
 * seed bits 4:0 with QC set), then stores x0..x3 as the hyp returned them and
 * a mask of what changed (bit n: Vn, bit 32 FPCR, bit 33 FPSR) in `out`. The
 * FP/SIMD state is the host's own: a guest run in between (VCPU_RUN) must not
 * change it. The callee-saved D8..D15, FPCR and FPSR are restored on return.
 */
.section .text.fp_probe, "ax"
.global fp_hvc_probe
fp_hvc_probe:
    stp     x29, x30, [sp, #-128]!
    stp     d8, d9, [sp, #16]
    stp     d10, d11, [sp, #32]
    stp     d12, d13, [sp, #48]
    stp     d14, d15, [sp, #64]
    stp     x19, x20, [sp, #80]
    mrs     x9, fpcr
    mrs     x10, fpsr
    stp     x9, x10, [sp, #96]
    str     x6, [sp, #112]
    mov     x19, x5
    .irp    n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    add     x9, x19, #\n
    fmov    d\n, x9
    mvn     x9, x9
    mov     v\n\().d[1], x9
    .endr
    and     x9, x19, #3
    lsl     x9, x9, #22
    orr     x9, x9, #(1 << 25)
    msr     fpcr, x9
    and     x9, x19, #0x1f
    orr     x9, x9, #(1 << 27)
    msr     fpsr, x9
    hvc     #0
    ldr     x20, [sp, #112]
    stp     x0, x1, [x20]
    stp     x2, x3, [x20, #16]
    mov     x0, xzr
    .irp    n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    add     x9, x19, #\n
    fmov    x10, d\n
    eor     x10, x10, x9
    mov     x11, v\n\().d[1]
    eon     x11, x11, x9
    orr     x10, x10, x11
    cmp     x10, #0
    cset    x10, ne
    orr     x0, x0, x10, lsl #\n
    .endr
    and     x9, x19, #3
    lsl     x9, x9, #22
    orr     x9, x9, #(1 << 25)
    mrs     x10, fpcr
    cmp     x10, x9
    cset    x10, ne
    orr     x0, x0, x10, lsl #32
    and     x9, x19, #0x1f
    orr     x9, x9, #(1 << 27)
    mrs     x10, fpsr
    cmp     x10, x9
    cset    x10, ne
    orr     x0, x0, x10, lsl #33
    str     x0, [x20, #32]
    ldp     x9, x10, [sp, #96]
    msr     fpcr, x9
    msr     fpsr, x10
    ldp     x19, x20, [sp, #80]
    ldp     d14, d15, [sp, #64]
    ldp     d12, d13, [sp, #48]
    ldp     d10, d11, [sp, #32]
    ldp     d8, d9, [sp, #16]
    ldp     x29, x30, [sp], #128
    ret
