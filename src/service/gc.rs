//! `gc`: purges old tombstones. Kept apart from the lattice commands because it is the
//! one command that forgets history on purpose.

use crate::cli;
use crate::error::Error;
use crate::model::unix_millis_now;

use super::output::{number, object};
use super::session::Session;

const DAY_MILLIS: u64 = 24 * 60 * 60 * 1000;

/// Removes tombstones of deletes older than `--tombstones-older-than` days.
pub(crate) fn gc(session: &mut Session<'_>, args: &cli::Gc) -> Result<(), Error> {
    let Some(days) = args.tombstones_older_than else {
        return Err(Error::Usage(
            "gc needs --tombstones-older-than DAYS (tombstones are kept by default)".into(),
        ));
    };
    let cutoff = unix_millis_now().saturating_sub(days.saturating_mul(DAY_MILLIS));
    let purged = session.store.purge_tombstones(cutoff)?;
    if args.json {
        session.out.json(&object([
            ("purged_tombstones", number(purged)),
            ("older_than_days", number(days)),
        ]))?;
    } else {
        session.out.line(format!(
            "purged {purged} tombstone(s) of deletes older than {days} day(s)"
        ))?;
    }
    session.out.flush()
}
