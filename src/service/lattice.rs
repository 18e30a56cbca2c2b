//! The lattice operations. `import` still prints text or `--json` itself; add, get,
//! delete, list and query, stats and conflicts return typed answers (`views`) that the
//! CLI and the control API render (`export` is `export.rs`).

use std::io::Read;
use std::path::PathBuf;

use super::output::{Output, number, object};
use super::views::{
    AddOutcome, Added, ConflictList, ConflictView, Deleted, InstanceLabel, NodeList, NodeView,
    StatsReport, StoredRecord,
};
use crate::cli;
use crate::config::{Config, IMPORT_BATCH};
use crate::error::Error;
use crate::input::{self, StreamItem};
use crate::model::{Node, unix_millis_now};
use crate::store::{Body, Deletion, Query, Store, WriteSummary};

/// Opens an input file by the name given on the command line: its name for messages
/// and a reader, so an import reads it record by record (on a thread of its own).
pub(crate) type ReadInput<'a> =
    &'a dyn Fn(&str) -> Result<(String, Box<dyn std::io::Read + Send>), Error>;

/// `import`, with each batch of valid nodes (at most [`IMPORT_BATCH`]) handed to
/// `write`: the store here, or a running server that holds it (`remote`). A thread
/// reads and checks the records while `write` takes the batch before; this runs in the
/// CLI's process only, never in the server, which keeps to its one thread.
pub(crate) fn import_with(
    args: &cli::Import,
    verbose: bool,
    read_input: ReadInput<'_>,
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
        read_input: ReadInput<'_>,
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
        // Reading and checking records is about a fifth of an import's time (issue 13):
        // a thread does it while this one signs and writes. It runs at most
        // `PARSE_AHEAD_CHUNKS` chunks of `PARSE_AHEAD_RECORDS` ahead, so the import holds
        // few more records than its batch (2,000 more took its peak RSS past 32 MB).
        const PARSE_AHEAD_RECORDS: usize = 200;
        const PARSE_AHEAD_CHUNKS: usize = 2;
        std::thread::scope(|scope| {
            let (sender, receiver) =
                std::sync::mpsc::sync_channel::<Vec<StreamItem>>(PARSE_AHEAD_CHUNKS);
            scope.spawn(move || {
                let mut chunk = Vec::with_capacity(PARSE_AHEAD_RECORDS);
                for item in records {
                    let ends = item.is_err();
                    chunk.push(item);
                    if chunk.len() == PARSE_AHEAD_RECORDS || ends {
                        // A closed channel means the import stopped on an error here.
                        if sender.send(std::mem::take(&mut chunk)).is_err() || ends {
                            return;
                        }
                    }
                }
                let _ = sender.send(chunk);
            });
            for chunk in receiver {
                for item in chunk {
                    if !self.take(item, &source, file, &mut read, err)? {
                        return Ok(());
                    }
                }
            }
            self.finish_file(&source, err)
        })
    }

    /// Takes one item of a file's stream: a node into the batch (committed when full),
    /// an invalid record counted, or the end of a document that cannot be read on
    /// (`false`: the file is done).
    fn take(
        &mut self,
        item: StreamItem,
        source: &str,
        file: &str,
        read: &mut u64,
        err: &mut Output,
    ) -> Result<bool, Error> {
        match item {
            Ok(Ok(node)) => {
                *read += 1;
                self.batch.push(node);
                if self.batch.len() == IMPORT_BATCH {
                    self.commit(source, err)?;
                }
            }
            Ok(Err(error)) => {
                *read += 1;
                err.line(format!("invalid: {error}"))?;
                self.invalid += 1;
            }
            Err(error) => {
                if !self.batch.is_empty() {
                    self.commit(source, err)?;
                }
                if *read > 0 {
                    err.line(format!(
                        "error: {error} (the {read} record(s) before it were read and the valid ones imported)"
                    ))?;
                } else {
                    err.line(format!("error: {error}"))?;
                }
                self.unreadable.push(file.to_owned());
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Commits what is left of a file's records.
    fn finish_file(&mut self, source: &str, err: &mut Output) -> Result<(), Error> {
        if !self.batch.is_empty() {
            self.commit(source, err)?;
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
pub(crate) fn read_input(file: &str) -> Result<(String, Box<dyn Read + Send>), Error> {
    if file == "-" || file == "/dev/stdin" {
        return Ok(("<stdin>".to_owned(), Box::new(std::io::stdin())));
    }
    let opened = std::fs::File::open(file).map_err(|source| Error::File {
        path: PathBuf::from(file),
        source,
    })?;
    Ok((file.to_owned(), Box::new(opened)))
}

/// Writes one node as a local edit: `created_at` as given, else kept from the version it
/// replaces (a damaged record counts as none: the write replaces it), else now;
/// `updated_at` now.
pub(crate) fn add_node(store: &mut Store, mut node: Node) -> Result<Added, Error> {
    let now = unix_millis_now();
    let existing = store.records(&[node.id.as_str()])?.pop();
    if node.created_at.is_none() {
        node.created_at = Some(match existing.as_ref().and_then(|record| record.node()) {
            Some(previous) => previous.created_at.unwrap_or(now),
            None => now,
        });
    }
    node.updated_at = Some(now);
    let summary = store.write_nodes(std::slice::from_ref(&node), now)?;
    let outcome = if summary.created > 0 {
        AddOutcome::Added
    } else if summary.updated > 0 {
        AddOutcome::Updated
    } else {
        AddOutcome::Unchanged
    };
    Ok(Added {
        id: node.id,
        outcome,
    })
}

/// `get`: the record stored under `id`, live or a tombstone; not found when never
/// stored (or purged).
pub(crate) fn get_record(store: &Store, id: &str) -> Result<StoredRecord, Error> {
    let record = store
        .get(id)?
        .ok_or_else(|| Error::NotFound(format!("node {id:?} not found")))?;
    Ok(match record.body {
        Body::Live(node) => StoredRecord::Live {
            view: Box::new(NodeView::new(node, &record.meta)),
            signature: record.meta.signature.map(|signature| signature.format),
        },
        Body::Deleted { deleted_at } => StoredRecord::Deleted {
            id: id.to_owned(),
            deleted_at,
            version: record.meta.version,
        },
    })
}

/// Deletes a node: a tombstone carries the delete to peers. A node already deleted is
/// success, said as such; one never stored is not found.
pub(crate) fn delete_node(store: &mut Store, id: &str) -> Result<Deleted, Error> {
    let already_deleted = match store.delete(id, unix_millis_now())? {
        Deletion::Deleted => false,
        Deletion::AlreadyDeleted => true,
        Deletion::NotFound => return Err(Error::NotFound(format!("node {id:?} not found"))),
    };
    Ok(Deleted {
        id: id.to_owned(),
        already_deleted,
    })
}

/// The live node `id`, with its sync metadata (`None` when deleted or never stored).
pub(crate) fn live_node(store: &Store, id: &str) -> Result<Option<NodeView>, Error> {
    let record = store.get(id)?;
    Ok(record.and_then(|record| {
        let meta = record.meta;
        match record.body {
            Body::Live(node) => Some(NodeView::new(node, &meta)),
            Body::Deleted { .. } => None,
        }
    }))
}

/// The live nodes `query` selects, with their sync metadata.
pub(crate) fn find_nodes(store: &Store, query: &Query) -> Result<NodeList, Error> {
    let nodes = store
        .query(query)?
        .into_iter()
        .map(|(node, meta)| NodeView::new(node, &meta))
        .collect();
    Ok(NodeList { nodes })
}

/// The store's counts and whose store it is.
pub(crate) fn stats(store: &Store, config: &Config) -> Result<StatsReport, Error> {
    let instance_id = store.instance_id();
    Ok(StatsReport {
        stats: store.stats()?,
        instance: InstanceLabel {
            id: instance_id,
            name: config.instance_name(&instance_id.short()),
            kind: config.instance_type.to_string(),
        },
    })
}

/// The newest `limit` entries of the conflict log (all for `None`) and how many it holds.
pub(crate) fn conflicts(store: &Store, limit: Option<usize>) -> Result<ConflictList, Error> {
    Ok(ConflictList {
        conflicts: store
            .conflicts(limit)?
            .iter()
            .map(ConflictView::new)
            .collect(),
        total: store.conflict_count()?,
    })
}
