/*
 * Memory-call guest: makes whatever guest call the host asks for, and loads
 * and stores its own memory, one command at a time, so that the host can
 * drive a protected guest through the vendor calls (KVM's UID, FEATURES,
 * HYP_MEMINFO, MEM_SHARE, MEM_UNSHARE, MEM_RELINQUISH) and watch what each
 * does to the memory both sides see. Each command is four loads the host
 * answers: MEMCALL_CMD, then MEMCALL_ARG1..3. A command of 0 loads the u64 at
 * IPA ARG1 and reports it; 1 stores ARG2 there and reports 0; anything else
 * is a function ID: HVC #0 with x0 = CMD, x1..x3 = ARG1..3, then x0..x3 are
 * reported in order. Reports are 64-bit stores to MEMCALL_RESULT. An
 * exception it takes reports ESR_EL1 to IRQ_FAULT and skips the instruction.
 */
.set MEMCALL_CMD, 0x80          /* UART offsets: the command, */
.set MEMCALL_ARG1, 0x88         /* its arguments, */
.set MEMCALL_ARG2, 0x90
.set MEMCALL_ARG3, 0x98
.set MEMCALL_RESULT, 0xa0       /* and where the guest reports */

.section .rodata.guests, "a"

guest_start memcall, 4096
    mov     x20, #GUEST_UART
    install_vectors guest_memcall_start
1:  ldr     x0, [x20, #MEMCALL_CMD]
    ldr     x1, [x20, #MEMCALL_ARG1]
    ldr     x2, [x20, #MEMCALL_ARG2]
    ldr     x3, [x20, #MEMCALL_ARG3]
    cbz     x0, 2f
    cmp     x0, #1
    b.eq    3f
    hvc     #0
    str     x0, [x20, #MEMCALL_RESULT]
    str     x1, [x20, #MEMCALL_RESULT]
    str     x2, [x20, #MEMCALL_RESULT]
    str     x3, [x20, #MEMCALL_RESULT]
    b       1b
2:  ldr     x0, [x1]
    str     x0, [x20, #MEMCALL_RESULT]
    b       1b
3:  str     x2, [x1]
    str     xzr, [x20, #MEMCALL_RESULT]
    b       1b
/* Its vector table: every entry reports ESR_EL1 and skips the instruction. */
.balign 2048
    .rept 16
    .balign 128
    mrs     x9, esr_el1
    str     x9, [x20, #IRQ_FAULT]
    mrs     x10, elr_el1
    add     x10, x10, #4
    msr     elr_el1, x10
    eret
    .endr
guest_end memcall
