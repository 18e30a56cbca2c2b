//! What an author's record signature covers, as plain data: the record id, whether it is
//! live or deleted, its content hash or deletion time, its version and its base. The
//! bytes signed over it are `trust`'s business.

use super::{ContentHash, Version};

/// The fields of one record version that its author's signature covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordClaim<'a> {
    pub id: &'a str,
    pub content: ClaimedContent,
    pub version: Version,
    pub base: Option<Version>,
}

/// A live record's content hash, or the time a tombstone says the record was deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimedContent {
    Live(ContentHash),
    Deleted { deleted_at: u64 },
}

/// Which bytes a stored or received record signature was made over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureFormat {
    /// `ark-lattice/record/v1`: the content hash and the version only. Written by older
    /// nodes; it does not cover the id of a tombstone, nor any record's base.
    V1,
    /// `ark-lattice/record/v2`: every field of [`RecordClaim`].
    V2,
}

/// An author's signature on a record version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordSignature {
    pub format: SignatureFormat,
    pub bytes: [u8; 64],
}

impl RecordSignature {
    pub fn v2(bytes: [u8; 64]) -> RecordSignature {
        RecordSignature {
            format: SignatureFormat::V2,
            bytes,
        }
    }
}
