//! SMMUv3 in-memory formats and register fields (Arm IHI 0070): the stream
//! table entry, the context descriptor, commands and event records. Pure
//! encoding, unit-tested on the development machine; the driver (`smmu/mod.rs`)
//! puts them in memory and in the queues.

#![forbid(unsafe_code)]

/// Register offsets (page 0, except the event queue's producer and consumer).
pub mod regs {
    pub const IDR0: usize = 0x00;
    pub const IDR1: usize = 0x04;
    pub const IDR5: usize = 0x14;
    pub const CR0: usize = 0x20;
    pub const CR0ACK: usize = 0x24;
    pub const CR1: usize = 0x28;
    pub const CR2: usize = 0x2c;
    pub const GBPA: usize = 0x44;
    pub const IRQ_CTRL: usize = 0x50;
    pub const STRTAB_BASE: usize = 0x80;
    pub const STRTAB_BASE_CFG: usize = 0x88;
    pub const CMDQ_BASE: usize = 0x90;
    pub const CMDQ_PROD: usize = 0x98;
    pub const CMDQ_CONS: usize = 0x9c;
    pub const EVENTQ_BASE: usize = 0xa0;
    pub const EVENTQ_PROD: usize = 0x1_00a8;
    pub const EVENTQ_CONS: usize = 0x1_00ac;
}

/// CR0 bits.
pub const CR0_SMMUEN: u32 = 1 << 0;
pub const CR0_EVTQEN: u32 = 1 << 2;
pub const CR0_CMDQEN: u32 = 1 << 3;
/// GBPA: abort incoming transactions while the SMMU is disabled; UPDATE.
pub const GBPA_ABORT: u32 = 1 << 20;
pub const GBPA_UPDATE: u32 = 1 << 31;
/// CR1: tables and queues inner-shareable, write-back cacheable.
pub const CR1_WB_ISH: u32 = (3 << 10) | (1 << 8) | (1 << 6) | (3 << 4) | (1 << 2) | 1;
/// CMDQ_CONS.ERR.
pub const CMDQ_CONS_ERR_SHIFT: u32 = 24;

/// What the hyp needs of the SMMU, from its ID registers.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Features {
    pub stage1: bool,
    pub aarch64_tables: bool,
    pub granule_4k: bool,
    /// Output address size, in bits.
    pub oas_bits: u32,
    /// Stream ID bits.
    pub sid_bits: u32,
    /// log2 of the most command and event queue entries.
    pub cmdq_log2: u32,
    pub eventq_log2: u32,
    /// Whether the SMMU can only be used little-endian.
    pub little_endian: bool,
}

impl Features {
    pub fn decode(idr0: u32, idr1: u32, idr5: u32) -> Features {
        let ttf = (idr0 >> 2) & 3;
        let ttendian = (idr0 >> 21) & 3;
        Features {
            stage1: idr0 & 2 != 0,
            aarch64_tables: ttf & 2 != 0,
            granule_4k: idr5 & (1 << 4) != 0,
            oas_bits: match idr5 & 7 {
                0 => 32,
                1 => 36,
                2 => 40,
                3 => 42,
                4 => 44,
                5 => 48,
                _ => 52,
            },
            sid_bits: idr1 & 0x3f,
            cmdq_log2: (idr1 >> 21) & 0x1f,
            eventq_log2: (idr1 >> 16) & 0x1f,
            little_endian: ttendian != 3,
        }
    }

    /// Why the hyp cannot use this SMMU, if it cannot.
    pub fn unusable(&self) -> Option<&'static str> {
        if !self.stage1 {
            return Some("no stage-1 translation (the hyp builds stage-1 identity tables)");
        }
        if !self.aarch64_tables || !self.granule_4k {
            return Some("no AArch64 tables with the 4 KiB granule");
        }
        if !self.little_endian {
            return Some("big-endian table walks only");
        }
        None
    }
}

/// STRTAB_BASE_CFG for a linear table of 2^`log2` entries.
pub fn strtab_base_cfg(log2: u32) -> u32 {
    log2 & 0x3f
}

/// A queue base register: address, log2 of its entries, read/write-allocate.
pub fn queue_base(address: u64, log2: u32) -> u64 {
    (1 << 62) | (address & 0x000f_ffff_ffff_ffe0) | u64::from(log2 & 0x1f)
}

/// STRTAB_BASE: the table's address, read-allocate.
pub fn strtab_base(address: u64) -> u64 {
    (1 << 62) | (address & 0x000f_ffff_ffff_ffc0)
}

/// A stream table entry that translates through stage 1 with the context
/// descriptor at `cd` (one descriptor, no substreams), stage 2 bypassed.
pub fn ste_stage1(cd: u64) -> [u64; 8] {
    const V: u64 = 1;
    const CONFIG_S1_TRANSLATE: u64 = 0b101 << 1;
    let dw0 = V | CONFIG_S1_TRANSLATE | (cd & 0x000f_ffff_ffff_ffc0);
    // S1CIR, S1COR write-back read-allocate, S1CSH inner shareable, STRW EL1.
    let dw1 = (1 << 2) | (1 << 4) | (3 << 6);
    [dw0, dw1, 0, 0, 0, 0, 0, 0]
}

/// A context descriptor for a 4 KiB-granule AArch64 table at `ttb0` covering
/// 2^`va_bits` bytes, ASID `asid`, output size `ips` (the IDR5.OAS encoding),
/// memory attributes `mair`; faults are recorded and terminate the access.
pub fn context_descriptor(ttb0: u64, va_bits: u32, ips: u64, asid: u16, mair: u64) -> [u64; 8] {
    let t0sz = u64::from(64 - va_bits);
    let dw0 = t0sz
        | (1 << 8) // IR0 write-back write-allocate
        | (1 << 10) // OR0
        | (3 << 12) // SH0 inner shareable
        | (1 << 30) // EPD1: no upper range
        | (1 << 31) // V
        | ((ips & 7) << 32)
        | (1 << 41) // AA64
        | (1 << 45) // R: record faults
        | (1 << 46) // A: abort on fault
        | (1 << 47) // ASET: not shared with the CPUs' ASIDs
        | (u64::from(asid) << 48);
    [dw0, ttb0 & 0x000f_ffff_ffff_fff0, 0, mair, 0, 0, 0, 0]
}

/// Commands (two 64-bit words).
pub fn cmd_cfgi_all() -> [u64; 2] {
    [0x04, 31]
}

pub fn cmd_tlbi_nh_asid(asid: u16) -> [u64; 2] {
    [0x11 | (u64::from(asid) << 48), 0]
}

pub fn cmd_tlbi_nh_va(asid: u16, address: u64, leaf: bool) -> [u64; 2] {
    [0x12 | (u64::from(asid) << 48), (address & !0xfff) | u64::from(leaf)]
}

pub fn cmd_sync() -> [u64; 2] {
    [0x46, 0]
}

/// One event record, decoded enough to log it.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Event {
    pub kind: u8,
    pub stream: u32,
    /// The input address of a translation-related fault.
    pub address: u64,
    pub write: bool,
}

impl Event {
    pub fn decode(record: [u64; 4]) -> Event {
        Event {
            kind: record[0] as u8,
            stream: (record[0] >> 32) as u32,
            address: record[2],
            // RnW: 1 for a read.
            write: record[1] & (1 << 35) == 0,
        }
    }

    /// Whether `other` continues this event's run: same kind, stream,
    /// direction and page.
    pub fn same_run(&self, other: &Event) -> bool {
        self.kind == other.kind
            && self.stream == other.stream
            && self.write == other.write
            && self.address >> 12 == other.address >> 12
    }

    pub fn name(&self) -> &'static str {
        match self.kind {
            0x01 => "F_UUT",
            0x02 => "C_BAD_STREAMID",
            0x04 => "C_BAD_STE",
            0x0a => "C_BAD_CD",
            0x0b => "F_WALK_EABT",
            0x10 => "F_TRANSLATION",
            0x11 => "F_ADDR_SIZE",
            0x12 => "F_ACCESS",
            0x13 => "F_PERMISSION",
            _ => "event",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_smmu_features_decode_and_are_usable() {
        // QEMU 7.2's SMMUv3: IDR0 S1P, TTF AArch64, COHACC, ASID16, ...; IDR1
        // SIDSIZE 16, EVENTQS 19, CMDQS 19; IDR5 OAS 44 bits, 4K and 64K granules.
        let f = Features::decode(0x0800_1012 | 0xc, (19 << 21) | (19 << 16) | 16, 0x54);
        assert_eq!(f.unusable(), None, "{f:?}");
        assert_eq!((f.oas_bits, f.sid_bits, f.cmdq_log2), (44, 16, 19));
        assert_eq!(Features::decode(0, 0, 0x10).unusable().map(|s| &s[..11]), Some("no stage-1 "));
    }

    #[test]
    fn ste_and_cd_carry_their_fields() {
        let ste = ste_stage1(0x4123_4040);
        assert_eq!(ste[0] & 0xf, 0b1011, "valid, stage-1 translate");
        assert_eq!(ste[0] & !0xf, 0x4123_4040);
        let cd = context_descriptor(0x4555_6000, 48, 4, 1, 0xff04);
        assert_eq!(cd[0] & 0x3f, 16, "T0SZ");
        assert_eq!(cd[0] >> 31 & 1, 1, "valid");
        assert_eq!(cd[0] >> 48, 1, "ASID");
        assert_eq!(cd[0] >> 32 & 7, 4, "IPS");
        assert_eq!(cd[1], 0x4555_6000);
        assert_eq!(cd[3], 0xff04);
    }

    #[test]
    fn commands_and_events_encode() {
        assert_eq!(cmd_tlbi_nh_va(1, 0x4000_1234, true), [0x0001_0000_0000_0012, 0x4000_1001]);
        assert_eq!(cmd_sync()[0] & 0xff, 0x46);
        let e = Event::decode([0x0000_0008_0000_0010, 0, 0x4020_0000, 0]);
        assert_eq!((e.name(), e.stream, e.address, e.write), ("F_TRANSLATION", 8, 0x4020_0000, true));
        assert_eq!(queue_base(0x4000_1000, 8), (1 << 62) | 0x4000_1008);
    }
}
