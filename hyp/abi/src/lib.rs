//! The hypercall ABI between the hyp and its callers (host shim, later guests).
//!
//! Calls follow SMCCC 1.1 over `HVC #0`: fast calls, SMC64 convention, owner
//! "vendor specific hypervisor service" (function IDs `0xC600_xxxx`). The function
//! ID goes in x0, arguments in x1..x6; x0 returns a status (0 = success, negative =
//! [`HypError`]) and x1..x3 return values. Every number of the ABI is defined here
//! once; `docs/abi.md` describes each call.
//!
//! Host-facing calls are numbered from [`HOST_CALL_BASE`] so that they never collide
//! with the guest-facing vendor calls ([`GuestCall`]), which use Linux's (KVM's)
//! numbers and Android's pKVM's where Linux defines none.

#![no_std]
#![forbid(unsafe_code)]

use core::fmt;

pub mod bootargs;
pub mod fdt;
pub mod image_header;
pub mod image_seal;

/// SMCCC function-ID bit 31: fast call.
const SMCCC_FAST_CALL: u32 = 1 << 31;
/// SMCCC function-ID bit 30: SMC64/HVC64 calling convention.
const SMCCC_64: u32 = 1 << 30;
/// SMCCC owning entity 6: vendor specific hypervisor service (bits 29:24).
const OWNER_VENDOR_HYP: u32 = 6 << 24;
/// Mask of the function number within an owner (bits 15:0).
const FUNCTION_NUMBER_MASK: u32 = 0xFFFF;

/// Prefix shared by every vendor-hyp SMC64 fast call: `0xC600_0000`.
pub const VENDOR_HYP_SMC64_BASE: u32 = SMCCC_FAST_CALL | SMCCC_64 | OWNER_VENDOR_HYP;

/// First function number of the host-facing calls (guest calls use 0..=0xFFF).
pub const HOST_CALL_BASE: u16 = 0x1000;

/// Builds the vendor-hyp SMC64 fast-call function ID of function `number`.
pub const fn vendor_hyp_fn(number: u16) -> u32 {
    VENDOR_HYP_SMC64_BASE | number as u32
}

/// The host-facing hypercalls. The discriminant is the offset from [`HOST_CALL_BASE`],
/// which is also the call's bit in the [`HostCall::Features`] bitmap.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[repr(u16)]
pub enum HostCall {
    /// ABI version: x1 = major, x2 = minor.
    Version = 0,
    /// Supported host calls: x1 = bitmap, bit n set when call `HOST_CALL_BASE + n` exists;
    /// x2 = [`platform_flags`].
    Features = 1,
    /// Lend pages to the hyp: x1 = physical address, x2 = page count.
    ShareHyp = 2,
    /// Take back pages lent to the hyp: x1 = physical address, x2 = page count.
    UnshareHyp = 3,
    /// Give pages to the hyp for its metadata (memcache): x1 = address, x2 = count.
    DonateHyp = 4,
    /// Take back donated pages the hyp does not use, zeroed: x1 = address, x2 = count.
    ReclaimHyp = 5,
    /// Create a VM: x1 = [`VmType`], x2 = vCPU count; returns x1 = handle.
    VmCreate = 6,
    /// Give a VM memory: x1 = handle, x2 = physical address, x3 = IPA, x4 = pages.
    /// Donated to a protected VM, lent to a non-protected one.
    VmMap = 7,
    /// Set a vCPU's entry: x1 = handle, x2 = vCPU index, x3 = PC, x4 = x0.
    VcpuInit = 8,
    /// Run a vCPU until it exits: x1 = handle, x2 = vCPU index, x3 = the value of
    /// a pending MMIO read. Returns x1 = [`Exit`] reason and flags, x2, x3 = data.
    VcpuRun = 9,
    /// Read a vCPU register (non-protected VMs): x1 = handle, x2 = vCPU, x3 = [`VcpuReg`].
    VcpuGetReg = 10,
    /// Write a vCPU register (non-protected VMs): x1..x3 as for get, x4 = value.
    VcpuSetReg = 11,
    /// VM information: x1 = handle; returns x1 = is_protected, x2 = vCPUs, x3 = pages held.
    VmInfo = 12,
    /// Tear a VM down: x1 = handle. It never runs again; its memory waits for reclaim.
    VmTeardown = 13,
    /// Take back a torn-down VM's memory, zeroed: x1 = handle, x2 = IPA, x3 = pages.
    /// When the VM holds no more pages its handle dies.
    VmReclaim = 14,
    /// Make an interrupt pending (an edge): x1 = handle, x2 = vCPU index, x3 =
    /// INTID (SGI 0..15 and PPI 16..31 for that vCPU, SPI 32..95 for the vCPU
    /// the guest routes it to). Returns x1 = the vCPU it goes to (`u64::MAX`:
    /// none yet). The guest's own distributor, which the hyp emulates, decides
    /// when it takes it.
    VcpuInjectIrq = 15,
    /// Without a GIC: set a vCPU's virtual IRQ line (HCR_EL2.VI), x1 = handle,
    /// x2 = vCPU index, x3 = level (0 or 1). The line stays as set until the
    /// host sets it again.
    VcpuSetIrqLine = 16,
    /// Place the VM's GIC in its IPA space, before any of its vCPUs ran: x1 =
    /// handle, x2 = the distributor's IPA (64 KiB window, 64 KiB aligned), x3 =
    /// GICv3: the redistributors' IPA (vCPU n's 128 KiB at x3 + n * 0x2_0000,
    /// 64 KiB aligned); GICv2: the CPU interface's IPA (8 KiB, 4 KiB aligned).
    /// Until then the VM has [`GUEST_GIC_DISTRIBUTOR`] and its siblings.
    VmSetGic = 17,
    /// Set the input line of a level-sensitive SPI: x1 = handle, x2 = a vCPU
    /// index of the VM, x3 = INTID (32..95), x4 = level (0 or 1). While the
    /// line is high the SPI is pending (again after the guest ends it); when
    /// it falls, a level-configured SPI not yet taken stops being pending.
    /// Returns x1 as [`HostCall::VcpuInjectIrq`] does.
    VmSetSpiLevel = 18,
    /// Test builds only: run the invariant checker, x1 = [`CheckScope`]. Returns
    /// x1 = violations, x2 = free memcache pages | memcache pages in use << 32
    /// (a full check only; `u64::MAX` otherwise), x3 = bytes of the hyp's pool in use.
    DebugCheckInvariants = 62,
    /// Test builds only: the hyp exchanges the u64 at x1 (in a page lent to it)
    /// with x2 and returns the old value in x1.
    DebugExchange = 63,
}

/// What FEATURES reports about the platform in x2.
pub mod platform_flags {
    /// The hyp was booted with `hyp.dma=permissive`: the host has bus masters
    /// no IOMMU of the hyp's confines, so protected VMs' memory (and the hyp's)
    /// is not isolated from DMA the host programs.
    pub const DMA_NOT_ISOLATED: u64 = 1 << 0;
}

/// What `DebugCheckInvariants` checks (x1).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[repr(u64)]
pub enum CheckScope {
    /// Everything: every table, every page record, every guest.
    Full = 0,
    /// Only what the transitions touched since the last check (of either
    /// scope): their ranges, widened to 2 MiB blocks, and the stage-2s of the
    /// guests they changed. A full check now and then covers the rest.
    Touched = 1,
}

impl CheckScope {
    pub fn from_raw(raw: u64) -> Option<CheckScope> {
        match raw {
            0 => Some(CheckScope::Full),
            1 => Some(CheckScope::Touched),
            _ => None,
        }
    }
}

/// Most pages one memory call (share, unshare, donate, reclaim) may name.
pub const MAX_PAGES_PER_CALL: u64 = 512;

impl HostCall {
    /// Every host call, in function-number order.
    pub const ALL: [HostCall; 21] = [
        HostCall::Version,
        HostCall::Features,
        HostCall::ShareHyp,
        HostCall::UnshareHyp,
        HostCall::DonateHyp,
        HostCall::ReclaimHyp,
        HostCall::VmCreate,
        HostCall::VmMap,
        HostCall::VcpuInit,
        HostCall::VcpuRun,
        HostCall::VcpuGetReg,
        HostCall::VcpuSetReg,
        HostCall::VmInfo,
        HostCall::VmTeardown,
        HostCall::VmReclaim,
        HostCall::VcpuInjectIrq,
        HostCall::VcpuSetIrqLine,
        HostCall::VmSetGic,
        HostCall::VmSetSpiLevel,
        HostCall::DebugCheckInvariants,
        HostCall::DebugExchange,
    ];

    /// Whether this call exists only in test builds of the hyp.
    pub const fn is_debug(self) -> bool {
        matches!(self, HostCall::DebugCheckInvariants | HostCall::DebugExchange)
    }

    /// The SMCCC function ID that selects this call (x0).
    pub const fn function_id(self) -> u32 {
        vendor_hyp_fn(HOST_CALL_BASE + self as u16)
    }

    /// Decodes a function ID; `None` for anything that is not exactly a known host call
    /// (wrong owner, SMC32 convention, yielding call, unknown number). Inlined, so that
    /// in the hyp's trap handler its match and the dispatch's become one jump table.
    #[inline(always)]
    pub fn from_function_id(function_id: u64) -> Option<HostCall> {
        let id = u32::try_from(function_id).ok()?;
        if id & !FUNCTION_NUMBER_MASK != VENDOR_HYP_SMC64_BASE {
            return None;
        }
        let number = (id & FUNCTION_NUMBER_MASK) as u16;
        let offset = number.checked_sub(HOST_CALL_BASE)?;
        // A direct match (not a search of ALL): this decodes every hypercall.
        Some(match offset {
            0 => HostCall::Version,
            1 => HostCall::Features,
            2 => HostCall::ShareHyp,
            3 => HostCall::UnshareHyp,
            4 => HostCall::DonateHyp,
            5 => HostCall::ReclaimHyp,
            6 => HostCall::VmCreate,
            7 => HostCall::VmMap,
            8 => HostCall::VcpuInit,
            9 => HostCall::VcpuRun,
            10 => HostCall::VcpuGetReg,
            11 => HostCall::VcpuSetReg,
            12 => HostCall::VmInfo,
            13 => HostCall::VmTeardown,
            14 => HostCall::VmReclaim,
            15 => HostCall::VcpuInjectIrq,
            16 => HostCall::VcpuSetIrqLine,
            17 => HostCall::VmSetGic,
            18 => HostCall::VmSetSpiLevel,
            62 => HostCall::DebugCheckInvariants,
            63 => HostCall::DebugExchange,
            _ => return None,
        })
    }

    /// The bitmap returned by [`HostCall::Features`]: one bit per implemented call,
    /// the debug calls included only in test builds (`with_debug`).
    pub fn features_bitmap(with_debug: bool) -> u64 {
        Self::ALL
            .into_iter()
            .filter(|call| with_debug || !call.is_debug())
            .fold(0, |bits, call| bits | 1 << (call as u16))
    }
}

/// The kind of VM `VmCreate` makes.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[repr(u64)]
pub enum VmType {
    /// The host can read and write its memory and registers.
    NonProtected = 0,
    /// Its memory and registers are out of the host's reach for its whole life.
    Protected = 1,
}

impl VmType {
    pub fn from_raw(raw: u64) -> Option<VmType> {
        match raw {
            0 => Some(VmType::NonProtected),
            1 => Some(VmType::Protected),
            _ => None,
        }
    }
}

/// Most vCPUs of one VM.
pub const MAX_VCPUS_PER_VM: u64 = 8;

/// A vCPU register as named by `VcpuGetReg`/`VcpuSetReg`: 0..=30 are x0..x30,
/// then PC (31), PSTATE (32), SP_EL1 (33), SP_EL0 (34), ELR_EL1 (35),
/// SPSR_EL1 (36), FPSR (37), FPCR (38), the virtual timer's CNTV_CTL_EL0
/// (39) and CNTV_CVAL_EL0 (40), the VM's virtual count (41: CNTVCT_EL0 as the
/// vCPU reads it now; a write moves the whole VM's counter, as KVM's
/// `KVM_REG_ARM_TIMER_CNT` does), and 64..=127 the SIMD registers V0..V31 in
/// halves (64 + 2n: bits 63:0 of Vn, 65 + 2n: bits 127:64).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum VcpuReg {
    X(u8),
    Pc,
    Pstate,
    SpEl1,
    SpEl0,
    ElrEl1,
    SpsrEl1,
    Fpsr,
    Fpcr,
    TimerCtl,
    TimerCval,
    TimerCount,
    /// Half of SIMD register V`n`: `high` is bits 127:64.
    V {
        n: u8,
        high: bool,
    },
}

impl VcpuReg {
    pub fn from_raw(raw: u64) -> Option<VcpuReg> {
        match raw {
            0..=30 => Some(VcpuReg::X(raw as u8)),
            31 => Some(VcpuReg::Pc),
            32 => Some(VcpuReg::Pstate),
            33 => Some(VcpuReg::SpEl1),
            34 => Some(VcpuReg::SpEl0),
            35 => Some(VcpuReg::ElrEl1),
            36 => Some(VcpuReg::SpsrEl1),
            37 => Some(VcpuReg::Fpsr),
            38 => Some(VcpuReg::Fpcr),
            39 => Some(VcpuReg::TimerCtl),
            40 => Some(VcpuReg::TimerCval),
            41 => Some(VcpuReg::TimerCount),
            64..=127 => Some(VcpuReg::V { n: ((raw - 64) / 2) as u8, high: raw % 2 == 1 }),
            _ => None,
        }
    }

    pub fn raw(self) -> u64 {
        match self {
            VcpuReg::X(n) => u64::from(n),
            VcpuReg::Pc => 31,
            VcpuReg::Pstate => 32,
            VcpuReg::SpEl1 => 33,
            VcpuReg::SpEl0 => 34,
            VcpuReg::ElrEl1 => 35,
            VcpuReg::SpsrEl1 => 36,
            VcpuReg::Fpsr => 37,
            VcpuReg::Fpcr => 38,
            VcpuReg::TimerCtl => 39,
            VcpuReg::TimerCval => 40,
            VcpuReg::TimerCount => 41,
            VcpuReg::V { n, high } => 64 + 2 * u64::from(n) + u64::from(high),
        }
    }
}

/// Why `VcpuRun` returned, with its data (x1 = reason | flags, x2, x3).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Exit {
    /// An access to an IPA that is not memory. For a write, `value` is what was
    /// written; for a read, the host passes the value in x3 of the next `VcpuRun`.
    Mmio { ipa: u64, size_bytes: u8, write: bool, value: u64 },
    /// A guest HVC the hyp leaves to the host: the function ID and x1.
    Hypercall { function: u64, arg: u64 },
    /// The guest waits for an interrupt (WFI/WFE) and none is pending for it.
    /// `timer_deadline` is the physical counter value (CNTPCT) at which its
    /// virtual timer fires, `u64::MAX` if the timer is off or masked: the host
    /// may run something else until then, or until it injects an interrupt or
    /// another vCPU wakes it. For a WFE it is 0: the event it waits for is
    /// not the host's to see, so the vCPU may run at once (after the others
    /// sharing its CPU: the yield).
    Wfi { timer_deadline: u64 },
    /// PSCI SYSTEM_OFF from the guest.
    SystemOff,
    /// PSCI SYSTEM_RESET from the guest.
    SystemReset,
    /// The guest faulted in a way it cannot go on from; the VM no longer runs.
    /// For a protected VM the syndrome is withheld (0).
    Fatal { esr: u64, address: u64 },
    /// A physical interrupt took the CPU back for the host.
    Interrupted,
    /// The guest started its vCPU `vcpu` with PSCI CPU_ON (the call already
    /// returned SUCCESS to the caller): the host should now run that vCPU, on
    /// this CPU or another, as well as the one that exited.
    CpuOn { vcpu: u64 },
    /// The vCPU called PSCI CPU_OFF: it is off, and `VCPU_RUN` refuses it with
    /// `VcpuOff` until another vCPU (or `VCPU_INIT`) starts it again.
    CpuOff,
    /// Interrupts became pending for the VM's vCPUs in `targets` (bit n:
    /// vCPU n) that they can take: the guest sent an SGI, or enabled, pended
    /// or routed an interrupt in its distributor. The host should run them,
    /// and kick those that run on other CPUs (an interrupt to that CPU ends
    /// their run with `Interrupted`; without it they see the interrupt at
    /// their next exit or WFI).
    Wake { targets: u64 },
}

impl Exit {
    /// Registers x1..x3.
    #[inline(always)]
    pub fn encode(self) -> [u64; 3] {
        match self {
            Exit::Mmio { ipa, size_bytes, write, value } => {
                [u64::from(size_bytes) << 8 | u64::from(write) << 16, ipa, value]
            }
            Exit::Hypercall { function, arg } => [1, function, arg],
            Exit::Wfi { timer_deadline } => [2, timer_deadline, 0],
            Exit::SystemOff => [3, 0, 0],
            Exit::SystemReset => [4, 0, 0],
            Exit::Fatal { esr, address } => [5, esr, address],
            Exit::Interrupted => [6, 0, 0],
            Exit::CpuOn { vcpu } => [7, vcpu, 0],
            Exit::CpuOff => [8, 0, 0],
            Exit::Wake { targets } => [9, targets, 0],
        }
    }

    /// Decodes x1..x3; `None` for a reason this ABI does not define.
    pub fn decode([code, a, b]: [u64; 3]) -> Option<Exit> {
        Some(match code & 0xff {
            0 => Exit::Mmio { ipa: a, size_bytes: (code >> 8) as u8, write: code & (1 << 16) != 0, value: b },
            1 => Exit::Hypercall { function: a, arg: b },
            2 => Exit::Wfi { timer_deadline: a },
            3 => Exit::SystemOff,
            4 => Exit::SystemReset,
            5 => Exit::Fatal { esr: a, address: b },
            6 => Exit::Interrupted,
            7 => Exit::CpuOn { vcpu: a },
            8 => Exit::CpuOff,
            9 => Exit::Wake { targets: a },
            _ => return None,
        })
    }
}

/// `VCPU_RUN`'s x4: how the host runs the vCPU, for a vCPU with a physical CPU
/// of its own (0: as before, every wait and wake goes through the host).
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct RunFlags {
    /// Bit 0: a WFI with nothing to take waits in the hyp (a physical WFI)
    /// until a physical interrupt instead of exiting (a WFE goes on). The
    /// host enables PPIs 25 and 27 on the CPU (the guest's timer wakes it) and
    /// gets its CPU back with any interrupt of its own (`Exit::Interrupted`).
    pub wait_in_hyp: bool,
    /// Bit 1 with bits 11:8: the host's vCPU kick, an SGI. While this vCPU
    /// runs, a sibling that makes an interrupt deliverable for it (an SGI)
    /// makes the hyp send that SGI to this CPU instead of naming the vCPU in
    /// `Exit::Wake`; the hyp takes it at EL2 (clears it pending) and presents
    /// the interrupt without an exit. One that lands in the host after the
    /// run ended is the host's to ignore. GICv3 only (ignored elsewhere).
    pub kick_sgi: Option<u8>,
}

impl RunFlags {
    const WAIT_IN_HYP: u64 = 1;
    const KICK: u64 = 1 << 1;
    const KICK_SGI_SHIFT: u32 = 8;
    const KNOWN: u64 = Self::WAIT_IN_HYP | Self::KICK | 0xf << Self::KICK_SGI_SHIFT;

    /// x4 as the host passes it; `None` if it sets a bit this ABI does not
    /// define, or an SGI number without bit 1 (so that `raw` gives x4 back).
    pub fn from_raw(raw: u64) -> Option<RunFlags> {
        let sgi = (raw >> Self::KICK_SGI_SHIFT & 0xf) as u8;
        if raw & !Self::KNOWN != 0 || (raw & Self::KICK == 0 && sgi != 0) {
            return None;
        }
        Some(RunFlags { wait_in_hyp: raw & Self::WAIT_IN_HYP != 0, kick_sgi: (raw & Self::KICK != 0).then_some(sgi) })
    }

    pub fn raw(self) -> u64 {
        let kick = self.kick_sgi.map_or(0, |sgi| Self::KICK | u64::from(sgi & 0xf) << Self::KICK_SGI_SHIFT);
        u64::from(self.wait_in_hyp) | kick
    }
}

/// Where a guest finds its GIC CPU interface (GICC) on a GICv2 platform, in its
/// IPA space: the hyp serves accesses there from the GICv2 virtual CPU interface.
pub const GUEST_GICV2_CPU_INTERFACE: u64 = 0x0201_0000;

/// Where a guest finds its GIC distributor (GICD, 64 KiB window), on either
/// GIC version, in its IPA space. The hyp emulates it: the host never sees
/// these accesses.
pub const GUEST_GIC_DISTRIBUTOR: u64 = 0x0200_0000;

/// Where a GICv3 guest finds its redistributors: vCPU n's (RD_base, then
/// SGI_base) at this IPA + n * 0x2_0000. Emulated by the hyp.
pub const GUEST_GICV3_REDISTRIBUTORS: u64 = 0x0210_0000;

/// GICv2: the size of a guest's CPU interface window (GICC, through GICC_DIR).
pub const GUEST_GICV2_CPU_INTERFACE_SIZE: u64 = 0x2000;

/// One past the last INTID a VM has: its SPIs are INTIDs 32..288
/// (GICD_TYPER.ITLinesNumber 8), as QEMU's `virt` machine gives its guests,
/// and more than Firecracker (128 SPIs) or kvmtool ask for.
pub const GUEST_SPI_LIMIT: u64 = 288;

/// SMCCC function-ID bit 30 clear and owner 6: the vendor-hyp SMC32 fast calls
/// (`0x8600_xxxx`), where Linux's KVM puts its call-UID query and FEATURES.
pub const VENDOR_HYP_SMC32_BASE: u32 = SMCCC_FAST_CALL | OWNER_VENDOR_HYP;

/// The SMCCC "Call UID" query of the vendor-hyp service (SMC32, function
/// 0xFF01; Linux's `ARM_SMCCC_VENDOR_HYP_CALL_UID_FUNC_ID`).
pub const VENDOR_HYP_CALL_UID: u32 = VENDOR_HYP_SMC32_BASE | 0xFF01;

/// KVM's UID, 28b46fb6-2ec5-11e9-a9ca-4b564d003a74, as the Call UID query
/// returns it in x0..x3 (Linux's `ARM_SMCCC_VENDOR_HYP_UID_KVM_REG_0..3`):
/// a Linux guest uses KVM's vendor calls only behind this UID.
pub const KVM_VENDOR_HYP_UID: [u64; 4] = [0xb66f_b428, 0xe911_c52e, 0x564b_caa9, 0x743a_004d];

/// KVM's FEATURES query as Linux makes it: SMC32 function 0
/// (`ARM_SMCCC_VENDOR_HYP_KVM_FEATURES_FUNC_ID`, `0x8600_0000`).
pub const KVM_FEATURES_SMC32: u32 = VENDOR_HYP_SMC32_BASE;

/// The vendor-hyp calls a guest may make (HVC, SMCCC 1.1 fast calls). Numbers
/// as in Linux's `include/linux/arm-smccc.h` (KVM's functions 0..4 and 7),
/// and, where Linux reserves the number for pKVM without defining it
/// (5, 6, 8, 9), as in Android's pKVM, whose guests (pvmfw, Microdroid)
/// make them. Each is the SMC64 call `0xC600_0000 | number`, except
/// [`GuestCall::Features`], which Linux makes as SMC32 ([`KVM_FEATURES_SMC32`]).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[repr(u16)]
pub enum GuestCall {
    /// x0..x3 = bitmap of the vendor calls the VM is offered (bit n: function
    /// n; x1..x3 hold functions 32..127, none), by VM type: see
    /// [`GuestCall::offered`].
    Features = 0,
    /// x0 = the granule of memory sharing ([`GUEST_MEMORY_GRANULE`]).
    /// x1..x3 must be 0. Protected VMs only.
    HypMeminfo = 2,
    /// Share the granule at IPA x1 (its own memory) with the host: the host
    /// may read and write it until [`GuestCall::MemUnshare`]. x2, x3 must be 0.
    /// Protected VMs only.
    MemShare = 3,
    /// End the share of the granule at IPA x1: every host mapping of it is
    /// gone when the call returns. x2, x3 must be 0. Protected VMs only.
    MemUnshare = 4,
    /// x0 = the MMIO guard's granule in bytes ([`MMIO_GUARD_GRANULE`]).
    MmioGuardInfo = 5,
    /// From now on, for the VM's whole life, only MMIO the guard allows leaves
    /// the hyp; any other access outside the VM's memory gets a synchronous
    /// external abort. x0 = 0.
    MmioGuardEnroll = 6,
    /// Allow MMIO to the granule at IPA x1 (aligned, outside the VM's memory):
    /// Android's MMIO_GUARD_MAP and Linux's MMIO_GUARD, the same call with
    /// the same argument (Linux's guest never enrols: before enrolment every
    /// access passes anyway, and the call only checks its argument). x0 = 0,
    /// or -3 (INVALID_PARAMETER: misaligned, the VM's memory, beyond its IPA
    /// space), or -1 (NOT_SUPPORTED: enrolled and the guard already holds
    /// [`MMIO_GUARD_CAPACITY`] granules).
    MmioGuardMap = 7,
    /// Stop allowing the granule at IPA x1. x0 = 0, or -3 (it was not allowed).
    MmioGuardUnmap = 8,
    /// Give the granule at IPA x1 back to the host, zeroed: the VM's IPA maps
    /// nothing from then on. x2, x3 must be 0. Protected VMs only.
    MemRelinquish = 9,
}

impl GuestCall {
    pub const ALL: [GuestCall; 9] = [
        GuestCall::Features,
        GuestCall::HypMeminfo,
        GuestCall::MemShare,
        GuestCall::MemUnshare,
        GuestCall::MmioGuardInfo,
        GuestCall::MmioGuardEnroll,
        GuestCall::MmioGuardMap,
        GuestCall::MmioGuardUnmap,
        GuestCall::MemRelinquish,
    ];

    /// The SMCCC function ID (SMC64; FEATURES is also answered at
    /// [`KVM_FEATURES_SMC32`], Linux's ID).
    pub const fn function_id(self) -> u32 {
        vendor_hyp_fn(self as u16)
    }

    /// The call with function ID `id`, if it is one.
    pub fn from_function_id(id: u32) -> Option<GuestCall> {
        if id == KVM_FEATURES_SMC32 {
            return Some(GuestCall::Features);
        }
        GuestCall::ALL.into_iter().find(|call| call.function_id() == id)
    }

    /// Whether a VM of this kind is offered the call. Memory sharing is for
    /// protected VMs only: a non-protected VM's memory is the host's already,
    /// and pKVM leaves such a VM's vendor calls to the host's KVM, which
    /// offers none of them. The MMIO guard serves both kinds.
    pub const fn offered(self, protected: bool) -> bool {
        match self {
            GuestCall::HypMeminfo | GuestCall::MemShare | GuestCall::MemUnshare | GuestCall::MemRelinquish => protected,
            _ => true,
        }
    }

    /// What [`GuestCall::Features`] answers in x0 to a VM of this kind.
    pub fn features_bitmap(protected: bool) -> u64 {
        GuestCall::ALL.iter().filter(|call| call.offered(protected)).fold(0, |bits, call| bits | 1 << (*call as u16))
    }
}

/// The granule of a guest's memory calls ([`GuestCall::HypMeminfo`]): one page.
pub const GUEST_MEMORY_GRANULE: u64 = 4096;

/// The MMIO guard's granule: what one [`GuestCall::MmioGuardMap`] allows.
pub const MMIO_GUARD_GRANULE: u64 = 4096;

/// Most granules a VM's MMIO guard allows at once (a VM has a handful of
/// devices; the bound keeps the guard's state fixed and outside the heap).
pub const MMIO_GUARD_CAPACITY: usize = 32;

/// ABI major version: bumped when an existing call changes incompatibly.
pub const ABI_VERSION_MAJOR: u64 = 0;
/// ABI minor version: bumped when calls are added.
pub const ABI_VERSION_MINOR: u64 = 9;

/// Every error a hypercall can return in x0. Codes are stable; `-1` and `-3`
/// coincide with SMCCC `NOT_SUPPORTED` and `INVALID_PARAMETER`.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[repr(i64)]
pub enum HypError {
    /// Unknown function ID (SMCCC `NOT_SUPPORTED`).
    NotSupported = -1,
    /// An argument has a value the call never accepts (SMCCC `INVALID_PARAMETER`).
    InvalidArgument = -3,
    /// An address or size is not page-aligned.
    NotAligned = -4,
    /// An address range is outside what the caller may name, or wraps.
    OutOfRange = -5,
    /// A page is not owned by the caller in the state the call requires.
    NotOwned = -6,
    /// The object is in use (e.g. a vCPU running on another CPU).
    Busy = -7,
    /// The hyp has no memory left for the call; donate pages and retry.
    NoMemory = -8,
    /// The call is not allowed on this object (e.g. reading a protected VM's registers).
    PermissionDenied = -9,
    /// No VM has this handle.
    NoSuchVm = -10,
    /// The VM has no vCPU with this index.
    NoSuchVcpu = -11,
    /// The vCPU is off: never initialised and not started by its guest, or it
    /// called PSCI CPU_OFF.
    VcpuOff = -12,
}

impl HypError {
    /// Every error, for tables and exhaustive tests.
    pub const ALL: [HypError; 11] = [
        HypError::NotSupported,
        HypError::InvalidArgument,
        HypError::NotAligned,
        HypError::OutOfRange,
        HypError::NotOwned,
        HypError::Busy,
        HypError::NoMemory,
        HypError::PermissionDenied,
        HypError::NoSuchVm,
        HypError::NoSuchVcpu,
        HypError::VcpuOff,
    ];

    /// The value returned in x0.
    pub const fn code(self) -> i64 {
        self as i64
    }

    /// The error for an x0 status, `None` for success or an unknown code.
    pub fn from_code(code: i64) -> Option<HypError> {
        Self::ALL.into_iter().find(|error| error.code() == code)
    }

    /// A short, stable name for logs.
    pub const fn name(self) -> &'static str {
        match self {
            HypError::NotSupported => "not supported",
            HypError::InvalidArgument => "invalid argument",
            HypError::NotAligned => "not aligned",
            HypError::OutOfRange => "out of range",
            HypError::NotOwned => "not owned",
            HypError::Busy => "busy",
            HypError::NoMemory => "no memory",
            HypError::PermissionDenied => "permission denied",
            HypError::NoSuchVm => "no such VM",
            HypError::NoSuchVcpu => "no such vCPU",
            HypError::VcpuOff => "vCPU off",
        }
    }
}

impl fmt::Display for HypError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.code())
    }
}

/// What a caller sees when a call fails with a status that is not in [`HypError`].
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct UnknownStatus(pub i64);

/// Registers x0..x3 after a hypercall, decoded into the call's result.
///
/// # Errors
///
/// A negative x0 becomes `Err(Ok(error))`; a negative status the ABI does not
/// define becomes `Err(Err(UnknownStatus))`, so a newer hyp never gets misread.
pub fn decode_result(regs: [u64; 4]) -> Result<[u64; 3], Result<HypError, UnknownStatus>> {
    let status = regs[0] as i64;
    if status >= 0 {
        return Ok([regs[1], regs[2], regs[3]]);
    }
    Err(HypError::from_code(status).ok_or(UnknownStatus(status)))
}

/// Register values x0..x3 the hyp returns for a result.
pub fn encode_result(result: Result<[u64; 3], HypError>) -> [u64; 4] {
    match result {
        Ok([a, b, c]) => [0, a, b, c],
        Err(error) => [error.code() as u64, 0, 0, 0],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_flags_round_trip_and_refuse_unknown_bits() {
        let all = RunFlags { wait_in_hyp: true, kick_sgi: Some(15) };
        assert_eq!(RunFlags::from_raw(all.raw()), Some(all));
        assert_eq!(RunFlags::from_raw(0), Some(RunFlags::default()));
        assert_eq!(RunFlags::from_raw(0x1), Some(RunFlags { wait_in_hyp: true, kick_sgi: None }));
        assert_eq!(RunFlags::from_raw(0x201), None, "an SGI number without the kick bit");
        assert_eq!(RunFlags::from_raw(0x202).and_then(|f| f.kick_sgi), Some(2));
        assert_eq!(RunFlags::from_raw(1 << 4), None);
        assert_eq!(RunFlags::from_raw(1 << 12), None);
    }

    #[test]
    fn vcpu_registers_round_trip_and_refuse_the_gaps() {
        for raw in (0..=41).chain(64..=127) {
            let reg = VcpuReg::from_raw(raw).map(VcpuReg::raw);
            assert_eq!(reg, Some(raw), "register {raw}");
        }
        for raw in (42..64).chain([128, 1 << 32, u64::MAX]) {
            assert_eq!(VcpuReg::from_raw(raw), None, "register {raw}");
        }
        assert_eq!(VcpuReg::from_raw(64), Some(VcpuReg::V { n: 0, high: false }));
        assert_eq!(VcpuReg::from_raw(127), Some(VcpuReg::V { n: 31, high: true }));
    }

    #[test]
    fn host_call_ids_are_vendor_hyp_smc64_fast_calls() {
        assert_eq!(HostCall::Version.function_id(), 0xC600_1000);
        assert_eq!(HostCall::Features.function_id(), 0xC600_1001);
        assert_eq!(HostCall::ShareHyp.function_id(), 0xC600_1002);
        assert_eq!(HostCall::ReclaimHyp.function_id(), 0xC600_1005);
        assert_eq!(HostCall::DebugExchange.function_id(), 0xC600_103F);
    }

    #[test]
    fn function_ids_round_trip() {
        for call in HostCall::ALL {
            assert_eq!(HostCall::from_function_id(call.function_id().into()), Some(call));
        }
    }

    #[test]
    fn near_misses_are_not_host_calls() {
        // SMC32 convention, yielding call, other owner, guest range, next number, high bits.
        for id in [
            0x8600_1000u64,
            0x4600_1000,
            0xC500_1000,
            0xC600_0000,
            0xC600_0FFF,
            0xC600_1013,
            0xC600_1040,
            0xC600_FFFF,
            0x1_C600_1000,
            u64::MAX,
        ] {
            assert_eq!(HostCall::from_function_id(id), None, "{id:#x}");
        }
    }

    #[test]
    fn features_bitmap_has_one_bit_per_call() {
        assert_eq!(HostCall::features_bitmap(false), 0x7_ffff);
        assert_eq!(HostCall::features_bitmap(true), 0x7_ffff | 3 << 62);
    }

    #[test]
    fn exits_round_trip() {
        let all = [
            Exit::Mmio { ipa: 0x900_0000, size_bytes: 1, write: true, value: 0x41 },
            Exit::Mmio { ipa: 0x900_0018, size_bytes: 4, write: false, value: 0 },
            Exit::Hypercall { function: 0xC500_0001, arg: 7 },
            Exit::Wfi { timer_deadline: 0x1234_5678 },
            Exit::SystemOff,
            Exit::SystemReset,
            Exit::Fatal { esr: 0x9200_0007, address: 0x1234 },
            Exit::Interrupted,
            Exit::CpuOn { vcpu: 3 },
            Exit::CpuOff,
            Exit::Wake { targets: 0b101 },
        ];
        for exit in all {
            assert_eq!(Exit::decode(exit.encode()), Some(exit));
        }
        assert_eq!(Exit::decode([0x99, 0, 0]), None);
    }

    #[test]
    fn registers_and_types_decode() {
        assert_eq!(VcpuReg::from_raw(0), Some(VcpuReg::X(0)));
        assert_eq!(VcpuReg::from_raw(31), Some(VcpuReg::Pc));
        assert_eq!(VcpuReg::from_raw(34), Some(VcpuReg::SpEl0));
        assert_eq!(VcpuReg::from_raw(42), None);
        assert_eq!(VmType::from_raw(1), Some(VmType::Protected));
        assert_eq!(VmType::from_raw(2), None);
    }

    #[test]
    fn error_codes_are_unique_negative_and_round_trip() {
        for (i, a) in HypError::ALL.iter().enumerate() {
            assert!(a.code() < 0);
            assert_eq!(HypError::from_code(a.code()), Some(*a));
            for b in &HypError::ALL[i + 1..] {
                assert_ne!(a.code(), b.code());
            }
        }
        assert_eq!(HypError::NotSupported.code(), -1, "SMCCC NOT_SUPPORTED");
        assert_eq!(HypError::from_code(0), None);
    }

    #[test]
    fn results_encode_and_decode() {
        let ok = encode_result(Ok([1, 2, 3]));
        assert_eq!(decode_result(ok), Ok([1, 2, 3]));
        let err = encode_result(Err(HypError::Busy));
        assert_eq!(decode_result(err), Err(Ok(HypError::Busy)));
        assert_eq!(decode_result([(-99i64) as u64, 0, 0, 0]), Err(Err(UnknownStatus(-99))));
    }
}
