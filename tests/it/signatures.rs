//! Record signatures of format 2 (issue 11, "a delete can be forged from any tombstone"):
//! a relayed record whose id, deletion time or base was changed is refused, by push and
//! by pull from a sandbox peer, and a format 1 tombstone deletes nothing.

use ark_lattice::model::{ClaimedContent, Hlc, InstanceId, RecordClaim, RecordSignature, Version};
use ark_lattice::model::{ContentHash, SignatureFormat};
use ark_lattice::protocol::record_to_wire;
use ark_lattice::store::{Body, Record, RecordMeta, Store, StoreOptions};
use ark_lattice::trust::{KeyPair, sign_record, sign_record_v1};
use miniserde::json::{self, Value};

use crate::trust::{Server, fake_peer, http, signed};
use crate::util::{Lattice, array, count, field, text};

const TARGETS: [&str; 3] = ["accessibility_aria", "accelerate_launch", "gone"];

fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// A tombstone of `id` by `author`, signed in format 2, as wire JSON after `forge`
/// changed what it likes.
fn tombstone(author: &KeyPair, id: &str, forge: impl FnOnce(&mut Record)) -> String {
    // Ahead of the receiver's own writes of the targets, so it would win if accepted.
    let version = Version {
        hlc: Hlc::from_parts(now_millis() + 2_000, 0),
        origin: author.public_key().instance_id(),
    };
    let base = Some(Version {
        hlc: Hlc::from_parts(now_millis() - 60_000, 0),
        origin: InstanceId([9; 32]),
    });
    let deleted_at = now_millis();
    let claim = RecordClaim {
        id,
        content: ClaimedContent::Deleted { deleted_at },
        version,
        base,
    };
    let signature = sign_record(author, &claim).unwrap();
    let mut record = Record {
        id: id.to_owned(),
        meta: RecordMeta {
            version,
            base,
            seq: 1,
            hash: ContentHash::of(b""),
            updated_at: Some(deleted_at),
            signature: Some(RecordSignature::v2(*signature.as_bytes())),
        },
        body: Body::Deleted { deleted_at },
    };
    forge(&mut record);
    json::to_string(&record_to_wire(
        &record,
        Some(&author.public_key().to_base64()),
    ))
}

/// Four forgeries made from real tombstones, and one genuine tombstone of
/// `really_gone` that must apply (so a receiver refusing everything fails the test).
fn forgeries_and_one_genuine(author: &KeyPair) -> Vec<String> {
    vec![
        // The id of a real tombstone moved onto a live record.
        tombstone(author, "long_gone", |record| {
            record.id = "accessibility_aria".into()
        }),
        // Its deletion time changed.
        tombstone(author, "gone", |record| {
            record.body = Body::Deleted { deleted_at: 1 };
        }),
        // Its base changed, to pass a concurrent delete off as a descendant.
        tombstone(author, "gone", |record| record.meta.base = None),
        // A genuine format 1 tombstone: it does not name its record, so it never deletes.
        tombstone(author, "accelerate_launch", |record| {
            let signature = sign_record_v1(author, b"", &record.meta.version).unwrap();
            record.meta.signature = Some(RecordSignature {
                format: SignatureFormat::V1,
                bytes: *signature.as_bytes(),
            });
        }),
        tombstone(author, "really_gone", |_| {}),
    ]
}

fn add_targets(server: &Server) {
    for id in TARGETS.iter().chain(&["really_gone"]) {
        server
            .lattice
            .run(&["add", "--id", id, "--type", "t", "--value", "keep me"])
            .ok();
    }
}

fn assert_targets_intact(server: &Server, answer: &str) {
    for id in TARGETS {
        assert_eq!(
            server.lattice.run(&["get", id]).code,
            0,
            "{id} was deleted by a forged tombstone: {answer}"
        );
    }
    assert_eq!(
        server.lattice.run(&["get", "really_gone"]).code,
        4,
        "the genuine tombstone applies: {answer}"
    );
}

#[test]
fn forged_tombstones_pushed_by_a_core_peer_are_refused() {
    let receiver = Server::start("forged-push", &[], &[]);
    add_targets(&receiver);
    // The author is trusted as core and pushes the records itself.
    let author = KeyPair::generate().unwrap();
    receiver
        .lattice
        .run(&["trust", "add", &author.public_key().to_base64()])
        .ok();
    let body = format!(
        r#"{{"instanceId":"{}","records":[{}]}}"#,
        author.public_key().instance_id().to_hex(),
        forgeries_and_one_genuine(&author).join(",")
    );
    let path = "/federation/v2/push";
    let mut headers = signed(
        &author,
        &receiver.instance_id(),
        "POST",
        path,
        body.as_bytes(),
    );
    headers.push(("Content-Type", "application/json".into()));
    let (status, answer) = http(receiver.port, "POST", path, body.as_bytes(), &headers);
    assert_eq!(status, 200, "{answer}");
    let parsed: Value = json::from_str(&answer).unwrap();
    assert_eq!(count(field(&parsed, "applied")), 1, "{answer}");
    let rejected = array(field(&parsed, "rejected"));
    assert_eq!(rejected.len(), 4, "{answer}");
    assert!(answer.contains("signature does not match"), "{answer}");
    assert!(answer.contains("signed in format 1"), "{answer}");
    assert_targets_intact(&receiver, &answer);
    let (_, metrics) = http(receiver.port, "GET", "/metrics", b"", &[]);
    assert!(
        metrics.contains("ark_lattice_records_refused_total 4"),
        "{metrics}"
    );
}

#[test]
fn forged_tombstones_pulled_from_a_sandbox_peer_are_refused() {
    let author = KeyPair::generate().unwrap();
    let peer_key = KeyPair::generate().unwrap();
    let port = fake_peer(&peer_key, &forgeries_and_one_genuine(&author));
    let puller = Server::start("forged-pull", &[], &[]);
    add_targets(&puller);
    puller
        .lattice
        .run(&["trust", "add", &author.public_key().to_base64()])
        .ok();
    puller.add_fake_peer(port, &peer_key);
    puller
        .lattice
        .run(&[
            "trust",
            "add",
            &peer_key.public_key().to_base64(),
            "--tier",
            "sandbox",
        ])
        .ok();
    let result = puller.sync();
    let answer = json::to_string(&result);
    assert_eq!(count(field(&result, "nodesReceived")), 1, "{answer}");
    let rejected = array(field(&result, "rejected"));
    assert_eq!(rejected.len(), 4, "{answer}");
    assert!(
        rejected
            .iter()
            .all(|reason| text(reason).contains("signature") || text(reason).contains("format 1")),
        "{answer}"
    );
    assert_targets_intact(&puller, &answer);
}

/// How the migration is started in a test: a store this build made is rewritten as a
/// schema 1 build left it (format 1 signatures), then any command opens it.
#[test]
fn a_store_of_an_older_build_is_migrated_on_open_and_its_deletes_travel() {
    // The peer holds an older version of the record the old build deletes.
    let peer = Lattice::new("migrate-peer");
    peer.run(&["add", "--id", "deleted", "--type", "t", "--value", "older"])
        .ok();
    let old = Lattice::new("migrate-old");
    for id in ["kept", "deleted"] {
        old.run(&["add", "--id", id, "--type", "t", "--value", "v"])
            .ok();
    }
    old.run(&["delete", "deleted"]).ok();
    let key = KeyPair::load(&old.data_dir().join("identity.key")).unwrap();
    {
        let mut store = Store::open(
            &old.data_dir().join("lattice.redb"),
            &StoreOptions::default(),
            key.public_key().instance_id(),
        )
        .unwrap();
        store
            .rewrite_as_schema_1(&|bytes, version| {
                *sign_record_v1(&key, bytes, version).unwrap().as_bytes()
            })
            .unwrap();
    }
    let run = old.run(&["get", "kept", "--provenance", "--json"]).ok();
    assert!(
        run.stderr
            .contains("migrated to schema 2; 2 records of this instance re-signed"),
        "{}",
        run.stderr
    );
    let provenance = field(&run.json(), "provenance").clone();
    assert_eq!(count(field(&provenance, "signature_format")), 2);
    let again = old.run(&["get", "kept"]).ok();
    assert!(!again.stderr.contains("migrated"), "{}", again.stderr);
    // The migrated tombstone deletes at a peer that held the record.
    let source = Server::start_on(old, &[], &[]);
    let peer = Server::start_on(peer, &[], &[]);
    peer.lattice
        .run(&["federation", "add-peer", &source.url()])
        .ok();
    source
        .lattice
        .run(&["federation", "add-peer", &peer.url()])
        .ok();
    let result = peer.sync();
    assert!(
        matches!(field(&result, "success"), Value::Bool(true)),
        "{}",
        json::to_string(&result)
    );
    assert_eq!(peer.lattice.run(&["get", "kept"]).code, 0);
    assert_eq!(peer.lattice.run(&["get", "deleted"]).code, 4);
}
