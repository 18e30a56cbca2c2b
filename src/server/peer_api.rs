//! The endpoints peers call: ARK's Node.js protocol (`/federation/info`, `nodes`,
//! `sync`, `discover`) in the shapes of `protocol::ark`, and our v2 offer and push (the changes feed and
//! reconciliation are in `delta_api`).

use miniserde::json::{Array, Object, Value};

use super::app::App;
use super::auth::authorize;
use super::routes::{ApiError, number, text};
use crate::config::TrustMode;
use crate::http::Request;
use crate::model::{Version, unix_millis_now};
use crate::protocol::{
    Fields, InstanceInfo, LatticeInfo, NodeList, NodesSince, PROTOCOL_LEGACY, PROTOCOL_RECONCILE,
    PROTOCOL_V2, PeerDirectory, PeerSummary, ReceiveResult, ark_row, legacy_origin, legacy_record,
    parse_object,
};
use crate::store::Query;
use crate::sync::wanted_ids;
use crate::trust::{Access, Tier};

/// What `GET /federation/info` and `GET /api/federation/status` report: ARK's fields
/// plus ours (protocols, epoch, key, node count).
pub fn instance_info(app: &App) -> Result<InstanceInfo, ApiError> {
    let peers = app.syncer.peers()?;
    let federation = &app.config.federation;
    let node_count = app.store.borrow().stats()?.nodes;
    Ok(InstanceInfo {
        instance_id: app.instance_id_hex(),
        instance_name: app.instance_name(),
        instance_type: app.config.instance_type.to_string(),
        federation_mode: federation.mode.to_string(),
        listen_port: u64::from(app.listen_port.get()),
        hub_url: federation.hub_url.clone(),
        auto_sync: app.auto_sync.get(),
        sync_interval: app.sync_interval_ms.get(),
        peers: peers.iter().map(|peer| peer.url.clone()).collect(),
        active_peers: peers
            .iter()
            .filter(|peer| peer.is_active())
            .map(|peer| peer.url.clone())
            .collect(),
        stats: app.syncer.global_stats()?.to_ark(),
        timestamp: unix_millis_now(),
        lattice: LatticeInfo {
            protocols: [PROTOCOL_LEGACY, PROTOCOL_V2, PROTOCOL_RECONCILE]
                .map(str::to_owned)
                .to_vec(),
            epoch: Some(app.epoch_hex()),
            public_key: Some(app.key.public_key().to_base64()),
            fingerprint: Some(app.key.public_key().fingerprint()),
            node_count: Some(node_count),
            version: Some(env!("CARGO_PKG_VERSION").to_owned()),
        },
    })
}

/// `GET /federation/info`.
pub fn info(app: &App) -> Result<Value, ApiError> {
    Ok(instance_info(app)?.to_json())
}

/// `GET /federation/nodes[?type=T][&limit=N][&after=ID]`: nodes as ARK's SQLite rows.
pub fn nodes(app: &App, request: &Request) -> Result<Value, ApiError> {
    authorize(app, request, Access::Pull)?;
    let limit = match request.query_param("limit") {
        None => None,
        Some(text) => Some(
            text.parse::<usize>()
                .ok()
                .filter(|limit| *limit > 0)
                .ok_or_else(|| {
                    ApiError::bad_request(format!("limit {text:?} is not a positive number"))
                })?,
        ),
    };
    let query = Query {
        node_type: request.query_param("type"),
        after: request.query_param("after"),
        limit,
        ..Query::default()
    };
    let found = app.store.borrow().query(&query)?;
    let next = found
        .last()
        .filter(|_| limit.is_some_and(|limit| found.len() == limit))
        .map(|(last, _)| last.id.clone());
    Ok(NodeList {
        instance_id: app.instance_id_hex(),
        nodes: found.iter().map(|(node, _)| ark_row(node)).collect(),
        next,
    }
    .to_json())
}

/// `POST /federation/sync`: with `nodes`, apply them with last-writer-wins and answer
/// `{imported, conflicts, total}`; without, answer the nodes changed since `since`.
pub fn sync(app: &App, request: &Request) -> Result<Value, ApiError> {
    let body = if request.body.iter().all(u8::is_ascii_whitespace) {
        Object::new()
    } else {
        parse_object(&request.body, "sync request")?
    };
    let fields = Fields::new(&body, "sync request");
    let sender = fields
        .opt_str("instanceId")?
        .unwrap_or("unknown-ark-instance");
    let pushing = fields.opt_array("nodes")?.is_some();
    authorize(
        app,
        request,
        if pushing { Access::Push } else { Access::Pull },
    )?;
    if app.config.federation.trust == TrustMode::Strict && pushing {
        return Err(ApiError {
            status: 403,
            message:
                "ARK rows carry no signatures; they are accepted only with FEDERATION_TRUST=open"
                    .into(),
        });
    }
    if let Some(rows) = fields.opt_array("nodes")? {
        let origin = legacy_origin(sender);
        let mut records = Vec::new();
        let mut rejected = Array::new();
        for (index, row) in rows.iter().enumerate() {
            match legacy_record(row, origin) {
                Ok(record) => records.push(record),
                Err(error) => rejected.push(rejection(index, row, &error.to_string())),
            }
        }
        let outcome = apply_reporting(app, &records, &mut rejected)?;
        return Ok(ReceiveResult {
            imported: outcome.applied,
            conflicts: outcome.conflicts,
            total: rows.len() as u64,
            rejected,
        }
        .to_json());
    }
    let since = fields.opt_u64("since")?.unwrap_or(0);
    let mut rows = Array::new();
    app.store.borrow().scan(&Query::default(), |node, meta| {
        if meta.updated_at.unwrap_or(0) > since {
            rows.push(ark_row(&node));
        }
        true
    })?;
    Ok(NodesSince {
        instance_id: app.instance_id_hex(),
        timestamp: unix_millis_now(),
        nodes: rows,
    }
    .to_json())
}

/// Applies records a peer sent, with the syncer's clock-skew rule, and adds the ones the
/// store refused to `rejected` as `{id, error}`.
fn apply_reporting(
    app: &App,
    records: &[crate::store::RemoteRecord],
    rejected: &mut Array,
) -> Result<crate::store::ApplyOutcome, ApiError> {
    let outcome = app.syncer.apply(records, None)?;
    for (id, reason) in &outcome.rejected {
        rejected.push(super::routes::object([
            ("id", text(id)),
            ("error", text(reason)),
        ]));
    }
    Ok(outcome)
}

fn rejection(index: usize, row: &Value, reason: &str) -> Value {
    let id = match row {
        Value::Object(object) => match object.get("id") {
            Some(Value::String(id)) => text(id),
            _ => Value::Null,
        },
        _ => Value::Null,
    };
    super::routes::object([
        ("index", number(index as u64)),
        ("id", id),
        ("error", text(reason)),
    ])
}

/// `GET /federation/discover`: the peers we know, for others to find.
pub fn discover(app: &App, request: &Request) -> Result<Value, ApiError> {
    authorize(app, request, Access::Info)?;
    let peers = app.syncer.peers()?;
    let url_of = |peer: &crate::sync::PeerState| peer.url.clone();
    Ok(PeerDirectory {
        instance_id: app.instance_id_hex(),
        peers: peers.iter().map(url_of).collect(),
        active_peers: peers
            .iter()
            .filter(|peer| peer.is_active())
            .map(url_of)
            .collect(),
        timestamp: unix_millis_now(),
        details: peers
            .iter()
            .map(|peer| PeerSummary {
                url: peer.url.clone(),
                instance_id: peer.instance_id.clone(),
                instance_name: peer.instance_name.clone(),
                active: peer.is_active(),
                last_sync: peer.last_success,
            })
            .collect(),
    }
    .to_json())
}

/// `POST /federation/v2/offer {offers: [{id, version}]}` → `{want: [id]}`.
pub fn offer(app: &App, request: &Request) -> Result<Value, ApiError> {
    authorize(app, request, Access::Push)?;
    let body = parse_object(&request.body, "offer")?;
    let fields = Fields::new(&body, "offer");
    let mut offers = Vec::new();
    for (index, value) in fields.array("offers")?.iter().enumerate() {
        let context = format!("offer {}", index + 1);
        let offer = Fields::of(value, &context)?;
        let version = Version::from_wire(offer.str("version")?)
            .map_err(|reason| ApiError::bad_request(format!("{context}: {reason}")))?;
        offers.push((offer.str("id")?.to_owned(), version));
    }
    let store = app.store.borrow();
    let mut local = std::collections::BTreeMap::new();
    for (id, _) in &offers {
        if let Some(record) = store.get(id)? {
            local.insert(id.as_str(), record.meta.version);
        }
    }
    let want: Array = wanted_ids(&offers, |id| local.get(id).copied())
        .into_iter()
        .map(text)
        .collect();
    Ok(super::routes::object([("want", Value::Array(want))]))
}

/// `POST /federation/v2/push {records: [...]}`: verify and apply; invalid records are
/// listed in the answer and the valid ones still apply.
pub fn push(app: &App, request: &Request) -> Result<Value, ApiError> {
    let caller = authorize(app, request, Access::Push)?;
    let delivered_by_core = caller.tier == Tier::Core;
    let body = parse_object(&request.body, "push")?;
    let fields = Fields::new(&body, "push");
    let mut records = Vec::new();
    let mut rejected = Array::new();
    for (index, value) in fields.array("records")?.iter().enumerate() {
        match app
            .syncer
            .verified_record(value, &format!("record {}", index + 1), delivered_by_core)
        {
            Ok(record) => records.push(record),
            Err(reason) => rejected.push(rejection(index, value, &reason)),
        }
    }
    // No `.await` between these three: nothing else writes in between.
    let seq_before = app.store.borrow().last_seq();
    let outcome = apply_reporting(app, &records, &mut rejected)?;
    let seq_after = app.store.borrow().last_seq();
    // The sequences this push took in our change log: a pusher whose pull checkpoint
    // is `seq_before` may move it to `seq_after`, since all between is its own records.
    Ok(super::routes::object([
        ("applied", number(outcome.applied)),
        ("unchanged", number(outcome.unchanged)),
        ("stale", number(outcome.stale)),
        ("conflicts", number(outcome.conflicts)),
        ("rejected", Value::Array(rejected)),
        ("seq_before", number(seq_before)),
        ("seq_after", number(seq_after)),
    ]))
}
