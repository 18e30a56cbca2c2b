//! Panics caught outside request handling: in a sync, a timer loop or any other work a
//! running node does on its own. Each is turned into an error for its caller, logged
//! and counted, so one bad page or one bug ends that piece of work and not the node.
//! Panics inside a request are the HTTP server's (`http::server`).
//!
//! # Implementation
//!
//! A panic in a task spawned on the node's executor is caught by the executor and
//! silently ends the task: an auto-sync loop would stop for good, and a sync's "in
//! progress" mark for its peer would never be cleared, so every later sync with that
//! peer would wait and fail (issue 10: a damaged store page made redb panic). Wrapping
//! the work here keeps the cleanup that follows it running. The count is process-wide
//! (one node per process), read by `/metrics`.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_lite::FutureExt;

static CAUGHT: AtomicU64 = AtomicU64::new(0);

/// Runs `work` to completion; a panic in it is logged as `what`, counted, and returned
/// as its message. Borrows of shared state taken inside `work` are released as the
/// panic unwinds; what `work` left half done in memory is the caller's to accept.
pub async fn contained<F: Future>(what: &str, work: F) -> Result<F::Output, String> {
    match AssertUnwindSafe(work).catch_unwind().await {
        Ok(output) => Ok(output),
        Err(payload) => {
            let message = message(payload.as_ref()).to_owned();
            CAUGHT.fetch_add(1, Ordering::Relaxed);
            eprintln!("error: {what} panicked ({message}); the node goes on");
            Err(message)
        }
    }
}

/// Panics caught by [`contained`] since the process started.
pub(crate) fn caught() -> u64 {
    CAUGHT.load(Ordering::Relaxed)
}

/// The text a panic was raised with, when it was a string.
pub fn message(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("no message")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_its_message_and_is_counted() {
        let before = caught();
        let outcome = smol::block_on(contained("the test's work", async {
            if before < u64::MAX {
                panic!("page {} is damaged", 7);
            }
            1
        }));
        assert_eq!(outcome, Err("page 7 is damaged".to_owned()));
        assert!(caught() > before);
        assert_eq!(smol::block_on(contained("quiet work", async { 2 })), Ok(2));
    }
}
