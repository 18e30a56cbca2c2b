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

use std::time::Duration;

use futures_lite::future;
use miniserde::json::{Array, Value};

use super::client::{PeerSyncResult, SyncError, Syncer, object_value};
pub(super) use super::core::PulledVersions;
use super::core::{
    FetchQueue, PullFeed, PushFeed, Rounds, apply_push_answer, push_batches, push_slices,
    still_to_push, versions_to_push,
};
use super::held::{Held, Refusal};
use super::peer::PeerState;
use super::reconcile::{CacheError, Differences, ItemDigest, ReconcileSet};
use super::trust_book;
use super::verify::{Checked, check_page};
use crate::config::SYNC_BATCH_BYTES;
use crate::config::TrustMode;
use crate::http::{ClientRequest, ClientResponse};
use crate::model::InstanceId;
use crate::protocol::{
    RECONCILE_CONTENT_TYPE, ReconcileAnswer, ReconcileRequest, Route, parse_object, record_to_wire,
    types_to_query,
};
use crate::store::{ApplyOutcome, RemoteRecord, TypeFilter};
use crate::trust::Tier;

/// Names record `index` (from 0) of a page from `url` in reasons.
pub(super) fn record_context(url: &str) -> impl Fn(usize) -> String + Send + Sync + 'static {
    let url = url.to_owned();
    move |index| format!("record {} from {url}", index + 1)
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

    /// The reconciliation set of `filter`'s records as the store holds them now: the
    /// one kept in [`Syncer::reconcile_cache`] while the store's sequence is the same,
    /// else read and built again.
    pub(crate) fn reconcile_set(
        &self,
        filter: &TypeFilter,
    ) -> Result<std::rc::Rc<ReconcileSet>, CacheError> {
        // The durable sequence, which the snapshot carries (`store::durability`).
        let last_seq = self.store.borrow().served_seq();
        if let Some(set) = self.reconcile_cache.current(last_seq, filter) {
            return Ok(set);
        }
        let snapshot = self
            .store
            .borrow()
            .version_snapshot(filter)
            .map_err(CacheError::Store)?;
        self.reconcile_cache
            .keep(snapshot, filter.clone())
            .map_err(CacheError::Reconcile)
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
        let context = record_context(url);
        let checked = check_page(values, &context, self.trust_mode == TrustMode::Open);
        self.judged_records(checked, values, url, delivered_by_core, result)
    }

    /// Judges the records of a page that [`check_page`] checked (`checked` in the order
    /// of `values`), as [`Syncer::verified_records`] does.
    pub(super) fn judged_records(
        &self,
        checked: Vec<Checked>,
        values: &[Value],
        url: &str,
        delivered_by_core: bool,
        result: &mut PeerSyncResult,
    ) -> (Vec<RemoteRecord>, Vec<Held>) {
        let context = record_context(url);
        let mut records = Vec::with_capacity(values.len());
        let mut held = Vec::new();
        for (index, (checked, value)) in checked.into_iter().zip(values).enumerate() {
            let context = context(index);
            let signed = match checked {
                Checked::Verified(record) => Ok(record),
                Checked::NeedsKey(record) => self.signed_with_known_key(record, &context),
                Checked::Refused(reason) => Err(reason),
            };
            let judged = signed
                .map_err(|reason| self.refused(reason))
                .and_then(|record| self.judged(record, value, &context, url, delivered_by_core));
            match judged {
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
        batch: &(Vec<RemoteRecord>, Vec<Held>),
        state: Option<&PeerState>,
        pulled: &mut PulledVersions,
        result: &mut PeerSyncResult,
    ) -> Result<(), SyncError> {
        let outcome = self.apply_verified(url, batch, state, pulled)?;
        result.count_applied(&outcome);
        Ok(())
    }

    /// Applies verified records in one transaction, with `state` when a checkpoint moves
    /// with them, and notes them as pulled from `url`.
    fn apply_verified(
        &self,
        url: &str,
        (records, held): &(Vec<RemoteRecord>, Vec<Held>),
        state: Option<&PeerState>,
        pulled: &mut PulledVersions,
    ) -> Result<ApplyOutcome, SyncError> {
        let encoded = state.map(PeerState::encode);
        let outcome = self.apply(records, encoded.as_deref().map(|bytes| (url, bytes)), held)?;
        if state.is_some() {
            // The transaction wrote the newer state; an older copy must not follow it.
            self.unsaved.borrow_mut().remove(url);
        }
        for record in records {
            pulled.note(record);
        }
        self.log(format!(
            "applied {} record(s) from {url}: {} new, {} unchanged, {} stale",
            records.len(),
            outcome.applied,
            outcome.unchanged,
            outcome.stale
        ));
        Ok(outcome)
    }

    /// The pull half of the steady state, run by [`PullFeed`]: this moves the pages and
    /// makes the store calls.
    async fn pull_feed(
        &self,
        feed: &Feed<'_>,
        state: &mut PeerState,
        pulled: &mut PulledVersions,
        result: &mut PeerSyncResult,
    ) -> Result<(), SyncError> {
        let url = feed.url;
        let mut machine = PullFeed::new(url, state, feed.wait, feed.info_checked);
        while let Some(request) = machine.next_request() {
            let answer = if request.long_poll {
                // A change here (a local write, or records from another peer) while the
                // peer holds our long-poll is for the peer too: give up the wait and go
                // on to push it now, rather than when the wait ends (issue 13: up to
                // 20 s late). Nothing was applied yet; the next sync pulls again.
                let changed_here = self.store.borrow().changed().listen();
                let held = future::or(
                    async { Some(self.fetch(self.get(&request.url), "changes page").await) },
                    async {
                        changed_here.await;
                        None
                    },
                )
                .await;
                match held {
                    Some(answer) => answer,
                    None => {
                        machine.on_wait_given_up();
                        return Ok(());
                    }
                }
            } else {
                self.fetch(self.get(&request.url), "changes page").await
            };
            let page = answer.map_err(|error| machine.on_failure(error))?;
            let values = machine.on_page(&page)?;
            let batch = self.verified_records(values, url, feed.delivered_by_core, result);
            if let Some(next) = machine.on_verified(batch.0.len(), batch.1.len()) {
                let outcome = self
                    .apply_verified(url, &batch, Some(&next), pulled)
                    .map_err(|error| machine.on_failure(error))?;
                machine.on_applied(&outcome, result);
            }
        }
        Ok(())
    }

    /// Offers our changes after `push_seq` page by page and pushes what the peer asks
    /// for, run by [`PushFeed`]: this reads the store and moves the bytes.
    pub(super) async fn push_feed(
        &self,
        url: &str,
        state: &mut PeerState,
        pulled: &PulledVersions,
        result: &mut PeerSyncResult,
    ) -> Result<(), SyncError> {
        let mut machine = PushFeed::new(url, self.instance_id.to_hex(), state, pulled);
        while let Some(read) = machine.next_read() {
            let page = self.read_changes(&read)?;
            if let Some(offer) = machine.on_changes(page) {
                let answer = self
                    .fetch(self.post_json(Route::Offer.url(url), offer), "offer answer")
                    .await
                    .map_err(|error| machine.on_failure(error))?;
                machine.on_offer_answer(&answer, result)?;
                while let Some(batch) = machine.next_batch() {
                    let answer = self
                        .send_push(url, batch)
                        .await
                        .map_err(|error| machine.on_failure(error))?;
                    machine.on_push_answer(&answer, result)?;
                }
            }
            if let Some(state) = machine.to_save() {
                self.save_states(vec![(url.to_owned(), state.encode())], true)?;
                if let Some((sent, last_seq)) = machine.pushed() {
                    self.log(format!(
                        "pushed {sent} record(s) to {url} up to our seq {last_seq}"
                    ));
                }
                machine.on_saved();
            }
        }
        Ok(())
    }

    /// Pushes `records` in bodies every peer accepts ([`push_batches`]), one at a time.
    async fn push_records(
        &self,
        url: &str,
        records: &[crate::store::Record],
        pull_seq: &mut u64,
        result: &mut PeerSyncResult,
    ) -> Result<(), SyncError> {
        for batch in push_batches(url, records.to_vec(), result) {
            let answer = self.send_push(url, &batch).await?;
            apply_push_answer(url, &answer, batch.len(), pull_seq, result)?;
        }
        Ok(())
    }

    /// `POST /federation/v2/push` of `records` (one body), each with its author's key,
    /// and the peer's answer.
    async fn send_push(
        &self,
        url: &str,
        records: &[crate::store::Record],
    ) -> Result<miniserde::json::Object, SyncError> {
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
        self.fetch(self.post_json(Route::Push.url(url), body), "push answer")
            .await
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
        let ours = self.reconcile_set(&filter).map_err(|error| match error {
            CacheError::Store(error) => SyncError::Store(error),
            CacheError::Reconcile(error) => SyncError::Reconcile {
                url: url.to_owned(),
                error,
            },
        })?;
        let types = types_param(state);
        let (differences, their_seq) = self
            .reconcile_rounds(
                url,
                &state.types,
                &ours,
                state.instance_id.as_deref(),
                epoch,
            )
            .await?;
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
        let versions = versions_to_push(&differences.have, &ours, pulled);
        let ids: Vec<&str> = versions.iter().map(|(id, _)| *id).collect();
        let records = still_to_push(self.store.borrow().records(&ids)?, &versions);
        let mut pull_seq = their_seq;
        for slice in push_slices(&records, state.batch_records()) {
            self.push_records(url, &records[slice], &mut pull_seq, result)
                .await?;
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

    /// The rounds of a reconciliation of `ours` with the peer, run by [`Rounds`]: the
    /// differences and the peer's change sequence as of its first answer.
    async fn reconcile_rounds(
        &self,
        url: &str,
        types: &[String],
        ours: &ReconcileSet,
        instance_id: Option<&str>,
        epoch: &str,
    ) -> Result<(Differences, u64), SyncError> {
        let (mut rounds, message) = Rounds::start(url, ours, instance_id, epoch)?;
        let mut request = ReconcileRequest {
            types: types.to_vec(),
            message,
        };
        let reconcile_url = format!("{}{}", Route::Reconcile.url(url), request.query());
        let what = format!("reconcile answer from {url}");
        loop {
            let sent = self
                .signed(ClientRequest::post(
                    &reconcile_url,
                    RECONCILE_CONTENT_TYPE,
                    request.message,
                ))
                .with_gzip_body();
            let answer = self.send_ok(sent).await?;
            let read = ReconcileAnswer::read(|name| answer.header(name), &answer.body, &what)?;
            match rounds.on_answer(read)? {
                Some(next) => request.message = next,
                None => return Ok(rounds.finish()),
            }
        }
    }

    /// Fetches the records behind `digests` (the peer sends the highest priority
    /// first) and applies each answer in one transaction; [`FetchQueue`] says what to
    /// ask for next.
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
        let mut queue = FetchQueue::new(url, digests, batch_records);
        while let Some(request) = queue.next_request() {
            let rank = if request.rank { "&rank=1" } else { "" };
            let request = self
                .signed(ClientRequest::post(
                    &format!("{fetch_url}{rank}"),
                    "application/octet-stream",
                    request.body,
                ))
                .with_gzip_body();
            let answer = self
                .send_ok(request)
                .await
                .map_err(|error| queue.on_failure(error))?;
            let object = parse_object(&answer.body, &format!("fetch answer from {url}"))
                .map_err(|error| queue.on_failure(error.into()))?;
            let values = queue.on_answer(&object)?;
            let batch = self.verified_records(values, url, delivered_by_core, result);
            if !batch.0.is_empty() || !batch.1.is_empty() {
                self.apply_batch(url, &batch, None, pulled, result)
                    .map_err(|error| queue.on_failure(error))?;
            }
            queue.on_applied()?;
        }
        Ok(())
    }
}
