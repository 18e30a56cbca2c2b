//! `ark-lattice verify`: redb's check of every page, then every record read and checked
//! (content hash, id, signature, change log). What is damaged is printed with its table
//! and id; damaged records are moved aside so peers bring them back.
//!
//! # Implementation
//!
//! redb may stop the process on a damaged page (a panic, and release builds abort), so
//! when its page check fails, the records are read by a child process
//! (`verify --skip-page-check --json`): if a damaged page ends the child, the report
//! says so instead of ending with it. When the child moved damaged records aside, the
//! pages are checked again: a record rewritten elsewhere takes its damaged page out of
//! the tree. `serve` goes the same way before it listens ([`check_before_serving`]), so
//! a node whose only damage is inside records starts again by itself and fetches them
//! from its peers.

use std::cell::RefCell;
use std::collections::HashMap;

use miniserde::json::{self, Value};

use super::open::open_store;
use super::output::{number, object, string};
use super::session::Session;
use crate::cli;
use crate::config::{Config, KeySource};
use crate::error::Error;
use crate::model::{ClaimedContent, InstanceId, RecordClaim, SignatureFormat};
use crate::store::{
    PageCheck, RecordCheck, RecordMeta, SignatureCheck, StateTable, Store, StoreError, StoredBody,
};
use crate::sync::trust_book;
use crate::trust::{PublicKey, Signature, verify_record, verify_record_v1};

/// `verify` in this process, on a store a session holds (the CLI's own, or the
/// server's when the command was forwarded to it).
pub(crate) fn verify(session: &mut Session<'_>, args: &cli::Verify) -> Result<(), Error> {
    let pages = if args.skip_page_check {
        None
    } else {
        Some(session.store.check_pages()?)
    };
    let records = match &pages {
        Some(PageCheck::Damaged(_)) => Err(
            "not read: reading damaged pages could stop this process; stop `serve` and run `ark-lattice verify` again"
                .to_owned(),
        ),
        _ => Ok(check_records(session.store, &own_key(session.config))?),
    };
    let report = Report {
        store: session.store.path().display().to_string(),
        pages: pages_json(pages.as_ref()),
        pages_after: None,
        records: records_json(&records),
    };
    print(session.out, &report, args.json)
}

/// `verify` from the CLI when no server holds the store. A store held by a server is
/// an error the caller answers by forwarding the command.
pub(crate) fn verify_offline(
    config: &Config,
    args: &cli::Verify,
    out: &mut super::Output,
) -> Result<(), Error> {
    let (mut store, _) = open_store(config)?;
    let pages = store.check_pages()?;
    let path = store.path().display().to_string();
    if !matches!(pages, PageCheck::Damaged(_)) {
        let records = check_records(&store, &own_key(config))?;
        crate::sync::move_aside_damaged(&mut store);
        let report = Report {
            store: path,
            pages: pages_json(Some(&pages)),
            pages_after: None,
            records: records_json(&Ok(records)),
        };
        return print(out, &report, args.json);
    }
    drop(store);
    let (records, pages_after) = move_aside_in_child(config)?;
    let report = Report {
        store: path,
        pages: pages_json(Some(&pages)),
        pages_after: pages_after.as_ref().map(|pages| pages_json(Some(pages))),
        records,
    };
    print(out, &report, args.json)
}

/// What `serve` does before it opens the store for good: redb's page check, and when
/// it fails, what `verify` does (damaged records moved aside by a child, the pages
/// checked again). Refuses the store if pages stay damaged.
pub(crate) fn check_before_serving(config: &Config) -> Result<(), Error> {
    let started = std::time::Instant::now();
    let (mut store, _) = super::open::open_store_for_server(config)?;
    let path = store.path().to_owned();
    let reason = match store.check_pages()? {
        PageCheck::Clean => None,
        PageCheck::Repaired => {
            eprintln!(
                "notice: store {}: redb found and repaired an inconsistency in its pages",
                path.display()
            );
            None
        }
        PageCheck::Damaged(reason) => Some(reason),
    };
    drop(store);
    if config.verbose {
        eprintln!(
            "store pages checked in {} ms",
            started.elapsed().as_millis()
        );
    }
    let Some(reason) = reason else {
        return Ok(());
    };
    eprintln!(
        "warning: store {} failed redb's page check ({reason}); reading every record to move damaged ones aside",
        path.display()
    );
    let (records, pages_after) = move_aside_in_child(config)?;
    if pages_after == Some(PageCheck::Clean) {
        let moved = match field(&records, "damaged") {
            Some(Value::Array(list)) => list.len(),
            _ => 0,
        };
        eprintln!(
            "notice: store {}: {moved} damaged record(s) moved aside and the pages check clean again; the next sync fetches the records from peers",
            path.display()
        );
        return Ok(());
    }
    Err(Error::Store(StoreError::DamagedPages { path, reason }))
}

/// Reads every record in a child process, which moves damaged ones aside; when it
/// moved any, checks the pages again. Returns the child's `records` report and the
/// second page check.
fn move_aside_in_child(config: &Config) -> Result<(Value, Option<PageCheck>), Error> {
    let records = read_records_in_child(config);
    let moved = matches!(field(&records, "damaged"), Some(Value::Array(list)) if !list.is_empty());
    if !moved {
        return Ok((records, None));
    }
    let (mut store, _) = open_store(config)?;
    Ok((records, Some(store.check_pages()?)))
}

/// Runs `verify --skip-page-check --json` as a child on the same state dir, key and
/// cache (the environment is passed on), and returns its `records` part, or why the
/// records could not be read.
fn read_records_in_child(config: &Config) -> Value {
    let not_read = |reason: String| records_json(&Err(reason));
    let program = match std::env::current_exe() {
        Ok(program) => program,
        Err(error) => return not_read(format!("cannot find this program to read them: {error}")),
    };
    let mut command = std::process::Command::new(program);
    command
        .arg("--data-dir")
        .arg(&config.data_dir)
        .arg("--cache-mb")
        .arg((config.cache_bytes / (1024 * 1024)).max(1).to_string());
    if let KeySource::File(path) = &config.key_source {
        command.arg("--key-file").arg(path);
    }
    let output = command
        .args(["verify", "--skip-page-check", "--json"])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .output();
    let output = match output {
        Ok(output) => output,
        Err(error) => return not_read(format!("cannot start the reader: {error}")),
    };
    let answer = std::str::from_utf8(&output.stdout)
        .ok()
        .and_then(|text| json::from_str::<Value>(text.trim()).ok());
    match answer {
        Some(Value::Object(mut report)) => report
            .remove("records")
            .unwrap_or_else(|| not_read("the reader gave no records".into())),
        _ => {
            use std::os::unix::process::ExitStatusExt;
            let how = match output.status.signal() {
                Some(signal) => format!("was ended by signal {signal}"),
                None => format!("exited with {}", output.status.code().unwrap_or(-1)),
            };
            not_read(format!(
                "reading them stopped at a damaged page (the reader {how})"
            ))
        }
    }
}

fn signature_format(meta: &RecordMeta) -> SignatureFormat {
    meta.signature
        .map_or(SignatureFormat::V2, |signature| signature.format)
}

fn own_key(config: &Config) -> Option<PublicKey> {
    super::open::identity(config)
        .ok()
        .map(|key| key.public_key())
}

/// Reads and checks every record, signatures included, with the keys this instance
/// knows: its own, those learned from verified records and those in the trust store.
fn check_records(store: &Store, own: &Option<PublicKey>) -> Result<RecordCheck, Error> {
    let keys: RefCell<HashMap<InstanceId, Option<PublicKey>>> = RefCell::new(HashMap::new());
    if let Some(own) = own {
        keys.borrow_mut().insert(own.instance_id(), Some(*own));
    }
    let key_of = |origin: &InstanceId| -> Option<PublicKey> {
        if let Some(known) = keys.borrow().get(origin) {
            return *known;
        }
        let learned = store
            .state(StateTable::AuthorKeys, &origin.to_hex())
            .ok()
            .flatten()
            .and_then(|bytes| PublicKey::from_bytes(&bytes).ok());
        let key = learned.or_else(|| {
            trust_book::entry(store, origin)
                .ok()
                .flatten()
                .map(|entry| entry.public_key)
        });
        keys.borrow_mut().insert(*origin, key);
        key
    };
    let check = |id: &str, body: StoredBody<'_>, meta: &RecordMeta| {
        let Some(signature) = &meta.signature else {
            return SignatureCheck::Unchecked;
        };
        let Some(key) = key_of(&meta.version.origin) else {
            return SignatureCheck::Unchecked;
        };
        // Each signature is checked in the format it was made in (see
        // `trust::record`); stored format 1 tombstones are other authors' records kept
        // as they came, and their format 1 bytes are the version over nothing.
        let verified = |signature: &Signature| match (signature_format(meta), body) {
            (SignatureFormat::V2, body) => {
                let content = match body {
                    StoredBody::Live(_) => ClaimedContent::Live(meta.hash),
                    StoredBody::Deleted { deleted_at } => ClaimedContent::Deleted { deleted_at },
                };
                let claim = RecordClaim {
                    id,
                    content,
                    version: meta.version,
                    base: meta.base,
                };
                verify_record(&key, &claim, signature)
            }
            (SignatureFormat::V1, StoredBody::Live(canonical)) => {
                verify_record_v1(&key, canonical, &meta.version, signature)
            }
            (SignatureFormat::V1, StoredBody::Deleted { .. }) => {
                verify_record_v1(&key, &[], &meta.version, signature)
            }
        };
        match Signature::from_bytes(&signature.bytes)
            .map_err(|error| error.to_string())
            .and_then(|signature| verified(&signature).map_err(|error| error.to_string()))
        {
            Ok(()) => SignatureCheck::Valid,
            Err(reason) => SignatureCheck::Invalid(reason),
        }
    };
    Ok(store.verify_records(&check)?)
}

struct Report {
    store: String,
    pages: Value,
    /// The page check again, after damaged records were moved aside.
    pages_after: Option<Value>,
    records: Value,
}

fn pages_json(pages: Option<&PageCheck>) -> Value {
    match pages {
        None => object([("status", string("skipped"))]),
        Some(PageCheck::Clean) => object([("status", string("clean"))]),
        Some(PageCheck::Repaired) => object([("status", string("repaired"))]),
        Some(PageCheck::Damaged(reason)) => object([
            ("status", string("damaged")),
            ("reason", string(reason.as_str())),
        ]),
    }
}

fn records_json(records: &Result<RecordCheck, String>) -> Value {
    match records {
        Err(reason) => object([
            ("status", string("not_read")),
            ("reason", string(reason.as_str())),
            ("damaged", Value::Array(Default::default())),
        ]),
        Ok(check) => object([
            ("status", string("read")),
            ("nodes", number(check.nodes)),
            ("tombstones", number(check.tombstones)),
            ("conflicts", number(check.conflicts)),
            ("changes", number(check.changes)),
            ("signed", number(check.signed)),
            ("unchecked_signatures", number(check.unchecked_signatures)),
            ("moved_aside_before", number(check.moved_aside)),
            (
                "damaged",
                Value::Array(
                    check
                        .damaged
                        .iter()
                        .map(|damaged| {
                            object([
                                ("table", string(damaged.table.name())),
                                ("id", string(damaged.id.as_str())),
                                ("reason", string(damaged.reason.as_str())),
                            ])
                        })
                        .collect(),
                ),
            ),
        ]),
    }
}

fn field<'a>(value: &'a Value, name: &str) -> Option<&'a Value> {
    match value {
        Value::Object(fields) => fields.get(name),
        _ => None,
    }
}

fn text_of<'a>(value: &'a Value, name: &str) -> &'a str {
    match field(value, name) {
        Some(Value::String(text)) => text,
        _ => "",
    }
}

fn number_of(value: &Value, name: &str) -> String {
    match field(value, name) {
        Some(Value::Number(n)) => n.to_string(),
        _ => "?".into(),
    }
}

fn print(out: &mut super::Output, report: &Report, as_json: bool) -> Result<(), Error> {
    let damaged: &[Value] = match field(&report.records, "damaged") {
        Some(Value::Array(list)) => list,
        _ => &[],
    };
    let pages_ok = |pages: &Value| text_of(pages, "status") != "damaged";
    let pages_now_ok = match &report.pages_after {
        Some(after) => pages_ok(after),
        None => pages_ok(&report.pages),
    };
    let records_read = text_of(&report.records, "status") == "read";
    let ok = pages_now_ok && records_read && damaged.is_empty();
    if as_json {
        let mut fields = vec![
            ("store", string(report.store.as_str())),
            ("ok", Value::Bool(ok)),
            ("pages", report.pages.clone()),
            ("records", report.records.clone()),
        ];
        if let Some(after) = &report.pages_after {
            fields.push(("pages_after_moving_aside", after.clone()));
        }
        let mut map = miniserde::json::Object::new();
        for (name, value) in fields {
            map.insert(name.into(), value);
        }
        out.json(&Value::Object(map))?;
    } else {
        print_text(out, report, damaged, records_read)?;
    }
    out.flush()?;
    if ok {
        return Ok(());
    }
    if as_json {
        // The report says it all; the exit code tells scripts.
        return Err(Error::Reported {
            code: crate::error::exit::STORE_DAMAGED,
        });
    }
    Err(problems(report, pages_now_ok, records_read, damaged.len()))
}

/// The report for people.
fn print_text(
    out: &mut super::Output,
    report: &Report,
    damaged: &[Value],
    records_read: bool,
) -> Result<(), Error> {
    let pages_line = |pages: &Value| match text_of(pages, "status") {
        "damaged" => format!("DAMAGED: {}", text_of(pages, "reason")),
        "repaired" => "repaired by redb".into(),
        status => status.to_owned(),
    };
    out.line(format!("store       {}", report.store))?;
    out.line(format!("pages       {}", pages_line(&report.pages)))?;
    if let Some(after) = &report.pages_after {
        out.line(format!(
            "pages after moving damaged records aside: {}",
            pages_line(after)
        ))?;
    }
    if records_read {
        let records = &report.records;
        out.line(format!(
            "records     {} nodes, {} tombstones, {} conflict entries, {} changes",
            number_of(records, "nodes"),
            number_of(records, "tombstones"),
            number_of(records, "conflicts"),
            number_of(records, "changes"),
        ))?;
        out.line(format!(
            "signatures  {} valid, {} not checkable (unsigned or author key unknown)",
            number_of(records, "signed"),
            number_of(records, "unchecked_signatures"),
        ))?;
    } else {
        out.line(format!(
            "records     {}",
            text_of(&report.records, "reason")
        ))?;
    }
    out.line(format!("damaged     {}", damaged.len()))?;
    for record in damaged {
        out.line(format!(
            "  {} {:?}: {}",
            text_of(record, "table"),
            text_of(record, "id"),
            text_of(record, "reason")
        ))?;
    }
    Ok(())
}

/// The error a check that found problems ends with: each problem, and what to do.
fn problems(report: &Report, pages_now_ok: bool, records_read: bool, damaged: usize) -> Error {
    let mut problems = Vec::new();
    if !pages_now_ok {
        problems.push(
            "damaged pages that are not records (move the file away and sync it again from a peer)"
                .to_owned(),
        );
    }
    if !records_read {
        problems.push("records that could not be read".to_owned());
    }
    if damaged > 0 {
        problems.push(format!(
            "{damaged} damaged record(s) (those whose bytes do not match their content hash were moved aside, to be fetched again from a peer at the next sync)"
        ));
    }
    Error::StoreDamaged(format!(
        "store {} has {}; see README, \"A damaged store\"",
        report.store,
        problems.join(" and ")
    ))
}
