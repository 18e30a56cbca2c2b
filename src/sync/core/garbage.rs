//! The core's machines against answers a hostile or broken peer could send: every
//! shape of JSON under the fields they read, and random reconciliation bytes. Each
//! answer is taken or refused with an error; none panics, loops or moves a checkpoint
//! past what a well-formed answer would.

use miniserde::json::{Number, Object, Value};

use super::super::client::{PeerSyncResult, SyncError};
use super::super::peer::PeerState;
use super::{FetchQueue, PullFeed, PulledVersions, PushFeed, Rounds};
use crate::model::{ContentHash, Hlc, InstanceId, Version};
use crate::protocol::ReconcileAnswer;
use crate::store::{
    Body, ChangePage, Record, RecordMeta, TypeFilter, VersionEntry, VersionSnapshot,
};

use super::pull::tests::URL;

/// A xorshift generator: the same garbage on every run.
struct Garbage(u64);

impl Garbage {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn value(&mut self, depth: u32) -> Value {
        match self.next() % if depth > 2 { 6 } else { 8 } {
            0 => Value::Null,
            1 => Value::Bool(self.next() % 2 == 0),
            2 => Value::Number(Number::U64(match self.next() % 3 {
                0 => self.next() % 8,
                1 => u64::MAX,
                _ => self.next(),
            })),
            3 => Value::Number(Number::I64(-((self.next() % 100) as i64) - 1)),
            4 => Value::Number(Number::F64(0.5)),
            5 => {
                Value::String(["", "e1", "x", &"aa".repeat(32)][(self.next() % 4) as usize].into())
            }
            6 => Value::Array(
                (0..self.next() % 4)
                    .map(|_| self.value(depth + 1))
                    .collect(),
            ),
            _ => Value::Object(self.object(depth + 1)),
        }
    }

    /// `base` with up to three of its fields, or others, replaced by garbage.
    fn garble(&mut self, mut base: Object) -> Object {
        for (key, value) in self.object(0).into_iter().take((self.next() % 4) as usize) {
            base.insert(key, value);
        }
        base
    }

    fn object(&mut self, depth: u32) -> Object {
        const KEYS: [&str; 14] = [
            "instanceId",
            "epoch",
            "last_seq",
            "more",
            "records",
            "want",
            "ranked",
            "seq_before",
            "seq_after",
            "rejected",
            "unchanged",
            "conflicts",
            "id",
            "version",
        ];
        let mut object = Object::new();
        for _ in 0..self.next() % 10 {
            let key = KEYS[(self.next() % KEYS.len() as u64) as usize];
            let value = self.value(depth);
            object.insert(key.into(), value);
        }
        object
    }
}

fn state() -> PeerState {
    PeerState {
        push_seq: 3,
        ..super::pull::tests::state()
    }
}

/// A well-formed changes page after the checkpoint (5), with `last_seq` 9.
fn good_page() -> Object {
    miniserde::json::from_str(&format!(
        r#"{{"instanceId":"{}","epoch":"e1","records":[],"last_seq":9,"more":false}}"#,
        "aa".repeat(32)
    ))
    .unwrap()
}

#[test]
fn garbage_pages_are_taken_or_refused_and_the_checkpoint_is_what_a_page_said() {
    let mut garbage = Garbage(0x9e37_79b9_7f4a_7c15);
    let mut taken = 0;
    for _ in 0..3_000 {
        let mut state = state();
        let page = garbage.garble(good_page());
        let mut feed = PullFeed::new(URL, &mut state, None, false);
        feed.next_request().unwrap();
        match feed.on_page(&page) {
            Ok(records) => {
                taken += 1;
                if feed.on_verified(records.len(), 0).is_some() {
                    feed.on_applied(&Default::default(), &mut PeerSyncResult::default());
                }
            }
            Err(_) => assert_eq!(feed.next_request(), None, "a refused page ends the pull"),
        }
        let said = match page.get("last_seq") {
            Some(Value::Number(Number::U64(seq))) => *seq,
            _ => 5,
        };
        assert!(state.pull_seq == 5 || state.pull_seq == said, "{page:?}");
    }
    assert!(
        taken > 100,
        "only {taken} pages were taken: the garbage is too strong"
    );
}

#[test]
fn garbage_offer_and_push_answers_are_taken_or_refused() {
    let mut garbage = Garbage(0x2545_f491_4f6c_dd1d);
    let record = |id: &str, seq: u64| Record {
        id: id.into(),
        meta: RecordMeta {
            version: Version {
                hlc: Hlc::from_parts(1_000 + seq, 0),
                origin: InstanceId([1; 32]),
            },
            base: None,
            seq,
            hash: ContentHash::of(b""),
            updated_at: None,
            signature: None,
        },
        body: Body::Deleted { deleted_at: 1 },
    };
    let pulled = PulledVersions::default();
    for _ in 0..3_000 {
        let mut state = state();
        let mut feed = PushFeed::new(URL, "11".repeat(32), &mut state, &pulled);
        feed.next_read().unwrap();
        let page = ChangePage {
            records: vec![record("x", 4), record("e1", 5)],
            last_seq: 5,
            more: false,
        };
        feed.on_changes(page).unwrap();
        let mut result = PeerSyncResult::default();
        let want = miniserde::json::from_str(r#"{"want":["x","e1"]}"#).unwrap();
        if feed
            .on_offer_answer(&garbage.garble(want), &mut result)
            .is_ok()
        {
            while feed.next_batch().is_some() {
                let answer =
                    miniserde::json::from_str(r#"{"seq_before":5,"seq_after":7}"#).unwrap();
                if feed
                    .on_push_answer(&garbage.garble(answer), &mut result)
                    .is_err()
                {
                    break;
                }
            }
        }
        assert!(result.nodes_sent <= 2);
        // The push checkpoint stays, or moves to the page's end once every push was
        // answered.
        assert!(state.push_seq == 3 || state.push_seq == 5);
    }
}

#[test]
fn garbage_fetch_answers_end_the_fetch_or_make_progress() {
    let mut garbage = Garbage(0x1234_5678_9abc_def1);
    for _ in 0..3_000 {
        let digests: Vec<[u8; 32]> = (0..5u8).map(|byte| [byte; 32]).collect();
        let mut queue = FetchQueue::new(URL, digests, 2);
        // Garbage never delivers one of these digests, so at most one answer is taken
        // per request and the queue ends within the requests it can make.
        let mut requests = 0;
        while queue.next_request().is_some() {
            requests += 1;
            assert!(requests <= 5, "the fetch does not end");
            let answer =
                miniserde::json::from_str(r#"{"records":[],"more":true,"ranked":[4,0]}"#).unwrap();
            let answer = garbage.garble(answer);
            if queue.on_answer(&answer).is_err() || queue.on_applied().is_err() {
                break;
            }
        }
    }
}

#[test]
fn garbage_reconcile_answers_are_errors_not_panics() {
    let entries = (0..300)
        .map(|index| VersionEntry {
            id: format!("n{index}"),
            version: Version {
                hlc: Hlc::from_parts(1_000 + index, 0),
                origin: InstanceId([1; 32]),
            },
            hash: ContentHash::of(b""),
        })
        .collect();
    let ours = super::super::reconcile::ReconcileSet::build(
        VersionSnapshot {
            entries,
            last_seq: 0,
        },
        TypeFilter::all(),
    )
    .unwrap();
    let mut garbage = Garbage(0x0bad_cafe_dead_beef);

    for length in 0..400 {
        let (mut rounds, _) = Rounds::start(URL, &ours, Some("peer"), "e1").unwrap();
        let mut body = vec![0x61u8];
        body.extend((0..length).map(|_| garbage.next() as u8));
        let answer = ReconcileAnswer {
            instance_id: "peer".into(),
            epoch: "e1".into(),
            last_seq: 1,
            message: &body[..],
        };
        if let Err(error) = rounds.on_answer(answer) {
            assert!(matches!(error, SyncError::Reconcile { .. }), "{error}");
        }
    }
}
