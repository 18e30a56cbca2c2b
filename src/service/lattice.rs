//! The local lattice commands: import, export, add, get, delete, list, query, stats and
//! conflicts. Each opens the store, does one thing, and prints text or `--json`.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use miniserde::json::{self, Array, Object, Value};

use super::output::{
    Output, counts, node_with_meta, number, object, string, time_or_dash, truncate,
};
use super::session::Session;
use crate::cli;
use crate::config::IMPORT_BATCH;
use crate::error::Error;
use crate::input;
use crate::model::{Node, Shape, SignatureFormat, format_rfc3339, unix_millis_now};
use crate::store::{Body, Conflict, Deletion, Query, RecordMeta, Stats, Store, WriteSummary};

pub fn import(session: &mut Session<'_>, args: &cli::Import) -> Result<(), Error> {
    let store = &mut *session.store;
    let mut write = |batch: &[Node]| -> Result<WriteSummary, Error> {
        Ok(store.write_nodes(batch, unix_millis_now())?)
    };
    import_with(
        args,
        session.config.verbose,
        session.read_input,
        session.out,
        session.err,
        &mut write,
    )
}

/// `import`, with each batch of valid nodes (at most [`IMPORT_BATCH`]) handed to
/// `write`: the store here, or a running server that holds it (`remote`).
pub fn import_with(
    args: &cli::Import,
    verbose: bool,
    read_input: super::session::ReadInput<'_>,
    out: &mut Output,
    err: &mut Output,
    write: &mut dyn FnMut(&[Node]) -> Result<WriteSummary, Error>,
) -> Result<(), Error> {
    if args.files.is_empty() {
        return Err(Error::Usage(
            "import needs at least one FILE (or - for standard input)".into(),
        ));
    }
    let mut tally = ImportTally {
        verbose,
        write,
        batch: Vec::with_capacity(IMPORT_BATCH),
        totals: WriteSummary::default(),
        invalid: 0,
        unreadable: Vec::new(),
    };
    for file in &args.files {
        tally.import_file(file, read_input, err)?;
    }
    tally.report(args, out)
}

/// What an import has written and found wrong so far, across its files.
struct ImportTally<'a> {
    verbose: bool,
    write: &'a mut dyn FnMut(&[Node]) -> Result<WriteSummary, Error>,
    batch: Vec<Node>,
    totals: WriteSummary,
    invalid: u64,
    unreadable: Vec<String>,
}

impl ImportTally<'_> {
    /// Writes the batch read so far.
    fn commit(&mut self, source: &str, err: &mut Output) -> Result<(), Error> {
        let summary = (self.write)(&self.batch)?;
        self.totals.created += summary.created;
        self.totals.updated += summary.updated;
        self.totals.unchanged += summary.unchanged;
        if self.verbose {
            err.line(format!(
                "ark:import {source}: committed a batch of {}",
                self.batch.len()
            ))?;
        }
        self.batch.clear();
        Ok(())
    }

    /// Reads, checks and writes one file's records; a file that cannot be read is
    /// reported on `err` and noted, not an error of the import.
    fn import_file(
        &mut self,
        file: &str,
        read_input: super::session::ReadInput<'_>,
        err: &mut Output,
    ) -> Result<(), Error> {
        let opened = read_input(file).map_err(|error| error.to_string());
        let opened = opened.and_then(|(source, reader)| {
            let reader = std::io::BufReader::with_capacity(64 * 1024, reader);
            let records = input::RecordStream::new(&source, reader);
            Ok((source, records.map_err(|error| error.to_string())?))
        });
        let (source, records) = match opened {
            Ok(opened) => opened,
            Err(error) => {
                err.line(format!("error: {error}"))?;
                self.unreadable.push(file.to_owned());
                return Ok(());
            }
        };
        // Records are read, checked and committed a batch at a time: the document is
        // never held whole (issue #13). A document that breaks off partway has its
        // records before the break imported, and is reported as unreadable.
        let mut read = 0u64;
        for item in records {
            match item {
                Ok(Ok(node)) => {
                    read += 1;
                    self.batch.push(node);
                    if self.batch.len() == IMPORT_BATCH {
                        self.commit(&source, err)?;
                    }
                }
                Ok(Err(error)) => {
                    read += 1;
                    err.line(format!("invalid: {error}"))?;
                    self.invalid += 1;
                }
                Err(error) => {
                    if !self.batch.is_empty() {
                        self.commit(&source, err)?;
                    }
                    if read > 0 {
                        err.line(format!(
                            "error: {error} (the {read} record(s) before it were read and the valid ones imported)"
                        ))?;
                    } else {
                        err.line(format!("error: {error}"))?;
                    }
                    self.unreadable.push(file.to_owned());
                    return Ok(());
                }
            }
        }
        if !self.batch.is_empty() {
            self.commit(&source, err)?;
        }
        Ok(())
    }

    /// Prints the totals; unreadable files, then invalid records, make the error.
    fn report(self, args: &cli::Import, out: &mut Output) -> Result<(), Error> {
        let totals = self.totals;
        if args.json {
            out.json(&object([
                ("imported", number(totals.created)),
                ("updated", number(totals.updated)),
                ("unchanged", number(totals.unchanged)),
                ("invalid", number(self.invalid)),
                ("unreadable_files", number(self.unreadable.len() as u64)),
            ]))?;
        } else {
            out.line(format!(
                "imported {}, updated {}, unchanged {}, invalid {}",
                totals.created, totals.updated, totals.unchanged, self.invalid
            ))?;
        }
        out.flush()?;
        if !self.unreadable.is_empty() {
            return Err(Error::Input(format!(
                "could not read {} of {} file(s): {}",
                self.unreadable.len(),
                args.files.len(),
                self.unreadable.join(", ")
            )));
        }
        if self.invalid > 0 {
            return Err(Error::InvalidRecords {
                invalid: self.invalid,
            });
        }
        Ok(())
    }
}

/// Opens a file, or standard input for `-`.
pub fn read_input(file: &str) -> Result<(String, Box<dyn Read>), Error> {
    if file == "-" || file == "/dev/stdin" {
        return Ok(("<stdin>".to_owned(), Box::new(std::io::stdin())));
    }
    let opened = std::fs::File::open(file).map_err(|source| Error::File {
        path: PathBuf::from(file),
        source,
    })?;
    Ok((file.to_owned(), Box::new(opened)))
}

/// The export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ExportFormat {
    Json,
    Ndjson,
    Topics,
    ArkRows,
}

impl ExportFormat {
    fn parse(text: &str) -> Result<ExportFormat, Error> {
        match text {
            "json" => Ok(ExportFormat::Json),
            "ndjson" => Ok(ExportFormat::Ndjson),
            "topics" => Ok(ExportFormat::Topics),
            "ark-rows" => Ok(ExportFormat::ArkRows),
            other => Err(Error::Usage(format!(
                "export format {other:?} is not json, ndjson, topics or ark-rows"
            ))),
        }
    }
}

/// Topic name for nodes without a category in the topics export.
const UNCATEGORIZED: &str = "uncategorized";

/// Writes every intact node. Damaged ones are left out and reported; the export then
/// ends with exit code 6, so a backup script sees it is incomplete.
pub fn export(session: &mut Session<'_>, args: &cli::Export) -> Result<(), Error> {
    let damaged_before = session.store.damaged_found();
    export_intact(session, args)?;
    match session.store.damaged_found() - damaged_before {
        0 => Ok(()),
        left_out => Err(Error::StoreDamaged(format!(
            "the export left out {left_out} damaged record(s) (reported above); they are fetched again from a peer at the next sync"
        ))),
    }
}

fn export_intact(session: &mut Session<'_>, args: &cli::Export) -> Result<(), Error> {
    let format = ExportFormat::parse(&args.format)?;
    match &args.output {
        None => {
            write_export(session.store, format, &args.types, session.out)?;
            session.out.flush()
        }
        Some(path) => {
            // Write beside the target and rename, so a failed export never leaves a
            // half-written file where a good one was.
            let path = PathBuf::from(path);
            let temporary = temporary_path(&path);
            let file = std::fs::File::create(&temporary).map_err(|source| Error::File {
                path: temporary.clone(),
                source,
            })?;
            let mut file_out = Output::to(Box::new(std::io::BufWriter::new(file)));
            let result = write_export(session.store, format, &args.types, &mut file_out)
                .and_then(|count| file_out.flush().map(|()| count));
            drop(file_out);
            let count = match result {
                Ok(count) => count,
                Err(error) => {
                    let _ = std::fs::remove_file(&temporary);
                    return Err(error);
                }
            };
            std::fs::rename(&temporary, &path).map_err(|source| Error::File {
                path: path.clone(),
                source,
            })?;
            session
                .err
                .line(format!("exported {count} node(s) to {}", path.display()))?;
            Ok(())
        }
    }
}

fn temporary_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    path.with_file_name(name)
}

/// Writes every selected node; returns how many.
fn write_export(
    store: &Store,
    format: ExportFormat,
    types: &[String],
    out: &mut Output,
) -> Result<u64, Error> {
    let mut count = 0u64;
    let mut topics: BTreeMap<String, Array> = BTreeMap::new();
    let mut visit = |node: Node, out: &mut Output| -> Result<(), Error> {
        let shape = if format == ExportFormat::ArkRows {
            Shape::ArkRow
        } else {
            Shape::Native
        };
        let text = json::to_string(&Value::Object(node.to_json(shape)));
        match format {
            ExportFormat::Json | ExportFormat::ArkRows => {
                out.write(if count == 0 { b"[\n" } else { b",\n" })?;
                out.write(text.as_bytes())?;
            }
            ExportFormat::Ndjson => out.line(text)?,
            ExportFormat::Topics => {
                let topic = node
                    .category
                    .clone()
                    .unwrap_or_else(|| UNCATEGORIZED.to_owned());
                topics
                    .entry(topic)
                    .or_default()
                    .push(Value::Object(node.to_json(Shape::Native)));
            }
        }
        count += 1;
        Ok(())
    };
    let queries: Vec<Query> = if types.is_empty() {
        vec![Query::default()]
    } else {
        types
            .iter()
            .map(|node_type| Query {
                node_type: Some(node_type.clone()),
                ..Query::default()
            })
            .collect()
    };
    for query in &queries {
        let mut failure = None;
        store.scan(query, |node, _| match visit(node, out) {
            Ok(()) => true,
            Err(error) => {
                failure = Some(error);
                false
            }
        })?;
        if let Some(error) = failure {
            return Err(error);
        }
    }
    match format {
        ExportFormat::Json | ExportFormat::ArkRows => {
            out.write(if count == 0 { b"[]\n" } else { b"\n]\n" })?;
        }
        ExportFormat::Ndjson => {}
        ExportFormat::Topics => {
            let total = topics.values().map(|nodes| nodes.len() as u64).sum();
            let topic_list: Array = topics
                .into_iter()
                .map(|(name, nodes)| {
                    object([("name", string(name)), ("nodes", Value::Array(nodes))])
                })
                .collect();
            let document = object([
                (
                    "meta",
                    object([
                        (
                            "exported_by",
                            string(format!("ark-lattice {}", env!("CARGO_PKG_VERSION"))),
                        ),
                        ("exported_at", string(format_rfc3339(unix_millis_now()))),
                        ("total_nodes", number(total)),
                    ]),
                ),
                ("topics", Value::Array(topic_list)),
            ]);
            out.json(&document)?;
        }
    }
    Ok(count)
}

pub fn add(session: &mut Session<'_>, args: &cli::Add) -> Result<(), Error> {
    let mut node = match &args.json {
        Some(text) => {
            let value: Value = crate::model::parse_json(text)
                .map_err(|error| Error::Usage(format!("--json {error}")))?;
            Node::from_json(&value)
                .map_err(|error| Error::Usage(format!("invalid node: {error}")))?
        }
        None => node_from_flags(args)?,
    };
    let now = unix_millis_now();
    // A damaged record counts as none: the write replaces it.
    let existing = session.store.records(&[node.id.as_str()])?.pop();
    if node.created_at.is_none() {
        node.created_at = Some(match existing.as_ref().and_then(|record| record.node()) {
            Some(previous) => previous.created_at.unwrap_or(now),
            None => now,
        });
    }
    node.updated_at = Some(now);
    let summary = session
        .store
        .write_nodes(std::slice::from_ref(&node), now)?;
    let outcome = if summary.created > 0 {
        "added"
    } else if summary.updated > 0 {
        "updated"
    } else {
        "unchanged"
    };
    session.out.line(format!("{outcome} {}", node.id))?;
    session.out.flush()
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

pub fn get(session: &mut Session<'_>, args: &cli::Get) -> Result<(), Error> {
    let record = session
        .store
        .get(&args.id)?
        .ok_or_else(|| Error::NotFound(format!("node {:?}", args.id)))?;
    let node = match &record.body {
        Body::Live(node) => node,
        Body::Deleted { deleted_at } => {
            // Scripts learn which delete they see (and that it is not just missing);
            // the exit code stays "not found".
            if args.json {
                session.out.json(&object([
                    ("id", string(args.id.clone())),
                    ("deleted_at", string(format_rfc3339(*deleted_at))),
                    ("version", string(record.meta.version.to_wire())),
                ]))?;
                session.out.flush()?;
            }
            return Err(Error::NotFound(format!(
                "node {:?} (deleted at {})",
                args.id,
                format_rfc3339(*deleted_at)
            )));
        }
    };
    if args.json {
        let mut value = node_with_meta(node, &record.meta);
        if args.provenance {
            if let Value::Object(object) = &mut value {
                object.insert("provenance".into(), provenance_json(&record.meta));
            }
        }
        session.out.json(&value)?;
        return session.out.flush();
    }
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
        ("hash", record.meta.hash.to_prefixed()),
    ];
    for (name, value) in rows {
        session.out.line(format!("{name:<14}{value}"))?;
    }
    for (name, value) in &node.extra {
        session.out.line(format!("{name:<14}{value}"))?;
    }
    if args.provenance {
        session.out.line(format!(
            "{:<14}{}",
            "written by", record.meta.version.origin
        ))?;
        session.out.line(format!(
            "{:<14}{} (clock {})",
            "written at",
            format_rfc3339(record.meta.version.hlc.millis()),
            record.meta.version.hlc
        ))?;
        session.out.line(format!(
            "{:<14}{}",
            "signature",
            match record.meta.signature.map(|signature| signature.format) {
                Some(SignatureFormat::V2) => "format 2",
                Some(SignatureFormat::V1) => "format 1 (an older node's: id and base not covered)",
                None => "none",
            }
        ))?;
    }
    if let Some(content) = &node.content {
        session.out.line("content:")?;
        session.out.line(content)?;
    }
    session.out.flush()
}

fn provenance_json(meta: &RecordMeta) -> Value {
    object([
        ("origin", string(meta.version.origin.to_hex())),
        (
            "written_at",
            string(format_rfc3339(meta.version.hlc.millis())),
        ),
        ("version", string(meta.version.to_wire())),
        ("signed", Value::Bool(meta.signature.is_some())),
        (
            "signature_format",
            match meta.signature.map(|signature| signature.format) {
                Some(SignatureFormat::V2) => Value::Number(miniserde::json::Number::U64(2)),
                Some(SignatureFormat::V1) => Value::Number(miniserde::json::Number::U64(1)),
                None => Value::Null,
            },
        ),
    ])
}

pub fn delete(session: &mut Session<'_>, args: &cli::Delete) -> Result<(), Error> {
    // A delete repeated after its answer was lost finds the tombstone: that is
    // success, said as such (issue #16).
    let already = match session.store.delete(&args.id, unix_millis_now())? {
        Deletion::Deleted => false,
        Deletion::AlreadyDeleted => true,
        Deletion::NotFound => return Err(Error::NotFound(format!("node {:?}", args.id))),
    };
    if args.json {
        session.out.json(&object([
            ("deleted", string(args.id.clone())),
            ("already_deleted", Value::Bool(already)),
        ]))?;
    } else if already {
        session
            .out
            .line(format!("{} was already deleted; nothing to do", args.id))?;
    } else {
        session.out.line(format!(
            "deleted {} (a tombstone carries the delete to peers)",
            args.id
        ))?;
    }
    session.out.flush()
}

pub fn list(session: &mut Session<'_>, args: &cli::List) -> Result<(), Error> {
    let query = Query {
        node_type: args.node_type.clone(),
        limit: (args.limit > 0).then_some(args.limit),
        ..Query::default()
    };
    print_nodes(session, &query, args.json)
}

pub fn query(session: &mut Session<'_>, args: &cli::QueryArgs) -> Result<(), Error> {
    let query = Query {
        node_type: args.node_type.clone(),
        language: args.language.clone(),
        category: args.category.clone(),
        capability: args.capability.clone(),
        search: args.search.clone(),
        after: None,
        limit: (args.limit > 0).then_some(args.limit),
    };
    print_nodes(session, &query, args.json)
}

fn print_nodes(session: &mut Session<'_>, query: &Query, as_json: bool) -> Result<(), Error> {
    let found = session.store.query(query)?;
    let out = &mut *session.out;
    if as_json {
        let nodes: Array = found
            .iter()
            .map(|(node, meta)| node_with_meta(node, meta))
            .collect();
        out.json(&object([
            ("count", number(nodes.len() as u64)),
            ("nodes", Value::Array(nodes)),
        ]))?;
        return out.flush();
    }
    if !found.is_empty() {
        out.line(format!(
            "{:<32} {:<16} {:<12} {}",
            "ID", "TYPE", "LANGUAGE", "VALUE"
        ))?;
    }
    for (node, _) in &found {
        out.line(format!(
            "{:<32} {:<16} {:<12} {}",
            truncate(&node.id, 32),
            truncate(&node.node_type, 16),
            truncate(node.language.as_deref().unwrap_or("-"), 12),
            truncate(&node.value, 60)
        ))?;
    }
    out.line(format!("{} node(s)", found.len()))?;
    out.flush()
}

pub fn stats(session: &mut Session<'_>, args: &cli::Stats) -> Result<(), Error> {
    let stats = session.store.stats()?;
    let name = session
        .config
        .instance_name(&session.store.instance_id().short());
    if args.json {
        let mut object = match stats_json(&stats) {
            Value::Object(object) => object,
            _ => unreachable!("stats are an object"),
        };
        object.insert(
            "instance_id".into(),
            string(session.store.instance_id().to_hex()),
        );
        object.insert("instance_name".into(), string(name));
        object.insert(
            "instance_type".into(),
            string(session.config.instance_type.to_string()),
        );
        session.out.json(&Value::Object(object))?;
        return session.out.flush();
    }
    session.out.line(format!(
        "instance    {name} ({})",
        session.store.instance_id()
    ))?;
    session.out.line(format!(
        "store       {} ({:.1} MiB)",
        session.store.path().display(),
        stats.file_bytes as f64 / 1_048_576.0
    ))?;
    session.out.line(format!("nodes       {}", stats.nodes))?;
    session
        .out
        .line(format!("tombstones  {}", stats.tombstones))?;
    session
        .out
        .line(format!("conflicts   {}", stats.conflicts))?;
    if stats.damaged > 0 {
        session.out.line(format!(
            "damaged     {} (moved aside; see `ark-lattice verify`)",
            stats.damaged
        ))?;
    }
    for (title, map) in [
        ("by type", &stats.by_type),
        ("by language", &stats.by_language),
        ("by category", &stats.by_category),
    ] {
        session.out.line(format!("{title}:"))?;
        let mut sorted: Vec<_> = map.iter().collect();
        sorted.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        for (key, count) in sorted {
            session.out.line(format!("  {key:<30} {count}"))?;
        }
    }
    session.out.flush()
}

pub fn conflicts(session: &mut Session<'_>, args: &cli::Conflicts) -> Result<(), Error> {
    // `--limit 0` means all, as for `list`.
    let conflicts = session
        .store
        .conflicts((args.limit > 0).then_some(args.limit))?;
    let total = session.store.conflict_count()?;
    if args.json {
        session.out.json(&conflicts_json(&conflicts, total))?;
        return session.out.flush();
    }
    for conflict in &conflicts {
        let what = match &conflict.loser.body {
            Body::Live(node) => format!("value {:?}", truncate(&node.value, 40)),
            Body::Deleted { .. } => "a delete".to_owned(),
        };
        session.out.line(format!(
            "#{} {} at {}: lost {} by {} (winner {})",
            conflict.number,
            conflict.loser.id,
            format_rfc3339(conflict.resolved_at),
            what,
            conflict.loser.meta.version.origin.short(),
            conflict.winner.origin.short()
        ))?;
    }
    session
        .out
        .line(format!("{} of {total} conflict(s) shown", conflicts.len()))?;
    session.out.flush()
}

/// Store counts as `stats --json` and `GET /api/lattice/stats` print them.
pub fn stats_json(stats: &Stats) -> Value {
    object([
        ("nodes", number(stats.nodes)),
        ("tombstones", number(stats.tombstones)),
        ("conflicts", number(stats.conflicts)),
        ("damaged", number(stats.damaged)),
        ("last_seq", number(stats.last_seq)),
        ("store_bytes", number(stats.file_bytes)),
        ("by_type", counts(&stats.by_type)),
        ("by_language", counts(&stats.by_language)),
        ("by_category", counts(&stats.by_category)),
    ])
}

/// The conflict log as `{count, conflicts: [...]}`, for `--json` and the API: `count`
/// is how many the log holds, `conflicts` the newest of them as asked.
pub fn conflicts_json(conflicts: &[Conflict], total: u64) -> Value {
    let list: Array = conflicts
        .iter()
        .map(|conflict| {
            let mut entry = Object::new();
            entry.insert("number".into(), number(conflict.number));
            entry.insert("id".into(), string(conflict.loser.id.clone()));
            entry.insert(
                "resolved_at".into(),
                string(format_rfc3339(conflict.resolved_at)),
            );
            entry.insert("winner_version".into(), string(conflict.winner.to_wire()));
            entry.insert(
                "loser_version".into(),
                string(conflict.loser.meta.version.to_wire()),
            );
            let loser = match &conflict.loser.body {
                Body::Live(node) => node_with_meta(node, &conflict.loser.meta),
                Body::Deleted { .. } => Value::Null,
            };
            entry.insert("loser".into(), loser);
            Value::Object(entry)
        })
        .collect();
    object([("count", number(total)), ("conflicts", Value::Array(list))])
}
