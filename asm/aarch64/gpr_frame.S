/*
 * Saving and restoring general registers as an array of x0..x30 (16 bytes a
 * pair, x30 last at 16 * 15), the layout of the hyp's TrapFrame and Gprs and
 * of the host shim's ShimFrame. Shared by both images' assembly; each macro
 * expands to exactly the instructions it replaced (the hyp's hot paths are
 * counted by instruction). `op` is stp (save) or ldp (restore), `base` the
 * array's base register.
 *
 * Several global_asm! blocks of one crate include this file and may end up in
 * one assembly unit, where a macro may be defined only once: hence the guard.
 */

.ifndef GPR_FRAME_MACROS
.set GPR_FRAME_MACROS, 1

.macro pairs_x2_to_x17 op, base
    \op     x2, x3, [\base, #16 * 1]
    \op     x4, x5, [\base, #16 * 2]
    \op     x6, x7, [\base, #16 * 3]
    \op     x8, x9, [\base, #16 * 4]
    \op     x10, x11, [\base, #16 * 5]
    \op     x12, x13, [\base, #16 * 6]
    \op     x14, x15, [\base, #16 * 7]
    \op     x16, x17, [\base, #16 * 8]
.endm

.macro pairs_x18_to_x29 op, base
    \op     x18, x19, [\base, #16 * 9]
    \op     x20, x21, [\base, #16 * 10]
    \op     x22, x23, [\base, #16 * 11]
    \op     x24, x25, [\base, #16 * 12]
    \op     x26, x27, [\base, #16 * 13]
    \op     x28, x29, [\base, #16 * 14]
.endm

.macro pairs_x2_to_x29 op, base
    pairs_x2_to_x17 \op, \base
    pairs_x18_to_x29 \op, \base
.endm

.endif
