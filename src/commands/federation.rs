//! `ark-lattice federation ...`: start and stop the background server, and manage
//! peers and syncs. With a server running, each command calls its control API and reads
//! the answer into its `protocol` type; without one, the service layer runs the same
//! operation in this process on the store. Either way the answer is printed for people,
//! or as the control API's JSON with `--json`.

use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

use miniserde::json::{Number, Object, Value};

use super::remote::{call, call_route};
use crate::cli::{
    AddPeer as AddPeerArgs, AutoSync, Discover, FederationCommand, FederationStart, FederationSync,
};
use crate::config::Config;
use crate::error::Error;
use crate::http::percent_encode;
use crate::model::format_rfc3339;
use crate::protocol::{
    AutoSyncAnswer, DiscoverAnswer, LanEntry, LatticeStatus, PeerAddAnswer, PeerRemoved, Route,
    SyncAnswer, WireError,
};
use crate::service::{
    self, AddPeer, DiscoverOptions, Instance, OpError, Output, PeerList, ServerInfo, running_server,
};

/// How long `federation start` and `stop` wait for the server.
const START_STOP_WAIT: Duration = Duration::from_secs(15);
/// The log of a server started by `federation start`, in the state dir.
pub(crate) const SERVER_LOG: &str = "server.log";

pub(crate) fn run(
    config: &Config,
    command: &FederationCommand,
    out: &mut Output,
) -> Result<(), Error> {
    let server = running_server(config);
    match command {
        FederationCommand::Start(args) => start(config, server, args, out),
        FederationCommand::Stop(_) => stop(config, server, out),
        FederationCommand::Status(args) => {
            let (json, status) = fetch(
                config,
                &server,
                |server| call_route(config, server, Route::Status, None),
                LatticeStatus::from_json,
                service::status,
                LatticeStatus::to_json,
            )?;
            if args.json {
                return print_json(out, json);
            }
            print_status(out, &status)
        }
        FederationCommand::Sync(args) => sync(config, &server, args, out),
        FederationCommand::AddPeer(args) => add_peer(config, &server, args, out),
        FederationCommand::RemovePeer(args) => {
            let (_, removed) = fetch(
                config,
                &server,
                |server| {
                    let path = Route::RemovePeer.path_with(&percent_encode(&args.url));
                    call(config, server, Route::RemovePeer.method(), &path, None)
                },
                PeerRemoved::from_json,
                |instance| service::remove_peer(instance, &args.url),
                PeerRemoved::to_json,
            )?;
            out.line(format!("Removed peer {}", removed.peer))?;
            out.flush()
        }
        FederationCommand::ListPeers(args) => {
            let (json, list) = fetch(
                config,
                &server,
                |server| call_route(config, server, Route::Peers, None),
                PeerList::from_json,
                service::list_peers,
                PeerList::to_json,
            )?;
            if args.json {
                return print_json(out, json);
            }
            print_peers(out, &list)?;
            out.flush()
        }
        FederationCommand::Discover(args) => discover(config, &server, args, out),
        FederationCommand::AutoSync(args) => auto_sync(config, &server, args, out),
    }
}

/// Runs an operation on the running server (its JSON answer, read into its type) or, with
/// no server, on the instance opened here (its typed answer, and the JSON the server
/// would have answered). `--json` prints the JSON; people get the typed answer printed.
fn fetch<T>(
    config: &Config,
    server: &Option<ServerInfo>,
    remote: impl FnOnce(&ServerInfo) -> Result<Object, Error>,
    parse: fn(&Object, &str) -> Result<T, WireError>,
    local: impl FnOnce(&Instance) -> Result<T, OpError>,
    to_json: fn(&T) -> Value,
) -> Result<(Object, T), Error> {
    match server {
        Some(server) => {
            let json = remote(server)?;
            let typed = parse(&json, "the server's answer")?;
            Ok((json, typed))
        }
        None => {
            let instance = Instance::open(config)?;
            let typed = local(&instance)?;
            Ok((into_object(to_json(&typed)), typed))
        }
    }
}

fn sync(
    config: &Config,
    server: &Option<ServerInfo>,
    args: &FederationSync,
    out: &mut Output,
) -> Result<(), Error> {
    let (json, answer) = fetch(
        config,
        server,
        |server| {
            let body = args
                .peer
                .as_ref()
                .map_or(Value::Object(Object::new()), |peer| {
                    object([("peerUrl", Value::String(peer.clone()))])
                });
            call_route(config, server, Route::SyncNow, Some(body))
        },
        SyncAnswer::from_json,
        |instance| smol::block_on(service::sync(instance, args.peer.as_deref())),
        SyncAnswer::to_json,
    )?;
    if args.json {
        print_json(out, json)?;
    } else {
        print_sync(out, &answer)?;
    }
    let failed = answer.failed();
    if failed > 0 {
        return Err(Error::SyncFailed {
            failed,
            total: answer.results.len(),
        });
    }
    Ok(())
}

fn print_sync(out: &mut Output, answer: &SyncAnswer) -> Result<(), Error> {
    if answer.results.is_empty() {
        out.line("no peers to sync with (add one with `ark-lattice federation add-peer URL`)")?;
    }
    for result in &answer.results {
        let peer = &result.peer;
        match &result.error {
            Some(error) => out.line(format!("{peer}: failed: {error}"))?,
            None => out.line(format!(
                "{peer}: synced, received {}, sent {}, conflicts {}",
                result.nodes_received, result.nodes_sent, result.conflicts
            ))?,
        }
        // A refused record never applies (a bad signature, a record past the limits):
        // each is named, so "synced" never hides one.
        for reason in &result.rejected {
            out.line(format!("{peer}: refused {reason}"))?;
        }
        print_held(out, &result.held_messages, &format!("{peer}: "))?;
    }
    out.flush()
}

fn add_peer(
    config: &Config,
    server: &Option<ServerInfo>,
    args: &AddPeerArgs,
    out: &mut Output,
) -> Result<(), Error> {
    let (_, answer) = fetch(
        config,
        server,
        |server| {
            let mut body = vec![("peerUrl", Value::String(args.url.clone()))];
            if let Some(pubkey) = &args.pubkey {
                body.push(("pubkey", Value::String(pubkey.clone())));
            }
            if let Some(tier) = &args.tier {
                body.push(("tier", Value::String(tier.clone())));
            }
            if !args.types.is_empty() {
                let types = args.types.iter().cloned().map(Value::String).collect();
                body.push(("types", Value::Array(types)));
            }
            let body = Value::Object(
                body.into_iter()
                    .map(|(key, value)| (key.to_owned(), value))
                    .collect(),
            );
            call_route(config, server, Route::AddPeer, Some(body))
        },
        PeerAddAnswer::from_json,
        |instance| {
            let request = AddPeer {
                url: &args.url,
                pubkey: args.pubkey.as_deref(),
                tier: args.tier.as_deref(),
                types: &args.types,
            };
            smol::block_on(service::add_peer(instance, request))
        },
        PeerAddAnswer::to_json,
    )?;
    let PeerAddAnswer::Added {
        peer,
        added,
        key,
        key_pinned_at_first_contact,
    } = answer
    else {
        if let PeerAddAnswer::SameNode { message, .. } = answer {
            out.line(message)?;
        }
        return out.flush();
    };
    if added {
        out.line(format!("Added peer {peer}"))?;
    } else {
        out.line(format!("Peer {peer} is already in the list"))?;
    }
    match key {
        Some(key) => out.line(format!(
            "Pinned its key {} as {}; compare it with `ark-lattice federation status` there",
            key.fingerprint, key.tier
        ))?,
        None if key_pinned_at_first_contact => out.line(
            "It cannot be reached now; the key it shows at the first sync will be pinned (compare it then with `ark-lattice federation status` there)",
        )?,
        None => out.line("It has no key (an ARK Node.js peer): sync with it needs FEDERATION_TRUST=open")?,
    }
    out.flush()
}

fn discover(
    config: &Config,
    server: &Option<ServerInfo>,
    args: &Discover,
    out: &mut Output,
) -> Result<(), Error> {
    let options = DiscoverOptions {
        add: args.add,
        scan: args.scan,
        subnet: args.subnet.clone(),
        scan_port: args.scan_port,
    };
    let (json, answer) = fetch(
        config,
        server,
        |server| {
            let mut body = Object::new();
            body.insert("add".into(), Value::Bool(options.add));
            body.insert("scan".into(), Value::Bool(options.scan));
            if let Some(subnet) = &options.subnet {
                body.insert("subnet".into(), Value::String(subnet.clone()));
            }
            if let Some(port) = options.scan_port {
                body.insert("scanPort".into(), Value::Number(Number::U64(port.into())));
            }
            let body = Some(Value::Object(body));
            call_route(config, server, Route::DiscoverPeers, body)
        },
        DiscoverAnswer::from_json,
        |instance| smol::block_on(service::discover(instance, &options)),
        DiscoverAnswer::to_json,
    )?;
    if args.json {
        return print_json(out, json);
    }
    print_discovered(out, &answer, args.add)?;
    for error in &answer.errors {
        eprintln!("warning: {error}");
    }
    out.flush()
}

fn auto_sync(
    config: &Config,
    server: &Option<ServerInfo>,
    args: &AutoSync,
    out: &mut Output,
) -> Result<(), Error> {
    let state = match (args.start, args.stop, args.state.as_deref()) {
        (true, false, None) => "on",
        (false, true, None) => "off",
        (false, false, Some(state)) => state,
        _ => {
            return Err(Error::Usage(
                "auto-sync takes one of --start, --stop, on or off".into(),
            ));
        }
    };
    let on = match state {
        "on" | "start" => true,
        "off" | "stop" => false,
        other => {
            return Err(Error::Usage(format!(
                "auto-sync takes on or off, not {other:?}"
            )));
        }
    };
    let (_, answer) = fetch(
        config,
        server,
        |server| {
            let route = if on {
                Route::AutoSyncStart
            } else {
                Route::AutoSyncStop
            };
            let mut body = Object::new();
            if let Some(interval) = args.interval {
                body.insert("interval".into(), Value::Number(Number::U64(interval)));
            }
            call_route(config, server, route, Some(Value::Object(body)))
        },
        AutoSyncAnswer::from_json,
        // Saved for the server's next start.
        |instance| service::set_auto_sync(instance, on, args.interval),
        AutoSyncAnswer::to_json,
    )?;
    out.line(format!(
        "auto-sync is {} (every {} ms){}",
        if on { "on" } else { "off" },
        answer.sync_interval_ms,
        if server.is_none() && on {
            "; it runs while the server runs (`ark-lattice federation start`)"
        } else {
            ""
        }
    ))?;
    out.flush()
}

fn into_object(value: Value) -> Object {
    match value {
        Value::Object(object) => object,
        _ => Object::new(),
    }
}

fn object<const N: usize>(pairs: [(&str, Value); N]) -> Value {
    Value::Object(
        pairs
            .into_iter()
            .map(|(key, value)| (key.to_owned(), value))
            .collect(),
    )
}

fn print_json(out: &mut Output, object: Object) -> Result<(), Error> {
    out.json(&Value::Object(object))?;
    out.flush()
}

fn time(millis: u64) -> String {
    if millis == 0 {
        "never".to_owned()
    } else {
        format_rfc3339(millis)
    }
}

fn print_peers(out: &mut Output, list: &PeerList) -> Result<(), Error> {
    let peers = &list.peers;
    if peers.is_empty() {
        return out.line("no peers (add one with `ark-lattice federation add-peer URL`)");
    }
    out.line(format!(
        "{:<34} {:<20} {:<8} {:<24} {}",
        "PEER", "STATE", "PROTO", "LAST SYNC", "LAST ERROR"
    ))?;
    for peer in peers {
        let state = if peer.is_active() {
            "active"
        } else if peer.failures > 0 {
            "failing"
        } else {
            "new"
        };
        // Added offline: which key it is will be learned (and pinned) at first contact.
        let state = if peer.pin_at_first_contact {
            "key-at-first-contact"
        } else {
            state
        };
        out.line(format!(
            "{:<34} {:<20} {:<8} {:<24} {}",
            peer.url,
            state,
            peer.protocol.as_deref().unwrap_or("-"),
            time(peer.last_success.unwrap_or(0)),
            peer.last_error.as_deref().unwrap_or("-")
        ))?;
    }
    Ok(())
}

/// `federation discover`: peers of peers, peers heard by beacon, and the scan's.
fn print_discovered(out: &mut Output, answer: &DiscoverAnswer, add: bool) -> Result<(), Error> {
    let added = &answer.added_peers;
    let mark = |url: &str| {
        if added.iter().any(|added| added == url) {
            ", added"
        } else {
            ""
        }
    };
    for peer in &answer.peers {
        let url = &peer.url;
        out.line(format!("{url}  (via {}){}", peer.via, mark(url)))?;
    }
    out.line(format!(
        "{} new peer(s) known to our peers",
        answer.peers.len()
    ))?;
    let describe = |entry: &LanEntry| {
        let url = &entry.url;
        format!(
            "{url:<28} {:<24} {:<26} {:<9} {}{}{}",
            entry.instance_name.as_deref().unwrap_or("-"),
            entry.fingerprint.as_deref().unwrap_or("-"),
            if entry.signed { "signed" } else { "unsigned" },
            if entry.trusted {
                "trusted"
            } else {
                "not trusted"
            },
            if entry.known { ", in peer list" } else { "" },
            mark(url)
        )
    };
    let beacons = &answer.lan;
    out.line("")?;
    if !answer.listening {
        out.line("LAN beacons: none heard (beacons are heard by a running server: `ark-lattice federation start`)")?;
    } else if !answer.discovery_enabled {
        out.line("LAN beacons: discovery is off on this instance (--no-discovery, FEDERATION_DISCOVERY or a cloud instance)")?;
    } else {
        out.line(format!("LAN beacons: {} peer(s) heard", beacons.len()))?;
    }
    for entry in beacons {
        out.line(format!("  {}", describe(entry)))?;
    }
    if let Some(scan) = &answer.scan {
        out.line("")?;
        out.line(format!(
            "scan of {} port {}: {} of {} address(es) answered in {:.1} s",
            scan.subnet,
            scan.port,
            scan.answered,
            scan.probed,
            scan.duration_ms as f64 / 1000.0
        ))?;
        for entry in &answer.scanned {
            out.line(format!("  {}", describe(entry)))?;
        }
    }
    if add && added.is_empty() {
        out.line("nothing new to add")?;
    }
    Ok(())
}

fn print_status(out: &mut Output, status: &LatticeStatus) -> Result<(), Error> {
    let info = &status.info;
    let lattice = &info.lattice;
    let or_dash = |value: &Option<String>| value.clone().unwrap_or_else(|| "-".to_owned());
    out.line(format!(
        "instance     {} ({})",
        info.instance_name, info.instance_id
    ))?;
    out.line(format!("public key   {}", or_dash(&lattice.public_key)))?;
    out.line(format!("fingerprint  {}", or_dash(&lattice.fingerprint)))?;
    out.line(format!(
        "server       {}",
        if status.running {
            format!("running on port {}", info.listen_port)
        } else {
            "not running".to_owned()
        }
    ))?;
    out.line(format!(
        "mode         {} (hub: {})",
        info.federation_mode,
        or_dash(&info.hub_url)
    ))?;
    out.line(format!(
        "auto-sync    {} (every {} ms)",
        if info.auto_sync { "on" } else { "off" },
        info.sync_interval
    ))?;
    out.line(format!(
        "nodes        {}",
        lattice.node_count.unwrap_or_default()
    ))?;
    out.line(format!(
        "peers        {} ({} active)",
        info.peers.len(),
        info.active_peers.len()
    ))?;
    let stats = &info.stats;
    out.line(format!(
        "syncs        {} ({} ok, {} failed); nodes sent {}, received {}; conflicts resolved {}",
        stats.total_syncs,
        stats.successful_syncs,
        stats.failed_syncs,
        stats.nodes_shared,
        stats.nodes_received,
        stats.conflicts_resolved
    ))?;
    out.line("")?;
    let peer_list = PeerList::from_json(&status.peer_list, "peer list")?;
    print_peers(out, &peer_list)?;
    for message in &status.held_messages {
        out.line(message)?;
    }
    if let Some(warning) = &status.clock_warning {
        eprintln!("warning: {warning}");
    }
    out.flush()
}

/// The `heldMessages` of a sync result or status: what is held and what to run.
fn print_held(out: &mut Output, messages: &[String], prefix: &str) -> Result<(), Error> {
    for message in messages {
        out.line(format!("{prefix}{message}"))?;
    }
    Ok(())
}

/// Starts `serve` in the background unless it is running, and waits until it listens.
fn start(
    config: &Config,
    server: Option<ServerInfo>,
    args: &FederationStart,
    out: &mut Output,
) -> Result<(), Error> {
    if let Some(server) = server {
        out.line(format!(
            "Federation server already running on port {} (pid {})",
            server.port, server.pid
        ))?;
        return out.flush();
    }
    let executable = std::env::current_exe().map_err(|source| Error::Io {
        action: "cannot find this program's path".into(),
        source,
    })?;
    std::fs::create_dir_all(&config.data_dir).map_err(|source| Error::File {
        path: config.data_dir.clone(),
        source,
    })?;
    let log_path = config.data_dir.join(SERVER_LOG);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|source| Error::File {
            path: log_path.clone(),
            source,
        })?;
    let log_for_stderr = log.try_clone().map_err(|source| Error::File {
        path: log_path.clone(),
        source,
    })?;
    let mut command = std::process::Command::new(executable);
    command
        .arg("--data-dir")
        .arg(&config.data_dir)
        .arg("serve")
        .args(&args.args);
    // Its own process group, so a Ctrl-C in this terminal does not reach it.
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let log_start = log.metadata().map_or(0, |metadata| metadata.len());
    let mut child = command
        .stdin(std::process::Stdio::null())
        .stdout(log)
        .stderr(log_for_stderr)
        .spawn()
        .map_err(|source| Error::Io {
            action: "cannot start the server".into(),
            source,
        })?;
    // The server may first wait for a store a CLI command holds.
    let waited = START_STOP_WAIT + config.store_wait;
    let deadline = Instant::now() + waited;
    loop {
        if let Some(server) = running_server(config).filter(|server| server.pid == child.id()) {
            out.line(format!("Federation server started on port {}", server.port))?;
            // What the server warned about at start (open trust, an ignored setting)
            // is for the person who started it, not only for the log.
            for line in log_lines_since(&log_path, log_start) {
                if line.starts_with("warning:") || line.starts_with("notice:") {
                    eprintln!("{line}");
                }
            }
            return out.flush();
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(Error::ServerExited {
                status,
                log_tail: log_tail(&log_path),
            });
        }
        if Instant::now() > deadline {
            return Err(Error::ServerTimedOut {
                stopping: false,
                pid: child.id(),
                waited,
                log: log_path,
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The lines of the log at `path` after byte `offset`.
fn log_lines_since(path: &Path, offset: u64) -> Vec<String> {
    let mut text = Vec::new();
    if let Ok(mut file) = std::fs::File::open(path) {
        use std::io::Seek;
        if file.seek(std::io::SeekFrom::Start(offset)).is_ok() {
            let _ = file.read_to_end(&mut text);
        }
    }
    String::from_utf8_lossy(&text)
        .lines()
        .map(str::to_owned)
        .collect()
}

fn log_tail(path: &Path) -> String {
    let mut text = String::new();
    if let Ok(mut file) = std::fs::File::open(path) {
        let _ = file.read_to_string(&mut text);
    }
    text.lines()
        .rev()
        .find(|line| !line.trim().is_empty())
        .unwrap_or("(no output)")
        .to_owned()
}

/// Asks the running server to shut down gracefully and waits until it is gone.
fn stop(config: &Config, server: Option<ServerInfo>, out: &mut Output) -> Result<(), Error> {
    let Some(server) = server else {
        out.line("Federation server is not running")?;
        return out.flush();
    };
    call_route(
        config,
        &server,
        Route::Shutdown,
        Some(Value::Object(Object::new())),
    )?;
    let deadline = Instant::now() + START_STOP_WAIT;
    while Path::new(&format!("/proc/{}", server.pid)).exists() && !is_zombie(server.pid) {
        if Instant::now() > deadline {
            return Err(Error::ServerTimedOut {
                stopping: true,
                pid: server.pid,
                waited: START_STOP_WAIT,
                log: config.data_dir.join(SERVER_LOG),
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    out.line("Federation server stopped")?;
    out.flush()
}

/// A process that exited but was not reaped yet (its parent is gone or busy).
fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            stat.rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}
