//! Decoding the Exception Syndrome Register (Arm ARM D23.2.45 ESR_ELx): exception
//! class, instruction length, and the ISS fields of aborts, for the trap handlers
//! and for the messages of a hyp panic.

#![forbid(unsafe_code)]

use core::fmt;

/// Exception classes the hyp tells apart (ESR_ELx.EC, bits 31:26).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum ExceptionClass {
    Unknown,
    WfiWfe,
    FpSimd,
    IllegalState,
    Svc64,
    Hvc64,
    Smc64,
    SysReg,
    Sve,
    PointerAuth,
    InstructionAbortLower,
    InstructionAbortSame,
    PcAlignment,
    DataAbortLower,
    DataAbortSame,
    SpAlignment,
    SError,
    Brk64,
    Other(u8),
}

impl ExceptionClass {
    /// Inlined so that a trap handler's match on the class compiles to a
    /// compare of the EC field, not a table lookup and a second match.
    #[inline]
    pub fn from_esr(esr: u64) -> Self {
        match ((esr >> 26) & 0x3f) as u8 {
            0x00 => Self::Unknown,
            0x01 => Self::WfiWfe,
            0x07 => Self::FpSimd,
            0x0e => Self::IllegalState,
            0x15 => Self::Svc64,
            0x16 => Self::Hvc64,
            0x17 => Self::Smc64,
            0x18 => Self::SysReg,
            0x19 => Self::Sve,
            0x09 => Self::PointerAuth,
            0x20 => Self::InstructionAbortLower,
            0x21 => Self::InstructionAbortSame,
            0x22 => Self::PcAlignment,
            0x24 => Self::DataAbortLower,
            0x25 => Self::DataAbortSame,
            0x26 => Self::SpAlignment,
            0x2f => Self::SError,
            0x3c => Self::Brk64,
            other => Self::Other(other),
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            Self::Unknown => "unknown reason (undefined instruction)",
            Self::WfiWfe => "WFI/WFE",
            Self::FpSimd => "FP/SIMD access",
            Self::IllegalState => "illegal execution state",
            Self::Svc64 => "SVC",
            Self::Hvc64 => "HVC",
            Self::Smc64 => "SMC",
            Self::SysReg => "system register access",
            Self::Sve => "SVE access",
            Self::PointerAuth => "pointer authentication",
            Self::InstructionAbortLower => "instruction abort from a lower EL",
            Self::InstructionAbortSame => "instruction abort at the same EL",
            Self::PcAlignment => "PC alignment fault",
            Self::DataAbortLower => "data abort from a lower EL",
            Self::DataAbortSame => "data abort at the same EL",
            Self::SpAlignment => "SP alignment fault",
            Self::SError => "SError",
            Self::Brk64 => "BRK",
            Self::Other(_) => "other",
        }
    }

    fn is_abort(self) -> bool {
        matches!(
            self,
            Self::InstructionAbortLower | Self::InstructionAbortSame | Self::DataAbortLower | Self::DataAbortSame
        )
    }
}

/// The fault status code of an abort (DFSC/IFSC, ISS bits 5:0).
pub fn fault_status_description(fsc: u8) -> &'static str {
    match fsc {
        0x00..=0x03 => "address size fault",
        0x04..=0x07 => "translation fault",
        0x09..=0x0b => "access flag fault",
        0x0d..=0x0f => "permission fault",
        0x10 => "synchronous external abort",
        0x11 => "synchronous tag check fault",
        0x14..=0x17 => "synchronous external abort on table walk",
        0x21 => "alignment fault",
        0x30 => "TLB conflict abort",
        _ => "other fault",
    }
}

/// A decoded ESR value.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Esr(pub u64);

impl Esr {
    #[inline]
    pub fn class(self) -> ExceptionClass {
        ExceptionClass::from_esr(self.0)
    }

    /// The instruction-specific syndrome, bits 24:0.
    pub fn iss(self) -> u32 {
        (self.0 & 0x1ff_ffff) as u32
    }

    /// For a trapped WFI or WFE (EC 0x01): whether it was a WFE (ISS.TI bit 0).
    pub fn is_wfe(self) -> bool {
        self.iss() & 1 != 0
    }

    /// IL: the trapped instruction was 32 bits long.
    pub fn is_32bit_instruction(self) -> bool {
        self.0 & (1 << 25) != 0
    }

    /// Fault status code of an abort.
    pub fn fault_status(self) -> u8 {
        (self.0 & 0x3f) as u8
    }

    /// Translation level of a translation/access/permission fault.
    pub fn fault_level(self) -> u8 {
        (self.0 & 0x3) as u8
    }

    /// WnR: a data abort caused by a write.
    pub fn is_write(self) -> bool {
        self.0 & (1 << 6) != 0
    }

    /// S1PTW: the stage-2 fault happened on a stage-1 table walk.
    pub fn is_stage1_walk(self) -> bool {
        self.0 & (1 << 7) != 0
    }

    /// Whether HPFAR_EL2 holds the faulting IPA of this exception: an
    /// instruction or data abort from a lower EL that is a translation,
    /// access-flag or address-size fault (at stage 2, or on the stage-2
    /// translation of a stage-1 walk), or a permission fault on a stage-1
    /// walk (as Linux's `__hpfar_valid`). For every other abort (a stage-2
    /// permission fault, an external abort, an alignment fault, ...)
    /// HPFAR_EL2 is UNKNOWN and the IPA is not known.
    #[inline]
    pub fn hpfar_valid(self) -> bool {
        if !matches!(self.class(), ExceptionClass::DataAbortLower | ExceptionClass::InstructionAbortLower) {
            return false;
        }
        match self.fault_status() {
            // Address size (levels 0..3, and -1 with 52-bit addresses),
            // translation (0..3, and -1), access flag.
            0x00..=0x0b | 0x29 | 0x2b => true,
            0x0c..=0x0f => self.is_stage1_walk(),
            _ => false,
        }
    }

    /// The 16-bit immediate of HVC/SMC/SVC/BRK.
    pub fn immediate(self) -> u16 {
        (self.0 & 0xffff) as u16
    }
}

impl fmt::Display for Esr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let class = self.class();
        write!(
            f,
            "ESR {:#010x}: EC {:#04x} ({}), IL {}, ISS {:#09x}",
            self.0,
            (self.0 >> 26) & 0x3f,
            class.description(),
            u8::from(self.is_32bit_instruction()),
            self.iss()
        )?;
        if class.is_abort() {
            let fsc = self.fault_status();
            write!(f, " [FSC {:#04x} {}", fsc, fault_status_description(fsc))?;
            if fsc < 0x10 {
                write!(f, " level {}", self.fault_level())?;
            }
            if matches!(class, ExceptionClass::DataAbortLower | ExceptionClass::DataAbortSame) {
                write!(f, ", {}", if self.is_write() { "write" } else { "read" })?;
                if self.0 & (1 << 24) != 0 {
                    write!(f, ", ISV, SAS {}, SRT x{}", (self.0 >> 22) & 3, (self.0 >> 16) & 0x1f)?;
                }
            }
            if self.is_stage1_walk() {
                write!(f, ", on stage-1 walk")?;
            }
            write!(f, "]")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_a_stage2_read_translation_fault_from_el1() {
        // EC 0x24, IL, ISV, SAS=3 (64-bit), SRT=x1, DFSC level-3 translation fault.
        let esr = Esr((0x24 << 26) | (1 << 25) | (1 << 24) | (3 << 22) | (1 << 16) | 0x07);
        assert_eq!(esr.class(), ExceptionClass::DataAbortLower);
        assert!(!esr.is_write());
        assert_eq!(esr.fault_status(), 0x07);
        let text = format!("{esr}");
        assert!(text.contains("data abort from a lower EL"), "{text}");
        assert!(text.contains("translation fault level 3, read, ISV, SAS 3, SRT x1"), "{text}");
    }

    #[test]
    fn decodes_hvc_immediate_and_unknown_classes() {
        let hvc = Esr((0x16 << 26) | (1 << 25) | 0x1234);
        assert_eq!(hvc.class(), ExceptionClass::Hvc64);
        assert_eq!(hvc.immediate(), 0x1234);
        assert_eq!(Esr(0x3f << 26).class(), ExceptionClass::Other(0x3f));
        assert!(format!("{}", Esr(0)).contains("undefined instruction"));
    }

    #[test]
    fn hpfar_is_trusted_only_for_the_faults_that_set_it() {
        let data = |iss: u64| Esr((0x24 << 26) | (1 << 25) | iss);
        let instruction = |iss: u64| Esr((0x20 << 26) | (1 << 25) | iss);
        for fsc in [0x00, 0x03, 0x04, 0x07, 0x09, 0x0b] {
            assert!(data(fsc).hpfar_valid() && instruction(fsc).hpfar_valid(), "FSC {fsc:#x}");
        }
        assert!(!data(0x0f).hpfar_valid(), "a stage-2 permission fault leaves HPFAR UNKNOWN");
        assert!(data(1 << 7 | 0x0f).hpfar_valid(), "but not on a stage-1 walk");
        for fsc in [0x10, 0x11, 0x14, 0x17, 0x18, 0x21, 0x30] {
            assert!(!data(fsc).hpfar_valid(), "FSC {fsc:#x}: external abort, tag, parity, alignment, TLB conflict");
        }
        assert!(!Esr((0x25 << 26) | 0x07).hpfar_valid(), "an abort taken at EL2 itself");
        assert!(!Esr((0x16 << 26) | 0x07).hpfar_valid(), "an HVC whose immediate looks like a translation fault");
    }

    #[test]
    fn names_synchronous_external_aborts() {
        let esr = Esr((0x25 << 26) | (1 << 25) | (1 << 6) | 0x10);
        let text = format!("{esr}");
        assert!(text.contains("synchronous external abort, write"), "{text}");
    }
}
