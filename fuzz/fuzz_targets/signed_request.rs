//! The five `x-ark-*` headers of a signed request. Input: one header value per line,
//! in the order key, timestamp, nonce, audience, signature; the rest is the body.
#![no_main]

use ark_lattice::trust::{ReplayGuard, verify_request};
use libfuzzer_sys::fuzz_target;

const NAMES: [&str; 5] = [
    "x-ark-key",
    "x-ark-timestamp",
    "x-ark-nonce",
    "x-ark-audience",
    "x-ark-signature",
];

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.splitn(6, '\n');
    let values: Vec<&str> = (&mut lines).take(5).collect();
    let body = lines.next().unwrap_or("");
    let header = |name: &str| {
        NAMES
            .iter()
            .position(|known| *known == name)
            .and_then(|index| values.get(index).copied())
    };
    let mut guard = ReplayGuard::default();
    let _ = verify_request(
        header,
        "POST",
        "/federation/v2/push",
        body.as_bytes(),
        &mut guard,
        1_706_702_400_000,
    );
});
