//! [`Instance`]: one opened instance — config, store, key, syncer and the federation
//! switches — on which the service operations run. The server wraps it in its `App`
//! (adding what only a listening node has); the CLI opens one when no server runs.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use miniserde::json::{Number, Value};

use super::events::{EventBus, EventKind};
use super::open::{identity, open_store_for_server};
use crate::config::{Config, FederationMode};
use crate::discovery::LanPeers;
use crate::error::Error;
use crate::http::{HttpClient, WireStats};
use crate::model::{hex, unix_millis_now};
use crate::protocol::{
    InstanceInfo, LatticeInfo, PROTOCOL_COMPACT_PAGE, PROTOCOL_LEGACY, PROTOCOL_RECONCILE,
    PROTOCOL_V2,
};
use crate::store::{Store, StoreError};
use crate::sync::{PeerSyncResult, Syncer, trust_book};
use crate::trust::{KeyPair, PublicKey, Tier};

pub(crate) struct Instance {
    config: Config,
    store: Rc<RefCell<Store>>,
    key: KeyPair,
    syncer: Syncer,
    wire: Rc<WireStats>,
    started_at: u64,
    /// The port actually listened on (0 when there is no server).
    listen_port: Cell<u16>,
    /// `POST /api/federation/stop` turns the federation endpoints off without stopping
    /// the process; `start` turns them on again.
    federation_enabled: Cell<bool>,
    auto_sync: Cell<bool>,
    sync_interval_ms: Cell<u64>,
    /// Wakes the auto-sync loop (and `--watch`) when its settings or peers change.
    settings_changed: event_listener::Event,
    /// Federation events: recent ones, event streams, the `--on-event` hook.
    events: EventBus,
    /// Peers heard by LAN beacon (none without a server).
    lan_peers: RefCell<LanPeers>,
    /// The last instance info made, for as long as what it shows is unchanged.
    info: RefCell<Option<(InfoInputs, InstanceInfo)>>,
}

/// Everything the instance info shows that can change while the instance is open,
/// besides the time: the store (counts, peers, sync totals), peer states and totals
/// still in memory, and the settings. All of it is held in memory, so checking it
/// reads nothing from the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct InfoInputs {
    store_writes: u64,
    state_changes: u64,
    auto_sync: bool,
    sync_interval_ms: u64,
    listen_port: u16,
}

impl std::fmt::Debug for Instance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instance")
            .field("instance_id", &self.syncer.instance_id)
            .field("listen_port", &self.listen_port.get())
            .finish()
    }
}

impl Instance {
    pub(crate) fn config(&self) -> &Config {
        &self.config
    }

    /// The store, shared with the syncer (borrowed for one step at a time: the server's
    /// one thread never holds it across an await).
    pub(crate) fn store(&self) -> &Rc<RefCell<Store>> {
        &self.store
    }

    /// This node's key pair.
    pub(crate) fn key(&self) -> &KeyPair {
        &self.key
    }

    pub(crate) fn syncer(&self) -> &Syncer {
        &self.syncer
    }

    /// Bytes sent and received, for `/metrics` and the status answers.
    pub(crate) fn wire(&self) -> &Rc<WireStats> {
        &self.wire
    }

    /// When the instance was opened, in Unix milliseconds.
    pub(crate) fn started_at(&self) -> u64 {
        self.started_at
    }

    /// Wakes the auto-sync loop (and `--watch`) when its settings or peers change.
    pub(crate) fn settings_changed(&self) -> &event_listener::Event {
        &self.settings_changed
    }

    pub(crate) fn events(&self) -> &EventBus {
        &self.events
    }

    /// Peers heard by LAN beacon.
    pub(crate) fn lan_peers(&self) -> &RefCell<LanPeers> {
        &self.lan_peers
    }

    /// Opens the store and the key in the state dir (waiting, bounded, while a CLI
    /// command holds the store), and pins `ARK_FED_PUBKEY` as a core peer.
    pub(crate) fn open(config: &Config) -> Result<Instance, Error> {
        let (mut store, _) = open_store_for_server(config)?;
        let key = identity(config)?;
        if let Some(trusted) = &config.trusted_key {
            let public_key = PublicKey::from_base64(trusted)
                .map_err(|error| Error::Config(format!("ARK_FED_PUBKEY: {error}")))?;
            if trust_book::tier_of(&store, &public_key.instance_id())? != Some(Tier::Core) {
                trust_book::trust(
                    &mut store,
                    public_key,
                    Tier::Core,
                    Some("ARK_FED_PUBKEY".into()),
                    "env",
                )?;
            }
        }
        let store = Rc::new(RefCell::new(store));
        let wire = WireStats::with_rate_limits(
            config.federation.max_send_rate,
            config.federation.max_recv_rate,
        );
        let client = HttpClient::new(config.federation.client, wire.clone());
        #[cfg(feature = "tls")]
        let client = client.with_trust(config.tls.peer_trust.clone());
        let syncer = Syncer::new(
            store.clone(),
            client,
            key.clone(),
            config.federation.trust,
            config.federation.max_clock_skew.as_millis() as u64,
            config.verbose,
        )
        .with_held_limits(crate::sync::HeldLimits {
            records: config.federation.max_held_records,
            bytes: config.federation.max_held_bytes,
        });
        // `FEDERATION_HUB_URL` names the hub as `add-peer` names a peer, so the hub's key
        // is pinned the same way: the key it shows at the first sync (issue 12: the
        // guide's Pi sets only the hub URL and must take the hub's records).
        if let Some(hub) = &config.federation.hub_url {
            syncer.pin_at_first_contact(hub)?;
        }
        let events = EventBus::new(key.public_key().instance_id().to_hex(), config.verbose);
        let (auto_sync, sync_interval_ms) = syncer.auto_sync_setting()?.unwrap_or((
            config.federation.auto_sync,
            config.federation.sync_interval.as_millis() as u64,
        ));
        Ok(Instance {
            config: config.clone(),
            store,
            key,
            syncer,
            wire,
            started_at: unix_millis_now(),
            listen_port: Cell::new(0),
            federation_enabled: Cell::new(true),
            auto_sync: Cell::new(auto_sync),
            sync_interval_ms: Cell::new(sync_interval_ms),
            settings_changed: event_listener::Event::new(),
            events,
            lan_peers: RefCell::new(LanPeers::new(crate::config::MAX_LAN_PEERS)),
            info: RefCell::new(None),
        })
    }

    pub(crate) fn instance_id_hex(&self) -> String {
        self.syncer.instance_id.to_hex()
    }

    /// Whether this node serves HTTPS (`serve --tls-cert`), so the URLs it advertises
    /// (beacons, hub registration) and links are `https://`.
    pub(crate) fn serves_https(&self) -> bool {
        self.config.tls.server_files.is_some()
    }

    pub(crate) fn instance_name(&self) -> String {
        self.config.instance_name(&self.syncer.instance_id.short())
    }

    pub(crate) fn epoch_hex(&self) -> String {
        hex(&self.store.borrow().epoch())
    }

    /// The port the server listens on, 0 without a server.
    pub(crate) fn listen_port(&self) -> u16 {
        self.listen_port.get()
    }

    pub(crate) fn set_listen_port(&self, port: u16) {
        self.listen_port.set(port);
    }

    /// Whether the federation endpoints are on (`POST /api/federation/start`/`stop`).
    pub(crate) fn federation_enabled(&self) -> bool {
        self.federation_enabled.get()
    }

    /// Turns the federation endpoints on or off, and wakes the auto-sync loop, which
    /// waits while federation is stopped.
    pub(crate) fn set_federation_enabled(&self, enabled: bool) {
        self.federation_enabled.set(enabled);
        self.settings_changed.notify(usize::MAX);
    }

    pub(crate) fn auto_sync(&self) -> bool {
        self.auto_sync.get()
    }

    pub(crate) fn sync_interval_ms(&self) -> u64 {
        self.sync_interval_ms.get()
    }

    /// Sets auto-sync and, when given, its interval, saved for the next start.
    pub(crate) fn set_auto_sync(
        &self,
        on: bool,
        interval_ms: Option<u64>,
    ) -> Result<(), StoreError> {
        if let Some(interval_ms) = interval_ms {
            self.sync_interval_ms.set(interval_ms);
        }
        self.auto_sync.set(on);
        self.syncer
            .save_auto_sync_setting(on, self.sync_interval_ms.get())?;
        self.settings_changed.notify(usize::MAX);
        Ok(())
    }

    /// What the instance info is made from now; see [`InfoInputs`].
    pub(crate) fn info_inputs(&self) -> InfoInputs {
        InfoInputs {
            store_writes: self.store.borrow().writes(),
            state_changes: self.syncer.state_changes(),
            auto_sync: self.auto_sync.get(),
            sync_interval_ms: self.sync_interval_ms.get(),
            listen_port: self.listen_port.get(),
        }
    }

    /// ARK's instance info (`/federation/info`, `/api/federation/status`) stamped with
    /// `timestamp`. Making it reads the store (node count, peers, sync totals), so it is
    /// kept until one of its [`InfoInputs`] changes, and a status poll reads nothing.
    pub(crate) fn info_at(&self, timestamp: u64) -> Result<InstanceInfo, StoreError> {
        let inputs = self.info_inputs();
        if let Some((made_from, info)) = self.info.borrow().as_ref() {
            if *made_from == inputs {
                return Ok(InstanceInfo {
                    timestamp,
                    ..info.clone()
                });
            }
        }
        let info = self.make_info(timestamp)?;
        *self.info.borrow_mut() = Some((inputs, info.clone()));
        Ok(info)
    }

    fn make_info(&self, timestamp: u64) -> Result<InstanceInfo, StoreError> {
        let peers = self.syncer.peers()?;
        let federation = &self.config.federation;
        let node_count = self.store.borrow().stats()?.nodes;
        Ok(InstanceInfo {
            instance_id: self.instance_id_hex(),
            instance_name: self.instance_name(),
            instance_type: self.config.instance_type.to_string(),
            federation_mode: federation.mode.to_string(),
            listen_port: u64::from(self.listen_port.get()),
            hub_url: federation.hub_url.clone(),
            auto_sync: self.auto_sync.get(),
            sync_interval: self.sync_interval_ms.get(),
            peers: peers.iter().map(|peer| peer.url.clone()).collect(),
            active_peers: peers
                .iter()
                .filter(|peer| peer.is_active())
                .map(|peer| peer.url.clone())
                .collect(),
            stats: self.syncer.global_stats()?.to_ark(),
            timestamp,
            lattice: LatticeInfo {
                protocols: [
                    PROTOCOL_LEGACY,
                    PROTOCOL_V2,
                    PROTOCOL_RECONCILE,
                    PROTOCOL_COMPACT_PAGE,
                ]
                .map(str::to_owned)
                .to_vec(),
                epoch: Some(self.epoch_hex()),
                public_key: Some(self.key.public_key().to_base64()),
                fingerprint: Some(self.key.public_key().fingerprint()),
                node_count: Some(node_count),
                version: Some(env!("CARGO_PKG_VERSION").to_owned()),
            },
        })
    }

    /// The peers this instance syncs with in its mode: the hub only (a spoke: hub mode
    /// with a hub URL), or every peer and the hub when there is one (p2p, hybrid, and
    /// the hub itself: hub mode without a hub URL).
    pub(crate) fn sync_targets(&self) -> Result<Vec<String>, Error> {
        let federation = &self.config.federation;
        let spoke = federation.mode == FederationMode::Hub && federation.hub_url.is_some();
        let mut targets: Vec<String> = if spoke {
            Vec::new()
        } else {
            // Peers that turned out to be one node under two names (added before
            // add-peer refused that) are synced once.
            let mut seen = std::collections::BTreeSet::new();
            self.syncer
                .peers()?
                .into_iter()
                .filter(|peer| {
                    peer.instance_id
                        .as_ref()
                        .is_none_or(|id| seen.insert(id.clone()))
                })
                .map(|peer| peer.url)
                .collect()
        };
        if let Some(hub) = &federation.hub_url {
            if !targets.contains(hub) {
                targets.insert(0, hub.clone());
            }
        }
        Ok(targets)
    }

    /// Syncs with one peer through the syncer, with `sync-started`, `sync-complete` and
    /// (when edits collided) `conflict-resolved` events around it. Every sync the
    /// server runs goes through here.
    pub(crate) async fn sync_peer(&self, url: &str) -> PeerSyncResult {
        let peer = || Value::String(url.to_owned());
        self.events.emit(EventKind::SyncStarted, [("peer", peer())]);
        let started = std::time::Instant::now();
        let result = self.syncer.sync_peer(url).await;
        let count = |n: u64| Value::Number(Number::U64(n));
        self.events.emit(
            EventKind::SyncComplete,
            [
                ("peer", peer()),
                ("success", Value::Bool(result.success)),
                ("nodesSent", count(result.nodes_sent)),
                ("nodesReceived", count(result.nodes_received)),
                ("conflicts", count(result.conflicts)),
                ("durationMs", count(started.elapsed().as_millis() as u64)),
                (
                    "error",
                    result
                        .error
                        .as_ref()
                        .map_or(Value::Null, |error| Value::String(error.clone())),
                ),
            ],
        );
        if result.conflicts > 0 {
            self.events.emit(
                EventKind::ConflictResolved,
                [("peer", peer()), ("conflicts", count(result.conflicts))],
            );
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use argh::FromArgs;

    fn instance(name: &str) -> (Instance, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("ark-instance-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let dir_text = dir.to_str().unwrap().to_owned();
        let argv = ["--data-dir", dir_text.as_str(), "serve", "--no-discovery"];
        let args = crate::cli::Args::from_args(&["ark-lattice"], &argv).unwrap();
        let config = Config::from_args(&args, &|_| None).unwrap();
        (Instance::open(&config).unwrap(), dir)
    }

    /// The instance info is kept while nothing it shows changed (a status poll reads
    /// nothing), and made again as soon as a peer or a setting changes.
    #[test]
    fn the_instance_info_follows_what_it_shows() {
        let (instance, dir) = instance("info");
        let first = instance.info_at(1).unwrap();
        assert_eq!(first.timestamp, 1);
        assert!(first.peers.is_empty());
        let writes = instance.store.borrow().writes();
        let second = instance.info_at(2).unwrap();
        assert_eq!(second.timestamp, 2);
        assert_eq!(second.instance_id, first.instance_id);
        assert_eq!(
            instance.store.borrow().writes(),
            writes,
            "reading the info wrote nothing"
        );
        instance
            .syncer
            .add_peer("http://127.0.0.1:9", None, false)
            .unwrap();
        assert_eq!(instance.info_at(3).unwrap().peers, ["http://127.0.0.1:9"]);
        assert!(!instance.info_at(4).unwrap().auto_sync);
        instance.set_auto_sync(true, Some(5_000)).unwrap();
        let info = instance.info_at(5).unwrap();
        assert!(info.auto_sync);
        assert_eq!(info.sync_interval, 5_000);
        drop(instance);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
