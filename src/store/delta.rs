//! What delta sync needs from the store: the version of every record for set
//! reconciliation, records fetched by id, a change feed filtered by node type, the
//! change notification long-polls wait on, and the purge of old tombstones.
//!
//! What the versions mean for reconciliation (digests, ranges, frames) is left to
//! `sync::reconcile`; the store only reads and writes.

use redb::{ReadableDatabase, ReadableTable};

use super::damage::{RecordTable, check_live, check_tombstone};
use super::error::StoreError;
use super::lattice::{ChangePage, Store};
use super::record::{self, Body, Record};
use super::tables::{CHANGES, NODES, TOMBSTONES};
use crate::model::{ContentHash, Version, wire_record_bytes};

/// One record's identity for reconciliation: which version of which content it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionEntry {
    pub id: String,
    pub version: Version,
    pub hash: ContentHash,
}

/// Every record version a filter selects, read in one snapshot.
#[derive(Debug, Clone, Default)]
pub struct VersionSnapshot {
    pub entries: Vec<VersionEntry>,
    /// The change sequence the snapshot covers: later changes have higher sequences.
    pub last_seq: u64,
}

/// Which records a peer exchanges: every type, or only some (`--types`). Tombstones
/// keep no type, so they pass every filter; a peer stores a few tombstones of types it
/// does not sync rather than miss a delete.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TypeFilter {
    pub types: Vec<String>,
}

impl TypeFilter {
    pub fn all() -> TypeFilter {
        TypeFilter::default()
    }

    pub fn only(types: &[String]) -> TypeFilter {
        TypeFilter {
            types: types.to_vec(),
        }
    }

    pub(crate) fn is_all(&self) -> bool {
        self.types.is_empty()
    }

    pub(crate) fn admits_type(&self, node_type: &str) -> bool {
        self.is_all() || self.types.iter().any(|wanted| wanted == node_type)
    }
}

/// The node type written second in the canonical bytes (after the marker and the id),
/// read without decoding the rest of the node.
fn canonical_type(canonical: &[u8]) -> Option<&str> {
    let rest = canonical.get(5..)?;
    let id_length = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
    let rest = rest.get(4 + id_length..)?;
    let type_length = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
    std::str::from_utf8(rest.get(4..4 + type_length)?).ok()
}

impl Store {
    /// The version and content hash of every live record and tombstone `filter`
    /// admits, with the sequence they are current at.
    ///
    /// Each live body is hashed and checked against its stored content hash: a damaged
    /// record is left out (and noted), so reconciliation sees it missing and fetches it.
    pub(crate) fn version_snapshot(
        &self,
        filter: &TypeFilter,
    ) -> Result<VersionSnapshot, StoreError> {
        let read = self.read()?;
        let mut snapshot = VersionSnapshot {
            entries: Vec::new(),
            // What it covers for certain: records of deferred commits are in it too,
            // but a crash could give their sequences to others (`store::durability`).
            last_seq: self.served_seq(),
        };
        for (table, live) in [(NODES, true), (TOMBSTONES, false)] {
            let table = read.open_table(table).map_err(self.fail())?;
            for entry in table.iter().map_err(self.fail())? {
                let (id, value) = entry.map_err(self.fail())?;
                let table_name = if live {
                    RecordTable::Nodes
                } else {
                    RecordTable::Tombstones
                };
                let (meta, body) = match record::decode(value.value()) {
                    Ok(decoded) => decoded,
                    Err(reason) => {
                        self.note_damage(table_name, id.value(), reason);
                        continue;
                    }
                };
                let hash_of_body = if live {
                    ContentHash::of(body)
                } else {
                    ContentHash::of(b"")
                };
                if hash_of_body != meta.hash {
                    let reason = format!(
                        "its bytes hash to {}, not to its content hash {}",
                        hash_of_body.to_prefixed(),
                        meta.hash.to_prefixed()
                    );
                    self.note_damage(table_name, id.value(), reason);
                    continue;
                }
                if live && !filter.is_all() {
                    let Some(node_type) = canonical_type(body) else {
                        self.note_damage(table_name, id.value(), "unreadable node type");
                        continue;
                    };
                    if !filter.admits_type(node_type) {
                        continue;
                    }
                }
                snapshot.entries.push(VersionEntry {
                    id: id.value().to_owned(),
                    version: meta.version,
                    hash: meta.hash,
                });
            }
        }
        Ok(snapshot)
    }

    /// The current records of `ids` (live or tombstone), in the order given; ids with no
    /// record, or a damaged one (noted), are left out.
    pub fn records(&self, ids: &[&str]) -> Result<Vec<Record>, StoreError> {
        let read = self.read()?;
        let nodes = read.open_table(NODES).map_err(self.fail())?;
        let tombstones = read.open_table(TOMBSTONES).map_err(self.fail())?;
        let mut found = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(value) = nodes.get(*id).map_err(self.fail())? {
                let (node, meta) = match check_live(id, value.value()) {
                    Ok(decoded) => decoded,
                    Err(reason) => {
                        self.note_damage(RecordTable::Nodes, id, reason);
                        continue;
                    }
                };
                found.push(Record {
                    id: (*id).to_owned(),
                    meta,
                    body: Body::Live(node),
                });
            } else if let Some(value) = tombstones.get(*id).map_err(self.fail())? {
                let (meta, deleted_at) = match check_tombstone(value.value()) {
                    Ok(decoded) => decoded,
                    Err(reason) => {
                        self.note_damage(RecordTable::Tombstones, id, reason);
                        continue;
                    }
                };
                found.push(Record {
                    id: (*id).to_owned(),
                    meta,
                    body: Body::Deleted { deleted_at },
                });
            }
        }
        Ok(found)
    }

    /// The `priority` each of `ids` is ranked by (0 when absent, and for tombstones), or
    /// `None` for an id with no record or a damaged one (noted). One record is decoded at
    /// a time and none is kept, so ranking many records costs a number each.
    pub(crate) fn priorities(&self, ids: &[&str]) -> Result<Vec<Option<i64>>, StoreError> {
        let read = self.read()?;
        let nodes = read.open_table(NODES).map_err(self.fail())?;
        let tombstones = read.open_table(TOMBSTONES).map_err(self.fail())?;
        let mut priorities = Vec::with_capacity(ids.len());
        for id in ids {
            let priority = if let Some(value) = nodes.get(*id).map_err(self.fail())? {
                match check_live(id, value.value()) {
                    Ok((node, _)) => Some(node.priority.unwrap_or(0)),
                    Err(reason) => {
                        self.note_damage(RecordTable::Nodes, id, reason);
                        None
                    }
                }
            } else if let Some(value) = tombstones.get(*id).map_err(self.fail())? {
                match check_tombstone(value.value()) {
                    Ok(_) => Some(0),
                    Err(reason) => {
                        self.note_damage(RecordTable::Tombstones, id, reason);
                        None
                    }
                }
            } else {
                None
            };
            priorities.push(priority);
        }
        Ok(priorities)
    }

    /// [`Store::changes_since`] for the records `filter` admits. Records it leaves out
    /// (and damaged ones, which are noted) still move `last_seq`, so a checkpoint passes
    /// over them; at most `20 × limit`
    /// change entries are looked at per page, so a filter that admits little cannot
    /// make one request scan the whole log.
    pub(crate) fn changes_since_filtered(
        &self,
        after_seq: u64,
        limit: usize,
        max_bytes: usize,
        filter: &TypeFilter,
    ) -> Result<ChangePage, StoreError> {
        let read = self.read()?;
        let changes = read.open_table(CHANGES).map_err(self.fail())?;
        let nodes = read.open_table(NODES).map_err(self.fail())?;
        let tombstones = read.open_table(TOMBSTONES).map_err(self.fail())?;
        let mut page = ChangePage {
            last_seq: after_seq,
            ..ChangePage::default()
        };
        let mut bytes = 0;
        let scan_limit = limit.saturating_mul(20).max(1);
        // The feed ends at the last durable commit: a peer's checkpoint never passes a
        // sequence a crash could give to another record (`store::durability`).
        let end = self.served_seq();
        if after_seq >= end {
            return Ok(page);
        }
        for (looked_at, entry) in changes
            .range(after_seq.saturating_add(1)..=end)
            .map_err(self.fail())?
            .enumerate()
        {
            let (seq, id) = entry.map_err(self.fail())?;
            if page.records.len() >= limit
                || (bytes >= max_bytes && !page.records.is_empty())
                || looked_at >= scan_limit
            {
                page.more = true;
                break;
            }
            let id = id.value();
            let record = if let Some(value) = nodes.get(id).map_err(self.fail())? {
                page.last_seq = seq.value();
                let (node, meta) = match check_live(id, value.value()) {
                    Ok(decoded) => decoded,
                    Err(reason) => {
                        self.note_damage(RecordTable::Nodes, id, reason);
                        continue;
                    }
                };
                if !filter.admits_type(&node.node_type) {
                    continue;
                }
                bytes += wire_record_bytes(id, Some(&node));
                Record {
                    id: id.to_owned(),
                    meta,
                    body: Body::Live(node),
                }
            } else if let Some(value) = tombstones.get(id).map_err(self.fail())? {
                page.last_seq = seq.value();
                let (meta, deleted_at) = match check_tombstone(value.value()) {
                    Ok(decoded) => decoded,
                    Err(reason) => {
                        self.note_damage(RecordTable::Tombstones, id, reason);
                        continue;
                    }
                };
                bytes += wire_record_bytes(id, None);
                Record {
                    id: id.to_owned(),
                    meta,
                    body: Body::Deleted { deleted_at },
                }
            } else {
                return Err(self.damaged(id, format!("change {} points at no record", seq.value())));
            };
            page.records.push(record);
        }
        Ok(page)
    }

    /// Notified after every commit that changed records (local writes, deletes and
    /// applied peer versions). A long-poll takes a listener from it, lets go of the store
    /// and waits; the listener does not borrow the store.
    pub fn changed(&self) -> &event_listener::Event {
        &self.changed
    }

    /// Notified after every commit of this instance's own writes and deletes (not of
    /// versions received from peers, so a node that receives does not push in turn).
    pub(crate) fn local_changed(&self) -> &event_listener::Event {
        &self.local_changed
    }

    /// Removes tombstones whose delete is older than `before_millis` (unix ms), with
    /// their change-log entries, in one transaction. Returns how many were removed.
    ///
    /// A peer that still holds the live record and has not seen the delete will hand the
    /// record back: with the tombstone gone, nothing here says it was deleted.
    pub(crate) fn purge_tombstones(&mut self, before_millis: u64) -> Result<u64, StoreError> {
        let mut doomed = Vec::new();
        {
            let read = self.db.begin_read().map_err(self.fail())?;
            let tombstones = read.open_table(TOMBSTONES).map_err(self.fail())?;
            for entry in tombstones.iter().map_err(self.fail())? {
                let (id, value) = entry.map_err(self.fail())?;
                let (meta, deleted_at) = record::decode_tombstone(value.value())
                    .map_err(|reason| self.damaged(id.value(), reason))?;
                if deleted_at < before_millis {
                    doomed.push((id.value().to_owned(), meta.seq));
                }
            }
        }
        if doomed.is_empty() {
            return Ok(0);
        }
        let txn = self.db.begin_write().map_err(self.fail())?;
        {
            let mut tombstones = txn.open_table(TOMBSTONES).map_err(self.fail())?;
            let mut changes = txn.open_table(CHANGES).map_err(self.fail())?;
            for (id, seq) in &doomed {
                tombstones.remove(id.as_str()).map_err(self.fail())?;
                changes.remove(*seq).map_err(self.fail())?;
            }
        }
        self.commit(txn, super::Commit::Durable)?;
        Ok(doomed.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Node, encode_node};

    #[test]
    fn the_node_type_is_read_from_canonical_bytes() {
        let node = Node {
            id: "some-id".into(),
            node_type: "template_node".into(),
            value: "v".into(),
            ..Node::default()
        };
        assert_eq!(canonical_type(&encode_node(&node)), Some("template_node"));
        assert_eq!(canonical_type(b"ARKN1\0\0"), None);
    }
}
