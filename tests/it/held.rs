//! Nothing is dropped silently (issue 11): records refused for a reason that can go away
//! are held, reported with the command that fixes it, counted in `--json`,
//! `federation status` and `/metrics`, and applied at the next sync once the reason is
//! gone, without removing and adding the peer again.

use std::time::{Duration, Instant};

use ark_lattice::model::{ClaimedContent, ContentHash, Hlc, Node, RecordClaim, RecordSignature};
use ark_lattice::model::{Version, encode_node};
use ark_lattice::protocol::record_to_wire;
use ark_lattice::store::{Body, Record, RecordMeta};
use ark_lattice::trust::{KeyPair, sign_record};
use miniserde::json::{self, Value};

use crate::trust::{Server, fake_peer, http};
use crate::util::{array, count, field, text};

/// A lets B pull; B knows A's address but does not trust A's key yet. Returns A's
/// fingerprint.
fn pull_without_trust(a: &Server, b: &Server) -> String {
    a.lattice.run(&["trust", "add", &b.public_key()]).ok();
    b.lattice.run(&["federation", "add-peer", &a.url()]).ok();
    let a_fingerprint = a.fingerprint();
    b.lattice.run(&["trust", "remove", &a_fingerprint]).ok();
    a_fingerprint
}

#[test]
fn records_of_an_untrusted_author_are_held_then_applied_after_trust_accept() {
    let a = Server::start("held-a", &[], &[]);
    let b = Server::start("held-b", &[], &[]);
    for index in 0..50 {
        a.lattice
            .run(&[
                "add",
                "--id",
                &format!("from_a_{index}"),
                "--type",
                "t",
                "--value",
                "v",
            ])
            .ok();
    }
    let a_fingerprint = pull_without_trust(&a, &b);

    let run = b.lattice.run(&["federation", "sync"]).ok();
    let expected = format!(
        "held 50 from untrusted author {a_fingerprint} — run: ark-lattice trust accept {a_fingerprint}"
    );
    assert!(run.stdout.contains(&expected), "{}", run.stdout);
    assert_eq!(b.lattice.run(&["get", "from_a_7"]).code, 4);
    let result = b.sync();
    assert_eq!(
        count(field(field(&result, "held"), "untrusted_author")),
        50,
        "{}",
        json::to_string(&result)
    );
    let status = b.status();
    assert_eq!(count(field(field(&status, "held"), "untrusted_author")), 50);
    let human = b.lattice.run(&["federation", "status"]).ok();
    assert!(human.stdout.contains(&expected), "{}", human.stdout);
    let (_, metrics) = http(b.port, "GET", "/metrics", b"", &[]);
    assert!(
        metrics.contains("ark_lattice_held_records{reason=\"untrusted_author\"} 50"),
        "{metrics}"
    );
    // The command the sync printed works as printed (the author is listed as pending),
    // and the held records apply at once.
    let accepted = b.lattice.run(&["trust", "accept", &a_fingerprint]).ok();
    assert!(
        accepted.stdout.contains("applied 50 held record(s)"),
        "{}",
        accepted.stdout
    );
    let result = b.sync();
    assert!(
        matches!(field(&result, "success"), Value::Bool(true))
            && !json::to_string(&result).contains("\"held\""),
        "{}",
        json::to_string(&result)
    );
    for index in [0, 7, 49] {
        b.lattice.run(&["get", &format!("from_a_{index}")]).ok();
    }
    assert_eq!(
        count(field(field(&b.status(), "held"), "untrusted_author")),
        0
    );
}

#[test]
fn a_record_from_a_clock_ahead_is_held_until_ours_catches_up() {
    let author = KeyPair::generate().unwrap();
    let peer_key = KeyPair::generate().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let ahead = now + 4_000;
    let node = Node {
        id: "from_the_future".into(),
        node_type: "t".into(),
        value: "v".into(),
        ..Node::default()
    };
    let version = Version {
        hlc: Hlc::from_parts(ahead, 0),
        origin: author.public_key().instance_id(),
    };
    let hash = ContentHash::of(&encode_node(&node));
    let claim = RecordClaim {
        id: "from_the_future",
        content: ClaimedContent::Live(hash),
        version,
        base: None,
    };
    let signature = sign_record(&author, &claim).unwrap();
    let record = Record {
        id: "from_the_future".into(),
        meta: RecordMeta {
            version,
            base: None,
            seq: 1,
            hash,
            updated_at: None,
            signature: Some(RecordSignature::v2(*signature.as_bytes())),
        },
        body: Body::Live(node),
    };
    let wire = json::to_string(&record_to_wire(
        &record,
        Some(&author.public_key().to_base64()),
    ));
    let port = fake_peer(&peer_key, &[wire]);
    let b = Server::start("held-clock", &["--max-clock-skew", "1"], &[]);
    b.add_fake_peer(port, &peer_key);
    let result = b.sync();
    assert_eq!(
        count(field(field(&result, "held"), "clock_ahead")),
        1,
        "{}",
        json::to_string(&result)
    );
    let messages = array(field(&result, "heldMessages"));
    assert!(
        text(&messages[0]).contains("clock is ahead"),
        "{messages:?}"
    );
    assert_eq!(b.lattice.run(&["get", "from_the_future"]).code, 4);
    // Once our clock is within the allowed second of it, the next sync applies it.
    while std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
        + 1_000
        < ahead
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    let started = Instant::now();
    let result = b.sync();
    assert!(
        matches!(field(&result, "success"), Value::Bool(true)),
        "{}",
        json::to_string(&result)
    );
    b.lattice.run(&["get", "from_the_future"]).ok();
    assert!(started.elapsed() < Duration::from_secs(30));
}

/// The held table is bounded by bytes (issue 11): an untrusted author's large records
/// fill it to `ARK_MAX_HELD_MB`, the oldest make way with a counter and a log line, and
/// none is lost: once the author is accepted and the table has room, the next sync
/// fetches the dropped ones again.
#[test]
fn a_full_held_table_drops_the_oldest_and_fetches_them_again_once_there_is_room() {
    const RECORDS: usize = 40;
    let a = Server::start("held-full-a", &[], &[]);
    let b = Server::start("held-full-b", &[], &[("ARK_MAX_HELD_MB", "1")]);
    let value = "v".repeat(60_000);
    for index in 0..RECORDS {
        let id = format!("large_{index}");
        a.lattice
            .run(&["add", "--id", &id, "--type", "t", "--value", &value])
            .ok();
    }
    let a_fingerprint = pull_without_trust(&a, &b);

    let run = b.lattice.run(&["federation", "sync"]).ok();
    let status = b.status();
    let held = field(&status, "held");
    let kept = count(field(held, "untrusted_author"));
    let waiting = count(field(held, "held_table_full"));
    // 40 records of 60 kB do not fit 1 MiB: some are held, the rest wait, none is lost.
    assert!(kept > 0 && waiting > 0, "{}", json::to_string(&status));
    assert_eq!(
        kept + waiting,
        RECORDS as u64,
        "{}",
        json::to_string(&status)
    );
    assert!(
        run.stdout
            .contains(&format!("held {waiting} more than the held table keeps")),
        "{}",
        run.stdout
    );
    let (_, metrics) = http(b.port, "GET", "/metrics", b"", &[]);
    let sample = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} missing: {metrics}"))
    };
    assert_eq!(sample("ark_lattice_held_dropped_total"), waiting);
    assert!(sample("ark_lattice_held_bytes") <= 1024 * 1024);
    assert_eq!(
        sample("ark_lattice_held_records{reason=\"held_table_full\"}"),
        waiting
    );
    // A second sync while the table is still full fetches nothing again: no churn.
    let result = b.sync();
    assert_eq!(count(field(&result, "nodesReceived")), 0);
    assert_eq!(
        count(field(field(&b.status(), "held"), "held_table_full")),
        waiting
    );

    let accepted = b.lattice.run(&["trust", "accept", &a_fingerprint]).ok();
    assert!(
        accepted
            .stdout
            .contains(&format!("applied {kept} held record(s)")),
        "{}",
        accepted.stdout
    );
    let result = b.sync();
    assert_eq!(
        count(field(&result, "nodesReceived")),
        waiting,
        "{}",
        json::to_string(&result)
    );
    for index in 0..RECORDS {
        b.lattice.run(&["get", &format!("large_{index}")]).ok();
    }
    let held = b.status();
    for reason in ["untrusted_author", "held_table_full"] {
        assert_eq!(count(field(field(&held, "held"), reason)), 0, "{reason}");
    }
    println!(
        "held table of 1 MiB, {RECORDS} records of 60 kB from an untrusted author: {kept} held, {waiting} dropped, all {RECORDS} applied after trust accept and one sync (reproduce: cargo test --test it a_full_held_table -- --nocapture)"
    );
}

/// Accepting a key releases the records held for it while the node serves. The release
/// checked and applied every held record in one pass on the node's one thread: with
/// 70,000 held (a release build), no request was answered for 47 s. Now it goes in
/// chunks with a pause after each, so a request waits for one chunk at most.
#[test]
fn releasing_thousands_of_held_records_leaves_requests_served() {
    use crate::attacks::{LatencyProbe, median_and_max};
    const RECORDS: usize = 4000;
    let a = Server::start("held-many-a", &[], &[]);
    let b = Server::start("held-many-b", &[], &[]);
    let mut ndjson = String::new();
    for index in 0..RECORDS {
        ndjson.push_str(&format!(
            "{{\"id\":\"many_{index:05}\",\"type\":\"t\",\"value\":\"record {index}\"}}\n"
        ));
    }
    let file = a.lattice.dir.file("many.ndjson", &ndjson);
    a.lattice.import(&file).ok();
    let a_fingerprint = pull_without_trust(&a, &b);
    let run = b.lattice.run(&["federation", "sync"]).ok();
    assert!(
        run.stdout
            .contains(&format!("held {RECORDS} from untrusted author")),
        "{}",
        run.stdout
    );

    let probe = LatencyProbe::start(b.address(), Duration::from_millis(20));
    let started = Instant::now();
    let accepted = b.lattice.run(&["trust", "accept", &a_fingerprint]).ok();
    let took = started.elapsed();
    let latencies = probe.finish();
    assert!(
        accepted
            .stdout
            .contains(&format!("applied {RECORDS} held record(s)")),
        "{}",
        accepted.stdout
    );
    let (median, max) = median_and_max(&latencies);
    assert!(
        latencies.len() >= 3,
        "only {} requests in {took:?}",
        latencies.len()
    );
    // Wide: the suite runs tests side by side on a shared machine. The release in one
    // pass held every request for the whole release, 10 s here.
    assert!(
        max < Duration::from_secs(3),
        "a request waited {max:?} (median {median:?}) while {RECORDS} held records were released in {took:?}"
    );
    assert_eq!(b.lattice.run(&["get", "many_03999"]).code, 0);
}
