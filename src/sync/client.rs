//! [`Syncer`]: runs a sync with one peer over HTTP and keeps the peer table.
//!
//! # Implementation
//!
//! With an ark-lattice peer (it lists `ark-lattice-v2` in `/federation/info`):
//!
//! 1. pull: `GET /federation/v2/changes?after=<pull_seq>` page by page; each page is
//!    applied with last-writer-wins in one transaction that also stores the new
//!    `pull_seq`, so an interrupted sync resumes at the last committed page;
//! 2. push: our changes after `push_seq` page by page; each page is first offered as
//!    ids and versions (`POST /federation/v2/offer`), only the records the peer asks for
//!    are sent (`POST /federation/v2/push`), and `push_seq` advances once the peer has
//!    answered.
//!
//! A changed store epoch in the peer's info (wiped or restored store) resets both
//! checkpoints. With an ARK Node.js peer, the legacy protocol is used (`legacy.rs`).
//!
//! The store lives in a `RefCell` shared with the server; no borrow is held across an
//! `.await`.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::rc::Rc;

use miniserde::json::{self, Number, Value};

use super::core::FirstContact;
use super::core::{
    AfterInfo, ChangesRead, LatticePeer, StoreCounts, TrustRules, check_checkpoint, on_info,
    restart, without_checkpoint,
};
use super::delta::PulledVersions;
pub(super) use super::error::{During, Restart, SyncError, UnsignedService};
use super::held::{Held, Refusal};
use super::peer::{GLOBAL_STATS_KEY, PeerState, SyncStats};
use super::reconcile::ReconcileCache;
use super::trust_book;
use super::verify::check_signature;
use crate::config::TrustMode;
use crate::http::PeerUrl;
use crate::http::{ClientRequest, HttpClient};
use crate::model::{InstanceId, unix_millis_now};
pub use crate::protocol::PeerSyncResult;
use crate::protocol::{Route, parse_object, record_from_wire};
use crate::store::{ApplyOutcome, ChangePage, Commit, RemoteRecord, StateTable, Store, StoreError};
use crate::trust::{KeyPair, PublicKey, Tier, sign_request};

/// Syncs this instance's store with peers.
#[derive(Debug)]
pub struct Syncer {
    pub store: Rc<RefCell<Store>>,
    pub client: HttpClient,
    pub instance_id: InstanceId,
    /// Our key: signs our requests; its public half goes with the records we wrote.
    pub key: KeyPair,
    pub public_key: String,
    pub trust_mode: TrustMode,
    pub max_clock_skew_millis: u64,
    pub verbose: bool,
    in_progress: RefCell<BTreeSet<String>>,
    /// Notified when any sync ends, for syncs waiting their turn with the same peer.
    sync_done: event_listener::Event,
    /// Peer-table entries not written yet (see `save_states`).
    pub(super) unsaved: RefCell<std::collections::BTreeMap<String, Vec<u8>>>,
    /// Our last reconciliation set, for serving a peer's rounds and for our own.
    pub reconcile_cache: ReconcileCache,
    /// Received records refused for good since start (forged, malformed, unsigned, a
    /// format 1 tombstone), for `/metrics`.
    pub refused_records: std::cell::Cell<u64>,
    /// How much the held table may keep (`sync::held_room`).
    pub held_limits: super::HeldLimits,
    /// The held table without its records, read once (`sync::held_room`).
    pub(super) held_index: RefCell<Option<super::held_room::HeldIndex>>,
    last_flush: std::cell::Cell<u64>,
    /// See [`Syncer::state_changes`].
    state_changes: std::cell::Cell<u64>,
}

/// The peer-table key of the persisted auto-sync setting (peer keys are URLs, never `~…`).
const AUTO_SYNC_KEY: &str = "~auto-sync";

/// Hex digits of the recipient's instance id a signed request names.
pub const AUDIENCE_DIGITS: usize = 16;

/// How long a sync waits for another sync with the same peer to finish.
const SYNC_WAIT_LIMIT: std::time::Duration = std::time::Duration::from_secs(300);

/// How long the counters of idle syncs may wait in memory before they are written.
pub const IDLE_FLUSH_MILLIS: u64 = 15 * 60 * 1000;

impl Syncer {
    pub fn new(
        store: Rc<RefCell<Store>>,
        client: HttpClient,
        key: KeyPair,
        trust_mode: TrustMode,
        max_clock_skew_millis: u64,
        verbose: bool,
    ) -> Syncer {
        let instance_id = store.borrow().instance_id();
        Syncer {
            store,
            client,
            instance_id,
            public_key: key.public_key().to_base64(),
            key,
            trust_mode,
            max_clock_skew_millis,
            verbose,
            in_progress: RefCell::new(BTreeSet::new()),
            sync_done: event_listener::Event::new(),
            unsaved: RefCell::new(std::collections::BTreeMap::new()),
            reconcile_cache: ReconcileCache::default(),
            refused_records: std::cell::Cell::new(0),
            held_limits: super::HeldLimits::default(),
            held_index: RefCell::new(None),
            last_flush: std::cell::Cell::new(unix_millis_now()),
            state_changes: std::cell::Cell::new(0),
        }
    }

    /// The held table's bounds (`sync::held_room`), in place of the defaults.
    pub(crate) fn with_held_limits(self, held_limits: super::HeldLimits) -> Syncer {
        Syncer {
            held_limits,
            ..self
        }
    }

    pub(super) fn log(&self, message: impl AsRef<str>) {
        if self.verbose {
            eprintln!("ark:federation {}", message.as_ref());
        }
    }

    /// Every peer, in URL order.
    /// Every peer, as last saved or as still waiting to be saved (as [`Syncer::peer`]
    /// reads one): the counters of syncs that changed nothing wait in memory.
    pub fn peers(&self) -> Result<Vec<PeerState>, StoreError> {
        let mut states: std::collections::BTreeMap<String, Vec<u8>> = self
            .store
            .borrow()
            .states(StateTable::Peers)?
            .into_iter()
            .collect();
        for (key, bytes) in self.unsaved.borrow().iter() {
            states.insert(key.clone(), bytes.clone());
        }
        Ok(states
            .into_iter()
            .filter(|(key, _)| !key.starts_with('~'))
            .filter_map(|(key, bytes)| match PeerState::decode(&bytes) {
                Ok(state) => Some(state),
                Err(error) => {
                    eprintln!("warning: peer {key}: {error}; it is skipped");
                    None
                }
            })
            .collect())
    }

    pub fn peer(&self, url: &str) -> Result<Option<PeerState>, StoreError> {
        let bytes = self.load_state(url)?;
        Ok(bytes.and_then(|bytes| PeerState::decode(&bytes).ok()))
    }

    /// The page of our changes a push machine asked for.
    pub(super) fn read_changes(&self, read: &ChangesRead) -> Result<ChangePage, StoreError> {
        self.store.borrow().changes_since_filtered(
            read.after,
            read.limit,
            read.max_bytes,
            &read.filter,
        )
    }

    /// A peer-table entry, as last saved or as still waiting to be saved.
    pub(super) fn load_state(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(bytes) = self.unsaved.borrow().get(key) {
            return Ok(Some(bytes.clone()));
        }
        self.store.borrow().state(StateTable::Peers, key)
    }

    /// Saves peer-table entries. `durable` entries (checkpoints moved, data moved, an
    /// error) are written now together with anything waiting; the rest — the counters
    /// of a sync that changed nothing — wait in memory and are written at most every
    /// [`IDLE_FLUSH_MILLIS`] and at shutdown, so an idle node does not write on every
    /// sync (SD cards wear).
    pub(super) fn save_states(
        &self,
        entries: Vec<(String, Vec<u8>)>,
        durable: bool,
    ) -> Result<(), StoreError> {
        let now = unix_millis_now();
        self.state_changes.set(self.state_changes.get() + 1);
        {
            let mut unsaved = self.unsaved.borrow_mut();
            for (key, bytes) in entries {
                unsaved.insert(key, bytes);
            }
        }
        if durable || self.last_flush.get() + IDLE_FLUSH_MILLIS <= now {
            self.flush()?;
        }
        Ok(())
    }

    /// How many times peer states or sync totals were saved, in memory or in the store:
    /// with [`Store::writes`], what tells a cached answer that reads them is stale.
    pub(crate) fn state_changes(&self) -> u64 {
        self.state_changes.get()
    }

    /// Writes every entry waiting in memory, in one transaction.
    pub fn flush(&self) -> Result<(), StoreError> {
        let pending: Vec<(String, Vec<u8>)> = std::mem::take(&mut *self.unsaved.borrow_mut())
            .into_iter()
            .collect();
        self.last_flush.set(unix_millis_now());
        if pending.is_empty() {
            return Ok(());
        }
        let entries: Vec<(&str, Option<&[u8]>)> = pending
            .iter()
            .map(|(key, bytes)| (key.as_str(), Some(bytes.as_slice())))
            .collect();
        self.store
            .borrow_mut()
            .set_states(StateTable::Peers, &entries)
    }

    /// Auto-sync on or off and its interval (ms) as last set by `auto-sync` (the CLI or
    /// the control API), if ever: they outlive a restart, as ARK users expect of a
    /// setting they changed.
    pub(crate) fn auto_sync_setting(&self) -> Result<Option<(bool, u64)>, StoreError> {
        let Some(bytes) = self.load_state(AUTO_SYNC_KEY)? else {
            return Ok(None);
        };
        let Ok(object) = parse_object(&bytes, "stored auto-sync setting") else {
            return Ok(None);
        };
        let fields = crate::protocol::Fields::new(&object, "stored auto-sync setting");
        Ok(
            match (fields.opt_bool("autoSync"), fields.opt_u64("syncInterval")) {
                (Ok(Some(on)), Ok(Some(interval))) => Some((on, interval)),
                _ => None,
            },
        )
    }

    pub(crate) fn save_auto_sync_setting(&self, on: bool, interval: u64) -> Result<(), StoreError> {
        let value = object_value([
            ("autoSync", Value::Bool(on)),
            ("syncInterval", Value::Number(Number::U64(interval))),
        ]);
        self.save_states(
            vec![(
                AUTO_SYNC_KEY.to_owned(),
                json::to_string(&value).into_bytes(),
            )],
            true,
        )
    }

    /// Adds a peer; `false` if it was already there. `instance_id` is the peer's, when
    /// its key is known; with `pin_at_first_contact`, the key it shows at the first
    /// sync is pinned.
    pub fn add_peer(
        &self,
        url: &str,
        instance_id: Option<&InstanceId>,
        pin_at_first_contact: bool,
    ) -> Result<bool, StoreError> {
        if self.peer(url)?.is_some() {
            return Ok(false);
        }
        let mut state = PeerState::new(url, unix_millis_now());
        state.instance_id = instance_id.map(InstanceId::to_hex);
        state.pin_at_first_contact = pin_at_first_contact;
        self.save_states(vec![(url.to_owned(), state.encode())], true)?;
        Ok(true)
    }

    /// Makes `url` a peer whose key is pinned at the first sync that reaches it, unless
    /// it has been reached already (its key is known then, pinned or not).
    pub(crate) fn pin_at_first_contact(&self, url: &str) -> Result<(), StoreError> {
        match self.peer(url)? {
            None => self.add_peer(url, None, true).map(drop),
            Some(mut state) if state.instance_id.is_none() && !state.pin_at_first_contact => {
                state.pin_at_first_contact = true;
                self.save_states(vec![(url.to_owned(), state.encode())], true)
            }
            Some(_) => Ok(()),
        }
    }

    /// Another peer (by URL) that is the instance `instance_id`, if any: the same node
    /// under another name (`localhost` and `127.0.0.1`), to be kept as one peer.
    pub(crate) fn peer_with_id(
        &self,
        url: &str,
        instance_id: &InstanceId,
    ) -> Result<Option<String>, StoreError> {
        let hex = instance_id.to_hex();
        Ok(self
            .peers()?
            .into_iter()
            .find(|peer| peer.url != url && peer.instance_id.as_deref() == Some(hex.as_str()))
            .map(|peer| peer.url))
    }

    /// Limits the sync with `url` to `types` (empty: all). A changed list starts the
    /// checkpoints over, so the next sync reconciles what the new list covers.
    pub(crate) fn set_peer_types(&self, url: &str, types: &[String]) -> Result<(), StoreError> {
        let mut state = self
            .peer(url)?
            .unwrap_or_else(|| PeerState::new(url, unix_millis_now()));
        if state.types != types {
            state.types = types.to_vec();
            state.epoch = None;
            state.copy = None;
            state.pull_seq = 0;
            state.push_seq = 0;
            self.save_states(vec![(url.to_owned(), state.encode())], true)?;
        }
        Ok(())
    }

    /// Removes a peer; `false` if it was not there.
    pub(crate) fn remove_peer(&self, url: &str) -> Result<bool, StoreError> {
        if self.peer(url)?.is_none() {
            return Ok(false);
        }
        // With it go what we kept about an ARK peer's rows (`legacy.rs`).
        let keys = super::legacy::peer_keys(url);
        let mut entries: Vec<(&str, Option<&[u8]>)> = vec![(url, None)];
        entries.extend(keys.iter().map(|key| (key.as_str(), None)));
        {
            let mut unsaved = self.unsaved.borrow_mut();
            for (key, _) in &entries {
                unsaved.remove(*key);
            }
        }
        self.store
            .borrow_mut()
            .set_states(StateTable::Peers, &entries)?;
        Ok(true)
    }

    /// Totals over every sync this instance ran.
    pub(crate) fn global_stats(&self) -> Result<SyncStats, StoreError> {
        let bytes = self.load_state(GLOBAL_STATS_KEY)?;
        Ok(bytes
            .and_then(|bytes| SyncStats::decode(&bytes).ok())
            .unwrap_or_default())
    }

    /// Whether a sync with `url` is running (a watched peer's long-poll, say).
    pub(crate) fn is_syncing(&self, url: &str) -> bool {
        self.in_progress.borrow().contains(url)
    }

    /// Syncs with `url` (adding it as a peer if new) and records the outcome.
    pub(crate) async fn sync_peer(&self, url: &str) -> PeerSyncResult {
        self.sync_peer_waiting(url, None).await
    }

    /// [`Syncer::sync_peer`] whose first pull, when the peer has a checkpoint, is a
    /// long-poll held up to `wait` for a change to arrive.
    pub(crate) async fn sync_peer_waiting(
        &self,
        url: &str,
        wait: Option<std::time::Duration>,
    ) -> PeerSyncResult {
        let mut result = PeerSyncResult {
            peer: url.to_owned(),
            ..PeerSyncResult::default()
        };
        // One sync per peer at a time: checkpoints are read at the start and written as
        // batches commit. A sync asked for while another runs (a manual sync during
        // auto-sync) waits for it and then runs, rather than failing; a long-poll
        // (`wait`) gives way instead, since the running sync brings the same changes.
        let deadline = std::time::Instant::now() + SYNC_WAIT_LIMIT;
        // Damaged records found since the last sync are moved aside first, so this sync
        // already fetches them again.
        super::move_aside_damaged(&mut self.store.borrow_mut());
        while !self.in_progress.borrow_mut().insert(url.to_owned()) {
            if wait.is_some() || std::time::Instant::now() >= deadline {
                result.error = Some(format!("a sync with {url} is already running"));
                return result;
            }
            let done = self.sync_done.listen();
            if self.in_progress.borrow().contains(url) {
                futures_lite::future::or(done, async {
                    smol::Timer::at(deadline).await;
                })
                .await;
            }
        }
        // A panic (redb on a damaged page, issue 10) fails this sync like any error:
        // the peer's in-progress mark below must go, or every later sync with it waits.
        let work = self.sync_peer_inner(url, wait, &mut result);
        let outcome = match crate::panics::contained(&format!("sync with {url}"), work).await {
            Ok(outcome) => outcome,
            Err(message) => Err(SyncError::Panicked(message)),
        };
        // Everything held from this peer, not only what this sync held: a sync keeps
        // saying what waits, and what to run, until it is applied.
        match self.held_counts_from(Some(url)) {
            Ok(counts) => (result.held, result.held_messages) = counts.wire_fields(),
            Err(error) => eprintln!("warning: cannot count held records: {error}"),
        }
        self.in_progress.borrow_mut().remove(url);
        self.sync_done.notify(usize::MAX);
        if let Err(error) = &outcome {
            result.error = Some(error.to_string());
            result.failure = Some(error.kind());
            self.log(format!("sync with {url} failed: {error}"));
        } else {
            result.success = true;
            self.log(format!(
                "sync with {url} done: received {}, sent {}, conflicts {}",
                result.nodes_received, result.nodes_sent, result.conflicts
            ));
        }
        if let Err(error) = self.record_outcome(url, &result) {
            eprintln!("warning: could not save sync statistics for {url}: {error}");
        }
        super::move_aside_damaged(&mut self.store.borrow_mut());
        result
    }

    fn record_outcome(&self, url: &str, result: &PeerSyncResult) -> Result<(), StoreError> {
        let now = unix_millis_now();
        let mut state = self.peer(url)?.unwrap_or_else(|| PeerState::new(url, now));
        let was_failing = state.failures > 0 || state.last_success.is_none();
        let delta = SyncStats {
            total_syncs: 1,
            successful_syncs: u64::from(result.success),
            failed_syncs: u64::from(!result.success),
            nodes_sent: result.nodes_sent,
            nodes_received: result.nodes_received,
            conflicts_resolved: result.conflicts,
        };
        state.stats.add(&delta);
        state.last_attempt = Some(now);
        let batch_before = state.batch_limit;
        state.adapt_batch(result.success);
        if result.success {
            state.last_success = Some(now);
            state.last_error = None;
            state.failures = 0;
        } else {
            state.last_error = result.error.clone();
            state.failures = state.failures.saturating_add(1);
        }
        let mut global = self.global_stats()?;
        global.add(&delta);
        let durable = !result.success
            || was_failing
            || state.batch_limit != batch_before
            || result.nodes_sent + result.nodes_received + result.conflicts > 0
            || !result.rejected.is_empty();
        self.save_states(
            vec![
                (url.to_owned(), state.encode()),
                (GLOBAL_STATS_KEY.to_owned(), global.encode()),
            ],
            durable,
        )
    }

    /// One sync, its steps decided by `sync::core::start`: the feed both ways when the
    /// checkpoints hold, else the peer's info says how to go on.
    async fn sync_peer_inner(
        &self,
        url: &str,
        wait: Option<std::time::Duration>,
        result: &mut PeerSyncResult,
    ) -> Result<(), SyncError> {
        // Records held back by earlier syncs whose reason went away (a key accepted, the
        // clock caught up) are applied first; they count as received.
        result.nodes_received += self.release_held().await?;
        let mut stored = self.peer(url)?;
        let mut state = stored
            .clone()
            .unwrap_or_else(|| PeerState::new(url, unix_millis_now()));
        let counts = StoreCounts {
            repairs: self.store.borrow().repairs(),
            held_drops: self.held_usage()?.2.drops,
        };
        let refetch_due = state.has_checkpoint() && self.refetch_due(state.held_drops)?;
        if let Some(reason) = check_checkpoint(url, &mut state, counts, refetch_due) {
            self.log(reason);
        }
        // With a checkpoint, the changes page is the whole steady-state sync: it carries
        // the peer's instance id and epoch, so `/federation/info` is not needed to notice
        // that the peer changed.
        if state.has_checkpoint() {
            match self
                .sync_checkpointed(url, wait, false, &mut state, result)
                .await
            {
                Err(restarted @ SyncError::Restart { .. }) => {
                    self.log(format!("{restarted}; both checkpoints start over"));
                    restart(&mut state);
                    self.save_states(vec![(url.to_owned(), state.encode())], true)?;
                    stored = Some(state.clone());
                }
                outcome => return outcome,
            }
        }
        let response = self.client.send(self.get(&Route::Info.url(url))).await?;
        let known_id = state.instance_id.clone();
        let after_info = on_info(
            url,
            &mut state,
            &self.instance_id,
            self.trust_mode,
            counts,
            (response.status, &response.body),
        )?;
        if known_id.is_some() && known_id != state.instance_id {
            let peer_id = state.instance_id.as_deref().unwrap_or_default();
            self.log(format!("{url} is now instance {peer_id}; starting over"));
        }
        match after_info {
            AfterInfo::Python => {
                self.save_if_changed(stored.as_ref(), &state)?;
                self.sync_python(url, result).await
            }
            AfterInfo::Legacy { peer_id } => {
                self.save_if_changed(stored.as_ref(), &state)?;
                self.sync_legacy(url, &peer_id, &mut state, result).await
            }
            AfterInfo::Lattice(peer) => {
                self.sync_lattice(url, &peer, counts, stored.as_ref(), &mut state, result)
                    .await
            }
        }
    }

    /// An ark-lattice peer after its info: its key pinned if it was added to be pinned,
    /// then the feed both ways, or first a copy or reconciliation when there is no
    /// checkpoint for its store.
    async fn sync_lattice(
        &self,
        url: &str,
        peer: &LatticePeer,
        counts: StoreCounts,
        stored: Option<&PeerState>,
        state: &mut PeerState,
        result: &mut PeerSyncResult,
    ) -> Result<(), SyncError> {
        if peer.pin_key {
            // Added offline: this first answer's key is the one the operator meant.
            let mut store = self.store.borrow_mut();
            if trust_book::tier_of(&store, &peer.key.instance_id())?.is_none() {
                trust_book::trust(&mut store, peer.key, Tier::Core, None, "peer")?;
            }
            self.log(format!(
                "{url}: pinned its key {} at first contact",
                peer.key.fingerprint()
            ));
        }
        let by_core =
            trust_book::tier_of(&self.store.borrow(), &peer.key.instance_id())? == Some(Tier::Core);
        if peer.checkpointed {
            self.save_if_changed(stored, state)?;
            return self.sync_checkpointed(url, None, true, state, result).await;
        }
        let local_records = self.store.borrow().record_count()?;
        let mode = without_checkpoint(state, peer, local_records);
        self.save_if_changed(stored, state)?;
        let mut pulled = PulledVersions::default();
        if mode == FirstContact::Copy {
            self.copy_peer(url, &peer.epoch, by_core, counts.repairs, state, result)
                .await?;
        } else {
            self.reconcile_peer(url, &peer.epoch, by_core, state, &mut pulled, result)
                .await?;
        }
        self.push_feed(url, state, &pulled, result).await
    }

    /// Saves `state` durably if it differs from what was stored.
    pub(super) fn save_if_changed(
        &self,
        stored: Option<&PeerState>,
        state: &PeerState,
    ) -> Result<(), StoreError> {
        if stored != Some(state) {
            self.save_states(vec![(state.url.clone(), state.encode())], true)?;
        }
        Ok(())
    }

    /// A GET to a peer, signed with our key (ARK's peers ignore the headers).
    pub fn get(&self, url: &str) -> ClientRequest {
        self.signed(ClientRequest::get(url))
    }

    /// Adds the signed-request headers: method, path, body hash, time, nonce, and the
    /// audience — the peer's instance id once known, so the request is no good to any
    /// other instance.
    pub(super) fn signed(&self, mut request: ClientRequest) -> ClientRequest {
        let Ok(peer_url) = PeerUrl::parse(&request.url) else {
            // The client reports the bad URL when it sends the request.
            return request;
        };
        let base = request.url.split("/federation/").next().unwrap_or_default();
        // The first 16 hex digits (64 bits) of the id: enough to name the recipient (a
        // key matching them is out of reach), half the bytes on every request.
        let audience: String = self
            .peer(base)
            .ok()
            .flatten()
            .and_then(|peer| peer.instance_id)
            .map(|id| id.chars().take(AUDIENCE_DIGITS).collect())
            .unwrap_or_default();
        match sign_request(
            &self.key,
            &request.method,
            peer_url.path_and_query(),
            &request.body,
            unix_millis_now(),
            &audience,
        ) {
            Ok(headers) => {
                for (name, value) in headers.pairs() {
                    request = request.with_header(name, value);
                }
                request
            }
            Err(error) => {
                eprintln!("warning: cannot sign a request to {}: {error}", request.url);
                request
            }
        }
    }

    /// Sends `request` and reads a JSON object answer, or says what went wrong.
    pub(super) async fn fetch(
        &self,
        request: ClientRequest,
        what: &str,
    ) -> Result<miniserde::json::Object, SyncError> {
        let url = request.url.clone();
        let response = self.send_ok(request).await?;
        parse_object(&response.body, &format!("{what} from {url}")).map_err(SyncError::from)
    }

    /// A signed JSON POST to an ark-lattice peer, gzipped: our server advertises
    /// `ark-lattice-v2`, which inflates request bodies.
    pub(super) fn post_json(&self, url: String, body: Value) -> ClientRequest {
        self.post_json_plain(url, body).with_gzip_body()
    }

    /// A JSON POST as ARK sends it: ARK's server reads the raw bytes as JSON, so the
    /// body is never compressed.
    pub(super) fn post_json_plain(&self, url: String, body: Value) -> ClientRequest {
        self.signed(ClientRequest::post(
            &url,
            "application/json",
            json::to_string(&body).into_bytes(),
        ))
    }

    /// Applies verified records and holds `held` ones, in one transaction with
    /// `peer_state` (a checkpoint that moves past them). When the held table is full, the
    /// oldest held records make way in the same transaction (`sync::held_room`).
    pub fn apply(
        &self,
        records: &[RemoteRecord],
        peer_state: Option<(&str, &[u8])>,
        held: &[Held],
    ) -> Result<ApplyOutcome, StoreError> {
        self.apply_committing(records, peer_state, held, Commit::Durable)
    }

    /// [`Syncer::apply`], committed as `commit` says (a push's chunks are deferred and
    /// made durable before the push is answered).
    pub(crate) fn apply_committing(
        &self,
        records: &[RemoteRecord],
        peer_state: Option<(&str, &[u8])>,
        held: &[Held],
        commit: Commit,
    ) -> Result<ApplyOutcome, StoreError> {
        let entries = self.held_entries(held)?;
        let room = self.make_room(&entries)?;
        let marker = room.marker.map(|marker| marker.encode());
        let written: Vec<(&Held, usize)> = entries
            .iter()
            .filter(|(held, _)| !room.drop_new.contains(&held.id))
            .map(|(held, bytes)| (*held, bytes.len()))
            .collect();
        let mut changes: Vec<(&str, Option<&[u8]>)> = entries
            .iter()
            .filter(|(held, _)| !room.drop_new.contains(&held.id))
            .map(|(held, bytes)| (held.id.as_str(), Some(bytes.as_slice())))
            .collect();
        changes.extend(room.drop_held.iter().map(|id| (id.as_str(), None)));
        if let Some(bytes) = &marker {
            changes.push((super::held_room::MARKER_KEY, Some(bytes.as_slice())));
        }
        let outcome = self.store.borrow_mut().apply_remote_committing(
            records,
            unix_millis_now(),
            self.max_clock_skew_millis,
            peer_state,
            &changes,
            commit,
        );
        match outcome {
            Ok(outcome) => {
                let removed: Vec<&str> = room.drop_held.iter().map(String::as_str).collect();
                self.held_written(&written, &removed, room.marker);
                // What the store refuses (an id or hash that does not match) is refused
                // for good, like what the checks before it refuse.
                self.refused_records
                    .set(self.refused_records.get() + outcome.rejected.len() as u64);
                Ok(outcome)
            }
            Err(error) => {
                self.forget_held_index();
                Err(error)
            }
        }
    }

    /// Reads a wire record and decides whether to accept it: its author signature must
    /// verify with the author's key (sent along, or known from earlier records), and the
    /// author must be trusted for writing unless a core peer delivered it. In open trust
    /// mode unsigned records pass (ARK's peers sign nothing). A record refused for a
    /// reason that can go away (author not trusted yet, clock ahead) is
    /// [`Refusal::Held`], to be kept and checked again (`sync::held`).
    pub(crate) fn verified_record(
        &self,
        value: &Value,
        context: &str,
        peer: &str,
        delivered_by_core: bool,
    ) -> Result<RemoteRecord, Refusal> {
        let record = self
            .signed_record(value, context)
            .map_err(|reason| self.refused(reason))?;
        self.judged(record, value, context, peer, delivered_by_core)
    }

    /// Counts a record refused for good.
    pub(super) fn refused(&self, reason: String) -> Refusal {
        self.refused_records.set(self.refused_records.get() + 1);
        Refusal::Refused(reason)
    }

    /// [`Syncer::verified_record`] after the signature check: whether the trust rules
    /// accept `record` (read from `value`) now, hold it, or refuse it.
    pub(super) fn judged(
        &self,
        record: RemoteRecord,
        value: &Value,
        context: &str,
        peer: &str,
        delivered_by_core: bool,
    ) -> Result<RemoteRecord, Refusal> {
        let origin = record.version.origin;
        // Hashed only for a record that is held: it names the author in the message.
        let author_fingerprint = || {
            record
                .author_key
                .and_then(|key| PublicKey::from_bytes(&key).ok())
                .map_or_else(|| origin.short(), |key| key.fingerprint())
        };
        let rules = self.trust_rules();
        let author_tier = if rules.asks_author_tier(&origin, delivered_by_core) {
            trust_book::tier_of(&self.store.borrow(), &origin)
                .map_err(|error| Refusal::Refused(error.to_string()))?
        } else {
            None
        };
        let now = unix_millis_now();
        match rules.judge(
            &record,
            context,
            &author_fingerprint,
            author_tier,
            delivered_by_core,
            now,
        ) {
            None => Ok(record),
            Some(hold) => Err(Refusal::Held(Box::new(Held {
                id: record.id.clone(),
                version: record.version,
                reason: hold.reason,
                author_fingerprint: author_fingerprint(),
                message: hold.message,
                peer: peer.to_owned(),
                delivered_by_core,
                record: value.clone(),
                held_at: now,
            }))),
        }
    }

    /// The rules a received record is judged by (`sync::core`).
    fn trust_rules(&self) -> TrustRules {
        TrustRules {
            trust_mode: self.trust_mode,
            our_id: self.instance_id,
            max_clock_skew_millis: self.max_clock_skew_millis,
        }
    }

    /// A wire record whose signature checks out (or, in open mode, an unsigned one).
    fn signed_record(&self, value: &Value, context: &str) -> Result<RemoteRecord, String> {
        let (record, author_key) =
            record_from_wire(value, context).map_err(|error| error.to_string())?;
        let key = match &author_key {
            Some(text) => Some(
                PublicKey::from_base64(text)
                    .map_err(|error| format!("{context}: author key: {error}"))?,
            ),
            None => self
                .known_author_key(&record.version.origin)
                .map_err(|error| error.to_string())?,
        };
        check_signature(record, key, self.trust_mode == TrustMode::Open, context)
    }

    /// A record read from a page by `verify::check_page` whose author key it did not
    /// carry: checked with the key known here.
    pub(super) fn signed_with_known_key(
        &self,
        record: RemoteRecord,
        context: &str,
    ) -> Result<RemoteRecord, String> {
        let key = self
            .known_author_key(&record.version.origin)
            .map_err(|error| error.to_string())?;
        check_signature(record, key, self.trust_mode == TrustMode::Open, context)
    }

    /// The public key of a record author: ours, one learned from its verified records, or
    /// one in the trust store.
    pub(crate) fn known_author_key(
        &self,
        origin: &InstanceId,
    ) -> Result<Option<PublicKey>, StoreError> {
        if *origin == self.instance_id {
            return Ok(Some(self.key.public_key()));
        }
        let store = self.store.borrow();
        if let Some(bytes) = store.state(StateTable::AuthorKeys, &origin.to_hex())? {
            if let Ok(key) = PublicKey::from_bytes(&bytes) {
                return Ok(Some(key));
            }
        }
        Ok(trust_book::entry(&store, origin)?.map(|entry| entry.public_key))
    }

    /// The base64 key to send with a record, so receivers can check it and relay it.
    pub(crate) fn author_key_for(&self, origin: &InstanceId) -> Option<String> {
        self.known_author_key(origin)
            .ok()
            .flatten()
            .map(|key| key.to_base64())
    }
}

pub(super) fn object_value<const N: usize>(pairs: [(&str, Value); N]) -> Value {
    Value::Object(
        pairs
            .into_iter()
            .map(|(key, value)| (key.to_owned(), value))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{ClientConfig, WireStats};
    use crate::store::StoreOptions;

    /// The peer list shows a peer's state as `peer` does, counters still in memory
    /// included, not the older one in the store.
    #[test]
    fn peers_shows_states_not_yet_written() {
        let dir = std::env::temp_dir().join(format!("ark-syncer-peers-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let key = KeyPair::from_seed([7; 32]).unwrap();
        let store = Store::open(
            &dir.join("lattice.redb"),
            &StoreOptions::default(),
            key.public_key().instance_id(),
        )
        .unwrap();
        let store = Rc::new(RefCell::new(store));
        let client = HttpClient::new(ClientConfig::default(), WireStats::new());
        let syncer = Syncer::new(store.clone(), client, key, TrustMode::Strict, 60_000, false);
        let url = "http://127.0.0.1:9";
        assert!(syncer.add_peer(url, None, false).unwrap());
        let mut state = syncer.peer(url).unwrap().unwrap();
        state.last_attempt = Some(42);
        // Not durable, and just after a write: it waits in memory.
        syncer
            .save_states(vec![(url.to_owned(), state.encode())], false)
            .unwrap();
        let stored = store.borrow().states(StateTable::Peers).unwrap();
        let stored = PeerState::decode(&stored[0].1).unwrap();
        assert_eq!(stored.last_attempt, None, "the change is not written yet");
        let listed = syncer.peers().unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].last_attempt, Some(42));
        drop(syncer);
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
