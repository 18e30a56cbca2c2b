//! ARK's Python federation service API, compatible with its clients: signed manifests
//! (`POST /manifest`), the live peer registry with TTL expiry (`GET /discover`), and
//! delta sync by hashes (`POST /sync`); plus our own signed manifest for others.
//!
//! Unlike ARK's service, a manifest must be signed by a key this instance trusts
//! (`--open-registration` restores ARK's behaviour), and the signature is checked
//! against that key, not whichever key the caller sends along.

use std::collections::BTreeMap;

use miniserde::json::{Array, Object, Value};
use sha2::{Digest, Sha256};

use super::app::App;
use super::auth::authorize;
use super::routes::{ApiError, number, object, text};
use crate::config::{MAX_REGISTRATION_BYTES, MAX_REGISTRATIONS};
use crate::http::{Request, Response};
use crate::model::{format_rfc3339, hex, unix_millis_now};
use crate::protocol::{DeltaAnswer, DeltaRequest, Fields, MANIFEST_LISTEN_SCHEME, parse_object};
use crate::store::Query;
use crate::sync::trust_book;
use crate::trust::{Access, PublicKey, python_json_dumps_sorted, verify_registration};

/// A spoke registered at this hub.
#[derive(Debug, Clone)]
pub(crate) struct Registration {
    pub public_key: PublicKey,
    /// The manifest's fields other than its node list.
    pub summary: Object,
    pub node_count: u64,
    /// `http://<caller address>:<listen_port>` when the manifest names its port.
    pub url: Option<String>,
    pub last_seen: u64,
    /// Signed by a key with a tier here, not merely admitted by `--open-registration`.
    pub trusted: bool,
}

/// FastAPI answered errors as `{"detail": ...}`; we send that and our `error`.
fn fastapi_error(status: u16, message: &str) -> Response {
    let body = object([("detail", text(message)), ("error", text(message))]);
    Response::json(status, miniserde::json::to_string(&body))
}

/// `POST /manifest {manifest, signature, pubkey}`, checked as ARK's service checks it
/// (`trust::verify_registration`).
pub(crate) fn register(app: &App, request: &Request) -> Response {
    let (manifest, public_key) = match verify_registration(&request.body) {
        Ok(registration) => match registration.manifest.to_value() {
            Value::Object(manifest) => (manifest, registration.public_key),
            _ => return fastapi_error(400, "manifest must be a JSON object"),
        },
        Err(error) => return fastapi_error(error.status(), &error.to_string()),
    };
    let manifest = &manifest;
    let trusted = match trust_book::note_caller(
        &mut app.instance().store().borrow_mut(),
        &mut app.pending_callers(),
        public_key,
        unix_millis_now(),
    ) {
        Ok(tier) => tier.is_some(),
        Err(error) => return fastapi_error(500, &error.to_string()),
    };
    if !trusted && !app.instance().config().federation.open_registration {
        return fastapi_error(
            403,
            &format!(
                "untrusted key {}; accept it with `ark-lattice trust accept {}` on this instance",
                public_key.fingerprint(),
                public_key.fingerprint()
            ),
        );
    }
    let fields = Fields::new(manifest, "manifest");
    let node_id = fields
        .opt_str("node_id")
        .ok()
        .flatten()
        .unwrap_or("")
        .to_owned();
    let node_count = match manifest.get("nodes") {
        Some(Value::Array(nodes)) if !nodes.is_empty() => nodes.len() as u64,
        _ => fields.opt_u64("node_count").ok().flatten().unwrap_or(0),
    };
    let url = fields
        .opt_u64("listen_port")
        .ok()
        .flatten()
        .filter(|port| *port > 0 && *port <= 65535)
        .map(|port| {
            let secure = fields.opt_str(MANIFEST_LISTEN_SCHEME).ok().flatten() == Some("https");
            crate::http::node_base_url(secure, request.remote_addr.ip(), port as u16)
        });
    let summary: Object = manifest
        .iter()
        .filter(|(key, _)| key.as_str() != "nodes")
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    let registration = Registration {
        public_key,
        summary,
        node_count,
        url,
        last_seen: unix_millis_now(),
        trusted,
    };
    // Measured as `/discover` lists it, with what is added there, so the listing of
    // every spoke stays within its bound; the comma between entries counts too, and
    // the byte kept back holds the listing's own brackets and count.
    let listed_bytes = miniserde::json::to_string(&discover_entry(&registration)).len() + 1;
    if listed_bytes >= MAX_REGISTRATION_BYTES {
        return fastapi_error(
            413,
            &format!(
                "manifest without its nodes is {listed_bytes} bytes as `/discover` lists it; fewer than {MAX_REGISTRATION_BYTES} are kept per spoke"
            ),
        );
    }
    if let Err(full) = register_within_cap(&mut app.registry(), registration) {
        return fastapi_error(503, &full);
    }
    if app.instance().config().verbose {
        eprintln!(
            "ark:federation registered {node_id:?} ({})",
            public_key.fingerprint()
        );
    }
    Response::json(
        200,
        miniserde::json::to_string(&object([
            ("status", text("registered")),
            ("node_id", text(&node_id)),
        ])),
    )
}

/// Adds or refreshes a registration, keeping at most [`MAX_REGISTRATIONS`]: at the cap a
/// new spoke takes the place of the untrusted one heard from least recently (a trusted
/// one only when all are trusted, and never for an untrusted newcomer).
fn register_within_cap(
    registry: &mut BTreeMap<String, Registration>,
    registration: Registration,
) -> Result<(), String> {
    let key = registration.public_key.to_base64();
    if !registry.contains_key(&key) && registry.len() >= MAX_REGISTRATIONS {
        let oldest = |trusted: bool| {
            registry
                .iter()
                .filter(|(_, entry)| entry.trusted == trusted)
                .min_by_key(|(_, entry)| entry.last_seen)
                .map(|(key, _)| key.clone())
        };
        let evicted = match oldest(false) {
            Some(key) => Some(key),
            None if registration.trusted => oldest(true),
            None => None,
        };
        let Some(evicted) = evicted else {
            return Err(format!(
                "the registry is full ({MAX_REGISTRATIONS} trusted spokes); try again later"
            ));
        };
        registry.remove(&evicted);
    }
    registry.insert(key, registration);
    Ok(())
}

/// Drops registrations older than the TTL; returns what is left.
pub(crate) fn live_registrations(app: &App) -> Vec<Registration> {
    let ttl = app.instance().config().federation.peer_ttl.as_millis() as u64;
    let now = unix_millis_now();
    let mut registry = app.registry();
    registry.retain(|_, registration| registration.last_seen + ttl > now);
    registry.values().cloned().collect()
}

/// One spoke as `/discover` lists it: its manifest's fields and what we know of it.
fn discover_entry(registration: &Registration) -> Value {
    let mut entry = registration.summary.clone();
    entry.insert("pubkey".into(), text(&registration.public_key.to_base64()));
    entry.insert(
        "fingerprint".into(),
        text(&registration.public_key.fingerprint()),
    );
    entry.insert("node_count".into(), number(registration.node_count));
    entry.insert(
        "url".into(),
        registration.url.as_deref().map_or(Value::Null, text),
    );
    entry.insert("last_seen".into(), number(registration.last_seen / 1000));
    Value::Object(entry)
}

/// `GET /discover` → `{peers: [...], count}`: live registered spokes.
pub(crate) fn discover(app: &App) -> Result<Value, ApiError> {
    let peers: Array = live_registrations(app).iter().map(discover_entry).collect();
    Ok(object([
        ("count", number(peers.len() as u64)),
        ("peers", Value::Array(peers)),
    ]))
}

/// Our manifest in ARK's structure. With `full`, every node is listed; a heartbeat
/// sends only scalar fields (`node_count`, `lattice_hash`, ...), which is also all that
/// ARK's Python service can store.
pub(crate) fn manifest(app: &App, full: bool) -> Result<Object, ApiError> {
    let mut nodes = Array::new();
    let mut newest = 0u64;
    let mut count = 0u64;
    let mut hasher = Sha256::new();
    app.instance()
        .store()
        .borrow()
        .scan(&Query::default(), |node, meta| {
            count += 1;
            let updated = meta.updated_at.unwrap_or(0);
            newest = newest.max(updated);
            hasher.update(node.id.as_bytes());
            hasher.update(meta.hash.0);
            if full {
                nodes.push(object([
                    ("id", text(&node.id)),
                    ("type", text(&node.node_type)),
                    ("hash", text(&meta.hash.to_prefixed())),
                    ("updated_at", text(&format_rfc3339(updated))),
                ]));
            }
            true
        })?;
    let mut manifest = Object::new();
    manifest.insert("node_id".into(), text(&app.instance().instance_name()));
    manifest.insert(
        "instance_id".into(),
        text(&app.instance().instance_id_hex()),
    );
    manifest.insert(
        "instance_type".into(),
        text(&app.instance().config().instance_type.to_string()),
    );
    manifest.insert("version".into(), text(env!("CARGO_PKG_VERSION")));
    manifest.insert("last_updated".into(), text(&format_rfc3339(newest)));
    manifest.insert(
        "listen_port".into(),
        number(u64::from(app.instance().listen_port())),
    );
    if app.instance().serves_https() {
        manifest.insert(MANIFEST_LISTEN_SCHEME.into(), text("https"));
    }
    manifest.insert("node_count".into(), number(count));
    manifest.insert(
        "lattice_hash".into(),
        text(&format!("sha256:{}", hex(&hasher.finalize()))),
    );
    // ARK's Python service stores a manifest's fields in Redis, which holds scalars
    // only: the heartbeat leaves the list out (issue 12).
    if full {
        manifest.insert("nodes".into(), Value::Array(nodes));
    }
    Ok(manifest)
}

/// `sha256:` of the manifest's Python JSON bytes: what `POST /sync` compares.
pub(crate) fn manifest_hash(manifest: &Object) -> String {
    let bytes = python_json_dumps_sorted(&Value::Object(manifest.clone()));
    format!("sha256:{}", hex(&Sha256::digest(bytes.as_bytes())))
}

/// `{manifest, signature, pubkey}`, signed as ARK's Python clients sign.
pub(crate) fn signed_manifest(app: &App, full: bool) -> Result<Value, ApiError> {
    let manifest = manifest(app, full)?;
    let signature = app
        .instance()
        .key()
        .sign(python_json_dumps_sorted(&Value::Object(manifest.clone())).as_bytes());
    Ok(object([
        ("manifest", Value::Object(manifest)),
        ("signature", text(&signature.to_base64())),
        (
            "pubkey",
            text(&app.instance().key().public_key().to_base64()),
        ),
    ]))
}

/// `GET /federation/v2/manifest`: our signed full manifest.
pub(crate) fn own_manifest(app: &App, request: &Request) -> Result<Value, ApiError> {
    authorize(app, request, Access::Pull)?;
    signed_manifest(app, true)
}

/// `POST /sync {manifest_hash, nodes: [{id, hash}]}` → `{delta_count, nodes}`: the full
/// records whose hash differs from, or is missing in, the caller's list.
pub(crate) fn delta(app: &App, request: &Request) -> Result<Value, ApiError> {
    authorize(app, request, Access::Pull)?;
    let body = parse_object(&request.body, "sync request")?;
    let asked = DeltaRequest::from_json(&body, "sync request")?;
    if let Some(theirs) = &asked.manifest_hash {
        if *theirs == manifest_hash(&manifest(app, true)?) {
            return Ok(DeltaAnswer::default().to_json());
        }
    }
    // Opaque strings: a hash in either of our spellings matches; any other (ARK's
    // file hashes, the guide's "def456") does not, and the node is sent.
    let known: BTreeMap<String, String> = asked.nodes.into_iter().collect();
    let mut nodes = Array::new();
    app.instance()
        .store()
        .borrow()
        .scan(&Query::default(), |node, meta| {
            let theirs = known.get(&node.id).map(String::as_str);
            let prefixed = meta.hash.to_prefixed();
            let same = theirs.is_some_and(|theirs| {
                theirs == prefixed || Some(theirs) == prefixed.strip_prefix("sha256:")
            });
            if !same {
                nodes.push(crate::service::node_with_meta(&node, &meta));
            }
            true
        })?;
    Ok(DeltaAnswer { nodes }.to_json())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trust::KeyPair;

    fn registration(index: u32, trusted: bool) -> Registration {
        let mut seed = [3u8; 32];
        seed[..4].copy_from_slice(&index.to_be_bytes());
        Registration {
            public_key: KeyPair::from_seed(seed).unwrap().public_key(),
            summary: Object::new(),
            node_count: 0,
            url: None,
            last_seen: u64::from(index),
            trusted,
        }
    }

    #[test]
    fn the_registry_keeps_its_cap_and_trusted_spokes_first() {
        let mut registry = BTreeMap::new();
        let cap = MAX_REGISTRATIONS as u32;
        for index in 0..cap {
            register_within_cap(&mut registry, registration(index, index == 0)).unwrap();
        }
        // An untrusted newcomer replaces the untrusted spoke heard least recently.
        register_within_cap(&mut registry, registration(cap, false)).unwrap();
        assert_eq!(registry.len(), MAX_REGISTRATIONS);
        assert!(
            registry.values().any(|entry| entry.last_seen == 0),
            "trusted kept"
        );
        assert!(!registry.values().any(|entry| entry.last_seen == 1));
        // All trusted: an untrusted newcomer is refused, a trusted one gets in.
        let mut registry: BTreeMap<String, Registration> = (0..cap)
            .map(|index| registration(index, true))
            .map(|entry| (entry.public_key.to_base64(), entry))
            .collect();
        assert!(register_within_cap(&mut registry, registration(cap, false)).is_err());
        register_within_cap(&mut registry, registration(cap + 1, true)).unwrap();
        assert_eq!(registry.len(), MAX_REGISTRATIONS);
        assert!(!registry.values().any(|entry| entry.last_seen == 0));
    }
}
