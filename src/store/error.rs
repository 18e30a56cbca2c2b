//! Errors from opening, reading and writing the store.

use std::fmt;
use std::path::PathBuf;

/// What went wrong in the store. Messages name the store file.
#[derive(Debug)]
pub enum StoreError {
    /// Another process holds the store open (redb takes an exclusive file lock).
    Locked { path: PathBuf },
    /// The state dir or the store file cannot be created or opened.
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file was written by a newer ark-lattice, or is not ours.
    Schema { path: PathBuf, found: String },
    /// The file is not a readable redb database, or redb needs an upgrade step.
    Unreadable { path: PathBuf, reason: String },
    /// The store file exists but is empty: a lost store, not a new one.
    Empty { path: PathBuf },
    /// redb's page check found pages that do not match their checksums.
    DamagedPages { path: PathBuf, reason: String },
    /// redb found the file damaged when opening it and could not repair it (a store
    /// that was not closed cleanly is repaired at open, which reads every page).
    Unrepairable { path: PathBuf, reason: String },
    /// A storage operation failed after the store was open.
    Storage {
        path: PathBuf,
        source: StorageFailure,
    },
    /// A stored record cannot be decoded.
    Damaged {
        path: PathBuf,
        key: String,
        reason: String,
    },
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Locked { path } => write!(
                f,
                "store {} is in use by another ark-lattice process (is `ark-lattice serve` running on it?)",
                path.display()
            ),
            StoreError::Io { path, source } => {
                write!(f, "cannot open store {}: {source}", path.display())
            }
            StoreError::Schema { path, found } => write!(
                f,
                "store {} has schema {found}, this ark-lattice reads schema {}; use a newer ark-lattice or another --data-dir",
                path.display(),
                super::SCHEMA_VERSION
            ),
            StoreError::Unreadable { path, reason } => {
                write!(f, "store {} cannot be read: {reason}", path.display())
            }
            StoreError::Empty { path } => write!(
                f,
                "store {} is an empty file (0 bytes), so it holds no lattice and was left as it is; \
                 if this node never held data, delete the file and start again; if it did, restore \
                 the file from a backup, or delete it and run `ark-lattice federation sync` with a \
                 peer to fetch the lattice again",
                path.display()
            ),
            StoreError::DamagedPages { path, reason } => write!(
                f,
                "store {} is damaged (redb's page check: {reason}); run `ark-lattice verify` to see \
                 what is damaged (it moves damaged records aside, and peers bring them back); if \
                 other pages are damaged, move the file away and fetch the lattice again from a \
                 peer with `ark-lattice federation sync` (see README, \"A damaged store\")",
                path.display()
            ),
            StoreError::Unrepairable { path, reason } => write!(
                f,
                "store {} is damaged and redb could not repair it when opening it ({reason}); \
                 move the file away and fetch the lattice again from a peer with \
                 `ark-lattice federation sync`, or restore a backup (see README, \"A damaged store\")",
                path.display()
            ),
            StoreError::Storage { path, source } => {
                write!(f, "store {}: {source}", path.display())
            }
            StoreError::Damaged { path, key, reason } => {
                write!(
                    f,
                    "store {}: record {key:?} is damaged: {reason}",
                    path.display()
                )
            }
        }
    }
}

/// What the storage engine said when an operation failed. Opaque, so no caller depends
/// on redb: only `store` names it (ARCHITECTURE.md, invariants).
#[derive(Debug)]
pub struct StorageFailure(redb::Error);

impl StorageFailure {
    pub(super) fn new(error: impl Into<redb::Error>) -> StorageFailure {
        StorageFailure(error.into())
    }
}

impl fmt::Display for StorageFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for StorageFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::Io { source, .. } => Some(source),
            StoreError::Storage { source, .. } => Some(source),
            _ => None,
        }
    }
}
