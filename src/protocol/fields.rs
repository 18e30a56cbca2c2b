//! Reading fields of a JSON object with errors that name the field and what was wrong.

use std::fmt;

use miniserde::json::{self, Number, Object, Value};

use crate::model::parse_json;

/// A wire message that is not what the protocol says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError(pub String);

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for WireError {}

/// Parses `bytes` as a JSON object; `what` names the message in errors.
pub fn parse_object(bytes: &[u8], what: &str) -> Result<Object, WireError> {
    let text = std::str::from_utf8(bytes).map_err(|_| WireError(format!("{what} is not UTF-8")))?;
    match parse_json(text) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(_) => Err(WireError(format!("{what} is not a JSON object"))),
        Err(error) => Err(WireError(format!("{what} {error}"))),
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
            _ => Err(WireError(format!("{context} is not a JSON object"))),
        }
    }

    fn error(&self, name: &str, problem: &str) -> WireError {
        WireError(format!("{}: field `{name}` {problem}", self.context))
    }

    /// The field, treating `null` as absent.
    pub fn get(&self, name: &str) -> Option<&'a Value> {
        self.object
            .get(name)
            .filter(|value| !matches!(value, Value::Null))
    }

    pub fn str(&self, name: &str) -> Result<&'a str, WireError> {
        self.opt_str(name)?
            .ok_or_else(|| self.error(name, "is missing"))
    }

    pub fn opt_str(&self, name: &str) -> Result<Option<&'a str>, WireError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(text)) => Ok(Some(text)),
            Some(_) => Err(self.error(name, "must be a string")),
        }
    }

    pub fn u64(&self, name: &str) -> Result<u64, WireError> {
        self.opt_u64(name)?
            .ok_or_else(|| self.error(name, "is missing"))
    }

    pub fn opt_u64(&self, name: &str) -> Result<Option<u64>, WireError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Number(Number::U64(n))) => Ok(Some(*n)),
            Some(Value::Number(Number::F64(n))) if *n >= 0.0 && n.fract() == 0.0 && *n < 1.8e19 => {
                Ok(Some(*n as u64))
            }
            Some(Value::String(text)) => text
                .parse()
                .map(Some)
                .map_err(|_| self.error(name, "must be a whole number")),
            Some(_) => Err(self.error(name, "must be a whole number")),
        }
    }

    pub fn opt_bool(&self, name: &str) -> Result<Option<bool>, WireError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Bool(flag)) => Ok(Some(*flag)),
            Some(_) => Err(self.error(name, "must be true or false")),
        }
    }

    pub fn array(&self, name: &str) -> Result<&'a [Value], WireError> {
        self.opt_array(name)?
            .ok_or_else(|| self.error(name, "is missing"))
    }

    pub fn opt_array(&self, name: &str) -> Result<Option<&'a [Value]>, WireError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Array(items)) => Ok(Some(items)),
            Some(_) => Err(self.error(name, "must be an array")),
        }
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
        assert_eq!(
            fields.str("missing").unwrap_err().0,
            "record 3: field `missing` is missing"
        );
        assert_eq!(
            fields.str("bad").unwrap_err().0,
            "record 3: field `bad` must be a string"
        );
        assert!(
            parse_object(b"[1]", "sync request")
                .unwrap_err()
                .0
                .contains("sync request")
        );
        assert!(
            parse_object(b"{", "sync request")
                .unwrap_err()
                .0
                .contains("not valid JSON")
        );
    }
}
