//! What the hyp does with the host's firmware calls (SMCs trapped by HCR_EL2.TSC,
//! or PSCI over HVC). The host must never point a CPU at code of its choosing at
//! EL2 or lower the hyp's guard, so only calls that cannot do that pass through.

#![forbid(unsafe_code)]

use smccc::arch::{SMCCC_ARCH_FEATURES, SMCCC_VERSION};
use smccc::psci::{
    PSCI_AFFINITY_INFO_32, PSCI_AFFINITY_INFO_64, PSCI_CPU_OFF, PSCI_CPU_ON_32, PSCI_CPU_ON_64, PSCI_CPU_SUSPEND_32,
    PSCI_CPU_SUSPEND_64, PSCI_FEATURES, PSCI_MIGRATE_INFO_TYPE, PSCI_SYSTEM_OFF, PSCI_SYSTEM_RESET,
    PSCI_SYSTEM_SUSPEND_32, PSCI_SYSTEM_SUSPEND_64, PSCI_VERSION,
};

/// PSCI status DENIED.
pub const PSCI_DENIED: i32 = -3;
/// SMCCC/PSCI status NOT_SUPPORTED.
pub const NOT_SUPPORTED: i32 = -1;

/// The fate of one host firmware call.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum HostFirmwareCall {
    /// Harmless and stateless for the hyp: pass x0..x3 to the firmware, return its answer.
    Forward,
    /// The host turns the machine off: the hyp scrubs the protected VMs
    /// (`power::scrub_before_power_off`), then ends the run itself.
    SystemOff,
    /// The host resets the machine: forwarded once the protected VMs are scrubbed.
    SystemReset,
    /// The host starts a CPU (x1 MPIDR, x2 entry, x3 context): the hyp starts it
    /// at its own entry, then enters the host there.
    CpuOn,
    /// The host stops the calling CPU: the hyp records it, then asks the firmware.
    CpuOff,
    /// Refused with this status (suspend calls, whose resume would enter a CPU
    /// at an address the host picks without the hyp: not served yet).
    Refuse(i32),
}

/// Classifies a host call by function ID (x0).
pub fn classify(function_id: u64) -> HostFirmwareCall {
    let Ok(id) = u32::try_from(function_id) else {
        return HostFirmwareCall::Refuse(NOT_SUPPORTED);
    };
    match id {
        PSCI_VERSION
        | PSCI_FEATURES
        | PSCI_AFFINITY_INFO_32
        | PSCI_AFFINITY_INFO_64
        | PSCI_MIGRATE_INFO_TYPE
        | SMCCC_VERSION
        | SMCCC_ARCH_FEATURES => HostFirmwareCall::Forward,
        PSCI_SYSTEM_OFF => HostFirmwareCall::SystemOff,
        PSCI_SYSTEM_RESET => HostFirmwareCall::SystemReset,
        PSCI_CPU_ON_32 | PSCI_CPU_ON_64 => HostFirmwareCall::CpuOn,
        PSCI_CPU_OFF => HostFirmwareCall::CpuOff,
        PSCI_CPU_SUSPEND_32 | PSCI_CPU_SUSPEND_64 | PSCI_SYSTEM_SUSPEND_32 | PSCI_SYSTEM_SUSPEND_64 => {
            HostFirmwareCall::Refuse(PSCI_DENIED)
        }
        _ => HostFirmwareCall::Refuse(NOT_SUPPORTED),
    }
}

/// Whether a function ID belongs to the PSCI/SMCCC-architecture ranges that the
/// relay serves when they arrive by HVC (owner 0 arm architecture, 4 standard secure).
pub fn is_firmware_call(function_id: u64) -> bool {
    let owner = (function_id >> 24) & 0x3f;
    function_id >> 32 == 0 && (owner == 0 || owner == 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_control_is_served_suspend_refused_and_queries_pass() {
        assert_eq!(classify(PSCI_CPU_ON_64.into()), HostFirmwareCall::CpuOn);
        assert_eq!(classify(PSCI_CPU_ON_32.into()), HostFirmwareCall::CpuOn);
        assert_eq!(classify(PSCI_CPU_OFF.into()), HostFirmwareCall::CpuOff);
        assert_eq!(classify(PSCI_CPU_SUSPEND_64.into()), HostFirmwareCall::Refuse(PSCI_DENIED));
        assert_eq!(classify(PSCI_VERSION.into()), HostFirmwareCall::Forward);
        assert_eq!(classify(PSCI_SYSTEM_OFF.into()), HostFirmwareCall::SystemOff);
        assert_eq!(classify(PSCI_SYSTEM_RESET.into()), HostFirmwareCall::SystemReset);
    }

    #[test]
    fn unknown_and_wide_ids_are_not_supported() {
        assert_eq!(classify(0xC200_0000), HostFirmwareCall::Refuse(NOT_SUPPORTED));
        assert_eq!(classify(u64::from(PSCI_VERSION) | 1 << 32), HostFirmwareCall::Refuse(NOT_SUPPORTED));
    }

    #[test]
    fn owners_of_the_relay() {
        assert!(is_firmware_call(PSCI_VERSION.into()));
        assert!(is_firmware_call(SMCCC_VERSION.into()));
        assert!(!is_firmware_call(0xC600_1000));
        assert!(!is_firmware_call(u64::from(PSCI_VERSION) | 1 << 40));
    }
}
