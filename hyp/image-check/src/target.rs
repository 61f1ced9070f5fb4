//! The report's entry from the image check (`image_check.S`) and its UART
//! writes, on the bare-metal target.

use crate::{report, stop_info, Conduit, Console, Damage, Reason, Sink, StopInfo, UartKind};

extern "C" {
    // The hardware routines of hyp/src/arch/aarch64/image_check.S, in the
    // Image's first pages like this code.
    fn image_check_read32(address: u64) -> u32;
    fn image_check_write32(address: u64, value: u32);
    fn image_check_read8(address: u64) -> u8;
    fn image_check_write8(address: u64, value: u8);
    fn image_check_stop(semihosting_exit: u64, conduit: u64) -> !;
}

/// Polls of a busy UART before a byte is dropped (the report must end even
/// if the console does not drain).
const UART_POLLS: u32 = 1_000_000;
/// Largest device tree read (the walk stays inside the blocks the header
/// names; this only bounds a corrupted `totalsize`).
const MAX_FDT_BYTES: u32 = 16 << 20;

struct Uart {
    console: Console,
}

impl Sink for Uart {
    #[link_section = ".text.image_check"]
    fn put(&mut self, byte: u8) {
        if byte == b'\n' {
            write(&self.console, b'\r');
        }
        write(&self.console, byte);
    }
}

head_text! {
    /// Writes one byte once the transmitter has room (or drops it).
    fn write(console: &Console, byte: u8) {
            let base = console.base;
            match console.kind {
                UartKind::Pl011 => {
                    /// UARTFR and its TXFF bit; UARTDR at offset 0.
                    const FR: u64 = 0x18;
                    const TXFF: u32 = 1 << 5;
                    let mut polls = 0;
                    // SAFETY: The device tree names a PL011 at `base`; the MMU
                    // is off, so its registers are at their physical address.
                    while polls < UART_POLLS && unsafe { image_check_read32(base + FR) } & TXFF != 0 {
                        polls += 1;
                    }
                    if polls < UART_POLLS {
                        // SAFETY: As above.
                        unsafe { image_check_write32(base, u32::from(byte)) };
                    }
                }
                UartKind::Ns16550 { reg_shift, io_width } => {
                    /// LSR (register 5) and its THRE bit; THR is register 0.
                    const LSR: u64 = 5;
                    const THRE: u32 = 1 << 5;
                    let lsr = base + (LSR << reg_shift);
                    let mut polls = 0;
                    loop {
                        // SAFETY: The device tree names an 8250/16550 at
                        // `base` with this register spacing and access width.
                        let status = unsafe {
                            if io_width == 4 { image_check_read32(lsr) } else { u32::from(image_check_read8(lsr)) }
                        };
                        if status & THRE != 0 {
                            break;
                        }
                        polls += 1;
                        if polls == UART_POLLS {
                            return;
                        }
                    }
                    // SAFETY: As above.
                    unsafe {
                        if io_width == 4 {
                            image_check_write32(base, u32::from(byte))
                        } else {
                            image_check_write8(base, byte)
                        }
                    }
                }
            }
    }

    /// Called by `image_check.S` when the Image's seal does not hold, on the
    /// boot stack, with the MMU off: `dtb` is the device tree (x0 at entry),
    /// `reason` 0 for a bad sealed size and 1 for a checksum mismatch.
    /// Reports on the console the device tree names and stops with a failure
    /// status (a semihosting exit of status 1 under `hyp.exit=semihosting`,
    /// else PSCI SYSTEM_OFF, else a parked CPU).
    ///
    /// # Safety
    ///
    /// Only for the entry code: `dtb` must be 0 or the address of a device
    /// tree (the boot protocol's x0), with the MMU off.
    #[no_mangle]
    pub unsafe extern "C" fn hyp_image_damaged(
        dtb: u64,
        reason: u64,
        sealed_size: u64,
        image_size: u64,
        recorded: u64,
        computed: u64,
    ) -> ! {
        let mut info = None;
        // The boot protocol puts the tree at an 8-byte aligned address.
        if dtb != 0 && dtb.is_multiple_of(8) {
            // SAFETY: x0 of the boot protocol: a device tree, whose header's
            // first 8 bytes are its magic and its total size.
            let total = u32::from_be(unsafe { image_check_read32(dtb + 4) }).min(MAX_FDT_BYTES);
            // SAFETY: The tree's `total` bytes (at most MAX_FDT_BYTES) are RAM
            // the bootloader filled; nothing writes them while this reads.
            let blob = unsafe { core::slice::from_raw_parts(dtb as *const u8, total as usize) };
            info = Some(stop_info(blob));
        }
        let reason = if reason == 0 { Reason::BadSize } else { Reason::Mismatch };
        let damage = Damage { reason, sealed_size, image_size, recorded, computed };
        if let Some(StopInfo { console: Some(console), .. }) = info {
            report(&damage, &mut Uart { console });
        }
        let (semihosting, conduit) = match info {
            Some(i) => (i.semihosting_exit, i.psci),
            None => (false, Conduit::None),
        };
        let conduit = match conduit {
            Conduit::None => 0,
            Conduit::Smc => 1,
            Conduit::Hvc => 2,
        };
        // SAFETY: The semihosting exit is asked for only when the bootargs
        // say a semihosting host is attached, as everywhere in the hyp.
        unsafe { image_check_stop(u64::from(semihosting), conduit) }
    }
}
