/*
 * Small EL1 guests the host shim runs in VMs. Each is position-independent code
 * between a start and an end label; the shim copies it into the page it gives
 * the VM at IPA GUEST_ENTRY and starts a vCPU there with x0 as an argument. The
 * guests run with their MMU off. Their macros are in macros.S.
 */

.arch_extension fp
.arch_extension simd

.section .rodata.guests, "a"

/*
 * Console guest: prints "hello from guest <x0>", the byte the host answers to a
 * read of UART_STATUS, and the PSCI minor version the hyp reports, then a
 * newline, then turns its VM off.
 */
guest_start console, 4
    mov     x19, x0
    mov     x20, #GUEST_UART
    adr     x1, 9f
1:  ldrb    w2, [x1], #1
    cbz     w2, 2f
    strb    w2, [x20]
    b       1b
2:  strb    w19, [x20]
    mov     w2, #' '
    strb    w2, [x20]
    ldr     w3, [x20, #UART_STATUS]
    strb    w3, [x20]
    call_hyp PSCI_VERSION
    and     x0, x0, #0xff
    add     x0, x0, #'0'
    strb    w0, [x20]
    mov     w2, #'\n'
    strb    w2, [x20]
    call_hyp PSCI_SYSTEM_OFF
3:  b       3b
9:  .asciz  "hello from guest "
.balign 4
guest_end console

/*
 * Misbehaving guest: executes an undefined instruction with no exception vector
 * (VBAR_EL1 = 0, which is not its memory), so every injected exception faults
 * again: the hyp must end the VM with a fatal exit, not loop or crash.
 */
guest_start crash, 4
    udf     #0
guest_end crash

/*
 * AArch32 guest: returns from EL1 to AArch32 EL0 (Thumb, user mode), which
 * its ID registers do not offer but QEMU's CPU has, at a 16-bit WFI. The hyp
 * decodes and steps over AArch64 instructions only: it must end the VM (a
 * fatal exit with the WFI's syndrome), not serve the WFI and step 4 bytes.
 * SCTLR_EL1.nTWI/nTWE are set so that EL0's WFI is not the guest EL1's trap.
 */
guest_start aarch32, 4
    mrs     x1, sctlr_el1
    orr     x1, x1, #(1 << 16)
    orr     x1, x1, #(1 << 18)
    msr     sctlr_el1, x1
    adr     x1, 1f
    msr     elr_el1, x1
    mov     x1, #0x30               /* M[4] AArch32, M[3:0] user, T (bit 5): Thumb */
    msr     spsr_el1, x1
    isb
    eret
1:  .hword  0xbf30                  /* WFI (T1) */
    .hword  0xbf30
    .hword  0xbf30
    .hword  0xbf30
guest_end aarch32

/*
 * Benchmark guest: x0 = what to do, x1 = how many times, then SYSTEM_OFF.
 * 0: nothing; 1: PSCI VERSION calls (answered by the hyp); 2: MMIO byte writes
 * to the UART (each an exit to the host); 3: WFI forever (each run exits at
 * once); 4: reads of its GIC distributor's GICD_TYPER (emulated by the hyp).
 */
guest_start bench, 4
    mov     x19, x0
    mov     x20, x1
    cmp     x19, #3
    b.eq    4f
    mov     x21, #GUEST_UART
    mov     x22, #GUEST_GICD
1:  cbz     x20, 3f
    sub     x20, x20, #1
    cmp     x19, #1
    b.ne    2f
    call_hyp PSCI_VERSION
    b       1b
2:  cmp     x19, #2
    b.ne    5f
    strb    w20, [x21]
    b       1b
5:  cmp     x19, #4
    b.ne    1b
    ldr     w9, [x22, #4]
    b       1b
3:  call_hyp PSCI_SYSTEM_OFF
    b       3b
4:  wfi
    b       4b
guest_end bench

/*
 * Counting guest: x0 = n. Stores n, n-1, ..., 1 to GUEST_UART, each a 64-bit
 * MMIO store (one exit), then stores 0 there forever: every later run exits
 * at once. The SMP checks run its vCPU from two CPUs at once
 * (suites/smp.rs, contended_vcpu).
 */
guest_start count, 4
    mov     x20, x0
    mov     x21, #GUEST_UART
1:  cbz     x20, 2f
    str     x20, [x21]
    sub     x20, x20, #1
    b       1b
2:  str     xzr, [x21]
    b       2b
guest_end count

/* Off guest: turns its VM off at once (the stress test's guest). */
guest_start off, 4
    call_hyp PSCI_SYSTEM_OFF
1:  b       1b
guest_end off

/*
 * Memory-test guest: fills the page after its code with seed + i (x0 = seed),
 * checks it, reports 1 (or 0) with a 64-bit MMIO write to GUEST_RESULT, makes a
 * call the hyp leaves to the host (x1 = seed), waits for an interrupt (WFI),
 * touches its data page once more, and resets its VM.
 */
guest_start memtest, 4
    mov     x19, x0
    mov     x20, #GUEST_UART
    adr     x21, guest_memtest_start
    add     x21, x21, #0x1000
    mov     x2, #0
1:  add     x3, x19, x2
    str     x3, [x21, x2, lsl #3]
    add     x2, x2, #1
    cmp     x2, #512
    b.ne    1b
    mov     x2, #0
    mov     x4, #1
2:  ldr     x3, [x21, x2, lsl #3]
    add     x5, x19, x2
    cmp     x3, x5
    csel    x4, x4, xzr, eq
    add     x2, x2, #1
    cmp     x2, #512
    b.ne    2b
    /* FP/SIMD too (enabled at EL1 first): the seed through d1 must come back,
     * and v8 is clobbered (the host's v8 must not be). */
    mov     x9, #(3 << 20)
    msr     cpacr_el1, x9
    isb
    fmov    d1, x19
    movi    v8.2d, #0
    fmov    x6, d1
    cmp     x6, x19
    csel    x4, x4, xzr, eq
    str     x4, [x20, #GUEST_RESULT]
    call_hyp_with HOST_CALL, x19
    wfi
    ldr     x3, [x21]
    call_hyp PSCI_SYSTEM_RESET
3:  b       3b
guest_end memtest

/*
 * Fault-catching guest: reads the PMU's cycle counter (trapped: the hyp
 * injects UNDEFINED) x0 times, each exception caught by its own vector, which
 * counts it in x21 and skips the read, all without an exit; then reports the
 * count with a 64-bit MMIO write to GUEST_UART + GUEST_REPORT and turns its
 * VM off. However many exceptions a guest handles in one run, it is not dead.
 * Compact: its vector table starts at its first byte, its code sits in the
 * table's SP_EL0 entries (unused: it runs on SP_EL1), and the only handler
 * it needs, synchronous at EL1 with SP_EL1, is at +0x200.
 */
.set GUEST_REPORT, 0x28         /* UART offset where the catching and malicious guests report */
guest_start catch, 2048
    adr     x9, guest_catch_start
    msr     vbar_el1, x9
    isb
    mov     x20, #GUEST_UART
    mov     x21, #0
    mov     x22, x0
1:  mrs     x1, pmccntr_el0
    subs    x22, x22, #1
    b.ne    1b
    str     x21, [x20, #GUEST_REPORT]
    call_hyp PSCI_SYSTEM_OFF
2:  b       2b
.balign 512
    add     x21, x21, #1
    mrs     x10, elr_el1
    add     x10, x10, #4
    msr     elr_el1, x10
    eret
guest_end catch

/*
 * Malicious guest: tries what a guest must not reach and reports each outcome
 * with a 64-bit MMIO write to GUEST_UART + GUEST_REPORT (exceptions it takes
 * itself are reported by its own vector, which then skips the instruction):
 * an SMC to a firmware (SiP) service (x0 must come back NOT_SUPPORTED), the
 * PMU cycle counter (trapped: UNDEFINED comes back), a debug register (its
 * own, zero out of reset: reported) and the OS lock (unlocked), ID_AA64DFR0_EL1
 * (trapped, sanitised: reported), an EL2 register (UNDEFINED at EL1), a store
 * outside its memory (an MMIO exit the host sees), then PSCI SYSTEM_OFF (only
 * this VM ends).
 */
guest_start evil, 4096
    install_vectors guest_evil_start
    mov     x20, #GUEST_UART
    mov     x0, #0x0001             /* a SiP (firmware) call: never reaches firmware */
    movk    x0, #0xC200, lsl #16
    smc     #0
    str     x0, [x20, #GUEST_REPORT]
    mrs     x1, pmccntr_el0
    mov     x1, #1
    mrs     x1, dbgbvr0_el1
    str     x1, [x20, #GUEST_REPORT]
    msr     oslar_el1, xzr
    mrs     x1, id_aa64dfr0_el1
    str     x1, [x20, #GUEST_REPORT]
    mrs     x1, hcr_el2
    mov     x2, #0x10000000
    mov     x3, #0x5a
    str     x3, [x2]
    call_hyp PSCI_SYSTEM_OFF
1:  b       1b
/* Its vector table: every entry reports ESR_EL1 and returns past the instruction. */
.balign 2048
evil_vectors:
    .rept 16
    .balign 128
    mrs     x10, esr_el1
    str     x10, [x20, #GUEST_REPORT]
    mrs     x10, elr_el1
    add     x10, x10, #4
    msr     elr_el1, x10
    eret
    .endr
guest_end evil

/*
 * MMIO-guard guest: reports with 64-bit MMIO writes to GUEST_UART +
 * GUEST_REPORT and, where the UART is not allowed, with HOST_CALL (x1 = the
 * value). Unguarded, its store to the UART reaches the host. It asks the
 * guard's granule (INFO), enrols, allows the UART's granule (MAP), then reports
 * ENROLL's and MAP's results and the granule, and MAP's refusals of a
 * misaligned IPA and of its own memory. A store to an IPA it did not allow
 * takes an abort (its vector reports ESR_EL1 with HOST_CALL and skips the
 * store); it then disallows the UART (UNMAP), stores to it (another abort),
 * reports UNMAP's result with HOST_CALL, and turns the VM off.
 */
.set GUARD_INFO, 0xC6000005
.set GUARD_ENROLL, 0xC6000006
.set GUARD_MAP, 0xC6000007
.set GUARD_UNMAP, 0xC6000008
guest_start guard, 4096
    install_vectors guest_guard_start
    mov     x20, #GUEST_UART
    mov     x1, #1
    str     x1, [x20, #GUEST_REPORT]        /* unguarded: reaches the host */
    call_hyp GUARD_INFO
    mov     x19, x0
    call_hyp GUARD_ENROLL
    mov     x21, x0
    mov     x1, x20
    call_hyp GUARD_MAP
    mov     x22, x0
    str     x21, [x20, #GUEST_REPORT]
    str     x22, [x20, #GUEST_REPORT]
    str     x19, [x20, #GUEST_REPORT]
    add     x1, x20, #8
    call_hyp GUARD_MAP
    str     x0, [x20, #GUEST_REPORT]
    adr     x1, guest_guard_start
    call_hyp GUARD_MAP
    str     x0, [x20, #GUEST_REPORT]
    mov     x2, #0x10000000
    mov     x3, #0x5a
    str     x3, [x2]                        /* not allowed: an abort */
    mov     x1, x20
    call_hyp GUARD_UNMAP
    mov     x21, x0
    str     x3, [x20, #GUEST_REPORT]        /* disallowed again: an abort */
    mov     x1, x21
    call_hyp HOST_CALL
    call_hyp PSCI_SYSTEM_OFF
1:  b       1b
/* Its vector table: every entry reports ESR_EL1 with HOST_CALL and skips the instruction. */
.balign 2048
guard_vectors:
    .rept 16
    .balign 128
    mrs     x1, esr_el1
    call_hyp HOST_CALL
    mrs     x10, elr_el1
    add     x10, x10, #4
    msr     elr_el1, x10
    eret
    .endr
guest_end guard

/*
 * SMP guest, for a VM of SMP_VCPUS vCPUs; its data page follows its code page.
 * Each vCPU learns its index from MPIDR_EL1.Aff0. vCPU 0 starts the others with
 * PSCI CPU_ON at this same code. Each vCPU marks itself present in the data
 * page (one word each) and waits, for at most SMP_WAIT polls, until all are:
 * they can only all be present at once if they run at the same time. Each then
 * reports with HOST_CALL, x1 = 1 if it saw all present (0 if it gave up) | its
 * index << 8 | the low byte of vCPU 0's CPU_ON statuses ORed << 16 (0: all
 * succeeded); x1 reaches the host in the exit even for a protected VM.
 * The others then call CPU_OFF; vCPU 0 waits until AFFINITY_INFO says they
 * are off, and turns the VM off.
 */
guest_start smp, 4
    mrs     x19, mpidr_el1
    and     x19, x19, #0xff
    adr     x20, guest_smp_start
    add     x21, x20, #0x1000
    mov     x24, xzr
    cbnz    x19, 2f
    mov     x22, #1
1:  function_id PSCI_CPU_ON_64
    mov     x1, x22
    mov     x2, x20
    mov     x3, x22
    hvc     #0
    orr     x24, x24, x0
    add     x22, x22, #1
    cmp     x22, #SMP_VCPUS
    b.lo    1b
2:  mov     x0, #1
    str     x0, [x21, x19, lsl #3]
    mov     x23, #SMP_WAIT
3:  mov     x4, #1
    mov     x5, xzr
4:  ldr     x6, [x21, x5, lsl #3]
    and     x4, x4, x6
    add     x5, x5, #1
    cmp     x5, #SMP_VCPUS
    b.lo    4b
    cbnz    x4, 5f
    subs    x23, x23, #1
    b.ne    3b
5:  function_id HOST_CALL
    and     x24, x24, #0xff
    orr     x1, x4, x19, lsl #8
    orr     x1, x1, x24, lsl #16
    hvc     #0
    cbnz    x19, 8f
    mov     x22, #1
6:  function_id PSCI_AFFINITY_INFO_64
    mov     x1, x22
    mov     x2, xzr
    hvc     #0
    cmp     x0, #1
    b.ne    6b
    add     x22, x22, #1
    cmp     x22, #SMP_VCPUS
    b.lo    6b
    call_hyp PSCI_SYSTEM_OFF
7:  b       7b
8:  call_hyp PSCI_CPU_OFF
9:  b       9b
.balign 4
guest_end smp

/*
 * Probing guest: its data page (+0x1000) holds a zero-terminated list of IPAs
 * (the host puts physical addresses of the hyp, of itself and of a page it
 * lends to another VM there). It reads each one and reports the value it got
 * to PROBE_REPORT, then writes 0xbad to each, then turns its VM off.
 */
guest_start probe, 4
    adr     x21, guest_probe_start
    add     x21, x21, #0x1000
    mov     x20, #GUEST_UART
    mov     x22, x21
1:  ldr     x1, [x22], #8
    cbz     x1, 2f
    ldr     x3, [x1]
    str     x3, [x20, #PROBE_REPORT]
    b       1b
2:  mov     x22, x21
    mov     x4, #0xbad
3:  ldr     x1, [x22], #8
    cbz     x1, 4f
    str     x4, [x1]
    b       3b
4:  call_hyp PSCI_SYSTEM_OFF
5:  b       5b
.balign 4
guest_end probe

/*
 * Spinning guest: masks every interrupt and exception it can and loops forever.
 * Only the hyp taking the CPU back (a physical interrupt routed to EL2) ends a
 * run of it.
 */
guest_start spin, 4
    msr     daifset, #0xf
1:  b       1b
guest_end spin

/*
 * Interrupt guest: x0 = how many interrupts to take. On vCPU 0 it first starts
 * vCPU 1 (if the VM has one) at the next page (`start_vcpu1`, x0 = 0 there).
 * It installs its vectors
 * (+0x800), opens its distributor (every interrupt enabled) and its virtual
 * CPU interface (priority mask 0xff, group 1 enabled: ICC_* registers, which
 * reach the ICV_* ones under the hyp), says it is ready with a store to
 * IRQ_READY (an MMIO exit), unmasks IRQs and waits. Its IRQ handler
 * acknowledges (ICC_IAR1_EL1), reports the INTID with a
 * store to IRQ_REPORT (an MMIO exit the host sees), and ends the interrupt
 * (ICC_EOIR1_EL1). After x0 interrupts it turns its VM off. Any other exception
 * reports ESR_EL1 to IRQ_FAULT and turns the VM off.
 *
 * For GICv2 (`gic` v2, guest_irq2) its CPU interface is memory-mapped (GICC
 * at GUEST_GICC): it opens it (GICC_PMR 0xf8, GICC_CTLR group 0 enabled),
 * acknowledges with GICC_IAR and ends with GICC_EOIR.
 */
.macro irq_guest name, gic
guest_start \name, 4096
    mov     x21, x0
    start_vcpu1 guest_\name\()_start, 0
    mov     x19, xzr
    mov     x20, #GUEST_UART
    .ifc \gic, v3
    install_vectors guest_\name\()_start
    gicv3_open_all
    gicv3_cpu_interface_on
    isb
    .else
    mov     x22, #GUEST_GICC
    install_vectors guest_\name\()_start
    gicv2_open_all
    gicv2_cpu_interface_on x22
    .endif
    str     xzr, [x20, #IRQ_READY]
    msr     daifclr, #2
1:  cmp     x19, x21
    b.lo    1b
    msr     daifset, #2
    call_hyp PSCI_SYSTEM_OFF
2:  b       2b
    irq_vectors
    take_irq \gic, report
    fault_vectors 10
guest_end \name
.endm
irq_guest irq, v3

/*
 * Timer guest: x0 = how many ticks to count (bits 14:0) | spin (bit 15) | the
 * period in counter ticks << 16 (a protected vCPU gets nothing but x0 from the
 * host). It opens its distributor and virtual CPU interface, arms its virtual
 * timer (CNTV) one period ahead, unmasks IRQs and waits with WFI (or, with
 * spin, in a loop that never traps). Its IRQ handler counts each timer
 * interrupt (PPI 27) and re-arms the timer one period later; the last tick
 * turns the timer off, so that the count is exact however slow the run. It
 * then reports the count with HOST_CALL (x1) and turns its VM off. Any other
 * exception reports ESR_EL1 to IRQ_FAULT and turns the VM off.
 *
 * For GICv2 (`gic` v2, guest_timer2) its CPU interface is at GUEST_GICC (as
 * guest_irq2's).
 */
.macro timer_guest name, gic
guest_start \name, 4096
    and     x21, x0, #0x7fff
    ubfx    x26, x0, #15, #1
    lsr     x22, x0, #16
    mov     x19, xzr
    mov     x20, #GUEST_UART
    install_vectors guest_\name\()_start
    .ifc \gic, v3
    gicv3_open_all
    gicv3_cpu_interface_on
    .else
    gicv2_open_all
    mov     x23, #GUEST_GICC
    gicv2_cpu_interface_on x23
    .endif
    arm_vtimer x22
    isb
    msr     daifclr, #2
1:  cbnz    x26, 4f                 /* spinning: the timer must interrupt the loop */
    wfi
4:  cmp     x19, x21
    b.lo    1b
    msr     daifset, #2
    msr     cntv_ctl_el0, xzr
    call_hyp_with HOST_CALL, x19
    call_hyp PSCI_SYSTEM_OFF
2:  b       2b
    irq_vectors
    .ifc \gic, v3
    mrs     x9, icc_iar1_el1
    cmp     x9, #27
    .else
    ldr     w9, [x23, #0xc]
    and     x11, x9, #0x3ff
    cmp     x11, #27
    .endif
    b.ne    3f
    count_tick
3:
    .ifc \gic, v3
    msr     icc_eoir1_el1, x9
    .else
    str     w9, [x23, #0x10]
    .endif
    eret
    fault_vectors 10
guest_end \name
.endm
timer_guest timer, v3

/*
 * SGI guest, run as vCPU 1 beside the interrupt guest (which starts it): opens the
 * distributor, sends SGI 5 to vCPU 0 (ICC_SGI1R_EL1: TargetList bit 0,
 * INTID 5), then turns itself off.
 */
guest_start sgi, 4
    gicv3_open_all
    mov     x1, #(5 << 24)
    orr     x1, x1, #1
    msr     icc_sgi1r_el1, x1
    call_hyp PSCI_CPU_OFF
1:  b       1b
.balign 4
guest_end sgi

/* The interrupt guest for GICv2 (see guest_irq). */
irq_guest irq2, v2

/* The timer guest for GICv2 (see guest_timer). */
timer_guest timer2, v2

/*
 * SGI guest for GICv2: opens the distributor, sends SGI 5 to vCPU 0 with a
 * write of GICD_SGIR (CPUTargetList bit 0), then turns itself off.
 */
guest_start sgi2, 4
    gicv2_open_all
    mov     x1, #GUEST_GICD
    mov     w2, #5
    movk    w2, #1, lsl #16
    str     w2, [x1, #0xf00]
    call_hyp PSCI_CPU_OFF
1:  b       1b
.balign 4
guest_end sgi2

/*
 * Timer benchmark guest (GICv3): opens its interface, arms its virtual timer
 * already expired (CVAL 0), says it is ready (IRQ_READY), unmasks IRQs and
 * waits with WFI forever. Its handler reports the INTID (IRQ_REPORT) and ends
 * it, leaving the timer asserted, so that the timer interrupt comes again.
 */
guest_start vtimer_bench, 4096
    mov     x20, #GUEST_UART
    install_vectors guest_vtimer_bench_start
    gicv3_open_all
    gicv3_cpu_interface_on
    msr     cntv_cval_el0, xzr
    msr     cntv_ctl_el0, x9
    isb
    str     xzr, [x20, #IRQ_READY]
    msr     daifclr, #2
1:  wfi
    b       1b
    irq_vectors
    mrs     x9, icc_iar1_el1
    str     x9, [x20, #IRQ_REPORT]
    msr     icc_eoir1_el1, x9
    eret
    fault_vectors 10
guest_end vtimer_bench

/*
 * Distributor guest, for either GIC version (x0 = 2: GICv2, else GICv3): it
 * programs its distributor and checks how interrupts reach it. It first
 * starts vCPU 1 (the interrupt guest, at the next page, x0 = 1 there: one
 * interrupt to take) with PSCI CPU_ON. Reports: each
 * INTID taken to IRQ_REPORT, values read back to GIC_VALUE, IRQ_READY when the
 * host has a part to play.
 *  1. Reads GICD_TYPER.ITLinesNumber and reports it; sets the priorities of
 *     SPIs 50..55 (0xe0 0x20 0xc0 0x40 0xa0 0x60) and 42 (0x80), reads SPI 51's
 *     back and reports it; enables SPIs 50..55 only. IRQ_READY: the host makes
 *     50..55 and 42 pending.
 *  2. Takes six interrupts: most urgent first, whatever the number of list
 *     registers.
 *  3. With IRQs masked, WFI: SPI 42 is pending but disabled, so the host gets
 *     a WFI exit. Then enables SPI 42 and takes it.
 *  4. Makes the disabled SPI 43 pending, clears it, enables it, reports
 *     GICD_ISPENDR1 (nothing pending), makes it pending again and takes it.
 *  5. Routes SPI 44 to vCPU 1 and enables it; IRQ_READY (the host injects
 *     44 and runs vCPU 1); turns itself off (PSCI CPU_OFF).
 */
.set GIC_VALUE, 0x50
guest_start gic, 4096
    mov     x25, x0
    start_vcpu1 guest_gic_start, 1
    mov     x19, xzr
    mov     x20, #GUEST_UART
    mov     x22, #GUEST_GICC
    mov     x23, #GUEST_GICD
    install_vectors guest_gic_start
    cmp     x25, #2
    b.eq    1f
    gicv3_cpu_interface_on
    mov     w9, #0x13
    str     w9, [x23]
    mov     x9, #GUEST_GICR
    str     wzr, [x9, #0x14]
    isb
    b       2f
1:  gicv2_cpu_interface_on x22
    str     w9, [x23]
2:  ldr     w9, [x23, #0x4]
    and     x9, x9, #0x1f
    str     x9, [x20, #GIC_VALUE]
    set_priorities 50, 0xe0, 51, 0x20, 52, 0xc0, 53, 0x40, 54, 0xa0, 55, 0x60, 42, 0x80
    ldrb    w9, [x23, #(0x400 + 51)]
    str     x9, [x20, #GIC_VALUE]
    mov     w9, #(0x3f << 18)
    str     w9, [x23, #0x104]
    str     xzr, [x20, #IRQ_READY]
    /* 2: six interrupts, most urgent first (no WFI here: a WFI reached
     * just after the last one would exit to the host). */
    msr     daifclr, #2
    mov     x21, #6
3:  cmp     x19, x21
    b.lo    3b
    /* 3: nothing it can take: WFI reaches the host. */
    msr     daifset, #2
    wfi
    mov     w9, #(1 << 10)
    str     w9, [x23, #0x104]
    msr     daifclr, #2
    mov     x21, #7
4:  cmp     x19, x21
    b.lo    4b
    /* 4: set- and clear-pending. */
    mov     w9, #(1 << 11)
    str     w9, [x23, #0x204]
    str     w9, [x23, #0x284]
    str     w9, [x23, #0x104]
    ldr     w10, [x23, #0x204]
    str     x10, [x20, #GIC_VALUE]
    str     w9, [x23, #0x204]
    mov     x21, #8
5:  cmp     x19, x21
    b.lo    5b
    /* 5: SPI 44 to vCPU 1. */
    cmp     x25, #2
    b.eq    6f
    mov     x9, #1
    str     x9, [x23, #(0x6000 + 8 * 44)]
    b       7f
6:  mov     w9, #2
    strb    w9, [x23, #(0x800 + 44)]
7:  mov     w9, #(1 << 12)
    str     w9, [x23, #0x104]
    str     xzr, [x20, #IRQ_READY]
    msr     daifset, #2
    call_hyp PSCI_CPU_OFF
8:  b       8b
    irq_vectors
    take_irq either, report
    fault_vectors 10
guest_end gic

/*
 * Burst guest, for either GIC version (x0 = how many interrupts | 2 << 16 for
 * GICv2): opens its distributor and CPU interface, says it is ready
 * (IRQ_READY), and spins with IRQs unmasked until it has taken them all. Its
 * handler only logs the INTID in memory (the page after its code) and ends
 * it: no exit. More interrupts than list registers can only all arrive
 * through the maintenance interrupt. Then it reports the log (IRQ_REPORT, one
 * store each) and turns its VM off.
 */
guest_start burst, 4096
    and     x21, x0, #0xffff
    lsr     x25, x0, #16
    mov     x19, xzr
    mov     x20, #GUEST_UART
    mov     x22, #GUEST_GICC
    adr     x24, guest_burst_start
    add     x9, x24, #0x800
    add     x24, x24, #0x1000
    msr     vbar_el1, x9
    isb
    cmp     x25, #2
    b.eq    1f
    gicv3_open_all
    gicv3_cpu_interface_on
    isb
    b       2f
1:  gicv2_open_all
    gicv2_cpu_interface_on x22
2:  str     xzr, [x20, #IRQ_READY]
    msr     daifclr, #2
3:  cmp     x19, x21
    b.lo    3b
    msr     daifset, #2
    mov     x10, xzr
4:  ldr     x9, [x24, x10, lsl #3]
    str     x9, [x20, #IRQ_REPORT]
    add     x10, x10, #1
    cmp     x10, x21
    b.lo    4b
    call_hyp PSCI_SYSTEM_OFF
5:  b       5b
    irq_vectors
    take_irq either, log
    fault_vectors 10
guest_end burst

/*
 * IRQ-line guest, for a board without a GIC: x0 = ticks (bits 15:0) | the
 * period in counter ticks << 16. Its virtual timer interrupts it through the
 * hyp's virtual IRQ line (HCR_EL2.VI): it arms the timer and waits with WFI
 * for the ticks; then it says it is ready (IRQ_READY) and waits for the
 * host's line. Its IRQ handler first reads the interrupt status the host
 * emulates (IRQ_STATUS, a trap, at which the hyp recomputes the line):
 * nonzero is the host's line, which it acknowledges (IRQ_ACK: the host lowers
 * the line) and counts in x23; then a timer with its condition met counts a
 * tick in x19 and is re-armed. At the end it reports x19 | x23 << 16 with
 * HOST_CALL and turns its VM off.
 */
.set IRQ_STATUS, 0x58
.set IRQ_ACK, 0x60
guest_start line, 4096
    and     x21, x0, #0xffff
    lsr     x22, x0, #16
    mov     x19, xzr
    mov     x23, xzr
    mov     x20, #GUEST_UART
    adr     x9, guest_line_start
    add     x9, x9, #0x800
    msr     vbar_el1, x9
    arm_vtimer x22
    isb
    msr     daifclr, #2
1:  wfi
    cmp     x19, x21
    b.lo    1b
    msr     daifset, #2
    msr     cntv_ctl_el0, xzr
    isb
    str     xzr, [x20, #IRQ_READY]
    msr     daifclr, #2
2:  wfi
    cbz     x23, 2b
    msr     daifset, #2
    orr     x1, x19, x23, lsl #16
    call_hyp HOST_CALL
    call_hyp PSCI_SYSTEM_OFF
3:  b       3b
    irq_vectors
    ldr     x9, [x20, #IRQ_STATUS]
    cbz     x9, 4f
    str     xzr, [x20, #IRQ_ACK]
    add     x23, x23, #1
4:  mrs     x10, cntv_ctl_el0
    and     x10, x10, #7
    cmp     x10, #5
    b.ne    5f
    count_tick
5:  eret
    fault_vectors 10
guest_end line

/*
 * Remote-controlled GIC guest, for either GIC version (x0 = 2: GICv2, else
 * GICv3; the conformance checks, suites/conformance_gic.rs). It does what the
 * host tells it, one command at a time, so that the host can check each
 * architectural step and run the vCPU on another CPU between steps. A command
 * is two MMIO loads the host answers: REMOTE_CMD (the operation in bits 7:0,
 * an IPA in bits 63:32) and REMOTE_ARG (a value); the result goes to
 * REMOTE_RESULT with a 64-bit store (0 where an operation has none).
 * Operations (REMOTE_* in the suite):
 *   0 PSCI CPU_OFF, 1 PSCI SYSTEM_OFF (no result);
 *   2 a 32-bit store of the value at the IPA, 3 a 32-bit load from it;
 *   4..6 the value to ICC_SGI1R_EL1, ICC_SGI0R_EL1, ICC_ASGI1R_EL1;
 *   7 ICC_IAR1_EL1 read; 8, 9 the value to ICC_EOIR1_EL1, ICC_DIR_EL1;
 *   10..12 the value to ICC_PMR_EL1, ICC_BPR1_EL1, ICC_CTLR_EL1;
 *   13 ICC_RPR_EL1 read; 14 the value to ICC_IGRPEN1_EL1;
 *   15 unmask IRQs for at most `value` polls: the INTID the IRQ handler
 *      acknowledged (GICC_IAR or ICC_IAR1_EL1, not ended), 1023 if none;
 *   16 PSCI CPU_ON of the vCPU with MPIDR `value`, here, x0 the same: status;
 *   17..21 the virtual timer: the value to CNTV_CTL_EL0, CNTV_CTL_EL0 read,
 *      the value to CNTV_CVAL_EL0, to CNTV_TVAL_EL0, CNTV_TVAL_EL0 read;
 *   22..26 the same for the physical timer (CNTP_*);
 *   27 CNTVCT_EL0 read, 28 CNTPCT_EL0 read;
 *   29 WFI with IRQs masked (no result);
 *   30 an 8-bit store of the value at the IPA (no result).
 * The IRQ handler leaves IRQs masked on return. Any other exception reports
 * ESR_EL1 to IRQ_FAULT and turns the VM off.
 */
.set REMOTE_OPS, 31
guest_start remote, 4096
    mov     x25, x0
    mov     x20, #GUEST_UART
    install_vectors guest_remote_start
1:  fetch_command REMOTE_OPS, 3f, 2f
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
    b       20f
    b       21f
    b       22f
    b       23f
    b       24f
    b       25f
    b       26f
    b       30f
    b       31f
    b       32f
    b       33f
    b       34f
    b       35f
    b       36f
    b       37f
    b       38f
    b       39f
    b       40f
    b       41f
    b       42f
    b       43f
10: call_hyp PSCI_CPU_OFF
    b       10b
11: call_hyp PSCI_SYSTEM_OFF
    b       11b
12: str     w22, [x23]
    b       2b
13: ldr     w0, [x23]
    b       2b
14: msr     icc_sgi1r_el1, x22
    b       29f
15: msr     icc_sgi0r_el1, x22
    b       29f
16: msr     icc_asgi1r_el1, x22
    b       29f
17: mrs     x0, icc_iar1_el1
    b       2b
18: msr     icc_eoir1_el1, x22
    b       29f
19: msr     icc_dir_el1, x22
    b       29f
20: msr     icc_pmr_el1, x22
    b       29f
21: msr     icc_bpr1_el1, x22
    b       29f
22: msr     icc_ctlr_el1, x22
    b       29f
23: mrs     x0, icc_rpr_el1
    b       2b
24: msr     icc_igrpen1_el1, x22
    b       29f
25: mov     x19, #1023
    msr     daifclr, #2
27: cmp     x19, #1023
    b.ne    28f
    subs    x22, x22, #1
    b.hi    27b
28: msr     daifset, #2
    mov     x0, x19
    b       2b
26: function_id PSCI_CPU_ON_64
    mov     x1, x22
    adr     x2, guest_remote_start
    mov     x3, x25
    hvc     #0
    b       2b
29: isb
    b       2b
30: msr     cntv_ctl_el0, x22
    b       29b
31: mrs     x0, cntv_ctl_el0
    b       2b
32: msr     cntv_cval_el0, x22
    b       29b
33: msr     cntv_tval_el0, x22
    b       29b
34: mrs     x0, cntv_tval_el0
    b       2b
35: msr     cntp_ctl_el0, x22
    b       29b
36: mrs     x0, cntp_ctl_el0
    b       2b
37: msr     cntp_cval_el0, x22
    b       29b
38: msr     cntp_tval_el0, x22
    b       29b
39: mrs     x0, cntp_tval_el0
    b       2b
40: isb
    mrs     x0, cntvct_el0
    b       2b
41: isb
    mrs     x0, cntpct_el0
    b       2b
42: wfi
    b       2b
43: strb    w22, [x23]
    b       29b
    irq_vectors
    cmp     x25, #2
    b.ne    4f
    mov     x9, #GUEST_GICC
    ldr     w19, [x9, #0xc]
    b       5f
4:  mrs     x19, icc_iar1_el1
5:  mrs     x9, spsr_el1
    orr     x9, x9, #0x80
    msr     spsr_el1, x9
    eret
    fault_vectors 10
guest_end remote
