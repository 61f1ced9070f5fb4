/*
 * Saving and restoring general registers as an array of x0..x30 (16 bytes a
 * pair, x30 last at 16 * 15), the layout of the hyp's TrapFrame and Gprs and
 * of the host shim's ShimFrame. Shared by both images' assembly; the macro
 * expands to exactly the instructions it replaced (the hyp's hot paths are
 * counted by instruction). `op` is stp (save) or ldp (restore), `base` the
 * array's base register.
 *
 * Several global_asm! blocks of one crate include this file and may end up in
 * one assembly unit, where a macro may be defined only once: hence the guard.
 */

.ifndef GPR_FRAME_MACROS
.set GPR_FRAME_MACROS, 1

/*
 * `op` of the registers `reg`a, `reg`b at their slot in an array of `size`-byte
 * registers from `base` (`reg`0 at 0), then of the pairs in `more`.
 */
.macro reg_pair_each op, base, reg, size, a, b, more:vararg
    \op     \reg\a, \reg\b, [\base, #\size * \a]
    .ifnb \more
    reg_pair_each \op, \base, \reg, \size, \more
    .endif
.endm

/* `op` of xa, xb at their slot (x0 is at 0, so xa at 8 * a), then of the pairs in `more`. */
.macro gpr_pair_each op, base, more:vararg
    reg_pair_each \op, \base, x, 8, \more
.endm

/* `op` of the pairs x2, x3 up to x16, x17 (`last` 17) or x28, x29 (`last` 29). */
.macro gpr_pairs op, base, last
    .if \last == 17
    gpr_pair_each \op, \base, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17
    .elseif \last == 29
    gpr_pair_each \op, \base, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29
    .else
    .error "gpr_pairs: last must be 17 or 29"
    .endif
.endm

.endif
