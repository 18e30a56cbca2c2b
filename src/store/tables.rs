//! The redb tables. Changing a key or value type here changes the schema: bump
//! `SCHEMA_VERSION` and say how old files are read.

use redb::{MultimapTableDefinition, TableDefinition};

/// id -> record (header + canonical node bytes).
pub(crate) const NODES: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("nodes");
/// id -> record (header + deleted_at).
pub(crate) const TOMBSTONES: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("tombstones");
/// change sequence -> id. Each id appears once, under the sequence of its latest change.
pub(crate) const CHANGES: TableDefinition<'_, u64, &str> = TableDefinition::new("changes");
/// Secondary indexes: field value -> ids.
pub(crate) const BY_TYPE: MultimapTableDefinition<'_, &str, &str> =
    MultimapTableDefinition::new("index_type");
pub(crate) const BY_LANGUAGE: MultimapTableDefinition<'_, &str, &str> =
    MultimapTableDefinition::new("index_language");
pub(crate) const BY_CATEGORY: MultimapTableDefinition<'_, &str, &str> =
    MultimapTableDefinition::new("index_category");
/// conflict number -> the losing version of a record (see `Conflict`).
pub(crate) const CONFLICTS: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("conflicts");
/// Instance metadata: schema version, instance id and type, store epoch, clock, sequence.
pub(crate) const META: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("meta");
/// Per-peer sync state (checkpoints, stats), owned by the sync layer as opaque bytes.
pub(crate) const PEERS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("peers");
/// Instance id (hex) -> trust entry, owned by the trust layer as opaque bytes.
pub(crate) const TRUST: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("trust");
/// Instance id (hex) -> author public key (32 bytes), learned from verified records so a
/// relay can forward them with the author's key.
pub(crate) const AUTHOR_KEYS: TableDefinition<'_, &str, &[u8]> =
    TableDefinition::new("author_keys");

/// Record id -> a received version held back for a reason that can go away (its author
/// not trusted yet, its clock ahead), owned by `sync` as opaque bytes.
pub(crate) const HELD: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("held");
/// id -> a record moved aside as damaged: u8 table, u64 time, u32 reason length,
/// reason, the stored bytes as found. Written only by `store::damage`.
pub(crate) const DAMAGED: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("damaged");

pub(crate) mod meta_keys {
    pub const SCHEMA: &str = "schema_version";
    pub const INSTANCE_ID: &str = "instance_id";
    pub const EPOCH: &str = "store_epoch";
    pub const CLOCK: &str = "clock_high_water";
    pub const LAST_SEQ: &str = "last_seq";
    pub const LAST_CONFLICT: &str = "last_conflict";
    /// How many times damaged records were moved aside (`store::damage`).
    pub const REPAIRS: &str = "repairs";
}
