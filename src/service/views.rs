//! The typed answers of the lattice operations (add, delete, list and query, stats,
//! conflicts, get, gc, trust) and their one JSON form: what the control API's `/api/lattice/*` routes
//! answer, what `--json` prints, and what the CLI reads back from a running server
//! before rendering it as it would have here. Text for people is the CLI's
//! (`commands::lattice`).

use std::collections::BTreeMap;

use miniserde::json::{Array, Object, Value};

use super::output::{counts, node_with, number, object, string};
use crate::model::{
    ContentHash, InstanceId, Node, SignatureFormat, Version, format_rfc3339, parse_timestamp,
};
use crate::protocol::{Fields, WireError};
use crate::store::{Body, Conflict, RecordMeta, Stats};
use crate::trust::{PublicKey, Tier, TrustEntry};

/// A node with its sync metadata, as listed.
#[derive(Debug, Clone)]
pub struct NodeView {
    pub node: Node,
    pub hash: ContentHash,
    pub version: Version,
    pub seq: u64,
}

impl NodeView {
    pub(crate) fn new(node: Node, meta: &RecordMeta) -> NodeView {
        NodeView {
            node,
            hash: meta.hash,
            version: meta.version,
            seq: meta.seq,
        }
    }

    /// The node in our native shape plus `hash`, `version` and `seq`.
    pub fn to_json(&self) -> Value {
        node_with(&self.node, &self.hash, &self.version, self.seq)
    }

    pub fn from_json(value: &Value, context: &str) -> Result<NodeView, WireError> {
        let fields = Fields::of(value, context)?;
        let node = Node::from_json(value).map_err(|error| WireError::malformed(context, error))?;
        let hash = ContentHash::parse(fields.str("hash")?)
            .map_err(|error| WireError::bad_value(context, "hash", error))?;
        Ok(NodeView {
            node,
            hash,
            version: version(&fields, "version")?,
            seq: fields.u64("seq")?,
        })
    }
}

fn version(fields: &Fields<'_>, name: &str) -> Result<Version, WireError> {
    Version::from_wire(fields.str(name)?)
        .map_err(|error| WireError::bad_value(fields.context, name, error))
}

/// `get` and `GET /api/lattice/records/{id}`: a live node as listed plus
/// `provenance: {origin, written_at, version, signed, signature_format}`, or a
/// tombstone as `{id, deleted_at, version}`, which scripts tell apart from a record
/// never stored (404).
#[derive(Debug, Clone)]
pub enum StoredRecord {
    Live {
        view: Box<NodeView>,
        /// The format of the record's signature; `None` when unsigned.
        signature: Option<SignatureFormat>,
    },
    Deleted {
        id: String,
        deleted_at: u64,
        version: Version,
    },
}

impl StoredRecord {
    pub fn to_json(&self) -> Value {
        match self {
            StoredRecord::Live { view, signature } => {
                let mut value = view.to_json();
                if let Value::Object(object) = &mut value {
                    object.insert("provenance".into(), provenance(&view.version, *signature));
                }
                value
            }
            StoredRecord::Deleted {
                id,
                deleted_at,
                version,
            } => object([
                ("id", string(id.clone())),
                ("deleted_at", string(format_rfc3339(*deleted_at))),
                ("version", string(version.to_wire())),
            ]),
        }
    }

    pub fn from_json(answer: &Object, context: &str) -> Result<StoredRecord, WireError> {
        let fields = Fields::new(answer, context);
        if let Some(deleted_at) = fields.opt_str("deleted_at")? {
            return Ok(StoredRecord::Deleted {
                id: fields.str("id")?.to_owned(),
                deleted_at: parse_timestamp(deleted_at)
                    .map_err(|error| WireError::bad_value(context, "deleted_at", error))?,
                version: version(&fields, "version")?,
            });
        }
        let mut node = answer.clone();
        let provenance = node
            .remove("provenance")
            .ok_or_else(|| WireError::missing(context, "provenance"))?;
        let provenance_context = format!("{context}: provenance");
        let signature =
            match Fields::of(&provenance, &provenance_context)?.opt_u64("signature_format")? {
                None => None,
                Some(1) => Some(SignatureFormat::V1),
                Some(2) => Some(SignatureFormat::V2),
                Some(other) => {
                    return Err(WireError::bad_value(
                        &provenance_context,
                        "signature_format",
                        format!("{other} is not 1 or 2"),
                    ));
                }
            };
        Ok(StoredRecord::Live {
            view: Box::new(NodeView::from_json(&Value::Object(node), context)?),
            signature,
        })
    }
}

/// Who wrote a version and when, and how it is signed.
fn provenance(version: &Version, signature: Option<SignatureFormat>) -> Value {
    object([
        ("origin", string(version.origin.to_hex())),
        ("written_at", string(format_rfc3339(version.hlc.millis()))),
        ("version", string(version.to_wire())),
        ("signed", Value::Bool(signature.is_some())),
        (
            "signature_format",
            match signature {
                Some(SignatureFormat::V2) => number(2),
                Some(SignatureFormat::V1) => number(1),
                None => Value::Null,
            },
        ),
    ])
}

/// `list`, `query` and `GET /api/lattice/nodes`: `{count, nodes: [...]}`.
#[derive(Debug, Clone, Default)]
pub struct NodeList {
    pub nodes: Vec<NodeView>,
}

impl NodeList {
    pub fn to_json(&self) -> Value {
        let nodes: Array = self.nodes.iter().map(NodeView::to_json).collect();
        object([
            ("count", number(nodes.len() as u64)),
            ("nodes", Value::Array(nodes)),
        ])
    }

    pub fn from_json(answer: &Object, context: &str) -> Result<NodeList, WireError> {
        let nodes = Fields::new(answer, context)
            .array("nodes")?
            .iter()
            .enumerate()
            .map(|(index, node)| NodeView::from_json(node, &format!("{context}: nodes[{index}]")))
            .collect::<Result<_, _>>()?;
        Ok(NodeList { nodes })
    }
}

/// `delete` and `DELETE /api/lattice/nodes/{id}`: `{deleted, already_deleted}`. A delete
/// repeated after its answer was lost finds the tombstone: that is success, said as such
/// (issue #16).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deleted {
    pub id: String,
    pub already_deleted: bool,
}

impl Deleted {
    pub fn to_json(&self) -> Value {
        object([
            ("deleted", string(self.id.clone())),
            ("already_deleted", Value::Bool(self.already_deleted)),
        ])
    }

    pub fn from_json(answer: &Object, context: &str) -> Result<Deleted, WireError> {
        let fields = Fields::new(answer, context);
        Ok(Deleted {
            id: fields.str("deleted")?.to_owned(),
            already_deleted: fields.opt_bool("already_deleted")?.unwrap_or(false),
        })
    }
}

/// What an `add` did to the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddOutcome {
    Added,
    Updated,
    Unchanged,
}

impl AddOutcome {
    pub(crate) fn name(self) -> &'static str {
        match self {
            AddOutcome::Added => "added",
            AddOutcome::Updated => "updated",
            AddOutcome::Unchanged => "unchanged",
        }
    }
}

/// `add` and `PUT /api/lattice/nodes/{id}`: `{id, outcome}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Added {
    pub id: String,
    pub outcome: AddOutcome,
}

impl Added {
    pub fn to_json(&self) -> Value {
        object([
            ("id", string(self.id.clone())),
            ("outcome", string(self.outcome.name())),
        ])
    }

    pub fn from_json(answer: &Object, context: &str) -> Result<Added, WireError> {
        let fields = Fields::new(answer, context);
        let outcome = match fields.str("outcome")? {
            "added" => AddOutcome::Added,
            "updated" => AddOutcome::Updated,
            "unchanged" => AddOutcome::Unchanged,
            other => {
                return Err(WireError::bad_value(
                    context,
                    "outcome",
                    format!("{other:?} is not added, updated or unchanged"),
                ));
            }
        };
        Ok(Added {
            id: fields.str("id")?.to_owned(),
            outcome,
        })
    }
}

/// Which instance a store belongs to, as `stats` shows it.
#[derive(Debug, Clone)]
pub struct InstanceLabel {
    pub id: InstanceId,
    pub name: String,
    /// `main`, `hub`, … (`config::InstanceType`).
    pub kind: String,
}

/// `stats` and `GET /api/lattice/stats`: the store's counts and whose store it is.
#[derive(Debug, Clone)]
pub struct StatsReport {
    pub stats: Stats,
    pub instance: InstanceLabel,
}

impl StatsReport {
    /// The counts, then `instance_id`, `instance_name` and `instance_type`.
    pub fn to_json(&self) -> Value {
        let mut object = stats_object(&self.stats);
        object.insert("instance_id".into(), string(self.instance.id.to_hex()));
        object.insert("instance_name".into(), string(self.instance.name.clone()));
        object.insert("instance_type".into(), string(self.instance.kind.clone()));
        Value::Object(object)
    }

    pub fn from_json(answer: &Object, context: &str) -> Result<StatsReport, WireError> {
        let fields = Fields::new(answer, context);
        let count_map = |name: &str| -> Result<BTreeMap<String, u64>, WireError> {
            let Some(Value::Object(map)) = fields.get(name) else {
                return Err(WireError::wrong_type(context, name, "an object"));
            };
            let map_context = format!("{context}: `{name}`");
            let counts = Fields::new(map, &map_context);
            map.keys()
                .map(|key| Ok((key.clone(), counts.u64(key)?)))
                .collect()
        };
        let stats = Stats {
            nodes: fields.u64("nodes")?,
            tombstones: fields.u64("tombstones")?,
            conflicts: fields.u64("conflicts")?,
            damaged: fields.u64("damaged")?,
            last_seq: fields.u64("last_seq")?,
            file_bytes: fields.u64("store_bytes")?,
            by_type: count_map("by_type")?,
            by_language: count_map("by_language")?,
            by_category: count_map("by_category")?,
        };
        let instance = InstanceLabel {
            id: InstanceId::from_hex(fields.str("instance_id")?)
                .map_err(|error| WireError::bad_value(context, "instance_id", error))?,
            name: fields.str("instance_name")?.to_owned(),
            kind: fields.str("instance_type")?.to_owned(),
        };
        Ok(StatsReport { stats, instance })
    }
}

/// The store's counts alone.
fn stats_object(stats: &Stats) -> Object {
    let Value::Object(object) = object([
        ("nodes", number(stats.nodes)),
        ("tombstones", number(stats.tombstones)),
        ("conflicts", number(stats.conflicts)),
        ("damaged", number(stats.damaged)),
        ("last_seq", number(stats.last_seq)),
        ("store_bytes", number(stats.file_bytes)),
        ("by_type", counts(&stats.by_type)),
        ("by_language", counts(&stats.by_language)),
        ("by_category", counts(&stats.by_category)),
    ]) else {
        unreachable!("`object` builds an object")
    };
    object
}

/// One entry of the conflict log: the version that lost (kept here) and the one that won.
#[derive(Debug, Clone)]
pub struct ConflictView {
    pub number: u64,
    pub id: String,
    pub resolved_at: u64,
    pub winner: Version,
    pub loser_version: Version,
    /// The losing node, or `None` when a delete lost.
    pub loser: Option<NodeView>,
}

impl ConflictView {
    pub(crate) fn new(conflict: &Conflict) -> ConflictView {
        ConflictView {
            number: conflict.number,
            id: conflict.loser.id.clone(),
            resolved_at: conflict.resolved_at,
            winner: conflict.winner,
            loser_version: conflict.loser.meta.version,
            loser: match &conflict.loser.body {
                Body::Live(node) => Some(NodeView::new(node.clone(), &conflict.loser.meta)),
                Body::Deleted { .. } => None,
            },
        }
    }

    fn to_json(&self) -> Value {
        object([
            ("number", number(self.number)),
            ("id", string(self.id.clone())),
            ("resolved_at", string(format_rfc3339(self.resolved_at))),
            ("winner_version", string(self.winner.to_wire())),
            ("loser_version", string(self.loser_version.to_wire())),
            (
                "loser",
                self.loser.as_ref().map_or(Value::Null, NodeView::to_json),
            ),
        ])
    }

    fn from_json(value: &Value, context: &str) -> Result<ConflictView, WireError> {
        let fields = Fields::of(value, context)?;
        let resolved_at = parse_timestamp(fields.str("resolved_at")?)
            .map_err(|error| WireError::bad_value(context, "resolved_at", error))?;
        let loser = match fields.get("loser") {
            None | Some(Value::Null) => None,
            Some(node) => Some(NodeView::from_json(node, &format!("{context}: loser"))?),
        };
        Ok(ConflictView {
            number: fields.u64("number")?,
            id: fields.str("id")?.to_owned(),
            resolved_at,
            winner: version(&fields, "winner_version")?,
            loser_version: version(&fields, "loser_version")?,
            loser,
        })
    }
}

/// `conflicts` and the conflict routes: `{count, conflicts: [...]}`, `count` being how
/// many the log holds and `conflicts` the newest of them as asked.
#[derive(Debug, Clone, Default)]
pub struct ConflictList {
    pub conflicts: Vec<ConflictView>,
    pub total: u64,
}

impl ConflictList {
    pub fn to_json(&self) -> Value {
        let list: Array = self.conflicts.iter().map(ConflictView::to_json).collect();
        object([
            ("count", number(self.total)),
            ("conflicts", Value::Array(list)),
        ])
    }

    pub fn from_json(answer: &Object, context: &str) -> Result<ConflictList, WireError> {
        let fields = Fields::new(answer, context);
        let conflicts = fields
            .array("conflicts")?
            .iter()
            .enumerate()
            .map(|(index, entry)| {
                ConflictView::from_json(entry, &format!("{context}: conflicts[{index}]"))
            })
            .collect::<Result<_, _>>()?;
        Ok(ConflictList {
            conflicts,
            total: fields.u64("count")?,
        })
    }
}

/// `gc` and `POST /api/lattice/gc`: `{purged_tombstones, older_than_days}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Purged {
    pub purged_tombstones: u64,
    pub older_than_days: u64,
}

impl Purged {
    pub fn to_json(&self) -> Value {
        object([
            ("purged_tombstones", number(self.purged_tombstones)),
            ("older_than_days", number(self.older_than_days)),
        ])
    }

    pub fn from_json(answer: &Object, context: &str) -> Result<Purged, WireError> {
        let fields = Fields::new(answer, context);
        Ok(Purged {
            purged_tombstones: fields.u64("purged_tombstones")?,
            older_than_days: fields.u64("older_than_days")?,
        })
    }
}

/// `trust list`, `trust pending` and `GET /api/trust/keys[?pending=true]`:
/// `{count, keys: [...]}`, each key as the trust store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustList {
    pub entries: Vec<TrustEntry>,
}

impl TrustList {
    pub fn to_json(&self) -> Value {
        let keys: Array = self.entries.iter().map(TrustEntry::to_json).collect();
        object([
            ("count", number(keys.len() as u64)),
            ("keys", Value::Array(keys)),
        ])
    }

    pub fn from_json(answer: &Object, context: &str) -> Result<TrustList, WireError> {
        let entries = Fields::new(answer, context)
            .array("keys")?
            .iter()
            .enumerate()
            .map(|(index, entry)| trust_entry(entry, &format!("{context}: keys[{index}]")))
            .collect::<Result<_, _>>()?;
        Ok(TrustList { entries })
    }
}

/// One trust entry read back, every field named when it is wrong.
fn trust_entry(value: &Value, context: &str) -> Result<TrustEntry, WireError> {
    let fields = Fields::of(value, context)?;
    let public_key = PublicKey::from_base64(fields.str("publicKey")?)
        .map_err(|error| WireError::bad_value(context, "publicKey", error))?;
    let tier = fields
        .str("tier")?
        .parse::<Tier>()
        .map_err(|error| WireError::bad_value(context, "tier", error))?;
    Ok(TrustEntry {
        public_key,
        name: fields.opt_str("name")?.map(str::to_owned),
        tier,
        pending: fields.opt_bool("pending")?.unwrap_or(false),
        added_at: fields.u64("addedAt")?,
        last_seen: fields.opt_u64("lastSeen")?,
        source: fields.str("source")?.to_owned(),
    })
}

/// What a trust change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrustAction {
    Trusted,
    Accepted,
    Removed,
}

impl TrustAction {
    pub(crate) fn name(self) -> &'static str {
        match self {
            TrustAction::Trusted => "trusted",
            TrustAction::Accepted => "accepted",
            TrustAction::Removed => "removed",
        }
    }
}

/// Held records a trust change let through: a running server applies them at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeldRelease {
    /// Nothing was tried: no server holds the store, the next sync applies them.
    NotTried,
    Applied(u64),
    /// They could not be applied now; the next sync tries again.
    Deferred(String),
}

/// `trust add`, `trust accept` and `trust remove`, and `POST /api/trust/keys`,
/// `POST /api/trust/accept/{id}` and `DELETE /api/trust/keys/{id}`:
/// `{action, entry, held_applied?, held_deferred?}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustChange {
    pub action: TrustAction,
    /// The entry as it is now (as it was, for a removal).
    pub entry: TrustEntry,
    pub held: HeldRelease,
}

impl TrustChange {
    pub(crate) fn new(action: TrustAction, entry: TrustEntry) -> TrustChange {
        TrustChange {
            action,
            entry,
            held: HeldRelease::NotTried,
        }
    }

    pub fn to_json(&self) -> Value {
        let Value::Object(mut object) = object([
            ("action", string(self.action.name())),
            ("entry", self.entry.to_json()),
        ]) else {
            unreachable!("`object` builds an object")
        };
        match &self.held {
            HeldRelease::NotTried => {}
            HeldRelease::Applied(count) => {
                object.insert("held_applied".into(), number(*count));
            }
            HeldRelease::Deferred(reason) => {
                object.insert("held_deferred".into(), string(reason.clone()));
            }
        }
        Value::Object(object)
    }

    pub fn from_json(answer: &Object, context: &str) -> Result<TrustChange, WireError> {
        let fields = Fields::new(answer, context);
        let action = match fields.str("action")? {
            "trusted" => TrustAction::Trusted,
            "accepted" => TrustAction::Accepted,
            "removed" => TrustAction::Removed,
            other => {
                return Err(WireError::bad_value(
                    context,
                    "action",
                    format!("{other:?} is not trusted, accepted or removed"),
                ));
            }
        };
        let entry = trust_entry(
            fields
                .get("entry")
                .ok_or_else(|| WireError::missing(context, "entry"))?,
            &format!("{context}: entry"),
        )?;
        let held = match (
            fields.opt_u64("held_applied")?,
            fields.opt_str("held_deferred")?,
        ) {
            (Some(count), _) => HeldRelease::Applied(count),
            (None, Some(reason)) => HeldRelease::Deferred(reason.to_owned()),
            (None, None) => HeldRelease::NotTried,
        };
        Ok(TrustChange {
            action,
            entry,
            held,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Hlc;

    fn version(millis: u64, origin: u8) -> Version {
        Version {
            hlc: Hlc::from_parts(millis, 3),
            origin: InstanceId([origin; 32]),
        }
    }

    fn view(id: &str, value: &str) -> NodeView {
        let node = Node {
            id: id.into(),
            node_type: "t".into(),
            value: value.into(),
            language: Some("rust".into()),
            capabilities: vec!["a".into()],
            ..Node::default()
        };
        NodeView {
            hash: ContentHash([7; 32]),
            version: version(1_700_000_000_123, 1),
            seq: 9,
            node,
        }
    }

    fn object_of(value: Value) -> Object {
        match value {
            Value::Object(object) => object,
            other => panic!("not an object: {other:?}"),
        }
    }

    /// What the server renders, the CLI reads back to the same JSON: the text the CLI
    /// prints from it is the text it prints from the store.
    #[test]
    fn answers_read_back_as_they_were_written() {
        let list = NodeList {
            nodes: vec![view("a", "first"), view("b", "second")],
        };
        let json = list.to_json();
        let back = NodeList::from_json(&object_of(json.clone()), "answer").unwrap();
        assert_eq!(
            miniserde::json::to_string(&back.to_json()),
            miniserde::json::to_string(&json)
        );
        assert_eq!(back.nodes[1].node.value, "second");

        let conflicts = ConflictList {
            conflicts: vec![
                ConflictView {
                    number: 2,
                    id: "a".into(),
                    resolved_at: 1_700_000_001_500,
                    winner: version(1_700_000_001_000, 2),
                    loser_version: version(1_700_000_000_900, 1),
                    loser: Some(view("a", "lost")),
                },
                ConflictView {
                    number: 1,
                    id: "b".into(),
                    resolved_at: 1_700_000_000_000,
                    winner: version(1_700_000_000_000, 2),
                    loser_version: version(1_699_999_999_999, 1),
                    loser: None,
                },
            ],
            total: 5,
        };
        let json = conflicts.to_json();
        let back = ConflictList::from_json(&object_of(json.clone()), "answer").unwrap();
        assert_eq!(
            miniserde::json::to_string(&back.to_json()),
            miniserde::json::to_string(&json)
        );
        assert_eq!(back.conflicts[0].resolved_at, 1_700_000_001_500);
        assert!(back.conflicts[1].loser.is_none());

        let stats = StatsReport {
            stats: Stats {
                nodes: 3,
                tombstones: 1,
                conflicts: 5,
                damaged: 0,
                last_seq: 12,
                file_bytes: 4096,
                by_type: [("t".to_owned(), 3)].into_iter().collect(),
                by_language: BTreeMap::new(),
                by_category: [("web".to_owned(), 2)].into_iter().collect(),
            },
            instance: InstanceLabel {
                id: InstanceId([9; 32]),
                name: "lab".into(),
                kind: "local".into(),
            },
        };
        let json = stats.to_json();
        let back = StatsReport::from_json(&object_of(json.clone()), "answer").unwrap();
        assert_eq!(
            miniserde::json::to_string(&back.to_json()),
            miniserde::json::to_string(&json)
        );

        let deleted = Deleted {
            id: "a/b".into(),
            already_deleted: true,
        };
        let back = Deleted::from_json(&object_of(deleted.to_json()), "answer").unwrap();
        assert_eq!(back, deleted);

        for outcome in [
            AddOutcome::Added,
            AddOutcome::Updated,
            AddOutcome::Unchanged,
        ] {
            let added = Added {
                id: "a".into(),
                outcome,
            };
            let back = Added::from_json(&object_of(added.to_json()), "answer").unwrap();
            assert_eq!(back, added);
        }

        for signature in [None, Some(SignatureFormat::V1), Some(SignatureFormat::V2)] {
            let live = StoredRecord::Live {
                view: Box::new(view("a", "live")),
                signature,
            };
            let json = live.to_json();
            let back = StoredRecord::from_json(&object_of(json.clone()), "answer").unwrap();
            assert_eq!(
                miniserde::json::to_string(&back.to_json()),
                miniserde::json::to_string(&json)
            );
        }
        let tombstone = StoredRecord::Deleted {
            id: "a".into(),
            deleted_at: 1_700_000_000_000,
            version: version(1_700_000_000_000, 1),
        };
        let json = tombstone.to_json();
        let back = StoredRecord::from_json(&object_of(json.clone()), "answer").unwrap();
        assert_eq!(
            miniserde::json::to_string(&back.to_json()),
            miniserde::json::to_string(&json)
        );

        let purged = Purged {
            purged_tombstones: 3,
            older_than_days: 30,
        };
        let back = Purged::from_json(&object_of(purged.to_json()), "answer").unwrap();
        assert_eq!(back, purged);

        let entry = TrustEntry {
            public_key: crate::trust::KeyPair::from_seed([4; 32])
                .unwrap()
                .public_key(),
            name: Some("hub".into()),
            tier: Tier::Sandbox,
            pending: true,
            added_at: 5,
            last_seen: None,
            source: "request".into(),
        };
        let list = TrustList {
            entries: vec![entry.clone()],
        };
        let back = TrustList::from_json(&object_of(list.to_json()), "answer").unwrap();
        assert_eq!(back, list);
        for held in [
            HeldRelease::NotTried,
            HeldRelease::Applied(2),
            HeldRelease::Deferred("store busy".into()),
        ] {
            let change = TrustChange {
                action: TrustAction::Accepted,
                entry: entry.clone(),
                held,
            };
            let back = TrustChange::from_json(&object_of(change.to_json()), "answer").unwrap();
            assert_eq!(back, change);
        }
    }

    #[test]
    fn a_malformed_answer_names_what_was_wrong() {
        fn check(answer: &str, expected: &str) {
            let object = object_of(crate::model::parse_json(answer).unwrap());
            let error = match NodeList::from_json(&object, "the answer") {
                Err(error) => error.to_string(),
                Ok(_) => ConflictList::from_json(&object, "the answer")
                    .err()
                    .map(|error| error.to_string())
                    .unwrap_or_default(),
            };
            assert!(error.contains(expected), "{answer}: {error}");
        }
        check(r#"{"count":1}"#, "nodes");
        let error = Purged::from_json(
            &object_of(crate::model::parse_json(r#"{"purged_tombstones":-1}"#).unwrap()),
            "the answer",
        )
        .unwrap_err();
        assert!(error.to_string().contains("purged_tombstones"), "{error}");
        for (answer, expected) in [
            (r#"{"count":1}"#, "keys"),
            (
                r#"{"keys":[{"publicKey":"AAAA","tier":"core"}]}"#,
                "keys[0]: field `publicKey`",
            ),
        ] {
            let object = object_of(crate::model::parse_json(answer).unwrap());
            let error = TrustList::from_json(&object, "the answer").unwrap_err();
            assert!(error.to_string().contains(expected), "{answer}: {error}");
        }
        for (answer, expected) in [
            (r#"{"id":"a","deleted_at":"soon"}"#, "deleted_at"),
            (r#"{"id":"a","type":"t","value":"v"}"#, "provenance"),
            (
                r#"{"id":"a","type":"t","value":"v","provenance":{"signature_format":3}}"#,
                "signature_format",
            ),
        ] {
            let object = object_of(crate::model::parse_json(answer).unwrap());
            let error = StoredRecord::from_json(&object, "the answer").unwrap_err();
            assert!(error.to_string().contains(expected), "{answer}: {error}");
        }
        let object = object_of(crate::model::parse_json(r#"{"action":"forgot"}"#).unwrap());
        let error = TrustChange::from_json(&object, "the answer").unwrap_err();
        assert!(
            matches!(&error, WireError::BadValue { field, .. } if field == "action"),
            "{error:?}"
        );
        check(
            r#"{"nodes":[{"id":"a","type":"t","value":"v"}]}"#,
            "nodes[0]",
        );
        check(
            r#"{"nodes":[{"id":"a","type":"t","value":"v","hash":"sha256:00","version":"1.0@00","seq":1}]}"#,
            "hash",
        );
        check(
            r#"{"nodes":[],"count":1,"conflicts":[{"number":1,"id":"a","resolved_at":"yesterday"}]}"#,
            "resolved_at",
        );
    }
}
