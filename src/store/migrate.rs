//! The schema 1 to 2 migration: this instance's records get format 2 signatures
//! (`trust::record`) and the held-records table is made, in one transaction with the
//! schema change, so a crash leaves the
//! old store or the migrated one and the migration runs again on the next open. Also a
//! test-only way back, so tests can make the store an older build left.

use redb::ReadableTable;

use super::error::StoreError;
use super::lattice::{SCHEMA_FORMAT_1_SIGNATURES, SCHEMA_VERSION, Store};
use super::record::{self, RecordMeta};
use super::tables::{HELD, META, NODES, TOMBSTONES, meta_keys};
use crate::model::{ClaimedContent, RecordSignature, SignatureFormat, Version};

/// The body of a stored record as a signer sees it.
enum Signed<'a> {
    Live { canonical: &'a [u8] },
    Deleted { deleted_at: u64 },
}

impl Store {
    /// The schema 1 to 2 migration: signatures of this instance's records, live and
    /// deleted, are made again in format 2. Nothing else changes (no sequence moves), so
    /// peers' checkpoints stay valid; records by other authors keep their format 1
    /// signatures, which receivers judge as such.
    pub(super) fn resign_own_records(&mut self) -> Result<(), StoreError> {
        let resigned = self.rewrite_own_signatures(SCHEMA_VERSION, |store, id, meta, signed| {
            let content = match signed {
                Signed::Live { .. } => ClaimedContent::Live(meta.hash),
                Signed::Deleted { deleted_at } => ClaimedContent::Deleted { deleted_at },
            };
            store.sign(id, content, meta.version, meta.base)
        })?;
        eprintln!(
            "note: {}: migrated to schema {SCHEMA_VERSION}; {resigned} records of this instance re-signed in signature format 2",
            self.path.display()
        );
        Ok(())
    }

    /// Makes this store what a schema 1 build left: this instance's records signed in
    /// format 1 by `sign_v1` (over the canonical bytes, empty for a tombstone, and the
    /// version) and schema 1 in the metadata. Opening it with a signer migrates it again.
    /// For tests of the migration only.
    #[doc(hidden)]
    pub fn rewrite_as_schema_1(
        &mut self,
        sign_v1: &dyn Fn(&[u8], &Version) -> [u8; 64],
    ) -> Result<(), StoreError> {
        self.rewrite_own_signatures(SCHEMA_FORMAT_1_SIGNATURES, |_, _, meta, signed| {
            // Format 1 covered the canonical bytes (nothing, for a tombstone).
            let canonical = match signed {
                Signed::Live { canonical } => canonical,
                Signed::Deleted { .. } => &[],
            };
            Some(RecordSignature {
                format: SignatureFormat::V1,
                bytes: sign_v1(canonical, &meta.version),
            })
        })?;
        self.needs_resigning = true;
        Ok(())
    }

    /// Replaces the signature of each of this instance's records with `sign`'s and sets
    /// the schema to `schema`, in one transaction. Returns how many records it rewrote.
    fn rewrite_own_signatures(
        &self,
        schema: u32,
        sign: impl Fn(&Store, &str, &RecordMeta, Signed<'_>) -> Option<RecordSignature>,
    ) -> Result<u64, StoreError> {
        let txn = self.db.begin_write().map_err(self.fail())?;
        let mut rewritten = 0u64;
        for (table, deleted) in [(NODES, false), (TOMBSTONES, true)] {
            let mut records = txn.open_table(table).map_err(self.fail())?;
            let mut updates = Vec::new();
            for entry in records.iter().map_err(self.fail())? {
                let (key, value) = entry.map_err(self.fail())?;
                let id = key.value().to_owned();
                let (meta, body) =
                    record::decode(value.value()).map_err(|reason| self.damaged(&id, reason))?;
                if meta.version.origin != self.instance_id {
                    continue;
                }
                let signed = if deleted {
                    let deleted_at = record::decode_tombstone(value.value())
                        .map_err(|reason| self.damaged(&id, reason))?
                        .1;
                    Signed::Deleted { deleted_at }
                } else {
                    Signed::Live { canonical: body }
                };
                let signature = sign(self, &id, &meta, signed);
                let meta = RecordMeta { signature, ..meta };
                updates.push((id, record::encode(&meta, body)));
            }
            for (id, value) in updates {
                records
                    .insert(id.as_str(), value.as_slice())
                    .map_err(self.fail())?;
                rewritten += 1;
            }
        }
        {
            // Schema 2 also has the held-records table.
            txn.open_table(HELD).map_err(self.fail())?;
            let mut meta = txn.open_table(META).map_err(self.fail())?;
            meta.insert(meta_keys::SCHEMA, &schema.to_be_bytes()[..])
                .map_err(self.fail())?;
        }
        txn.commit().map_err(self.fail())?;
        Ok(rewritten)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Hlc, Node, RecordClaim};
    use crate::store::{Body, Record, RemoteRecord, StoreOptions};
    use crate::trust::{KeyPair, Signature, sign_record, sign_record_v1, verify_record};

    const NOW: u64 = 1_800_000_000_000;

    fn node(id: &str) -> Node {
        Node {
            id: id.into(),
            node_type: "t".into(),
            value: format!("value of {id}"),
            ..Node::default()
        }
    }

    fn signer(key: &KeyPair) -> crate::store::Signer {
        let key = key.clone();
        Box::new(move |claim| *sign_record(&key, claim).unwrap().as_bytes())
    }

    fn formats(store: &Store) -> Vec<(String, Option<SignatureFormat>)> {
        ["a", "b", "gone", "theirs"]
            .iter()
            .map(|id| {
                let record = store.get(id).unwrap().unwrap();
                (
                    id.to_string(),
                    record.meta.signature.map(|signature| signature.format),
                )
            })
            .collect()
    }

    fn claim_of(record: &Record) -> RecordClaim<'_> {
        RecordClaim {
            id: &record.id,
            content: match &record.body {
                Body::Live(_) => ClaimedContent::Live(record.meta.hash),
                Body::Deleted { deleted_at } => ClaimedContent::Deleted {
                    deleted_at: *deleted_at,
                },
            },
            version: record.meta.version,
            base: record.meta.base,
        }
    }

    /// A schema 1 store: two live records and a tombstone of ours, one record of a
    /// peer's, all signed in format 1.
    fn schema_1_store(key: &KeyPair, path: &std::path::Path) {
        let options = StoreOptions::default();
        let mut store = Store::open(path, &options, key.public_key().instance_id()).unwrap();
        store.set_signer(signer(key)).unwrap();
        store
            .write_nodes(&[node("a"), node("b"), node("gone")], NOW)
            .unwrap();
        store.delete("gone", NOW + 1).unwrap();
        let peer = KeyPair::generate().unwrap();
        let version = Version {
            hlc: Hlc::from_parts(NOW, 0),
            origin: peer.public_key().instance_id(),
        };
        let theirs = node("theirs");
        let signature =
            sign_record_v1(&peer, &crate::model::encode_node(&theirs), &version).unwrap();
        let remote = RemoteRecord {
            id: "theirs".into(),
            version,
            base: None,
            hash: None,
            signature: Some(RecordSignature {
                format: SignatureFormat::V1,
                bytes: *signature.as_bytes(),
            }),
            author_key: None,
            body: Body::Live(theirs),
        };
        store.apply_remote(&[remote], NOW, 60_000, None).unwrap();
        let v1_key = key.clone();
        store
            .rewrite_as_schema_1(&|bytes, version| {
                *sign_record_v1(&v1_key, bytes, version).unwrap().as_bytes()
            })
            .unwrap();
    }

    #[test]
    fn migration_resigns_our_records_and_leaves_others() {
        let dir = std::env::temp_dir().join(format!("ark-migrate-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("lattice.redb");
        let key = KeyPair::generate().unwrap();
        let me = key.public_key().instance_id();
        schema_1_store(&key, &path);
        let options = StoreOptions::default();
        let mut store = Store::open(&path, &options, me).unwrap();
        let v1 = Some(SignatureFormat::V1);
        let v2 = Some(SignatureFormat::V2);
        let expect = |formats: [Option<SignatureFormat>; 4]| {
            ["a", "b", "gone", "theirs"]
                .iter()
                .map(|id| id.to_string())
                .zip(formats)
                .collect::<Vec<_>>()
        };
        assert_eq!(formats(&store), expect([v1, v1, v1, v1]));
        let seq_before = store.last_seq();
        store.set_signer(signer(&key)).unwrap();
        assert_eq!(formats(&store), expect([v2, v2, v2, v1]));
        assert_eq!(store.last_seq(), seq_before, "no sequence moves");
        for id in ["a", "b", "gone"] {
            let record = store.get(id).unwrap().unwrap();
            let signature = Signature::from_bytes(&record.meta.signature.unwrap().bytes).unwrap();
            assert_eq!(
                verify_record(&key.public_key(), &claim_of(&record), &signature),
                Ok(()),
                "{id}"
            );
        }
        // The schema moved with the signatures: opening again migrates nothing.
        drop(store);
        let store = Store::open(&path, &options, me).unwrap();
        assert!(!store.needs_resigning);
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_migration_cut_short_leaves_the_schema_1_store_whole() {
        let dir = std::env::temp_dir().join(format!("ark-migrate-cut-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("lattice.redb");
        let key = KeyPair::generate().unwrap();
        let me = key.public_key().instance_id();
        schema_1_store(&key, &path);
        let options = StoreOptions::default();
        // The signer fails on its second record, in the middle of the transaction.
        let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut store = Store::open(&path, &options, me).unwrap();
            let key = key.clone();
            let calls = calls.clone();
            let _ = store.set_signer(Box::new(move |claim| {
                let call = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                assert!(call < 2, "signer failed");
                *sign_record(&key, claim).unwrap().as_bytes()
            }));
        }));
        assert!(outcome.is_err());
        let mut store = Store::open(&path, &options, me).unwrap();
        assert!(store.needs_resigning, "still schema 1");
        let v1 = Some(SignatureFormat::V1);
        assert!(formats(&store).iter().all(|(_, format)| *format == v1));
        store.set_signer(signer(&key)).unwrap();
        assert!(
            formats(&store)
                .iter()
                .all(|(id, format)| id == "theirs" || *format == Some(SignatureFormat::V2))
        );
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
