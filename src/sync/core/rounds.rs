//! Reconciliation with a peer, first contact or repair: the negentropy rounds over
//! `POST /federation/v2/reconcile` (each answer checked against the peer and store the
//! sync began with), and which of the versions the peer lacks are pushed, in what
//! order and in which slices. Fetching what we lack is `fetch.rs`.
//!
//! # Implementation
//!
//! [`Rounds`] goes from its first message through one answer per round
//! ([`Rounds::on_answer`] returns the next message, or `None` when the differences are
//! known) to [`Rounds::finish`]: the differences and the peer's change sequence as of
//! its first answer, which becomes the pull checkpoint once both directions are done.
//! An answer from another instance or store epoch fails the sync; the next one starts
//! over.

use std::collections::BTreeMap;
use std::ops::Range;

use crate::config::SYNC_BATCH_BYTES;
use crate::model::Version;
use crate::protocol::ReconcileAnswer;
use crate::store::Record;

use super::super::client::{During, SyncError};
use super::super::reconcile::{Differences, Initiator, ReconcileError, ReconcileSet};
use super::super::wire_size;
use super::push::PulledVersions;

/// The rounds of one reconciliation, client side.
#[derive(Debug)]
pub(in crate::sync) struct Rounds<'s> {
    url: &'s str,
    instance_id: Option<&'s str>,
    epoch: &'s str,
    initiator: Initiator<'s>,
    their_seq: Option<u64>,
}

impl<'s> Rounds<'s> {
    /// Starts reconciling `ours` with the peer `instance_id` at store `epoch`; returns
    /// the rounds and the first message to send.
    pub fn start(
        url: &'s str,
        ours: &'s ReconcileSet,
        instance_id: Option<&'s str>,
        epoch: &'s str,
    ) -> Result<(Rounds<'s>, Vec<u8>), SyncError> {
        let (initiator, message) = ours.initiate().map_err(|error| bad(url, error))?;
        let rounds = Rounds {
            url,
            instance_id,
            epoch,
            initiator,
            their_seq: None,
        };
        Ok((rounds, message))
    }

    /// Takes one answer, read by [`ReconcileAnswer::read`]. Returns the next message,
    /// or `None` when the rounds are over.
    pub(crate) fn on_answer(
        &mut self,
        answer: ReconcileAnswer<&[u8]>,
    ) -> Result<Option<Vec<u8>>, SyncError> {
        let url = self.url;
        if Some(answer.instance_id.as_str()) != self.instance_id || answer.epoch != self.epoch {
            return Err(SyncError::ChangedDuring {
                url: url.to_owned(),
                during: During::Sync,
            });
        }
        self.their_seq.get_or_insert(answer.last_seq);
        self.initiator
            .receive(answer.message)
            .map_err(|error| bad(url, error))
    }

    /// The differences, and the peer's change sequence as of its first answer.
    pub fn finish(self) -> (Differences, u64) {
        (self.initiator.finish(), self.their_seq.unwrap_or(0))
    }
}

fn bad(url: &str, error: ReconcileError) -> SyncError {
    SyncError::Reconcile {
        url: url.to_owned(),
        error,
    }
}

/// The versions of ours the peer lacks (`have`) that are still to push, in the order
/// found: not those of which a newer version just came from the peer.
pub(in crate::sync) fn versions_to_push<'a>(
    have: &[super::super::reconcile::ItemDigest],
    ours: &'a ReconcileSet,
    pulled: &PulledVersions,
) -> Vec<(&'a str, Version)> {
    have.iter()
        .filter_map(|digest| ours.entry(digest))
        .filter(|entry| !pulled.has_newer(&entry.id, &entry.version))
        .map(|entry| (entry.id.as_str(), entry.version))
        .collect()
}

/// Keeps of `records` (read by id) those still at the version our set holds (one changed
/// since is pushed by the feed later), highest priority first.
pub(in crate::sync) fn still_to_push(
    mut records: Vec<Record>,
    versions: &[(&str, Version)],
) -> Vec<Record> {
    let expected: BTreeMap<&str, Version> = versions.iter().copied().collect();
    records.retain(|record| expected.get(record.id.as_str()) == Some(&record.meta.version));
    super::super::by_priority(&mut records);
    records
}

/// Cuts `records` into slices of at most `batch_records` records and about
/// [`SYNC_BATCH_BYTES`] (at least one record each): one acknowledged push apiece, so a
/// cut loses at most the slice in flight.
pub(in crate::sync) fn push_slices(records: &[Record], batch_records: usize) -> Vec<Range<usize>> {
    let mut slices = Vec::new();
    let mut start = 0;
    while start < records.len() {
        let mut end = start;
        let mut bytes = 0;
        while end < records.len()
            && end - start < batch_records
            && (bytes < SYNC_BATCH_BYTES || end == start)
        {
            bytes += wire_size(&records[end]);
            end += 1;
        }
        slices.push(start..end);
        start = end;
    }
    slices
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ContentHash, Hlc, InstanceId};
    use crate::store::{Body, RecordMeta, RemoteRecord, TypeFilter, VersionEntry, VersionSnapshot};

    const URL: &str = "http://peer.test:9000";
    const PEER: &str = "peer-instance";

    fn version(hlc: u64) -> Version {
        Version {
            hlc: Hlc::from_parts(1_700_000_000_000 + hlc, 0),
            origin: InstanceId([1; 32]),
        }
    }

    fn set(entries: &[(&str, u64)]) -> ReconcileSet {
        let entries = entries
            .iter()
            .map(|(id, hlc)| VersionEntry {
                id: (*id).to_owned(),
                version: version(*hlc),
                hash: ContentHash::of(b""),
            })
            .collect();
        ReconcileSet::build(
            VersionSnapshot {
                entries,
                last_seq: 9,
            },
            TypeFilter::all(),
        )
        .unwrap()
    }

    /// The peer's answer of store `epoch` at change `last_seq`.
    fn answer<'m>(epoch: &str, last_seq: u64, message: &'m [u8]) -> ReconcileAnswer<&'m [u8]> {
        ReconcileAnswer {
            instance_id: PEER.to_owned(),
            epoch: epoch.to_owned(),
            last_seq,
            message,
        }
    }

    fn tombstone(id: &str, hlc: u64) -> Record {
        Record {
            id: id.into(),
            meta: RecordMeta {
                version: version(hlc),
                base: None,
                seq: hlc,
                hash: ContentHash::of(b""),
                updated_at: None,
                signature: None,
            },
            body: Body::Deleted { deleted_at: 1 },
        }
    }

    #[test]
    fn rounds_find_the_differences_and_keep_the_first_answers_sequence() {
        let ours = set(&[("a", 1), ("b", 2), ("c", 3)]);
        let theirs = set(&[("a", 1), ("b", 5), ("d", 4)]);
        let (mut rounds, mut message) = Rounds::start(URL, &ours, Some(PEER), "e1").unwrap();
        let mut seq = 17;
        while let Some(next) = rounds
            .on_answer(answer("e1", seq, &theirs.answer(&message).unwrap()))
            .unwrap()
        {
            message = next;
            seq += 10;
        }
        let (differences, their_seq) = rounds.finish();
        assert_eq!(their_seq, 17);
        // We lack their b@5 and d; they lack our b@2 and c.
        assert_eq!((differences.have.len(), differences.need.len()), (2, 2));
        let mut lacking: Vec<&str> = differences
            .have
            .iter()
            .map(|digest| ours.entry(digest).unwrap().id.as_str())
            .collect();
        lacking.sort_unstable();
        assert_eq!(lacking, ["b", "c"]);
    }

    #[test]
    fn an_answer_from_another_store_or_without_its_headers_fails() {
        let ours = set(&[("a", 1)]);
        let theirs = set(&[("b", 1)]);
        let check = |answer: ReconcileAnswer<&[u8]>, expected: &str| {
            let (mut rounds, _) = Rounds::start(URL, &ours, Some(PEER), "e1").unwrap();
            let error = rounds.on_answer(answer).unwrap_err();
            assert!(error.to_string().contains(expected), "{error}");
            error
        };
        let (_, first) = ours.initiate().unwrap();
        let body = theirs.answer(&first).unwrap();
        let changed = |error| {
            matches!(
                error,
                SyncError::ChangedDuring {
                    during: During::Sync,
                    ..
                }
            )
        };
        assert!(changed(check(
            answer("e2", 3, &body),
            "changed its instance or store epoch",
        )));
        let other = ReconcileAnswer {
            instance_id: "someone-else".into(),
            ..answer("e1", 3, &body)
        };
        assert!(changed(check(other, "changed its instance or store epoch")));
        // What is wrong in the answer's headers is `ReconcileAnswer::read`'s to say.
        let error = check(answer("e1", 3, b"not negentropy"), "unparsable");
        assert!(matches!(
            error,
            SyncError::Reconcile {
                error: ReconcileError::BadMessage(_),
                ..
            }
        ));
    }

    #[test]
    fn what_the_peer_lacks_is_pushed_unless_newer_came_or_ours_changed() {
        let ours = set(&[("a", 1), ("b", 2), ("c", 3)]);
        let theirs = set(&[]);
        let (mut rounds, message) = Rounds::start(URL, &ours, Some(PEER), "e1").unwrap();
        let reply = theirs.answer(&message).unwrap();
        assert!(rounds.on_answer(answer("e1", 0, &reply)).unwrap().is_none());
        let (differences, _) = rounds.finish();
        // A newer b just came from the peer.
        let mut pulled = PulledVersions::default();
        pulled.note(&RemoteRecord {
            id: "b".into(),
            version: version(7),
            base: None,
            hash: None,
            signature: None,
            author_key: None,
            body: Body::Deleted { deleted_at: 1 },
        });
        let versions = versions_to_push(&differences.have, &ours, &pulled);
        let mut ids: Vec<&str> = versions.iter().map(|(id, _)| *id).collect();
        ids.sort_unstable();
        assert_eq!(ids, ["a", "c"]);
        // c was written again here since the set was read: the feed pushes it later.
        let records = still_to_push(vec![tombstone("a", 1), tombstone("c", 8)], &versions);
        let kept: Vec<&str> = records.iter().map(|record| record.id.as_str()).collect();
        assert_eq!(kept, ["a"]);
    }

    #[test]
    fn pushes_are_sliced_by_the_peers_batch_size() {
        let records: Vec<Record> = (0..7)
            .map(|index| tombstone(&format!("r{index}"), index))
            .collect();
        assert_eq!(push_slices(&records, 3), [0..3, 3..6, 6..7]);
        assert_eq!(push_slices(&records, 10), vec![(0..7)]);
        assert!(push_slices(&[], 3).is_empty());
    }
}
