//! Small keyed tables the layers above own as opaque bytes: per-peer sync state, the
//! trust store, the public keys of record authors and the records held back.

use redb::{ReadableDatabase, ReadableTable, TableDefinition};

use super::error::StoreError;
use super::lattice::Store;
use super::tables::{AUTHOR_KEYS, HELD, PEERS, TRUST};

/// Which state table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateTable {
    /// Peer URL -> sync state (checkpoints, stats), owned by `sync`.
    Peers,
    /// Instance id (hex) -> trust entry, owned by `trust`.
    Trust,
    /// Instance id (hex) -> the author's public key, learned from verified records.
    AuthorKeys,
    /// Record id -> a received version held back, owned by `sync::held`.
    Held,
}

impl StateTable {
    fn definition(self) -> TableDefinition<'static, &'static str, &'static [u8]> {
        match self {
            StateTable::Peers => PEERS,
            StateTable::Trust => TRUST,
            StateTable::AuthorKeys => AUTHOR_KEYS,
            StateTable::Held => HELD,
        }
    }
}

impl Store {
    /// The value stored under `key`.
    pub fn state(&self, table: StateTable, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let read = self.db.begin_read().map_err(self.fail())?;
        let table = read.open_table(table.definition()).map_err(self.fail())?;
        Ok(table
            .get(key)
            .map_err(self.fail())?
            .map(|value| value.value().to_vec()))
    }

    /// Every entry, in key order.
    pub(crate) fn states(&self, table: StateTable) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let read = self.db.begin_read().map_err(self.fail())?;
        let table = read.open_table(table.definition()).map_err(self.fail())?;
        let mut found = Vec::new();
        for entry in table.iter().map_err(self.fail())? {
            let (key, value) = entry.map_err(self.fail())?;
            found.push((key.value().to_owned(), value.value().to_vec()));
        }
        Ok(found)
    }

    /// Saves (`Some`) or forgets (`None`) the values of several keys in one transaction.
    pub(crate) fn set_states(
        &mut self,
        table: StateTable,
        entries: &[(&str, Option<&[u8]>)],
    ) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(self.fail())?;
        {
            let mut handle = txn.open_table(table.definition()).map_err(self.fail())?;
            for (key, value) in entries {
                match value {
                    Some(value) => {
                        handle.insert(*key, *value).map_err(self.fail())?;
                    }
                    None => {
                        handle.remove(*key).map_err(self.fail())?;
                    }
                }
            }
        }
        self.commit(txn, super::Commit::Durable)?;
        Ok(())
    }

    /// Saves or forgets one key.
    pub(crate) fn set_state(
        &mut self,
        table: StateTable,
        key: &str,
        value: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        self.set_states(table, &[(key, value)])
    }
}
