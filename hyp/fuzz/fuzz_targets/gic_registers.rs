//! A hostile guest at its GIC: any access (frame, offset, size, value) to its
//! distributor and redistributors from any of its vCPUs, mixed with host
//! injections and SPI lines, list-register fills and give-backs, on either GIC version. The
//! model must never panic, never present an INTID the VM does not have, never
//! present one interrupt twice to a vCPU, never let two vCPUs hold the same
//! SPI, and never name an SGI source the VM does not have (GICv2) or any
//! source (GICv3).

#![no_main]

use libfuzzer_sys::fuzz_target;
use hyp_fuzz::arch::list_registers::{lr_source, VgicState};
use hyp_fuzz::vm::{vgic_dist, vgic_mmio};

use vgic_dist::{Distributor, GicVersion, INTID_LIMIT};

const LIST_REGISTERS: usize = 4;

fuzz_target!(|data: &[u8]| {
    let Some((&setup, ops)) = data.split_first() else {
        return;
    };
    let version = if setup & 1 == 0 { GicVersion::V3 } else { GicVersion::V2 };
    let vcpus = 1 + usize::from(setup >> 1) % 8;
    let mut gic = Distributor::new(version, vcpus);
    let mut lrs = vec![VgicState::default(); vcpus];
    for op in ops.chunks(12) {
        let byte = |i: usize| op.get(i).copied().unwrap_or(0);
        let vcpu = usize::from(byte(1)) % vcpus;
        let value = u64::from_le_bytes(core::array::from_fn(|i| byte(4 + i)));
        match byte(0) % 6 {
            0 | 1 => {
                // A register access: an IPA in or near the GIC windows.
                let ipa = hyp_abi::GUEST_GIC_DISTRIBUTOR + (u64::from(byte(2)) << 12 | u64::from(byte(3)) << 4) * 2
                    + value % 8;
                if let Some((frame, offset)) = vgic_mmio::frame_of(version, vcpus, &vgic_mmio::GicLayout::default(), ipa) {
                    let size = 1 << (byte(2) % 4);
                    let write = (byte(0) % 6 == 1).then_some(value);
                    let _ = gic.mmio(vcpu, frame, offset, size, write);
                }
            }
            2 if byte(3) & 4 != 0 => {
                // A device model's line, raised or lowered.
                let _ = gic.set_spi_level(u32::from(byte(2)) | u32::from(byte(3) & 3) << 8, byte(3) & 8 != 0);
            }
            2 => {
                let _ = gic.make_pending(vcpu, u32::from(byte(2)) | u32::from(byte(3) & 3) << 8);
            }
            3 => {
                let hw = (byte(2) & 1 != 0).then_some(27);
                gic.fill(vcpu, &mut lrs[vcpu], LIST_REGISTERS, hw);
            }
            5 => {
                // An access to the pending registers gives back what the
                // list registers hold as pending.
                gic.unfill_pending(vcpu, &mut lrs[vcpu]);
            }
            _ => {
                // The guest ends (or acknowledges) what a list register holds.
                let slot = usize::from(byte(2)) % LIST_REGISTERS;
                lrs[vcpu].lrs[slot] = if byte(3) & 1 == 0 { 0 } else { lrs[vcpu].lrs[slot] & !(1 << 62) };
                lrs[vcpu].recount();
                gic.release_ended(vcpu, &lrs[vcpu]);
            }
        }
        let mut spi_holder = [None; INTID_LIMIT as usize];
        for (v, state) in lrs.iter().enumerate() {
            for &lr in state.lrs.iter().filter(|&&lr| lr != 0) {
                let source = lr_source(lr) as usize;
                assert!(source < vcpus && (version == GicVersion::V2 || source == 0), "source {source} on vCPU {v}");
            }
            let held: Vec<u32> = state.held_intids().collect();
            for (i, &intid) in held.iter().enumerate() {
                assert!(intid < INTID_LIMIT, "INTID {intid} presented");
                assert!(!held[..i].contains(&intid), "INTID {intid} twice on vCPU {v}");
                if intid >= 32 {
                    let holder = &mut spi_holder[intid as usize];
                    assert!(holder.is_none(), "SPI {intid} on vCPUs {holder:?} and {v}");
                    *holder = Some(v);
                }
            }
        }
    }
});
