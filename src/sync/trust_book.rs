//! The trust store kept in the store's trust table: look up, save and list
//! [`TrustEntry`]s, remember unknown signed callers as pending, and decide whether a
//! record's author may write here.

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

pub fn save(store: &mut Store, entry: &TrustEntry) -> Result<(), StoreError> {
    store.set_state(StateTable::Trust, &entry.key(), Some(&entry.encode()))
}

pub fn remove(store: &mut Store, entry: &TrustEntry) -> Result<(), StoreError> {
    store.set_state(StateTable::Trust, &entry.key(), None)
}

/// The tier granted to `instance_id`, if it is trusted (not pending).
pub fn tier_of(store: &Store, instance_id: &InstanceId) -> Result<Option<Tier>, StoreError> {
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

/// Notes that `key` signed a request: an unknown key becomes pending (so the operator
/// can accept it), a known one gets its last-seen time. Returns the granted tier.
/// Writes at most once a minute per key, so busy peers do not wear the SD card.
pub fn note_caller(
    store: &mut Store,
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
            let entry = TrustEntry {
                public_key: key,
                name: None,
                tier: Tier::Core,
                pending: true,
                added_at: now,
                last_seen: Some(now),
                source: "request".into(),
            };
            save(store, &entry)?;
            Ok(None)
        }
    }
}

/// Lists `key` as pending (so `trust accept` finds it) unless it has an entry already.
/// `source` says how it was met (`"record"`: it wrote records held here).
pub fn note_pending(
    store: &mut Store,
    key: PublicKey,
    source: &str,
    now: u64,
) -> Result<(), StoreError> {
    if entry(store, &key.instance_id())?.is_some() {
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
