//! Our own control answers that our CLI reads (`/api/v2/federation/*`), each one type
//! written by the server and read by the CLI, so a missing field is an error, not a 0.

use miniserde::json::{Number, Object, Value};

use super::ark::InstanceInfo;
use super::fields::{Fields, WireError};
use crate::store::ApplyOutcome;

/// `GET /api/v2/federation/status`: the instance info, flat, with the server's state.
#[derive(Debug, Clone)]
pub struct LatticeStatus {
    pub info: InstanceInfo,
    /// The federation endpoints are on (`start`/`stop`).
    pub enabled: bool,
    /// A server is listening.
    pub running: bool,
    pub started_at: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// `GET /api/v2/federation/peers`, as is.
    pub peer_list: Object,
    pub clock_warning: Option<String>,
    /// Records held back, by reason (`untrusted_author`, `clock_ahead`,
    /// `held_table_full`): see `sync::held`.
    pub held: Vec<(String, u64)>,
    /// What is held and what to run, one line per cause.
    pub held_messages: Vec<String>,
}

impl LatticeStatus {
    pub fn to_json(&self) -> Value {
        let Value::Object(mut object) = self.info.to_json() else {
            unreachable!("the info is an object")
        };
        let number = |n: u64| Value::Number(Number::U64(n));
        object.insert("enabled".into(), Value::Bool(self.enabled));
        object.insert("running".into(), Value::Bool(self.running));
        object.insert("startedAt".into(), number(self.started_at));
        object.insert("bytesSent".into(), number(self.bytes_sent));
        object.insert("bytesReceived".into(), number(self.bytes_received));
        object.insert("peerList".into(), Value::Object(self.peer_list.clone()));
        if let Some(warning) = &self.clock_warning {
            object.insert("clockWarning".into(), Value::String(warning.clone()));
        }
        let held: Object = self
            .held
            .iter()
            .map(|(reason, count)| (reason.clone(), number(*count)))
            .collect();
        object.insert("held".into(), Value::Object(held));
        if !self.held_messages.is_empty() {
            let messages = self.held_messages.iter().cloned().map(Value::String);
            object.insert("heldMessages".into(), Value::Array(messages.collect()));
        }
        Value::Object(object)
    }

    pub fn from_json(status: &Object, context: &str) -> Result<LatticeStatus, WireError> {
        let fields = Fields::new(status, context);
        Ok(LatticeStatus {
            info: InstanceInfo::from_json(status, context)?,
            enabled: fields.bool("enabled")?,
            running: fields.bool("running")?,
            started_at: fields.u64("startedAt")?,
            bytes_sent: fields.u64("bytesSent")?,
            bytes_received: fields.u64("bytesReceived")?,
            peer_list: match fields.get("peerList") {
                Some(Value::Object(list)) => list.clone(),
                None => return Err(WireError::missing(context, "peerList")),
                Some(_) => return Err(WireError::wrong_type(context, "peerList", "an object")),
            },
            clock_warning: fields.opt_str("clockWarning")?.map(str::to_owned),
            held: match fields.get("held") {
                Some(Value::Object(held)) => held
                    .iter()
                    .filter_map(|(reason, count)| match count {
                        Value::Number(Number::U64(count)) => Some((reason.clone(), *count)),
                        _ => None,
                    })
                    .collect(),
                _ => Vec::new(),
            },
            held_messages: fields
                .opt_array("heldMessages")?
                .unwrap_or_default()
                .iter()
                .filter_map(|message| match message {
                    Value::String(message) => Some(message.clone()),
                    _ => None,
                })
                .collect(),
        })
    }
}

fn number(n: u64) -> Value {
    Value::Number(Number::U64(n))
}

fn text(value: &str) -> Value {
    Value::String(value.to_owned())
}

fn optional_text(value: Option<&str>) -> Value {
    value.map_or(Value::Null, text)
}

fn strings(values: &[String]) -> Value {
    Value::Array(values.iter().map(|value| text(value)).collect())
}

/// The strings of an optional array field; other elements are skipped.
fn opt_strings(fields: &Fields<'_>, name: &str) -> Result<Vec<String>, WireError> {
    Ok(fields
        .opt_array(name)?
        .unwrap_or_default()
        .iter()
        .filter_map(|item| match item {
            Value::String(item) => Some(item.clone()),
            _ => None,
        })
        .collect())
}

fn object_of<'a>(value: &'a Value, context: &str) -> Result<&'a Object, WireError> {
    match value {
        Value::Object(object) => Ok(object),
        _ => Err(WireError::not_object(context)),
    }
}

/// What one sync with one peer did, in the shape of ARK's sync result: what the sync
/// returns, what the control API sends (an element of [`SyncAnswer`]'s `result`) and
/// what the CLI reads back, one type.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerSyncResult {
    pub peer: String,
    pub success: bool,
    pub nodes_sent: u64,
    pub nodes_received: u64,
    /// Records that arrived (either way) and were already there: a re-sent batch.
    pub nodes_unchanged: u64,
    pub conflicts: u64,
    /// Records the peer sent that were refused, with the reason.
    pub rejected: Vec<String>,
    /// Records from this peer held back for a reason that can go away, after the sync
    /// (`sync::held`), by reason, every reason listed; empty when none is held.
    pub held: Vec<(String, u64)>,
    /// What is held and what to run, one line per cause.
    pub held_messages: Vec<String>,
    pub error: Option<String>,
    /// What kind of failure `error` is, which sets the wait before the next try.
    pub failure: Option<FailureKind>,
}

/// Why a sync failed, as far as trying again is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// No answer: the name did not resolve, the connection was refused, broke or timed
    /// out. A link that flaps comes back at any moment.
    Unreachable,
    /// The peer refused us: 401 or 403 (our key is not trusted there, or not for this
    /// route), or its TLS certificate is not one we trust. Only an operator can change
    /// that, so asking sooner than the next round does not help.
    Refused,
    /// The peer answered 5xx or 429: up, but failing or overloaded.
    PeerFailing,
    /// Anything else: an answer we cannot use, or a failure here.
    Other,
}

impl FailureKind {
    /// The kind of a refusal answered with HTTP `status`.
    pub(crate) fn of_status(status: u16) -> FailureKind {
        match status {
            401 | 403 => FailureKind::Refused,
            429 | 500..=599 => FailureKind::PeerFailing,
            _ => FailureKind::Other,
        }
    }

    /// Every kind, for reading a name back.
    pub const ALL: [FailureKind; 4] = [
        FailureKind::Unreachable,
        FailureKind::Refused,
        FailureKind::PeerFailing,
        FailureKind::Other,
    ];

    /// The kind a name from [`FailureKind::name`] stands for.
    pub(crate) fn from_name(name: &str) -> Option<FailureKind> {
        FailureKind::ALL
            .into_iter()
            .find(|kind| kind.name() == name)
    }

    /// The name `--json` and the control API show.
    pub fn name(self) -> &'static str {
        match self {
            FailureKind::Unreachable => "unreachable",
            FailureKind::Refused => "refused",
            FailureKind::PeerFailing => "peer_failing",
            FailureKind::Other => "other",
        }
    }
}

impl PeerSyncResult {
    /// Adds what applying records a peer sent did: received, unchanged, conflicts and
    /// the refusals with their reasons.
    pub(crate) fn count_applied(&mut self, outcome: &ApplyOutcome) {
        self.nodes_received += outcome.applied;
        self.nodes_unchanged += outcome.unchanged;
        self.conflicts += outcome.conflicts;
        self.rejected.extend(
            outcome
                .rejected
                .iter()
                .map(|(id, reason)| format!("{id}: {reason}")),
        );
    }

    pub fn to_json(&self) -> Value {
        let mut object = Object::new();
        object.insert("peer".into(), text(&self.peer));
        object.insert("success".into(), Value::Bool(self.success));
        object.insert("nodesSent".into(), number(self.nodes_sent));
        object.insert("nodesReceived".into(), number(self.nodes_received));
        object.insert("nodesUnchanged".into(), number(self.nodes_unchanged));
        object.insert("conflicts".into(), number(self.conflicts));
        if !self.rejected.is_empty() {
            object.insert("rejected".into(), strings(&self.rejected));
        }
        if !self.held.is_empty() {
            let held: Object = self
                .held
                .iter()
                .map(|(reason, count)| (reason.clone(), number(*count)))
                .collect();
            object.insert("held".into(), Value::Object(held));
            object.insert("heldMessages".into(), strings(&self.held_messages));
        }
        if let Some(error) = &self.error {
            object.insert("error".into(), text(error));
        }
        if let Some(kind) = self.failure {
            object.insert("failureKind".into(), text(kind.name()));
        }
        Value::Object(object)
    }

    pub fn from_json(object: &Object, context: &str) -> Result<PeerSyncResult, WireError> {
        let fields = Fields::new(object, context);
        let held = match fields.get("held") {
            Some(Value::Object(held)) => held
                .iter()
                .filter_map(|(reason, count)| match count {
                    Value::Number(Number::U64(count)) => Some((reason.clone(), *count)),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        let failure = match fields.opt_str("failureKind")? {
            None => None,
            Some(name) => Some(FailureKind::from_name(name).ok_or_else(|| {
                WireError::bad_value(
                    context,
                    "failureKind",
                    format!("{name:?} is not unreachable, refused, peer_failing or other"),
                )
            })?),
        };
        Ok(PeerSyncResult {
            peer: fields.str("peer")?.to_owned(),
            success: fields.bool("success")?,
            nodes_sent: fields.opt_u64("nodesSent")?.unwrap_or(0),
            nodes_received: fields.opt_u64("nodesReceived")?.unwrap_or(0),
            nodes_unchanged: fields.opt_u64("nodesUnchanged")?.unwrap_or(0),
            conflicts: fields.opt_u64("conflicts")?.unwrap_or(0),
            rejected: opt_strings(&fields, "rejected")?,
            held,
            held_messages: opt_strings(&fields, "heldMessages")?,
            error: fields.opt_str("error")?.map(str::to_owned),
            failure,
        })
    }
}

/// `POST /api/v2/federation/sync {peerUrl?}` → ARK's `{status: "synced", result: [...]}`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncAnswer {
    pub results: Vec<PeerSyncResult>,
}

impl SyncAnswer {
    pub fn to_json(&self) -> Value {
        let mut object = Object::new();
        object.insert("status".into(), text("synced"));
        let results = self.results.iter().map(PeerSyncResult::to_json).collect();
        object.insert("result".into(), Value::Array(results));
        Value::Object(object)
    }

    pub fn from_json(object: &Object, context: &str) -> Result<SyncAnswer, WireError> {
        let results = Fields::new(object, context)
            .array("result")?
            .iter()
            .map(|result| {
                let context = format!("{context}: result");
                PeerSyncResult::from_json(object_of(result, &context)?, &context)
            })
            .collect::<Result<_, _>>()?;
        Ok(SyncAnswer { results })
    }

    /// How many of the syncs failed.
    pub fn failed(&self) -> usize {
        self.results.iter().filter(|result| !result.success).count()
    }
}

/// The key pinned for a peer that was added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinnedKey {
    pub fingerprint: String,
    pub public_key: String,
    pub tier: String,
}

/// `POST /api/v2/federation/peers/add {peerUrl, pubkey?, tier?, types?}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerAddAnswer {
    /// The URL reaches a node already in the list under another URL; nothing changed.
    SameNode {
        /// The URL already in the list.
        peer: String,
        message: String,
        fingerprint: String,
        public_key: String,
    },
    Added {
        peer: String,
        /// False when the URL was already in the list.
        added: bool,
        /// `None` for a peer without a key (ARK Node.js) or whose key is pinned at first
        /// contact.
        key: Option<PinnedKey>,
        key_pinned_at_first_contact: bool,
    },
}

impl PeerAddAnswer {
    pub fn to_json(&self) -> Value {
        let mut object = Object::new();
        object.insert("success".into(), Value::Bool(true));
        match self {
            PeerAddAnswer::SameNode {
                peer,
                message,
                fingerprint,
                public_key,
            } => {
                object.insert("peer".into(), text(peer));
                object.insert("added".into(), Value::Bool(false));
                object.insert("message".into(), text(message));
                object.insert("fingerprint".into(), text(fingerprint));
                object.insert("publicKey".into(), text(public_key));
            }
            PeerAddAnswer::Added {
                peer,
                added,
                key,
                key_pinned_at_first_contact,
            } => {
                object.insert("peer".into(), text(peer));
                object.insert("added".into(), Value::Bool(*added));
                let key = key.as_ref();
                let field = |pick: fn(&PinnedKey) -> &str| optional_text(key.map(pick));
                object.insert("fingerprint".into(), field(|key| &key.fingerprint));
                object.insert("publicKey".into(), field(|key| &key.public_key));
                object.insert("tier".into(), field(|key| &key.tier));
                object.insert(
                    "keyPinnedAtFirstContact".into(),
                    Value::Bool(*key_pinned_at_first_contact),
                );
            }
        }
        Value::Object(object)
    }

    pub fn from_json(object: &Object, context: &str) -> Result<PeerAddAnswer, WireError> {
        let fields = Fields::new(object, context);
        let peer = fields.str("peer")?.to_owned();
        if let Some(message) = fields.opt_str("message")? {
            return Ok(PeerAddAnswer::SameNode {
                peer,
                message: message.to_owned(),
                fingerprint: fields.opt_str("fingerprint")?.unwrap_or("").to_owned(),
                public_key: fields.opt_str("publicKey")?.unwrap_or("").to_owned(),
            });
        }
        let key = match (fields.opt_str("fingerprint")?, fields.opt_str("publicKey")?) {
            (Some(fingerprint), Some(public_key)) => Some(PinnedKey {
                fingerprint: fingerprint.to_owned(),
                public_key: public_key.to_owned(),
                tier: fields.opt_str("tier")?.unwrap_or("").to_owned(),
            }),
            _ => None,
        };
        Ok(PeerAddAnswer::Added {
            peer,
            added: fields.opt_bool("added")?.unwrap_or(false),
            key,
            key_pinned_at_first_contact: fields
                .opt_bool("keyPinnedAtFirstContact")?
                .unwrap_or(false),
        })
    }
}

/// `DELETE /api/v2/federation/peers/{url}` → `{success, peer, removed}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerRemoved {
    pub peer: String,
}

impl PeerRemoved {
    pub fn to_json(&self) -> Value {
        let mut object = Object::new();
        object.insert("success".into(), Value::Bool(true));
        object.insert("peer".into(), text(&self.peer));
        object.insert("removed".into(), Value::Bool(true));
        Value::Object(object)
    }

    pub fn from_json(object: &Object, context: &str) -> Result<PeerRemoved, WireError> {
        Ok(PeerRemoved {
            peer: Fields::new(object, context).str("peer")?.to_owned(),
        })
    }
}

/// `POST /api/v2/federation/auto-sync/{start,stop}` → `{success, autoSync, syncInterval}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AutoSyncAnswer {
    pub auto_sync: bool,
    pub sync_interval_ms: u64,
}

impl AutoSyncAnswer {
    pub fn to_json(&self) -> Value {
        let mut object = Object::new();
        object.insert("success".into(), Value::Bool(true));
        object.insert("autoSync".into(), Value::Bool(self.auto_sync));
        object.insert("syncInterval".into(), number(self.sync_interval_ms));
        Value::Object(object)
    }

    pub fn from_json(object: &Object, context: &str) -> Result<AutoSyncAnswer, WireError> {
        let fields = Fields::new(object, context);
        Ok(AutoSyncAnswer {
            auto_sync: fields.opt_bool("autoSync")?.unwrap_or(false),
            sync_interval_ms: fields.opt_u64("syncInterval")?.unwrap_or(0),
        })
    }
}

/// A peer named by a peer's peer list (or the hub's registry) that we do not know yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundPeer {
    pub url: String,
    pub instance_id: Option<String>,
    /// The target whose list named it.
    pub via: String,
}

/// What a peer found on the local network shows, by beacon or by the scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LanEntry {
    pub url: String,
    pub instance_id: String,
    pub instance_name: Option<String>,
    pub fingerprint: Option<String>,
    /// Its key made the beacon's signature, or its info's key hashes to its id.
    pub signed: bool,
    /// Signed, and its key is trusted here.
    pub trusted: bool,
    /// Already in the peer list.
    pub known: bool,
    pub source: LanSource,
}

/// How a [`LanEntry`] was found, with what only that way shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LanSource {
    Beacon {
        address: String,
        port: u64,
        capabilities: Vec<String>,
        version: String,
        first_seen: u64,
        last_seen: u64,
    },
    Scan {
        protocols: Vec<String>,
    },
}

impl LanEntry {
    pub fn to_json(&self) -> Value {
        let mut object = Object::new();
        object.insert("url".into(), text(&self.url));
        object.insert("instanceId".into(), text(&self.instance_id));
        object.insert(
            "instanceName".into(),
            optional_text(self.instance_name.as_deref()),
        );
        object.insert(
            "fingerprint".into(),
            optional_text(self.fingerprint.as_deref()),
        );
        object.insert("signed".into(), Value::Bool(self.signed));
        object.insert("trusted".into(), Value::Bool(self.trusted));
        object.insert("known".into(), Value::Bool(self.known));
        match &self.source {
            LanSource::Beacon {
                address,
                port,
                capabilities,
                version,
                first_seen,
                last_seen,
            } => {
                object.insert("source".into(), text("beacon"));
                object.insert("address".into(), text(address));
                object.insert("port".into(), number(*port));
                object.insert("capabilities".into(), strings(capabilities));
                object.insert("version".into(), text(version));
                object.insert("firstSeen".into(), number(*first_seen));
                object.insert("lastSeen".into(), number(*last_seen));
            }
            LanSource::Scan { protocols } => {
                object.insert("source".into(), text("scan"));
                object.insert("protocols".into(), strings(protocols));
            }
        }
        Value::Object(object)
    }

    pub fn from_json(object: &Object, context: &str) -> Result<LanEntry, WireError> {
        let fields = Fields::new(object, context);
        let flag =
            |name: &str| -> Result<bool, WireError> { Ok(fields.opt_bool(name)?.unwrap_or(false)) };
        let source = match fields.str("source")? {
            "beacon" => LanSource::Beacon {
                address: fields.opt_str("address")?.unwrap_or("").to_owned(),
                port: fields.opt_u64("port")?.unwrap_or(0),
                capabilities: opt_strings(&fields, "capabilities")?,
                version: fields.opt_str("version")?.unwrap_or("").to_owned(),
                first_seen: fields.opt_u64("firstSeen")?.unwrap_or(0),
                last_seen: fields.opt_u64("lastSeen")?.unwrap_or(0),
            },
            "scan" => LanSource::Scan {
                protocols: opt_strings(&fields, "protocols")?,
            },
            other => {
                return Err(WireError::bad_value(
                    context,
                    "source",
                    format!("{other:?} is neither beacon nor scan"),
                ));
            }
        };
        Ok(LanEntry {
            url: fields.str("url")?.to_owned(),
            instance_id: fields.opt_str("instanceId")?.unwrap_or("").to_owned(),
            instance_name: fields.opt_str("instanceName")?.map(str::to_owned),
            fingerprint: fields.opt_str("fingerprint")?.map(str::to_owned),
            signed: flag("signed")?,
            trusted: flag("trusted")?,
            known: flag("known")?,
            source,
        })
    }
}

/// What a subnet scan covered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanSummary {
    pub subnet: String,
    pub port: u64,
    /// Addresses asked.
    pub probed: u64,
    /// Instances that answered (one per instance, however many addresses it has).
    pub answered: u64,
    pub duration_ms: u64,
}

impl ScanSummary {
    pub fn to_json(&self) -> Value {
        let mut object = Object::new();
        object.insert("subnet".into(), text(&self.subnet));
        object.insert("port".into(), number(self.port));
        object.insert("probed".into(), number(self.probed));
        object.insert("answered".into(), number(self.answered));
        object.insert("durationMs".into(), number(self.duration_ms));
        Value::Object(object)
    }

    pub fn from_json(object: &Object, context: &str) -> Result<ScanSummary, WireError> {
        let fields = Fields::new(object, context);
        Ok(ScanSummary {
            subnet: fields.str("subnet")?.to_owned(),
            port: fields.u64("port")?,
            probed: fields.u64("probed")?,
            answered: fields.u64("answered")?,
            duration_ms: fields.u64("durationMs")?,
        })
    }
}

/// `POST /api/v2/federation/discover {add?, scan?, subnet?, scanPort?}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoverAnswer {
    pub peers: Vec<FoundPeer>,
    /// Peers heard by LAN beacon.
    pub lan: Vec<LanEntry>,
    /// Peers that answered the scan.
    pub scanned: Vec<LanEntry>,
    /// The scan, when one ran (else null).
    pub scan: Option<ScanSummary>,
    pub discovery_enabled: bool,
    /// A server runs, so beacons are heard.
    pub listening: bool,
    pub added: bool,
    pub added_peers: Vec<String>,
    pub errors: Vec<String>,
}

impl DiscoverAnswer {
    pub fn to_json(&self) -> Value {
        let mut object = Object::new();
        let peers = self.peers.iter().map(|peer| {
            let mut entry = Object::new();
            entry.insert("url".into(), text(&peer.url));
            entry.insert(
                "instanceId".into(),
                optional_text(peer.instance_id.as_deref()),
            );
            entry.insert("via".into(), text(&peer.via));
            Value::Object(entry)
        });
        let entries =
            |list: &[LanEntry]| Value::Array(list.iter().map(LanEntry::to_json).collect());
        object.insert("count".into(), number(self.peers.len() as u64));
        object.insert("peers".into(), Value::Array(peers.collect()));
        object.insert("lan".into(), entries(&self.lan));
        object.insert("scanned".into(), entries(&self.scanned));
        object.insert(
            "scan".into(),
            self.scan.as_ref().map_or(Value::Null, ScanSummary::to_json),
        );
        object.insert(
            "discoveryEnabled".into(),
            Value::Bool(self.discovery_enabled),
        );
        object.insert("listening".into(), Value::Bool(self.listening));
        object.insert("added".into(), Value::Bool(self.added));
        object.insert("addedPeers".into(), strings(&self.added_peers));
        object.insert("errors".into(), strings(&self.errors));
        Value::Object(object)
    }

    pub fn from_json(object: &Object, context: &str) -> Result<DiscoverAnswer, WireError> {
        let fields = Fields::new(object, context);
        let list = |name: &str| -> Result<&[Value], WireError> {
            Ok(fields.opt_array(name)?.unwrap_or_default())
        };
        let entries = |name: &str| -> Result<Vec<LanEntry>, WireError> {
            let context = format!("{context}: {name}");
            list(name)?
                .iter()
                .map(|entry| LanEntry::from_json(object_of(entry, &context)?, &context))
                .collect()
        };
        let peers = list("peers")?
            .iter()
            .map(|peer| {
                let context = format!("{context}: peers");
                let fields = Fields::new(object_of(peer, &context)?, &context);
                Ok(FoundPeer {
                    url: fields.str("url")?.to_owned(),
                    instance_id: fields.opt_str("instanceId")?.map(str::to_owned),
                    via: fields.opt_str("via")?.unwrap_or("?").to_owned(),
                })
            })
            .collect::<Result<_, WireError>>()?;
        let scan = match fields.get("scan") {
            None | Some(Value::Null) => None,
            Some(scan) => {
                let context = format!("{context}: scan");
                Some(ScanSummary::from_json(
                    object_of(scan, &context)?,
                    &context,
                )?)
            }
        };
        Ok(DiscoverAnswer {
            peers,
            lan: entries("lan")?,
            scanned: entries("scanned")?,
            scan,
            discovery_enabled: fields.opt_bool("discoveryEnabled")?.unwrap_or(false),
            listening: fields.opt_bool("listening")?.unwrap_or(false),
            added: fields.opt_bool("added")?.unwrap_or(false),
            added_peers: opt_strings(&fields, "addedPeers")?,
            errors: opt_strings(&fields, "errors")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the server writes, the CLI reads back unchanged, and the JSON is the shape
    /// our CLI's `--json` has always printed.
    fn round_trip_sync(answer: &SyncAnswer, expected_json: &str) {
        let json = miniserde::json::to_string(&answer.to_json());
        assert_eq!(json, expected_json);
        let object: Object = miniserde::json::from_str(&json).unwrap();
        assert_eq!(&SyncAnswer::from_json(&object, "answer").unwrap(), answer);
    }

    #[test]
    fn sync_answers_keep_their_shape() {
        round_trip_sync(&SyncAnswer::default(), r#"{"result":[],"status":"synced"}"#);
        let ok = PeerSyncResult {
            peer: "http://127.0.0.1:8101".into(),
            success: true,
            nodes_sent: 2,
            nodes_received: 3,
            nodes_unchanged: 1,
            conflicts: 0,
            ..PeerSyncResult::default()
        };
        let failed = PeerSyncResult {
            peer: "http://127.0.0.1:8102".into(),
            rejected: vec!["a: forged".into()],
            held: vec![("clock_ahead".into(), 0), ("untrusted_author".into(), 4)],
            held_messages: vec!["held 4 from untrusted author SHA256:x".into()],
            error: Some("refused".into()),
            failure: Some(FailureKind::Refused),
            ..PeerSyncResult::default()
        };
        round_trip_sync(
            &SyncAnswer {
                results: vec![ok, failed],
            },
            concat!(
                r#"{"result":[{"conflicts":0,"nodesReceived":3,"nodesSent":2,"nodesUnchanged":1,"peer":"http://127.0.0.1:8101","success":true},"#,
                r#"{"conflicts":0,"error":"refused","failureKind":"refused","held":{"clock_ahead":0,"untrusted_author":4},"heldMessages":["held 4 from untrusted author SHA256:x"],"nodesReceived":0,"nodesSent":0,"nodesUnchanged":0,"peer":"http://127.0.0.1:8102","rejected":["a: forged"],"success":false}],"status":"synced"}"#
            ),
        );
    }

    #[test]
    fn a_sync_result_without_success_is_refused() {
        let object: Object =
            miniserde::json::from_str(r#"{"status":"synced","result":[{"peer":"p"}]}"#).unwrap();
        let error = SyncAnswer::from_json(&object, "sync answer").unwrap_err();
        assert_eq!(error, WireError::missing("sync answer: result", "success"));
    }

    #[test]
    fn add_peer_answers_keep_their_shape() {
        let cases = [
            (
                PeerAddAnswer::Added {
                    peer: "http://a:1".into(),
                    added: true,
                    key: Some(PinnedKey {
                        fingerprint: "SHA256:f".into(),
                        public_key: "k".into(),
                        tier: "core".into(),
                    }),
                    key_pinned_at_first_contact: false,
                },
                r#"{"added":true,"fingerprint":"SHA256:f","keyPinnedAtFirstContact":false,"peer":"http://a:1","publicKey":"k","success":true,"tier":"core"}"#,
            ),
            (
                PeerAddAnswer::Added {
                    peer: "http://a:1".into(),
                    added: false,
                    key: None,
                    key_pinned_at_first_contact: true,
                },
                r#"{"added":false,"fingerprint":null,"keyPinnedAtFirstContact":true,"peer":"http://a:1","publicKey":null,"success":true,"tier":null}"#,
            ),
            (
                PeerAddAnswer::SameNode {
                    peer: "http://b:1".into(),
                    message: "same node".into(),
                    fingerprint: "SHA256:f".into(),
                    public_key: "k".into(),
                },
                r#"{"added":false,"fingerprint":"SHA256:f","message":"same node","peer":"http://b:1","publicKey":"k","success":true}"#,
            ),
        ];
        for (answer, expected) in cases {
            let json = miniserde::json::to_string(&answer.to_json());
            assert_eq!(json, expected);
            let object: Object = miniserde::json::from_str(&json).unwrap();
            assert_eq!(PeerAddAnswer::from_json(&object, "answer").unwrap(), answer);
        }
    }

    #[test]
    fn discover_answers_keep_their_shape() {
        let beacon = LanEntry {
            url: "http://192.168.1.7:8101".into(),
            instance_id: "ab".into(),
            instance_name: Some("pi".into()),
            fingerprint: Some("SHA256:f".into()),
            signed: true,
            trusted: false,
            known: false,
            source: LanSource::Beacon {
                address: "192.168.1.7".into(),
                port: 8101,
                capabilities: vec!["sync".into()],
                version: "1".into(),
                first_seen: 10,
                last_seen: 20,
            },
        };
        let scanned = LanEntry {
            url: "http://192.168.1.8:8101".into(),
            instance_id: "cd".into(),
            instance_name: None,
            fingerprint: None,
            signed: false,
            trusted: false,
            known: true,
            source: LanSource::Scan {
                protocols: vec!["ark-federation-v1".into()],
            },
        };
        let answer = DiscoverAnswer {
            peers: vec![FoundPeer {
                url: "http://c:1".into(),
                instance_id: None,
                via: "http://b:1".into(),
            }],
            lan: vec![beacon],
            scanned: vec![scanned],
            scan: Some(ScanSummary {
                subnet: "192.168.1.0/24".into(),
                port: 8101,
                probed: 254,
                answered: 1,
                duration_ms: 900,
            }),
            discovery_enabled: true,
            listening: true,
            added: false,
            added_peers: Vec::new(),
            errors: vec!["http://b:1/federation/discover answered 500".into()],
        };
        let json = miniserde::json::to_string(&answer.to_json());
        assert_eq!(
            json,
            concat!(
                r#"{"added":false,"addedPeers":[],"count":1,"discoveryEnabled":true,"errors":["http://b:1/federation/discover answered 500"],"#,
                r#""lan":[{"address":"192.168.1.7","capabilities":["sync"],"fingerprint":"SHA256:f","firstSeen":10,"instanceId":"ab","instanceName":"pi","known":false,"lastSeen":20,"port":8101,"signed":true,"source":"beacon","trusted":false,"url":"http://192.168.1.7:8101","version":"1"}],"#,
                r#""listening":true,"peers":[{"instanceId":null,"url":"http://c:1","via":"http://b:1"}],"#,
                r#""scan":{"answered":1,"durationMs":900,"port":8101,"probed":254,"subnet":"192.168.1.0/24"},"#,
                r#""scanned":[{"fingerprint":null,"instanceId":"cd","instanceName":null,"known":true,"protocols":["ark-federation-v1"],"signed":false,"source":"scan","trusted":false,"url":"http://192.168.1.8:8101"}]}"#
            )
        );
        let object: Object = miniserde::json::from_str(&json).unwrap();
        assert_eq!(
            DiscoverAnswer::from_json(&object, "answer").unwrap(),
            answer
        );
        let without_scan = DiscoverAnswer {
            scan: None,
            ..answer
        };
        let json = miniserde::json::to_string(&without_scan.to_json());
        assert!(json.contains(r#""scan":null"#), "{json}");
    }
}
