//! gzip bodies as they arrive from peers and clients (`http::gunzip_limited`): an
//! answer or an error, never a panic and never more than the cap; and the compact
//! page's own encoding (`http::gzip_text_and_raw`) of any split of the bytes reads
//! back whole, with single-member decoders too.
#![no_main]

use std::io::Read;

use ark_lattice::http::{GunzipError, gunzip_limited, gzip_text_and_raw};
use libfuzzer_sys::fuzz_target;

const LIMIT: usize = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    match gunzip_limited(data, LIMIT) {
        Ok(plain) => assert!(plain.len() <= LIMIT),
        Err(GunzipError::TooLarge(limit)) => assert_eq!(limit, LIMIT),
        Err(GunzipError::Malformed(_)) => {}
    }
    let split = data
        .first()
        .map_or(0, |byte| usize::from(*byte) * 16)
        .min(data.len());
    let (text, raw) = data.split_at(split);
    let body = gzip_text_and_raw(text, raw);
    assert_eq!(
        gunzip_limited(&body, data.len()).expect("our own gzip reads back"),
        data
    );
    let mut single = Vec::new();
    flate2::read::GzDecoder::new(body.as_slice())
        .read_to_end(&mut single)
        .expect("one member");
    assert_eq!(single, data);
});
