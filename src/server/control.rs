//! The control API (`/api/...`, loopback or admin token only): our federation routes
//! under `/api/v2/federation/*` (ARK's own, `/api/federation/*`, are in `ark_api`, and
//! run these operations), lattice routes for scripts, and `/api/cli`, which runs a
//! lattice command for the CLI while this server holds the store.
//!
//! The federation operations are plain functions of [`App`], so the CLI runs the very
//! same code in-process when no server is running.

use std::collections::BTreeMap;
use std::rc::Rc;

use miniserde::json::{Array, Value};

use super::app::App;
use super::events::EventKind;
use super::routes::{ApiError, number, object, text};
use crate::commands::{Output, Session, run_lattice};
use crate::config::normalize_peer_url;
use crate::error::Error;
use crate::http::{Request, percent_decode};
use crate::model::{format_rfc3339, unix_millis_now};
use crate::protocol::{Fields, InstanceInfo, LatticeStatus, PeerDirectory, parse_object};
use crate::store::{Deletion, Query};
use crate::sync::trust_book;
use crate::trust::{PublicKey, Tier};

pub async fn handle(app: &Rc<App>, request: &Request) -> Result<Value, ApiError> {
    let path = request.path.trim_end_matches('/');
    if let Some(answer) = super::ark_api::handle(app, request, path).await {
        return answer;
    }
    // Our own routes, with the richer answers our CLI reads, are ARK's under `/api/v2/`.
    let raw_path = match request.path.strip_prefix("/api/v2/federation/") {
        Some(rest) => format!("/api/federation/{rest}"),
        None => request.path.clone(),
    };
    let path = raw_path.trim_end_matches('/');
    let body = || -> Result<miniserde::json::Object, ApiError> {
        if request.body.iter().all(u8::is_ascii_whitespace) {
            Ok(miniserde::json::Object::new())
        } else {
            Ok(parse_object(&request.body, "request body")?)
        }
    };
    match (request.method.as_str(), path) {
        ("GET", "/api/federation/status") => status(app),
        ("POST", "/api/federation/start") => {
            app.federation_enabled.set(true);
            // Wakes the auto-sync loop, which waits while federation is stopped.
            app.settings_changed.notify(usize::MAX);
            Ok(object([
                ("success", Value::Bool(true)),
                ("enabled", Value::Bool(true)),
            ]))
        }
        ("POST", "/api/federation/stop") => {
            app.federation_enabled.set(false);
            app.settings_changed.notify(usize::MAX);
            Ok(object([
                ("success", Value::Bool(true)),
                ("enabled", Value::Bool(false)),
            ]))
        }
        ("GET", "/api/federation/peers") => list_peers(app),
        ("POST", "/api/federation/peers/add") => {
            let body = body()?;
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
            add_peer(
                app,
                fields.str("peerUrl")?,
                fields.opt_str("pubkey")?,
                fields.opt_str("tier")?,
                &types,
            )
            .await
        }
        ("DELETE", path) if path.starts_with("/api/federation/peers/") => {
            let encoded = &raw_path["/api/federation/peers/".len()..];
            remove_peer(app, &percent_decode(encoded))
        }
        ("POST", "/api/federation/sync") => {
            let body = body()?;
            let peer = Fields::new(&body, "request body")
                .opt_str("peerUrl")?
                .map(str::to_owned);
            sync(app, peer.as_deref()).await
        }
        ("POST", "/api/federation/discover") => {
            let body = body()?;
            let fields = Fields::new(&body, "request body");
            let options = DiscoverOptions {
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
            };
            discover(app, &options).await
        }
        ("POST", "/api/federation/auto-sync/start") => {
            let body = body()?;
            let interval = Fields::new(&body, "request body").opt_u64("interval")?;
            set_auto_sync(app, true, interval)
        }
        ("POST", "/api/federation/auto-sync/stop") => set_auto_sync(app, false, None),
        ("GET", "/api/federation/conflicts") => conflicts(app, request),
        ("POST", "/api/server/shutdown") => {
            app.request_shutdown();
            Ok(object([
                ("success", Value::Bool(true)),
                ("stopping", Value::Bool(true)),
            ]))
        }
        ("POST", "/api/cli") => cli(app, request),
        ("GET", "/api/lattice/stats") => {
            Ok(crate::commands::stats_json(&app.store.borrow().stats()?))
        }
        ("GET", "/api/lattice/nodes") => {
            let limit = request
                .query_param("limit")
                .and_then(|limit| limit.parse().ok())
                .unwrap_or(100);
            let query = Query {
                node_type: request.query_param("type"),
                language: request.query_param("language"),
                category: request.query_param("category"),
                capability: request.query_param("capability"),
                search: request.query_param("search"),
                after: request.query_param("after"),
                limit: (limit > 0).then_some(limit),
            };
            let found = app.store.borrow().query(&query)?;
            let nodes: Array = found
                .iter()
                .map(|(node, meta)| crate::commands::node_with_meta(node, meta))
                .collect();
            Ok(object([
                ("count", number(nodes.len() as u64)),
                ("nodes", Value::Array(nodes)),
            ]))
        }
        ("POST", "/api/lattice/nodes") => write_nodes(app, &body()?),
        ("GET", path) if path.starts_with("/api/lattice/nodes/") => {
            let id = percent_decode(&request.path["/api/lattice/nodes/".len()..]);
            let record = app.store.borrow().get(&id)?;
            match record
                .as_ref()
                .and_then(|record| record.node().map(|node| (node, &record.meta)))
            {
                Some((node, meta)) => Ok(crate::commands::node_with_meta(node, meta)),
                None => Err(ApiError::not_found(format!("node {id:?} not found"))),
            }
        }
        ("DELETE", path) if path.starts_with("/api/lattice/nodes/") => {
            let id = percent_decode(&request.path["/api/lattice/nodes/".len()..]);
            let deletion = app.store.borrow_mut().delete(&id, unix_millis_now())?;
            match deletion {
                Deletion::Deleted | Deletion::AlreadyDeleted => Ok(object([
                    ("deleted", text(&id)),
                    (
                        "already_deleted",
                        Value::Bool(deletion == Deletion::AlreadyDeleted),
                    ),
                ])),
                Deletion::NotFound => Err(ApiError::not_found(format!("node {id:?} not found"))),
            }
        }
        _ => Err(ApiError::no_route()),
    }
}

/// `GET /api/v2/federation/status`.
pub fn status(app: &App) -> Result<Value, ApiError> {
    let held = app.syncer.held_counts()?;
    let newest_seen = app.store.borrow().clock_high_water().millis();
    let now = unix_millis_now();
    let clock_warning = (newest_seen > now + 60_000).then(|| {
        format!(
            "the local clock ({}) is behind versions already seen ({}); set the time (NTP) so new writes are not ordered by the counter alone",
            format_rfc3339(now),
            format_rfc3339(newest_seen)
        )
    });
    let Value::Object(peer_list) = list_peers(app)? else {
        unreachable!("the peer list is an object")
    };
    Ok(LatticeStatus {
        info: super::peer_api::instance_info(app)?,
        enabled: app.federation_enabled.get(),
        running: app.listen_port.get() != 0,
        started_at: app.started_at,
        bytes_sent: app.wire.bytes_sent(),
        bytes_received: app.wire.bytes_received(),
        peer_list,
        clock_warning,
        held: crate::sync::held::HoldReason::ALL
            .iter()
            .map(|reason| {
                let count = held.by_reason.get(reason).copied().unwrap_or(0);
                (reason.name().to_owned(), count)
            })
            .collect(),
        held_messages: held.lines(),
    }
    .to_json())
}

/// `GET /api/federation/peers`.
pub fn list_peers(app: &App) -> Result<Value, ApiError> {
    let peers: Array = app
        .syncer
        .peers()?
        .iter()
        .map(|peer| peer.to_json())
        .collect();
    Ok(object([
        ("count", number(peers.len() as u64)),
        ("peers", Value::Array(peers)),
    ]))
}

/// `POST /api/federation/peers/add {peerUrl, pubkey?, tier?}`: adds the peer and pins
/// its public key (fetched from its `/federation/info`, or given and then checked
/// against it) with the tier (default core). A peer that cannot be reached is added only
/// with `pubkey`; an ARK Node.js peer (no key) is added unpinned. Non-empty `types`
/// limits the sync with it to those node types.
pub async fn add_peer(
    app: &App,
    url: &str,
    pubkey: Option<&str>,
    tier: Option<&str>,
    types: &[String],
) -> Result<Value, ApiError> {
    let url = normalize_peer_url(url)
        .map_err(|reason| ApiError::bad_request(format!("peer URL: {reason}")))?;
    let tier = match tier {
        None => Tier::Core,
        Some(text) => text
            .parse::<Tier>()
            .map_err(|error| ApiError::bad_request(error.to_string()))?,
    };
    let given = match pubkey {
        None => None,
        Some(text) => Some(
            PublicKey::from_base64(text.trim())
                .map_err(|error| ApiError::bad_request(format!("--pubkey: {error}")))?,
        ),
    };
    let info_url = format!("{url}/federation/info");
    let reported = match app.syncer.client.send(app.syncer.get(&info_url)).await {
        Ok(response) if response.status == 200 => {
            let info =
                InstanceInfo::from_json(&parse_object(&response.body, &info_url)?, &info_url)?;
            if info.instance_id == app.instance_id_hex() {
                return Err(ApiError::bad_request(format!(
                    "{url} is this instance itself"
                )));
            }
            match info.lattice.public_key.as_deref() {
                Some(text) => Some(Some(PublicKey::from_base64(text).map_err(|error| {
                    ApiError::bad_request(format!("{url} reports a bad public key: {error}"))
                })?)),
                None => Some(None),
            }
        }
        Ok(response) if given.is_none() => {
            return Err(ApiError::bad_request(format!(
                "{info_url} answered {}; is it an ark-lattice or ARK node?",
                response.status
            )));
        }
        Ok(response) => {
            if app.config.verbose {
                eprintln!(
                    "ark:federation {info_url} answered {}; pinning the given key",
                    response.status
                );
            }
            None
        }
        Err(error) => {
            // Unreachable now (a Pi configured before it is on the network): with a key
            // given, that key is pinned; without, the one it shows at first contact.
            if app.config.verbose {
                eprintln!(
                    "ark:federation {url} unreachable ({error}); {}",
                    if given.is_some() {
                        "pinning the given key"
                    } else {
                        "its key will be pinned at first contact"
                    }
                );
            }
            None
        }
    };
    let pin_at_first_contact = given.is_none() && reported.is_none();
    let key = match (given, reported) {
        (Some(given), Some(Some(reported))) if given != reported => {
            return Err(ApiError::bad_request(format!(
                "{url} reports key {} but --pubkey is {}; not adding it",
                reported.fingerprint(),
                given.fingerprint()
            )));
        }
        (Some(given), _) => Some(given),
        (None, Some(reported)) => reported,
        (None, None) => None,
    };
    if let Some(key) = key {
        // One node is one peer, whatever name reaches it (localhost, 127.0.0.1, its
        // LAN address): a second URL for the same key would sync the same data twice.
        if let Some(existing) = app.syncer.peer_with_id(&url, &key.instance_id())? {
            return Ok(object([
                ("success", Value::Bool(true)),
                ("peer", text(&existing)),
                ("added", Value::Bool(false)),
                (
                    "message",
                    text(&format!(
                        "{url} is the same node (key {}) as peer {existing}; not added again",
                        key.fingerprint()
                    )),
                ),
                ("fingerprint", text(&key.fingerprint())),
                ("publicKey", text(&key.to_base64())),
            ]));
        }
        let mut store = app.store.borrow_mut();
        trust_book::trust(&mut store, key, tier, None, "peer")?;
    }
    let added = app.syncer.add_peer(
        &url,
        key.map(|key| key.instance_id()).as_ref(),
        pin_at_first_contact,
    )?;
    if added {
        app.events
            .emit(EventKind::PeerAdded, [("peer", text(&url))]);
    }
    if !types.is_empty() {
        app.syncer.set_peer_types(&url, types)?;
    }
    // Lets `--watch` start a long-poll to the new peer at once.
    app.settings_changed.notify(usize::MAX);
    Ok(object([
        ("success", Value::Bool(true)),
        ("peer", text(&url)),
        ("added", Value::Bool(added)),
        (
            "fingerprint",
            key.map_or(Value::Null, |key| text(&key.fingerprint())),
        ),
        (
            "publicKey",
            key.map_or(Value::Null, |key| text(&key.to_base64())),
        ),
        ("tier", key.map_or(Value::Null, |_| text(tier.name()))),
        ("keyPinnedAtFirstContact", Value::Bool(pin_at_first_contact)),
    ]))
}

/// `DELETE /api/federation/peers/{url}`.
pub fn remove_peer(app: &App, url: &str) -> Result<Value, ApiError> {
    let url = normalize_peer_url(url).unwrap_or_else(|_| url.to_owned());
    if !app.syncer.remove_peer(&url)? {
        return Err(ApiError::not_found(format!(
            "peer {url} is not in the peer list"
        )));
    }
    app.events
        .emit(EventKind::PeerRemoved, [("peer", text(&url))]);
    Ok(object([
        ("success", Value::Bool(true)),
        ("peer", text(&url)),
        ("removed", Value::Bool(true)),
    ]))
}

/// `POST /api/federation/sync {peerUrl?}`: syncs one peer, or every target of the mode
/// concurrently, and answers ARK's `{status: "synced", result: [...]}`.
pub async fn sync(app: &App, peer: Option<&str>) -> Result<Value, ApiError> {
    let targets = match peer {
        Some(peer) => {
            let url = normalize_peer_url(peer)
                .map_err(|reason| ApiError::bad_request(format!("peer URL: {reason}")))?;
            // A sync never adds a peer: a typo would otherwise stay as a failing peer.
            let is_hub = app.config.federation.hub_url.as_deref() == Some(url.as_str());
            if !is_hub && app.syncer.peer(&url)?.is_none() {
                return Err(ApiError::not_found(format!(
                    "{url} is not a peer; add it first with `ark-lattice federation add-peer {url}`"
                )));
            }
            vec![url]
        }
        None => app.sync_targets()?,
    };
    let results = super::join_all(targets.iter().map(|url| app.sync_peer(url))).await;
    let list: Array = results.iter().map(|result| result.to_json()).collect();
    Ok(object([
        ("status", text("synced")),
        ("result", Value::Array(list)),
    ]))
}

/// What `discover` looks at besides our peers' peer lists.
#[derive(Debug, Clone, Default)]
pub struct DiscoverOptions {
    /// Add what was found (only what can be synced with; see `lan::LanFindings`).
    pub add: bool,
    /// Also scan the local /24 (or `subnet`) for `/federation/info`.
    pub scan: bool,
    pub subnet: Option<String>,
    /// The port to scan; our federation port when not given.
    pub scan_port: Option<u16>,
}

/// `POST /api/federation/discover {add?, scan?, subnet?, scanPort?}`: asks every target
/// and the hub for the peers they know, lists the peers heard by LAN beacon and, with
/// `scan`, those answering on the local network; lists those we do not know yet under
/// `peers`, and adds them with `add`.
pub async fn discover(app: &App, options: &DiscoverOptions) -> Result<Value, ApiError> {
    let add = options.add;
    let known: Vec<String> = app
        .syncer
        .peers()?
        .into_iter()
        .map(|peer| peer.url)
        .collect();
    let own_id = app.instance_id_hex();
    let mut found: BTreeMap<String, Value> = BTreeMap::new();
    let mut errors = Array::new();
    // Each target's peer list, and the hub's registry of live spokes.
    let mut sources: Vec<(String, String)> = app
        .sync_targets()?
        .into_iter()
        .map(|target| (format!("{target}/federation/discover"), target))
        .collect();
    if let Some(hub) = &app.config.federation.hub_url {
        sources.push((format!("{hub}/discover"), hub.clone()));
    }
    for (url, target) in sources {
        let answer = match app.syncer.client.send(app.syncer.get(&url)).await {
            Ok(response) if response.status == 200 => parse_object(&response.body, &url),
            Ok(response) => Err(crate::protocol::WireError(format!(
                "{url} answered {}",
                response.status
            ))),
            Err(error) => Err(crate::protocol::WireError(error.to_string())),
        };
        let answer = match answer {
            Ok(answer) => answer,
            Err(error) => {
                errors.push(text(&error.0));
                continue;
            }
        };
        let Ok(directory) = PeerDirectory::from_json(&answer, &url) else {
            continue;
        };
        let entries = directory.peers.iter().map(|url| {
            let id = directory
                .details
                .iter()
                .find(|peer| peer.url == *url)
                .and_then(|peer| peer.instance_id.clone());
            (url.clone(), id)
        });
        for (peer_url, instance_id) in entries {
            let Ok(peer_url) = normalize_peer_url(&peer_url) else {
                continue;
            };
            if known.contains(&peer_url) || instance_id.as_deref() == Some(own_id.as_str()) {
                continue;
            }
            found.entry(peer_url.clone()).or_insert_with(|| {
                object([
                    ("url", text(&peer_url)),
                    (
                        "instanceId",
                        instance_id.as_deref().map_or(Value::Null, text),
                    ),
                    ("via", text(&target)),
                ])
            });
        }
    }
    let lan = super::lan::find(
        app,
        options.scan,
        options.subnet.as_deref(),
        options.scan_port,
    )
    .await?;
    let mut added = Array::new();
    if add {
        // Added as `add-peer` adds: the key is pinned, the one a signed beacon showed
        // (checked against the peer's info) or the one its info shows (issue 11: peers
        // added unpinned stayed failing on both sides).
        let own = crate::http::node_base_url(
            app.serves_https(),
            std::net::Ipv4Addr::LOCALHOST.into(),
            app.listen_port.get(),
        );
        let candidates = found
            .keys()
            .map(|url| (url.clone(), None))
            .chain(lan.addable.iter().cloned());
        for (url, key) in candidates {
            if url == own || known.contains(&url) {
                continue;
            }
            match add_peer(app, &url, key.as_deref(), None, &[]).await {
                Ok(Value::Object(answer)) => {
                    if matches!(answer.get("added"), Some(Value::Bool(true))) {
                        added.push(text(&url));
                    }
                }
                Ok(_) => {}
                Err(error) => errors.push(text(&format!("{url}: {}", error.message))),
            }
        }
    }
    let peers: Array = found.into_values().collect();
    Ok(object([
        ("count", number(peers.len() as u64)),
        ("peers", Value::Array(peers)),
        ("lan", Value::Array(lan.beacons.into_iter().collect())),
        ("scanned", Value::Array(lan.scanned.into_iter().collect())),
        ("scan", lan.scan_summary),
        (
            "discoveryEnabled",
            Value::Bool(app.config.discovery.enabled),
        ),
        ("listening", Value::Bool(app.listen_port.get() != 0)),
        ("added", Value::Bool(add)),
        ("addedPeers", Value::Array(added)),
        ("errors", Value::Array(errors)),
    ]))
}

pub fn set_auto_sync(app: &App, on: bool, interval: Option<u64>) -> Result<Value, ApiError> {
    if let Some(interval) = interval {
        if interval < 100 {
            return Err(ApiError::bad_request(format!(
                "interval of {interval} ms is below the 100 ms minimum"
            )));
        }
        app.sync_interval_ms.set(interval);
    }
    app.auto_sync.set(on);
    app.syncer
        .save_auto_sync_setting(on, app.sync_interval_ms.get())?;
    app.settings_changed.notify(usize::MAX);
    Ok(object([
        ("success", Value::Bool(true)),
        ("autoSync", Value::Bool(on)),
        ("syncInterval", number(app.sync_interval_ms.get())),
    ]))
}

fn conflicts(app: &App, request: &Request) -> Result<Value, ApiError> {
    let limit = request
        .query_param("limit")
        .and_then(|limit| limit.parse().ok())
        .unwrap_or(50);
    let store = app.store.borrow();
    Ok(crate::commands::conflicts_json(
        &store.conflicts((limit > 0).then_some(limit))?,
        store.conflict_count()?,
    ))
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
        .store
        .borrow_mut()
        .write_nodes(&nodes, unix_millis_now())?;
    Ok(object([
        ("created", number(summary.created)),
        ("updated", number(summary.updated)),
        ("unchanged", number(summary.unchanged)),
    ]))
}

/// `POST /api/cli {args: [...], files: {name: base64}}` → `{stdout, stderr, exit_code}`.
/// Runs a lattice command exactly as the CLI would, on the store this server holds.
/// Files named on the command line come in the request, read by the CLI beforehand.
fn cli(app: &App, request: &Request) -> Result<Value, ApiError> {
    // `trust list` and friends should see the keys noted moments ago.
    app.flush_pending_callers();
    let body = parse_object(&request.body, "cli request")?;
    let fields = Fields::new(&body, "cli request");
    let args: Vec<String> = fields
        .array("args")?
        .iter()
        .map(|arg| match arg {
            Value::String(arg) => Ok(arg.clone()),
            _ => Err(ApiError::bad_request("cli request: `args` must be strings")),
        })
        .collect::<Result<_, _>>()?;
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    if let Some(Value::Object(sent)) = fields.get("files") {
        for (name, content) in sent.iter() {
            let Value::String(encoded) = content else {
                return Err(ApiError::bad_request(format!(
                    "cli request: file {name:?} is not base64 text"
                )));
            };
            let bytes = crate::protocol::unbase64(encoded).ok_or_else(|| {
                ApiError::bad_request(format!("cli request: file {name:?} is not valid base64"))
            })?;
            files.insert(name.clone(), bytes);
        }
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let parsed = <crate::cli::Args as argh::FromArgs>::from_args(&["ark-lattice"], &refs)
        .map_err(|early_exit| ApiError::bad_request(early_exit.output))?;
    let Some(mut command) = parsed.command else {
        return Err(ApiError::bad_request("cli request has no command"));
    };
    // The caller writes `export -o FILE` itself: this process may not reach its files.
    if let crate::cli::Command::Export(export) = &mut command {
        export.output = None;
    }
    let read_input = |file: &str| -> Result<(String, Box<dyn std::io::Read>), Error> {
        files
            .get(file)
            .map(|bytes| {
                let reader: Box<dyn std::io::Read> = Box::new(std::io::Cursor::new(bytes.clone()));
                (file.to_owned(), reader)
            })
            .ok_or_else(|| Error::Usage(format!("{file} was not sent with the request")))
    };
    let (mut out, stdout) = Output::capture();
    let (mut err, stderr) = Output::capture();
    let mut store = app.store.borrow_mut();
    let mut session = Session {
        store: &mut store,
        config: &app.config,
        out: &mut out,
        err: &mut err,
        read_input: &read_input,
    };
    let result = run_lattice(&command, &mut session);
    let exit_code = match result {
        Ok(()) => 0,
        Err(error) => {
            if !matches!(error, Error::Reported { .. }) {
                let _ = err.line(format!("error: {error}"));
            }
            error.exit_code()
        }
    };
    drop(out);
    drop(err);
    drop(store);
    let mut stdout = String::from_utf8_lossy(&stdout.borrow()).into_owned();
    // A key just trusted (or removed) changes which held records may apply: they are
    // applied now, not at the next sync.
    if exit_code == 0 && matches!(command, crate::cli::Command::Trust(_)) {
        match app.syncer.release_held() {
            Ok(0) => {}
            Ok(applied) => stdout.push_str(&format!(
                "applied {applied} held record(s) whose reason to wait is gone\n"
            )),
            Err(error) => stdout.push_str(&format!(
                "held records are applied at the next sync ({error})\n"
            )),
        }
    }
    let stderr = String::from_utf8_lossy(&stderr.borrow()).into_owned();
    Ok(object([
        ("stdout", text(&stdout)),
        ("stderr", text(&stderr)),
        ("exit_code", number(exit_code as u64)),
    ]))
}
