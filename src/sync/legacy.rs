//! The async drivers of a sync with ARK's own services: an ARK Node.js peer
//! (`sync_legacy`, run by `core::ark`'s [`ArkSync`]) and ARK's Python federation service,
//! which is only pulled from (`sync_python`, run by `core::python`'s [`PythonPull`]).
//! The machines decide what to ask, what to apply and what to keep; these move the
//! plain JSON bodies ARK sends and reads, and make the store calls.

use super::client::SyncError;
use super::core::{ArkSync, PythonPull, hashes_key, seen_key};
use super::peer::PeerState;
use super::{PeerSyncResult, Syncer};
use crate::config::SYNC_BATCH_RECORDS;
use crate::protocol::Route;
use crate::store::{Record, RemoteRecord};

/// Every peer-table key kept for an ARK service at `url`, removed with the peer.
pub(super) fn peer_keys(url: &str) -> [String; 2] {
    [seen_key(url), hashes_key(url)]
}

impl Syncer {
    /// Pulls the ARK Node.js peer's rows and pushes ours, as [`ArkSync`] says.
    pub(super) async fn sync_legacy(
        &self,
        url: &str,
        peer_id: &str,
        state: &mut PeerState,
        result: &mut PeerSyncResult,
    ) -> Result<(), SyncError> {
        let seen = self.load_state(&seen_key(url))?;
        let mut machine = ArkSync::new(
            url,
            peer_id,
            self.instance_id.to_hex(),
            state,
            seen.as_deref(),
        );
        if let Some(list_url) = machine.list_request() {
            let answer = self
                .fetch(self.get(&list_url), "node list")
                .await
                .map_err(|error| machine.on_failure(error))?;
            let mut records = Vec::new();
            for record in machine.on_list(&answer, result)? {
                let ours = self.store.borrow().get(&record.id)?;
                records.extend(machine.compare(
                    record,
                    ours.as_ref().and_then(Record::node),
                    result,
                ));
            }
            self.apply_in_batches(&records, result)
                .map_err(|error| machine.on_failure(error))?;
            if let Some(seen) = machine.on_pulled() {
                self.save_states(vec![seen], true)?;
            }
        }
        while let Some(read) = machine.next_read() {
            let page = self.read_changes(&read)?;
            if let Some(body) = machine.on_changes(page, result) {
                let answer = self
                    .fetch(
                        self.post_json_plain(Route::ArkSync.url(url), body),
                        "sync answer",
                    )
                    .await
                    .map_err(|error| machine.on_failure(error))?;
                machine.on_answer(&answer, result)?;
            }
            if let Some(state) = machine.to_save() {
                self.save_states(vec![(url.to_owned(), state.encode())], true)?;
                machine.on_saved();
            }
        }
        Ok(())
    }

    /// Pulls from ARK's Python federation service, as [`PythonPull`] says.
    pub(super) async fn sync_python(
        &self,
        url: &str,
        result: &mut PeerSyncResult,
    ) -> Result<(), SyncError> {
        let hashes = self.load_state(&hashes_key(url))?;
        let mut machine = PythonPull::new(url, hashes.as_deref());
        let Some(body) = machine.request() else {
            return Ok(());
        };
        let answer = self
            .fetch(
                self.post_json_plain(Route::PythonSync.url(url), body),
                "delta from the Python service",
            )
            .await
            .map_err(|error| machine.on_failure(error))?;
        let records = machine.on_delta(&answer, result)?;
        self.apply_in_batches(&records, result)
            .map_err(|error| machine.on_failure(error))?;
        if let Some(hashes) = machine.on_applied() {
            self.save_states(vec![hashes], true)?;
        }
        Ok(())
    }

    /// Applies records from one of ARK's services, in transactions of
    /// [`SYNC_BATCH_RECORDS`]: they carry no signature to check nor checkpoint to move.
    fn apply_in_batches(
        &self,
        records: &[RemoteRecord],
        result: &mut PeerSyncResult,
    ) -> Result<(), SyncError> {
        for batch in records.chunks(SYNC_BATCH_RECORDS) {
            let outcome = self.apply(batch, None, &[])?;
            result.count_applied(&outcome);
        }
        Ok(())
    }
}
