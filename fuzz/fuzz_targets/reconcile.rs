//! A round of the reconcile exchange as the syncing node reads its answer
//! (`protocol::ReconcileAnswer::read`: the `x-ark-*` headers and the negentropy message)
//! and as the serving node reads its request (`protocol::ReconcileRequest::read`: the
//! `types` query parameter and the message). The messages themselves are the
//! `negentropy` target's.
//!
//! Input: `name: value` header lines up to an empty line, then the body; a header named
//! `types` is the request's query parameter. An answer that reads must write headers
//! that read back to the same answer; a request's types must write a query that reads
//! back to the same types.
#![no_main]

use ark_lattice::http::percent_decode;
use ark_lattice::protocol::{ReconcileAnswer, ReconcileRequest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (head, body) = data
        .windows(2)
        .position(|pair| pair == b"\n\n")
        .map_or((data, &[][..]), |at| (&data[..at], &data[at + 2..]));
    let head = String::from_utf8_lossy(head);
    let headers: Vec<(&str, &str)> = head
        .lines()
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim(), value.trim()))
        .collect();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| *value)
    };

    if let Ok(answer) = ReconcileAnswer::read(header, body, "fuzz answer") {
        let written = answer.headers();
        let again = ReconcileAnswer::read(
            |name| {
                written
                    .iter()
                    .find(|(key, _)| key.eq_ignore_ascii_case(name))
                    .map(|(_, value)| value.as_str())
            },
            body,
            "written answer",
        )
        .unwrap_or_else(|error| panic!("our own answer does not read back: {error}"));
        assert_eq!(
            again, answer,
            "an answer changed on a trip through its headers"
        );
    }

    let request = ReconcileRequest::read(header("types"), body);
    let query = request.query();
    let types = query.strip_prefix("?types=").map(percent_decode);
    let again = ReconcileRequest::read(types.as_deref(), body);
    assert_eq!(
        again.types, request.types,
        "a request's types changed on a trip through its query {query:?}"
    );
});
