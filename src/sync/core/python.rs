//! A pull from ARK's Python federation service, which has no `/federation/info` and
//! takes no records: `POST /sync {manifest_hash, nodes: [{id, hash}]}` with the hashes
//! it gave us last time answers the nodes that changed since, as records versioned by
//! their `updated_at` (ARK's order). Its hashes are opaque to us: kept as text, sent
//! back as they came.
//!
//! # Implementation
//!
//! [`PythonPull`] goes `Ready` → `Awaiting` (the request is out) → `Applying` (the
//! caller applies the answer's records) → `Done`, with the hashes to keep. An error
//! from the service or the link ends it in `Failed`, and the hashes kept stay as they
//! were, so the next pull asks for the same delta again.

use std::collections::BTreeMap;

use miniserde::json::{Object, Value};

use crate::model::InstanceId;
use crate::protocol::{DeltaAnswer, DeltaRequest, legacy_origin};
use crate::store::RemoteRecord;

use super::super::client::{PeerSyncResult, SyncError};
use super::ark::read_rows;
use super::text_map::{read_text_map, text_map_bytes};

/// The peer-table key of the hashes ARK's Python service at `url` gave us.
pub(in crate::sync) fn hashes_key(url: &str) -> String {
    format!("~python-hashes:{url}")
}

/// Where a [`PythonPull`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::sync) enum PythonPhase {
    /// The delta may be asked for.
    Ready,
    /// The request is out.
    Awaiting,
    /// The answer's records are being applied.
    Applying,
    Done,
    /// The service or the link failed; the hashes kept are unchanged.
    Failed,
}

/// One pull from ARK's Python federation service.
#[derive(Debug)]
pub(in crate::sync) struct PythonPull<'s> {
    url: &'s str,
    /// The origin standing for the service (it has no instance id), from its URL.
    origin: InstanceId,
    /// The hash of each node the service gave us, by id.
    hashes: BTreeMap<String, String>,
    phase: PythonPhase,
}

impl<'s> PythonPull<'s> {
    /// A pull from the service at `url`; `hashes` is what the peer table holds under
    /// [`hashes_key`].
    pub(crate) fn new(url: &'s str, hashes: Option<&[u8]>) -> PythonPull<'s> {
        PythonPull {
            url,
            origin: legacy_origin(url),
            hashes: read_text_map(hashes, &hashes_key(url)),
            phase: PythonPhase::Ready,
        }
    }

    #[cfg(test)]
    pub(crate) fn phase(&self) -> PythonPhase {
        self.phase
    }

    /// The body of the one request: every hash the service gave us.
    pub(crate) fn request(&mut self) -> Option<Value> {
        if self.phase != PythonPhase::Ready {
            return None;
        }
        self.phase = PythonPhase::Awaiting;
        let request = DeltaRequest {
            manifest_hash: None,
            nodes: self
                .hashes
                .iter()
                .map(|(id, hash)| (id.clone(), hash.clone()))
                .collect(),
        };
        Some(request.to_json())
    }

    /// Takes the service's answer and returns its records to apply; a node that is no
    /// record is counted as rejected. The hash of each record is noted, to be kept
    /// once they are applied.
    pub(crate) fn on_delta(
        &mut self,
        answer: &Object,
        result: &mut PeerSyncResult,
    ) -> Result<Vec<RemoteRecord>, SyncError> {
        if self.phase != PythonPhase::Awaiting {
            let error = SyncError::out_of_turn(self.url, "a delta", "Python pull", self.phase);
            return Err(self.on_failure(error));
        }
        let delta = match DeltaAnswer::from_json(answer, &format!("delta from {}", self.url)) {
            Ok(delta) => delta,
            Err(error) => return Err(self.on_failure(error.into())),
        };
        let mut records = Vec::new();
        for (row, record) in read_rows(&delta.nodes, self.origin, self.url, result) {
            if let Value::Object(fields) = row {
                if let Some(Value::String(hash)) = fields.get("hash") {
                    self.hashes.insert(record.id.clone(), hash.clone());
                }
            }
            records.push(record);
        }
        self.phase = PythonPhase::Applying;
        Ok(records)
    }

    /// The records were applied: the hashes to keep (key and bytes) for the next pull.
    pub(crate) fn on_applied(&mut self) -> Option<(String, Vec<u8>)> {
        if self.phase != PythonPhase::Applying {
            return None;
        }
        self.phase = PythonPhase::Done;
        Some((hashes_key(self.url), text_map_bytes(&self.hashes)))
    }

    /// Takes a failed request or store call: nothing is kept.
    pub(crate) fn on_failure(&mut self, error: SyncError) -> SyncError {
        self.phase = PythonPhase::Failed;
        error
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::ClientError;
    use crate::model::Hlc;
    use crate::store::Body;
    use crate::sync::FailureKind;
    use crate::sync::core::pull::tests::broken_field;
    use miniserde::json;

    const URL: &str = "http://hub.test:8000";

    fn object(text: &str) -> Object {
        json::from_str(text).unwrap()
    }

    /// The `(id, hash)` pairs of a request body.
    fn asked(body: &Value) -> Vec<(String, String)> {
        let Value::Object(body) = body else {
            panic!("not an object")
        };
        DeltaRequest::from_json(body, "request").unwrap().nodes
    }

    fn pairs(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(id, hash)| ((*id).to_owned(), (*hash).to_owned()))
            .collect()
    }

    /// A pull that sent its request, from the hashes `kept`.
    fn awaiting(kept: Option<&[u8]>) -> PythonPull<'static> {
        let mut pull = PythonPull::new(URL, kept);
        pull.request().unwrap();
        pull
    }

    #[test]
    fn ready_sends_the_hashes_kept_and_leaves_out_garbage() {
        let kept = br#"{"a":"def456","b":7,"c":"sha256:ff","d":null,"e":{"x":"y"}}"#;
        let mut pull = PythonPull::new(URL, Some(kept));
        assert_eq!(pull.phase(), PythonPhase::Ready);
        let body = pull.request().unwrap();
        assert_eq!(asked(&body), pairs(&[("a", "def456"), ("c", "sha256:ff")]));
        let Value::Object(fields) = &body else {
            panic!("not an object")
        };
        assert!(
            matches!(fields.get("manifest_hash"), Some(Value::String(hash)) if hash.is_empty())
        );
        assert_eq!(pull.phase(), PythonPhase::Awaiting);
        assert!(pull.request().is_none(), "one request");
        // Nothing kept, or kept damaged: the whole delta is asked for.
        for kept in [None, Some(&b"{\"a\":"[..]), Some(&b"[1,2]"[..])] {
            assert!(asked(&PythonPull::new(URL, kept).request().unwrap()).is_empty());
        }
    }

    #[test]
    fn a_delta_is_applied_and_the_hashes_it_gave_are_kept() {
        let mut pull = awaiting(Some(br#"{"a":"old","z":"unknown-to-us"}"#));
        let answer = object(
            r#"{"delta_count":5,"nodes":[
                {"id":"a","type":"t","value":"new a","hash":"h-a","updated_at":"2026-12-05T10:00:00Z"},
                {"id":"d","type":"t","value":"no hash"},
                {"id":"e","type":"t","value":"hash not text","hash":5},
                {"id":"f","type":"t","hash":"h-f"},
                "garbage"
            ]}"#,
        );
        let mut result = PeerSyncResult::default();
        let records = pull.on_delta(&answer, &mut result).unwrap();
        let ids: Vec<&str> = records.iter().map(|record| record.id.as_str()).collect();
        assert_eq!(ids, ["a", "d", "e"]);
        assert!(matches!(&records[0].body, Body::Live(node) if node.value == "new a"));
        // Versioned by `updated_at`, from the origin standing for the service's URL.
        assert_eq!(records[0].version.origin, legacy_origin(URL));
        assert!(records[0].version.hlc > Hlc::from_parts(0, 0));
        assert_eq!(records[1].version.hlc, Hlc::from_parts(0, 0));
        assert_eq!(result.rejected.len(), 2, "{:?}", result.rejected);
        assert!(result.rejected[0].starts_with("node 4 from http://hub.test:8000: field `value`"));
        assert!(result.rejected[1].starts_with("node 5 from http://hub.test:8000:"));
        assert_eq!(pull.phase(), PythonPhase::Applying);
        let (key, bytes) = pull.on_applied().unwrap();
        assert_eq!(key, "~python-hashes:http://hub.test:8000");
        assert_eq!(pull.phase(), PythonPhase::Done);
        assert_eq!(pull.on_applied(), None);
        // What the service gave replaces what was kept; the rest is sent back as it was.
        let mut next = PythonPull::new(URL, Some(&bytes));
        assert_eq!(
            asked(&next.request().unwrap()),
            pairs(&[("a", "h-a"), ("z", "unknown-to-us")])
        );
    }

    #[test]
    fn an_empty_delta_keeps_the_hashes_as_they_were() {
        let kept = br#"{"a":"h-a"}"#;
        let mut pull = awaiting(Some(kept));
        let mut result = PeerSyncResult::default();
        let records = pull
            .on_delta(&object(r#"{"delta_count":0,"nodes":[]}"#), &mut result)
            .unwrap();
        assert!(records.is_empty());
        assert_eq!(result, PeerSyncResult::default());
        let (_, bytes) = pull.on_applied().unwrap();
        assert_eq!(
            read_text_map(Some(&bytes), "kept"),
            read_text_map(Some(kept), "kept")
        );
    }

    #[test]
    fn a_malformed_or_cut_answer_fails_and_keeps_nothing() {
        for (answer, field) in [
            (r#"{"delta_count":1}"#, "nodes"),
            (r#"{"delta_count":1,"nodes":{"id":"a"}}"#, "nodes"),
        ] {
            let mut pull = awaiting(None);
            let error = pull
                .on_delta(&object(answer), &mut PeerSyncResult::default())
                .unwrap_err();
            assert_eq!(broken_field(&error), field, "{error}");
            assert_eq!(pull.phase(), PythonPhase::Failed);
            assert_eq!(pull.on_applied(), None);
        }
        let mut pull = awaiting(None);
        let error = pull.on_failure(SyncError::Unanswered(ClientError::ConnectionLost {
            url: URL.into(),
            detail: "unexpected end of body".into(),
        }));
        assert_eq!(error.kind(), FailureKind::Unreachable);
        assert_eq!(pull.phase(), PythonPhase::Failed);
        assert_eq!(pull.on_applied(), None);
        // A delta nobody asked for is the driver's fault, said as such.
        let mut pull = PythonPull::new(URL, None);
        let error = pull
            .on_delta(&object(r#"{"nodes":[]}"#), &mut PeerSyncResult::default())
            .unwrap_err();
        assert!(
            matches!(
                error,
                SyncError::OutOfTurn {
                    what: "a delta",
                    ..
                }
            ),
            "{error}"
        );
        assert_eq!(pull.phase(), PythonPhase::Failed);
    }
}
