//! Wire formats: how records, peers and results look as JSON on ARK's legacy endpoints
//! and on our own v2 endpoints. Pure conversions; no I/O.

mod ark;
mod control;
mod feed;
mod fields;
mod legacy;
mod page;
mod push;
mod python;
mod reconcile;
mod record;
mod routes;
mod split;

pub use ark::{
    ArkStats, ControlAnswer, InstanceInfo, LatticeInfo, NodeList, NodesSince, PeerDirectory,
    PeerSummary, PeerSyncReport, ReceiveResult, SyncReport, not_found,
};
pub use control::{
    AutoSyncAnswer, DiscoverAnswer, FailureKind, FoundPeer, LanEntry, LanSource, LatticeStatus,
    PeerAddAnswer, PeerRemoved, PeerSyncResult, PinnedKey, ScanSummary, SyncAnswer,
};
pub use feed::{ChangesPage, FetchAnswer};
pub use fields::{Fields, WireError, json_object, parse_object};
pub use legacy::{
    ARK_COLUMNS, ark_columns, ark_row, keep_what_ark_cannot_hold, legacy_origin, legacy_record,
};
pub use page::{
    COMPACT_PAGE_TYPE, CompactPage, accepts_compact_page, compact_page, expand_page,
    is_compact_page,
};
pub use push::{Offer, OfferAnswer, OfferedRecord, PushAnswer};
pub use python::{DeltaAnswer, DeltaRequest};
pub use reconcile::{RECONCILE_CONTENT_TYPE, ReconcileAnswer, ReconcileRequest};
pub use record::{
    base64, record_from_wire, record_to_wire, types_from_query, types_to_query, unbase64,
};
pub use routes::{Access, OTHER_LABEL, ROUTES, Route};
pub use split::{SplitObject, check_text, parse_piece, split_checked, split_object};

/// Protocol names advertised in `/federation/info` under `protocols`.
pub const PROTOCOL_LEGACY: &str = "ark-federation-v1";
pub const PROTOCOL_V2: &str = "ark-lattice-v2";
/// Set reconciliation (`/federation/v2/reconcile` and `fetch`) and the long-poll and
/// type filter on the changes feed. A v2 peer without it is synced by the feed alone.
pub const PROTOCOL_RECONCILE: &str = "ark-lattice-reconcile-v1";
/// Changes pages in the compact form (`page.rs`) for a caller that asks for it by
/// `accept`; the caller reads the answer's `content-type`, so it needs no info first.
pub const PROTOCOL_COMPACT_PAGE: &str = "ark-lattice-compact-page-v1";
/// A beacon capability: the sender serves HTTPS (`serve --tls-cert`), so it is reached
/// at `https://` (issue 14). ARK's beacons never carry it and mean plain HTTP.
pub const CAPABILITY_HTTPS: &str = "https";
/// The manifest field a spoke serving HTTPS sends to the hub's `POST /manifest`, with
/// the value `https`; ARK's manifests have no such field and mean plain HTTP.
pub const MANIFEST_LISTEN_SCHEME: &str = "listen_scheme";
