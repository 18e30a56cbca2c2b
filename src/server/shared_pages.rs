//! Changes pages shared by every request that asks for the same page while the store is
//! unchanged. When a commit wakes a hub's thousand watching spokes, all waiting at one
//! feed position, the page is read, encoded and compressed once, and every answer sends
//! the same bytes (issue 13). What a page holds is decided by the store and
//! `delta_api`; sending it is `http`'s (`Body::Shared`).
//!
//! # Implementation
//!
//! A page is named by what its request asked for ([`PageRequest`]: position, limits,
//! type filter, JSON or compact form) and is good only at the store's write count it was read at
//! (`Store::writes`, which every committed transaction raises): the first lookup at a
//! new count drops every page kept. Nothing else goes into a page: its records, their
//! author keys and the epoch come from the store, and the instance id never changes.
//!
//! Before this, each woken long-poll read its own page and the HTTP layer compressed
//! each answer: 1,000 reads, encodings and deflate states for one commit (the bench's
//! changed-records rate was 21 records/s), and hyper copied each answer into a
//! per-connection buffer that kept its size.
//!
//! At most [`MAX_PAGES`] pages and [`MAX_BYTES`] bytes (uncompressed) are kept; a page
//! larger than that is sent but not kept. Answers still being sent hold their page
//! after it leaves here, so the bound is on what waits for a next request, not on
//! what is in flight.

use std::collections::VecDeque;

use crate::http::SharedBody;
use crate::store::TypeFilter;

/// Pages kept at one store write count: the positions spokes wait at after a commit are
/// few (most are at the end of the feed, some a page or two behind).
pub const MAX_PAGES: usize = 16;

/// Bytes of pages kept: four default-sized pages (`SYNC_BATCH_BYTES`).
pub const MAX_BYTES: usize = 4 * crate::config::SYNC_BATCH_BYTES;

/// How a page is written: JSON (compressed by the server if the client accepts gzip),
/// or the compact form (`protocol::page`), compressed by `delta_api` or not at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageForm {
    Json,
    Compact,
    CompactGzip,
}

/// What a changes request asked for; two requests asking the same get the same page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    pub after: u64,
    pub limit: usize,
    pub max_bytes: usize,
    pub filter: TypeFilter,
    pub form: PageForm,
}

/// A page as sent, and whether it is the empty page at the end of the feed (which a
/// long-poll waits past rather than answers with).
#[derive(Debug, Clone)]
pub struct SharedPage {
    pub body: SharedBody,
    pub at_end: bool,
}

/// The pages kept at the store's current write count, and how often pages were read
/// or shared since the server started (for `/metrics`).
#[derive(Debug, Default)]
pub struct SharedPages {
    writes: u64,
    pages: VecDeque<(PageRequest, SharedPage)>,
    bytes: usize,
    read: u64,
    shared: u64,
}

impl SharedPages {
    /// The page for `request` read at store write count `writes`, if one is kept.
    pub fn get(&mut self, writes: u64, request: &PageRequest) -> Option<SharedPage> {
        self.forget_before(writes);
        let page = self
            .pages
            .iter()
            .find(|(asked, _)| asked == request)
            .map(|(_, page)| page.clone());
        if page.is_some() {
            self.shared += 1;
        }
        page
    }

    /// Keeps the page just read for `request` at store write count `writes`, making
    /// room by dropping the oldest pages.
    pub fn keep(&mut self, writes: u64, request: PageRequest, page: SharedPage) {
        self.read += 1;
        self.forget_before(writes);
        if writes != self.writes || page.body.len() > MAX_BYTES {
            return;
        }
        while self.pages.len() >= MAX_PAGES || self.bytes + page.body.len() > MAX_BYTES {
            let Some((_, oldest)) = self.pages.pop_front() else {
                break;
            };
            self.bytes -= oldest.body.len();
        }
        self.bytes += page.body.len();
        self.pages.push_back((request, page));
    }

    /// Pages read from the store, and answers that sent a page kept here instead.
    pub fn counts(&self) -> (u64, u64) {
        (self.read, self.shared)
    }

    /// Drops the pages read before the store's write count reached `writes`. A count
    /// lower than the one kept (a page read before a write but kept after it) keeps
    /// nothing.
    fn forget_before(&mut self, writes: u64) {
        if writes > self.writes {
            self.pages.clear();
            self.bytes = 0;
            self.writes = writes;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(after: u64, types: &[&str]) -> PageRequest {
        PageRequest {
            after,
            limit: 500,
            max_bytes: 1 << 20,
            filter: TypeFilter::only(&types.iter().map(|t| t.to_string()).collect::<Vec<_>>()),
            form: PageForm::Json,
        }
    }

    fn page(bytes: usize) -> SharedPage {
        SharedPage {
            body: SharedBody::new(vec![b'x'; bytes]),
            at_end: false,
        }
    }

    #[test]
    fn the_same_request_at_the_same_write_count_gets_the_same_bytes() {
        let mut pages = SharedPages::default();
        let kept = page(100);
        pages.keep(7, request(3, &[]), kept.clone());
        let found = pages.get(7, &request(3, &[])).expect("kept");
        assert!(found.body.same_as(&kept.body));
        assert_eq!(pages.counts(), (1, 1));
    }

    #[test]
    fn another_position_limit_or_filter_is_another_page() {
        let mut pages = SharedPages::default();
        pages.keep(7, request(3, &[]), page(100));
        assert!(pages.get(7, &request(4, &[])).is_none());
        assert!(pages.get(7, &request(3, &["template_node"])).is_none());
        let smaller = PageRequest {
            limit: 10,
            ..request(3, &[])
        };
        assert!(pages.get(7, &smaller).is_none());
        let compact = PageRequest {
            form: PageForm::Compact,
            ..request(3, &[])
        };
        assert!(pages.get(7, &compact).is_none());
        assert_eq!(pages.counts(), (1, 0));
    }

    #[test]
    fn a_write_drops_every_page() {
        let mut pages = SharedPages::default();
        pages.keep(7, request(3, &[]), page(100));
        assert!(pages.get(8, &request(3, &[])).is_none());
        assert!(pages.get(7, &request(3, &[])).is_none());
        // A page read before the write and kept after it is not kept.
        pages.keep(7, request(3, &[]), page(100));
        assert!(pages.get(8, &request(3, &[])).is_none());
    }

    #[test]
    fn pages_kept_stay_within_their_count_and_bytes() {
        let mut pages = SharedPages::default();
        for after in 0..(MAX_PAGES as u64 + 5) {
            pages.keep(1, request(after, &[]), page(10));
        }
        assert_eq!(pages.pages.len(), MAX_PAGES);
        assert!(
            pages.get(1, &request(0, &[])).is_none(),
            "the oldest made way"
        );
        assert!(pages.get(1, &request(MAX_PAGES as u64 + 4, &[])).is_some());

        let mut pages = SharedPages::default();
        let large = MAX_BYTES / 3;
        for after in 0..4 {
            pages.keep(1, request(after, &[]), page(large));
        }
        assert_eq!(pages.bytes, 3 * large);
        pages.keep(1, request(9, &[]), page(MAX_BYTES + 1));
        assert!(
            pages.get(1, &request(9, &[])).is_none(),
            "too large to keep"
        );
        assert!(pages.bytes <= MAX_BYTES);
    }
}
