//! The host's checks of page sharing and donation: the hyp uses a page the host
//! shares and stops when it is unshared; donated pages are out of the host's reach
//! until reclaimed, and come back zeroed; every bad call returns its documented
//! error, and the hyp's invariant checker stays clean throughout.

use crate::harness::debug_calls::{debug_calls, invariants};
use crate::harness::hypercall::{self, InvariantReport};
use crate::harness::platform::HostPlatform;
use crate::harness::probe::{probe_hyp_memory, Access};
use crate::harness::report::check;
use crate::harness::scratch::{page, read, write, PAGE};
use hyp_abi::{HypError, MAX_PAGES_PER_CALL};

/// One bad call: what it tries, the call, its address and page count, and the
/// error it must return.
type BadCall = (&'static str, fn(u64, u64) -> Result<(), HypError>, u64, u64, HypError);

/// Runs the memory checks; true when all passed.
pub fn run_all(platform: &HostPlatform) -> bool {
    let mut passed = true;
    // Against a production hyp the checks that need a debug call are left out.
    let debug = debug_calls();
    let before = hypercall::check_invariants();
    if debug {
        passed &= check!(
            matches!(before, Ok(InvariantReport { violations: 0, .. })),
            "invariant checker clean at start: {before:?}"
        );
    }

    // Share: the hyp reads and writes the page, then loses it.
    let shared = page(0);
    write(shared + 8, 0x5eed_1234);
    passed &= check!(hypercall::share_hyp(shared, 1).is_ok(), "share page {shared:#x} with the hyp");
    let old = hypercall::debug_exchange(shared + 8, 0xc0ff_ee00);
    passed &= if debug {
        check!(
            old == Ok(0x5eed_1234) && read(shared + 8) == 0xc0ff_ee00,
            "hyp read the shared page ({old:x?}) and wrote it ({:#x})",
            read(shared + 8)
        )
    } else {
        check!(
            old == Err(HypError::NotSupported) && read(shared + 8) == 0x5eed_1234,
            "production hyp: DEBUG_EXCHANGE on the shared page refused ({old:?}), the page unchanged ({:#x})",
            read(shared + 8)
        )
    };
    passed &= invariants("share");
    passed &= check!(hypercall::unshare_hyp(shared, 1).is_ok(), "unshare page {shared:#x}");
    if debug {
        let refused = hypercall::debug_exchange(shared + 8, 1);
        passed &= check!(
            refused == Err(HypError::NotOwned) && read(shared + 8) == 0xc0ff_ee00,
            "hyp refuses the unshared page: {refused:?}"
        );
    }
    passed &= invariants("unshare");

    // Donate: out of the host's reach until reclaimed, then zeroed.
    let donated = page(2);
    for i in 0..4 {
        write(donated + i * PAGE + 16, 0xdead_0000 + i);
    }
    passed &= check!(hypercall::donate_hyp(donated, 4).is_ok(), "donate 4 pages at {donated:#x}");
    if debug {
        let report = hypercall::check_invariants();
        passed &= check!(
            matches!(report, Ok(InvariantReport { violations: 0, memcache_free: 4, .. })),
            "hyp memcache holds them: {report:?}"
        );
    }
    passed &= probe_hyp_memory(donated + PAGE + 16, Access::Read);
    passed &= probe_hyp_memory(donated + 3 * PAGE, Access::Write);
    passed &= check!(hypercall::reclaim_hyp(donated, 4).is_ok(), "reclaim the 4 donated pages");
    let values: [u64; 4] = core::array::from_fn(|i| read(donated + i as u64 * PAGE + 16));
    passed &= check!(values == [0; 4], "reclaimed pages read back zeroed: {values:x?}");
    passed &= invariants("reclaim");

    // Every bad call returns its error and changes nothing.
    passed &= check!(hypercall::share_hyp(page(4), 1).is_ok(), "share page {:#x} (for the double-share case)", page(4));
    passed &= check!(hypercall::donate_hyp(page(6), 1).is_ok(), "donate page {:#x} (for the reclaim cases)", page(6));
    let ram_end = platform.ram_end;
    let uart = platform.uart_base as u64;
    let hyp = platform.hyp_regions().first().map_or(0, |r| r.0);
    let cases: [BadCall; 12] = [
        ("share an unaligned address", hypercall::share_hyp, page(5) + 8, 1, HypError::NotAligned),
        ("share memory outside RAM", hypercall::share_hyp, ram_end, 1, HypError::OutOfRange),
        ("share device (UART) memory", hypercall::share_hyp, uart, 1, HypError::OutOfRange),
        ("share the hyp's memory", hypercall::share_hyp, hyp, 1, HypError::NotOwned),
        ("donate the hyp's memory", hypercall::donate_hyp, hyp, 1, HypError::NotOwned),
        ("share a wrapping range", hypercall::share_hyp, !(PAGE - 1), 2, HypError::OutOfRange),
        ("share too many pages", hypercall::share_hyp, page(5), MAX_PAGES_PER_CALL + 1, HypError::InvalidArgument),
        ("share zero pages", hypercall::share_hyp, page(5), 0, HypError::InvalidArgument),
        ("share a page twice", hypercall::share_hyp, page(4), 1, HypError::NotOwned),
        ("unshare a page never shared", hypercall::unshare_hyp, page(5), 1, HypError::NotOwned),
        ("reclaim a page never donated", hypercall::reclaim_hyp, page(5), 1, HypError::NotOwned),
        ("reclaim the hyp's own memory", hypercall::reclaim_hyp, hyp, 1, HypError::NotOwned),
    ];
    for (what, call, start, pages, expected) in cases {
        let got = call(start, pages);
        passed &= check!(got == Err(expected), "{what} ({start:#x} x{pages}) refused: {got:?}");
        passed &= invariants(what);
    }
    passed &= check!(hypercall::unshare_hyp(page(4), 1).is_ok(), "unshare page {:#x}", page(4));
    passed &= check!(hypercall::reclaim_hyp(page(6), 1).is_ok(), "reclaim page {:#x}", page(6));
    if debug {
        let after = hypercall::check_invariants();
        passed &= check!(
            matches!((before, after), (Ok(b), Ok(a)) if (a.violations, a.memcache_free, a.memcache_used) == (b.violations, b.memcache_free, b.memcache_used)),
            "memory checks leave the hyp as they found it: {after:?}"
        );
    }
    passed
}
