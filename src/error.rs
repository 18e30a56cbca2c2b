//! The crate-wide error: every failure reaches the user through `main` as one line on
//! stderr and an exit code from [`Error::exit_code`].

use std::fmt;
use std::path::PathBuf;

use crate::protocol::WireError;
use crate::store::StoreError;

/// Exit codes, documented in README.md ("Exit codes").
pub mod exit {
    pub const FAILURE: i32 = 1;
    pub const USAGE: i32 = 2;
    pub const STORE_BUSY: i32 = 3;
    pub const NOT_FOUND: i32 = 4;
    pub const INVALID_RECORDS: i32 = 5;
    /// The store is damaged: `verify` found damage, or the store cannot be used as it is
    /// (damaged pages, an empty file). `serve` exits with it too, and the systemd unit
    /// does not restart on it.
    pub const STORE_DAMAGED: i32 = 6;
    /// The request reached the running server but its answer was lost: it may have
    /// been applied. Every store command is safe to repeat.
    pub const MAY_HAVE_APPLIED: i32 = 7;
}

#[derive(Debug)]
pub enum Error {
    /// A flag or environment variable has an invalid value.
    Config(String),
    /// The command line asks for something that cannot be done (e.g. `add` without `--id`).
    Usage(String),
    Store(StoreError),
    /// A file could not be read or written.
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    /// An answer of the running server is not what the protocol says.
    Wire(WireError),
    /// An input document could not be read as JSON at all.
    Input(String),
    /// What was asked for does not exist; the message says what, in full (`node "x"
    /// not found`), so a running server's 404 answer carries it as it is.
    NotFound(String),
    /// An import finished, but some records were invalid (already reported one by one).
    InvalidRecords {
        invalid: u64,
    },
    /// The running server could not be asked (`may_have_applied` false: nothing was
    /// sent), or the request was sent and the answer lost (true).
    Server {
        message: String,
        may_have_applied: bool,
    },
    /// The running server answered a control-API call with an error status: a 400 is a
    /// usage error, and a caller that asked for a record tells a 404 by its status.
    Refused {
        status: u16,
        message: String,
    },
    /// `verify` found damage (already printed in its report).
    StoreDamaged(String),
    /// Anything else, already phrased for the user.
    Other(String),
    /// The failure was already printed (by the server that ran the command); exit with
    /// this code and print nothing more.
    Reported {
        code: i32,
    },
}

impl Error {
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Config(_) | Error::Usage(_) | Error::Refused { status: 400, .. } => exit::USAGE,
            Error::Store(StoreError::Locked { .. }) => exit::STORE_BUSY,
            Error::StoreDamaged(_)
            | Error::Store(
                StoreError::Damaged { .. }
                | StoreError::DamagedPages { .. }
                | StoreError::Unrepairable { .. }
                | StoreError::Empty { .. },
            ) => exit::STORE_DAMAGED,
            Error::NotFound(_) => exit::NOT_FOUND,
            Error::InvalidRecords { .. } => exit::INVALID_RECORDS,
            Error::Reported { code } => *code,
            Error::Server {
                may_have_applied: true,
                ..
            } => exit::MAY_HAVE_APPLIED,
            _ => exit::FAILURE,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config(message) => write!(f, "invalid configuration: {message}"),
            Error::Usage(message) => f.write_str(message),
            Error::Store(error) => error.fmt(f),
            Error::File { path, source } => write!(f, "{}: {source}", path.display()),
            Error::Wire(error) => error.fmt(f),
            Error::Input(message) => f.write_str(message),
            Error::NotFound(message) => f.write_str(message),
            Error::InvalidRecords { invalid } => {
                write!(f, "{invalid} invalid record(s) were skipped (see above)")
            }
            Error::Server {
                message,
                may_have_applied,
            } => {
                f.write_str(message)?;
                if *may_have_applied {
                    f.write_str(" (the request was sent: it may have been applied)")?;
                }
                Ok(())
            }
            Error::Other(message)
            | Error::StoreDamaged(message)
            | Error::Refused { message, .. } => f.write_str(message),
            Error::Reported { code } => write!(f, "failed with exit code {code}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Store(error) => Some(error),
            Error::File { source, .. } => Some(source),
            Error::Wire(error) => Some(error),
            _ => None,
        }
    }
}

impl From<WireError> for Error {
    fn from(error: WireError) -> Error {
        Error::Wire(error)
    }
}

impl From<StoreError> for Error {
    fn from(error: StoreError) -> Error {
        Error::Store(error)
    }
}
