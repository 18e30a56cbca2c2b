//! Provenance signatures on records: the writing instance signs a record's content hash
//! together with its version, so a relayed record can be traced to its origin. Which
//! records need a signature, and storing them, is left to the store and sync layers.
//!
//! # Signed bytes
//!
//! ```text
//! "ark-lattice/record/v1\0"    domain separation from requests and manifests
//! 32 bytes                     SHA-256 of the canonical bytes (model::ContentHash)
//! u64 BE                       version hlc
//! 32 bytes                     version origin (the writer's instance id)
//! ```
//!
//! Signing the hash rather than the content keeps the message small and lets a
//! signature be checked from a stored hash. The origin is inside the signed bytes *and*
//! must be the instance id of the verifying key: a valid signature by some other key
//! does not make a record that key's to claim, which is the mistake the Python service
//! made by verifying against whatever key came with the manifest.

use std::fmt;

use super::keys::{KeyPair, PublicKey, Signature, VerifyError, verify};
use crate::model::{ContentHash, InstanceId, Version};

const DOMAIN: &[u8] = b"ark-lattice/record/v1\0";

/// The bytes signed for a record with these canonical bytes at this version.
pub fn record_signing_bytes(canonical_bytes: &[u8], version: &Version) -> Vec<u8> {
    let mut out = Vec::with_capacity(DOMAIN.len() + 32 + 8 + 32);
    out.extend_from_slice(DOMAIN);
    out.extend_from_slice(&ContentHash::of(canonical_bytes).0);
    out.extend_from_slice(&version.hlc.0.to_be_bytes());
    out.extend_from_slice(&version.origin.0);
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

/// Signs a record written by this instance; refuses a version naming another origin.
pub fn sign_record(
    key_pair: &KeyPair,
    canonical_bytes: &[u8],
    version: &Version,
) -> Result<Signature, RecordError> {
    check_origin(&key_pair.public_key(), version)?;
    Ok(key_pair.sign(&record_signing_bytes(canonical_bytes, version)))
}

/// Checks that `signature` was made by the record's origin over this content and version.
pub fn verify_record(
    public_key: &PublicKey,
    canonical_bytes: &[u8],
    version: &Version,
    signature: &Signature,
) -> Result<(), RecordError> {
    check_origin(public_key, version)?;
    verify(
        public_key,
        &record_signing_bytes(canonical_bytes, version),
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
        let bytes = record_signing_bytes(b"", &version);
        assert_eq!(
            hex(&bytes),
            format!(
                "{}{}{}{}",
                hex(b"ark-lattice/record/v1\0"),
                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                "0000000001020304",
                "ab".repeat(32)
            )
        );
    }

    #[test]
    fn signed_record_verifies_and_any_change_breaks_it() {
        fn check(result: Result<(), RecordError>, expected: &str) {
            assert_eq!(result.unwrap_err().to_string(), expected);
        }
        let writer = KeyPair::generate().unwrap();
        let version = version_of(&writer, 1_706_702_400_000);
        let content = node("fn main() {}");
        let signature = sign_record(&writer, &content, &version).unwrap();
        let public_key = writer.public_key();
        assert_eq!(
            verify_record(&public_key, &content, &version, &signature),
            Ok(())
        );
        let mismatch = "record signature does not match the message and public key";
        check(
            verify_record(
                &public_key,
                &node("fn main() { evil() }"),
                &version,
                &signature,
            ),
            mismatch,
        );
        let later = Version {
            hlc: Hlc(version.hlc.0 + 1),
            ..version
        };
        check(
            verify_record(&public_key, &content, &later, &signature),
            mismatch,
        );
    }

    #[test]
    fn only_the_origin_key_is_accepted() {
        let writer = KeyPair::generate().unwrap();
        let impostor = KeyPair::generate().unwrap();
        let version = version_of(&writer, 1_706_702_400_000);
        let content = node("x");
        let expected = RecordError::NotOrigin {
            origin: writer.public_key().instance_id(),
            key_instance: impostor.public_key().instance_id(),
        };
        // The impostor can neither sign as the writer nor have its own signature over
        // the writer's version accepted.
        assert_eq!(
            sign_record(&impostor, &content, &version),
            Err(expected.clone())
        );
        let forged = impostor.sign(&record_signing_bytes(&content, &version));
        assert_eq!(
            verify_record(&impostor.public_key(), &content, &version, &forged),
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
