/*
 * Entry of the hyp Image: the Linux arm64 Image header, self-relocation, bss
 * clearing, the boot stack, and the hand-off to Rust; and the entry of the
 * secondary CPUs, which the hyp starts through PSCI CPU_ON.
 *
 * Entered with the MMU and D-cache off, x0 = physical address of the device tree
 * (Linux arm64 boot protocol), at EL2, or at EL1 on a machine without EL2.
 * The header, relocation and bss macros are the host shim's too
 * (asm/aarch64/image_entry.S).
 */

.set CURRENT_EL_EL2, 2 << 2     /* CurrentEL.EL (bits 3:2) when at EL2 */
.set IMAGE_FLAGS, 0xa           /* LE, 4 KiB pages (bits 2:1 = 1), any base (bit 3) */
.set CPTR_EL2_NO_FP_TRAP, 0x33ff /* nVHE RES1 bits, TFP (10) clear: FP/SIMD is the host's */
.set PERCPU_TRAP_STACK_TOP, {trap_stack_top}  /* offset_of!(PerCpu, trap_stack_top) */
.set PERCPU_BOOT_MMU, {boot_mmu}              /* offset_of!(PerCpu, boot_mmu): mair, tcr, ttbr0, sctlr */

.section .text.head, "ax"
.global _start
_start:
    /* res3: the sealed size, the Image file's bytes; res4: their checksum,
       written by scripts/build-image (hyp_abi::image_seal). */
    image_header primary_entry, IMAGE_FLAGS, __image_file_size, 0

primary_entry:
    mov     x19, x0             /* x19 = device tree, kept across the calls below */
    adr     x20, _start         /* x20 = load address (the image is linked at 0) */

    /* Check the Image's seal before anything reads past its first pages. */
    adr_l   x9, __boot_stack_top
    mov     sp, x9
    mov     x1, x20
    bl      image_check         /* image_check.S: returns only for an intact Image */

    apply_relocations x20, bad_relocation
    clear_bss
    adr_l   x9, __boot_stack_top
    mov     sp, x9
    mov     x29, xzr
    mov     x30, xzr

    mrs     x9, CurrentEL
    cmp     x9, #CURRENT_EL_EL2
    b.ne    not_at_el2

    /*
     * The reset value of CPTR_EL2 is UNKNOWN: let the host use FP/SIMD. The hyp
     * itself is built without FP/SIMD (softfloat target) and never touches them.
     */
    mov     x9, #CPTR_EL2_NO_FP_TRAP
    msr     cptr_el2, x9
    /*
     * Until the boot CPU has its PerCpu, TPIDR_EL2 points at a stand-in whose
     * first word (the emergency stack top) is the top of the boot stack.
     */
    adr_l   x10, early_percpu
    mov     x9, sp
    str     x9, [x10]
    msr     tpidr_el2, x10
    isb

    adr_l   x9, hyp_vectors
    msr     vbar_el2, x9
    isb
    mov     x0, x19
    mov     x1, x20
    bl      hyp_boot_primary    /* never returns */
    b       park

not_at_el2:
    mov     x0, x19
    bl      boot_not_at_el2     /* prints why and powers off; never returns */
    b       park

/*
 * A secondary CPU, started by the firmware at the hyp's request (cpus.rs), at
 * EL2 with the MMU and caches off; x0 = its PerCpu (physical address, which the
 * EL2 stage-1 maps at the same address). Nothing is written before the MMU is
 * on: the PerCpu was cleaned to memory for this read.
 */
.global secondary_entry
secondary_entry:
    mov     x19, x0
    mrs     x9, CurrentEL
    cmp     x9, #CURRENT_EL_EL2
    b.ne    park
    mov     x9, #CPTR_EL2_NO_FP_TRAP
    msr     cptr_el2, x9
    msr     tpidr_el2, x19
    adr_l   x9, hyp_vectors
    msr     vbar_el2, x9
    ldp     x9, x10, [x19, #PERCPU_BOOT_MMU]
    ldp     x11, x12, [x19, #PERCPU_BOOT_MMU + 16]
    msr     mair_el2, x9
    msr     tcr_el2, x10
    msr     ttbr0_el2, x11
    dsb     ish
    tlbi    alle2
    dsb     ish
    isb
    ic      iallu
    dsb     ish
    msr     sctlr_el2, x12
    isb
    ldr     x9, [x19, #PERCPU_TRAP_STACK_TOP]
    mov     sp, x9
    mov     x29, xzr
    mov     x30, xzr
    mov     x0, x19
    bl      hyp_boot_secondary  /* never returns */
    b       park

.section .bss.early_percpu, "aw", %nobits
.balign 16
early_percpu:
    .skip   16

.section .text.head, "ax"
bad_relocation:
    /* The build checks that only RELATIVE relocations exist; nothing can print yet. */
park:
    wfe
    b       park
