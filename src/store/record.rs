//! Stored records: sync metadata plus either a node's canonical bytes or a tombstone.
//!
//! # Implementation
//!
//! A stored value is a header followed by the body:
//!
//! ```text
//! u8 format (1) | u8 flags | u64 hlc | [32] origin | u64 seq | [32] content hash
//! [u64 hlc, [32] origin]  base version      if flags & BASE
//! [u64]                   updated_at        if flags & UPDATED_AT
//! [64]                    author signature  if flags & SIGNATURE
//! body: canonical node bytes (nodes table) or u64 deleted_at (tombstones table)
//! ```
//!
//! The content hash is stored, not recomputed, so reconciliation reads it without
//! hashing; every read that hands out a record's body checks the body against it first
//! (`store::damage`).
//!
//! Flag `SIGNATURE_V2` (8) says the signature is of format 2 (see `trust::record`);
//! without it, a signature is of format 1, as every signature in a schema 1 store was.

use crate::model::{
    self, ContentHash, Hlc, InstanceId, Node, RecordSignature, SignatureFormat, Version,
};

const FORMAT: u8 = 1;
const FLAG_BASE: u8 = 1;
const FLAG_UPDATED_AT: u8 = 2;
const FLAG_SIGNATURE: u8 = 4;
const FLAG_SIGNATURE_V2: u8 = 8;
const FIXED_HEADER: usize = 2 + 8 + 32 + 8 + 32;

/// Sync metadata of one record version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMeta {
    pub version: Version,
    /// The last version by another author that this one replaced; tells a clean
    /// update from a concurrent edit (see ARCHITECTURE.md, "Conflicts").
    pub base: Option<Version>,
    /// Local change sequence number.
    pub seq: u64,
    /// Hash of the canonical bytes; for tombstones, the hash of nothing.
    pub hash: ContentHash,
    /// When the content was last written, unix milliseconds.
    pub updated_at: Option<u64>,
    /// The author's Ed25519 signature over the record and its version.
    pub signature: Option<RecordSignature>,
}

/// A live node or the tombstone a delete left.
// Nearly every record is live, so boxing the node would add an allocation per record
// to save memory only on tombstones.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    Live(Node),
    Deleted { deleted_at: u64 },
}

impl Body {
    pub(crate) fn is_deleted(&self) -> bool {
        matches!(self, Body::Deleted { .. })
    }
}

/// One record as the store and the change feed see it.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub id: String,
    pub meta: RecordMeta,
    pub body: Body,
}

impl Record {
    #[cfg(test)]
    pub(crate) fn is_deleted(&self) -> bool {
        self.body.is_deleted()
    }

    pub fn node(&self) -> Option<&Node> {
        match &self.body {
            Body::Live(node) => Some(node),
            Body::Deleted { .. } => None,
        }
    }
}

pub(crate) fn encode(meta: &RecordMeta, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(FIXED_HEADER + 40 + 8 + 64 + body.len());
    let mut flags = 0;
    if meta.base.is_some() {
        flags |= FLAG_BASE;
    }
    if meta.updated_at.is_some() {
        flags |= FLAG_UPDATED_AT;
    }
    if let Some(signature) = &meta.signature {
        flags |= FLAG_SIGNATURE;
        if signature.format == SignatureFormat::V2 {
            flags |= FLAG_SIGNATURE_V2;
        }
    }
    out.push(FORMAT);
    out.push(flags);
    put_version(&mut out, &meta.version);
    out.extend_from_slice(&meta.seq.to_be_bytes());
    out.extend_from_slice(&meta.hash.0);
    if let Some(base) = &meta.base {
        put_version(&mut out, base);
    }
    if let Some(updated_at) = meta.updated_at {
        out.extend_from_slice(&updated_at.to_be_bytes());
    }
    if let Some(signature) = &meta.signature {
        out.extend_from_slice(&signature.bytes);
    }
    out.extend_from_slice(body);
    out
}

fn put_version(out: &mut Vec<u8>, version: &Version) {
    out.extend_from_slice(&version.hlc.0.to_be_bytes());
    out.extend_from_slice(&version.origin.0);
}

/// The length of a stored value with this metadata and a body of `body_len` bytes.
pub(crate) fn encoded_len(meta: &RecordMeta, body_len: usize) -> usize {
    FIXED_HEADER
        + if meta.base.is_some() { 40 } else { 0 }
        + if meta.updated_at.is_some() { 8 } else { 0 }
        + if meta.signature.is_some() { 64 } else { 0 }
        + body_len
}

/// Splits a stored value into its metadata and body bytes.
pub(crate) fn decode(bytes: &[u8]) -> Result<(RecordMeta, &[u8]), &'static str> {
    let mut reader = Reader(bytes);
    let head = reader.take(2)?;
    if head[0] != FORMAT {
        return Err("unknown record format");
    }
    let flags = head[1];
    let version = reader.version()?;
    let seq = reader.u64()?;
    let hash = ContentHash(reader.array()?);
    let base = if flags & FLAG_BASE != 0 {
        Some(reader.version()?)
    } else {
        None
    };
    let updated_at = if flags & FLAG_UPDATED_AT != 0 {
        Some(reader.u64()?)
    } else {
        None
    };
    let signature = if flags & FLAG_SIGNATURE != 0 {
        let format = if flags & FLAG_SIGNATURE_V2 != 0 {
            SignatureFormat::V2
        } else {
            SignatureFormat::V1
        };
        Some(RecordSignature {
            format,
            bytes: reader.array()?,
        })
    } else {
        None
    };
    let meta = RecordMeta {
        version,
        base,
        seq,
        hash,
        updated_at,
        signature,
    };
    Ok((meta, reader.0))
}

/// Decodes the body of a live node value (as `decode` splits it) into its node, with
/// `updated_at` restored from the metadata.
pub(crate) fn decode_live_body(meta: &RecordMeta, body: &[u8]) -> Result<Node, String> {
    let mut node = model::decode_node(body).map_err(|error| error.to_string())?;
    node.updated_at = meta.updated_at;
    Ok(node)
}

/// Decodes a tombstone value.
pub(crate) fn decode_tombstone(bytes: &[u8]) -> Result<(RecordMeta, u64), &'static str> {
    let (meta, body) = decode(bytes)?;
    let deleted_at = Reader(body).u64()?;
    Ok((meta, deleted_at))
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, count: usize) -> Result<&'a [u8], &'static str> {
        if self.0.len() < count {
            return Err("truncated record header");
        }
        let (head, rest) = self.0.split_at(count);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], &'static str> {
        Ok(self.take(N)?.try_into().expect("length checked"))
    }

    fn u64(&mut self) -> Result<u64, &'static str> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    fn version(&mut self) -> Result<Version, &'static str> {
        Ok(Version {
            hlc: Hlc(self.u64()?),
            origin: InstanceId(self.array()?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_with_every_optional_part() {
        let version = Version {
            hlc: Hlc(42),
            origin: InstanceId([7; 32]),
        };
        for flags in 0..16u8 {
            let meta = RecordMeta {
                version,
                base: (flags & 1 != 0).then_some(Version {
                    hlc: Hlc(1),
                    ..version
                }),
                seq: 9,
                hash: ContentHash([3; 32]),
                updated_at: (flags & 2 != 0).then_some(1234),
                signature: (flags & 4 != 0).then_some(RecordSignature {
                    format: if flags & 8 != 0 {
                        SignatureFormat::V2
                    } else {
                        SignatureFormat::V1
                    },
                    bytes: [5; 64],
                }),
            };
            let bytes = encode(&meta, b"body");
            assert_eq!(decode(&bytes), Ok((meta, &b"body"[..])));
            assert!(decode(&bytes[..FIXED_HEADER - 1]).is_err());
        }
    }
}
