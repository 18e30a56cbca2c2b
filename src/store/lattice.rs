//! [`Store`]: opening the file, local writes, applying peers' versions with
//! last-writer-wins, and the reads the CLI and the federation layer need.
//!
//! # Implementation
//!
//! Every write is one redb transaction that also persists the clock's high-water mark
//! and the last change sequence, so a crash loses at most the transaction in flight and
//! never leaves a sequence number or clock reading to be handed out twice. The
//! in-memory copies of both advance only after the commit succeeds.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use redb::{Database, MultimapTableDefinition, ReadableDatabase, ReadableTable, WriteTransaction};

use super::damage::{DamageLog, DamagedRecord, RecordTable, check_live, check_tombstone};
use super::durability::Commit;
use super::error::{StorageFailure, StoreError};
use super::record::{self, Body, Record, RecordMeta};
use super::tables::{
    AUTHOR_KEYS, BY_CATEGORY, BY_LANGUAGE, BY_TYPE, CHANGES, CONFLICTS, DAMAGED, HELD, META, NODES,
    PEERS, TOMBSTONES, TRUST, meta_keys,
};
use super::write_tables::{OpenTables, RecordTables};
use crate::model::{
    ClaimedContent, Clock, ContentHash, Hlc, InstanceId, Node, RecordClaim, RecordSignature,
    Version, encode_node,
};

/// The schema this build writes. Schema 1 (records signed in format 1 only) is read
/// too, and migrated when a signer is set (see [`Store::set_signer`]).
pub const SCHEMA_VERSION: u32 = 2;
pub(super) const SCHEMA_FORMAT_1_SIGNATURES: u32 = 1;

/// How the store is opened.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// redb's page cache in bytes. Default 16 MiB: redb's own default is 1 GiB, more
    /// than a 512 MB Raspberry Pi Zero has.
    pub cache_bytes: usize,
}

impl Default for StoreOptions {
    fn default() -> StoreOptions {
        StoreOptions {
            cache_bytes: 16 * 1024 * 1024,
        }
    }
}

/// What [`Store::delete`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deletion {
    /// The live node was replaced by a tombstone.
    Deleted,
    /// A tombstone was there already; nothing was written.
    AlreadyDeleted,
    /// The id was never stored here (or its tombstone was purged).
    NotFound,
}

/// What a batch of local writes did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteSummary {
    pub created: u64,
    pub updated: u64,
    pub unchanged: u64,
}

/// A version received from a peer, already parsed (and, with trust, verified).
#[derive(Debug, Clone)]
pub struct RemoteRecord {
    pub id: String,
    pub version: Version,
    pub base: Option<Version>,
    /// The hash the sender claims; checked against the node's canonical bytes.
    pub hash: Option<ContentHash>,
    pub signature: Option<RecordSignature>,
    /// The author's public key, once the caller has verified the signature with it;
    /// remembered so this instance can relay the record with its key.
    pub author_key: Option<[u8; 32]>,
    pub body: Body,
}

/// What applying a batch of peer versions did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyOutcome {
    /// Versions that were newer and are now stored.
    pub applied: u64,
    /// Versions we already had.
    pub unchanged: u64,
    /// Versions older than ours that lost.
    pub stale: u64,
    /// Concurrent edits settled by last-writer-wins; the loser is in the conflict log.
    pub conflicts: u64,
    /// Versions refused, with the reason (clock too far ahead, hash mismatch...).
    pub rejected: Vec<(String, String)>,
}

/// A losing version kept by the conflict log.
#[derive(Debug, Clone, PartialEq)]
pub struct Conflict {
    pub number: u64,
    pub resolved_at: u64,
    pub winner: Version,
    pub loser: Record,
}

/// Filters for [`Store::query`]. Empty filters match everything.
#[derive(Debug, Clone, Default)]
pub struct Query {
    pub node_type: Option<String>,
    pub language: Option<String>,
    pub category: Option<String>,
    pub capability: Option<String>,
    /// Case-insensitive substring of the id or the value.
    pub search: Option<String>,
    /// Only ids after this one (paging).
    pub after: Option<String>,
    pub limit: Option<usize>,
}

/// One page of the change log.
#[derive(Debug, Clone, Default)]
pub struct ChangePage {
    pub records: Vec<Record>,
    /// The sequence of the last record in the page, or the start if it is empty.
    pub last_seq: u64,
    /// More changes follow.
    pub more: bool,
}

/// Counts for `stats`.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub nodes: u64,
    pub tombstones: u64,
    pub conflicts: u64,
    /// Records moved aside as damaged (see `store::damage`).
    pub damaged: u64,
    pub last_seq: u64,
    pub file_bytes: u64,
    pub by_type: BTreeMap<String, u64>,
    pub by_language: BTreeMap<String, u64>,
    pub by_category: BTreeMap<String, u64>,
}

/// Signs a local write: given what the signature covers (see `trust::record`), returns
/// the author's format 2 signature. Set by the caller, which owns the key.
/// `Send + Sync` so that an import can sign a batch on two threads
/// ([`Store::sign_on_two_threads`]).
pub type Signer = Box<dyn Fn(&RecordClaim<'_>) -> [u8; 64] + Send + Sync>;

/// A batch at least this large is signed on two threads when the store is told to.
const PARALLEL_SIGNING_MIN: usize = 64;

/// A local write decided but not yet signed nor stored.
struct PlannedWrite<'a> {
    node: &'a Node,
    canonical: Vec<u8>,
    meta: RecordMeta,
    previous: Option<(RecordMeta, Body)>,
}

/// The lattice store. Single-threaded: writes take `&mut self`.
pub struct Store {
    pub(super) signer: Option<Signer>,
    /// Sign batches of local writes on two threads (the CLI's import; never the
    /// server, which starts no thread per request).
    pub(super) parallel_signing: bool,
    pub(super) db: Database,
    pub(super) path: PathBuf,
    pub(super) instance_id: InstanceId,
    pub(super) epoch: [u8; 16],
    pub(super) clock: Clock,
    pub(super) last_seq: u64,
    pub(super) last_conflict: u64,
    /// The file is of schema 1: this instance's records carry format 1 signatures until
    /// a signer is set and re-signs them.
    pub(super) needs_resigning: bool,
    /// See [`Store::repairs`].
    pub(super) repairs: u64,
    /// See [`Store::writes`].
    pub(super) writes: u64,
    /// See [`Store::changed`].
    pub(super) changed: event_listener::Event,
    /// See [`Store::local_changed`].
    pub(super) local_changed: event_listener::Event,
    /// `Some(seq)` while commits after sequence `seq` are deferred, not yet durable
    /// (see `store::durability`).
    pub(super) deferred_after: Option<u64>,
    /// Damaged records reads came across (see `store::damage`).
    pub(super) damage: std::cell::RefCell<DamageLog>,
}

/// What redb's check of every page found (see [`Store::check_pages`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageCheck {
    /// Every page of the committed trees matches its checksum.
    Clean,
    /// Something was off (leaked pages, an interrupted commit) and redb repaired it.
    Repaired,
    /// Pages do not match their checksums and redb cannot repair them.
    Damaged(String),
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .field("instance_id", &self.instance_id)
            .field("last_seq", &self.last_seq)
            .field("signs", &self.signer.is_some())
            .finish()
    }
}

/// A body to store, borrowed: a local write's node is not cloned to be stored.
#[derive(Debug, Clone, Copy)]
enum BodyRef<'a> {
    Live(&'a Node),
    Deleted(u64),
}

impl BodyRef<'_> {
    fn of(body: &Body) -> BodyRef<'_> {
        match body {
            Body::Live(node) => BodyRef::Live(node),
            Body::Deleted { deleted_at } => BodyRef::Deleted(*deleted_at),
        }
    }
}

pub(super) type Index = MultimapTableDefinition<'static, &'static str, &'static str>;

/// The indexed fields of a node, in the order of `INDEXES`.
fn index_keys(node: &Node) -> [Option<&str>; 3] {
    [
        Some(node.node_type.as_str()),
        node.language.as_deref(),
        node.category.as_deref(),
    ]
}

pub(super) const INDEXES: [Index; 3] = [BY_TYPE, BY_LANGUAGE, BY_CATEGORY];

impl Store {
    /// Opens the store file at `path`, creating it (and its directory) on first use.
    /// `instance_id` is recorded at creation and used as the author of local writes.
    ///
    /// An existing empty file is refused rather than made into a new store: a store
    /// file is never empty once made, so a 0-byte one is a lost store (a full disk, a
    /// bad restore), and starting over on it would hide that.
    pub fn open(
        path: &Path,
        options: &StoreOptions,
        instance_id: InstanceId,
    ) -> Result<Store, StoreError> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|source| StoreError::Io {
                path: path.to_owned(),
                source,
            })?;
        }
        let open_existing = || {
            Database::builder()
                .set_cache_size(options.cache_bytes)
                .create(path)
                .map_err(|error| open_error(path, error))
        };
        let db = match std::fs::metadata(path) {
            Ok(meta) if meta.is_file() && meta.len() == 0 => {
                return Err(StoreError::Empty {
                    path: path.to_owned(),
                });
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                match create_new(path, options)? {
                    Some(db) => db,
                    // Another process made the store first; it holds it locked.
                    None => open_existing()?,
                }
            }
            _ => open_existing()?,
        };
        let mut store = Store {
            signer: None,
            parallel_signing: false,
            db,
            path: path.to_owned(),
            instance_id,
            epoch: [0; 16],
            clock: Clock::new(Hlc::default()),
            last_seq: 0,
            last_conflict: 0,
            needs_resigning: false,
            repairs: 0,
            writes: 0,
            changed: event_listener::Event::new(),
            local_changed: event_listener::Event::new(),
            deferred_after: None,
            damage: Default::default(),
        };
        if !store.load_meta()? {
            store.initialise()?;
        }
        Ok(store)
    }

    /// Runs redb's check of every page against its checksum (and its repair of what can
    /// be repaired). Reads the whole file; needs no transaction to be open. After
    /// [`PageCheck::Damaged`] this handle writes nothing more: drop it.
    pub(crate) fn check_pages(&mut self) -> Result<PageCheck, StoreError> {
        match self.db.check_integrity() {
            Ok(true) => Ok(PageCheck::Clean),
            Ok(false) => Ok(PageCheck::Repaired),
            Err(redb::DatabaseError::Storage(redb::StorageError::Corrupted(reason))) => {
                Ok(PageCheck::Damaged(reason))
            }
            Err(error) => Err((self.fail())(error)),
        }
    }

    /// Signs every local write from now on. A schema 1 store is migrated first: this
    /// instance's records are re-signed in format 2 and the schema becomes 2, in one
    /// transaction, so a crash leaves either the old store or the migrated one.
    pub fn set_signer(&mut self, signer: Signer) -> Result<(), StoreError> {
        self.signer = Some(signer);
        if self.needs_resigning {
            self.resign_own_records()?;
            self.needs_resigning = false;
        }
        Ok(())
    }

    /// Signs the batches of [`Store::write_nodes`] on two threads: Ed25519 signing is
    /// about 40% of an import's CPU time (issue 13). For a process that may start
    /// threads (the CLI), not for the server.
    pub(crate) fn sign_on_two_threads(&mut self) {
        self.parallel_signing = true;
    }

    pub(super) fn sign(
        &self,
        id: &str,
        content: ClaimedContent,
        version: Version,
        base: Option<Version>,
    ) -> Option<RecordSignature> {
        let claim = RecordClaim {
            id,
            content,
            version,
            base,
        };
        self.signer
            .as_ref()
            .map(|sign| RecordSignature::v2(sign(&claim)))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn instance_id(&self) -> InstanceId {
        self.instance_id
    }

    /// A random id made when the store was created; a peer that sees it change knows the
    /// store was wiped or restored and must not trust its checkpoint.
    pub fn epoch(&self) -> [u8; 16] {
        self.epoch
    }

    /// Write transactions committed since the store was opened: anything read from it
    /// may have changed when this has, and nothing has when it has not (for answers
    /// cached in memory).
    pub fn writes(&self) -> u64 {
        self.writes
    }

    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// The highest clock reading written or observed.
    pub(crate) fn clock_high_water(&self) -> Hlc {
        self.clock.high_water()
    }

    pub(super) fn fail<E: Into<redb::Error>>(&self) -> impl Fn(E) -> StoreError + '_ {
        move |error| StoreError::Storage {
            path: self.path.clone(),
            source: StorageFailure::new(error),
        }
    }

    pub(super) fn damaged(&self, key: &str, reason: impl Into<String>) -> StoreError {
        StoreError::Damaged {
            path: self.path.clone(),
            key: key.to_owned(),
            reason: reason.into(),
        }
    }

    /// Notes a damaged record a read came across and returns the error for a caller
    /// that asked for that record by id.
    pub(super) fn damaged_record(
        &self,
        table: RecordTable,
        id: &str,
        reason: String,
    ) -> StoreError {
        self.note_damage(table, id, reason.clone());
        StoreError::Damaged {
            path: self.path.clone(),
            key: id.to_owned(),
            reason: format!("{reason}; it is not served, and is fetched again at the next sync"),
        }
    }

    /// Reads the metadata of an existing store; `false` when the store is new.
    fn load_meta(&mut self) -> Result<bool, StoreError> {
        let read = self.db.begin_read().map_err(self.fail())?;
        let meta = match read.open_table(META) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(false),
            Err(error) => return Err((self.fail())(error)),
        };
        let get = |key: &str| -> Result<Option<Vec<u8>>, StoreError> {
            Ok(meta
                .get(key)
                .map_err(self.fail())?
                .map(|value| value.value().to_vec()))
        };
        let Some(schema) = get(meta_keys::SCHEMA)? else {
            return Ok(false);
        };
        let schema = u32::from_be_bytes(schema.try_into().map_err(|_| StoreError::Schema {
            path: self.path.clone(),
            found: "of an unknown format".into(),
        })?);
        let needs_resigning = schema == SCHEMA_FORMAT_1_SIGNATURES;
        if !needs_resigning && schema != SCHEMA_VERSION {
            return Err(StoreError::Schema {
                path: self.path.clone(),
                found: schema.to_string(),
            });
        }
        let u64_of = |key: &str| -> Result<u64, StoreError> {
            match get(key)? {
                None => Ok(0),
                Some(bytes) => bytes
                    .try_into()
                    .map(u64::from_be_bytes)
                    .map_err(|_| self.damaged(key, "metadata is not 8 bytes")),
            }
        };
        let clock = Clock::new(Hlc(u64_of(meta_keys::CLOCK)?));
        let last_seq = u64_of(meta_keys::LAST_SEQ)?;
        let last_conflict = u64_of(meta_keys::LAST_CONFLICT)?;
        let repairs = u64_of(meta_keys::REPAIRS)?;
        let epoch = get(meta_keys::EPOCH)?
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or_else(|| self.damaged(meta_keys::EPOCH, "missing or not 16 bytes"))?;
        (self.clock, self.last_seq, self.last_conflict, self.epoch) =
            (clock, last_seq, last_conflict, epoch);
        self.needs_resigning = needs_resigning;
        self.repairs = repairs;
        Ok(true)
    }

    /// Creates the tables and metadata of a new store.
    fn initialise(&mut self) -> Result<(), StoreError> {
        let mut epoch = [0u8; 16];
        getrandom::fill(&mut epoch).map_err(|error| StoreError::Io {
            path: self.path.clone(),
            source: std::io::Error::other(format!("no randomness for the store epoch: {error}")),
        })?;
        let txn = self.db.begin_write().map_err(self.fail())?;
        {
            txn.open_table(NODES).map_err(self.fail())?;
            txn.open_table(TOMBSTONES).map_err(self.fail())?;
            txn.open_table(CHANGES).map_err(self.fail())?;
            txn.open_table(CONFLICTS).map_err(self.fail())?;
            txn.open_table(PEERS).map_err(self.fail())?;
            txn.open_table(TRUST).map_err(self.fail())?;
            txn.open_table(AUTHOR_KEYS).map_err(self.fail())?;
            txn.open_table(HELD).map_err(self.fail())?;
            txn.open_table(DAMAGED).map_err(self.fail())?;
            for index in INDEXES {
                txn.open_multimap_table(index).map_err(self.fail())?;
            }
            let mut meta = txn.open_table(META).map_err(self.fail())?;
            meta.insert(meta_keys::SCHEMA, &SCHEMA_VERSION.to_be_bytes()[..])
                .map_err(self.fail())?;
            meta.insert(meta_keys::INSTANCE_ID, &self.instance_id.0[..])
                .map_err(self.fail())?;
            meta.insert(meta_keys::EPOCH, &epoch[..])
                .map_err(self.fail())?;
        }
        self.commit(txn, Commit::Durable)?;
        self.epoch = epoch;
        Ok(())
    }

    /// Persists the clock and sequence counters inside `txn`.
    pub(super) fn write_counters(
        &self,
        txn: &WriteTransaction,
        clock: &Clock,
        last_seq: u64,
        last_conflict: u64,
    ) -> Result<(), StoreError> {
        let mut meta = txn.open_table(META).map_err(self.fail())?;
        meta.insert(meta_keys::CLOCK, &clock.high_water().0.to_be_bytes()[..])
            .map_err(self.fail())?;
        meta.insert(meta_keys::LAST_SEQ, &last_seq.to_be_bytes()[..])
            .map_err(self.fail())?;
        meta.insert(meta_keys::LAST_CONFLICT, &last_conflict.to_be_bytes()[..])
            .map_err(self.fail())?;
        Ok(())
    }

    /// Writes local versions of `nodes` in one transaction. A node whose content hash
    /// equals the stored one is left alone, so re-importing a file changes nothing.
    pub fn write_nodes(&mut self, nodes: &[Node], now: u64) -> Result<WriteSummary, StoreError> {
        let mut summary = WriteSummary::default();
        let mut clock = self.clock.clone();
        let mut last_seq = self.last_seq;
        let txn = self.db.begin_write().map_err(self.fail())?;
        let mut tables = OpenTables::new(&txn);
        // Writes are decided first, then signed together (on two threads if asked) and
        // stored in order. An id met again before its first write is stored would be
        // decided against the state before it, so the writes decided so far are stored
        // first.
        let mut planned: Vec<PlannedWrite<'_>> = Vec::new();
        let mut planned_ids: std::collections::HashSet<&str> = Default::default();
        for node in nodes {
            if !planned_ids.insert(node.id.as_str()) {
                self.store_planned(&mut tables, std::mem::take(&mut planned), &mut summary)?;
                planned_ids.clear();
                planned_ids.insert(node.id.as_str());
            }
            let canonical = encode_node(node);
            let hash = ContentHash::of(&canonical);
            let previous = self.current_in(&txn, &mut tables, &node.id, now)?;
            if let Some((meta, Body::Live(_))) = &previous {
                if meta.hash == hash {
                    summary.unchanged += 1;
                    continue;
                }
            }
            let version = Version {
                hlc: clock.tick(now),
                origin: self.instance_id,
            };
            last_seq += 1;
            let meta = RecordMeta {
                version,
                base: previous
                    .as_ref()
                    .and_then(|(meta, _)| self.base_for_local_write(meta)),
                seq: last_seq,
                hash,
                updated_at: Some(node.updated_at.unwrap_or(now)),
                signature: None,
            };
            planned.push(PlannedWrite {
                node,
                canonical,
                meta,
                previous,
            });
        }
        self.store_planned(&mut tables, planned, &mut summary)?;
        drop(tables);
        self.write_counters(&txn, &clock, last_seq, self.last_conflict)?;
        self.commit(txn, Commit::Durable)?;
        self.clock = clock;
        self.advance_local_seq(last_seq);
        Ok(summary)
    }

    /// Signs the decided writes and stores them in order.
    fn store_planned(
        &self,
        tables: &mut OpenTables<'_>,
        mut planned: Vec<PlannedWrite<'_>>,
        summary: &mut WriteSummary,
    ) -> Result<(), StoreError> {
        let signer = self.signer.as_ref();
        let sign_all = |writes: &mut [PlannedWrite<'_>]| {
            for write in writes {
                let claim = RecordClaim {
                    id: &write.node.id,
                    content: ClaimedContent::Live(write.meta.hash),
                    version: write.meta.version,
                    base: write.meta.base,
                };
                write.meta.signature = signer.map(|sign| RecordSignature::v2(sign(&claim)));
            }
        };
        if self.parallel_signing && planned.len() >= PARALLEL_SIGNING_MIN {
            let half = planned.len() / 2;
            let (first, second) = planned.split_at_mut(half);
            std::thread::scope(|scope| {
                scope.spawn(|| sign_all(second));
                sign_all(first);
            });
        } else {
            sign_all(&mut planned);
        }
        for write in planned {
            match write.previous {
                Some((_, Body::Live(_))) => summary.updated += 1,
                _ => summary.created += 1,
            }
            self.replace_in(
                tables,
                &write.node.id,
                write.previous.as_ref(),
                &write.meta,
                BodyRef::Live(write.node),
                &write.canonical,
            )?;
        }
        Ok(())
    }

    /// [`Store::advance_seq`] after a write of this instance's own, which also wakes
    /// what waits for local changes (auto-sync's push).
    fn advance_local_seq(&mut self, last_seq: u64) {
        if last_seq != self.last_seq {
            self.local_changed.notify(usize::MAX);
        }
        self.advance_seq(last_seq);
    }

    /// Moves the in-memory sequence after a commit and wakes long-polls if records
    /// changed durably (after deferred commits, the durable one that follows wakes them).
    pub(super) fn advance_seq(&mut self, last_seq: u64) {
        if last_seq != self.last_seq {
            self.last_seq = last_seq;
            if self.deferred_after.is_none() {
                self.changed.notify(usize::MAX);
            }
        }
    }

    /// The base of a local write replacing `previous`: the last version by another
    /// author, so a run of our own edits all descend from what we last received.
    fn base_for_local_write(&self, previous: &RecordMeta) -> Option<Version> {
        if previous.version.origin == self.instance_id {
            previous.base
        } else {
            Some(previous.version)
        }
    }

    /// Deletes `id`, leaving a tombstone. Deleting a tombstone changes nothing, so a
    /// retried delete (say, after the answer to the first was lost) is not an error.
    pub fn delete(&mut self, id: &str, now: u64) -> Result<Deletion, StoreError> {
        let mut clock = self.clock.clone();
        let txn = self.db.begin_write().map_err(self.fail())?;
        let mut tables = OpenTables::new(&txn);
        let previous = self.current_in(&txn, &mut tables, id, now)?;
        let previous_meta = match &previous {
            Some((meta, Body::Live(_))) => meta,
            Some((_, Body::Deleted { .. })) => return Ok(Deletion::AlreadyDeleted),
            None => return Ok(Deletion::NotFound),
        };
        let version = Version {
            hlc: clock.tick(now),
            origin: self.instance_id,
        };
        let meta = RecordMeta {
            version,
            base: self.base_for_local_write(previous_meta),
            seq: self.last_seq + 1,
            hash: ContentHash::of(b""),
            updated_at: Some(now),
            signature: None,
        };
        let meta = RecordMeta {
            signature: self.sign(
                id,
                ClaimedContent::Deleted { deleted_at: now },
                version,
                meta.base,
            ),
            ..meta
        };
        self.replace_in(
            &mut tables,
            id,
            previous.as_ref(),
            &meta,
            BodyRef::Deleted(now),
            &[],
        )?;
        drop(tables);
        self.write_counters(&txn, &clock, meta.seq, self.last_conflict)?;
        self.commit(txn, Commit::Durable)?;
        self.clock = clock;
        self.advance_local_seq(meta.seq);
        Ok(Deletion::Deleted)
    }

    #[cfg(test)]
    /// Applies versions from a peer with last-writer-wins: the higher version wins, ties
    /// cannot happen between different authors (the instance id is part of the version).
    /// A version whose clock is more than `max_skew_millis` ahead of `now` is refused so
    /// one bad clock cannot win every conflict. `peer_state` is written in the same
    /// transaction, so a checkpoint never runs ahead of the records it covers.
    pub(crate) fn apply_remote(
        &mut self,
        records: &[RemoteRecord],
        now: u64,
        max_skew_millis: u64,
        peer_state: Option<(&str, &[u8])>,
    ) -> Result<ApplyOutcome, StoreError> {
        self.apply_remote_holding(records, now, max_skew_millis, peer_state, &[])
    }

    /// [`Store::apply_remote`] that also saves (`Some`) or forgets (`None`) entries of
    /// the held-records table in the same transaction, so a checkpoint never moves past
    /// a record without it being held, and a released record leaves the table as it is
    /// applied.
    pub(crate) fn apply_remote_holding(
        &mut self,
        records: &[RemoteRecord],
        now: u64,
        max_skew_millis: u64,
        peer_state: Option<(&str, &[u8])>,
        held_changes: &[(&str, Option<&[u8]>)],
    ) -> Result<ApplyOutcome, StoreError> {
        self.apply_remote_committing(
            records,
            now,
            max_skew_millis,
            peer_state,
            held_changes,
            Commit::Durable,
        )
    }

    /// [`Store::apply_remote_holding`], committed as `commit` says: a push defers its
    /// chunks' commits and makes them durable before it answers (`store::durability`).
    pub(crate) fn apply_remote_committing(
        &mut self,
        records: &[RemoteRecord],
        now: u64,
        max_skew_millis: u64,
        peer_state: Option<(&str, &[u8])>,
        held_changes: &[(&str, Option<&[u8]>)],
        commit: Commit,
    ) -> Result<ApplyOutcome, StoreError> {
        let mut outcome = ApplyOutcome::default();
        let mut clock = self.clock.clone();
        let mut last_seq = self.last_seq;
        let mut last_conflict = self.last_conflict;
        let mut key_written = None;
        let txn = self.db.begin_write().map_err(self.fail())?;
        let mut tables = OpenTables::new(&txn);
        for remote in records {
            let (canonical, hash) = match admitted(remote, now, max_skew_millis) {
                Ok(admitted) => admitted,
                Err(reason) => {
                    outcome.rejected.push((remote.id.clone(), reason));
                    continue;
                }
            };
            let previous = self.current_in(&txn, &mut tables, &remote.id, now)?;
            let incoming_meta = RecordMeta {
                version: remote.version,
                base: remote.base,
                seq: 0,
                hash,
                updated_at: remote.body_updated_at(),
                signature: remote.signature,
            };
            if let Some((local, local_body)) = &previous {
                let same_content =
                    local.hash == hash && local_body.is_deleted() == remote.body.is_deleted();
                let related = |newer: &RecordMeta, older: &RecordMeta| {
                    same_content
                        || newer.version.origin == older.version.origin
                        || newer.base == Some(older.version)
                };
                if remote.version == local.version {
                    outcome.unchanged += 1;
                    continue;
                }
                if remote.version < local.version {
                    outcome.stale += 1;
                    if !related(local, &incoming_meta) {
                        last_conflict += 1;
                        outcome.conflicts += 1;
                        let loser = Record {
                            id: remote.id.clone(),
                            meta: incoming_meta,
                            body: remote.body.clone(),
                        };
                        self.log_conflict_in(&txn, last_conflict, now, local.version, &loser)?;
                    }
                    continue;
                }
                if !related(&incoming_meta, local) {
                    last_conflict += 1;
                    outcome.conflicts += 1;
                    let loser = Record {
                        id: remote.id.clone(),
                        meta: local.clone(),
                        body: local_body.clone(),
                    };
                    self.log_conflict_in(&txn, last_conflict, now, remote.version, &loser)?;
                }
            }
            clock.observe(remote.version.hlc);
            last_seq += 1;
            let meta = RecordMeta {
                seq: last_seq,
                ..incoming_meta
            };
            self.replace_in(
                &mut tables,
                &remote.id,
                previous.as_ref(),
                &meta,
                BodyRef::of(&remote.body),
                &canonical,
            )?;
            self.write_author_key(&txn, remote, &mut key_written)?;
            outcome.applied += 1;
        }
        drop(tables);
        self.write_alongside(&txn, peer_state, held_changes)?;
        self.write_counters(&txn, &clock, last_seq, last_conflict)?;
        self.commit(txn, commit)?;
        self.clock = clock;
        self.last_conflict = last_conflict;
        self.advance_seq(last_seq);
        Ok(outcome)
    }

    /// Keeps the author key sent with `remote`. A page from one author carries the same
    /// key with every record: written once per transaction (`written` is the last one
    /// written), not once per record.
    fn write_author_key(
        &self,
        txn: &WriteTransaction,
        remote: &RemoteRecord,
        written: &mut Option<(InstanceId, [u8; 32])>,
    ) -> Result<(), StoreError> {
        if let Some(key) = &remote.author_key {
            if *written != Some((remote.version.origin, *key)) {
                let mut keys = txn.open_table(AUTHOR_KEYS).map_err(self.fail())?;
                keys.insert(remote.version.origin.to_hex().as_str(), &key[..])
                    .map_err(self.fail())?;
                *written = Some((remote.version.origin, *key));
            }
        }
        Ok(())
    }

    /// What a page of records writes with them: the peer's checkpoint and the held
    /// records' changes (see [`Store::apply_remote_holding`]).
    fn write_alongside(
        &self,
        txn: &WriteTransaction,
        peer_state: Option<(&str, &[u8])>,
        held_changes: &[(&str, Option<&[u8]>)],
    ) -> Result<(), StoreError> {
        if let Some((peer, state)) = peer_state {
            let mut peers = txn.open_table(PEERS).map_err(self.fail())?;
            peers.insert(peer, state).map_err(self.fail())?;
        }
        if !held_changes.is_empty() {
            let mut held = txn.open_table(HELD).map_err(self.fail())?;
            for (id, value) in held_changes {
                match value {
                    Some(value) => held.insert(*id, *value).map_err(self.fail())?,
                    None => held.remove(*id).map_err(self.fail())?,
                };
            }
        }
        Ok(())
    }

    /// The current record for `id` inside a write transaction: live node or tombstone.
    /// A damaged one is moved aside and counts as none, so the write replaces it (this
    /// is how a version fetched again from a peer repairs it).
    fn current_in(
        &self,
        txn: &WriteTransaction,
        tables: &mut OpenTables<'_>,
        id: &str,
        now: u64,
    ) -> Result<Option<(RecordMeta, Body)>, StoreError> {
        let open = tables.get(self)?;
        let live = {
            let value = open.nodes.get(id).map_err(self.fail())?;
            value.map(|value| check_live(id, value.value()))
        };
        let damaged = match live {
            Some(Ok((node, meta))) => return Ok(Some((meta, Body::Live(node)))),
            Some(Err(reason)) => Some((RecordTable::Nodes, reason)),
            None => {
                let value = open.tombstones.get(id).map_err(self.fail())?;
                match value.map(|value| check_tombstone(value.value())) {
                    Some(Ok((meta, deleted_at))) => {
                        return Ok(Some((meta, Body::Deleted { deleted_at })));
                    }
                    Some(Err(reason)) => Some((RecordTable::Tombstones, reason)),
                    None => None,
                }
            }
        };
        if let Some((table, reason)) = damaged {
            let record = DamagedRecord {
                table,
                id: id.to_owned(),
                reason,
            };
            // Moving it aside opens the record tables itself.
            tables.close();
            self.move_aside_now(txn, record, now)?;
        }
        Ok(None)
    }

    /// Replaces whatever `id` had with `body` under `meta`, keeping the change log and
    /// the indexes in step.
    fn replace_in(
        &self,
        tables: &mut OpenTables<'_>,
        id: &str,
        previous: Option<&(RecordMeta, Body)>,
        meta: &RecordMeta,
        body: BodyRef<'_>,
        canonical: &[u8],
    ) -> Result<(), StoreError> {
        let RecordTables {
            changes,
            nodes,
            tombstones,
            indexes,
        } = tables.get(self)?;
        if let Some((previous_meta, previous_body)) = previous {
            changes.remove(previous_meta.seq).map_err(self.fail())?;
            match previous_body {
                Body::Live(old) => {
                    nodes.remove(id).map_err(self.fail())?;
                    for (table, key) in indexes.iter_mut().zip(index_keys(old)) {
                        if let Some(key) = key {
                            table.remove(key, id).map_err(self.fail())?;
                        }
                    }
                }
                Body::Deleted { .. } => {
                    tombstones.remove(id).map_err(self.fail())?;
                }
            }
        }
        changes.insert(meta.seq, id).map_err(self.fail())?;
        match body {
            BodyRef::Live(node) => {
                nodes
                    .insert(id, record::encode(meta, canonical).as_slice())
                    .map_err(self.fail())?;
                for (table, key) in indexes.iter_mut().zip(index_keys(node)) {
                    if let Some(key) = key {
                        table.insert(key, id).map_err(self.fail())?;
                    }
                }
            }
            BodyRef::Deleted(deleted_at) => {
                tombstones
                    .insert(
                        id,
                        record::encode(meta, &deleted_at.to_be_bytes()).as_slice(),
                    )
                    .map_err(self.fail())?;
            }
        }
        Ok(())
    }

    fn log_conflict_in(
        &self,
        txn: &WriteTransaction,
        number: u64,
        now: u64,
        winner: Version,
        loser: &Record,
    ) -> Result<(), StoreError> {
        let body = match &loser.body {
            Body::Live(node) => {
                let mut bytes = vec![0];
                bytes.extend_from_slice(&record::encode(&loser.meta, &encode_node(node)));
                bytes
            }
            Body::Deleted { deleted_at } => {
                let mut bytes = vec![1];
                bytes.extend_from_slice(&record::encode(&loser.meta, &deleted_at.to_be_bytes()));
                bytes
            }
        };
        let mut value = Vec::with_capacity(8 + 40 + 4 + loser.id.len() + body.len());
        value.extend_from_slice(&now.to_be_bytes());
        value.extend_from_slice(&winner.hlc.0.to_be_bytes());
        value.extend_from_slice(&winner.origin.0);
        value.extend_from_slice(&(loser.id.len() as u32).to_be_bytes());
        value.extend_from_slice(loser.id.as_bytes());
        value.extend_from_slice(&body);
        let mut conflicts = txn.open_table(CONFLICTS).map_err(self.fail())?;
        conflicts
            .insert(number, value.as_slice())
            .map_err(self.fail())?;
        Ok(())
    }
}

impl RemoteRecord {
    fn body_updated_at(&self) -> Option<u64> {
        match &self.body {
            Body::Live(node) => node.updated_at,
            Body::Deleted { deleted_at } => Some(*deleted_at),
        }
    }
}

/// Makes a new store file beside `path` and links it into place, so that no other
/// process ever sees a store file of 0 bytes at `path` (redb writes its header after
/// creating the file): an empty file there is always a lost store, refused on open.
/// `None` when another process linked its new store first.
fn create_new(path: &Path, options: &StoreOptions) -> Result<Option<Database>, StoreError> {
    let temporary = path.with_extension(format!("creating-{}", std::process::id()));
    let db = Database::builder()
        .set_cache_size(options.cache_bytes)
        .create(&temporary)
        .map_err(|error| open_error(&temporary, error))?;
    let linked = match std::fs::hard_link(&temporary, path) {
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Ok(()) => Ok(true),
        // A file system without hard links: a rename is not exclusive, but the window
        // is the creation of a new store only.
        Err(_) => std::fs::rename(&temporary, path).map(|()| true),
    };
    let _ = std::fs::remove_file(&temporary);
    match linked {
        Ok(true) => Ok(Some(db)),
        Ok(false) => Ok(None),
        Err(source) => Err(StoreError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

fn open_error(path: &Path, error: redb::DatabaseError) -> StoreError {
    let path = path.to_owned();
    match error {
        redb::DatabaseError::DatabaseAlreadyOpen => StoreError::Locked { path },
        redb::DatabaseError::Storage(redb::StorageError::Io(source)) => {
            if source.kind() == std::io::ErrorKind::WouldBlock {
                StoreError::Locked { path }
            } else {
                StoreError::Io { path, source }
            }
        }
        // Found when redb repairs a store that was not closed cleanly: a damaged page
        // (issue 10), which no later start will repair either.
        redb::DatabaseError::Storage(redb::StorageError::Corrupted(reason)) => {
            StoreError::Unrepairable { path, reason }
        }
        redb::DatabaseError::UpgradeRequired(version) => StoreError::Unreadable {
            path,
            reason: format!("it uses redb file format {version}, which this build cannot read"),
        },
        other => StoreError::Unreadable {
            path,
            reason: other.to_string(),
        },
    }
}

/// A remote record's canonical bytes and content hash, or why it is refused before the
/// store looks at it: a clock more than `max_skew_millis` ahead of `now`, an id that
/// is not its node's, a claimed hash that does not match.
fn admitted(
    remote: &RemoteRecord,
    now: u64,
    max_skew_millis: u64,
) -> Result<(Vec<u8>, ContentHash), String> {
    if remote.version.hlc.millis() > now.saturating_add(max_skew_millis) {
        return Err(format!(
            "version clock {} is more than {} s ahead of ours",
            crate::model::format_rfc3339(remote.version.hlc.millis()),
            max_skew_millis / 1000
        ));
    }
    let canonical = match &remote.body {
        Body::Live(node) => {
            if node.id != remote.id {
                return Err(format!("record id {:?} does not match", node.id));
            }
            encode_node(node)
        }
        Body::Deleted { .. } => Vec::new(),
    };
    let hash = ContentHash::of(&canonical);
    if let (Some(claimed), Body::Live(_)) = (remote.hash, &remote.body) {
        if claimed != hash {
            return Err(format!(
                "content hash {} does not match the record ({})",
                claimed, hash
            ));
        }
    }
    Ok((canonical, hash))
}
