//! The pull half of the steady state: the peer's changes feed after our checkpoint,
//! page by page. Each page is checked against the store it must come from (the peer's
//! instance and epoch), its records are verified by the caller, and it is applied in one
//! transaction together with the checkpoint it moves to.
//!
//! # Implementation
//!
//! [`PullFeed`] goes `Ready` → `AwaitingPage` (a request is out) → `Verifying` (a page
//! arrived; the caller verifies its records) → `Applying` (the caller commits the
//! records with [`PullFeed::on_verified`]'s state) → `Ready` for the next page, or
//! `Done`. An error from the peer or the link ends it in `Failed` with the checkpoint
//! where the last committed page left it, so a cut costs the page in flight only.

use std::time::Duration;

use miniserde::json::{Object, Value};

use crate::config::SYNC_BATCH_BYTES;
use crate::protocol::{ChangesPage, Route};
use crate::store::ApplyOutcome;

use super::super::client::{PeerSyncResult, Restart, SyncError};
use super::super::delta::types_param;
use super::super::peer::PeerState;

/// Where a [`PullFeed`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::sync) enum PullPhase {
    /// The next page may be asked for.
    Ready,
    /// A request for a page is out.
    AwaitingPage,
    /// A page arrived whose records are being verified.
    Verifying { last_seq: u64, more: bool },
    /// Verified records are being applied with the checkpoint `last_seq`.
    Applying { last_seq: u64, more: bool },
    /// The feed is read to its end (or a long-poll gave way to a change here).
    Done,
    /// The peer or the link failed; the checkpoint is the last committed page's.
    Failed,
}

/// A request for one changes page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(in crate::sync) struct ChangesRequest {
    pub url: String,
    /// Whether the peer may hold the request until a change arrives.
    pub long_poll: bool,
}

/// The steady-state pull of one peer's feed.
#[derive(Debug)]
pub(in crate::sync) struct PullFeed<'s> {
    url: &'s str,
    state: &'s mut PeerState,
    /// Seconds the first request may be held; later ones are never held.
    wait_seconds: u64,
    /// `/federation/info` was just read, so the page's instance id need not be checked.
    info_checked: bool,
    phase: PullPhase,
}

impl<'s> PullFeed<'s> {
    pub fn new(
        url: &'s str,
        state: &'s mut PeerState,
        wait: Option<Duration>,
        info_checked: bool,
    ) -> PullFeed<'s> {
        PullFeed {
            url,
            state,
            wait_seconds: wait.map_or(0, |wait| wait.as_secs()),
            info_checked,
            phase: PullPhase::Ready,
        }
    }

    #[cfg(test)]
    pub(crate) fn phase(&self) -> PullPhase {
        self.phase
    }

    /// The next page to ask for, or `None` when there is none to ask.
    pub(crate) fn next_request(&mut self) -> Option<ChangesRequest> {
        if self.phase != PullPhase::Ready {
            return None;
        }
        let mut url = format!(
            "{}?after={}&limit={}&max_bytes={SYNC_BATCH_BYTES}{}",
            Route::Changes.url(self.url),
            self.state.pull_seq,
            self.state.batch_records(),
            types_param(self.state)
        );
        let long_poll = self.wait_seconds > 0;
        if long_poll {
            url.push_str(&format!("&wait={}", self.wait_seconds));
            // Only the first request of a sync waits.
            self.wait_seconds = 0;
        }
        self.phase = PullPhase::AwaitingPage;
        Some(ChangesRequest { url, long_poll })
    }

    /// Takes a page the peer answered and returns its records to verify. A page from
    /// another instance or store epoch than the checkpoint's is
    /// [`SyncError::Restart`].
    pub(crate) fn on_page<'p>(&mut self, page: &'p Object) -> Result<&'p [Value], SyncError> {
        if self.phase != PullPhase::AwaitingPage {
            return Err(self.out_of_order("a changes page"));
        }
        let outcome = self.read_page(page);
        self.phase = match &outcome {
            Ok((last_seq, more, _)) => PullPhase::Verifying {
                last_seq: *last_seq,
                more: *more,
            },
            Err(_) => PullPhase::Failed,
        };
        outcome.map(|(_, _, records)| records)
    }

    fn read_page<'p>(&self, page: &'p Object) -> Result<(u64, bool, &'p [Value]), SyncError> {
        let url = self.url;
        let page = ChangesPage::read(page)?;
        if !self.info_checked
            && Some(page.instance_id.as_str()) != self.state.instance_id.as_deref()
        {
            return Err(SyncError::Restart {
                url: url.to_owned(),
                reason: Restart::AnotherInstance,
            });
        }
        if Some(page.epoch.as_str()) != self.state.epoch.as_deref() {
            return Err(SyncError::Restart {
                url: url.to_owned(),
                reason: Restart::NewEpoch,
            });
        }
        Ok((page.last_seq, page.more, page.records))
    }

    /// Takes a failed request (no answer, a cut answer, an error status): the feed ends
    /// with the checkpoint of the last committed page.
    pub(crate) fn on_failure(&mut self, error: SyncError) -> SyncError {
        self.phase = PullPhase::Failed;
        error
    }

    /// A held request gave way to a change here, which the push that follows sends at
    /// once; nothing was applied.
    pub(crate) fn on_wait_given_up(&mut self) {
        if self.phase == PullPhase::AwaitingPage {
            self.phase = PullPhase::Done;
        }
    }

    /// Takes how many of the page's records were verified and held, and returns the
    /// peer state to commit with them, or `None` when the page brings nothing new (no
    /// transaction, nothing written).
    pub(crate) fn on_verified(&mut self, accepted: usize, held: usize) -> Option<PeerState> {
        let PullPhase::Verifying { last_seq, more } = self.phase else {
            return None;
        };
        if accepted == 0 && held == 0 && last_seq == self.state.pull_seq && !more {
            self.phase = PullPhase::Done;
            return None;
        }
        self.phase = PullPhase::Applying { last_seq, more };
        let mut next = self.state.clone();
        next.pull_seq = last_seq;
        Some(next)
    }

    /// Takes what the store did with the page (stale versions lose, conflicts are
    /// logged; the store decides), counts it, and moves the checkpoint.
    pub(crate) fn on_applied(&mut self, outcome: &ApplyOutcome, result: &mut PeerSyncResult) {
        let PullPhase::Applying { last_seq, more } = self.phase else {
            return;
        };
        result.count_applied(outcome);
        self.state.pull_seq = last_seq;
        self.phase = if more {
            PullPhase::Ready
        } else {
            PullPhase::Done
        };
    }

    fn out_of_order(&mut self, what: &'static str) -> SyncError {
        let error = SyncError::out_of_turn(self.url, what, "pull", self.phase);
        self.phase = PullPhase::Failed;
        error
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::http::ClientError;
    use crate::protocol::WireError;
    use crate::sync::FailureKind;
    use miniserde::json;

    pub(in crate::sync) const URL: &str = "http://peer.test:9000";

    /// A peer with checkpoints: pull at 5, epoch `e1`.
    pub(in crate::sync) fn state() -> PeerState {
        PeerState {
            instance_id: Some("aa".repeat(32)),
            epoch: Some("e1".into()),
            protocol: Some("v2".into()),
            pull_seq: 5,
            ..PeerState::new(URL, 0)
        }
    }

    /// A changes page as the peer's `delta_api::changes` writes it.
    fn page(epoch: &str, records: usize, last_seq: u64, more: bool) -> Object {
        let text = format!(
            r#"{{"instanceId":"{}","epoch":"{epoch}","records":[{}],"last_seq":{last_seq},"more":{more}}}"#,
            "aa".repeat(32),
            vec!["{}"; records].join(",")
        );
        json::from_str(&text).unwrap()
    }

    #[test]
    fn ready_asks_after_the_checkpoint_and_only_the_first_request_waits() {
        let mut state = state();
        state.types = vec!["note".into()];
        let mut feed = PullFeed::new(URL, &mut state, Some(Duration::from_secs(20)), false);
        assert_eq!(feed.phase(), PullPhase::Ready);
        let first = feed.next_request().unwrap();
        assert_eq!(
            first.url,
            format!(
                "{URL}/federation/v2/changes?after=5&limit={}&max_bytes={SYNC_BATCH_BYTES}&types=note&wait=20",
                state_batch()
            )
        );
        assert!(first.long_poll);
        assert_eq!(feed.phase(), PullPhase::AwaitingPage);
        // Awaiting a page, nothing more is asked.
        assert_eq!(feed.next_request(), None);
        feed.on_page(&page("e1", 2, 9, true)).unwrap();
        feed.on_verified(2, 0).unwrap();
        feed.on_applied(&ApplyOutcome::default(), &mut PeerSyncResult::default());
        let second = feed.next_request().unwrap();
        assert!(!second.long_poll);
        assert!(second.url.contains("after=9&") && !second.url.contains("wait"));
    }

    /// The field a wire error names as missing or of the wrong type, or "" for any
    /// other error.
    pub(in crate::sync) fn broken_field(error: &SyncError) -> &str {
        match error {
            SyncError::Wire(
                WireError::MissingField { field, .. } | WireError::WrongType { field, .. },
            ) => field,
            _ => "",
        }
    }

    fn state_batch() -> usize {
        PeerState::default().batch_records()
    }

    #[test]
    fn awaiting_a_page_that_moves_on_verifies_then_applies_with_the_checkpoint() {
        let mut state = state();
        let mut feed = PullFeed::new(URL, &mut state, None, false);
        feed.next_request().unwrap();
        let answer = page("e1", 3, 12, false);
        assert_eq!(feed.on_page(&answer).unwrap().len(), 3);
        assert_eq!(
            feed.phase(),
            PullPhase::Verifying {
                last_seq: 12,
                more: false
            }
        );
        // One refused, one held, one accepted: the page still moves the checkpoint.
        let next = feed.on_verified(1, 1).unwrap();
        assert_eq!(next.pull_seq, 12);
        assert_eq!(
            feed.phase(),
            PullPhase::Applying {
                last_seq: 12,
                more: false
            }
        );
        let mut result = PeerSyncResult::default();
        let outcome = ApplyOutcome {
            applied: 1,
            ..ApplyOutcome::default()
        };
        feed.on_applied(&outcome, &mut result);
        assert_eq!(feed.phase(), PullPhase::Done);
        assert_eq!(feed.next_request(), None);
        assert_eq!(result.nodes_received, 1);
        assert_eq!(state.pull_seq, 12);
    }

    #[test]
    fn an_empty_page_at_the_checkpoint_is_done_without_a_transaction() {
        let mut state = state();
        let mut feed = PullFeed::new(URL, &mut state, None, false);
        feed.next_request().unwrap();
        feed.on_page(&page("e1", 0, 5, false)).unwrap();
        assert_eq!(feed.on_verified(0, 0), None);
        assert_eq!(feed.phase(), PullPhase::Done);
        // Records all refused, but the sequence moved: the checkpoint still moves.
        let mut state = self::state();
        let mut feed = PullFeed::new(URL, &mut state, None, false);
        feed.next_request().unwrap();
        feed.on_page(&page("e1", 2, 7, false)).unwrap();
        assert_eq!(feed.on_verified(0, 0).map(|next| next.pull_seq), Some(7));
    }

    #[test]
    fn a_new_store_epoch_or_instance_restarts_and_keeps_the_checkpoint() {
        let mut state = state();
        let mut feed = PullFeed::new(URL, &mut state, None, false);
        feed.next_request().unwrap();
        let error = feed.on_page(&page("e2", 1, 40, false)).unwrap_err();
        assert!(
            matches!(
                &error,
                SyncError::Restart {
                    reason: Restart::NewEpoch,
                    ..
                }
            ),
            "{error}"
        );
        assert_eq!(feed.phase(), PullPhase::Failed);
        assert_eq!(feed.next_request(), None);
        assert_eq!(state.pull_seq, 5);

        let mut other = self::state();
        other.instance_id = Some("bb".repeat(32));
        let mut feed = PullFeed::new(URL, &mut other, None, false);
        feed.next_request().unwrap();
        let error = feed.on_page(&page("e1", 0, 5, false)).unwrap_err();
        assert!(
            matches!(
                &error,
                SyncError::Restart {
                    reason: Restart::AnotherInstance,
                    ..
                }
            ),
            "{error}"
        );
        // With the info just read, the instance id is not checked again.
        let mut other = self::state();
        other.instance_id = Some("bb".repeat(32));
        let mut feed = PullFeed::new(URL, &mut other, None, true);
        feed.next_request().unwrap();
        assert!(feed.on_page(&page("e1", 0, 5, false)).is_ok());
    }

    #[test]
    fn a_cut_mid_page_loses_only_the_page_in_flight() {
        let mut state = state();
        let mut feed = PullFeed::new(URL, &mut state, None, false);
        feed.next_request().unwrap();
        feed.on_page(&page("e1", 2, 9, true)).unwrap();
        feed.on_verified(2, 0).unwrap();
        feed.on_applied(&ApplyOutcome::default(), &mut PeerSyncResult::default());
        feed.next_request().unwrap();
        // The second page's body is cut: the client reports the lost connection.
        let error = feed.on_failure(SyncError::Unanswered(ClientError::ConnectionLost {
            url: URL.into(),
            detail: "unexpected end of body".into(),
        }));
        assert_eq!(error.kind(), FailureKind::Unreachable);
        assert_eq!(feed.phase(), PullPhase::Failed);
        assert_eq!(feed.next_request(), None);
        assert_eq!(state.pull_seq, 9, "the first page's checkpoint stays");
    }

    #[test]
    fn a_malformed_page_fails_without_moving_the_checkpoint() {
        let mut without_seq = page("e1", 1, 9, true);
        without_seq.remove("last_seq");
        let mut records_not_a_list = page("e1", 1, 9, true);
        records_not_a_list.insert("records".into(), Value::String("cut".into()));
        for (broken, field) in [(without_seq, "last_seq"), (records_not_a_list, "records")] {
            let mut state = state();
            let mut feed = PullFeed::new(URL, &mut state, None, false);
            feed.next_request().unwrap();
            let error = feed.on_page(&broken).unwrap_err();
            assert_eq!(broken_field(&error), field, "{error}");
            assert_eq!(feed.phase(), PullPhase::Failed);
            assert_eq!(state.pull_seq, 5);
        }
    }

    #[test]
    fn stale_versions_and_conflicts_are_counted_and_the_checkpoint_moves() {
        let mut state = state();
        let mut feed = PullFeed::new(URL, &mut state, None, false);
        feed.next_request().unwrap();
        feed.on_page(&page("e1", 3, 8, false)).unwrap();
        feed.on_verified(3, 0).unwrap();
        // The store kept our newer version of two records and settled one concurrent
        // edit by last-writer-wins.
        let outcome = ApplyOutcome {
            applied: 0,
            unchanged: 0,
            stale: 2,
            conflicts: 1,
            rejected: Vec::new(),
        };
        let mut result = PeerSyncResult::default();
        feed.on_applied(&outcome, &mut result);
        assert_eq!((result.nodes_received, result.conflicts), (0, 1));
        assert_eq!(state.pull_seq, 8);
    }

    #[test]
    fn a_long_poll_that_gives_way_to_a_change_here_is_done() {
        let mut state = state();
        let mut feed = PullFeed::new(URL, &mut state, Some(Duration::from_secs(20)), false);
        assert!(feed.next_request().unwrap().long_poll);
        feed.on_wait_given_up();
        assert_eq!(feed.phase(), PullPhase::Done);
        assert_eq!(feed.next_request(), None);
        // A page that was not asked for is refused.
        let error = feed.on_page(&page("e1", 0, 5, false)).unwrap_err();
        assert!(
            matches!(
                error,
                SyncError::OutOfTurn {
                    machine: "pull",
                    ref phase,
                    ..
                } if phase == "Done"
            ),
            "names the phase the page arrived in: {error}"
        );
    }
}
