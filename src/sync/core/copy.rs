//! The first copy of a peer's lattice into an empty or far-behind store (issue 13):
//! whether to copy the peer's feed or reconcile ([`first_contact`]), and the copy
//! itself as a machine ([`CopyFeed`]): which page to ask for, how a page moves the
//! copy on, what to commit with it, and which of our own changes the copy put here (so
//! they are not offered back). No I/O; `sync::copy` moves the bytes, checks the records
//! and writes the store.
//!
//! # Implementation
//!
//! Reconciliation finds the differences and fetches them by digest: 32 bytes up for
//! every record we lack, and an answering peer that reads every asked-for record to
//! rank it. When we hold little of the peer's lattice, nearly everything differs, so
//! the peer's changes feed from sequence 0 is cheaper both ways and bounded in memory on
//! both sides: one page at a time, each applied in one transaction together with the
//! copy's checkpoint ([`CopyProgress::seq`]), so a cut link resumes at the page in
//! flight. The feed lists every current record once, at its latest change, so reading it
//! to its end yields the peer's whole lattice as of the last page.
//!
//! Once the copy reached the end, the pull checkpoint is the copy's sequence and our
//! push checkpoint starts at 0: what we held before, and what was written here during
//! the copy, is offered to the peer as in the steady state. The records the copy itself
//! wrote are skipped: every page's transaction gives its applied records consecutive
//! sequence numbers of ours, kept as ranges ([`CopyProgress::applied`]). A range lost
//! (a crash right after a page) only means those records are offered, never that one
//! of ours is skipped.
//!
//! [`CopyFeed`] lets pages be read ahead of the ones applied (the driver checks one
//! page's records while it applies the one before): it goes `Ready` (a page may be
//! asked for) → `AwaitingPage` → `Ready` again after a page that says there is more, or
//! `ReadAll` after the last; each page read is then applied, in order, with the state
//! [`CopyFeed::to_commit`] makes, and [`CopyFeed::finish`] sets the checkpoints once
//! the last one is. A page from another instance or store epoch than the copy's ends
//! it in `Failed` and forgets the copy, so the next sync starts over; any other failure
//! leaves the copy where the last applied page put it, to resume.

use std::fmt;

use miniserde::json::{Array, Object};

use crate::config::SYNC_BATCH_BYTES;
use crate::protocol::{ChangesPage, Route};

use super::super::client::{During, SyncError};
use super::super::delta::types_param;
use super::super::peer::PeerState;

/// How many of our records, times this, still count as far behind the peer's count.
/// Fetching by digest costs 32 uncompressible bytes up per record besides the record;
/// copying the feed resends what we already hold. With signed records of about 100 bytes
/// gzipped, copying is cheaper while we hold less than about a quarter.
pub const FAR_BEHIND_FACTOR: u64 = 4;

/// The most ranges of our sequence numbers a copy remembers. Local writes during a copy
/// split the ranges; past this many the oldest is forgotten, and its records are offered
/// to the peer (which wants none of them) rather than one of ours being skipped.
pub const MAX_APPLIED_RANGES: usize = 64;

/// How a sync without a checkpoint starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstContact {
    /// Stream the peer's changes feed from the copy's checkpoint.
    Copy,
    /// Set reconciliation, then fetch and push the differences.
    Reconcile,
}

/// Copy when a copy of the same peer store was begun and not finished (resume it), or
/// when we hold
/// fewer than 1/[`FAR_BEHIND_FACTOR`] of the records the peer counts; else reconcile.
/// `local_records` counts our live records and tombstones, `peer_nodes` is the
/// `nodeCount` of the peer's info (absent: reconcile, the safe default).
pub fn first_contact(
    local_records: u64,
    peer_nodes: Option<u64>,
    progress: Option<&CopyProgress>,
    peer_epoch: &str,
) -> FirstContact {
    if progress.is_some_and(|progress| progress.epoch == peer_epoch && !progress.done) {
        return FirstContact::Copy;
    }
    match peer_nodes {
        Some(nodes) if nodes > 0 && local_records.saturating_mul(FAR_BEHIND_FACTOR) < nodes => {
            FirstContact::Copy
        }
        _ => FirstContact::Reconcile,
    }
}

/// A first copy under way, kept in the peer's entry of the peer table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyProgress {
    /// The peer's store epoch the copy belongs to; another epoch starts it over.
    pub epoch: String,
    /// The peer's change sequence applied up to.
    pub seq: u64,
    /// Whether the feed was read to its end.
    pub done: bool,
    /// Ranges `(first, last)` of our own sequence numbers that the copy's pages were
    /// applied under, ascending, adjacent ones merged.
    pub applied: Vec<(u64, u64)>,
}

/// What a feed page means for the copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageStep {
    /// Apply the page and ask for the next one after `seq`.
    Next { seq: u64 },
    /// Apply the page; the copy reached the end of the feed at `seq`.
    Last { seq: u64 },
}

/// A feed page that cannot belong to the copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageError {
    /// The page ends before the sequence it was asked for after.
    WentBack { from: u64, to: u64 },
    /// The page says there is more but carries nothing and does not move on.
    Stalled { seq: u64 },
}

impl fmt::Display for PageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PageError::WentBack { from, to } => {
                write!(f, "its changes page went back from sequence {from} to {to}")
            }
            PageError::Stalled { seq } => write!(
                f,
                "its changes page after sequence {seq} says there is more but moves nothing"
            ),
        }
    }
}

impl CopyProgress {
    pub fn new(epoch: &str) -> CopyProgress {
        CopyProgress {
            epoch: epoch.to_owned(),
            ..CopyProgress::default()
        }
    }

    /// Checks a page asked for after `self.seq` that says `last_seq` and `more`, with
    /// `records` records in it. A sequence that goes back, or a page that says there is
    /// more without moving on, would loop or skip, so it is an error.
    pub fn step(&self, last_seq: u64, more: bool, records: usize) -> Result<PageStep, PageError> {
        if last_seq < self.seq {
            return Err(PageError::WentBack {
                from: self.seq,
                to: last_seq,
            });
        }
        if more && last_seq == self.seq && records == 0 {
            return Err(PageError::Stalled { seq: last_seq });
        }
        Ok(if more {
            PageStep::Next { seq: last_seq }
        } else {
            PageStep::Last { seq: last_seq }
        })
    }

    /// Notes that a page was applied under our sequence numbers after `before` up to
    /// `after` (nothing when they are equal: no record was new).
    pub(crate) fn note_applied(&mut self, before: u64, after: u64) {
        if after <= before {
            return;
        }
        let range = (before + 1, after);
        match self.applied.last_mut() {
            Some(last) if last.1 + 1 >= range.0 => last.1 = last.1.max(range.1),
            _ => self.applied.push(range),
        }
        if self.applied.len() > MAX_APPLIED_RANGES {
            self.applied.remove(0);
        }
    }

    /// Whether our change `seq` was written by the copy (and so need not be offered).
    pub fn wrote(&self, seq: u64) -> bool {
        self.applied
            .iter()
            .any(|(first, last)| (*first..=*last).contains(&seq))
    }

    /// The push checkpoint to use in place of `push_seq`: past every range it stands in
    /// or just before, since all the changes there came from the copy.
    pub(crate) fn skip_from(&self, push_seq: u64) -> u64 {
        let mut seq = push_seq;
        for (first, last) in &self.applied {
            if *first <= seq + 1 && seq < *last {
                seq = *last;
            }
        }
        seq
    }

    /// Whether the push checkpoint passed every range, so the copy can be forgotten.
    pub(crate) fn pushed_past(&self, push_seq: u64) -> bool {
        self.done
            && self
                .applied
                .last()
                .is_none_or(|(_, last)| push_seq >= *last)
    }
}

/// Where a [`CopyFeed`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::sync) enum CopyPhase {
    /// The next page may be asked for.
    Ready,
    /// A request for a page is out.
    AwaitingPage,
    /// The last page was read; the pages read are being applied.
    ReadAll,
    /// Every page was applied and both checkpoints set.
    Done,
    /// The copy cannot go on in this sync.
    Failed,
}

/// A page of the copy read: how it moves the copy, and its records to check.
#[derive(Debug)]
pub(in crate::sync) struct CopyPage {
    pub step: PageStep,
    pub records: Array,
}

/// The first copy of one peer's feed, in this sync.
#[derive(Debug)]
pub(in crate::sync) struct CopyFeed<'u> {
    url: &'u str,
    epoch: String,
    /// The copy as this sync found it: the one resumed, or a new one.
    begun: CopyProgress,
    /// The sequence the pages read so far reach.
    read_to: CopyProgress,
    /// Pages read and not yet applied.
    unapplied: usize,
    /// The query the feed is asked with, after `after=`.
    query: String,
    phase: CopyPhase,
}

impl<'u> CopyFeed<'u> {
    /// Resumes the copy `state` holds for the peer's store `epoch` when it is not done,
    /// or begins a new one, which `state` then holds (the answer's `true`: the caller
    /// notes what a new copy starts from).
    pub(crate) fn begin(url: &'u str, epoch: &str, state: &mut PeerState) -> (CopyFeed<'u>, bool) {
        let (begun, new) = match &state.copy {
            Some(copy) if copy.epoch == epoch && !copy.done => (copy.clone(), false),
            _ => (CopyProgress::new(epoch), true),
        };
        state.copy = Some(begun.clone());
        let query = format!(
            "&limit={}&max_bytes={SYNC_BATCH_BYTES}{}",
            state.batch_records(),
            types_param(state)
        );
        let feed = CopyFeed {
            url,
            epoch: epoch.to_owned(),
            read_to: begun.clone(),
            begun,
            unapplied: 0,
            query,
            phase: CopyPhase::Ready,
        };
        (feed, new)
    }

    #[cfg(test)]
    pub(crate) fn phase(&self) -> CopyPhase {
        self.phase
    }

    /// The sequence of the peer's feed the copy goes on from.
    pub(crate) fn begun_at(&self) -> u64 {
        self.begun.seq
    }

    /// The URL of the next page to ask for, or `None` when a request is out or the last
    /// page was read.
    pub(crate) fn next_request(&mut self) -> Option<String> {
        if self.phase != CopyPhase::Ready {
            return None;
        }
        self.phase = CopyPhase::AwaitingPage;
        Some(format!(
            "{}?after={}{}",
            Route::Changes.url(self.url),
            self.read_to.seq,
            self.query
        ))
    }

    /// Takes the page the peer answered. A page from another instance or store epoch
    /// than the copy's forgets the copy in `state` (the caller saves it): the next sync
    /// starts over.
    pub(crate) fn on_page(
        &mut self,
        page: Object,
        state: &mut PeerState,
    ) -> Result<CopyPage, SyncError> {
        if self.phase != CopyPhase::AwaitingPage {
            return Err(self.out_of_order("a changes page"));
        }
        let outcome = self.read_page(page, state);
        self.phase = match &outcome {
            Ok(CopyPage {
                step: PageStep::Next { .. },
                ..
            }) => CopyPhase::Ready,
            Ok(_) => CopyPhase::ReadAll,
            Err(_) => CopyPhase::Failed,
        };
        outcome
    }

    fn read_page(&mut self, page: Object, state: &mut PeerState) -> Result<CopyPage, SyncError> {
        let page = ChangesPage::take(page)?;
        if Some(page.instance_id.as_str()) != state.instance_id.as_deref()
            || page.epoch != self.epoch
        {
            state.copy = None;
            return Err(SyncError::ChangedDuring {
                url: self.url.to_owned(),
                during: During::FirstCopy,
            });
        }
        let step = self
            .read_to
            .step(page.last_seq, page.more, page.records.len())
            .map_err(|error| SyncError::CopyPage {
                url: self.url.to_owned(),
                error,
            })?;
        let (PageStep::Next { seq } | PageStep::Last { seq }) = step;
        self.read_to.seq = seq;
        self.unapplied += 1;
        Ok(CopyPage {
            step,
            records: page.records,
        })
    }

    /// The peer state to commit with the records of the earliest page not yet applied,
    /// which moved the copy by `step`.
    pub(crate) fn to_commit(&self, step: PageStep, state: &PeerState) -> PeerState {
        let mut next = state.copy.clone().unwrap_or_else(|| self.begun.clone());
        match step {
            PageStep::Next { seq } => next.seq = seq,
            PageStep::Last { seq } => {
                next.seq = seq;
                next.done = true;
            }
        }
        PeerState {
            copy: Some(next),
            ..state.clone()
        }
    }

    /// Notes that `committed` ([`CopyFeed::to_commit`]'s) was committed with the page's
    /// records, which took our sequence numbers after `before` up to `after`; returns
    /// the state to go on with.
    pub(crate) fn on_applied(
        &mut self,
        mut committed: PeerState,
        before: u64,
        after: u64,
    ) -> Result<PeerState, SyncError> {
        if self.unapplied == 0 {
            return Err(self.out_of_order("an applied page"));
        }
        self.unapplied -= 1;
        if let Some(copy) = committed.copy.as_mut() {
            copy.note_applied(before, after);
        }
        Ok(committed)
    }

    /// Once the last page was applied: sets both checkpoints in `state` (pull at the end
    /// of the peer's feed, push at 0 with the copy's own records skipped; `repairs` is
    /// our store's repair count read before the copy began) and returns the sequence
    /// the copy reached.
    pub fn finish(&mut self, state: &mut PeerState, repairs: u64) -> Result<u64, SyncError> {
        let copy = match &state.copy {
            Some(copy) if self.phase == CopyPhase::ReadAll && self.unapplied == 0 && copy.done => {
                copy.clone()
            }
            _ => return Err(self.out_of_order("the end of the copy")),
        };
        state.epoch = Some(self.epoch.clone());
        state.pull_seq = copy.seq;
        state.push_seq = 0;
        state.repairs = repairs;
        self.phase = CopyPhase::Done;
        Ok(copy.seq)
    }

    fn out_of_order(&mut self, answer: &'static str) -> SyncError {
        let error = SyncError::out_of_turn(self.url, answer, "first copy", self.phase);
        self.phase = CopyPhase::Failed;
        error
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(epoch: &str, applied: &[(u64, u64)]) -> CopyProgress {
        CopyProgress {
            epoch: epoch.into(),
            applied: applied.to_vec(),
            ..CopyProgress::default()
        }
    }

    #[test]
    fn an_empty_or_far_behind_store_copies_and_others_reconcile() {
        let check = |local, peer, progress: Option<&CopyProgress>, expected| {
            assert_eq!(
                first_contact(local, peer, progress, "e1"),
                expected,
                "{local} records here, {peer:?} there, {progress:?}"
            );
        };
        check(0, Some(100_000), None, FirstContact::Copy);
        check(0, Some(1), None, FirstContact::Copy);
        check(24_999, Some(100_000), None, FirstContact::Copy);
        check(25_000, Some(100_000), None, FirstContact::Reconcile);
        check(10, Some(0), None, FirstContact::Reconcile);
        check(0, Some(0), None, FirstContact::Reconcile);
        check(0, None, None, FirstContact::Reconcile);
        check(u64::MAX, Some(u64::MAX), None, FirstContact::Reconcile);
        // A copy begun with the same store is resumed whatever the counts say now; one
        // of another store epoch is not.
        let begun = progress("e1", &[]);
        check(90_000, Some(100_000), Some(&begun), FirstContact::Copy);
        check(90_000, None, Some(&begun), FirstContact::Copy);
        let other = progress("e0", &[]);
        check(90_000, Some(100_000), Some(&other), FirstContact::Reconcile);
        // A finished copy is no reason to copy again (a repair reconciles).
        let finished = CopyProgress {
            done: true,
            ..begun
        };
        check(
            90_000,
            Some(100_000),
            Some(&finished),
            FirstContact::Reconcile,
        );
    }

    #[test]
    fn pages_move_the_copy_forward_and_never_back() {
        let mut copy = CopyProgress::new("e1");
        assert_eq!(copy.step(500, true, 500), Ok(PageStep::Next { seq: 500 }));
        copy.seq = 500;
        // Records filtered out by type still move the sequence on.
        assert_eq!(copy.step(900, true, 0), Ok(PageStep::Next { seq: 900 }));
        assert_eq!(copy.step(900, false, 0), Ok(PageStep::Last { seq: 900 }));
        assert_eq!(copy.step(500, false, 0), Ok(PageStep::Last { seq: 500 }));
        assert_eq!(
            copy.step(499, false, 0),
            Err(PageError::WentBack { from: 500, to: 499 })
        );
        assert_eq!(
            copy.step(500, true, 0),
            Err(PageError::Stalled { seq: 500 })
        );
    }

    #[test]
    fn ranges_of_copied_records_merge_and_are_skipped_when_pushing() {
        let mut copy = CopyProgress::new("e1");
        copy.note_applied(10, 10);
        assert!(copy.applied.is_empty());
        copy.note_applied(10, 510);
        copy.note_applied(510, 1010);
        assert_eq!(copy.applied, vec![(11, 1010)]);
        // A local write took 1011; the next page starts after it.
        copy.note_applied(1011, 1500);
        assert_eq!(copy.applied, vec![(11, 1010), (1012, 1500)]);
        assert!(!copy.wrote(10));
        assert!(copy.wrote(11) && copy.wrote(1010) && copy.wrote(1012));
        assert!(!copy.wrote(1011));
        assert!(!copy.wrote(1501));
        // The push checkpoint jumps over a range only from just before it or inside it.
        assert_eq!(copy.skip_from(0), 0);
        assert_eq!(copy.skip_from(10), 1010);
        assert_eq!(copy.skip_from(500), 1010);
        assert_eq!(copy.skip_from(1010), 1010);
        assert_eq!(copy.skip_from(1011), 1500);
        assert_eq!(copy.skip_from(1500), 1500);
        assert!(!copy.pushed_past(1500), "not done yet");
        copy.done = true;
        assert!(!copy.pushed_past(1499));
        assert!(copy.pushed_past(1500));
        assert!(
            CopyProgress {
                done: true,
                ..CopyProgress::new("e1")
            }
            .pushed_past(0)
        );
    }

    #[test]
    fn too_many_ranges_forget_the_oldest_so_nothing_of_ours_is_skipped() {
        let mut copy = CopyProgress::new("e1");
        for page in 0..(MAX_APPLIED_RANGES as u64 + 3) {
            // Each page separated from the last by one local write.
            copy.note_applied(page * 10, page * 10 + 9);
        }
        assert_eq!(copy.applied.len(), MAX_APPLIED_RANGES);
        assert!(
            !copy.wrote(1),
            "the oldest range was forgotten: offered, not skipped"
        );
        for page in 0..(MAX_APPLIED_RANGES as u64 + 3) {
            assert!(
                !copy.wrote(page * 10 + 10),
                "a local write is never skipped"
            );
        }
    }
}

#[cfg(test)]
mod feed_tests {
    use super::super::pull::tests::{URL, broken_field};
    use super::*;
    use miniserde::json::Value;

    const PEER: &str = "http://peer.test:9000";

    /// A peer met for the first time: its instance known from its info, no checkpoint.
    fn state() -> PeerState {
        PeerState {
            instance_id: Some("aa".repeat(32)),
            ..PeerState::new(URL, 0)
        }
    }

    /// A changes page of the peer's store `epoch` as its `delta_api::changes` writes it,
    /// with `records` stand-in records.
    fn page(epoch: &str, records: usize, last_seq: u64, more: bool) -> Object {
        ChangesPage {
            instance_id: "aa".repeat(32),
            epoch: epoch.into(),
            records: (0..records)
                .map(|index| Value::String(format!("record {index}")))
                .collect(),
            last_seq,
            more,
        }
        .into_object()
    }

    /// Applies the earliest unapplied page as the driver does, as if its records took
    /// our sequence numbers after `before` up to `after`.
    fn apply(
        copy: &mut CopyFeed<'_>,
        step: PageStep,
        state: &mut PeerState,
        before: u64,
        after: u64,
    ) {
        let committed = copy.to_commit(step, state);
        *state = copy.on_applied(committed, before, after).expect("applied");
    }

    #[test]
    fn a_copy_begins_new_or_resumes_the_one_begun_with_the_same_store() {
        let mut fresh = state();
        let (copy, new) = CopyFeed::begin(PEER, "e1", &mut fresh);
        assert!(new);
        assert_eq!(copy.begun_at(), 0);
        assert_eq!(
            fresh.copy,
            Some(CopyProgress::new("e1")),
            "held from the start"
        );

        let begun = CopyProgress {
            seq: 900,
            applied: vec![(1, 400)],
            ..CopyProgress::new("e1")
        };
        let mut resumed = PeerState {
            copy: Some(begun.clone()),
            ..state()
        };
        let (copy, new) = CopyFeed::begin(PEER, "e1", &mut resumed);
        assert!(!new);
        assert_eq!(copy.begun_at(), 900);
        assert_eq!(resumed.copy, Some(begun.clone()));

        // Another store of the peer, or a copy already done: a new copy.
        for copy in [
            begun.clone(),
            CopyProgress {
                done: true,
                ..begun.clone()
            },
        ] {
            let mut state = PeerState {
                copy: Some(copy),
                ..state()
            };
            let epoch = if state.copy.as_ref().unwrap().done {
                "e1"
            } else {
                "e2"
            };
            let (copy, new) = CopyFeed::begin(PEER, epoch, &mut state);
            assert!(new, "{epoch}");
            assert_eq!(copy.begun_at(), 0);
            assert_eq!(state.copy, Some(CopyProgress::new(epoch)));
        }
    }

    #[test]
    fn pages_are_read_ahead_then_applied_in_order_and_the_end_sets_both_checkpoints() {
        let mut state = PeerState {
            types: vec!["template".into()],
            pull_seq: 77,
            push_seq: 66,
            ..state()
        };
        let (mut copy, _) = CopyFeed::begin(PEER, "e1", &mut state);
        let first = copy.next_request().expect("the first page");
        assert_eq!(
            first,
            format!(
                "{}?after=0&limit={}&max_bytes={SYNC_BATCH_BYTES}&types=template",
                Route::Changes.url(PEER),
                state.batch_records()
            )
        );
        assert_eq!(copy.phase(), CopyPhase::AwaitingPage);
        assert_eq!(copy.next_request(), None, "one request at a time");

        // Three pages read before any is applied, as the driver reads ahead.
        let one = copy.on_page(page("e1", 3, 500, true), &mut state).unwrap();
        assert_eq!(one.step, PageStep::Next { seq: 500 });
        assert_eq!(one.records.len(), 3);
        assert!(copy.next_request().unwrap().contains("?after=500&"));
        // Records filtered out by type still move the copy on.
        let two = copy.on_page(page("e1", 0, 900, true), &mut state).unwrap();
        assert!(copy.next_request().unwrap().contains("?after=900&"));
        let three = copy.on_page(page("e1", 2, 950, false), &mut state).unwrap();
        assert_eq!(three.step, PageStep::Last { seq: 950 });
        assert_eq!(copy.phase(), CopyPhase::ReadAll);
        assert_eq!(copy.next_request(), None, "the feed was read to its end");

        // Nothing read ahead is committed: each commit carries its own page's sequence.
        let committed = copy.to_commit(one.step, &state);
        assert_eq!(committed.copy.as_ref().map(|copy| copy.seq), Some(500));
        assert_eq!((committed.pull_seq, committed.push_seq), (77, 66));
        state = copy.on_applied(committed, 10, 13).unwrap();
        apply(&mut copy, two.step, &mut state, 13, 13);
        // A local write took 14 between the pages.
        apply(&mut copy, three.step, &mut state, 14, 16);
        let progress = state.copy.clone().unwrap();
        assert_eq!(
            (progress.seq, progress.done, progress.applied),
            (950, true, vec![(11, 13), (15, 16)])
        );
        assert_eq!(copy.finish(&mut state, 3).unwrap(), 950);
        assert_eq!(copy.phase(), CopyPhase::Done);
        assert_eq!(state.epoch.as_deref(), Some("e1"));
        assert_eq!((state.pull_seq, state.push_seq, state.repairs), (950, 0, 3));
        assert!(
            state.copy.as_ref().unwrap().wrote(16),
            "its records are skipped when pushing"
        );
    }

    #[test]
    fn a_cut_copy_resumes_after_the_last_page_applied_not_the_last_read() {
        let mut state = state();
        let (mut copy, _) = CopyFeed::begin(PEER, "e1", &mut state);
        copy.next_request();
        let one = copy.on_page(page("e1", 5, 500, true), &mut state).unwrap();
        copy.next_request();
        copy.on_page(page("e1", 5, 1000, true), &mut state).unwrap();
        copy.next_request();
        apply(&mut copy, one.step, &mut state, 0, 5);
        // The link is cut here: the page read ahead was never applied, the one asked for
        // never came. The committed state is what the next sync finds.
        let (mut again, new) = CopyFeed::begin(PEER, "e1", &mut state);
        assert!(!new);
        assert_eq!(again.begun_at(), 500);
        assert!(again.next_request().unwrap().contains("?after=500&"));
        assert_eq!(state.copy.as_ref().unwrap().applied, vec![(1, 5)]);
    }

    #[test]
    fn a_page_from_another_store_forgets_the_copy_and_other_bad_pages_keep_it() {
        for (instance, epoch) in [("bb".repeat(32), "e1"), ("aa".repeat(32), "e2")] {
            let mut state = state();
            let (mut copy, _) = CopyFeed::begin(PEER, "e1", &mut state);
            copy.next_request();
            let mut other = page(epoch, 1, 10, true);
            other.insert("instanceId".into(), Value::String(instance.clone()));
            let error = copy.on_page(other, &mut state).unwrap_err();
            assert!(
                error.to_string().contains("starts over next time"),
                "{error}"
            );
            assert_eq!(state.copy, None, "{instance} {epoch}: forgotten");
            assert_eq!(copy.phase(), CopyPhase::Failed);
            assert_eq!(copy.next_request(), None);
        }

        let begun = PeerState {
            copy: Some(CopyProgress {
                seq: 500,
                ..CopyProgress::new("e1")
            }),
            ..state()
        };
        let going_back = page("e1", 1, 499, true);
        let standing_still = page("e1", 0, 500, true);
        let mut no_seq = page("e1", 1, 600, true);
        no_seq.remove("last_seq");
        let mut no_records = page("e1", 1, 600, true);
        no_records.insert("records".into(), Value::Bool(true));
        for (bad, says) in [
            (going_back, "went back from sequence 500 to 499"),
            (standing_still, "says there is more but moves nothing"),
            (no_seq, "last_seq"),
            (no_records, "records"),
        ] {
            let mut state = begun.clone();
            let (mut copy, _) = CopyFeed::begin(PEER, "e1", &mut state);
            copy.next_request();
            let error = copy.on_page(bad, &mut state).unwrap_err();
            let named = broken_field(&error) == says || error.to_string().contains(says);
            assert!(named, "{says}: {error}");
            assert_eq!(state.copy, begun.copy, "{says}: kept to resume");
            assert_eq!(copy.phase(), CopyPhase::Failed);
        }
    }

    #[test]
    fn answers_out_of_order_fail_the_copy() {
        let mut state = state();
        let (mut copy, _) = CopyFeed::begin(PEER, "e1", &mut state);
        let error = copy
            .on_page(page("e1", 1, 10, true), &mut state)
            .unwrap_err();
        assert!(matches!(error, SyncError::OutOfTurn { .. }), "{error}");
        assert_eq!(copy.next_request(), None);

        let (mut copy, _) = CopyFeed::begin(PEER, "e1", &mut state);
        let error = copy.on_applied(state.clone(), 0, 0).unwrap_err();
        assert!(matches!(error, SyncError::OutOfTurn { .. }), "{error}");
        let (mut copy, _) = CopyFeed::begin(PEER, "e1", &mut state);
        assert!(matches!(
            copy.finish(&mut state, 0),
            Err(SyncError::OutOfTurn { .. })
        ));
        // The last page read but not applied: not the end yet.
        let (mut copy, _) = CopyFeed::begin(PEER, "e1", &mut state);
        copy.next_request();
        copy.on_page(page("e1", 1, 10, false), &mut state).unwrap();
        assert!(matches!(
            copy.finish(&mut state, 0),
            Err(SyncError::OutOfTurn { .. })
        ));
        assert_eq!(state.pull_seq, 0, "no checkpoint set");
    }
}
