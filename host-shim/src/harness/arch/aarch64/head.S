/*
 * Entry of the host shim Image: Linux arm64 Image header, self-relocation, bss,
 * stack, EL1 vectors, then Rust. Entered at EL1 with the MMU off and
 * x0 = device tree, exactly as a Linux kernel would be. The header,
 * relocation and bss macros are the hyp's too (asm/aarch64/image_entry.S).
 */

.set IMAGE_FLAGS, 0xa           /* LE, 4 KiB pages, any 2 MiB-aligned base */
.set CPACR_EL1_FPEN, 3 << 20    /* FP/SIMD usable at EL1 (Rust code uses SIMD) */

/* FP/SIMD on and the shim's vectors in, as every CPU needs before Rust. Uses x9. */
.macro el1_cpu_setup
    mov     x9, #CPACR_EL1_FPEN
    msr     cpacr_el1, x9
    adr_l   x9, shim_vectors
    msr     vbar_el1, x9
    isb
.endm

.section .text.head, "ax"
.global _start
_start:
    image_header entry, IMAGE_FLAGS

entry:
    mrs     x21, cntpct_el0     /* when the shim started, for the benchmarks */
    mov     x19, x0
    adr     x20, _start
    apply_relocations x20, park
    clear_bss
    adr_l   x9, __boot_stack_top
    mov     sp, x9
    el1_cpu_setup
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
    el1_cpu_setup
    mov     x29, xzr
    mov     x30, xzr
    bl      shim_secondary_main /* never returns */
    b       park
