/*
 * Sharing guest (the hostile host's): does one thing with the page after its
 * code (its IPA + 0x1000), once, as x0 says: 2 shares it with the host and
 * takes it back (MEM_SHARE, MEM_UNSHARE), 3 gives it to the host
 * (MEM_RELINQUISH), anything else shares it (MEM_SHARE); then it turns its
 * VM off at every run. It touches nothing else and makes no other exit, so
 * that once its VM is off the host knows the page's state. In a
 * non-protected VM each call answers NOT_SUPPORTED and nothing changes.
 */
.set MEM_SHARE, 0xC6000003
.set MEM_UNSHARE, 0xC6000004
.set MEM_RELINQUISH, 0xC6000009

.section .rodata.guests, "a"

guest_start share, 4
    mov     x19, x0
    adr     x20, guest_share_start
    add     x20, x20, #0x1000
    cmp     x19, #3
    b.eq    2f
    call_hyp_with MEM_SHARE, x20
    cmp     x19, #2
    b.ne    3f
    call_hyp_with MEM_UNSHARE, x20
    b       3f
2:  call_hyp_with MEM_RELINQUISH, x20
3:  call_hyp PSCI_SYSTEM_OFF
    b       3b
guest_end share
