//! `verify`'s typed answer, [`VerifyReport`], and its one JSON form: what
//! `verify --json` prints, what `GET /api/lattice/verify` answers, what the CLI reads
//! back from a running server and what a `verify` child process hands its parent.
//! Text for people is the CLI's (`commands::verify`).

use miniserde::json::{Object, Value};

use super::output::{number, object, string};
use crate::protocol::{Fields, WireError};
use crate::store::{DamagedRecord, PageCheck, RecordCheck, RecordTable};

/// redb's check of every page, as reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PagesReport {
    Skipped,
    Clean,
    Repaired,
    Damaged(String),
}

impl PagesReport {
    pub(crate) fn of(check: Option<&PageCheck>) -> PagesReport {
        match check {
            None => PagesReport::Skipped,
            Some(PageCheck::Clean) => PagesReport::Clean,
            Some(PageCheck::Repaired) => PagesReport::Repaired,
            Some(PageCheck::Damaged(reason)) => PagesReport::Damaged(reason.clone()),
        }
    }

    pub(crate) fn is_damaged(&self) -> bool {
        matches!(self, PagesReport::Damaged(_))
    }

    fn to_json(&self) -> Value {
        let status = |name: &str| object([("status", string(name))]);
        match self {
            PagesReport::Skipped => status("skipped"),
            PagesReport::Clean => status("clean"),
            PagesReport::Repaired => status("repaired"),
            PagesReport::Damaged(reason) => object([
                ("status", string("damaged")),
                ("reason", string(reason.as_str())),
            ]),
        }
    }

    fn from_json(value: &Value, context: &str) -> Result<PagesReport, WireError> {
        let fields = Fields::of(value, context)?;
        match fields.str("status")? {
            "skipped" => Ok(PagesReport::Skipped),
            "clean" => Ok(PagesReport::Clean),
            "repaired" => Ok(PagesReport::Repaired),
            "damaged" => Ok(PagesReport::Damaged(fields.str("reason")?.to_owned())),
            other => Err(WireError::bad_value(
                context,
                "status",
                format!("{other:?} is not skipped, clean, repaired or damaged"),
            )),
        }
    }
}

/// The read of every record: what the store's check found (its counts and damaged
/// records), or why the records were not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordsReport {
    Read(RecordCheck),
    NotRead(String),
}

impl RecordsReport {
    pub(crate) fn damaged(&self) -> &[DamagedRecord] {
        match self {
            RecordsReport::Read(counts) => &counts.damaged,
            RecordsReport::NotRead(_) => &[],
        }
    }

    pub(crate) fn to_json(&self) -> Value {
        match self {
            RecordsReport::NotRead(reason) => object([
                ("status", string("not_read")),
                ("reason", string(reason.as_str())),
                ("damaged", Value::Array(Default::default())),
            ]),
            RecordsReport::Read(counts) => object([
                ("status", string("read")),
                ("nodes", number(counts.nodes)),
                ("tombstones", number(counts.tombstones)),
                ("conflicts", number(counts.conflicts)),
                ("changes", number(counts.changes)),
                ("signed", number(counts.signed)),
                ("unchecked_signatures", number(counts.unchecked_signatures)),
                ("moved_aside_before", number(counts.moved_aside)),
                (
                    "damaged",
                    Value::Array(
                        counts
                            .damaged
                            .iter()
                            .map(|damaged| {
                                object([
                                    ("table", string(damaged.table.name())),
                                    ("id", string(damaged.id.as_str())),
                                    ("reason", string(damaged.reason.as_str())),
                                ])
                            })
                            .collect(),
                    ),
                ),
            ]),
        }
    }

    pub(crate) fn from_json(value: &Value, context: &str) -> Result<RecordsReport, WireError> {
        let fields = Fields::of(value, context)?;
        match fields.str("status")? {
            "not_read" => Ok(RecordsReport::NotRead(fields.str("reason")?.to_owned())),
            "read" => {
                let damaged = fields
                    .array("damaged")?
                    .iter()
                    .enumerate()
                    .map(|(index, entry)| {
                        let context = format!("{context}: damaged[{index}]");
                        let fields = Fields::of(entry, &context)?;
                        let table = fields.str("table")?;
                        Ok(DamagedRecord {
                            table: RecordTable::from_name(table).ok_or_else(|| {
                                WireError::bad_value(
                                    &context,
                                    "table",
                                    format!("{table:?} is not a table of records"),
                                )
                            })?,
                            id: fields.str("id")?.to_owned(),
                            reason: fields.str("reason")?.to_owned(),
                        })
                    })
                    .collect::<Result<_, WireError>>()?;
                Ok(RecordsReport::Read(RecordCheck {
                    nodes: fields.u64("nodes")?,
                    tombstones: fields.u64("tombstones")?,
                    conflicts: fields.u64("conflicts")?,
                    changes: fields.u64("changes")?,
                    signed: fields.u64("signed")?,
                    unchecked_signatures: fields.u64("unchecked_signatures")?,
                    moved_aside: fields.u64("moved_aside_before")?,
                    damaged,
                }))
            }
            other => Err(WireError::bad_value(
                context,
                "status",
                format!("{other:?} is not read or not_read"),
            )),
        }
    }
}

/// What `verify` found: the page check (and again after damaged records were moved
/// aside, when they were), and the read of every record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// The store file's path.
    pub store: String,
    pub pages: PagesReport,
    /// The page check again, after damaged records were moved aside.
    pub pages_after: Option<PagesReport>,
    pub records: RecordsReport,
}

impl VerifyReport {
    /// Whether the pages check clean now (after moving aside, when that happened).
    pub(crate) fn pages_now_ok(&self) -> bool {
        !self
            .pages_after
            .as_ref()
            .unwrap_or(&self.pages)
            .is_damaged()
    }

    /// Whether the store passed every check.
    pub(crate) fn ok(&self) -> bool {
        self.pages_now_ok()
            && matches!(self.records, RecordsReport::Read(_))
            && self.records.damaged().is_empty()
    }

    /// Each problem found, and what to do; `None` when the store passed.
    pub(crate) fn problems(&self) -> Option<String> {
        let mut problems = Vec::new();
        if !self.pages_now_ok() {
            problems.push(
                "damaged pages that are not records (move the file away and sync it again from a peer)"
                    .to_owned(),
            );
        }
        if matches!(self.records, RecordsReport::NotRead(_)) {
            problems.push("records that could not be read".to_owned());
        }
        let damaged = self.records.damaged().len();
        if damaged > 0 {
            problems.push(format!(
                "{damaged} damaged record(s) (those whose bytes do not match their content hash were moved aside, to be fetched again from a peer at the next sync)"
            ));
        }
        (!problems.is_empty()).then(|| {
            format!(
                "store {} has {}; see README, \"A damaged store\"",
                self.store,
                problems.join(" and ")
            )
        })
    }

    pub fn to_json(&self) -> Value {
        let mut fields = Object::new();
        fields.insert("store".into(), string(self.store.as_str()));
        fields.insert("ok".into(), Value::Bool(self.ok()));
        fields.insert("pages".into(), self.pages.to_json());
        fields.insert("records".into(), self.records.to_json());
        if let Some(after) = &self.pages_after {
            fields.insert("pages_after_moving_aside".into(), after.to_json());
        }
        Value::Object(fields)
    }

    pub fn from_json(object: &Object, context: &str) -> Result<VerifyReport, WireError> {
        let fields = Fields::new(object, context);
        let part = |name: &str| {
            fields
                .get(name)
                .ok_or_else(|| WireError::missing(context, name))
        };
        let pages_after = match fields.get("pages_after_moving_aside") {
            None => None,
            Some(value) => Some(PagesReport::from_json(
                value,
                &format!("{context}: pages_after_moving_aside"),
            )?),
        };
        Ok(VerifyReport {
            store: fields.str("store")?.to_owned(),
            pages: PagesReport::from_json(part("pages")?, &format!("{context}: pages"))?,
            pages_after,
            records: RecordsReport::from_json(part("records")?, &format!("{context}: records"))?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the server writes, the CLI reads back unchanged, and the JSON is the shape
    /// `verify --json` has always printed.
    fn check(report: &VerifyReport, expected_json: &str) {
        let json = miniserde::json::to_string(&report.to_json());
        assert_eq!(json, expected_json);
        let object: Object = miniserde::json::from_str(&json).unwrap();
        assert_eq!(&VerifyReport::from_json(&object, "report").unwrap(), report);
    }

    #[test]
    fn verify_reports_keep_their_shape() {
        let read = RecordsReport::Read(RecordCheck {
            nodes: 2,
            signed: 2,
            damaged: vec![DamagedRecord {
                table: RecordTable::Nodes,
                id: "record-7".into(),
                reason: "hash".into(),
            }],
            moved_aside: 1,
            ..RecordCheck::default()
        });
        check(
            &VerifyReport {
                store: "/s/lattice.redb".into(),
                pages: PagesReport::Damaged("checksum".into()),
                pages_after: Some(PagesReport::Clean),
                records: read,
            },
            concat!(
                r#"{"ok":false,"pages":{"reason":"checksum","status":"damaged"},"pages_after_moving_aside":{"status":"clean"},"#,
                r#""records":{"changes":0,"conflicts":0,"damaged":[{"id":"record-7","reason":"hash","table":"nodes"}],"moved_aside_before":1,"nodes":2,"signed":2,"status":"read","tombstones":0,"unchecked_signatures":0},"store":"/s/lattice.redb"}"#
            ),
        );
        check(
            &VerifyReport {
                store: "s".into(),
                pages: PagesReport::Skipped,
                pages_after: None,
                records: RecordsReport::NotRead("stopped".into()),
            },
            r#"{"ok":false,"pages":{"status":"skipped"},"records":{"damaged":[],"reason":"stopped","status":"not_read"},"store":"s"}"#,
        );
    }

    #[test]
    fn a_report_with_an_unknown_status_is_refused_by_name() {
        let object: Object = miniserde::json::from_str(
            r#"{"store":"s","pages":{"status":"fine"},"records":{"status":"not_read","reason":"x"}}"#,
        )
        .unwrap();
        let error = VerifyReport::from_json(&object, "report").unwrap_err();
        assert_eq!(
            error,
            WireError::bad_value(
                "report: pages",
                "status",
                "\"fine\" is not skipped, clean, repaired or damaged"
            )
        );
        let object: Object = miniserde::json::from_str(concat!(
            r#"{"store":"s","pages":{"status":"clean"},"records":{"status":"read","nodes":1,"#,
            r#""tombstones":0,"conflicts":0,"changes":1,"signed":1,"unchecked_signatures":0,"#,
            r#""moved_aside_before":0,"damaged":[{"table":"index","id":"a","reason":"hash"}]}}"#
        ))
        .unwrap();
        assert_eq!(
            VerifyReport::from_json(&object, "report").unwrap_err(),
            WireError::bad_value(
                "report: records: damaged[0]",
                "table",
                "\"index\" is not a table of records"
            )
        );
    }

    #[test]
    fn a_clean_store_has_no_problems() {
        let report = VerifyReport {
            store: "s".into(),
            pages: PagesReport::Clean,
            pages_after: None,
            records: RecordsReport::Read(RecordCheck::default()),
        };
        assert!(report.ok());
        assert_eq!(report.problems(), None);
    }
}
