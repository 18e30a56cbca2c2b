//! `GET /docs` (an HTML page with no outside assets) and `GET /openapi.json` (OpenAPI
//! 3.0): every route with its request and answer shapes. ARK's Python service had
//! FastAPI's `/docs`; ARK users look there first. The answers of ARK's routes are
//! built from the `protocol` types themselves, so the page cannot drift from the wire.

use miniserde::json::{self, Object, Value};

use crate::http::Response;
use crate::protocol::{
    Access, ArkStats, ControlAnswer, DeltaAnswer, DeltaRequest, InstanceInfo, NodeList,
    PeerDirectory, PeerSyncReport, ROUTES, ReceiveResult, Route, SyncReport,
};

/// A JSON example: written out, or built from a protocol type.
#[derive(Clone, Copy)]
pub(crate) enum Example {
    None,
    Text(&'static str),
    Built(fn() -> Value),
}

/// What the page says of one route of the table.
pub(crate) struct RouteDoc {
    pub summary: &'static str,
    pub request: Example,
    pub answer: Example,
}

const fn doc(summary: &'static str, request: Example, answer: Example) -> RouteDoc {
    RouteDoc {
        summary,
        request,
        answer,
    }
}

const URL: &str = "http://192.168.1.100:9000";

fn sample_export_page() -> Value {
    let node = crate::model::Node {
        id: "py_hello".into(),
        node_type: "template_node".into(),
        value: "Hello in Python".into(),
        ..crate::model::Node::default()
    };
    crate::service::ExportPage {
        nodes: vec![node],
        next: Some("py_hello".into()),
        left_out: 0,
    }
    .to_json()
}

fn sample_verify_report() -> Value {
    use crate::service::{PagesReport, RecordsReport, VerifyReport};
    use crate::store::RecordCheck;
    VerifyReport {
        store: "/var/lib/ark-lattice/lattice.redb".into(),
        pages: PagesReport::Clean,
        pages_after: None,
        records: RecordsReport::Read(RecordCheck {
            nodes: 1234,
            tombstones: 2,
            changes: 1240,
            signed: 1236,
            ..RecordCheck::default()
        }),
    }
    .to_json()
}

fn sample_info() -> InstanceInfo {
    InstanceInfo {
        instance_id: "5f0c…64 hex".into(),
        instance_name: "ARK-local-5f0c1a2b".into(),
        instance_type: "local".into(),
        federation_mode: "p2p".into(),
        listen_port: 9000,
        hub_url: None,
        auto_sync: true,
        sync_interval: 60_000,
        peers: vec![URL.into()],
        active_peers: vec![URL.into()],
        stats: ArkStats {
            total_syncs: 42,
            successful_syncs: 41,
            failed_syncs: 1,
            nodes_received: 203,
            nodes_shared: 150,
            conflicts_resolved: 5,
        },
        timestamp: 1_762_683_752_000,
        lattice: crate::protocol::LatticeInfo {
            protocols: vec![
                crate::protocol::PROTOCOL_LEGACY.into(),
                crate::protocol::PROTOCOL_V2.into(),
                crate::protocol::PROTOCOL_RECONCILE.into(),
                crate::protocol::PROTOCOL_COMPACT_PAGE.into(),
            ],
            epoch: Some("9c1e…32 hex".into()),
            public_key: Some("base64 Ed25519 key".into()),
            fingerprint: Some("SHA256:5f0c-1a2b-3c4d-5e6f".into()),
            node_count: Some(1234),
            version: Some(env!("CARGO_PKG_VERSION").into()),
        },
    }
}

fn sample_row() -> Value {
    json::from_str(
        r#"{"id":"python_flask_basic","type":"framework_node","language":"python","category":"Web","value":"Flask app","capabilities":"[\"web\"]","dependencies":"[\"flask\"]","examples":"[]","content":null,"linked_agents":"[]","created_at":"2025-11-09 10:22:32","updated_at":"2025-11-09 10:22:32","usage_count":3,"success_rate":1.0}"#,
    )
    .unwrap_or(Value::Null)
}

fn report(sent: u64, received: u64) -> PeerSyncReport {
    PeerSyncReport {
        peer_url: URL.into(),
        sent,
        received,
        error: None,
    }
}

/// What `/docs` says of a route: every route has its entry, or this does not compile.
/// Over 100 lines on purpose: it is a table, one arm per route, and one `match` over
/// the whole table is what makes a route without an entry a compile error.
fn describe(route: Route) -> RouteDoc {
    match route {
        Route::StatusPage => doc(
            "status page (HTML, inline SVG)",
            Example::None,
            Example::None,
        ),
        Route::Docs => doc("this page", Example::None, Example::None),
        Route::OpenApi => doc("these routes as OpenAPI 3.0", Example::None, Example::None),
        Route::Health => doc(
            "liveness",
            Example::None,
            Example::Text(r#"{"status":"ok","instanceId":"5f0c…"}"#),
        ),
        Route::Metrics => doc("Prometheus text format", Example::None, Example::None),
        // ARK's Node.js federation server.
        Route::Info => doc(
            "ARK's instance info, plus our protocols, epoch and key",
            Example::None,
            Example::Built(|| sample_info().to_json()),
        ),
        Route::Nodes => doc(
            "every node as ARK's SQLite row (?type=&limit=&after=)",
            Example::None,
            Example::Built(|| {
                NodeList {
                    instance_id: "5f0c…".into(),
                    nodes: [sample_row()].into_iter().collect(),
                    next: None,
                }
                .to_json()
            }),
        ),
        Route::ArkSync => doc(
            "ARK's sync: with `nodes`, receive them (receiveNodes); without, answer the nodes changed since `since`",
            Example::Text(
                r#"{"instanceId":"ark-1","since":0,"nodes":[{"id":"python_flask_basic","type":"framework_node","value":"Flask app"}]}"#,
            ),
            Example::Built(|| {
                ReceiveResult {
                    imported: 1,
                    conflicts: 0,
                    total: 1,
                    rejected: Default::default(),
                }
                .to_json()
            }),
        ),
        Route::ArkDiscover => doc(
            "the peers we know",
            Example::None,
            Example::Built(|| {
                PeerDirectory {
                    instance_id: "5f0c…".into(),
                    peers: vec![URL.into()],
                    active_peers: vec![URL.into()],
                    timestamp: 1_762_683_752_000,
                    details: Vec::new(),
                }
                .to_json()
            }),
        ),
        // ARK's Python federation service.
        Route::Manifest => doc(
            "register a signed manifest (PyNaCl over json.dumps(manifest, sort_keys=True))",
            Example::Text(
                r#"{"manifest":{"node_id":"ark-1","last_updated":1699564800},"signature":"base64","pubkey":"base64"}"#,
            ),
            Example::Text(r#"{"status":"registered","node_id":"ark-1"}"#),
        ),
        Route::PythonDiscover => doc(
            "live registered spokes",
            Example::None,
            Example::Text(
                r#"{"peers":[{"node_id":"ark-1","url":"http://192.168.1.100:9000","last_seen":1762683752000}],"count":1}"#,
            ),
        ),
        Route::PythonSync => doc(
            "delta: the nodes whose hash (an opaque string) differs",
            Example::Built(|| {
                DeltaRequest {
                    manifest_hash: Some("abc123".into()),
                    nodes: vec![("node-1".into(), "def456".into())],
                }
                .to_json()
            }),
            Example::Built(|| {
                DeltaAnswer {
                    nodes: Default::default(),
                }
                .to_json()
            }),
        ),
        // Our signed protocol.
        Route::OwnManifest => doc(
            "our signed full manifest",
            Example::None,
            Example::Text(
                r#"{"manifest":{"node_id":"ARK-local-5f0c1a2b","nodes":[{"id":"…","type":"…","hash":"sha256:…","updated_at":"…"}]},"signature":"base64","pubkey":"base64"}"#,
            ),
        ),
        Route::Changes => doc(
            "changes feed (?after=&limit=&max_bytes=&types=&wait=)",
            Example::None,
            Example::Text(
                r#"{"instanceId":"…","epoch":"…","records":[{"id":"…","version":"1762683752000.0@5f0c…","hash":"sha256:…","signature":"base64","node":{}}],"last_seq":12,"more":false}"#,
            ),
        ),
        Route::Offer => doc(
            "which of these versions do you want",
            Example::Text(
                r#"{"offers":[{"id":"python_flask_basic","version":"1762683752000.0@5f0c…"}]}"#,
            ),
            Example::Text(r#"{"want":["python_flask_basic"]}"#),
        ),
        Route::Push => doc(
            "signed records to apply",
            Example::Text(
                r#"{"records":[{"id":"…","version":"…","hash":"sha256:…","signature":"base64","node":{}}]}"#,
            ),
            Example::Text(
                r#"{"applied":1,"unchanged":0,"stale":0,"conflicts":0,"rejected":[],"seq_before":11,"seq_after":12}"#,
            ),
        ),
        Route::Reconcile => doc(
            "one negentropy round (application/octet-stream both ways)",
            Example::None,
            Example::None,
        ),
        Route::Fetch => doc(
            "records by 32-byte version digests (octet-stream body)",
            Example::None,
            Example::Text(r#"{"records":[],"more":false,"missing":0,"ranked":[]}"#),
        ),
        // ARK's backend API.
        Route::ArkStatus => doc(
            "ARK's status",
            Example::None,
            Example::Built(|| {
                ControlAnswer::Status {
                    info: Box::new(sample_info()),
                    is_running: true,
                }
                .to_json()
            }),
        ),
        Route::ArkStart => doc(
            "turn the federation endpoints on",
            Example::None,
            Example::Built(|| {
                ControlAnswer::Started {
                    port: 9000,
                    instance_id: "5f0c…".into(),
                    instance_name: "ARK-local-5f0c1a2b".into(),
                }
                .to_json()
            }),
        ),
        Route::ArkStop => doc(
            "turn the federation endpoints off",
            Example::None,
            Example::Built(|| ControlAnswer::Stopped.to_json()),
        ),
        Route::ArkPeers => doc(
            "the peer list",
            Example::None,
            Example::Built(|| {
                ControlAnswer::Peers {
                    peers: vec![URL.into()],
                    active_peers: Vec::new(),
                }
                .to_json()
            }),
        ),
        Route::ArkAddPeer => doc(
            "add a peer (400 without peerUrl)",
            Example::Text(r#"{"peerUrl":"http://192.168.1.100:9000"}"#),
            Example::Built(|| {
                ControlAnswer::PeerChanged {
                    added: true,
                    peer_url: URL.into(),
                    total_peers: 3,
                }
                .to_json()
            }),
        ),
        Route::ArkRemovePeer => doc(
            "remove a peer (URL-encoded)",
            Example::None,
            Example::Built(|| {
                ControlAnswer::PeerChanged {
                    added: false,
                    peer_url: URL.into(),
                    total_peers: 2,
                }
                .to_json()
            }),
        ),
        Route::ArkSyncNow => doc(
            "sync now: every peer (a list), or `peerUrl` (its counts; a failure is 500)",
            Example::Text(r#"{"peerUrl":"http://192.168.1.100:9000"}"#),
            Example::Built(|| {
                ControlAnswer::Synced(SyncReport::All(vec![report(15, 23)])).to_json()
            }),
        ),
        Route::ArkDiscoverPeers => doc(
            "find and add peers",
            Example::None,
            Example::Built(|| {
                ControlAnswer::Discovered {
                    peers: vec![URL.into()],
                    total_peers: 3,
                }
                .to_json()
            }),
        ),
        Route::ArkAutoSyncStart => doc(
            "auto-sync on (kept across restarts)",
            Example::None,
            Example::Built(|| ControlAnswer::AutoSyncStarted { interval: 60_000 }.to_json()),
        ),
        Route::ArkAutoSyncStop => doc(
            "auto-sync off (kept across restarts)",
            Example::None,
            Example::Built(|| ControlAnswer::AutoSyncStopped.to_json()),
        ),
        Route::Events => doc(
            "Server-Sent Events (Last-Event-ID replays)",
            Example::None,
            Example::None,
        ),
        Route::ArkConflicts => doc(
            "the conflict log (?limit=)",
            Example::None,
            Example::Text(r#"{"count":0,"conflicts":[]}"#),
        ),
        // Our control API, read by our CLI.
        Route::Status => doc(
            "status with keys, counters, peer details",
            Example::None,
            Example::Text(
                r#"{"instanceId":"…","publicKey":"…","running":true,"enabled":true,"peerList":{"count":1,"peers":[]},"bytesSent":0,"bytesReceived":0}"#,
            ),
        ),
        Route::Start => doc(
            "federation endpoints on",
            Example::None,
            Example::Text(r#"{"success":true,"enabled":true}"#),
        ),
        Route::Stop => doc(
            "federation endpoints off",
            Example::None,
            Example::Text(r#"{"success":true,"enabled":false}"#),
        ),
        Route::Peers => doc(
            "peers with checkpoints, errors, counters",
            Example::None,
            Example::Text(
                r#"{"count":1,"peers":[{"url":"…","protocol":"v2","active":true,"lastSync":1762683752000,"stats":{}}]}"#,
            ),
        ),
        Route::AddPeer => doc(
            "add a peer and pin its key",
            Example::Text(
                r#"{"peerUrl":"http://192.168.1.100:9000","pubkey":"base64 (optional)","tier":"core","types":["security_node"]}"#,
            ),
            Example::Text(
                r#"{"success":true,"peer":"…","added":true,"fingerprint":"SHA256:…","publicKey":"…","tier":"core"}"#,
            ),
        ),
        Route::RemovePeer => doc(
            "remove a peer",
            Example::None,
            Example::Text(r#"{"success":true,"peer":"…","removed":true}"#),
        ),
        Route::SyncNow => doc(
            "sync now, with per-peer details",
            Example::Text(r#"{"peerUrl":"http://192.168.1.100:9000"}"#),
            Example::Text(
                r#"{"status":"synced","result":[{"peer":"…","success":true,"nodesSent":1,"nodesReceived":2,"nodesUnchanged":0,"conflicts":0}]}"#,
            ),
        ),
        Route::DiscoverPeers => doc(
            "peers of peers, LAN beacons, optional scan",
            Example::Text(
                r#"{"add":false,"scan":false,"subnet":"192.168.1.0/24","scanPort":9000}"#,
            ),
            Example::Text(
                r#"{"count":0,"peers":[],"lan":[],"scanned":[],"scan":null,"addedPeers":[],"errors":[]}"#,
            ),
        ),
        Route::AutoSyncStart => doc(
            "auto-sync on, optionally every `interval` ms",
            Example::Text(r#"{"interval":60000}"#),
            Example::Text(r#"{"success":true,"autoSync":true,"syncInterval":60000}"#),
        ),
        Route::AutoSyncStop => doc(
            "auto-sync off",
            Example::None,
            Example::Text(r#"{"success":true,"autoSync":false,"syncInterval":60000}"#),
        ),
        Route::Conflicts => doc(
            "the conflict log (?limit=)",
            Example::None,
            Example::Text(r#"{"count":0,"conflicts":[]}"#),
        ),
        Route::LatticeStats => doc(
            "store counts and whose store it is (`stats --json`)",
            Example::None,
            Example::Text(
                r#"{"nodes":1234,"tombstones":2,"conflicts":0,"damaged":0,"last_seq":1240,"store_bytes":1581056,"by_type":{"framework_node":1234},"by_language":{},"by_category":{},"instance_id":"5f0c…","instance_name":"lab","instance_type":"main"}"#,
            ),
        ),
        Route::QueryNodes => doc(
            "query nodes (?type=&language=&category=&capability=&search=&after=&limit=)",
            Example::None,
            Example::Text(
                r#"{"count":1,"nodes":[{"id":"…","type":"…","value":"…","hash":"sha256:…","version":"…","seq":1}]}"#,
            ),
        ),
        Route::WriteNodes => doc(
            "write nodes as `import` does through a running server (requests of at most 1 MiB)",
            Example::Text(
                r#"{"nodes":[{"id":"python_flask_basic","type":"framework_node","value":"Flask app"}]}"#,
            ),
            Example::Text(r#"{"created":1,"updated":0,"unchanged":0}"#),
        ),
        Route::GetNode => doc("one node", Example::None, Example::None),
        Route::GetRecord => doc(
            "the record stored under an id, as `get --json --provenance` prints it: a live node with `provenance`, or a tombstone as `{id, deleted_at, version}` (404 when never stored)",
            Example::None,
            Example::Text(
                r#"{"id":"…","type":"…","value":"…","hash":"sha256:…","version":"…","seq":1,"provenance":{"origin":"…","written_at":"2024-01-31T12:00:00Z","version":"…","signed":true,"signature_format":2}}"#,
            ),
        ),
        Route::PutNode => doc(
            "write one node as a local edit, as `add` does (`created_at` kept from the version it replaces unless given, `updated_at` now)",
            Example::Text(
                r#"{"id":"python_flask_basic","type":"framework_node","value":"Flask app"}"#,
            ),
            Example::Text(r#"{"id":"python_flask_basic","outcome":"added"}"#),
        ),
        Route::DeleteNode => doc(
            "delete a node (a tombstone that syncs)",
            Example::None,
            Example::Text(r#"{"deleted":"…","already_deleted":false}"#),
        ),
        Route::Gc => doc(
            "purge tombstones of deletes older than `older_than_days` days, as `gc` does",
            Example::Text(r#"{"older_than_days":30}"#),
            Example::Text(r#"{"purged_tombstones":2,"older_than_days":30}"#),
        ),
        Route::Export => doc(
            "one page of `export` (?type=&after=&limit=): every intact node in id order, at most `limit` (1 to 10,000, default 1,000) and about 1 MiB; ask again with `after` = `next` until `next` is null; `left_out` counts damaged records skipped",
            Example::None,
            Example::Built(sample_export_page),
        ),
        Route::Verify => doc(
            "check the store page by page (unless ?skip_page_check=true) and record by record, as `verify --json` prints it",
            Example::None,
            Example::Built(sample_verify_report),
        ),
        Route::TrustedKeys => doc(
            "the trusted keys (`trust list --json`), or with ?pending=true the keys seen and not accepted (`trust pending --json`)",
            Example::None,
            Example::Text(
                r#"{"count":1,"keys":[{"publicKey":"…","instanceId":"…","fingerprint":"SHA256:…","name":"hub","tier":"core","pending":false,"addedAt":1700000000000,"lastSeen":null,"source":"cli"}]}"#,
            ),
        ),
        Route::TrustKey => doc(
            "trust a base64 public key, as `trust add` does (tier `core` unless given); held records it lets through are applied at once",
            Example::Text(r#"{"public_key":"…","tier":"core","name":"hub"}"#),
            Example::Text(
                r#"{"action":"trusted","entry":{"publicKey":"…","tier":"core","…":"…"},"held_applied":0}"#,
            ),
        ),
        Route::AcceptKey => doc(
            "grant a tier to a key of the trust store named by fingerprint, instance id (or 8+ digits of it) or base64 key, as `trust accept` does",
            Example::Text(r#"{"tier":"sandbox"}"#),
            Example::Text(r#"{"action":"accepted","entry":{"…":"…"},"held_applied":0}"#),
        ),
        Route::RemoveKey => doc(
            "forget a key of the trust store, as `trust remove` does",
            Example::None,
            Example::Text(r#"{"action":"removed","entry":{"…":"…"},"held_applied":0}"#),
        ),
        Route::Shutdown => doc(
            "stop gracefully",
            Example::None,
            Example::Text(r#"{"success":true,"stopping":true}"#),
        ),
    }
}

fn example_text(example: Example) -> Option<String> {
    match example {
        Example::None => None,
        Example::Text(text) => Some(text.to_owned()),
        Example::Built(build) => Some(json::to_string(&build())),
    }
}

fn example_value(example: Example) -> Option<Value> {
    match example {
        Example::None => None,
        Example::Text(text) => json::from_str(text).ok(),
        Example::Built(build) => Some(build()),
    }
}

fn object(pairs: Vec<(&str, Value)>) -> Value {
    Value::Object(
        pairs
            .into_iter()
            .map(|(key, value)| (key.to_owned(), value))
            .collect(),
    )
}

fn text(value: &str) -> Value {
    Value::String(value.to_owned())
}

/// `GET /openapi.json`.
pub(crate) fn openapi() -> Response {
    let mut paths = Object::new();
    for route in ROUTES {
        let doc = describe(*route);
        let mut operation = vec![
            ("summary", text(doc.summary)),
            (
                "tags",
                Value::Array(
                    [match route.access() {
                        Access::Public => "public",
                        Access::Peer => "peers",
                        Access::Control => "control (loopback or admin token)",
                    }]
                    .into_iter()
                    .map(text)
                    .collect(),
                ),
            ),
        ];
        if let Some(example) = example_value(doc.request) {
            operation.push((
                "requestBody",
                object(vec![(
                    "content",
                    object(vec![(
                        "application/json",
                        object(vec![("example", example)]),
                    )]),
                )]),
            ));
        }
        let mut ok = vec![("description", text("OK"))];
        if let Some(example) = example_value(doc.answer) {
            ok.push((
                "content",
                object(vec![(
                    "application/json",
                    object(vec![("example", example)]),
                )]),
            ));
        }
        let error = object(vec![(
            "description",
            text(
                "{\"error\": \"...\"}; unknown routes: 404 {\"error\": \"Not Found\", \"path\": \"...\"}",
            ),
        )]);
        operation.push((
            "responses",
            object(vec![("200", object(ok)), ("default", error)]),
        ));
        let entry = paths
            .entry(route.path().to_owned())
            .or_insert_with(|| Value::Object(Object::new()));
        if let Value::Object(methods) = entry {
            methods.insert(route.method().to_ascii_lowercase(), object(operation));
        }
    }
    let document = object(vec![
        ("openapi", text("3.0.3")),
        (
            "info",
            object(vec![
                ("title", text("ark-lattice")),
                ("version", text(env!("CARGO_PKG_VERSION"))),
            ]),
        ),
        ("paths", Value::Object(paths)),
    ]);
    Response::json(200, json::to_string(&document))
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `GET /docs`: one page, its style inline, nothing fetched from elsewhere.
pub(crate) fn page() -> Response {
    let mut html = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>ark-lattice API</title>\
         <style>body{font:14px system-ui,sans-serif;margin:2em;max-width:1100px;color:#1d2630}\
         table{border-collapse:collapse;width:100%}td,th{border-top:1px solid #dde3ea;padding:6px;vertical-align:top;text-align:left}\
         code,pre{font:12px ui-monospace,monospace}pre{white-space:pre-wrap;word-break:break-all;margin:0;background:#f4f6f8;padding:4px}\
         .m{font-weight:600}.a{color:#6b7683}</style></head><body><h1>ark-lattice API</h1>\
         <p>Every route this node serves, with example request and answer bodies \
         (also as <a href=\"/openapi.json\">OpenAPI 3.0</a>). Errors answer <code>{\"error\": \"...\"}</code>; \
         an unknown route answers 404 <code>{\"error\": \"Not Found\", \"path\": \"...\"}</code>.</p>\
         <table><tr><th>route</th><th>who</th><th>request</th><th>answer</th></tr>",
    );
    for route in ROUTES {
        let doc = describe(*route);
        let access = match route.access() {
            Access::Public => "anyone",
            Access::Peer => "peers",
            Access::Control => "this host / admin token",
        };
        let block = |example| {
            example_text(example)
                .map_or_else(String::new, |text| format!("<pre>{}</pre>", escape(&text)))
        };
        html.push_str(&format!(
            "<tr><td><span class=\"m\">{}</span> <code>{}</code><br><span class=\"a\">{}</span></td><td>{access}</td><td>{}</td><td>{}</td></tr>",
            route.method(),
            escape(route.path()),
            escape(doc.summary),
            block(doc.request),
            block(doc.answer),
        ));
    }
    html.push_str("</table></body></html>");
    Response::new(200, crate::http::Body::Full(html.into_bytes()))
        .with_header("content-type", "text/html; charset=utf-8")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_example_is_json_and_the_page_fetches_nothing() {
        for route in ROUTES {
            let doc = describe(*route);
            for example in [doc.request, doc.answer] {
                if let Example::Text(text) = example {
                    assert!(
                        json::from_str::<Value>(text).is_ok(),
                        "{} {}: {text}",
                        route.method(),
                        route.path()
                    );
                }
            }
        }
        let crate::http::Body::Full(page) = page().body else {
            panic!("a full body")
        };
        let page = String::from_utf8(page).unwrap();
        for outside in ["src=", "http://cdn", "https://", "@import", "url("] {
            assert!(!page.contains(outside), "{outside}");
        }
    }

    /// `/openapi.json` lists every route of the table under its path and method, and
    /// `/docs` names each.
    #[test]
    fn every_route_is_documented() {
        let crate::http::Body::Full(document) = openapi().body else {
            panic!("a full body")
        };
        let document: Value = json::from_str(std::str::from_utf8(&document).unwrap()).unwrap();
        let Value::Object(document) = document else {
            panic!("an object")
        };
        let Some(Value::Object(paths)) = document.get("paths") else {
            panic!("paths")
        };
        let crate::http::Body::Full(page) = page().body else {
            panic!("a full body")
        };
        let page = String::from_utf8(page).unwrap();
        for route in ROUTES {
            let method = route.method().to_ascii_lowercase();
            assert!(
                matches!(paths.get(route.path()), Some(Value::Object(methods)) if methods.contains_key(&method)),
                "{} {} is not in /openapi.json",
                route.method(),
                route.path()
            );
            let row = format!(
                "<span class=\"m\">{}</span> <code>{}</code>",
                route.method(),
                escape(route.path())
            );
            assert!(page.contains(&row), "{row} is not in /docs");
        }
    }
}
