//! The SMMUv3 register and queue accesses (target only).

use super::format::{self, regs, Event, Features};
use crate::arch::tlb::TlbMaintenance;
use alloc::alloc::{alloc_zeroed, Layout};

/// The ASID of the host's devices' context.
pub const SMMU_ASID: u16 = 1;
/// log2 of the stream table's entries: stream IDs 0..=255 (PCI bus 0); higher
/// ones are out of range and abort (C_BAD_STREAMID).
const STREAM_TABLE_LOG2: u32 = 8;
/// log2 of the queues' entries (each queue one page or less).
const CMDQ_LOG2: u32 = 8;
const EVENTQ_LOG2: u32 = 7;
/// Lines of SMMU faults one drain logs at most.
const MAX_EVENT_LINES: usize = 4;
/// Polls of a register before the hyp gives up waiting for the SMMU.
const POLL_LIMIT: usize = 1_000_000;

struct Smmu {
    base: usize,
    cmdq: usize,
    cmdq_log2: u32,
    cmdq_prod: u32,
    eventq: usize,
    eventq_log2: u32,
    /// Commands the SMMU refused or did not finish (logged).
    errors: u64,
    /// Translation is off for good after a failed maintenance
    /// ([`Smmu::stop_all_dma`]): every device access aborts.
    stopped: bool,
    /// GBPA read back with ABORT set: while translation is off, the SMMU
    /// aborts every access. QEMU 7.2 does not model GBPA (it reads
    /// zero) and lets every access through instead.
    aborts_when_off: bool,
}

static SMMU: spin::Once<spin::Mutex<Smmu>> = spin::Once::new();

fn read32(base: usize, offset: usize) -> u32 {
    // SAFETY: `base` is the SMMU's register frame (128 KiB), mapped as device
    // memory for the hyp (`boot` maps it before calling in here); `offset` is
    // one of `format::regs`, inside it.
    unsafe { core::ptr::read_volatile((base + offset) as *const u32) }
}

fn write32(base: usize, offset: usize, value: u32) {
    // SAFETY: As in `read32`.
    unsafe { core::ptr::write_volatile((base + offset) as *mut u32, value) }
}

fn write64(base: usize, offset: usize, value: u64) {
    // SAFETY: As in `read32`; the 64-bit registers are 8-byte aligned.
    unsafe { core::ptr::write_volatile((base + offset) as *mut u64, value) }
}

/// Makes memory writes visible to the SMMU before a register write.
fn publish() {
    aarch64_cpu::asm::barrier::dsb(aarch64_cpu::asm::barrier::SY);
}

fn poll(base: usize, offset: usize, done: impl Fn(u32) -> bool) -> bool {
    (0..POLL_LIMIT).any(|_| done(read32(base, offset)))
}

/// The SMMU's features, read from its ID registers (harmless reads; the MMU
/// may be off).
///
/// # Safety
///
/// `base` must be an SMMUv3's register frame, reachable at that address.
pub unsafe fn read_features(base: usize) -> Features {
    Features::decode(read32(base, regs::IDR0), read32(base, regs::IDR1), read32(base, regs::IDR5))
}

/// A zeroed, `size`-aligned allocation from the hyp's pool (identity-mapped,
/// so its address is physical), kept for good.
fn allocate(size: usize) -> Result<usize, &'static str> {
    let layout = Layout::from_size_align(size, size.max(64)).map_err(|_| "bad layout")?;
    // SAFETY: The layout has a non-zero size.
    let address = unsafe { alloc_zeroed(layout) } as usize;
    if address == 0 {
        return Err("no memory in the hyp's pool for the SMMU's tables");
    }
    Ok(address)
}

/// Takes the SMMU at `base`: every stream of the first 2^8 translates through
/// the stage-1 table at `ttb0` (`va_bits` of input), the others abort.
///
/// # Safety
///
/// `base` must be an SMMUv3's register frame, mapped for the hyp as device
/// memory, and only this hyp may program it from now on.
pub unsafe fn init(base: usize, ttb0: u64, va_bits: u32, mair: u64) -> Result<(), &'static str> {
    // SAFETY: The caller's contract.
    let features = unsafe { read_features(base) };
    if let Some(why) = features.unusable() {
        return Err(why);
    }
    // Off first, with incoming transactions aborted meanwhile (where GBPA is
    // modelled: QEMU 7.2 lets them through until translation is on; the
    // host, the only one to program a device, does not run yet).
    write32(base, regs::CR0, 0);
    if !poll(base, regs::CR0ACK, |v| v == 0) {
        return Err("the SMMU did not turn off");
    }
    write32(base, regs::GBPA, format::GBPA_ABORT | format::GBPA_UPDATE);
    if !poll(base, regs::GBPA, |v| v & format::GBPA_UPDATE == 0) {
        return Err("the SMMU did not take GBPA");
    }
    let aborts_when_off = read32(base, regs::GBPA) & format::GBPA_ABORT != 0;
    write32(base, regs::IRQ_CTRL, 0);
    write32(base, regs::CR1, format::CR1_WB_ISH);
    // RECINVSID: record events for out-of-range streams; PTM: private TLB.
    write32(base, regs::CR2, (1 << 1) | (1 << 2));

    let ips = u64::from(read32(base, regs::IDR5) & 7);
    let cd_address = allocate(64)?;
    let cd = format::context_descriptor(ttb0, va_bits, ips, SMMU_ASID, mair);
    write_words(cd_address, &cd);
    let stream_log2 = STREAM_TABLE_LOG2.min(features.sid_bits);
    let streams = 1usize << stream_log2;
    let stream_table = allocate(streams * 64)?;
    let ste = format::ste_stage1(cd_address as u64);
    for stream in 0..streams {
        write_words(stream_table + stream * 64, &ste);
    }
    let cmdq_log2 = CMDQ_LOG2.min(features.cmdq_log2);
    let eventq_log2 = EVENTQ_LOG2.min(features.eventq_log2);
    let cmdq = allocate(16 << cmdq_log2)?;
    let eventq = allocate(32 << eventq_log2)?;
    publish();
    write64(base, regs::STRTAB_BASE, format::strtab_base(stream_table as u64));
    write32(base, regs::STRTAB_BASE_CFG, format::strtab_base_cfg(stream_log2));
    write64(base, regs::CMDQ_BASE, format::queue_base(cmdq as u64, cmdq_log2));
    write32(base, regs::CMDQ_PROD, 0);
    write32(base, regs::CMDQ_CONS, 0);
    write64(base, regs::EVENTQ_BASE, format::queue_base(eventq as u64, eventq_log2));
    write32(base, regs::EVENTQ_PROD, 0);
    write32(base, regs::EVENTQ_CONS, 0);

    let mut smmu =
        Smmu { base, cmdq, cmdq_log2, cmdq_prod: 0, eventq, eventq_log2, errors: 0, stopped: false, aborts_when_off };
    let enable = |value: u32| {
        write32(base, regs::CR0, value);
        poll(base, regs::CR0ACK, |v| v == value)
    };
    if !enable(format::CR0_CMDQEN) {
        return Err("the SMMU's command queue did not start");
    }
    smmu.command(format::cmd_cfgi_all());
    smmu.command(format::cmd_tlbi_nh_asid(SMMU_ASID));
    smmu.sync();
    // (Translation stays off, and every device access aborts, if not.)
    if smmu.errors != 0 {
        return Err("the SMMU refused its first commands");
    }
    if !enable(format::CR0_CMDQEN | format::CR0_EVTQEN)
        || !enable(format::CR0_CMDQEN | format::CR0_EVTQEN | format::CR0_SMMUEN)
    {
        return Err("the SMMU did not turn on");
    }
    log::info!(
        "SMMUv3: the hyp's; {streams} streams translate through the host's RAM only (stage 1, ASID {SMMU_ASID}), OAS {} bits",
        features.oas_bits
    );
    if !aborts_when_off {
        log::info!(
            "SMMUv3: GBPA does not keep ABORT (QEMU 7.2 does not model it): turned off, this SMMU would let every device access through, so a failed maintenance stops the machine"
        );
    }
    SMMU.call_once(|| spin::Mutex::new(smmu));
    Ok(())
}

fn write_words(address: usize, words: &[u64]) {
    for (i, word) in words.iter().enumerate() {
        // SAFETY: `address` is a fresh allocation of at least `words.len()` words
        // from `allocate`, owned by the driver.
        unsafe { core::ptr::write_volatile((address as *mut u64).add(i), *word) };
    }
}

impl Smmu {
    fn queue_full(&self) -> bool {
        let cons = read32(self.base, regs::CMDQ_CONS);
        let mask = (1u32 << self.cmdq_log2) - 1;
        let wrap = 1u32 << self.cmdq_log2;
        (self.cmdq_prod & mask) == (cons & mask) && (self.cmdq_prod & wrap) != (cons & wrap)
    }

    /// Queues one command (waiting, bounded, for room).
    fn command(&mut self, command: [u64; 2]) {
        if self.stopped {
            return;
        }
        if self.queue_full() {
            // The SMMU reads only what PROD publishes: an unmap's per-page
            // invalidations (up to 511 before one sync) fill the queue
            // unpublished, so publish them and wait for room.
            publish();
            write32(self.base, regs::CMDQ_PROD, self.cmdq_prod);
            if !poll(self.base, regs::CMDQ_CONS, |_| !self.queue_full()) {
                self.errors += 1;
                log::error!("SMMU command queue stuck full: command {:#x} dropped", command[0]);
                self.stop_all_dma();
                return;
            }
        }
        let mask = (1u32 << self.cmdq_log2) - 1;
        write_words(self.cmdq + 16 * (self.cmdq_prod & mask) as usize, &command);
        self.cmdq_prod = (self.cmdq_prod + 1) & ((2u32 << self.cmdq_log2) - 1);
    }

    /// Publishes the queued commands with a CMD_SYNC and waits (bounded) until
    /// the SMMU has consumed them all.
    fn sync(&mut self) {
        if self.stopped {
            return;
        }
        self.command(format::cmd_sync());
        publish();
        write32(self.base, regs::CMDQ_PROD, self.cmdq_prod);
        let prod = self.cmdq_prod;
        let wrap_mask = (2u32 << self.cmdq_log2) - 1;
        if !poll(self.base, regs::CMDQ_CONS, |cons| cons & wrap_mask == prod) {
            self.errors += 1;
            let cons = read32(self.base, regs::CMDQ_CONS);
            log::error!(
                "SMMU did not complete its commands: CONS {cons:#x} (error {}), PROD {prod:#x}",
                cons >> format::CMDQ_CONS_ERR_SHIFT & 0x7f
            );
            self.stop_all_dma();
        }
    }

    /// Maintenance failed: the SMMU may still hold translations of pages the
    /// host no longer owns (a protected VM's, the hyp's). Fails closed:
    /// translation goes off, and with GBPA set to abort at init every device
    /// access aborts from now on. The host's DMA breaks; no device reaches a
    /// page it should not. An SMMU that does not keep GBPA's ABORT would let
    /// every access through once off: then the machine stops, as on the hyp's
    /// own fatal errors.
    fn stop_all_dma(&mut self) {
        if self.stopped {
            return;
        }
        if !self.aborts_when_off {
            log::error!(
                "SMMU: maintenance failed and this SMMU cannot abort device accesses (GBPA): stopping the machine"
            );
            crate::power::system_off(1);
        }
        self.stopped = true;
        write32(self.base, regs::CR0, 0);
        let acknowledged = poll(self.base, regs::CR0ACK, |v| v & format::CR0_SMMUEN == 0);
        log::error!(
            "SMMU: maintenance failed: translation off, every device access aborts from now on{}",
            if acknowledged { "" } else { " (the SMMU did not acknowledge CR0)" }
        );
    }
}

/// The TLB maintenance of the host's devices' context, through the command
/// queue. `sync` returns once the SMMU has completed everything queued.
#[derive(Default)]
pub struct SmmuTlb;

impl TlbMaintenance for SmmuTlb {
    fn invalidate_leaf(&mut self, address: usize, _level: usize) {
        if let Some(smmu) = SMMU.get() {
            smmu.lock().command(format::cmd_tlbi_nh_va(SMMU_ASID, address as u64, true));
        }
    }

    fn invalidate_all(&mut self) {
        if let Some(smmu) = SMMU.get() {
            smmu.lock().command(format::cmd_tlbi_nh_asid(SMMU_ASID));
        }
    }

    fn sync(&mut self) {
        if let Some(smmu) = SMMU.get() {
            smmu.lock().sync();
        }
    }
}

/// Logs and consumes the SMMU's event records (faults of the host's devices);
/// returns how many there were.
pub fn drain_events() -> usize {
    let Some(smmu) = SMMU.get() else {
        return 0;
    };
    let smmu = smmu.lock();
    let wrap_mask = (2u32 << smmu.eventq_log2) - 1;
    let mask = (1u32 << smmu.eventq_log2) - 1;
    let mut cons = read32(smmu.base, regs::EVENTQ_CONS) & wrap_mask;
    let prod = read32(smmu.base, regs::EVENTQ_PROD) & wrap_mask;
    let mut drained = 0;
    // Events of one access, page and stream come in runs (a device's burst is
    // split into small transactions): one line per run, so that a device the
    // host programs cannot flood the console, and at most a few runs a call.
    let mut run: Option<(Event, usize)> = None;
    let mut lines = 0;
    let mut report = |event: Event, count: usize| {
        lines += 1;
        if lines <= MAX_EVENT_LINES {
            log::info!(
                "SMMU: {} (event {:#x}): stream {:#x} {} at {:#x} refused ({count} transaction(s) in the page)",
                event.name(),
                event.kind,
                event.stream,
                if event.write { "write" } else { "read" },
                event.address
            );
        }
    };
    while cons != prod && drained < (1 << smmu.eventq_log2) {
        let slot = smmu.eventq + 32 * (cons & mask) as usize;
        let mut record = [0u64; 4];
        for (i, word) in record.iter_mut().enumerate() {
            // SAFETY: `slot` is an entry of the event queue the driver allocated.
            *word = unsafe { core::ptr::read_volatile((slot as *const u64).add(i)) };
        }
        let event = Event::decode(record);
        run = match run {
            Some((first, count)) if first.same_run(&event) => Some((first, count + 1)),
            Some((first, count)) => {
                report(first, count);
                Some((event, 1))
            }
            None => Some((event, 1)),
        };
        cons = (cons + 1) & wrap_mask;
        drained += 1;
    }
    if let Some((first, count)) = run {
        report(first, count);
    }
    if lines > MAX_EVENT_LINES {
        log::info!("SMMU: {} more run(s) of faults not shown", lines - MAX_EVENT_LINES);
    }
    write32(smmu.base, regs::EVENTQ_CONS, cons);
    drained
}
