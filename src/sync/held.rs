//! Records held back: a received version refused for a reason that can go away — its
//! author is not trusted here yet, or its clock is ahead of ours — is kept in the store's
//! held table with its reason instead of being dropped, and applied when the reason is
//! gone (issue 11, "records are dropped while sync reports success, for good"). The
//! table's own bounds are the one limit that can refuse a record for now: what does not
//! fit is dropped from it, counted as `held_table_full`, and fetched again once there is
//! room (`sync::held_room`). The record limits (`model::LIMITS`) are the format's, the
//! same on every node and not settable, so a record past them is refused for good and
//! counted (`ark_lattice_records_refused_total`), as are forged and malformed ones.
//!
//! # Implementation
//!
//! An entry is the record as it arrived on the wire (signature and author key
//! included), so releasing it runs exactly the checks a fresh arrival runs. One entry per
//! record id, the highest version held. Entries are written in the transaction that
//! moves the checkpoint past them, and removed in the one that applies them, so a crash
//! never loses one. Deciding what to hold is `Syncer::verified_record`'s; this module
//! is the entry, its bytes, and the syncer's holding and releasing. Releasing runs at
//! the start of every sync, so a trust accepted or a clock caught up takes effect at
//! the next sync (manual or automatic).

use std::collections::BTreeMap;

use miniserde::json::{self, Number, Object, Value};

use super::client::Syncer;
use super::trust_book;
use crate::model::{Version, unix_millis_now};
use crate::protocol::{Fields, parse_object, record_from_wire};
use crate::store::{StateTable, StoreError};
use crate::trust::PublicKey;

/// Why a record is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum HoldReason {
    /// Its author is not trusted for writing here and no core peer delivered it.
    UntrustedAuthor,
    /// Its version clock is more than the allowed skew ahead of ours.
    ClockAhead,
    /// Dropped from the full held table to make room, and fetched again from peers once
    /// there is room (`sync::held_room`). Counted, never an entry of the table.
    TableFull,
}

impl HoldReason {
    pub const ALL: [HoldReason; 3] = [
        HoldReason::UntrustedAuthor,
        HoldReason::ClockAhead,
        HoldReason::TableFull,
    ];

    /// The name in JSON answers and metrics.
    pub fn name(self) -> &'static str {
        match self {
            HoldReason::UntrustedAuthor => "untrusted_author",
            HoldReason::ClockAhead => "clock_ahead",
            HoldReason::TableFull => "held_table_full",
        }
    }

    fn from_name(name: &str) -> Option<HoldReason> {
        HoldReason::ALL
            .into_iter()
            .find(|reason| reason.name() == name)
    }
}

/// A record held back, with what is needed to check it again.
#[derive(Debug, Clone)]
pub struct Held {
    pub id: String,
    pub version: Version,
    pub reason: HoldReason,
    /// The author's key fingerprint (`SHA256:…`), for the command that trusts it.
    pub author_fingerprint: String,
    /// Why, for people.
    pub message: String,
    /// The peer it came from, and whether that peer was core-trusted then.
    pub peer: String,
    pub delivered_by_core: bool,
    /// The record as it arrived.
    pub record: Value,
    /// When it was held (Unix ms); the oldest make room first.
    pub held_at: u64,
}

impl Held {
    pub fn encode(&self) -> Vec<u8> {
        let mut object = Object::new();
        let text = |value: &str| Value::String(value.to_owned());
        object.insert("id".into(), text(&self.id));
        object.insert("version".into(), text(&self.version.to_wire()));
        object.insert("reason".into(), text(self.reason.name()));
        object.insert("author".into(), text(&self.author_fingerprint));
        object.insert("message".into(), text(&self.message));
        object.insert("peer".into(), text(&self.peer));
        object.insert("core".into(), Value::Bool(self.delivered_by_core));
        object.insert("record".into(), self.record.clone());
        object.insert("at".into(), Value::Number(Number::U64(self.held_at)));
        json::to_string(&Value::Object(object)).into_bytes()
    }

    pub fn decode(bytes: &[u8]) -> Result<Held, String> {
        let object = parse_object(bytes, "held record").map_err(|error| error.to_string())?;
        let fields = Fields::new(&object, "held record");
        let text = |name| fields.str(name).map_err(|error| error.to_string());
        let reason = text("reason")?;
        let version = text("version")?;
        Ok(Held {
            id: text("id")?.to_owned(),
            version: Version::from_wire(version)?,
            reason: HoldReason::from_name(reason)
                .ok_or_else(|| format!("held record: unknown reason {reason:?}"))?,
            author_fingerprint: text("author")?.to_owned(),
            message: text("message")?.to_owned(),
            peer: text("peer")?.to_owned(),
            delivered_by_core: fields
                .opt_bool("core")
                .map_err(|error| error.to_string())?
                .unwrap_or(false),
            record: fields
                .get("record")
                .cloned()
                .ok_or_else(|| "held record: `record` is missing".to_owned())?,
            // Entries written before the time was kept count as the oldest.
            held_at: fields
                .opt_u64("at")
                .map_err(|error| error.to_string())?
                .unwrap_or(0),
        })
    }
}

/// Why a received record was not applied.
#[derive(Debug, Clone)]
pub enum Refusal {
    /// For good: malformed, forged, signed by the wrong key, a format 1 tombstone.
    Refused(String),
    /// For now: held until the reason goes away.
    Held(Box<Held>),
}

impl Refusal {
    pub fn message(&self) -> &str {
        match self {
            Refusal::Refused(message) => message,
            Refusal::Held(held) => &held.message,
        }
    }
}

/// Held records counted by reason, and those from untrusted authors by author.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeldCounts {
    pub by_reason: BTreeMap<HoldReason, u64>,
    /// Author fingerprint -> records held because that author is not trusted.
    pub untrusted_authors: BTreeMap<String, u64>,
}

impl HeldCounts {
    pub fn add(&mut self, held: &Held) {
        self.count(held.reason, &held.author_fingerprint);
    }

    pub fn count(&mut self, reason: HoldReason, author_fingerprint: &str) {
        *self.by_reason.entry(reason).or_insert(0) += 1;
        if reason == HoldReason::UntrustedAuthor {
            *self
                .untrusted_authors
                .entry(author_fingerprint.to_owned())
                .or_insert(0) += 1;
        }
    }

    pub fn total(&self) -> u64 {
        self.by_reason.values().sum()
    }

    /// What a sync's result says of these: the count of every reason and one line per
    /// cause, or nothing at all when none is held.
    pub(crate) fn wire_fields(&self) -> (Vec<(String, u64)>, Vec<String>) {
        if self.total() == 0 {
            return (Vec::new(), Vec::new());
        }
        (self.by_reason_all(), self.lines())
    }

    /// The count of every reason, in [`HoldReason::ALL`]'s order, zeros included.
    pub(crate) fn by_reason_all(&self) -> Vec<(String, u64)> {
        HoldReason::ALL
            .iter()
            .map(|reason| {
                let count = self.by_reason.get(reason).copied().unwrap_or(0);
                (reason.name().to_owned(), count)
            })
            .collect()
    }

    #[cfg(test)]
    /// `{"untrusted_author": N, "clock_ahead": M, "held_table_full": K}`, every reason
    /// present.
    pub(crate) fn reasons_json(&self) -> Value {
        let mut object = Object::new();
        for reason in HoldReason::ALL {
            let count = self.by_reason.get(&reason).copied().unwrap_or(0);
            object.insert(reason.name().into(), Value::Number(Number::U64(count)));
        }
        Value::Object(object)
    }

    /// One line per cause, saying what to run: `held N from untrusted author SHA256:… —
    /// run: ark-lattice trust accept SHA256:…`.
    pub fn lines(&self) -> Vec<String> {
        let mut lines: Vec<String> = self
            .untrusted_authors
            .iter()
            .map(|(author, count)| {
                format!(
                    "held {count} from untrusted author {author} — run: ark-lattice trust accept {author}"
                )
            })
            .collect();
        if let Some(count) = self.by_reason.get(&HoldReason::ClockAhead) {
            lines.push(format!(
                "held {count} whose clock is ahead of this node's — applied once the clock catches up (check the clocks)"
            ));
        }
        if let Some(count) = self.by_reason.get(&HoldReason::TableFull) {
            lines.push(format!(
                "held {count} more than the held table keeps — dropped from it and fetched again once held records are applied or removed (see: ark-lattice trust pending)"
            ));
        }
        lines
    }
}

impl Syncer {
    /// The held-table entries to write for `held`, encoded: one per id, the highest
    /// version. An untrusted author's key is listed as pending (`trust pending`), so the
    /// command the sync prints (`trust accept`) finds it.
    pub(super) fn held_entries<'a>(
        &self,
        held: &'a [Held],
    ) -> Result<Vec<(&'a Held, Vec<u8>)>, StoreError> {
        // Id -> the entry to write; kept in arrival order, which `held_room` drops by
        // when a batch alone passes the bounds.
        let mut entries: BTreeMap<&str, &Held> = BTreeMap::new();
        let mut order: Vec<&str> = Vec::new();
        let mut authors = std::collections::BTreeSet::new();
        for record in held {
            let stored = self.store.borrow().state(StateTable::Held, &record.id)?;
            let kept = stored
                .and_then(|bytes| Held::decode(&bytes).ok())
                .is_some_and(|stored| stored.version >= record.version);
            let newer = entries
                .get(record.id.as_str())
                .is_some_and(|other| other.version >= record.version);
            if !kept && !newer && entries.insert(&record.id, record).is_none() {
                order.push(&record.id);
            }
            if record.reason == HoldReason::UntrustedAuthor {
                let key = record_from_wire(&record.record, "held record")
                    .ok()
                    .and_then(|(_, key)| key)
                    .and_then(|key| PublicKey::from_base64(&key).ok());
                if let Some(key) = key {
                    authors.insert(key.to_base64());
                }
            }
        }
        for key in authors {
            if let Ok(key) = PublicKey::from_base64(&key) {
                trust_book::note_pending(
                    &mut self.store.borrow_mut(),
                    key,
                    "record",
                    unix_millis_now(),
                )?;
            }
        }
        Ok(order
            .into_iter()
            .map(|id| {
                let record = entries[id];
                (record, record.encode())
            })
            .collect())
    }

    /// Checks every held record again: those whose reason went away are applied and
    /// leave the table, those refused for good now (say, a key removed) leave it with a
    /// warning, the rest stay. Returns how many were applied.
    ///
    /// The table holds up to 100,000 records, which one synchronous pass checked and
    /// applied in one transaction: accepting their author's key held the node's one
    /// thread for 47 s, and no request was answered meanwhile. So the entries are taken
    /// in chunks of at most [`RELEASE_CHUNK`] records or [`RELEASE_SLICE`] of checking,
    /// each chunk read, checked and committed without an `.await` in between (a sync
    /// running meanwhile sees it whole or not at all), with a pause on a timer after
    /// each so requests are served between chunks.
    pub(crate) async fn release_held(&self) -> Result<u64, StoreError> {
        let ids = self.with_held_index(|index| index.ids())?;
        let mut total = ReleaseOutcome::default();
        let mut next = 0;
        while next < ids.len() {
            next += self.release_chunk(&ids[next..], &mut total)?;
            smol::Timer::after(RELEASE_PAUSE).await;
        }
        if total.released > 0 {
            self.log(format!(
                "released {} held record(s): {} applied, {} unchanged, {} stale",
                total.released, total.applied, total.unchanged, total.stale
            ));
        }
        Ok(total.applied)
    }

    /// One chunk of [`Syncer::release_held`]: the first entries of `ids` still held, as
    /// the store has them now, up to the chunk's bounds. Returns how many ids it took
    /// (at least one).
    fn release_chunk(
        &self,
        ids: &[String],
        total: &mut ReleaseOutcome,
    ) -> Result<usize, StoreError> {
        let started = std::time::Instant::now();
        let mut taken = 0;
        let mut records = Vec::new();
        let mut gone = Vec::new();
        for id in ids.iter().take(RELEASE_CHUNK) {
            if taken > 0 && started.elapsed() >= RELEASE_SLICE {
                break;
            }
            taken += 1;
            let Some(bytes) = self.store.borrow().state(StateTable::Held, id)? else {
                continue;
            };
            let entry = match Held::decode(&bytes) {
                Ok(entry) => entry,
                Err(error) => {
                    eprintln!("warning: held record {id}: {error}; it is ignored");
                    continue;
                }
            };
            let context = format!("held record from {}", entry.peer);
            match self.verified_record(
                &entry.record,
                &context,
                &entry.peer,
                entry.delivered_by_core,
            ) {
                Ok(record) => {
                    records.push(record);
                    gone.push(id.as_str());
                }
                Err(Refusal::Held(_)) => {}
                Err(Refusal::Refused(reason)) => {
                    eprintln!("warning: {reason}; the held record is dropped");
                    gone.push(id.as_str());
                }
            }
        }
        if gone.is_empty() {
            return Ok(taken);
        }
        let changes: Vec<(&str, Option<&[u8]>)> = gone.iter().map(|id| (*id, None)).collect();
        let outcome = self.store.borrow_mut().apply_remote_holding(
            &records,
            unix_millis_now(),
            self.max_clock_skew_millis,
            None,
            &changes,
        );
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(error) => {
                self.forget_held_index();
                return Err(error);
            }
        };
        self.held_written(&[], &gone, None);
        total.released += records.len();
        total.applied += outcome.applied;
        total.unchanged += outcome.unchanged;
        total.stale += outcome.stale;
        Ok(taken)
    }
}

/// Held entries checked and applied in one transaction when they are released, at
/// most: what a push applies per transaction (`server::peer_api`), so a request
/// arriving meanwhile waits for at most one chunk's checks and commit.
const RELEASE_CHUNK: usize = 250;

/// Checking that ends a chunk of a release before [`RELEASE_CHUNK`] records: a slow
/// machine (or a debug build) commits smaller chunks rather than hold requests longer.
/// Not shorter, since every commit waits out an `fdatasync` whatever its size.
const RELEASE_SLICE: std::time::Duration = std::time::Duration::from_millis(20);

/// The pause after each released chunk; a timer, since the executor reads new I/O only
/// when the reactor runs (see `server::peer_api`'s `Slices`).
const RELEASE_PAUSE: std::time::Duration = std::time::Duration::from_micros(100);

/// What [`Syncer::release_held`] did, over its chunks.
#[derive(Debug, Default)]
struct ReleaseOutcome {
    released: usize,
    applied: u64,
    unchanged: u64,
    stale: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Hlc, InstanceId};

    #[test]
    fn an_entry_round_trips_and_counts_name_the_command() {
        let held = Held {
            id: "x".into(),
            version: Version {
                hlc: Hlc::from_parts(1_700_000_000_000, 3),
                origin: InstanceId([5; 32]),
            },
            reason: HoldReason::UntrustedAuthor,
            author_fingerprint: "SHA256:0505-0505-0505-0505".into(),
            message: "not trusted".into(),
            peer: "http://127.0.0.1:9000".into(),
            delivered_by_core: false,
            record: json::from_str(r#"{"id":"x","deleted_at":1}"#).unwrap(),
            held_at: 1_700_000_000_001,
        };
        assert_eq!(
            Held::decode(&held.encode()).unwrap().encode(),
            held.encode()
        );
        assert!(Held::decode(b"{}").is_err());
        assert!(Held::decode(b"\xff").is_err());
        let mut counts = HeldCounts::default();
        counts.add(&held);
        counts.add(&Held {
            reason: HoldReason::ClockAhead,
            ..held
        });
        assert_eq!(counts.total(), 2);
        assert_eq!(
            counts.lines(),
            [
                "held 1 from untrusted author SHA256:0505-0505-0505-0505 — run: ark-lattice trust accept SHA256:0505-0505-0505-0505",
                "held 1 whose clock is ahead of this node's — applied once the clock catches up (check the clocks)",
            ]
        );
        assert_eq!(
            json::to_string(&counts.reasons_json()),
            r#"{"clock_ahead":1,"held_table_full":0,"untrusted_author":1}"#
        );
    }
}
