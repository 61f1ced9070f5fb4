//! The flags the kernel keeps for a mapping (`/proc/self/smaps`, "VmFlags"),
//! to check what the driver did to a protected VM's memory: `dc` (left out
//! of forks, VM_DONTCOPY), `dd` (out of core dumps, VM_DONTDUMP), `mg`
//! (KSM's to merge, VM_MERGEABLE).

/// The VmFlags line of the mapping holding `address` in the text of an
/// smaps file: its two-letter flags, or `None` if no mapping holds it.
pub fn vm_flags(smaps: &str, address: u64) -> Option<Vec<&str>> {
    let mut inside = false;
    for line in smaps.lines() {
        if let Some((start, end)) = mapping_range(line) {
            inside = start <= address && address < end;
        } else if inside {
            if let Some(flags) = line.strip_prefix("VmFlags:") {
                return Some(flags.split_whitespace().collect());
            }
        }
    }
    None
}

/// The range of a mapping's header line ("start-end perms offset ...").
fn mapping_range(line: &str) -> Option<(u64, u64)> {
    let (range, rest) = line.split_once(' ')?;
    let (start, end) = range.split_once('-')?;
    // A header's second field is the permissions (e.g. "rw-p").
    rest.get(..4).filter(|perms| perms.chars().all(|c| "rwxsp-".contains(c)))?;
    Some((u64::from_str_radix(start, 16).ok()?, u64::from_str_radix(end, 16).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
aaaa00000000-aaaa00001000 r-xp 00000000 00:16 42    /usr/bin/hyp-vmm
Size:                  4 kB
VmFlags: rd ex mr mw me
ffff80000000-ffff80200000 rw-p 00000000 00:00 0
Size:               2048 kB
Rss:                   4 kB
VmFlags: rd wr mr mw me dc ac dd
";

    #[test]
    fn the_flags_of_the_mapping_holding_an_address() {
        assert_eq!(vm_flags(SMAPS, 0xaaaa_0000_0800), Some(vec!["rd", "ex", "mr", "mw", "me"]));
        let flags = vm_flags(SMAPS, 0xffff_801f_f000).unwrap_or_default();
        assert!(flags.contains(&"dc") && flags.contains(&"dd") && !flags.contains(&"mg"));
        assert_eq!(vm_flags(SMAPS, 0xffff_8020_0000), None, "just past the mapping");
        assert_eq!(vm_flags(SMAPS, 0x1000), None);
        assert_eq!(vm_flags("", 0x1000), None);
    }
}
