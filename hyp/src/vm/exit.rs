//! Decisions about guest exits, kept apart from the registers they come from so
//! that they can be tested: which guest calls the hyp answers itself, and how a
//! stage-2 data abort decodes into an MMIO access.
//!
//! The vendor-hyp calls follow Linux's KVM numbering (`hyp_abi::GuestCall`)
//! and answer as pKVM does: every refusal of a call the VM is offered is
//! INVALID_PARAMETER, a call it is not offered NOT_SUPPORTED.

#![forbid(unsafe_code)]

use crate::arch::esr::Esr;
use smccc::arch::{SMCCC_ARCH_FEATURES, SMCCC_VERSION};
use smccc::psci::{
    PSCI_AFFINITY_INFO_32, PSCI_AFFINITY_INFO_64, PSCI_CPU_OFF, PSCI_CPU_ON_32, PSCI_CPU_ON_64, PSCI_FEATURES,
    PSCI_SYSTEM_OFF, PSCI_SYSTEM_RESET, PSCI_VERSION,
};

/// SMCCC / PSCI NOT_SUPPORTED.
pub const NOT_SUPPORTED: u64 = -1i64 as u64;
/// PSCI 1.1, the version the hyp offers its guests.
pub const PSCI_VERSION_1_1: u64 = 0x1_0001;
/// SMCCC 1.1.
pub const SMCCC_VERSION_1_1: u64 = 0x1_0001;
/// SMCCC INVALID_PARAMETER: what pKVM answers every refused vendor call.
pub const INVALID_PARAMETER: u64 = -3i64 as u64;

/// What to do with a guest's HVC (or trapped SMC).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum GuestCall {
    /// Answer in the guest's x0 and resume it.
    Return(u64),
    /// Answer in the guest's x0..x3 and resume it.
    ReturnAll([u64; 4]),
    /// The guest turns its VM off.
    SystemOff,
    /// The guest resets its VM.
    SystemReset,
    /// Leave it to the host (standard hypervisor service calls, owner 5).
    Host,
    /// PSCI CPU_ON: start the vCPU whose MPIDR is `target` at `entry` with
    /// x0 = `context`.
    CpuOn { target: u64, entry: u64, context: u64 },
    /// PSCI CPU_OFF: the calling vCPU stops.
    CpuOff,
    /// PSCI AFFINITY_INFO for the vCPU whose MPIDR is `target` (level 0 only).
    AffinityInfo { target: u64, level: u64 },
    /// A call about the VM's MMIO guard (answered in x0 by the VM's state).
    MmioGuard(GuardCall),
    /// A protected VM's call about its memory, one granule at `ipa`
    /// (answered in x0, x1..x3 zeroed, by the memory state).
    Memory(MemoryCall),
}

/// A protected guest's memory calls, each of the granule at an IPA.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum MemoryCall {
    Share { ipa: u64 },
    Unshare { ipa: u64 },
    Relinquish { ipa: u64 },
}

/// The MMIO guard calls that change or consult the VM's guard.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum GuardCall {
    Enroll,
    Map { ipa: u64 },
    Unmap { ipa: u64 },
}

/// PSCI 0.1 as Linux's KVM numbers it (`KVM_PSCI_FN_*` of its arm64 uapi): a
/// VMM that does not ask KVM for PSCI 0.2 describes these IDs in its guest's
/// device tree ("arm,psci"), and `/dev/kvm` says it has them
/// (`KVM_CAP_ARM_PSCI`). CPU_SUSPEND returns at once (a standby state may end
/// at any time), CPU_ON starts the target with x0 = 0 (PSCI 0.1 has no context
/// ID), MIGRATE is NOT_SUPPORTED, as KVM answers them.
const KVM_PSCI_0_1_CPU_SUSPEND: u32 = 0x95c1_ba5e;
const KVM_PSCI_0_1_CPU_OFF: u32 = 0x95c1_ba5f;
const KVM_PSCI_0_1_CPU_ON: u32 = 0x95c1_ba60;

/// A call of KVM's PSCI 0.1 (full-width arguments, whatever bit 30 of the ID
/// says). Out of line: no guest of this repository makes one, and the hot
/// calls' match stays as it was (`scripts/bench`).
#[cold]
#[inline(never)]
fn kvm_psci_0_1(id: u32, args: CallArgs) -> GuestCall {
    match id {
        KVM_PSCI_0_1_CPU_SUSPEND => GuestCall::Return(0),
        KVM_PSCI_0_1_CPU_OFF => GuestCall::CpuOff,
        KVM_PSCI_0_1_CPU_ON => GuestCall::CpuOn { target: args[1], entry: args[2], context: 0 },
        _ => GuestCall::Return(NOT_SUPPORTED),
    }
}

/// The guest's x0..x3 of a call: function ID and three arguments.
pub type CallArgs = [u64; 4];

/// The 32-bit SMC32 calling convention passes 32-bit arguments: the upper
/// halves of the registers are ignored.
fn arguments_of(id: u32, args: CallArgs) -> [u64; 3] {
    let smc32 = id & (1 << 30) == 0;
    let mask = if smc32 { 0xffff_ffff } else { u64::MAX };
    [args[1] & mask, args[2] & mask, args[3] & mask]
}

/// Decides a guest call from its x0..x3 (function ID and arguments), made by
/// a VM that is `protected` or not.
pub fn guest_call(args: CallArgs, protected: bool) -> GuestCall {
    let Ok(id) = u32::try_from(args[0]) else {
        return GuestCall::Return(NOT_SUPPORTED);
    };
    let [arg, arg2, arg3] = arguments_of(id, args);
    match id {
        PSCI_VERSION => GuestCall::Return(PSCI_VERSION_1_1),
        SMCCC_VERSION => GuestCall::Return(SMCCC_VERSION_1_1),
        PSCI_CPU_ON_32 | PSCI_CPU_ON_64 => GuestCall::CpuOn { target: arg, entry: arg2, context: arg3 },
        PSCI_CPU_OFF => GuestCall::CpuOff,
        PSCI_AFFINITY_INFO_32 | PSCI_AFFINITY_INFO_64 => GuestCall::AffinityInfo { target: arg, level: arg2 },
        PSCI_FEATURES => {
            let known = [
                PSCI_VERSION,
                PSCI_FEATURES,
                PSCI_CPU_ON_32,
                PSCI_CPU_ON_64,
                PSCI_CPU_OFF,
                PSCI_AFFINITY_INFO_32,
                PSCI_AFFINITY_INFO_64,
                PSCI_SYSTEM_OFF,
                PSCI_SYSTEM_RESET,
                SMCCC_VERSION,
            ];
            let supported = u32::try_from(arg).is_ok_and(|f| known.contains(&f));
            GuestCall::Return(if supported { 0 } else { NOT_SUPPORTED })
        }
        SMCCC_ARCH_FEATURES => {
            let supported = arg == u64::from(SMCCC_VERSION) || arg == u64::from(SMCCC_ARCH_FEATURES);
            GuestCall::Return(if supported { 0 } else { NOT_SUPPORTED })
        }
        PSCI_SYSTEM_OFF => GuestCall::SystemOff,
        PSCI_SYSTEM_RESET => GuestCall::SystemReset,
        _ if (id >> 24) & 0x3f == 5 => GuestCall::Host,
        _ if id.wrapping_sub(KVM_PSCI_0_1_CPU_SUSPEND) < 4 => kvm_psci_0_1(id, args),
        hyp_abi::VENDOR_HYP_CALL_UID => GuestCall::ReturnAll(hyp_abi::KVM_VENDOR_HYP_UID),
        _ => match hyp_abi::GuestCall::from_function_id(id) {
            // (As KVM answers what it does not offer: x1..x3 zeroed too.)
            Some(call) if !call.offered(protected) => GuestCall::ReturnAll([NOT_SUPPORTED, 0, 0, 0]),
            Some(call) => vendor_call(call, [arg, arg2, arg3], protected),
            None => GuestCall::Return(NOT_SUPPORTED),
        },
    }
}

/// A vendor-hyp call the VM is offered, with its x1..x3. (Out of line: no
/// hot path makes these calls.)
#[inline(never)]
fn vendor_call(call: hyp_abi::GuestCall, [arg, arg2, arg3]: [u64; 3], protected: bool) -> GuestCall {
    use hyp_abi::GuestCall as Call;
    // The memory calls take one granule at x1; pKVM refuses anything in the
    // registers they do not use (Linux passes 0), so that they can grow.
    let memory = |call: fn(u64) -> MemoryCall| {
        if arg2 != 0 || arg3 != 0 {
            GuestCall::ReturnAll([INVALID_PARAMETER, 0, 0, 0])
        } else {
            GuestCall::Memory(call(arg))
        }
    };
    match call {
        Call::Features => GuestCall::ReturnAll([Call::features_bitmap(protected), 0, 0, 0]),
        Call::HypMeminfo if arg != 0 || arg2 != 0 || arg3 != 0 => GuestCall::ReturnAll([INVALID_PARAMETER, 0, 0, 0]),
        Call::HypMeminfo => GuestCall::ReturnAll([hyp_abi::GUEST_MEMORY_GRANULE, 0, 0, 0]),
        Call::MemShare => memory(|ipa| MemoryCall::Share { ipa }),
        Call::MemUnshare => memory(|ipa| MemoryCall::Unshare { ipa }),
        Call::MemRelinquish => memory(|ipa| MemoryCall::Relinquish { ipa }),
        Call::MmioGuardInfo => GuestCall::Return(hyp_abi::MMIO_GUARD_GRANULE),
        Call::MmioGuardEnroll => GuestCall::MmioGuard(GuardCall::Enroll),
        Call::MmioGuardMap => GuestCall::MmioGuard(GuardCall::Map { ipa: arg }),
        Call::MmioGuardUnmap => GuestCall::MmioGuard(GuardCall::Unmap { ipa: arg }),
    }
}

/// A decoded load or store to emulate (from a data abort with a valid syndrome).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct MmioAccess {
    pub size_bytes: u8,
    pub write: bool,
    /// Transfer register (31 means xzr/wzr).
    pub register: u8,
    /// Sign-extend a load.
    pub sign_extend: bool,
    /// The register is 64-bit (else 32-bit, upper half zeroed).
    pub sixty_four: bool,
}

/// Decodes a data abort's ISS into an access, when the syndrome is valid (ISV)
/// and describes a plain load or store (not an acquire/release pair, not a
/// cache maintenance or stage-1 walk abort).
pub fn decode_mmio(esr: Esr) -> Option<MmioAccess> {
    let iss = u64::from(esr.iss());
    let isv = iss & (1 << 24) != 0;
    let cache_maintenance = iss & (1 << 8) != 0;
    if !isv || cache_maintenance || esr.is_stage1_walk() {
        return None;
    }
    Some(MmioAccess {
        size_bytes: 1 << ((iss >> 22) & 3),
        write: esr.is_write(),
        register: ((iss >> 16) & 0x1f) as u8,
        sign_extend: iss & (1 << 21) != 0,
        sixty_four: iss & (1 << 15) != 0,
    })
}

/// The value a load of `access` puts in its register, given what the device read.
pub fn load_value(access: MmioAccess, data: u64) -> u64 {
    // The loaded bits shifted to the top and back down, arithmetically when
    // the load sign-extends: a few instructions on every emulated load, where
    // masks and a test of the sign bit took sixteen.
    // (Shifts count modulo 64: an access of 8 bytes shifts by 0.)
    let unused = 64u32.wrapping_sub(u32::from(access.size_bytes) * 8);
    let top = data.wrapping_shl(unused);
    let value = if access.sign_extend { (top as i64).wrapping_shr(unused) as u64 } else { top.wrapping_shr(unused) };
    if access.sixty_four {
        value
    } else {
        value & 0xffff_ffff
    }
}

/// The value a store of `access` writes, from its register's content.
pub fn store_value(access: MmioAccess, register_value: u64) -> u64 {
    let bits = u32::from(access.size_bytes) * 8;
    if bits >= 64 {
        register_value
    } else {
        register_value & ((1u64 << bits) - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hyp_answers_psci_and_smccc_queries() {
        assert_eq!(guest_call([PSCI_VERSION.into(), 0, 0, 0], false), GuestCall::Return(PSCI_VERSION_1_1));
        assert_eq!(guest_call([SMCCC_VERSION.into(), 0, 0, 0], false), GuestCall::Return(SMCCC_VERSION_1_1));
        assert_eq!(guest_call([PSCI_FEATURES.into(), PSCI_SYSTEM_OFF.into(), 0, 0], false), GuestCall::Return(0));
        assert_eq!(guest_call([PSCI_FEATURES.into(), 0xC400_0001, 0, 0], false), GuestCall::Return(NOT_SUPPORTED));
        assert_eq!(
            guest_call([SMCCC_ARCH_FEATURES.into(), 0x8000_8000, 0, 0], false),
            GuestCall::Return(NOT_SUPPORTED)
        );
        assert_eq!(guest_call([PSCI_SYSTEM_OFF.into(), 0, 0, 0], false), GuestCall::SystemOff);
        assert_eq!(guest_call([PSCI_SYSTEM_RESET.into(), 0, 0, 0], false), GuestCall::SystemReset);
    }

    #[test]
    fn cpu_power_calls_decode_with_their_arguments() {
        assert_eq!(
            guest_call([PSCI_CPU_ON_64.into(), 2, 0x8000_1000, 7], false),
            GuestCall::CpuOn { target: 2, entry: 0x8000_1000, context: 7 }
        );
        assert_eq!(
            guest_call([PSCI_CPU_ON_32.into(), 1 << 32 | 1, 1 << 40 | 0x8000_0000, 0], false),
            GuestCall::CpuOn { target: 1, entry: 0x8000_0000, context: 0 },
            "SMC32 arguments are 32-bit"
        );
        assert_eq!(guest_call([PSCI_CPU_OFF.into(), 0, 0, 0], false), GuestCall::CpuOff);
        assert_eq!(
            guest_call([PSCI_AFFINITY_INFO_64.into(), 3, 0, 0], false),
            GuestCall::AffinityInfo { target: 3, level: 0 }
        );
        assert_eq!(guest_call([PSCI_FEATURES.into(), PSCI_CPU_ON_64.into(), 0, 0], false), GuestCall::Return(0));
    }

    #[test]
    fn kvm_psci_0_1_ids_are_the_same_calls() {
        assert_eq!(guest_call([0x95c1_ba5e, 0, 0, 0], true), GuestCall::Return(0), "CPU_SUSPEND");
        assert_eq!(guest_call([0x95c1_ba5f, 0, 0, 0], false), GuestCall::CpuOff);
        assert_eq!(
            guest_call([0x95c1_ba60, 1, 1 << 40 | 0x8000_0000, 9], true),
            GuestCall::CpuOn { target: 1, entry: 1 << 40 | 0x8000_0000, context: 0 },
            "full-width entry, no context ID"
        );
        assert_eq!(guest_call([0x95c1_ba61, 0, 0, 0], false), GuestCall::Return(NOT_SUPPORTED), "MIGRATE");
        assert_eq!(guest_call([0x95c1_ba62, 0, 0, 0], false), GuestCall::Return(NOT_SUPPORTED));
    }

    #[test]
    fn unknown_calls_are_not_supported_and_standard_hyp_calls_go_to_the_host() {
        assert_eq!(
            guest_call([0xC600_1000, 0, 0, 0], false),
            GuestCall::Return(NOT_SUPPORTED),
            "host ABI is not for guests"
        );
        assert_eq!(guest_call([0x1234, 0, 0, 0], false), GuestCall::Return(NOT_SUPPORTED));
        assert_eq!(guest_call([u64::MAX, 0, 0, 0], false), GuestCall::Return(NOT_SUPPORTED));
        assert_eq!(guest_call([0xC500_0001, 0, 0, 0], false), GuestCall::Host);
    }

    #[test]
    fn guest_vendor_calls_decode_and_host_calls_stay_refused() {
        let call = |args: CallArgs| guest_call(args, false);
        assert_eq!(call([0xC600_0005, 0, 0, 0]), GuestCall::Return(4096), "granule");
        assert_eq!(call([0xC600_0006, 0, 0, 0]), GuestCall::MmioGuard(GuardCall::Enroll));
        assert_eq!(call([0xC600_0007, 0x900_0000, 0, 0]), GuestCall::MmioGuard(GuardCall::Map { ipa: 0x900_0000 }));
        assert_eq!(call([0xC600_0008, 0x1000, 0, 0]), GuestCall::MmioGuard(GuardCall::Unmap { ipa: 0x1000 }));
        assert_eq!(call([0x8600_0007, 0x900_0000, 0, 0]), GuestCall::Return(NOT_SUPPORTED), "SMC32: not ours");
        assert_eq!(call([0xC600_0001, 0, 0, 0]), GuestCall::Return(NOT_SUPPORTED), "KVM's PTP: not offered");
        assert_eq!(call([0xC600_000A, 0, 0, 0]), GuestCall::Return(NOT_SUPPORTED));
    }

    #[test]
    fn linux_finds_kvms_uid_and_the_features_of_its_vm_type() {
        let uid = [0xb66f_b428, 0xe911_c52e, 0x564b_caa9, 0x743a_004d];
        for protected in [false, true] {
            assert_eq!(guest_call([0x8600_FF01, 7, 7, 7], protected), GuestCall::ReturnAll(uid));
        }
        // Bits 0 (FEATURES), 2..4 (MEMINFO, MEM_SHARE, MEM_UNSHARE), 5..8
        // (the MMIO guard), 9 (MEM_RELINQUISH); x1..x3 zero (functions 32..).
        assert_eq!(guest_call([0x8600_0000, 7, 7, 7], true), GuestCall::ReturnAll([0b11_1111_1101, 0, 0, 0]));
        assert_eq!(guest_call([0x8600_0000, 7, 7, 7], false), GuestCall::ReturnAll([0b1_1110_0001, 0, 0, 0]));
        assert_eq!(guest_call([0xC600_0000, 0, 0, 0], true), GuestCall::ReturnAll([0b11_1111_1101, 0, 0, 0]));
        assert_eq!(guest_call([0x8600_FF00, 0, 0, 0], true), GuestCall::Return(NOT_SUPPORTED), "call count");
    }

    #[test]
    fn memory_calls_are_a_protected_vms_and_take_one_granule_at_x1() {
        let meminfo = [0xC600_0002, 0, 0, 0];
        assert_eq!(guest_call(meminfo, true), GuestCall::ReturnAll([4096, 0, 0, 0]));
        assert_eq!(guest_call([0xC600_0002, 1, 0, 0], true), GuestCall::ReturnAll([INVALID_PARAMETER, 0, 0, 0]));
        assert_eq!(guest_call([0xC600_0002, 0, 0, 1], true), GuestCall::ReturnAll([INVALID_PARAMETER, 0, 0, 0]));
        let ipa = 0x8000_3000;
        assert_eq!(guest_call([0xC600_0003, ipa, 0, 0], true), GuestCall::Memory(MemoryCall::Share { ipa }));
        assert_eq!(guest_call([0xC600_0004, ipa, 0, 0], true), GuestCall::Memory(MemoryCall::Unshare { ipa }));
        assert_eq!(guest_call([0xC600_0009, ipa, 0, 0], true), GuestCall::Memory(MemoryCall::Relinquish { ipa }));
        for id in [0xC600_0003, 0xC600_0004, 0xC600_0009] {
            let invalid = GuestCall::ReturnAll([INVALID_PARAMETER, 0, 0, 0]);
            assert_eq!(guest_call([id, ipa, 1, 0], true), invalid, "{id:#x}: x2");
            assert_eq!(guest_call([id, ipa, 0, 1], true), invalid, "{id:#x}: x3");
        }
        for id in [0xC600_0002, 0xC600_0003, 0xC600_0004, 0xC600_0009] {
            let refused = GuestCall::ReturnAll([NOT_SUPPORTED, 0, 0, 0]);
            assert_eq!(guest_call([id, ipa, 0, 0], false), refused, "{id:#x}: non-protected");
            assert_eq!(guest_call([id & 0xBFFF_FFFF, ipa, 0, 0], true), GuestCall::Return(NOT_SUPPORTED), "SMC32");
        }
    }

    #[test]
    fn data_aborts_decode_into_accesses() {
        // strb w1, [x0]: ISV, SAS 0, SRT 1, WnR, EC 0x24.
        let strb = Esr((0x24 << 26) | (1 << 25) | (1 << 24) | (1 << 16) | (1 << 6) | 0x7);
        assert_eq!(
            decode_mmio(strb),
            Some(MmioAccess { size_bytes: 1, write: true, register: 1, sign_extend: false, sixty_four: false })
        );
        // ldrsh x3, [x0]: SAS 1, SSE, SF, SRT 3.
        let ldrsh = Esr((0x24 << 26) | (1 << 25) | (1 << 24) | (1 << 22) | (1 << 21) | (3 << 16) | (1 << 15) | 0x7);
        let access = decode_mmio(ldrsh).unwrap();
        assert_eq!(load_value(access, 0x8001), 0xffff_ffff_ffff_8001);
        // No valid syndrome: cannot be emulated.
        assert_eq!(decode_mmio(Esr((0x24 << 26) | 0x7)), None);
    }

    #[test]
    fn loads_and_stores_truncate_and_extend() {
        let byte = MmioAccess { size_bytes: 1, write: false, register: 0, sign_extend: false, sixty_four: false };
        assert_eq!(load_value(byte, 0x1ff), 0xff);
        assert_eq!(store_value(byte, 0x1234), 0x34);
        let word = MmioAccess { size_bytes: 4, sign_extend: true, sixty_four: false, ..byte };
        assert_eq!(load_value(word, 0x8000_0000), 0x8000_0000, "32-bit register: upper half zero");
        let dword = MmioAccess { size_bytes: 8, ..byte };
        assert_eq!(store_value(dword, u64::MAX), u64::MAX);
        assert_eq!(load_value(MmioAccess { sixty_four: true, ..dword }, 0x8000_0000_0000_0001), 0x8000_0000_0000_0001);
        let ldrsw = MmioAccess { sixty_four: true, ..word };
        assert_eq!(load_value(ldrsw, 0x1_8000_0000), 0xffff_ffff_8000_0000, "ldrsw: sign-extended to 64 bits");
        assert_eq!(load_value(ldrsw, 0x7fff_ffff), 0x7fff_ffff);
    }
}
