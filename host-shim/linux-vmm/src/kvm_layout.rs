//! The guest platform `hyp-vmm` builds on `/dev/kvm`, and the encodings of
//! Linux's KVM API for arm64 it uses (`Documentation/virt/kvm/api.rst`):
//! the VM type of `KVM_CREATE_VM`, where the vGIC goes, the interrupt number
//! of `KVM_IRQ_LINE` for an SPI. Plain numbers without the hardware, so that their tests
//! run on the development machine; the binary checks them against
//! `kvm-bindings` at compile time.

use vmm::guest_tree::{GuestGic, GICV2_CPU_INTERFACE_SIZE, GICV3_DISTRIBUTOR_SIZE, GICV3_REDISTRIBUTOR_SIZE};

/// Where the guest's RAM starts (slot 0).
pub const GUEST_RAM: u64 = 0x8000_0000;
/// The guest's PL011 and its interrupt (SPI 1).
pub const UART: u64 = 0x0900_0000;
pub const UART_INTID: u32 = 33;

/// The virtio-mmio devices: windows of 0x200 bytes from here (where QEMU's
/// virt board has them), interrupts from SPI 2 (INTID 34) on, one each.
pub const VIRTIO_MMIO_BASE: u64 = 0x0a00_0000;
pub const VIRTIO_FIRST_INTID: u32 = 34;
/// The most devices: one SPI each, within the vGIC's interrupts.
pub const VIRTIO_MAX_DEVICES: usize = (GIC_INTERRUPTS - VIRTIO_FIRST_INTID) as usize;
/// A protected guest's restricted DMA pool (`vmm::guest_tree`): the top of
/// its RAM. Its virtio buffers and rings are bounced through it.
pub const DMA_POOL_SIZE: u64 = 16 << 20;

/// The virtio-mmio window of device `index`.
pub const fn virtio_window(index: usize) -> u64 {
    VIRTIO_MMIO_BASE + index as u64 * vmm::guest_tree::VIRTIO_MMIO_SIZE
}

/// The vGIC, as kvmtool lays it out: the distributor in the 64 KiB below
/// 1 GiB, a GICv3's redistributors (128 KiB a vCPU) right below it, a
/// GICv2's CPU interface 128 KiB below it. Clear of the UART and of RAM.
pub const GIC_DISTRIBUTOR: u64 = 0x3fff_0000;
pub const GICV2_CPU_INTERFACE: u64 = GIC_DISTRIBUTOR - 0x2_0000;

/// Interrupts the vGIC gets (`KVM_DEV_ARM_VGIC_GRP_NR_IRQS`): SGIs, PPIs and
/// 32 SPIs, the least KVM takes (a multiple of 32, at least 64); the hyp has
/// at most 96.
pub const GIC_INTERRUPTS: u32 = 64;

/// `KVM_CREATE_VM`'s type bit 31 for a protected VM (Linux's pKVM;
/// `KVM_VM_TYPE_ARM_PROTECTED`, not in every uapi header yet).
pub const VM_TYPE_PROTECTED: u64 = 1 << 31;
/// The IPA size a VM type of 0 means (Linux's `KVM_PHYS_SHIFT`).
const DEFAULT_IPA_BITS: u32 = 40;
/// The least IPA size `KVM_CREATE_VM` takes.
const MIN_IPA_BITS: u32 = 32;

/// `KVM_IRQ_LINE`'s interrupt field for arm64: type in bits 27:24 (1: SPI,
/// 2: PPI), vCPU index in 23:16 (PPIs only), INTID in 15:0.
pub const IRQ_TYPE_SHIFT: u32 = 24;
pub const IRQ_TYPE_SPI: u32 = 1;

/// The GICv3 of a VM of `vcpus` vCPUs.
pub fn gic_v3(vcpus: u32) -> GuestGic {
    let redistributors = GIC_DISTRIBUTOR - GICV3_REDISTRIBUTOR_SIZE * u64::from(vcpus);
    GuestGic::V3 { distributor: GIC_DISTRIBUTOR, redistributors }
}

/// The GICv2 (at most 8 vCPUs, as the hyp).
pub fn gic_v2() -> GuestGic {
    GuestGic::V2 { distributor: GIC_DISTRIBUTOR, cpu_interface: GICV2_CPU_INTERFACE }
}

/// The `KVM_CREATE_VM` type for a VM whose guest-physical addresses end
/// below `address_end`: the fewest IPA bits that cover it (at least 32),
/// checked against the host's limit `ipa_limit` (`KVM_CAP_ARM_VM_IPA_SIZE`;
/// 0 if the host has no such capability: then only the default 40 bits,
/// type 0), and bit 31 for a protected VM.
pub fn vm_type(ipa_limit: u32, address_end: u64, protected: bool) -> Result<u64, String> {
    let needed = (u64::BITS - address_end.saturating_sub(1).leading_zeros()).max(MIN_IPA_BITS);
    let ipa_bits = if ipa_limit == 0 {
        if needed > DEFAULT_IPA_BITS {
            return Err(format!("the guest needs {needed} IPA bits; this KVM gives {DEFAULT_IPA_BITS}"));
        }
        0
    } else if needed > ipa_limit {
        return Err(format!("the guest needs {needed} IPA bits; this KVM gives at most {ipa_limit}"));
    } else {
        u64::from(needed)
    };
    Ok(ipa_bits | if protected { VM_TYPE_PROTECTED } else { 0 })
}

/// `KVM_IRQ_LINE`'s interrupt number of shared interrupt `intid` (32 or more).
pub fn spi_line(intid: u32) -> u32 {
    IRQ_TYPE_SPI << IRQ_TYPE_SHIFT | (intid & 0xffff)
}

/// The GIC's frames do not overlap: the GICv3 distributor's 64 KiB end where
/// the 1 GiB line is, the redistributors below it.
const _: () = assert!(GIC_DISTRIBUTOR + GICV3_DISTRIBUTOR_SIZE == 0x4000_0000);
const _: () = assert!(GICV2_CPU_INTERFACE + GICV2_CPU_INTERFACE_SIZE <= GIC_DISTRIBUTOR);
/// The virtio windows sit between the UART and the GIC.
const _: () = assert!(VIRTIO_MMIO_BASE >= UART + 0x1000);
const _: () = assert!(virtio_window(VIRTIO_MAX_DEVICES) <= GICV2_CPU_INTERFACE - 0x10_0000);
const _: () = assert!(VIRTIO_FIRST_INTID > UART_INTID);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gic_sits_below_1_gib_clear_of_the_uart_and_ram() {
        assert_eq!(gic_v3(1), GuestGic::V3 { distributor: 0x3fff_0000, redistributors: 0x3ffd_0000 });
        assert_eq!(gic_v3(3), GuestGic::V3 { distributor: 0x3fff_0000, redistributors: 0x3ff9_0000 });
        assert_eq!(gic_v3(8), GuestGic::V3 { distributor: 0x3fff_0000, redistributors: 0x3fef_0000 });
        assert_eq!(gic_v2(), GuestGic::V2 { distributor: 0x3fff_0000, cpu_interface: 0x3ffd_0000 });
        // The most vCPUs' redistributors still clear the UART; every frame is
        // 64 KiB aligned, as KVM wants, and below the guest's RAM.
        let GuestGic::V3 { redistributors, .. } = gic_v3(8) else { unreachable!() };
        assert!(redistributors > UART + 0x1000 && redistributors.is_multiple_of(0x1_0000));
        assert!(GICV2_CPU_INTERFACE.is_multiple_of(0x1_0000) && GIC_DISTRIBUTOR < GUEST_RAM);
    }

    #[test]
    fn the_vm_type_has_the_fewest_ipa_bits_and_the_protected_bit() {
        // 512 MiB of RAM at 2 GiB: 32 bits.
        assert_eq!(vm_type(48, 0xa000_0000, false), Ok(32));
        assert_eq!(vm_type(40, 0x1_0000_0000, true), Ok(32 | 1 << 31));
        assert_eq!(vm_type(40, 0x1_0000_0001, false), Ok(33));
        assert_eq!(vm_type(36, 0x10_0000_0000, false), Ok(36));
        assert!(vm_type(36, 0x10_0000_0001, false).is_err());
        // No KVM_CAP_ARM_VM_IPA_SIZE: type 0 (40 bits) or nothing.
        assert_eq!(vm_type(0, 0xa000_0000, true), Ok(1 << 31));
        assert!(vm_type(0, 0x100_0000_0001, false).is_err());
        assert_eq!(vm_type(48, 0, false), Ok(32));
    }

    #[test]
    fn irq_line_numbers_follow_the_arm64_layout() {
        assert_eq!(spi_line(33), 0x0100_0021);
        assert_eq!(spi_line(95), 0x0100_005f);
    }
}
