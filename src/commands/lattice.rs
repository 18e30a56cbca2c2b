//! The lattice commands with typed answers (`add`, `delete`, `list`, `query`, `stats`,
//! `conflicts`, `gc`, `get`): the service runs them on the store here, or the running server that
//! holds the store answers them on its `/api/lattice/*` routes and the answer is read
//! back into the same type; either way this renders it for people or as `--json`.

use miniserde::json::Value;

use super::remote::{call, call_route};
use crate::cli::{self, Command};
use crate::config::Config;
use crate::error::Error;
use crate::http::percent_encode;
use crate::model::{Node, Shape, SignatureFormat, format_rfc3339};
use crate::protocol::Route;
use crate::service::{
    self, Added, ConflictList, Deleted, NodeList, NodeView, Output, Purged, ServerInfo,
    StatsReport, StoredRecord, number, object, time_or_dash, truncate,
};
use crate::store::{Query, Store};

/// A typed answer of one of the commands.
enum Answer {
    Added(Added),
    Deleted(Deleted),
    Nodes(NodeList),
    Stats(StatsReport),
    Conflicts(ConflictList),
    Purged(Purged),
    Record(StoredRecord),
}

/// Runs a typed command on the store this process opened.
pub(crate) fn run_here(
    command: &Command,
    store: &mut Store,
    config: &Config,
    out: &mut Output,
) -> Result<(), Error> {
    let answer = match command {
        Command::Add(args) => Answer::Added(service::add_node(store, node_to_add(args)?)?),
        Command::Delete(args) => Answer::Deleted(service::delete_node(store, &args.id)?),
        Command::List(args) => Answer::Nodes(service::find_nodes(store, &list_query(args))?),
        Command::Query(args) => Answer::Nodes(service::find_nodes(store, &query(args))?),
        Command::Stats(_) => Answer::Stats(service::stats(store, config)?),
        Command::Conflicts(args) => {
            Answer::Conflicts(service::conflicts(store, limit(args.limit))?)
        }
        Command::Gc(args) => {
            Answer::Purged(service::purge_tombstones(store, older_than_days(args)?)?)
        }
        Command::Get(args) => Answer::Record(service::get_record(store, &args.id)?),
        _ => return Err(not_typed()),
    };
    render(&answer, command, config, out)
}

/// Asks the running server that holds the store.
pub(crate) fn run_on_server(
    command: &Command,
    config: &Config,
    server: &ServerInfo,
    out: &mut Output,
) -> Result<(), Error> {
    let get = |path: &str| call(config, server, "GET", path, None).map_err(not_found_as_such);
    let context = "the server's answer";
    let answer = match command {
        Command::Add(args) => {
            let node = node_to_add(args)?;
            let path = Route::PutNode.path_with(&percent_encode(&node.id));
            let body = Value::Object(node.to_json(Shape::Native));
            let answer = call(config, server, Route::PutNode.method(), &path, Some(body))?;
            Answer::Added(Added::from_json(&answer, context).map_err(wire)?)
        }
        Command::Delete(args) => {
            let path = Route::DeleteNode.path_with(&percent_encode(&args.id));
            let answer = call(config, server, Route::DeleteNode.method(), &path, None)
                .map_err(not_found_as_such)?;
            Answer::Deleted(Deleted::from_json(&answer, context).map_err(wire)?)
        }
        Command::List(args) => Answer::Nodes(
            NodeList::from_json(&get(&nodes_path(&list_query(args)))?, context).map_err(wire)?,
        ),
        Command::Query(args) => Answer::Nodes(
            NodeList::from_json(&get(&nodes_path(&query(args)))?, context).map_err(wire)?,
        ),
        Command::Stats(_) => Answer::Stats(
            StatsReport::from_json(&get(Route::LatticeStats.path())?, context).map_err(wire)?,
        ),
        Command::Conflicts(args) => {
            let path = format!("{}?limit={}", Route::Conflicts.path(), args.limit);
            Answer::Conflicts(ConflictList::from_json(&get(&path)?, context).map_err(wire)?)
        }
        Command::Gc(args) => {
            let body = object([("older_than_days", number(older_than_days(args)?))]);
            let answer = call_route(config, server, Route::Gc, Some(body))?;
            Answer::Purged(Purged::from_json(&answer, context).map_err(wire)?)
        }
        // No route has an empty parameter, and no record an empty id.
        Command::Get(args) if args.id.is_empty() => {
            return Err(Error::NotFound("node \"\" not found".into()));
        }
        Command::Get(args) => {
            let path = Route::GetRecord.path_with(&percent_encode(&args.id));
            Answer::Record(StoredRecord::from_json(&get(&path)?, context).map_err(wire)?)
        }
        _ => return Err(not_typed()),
    };
    render(&answer, command, config, out)
}

/// A record the server did not find is not found here either (exit code 4), as when
/// the command runs on the store itself.
pub(super) fn not_found_as_such(error: Error) -> Error {
    match error {
        Error::Refused {
            status: 404,
            message,
        } => Error::NotFound(message),
        other => other,
    }
}

fn not_typed() -> Error {
    Error::Usage("not a lattice command with a typed answer".into())
}

/// A server's answer that is not what our own server sends.
pub(super) fn wire(error: crate::protocol::WireError) -> Error {
    Error::Wire(error)
}

/// Tombstones are kept unless `gc` is told how old the ones to purge are.
fn older_than_days(args: &cli::Gc) -> Result<u64, Error> {
    args.tombstones_older_than.ok_or_else(|| {
        Error::Usage(
            "gc needs --tombstones-older-than DAYS (tombstones are kept by default)".into(),
        )
    })
}

/// `--limit 0` means all.
fn limit(limit: usize) -> Option<usize> {
    (limit > 0).then_some(limit)
}

fn list_query(args: &cli::List) -> Query {
    Query {
        node_type: args.node_type.clone(),
        limit: limit(args.limit),
        ..Query::default()
    }
}

fn query(args: &cli::QueryArgs) -> Query {
    Query {
        node_type: args.node_type.clone(),
        language: args.language.clone(),
        category: args.category.clone(),
        capability: args.capability.clone(),
        search: args.search.clone(),
        after: None,
        limit: limit(args.limit),
    }
}

/// `GET /api/lattice/nodes` with the query's parameters (`limit=0` for all).
fn nodes_path(query: &Query) -> String {
    let mut path = format!(
        "{}?limit={}",
        Route::QueryNodes.path(),
        query.limit.unwrap_or(0)
    );
    for (name, value) in [
        ("type", &query.node_type),
        ("language", &query.language),
        ("category", &query.category),
        ("capability", &query.capability),
        ("search", &query.search),
    ] {
        if let Some(value) = value {
            path.push_str(&format!("&{name}={}", percent_encode(value)));
        }
    }
    path
}

/// The node `add` writes: the whole record with `--json`, else built from its flags.
fn node_to_add(args: &cli::Add) -> Result<Node, Error> {
    match &args.json {
        Some(text) => {
            let value: Value = crate::model::parse_json(text)
                .map_err(|error| Error::Usage(format!("--json {error}")))?;
            Node::from_json(&value).map_err(|error| Error::Usage(format!("invalid node: {error}")))
        }
        None => node_from_flags(args),
    }
}

fn node_from_flags(args: &cli::Add) -> Result<Node, Error> {
    let missing: Vec<&str> = [
        ("--id", args.id.is_none()),
        ("--type", args.node_type.is_none()),
        ("--value", args.value.is_none()),
    ]
    .into_iter()
    .filter_map(|(flag, missing)| missing.then_some(flag))
    .collect();
    if !missing.is_empty() {
        return Err(Error::Usage(format!(
            "add needs {} (or the whole record with --json)",
            missing.join(", ")
        )));
    }
    let node = Node {
        id: args.id.clone().unwrap_or_default(),
        node_type: args.node_type.clone().unwrap_or_default(),
        value: args.value.clone().unwrap_or_default(),
        language: args.language.clone(),
        category: args.category.clone(),
        content: args.content.clone(),
        capabilities: args.capabilities.clone(),
        dependencies: args.dependencies.clone(),
        examples: args.examples.clone(),
        linked_agents: args.linked_agents.clone(),
        ..Node::default()
    };
    node.validate()
        .map_err(|error| Error::Usage(format!("invalid node: {error}")))?;
    Ok(node)
}

fn render(
    answer: &Answer,
    command: &Command,
    config: &Config,
    out: &mut Output,
) -> Result<(), Error> {
    if let (Answer::Record(record), Command::Get(args)) = (answer, command) {
        return print_record(record, args, out);
    }
    if super::remote::wants_json(command) {
        let json = match answer {
            Answer::Added(added) => added.to_json(),
            Answer::Deleted(deleted) => deleted.to_json(),
            Answer::Nodes(nodes) => nodes.to_json(),
            Answer::Stats(report) => report.to_json(),
            Answer::Conflicts(conflicts) => conflicts.to_json(),
            Answer::Purged(purged) => purged.to_json(),
            Answer::Record(record) => record.to_json(),
        };
        out.json(&json)?;
        return out.flush();
    }
    match answer {
        Answer::Added(added) => out.line(format!("{} {}", added.outcome.name(), added.id))?,
        Answer::Deleted(deleted) => print_deleted(deleted, out)?,
        Answer::Nodes(nodes) => print_nodes(nodes, out)?,
        Answer::Stats(report) => print_stats(report, config, out)?,
        Answer::Conflicts(conflicts) => print_conflicts(conflicts, out)?,
        Answer::Purged(purged) => out.line(format!(
            "purged {} tombstone(s) of deletes older than {} day(s)",
            purged.purged_tombstones, purged.older_than_days
        ))?,
        Answer::Record(record) => out.json(&record.to_json())?,
    }
    out.flush()
}

fn print_deleted(deleted: &Deleted, out: &mut Output) -> Result<(), Error> {
    if deleted.already_deleted {
        out.line(format!("{} was already deleted; nothing to do", deleted.id))
    } else {
        out.line(format!(
            "deleted {} (a tombstone carries the delete to peers)",
            deleted.id
        ))
    }
}

fn print_nodes(list: &NodeList, out: &mut Output) -> Result<(), Error> {
    if !list.nodes.is_empty() {
        out.line(format!(
            "{:<32} {:<16} {:<12} {}",
            "ID", "TYPE", "LANGUAGE", "VALUE"
        ))?;
    }
    for view in &list.nodes {
        let node = &view.node;
        out.line(format!(
            "{:<32} {:<16} {:<12} {}",
            truncate(&node.id, 32),
            truncate(&node.node_type, 16),
            truncate(node.language.as_deref().unwrap_or("-"), 12),
            truncate(&node.value, 60)
        ))?;
    }
    out.line(format!("{} node(s)", list.nodes.len()))
}

/// The store's path is this state dir's: the CLI and a server it asks share it.
fn print_stats(report: &StatsReport, config: &Config, out: &mut Output) -> Result<(), Error> {
    let stats = &report.stats;
    out.line(format!(
        "instance    {} ({})",
        report.instance.name, report.instance.id
    ))?;
    out.line(format!(
        "store       {} ({:.1} MiB)",
        config.store_path().display(),
        stats.file_bytes as f64 / 1_048_576.0
    ))?;
    out.line(format!("nodes       {}", stats.nodes))?;
    out.line(format!("tombstones  {}", stats.tombstones))?;
    out.line(format!("conflicts   {}", stats.conflicts))?;
    if stats.damaged > 0 {
        out.line(format!(
            "damaged     {} (moved aside; see `ark-lattice verify`)",
            stats.damaged
        ))?;
    }
    for (title, map) in [
        ("by type", &stats.by_type),
        ("by language", &stats.by_language),
        ("by category", &stats.by_category),
    ] {
        out.line(format!("{title}:"))?;
        let mut sorted: Vec<_> = map.iter().collect();
        sorted.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        for (key, count) in sorted {
            out.line(format!("  {key:<30} {count}"))?;
        }
    }
    Ok(())
}

fn print_conflicts(list: &ConflictList, out: &mut Output) -> Result<(), Error> {
    for conflict in &list.conflicts {
        let what = match &conflict.loser {
            Some(loser) => format!("value {:?}", truncate(&loser.node.value, 40)),
            None => "a delete".to_owned(),
        };
        out.line(format!(
            "#{} {} at {}: lost {} by {} (winner {})",
            conflict.number,
            conflict.id,
            format_rfc3339(conflict.resolved_at),
            what,
            conflict.loser_version.origin.short(),
            conflict.winner.origin.short()
        ))?;
    }
    out.line(format!(
        "{} of {} conflict(s) shown",
        list.conflicts.len(),
        list.total
    ))
}

/// `get`: a live node for people or as `--json` (with its provenance when asked); a
/// tombstone is not found (exit code 4), and with `--json` scripts learn which delete
/// they see first.
fn print_record(record: &StoredRecord, args: &cli::Get, out: &mut Output) -> Result<(), Error> {
    let (view, signature) = match record {
        StoredRecord::Live { view, signature } => (view, *signature),
        StoredRecord::Deleted { id, deleted_at, .. } => {
            if args.json {
                out.json(&record.to_json())?;
                out.flush()?;
            }
            return Err(Error::NotFound(format!(
                "node {id:?} (deleted at {}) not found",
                format_rfc3339(*deleted_at)
            )));
        }
    };
    if args.json {
        out.json(&if args.provenance {
            record.to_json()
        } else {
            view.to_json()
        })?;
        return out.flush();
    }
    print_node(view, out)?;
    if args.provenance {
        let version = &view.version;
        out.line(format!("{:<14}{}", "written by", version.origin))?;
        out.line(format!(
            "{:<14}{} (clock {})",
            "written at",
            format_rfc3339(version.hlc.millis()),
            version.hlc
        ))?;
        out.line(format!(
            "{:<14}{}",
            "signature",
            match signature {
                Some(SignatureFormat::V2) => "format 2",
                Some(SignatureFormat::V1) => "format 1 (an older node's: id and base not covered)",
                None => "none",
            }
        ))?;
    }
    if let Some(content) = &view.node.content {
        out.line("content:")?;
        out.line(content)?;
    }
    out.flush()
}

fn print_node(view: &NodeView, out: &mut Output) -> Result<(), Error> {
    let node = &view.node;
    let optional = |text: &Option<String>| text.clone().unwrap_or_else(|| "-".into());
    let list = |items: &[String]| {
        if items.is_empty() {
            "-".to_owned()
        } else {
            items.join(", ")
        }
    };
    let rows = [
        ("id", node.id.clone()),
        ("type", node.node_type.clone()),
        ("value", node.value.clone()),
        ("language", optional(&node.language)),
        ("category", optional(&node.category)),
        ("capabilities", list(&node.capabilities)),
        ("dependencies", list(&node.dependencies)),
        ("examples", list(&node.examples)),
        ("linked_agents", list(&node.linked_agents)),
        ("created_at", time_or_dash(node.created_at)),
        ("updated_at", time_or_dash(node.updated_at)),
        ("hash", view.hash.to_prefixed()),
    ];
    for (name, value) in rows {
        out.line(format!("{name:<14}{value}"))?;
    }
    for (name, value) in &node.extra {
        out.line(format!("{name:<14}{value}"))?;
    }
    Ok(())
}
