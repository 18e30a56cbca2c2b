//! The record tables of one write transaction, opened once for all the records it
//! writes rather than once per record: opening a redb table takes a lock and reads the
//! table's root, about 5% of an import's or a first copy's CPU time (issue 13).

use redb::{MultimapTable, Table, WriteTransaction};

use super::error::StoreError;
use super::lattice::{INDEXES, Store};
use super::tables::{CHANGES, NODES, TOMBSTONES};

/// The tables a record write touches: the change log, nodes, tombstones and the three
/// indexes (in the order of `INDEXES`).
pub(super) struct RecordTables<'txn> {
    pub changes: Table<'txn, u64, &'static str>,
    pub nodes: Table<'txn, &'static str, &'static [u8]>,
    pub tombstones: Table<'txn, &'static str, &'static [u8]>,
    pub indexes: [MultimapTable<'txn, &'static str, &'static str>; 3],
}

/// [`RecordTables`] opened on first use and closed where something else of the
/// transaction needs them (moving a damaged record aside opens them itself).
pub(super) struct OpenTables<'txn> {
    txn: &'txn WriteTransaction,
    open: Option<RecordTables<'txn>>,
}

impl<'txn> OpenTables<'txn> {
    pub fn new(txn: &'txn WriteTransaction) -> OpenTables<'txn> {
        OpenTables { txn, open: None }
    }

    /// The tables, opened now if they are not.
    pub fn get(&mut self, store: &Store) -> Result<&mut RecordTables<'txn>, StoreError> {
        if self.open.is_none() {
            let txn = self.txn;
            let [by_type, by_language, by_category] = INDEXES;
            self.open = Some(RecordTables {
                changes: txn.open_table(CHANGES).map_err(store.fail())?,
                nodes: txn.open_table(NODES).map_err(store.fail())?,
                tombstones: txn.open_table(TOMBSTONES).map_err(store.fail())?,
                indexes: [
                    txn.open_multimap_table(by_type).map_err(store.fail())?,
                    txn.open_multimap_table(by_language).map_err(store.fail())?,
                    txn.open_multimap_table(by_category).map_err(store.fail())?,
                ],
            });
        }
        Ok(self.open.as_mut().expect("opened above"))
    }

    /// Closes the tables, so the transaction can open them elsewhere.
    pub fn close(&mut self) {
        self.open = None;
    }
}
