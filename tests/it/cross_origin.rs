//! The control API is not reachable from web pages of other origins (issue 11: "any web
//! page in the operator's browser can drive the control API"). A page served by a
//! second local server, on another port, tries `fetch()` and form POSTs against
//! `/api/lattice/nodes` and `/api/federation/peers/add` in headless Chromium; nothing changes on
//! the node, while its own status page still renders.
//!
//! Needs Chromium (`.ci/run` installs it). Without it the test is skipped with a printed
//! reason, except under `CI=true`, where it fails.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use crate::trust::{Server, http};
use crate::util::{TempDir, chromium, count, field};

/// Loads `url` in a fresh headless Chromium, lets its scripts run for `budget` of
/// virtual time (if any), and returns the DOM.
fn dump_dom(chromium: &Path, profile: &Path, url: &str, budget: Option<&str>) -> String {
    let output = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--dump-dom",
        ])
        .args(budget.map(|millis| format!("--virtual-time-budget={millis}")))
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(url)
        .stdin(Stdio::null())
        .output()
        .expect("run chromium");
    let dom = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        !dom.is_empty(),
        "chromium printed no DOM: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    dom
}

/// The attacking page, for a node at `node` (`http://127.0.0.1:PORT`).
fn attack_page(node: &str) -> String {
    // A text/plain form whose field name and value join into a JSON body, the classic
    // way to post "JSON" from a form.
    let form = |id: &str, path: &str, json_start: &str| {
        format!(
            r#"<iframe name="sink-{id}"></iframe>
<form id="{id}" method="POST" action="{node}{path}" enctype="text/plain" target="sink-{id}">
<input type="hidden" name='{json_start},"pad":"' value='"}}'></form>"#
        )
    };
    format!(
        r#"<!doctype html><html><body><pre id="log"></pre>
{}
{}
<script>
const NODE = "{node}";
const log = (line) => {{ document.getElementById("log").textContent += line + "\n"; }};
async function attempt(name, path, init) {{
  try {{
    const response = await fetch(NODE + path, init);
    let body = "";
    try {{ body = await response.text(); }} catch (error) {{}}
    log(name + ": status " + response.status + " type " + response.type + " " + body.slice(0, 60));
  }} catch (error) {{
    log(name + ": failed " + error);
  }}
}}
(async () => {{
  const write = JSON.stringify({{nodes: [{{id: "evil_fetch", type: "t", value: "x"}}]}});
  const peer = JSON.stringify({{peerUrl: "http://127.0.0.1:2"}});
  for (const [path, body] of [["/api/lattice/nodes", write], ["/api/federation/peers/add", peer]]) {{
    await attempt(path + " text/plain", path, {{method: "POST", headers: {{"Content-Type": "text/plain"}}, body}});
    await attempt(path + " no-cors", path, {{method: "POST", mode: "no-cors", headers: {{"Content-Type": "text/plain"}}, body}});
    await attempt(path + " json", path, {{method: "POST", headers: {{"Content-Type": "application/json"}}, body}});
  }}
  await attempt("status read", "/api/federation/status", {{}});
  document.getElementById("form-write").submit();
  document.getElementById("form-peer").submit();
  log("done");
}})();
</script></body></html>"#,
        form(
            "form-write",
            "/api/lattice/nodes",
            r#"{"nodes":[{"id":"evil_form","type":"t","value":"x"}]"#
        ),
        form(
            "form-peer",
            "/api/federation/peers/add",
            r#"{"peerUrl":"http://127.0.0.1:3""#
        ),
    )
}

/// Serves `page` to every request, on a port of its own (another origin).
fn page_server(page: String) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buffer = [0u8; 8192];
            let _ = stream.read(&mut buffer);
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{page}",
                page.len()
            );
        }
    });
    port
}

/// How many `/api/...` requests of `route` the node answered with 403.
fn refused(server: &Server, route: &str) -> u64 {
    let (_, metrics) = http(server.port, "GET", "/metrics", b"", &[]);
    let prefix = format!("ark_lattice_http_requests_total{{route=\"{route}\",status=\"403\"}} ");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .map_or(0, |value| value.trim().parse().unwrap())
}

#[test]
fn pages_of_other_origins_cannot_drive_the_control_api_in_chromium() {
    let Some(chromium) = chromium() else {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("chromium is not installed; .ci/run installs it (apt-get install chromium)");
        }
        eprintln!("skipped: chromium is not installed (apt-get install chromium)");
        return;
    };
    let node = Server::start("cross-origin", &[], &[]);
    let page_port = page_server(attack_page(&node.url()));
    let profile = TempDir::new("cross-origin-chromium");
    let dom = dump_dom(
        &chromium,
        &profile.path.join("attack"),
        &format!("http://127.0.0.1:{page_port}/"),
        Some("10000"),
    );
    assert!(dom.contains("done"), "the page did not finish: {dom}");
    assert!(!dom.contains("status 200"), "{dom}");
    // A cross-origin page reads nothing: every CORS-mode call fails in the browser.
    for name in [
        "/api/lattice/nodes text/plain",
        "/api/lattice/nodes json",
        "status read",
    ] {
        assert!(dom.contains(&format!("{name}: failed")), "{name}: {dom}");
    }
    // Nothing changed on the node.
    for id in ["evil_fetch", "evil_form"] {
        assert_eq!(node.lattice.run(&["get", id]).code, 4, "{id}: {dom}");
    }
    let peers = node
        .lattice
        .run(&["federation", "list-peers", "--json"])
        .ok()
        .json();
    assert_eq!(count(field(&peers, "count")), 0, "{dom}");
    // The requests did reach the node, and the node refused them (not only the
    // browser): the text/plain fetch, the no-cors fetch and the form, for each route.
    for route in ["/api/lattice/nodes", "/api/federation/peers/add"] {
        let refused = refused(&node, route);
        assert!(refused >= 3, "{route}: {refused} refused\n{dom}");
    }
    // The node's own status page still works in the same browser.
    // (No virtual time: the page refreshes itself every 15 s.)
    let own = dump_dom(&chromium, &profile.path.join("own"), &node.url(), None);
    assert!(own.contains("id=\"peer-table\""), "{own}");
    println!(
        "chromium: {} lines of attack log, all refused",
        dom.lines().filter(|line| line.contains(": ")).count()
    );
}
