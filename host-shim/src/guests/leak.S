/*
 * The guests of the leak checks (suites/leaks.rs), run in protected and
 * non-protected VMs to see what of a guest reaches the host.
 */

.section .rodata.leak_guests, "a"

/*
 * Counting guest: x0 = n. Loops n times (two instructions each), then makes
 * n / 4096 PSCI VERSION calls (answered in the hyp) and turns its VM off. The
 * host counts its instructions: every one is written out.
 */
guest_start leak_count, 4
    mov     x19, x0
    lsr     x20, x0, #12
1:  subs    x19, x19, #1
    b.ne    1b
2:  cbz     x20, 3f
    sub     x20, x20, #1
    movz    x0, #0x8400, lsl #16    /* PSCI_VERSION in one instruction */
    hvc     #0
    b       2b
3:  call_hyp PSCI_SYSTEM_OFF
4:  b       4b
guest_end leak_count

/*
 * Reports register `name` (value, ESR_EL1 of an exception the read took, else
 * 0) with two 64-bit MMIO stores at x20; with `value`, writes it there first.
 * A register that is UNDEFINED leaves the value -1 (the vector skips the read).
 */
.macro report_register name, value
    mov     x2, #0
    mov     x1, #-1
    .ifnb \value
    msr     \name, \value
    .endif
    mrs     x1, \name
    str     x1, [x20]
    str     x2, [x20, #8]
.endm

/*
 * Probing guest: x0 = a value for TPIDR2_EL0. Installs its vectors (+0x800),
 * then for each register reports (value, ESR_EL1 of an exception it took,
 * else 0) with two 64-bit MMIO stores at GUEST_UART + 0x100 + 16 * k:
 * REVIDR_EL1, AIDR_EL1, ERRIDR_EL1, LORID_EL1, TPIDR2_EL0 (written with x0,
 * read back), TRCIDR0. Its vector (current EL, SPx, synchronous) records
 * ESR_EL1 in x2 and skips the instruction. Then it turns its VM off.
 */
guest_start leak_probe, 4096
    install_vectors guest_leak_probe_start
    mov     x19, x0
    mov     x20, #GUEST_UART
    add     x20, x20, #0x100
    report_register revidr_el1
    add     x20, x20, #16
    report_register aidr_el1
    add     x20, x20, #16
    report_register s3_0_c5_c3_0        /* ERRIDR_EL1 */
    add     x20, x20, #16
    report_register s3_0_c10_c4_7       /* LORID_EL1 */
    add     x20, x20, #16
    report_register s3_3_c13_c0_5, x19  /* TPIDR2_EL0 */
    add     x20, x20, #16
    report_register s2_1_c0_c8_7        /* TRCIDR0 */
    call_hyp PSCI_SYSTEM_OFF
5:  b       5b
.balign 0x800
    .skip   0x200
    mrs     x2, esr_el1
    mrs     x9, elr_el1
    add     x9, x9, #4
    msr     elr_el1, x9
    eret
guest_end leak_probe
