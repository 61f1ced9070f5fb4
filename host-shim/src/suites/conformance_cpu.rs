//! Conformance checks of the CPU a guest sees (issue 20), in both VM types, at
//! whichever GIC version the board has, each vCPU moving between two physical
//! CPUs where the board has them. The guest (`cpu.S`) does one command at a
//! time for the host, as the GIC conformance checks' remote guest does:
//!
//! - ID registers agree with what traps: every register of the ID space reads
//!   without an exception, the same on every vCPU; for each feature the hyp
//!   hides (PMU, statistical profiling, trace, AMU, SVE, SME, MTE, LORegions,
//!   pointer authentication, MPAM, branch records) its ID field reads 0 and a
//!   register of it is UNDEFINED (EC 0 at EL1); for those it gives (RAS, the
//!   GICv3 CPU interface) the register works.
//! - FP/SIMD across vCPUs: vCPUs of one VM and of two VMs each load their
//!   own V0..V31, FPCR and FPSR and read back exactly those, run alternately
//!   on the two CPUs; and the host's own FP/SIMD registers, patterned around
//!   every VCPU_RUN, survive the guests' use of theirs.
//! - PSCI: CPU_ON's INVALID_PARAMETERS, INVALID_ADDRESS (unaligned, or not
//!   the VM's memory), ON_PENDING and ALREADY_ON; AFFINITY_INFO's OFF,
//!   ON_PENDING and ON as the other vCPU starts and stops on the other CPU
//!   (CPU_OFF racing with the poll); CPU_ON again with a new entry point and
//!   context.
//! - WFI wake-ups, with IRQs masked at PSTATE: at once with an interrupt
//!   pending; on the other CPU, by a sibling's SGI and by an SPI the host
//!   injects, each presented at once (the hyp's kick on GICv3, the host's on
//!   GICv2 and for injections).
//! - Active state: GICD_ISACTIVER/ICACTIVER (and GICR_ISACTIVER0) show the
//!   interrupts a vCPU acknowledged and has not ended, to it and to others.

use crate::guests::{self, load, GUEST_UART};
use crate::harness::arch::hvc_keeping_fp;
use crate::harness::cpus::{own_index, post, start_second_cpu, turn_off_second_cpu, wait_for};
use crate::harness::gic::{self, GicConfig};
use crate::harness::hypercall;
use crate::harness::platform::HostPlatform;
use crate::harness::remote_guest::{check_vm_ends, decode, Cpus, Failure, ARG, CMD, FAULT, MAX_RUNS, RESULT};
use crate::harness::report::check;
use crate::harness::vms::{create_ready, run_vcpu};
use core::sync::atomic::AtomicU64;
use core::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use hyp_abi::{
    Exit, HostCall, RunFlags, VmType, GUEST_GICV2_CPU_INTERFACE as GICC, GUEST_GICV3_REDISTRIBUTORS as GICR,
    GUEST_GIC_DISTRIBUTOR as GICD,
};

/// The guest's own registers (`CPU_*` in cpu.S); its command registers and
/// fault report are `remote_guest`'s.
const BOOT: u64 = GUEST_UART + 0x80;
const BOOT_ALT: u64 = GUEST_UART + 0x88;
const TRAPPED: u64 = GUEST_UART + 0x90;
/// The context vCPU 0 starts with.
const CONTEXT: u64 = 0xc0;
/// ISR_EL1.I: a virtual IRQ is pending.
const ISR_I: u64 = 1 << 7;
/// The SPIs of these checks.
const SPI: u64 = 40;
/// The instruction table (cpu.S): ID registers, probes, GIC accesses.
const ID_REGISTERS: usize = 56;
const PROBE_BASE: usize = ID_REGISTERS;
const GIC_BASE: usize = PROBE_BASE + PROBES.len();
const ICC_IAR1: u64 = GIC_BASE as u64;
const ICC_EOIR1: u64 = ICC_IAR1 + 1;
const ICC_SGI1R: u64 = ICC_IAR1 + 2;
const ICC_PMR: u64 = ICC_IAR1 + 3;
const ICC_IGRPEN1: u64 = ICC_IAR1 + 4;
const CPACR_WRITE: u64 = ICC_IAR1 + 5;
const CPACR_READ: u64 = ICC_IAR1 + 6;
/// CPACR_EL1.FPEN (21:20), ZEN (17:16) and SMEN (25:24).
const CPACR_FPEN: u64 = 3 << 20;
const CPACR_ZEN_SMEN: u64 = 3 << 16 | 3 << 24;

/// The guest's operations (see cpu.S).
#[derive(Clone, Copy, Debug)]
enum Op {
    CpuOff = 0,
    SystemOff = 1,
    Store = 2,
    Load = 3,
    Instruction = 4,
    FpFill = 5,
    FpCheck = 6,
    CpuOn = 7,
    AffinityInfo = 8,
    WaitWhileOn = 9,
    Wfi = 10,
}

/// The probes of cpu.S's table, in order: the register's name.
const PROBES: [&str; 19] = [
    "PMCR_EL0",
    "PMCCNTR_EL0",
    "PMUSERENR_EL0",
    "PMSIDR_EL1",
    "PMBIDR_EL1",
    "TRBIDR_EL1",
    "TRCIDR0",
    "TRFCR_EL1",
    "AMCR_EL0",
    "ZCR_EL1",
    "SMCR_EL1",
    "GCR_EL1",
    "TFSR_EL1",
    "LORID_EL1",
    "APIAKEYLO_EL1",
    "MPAM1_EL1",
    "BRBIDR0_EL1",
    "ERRIDR_EL1",
    "ICC_SRE_EL1",
];

/// An ID register field: the register's index in the ID space ((CRm - 1) * 8
/// + Op2) and the field's lowest bit.
type Field = (usize, u32);
const PFR0: usize = 24;
const PFR1: usize = 25;
const DFR0: usize = 32;
const ISAR1: usize = 41;
const MMFR1: usize = 49;

/// A feature: its name, the ID fields that announce it (any not zero), and
/// the probes (indices in [`PROBES`]) of its registers. MTE's registers need
/// MTE 2 (MTE 1 is EL0 instructions only): the field then counts from 2.
struct Feature {
    name: &'static str,
    fields: &'static [Field],
    probes: &'static [usize],
}

const FEATURES: [Feature; 14] = [
    Feature { name: "PMU (DFR0.PMUVer)", fields: &[(DFR0, 8)], probes: &[0, 1, 2] },
    Feature { name: "SPE (DFR0.PMSVer)", fields: &[(DFR0, 32)], probes: &[3, 4] },
    Feature { name: "trace buffer (DFR0.TraceBuffer)", fields: &[(DFR0, 44)], probes: &[5] },
    Feature { name: "trace unit (DFR0.TraceVer)", fields: &[(DFR0, 4)], probes: &[6] },
    Feature { name: "trace filter (DFR0.TraceFilt)", fields: &[(DFR0, 40)], probes: &[7] },
    Feature { name: "AMU (PFR0.AMU)", fields: &[(PFR0, 44)], probes: &[8] },
    Feature { name: "SVE (PFR0.SVE)", fields: &[(PFR0, 32)], probes: &[9] },
    Feature { name: "SME (PFR1.SME)", fields: &[(PFR1, 24)], probes: &[10] },
    Feature { name: "MTE 2 (PFR1.MTE)", fields: &[(PFR1, 8)], probes: &[11, 12] },
    Feature { name: "LORegions (MMFR1.LO)", fields: &[(MMFR1, 16)], probes: &[13] },
    Feature { name: "pointer authentication (ISAR1.APA, API)", fields: &[(ISAR1, 4), (ISAR1, 8)], probes: &[14] },
    Feature { name: "MPAM (PFR0.MPAM)", fields: &[(PFR0, 40)], probes: &[15] },
    Feature { name: "BRBE (DFR0.BRBE)", fields: &[(DFR0, 52)], probes: &[16] },
    Feature { name: "RAS (PFR0.RAS)", fields: &[(PFR0, 28)], probes: &[17] },
];

/// The GICv3 CPU interface: PFR0.GIC, ICC_SRE_EL1.
const GIC_FEATURE: Feature = Feature { name: "GICv3 CPU interface (PFR0.GIC)", fields: &[(PFR0, 24)], probes: &[18] };

/// PSCI ALREADY_ON.
const PSCI_ALREADY_ON: i64 = -4;

/// How the checks' lines say where the vCPUs ran.
fn vcpus_placement(cpus: &Cpus) -> &'static str {
    if cpus.other.is_some() {
        "the vCPUs on alternate CPUs"
    } else {
        "one CPU"
    }
}

/// Commands so far, of every VM: odd ones run on the other CPU.
static STEP: AtomicU64 = AtomicU64::new(0);
/// The host's FP/SIMD registers the other CPU's runs changed (see
/// [`hvc_keeping_fp`]); written by that CPU only.
static OTHER_FP_CHANGED: AtomicU64 = AtomicU64::new(0);
/// The other CPU's seed for its FP/SIMD pattern.
const OTHER_FP_SEED: u64 = 0x5eed_0000;
/// The GIC (its [`GicConfig`] words) and the EL1 physical timer's INTID, for
/// the other CPU's waiting runs; and that CPU's GICv2 interface bit.
static GIC_WORDS: [AtomicU64; 3] = [const { AtomicU64::new(0) }; 3];
static TIMER_INTID: AtomicU64 = AtomicU64::new(0);
static OTHER_GICV2_MASK: AtomicU64 = AtomicU64::new(0);
/// Set by the other CPU's [`wfi_job`] once it can be kicked (its kick SGIs
/// enabled, its interface bit published); cleared before each.
static OTHER_READY: AtomicU64 = AtomicU64::new(0);
/// Polls of [`OTHER_READY`] before the other CPU is declared lost.
const READY_POLLS: u64 = 1 << 28;

/// `VCPU_RUN` as another CPU's job: `[handle, vcpu, value]`, with the host's
/// FP/SIMD registers untouched.
fn run_job(_cpu: usize, [handle, vcpu, value]: [u64; 3]) -> [u64; 4] {
    let exit = hypercall::vcpu_run(handle, vcpu, value);
    if exit == Ok(Exit::Interrupted) {
        // (A kick that came late: the next run would end at once again.)
        gic::take_pending_interrupts();
    }
    hyp_abi::encode_result(exit.map(Exit::encode))
}

/// As [`run_job`], the host's FP/SIMD registers checked around the call.
fn run_job_keeping_fp(_cpu: usize, [handle, vcpu, value]: [u64; 3]) -> [u64; 4] {
    let (regs, changed) = hvc_keeping_fp(HostCall::VcpuRun.function_id(), [handle, vcpu, value, 0], OTHER_FP_SEED);
    OTHER_FP_CHANGED.store(OTHER_FP_CHANGED.load(Relaxed) | changed, Release);
    regs
}

/// The other CPU's job for a WFI: with its kicks enabled, runs `vcpu`
/// (waiting at a command) with the WFI command, waiting in the hyp (and, on
/// GICv3, kicked by the hyp), until the guest reported and waits for its next
/// command: [0, ISR_EL1 it read, runs the host's own interrupts ended, WFI
/// exits]; [1, ..] if a run failed or the guest did something else, [2, ..]
/// if the GIC did not answer.
fn wfi_job(_cpu: usize, [handle, vcpu, _]: [u64; 3]) -> [u64; 4] {
    let gic_config = GicConfig::from_words(core::array::from_fn(|i| GIC_WORDS[i].load(Acquire)));
    let Some(mask) =
        gic::enable_kick(gic_config, TIMER_INTID.load(Acquire) as u32).filter(|_| gic::enable_guest_ppis(gic_config))
    else {
        return [2, 0, 0, 0];
    };
    OTHER_GICV2_MASK.store(mask, Release);
    OTHER_READY.store(1, Release);
    let flags = RunFlags { wait_in_hyp: true, kick_sgi: Some(gic::VCPU_KICK_SGI as u8) };
    let (mut isr, mut interrupted, mut wfi) = (None, 0, 0);
    for _ in 0..MAX_RUNS {
        let exit = hypercall::vcpu_run_with(handle, vcpu, 0, flags);
        match exit {
            Ok(Exit::Mmio { ipa: RESULT, write: true, value, .. }) => isr = Some(value),
            Ok(Exit::Mmio { ipa: CMD, write: false, .. }) => {
                return [isr.map_or(1, |_| 0), isr.unwrap_or(0), interrupted, wfi]
            }
            Ok(Exit::Interrupted) => {
                gic::take_pending_interrupts();
                interrupted += 1;
            }
            Ok(Exit::Wfi { .. }) => wfi += 1,
            _ => return [1, Exit::encode(exit.unwrap_or(Exit::Interrupted))[0], 0, 0],
        }
    }
    [1, 0, interrupted, wfi]
}

/// Posts [`wfi_job`] for vCPU 0 of `handle` to CPU `cpu` and waits until that
/// CPU can be kicked.
fn post_wfi_job(cpu: usize, handle: u64) -> Result<(), Failure> {
    OTHER_READY.store(0, Release);
    post(cpu, wfi_job, [handle, 0, 0]);
    for _ in 0..READY_POLLS {
        if OTHER_READY.load(Acquire) != 0 {
            return Ok(());
        }
        core::hint::spin_loop();
    }
    Err(Failure::Lost)
}

/// What one command gave: its result, and the ESR_EL1 of the exception its
/// instruction took, if any.
type Answer = (u64, Option<u64>);

/// A VM of the CPU guest, driven one command at a time.
struct Guest {
    handle: u64,
    vcpus: u64,
    v2: bool,
    cpus: Cpus,
    /// The host's FP/SIMD pattern around every run on this CPU, and what the
    /// runs changed of it.
    host_fp: Option<u64>,
    fp_changed: u64,
    /// WFI exits seen.
    wfi_exits: u64,
    /// While the other CPU runs a vCPU of this VM as its own job: every
    /// command runs here, and a sibling's wake gets the host's kick there.
    pinned: bool,
}

impl Guest {
    /// A VM of `vcpus` vCPUs running the CPU guest, vCPU 0 started (with
    /// [`CONTEXT`]) and waiting for a command.
    fn start(ty: VmType, vcpus: u64, pa: u64, v2: bool, cpus: Cpus) -> Result<Guest, Failure> {
        // (Again for each VM: a protected VM's page comes back zeroed.)
        load(pa, guests::cpu());
        let handle = create_ready(ty, vcpus, pa, 1, CONTEXT).map_err(Failure::Run)?;
        let mut guest = Guest { handle, vcpus, v2, cpus, host_fp: None, fp_changed: 0, wfi_exits: 0, pinned: false };
        guest.boot(0)?;
        Ok(guest)
    }

    /// The CPU of the next command.
    fn cpu(&self) -> usize {
        match self.cpus.other {
            Some((cpu, ..)) if !self.pinned && STEP.load(Relaxed) % 2 == 1 => cpu,
            _ => self.cpus.own,
        }
    }

    /// One `VCPU_RUN` of `vcpu` (answering a load with `value`) on `cpu`.
    fn run(&mut self, cpu: usize, vcpu: u64, value: u64) -> Result<Exit, Failure> {
        if cpu == self.cpus.own {
            let Some(seed) = self.host_fp else {
                return run_vcpu(self.handle, vcpu, value).map_err(Failure::Run);
            };
            let (regs, changed) = hvc_keeping_fp(HostCall::VcpuRun.function_id(), [self.handle, vcpu, value, 0], seed);
            self.fp_changed |= changed;
            return decode(regs);
        }
        let job = if self.host_fp.is_some() { run_job_keeping_fp } else { run_job };
        post(cpu, job, [self.handle, vcpu, value]);
        decode(wait_for(cpu).ok_or(Failure::Lost)?)
    }

    /// Runs `vcpu` on `cpu` (answering its pending load with `value`) until it
    /// loads from or stores to one of `ipas`: that IPA and the value stored.
    /// A wake (the host kicks the other CPU), a CPU_ON or the host's own
    /// interrupt on the way is no business of these checks; an exception the
    /// guest's command took is noted in `trapped`.
    fn until(
        &mut self,
        cpu: usize,
        vcpu: u64,
        mut value: u64,
        ipas: &[u64],
        trapped: &mut Option<u64>,
    ) -> Result<(u64, u64), Failure> {
        for _ in 0..MAX_RUNS {
            match self.run(cpu, vcpu, value)? {
                Exit::Mmio { ipa, value: stored, .. } if ipas.contains(&ipa) => return Ok((ipa, stored)),
                Exit::Mmio { ipa: TRAPPED, write: true, value: esr, .. } => *trapped = Some(esr),
                Exit::Mmio { ipa: FAULT, write: true, value: esr, .. } => return Err(Failure::Fault(esr)),
                Exit::Wfi { .. } => self.wfi_exits += 1,
                Exit::Wake { targets } => self.kick(targets),
                Exit::CpuOn { .. } | Exit::Interrupted => {}
                other => return Err(Failure::Unexpected(other)),
            }
            value = 0;
        }
        Err(Failure::Lost)
    }

    /// A sibling made an interrupt deliverable for the vCPUs of `targets`: the
    /// other CPU, where one may wait (`wfi_job`), gets the host's kick.
    fn kick(&self, targets: u64) {
        let (Some((_, mpidr, _)), Some(gic)) = (self.cpus.other, gic_config()) else {
            return;
        };
        if self.pinned && targets != 0 {
            gic::kick(gic, mpidr, OTHER_GICV2_MASK.load(Acquire), gic::KICK_SGI);
        }
    }

    /// Runs a vCPU that was just started to its first command: the entry's
    /// report (`BOOT` or `BOOT_ALT`) and its x0.
    fn boot(&mut self, vcpu: u64) -> Result<(u64, u64), Failure> {
        let cpu = self.cpu();
        let booted = self.until(cpu, vcpu, 0, &[BOOT, BOOT_ALT], &mut None)?;
        self.until(cpu, vcpu, 0, &[CMD], &mut None)?;
        Ok(booted)
    }

    /// `op` with `extra` and `value` on `vcpu` (waiting for a command), on the
    /// CPU whose turn it is.
    fn cmd(&mut self, vcpu: u64, op: Op, extra: u64, value: u64) -> Result<Answer, Failure> {
        let cpu = self.cpu();
        STEP.store(STEP.load(Relaxed) + 1, Relaxed);
        let mut trapped = None;
        self.until(cpu, vcpu, op as u64 | extra << 32, &[ARG], &mut trapped)?;
        let (_, result) = self.until(cpu, vcpu, value, &[RESULT], &mut trapped)?;
        self.until(cpu, vcpu, 0, &[CMD], &mut trapped)?;
        Ok((result, trapped))
    }

    /// `op` with `value`: its result; an exception on the way is a failure.
    fn op(&mut self, vcpu: u64, op: Op, value: u64) -> Result<u64, Failure> {
        let answer = self.cmd(vcpu, op, 0, value)?;
        self.plain(answer)
    }

    fn plain(&self, (result, trapped): Answer) -> Result<u64, Failure> {
        match trapped {
            Some(esr) => Err(Failure::Fault(esr)),
            None => Ok(result),
        }
    }

    /// Instruction `index` of the guest's table, with `value`.
    fn instruction(&mut self, vcpu: u64, index: u64, value: u64) -> Result<Answer, Failure> {
        self.cmd(vcpu, Op::Instruction, index, value)
    }

    fn store(&mut self, vcpu: u64, ipa: u64, value: u64) -> Result<(), Failure> {
        let answer = self.cmd(vcpu, Op::Store, ipa, value)?;
        self.plain(answer).map(|_| ())
    }

    fn load(&mut self, vcpu: u64, ipa: u64) -> Result<u64, Failure> {
        let answer = self.cmd(vcpu, Op::Load, ipa, 0)?;
        self.plain(answer)
    }

    /// PSCI CPU_ON of `target` at the guest's start + `entry`, with `context`:
    /// the status.
    fn cpu_on(&mut self, vcpu: u64, target: u64, entry: u64, context: u64) -> Result<i64, Failure> {
        let answer = self.cmd(vcpu, Op::CpuOn, entry, context << 32 | target)?;
        self.plain(answer).map(|status| status as i64)
    }

    fn affinity_info(&mut self, vcpu: u64, target: u64) -> Result<i64, Failure> {
        self.op(vcpu, Op::AffinityInfo, target).map(|status| status as i64)
    }

    fn iar(&mut self, vcpu: u64) -> Result<u64, Failure> {
        if self.v2 {
            return self.load(vcpu, GICC + 0xc);
        }
        let answer = self.instruction(vcpu, ICC_IAR1, 0)?;
        self.plain(answer)
    }

    fn eoir(&mut self, vcpu: u64, intid: u64) -> Result<(), Failure> {
        if self.v2 {
            return self.store(vcpu, GICC + 0x10, intid);
        }
        let answer = self.instruction(vcpu, ICC_EOIR1, intid)?;
        self.plain(answer).map(|_| ())
    }

    /// vCPU `vcpu` sends SGI `intid` to vCPU `target`.
    fn sgi(&mut self, vcpu: u64, target: u64, intid: u64) -> Result<(), Failure> {
        if self.v2 {
            return self.store(vcpu, GICD + 0xf00, 1 << (16 + target) | intid);
        }
        let answer = self.instruction(vcpu, ICC_SGI1R, intid << 24 | 1 << target)?;
        self.plain(answer).map(|_| ())
    }

    /// Starts vCPU `vcpu` (from vCPU 0, PSCI CPU_ON at the main entry).
    fn start_vcpu(&mut self, vcpu: u64) -> Result<(), Failure> {
        match self.cpu_on(0, vcpu, 0, vcpu)? {
            0 => self.boot(vcpu).map(|_| ()),
            status => Err(Failure::Fault(status as u64)),
        }
    }

    /// Opens the distributor, SPI [`SPI`] and every vCPU's CPU interface
    /// (its redistributor awake on GICv3).
    fn open_gic(&mut self) -> Result<(), Failure> {
        self.store(0, GICD, if self.v2 { 1 } else { 0x12 })?;
        self.store(0, GICD + 0x104, 1 << (SPI - 32))?;
        for vcpu in 0..self.vcpus {
            if self.v2 {
                self.store(vcpu, GICC + 0x4, 0xff)?;
                self.store(vcpu, GICC, 1)?;
            } else {
                self.store(vcpu, GICR + (vcpu << 17) + 0x14, 0)?;
                let pmr = self.instruction(vcpu, ICC_PMR, 0xff)?;
                self.plain(pmr)?;
                let enable = self.instruction(vcpu, ICC_IGRPEN1, 1)?;
                self.plain(enable)?;
            }
        }
        Ok(())
    }

    /// The exit with which `op` (CPU_OFF or SYSTEM_OFF) ends `vcpu`'s run.
    fn power_off(&mut self, vcpu: u64, op: Op) -> Result<Exit, Failure> {
        let cpu = self.cpu();
        self.until(cpu, vcpu, op as u64, &[ARG], &mut None)?;
        for _ in 0..MAX_RUNS {
            match self.run(cpu, vcpu, 0)? {
                Exit::Interrupted => {}
                exit => return Ok(exit),
            }
        }
        Err(Failure::Lost)
    }

    /// Turns the vCPUs in `on` off (CPU_OFF, then vCPU 0's SYSTEM_OFF), tears
    /// the VM down and takes its page back: "the `gic` `kind` VM".
    fn finish(mut self, ty: VmType, on: &[u64], gic: &str, kind: &str) -> bool {
        let mut what = Text::new();
        let _ = core::fmt::Write::write_fmt(&mut what, format_args!("{gic} {kind} VM"));
        self.host_fp = None;
        let off = on.iter().map(|&vcpu| self.power_off(vcpu, Op::CpuOff)).find(|exit| *exit != Ok(Exit::CpuOff));
        let end = self.power_off(0, Op::SystemOff);
        let what = core::str::from_utf8(&what.bytes[..what.len]).unwrap_or("?");
        check_vm_ends(self.handle, ty, what, off, end)
    }
}

fn gic_config() -> Option<GicConfig> {
    let words: [u64; 3] = core::array::from_fn(|i| GIC_WORDS[i].load(Acquire));
    (words != [0; 3]).then(|| GicConfig::from_words(words))
}

/// Runs the CPU conformance checks with the guest's code in the page at `pa`;
/// true when all passed.
/// (`second_pa`: the second VM's page of the FP/SIMD check.)
pub fn run_all(platform: &HostPlatform, pa: u64, second_pa: u64) -> bool {
    let Some(gic_config) = platform.gic else {
        log::info!("no GIC: the CPU conformance checks are skipped");
        return true;
    };
    for (slot, word) in GIC_WORDS.iter().zip(gic_config.to_words()) {
        slot.store(word, Release);
    }
    TIMER_INTID.store(u64::from(platform.timer_intid.unwrap_or(30)), Release);
    let v2 = matches!(gic_config, GicConfig::V2 { .. });
    // Its vectors at +0x800 end the page: the code fits before them.
    if guests::cpu().len() > 0x1000 {
        return check!(false, "the CPU conformance guest's code runs into its vectors: {:#x}", guests::cpu().len());
    }
    let cpus = Cpus { own: own_index(platform), other: start_second_cpu(platform) };
    let mut passed = true;
    for ty in [VmType::NonProtected, VmType::Protected] {
        passed &= id_registers_and_traps(pa, ty, v2, cpus);
        passed &= fp_simd_across_vcpus(pa, second_pa, ty, v2, cpus);
        passed &= psci_power_states(pa, ty, v2, cpus);
        passed &= wfi_wake_ups(pa, ty, v2, cpus);
        passed &= active_state(pa, ty, v2, cpus);
    }
    passed & turn_off_second_cpu(platform, cpus.other, "CPU conformance")
}

fn gic_name(v2: bool) -> &'static str {
    if v2 {
        "GICv2"
    } else {
        "GICv3"
    }
}

/// How a probe went: `UNDEF` (EC 0), the value it read, or another exception.
fn outcome((value, trapped): Answer) -> Outcome {
    match trapped {
        None => Outcome::Reads(value),
        Some(esr) if esr >> 26 == 0 => Outcome::Undefined,
        Some(esr) => Outcome::Exception(esr >> 26),
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Outcome {
    Undefined,
    Reads(u64),
    /// An exception class other than "unknown reason".
    Exception(u64),
}

impl core::fmt::Display for Outcome {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Outcome::Undefined => write!(f, "UNDEF"),
            Outcome::Reads(value) => write!(f, "reads {value:#x}"),
            Outcome::Exception(ec) => write!(f, "EC {ec:#x}"),
        }
    }
}

/// The ID space on both vCPUs of a VM; then, on vCPU 0, each feature's ID
/// field and what its registers do. The field and the registers agree: 0
/// (hidden) and UNDEF, or announced and working.
fn id_registers_and_traps(pa: u64, ty: VmType, v2: bool, cpus: Cpus) -> bool {
    let gic = gic_name(v2);
    let Ok(mut vm) =
        Guest::start(ty, 2, pa, v2, cpus).map_err(|f| check!(false, "set up the {gic} ID register VM: {f:?}"))
    else {
        return false;
    };
    let seen = (|| -> Result<_, Failure> {
        vm.start_vcpu(1)?;
        let mut ids = [[0u64; ID_REGISTERS]; 2];
        let mut trapped = 0;
        for (vcpu, ids) in ids.iter_mut().enumerate() {
            for (index, id) in ids.iter_mut().enumerate() {
                let (value, exception) = vm.instruction(vcpu as u64, index as u64, 0)?;
                *id = value;
                trapped += u64::from(exception.is_some());
            }
        }
        // The SVE and SME enables cannot be set: the probes run with them
        // written as set.
        let written = vm.instruction(0, CPACR_WRITE, CPACR_FPEN | CPACR_ZEN_SMEN)?;
        vm.plain(written)?;
        let cpacr = vm.instruction(0, CPACR_READ, 0)?;
        let cpacr = vm.plain(cpacr)?;
        let mut probes = [Outcome::Undefined; PROBES.len()];
        for (index, probe) in probes.iter_mut().enumerate() {
            *probe = outcome(vm.instruction(0, (PROBE_BASE + index) as u64, 0)?);
        }
        Ok((ids, trapped, cpacr, probes))
    })();
    let Ok((ids, trapped, cpacr, probes)) = seen else {
        check!(false, "the {gic} ID registers ({ty:?}): {seen:x?}");
        vm.finish(ty, &[1], gic, "ID register");
        return false;
    };
    // The main registers by name: (CRm, Op2).
    let named = [
        ("PFR0", 4, 0),
        ("PFR1", 4, 1),
        ("ZFR0", 4, 4),
        ("SMFR0", 4, 5),
        ("DFR0", 5, 0),
        ("DFR1", 5, 1),
        ("ISAR0", 6, 0),
        ("ISAR1", 6, 1),
        ("ISAR2", 6, 2),
        ("MMFR0", 7, 0),
        ("MMFR1", 7, 1),
        ("MMFR2", 7, 2),
        ("MMFR3", 7, 3),
    ];
    let mut listing = Text::new();
    for (name, crm, op2) in named {
        let _ = core::fmt::Write::write_fmt(&mut listing, format_args!(" {name} {:#x}", ids[0][(crm - 1) * 8 + op2]));
    }
    let mut passed = check!(
        trapped == 0 && ids[0] == ids[1],
        "{gic} ID registers ({ty:?}, {}): all {ID_REGISTERS} of the ID space read without an exception ({trapped} took one), the same on both vCPUs ({}):{listing}",
        vcpus_placement(&cpus),
        ids[0] == ids[1]
    );
    let field = |(register, shift): Field| ids[0][register] >> shift & 0xf;
    let mut features = FEATURES.iter().chain(core::iter::once(&GIC_FEATURE));
    let mut agree = cpacr == CPACR_FPEN;
    let mut report = Text::new();
    for feature in &mut features {
        let value = feature.fields.iter().fold(0, |any, &f| any | field(f));
        // MTE 1 is EL0 instructions only: no registers.
        let announced = if feature.name.starts_with("MTE") { value >= 2 } else { value != 0 };
        let _ = core::fmt::Write::write_fmt(&mut report, format_args!("; {} {value}:", feature.name));
        for &probe in feature.probes {
            let seen = probes[probe];
            agree &= if announced { matches!(seen, Outcome::Reads(_)) } else { seen == Outcome::Undefined };
            let _ = core::fmt::Write::write_fmt(&mut report, format_args!(" {} {seen}", PROBES[probe]));
        }
    }
    passed &= check!(
        agree,
        "{gic} ID fields and traps agree ({ty:?}): CPACR_EL1 written with FPEN, ZEN and SMEN reads {cpacr:#x} (no SVE, SME enables); a hidden feature's registers UNDEF, an announced one's work{report}"
    );
    passed & vm.finish(ty, &[1], gic, "ID register")
}

/// What [`fp_simd_across_vcpus`] sees: the guests' mismatch masks (two
/// rounds of three), and the host's (this CPU's, the other's).
type FpSeen = ([u64; 6], [u64; 2]);

/// vCPUs 0 and 1 of one VM and vCPU 0 of another each fill V0..V31, FPCR and
/// FPSR from a seed of their own, then read them back twice, the vCPUs on
/// alternate CPUs; every run is made with the host's own FP/SIMD registers
/// patterned (`hvc_keeping_fp`), which must come back unchanged.
fn fp_simd_across_vcpus(pa: u64, second_pa: u64, ty: VmType, v2: bool, cpus: Cpus) -> bool {
    let gic = gic_name(v2);
    let Ok(mut first) =
        Guest::start(ty, 2, pa, v2, cpus).map_err(|f| check!(false, "set up the {gic} FP/SIMD VM: {f:?}"))
    else {
        return false;
    };
    let Ok(mut second) = Guest::start(ty, 1, second_pa, v2, cpus)
        .map_err(|f| check!(false, "set up the second {gic} FP/SIMD VM: {f:?}"))
    else {
        first.finish(ty, &[], gic, "FP/SIMD");
        return false;
    };
    OTHER_FP_CHANGED.store(0, Release);
    let seen = (|| -> Result<FpSeen, Failure> {
        first.start_vcpu(1)?;
        first.host_fp = Some(0x4f57_0000);
        second.host_fp = Some(0x4f57_1000);
        first.op(0, Op::FpFill, 0x1000_0000)?;
        first.op(1, Op::FpFill, 0x2000_0000)?;
        second.op(0, Op::FpFill, 0x3000_0000)?;
        let mut masks = [u64::MAX; 6];
        for round in masks.chunks_mut(3) {
            round[0] = first.op(0, Op::FpCheck, 0x1000_0000)?;
            round[1] = first.op(1, Op::FpCheck, 0x2000_0000)?;
            round[2] = second.op(0, Op::FpCheck, 0x3000_0000)?;
        }
        Ok((masks, [first.fp_changed | second.fp_changed, OTHER_FP_CHANGED.load(Acquire)]))
    })();
    let passed = check!(
        seen == Ok(([0; 6], [0; 2])),
        "{gic} FP/SIMD ({ty:?}, {}): vCPUs 0 and 1 of a VM and vCPU 0 of another each read back their own V0..V31, FPCR and FPSR, twice (registers that differ), and the host's own FP/SIMD registers survive every run (on each CPU): {seen:x?}",
        vcpus_placement(&cpus)
    );
    let ended = first.finish(ty, &[1], gic, "FP/SIMD");
    passed & ended & second.finish(ty, &[], gic, "second FP/SIMD")
}

/// What [`psci_power_states`] sees.
type PsciSeen = ([i64; 6], [i64; 3], (u64, u64), [i64; 3], [i64; 2], (u64, u64), i64);

/// vCPU 0 of a two-vCPU VM: AFFINITY_INFO of vCPU 1 (OFF) and of a vCPU the
/// VM does not have (INVALID_PARAMETERS), CPU_ON of no vCPU, of vCPU 1 at an
/// unaligned entry and at one outside the VM's memory (INVALID_ADDRESS);
/// CPU_ON of vCPU 1 (SUCCESS), then AFFINITY_INFO (ON_PENDING), CPU_ON again
/// (ON_PENDING) and of itself (ALREADY_ON); vCPU 1 starts on the other CPU
/// with the context given; AFFINITY_INFO (ON), CPU_ON (ALREADY_ON); vCPU 1's
/// CPU_OFF on the other CPU while vCPU 0 polls AFFINITY_INFO here until it
/// is no longer ON (OFF); CPU_ON at the other entry with another context,
/// which vCPU 1 reports, and AFFINITY_INFO (ON).
fn psci_power_states(pa: u64, ty: VmType, v2: bool, cpus: Cpus) -> bool {
    let gic = gic_name(v2);
    let Ok(mut vm) = Guest::start(ty, 2, pa, v2, cpus).map_err(|f| check!(false, "set up the {gic} PSCI VM: {f:?}"))
    else {
        return false;
    };
    let seen = (|| -> Result<PsciSeen, Failure> {
        let refused = [
            vm.affinity_info(0, 1)?,
            vm.affinity_info(0, 2)?,
            vm.cpu_on(0, 2, 0, 0)?,
            vm.cpu_on(0, 0x100, 0, 0)?,
            vm.cpu_on(0, 1, 2, 0)?,
            vm.cpu_on(0, 1, 0x10_0000, 0)?,
        ];
        let pending = [vm.cpu_on(0, 1, 0, 0x1111)?, vm.affinity_info(0, 1)?, vm.cpu_on(0, 1, 0, 0x1111)?];
        let booted = vm.boot(1)?;
        let on = [vm.affinity_info(0, 1)?, vm.cpu_on(0, 1, 0, 0)?, vm.cpu_on(0, 0, 0, 0)?];
        let mut off = [i64::MIN; 2];
        // vCPU 1's CPU_OFF on the other CPU while vCPU 0 polls here.
        match cpus.other {
            Some((cpu, ..)) => {
                vm.until(cpu, 1, Op::CpuOff as u64, &[ARG], &mut None)?;
                vm.pinned = true;
                post(cpu, run_job, [vm.handle, 1, 0]);
                let polled = vm.op(0, Op::WaitWhileOn, 1);
                let exit = decode(wait_for(cpu).ok_or(Failure::Lost)?)?;
                vm.pinned = false;
                off[0] = polled? as i64;
                if exit != Exit::CpuOff {
                    return Err(Failure::Unexpected(exit));
                }
            }
            None => {
                if vm.power_off(1, Op::CpuOff)? != Exit::CpuOff {
                    return Err(Failure::Lost);
                }
                off[0] = vm.op(0, Op::WaitWhileOn, 1)? as i64;
            }
        }
        off[1] = vm.cpu_on(0, 1, 4, 0x2222)?;
        let again = vm.boot(1)?;
        Ok((refused, pending, booted, on, off, again, vm.affinity_info(0, 1)?))
    })();
    let expected: PsciSeen =
        ([1, -2, -2, -2, -9, -9], [0, 2, -5], (BOOT, 0x1111), [0, -4, -4], [1, 0], (BOOT_ALT, 0x2222), 0);
    let passed = check!(
        seen == Ok(expected),
        "{gic} PSCI ({ty:?}, {}): AFFINITY_INFO of vCPU 1 and of no vCPU, CPU_ON of no vCPU (Aff0 2, Aff1 1), unaligned and outside memory; CPU_ON, AFFINITY_INFO, CPU_ON again while pending; vCPU 1's entry and context; AFFINITY_INFO, CPU_ON of vCPU 1 and of vCPU 0 itself once on; AFFINITY_INFO polled while vCPU 1 turns off elsewhere, CPU_ON at the other entry; its entry and context, AFFINITY_INFO: {seen:?}",
        vcpus_placement(&cpus)
    );
    passed & vm.finish(ty, &[1], gic, "PSCI")
}

/// What [`wfi_wake_ups`] sees.
type WfiSeen = ([u64; 3], [i64; 2], [u64; 4], [u64; 4]);

/// Two vCPUs, their GIC open. SPI 40 pending before vCPU 0's WFI (IRQs
/// masked): the WFI returns with ISR_EL1.I set, no WFI exit, and it
/// acknowledges 40. Then, with another CPU: vCPU 0 waits in WFI there (in the
/// hyp, kicks on); vCPU 1 sees it ON (AFFINITY_INFO; CPU_ON: ALREADY_ON) and
/// sends it an SGI; vCPU 0's WFI returns (ISR_EL1.I) and it acknowledges the
/// SGI. Again with SPI 40 the host injects. Each wait reports (0, ISR_EL1,
/// the host's own interrupts on that CPU, WFI exits).
fn wfi_wake_ups(pa: u64, ty: VmType, v2: bool, cpus: Cpus) -> bool {
    let gic = gic_name(v2);
    let Ok(mut vm) = Guest::start(ty, 2, pa, v2, cpus).map_err(|f| check!(false, "set up the {gic} WFI VM: {f:?}"))
    else {
        return false;
    };
    let handle = vm.handle;
    let seen = (|| -> Result<WfiSeen, Failure> {
        vm.start_vcpu(1)?;
        vm.open_gic()?;
        hypercall::vcpu_inject_irq(handle, 0, SPI).map_err(Failure::Run)?;
        vm.wfi_exits = 0;
        let isr = vm.op(0, Op::Wfi, 0)?;
        let pending = [isr, vm.wfi_exits, vm.iar(0)?];
        vm.eoir(0, pending[2])?;
        let Some((cpu, ..)) = cpus.other else {
            return one_cpu_wake_ups(&mut vm, pending);
        };
        // vCPU 0 to the other CPU, in WFI there.
        vm.until(cpu, 0, Op::Wfi as u64, &[ARG], &mut None)?;
        vm.pinned = true;
        post_wfi_job(cpu, handle)?;
        let seen_on = (|| Ok([vm.affinity_info(1, 0)?, vm.cpu_on(1, 0, 0, 0)?]))();
        let sent = vm.sgi(1, 0, 5);
        let by_sgi = wait_for(cpu).ok_or(Failure::Lost)?;
        vm.pinned = false;
        let (seen_on, ()) = (seen_on?, sent?);
        let sgi = vm.iar(0)?;
        vm.eoir(0, sgi)?;
        vm.until(cpu, 0, Op::Wfi as u64, &[ARG], &mut None)?;
        vm.pinned = true;
        post_wfi_job(cpu, handle)?;
        let injected = hypercall::vcpu_inject_irq(handle, 0, SPI);
        vm.kick(1);
        let by_spi = wait_for(cpu).ok_or(Failure::Lost)?;
        vm.pinned = false;
        injected.map_err(Failure::Run)?;
        let spi = vm.iar(0)?;
        vm.eoir(0, spi)?;
        // (The job answered the command; the host's interrupt counts vary.)
        Ok((pending, seen_on, [by_sgi[0], by_sgi[1], by_sgi[3], sgi], [by_spi[0], by_spi[1], by_spi[3], spi]))
    })();
    let sgi = if v2 { 0x405 } else { 5 };
    // With one CPU, each WFI exits once (nothing pending yet).
    let exits = u64::from(cpus.other.is_none());
    let expected: WfiSeen = ([ISR_I, 0, SPI], [0, PSCI_ALREADY_ON], [0, ISR_I, exits, sgi], [0, ISR_I, exits, SPI]);
    let passed = check!(
        seen == Ok(expected),
        "{gic} WFI with IRQs masked ({ty:?}, {}): with SPI 40 pending (ISR_EL1, WFI exits, acknowledged); vCPU 0 in WFI (on the other CPU where there is one) seen ON by vCPU 1 (AFFINITY_INFO, CPU_ON), woken by its SGI 5 (status, ISR_EL1, WFI exits, acknowledged), then by SPI 40 from the host: {seen:?}",
        vcpus_placement(&cpus)
    );
    passed & vm.finish(ty, &[1], gic, "WFI")
}

/// [`wfi_wake_ups`] with one CPU: vCPU 0's WFI exits to the host (nothing
/// pending), vCPU 1 sends the SGI (then the host injects the SPI) while it is
/// out, and it comes back past its WFI with the interrupt pending.
fn one_cpu_wake_ups(vm: &mut Guest, pending: [u64; 3]) -> Result<WfiSeen, Failure> {
    let own = vm.cpus.own;
    let seen_on = [vm.affinity_info(1, 0)?, vm.cpu_on(1, 0, 0, 0)?];
    let mut woken = [[0u64; 4]; 2];
    for (slot, by_sgi) in woken.iter_mut().zip([true, false]) {
        vm.until(own, 0, Op::Wfi as u64, &[ARG], &mut None)?;
        match vm.run(own, 0, 0)? {
            Exit::Wfi { .. } => {}
            other => return Err(Failure::Unexpected(other)),
        }
        if by_sgi {
            vm.sgi(1, 0, 5)?;
        } else {
            hypercall::vcpu_inject_irq(vm.handle, 0, SPI).map_err(Failure::Run)?;
        }
        let (_, isr) = vm.until(own, 0, 0, &[RESULT], &mut None)?;
        vm.until(own, 0, 0, &[CMD], &mut None)?;
        let intid = vm.iar(0)?;
        vm.eoir(0, intid)?;
        *slot = [0, isr, 1, intid];
    }
    Ok((pending, seen_on, woken[0], woken[1]))
}

/// What [`active_state`] sees.
type ActiveSeen = ([u64; 2], [u64; 4], [u64; 3]);

/// Two vCPUs, their GIC open: vCPU 0 acknowledges SPI 40, then SGI 3 (from
/// itself, more urgent), and does not end them yet. Its GICD_ISACTIVER1 and ICACTIVER1 show
/// 40, its GICD_ISACTIVER0 (GICv2) or GICR_ISACTIVER0 shows 3, and vCPU 1
/// reads the same of 40 and of vCPU 0's SGI (GICv3: vCPU 0's redistributor;
/// GICv2 banks SGIs, so vCPU 1's own GICD_ISACTIVER0 shows none). Once
/// vCPU 0 ended both, nothing is active.
fn active_state(pa: u64, ty: VmType, v2: bool, cpus: Cpus) -> bool {
    let gic = gic_name(v2);
    let Ok(mut vm) =
        Guest::start(ty, 2, pa, v2, cpus).map_err(|f| check!(false, "set up the {gic} active-state VM: {f:?}"))
    else {
        return false;
    };
    let handle = vm.handle;
    let private_active = |vcpu: u64| if v2 { GICD + 0x300 } else { GICR + (vcpu << 17) + 0x1_0300 };
    let seen = (|| -> Result<ActiveSeen, Failure> {
        vm.start_vcpu(1)?;
        vm.open_gic()?;
        // SPI 40 at priority 0x80 first; then SGI 3, more urgent (0x40), preempts it.
        vm.store(0, GICD + 0x428, 0x80)?;
        vm.store(0, if v2 { GICD + 0x400 } else { GICR + 0x1_0400 }, 0x40 << 24)?;
        hypercall::vcpu_inject_irq(handle, 0, SPI).map_err(Failure::Run)?;
        let spi = vm.iar(0)?;
        vm.sgi(0, 0, 3)?;
        let taken = [spi, vm.iar(0)?];
        let active = [
            vm.load(0, GICD + 0x304)?,
            vm.load(0, GICD + 0x384)?,
            vm.load(0, private_active(0))?,
            vm.load(1, GICD + 0x304)?,
        ];
        let other_view = vm.load(1, private_active(0))?;
        for &intid in taken.iter().rev() {
            vm.eoir(0, intid)?;
        }
        Ok((taken, active, [other_view, vm.load(0, GICD + 0x304)?, vm.load(0, private_active(0))?]))
    })();
    let (sgi, sgi_elsewhere) = if v2 { (0x003, 0) } else { (3, 1 << 3) };
    let expected: ActiveSeen = ([SPI, sgi], [1 << 8, 1 << 8, 1 << 3, 1 << 8], [sgi_elsewhere, 0, 0]);
    let passed = check!(
        seen == Ok(expected),
        "{gic} active state ({ty:?}, {}): vCPU 0 acknowledges SPI 40 and SGI 3; its GICD_ISACTIVER1, ICACTIVER1, {} and vCPU 1's GICD_ISACTIVER1; vCPU 1's view of vCPU 0's SGIs, then after both ended GICD_ISACTIVER1 and the SGIs' again: {seen:x?}",
        vcpus_placement(&cpus),
        if v2 { "GICD_ISACTIVER0" } else { "GICR_ISACTIVER0" }
    );
    passed & vm.finish(ty, &[1], gic, "active-state")
}

/// Text built up in pieces for one check's line (the shim has no allocator).
struct Text {
    bytes: [u8; 1536],
    len: usize,
}

impl Text {
    const fn new() -> Text {
        Text { bytes: [0; 1536], len: 0 }
    }
}

impl core::fmt::Write for Text {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let end = self.len + s.len();
        let slot = self.bytes.get_mut(self.len..end).ok_or(core::fmt::Error)?;
        slot.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

impl core::fmt::Display for Text {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Only whole `&str`s are ever copied in: valid UTF-8.
        f.write_str(core::str::from_utf8(&self.bytes[..self.len]).unwrap_or("?"))
    }
}
