//! The trust store kept in the store's trust table: look up, save and list
//! [`TrustEntry`]s, remember unknown signed callers as pending (in memory first, then in
//! bounded, batched writes), and decide whether a record's author may write here.

use crate::model::{InstanceId, unix_millis_now};
use crate::store::{StateTable, Store, StoreError};
use crate::trust::{PublicKey, Tier, TrustEntry};

/// The entry for `instance_id`, if any.
pub fn entry(store: &Store, instance_id: &InstanceId) -> Result<Option<TrustEntry>, StoreError> {
    let bytes = store.state(StateTable::Trust, &instance_id.to_hex())?;
    Ok(bytes.and_then(|bytes| match TrustEntry::decode(&bytes) {
        Ok(entry) => Some(entry),
        Err(error) => {
            eprintln!("warning: trust entry {instance_id}: {error}; it is ignored");
            None
        }
    }))
}

/// Every entry, trusted and pending.
pub fn entries(store: &Store) -> Result<Vec<TrustEntry>, StoreError> {
    Ok(store
        .states(StateTable::Trust)?
        .into_iter()
        .filter_map(|(_, bytes)| TrustEntry::decode(&bytes).ok())
        .collect())
}

pub(crate) fn save(store: &mut Store, entry: &TrustEntry) -> Result<(), StoreError> {
    store.set_state(StateTable::Trust, &entry.key(), Some(&entry.encode()))
}

pub fn remove(store: &mut Store, entry: &TrustEntry) -> Result<(), StoreError> {
    store.set_state(StateTable::Trust, &entry.key(), None)
}

/// The tier granted to `instance_id`, if it is trusted (not pending).
pub(crate) fn tier_of(store: &Store, instance_id: &InstanceId) -> Result<Option<Tier>, StoreError> {
    Ok(entry(store, instance_id)?.and_then(|entry| entry.granted_tier()))
}

/// Trusts `key` with `tier`, keeping the name and first-seen time of an existing entry.
pub fn trust(
    store: &mut Store,
    key: PublicKey,
    tier: Tier,
    name: Option<String>,
    source: &str,
) -> Result<TrustEntry, StoreError> {
    let existing = entry(store, &key.instance_id())?;
    let entry = TrustEntry {
        public_key: key,
        name: name.or_else(|| existing.as_ref().and_then(|entry| entry.name.clone())),
        tier,
        pending: false,
        added_at: existing
            .as_ref()
            .map_or_else(unix_millis_now, |entry| entry.added_at),
        last_seen: existing.and_then(|entry| entry.last_seen),
        source: source.to_owned(),
    };
    save(store, &entry)?;
    Ok(entry)
}

/// Unknown keys that signed a request since the last [`flush_pending`], kept in memory so
/// a flood of made-up keys costs no store write per request (issue 10: 10,000 keys made
/// 10,000 writes). At most `max` are kept; beyond it the one seen least recently goes.
#[derive(Debug)]
pub struct PendingCallers {
    entries: std::collections::BTreeMap<InstanceId, TrustEntry>,
    max: usize,
}

impl PendingCallers {
    pub fn new(max: usize) -> PendingCallers {
        PendingCallers {
            entries: Default::default(),
            max: max.max(1),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn note(&mut self, key: PublicKey, now: u64) {
        let instance_id = key.instance_id();
        if let Some(entry) = self.entries.get_mut(&instance_id) {
            entry.last_seen = Some(now);
            return;
        }
        if self.entries.len() >= self.max {
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, entry)| entry.last_seen)
                .map(|(id, _)| *id);
            if let Some(oldest) = oldest {
                self.entries.remove(&oldest);
            }
        }
        self.entries.insert(
            instance_id,
            TrustEntry {
                public_key: key,
                name: None,
                tier: Tier::Core,
                pending: true,
                added_at: now,
                last_seen: Some(now),
                source: "request".into(),
            },
        );
    }
}

/// Notes that `key` signed a request: an unknown key is remembered in `pending` (and
/// becomes a pending entry at the next [`flush_pending`], so the operator can accept
/// it), a known one gets its last-seen time. Returns the granted tier.
/// Writes at most once a minute per known key, so busy peers do not wear the SD card.
pub(crate) fn note_caller(
    store: &mut Store,
    pending: &mut PendingCallers,
    key: PublicKey,
    now: u64,
) -> Result<Option<Tier>, StoreError> {
    match entry(store, &key.instance_id())? {
        Some(mut entry) => {
            if entry.last_seen.is_none_or(|seen| seen + 60_000 < now) {
                entry.last_seen = Some(now);
                save(store, &entry)?;
            }
            Ok(entry.granted_tier())
        }
        None => {
            pending.note(key, now);
            Ok(None)
        }
    }
}

/// Lists `key` as pending (so `trust accept` finds it) unless it has an entry already
/// or [`crate::config::MAX_PENDING_TRUST`] keys are pending. `source` says how it was
/// met (`"record"`: it wrote records held here).
pub(crate) fn note_pending(
    store: &mut Store,
    key: PublicKey,
    source: &str,
    now: u64,
) -> Result<(), StoreError> {
    if entry(store, &key.instance_id())?.is_some() {
        return Ok(());
    }
    // The same cap as for callers: a flood of authors cannot grow the trust table.
    let pending = entries(store)?.iter().filter(|entry| entry.pending).count();
    if pending >= crate::config::MAX_PENDING_TRUST {
        return Ok(());
    }
    save(
        store,
        &TrustEntry {
            public_key: key,
            name: None,
            tier: Tier::Core,
            pending: true,
            added_at: now,
            last_seen: None,
            source: source.to_owned(),
        },
    )
}

/// Writes the keys noted in `pending` as pending entries, in one transaction, keeping at
/// most `max_stored` pending entries in the store: the ones seen least recently are
/// dropped (trusted entries are never touched). Returns how many were dropped.
pub(crate) fn flush_pending(
    store: &mut Store,
    pending: &mut PendingCallers,
    max_stored: usize,
) -> Result<usize, StoreError> {
    if pending.is_empty() {
        return Ok(0);
    }
    let mut stored: std::collections::BTreeMap<String, TrustEntry> = entries(store)?
        .into_iter()
        .filter(|entry| entry.pending)
        .map(|entry| (entry.key(), entry))
        .collect();
    let mut writes: std::collections::BTreeMap<String, Option<Vec<u8>>> = Default::default();
    for (_, noted) in std::mem::take(&mut pending.entries) {
        // Trusted (or accepted since it was noted): nothing to write.
        if entry(store, &noted.public_key.instance_id())?.is_some_and(|entry| !entry.pending) {
            continue;
        }
        let key = noted.key();
        let merged = match stored.get(&key) {
            Some(existing) => TrustEntry {
                last_seen: noted.last_seen.max(existing.last_seen),
                ..existing.clone()
            },
            None => noted,
        };
        writes.insert(key.clone(), Some(merged.encode()));
        stored.insert(key, merged);
    }
    let mut dropped = 0;
    while stored.len() > max_stored {
        let Some(oldest) = stored
            .iter()
            .min_by_key(|(_, entry)| entry.last_seen)
            .map(|(key, _)| key.clone())
        else {
            break;
        };
        stored.remove(&oldest);
        writes.insert(oldest, None);
        dropped += 1;
    }
    let batch: Vec<(&str, Option<&[u8]>)> = writes
        .iter()
        .map(|(key, value)| (key.as_str(), value.as_deref()))
        .collect();
    store.set_states(StateTable::Trust, &batch)?;
    Ok(dropped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreOptions;
    use crate::trust::KeyPair;

    fn key(seed: u8, index: u8) -> PublicKey {
        let mut bytes = [seed; 32];
        bytes[0] = index;
        KeyPair::from_seed(bytes).unwrap().public_key()
    }

    #[test]
    fn unknown_keys_are_written_in_batches_and_the_least_recent_dropped() {
        let dir = std::env::temp_dir().join(format!("ark-trust-book-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut store = Store::open(
            &dir.join("lattice.redb"),
            &StoreOptions::default(),
            InstanceId([1; 32]),
        )
        .unwrap();
        let trusted = key(7, 0);
        trust(&mut store, trusted, Tier::Core, None, "cli").unwrap();
        let mut pending = PendingCallers::new(4);
        for index in 0..6u8 {
            let tier =
                note_caller(&mut store, &mut pending, key(9, index), u64::from(index)).unwrap();
            assert_eq!(tier, None);
        }
        // Nothing written yet; only the four seen most recently are kept in memory.
        assert_eq!(entries(&store).unwrap().len(), 1);
        assert_eq!(pending.len(), 4);
        assert_eq!(
            note_caller(&mut store, &mut pending, trusted, 100).unwrap(),
            Some(Tier::Core)
        );
        assert_eq!(flush_pending(&mut store, &mut pending, 3).unwrap(), 1);
        assert!(pending.is_empty());
        let stored = entries(&store).unwrap();
        let waiting: Vec<&TrustEntry> = stored.iter().filter(|entry| entry.pending).collect();
        assert_eq!(waiting.len(), 3);
        for index in 3..6 {
            assert!(
                waiting
                    .iter()
                    .any(|entry| entry.public_key == key(9, index))
            );
        }
        assert!(
            stored
                .iter()
                .any(|entry| entry.public_key == trusted && !entry.pending)
        );
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
