//! LAN beacons as they arrive in one UDP datagram. A decoded beacon is verified, and
//! what it encodes to must decode again.
#![no_main]

use ark_lattice::discovery::Beacon;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(beacon) = Beacon::decode(data) else {
        return;
    };
    let _ = beacon.verify();
    let _ = beacon.signing_bytes();
    let encoded = beacon.encode();
    assert!(Beacon::decode(&encoded).is_ok(), "a decoded beacon re-encodes");
});
