/*
 * What the guests share: where their devices are, the function IDs they call,
 * and the macros of their repeated blocks. Assembled in front of guests.S and
 * leak.S (guests/mod.rs).
 */

.set GUEST_UART, 0x03000000     /* IPA of the UART the host shim emulates for its guests */
.set UART_STATUS, 0x18          /* a register whose reads the host answers */
.set PSCI_VERSION, 0x84000000
.set PSCI_SYSTEM_OFF, 0x84000008
.set PSCI_SYSTEM_RESET, 0x84000009
.set GUEST_RESULT, 0x20         /* UART offset where the memory test reports */
.set HOST_CALL, 0xC5000001      /* a standard hypervisor call the hyp leaves to the host */
.set PSCI_CPU_OFF, 0x84000002
.set PSCI_CPU_ON_64, 0xC4000003
.set PSCI_AFFINITY_INFO_64, 0xC4000004
.set PROBE_REPORT, 0x30        /* UART offset where the probing guest reports */
.set SMP_VCPUS, 4               /* vCPUs of the SMP guest's VM */
.set SMP_WAIT, 0x10000000       /* polls before a vCPU gives up waiting for the others */
.set GUEST_GICD, 0x02000000     /* hyp_abi::GUEST_GIC_DISTRIBUTOR */
.set GUEST_GICR, 0x02100000     /* hyp_abi::GUEST_GICV3_REDISTRIBUTORS */
.set GUEST_GICC, 0x02010000     /* hyp_abi::GUEST_GICV2_CPU_INTERFACE */
.set IRQ_REPORT, 0x38           /* UART offsets where the interrupt guests report an INTID, */
.set IRQ_FAULT, 0x40            /* an unexpected exception's ESR_EL1, */
.set IRQ_READY, 0x48            /* and that they are ready */

/*
 * A guest's image is the code between its two labels, guest_<name>_start and
 * guest_<name>_end (guests/mod.rs copies it into the VM's page).
 */
.macro guest_start name, align
.balign \align
.global guest_\name\()_start
guest_\name\()_start:
.endm

.macro guest_end name
.global guest_\name\()_end
guest_\name\()_end:
.endm

/* x0 = `fn`, a 32-bit SMCCC function ID. */
.macro function_id fn
    mov     x0, #(\fn & 0xffff)
    movk    x0, #(\fn >> 16), lsl #16
.endm

/* x0 = `fn`, then HVC #0: a PSCI or hypervisor call. */
.macro call_hyp fn
    function_id \fn
    hvc     #0
.endm

/*
 * `count` exception vectors that report ESR_EL1 to IRQ_FAULT (x20 = the guest
 * UART) and turn the VM off: for the interrupt guests' unexpected exceptions.
 */
.macro fault_vectors count
    .rept \count
    .balign 128
    mrs     x9, esr_el1
    str     x9, [x20, #IRQ_FAULT]
    call_hyp PSCI_SYSTEM_OFF
    .endr
.endm

/*
 * Opens the guest's distributor, GICD_CTLR = `ctlr`, and enables the SPIs
 * the tests use (INTIDs 32..96 of its 32..288); with `sgis_ppis` yes, every SGI and PPI too (GICv2, whose
 * distributor banks them). Uses x9, w10 (left -1).
 */
.macro open_distributor ctlr, sgis_ppis
    mov     x9, #GUEST_GICD
    mov     w10, #\ctlr
    str     w10, [x9]
    mov     w10, #-1
    .ifc \sgis_ppis, yes
    str     w10, [x9, #0x100]
    .endif
    str     w10, [x9, #0x104]
    str     w10, [x9, #0x108]
.endm

/*
 * Opens the guest's GICv3 distributor (both groups, affinity routing) and
 * this vCPU's redistributor (awake), and enables every SGI and PPI and the
 * SPIs the tests use (INTIDs 0..96). Uses x9..x12.
 */
.macro gicv3_open_all
    open_distributor 0x13, no
    mrs     x11, mpidr_el1
    and     x11, x11, #0xff
    mov     x12, #GUEST_GICR
    add     x12, x12, x11, lsl #17
    str     wzr, [x12, #0x14]
    add     x12, x12, #0x10, lsl #12
    str     w10, [x12, #0x100]
.endm

/*
 * On vCPU 0 (MPIDR_EL1.Aff0 0): PSCI CPU_ON of vCPU 1 at the page after
 * `code`, with x0 = `context` there. A protected VM's secondaries start only
 * this way (the host may not set their entry); the call ends the run with a
 * CPU_ON exit, so that the host runs vCPU 1. In a VM without a vCPU 1 it
 * answers INVALID_PARAMETERS and nothing happens. Uses x0..x3, x9.
 */
.macro start_vcpu1 code, context
    mrs     x9, mpidr_el1
    tst     x9, #0xff
    b.ne    99f
    function_id PSCI_CPU_ON_64
    mov     x1, #1
    adr     x2, \code
    add     x2, x2, #0x1000
    mov     x3, #\context
    hvc     #0
99:
.endm

/*
 * The command registers of the guests the host drives one command at a time
 * (the remote, debug and CPU conformance guests), UART offsets: the host
 * answers loads of REMOTE_CMD (the operation in bits 7:0, an argument in bits
 * 63:32) and REMOTE_ARG (a value); the result goes to REMOTE_RESULT.
 */
.set REMOTE_CMD, 0x68
.set REMOTE_ARG, 0x70
.set REMOTE_RESULT, 0x78

/*
 * Fetches the next command (x20 = the guest UART): x21 = its operation, x22
 * = REMOTE_ARG, x23 = its bits 63:32, x0 = 0 (the result of an operation
 * that has none); then branches to entry x21 of `table` (one branch
 * instruction per operation), or to `unknown` if the operation is `ops` or
 * more. Uses x9.
 */
.macro fetch_command ops, table, unknown
    ldr     x21, [x20, #REMOTE_CMD]
    ldr     x22, [x20, #REMOTE_ARG]
    lsr     x23, x21, #32
    and     x21, x21, #0xff
    mov     x0, xzr
    cmp     x21, #\ops
    b.hs    \unknown
    adr     x9, \table
    add     x9, x9, x21, lsl #2
    br      x9
.endm

/* The same for a GICv2 distributor (banked SGIs and PPIs). Uses x9, x10. */
.macro gicv2_open_all
    open_distributor 1, yes
.endm

/* x0 = `fn`, x1 = `arg`, then HVC #0. */
.macro call_hyp_with fn, arg
    function_id \fn
    mov     x1, \arg
    hvc     #0
.endm

/* VBAR_EL1 = `start` + 0x800, where each guest with vectors keeps them. Uses x9. */
.macro install_vectors start
    adr     x9, \start
    add     x9, x9, #0x800
    msr     vbar_el1, x9
    isb
.endm

/* Opens the GICv3 virtual CPU interface: priority mask 0xff, group 1 on. Uses x9 (left 1). */
.macro gicv3_cpu_interface_on
    mov     x9, #0xff
    msr     icc_pmr_el1, x9
    mov     x9, #1
    msr     icc_igrpen1_el1, x9
.endm

/* Opens the GICv2 CPU interface at `gicc`: GICC_PMR 0xf8, group 0 on. Uses w9 (left 1). */
.macro gicv2_cpu_interface_on gicc
    mov     w9, #0xf8
    str     w9, [\gicc, #0x4]
    mov     w9, #1
    str     w9, [\gicc, #0x0]
.endm

/* Arms the virtual timer `period` (a register) counter ticks ahead. Uses x9. */
.macro arm_vtimer period
    mrs     x9, cntvct_el0
    add     x9, x9, \period
    msr     cntv_cval_el0, x9
    mov     x9, #1
    msr     cntv_ctl_el0, x9
.endm

/*
 * The vector table at +0x800 of a guest that takes IRQs: every entry reports
 * to IRQ_FAULT and turns the VM off (fault_vectors), but the IRQ one (+0x280,
 * current EL with SP_EL1), which is the code after this macro, up to the
 * `fault_vectors 10` that ends the table.
 */
.macro irq_vectors
    .balign 2048
    fault_vectors 5
    .balign 128
.endm

/*
 * In a timer handler: counts a tick in x19; the last one (x21) turns the
 * timer off, any other re-arms it x22 counter ticks later. Uses x10.
 */
.macro count_tick
    add     x19, x19, #1
    cmp     x19, x21
    b.lo    96f
    msr     cntv_ctl_el0, xzr       /* the last tick: the timer goes off */
96: mrs     x10, cntv_cval_el0
    add     x10, x10, x22
    msr     cntv_cval_el0, x10
.endm

/*
 * In an IRQ handler: acknowledges the interrupt, stores its INTID where `to`
 * says (report: to IRQ_REPORT, an MMIO exit; log: to the log at x24, entry
 * x19), ends it and counts it in x19, and returns. `gic` is v3 (ICC_*
 * registers), v2 (the GICC at x22), or either (x25 = 2: GICv2). Uses x9, x10.
 */
.macro take_irq gic, to
    .ifc \gic, either
    cmp     x25, #2
    b.eq    97f
    .endif
    .ifnc \gic, v2
    mrs     x9, icc_iar1_el1
    store_intid x9, \to
    msr     icc_eoir1_el1, x9
    .endif
    .ifc \gic, either
    b       98f
97:
    .endif
    .ifnc \gic, v3
    ldr     w9, [x22, #0xc]
    and     x10, x9, #0x3ff
    store_intid x10, \to
    str     w9, [x22, #0x10]
    .endif
98: add     x19, x19, #1
    eret
.endm

/* GICD_IPRIORITYR of the distributor at x23: `intid, priority` pairs. Uses w9. */
.macro set_priorities intid, priority, more:vararg
    mov     w9, #\priority
    strb    w9, [x23, #(0x400 + \intid)]
    .ifnb \more
    set_priorities \more
    .endif
.endm

.macro store_intid intid, to
    .ifc \to, report
    str     \intid, [x20, #IRQ_REPORT]
    .else
    str     \intid, [x24, x19, lsl #3]
    .endif
.endm
