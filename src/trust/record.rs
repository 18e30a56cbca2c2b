//! Provenance signatures on records: the writing instance signs what identifies a
//! record version — its id, whether it is live or deleted, its content hash or deletion
//! time, its version and its base — so a relay can neither alter a record nor move a
//! signature onto another one. Which records need a signature, and storing them, is left
//! to the store and sync layers.
//!
//! # Signed bytes (format 2)
//!
//! ```text
//! "ark-lattice/record/v2\0"    domain separation from requests, manifests and format 1
//! u32 BE + UTF-8               record id
//! u8                           0 = live, 1 = deleted
//! 32 bytes | u64 BE            live: SHA-256 of the canonical bytes; deleted: deleted_at
//! u64 BE, 32 bytes             version hlc, version origin (the writer's instance id)
//! u8 [u64 BE, 32 bytes]        0 = no base | 1 = base hlc, base origin
//! ```
//!
//! Format 1 (`"ark-lattice/record/v1\0" || content hash || hlc || origin`), written by
//! older nodes, is still verified for live records: their canonical bytes include the
//! id, so the content hash pins it. It covers no base, and a tombstone's "content hash"
//! is the hash of nothing, so a format 1 tombstone could be moved onto any id: callers
//! must never delete on one (see `sync::client`).
//!
//! Signing the hash rather than the content keeps the message small and lets a
//! signature be checked from a stored hash. The origin is inside the signed bytes *and*
//! must be the instance id of the verifying key: a valid signature by some other key
//! does not make a record that key's to claim, which is the mistake the Python service
//! made by verifying against whatever key came with the manifest.

use std::fmt;

use super::keys::{KeyPair, PublicKey, Signature, VerifyError, verify};
use crate::model::{ClaimedContent, ContentHash, InstanceId, RecordClaim, Version};

const DOMAIN_V1: &[u8] = b"ark-lattice/record/v1\0";
const DOMAIN_V2: &[u8] = b"ark-lattice/record/v2\0";

/// The bytes a format 2 signature covers.
pub fn record_signing_bytes(claim: &RecordClaim<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(DOMAIN_V2.len() + 4 + claim.id.len() + 1 + 32 + 40 + 41);
    out.extend_from_slice(DOMAIN_V2);
    out.extend_from_slice(&(claim.id.len() as u32).to_be_bytes());
    out.extend_from_slice(claim.id.as_bytes());
    match claim.content {
        ClaimedContent::Live(hash) => {
            out.push(0);
            out.extend_from_slice(&hash.0);
        }
        ClaimedContent::Deleted { deleted_at } => {
            out.push(1);
            out.extend_from_slice(&deleted_at.to_be_bytes());
        }
    }
    put_version(&mut out, &claim.version);
    match &claim.base {
        None => out.push(0),
        Some(base) => {
            out.push(1);
            put_version(&mut out, base);
        }
    }
    out
}

fn put_version(out: &mut Vec<u8>, version: &Version) {
    out.extend_from_slice(&version.hlc.0.to_be_bytes());
    out.extend_from_slice(&version.origin.0);
}

/// The bytes a format 1 signature covers: a record with these canonical bytes (empty
/// for a tombstone) at this version.
pub fn record_signing_bytes_v1(canonical_bytes: &[u8], version: &Version) -> Vec<u8> {
    let mut out = Vec::with_capacity(DOMAIN_V1.len() + 32 + 8 + 32);
    out.extend_from_slice(DOMAIN_V1);
    out.extend_from_slice(&ContentHash::of(canonical_bytes).0);
    put_version(&mut out, version);
    out
}

/// A record signature was refused, or could not be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordError {
    /// The version names another instance than the one owning the key.
    NotOrigin {
        origin: InstanceId,
        key_instance: InstanceId,
    },
    Signature(VerifyError),
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordError::NotOrigin {
                origin,
                key_instance,
            } => write!(
                f,
                "record version names origin {} but the key belongs to instance {}",
                origin.short(),
                key_instance.short()
            ),
            RecordError::Signature(reason) => write!(f, "record {reason}"),
        }
    }
}

impl std::error::Error for RecordError {}

/// Signs a record version written by this instance (format 2); refuses a version
/// naming another origin.
pub fn sign_record(key_pair: &KeyPair, claim: &RecordClaim<'_>) -> Result<Signature, RecordError> {
    check_origin(&key_pair.public_key(), &claim.version)?;
    Ok(key_pair.sign(&record_signing_bytes(claim)))
}

/// Checks that `signature` was made by the record's origin over exactly this claim
/// (format 2).
pub fn verify_record(
    public_key: &PublicKey,
    claim: &RecordClaim<'_>,
    signature: &Signature,
) -> Result<(), RecordError> {
    check_origin(public_key, &claim.version)?;
    verify(public_key, &record_signing_bytes(claim), signature).map_err(RecordError::Signature)
}

/// Signs in format 1, as older nodes did. Only for making the records an older node
/// would have stored or sent (tests, and compatibility checks).
pub fn sign_record_v1(
    key_pair: &KeyPair,
    canonical_bytes: &[u8],
    version: &Version,
) -> Result<Signature, RecordError> {
    check_origin(&key_pair.public_key(), version)?;
    Ok(key_pair.sign(&record_signing_bytes_v1(canonical_bytes, version)))
}

/// Checks a format 1 signature over these canonical bytes and version.
pub fn verify_record_v1(
    public_key: &PublicKey,
    canonical_bytes: &[u8],
    version: &Version,
    signature: &Signature,
) -> Result<(), RecordError> {
    check_origin(public_key, version)?;
    verify(
        public_key,
        &record_signing_bytes_v1(canonical_bytes, version),
        signature,
    )
    .map_err(RecordError::Signature)
}

fn check_origin(public_key: &PublicKey, version: &Version) -> Result<(), RecordError> {
    let key_instance = public_key.instance_id();
    if key_instance != version.origin {
        return Err(RecordError::NotOrigin {
            origin: version.origin,
            key_instance,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Hlc, Node, encode_node, hex};

    fn node(value: &str) -> Vec<u8> {
        encode_node(&Node {
            id: "template-1".to_owned(),
            node_type: "template".to_owned(),
            value: value.to_owned(),
            ..Node::default()
        })
    }

    fn version_of(key_pair: &KeyPair, millis: u64) -> Version {
        Version {
            hlc: Hlc::from_parts(millis, 0),
            origin: key_pair.public_key().instance_id(),
        }
    }

    #[test]
    fn signing_bytes_layout() {
        let version = Version {
            hlc: Hlc(0x0102_0304),
            origin: InstanceId([0xab; 32]),
        };
        let base = Version {
            hlc: Hlc(5),
            origin: InstanceId([0xcd; 32]),
        };
        let empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(
            hex(&record_signing_bytes_v1(b"", &version)),
            format!(
                "{}{empty}{}{}",
                hex(b"ark-lattice/record/v1\0"),
                "0000000001020304",
                "ab".repeat(32)
            )
        );
        let live = RecordClaim {
            id: "ab",
            content: ClaimedContent::Live(ContentHash::of(b"")),
            version,
            base: Some(base),
        };
        assert_eq!(
            hex(&record_signing_bytes(&live)),
            format!(
                "{}00000002{}00{empty}{}{}01{}{}",
                hex(b"ark-lattice/record/v2\0"),
                hex(b"ab"),
                "0000000001020304",
                "ab".repeat(32),
                "0000000000000005",
                "cd".repeat(32)
            )
        );
        let deleted = RecordClaim {
            content: ClaimedContent::Deleted { deleted_at: 9 },
            base: None,
            ..live
        };
        assert_eq!(
            hex(&record_signing_bytes(&deleted)),
            format!(
                "{}00000002{}01{}{}{}00",
                hex(b"ark-lattice/record/v2\0"),
                hex(b"ab"),
                "0000000000000009",
                "0000000001020304",
                "ab".repeat(32)
            )
        );
    }

    #[test]
    fn a_v2_signature_breaks_when_any_covered_field_changes() {
        let writer = KeyPair::generate().unwrap();
        let version = version_of(&writer, 1_706_702_400_000);
        let claim = RecordClaim {
            id: "accessibility_aria",
            content: ClaimedContent::Deleted {
                deleted_at: 1_706_702_400_000,
            },
            version,
            base: Some(Version {
                hlc: Hlc(7),
                origin: InstanceId([3; 32]),
            }),
        };
        let signature = sign_record(&writer, &claim).unwrap();
        let public_key = writer.public_key();
        assert_eq!(verify_record(&public_key, &claim, &signature), Ok(()));
        let mismatch = "record signature does not match the message and public key";
        let changed = [
            RecordClaim {
                id: "accelerate_launch",
                ..claim
            },
            RecordClaim {
                content: ClaimedContent::Deleted { deleted_at: 1 },
                ..claim
            },
            RecordClaim {
                content: ClaimedContent::Live(ContentHash::of(b"")),
                ..claim
            },
            RecordClaim {
                base: None,
                ..claim
            },
            RecordClaim {
                base: Some(version),
                ..claim
            },
            RecordClaim {
                version: Version {
                    hlc: Hlc(version.hlc.0 + 1),
                    ..version
                },
                ..claim
            },
        ];
        for forged in changed {
            assert_eq!(
                verify_record(&public_key, &forged, &signature)
                    .unwrap_err()
                    .to_string(),
                mismatch,
                "{forged:?}"
            );
        }
    }

    #[test]
    fn formats_are_domain_separated() {
        let writer = KeyPair::generate().unwrap();
        let version = version_of(&writer, 1_706_702_400_000);
        let content = node("fn main() {}");
        let v1 = sign_record_v1(&writer, &content, &version).unwrap();
        let public_key = writer.public_key();
        assert_eq!(
            verify_record_v1(&public_key, &content, &version, &v1),
            Ok(())
        );
        assert!(verify_record_v1(&public_key, &node("evil()"), &version, &v1).is_err());
        let claim = RecordClaim {
            id: "template-1",
            content: ClaimedContent::Live(ContentHash::of(&content)),
            version,
            base: None,
        };
        // A format 1 signature is no format 2 signature of the same record, and back.
        assert!(verify_record(&public_key, &claim, &v1).is_err());
        let v2 = sign_record(&writer, &claim).unwrap();
        assert!(verify_record_v1(&public_key, &content, &version, &v2).is_err());
    }

    #[test]
    fn only_the_origin_key_is_accepted() {
        let writer = KeyPair::generate().unwrap();
        let impostor = KeyPair::generate().unwrap();
        let claim = RecordClaim {
            id: "template-1",
            content: ClaimedContent::Live(ContentHash::of(&node("x"))),
            version: version_of(&writer, 1_706_702_400_000),
            base: None,
        };
        let expected = RecordError::NotOrigin {
            origin: writer.public_key().instance_id(),
            key_instance: impostor.public_key().instance_id(),
        };
        // The impostor can neither sign as the writer nor have its own signature over
        // the writer's version accepted.
        assert_eq!(sign_record(&impostor, &claim), Err(expected.clone()));
        let forged = impostor.sign(&record_signing_bytes(&claim));
        assert_eq!(
            verify_record(&impostor.public_key(), &claim, &forged),
            Err(expected.clone())
        );
        assert_eq!(
            expected.to_string(),
            format!(
                "record version names origin {} but the key belongs to instance {}",
                writer.public_key().instance_id().short(),
                impostor.public_key().instance_id().short()
            )
        );
    }
}
