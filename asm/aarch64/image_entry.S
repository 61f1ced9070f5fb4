/*
 * What both images do first, entered by a loader as a Linux arm64 Image with
 * the MMU off: the Image header, the self-relocation of a PIE linked at 0,
 * clearing bss. Shared by the hyp's and the host shim's head.S; each macro
 * expands to exactly the instructions it replaced. Each head.S includes this
 * file once.
 */

.set R_AARCH64_RELATIVE, 1027   /* the only relocation type a PIE of ours contains */

/* reg = the address of `symbol` (PC-relative, +-4 GiB). */
.macro adr_l reg, symbol
    adrp    \reg, \symbol
    add     \reg, \reg, :lo12:\symbol
.endm

/*
 * The 64-byte arm64 Image header (Documentation/arch/arm64/booting.rst),
 * whose first instruction branches to `entry`. `res3` and `res4` carry the
 * hyp's seal (its file size and checksum: hyp_abi::image_seal).
 */
.macro image_header entry, flags, res3=0, res4=0
    b       \entry              /* code0 */
    .long   0                   /* code1 */
    .quad   0                   /* text_offset: load at a 2 MiB-aligned base + 0 */
    .quad   __image_size        /* image_size: bss and boot stack included */
    .quad   \flags              /* flags */
    .quad   0                   /* res2 */
    .quad   \res3               /* res3 */
    .quad   \res4               /* res4 */
    .ascii  "ARM\x64"           /* magic */
    .long   0                   /* res5 */
.endm

/*
 * Applies the R_AARCH64_RELATIVE relocations between __rela_start and
 * __rela_end, *(base + offset) = base + addend, with `base` the register
 * holding the load address; any other type branches to `bad`. Uses x9..x13.
 */
.macro apply_relocations base, bad
    adr_l   x9, __rela_start
    adr_l   x10, __rela_end
.Lrelocate\@:
    cmp     x9, x10
    b.hs    .Lrelocated\@
    ldp     x11, x12, [x9], #16 /* r_offset, r_info */
    ldr     x13, [x9], #8       /* r_addend */
    cmp     w12, #R_AARCH64_RELATIVE
    b.ne    \bad
    add     x13, x13, \base
    str     x13, [\base, x11]
    b       .Lrelocate\@
.Lrelocated\@:
.endm

/* Clears bss (16-byte aligned at both ends by the linker script). Uses x9, x10. */
.macro clear_bss
    adr_l   x9, __bss_start
    adr_l   x10, __bss_end
.Lclear\@:
    cmp     x9, x10
    b.hs    .Lcleared\@
    stp     xzr, xzr, [x9], #16
    b       .Lclear\@
.Lcleared\@:
.endm
