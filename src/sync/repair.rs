//! Reports damaged records and moves them aside, so the next sync with any peer
//! reconciles and fetches them again (see `store::damage` for what "damaged" means and
//! `PeerState::repairs` for how checkpoints give way).

use crate::model::unix_millis_now;
use crate::store::Store;

/// Moves aside the damaged records reads came across and reports each on stderr. Does
/// nothing when there are none, so callers may run it after every command or request.
pub fn move_aside_damaged(store: &mut Store) {
    if !store.has_damage_to_handle() {
        return;
    }
    match store.quarantine_damaged(unix_millis_now()) {
        Ok(handled) => {
            for damaged in handled {
                eprintln!(
                    "warning: store {}: {damaged}; it is not served and was moved aside, to be fetched again from a peer at the next sync",
                    store.path().display()
                );
            }
        }
        Err(error) => eprintln!("warning: could not move damaged records aside: {error}"),
    }
}
