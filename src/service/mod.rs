//! The service layer, below both `commands` (the CLI) and `server` (the HTTP node):
//! opening an instance from its state dir and performing lattice and federation
//! operations on it, with typed answers. Neither the CLI nor the server opens a store
//! or a key any other way, and nothing here parses argv or routes HTTP requests.

mod discover;
mod error;
pub mod events;
mod federation;
mod gc;
mod instance;
mod join;
mod lattice;
mod open;
mod output;
mod running;
mod session;
mod store_wait;
mod trust;
mod verify;

pub use discover::{DiscoverOptions, LanFindings, discover};
pub(crate) use discover::{field as beacon_field, lan_peer_json};
pub use error::OpError;
pub use events::{Event, EventBus, EventKind};
pub use federation::{
    AddPeer, PeerList, add_peer, list_peers, remove_peer, set_auto_sync, status, sync,
};
pub(crate) use instance::InfoInputs;
pub use instance::Instance;
pub use join::join_all;
pub use lattice::{conflicts_json, import_with, read_input, stats_json};
pub use open::{
    KEY_FILE, exit_on_storage_panic, identity, open_store, open_store_for_server,
    storage_panics_are_handled_elsewhere,
};
pub use output::{Output, node_with_meta, object, string};
pub use running::{SERVER_FILE, ServerInfo, running_server};
pub use session::{ReadInput, Session, run_lattice};
pub(crate) use store_wait::{Holder, open_waiting};
pub use trust::keygen;
pub use verify::{check_before_serving, verify_offline};
