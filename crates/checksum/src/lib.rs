//! TigerBeetle's checksum, used for every byte Tally writes to disk or sends to a client.
//!
//! `checksum(data)` is the 128-bit authentication tag of AEGIS-128L with an all-zero key, an
//! all-zero nonce, `data` as associated data and an empty message, read as a little-endian u128.
//! It is fixed forever: the wire protocol depends on it, and so do the journal's hash chains.

use aegis::aegis128l::Aegis128L;

/// The checksum of zero bytes; every empty message body carries it.
pub const CHECKSUM_EMPTY: u128 = 0x49F1_7461_8255_402D_E6E7_E3C4_0D60_CC83;

/// The 128-bit checksum of `data` as defined above; equal to what TigerBeetle computes for the
/// same bytes, so headers and bodies interoperate with its clients. Pure and allocation-free.
pub fn checksum(data: &[u8]) -> u128 {
    const KEY: [u8; 16] = [0; 16];
    const NONCE: [u8; 16] = [0; 16];
    let mut message: [u8; 0] = [];
    let tag: [u8; 16] = Aegis128L::<16>::new(&KEY, &NONCE).encrypt_in_place(&mut message, data);
    u128::from_le_bytes(tag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_matches_tigerbeetle() {
        assert_eq!(checksum(&[]), CHECKSUM_EMPTY);
    }

    #[test]
    fn differs_on_one_bit() {
        let mut data = [7u8; 300];
        let before = checksum(&data);
        data[299] ^= 1;
        assert_ne!(before, checksum(&data));
    }
}
