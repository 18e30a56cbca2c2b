//! Damaged records: stored bytes that no longer match their content hash, cannot be
//! decoded, or sit under another id than the node they hold. Reads skip them (a damaged
//! record is never served) and note them here; [`Store::quarantine_damaged`] moves them
//! aside so reconciliation finds them missing and fetches them again from a peer.
//!
//! What checks a signature and what a peer checkpoint looks like are left to the layers
//! above: they pass those in.
//!
//! # Implementation
//!
//! A record moved aside leaves its table, its change-log entry and its index entries and
//! goes, raw, into the `damaged` table (id -> table, time, reason, stored bytes), so
//! nothing is thrown away. The same transaction advances the change sequence (the
//! reconciliation set cached for that sequence no longer holds the record) and the
//! store's repair count. A checkpointed feed would never bring the record back, since
//! the peer's change for it lies behind the checkpoint: the sync layer keeps, per peer,
//! the repair count its checkpoint was made at, and reconciles again when it moved.

use redb::{
    ReadableMultimapTable, ReadableTable, ReadableTableMetadata, TableError, WriteTransaction,
};

use super::error::StoreError;
use super::lattice::{INDEXES, Store};
use super::record::{self, RecordMeta};
use super::tables::{CHANGES, CONFLICTS, DAMAGED, META, NODES, TOMBSTONES, meta_keys};
use crate::model::{ContentHash, Node};

/// The table a damaged record was found in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RecordTable {
    Nodes,
    Tombstones,
    Conflicts,
    Changes,
}

impl RecordTable {
    pub const ALL: [RecordTable; 4] = [
        RecordTable::Nodes,
        RecordTable::Tombstones,
        RecordTable::Conflicts,
        RecordTable::Changes,
    ];

    pub fn name(self) -> &'static str {
        match self {
            RecordTable::Nodes => "nodes",
            RecordTable::Tombstones => "tombstones",
            RecordTable::Conflicts => "conflicts",
            RecordTable::Changes => "changes",
        }
    }

    /// The table called `name`, as [`RecordTable::name`] writes it.
    pub(crate) fn from_name(name: &str) -> Option<RecordTable> {
        RecordTable::ALL
            .into_iter()
            .find(|table| table.name() == name)
    }

    fn code(self) -> u8 {
        self as u8
    }
}

/// One damaged record: where it is and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DamagedRecord {
    pub table: RecordTable,
    pub id: String,
    pub reason: String,
}

impl std::fmt::Display for DamagedRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "record {:?} in table {}: {}",
            self.id,
            self.table.name(),
            self.reason
        )
    }
}

/// Damage noticed by reads since the store was opened.
#[derive(Debug, Default)]
pub(super) struct DamageLog {
    /// Found by a read, not moved aside yet.
    found: Vec<DamagedRecord>,
    /// Moved aside by a write that met it, not reported yet.
    moved: Vec<DamagedRecord>,
    /// Every damaged record noticed since open, each counted once.
    total: u64,
}

/// What a check of every stored record found (see [`Store::verify_records`]); `verify`
/// reports it as it is (`service::RecordsReport`), so it holds nothing of redb's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordCheck {
    pub nodes: u64,
    pub tombstones: u64,
    pub conflicts: u64,
    pub changes: u64,
    /// Records with a valid signature.
    pub signed: u64,
    /// Records whose signature could not be checked: none, or no key for the author.
    pub unchecked_signatures: u64,
    pub damaged: Vec<DamagedRecord>,
    /// Records moved aside earlier, kept in the `damaged` table.
    pub moved_aside: u64,
}

/// What a signature check says about one stored record.
#[derive(Debug)]
pub enum SignatureCheck {
    Valid,
    /// No signature, or no key for its author: nothing to check against.
    Unchecked,
    Invalid(String),
}

/// What a stored record holds besides its metadata, as a signature check needs it.
#[derive(Debug, Clone, Copy)]
pub enum StoredBody<'a> {
    /// A live record's canonical bytes.
    Live(&'a [u8]),
    Deleted {
        deleted_at: u64,
    },
}

/// Checks the signature of a record: its id, body and metadata.
pub type SignatureChecker<'a> = &'a dyn Fn(&str, StoredBody<'_>, &RecordMeta) -> SignatureCheck;

/// Checks a live record's stored bytes: the body hashes to the stored content hash and
/// decodes to a node with the id it is stored under.
pub(super) fn check_live(id: &str, bytes: &[u8]) -> Result<(Node, RecordMeta), String> {
    let (meta, body) = record::decode(bytes)?;
    let actual = ContentHash::of(body);
    if actual != meta.hash {
        return Err(format!(
            "its bytes hash to {}, not to its content hash {}",
            actual.to_prefixed(),
            meta.hash.to_prefixed()
        ));
    }
    let node = record::decode_live_body(&meta, body)?;
    if node.id != id {
        return Err(format!("it holds node {:?}", node.id));
    }
    Ok((node, meta))
}

/// Checks a tombstone's stored bytes: a header with the hash of nothing and a time.
pub(super) fn check_tombstone(bytes: &[u8]) -> Result<(RecordMeta, u64), String> {
    let (meta, deleted_at) = record::decode_tombstone(bytes)?;
    if meta.hash != ContentHash::of(b"") {
        return Err(format!(
            "a tombstone's content hash must be that of nothing, not {}",
            meta.hash.to_prefixed()
        ));
    }
    if bytes.len() != record::encoded_len(&meta, 8) {
        return Err("a tombstone's body must be 8 bytes".into());
    }
    Ok((meta, deleted_at))
}

impl Store {
    /// Notes a damaged record found by a read; it is skipped by the read and moved
    /// aside by the next [`Store::quarantine_damaged`].
    pub(super) fn note_damage(&self, table: RecordTable, id: &str, reason: impl Into<String>) {
        let mut log = self.damage.borrow_mut();
        if log
            .found
            .iter()
            .any(|known| known.table == table && known.id == id)
        {
            return;
        }
        log.total += 1;
        log.found.push(DamagedRecord {
            table,
            id: id.to_owned(),
            reason: reason.into(),
        });
    }

    /// Damaged records noticed since the store was opened.
    pub(crate) fn damaged_found(&self) -> u64 {
        self.damage.borrow().total
    }

    /// Whether damage was noticed that is not moved aside or reported yet.
    pub(crate) fn has_damage_to_handle(&self) -> bool {
        let log = self.damage.borrow();
        !log.found.is_empty() || !log.moved.is_empty()
    }

    /// Moves every damaged record noticed so far out of the lattice into the `damaged`
    /// table, in one transaction that also advances the change sequence and the repair
    /// count ([`Store::repairs`]), so the next sync reconciles and fetches the records
    /// again. Returns the records handled since the last call, for the caller to report.
    pub(crate) fn quarantine_damaged(
        &mut self,
        now: u64,
    ) -> Result<Vec<DamagedRecord>, StoreError> {
        let (found, moved) = {
            let mut log = self.damage.borrow_mut();
            (
                std::mem::take(&mut log.found),
                std::mem::take(&mut log.moved),
            )
        };
        let mut handled = moved;
        if found.is_empty() {
            return Ok(handled);
        }
        let txn = self.db.begin_write().map_err(self.fail())?;
        let mut removed_any = false;
        for damaged in found {
            // One replaced by a peer's version since is mended, not moved.
            if self.move_aside_in(&txn, &damaged, now)? {
                removed_any = true;
                handled.push(damaged);
            }
        }
        let last_seq = self.last_seq + u64::from(removed_any);
        let repairs = self.repairs + u64::from(removed_any);
        let clock = self.clock.clone();
        self.write_counters(&txn, &clock, last_seq, self.last_conflict)?;
        {
            let mut meta = txn.open_table(META).map_err(self.fail())?;
            meta.insert(meta_keys::REPAIRS, &repairs.to_be_bytes()[..])
                .map_err(self.fail())?;
        }
        self.commit(txn, super::Commit::Durable)?;
        self.repairs = repairs;
        self.advance_seq(last_seq);
        Ok(handled)
    }

    /// How many times damaged records were moved aside from this store. A peer
    /// checkpoint made at another count may lie past changes for records that are now
    /// missing, so the sync layer reconciles instead of following it.
    pub(crate) fn repairs(&self) -> u64 {
        self.repairs
    }

    /// Inside a write that met a damaged record it is about to replace: moves it aside
    /// at once and keeps it for the next report.
    pub(super) fn move_aside_now(
        &self,
        txn: &WriteTransaction,
        damaged: DamagedRecord,
        now: u64,
    ) -> Result<(), StoreError> {
        let mut log = self.damage.borrow_mut();
        let noted = log.found.len();
        log.found
            .retain(|known| !(known.table == damaged.table && known.id == damaged.id));
        if log.found.len() == noted {
            log.total += 1;
        }
        drop(log);
        self.move_aside_in(txn, &damaged, now)?;
        self.damage.borrow_mut().moved.push(damaged);
        Ok(())
    }

    /// Removes a damaged record from its table, the change log and the indexes, keeping
    /// its bytes in the `damaged` table. `false` if it is no longer damaged (a peer's
    /// version replaced it since) or no longer there.
    fn move_aside_in(
        &self,
        txn: &WriteTransaction,
        damaged: &DamagedRecord,
        now: u64,
    ) -> Result<bool, StoreError> {
        let id = damaged.id.as_str();
        let raw = match damaged.table {
            RecordTable::Nodes | RecordTable::Tombstones => {
                let live = damaged.table == RecordTable::Nodes;
                let mut table = txn
                    .open_table(if live { NODES } else { TOMBSTONES })
                    .map_err(self.fail())?;
                let Some(raw) = table
                    .get(id)
                    .map_err(self.fail())?
                    .map(|value| value.value().to_vec())
                else {
                    return Ok(false);
                };
                let still_damaged = if live {
                    check_live(id, &raw).is_err()
                } else {
                    check_tombstone(&raw).is_err()
                };
                if !still_damaged {
                    return Ok(false);
                }
                table.remove(id).map_err(self.fail())?;
                raw
            }
            RecordTable::Conflicts | RecordTable::Changes => return Ok(false),
        };
        // The change-log entry is found by id: a damaged header may name any sequence.
        let mut changes = txn.open_table(CHANGES).map_err(self.fail())?;
        let stale: Vec<u64> = changes
            .iter()
            .map_err(self.fail())?
            .filter_map(Result::ok)
            .filter(|(_, entry_id)| entry_id.value() == id)
            .map(|(seq, _)| seq.value())
            .collect();
        for seq in stale {
            changes.remove(seq).map_err(self.fail())?;
        }
        // Index entries are found by key for the same reason: the body may not decode.
        for index in INDEXES {
            let mut table = txn.open_multimap_table(index).map_err(self.fail())?;
            let keys: Vec<String> = table
                .iter()
                .map_err(self.fail())?
                .filter_map(Result::ok)
                .map(|(key, _)| key.value().to_owned())
                .collect();
            for key in keys {
                table.remove(key.as_str(), id).map_err(self.fail())?;
            }
        }
        let mut value = Vec::with_capacity(1 + 8 + 4 + damaged.reason.len() + raw.len());
        value.push(damaged.table.code());
        value.extend_from_slice(&now.to_be_bytes());
        value.extend_from_slice(&(damaged.reason.len() as u32).to_be_bytes());
        value.extend_from_slice(damaged.reason.as_bytes());
        value.extend_from_slice(&raw);
        let mut aside = txn.open_table(DAMAGED).map_err(self.fail())?;
        aside.insert(id, value.as_slice()).map_err(self.fail())?;
        Ok(true)
    }

    /// How many records were moved aside as damaged over the store's life.
    pub(crate) fn moved_aside(&self) -> Result<u64, StoreError> {
        let read = self.read()?;
        match read.open_table(DAMAGED) {
            Ok(table) => table.len().map_err(self.fail()),
            // A store made before the table existed has moved nothing aside.
            Err(TableError::TableDoesNotExist(_)) => Ok(0),
            Err(error) => Err((self.fail())(error)),
        }
    }

    /// Reads every stored record and checks it: hashes and ids of live records,
    /// tombstones, conflict-log entries, that every change-log entry points at its
    /// record, and (through `check_signature`) every signature. Records whose bytes do
    /// not match their hash are also noted for [`Store::quarantine_damaged`].
    pub(crate) fn verify_records(
        &self,
        check_signature: SignatureChecker<'_>,
    ) -> Result<RecordCheck, StoreError> {
        let read = self.read()?;
        let mut check = RecordCheck::default();
        // Records whose bytes do not match their hash are noted to be moved aside; a bad
        // signature over matching bytes, a damaged conflict entry or change-log entry
        // is only reported: fetching the record again is not known to mend those, and
        // a change in how signatures are checked must not move a whole store aside.
        let damaged = |check: &mut RecordCheck, table, id: &str, reason: String| {
            check.damaged.push(DamagedRecord {
                table,
                id: id.to_owned(),
                reason,
            });
        };
        let mut sequences = std::collections::HashMap::new();
        let signature =
            |check: &mut RecordCheck, id: &str, body: StoredBody<'_>, meta: &RecordMeta| {
                match check_signature(id, body, meta) {
                    SignatureCheck::Valid => {
                        check.signed += 1;
                        None
                    }
                    SignatureCheck::Unchecked => {
                        check.unchecked_signatures += 1;
                        None
                    }
                    SignatureCheck::Invalid(reason) => Some(format!("signature: {reason}")),
                }
            };
        let nodes = read.open_table(NODES).map_err(self.fail())?;
        for entry in nodes.iter().map_err(self.fail())? {
            let (id, value) = entry.map_err(self.fail())?;
            let (id, bytes) = (id.value(), value.value());
            check.nodes += 1;
            match check_live(id, bytes) {
                Err(reason) => {
                    self.note_damage(RecordTable::Nodes, id, reason.clone());
                    damaged(&mut check, RecordTable::Nodes, id, reason);
                }
                Ok((_, meta)) => {
                    sequences.insert(id.to_owned(), meta.seq);
                    let body = record::decode(bytes).map(|(_, body)| body).unwrap_or(&[]);
                    if let Some(reason) = signature(&mut check, id, StoredBody::Live(body), &meta) {
                        damaged(&mut check, RecordTable::Nodes, id, reason);
                    }
                }
            }
        }
        let tombstones = read.open_table(TOMBSTONES).map_err(self.fail())?;
        for entry in tombstones.iter().map_err(self.fail())? {
            let (id, value) = entry.map_err(self.fail())?;
            let id = id.value();
            check.tombstones += 1;
            match check_tombstone(value.value()) {
                Err(reason) => {
                    self.note_damage(RecordTable::Tombstones, id, reason.clone());
                    damaged(&mut check, RecordTable::Tombstones, id, reason);
                }
                Ok((meta, deleted_at)) => {
                    sequences.insert(id.to_owned(), meta.seq);
                    let body = StoredBody::Deleted { deleted_at };
                    if let Some(reason) = signature(&mut check, id, body, &meta) {
                        damaged(&mut check, RecordTable::Tombstones, id, reason);
                    }
                }
            }
        }
        let conflicts = read.open_table(CONFLICTS).map_err(self.fail())?;
        for entry in conflicts.iter().map_err(self.fail())? {
            let (number, value) = entry.map_err(self.fail())?;
            check.conflicts += 1;
            if let Err(reason) = super::read::decode_conflict(number.value(), value.value()) {
                let key = format!("conflict {}", number.value());
                damaged(&mut check, RecordTable::Conflicts, &key, reason);
            }
        }
        let changes = read.open_table(CHANGES).map_err(self.fail())?;
        for entry in changes.iter().map_err(self.fail())? {
            let (seq, id) = entry.map_err(self.fail())?;
            check.changes += 1;
            let (seq, id) = (seq.value(), id.value());
            let known = sequences.get(id).copied();
            let bad = check
                .damaged
                .iter()
                .any(|record| record.id == id && record.table != RecordTable::Changes);
            if !bad && known != Some(seq) {
                let reason = match known {
                    None => format!("change {seq} points at no record"),
                    Some(current) => format!("change {seq} points at a record of change {current}"),
                };
                damaged(&mut check, RecordTable::Changes, id, reason);
            }
        }
        check.moved_aside = self.moved_aside()?;
        Ok(check)
    }
}
