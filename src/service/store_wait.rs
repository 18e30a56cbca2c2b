//! Waiting for a store another process holds, so restarts need no retry loop around
//! them (issue #16): `serve` started right after a crash waits for the CLI command that
//! holds the store, and a CLI command waits for a server that has opened the store but
//! not yet written `server.json`.
//!
//! This wraps whatever opens the store; how a store is opened (and what a damaged one
//! does) is left to [`super::open_store`] and the store itself.

use std::time::{Duration, Instant};

use super::running::{ServerInfo, running_server};
use crate::config::Config;
use crate::error::Error;
use crate::store::StoreError;

/// How often a held store is tried again.
const POLL: Duration = Duration::from_millis(50);

/// Who ends up with the store.
pub(crate) enum Holder<T> {
    /// This process opened it.
    Opened(T),
    /// A running server holds it; commands go to it.
    Server(ServerInfo),
}

/// Calls `open` until it stops failing with [`StoreError::Locked`], at most
/// `config.store_wait`, and says once on stderr that it waits. A store held by a
/// running server is not waited for: that holder is the answer. `until` bounds the wait
/// instead of the configured one when given (a caller that already waited).
pub(crate) fn open_waiting<T>(
    config: &Config,
    until: Option<Instant>,
    mut open: impl FnMut() -> Result<T, Error>,
) -> Result<Holder<T>, Error> {
    let deadline = until.unwrap_or_else(|| Instant::now() + config.store_wait);
    let mut said = false;
    loop {
        let path = match open() {
            Ok(opened) => return Ok(Holder::Opened(opened)),
            Err(Error::Store(StoreError::Locked { path })) => path,
            Err(error) => return Err(error),
        };
        if let Some(server) = running_server(config) {
            return Ok(Holder::Server(server));
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(Error::Store(StoreError::Locked { path }));
        }
        if !said {
            eprintln!(
                "store {} is held by another ark-lattice process; waiting up to {} s for it (ARK_STORE_WAIT)",
                path.display(),
                deadline.saturating_duration_since(now).as_secs_f64().ceil()
            );
            said = true;
        }
        std::thread::sleep(POLL.min(deadline - now));
    }
}
