//! The replay guard for signed requests: each nonce is accepted once, and only with a
//! timestamp near now. Checking signatures is left to `request.rs`.
//!
//! # Implementation
//!
//! [`ReplayGuard`] accepts a request once: the timestamp must be within ±5 minutes of
//! now, and the nonce unseen. A nonce is forgotten once its timestamp is outside the
//! window, when the timestamp check alone refuses it; the guard never holds more than a
//! fixed number of nonces and refuses new requests (rather than forgetting early, which
//! would reopen replays) while full. Time is passed in, so tests are deterministic.

use std::collections::{BTreeSet, HashSet};
use std::fmt;

use super::request::HEADER_NONCE;

/// How far a request's timestamp may be from the receiver's clock, either way.
pub const REPLAY_WINDOW_MILLIS: u64 = 5 * 60 * 1000;
/// The most nonces a default [`ReplayGuard`] holds: 150 requests a second sustained over
/// the ten minutes a nonce may need remembering, in at most about 25 MB.
pub const DEFAULT_MAX_NONCES: usize = 100_000;

const NONCE_MIN_CHARS: usize = 16;
const NONCE_MAX_CHARS: usize = 64;

/// Why the replay guard refused a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplayError {
    BadNonce,
    /// `skew_millis` is how far the timestamp is from now (or from the latest time
    /// seen); `window_millis` is how far it may be.
    TooOld {
        skew_millis: u64,
        window_millis: u64,
    },
    InFuture {
        skew_millis: u64,
        window_millis: u64,
    },
    NonceReused,
    Full {
        max_nonces: usize,
    },
}

impl fmt::Display for ReplayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplayError::BadNonce => write!(
                f,
                "header {HEADER_NONCE} must be {NONCE_MIN_CHARS} to {NONCE_MAX_CHARS} \
                 characters of A-Z a-z 0-9 - _"
            ),
            ReplayError::TooOld {
                skew_millis,
                window_millis,
            } => write!(
                f,
                "request timestamp is {} s behind this node's clock (allowed {} s); \
                 check the clocks",
                skew_millis / 1000,
                window_millis / 1000
            ),
            ReplayError::InFuture {
                skew_millis,
                window_millis,
            } => write!(
                f,
                "request timestamp is {} s ahead of this node's clock (allowed {} s); \
                 check the clocks",
                skew_millis / 1000,
                window_millis / 1000
            ),
            ReplayError::NonceReused => f.write_str("request nonce was already used (a replay)"),
            ReplayError::Full { max_nonces } => write!(
                f,
                "too many requests: {max_nonces} nonces within the replay window; try again later"
            ),
        }
    }
}

impl std::error::Error for ReplayError {}

/// Remembers recent nonces so each signed request is accepted once. Time is passed in,
/// so it is deterministic.
#[derive(Debug, Clone)]
pub struct ReplayGuard {
    window_millis: u64,
    max_nonces: usize,
    /// The latest `now` seen. Old requests are judged against it, so a clock stepping
    /// back cannot revive nonces already forgotten.
    latest_now: u64,
    seen: HashSet<String>,
    by_timestamp: BTreeSet<(u64, String)>,
}

impl Default for ReplayGuard {
    /// A window of [`REPLAY_WINDOW_MILLIS`] and at most [`DEFAULT_MAX_NONCES`] nonces.
    fn default() -> ReplayGuard {
        ReplayGuard::new(REPLAY_WINDOW_MILLIS, DEFAULT_MAX_NONCES)
    }
}

impl ReplayGuard {
    pub fn new(window_millis: u64, max_nonces: usize) -> ReplayGuard {
        ReplayGuard {
            window_millis,
            max_nonces,
            latest_now: 0,
            seen: HashSet::new(),
            by_timestamp: BTreeSet::new(),
        }
    }

    /// Accepts `nonce` once, if `timestamp_millis` is within the window of `now_millis`.
    pub fn check(
        &mut self,
        nonce: &str,
        timestamp_millis: u64,
        now_millis: u64,
    ) -> Result<(), ReplayError> {
        self.check_fresh(nonce, timestamp_millis, now_millis)?;
        self.latest_now = self.latest_now.max(now_millis);
        self.forget_expired();
        if self.seen.contains(nonce) {
            return Err(ReplayError::NonceReused);
        }
        if self.seen.len() >= self.max_nonces {
            return Err(ReplayError::Full {
                max_nonces: self.max_nonces,
            });
        }
        self.seen.insert(nonce.to_owned());
        self.by_timestamp
            .insert((timestamp_millis, nonce.to_owned()));
        Ok(())
    }

    /// The checks that need no memory: nonce shape and timestamp window.
    pub(super) fn check_fresh(
        &self,
        nonce: &str,
        timestamp_millis: u64,
        now_millis: u64,
    ) -> Result<(), ReplayError> {
        let well_formed = (NONCE_MIN_CHARS..=NONCE_MAX_CHARS).contains(&nonce.len())
            && nonce
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_');
        if !well_formed {
            return Err(ReplayError::BadNonce);
        }
        let horizon = self.latest_now.max(now_millis);
        if timestamp_millis.saturating_add(self.window_millis) < horizon {
            return Err(ReplayError::TooOld {
                skew_millis: horizon - timestamp_millis,
                window_millis: self.window_millis,
            });
        }
        if timestamp_millis > now_millis.saturating_add(self.window_millis) {
            return Err(ReplayError::InFuture {
                skew_millis: timestamp_millis - now_millis,
                window_millis: self.window_millis,
            });
        }
        Ok(())
    }

    /// Drops nonces whose timestamps the window check now refuses on its own.
    fn forget_expired(&mut self) {
        while let Some((timestamp, _)) = self.by_timestamp.first() {
            if timestamp.saturating_add(self.window_millis) >= self.latest_now {
                break;
            }
            if let Some((_, nonce)) = self.by_timestamp.pop_first() {
                self.seen.remove(&nonce);
            }
        }
    }

    /// How many nonces are remembered.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_706_702_400_000;
    const MINUTE: u64 = 60_000;

    fn nonce(index: usize) -> String {
        format!("nonce-{index:016}")
    }

    #[test]
    fn guard_refuses_timestamps_outside_the_window() {
        fn check(timestamp: u64, expected: Result<(), ReplayError>) {
            let mut guard = ReplayGuard::default();
            assert_eq!(
                guard.check(&nonce(1), timestamp, NOW),
                expected,
                "{timestamp}"
            );
        }
        check(NOW, Ok(()));
        check(NOW - 5 * MINUTE, Ok(()));
        check(NOW + 5 * MINUTE, Ok(()));
        check(
            NOW - 5 * MINUTE - 1,
            Err(ReplayError::TooOld {
                skew_millis: 5 * MINUTE + 1,
                window_millis: REPLAY_WINDOW_MILLIS,
            }),
        );
        check(
            NOW + 5 * MINUTE + 1,
            Err(ReplayError::InFuture {
                skew_millis: 5 * MINUTE + 1,
                window_millis: REPLAY_WINDOW_MILLIS,
            }),
        );
        check(
            0,
            Err(ReplayError::TooOld {
                skew_millis: NOW,
                window_millis: REPLAY_WINDOW_MILLIS,
            }),
        );
        check(
            u64::MAX,
            Err(ReplayError::InFuture {
                skew_millis: u64::MAX - NOW,
                window_millis: REPLAY_WINDOW_MILLIS,
            }),
        );
        assert_eq!(
            ReplayError::InFuture {
                skew_millis: 400_500,
                window_millis: REPLAY_WINDOW_MILLIS
            }
            .to_string(),
            "request timestamp is 400 s ahead of this node's clock (allowed 300 s); check the clocks"
        );
    }

    #[test]
    fn guard_refuses_malformed_nonces() {
        let mut guard = ReplayGuard::default();
        for bad in [
            "short",
            &"x".repeat(65),
            "has space in it..",
            "ünïcödé-nonce-value",
        ] {
            assert_eq!(
                guard.check(bad, NOW, NOW),
                Err(ReplayError::BadNonce),
                "{bad}"
            );
        }
        assert_eq!(guard.check(&"x".repeat(64), NOW, NOW), Ok(()));
        assert_eq!(guard.check("0123456789abcdef", NOW, NOW), Ok(()));
    }

    #[test]
    fn guard_forgets_nonces_once_the_window_refuses_them() {
        let mut guard = ReplayGuard::default();
        guard.check(&nonce(1), NOW, NOW).unwrap();
        guard.check(&nonce(2), NOW + MINUTE, NOW + MINUTE).unwrap();
        assert_eq!(guard.len(), 2);
        // Still inside the window of nonce 1: remembered and refused.
        assert_eq!(
            guard.check(&nonce(1), NOW, NOW + 5 * MINUTE),
            Err(ReplayError::NonceReused)
        );
        guard
            .check(&nonce(3), NOW + 6 * MINUTE, NOW + 6 * MINUTE)
            .unwrap();
        assert_eq!(guard.len(), 2, "nonce 1 is forgotten");
        // Forgotten, but the timestamp check still refuses the replay, even when the
        // clock steps back.
        assert_eq!(
            guard.check(&nonce(1), NOW, NOW + 5 * MINUTE),
            Err(ReplayError::TooOld {
                skew_millis: 6 * MINUTE,
                window_millis: REPLAY_WINDOW_MILLIS
            })
        );
    }

    #[test]
    fn guard_memory_is_bounded() {
        let mut guard = ReplayGuard::new(REPLAY_WINDOW_MILLIS, 3);
        for index in 0..3 {
            guard.check(&nonce(index), NOW, NOW).unwrap();
        }
        assert_eq!(
            guard.check(&nonce(3), NOW, NOW),
            Err(ReplayError::Full { max_nonces: 3 })
        );
        assert_eq!(guard.len(), 3);
        // Once the old ones expire there is room again.
        let later = NOW + 6 * MINUTE;
        guard.check(&nonce(3), later, later).unwrap();
        assert_eq!(guard.len(), 1);
    }
}
