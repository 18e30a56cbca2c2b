//! `discover`: peers of our peers and of the hub's registry, peers heard by LAN beacon
//! and, when asked, those answering `/federation/info` on the local network; adding
//! those that can be synced with.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Instant;

use miniserde::json::Value;

use super::error::OpError;
use super::events::EventKind;
use super::federation::{AddPeer, add_peer};
use super::instance::Instance;
use super::output::string as text;
use crate::config::normalize_peer_url;
use crate::discovery::{self, LanPeer, ScanHit, Subnet};
use crate::http::HttpClient;
use crate::protocol::{
    DiscoverAnswer, FoundPeer, LanEntry, LanSource, PeerAddAnswer, PeerDirectory, Route,
    ScanSummary, parse_object,
};

/// Whether we trust the instance with this id: its key is in the trust store with a
/// tier (not merely pending). The one place that answers this for discovery.
pub(crate) fn is_trusted(instance: &Instance, instance_id: &str) -> bool {
    let Ok(instance_id) = crate::model::InstanceId::from_hex(instance_id) else {
        return false;
    };
    crate::sync::trust_book::tier_of(&instance.store().borrow(), &instance_id)
        .is_ok_and(|tier| tier.is_some())
}

fn is_known_url(instance: &Instance, url: &str) -> bool {
    instance.syncer().peer(url).ok().flatten().is_some()
}

/// A peer heard by beacon, as `discover` lists it.
fn beacon_entry(instance: &Instance, peer: &LanPeer) -> LanEntry {
    LanEntry {
        url: peer.url.clone(),
        instance_id: peer.beacon.peer_id.clone(),
        instance_name: Some(peer.beacon.peer_name.clone()),
        fingerprint: Some(peer.beacon.key_fingerprint.clone()),
        signed: peer.signed,
        // Only a signed beacon proves the id; an unsigned one could claim any.
        trusted: peer.signed && is_trusted(instance, &peer.beacon.peer_id),
        known: is_known_url(instance, &peer.url),
        source: LanSource::Beacon {
            address: peer.beacon.address.clone(),
            port: u64::from(peer.beacon.port),
            capabilities: peer.beacon.capabilities.clone(),
            version: peer.beacon.version.clone(),
            first_seen: peer.first_seen,
            last_seen: peer.last_seen,
        },
    }
}

/// A peer that answered the scan.
fn scan_entry(instance: &Instance, hit: &ScanHit) -> LanEntry {
    LanEntry {
        url: hit.url.clone(),
        instance_id: hit.instance_id.clone(),
        instance_name: hit.instance_name.clone(),
        fingerprint: hit.fingerprint.clone(),
        signed: hit.verified,
        trusted: hit.verified && is_trusted(instance, &hit.instance_id),
        known: is_known_url(instance, &hit.url),
        source: LanSource::Scan {
            protocols: hit.protocols.clone(),
        },
    }
}

/// What the LAN half of `discover` found: peers heard by beacon, and the scan's.
#[derive(Debug, Default)]
pub(crate) struct LanFindings {
    pub beacons: Vec<LanEntry>,
    pub scanned: Vec<LanEntry>,
    pub scan_summary: Option<ScanSummary>,
    /// URLs `--add` may add, with the key a signed beacon showed: signed beacons (an
    /// unsigned ARK beacon names the port of ARK's Python sync service, which does not
    /// speak this HTTP protocol) and everything that answered `/federation/info`.
    pub addable: Vec<(String, Option<String>)>,
}

/// Lists the peers heard by beacon and, when asked, scans `subnet` (else this
/// machine's /24) on `port` (else our federation port).
async fn find_lan(
    instance: &Instance,
    scan: bool,
    subnet: Option<&str>,
    port: Option<u16>,
) -> Result<LanFindings, OpError> {
    let mut findings = LanFindings::default();
    for peer in instance.lan_peers().borrow().list() {
        if peer.signed {
            findings
                .addable
                .push((peer.url.clone(), peer.beacon.public_key.clone()));
        }
        findings.beacons.push(beacon_entry(instance, &peer));
    }
    if !scan {
        return Ok(findings);
    }
    let subnet = match subnet {
        Some(text) => Subnet::parse(text).map_err(OpError::Invalid)?,
        None => {
            let config = &instance.config().discovery;
            let toward = SocketAddr::from((config.group, config.port));
            let ip = discovery::local_ipv4(config, toward).ok_or_else(|| {
                OpError::Invalid(
                    "cannot tell this machine's LAN address; pass --subnet, e.g. 192.168.1.0/24"
                        .into(),
                )
            })?;
            Subnet::of(ip, 24)
        }
    };
    let port = port.unwrap_or(match instance.listen_port() {
        0 => instance.config().federation.port,
        listening => listening,
    });
    let client = HttpClient::new(discovery::scan_client_config(), instance.wire().clone());
    // A node serving HTTPS is checked as a peer's certificate is (CA file, pins).
    #[cfg(feature = "tls")]
    let client = client.with_trust(instance.config().tls.peer_trust.clone());
    let hosts = subnet.hosts();
    let started = Instant::now();
    let hits = discovery::scan(&client, &hosts, port, discovery::SCAN_CONCURRENCY).await;
    let elapsed = started.elapsed();
    let own_id = instance.instance_id_hex();
    let mut seen = std::collections::BTreeSet::new();
    // A machine answers on each of its addresses in the subnet; list it once.
    for hit in hits
        .iter()
        .filter(|hit| hit.instance_id != own_id && seen.insert(hit.instance_id.clone()))
    {
        let entry = scan_entry(instance, hit);
        if !entry.known {
            instance.events().emit(
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
                    ("trusted", Value::Bool(entry.trusted)),
                ],
            );
        }
        findings.addable.push((hit.url.clone(), None));
        findings.scanned.push(entry);
    }
    findings.scan_summary = Some(ScanSummary {
        subnet: subnet.to_string(),
        port: u64::from(port),
        probed: hosts.len() as u64,
        answered: findings.scanned.len() as u64,
        duration_ms: elapsed.as_millis() as u64,
    });
    Ok(findings)
}

/// What `discover` looks at besides our peers' peer lists.
#[derive(Debug, Clone, Default)]
pub(crate) struct DiscoverOptions {
    /// Add what was found (only what can be synced with; see [`LanFindings`]).
    pub add: bool,
    /// Also scan the local /24 (or `subnet`) for `/federation/info`.
    pub scan: bool,
    pub subnet: Option<String>,
    /// The port to scan; our federation port when not given.
    pub scan_port: Option<u16>,
}

/// Asks every target and the hub for the peers they know, lists the peers heard by LAN
/// beacon and, with `scan`, those answering on the local network; lists those we do
/// not know yet under `peers`, and adds them with `add`.
pub(crate) async fn discover(
    instance: &Instance,
    options: &DiscoverOptions,
) -> Result<DiscoverAnswer, OpError> {
    let known: Vec<String> = instance
        .syncer()
        .peers()?
        .into_iter()
        .map(|peer| peer.url)
        .collect();
    let mut errors = Vec::new();
    let found = peers_of_targets(instance, &known, &mut errors).await?;
    let lan = find_lan(
        instance,
        options.scan,
        options.subnet.as_deref(),
        options.scan_port,
    )
    .await?;
    let mut added_peers = Vec::new();
    if options.add {
        // Added as `add-peer` adds: the key is pinned, the one a signed beacon showed
        // (checked against the peer's info) or the one its info shows (issue 11: peers
        // added unpinned stayed failing on both sides).
        let own = crate::http::node_base_url(
            instance.serves_https(),
            std::net::Ipv4Addr::LOCALHOST.into(),
            instance.listen_port(),
        );
        let candidates = found
            .keys()
            .map(|url| (url.clone(), None))
            .chain(lan.addable.iter().cloned());
        for (url, key) in candidates {
            if url == own || known.contains(&url) {
                continue;
            }
            let request = AddPeer {
                url: &url,
                pubkey: key.as_deref(),
                ..AddPeer::default()
            };
            match add_peer(instance, request).await {
                Ok(PeerAddAnswer::Added { added: true, .. }) => added_peers.push(url),
                Ok(_) => {}
                Err(error) => errors.push(format!("{url}: {error}")),
            }
        }
    }
    Ok(DiscoverAnswer {
        peers: found.into_values().collect(),
        lan: lan.beacons,
        scanned: lan.scanned,
        scan: lan.scan_summary,
        discovery_enabled: instance.config().discovery.enabled,
        listening: instance.listen_port() != 0,
        added: options.add,
        added_peers,
        errors,
    })
}

/// The peers each target's peer list and the hub's registry of live spokes name that
/// are neither known nor this instance, by URL. A source that cannot be asked is noted
/// in `errors`.
async fn peers_of_targets(
    instance: &Instance,
    known: &[String],
    errors: &mut Vec<String>,
) -> Result<BTreeMap<String, FoundPeer>, OpError> {
    let own_id = instance.instance_id_hex();
    let mut found = BTreeMap::new();
    let mut sources: Vec<(String, String)> = instance
        .sync_targets()?
        .into_iter()
        .map(|target| (Route::ArkDiscover.url(&target), target))
        .collect();
    if let Some(hub) = &instance.config().federation.hub_url {
        sources.push((Route::PythonDiscover.url(hub), hub.clone()));
    }
    for (url, target) in sources {
        let answer = match instance
            .syncer()
            .client
            .send(instance.syncer().get(&url))
            .await
        {
            Ok(response) if response.status == 200 => {
                parse_object(&response.body, &url).map_err(|error| error.to_string())
            }
            Ok(response) => Err(format!("{url} answered {}", response.status)),
            Err(error) => Err(error.to_string()),
        };
        let answer = match answer {
            Ok(answer) => answer,
            Err(error) => {
                errors.push(error);
                continue;
            }
        };
        let Ok(directory) = PeerDirectory::from_json(&answer, &url) else {
            continue;
        };
        for listed in &directory.peers {
            let instance_id = directory
                .details
                .iter()
                .find(|peer| peer.url == *listed)
                .and_then(|peer| peer.instance_id.clone());
            let Ok(peer_url) = normalize_peer_url(listed) else {
                continue;
            };
            if known.contains(&peer_url) || instance_id.as_deref() == Some(own_id.as_str()) {
                continue;
            }
            found.entry(peer_url.clone()).or_insert_with(|| FoundPeer {
                url: peer_url,
                instance_id,
                via: target.clone(),
            });
        }
    }
    Ok(found)
}
