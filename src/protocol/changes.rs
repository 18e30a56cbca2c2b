//! The changes page of `GET /federation/v2/changes`, the one message of the feed, as
//! both ends see it: the serving node writes it with [`ChangesPage::into_object`] and
//! the pulling node reads it with [`ChangesPage::read`], so a field renamed on one side
//! is renamed on the other.
//!
//! ```text
//! {"instanceId": "<hex>", "epoch": "<hex>", "records": [<record>, ...],
//!  "last_seq": N, "more": B}
//! ```
//!
//! `records` are the wire records of `record.rs`; a page in the compact form
//! (`page.rs`) expands to this object before it is read. `more` may be absent (false):
//! the first servers of the feed left it out on the last page.

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
            broken.remove(field);
            if field != "more" {
                let error = ChangesPage::read(&broken).unwrap_err().to_string();
                assert!(error.contains(field), "{field} missing: {error}");
            }
        }
    }
}
