//! The lattice store: one redb file in the state dir holding nodes, tombstones, the
//! change log, secondary indexes, the conflict log and instance metadata.
//!
//! This is the only module that imports redb. Everything above it sees [`Store`] and
//! plain records from [`crate::model`].

mod error;
mod record;
mod store;
mod tables;

pub use error::StoreError;
pub use record::{Body, Record, RecordMeta};
pub use store::{
    ApplyOutcome, ChangePage, Conflict, Query, RemoteRecord, Stats, Store, StoreOptions,
    WriteSummary, SCHEMA_VERSION,
};
