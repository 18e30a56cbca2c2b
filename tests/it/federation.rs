//! Federation between running instances, the federation issue's acceptance list:
//! convergence in a line of three, conflicts and deletes, hub mode, ARK's wire protocol
//! (against a shell script and a fake ARK peer), the control API guard, resuming an
//! interrupted sync, and restarting after kill -9; plus regressions found on the way.
//!
//! Every test starts real `serve` processes on 127.0.0.1, port 0, each with its own
//! temp state dir; [`Node`] kills them when the test ends, passing or not.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::net::TcpListener;
use std::time::{Duration, Instant};

use miniserde::json::{self, Value};

use crate::fake_ark::FakeArk;
use crate::util::{
    CuttingProxy, Lattice, Node, array, bool_of, count, eventually, field, http, records_of,
    shared_data, spare_key, text,
};

const ARK_FILE: &str = "ark-lattice-nodes.json";
const TOPIC_FILES: [&str; 2] = [
    "code-lattice-complete-nodes.json",
    "security-pentesting-nodes.json",
];

type Hashes = BTreeMap<String, String>;

/// The ids of the records in shared data files (`None` when the data is missing).
fn ids_in(names: &[&str]) -> Option<BTreeSet<String>> {
    let mut ids = BTreeSet::new();
    for name in names {
        ids.extend(records_of(name)?.into_iter().map(|(id, _, _)| id));
    }
    Some(ids)
}

/// Imports shared data files into a state dir without a server.
fn import(lattice: &Lattice, names: &[&str]) {
    let mut args = vec!["import".to_owned()];
    for name in names {
        args.push(shared_data(name).unwrap().to_str().unwrap().to_owned());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    lattice.run(&args).ok();
}

/// What differs between two id -> hash maps, at most ten lines of it.
fn diff(left_name: &str, left: &Hashes, right_name: &str, right: &Hashes) -> String {
    let mut lines = Vec::new();
    for (id, hash) in left {
        match right.get(id) {
            None => lines.push(format!("{id}: only on {left_name}")),
            Some(other) if other != hash => {
                lines.push(format!("{id}: {left_name} {hash}, {right_name} {other}"))
            }
            Some(_) => {}
        }
    }
    for id in right.keys().filter(|id| !left.contains_key(*id)) {
        lines.push(format!("{id}: only on {right_name}"));
    }
    let total = lines.len();
    lines.truncate(10);
    if total > 10 {
        lines.push(format!("... {} more", total - 10));
    }
    format!(
        "{left_name} ({}) vs {right_name} ({}), {total} difference(s):\n  {}",
        left.len(),
        right.len(),
        lines.join("\n  ")
    )
}

/// `Ok` with the shared map when every node holds exactly `expected` ids with the same
/// hashes; otherwise what differs.
fn converged(nodes: &[(&str, &Node)], expected: &BTreeSet<String>) -> Result<Hashes, String> {
    let maps: Vec<(&str, Hashes)> = nodes
        .iter()
        .map(|(name, node)| (*name, node.hashes()))
        .collect();
    let (first_name, first) = &maps[0];
    let ids: BTreeSet<String> = first.keys().cloned().collect();
    if &ids != expected {
        let missing: Vec<&String> = expected.difference(&ids).take(10).collect();
        let extra: Vec<&String> = ids.difference(expected).take(10).collect();
        return Err(format!(
            "{first_name} holds {} of {} expected ids; missing (first 10): {missing:?}; unexpected: {extra:?}",
            ids.len(),
            expected.len()
        ));
    }
    for (name, map) in &maps[1..] {
        if map != first {
            return Err(diff(first_name, first, name, map));
        }
    }
    Ok(maps.into_iter().next().unwrap().1)
}

/// Runs `federation sync` on each node in order, `rounds` times, checking each sync
/// succeeded; the round after which they had converged, if any.
fn sync_rounds(
    nodes: &[(&str, &Node)],
    expected: &BTreeSet<String>,
    max_rounds: usize,
) -> Result<usize, String> {
    let mut last = String::new();
    for round in 1..=max_rounds {
        for (name, node) in nodes {
            let answer = node.sync();
            for result in array(field(&answer, "result")) {
                assert!(
                    bool_of(field(result, "success")),
                    "round {round}, sync on {name}: {}",
                    json::to_string(result)
                );
            }
        }
        match converged(nodes, expected) {
            Ok(_) => return Ok(round),
            Err(problems) => last = problems,
        }
    }
    Err(last)
}

/// A line of three: A and C know only B; B knows both.
fn line_of_three(prefix: &str, env: &[(&str, &str)]) -> (Node, Node, Node) {
    let a = Lattice::new(&format!("{prefix}-a"));
    let c = Lattice::new(&format!("{prefix}-c"));
    import(&a, &[ARK_FILE]);
    import(&c, &TOPIC_FILES);
    let a = Node::serve(a, env, &[]);
    let b = Node::start_with(&format!("{prefix}-b"), env, &[]);
    let c = Node::serve(c, env, &[]);
    a.add_peer(&b.url());
    b.add_peer(&a.url());
    b.add_peer(&c.url());
    c.add_peer(&b.url());
    (a, b, c)
}

/// A holds ARK's 469 rows, C the 350 topic nodes (every one of them also in A's file,
/// written independently, so C's import is a concurrent edit of A's record). After
/// `federation sync` on A, then B, then C, B and C hold everything; A holds everything
/// after one round only if B happened to push to A after pulling from C, since B syncs
/// both peers concurrently. Information crosses the line A-B-C in at most two rounds.
#[test]
fn three_instances_in_a_line_converge_by_manual_sync() {
    let Some(expected) = ids_in(&[ARK_FILE, TOPIC_FILES[0], TOPIC_FILES[1]]) else {
        return;
    };
    let (a, b, c) = line_of_three("line", &[]);
    let nodes = [("A", &a), ("B", &b), ("C", &c)];
    let rounds = sync_rounds(&nodes, &expected, 2).unwrap_or_else(|problems| {
        panic!("not converged after 2 rounds of sync on A, B, C:\n{problems}")
    });
    eprintln!("converged after {rounds} round(s) of sync on A, B, C");
    // B settled each of the 350 shared ids between A's and C's version: the losers are
    // in its conflict log, and every instance ended with the same winner (checked above).
    let conflicts = b
        .run(&["conflicts", "--json", "--limit", "1000"])
        .ok()
        .json();
    assert!(count(field(&conflicts, "count")) > 0);
    // A finds C, which it did not know, through B.
    let found = a
        .run(&["federation", "discover", "--add", "--json"])
        .ok()
        .json();
    let urls: Vec<&str> = array(field(&found, "peers"))
        .iter()
        .map(|peer| text(field(peer, "url")))
        .collect();
    assert_eq!(urls, [c.url()]);
    let peers = a.run(&["federation", "list-peers", "--json"]).ok().json();
    assert_eq!(count(field(&peers, "count")), 2);
    // One more sync moves nothing: no echo between the instances.
    for (name, node) in nodes {
        for result in array(field(&node.sync(), "result")) {
            assert_eq!(
                (
                    count(field(result, "nodesReceived")),
                    count(field(result, "nodesSent"))
                ),
                (0, 0),
                "{name}: {}",
                json::to_string(result)
            );
        }
    }
}

#[test]
fn three_instances_in_a_line_converge_by_auto_sync() {
    let Some(expected) = ids_in(&[ARK_FILE, TOPIC_FILES[0], TOPIC_FILES[1]]) else {
        return;
    };
    let env = [
        ("FEDERATION_AUTO_SYNC", "true"),
        ("FEDERATION_SYNC_INTERVAL", "300"),
    ];
    let (a, b, c) = line_of_three("auto", &env);
    let nodes = [("A", &a), ("B", &b), ("C", &c)];
    let started = Instant::now();
    let mut last = String::new();
    let done = eventually(Duration::from_secs(30), || {
        match converged(&nodes, &expected) {
            Ok(_) => true,
            Err(problems) => {
                last = problems;
                false
            }
        }
    });
    assert!(done, "auto-sync did not converge within 30 s:\n{last}");
    eprintln!("auto-sync converged in {:?}", started.elapsed());
    let status = b.run(&["federation", "status", "--json"]).ok().json();
    assert!(bool_of(field(&status, "autoSync")));
    assert_eq!(count(field(&status, "syncInterval")), 300);
}

fn node_json(id: &str, value: &str) -> String {
    format!(r#"{{"id":"{id}","type":"template_node","value":"{value}","language":"rust"}}"#)
}

fn value_on(node: &Node, id: &str) -> String {
    let record = node.run(&["get", id, "--json"]).ok().json();
    text(field(&record, "value")).to_owned()
}

#[test]
fn concurrent_edits_resolve_the_same_everywhere_and_deletes_reach_all() {
    let (a, b, c) = {
        let a = Node::start("conflict-a");
        let b = Node::start("conflict-b");
        let c = Node::start("conflict-c");
        a.add_peer(&b.url());
        b.add_peer(&a.url());
        b.add_peer(&c.url());
        c.add_peer(&b.url());
        (a, b, c)
    };
    let nodes = [("A", &a), ("B", &b), ("C", &c)];
    a.run(&["add", "--json", &node_json("shared", "original")])
        .ok();
    a.run(&["add", "--json", &node_json("doomed", "to be deleted")])
        .ok();
    let both: BTreeSet<String> = ["shared", "doomed"].map(String::from).into();
    sync_rounds(&nodes, &both, 2).unwrap_or_else(|problems| panic!("{problems}"));

    // Neither edit has seen the other.
    a.run(&["add", "--json", &node_json("shared", "edited on A")])
        .ok();
    c.run(&["add", "--json", &node_json("shared", "edited on C")])
        .ok();
    sync_rounds(&nodes, &both, 2).unwrap_or_else(|problems| panic!("{problems}"));
    let winner = value_on(&a, "shared");
    for (name, node) in nodes {
        assert_eq!(value_on(node, "shared"), winner, "{name}");
    }
    let (loser_value, loser_node) = match winner.as_str() {
        "edited on A" => ("edited on C", &c),
        "edited on C" => ("edited on A", &a),
        other => panic!("the winner is neither edit: {other}"),
    };
    let losers = |node: &Node| -> Vec<String> {
        let log = node.run(&["conflicts", "--json"]).ok().json();
        array(field(&log, "conflicts"))
            .iter()
            .filter(|entry| text(field(entry, "id")) == "shared")
            .filter_map(|entry| match field(entry, "loser") {
                Value::Null => None,
                loser => Some(text(field(loser, "value")).to_owned()),
            })
            .collect()
    };
    let logged = losers(loser_node);
    assert!(
        logged.iter().any(|value| value == loser_value),
        "the instance whose edit lost keeps it in its conflict log: {logged:?}"
    );
    // The original was an ancestor of both edits, never a conflict.
    for (name, node) in nodes {
        assert!(
            !losers(node).iter().any(|value| value == "original"),
            "{name}"
        );
    }

    c.run(&["delete", "doomed"]).ok();
    let shared: BTreeSet<String> = ["shared".to_owned()].into();
    sync_rounds(&nodes, &shared, 2).unwrap_or_else(|problems| panic!("{problems}"));
    for (name, node) in nodes {
        let run = node.run(&["get", "doomed"]);
        assert_eq!(run.code, 4, "{name}: {} {}", run.stdout, run.stderr);
        assert!(run.stderr.contains("not found"), "{name}: {}", run.stderr);
    }
}

/// Two spokes in hub mode reach each other only through the hub, which has no peers
/// configured: spoke 1 pushes to the hub, spoke 2 pulls that and pushes its own, and
/// spoke 1 pulls spoke 2's on its second sync.
#[test]
fn spokes_in_hub_mode_converge_through_the_hub() {
    let Some(expected) = ids_in(&[ARK_FILE, TOPIC_FILES[0], TOPIC_FILES[1]]) else {
        return;
    };
    let hub = Node::start("hub");
    let hub_url = hub.url();
    let env = [
        ("FEDERATION_MODE", "hub"),
        ("FEDERATION_HUB_URL", hub_url.as_str()),
    ];
    let first = Lattice::new("spoke-1");
    let second = Lattice::new("spoke-2");
    import(&first, &[ARK_FILE]);
    import(&second, &TOPIC_FILES);
    let first = Node::serve(first, &env, &[]);
    let second = Node::serve(second, &env, &[]);
    // The hub trusts both spokes; the spokes trust the hub, which relays their records.
    for spoke in [&first, &second] {
        hub.trust(spoke);
        spoke.trust(&hub);
    }
    let nodes = [("spoke 1", &first), ("spoke 2", &second), ("hub", &hub)];
    for round in 1..=2 {
        for (name, spoke) in [("spoke 1", &first), ("spoke 2", &second)] {
            let answer = spoke.sync();
            let results = array(field(&answer, "result"));
            assert_eq!(results.len(), 1, "{name} syncs with the hub only");
            assert_eq!(text(field(&results[0], "peer")), hub_url);
            assert!(
                bool_of(field(&results[0], "success")),
                "round {round}, {name}"
            );
        }
    }
    converged(&nodes, &expected).unwrap_or_else(|problems| panic!("{problems}"));
    let peers = hub.run(&["federation", "list-peers", "--json"]).ok().json();
    assert_eq!(count(field(&peers, "count")), 0, "the hub has no peers");
}

fn have(program: &str) -> bool {
    std::process::Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|output| output.status.success())
}

/// `tests/it/ark_protocol.sh` speaks ARK's Node.js protocol as its federation guide
/// describes it, with curl, and checks every answer's shape.
#[test]
fn a_script_speaking_arks_protocol_gets_arks_answers() {
    for program in ["curl", "python3", "sh"] {
        if program != "sh" && !have(program) {
            eprintln!("skipped: {program} is not installed");
            return;
        }
    }
    let node = {
        let lattice = Lattice::new("script");
        if shared_data(ARK_FILE).is_some() {
            import(&lattice, &[ARK_FILE]);
        }
        // ARK's unsigned protocol is served in open trust mode only.
        Node::serve(lattice, &[("FEDERATION_TRUST", "open")], &[])
    };
    let peer = Node::start_with("script-peer", &[("FEDERATION_TRUST", "open")], &[]);
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/ark_protocol.sh");
    let output = std::process::Command::new("sh")
        .arg(&script)
        .arg(node.url())
        .arg(peer.url())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{}\n{stdout}\n{stderr}\nserver log:\n{}",
        script.display(),
        node.log()
    );
    assert!(stdout.contains("all checks passed"), "{stdout}");
    // The row the script posted reached the peer through the control API's sync.
    let record = peer
        .run(&["get", "ark_protocol_script_row", "--json"])
        .ok()
        .json();
    assert_eq!(text(field(&record, "type")), "script_node");
}

fn is_ark_datetime(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() == 19
        && bytes.iter().enumerate().all(|(index, byte)| match index {
            4 | 7 => *byte == b'-',
            10 => *byte == b' ',
            13 | 16 => *byte == b':',
            _ => byte.is_ascii_digit(),
        })
}

/// A peer without `protocols` in its info is ARK's Node.js server: we pull its rows
/// from `/federation/nodes` and push ours to `POST /federation/sync`, never touching
/// `/federation/v2/*`, and the next sync pushes only what changed since.
#[test]
fn a_peer_without_v2_is_synced_with_arks_legacy_protocol_both_ways() {
    let ark = FakeArk::start();
    // Syncing with an unsigned ARK peer needs open trust mode.
    let node = Node::start_with("legacy", &[("FEDERATION_TRUST", "open")], &[]);
    node.run(&[
        "add",
        "--json",
        r#"{"id":"ours_one","type":"template_node","value":"Ours","capabilities":["write","read"]}"#,
    ])
    .ok();
    node.add_peer(&ark.url());

    let answer = node.run(&["federation", "sync", "--json"]).ok().json();
    let result = &array(field(&answer, "result"))[0];
    assert!(
        bool_of(field(result, "success")),
        "{}",
        json::to_string(result)
    );
    assert_eq!(count(field(result, "nodesReceived")), 2);
    assert_eq!(count(field(result, "nodesSent")), 1);
    let pulled = node.run(&["get", "ark_only_one", "--json"]).ok().json();
    assert_eq!(array(field(&pulled, "capabilities")).len(), 2);
    assert_eq!(text(field(&pulled, "category")), "Shell");
    node.run(&["get", "ark_only_two"]).ok();

    let pushes = ark.pushes();
    assert_eq!(pushes.len(), 1, "{:?}", ark.requests());
    let (sender, rows) = &pushes[0];
    let status = node.run(&["federation", "status", "--json"]).ok().json();
    assert_eq!(sender, text(field(&status, "instanceId")));
    let ids: Vec<&str> = rows.iter().map(|row| text(field(row, "id"))).collect();
    assert_eq!(
        ids,
        ["ours_one"],
        "rows that came from the peer are not sent back"
    );
    let row = &rows[0];
    let capabilities: Value = json::from_str(text(field(row, "capabilities"))).unwrap();
    assert_eq!(
        array(&capabilities).len(),
        2,
        "list fields are JSON strings"
    );
    for name in ["created_at", "updated_at"] {
        let stamp = text(field(row, name));
        assert!(is_ark_datetime(stamp), "{name} {stamp:?}");
    }
    let peers = node
        .run(&["federation", "list-peers", "--json"])
        .ok()
        .json();
    assert_eq!(
        text(field(&array(field(&peers, "peers"))[0], "protocol")),
        "legacy"
    );

    node.run(&[
        "add",
        "--json",
        r#"{"id":"ours_two","type":"template_node","value":"Ours too"}"#,
    ])
    .ok();
    node.run(&["federation", "sync"]).ok();
    node.run(&["federation", "sync"]).ok();
    let pushes = ark.pushes();
    assert_eq!(pushes.len(), 2, "an unchanged store pushes nothing");
    let ids: Vec<&str> = pushes[1]
        .1
        .iter()
        .map(|row| text(field(row, "id")))
        .collect();
    assert_eq!(ids, ["ours_two"]);
    let requests = ark.requests();
    assert!(
        requests
            .iter()
            .all(|(_, path)| !path.starts_with("/federation/v2")),
        "{requests:?}"
    );
}

/// The first non-loopback IPv4 address of this machine, from `hostname -I`.
fn non_loopback_ipv4() -> Option<std::net::Ipv4Addr> {
    let output = std::process::Command::new("hostname")
        .arg("-I")
        .output()
        .ok()?;
    String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .filter_map(|word| word.parse::<std::net::Ipv4Addr>().ok())
        .find(|ip| !ip.is_loopback() && !ip.is_unspecified())
}

/// The control API from a non-loopback address: 403 without the right token, and the
/// refused request changes nothing; the token (header or bearer) lets it through.
#[test]
fn the_control_api_refuses_non_loopback_callers_without_the_admin_token() {
    let Some(ip) = non_loopback_ipv4() else {
        eprintln!(
            "skipped: no non-loopback IPv4 address (hostname -I); the address check is unit-tested in src/server/routes.rs"
        );
        return;
    };
    let node = Node::start_with(
        "token",
        &[("ARK_ADMIN_TOKEN", "s3cret-token")],
        &["--bind", "0.0.0.0"],
    );
    node.run(&["add", "--id", "keep", "--type", "t", "--value", "v"])
        .ok();
    let address = std::net::SocketAddr::from((ip, node.port));
    // A peer that is never reachable, with its key given: the add needs no traffic.
    let add_peer = format!(
        r#"{{"peerUrl":"http://127.0.0.1:9","pubkey":"{}"}}"#,
        spare_key()
    );
    let add_peer = add_peer.as_str();

    let info = http(address, "GET", "/federation/info", &[], None);
    assert_eq!(info.status, 200, "peers reach the federation endpoints");
    assert_eq!(info.header("access-control-allow-origin"), Some("*"));
    for headers in [
        vec![],
        vec![("X-Ark-Admin-Token", "wrong")],
        vec![("Authorization", "Bearer wrong")],
        vec![("Authorization", "s3cret-token")],
    ] {
        for (method, path, body) in [
            ("POST", "/api/federation/peers/add", Some(add_peer)),
            ("DELETE", "/api/lattice/nodes/keep", None),
            ("GET", "/api/lattice/export", None),
            ("GET", "/api/lattice/verify", None),
            ("POST", "/api/server/shutdown", Some("{}")),
            ("GET", "/api/federation/status", None),
        ] {
            let reply = http(address, method, path, &headers, body);
            assert_eq!(reply.status, 403, "{method} {path} with {headers:?}");
            let _ = text(field(&reply.json(), "error"));
        }
    }
    // Nothing changed: the server runs, the record is there, no peer was added.
    assert_eq!(
        http(address, "GET", "/federation/info", &[], None).status,
        200
    );
    node.run(&["get", "keep"]).ok();
    let peers = node
        .run(&["federation", "list-peers", "--json"])
        .ok()
        .json();
    assert_eq!(count(field(&peers, "count")), 0);

    let reply = http(
        address,
        "POST",
        "/api/federation/peers/add",
        &[("X-Ark-Admin-Token", "s3cret-token")],
        Some(add_peer),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let reply = http(
        address,
        "GET",
        "/api/federation/peers",
        &[("Authorization", "Bearer s3cret-token")],
        None,
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(count(field(&reply.json(), "totalPeers")), 1);

    // Without ARK_ADMIN_TOKEN set, no header opens the control API to other hosts.
    let open = Node::start_with("no-token", &[], &["--bind", "0.0.0.0"]);
    let address = std::net::SocketAddr::from((ip, open.port));
    let reply = http(
        address,
        "GET",
        "/api/federation/status",
        &[("X-Ark-Admin-Token", "")],
        None,
    );
    assert_eq!(reply.status, 403);
    assert_eq!(
        http(open.address(), "GET", "/api/federation/status", &[], None).status,
        200,
        "loopback callers need no token"
    );
}

/// How many records the resume test pulls; ARK_IT_RESUME_RECORDS=20000 for the full
/// size (about 30 s in a debug build, most of it signing and verifying).
fn resume_record_count() -> usize {
    std::env::var("ARK_IT_RESUME_RECORDS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(6000)
}

/// B holds a checkpoint for A (after a first sync), then pulls A's new records in pages
/// of 500 through a proxy that breaks the fifth page in the middle; A is killed (-9) at
/// that moment and restarted on its state dir. The next sync resumes after the four
/// committed pages.
#[test]
fn an_interrupted_pull_resumes_from_the_checkpoint() {
    const PAGE: usize = 500;
    const CUT_PAGE: usize = 5;
    let total = resume_record_count();
    assert!(total > CUT_PAGE * PAGE);
    let a = Lattice::new("resume-a");
    a.run(&[
        "add",
        "--id",
        "seed",
        "--type",
        "template_node",
        "--value",
        "first",
    ])
    .ok();
    let mut ndjson = String::new();
    for index in 0..total {
        ndjson.push_str(&format!(
            "{{\"id\":\"synthetic_{index:06}\",\"type\":\"template_node\",\"value\":\"synthetic record {index}\",\"language\":\"rust\",\"content\":\"fn record_{index}() -> u64 {{ {index} }}\"}}\n"
        ));
    }
    let file = a.dir.file("synthetic.ndjson", &ndjson);
    let mut a = Node::serve(a, &[], &[]);
    let b = Node::start("resume-b");
    a.trust(&b);
    b.trust(&a);
    let proxy = CuttingProxy::new(a.port, "GET /federation/v2/changes", 0, 512);
    b.add_peer(&proxy.url());
    // First contact reconciles; after it B holds a checkpoint for A's change feed.
    let boot = b.sync();
    assert_eq!(
        count(field(&array(field(&boot, "result"))[0], "nodesReceived")),
        1
    );
    let pull_seq = |node: &Node| -> u64 {
        let peers = node
            .run(&["federation", "list-peers", "--json"])
            .ok()
            .json();
        count(field(&array(field(&peers, "peers"))[0], "pullSeq"))
    };
    let base = pull_seq(&b);
    assert_eq!(base, 1, "A's change sequence so far is the seed");
    a.run(&["import", file.to_str().unwrap()]).ok();
    proxy.arm(CUT_PAGE);
    let marked_before = proxy.marked_requests().len();

    // The sync runs in B's server while the CLI waits for its answer.
    let mut first_sync = Background(
        b.command(&["federation", "sync", "--json"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let cut = proxy.wait_cut(Duration::from_secs(60));
    a.kill();
    let first = first_sync.finish(Duration::from_secs(30));
    assert!(cut, "the proxy never saw page {CUT_PAGE}: {}", first.stdout);
    let first = first.json();
    let first = &array(field(&first, "result"))[0];
    assert!(
        !bool_of(field(first, "success")),
        "{}",
        json::to_string(first)
    );
    let received_first = count(field(first, "nodesReceived"));
    assert_eq!(
        received_first,
        ((CUT_PAGE - 1) * PAGE) as u64,
        "whole pages before the cut"
    );
    let checkpoint = pull_seq(&b);
    assert_eq!(
        checkpoint,
        base + received_first,
        "A's change sequence is 1..=total+1"
    );
    assert_eq!(count(field(&b.stats(), "nodes")), 1 + received_first);

    a.restart();
    proxy.pass_through(a.port);
    let pages_before = proxy.marked_requests().len();
    assert_eq!(pages_before - marked_before, CUT_PAGE);
    let second = b.run(&["federation", "sync", "--json"]).ok().json();
    let second = &array(field(&second, "result"))[0];
    let received_second = count(field(second, "nodesReceived"));
    assert_eq!(
        received_first + received_second,
        total as u64,
        "{}",
        json::to_string(second)
    );
    // Records already applied would count as unchanged, not received; the requests
    // show the pull itself started at the checkpoint.
    let pages = proxy.marked_requests().split_off(pages_before);
    assert!(
        pages[0].contains(&format!("after={checkpoint}&")),
        "the second sync starts after the checkpoint: {}",
        pages[0]
    );
    // After a failed sync the batch size halves (adaptive batches for flaky links);
    // every page of the resumed pull is still a new one.
    let limit: usize = pages[0]
        .split("limit=")
        .nth(1)
        .and_then(|rest| rest.split('&').next())
        .and_then(|limit| limit.parse().ok())
        .expect("a limit in the request");
    assert!(limit <= PAGE, "{}", pages[0]);
    assert_eq!(
        pages.len(),
        (total - received_first as usize).div_ceil(limit),
        "{pages:?}"
    );
    let (on_a, on_b) = (a.hashes(), b.hashes());
    assert!(
        on_a.len() == total + 1 && on_a == on_b,
        "{}",
        diff("A", &on_a, "B", &on_b)
    );
}

/// A CLI run in the background, killed if the test ends before it does.
struct Background(std::process::Child);

impl Background {
    /// Waits (bounded) for the run to end and collects its output.
    fn finish(&mut self, within: Duration) -> crate::util::Run {
        let deadline = Instant::now() + within;
        let status = loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "the CLI did not finish within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut stdout = String::new();
        let mut stderr = String::new();
        self.0
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut stdout)
            .unwrap();
        self.0
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        crate::util::Run {
            code: status.code().unwrap_or(-1),
            stdout,
            stderr,
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// kill -9 leaves `server.json` behind; the CLI sees its pid is gone and opens the store
/// itself, nothing committed is lost, and a restart on the same dir serves it all.
#[test]
fn a_killed_server_restarts_on_its_state_dir_with_everything_committed() {
    let mut node = Node::start("restart");
    for index in 0..5 {
        node.run(&[
            "add",
            "--json",
            &node_json(&format!("kept_{index}"), "committed before the kill"),
        ])
        .ok();
    }
    node.run(&[
        "federation",
        "add-peer",
        "http://127.0.0.1:9",
        "--pubkey",
        &spare_key(),
    ])
    .ok();
    let before = node.hashes();
    let old_pid = node.pid();
    node.kill();
    assert!(node.server_file().exists(), "kill -9 leaves server.json");

    let status = node.run(&["federation", "status", "--json"]).ok().json();
    assert!(
        !bool_of(field(&status, "running")),
        "the stale pid is not a server"
    );
    assert_eq!(
        node.hashes(),
        before,
        "the store opens in-process with every record"
    );
    node.run(&[
        "add",
        "--json",
        &node_json("while_down", "written without a server"),
    ])
    .ok();
    let peers = node
        .run(&["federation", "list-peers", "--json"])
        .ok()
        .json();
    assert_eq!(count(field(&peers, "count")), 1);
    // Without a server, a sync runs in the CLI's own process.
    let other = Node::start("restart-peer");
    other.trust(&node);
    // `sync --peer` syncs a peer; it never adds one (issue 11).
    let refused = node.run(&["federation", "sync", "--peer", &other.url()]);
    assert!(
        refused.stderr.contains("is not a peer; add it first"),
        "{}",
        refused.stderr
    );
    node.run(&["federation", "add-peer", &other.url()]).ok();
    let answer = node
        .run(&["federation", "sync", "--peer", &other.url(), "--json"])
        .ok()
        .json();
    assert_eq!(
        count(field(&array(field(&answer, "result"))[0], "nodesSent")),
        6
    );
    assert_eq!(other.hashes().len(), 6);

    node.restart();
    assert_ne!(node.pid(), old_pid);
    let status = node.run(&["federation", "status", "--json"]).ok().json();
    assert!(bool_of(field(&status, "running")));
    assert_eq!(count(field(&status, "listenPort")), u64::from(node.port));
    assert_eq!(count(field(&status, "nodeCount")), 6);
    let after = node.hashes();
    assert!(before.iter().all(|(id, hash)| after.get(id) == Some(hash)));
    assert!(after.contains_key("while_down"));

    // A graceful stop removes server.json and ends the process cleanly.
    node.run(&["federation", "stop"]).ok();
    let exit = node.wait_exit(Duration::from_secs(15));
    assert!(exit.success(), "{exit}\n{}", node.log());
    assert!(!node.server_file().exists());
}

/// Regression: after a crash, the pid in a stale `server.json` may belong to some other
/// live process by the time the CLI runs. That must not pass for a server: every
/// `federation` command failed to connect, and `federation start` refused to start.
#[test]
fn a_stale_server_file_whose_pid_was_reused_is_ignored() {
    let lattice = Lattice::new("reused-pid");
    lattice
        .run(&[
            "federation",
            "add-peer",
            "http://127.0.0.1:9",
            "--pubkey",
            &spare_key(),
        ])
        .ok();
    // This test process is alive and is not an ark-lattice server.
    let closed_port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server_file = lattice.data_dir().join("server.json");
    std::fs::write(
        &server_file,
        format!(
            r#"{{"pid":{},"port":{closed_port},"bind":"127.0.0.1","started_at":1}}"#,
            std::process::id()
        ),
    )
    .unwrap();
    let status = lattice.run(&["federation", "status", "--json"]).ok().json();
    assert!(!bool_of(field(&status, "running")));
    let peers = lattice
        .run(&["federation", "list-peers", "--json"])
        .ok()
        .json();
    assert_eq!(count(field(&peers, "count")), 1);

    let run = lattice
        .run(&["federation", "start", "--port", "0", "--bind", "127.0.0.1"])
        .ok();
    let info: Value = json::from_str(&std::fs::read_to_string(&server_file).unwrap()).unwrap();
    let pid = count(field(&info, "pid"));
    // Whatever happens below, the background server does not outlive the test.
    let _kill = KillOnDrop(pid, lattice.data_dir());
    assert!(run.stdout.contains("started"), "{}", run.stdout);
    assert_ne!(pid, u64::from(std::process::id()));
    lattice.run(&["federation", "stop"]).ok();
    assert!(!server_file.exists());
}

/// Kills a server started in the background by `federation start` when dropped
/// (`kill -9`), if that pid still runs `serve` on the given state dir.
struct KillOnDrop(u64, std::path::PathBuf);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let cmdline = std::fs::read(format!("/proc/{}/cmdline", self.0)).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline);
        if cmdline.contains("serve") && cmdline.contains(self.1.to_str().unwrap()) {
            let _ = std::process::Command::new("kill")
                .args(["-9", &self.0.to_string()])
                .output();
        }
    }
}

/// Regression: what to push to an ARK peer was chosen by the records' `updated_at`,
/// newer than the newest already pushed. A record that arrives later with an older
/// `updated_at` (an ARK dump imported, or a record synced in from another instance)
/// never reached the ARK peer.
#[test]
fn records_with_an_older_updated_at_still_reach_a_legacy_peer() {
    let ark = FakeArk::start();
    let node = Node::start_with("legacy-late", &[("FEDERATION_TRUST", "open")], &[]);
    node.add_peer(&ark.url());
    node.run(&[
        "add",
        "--id",
        "fresh",
        "--type",
        "t",
        "--value",
        "written now",
    ])
    .ok();
    node.run(&["federation", "sync"]).ok();
    let dump = node.dir.file(
        "dump.json",
        r#"[{"id":"from_a_dump","type":"command_node","value":"Imported later",
             "capabilities":"[]","dependencies":"[]","examples":"[]","linked_agents":"[]",
             "created_at":"2024-01-01 00:00:00","updated_at":"2024-01-01 00:00:00"}]"#,
    );
    node.run(&["import", dump.to_str().unwrap()]).ok();
    node.run(&["federation", "sync"]).ok();
    let pushed: Vec<Vec<String>> = ark
        .pushes()
        .iter()
        .map(|(_, rows)| {
            rows.iter()
                .map(|row| text(field(row, "id")).to_owned())
                .collect()
        })
        .collect();
    assert_eq!(pushed, [vec!["fresh"], vec!["from_a_dump"]]);
}

/// Regression: a server listening on one non-loopback address is reached by the CLI on
/// that address, so its calls come from that address, not loopback: every forwarded
/// command and `federation stop` got 403 from the server's own CLI.
#[test]
fn the_cli_manages_a_server_bound_to_one_non_loopback_address() {
    let Some(ip) = non_loopback_ipv4() else {
        eprintln!("skipped: no non-loopback IPv4 address (hostname -I)");
        return;
    };
    let mut node = Node::start_with("bound", &[], &["--bind", &ip.to_string()]);
    node.run(&["add", "--id", "x", "--type", "t", "--value", "v"])
        .ok();
    let status = node.run(&["federation", "status", "--json"]).ok().json();
    assert_eq!(count(field(&status, "nodeCount")), 1);
    node.run(&["federation", "stop"]).ok();
    assert!(node.wait_exit(Duration::from_secs(15)).success());
}

/// Two syncs with the same peer at once (a manual sync during auto-sync): the second
/// waits for the first and then runs, instead of failing with "already running".
#[test]
fn a_second_sync_with_the_same_peer_waits_for_the_first() {
    let a = Lattice::new("overlap-a");
    let mut ndjson = String::new();
    for index in 0..4000 {
        ndjson.push_str(&format!(
            "{{\"id\":\"overlap_{index:05}\",\"type\":\"template_node\",\"value\":\"record {index}\"}}\n"
        ));
    }
    let file = a.dir.file("overlap.ndjson", &ndjson);
    a.run(&["import", file.to_str().unwrap()]).ok();
    let a = Node::serve(a, &[], &[]);
    // A slow link for B, so its first sync is surely still running when the second
    // one is asked for.
    let b = Node::start_with("overlap-b", &[], &["--max-recv-rate", "65536"]);
    a.trust(&b);
    b.trust(&a);
    b.add_peer(&a.url());
    let mut first = Background(
        b.command(&["federation", "sync", "--json"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let second = b.run(&["federation", "sync", "--json"]);
    let waited = started.elapsed();
    let first = first.finish(Duration::from_secs(60));
    assert!(
        first.stdout.contains("\"success\":true"),
        "the first sync ran: {}",
        first.stdout
    );
    // It waited for the first sync rather than failing at once.
    assert!(waited > Duration::from_millis(300), "{waited:?}");
    for (name, run) in [("first", &first), ("second", &second)] {
        assert_eq!(run.code, 0, "{name}: {}{}", run.stdout, run.stderr);
    }
    let received = |run: &crate::util::Run| {
        count(field(
            &array(field(&run.json(), "result"))[0],
            "nodesReceived",
        ))
    };
    assert_eq!(received(&first) + received(&second), 4000);
    assert_eq!(count(field(&b.stats(), "nodes")), 4000);
}

/// `/federation/info` is answered from memory (issue #13), so it must follow every
/// change of what it shows: records, peers, sync totals, settings and the time.
#[test]
fn federation_info_follows_every_change() {
    let a = Node::start("info-a");
    let b = Node::start("info-b");
    let info = || http(a.address(), "GET", "/federation/info", &[], None).json();
    let first = info();
    assert_eq!(count(field(&first, "nodeCount")), 0);
    a.run(&["add", "--id", "one", "--type", "t", "--value", "v"])
        .ok();
    assert_eq!(count(field(&info(), "nodeCount")), 1);
    a.add_peer(&b.url());
    b.add_peer(&a.url());
    assert_eq!(array(field(&info(), "peers")).len(), 1);
    a.sync();
    let synced = info();
    assert_eq!(array(field(&synced, "activePeers")).len(), 1);
    assert_eq!(count(field(field(&synced, "stats"), "totalSyncs")), 1);
    a.run(&["federation", "auto-sync", "on"]).ok();
    assert!(bool_of(field(&info(), "autoSync")));
    a.run(&["delete", "one"]).ok();
    let last = info();
    assert_eq!(count(field(&last, "nodeCount")), 0);
    assert!(count(field(&last, "timestamp")) > count(field(&first, "timestamp")));
}
