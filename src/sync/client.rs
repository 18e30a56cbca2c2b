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
//! checkpoints. With an ARK Node.js peer, the legacy protocol is used: pull
//! `GET /federation/nodes`, push `POST /federation/sync {nodes}` page by page of our
//! changes after `push_seq`.
//!
//! The store lives in a `RefCell` shared with the server; no borrow is held across an
//! `.await`.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::rc::Rc;

use miniserde::json::{self, Array, Number, Value};

use super::peer::{GLOBAL_STATS_KEY, PeerState, SyncStats};
use super::trust_book;
use crate::config::TrustMode;
use crate::config::{SYNC_BATCH_BYTES, SYNC_BATCH_RECORDS};
use crate::http::PeerUrl;
use crate::http::{ClientRequest, ClientResponse, HttpClient};
use crate::model::{InstanceId, unix_millis_now};
use crate::protocol::{
    Fields, PROTOCOL_V2, WireError, ark_row, legacy_origin, legacy_record, parse_object,
    record_from_wire, record_to_wire,
};
use crate::store::{ApplyOutcome, Body, RemoteRecord, StateTable, Store, StoreError};
use crate::trust::{KeyPair, PublicKey, Signature, Tier, sign_request, verify_record};

/// What one sync with one peer did, in the shape of ARK's sync result.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerSyncResult {
    pub peer: String,
    pub success: bool,
    pub nodes_sent: u64,
    pub nodes_received: u64,
    pub conflicts: u64,
    /// Records the peer sent that we refused, with the reason.
    pub rejected: Vec<String>,
    pub error: Option<String>,
}

impl PeerSyncResult {
    pub fn to_json(&self) -> Value {
        let mut object = miniserde::json::Object::new();
        let number = |n: u64| Value::Number(Number::U64(n));
        object.insert("peer".into(), Value::String(self.peer.clone()));
        object.insert("success".into(), Value::Bool(self.success));
        object.insert("nodesSent".into(), number(self.nodes_sent));
        object.insert("nodesReceived".into(), number(self.nodes_received));
        object.insert("conflicts".into(), number(self.conflicts));
        if !self.rejected.is_empty() {
            let rejected: Array = self
                .rejected
                .iter()
                .map(|reason| Value::String(reason.clone()))
                .collect();
            object.insert("rejected".into(), Value::Array(rejected));
        }
        if let Some(error) = &self.error {
            object.insert("error".into(), Value::String(error.clone()));
        }
        Value::Object(object)
    }
}

/// Why a sync stopped.
#[derive(Debug)]
enum SyncError {
    Store(StoreError),
    Peer(String),
}

impl From<StoreError> for SyncError {
    fn from(error: StoreError) -> SyncError {
        SyncError::Store(error)
    }
}

impl From<WireError> for SyncError {
    fn from(error: WireError) -> SyncError {
        SyncError::Peer(error.0)
    }
}

impl std::fmt::Display for SyncError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SyncError::Store(error) => error.fmt(f),
            SyncError::Peer(message) => f.write_str(message),
        }
    }
}

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
    /// Peer-table entries not written yet (see `save_states`).
    unsaved: RefCell<std::collections::BTreeMap<String, Vec<u8>>>,
    last_flush: std::cell::Cell<u64>,
}

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
            unsaved: RefCell::new(std::collections::BTreeMap::new()),
            last_flush: std::cell::Cell::new(unix_millis_now()),
        }
    }

    fn log(&self, message: impl AsRef<str>) {
        if self.verbose {
            eprintln!("ark:federation {}", message.as_ref());
        }
    }

    /// Every peer, in URL order.
    pub fn peers(&self) -> Result<Vec<PeerState>, StoreError> {
        let states = self.store.borrow().states(StateTable::Peers)?;
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

    /// A peer-table entry, as last saved or as still waiting to be saved.
    fn load_state(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
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
    fn save_states(
        &self,
        entries: Vec<(String, Vec<u8>)>,
        durable: bool,
    ) -> Result<(), StoreError> {
        let now = unix_millis_now();
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

    /// Adds a peer; `false` if it was already there.
    pub fn add_peer(&self, url: &str) -> Result<bool, StoreError> {
        if self.peer(url)?.is_some() {
            return Ok(false);
        }
        let state = PeerState::new(url, unix_millis_now());
        self.save_states(vec![(url.to_owned(), state.encode())], true)?;
        Ok(true)
    }

    /// Removes a peer; `false` if it was not there.
    pub fn remove_peer(&self, url: &str) -> Result<bool, StoreError> {
        if self.peer(url)?.is_none() {
            return Ok(false);
        }
        self.unsaved.borrow_mut().remove(url);
        self.store
            .borrow_mut()
            .set_state(StateTable::Peers, url, None)?;
        Ok(true)
    }

    /// Totals over every sync this instance ran.
    pub fn global_stats(&self) -> Result<SyncStats, StoreError> {
        let bytes = self.load_state(GLOBAL_STATS_KEY)?;
        Ok(bytes
            .and_then(|bytes| SyncStats::decode(&bytes).ok())
            .unwrap_or_default())
    }

    /// Syncs with `url` (adding it as a peer if new) and records the outcome.
    pub async fn sync_peer(&self, url: &str) -> PeerSyncResult {
        let mut result = PeerSyncResult {
            peer: url.to_owned(),
            ..PeerSyncResult::default()
        };
        if !self.in_progress.borrow_mut().insert(url.to_owned()) {
            result.error = Some(format!("a sync with {url} is already running"));
            return result;
        }
        let outcome = self.sync_peer_inner(url, &mut result).await;
        self.in_progress.borrow_mut().remove(url);
        if let Err(error) = &outcome {
            result.error = Some(error.to_string());
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

    async fn sync_peer_inner(
        &self,
        url: &str,
        result: &mut PeerSyncResult,
    ) -> Result<(), SyncError> {
        let now = unix_millis_now();
        let stored = self.peer(url)?;
        let mut state = stored.clone().unwrap_or_else(|| PeerState::new(url, now));
        let info = self
            .fetch(self.get(&format!("{url}/federation/info")), "peer info")
            .await?;
        let info_fields = Fields::new(&info, "peer info");
        let peer_id = info_fields.str("instanceId")?.to_owned();
        if peer_id == self.instance_id.to_hex() {
            return Err(SyncError::Peer(format!("{url} is this instance itself")));
        }
        let speaks_v2 = info_fields
            .opt_array("protocols")?
            .is_some_and(|protocols| {
                protocols
                    .iter()
                    .any(|name| matches!(name, Value::String(name) if name == PROTOCOL_V2))
            });
        state.instance_name = info_fields.opt_str("instanceName")?.map(str::to_owned);
        if state.instance_id.as_deref() != Some(peer_id.as_str()) {
            if state.instance_id.is_some() {
                self.log(format!("{url} is now instance {peer_id}; starting over"));
            }
            state.pull_seq = 0;
            state.push_seq = 0;
            state.legacy_pushed_until = 0;
            state.instance_id = Some(peer_id.clone());
        }
        if !speaks_v2 {
            if self.trust_mode == TrustMode::Strict {
                return Err(SyncError::Peer(format!(
                    "{url} speaks only ARK's unsigned protocol; sync with it needs FEDERATION_TRUST=open"
                )));
            }
            state.protocol = Some("legacy".into());
            self.save_if_changed(stored.as_ref(), &state)?;
            return self.sync_legacy(url, &peer_id, &mut state, result).await;
        }
        // An ark-lattice peer's id is the hash of its key, so the key it shows must match.
        let peer_key = PublicKey::from_base64(info_fields.str("publicKey")?)
            .map_err(|error| SyncError::Peer(format!("{url}: public key: {error}")))?;
        if peer_key.instance_id().to_hex() != peer_id {
            return Err(SyncError::Peer(format!(
                "{url}: its instance id does not belong to its public key"
            )));
        }
        let peer_tier = trust_book::tier_of(&self.store.borrow(), &peer_key.instance_id())?;
        let epoch = info_fields.str("epoch")?.to_owned();
        if state.epoch.as_deref() != Some(epoch.as_str()) {
            if state.epoch.is_some() {
                self.log(format!(
                    "{url} has a new store epoch; both checkpoints start over"
                ));
            }
            state.pull_seq = 0;
            state.push_seq = 0;
            state.epoch = Some(epoch.clone());
        }
        state.protocol = Some("v2".into());
        self.save_if_changed(stored.as_ref(), &state)?;
        self.pull_v2(
            url,
            &epoch,
            peer_tier == Some(Tier::Core),
            &mut state,
            result,
        )
        .await?;
        self.push_v2(url, &mut state, result).await
    }

    /// Saves `state` durably if it differs from what was stored.
    fn save_if_changed(
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

    /// Adds the signed-request headers: method, path, body hash, time and nonce.
    fn signed(&self, mut request: ClientRequest) -> ClientRequest {
        let Ok(peer_url) = PeerUrl::parse(&request.url) else {
            // The client reports the bad URL when it sends the request.
            return request;
        };
        match sign_request(
            &self.key,
            &request.method,
            peer_url.path_and_query(),
            &request.body,
            unix_millis_now(),
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
    async fn fetch(
        &self,
        request: ClientRequest,
        what: &str,
    ) -> Result<miniserde::json::Object, SyncError> {
        let method = request.method.clone();
        let url = request.url.clone();
        let response: ClientResponse = self
            .client
            .send(request)
            .await
            .map_err(|error| SyncError::Peer(error.to_string()))?;
        if !(200..300).contains(&response.status) {
            let snippet: String = String::from_utf8_lossy(&response.body)
                .chars()
                .take(200)
                .collect();
            return Err(SyncError::Peer(format!(
                "{method} {url} answered {}: {}",
                response.status,
                snippet.trim()
            )));
        }
        parse_object(&response.body, &format!("{what} from {url}")).map_err(SyncError::from)
    }

    fn post_json(&self, url: String, body: Value) -> ClientRequest {
        self.signed(ClientRequest::post(
            &url,
            "application/json",
            json::to_string(&body).into_bytes(),
        ))
        .with_gzip_body()
    }

    fn apply(
        &self,
        records: &[RemoteRecord],
        peer_state: Option<(&str, &[u8])>,
    ) -> Result<ApplyOutcome, StoreError> {
        self.store.borrow_mut().apply_remote(
            records,
            unix_millis_now(),
            self.max_clock_skew_millis,
            peer_state,
        )
    }

    async fn pull_v2(
        &self,
        url: &str,
        epoch: &str,
        delivered_by_core: bool,
        state: &mut PeerState,
        result: &mut PeerSyncResult,
    ) -> Result<(), SyncError> {
        loop {
            let request = self.get(&format!(
                "{url}/federation/v2/changes?after={}&limit={SYNC_BATCH_RECORDS}&max_bytes={SYNC_BATCH_BYTES}",
                state.pull_seq
            ));
            let page = self.fetch(request, "changes page").await?;
            let fields = Fields::new(&page, "changes page");
            if fields.str("epoch")? != epoch {
                return Err(SyncError::Peer(format!(
                    "{url} changed its store epoch during the sync; it starts over next time"
                )));
            }
            let last_seq = fields.u64("last_seq")?;
            let more = fields.opt_bool("more")?.unwrap_or(false);
            let mut records = Vec::new();
            for (index, value) in fields.array("records")?.iter().enumerate() {
                match self.verified_record(
                    value,
                    &format!("record {} from {url}", index + 1),
                    delivered_by_core,
                ) {
                    Ok(record) => records.push(record),
                    Err(reason) => result.rejected.push(reason),
                }
            }
            if records.is_empty() && last_seq == state.pull_seq && !more {
                // Nothing new: no transaction, nothing written.
                return Ok(());
            }
            let mut next = state.clone();
            next.pull_seq = last_seq;
            let outcome = self.apply(&records, Some((url, &next.encode())))?;
            // The transaction wrote the newer state; an older copy must not follow it.
            self.unsaved.borrow_mut().remove(url);
            *state = next;
            result.nodes_received += outcome.applied;
            result.conflicts += outcome.conflicts;
            result.rejected.extend(
                outcome
                    .rejected
                    .iter()
                    .map(|(id, reason)| format!("{id}: {reason}")),
            );
            self.log(format!(
                "pulled {} record(s) from {url} up to seq {last_seq}: {} applied, {} unchanged, {} stale",
                records.len(),
                outcome.applied,
                outcome.unchanged,
                outcome.stale
            ));
            if !more {
                return Ok(());
            }
        }
    }

    /// Reads a wire record and decides whether to accept it: its author signature must
    /// verify with the author's key (sent along, or known from earlier records), and the
    /// author must be trusted for writing unless a core peer delivered it. In open trust
    /// mode unsigned records pass (ARK's peers sign nothing).
    pub fn verified_record(
        &self,
        value: &Value,
        context: &str,
        delivered_by_core: bool,
    ) -> Result<RemoteRecord, String> {
        let (mut record, author_key) = record_from_wire(value, context).map_err(|error| error.0)?;
        let origin = record.version.origin;
        let key = match &author_key {
            Some(text) => Some(
                PublicKey::from_base64(text)
                    .map_err(|error| format!("{context}: author key: {error}"))?,
            ),
            None => self
                .known_author_key(&origin)
                .map_err(|error| error.to_string())?,
        };
        match (&record.signature, key) {
            (Some(signature), Some(key)) => {
                let canonical = match &record.body {
                    Body::Live(node) => crate::model::encode_node(node),
                    Body::Deleted { .. } => Vec::new(),
                };
                let signature = Signature::from_bytes(signature)
                    .map_err(|error| format!("{context}: {error}"))?;
                verify_record(&key, &canonical, &record.version, &signature)
                    .map_err(|error| format!("{context} ({:?}): {error}", record.id))?;
                record.author_key = Some(*key.as_bytes());
            }
            _ if self.trust_mode == TrustMode::Open => {}
            (Some(_), None) => {
                return Err(format!(
                    "{context} ({:?}): signed by an author whose key we do not have",
                    record.id
                ));
            }
            (None, _) => return Err(format!("{context} ({:?}): unsigned record", record.id)),
        }
        if self.trust_mode == TrustMode::Strict && !delivered_by_core && origin != self.instance_id
        {
            let author_tier = trust_book::tier_of(&self.store.borrow(), &origin)
                .map_err(|error| error.to_string())?;
            if author_tier != Some(Tier::Core) {
                return Err(format!(
                    "{context} ({:?}): its author {} is not trusted for writing here",
                    record.id,
                    origin.short()
                ));
            }
        }
        Ok(record)
    }

    /// The public key of a record author: ours, one learned from its verified records, or
    /// one in the trust store.
    pub fn known_author_key(&self, origin: &InstanceId) -> Result<Option<PublicKey>, StoreError> {
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
    pub fn author_key_for(&self, origin: &InstanceId) -> Option<String> {
        self.known_author_key(origin)
            .ok()
            .flatten()
            .map(|key| key.to_base64())
    }

    async fn push_v2(
        &self,
        url: &str,
        state: &mut PeerState,
        result: &mut PeerSyncResult,
    ) -> Result<(), SyncError> {
        let ours = Value::String(self.instance_id.to_hex());
        loop {
            let page = self.store.borrow().changes_since(
                state.push_seq,
                SYNC_BATCH_RECORDS,
                SYNC_BATCH_BYTES,
            )?;
            if page.records.is_empty() {
                return Ok(());
            }
            let offers: Array = page
                .records
                .iter()
                .map(|record| {
                    let mut offer = miniserde::json::Object::new();
                    offer.insert("id".into(), Value::String(record.id.clone()));
                    offer.insert(
                        "version".into(),
                        Value::String(record.meta.version.to_wire()),
                    );
                    Value::Object(offer)
                })
                .collect();
            let body = object_value([
                ("instanceId", ours.clone()),
                ("offers", Value::Array(offers)),
            ]);
            let answer = self
                .fetch(
                    self.post_json(format!("{url}/federation/v2/offer"), body),
                    "offer answer",
                )
                .await?;
            let want: BTreeSet<String> = Fields::new(&answer, "offer answer")
                .array("want")?
                .iter()
                .filter_map(|id| match id {
                    Value::String(id) => Some(id.clone()),
                    _ => None,
                })
                .collect();
            let records: Array = page
                .records
                .iter()
                .filter(|record| want.contains(&record.id))
                .map(|record| {
                    let key = self.author_key_for(&record.meta.version.origin);
                    record_to_wire(record, key.as_deref())
                })
                .collect();
            let sent = records.len() as u64;
            if sent > 0 {
                let body = object_value([
                    ("instanceId", ours.clone()),
                    ("records", Value::Array(records)),
                ]);
                let answer = self
                    .fetch(
                        self.post_json(format!("{url}/federation/v2/push"), body),
                        "push answer",
                    )
                    .await?;
                let fields = Fields::new(&answer, "push answer");
                result.conflicts += fields.opt_u64("conflicts")?.unwrap_or(0);
                for refused in fields.opt_array("rejected")?.unwrap_or_default() {
                    let reason = match refused {
                        Value::Object(entry) => match entry.get("error") {
                            Some(Value::String(reason)) => reason.clone(),
                            _ => "no reason given".to_owned(),
                        },
                        _ => "no reason given".to_owned(),
                    };
                    result
                        .rejected
                        .push(format!("{url} refused a record: {reason}"));
                }
            }
            result.nodes_sent += sent;
            state.push_seq = page.last_seq;
            self.save_states(vec![(url.to_owned(), state.encode())], true)?;
            self.log(format!(
                "offered {} record(s) to {url}, it wanted {sent}; pushed up to our seq {}",
                page.records.len(),
                page.last_seq
            ));
            if !page.more {
                return Ok(());
            }
        }
    }

    async fn sync_legacy(
        &self,
        url: &str,
        peer_id: &str,
        state: &mut PeerState,
        result: &mut PeerSyncResult,
    ) -> Result<(), SyncError> {
        let origin = legacy_origin(peer_id);
        let answer = self
            .fetch(self.get(&format!("{url}/federation/nodes")), "node list")
            .await?;
        let mut records = Vec::new();
        for (index, row) in Fields::new(&answer, "node list")
            .array("nodes")?
            .iter()
            .enumerate()
        {
            match legacy_record(row, origin) {
                Ok(record) => records.push(record),
                Err(error) => result
                    .rejected
                    .push(format!("node {} from {url}: {error}", index + 1)),
            }
        }
        for batch in records.chunks(SYNC_BATCH_RECORDS) {
            let outcome = self.apply(batch, None)?;
            result.nodes_received += outcome.applied;
            result.conflicts += outcome.conflicts;
            result.rejected.extend(
                outcome
                    .rejected
                    .iter()
                    .map(|(id, reason)| format!("{id}: {reason}")),
            );
        }
        // Push what changed here since the last push, except what came from that peer.
        // The cursor is our change sequence, not `updated_at`: a record can arrive here
        // (an import, a sync with another instance) with an `updated_at` older than
        // what was already pushed. ARK's rows cannot carry deletes; tombstones stay.
        loop {
            let page = self.store.borrow().changes_since(
                state.push_seq,
                SYNC_BATCH_RECORDS,
                SYNC_BATCH_BYTES,
            )?;
            if page.records.is_empty() {
                break;
            }
            let mut rows = Array::new();
            let mut newest = state.legacy_pushed_until;
            for record in &page.records {
                if let Body::Live(node) = &record.body {
                    if record.meta.version.origin != origin {
                        newest = newest.max(record.meta.updated_at.unwrap_or(0));
                        rows.push(ark_row(node));
                    }
                }
            }
            let sent = rows.len() as u64;
            if sent > 0 {
                let body = object_value([
                    ("instanceId", Value::String(self.instance_id.to_hex())),
                    ("nodes", Value::Array(rows)),
                ]);
                self.fetch(
                    self.post_json(format!("{url}/federation/sync"), body),
                    "sync answer",
                )
                .await?;
            }
            result.nodes_sent += sent;
            state.push_seq = page.last_seq;
            state.legacy_pushed_until = newest;
            self.save_states(vec![(url.to_owned(), state.encode())], true)?;
            if !page.more {
                break;
            }
        }
        Ok(())
    }
}

fn object_value<const N: usize>(pairs: [(&str, Value); N]) -> Value {
    Value::Object(
        pairs
            .into_iter()
            .map(|(key, value)| (key.to_owned(), value))
            .collect(),
    )
}
