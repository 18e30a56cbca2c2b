//! Runs the first copy of a peer's lattice (`first_copy` decides): its changes feed
//! from the copy's checkpoint to the end, page by page, each page verified record by
//! record and applied in one transaction together with the checkpoint.

use futures_lite::future;
use miniserde::json::{Array, Object, Value};

use super::client::{PeerSyncResult, SyncError, Syncer};
use super::delta::{PulledVersions, record_context, types_param};
use super::first_copy::{CopyProgress, PageStep};
use super::held::Held;
use super::peer::PeerState;
use super::verify::{CheckingPage, check_apart};
use crate::config::{SYNC_BATCH_BYTES, TrustMode};
use crate::http::ClientResponse;
use crate::protocol::{
    COMPACT_PAGE_TYPE, Fields, Route, expand_page, is_compact_page, parse_object,
};
use crate::store::RemoteRecord;

/// Reads a changes page in the compact form or in JSON.
fn read_page(page: &ClientResponse, what: &str) -> Result<Object, SyncError> {
    Ok(if is_compact_page(page.header("content-type")) {
        expand_page(&page.body, what)?
    } else {
        parse_object(&page.body, what)?
    })
}

impl Syncer {
    /// A changes page, asked for in the compact form (`protocol::page`: raw signatures,
    /// each author's key once, about 9 bytes a record less after gzip); a peer that
    /// answers JSON, as older ark-lattice nodes do, is read as before. The answer is
    /// read by [`read_page`] when its turn comes: a page waiting in its wire form takes
    /// a fraction of the memory of its records read.
    async fn fetch_page(&self, page_url: &str) -> Result<ClientResponse, SyncError> {
        let request = self.get(page_url).with_header("accept", COMPACT_PAGE_TYPE);
        self.send_ok(request).await
    }

    /// Pulls the peer's feed into our store from where an earlier copy of the same peer
    /// store stopped (or from the start), then sets both checkpoints: pull at the end of
    /// the feed, push at 0 with the copy's own records skipped (`push_feed` offers the
    /// rest). `repairs` is our store's repair count read before the copy began.
    ///
    /// Three pages are under way at once: one applied on this thread, the next checked
    /// on threads of its own (`verify::check_apart`), the one after that asked for, so
    /// the peer reads and compresses it meanwhile. Checking signatures is most of a
    /// copy's work (issue 13); this keeps both cores at it while the store is written.
    pub(super) async fn copy_peer(
        &self,
        url: &str,
        epoch: &str,
        delivered_by_core: bool,
        repairs: u64,
        state: &mut PeerState,
        result: &mut PeerSyncResult,
    ) -> Result<(), SyncError> {
        let copy = self.copy_to_resume(epoch, state)?;
        self.log(format!(
            "first copy of {url}'s lattice: its feed after sequence {}",
            copy.seq
        ));
        let types = types_param(state);
        let batch_records = state.batch_records();
        let page_url = |seq: u64| {
            format!(
                "{}?after={seq}&limit={batch_records}&max_bytes={SYNC_BATCH_BYTES}{types}",
                Route::Changes.url(url)
            )
        };
        let mut read_to = copy.clone();
        let mut fetched = if copy.done {
            None
        } else {
            Some(self.fetch_page(&page_url(copy.seq)).await?)
        };
        let open = self.trust_mode == TrustMode::Open;
        let mut checking: Option<(PageStep, CheckingPage)> = None;
        loop {
            let read = match fetched.take() {
                Some(page) => Some(self.read_copy_page(url, epoch, page, &mut read_to, state)?),
                None => None,
            };
            // The page before is checked to its end before this one's check starts: at
            // most one page's threads at a time, so their memory is not kept twice.
            let before = match checking.take() {
                Some((step, page)) => Some((step, page.checked().await)),
                None if read.is_none() => break,
                None => None,
            };
            let next_url = match &read {
                Some((PageStep::Next { seq }, _)) => Some(page_url(*seq)),
                _ => None,
            };
            checking =
                read.map(|(step, values)| (step, check_apart(values, record_context(url), open)));
            let apply = async {
                let Some((step, (values, checked))) = before else {
                    return Ok(());
                };
                let batch = self.judged_records(checked, &values, url, delivered_by_core, result);
                // The page's wire form is not needed any more: gone before the store is
                // written, which is when the copy needs the most memory.
                drop(values);
                self.apply_copy_page(url, &batch, step, &copy, state, result)
            };
            // The request for the page after goes out when `zip` first polls it, before
            // the page before is applied.
            if let Some(next_url) = next_url {
                let (next, applied) = future::zip(self.fetch_page(&next_url), apply).await;
                applied?;
                fetched = Some(next?);
            } else {
                apply.await?;
            }
        }
        let copy = state.copy.clone().unwrap_or(copy);
        self.finish_copy(url, epoch, copy, repairs, state)
    }

    /// Reads one page of the copy: checks where it comes from and how it moves the copy
    /// on from `read_to` (which it moves); the answer has its records, unchecked.
    fn read_copy_page(
        &self,
        url: &str,
        epoch: &str,
        page: ClientResponse,
        read_to: &mut CopyProgress,
        state: &mut PeerState,
    ) -> Result<(PageStep, Array), SyncError> {
        let what = format!("changes page after sequence {} from {url}", read_to.seq);
        let mut page = read_page(&page, &what)?;
        let fields = Fields::new(&page, "changes page");
        self.check_copy_origin(url, epoch, &fields, state)?;
        let step = read_to
            .step(
                fields.u64("last_seq")?,
                fields.opt_bool("more")?.unwrap_or(false),
                fields.array("records")?.len(),
            )
            .map_err(|error| SyncError::Invalid(format!("{url}: {error}")))?;
        let (PageStep::Next { seq } | PageStep::Last { seq }) = step;
        read_to.seq = seq;
        let Some(Value::Array(values)) = page.remove("records") else {
            unreachable!("`records` was read as an array above");
        };
        Ok((step, values))
    }

    /// The copy to go on with: the one an earlier sync left for this store of the peer,
    /// or a new one from the start of its feed.
    fn copy_to_resume(
        &self,
        epoch: &str,
        state: &mut PeerState,
    ) -> Result<CopyProgress, SyncError> {
        Ok(match state.copy.take() {
            Some(copy) if copy.epoch == epoch && !copy.done => copy,
            _ => {
                // Held records dropped for room before the copy began come again with
                // it (`sync::held_room`); those dropped during it are fetched later.
                state.held_drops = self.held_usage()?.2.drops;
                CopyProgress::new(epoch)
            }
        })
    }

    /// Fails the copy when a page comes from another instance or store epoch than the
    /// one the copy began with, forgetting the copy so the next sync starts over.
    fn check_copy_origin(
        &self,
        url: &str,
        epoch: &str,
        fields: &Fields<'_>,
        state: &mut PeerState,
    ) -> Result<(), SyncError> {
        if Some(fields.str("instanceId")?) == state.instance_id.as_deref()
            && fields.str("epoch")? == epoch
        {
            return Ok(());
        }
        state.copy = None;
        self.save_states(vec![(url.to_owned(), state.encode())], true)?;
        Err(SyncError::Invalid(format!(
            "{url} changed its instance or store epoch during the first copy; it starts over next time"
        )))
    }

    /// Applies one judged page of the copy (`step` says how it moves the copy on),
    /// saving the copy's progress in the same transaction; `state` takes the saved peer
    /// state. `first` is the copy as it began, before any page of this sync.
    fn apply_copy_page(
        &self,
        url: &str,
        batch: &(Vec<RemoteRecord>, Vec<Held>),
        step: PageStep,
        first: &CopyProgress,
        state: &mut PeerState,
        result: &mut PeerSyncResult,
    ) -> Result<(), SyncError> {
        let mut next = state.copy.clone().unwrap_or_else(|| first.clone());
        match step {
            PageStep::Next { seq } => next.seq = seq,
            PageStep::Last { seq } => {
                next.seq = seq;
                next.done = true;
            }
        }
        let mut next_state = state.clone();
        next_state.copy = Some(next.clone());
        // The page's new records take our next sequence numbers, in one transaction on
        // this thread: what lies between `before` and `after` is the copy's.
        let before = self.store.borrow().last_seq();
        self.apply_batch(
            url,
            batch,
            Some(&next_state),
            &mut PulledVersions::default(),
            result,
        )?;
        let after = self.store.borrow().last_seq();
        next.note_applied(before, after);
        next_state.copy = Some(next);
        *state = next_state;
        Ok(())
    }

    /// Sets both checkpoints once the copy is done: pull at the end of the peer's feed,
    /// push at 0 (the copy's own records are skipped by `push_feed`).
    fn finish_copy(
        &self,
        url: &str,
        epoch: &str,
        copy: CopyProgress,
        repairs: u64,
        state: &mut PeerState,
    ) -> Result<(), SyncError> {
        self.log(format!(
            "first copy of {url} done at its sequence {}; offering ours",
            copy.seq
        ));
        state.epoch = Some(epoch.to_owned());
        state.pull_seq = copy.seq;
        state.push_seq = 0;
        state.repairs = repairs;
        state.copy = Some(copy);
        self.save_states(vec![(url.to_owned(), state.encode())], true)?;
        self.note_refetched()?;
        Ok(())
    }
}
