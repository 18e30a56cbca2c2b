//! Plain data: node records, their canonical bytes and content hash, versions from the
//! hybrid logical clock, and timestamp formats. Nothing here does I/O.

mod canonical;
mod claim;
mod clock;
mod json;
mod node;
mod time;

pub use canonical::{CanonicalError, ContentHash, decode_node, encode_node};
pub use claim::{ClaimedContent, RecordClaim, RecordSignature, SignatureFormat};
pub use clock::{Clock, Hlc, InstanceId, Version};
pub use clock::{hex, parse_hex};
pub use json::{JsonError, MAX_JSON_DEPTH, parse_json, too_deep_at};
pub use node::{
    FieldError, LIMITS, Limits, Node, NodeList, RECORD_ENVELOPE_BYTES, Shape, json_string_bytes,
    validate_id, wire_record_bytes,
};
pub use time::{
    MAX_TIMESTAMP_MILLIS, check_timestamp, format_rfc3339, format_sqlite, parse_timestamp,
    set_clock_offset, unix_millis_now,
};
