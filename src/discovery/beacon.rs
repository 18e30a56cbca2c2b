//! The LAN beacon: ARK's Python federation beacon, field for field, plus our public key
//! and a signature so a receiver can check that the fingerprint belongs to the sender.
//! Encoding, decoding and checking only; sockets are left to `socket`.
//!
//! ARK's beacon is `{type: "beacon", peer_id, peer_name, address, port, trust_tier,
//! key_fingerprint, capabilities, version, timestamp}` (timestamp in milliseconds).
//! Ours adds `public_key` (base64) and `signature` (base64 Ed25519 over
//! [`signing_bytes`]). ARK's receivers ignore fields they do not know, and ours accept
//! ARK's unsigned beacons, marked as such.

use std::fmt;

use miniserde::json::{self, Array, Number, Object, Value};

use crate::protocol::{Fields, WireError, parse_object};
use crate::trust::{KeyError, KeyPair, PublicKey, Signature, VerifyError, verify};

/// Largest beacon read, as ARK's listener (`recvfrom(4096)`).
pub const MAX_BEACON_BYTES: usize = 4096;

/// What a signature covers starts with this, so a beacon signature can never be taken
/// for a record or request signature made with the same key.
const SIGNING_DOMAIN: &[u8] = b"ark-lattice/beacon/v1\0";

/// One beacon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Beacon {
    /// The sender's instance id (64 hex digits for ark-lattice, any text for ARK).
    pub peer_id: String,
    pub peer_name: String,
    /// The address the sender says it is reachable at.
    pub address: String,
    /// The sender's federation port.
    pub port: u16,
    /// The tier the sender claims for itself; receivers never take it on trust.
    pub trust_tier: String,
    pub key_fingerprint: String,
    pub capabilities: Vec<String>,
    pub version: String,
    /// Unix milliseconds when it was sent.
    pub timestamp: u64,
    pub public_key: Option<String>,
    pub signature: Option<String>,
}

/// What checking a beacon's signature found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    /// Key, fingerprint, instance id and signature all agree.
    Signed,
    /// No key or signature: an ARK beacon. Its fingerprint is only a claim.
    Unsigned,
    /// It carries a key or signature that does not check out.
    Invalid(BadSignature),
}

/// Why a beacon's key or signature does not check out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadSignature {
    /// A public key without a signature, or the reverse.
    Half,
    BadKey(KeyError),
    /// The key is not the one `peer_id` is the hash of.
    NotPeerIdsKey,
    /// `key_fingerprint` is not the key's.
    Fingerprint {
        claimed: String,
        actual: String,
    },
    Unverified(VerifyError),
}

impl fmt::Display for BadSignature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BadSignature::Half => f.write_str("a public key without a signature, or the reverse"),
            BadSignature::BadKey(error) => error.fmt(f),
            BadSignature::NotPeerIdsKey => f.write_str("the public key does not hash to peer_id"),
            BadSignature::Fingerprint { claimed, actual } => {
                write!(f, "key_fingerprint {claimed} is not the key's ({actual})")
            }
            BadSignature::Unverified(error) => error.fmt(f),
        }
    }
}

/// Why bytes are not a beacon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BeaconError {
    /// The datagram is over [`MAX_BEACON_BYTES`].
    TooLarge { bytes: usize },
    /// A JSON message whose `type` is another than `beacon`.
    NotABeacon { kind: String },
    /// Not a JSON object, or a field missing or wrong (the port among them).
    Wire(WireError),
}

impl fmt::Display for BeaconError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BeaconError::TooLarge { bytes } => write!(
                f,
                "beacon of {bytes} bytes is over the {MAX_BEACON_BYTES}-byte limit"
            ),
            BeaconError::NotABeacon { kind } => write!(f, "message type {kind:?} is not a beacon"),
            BeaconError::Wire(error) => error.fmt(f),
        }
    }
}

impl std::error::Error for BeaconError {}

impl From<WireError> for BeaconError {
    fn from(error: WireError) -> BeaconError {
        BeaconError::Wire(error)
    }
}

impl Beacon {
    /// This instance's beacon, signed with its key.
    pub fn signed(
        key: &KeyPair,
        peer_name: &str,
        address: &str,
        port: u16,
        capabilities: &[&str],
        timestamp: u64,
    ) -> Beacon {
        let public_key = key.public_key();
        let mut beacon = Beacon {
            peer_id: public_key.instance_id().to_hex(),
            peer_name: peer_name.to_owned(),
            address: address.to_owned(),
            port,
            // Receivers always start a newcomer as `unknown` (ARK's rule); claiming
            // more would mean nothing.
            trust_tier: "unknown".to_owned(),
            key_fingerprint: public_key.fingerprint(),
            capabilities: capabilities.iter().map(|name| (*name).to_owned()).collect(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            timestamp,
            public_key: Some(public_key.to_base64()),
            signature: None,
        };
        beacon.signature = Some(key.sign(&beacon.signing_bytes()).to_base64());
        beacon
    }

    /// What the signature covers: the domain, then every ARK field in a fixed order,
    /// each followed by a zero byte (capabilities joined by commas).
    pub fn signing_bytes(&self) -> Vec<u8> {
        let mut bytes = SIGNING_DOMAIN.to_vec();
        for field in [
            self.peer_id.as_str(),
            &self.peer_name,
            &self.address,
            &self.port.to_string(),
            &self.trust_tier,
            &self.key_fingerprint,
            &self.capabilities.join(","),
            &self.version,
            &self.timestamp.to_string(),
        ] {
            bytes.extend_from_slice(field.as_bytes());
            bytes.push(0);
        }
        bytes
    }

    pub fn to_json(&self) -> Value {
        let text = |value: &str| Value::String(value.to_owned());
        let mut object = Object::new();
        object.insert("type".into(), text("beacon"));
        object.insert("peer_id".into(), text(&self.peer_id));
        object.insert("peer_name".into(), text(&self.peer_name));
        object.insert("address".into(), text(&self.address));
        object.insert("port".into(), Value::Number(Number::U64(self.port.into())));
        object.insert("trust_tier".into(), text(&self.trust_tier));
        object.insert("key_fingerprint".into(), text(&self.key_fingerprint));
        let capabilities: Array = self.capabilities.iter().map(|name| text(name)).collect();
        object.insert("capabilities".into(), Value::Array(capabilities));
        object.insert("version".into(), text(&self.version));
        object.insert(
            "timestamp".into(),
            Value::Number(Number::U64(self.timestamp)),
        );
        if let Some(key) = &self.public_key {
            object.insert("public_key".into(), text(key));
        }
        if let Some(signature) = &self.signature {
            object.insert("signature".into(), text(signature));
        }
        Value::Object(object)
    }

    pub fn encode(&self) -> Vec<u8> {
        json::to_string(&self.to_json()).into_bytes()
    }

    /// Reads a beacon. ARK requires `type`, `peer_id`, `peer_name`, `address` and
    /// `port`; the other fields default as ARK's listener defaults them.
    pub fn decode(bytes: &[u8]) -> Result<Beacon, BeaconError> {
        if bytes.len() > MAX_BEACON_BYTES {
            return Err(BeaconError::TooLarge { bytes: bytes.len() });
        }
        let object = parse_object(bytes, "beacon")?;
        let fields = Fields::new(&object, "beacon");
        let kind = fields.str("type")?;
        if kind != "beacon" {
            return Err(BeaconError::NotABeacon {
                kind: kind.to_owned(),
            });
        }
        let port = fields.u64("port")?;
        let port = u16::try_from(port).map_err(|_| {
            WireError::bad_value("beacon", "port", format!("{port} is not a port number"))
        })?;
        let capabilities = fields
            .opt_array("capabilities")?
            .unwrap_or_default()
            .iter()
            .filter_map(|value| match value {
                Value::String(name) => Some(name.clone()),
                _ => None,
            })
            .collect();
        let owned = |value: Option<&str>, default: &str| value.unwrap_or(default).to_owned();
        // Python's `time.time() * 1000` may arrive as a float; only ours are signed, and
        // ours are integers.
        let timestamp = match fields.get("timestamp") {
            Some(Value::Number(Number::U64(n))) => *n,
            Some(Value::Number(Number::F64(n))) if *n >= 0.0 => *n as u64,
            _ => 0,
        };
        Ok(Beacon {
            peer_id: fields.str("peer_id")?.to_owned(),
            peer_name: fields.str("peer_name")?.to_owned(),
            address: fields.str("address")?.to_owned(),
            port,
            trust_tier: owned(fields.opt_str("trust_tier")?, "unknown"),
            key_fingerprint: owned(fields.opt_str("key_fingerprint")?, "no-key"),
            capabilities,
            version: owned(fields.opt_str("version")?, "unknown"),
            timestamp,
            public_key: fields.opt_str("public_key")?.map(str::to_owned),
            signature: fields.opt_str("signature")?.map(str::to_owned),
        })
    }

    /// Checks that the key hashes to `peer_id`, has the claimed fingerprint and signed
    /// the beacon.
    pub fn verify(&self) -> Verification {
        let (key, signature) = match (&self.public_key, &self.signature) {
            (None, None) => return Verification::Unsigned,
            (Some(key), Some(signature)) => (key, signature),
            _ => {
                return Verification::Invalid(BadSignature::Half);
            }
        };
        let key = match PublicKey::from_base64(key) {
            Ok(key) => key,
            Err(error) => return Verification::Invalid(BadSignature::BadKey(error)),
        };
        if key.instance_id().to_hex() != self.peer_id {
            return Verification::Invalid(BadSignature::NotPeerIdsKey);
        }
        if key.fingerprint() != self.key_fingerprint {
            return Verification::Invalid(BadSignature::Fingerprint {
                claimed: self.key_fingerprint.clone(),
                actual: key.fingerprint(),
            });
        }
        let signature = match Signature::from_base64(signature) {
            Ok(signature) => signature,
            Err(error) => return Verification::Invalid(BadSignature::Unverified(error)),
        };
        match verify(&key, &self.signing_bytes(), &signature) {
            Ok(()) => Verification::Signed,
            Err(error) => Verification::Invalid(BadSignature::Unverified(error)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> KeyPair {
        KeyPair::from_seed([7; 32]).unwrap()
    }

    fn ours() -> Beacon {
        Beacon::signed(
            &key(),
            "ARK-local-d75a9801",
            "192.168.1.20",
            9000,
            &["ark-federation-v1", "ark-lattice-v2"],
            1_700_000_000_000,
        )
    }

    #[test]
    fn our_beacon_round_trips_and_verifies() {
        let beacon = ours();
        let decoded = Beacon::decode(&beacon.encode()).unwrap();
        assert_eq!(decoded, beacon);
        assert_eq!(decoded.verify(), Verification::Signed);
        assert_eq!(decoded.key_fingerprint, key().public_key().fingerprint());
    }

    #[test]
    fn a_changed_field_or_borrowed_fingerprint_fails() {
        fn check(change: impl Fn(&mut Beacon), expected_problem: &str) -> BadSignature {
            let mut beacon = ours();
            change(&mut beacon);
            match beacon.verify() {
                Verification::Invalid(reason) => {
                    assert!(reason.to_string().contains(expected_problem), "{reason}");
                    reason
                }
                other => panic!("expected a failure with {expected_problem:?}, got {other:?}"),
            }
        }
        let unverified = |reason| matches!(reason, BadSignature::Unverified(_));
        assert!(unverified(check(|beacon| beacon.port = 9001, "signature")));
        assert!(unverified(check(
            |beacon| beacon.address = "10.0.0.9".into(),
            "signature"
        )));
        assert!(unverified(check(
            |beacon| beacon.timestamp += 1,
            "signature"
        )));
        assert!(matches!(
            check(
                |beacon| beacon.key_fingerprint = "SHA256:0000-0000-0000-0000".into(),
                "key_fingerprint",
            ),
            BadSignature::Fingerprint { .. }
        ));
        let other = KeyPair::from_seed([8; 32]).unwrap().public_key();
        assert_eq!(
            check(
                |beacon| beacon.public_key = Some(other.to_base64()),
                "peer_id",
            ),
            BadSignature::NotPeerIdsKey
        );
        assert_eq!(
            check(|beacon| beacon.signature = None, "without a signature"),
            BadSignature::Half
        );
    }

    #[test]
    fn ark_python_beacons_are_read_unsigned() {
        let ark = br#"{"type": "beacon", "peer_id": "node-abc", "peer_name": "ARK Pi",
            "address": "192.168.1.30", "port": 8102, "trust_tier": "core",
            "key_fingerprint": "abcd1234abcd1234...", "capabilities": ["lattice"],
            "version": "v6.0", "timestamp": 1731300000000}"#;
        let beacon = Beacon::decode(ark).unwrap();
        assert_eq!(beacon.peer_id, "node-abc");
        assert_eq!(beacon.port, 8102);
        assert_eq!(beacon.capabilities, vec!["lattice".to_owned()]);
        assert_eq!(beacon.verify(), Verification::Unsigned);
        let minimal = br#"{"type":"beacon","peer_id":"x","peer_name":"x","address":"a","port":1}"#;
        let beacon = Beacon::decode(minimal).unwrap();
        assert_eq!(
            (beacon.trust_tier.as_str(), beacon.timestamp),
            ("unknown", 0)
        );
    }

    #[test]
    fn non_beacons_are_refused_with_a_reason() {
        fn check(bytes: &[u8], expected: &str) -> BeaconError {
            let error = Beacon::decode(bytes).unwrap_err();
            assert!(error.to_string().contains(expected), "{error}");
            error
        }
        let error = check(b"not json", "not valid JSON");
        assert!(matches!(
            error,
            BeaconError::Wire(WireError::NotJson { .. })
        ));
        assert_eq!(
            check(br#"{"type":"hello"}"#, "not a beacon"),
            BeaconError::NotABeacon {
                kind: "hello".into()
            }
        );
        assert_eq!(
            check(
                br#"{"type":"beacon","peer_id":"x","peer_name":"x","address":"a"}"#,
                "`port`",
            ),
            BeaconError::Wire(WireError::missing("beacon", "port"))
        );
        let error = check(
            br#"{"type":"beacon","peer_id":"x","peer_name":"x","address":"a","port":70000}"#,
            "70000 is not a port number",
        );
        assert!(
            matches!(error, BeaconError::Wire(WireError::BadValue { field, .. }) if field == "port")
        );
        assert_eq!(
            check(&vec![b' '; MAX_BEACON_BYTES + 1], "limit"),
            BeaconError::TooLarge {
                bytes: MAX_BEACON_BYTES + 1
            }
        );
    }
}
