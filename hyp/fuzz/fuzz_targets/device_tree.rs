//! Platform discovery (with its structural check first) on arbitrary bytes:
//! it must answer with a platform or an error, never panic or read out of bounds.
//! Also the damaged-image report's own device-tree reader (`hyp-image-check`),
//! which must never panic either, and the bootargs grammar on the same bytes.

#![no_main]

use libfuzzer_sys::fuzz_target;
use hyp_fuzz::platform;

fuzz_target!(|data: &[u8]| {
    let _ = hyp_image_check::stop_info(data);
    if let Ok(text) = core::str::from_utf8(data) {
        let _ = hyp_abi::bootargs::HypArgs::parse(text);
        let _ = hyp_abi::bootargs::ShimArgs::parse(text);
    }
    // As boot reads it: into a default platform, in place.
    let mut p = platform::Platform::default();
    if p.fill_from_fdt(data).is_ok() {
        // What discovery found is consistent: RAM banks are real ranges.
        assert!(!p.ram.is_empty());
        for bank in p.ram.as_slice() {
            assert!(bank.start < bank.end);
        }
        assert!(p.fdt_size <= data.len());
    }
});
