//! The delta-sync endpoints peers call: the changes feed with long-poll and type
//! filter, set reconciliation rounds, and fetching records by version digest. The
//! decisions live in `sync::reconcile`; this file reads requests and writes answers.
//!
//! # Implementation
//!
//! A long-poll (`wait=SECONDS`) holds no thread and no store borrow: the handler reads
//! a page, and if it is empty takes a listener from the store's change event, lets go
//! of the store and awaits the listener, the deadline or shutdown, whichever comes
//! first, on the one application thread like every other request. A long-poll is
//! parked (`Request::parking`) from its start until its connection's next request: it
//! counts against the server's long-poll caps rather than its request connection caps.
//! Pages are read through `shared_pages`, so the long-polls one commit wakes at one
//! position send one page.

use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_lite::future;
use miniserde::json::{self, Array, Object, Value};
use smol::Timer;

use super::app::App;
use super::auth::authorize;
use super::routes::ApiError;
use super::shared_pages::{PageForm, PageRequest, SharedPage};
use crate::config::{MAX_PAGE_BYTES, MAX_RECORD_WIRE_BYTES, SYNC_BATCH_BYTES, SYNC_BATCH_RECORDS};
use crate::http::{Body, Request, Response, SharedBody, accepts_gzip, gzip_text_and_raw};
use crate::model::InstanceId;
use crate::protocol::{
    COMPACT_PAGE_TYPE, ChangesPage, FetchAnswer, RECONCILE_CONTENT_TYPE, ReconcileAnswer,
    ReconcileRequest, compact_page, record_to_wire, types_from_query,
};
use crate::store::{ChangePage, Record, TypeFilter};
use crate::sync::reconcile::ItemDigest;
use crate::trust::Access;

/// Records read from the store at a time while filling a fetch answer.
const FETCH_READ_RECORDS: usize = 64;

/// The longest a changes request may be held open. Below the client's default request
/// timeout (30 s), so a held request never looks like a dead peer.
pub(crate) const MAX_WAIT: Duration = Duration::from_secs(25);

/// Reads a whole-number query parameter, capped at `max`.
fn param(request: &Request, name: &str, default: u64, max: u64) -> Result<u64, ApiError> {
    match request.query_param(name) {
        None => Ok(default),
        Some(text) => text
            .parse::<u64>()
            .map(|value| value.min(max))
            .map_err(|_| ApiError::bad_request(format!("{name} {text:?} is not a whole number"))),
    }
}

fn filter_of(request: &Request) -> TypeFilter {
    TypeFilter::only(&types_from_query(request.query_param("types").as_deref()))
}

/// `GET /federation/v2/changes?after=S[&limit=N][&max_bytes=B][&types=T,U][&wait=SECONDS]`
/// → `{instanceId, epoch, records, last_seq, more}`. With `wait`, an empty page is held
/// until a change arrives or the wait (at most [`MAX_WAIT`]) is over. Requests that ask
/// for the same page in the same form while the store is unchanged get the same bytes
/// ([`super::shared_pages`]).
pub(crate) async fn changes(app: &Rc<App>, request: &Request) -> Result<Response, ApiError> {
    changes_as(app, request, PageForm::Json).await
}

/// `changes` in the compact form (`protocol::page`), for a caller that asked for it by
/// `accept`: the signatures as raw bytes, each author's key once.
pub(crate) async fn compact_changes(
    app: &Rc<App>,
    request: &Request,
) -> Result<Response, ApiError> {
    let form = if request.header("accept-encoding").is_some_and(accepts_gzip) {
        PageForm::CompactGzip
    } else {
        PageForm::Compact
    };
    changes_as(app, request, form).await
}

async fn changes_as(
    app: &Rc<App>,
    request: &Request,
    form: PageForm,
) -> Result<Response, ApiError> {
    authorize(app, request, Access::Pull)?;
    let asked = PageRequest {
        after: param(request, "after", 0, u64::MAX)?,
        limit: param(request, "limit", SYNC_BATCH_RECORDS as u64, 5000)?.max(1) as usize,
        max_bytes: param(
            request,
            "max_bytes",
            SYNC_BATCH_BYTES as u64,
            MAX_PAGE_BYTES as u64,
        )? as usize,
        filter: filter_of(request),
        form,
    };
    let wait = Duration::from_secs(param(request, "wait", 0, MAX_WAIT.as_secs())?);
    let deadline = Instant::now() + wait;
    if !wait.is_zero() {
        // From now until its next request, the connection counts against the server's
        // long-poll caps, not its request connections, so a hub's watching spokes leave
        // those to requests: while this request waits, and also while it is answered at
        // once (a spoke catching up) and its client reads the answer. A watcher counted
        // as a request between two long-polls would be shed by the request caps when
        // the 1,000 of them are woken together (issue 13).
        request.parking.park();
    }
    loop {
        // The listener is taken before the read, so a change committed between the
        // read and the wait still wakes us.
        let changed = app.instance().store().borrow().changed().listen();
        let page = shared_page(app, &asked)?;
        if !page.at_end || Instant::now() >= deadline || app.shutdown_requested() {
            return Ok(page_response(page, form));
        }
        let shutdown = app.shutdown_listener();
        let woken = future::or(
            async {
                changed.await;
                true
            },
            future::or(
                async {
                    shutdown.await;
                    false
                },
                async {
                    Timer::at(deadline).await;
                    false
                },
            ),
        )
        .await;
        if !woken {
            return Ok(page_response(page, form));
        }
    }
}

/// The page `asked` for: the one another request read at the store's present state, or
/// one read and encoded now and kept for the requests after.
fn shared_page(app: &App, asked: &PageRequest) -> Result<SharedPage, ApiError> {
    let writes = app.instance().store().borrow().writes();
    if let Some(page) = app.shared_pages().get(writes, asked) {
        return Ok(page);
    }
    let page = app.instance().store().borrow().changes_since_filtered(
        asked.after,
        asked.limit,
        asked.max_bytes,
        &asked.filter,
    )?;
    let at_end = page.records.is_empty() && !page.more && page.last_seq == asked.after;
    let object = page_json(app, &page);
    let bytes = match asked.form {
        PageForm::Json => json::to_string(&Value::Object(object)).into_bytes(),
        PageForm::Compact | PageForm::CompactGzip => {
            let page = compact_page(object).map_err(|error| ApiError {
                status: 500,
                message: format!("a stored record cannot be written compactly: {error}"),
            })?;
            if asked.form == PageForm::CompactGzip {
                // Compressed here rather than by the server, so the signatures (random
                // bytes) are stored rather than deflated: about 6 bytes a record less
                // than in blocks shared with the JSON, and no CPU time spent on them.
                gzip_text_and_raw(&page.head, &page.signatures)
            } else {
                page.to_bytes()
            }
        }
    };
    let shared = SharedPage {
        at_end,
        body: SharedBody::new(bytes),
    };
    app.shared_pages()
        .keep(writes, asked.clone(), shared.clone());
    Ok(shared)
}

fn page_response(page: SharedPage, form: PageForm) -> Response {
    let response = Response::new(200, Body::Shared(page.body));
    match form {
        PageForm::Json => response.with_header("content-type", "application/json"),
        PageForm::Compact => response.with_header("content-type", COMPACT_PAGE_TYPE),
        PageForm::CompactGzip => response
            .with_header("content-type", COMPACT_PAGE_TYPE)
            .with_header("content-encoding", "gzip"),
    }
}

fn page_json(app: &App, page: &ChangePage) -> Object {
    ChangesPage {
        instance_id: app.instance().instance_id_hex(),
        epoch: app.instance().epoch_hex(),
        records: records_to_wire(app, &page.records),
        last_seq: page.last_seq,
        more: page.more,
    }
    .into_object()
}

/// Records for the wire, each with its author's key so receivers can check it. A
/// record over [`MAX_RECORD_WIRE_BYTES`] (stored before that limit existed) is left
/// out: no peer would accept it, and it could push the page past what a client reads.
fn records_to_wire(app: &App, records: &[Record]) -> Array {
    let mut keys: std::collections::BTreeMap<InstanceId, Option<String>> = Default::default();
    records
        .iter()
        .filter(|record| crate::sync::wire_size(record) <= MAX_RECORD_WIRE_BYTES)
        .map(|record| {
            let origin = record.meta.version.origin;
            let key = keys
                .entry(origin)
                .or_insert_with(|| app.instance().syncer().author_key_for(&origin));
            record_to_wire(record, key.as_deref())
        })
        .collect()
}

/// `POST /federation/v2/reconcile[?types=T,U]`, body: a negentropy message
/// ([`ReconcileRequest`]) → the answer ([`ReconcileAnswer`]), with our instance id,
/// store epoch and change sequence in its headers.
pub(crate) fn reconcile(app: &App, request: &Request) -> Response {
    let answer = || -> Result<Response, ApiError> {
        authorize(app, request, Access::Pull)?;
        let asked = ReconcileRequest::read(request.query_param("types").as_deref(), &request.body);
        let set = app
            .instance()
            .syncer()
            .reconcile_set(&TypeFilter::only(&asked.types))
            .map_err(|error| ApiError {
                status: 500,
                message: error.to_string(),
            })?;
        let answer = ReconcileAnswer {
            instance_id: app.instance().instance_id_hex(),
            epoch: app.instance().epoch_hex(),
            last_seq: set.last_seq,
            message: set
                .answer(asked.message)
                .map_err(|error| ApiError::bad_request(error.to_string()))?,
        };
        let headers = answer.headers();
        let response = Response::new(200, Body::Full(answer.message))
            .with_header("content-type", RECONCILE_CONTENT_TYPE);
        Ok(headers.iter().fold(response, |response, (name, value)| {
            response.with_header(name, value)
        }))
    };
    answer().unwrap_or_else(|error| Response::error(error.status, &error.message))
}

/// `POST /federation/v2/fetch[?types=T,U][&limit=N][&max_bytes=B][&rank=1]`, body:
/// 32-byte version digests one after another → `{records, more, missing, ranked}`: the
/// records behind them, highest `priority` first and then by id, at most `limit` and
/// about `max_bytes`; `ranked` (with `rank=1`) the indices of all the digests in that
/// order. `more` says a limit cut the list;
/// `missing` counts digests of versions we no longer hold (replaced since).
pub(crate) fn fetch(app: &App, request: &Request) -> Result<Value, ApiError> {
    authorize(app, request, Access::Pull)?;
    if request.body.len() % 32 != 0 {
        return Err(ApiError::bad_request(format!(
            "fetch body of {} bytes is not a list of 32-byte digests",
            request.body.len()
        )));
    }
    let max_bytes = param(
        request,
        "max_bytes",
        SYNC_BATCH_BYTES as u64,
        MAX_PAGE_BYTES as u64,
    )? as usize;
    let limit = param(request, "limit", SYNC_BATCH_RECORDS as u64, 5000)?.max(1) as usize;
    let set = app
        .instance()
        .syncer()
        .reconcile_set(&filter_of(request))
        .map_err(|error| ApiError {
            status: 500,
            message: error.to_string(),
        })?;
    // The asked-for records are ranked by their priorities alone, read one record at a
    // time; only the records of this answer are then read whole (issue 13: 50k asked
    // for used to mean 50k records in memory).
    let mut ids = Vec::new();
    let mut digest_index = Vec::new();
    let mut missing = 0u64;
    for (index, chunk) in request.body.chunks_exact(32).enumerate() {
        let digest: ItemDigest = chunk.try_into().expect("32-byte chunk");
        match set.entry(&digest) {
            Some(entry) => {
                ids.push(entry.id.as_str());
                digest_index.push(index as u64);
            }
            None => missing += 1,
        }
    }
    let priorities = app.instance().store().borrow().priorities(&ids)?;
    let order = crate::sync::rank_by_priority(&ids, &priorities);
    // With `rank=1` (a client's first request, listing everything it lacks) the answer
    // also gives that order for all the digests, so the client asks for them in it and
    // sends only a batch of digests per request after.
    let ranked = if request.query_param("rank").as_deref() == Some("1") {
        order
            .iter()
            .map(|position| digest_index[*position])
            .collect()
    } else {
        Vec::new()
    };
    let mut bytes = 0usize;
    let mut more = false;
    let mut kept = Vec::new();
    'pages: for positions in order.chunks(FETCH_READ_RECORDS) {
        let chunk: Vec<&str> = positions.iter().map(|position| ids[*position]).collect();
        for record in app.instance().store().borrow().records(&chunk)? {
            if kept.len() >= limit || (bytes >= max_bytes && !kept.is_empty()) {
                more = true;
                break 'pages;
            }
            bytes += crate::sync::wire_size(&record);
            kept.push(record);
        }
    }
    let answer = FetchAnswer {
        records: records_to_wire(app, &kept),
        more,
        missing,
        ranked,
    };
    Ok(Value::Object(answer.into_object()))
}
