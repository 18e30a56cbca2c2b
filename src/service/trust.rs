//! `ark-lattice keygen` and `ark-lattice trust ...`: making keys and deciding whom this
//! instance believes.

use miniserde::json::{Array, Value};

use super::output::{Output, number, object};
use super::session::Session;
use crate::cli::{Keygen, TrustCommand};
use crate::error::Error;
use crate::model::format_rfc3339;
use crate::sync::trust_book;
use crate::trust::{KeyPair, PublicKey, Tier, TrustEntry};

/// Prints a new key pair as ARK's PyNaCl snippet did, or writes it to a key file.
pub(crate) fn keygen(args: &Keygen, out: &mut Output) -> Result<(), Error> {
    let key = KeyPair::generate().map_err(|error| Error::Other(error.to_string()))?;
    match &args.out {
        Some(path) => {
            key.save(std::path::Path::new(path))
                .map_err(|error| Error::Other(error.to_string()))?;
            out.line(format!("Public Key: {}", key.public_key().to_base64()))?;
            out.line(format!("Fingerprint: {}", key.public_key().fingerprint()))?;
            out.line(format!("Key file: {path} (mode 0600)"))?;
        }
        None => {
            out.line(format!("Private Key: {}", key.seed_base64()))?;
            out.line(format!("Public Key: {}", key.public_key().to_base64()))?;
        }
    }
    out.flush()
}

pub(crate) fn parse_tier(text: Option<&str>) -> Result<Tier, Error> {
    text.map_or(Ok(Tier::Core), |text| {
        text.parse::<Tier>()
            .map_err(|error| Error::Usage(error.to_string()))
    })
}

fn find(session: &Session<'_>, reference: &str) -> Result<TrustEntry, Error> {
    let matching: Vec<TrustEntry> = trust_book::entries(session.store)?
        .into_iter()
        .filter(|entry| entry.matches(reference))
        .collect();
    match matching.len() {
        0 => Err(Error::NotFound(format!(
            "key {reference:?} in the trust store not found"
        ))),
        1 => Ok(matching.into_iter().next().expect("one")),
        n => Err(Error::Usage(format!(
            "{reference:?} matches {n} keys; give more of the fingerprint"
        ))),
    }
}

pub(crate) fn run(session: &mut Session<'_>, command: &TrustCommand) -> Result<(), Error> {
    match command {
        TrustCommand::Add(args) => {
            let key = PublicKey::from_base64(args.pubkey.trim())
                .map_err(|error| Error::Usage(format!("public key: {error}")))?;
            let tier = parse_tier(args.tier.as_deref())?;
            let entry = trust_book::trust(session.store, key, tier, args.name.clone(), "cli")?;
            session.out.line(format!(
                "trusted {} as {} ({})",
                entry.public_key.fingerprint(),
                entry.tier.name(),
                entry.key()
            ))?;
        }
        TrustCommand::Accept(args) => {
            let found = find(session, &args.key)?;
            let tier = parse_tier(args.tier.as_deref())?;
            let entry = trust_book::trust(
                session.store,
                found.public_key,
                tier,
                found.name.clone(),
                "cli",
            )?;
            session.out.line(format!(
                "accepted {} as {}",
                entry.public_key.fingerprint(),
                entry.tier.name()
            ))?;
        }
        TrustCommand::Remove(args) => {
            let found = find(session, &args.key)?;
            trust_book::remove(session.store, &found)?;
            session
                .out
                .line(format!("removed {}", found.public_key.fingerprint()))?;
        }
        TrustCommand::List(args) => print(session, args.json, false)?,
        TrustCommand::Pending(args) => print(session, args.json, true)?,
    }
    session.out.flush()
}

fn print(session: &mut Session<'_>, as_json: bool, pending: bool) -> Result<(), Error> {
    let entries: Vec<TrustEntry> = trust_book::entries(session.store)?
        .into_iter()
        .filter(|entry| entry.pending == pending)
        .collect();
    if as_json {
        let list: Array = entries.iter().map(TrustEntry::to_json).collect();
        return session.out.json(&object([
            ("count", number(list.len() as u64)),
            ("keys", Value::Array(list)),
        ]));
    }
    if entries.is_empty() {
        return session.out.line(if pending {
            "no pending keys"
        } else {
            "no trusted keys"
        });
    }
    session.out.line(format!(
        "{:<26} {:<9} {:<16} {:<24} {}",
        "FINGERPRINT", "TIER", "NAME", "LAST SEEN", "PUBLIC KEY"
    ))?;
    for entry in &entries {
        session.out.line(format!(
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
