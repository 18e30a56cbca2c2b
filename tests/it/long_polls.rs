//! Long-polls beyond the request connection caps (issue 13): a hub's watching spokes
//! hold `changes?wait=` requests for up to 25 s each, and more of them than
//! `--max-connections` (256) in all, or than `--max-connections-per-address` (32) from
//! one address, must neither be cut nor keep ordinary requests out.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::attacks::{LEGIT, allow_open_files, connect_from, request_from};
use crate::util::{Node, TempDir};

/// Sends one unsigned long-poll (the node runs with `FEDERATION_TRUST=open`) on a new
/// connection from `source`.
fn hold_long_poll(source: Ipv4Addr, server: SocketAddr) -> TcpStream {
    let mut stream = connect_from(source, server).unwrap();
    write!(
        stream,
        "GET /federation/v2/changes?after=0&wait=25 HTTP/1.1\r\nHost: {server}\r\n\r\n"
    )
    .unwrap();
    stream
}

/// Reads what the server sent on `stream` until `needle` appears, the connection ends
/// or `deadline` passes; whether it appeared after a 200 status line.
fn answered_with(stream: &mut TcpStream, needle: &str, deadline: Instant) -> bool {
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    while Instant::now() < deadline {
        let left = deadline.saturating_duration_since(Instant::now());
        stream
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(read) => received.extend_from_slice(&buffer[..read]),
        }
        let text = String::from_utf8_lossy(&received);
        if text.contains(needle) {
            return text.starts_with("HTTP/1.1 200");
        }
    }
    false
}

#[test]
fn long_polls_beyond_the_connection_caps_are_held_while_requests_are_answered() {
    allow_open_files(4096);
    let node = Node::start_with("long-polls", &[("FEDERATION_TRUST", "open")], &[]);
    let server = node.address();
    // 40 from one address (its request share is 32), then 300 more from 15 others:
    // 340 in all, over the total of 256.
    // Sent in groups with pauses, as watching spokes arrive over time: a connection
    // whose request has not been read yet is an ordinary one, and a burst of them over
    // a cap would make the server shed some, as it should.
    let crowded = Ipv4Addr::new(127, 0, 0, 9);
    let pause = || std::thread::sleep(Duration::from_millis(500));
    let mut polls: Vec<TcpStream> = (0..30).map(|_| hold_long_poll(crowded, server)).collect();
    pause();
    polls.extend((0..10).map(|_| hold_long_poll(crowded, server)));
    for group in 0..3 {
        pause();
        polls.extend((0..100).map(|index| {
            let index = group * 100 + index;
            let source = Ipv4Addr::new(127, 0, 0, 10 + (index / 20) as u8);
            hold_long_poll(source, server)
        }));
    }
    std::thread::sleep(Duration::from_secs(1));

    // Ordinary requests are answered at once, from elsewhere and from the crowded
    // address alike, several of them side by side.
    for source in [LEGIT, crowded] {
        let open: Vec<TcpStream> = (0..8)
            .map(|_| connect_from(source, server).unwrap())
            .collect();
        for mut stream in open {
            let started = Instant::now();
            write!(
                stream,
                "GET /health HTTP/1.1\r\nHost: {server}\r\nConnection: close\r\n\r\n"
            )
            .unwrap();
            let mut answer = String::new();
            let _ = stream.read_to_string(&mut answer);
            assert!(
                answer.starts_with("HTTP/1.1 200"),
                "/health from {source} while 340 long-polls are held: {answer:?}"
            );
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "/health from {source} took {:?}",
                started.elapsed()
            );
        }
    }
    let (status, _) = request_from(LEGIT, server, "GET", "/federation/info", &[], b"").unwrap();
    assert_eq!(status, 200);

    // Every long-poll is still held: a write reaches each of them.
    let dir = TempDir::new("long-polls-record");
    let record = dir.file(
        "one.ndjson",
        "{\"id\":\"watched_record\",\"type\":\"template_node\",\"value\":\"v\"}\n",
    );
    node.import(&record).ok();
    let deadline = Instant::now() + Duration::from_secs(20);
    let delivered = polls
        .iter_mut()
        .map(|poll| answered_with(poll, "watched_record", deadline))
        .filter(|delivered| *delivered)
        .count();
    assert_eq!(delivered, 340, "long-polls that received the write");
}

/// Runs `node`'s `get ID` until it succeeds; how long that took, or `None` by `within`.
fn arrival(node: &Node, id: &str, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < within {
        if node.run(&["get", id]).code == 0 {
            return Some(started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

#[test]
fn a_watching_spoke_pushes_its_own_write_without_waiting_for_its_long_poll() {
    let hub = Node::start("watch-push-hub");
    let spoke = Node::start_with("watch-push-spoke", &[], &["--watch"]);
    hub.trust(&spoke);
    spoke.trust(&hub);
    spoke.add_peer(&hub.url());
    hub.run(&["add", "--id", "from-hub", "--type", "t", "--value", "v"])
        .ok();
    // The watcher starts within its 5-second scan of the peer list, then holds a
    // long-poll at the hub (20 s) once it has the hub's record.
    assert!(
        arrival(&spoke, "from-hub", Duration::from_secs(20)).is_some(),
        "the spoke's watcher never synced"
    );
    std::thread::sleep(Duration::from_secs(1));
    spoke
        .run(&["add", "--id", "from-spoke", "--type", "t", "--value", "v"])
        .ok();
    let took = arrival(&hub, "from-spoke", Duration::from_secs(15));
    assert!(
        took.is_some_and(|took| took < Duration::from_secs(8)),
        "the spoke's write reached the hub after {took:?}, not before its long-poll ended"
    );
}
