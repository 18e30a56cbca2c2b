//! `verify`: the service's [`VerifyReport`], made here (the store free, or with
//! `--skip-page-check` on the store this process opened) or by the running server that
//! holds the store (`GET /api/lattice/verify`), rendered for people or as `--json`.
//! The exit code says whether the store passed.

use super::remote::call;
use crate::cli;
use crate::config::Config;
use crate::error::{Error, exit};
use crate::protocol::Route;
use crate::service::{Output, ServerInfo, VerifyReport};

/// `GET /api/lattice/verify` on the running server, read back into the report.
pub(crate) fn on_server(
    config: &Config,
    server: &ServerInfo,
    args: &cli::Verify,
) -> Result<VerifyReport, Error> {
    let mut path = Route::Verify.path().to_owned();
    if args.skip_page_check {
        path.push_str("?skip_page_check=true");
    }
    let answer = call(config, server, Route::Verify.method(), &path, None)?;
    VerifyReport::from_json(&answer, "the server's answer").map_err(super::lattice::wire)
}

/// Prints the report; a store that did not pass is an error (exit code 6). With
/// `--json` the report says it all and only the exit code tells; for people the error
/// names each problem and what to do.
pub(crate) fn render(report: &VerifyReport, as_json: bool, out: &mut Output) -> Result<(), Error> {
    if as_json {
        out.json(&report.to_json())?;
    } else {
        print_text(report, out)?;
    }
    out.flush()?;
    match report.problems() {
        None => Ok(()),
        Some(_) if as_json => Err(Error::Reported {
            code: exit::STORE_DAMAGED,
        }),
        Some(problems) => Err(Error::StoreDamaged(problems)),
    }
}

fn pages_line(pages: &crate::service::PagesReport) -> String {
    use crate::service::PagesReport;
    match pages {
        PagesReport::Damaged(reason) => format!("DAMAGED: {reason}"),
        PagesReport::Repaired => "repaired by redb".into(),
        PagesReport::Clean => "clean".into(),
        PagesReport::Skipped => "skipped".into(),
    }
}

/// The report for people.
fn print_text(report: &VerifyReport, out: &mut Output) -> Result<(), Error> {
    use crate::service::RecordsReport;
    out.line(format!("store       {}", report.store))?;
    out.line(format!("pages       {}", pages_line(&report.pages)))?;
    if let Some(after) = &report.pages_after {
        out.line(format!(
            "pages after moving damaged records aside: {}",
            pages_line(after)
        ))?;
    }
    match &report.records {
        RecordsReport::Read(counts) => {
            out.line(format!(
                "records     {} nodes, {} tombstones, {} conflict entries, {} changes",
                counts.nodes, counts.tombstones, counts.conflicts, counts.changes,
            ))?;
            out.line(format!(
                "signatures  {} valid, {} not checkable (unsigned or author key unknown)",
                counts.signed, counts.unchecked_signatures,
            ))?;
        }
        RecordsReport::NotRead(reason) => out.line(format!("records     {reason}"))?,
    }
    let damaged = report.records.damaged();
    out.line(format!("damaged     {}", damaged.len()))?;
    for record in damaged {
        out.line(format!(
            "  {} {:?}: {}",
            record.table.name(),
            record.id,
            record.reason
        ))?;
    }
    Ok(())
}
