//! The control API (`/api/...`, loopback or admin token only): our federation routes
//! under `/api/v2/federation/*` (ARK's own, `/api/federation/*`, are in `ark_api`), and
//! the lattice and trust routes the CLI (and scripts) use while this server holds the
//! store.
//!
//! The operations are the service layer's (`crate::service`), the very ones the CLI runs
//! in-process when no server is running; this module reads requests into their
//! arguments and renders their typed answers as JSON.

use std::rc::Rc;

use miniserde::json::{Object, Value};

use super::app::App;
use super::routes::{ApiError, number, object};
use crate::http::{Request, percent_decode};
use crate::model::unix_millis_now;
use crate::protocol::{Fields, Route, parse_object};
use crate::service::{self, AddPeer, DiscoverOptions, HeldRelease, OpError};
use crate::store::Query;

impl From<OpError> for ApiError {
    fn from(error: OpError) -> ApiError {
        ApiError {
            status: error.status(),
            message: error.to_string(),
        }
    }
}

/// Answers a control-API request: the route table names the route, ARK's are answered
/// by `ark_api`, ours here.
pub(crate) async fn handle(app: &Rc<App>, request: &Request) -> Result<Value, ApiError> {
    let Some((route, parameter)) = Route::find(&request.method, &request.path) else {
        return Err(ApiError::no_route());
    };
    if let Some(answer) = super::ark_api::handle(app, request, route, parameter).await {
        return answer;
    }
    match route {
        Route::Shutdown => {
            app.request_shutdown();
            Ok(object([
                ("success", Value::Bool(true)),
                ("stopping", Value::Bool(true)),
            ]))
        }
        Route::LatticeStats
        | Route::QueryNodes
        | Route::WriteNodes
        | Route::GetNode
        | Route::GetRecord
        | Route::PutNode
        | Route::DeleteNode
        | Route::Gc
        | Route::Export
        | Route::Verify => lattice_route(app, request, route, parameter),
        Route::TrustedKeys | Route::TrustKey | Route::AcceptKey | Route::RemoveKey => {
            trust_route(app, request, route, parameter).await
        }
        _ => federation_route(app, request, route, parameter).await,
    }
}

/// The request body as an object; an empty body is an empty object.
fn body(request: &Request) -> Result<Object, ApiError> {
    if request.body.iter().all(u8::is_ascii_whitespace) {
        Ok(Object::new())
    } else {
        Ok(parse_object(&request.body, "request body")?)
    }
}

/// `/api/v2/federation/*`, and ARK's conflict list (ours: ARK has none).
async fn federation_route(
    app: &App,
    request: &Request,
    route: Route,
    parameter: Option<&str>,
) -> Result<Value, ApiError> {
    let instance = app.instance();
    match route {
        Route::Status => Ok(service::status(instance)?.to_json()),
        Route::Start | Route::Stop => {
            let enabled = route == Route::Start;
            app.instance().set_federation_enabled(enabled);
            Ok(object([
                ("success", Value::Bool(true)),
                ("enabled", Value::Bool(enabled)),
            ]))
        }
        Route::Peers => Ok(service::list_peers(instance)?.to_json()),
        Route::AddPeer => {
            let body = body(request)?;
            let fields = Fields::new(&body, "request body");
            let types: Vec<String> = fields
                .opt_array("types")?
                .unwrap_or_default()
                .iter()
                .filter_map(|name| match name {
                    Value::String(name) => Some(name.clone()),
                    _ => None,
                })
                .collect();
            let add = AddPeer {
                url: fields.str("peerUrl")?,
                pubkey: fields.opt_str("pubkey")?,
                tier: fields.opt_str("tier")?,
                types: &types,
            };
            Ok(service::add_peer(instance, add).await?.to_json())
        }
        Route::RemovePeer => {
            let encoded = parameter.unwrap_or_default();
            Ok(service::remove_peer(instance, &percent_decode(encoded))?.to_json())
        }
        Route::SyncNow => {
            let body = body(request)?;
            let peer = Fields::new(&body, "request body").opt_str("peerUrl")?;
            Ok(service::sync(instance, peer).await?.to_json())
        }
        Route::DiscoverPeers => {
            let options = discover_options(&body(request)?)?;
            Ok(service::discover(instance, &options).await?.to_json())
        }
        Route::AutoSyncStart => {
            let body = body(request)?;
            let interval = Fields::new(&body, "request body").opt_u64("interval")?;
            Ok(service::set_auto_sync(instance, true, interval)?.to_json())
        }
        Route::AutoSyncStop => Ok(service::set_auto_sync(instance, false, None)?.to_json()),
        Route::Conflicts | Route::ArkConflicts => conflicts(app, request),
        _ => Err(ApiError::no_route()),
    }
}

/// `{add?, scan?, subnet?, scanPort?}` of `POST /api/v2/federation/discover`.
fn discover_options(body: &Object) -> Result<DiscoverOptions, ApiError> {
    let fields = Fields::new(body, "request body");
    Ok(DiscoverOptions {
        add: fields.opt_bool("add")?.unwrap_or(false),
        scan: fields.opt_bool("scan")?.unwrap_or(false),
        subnet: fields.opt_str("subnet")?.map(str::to_owned),
        scan_port: fields
            .opt_u64("scanPort")?
            .map(|port| {
                u16::try_from(port).map_err(|_| {
                    ApiError::bad_request(format!("scanPort {port} is not a port number"))
                })
            })
            .transpose()?,
    })
}

/// `/api/lattice/*`: the store for scripts.
fn lattice_route(
    app: &App,
    request: &Request,
    route: Route,
    parameter: Option<&str>,
) -> Result<Value, ApiError> {
    let id = percent_decode(parameter.unwrap_or_default());
    match route {
        Route::LatticeStats => Ok(service::stats(
            &app.instance().store().borrow(),
            app.instance().config(),
        )?
        .to_json()),
        Route::QueryNodes => list_nodes(app, request),
        Route::WriteNodes => write_nodes(app, &body(request)?),
        Route::GetNode => match service::live_node(&app.instance().store().borrow(), &id)? {
            Some(node) => Ok(node.to_json()),
            None => Err(ApiError::not_found(format!("node {id:?} not found"))),
        },
        Route::GetRecord => {
            Ok(service::get_record(&app.instance().store().borrow(), &id)?.to_json())
        }
        Route::PutNode => put_node(app, request, &id),
        Route::DeleteNode => {
            Ok(service::delete_node(&mut app.instance().store().borrow_mut(), &id)?.to_json())
        }
        Route::Gc => gc(app, &body(request)?),
        Route::Export => export_page(app, request),
        Route::Verify => verify(app, request),
        _ => Err(ApiError::no_route()),
    }
}

/// `GET /api/lattice/nodes?type=&language=&category=&capability=&search=&after=&limit=`;
/// `limit` defaults to 100, and 0 means every match.
fn list_nodes(app: &App, request: &Request) -> Result<Value, ApiError> {
    let params = query_params(
        request,
        &[
            "type",
            "language",
            "category",
            "capability",
            "search",
            "after",
            "limit",
        ],
    )?;
    let limit = count_limit(&params, 100)?;
    let text = |name| params.get(name).cloned();
    let query = Query {
        node_type: text("type"),
        language: text("language"),
        category: text("category"),
        capability: text("capability"),
        search: text("search"),
        after: text("after"),
        limit,
    };
    Ok(service::find_nodes(&app.instance().store().borrow(), &query)?.to_json())
}

/// `GET /api/lattice/conflicts?limit=`; `limit` defaults to 50, and 0 means all.
fn conflicts(app: &App, request: &Request) -> Result<Value, ApiError> {
    let params = query_params(request, &["limit"])?;
    let limit = count_limit(&params, 50)?;
    Ok(service::conflicts(&app.instance().store().borrow(), limit)?.to_json())
}

/// A listing's `limit` parameter: `default` when absent, `None` (no limit) for 0.
fn count_limit(
    params: &std::collections::BTreeMap<&str, String>,
    default: usize,
) -> Result<Option<usize>, ApiError> {
    let limit = match params.get("limit") {
        None => default,
        Some(text) => text.parse::<usize>().map_err(|_| {
            ApiError::bad_request(format!(
                "query parameter \"limit\" {text:?} is not a whole number (0 for all)"
            ))
        })?,
    };
    Ok((limit > 0).then_some(limit))
}

/// `PUT /api/lattice/nodes/{id}` with the node → `{id, outcome}`: `add` on the store
/// this server holds. The node names the id of the path.
fn put_node(app: &App, request: &Request, id: &str) -> Result<Value, ApiError> {
    let node = crate::model::Node::from_json(&Value::Object(body(request)?))
        .map_err(|error| ApiError::bad_request(format!("request body: {error}")))?;
    if node.id != id {
        return Err(ApiError::bad_request(format!(
            "request body: `id` {:?} is not the path's {id:?}",
            node.id
        )));
    }
    Ok(service::add_node(&mut app.instance().store().borrow_mut(), node)?.to_json())
}

/// `POST /api/lattice/nodes {nodes: [node, ...]}` → `{created, updated, unchanged}`:
/// writes the nodes as local changes in one transaction. The CLI's `import` sends a
/// large file here in requests of about 1 MiB. Every node is checked as on import; one
/// that fails is refused with the request, naming its index.
fn write_nodes(app: &App, body: &miniserde::json::Object) -> Result<Value, ApiError> {
    let fields = Fields::new(body, "request body");
    let nodes = fields
        .array("nodes")?
        .iter()
        .enumerate()
        .map(|(index, value)| {
            crate::model::Node::from_json(value)
                .map_err(|error| ApiError::bad_request(format!("nodes[{index}]: {error}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let summary = app
        .instance()
        .store()
        .borrow_mut()
        .write_nodes(&nodes, unix_millis_now())?;
    Ok(object([
        ("created", number(summary.created)),
        ("updated", number(summary.updated)),
        ("unchanged", number(summary.unchanged)),
    ]))
}

/// `POST /api/lattice/gc {older_than_days}` → `{purged_tombstones, older_than_days}`:
/// `gc` on the store this server holds.
fn gc(app: &App, body: &Object) -> Result<Value, ApiError> {
    let days = Fields::new(body, "request body").u64("older_than_days")?;
    Ok(service::purge_tombstones(&mut app.instance().store().borrow_mut(), days)?.to_json())
}

/// `/api/trust/*`: the trust store, as `trust list`, `pending`, `add`, `accept` and
/// `remove` change it. The keys noted from signed callers moments ago are written first,
/// so a list shows them; a change applies at once the held records it lets through.
async fn trust_route(
    app: &App,
    request: &Request,
    route: Route,
    parameter: Option<&str>,
) -> Result<Value, ApiError> {
    app.flush_pending_callers();
    let reference = percent_decode(parameter.unwrap_or_default());
    let mut change = match route {
        Route::TrustedKeys => {
            let pending = request.query_param("pending").as_deref() == Some("true");
            return Ok(service::trusted_keys(&app.instance().store().borrow(), pending)?.to_json());
        }
        Route::TrustKey => {
            let body = body(request)?;
            let fields = Fields::new(&body, "request body");
            service::trust_key(
                &mut app.instance().store().borrow_mut(),
                fields.str("public_key")?,
                fields.opt_str("tier")?,
                fields.opt_str("name")?.map(str::to_owned),
            )?
        }
        Route::AcceptKey => {
            let body = body(request)?;
            let tier = Fields::new(&body, "request body").opt_str("tier")?;
            service::accept_key(&mut app.instance().store().borrow_mut(), &reference, tier)?
        }
        Route::RemoveKey => {
            service::remove_key(&mut app.instance().store().borrow_mut(), &reference)?
        }
        _ => return Err(ApiError::no_route()),
    };
    change.held = match app.instance().syncer().release_held().await {
        Ok(applied) => HeldRelease::Applied(applied),
        Err(error) => HeldRelease::Deferred(error.to_string()),
    };
    Ok(change.to_json())
}

/// The query parameters of a request, each allowed name at most once; an unknown or
/// repeated name is refused, naming it, so a caller who expected a parameter to do
/// something learns that it does not.
fn query_params<'a>(
    request: &Request,
    allowed: &[&'a str],
) -> Result<std::collections::BTreeMap<&'a str, String>, ApiError> {
    let mut params = std::collections::BTreeMap::new();
    for pair in request.query.split('&').filter(|pair| !pair.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = percent_decode(name);
        let Some(known) = allowed.iter().find(|known| **known == name) else {
            return Err(ApiError::bad_request(format!(
                "unknown query parameter {name:?}; this route takes {}",
                allowed.join(", ")
            )));
        };
        if params.insert(*known, percent_decode(value)).is_some() {
            return Err(ApiError::bad_request(format!(
                "query parameter {name:?} is given more than once"
            )));
        }
    }
    Ok(params)
}

/// `GET /api/lattice/export?type=&after=&limit=` → `{nodes, next, left_out}`: one page
/// of `export`, the nodes after `after` in id order, at most `limit` (1 to 10,000,
/// default 1,000) and about 1 MiB of them; `next` is the `after` of the next page,
/// `null` at the end.
fn export_page(app: &App, request: &Request) -> Result<Value, ApiError> {
    let params = query_params(request, &["type", "after", "limit"])?;
    let node_type = params.get("type").map(String::as_str);
    if node_type == Some("") {
        return Err(ApiError::bad_request(
            "query parameter \"type\" is empty; leave it out to export every type",
        ));
    }
    let limit = match params.get("limit") {
        None => service::EXPORT_PAGE_DEFAULT_NODES,
        Some(text) => match text.parse::<usize>() {
            Ok(limit @ 1..=service::EXPORT_PAGE_MAX_NODES) => limit,
            _ => {
                return Err(ApiError::bad_request(format!(
                    "query parameter \"limit\" {text:?} is not a number from 1 to {}",
                    service::EXPORT_PAGE_MAX_NODES
                )));
            }
        },
    };
    let after = params.get("after").map(String::as_str);
    let page = service::export_page(&app.instance().store().borrow(), node_type, after, limit)?;
    Ok(page.to_json())
}

/// `GET /api/lattice/verify[?skip_page_check=true]` → what `verify --json` prints: the
/// store this server holds checked page by page (unless skipped) and record by record.
fn verify(app: &App, request: &Request) -> Result<Value, ApiError> {
    let params = query_params(request, &["skip_page_check"])?;
    let skip_page_check = match params.get("skip_page_check").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "query parameter \"skip_page_check\" {other:?} is not true or false"
            )));
        }
    };
    let report = service::verify_store(
        &mut app.instance().store().borrow_mut(),
        app.instance().config(),
        skip_page_check,
    )?;
    Ok(report.to_json())
}
