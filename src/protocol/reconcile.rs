//! The reconcile exchange as both ends see it: a round of set reconciliation
//! (`POST /federation/v2/reconcile`) is a negentropy message one way and one back, the
//! answer saying in its headers whose set it was. The syncing node writes the request
//! and reads the answer; the serving node reads the request and writes the answer, each
//! with this module's types, so a header renamed on one side is renamed on the other.
//!
//! ```text
//! request:  POST /federation/v2/reconcile[?types=T,U]
//!           content-type: application/octet-stream
//!           <negentropy message>
//! answer:   200, content-type: application/octet-stream
//!           x-ark-instance: <hex>   the serving node's instance id
//!           x-ark-epoch: <hex>      its store's epoch
//!           x-ark-last-seq: N       its change sequence when it built the set
//!           <negentropy message>
//! ```
//!
//! The messages stay bytes here: `sync::reconcile` builds and reads them (the only
//! module that knows negentropy), and says what is wrong with one that does not parse.

use super::fields::WireError;
use super::record::{types_from_query, types_to_query};

/// The content type of both messages.
pub const RECONCILE_CONTENT_TYPE: &str = "application/octet-stream";

const INSTANCE: &str = "x-ark-instance";
const EPOCH: &str = "x-ark-epoch";
const LAST_SEQ: &str = "x-ark-last-seq";

/// A round's request: the record types reconciled (none: all) and the message. `M` is
/// the message: owned when written, borrowed from the body when read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconcileRequest<M> {
    pub types: Vec<String>,
    pub message: M,
}

impl<M> ReconcileRequest<M> {
    /// The query the request's URL ends with: `?types=T,U`, or nothing for all types.
    pub fn query(&self) -> String {
        if self.types.is_empty() {
            String::new()
        } else {
            format!("?types={}", types_to_query(&self.types))
        }
    }
}

impl<'b> ReconcileRequest<&'b [u8]> {
    /// Reads a request from its `types` query parameter (percent-decoded) and body.
    /// Any bytes are a request here: whether they are a negentropy message is for the
    /// set that answers it to say.
    pub fn read(types: Option<&str>, body: &'b [u8]) -> ReconcileRequest<&'b [u8]> {
        ReconcileRequest {
            types: types_from_query(types),
            message: body,
        }
    }
}

/// A round's answer: whose set answered, and the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconcileAnswer<M> {
    /// The serving node's instance id, hex.
    pub instance_id: String,
    /// The serving store's epoch, hex: the set of another epoch is another set.
    pub epoch: String,
    /// The serving node's change sequence as of its set: after the rounds, the syncing
    /// node's pull checkpoint (its first answer's).
    pub last_seq: u64,
    pub message: M,
}

impl<M> ReconcileAnswer<M> {
    /// The answer's headers, name and value, besides its content type.
    pub fn headers(&self) -> [(&'static str, String); 3] {
        [
            (INSTANCE, self.instance_id.clone()),
            (EPOCH, self.epoch.clone()),
            (LAST_SEQ, self.last_seq.to_string()),
        ]
    }
}

impl<'b> ReconcileAnswer<&'b [u8]> {
    /// Reads an answer from its headers (`header` looks one up by name) and body;
    /// `what` names it in errors (`reconcile answer from <url>`). A header missing, or
    /// a sequence that is not a whole number, is refused, naming the header.
    pub fn read<'h>(
        header: impl Fn(&str) -> Option<&'h str>,
        body: &'b [u8],
        what: &str,
    ) -> Result<ReconcileAnswer<&'b [u8]>, WireError> {
        let required = |name: &str| header(name).ok_or_else(|| WireError::missing(what, name));
        let last_seq = required(LAST_SEQ)?;
        let last_seq = last_seq.parse::<u64>().map_err(|_| {
            WireError::bad_value(
                what,
                LAST_SEQ,
                format!("{last_seq:?} is not a whole number"),
            )
        })?;
        Ok(ReconcileAnswer {
            instance_id: required(INSTANCE)?.to_owned(),
            epoch: required(EPOCH)?.to_owned(),
            last_seq,
            message: body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WHAT: &str = "reconcile answer from http://peer.test";

    fn answer() -> ReconcileAnswer<Vec<u8>> {
        ReconcileAnswer {
            instance_id: "ab".repeat(32),
            epoch: "cd".repeat(16),
            last_seq: 17,
            message: vec![0x61, 0, 1, 2],
        }
    }

    /// Reads `headers` (pairs as an HTTP message carries them) and `body`, looking
    /// headers up regardless of case as HTTP does.
    fn read<'a>(
        headers: &'a [(&str, String)],
        body: &'a [u8],
    ) -> Result<ReconcileAnswer<&'a [u8]>, WireError> {
        let header = |name: &str| {
            headers
                .iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(name))
                .map(|(_, value)| value.as_str())
        };
        ReconcileAnswer::read(header, body, WHAT)
    }

    #[test]
    fn an_answer_and_a_request_read_back_as_written() {
        let written = answer();
        let headers = written.headers();
        let read_back = read(&headers, &written.message).unwrap();
        assert_eq!(read_back.instance_id, written.instance_id);
        assert_eq!(read_back.epoch, written.epoch);
        assert_eq!(read_back.last_seq, 17);
        assert_eq!(read_back.message, written.message.as_slice());
        // Header names are not case-sensitive on the wire.
        let upper: Vec<(&str, String)> = headers
            .iter()
            .map(|(name, value)| {
                (
                    if *name == EPOCH { "X-Ark-Epoch" } else { *name },
                    value.clone(),
                )
            })
            .collect();
        assert_eq!(read(&upper, b"").unwrap().epoch, written.epoch);

        let request = ReconcileRequest {
            types: vec!["note".to_owned(), "field log".to_owned()],
            message: vec![1u8, 2, 3],
        };
        let query = request.query();
        assert_eq!(query, "?types=note,field%20log");
        let types = crate::http::percent_decode(query.strip_prefix("?types=").unwrap());
        let read_back = ReconcileRequest::read(Some(&types), &request.message);
        assert_eq!(read_back.types, request.types);
        assert_eq!(read_back.message, request.message.as_slice());
        let all = ReconcileRequest {
            types: Vec::new(),
            message: (),
        };
        assert_eq!(all.query(), "");
        assert!(ReconcileRequest::read(None, b"").types.is_empty());
    }

    #[test]
    fn every_broken_header_is_named() {
        let check = |headers: Vec<(&str, String)>, expected: WireError| {
            let error = read(&headers, b"").unwrap_err();
            assert_eq!(error, expected);
            assert!(error.to_string().starts_with(WHAT), "{error}");
        };
        let without = |name: &str| -> Vec<(&str, String)> {
            answer()
                .headers()
                .into_iter()
                .filter(|(key, _)| *key != name)
                .collect()
        };
        for name in [INSTANCE, EPOCH, LAST_SEQ] {
            check(without(name), WireError::missing(WHAT, name));
        }
        for seq in ["three", "-1", "", "18446744073709551616"] {
            let mut headers = without(LAST_SEQ);
            headers.push((LAST_SEQ, seq.to_owned()));
            check(
                headers,
                WireError::bad_value(WHAT, LAST_SEQ, format!("{seq:?} is not a whole number")),
            );
        }
    }
}
