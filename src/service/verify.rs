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
use super::verify_report::{PagesReport, RecordsReport, VerifyReport};
use crate::config::{Config, KeySource};
use crate::error::Error;
use crate::model::{ClaimedContent, InstanceId, RecordClaim, SignatureFormat};
use crate::store::{
    PageCheck, RecordCheck, RecordMeta, SignatureCheck, StateTable, Store, StoreError, StoredBody,
};
use crate::sync::trust_book;
use crate::trust::{PublicKey, Signature, verify_record, verify_record_v1};

/// `verify` in this process on a store it holds: the CLI's own with
/// `--skip-page-check`, or the server's (`GET /api/lattice/verify`). On pages redb
/// found damaged the records are not read: that could stop the process.
pub(crate) fn verify_store(
    store: &mut Store,
    config: &Config,
    skip_page_check: bool,
) -> Result<VerifyReport, Error> {
    let pages = if skip_page_check {
        None
    } else {
        Some(store.check_pages()?)
    };
    let records = match &pages {
        Some(PageCheck::Damaged(_)) => RecordsReport::NotRead(
            "not read: reading damaged pages could stop this process; stop `serve` and run `ark-lattice verify` again"
                .to_owned(),
        ),
        _ => RecordsReport::Read(check_records(store, &own_key(config))?),
    };
    Ok(VerifyReport {
        store: store.path().display().to_string(),
        pages: PagesReport::of(pages.as_ref()),
        pages_after: None,
        records,
    })
}

/// `verify` from the CLI when no server holds the store: damaged records are moved
/// aside, by a child process when the pages are damaged. A store held by a server is
/// an error the caller answers by asking the server.
pub(crate) fn verify_offline(config: &Config) -> Result<VerifyReport, Error> {
    let (mut store, _) = open_store(config)?;
    let pages = store.check_pages()?;
    let path = store.path().display().to_string();
    if !matches!(pages, PageCheck::Damaged(_)) {
        let records = check_records(&store, &own_key(config))?;
        crate::sync::move_aside_damaged(&mut store);
        return Ok(VerifyReport {
            store: path,
            pages: PagesReport::of(Some(&pages)),
            pages_after: None,
            records: RecordsReport::Read(records),
        });
    }
    drop(store);
    let (records, pages_after) = move_aside_in_child(config)?;
    Ok(VerifyReport {
        store: path,
        pages: PagesReport::of(Some(&pages)),
        pages_after: pages_after
            .as_ref()
            .map(|pages| PagesReport::of(Some(pages))),
        records,
    })
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
        let moved = records.damaged().len();
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
fn move_aside_in_child(config: &Config) -> Result<(RecordsReport, Option<PageCheck>), Error> {
    let records = read_records_in_child(config);
    if records.damaged().is_empty() {
        return Ok((records, None));
    }
    let (mut store, _) = open_store(config)?;
    Ok((records, Some(store.check_pages()?)))
}

/// Runs `verify --skip-page-check --json` as a child on the same state dir, key and
/// cache (the environment is passed on), and returns its `records` part, or why the
/// records could not be read.
fn read_records_in_child(config: &Config) -> RecordsReport {
    let not_read = RecordsReport::NotRead;
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
    let report = answer.and_then(|answer| match answer {
        Value::Object(report) => VerifyReport::from_json(&report, "the reader's report").ok(),
        _ => None,
    });
    match report {
        Some(report) => report.records,
        None => {
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
