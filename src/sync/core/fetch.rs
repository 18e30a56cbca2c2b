//! Fetching by digest what reconciliation found we lack: which digests each
//! `POST /federation/v2/fetch` asks for, in what order, and when the fetch is done.
//!
//! # Implementation
//!
//! [`FetchQueue`] goes `Ready` → `Awaiting` (a request is out) → `Applying` (the caller
//! verifies and applies the answer's records) → `Ready` again while digests remain,
//! else `Done`. The first request lists every digest (up to
//! [`FETCH_DIGESTS_PER_REQUEST`]) with `rank=1` when there are more than a batch, so the
//! peer says which records carry a priority; later ones send one batch each, in the
//! order the peer ranked them. A digest asked for and not delivered by an answer that
//! says nothing more follows was replaced at the peer since: the feed brings the newer
//! version. An answer that says more follows and delivers none of what was asked would
//! loop, so it is an error.

use std::collections::BTreeSet;

use miniserde::json::{Object, Value};

use crate::model::{ContentHash, encode_node};
use crate::protocol::{FetchAnswer, record_from_wire};
use crate::store::{Body, RemoteRecord};

use super::super::client::SyncError;
use super::super::reconcile::{ItemDigest, item_digest};

/// Digests sent in one `fetch` request: 1.6 MB, well inside the peer's body limit.
pub(in crate::sync) const FETCH_DIGESTS_PER_REQUEST: usize = 50_000;

/// Where a [`FetchQueue`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::sync) enum FetchPhase {
    Ready,
    /// A request for the first `asked` digests is out.
    Awaiting {
        asked: usize,
        rank: bool,
    },
    /// An answer's records are being applied; `more` it said.
    Applying {
        more: bool,
    },
    Done,
    Failed,
}

/// One `fetch` request: the digests one after another, and whether to rank them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(in crate::sync) struct FetchRequest {
    pub body: Vec<u8>,
    pub rank: bool,
}

/// The digests still to fetch from one peer.
#[derive(Debug)]
pub(in crate::sync) struct FetchQueue {
    url: String,
    remaining: Vec<ItemDigest>,
    batch_records: usize,
    first: bool,
    /// The digests the request out asked for.
    asked_for: BTreeSet<ItemDigest>,
    /// The digests the answer being applied delivered.
    delivered: BTreeSet<ItemDigest>,
    phase: FetchPhase,
}

impl FetchQueue {
    pub fn new(url: &str, digests: Vec<ItemDigest>, batch_records: usize) -> FetchQueue {
        FetchQueue {
            url: url.to_owned(),
            remaining: digests,
            batch_records,
            first: true,
            asked_for: BTreeSet::new(),
            delivered: BTreeSet::new(),
            phase: FetchPhase::Ready,
        }
    }

    #[cfg(test)]
    pub(crate) fn phase(&self) -> FetchPhase {
        self.phase
    }

    /// The next request, or `None` when nothing remains to ask.
    pub(crate) fn next_request(&mut self) -> Option<FetchRequest> {
        if self.phase != FetchPhase::Ready {
            return None;
        }
        if self.remaining.is_empty() {
            self.phase = FetchPhase::Done;
            return None;
        }
        let asked = if self.first {
            self.remaining.len().min(FETCH_DIGESTS_PER_REQUEST)
        } else {
            self.remaining.len().min(self.batch_records)
        };
        let rank = self.first && asked > self.batch_records;
        self.asked_for = self.remaining[..asked].iter().copied().collect();
        self.phase = FetchPhase::Awaiting { asked, rank };
        Some(FetchRequest {
            body: self.remaining[..asked].iter().flatten().copied().collect(),
            rank,
        })
    }

    /// Takes the peer's answer; returns its records to verify and apply.
    pub(crate) fn on_answer<'a>(&mut self, answer: &'a Object) -> Result<&'a [Value], SyncError> {
        let FetchPhase::Awaiting { asked, rank } = self.phase else {
            let error = SyncError::out_of_turn(&self.url, "a fetch answer", "fetch", self.phase);
            return Err(self.on_failure(error));
        };
        match self.read_answer(answer, asked, rank) {
            Ok((values, more)) => {
                self.phase = FetchPhase::Applying { more };
                Ok(values)
            }
            Err(error) => Err(self.on_failure(error)),
        }
    }

    fn read_answer<'a>(
        &mut self,
        answer: &'a Object,
        asked: usize,
        rank: bool,
    ) -> Result<(&'a [Value], bool), SyncError> {
        let answer = FetchAnswer::read(answer)?;
        let (values, more) = (answer.records, answer.more);
        self.delivered = values
            .iter()
            .enumerate()
            .filter_map(|(index, value)| {
                let context = format!("fetched record {} from {}", index + 1, self.url);
                let (record, _) = record_from_wire(value, &context).ok()?;
                Some(item_digest(
                    &record.id,
                    &record.version,
                    &content_hash(&record),
                ))
            })
            .collect();
        if rank {
            let ranked: Vec<usize> = answer
                .ranked
                .iter()
                .filter_map(|index| usize::try_from(*index).ok())
                .filter(|index| *index < asked)
                .collect();
            if !ranked.is_empty() {
                let mut order: Vec<ItemDigest> =
                    ranked.iter().map(|index| self.remaining[*index]).collect();
                let front: BTreeSet<ItemDigest> = order.iter().copied().collect();
                order.extend(
                    self.remaining
                        .iter()
                        .filter(|digest| !front.contains(*digest)),
                );
                self.remaining = order;
            }
        }
        Ok((values, more))
    }

    /// The answer's records were applied: what was delivered, or replaced at the peer
    /// since, is no longer asked for.
    pub(crate) fn on_applied(&mut self) -> Result<(), SyncError> {
        let FetchPhase::Applying { more } = self.phase else {
            return Ok(());
        };
        let delivered = std::mem::take(&mut self.delivered);
        let progressed = self
            .remaining
            .iter()
            .any(|digest| delivered.contains(digest));
        if !more {
            // What was asked for and not delivered was replaced at the peer since; the
            // feed brings the newer versions.
            let asked_for = std::mem::take(&mut self.asked_for);
            self.remaining.retain(|digest| !asked_for.contains(digest));
        } else if !progressed {
            return Err(self.on_failure(SyncError::FetchStalled {
                url: self.url.to_owned(),
            }));
        }
        self.remaining.retain(|digest| !delivered.contains(digest));
        self.first = false;
        self.phase = FetchPhase::Ready;
        Ok(())
    }

    pub(crate) fn on_failure(&mut self, error: SyncError) -> SyncError {
        self.phase = FetchPhase::Failed;
        error
    }
}

fn content_hash(record: &RemoteRecord) -> ContentHash {
    match &record.body {
        Body::Live(node) => ContentHash::of(&encode_node(node)),
        Body::Deleted { .. } => ContentHash::of(b""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::ClientError;
    use crate::model::{Hlc, InstanceId, Version};
    use crate::protocol::WireError;
    use crate::protocol::record_to_wire;
    use crate::store::{Record, RecordMeta};
    use crate::sync::FailureKind;
    use miniserde::json::Array;

    const URL: &str = "http://peer.test:9000";

    /// The peer's tombstone `n{index}` and the digest it reconciles under.
    fn record(index: u64) -> (Record, ItemDigest) {
        let version = Version {
            hlc: Hlc::from_parts(1_000 + index, 0),
            origin: InstanceId([2; 32]),
        };
        let record = Record {
            id: format!("n{index}"),
            meta: RecordMeta {
                version,
                base: None,
                seq: index,
                hash: ContentHash::of(b""),
                updated_at: None,
                signature: None,
            },
            body: Body::Deleted { deleted_at: 1_000 },
        };
        let digest = item_digest(&record.id, &version, &ContentHash::of(b""));
        (record, digest)
    }

    fn digests(count: u64) -> Vec<ItemDigest> {
        (0..count).map(|index| record(index).1).collect()
    }

    /// A fetch answer delivering the records `indices`, with `more` and `ranked`.
    fn answer(indices: &[u64], more: bool, ranked: &[u64]) -> Object {
        let records: Array = indices
            .iter()
            .map(|index| record_to_wire(&record(*index).0, None))
            .collect();
        FetchAnswer {
            records,
            more,
            missing: 0,
            ranked: ranked.to_vec(),
        }
        .into_object()
    }

    fn asked(request: &FetchRequest) -> Vec<ItemDigest> {
        request
            .body
            .chunks(32)
            .map(|chunk| chunk.try_into().unwrap())
            .collect()
    }

    #[test]
    fn the_first_request_lists_every_digest_and_ranks_more_than_a_batch() {
        let mut queue = FetchQueue::new(URL, digests(5), 2);
        assert_eq!(queue.phase(), FetchPhase::Ready);
        let request = queue.next_request().unwrap();
        assert_eq!(asked(&request), digests(5));
        assert!(request.rank);
        assert_eq!(
            queue.phase(),
            FetchPhase::Awaiting {
                asked: 5,
                rank: true
            }
        );
        assert_eq!(queue.next_request(), None, "one request out at a time");
        // A set within one batch is not ranked.
        let mut small = FetchQueue::new(URL, digests(2), 2);
        assert!(!small.next_request().unwrap().rank);
        // Nothing to fetch: done at once.
        let mut none = FetchQueue::new(URL, Vec::new(), 2);
        assert_eq!(none.next_request(), None);
        assert_eq!(none.phase(), FetchPhase::Done);
    }

    #[test]
    fn later_requests_follow_the_peers_ranking_one_batch_at_a_time() {
        let mut queue = FetchQueue::new(URL, digests(5), 2);
        queue.next_request().unwrap();
        // The peer sends n0 and ranks n3, then n1 first.
        let first = answer(&[0], true, &[3, 1, 9]);
        assert_eq!(queue.on_answer(&first).unwrap().len(), 1);
        assert_eq!(queue.phase(), FetchPhase::Applying { more: true });
        queue.on_applied().unwrap();
        let all = digests(5);
        let second = queue.next_request().unwrap();
        assert!(!second.rank);
        assert_eq!(asked(&second), [all[3], all[1]]);
        queue.on_answer(&answer(&[3, 1], true, &[])).unwrap();
        queue.on_applied().unwrap();
        assert_eq!(asked(&queue.next_request().unwrap()), [all[2], all[4]]);
    }

    #[test]
    fn what_the_last_answer_lacks_was_replaced_at_the_peer() {
        let mut queue = FetchQueue::new(URL, digests(3), 10);
        queue.next_request().unwrap();
        // n1 was replaced at the peer since reconciliation: the feed brings it.
        queue.on_answer(&answer(&[0, 2], false, &[])).unwrap();
        queue.on_applied().unwrap();
        assert_eq!(queue.next_request(), None);
        assert_eq!(queue.phase(), FetchPhase::Done);
    }

    #[test]
    fn an_answer_that_says_more_and_brings_nothing_asked_fails() {
        let mut queue = FetchQueue::new(URL, digests(3), 10);
        queue.next_request().unwrap();
        // A record nobody asked for does not count as progress.
        queue.on_answer(&answer(&[7], true, &[])).unwrap();
        let error = queue.on_applied().unwrap_err();
        assert!(
            error.to_string().contains("none of the records asked for"),
            "{error}"
        );
        assert_eq!(queue.phase(), FetchPhase::Failed);
        assert_eq!(queue.next_request(), None);
    }

    #[test]
    fn a_malformed_or_cut_answer_fails_the_fetch() {
        let mut queue = FetchQueue::new(URL, digests(3), 10);
        queue.next_request().unwrap();
        let mut cut = answer(&[0], false, &[]);
        cut.remove("records");
        assert!(matches!(
            queue.on_answer(&cut),
            Err(SyncError::Wire(WireError::MissingField { field, .. })) if field == "records"
        ));
        assert_eq!(queue.phase(), FetchPhase::Failed);

        let mut queue = FetchQueue::new(URL, digests(3), 10);
        queue.next_request().unwrap();
        let error = queue.on_failure(SyncError::Unanswered(ClientError::ConnectionLost {
            url: URL.into(),
            detail: "cut mid-answer".into(),
        }));
        assert_eq!(error.kind(), FailureKind::Unreachable);
        assert_eq!(queue.next_request(), None);
        // An answer nobody waits for is refused.
        assert!(queue.on_answer(&answer(&[0], false, &[])).is_err());
    }
}
