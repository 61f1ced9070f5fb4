/*
 * The CPU conformance guest (suites/conformance_cpu.rs): like the remote GIC
 * guest (guests.S), it does what the host tells it, one command at a time, so
 * that the host can check each architectural step and run the vCPU on another
 * physical CPU between steps. A command is two MMIO loads the host answers:
 * REMOTE_CMD (the operation in bits 7:0, an extra argument in bits 63:32)
 * and REMOTE_ARG (a value; both macros.S's, fetched by `fetch_command`); the
 * result goes to REMOTE_RESULT with a 64-bit store. If the
 * command's instruction took a synchronous exception, its ESR_EL1 is stored
 * to CPU_TRAPPED first (the handler skips the instruction).
 *
 * Entry: x0 is the context (CPU_ON's, or the host's VCPU_INIT), reported to
 * CPU_BOOT; the second instruction (start + 4) is another entry point, which
 * reports its x0 to CPU_BOOT_ALT, so that the host sees which one CPU_ON used.
 *
 * Operations (`Op` in the suite):
 *   0 PSCI CPU_OFF, 1 PSCI SYSTEM_OFF (no result);
 *   2 a 32-bit store of the value at the IPA (bits 63:32), 3 a 32-bit load;
 *   4 instruction `extra` of the table below, x0 = its result, x22 = value:
 *     0..55 MRS of ID register S3_0_C0_C<1 + n / 8>_<n % 8>; then the probes
 *     of features (CPU_PROBES), then the GIC CPU interface accesses;
 *   5 fill V0..V31, FPCR and FPSR from the seed `value`; 6 compare them
 *     with the seed's: a mask of the registers that differ (bit n: Vn, bit 32
 *     FPCR, bit 33 FPSR);
 *   7 PSCI CPU_ON: target MPIDR = value bits 31:0, context (x0) = value bits
 *     63:32, entry = start + `extra`: the status;
 *   8 PSCI AFFINITY_INFO of MPIDR `value` (level 0): the status;
 *   9 AFFINITY_INFO of MPIDR `value` again while it answers ON (0), at most
 *     CPU_POLLS times: the last answer;
 *   10 WFI with IRQs masked (PSTATE.I), then ISR_EL1.
 * Any exception other than a synchronous one at EL1 reports ESR_EL1 to
 * IRQ_FAULT and turns the VM off.
 */
.section .rodata.guests, "a"
.set CPU_BOOT, 0x80
.set CPU_BOOT_ALT, 0x88
.set CPU_TRAPPED, 0x90
.set CPU_OPS, 11
.set CPU_POLLS, 0x100000
.set CPU_INSTRUCTIONS, 82      /* 56 ID registers, 19 probes, 5 GIC accesses, CPACR_EL1 */

/* FPCR and FPSR from the seed in \seed: FPCR.RMode (23:22) and FZ (24) from
 * seed bits 1:0 and 2, DN (25) set; FPSR's cumulative flags (4:0) from seed
 * bits 4:0, QC (27) set. Uses x9, x10. */
.macro fp_controls seed, fpcr, fpsr
    and     \fpcr, \seed, #7
    lsl     \fpcr, \fpcr, #22
    orr     \fpcr, \fpcr, #(1 << 25)
    and     \fpsr, \seed, #0x1f
    orr     \fpsr, \fpsr, #(1 << 27)
.endm

guest_start cpu, 4096
    b       1f
    mov     x9, #GUEST_UART
    str     x0, [x9, #CPU_BOOT_ALT]
    b       2f
1:  mov     x9, #GUEST_UART
    str     x0, [x9, #CPU_BOOT]
2:  mov     x20, #GUEST_UART
    mov     x26, xzr
    install_vectors guest_cpu_start
    mov     x9, #(3 << 20)          /* CPACR_EL1.FPEN: FP/SIMD at EL1 */
    msr     cpacr_el1, x9
    isb
3:  fetch_command CPU_OPS, 5f, 4f
4:  cbz     x26, 6f
    str     x26, [x20, #CPU_TRAPPED]
    mov     x26, xzr
6:  str     x0, [x20, #REMOTE_RESULT]
    b       3b
5:  b       10f
    b       11f
    b       12f
    b       13f
    b       14f
    b       15f
    b       16f
    b       17f
    b       18f
    b       19f
    b       20f
10: call_hyp PSCI_CPU_OFF
    b       10b
11: call_hyp PSCI_SYSTEM_OFF
    b       11b
12: str     w22, [x23]
    b       4b
13: ldr     w0, [x23]
    b       4b
14: cmp     x23, #CPU_INSTRUCTIONS
    b.hs    4b
    adr     x9, cpu_instructions
    add     x9, x9, x23, lsl #3
    br      x9
15: adr     x9, cpu_fp_area
    mov     x10, xzr
7:  add     x11, x22, x10
    mvn     x12, x11
    add     x13, x9, x10, lsl #4
    stp     x11, x12, [x13]
    add     x10, x10, #1
    cmp     x10, #32
    b.ne    7b
    ldp     q0, q1, [x9, #0]
    ldp     q2, q3, [x9, #32]
    ldp     q4, q5, [x9, #64]
    ldp     q6, q7, [x9, #96]
    ldp     q8, q9, [x9, #128]
    ldp     q10, q11, [x9, #160]
    ldp     q12, q13, [x9, #192]
    ldp     q14, q15, [x9, #224]
    ldp     q16, q17, [x9, #256]
    ldp     q18, q19, [x9, #288]
    ldp     q20, q21, [x9, #320]
    ldp     q22, q23, [x9, #352]
    ldp     q24, q25, [x9, #384]
    ldp     q26, q27, [x9, #416]
    ldp     q28, q29, [x9, #448]
    ldp     q30, q31, [x9, #480]
    fp_controls x22, x9, x10
    msr     fpcr, x9
    msr     fpsr, x10
    b       4b
16: adr     x9, cpu_fp_area
    stp     q0, q1, [x9, #0]
    stp     q2, q3, [x9, #32]
    stp     q4, q5, [x9, #64]
    stp     q6, q7, [x9, #96]
    stp     q8, q9, [x9, #128]
    stp     q10, q11, [x9, #160]
    stp     q12, q13, [x9, #192]
    stp     q14, q15, [x9, #224]
    stp     q16, q17, [x9, #256]
    stp     q18, q19, [x9, #288]
    stp     q20, q21, [x9, #320]
    stp     q22, q23, [x9, #352]
    stp     q24, q25, [x9, #384]
    stp     q26, q27, [x9, #416]
    stp     q28, q29, [x9, #448]
    stp     q30, q31, [x9, #480]
    mov     x10, xzr
7:  add     x13, x9, x10, lsl #4
    ldp     x11, x12, [x13]
    add     x13, x22, x10
    eor     x11, x11, x13
    eon     x12, x12, x13
    orr     x11, x11, x12
    cbz     x11, 9f
    mov     x12, #1
    lsl     x12, x12, x10
    orr     x0, x0, x12
9:  add     x10, x10, #1
    cmp     x10, #32
    b.ne    7b
    fp_controls x22, x9, x10
    mrs     x11, fpcr
    cmp     x11, x9
    cset    x11, ne
    orr     x0, x0, x11, lsl #32
    mrs     x11, fpsr
    cmp     x11, x10
    cset    x11, ne
    orr     x0, x0, x11, lsl #33
    b       4b
17: function_id PSCI_CPU_ON_64
    mov     w1, w22
    adr     x2, guest_cpu_start
    add     x2, x2, x23
    lsr     x3, x22, #32
    hvc     #0
    b       4b
18: function_id PSCI_AFFINITY_INFO_64
    mov     x1, x22
    mov     x2, xzr
    hvc     #0
    b       4b
19: mov     x24, #CPU_POLLS
7:  function_id PSCI_AFFINITY_INFO_64
    mov     x1, x22
    mov     x2, xzr
    hvc     #0
    cbnz    x0, 4b
    subs    x24, x24, #1
    b.hi    7b
    b       4b
20: msr     daifset, #2
    wfi
    mrs     x0, isr_el1
    b       4b

/* Two instructions each: the access, then back to the report. */
cpu_instructions:
    .irp crm, 1,2,3,4,5,6,7
    .irp op2, 0,1,2,3,4,5,6,7
    mrs     x0, S3_0_C0_C\crm\()_\op2
    b       4b
    .endr
    .endr
    /* CPU_PROBES: one register of each feature (suite: `PROBES`). */
    .irp reg, S3_3_C9_C12_0, S3_3_C9_C13_0, S3_3_C9_C14_0, S3_0_C9_C9_7, S3_0_C9_C10_7, S3_0_C9_C11_7, S2_1_C0_C8_7, S3_0_C1_C2_1, S3_3_C13_C2_0, S3_0_C1_C2_0, S3_0_C1_C2_6, S3_0_C1_C0_6, S3_0_C5_C6_0, S3_0_C10_C4_7, S3_0_C2_C1_0, S3_0_C10_C5_0, S2_1_C9_C2_0, S3_0_C5_C3_0, S3_0_C12_C12_5
    mrs     x0, \reg
    b       4b
    .endr
    /* The GIC CPU interface (GICv3): ICC_IAR1_EL1, ICC_EOIR1_EL1,
     * ICC_SGI1R_EL1, ICC_PMR_EL1, ICC_IGRPEN1_EL1 (suite: `ICC_*`). */
    mrs     x0, icc_iar1_el1
    b       4b
    msr     icc_eoir1_el1, x22
    b       8f
    msr     icc_sgi1r_el1, x22
    b       8f
    msr     icc_pmr_el1, x22
    b       8f
    msr     icc_igrpen1_el1, x22
    b       8f
    /* CPACR_EL1: written with the value, read (suite: `CPACR_*`). */
    msr     cpacr_el1, x22
    b       8f
    mrs     x0, cpacr_el1
    b       4b
8:  isb
    b       4b

/* V0..V31 in memory, for operations 5 and 6. */
    .balign 16
cpu_fp_area:
    .skip   512

/* Vectors (the code above must end before +0x800: the suite checks that
 * the guest is one page): a synchronous exception at EL1 (SP_EL1) records ESR_EL1 in x26 and
 * skips the instruction; anything else is a fault. */
    .balign 2048
    fault_vectors 4
    .balign 128
    mrs     x26, esr_el1
    mrs     x9, elr_el1
    add     x9, x9, #4
    msr     elr_el1, x9
    eret
    .balign 128
    fault_vectors 11
guest_end cpu
