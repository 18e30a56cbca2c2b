//! Drives the first copy of a peer's lattice (`core::copy` decides): its changes feed
//! from the copy's checkpoint to the end, page by page, each page's records checked on
//! threads of their own (`verify::check_apart`) and applied in one transaction together
//! with the copy's progress.
//!
//! # Implementation
//!
//! Three pages are under way at once: one applied on the node's thread, the next
//! checked on threads of their own, the one after that asked for, so the peer reads and
//! compresses it meanwhile. Checking signatures is most of a copy's work (issue 13);
//! this keeps both cores at it while the store is written. A page waiting for its turn
//! stays in its wire form, a page's values are dropped before its records are written,
//! and a page's check starts only once the one before finished: the pulling node's
//! peak RSS stays within the 32 MB goal (`cargo bench --bench perf`).

use futures_lite::future;
use miniserde::json::Object;

use super::client::{PeerSyncResult, SyncError, Syncer};
use super::core::{CopyFeed, CopyPage, PageStep};
use super::delta::{PulledVersions, record_context};
use super::held::Held;
use super::peer::PeerState;
use super::verify::{CheckingPage, check_apart};
use crate::config::TrustMode;
use crate::http::ClientResponse;
use crate::protocol::{COMPACT_PAGE_TYPE, expand_page, is_compact_page, parse_object};
use crate::store::RemoteRecord;

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
    pub(super) async fn copy_peer(
        &self,
        url: &str,
        epoch: &str,
        delivered_by_core: bool,
        repairs: u64,
        state: &mut PeerState,
        result: &mut PeerSyncResult,
    ) -> Result<(), SyncError> {
        let (mut copy, new) = CopyFeed::begin(url, epoch, state);
        if new {
            // Held records dropped for room before the copy began come again with it
            // (`sync::held_room`); those dropped during it are fetched later.
            state.held_drops = self.held_usage()?.2.drops;
        }
        self.log(format!(
            "first copy of {url}'s lattice: its feed after sequence {}",
            copy.begun_at()
        ));
        let open = self.trust_mode == TrustMode::Open;
        let mut fetched = match copy.next_request() {
            Some(page_url) => Some(self.fetch_page(&page_url).await?),
            None => None,
        };
        let mut checking: Option<(PageStep, CheckingPage)> = None;
        loop {
            let read = match fetched.take() {
                Some(page) => Some(self.read_copy_page(&mut copy, url, page, state)?),
                None => None,
            };
            // The page before is checked to its end before this one's check starts: at
            // most one page's threads at a time, so their memory is not kept twice.
            let before = match checking.take() {
                Some((step, page)) => Some((step, page.checked().await)),
                None if read.is_none() => break,
                None => None,
            };
            let next_url = copy.next_request();
            checking = read.map(|page| {
                let check = check_apart(page.records, record_context(url), open);
                (page.step, check)
            });
            let apply = async {
                let Some((step, (values, checked))) = before else {
                    return Ok(());
                };
                let batch = self.judged_records(checked, &values, url, delivered_by_core, result);
                // The page's wire form is not needed any more: gone before the store is
                // written, which is when the copy needs the most memory.
                drop(values);
                self.apply_copy_page(&mut copy, url, &batch, step, state, result)
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
        let seq = copy.finish(state, repairs)?;
        self.log(format!(
            "first copy of {url} done at its sequence {seq}; offering ours"
        ));
        self.save_states(vec![(url.to_owned(), state.encode())], true)?;
        self.note_refetched()?;
        Ok(())
    }

    /// Reads one page of the copy and hands it to `copy`. When the page says the peer's
    /// store changed, the copy forgotten in `state` is saved here, as the sync fails.
    fn read_copy_page(
        &self,
        copy: &mut CopyFeed<'_>,
        url: &str,
        page: ClientResponse,
        state: &mut PeerState,
    ) -> Result<CopyPage, SyncError> {
        let what = format!("changes page from {url}");
        let read = read_page(&page, &what).and_then(|page| copy.on_page(page, state));
        if read.is_err() && state.copy.is_none() {
            self.save_states(vec![(url.to_owned(), state.encode())], true)?;
        }
        read
    }

    /// Applies one judged page of the copy (`step` says how it moved the copy on),
    /// committing the copy's progress in the same transaction; `state` takes the
    /// committed peer state.
    fn apply_copy_page(
        &self,
        copy: &mut CopyFeed<'_>,
        url: &str,
        batch: &(Vec<RemoteRecord>, Vec<Held>),
        step: PageStep,
        state: &mut PeerState,
        result: &mut PeerSyncResult,
    ) -> Result<(), SyncError> {
        let committed = copy.to_commit(step, state);
        // The page's new records take our next sequence numbers, in one transaction on
        // this thread: what lies between `before` and `after` is the copy's.
        let before = self.store.borrow().last_seq();
        self.apply_batch(
            url,
            batch,
            Some(&committed),
            &mut PulledVersions::default(),
            result,
        )?;
        let after = self.store.borrow().last_seq();
        *state = copy.on_applied(committed, before, after)?;
        Ok(())
    }
}

/// Reads a changes page in the compact form or in JSON.
fn read_page(page: &ClientResponse, what: &str) -> Result<Object, SyncError> {
    Ok(if is_compact_page(page.header("content-type")) {
        expand_page(&page.body, what)?
    } else {
        parse_object(&page.body, what)?
    })
}
