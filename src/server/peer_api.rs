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
    Fields, InstanceInfo, NodeList, NodesSince, PeerDirectory, PeerSummary, ReceiveResult,
    SplitObject, ark_row, check_text, legacy_origin, legacy_record, parse_object, parse_piece,
    split_checked,
};
use crate::service::InfoInputs;
use crate::store::{Commit, Query};
use crate::sync::held::Refusal;
use crate::sync::wanted_ids;
use crate::trust::{Access, Tier};

/// What `GET /federation/info` and `GET /api/federation/status` report: ARK's fields
/// plus ours (protocols, epoch, key, node count); see `Instance::info_at`.
pub(crate) fn instance_info(app: &App) -> Result<InstanceInfo, ApiError> {
    Ok(app.instance().info_at(unix_millis_now())?)
}

/// `GET /federation/info`.
pub(crate) fn info(app: &App) -> Result<Value, ApiError> {
    Ok(instance_info(app)?.to_json())
}

/// A `/federation/info` answer as JSON text, split around its timestamp, and what it
/// was made from.
#[derive(Debug)]
pub(crate) struct CachedInfo {
    made_from: InfoInputs,
    before_timestamp: String,
    after_timestamp: String,
}

/// Stands for the timestamp while an answer is made for the cache; no count reaches it.
const TIMESTAMP_PLACEHOLDER: u64 = u64::MAX;

/// `GET /federation/info` as JSON text. Making the answer reads the store (node count,
/// peers, sync totals) and made this route 3× slower than `/health` (issue #13), so
/// the text is kept until one of its [`InfoInputs`] changes, and only the timestamp is
/// written per request.
pub(crate) fn info_json(app: &App) -> Result<String, ApiError> {
    let inputs = app.instance().info_inputs();
    let mut cache = app.info_cache();
    if cache
        .as_ref()
        .is_none_or(|cached| cached.made_from != inputs)
    {
        let text =
            miniserde::json::to_string(&app.instance().info_at(TIMESTAMP_PLACEHOLDER)?.to_json());
        let placeholder = TIMESTAMP_PLACEHOLDER.to_string();
        // A name or URL chosen to hold the placeholder's digits would make the split
        // ambiguous; such an answer is made afresh every time.
        if text.matches(placeholder.as_str()).count() != 1 {
            *cache = None;
            return Ok(miniserde::json::to_string(&info(app)?));
        }
        let (before, after) = text
            .split_once(placeholder.as_str())
            .expect("the placeholder occurs once");
        *cache = Some(CachedInfo {
            made_from: inputs,
            before_timestamp: before.to_owned(),
            after_timestamp: after.to_owned(),
        });
    }
    let cached = cache.as_ref().expect("made above");
    Ok(format!(
        "{}{}{}",
        cached.before_timestamp,
        unix_millis_now(),
        cached.after_timestamp
    ))
}

/// `GET /federation/nodes[?type=T][&limit=N][&after=ID]`: nodes as ARK's SQLite rows.
pub(crate) fn nodes(app: &App, request: &Request) -> Result<Value, ApiError> {
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
    let found = app.instance().store().borrow().query(&query)?;
    let next = found
        .last()
        .filter(|_| limit.is_some_and(|limit| found.len() == limit))
        .map(|(last, _)| last.id.clone());
    Ok(NodeList {
        instance_id: app.instance().instance_id_hex(),
        nodes: found.iter().map(|(node, _)| ark_row(node)).collect(),
        next,
    }
    .into_json())
}

/// `POST /federation/sync`: with `nodes`, apply them with last-writer-wins and answer
/// `{imported, conflicts, total}`; without, answer the nodes changed since `since`.
pub(crate) async fn sync(app: &App, request: &Request) -> Result<Value, ApiError> {
    let split = if request.body.iter().all(u8::is_ascii_whitespace) {
        SplitObject {
            fields: Object::new(),
            elements: None,
        }
    } else {
        split_pausing(&request.body, "nodes", "sync request").await?
    };
    let fields = Fields::new(&split.fields, "sync request");
    // `nodes` that is not an array is refused here, as ever.
    fields.opt_array("nodes")?;
    let sender = fields
        .opt_str("instanceId")?
        .unwrap_or("unknown-ark-instance");
    let pushing = split.elements.is_some();
    authorize(
        app,
        request,
        if pushing { Access::Push } else { Access::Pull },
    )?;
    if app.instance().config().federation.trust == TrustMode::Strict && pushing {
        return Err(ApiError {
            status: 403,
            message:
                "ARK rows carry no signatures; they are accepted only with FEDERATION_TRUST=open"
                    .into(),
        });
    }
    if let Some(rows) = &split.elements {
        let origin = legacy_origin(sender);
        let mut rejected = Array::new();
        let (outcome, _, _) = apply_in_chunks(
            app,
            rows,
            |_, row| {
                legacy_record(row, origin).map_err(|error| Refusal::Refused(error.to_string()))
            },
            &mut rejected,
        )
        .await?;
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
    app.instance()
        .store()
        .borrow()
        .scan(&Query::default(), |node, meta| {
            if meta.updated_at.unwrap_or(0) > since {
                rows.push(ark_row(&node));
            }
            true
        })?;
    Ok(NodesSince {
        instance_id: app.instance().instance_id_hex(),
        timestamp: unix_millis_now(),
        nodes: rows,
    }
    .to_json())
}

/// Most records parsed, checked and applied in one transaction. A push of thousands of
/// records is taken in chunks so the requests that arrive meanwhile are served between
/// them (issue 10: a 100k-record push held the thread for 9 s), and only one chunk is
/// ever parsed into memory at a time. With deferred commits a chunk costs little more
/// than its records, so chunks are small: 250 records took 10–20 ms at times.
const APPLY_CHUNK: usize = 100;

/// Chunks committed deferred before a push makes them durable, and not only at its
/// end: the `fdatasync` of one commit after 50,000 deferred records took 100–145 ms,
/// one block on the server's one thread; of 2,000 records' it is short.
const DURABLE_EVERY_CHUNKS: usize = 20;

/// Work a push does between two pauses. A legit request that arrives meanwhile waits
/// about this long, plus its own time, or the time of one commit.
const SLICE: std::time::Duration = std::time::Duration::from_millis(5);

/// Parses the pushed `elements` (cut out by `split_object`), turns each into a record
/// with `read` (index, element), and applies them in chunks of [`APPLY_CHUNK`], pausing
/// after every [`SLICE`] of work and after each commit (see [`Slices`]), with the
/// syncer's clock-skew rule. The chunks' commits are deferred and made durable every
/// [`DURABLE_EVERY_CHUNKS`] chunks and at the end, before the push is answered, whether
/// it succeeded or not (`store::durability`: an `fdatasync` per chunk was most of a
/// push's time and its longest pauses). Elements that are not JSON, that `read` refuses or that the store
/// refuses are added to `rejected`. Also returns the change sequence before and after,
/// when nothing else wrote in between: then every sequence in that range is one of
/// these records.
async fn apply_in_chunks(
    app: &App,
    elements: &[&[u8]],
    read: impl FnMut(usize, &Value) -> Result<crate::store::RemoteRecord, Refusal>,
    rejected: &mut Array,
) -> Result<(crate::store::ApplyOutcome, u64, Option<(u64, u64)>), ApiError> {
    let mut ending = DurableAtEnd { app, done: false };
    let applied = apply_deferred(app, elements, read, rejected).await;
    // Also after a failed chunk: what the chunks before it applied is made durable
    // now, not left to the next commit of anything, so the changes feed serves it.
    let durable = ending.now();
    let applied = applied?;
    durable?;
    Ok(applied)
}

/// Makes a push's deferred commits durable when the push ends, however it ends:
/// answered, failed, or dropped between two chunks because its caller went away (then
/// on drop). A panic skips it, since a second one while unwinding would abort the node;
/// the next durable commit of anything then does it.
struct DurableAtEnd<'a> {
    app: &'a App,
    done: bool,
}

impl DurableAtEnd<'_> {
    fn now(&mut self) -> Result<(), crate::store::StoreError> {
        self.done = true;
        self.app.instance().store().borrow_mut().make_durable()
    }
}

impl Drop for DurableAtEnd<'_> {
    fn drop(&mut self) {
        if !self.done && !std::thread::panicking() {
            // Nobody waits for an answer; a failure leaves the commits to the next
            // durable one.
            let _ = self.now();
        }
    }
}

/// The chunks of [`apply_in_chunks`], each committed deferred.
async fn apply_deferred(
    app: &App,
    elements: &[&[u8]],
    mut read: impl FnMut(usize, &Value) -> Result<crate::store::RemoteRecord, Refusal>,
    rejected: &mut Array,
) -> Result<(crate::store::ApplyOutcome, u64, Option<(u64, u64)>), ApiError> {
    let mut total = crate::store::ApplyOutcome::default();
    let seq_before = app.instance().store().borrow().last_seq();
    let mut seq_after = seq_before;
    let mut interleaved = false;
    let mut held_count = 0;
    let mut slices = Slices::start();
    let mut start = 0;
    let mut chunks = 0;
    while start < elements.len() {
        let end = (start + APPLY_CHUNK).min(elements.len());
        let mut records = Vec::with_capacity(end - start);
        let mut held = Vec::new();
        for (index, element) in elements.iter().enumerate().take(end).skip(start) {
            slices.pause_if_due().await;
            match parse_piece(element) {
                None => rejected.push(rejection(index, &Value::Null, "is not valid JSON")),
                Some(value) => match read(index, &value) {
                    Ok(record) => records.push(record),
                    Err(Refusal::Refused(reason)) => {
                        rejected.push(rejection(index, &value, &reason))
                    }
                    Err(Refusal::Held(record)) => held.push(*record),
                },
            }
        }
        start = end;
        // No `.await` from here to the apply: a write seen now is one that came
        // between our chunks.
        interleaved |= app.instance().store().borrow().last_seq() != seq_after;
        let outcome =
            app.instance()
                .syncer()
                .apply_committing(&records, None, &held, Commit::Deferred)?;
        held_count += held.len() as u64;
        seq_after = app.instance().store().borrow().last_seq();
        total.applied += outcome.applied;
        total.unchanged += outcome.unchanged;
        total.stale += outcome.stale;
        total.conflicts += outcome.conflicts;
        total.rejected.extend(outcome.rejected);
        slices.pause().await;
        chunks += 1;
        if chunks % DURABLE_EVERY_CHUNKS == 0 && start < elements.len() {
            app.instance().store().borrow_mut().make_durable()?;
            slices.pause().await;
        }
    }
    for (id, reason) in &total.rejected {
        rejected.push(super::routes::object([
            ("id", text(id)),
            ("error", text(reason)),
        ]));
    }
    Ok((
        total,
        held_count,
        (!interleaved).then_some((seq_before, seq_after)),
    ))
}

/// `split_object` with a pause after each of its two passes over the body: together
/// they took 16–45 ms for a 4 MiB push, one block on the server's one thread, and a
/// request that waited through them then waited for the first chunk too.
async fn split_pausing<'a>(
    body: &'a [u8],
    array_field: &str,
    what: &str,
) -> Result<SplitObject<'a>, ApiError> {
    check_text(body, what)?;
    Slices::start().pause().await;
    let split = split_checked(body, array_field, what)?;
    Slices::start().pause().await;
    Ok(split)
}

/// Cuts a long piece of work on the server's one thread into slices of about
/// [`SLICE`], with a pause between them that lets the other tasks *and* the reactor run.
///
/// `yield_now` is not enough: it only puts the task at the back of the executor's
/// queue, and the executor asks the reactor for new I/O only every 200 task runs
/// (async-executor's batch), so a handler yielding that way kept new requests unread
/// for 200 of its slices (issue 10: a legit request waited 51–130 ms during a push).
/// A timer is due only once the reactor has run, which reads every ready socket.
struct Slices {
    started: std::time::Instant,
}

/// How long a pause between slices sleeps when nothing else is waiting to run.
const PAUSE: std::time::Duration = std::time::Duration::from_micros(100);

impl Slices {
    fn start() -> Slices {
        Slices {
            started: std::time::Instant::now(),
        }
    }

    async fn pause_if_due(&mut self) {
        if self.started.elapsed() >= SLICE {
            self.pause().await;
        }
    }

    async fn pause(&mut self) {
        smol::Timer::after(PAUSE).await;
        self.started = std::time::Instant::now();
    }
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
pub(crate) fn discover(app: &App, request: &Request) -> Result<Value, ApiError> {
    authorize(app, request, Access::Info)?;
    let peers = app.instance().syncer().peers()?;
    let url_of = |peer: &crate::sync::PeerState| peer.url.clone();
    Ok(PeerDirectory {
        instance_id: app.instance().instance_id_hex(),
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
pub(crate) fn offer(app: &App, request: &Request) -> Result<Value, ApiError> {
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
    // A damaged record is left out of what we hold, so an offer of it is wanted.
    let ids: Vec<&str> = offers.iter().map(|(id, _)| id.as_str()).collect();
    let local: std::collections::BTreeMap<String, Version> = app
        .instance()
        .store()
        .borrow()
        .records(&ids)?
        .into_iter()
        .map(|record| (record.id, record.meta.version))
        .collect();
    let want: Array = wanted_ids(&offers, |id| local.get(id).copied())
        .into_iter()
        .map(text)
        .collect();
    Ok(super::routes::object([("want", Value::Array(want))]))
}

/// `POST /federation/v2/push {records: [...]}`: verify and apply; invalid records are
/// listed in the answer and the valid ones still apply.
pub(crate) async fn push(app: &App, request: &Request) -> Result<Value, ApiError> {
    let caller = authorize(app, request, Access::Push)?;
    let delivered_by_core = caller.tier == Tier::Core;
    let split = split_pausing(&request.body, "records", "push").await?;
    let Some(elements) = &split.elements else {
        // Missing or not an array: the usual error naming the field.
        Fields::new(&split.fields, "push").array("records")?;
        return Err(ApiError::bad_request("push: `records` is missing"));
    };
    let mut rejected = Array::new();
    let peer = format!(
        "push from {}",
        caller
            .instance_id
            .map_or_else(|| "an unsigned peer".to_owned(), |id| id.short())
    );
    let (outcome, held, sequences) = apply_in_chunks(
        app,
        elements,
        |index, value| {
            app.instance().syncer().verified_record(
                value,
                &format!("record {}", index + 1),
                &peer,
                delivered_by_core,
            )
        },
        &mut rejected,
    )
    .await?;
    let mut answer = Object::new();
    answer.insert("applied".into(), number(outcome.applied));
    answer.insert("unchanged".into(), number(outcome.unchanged));
    answer.insert("stale".into(), number(outcome.stale));
    answer.insert("conflicts".into(), number(outcome.conflicts));
    answer.insert("rejected".into(), Value::Array(rejected));
    answer.insert("held".into(), number(held));
    // The sequences this push took in our change log: a pusher whose pull checkpoint
    // is `seq_before` may move it to `seq_after`, since all between is its own records.
    // When another write came between two chunks that is not so, and they are left
    // out: the pusher then pulls its own records back, which costs bytes, not data.
    if let Some((seq_before, seq_after)) = sequences {
        answer.insert("seq_before".into(), number(seq_before));
        answer.insert("seq_after".into(), number(seq_after));
    }
    Ok(Value::Object(answer))
}
