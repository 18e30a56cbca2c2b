//! Ed25519 identity keys: key pairs, public keys, signatures and fingerprints. The
//! key file is in `keyfile.rs`; deciding *which* keys to trust is left to the callers.
//!
//! # Compatibility with ARK's Python tools
//!
//! ARK's docs create keys with PyNaCl (`nacl.signing.SigningKey.generate()`) and print
//! `Private Key: <base64>` (the 32-byte seed) and `Public Key: <base64>` (the 32-byte
//! verify key). Both are standard Ed25519 (RFC 8032), standard base64 with padding, so a
//! seed printed by PyNaCl loads here with [`KeyPair::from_base64_seed`] and yields the same
//! public key, and the reverse holds too. Signatures are the plain 64-byte RFC 8032 form,
//! which PyNaCl's `VerifyKey.verify(message, signature)` accepts.

use std::fmt;

use ct_codecs::{Base64, Decoder, Encoder};
use sha2::{Digest, Sha256};

use crate::model::{InstanceId, hex};

/// Bytes in a seed and in a public key.
const KEY_BYTES: usize = 32;
/// Bytes in a signature.
const SIGNATURE_BYTES: usize = 64;

/// A key or seed could not be read from its text or byte form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyError {
    /// The text is not standard base64; `what` names the key ("public key", "seed").
    NotBase64 { what: &'static str },
    WrongLength {
        what: &'static str,
        actual: usize,
        expected: usize,
    },
    /// An all-zero seed is what an unfilled buffer looks like, never a real key.
    ZeroSeed,
    /// The operating system could not supply random bytes for a new key.
    NoRandomness(String),
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::NotBase64 { what } => write!(f, "{what} is not valid base64"),
            KeyError::WrongLength {
                what,
                actual,
                expected,
            } => write!(f, "{what} is {actual} bytes, expected {expected}"),
            KeyError::ZeroSeed => f.write_str("seed is all zeros"),
            KeyError::NoRandomness(reason) => {
                write!(f, "cannot get random bytes for a new key: {reason}")
            }
        }
    }
}

impl std::error::Error for KeyError {}

/// A signature did not verify, with the reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyError {
    SignatureNotBase64,
    SignatureLength {
        actual: usize,
    },
    /// The public key is not a usable curve point (or is a weak, small-order one).
    UnusablePublicKey,
    Mismatch,
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VerifyError::SignatureNotBase64 => f.write_str("signature is not valid base64"),
            VerifyError::SignatureLength { actual } => {
                write!(f, "signature is {actual} bytes, expected {SIGNATURE_BYTES}")
            }
            VerifyError::UnusablePublicKey => {
                f.write_str("public key is not a valid ed25519 point")
            }
            VerifyError::Mismatch => {
                f.write_str("signature does not match the message and public key")
            }
        }
    }
}

impl std::error::Error for VerifyError {}

/// An Ed25519 public key, the identity of an ARK instance.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PublicKey([u8; KEY_BYTES]);

impl PublicKey {
    pub(crate) fn from_bytes(bytes: &[u8]) -> Result<PublicKey, KeyError> {
        array_of("public key", bytes).map(PublicKey)
    }

    /// Reads the standard base64 form PyNaCl prints as `Public Key:`.
    pub fn from_base64(text: &str) -> Result<PublicKey, KeyError> {
        PublicKey::from_bytes(&decode_base64("public key", text)?)
    }

    pub fn to_base64(&self) -> String {
        encode_base64(&self.0)
    }

    pub fn as_bytes(&self) -> &[u8; KEY_BYTES] {
        &self.0
    }

    /// SHA-256 of the raw key: the id under which this instance's writes are versioned.
    pub fn instance_id(&self) -> InstanceId {
        InstanceId(Sha256::digest(self.0).into())
    }

    /// A short form for people to compare by eye: `SHA256:` and the first 16 hex digits
    /// of the instance id in groups of four, e.g. `SHA256:d75a-9801-82b1-0ab7`.
    ///
    /// It starts with the same 8 digits as the instance name ARK shows
    /// (`InstanceId::short`), and 64 bits are plenty against an accidental match,
    /// though not against someone grinding keys; machines compare the full id.
    pub fn fingerprint(&self) -> String {
        let digits = self.instance_id().to_hex();
        let groups: Vec<&str> = (0..4).map(|i| &digits[i * 4..i * 4 + 4]).collect();
        format!("SHA256:{}", groups.join("-"))
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_base64())
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_base64())
    }
}

/// A 64-byte Ed25519 signature (RFC 8032 `R || S`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature([u8; SIGNATURE_BYTES]);

impl Signature {
    pub(crate) fn from_bytes(bytes: &[u8]) -> Result<Signature, VerifyError> {
        let array: [u8; SIGNATURE_BYTES] =
            bytes.try_into().map_err(|_| VerifyError::SignatureLength {
                actual: bytes.len(),
            })?;
        Ok(Signature(array))
    }

    pub fn from_base64(text: &str) -> Result<Signature, VerifyError> {
        let bytes =
            decode_base64("signature", text).map_err(|_| VerifyError::SignatureNotBase64)?;
        Signature::from_bytes(&bytes)
    }

    pub fn to_base64(&self) -> String {
        encode_base64(&self.0)
    }

    pub fn as_bytes(&self) -> &[u8; SIGNATURE_BYTES] {
        &self.0
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({})", hex(&self.0))
    }
}

/// This instance's signing key. Its `Debug` form shows only the public half.
#[derive(Clone)]
pub struct KeyPair {
    inner: ed25519_compact::KeyPair,
}

impl KeyPair {
    /// Derives the key pair from a 32-byte seed, as PyNaCl's `SigningKey(seed)` does.
    pub fn from_seed(seed: [u8; KEY_BYTES]) -> Result<KeyPair, KeyError> {
        let inner = ed25519_compact::KeyPair::try_from_seed(ed25519_compact::Seed::new(seed))
            .map_err(|_| KeyError::ZeroSeed)?;
        Ok(KeyPair { inner })
    }

    /// Reads the seed PyNaCl prints as `Private Key:`.
    pub(crate) fn from_base64_seed(text: &str) -> Result<KeyPair, KeyError> {
        KeyPair::from_seed(array_of("seed", &decode_base64("seed", text)?)?)
    }

    /// A new key from the operating system's random source.
    pub fn generate() -> Result<KeyPair, KeyError> {
        let mut seed = [0u8; KEY_BYTES];
        getrandom::fill(&mut seed).map_err(|error| KeyError::NoRandomness(error.to_string()))?;
        KeyPair::from_seed(seed)
    }

    /// The base64 seed: the secret, in the form the key file and PyNaCl use.
    pub fn seed_base64(&self) -> String {
        encode_base64(&self.inner.sk.seed()[..])
    }

    pub fn public_key(&self) -> PublicKey {
        PublicKey(*self.inner.pk)
    }

    pub fn sign(&self, message: &[u8]) -> Signature {
        // Deterministic RFC 8032 signatures (no added noise) so that PyNaCl, which signs
        // deterministically, produces byte-identical signatures for the same key.
        Signature(*self.inner.sk.sign(message, None))
    }
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyPair({})", self.public_key().fingerprint())
    }
}

/// Checks `signature` over `message` against `public_key`.
pub fn verify(
    public_key: &PublicKey,
    message: &[u8],
    signature: &Signature,
) -> Result<(), VerifyError> {
    let key = ed25519_compact::PublicKey::new(public_key.0);
    let signature = ed25519_compact::Signature::new(signature.0);
    key.verify(message, &signature)
        .map_err(|error| match error {
            ed25519_compact::Error::WeakPublicKey | ed25519_compact::Error::InvalidPublicKey => {
                VerifyError::UnusablePublicKey
            }
            _ => VerifyError::Mismatch,
        })
}

fn array_of(what: &'static str, bytes: &[u8]) -> Result<[u8; KEY_BYTES], KeyError> {
    bytes.try_into().map_err(|_| KeyError::WrongLength {
        what,
        actual: bytes.len(),
        expected: KEY_BYTES,
    })
}

/// Decodes standard padded base64, ignoring surrounding whitespace (a pasted key or a
/// file's trailing newline).
fn decode_base64(what: &'static str, text: &str) -> Result<Vec<u8>, KeyError> {
    Base64::decode_to_vec(text.trim(), None).map_err(|_| KeyError::NotBase64 { what })
}

fn encode_base64(bytes: &[u8]) -> String {
    // Encoding cannot fail: the output buffer is sized by `encoded_len`.
    Base64::encode_to_string(bytes).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::parse_hex;

    fn bytes_of(hex_text: &str) -> Vec<u8> {
        parse_hex(hex_text).expect("test vector is hex")
    }

    /// RFC 8032 section 7.1, tests 1 and 2: seed, public key, message, signature.
    const RFC8032: [(&str, &str, &str, &str); 2] = [
        (
            "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
            "",
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
        ),
        (
            "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
            "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
            "72",
            "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
        ),
    ];

    #[test]
    fn rfc8032_vectors_derive_sign_and_verify() {
        for (seed, public, message, signature) in RFC8032 {
            let key_pair = KeyPair::from_seed(bytes_of(seed).try_into().unwrap()).unwrap();
            assert_eq!(hex(key_pair.public_key().as_bytes()), public);
            let made = key_pair.sign(&bytes_of(message));
            assert_eq!(hex(made.as_bytes()), signature);
            assert_eq!(
                verify(&key_pair.public_key(), &bytes_of(message), &made),
                Ok(())
            );
        }
    }

    #[test]
    fn pynacl_base64_forms_round_trip() {
        // What PyNaCl prints for the RFC 8032 test 1 key:
        // base64.b64encode(bytes(SigningKey(seed))) and bytes(signing_key.verify_key).
        let private = "nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=";
        let public = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";
        let key_pair = KeyPair::from_base64_seed(private).unwrap();
        assert_eq!(key_pair.seed_base64(), private);
        assert_eq!(key_pair.public_key().to_base64(), public);
        assert_eq!(PublicKey::from_base64(public), Ok(key_pair.public_key()));
        // Pasted with surrounding whitespace, as copied from a terminal.
        assert!(KeyPair::from_base64_seed(&format!("  {private}\n")).is_ok());
    }

    #[test]
    fn key_parse_errors_name_the_problem() {
        fn check(result: Result<PublicKey, KeyError>, expected: &str) {
            assert_eq!(result.unwrap_err().to_string(), expected);
        }
        check(
            PublicKey::from_base64("11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHUQ=="),
            "public key is 31 bytes, expected 32",
        );
        check(
            PublicKey::from_base64("not base64!"),
            "public key is not valid base64",
        );
        check(
            PublicKey::from_bytes(&[7; 33]),
            "public key is 33 bytes, expected 32",
        );
        assert_eq!(
            KeyPair::from_base64_seed(&encode_base64(&[0; 32]))
                .unwrap_err()
                .to_string(),
            "seed is all zeros"
        );
        assert_eq!(
            KeyPair::from_base64_seed("AAAA").unwrap_err().to_string(),
            "seed is 3 bytes, expected 32"
        );
    }

    #[test]
    fn verify_reports_each_failure() {
        fn check(result: Result<(), VerifyError>, expected: &str) {
            assert_eq!(result.unwrap_err().to_string(), expected);
        }
        let key_pair = KeyPair::generate().unwrap();
        let signature = key_pair.sign(b"pull since 42");
        assert_eq!(
            verify(&key_pair.public_key(), b"pull since 42", &signature),
            Ok(())
        );
        check(
            verify(&key_pair.public_key(), b"pull since 43", &signature),
            "signature does not match the message and public key",
        );
        let other = KeyPair::generate().unwrap().public_key();
        check(
            verify(&other, b"pull since 42", &signature),
            "signature does not match the message and public key",
        );
        check(
            Signature::from_base64("%%%").map(|_| ()),
            "signature is not valid base64",
        );
        check(
            Signature::from_base64(&encode_base64(&[1; 63])).map(|_| ()),
            "signature is 63 bytes, expected 64",
        );
        // The identity point has small order: no signature may verify against it.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        check(
            verify(&PublicKey(identity), b"", &signature),
            "public key is not a valid ed25519 point",
        );
        assert_eq!(
            Signature::from_base64(&signature.to_base64()),
            Ok(signature)
        );
    }

    #[test]
    fn instance_id_and_fingerprint() {
        let public = PublicKey::from_bytes(&bytes_of(RFC8032[0].1)).unwrap();
        let id = public.instance_id();
        assert_eq!(id.0, <[u8; 32]>::from(Sha256::digest(public.as_bytes())));
        let digits = id.to_hex();
        let fingerprint = public.fingerprint();
        assert_eq!(
            fingerprint,
            format!(
                "SHA256:{}-{}-{}-{}",
                &digits[0..4],
                &digits[4..8],
                &digits[8..12],
                &digits[12..16]
            )
        );
        assert!(fingerprint.starts_with(&format!("SHA256:{}", &id.short()[..4])));
        assert_ne!(
            fingerprint,
            KeyPair::generate().unwrap().public_key().fingerprint()
        );
    }

    #[test]
    fn debug_never_shows_the_seed() {
        let key_pair =
            KeyPair::from_base64_seed("nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=").unwrap();
        let shown = format!("{key_pair:?}");
        assert!(shown.starts_with("KeyPair(SHA256:"), "{shown}");
        assert!(!shown.contains("nWGx"));
    }
}
