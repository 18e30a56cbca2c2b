//! [`SyncError`]: why a sync with a peer stopped, typed by what the caller does next:
//! start over (`Restart`), or back off by [`FailureKind`] (`sync::engine::retry_delay`).

use std::fmt;

use super::core::PageError;
use super::engine::FailureKind;
use super::reconcile::ReconcileError;
use crate::http::ClientError;
use crate::protocol::WireError;
use crate::store::StoreError;

/// Which of ARK's unsigned services a peer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum UnsignedService {
    /// ARK's Python federation service (no `/federation/info`).
    Python,
    /// ARK's Node.js peers (their info names no signed protocol).
    Legacy,
}

/// Why a checkpointed sync starts over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Restart {
    /// The peer's changes page shows another instance id.
    AnotherInstance,
    /// The peer's store has a new epoch (it was replaced or restored).
    NewEpoch,
}

/// What a peer was in the middle of when it became another instance or store epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum During {
    /// Reconciliation rounds (first contact or repair).
    Sync,
    /// A first copy of its feed.
    FirstCopy,
}

/// Why a sync stopped.
#[derive(Debug)]
pub(super) enum SyncError {
    Store(StoreError),
    /// A request to the peer got no answer (or the URL cannot be asked at all).
    Unanswered(ClientError),
    /// The peer answered with a status this sync cannot go on from. `request` is the
    /// method and URL; `detail` the start of the answer, if it said anything.
    Status {
        request: String,
        status: u16,
        detail: String,
    },
    /// The peer's answer is not what the protocol says (a field missing, of the wrong
    /// type, not JSON).
    Wire(WireError),
    /// The peer is one of ARK's services, whose records carry no signatures, and this
    /// node takes unsigned records only with `FEDERATION_TRUST=open`.
    NeedsOpenTrust {
        url: String,
        service: UnsignedService,
    },
    /// The URL is this instance's own.
    Itself {
        url: String,
    },
    /// Reconciling with the peer failed: its message does not parse or does not fit our
    /// set, the rounds did not end, or our own set could not be built.
    Reconcile {
        url: String,
        error: ReconcileError,
    },
    /// The peer's instance id is not the hash of the public key its info shows.
    KeyMismatch {
        url: String,
    },
    /// The peer became another instance or store epoch in the middle of a sync that
    /// cannot start over at once; the next sync starts over.
    ChangedDuring {
        url: String,
        during: During,
    },
    /// The peer answered a fetch with none of the records asked for.
    FetchStalled {
        url: String,
    },
    /// A first copy's page would make the copy loop or skip.
    CopyPage {
        url: String,
        error: PageError,
    },
    /// An answer reached a state machine of the sync core that was not waiting for it:
    /// `what` arrived while `machine` was in `phase` (a fault of the driver, not the peer).
    OutOfTurn {
        url: String,
        what: &'static str,
        machine: &'static str,
        phase: String,
    },
    /// The peer is not the store our checkpoint belongs to: start over with
    /// `/federation/info`.
    Restart {
        url: String,
        reason: Restart,
    },
    /// Something below the sync panicked; the message is the panic's.
    Panicked(String),
}

impl SyncError {
    /// `what` reached the sync core's `machine` in `phase`, which waits for none of it.
    pub(super) fn out_of_turn(
        url: &str,
        what: &'static str,
        machine: &'static str,
        phase: impl fmt::Debug,
    ) -> SyncError {
        SyncError::OutOfTurn {
            url: url.to_owned(),
            what,
            machine,
            phase: format!("{phase:?}"),
        }
    }

    /// What kind of failure this is, for the retry policy.
    pub(super) fn kind(&self) -> FailureKind {
        match self {
            SyncError::Unanswered(error) => match error {
                ClientError::Resolve { .. }
                | ClientError::Connect { .. }
                | ClientError::ConnectTimeout { .. }
                | ClientError::Timeout { .. }
                | ClientError::ConnectionLost { .. } => FailureKind::Unreachable,
                ClientError::Tls { .. } => FailureKind::Refused,
                ClientError::Url(_)
                | ClientError::InvalidRequest { .. }
                | ClientError::MalformedResponse { .. }
                | ClientError::BodyTooLarge { .. }
                | ClientError::BadGzip { .. } => FailureKind::Other,
            },
            SyncError::Status { status, .. } => FailureKind::of_status(*status),
            SyncError::Store(_)
            | SyncError::Wire(_)
            | SyncError::NeedsOpenTrust { .. }
            | SyncError::Itself { .. }
            | SyncError::Reconcile { .. }
            | SyncError::KeyMismatch { .. }
            | SyncError::ChangedDuring { .. }
            | SyncError::FetchStalled { .. }
            | SyncError::CopyPage { .. }
            | SyncError::OutOfTurn { .. }
            | SyncError::Restart { .. }
            | SyncError::Panicked(_) => FailureKind::Other,
        }
    }
}

impl From<StoreError> for SyncError {
    fn from(error: StoreError) -> SyncError {
        SyncError::Store(error)
    }
}

impl From<WireError> for SyncError {
    fn from(error: WireError) -> SyncError {
        SyncError::Wire(error)
    }
}

impl From<ClientError> for SyncError {
    fn from(error: ClientError) -> SyncError {
        SyncError::Unanswered(error)
    }
}

impl fmt::Display for SyncError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SyncError::Store(error) => error.fmt(f),
            SyncError::Unanswered(error) => error.fmt(f),
            SyncError::Status {
                request,
                status,
                detail,
            } if detail.is_empty() => write!(f, "{request} answered {status}"),
            SyncError::Status {
                request,
                status,
                detail,
            } => write!(f, "{request} answered {status}: {detail}"),
            SyncError::Wire(error) => error.fmt(f),
            SyncError::NeedsOpenTrust {
                url,
                service: UnsignedService::Python,
            } => write!(
                f,
                "{url} has no /federation/info: ARK's Python service sends unsigned nodes, taken only with FEDERATION_TRUST=open"
            ),
            SyncError::NeedsOpenTrust {
                url,
                service: UnsignedService::Legacy,
            } => write!(
                f,
                "{url} speaks only ARK's unsigned protocol; sync with it needs FEDERATION_TRUST=open"
            ),
            SyncError::Itself { url } => write!(f, "{url} is this instance itself"),
            SyncError::Reconcile { url, error } => write!(f, "{url}: {error}"),
            SyncError::KeyMismatch { url } => {
                write!(
                    f,
                    "{url}: its instance id does not belong to its public key"
                )
            }
            SyncError::ChangedDuring { url, during } => {
                let during = match during {
                    During::Sync => "the sync",
                    During::FirstCopy => "the first copy",
                };
                write!(
                    f,
                    "{url} changed its instance or store epoch during {during}; it starts over next time"
                )
            }
            SyncError::FetchStalled { url } => {
                write!(
                    f,
                    "{url} answered a fetch with none of the records asked for"
                )
            }
            SyncError::CopyPage { url, error } => write!(f, "{url}: {error}"),
            SyncError::OutOfTurn {
                url,
                what,
                machine,
                phase,
            } => write!(
                f,
                "internal error during the sync with {url}: {what} arrived while the {machine} was {phase}"
            ),
            SyncError::Restart {
                url,
                reason: Restart::AnotherInstance,
            } => write!(f, "{url} is now another instance"),
            SyncError::Restart {
                url,
                reason: Restart::NewEpoch,
            } => write!(f, "{url} has a new store epoch"),
            SyncError::Panicked(message) => write!(
                f,
                "internal error during the sync ({message}); if it was the store, `ark-lattice verify` names the damage"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn sync_errors_know_their_kind() {
        fn check(error: SyncError, expected: FailureKind) {
            assert_eq!(error.kind(), expected, "{error}");
        }
        let url = || "http://10.0.0.5:9000/federation/info".to_owned();
        check(
            SyncError::Unanswered(ClientError::Timeout {
                url: url(),
                timeout: Duration::from_secs(30),
            }),
            FailureKind::Unreachable,
        );
        check(
            SyncError::Unanswered(ClientError::Connect {
                url: url(),
                source: std::io::ErrorKind::ConnectionRefused.into(),
            }),
            FailureKind::Unreachable,
        );
        check(
            SyncError::Unanswered(ClientError::ConnectionLost {
                url: url(),
                detail: "reset".into(),
            }),
            FailureKind::Unreachable,
        );
        let status = |status| SyncError::Status {
            request: format!("GET {}", url()),
            status,
            detail: String::new(),
        };
        check(status(401), FailureKind::Refused);
        check(status(403), FailureKind::Refused);
        check(status(500), FailureKind::PeerFailing);
        check(status(503), FailureKind::PeerFailing);
        check(status(429), FailureKind::PeerFailing);
        check(status(400), FailureKind::Other);
        check(
            SyncError::KeyMismatch {
                url: "http://10.0.0.5:9000".into(),
            },
            FailureKind::Other,
        );
        check(
            SyncError::Wire(WireError::missing("changes page", "epoch")),
            FailureKind::Other,
        );
        // A refusal by TLS is the peer refusing us, not the peer being away.
        check(
            SyncError::Unanswered(ClientError::Tls {
                url: url(),
                detail: "unknown issuer".into(),
            }),
            FailureKind::Refused,
        );
        assert_eq!(
            status(503).to_string(),
            "GET http://10.0.0.5:9000/federation/info answered 503"
        );
    }
}
