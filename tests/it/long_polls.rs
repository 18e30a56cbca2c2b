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

/// A changes request's answer as sent: status, whether it came gzip-compressed, and the
/// body bytes exactly as on the wire.
struct RawAnswer {
    status: u16,
    gzip: bool,
    body: Vec<u8>,
}

impl RawAnswer {
    /// The body as text, gunzipped if it came compressed.
    fn text(&self) -> String {
        if !self.gzip {
            return String::from_utf8_lossy(&self.body).into_owned();
        }
        let mut text = String::new();
        flate2::read::GzDecoder::new(&self.body[..])
            .read_to_string(&mut text)
            .expect("a gzip body");
        text
    }
}

/// Sends `GET /federation/v2/changes?QUERY` (gzip accepted, `Connection: close`) on a new
/// connection from `source` at once, and reads its answer on a thread of its own, so
/// many long-polls can wait side by side.
fn changes_in_background(
    source: Ipv4Addr,
    server: SocketAddr,
    query: String,
) -> std::thread::JoinHandle<RawAnswer> {
    let mut stream = connect_from(source, server).unwrap();
    write!(
        stream,
        "GET /federation/v2/changes?{query} HTTP/1.1\r\nHost: {server}\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    std::thread::spawn(move || {
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut raw = Vec::new();
        let _ = stream.read_to_end(&mut raw);
        let split = raw
            .windows(4)
            .position(|window| window == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("no answer to changes?{query}"));
        let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
        RawAnswer {
            status: head
                .split(' ')
                .nth(1)
                .and_then(|code| code.parse().ok())
                .unwrap_or(0),
            gzip: head.contains("content-encoding: gzip"),
            body: raw[split + 4..].to_vec(),
        }
    })
}

/// `ark_lattice_changes_pages_total{source=SOURCE}`.
fn pages_counted(node: &Node, source: &str) -> u64 {
    let metrics = crate::util::http(node.address(), "GET", "/metrics", &[], None).body;
    let name = format!("ark_lattice_changes_pages_total{{source=\"{source}\"}} ");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&name))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics:\n{metrics}"))
}

#[test]
fn long_polls_woken_at_one_position_get_one_page_and_others_their_own() {
    // Issue 13: one commit used to make every woken long-poll read, encode and compress
    // its own copy of the same page.
    let node = Node::start_with("shared-pages", &[("FEDERATION_TRUST", "open")], &[]);
    let server = node.address();
    let waiters = 20;
    let same: Vec<_> = (0..waiters)
        .map(|index| {
            let source = Ipv4Addr::new(127, 0, 2, 1 + index as u8);
            changes_in_background(source, server, "after=0&wait=25".into())
        })
        .collect();
    let source = Ipv4Addr::new(127, 0, 2, 100);
    let other_type = changes_in_background(source, server, "after=0&types=other&wait=25".into());
    let source = Ipv4Addr::new(127, 0, 2, 101);
    let smaller = changes_in_background(source, server, "after=0&limit=2&wait=25".into());
    assert!(
        crate::util::eventually(Duration::from_secs(10), || {
            pages_counted(&node, "read") + pages_counted(&node, "shared") >= waiters as u64 + 2
        }),
        "the long-polls never reached the node"
    );
    let read_before = pages_counted(&node, "read");

    // Five records of about 400 bytes each: a page well over the 1 KiB gzip threshold.
    let dir = TempDir::new("shared-pages-records");
    let lines: String = (0..5)
        .map(|index| {
            format!(
                "{{\"id\":\"shared_{index}\",\"type\":\"template_node\",\"value\":\"{}\"}}\n",
                "v".repeat(400)
            )
        })
        .collect();
    node.import(&dir.file("five.ndjson", &lines)).ok();

    let answers: Vec<RawAnswer> = same
        .into_iter()
        .map(|waiter| waiter.join().unwrap())
        .collect();
    let first = &answers[0];
    assert_eq!(first.status, 200);
    assert!(first.gzip, "a page of five records is sent compressed");
    let page = first.text();
    for index in 0..5 {
        assert!(page.contains(&format!("\"shared_{index}\"")), "{page}");
    }
    for answer in &answers {
        assert_eq!(answer.status, 200);
        assert!(
            answer.body == first.body,
            "waiters at one position got different pages"
        );
    }
    // One read for the twenty (a second if the import took two commits), and one for
    // each waiter that asked for something else.
    let reads = pages_counted(&node, "read") - read_before;
    assert!(reads <= 5, "{reads} pages read for 22 long-polls");

    let smaller = smaller.join().unwrap();
    assert_eq!(smaller.status, 200);
    let smaller_page = smaller.text();
    assert!(smaller_page.contains("\"shared_1\"") && !smaller_page.contains("\"shared_2\""));
    assert!(smaller_page.contains("\"more\":true"), "{smaller_page}");
    // A filter no record passes: this waiter is answered with its own empty page (its
    // position moved past the records) or goes on waiting until its wait is over.
    let other_type = other_type.join().unwrap();
    assert_eq!(other_type.status, 200);
    let other_page = other_type.text();
    assert!(other_page.contains("\"records\":[]"), "{other_page}");
    assert!(!other_page.contains("shared_0"), "{other_page}");

    // A request at another position is its own page: it starts after that position.
    let later = changes_in_background(Ipv4Addr::new(127, 0, 2, 102), server, "after=2".into());
    let later_page = later.join().unwrap().text();
    assert!(!later_page.contains("\"shared_1\"") && later_page.contains("\"shared_2\""));
}
