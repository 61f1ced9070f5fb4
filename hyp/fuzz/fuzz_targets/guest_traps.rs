//! A guest's trap, as the world switch hands it over: any ESR, FAR, IPA and
//! registers, against a VM whose answers come from the input too. The handler
//! must decide without panicking, and never exit with an MMIO access to the
//! VM's own memory.

#![no_main]

use libfuzzer_sys::fuzz_target;
use hyp_fuzz::arch::trap_record::GuestTrap;
use hyp_fuzz::arch::{context, esr};
use hyp_fuzz::vm::{exit, guest_trap};

use guest_trap::{IpaKind, Outcome, VmView};

struct View {
    kind: u8,
    vcpus: u64,
    /// The guest's VBAR_EL1, as the fuzzer chose it.
    vbar: u64,
}

impl View {
    fn kind(&self) -> IpaKind {
        match self.kind % 4 {
            0 => IpaKind::Memory,
            1 => IpaKind::Lost,
            2 => IpaKind::Refused,
            _ => IpaKind::Other,
        }
    }
}

impl VmView for View {
    /// For a count of mapping changes already past: never remembered, so
    /// that every abort asks (the property below checks this answer).
    fn ipa_kind(&self, _: u64) -> (IpaKind, u64) {
        (self.kind(), 0)
    }
    fn mappings_generation(&self) -> u64 {
        1
    }
    fn cpu_on(&self, target: u64, _: u64, _: u64) -> Result<u64, i64> {
        if target < self.vcpus {
            Ok(target)
        } else {
            Err(-2)
        }
    }
    fn affinity_info(&self, target: u64) -> i64 {
        i64::from(target >= self.vcpus)
    }
    fn send_sgi(&self, targets: u64, _: u32) -> u64 {
        targets & ((1 << self.vcpus) - 1)
    }
    fn vcpu_index(&self) -> usize {
        0
    }
    fn id_register(&self, _: hyp_fuzz::arch::sysreg::SysReg) -> u64 {
        u64::from(self.kind) * 0x0101_0101_0101_0101
    }
    /// Whatever the fuzzer chose: the guest reads it back masked.
    fn cpacr(&self) -> u64 {
        u64::from(self.kind) * 0x0101_0101_0101_0101
    }
    fn sctlr(&self) -> u64 {
        u64::from(self.kind).wrapping_mul(0x0123_4567_89ab_cdef)
    }
    fn vbar(&self) -> u64 {
        self.vbar
    }
    fn set_cpacr(&self, _: u64) {}
    fn gicv3(&self) -> bool {
        self.kind & 1 != 0
    }
    fn mmio_guard(&self, call: exit::GuardCall) -> u64 {
        match call {
            exit::GuardCall::Enroll => 0,
            _ => u64::from(self.kind),
        }
    }
    fn guest_memory(&self, _: exit::MemoryCall) -> u64 {
        u64::from(self.kind)
    }
}

fuzz_target!(|data: &[u8]| {
    let word = |i: usize| {
        let mut bytes = [0u8; 8];
        if let Some(chunk) = data.get(i * 8..) {
            let n = chunk.len().min(8);
            bytes[..n].copy_from_slice(&chunk[..n]);
        }
        u64::from_le_bytes(bytes)
    };
    let mut ctx = context::VcpuContext::at_entry(word(0), word(1));
    ctx.pstate = word(2);
    for i in 0..31 {
        ctx.gprs.x[i] = word(4 + i % 8);
    }
    let trap = GuestTrap { kind: word(12) % 4, esr: esr::Esr(word(13)), far: word(14), ipa: word(15) };
    let view = View { kind: data.first().copied().unwrap_or(0), vcpus: 1 + word(16) % 8, vbar: word(3) };
    let protected = word(17) & 1 != 0;
    match guest_trap::handle(&mut ctx, trap, protected, &view) {
        Outcome::ToHost { exit: hyp_abi::Exit::Mmio { .. }, .. } => {
            assert_eq!(view.kind(), IpaKind::Other, "its own memory, and what its MMIO guard refuses, are never MMIO");
        }
        Outcome::ToHost { exit: hyp_abi::Exit::Fatal { esr, address }, .. } if protected => {
            assert_eq!((esr, address), (0, 0), "a protected VM's fault shows nothing");
        }
        _ => {}
    }
});
