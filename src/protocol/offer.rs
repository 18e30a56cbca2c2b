//! The offer of a push (`POST /federation/v2/offer`) and its answer, as both ends see
//! them: the pushing node offers the ids and versions it would send, the receiving node
//! answers the ids it wants, and only those are pushed.
//!
//! ```text
//! {"instanceId": "<hex>", "offers": [{"id": "x", "version": "<hlc>@<origin hex>"}, ...]}
//! {"want": ["x", ...]}
//! ```
//!
//! A version stays text here; the receiving node reads it with `Version::from_wire`,
//! which says what is wrong with it.

use miniserde::json::{Array, Object, Value};

use super::fields::{Fields, WireError};

/// What a pushing node offers: the ids and versions of the records it would send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    /// The offering node's instance id, hex.
    pub instance_id: String,
    pub offers: Vec<OfferedRecord>,
}

/// One offered record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferedRecord {
    pub id: String,
    /// The record's version in its wire form.
    pub version: String,
}

impl Offer {
    pub fn into_object(self) -> Object {
        let offers: Array = self
            .offers
            .into_iter()
            .map(|offer| {
                let mut object = Object::new();
                object.insert("id".into(), Value::String(offer.id));
                object.insert("version".into(), Value::String(offer.version));
                Value::Object(object)
            })
            .collect();
        let mut object = Object::new();
        object.insert("instanceId".into(), Value::String(self.instance_id));
        object.insert("offers".into(), Value::Array(offers));
        object
    }

    /// Reads an offer. `instanceId` may be absent (the caller is known by its signed
    /// request); a missing or mistyped field of an offered record is refused, naming
    /// the record and the field.
    pub fn read(offer: &Object) -> Result<Offer, WireError> {
        let fields = Fields::new(offer, "offer");
        let offers = fields
            .array("offers")?
            .iter()
            .enumerate()
            .map(|(index, value)| {
                let context = format!("offer {}", index + 1);
                let offered = Fields::of(value, &context)?;
                Ok(OfferedRecord {
                    id: offered.str("id")?.to_owned(),
                    version: offered.str("version")?.to_owned(),
                })
            })
            .collect::<Result<_, WireError>>()?;
        Ok(Offer {
            instance_id: fields.opt_str("instanceId")?.unwrap_or_default().to_owned(),
            offers,
        })
    }
}

/// The answer to an offer: the offered ids the receiving node wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferAnswer {
    pub want: Vec<String>,
}

impl OfferAnswer {
    pub fn into_object(self) -> Object {
        let mut object = Object::new();
        let want = self.want.into_iter().map(Value::String).collect();
        object.insert("want".into(), Value::Array(want));
        object
    }

    /// Reads an answer; an entry of `want` that is not a string is refused.
    pub fn read(answer: &Object) -> Result<OfferAnswer, WireError> {
        let want = Fields::new(answer, "offer answer")
            .array("want")?
            .iter()
            .map(|id| match id {
                Value::String(id) => Ok(id.clone()),
                _ => Err(WireError::wrong_type(
                    "offer answer",
                    "want",
                    "an array of strings",
                )),
            })
            .collect::<Result<_, _>>()?;
        Ok(OfferAnswer { want })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn through_json(object: Object) -> Object {
        miniserde::json::from_str(&miniserde::json::to_string(&object)).unwrap()
    }

    #[test]
    fn an_offer_and_its_answer_read_back_as_written() {
        let offer = Offer {
            instance_id: "aa".repeat(32),
            offers: vec![OfferedRecord {
                id: "x".into(),
                version: "1.0@aa".into(),
            }],
        };
        let read = Offer::read(&through_json(offer.clone().into_object())).unwrap();
        assert_eq!(read, offer);
        let answer = OfferAnswer {
            want: vec!["x".into(), "y".into()],
        };
        let read = OfferAnswer::read(&through_json(answer.clone().into_object())).unwrap();
        assert_eq!(read, answer);
    }

    #[test]
    fn broken_offers_and_answers_are_refused_naming_the_field() {
        for (text, named) in [
            (r#"{"instanceId":"a"}"#, "offers"),
            (r#"{"offers":{}}"#, "offers"),
            (r#"{"offers":[{"id":"x"}]}"#, "offer 1"),
            (
                r#"{"offers":[{"id":"x","version":"v"},{"version":"v"}]}"#,
                "offer 2",
            ),
            (r#"{"offers":[7]}"#, "offer 1"),
            (r#"{"offers":[],"instanceId":5}"#, "instanceId"),
        ] {
            let object: Object = miniserde::json::from_str(text).unwrap();
            let error = Offer::read(&object).unwrap_err().to_string();
            assert!(error.contains(named), "{text}: {error}");
        }
        for text in [r#"{}"#, r#"{"want":"x"}"#, r#"{"want":["x",1]}"#] {
            let object: Object = miniserde::json::from_str(text).unwrap();
            let error = OfferAnswer::read(&object).unwrap_err().to_string();
            assert!(error.contains("want"), "{text}: {error}");
        }
    }
}
