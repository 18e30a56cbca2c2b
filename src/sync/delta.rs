//! Delta sync with an ark-lattice peer: the checkpointed changes feed both ways for the
//! steady state, and set reconciliation for first contact and repair.
//!
//! # Implementation
//!
//! *Steady state* (a checkpoint for the peer's current store epoch exists): one
//! `GET /federation/v2/changes?after=<pull_seq>` (a long-poll when the caller waits),
//! each page applied in one transaction with its `pull_seq`; then our changes after
//! `push_seq` are offered (`offer`, ids and versions) and what the peer wants is pushed
//! (`push`); `push_seq` advances once the peer answered. Records just pulled from this
//! peer are not offered back to it, so an idle sync is one request and a sync that
//! only pulled is one request per page.
//!
//! *Reconciliation* (no checkpoint): negentropy rounds over `reconcile` find the
//! versions each side lacks; we fetch ours by digest (`fetch`, highest priority
//! first) and push theirs (highest priority first). Every fetched batch is committed
//! on its own, and every pushed batch is acknowledged on its own, so a cut connection
//! loses at most the batch in flight: the next attempt reconciles again and finds only
//! what is still missing. Both checkpoints are set when both directions are done: the
//! peer's sequence as of its first answer, ours as of our set.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures_lite::future;
use miniserde::json::{Array, Value};

use super::client::{PeerSyncResult, SyncError, Syncer};
use super::held::{Held, Refusal};
use super::peer::PeerState;
use super::reconcile::{ItemDigest, item_digest};
use super::{by_priority, trust_book, wire_size};
use crate::config::{MAX_RECORD_WIRE_BYTES, SYNC_BATCH_BYTES};
use crate::http::{ClientRequest, ClientResponse};
use crate::model::{ContentHash, InstanceId, Version, encode_node};
use crate::protocol::{
    Fields, Route, parse_object, record_from_wire, record_to_wire, types_to_query,
};
use crate::store::{Body, RemoteRecord, TypeFilter};
use crate::trust::Tier;

/// Digests sent in one `fetch` request: 1.6 MB, well inside the peer's body limit.
const FETCH_DIGESTS_PER_REQUEST: usize = 50_000;

/// The versions pulled from one peer during one sync, so they are not offered back.
#[derive(Debug, Default)]
pub struct PulledVersions {
    versions: BTreeMap<String, Version>,
}

impl PulledVersions {
    fn note(&mut self, record: &RemoteRecord) {
        self.versions.insert(record.id.clone(), record.version);
    }

    fn contains(&self, id: &str, version: &Version) -> bool {
        self.versions.get(id) == Some(version)
    }

    /// Whether a version newer than `version` of `id` came from the peer.
    fn has_newer(&self, id: &str, version: &Version) -> bool {
        self.versions.get(id).is_some_and(|pulled| pulled > version)
    }
}

/// How to pull one peer's feed.
struct Feed<'a> {
    url: &'a str,
    wait: Option<Duration>,
    info_checked: bool,
    delivered_by_core: bool,
}

/// How to fetch records by digest from one peer.
#[derive(Clone, Copy)]
struct Fetch<'a> {
    url: &'a str,
    types: &'a str,
    batch_records: usize,
    delivered_by_core: bool,
}

/// `&types=T,U` for a peer limited to some node types, else nothing.
pub(super) fn types_param(state: &PeerState) -> String {
    if state.types.is_empty() {
        String::new()
    } else {
        format!("&types={}", types_to_query(&state.types))
    }
}

fn content_hash(record: &RemoteRecord) -> ContentHash {
    match &record.body {
        Body::Live(node) => ContentHash::of(&encode_node(node)),
        Body::Deleted { .. } => ContentHash::of(b""),
    }
}

impl Syncer {
    /// Sends `request`; a non-2xx answer is an error naming the status and the start of
    /// the body.
    pub(super) async fn send_ok(
        &self,
        request: ClientRequest,
    ) -> Result<ClientResponse, SyncError> {
        let method = request.method.clone();
        let url = request.url.clone();
        let response = self.client.send(request).await?;
        if !(200..300).contains(&response.status) {
            // A peer's `{"error": ...}` is shown whole, up to 1000 characters: its end
            // often names the command that fixes it (`trust accept SHA256:...`).
            let error = crate::protocol::parse_object(&response.body, "error answer")
                .ok()
                .and_then(|object| match object.get("error") {
                    Some(Value::String(error)) => Some(error.clone()),
                    _ => None,
                });
            let (text, limit) = match error {
                Some(error) => (error, 1000),
                None => (String::from_utf8_lossy(&response.body).into_owned(), 200),
            };
            let snippet: String = text.chars().take(limit).collect();
            return Err(SyncError::Status {
                request: format!("{method} {url}"),
                status: response.status,
                detail: snippet.trim().to_owned(),
            });
        }
        Ok(response)
    }

    /// The tier we grant the peer whose instance id (hex) we recorded.
    fn tier_of_peer(&self, state: &PeerState) -> Result<Option<Tier>, SyncError> {
        let Some(id) = state.instance_id.as_deref() else {
            return Ok(None);
        };
        let Ok(id) = InstanceId::from_hex(id) else {
            return Ok(None);
        };
        Ok(trust_book::tier_of(&self.store.borrow(), &id)?)
    }

    /// The steady state: pull since the checkpoint (waiting up to `wait` for a change),
    /// then push what changed here. `info_checked` says `/federation/info` was just read,
    /// so the peer's identity need not be checked against the changes page.
    pub(super) async fn sync_checkpointed(
        &self,
        url: &str,
        wait: Option<Duration>,
        info_checked: bool,
        state: &mut PeerState,
        result: &mut PeerSyncResult,
    ) -> Result<(), SyncError> {
        let delivered_by_core = self.tier_of_peer(state)? == Some(Tier::Core);
        let mut pulled = PulledVersions::default();
        let feed = Feed {
            url,
            wait,
            info_checked,
            delivered_by_core,
        };
        self.pull_feed(&feed, state, &mut pulled, result).await?;
        self.push_feed(url, state, &pulled, result).await
    }

    /// Verifies the records of a page, reporting the refused ones in `result` and
    /// returning those to hold with the verified ones (the sync reports what is held
    /// from the peer when it ends).
    pub(super) fn verified_records(
        &self,
        values: &[Value],
        url: &str,
        delivered_by_core: bool,
        result: &mut PeerSyncResult,
    ) -> (Vec<RemoteRecord>, Vec<Held>) {
        let mut records = Vec::with_capacity(values.len());
        let mut held = Vec::new();
        for (index, value) in values.iter().enumerate() {
            match self.verified_record(
                value,
                &format!("record {} from {url}", index + 1),
                url,
                delivered_by_core,
            ) {
                Ok(record) => records.push(record),
                Err(Refusal::Refused(reason)) => result.rejected.push(reason),
                Err(Refusal::Held(record)) => held.push(*record),
            }
        }
        (records, held)
    }

    /// Applies verified records in one transaction, with `state` when a checkpoint moves
    /// with them, and adds the outcome to `result`.
    pub(super) fn apply_batch(
        &self,
        url: &str,
        (records, held): &(Vec<RemoteRecord>, Vec<Held>),
        state: Option<&PeerState>,
        pulled: &mut PulledVersions,
        result: &mut PeerSyncResult,
    ) -> Result<(), SyncError> {
        let encoded = state.map(PeerState::encode);
        let outcome = self.apply(records, encoded.as_deref().map(|bytes| (url, bytes)), held)?;
        if state.is_some() {
            // The transaction wrote the newer state; an older copy must not follow it.
            self.unsaved.borrow_mut().remove(url);
        }
        for record in records {
            pulled.note(record);
        }
        result.count_applied(&outcome);
        self.log(format!(
            "applied {} record(s) from {url}: {} new, {} unchanged, {} stale",
            records.len(),
            outcome.applied,
            outcome.unchanged,
            outcome.stale
        ));
        Ok(())
    }

    async fn pull_feed(
        &self,
        feed: &Feed<'_>,
        state: &mut PeerState,
        pulled: &mut PulledVersions,
        result: &mut PeerSyncResult,
    ) -> Result<(), SyncError> {
        let url = feed.url;
        let delivered_by_core = feed.delivered_by_core;
        let mut wait = feed.wait.map_or(0, |wait| wait.as_secs());
        loop {
            let mut request_url = format!(
                "{}?after={}&limit={}&max_bytes={SYNC_BATCH_BYTES}{}",
                Route::Changes.url(url),
                state.pull_seq,
                state.batch_records(),
                types_param(state)
            );
            let page = if wait > 0 {
                request_url.push_str(&format!("&wait={wait}"));
                // Only the first request of a sync waits.
                wait = 0;
                // A change here (a local write, or records from another peer) while the
                // peer holds our long-poll is for the peer too: give up the wait and go
                // on to push it now, rather than when the wait ends (issue 13: up to
                // 20 s late). Nothing was applied yet; the next sync pulls again.
                let changed_here = self.store.borrow().changed().listen();
                let held = future::or(
                    async { Some(self.fetch(self.get(&request_url), "changes page").await) },
                    async {
                        changed_here.await;
                        None
                    },
                )
                .await;
                match held {
                    Some(page) => page?,
                    None => return Ok(()),
                }
            } else {
                self.fetch(self.get(&request_url), "changes page").await?
            };
            let fields = Fields::new(&page, "changes page");
            if !feed.info_checked && Some(fields.str("instanceId")?) != state.instance_id.as_deref()
            {
                return Err(SyncError::Restart(format!("{url} is now another instance")));
            }
            if Some(fields.str("epoch")?) != state.epoch.as_deref() {
                return Err(SyncError::Restart(format!("{url} has a new store epoch")));
            }
            let last_seq = fields.u64("last_seq")?;
            let more = fields.opt_bool("more")?.unwrap_or(false);
            let batch =
                self.verified_records(fields.array("records")?, url, delivered_by_core, result);
            if batch.0.is_empty() && batch.1.is_empty() && last_seq == state.pull_seq && !more {
                // Nothing new: no transaction, nothing written.
                return Ok(());
            }
            let mut next = state.clone();
            next.pull_seq = last_seq;
            self.apply_batch(url, &batch, Some(&next), pulled, result)?;
            *state = next;
            if !more {
                return Ok(());
            }
        }
    }

    /// Offers our changes after `push_seq` page by page and pushes what the peer asks
    /// for, highest priority first; records just pulled from it are not offered back.
    pub(super) async fn push_feed(
        &self,
        url: &str,
        state: &mut PeerState,
        pulled: &PulledVersions,
        result: &mut PeerSyncResult,
    ) -> Result<(), SyncError> {
        let ours = Value::String(self.instance_id.to_hex());
        let filter = TypeFilter::only(&state.types);
        loop {
            // After a first copy, our changes that the copy itself wrote are skipped.
            let copied = state.copy.clone().filter(|copy| copy.done);
            if let Some(copy) = &copied {
                state.push_seq = copy.skip_from(state.push_seq);
            }
            let page = self.store.borrow().changes_since_filtered(
                state.push_seq,
                state.batch_records(),
                SYNC_BATCH_BYTES,
                &filter,
            )?;
            if page.last_seq == state.push_seq {
                if let Some(copy) = copied {
                    // The skip moved the checkpoint: keep it, and forget the copy once
                    // pushed past it, so this is written once after a copy.
                    if copy.pushed_past(state.push_seq) {
                        state.copy = None;
                    }
                    self.save_states(vec![(url.to_owned(), state.encode())], true)?;
                }
                return Ok(());
            }
            let mut candidates: Vec<_> = page
                .records
                .into_iter()
                .filter(|record| !pulled.contains(&record.id, &record.meta.version))
                .filter(|record| {
                    !copied
                        .as_ref()
                        .is_some_and(|copy| copy.wrote(record.meta.seq))
                })
                .collect();
            let mut sent = 0;
            if !candidates.is_empty() {
                let offers: Array = candidates
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
                    .fetch(self.post_json(Route::Offer.url(url), body), "offer answer")
                    .await?;
                let want: BTreeSet<String> = Fields::new(&answer, "offer answer")
                    .array("want")?
                    .iter()
                    .filter_map(|id| match id {
                        Value::String(id) => Some(id.clone()),
                        _ => None,
                    })
                    .collect();
                candidates.retain(|record| want.contains(&record.id));
                by_priority(&mut candidates);
                sent = candidates.len();
                if sent > 0 {
                    self.push_records(url, &candidates, &mut state.pull_seq, result)
                        .await?;
                }
            }
            state.push_seq = page.last_seq;
            if copied.is_some_and(|copy| copy.pushed_past(state.push_seq)) {
                state.copy = None;
            }
            self.save_states(vec![(url.to_owned(), state.encode())], true)?;
            self.log(format!(
                "pushed {sent} record(s) to {url} up to our seq {}",
                page.last_seq
            ));
            if !page.more {
                return Ok(());
            }
        }
    }

    /// Pushes `records` in bodies of at most [`SYNC_BATCH_BYTES`] plus one record, so
    /// every body fits [`crate::config::MAX_PUSH_BODY_BYTES`], the least any peer accepts. A record
    /// too large for any peer (stored before the record limit existed) is reported
    /// and not sent, rather than failing every push after it (issue 10).
    async fn push_records(
        &self,
        url: &str,
        records: &[crate::store::Record],
        pull_seq: &mut u64,
        result: &mut PeerSyncResult,
    ) -> Result<(), SyncError> {
        let mut batch = Vec::new();
        let mut bytes = 0;
        for record in records {
            let size = wire_size(record);
            if size > MAX_RECORD_WIRE_BYTES {
                result.rejected.push(format!(
                    "record {:?} takes {size} bytes on the wire, over the limit of {MAX_RECORD_WIRE_BYTES}; not sent to {url}",
                    record.id
                ));
                continue;
            }
            if bytes >= SYNC_BATCH_BYTES {
                self.push_batch(url, &batch, pull_seq, result).await?;
                batch.clear();
                bytes = 0;
            }
            bytes += size;
            batch.push(record.clone());
        }
        if !batch.is_empty() {
            self.push_batch(url, &batch, pull_seq, result).await?;
        }
        Ok(())
    }

    /// `POST /federation/v2/push` of `records` (one batch) and what the peer said. If
    /// the peer's change log had nothing between `pull_seq` and our records, `pull_seq`
    /// moves past them, so they do not come back on the next pull.
    async fn push_batch(
        &self,
        url: &str,
        records: &[crate::store::Record],
        pull_seq: &mut u64,
        result: &mut PeerSyncResult,
    ) -> Result<(), SyncError> {
        let wire: Array = records
            .iter()
            .map(|record| {
                let key = self.author_key_for(&record.meta.version.origin);
                record_to_wire(record, key.as_deref())
            })
            .collect();
        let body = object_value([
            ("instanceId", Value::String(self.instance_id.to_hex())),
            ("records", Value::Array(wire)),
        ]);
        let answer = self
            .fetch(self.post_json(Route::Push.url(url), body), "push answer")
            .await?;
        let fields = Fields::new(&answer, "push answer");
        if let (Some(before), Some(after)) =
            (fields.opt_u64("seq_before")?, fields.opt_u64("seq_after")?)
        {
            if before == *pull_seq && after >= before {
                *pull_seq = after;
            }
        }
        result.nodes_sent += records.len() as u64;
        result.nodes_unchanged += fields.opt_u64("unchanged")?.unwrap_or(0);
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
        Ok(())
    }

    /// First contact or repair: reconcile our set with the peer's, fetch what we lack,
    /// push what it lacks, then set both checkpoints.
    pub(super) async fn reconcile_peer(
        &self,
        url: &str,
        epoch: &str,
        delivered_by_core: bool,
        state: &mut PeerState,
        pulled: &mut PulledVersions,
        result: &mut PeerSyncResult,
    ) -> Result<(), SyncError> {
        let filter = TypeFilter::only(&state.types);
        // Read before the set: a record moved aside after it is missing from a set that
        // still counts it, so the next sync must reconcile again.
        let repairs = self.store.borrow().repairs();
        let held_drops = self.held_usage()?.2.drops;
        let ours = self
            .reconcile_cache
            .get(&self.store, &filter)
            .map_err(|error| match error {
                super::reconcile::CacheError::Store(error) => SyncError::Store(error),
                super::reconcile::CacheError::Reconcile(error) => {
                    SyncError::Invalid(error.to_string())
                }
            })?;
        let types = types_param(state);
        let query = types
            .strip_prefix('&')
            .map_or(String::new(), |types| format!("?{types}"));
        let reconcile_url = format!("{}{query}", Route::Reconcile.url(url));
        let bad =
            |error: super::reconcile::ReconcileError| SyncError::Invalid(format!("{url}: {error}"));
        let (mut initiator, mut message) = ours.initiate().map_err(bad)?;
        let mut their_seq = None;
        loop {
            let request = self
                .signed(ClientRequest::post(
                    &reconcile_url,
                    "application/octet-stream",
                    message,
                ))
                .with_gzip_body();
            let answer = self.send_ok(request).await?;
            let header = |name: &str| {
                answer.header(name).ok_or_else(|| {
                    SyncError::Invalid(format!("the reconcile answer from {url} lacks {name}"))
                })
            };
            if Some(header("x-ark-instance")?) != state.instance_id.as_deref()
                || header("x-ark-epoch")? != epoch
            {
                return Err(SyncError::Invalid(format!(
                    "{url} changed its instance or store epoch during the sync; it starts over next time"
                )));
            }
            if their_seq.is_none() {
                let seq = header("x-ark-last-seq")?;
                their_seq = Some(seq.parse::<u64>().map_err(|_| {
                    SyncError::Invalid(format!("{url}: x-ark-last-seq {seq:?} is not a number"))
                })?);
            }
            match initiator.receive(&answer.body).map_err(bad)? {
                Some(next) => message = next,
                None => break,
            }
        }
        let differences = initiator.finish();
        self.log(format!(
            "reconciled {} record version(s) with {url} in {} round(s): it lacks {}, we lack {}",
            ours.len(),
            differences.rounds,
            differences.have.len(),
            differences.need.len()
        ));
        let fetch = Fetch {
            url,
            types: &types,
            batch_records: state.batch_records(),
            delivered_by_core,
        };
        self.fetch_versions(&fetch, differences.need, pulled, result)
            .await?;

        // Push what the peer lacks, unless a newer version just came from it or the
        // record changed since our set was read (the feed pushes that later).
        let mut ids = Vec::new();
        for digest in &differences.have {
            if let Some(entry) = ours.entry(digest) {
                if !pulled.has_newer(&entry.id, &entry.version) {
                    ids.push((entry.id.as_str(), entry.version));
                }
            }
        }
        let id_list: Vec<&str> = ids.iter().map(|(id, _)| *id).collect();
        let mut records = self.store.borrow().records(&id_list)?;
        let expected: BTreeMap<&str, Version> = ids.into_iter().collect();
        records.retain(|record| expected.get(record.id.as_str()) == Some(&record.meta.version));
        by_priority(&mut records);
        let mut pull_seq = their_seq.unwrap_or(0);
        let mut start = 0;
        while start < records.len() {
            let mut end = start;
            let mut bytes = 0;
            while end < records.len()
                && end - start < state.batch_records()
                && (bytes < SYNC_BATCH_BYTES || end == start)
            {
                bytes += wire_size(&records[end]);
                end += 1;
            }
            self.push_records(url, &records[start..end], &mut pull_seq, result)
                .await?;
            start = end;
        }

        state.epoch = Some(epoch.to_owned());
        state.repairs = repairs;
        state.held_drops = held_drops;
        state.pull_seq = pull_seq;
        state.push_seq = ours.last_seq;
        self.save_states(vec![(url.to_owned(), state.encode())], true)?;
        self.note_refetched()?;
        Ok(())
    }

    /// Fetches the records behind `digests` (the peer sends the highest priority
    /// first) and applies each answer in one transaction.
    async fn fetch_versions(
        &self,
        fetch: &Fetch<'_>,
        digests: Vec<ItemDigest>,
        pulled: &mut PulledVersions,
        result: &mut PeerSyncResult,
    ) -> Result<(), SyncError> {
        let Fetch {
            url,
            types,
            batch_records,
            delivered_by_core,
        } = *fetch;
        let fetch_url = format!(
            "{}?limit={batch_records}&max_bytes={SYNC_BATCH_BYTES}{types}",
            Route::Fetch.url(url)
        );
        // The first request lists everything (up to a limit) so the peer can say which
        // records carry a priority; later ones send one batch of digests each, in the
        // order the peer ranked them.
        let mut remaining: Vec<ItemDigest> = digests;
        let mut first = true;
        while !remaining.is_empty() {
            let asked = if first {
                remaining.len().min(FETCH_DIGESTS_PER_REQUEST)
            } else {
                remaining.len().min(batch_records)
            };
            let body: Vec<u8> = remaining[..asked].iter().flatten().copied().collect();
            let asked_for: BTreeSet<ItemDigest> = remaining[..asked].iter().copied().collect();
            let rank = if first && asked > batch_records {
                "&rank=1"
            } else {
                ""
            };
            let request = self
                .signed(ClientRequest::post(
                    &format!("{fetch_url}{rank}"),
                    "application/octet-stream",
                    body,
                ))
                .with_gzip_body();
            let answer = self.send_ok(request).await?;
            let object = parse_object(&answer.body, &format!("fetch answer from {url}"))?;
            let fields = Fields::new(&object, "fetch answer");
            let values = fields.array("records")?;
            let more = fields.opt_bool("more")?.unwrap_or(false);
            let mut delivered = BTreeSet::new();
            for (index, value) in values.iter().enumerate() {
                let context = format!("fetched record {} from {url}", index + 1);
                if let Ok((record, _)) = record_from_wire(value, &context) {
                    delivered.insert(item_digest(
                        &record.id,
                        &record.version,
                        &content_hash(&record),
                    ));
                }
            }
            let batch = self.verified_records(values, url, delivered_by_core, result);
            if !batch.0.is_empty() || !batch.1.is_empty() {
                self.apply_batch(url, &batch, None, pulled, result)?;
            }
            if !rank.is_empty() {
                let ranked: Vec<usize> = fields
                    .opt_array("ranked")?
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|index| match index {
                        Value::Number(miniserde::json::Number::U64(index)) => Some(*index as usize),
                        _ => None,
                    })
                    .filter(|index| *index < asked)
                    .collect();
                if !ranked.is_empty() {
                    let mut order: Vec<ItemDigest> =
                        ranked.iter().map(|index| remaining[*index]).collect();
                    let front: BTreeSet<ItemDigest> = order.iter().copied().collect();
                    order.extend(remaining.iter().filter(|digest| !front.contains(*digest)));
                    remaining = order;
                }
            }
            let progressed = remaining.iter().any(|digest| delivered.contains(digest));
            if !more {
                // What was asked for and not delivered was replaced at the peer since;
                // the feed brings the newer versions.
                remaining.retain(|digest| !asked_for.contains(digest));
            } else if !progressed {
                return Err(SyncError::Invalid(format!(
                    "{url} answered a fetch with none of the records asked for"
                )));
            }
            remaining.retain(|digest| !delivered.contains(digest));
            first = false;
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
