//! Store behaviour: local writes, tombstones, last-writer-wins, conflicts, the change
//! feed, and refusing files it cannot read.

use std::path::PathBuf;

use super::state::StateTable;
use super::*;
use crate::model::{ContentHash, Hlc, InstanceId, Node, Version};

const ME: InstanceId = InstanceId([1; 32]);
const PEER: InstanceId = InstanceId([2; 32]);
const NOW: u64 = 1_800_000_000_000;
const SKEW: u64 = 5 * 60 * 1000;

struct TempStore {
    dir: PathBuf,
    store: Option<Store>,
}

impl TempStore {
    fn new(name: &str) -> TempStore {
        let dir = std::env::temp_dir().join(format!("ark-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = Store::open(&dir.join("lattice.redb"), &StoreOptions::default(), ME).unwrap();
        TempStore {
            dir,
            store: Some(store),
        }
    }

    fn store(&mut self) -> &mut Store {
        self.store.as_mut().unwrap()
    }

    fn reopen(&mut self) {
        self.store = None;
        self.store = Some(
            Store::open(&self.dir.join("lattice.redb"), &StoreOptions::default(), ME).unwrap(),
        );
    }
}

impl Drop for TempStore {
    fn drop(&mut self) {
        self.store = None;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn node(id: &str, value: &str) -> Node {
    Node {
        id: id.into(),
        node_type: "template_node".into(),
        value: value.into(),
        language: Some("rust".into()),
        ..Node::default()
    }
}

fn remote(
    id: &str,
    value: &str,
    hlc: u64,
    origin: InstanceId,
    base: Option<Version>,
) -> RemoteRecord {
    RemoteRecord {
        id: id.into(),
        version: Version {
            hlc: Hlc(hlc),
            origin,
        },
        base,
        hash: None,
        signature: None,
        author_key: None,
        body: Body::Live(node(id, value)),
    }
}

fn value_of(store: &Store, id: &str) -> Option<String> {
    store
        .get(id)
        .unwrap()
        .and_then(|record| record.node().map(|node| node.value.clone()))
}

#[test]
fn rewriting_identical_content_changes_nothing() {
    let mut temp = TempStore::new("rewrite");
    let store = temp.store();
    let first = store
        .write_nodes(&[node("a", "1"), node("b", "2")], NOW)
        .unwrap();
    assert_eq!(
        first,
        WriteSummary {
            created: 2,
            updated: 0,
            unchanged: 0
        }
    );
    let seq = store.last_seq();
    let again = store
        .write_nodes(&[node("a", "1"), node("b", "2")], NOW + 1)
        .unwrap();
    assert_eq!(
        again,
        WriteSummary {
            created: 0,
            updated: 0,
            unchanged: 2
        }
    );
    assert_eq!(store.last_seq(), seq);
    let before = store.get("a").unwrap().unwrap().meta;
    store.write_nodes(&[node("a", "edited")], NOW + 2).unwrap();
    let after = store.get("a").unwrap().unwrap().meta;
    assert!(after.version > before.version && after.seq > before.seq);
}

#[test]
fn counters_and_data_survive_reopen() {
    let mut temp = TempStore::new("reopen");
    temp.store().write_nodes(&[node("a", "1")], NOW).unwrap();
    let (seq, clock, epoch) = (
        temp.store().last_seq(),
        temp.store().clock_high_water(),
        temp.store().epoch(),
    );
    temp.reopen();
    assert_eq!(temp.store().last_seq(), seq);
    assert_eq!(temp.store().clock_high_water(), clock);
    assert_eq!(temp.store().epoch(), epoch);
    // A clock that went back to 1970 after the reboot still orders the next write later.
    temp.store().write_nodes(&[node("a", "2")], 1_000).unwrap();
    assert!(temp.store().get("a").unwrap().unwrap().meta.version.hlc > clock);
}

#[test]
fn delete_leaves_a_tombstone_in_the_change_feed() {
    let mut temp = TempStore::new("delete");
    let store = temp.store();
    store
        .write_nodes(&[node("a", "1"), node("b", "2")], NOW)
        .unwrap();
    assert_eq!(store.delete("a", NOW + 1).unwrap(), Deletion::Deleted);
    assert_eq!(
        store.delete("a", NOW + 2).unwrap(),
        Deletion::AlreadyDeleted
    );
    assert_eq!(
        store.delete("missing", NOW + 2).unwrap(),
        Deletion::NotFound
    );
    assert!(store.get("a").unwrap().unwrap().is_deleted());
    let stats = store.stats().unwrap();
    assert_eq!((stats.nodes, stats.tombstones), (1, 1));
    assert_eq!(stats.by_type.get("template_node"), Some(&1));
    let page = store.changes_since(0, 100, usize::MAX).unwrap();
    let ids: Vec<_> = page
        .records
        .iter()
        .map(|record| (record.id.as_str(), record.is_deleted()))
        .collect();
    assert_eq!(ids, [("b", false), ("a", true)]);
    // Writing the id again brings it back with a newer version.
    store.write_nodes(&[node("a", "back")], NOW + 3).unwrap();
    assert_eq!(value_of(store, "a").as_deref(), Some("back"));
    assert_eq!(store.stats().unwrap().tombstones, 0);
}

#[test]
fn change_feed_pages_by_count_and_bytes() {
    let mut temp = TempStore::new("feed");
    let store = temp.store();
    let nodes: Vec<Node> = (0..10)
        .map(|i| node(&format!("n{i}"), &"x".repeat(100)))
        .collect();
    store.write_nodes(&nodes, NOW).unwrap();
    let first = store.changes_since(0, 4, usize::MAX).unwrap();
    assert_eq!((first.records.len(), first.more), (4, true));
    let second = store.changes_since(first.last_seq, 100, 1).unwrap();
    assert_eq!(
        second.records.len(),
        1,
        "a byte cap still returns one record"
    );
    let rest = store
        .changes_since(second.last_seq, 100, usize::MAX)
        .unwrap();
    assert_eq!((rest.records.len(), rest.more), (5, false));
    assert_eq!(rest.last_seq, store.last_seq());
    let empty = store
        .changes_since(store.last_seq(), 100, usize::MAX)
        .unwrap();
    assert!(empty.records.is_empty() && empty.last_seq == store.last_seq());
}

#[test]
fn newer_remote_version_wins_and_clean_updates_are_not_conflicts() {
    let mut temp = TempStore::new("lww");
    let store = temp.store();
    store.write_nodes(&[node("a", "mine")], NOW).unwrap();
    let mine = store.get("a").unwrap().unwrap().meta.version;
    // The peer edited on top of our version: a clean update.
    let update = remote("a", "theirs", mine.hlc.0 + 10, PEER, Some(mine));
    let outcome = store
        .apply_remote(std::slice::from_ref(&update), NOW, SKEW, None)
        .unwrap();
    assert_eq!((outcome.applied, outcome.conflicts), (1, 0));
    assert_eq!(value_of(store, "a").as_deref(), Some("theirs"));
    // The same version again is unchanged; an older one is stale.
    let outcome = store.apply_remote(&[update], NOW, SKEW, None).unwrap();
    assert_eq!(outcome.unchanged, 1);
    let old = remote("a", "old", 5, PEER, None);
    let outcome = store.apply_remote(&[old], NOW, SKEW, None).unwrap();
    assert_eq!(
        (outcome.stale, outcome.conflicts),
        (1, 0),
        "same author's older version"
    );
}

#[test]
fn concurrent_edits_keep_the_loser_in_the_conflict_log() {
    let mut temp = TempStore::new("conflict");
    let store = temp.store();
    let base = remote("a", "base", NOW << 16, PEER, None);
    store
        .apply_remote(std::slice::from_ref(&base), NOW, SKEW, None)
        .unwrap();
    store
        .write_nodes(&[node("a", "local edit")], NOW + 1)
        .unwrap();
    // The peer edited the same base later than we did: it wins, ours is logged.
    let theirs = remote(
        "a",
        "remote edit",
        (NOW + 50) << 16,
        PEER,
        Some(base.version),
    );
    let outcome = store.apply_remote(&[theirs], NOW, SKEW, None).unwrap();
    assert_eq!((outcome.applied, outcome.conflicts), (1, 1));
    assert_eq!(value_of(store, "a").as_deref(), Some("remote edit"));
    let conflicts = store.conflicts(Some(10)).unwrap();
    assert_eq!(conflicts.len(), 1);
    assert_eq!(conflicts[0].loser.node().unwrap().value, "local edit");
    assert_eq!(conflicts[0].loser.meta.version.origin, ME);
    // A concurrent edit that loses is logged too, and not applied.
    let third = InstanceId([3; 32]);
    let loser = remote(
        "a",
        "older concurrent",
        (NOW + 20) << 16,
        third,
        Some(base.version),
    );
    let outcome = store.apply_remote(&[loser], NOW, SKEW, None).unwrap();
    assert_eq!((outcome.stale, outcome.conflicts), (1, 1));
    assert_eq!(value_of(store, "a").as_deref(), Some("remote edit"));
    assert_eq!(store.stats().unwrap().conflicts, 2);
}

#[test]
fn versions_from_the_future_and_bad_hashes_are_refused() {
    let mut temp = TempStore::new("refuse");
    let store = temp.store();
    let future = remote("f", "x", (NOW + SKEW + 1000) << 16, PEER, None);
    let mut tampered = remote("t", "x", NOW << 16, PEER, None);
    tampered.hash = Some(ContentHash([9; 32]));
    let good = remote("g", "x", NOW << 16, PEER, None);
    let outcome = store
        .apply_remote(
            &[future, tampered, good],
            NOW,
            SKEW,
            Some(("peer", b"state")),
        )
        .unwrap();
    assert_eq!(outcome.applied, 1);
    assert_eq!(outcome.rejected.len(), 2);
    assert!(
        outcome.rejected[0].1.contains("ahead"),
        "{:?}",
        outcome.rejected
    );
    assert!(
        outcome.rejected[1].1.contains("does not match"),
        "{:?}",
        outcome.rejected
    );
    assert!(store.get("f").unwrap().is_none());
    assert_eq!(
        store.state(StateTable::Peers, "peer").unwrap().as_deref(),
        Some(&b"state"[..])
    );
    // The clock moved past the accepted remote version.
    assert!(store.clock_high_water() >= Hlc(NOW << 16));
}

#[test]
fn queries_use_indexes_and_filters() {
    let mut temp = TempStore::new("query");
    let store = temp.store();
    let mut python = node("py", "Python hello");
    python.language = Some("python".into());
    python.capabilities = vec!["print".into()];
    let mut command = node("cmd", "List files");
    command.node_type = "command_node".into();
    store
        .write_nodes(&[python, command, node("rs", "Rust hello")], NOW)
        .unwrap();
    let ids = |query: Query| -> Vec<String> {
        store
            .query(&query)
            .unwrap()
            .into_iter()
            .map(|(node, _)| node.id)
            .collect()
    };
    assert_eq!(
        ids(Query {
            language: Some("python".into()),
            ..Query::default()
        }),
        ["py"]
    );
    assert_eq!(
        ids(Query {
            node_type: Some("command_node".into()),
            ..Query::default()
        }),
        ["cmd"]
    );
    assert_eq!(
        ids(Query {
            search: Some("HELLO".into()),
            ..Query::default()
        }),
        ["py", "rs"]
    );
    assert_eq!(
        ids(Query {
            capability: Some("print".into()),
            ..Query::default()
        }),
        ["py"]
    );
    assert_eq!(
        ids(Query {
            after: Some("py".into()),
            ..Query::default()
        }),
        ["rs"]
    );
    assert_eq!(
        ids(Query {
            limit: Some(1),
            ..Query::default()
        }),
        ["cmd"]
    );
}

#[test]
fn a_newer_schema_is_refused_with_a_clear_message() {
    let mut temp = TempStore::new("schema");
    let path = temp.dir.join("lattice.redb");
    temp.store = None;
    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(super::tables::META)
            .unwrap()
            .insert(super::tables::meta_keys::SCHEMA, &99u32.to_be_bytes()[..])
            .unwrap();
        txn.commit().unwrap();
    }
    let error = Store::open(&path, &StoreOptions::default(), ME)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("schema 99") && error.contains("lattice.redb"),
        "{error}"
    );
}

#[test]
fn a_file_that_is_not_a_store_is_refused() {
    let dir = std::env::temp_dir().join(format!("ark-store-garbage-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("lattice.redb");
    std::fs::write(&path, vec![0x42; 8192]).unwrap();
    let error = Store::open(&path, &StoreOptions::default(), ME).unwrap_err();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        matches!(error, StoreError::Unreadable { .. } | StoreError::Io { .. }),
        "{error}"
    );
}

/// Overwrites the stored bytes of `id` with `change` applied, through redb, as a bit
/// flipped on disk would leave them.
fn damage(store: &Store, id: &str, change: impl FnOnce(&mut Vec<u8>)) {
    use redb::ReadableTable;
    let txn = store.db.begin_write().unwrap();
    {
        let mut nodes = txn.open_table(super::tables::NODES).unwrap();
        let mut bytes = nodes.get(id).unwrap().unwrap().value().to_vec();
        change(&mut bytes);
        nodes.insert(id, bytes.as_slice()).unwrap();
    }
    txn.commit().unwrap();
}

#[test]
fn a_damaged_record_is_never_handed_out_and_is_moved_aside_once() {
    let mut temp = TempStore::new("damaged-record");
    let store = temp.store();
    store
        .write_nodes(&[node("a", "first"), node("b", "second")], NOW)
        .unwrap();
    let repairs = store.repairs();
    damage(store, "a", |bytes| {
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
    });

    assert!(matches!(store.get("a"), Err(StoreError::Damaged { .. })));
    assert_eq!(store.records(&["a", "b"]).unwrap().len(), 1);
    let ids = |records: Vec<Record>| records.into_iter().map(|r| r.id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.changes_since(0, 10, 1 << 20).unwrap().records),
        ["b"]
    );
    let listed: Vec<String> = store
        .query(&Query::default())
        .unwrap()
        .into_iter()
        .map(|(node, _)| node.id)
        .collect();
    assert_eq!(listed, ["b"]);
    let snapshot = store.version_snapshot(&TypeFilter::all()).unwrap();
    assert_eq!(snapshot.entries.len(), 1);
    // Found by five reads, counted once.
    assert_eq!(store.damaged_found(), 1);

    let seq = store.last_seq();
    let handled = store.quarantine_damaged(NOW).unwrap();
    assert_eq!(handled.len(), 1);
    assert_eq!(handled[0].id, "a");
    assert_eq!(handled[0].table, RecordTable::Nodes);
    assert_eq!(store.repairs(), repairs + 1);
    assert_eq!(store.last_seq(), seq + 1);
    assert!(store.get("a").unwrap().is_none());
    assert!(
        store
            .query(&Query {
                node_type: Some("template_node".into()),
                ..Query::default()
            })
            .unwrap()
            .iter()
            .all(|(node, _)| node.id == "b")
    );
    assert_eq!(store.stats().unwrap().damaged, 1);
    // Nothing more to do, and the count stays across a reopen.
    assert!(store.quarantine_damaged(NOW).unwrap().is_empty());
    temp.reopen();
    assert_eq!(temp.store().repairs(), repairs + 1);
    let check = temp
        .store()
        .verify_records(&|_, _, _| SignatureCheck::Valid)
        .unwrap();
    assert!(check.damaged.is_empty(), "{:?}", check.damaged);
    assert_eq!(check.moved_aside, 1);
}

#[test]
fn a_peer_version_replaces_a_damaged_record() {
    let mut temp = TempStore::new("damaged-replaced");
    let store = temp.store();
    store.write_nodes(&[node("a", "first")], NOW).unwrap();
    // The id inside the body changed: it no longer matches the hash (nor the key).
    damage(store, "a", |bytes| {
        let at = bytes.windows(5).position(|w| w == b"ARKN1").unwrap() + 9;
        bytes[at] = b'z';
    });
    let fresh = remote("a", "first", NOW + 1, PEER, None);
    let outcome = store.apply_remote(&[fresh], NOW + 2, SKEW, None).unwrap();
    assert_eq!(outcome.applied, 1);
    let record = store.get("a").unwrap().unwrap();
    assert_eq!(record.node().unwrap().value, "first");
    assert_eq!(record.meta.version.origin, PEER);
    // One change entry for the id, and the write reported what it moved aside.
    assert_eq!(
        store.changes_since(0, 10, 1 << 20).unwrap().records.len(),
        1
    );
    assert!(store.has_damage_to_handle());
    assert_eq!(store.quarantine_damaged(NOW).unwrap().len(), 1);
    assert_eq!(store.stats().unwrap().damaged, 1);
}

#[test]
fn verify_reports_a_bad_signature_but_moves_only_damaged_bytes_aside() {
    let mut temp = TempStore::new("verify-signatures");
    let store = temp.store();
    store
        .write_nodes(&[node("a", "first"), node("b", "second")], NOW)
        .unwrap();
    damage(store, "b", |bytes| {
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
    });
    let check = store
        .verify_records(&|id, _, _| {
            if id == "a" {
                SignatureCheck::Invalid("made by another key".into())
            } else {
                SignatureCheck::Valid
            }
        })
        .unwrap();
    let found: Vec<(&str, &str)> = check
        .damaged
        .iter()
        .map(|record| (record.id.as_str(), record.table.name()))
        .collect();
    assert_eq!(found, [("a", "nodes"), ("b", "nodes")]);
    assert!(check.damaged[0].reason.contains("another key"));
    assert_eq!((check.nodes, check.changes, check.signed), (2, 2, 0));
    // Only the record whose bytes changed leaves the lattice.
    let moved = store.quarantine_damaged(NOW).unwrap();
    assert_eq!(moved.len(), 1);
    assert_eq!(moved[0].id, "b");
    assert!(store.get("a").unwrap().is_some());
}

#[test]
fn a_batch_signed_on_two_threads_verifies_and_keeps_repeated_ids_in_order() {
    use crate::model::{ClaimedContent, RecordClaim};
    use crate::trust::{KeyPair, Signature, sign_record, verify_record};
    let key = KeyPair::from_seed([9; 32]).unwrap();
    let public = key.public_key();
    let dir = std::env::temp_dir().join(format!("ark-store-two-threads-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut store = Store::open(
        &dir.join("lattice.redb"),
        &StoreOptions::default(),
        public.instance_id(),
    )
    .unwrap();
    store
        .set_signer(Box::new(move |claim| {
            *sign_record(&key, claim).unwrap().as_bytes()
        }))
        .unwrap();
    store.sign_on_two_threads();
    let mut nodes: Vec<Node> = (0..300)
        .map(|index| node(&format!("n{index}"), "first"))
        .collect();
    // An id met again within the batch: its second write replaces the first.
    nodes.insert(150, node("n7", "second"));
    nodes.push(node("n7", "third"));
    let summary = store.write_nodes(&nodes, NOW).unwrap();
    assert_eq!((summary.created, summary.updated), (300, 2));
    for index in 0..300 {
        let record = store.get(&format!("n{index}")).unwrap().unwrap();
        let Body::Live(stored) = &record.body else {
            panic!("n{index} is not live")
        };
        let expected = if index == 7 { "third" } else { "first" };
        assert_eq!(stored.value, expected, "n{index}");
        let signature = record.meta.signature.as_ref().expect("signed");
        let claim = RecordClaim {
            id: &record.id,
            content: ClaimedContent::Live(record.meta.hash),
            version: record.meta.version,
            base: record.meta.base,
        };
        verify_record(
            &public,
            &claim,
            &Signature::from_bytes(&signature.bytes).unwrap(),
        )
        .unwrap_or_else(|error| panic!("n{index}: {error}"));
    }
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn deferred_commits_are_read_at_once_but_handed_out_only_once_durable() {
    let mut temp = TempStore::new("deferred");
    let store = temp.store();
    store.write_nodes(&[node("a", "local")], NOW).unwrap();
    assert_eq!((store.last_seq(), store.served_seq()), (1, 1));
    let pushed = [
        remote("b", "b", 10, PEER, None),
        remote("c", "c", 11, PEER, None),
    ];
    let outcome = store
        .apply_remote_committing(&pushed, NOW, SKEW, None, &[], Commit::Deferred)
        .unwrap();
    assert_eq!(outcome.applied, 2);
    assert!(store.has_deferred_commits());
    // Read at once, but no sequence past the durable one is handed out: a crash now
    // would give 2 and 3 to other records.
    assert_eq!(value_of(store, "b").as_deref(), Some("b"));
    assert_eq!((store.last_seq(), store.served_seq()), (3, 1));
    let page = store.changes_since(0, 100, usize::MAX).unwrap();
    let ids: Vec<&str> = page
        .records
        .iter()
        .map(|record| record.id.as_str())
        .collect();
    assert_eq!((ids, page.last_seq, page.more), (vec!["a"], 1, false));
    assert!(
        store
            .changes_since(1, 100, usize::MAX)
            .unwrap()
            .records
            .is_empty()
    );
    assert_eq!(
        store.version_snapshot(&TypeFilter::all()).unwrap().last_seq,
        1
    );
    store.make_durable().unwrap();
    assert!(!store.has_deferred_commits());
    assert_eq!(store.served_seq(), 3);
    let page = store.changes_since(1, 100, usize::MAX).unwrap();
    let ids: Vec<&str> = page
        .records
        .iter()
        .map(|record| record.id.as_str())
        .collect();
    assert_eq!((ids, page.last_seq), (vec!["b", "c"], 3));
    // Any durable commit makes the deferred ones before it durable too.
    store
        .apply_remote_committing(
            &[remote("d", "d", 12, PEER, None)],
            NOW,
            SKEW,
            None,
            &[],
            Commit::Deferred,
        )
        .unwrap();
    assert_eq!(store.served_seq(), 3);
    store.write_nodes(&[node("e", "local")], NOW).unwrap();
    assert!(!store.has_deferred_commits());
    assert_eq!((store.last_seq(), store.served_seq()), (5, 5));
    temp.reopen();
    assert_eq!(temp.store().last_seq(), 5);
    assert_eq!(value_of(temp.store(), "d").as_deref(), Some("d"));
}
