//! The pure decisions of a sync: which offered records to ask for, how long to back off
//! after failures, jitter for timers and when auto-sync runs. No I/O, no clock: callers
//! pass `now` and the random numbers in, so the rules test deterministically.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

pub use crate::protocol::FailureKind;

use crate::model::{Version, wire_record_bytes};
use crate::store::{Body, Record};

/// Orders records highest `priority` first (no priority counts as 0, tombstones too),
/// keeping the given order among equals, so a link that drops mid-transfer has already
/// delivered what matters most.
pub fn by_priority(records: &mut [Record]) {
    records.sort_by_key(|record| std::cmp::Reverse(priority_of(record)));
}

pub fn priority_of(record: &Record) -> i64 {
    match &record.body {
        Body::Live(node) => node.priority.unwrap_or(0),
        Body::Deleted { .. } => 0,
    }
}

/// The positions of `ids` that have a priority (`None`: no record), highest priority
/// first and then in id order: a receiver inserting in key order rewrites far fewer
/// B-tree pages than one inserting at random (digests come in hash order).
pub fn rank_by_priority(ids: &[&str], priorities: &[Option<i64>]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..ids.len().min(priorities.len()))
        .filter(|position| priorities[*position].is_some())
        .collect();
    order.sort_by(|a, b| {
        priorities[*b]
            .cmp(&priorities[*a])
            .then_with(|| ids[*a].cmp(ids[*b]))
    });
    order
}

/// An upper bound of the bytes a record takes on the v2 wire before compression, for
/// batching by size: pages and pushes cut by it stay inside the limits in `config`.
pub fn wire_size(record: &Record) -> usize {
    let node = match &record.body {
        Body::Live(node) => Some(node),
        Body::Deleted { .. } => None,
    };
    wire_record_bytes(&record.id, node)
}

/// The ids whose offered version we should fetch: those we lack, and those newer than
/// ours. An equal or older version is never sent again, which also stops echoes in a
/// mesh (a record we just pushed comes back as an offer of a version we have).
pub fn wanted_ids(
    offers: &[(String, Version)],
    local_version: impl Fn(&str) -> Option<Version>,
) -> Vec<&str> {
    offers
        .iter()
        .filter(|(id, offered)| local_version(id).is_none_or(|ours| *offered > ours))
        .map(|(id, _)| id.as_str())
        .collect()
}

/// The wait before the next attempt after `failures` failures in a row: doubling from
/// `base`, capped at `cap`, then scaled by `jitter` in [0.5, 1.0] so peers that failed
/// together do not retry together.
pub fn backoff_delay(failures: u32, base: Duration, cap: Duration, random_unit: f64) -> Duration {
    if failures == 0 {
        return Duration::ZERO;
    }
    let doubled = base.saturating_mul(1u32 << failures.saturating_sub(1).min(20));
    doubled
        .min(cap)
        .mul_f64(0.5 + 0.5 * random_unit.clamp(0.0, 1.0))
}

/// The wait before trying a peer again after `failures` failures in a row, the last of
/// `kind`: an unreachable peer (or another failure) backs off from
/// [`BACKOFF_BASE`](crate::config::BACKOFF_BASE), a failing one from
/// [`BACKOFF_PEER_FAILING_BASE`](crate::config::BACKOFF_PEER_FAILING_BASE), both
/// doubling up to the cap; a peer that refused us waits `interval` (±10%), whatever
/// the count (auto-sync asks it at every round instead: [`AutoSyncSchedule::record`]).
pub fn retry_delay(
    kind: FailureKind,
    failures: u32,
    interval: Duration,
    random_unit: f64,
) -> Duration {
    use crate::config::{BACKOFF_BASE, BACKOFF_CAP, BACKOFF_PEER_FAILING_BASE};
    match kind {
        FailureKind::Refused => jittered(interval, random_unit),
        FailureKind::PeerFailing => backoff_delay(
            failures.max(1),
            BACKOFF_PEER_FAILING_BASE,
            BACKOFF_CAP,
            random_unit,
        ),
        FailureKind::Unreachable | FailureKind::Other => {
            backoff_delay(failures.max(1), BACKOFF_BASE, BACKOFF_CAP, random_unit)
        }
    }
}

/// `interval` moved by up to ±10%, by `random_unit` in [0, 1].
pub fn jittered(interval: Duration, random_unit: f64) -> Duration {
    interval.mul_f64(0.9 + 0.2 * random_unit.clamp(0.0, 1.0))
}

/// When auto-sync runs, as a state machine over `now`: a round over every target at
/// start (and when auto-sync is switched on), then one every interval with jitter; a
/// target whose sync failed is retried on its own after its backoff instead of waiting
/// for the next round, and is left out of rounds until then.
#[derive(Debug, Default)]
pub struct AutoSyncSchedule {
    /// The next round over every target; `None` means now.
    next_round: Option<Instant>,
    /// Targets whose last sync failed, and when to try each again.
    retry_at: BTreeMap<String, Instant>,
}

impl AutoSyncSchedule {
    /// Makes the next round start now (at start, and when auto-sync is switched on).
    pub(crate) fn round_now(&mut self) {
        self.next_round = None;
    }

    /// The targets to sync at `now` (`targets` in their order), starting a round when
    /// one is due; the next round then comes `interval` (±10% by `random_unit`) later.
    /// Targets no longer listed are forgotten.
    pub fn due(
        &mut self,
        now: Instant,
        targets: &[String],
        interval: Duration,
        random_unit: f64,
    ) -> Vec<String> {
        self.retry_at.retain(|url, _| targets.contains(url));
        let round = self.next_round.is_none_or(|at| at <= now);
        if round {
            self.next_round = Some(now + jittered(interval, random_unit));
        }
        targets
            .iter()
            .filter(|url| match self.retry_at.get(*url) {
                Some(at) => *at <= now,
                None => round,
            })
            .cloned()
            .collect()
    }

    /// Records how a sync with `url` ended at `now`: `failures` is its count of failures
    /// in a row after it, `failed` the kind of the last one, which with `interval` set
    /// the wait ([`retry_delay`], jittered by `random_unit`).
    pub fn record(
        &mut self,
        url: &str,
        failures: u32,
        failed: FailureKind,
        interval: Duration,
        now: Instant,
        random_unit: f64,
    ) {
        // A peer that refused us is not retried on its own: it is asked at every round,
        // including the one a local write starts, since the other side's operator may
        // have trusted our key meanwhile.
        if failures == 0 || failed == FailureKind::Refused {
            self.retry_at.remove(url);
        } else {
            let wait = retry_delay(failed, failures, interval, random_unit);
            self.retry_at.insert(url.to_owned(), now + wait);
        }
    }

    /// When something is next due: the next round or the earliest retry.
    pub(crate) fn next_wake(&self, now: Instant) -> Instant {
        self.retry_at
            .values()
            .copied()
            .chain([self.next_round.unwrap_or(now)])
            .min()
            .unwrap_or(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Hlc, InstanceId};

    fn version(hlc: u64) -> Version {
        Version {
            hlc: Hlc(hlc),
            origin: InstanceId([1; 32]),
        }
    }

    #[test]
    fn only_missing_or_newer_records_are_wanted() {
        let offers = vec![
            ("missing".to_owned(), version(5)),
            ("newer".to_owned(), version(9)),
            ("same".to_owned(), version(5)),
            ("older".to_owned(), version(1)),
        ];
        let local = |id: &str| match id {
            "newer" => Some(version(8)),
            "same" => Some(version(5)),
            "older" => Some(version(2)),
            _ => None,
        };
        assert_eq!(wanted_ids(&offers, local), ["missing", "newer"]);
    }

    #[test]
    fn ranking_needs_only_priorities_and_leaves_out_missing_records() {
        let ids = ["d", "c", "b", "a", "gone"];
        let priorities = [Some(0), Some(5), Some(0), Some(-1), None];
        assert_eq!(rank_by_priority(&ids, &priorities), vec![1, 2, 0, 3]);
        assert!(rank_by_priority(&[], &[]).is_empty());
    }

    #[test]
    fn higher_priority_goes_first_and_ties_keep_their_order() {
        use crate::model::{ContentHash, Node};
        use crate::store::{Body, Record, RecordMeta};
        let record = |id: &str, priority: Option<i64>| Record {
            id: id.to_owned(),
            meta: RecordMeta {
                version: version(1),
                base: None,
                seq: 1,
                hash: ContentHash([0; 32]),
                updated_at: None,
                signature: None,
            },
            body: Body::Live(Node {
                id: id.to_owned(),
                priority,
                ..Node::default()
            }),
        };
        let mut records = vec![
            record("a", None),
            record("b", Some(5)),
            record("c", Some(-1)),
            record("d", None),
            record("e", Some(9)),
        ];
        by_priority(&mut records);
        let order: Vec<&str> = records.iter().map(|record| record.id.as_str()).collect();
        assert_eq!(order, ["e", "b", "a", "d", "c"]);
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let base = Duration::from_secs(5);
        let cap = Duration::from_secs(60);
        let check = |failures, random, expected_secs: f64| {
            assert_eq!(
                backoff_delay(failures, base, cap, random).as_secs_f64(),
                expected_secs,
                "{failures} {random}"
            );
        };
        check(0, 1.0, 0.0);
        check(1, 1.0, 5.0);
        check(2, 1.0, 10.0);
        check(3, 0.0, 10.0);
        check(5, 1.0, 60.0);
        check(200, 1.0, 60.0);
    }

    #[test]
    fn jitter_stays_within_ten_percent() {
        let interval = Duration::from_secs(100);
        assert_eq!(jittered(interval, 0.0), Duration::from_secs(90));
        assert_eq!(jittered(interval, 1.0), Duration::from_secs(110));
        assert_eq!(jittered(interval, 7.0), Duration::from_secs(110));
    }

    const OTHER: FailureKind = FailureKind::Other;

    #[test]
    fn failures_are_told_apart_by_status() {
        fn check(status: u16, expected: FailureKind) {
            assert_eq!(FailureKind::of_status(status), expected, "{status}");
        }
        check(401, FailureKind::Refused);
        check(403, FailureKind::Refused);
        check(429, FailureKind::PeerFailing);
        check(500, FailureKind::PeerFailing);
        check(503, FailureKind::PeerFailing);
        check(400, FailureKind::Other);
        check(404, FailureKind::Other);
    }

    /// Issue 15: the retry policy branches on why the sync failed.
    #[test]
    fn the_wait_before_a_retry_depends_on_the_kind_of_failure() {
        let interval = Duration::from_secs(300);
        let wait = |kind, failures| retry_delay(kind, failures, interval, 1.0).as_secs();
        // A link that dropped is asked again soon, then less often.
        assert_eq!(wait(FailureKind::Unreachable, 1), 5);
        assert_eq!(wait(FailureKind::Unreachable, 3), 20);
        assert_eq!(wait(FailureKind::Other, 1), 5);
        // A failing peer gets time to recover.
        assert_eq!(wait(FailureKind::PeerFailing, 1), 30);
        assert_eq!(wait(FailureKind::PeerFailing, 3), 120);
        assert_eq!(wait(FailureKind::PeerFailing, 50), 15 * 60);
        // A refusal is not retried on its own: the next round asks again.
        assert_eq!(wait(FailureKind::Refused, 1), 330);
        assert_eq!(wait(FailureKind::Refused, 9), 330);
        assert_eq!(
            retry_delay(FailureKind::Refused, 1, interval, 0.0).as_secs(),
            270
        );
        let start = Instant::now();
        let mut schedule = AutoSyncSchedule::default();
        let targets = vec!["refused".to_owned(), "gone".to_owned()];
        schedule.due(start, &targets, interval, 1.0);
        schedule.record("refused", 1, FailureKind::Refused, interval, start, 1.0);
        schedule.record("gone", 1, FailureKind::Unreachable, interval, start, 1.0);
        let soon = start + Duration::from_secs(5);
        assert_eq!(
            vec!["gone".to_owned()],
            schedule.due(soon, &targets, interval, 1.0)
        );
        // A round (a local write starts one) asks the refusing peer again, and skips
        // the one still backing off.
        schedule.record("gone", 2, FailureKind::Unreachable, interval, soon, 1.0);
        schedule.round_now();
        assert_eq!(
            vec!["refused".to_owned()],
            schedule.due(soon, &targets, interval, 1.0)
        );
    }

    #[test]
    fn auto_sync_starts_with_a_round_and_retries_failures_on_their_own() {
        let start = Instant::now();
        let targets = vec!["a".to_owned(), "b".to_owned()];
        let interval = Duration::from_secs(300);
        let mut schedule = AutoSyncSchedule::default();
        assert_eq!(start, schedule.next_wake(start));
        assert_eq!(targets, schedule.due(start, &targets, interval, 0.5));
        assert_eq!(start + interval, schedule.next_wake(start));
        // "b" failed once: retried 5 s later (no jitter at 1.0), alone.
        schedule.record("a", 0, OTHER, interval, start, 1.0);
        schedule.record("b", 1, OTHER, interval, start, 1.0);
        let retry = start + Duration::from_secs(5);
        assert_eq!(retry, schedule.next_wake(start));
        assert!(
            schedule
                .due(retry - Duration::from_millis(1), &targets, interval, 0.5)
                .is_empty()
        );
        assert_eq!(
            vec!["b".to_owned()],
            schedule.due(retry, &targets, interval, 0.5)
        );
        // Failing again doubles the wait; half of it at the most jitter.
        schedule.record("b", 2, OTHER, interval, retry, 0.0);
        assert_eq!(retry + Duration::from_secs(5), schedule.next_wake(retry));
        schedule.record("b", 2, OTHER, interval, retry, 1.0);
        assert_eq!(retry + Duration::from_secs(10), schedule.next_wake(retry));
        // A round skips the target still backing off; a removed target is forgotten.
        schedule.record("b", 20, OTHER, interval, retry, 1.0);
        let round = start + interval;
        assert_eq!(
            vec!["a".to_owned()],
            schedule.due(round, &targets, interval, 0.5)
        );
        assert!(
            schedule
                .due(round, &["a".to_owned()], interval, 0.5)
                .is_empty()
        );
        assert_eq!(round + interval, schedule.next_wake(round));
        schedule.round_now();
        assert_eq!(
            vec!["a".to_owned()],
            schedule.due(round, &["a".to_owned()], interval, 0.5)
        );
    }
}
