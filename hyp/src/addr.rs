//! Numbers the hyp must not confuse: a physical address, a guest's
//! intermediate physical address (IPA), a count of pages. Each is its own type
//! and none converts into another, so that a physical address cannot go where
//! an IPA is expected (the two sit side by side in `VM_MAP`). The number itself
//! comes out only by name (`raw`), where the page records or a table walk need it.
//!
//! They hold what the host passed, unchecked: each transition checks its
//! arguments against the state, in the order that decides which error a bad
//! call gets.

#![forbid(unsafe_code)]

use core::fmt;

/// An address type: a `u64` with hex formatting.
macro_rules! address_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Eq, PartialEq, Ord, PartialOrd, Hash)]
        #[repr(transparent)]
        pub struct $name(u64);

        impl $name {
            pub const fn new(raw: u64) -> $name {
                $name(raw)
            }

            pub const fn raw(self) -> u64 {
                self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({:#x})"), self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:#x}", self.0)
            }
        }

        impl fmt::LowerHex for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::LowerHex::fmt(&self.0, f)
            }
        }
    };
}

address_type!(
    /// A physical address (the host's IPAs are physical addresses: its stage-2
    /// is an identity map).
    PhysAddr
);

address_type!(
    /// An intermediate physical address in a guest's stage-2.
    Ipa
);

/// A number of 4 KiB pages.
#[derive(Clone, Copy, Debug, Eq, PartialEq, Ord, PartialOrd, Hash)]
#[repr(transparent)]
pub struct PageCount(u64);

impl PageCount {
    pub const fn new(raw: u64) -> PageCount {
        PageCount(raw)
    }

    pub const fn raw(self) -> u64 {
        self.0
    }
}

impl fmt::Display for PageCount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// Host pages for a VM: `count` pages at physical `pa`, for the IPAs `ipa..`.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct GuestPages {
    pub pa: PhysAddr,
    pub ipa: Ipa,
    pub count: PageCount,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_print_in_hex_and_counts_in_decimal() {
        let pa = PhysAddr::new(0x4010_0000);
        assert_eq!(format!("{pa} {pa:#x} {pa:?}"), "0x40100000 0x40100000 PhysAddr(0x40100000)");
        assert_eq!(format!("{:?}", Ipa::new(0x8000)), "Ipa(0x8000)");
        assert_eq!(format!("{}", PageCount::new(512)), "512");
    }

    #[test]
    fn the_types_are_their_number_in_memory() {
        assert_eq!(core::mem::size_of::<PhysAddr>(), 8);
        assert_eq!(core::mem::size_of::<GuestPages>(), 24);
        assert_eq!(PhysAddr::new(u64::MAX).raw(), u64::MAX);
    }
}
