//! The trap handlers the vectors call: where each exception from the host goes,
//! and the fatal report for any exception taken from the hyp itself.
//!
//! Sits above mm and hypercall (it calls them); the arch layer below only knows
//! these functions by their symbol names.

use crate::arch::aarch64::exception::{ExceptionKind, TrapFrame, NEED_CALLEE_SAVED};
use crate::arch::aarch64::inject::{inject_external_abort, inject_undefined};
use crate::arch::esr::{Esr, ExceptionClass};
use crate::emergency_println;
use crate::host_request::HostRequest;
use crate::mm::host_stage2::HostFault;
use crate::psci_relay::{self, HostFirmwareCall};
use crate::state::Hyp;
use crate::log_budget::log_host_refusal;
use aarch64_cpu::registers::{Readable, Writeable, ELR_EL2, ESR_EL2, FAR_EL2, HPFAR_EL2, SPSR_EL2};

/// Interrupts and SErrors are routed to EL1 (HCR_EL2.IMO/FMO/AMO clear): one
/// arriving here is spurious. The host goes on. `kind` is the vector's
/// number; returns what the entry returns (0), so that the entry's fast path
/// tail-calls it and builds no frame.
#[cold]
#[inline(never)]
pub fn report_spurious_exception(kind: u64) -> u64 {
    log_host_refusal(|| log::warn!("unexpected {:?} from the host ignored", ExceptionKind::from_vector(kind)));
    0
}

/// `full_frame`: the frame holds x19..x28 (see [`NEED_CALLEE_SAVED`]).
#[inline(always)]
pub fn handle_host_sync(hyp: &Hyp, frame: &mut TrapFrame, full_frame: bool) -> u64 {
    let esr = Esr(ESR_EL2.get());
    // The hypercall inline, every other class out of line: one compare on
    // the hot path (a match over the classes is a search, and its arms'
    // registers would be saved on every hypercall).
    if esr.class() == ExceptionClass::Hvc64 {
        handle_host_hvc(hyp, frame, esr);
        0
    } else {
        handle_host_other(hyp, frame, esr, full_frame)
    }
}

/// Every synchronous exception from the host but an HVC: out of line, so
/// that the hypercall path carries none of their registers.
#[inline(never)]
fn handle_host_other(hyp: &Hyp, frame: &mut TrapFrame, esr: Esr, full_frame: bool) -> u64 {
    match esr.class() {
        ExceptionClass::Smc64 => {
            // A trapped SMC returns to the SMC itself: step over it.
            ELR_EL2.set(ELR_EL2.get() + 4);
            handle_firmware_call(hyp, frame);
        }
        ExceptionClass::DataAbortLower | ExceptionClass::InstructionAbortLower => {
            return handle_host_abort(hyp, frame, esr, full_frame)
        }
        ExceptionClass::SysReg => return handle_host_sysreg(frame, esr),
        _ => refuse_host_trap(esr),
    }
    0
}

/// A host read of an ID register (HCR_EL2.TID3): the hardware's value with what
/// the hyp keeps trapped hidden. Nothing else of the host's traps here. Rare
/// (a kernel reads its ID registers at boot): kept out of line, so that the
/// hypercall path does not carry its registers.
#[cold]
#[inline(never)]
fn handle_host_sysreg(frame: &mut TrapFrame, esr: Esr) -> u64 {
    use crate::arch::sysreg::SysRegAccess;
    use crate::vm::sysreg::{is_id_register_read, sanitize_host_id};
    let access = SysRegAccess::decode(esr.iss());
    if !is_id_register_read(access) {
        refuse_host_trap(esr);
        return 0;
    }
    let value = sanitize_host_id(access.reg, crate::arch::aarch64::id_regs::read_id_register(access.reg));
    ELR_EL2.set(ELR_EL2.get() + 4);
    // Rt 31 is xzr: the read is discarded.
    frame.set_x(usize::from(access.rt), value)
}

#[cold]
#[inline(never)]
fn refuse_host_trap(esr: Esr) {
    log_host_refusal(|| log::warn!("host trap not handled, UNDEFINED injected: {esr}, ELR {:#x}", ELR_EL2.get()));
    inject_undefined();
}

#[inline(always)]
fn handle_host_hvc(hyp: &Hyp, frame: &mut TrapFrame, esr: Esr) {
    let function_id = frame.regs[0];
    if esr.immediate() != 0 {
        frame.regs[0] = hyp_abi::HypError::NotSupported.code() as u64;
        return;
    }
    let mut args = [0u64; 7];
    args.copy_from_slice(&frame.regs[..7]);
    // Decoded as a host call first (the hot path); a function ID that is not
    // one may be a firmware call.
    match HostRequest::decode(&args) {
        Err(_) if psci_relay::is_firmware_call(function_id) => handle_firmware_call(hyp, frame),
        decoded => {
            let result = crate::hypercall::serve(decoded, &mut crate::host_calls::HypServices { hyp });
            frame.regs[..4].copy_from_slice(&result);
        }
    }
}

fn handle_firmware_call(hyp: &Hyp, frame: &mut TrapFrame) {
    let function_id = frame.regs[0];
    match psci_relay::classify(function_id) {
        HostFirmwareCall::Forward => {
            let result = crate::power::psci_call(function_id as u32, [frame.regs[1], frame.regs[2], frame.regs[3]]);
            frame.regs[..4].copy_from_slice(&result);
        }
        HostFirmwareCall::SystemReset => {
            // Protected VMs are scrubbed first; the VM table stays locked until
            // the reset (or the firmware's refusal) so that none runs meanwhile.
            match crate::power::scrub_before_power_off(hyp, "SYSTEM_RESET") {
                Ok(_vms) => {
                    let args = [frame.regs[1], frame.regs[2], frame.regs[3]];
                    let result = crate::power::psci_call(function_id as u32, args);
                    frame.regs[..4].copy_from_slice(&result);
                }
                Err(_) => frame.regs[0] = psci_relay::PSCI_DENIED as i64 as u64,
            }
        }
        HostFirmwareCall::CpuOn => {
            // SMC32 CPU_ON passes 32-bit arguments.
            let mask = if function_id & (1 << 30) == 0 { 0xffff_ffff } else { u64::MAX };
            let (target, entry, context) = (frame.regs[1] & mask, frame.regs[2] & mask, frame.regs[3] & mask);
            let psci = hyp.platform.psci.is_some();
            frame.regs[0] = crate::cpus::host_cpu_on(psci, target, entry, context) as u64;
        }
        HostFirmwareCall::CpuOff => frame.regs[0] = crate::cpus::host_cpu_off() as u64,
        HostFirmwareCall::SystemOff => match crate::power::scrub_before_power_off(hyp, "SYSTEM_OFF") {
            Ok(_vms) => {
                log::info!("host requested PSCI SYSTEM_OFF: powering off");
                crate::power::system_off(0);
            }
            Err(_) => frame.regs[0] = psci_relay::PSCI_DENIED as i64 as u64,
        },
        HostFirmwareCall::Refuse(status) => {
            log::debug!("host firmware call {function_id:#x} refused ({status})");
            frame.regs[0] = status as i64 as u64;
        }
    }
}

/// Free heap the hyp keeps before it maps device space for the host: enough for
/// the (at most three) new table pages of one mapping, with room for
/// fragmentation. `aarch64-paging` cannot report an allocation failure, so the
/// hyp refuses the fault instead of letting the allocator run dry.
const DEVICE_MAP_HEAP_RESERVE: usize = 64 << 10;

// Kept out of line: inlined, its locals would make every hypercall's entry save
// callee-saved registers it never uses.
#[inline(never)]
fn handle_host_abort(hyp: &Hyp, frame: &mut TrapFrame, esr: Esr, full_frame: bool) -> u64 {
    // HPFAR_EL2.FIPA holds IPA[51:12] of a stage-2 fault; the page offset is
    // FAR's. It is valid only for the aborts `Esr::hpfar_valid` names (any
    // translation fault among them); for the others it is UNKNOWN and not read.
    let ipa = if esr.hpfar_valid() {
        Some(((HPFAR_EL2.get() & 0x0000_0fff_ffff_fff0) << 8) | (FAR_EL2.get() & 0xfff))
    } else {
        None
    };
    // Only a translation fault can be cured by mapping; permission, access-flag,
    // alignment and external aborts would fault again forever.
    let translation_ipa = ipa.filter(|_| matches!(esr.fault_status(), 0x04..=0x07));
    if let (Some(ipa), ExceptionClass::DataAbortLower) = (translation_ipa, esr.class()) {
        if let Some(page) = hyp.host_lpi_page(ipa) {
            return emulate_lpi_access(frame, esr, ipa, page, full_frame);
        }
    }
    let (used, total) = crate::HEAP.usage();
    let room_for_tables = total - used >= DEVICE_MAP_HEAP_RESERVE;
    let outcome = match translation_ipa {
        Some(ipa) => hyp.with_memory(|state, env| state.host_device_fault(ipa, room_for_tables, env)),
        None => HostFault::Refused,
    };
    match outcome {
        HostFault::MappedDevice(block) => {
            log::debug!("host device space {block} mapped");
        }
        HostFault::AlreadyMapped => {}
        HostFault::Refused => {
            log_host_refusal(|| match ipa {
                Some(ipa) => log::info!(
                    "host access to {ipa:#x} blocked: synchronous external abort injected, {esr}, ELR {:#x}",
                    ELR_EL2.get()
                ),
                None => log::info!(
                    "host access (IPA unknown, FAR {:#x}) blocked: synchronous external abort injected, {esr}, ELR {:#x}",
                    FAR_EL2.get(),
                    ELR_EL2.get()
                ),
            });
            inject_external_abort(esr.class() == ExceptionClass::InstructionAbortLower, esr.is_write());
        }
    }
    0
}

/// A host load or store to a redistributor's LPI control page: performed if
/// `host_lpi` lets it through, else refused with an abort.
#[cold]
#[inline(never)]
fn emulate_lpi_access(
    frame: &mut TrapFrame,
    esr: Esr,
    ipa: u64,
    page: crate::host_lpi::LpiPage,
    full_frame: bool,
) -> u64 {
    use crate::host_lpi::{decide, LpiDecision};
    use crate::vm::exit::{decode_mmio, load_value, store_value};
    let Some(access) = decode_mmio(esr) else {
        log_host_refusal(|| log::info!("host access to LPI controls at {ipa:#x} without a valid syndrome refused: {esr}"));
        inject_external_abort(false, esr.is_write());
        return 0;
    };
    let register = usize::from(access.register);
    if access.write && (19..=28).contains(&register) && !full_frame {
        return NEED_CALLEE_SAVED;
    }
    let bytes = u64::from(access.size_bytes);
    let write = access.write.then(|| store_value(access, if register == 31 { 0 } else { frame.regs[register] }));
    if decide(page, ipa & 0xfff, bytes, write) == LpiDecision::Refuse {
        log_host_refusal(|| log::info!("host access to LPI controls at {ipa:#x} refused (LPIs are withheld): {esr}"));
        inject_external_abort(false, access.write);
        return 0;
    }
    ELR_EL2.set(ELR_EL2.get() + 4);
    match write {
        // SAFETY: `ipa` is an aligned register (checked by `decide`) of a
        // redistributor frame the hyp maps (`boot` records only those pages);
        // `decide` let this write through.
        Some(value) => unsafe { crate::arch::aarch64::gicv3::write_redistributor(ipa as usize, bytes as usize, value) },
        None => {
            // SAFETY: As above; reading redistributor registers has no side effect.
            let data = unsafe { crate::arch::aarch64::gicv3::read_redistributor(ipa as usize, bytes as usize) };
            if register != 31 {
                return frame.set_x(register, load_value(access, data));
            }
        }
    }
    0
}

/// Entry from `vectors.S` for any exception taken from EL2: a hyp bug. Reports
/// everything through the lock-free console and powers off with a failure status.
#[no_mangle]
extern "C" fn handle_el2_exception(frame: &TrapFrame, kind: u64) -> ! {
    let esr = Esr(ESR_EL2.get());
    emergency_println!("[hyp PANIC] {:?} exception at EL2", ExceptionKind::from_vector(kind));
    emergency_println!("[hyp PANIC] {esr}");
    emergency_println!("[hyp PANIC] ELR {:#x} FAR {:#x} SPSR {:#x}", ELR_EL2.get(), FAR_EL2.get(), SPSR_EL2.get());
    for (i, pair) in frame.regs[..30].chunks(2).enumerate() {
        emergency_println!("[hyp PANIC] x{:<2} {:#018x}  x{:<2} {:#018x}", 2 * i, pair[0], 2 * i + 1, pair[1]);
    }
    emergency_println!("[hyp PANIC] x30 {:#018x}", frame.regs[30]);
    crate::power::system_off(1)
}
