//! [`OpError`]: why a service operation failed, in the three ways its callers branch on:
//! the request was wrong (the CLI's usage error, HTTP 400), what it names does not exist
//! (404), or the instance failed (500).

use crate::error::Error;
use crate::protocol::WireError;
use crate::store::StoreError;

#[derive(Debug)]
pub(crate) enum OpError {
    /// The request was wrong: a bad URL, key, tier, interval or answer from a peer.
    Invalid(String),
    /// The peer or record it names is not there.
    NotFound(String),
    /// The store or the instance failed.
    Failed(String),
}

impl OpError {
    pub(crate) fn message(&self) -> &str {
        match self {
            OpError::Invalid(message) | OpError::NotFound(message) | OpError::Failed(message) => {
                message
            }
        }
    }
}

impl std::fmt::Display for OpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())
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
        OpError::Failed(error.to_string())
    }
}

impl From<Error> for OpError {
    fn from(error: Error) -> OpError {
        match &error {
            Error::Usage(_) | Error::Config(_) | Error::Input(_) => {
                OpError::Invalid(error.to_string())
            }
            Error::NotFound(_) => OpError::NotFound(error.to_string()),
            _ => OpError::Failed(error.to_string()),
        }
    }
}

/// The CLI's error for a failed operation: a wrong request is a usage error.
impl From<OpError> for Error {
    fn from(error: OpError) -> Error {
        match error {
            OpError::Invalid(message) => Error::Usage(message),
            OpError::NotFound(message) | OpError::Failed(message) => Error::Other(message),
        }
    }
}
