//! Peer URLs as operators, beacons, manifests and `add-peer` give them. A URL that
//! normalises must normalise to itself and parse.
#![no_main]

use ark_lattice::config::normalize_peer_url;
use ark_lattice::http::PeerUrl;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(url) = PeerUrl::parse(&text) {
        let _ = (
            url.host(),
            url.port(),
            url.path_and_query(),
            url.authority(),
        );
    }
    if let Ok(normal) = normalize_peer_url(&text) {
        assert_eq!(
            normalize_peer_url(&normal).as_ref(),
            Ok(&normal),
            "{text:?}"
        );
    }
});
