//! Auto-sync timing as the README promises it: a round at start, and a failing peer
//! retried after 5 s, then 10 s (doubling, with up to half taken off at random), not at
//! the next interval. The margins are wide; these check behaviour, not speed.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::util::{Node, eventually};

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

/// A "hub" that answers every request with 503 and notes when each sync began (its
/// `GET /federation/info`).
struct FailingPeer {
    port: u16,
    info_requests: Arc<Mutex<Vec<Instant>>>,
}

impl FailingPeer {
    fn start() -> FailingPeer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let info_requests = Arc::new(Mutex::new(Vec::new()));
        let noted = info_requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let mut head = Vec::new();
                let mut buffer = [0; 4096];
                while !head.windows(4).any(|window| window == b"\r\n\r\n") {
                    match stream.read(&mut buffer) {
                        Ok(0) | Err(_) => break,
                        Ok(read) => head.extend_from_slice(&buffer[..read]),
                    }
                }
                if head.starts_with(b"GET /federation/info ") {
                    noted.lock().unwrap().push(Instant::now());
                }
                let _ = stream.write_all(
                    b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                );
            }
        });
        FailingPeer {
            port,
            info_requests,
        }
    }

    fn attempts(&self) -> Vec<Instant> {
        self.info_requests.lock().unwrap().clone()
    }
}

#[test]
fn a_failing_peer_is_retried_after_5_s_then_10_s() {
    let peer = FailingPeer::start();
    let hub_url = format!("http://127.0.0.1:{}", peer.port);
    let started = Instant::now();
    let node = Node::start_with(
        "retry",
        &[
            AUTO_SYNC,
            ("FEDERATION_MODE", "hub"),
            ("FEDERATION_HUB_URL", &hub_url),
        ],
        &[],
    );
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
