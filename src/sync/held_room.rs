//! The held table's bounds: at most so many records and so many bytes
//! (`ARK_MAX_HELD_RECORDS`, `ARK_MAX_HELD_MB`), so a peer serving records nobody here
//! accepts cannot grow the store without end, while what it displaces is fetched again
//! rather than lost (issue 11).
//!
//! # Implementation
//!
//! An index of the table (id -> when held, size, reason, author, peer) is built from the
//! table the first time it is needed and kept in step by every write, all of which go
//! through the syncer; it answers the counts of `federation status` and `/metrics` and
//! picks the oldest entries to drop without reading the table again.
//!
//! When new entries would pass a bound, the oldest are dropped in the transaction that
//! writes the new ones, and the table's marker entry (key `""`, never a record id)
//! counts them: `drops` ever, `waiting` until fetched again. A peer's checkpoints
//! remember `drops` as of their last reconciliation (`PeerState::held_drops`). When the
//! two differ and the table is back under half of both bounds (an author accepted, its
//! records applied), the next sync with that peer reconciles, which fetches every
//! version we lack, the dropped ones included. The half keeps a table full of records
//! nobody accepts from being fetched, dropped and fetched again at every sync.

use std::collections::{BTreeMap, BTreeSet};

use miniserde::json::{self, Number, Object, Value};

use super::client::Syncer;
use super::held::{Held, HeldCounts, HoldReason};
use crate::protocol::{Fields, parse_object};
use crate::store::{StateTable, StoreError};

/// The held table's key of the marker entry. Record ids are 1 to 200 characters.
pub(super) const MARKER_KEY: &str = "";

/// How much the held table may keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeldLimits {
    pub records: usize,
    pub bytes: usize,
}

impl Default for HeldLimits {
    fn default() -> HeldLimits {
        HeldLimits {
            records: crate::config::DEFAULT_MAX_HELD_RECORDS,
            bytes: crate::config::DEFAULT_MAX_HELD_MB as usize * 1024 * 1024,
        }
    }
}

/// Held records dropped for room: ever, and not yet fetched again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HeldMarker {
    pub drops: u64,
    pub waiting: u64,
}

impl HeldMarker {
    pub(super) fn encode(&self) -> Vec<u8> {
        let mut object = Object::new();
        object.insert("drops".into(), Value::Number(Number::U64(self.drops)));
        object.insert("waiting".into(), Value::Number(Number::U64(self.waiting)));
        json::to_string(&Value::Object(object)).into_bytes()
    }

    fn decode(bytes: &[u8]) -> Result<HeldMarker, String> {
        let object = parse_object(bytes, "held marker").map_err(|error| error.to_string())?;
        let fields = Fields::new(&object, "held marker");
        Ok(HeldMarker {
            drops: fields.u64("drops").map_err(|error| error.to_string())?,
            waiting: fields.u64("waiting").map_err(|error| error.to_string())?,
        })
    }
}

#[derive(Debug, Clone)]
struct IndexEntry {
    held_at: u64,
    bytes: usize,
    reason: HoldReason,
    author: String,
    peer: String,
}

/// What the held table holds, without the records.
#[derive(Debug, Default)]
pub(super) struct HeldIndex {
    entries: BTreeMap<String, IndexEntry>,
    by_age: BTreeSet<(u64, String)>,
    bytes: usize,
    marker: HeldMarker,
}

/// What to write so new held entries fit.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Room {
    /// Entries already held that make way, oldest first.
    pub drop_held: Vec<String>,
    /// New entries that do not fit even so (a batch larger than the bounds).
    pub drop_new: Vec<String>,
    /// The marker to write when anything is dropped.
    pub marker: Option<HeldMarker>,
}

impl Room {
    pub fn dropped(&self) -> u64 {
        (self.drop_held.len() + self.drop_new.len()) as u64
    }
}

impl HeldIndex {
    fn insert(&mut self, held: &Held, bytes: usize) {
        self.remove(&held.id);
        self.bytes += bytes;
        self.by_age.insert((held.held_at, held.id.clone()));
        self.entries.insert(
            held.id.clone(),
            IndexEntry {
                held_at: held.held_at,
                bytes,
                reason: held.reason,
                author: held.author_fingerprint.clone(),
                peer: held.peer.clone(),
            },
        );
    }

    fn remove(&mut self, id: &str) {
        if let Some(entry) = self.entries.remove(id) {
            self.bytes -= entry.bytes;
            self.by_age.remove(&(entry.held_at, id.to_owned()));
        }
    }

    /// The ids held, in id order.
    pub fn ids(&self) -> Vec<String> {
        self.entries.keys().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn marker(&self) -> HeldMarker {
        self.marker
    }

    /// Held records from `peer` (every one with `None`) by reason, and the ones dropped
    /// for room still waiting to be fetched again (from any peer).
    fn counts(&self, peer: Option<&str>) -> HeldCounts {
        let mut counts = HeldCounts::default();
        for entry in self.entries.values() {
            if peer.is_none_or(|peer| entry.peer == peer) {
                counts.count(entry.reason, &entry.author);
            }
        }
        if self.marker.waiting > 0 {
            counts
                .by_reason
                .insert(HoldReason::TableFull, self.marker.waiting);
        }
        counts
    }

    /// Whether the table is under half of both bounds, so records dropped for room may
    /// be fetched again.
    pub(crate) fn has_room(&self, limits: HeldLimits) -> bool {
        self.entries.len() <= limits.records / 2 && self.bytes <= limits.bytes / 2
    }

    /// Which entries to drop so `incoming` (id, encoded size; in arrival order) fit
    /// within `limits`: the oldest held first, then the earliest of `incoming`.
    pub(crate) fn room_for(&self, incoming: &[(&str, usize)], limits: HeldLimits) -> Room {
        let incoming_ids: BTreeSet<&str> = incoming.iter().map(|(id, _)| *id).collect();
        let mut count = self.entries.len();
        let mut bytes = self.bytes;
        for (id, size) in incoming {
            if let Some(entry) = self.entries.get(*id) {
                count -= 1;
                bytes -= entry.bytes;
            }
            count += 1;
            bytes += size;
        }
        let fits = |count: usize, bytes: usize| count <= limits.records && bytes <= limits.bytes;
        let mut room = Room::default();
        for (_, id) in &self.by_age {
            if fits(count, bytes) {
                break;
            }
            if incoming_ids.contains(id.as_str()) {
                continue;
            }
            count -= 1;
            bytes -= self.entries[id].bytes;
            room.drop_held.push(id.clone());
        }
        for (id, size) in incoming {
            if fits(count, bytes) {
                break;
            }
            // The held entry of the same id (counted above as replaced) stays.
            let kept = self.entries.get(*id).map_or(0, |entry| entry.bytes);
            count -= usize::from(kept == 0);
            bytes = bytes - size + kept;
            room.drop_new.push((*id).to_owned());
        }
        room
    }
}

impl Syncer {
    /// Runs `f` on the index of the held table, reading the table the first time.
    pub(super) fn with_held_index<R>(
        &self,
        f: impl FnOnce(&mut HeldIndex) -> R,
    ) -> Result<R, StoreError> {
        let mut slot = self.held_index.borrow_mut();
        if slot.is_none() {
            let mut index = HeldIndex::default();
            for (id, bytes) in self.store.borrow().states(StateTable::Held)? {
                if id == MARKER_KEY {
                    match HeldMarker::decode(&bytes) {
                        Ok(marker) => index.marker = marker,
                        Err(error) => eprintln!("warning: {error}; counting drops from 0"),
                    }
                    continue;
                }
                match Held::decode(&bytes) {
                    Ok(held) => index.insert(&held, bytes.len()),
                    Err(error) => eprintln!("warning: held record {id}: {error}; it is ignored"),
                }
            }
            *slot = Some(index);
        }
        Ok(f(slot.as_mut().expect("the index was just built")))
    }

    /// Forgets the index (after a write that may not have committed): it is read again.
    pub(super) fn forget_held_index(&self) {
        *self.held_index.borrow_mut() = None;
    }

    /// Makes the index follow a committed write of held entries.
    pub(super) fn held_written(
        &self,
        written: &[(&Held, usize)],
        removed: &[&str],
        marker: Option<HeldMarker>,
    ) {
        let mut slot = self.held_index.borrow_mut();
        if let Some(index) = slot.as_mut() {
            for id in removed {
                index.remove(id);
            }
            for (held, bytes) in written {
                index.insert(held, *bytes);
            }
            if let Some(marker) = marker {
                index.marker = marker;
            }
        }
    }

    /// Held records counted by reason.
    pub(crate) fn held_counts(&self) -> Result<HeldCounts, StoreError> {
        self.held_counts_from(None)
    }

    /// Held records that came from `peer` (every one with `None`), counted by reason.
    pub(crate) fn held_counts_from(&self, peer: Option<&str>) -> Result<HeldCounts, StoreError> {
        self.with_held_index(|index| index.counts(peer))
    }

    /// The held table's size (records, bytes) and its drop counters.
    pub(crate) fn held_usage(&self) -> Result<(usize, usize, HeldMarker), StoreError> {
        self.with_held_index(|index| (index.len(), index.bytes(), index.marker()))
    }

    /// After a reconciliation with every peer that has checkpoints took place since the
    /// last drop, nothing dropped is waiting any more: each was fetched again (and
    /// applied, held again, or dropped again and counted anew).
    pub(super) fn note_refetched(&self) -> Result<(), StoreError> {
        let marker = self.with_held_index(|index| index.marker())?;
        if marker.waiting == 0 {
            return Ok(());
        }
        let behind = self.peers()?.iter().any(|peer| {
            peer.protocol.as_deref() == Some("v2")
                && peer.epoch.is_some()
                && peer.held_drops != marker.drops
        });
        if behind {
            return Ok(());
        }
        let marker = HeldMarker {
            waiting: 0,
            ..marker
        };
        self.store
            .borrow_mut()
            .set_state(StateTable::Held, MARKER_KEY, Some(&marker.encode()))?;
        self.held_written(&[], &[], Some(marker));
        self.log(format!(
            "every peer was asked again for the {} held record(s) dropped for room",
            marker.drops
        ));
        Ok(())
    }

    /// Whether records were dropped for room since `held_drops`, and there is room again
    /// to fetch them.
    pub(super) fn refetch_due(&self, held_drops: u64) -> Result<bool, StoreError> {
        let limits = self.held_limits;
        self.with_held_index(|index| index.marker.drops != held_drops && index.has_room(limits))
    }

    /// The held-table changes that make room for `entries`, the marker among them when
    /// something is dropped, and a log line saying so.
    pub(super) fn make_room(&self, entries: &[(&Held, Vec<u8>)]) -> Result<Room, StoreError> {
        let incoming: Vec<(&str, usize)> = entries
            .iter()
            .map(|(held, bytes)| (held.id.as_str(), bytes.len()))
            .collect();
        let limits = self.held_limits;
        let (mut room, marker) =
            self.with_held_index(|index| (index.room_for(&incoming, limits), index.marker()))?;
        if room.dropped() == 0 {
            return Ok(room);
        }
        let marker = HeldMarker {
            drops: marker.drops + room.dropped(),
            waiting: marker.waiting + room.dropped(),
        };
        eprintln!(
            "warning: the held table is full ({} records or {} MiB at most): dropped {} held record(s), the oldest; they are fetched again from peers once held records are applied or removed ({} dropped so far)",
            limits.records,
            limits.bytes / (1024 * 1024),
            room.dropped(),
            marker.drops
        );
        room.marker = Some(marker);
        Ok(room)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Hlc, InstanceId, Version};

    fn held(id: &str, held_at: u64) -> Held {
        Held {
            id: id.into(),
            version: Version {
                hlc: Hlc::from_parts(1_700_000_000_000, 0),
                origin: InstanceId([1; 32]),
            },
            reason: HoldReason::UntrustedAuthor,
            author_fingerprint: "SHA256:a".into(),
            message: String::new(),
            peer: "http://p".into(),
            delivered_by_core: false,
            record: Value::Null,
            held_at,
        }
    }

    fn check(held: &[(&str, u64, usize)], incoming: &[(&str, usize)], expected: Room) {
        let mut index = HeldIndex::default();
        for (id, at, bytes) in held {
            index.insert(&self::held(id, *at), *bytes);
        }
        let limits = HeldLimits {
            records: 3,
            bytes: 100,
        };
        assert_eq!(index.room_for(incoming, limits), expected);
    }

    fn room(drop_held: &[&str], drop_new: &[&str]) -> Room {
        Room {
            drop_held: drop_held.iter().map(|id| id.to_string()).collect(),
            drop_new: drop_new.iter().map(|id| id.to_string()).collect(),
            marker: None,
        }
    }

    #[test]
    fn the_oldest_make_way_by_count_and_by_bytes() {
        // Room enough: nothing dropped.
        check(&[("a", 1, 10)], &[("b", 10), ("c", 10)], room(&[], &[]));
        // By count: the oldest held goes, whatever its key.
        check(
            &[("z", 1, 10), ("a", 2, 10), ("m", 3, 10)],
            &[("n", 10)],
            room(&["z"], &[]),
        );
        // By bytes: two old ones make way for one large record.
        check(
            &[("a", 1, 30), ("b", 2, 30), ("c", 3, 30)],
            &[("c", 30), ("d", 60)],
            room(&["a", "b"], &[]),
        );
        // A newer version of a held id replaces it in place and is never dropped for
        // itself.
        check(
            &[("a", 1, 50), ("b", 2, 40)],
            &[("a", 70)],
            room(&["b"], &[]),
        );
        // A batch larger than the bounds: everything held goes, then its earliest.
        check(
            &[("a", 1, 10)],
            &[("b", 60), ("c", 60), ("d", 30)],
            room(&["a"], &["b"]),
        );
    }

    #[test]
    fn room_comes_back_under_half_and_the_marker_round_trips() {
        let mut index = HeldIndex::default();
        let limits = HeldLimits {
            records: 4,
            bytes: 100,
        };
        index.insert(&held("a", 1), 20);
        index.insert(&held("b", 2), 20);
        assert!(index.has_room(limits));
        index.insert(&held("c", 3), 20);
        assert!(!index.has_room(limits));
        index.remove("c");
        index.remove("b");
        index.insert(&held("b", 4), 60);
        assert_eq!((index.len(), index.bytes()), (2, 80));
        assert!(!index.has_room(limits));
        let marker = HeldMarker {
            drops: 7,
            waiting: 3,
        };
        assert_eq!(HeldMarker::decode(&marker.encode()), Ok(marker));
        assert!(HeldMarker::decode(b"{}").is_err());
        index.marker = marker;
        assert_eq!(
            index.counts(None).by_reason.get(&HoldReason::TableFull),
            Some(&3)
        );
    }
}
