//! A changes page in the compact form (`protocol::expand_page`), as a first copy reads
//! it from a peer: JSON, a line break, then 64 raw bytes per signed record. Whatever
//! reads must compact again (`compact_page`, what the serving node writes), and our own
//! compact page must read back to the same page: written twice, the bytes are equal.
#![no_main]

use ark_lattice::protocol::{compact_page, expand_page};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(page) = expand_page(data, "fuzz page") else {
        return;
    };
    // A page that reads can still hold records the serving side would not write (no
    // version, a signature that is not 64 bytes of base64): compacting refuses those.
    let Ok(written) = compact_page(page) else {
        return;
    };
    let bytes = written.to_bytes();
    let again = expand_page(&bytes, "written page")
        .unwrap_or_else(|error| panic!("our own compact page does not read: {error}"));
    let rewritten = compact_page(again)
        .unwrap_or_else(|error| panic!("our own page does not compact again: {error}"));
    assert_eq!(
        rewritten.to_bytes(),
        bytes,
        "a compact page changed on a trip through its reader"
    );
});
