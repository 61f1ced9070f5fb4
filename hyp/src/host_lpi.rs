//! The host's accesses to a redistributor's LPI control pages, which the hyp
//! emulates (the host stage-2 leaves them unmapped). LPIs are withheld from
//! the host: with them on, the redistributor reads and writes the property and
//! pending tables at addresses the host chose (PROPBASER, PENDBASER, and
//! VPROPBASER/VPENDBASER with virtual LPIs), which could be a protected VM's
//! pages or the hyp's. Without the ITS, which the hyp withholds too, the host
//! has no use for them.
//!
//! Reads pass through; of the writes, only GICR_CTLR without EnableLPIs,
//! GICR_STATUSR and GICR_WAKER (power management) do. Everything else is
//! refused with an abort.

#![forbid(unsafe_code)]

/// GICR_CTLR, and its EnableLPIs bit.
const GICR_CTLR: u64 = 0x0;
const GICR_CTLR_ENABLE_LPIS: u64 = 1 << 0;
const GICR_STATUSR: u64 = 0x10;
const GICR_WAKER: u64 = 0x14;

/// Which LPI control page an access hits.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum LpiPage {
    /// A redistributor's first page (RD_base).
    Controls,
    /// The first page of a redistributor's VLPI frame (GICv4).
    VirtualLpis,
}

/// What the hyp does with one host access.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum LpiDecision {
    /// Perform it on the hardware as the host asked.
    Forward,
    /// Refuse it: the host gets a synchronous external abort.
    Refuse,
}

/// Decides an access of `bytes` bytes at `offset` in `page`; `write` is the
/// value of a write.
pub fn decide(page: LpiPage, offset: u64, bytes: u64, write: Option<u64>) -> LpiDecision {
    // GIC registers are 32 or 64 bits wide, accessed naturally aligned.
    if !matches!(bytes, 4 | 8) || !offset.is_multiple_of(bytes) {
        return LpiDecision::Refuse;
    }
    let Some(value) = write else {
        return LpiDecision::Forward;
    };
    match (page, offset, bytes) {
        (LpiPage::Controls, GICR_CTLR, 4) if value & GICR_CTLR_ENABLE_LPIS == 0 => LpiDecision::Forward,
        (LpiPage::Controls, GICR_STATUSR | GICR_WAKER, 4) => LpiDecision::Forward,
        _ => LpiDecision::Refuse,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_pass_and_lpi_writes_are_refused() {
        use LpiDecision::{Forward, Refuse};
        use LpiPage::{Controls, VirtualLpis};
        assert_eq!(decide(Controls, 0x8, 8, None), Forward, "GICR_TYPER");
        assert_eq!(decide(Controls, 0x70, 8, None), Forward, "PROPBASER read");
        assert_eq!(decide(Controls, 0x0, 4, Some(0)), Forward, "GICR_CTLR, LPIs off");
        assert_eq!(decide(Controls, 0x0, 4, Some(1)), Refuse, "EnableLPIs");
        assert_eq!(decide(Controls, 0x0, 4, Some(0x0700_0001)), Refuse);
        assert_eq!(decide(Controls, 0x14, 4, Some(2)), Forward, "GICR_WAKER");
        assert_eq!(decide(Controls, 0x10, 4, Some(1)), Forward, "GICR_STATUSR");
        for offset in [0x40, 0x48, 0x70, 0x78, 0xa0, 0xb0] {
            assert_eq!(decide(Controls, offset, 8, Some(0x4020_0000)), Refuse, "{offset:#x}");
        }
        assert_eq!(decide(Controls, 0x70, 4, Some(0x4020_0000)), Refuse, "half of PROPBASER");
        assert_eq!(decide(Controls, 0x200, 4, Some(0)), Refuse, "implementation defined");
        assert_eq!(decide(VirtualLpis, 0x78, 8, Some(1 << 63)), Refuse, "VPENDBASER.Valid");
        assert_eq!(decide(VirtualLpis, 0x70, 8, None), Forward);
        assert_eq!(decide(Controls, 0x2, 4, None), Refuse, "unaligned");
        assert_eq!(decide(Controls, 0x0, 1, None), Refuse, "byte access");
    }
}
