//! A host hypercall decoded: its function ID and argument registers read once,
//! here, into one value whose fields have the types of what they name, so that
//! no handler below sees a register.
//!
//! Decoding refuses only what needs no state to refuse: an unknown function ID
//! (or a debug one in a build without them) and an invariant-check scope the ABI
//! does not define. Everything else (a handle, a vCPU index, a register number,
//! a page range) is checked by the handler against the state, in the order that
//! decides which error a bad call gets (docs/abi.md).

#![forbid(unsafe_code)]

use crate::addr::{Ipa, PageCount, PhysAddr};
use crate::vm::handle::{VcpuIndex, VmHandle};
use hyp_abi::{CheckScope, HostCall, HypError};

/// Whether this build answers the debug hypercalls (cargo feature `debug-hypercalls`).
pub const DEBUG_HYPERCALLS: bool = cfg!(feature = "debug-hypercalls");

/// One host call and its arguments (see [`HostCall`] for the registers).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum HostRequest {
    Version,
    Features,
    ShareHyp {
        start: PhysAddr,
        pages: PageCount,
    },
    UnshareHyp {
        start: PhysAddr,
        pages: PageCount,
    },
    DonateHyp {
        start: PhysAddr,
        pages: PageCount,
    },
    ReclaimHyp {
        start: PhysAddr,
        pages: PageCount,
    },
    /// `ty` is a [`hyp_abi::VmType`] and `vcpus` a count, both checked by the VM table.
    VmCreate {
        ty: u64,
        vcpus: u64,
    },
    VmMap {
        vm: VmHandle,
        pa: PhysAddr,
        ipa: Ipa,
        pages: PageCount,
    },
    VcpuInit {
        vm: VmHandle,
        vcpu: VcpuIndex,
        pc: u64,
        x0: u64,
    },
    VcpuRun {
        vm: VmHandle,
        vcpu: VcpuIndex,
        mmio_read_value: u64,
        flags: hyp_abi::RunFlags,
    },
    /// `reg` is a [`hyp_abi::VcpuReg`], checked after the VM and the vCPU.
    VcpuGetReg {
        vm: VmHandle,
        vcpu: VcpuIndex,
        reg: u64,
    },
    VcpuSetReg {
        vm: VmHandle,
        vcpu: VcpuIndex,
        reg: u64,
        value: u64,
    },
    VmInfo {
        vm: VmHandle,
    },
    VmTeardown {
        vm: VmHandle,
    },
    VmReclaim {
        vm: VmHandle,
        ipa: Ipa,
        pages: PageCount,
    },
    VcpuInjectIrq {
        vm: VmHandle,
        vcpu: VcpuIndex,
        intid: u64,
    },
    VcpuSetIrqLine {
        vm: VmHandle,
        vcpu: VcpuIndex,
        level: u64,
    },
    /// The IPAs are checked by the VM table (alignment, IPA space, overlap).
    VmSetGic {
        vm: VmHandle,
        distributor: u64,
        second: u64,
    },
    VmSetSpiLevel {
        vm: VmHandle,
        vcpu: VcpuIndex,
        intid: u64,
        level: u64,
    },
    DebugCheckInvariants {
        scope: CheckScope,
    },
    DebugExchange {
        address: PhysAddr,
        value: u64,
    },
}

impl HostRequest {
    /// Decodes x0..x6 at the host's HVC.
    ///
    /// # Errors
    ///
    /// `NotSupported` for a function ID that is not a host call of this build;
    /// `InvalidArgument` for an invariant-check scope the ABI does not define.
    ///
    /// Inlined into the trap handler, where its match and the dispatch's
    /// become one jump table (scripts/bench).
    #[inline(always)]
    pub fn decode(regs: &[u64; 7]) -> Result<HostRequest, HypError> {
        let call = HostCall::from_function_id(regs[0])
            .filter(|call| DEBUG_HYPERCALLS || !call.is_debug())
            .ok_or(HypError::NotSupported)?;
        let [_, a1, a2, a3, a4, _, _] = *regs;
        let (vm, vcpu) = (VmHandle::new(a1), VcpuIndex::new(a2));
        let (start, pages) = (PhysAddr::new(a1), PageCount::new(a2));
        Ok(match call {
            HostCall::Version => HostRequest::Version,
            HostCall::Features => HostRequest::Features,
            HostCall::ShareHyp => HostRequest::ShareHyp { start, pages },
            HostCall::UnshareHyp => HostRequest::UnshareHyp { start, pages },
            HostCall::DonateHyp => HostRequest::DonateHyp { start, pages },
            HostCall::ReclaimHyp => HostRequest::ReclaimHyp { start, pages },
            HostCall::VmCreate => HostRequest::VmCreate { ty: a1, vcpus: a2 },
            HostCall::VmMap => {
                HostRequest::VmMap { vm, pa: PhysAddr::new(a2), ipa: Ipa::new(a3), pages: PageCount::new(a4) }
            }
            HostCall::VcpuInit => HostRequest::VcpuInit { vm, vcpu, pc: a3, x0: a4 },
            HostCall::VcpuRun => HostRequest::VcpuRun {
                vm,
                vcpu,
                mmio_read_value: a3,
                flags: hyp_abi::RunFlags::from_raw(a4).ok_or(HypError::InvalidArgument)?,
            },
            HostCall::VcpuGetReg => HostRequest::VcpuGetReg { vm, vcpu, reg: a3 },
            HostCall::VcpuSetReg => HostRequest::VcpuSetReg { vm, vcpu, reg: a3, value: a4 },
            HostCall::VmInfo => HostRequest::VmInfo { vm },
            HostCall::VmTeardown => HostRequest::VmTeardown { vm },
            HostCall::VmReclaim => HostRequest::VmReclaim { vm, ipa: Ipa::new(a2), pages: PageCount::new(a3) },
            HostCall::VcpuInjectIrq => HostRequest::VcpuInjectIrq { vm, vcpu, intid: a3 },
            HostCall::VcpuSetIrqLine => HostRequest::VcpuSetIrqLine { vm, vcpu, level: a3 },
            HostCall::VmSetGic => HostRequest::VmSetGic { vm, distributor: a2, second: a3 },
            HostCall::VmSetSpiLevel => HostRequest::VmSetSpiLevel { vm, vcpu, intid: a3, level: a4 },
            HostCall::DebugCheckInvariants => {
                HostRequest::DebugCheckInvariants { scope: CheckScope::from_raw(a1).ok_or(HypError::InvalidArgument)? }
            }
            HostCall::DebugExchange => HostRequest::DebugExchange { address: PhysAddr::new(a1), value: a2 },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(call: HostCall, args: [u64; 6]) -> Result<HostRequest, HypError> {
        let [a1, a2, a3, a4, a5, a6] = args;
        HostRequest::decode(&[call.function_id().into(), a1, a2, a3, a4, a5, a6])
    }

    #[test]
    fn each_register_lands_in_its_typed_field() {
        let (vm, vcpu) = (VmHandle::new(0x3_0000_0002), VcpuIndex::new(1));
        assert_eq!(
            decode(HostCall::ShareHyp, [0x4000_0000, 3, 9, 9, 9, 9]),
            Ok(HostRequest::ShareHyp { start: PhysAddr::new(0x4000_0000), pages: PageCount::new(3) })
        );
        assert_eq!(
            decode(HostCall::VmMap, [vm.raw(), 0x4010_0000, 0x8000_0000, 16, 9, 9]),
            Ok(HostRequest::VmMap {
                vm,
                pa: PhysAddr::new(0x4010_0000),
                ipa: Ipa::new(0x8000_0000),
                pages: PageCount::new(16)
            })
        );
        assert_eq!(
            decode(HostCall::VcpuSetReg, [vm.raw(), 1, 31, 0x8000_1000, 9, 9]),
            Ok(HostRequest::VcpuSetReg { vm, vcpu, reg: 31, value: 0x8000_1000 })
        );
        assert_eq!(
            decode(HostCall::VmReclaim, [vm.raw(), 0x8000_0000, 4, 9, 9, 9]),
            Ok(HostRequest::VmReclaim { vm, ipa: Ipa::new(0x8000_0000), pages: PageCount::new(4) })
        );
        assert_eq!(
            decode(HostCall::VcpuRun, [vm.raw(), 1, 0x41, 0x203, 9, 9]),
            Ok(HostRequest::VcpuRun {
                vm,
                vcpu,
                mmio_read_value: 0x41,
                flags: hyp_abi::RunFlags { wait_in_hyp: true, kick_sgi: Some(2) }
            })
        );
        assert_eq!(decode(HostCall::VcpuRun, [vm.raw(), 1, 0, 1 << 16, 0, 0]), Err(HypError::InvalidArgument));
    }

    #[test]
    fn values_checked_against_the_state_are_not_refused_here() {
        // A bad type, vCPU index or register is the VM table's to refuse, after
        // the handle: decoding keeps them as given.
        assert_eq!(decode(HostCall::VmCreate, [7, 0, 0, 0, 0, 0]), Ok(HostRequest::VmCreate { ty: 7, vcpus: 0 }));
        assert_eq!(
            decode(HostCall::VcpuGetReg, [0, u64::MAX, 999, 0, 0, 0]),
            Ok(HostRequest::VcpuGetReg { vm: VmHandle::new(0), vcpu: VcpuIndex::new(u64::MAX), reg: 999 })
        );
    }

    #[test]
    fn unknown_ids_and_bad_scopes_are_refused() {
        for id in [0u64, 0xC600_1013, 0x8400_0000, u64::MAX, 0xC600_1002 | (1 << 32)] {
            assert_eq!(HostRequest::decode(&[id, 0, 0, 0, 0, 0, 0]), Err(HypError::NotSupported), "{id:#x}");
        }
        let check = decode(HostCall::DebugCheckInvariants, [2, 0, 0, 0, 0, 0]);
        let exchange = decode(HostCall::DebugExchange, [0x1000, 5, 0, 0, 0, 0]);
        if DEBUG_HYPERCALLS {
            assert_eq!(check, Err(HypError::InvalidArgument));
            assert_eq!(
                decode(HostCall::DebugCheckInvariants, [1, 0, 0, 0, 0, 0]),
                Ok(HostRequest::DebugCheckInvariants { scope: CheckScope::Touched })
            );
            assert_eq!(exchange, Ok(HostRequest::DebugExchange { address: PhysAddr::new(0x1000), value: 5 }));
        } else {
            assert_eq!(check, Err(HypError::NotSupported), "debug calls: not in this build");
            assert_eq!(exchange, Err(HypError::NotSupported));
        }
    }
}
