//! [`OpError`]: why a service operation failed, in the three ways its callers branch on:
//! the request was wrong (the CLI's usage error, HTTP 400), what it names does not exist
//! (404), or the instance failed (500, and the CLI's exit code of that failure).

use crate::error::Error;
use crate::protocol::WireError;
use crate::store::StoreError;

#[derive(Debug)]
pub(crate) enum OpError {
    /// The request was wrong: a bad URL, key, tier, interval or answer from a peer.
    Invalid(String),
    /// The peer or record it names is not there.
    NotFound(String),
    /// The store or the instance failed; the error keeps its kind, so a store in use or
    /// damaged ends the CLI with that exit code.
    Failed(Error),
}

impl OpError {
    /// The HTTP status the control API answers this failure with.
    pub(crate) fn status(&self) -> u16 {
        match self {
            OpError::Invalid(_) => 400,
            OpError::NotFound(_) => 404,
            OpError::Failed(_) => 500,
        }
    }
}

impl std::fmt::Display for OpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpError::Invalid(message) | OpError::NotFound(message) => f.write_str(message),
            OpError::Failed(error) => error.fmt(f),
        }
    }
}

impl std::error::Error for OpError {}

impl From<WireError> for OpError {
    fn from(error: WireError) -> OpError {
        OpError::Invalid(error.to_string())
    }
}

impl From<StoreError> for OpError {
    fn from(error: StoreError) -> OpError {
        OpError::Failed(Error::Store(error))
    }
}

impl From<Error> for OpError {
    fn from(error: Error) -> OpError {
        match error {
            Error::Usage(_) | Error::Config(_) | Error::Input(_) => {
                OpError::Invalid(error.to_string())
            }
            Error::NotFound(message) => OpError::NotFound(message),
            error => OpError::Failed(error),
        }
    }
}

/// The CLI's error for a failed operation: the same as the running server's refusal of
/// it, so a command ends the same way with or without a server.
impl From<OpError> for Error {
    fn from(error: OpError) -> Error {
        match error {
            OpError::Invalid(message) => Error::Usage(message),
            OpError::NotFound(message) => Error::Refused {
                status: 404,
                message,
            },
            OpError::Failed(error) => error,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::exit;
    use std::path::PathBuf;

    #[test]
    fn a_failed_operation_keeps_its_kind_for_the_cli_and_the_api() {
        fn check(error: OpError, status: u16, exit_code: i32) {
            assert_eq!(error.status(), status, "{error}");
            let message = error.to_string();
            let error = Error::from(error);
            assert_eq!(error.exit_code(), exit_code, "{error}");
            assert_eq!(error.to_string(), message);
        }
        check(
            OpError::Invalid("peer URL: no host".into()),
            400,
            exit::USAGE,
        );
        check(
            OpError::from(Error::Usage("--interval: not a number".into())),
            400,
            exit::USAGE,
        );
        // As through a running server, whose 404 is a refusal (exit code 1).
        check(
            OpError::NotFound("peer http://a:1 is not in the peer list".into()),
            404,
            exit::FAILURE,
        );
        let path = PathBuf::from("/tmp/lattice.redb");
        check(
            OpError::from(StoreError::Locked { path: path.clone() }),
            500,
            exit::STORE_BUSY,
        );
        check(
            OpError::from(StoreError::Empty { path }),
            500,
            exit::STORE_DAMAGED,
        );
        let wire = OpError::from(WireError::missing("the answer", "peer"));
        assert!(matches!(&wire, OpError::Invalid(message) if message.contains("`peer`")));
    }
}
