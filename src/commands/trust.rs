//! `trust ...`: the service's typed answer, from the store here or read back from the
//! running server's `/api/trust/*` answer, rendered for people or as `--json`.

use miniserde::json::Value;

use super::lattice::{not_found_as_such, wire};
use super::remote::{call, call_route};
use crate::cli::TrustCommand;
use crate::config::Config;
use crate::error::Error;
use crate::http::percent_encode;
use crate::model::format_rfc3339;
use crate::protocol::Route;
use crate::service::{
    self, HeldRelease, Output, ServerInfo, TrustAction, TrustChange, TrustList, object, string,
};
use crate::store::Store;

/// A typed answer of one of the trust commands.
enum Answer {
    Keys(TrustList),
    Changed(TrustChange),
}

/// Runs a trust command on the store this process opened.
pub(crate) fn run_here(
    command: &TrustCommand,
    store: &mut Store,
    out: &mut Output,
) -> Result<(), Error> {
    let answer = match command {
        TrustCommand::Add(args) => Answer::Changed(service::trust_key(
            store,
            &args.pubkey,
            args.tier.as_deref(),
            args.name.clone(),
        )?),
        TrustCommand::Accept(args) => {
            Answer::Changed(service::accept_key(store, &args.key, args.tier.as_deref())?)
        }
        TrustCommand::Remove(args) => Answer::Changed(service::remove_key(store, &args.key)?),
        TrustCommand::List(_) => Answer::Keys(service::trusted_keys(store, false)?),
        TrustCommand::Pending(_) => Answer::Keys(service::trusted_keys(store, true)?),
    };
    render(&answer, command, out)
}

/// Asks the running server that holds the store.
pub(crate) fn run_on_server(
    command: &TrustCommand,
    config: &Config,
    server: &ServerInfo,
    out: &mut Output,
) -> Result<(), Error> {
    let context = "the server's answer";
    let tier = |tier: &Option<String>| tier.clone().map_or(Value::Null, string);
    let answer = match command {
        TrustCommand::Add(args) => {
            let body = object([
                ("public_key", string(args.pubkey.clone())),
                ("tier", tier(&args.tier)),
                ("name", args.name.clone().map_or(Value::Null, string)),
            ]);
            let answer = call_route(config, server, Route::TrustKey, Some(body))?;
            Answer::Changed(TrustChange::from_json(&answer, context).map_err(wire)?)
        }
        TrustCommand::Accept(args) => {
            let path = Route::AcceptKey.path_with(&percent_encode(&args.key));
            let body = object([("tier", tier(&args.tier))]);
            let answer = call(config, server, Route::AcceptKey.method(), &path, Some(body))
                .map_err(not_found_as_such)?;
            Answer::Changed(TrustChange::from_json(&answer, context).map_err(wire)?)
        }
        TrustCommand::Remove(args) => {
            let path = Route::RemoveKey.path_with(&percent_encode(&args.key));
            let answer = call(config, server, Route::RemoveKey.method(), &path, None)
                .map_err(not_found_as_such)?;
            Answer::Changed(TrustChange::from_json(&answer, context).map_err(wire)?)
        }
        TrustCommand::List(_) | TrustCommand::Pending(_) => {
            let mut path = Route::TrustedKeys.path().to_owned();
            if matches!(command, TrustCommand::Pending(_)) {
                path.push_str("?pending=true");
            }
            let answer = call(config, server, Route::TrustedKeys.method(), &path, None)?;
            Answer::Keys(TrustList::from_json(&answer, context).map_err(wire)?)
        }
    };
    render(&answer, command, out)
}

fn render(answer: &Answer, command: &TrustCommand, out: &mut Output) -> Result<(), Error> {
    match answer {
        Answer::Keys(list) => match command {
            TrustCommand::List(args) if args.json => out.json(&list.to_json())?,
            TrustCommand::Pending(args) if args.json => out.json(&list.to_json())?,
            _ => print_keys(list, matches!(command, TrustCommand::Pending(_)), out)?,
        },
        Answer::Changed(change) => print_change(change, out)?,
    }
    out.flush()
}

fn print_change(change: &TrustChange, out: &mut Output) -> Result<(), Error> {
    let entry = &change.entry;
    let fingerprint = entry.public_key.fingerprint();
    out.line(match change.action {
        TrustAction::Trusted => format!(
            "trusted {fingerprint} as {} ({})",
            entry.tier.name(),
            entry.key()
        ),
        TrustAction::Accepted => format!("accepted {fingerprint} as {}", entry.tier.name()),
        TrustAction::Removed => format!("removed {fingerprint}"),
    })?;
    // A key just trusted (or removed) changes which held records may apply: a running
    // server applies them at once, not at the next sync.
    match &change.held {
        HeldRelease::NotTried | HeldRelease::Applied(0) => Ok(()),
        HeldRelease::Applied(applied) => out.line(format!(
            "applied {applied} held record(s) whose reason to wait is gone"
        )),
        HeldRelease::Deferred(reason) => out.line(format!(
            "held records are applied at the next sync ({reason})"
        )),
    }
}

fn print_keys(list: &TrustList, pending: bool, out: &mut Output) -> Result<(), Error> {
    if list.entries.is_empty() {
        return out.line(if pending {
            "no pending keys"
        } else {
            "no trusted keys"
        });
    }
    out.line(format!(
        "{:<26} {:<9} {:<16} {:<24} {}",
        "FINGERPRINT", "TIER", "NAME", "LAST SEEN", "PUBLIC KEY"
    ))?;
    for entry in &list.entries {
        out.line(format!(
            "{:<26} {:<9} {:<16} {:<24} {}",
            entry.public_key.fingerprint(),
            if entry.pending {
                "pending"
            } else {
                entry.tier.name()
            },
            entry.name.as_deref().unwrap_or("-"),
            entry
                .last_seen
                .map_or_else(|| "never".to_owned(), format_rfc3339),
            entry.public_key.to_base64()
        ))?;
    }
    Ok(())
}
