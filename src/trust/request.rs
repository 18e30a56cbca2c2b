//! Signed peer-to-peer requests (protocol v2): the bytes a peer signs, the headers that
//! carry the signature, and checking both (with `replay.rs` accepting each once). Reading headers off the wire and deciding
//! what a verified peer may do are left to the server and [`super::Tier`].
//!
//! # Headers
//!
//! | header            | value                                                      |
//! |-------------------|------------------------------------------------------------|
//! | `X-Ark-Key`       | the signer's public key, standard base64 (32 bytes)        |
//! | `X-Ark-Timestamp` | unix milliseconds when signed, decimal                     |
//! | `X-Ark-Nonce`     | 16 to 64 characters of `A-Z a-z 0-9 - _`, fresh per request |
//! | `X-Ark-Signature` | Ed25519 signature over [`signing_bytes`], standard base64  |
//! | `X-Ark-Audience`  | the instance id (hex, or a prefix of it) the request is for; empty when the caller does not know it yet |
//!
//! The body is not sent in a header: the receiver hashes the body it got.
//!
//! # Signed bytes
//!
//! ```text
//! "ark-lattice/request/v1\0"           domain separation: never valid as a record
//!                                      signature or a manifest
//! u32 BE length, method                as on the request line, e.g. "POST"
//! u32 BE length, path and query        origin form, e.g. "/v2/pull?since=42"
//! 32 bytes                             SHA-256 of the body (of nothing for no body)
//! u64 BE                               timestamp, unix milliseconds
//! u32 BE length, nonce
//! u32 BE length, audience              the recipient's instance id (hex or a prefix), or empty
//! ```
//!
//! Every variable field is length-prefixed, so no two different requests have the same
//! bytes. The audience binds a request to its recipient: a peer that received a request
//! cannot replay it to a third instance, which refuses a request addressed to another.
//! The server decides what an empty audience may still do (`info` only).

use std::fmt;

use sha2::{Digest, Sha256};

use super::keys::{KeyError, KeyPair, PublicKey, Signature, VerifyError, verify};
use super::replay::{ReplayError, ReplayGuard};
use crate::model::{InstanceId, hex};

pub const HEADER_KEY: &str = "x-ark-key";
pub const HEADER_TIMESTAMP: &str = "x-ark-timestamp";
pub const HEADER_NONCE: &str = "x-ark-nonce";
pub const HEADER_SIGNATURE: &str = "x-ark-signature";
pub const HEADER_AUDIENCE: &str = "x-ark-audience";

const DOMAIN: &[u8] = b"ark-lattice/request/v1\0";

/// The bytes a peer signs for one request; see the module doc for the layout.
pub fn signing_bytes(
    method: &str,
    path_and_query: &str,
    body_sha256: &[u8; 32],
    timestamp_millis: u64,
    nonce: &str,
    audience: &str,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        DOMAIN.len()
            + 4 * 4
            + method.len()
            + path_and_query.len()
            + 32
            + 8
            + nonce.len()
            + audience.len(),
    );
    out.extend_from_slice(DOMAIN);
    push_with_length(&mut out, method.as_bytes());
    push_with_length(&mut out, path_and_query.as_bytes());
    out.extend_from_slice(body_sha256);
    out.extend_from_slice(&timestamp_millis.to_be_bytes());
    push_with_length(&mut out, nonce.as_bytes());
    push_with_length(&mut out, audience.as_bytes());
    out
}

fn push_with_length(out: &mut Vec<u8>, field: &[u8]) {
    // Header values and request targets are far below 4 GiB; hyper limits them to KBs.
    let length = u32::try_from(field.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(field);
}

pub fn body_sha256(body: &[u8]) -> [u8; 32] {
    Sha256::digest(body).into()
}

/// A fresh nonce: 16 random bytes as 32 hex digits.
pub fn new_nonce() -> Result<String, KeyError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|error| KeyError::NoRandomness(error.to_string()))?;
    Ok(hex(&bytes))
}

/// The four header values for one signed request, in the order of [`Self::pairs`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHeaders {
    pub key: String,
    pub timestamp: String,
    pub nonce: String,
    pub signature: String,
    pub audience: String,
}

impl SignedHeaders {
    pub fn pairs(&self) -> [(&'static str, &str); 5] {
        [
            (HEADER_KEY, &self.key),
            (HEADER_TIMESTAMP, &self.timestamp),
            (HEADER_NONCE, &self.nonce),
            (HEADER_SIGNATURE, &self.signature),
            (HEADER_AUDIENCE, &self.audience),
        ]
    }
}

/// Signs a request about to be sent to `audience` (the recipient's instance id in hex,
/// or empty when not known yet), with a fresh nonce.
pub fn sign_request(
    key_pair: &KeyPair,
    method: &str,
    path_and_query: &str,
    body: &[u8],
    timestamp_millis: u64,
    audience: &str,
) -> Result<SignedHeaders, KeyError> {
    let nonce = new_nonce()?;
    let message = signing_bytes(
        method,
        path_and_query,
        &body_sha256(body),
        timestamp_millis,
        &nonce,
        audience,
    );
    Ok(SignedHeaders {
        key: key_pair.public_key().to_base64(),
        timestamp: timestamp_millis.to_string(),
        nonce,
        signature: key_pair.sign(&message).to_base64(),
        audience: audience.to_owned(),
    })
}

/// Who sent a request whose signature checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedRequest {
    pub public_key: PublicKey,
    pub instance_id: InstanceId,
    pub timestamp_millis: u64,
    /// The recipient the caller signed for; empty when it did not name one.
    pub audience: String,
    pub nonce: String,
}

impl VerifiedRequest {
    /// Accepts this request once: remembers its nonce, refusing one already seen.
    /// Called only once the caller decided to serve the request (the key is trusted
    /// for the route), so keys that are refused anyway take no room in the guard.
    pub(crate) fn accept_once(
        &self,
        guard: &mut ReplayGuard,
        now_millis: u64,
    ) -> Result<(), RequestError> {
        guard
            .check(
                &self.instance_id,
                &self.nonce,
                self.timestamp_millis,
                now_millis,
            )
            .map_err(RequestError::Replay)
    }
}

/// A signed request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestError {
    MissingHeader(&'static str),
    BadKey(KeyError),
    BadTimestamp(String),
    BadSignature(VerifyError),
    Replay(ReplayError),
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestError::MissingHeader(name) => write!(f, "missing header {name}"),
            RequestError::BadKey(reason) => write!(f, "header {HEADER_KEY}: {reason}"),
            RequestError::BadTimestamp(value) => write!(
                f,
                "header {HEADER_TIMESTAMP} is {value:?}, expected unix milliseconds"
            ),
            RequestError::BadSignature(reason) => write!(f, "header {HEADER_SIGNATURE}: {reason}"),
            RequestError::Replay(reason) => reason.fmt(f),
        }
    }
}

impl std::error::Error for RequestError {}

/// Checks a received request: headers present and well-formed, timestamp in the window,
/// signature valid for the key it names. `header` looks a header up by its lowercase
/// name.
///
/// Nothing is remembered here: whether the key belongs to a trusted peer is for the
/// caller to decide from the returned instance id, and then
/// [`VerifiedRequest::accept_once`] refuses a nonce seen before.
pub fn verify_request<'a>(
    header: impl Fn(&str) -> Option<&'a str>,
    method: &str,
    path_and_query: &str,
    body: &[u8],
    guard: &ReplayGuard,
    now_millis: u64,
) -> Result<VerifiedRequest, RequestError> {
    let required = |name: &'static str| header(name).ok_or(RequestError::MissingHeader(name));
    let public_key = PublicKey::from_base64(required(HEADER_KEY)?).map_err(RequestError::BadKey)?;
    let timestamp_text = required(HEADER_TIMESTAMP)?;
    let timestamp_millis: u64 = timestamp_text
        .parse()
        .map_err(|_| RequestError::BadTimestamp(timestamp_text.to_owned()))?;
    let nonce = required(HEADER_NONCE)?;
    let signature =
        Signature::from_base64(required(HEADER_SIGNATURE)?).map_err(RequestError::BadSignature)?;
    // Cheap refusals first: a stale or malformed request costs no signature check.
    guard
        .check_fresh(nonce, timestamp_millis, now_millis)
        .map_err(RequestError::Replay)?;
    let audience = header(HEADER_AUDIENCE).unwrap_or("");
    let message = signing_bytes(
        method,
        path_and_query,
        &body_sha256(body),
        timestamp_millis,
        nonce,
        audience,
    );
    verify(&public_key, &message, &signature).map_err(RequestError::BadSignature)?;
    Ok(VerifiedRequest {
        public_key,
        instance_id: public_key.instance_id(),
        timestamp_millis,
        audience: audience.to_owned(),
        nonce: nonce.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_706_702_400_000;

    #[test]
    fn signing_bytes_layout() {
        let body_hash = body_sha256(b"");
        let bytes = signing_bytes(
            "GET",
            "/v2/pull?since=42",
            &body_hash,
            0x0102,
            "abcdefghijklmnop",
            "ab12",
        );
        let mut expected = b"ark-lattice/request/v1\0".to_vec();
        expected.extend_from_slice(&[0, 0, 0, 3]);
        expected.extend_from_slice(b"GET");
        expected.extend_from_slice(&[0, 0, 0, 17]);
        expected.extend_from_slice(b"/v2/pull?since=42");
        expected.extend_from_slice(&body_hash);
        expected.extend_from_slice(&[0, 0, 0, 0, 0, 0, 1, 2]);
        expected.extend_from_slice(&[0, 0, 0, 16]);
        expected.extend_from_slice(b"abcdefghijklmnop");
        expected.extend_from_slice(&[0, 0, 0, 4]);
        expected.extend_from_slice(b"ab12");
        assert_eq!(bytes, expected);
        assert_eq!(
            hex(&body_hash),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        // Moving a byte between fields changes the bytes: the lengths keep them apart.
        assert_ne!(
            signing_bytes("GET", "/a", &body_hash, 1, "n", ""),
            signing_bytes("GET/", "a", &body_hash, 1, "n", "")
        );
    }

    fn headers_of<'s>(signed: &'s SignedHeaders) -> impl Fn(&str) -> Option<&'s str> + 's {
        move |name| {
            signed
                .pairs()
                .into_iter()
                .find(|(header, _)| *header == name)
                .map(|(_, value)| value)
        }
    }

    #[test]
    fn signed_request_verifies_once() {
        let key_pair = KeyPair::generate().unwrap();
        let body = br#"{"nodes": []}"#;
        let signed = sign_request(&key_pair, "POST", "/v2/push", body, NOW, "").unwrap();
        let guard = ReplayGuard::default();
        let verified = verify_request(
            headers_of(&signed),
            "POST",
            "/v2/push",
            body,
            &guard,
            NOW + 1000,
        )
        .unwrap();
        assert_eq!(verified.public_key, key_pair.public_key());
        assert_eq!(verified.instance_id, key_pair.public_key().instance_id());
        assert_eq!(verified.timestamp_millis, NOW);
        let mut guard = guard;
        verified.accept_once(&mut guard, NOW + 1000).unwrap();
        let stale_guard = ReplayGuard::default();
        let stale = verify_request(
            headers_of(&signed),
            "POST",
            "/v2/push",
            body,
            &stale_guard,
            NOW + 10 * 60_000,
        );
        assert_eq!(
            stale.unwrap_err().to_string(),
            "request timestamp is 600 s behind this node's clock (allowed 300 s); check the clocks"
        );
        let replayed = verify_request(
            headers_of(&signed),
            "POST",
            "/v2/push",
            body,
            &guard,
            NOW + 2000,
        )
        .unwrap();
        assert_eq!(
            replayed.accept_once(&mut guard, NOW + 2000),
            Err(RequestError::Replay(ReplayError::NonceReused))
        );
    }

    #[test]
    fn tampered_or_incomplete_requests_are_refused() {
        fn check(result: Result<VerifiedRequest, RequestError>, expected: &str) {
            assert_eq!(result.unwrap_err().to_string(), expected);
        }
        let key_pair = KeyPair::generate().unwrap();
        let signed = sign_request(&key_pair, "POST", "/v2/push", b"body", NOW, "").unwrap();
        let guard = ReplayGuard::default();
        let mismatch =
            "header x-ark-signature: signature does not match the message and public key";
        check(
            verify_request(
                headers_of(&signed),
                "POST",
                "/v2/push",
                b"bodY",
                &guard,
                NOW,
            ),
            mismatch,
        );
        check(
            verify_request(
                headers_of(&signed),
                "POST",
                "/v2/pull",
                b"body",
                &guard,
                NOW,
            ),
            mismatch,
        );
        check(
            verify_request(headers_of(&signed), "PUT", "/v2/push", b"body", &guard, NOW),
            mismatch,
        );
        // Another key cannot claim the signature.
        let mut other_key = signed.clone();
        other_key.key = KeyPair::generate().unwrap().public_key().to_base64();
        check(
            verify_request(
                headers_of(&other_key),
                "POST",
                "/v2/push",
                b"body",
                &guard,
                NOW,
            ),
            mismatch,
        );
        let mut later = signed.clone();
        later.timestamp = (NOW + 1).to_string();
        check(
            verify_request(headers_of(&later), "POST", "/v2/push", b"body", &guard, NOW),
            mismatch,
        );
        // Failed attempts leave no nonce behind, so the genuine request still passes.
        assert!(guard.is_empty());
        check(
            verify_request(|_| None, "POST", "/v2/push", b"body", &guard, NOW),
            "missing header x-ark-key",
        );
        let mut bad_time = signed.clone();
        bad_time.timestamp = "yesterday".to_owned();
        check(
            verify_request(
                headers_of(&bad_time),
                "POST",
                "/v2/push",
                b"body",
                &guard,
                NOW,
            ),
            "header x-ark-timestamp is \"yesterday\", expected unix milliseconds",
        );
        let mut short_key = signed.clone();
        short_key.key = "AAAA".to_owned();
        check(
            verify_request(
                headers_of(&short_key),
                "POST",
                "/v2/push",
                b"body",
                &guard,
                NOW,
            ),
            "header x-ark-key: public key is 3 bytes, expected 32",
        );
        assert!(
            verify_request(
                headers_of(&signed),
                "POST",
                "/v2/push",
                b"body",
                &guard,
                NOW
            )
            .is_ok()
        );
    }
}
