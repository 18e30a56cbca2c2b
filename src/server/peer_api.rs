//! The endpoints peers call: ARK's Node.js protocol (`/federation/info`, `nodes`,
//! `sync`, `discover`) field for field, and our v2 offer and push (the changes feed and
//! reconciliation are in `delta_api`).

use miniserde::json::{Array, Object, Value};

use super::app::App;
use super::auth::authorize;
use super::routes::{ApiError, number, text};
use crate::config::TrustMode;
use crate::http::Request;
use crate::model::{Version, unix_millis_now};
use crate::protocol::{
    Fields, PROTOCOL_LEGACY, PROTOCOL_RECONCILE, PROTOCOL_V2, ark_row, legacy_origin,
    legacy_record, parse_object,
};
use crate::store::Query;
use crate::sync::held::{Held, Refusal};
use crate::sync::wanted_ids;
use crate::trust::{Access, Tier};

/// `GET /federation/info`: ARK's fields plus ours (protocols, epoch, key, node count).
pub fn info(app: &App) -> Result<Value, ApiError> {
    let peers = app.syncer.peers()?;
    let federation = &app.config.federation;
    let node_count = app.store.borrow().stats()?.nodes;
    let mut object = Object::new();
    object.insert("instanceId".into(), text(&app.instance_id_hex()));
    object.insert("instanceName".into(), text(&app.instance_name()));
    object.insert(
        "instanceType".into(),
        text(&app.config.instance_type.to_string()),
    );
    object.insert("federationMode".into(), text(&federation.mode.to_string()));
    object.insert(
        "listenPort".into(),
        number(u64::from(app.listen_port.get())),
    );
    object.insert(
        "hubUrl".into(),
        federation.hub_url.as_deref().map_or(Value::Null, text),
    );
    object.insert("autoSync".into(), Value::Bool(app.auto_sync.get()));
    object.insert("syncInterval".into(), number(app.sync_interval_ms.get()));
    object.insert("peers".into(), number(peers.len() as u64));
    object.insert(
        "activePeers".into(),
        number(peers.iter().filter(|peer| peer.is_active()).count() as u64),
    );
    object.insert("stats".into(), app.syncer.global_stats()?.to_json());
    object.insert("timestamp".into(), number(unix_millis_now()));
    object.insert(
        "protocols".into(),
        Value::Array(
            [PROTOCOL_LEGACY, PROTOCOL_V2, PROTOCOL_RECONCILE]
                .into_iter()
                .map(text)
                .collect(),
        ),
    );
    object.insert("epoch".into(), text(&app.epoch_hex()));
    object.insert("nodeCount".into(), number(node_count));
    object.insert("publicKey".into(), text(&app.key.public_key().to_base64()));
    object.insert(
        "fingerprint".into(),
        text(&app.key.public_key().fingerprint()),
    );
    object.insert("version".into(), text(env!("CARGO_PKG_VERSION")));
    Ok(Value::Object(object))
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
    let rows: Array = found.iter().map(|(node, _)| ark_row(node)).collect();
    let mut object = Object::new();
    object.insert("instanceId".into(), text(&app.instance_id_hex()));
    object.insert("count".into(), number(rows.len() as u64));
    if limit.is_some_and(|limit| found.len() == limit) {
        if let Some((last, _)) = found.last() {
            object.insert("next".into(), text(&last.id));
        }
    }
    object.insert("nodes".into(), Value::Array(rows));
    Ok(Value::Object(object))
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
        let outcome = apply_reporting(app, &records, &[], &mut rejected)?;
        return Ok(super::routes::object([
            ("imported", number(outcome.applied)),
            ("conflicts", number(outcome.conflicts)),
            ("total", number(rows.len() as u64)),
            ("rejected", Value::Array(rejected)),
        ]));
    }
    let since = fields.opt_u64("since")?.unwrap_or(0);
    let mut rows = Array::new();
    app.store.borrow().scan(&Query::default(), |node, meta| {
        if meta.updated_at.unwrap_or(0) > since {
            rows.push(ark_row(&node));
        }
        true
    })?;
    Ok(super::routes::object([
        ("instanceId", text(&app.instance_id_hex())),
        ("timestamp", number(unix_millis_now())),
        ("nodes", Value::Array(rows)),
    ]))
}

/// Applies records a peer sent, with the syncer's clock-skew rule, and adds the ones the
/// store refused to `rejected` as `{id, error}`.
fn apply_reporting(
    app: &App,
    records: &[crate::store::RemoteRecord],
    held: &[Held],
    rejected: &mut Array,
) -> Result<crate::store::ApplyOutcome, ApiError> {
    let outcome = app.syncer.apply(records, None, held)?;
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
    let active = peers.iter().filter(|peer| peer.is_active()).count() as u64;
    let list: Array = peers
        .iter()
        .map(|peer| {
            super::routes::object([
                ("url", text(&peer.url)),
                (
                    "instanceId",
                    peer.instance_id.as_deref().map_or(Value::Null, text),
                ),
                (
                    "instanceName",
                    peer.instance_name.as_deref().map_or(Value::Null, text),
                ),
                ("active", Value::Bool(peer.is_active())),
                ("lastSync", peer.last_success.map_or(Value::Null, number)),
            ])
        })
        .collect();
    Ok(super::routes::object([
        ("instanceId", text(&app.instance_id_hex())),
        ("peers", Value::Array(list)),
        ("activePeers", number(active)),
        ("timestamp", number(unix_millis_now())),
    ]))
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
    let mut held = Vec::new();
    let pusher = caller
        .instance_id
        .map_or_else(|| "an unsigned peer".to_owned(), |id| id.short());
    for (index, value) in fields.array("records")?.iter().enumerate() {
        match app.syncer.verified_record(
            value,
            &format!("record {}", index + 1),
            &format!("push from {pusher}"),
            delivered_by_core,
        ) {
            Ok(record) => records.push(record),
            Err(Refusal::Refused(reason)) => rejected.push(rejection(index, value, &reason)),
            Err(Refusal::Held(record)) => held.push(*record),
        }
    }
    // No `.await` between these three: nothing else writes in between.
    let seq_before = app.store.borrow().last_seq();
    let outcome = apply_reporting(app, &records, &held, &mut rejected)?;
    let seq_after = app.store.borrow().last_seq();
    // The sequences this push took in our change log: a pusher whose pull checkpoint
    // is `seq_before` may move it to `seq_after`, since all between is its own records.
    Ok(super::routes::object([
        ("applied", number(outcome.applied)),
        ("unchanged", number(outcome.unchanged)),
        ("stale", number(outcome.stale)),
        ("conflicts", number(outcome.conflicts)),
        ("rejected", Value::Array(rejected)),
        ("held", number(held.len() as u64)),
        ("seq_before", number(seq_before)),
        ("seq_after", number(seq_after)),
    ]))
}
