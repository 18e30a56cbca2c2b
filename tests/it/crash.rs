//! kill -9 around the store (issue #16): during an import, and during a sync batch on
//! the side that sends it and on the side that applies it. Each time the store opens
//! again, holds only whole batches, and the next run converges with nothing lost.
//!
//! And during the record-signature migration (issue #11): a store rewritten as a schema
//! 1 build left it, the command that migrates it killed at several points, every record
//! of this instance found either all migrated or all untouched, and the next run
//! finishing the work.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::util::{CuttingProxy, Lattice, Node, array, bool_of, count, field};

/// NDJSON of `count` records `<prefix>_<i>`, with some content so batches take time.
fn records(prefix: &str, count: usize) -> String {
    let mut ndjson = String::new();
    for index in 0..count {
        ndjson.push_str(&format!(
            "{{\"id\":\"{prefix}_{index:05}\",\"type\":\"template_node\",\"value\":\"record {index} of {prefix}\",\"language\":\"rust\",\"content\":\"fn {prefix}_{index}() -> usize {{ {index} }}\"}}\n"
        ));
    }
    ndjson
}

/// Runs `args` on `lattice` and kills it (SIGKILL) after each of `delays` in turn (a run
/// that finishes first is not killed), checking after every kill that the store opens
/// and satisfies `check`. Returns how many runs were killed before they finished.
fn kill_repeatedly(
    lattice: &Lattice,
    args: &[&str],
    delays: &[Duration],
    check: &mut dyn FnMut(&Lattice),
) -> usize {
    let mut killed = 0;
    for delay in delays {
        let mut child = lattice
            .command(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn ark-lattice");
        std::thread::sleep(*delay);
        if child.try_wait().unwrap().is_none() {
            let _ = child.kill();
            killed += 1;
        }
        let _ = child.wait();
        let stats = lattice.run(&["stats", "--json"]);
        assert_eq!(
            stats.code, 0,
            "the store does not open after a kill at {delay:?}: {}",
            stats.stderr
        );
        check(lattice);
    }
    killed
}

#[test]
fn kill_during_import_leaves_whole_batches_and_the_next_import_completes() {
    const TOTAL: usize = 6_000;
    // IMPORT_BATCH in src/config.rs: one transaction per batch.
    const BATCH: u64 = 2000;
    let lattice = Lattice::new("crash-import");
    let file = lattice
        .dir
        .file("records.ndjson", &records("imported", TOTAL));
    let path = file.to_str().unwrap();
    // How long a whole import takes here spreads the kills over it.
    let timing = Lattice::new("crash-import-timing");
    let started = Instant::now();
    timing.run(&["import", path]).ok();
    let full = started.elapsed();
    let delays: Vec<Duration> = (1..=4).map(|sixth| full * sixth / 6).collect();
    let mut partial_seen = false;
    let killed = kill_repeatedly(&lattice, &["import", path], &delays, &mut |lattice| {
        let nodes = count(field(&lattice.stats(), "nodes"));
        assert_eq!(
            nodes % BATCH,
            0,
            "{nodes} records: a batch was half applied"
        );
        partial_seen |= nodes > 0 && nodes < TOTAL as u64;
    });
    assert!(
        killed > 0,
        "no import was killed (a whole import took {full:?})"
    );
    let done = lattice.run(&["import", "--json", path]).ok().json();
    let created = count(field(&done, "imported"));
    let unchanged = count(field(&done, "unchanged"));
    assert_eq!(created + unchanged, TOTAL as u64);
    assert_eq!(
        lattice.hashes(),
        timing.hashes(),
        "the same records as an uncut import"
    );
    eprintln!(
        "import: {killed} of {} runs killed, a partial store seen: {partial_seen}",
        delays.len()
    );
}

/// The side of a sync that is killed.
#[derive(Debug, Clone, Copy)]
enum Victim {
    /// The one that started the sync (`federation sync` runs in its server).
    Initiator,
    /// The one it syncs with.
    Peer,
}

/// `initiator` syncs with `peer` (600 and 1,500 records of their own, so batches of 500) through a proxy
/// that cuts the `cut_at`-th request with `marker` after 64 bytes of its answer; at that
/// moment `victim` is killed. Both restart, the sync is repeated until it succeeds, and
/// both must then hold the union of both sides, with nothing lost.
fn kill_mid_sync(marker: &str, cut_at: usize, victim: Victim) {
    let name = marker.rsplit('/').next().unwrap();
    let peer = Lattice::new(&format!("crash-{name}-peer"));
    let peer_file = peer.dir.file("peer.ndjson", &records("peer", 1500));
    peer.import(&peer_file).ok();
    let initiator = Lattice::new(&format!("crash-{name}-initiator"));
    let own_file = initiator.dir.file("own.ndjson", &records("own", 600));
    initiator.import(&own_file).ok();
    let mut peer = Node::serve(peer, &[], &[]);
    let mut initiator = Node::serve(initiator, &[], &[]);
    peer.trust(&initiator);
    initiator.trust(&peer);
    let proxy = CuttingProxy::new(peer.port, marker, cut_at, 64);
    initiator.add_peer(&proxy.url());
    let expected: BTreeMap<String, String> = peer
        .hashes()
        .into_iter()
        .chain(initiator.hashes())
        .collect();

    let sync = initiator
        .command(&["federation", "sync", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let cut = proxy.wait_cut(Duration::from_secs(60));
    match victim {
        Victim::Initiator => initiator.kill(),
        Victim::Peer => peer.kill(),
    }
    let interrupted = sync.wait_with_output().unwrap();
    assert!(
        cut,
        "the proxy never cut request {cut_at} with {marker:?}; requests: {:?}\n{}",
        proxy.marked_requests(),
        String::from_utf8_lossy(&interrupted.stderr)
    );
    assert_ne!(
        interrupted.status.code(),
        Some(0),
        "the sync was cut, it cannot have succeeded"
    );
    // Each store opens on its own after the kill, before any restart.
    for node in [&initiator, &peer] {
        if !node.is_running() {
            node.run(&["stats", "--json"]).ok();
        }
    }
    for node in [&mut initiator, &mut peer] {
        if !node.is_running() {
            node.restart();
        }
    }
    proxy.pass_through(peer.port);
    let mut attempts = 0;
    loop {
        attempts += 1;
        let answer = initiator.sync();
        if bool_of(field(&array(field(&answer, "result"))[0], "success")) {
            break;
        }
        assert!(
            attempts < 5,
            "no successful sync after the kill: {}",
            miniserde::json::to_string(&answer)
        );
    }
    // One more round carries what the peer pulled back, if anything was left.
    initiator.sync();
    for (side, node) in [("initiator", &initiator), ("peer", &peer)] {
        let held = node.hashes();
        assert!(
            held == expected,
            "{marker} cut, {victim:?} killed: the {side} holds {} of {} records",
            held.len(),
            expected.len()
        );
    }
}

#[test]
fn kill_the_applying_side_during_a_fetched_batch() {
    kill_mid_sync("POST /federation/v2/fetch", 2, Victim::Initiator);
}

#[test]
fn kill_the_sending_side_during_a_fetched_batch() {
    kill_mid_sync("POST /federation/v2/fetch", 2, Victim::Peer);
}

#[test]
fn kill_the_applying_side_during_a_pushed_batch() {
    kill_mid_sync("POST /federation/v2/push", 2, Victim::Peer);
}

#[test]
fn kill_the_sending_side_during_a_pushed_batch() {
    kill_mid_sync("POST /federation/v2/push", 2, Victim::Initiator);
}

/// The signature formats of this instance's records `ids`, read with the library (which
/// does not migrate a store opened without a signer).
fn signature_formats(
    lattice: &Lattice,
    key: &ark_lattice::trust::KeyPair,
    ids: &[String],
) -> BTreeMap<String, u64> {
    use ark_lattice::model::SignatureFormat;
    let store = ark_lattice::store::Store::open(
        &lattice.data_dir().join("lattice.redb"),
        &ark_lattice::store::StoreOptions::default(),
        key.public_key().instance_id(),
    )
    .expect("the store opens after a kill");
    let mut formats = BTreeMap::new();
    for id in ids {
        let record = store.get(id).unwrap().expect("no record is lost");
        let name = match record.meta.signature.map(|signature| signature.format) {
            Some(SignatureFormat::V1) => "format 1",
            Some(SignatureFormat::V2) => "format 2",
            None => "unsigned",
        };
        *formats.entry(name.to_owned()).or_insert(0) += 1;
    }
    formats
}

/// Makes the store in `lattice` what a schema 1 build left: format 1 signatures.
fn rewrite_as_schema_1(lattice: &Lattice, key: &ark_lattice::trust::KeyPair) {
    let mut store = ark_lattice::store::Store::open(
        &lattice.data_dir().join("lattice.redb"),
        &ark_lattice::store::StoreOptions::default(),
        key.public_key().instance_id(),
    )
    .unwrap();
    store
        .rewrite_as_schema_1(&|bytes, version| {
            *ark_lattice::trust::sign_record_v1(key, bytes, version)
                .unwrap()
                .as_bytes()
        })
        .unwrap();
}

#[test]
fn kill_during_the_signature_migration_leaves_the_old_store_or_the_migrated_one() {
    const TOTAL: usize = 4_000;
    let lattice = Lattice::new("crash-migrate");
    let file = lattice
        .dir
        .file("records.ndjson", &records("signed", TOTAL));
    lattice.run(&["import", file.to_str().unwrap()]).ok();
    let key = ark_lattice::trust::KeyPair::load(&lattice.data_dir().join("identity.key")).unwrap();
    let ids: Vec<String> = (0..TOTAL)
        .map(|index| format!("signed_{index:05}"))
        .collect();
    let all = |format: &str| BTreeMap::from([(format.to_owned(), TOTAL as u64)]);
    // How long a whole migration takes here spreads the kills over it.
    rewrite_as_schema_1(&lattice, &key);
    let started = Instant::now();
    lattice.run(&["stats"]).ok();
    let full = started.elapsed();
    assert_eq!(signature_formats(&lattice, &key, &ids), all("format 2"));
    let mut outcomes = BTreeMap::new();
    for sixth in 1..=5 {
        rewrite_as_schema_1(&lattice, &key);
        let mut child = lattice
            .command(&["stats"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn ark-lattice");
        std::thread::sleep(full * sixth / 6);
        let _ = child.kill();
        let _ = child.wait();
        let formats = signature_formats(&lattice, &key, &ids);
        assert!(
            formats == all("format 1") || formats == all("format 2"),
            "a kill at {sixth}/6 of the migration left {formats:?}"
        );
        *outcomes
            .entry(formats.into_keys().next().unwrap())
            .or_insert(0) += 1;
        // The next run finishes the work.
        lattice.run(&["stats"]).ok();
        assert_eq!(signature_formats(&lattice, &key, &ids), all("format 2"));
    }
    println!("migration of {TOTAL} records took {full:?}; kills left {outcomes:?}");
}

/// A large push commits its chunks without waiting for the disk and makes them durable
/// every 2,000 records and before it answers (issue 10). Killed in between, the node
/// comes back with whole batches of 2,000 only, a change feed without gaps, and the
/// pusher, never answered, sends the push again and it completes.
#[test]
fn kill_during_a_large_push_leaves_whole_chunks_and_the_push_again_completes() {
    use crate::attacks::{LEGIT, legacy_push, legacy_push_body, request_from};
    const TOTAL: u64 = 12_000;
    // APPLY_CHUNK × DURABLE_EVERY_CHUNKS in src/server/peer_api.rs: deferred chunks
    // are made durable that often.
    const CHUNK: u64 = 2_000;
    let mut node = Node::start_with("crash-push", &[("FEDERATION_TRUST", "open")], &[]);
    let body = legacy_push_body(TOTAL as usize);
    let node_count = |node: &Node| {
        let (status, info) =
            request_from(LEGIT, node.address(), "GET", "/federation/info", &[], b"").unwrap();
        assert_eq!(status, 200, "{info}");
        count(field(
            &miniserde::json::from_str(&info).unwrap(),
            "nodeCount",
        ))
    };
    let address = node.address();
    let pushed = body.clone();
    let pusher = std::thread::spawn(move || legacy_push(address, pushed.as_bytes()));
    // Killed once some chunks are applied (and read back), before the answer.
    let started = Instant::now();
    let mut seen = 0;
    while seen == 0 && !pusher.is_finished() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no chunk applied"
        );
        seen = node_count(&node);
    }
    assert!(!pusher.is_finished(), "the push finished before a kill");
    node.kill();
    assert!(
        !matches!(pusher.join().unwrap(), Ok((200, _))),
        "answered before the kill"
    );
    assert!(seen < TOTAL, "{seen} records seen before the kill");
    node.restart();
    let kept = node_count(&node);
    assert_eq!(
        kept % CHUNK,
        0,
        "{kept} records kept: not whole durable batches"
    );
    // The feed read to its end: its last sequence and how many records it listed.
    let feed = |node: &Node| {
        let (mut after, mut listed) = (0, 0);
        loop {
            let path = format!("/federation/v2/changes?after={after}&limit=1000");
            let (status, page) =
                request_from(LEGIT, node.address(), "GET", &path, &[], b"").unwrap();
            assert_eq!(status, 200, "{page}");
            let page: miniserde::json::Value = miniserde::json::from_str(&page).unwrap();
            after = count(field(&page, "last_seq"));
            listed += array(field(&page, "records")).len() as u64;
            if !bool_of(field(&page, "more")) {
                return (after, listed);
            }
        }
    };
    assert_eq!(feed(&node), (kept, kept), "gaps in the feed");
    let (status, answer) = legacy_push(node.address(), body.as_bytes()).unwrap();
    assert_eq!(status, 200, "{answer}");
    assert_eq!(node_count(&node), TOTAL);
    assert_eq!(feed(&node), (TOTAL, TOTAL));
    node.stop();
    let verify = node.run(&["verify"]);
    assert_eq!(verify.code, 0, "{}{}", verify.stdout, verify.stderr);
}
