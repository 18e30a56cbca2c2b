//! Sync with ARK's own services. ARK's Python federation service is only pulled from
//! (`sync_python`). An ARK Node.js peer speaks only ARK's unsigned protocol: pull
//! `GET /federation/nodes`, push `POST /federation/sync {nodes}` page by page of our
//! changes after `push_seq`, with plain JSON bodies as ARK sends them.
//!
//! ARK keeps ten columns of a row it receives and sets the rest itself (usage 0, rate
//! 1.0, timestamps at receipt), and answers every row on every pull. So a pulled row
//! is taken only when it changed at ARK since the last pull from that peer (a digest
//! per id is kept), and only when it differs from ours in what ARK can hold; what ARK
//! cannot hold is kept from ours. Our echo never replaces our record, and a row that
//! loses to ours is logged as a conflict once, not on every sync.

use std::collections::BTreeMap;

use miniserde::json::{self, Array, Value};
use sha2::{Digest, Sha256};

use super::client::{SyncError, object_value};
use super::peer::PeerState;
use super::{PeerSyncResult, Syncer};
use crate::config::{SYNC_BATCH_BYTES, SYNC_BATCH_RECORDS};
use crate::protocol::{
    DeltaAnswer, DeltaRequest, NodeList, ReceiveResult, Route, ark_columns, ark_row,
    keep_what_ark_cannot_hold, legacy_origin, legacy_record, parse_object,
};
use crate::store::{Body, RemoteRecord, StoreError};

/// The peer-table key of the row digests last pulled from an ARK peer.
fn seen_key(url: &str) -> String {
    format!("~ark-rows:{url}")
}

/// The peer-table key of the hashes ARK's Python service gave us.
fn hashes_key(url: &str) -> String {
    format!("~python-hashes:{url}")
}

/// Every peer-table key this module keeps for `url`, removed with the peer.
pub(super) fn peer_keys(url: &str) -> [String; 2] {
    [seen_key(url), hashes_key(url)]
}

/// A digest of what ARK holds of a row: 64 bits of SHA-256, as hex.
fn digest(columns: &str) -> String {
    let hash = Sha256::digest(columns.as_bytes());
    crate::model::hex(&hash[..8])
}

impl Syncer {
    pub(super) async fn sync_legacy(
        &self,
        url: &str,
        peer_id: &str,
        state: &mut PeerState,
        result: &mut PeerSyncResult,
    ) -> Result<(), SyncError> {
        let origin = legacy_origin(peer_id);
        let answer = self
            .fetch(self.get(&Route::Nodes.url(url)), "node list")
            .await?;
        let list = NodeList::from_json(&answer, &format!("node list from {url}"))?;
        let mut seen = self.ark_rows_seen(url)?;
        let seen_before = seen.clone();
        let mut records = Vec::new();
        for (index, row) in list.nodes.iter().enumerate() {
            match legacy_record(row, origin) {
                Ok(mut record) => {
                    if self.is_ark_echo(&mut record, &mut seen)? {
                        result.nodes_unchanged += 1;
                    } else {
                        records.push(record);
                    }
                }
                Err(error) => result
                    .rejected
                    .push(format!("node {} from {url}: {error}", index + 1)),
            }
        }
        for batch in records.chunks(SYNC_BATCH_RECORDS) {
            let outcome = self.apply(batch, None, &[])?;
            result.count_applied(&outcome);
        }
        // After the apply: a row whose apply failed is looked at again next time.
        if seen != seen_before {
            self.save_ark_rows_seen(url, &seen)?;
        }
        // Push what changed here since the last push, except what came from that peer.
        // The cursor is our change sequence, not `updated_at`: a record can arrive here
        // (an import, a sync with another instance) with an `updated_at` older than
        // what was already pushed. ARK's rows cannot carry deletes; tombstones stay.
        loop {
            let page = self.store.borrow().changes_since(
                state.push_seq,
                SYNC_BATCH_RECORDS,
                SYNC_BATCH_BYTES,
            )?;
            if page.records.is_empty() {
                break;
            }
            let mut rows = Array::new();
            let mut newest = state.legacy_pushed_until;
            for record in &page.records {
                if let Body::Live(node) = &record.body {
                    if record.meta.version.origin != origin {
                        newest = newest.max(record.meta.updated_at.unwrap_or(0));
                        rows.push(ark_row(node));
                    }
                }
            }
            let sent = rows.len() as u64;
            if sent > 0 {
                let body = object_value([
                    ("instanceId", Value::String(self.instance_id.to_hex())),
                    ("nodes", Value::Array(rows)),
                ]);
                let answer = self
                    .fetch(
                        self.post_json_plain(Route::ArkSync.url(url), body),
                        "sync answer",
                    )
                    .await?;
                ReceiveResult::from_json(&answer, &format!("sync answer from {url}"))?;
            }
            result.nodes_sent += sent;
            state.push_seq = page.last_seq;
            state.legacy_pushed_until = newest;
            self.save_states(vec![(url.to_owned(), state.encode())], true)?;
            if !page.more {
                break;
            }
        }
        Ok(())
    }

    /// Whether a pulled ARK row brings nothing: unchanged at ARK since the last pull,
    /// or the same as ours in ARK's ten columns (our own echo). A row that does bring a
    /// change gets what ARK cannot hold from our copy. Notes the row's digest in `seen`.
    fn is_ark_echo(
        &self,
        record: &mut RemoteRecord,
        seen: &mut BTreeMap<String, String>,
    ) -> Result<bool, StoreError> {
        let Body::Live(theirs) = &mut record.body else {
            return Ok(false);
        };
        let columns = ark_columns(theirs);
        let digest = digest(&columns);
        if seen.get(&record.id) == Some(&digest) {
            return Ok(true);
        }
        seen.insert(record.id.clone(), digest);
        let local = self.store.borrow().get(&record.id)?;
        if let Some(ours) = local.as_ref().and_then(|local| local.node()) {
            if ark_columns(ours) == columns {
                return Ok(true);
            }
            keep_what_ark_cannot_hold(theirs, ours);
        }
        Ok(false)
    }

    fn ark_rows_seen(&self, url: &str) -> Result<BTreeMap<String, String>, StoreError> {
        self.load_text_map(&seen_key(url))
    }

    fn save_ark_rows_seen(
        &self,
        url: &str,
        seen: &BTreeMap<String, String>,
    ) -> Result<(), StoreError> {
        self.save_text_map(&seen_key(url), seen)
    }

    /// A map of text kept in the peer table under `key`.
    fn load_text_map(&self, key: &str) -> Result<BTreeMap<String, String>, StoreError> {
        let Some(bytes) = self.load_state(key)? else {
            return Ok(BTreeMap::new());
        };
        // A damaged entry costs one full look at every row, nothing else.
        let Ok(object) = parse_object(&bytes, key) else {
            return Ok(BTreeMap::new());
        };
        Ok(object
            .iter()
            .filter_map(|(id, digest)| match digest {
                Value::String(digest) => Some((id.clone(), digest.clone())),
                _ => None,
            })
            .collect())
    }

    fn save_text_map(&self, key: &str, map: &BTreeMap<String, String>) -> Result<(), StoreError> {
        let object: miniserde::json::Object = map
            .iter()
            .map(|(id, digest)| (id.clone(), Value::String(digest.clone())))
            .collect();
        let bytes = json::to_string(&Value::Object(object)).into_bytes();
        self.save_states(vec![(key.to_owned(), bytes)], true)
    }

    /// Pulls from ARK's Python federation service, which has no `/federation/info` and
    /// takes no records: `POST /sync {manifest_hash, nodes: [{id, hash}]}` with the
    /// hashes it gave us last time answers the nodes that changed since, as records
    /// versioned by their `updated_at` (ARK's order). Its hashes are opaque to us.
    pub(super) async fn sync_python(
        &self,
        url: &str,
        result: &mut PeerSyncResult,
    ) -> Result<(), SyncError> {
        let hashes_key = hashes_key(url);
        let mut hashes = self.load_text_map(&hashes_key)?;
        let body = DeltaRequest {
            manifest_hash: None,
            nodes: hashes
                .iter()
                .map(|(id, hash)| (id.clone(), hash.clone()))
                .collect(),
        }
        .to_json();
        let answer = self
            .fetch(
                self.post_json_plain(Route::PythonSync.url(url), body),
                "delta from the Python service",
            )
            .await?;
        let context = format!("delta from {url}");
        let delta = DeltaAnswer::from_json(&answer, &context)?;
        let origin = legacy_origin(url);
        let mut records = Vec::new();
        for (index, node) in delta.nodes.iter().enumerate() {
            match legacy_record(node, origin) {
                Ok(record) => {
                    if let Value::Object(fields) = node {
                        if let Some(Value::String(hash)) = fields.get("hash") {
                            hashes.insert(record.id.clone(), hash.clone());
                        }
                    }
                    records.push(record);
                }
                Err(error) => result
                    .rejected
                    .push(format!("node {} from {url}: {error}", index + 1)),
            }
        }
        for batch in records.chunks(SYNC_BATCH_RECORDS) {
            let outcome = self.apply(batch, None, &[])?;
            result.count_applied(&outcome);
        }
        self.save_text_map(&hashes_key, &hashes)?;
        Ok(())
    }
}
