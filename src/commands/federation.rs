//! `ark-lattice federation ...`: start and stop the background server, and manage
//! peers and syncs. With a server running, each command calls its control API; without
//! one, the same operations run in this process on the store.

use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

use miniserde::json::{Object, Value};

use super::Output;
use super::remote::{ServerInfo, call, running_server};
use crate::cli::{FederationCommand, FederationStart};
use crate::config::Config;
use crate::error::Error;
use crate::model::format_rfc3339;
use crate::protocol::{Fields, LatticeStatus};
use crate::server::{self, ApiError, App};
use crate::sync::PeerState;

/// How long `federation start` and `stop` wait for the server.
const START_STOP_WAIT: Duration = Duration::from_secs(15);
/// The log of a server started by `federation start`, in the state dir.
pub const SERVER_LOG: &str = "server.log";

pub fn run(config: &Config, command: &FederationCommand, out: &mut Output) -> Result<(), Error> {
    let server = running_server(config);
    match command {
        FederationCommand::Start(args) => start(config, server, args, out),
        FederationCommand::Stop(_) => stop(config, server, out),
        FederationCommand::Status(args) => {
            let status = match &server {
                Some(server) => call(config, server, "GET", "/api/v2/federation/status", None)?,
                None => in_process(config, server::status)?,
            };
            if args.json {
                return print_json(out, status);
            }
            print_status(out, &status)
        }
        FederationCommand::Sync(args) => {
            let answer = match &server {
                Some(server) => {
                    let body = args
                        .peer
                        .as_ref()
                        .map_or(Value::Object(Object::new()), |peer| {
                            object([("peerUrl", Value::String(peer.clone()))])
                        });
                    call(
                        config,
                        server,
                        "POST",
                        "/api/v2/federation/sync",
                        Some(body),
                    )?
                }
                None => {
                    let app = App::open(config)?;
                    let answer = smol::block_on(server::sync(&app, args.peer.as_deref()))
                        .map_err(api_error)?;
                    into_object(answer)
                }
            };
            let results = Fields::new(&answer, "sync answer")
                .array("result")
                .map_err(|error| Error::Other(error.0))?
                .to_vec();
            let failed = results
                .iter()
                .filter(|result| field_bool(result, "success") == Some(false))
                .count();
            if args.json {
                print_json(out, answer)?;
            } else {
                if results.is_empty() {
                    out.line("no peers to sync with (add one with `ark-lattice federation add-peer URL`)")?;
                }
                for result in &results {
                    let peer = field_str(result, "peer").unwrap_or("?");
                    match field_str(result, "error") {
                        Some(error) => out.line(format!("{peer}: failed: {error}"))?,
                        None => out.line(format!(
                            "{peer}: synced, received {}, sent {}, conflicts {}",
                            field_u64(result, "nodesReceived"),
                            field_u64(result, "nodesSent"),
                            field_u64(result, "conflicts")
                        ))?,
                    }
                    print_held(out, result, &format!("{peer}: "))?;
                }
                out.flush()?;
            }
            if failed > 0 {
                return Err(Error::Other(format!(
                    "{failed} of {} peer sync(s) failed",
                    results.len()
                )));
            }
            Ok(())
        }
        FederationCommand::AddPeer(args) => {
            let answer = match &server {
                Some(server) => {
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
                    call(
                        config,
                        server,
                        "POST",
                        "/api/v2/federation/peers/add",
                        Some(body),
                    )?
                }
                None => {
                    let app = App::open(config)?;
                    let answer = smol::block_on(server::add_peer(
                        &app,
                        &args.url,
                        args.pubkey.as_deref(),
                        args.tier.as_deref(),
                        &args.types,
                    ));
                    into_object(answer.map_err(api_error)?)
                }
            };
            let url = field_str_of(&answer, "peer");
            if let Some(Value::String(message)) = answer.get("message") {
                out.line(message)?;
                return out.flush();
            }
            if field_bool_of(&answer, "added") == Some(true) {
                out.line(format!("Added peer {url}"))?;
            } else {
                out.line(format!("Peer {url} is already in the list"))?;
            }
            match answer.get("fingerprint") {
                Some(Value::String(fingerprint)) => out.line(format!(
                    "Pinned its key {fingerprint} as {}; compare it with `ark-lattice federation status` there",
                    field_str_of(&answer, "tier")
                ))?,
                _ if field_bool_of(&answer, "keyPinnedAtFirstContact") == Some(true) => out.line(
                    "It cannot be reached now; the key it shows at the first sync will be pinned (compare it then with `ark-lattice federation status` there)",
                )?,
                _ => out.line("It has no key (an ARK Node.js peer): sync with it needs FEDERATION_TRUST=open")?,
            }
            out.flush()
        }
        FederationCommand::RemovePeer(args) => {
            let answer = match &server {
                Some(server) => call(
                    config,
                    server,
                    "DELETE",
                    &format!("/api/v2/federation/peers/{}", percent_encode(&args.url)),
                    None,
                )?,
                None => in_process(config, |app| server::remove_peer(app, &args.url))?,
            };
            out.line(format!("Removed peer {}", field_str_of(&answer, "peer")))?;
            out.flush()
        }
        FederationCommand::ListPeers(args) => {
            let answer = match &server {
                Some(server) => call(config, server, "GET", "/api/v2/federation/peers", None)?,
                None => in_process(config, server::list_peers)?,
            };
            if args.json {
                return print_json(out, answer);
            }
            print_peers(out, &answer)?;
            out.flush()
        }
        FederationCommand::Discover(args) => {
            let options = server::DiscoverOptions {
                add: args.add,
                scan: args.scan,
                subnet: args.subnet.clone(),
                scan_port: args.scan_port,
            };
            let answer = match &server {
                Some(server) => {
                    let mut body = Object::new();
                    body.insert("add".into(), Value::Bool(options.add));
                    body.insert("scan".into(), Value::Bool(options.scan));
                    if let Some(subnet) = &options.subnet {
                        body.insert("subnet".into(), Value::String(subnet.clone()));
                    }
                    if let Some(port) = options.scan_port {
                        body.insert(
                            "scanPort".into(),
                            Value::Number(miniserde::json::Number::U64(port.into())),
                        );
                    }
                    call(
                        config,
                        server,
                        "POST",
                        "/api/v2/federation/discover",
                        Some(Value::Object(body)),
                    )?
                }
                None => {
                    let app = App::open(config)?;
                    into_object(
                        smol::block_on(server::discover(&app, &options)).map_err(api_error)?,
                    )
                }
            };
            if args.json {
                return print_json(out, answer);
            }
            print_discovered(out, &answer, args.add)?;
            if let Some(Value::Array(errors)) = answer.get("errors") {
                for error in errors {
                    if let Value::String(error) = error {
                        eprintln!("warning: {error}");
                    }
                }
            }
            out.flush()
        }
        FederationCommand::AutoSync(args) => {
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
            let answer = match &server {
                Some(server) => {
                    let path = if on {
                        "/api/v2/federation/auto-sync/start"
                    } else {
                        "/api/v2/federation/auto-sync/stop"
                    };
                    let mut body = Object::new();
                    if let Some(interval) = args.interval {
                        body.insert(
                            "interval".into(),
                            Value::Number(miniserde::json::Number::U64(interval)),
                        );
                    }
                    call(config, server, "POST", path, Some(Value::Object(body)))?
                }
                // Saved for the server's next start.
                None => in_process(config, |app| server::set_auto_sync(app, on, args.interval))?,
            };
            out.line(format!(
                "auto-sync is {} (every {} ms){}",
                if on { "on" } else { "off" },
                field_u64(&Value::Object(answer), "syncInterval"),
                if server.is_none() && on {
                    "; it runs while the server runs (`ark-lattice federation start`)"
                } else {
                    ""
                }
            ))?;
            out.flush()
        }
    }
}

/// Runs a control operation on an in-process app when no server is running.
fn in_process(
    config: &Config,
    operation: impl FnOnce(&App) -> Result<Value, ApiError>,
) -> Result<Object, Error> {
    let app = App::open(config)?;
    operation(&app).map(into_object).map_err(api_error)
}

fn api_error(error: ApiError) -> Error {
    if error.status == 400 {
        Error::Usage(error.message)
    } else {
        Error::Other(error.message)
    }
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

fn field_str<'a>(value: &'a Value, name: &str) -> Option<&'a str> {
    match value {
        Value::Object(object) => match object.get(name) {
            Some(Value::String(text)) => Some(text),
            _ => None,
        },
        _ => None,
    }
}

fn field_bool(value: &Value, name: &str) -> Option<bool> {
    match value {
        Value::Object(object) => match object.get(name) {
            Some(Value::Bool(flag)) => Some(*flag),
            _ => None,
        },
        _ => None,
    }
}

fn field_u64(value: &Value, name: &str) -> u64 {
    match value {
        Value::Object(object) => match object.get(name) {
            Some(Value::Number(miniserde::json::Number::U64(n))) => *n,
            _ => 0,
        },
        _ => 0,
    }
}

fn field_str_of(object: &Object, name: &str) -> String {
    match object.get(name) {
        Some(Value::String(text)) => text.clone(),
        _ => String::new(),
    }
}

fn field_bool_of(object: &Object, name: &str) -> Option<bool> {
    match object.get(name) {
        Some(Value::Bool(flag)) => Some(*flag),
        _ => None,
    }
}

fn percent_encode(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn time(millis: u64) -> String {
    if millis == 0 {
        "never".to_owned()
    } else {
        format_rfc3339(millis)
    }
}

fn print_peers(out: &mut Output, answer: &Object) -> Result<(), Error> {
    let entries = Fields::new(answer, "peer list")
        .array("peers")
        .map_err(|error| Error::Other(error.0))?;
    let peers = entries
        .iter()
        .map(|entry| match entry {
            Value::Object(object) => PeerState::from_json(object, "peer list entry"),
            _ => Err(crate::protocol::WireError(
                "peer list entry is not an object".into(),
            )),
        })
        .collect::<Result<Vec<PeerState>, _>>()
        .map_err(|error| Error::Other(error.0))?;
    if peers.is_empty() {
        return out.line("no peers (add one with `ark-lattice federation add-peer URL`)");
    }
    out.line(format!(
        "{:<34} {:<20} {:<8} {:<24} {}",
        "PEER", "STATE", "PROTO", "LAST SYNC", "LAST ERROR"
    ))?;
    for peer in &peers {
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
fn print_discovered(out: &mut Output, answer: &Object, add: bool) -> Result<(), Error> {
    let list = |name: &str| match answer.get(name) {
        Some(Value::Array(items)) => items.to_vec(),
        _ => Vec::new(),
    };
    let added: Vec<String> = list("addedPeers")
        .iter()
        .filter_map(|url| match url {
            Value::String(url) => Some(url.clone()),
            _ => None,
        })
        .collect();
    let mark = |url: &str| {
        if added.iter().any(|added| added == url) {
            ", added"
        } else {
            ""
        }
    };
    let peers = list("peers");
    for peer in &peers {
        let url = field_str(peer, "url").unwrap_or("?");
        out.line(format!(
            "{url}  (via {}){}",
            field_str(peer, "via").unwrap_or("?"),
            mark(url)
        ))?;
    }
    out.line(format!("{} new peer(s) known to our peers", peers.len()))?;
    let describe = |entry: &Value| {
        let url = field_str(entry, "url").unwrap_or("?");
        format!(
            "{url:<28} {:<24} {:<26} {:<9} {}{}{}",
            field_str(entry, "instanceName").unwrap_or("-"),
            field_str(entry, "fingerprint").unwrap_or("-"),
            if field_bool(entry, "signed") == Some(true) {
                "signed"
            } else {
                "unsigned"
            },
            if field_bool(entry, "trusted") == Some(true) {
                "trusted"
            } else {
                "not trusted"
            },
            if field_bool(entry, "known") == Some(true) {
                ", in peer list"
            } else {
                ""
            },
            mark(url)
        )
    };
    let beacons = list("lan");
    out.line("")?;
    if field_bool_of(answer, "listening") != Some(true) {
        out.line("LAN beacons: none heard (beacons are heard by a running server: `ark-lattice federation start`)")?;
    } else if field_bool_of(answer, "discoveryEnabled") != Some(true) {
        out.line("LAN beacons: discovery is off on this instance (--no-discovery, FEDERATION_DISCOVERY or a cloud instance)")?;
    } else {
        out.line(format!("LAN beacons: {} peer(s) heard", beacons.len()))?;
    }
    for entry in &beacons {
        out.line(format!("  {}", describe(entry)))?;
    }
    if let Some(scan) = answer
        .get("scan")
        .filter(|scan| !matches!(scan, Value::Null))
    {
        out.line("")?;
        out.line(format!(
            "scan of {} port {}: {} of {} address(es) answered in {:.1} s",
            field_str(scan, "subnet").unwrap_or("?"),
            field_u64(scan, "port"),
            field_u64(scan, "answered"),
            field_u64(scan, "probed"),
            field_u64(scan, "durationMs") as f64 / 1000.0
        ))?;
        for entry in list("scanned") {
            out.line(format!("  {}", describe(&entry)))?;
        }
    }
    if add && added.is_empty() {
        out.line("nothing new to add")?;
    }
    Ok(())
}

fn print_status(out: &mut Output, status: &Object) -> Result<(), Error> {
    let status =
        LatticeStatus::from_json(status, "status answer").map_err(|error| Error::Other(error.0))?;
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
    print_peers(out, &status.peer_list)?;
    for message in &status.held_messages {
        out.line(message)?;
    }
    if let Some(warning) = &status.clock_warning {
        eprintln!("warning: {warning}");
    }
    out.flush()
}

/// The `heldMessages` of a sync result or status: what is held and what to run.
fn print_held(out: &mut Output, value: &Value, prefix: &str) -> Result<(), Error> {
    if let Value::Object(object) = value {
        if let Some(Value::Array(messages)) = object.get("heldMessages") {
            for message in messages {
                if let Value::String(message) = message {
                    out.line(format!("{prefix}{message}"))?;
                }
            }
        }
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
    let executable = std::env::current_exe()
        .map_err(|source| Error::Other(format!("cannot find this program's path: {source}")))?;
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
        .map_err(|source| Error::Other(format!("cannot start the server: {source}")))?;
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
            return Err(Error::Other(format!(
                "the server exited ({status}) before listening: {}",
                log_tail(&log_path)
            )));
        }
        if Instant::now() > deadline {
            return Err(Error::Other(format!(
                "the server did not start within {} s; see {}",
                waited.as_secs(),
                log_path.display()
            )));
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
    call(
        config,
        &server,
        "POST",
        "/api/server/shutdown",
        Some(Value::Object(Object::new())),
    )?;
    let deadline = Instant::now() + START_STOP_WAIT;
    while Path::new(&format!("/proc/{}", server.pid)).exists() && !is_zombie(server.pid) {
        if Instant::now() > deadline {
            return Err(Error::Other(format!(
                "the server (pid {}) did not stop within {} s",
                server.pid,
                START_STOP_WAIT.as_secs()
            )));
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
