/*
 * Small EL1 guests the host shim runs in VMs. Each is position-independent code
 * between a start and an end label; the shim copies it into the page it gives
 * the VM at IPA GUEST_ENTRY and starts a vCPU there with x0 as an argument. The
 * guests run with their MMU off.
 */

.set GUEST_UART, 0x09000000     /* IPA of the UART the host shim emulates */
.set UART_STATUS, 0x18          /* a register whose reads the host answers */
.set PSCI_VERSION, 0x84000000
.set PSCI_SYSTEM_OFF, 0x84000008

.section .rodata.guests, "a"

/*
 * Console guest: prints "hello from guest <x0>", the byte the host answers to a
 * read of UART_STATUS, and the PSCI minor version the hyp reports, then a
 * newline, then turns its VM off.
 */
.balign 4
.global guest_console_start
guest_console_start:
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
    mov     x0, #(PSCI_VERSION & 0xffff)
    movk    x0, #(PSCI_VERSION >> 16), lsl #16
    hvc     #0
    and     x0, x0, #0xff
    add     x0, x0, #'0'
    strb    w0, [x20]
    mov     w2, #'\n'
    strb    w2, [x20]
    mov     x0, #(PSCI_SYSTEM_OFF & 0xffff)
    movk    x0, #(PSCI_SYSTEM_OFF >> 16), lsl #16
    hvc     #0
3:  b       3b
9:  .asciz  "hello from guest "
.balign 4
.global guest_console_end
guest_console_end:

/*
 * Misbehaving guest: executes an undefined instruction with no exception vector
 * (VBAR_EL1 = 0, which is not its memory), so every injected exception faults
 * again: the hyp must end the VM with a fatal exit, not loop or crash.
 */
.balign 4
.global guest_crash_start
guest_crash_start:
    udf     #0
.global guest_crash_end
guest_crash_end:

/* Off guest: turns its VM off at once (the stress test's guest). */
.balign 4
.global guest_off_start
guest_off_start:
    mov     x0, #(PSCI_SYSTEM_OFF & 0xffff)
    movk    x0, #(PSCI_SYSTEM_OFF >> 16), lsl #16
    hvc     #0
1:  b       1b
.global guest_off_end
guest_off_end:
