//! Trust primitives, sans I/O except for the key file: identity keys and signatures,
//! Python-compatible JSON bytes for ARK's signed manifests, signed peer requests with
//! replay protection, record provenance signatures and federation tiers.
//!
//! This is the only module that imports ed25519-compact; the rest of the crate sees
//! [`KeyPair`], [`PublicKey`] and [`Signature`]. Which peers to trust, and storing
//! that, is left to the callers.

mod keyfile;
mod keys;
mod manifest;
mod pyjson;
mod pyvalue;
mod record;
mod registry;
mod replay;
mod request;
mod tier;

pub use keyfile::KeyFileError;
pub use keys::{KeyError, KeyPair, PublicKey, Signature, VerifyError, verify};
pub use manifest::{Registration, RegistrationError, verify_registration};
pub use pyjson::python_json_dumps_sorted;
pub use pyvalue::{PyJsonError, PyValue, b64decode, parse as parse_python_json};
pub use record::{
    RecordError, record_signing_bytes, record_signing_bytes_v1, sign_record, sign_record_v1,
    verify_record, verify_record_v1,
};
pub use registry::{TrustEntry, TrustEntryError};
pub use replay::{DEFAULT_MAX_NONCES, REPLAY_WINDOW_MILLIS, ReplayError, ReplayGuard};
pub use request::{
    HEADER_AUDIENCE, HEADER_KEY, HEADER_NONCE, HEADER_SIGNATURE, HEADER_TIMESTAMP, RequestError,
    SignedHeaders, VerifiedRequest, body_sha256, new_nonce, sign_request, signing_bytes,
    verify_request,
};
pub use tier::{Access, Tier, TierError};
