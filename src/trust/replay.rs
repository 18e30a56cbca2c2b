//! The replay guard for signed requests: each nonce is accepted once, and only with a
//! timestamp near now. Checking signatures is left to `request.rs`.
//!
//! # Implementation
//!
//! [`ReplayGuard`] accepts a request once: the timestamp must be within ±5 minutes of
//! now, and the nonce unseen. A nonce is forgotten once its timestamp is outside the
//! window, when the timestamp check alone refuses it; the guard never holds more than a
//! fixed number of nonces, nor more than a quota per signing key, and refuses new
//! requests (rather than forgetting early, which would reopen replays) while full.
//! Time is passed in, so tests are deterministic.
//!
//! Only requests the caller has already decided to serve are remembered (the server
//! checks the key's tier first, `server::auth`): a key that is not trusted gets its
//! refusal without taking memory, so no flood of untrusted or pending keys can lock
//! trusted peers out (issue 11). Replaying a refused request only earns another
//! refusal. The per-key quota keeps one trusted key from taking the room of others.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;

use super::request::HEADER_NONCE;
use crate::model::InstanceId;

/// How far a request's timestamp may be from the receiver's clock, either way.
pub const REPLAY_WINDOW_MILLIS: u64 = 5 * 60 * 1000;
/// The most nonces a default [`ReplayGuard`] holds: 150 requests a second sustained over
/// the ten minutes a nonce may need remembering, in at most about 25 MB.
pub const DEFAULT_MAX_NONCES: usize = 100_000;
/// The most nonces one key may have remembered: 16 requests a second sustained over
/// ten minutes, far above a peer's syncs (a few requests each) and long-polls.
pub const DEFAULT_MAX_NONCES_PER_KEY: usize = 10_000;

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
    /// This key has `max_per_key` requests within the window already.
    KeyQuota {
        max_per_key: usize,
    },
}

impl ReplayError {
    /// A refusal that says "later", not "never": the request itself was fine.
    pub(crate) fn is_busy(&self) -> bool {
        matches!(
            self,
            ReplayError::Full { .. } | ReplayError::KeyQuota { .. }
        )
    }
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
            ReplayError::KeyQuota { max_per_key } => write!(
                f,
                "too many requests from this key: {max_per_key} within the replay window; try again later"
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
    max_per_key: usize,
    /// The latest `now` seen. Old requests are judged against it, so a clock stepping
    /// back cannot revive nonces already forgotten.
    latest_now: u64,
    seen: HashSet<(InstanceId, String)>,
    by_timestamp: BTreeSet<(u64, InstanceId, String)>,
    per_key: HashMap<InstanceId, usize>,
}

impl Default for ReplayGuard {
    /// A window of [`REPLAY_WINDOW_MILLIS`], at most [`DEFAULT_MAX_NONCES`] nonces and
    /// [`DEFAULT_MAX_NONCES_PER_KEY`] per key.
    fn default() -> ReplayGuard {
        ReplayGuard::new(
            REPLAY_WINDOW_MILLIS,
            DEFAULT_MAX_NONCES,
            DEFAULT_MAX_NONCES_PER_KEY,
        )
    }
}

impl ReplayGuard {
    pub fn new(window_millis: u64, max_nonces: usize, max_per_key: usize) -> ReplayGuard {
        ReplayGuard {
            window_millis,
            max_nonces,
            max_per_key,
            latest_now: 0,
            seen: HashSet::new(),
            by_timestamp: BTreeSet::new(),
            per_key: HashMap::new(),
        }
    }

    /// Accepts `nonce` of the key of instance `key` once, if `timestamp_millis` is
    /// within the window of `now_millis`. Call it only for a request that is otherwise
    /// going to be served (signature verified, key trusted for the route).
    pub fn check(
        &mut self,
        key: &InstanceId,
        nonce: &str,
        timestamp_millis: u64,
        now_millis: u64,
    ) -> Result<(), ReplayError> {
        self.check_fresh(nonce, timestamp_millis, now_millis)?;
        self.latest_now = self.latest_now.max(now_millis);
        self.forget_expired();
        let entry = (*key, nonce.to_owned());
        if self.seen.contains(&entry) {
            return Err(ReplayError::NonceReused);
        }
        let used = self.per_key.get(key).copied().unwrap_or(0);
        if used >= self.max_per_key {
            return Err(ReplayError::KeyQuota {
                max_per_key: self.max_per_key,
            });
        }
        if self.seen.len() >= self.max_nonces {
            return Err(ReplayError::Full {
                max_nonces: self.max_nonces,
            });
        }
        self.seen.insert(entry);
        self.by_timestamp
            .insert((timestamp_millis, *key, nonce.to_owned()));
        self.per_key.insert(*key, used + 1);
        Ok(())
    }

    /// The checks that need no memory: nonce shape and timestamp window.
    pub(crate) fn check_fresh(
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
        while let Some((timestamp, _, _)) = self.by_timestamp.first() {
            if timestamp.saturating_add(self.window_millis) >= self.latest_now {
                break;
            }
            if let Some((_, key, nonce)) = self.by_timestamp.pop_first() {
                self.seen.remove(&(key, nonce));
                if let Some(count) = self.per_key.get_mut(&key) {
                    *count -= 1;
                    if *count == 0 {
                        self.per_key.remove(&key);
                    }
                }
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
    const KEY: InstanceId = InstanceId([1; 32]);

    fn nonce(index: usize) -> String {
        format!("nonce-{index:016}")
    }

    #[test]
    fn guard_refuses_timestamps_outside_the_window() {
        fn check(timestamp: u64, expected: Result<(), ReplayError>) {
            let mut guard = ReplayGuard::default();
            assert_eq!(
                guard.check(&KEY, &nonce(1), timestamp, NOW),
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
                guard.check(&KEY, bad, NOW, NOW),
                Err(ReplayError::BadNonce),
                "{bad}"
            );
        }
        assert_eq!(guard.check(&KEY, &"x".repeat(64), NOW, NOW), Ok(()));
        assert_eq!(guard.check(&KEY, "0123456789abcdef", NOW, NOW), Ok(()));
    }

    #[test]
    fn guard_forgets_nonces_once_the_window_refuses_them() {
        let mut guard = ReplayGuard::default();
        guard.check(&KEY, &nonce(1), NOW, NOW).unwrap();
        guard
            .check(&KEY, &nonce(2), NOW + MINUTE, NOW + MINUTE)
            .unwrap();
        assert_eq!(guard.len(), 2);
        // Still inside the window of nonce 1: remembered and refused.
        assert_eq!(
            guard.check(&KEY, &nonce(1), NOW, NOW + 5 * MINUTE),
            Err(ReplayError::NonceReused)
        );
        guard
            .check(&KEY, &nonce(3), NOW + 6 * MINUTE, NOW + 6 * MINUTE)
            .unwrap();
        assert_eq!(guard.len(), 2, "nonce 1 is forgotten");
        // Forgotten, but the timestamp check still refuses the replay, even when the
        // clock steps back.
        assert_eq!(
            guard.check(&KEY, &nonce(1), NOW, NOW + 5 * MINUTE),
            Err(ReplayError::TooOld {
                skew_millis: 6 * MINUTE,
                window_millis: REPLAY_WINDOW_MILLIS
            })
        );
    }

    #[test]
    fn guard_memory_is_bounded() {
        let mut guard = ReplayGuard::new(REPLAY_WINDOW_MILLIS, 3, 10);
        for index in 0..3 {
            guard.check(&KEY, &nonce(index), NOW, NOW).unwrap();
        }
        assert_eq!(
            guard.check(&KEY, &nonce(3), NOW, NOW),
            Err(ReplayError::Full { max_nonces: 3 })
        );
        assert_eq!(guard.len(), 3);
        // Once the old ones expire there is room again.
        let later = NOW + 6 * MINUTE;
        guard.check(&KEY, &nonce(3), later, later).unwrap();
        assert_eq!(guard.len(), 1);
    }

    #[test]
    fn one_key_cannot_take_the_room_of_others() {
        let mut guard = ReplayGuard::new(REPLAY_WINDOW_MILLIS, 5, 2);
        let other = InstanceId([2; 32]);
        guard.check(&KEY, &nonce(1), NOW, NOW).unwrap();
        guard.check(&KEY, &nonce(2), NOW, NOW).unwrap();
        assert_eq!(
            guard.check(&KEY, &nonce(3), NOW, NOW),
            Err(ReplayError::KeyQuota { max_per_key: 2 })
        );
        // Another key still gets in, even with the same nonce.
        guard.check(&other, &nonce(1), NOW, NOW).unwrap();
        assert_eq!(
            guard.check(&other, &nonce(1), NOW, NOW),
            Err(ReplayError::NonceReused)
        );
        // The quota frees up as the key's nonces expire.
        let later = NOW + 6 * MINUTE;
        guard.check(&KEY, &nonce(3), later, later).unwrap();
        assert_eq!(guard.len(), 1);
        assert!(ReplayError::KeyQuota { max_per_key: 2 }.is_busy());
        assert!(!ReplayError::NonceReused.is_busy());
    }
}
