//! The push half of the steady state: our changes after the push checkpoint, page by
//! page, offered as ids and versions; what the peer wants is pushed, highest priority
//! first, in bodies every peer accepts; the checkpoint moves once the peer answered.
//!
//! # Implementation
//!
//! [`PushFeed`] goes `ReadChanges` (the caller reads a page of our changes from the
//! store) → `Offering` (an offer is out) → `Pushing` (one push body out at a time) →
//! `Saving` (the caller saves the moved checkpoint) → `ReadChanges` again while more
//! follows, else `Done`. Records just pulled from the peer, and after a first copy the
//! records the copy wrote, are never offered. A push answer that says nothing of the
//! peer's changed between our pull checkpoint and our records moves the pull
//! checkpoint past them, so they do not come back on the next pull.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use miniserde::json::{Object, Value};

use crate::config::MAX_RECORD_WIRE_BYTES;
use crate::config::SYNC_BATCH_BYTES;
use crate::model::Version;
use crate::protocol::{Offer, OfferAnswer, OfferedRecord, PushAnswer};
use crate::store::{ChangePage, Record, RemoteRecord, TypeFilter};

use super::super::client::{PeerSyncResult, SyncError};
use super::super::peer::PeerState;
use super::super::{by_priority, wire_size};
use super::copy::CopyProgress;

/// The versions pulled from one peer during one sync, so they are not offered back.
#[derive(Debug, Default)]
pub(in crate::sync) struct PulledVersions {
    versions: BTreeMap<String, Version>,
}

impl PulledVersions {
    pub fn note(&mut self, record: &RemoteRecord) {
        self.versions.insert(record.id.clone(), record.version);
    }

    pub fn contains(&self, id: &str, version: &Version) -> bool {
        self.versions.get(id) == Some(version)
    }

    /// Whether a version newer than `version` of `id` came from the peer.
    pub(crate) fn has_newer(&self, id: &str, version: &Version) -> bool {
        self.versions.get(id).is_some_and(|pulled| pulled > version)
    }
}

/// Where a [`PushFeed`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::sync) enum PushPhase {
    /// A page of our changes may be read.
    ReadChanges,
    /// An offer is out.
    Offering,
    /// Push bodies are going out, one at a time.
    Pushing,
    /// The checkpoint moved and is to be saved; `more` pages follow; `page` says a page
    /// was offered (not only skipped past after a first copy).
    Saving {
        more: bool,
        page: bool,
    },
    Done,
    /// The peer or the link failed; the checkpoint is the last saved page's.
    Failed,
}

/// A page of our changes to read from the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(in crate::sync) struct ChangesRead {
    pub after: u64,
    pub limit: usize,
    pub max_bytes: usize,
    pub filter: TypeFilter,
}

/// The steady-state push of our changes to one peer.
#[derive(Debug)]
pub(in crate::sync) struct PushFeed<'s> {
    url: &'s str,
    /// Our instance id (hex), which offers and pushes name.
    our_id: String,
    state: &'s mut PeerState,
    pulled: &'s PulledVersions,
    /// After a first copy: the copy, whose records are not offered.
    copied: Option<CopyProgress>,
    /// The page under way: where it ends, whether more follows, what it offered.
    page_last_seq: u64,
    page_more: bool,
    offered: Vec<Record>,
    batches: VecDeque<Vec<Record>>,
    sent: usize,
    phase: PushPhase,
}

impl<'s> PushFeed<'s> {
    pub fn new(
        url: &'s str,
        our_id: String,
        state: &'s mut PeerState,
        pulled: &'s PulledVersions,
    ) -> PushFeed<'s> {
        PushFeed {
            url,
            our_id,
            state,
            pulled,
            copied: None,
            page_last_seq: 0,
            page_more: false,
            offered: Vec::new(),
            batches: VecDeque::new(),
            sent: 0,
            phase: PushPhase::ReadChanges,
        }
    }

    #[cfg(test)]
    pub(crate) fn phase(&self) -> PushPhase {
        self.phase
    }

    /// The next page of our changes to read, or `None` when there is none to read.
    pub(crate) fn next_read(&mut self) -> Option<ChangesRead> {
        if self.phase != PushPhase::ReadChanges {
            return None;
        }
        // After a first copy, our changes that the copy itself wrote are skipped.
        self.copied = self.state.copy.clone().filter(|copy| copy.done);
        if let Some(copy) = &self.copied {
            self.state.push_seq = copy.skip_from(self.state.push_seq);
        }
        Some(ChangesRead {
            after: self.state.push_seq,
            limit: self.state.batch_records(),
            max_bytes: SYNC_BATCH_BYTES,
            filter: TypeFilter::only(&self.state.types),
        })
    }

    /// Takes the page read; returns the offer to send, or `None` when there is nothing
    /// to offer (then the phase is `Saving` or `Done`).
    pub(crate) fn on_changes(&mut self, page: ChangePage) -> Option<Value> {
        if self.phase != PushPhase::ReadChanges {
            return None;
        }
        if page.last_seq == self.state.push_seq {
            if let Some(copy) = self.copied.take() {
                // The skip moved the checkpoint: keep it, and forget the copy once pushed
                // past it, so this is written once after a copy.
                if copy.pushed_past(self.state.push_seq) {
                    self.state.copy = None;
                }
                self.phase = PushPhase::Saving {
                    more: false,
                    page: false,
                };
            } else {
                self.phase = PushPhase::Done;
            }
            return None;
        }
        self.page_last_seq = page.last_seq;
        self.page_more = page.more;
        self.sent = 0;
        let pulled = self.pulled;
        let copied = &self.copied;
        self.offered = page
            .records
            .into_iter()
            .filter(|record| !pulled.contains(&record.id, &record.meta.version))
            .filter(|record| {
                !copied
                    .as_ref()
                    .is_some_and(|copy| copy.wrote(record.meta.seq))
            })
            .collect();
        if self.offered.is_empty() {
            self.page_done();
            return None;
        }
        let offers = self
            .offered
            .iter()
            .map(|record| OfferedRecord {
                id: record.id.clone(),
                version: record.meta.version.to_wire(),
            })
            .collect();
        self.phase = PushPhase::Offering;
        let offer = Offer {
            instance_id: self.our_id.clone(),
            offers,
        };
        Some(Value::Object(offer.into_object()))
    }

    /// Takes the peer's answer to the offer: what it wants is pushed, highest priority
    /// first ([`PushFeed::next_batch`]); a record too large for any peer is reported in
    /// `result` and not sent.
    pub(crate) fn on_offer_answer(
        &mut self,
        answer: &Object,
        result: &mut PeerSyncResult,
    ) -> Result<(), SyncError> {
        if self.phase != PushPhase::Offering {
            return Err(self.out_of_order("an offer answer"));
        }
        let want: BTreeSet<String> = match OfferAnswer::read(answer) {
            Ok(answer) => answer.want.into_iter().collect(),
            Err(error) => return Err(self.on_failure(error.into())),
        };
        let mut wanted = std::mem::take(&mut self.offered);
        wanted.retain(|record| want.contains(&record.id));
        by_priority(&mut wanted);
        self.sent = wanted.len();
        self.batches = push_batches(self.url, wanted, result).into();
        if self.batches.is_empty() {
            self.page_done();
        } else {
            self.phase = PushPhase::Pushing;
        }
        Ok(())
    }

    /// The records of the next push body, while `Pushing`.
    pub(crate) fn next_batch(&self) -> Option<&[Record]> {
        match self.phase {
            PushPhase::Pushing => self.batches.front().map(Vec::as_slice),
            _ => None,
        }
    }

    /// Takes the peer's answer to the push of [`PushFeed::next_batch`].
    pub(crate) fn on_push_answer(
        &mut self,
        answer: &Object,
        result: &mut PeerSyncResult,
    ) -> Result<(), SyncError> {
        if self.phase != PushPhase::Pushing {
            return Err(self.out_of_order("a push answer"));
        }
        let Some(batch) = self.batches.pop_front() else {
            return Err(self.out_of_order("a push answer"));
        };
        if let Err(error) = apply_push_answer(
            self.url,
            answer,
            batch.len(),
            &mut self.state.pull_seq,
            result,
        ) {
            return Err(self.on_failure(error));
        }
        if self.batches.is_empty() {
            self.page_done();
        }
        Ok(())
    }

    /// Takes a failed request: the push ends with the checkpoint last saved.
    pub(crate) fn on_failure(&mut self, error: SyncError) -> SyncError {
        self.phase = PushPhase::Failed;
        error
    }

    /// In `Saving`: the peer state to save, with the checkpoint moved.
    pub(crate) fn to_save(&self) -> Option<&PeerState> {
        matches!(self.phase, PushPhase::Saving { .. }).then_some(&*self.state)
    }

    /// In `Saving`: the records sent for the page and our sequence it ended at, for the
    /// log (`None` when the checkpoint moved without a page).
    pub fn pushed(&self) -> Option<(usize, u64)> {
        match self.phase {
            PushPhase::Saving { page: true, .. } => Some((self.sent, self.page_last_seq)),
            _ => None,
        }
    }

    /// The caller saved [`PushFeed::state`]: read the next page, or stop.
    pub(crate) fn on_saved(&mut self) {
        if let PushPhase::Saving { more, .. } = self.phase {
            self.phase = if more {
                PushPhase::ReadChanges
            } else {
                PushPhase::Done
            };
        }
    }

    fn page_done(&mut self) {
        self.state.push_seq = self.page_last_seq;
        if self
            .copied
            .as_ref()
            .is_some_and(|copy| copy.pushed_past(self.state.push_seq))
        {
            self.state.copy = None;
        }
        self.phase = PushPhase::Saving {
            more: self.page_more,
            page: true,
        };
    }

    fn out_of_order(&mut self, what: &'static str) -> SyncError {
        let error = SyncError::out_of_turn(self.url, what, "push", self.phase);
        self.on_failure(error)
    }
}

/// Cuts `records` into push bodies of at most [`SYNC_BATCH_BYTES`] plus one record, so
/// every body fits [`crate::config::MAX_PUSH_BODY_BYTES`], the least any peer accepts. A
/// record too large for any peer (stored before the record limit existed) is reported in
/// `result` and not sent, rather than failing every push after it (issue 10).
pub(in crate::sync) fn push_batches(
    url: &str,
    records: Vec<Record>,
    result: &mut PeerSyncResult,
) -> Vec<Vec<Record>> {
    let mut batches = Vec::new();
    let mut batch = Vec::new();
    let mut bytes = 0;
    for record in records {
        let size = wire_size(&record);
        if size > MAX_RECORD_WIRE_BYTES {
            result.rejected.push(format!(
                "record {:?} takes {size} bytes on the wire, over the limit of {MAX_RECORD_WIRE_BYTES}; not sent to {url}",
                record.id
            ));
            continue;
        }
        if bytes >= SYNC_BATCH_BYTES {
            batches.push(std::mem::take(&mut batch));
            bytes = 0;
        }
        bytes += size;
        batch.push(record);
    }
    if !batch.is_empty() {
        batches.push(batch);
    }
    batches
}

/// Reads the peer's answer to a push of `sent` records into `result`. If the peer's
/// change log had nothing between `pull_seq` and our records, `pull_seq` moves past them.
pub(in crate::sync) fn apply_push_answer(
    url: &str,
    answer: &Object,
    sent: usize,
    pull_seq: &mut u64,
    result: &mut PeerSyncResult,
) -> Result<(), SyncError> {
    let answer = PushAnswer::read(answer)?;
    if let Some((before, after)) = answer.sequences {
        if before == *pull_seq && after >= before {
            *pull_seq = after;
        }
    }
    result.nodes_sent += sent as u64;
    result.nodes_unchanged += answer.unchanged;
    result.conflicts += answer.conflicts;
    for reason in answer.refusals() {
        result
            .rejected
            .push(format!("{url} refused a record: {reason}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::ClientError;
    use crate::model::{ContentHash, Hlc, InstanceId};
    use crate::protocol::WireError;
    use crate::store::{Body, RecordMeta};
    use crate::sync::FailureKind;
    use miniserde::json;

    const URL: &str = "http://peer.test:9000";

    fn ours() -> String {
        "11".repeat(32)
    }

    fn version(millis: u64) -> Version {
        Version {
            hlc: Hlc::from_parts(millis, 0),
            origin: InstanceId([0x11; 32]),
        }
    }

    /// Our change `seq`: a tombstone of `id`.
    fn change(id: &str, seq: u64) -> Record {
        Record {
            id: id.into(),
            meta: RecordMeta {
                version: version(1_000 + seq),
                base: None,
                seq,
                hash: ContentHash::of(b""),
                updated_at: None,
                signature: None,
            },
            body: Body::Deleted { deleted_at: 1_000 },
        }
    }

    fn page(records: Vec<Record>, last_seq: u64, more: bool) -> ChangePage {
        ChangePage {
            records,
            last_seq,
            more,
        }
    }

    fn state() -> PeerState {
        PeerState {
            pull_seq: 40,
            push_seq: 3,
            ..PeerState::new(URL, 0)
        }
    }

    fn answer(text: &str) -> Object {
        json::from_str(text).unwrap()
    }

    /// A feed that offered our change `a` (sequence 4), the only one after its
    /// checkpoint.
    fn offering_one<'s>(state: &'s mut PeerState, pulled: &'s PulledVersions) -> PushFeed<'s> {
        let mut feed = PushFeed::new(URL, ours(), state, pulled);
        feed.next_read().unwrap();
        feed.on_changes(page(vec![change("a", 4)], 4, false))
            .unwrap();
        feed
    }

    /// The ids an offer we wrote offers, read as the peer reads it.
    fn offered_ids(offer: &Value) -> Vec<String> {
        let Value::Object(offer) = offer else {
            panic!("not an object")
        };
        let offer = Offer::read(offer).expect("an offer the peer reads");
        assert_eq!(offer.instance_id, ours());
        offer.offers.into_iter().map(|offered| offered.id).collect()
    }

    #[test]
    fn read_changes_asks_after_the_checkpoint_with_the_peers_types() {
        let mut state = state();
        state.types = vec!["note".into()];
        let pulled = PulledVersions::default();
        let mut feed = PushFeed::new(URL, ours(), &mut state, &pulled);
        assert_eq!(feed.phase(), PushPhase::ReadChanges);
        let read = feed.next_read().unwrap();
        assert_eq!((read.after, read.max_bytes), (3, SYNC_BATCH_BYTES));
        assert_eq!(read.filter, TypeFilter::only(&["note".to_owned()]));
        // Nothing changed here: done, nothing to save.
        assert!(feed.on_changes(page(Vec::new(), 3, false)).is_none());
        assert_eq!(feed.phase(), PushPhase::Done);
        assert!(feed.to_save().is_none());
        assert_eq!(feed.next_read(), None);
    }

    #[test]
    fn offering_leaves_out_what_was_just_pulled_from_the_peer() {
        let mut state = state();
        let mut pulled = PulledVersions::default();
        let echo = change("b", 5);
        pulled.note(&RemoteRecord {
            id: echo.id.clone(),
            version: echo.meta.version,
            base: None,
            hash: None,
            signature: None,
            author_key: None,
            body: echo.body.clone(),
        });
        let mut feed = PushFeed::new(URL, ours(), &mut state, &pulled);
        feed.next_read().unwrap();
        let offer = feed
            .on_changes(page(vec![change("a", 4), echo, change("c", 6)], 6, false))
            .unwrap();
        assert_eq!(offered_ids(&offer), ["a", "c"]);
        assert_eq!(feed.phase(), PushPhase::Offering);
        // Only echoes: nothing is offered, the checkpoint still moves.
        let mut state = self::state();
        let mut feed = PushFeed::new(URL, ours(), &mut state, &pulled);
        feed.next_read().unwrap();
        assert!(
            feed.on_changes(page(vec![change("b", 5)], 5, false))
                .is_none()
        );
        assert_eq!(feed.to_save().map(|state| state.push_seq), Some(5));
    }

    #[test]
    fn pushing_sends_what_the_peer_wants_and_reads_its_answer() {
        let mut state = state();
        let pulled = PulledVersions::default();
        let mut feed = PushFeed::new(URL, ours(), &mut state, &pulled);
        feed.next_read().unwrap();
        feed.on_changes(page(
            vec![change("a", 4), change("b", 5), change("c", 6)],
            6,
            true,
        ))
        .unwrap();
        let mut result = PeerSyncResult::default();
        feed.on_offer_answer(&answer(r#"{"want":["a","c"]}"#), &mut result)
            .unwrap();
        assert_eq!(feed.phase(), PushPhase::Pushing);
        let batch: Vec<&str> = feed
            .next_batch()
            .unwrap()
            .iter()
            .map(|record| record.id.as_str())
            .collect();
        assert_eq!(batch, ["a", "c"]);
        // The peer had a newer version of one (a conflict it settled) and refused none;
        // its log had nothing between our pull checkpoint and our records.
        feed.on_push_answer(
            &answer(
                r#"{"applied":1,"unchanged":0,"conflicts":1,"rejected":[{"id":"x","error":"too big"}],"seq_before":40,"seq_after":42}"#,
            ),
            &mut result,
        )
        .unwrap();
        assert_eq!(
            feed.phase(),
            PushPhase::Saving {
                more: true,
                page: true
            }
        );
        assert_eq!(feed.pushed(), Some((2, 6)));
        let saved = feed.to_save().unwrap();
        assert_eq!((saved.push_seq, saved.pull_seq), (6, 42));
        feed.on_saved();
        assert_eq!(feed.phase(), PushPhase::ReadChanges);
        assert_eq!(feed.next_read().map(|read| read.after), Some(6));
        assert_eq!((result.nodes_sent, result.conflicts), (2, 1));
        assert_eq!(
            result.rejected,
            [format!("{URL} refused a record: too big")]
        );
    }

    #[test]
    fn a_push_answer_after_other_changes_at_the_peer_leaves_the_pull_checkpoint() {
        let mut pull_seq = 40;
        let mut result = PeerSyncResult::default();
        let moved_on = answer(r#"{"unchanged":1,"seq_before":41,"seq_after":43}"#);
        apply_push_answer(URL, &moved_on, 1, &mut pull_seq, &mut result).unwrap();
        assert_eq!(pull_seq, 40);
        // A version the peer already had (stale here, re-sent) counts as unchanged.
        assert_eq!((result.nodes_sent, result.nodes_unchanged), (1, 1));
        let went_back = answer(r#"{"seq_before":40,"seq_after":39}"#);
        apply_push_answer(URL, &went_back, 1, &mut pull_seq, &mut result).unwrap();
        assert_eq!(pull_seq, 40);
    }

    #[test]
    fn an_offer_the_peer_wants_nothing_of_moves_the_checkpoint() {
        let mut state = state();
        let pulled = PulledVersions::default();
        let mut feed = offering_one(&mut state, &pulled);
        feed.on_offer_answer(&answer(r#"{"want":[]}"#), &mut PeerSyncResult::default())
            .unwrap();
        assert_eq!(feed.next_batch(), None);
        assert_eq!(feed.pushed(), Some((0, 4)));
        feed.on_saved();
        assert_eq!(feed.phase(), PushPhase::Done);
        assert_eq!(state.push_seq, 4);
    }

    #[test]
    fn a_refused_or_cut_push_fails_before_the_checkpoint_moves() {
        let mut state = state();
        let pulled = PulledVersions::default();
        let mut feed = offering_one(&mut state, &pulled);
        feed.on_offer_answer(&answer(r#"{"want":["a"]}"#), &mut PeerSyncResult::default())
            .unwrap();
        let error = feed.on_failure(SyncError::Status {
            request: format!("POST {URL}/federation/v2/push"),
            status: 401,
            detail: "unknown key".into(),
        });
        assert_eq!(error.kind(), FailureKind::Refused);
        assert_eq!(feed.phase(), PushPhase::Failed);
        assert!(feed.to_save().is_none() && feed.next_batch().is_none());
        assert_eq!(state.push_seq, 3);

        // An offer answer without `want`, or whose `want` lists something that is no
        // id, is an answer that cannot be used.
        for (text, missing) in [
            (r#"{"wanted":["a"]}"#, true),
            (r#"{"want":["a",7]}"#, false),
        ] {
            let mut state = self::state();
            let mut feed = offering_one(&mut state, &pulled);
            let error = feed
                .on_offer_answer(&answer(text), &mut PeerSyncResult::default())
                .unwrap_err();
            let named = match &error {
                SyncError::Wire(WireError::MissingField { field, .. }) => {
                    missing && field == "want"
                }
                SyncError::Wire(WireError::WrongType { field, .. }) => !missing && field == "want",
                _ => false,
            };
            assert!(named, "{text}: {error}");
            assert_eq!(feed.phase(), PushPhase::Failed);
        }
        let mut state = self::state();
        let mut feed = offering_one(&mut state, &pulled);
        // A link cut mid-answer reaches the feed as the client's error.
        let error = feed.on_failure(SyncError::Unanswered(ClientError::ConnectionLost {
            url: URL.into(),
            detail: "cut".into(),
        }));
        assert_eq!(error.kind(), FailureKind::Unreachable);
        assert_eq!(state.push_seq, 3);
    }

    #[test]
    fn after_a_first_copy_its_records_are_skipped_and_the_copy_forgotten() {
        let mut state = state();
        state.push_seq = 0;
        let mut copy = CopyProgress::new("e1");
        copy.done = true;
        copy.note_applied(0, 10);
        state.copy = Some(copy);
        let pulled = PulledVersions::default();
        let mut feed = PushFeed::new(URL, ours(), &mut state, &pulled);
        // The copy wrote our sequences 1 to 10: the first read starts past them.
        assert_eq!(feed.next_read().map(|read| read.after), Some(10));
        // Nothing else changed here: the moved checkpoint is saved once, copy forgotten.
        assert!(feed.on_changes(page(Vec::new(), 10, false)).is_none());
        assert_eq!(feed.pushed(), None);
        let saved = feed.to_save().unwrap();
        assert_eq!((saved.push_seq, saved.copy.is_none()), (10, true));
        feed.on_saved();
        assert_eq!(feed.phase(), PushPhase::Done);
    }

    #[test]
    fn push_bodies_stay_within_the_batch_bytes_plus_one_record() {
        let size = wire_size(&change("r00000", 1));
        let count = SYNC_BATCH_BYTES / size * 2 + 10;
        let records: Vec<Record> = (0..count)
            .map(|index| change(&format!("r{index:05}"), index as u64 + 1))
            .collect();
        let mut result = PeerSyncResult::default();
        let batches = push_batches(URL, records, &mut result);
        assert!(batches.len() >= 2, "{} batches", batches.len());
        assert_eq!(batches.iter().map(Vec::len).sum::<usize>(), count);
        for batch in &batches {
            let bytes: usize = batch.iter().map(wire_size).sum();
            assert!(bytes <= SYNC_BATCH_BYTES + size, "{bytes}");
        }
        assert!(result.rejected.is_empty());
    }
}
