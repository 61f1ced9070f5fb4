/*
 * Debug conformance guest (one page: code, then its vectors at +0x800), for
 * `suites::conformance_debug`. It sets up self-hosted debug as an OS does
 * (the Arm ARM's "AArch64 self-hosted debug"): the OS lock cleared
 * (OSLAR_EL1), MDSCR_EL1.MDE and KDE set, PSTATE.D clear, so that
 * breakpoints, watchpoints and software step are taken at its own EL1. Then,
 * like the remote guest (guests.S), it does one command at a time for the
 * host: REMOTE_CMD (the operation in bits 7:0, an argument in bits 63:32)
 * and REMOTE_ARG (a value) are MMIO loads the host answers, the result a
 * 64-bit store to REMOTE_RESULT. Operations (`DebugOp` in the suite):
 *   0 SYSTEM_OFF
 *   1 write debug register `arg` (kind << 4 | n: DBGBVR, DBGBCR, DBGWVR,
 *     DBGWCR n) with the value
 *   2 read debug register `arg` (an UNDEFINED read gives 0)
 *   3 count the DBGBVR<n>_EL1 and DBGWVR<n>_EL1 (n < 16) that read without
 *     UNDEFINED: breakpoints | watchpoints << 8
 *   4 MDSCR_EL1 = value; the result is what it reads back
 *   5 call debug_bp_target (which returns 0x42)
 *   6 store the value to IPA `arg`; 7 load from IPA `arg`
 *   8 software-step debug_step_target to debug_step_done (MDSCR_EL1.SS set
 *     with PSTATE.D masked, then an ERET with SPSR_EL1.SS set and D clear;
 *     each step re-armed by the handler): an MMIO load and
 *     store (exits to the host) and a PSCI call (answered in the hyp) among
 *     plain instructions; the result is the value the load got
 *   9 read ID_AA64DFR0_EL1
 * Its synchronous exception handler reports each debug exception with
 * 64-bit stores (MMIO exits the host records): ESR_EL1 to DEBUG_ESR, for a
 * watchpoint FAR_EL1 to DEBUG_FAR, then ELR_EL1 to DEBUG_ELR; then it
 * disables breakpoint 0 and watchpoint 0 (each fires once) and returns to
 * the instruction (a breakpoint's or watchpoint's: it now completes) or,
 * stepping, re-arms the step (SPSR_EL1.SS) until debug_step_done, where it
 * clears MDSCR_EL1.SS. An UNDEFINED instruction (EC 0) sets x19 to its ESR
 * and is skipped; any other exception reports its ESR to IRQ_FAULT and
 * turns the VM off.
 */
.set DEBUG_ESR, 0x80            /* UART offsets where the handler reports */
.set DEBUG_FAR, 0x88
.set DEBUG_ELR, 0x90
.set DEBUG_SCRATCH, 0x98        /* where the stepped code stores */
.set DEBUG_OPS, 10
.set MDSCR_MDE_KDE, (1 << 15) | (1 << 13)
.set MDSCR_SS, 1
.set SPSR_SS, 1 << 21
.set SPSR_EL1H_AIF, 0x1c5       /* EL1h, A, I, F masked, D clear */
.set EC_BREAKPOINT, 0x31
.set EC_STEP, 0x33
.set EC_WATCHPOINT, 0x35

.section .rodata.guests, "a"

guest_start debug, 4096
    mov     x20, #GUEST_UART
    install_vectors guest_debug_start
    msr     oslar_el1, xzr
    mov     x9, #MDSCR_MDE_KDE
    msr     mdscr_el1, x9
    isb
    msr     daifclr, #8
1:  fetch_command DEBUG_OPS, 3f, 2f
2:  str     x0, [x20, #REMOTE_RESULT]
    b       1b
3:  b       10f
    b       11f
    b       12f
    b       13f
    b       14f
    b       15f
    b       16f
    b       17f
    b       18f
    b       19f
10: call_hyp PSCI_SYSTEM_OFF
    b       10b
11: and     x23, x23, #63
    adr     x9, debug_writes
    add     x9, x9, x23, lsl #3
    blr     x9
    b       2b
12: and     x23, x23, #63
    adr     x9, debug_reads
    add     x9, x9, x23, lsl #3
    blr     x9
    b       2b
13: mov     x24, xzr                /* n */
    mov     x26, xzr                /* breakpoints */
    mov     x27, xzr                /* watchpoints */
4:  mov     x19, xzr
    adr     x9, debug_reads
    add     x9, x9, x24, lsl #3
    blr     x9
    cbnz    x19, 5f
    add     x26, x26, #1
5:  mov     x19, xzr
    add     x9, x9, #(32 * 8)       /* DBGWVR<n>_EL1 */
    blr     x9
    cbnz    x19, 6f
    add     x27, x27, #1
6:  add     x24, x24, #1
    cmp     x24, #16
    b.lo    4b
    orr     x0, x26, x27, lsl #8
    b       2b
14: msr     mdscr_el1, x22
    isb
    mrs     x0, mdscr_el1
    b       2b
15: bl      debug_bp_target
    b       2b
16:
.global guest_debug_store
guest_debug_store:
    str     x22, [x23]
    b       2b
17:
.global guest_debug_load
guest_debug_load:
    ldr     x0, [x23]
    b       2b
18: msr     daifset, #8             /* no step here: SS with PSTATE.SS 0 steps at once */
    mrs     x9, mdscr_el1
    orr     x9, x9, #MDSCR_SS
    msr     mdscr_el1, x9
    isb
    adr     x9, debug_step_target
    msr     elr_el1, x9
    mov     x9, #SPSR_EL1H_AIF
    orr     x9, x9, #SPSR_SS
    msr     spsr_el1, x9
    eret
19: mrs     x0, id_aa64dfr0_el1
    b       2b

.global guest_debug_bp_target
guest_debug_bp_target:
debug_bp_target:
    mov     x0, #0x42
    ret

.global guest_debug_step_target
guest_debug_step_target:
debug_step_target:
    add     x0, x0, #1
    ldr     w1, [x20, #UART_STATUS]
    add     x0, x0, x1
    str     w0, [x20, #DEBUG_SCRATCH]
    function_id PSCI_VERSION
    hvc     #0
    mov     x0, x1
.global guest_debug_step_done
guest_debug_step_done:
debug_step_done:
    b       2b

/* The synchronous exception handler (from its vector, current EL with SP_EL1). */
debug_sync:
    mrs     x10, esr_el1
    lsr     x11, x10, #26
    cbnz    x11, 7f
    mov     x19, x10                /* UNDEFINED: noted, skipped */
    mrs     x11, elr_el1
    add     x11, x11, #4
    msr     elr_el1, x11
    eret
7:  cmp     x11, #EC_BREAKPOINT
    b.eq    8f
    cmp     x11, #EC_STEP
    b.eq    8f
    cmp     x11, #EC_WATCHPOINT
    b.eq    8f
    str     x10, [x20, #IRQ_FAULT]
    call_hyp PSCI_SYSTEM_OFF
8:  str     x10, [x20, #DEBUG_ESR]
    cmp     x11, #EC_WATCHPOINT
    b.ne    9f
    mrs     x12, far_el1
    str     x12, [x20, #DEBUG_FAR]
9:  mrs     x12, elr_el1
    str     x12, [x20, #DEBUG_ELR]
    msr     dbgbcr0_el1, xzr
    msr     dbgwcr0_el1, xzr
    cmp     x11, #EC_STEP
    b.ne    21f
    adr     x13, debug_step_done
    cmp     x12, x13
    b.eq    20f
    mrs     x13, spsr_el1
    orr     x13, x13, #SPSR_SS
    msr     spsr_el1, x13
    eret
20: mrs     x13, mdscr_el1
    bic     x13, x13, #MDSCR_SS
    msr     mdscr_el1, x13
21: eret

/* Debug register n of each kind: `msr` (writes) or `mrs` (reads), then ret. */
.balign 8
debug_writes:
.irp n, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15
    msr     dbgbvr\n\()_el1, x22
    ret
.endr
.irp n, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15
    msr     dbgbcr\n\()_el1, x22
    ret
.endr
.irp n, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15
    msr     dbgwvr\n\()_el1, x22
    ret
.endr
.irp n, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15
    msr     dbgwcr\n\()_el1, x22
    ret
.endr
debug_reads:
.irp n, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15
    mrs     x0, dbgbvr\n\()_el1
    ret
.endr
.irp n, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15
    mrs     x0, dbgbcr\n\()_el1
    ret
.endr
.irp n, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15
    mrs     x0, dbgwvr\n\()_el1
    ret
.endr
.irp n, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15
    mrs     x0, dbgwcr\n\()_el1
    ret
.endr

/* The word the watchpoint checks watch. */
.balign 8
.global guest_debug_data
guest_debug_data:
    .quad   0

.balign 2048
    fault_vectors 4
    .balign 128
    b       debug_sync
    fault_vectors 11
guest_end debug
