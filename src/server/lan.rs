//! LAN discovery on the server: the beacon task (announce, listen, answer newcomers,
//! expire the silent). The LAN half of `discover` (peers heard, the subnet scan) is the
//! service layer's (`service::discover`); beacon encoding and the scan itself live in
//! `discovery`.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_lite::future;
use miniserde::json::Value;
use smol::{LocalExecutor, Timer};

use super::app::App;
use super::events::EventKind;
use super::routes::{number, text};
use crate::discovery::{self, Beacon, Heard, MAX_BEACON_BYTES};
use crate::model::unix_millis_now;
use crate::protocol::{CAPABILITY_HTTPS, PROTOCOL_LEGACY, PROTOCOL_V2};
use crate::service::is_trusted;

/// A newcomer's beacon is answered with ours at once, but at most this often, so a
/// burst of beacons cannot make us flood the LAN.
const ANSWER_AT_MOST_EVERY: Duration = Duration::from_secs(1);

/// Opens the beacon socket and starts the beacon task; `None` (with a warning) when
/// discovery is off or the socket cannot be opened, which leaves the node working
/// without it.
pub(crate) fn start(
    executor: &'static LocalExecutor<'static>,
    app: &Rc<App>,
) -> Option<smol::Task<()>> {
    let config = &app.instance().config().discovery;
    if !config.enabled {
        return None;
    }
    match discovery::open(config, app.instance().config().federation.bind) {
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
    let config = app.instance().config().discovery.clone();
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
                if app.instance().config().verbose {
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
pub(crate) fn our_beacon(app: &App, destination: SocketAddr) -> Beacon {
    let address = discovery::local_ipv4(&app.instance().config().discovery, destination)
        .map_or_else(|| "0.0.0.0".to_owned(), |ip| ip.to_string());
    let mut capabilities = vec![PROTOCOL_LEGACY, PROTOCOL_V2];
    if app.instance().serves_https() {
        capabilities.push(CAPABILITY_HTTPS);
    }
    Beacon::signed(
        app.instance().key(),
        &app.instance().instance_name(),
        &address,
        app.instance().listen_port(),
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
                if app.instance().config().verbose {
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
            if app.instance().config().verbose {
                eprintln!("ark:discovery ignored a datagram from {source}: {error}");
            }
            return false;
        }
    };
    if beacon.peer_id == app.instance().instance_id_hex() {
        return false;
    }
    let verification = beacon.verify();
    let heard = app.instance().lan_peers().borrow_mut().hear(
        beacon.clone(),
        &verification,
        source,
        unix_millis_now(),
    );
    match heard {
        Heard::New => {
            // One entry, not a copy of the whole table per beacon (issue 10: 10,000
            // made-up ids cost 18 s of CPU that way).
            let listed = app
                .instance()
                .lan_peers()
                .borrow()
                .get(&beacon.peer_id)
                .cloned();
            if let Some(peer) = listed {
                // Only a signed beacon proves the id; an unsigned one could claim any.
                let trusted = peer.signed && is_trusted(app.instance(), &peer.beacon.peer_id);
                if app.instance().config().verbose {
                    eprintln!(
                        "ark:discovery heard {} at {}",
                        peer.beacon.peer_name, peer.url
                    );
                }
                app.instance().events().emit(
                    EventKind::PeerDiscovered,
                    [
                        ("source", text("beacon")),
                        ("peerId", text(&peer.beacon.peer_id)),
                        ("peerName", text(&peer.beacon.peer_name)),
                        ("url", text(&peer.url)),
                        ("fingerprint", text(&peer.beacon.key_fingerprint)),
                        ("signed", Value::Bool(peer.signed)),
                        ("trusted", Value::Bool(trusted)),
                    ],
                );
            }
            true
        }
        Heard::Again => false,
        Heard::Refused(reason) => {
            if app.instance().config().verbose {
                eprintln!("ark:discovery refused a beacon from {source}: {reason}");
            }
            false
        }
    }
}

fn expire(app: &App, max_age: u64) {
    let expired = app
        .instance()
        .lan_peers()
        .borrow_mut()
        .expire(unix_millis_now(), max_age);
    for peer in expired {
        app.instance().events().emit(
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
