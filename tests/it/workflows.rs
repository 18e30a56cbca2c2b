//! Trust that fits the guide's workflows (issue 11): a refused peer learns where and
//! what to accept; a peer added while offline gets its key pinned at first contact; one
//! node reached under two names is one peer.

use miniserde::json;

use crate::trust::Server;
use crate::util::{CannedPeer, array, count, field, text};

#[test]
fn a_one_sided_add_peer_says_which_node_must_accept_and_how() {
    let a = Server::start("one-sided-a", &[], &[]);
    let b = Server::start("one-sided-b", &[], &[]);
    a.lattice.run(&["federation", "add-peer", &b.url()]).ok();
    let result = a.sync();
    let error = text(field(&result, "error")).to_owned();
    let b_name = text(field(&b.status(), "instanceName")).to_owned();
    let a_fingerprint = a.fingerprint();
    for expected in [
        format!("not trusted by {b_name}"),
        format!("run on that node: ark-lattice trust accept {a_fingerprint}"),
    ] {
        assert!(error.contains(&expected), "{expected:?} missing: {error}");
    }
    // A refusal waits for the next round rather than backing off from seconds.
    assert_eq!(text(field(&result, "failureKind")), "refused");
    // Running the command there, as printed, is all it takes.
    b.lattice.run(&["trust", "accept", &a_fingerprint]).ok();
    let result = a.sync();
    assert!(
        matches!(
            field(&result, "success"),
            miniserde::json::Value::Bool(true)
        ),
        "{}",
        json::to_string(&result)
    );
}

#[test]
fn a_peer_added_while_offline_gets_its_key_pinned_at_first_contact() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let a = Server::start("offline-a", &[], &[]);
    let pi_url = format!("http://127.0.0.1:{port}");
    let run = a.lattice.run(&["federation", "add-peer", &pi_url]).ok();
    assert!(run.stdout.contains("pinned"), "{}", run.stdout);
    let peers = a
        .lattice
        .run(&["federation", "list-peers", "--json"])
        .ok()
        .json();
    let peer = &array(field(&peers, "peers"))[0];
    assert!(
        matches!(
            field(peer, "keyPinnedAtFirstContact"),
            miniserde::json::Value::Bool(true)
        ),
        "{}",
        json::to_string(&peers)
    );
    let human = a.lattice.run(&["federation", "list-peers"]).ok();
    assert!(
        human.stdout.contains("key-at-first-contact"),
        "{}",
        human.stdout
    );
    // The Pi comes online and lets A in; A's next sync pins the Pi's key and syncs.
    let pi = Server::start("offline-pi", &["--port", &port.to_string()], &[]);
    pi.lattice
        .run(&["add", "--id", "from_the_pi", "--type", "t", "--value", "v"])
        .ok();
    pi.lattice.run(&["trust", "add", &a.public_key()]).ok();
    let result = a.sync();
    assert_eq!(
        count(field(&result, "nodesReceived")),
        1,
        "{}",
        json::to_string(&result)
    );
    let trusted = a.lattice.run(&["trust", "list", "--json"]).ok().stdout;
    assert!(trusted.contains(&pi.fingerprint()), "{trusted}");
    let peers = a
        .lattice
        .run(&["federation", "list-peers", "--json"])
        .ok()
        .stdout;
    assert!(!peers.contains("keyPinnedAtFirstContact"), "{peers}");
}

#[test]
fn one_node_under_two_names_is_one_peer() {
    let a = Server::start("names-a", &[], &[]);
    let b = Server::start("names-b", &[], &[]);
    a.lattice.run(&["federation", "add-peer", &b.url()]).ok();
    let other_name = format!("http://localhost:{}", b.port);
    let run = a.lattice.run(&["federation", "add-peer", &other_name]).ok();
    assert!(
        run.stdout.contains("is the same node") && run.stdout.contains(&b.url()),
        "{}",
        run.stdout
    );
    let peers = a
        .lattice
        .run(&["federation", "list-peers", "--json"])
        .ok()
        .json();
    assert_eq!(count(field(&peers, "count")), 1);
}

/// Issue 15: a failed sync says what kind of failure it was (no answer, a refusal, a
/// failing peer), which is what its retry waits by.
#[test]
fn a_failed_sync_says_what_kind_of_failure_it_was() {
    fn check(peer_url: &str, expected: &str) {
        let a = Server::start("failure-kind", &[], &[]);
        a.lattice
            .run(&[
                "federation",
                "add-peer",
                peer_url,
                "--pubkey",
                &crate::util::spare_key(),
            ])
            .ok();
        let result = a.sync();
        assert_eq!(
            text(field(&result, "failureKind")),
            expected,
            "{peer_url}: {}",
            json::to_string(&result)
        );
    }
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    check(&format!("http://127.0.0.1:{closed}"), "unreachable");
    let failing = CannedPeer::start(Some("503 Service Unavailable"));
    check(&failing.url(), "peer_failing");
    let overloaded = CannedPeer::start(Some("429 Too Many Requests"));
    check(&overloaded.url(), "peer_failing");
    let refusing = CannedPeer::start(Some("401 Unauthorized"));
    check(&refusing.url(), "refused");
}
