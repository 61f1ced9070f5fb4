//! The data of an MMIO exit (`kvm_run.mmio.data`): the access's bytes, in
//! the guest's byte order, little-endian for arm64 Linux guests.

/// A store's value from its `len` data bytes (at most 8).
pub fn stored_value(data: &[u8]) -> u64 {
    data.iter().take(8).rev().fold(0, |value, &byte| value << 8 | u64::from(byte))
}

/// Puts a load's `value` into its data bytes, as many as the access is wide.
pub fn answer_load(data: &mut [u8], value: u64) {
    for (i, byte) in data.iter_mut().take(8).enumerate() {
        *byte = (value >> (8 * i)) as u8;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_and_loads_are_little_endian_and_as_wide_as_the_access() {
        assert_eq!(stored_value(&[0x41]), 0x41);
        assert_eq!(stored_value(&[0x78, 0x56, 0x34, 0x12]), 0x1234_5678);
        assert_eq!(stored_value(&[1, 2, 3, 4, 5, 6, 7, 8]), 0x0807_0605_0403_0201);
        assert_eq!(stored_value(&[]), 0);
        let mut word = [0xffu8; 4];
        answer_load(&mut word, 0x1_0000_0090);
        assert_eq!(word, [0x90, 0, 0, 0]);
        let mut byte = [0u8; 1];
        answer_load(&mut byte, 0x1234);
        assert_eq!(byte, [0x34]);
        let mut double = [0u8; 8];
        answer_load(&mut double, 0x0807_0605_0403_0201);
        assert_eq!(double, [1, 2, 3, 4, 5, 6, 7, 8]);
    }
}
