//! Trust entries: which keys this instance believes, and for what. Stored by the caller
//! (the store's trust table, keyed by instance id hex) as the JSON written here.
//!
//! An entry is either **trusted** with a tier (`core`, `sandbox`, `external`), or
//! **pending**: a key that signed a request to us but nobody has accepted yet, kept so
//! the operator can `trust accept` it after comparing fingerprints.

use miniserde::json::{self, Number, Object, Value};

use super::keys::{KeyError, PublicKey};
use super::tier::{Tier, TierError};

/// One key this instance knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustEntry {
    pub public_key: PublicKey,
    pub name: Option<String>,
    pub tier: Tier,
    /// Seen, not accepted: grants nothing.
    pub pending: bool,
    pub added_at: u64,
    pub last_seen: Option<u64>,
    /// Where the entry came from: `cli`, `peer` (pinned by add-peer), `env`
    /// (`ARK_FED_PUBKEY`) or `request` (an unknown signed caller).
    pub source: String,
}

/// Why a stored trust entry cannot be read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrustEntryError {
    NotUtf8,
    /// Not JSON, or JSON but not an object.
    NotObject,
    /// A field every entry has (`publicKey`, `tier`) is absent or not a string.
    Missing {
        field: &'static str,
    },
    BadKey(KeyError),
    BadTier(TierError),
}

impl std::fmt::Display for TrustEntryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("damaged trust entry: ")?;
        match self {
            TrustEntryError::NotUtf8 => f.write_str("not UTF-8"),
            TrustEntryError::NotObject => f.write_str("not a JSON object"),
            TrustEntryError::Missing { field } => write!(f, "no {field}"),
            TrustEntryError::BadKey(error) => error.fmt(f),
            TrustEntryError::BadTier(error) => error.fmt(f),
        }
    }
}

impl std::error::Error for TrustEntryError {}

impl TrustEntry {
    /// The storage key: the instance id the key stands for, in hex.
    pub fn key(&self) -> String {
        self.public_key.instance_id().to_hex()
    }

    /// The tier this entry grants, if any.
    pub(crate) fn granted_tier(&self) -> Option<Tier> {
        (!self.pending).then_some(self.tier)
    }

    /// Whether `reference` names this entry: its fingerprint (with or without the
    /// `SHA256:` prefix and dashes), its instance id hex (or a prefix of at least 8
    /// digits), or its base64 public key.
    pub fn matches(&self, reference: &str) -> bool {
        let reference = reference.trim();
        if reference == self.public_key.to_base64() {
            return true;
        }
        let digits: String = reference
            .trim_start_matches("SHA256:")
            .chars()
            .filter(|c| *c != '-')
            .collect::<String>()
            .to_ascii_lowercase();
        digits.len() >= 8
            && digits.chars().all(|c| c.is_ascii_hexdigit())
            && self.key().starts_with(&digits)
    }

    pub fn to_json(&self) -> Value {
        let mut object = Object::new();
        let text = |value: &str| Value::String(value.to_owned());
        object.insert("publicKey".into(), text(&self.public_key.to_base64()));
        object.insert("instanceId".into(), text(&self.key()));
        object.insert("fingerprint".into(), text(&self.public_key.fingerprint()));
        object.insert(
            "name".into(),
            self.name.as_deref().map_or(Value::Null, text),
        );
        object.insert("tier".into(), text(self.tier.name()));
        object.insert("pending".into(), Value::Bool(self.pending));
        object.insert("addedAt".into(), Value::Number(Number::U64(self.added_at)));
        object.insert(
            "lastSeen".into(),
            self.last_seen
                .map_or(Value::Null, |seen| Value::Number(Number::U64(seen))),
        );
        object.insert("source".into(), text(&self.source));
        Value::Object(object)
    }

    pub fn encode(&self) -> Vec<u8> {
        json::to_string(&self.to_json()).into_bytes()
    }

    pub fn decode(bytes: &[u8]) -> Result<TrustEntry, TrustEntryError> {
        let text = std::str::from_utf8(bytes).map_err(|_| TrustEntryError::NotUtf8)?;
        let Ok(Value::Object(object)) = crate::model::parse_json(text) else {
            return Err(TrustEntryError::NotObject);
        };
        let string = |name: &str| match object.get(name) {
            Some(Value::String(text)) => Some(text.clone()),
            _ => None,
        };
        let number = |name: &str| match object.get(name) {
            Some(Value::Number(Number::U64(n))) => Some(*n),
            _ => None,
        };
        let missing = |field| TrustEntryError::Missing { field };
        let public_key = PublicKey::from_base64(&string("publicKey").ok_or(missing("publicKey"))?)
            .map_err(TrustEntryError::BadKey)?;
        let tier = string("tier")
            .ok_or(missing("tier"))?
            .parse::<Tier>()
            .map_err(TrustEntryError::BadTier)?;
        Ok(TrustEntry {
            public_key,
            name: string("name"),
            tier,
            pending: matches!(object.get("pending"), Some(Value::Bool(true))),
            added_at: number("addedAt").unwrap_or(0),
            last_seen: number("lastSeen"),
            source: string("source").unwrap_or_else(|| "cli".into()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trust::KeyPair;

    #[test]
    fn entries_round_trip_and_match_their_references() {
        let key = KeyPair::from_seed([9; 32]).unwrap().public_key();
        let entry = TrustEntry {
            public_key: key,
            name: Some("hub".into()),
            tier: Tier::Sandbox,
            pending: true,
            added_at: 5,
            last_seen: Some(6),
            source: "request".into(),
        };
        assert_eq!(TrustEntry::decode(&entry.encode()), Ok(entry.clone()));
        assert_eq!(entry.granted_tier(), None);
        assert!(entry.matches(&key.fingerprint()));
        assert!(entry.matches(&key.to_base64()));
        assert!(entry.matches(&entry.key()[..8]));
        assert!(entry.matches(&entry.key().to_uppercase()));
        assert!(!entry.matches("SHA256:0000-0000"));
        assert!(!entry.matches(&entry.key()[..7]));
        let check = |bytes: &[u8], expected: TrustEntryError| {
            assert_eq!(TrustEntry::decode(bytes), Err(expected));
        };
        check(b"\xff", TrustEntryError::NotUtf8);
        check(b"[1]", TrustEntryError::NotObject);
        check(
            b"{\"tier\":\"core\"}",
            TrustEntryError::Missing { field: "publicKey" },
        );
        let key = format!("\"publicKey\":\"{}\"", key.to_base64());
        check(
            format!("{{{key}}}").as_bytes(),
            TrustEntryError::Missing { field: "tier" },
        );
        check(
            format!("{{{key},\"tier\":\"root\"}}").as_bytes(),
            TrustEntryError::BadTier(TierError::Unknown {
                name: "root".into(),
            }),
        );
        check(
            b"{\"publicKey\":\"AAAA\",\"tier\":\"core\"}",
            TrustEntryError::BadKey(KeyError::WrongLength {
                what: "public key",
                actual: 3,
                expected: 32,
            }),
        );
        assert_eq!(
            TrustEntry::decode(b"{}").unwrap_err().to_string(),
            "damaged trust entry: no publicKey"
        );
    }
}
