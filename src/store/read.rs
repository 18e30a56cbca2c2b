//! Reads: single records, filtered scans over the indexes, the change feed, counts and
//! the conflict log. Each read is one redb read transaction, a consistent snapshot.

use std::collections::BTreeMap;

use redb::{
    ReadTransaction, ReadableDatabase, ReadableMultimapTable, ReadableTable, ReadableTableMetadata,
};

use super::damage::{RecordTable, check_live, check_tombstone};
use super::error::StoreError;
use super::lattice::{ChangePage, Conflict, Index, Query, Stats, Store};
use super::record::{Body, Record, RecordMeta};
use super::tables::{BY_CATEGORY, BY_LANGUAGE, BY_TYPE, CONFLICTS, NODES, TOMBSTONES};
use crate::model::{Hlc, InstanceId, Node, Version};

impl Store {
    pub(super) fn read(&self) -> Result<ReadTransaction, StoreError> {
        self.db.begin_read().map_err(self.fail())
    }

    /// The live node or tombstone stored for `id`. A damaged record is an error (and
    /// noted, see `store::damage`), never handed out.
    pub fn get(&self, id: &str) -> Result<Option<Record>, StoreError> {
        let read = self.read()?;
        let nodes = read.open_table(NODES).map_err(self.fail())?;
        if let Some(value) = nodes.get(id).map_err(self.fail())? {
            let (node, meta) = check_live(id, value.value())
                .map_err(|reason| self.damaged_record(RecordTable::Nodes, id, reason))?;
            return Ok(Some(Record {
                id: id.to_owned(),
                meta,
                body: Body::Live(node),
            }));
        }
        let tombstones = read.open_table(TOMBSTONES).map_err(self.fail())?;
        if let Some(value) = tombstones.get(id).map_err(self.fail())? {
            let (meta, deleted_at) = check_tombstone(value.value())
                .map_err(|reason| self.damaged_record(RecordTable::Tombstones, id, reason))?;
            return Ok(Some(Record {
                id: id.to_owned(),
                meta,
                body: Body::Deleted { deleted_at },
            }));
        }
        Ok(None)
    }

    /// Live nodes matching `query`, in id order.
    pub fn query(&self, query: &Query) -> Result<Vec<(Node, RecordMeta)>, StoreError> {
        let mut found = Vec::new();
        self.scan(query, |node, meta| {
            found.push((node, meta));
            true
        })?;
        Ok(found)
    }

    /// Calls `visit` for each live node matching `query` in id order until it returns
    /// `false` or `query.limit` nodes were visited. Uses an index when the query names a
    /// type, language or category. Damaged records are skipped and noted.
    pub fn scan(
        &self,
        query: &Query,
        mut visit: impl FnMut(Node, RecordMeta) -> bool,
    ) -> Result<(), StoreError> {
        let read = self.read()?;
        let nodes = read.open_table(NODES).map_err(self.fail())?;
        let search = query.search.as_ref().map(|text| text.to_lowercase());
        let limit = query.limit.unwrap_or(usize::MAX);
        let mut visited = 0;
        let mut consider = |id: &str, bytes: &[u8]| -> Result<bool, StoreError> {
            if visited >= limit {
                return Ok(false);
            }
            let (node, meta) = match check_live(id, bytes) {
                Ok(found) => found,
                Err(reason) => {
                    self.note_damage(RecordTable::Nodes, id, reason);
                    return Ok(true);
                }
            };
            if matches(&node, query, search.as_deref()) {
                visited += 1;
                return Ok(visit(node, meta) && visited < limit);
            }
            Ok(true)
        };
        let indexed = [
            (BY_TYPE, &query.node_type),
            (BY_LANGUAGE, &query.language),
            (BY_CATEGORY, &query.category),
        ]
        .into_iter()
        .find_map(|(index, key)| key.as_ref().map(|key| (index, key)));
        let after = query.after.as_deref().unwrap_or("");
        if let Some((index, key)) = indexed {
            let table = read.open_multimap_table(index).map_err(self.fail())?;
            for id in table.get(key.as_str()).map_err(self.fail())? {
                let id = id.map_err(self.fail())?;
                let id = id.value();
                if id <= after && query.after.is_some() {
                    continue;
                }
                let Some(value) = nodes.get(id).map_err(self.fail())? else {
                    return Err(self.damaged(id, "index entry without a node"));
                };
                if !consider(id, value.value())? {
                    break;
                }
            }
        } else {
            let range = match &query.after {
                Some(after) => nodes.range::<&str>((
                    std::ops::Bound::Excluded(after.as_str()),
                    std::ops::Bound::Unbounded,
                )),
                None => nodes.range::<&str>(..),
            }
            .map_err(self.fail())?;
            for entry in range {
                let (id, value) = entry.map_err(self.fail())?;
                if !consider(id.value(), value.value())? {
                    break;
                }
            }
        }
        Ok(())
    }

    /// Changes after sequence `after_seq`, at most `limit` records and `max_bytes` as
    /// counted by [`crate::model::wire_record_bytes`] plus one record: the page stops
    /// once it holds `max_bytes` (at least one record is returned if any is pending).
    pub fn changes_since(
        &self,
        after_seq: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<ChangePage, StoreError> {
        self.changes_since_filtered(
            after_seq,
            limit,
            max_bytes,
            &super::delta::TypeFilter::all(),
        )
    }

    /// Live records and tombstones: what a first contact compares with the peer's count
    /// (`sync::core::copy`), without counting the indexes as [`Store::stats`] does.
    pub fn record_count(&self) -> Result<u64, StoreError> {
        let read = self.read()?;
        let mut count = 0;
        for table in [NODES, TOMBSTONES] {
            count += read
                .open_table(table)
                .map_err(self.fail())?
                .len()
                .map_err(self.fail())?;
        }
        Ok(count)
    }

    /// Counts by type, language and category, and the size of the store file.
    pub fn stats(&self) -> Result<Stats, StoreError> {
        let read = self.read()?;
        let count_index = |index: Index| -> Result<BTreeMap<String, u64>, StoreError> {
            let table = read.open_multimap_table(index).map_err(self.fail())?;
            let mut counts = BTreeMap::new();
            for entry in table.iter().map_err(self.fail())? {
                let (key, values) = entry.map_err(self.fail())?;
                counts.insert(key.value().to_owned(), values.len());
            }
            Ok(counts)
        };
        Ok(Stats {
            nodes: read
                .open_table(NODES)
                .map_err(self.fail())?
                .len()
                .map_err(self.fail())?,
            tombstones: read
                .open_table(TOMBSTONES)
                .map_err(self.fail())?
                .len()
                .map_err(self.fail())?,
            conflicts: read
                .open_table(CONFLICTS)
                .map_err(self.fail())?
                .len()
                .map_err(self.fail())?,
            damaged: self.moved_aside()?,
            last_seq: self.last_seq,
            file_bytes: std::fs::metadata(&self.path)
                .map(|meta| meta.len())
                .unwrap_or(0),
            by_type: count_index(BY_TYPE)?,
            by_language: count_index(BY_LANGUAGE)?,
            by_category: count_index(BY_CATEGORY)?,
        })
    }

    /// The newest `limit` entries of the conflict log (all of them for `None`), newest
    /// first.
    pub fn conflicts(&self, limit: Option<usize>) -> Result<Vec<Conflict>, StoreError> {
        let read = self.read()?;
        let table = read.open_table(CONFLICTS).map_err(self.fail())?;
        let mut found = Vec::new();
        let entries = table.iter().map_err(self.fail())?.rev();
        for entry in entries.take(limit.unwrap_or(usize::MAX)) {
            let (number, value) = entry.map_err(self.fail())?;
            // The conflict log is local history, not part of the lattice: a damaged entry
            // is left out here and reported by `verify`.
            if let Ok(conflict) = decode_conflict(number.value(), value.value()) {
                found.push(conflict);
            }
        }
        Ok(found)
    }

    /// How many entries the conflict log holds.
    pub(crate) fn conflict_count(&self) -> Result<u64, StoreError> {
        let read = self.read()?;
        let table = read.open_table(CONFLICTS).map_err(self.fail())?;
        table.len().map_err(self.fail())
    }
}

fn matches(node: &Node, query: &Query, search_lower: Option<&str>) -> bool {
    let equal = |filter: &Option<String>, value: Option<&str>| {
        filter.as_deref().is_none_or(|wanted| value == Some(wanted))
    };
    equal(&query.node_type, Some(&node.node_type))
        && equal(&query.language, node.language.as_deref())
        && equal(&query.category, node.category.as_deref())
        && query
            .capability
            .as_ref()
            .is_none_or(|wanted| node.capabilities.iter().any(|have| have == wanted))
        && search_lower.is_none_or(|needle| {
            node.id.to_lowercase().contains(needle) || node.value.to_lowercase().contains(needle)
        })
}

pub(super) fn decode_conflict(number: u64, bytes: &[u8]) -> Result<Conflict, String> {
    let take = |range: std::ops::Range<usize>| bytes.get(range).ok_or("truncated conflict entry");
    let resolved_at = u64::from_be_bytes(take(0..8)?.try_into().expect("8 bytes"));
    let winner = Version {
        hlc: Hlc(u64::from_be_bytes(
            take(8..16)?.try_into().expect("8 bytes"),
        )),
        origin: InstanceId(take(16..48)?.try_into().expect("32 bytes")),
    };
    let id_length = u32::from_be_bytes(take(48..52)?.try_into().expect("4 bytes")) as usize;
    let id =
        String::from_utf8(take(52..52 + id_length)?.to_vec()).map_err(|_| "id is not UTF-8")?;
    let rest = &bytes[52 + id_length..];
    let (kind, value) = rest.split_first().ok_or("truncated conflict entry")?;
    let (meta, body) = if *kind == 0 {
        let (node, meta) = check_live(&id, value)?;
        (meta, Body::Live(node))
    } else {
        let (meta, deleted_at) = check_tombstone(value)?;
        (meta, Body::Deleted { deleted_at })
    };
    Ok(Conflict {
        number,
        resolved_at,
        winner,
        loser: Record { id, meta, body },
    })
}
