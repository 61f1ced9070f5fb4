//! `guest-counter`: prints the virtual counter (CNTVCT_EL0) and its frequency,
//! for the Linux-guest boot-time comparison (`scripts/bench-linux-boot`). The
//! guest's `/init` runs it just before its user-space marker
//! (`scripts/linux-guest-init`). Under QEMU's `-icount shift=0` one tick is
//! 10^9 / frequency instructions (of every CPU) since the guest's virtual time
//! began: its VM's creation under the hyp (CNTVOFF_EL2), QEMU's reset without
//! it. Linux lets user space read the counter (CNTKCTL_EL1.EL0VCTEN, for its
//! vDSO).

fn main() {
    #[cfg(target_arch = "aarch64")]
    {
        let (count, frequency): (u64, u64);
        // SAFETY: Reads two counter registers that EL0 may read; no memory is
        // touched.
        unsafe {
            core::arch::asm!(
                "isb",
                "mrs {count}, cntvct_el0",
                "mrs {frequency}, cntfrq_el0",
                count = out(reg) count,
                frequency = out(reg) frequency,
                options(nomem, nostack),
            );
        }
        println!("linux-guest: virtual counter {count} at {frequency} Hz");
    }
}
