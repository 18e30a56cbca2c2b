//! The lattice store: one redb file in the state dir holding nodes, tombstones, the
//! change log, secondary indexes, the conflict log and instance metadata.
//!
//! This is the only module that imports redb. Everything above it sees [`Store`] and
//! plain records from [`crate::model`].

mod damage;
mod delta;
mod durability;
mod error;
mod lattice;
mod migrate;
mod read;
mod record;
mod state;
mod tables;
mod write_tables;

pub use damage::{
    DamagedRecord, RecordCheck, RecordTable, SignatureCheck, SignatureChecker, StoredBody,
};
pub use delta::{TypeFilter, VersionEntry, VersionSnapshot};
pub use durability::Commit;
pub use error::{StorageFailure, StoreError};
pub use lattice::{
    ApplyOutcome, ChangePage, Conflict, Deletion, PageCheck, Query, RemoteRecord, SCHEMA_VERSION,
    Signer, Stats, Store, StoreOptions, WriteSummary,
};
pub use record::{Body, Record, RecordMeta};
pub use state::StateTable;

#[cfg(test)]
mod tests;
