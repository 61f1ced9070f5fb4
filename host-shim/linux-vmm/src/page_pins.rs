//! Whether a VM's page pins were all dropped, from the kernel's own count of
//! page pins (`/proc/vmstat`: `nr_foll_pin_acquired`, `nr_foll_pin_released`,
//! every `FOLL_PIN`, system-wide). The hyp's driver pins every page of a
//! memory slot and unpins each when the hyp gives it back; Linux's own KVM
//! pins none. Counters only grow, so pins another process drops at the same
//! time can hide a missing one but never make a false alarm; with the VMM
//! alone the figures are exact.

/// The two counters at one moment.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct PinCounts {
    pub acquired: u64,
    pub released: u64,
}

/// The counters in the text of `/proc/vmstat` (a name and a number a line).
pub fn parse(vmstat: &str) -> Option<PinCounts> {
    let counter =
        |name: &str| vmstat.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok());
    Some(PinCounts { acquired: counter("nr_foll_pin_acquired")?, released: counter("nr_foll_pin_released")? })
}

/// Whether the pins taken between `before` and `after` for a VM of `pages`
/// pages were dropped: if any were taken, at least as many as the VM could
/// have (its pages, or fewer if fewer were taken) must have been dropped.
pub fn judge(pages: u64, before: PinCounts, after: PinCounts) -> Result<String, String> {
    let acquired = after.acquired.saturating_sub(before.acquired);
    let released = after.released.saturating_sub(before.released);
    if acquired == 0 {
        return Ok("no page pinned (this KVM does not pin guest memory)".into());
    }
    if released >= acquired.min(pages) {
        Ok(format!("{acquired} pins taken and {released} dropped"))
    } else {
        Err(format!("{acquired} pins taken but only {released} dropped: pages of the guest are still pinned"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VMSTAT: &str =
        "nr_free_pages 181237\nnr_foll_pin_acquired 65552\nnr_foll_pin_released 16\nnr_foll_pin_acquired_x 9\n";

    #[test]
    fn the_counters_are_read_from_vmstat() {
        assert_eq!(parse(VMSTAT), Some(PinCounts { acquired: 65552, released: 16 }));
        assert_eq!(parse("nr_foll_pin_acquired 3\n"), None);
        assert_eq!(parse("nr_foll_pin_acquired x\nnr_foll_pin_released 1\n"), None);
    }

    #[test]
    fn every_pin_taken_must_be_dropped() {
        let before = PinCounts { acquired: 16, released: 16 };
        let all = PinCounts { acquired: 65552, released: 65552 };
        assert_eq!(judge(65536, before, all), Ok("65536 pins taken and 65536 dropped".into()));
        let kept = PinCounts { acquired: 65552, released: 65551 };
        assert!(judge(65536, before, kept).is_err());
        // Another process's pins at the same time: more taken, ours all dropped.
        let busy = PinCounts { acquired: 65552 + 100, released: 65552 };
        assert!(judge(65536, before, busy).is_ok());
        // A KVM that pins nothing.
        assert!(judge(65536, before, before).unwrap().contains("no page pinned"));
        // Fewer pins than pages (a slot partly pinned), all dropped.
        assert!(judge(65536, before, PinCounts { acquired: 116, released: 116 }).is_ok());
    }
}
