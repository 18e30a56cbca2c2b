//! `GET /`: a small status page for people. Plain HTML and CSS in one response, with
//! no external assets and no script: it refreshes itself with a meta tag. It shows the
//! instance, its key fingerprint, a drawing of the federation (inline SVG), the peers
//! with their state and last sync, the peers heard on the LAN, and, for loopback
//! callers or callers with the admin token, recent events and conflicts.

use std::fmt::Write;

use super::app::App;
use super::routes::ApiError;
use crate::config::FederationMode;
use crate::http::{Body, Response};
use crate::model::{format_rfc3339, unix_millis_now};
use crate::sync::PeerState;

/// Seconds between the page's own refreshes.
const REFRESH_SECS: u32 = 15;
/// Peers drawn around this node; the table lists them all.
const DRAWN_PEERS: usize = 12;

/// Escapes text for HTML content and attribute values.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
    out
}

fn ago(now: u64, millis: Option<u64>) -> String {
    match millis {
        None | Some(0) => "never".to_owned(),
        Some(millis) => {
            let seconds = now.saturating_sub(millis) / 1000;
            let relative = match seconds {
                0..=59 => format!("{seconds} s ago"),
                60..=3599 => format!("{} min ago", seconds / 60),
                3600..=86_399 => format!("{} h ago", seconds / 3600),
                _ => format!("{} d ago", seconds / 86_400),
            };
            format!(
                "<time datetime=\"{0}\" title=\"{0}\">{relative}</time>",
                format_rfc3339(millis)
            )
        }
    }
}

/// `active`, `failing` or `new`, as `federation list-peers` says it.
fn state(peer: &PeerState) -> &'static str {
    if peer.is_active() {
        "active"
    } else if peer.failures > 0 {
        "failing"
    } else {
        "new"
    }
}

const STYLE: &str = "
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0;background:#f4f6f8;color:#1d2430}
header{background:#1d2b3a;color:#fff;padding:14px 24px}
header h1{margin:0;font-size:20px}
header p{margin:4px 0 0;color:#b9c6d3}
main{padding:16px 24px;display:grid;grid-template-columns:minmax(0,1fr) minmax(0,1fr);gap:16px}
section{background:#fff;border:1px solid #dde3ea;border-radius:6px;padding:12px 16px}
section.wide{grid-column:1/-1}
h2{font-size:15px;margin:0 0 8px}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:5px 8px;border-bottom:1px solid #eef1f4;vertical-align:top}
td code{white-space:nowrap}
th{font-size:12px;text-transform:uppercase;letter-spacing:.04em;color:#5b6776}
code,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:13px;overflow-wrap:anywhere}
dl{display:grid;grid-template-columns:max-content 1fr;gap:3px 14px;margin:0}
dt{color:#5b6776}dd{margin:0}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600}
.active{background:#dff3e4;color:#17663a}.failing{background:#fbe0e0;color:#9b1c1c}.new{background:#e8ebef;color:#4a5565}
.muted{color:#6b7683}
svg text{font:12px system-ui,sans-serif}
@media (max-width:900px){main{grid-template-columns:1fr}}
";

/// Renders the page. `privileged` callers (loopback or admin token) also see recent
/// events and conflicts.
pub(crate) fn render(app: &App, privileged: bool) -> Result<Response, ApiError> {
    let now = unix_millis_now();
    let peers = app.instance().syncer().peers()?;
    let lan_peers = app.instance().lan_peers().borrow().list();
    let name = escape(&app.instance().instance_name());
    let fingerprint = escape(&app.instance().key().public_key().fingerprint());
    let mut html = String::with_capacity(16 * 1024);
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <meta http-equiv=\"refresh\" content=\"{REFRESH_SECS}\">\
         <title>{name} · ark-lattice</title><style>{STYLE}</style></head><body>\
         <header><h1>{name}</h1><p>ark-lattice {version} · {kind} instance · {mode} mode · key <span class=\"mono\">{fingerprint}</span></p></header><main>",
        version = env!("CARGO_PKG_VERSION"),
        kind = app.instance().config().instance_type,
        mode = app.instance().config().federation.mode,
    );

    instance_section(&mut html, app, now, &name, &fingerprint, lan_peers.len())?;
    html.push_str("<section id=\"map\"><h2>Federation</h2>");
    draw(&mut html, app, &peers, &lan_peers);
    html.push_str("</section>");
    peer_table(&mut html, app, now, &peers);
    lan_table(&mut html, app, now, &lan_peers);
    if privileged {
        events_and_conflicts(&mut html, app, now)?;
    } else {
        html.push_str(
            "<section class=\"wide\"><p class=\"muted\">Recent events and conflicts are shown to loopback callers and callers with the admin token.</p></section>",
        );
    }
    let _ = writeln!(
        html,
        "</main><footer style=\"padding:0 24px 16px\" class=\"muted\">Refreshes every {REFRESH_SECS} s · \
         <a href=\"/metrics\">metrics</a> · <a href=\"/federation/info\">info</a></footer></body></html>"
    );
    Ok(Response::new(200, Body::Full(html.into_bytes()))
        .with_header("content-type", "text/html; charset=utf-8")
        .with_header("cache-control", "no-store"))
}

/// Who this instance is, how it listens and syncs, and what its store holds.
fn instance_section(
    html: &mut String,
    app: &App,
    now: u64,
    name: &str,
    fingerprint: &str,
    lan_heard: usize,
) -> Result<(), ApiError> {
    let stats = app.instance().syncer().global_stats()?;
    let store_stats = app.instance().store().borrow().stats()?;
    let federation = &app.instance().config().federation;
    let _ = write!(
        html,
        "<section id=\"instance\"><h2>Instance</h2><dl>\
         <dt>Name</dt><dd>{name}</dd>\
         <dt>Instance id</dt><dd class=\"mono\">{id}</dd>\
         <dt>Key fingerprint</dt><dd class=\"mono\">{fingerprint}</dd>\
         <dt>Listening</dt><dd>port {port}, {scheme}{enabled}</dd>\
         <dt>Hub</dt><dd>{hub}</dd>\
         <dt>Auto-sync</dt><dd>{auto_sync}</dd>\
         <dt>Lattice</dt><dd>nodes: {nodes}, tombstones: {tombstones}, store: {store_kib} KiB</dd>\
         <dt>Syncs</dt><dd>{ok} ok, {failed} failed; {sent} nodes sent, {received} received; {conflicts} conflicts resolved</dd>\
         <dt>LAN discovery</dt><dd>{discovery}</dd>\
         <dt>Started</dt><dd>{started}</dd></dl></section>",
        id = escape(&app.instance().instance_id_hex()),
        port = app.instance().listen_port(),
        scheme = if app.instance().serves_https() {
            "HTTPS: peers reach it at <code>https://</code>"
        } else {
            "plain HTTP"
        },
        enabled = if app.instance().federation_enabled() {
            ""
        } else {
            " (federation stopped)"
        },
        hub = federation.hub_url.as_deref().map_or_else(
            || "none".to_owned(),
            |hub| format!("<code>{}</code>", escape(hub))
        ),
        auto_sync = if app.instance().auto_sync() {
            format!("on, every {} s", app.instance().sync_interval_ms() / 1000)
        } else {
            "off".to_owned()
        },
        nodes = store_stats.nodes,
        tombstones = store_stats.tombstones,
        store_kib = store_stats.file_bytes / 1024,
        ok = stats.successful_syncs,
        failed = stats.failed_syncs,
        sent = stats.nodes_sent,
        received = stats.nodes_received,
        conflicts = stats.conflicts_resolved,
        discovery = if app.instance().config().discovery.enabled {
            format!("on, {lan_heard} heard")
        } else {
            "off".to_owned()
        },
        started = ago(now, Some(app.instance().started_at())),
    );

    Ok(())
}

/// The peer list, one row per peer with its last sync.
fn peer_table(html: &mut String, app: &App, now: u64, peers: &[PeerState]) {
    let federation = &app.instance().config().federation;
    html.push_str("<section class=\"wide\" id=\"peers\"><h2>Peers</h2>");
    if peers.is_empty() {
        html.push_str(
            "<p class=\"muted\">No peers yet. Add one with <code>ark-lattice federation add-peer URL</code>.</p>",
        );
    }
    html.push_str(
        "<table id=\"peer-table\"><thead><tr><th>Peer</th><th>Name</th><th>State</th><th>Protocol</th>\
         <th>Last sync</th><th>Syncs</th><th>Received / sent</th><th>Last error</th></tr></thead><tbody>",
    );
    for peer in peers {
        let is_hub = federation.hub_url.as_deref() == Some(peer.url.as_str());
        let _ = write!(
            html,
            "<tr><td><code>{url}</code>{hub}</td><td>{name}</td><td><span class=\"badge {state}\">{state}</span></td>\
             <td>{protocol}</td><td>{last}</td><td>{syncs}</td><td>{received} / {sent}</td><td>{error}</td></tr>",
            url = escape(&peer.url),
            hub = if is_hub {
                " <span class=\"muted\">(hub)</span>"
            } else {
                ""
            },
            name = escape(peer.instance_name.as_deref().unwrap_or("–")),
            state = state(peer),
            protocol = escape(peer.protocol.as_deref().unwrap_or("–")),
            last = ago(now, peer.last_success),
            syncs = peer.stats.total_syncs,
            received = peer.stats.nodes_received,
            sent = peer.stats.nodes_sent,
            error = escape(peer.last_error.as_deref().unwrap_or("")),
        );
    }
    html.push_str("</tbody></table></section>");
}

/// The peers heard by LAN beacon.
fn lan_table(html: &mut String, app: &App, now: u64, lan_peers: &[crate::discovery::LanPeer]) {
    html.push_str("<section class=\"wide\" id=\"lan\"><h2>Heard on the LAN</h2>");
    if lan_peers.is_empty() {
        html.push_str(if app.instance().config().discovery.enabled {
            "<p class=\"muted\">No beacons heard yet.</p>"
        } else {
            "<p class=\"muted\">LAN discovery is off on this instance.</p>"
        });
    } else {
        html.push_str(
            "<table><thead><tr><th>URL</th><th>Name</th><th>Fingerprint</th><th>Beacon</th><th>Last heard</th></tr></thead><tbody>",
        );
        for peer in lan_peers {
            let _ = write!(
                html,
                "<tr><td><code>{url}</code></td><td>{name}</td><td class=\"mono\">{fingerprint}</td><td>{signed}</td><td>{last}</td></tr>",
                url = escape(&peer.url),
                name = escape(&peer.beacon.peer_name),
                fingerprint = escape(&peer.beacon.key_fingerprint),
                signed = if peer.signed {
                    "signed"
                } else {
                    "unsigned (ARK)"
                },
                last = ago(now, Some(peer.last_seen)),
            );
        }
        html.push_str("</tbody></table>");
    }
    html.push_str("</section>");
}

/// The recent events and conflicts, for privileged callers only.
fn events_and_conflicts(html: &mut String, app: &App, now: u64) -> Result<(), ApiError> {
    html.push_str("<section id=\"events\"><h2>Recent events</h2>");
    let events = app.instance().events().recent(20);
    if events.is_empty() {
        html.push_str("<p class=\"muted\">No events since start.</p>");
    } else {
        html.push_str(
            "<table><thead><tr><th>When</th><th>Event</th><th>Peer</th></tr></thead><tbody>",
        );
        for event in events {
            let peer = ["peer", "url"]
                .iter()
                .find_map(|key| match event.fields.get(*key) {
                    Some(miniserde::json::Value::String(text)) => Some(text.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            let _ = write!(
                html,
                "<tr><td>{when}</td><td>{kind}</td><td><code>{peer}</code></td></tr>",
                when = ago(now, Some(event.timestamp)),
                kind = event.kind.name(),
                peer = escape(&peer),
            );
        }
        html.push_str("</tbody></table>");
    }
    html.push_str("</section><section id=\"conflicts\"><h2>Recent conflicts</h2>");
    let conflicts = app.instance().store().borrow().conflicts(Some(10))?;
    if conflicts.is_empty() {
        html.push_str("<p class=\"muted\">No conflicts: no concurrent edits collided.</p>");
    } else {
        html.push_str(
            "<table><thead><tr><th>Node</th><th>When</th><th>Lost version</th><th>Won version</th></tr></thead><tbody>",
        );
        for conflict in &conflicts {
            let _ = write!(
                html,
                "<tr><td><code>{id}</code></td><td>{when}</td><td class=\"mono\">{lost}</td><td class=\"mono\">{won}</td></tr>",
                id = escape(&conflict.loser.id),
                when = ago(now, Some(conflict.resolved_at)),
                lost = escape(&truncate(&conflict.loser.meta.version.to_wire(), 24)),
                won = escape(&truncate(&conflict.winner.to_wire(), 24)),
            );
        }
        html.push_str("</tbody></table>");
    }
    html.push_str("</section>");
    Ok(())
}

/// The federation as inline SVG: this node in the middle, the hub above it, peers
/// around it (coloured by state), and LAN peers not in the peer list dashed.
fn draw(html: &mut String, app: &App, peers: &[PeerState], lan: &[crate::discovery::LanPeer]) {
    const WIDTH: f64 = 560.0;
    const HEIGHT: f64 = 340.0;
    let (cx, cy) = (WIDTH / 2.0, HEIGHT / 2.0 + 10.0);
    let hub = app.instance().config().federation.hub_url.clone();
    let mut nodes = drawn_nodes(hub.as_deref(), peers, lan);
    let hidden = nodes.len().saturating_sub(DRAWN_PEERS);
    nodes.truncate(DRAWN_PEERS);
    let _ = write!(
        html,
        "<svg id=\"federation-map\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" width=\"100%\" role=\"img\" \
         aria-label=\"this node, its hub and its peers\" xmlns=\"http://www.w3.org/2000/svg\">"
    );
    let hub_position = (cx, 42.0);
    if let Some(hub_url) = &hub {
        let hub_state = peers
            .iter()
            .find(|peer| &peer.url == hub_url)
            .map_or("new", state);
        let _ = write!(
            html,
            "<line x1=\"{cx}\" y1=\"{cy}\" x2=\"{x}\" y2=\"{y}\" stroke=\"{c}\" stroke-width=\"3\"/>",
            x = hub_position.0,
            y = hub_position.1,
            c = colour(hub_state)
        );
    }
    let positions = around(nodes.len(), hub.is_some(), (cx, cy));
    for ((_, _, state, lan_only), (x, y)) in nodes.iter().zip(&positions) {
        let dash = if *lan_only || *state == "failing" {
            " stroke-dasharray=\"6 5\""
        } else {
            ""
        };
        let _ = write!(
            html,
            "<line x1=\"{cx}\" y1=\"{cy}\" x2=\"{x:.1}\" y2=\"{y:.1}\" stroke=\"{c}\" stroke-width=\"2\"{dash}/>",
            c = colour(state)
        );
    }
    if let Some(hub_url) = &hub {
        let _ = write!(
            html,
            "<rect x=\"{x}\" y=\"{y}\" width=\"120\" height=\"34\" rx=\"6\" fill=\"#fff7e0\" stroke=\"#c99a1d\" stroke-width=\"2\"/>\
             <text x=\"{cx}\" y=\"{ty}\" text-anchor=\"middle\" font-weight=\"600\">hub</text>\
             <text x=\"{cx}\" y=\"{uy}\" text-anchor=\"middle\" fill=\"#5b6776\">{url}</text>",
            x = hub_position.0 - 60.0,
            y = hub_position.1 - 30.0,
            ty = hub_position.1 - 9.0,
            uy = hub_position.1 + 18.0,
            url = escape(&short_url(hub_url)),
        );
    }
    for ((url, label, state, lan_only), (x, y)) in nodes.iter().zip(&positions) {
        let dash = if *lan_only {
            " stroke-dasharray=\"4 3\""
        } else {
            ""
        };
        let _ = write!(
            html,
            "<g><title>{title}</title><circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"16\" fill=\"#fff\" stroke=\"{c}\" stroke-width=\"3\"{dash}/>\
             <text x=\"{x:.1}\" y=\"{ly:.1}\" text-anchor=\"middle\">{label}</text>\
             <text x=\"{x:.1}\" y=\"{uy:.1}\" text-anchor=\"middle\" fill=\"#6b7683\">{url_short}</text></g>",
            title = escape(&format!("{url} ({state})")),
            c = colour(state),
            ly = y + 30.0,
            uy = y + 44.0,
            label = escape(&truncate(label, 22)),
            url_short = escape(&short_url(url)),
        );
    }
    let _ = write!(
        html,
        "<circle cx=\"{cx}\" cy=\"{cy}\" r=\"30\" fill=\"#1d2b3a\"/>\
         <text x=\"{cx}\" y=\"{ty}\" text-anchor=\"middle\" fill=\"#fff\" font-weight=\"600\">this node</text>\
         <text x=\"{cx}\" y=\"{ny}\" text-anchor=\"middle\">{name}</text>",
        ty = cy + 4.0,
        ny = cy + 48.0,
        name = escape(&truncate(&app.instance().instance_name(), 28)),
    );
    if hidden > 0 {
        let _ = write!(
            html,
            "<text x=\"{x}\" y=\"{y}\" text-anchor=\"end\" fill=\"#6b7683\">+{hidden} more in the table</text>",
            x = WIDTH - 8.0,
            y = HEIGHT - 8.0
        );
    }
    html.push_str("</svg>");
    legend(html, app);
}

/// A peer as drawn: its URL, its label, its state and whether it is only heard on the
/// LAN (not in the peer list).
type DrawnNode = (String, String, &'static str, bool);

/// The peers to draw around this node (the hub is drawn apart), then the LAN peers
/// that are not in the peer list.
fn drawn_nodes(
    hub: Option<&str>,
    peers: &[PeerState],
    lan: &[crate::discovery::LanPeer],
) -> Vec<DrawnNode> {
    let mut nodes: Vec<DrawnNode> = Vec::new();
    for peer in peers {
        if hub == Some(peer.url.as_str()) {
            continue;
        }
        let label = peer
            .instance_name
            .clone()
            .unwrap_or_else(|| short_url(&peer.url));
        nodes.push((peer.url.clone(), label, state(peer), false));
    }
    for peer in lan {
        if !peers.iter().any(|known| known.url == peer.url) {
            nodes.push((peer.url.clone(), peer.beacon.peer_name.clone(), "lan", true));
        }
    }
    nodes
}

fn colour(state: &str) -> &'static str {
    match state {
        "active" => "#2f9e5b",
        "failing" => "#d64545",
        "lan" => "#3b7dd8",
        _ => "#8a96a3",
    }
}

/// Peers on an ellipse around this node, starting on the left so that two peers sit
/// either side of it (clear of its name below); with a hub the top stays free and
/// the peers spread from the right over the bottom to the left.
fn around(drawn: usize, with_hub: bool, (cx, cy): (f64, f64)) -> Vec<(f64, f64)> {
    let count = drawn.max(1) as f64;
    (0..drawn)
        .map(|index| {
            let degrees = if with_hub {
                if drawn == 1 {
                    180.0
                } else {
                    -15.0 + 210.0 * index as f64 / (count - 1.0)
                }
            } else {
                180.0 + 360.0 * index as f64 / count
            };
            let angle = f64::to_radians(degrees);
            (cx + 200.0 * angle.cos(), cy + 110.0 * angle.sin())
        })
        .collect()
}

/// What the colours mean, and hub mode's one rule.
fn legend(html: &mut String, app: &App) {
    html.push_str("<p class=\"muted\" style=\"margin:4px 0 0\">");
    html.push_str(
        "<span style=\"color:#2f9e5b\">●</span> active &nbsp; <span style=\"color:#d64545\">●</span> failing &nbsp; \
         <span style=\"color:#8a96a3\">●</span> not synced yet &nbsp; <span style=\"color:#3b7dd8\">●</span> heard on the LAN, not a peer",
    );
    if app.instance().config().federation.mode == FederationMode::Hub
        && app.instance().config().federation.hub_url.is_some()
    {
        html.push_str(" · hub mode: syncs with the hub only");
    }
    html.push_str("</p>");
}

fn short_url(url: &str) -> String {
    url.strip_prefix("http://").unwrap_or(url).to_owned()
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let kept: String = text.chars().take(max - 1).collect();
        format!("{kept}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_for_html() {
        assert_eq!(
            escape(r#"<script>alert("x") & 'y'</script>"#),
            "&lt;script&gt;alert(&quot;x&quot;) &amp; &#39;y&#39;&lt;/script&gt;"
        );
        assert_eq!(truncate("abcdef", 4), "abc…");
        assert_eq!(ago(10_000, None), "never");
        assert!(ago(70_000, Some(10_000)).contains("1 min ago"));
    }
}
