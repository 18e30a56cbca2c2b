//! When a commit reaches the disk: every commit is durable (one `fdatasync`) unless its
//! caller defers it, and what the store hands to others never names a deferred one.
//!
//! # Implementation
//!
//! A large push is applied in many short transactions so the server's one thread can
//! serve other requests between them (issue 10). Waiting out an `fdatasync` per
//! transaction was most of a push's time and all of its longest pauses (a legit request
//! waited up to 150–200 ms behind one), so a push commits its chunks with redb's
//! `Durability::None` and makes them durable with one commit before it answers
//! ([`Store::make_durable`]). A crash before that loses those chunks whole, never a part
//! of one (redb's commits are atomic either way), and the pusher, not yet answered,
//! sends them again.
//!
//! Deferred commits are visible to readers at once, which is harmless for records (a
//! reader that copies one has a valid record) but not for sequence numbers: a crash
//! would give the rolled-back sequences to other records, and a peer whose checkpoint
//! had passed them would never pull those. So the sequence the store hands out (the
//! changes feed's end, a version snapshot's sequence) is the last durable one
//! ([`Store::served_seq`]), and long-polls wake when it moves, not before. Any durable
//! commit, of any kind, makes the deferred ones before it durable too.

use redb::WriteTransaction;

use super::error::StoreError;
use super::lattice::Store;

/// How a write transaction reaches the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commit {
    /// Durable when the commit returns (redb's `Durability::Immediate`: one
    /// `fdatasync`). Also makes every deferred commit before it durable.
    Durable,
    /// Visible at once, durable with the next durable commit; lost by a crash before
    /// it. For a caller that makes it durable (with [`Store::make_durable`]) before it
    /// tells anyone the write was done.
    Deferred,
}

impl Store {
    /// Commits `txn` as `commit` says, and counts it in [`Store::writes`].
    pub(super) fn commit(
        &mut self,
        mut txn: WriteTransaction,
        commit: Commit,
    ) -> Result<(), StoreError> {
        if commit == Commit::Deferred {
            txn.set_durability(redb::Durability::None)
                .map_err(self.fail())?;
        }
        txn.commit().map_err(self.fail())?;
        self.writes += 1;
        match commit {
            Commit::Deferred => {
                self.deferred_after.get_or_insert(self.last_seq);
            }
            Commit::Durable => {
                if self.deferred_after.take().is_some() {
                    self.changed.notify(usize::MAX);
                }
            }
        }
        Ok(())
    }

    /// Makes every deferred commit durable (one empty durable commit), if there are any.
    pub(crate) fn make_durable(&mut self) -> Result<(), StoreError> {
        if self.deferred_after.is_none() {
            return Ok(());
        }
        let txn = self.db.begin_write().map_err(self.fail())?;
        self.commit(txn, Commit::Durable)
    }

    /// The last change sequence of a durable commit: what the store hands to peers
    /// (the end of the changes feed, a version snapshot's sequence), since a crash can
    /// give later ones to other records. Equal to [`Store::last_seq`] but while
    /// deferred commits wait.
    pub(crate) fn served_seq(&self) -> u64 {
        self.deferred_after.unwrap_or(self.last_seq)
    }

    #[cfg(test)]
    /// Whether commits were deferred and are not yet durable.
    pub(crate) fn has_deferred_commits(&self) -> bool {
        self.deferred_after.is_some()
    }
}
