//! Platform discovery (with its structural check first) on arbitrary bytes:
//! it must answer with a platform or an error, never panic or read out of bounds.

#![no_main]

use libfuzzer_sys::fuzz_target;
use hyp_fuzz::platform;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = platform::Platform::from_fdt(data) {
        // What discovery found is consistent: RAM banks are real ranges.
        assert!(!p.ram.is_empty());
        for bank in p.ram.as_slice() {
            assert!(bank.start < bank.end);
        }
        assert!(p.fdt_size <= data.len());
    }
});
