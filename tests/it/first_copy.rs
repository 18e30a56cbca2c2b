//! The first copy of a lattice into an empty or far-behind store (issue 13): the puller
//! streams the peer's changes feed page by page instead of reconciling and fetching by
//! digest, resumes after a cut where it stopped, and hands over to the checkpointed
//! sync, against real `serve` processes through a proxy that cuts connections.

use miniserde::json::{self, Value};

use crate::delta::{FaultProxy, Faults, connect, import, sync_until_done, total};
use crate::trust::Server;
use crate::util::{count, field, http};

/// Requests `server` answered on `route`, from its `/metrics`.
fn requests_on(server: &Server, route: &str) -> u64 {
    let address = format!("127.0.0.1:{}", server.port).parse().unwrap();
    let reply = http(address, "GET", "/metrics", &[], None);
    let label = format!("ark_lattice_http_requests_total{{route=\"{route}\",");
    reply
        .body
        .lines()
        .filter(|line| line.starts_with(&label))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// Issue 13: the copy asks for compact pages (raw signatures, each author's key once) and
/// reads them; a peer that predates them (the proxy hides the `accept` header, so the
/// server answers JSON as older builds do) is copied alike, signatures checked either way.
#[test]
fn a_first_copy_reads_compact_pages_and_json_pages_from_an_older_peer() {
    for hide_accept in [false, true] {
        let a = Server::start(&format!("compact-a-{hide_accept}"), &[], &[]);
        let b = Server::start(&format!("compact-b-{hide_accept}"), &[], &[]);
        import(&a, "a", 1200, "command_node");
        let proxy = FaultProxy::start(
            a.port,
            Faults {
                hide_accept,
                ..Faults::default()
            },
        );
        connect(&b, &a, &proxy.url());
        let results = sync_until_done(&b, 3);
        let shown = results.iter().map(json::to_string).collect::<Vec<_>>();
        assert_eq!(results.len(), 1, "{shown:?}");
        assert_eq!(total(&results, "nodesReceived"), 1200, "{shown:?}");
        assert_eq!(a.lattice.hashes(), b.lattice.hashes());
        let compact = proxy.compact_pages();
        if hide_accept {
            assert_eq!(compact, 0, "the older peer answered JSON");
        } else {
            assert!(compact >= 3, "{compact} compact pages for 1,200 records");
        }
    }
}

#[test]
fn a_first_copy_streams_the_feed_resumes_after_cuts_and_hands_over() {
    let a = Server::start("copy-a", &[], &[]);
    let b = Server::start("copy-b", &[], &[]);
    import(&a, "a", 3000, "command_node");
    // Written at b before the copy: b holds far less than a, so it copies; these must
    // still reach a, and none of the copied records may go back.
    import(&b, "b", 5, "command_node");
    // Every connection is cut after 100 kB, a few pages of the copy.
    let proxy = FaultProxy::start(
        a.port,
        Faults {
            cut_after: Some(100_000),
            ..Faults::default()
        },
    );
    connect(&b, &a, &proxy.url());
    let results = sync_until_done(&b, 60);
    let shown = || {
        results
            .iter()
            .map(json::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(results.len() > 2, "the proxy cut the copy: {}", shown());
    assert_eq!(b.node_count(), 3005);
    assert_eq!(a.node_count(), 3005);
    assert_eq!(a.lattice.hashes(), b.lattice.hashes());
    // Each page is committed with the copy's checkpoint, so a cut loses only the page in
    // flight (never applied, asked for again) and nothing arrives twice.
    assert_eq!(total(&results, "nodesReceived"), 3000, "{}", shown());
    assert_eq!(total(&results, "nodesUnchanged"), 0, "{}", shown());
    assert_eq!(total(&results, "nodesSent"), 5, "{}", shown());
    assert!(requests_on(&a, "/federation/v2/changes") >= results.len() as u64);
    assert_eq!(requests_on(&a, "/federation/v2/reconcile"), 0);
    assert_eq!(requests_on(&a, "/federation/v2/fetch"), 0);

    // Then the checkpointed sync takes over: one change on each side is one page pulled
    // and one record pushed; nothing synced is fetched again.
    a.run(&[
        "add",
        "--id",
        "a-7",
        "--type",
        "command_node",
        "--value",
        "edited at a",
    ])
    .ok();
    b.run(&[
        "add",
        "--id",
        "b-new",
        "--type",
        "command_node",
        "--value",
        "written at b",
    ])
    .ok();
    let proxy_bytes = proxy.bytes();
    let result = sync_until_done(&b, 3).pop().unwrap();
    assert_eq!(count(field(&result, "nodesReceived")), 1);
    assert_eq!(count(field(&result, "nodesSent")), 1);
    assert!(matches!(field(&result, "success"), Value::Bool(true)));
    assert!(proxy.bytes() - proxy_bytes < 20_000);
    assert_eq!(a.lattice.hashes(), b.lattice.hashes());
    assert_eq!(requests_on(&a, "/federation/v2/reconcile"), 0);
}
