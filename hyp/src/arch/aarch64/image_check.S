/*
 * The hyp checks its own Image before anything else runs (head.S calls
 * image_check first, before the relocations): the Image header records the
 * Image's size and a checksum of its bytes (hyp_abi::image_seal, written by
 * scripts/build-image). A damaged or truncated Image is reported by the
 * hyp-image-check crate's hyp_image_damaged and the machine stops with a
 * failure status; nothing of the Image beyond this section and that crate's
 * runs.
 *
 * Everything here is in .text.image_check, which linker/image.ld puts right
 * after the Image header (scripts/build-image checks that the section branches
 * to and addresses nothing outside the Image's first pages). MMU and caches are
 * off; nothing here writes memory but the boot stack.
 */

.set IMAGE_SIZE_OFFSET, 16      /* image_size */
.set SEALED_SIZE_OFFSET, 40     /* res3: bytes of the Image file */
.set CHECKSUM_OFFSET, 48        /* res4: their checksum, this field read as 0 */
.set IMAGE_HEADER_SIZE, 64
.set SEMIHOSTING_SYS_EXIT, 0x18
.set PSCI_SYSTEM_OFF, 0x84000008
.set CURRENT_EL_EL2, 2 << 2

/* One step of the checksum (hash x11, multiplier x13): h = h * M + word. */
.macro mix_step word
    madd    x11, x11, x13, \word
.endm

/* After every eighth word, and once at the end: h ^= h >> 32. */
.macro fold
    eor     x11, x11, x11, lsr #32
.endm

.section .text.image_check, "ax"

/*
 * x0 = device tree, x1 = the Image's first byte, sp = the boot stack's top.
 * Returns (x0 and x1 kept, x2-x15 clobbered) if the Image's bytes are the
 * sealed ones; otherwise never returns.
 */
.global image_check
image_check:
    ldr     x9, [x1, #SEALED_SIZE_OFFSET]
    ldr     x10, [x1, #IMAGE_SIZE_OFFSET]
    ldr     x12, [x1, #CHECKSUM_OFFSET]
    mov     x2, #0                  /* reason: bad sealed size */
    mov     x11, #0                 /* no checksum computed */
    cmp     x9, #IMAGE_HEADER_SIZE
    b.lo    damaged
    cmp     x9, x10
    b.hi    damaged
    tst     x9, #7
    b.ne    damaged

    /*
     * A multiply-add over 64-bit words, folded every eighth word and at the
     * end (hyp_abi::image_seal): one instruction a word where FNV-1a's step
     * took three (the check was 0.2 million of reset to host).
     */
    movz    x11, #0x2325
    movk    x11, #0x8422, lsl #16
    movk    x11, #0x9ce4, lsl #32
    movk    x11, #0xcbf2, lsl #48   /* basis 0xcbf29ce484222325 */
    movz    x13, #0x7c15
    movk    x13, #0x7f4a, lsl #16
    movk    x13, #0x79b9, lsl #32
    movk    x13, #0x9e37, lsl #48   /* multiplier 0x9e3779b97f4a7c15 */
    /* The header's eight words (indices 0-7), the checksum field read as 0. */
    mov     x14, #0                 /* offset */
1:  ldr     x15, [x1, x14]
    cmp     x14, #CHECKSUM_OFFSET
    csel    x15, xzr, x15, eq
    mix_step x15
    add     x14, x14, #8
    cmp     x14, #IMAGE_HEADER_SIZE
    b.lo    1b
    fold
    /*
     * The rest, eight words (64 bytes) per turn while a whole turn remains,
     * each turn's last word at an index 8k + 7 (a fold); then word by word,
     * fewer than eight, no fold among them.
     */
    add     x2, x1, #IMAGE_HEADER_SIZE  /* next word */
    add     x3, x1, x9              /* end of the sealed bytes */
    sub     x4, x9, #IMAGE_HEADER_SIZE
    and     x4, x4, #~63
    add     x4, x2, x4              /* end of the whole turns */
    cmp     x2, x4
    b.hs    3f
2:  ldp     x5, x6, [x2], #16
    mix_step x5
    mix_step x6
    ldp     x5, x6, [x2], #16
    mix_step x5
    mix_step x6
    ldp     x5, x6, [x2], #16
    mix_step x5
    mix_step x6
    ldp     x5, x6, [x2], #16
    mix_step x5
    mix_step x6
    fold
    cmp     x2, x4
    b.lo    2b
3:  cmp     x2, x3
    b.hs    5f
4:  ldr     x5, [x2], #8
    mix_step x5
    cmp     x2, x3
    b.lo    4b
5:  fold
    cmp     x11, x12
    b.ne    mismatch
    ret

mismatch:
    mov     x2, #1                  /* reason: checksum mismatch */
damaged:
    /* hyp_image_damaged(dtb, reason, sealed size, image_size, recorded, computed) */
    mov     x3, x10
    mov     x4, x12
    mov     x5, x11
    mov     x1, x2
    mov     x2, x9
    mov     x29, xzr
    mov     x30, xzr
    bl      hyp_image_damaged       /* never returns */
    b       image_check_park

/* x0 = address: w0 = the 32-bit register there. */
.global image_check_read32
image_check_read32:
    ldr     w0, [x0]
    ret

/* x0 = address, w1 = value for the 32-bit register there. */
.global image_check_write32
image_check_write32:
    str     w1, [x0]
    ret

/* x0 = address: w0 = the 8-bit register there. */
.global image_check_read8
image_check_read8:
    ldrb    w0, [x0]
    ret

/* x0 = address, w1 = value for the 8-bit register there. */
.global image_check_write8
image_check_write8:
    strb    w1, [x0]
    ret

/*
 * Stops the machine with a failure status: x0 != 0 asks for a semihosting
 * exit of status 1 (the bootargs say a semihosting host is attached); then
 * PSCI SYSTEM_OFF through x1's conduit (1 SMC, 2 HVC, which at EL2 would
 * reach only this unready hyp, so it is skipped there); then the CPU parks.
 */
.global image_check_stop
image_check_stop:
    mov     x9, x1
    cbz     x0, 2f
    movz    x10, #0x0026
    movk    x10, #0x2, lsl #16      /* ADP_Stopped_ApplicationExit */
    mov     x11, #1                 /* exit status 1 */
    stp     x10, x11, [sp, #-16]!
    mov     x1, sp
    mov     x0, #SEMIHOSTING_SYS_EXIT
    hlt     #0xf000
    add     sp, sp, #16
2:  movz    x0, #(PSCI_SYSTEM_OFF & 0xffff)
    movk    x0, #(PSCI_SYSTEM_OFF >> 16), lsl #16
    cmp     x9, #1
    b.ne    3f
    smc     #0
    b       image_check_park
3:  cmp     x9, #2
    b.ne    image_check_park
    mrs     x10, CurrentEL
    cmp     x10, #CURRENT_EL_EL2
    b.eq    image_check_park
    hvc     #0
image_check_park:
    wfe
    b       image_check_park
