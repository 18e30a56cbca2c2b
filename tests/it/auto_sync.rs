//! Auto-sync timing as the README promises it: a round at start, and a peer that does
//! not answer retried after 5 s, then 10 s (doubling, with up to half taken off at
//! random), one that answers 5xx after 30 s, not at the next interval. The margins are
//! wide; these check behaviour, not speed.

use std::time::{Duration, Instant};

use crate::util::{CannedPeer, Node, eventually};

/// The default interval (5 minutes) is left in place, so anything that happens within
/// the test's seconds is the start round or a retry, never an interval tick.
const AUTO_SYNC: (&str, &str) = ("FEDERATION_AUTO_SYNC", "true");

#[test]
fn auto_sync_syncs_at_start() {
    let a = Node::start("start-a");
    let mut b = Node::start_with("start-b", &[AUTO_SYNC], &[]);
    a.add_peer(&b.url());
    b.add_peer(&a.url());
    a.run(&[
        "add",
        "--id",
        "written-before-restart",
        "--type",
        "t",
        "--value",
        "v",
    ])
    .ok();
    // No round is due for minutes: the record stays at A until B starts again.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        b.run(&["get", "written-before-restart"]).code,
        4,
        "B synced before its restart"
    );
    b.restart();
    let synced = eventually(Duration::from_secs(15), || {
        b.run(&["get", "written-before-restart"]).code == 0
    });
    assert!(synced, "B did not sync at start:\n{}", b.log());
}

/// Starts an auto-syncing spoke of `peer`.
fn spoke_of(peer: &CannedPeer, name: &str) -> Node {
    let hub_url = format!("http://127.0.0.1:{}", peer.port);
    Node::start_with(
        name,
        &[
            AUTO_SYNC,
            ("FEDERATION_MODE", "hub"),
            ("FEDERATION_HUB_URL", &hub_url),
        ],
        &[],
    )
}

#[test]
fn a_peer_that_does_not_answer_is_retried_after_5_s_then_10_s() {
    let peer = CannedPeer::start(None);
    let started = Instant::now();
    let node = spoke_of(&peer, "retry");
    let three = eventually(Duration::from_secs(30), || peer.attempts().len() >= 3);
    let attempts = peer.attempts();
    assert!(
        three,
        "{} attempts within 30 s:\n{}",
        attempts.len(),
        node.log()
    );
    let first = attempts[0].duration_since(started);
    let second = attempts[1].duration_since(attempts[0]);
    let third = attempts[2].duration_since(attempts[1]);
    eprintln!("first attempt after {first:?}, retries after {second:?} and {third:?}");
    // The first at start; the retries 2.5-5 s and 5-10 s after the failure before.
    assert!(
        first < Duration::from_secs(10),
        "first attempt after {first:?}"
    );
    assert!(
        (Duration::from_secs(2)..Duration::from_secs(8)).contains(&second),
        "first retry after {second:?}"
    );
    assert!(
        (Duration::from_millis(4500)..Duration::from_secs(14)).contains(&third),
        "second retry after {third:?}"
    );
}

/// Issue 15: a peer that answers 5xx is up but failing; it gets longer to recover than a
/// link that dropped: 15-30 s (30 s with up to half taken off), not 2.5-5 s.
#[test]
fn a_peer_answering_503_is_retried_after_30_s() {
    let peer = CannedPeer::start(Some("503 Service Unavailable"));
    let node = spoke_of(&peer, "retry-503");
    let two = eventually(Duration::from_secs(50), || peer.attempts().len() >= 2);
    let attempts = peer.attempts();
    assert!(
        two,
        "{} attempts within 50 s:\n{}",
        attempts.len(),
        node.log()
    );
    let retry = attempts[1].duration_since(attempts[0]);
    eprintln!("retry after {retry:?}");
    assert!(
        (Duration::from_secs(14)..Duration::from_secs(40)).contains(&retry),
        "retry after {retry:?}"
    );
}
