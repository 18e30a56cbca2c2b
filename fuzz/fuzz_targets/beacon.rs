//! LAN beacons as they arrive in one UDP datagram. A decoded beacon is verified, and
//! what it encodes to must decode again.
#![no_main]

use ark_lattice::discovery::{Beacon, MAX_BEACON_BYTES};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(beacon) = Beacon::decode(data) else {
        return;
    };
    let _ = beacon.verify();
    let _ = beacon.signing_bytes();
    // Decoding fills in ARK's defaults, so a beacon near the size limit may encode to
    // more than the limit; anything within it must decode again.
    let encoded = beacon.encode();
    if encoded.len() <= MAX_BEACON_BYTES {
        assert!(
            Beacon::decode(&encoded).is_ok(),
            "a decoded beacon re-encodes"
        );
    }
});
