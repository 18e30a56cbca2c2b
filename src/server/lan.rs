//! LAN discovery on the server: the beacon task (announce, listen, answer newcomers,
//! expire the silent), and the LAN half of `discover` (peers heard, the subnet scan).
//! Beacon encoding and the scan itself live in `discovery`.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_lite::future;
use miniserde::json::{Number, Value};
use smol::{LocalExecutor, Timer};

use super::app::App;
use super::events::EventKind;
use super::routes::{ApiError, number, object, text};
use crate::discovery::{self, Beacon, Heard, LanPeer, MAX_BEACON_BYTES, ScanHit, Subnet};
use crate::http::HttpClient;
use crate::model::unix_millis_now;
use crate::protocol::{CAPABILITY_HTTPS, PROTOCOL_LEGACY, PROTOCOL_V2};

/// A newcomer's beacon is answered with ours at once, but at most this often, so a
/// burst of beacons cannot make us flood the LAN.
const ANSWER_AT_MOST_EVERY: Duration = Duration::from_secs(1);

/// Opens the beacon socket and starts the beacon task; `None` (with a warning) when
/// discovery is off or the socket cannot be opened, which leaves the node working
/// without it.
pub fn start(executor: &'static LocalExecutor<'static>, app: &Rc<App>) -> Option<smol::Task<()>> {
    let config = &app.config.discovery;
    if !config.enabled {
        return None;
    }
    match discovery::open(config, app.config.federation.bind) {
        Ok(socket) => {
            let mode = if config.unicast.is_empty() {
                format!("multicast {}:{}", config.group, config.port)
            } else {
                let targets: Vec<String> = config.unicast.iter().map(|a| a.to_string()).collect();
                format!(
                    "unicast to {} from port {}",
                    targets.join(", "),
                    config.port
                )
            };
            eprintln!(
                "LAN discovery: beacon every {} s, {mode}",
                config.interval.as_secs()
            );
            Some(executor.spawn(beacon_loop(app.clone(), socket)))
        }
        Err(error) => {
            eprintln!(
                "warning: LAN discovery is off: cannot open the beacon socket on UDP port {}: {error} (turn it off with --no-discovery)",
                config.port
            );
            None
        }
    }
}

async fn beacon_loop(app: Rc<App>, socket: smol::net::UdpSocket) {
    let config = app.config.discovery.clone();
    let destinations = discovery::destinations(&config);
    let expiry = config.expiry().as_millis() as u64;
    let mut next_beacon = Instant::now();
    let mut last_answer: Option<Instant> = None;
    let mut send_warned = false;
    let mut buffer = vec![0u8; MAX_BEACON_BYTES + 1];
    loop {
        if Instant::now() >= next_beacon {
            send_beacon(&app, &socket, &destinations, &mut send_warned).await;
            // A deferred answer goes out here too: counted, so a flood of newcomers gets
            // one beacon a second, not an answer and a deferred one.
            last_answer = Some(Instant::now());
            next_beacon = Instant::now() + config.interval;
            expire(&app, expiry);
        }
        let received = future::or(async { Some(socket.recv_from(&mut buffer).await) }, async {
            Timer::at(next_beacon).await;
            None
        })
        .await;
        match received {
            None => {}
            Some(Err(error)) => {
                if app.config.verbose {
                    eprintln!("ark:discovery receive failed: {error}");
                }
                // Errors such as ICMP port-unreachable reports come back at once;
                // pausing keeps a broken socket from spinning.
                Timer::after(Duration::from_millis(200)).await;
            }
            Some(Ok((length, source))) => {
                // While datagrams keep coming the receive never waits, so without this
                // a beacon flood would hold the thread and every request behind it.
                future::yield_now().await;
                let new = hear(&app, &buffer[..length], source);
                match last_answer {
                    Some(at) if new && at.elapsed() < ANSWER_AT_MOST_EVERY => {
                        // Not lost, only later: nodes started within a second of each
                        // other would otherwise wait a whole interval to hear us.
                        next_beacon = next_beacon.min(at + ANSWER_AT_MOST_EVERY);
                    }
                    _ if new => {
                        last_answer = Some(Instant::now());
                        send_beacon(&app, &socket, &destinations, &mut send_warned).await;
                    }
                    _ => {}
                }
            }
        }
    }
}

/// This instance's signed beacon, announcing the address that reaches `destination`.
pub fn our_beacon(app: &App, destination: SocketAddr) -> Beacon {
    let address = discovery::local_ipv4(&app.config.discovery, destination)
        .map_or_else(|| "0.0.0.0".to_owned(), |ip| ip.to_string());
    let mut capabilities = vec![PROTOCOL_LEGACY, PROTOCOL_V2];
    if app.serves_https() {
        capabilities.push(CAPABILITY_HTTPS);
    }
    Beacon::signed(
        &app.key,
        &app.instance_name(),
        &address,
        app.listen_port.get(),
        &capabilities,
        unix_millis_now(),
    )
}

async fn send_beacon(
    app: &App,
    socket: &smol::net::UdpSocket,
    destinations: &[SocketAddr],
    warned: &mut bool,
) {
    for destination in destinations {
        let bytes = our_beacon(app, *destination).encode();
        match socket.send_to(&bytes, destination).await {
            Ok(_) => {
                if app.config.verbose {
                    eprintln!("ark:discovery beacon sent to {destination}");
                }
            }
            Err(error) if !*warned => {
                *warned = true;
                eprintln!(
                    "warning: cannot send the LAN beacon to {destination}: {error} (is there a route for multicast?)"
                );
            }
            Err(_) => {}
        }
    }
}

/// Reads one datagram; `true` when it announced a peer not listed before.
fn hear(app: &App, bytes: &[u8], source: SocketAddr) -> bool {
    let beacon = match Beacon::decode(bytes) {
        Ok(beacon) => beacon,
        Err(error) => {
            if app.config.verbose {
                eprintln!("ark:discovery ignored a datagram from {source}: {error}");
            }
            return false;
        }
    };
    if beacon.peer_id == app.instance_id_hex() {
        return false;
    }
    let verification = beacon.verify();
    let heard =
        app.lan_peers
            .borrow_mut()
            .hear(beacon.clone(), &verification, source, unix_millis_now());
    match heard {
        Heard::New => {
            // One entry, not a copy of the whole table per beacon (issue 10: 10,000
            // made-up ids cost 18 s of CPU that way).
            let listed = app.lan_peers.borrow().get(&beacon.peer_id).cloned();
            if let Some(peer) = listed {
                let entry = lan_peer_json(app, &peer);
                if app.config.verbose {
                    eprintln!(
                        "ark:discovery heard {} at {}",
                        peer.beacon.peer_name, peer.url
                    );
                }
                app.events.emit(
                    EventKind::PeerDiscovered,
                    [
                        ("source", text("beacon")),
                        ("peerId", text(&peer.beacon.peer_id)),
                        ("peerName", text(&peer.beacon.peer_name)),
                        ("url", text(&peer.url)),
                        ("fingerprint", text(&peer.beacon.key_fingerprint)),
                        ("signed", Value::Bool(peer.signed)),
                        ("trusted", field(&entry, "trusted")),
                    ],
                );
            }
            true
        }
        Heard::Again => false,
        Heard::Refused(reason) => {
            if app.config.verbose {
                eprintln!("ark:discovery refused a beacon from {source}: {reason}");
            }
            false
        }
    }
}

fn expire(app: &App, max_age: u64) {
    let expired = app
        .lan_peers
        .borrow_mut()
        .expire(unix_millis_now(), max_age);
    for peer in expired {
        app.events.emit(
            EventKind::PeerExpired,
            [
                ("source", text("beacon")),
                ("peerId", text(&peer.beacon.peer_id)),
                ("peerName", text(&peer.beacon.peer_name)),
                ("url", text(&peer.url)),
                ("lastSeen", number(peer.last_seen)),
            ],
        );
    }
}

fn field(value: &Value, name: &str) -> Value {
    match value {
        Value::Object(object) => object.get(name).cloned().unwrap_or(Value::Null),
        _ => Value::Null,
    }
}

/// Whether we trust the instance with this id: its key is in the trust store with a
/// tier (not merely pending). The one place that answers this for discovery.
pub fn is_trusted(app: &App, instance_id: &str) -> bool {
    let Ok(instance_id) = crate::model::InstanceId::from_hex(instance_id) else {
        return false;
    };
    crate::sync::trust_book::tier_of(&app.store.borrow(), &instance_id)
        .is_ok_and(|tier| tier.is_some())
}

fn is_known_url(app: &App, url: &str) -> bool {
    app.syncer.peer(url).ok().flatten().is_some()
}

/// A peer heard by beacon, for `discover`, events and the status page.
pub fn lan_peer_json(app: &App, peer: &LanPeer) -> Value {
    // Only a signed beacon proves the id; an unsigned one could claim any.
    let trusted = peer.signed && is_trusted(app, &peer.beacon.peer_id);
    let capabilities: Vec<Value> = peer.beacon.capabilities.iter().map(|c| text(c)).collect();
    object([
        ("source", text("beacon")),
        ("url", text(&peer.url)),
        ("instanceId", text(&peer.beacon.peer_id)),
        ("instanceName", text(&peer.beacon.peer_name)),
        ("address", text(&peer.beacon.address)),
        ("port", number(u64::from(peer.beacon.port))),
        ("fingerprint", text(&peer.beacon.key_fingerprint)),
        ("signed", Value::Bool(peer.signed)),
        ("trusted", Value::Bool(trusted)),
        ("known", Value::Bool(is_known_url(app, &peer.url))),
        (
            "capabilities",
            Value::Array(capabilities.into_iter().collect()),
        ),
        ("version", text(&peer.beacon.version)),
        ("firstSeen", number(peer.first_seen)),
        ("lastSeen", number(peer.last_seen)),
    ])
}

/// A peer that answered the scan.
fn scan_hit_json(app: &App, hit: &ScanHit) -> Value {
    let trusted = hit.verified && is_trusted(app, &hit.instance_id);
    let protocols: Vec<Value> = hit.protocols.iter().map(|p| text(p)).collect();
    object([
        ("source", text("scan")),
        ("url", text(&hit.url)),
        ("instanceId", text(&hit.instance_id)),
        (
            "instanceName",
            hit.instance_name.as_deref().map_or(Value::Null, text),
        ),
        (
            "fingerprint",
            hit.fingerprint.as_deref().map_or(Value::Null, text),
        ),
        ("signed", Value::Bool(hit.verified)),
        ("trusted", Value::Bool(trusted)),
        ("known", Value::Bool(is_known_url(app, &hit.url))),
        ("protocols", Value::Array(protocols.into_iter().collect())),
    ])
}

/// What the LAN half of `discover` found: peers heard by beacon, and the scan's.
#[derive(Debug, Default)]
pub struct LanFindings {
    pub beacons: Vec<Value>,
    pub scanned: Vec<Value>,
    pub scan_summary: Value,
    /// URLs `--add` may add, with the key a signed beacon showed: signed beacons (an
    /// unsigned ARK beacon names the port of ARK's Python sync service, which does not
    /// speak this HTTP protocol) and everything that answered `/federation/info`.
    pub addable: Vec<(String, Option<String>)>,
}

/// Lists the peers heard by beacon and, when asked, scans `subnet` (else this
/// machine's /24) on `port` (else our federation port).
pub async fn find(
    app: &App,
    scan: bool,
    subnet: Option<&str>,
    port: Option<u16>,
) -> Result<LanFindings, ApiError> {
    let mut findings = LanFindings {
        scan_summary: Value::Null,
        ..LanFindings::default()
    };
    for peer in app.lan_peers.borrow().list() {
        if peer.signed {
            findings
                .addable
                .push((peer.url.clone(), peer.beacon.public_key.clone()));
        }
        findings.beacons.push(lan_peer_json(app, &peer));
    }
    if !scan {
        return Ok(findings);
    }
    let subnet = match subnet {
        Some(text) => Subnet::parse(text).map_err(ApiError::bad_request)?,
        None => {
            let config = &app.config.discovery;
            let toward = SocketAddr::from((config.group, config.port));
            let ip = discovery::local_ipv4(config, toward).ok_or_else(|| {
                ApiError::bad_request(
                    "cannot tell this machine's LAN address; pass --subnet, e.g. 192.168.1.0/24",
                )
            })?;
            Subnet::of(ip, 24)
        }
    };
    let port = port.unwrap_or(match app.listen_port.get() {
        0 => app.config.federation.port,
        listening => listening,
    });
    let client = HttpClient::new(discovery::scan_client_config(), app.wire.clone());
    // A node serving HTTPS is checked as a peer's certificate is (CA file, pins).
    #[cfg(feature = "tls")]
    let client = client.with_trust(app.config.tls.peer_trust.clone());
    let hosts = subnet.hosts();
    let started = Instant::now();
    let hits = discovery::scan(&client, &hosts, port, discovery::SCAN_CONCURRENCY).await;
    let elapsed = started.elapsed();
    let own_id = app.instance_id_hex();
    let mut seen = std::collections::BTreeSet::new();
    // A machine answers on each of its addresses in the subnet; list it once.
    for hit in hits
        .iter()
        .filter(|hit| hit.instance_id != own_id && seen.insert(hit.instance_id.clone()))
    {
        let entry = scan_hit_json(app, hit);
        if matches!(field(&entry, "known"), Value::Bool(false)) {
            app.events.emit(
                EventKind::PeerDiscovered,
                [
                    ("source", text("scan")),
                    ("peerId", text(&hit.instance_id)),
                    (
                        "peerName",
                        hit.instance_name.as_deref().map_or(Value::Null, text),
                    ),
                    ("url", text(&hit.url)),
                    (
                        "fingerprint",
                        hit.fingerprint.as_deref().map_or(Value::Null, text),
                    ),
                    ("signed", Value::Bool(hit.verified)),
                    ("trusted", field(&entry, "trusted")),
                ],
            );
        }
        findings.addable.push((hit.url.clone(), None));
        findings.scanned.push(entry);
    }
    findings.scan_summary = object([
        ("subnet", text(&subnet.to_string())),
        ("port", number(u64::from(port))),
        ("probed", number(hosts.len() as u64)),
        ("answered", number(findings.scanned.len() as u64)),
        (
            "durationMs",
            Value::Number(Number::U64(elapsed.as_millis() as u64)),
        ),
    ]);
    Ok(findings)
}
