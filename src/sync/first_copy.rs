//! The first copy of a peer's lattice into an empty or far-behind store (issue 13): the
//! pure decisions only — whether to copy the peer's feed or reconcile, how a feed page
//! moves the copy on, and which of our own changes the copy put here (so they are not
//! offered back). No I/O; `delta.rs` moves the bytes.
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

use std::fmt;

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
    pub fn note_applied(&mut self, before: u64, after: u64) {
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
    pub fn skip_from(&self, push_seq: u64) -> u64 {
        let mut seq = push_seq;
        for (first, last) in &self.applied {
            if *first <= seq + 1 && seq < *last {
                seq = *last;
            }
        }
        seq
    }

    /// Whether the push checkpoint passed every range, so the copy can be forgotten.
    pub fn pushed_past(&self, push_seq: u64) -> bool {
        self.done
            && self
                .applied
                .last()
                .is_none_or(|(_, last)| push_seq >= *last)
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
