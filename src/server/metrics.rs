//! `GET /metrics` in the Prometheus text format (version 0.0.4), and counting HTTP
//! requests by route and status around `routes::handle`.
//!
//! Sync counters come from the totals kept in the store (so they survive restarts,
//! like ARK's `stats`); byte and request counters count since this process started.
//! Route labels are the paths of the route table (`protocol::Route::label_of`), never
//! raw paths, so a client cannot make up new series.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::rc::Rc;

use super::app::App;
use super::events::EventKind;
use super::routes::{self, ApiError};
use crate::http::{Request, Response};
use crate::protocol::Route;

/// The content type Prometheus expects for the text format.
pub(crate) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Requests answered, by route label and status.
#[derive(Debug, Default)]
pub(crate) struct HttpCounters {
    counts: RefCell<BTreeMap<(&'static str, u16), u64>>,
}

impl HttpCounters {
    pub(crate) fn add(&self, route: &'static str, status: u16) {
        *self.counts.borrow_mut().entry((route, status)).or_default() += 1;
    }

    pub(crate) fn snapshot(&self) -> BTreeMap<(&'static str, u16), u64> {
        self.counts.borrow().clone()
    }
}

/// Routes one request and counts it.
pub(crate) async fn counted(app: Rc<App>, request: Request) -> Response {
    let route = Route::label_of(&request.path);
    let counters = app.clone();
    let response = routes::handle(app, request).await;
    counters.http_requests().add(route, response.status);
    // Damaged records the request came across were skipped; move them aside now.
    if let Ok(mut store) = counters.instance().store().try_borrow_mut() {
        crate::sync::move_aside_damaged(&mut store);
    }
    response
}

/// Writes one metric family: `# HELP`, `# TYPE` and its samples.
struct Writer {
    text: String,
}

impl Writer {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (index, (label, label_value)) in labels.iter().enumerate() {
                if index > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{label}=\"{}\"", escape(label_value));
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {value}");
    }

    fn single(&mut self, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }
}

/// Label values escape backslash, double quote and newline.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn seconds(millis: u64) -> String {
    format!("{}.{:03}", millis / 1000, millis % 1000)
}

/// `GET /metrics`: each family once, in this order, so scrapes compare line by line.
pub(crate) fn render(app: &App) -> Result<Response, ApiError> {
    let mut out = Writer {
        text: String::with_capacity(4096),
    };
    sync_counters(&mut out, &app.instance().syncer().global_stats()?);
    wire_counters(&mut out, app);
    peer_gauges(&mut out, &app.instance().syncer().peers()?);
    store_gauges(&mut out, app, &app.instance().store().borrow().stats()?);
    held_gauges(&mut out, app)?;
    event_and_request_counters(&mut out, app);
    Ok(
        Response::new(200, crate::http::Body::Full(out.text.into_bytes()))
            .with_header("content-type", CONTENT_TYPE),
    )
}

/// What this instance's syncs did since the store was created.
fn sync_counters(out: &mut Writer, stats: &crate::sync::SyncStats) {
    out.family(
        "ark_lattice_syncs_total",
        "counter",
        "Syncs with peers this instance ran, by result.",
    );
    out.sample(
        "ark_lattice_syncs_total",
        &[("result", "success")],
        stats.successful_syncs,
    );
    out.sample(
        "ark_lattice_syncs_total",
        &[("result", "failure")],
        stats.failed_syncs,
    );
    out.single(
        "ark_lattice_nodes_sent_total",
        "counter",
        "Nodes sent to peers by this instance's syncs.",
        stats.nodes_sent,
    );
    out.single(
        "ark_lattice_nodes_received_total",
        "counter",
        "Nodes received from peers and applied by this instance's syncs.",
        stats.nodes_received,
    );
    out.single(
        "ark_lattice_conflicts_total",
        "counter",
        "Concurrent edits resolved during syncs (the losing version is kept in the conflict log).",
        stats.conflicts_resolved,
    );
}

/// Bytes, panics and connections of this process.
fn wire_counters(out: &mut Writer, app: &App) {
    out.single(
        "ark_lattice_bytes_sent_total",
        "counter",
        "Bytes sent on the wire, server and client, since start: HTTP framing and, over HTTPS, handshakes and TLS records included.",
        app.instance().wire().bytes_sent(),
    );
    out.single(
        "ark_lattice_bytes_received_total",
        "counter",
        "Bytes received on the wire, server and client, since start: HTTP framing and, over HTTPS, handshakes and TLS records included.",
        app.instance().wire().bytes_received(),
    );
    out.single(
        "ark_lattice_http_panics_total",
        "counter",
        "Requests whose handler panicked; each was answered 500 and logged.",
        app.instance().wire().panics(),
    );
    out.single(
        "ark_lattice_task_panics_total",
        "counter",
        "Panics in the node's own work (syncs, timer loops), each logged; that work failed and the node went on.",
        crate::panics::caught(),
    );
    let (pages_read, pages_shared) = app.shared_pages().counts();
    out.family(
        "ark_lattice_changes_pages_total",
        "counter",
        "Changes pages requests needed since start: read from the store and encoded, or shared (already made for a request at the same position, limits and store state).",
    );
    out.sample(
        "ark_lattice_changes_pages_total",
        &[("source", "read")],
        pages_read,
    );
    out.sample(
        "ark_lattice_changes_pages_total",
        &[("source", "shared")],
        pages_shared,
    );
    out.single(
        "ark_lattice_http_connections_shed_total",
        "counter",
        "Stalled connections closed to make room: over the per-address share or the total cap.",
        app.instance().wire().connections_shed(),
    );
    out.single(
        "ark_lattice_http_connections_refused_total",
        "counter",
        "Connections closed at accept because their address held its share, all busy.",
        app.instance().wire().connections_refused(),
    );
}

/// The peer list and each peer's last sync.
fn peer_gauges(out: &mut Writer, peers: &[crate::sync::PeerState]) {
    out.single(
        "ark_lattice_peers",
        "gauge",
        "Peers in the peer list.",
        peers.len(),
    );
    out.family(
        "ark_lattice_peer_up",
        "gauge",
        "1 if the last sync with the peer succeeded, else 0.",
    );
    for peer in peers {
        out.sample(
            "ark_lattice_peer_up",
            &[("peer", &peer.url)],
            u8::from(peer.is_active()),
        );
    }
    out.family(
        "ark_lattice_peer_last_success_timestamp_seconds",
        "gauge",
        "Unix time of the last successful sync with the peer.",
    );
    for peer in peers {
        if let Some(last) = peer.last_success {
            out.sample(
                "ark_lattice_peer_last_success_timestamp_seconds",
                &[("peer", &peer.url)],
                seconds(last),
            );
        }
    }
    out.family(
        "ark_lattice_peer_failures",
        "gauge",
        "Failed syncs with the peer in a row.",
    );
    for peer in peers {
        out.sample(
            "ark_lattice_peer_failures",
            &[("peer", &peer.url)],
            peer.failures,
        );
    }
}

/// The store's counts, its damage and the LAN peers heard.
fn store_gauges(out: &mut Writer, app: &App, store_stats: &crate::store::Stats) {
    out.single(
        "ark_lattice_lattice_nodes",
        "gauge",
        "Live nodes in the lattice.",
        store_stats.nodes,
    );
    out.single(
        "ark_lattice_lattice_tombstones",
        "gauge",
        "Deleted nodes kept as tombstones so the delete reaches peers.",
        store_stats.tombstones,
    );
    out.single(
        "ark_lattice_damaged_records_found_total",
        "counter",
        "Stored records found damaged (bytes not matching their content hash) since start; each was skipped, not served.",
        app.instance().store().borrow().damaged_found(),
    );
    out.single(
        "ark_lattice_store_damaged_records",
        "gauge",
        "Records moved aside as damaged over the store's life, kept in its damaged table.",
        store_stats.damaged,
    );
    out.single(
        "ark_lattice_store_size_bytes",
        "gauge",
        "Size of the store file.",
        store_stats.file_bytes,
    );
    out.single(
        "ark_lattice_lan_peers",
        "gauge",
        "Peers currently heard by LAN beacon.",
        app.instance().lan_peers().borrow().len(),
    );
    out.single(
        "ark_lattice_records_refused_total",
        "counter",
        "Received records refused since start: bad or missing signature (a changed id, deletion time, base or content), malformed, or a delete signed in format 1.",
        app.instance().syncer().refused_records.get(),
    );
}

/// The held table: records by reason, its bytes and what it dropped.
fn held_gauges(out: &mut Writer, app: &App) -> Result<(), ApiError> {
    out.family(
        "ark_lattice_held_records",
        "gauge",
        "Received records held back, by reason (untrusted_author, clock_ahead; held_table_full: dropped from the full held table, fetched again once there is room); applied when the reason goes away.",
    );
    let held = app.instance().syncer().held_counts()?;
    for reason in crate::sync::held::HoldReason::ALL {
        out.sample(
            "ark_lattice_held_records",
            &[("reason", reason.name())],
            held.by_reason.get(&reason).copied().unwrap_or(0),
        );
    }
    let (_, held_bytes, held_marker) = app.instance().syncer().held_usage()?;
    out.single(
        "ark_lattice_held_bytes",
        "gauge",
        "Bytes of the held table's entries (bounded by ARK_MAX_HELD_MB).",
        held_bytes,
    );
    out.single(
        "ark_lattice_held_dropped_total",
        "counter",
        "Held records dropped from the full held table to make room (ARK_MAX_HELD_RECORDS, ARK_MAX_HELD_MB), the oldest first; each is fetched again once there is room.",
        held_marker.drops,
    );
    Ok(())
}

/// Events and HTTP requests since start, the start time and the build.
fn event_and_request_counters(out: &mut Writer, app: &App) {
    out.family(
        "ark_lattice_events_total",
        "counter",
        "Federation events emitted since start, by type.",
    );
    let counts = app.instance().events().counts();
    for kind in EventKind::ALL {
        out.sample(
            "ark_lattice_events_total",
            &[("type", kind.name())],
            counts.get(&kind).copied().unwrap_or(0),
        );
    }
    out.family(
        "ark_lattice_http_requests_total",
        "counter",
        "HTTP requests answered since start, by route and status.",
    );
    for ((route, status), count) in app.http_requests().snapshot() {
        out.sample(
            "ark_lattice_http_requests_total",
            &[("route", route), ("status", &status.to_string())],
            count,
        );
    }
    out.single(
        "ark_lattice_start_time_seconds",
        "gauge",
        "Unix time this process started.",
        seconds(app.instance().started_at()),
    );
    out.family(
        "ark_lattice_build_info",
        "gauge",
        "Always 1; the labels say which build and instance this is.",
    );
    out.sample(
        "ark_lattice_build_info",
        &[
            ("version", env!("CARGO_PKG_VERSION")),
            ("instance", &app.instance().instance_name()),
        ],
        1,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(escape("x\ny"), "x\\ny");
        assert_eq!(seconds(1_700_000_000_123), "1700000000.123");
    }
}
