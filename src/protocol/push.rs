//! A push's messages as both ends see them: the pushing node offers the ids and
//! versions it would send (`POST /federation/v2/offer`), the receiving node answers the
//! ids it wants, only those are pushed (`POST /federation/v2/push`), and the push is
//! answered with what became of them.
//!
//! ```text
//! offer:        {"instanceId": "<hex>", "offers": [{"id": "x", "version": "<hlc>@<origin>"}, ...]}
//! its answer:   {"want": ["x", ...]}
//! push answer:  {"applied": N, "unchanged": N, "stale": N, "conflicts": N, "held": N,
//!                "rejected": [{"index": I, "id": "x", "error": "..."}, ...],
//!                "seq_before": S, "seq_after": T}
//! ```
//!
//! A version stays text here; the receiving node reads it with `Version::from_wire`,
//! which says what is wrong with it. The push body itself is read element by element
//! by `split.rs`, so a large push is never one tree.

use miniserde::json::{Array, Number, Object, Value};

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

/// The answer to a push: what became of its records.
#[derive(Debug, Clone, Default)]
pub struct PushAnswer {
    pub applied: u64,
    pub unchanged: u64,
    /// Older than what the receiving node holds.
    pub stale: u64,
    pub conflicts: u64,
    /// Records held until their author is trusted.
    pub held: u64,
    /// The records refused, each `{index, id, error}`.
    pub rejected: Array,
    /// The sequences the push took in the receiving node's change log, when nothing
    /// else was written between its chunks: a pusher whose pull checkpoint is the first
    /// may move it to the second, since all between is its own records.
    pub sequences: Option<(u64, u64)>,
}

impl PushAnswer {
    pub fn into_object(self) -> Object {
        let number = |n| Value::Number(Number::U64(n));
        let mut object = Object::new();
        object.insert("applied".into(), number(self.applied));
        object.insert("unchanged".into(), number(self.unchanged));
        object.insert("stale".into(), number(self.stale));
        object.insert("conflicts".into(), number(self.conflicts));
        object.insert("rejected".into(), Value::Array(self.rejected));
        object.insert("held".into(), number(self.held));
        if let Some((before, after)) = self.sequences {
            object.insert("seq_before".into(), number(before));
            object.insert("seq_after".into(), number(after));
        }
        object
    }

    /// Reads an answer; absent counts are 0, and the sequences count only as a pair.
    pub fn read(answer: &Object) -> Result<PushAnswer, WireError> {
        let fields = Fields::new(answer, "push answer");
        let count = |name| Ok::<_, WireError>(fields.opt_u64(name)?.unwrap_or(0));
        let sequences = match (fields.opt_u64("seq_before")?, fields.opt_u64("seq_after")?) {
            (Some(before), Some(after)) => Some((before, after)),
            _ => None,
        };
        Ok(PushAnswer {
            applied: count("applied")?,
            unchanged: count("unchanged")?,
            stale: count("stale")?,
            conflicts: count("conflicts")?,
            held: count("held")?,
            rejected: fields.array_or_empty("rejected")?,
            sequences,
        })
    }

    /// The reason given for each refused record.
    pub(crate) fn refusals(&self) -> impl Iterator<Item = &str> {
        self.rejected.iter().map(|refused| match refused {
            Value::Object(entry) => match entry.get("error") {
                Some(Value::String(reason)) => reason.as_str(),
                _ => "no reason given",
            },
            _ => "no reason given",
        })
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
    fn a_push_answer_reads_back_as_written() {
        let mut rejected = Array::new();
        let mut entry = Object::new();
        entry.insert("error".into(), Value::String("bad hash".into()));
        rejected.push(Value::Object(entry));
        rejected.push(Value::Null);
        let answer = PushAnswer {
            applied: 3,
            unchanged: 1,
            stale: 2,
            conflicts: 4,
            held: 5,
            rejected,
            sequences: Some((10, 13)),
        };
        let read = PushAnswer::read(&through_json(answer.into_object())).unwrap();
        assert_eq!(
            (
                read.applied,
                read.unchanged,
                read.stale,
                read.conflicts,
                read.held
            ),
            (3, 1, 2, 4, 5)
        );
        assert_eq!(read.sequences, Some((10, 13)));
        let refusals: Vec<&str> = read.refusals().collect();
        assert_eq!(refusals, ["bad hash", "no reason given"]);

        let half: Object = miniserde::json::from_str(r#"{"seq_before":10}"#).unwrap();
        assert_eq!(PushAnswer::read(&half).unwrap().sequences, None);
        for (text, named) in [
            (r#"{"unchanged":"one"}"#, "unchanged"),
            (r#"{"rejected":{}}"#, "rejected"),
            (r#"{"seq_before":1,"seq_after":-2}"#, "seq_after"),
        ] {
            let object: Object = miniserde::json::from_str(text).unwrap();
            let error = PushAnswer::read(&object).unwrap_err().to_string();
            assert!(error.contains(named), "{text}: {error}");
        }
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
