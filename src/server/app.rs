//! [`App`]: a served instance's live state. It is the service layer's [`Instance`]
//! (config, store, key, syncer, switches) plus what only a listening node has: the
//! shutdown signal, the replay guard, the hub registry, request counters, pending
//! callers, the cached `/federation/info` answer and the shared changes pages.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use crate::config::Config;
use crate::error::Error;
use crate::service::Instance;
use crate::trust::ReplayGuard;

use super::metrics::HttpCounters;

pub struct App {
    instance: Instance,
    /// Requests a graceful shutdown.
    shutdown: event_listener::Event,
    shutdown_requested: Cell<bool>,
    /// Nonces of signed requests seen within the replay window.
    replay_guard: RefCell<ReplayGuard>,
    /// Spokes registered at this hub (`POST /manifest`), by base64 key; kept in memory
    /// since they expire after the peer TTL anyway.
    registry: RefCell<std::collections::BTreeMap<String, super::python_api::Registration>>,
    /// HTTP requests answered, by route and status, for `/metrics`.
    http_requests: HttpCounters,
    /// Addresses already warned about sending the admin token over plain HTTP.
    token_in_clear_from: RefCell<std::collections::BTreeSet<std::net::IpAddr>>,
    /// Unknown keys that signed a request, written to the store in batches.
    pending_callers: RefCell<crate::sync::trust_book::PendingCallers>,
    /// The last `/federation/info` answer, for as long as what it shows is unchanged.
    info_cache: RefCell<Option<super::peer_api::CachedInfo>>,
    /// Changes pages answered at the store's present state, for the requests that ask
    /// for the same page (a commit's woken long-polls).
    shared_pages: RefCell<super::shared_pages::SharedPages>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("instance", &self.instance)
            .finish()
    }
}

impl App {
    /// Opens the instance in the state dir.
    pub fn open(config: &Config) -> Result<Rc<App>, Error> {
        Ok(Rc::new(App {
            instance: Instance::open(config)?,
            shutdown: event_listener::Event::new(),
            shutdown_requested: Cell::new(false),
            replay_guard: RefCell::new(ReplayGuard::default()),
            registry: RefCell::new(std::collections::BTreeMap::new()),
            http_requests: HttpCounters::default(),
            pending_callers: RefCell::new(crate::sync::trust_book::PendingCallers::new(
                crate::config::MAX_PENDING_TRUST,
            )),
            token_in_clear_from: RefCell::new(std::collections::BTreeSet::new()),
            info_cache: RefCell::new(None),
            shared_pages: RefCell::default(),
        }))
    }

    /// The served instance: its config, store, key, syncer and switches, each behind a
    /// method of [`Instance`], and what the service operations run on.
    pub(crate) fn instance(&self) -> &Instance {
        &self.instance
    }

    /// Writes the unknown keys noted since the last call as pending trust entries.
    pub(crate) fn flush_pending_callers(&self) {
        let result = crate::sync::trust_book::flush_pending(
            &mut self.instance.store().borrow_mut(),
            &mut self.pending_callers.borrow_mut(),
            crate::config::MAX_PENDING_TRUST,
        );
        match result {
            Ok(dropped) if dropped > 0 && self.instance.config().verbose => eprintln!(
                "ark:trust dropped {dropped} pending key(s) seen least recently (at most {} are kept)",
                crate::config::MAX_PENDING_TRUST
            ),
            Ok(_) => {}
            Err(error) => eprintln!("warning: cannot save pending trust entries: {error}"),
        }
    }

    /// Ends when a shutdown is requested (held long-polls and the accept loop wait on it).
    pub(crate) fn shutdown_listener(&self) -> event_listener::EventListener {
        self.shutdown.listen()
    }

    /// Nonces of signed requests seen within the replay window.
    pub(crate) fn replay_guard(&self) -> std::cell::RefMut<'_, ReplayGuard> {
        self.replay_guard.borrow_mut()
    }

    /// Spokes registered at this hub, by base64 key.
    pub(crate) fn registry(
        &self,
    ) -> std::cell::RefMut<'_, std::collections::BTreeMap<String, super::python_api::Registration>>
    {
        self.registry.borrow_mut()
    }

    /// HTTP requests answered, by route and status.
    pub(crate) fn http_requests(&self) -> &HttpCounters {
        &self.http_requests
    }

    /// Whether `address` is the first (of at most `limit`) to be warned about sending the
    /// admin token over plain HTTP; notes it as warned.
    pub(crate) fn first_token_in_clear_from(
        &self,
        address: std::net::IpAddr,
        limit: usize,
    ) -> bool {
        let mut warned = self.token_in_clear_from.borrow_mut();
        warned.len() < limit && warned.insert(address)
    }

    /// Unknown keys that signed a request, to be written as pending trust entries.
    pub(crate) fn pending_callers(
        &self,
    ) -> std::cell::RefMut<'_, crate::sync::trust_book::PendingCallers> {
        self.pending_callers.borrow_mut()
    }

    /// The cached `/federation/info` answer.
    pub(crate) fn info_cache(&self) -> std::cell::RefMut<'_, Option<super::peer_api::CachedInfo>> {
        self.info_cache.borrow_mut()
    }

    /// The changes pages kept for requests that ask for the same page.
    pub(crate) fn shared_pages(&self) -> std::cell::RefMut<'_, super::shared_pages::SharedPages> {
        self.shared_pages.borrow_mut()
    }

    /// Whether a shutdown was requested.
    pub(crate) fn shutdown_requested(&self) -> bool {
        self.shutdown_requested.get()
    }

    pub fn request_shutdown(&self) {
        self.shutdown_requested.set(true);
        self.shutdown.notify(usize::MAX);
    }
}
