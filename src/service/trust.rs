//! `ark-lattice keygen` and `ark-lattice trust ...`: making keys and deciding whom this
//! instance believes. The trust operations return typed answers (`service::views`).

use super::output::Output;
use super::views::{TrustAction, TrustChange, TrustList};
use crate::cli::Keygen;
use crate::error::Error;
use crate::store::Store;
use crate::sync::trust_book;
use crate::trust::{KeyPair, PublicKey, Tier, TrustEntry};

/// Prints a new key pair as ARK's PyNaCl snippet did, or writes it to a key file.
pub(crate) fn keygen(args: &Keygen, out: &mut Output) -> Result<(), Error> {
    let key = KeyPair::generate().map_err(Error::Key)?;
    match &args.out {
        Some(path) => {
            key.save(std::path::Path::new(path))?;
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

fn parse_tier(text: Option<&str>) -> Result<Tier, Error> {
    text.map_or(Ok(Tier::Core), |text| {
        text.parse::<Tier>()
            .map_err(|error| Error::Usage(error.to_string()))
    })
}

/// The one entry `reference` names (a fingerprint, an instance id or its prefix, or a
/// base64 key).
fn find(store: &Store, reference: &str) -> Result<TrustEntry, Error> {
    let matching: Vec<TrustEntry> = trust_book::entries(store)?
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

/// `trust add`: trusts a base64 public key with a tier (`core` when none is given).
pub(crate) fn trust_key(
    store: &mut Store,
    public_key: &str,
    tier: Option<&str>,
    name: Option<String>,
) -> Result<TrustChange, Error> {
    let key = PublicKey::from_base64(public_key.trim())
        .map_err(|error| Error::Usage(format!("public key: {error}")))?;
    let tier = parse_tier(tier)?;
    let entry = trust_book::trust(store, key, tier, name, "cli")?;
    Ok(TrustChange::new(TrustAction::Trusted, entry))
}

/// `trust accept`: grants a tier to a key the trust store already holds (pending or not).
pub(crate) fn accept_key(
    store: &mut Store,
    reference: &str,
    tier: Option<&str>,
) -> Result<TrustChange, Error> {
    let found = find(store, reference)?;
    let tier = parse_tier(tier)?;
    let entry = trust_book::trust(store, found.public_key, tier, found.name.clone(), "cli")?;
    Ok(TrustChange::new(TrustAction::Accepted, entry))
}

/// `trust remove`: forgets a key.
pub(crate) fn remove_key(store: &mut Store, reference: &str) -> Result<TrustChange, Error> {
    let found = find(store, reference)?;
    trust_book::remove(store, &found)?;
    Ok(TrustChange::new(TrustAction::Removed, found))
}

/// `trust list` (`pending` false) and `trust pending` (true).
pub(crate) fn trusted_keys(store: &Store, pending: bool) -> Result<TrustList, Error> {
    let entries = trust_book::entries(store)?
        .into_iter()
        .filter(|entry| entry.pending == pending)
        .collect();
    Ok(TrustList { entries })
}
