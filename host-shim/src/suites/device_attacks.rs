//! The hostile host's attacks through devices that master the bus: the GIC
//! ITS (its command queue and tables), the redistributors' LPI tables
//! (PROPBASER, PENDBASER, EnableLPIs), QEMU's fw_cfg DMA and the virtio-mmio
//! transports. Each is aimed at a protected VM's page and at the hyp's image;
//! each register access must be refused with an abort (so the device never
//! learns the address), the protected guest must then run its code unchanged,
//! the hyp must answer, and its invariant checker must be clean. Under
//! `hyp.dma=permissive` (FEATURES says so) the host gets fw_cfg and virtio
//! back, and the ITS and LPIs stay withheld.

use crate::harness::attack_target;
use crate::harness::gic::GicConfig;
use crate::harness::hostile_registers::{
    find, FW_CFG_DMA, GICR_CTLR, GICR_INVALLR, GICR_PENDBASER, GICR_PROPBASER, GICR_SETLPIR, GICR_TYPER, GICR_WAKER,
    GITS_BASER0, GITS_CBASER, GITS_CTLR, GITS_CWRITER,
};
use crate::harness::hypercall;
use crate::harness::platform::HostPlatform;
use crate::harness::probe::{read, read32, write32_refused, write_refused};
use crate::harness::report::check;
use crate::harness::scratch;

/// "virt": a virtio-mmio transport's magic value.
const VIRTIO_MAGIC: u32 = 0x7472_6976;

/// Runs every attack; `page` is a scratch page the shim gives a protected VM.
pub fn run_all(platform: &HostPlatform, page: u64) -> bool {
    // SAFETY: The device tree the hyp gave the shim, at the address it passed.
    let Ok(fdt) = (unsafe { fdt::Fdt::from_ptr(platform.device_tree.0 as *const u8) }) else {
        return check!(false, "device attacks: the device tree does not parse");
    };
    let hyp_image = platform.hyp_regions().first().map_or(0, |r| r.0);
    let mut passed = true;
    let flags = hypercall::platform_flags();
    let permissive = flags.is_ok_and(|f| f & hyp_abi::platform_flags::DMA_NOT_ISOLATED != 0);
    passed &= check!(flags.is_ok(), "FEATURES platform flags {flags:x?} (DMA isolated: {})", !permissive);

    // A protected guest whose code page is every attack's target.
    let Some(handle) = attack_target::create(page, "device attacks") else {
        return false;
    };
    let targets = [("the protected VM's page", page), ("the hyp's image", hyp_image)];

    if let Some(its) = find(&fdt, &["arm,gic-v3-its"]) {
        let mut refused = read(its + GITS_CTLR).is_none();
        for (_, target) in targets {
            refused &= write_refused(its + GITS_BASER0, target | 1 << 63);
        }
        let queue = scratch::page(10);
        refused &= write_refused(its + GITS_CBASER, queue | 1 << 63);
        refused &= write_refused(its + GITS_CWRITER, 0x20);
        passed &= check!(
            refused,
            "ITS at {its:#x} withheld: GITS_CTLR read, GITS_BASER0 (at the protected page, at the hyp's image), GITS_CBASER and GITS_CWRITER writes all aborted"
        );
    }
    if let Some(GicConfig::V3 { redistributors: rd, .. }) = platform.gic {
        let typer = read(rd + GICR_TYPER);
        passed &= check!(
            typer.is_some_and(|t| t >> 32 == 0),
            "GICR_TYPER of CPU 0's redistributor read through the hyp: {typer:x?}"
        );
        let mut refused = true;
        for (_, target) in targets {
            refused &= write_refused(rd + GICR_PROPBASER, target | 0xf);
            refused &= write_refused(rd + GICR_PENDBASER, target);
        }
        refused &= write32_refused(rd + GICR_CTLR, 1);
        refused &= write_refused(rd + GICR_INVALLR, 0);
        refused &= write_refused(rd + GICR_SETLPIR, 8192);
        let ctlr = read32(rd + GICR_CTLR);
        passed &= check!(
            refused && ctlr.is_some_and(|c| c & 1 == 0),
            "LPIs withheld: PROPBASER and PENDBASER (at the protected page, at the hyp's image), GICR_CTLR.EnableLPIs, INVALLR, SETLPIR writes aborted; GICR_CTLR reads {ctlr:x?}"
        );
        let waker = read32(rd + GICR_WAKER);
        let kept = waker.is_some_and(|w| !write32_refused(rd + GICR_WAKER, w & !0b110));
        let after = read32(rd + GICR_WAKER);
        passed &= check!(
            kept && after == waker,
            "GICR_WAKER written from x25 through the hyp (its slow path): {waker:x?} -> {after:x?}"
        );
    }
    if let Some(fw_cfg) = find(&fdt, &["qemu,fw-cfg-mmio"]) {
        passed &= if permissive {
            // The host may program fw_cfg's DMA now, at any address: no attack
            // is aimed (it would succeed); its registers answer.
            let data = read(fw_cfg);
            check!(data.is_some(), "fw_cfg at {fw_cfg:#x} is the host's under hyp.dma=permissive")
        } else {
            let mut refused = read(fw_cfg).is_none();
            for (_, target) in targets {
                refused &= write_refused(fw_cfg + FW_CFG_DMA, target.to_be());
            }
            check!(
                refused,
                "fw_cfg at {fw_cfg:#x} withheld: its data read and its DMA address (the protected page, the hyp's image) aborted"
            )
        };
    }
    if let Some(virtio) = find(&fdt, &["virtio,mmio"]) {
        let magic = read32(virtio);
        passed &= if permissive {
            check!(
                magic == Some(VIRTIO_MAGIC),
                "virtio-mmio at {virtio:#x} is the host's under hyp.dma=permissive: magic {magic:x?}"
            )
        } else {
            check!(magic.is_none(), "virtio-mmio at {virtio:#x} withheld: its magic read aborted")
        };
    }

    // The target page is intact: the protected guest runs its code as loaded.
    passed &= attack_target::check_intact(handle, "device attacks");
    passed
}
