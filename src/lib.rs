//! ark-lattice keeps a Code Lattice (code-template records) in an embedded store and
//! federates it with other ARK instances.
//!
//! Code map (see ARCHITECTURE.md for the whole picture):
//!
//! - [`model`]: plain data. Node records, their canonical bytes and hash, the hybrid
//!   logical clock, timestamps. No I/O.
//! - [`store`]: the redb-backed lattice store; the only module that imports redb.
//! - [`input`]: reads ARK's import formats (topics, JSON arrays, NDJSON) into nodes.
//! - [`config`]: flags and environment read once into a validated `Config`.
//! - [`cli`]: argh command definitions only.
//! - [`commands`]: what each CLI command does: argv in, text or `--json` out.
//! - [`service`]: opens an instance (store, key, config) and performs lattice and
//!   federation operations with typed results; below both `commands` and `server`.
//! - [`error`]: the crate-wide error and exit codes.
//! - [`discovery`]: LAN beacons and the subnet scan.
//! - [`trust`]: keys, signatures and trust tiers; the only module that imports
//!   ed25519-compact.

pub mod cli;
pub mod commands;
pub mod config;
pub mod discovery;
pub mod error;
pub mod http;
pub mod input;
pub mod model;
pub mod protocol;
pub mod server;
pub mod service;
pub mod store;
pub mod sync;
pub mod systemd;
pub mod trust;
