//! Federation sync: per-peer state and checkpoints, the pure decisions of a sync
//! (`engine`, and the sans-IO state machines of `core`), and running a sync against a
//! peer over HTTP (`client`, `delta`: the drivers that move the bytes for `core`).

mod client;
mod copy;
mod core;
mod delta;
mod engine;
mod error;
pub mod held;
mod held_room;
mod legacy;
mod peer;
pub mod reconcile;
mod repair;
pub mod trust_book;
mod verify;

pub use client::{AUDIENCE_DIGITS, PeerSyncResult, Syncer};
pub use engine::{
    AutoSyncSchedule, FailureKind, backoff_delay, by_priority, jittered, priority_of,
    rank_by_priority, retry_delay, wanted_ids, wire_size,
};
pub use held_room::{HeldLimits, HeldMarker};
pub use peer::{GLOBAL_STATS_KEY, PeerState, SyncStats};
pub use repair::move_aside_damaged;
