//! The answers that carry records to a pulling node, as both ends see them: the
//! serving node writes each with `into_object` and the pulling node reads it with
//! `read`, so a field renamed on one side is renamed on the other.
//!
//! The changes page of `GET /federation/v2/changes` ([`ChangesPage`]):
//!
//! ```text
//! {"instanceId": "<hex>", "epoch": "<hex>", "records": [<record>, ...],
//!  "last_seq": N, "more": B}
//! ```
//!
//! The answer to `POST /federation/v2/fetch` ([`FetchAnswer`]):
//!
//! ```text
//! {"records": [<record>, ...], "more": B, "missing": N, "ranked": [index, ...]}
//! ```
//!
//! `records` are the wire records of `record.rs`, left as values for the caller to
//! check one by one; a page in the compact form (`page.rs`) expands to the page's
//! object before it is read. `more` may be absent (false): the first servers of the
//! feed left it out on the last page; `missing` and `ranked` may be absent too.

use miniserde::json::{Array, Number, Object, Value};

use super::fields::{Fields, WireError};

/// A changes page: whose feed it is, its records, and where the next page starts.
/// `R` is the records: an owned [`Array`] when written, a borrowed slice when read.
#[derive(Debug, Clone)]
pub struct ChangesPage<R> {
    /// The serving node's instance id, hex.
    pub instance_id: String,
    /// The serving store's epoch, hex: a new epoch means a new feed.
    pub epoch: String,
    pub records: R,
    /// The sequence the next page starts after.
    pub last_seq: u64,
    /// Whether more changes follow now.
    pub more: bool,
}

impl ChangesPage<Array> {
    pub fn into_object(self) -> Object {
        let mut object = Object::new();
        object.insert("instanceId".into(), Value::String(self.instance_id));
        object.insert("epoch".into(), Value::String(self.epoch));
        object.insert("records".into(), Value::Array(self.records));
        object.insert("last_seq".into(), Value::Number(Number::U64(self.last_seq)));
        object.insert("more".into(), Value::Bool(self.more));
        object
    }

    /// Reads a page as [`ChangesPage::read`] does and takes its records out of it, for
    /// a reader that hands them on (the first copy checks them on another thread).
    pub fn take(mut page: Object) -> Result<ChangesPage<Array>, WireError> {
        let ChangesPage {
            instance_id,
            epoch,
            last_seq,
            more,
            ..
        } = ChangesPage::read(&page)?;
        let Some(Value::Array(records)) = page.remove("records") else {
            unreachable!("`ChangesPage::read` refuses a page whose records are no array");
        };
        Ok(ChangesPage {
            instance_id,
            epoch,
            records,
            last_seq,
            more,
        })
    }
}

impl<'p> ChangesPage<&'p [Value]> {
    /// Reads a page, its records left as wire values for the caller to check one by
    /// one. A missing or mistyped field is refused, naming it.
    pub fn read(page: &'p Object) -> Result<ChangesPage<&'p [Value]>, WireError> {
        let fields = Fields::new(page, "changes page");
        Ok(ChangesPage {
            instance_id: fields.str("instanceId")?.to_owned(),
            epoch: fields.str("epoch")?.to_owned(),
            records: fields.array("records")?,
            last_seq: fields.u64("last_seq")?,
            more: fields.opt_bool("more")?.unwrap_or(false),
        })
    }
}

/// The answer to a fetch: the records behind the asked-for digests, highest priority
/// first, as many as the limits let through.
#[derive(Debug, Clone)]
pub struct FetchAnswer<R> {
    pub records: R,
    /// Whether a limit cut the list: the rest is asked for again.
    pub more: bool,
    /// How many digests name versions the serving node no longer holds.
    pub missing: u64,
    /// With `rank=1`: the indices of all the asked-for digests, highest priority first.
    pub ranked: Vec<u64>,
}

impl FetchAnswer<Array> {
    pub fn into_object(self) -> Object {
        let mut object = Object::new();
        object.insert("records".into(), Value::Array(self.records));
        object.insert("more".into(), Value::Bool(self.more));
        object.insert("missing".into(), Value::Number(Number::U64(self.missing)));
        let ranked = self
            .ranked
            .into_iter()
            .map(|index| Value::Number(Number::U64(index)))
            .collect();
        object.insert("ranked".into(), Value::Array(ranked));
        object
    }
}

impl<'a> FetchAnswer<&'a [Value]> {
    /// Reads an answer. A missing or mistyped field is refused, naming it.
    pub fn read(answer: &'a Object) -> Result<FetchAnswer<&'a [Value]>, WireError> {
        let fields = Fields::new(answer, "fetch answer");
        let ranked = fields
            .opt_array("ranked")?
            .unwrap_or_default()
            .iter()
            .map(|index| match index {
                Value::Number(Number::U64(index)) => Ok(*index),
                _ => Err(WireError::wrong_type(
                    "fetch answer",
                    "ranked",
                    "an array of whole numbers",
                )),
            })
            .collect::<Result<_, _>>()?;
        Ok(FetchAnswer {
            records: fields.array("records")?,
            more: fields.opt_bool("more")?.unwrap_or(false),
            missing: fields.opt_u64("missing")?.unwrap_or(0),
            ranked,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(records: Array) -> ChangesPage<Array> {
        ChangesPage {
            instance_id: "aa".repeat(32),
            epoch: "e1".into(),
            records,
            last_seq: 12,
            more: true,
        }
    }

    #[test]
    fn a_written_page_reads_back_as_it_was_written() {
        let mut records = Array::new();
        records.push(Value::String("a record".into()));
        let written = page(records).into_object();
        let text = miniserde::json::to_string(&written);
        let parsed: Object = miniserde::json::from_str(&text).unwrap();
        let read = ChangesPage::read(&parsed).unwrap();
        assert_eq!(read.instance_id, "aa".repeat(32));
        assert_eq!(read.epoch, "e1");
        assert!(
            matches!(read.records, [Value::String(record)] if record == "a record"),
            "{:?}",
            read.records
        );
        assert_eq!((read.last_seq, read.more), (12, true));
        let taken = ChangesPage::take(parsed).unwrap();
        assert_eq!(
            (taken.instance_id, taken.epoch, taken.last_seq, taken.more),
            ("aa".repeat(32), "e1".to_owned(), 12, true)
        );
        assert!(
            matches!(taken.records.as_slice(), [Value::String(record)] if record == "a record")
        );
    }

    #[test]
    fn a_fetch_answer_reads_back_and_a_broken_ranking_is_named() {
        let mut records = Array::new();
        records.push(Value::Bool(true));
        let answer = FetchAnswer {
            records,
            more: true,
            missing: 2,
            ranked: vec![3, 0, 1],
        };
        let text = miniserde::json::to_string(&answer.into_object());
        let parsed: Object = miniserde::json::from_str(&text).unwrap();
        let read = FetchAnswer::read(&parsed).unwrap();
        assert_eq!(read.records.len(), 1);
        assert_eq!(
            (read.more, read.missing, read.ranked),
            (true, 2, vec![3, 0, 1])
        );

        let bare: Object = miniserde::json::from_str(r#"{"records":[]}"#).unwrap();
        let read = FetchAnswer::read(&bare).unwrap();
        assert_eq!((read.more, read.missing, read.ranked.len()), (false, 0, 0));
        for (text, field) in [
            (r#"{"records":[],"ranked":[1,"2"]}"#, "ranked"),
            (r#"{"records":[],"ranked":[-1]}"#, "ranked"),
            (r#"{"records":{}}"#, "records"),
            (r#"{"more":false}"#, "records"),
            (r#"{"records":[],"missing":"some"}"#, "missing"),
        ] {
            let object: Object = miniserde::json::from_str(text).unwrap();
            let error = FetchAnswer::read(&object).unwrap_err().to_string();
            assert!(error.contains(field), "{text}: {error}");
        }
    }

    #[test]
    fn a_page_without_more_is_the_last_and_a_broken_field_is_named() {
        let mut object = page(Array::new()).into_object();
        object.remove("more");
        assert!(!ChangesPage::read(&object).unwrap().more);
        for (field, value) in [
            ("instanceId", Value::Null),
            ("epoch", Value::Bool(true)),
            ("records", Value::String("[]".into())),
            ("last_seq", Value::String("twelve".into())),
            ("more", Value::String("yes".into())),
        ] {
            let mut broken = page(Array::new()).into_object();
            broken.insert(field.into(), value);
            let error = ChangesPage::read(&broken).unwrap_err().to_string();
            assert!(error.contains(field), "{field}: {error}");
            let taken = ChangesPage::take(broken.clone()).unwrap_err().to_string();
            assert_eq!(taken, error, "both readers refuse alike");
            broken.remove(field);
            if field != "more" {
                let error = ChangesPage::read(&broken).unwrap_err().to_string();
                assert!(error.contains(field), "{field} missing: {error}");
            }
        }
    }
}
