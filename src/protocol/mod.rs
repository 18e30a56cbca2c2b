//! Wire formats: how records, peers and results look as JSON on ARK's legacy endpoints
//! and on our own v2 endpoints. Pure conversions; no I/O.

mod fields;
mod legacy;
mod record;

pub use fields::{Fields, WireError, json_object, parse_object};
pub use legacy::{ark_row, legacy_origin, legacy_record};
pub use record::{base64, record_from_wire, record_to_wire, unbase64};

/// Protocol names advertised in `/federation/info` under `protocols`.
pub const PROTOCOL_LEGACY: &str = "ark-federation-v1";
pub const PROTOCOL_V2: &str = "ark-lattice-v2";
