//! The federation operations on an [`Instance`]: status, the peer list, adding and
//! removing peers, syncing, auto-sync. Each returns a typed answer (the wire types of
//! `protocol::control`), which the control API renders as JSON and the CLI renders for
//! people or as that same JSON. The CLI runs them in-process when no server runs.

use miniserde::json::{Number, Object, Value};

use super::error::OpError;
use super::events::EventKind;
use super::instance::Instance;
use crate::config::normalize_peer_url;
use crate::model::{format_rfc3339, unix_millis_now};
use crate::protocol::{
    AutoSyncAnswer, Fields, InstanceInfo, LatticeStatus, PeerAddAnswer, PeerRemoved, PinnedKey,
    Route, SyncAnswer, WireError, parse_object,
};
use crate::sync::{PeerState, trust_book};
use crate::trust::{PublicKey, Tier};

/// A clock this far behind the newest version seen is worth a warning.
const CLOCK_BEHIND_WARNING_MS: u64 = 60_000;
/// The shortest auto-sync interval.
const MIN_SYNC_INTERVAL_MS: u64 = 100;

/// `GET /api/v2/federation/peers` → `{count, peers: [peer state, ...]}`.
#[derive(Debug, Clone)]
pub(crate) struct PeerList {
    pub peers: Vec<PeerState>,
}

impl PeerList {
    pub(crate) fn to_json(&self) -> Value {
        let mut object = Object::new();
        let peers = self.peers.iter().map(PeerState::to_json).collect();
        object.insert(
            "count".into(),
            Value::Number(Number::U64(self.peers.len() as u64)),
        );
        object.insert("peers".into(), Value::Array(peers));
        Value::Object(object)
    }

    pub(crate) fn from_json(answer: &Object, context: &str) -> Result<PeerList, WireError> {
        let peers = Fields::new(answer, context)
            .array("peers")?
            .iter()
            .map(|entry| match entry {
                Value::Object(object) => PeerState::from_json(object, "peer list entry"),
                _ => Err(WireError::not_object("peer list entry")),
            })
            .collect::<Result<_, _>>()?;
        Ok(PeerList { peers })
    }
}

/// `GET /api/v2/federation/status`: the instance info with the server's state, the peer
/// list, held records and a warning when the clock is behind.
pub(crate) fn status(instance: &Instance) -> Result<LatticeStatus, OpError> {
    let held = instance.syncer().held_counts()?;
    let newest_seen = instance.store().borrow().clock_high_water().millis();
    let now = unix_millis_now();
    let clock_warning = (newest_seen > now + CLOCK_BEHIND_WARNING_MS).then(|| {
        format!(
            "the local clock ({}) is behind versions already seen ({}); set the time (NTP) so new writes are not ordered by the counter alone",
            format_rfc3339(now),
            format_rfc3339(newest_seen)
        )
    });
    let Value::Object(peer_list) = list_peers(instance)?.to_json() else {
        unreachable!("the peer list is an object")
    };
    Ok(LatticeStatus {
        info: instance.info_at(now)?,
        enabled: instance.federation_enabled(),
        running: instance.listen_port() != 0,
        started_at: instance.started_at(),
        bytes_sent: instance.wire().bytes_sent(),
        bytes_received: instance.wire().bytes_received(),
        peer_list,
        clock_warning,
        held: held.by_reason_all(),
        held_messages: held.lines(),
    })
}

pub(crate) fn list_peers(instance: &Instance) -> Result<PeerList, OpError> {
    Ok(PeerList {
        peers: instance.syncer().peers()?,
    })
}

/// What to add with [`add_peer`].
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct AddPeer<'a> {
    pub url: &'a str,
    /// The key to pin (base64); else the one the peer's info shows.
    pub pubkey: Option<&'a str>,
    /// The tier to trust its key with (default core).
    pub tier: Option<&'a str>,
    /// Node types to sync with it; empty: all.
    pub types: &'a [String],
}

/// Adds the peer and pins its public key (fetched from its `/federation/info`, or given
/// and then checked against it) with the tier (default core). A peer that cannot be
/// reached is added only with `pubkey`; an ARK Node.js peer (no key) is added unpinned.
/// Non-empty `types` limits the sync with it to those node types.
pub(crate) async fn add_peer(
    instance: &Instance,
    request: AddPeer<'_>,
) -> Result<PeerAddAnswer, OpError> {
    let url = normalize_peer_url(request.url)
        .map_err(|reason| OpError::Invalid(format!("peer URL: {reason}")))?;
    let tier = match request.tier {
        None => Tier::Core,
        Some(text) => text
            .parse::<Tier>()
            .map_err(|error| OpError::Invalid(error.to_string()))?,
    };
    let given = match request.pubkey {
        None => None,
        Some(text) => Some(
            PublicKey::from_base64(text.trim())
                .map_err(|error| OpError::Invalid(format!("--pubkey: {error}")))?,
        ),
    };
    let reported = reported_key(instance, &url, given.is_some()).await?;
    let pin_at_first_contact = given.is_none() && reported.is_none();
    let key = match (given, reported) {
        (Some(given), Some(Some(reported))) if given != reported => {
            return Err(OpError::Invalid(format!(
                "{url} reports key {} but --pubkey is {}; not adding it",
                reported.fingerprint(),
                given.fingerprint()
            )));
        }
        (Some(given), _) => Some(given),
        (None, Some(reported)) => reported,
        (None, None) => None,
    };
    if let Some(key) = key {
        // One node is one peer, whatever name reaches it (localhost, 127.0.0.1, its
        // LAN address): a second URL for the same key would sync the same data twice.
        if let Some(existing) = instance.syncer().peer_with_id(&url, &key.instance_id())? {
            return Ok(PeerAddAnswer::SameNode {
                message: format!(
                    "{url} is the same node (key {}) as peer {existing}; not added again",
                    key.fingerprint()
                ),
                peer: existing,
                fingerprint: key.fingerprint(),
                public_key: key.to_base64(),
            });
        }
        let mut store = instance.store().borrow_mut();
        trust_book::trust(&mut store, key, tier, None, "peer")?;
    }
    let added = instance.syncer().add_peer(
        &url,
        key.map(|key| key.instance_id()).as_ref(),
        pin_at_first_contact,
    )?;
    if added {
        instance
            .events()
            .emit(EventKind::PeerAdded, [("peer", Value::String(url.clone()))]);
    }
    if !request.types.is_empty() {
        instance.syncer().set_peer_types(&url, request.types)?;
    }
    // Lets `--watch` start a long-poll to the new peer at once.
    instance.settings_changed().notify(usize::MAX);
    Ok(PeerAddAnswer::Added {
        peer: url,
        added,
        key: key.map(|key| PinnedKey {
            fingerprint: key.fingerprint(),
            public_key: key.to_base64(),
            tier: tier.name().to_owned(),
        }),
        key_pinned_at_first_contact: pin_at_first_contact,
    })
}

/// The key the peer's `/federation/info` shows: `Some(None)` for a peer without one (ARK
/// Node.js), `None` when it could not be asked and a key was given (or will be pinned at
/// first contact).
async fn reported_key(
    instance: &Instance,
    url: &str,
    key_given: bool,
) -> Result<Option<Option<PublicKey>>, OpError> {
    let info_url = Route::Info.url(url);
    let verbose = instance.config().verbose;
    match instance
        .syncer()
        .client
        .send(instance.syncer().get(&info_url))
        .await
    {
        Ok(response) if response.status == 200 => {
            let info =
                InstanceInfo::from_json(&parse_object(&response.body, &info_url)?, &info_url)?;
            if info.instance_id == instance.instance_id_hex() {
                return Err(OpError::Invalid(format!("{url} is this instance itself")));
            }
            match info.lattice.public_key.as_deref() {
                Some(text) => Ok(Some(Some(PublicKey::from_base64(text).map_err(
                    |error| OpError::Invalid(format!("{url} reports a bad public key: {error}")),
                )?))),
                None => Ok(Some(None)),
            }
        }
        Ok(response) if !key_given => Err(OpError::Invalid(format!(
            "{info_url} answered {}; is it an ark-lattice or ARK node?",
            response.status
        ))),
        Ok(response) => {
            if verbose {
                eprintln!(
                    "ark:federation {info_url} answered {}; pinning the given key",
                    response.status
                );
            }
            Ok(None)
        }
        Err(error) => {
            // Unreachable now (a Pi configured before it is on the network): with a key
            // given, that key is pinned; without, the one it shows at first contact.
            if verbose {
                eprintln!(
                    "ark:federation {url} unreachable ({error}); {}",
                    if key_given {
                        "pinning the given key"
                    } else {
                        "its key will be pinned at first contact"
                    }
                );
            }
            Ok(None)
        }
    }
}

pub(crate) fn remove_peer(instance: &Instance, url: &str) -> Result<PeerRemoved, OpError> {
    let url = normalize_peer_url(url).unwrap_or_else(|_| url.to_owned());
    if !instance.syncer().remove_peer(&url)? {
        return Err(OpError::NotFound(format!(
            "peer {url} is not in the peer list"
        )));
    }
    instance.events().emit(
        EventKind::PeerRemoved,
        [("peer", Value::String(url.clone()))],
    );
    Ok(PeerRemoved { peer: url })
}

/// The URLs a sync of `peer` (or of every target, without one) goes to. A sync never
/// adds a peer: a typo would otherwise stay as a failing peer.
pub(crate) fn sync_targets_for(
    instance: &Instance,
    peer: Option<&str>,
) -> Result<Vec<String>, OpError> {
    let Some(peer) = peer else {
        return Ok(instance.sync_targets()?);
    };
    let url = normalize_peer_url(peer)
        .map_err(|reason| OpError::Invalid(format!("peer URL: {reason}")))?;
    let is_hub = instance.config().federation.hub_url.as_deref() == Some(url.as_str());
    if !is_hub && instance.syncer().peer(&url)?.is_none() {
        return Err(OpError::NotFound(format!(
            "{url} is not a peer; add it first with `ark-lattice federation add-peer {url}`"
        )));
    }
    Ok(vec![url])
}

/// Syncs one peer, or every target of the mode concurrently.
pub(crate) async fn sync(instance: &Instance, peer: Option<&str>) -> Result<SyncAnswer, OpError> {
    let targets = sync_targets_for(instance, peer)?;
    let results = super::join_all(targets.iter().map(|url| instance.sync_peer(url))).await;
    Ok(SyncAnswer { results })
}

/// Turns auto-sync on or off (and sets its interval), saved for the next start.
pub(crate) fn set_auto_sync(
    instance: &Instance,
    on: bool,
    interval_ms: Option<u64>,
) -> Result<AutoSyncAnswer, OpError> {
    if let Some(interval) = interval_ms.filter(|interval| *interval < MIN_SYNC_INTERVAL_MS) {
        return Err(OpError::Invalid(format!(
            "interval of {interval} ms is below the {MIN_SYNC_INTERVAL_MS} ms minimum"
        )));
    }
    instance.set_auto_sync(on, interval_ms)?;
    Ok(AutoSyncAnswer {
        auto_sync: on,
        sync_interval_ms: instance.sync_interval_ms(),
    })
}
