//! `export`: the nodes come from the store here in one read, or from the running
//! server that holds the store a page at a time (`GET /api/lattice/export`); either way
//! the service's [`ExportWriter`] writes them to standard output or to `-o FILE`
//! (written beside it and renamed, so a failed export never leaves a half-written
//! file where a good one was). Damaged records are left out and make exit code 6, so a
//! backup script sees the export is incomplete.

use std::path::{Path, PathBuf};

use super::remote::call;
use crate::cli;
use crate::config::Config;
use crate::error::Error;
use crate::http::percent_encode;
use crate::model::Node;
use crate::protocol::Route;
use crate::service::{
    EXPORT_PAGE_DEFAULT_NODES, ExportFormat, ExportPage, ExportWriter, Output, ServerInfo,
    export_nodes,
};
use crate::store::Store;

/// Hands each node to the visitor; returns how many damaged records were left out.
type NodeSource<'a> =
    dyn FnMut(&mut dyn FnMut(Node) -> Result<(), Error>) -> Result<u64, Error> + 'a;

/// `export` from the store this process opened.
pub(crate) fn here(store: &Store, args: &cli::Export, out: &mut Output) -> Result<(), Error> {
    let mut source =
        |visit: &mut dyn FnMut(Node) -> Result<(), Error>| export_nodes(store, &args.types, visit);
    export(args, out, &mut source, "reported above")
}

/// `export` from the running server that holds the store, a page at a time.
pub(crate) fn on_server(
    config: &Config,
    server: &ServerInfo,
    args: &cli::Export,
    out: &mut Output,
) -> Result<(), Error> {
    let types: Vec<Option<&str>> = if args.types.is_empty() {
        vec![None]
    } else {
        args.types.iter().map(|name| Some(name.as_str())).collect()
    };
    let mut source = |visit: &mut dyn FnMut(Node) -> Result<(), Error>| {
        let mut left_out = 0;
        let mut written = 0u64;
        for node_type in &types {
            // The next page is asked for on a thread of its own while this one is
            // written, so the server makes it meanwhile: the two take turns otherwise.
            std::thread::scope(|scope| {
                let fetch = |after: Option<String>| {
                    scope.spawn(move || page(config, server, *node_type, after.as_deref()))
                };
                let mut pending = Some(fetch(None));
                while let Some(fetching) = pending.take() {
                    let page = match fetching.join() {
                        Ok(Ok(page)) => page,
                        // Output has begun: the caller must not try the export again
                        // (on the store, once the server is gone), which would write
                        // it twice.
                        Ok(Err(error)) if written > 0 => {
                            return Err(Error::IncompleteExport {
                                written,
                                cause: Box::new(error),
                            });
                        }
                        Ok(Err(error)) => return Err(error),
                        Err(panic) => std::panic::resume_unwind(panic),
                    };
                    left_out += page.left_out;
                    pending = page.next.map(|next| fetch(Some(next)));
                    for node in page.nodes {
                        visit(node)?;
                        written += 1;
                    }
                }
                Ok(())
            })?;
        }
        Ok(left_out)
    };
    export(args, out, &mut source, "reported in the server's log")
}

/// `GET /api/lattice/export?limit=N[&type=T][&after=ID]`, read back into its page.
fn page(
    config: &Config,
    server: &ServerInfo,
    node_type: Option<&str>,
    after: Option<&str>,
) -> Result<ExportPage, Error> {
    let mut path = format!("{}?limit={EXPORT_PAGE_DEFAULT_NODES}", Route::Export.path());
    if let Some(node_type) = node_type {
        path.push_str(&format!("&type={}", percent_encode(node_type)));
    }
    if let Some(after) = after {
        path.push_str(&format!("&after={}", percent_encode(after)));
    }
    let answer = call(config, server, Route::Export.method(), &path, None)?;
    ExportPage::from_json(&answer, "the server's export page").map_err(super::lattice::wire)
}

/// Writes the nodes `source` hands over where `args` says, in its format. Damaged
/// records left out end the export with exit code 6 after it is written: it holds
/// every intact record.
fn export(
    args: &cli::Export,
    out: &mut Output,
    source: &mut NodeSource<'_>,
    where_reported: &str,
) -> Result<(), Error> {
    let format = ExportFormat::parse(&args.format)?;
    let left_out = match &args.output {
        None => write(format, out, source)?.1,
        Some(path) => to_file(format, Path::new(path), source)?,
    };
    match left_out {
        0 => Ok(()),
        left_out => Err(Error::StoreDamaged(format!(
            "the export left out {left_out} damaged record(s) ({where_reported}); they are fetched again from a peer at the next sync"
        ))),
    }
}

/// Writes the document; returns how many nodes it holds and how many were left out.
fn write(
    format: ExportFormat,
    out: &mut Output,
    source: &mut NodeSource<'_>,
) -> Result<(u64, u64), Error> {
    let mut writer = ExportWriter::new(format, out);
    let left_out = source(&mut |node| writer.node(&node))?;
    Ok((writer.finish()?, left_out))
}

/// Writes the document beside `path` and renames it into place; says how many nodes it
/// holds on standard error and returns how many were left out.
fn to_file(format: ExportFormat, path: &Path, source: &mut NodeSource<'_>) -> Result<u64, Error> {
    let temporary = temporary_path(path);
    let file = std::fs::File::create(&temporary).map_err(|source| Error::File {
        path: temporary.clone(),
        source,
    })?;
    let mut file_out = Output::to(Box::new(std::io::BufWriter::new(file)));
    let result = write(format, &mut file_out, source);
    drop(file_out);
    let (count, left_out) = match result {
        Ok(written) => written,
        Err(error) => {
            let _ = std::fs::remove_file(&temporary);
            return Err(error);
        }
    };
    std::fs::rename(&temporary, path).map_err(|source| Error::File {
        path: path.to_owned(),
        source,
    })?;
    Output::stderr().line(format!("exported {count} node(s) to {}", path.display()))?;
    Ok(left_out)
}

fn temporary_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    path.with_file_name(name)
}
