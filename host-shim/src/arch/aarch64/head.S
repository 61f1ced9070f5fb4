/*
 * Entry of the host shim Image: Linux arm64 Image header, self-relocation, bss,
 * stack, EL1 vectors, then Rust. Entered at EL1 with the MMU off and
 * x0 = device tree, exactly as a Linux kernel would be.
 */

.set R_AARCH64_RELATIVE, 1027   /* the only relocation type of our PIE */
.set IMAGE_FLAGS, 0xa           /* LE, 4 KiB pages, any 2 MiB-aligned base */
.set CPACR_EL1_FPEN, 3 << 20    /* FP/SIMD usable at EL1 (Rust code uses SIMD) */

.section .text.head, "ax"
.global _start
_start:
    b       entry               /* code0 */
    .long   0                   /* code1 */
    .quad   0                   /* text_offset */
    .quad   __image_size        /* image_size, bss and stack included */
    .quad   IMAGE_FLAGS
    .quad   0
    .quad   0
    .quad   0
    .ascii  "ARM\x64"
    .long   0

entry:
    mrs     x21, cntpct_el0     /* when the shim started, for the benchmarks */
    mov     x19, x0
    adr     x20, _start

    adrp    x9, __rela_start
    add     x9, x9, :lo12:__rela_start
    adrp    x10, __rela_end
    add     x10, x10, :lo12:__rela_end
1:  cmp     x9, x10
    b.hs    3f
    ldp     x11, x12, [x9], #16
    ldr     x13, [x9], #8
    cmp     w12, #R_AARCH64_RELATIVE
    b.ne    park
    add     x13, x13, x20
    str     x13, [x20, x11]
    b       1b
3:
    adrp    x9, __bss_start
    add     x9, x9, :lo12:__bss_start
    adrp    x10, __bss_end
    add     x10, x10, :lo12:__bss_end
4:  cmp     x9, x10
    b.hs    5f
    stp     xzr, xzr, [x9], #16
    b       4b
5:
    adrp    x9, __boot_stack_top
    add     x9, x9, :lo12:__boot_stack_top
    mov     sp, x9
    mov     x9, #CPACR_EL1_FPEN
    msr     cpacr_el1, x9
    adrp    x9, shim_vectors
    add     x9, x9, :lo12:shim_vectors
    msr     vbar_el1, x9
    isb
    mov     x0, x19
    mov     x1, x21
    bl      shim_main
park:
    wfe
    b       park

/*
 * A secondary CPU, started by the shim with PSCI CPU_ON (the hyp enters it
 * here at EL1, MMU off), x0 = its mailbox, whose first word is its stack top.
 */
.global secondary_entry
secondary_entry:
    ldr     x9, [x0]
    mov     sp, x9
    mov     x9, #CPACR_EL1_FPEN
    msr     cpacr_el1, x9
    adrp    x9, shim_vectors
    add     x9, x9, :lo12:shim_vectors
    msr     vbar_el1, x9
    isb
    mov     x29, xzr
    mov     x30, xzr
    bl      shim_secondary_main /* never returns */
    b       park
