//! [`App`]: one instance's live state — config, store, key, syncer, switches — shared by
//! the HTTP handlers, the auto-sync loop and, without a server, the CLI.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use miniserde::json::{Number, Value};

use super::events::{EventBus, EventKind};
use super::metrics::HttpCounters;
use crate::commands::open_store_for_server;
use crate::config::{Config, FederationMode};
use crate::discovery::LanPeers;
use crate::error::Error;
use crate::http::{HttpClient, WireStats};
use crate::model::{hex, unix_millis_now};
use crate::store::Store;
use crate::sync::{PeerSyncResult, Syncer, trust_book};
use crate::trust::{KeyPair, PublicKey, ReplayGuard, Tier};

/// The state file a running server writes into the state dir: how the CLI finds it.
pub const SERVER_FILE: &str = "server.json";

pub struct App {
    pub config: Config,
    pub store: Rc<RefCell<Store>>,
    pub key: KeyPair,
    pub syncer: Syncer,
    pub wire: Rc<WireStats>,
    pub started_at: u64,
    /// The port actually listened on (0 when there is no server).
    pub listen_port: Cell<u16>,
    /// `POST /api/federation/stop` turns the federation endpoints off without stopping
    /// the process; `start` turns them on again.
    pub federation_enabled: Cell<bool>,
    pub auto_sync: Cell<bool>,
    pub sync_interval_ms: Cell<u64>,
    /// Wakes the auto-sync loop when its settings change.
    pub settings_changed: event_listener::Event,
    /// Requests a graceful shutdown.
    pub shutdown: event_listener::Event,
    pub shutdown_requested: Cell<bool>,
    /// Nonces of signed requests seen within the replay window.
    pub replay_guard: RefCell<ReplayGuard>,
    /// Spokes registered at this hub (`POST /manifest`), by base64 key; kept in memory
    /// since they expire after the peer TTL anyway.
    pub registry: RefCell<std::collections::BTreeMap<String, super::python_api::Registration>>,
    /// Federation events: recent ones, event streams, the `--on-event` hook.
    pub events: EventBus,
    /// HTTP requests answered, by route and status, for `/metrics`.
    pub http_requests: HttpCounters,
    /// Peers heard by LAN beacon.
    pub lan_peers: RefCell<LanPeers>,
    /// Addresses already warned about sending the admin token over plain HTTP.
    pub token_in_clear_from: RefCell<std::collections::BTreeSet<std::net::IpAddr>>,
    /// Unknown keys that signed a request, written to the store in batches.
    pub pending_callers: RefCell<crate::sync::trust_book::PendingCallers>,
    /// The last `/federation/info` answer, for as long as what it shows is unchanged.
    pub info_cache: RefCell<Option<super::peer_api::CachedInfo>>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("instance_id", &self.syncer.instance_id)
            .field("listen_port", &self.listen_port.get())
            .finish()
    }
}

impl App {
    /// Opens the store and the key in the state dir.
    pub fn open(config: &Config) -> Result<Rc<App>, Error> {
        let (mut store, _) = open_store_for_server(config)?;
        let key = crate::commands::identity(config)?;
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
        Ok(Rc::new(App {
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
            shutdown: event_listener::Event::new(),
            shutdown_requested: Cell::new(false),
            replay_guard: RefCell::new(ReplayGuard::default()),
            registry: RefCell::new(std::collections::BTreeMap::new()),
            events,
            http_requests: HttpCounters::default(),
            lan_peers: RefCell::new(LanPeers::new(crate::config::MAX_LAN_PEERS)),
            pending_callers: RefCell::new(crate::sync::trust_book::PendingCallers::new(
                crate::config::MAX_PENDING_TRUST,
            )),
            token_in_clear_from: RefCell::new(std::collections::BTreeSet::new()),
            info_cache: RefCell::new(None),
        }))
    }

    pub fn instance_id_hex(&self) -> String {
        self.syncer.instance_id.to_hex()
    }

    /// Whether this node serves HTTPS (`serve --tls-cert`), so the URLs it advertises
    /// (beacons, hub registration) and links are `https://`.
    pub fn serves_https(&self) -> bool {
        self.config.tls.server_files.is_some()
    }

    pub fn instance_name(&self) -> String {
        self.config.instance_name(&self.syncer.instance_id.short())
    }

    pub fn epoch_hex(&self) -> String {
        hex(&self.store.borrow().epoch())
    }

    /// The peers this instance syncs with in its mode: the hub only (a spoke: hub mode
    /// with a hub URL), or every peer and the hub when there is one (p2p, hybrid, and
    /// the hub itself: hub mode without a hub URL).
    pub fn sync_targets(&self) -> Result<Vec<String>, Error> {
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
    pub async fn sync_peer(&self, url: &str) -> PeerSyncResult {
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

    /// Writes the unknown keys noted since the last call as pending trust entries.
    pub fn flush_pending_callers(&self) {
        let result = crate::sync::trust_book::flush_pending(
            &mut self.store.borrow_mut(),
            &mut self.pending_callers.borrow_mut(),
            crate::config::MAX_PENDING_TRUST,
        );
        match result {
            Ok(dropped) if dropped > 0 && self.config.verbose => eprintln!(
                "ark:trust dropped {dropped} pending key(s) seen least recently (at most {} are kept)",
                crate::config::MAX_PENDING_TRUST
            ),
            Ok(_) => {}
            Err(error) => eprintln!("warning: cannot save pending trust entries: {error}"),
        }
    }

    pub fn request_shutdown(&self) {
        self.shutdown_requested.set(true);
        self.shutdown.notify(usize::MAX);
    }
}
