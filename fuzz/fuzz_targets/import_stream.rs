//! `import`'s streaming reader (`input::RecordStream`), fed through a reader that hands
//! out a few bytes at a time, so arrays, NDJSON lines and whitespace are cut at every
//! place a buffer boundary can fall. Whenever the whole-document reader
//! (`input::parse_bytes`, what the `import_document` target feeds) reads the same bytes
//! without a document error, the stream must hand out the same records in the same
//! order, valid or not.
#![no_main]

use std::io::BufReader;

use ark_lattice::input::{RecordStream, parse_bytes};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&first, document)) = data.split_first() else {
        return;
    };
    // 1 to 64 bytes per read: std's BufReader never asks for more than its capacity.
    let reader = BufReader::with_capacity(usize::from(first % 64) + 1, document);
    let streamed: Option<Vec<_>> = match RecordStream::new("fuzz input", reader) {
        Ok(stream) => stream.map(Result::ok).collect(),
        Err(_) => None,
    };
    let Ok(whole) = parse_bytes("fuzz input", document) else {
        return;
    };
    let streamed = streamed.expect("the stream reads a document the whole reader reads");
    let streamed_ids: Vec<Option<&str>> = streamed
        .iter()
        .map(|record| record.as_ref().ok().map(|node| node.id.as_str()))
        .collect();
    let whole_ids: Vec<Option<&str>> = whole
        .records
        .iter()
        .map(|record| record.as_ref().ok().map(|node| node.id.as_str()))
        .collect();
    assert_eq!(
        streamed_ids, whole_ids,
        "the stream and the whole reader disagree on the records"
    );
    for (streamed, whole) in streamed.iter().zip(&whole.records) {
        if let (Ok(streamed), Ok(whole)) = (streamed, whole) {
            assert_eq!(streamed, whole, "record {:?} read two ways", whole.id);
        }
    }
});
