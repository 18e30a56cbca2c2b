//! ARK's routes answer ARK's shapes: every key ARK's code writes, with ARK's JSON type,
//! as ARK's CLI and peers read them (issue 12). The shapes below are written from ARK's
//! `lattice-federation.cjs` and backend, not from our encoder.

use std::time::Duration;

use miniserde::json::Value;

use crate::fake_ark::{FakeArk, FakePython};
use crate::util::{Node, array, count, eventually, field, http, text};

/// A JSON type as ARK's code writes it.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Text,
    Number,
    Bool,
    TextOrNull,
    /// An array of URL strings.
    Urls,
    Object,
    Array,
}

fn is(kind: Kind, value: &Value) -> bool {
    match (kind, value) {
        (Kind::Text | Kind::TextOrNull, Value::String(_)) => true,
        (Kind::TextOrNull, Value::Null) => true,
        (Kind::Number, Value::Number(_)) => true,
        (Kind::Bool, Value::Bool(_)) => true,
        (Kind::Object, Value::Object(_)) => true,
        (Kind::Array, Value::Array(_)) => true,
        (Kind::Urls, Value::Array(items)) => {
            items.iter().all(|item| matches!(item, Value::String(_)))
        }
        _ => false,
    }
}

/// Asserts that `value` has every key of `shape` with its type.
fn check(route: &str, value: &Value, shape: &[(&str, Kind)]) {
    let Value::Object(object) = value else {
        panic!("{route}: not an object: {value:?}")
    };
    for (key, kind) in shape {
        let found = object
            .get(*key)
            .unwrap_or_else(|| panic!("{route}: no `{key}` in {value:?}"));
        assert!(
            is(*kind, found),
            "{route}: `{key}` is not {kind:?}: {found:?}"
        );
    }
}

const STATS: &[(&str, Kind)] = &[
    ("totalSyncs", Kind::Number),
    ("successfulSyncs", Kind::Number),
    ("failedSyncs", Kind::Number),
    ("nodesReceived", Kind::Number),
    ("nodesShared", Kind::Number),
    ("conflictsResolved", Kind::Number),
];

const INFO: &[(&str, Kind)] = &[
    ("instanceId", Kind::Text),
    ("instanceName", Kind::Text),
    ("instanceType", Kind::Text),
    ("federationMode", Kind::Text),
    ("listenPort", Kind::Number),
    ("hubUrl", Kind::TextOrNull),
    ("autoSync", Kind::Bool),
    ("syncInterval", Kind::Number),
    ("peers", Kind::Urls),
    ("activePeers", Kind::Urls),
    ("stats", Kind::Object),
    ("timestamp", Kind::Number),
];

fn check_info(route: &str, info: &Value) {
    check(route, info, INFO);
    check(&format!("{route} stats"), field(info, "stats"), STATS);
}

fn call(node: &Node, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
    let reply = http(node.address(), method, path, &[], body);
    let json = reply.json();
    (reply.status, json)
}

#[test]
fn ark_routes_answer_arks_shapes() {
    let ark = FakeArk::start();
    let node = Node::start_with("ark-shapes", &[("FEDERATION_TRUST", "open")], &[]);
    node.add_peer(&ark.url());

    let (status, info) = call(&node, "GET", "/federation/info", None);
    assert_eq!(status, 200);
    check_info("GET /federation/info", &info);
    assert_eq!(array(field(&info, "peers")).len(), 1);

    let (status, directory) = call(&node, "GET", "/federation/discover", None);
    assert_eq!(status, 200);
    check(
        "GET /federation/discover",
        &directory,
        &[
            ("instanceId", Kind::Text),
            ("peers", Kind::Urls),
            ("activePeers", Kind::Urls),
            ("timestamp", Kind::Number),
        ],
    );

    let (status, pulled) = call(&node, "POST", "/federation/sync", Some("{\"since\":0}"));
    assert_eq!(status, 200);
    check(
        "POST /federation/sync (pull)",
        &pulled,
        &[
            ("instanceId", Kind::Text),
            ("timestamp", Kind::Number),
            ("nodes", Kind::Array),
        ],
    );
    let push = r#"{"instanceId":"ark-x","nodes":[{"id":"n1","type":"t","value":"v"}]}"#;
    let (status, received) = call(&node, "POST", "/federation/sync", Some(push));
    assert_eq!(status, 200, "{received:?}");
    check(
        "POST /federation/sync (push)",
        &received,
        &[
            ("imported", Kind::Number),
            ("conflicts", Kind::Number),
            ("total", Kind::Number),
        ],
    );

    let (status, answer) = call(&node, "GET", "/api/federation/status", None);
    assert_eq!(status, 200);
    check(
        "GET /api/federation/status",
        &answer,
        &[
            ("status", Kind::Text),
            ("info", Kind::Object),
            ("isRunning", Kind::Bool),
            ("activePeers", Kind::Urls),
            ("stats", Kind::Object),
        ],
    );
    check_info("status info", field(&answer, "info"));
    check("status stats", field(&answer, "stats"), STATS);
    assert_eq!(text(field(&answer, "status")), "ok");

    let (status, answer) = call(&node, "POST", "/api/federation/stop", Some("{}"));
    assert_eq!(status, 200);
    check(
        "POST /api/federation/stop",
        &answer,
        &[("status", Kind::Text)],
    );
    assert_eq!(text(field(&answer, "status")), "stopped");
    let (status, answer) = call(&node, "POST", "/api/federation/start", Some("{}"));
    assert_eq!(status, 200);
    check(
        "POST /api/federation/start",
        &answer,
        &[
            ("status", Kind::Text),
            ("port", Kind::Number),
            ("instanceId", Kind::Text),
            ("instanceName", Kind::Text),
        ],
    );
    assert_eq!(text(field(&answer, "status")), "started");

    for empty in ["{}", r#"{"peerUrl":""}"#] {
        let (status, answer) = call(&node, "POST", "/api/federation/peers/add", Some(empty));
        assert_eq!(status, 400, "{empty}");
        assert_eq!(text(field(&answer, "error")), "peerUrl is required");
    }
    let (status, answer) = call(&node, "POST", "/api/federation/peers/add", Some("{}"));
    assert_eq!(status, 400);
    assert_eq!(text(field(&answer, "error")), "peerUrl is required");
    let second = FakeArk::start();
    let body = format!(r#"{{"peerUrl":"{}"}}"#, second.url());
    let (status, answer) = call(&node, "POST", "/api/federation/peers/add", Some(&body));
    assert_eq!(status, 200, "{answer:?}");
    let change = [
        ("status", Kind::Text),
        ("peerUrl", Kind::Text),
        ("totalPeers", Kind::Number),
    ];
    check("POST /api/federation/peers/add", &answer, &change);
    assert_eq!(text(field(&answer, "status")), "added");

    let (status, answer) = call(&node, "GET", "/api/federation/peers", None);
    assert_eq!(status, 200);
    check(
        "GET /api/federation/peers",
        &answer,
        &[
            ("peers", Kind::Urls),
            ("activePeers", Kind::Urls),
            ("totalPeers", Kind::Number),
        ],
    );

    let (status, answer) = call(&node, "POST", "/api/federation/sync", Some("{}"));
    assert_eq!(status, 200, "{answer:?}");
    check(
        "POST /api/federation/sync",
        &answer,
        &[("status", Kind::Text), ("result", Kind::Array)],
    );
    for result in array(field(&answer, "result")) {
        check(
            "POST /api/federation/sync result",
            result,
            &[
                ("peerUrl", Kind::Text),
                ("success", Kind::Bool),
                ("result", Kind::Object),
                ("peer", Kind::Text),
                ("nodesSent", Kind::Number),
                ("nodesReceived", Kind::Number),
            ],
        );
        check(
            "sync counts",
            field(result, "result"),
            &[("sent", Kind::Number), ("received", Kind::Number)],
        );
    }
    let (status, answer) = call(&node, "POST", "/api/federation/sync", Some(&body));
    assert_eq!(status, 200, "{answer:?}");
    check(
        "POST /api/federation/sync {peerUrl}",
        field(&answer, "result"),
        &[("sent", Kind::Number), ("received", Kind::Number)],
    );
    // A failure is ARK's 500 {error}.
    let (status, answer) = call(
        &node,
        "POST",
        "/api/federation/sync",
        Some(r#"{"peerUrl":"http://127.0.0.1:9"}"#),
    );
    assert_eq!(status, 500);
    check("failed sync", &answer, &[("error", Kind::Text)]);

    let (status, answer) = call(&node, "POST", "/api/federation/discover", Some("{}"));
    assert_eq!(status, 200, "{answer:?}");
    check(
        "POST /api/federation/discover",
        &answer,
        &[
            ("status", Kind::Text),
            ("peers", Kind::Urls),
            ("totalPeers", Kind::Number),
        ],
    );

    let (status, answer) = call(&node, "POST", "/api/federation/auto-sync/start", Some("{}"));
    assert_eq!(status, 200);
    check(
        "POST /api/federation/auto-sync/start",
        &answer,
        &[("status", Kind::Text), ("interval", Kind::Number)],
    );
    assert_eq!(text(field(&answer, "status")), "auto-sync started");
    let (status, answer) = call(&node, "POST", "/api/federation/auto-sync/stop", Some("{}"));
    assert_eq!(status, 200);
    assert_eq!(text(field(&answer, "status")), "auto-sync stopped");

    let encoded = second.url().replace(':', "%3A").replace('/', "%2F");
    let (status, answer) = call(
        &node,
        "DELETE",
        &format!("/api/federation/peers/{encoded}"),
        None,
    );
    assert_eq!(status, 200, "{answer:?}");
    check("DELETE /api/federation/peers/:url", &answer, &change);
    assert_eq!(text(field(&answer, "status")), "removed");

    for path in ["/api/federation/nope", "/api/nothing", "/nothing/here"] {
        let (status, answer) = call(&node, "GET", path, None);
        assert_eq!(status, 404, "{path}");
        assert_eq!(text(field(&answer, "error")), "Not Found");
        assert_eq!(text(field(&answer, "path")), path);
    }
}

/// Issue 12: pushes above ~1 KiB were gzipped and ARK answered 400; ARK's echo of our
/// row (ten columns, its defaults, receipt times) replaced ours on the next pull; the
/// same conflict was logged on every sync; rows whose list text is no JSON array were
/// refused on every sync.
#[test]
fn an_ark_peer_gets_plain_json_and_its_echo_never_overwrites_ours() {
    let ark = FakeArk::with_rows(
        r#"[{"id":"odd_object","type":"t","value":"ARK wrote this","capabilities":"[object Object]",
             "dependencies":"[]","examples":"[]","linked_agents":"[]","language":null,"category":null,
             "content":null,"created_at":"2025-11-09 10:22:32","updated_at":"2025-11-09 10:22:32",
             "usage_count":0,"success_rate":1.0},
            {"id":"odd_text","type":"t","value":"Hand-edited","capabilities":"alpha, beta",
             "dependencies":null,"examples":"[]","linked_agents":"[]","language":null,"category":null,
             "content":null,"created_at":"2025-11-09 10:22:32","updated_at":"2025-11-09 10:22:32",
             "usage_count":0,"success_rate":1.0}]"#,
    );
    let node = Node::start_with("ark-echo", &[("FEDERATION_TRUST", "open")], &[]);
    let content = "x".repeat(4096);
    let ours = format!(
        r#"{{"id":"ours","type":"t","value":"Ours","content":"{content}","usage_count":7,"success_rate":0.25,"priority":3}}"#
    );
    node.run(&["add", "--json", &ours]).ok();
    node.add_peer(&ark.url());

    for round in 1..=3 {
        let answer = node.sync();
        let result = &array(field(&answer, "result"))[0];
        assert!(
            matches!(field(result, "success"), Value::Bool(true)),
            "round {round}: {}",
            miniserde::json::to_string(result)
        );
    }
    assert!(
        ark.push_statuses().iter().all(|status| *status == 200),
        "{:?}",
        ark.push_statuses()
    );
    let stored = ark.row("ours").expect("ARK stored our row");
    assert_eq!(text(field(&stored, "content")).len(), 4096);

    let kept = node.run(&["get", "ours", "--json"]).ok().json();
    assert_eq!(count(field(&kept, "usage_count")), 7);
    assert!(matches!(field(&kept, "success_rate"), Value::Number(_)));
    assert_eq!(
        miniserde::json::to_string(field(&kept, "success_rate")),
        "0.25"
    );
    let conflicts = node.run(&["conflicts", "--json"]).ok().json();
    assert_eq!(
        count(field(&conflicts, "count")),
        0,
        "an echo is no conflict"
    );

    // Rows ARK holds with list text that is no JSON array are kept, and go back as
    // they were.
    for (id, list) in [
        ("odd_object", "[object Object]"),
        ("odd_text", "alpha, beta"),
    ] {
        let row = http(node.address(), "GET", "/federation/nodes", &[], None).json();
        let found = array(field(&row, "nodes"))
            .iter()
            .find(|row| text(field(row, "id")) == id)
            .unwrap_or_else(|| panic!("{id} was dropped"))
            .clone();
        assert_eq!(text(field(&found, "capabilities")), list);
    }

    // An edit at ARK arrives, and what ARK cannot hold stays ours.
    // ARK's timestamps have whole seconds: its edit must be a second past ours.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    ark.edit("ours", "value", "Edited at ARK");
    for _ in 0..3 {
        node.sync();
    }
    let edited = node.run(&["get", "ours", "--json"]).ok().json();
    assert_eq!(text(field(&edited, "value")), "Edited at ARK");
    assert_eq!(count(field(&edited, "usage_count")), 7);
    assert_eq!(count(field(&edited, "priority")), 3);

    // An edit at ARK older than ours loses, and is logged once however often it comes.
    node.run(&[
        "add",
        "--json",
        r#"{"id":"odd_text","type":"t","value":"Ours is newer"}"#,
    ])
    .ok();
    let Value::Object(_) = ark.row("odd_text").unwrap() else {
        panic!()
    };
    let before = count(field(
        &node.run(&["conflicts", "--json"]).ok().json(),
        "count",
    ));
    for _ in 0..3 {
        node.sync();
    }
    let after = count(field(
        &node.run(&["conflicts", "--json"]).ok().json(),
        "count",
    ));
    assert!(after <= before + 1, "{before} -> {after}");
}

/// Issue 12: a spoke of ARK's Python service registered a manifest holding `"nodes":
/// []`, which that service cannot store (500), then asked it for `/federation/info`,
/// which it does not have. Now it registers scalar fields and pulls through `/sync`,
/// sending back the service's own hashes so the second pull is empty.
#[test]
fn a_spoke_registers_at_and_pulls_from_arks_python_service() {
    let hub = FakePython::start();
    let hub_url = hub.url();
    let spoke = Node::start_with(
        "python-spoke",
        &[
            ("FEDERATION_MODE", "hub"),
            ("FEDERATION_HUB_URL", hub_url.as_str()),
            ("FEDERATION_TRUST", "open"),
        ],
        &[],
    );
    let registered = eventually(Duration::from_secs(15), || {
        hub.requests()
            .iter()
            .any(|(method, path, status)| method == "POST" && path == "/manifest" && *status == 200)
    });
    assert!(registered, "{:?}\n{}", hub.requests(), spoke.log());
    for (round, expected) in [(1, 2), (2, 0)] {
        let answer = spoke.sync();
        let results = array(field(&answer, "result"));
        assert_eq!(results.len(), 1);
        assert!(
            matches!(field(&results[0], "success"), Value::Bool(true)),
            "round {round}: {}",
            miniserde::json::to_string(&results[0])
        );
        assert_eq!(
            count(field(&results[0], "nodesReceived")),
            expected,
            "round {round}"
        );
    }
    let pulled = spoke.run(&["get", "py_one", "--json"]).ok().json();
    assert_eq!(text(field(&pulled, "language")), "python");
    assert!(
        hub.requests()
            .iter()
            .all(|(_, path, status)| *status != 500 || path != "/manifest"),
        "{:?}",
        hub.requests()
    );
}

/// The guide's `/sync` example, hashes that are not ours: 200 with the full delta.
#[test]
fn the_guides_sync_example_gets_the_full_delta() {
    let node = Node::start_with("guide-sync", &[("FEDERATION_TRUST", "open")], &[]);
    node.run(&["add", "--id", "node-1", "--type", "t", "--value", "v"])
        .ok();
    node.run(&["add", "--id", "node-3", "--type", "t", "--value", "w"])
        .ok();
    let body = r#"{"manifest_hash":"abc123","nodes":[{"id":"node-1","hash":"def456"},{"id":"node-2","hash":"ghi789"}]}"#;
    let (status, answer) = call(&node, "POST", "/sync", Some(body));
    assert_eq!(status, 200, "{answer:?}");
    assert_eq!(count(field(&answer, "delta_count")), 2);
    // Our own hashes, in either spelling, are recognised.
    let hashes = node.hashes();
    let ours = &hashes["node-1"];
    for spelling in [ours.clone(), ours.trim_start_matches("sha256:").to_owned()] {
        let body = format!(r#"{{"nodes":[{{"id":"node-1","hash":"{spelling}"}}]}}"#);
        let (status, answer) = call(&node, "POST", "/sync", Some(&body));
        assert_eq!(status, 200);
        assert_eq!(count(field(&answer, "delta_count")), 1, "{spelling}");
    }
}

/// A spoke whose hub is ARK's Node.js server syncs through `/federation/*`.
#[test]
fn a_spoke_syncs_with_an_ark_nodejs_hub() {
    let hub = FakeArk::start();
    let hub_url = hub.url();
    let spoke = Node::start_with(
        "node-spoke",
        &[
            ("FEDERATION_MODE", "hub"),
            ("FEDERATION_HUB_URL", hub_url.as_str()),
            ("FEDERATION_TRUST", "open"),
        ],
        &[],
    );
    spoke
        .run(&["add", "--id", "mine", "--type", "t", "--value", "v"])
        .ok();
    let answer = spoke.sync();
    let result = &array(field(&answer, "result"))[0];
    assert!(
        matches!(field(result, "success"), Value::Bool(true)),
        "{}",
        miniserde::json::to_string(result)
    );
    assert_eq!(count(field(result, "nodesReceived")), 2);
    assert!(hub.row("mine").is_some(), "pushed to the hub");
}

/// ARK's Python service had `/docs`; ours is one self-contained page, and
/// `/openapi.json` lists every ARK route.
#[test]
fn docs_and_openapi_describe_every_route() {
    let node = Node::start("docs");
    let page = http(node.address(), "GET", "/docs", &[], None);
    assert_eq!(page.status, 200);
    assert!(
        page.header("content-type")
            .unwrap()
            .starts_with("text/html")
    );
    for outside in ["src=", "https://", "@import", "url("] {
        assert!(!page.body.contains(outside), "{outside}");
    }
    let (status, document) = call(&node, "GET", "/openapi.json", None);
    assert_eq!(status, 200);
    let paths = field(&document, "paths");
    for (method, path) in [
        ("get", "/federation/info"),
        ("get", "/federation/discover"),
        ("post", "/federation/sync"),
        ("get", "/federation/nodes"),
        ("get", "/api/federation/status"),
        ("post", "/api/federation/start"),
        ("post", "/api/federation/stop"),
        ("get", "/api/federation/peers"),
        ("post", "/api/federation/peers/add"),
        ("delete", "/api/federation/peers/{url}"),
        ("post", "/api/federation/sync"),
        ("post", "/api/federation/discover"),
        ("post", "/api/federation/auto-sync/start"),
        ("post", "/api/federation/auto-sync/stop"),
        ("post", "/manifest"),
        ("get", "/discover"),
        ("post", "/sync"),
    ] {
        let operation = field(field(paths, path), method);
        let _ = field(field(operation, "responses"), "200");
        assert!(
            page.body
                .contains(&path.replace('{', "&#123;").replace('}', "&#125;"))
                || page.body.contains(path),
            "{path} on /docs"
        );
    }
}

/// The biggest and deepest manifests a peer can send: refused with a clear status,
/// within a wide bound, and the node keeps answering.
#[test]
fn hostile_manifests_are_refused_in_bounded_time() {
    let node = Node::start("hostile-manifest");
    let floats: Vec<String> = (0..150_000u64)
        .map(|index| format!("{}", (index as f64) * 1.000_000_000_000_000_2 + 0.1))
        .collect();
    let big = format!(
        r#"{{"manifest":{{"node_id":"x","values":[{}]}},"signature":"{}","pubkey":"{}"}}"#,
        floats.join(","),
        "A".repeat(86) + "==",
        crate::util::spare_key()
    );
    assert!(big.len() < 4 << 20, "{} bytes", big.len());
    let deep = format!(
        r#"{{"manifest":{{"a":{}1{}}},"signature":"x","pubkey":"y"}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let huge_int = format!(
        r#"{{"manifest":{{"a":{}}},"signature":"x","pubkey":"y"}}"#,
        "9".repeat(100_000)
    );
    for (name, body, status) in [
        ("big", &big, 401),
        ("deep", &deep, 400),
        ("huge int", &huge_int, 400),
    ] {
        let started = std::time::Instant::now();
        let reply = http(node.address(), "POST", "/manifest", &[], Some(body));
        let took = started.elapsed();
        assert_eq!(reply.status, status, "{name}: {}", reply.body);
        assert!(took < Duration::from_secs(30), "{name} took {took:?}");
        eprintln!(
            "{name} manifest ({} bytes): {} in {took:?}",
            body.len(),
            reply.status
        );
    }
    assert_eq!(
        http(node.address(), "GET", "/health", &[], None).status,
        200
    );
}
