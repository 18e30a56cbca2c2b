//! Trust primitives, sans I/O except for the key file: identity keys and signatures,
//! Python-compatible JSON bytes for ARK's signed manifests, signed peer requests with
//! replay protection, record provenance signatures and federation tiers.
//!
//! This is the only module that imports ed25519-compact; the rest of the crate sees
//! [`KeyPair`], [`PublicKey`] and [`Signature`]. Which peers to trust, and storing
//! that, is left to the callers.

mod keys;
mod pyjson;

pub use keys::{KeyError, KeyFileError, KeyPair, PublicKey, Signature, VerifyError, verify};
pub use pyjson::python_json_dumps_sorted;
