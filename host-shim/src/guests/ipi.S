/*
 * IPI ping-pong guest (GICv3), two pages: vCPU 0's code, then vCPU 1's at
 * +0x1000. x0 = rounds. vCPU 0 opens its distributor, redistributor and
 * virtual CPU interface, starts vCPU 1 with PSCI CPU_ON and waits for its
 * first SGI (it is ready); then, `rounds` times, sends SGI 1 to vCPU 1
 * (ICC_SGI1R_EL1) and waits for SGI 1 back. Then it reports the rounds done
 * (a store to IRQ_REPORT of its UART) and turns the VM off. vCPU 1 opens its own
 * redistributor and interface, sends SGI 1 to vCPU 0, and answers every SGI
 * with SGI 1 to vCPU 0, for ever. Both wait with IRQs masked: a WFI returns
 * when an interrupt is pending, the wait acknowledges it (ICC_IAR1_EL1) and
 * ends it (ICC_EOIR1_EL1). No timer, no exception vectors.
 */

.section .rodata.guests, "a"

/* Waits for an interrupt and ends it (IRQs masked). Uses x9. */
.macro ipi_wait_sgi
98: wfi
    mrs     x9, icc_iar1_el1
    cmp     x9, #1023               /* spurious: nothing pending yet */
    b.eq    98b
    msr     icc_eoir1_el1, x9
.endm

/* Sends SGI 1 to the vCPU with MPIDR Aff0 = `aff0` (target list bit). Uses x9. */
.macro ipi_send_sgi aff0
    mov     x9, #(1 << 24)
    orr     x9, x9, #(1 << \aff0)
    msr     icc_sgi1r_el1, x9
    isb
.endm

guest_start ipi, 4096
    mov     x21, x0
    mov     x22, xzr
    msr     daifset, #2
    gicv3_open_all
    gicv3_cpu_interface_on
    start_vcpu1 guest_ipi_start, 0
    ipi_wait_sgi
1:  cmp     x22, x21
    b.hs    2f
    ipi_send_sgi 1
    ipi_wait_sgi
    add     x22, x22, #1
    b       1b
2:  mov     x20, #GUEST_UART
    str     x22, [x20, #IRQ_REPORT]
    call_hyp PSCI_SYSTEM_OFF
3:  b       3b

/* vCPU 1 */
.balign 4096
    msr     daifset, #2
    gicv3_open_all
    gicv3_cpu_interface_on
    ipi_send_sgi 0
1:  ipi_wait_sgi
    ipi_send_sgi 0
    b       1b
guest_end ipi
