//! The pure decisions of a sync: which offered records to ask for, how long to back off
//! after failures, and jitter for timers. No I/O, no clock: callers pass `now` and the
//! random numbers in, so the rules test deterministically.

use std::time::Duration;

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

/// `interval` moved by up to ±10%, by `random_unit` in [0, 1].
pub fn jittered(interval: Duration, random_unit: f64) -> Duration {
    interval.mul_f64(0.9 + 0.2 * random_unit.clamp(0.0, 1.0))
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
}
