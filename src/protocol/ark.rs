//! ARK's Node.js federation messages, field for field with ARK's JSON types: what its
//! federation server (`/federation/*`) and its backend (`/api/federation/*`) answer, as
//! ARK's CLI and peers read them. Each message is one type here: our server writes it
//! with `to_json`, our client reads a peer's with `from_json`. Our own fields ride along
//! only where they change no ARK field's type.

use miniserde::json::{Array, Number, Object, Value};

use super::fields::{Fields, WireError};

fn text(value: &str) -> Value {
    Value::String(value.to_owned())
}

fn number(n: u64) -> Value {
    Value::Number(Number::U64(n))
}

fn urls(list: &[String]) -> Value {
    Value::Array(list.iter().map(|url| text(url)).collect())
}

fn object(pairs: Vec<(&str, Value)>) -> Value {
    Value::Object(
        pairs
            .into_iter()
            .map(|(key, value)| (key.to_owned(), value))
            .collect(),
    )
}

/// A list of URLs. Older ark-lattice versions sent a count here; that reads as no list.
fn url_list(fields: &Fields<'_>, name: &str) -> Result<Vec<String>, WireError> {
    match fields.get(name) {
        None | Some(Value::Number(_)) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::String(url) => Ok(url.clone()),
                _ => Err(WireError::wrong_type(
                    fields.context,
                    name,
                    "a list of URLs",
                )),
            })
            .collect(),
        Some(_) => Err(WireError::wrong_type(
            fields.context,
            name,
            "a list of URLs",
        )),
    }
}

/// ARK's `stats`: its six counters, plus `nodesSent`, the guide's name for `nodesShared`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ArkStats {
    pub total_syncs: u64,
    pub successful_syncs: u64,
    pub failed_syncs: u64,
    pub nodes_received: u64,
    pub nodes_shared: u64,
    pub conflicts_resolved: u64,
}

impl ArkStats {
    pub fn to_json(&self) -> Value {
        object(vec![
            ("totalSyncs", number(self.total_syncs)),
            ("successfulSyncs", number(self.successful_syncs)),
            ("failedSyncs", number(self.failed_syncs)),
            ("nodesReceived", number(self.nodes_received)),
            ("nodesShared", number(self.nodes_shared)),
            ("nodesSent", number(self.nodes_shared)),
            ("conflictsResolved", number(self.conflicts_resolved)),
        ])
    }

    pub fn from_json(fields: &Fields<'_>) -> Result<ArkStats, WireError> {
        let get = |name: &str| fields.opt_u64(name).map(Option::unwrap_or_default);
        Ok(ArkStats {
            total_syncs: get("totalSyncs")?,
            successful_syncs: get("successfulSyncs")?,
            failed_syncs: get("failedSyncs")?,
            nodes_received: get("nodesReceived")?,
            nodes_shared: match fields.opt_u64("nodesShared")? {
                Some(shared) => shared,
                None => get("nodesSent")?,
            },
            conflicts_resolved: get("conflictsResolved")?,
        })
    }
}

/// What an ark-lattice node adds to `/federation/info`; ARK's peers send none of it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LatticeInfo {
    /// Protocol names (`PROTOCOL_*`); a peer without `ark-lattice-v2` is synced as ARK.
    pub protocols: Vec<String>,
    pub epoch: Option<String>,
    pub public_key: Option<String>,
    pub fingerprint: Option<String>,
    pub node_count: Option<u64>,
    pub version: Option<String>,
}

/// `GET /federation/info`, and `info` in `GET /api/federation/status`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstanceInfo {
    pub instance_id: String,
    pub instance_name: String,
    pub instance_type: String,
    pub federation_mode: String,
    pub listen_port: u64,
    pub hub_url: Option<String>,
    pub auto_sync: bool,
    pub sync_interval: u64,
    pub peers: Vec<String>,
    pub active_peers: Vec<String>,
    pub stats: ArkStats,
    pub timestamp: u64,
    pub lattice: LatticeInfo,
}

impl InstanceInfo {
    pub fn to_json(&self) -> Value {
        let optional = |value: &Option<String>| value.as_deref().map_or(Value::Null, text);
        let mut pairs = vec![
            ("instanceId", text(&self.instance_id)),
            ("instanceName", text(&self.instance_name)),
            ("instanceType", text(&self.instance_type)),
            ("federationMode", text(&self.federation_mode)),
            ("listenPort", number(self.listen_port)),
            ("hubUrl", optional(&self.hub_url)),
            ("autoSync", Value::Bool(self.auto_sync)),
            ("syncInterval", number(self.sync_interval)),
            ("peers", urls(&self.peers)),
            ("activePeers", urls(&self.active_peers)),
            ("stats", self.stats.to_json()),
            ("timestamp", number(self.timestamp)),
        ];
        let lattice = &self.lattice;
        if !lattice.protocols.is_empty() {
            pairs.push(("protocols", urls(&lattice.protocols)));
        }
        let extras = [
            ("epoch", &lattice.epoch),
            ("publicKey", &lattice.public_key),
            ("fingerprint", &lattice.fingerprint),
            ("version", &lattice.version),
        ];
        for (name, value) in extras {
            if let Some(value) = value {
                pairs.push((name, text(value)));
            }
        }
        if let Some(count) = lattice.node_count {
            pairs.push(("nodeCount", number(count)));
        }
        object(pairs)
    }

    /// Reads a peer's info. Only `instanceId` is required: the rest is what a client may
    /// show, and an ARK peer of another version may lack some of it.
    pub fn from_json(info: &Object, context: &str) -> Result<InstanceInfo, WireError> {
        let fields = Fields::new(info, context);
        let owned = |value: Option<&str>| value.map(str::to_owned);
        let stats = match fields.get("stats") {
            Some(value) => ArkStats::from_json(&Fields::of(value, context)?)?,
            None => ArkStats::default(),
        };
        Ok(InstanceInfo {
            instance_id: fields.str("instanceId")?.to_owned(),
            instance_name: fields
                .opt_str("instanceName")?
                .unwrap_or_default()
                .to_owned(),
            instance_type: fields
                .opt_str("instanceType")?
                .unwrap_or_default()
                .to_owned(),
            federation_mode: fields
                .opt_str("federationMode")?
                .unwrap_or_default()
                .to_owned(),
            listen_port: fields.opt_u64("listenPort")?.unwrap_or_default(),
            hub_url: owned(fields.opt_str("hubUrl")?),
            auto_sync: fields.opt_bool("autoSync")?.unwrap_or_default(),
            sync_interval: fields.opt_u64("syncInterval")?.unwrap_or_default(),
            peers: url_list(&fields, "peers")?,
            active_peers: url_list(&fields, "activePeers")?,
            stats,
            timestamp: fields.opt_u64("timestamp")?.unwrap_or_default(),
            lattice: LatticeInfo {
                protocols: url_list(&fields, "protocols")?,
                epoch: owned(fields.opt_str("epoch")?),
                public_key: owned(fields.opt_str("publicKey")?),
                fingerprint: owned(fields.opt_str("fingerprint")?),
                node_count: fields.opt_u64("nodeCount")?,
                version: owned(fields.opt_str("version")?),
            },
        })
    }

    pub fn speaks(&self, protocol: &str) -> bool {
        self.lattice.protocols.iter().any(|name| name == protocol)
    }
}

/// One known peer as ark-lattice describes it in `peerDetails` of `/federation/discover`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerSummary {
    pub url: String,
    pub instance_id: Option<String>,
    pub instance_name: Option<String>,
    pub active: bool,
    pub last_sync: Option<u64>,
}

/// `GET /federation/discover`: ARK's `{instanceId, peers, activePeers, timestamp}`, and
/// ours adds `peerDetails`, from which a peer's own entry can be recognised.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerDirectory {
    pub instance_id: String,
    pub peers: Vec<String>,
    pub active_peers: Vec<String>,
    pub timestamp: u64,
    pub details: Vec<PeerSummary>,
}

impl PeerDirectory {
    pub fn to_json(&self) -> Value {
        let details: Array = self
            .details
            .iter()
            .map(|peer| {
                let optional = |value: &Option<String>| value.as_deref().map_or(Value::Null, text);
                object(vec![
                    ("url", text(&peer.url)),
                    ("instanceId", optional(&peer.instance_id)),
                    ("instanceName", optional(&peer.instance_name)),
                    ("active", Value::Bool(peer.active)),
                    ("lastSync", peer.last_sync.map_or(Value::Null, number)),
                ])
            })
            .collect();
        object(vec![
            ("instanceId", text(&self.instance_id)),
            ("peers", urls(&self.peers)),
            ("activePeers", urls(&self.active_peers)),
            ("timestamp", number(self.timestamp)),
            ("peerDetails", Value::Array(details)),
        ])
    }

    /// Reads ARK's answer, ours, and the Python service's `/discover` (`peers` there
    /// are objects with `url`, or URLs).
    pub fn from_json(answer: &Object, context: &str) -> Result<PeerDirectory, WireError> {
        let fields = Fields::new(answer, context);
        let mut details: Vec<PeerSummary> = Vec::new();
        let mut peers = Vec::new();
        // Both lists are read: an empty `peerDetails` once hid every URL of `peers`
        // (found by the `peer_answers` fuzz target), so a peer's peers were lost.
        let entries = [fields.opt_array("peerDetails")?, fields.opt_array("peers")?];
        for entry in entries.into_iter().flatten().flatten() {
            match entry {
                Value::String(url) => peers.push(url.clone()),
                Value::Object(_) => {
                    let entry = Fields::of(entry, context)?;
                    let Some(url) = entry.opt_str("url")? else {
                        continue;
                    };
                    if details.iter().any(|known| known.url == url) {
                        continue;
                    }
                    details.push(PeerSummary {
                        url: url.to_owned(),
                        instance_id: entry.opt_str("instanceId")?.map(str::to_owned),
                        instance_name: entry.opt_str("instanceName")?.map(str::to_owned),
                        active: entry.opt_bool("active")?.unwrap_or_default(),
                        last_sync: entry.opt_u64("lastSync")?,
                    });
                }
                _ => {}
            }
        }
        if peers.is_empty() {
            peers = details.iter().map(|peer| peer.url.clone()).collect();
        }
        Ok(PeerDirectory {
            instance_id: fields.opt_str("instanceId")?.unwrap_or_default().to_owned(),
            peers,
            active_peers: url_list(&fields, "activePeers")?,
            timestamp: fields.opt_u64("timestamp")?.unwrap_or_default(),
            details,
        })
    }
}

/// ARK's `receiveNodes` result, the answer to `POST /federation/sync {nodes}`. Ours adds
/// `rejected`: the rows refused, with the reason.
#[derive(Debug, Clone, Default)]
pub struct ReceiveResult {
    pub imported: u64,
    pub conflicts: u64,
    pub total: u64,
    pub rejected: Array,
}

impl ReceiveResult {
    pub fn to_json(&self) -> Value {
        object(vec![
            ("imported", number(self.imported)),
            ("conflicts", number(self.conflicts)),
            ("total", number(self.total)),
            ("rejected", Value::Array(self.rejected.clone())),
        ])
    }

    pub fn from_json(answer: &Object, context: &str) -> Result<ReceiveResult, WireError> {
        let fields = Fields::new(answer, context);
        Ok(ReceiveResult {
            imported: fields.u64("imported")?,
            conflicts: fields.opt_u64("conflicts")?.unwrap_or_default(),
            total: fields.opt_u64("total")?.unwrap_or_default(),
            rejected: fields.array_or_empty("rejected")?,
        })
    }
}

/// The answer to `POST /federation/sync` without `nodes`: the nodes changed since `since`.
#[derive(Debug, Clone, Default)]
pub struct NodesSince {
    pub instance_id: String,
    pub timestamp: u64,
    pub nodes: Array,
}

impl NodesSince {
    pub fn to_json(&self) -> Value {
        object(vec![
            ("instanceId", text(&self.instance_id)),
            ("timestamp", number(self.timestamp)),
            ("nodes", Value::Array(self.nodes.clone())),
        ])
    }
}

/// `GET /federation/nodes`: `{instanceId, count, nodes}`; ours adds `next` when a `limit`
/// cut the list (the id to continue `after`).
#[derive(Debug, Clone, Default)]
pub struct NodeList {
    pub instance_id: String,
    pub nodes: Array,
    pub next: Option<String>,
}

impl NodeList {
    pub fn to_json(&self) -> Value {
        self.clone().into_json()
    }

    /// As [`NodeList::to_json`], without copying the rows: a full dump is every node.
    pub(crate) fn into_json(self) -> Value {
        let mut pairs = vec![
            ("instanceId", text(&self.instance_id)),
            ("count", number(self.nodes.len() as u64)),
        ];
        if let Some(next) = &self.next {
            pairs.push(("next", text(next)));
        }
        pairs.push(("nodes", Value::Array(self.nodes)));
        object(pairs)
    }

    pub fn from_json(answer: &Object, context: &str) -> Result<NodeList, WireError> {
        let fields = Fields::new(answer, context);
        Ok(NodeList {
            instance_id: fields.opt_str("instanceId")?.unwrap_or_default().to_owned(),
            nodes: fields.array("nodes")?.iter().cloned().collect(),
            next: fields.opt_str("next")?.map(str::to_owned),
        })
    }
}

/// ARK's backend answers, `/api/federation/*`.
#[derive(Debug, Clone, PartialEq)]
pub enum ControlAnswer {
    /// `GET …/status`.
    Status {
        info: Box<InstanceInfo>,
        is_running: bool,
    },
    /// `POST …/start`.
    Started {
        port: u64,
        instance_id: String,
        instance_name: String,
    },
    /// `POST …/stop`.
    Stopped,
    /// `POST …/peers/add` and `DELETE …/peers/:url`.
    PeerChanged {
        added: bool,
        peer_url: String,
        total_peers: u64,
    },
    /// `GET …/peers`.
    Peers {
        peers: Vec<String>,
        active_peers: Vec<String>,
    },
    /// `POST …/sync`: every peer's result, or the one asked for.
    Synced(SyncReport),
    /// `POST …/discover`: the peers found and added.
    Discovered {
        peers: Vec<String>,
        total_peers: u64,
    },
    /// `POST …/auto-sync/start`.
    AutoSyncStarted { interval: u64 },
    /// `POST …/auto-sync/stop`.
    AutoSyncStopped,
}

/// What a sync did with one peer, in ARK's `syncWithPeer` terms.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerSyncReport {
    pub peer_url: String,
    pub sent: u64,
    pub received: u64,
    /// `None` when the sync succeeded.
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncReport {
    /// `[{peerUrl, success, result: {sent, received} | error}]`, each with the guide's
    /// `{peer, nodesSent, nodesReceived}` too.
    All(Vec<PeerSyncReport>),
    /// `{sent, received}` of the one peer asked for.
    One(PeerSyncReport),
}

impl PeerSyncReport {
    fn counts(&self) -> Value {
        object(vec![
            ("sent", number(self.sent)),
            ("received", number(self.received)),
        ])
    }

    fn to_json(&self) -> Value {
        let mut pairs = vec![
            ("peerUrl", text(&self.peer_url)),
            ("success", Value::Bool(self.error.is_none())),
        ];
        match &self.error {
            None => pairs.push(("result", self.counts())),
            Some(error) => pairs.push(("error", text(error))),
        }
        pairs.push(("peer", text(&self.peer_url)));
        pairs.push(("nodesSent", number(self.sent)));
        pairs.push(("nodesReceived", number(self.received)));
        object(pairs)
    }
}

impl ControlAnswer {
    pub fn to_json(&self) -> Value {
        match self {
            ControlAnswer::Status { info, is_running } => object(vec![
                ("status", text("ok")),
                ("info", info.to_json()),
                ("isRunning", Value::Bool(*is_running)),
                ("activePeers", urls(&info.active_peers)),
                ("stats", info.stats.to_json()),
            ]),
            ControlAnswer::Started {
                port,
                instance_id,
                instance_name,
            } => object(vec![
                ("status", text("started")),
                ("port", number(*port)),
                ("instanceId", text(instance_id)),
                ("instanceName", text(instance_name)),
            ]),
            ControlAnswer::Stopped => object(vec![("status", text("stopped"))]),
            ControlAnswer::PeerChanged {
                added,
                peer_url,
                total_peers,
            } => object(vec![
                ("status", text(if *added { "added" } else { "removed" })),
                ("peerUrl", text(peer_url)),
                ("totalPeers", number(*total_peers)),
            ]),
            ControlAnswer::Peers {
                peers,
                active_peers,
            } => object(vec![
                ("peers", urls(peers)),
                ("activePeers", urls(active_peers)),
                ("totalPeers", number(peers.len() as u64)),
            ]),
            ControlAnswer::Synced(report) => object(vec![
                ("status", text("synced")),
                (
                    "result",
                    match report {
                        SyncReport::All(list) => {
                            Value::Array(list.iter().map(PeerSyncReport::to_json).collect())
                        }
                        SyncReport::One(one) => one.counts(),
                    },
                ),
            ]),
            ControlAnswer::Discovered { peers, total_peers } => object(vec![
                ("status", text("discovered")),
                ("peers", urls(peers)),
                ("totalPeers", number(*total_peers)),
            ]),
            ControlAnswer::AutoSyncStarted { interval } => object(vec![
                ("status", text("auto-sync started")),
                ("interval", number(*interval)),
            ]),
            ControlAnswer::AutoSyncStopped => object(vec![("status", text("auto-sync stopped"))]),
        }
    }
}

/// ARK's answer to a route it does not have: 404 `{error: "Not Found", path}`.
pub fn not_found(path: &str) -> Value {
    object(vec![("error", text("Not Found")), ("path", text(path))])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::parse_object;

    /// `fuzz/regressions/peer_answers-crash-b5cecc43…`: a discover answer's `peers`
    /// were read only when it had no `peerDetails`, so written back with an empty
    /// `peerDetails` they vanished; a list of one beside details of another lost it too.
    #[test]
    fn fuzz_peer_answers_crash_b5cecc43_peers_beside_peer_details() {
        for (answer, peers, details) in [
            (&br#"{"peers":["http://a:9000"],"peerDetails":[]}"#[..], vec!["http://a:9000"], 0),
            (br#"{"peers":["http://a:9000"]}"#, vec!["http://a:9000"], 0),
            (
                br#"{"peers":["http://a:9000","http://b:9000"],"peerDetails":[{"url":"http://a:9000"}]}"#,
                vec!["http://a:9000", "http://b:9000"],
                1,
            ),
            (br#"{"peers":[{"url":"http://p:9001"},{"url":"http://p:9001"}]}"#, vec!["http://p:9001"], 1),
        ] {
            let object = parse_object(answer, "discover").unwrap();
            let directory = PeerDirectory::from_json(&object, "discover").unwrap();
            assert_eq!(directory.peers, peers, "{}", String::from_utf8_lossy(answer));
            assert_eq!(directory.details.len(), details);
            let Value::Object(written) = directory.to_json() else {
                panic!()
            };
            assert_eq!(PeerDirectory::from_json(&written, "again").unwrap(), directory);
        }
    }

    #[test]
    fn ark_info_reads_and_ours_round_trips() {
        let ark = parse_object(
            br#"{"instanceId":"abc","instanceName":"ARK-local-abc","instanceType":"local","federationMode":"p2p","listenPort":9000,"hubUrl":null,"autoSync":true,"syncInterval":60000,"peers":["http://a:9000"],"activePeers":[],"stats":{"totalSyncs":1,"successfulSyncs":1,"failedSyncs":0,"nodesReceived":2,"nodesShared":3,"conflictsResolved":0},"timestamp":5}"#,
            "info",
        )
        .unwrap();
        let info = InstanceInfo::from_json(&ark, "info").unwrap();
        assert_eq!(info.peers, ["http://a:9000"]);
        assert_eq!(info.stats.nodes_shared, 3);
        assert!(!info.speaks("ark-lattice-v2"));
        let Value::Object(again) = info.to_json() else {
            panic!()
        };
        assert_eq!(InstanceInfo::from_json(&again, "info").unwrap(), info);
        let bad = parse_object(br#"{"instanceId":"a","peers":[1]}"#, "info").unwrap();
        assert_eq!(
            InstanceInfo::from_json(&bad, "info"),
            Err(WireError::wrong_type("info", "peers", "a list of URLs"))
        );
    }

    #[test]
    fn a_sync_report_carries_ark_and_guide_fields() {
        let failed = PeerSyncReport {
            peer_url: "http://a".into(),
            error: Some("down".into()),
            ..PeerSyncReport::default()
        };
        let json = miniserde::json::to_string(
            &ControlAnswer::Synced(SyncReport::All(vec![failed])).to_json(),
        );
        assert_eq!(
            json,
            r#"{"result":[{"error":"down","nodesReceived":0,"nodesSent":0,"peer":"http://a","peerUrl":"http://a","success":false}],"status":"synced"}"#
        );
    }
}
