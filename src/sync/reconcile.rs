//! Range-based set reconciliation of record versions with the `negentropy` crate: what
//! an item is, building the sorted set from a store snapshot, answering a peer's
//! message (server side) and driving the rounds (client side). No I/O: the caller
//! carries the messages over HTTP and fetches or sends the records found to differ.
//!
//! # Implementation
//!
//! An item is `(version time, digest)`: the millisecond part of the version's hybrid
//! clock, and SHA-256 over the id, the full version and the content hash. Two stores
//! hold the same item exactly when they hold the same version of the same record, so
//! a record edited on one side shows up twice: its old digest on one side and its new
//! one on the other. The client fetches the records behind the digests it lacks and
//! pushes those the peer lacks; last-writer-wins then settles each id.
//!
//! Frames are large on purpose (1 MiB): negentropy splits a range into 16 at each
//! round, so with large frames 100k items reconcile in two round trips, where 4 KiB
//! frames need hundreds when there are a thousand differences.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::rc::Rc;

use negentropy::{Id, Negentropy, NegentropyStorageVector};
use sha2::{Digest, Sha256};

use crate::model::{ContentHash, Version};
use crate::store::{StoreError, TypeFilter, VersionEntry, VersionSnapshot};

/// Largest reconciliation message either side writes. Below the server's default body
/// limit (4 MiB), so a message is never refused for its size.
pub const FRAME_BYTES: u64 = 1024 * 1024;

/// Most rounds a client runs before it gives up on a peer that never finishes.
pub const MAX_ROUNDS: usize = 32;

/// A record version's digest: what negentropy compares.
pub type ItemDigest = [u8; 32];

/// The digest of one record version.
pub(crate) fn item_digest(id: &str, version: &Version, hash: &ContentHash) -> ItemDigest {
    let mut hasher = Sha256::new();
    hasher.update(b"ark-lattice/item/v1\0");
    hasher.update((id.len() as u32).to_be_bytes());
    hasher.update(id.as_bytes());
    hasher.update(version.hlc.0.to_be_bytes());
    hasher.update(version.origin.0);
    hasher.update(hash.0);
    hasher.finalize().into()
}

/// Why reconciliation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReconcileError {
    /// The peer's message does not parse or does not fit our set.
    BadMessage(String),
    /// The rounds did not end within [`MAX_ROUNDS`].
    TooManyRounds,
}

impl fmt::Display for ReconcileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReconcileError::BadMessage(detail) => {
                write!(f, "unparsable reconciliation message: {detail}")
            }
            ReconcileError::TooManyRounds => write!(
                f,
                "reconciliation did not finish within {MAX_ROUNDS} rounds"
            ),
        }
    }
}

impl std::error::Error for ReconcileError {}

fn bad(error: negentropy::Error) -> ReconcileError {
    ReconcileError::BadMessage(error.to_string())
}

/// The sorted item set of one store snapshot, and the way back from a digest to the
/// record it stands for.
#[derive(Debug)]
pub struct ReconcileSet {
    storage: NegentropyStorageVector,
    by_digest: HashMap<ItemDigest, usize>,
    entries: Vec<VersionEntry>,
    /// The store's change sequence the set was read at.
    pub last_seq: u64,
    pub filter: TypeFilter,
}

impl ReconcileSet {
    pub fn build(
        snapshot: VersionSnapshot,
        filter: TypeFilter,
    ) -> Result<ReconcileSet, ReconcileError> {
        let mut storage = NegentropyStorageVector::with_capacity(snapshot.entries.len());
        let mut by_digest = HashMap::with_capacity(snapshot.entries.len());
        for (index, entry) in snapshot.entries.iter().enumerate() {
            let digest = item_digest(&entry.id, &entry.version, &entry.hash);
            storage
                .insert(entry.version.hlc.millis(), Id::from_byte_array(digest))
                .map_err(bad)?;
            by_digest.insert(digest, index);
        }
        storage.seal().map_err(bad)?;
        Ok(ReconcileSet {
            storage,
            by_digest,
            entries: snapshot.entries,
            last_seq: snapshot.last_seq,
            filter,
        })
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The record version behind `digest`, if it is in this set.
    pub fn entry(&self, digest: &ItemDigest) -> Option<&VersionEntry> {
        self.by_digest
            .get(digest)
            .map(|index| &self.entries[*index])
    }

    /// Server side: the answer to one message from a peer. Stateless between rounds,
    /// so each request stands alone.
    pub fn answer(&self, message: &[u8]) -> Result<Vec<u8>, ReconcileError> {
        let mut negentropy = Negentropy::borrowed(&self.storage, FRAME_BYTES).map_err(bad)?;
        negentropy.reconcile(message).map_err(bad)
    }

    /// Client side: starts a reconciliation; returns it and the first message.
    pub fn initiate(&self) -> Result<(Initiator<'_>, Vec<u8>), ReconcileError> {
        let mut negentropy = Negentropy::borrowed(&self.storage, FRAME_BYTES).map_err(bad)?;
        let first = negentropy.initiate().map_err(bad)?;
        Ok((
            Initiator {
                negentropy,
                have: Vec::new(),
                need: Vec::new(),
                rounds: 1,
            },
            first,
        ))
    }
}

/// A reconciliation in progress on the client side.
pub struct Initiator<'a> {
    negentropy: Negentropy<'a, NegentropyStorageVector>,
    have: Vec<Id>,
    need: Vec<Id>,
    rounds: usize,
}

impl fmt::Debug for Initiator<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Initiator")
            .field("have", &self.have.len())
            .field("need", &self.need.len())
            .field("rounds", &self.rounds)
            .finish()
    }
}

/// What the client learnt when the rounds ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Differences {
    /// Digests of versions we hold and the peer lacks.
    pub have: Vec<ItemDigest>,
    /// Digests of versions the peer holds and we lack.
    pub need: Vec<ItemDigest>,
    pub rounds: usize,
}

impl Initiator<'_> {
    /// Takes the peer's answer; returns the next message to send, or `None` when done.
    pub fn receive(&mut self, answer: &[u8]) -> Result<Option<Vec<u8>>, ReconcileError> {
        let next = self
            .negentropy
            .reconcile_with_ids(answer, &mut self.have, &mut self.need)
            .map_err(bad)?;
        if next.is_some() {
            self.rounds += 1;
            if self.rounds > MAX_ROUNDS {
                return Err(ReconcileError::TooManyRounds);
            }
        }
        Ok(next)
    }

    pub fn finish(self) -> Differences {
        let digests = |ids: Vec<Id>| ids.into_iter().map(|id| *id).collect();
        Differences {
            have: digests(self.have),
            need: digests(self.need),
            rounds: self.rounds,
        }
    }
}

/// The last set built, kept while the store does not change: a reconciliation takes a
/// few rounds, and rebuilding 100k digests for each would cost more than the rounds.
#[derive(Debug, Default)]
pub struct ReconcileCache {
    last: RefCell<Option<Rc<ReconcileSet>>>,
}

impl ReconcileCache {
    /// The set kept for `filter`, if it was read at `last_seq`, the store's change
    /// sequence now (the caller reads it).
    pub fn current(&self, last_seq: u64, filter: &TypeFilter) -> Option<Rc<ReconcileSet>> {
        self.last
            .borrow()
            .as_ref()
            .filter(|set| set.last_seq == last_seq && &set.filter == filter)
            .cloned()
    }

    /// Builds the set of `snapshot` (the caller reads it from the store) and keeps it in
    /// place of the last one.
    pub fn keep(
        &self,
        snapshot: VersionSnapshot,
        filter: TypeFilter,
    ) -> Result<Rc<ReconcileSet>, ReconcileError> {
        let set = Rc::new(ReconcileSet::build(snapshot, filter)?);
        *self.last.borrow_mut() = Some(set.clone());
        Ok(set)
    }
}

/// Why a set could not be built.
#[derive(Debug)]
pub enum CacheError {
    Store(StoreError),
    Reconcile(ReconcileError),
}

impl fmt::Display for CacheError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CacheError::Store(error) => error.fmt(f),
            CacheError::Reconcile(error) => error.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Hlc, InstanceId};

    fn entry(id: &str, hlc: u64, content: u8) -> VersionEntry {
        VersionEntry {
            id: id.to_owned(),
            version: Version {
                hlc: Hlc::from_parts(1_700_000_000_000 + hlc, 0),
                origin: InstanceId([1; 32]),
            },
            hash: ContentHash([content; 32]),
        }
    }

    fn set(entries: Vec<VersionEntry>) -> ReconcileSet {
        ReconcileSet::build(
            VersionSnapshot {
                entries,
                last_seq: 0,
            },
            TypeFilter::all(),
        )
        .unwrap()
    }

    /// Runs the rounds between two sets in memory.
    fn reconcile(client: &ReconcileSet, server: &ReconcileSet) -> Differences {
        let (mut initiator, mut message) = client.initiate().unwrap();
        loop {
            let answer = server.answer(&message).unwrap();
            match initiator.receive(&answer).unwrap() {
                Some(next) => message = next,
                None => return initiator.finish(),
            }
        }
    }

    #[test]
    fn differences_are_found_in_few_rounds() {
        let common: Vec<VersionEntry> = (0..20_000)
            .map(|i| entry(&format!("node-{i}"), i, 1))
            .collect();
        let mut ours = common.clone();
        let mut theirs = common;
        // Ours has a newer version of 7 records; theirs has 3 records ours lacks.
        for i in 0..7 {
            ours[i * 2000] = entry(&format!("node-{}", i * 2000), 50_000 + i as u64, 2);
        }
        for i in 0..3 {
            theirs.push(entry(&format!("extra-{i}"), 60_000 + i, 3));
        }
        let (client, server) = (set(ours), set(theirs));
        let differences = reconcile(&client, &server);
        assert_eq!(differences.have.len(), 7);
        assert_eq!(differences.need.len(), 3 + 7);
        assert!(differences.rounds <= 3, "{} rounds", differences.rounds);
        for digest in &differences.have {
            assert!(client.entry(digest).is_some());
        }
        for digest in &differences.need {
            assert!(server.entry(digest).is_some() && client.entry(digest).is_none());
        }
        let same = reconcile(&client, &client);
        assert!(same.have.is_empty() && same.need.is_empty());
        assert_eq!(same.rounds, 1);
    }

    #[test]
    fn the_cache_keeps_one_set_while_the_sequence_and_filter_are_the_same() {
        let cache = ReconcileCache::default();
        assert!(cache.current(0, &TypeFilter::all()).is_none());
        let snapshot = |last_seq| VersionSnapshot {
            entries: vec![entry("a", 1, 1)],
            last_seq,
        };
        let kept = cache.keep(snapshot(4), TypeFilter::all()).unwrap();
        let again = cache.current(4, &TypeFilter::all()).unwrap();
        assert!(Rc::ptr_eq(&kept, &again));
        assert!(cache.current(5, &TypeFilter::all()).is_none());
        let notes = TypeFilter::only(&["note".to_owned()]);
        assert!(cache.current(4, &notes).is_none());
        cache.keep(snapshot(5), notes.clone()).unwrap();
        assert!(
            cache.current(4, &TypeFilter::all()).is_none(),
            "one set is kept"
        );
        assert!(cache.current(5, &notes).is_some());
    }

    #[test]
    fn garbage_messages_are_errors_not_panics() {
        let server = set((0..300).map(|i| entry(&format!("n{i}"), i, 1)).collect());
        let mut random = 0x2545_f491_4f6c_dd1du64;
        for length in 0..400usize {
            let mut message = vec![0x61u8];
            for _ in 0..length {
                random ^= random << 13;
                random ^= random >> 7;
                random ^= random << 17;
                message.push(random as u8);
            }
            // Either answer is fine; what matters is that there is no panic.
            let _ = server.answer(&message);
            let _ = server.answer(&message[1..]);
        }
        let (mut initiator, _) = server.initiate().unwrap();
        let error = initiator.receive(b"not negentropy").unwrap_err();
        assert!(error.to_string().contains("unparsable"), "{error}");
    }
}
