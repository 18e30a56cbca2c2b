//! A sync with an ARK Node.js peer, which speaks only ARK's unsigned protocol: pull
//! `GET /federation/nodes`, then push `POST /federation/sync {nodes}` page by page of our
//! changes after `push_seq`, with plain JSON bodies as ARK sends them.
//!
//! ARK keeps ten columns of a row it receives and sets the rest itself (usage 0, rate
//! 1.0, timestamps at receipt), and answers every row on every pull. So a pulled row
//! is taken only when it changed at ARK since the last pull from that peer (a digest
//! per id is kept), and only when it differs from ours in what ARK can hold; what ARK
//! cannot hold is kept from ours. Our echo never replaces our record, and a row that
//! loses to ours is offered to the store once, so it is logged as a conflict once, not
//! on every sync.
//!
//! # Implementation
//!
//! [`ArkSync`] goes `Ready` → `Listing` (the node list request is out) → `Comparing`
//! (the rows that changed at ARK are compared with ours, which the caller reads, and
//! applied) → `ReadChanges` (the caller reads a page of our changes) → `Sending` (a
//! page of rows is out) → `Saving` (the caller saves the moved checkpoint) →
//! `ReadChanges` again while more follows, else `Done`. An error from the peer or the
//! link ends it in `Failed` with the push checkpoint of the last page saved.

use std::collections::BTreeMap;

use miniserde::json::{Array, Object, Value};
use sha2::{Digest, Sha256};

use crate::config::{SYNC_BATCH_BYTES, SYNC_BATCH_RECORDS};
use crate::model::{InstanceId, Node};
use crate::protocol::{
    NodeList, ReceiveResult, Route, ark_columns, ark_row, keep_what_ark_cannot_hold, legacy_origin,
    legacy_record,
};
use crate::store::{Body, ChangePage, RemoteRecord, TypeFilter};

use super::super::client::{PeerSyncResult, SyncError, object_value};
use super::super::peer::PeerState;
use super::push::ChangesRead;
use super::text_map::{read_text_map, text_map_bytes};

/// The peer-table key of the row digests last pulled from the ARK peer at `url`.
pub(in crate::sync) fn seen_key(url: &str) -> String {
    format!("~ark-rows:{url}")
}

/// A digest of what ARK holds of a row: 64 bits of SHA-256, as hex.
fn digest(columns: &str) -> String {
    let hash = Sha256::digest(columns.as_bytes());
    crate::model::hex(&hash[..8])
}

/// Where an [`ArkSync`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::sync) enum ArkPhase {
    /// The node list may be asked for.
    Ready,
    /// The request for the node list is out.
    Listing,
    /// The rows that changed at ARK are compared with ours and applied.
    Comparing,
    /// A page of our changes may be read.
    ReadChanges,
    /// A page of rows is out.
    Sending,
    /// The push checkpoint moved and is to be saved; `more` pages follow.
    Saving {
        more: bool,
    },
    Done,
    /// The peer or the link failed; the push checkpoint is the last saved page's.
    Failed,
}

/// The page of our changes under way.
#[derive(Debug, Default)]
struct SendingPage {
    last_seq: u64,
    more: bool,
    /// The newest `updated_at` pushed to the peer with this page.
    newest: u64,
    rows: u64,
}

/// A sync with one ARK Node.js peer: its rows pulled, then our changes pushed.
#[derive(Debug)]
pub(in crate::sync) struct ArkSync<'s> {
    url: &'s str,
    /// The origin standing for the peer, whose versions its rows carry.
    origin: InstanceId,
    /// Our instance id (hex), which the pushed pages name.
    our_id: String,
    state: &'s mut PeerState,
    /// The digest of each row as last pulled, by id.
    seen: BTreeMap<String, String>,
    seen_changed: bool,
    page: SendingPage,
    phase: ArkPhase,
}

impl<'s> ArkSync<'s> {
    /// A sync with the peer at `url` whose info named it `peer_id`; `seen` is what the
    /// peer table holds under [`seen_key`].
    pub(crate) fn new(
        url: &'s str,
        peer_id: &str,
        our_id: String,
        state: &'s mut PeerState,
        seen: Option<&[u8]>,
    ) -> ArkSync<'s> {
        ArkSync {
            url,
            origin: legacy_origin(peer_id),
            our_id,
            state,
            seen: read_text_map(seen, &seen_key(url)),
            seen_changed: false,
            page: SendingPage::default(),
            phase: ArkPhase::Ready,
        }
    }

    #[cfg(test)]
    pub(crate) fn phase(&self) -> ArkPhase {
        self.phase
    }

    /// The URL of the node list to ask for, once.
    pub(crate) fn list_request(&mut self) -> Option<String> {
        if self.phase != ArkPhase::Ready {
            return None;
        }
        self.phase = ArkPhase::Listing;
        Some(Route::Nodes.url(self.url))
    }

    /// Takes the peer's node list and returns the rows that changed at ARK since the
    /// last pull, which the caller compares with ours ([`ArkSync::compare`]). Rows
    /// unchanged since are counted as unchanged, rows that are no node as rejected.
    pub(crate) fn on_list(
        &mut self,
        answer: &Object,
        result: &mut PeerSyncResult,
    ) -> Result<Vec<RemoteRecord>, SyncError> {
        if self.phase != ArkPhase::Listing {
            return Err(self.out_of_order("a node list"));
        }
        let list = match NodeList::from_json(answer, &format!("node list from {}", self.url)) {
            Ok(list) => list,
            Err(error) => return Err(self.on_failure(error.into())),
        };
        let mut changed = Vec::new();
        for (_, record) in read_rows(&list.nodes, self.origin, self.url, result) {
            if self.seen_unchanged(&record) {
                result.nodes_unchanged += 1;
            } else {
                changed.push(record);
            }
        }
        self.phase = ArkPhase::Comparing;
        Ok(changed)
    }

    /// Whether `record` is the row pulled last time, unchanged at ARK; else notes its
    /// digest.
    fn seen_unchanged(&mut self, record: &RemoteRecord) -> bool {
        let Body::Live(theirs) = &record.body else {
            return false;
        };
        let digest = digest(&ark_columns(theirs));
        if self.seen.get(&record.id) == Some(&digest) {
            return true;
        }
        self.seen.insert(record.id.clone(), digest);
        self.seen_changed = true;
        false
    }

    /// Compares a row that changed at ARK with our copy `ours`: the record to apply,
    /// with what ARK cannot hold taken from ours, or `None` when it is the same as ours
    /// in ARK's ten columns (our own echo, counted as unchanged).
    pub(crate) fn compare(
        &self,
        mut record: RemoteRecord,
        ours: Option<&Node>,
        result: &mut PeerSyncResult,
    ) -> Option<RemoteRecord> {
        if let (Body::Live(theirs), Some(ours)) = (&mut record.body, ours) {
            if ark_columns(ours) == ark_columns(theirs) {
                result.nodes_unchanged += 1;
                return None;
            }
            keep_what_ark_cannot_hold(theirs, ours);
        }
        Some(record)
    }

    /// The pulled rows were applied: the row digests to save (key and bytes) when they
    /// changed, then the push. Saved after the apply, so a row whose apply failed is
    /// looked at again next time.
    pub(crate) fn on_pulled(&mut self) -> Option<(String, Vec<u8>)> {
        if self.phase != ArkPhase::Comparing {
            return None;
        }
        self.phase = ArkPhase::ReadChanges;
        self.seen_changed
            .then(|| (seen_key(self.url), text_map_bytes(&self.seen)))
    }

    /// The next page of our changes to read, or `None` when there is none to read.
    pub(crate) fn next_read(&self) -> Option<ChangesRead> {
        // The cursor is our change sequence, not `updated_at`: a record can arrive here
        // (an import, a sync with another instance) with an `updated_at` older than
        // what was already pushed.
        (self.phase == ArkPhase::ReadChanges).then(|| ChangesRead {
            after: self.state.push_seq,
            limit: SYNC_BATCH_RECORDS,
            max_bytes: SYNC_BATCH_BYTES,
            filter: TypeFilter::all(),
        })
    }

    /// Takes the page read; returns the body to post to the peer, or `None` when there
    /// is nothing to send (then the phase is `Saving` or `Done`). What came from the
    /// peer is not sent back, and tombstones stay here: ARK's rows cannot carry deletes.
    pub(crate) fn on_changes(
        &mut self,
        page: ChangePage,
        result: &mut PeerSyncResult,
    ) -> Option<Value> {
        if self.phase != ArkPhase::ReadChanges {
            return None;
        }
        if page.records.is_empty() {
            self.phase = ArkPhase::Done;
            return None;
        }
        let mut rows = Array::new();
        let mut newest = self.state.legacy_pushed_until;
        for record in &page.records {
            if let Body::Live(node) = &record.body {
                if record.meta.version.origin != self.origin {
                    newest = newest.max(record.meta.updated_at.unwrap_or(0));
                    rows.push(ark_row(node));
                }
            }
        }
        self.page = SendingPage {
            last_seq: page.last_seq,
            more: page.more,
            newest,
            rows: rows.len() as u64,
        };
        if rows.is_empty() {
            self.page_done(result);
            return None;
        }
        self.phase = ArkPhase::Sending;
        Some(object_value([
            ("instanceId", Value::String(self.our_id.clone())),
            ("nodes", Value::Array(rows)),
        ]))
    }

    /// Takes the peer's answer to the page sent (ARK's `receiveNodes` result).
    pub(crate) fn on_answer(
        &mut self,
        answer: &Object,
        result: &mut PeerSyncResult,
    ) -> Result<(), SyncError> {
        if self.phase != ArkPhase::Sending {
            return Err(self.out_of_order("a sync answer"));
        }
        let context = format!("sync answer from {}", self.url);
        if let Err(error) = ReceiveResult::from_json(answer, &context) {
            return Err(self.on_failure(error.into()));
        }
        self.page_done(result);
        Ok(())
    }

    fn page_done(&mut self, result: &mut PeerSyncResult) {
        result.nodes_sent += self.page.rows;
        self.state.push_seq = self.page.last_seq;
        self.state.legacy_pushed_until = self.page.newest;
        self.phase = ArkPhase::Saving {
            more: self.page.more,
        };
    }

    /// In `Saving`: the peer state to save, with the push checkpoint moved.
    pub(crate) fn to_save(&self) -> Option<&PeerState> {
        matches!(self.phase, ArkPhase::Saving { .. }).then_some(&*self.state)
    }

    /// The caller saved [`ArkSync::to_save`]: read the next page, or stop.
    pub(crate) fn on_saved(&mut self) {
        if let ArkPhase::Saving { more } = self.phase {
            self.phase = if more {
                ArkPhase::ReadChanges
            } else {
                ArkPhase::Done
            };
        }
    }

    /// Takes a failed request or store call: the sync ends with the push checkpoint
    /// last saved.
    pub(crate) fn on_failure(&mut self, error: SyncError) -> SyncError {
        self.phase = ArkPhase::Failed;
        error
    }

    fn out_of_order(&mut self, answer: &'static str) -> SyncError {
        let error = SyncError::out_of_turn(self.url, answer, "ARK sync", self.phase);
        self.on_failure(error)
    }
}

/// The rows of an ARK answer (a node list, the Python service's delta) read as records
/// from `origin`, each with its row; a row that is no node is left out and reported in
/// `result` by its place.
pub(super) fn read_rows<'r>(
    rows: &'r [Value],
    origin: InstanceId,
    url: &str,
    result: &mut PeerSyncResult,
) -> Vec<(&'r Value, RemoteRecord)> {
    let mut read = Vec::with_capacity(rows.len());
    for (index, row) in rows.iter().enumerate() {
        match legacy_record(row, origin) {
            Ok(record) => read.push((row, record)),
            Err(error) => result
                .rejected
                .push(format!("node {} from {url}: {error}", index + 1)),
        }
    }
    read
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::ClientError;
    use crate::model::{ContentHash, Hlc, Version};
    use crate::protocol::WireError;
    use crate::store::{Record, RecordMeta};
    use crate::sync::FailureKind;
    use crate::sync::core::pull::tests::broken_field;
    use miniserde::json;

    const URL: &str = "http://ark.test:3000";
    const PEER_ID: &str = "ark-node-7";

    fn ours() -> String {
        "11".repeat(32)
    }

    fn state() -> PeerState {
        PeerState {
            push_seq: 3,
            legacy_pushed_until: 500,
            ..PeerState::new(URL, 0)
        }
    }

    fn object(text: &str) -> Object {
        json::from_str(text).unwrap()
    }

    fn node(text: &str) -> Node {
        Node::from_json(&json::from_str::<Value>(text).unwrap()).unwrap()
    }

    /// Our copy of `a`: what ARK cannot hold (counters, priority, an unknown field) set.
    fn our_a() -> Node {
        node(
            r#"{"id":"a","type":"t","value":"v","capabilities":["x"],"usage_count":7,"success_rate":0.25,"priority":3,"stars":5,"updated_at":"2024-01-02 00:00:00"}"#,
        )
    }

    /// ARK's row `a` after it stored ours: ten columns, its defaults, receipt times.
    const ECHO_OF_A: &str = r#"{"id":"a","type":"t","value":"v","language":null,"capabilities":"[\"x\"]","usage_count":0,"success_rate":1.0,"created_at":"2026-12-05 10:00:00","updated_at":"2026-12-05 10:00:00"}"#;
    /// ARK's row `b`, edited at ARK.
    const CHANGED_B: &str = r#"{"id":"b","type":"t","value":"changed at ARK","usage_count":0,"success_rate":1.0,"updated_at":"2023-06-01 00:00:00"}"#;
    /// ARK's row `c`, which we do not have.
    const NEW_C: &str = r#"{"id":"c","type":"t","value":"new","updated_at":"2026-12-05 11:00:00"}"#;

    fn list(rows: &[&str]) -> Object {
        object(&format!(
            r#"{{"instanceId":"{PEER_ID}","count":{},"nodes":[{}]}}"#,
            rows.len(),
            rows.join(",")
        ))
    }

    /// A machine that asked for the node list.
    fn listing<'s>(state: &'s mut PeerState, seen: Option<&[u8]>) -> ArkSync<'s> {
        let mut machine = ArkSync::new(URL, PEER_ID, ours(), state, seen);
        machine.list_request().unwrap();
        machine
    }

    /// Runs a pull with our copies `ours`: the records to apply and the digests to save.
    fn pull(
        seen: Option<&[u8]>,
        answer: &Object,
        ours: &[Node],
        result: &mut PeerSyncResult,
    ) -> (Vec<RemoteRecord>, Option<(String, Vec<u8>)>) {
        let mut state = state();
        let mut machine = listing(&mut state, seen);
        let mut records = Vec::new();
        for record in machine.on_list(answer, result).unwrap() {
            assert_eq!(machine.phase(), ArkPhase::Comparing);
            let our_copy = ours.iter().find(|node| node.id == record.id);
            records.extend(machine.compare(record, our_copy, result));
        }
        let saved = machine.on_pulled();
        assert_eq!(machine.phase(), ArkPhase::ReadChanges);
        (records, saved)
    }

    fn ids(records: &[RemoteRecord]) -> Vec<&str> {
        records.iter().map(|record| record.id.as_str()).collect()
    }

    #[test]
    fn ready_asks_for_the_node_list_once() {
        let mut state = state();
        let mut machine = ArkSync::new(URL, PEER_ID, ours(), &mut state, None);
        assert_eq!(machine.phase(), ArkPhase::Ready);
        assert_eq!(machine.next_read(), None, "no push before the pull");
        assert_eq!(
            machine.list_request().as_deref(),
            Some("http://ark.test:3000/federation/nodes")
        );
        assert_eq!(machine.phase(), ArkPhase::Listing);
        assert_eq!(machine.list_request(), None);
    }

    #[test]
    fn arks_echo_of_our_rows_is_unchanged_and_a_change_keeps_what_ark_cannot_hold() {
        let mut our_b = our_a();
        our_b.id = "b".into();
        let mut result = PeerSyncResult::default();
        let answer = list(&[ECHO_OF_A, CHANGED_B, NEW_C]);
        let (records, saved) = pull(None, &answer, &[our_a(), our_b], &mut result);
        assert_eq!(ids(&records), ["b", "c"]);
        assert_eq!(result.nodes_unchanged, 1, "our echo of a");
        let Body::Live(b) = &records[0].body else {
            panic!("b is live")
        };
        assert_eq!(b.value, "changed at ARK");
        assert_eq!((b.usage_count, b.priority), (Some(7), Some(3)));
        assert!(b.extra.contains_key("stars"));
        // Versioned by ARK's `updated_at`, from the origin standing for the peer.
        assert_eq!(records[1].version.origin, legacy_origin(PEER_ID));
        assert!(records[1].version.hlc > records[0].version.hlc);
        let (key, bytes) = saved.unwrap();
        assert_eq!(key, "~ark-rows:http://ark.test:3000");
        let seen = read_text_map(Some(&bytes), &key);
        assert_eq!(seen.keys().collect::<Vec<_>>(), ["a", "b", "c"]);
    }

    #[test]
    fn a_row_that_loses_to_ours_is_offered_to_the_store_once() {
        // Our `b` is newer than ARK's edit of it: the store keeps ours and logs the
        // conflict. ARK answers the same row on every pull; it is not offered again.
        let mut our_b = our_a();
        our_b.id = "b".into();
        let answer = list(&[ECHO_OF_A, CHANGED_B]);
        let mut first = PeerSyncResult::default();
        let (records, saved) = pull(None, &answer, &[our_a(), our_b.clone()], &mut first);
        assert_eq!(ids(&records), ["b"]);
        let (_, seen) = saved.unwrap();
        let mut again = PeerSyncResult::default();
        let (records, saved) = pull(Some(&seen), &answer, &[our_a(), our_b], &mut again);
        assert!(records.is_empty());
        assert_eq!(again.nodes_unchanged, 2);
        assert_eq!(saved, None, "nothing new to save");
        // Once it changes at ARK again, it is looked at again.
        let edited = CHANGED_B.replace("changed at ARK", "changed again");
        let mut third = PeerSyncResult::default();
        let (records, saved) = pull(Some(&seen), &list(&[ECHO_OF_A, &edited]), &[], &mut third);
        assert_eq!(ids(&records), ["b"]);
        assert!(saved.is_some());
        // Damaged digests cost one full look at every row, nothing else.
        let mut damaged = PeerSyncResult::default();
        let (records, _) = pull(Some(b"{\"a\":"), &answer, &[], &mut damaged);
        assert_eq!(ids(&records), ["a", "b"]);
    }

    #[test]
    fn an_empty_peer_brings_nothing_and_a_page_of_nothing_ends_the_push() {
        let mut result = PeerSyncResult::default();
        let (records, saved) = pull(None, &list(&[]), &[], &mut result);
        assert!(records.is_empty() && saved.is_none());
        // Nothing changed here either: done, nothing saved.
        let mut state = state();
        let mut machine = pushing(&mut state);
        let read = machine.next_read().unwrap();
        assert_eq!((read.after, read.limit), (3, SYNC_BATCH_RECORDS));
        assert!(read.filter.is_all());
        assert!(
            machine
                .on_changes(changes(vec![], 3, false), &mut result)
                .is_none()
        );
        assert_eq!(machine.phase(), ArkPhase::Done);
        assert!(machine.to_save().is_none() && machine.next_read().is_none());
        assert_eq!(result, PeerSyncResult::default());
    }

    #[test]
    fn a_malformed_node_list_names_the_broken_field_and_rows_that_are_no_nodes_are_rejected() {
        for (answer, field) in [
            (r#"{"instanceId":"ark","count":0}"#, "nodes"),
            (r#"{"nodes":"cut"}"#, "nodes"),
            (r#"{"nodes":[],"next":7}"#, "next"),
        ] {
            let mut state = state();
            let mut machine = listing(&mut state, None);
            let error = machine
                .on_list(&object(answer), &mut PeerSyncResult::default())
                .unwrap_err();
            assert_eq!(broken_field(&error), field, "{error}");
            assert_eq!(machine.phase(), ArkPhase::Failed);
            assert!(machine.next_read().is_none() && machine.on_pulled().is_none());
        }
        let mut result = PeerSyncResult::default();
        let answer = list(&[
            NEW_C,
            r#"{"type":"t","value":"no id"}"#,
            "7",
            r#"{"id":"d","type":"t","value":5}"#,
        ]);
        let (records, _) = pull(None, &answer, &[], &mut result);
        assert_eq!(ids(&records), ["c"]);
        assert_eq!(result.rejected.len(), 3, "{:?}", result.rejected);
        assert!(result.rejected[0].starts_with("node 2 from http://ark.test:3000: field `id`"));
        assert!(result.rejected[1].starts_with("node 3 from"));
        assert!(result.rejected[2].starts_with("node 4 from http://ark.test:3000: field `value`"));
    }

    #[test]
    fn a_list_cut_mid_answer_fails_and_nothing_is_pushed() {
        let mut state = state();
        let mut machine = listing(&mut state, None);
        let error = machine.on_failure(SyncError::Unanswered(ClientError::ConnectionLost {
            url: URL.into(),
            detail: "unexpected end of body".into(),
        }));
        assert_eq!(error.kind(), FailureKind::Unreachable);
        assert_eq!(machine.phase(), ArkPhase::Failed);
        assert!(machine.on_pulled().is_none() && machine.next_read().is_none());
        // An answer now is the driver's fault, said as such.
        let error = machine
            .on_list(&list(&[]), &mut PeerSyncResult::default())
            .unwrap_err();
        assert!(
            matches!(
                error,
                SyncError::OutOfTurn {
                    what: "a node list",
                    ..
                }
            ),
            "{error}"
        );
        assert_eq!(state.push_seq, 3);
    }

    /// A machine past the pull, ready to read our changes.
    fn pushing(state: &mut PeerState) -> ArkSync<'_> {
        let mut machine = listing(state, None);
        machine
            .on_list(&list(&[]), &mut PeerSyncResult::default())
            .unwrap();
        machine.on_pulled();
        machine
    }

    /// Our change `seq` of `id` written by `origin` at `updated_at`; live unless `deleted`.
    fn change(id: &str, seq: u64, origin: InstanceId, updated_at: u64, deleted: bool) -> Record {
        let body = if deleted {
            Body::Deleted {
                deleted_at: updated_at,
            }
        } else {
            Body::Live(node(&format!(
                r#"{{"id":"{id}","type":"t","value":"v{seq}"}}"#
            )))
        };
        Record {
            id: id.into(),
            meta: RecordMeta {
                version: Version {
                    hlc: Hlc::from_parts(updated_at, 0),
                    origin,
                },
                base: None,
                seq,
                hash: ContentHash::of(b""),
                updated_at: Some(updated_at),
                signature: None,
            },
            body,
        }
    }

    fn changes(records: Vec<Record>, last_seq: u64, more: bool) -> ChangePage {
        ChangePage {
            records,
            last_seq,
            more,
        }
    }

    fn sent_ids(body: &Value) -> Vec<String> {
        let Value::Object(body) = body else {
            panic!("not an object")
        };
        assert!(matches!(body.get("instanceId"), Some(Value::String(id)) if *id == ours()));
        let Some(Value::Array(rows)) = body.get("nodes") else {
            panic!("no nodes")
        };
        rows.iter()
            .map(|row| match row {
                Value::Object(row) => match row.get("id") {
                    Some(Value::String(id)) => id.clone(),
                    _ => panic!("row without id"),
                },
                _ => panic!("row not an object"),
            })
            .collect()
    }

    #[test]
    fn the_push_pages_to_the_end_leaving_out_the_peers_rows_and_tombstones() {
        let theirs = legacy_origin(PEER_ID);
        let here = InstanceId([0x11; 32]);
        let mut state = state();
        let mut machine = pushing(&mut state);
        let mut result = PeerSyncResult::default();
        machine.next_read().unwrap();
        let first = changes(
            vec![
                change("a", 4, here, 900, false),
                change("b", 5, theirs, 2_000, false),
                change("c", 6, here, 3_000, true),
                change("d", 7, here, 800, false),
            ],
            7,
            true,
        );
        let body = machine.on_changes(first, &mut result).unwrap();
        assert_eq!(sent_ids(&body), ["a", "d"]);
        assert_eq!(machine.phase(), ArkPhase::Sending);
        assert!(
            machine.to_save().is_none(),
            "nothing moves before ARK answers"
        );
        machine
            .on_answer(
                &object(r#"{"imported":2,"conflicts":0,"total":2}"#),
                &mut result,
            )
            .unwrap();
        assert_eq!(machine.phase(), ArkPhase::Saving { more: true });
        let saved = machine.to_save().unwrap();
        assert_eq!((saved.push_seq, saved.legacy_pushed_until), (7, 900));
        machine.on_saved();
        assert_eq!(machine.next_read().map(|read| read.after), Some(7));
        // A page of only the peer's own rows sends nothing; the checkpoint still moves.
        let second = changes(vec![change("e", 8, theirs, 5_000, false)], 8, false);
        assert!(machine.on_changes(second, &mut result).is_none());
        assert_eq!(machine.to_save().map(|state| state.push_seq), Some(8));
        machine.on_saved();
        assert_eq!(machine.phase(), ArkPhase::Done);
        assert_eq!(machine.next_read(), None);
        assert_eq!(result.nodes_sent, 2);
        assert_eq!((state.push_seq, state.legacy_pushed_until), (8, 900));
    }

    #[test]
    fn a_push_cut_mid_answer_or_answered_malformed_keeps_the_last_saved_checkpoint() {
        let here = InstanceId([0x11; 32]);
        let page = || changes(vec![change("a", 4, here, 900, false)], 4, true);
        let mut state = state();
        let mut machine = pushing(&mut state);
        let mut result = PeerSyncResult::default();
        machine.next_read().unwrap();
        machine.on_changes(page(), &mut result).unwrap();
        let error = machine.on_failure(SyncError::Status {
            request: format!("POST {URL}/federation/sync"),
            status: 500,
            detail: "SQLITE_BUSY".into(),
        });
        assert_eq!(error.kind(), FailureKind::PeerFailing);
        assert_eq!(machine.phase(), ArkPhase::Failed);
        assert!(machine.to_save().is_none() && machine.next_read().is_none());
        assert_eq!((state.push_seq, result.nodes_sent), (3, 0));

        // ARK's answer must say how many it imported.
        let mut state = self::state();
        let mut machine = pushing(&mut state);
        machine.next_read().unwrap();
        machine.on_changes(page(), &mut result).unwrap();
        let error = machine
            .on_answer(&object(r#"{"total":1}"#), &mut result)
            .unwrap_err();
        assert!(
            matches!(&error, SyncError::Wire(WireError::MissingField { field, .. }) if field == "imported"),
            "{error}"
        );
        assert_eq!(machine.phase(), ArkPhase::Failed);
        assert_eq!((state.push_seq, result.nodes_sent), (3, 0));

        // An answer with no page out is refused.
        let mut state = self::state();
        let mut machine = pushing(&mut state);
        let error = machine
            .on_answer(&object(r#"{"imported":0}"#), &mut result)
            .unwrap_err();
        assert!(
            matches!(
                error,
                SyncError::OutOfTurn {
                    what: "a sync answer",
                    ..
                }
            ),
            "{error}"
        );
    }
}
