//! The crate-wide error: every failure reaches the user through `main` as one line on
//! stderr and an exit code from [`Error::exit_code`].

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::protocol::WireError;
use crate::store::StoreError;
use crate::trust::{KeyError, KeyFileError};

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
    /// An operating-system call other than a file's failed; `action` says which, as
    /// the start of the message (`cannot watch for signals`).
    Io {
        action: String,
        source: std::io::Error,
    },
    /// The port to listen on is taken; `fallback` is whether `--port-fallback` tried
    /// the next ones too.
    PortInUse {
        ip: IpAddr,
        port: u16,
        fallback: bool,
    },
    /// The node's key file cannot be read, written or trusted.
    KeyFile(KeyFileError),
    /// A new key cannot be made (no randomness from the operating system).
    Key(KeyError),
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
    /// A control operation was refused, by the running server's control API or by the
    /// same operation run in this process: `status` is the HTTP status the API answers
    /// it with. A 400 is a usage error, and a caller that asked for a record tells a 404
    /// by its status.
    Refused {
        status: u16,
        message: String,
    },
    /// An export through the running server lost it after `written` nodes were
    /// written: not an unreachable server to try again on the freed store, which would
    /// write them twice.
    IncompleteExport {
        written: u64,
        cause: Box<Error>,
    },
    /// `federation sync` synced every target it could, and `failed` of `total` failed
    /// (each is named in what it printed).
    SyncFailed {
        failed: usize,
        total: usize,
    },
    /// The background server `federation start` began exited before it listened;
    /// `log_tail` is the end of its log.
    ServerExited {
        status: std::process::ExitStatus,
        log_tail: String,
    },
    /// `federation start` saw no server listening, or `federation stop` saw the server
    /// still running, after `waited`.
    ServerTimedOut {
        stopping: bool,
        pid: u32,
        waited: Duration,
        log: PathBuf,
    },
    /// `verify` found damage (already printed in its report).
    StoreDamaged(String),
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
            Error::Io { action, source } => write!(f, "{action}: {source}"),
            Error::PortInUse { ip, port, fallback } => write!(
                f,
                "port {port} on {ip} is already in use (another ark-lattice or ARK server?); choose another with --port or FEDERATION_PORT{}",
                if *fallback {
                    ""
                } else {
                    ", or pass --port-fallback"
                }
            ),
            Error::KeyFile(error) => error.fmt(f),
            Error::Key(error) => error.fmt(f),
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
            Error::StoreDamaged(message) | Error::Refused { message, .. } => f.write_str(message),
            Error::IncompleteExport { written, cause } => write!(
                f,
                "the export is incomplete: {written} node(s) were written, then {cause}"
            ),
            Error::SyncFailed { failed, total } => {
                write!(f, "{failed} of {total} peer sync(s) failed")
            }
            Error::ServerExited { status, log_tail } => {
                write!(
                    f,
                    "the server exited ({status}) before listening: {log_tail}"
                )
            }
            Error::ServerTimedOut {
                stopping: false,
                waited,
                log,
                ..
            } => write!(
                f,
                "the server did not start within {} s; see {}",
                waited.as_secs(),
                log.display()
            ),
            Error::ServerTimedOut {
                stopping: true,
                pid,
                waited,
                ..
            } => write!(
                f,
                "the server (pid {pid}) did not stop within {} s",
                waited.as_secs()
            ),
            Error::Reported { code } => write!(f, "failed with exit code {code}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Store(error) => Some(error),
            Error::File { source, .. } | Error::Io { source, .. } => Some(source),
            Error::KeyFile(error) => Some(error),
            Error::IncompleteExport { cause, .. } => Some(cause.as_ref()),
            Error::Key(error) => Some(error),
            Error::Wire(error) => Some(error),
            _ => None,
        }
    }
}

impl From<KeyFileError> for Error {
    fn from(error: KeyFileError) -> Error {
        Error::KeyFile(error)
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
