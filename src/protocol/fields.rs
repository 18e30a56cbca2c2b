//! Reading fields of a JSON object with errors that name the field and what was wrong.

use std::fmt;

use miniserde::json::{self, Array, Number, Object, Value};

use crate::model::parse_json;

/// A wire message that is not what the protocol says, by what is wrong with it. Every
/// variant names the message (`context` or `what`: `record 3`, `sync request`, a URL)
/// and, where one field is at fault, the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireError {
    /// The message's bytes are not UTF-8 text.
    NotUtf8 { what: String },
    /// The message is not JSON, or is nested deeper than it is read; `reason` is the
    /// JSON reader's, phrased to follow the message's name (`is not valid JSON`).
    NotJson { what: String, reason: String },
    /// The message, or a part of it that must be one, is not a JSON object.
    NotObject { what: String },
    /// A field the message needs is absent or null.
    MissingField { context: String, field: String },
    /// A field holds another JSON type than the protocol's; `expected` names that type
    /// as a phrase (`a string`, `a whole number`).
    WrongType {
        context: String,
        field: String,
        expected: &'static str,
    },
    /// A field has the right type but a value the protocol does not allow (a version
    /// that does not parse, a tier that is none of ours).
    BadValue {
        context: String,
        field: String,
        reason: String,
    },
    /// A field the message may hold once is there twice.
    DuplicateField { what: String, field: String },
    /// The message breaks a rule not about one field's value: exactly one of two
    /// fields, a compact page whose signatures do not add up.
    Malformed { what: String, reason: String },
}

impl WireError {
    pub fn missing(context: &str, field: &str) -> WireError {
        WireError::MissingField {
            context: context.to_owned(),
            field: field.to_owned(),
        }
    }

    pub(crate) fn wrong_type(context: &str, field: &str, expected: &'static str) -> WireError {
        WireError::WrongType {
            context: context.to_owned(),
            field: field.to_owned(),
            expected,
        }
    }

    pub(crate) fn bad_value(context: &str, field: &str, reason: impl fmt::Display) -> WireError {
        WireError::BadValue {
            context: context.to_owned(),
            field: field.to_owned(),
            reason: reason.to_string(),
        }
    }

    pub(crate) fn not_object(what: impl Into<String>) -> WireError {
        WireError::NotObject { what: what.into() }
    }

    pub fn malformed(what: impl Into<String>, reason: impl fmt::Display) -> WireError {
        WireError::Malformed {
            what: what.into(),
            reason: reason.to_string(),
        }
    }
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::NotUtf8 { what } => write!(f, "{what} is not UTF-8"),
            WireError::NotJson { what, reason } => write!(f, "{what} {reason}"),
            WireError::NotObject { what } => write!(f, "{what} is not a JSON object"),
            WireError::MissingField { context, field } => {
                write!(f, "{context}: field `{field}` is missing")
            }
            WireError::WrongType {
                context,
                field,
                expected,
            } => write!(f, "{context}: field `{field}` must be {expected}"),
            WireError::BadValue {
                context,
                field,
                reason,
            } => write!(f, "{context}: field `{field}`: {reason}"),
            WireError::DuplicateField { what, field } => write!(f, "{what} has `{field}` twice"),
            WireError::Malformed { what, reason } => write!(f, "{what}: {reason}"),
        }
    }
}

impl std::error::Error for WireError {}

/// Parses `bytes` as a JSON object; `what` names the message in errors.
pub fn parse_object(bytes: &[u8], what: &str) -> Result<Object, WireError> {
    let text = std::str::from_utf8(bytes).map_err(|_| WireError::NotUtf8 {
        what: what.to_owned(),
    })?;
    match parse_json(text) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(_) => Err(WireError::not_object(what)),
        Err(error) => Err(WireError::NotJson {
            what: what.to_owned(),
            reason: error.to_string(),
        }),
    }
}

/// Builds a JSON object text from pairs.
pub fn json_object<const N: usize>(pairs: [(&str, Value); N]) -> String {
    let object: Object = pairs
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value))
        .collect();
    json::to_string(&Value::Object(object))
}

/// Typed access to an object's fields.
#[derive(Debug, Clone, Copy)]
pub struct Fields<'a> {
    pub object: &'a Object,
    /// What the object is, for errors: `record 3`, `sync request`.
    pub context: &'a str,
}

impl<'a> Fields<'a> {
    pub fn new(object: &'a Object, context: &'a str) -> Fields<'a> {
        Fields { object, context }
    }

    pub fn of(value: &'a Value, context: &'a str) -> Result<Fields<'a>, WireError> {
        match value {
            Value::Object(object) => Ok(Fields { object, context }),
            _ => Err(WireError::not_object(context)),
        }
    }

    fn missing(&self, name: &str) -> WireError {
        WireError::missing(self.context, name)
    }

    fn wrong_type(&self, name: &str, expected: &'static str) -> WireError {
        WireError::wrong_type(self.context, name, expected)
    }

    /// The field, treating `null` as absent.
    pub fn get(&self, name: &str) -> Option<&'a Value> {
        self.object
            .get(name)
            .filter(|value| !matches!(value, Value::Null))
    }

    pub fn str(&self, name: &str) -> Result<&'a str, WireError> {
        self.opt_str(name)?.ok_or_else(|| self.missing(name))
    }

    pub(crate) fn opt_str(&self, name: &str) -> Result<Option<&'a str>, WireError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(text)) => Ok(Some(text)),
            Some(_) => Err(self.wrong_type(name, "a string")),
        }
    }

    pub fn u64(&self, name: &str) -> Result<u64, WireError> {
        self.opt_u64(name)?.ok_or_else(|| self.missing(name))
    }

    pub(crate) fn opt_u64(&self, name: &str) -> Result<Option<u64>, WireError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Number(Number::U64(n))) => Ok(Some(*n)),
            Some(Value::Number(Number::F64(n))) if *n >= 0.0 && n.fract() == 0.0 && *n < 1.8e19 => {
                Ok(Some(*n as u64))
            }
            Some(Value::String(text)) => text
                .parse()
                .map(Some)
                .map_err(|_| self.wrong_type(name, "a whole number")),
            Some(_) => Err(self.wrong_type(name, "a whole number")),
        }
    }

    pub(crate) fn bool(&self, name: &str) -> Result<bool, WireError> {
        self.opt_bool(name)?.ok_or_else(|| self.missing(name))
    }

    pub(crate) fn opt_bool(&self, name: &str) -> Result<Option<bool>, WireError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Bool(flag)) => Ok(Some(*flag)),
            Some(_) => Err(self.wrong_type(name, "true or false")),
        }
    }

    pub fn array(&self, name: &str) -> Result<&'a [Value], WireError> {
        self.opt_array(name)?.ok_or_else(|| self.missing(name))
    }

    pub(crate) fn opt_array(&self, name: &str) -> Result<Option<&'a [Value]>, WireError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Array(items)) => Ok(Some(items)),
            Some(_) => Err(self.wrong_type(name, "an array")),
        }
    }

    /// A copy of an array that may be absent (then empty), for an answer that keeps it.
    pub(crate) fn array_or_empty(&self, name: &str) -> Result<Array, WireError> {
        Ok(self
            .opt_array(name)?
            .unwrap_or_default()
            .iter()
            .cloned()
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_context_and_field() {
        let object = parse_object(
            br#"{"a":"x","n":"12","b":true,"z":null,"bad":[1]}"#,
            "test message",
        )
        .unwrap();
        let fields = Fields::new(&object, "record 3");
        assert_eq!(fields.str("a"), Ok("x"));
        assert_eq!(fields.u64("n"), Ok(12));
        assert_eq!(fields.opt_bool("b"), Ok(Some(true)));
        assert_eq!(fields.opt_str("z"), Ok(None));
        let missing = fields.str("missing").unwrap_err();
        assert_eq!(missing, WireError::missing("record 3", "missing"));
        assert_eq!(missing.to_string(), "record 3: field `missing` is missing");
        let wrong = fields.str("bad").unwrap_err();
        assert!(
            matches!(&wrong, WireError::WrongType { field, expected: "a string", .. } if field == "bad"),
            "{wrong:?}"
        );
        assert_eq!(wrong.to_string(), "record 3: field `bad` must be a string");
        assert!(matches!(
            fields.u64("a"),
            Err(WireError::WrongType {
                expected: "a whole number",
                ..
            })
        ));
    }

    #[test]
    fn a_message_that_is_no_object_says_which_way() {
        let check = |bytes: &[u8], expected: &str| {
            let error = parse_object(bytes, "sync request").unwrap_err();
            assert_eq!(error.to_string(), expected, "{error:?}");
            error
        };
        let error = check(b"[1]", "sync request is not a JSON object");
        assert!(matches!(error, WireError::NotObject { .. }));
        let error = check(b"\xff{}", "sync request is not UTF-8");
        assert!(matches!(error, WireError::NotUtf8 { .. }));
        let error = parse_object(b"{", "sync request").unwrap_err();
        assert!(matches!(error, WireError::NotJson { .. }), "{error:?}");
        assert!(
            error
                .to_string()
                .starts_with("sync request is not valid JSON"),
            "{error}"
        );
    }
}
