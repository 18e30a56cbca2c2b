//! What we remember about each peer, persisted in the store's peer table as JSON:
//! its identity, both checkpoints, backoff and statistics.
//!
//! Checkpoints: `pull_seq` is the peer's change sequence we have applied up to (valid
//! only for the peer's store `epoch`); `push_seq` is our change sequence the peer has
//! acknowledged. Both advance only after the batch they cover is committed.

use miniserde::json::{self, Number, Object, Value};

use super::core::CopyProgress;
use crate::config::SYNC_BATCH_RECORDS;
use crate::protocol::{Fields, WireError, parse_object};

/// The smallest batch the adaptive batch size goes down to.
const MIN_BATCH_RECORDS: usize = 20;

/// The peer-table key holding the instance-wide totals. Peer keys are URLs, which
/// never start with `~`.
pub const GLOBAL_STATS_KEY: &str = "~federation-stats";

/// ARK's sync counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncStats {
    pub total_syncs: u64,
    pub successful_syncs: u64,
    pub failed_syncs: u64,
    pub nodes_sent: u64,
    pub nodes_received: u64,
    pub conflicts_resolved: u64,
}

impl SyncStats {
    pub fn add(&mut self, other: &SyncStats) {
        self.total_syncs += other.total_syncs;
        self.successful_syncs += other.successful_syncs;
        self.failed_syncs += other.failed_syncs;
        self.nodes_sent += other.nodes_sent;
        self.nodes_received += other.nodes_received;
        self.conflicts_resolved += other.conflicts_resolved;
    }

    /// The counters as ARK's `stats` names them.
    pub(crate) fn to_ark(self) -> crate::protocol::ArkStats {
        crate::protocol::ArkStats {
            total_syncs: self.total_syncs,
            successful_syncs: self.successful_syncs,
            failed_syncs: self.failed_syncs,
            nodes_received: self.nodes_received,
            nodes_shared: self.nodes_sent,
            conflicts_resolved: self.conflicts_resolved,
        }
    }

    /// ARK's field names.
    pub fn to_json(&self) -> Value {
        let number = |n: u64| Value::Number(Number::U64(n));
        let mut object = Object::new();
        object.insert("totalSyncs".into(), number(self.total_syncs));
        object.insert("successfulSyncs".into(), number(self.successful_syncs));
        object.insert("failedSyncs".into(), number(self.failed_syncs));
        object.insert("nodesSent".into(), number(self.nodes_sent));
        object.insert("nodesReceived".into(), number(self.nodes_received));
        object.insert("conflictsResolved".into(), number(self.conflicts_resolved));
        Value::Object(object)
    }

    pub fn from_json(fields: &Fields<'_>) -> Result<SyncStats, WireError> {
        let get = |name: &str| fields.opt_u64(name).map(Option::unwrap_or_default);
        Ok(SyncStats {
            total_syncs: get("totalSyncs")?,
            successful_syncs: get("successfulSyncs")?,
            failed_syncs: get("failedSyncs")?,
            nodes_sent: get("nodesSent")?,
            nodes_received: get("nodesReceived")?,
            conflicts_resolved: get("conflictsResolved")?,
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        json::to_string(&self.to_json()).into_bytes()
    }

    pub fn decode(bytes: &[u8]) -> Result<SyncStats, WireError> {
        let object = parse_object(bytes, "stored federation stats")?;
        SyncStats::from_json(&Fields::new(&object, "stored federation stats"))
    }
}

/// One peer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerState {
    pub url: String,
    pub added_at: u64,
    /// The peer's instance id as it reports it (64 hex for ark-lattice, any text for ARK).
    pub instance_id: Option<String>,
    pub instance_name: Option<String>,
    /// `v2` or `legacy`, from the peer's `/federation/info`.
    pub protocol: Option<String>,
    /// The peer's store epoch (hex) that `pull_seq` belongs to.
    pub epoch: Option<String>,
    pub pull_seq: u64,
    pub push_seq: u64,
    /// Legacy peers: the newest `updated_at` (ms) pushed to them, for the user to see;
    /// `push_seq` decides what is pushed next, as with v2 peers.
    pub legacy_pushed_until: u64,
    pub last_attempt: Option<u64>,
    pub last_success: Option<u64>,
    pub last_error: Option<String>,
    /// Failures in a row; drives the backoff.
    pub failures: u32,
    pub stats: SyncStats,
    /// Node types exchanged with this peer (`add-peer --types`); empty for all.
    pub types: Vec<String>,
    /// Records per batch with this peer; 0 for the default. Halved after each failed
    /// sync and doubled back after each good one, so a link that keeps dropping still
    /// completes batches.
    pub batch_limit: u64,
    /// Added while unreachable and without a key: the key its `/federation/info` shows
    /// at the first contact is pinned (trusted as core), as `add-peer` would have.
    pub pin_at_first_contact: bool,
    /// Our store's repair count (`Store::repairs`) when the checkpoints were set. When
    /// damaged records were moved aside since, the checkpoints lie past them, so the next
    /// sync reconciles to fetch them again.
    pub repairs: u64,
    /// A first copy of the peer's feed under way, or read to its end and not yet pushed
    /// past (`sync::core::copy`).
    pub copy: Option<CopyProgress>,
    /// Our count of held records dropped for room (`sync::held_room`) when the
    /// checkpoints were set. When more were dropped since, the next sync with room to
    /// hold again reconciles to fetch them again.
    pub held_drops: u64,
}

impl PeerState {
    pub fn new(url: &str, now: u64) -> PeerState {
        PeerState {
            url: url.to_owned(),
            added_at: now,
            ..PeerState::default()
        }
    }

    /// Whether a sync can start from the changes feed: the peer is an ark-lattice
    /// instance and both checkpoints belong to its current store epoch (set only when a
    /// reconciliation finished).
    pub(crate) fn has_checkpoint(&self) -> bool {
        self.protocol.as_deref() == Some("v2") && self.instance_id.is_some() && self.epoch.is_some()
    }

    /// Records per batch with this peer now.
    pub(crate) fn batch_records(&self) -> usize {
        match self.batch_limit {
            0 => SYNC_BATCH_RECORDS,
            limit => (limit as usize).clamp(MIN_BATCH_RECORDS, SYNC_BATCH_RECORDS),
        }
    }

    /// Adapts the batch size to how the last sync went.
    pub(crate) fn adapt_batch(&mut self, success: bool) {
        let current = self.batch_records() as u64;
        self.batch_limit = if success {
            if current * 2 >= SYNC_BATCH_RECORDS as u64 {
                0
            } else {
                current * 2
            }
        } else {
            (current / 2).max(MIN_BATCH_RECORDS as u64)
        };
    }

    /// Reachable at the last attempt.
    pub(crate) fn is_active(&self) -> bool {
        self.failures == 0 && self.last_success.is_some()
    }

    pub fn to_json(&self) -> Value {
        let mut object = Object::new();
        let text = |value: &str| Value::String(value.to_owned());
        let number = |n: u64| Value::Number(Number::U64(n));
        let optional_text = |value: &Option<String>| value.as_deref().map_or(Value::Null, text);
        let optional_number = |value: Option<u64>| value.map_or(Value::Null, number);
        object.insert("url".into(), text(&self.url));
        object.insert("addedAt".into(), number(self.added_at));
        object.insert("instanceId".into(), optional_text(&self.instance_id));
        object.insert("instanceName".into(), optional_text(&self.instance_name));
        object.insert("protocol".into(), optional_text(&self.protocol));
        object.insert("epoch".into(), optional_text(&self.epoch));
        object.insert("pullSeq".into(), number(self.pull_seq));
        object.insert("pushSeq".into(), number(self.push_seq));
        object.insert("legacyPushedUntil".into(), number(self.legacy_pushed_until));
        object.insert("lastAttempt".into(), optional_number(self.last_attempt));
        object.insert("lastSync".into(), optional_number(self.last_success));
        object.insert("lastError".into(), optional_text(&self.last_error));
        object.insert("failures".into(), number(u64::from(self.failures)));
        object.insert("active".into(), Value::Bool(self.is_active()));
        object.insert("stats".into(), self.stats.to_json());
        if self.batch_limit != 0 {
            object.insert("batchLimit".into(), number(self.batch_limit));
        }
        if self.pin_at_first_contact {
            object.insert("keyPinnedAtFirstContact".into(), Value::Bool(true));
        }
        if self.repairs != 0 {
            object.insert("repairs".into(), number(self.repairs));
        }
        if let Some(copy) = &self.copy {
            object.insert("copy".into(), copy_to_json(copy));
        }
        if self.held_drops != 0 {
            object.insert("heldDrops".into(), number(self.held_drops));
        }
        if !self.types.is_empty() {
            object.insert(
                "types".into(),
                Value::Array(self.types.iter().map(|name| text(name)).collect()),
            );
        }
        Value::Object(object)
    }

    pub fn encode(&self) -> Vec<u8> {
        json::to_string(&self.to_json()).into_bytes()
    }

    pub fn decode(bytes: &[u8]) -> Result<PeerState, WireError> {
        let object = parse_object(bytes, "stored peer state")?;
        PeerState::from_json(&object, "stored peer state")
    }

    /// Reads what `to_json` wrote: the stored entry, and a peer in the peer list our
    /// CLI reads from `GET /api/v2/federation/peers`.
    pub fn from_json(object: &Object, context: &str) -> Result<PeerState, WireError> {
        let fields = Fields::new(object, context);
        let owned = |value: Option<&str>| value.map(str::to_owned);
        let stats = match fields.get("stats") {
            Some(value) => SyncStats::from_json(&Fields::of(value, context)?)?,
            None => SyncStats::default(),
        };
        Ok(PeerState {
            url: fields.str("url")?.to_owned(),
            added_at: fields.opt_u64("addedAt")?.unwrap_or(0),
            instance_id: owned(fields.opt_str("instanceId")?),
            instance_name: owned(fields.opt_str("instanceName")?),
            protocol: owned(fields.opt_str("protocol")?),
            epoch: owned(fields.opt_str("epoch")?),
            pull_seq: fields.opt_u64("pullSeq")?.unwrap_or(0),
            push_seq: fields.opt_u64("pushSeq")?.unwrap_or(0),
            legacy_pushed_until: fields.opt_u64("legacyPushedUntil")?.unwrap_or(0),
            last_attempt: fields.opt_u64("lastAttempt")?,
            last_success: fields.opt_u64("lastSync")?,
            last_error: owned(fields.opt_str("lastError")?),
            failures: fields
                .opt_u64("failures")?
                .unwrap_or(0)
                .min(u64::from(u32::MAX)) as u32,
            stats,
            batch_limit: fields.opt_u64("batchLimit")?.unwrap_or(0),
            pin_at_first_contact: fields.opt_bool("keyPinnedAtFirstContact")?.unwrap_or(false),
            repairs: fields.opt_u64("repairs")?.unwrap_or(0),
            copy: match fields.get("copy") {
                Some(Value::Null) | None => None,
                Some(value) => Some(copy_from_json(&Fields::of(value, context)?)?),
            },
            held_drops: fields.opt_u64("heldDrops")?.unwrap_or(0),
            types: fields
                .opt_array("types")?
                .unwrap_or_default()
                .iter()
                .filter_map(|name| match name {
                    Value::String(name) => Some(name.clone()),
                    _ => None,
                })
                .collect(),
        })
    }
}

fn copy_to_json(copy: &CopyProgress) -> Value {
    let number = |n: u64| Value::Number(Number::U64(n));
    let mut object = Object::new();
    object.insert("epoch".into(), Value::String(copy.epoch.clone()));
    object.insert("seq".into(), number(copy.seq));
    object.insert("done".into(), Value::Bool(copy.done));
    object.insert(
        "applied".into(),
        Value::Array(
            copy.applied
                .iter()
                .map(|(first, last)| {
                    Value::Array(vec![number(*first), number(*last)].into_iter().collect())
                })
                .collect(),
        ),
    );
    Value::Object(object)
}

/// Reads what `copy_to_json` wrote. A range that does not read as two ascending numbers
/// is dropped: its records are then offered, never one of ours skipped.
fn copy_from_json(fields: &Fields<'_>) -> Result<CopyProgress, WireError> {
    let number = |value: &Value| match value {
        Value::Number(Number::U64(n)) => Some(*n),
        _ => None,
    };
    let applied = fields
        .opt_array("applied")?
        .unwrap_or_default()
        .iter()
        .filter_map(|range| match range {
            Value::Array(pair) if pair.len() == 2 => {
                Some((number(&pair[0])?, number(&pair[1])?)).filter(|(first, last)| first <= last)
            }
            _ => None,
        })
        .collect();
    Ok(CopyProgress {
        epoch: fields.str("epoch")?.to_owned(),
        seq: fields.opt_u64("seq")?.unwrap_or(0),
        done: fields.opt_bool("done")?.unwrap_or(false),
        applied,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_state_round_trips() {
        let state = PeerState {
            url: "http://10.0.0.5:9000".into(),
            added_at: 5,
            instance_id: Some("ab".into()),
            instance_name: None,
            protocol: Some("v2".into()),
            epoch: Some("00ff".into()),
            pull_seq: 10,
            push_seq: 20,
            legacy_pushed_until: 30,
            last_attempt: Some(40),
            last_success: Some(40),
            last_error: Some("timeout".into()),
            failures: 2,
            repairs: 7,
            held_drops: 3,
            stats: SyncStats {
                total_syncs: 3,
                successful_syncs: 1,
                failed_syncs: 2,
                nodes_sent: 4,
                nodes_received: 5,
                conflicts_resolved: 6,
            },
            types: vec!["template_node".into()],
            batch_limit: 125,
            pin_at_first_contact: true,
            copy: Some(CopyProgress {
                epoch: "00ff".into(),
                seq: 900,
                done: true,
                applied: vec![(3, 500), (502, 903)],
            }),
        };
        assert_eq!(PeerState::decode(&state.encode()), Ok(state.clone()));
        assert!(!state.is_active());
        assert_eq!(SyncStats::decode(&state.stats.encode()), Ok(state.stats));
        assert!(PeerState::decode(b"{}").is_err());
        let mut state = state;
        state.adapt_batch(false);
        assert_eq!(state.batch_records(), 62);
        for _ in 0..10 {
            state.adapt_batch(false);
        }
        assert_eq!(state.batch_records(), MIN_BATCH_RECORDS);
        for _ in 0..10 {
            state.adapt_batch(true);
        }
        assert_eq!(
            (state.batch_limit, state.batch_records()),
            (0, SYNC_BATCH_RECORDS)
        );
    }
}
