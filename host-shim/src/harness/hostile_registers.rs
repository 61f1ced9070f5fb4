//! The device registers a host must never get to write: those that would make
//! a bus master or the GIC write memory (the ITS, the redistributors' LPI
//! tables, the SMMU, and with DMA isolation fw_cfg's DMA and virtio). The
//! device attacks aim at them one by one; the hostile host writes them at random.

use crate::harness::gic::GicConfig;
use crate::harness::hypercall;
use crate::harness::platform::HostPlatform;

/// ITS registers.
pub const GITS_CTLR: u64 = 0x0;
pub const GITS_CBASER: u64 = 0x80;
pub const GITS_CWRITER: u64 = 0x88;
pub const GITS_BASER0: u64 = 0x100;
/// Redistributor (RD frame) registers.
pub const GICR_CTLR: u64 = 0x0;
pub const GICR_TYPER: u64 = 0x8;
pub const GICR_WAKER: u64 = 0x14;
pub const GICR_SETLPIR: u64 = 0x40;
pub const GICR_PROPBASER: u64 = 0x70;
pub const GICR_PENDBASER: u64 = 0x78;
pub const GICR_INVALLR: u64 = 0xb0;
/// fw_cfg's DMA address register (big-endian; a write starts a transfer).
pub const FW_CFG_DMA: u64 = 0x10;

/// The first `reg` address of the first node compatible with `names`.
pub fn find(fdt: &fdt::Fdt<'_>, names: &[&str]) -> Option<u64> {
    let node = fdt.find_compatible(names)?;
    Some(node.reg()?.next()?.starting_address as u64)
}

/// Whether the hyp leaves bus masters unconfined (`hyp.dma=permissive`:
/// FEATURES' platform flags say so).
pub fn dma_permissive() -> bool {
    hypercall::platform_flags().is_ok_and(|f| f & hyp_abi::platform_flags::DMA_NOT_ISOLATED != 0)
}

/// Most device registers the hostile host's fuzzer writes.
pub const MAX_HOSTILE_REGISTERS: usize = 16;

/// The device registers whose every write the hyp must refuse (address, and
/// whether the register is 32 bits wide): the ITS's, the redistributor's LPI
/// controls, the SMMU's (CR0, STRTAB_BASE, CMDQ_BASE, GBPA), and with DMA
/// isolation fw_cfg's DMA and a virtio transport's.
pub fn hostile_registers(platform: &HostPlatform) -> ([(u64, bool); MAX_HOSTILE_REGISTERS], usize) {
    let mut registers = [(0, false); MAX_HOSTILE_REGISTERS];
    let mut count = 0;
    let mut add = |address: u64, narrow: bool| {
        if let Some(slot) = registers.get_mut(count) {
            *slot = (address, narrow);
            count += 1;
        }
    };
    // SAFETY: The device tree the hyp gave the shim, at the address it passed.
    let Ok(fdt) = (unsafe { fdt::Fdt::from_ptr(platform.device_tree.0 as *const u8) }) else {
        return (registers, 0);
    };
    if let Some(its) = find(&fdt, &["arm,gic-v3-its"]) {
        for offset in [GITS_CTLR, GITS_CBASER, GITS_CWRITER, GITS_BASER0] {
            add(its + offset, false);
        }
    }
    if let Some(GicConfig::V3 { redistributors: rd, .. }) = platform.gic {
        for offset in [GICR_PROPBASER, GICR_PENDBASER, GICR_INVALLR, GICR_SETLPIR] {
            add(rd + offset, false);
        }
        add(rd + GICR_CTLR, true);
    }
    if let Some(smmu) = find(&fdt, &["arm,smmu-v3"]) {
        for (offset, narrow) in [(0x20, true), (0x44, true), (0x80, false), (0x90, false)] {
            add(smmu + offset, narrow);
        }
    }
    if !dma_permissive() {
        if let Some(fw_cfg) = find(&fdt, &["qemu,fw-cfg-mmio"]) {
            add(fw_cfg + FW_CFG_DMA, false);
        }
        if let Some(virtio) = find(&fdt, &["virtio,mmio"]) {
            add(virtio + 0x70, true);
        }
    }
    (registers, count)
}
