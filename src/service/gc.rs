//! `gc`: purges old tombstones. Kept apart from the lattice commands because it is the
//! one command that forgets history on purpose.

use crate::error::Error;
use crate::model::unix_millis_now;
use crate::store::Store;

use super::views::Purged;

const DAY_MILLIS: u64 = 24 * 60 * 60 * 1000;

/// Removes tombstones of deletes older than `older_than_days` days.
pub(crate) fn purge_tombstones(store: &mut Store, older_than_days: u64) -> Result<Purged, Error> {
    let cutoff = unix_millis_now().saturating_sub(older_than_days.saturating_mul(DAY_MILLIS));
    Ok(Purged {
        purged_tombstones: store.purge_tombstones(cutoff)?,
        older_than_days,
    })
}
