//! The service layer, below both `commands` (the CLI) and `server` (the HTTP node):
//! opening an instance from its state dir and performing lattice and federation
//! operations on it, with typed answers. Neither the CLI nor the server opens a store
//! or a key any other way, and nothing here parses argv or routes HTTP requests.

mod discover;
mod error;
pub(crate) mod events;
mod export;
mod federation;
mod gc;
mod instance;
mod join;
mod lattice;
mod open;
mod output;
mod running;
mod store_wait;
mod trust;
mod verify;
mod verify_report;
mod views;

pub(crate) use discover::is_trusted;
pub(crate) use discover::{DiscoverOptions, discover};
pub(crate) use error::OpError;
// `ExportPage` and `VerifyReport` are public for the fuzz targets (`fuzz/`), which read
// them as the CLI reads a running server's answers.
pub use export::ExportPage;
pub(crate) use export::{
    EXPORT_PAGE_DEFAULT_NODES, EXPORT_PAGE_MAX_NODES, ExportFormat, ExportWriter, export_nodes,
    export_page,
};
pub(crate) use federation::{
    AddPeer, PeerList, add_peer, list_peers, remove_peer, set_auto_sync, status, sync,
};
pub(crate) use gc::purge_tombstones;
pub(crate) use instance::InfoInputs;
pub(crate) use instance::Instance;
pub(crate) use join::join_all;
pub(crate) use lattice::{
    add_node, conflicts, delete_node, find_nodes, get_record, import_with, live_node, read_input,
    stats,
};
pub use open::exit_on_storage_panic;
pub(crate) use open::{open_store, storage_panics_are_handled_elsewhere};
pub use output::Output;
pub(crate) use output::{node_with_meta, number, object, string, time_or_dash, truncate};
pub(crate) use running::{SERVER_FILE, ServerInfo, running_server};
pub(crate) use store_wait::{Holder, open_waiting};
pub(crate) use trust::{accept_key, keygen, remove_key, trust_key, trusted_keys};
pub(crate) use verify::{check_before_serving, verify_offline, verify_store};
pub use verify_report::{PagesReport, RecordsReport, VerifyReport};
// Public for the `peer_answers` fuzz target, which reads them as the CLI reads the
// running server's answers.
pub use views::{
    Added, ConflictList, Deleted, HeldRelease, NodeList, NodeView, Purged, StatsReport,
    StoredRecord, TrustAction, TrustChange, TrustList,
};
