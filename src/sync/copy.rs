//! Runs the first copy of a peer's lattice (`first_copy` decides): its changes feed
//! from the copy's checkpoint to the end, page by page, each page verified record by
//! record and applied in one transaction together with the checkpoint.

use futures_lite::future;
use miniserde::json::{Object, Value};

use super::client::{During, PeerSyncResult, SyncError, Syncer};
use super::delta::{PulledVersions, types_param};
use super::first_copy::{CopyProgress, PageStep};
use super::peer::PeerState;
use crate::config::SYNC_BATCH_BYTES;
use crate::protocol::{
    COMPACT_PAGE_TYPE, Fields, Route, expand_page, is_compact_page, parse_object,
};

impl Syncer {
    /// A changes page, asked for in the compact form (`protocol::page`: raw signatures,
    /// each author's key once, about 9 bytes a record less after gzip); a peer that
    /// answers JSON, as older ark-lattice nodes do, is read as before.
    async fn fetch_page(&self, page_url: &str) -> Result<Object, SyncError> {
        let request = self.get(page_url).with_header("accept", COMPACT_PAGE_TYPE);
        let response = self.send_ok(request).await?;
        let what = format!("changes page from {page_url}");
        Ok(if is_compact_page(response.header("content-type")) {
            expand_page(&response.body, &what)?
        } else {
            parse_object(&response.body, &what)?
        })
    }

    /// Pulls the peer's feed into our store from where an earlier copy of the same peer
    /// store stopped (or from the start), then sets both checkpoints: pull at the end of
    /// the feed, push at 0 with the copy's own records skipped (`push_feed` offers the
    /// rest). `repairs` is our store's repair count read before the copy began.
    pub(super) async fn copy_peer(
        &self,
        url: &str,
        epoch: &str,
        delivered_by_core: bool,
        repairs: u64,
        state: &mut PeerState,
        result: &mut PeerSyncResult,
    ) -> Result<(), SyncError> {
        let mut copy = self.copy_to_resume(epoch, state)?;
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
        let mut page = if copy.done {
            None
        } else {
            Some(self.fetch_page(&page_url(copy.seq)).await?)
        };
        while let Some(current) = page.take() {
            let fields = Fields::new(&current, "changes page");
            self.check_copy_origin(url, epoch, &fields, state)?;
            let values = fields.array("records")?;
            let step = copy
                .step(
                    fields.u64("last_seq")?,
                    fields.opt_bool("more")?.unwrap_or(false),
                    values.len(),
                )
                .map_err(|error| SyncError::CopyPage {
                    url: url.to_owned(),
                    error,
                })?;
            let mut next = copy.clone();
            match step {
                PageStep::Next { seq } => next.seq = seq,
                PageStep::Last { seq } => {
                    next.seq = seq;
                    next.done = true;
                }
            }
            let apply =
                async { self.apply_copy_page(url, values, next, delivered_by_core, state, result) };
            // The next page is asked for before this one is verified and applied, so the
            // peer reads and compresses it while we work: the request goes out when
            // `zip` first polls it, then the work runs to its end.
            if let PageStep::Next { seq } = step {
                let (fetched, applied) = future::zip(self.fetch_page(&page_url(seq)), apply).await;
                applied?;
                page = Some(fetched?);
            } else {
                apply.await?;
            }
            copy = state.copy.clone().unwrap_or_default();
        }
        self.finish_copy(url, epoch, copy, repairs, state)
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
        Err(SyncError::ChangedDuring {
            url: url.to_owned(),
            during: During::FirstCopy,
        })
    }

    /// Verifies and applies one page of the copy, saving `next` as the copy's progress in
    /// the same transaction; `state` takes the saved peer state.
    fn apply_copy_page(
        &self,
        url: &str,
        values: &[Value],
        mut next: CopyProgress,
        delivered_by_core: bool,
        state: &mut PeerState,
        result: &mut PeerSyncResult,
    ) -> Result<(), SyncError> {
        let batch = self.verified_records(values, url, delivered_by_core, result);
        let mut next_state = state.clone();
        next_state.copy = Some(next.clone());
        // The page's new records take our next sequence numbers, in one transaction on
        // this thread: what lies between `before` and `after` is the copy's.
        let before = self.store.borrow().last_seq();
        self.apply_batch(
            url,
            &batch,
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
